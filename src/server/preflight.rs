//! CORS preflights only: tower-http's CORS layer answers every OPTIONS request as a preflight, before the
//! audited handler sees it. A request is a preflight when it carries `Origin` and
//! `Access-Control-Request-Method` (the Fetch standard); any other OPTIONS goes past the CORS layer to the
//! handler, which refuses it (405) and audits it, as every interaction is.

use http::{header, Method, Request};
use std::future::Future;
use std::pin::Pin;
use std::task::{Context, Poll};
use tower::{Layer, Service, ServiceExt};
use tower_http::cors::{Cors, CorsLayer};

#[derive(Clone)]
pub struct PreflightsOnly(pub CorsLayer);

impl<S: Clone> Layer<S> for PreflightsOnly {
    type Service = PreflightsOnlyService<S>;

    fn layer(&self, inner: S) -> Self::Service {
        PreflightsOnlyService {
            cors: self.0.layer(inner.clone()),
            plain: inner,
        }
    }
}

#[derive(Clone)]
pub struct PreflightsOnlyService<S> {
    cors: Cors<S>,
    plain: S,
}

fn is_preflight<B>(request: &Request<B>) -> bool {
    let headers = request.headers();
    request.method() == Method::OPTIONS
        && headers.contains_key(header::ORIGIN)
        && headers.contains_key(header::ACCESS_CONTROL_REQUEST_METHOD)
}

impl<S, B, R> Service<Request<B>> for PreflightsOnlyService<S>
where
    S: Service<Request<B>, Response = http::Response<R>> + Clone + Send + 'static,
    S::Future: Send,
    Cors<S>: Service<Request<B>, Response = S::Response, Error = S::Error> + Send + 'static,
    <Cors<S> as Service<Request<B>>>::Future: Send,
    B: Send + 'static,
{
    type Response = S::Response;
    type Error = S::Error;
    type Future = Pin<Box<dyn Future<Output = Result<S::Response, S::Error>> + Send>>;

    fn poll_ready(&mut self, _: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        // Whichever serves the request is made ready then (`oneshot`).
        Poll::Ready(Ok(()))
    }

    fn call(&mut self, request: Request<B>) -> Self::Future {
        if request.method() == Method::OPTIONS && !is_preflight(&request) {
            // Past the CORS layer, so the headers a browser needs to read the refusal are set here.
            let cross_origin = request.headers().contains_key(header::ORIGIN);
            let answer = self.plain.clone().oneshot(request);
            Box::pin(async move {
                let mut response = answer.await?;
                if cross_origin {
                    let headers = response.headers_mut();
                    headers.insert(header::ACCESS_CONTROL_ALLOW_ORIGIN, http::HeaderValue::from_static("*"));
                    // As the CORS layer exposes them on every other answer.
                    let exposed = http::HeaderValue::from_static("location,etag,content-location,age,x-request-id");
                    headers.insert(header::ACCESS_CONTROL_EXPOSE_HEADERS, exposed);
                }
                Ok(response)
            })
        } else {
            Box::pin(self.cors.clone().oneshot(request))
        }
    }
}
