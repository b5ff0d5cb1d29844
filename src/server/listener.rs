//! Accepts connections (plain or TLS with rustls; HTTP/1.1 and HTTP/2 on either) and serves the stack on
//! each, until shutdown; then stops accepting and lets in-flight requests finish.

use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
use hyper_util::server::conn::auto;
use hyper_util::service::TowerToHyperService;
use std::future::Future;
use std::net::SocketAddr;
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;
use tokio::net::TcpListener;
use tokio_rustls::TlsAcceptor;

/// Builds a TLS acceptor from PEM files, offering HTTP/2 and HTTP/1.1 by ALPN.
pub fn tls_acceptor(cert: &Path, key: &Path) -> Result<TlsAcceptor, String> {
    use rustls_pki_types::pem::PemObject;
    use rustls_pki_types::{CertificateDer, PrivateKeyDer};
    let certs: Vec<CertificateDer<'static>> = CertificateDer::pem_file_iter(cert)
        .map_err(|e| format!("cannot read {}: {e}", cert.display()))?
        .collect::<Result<_, _>>()
        .map_err(|e| format!("bad certificate in {}: {e}", cert.display()))?;
    let key = PrivateKeyDer::from_pem_file(key).map_err(|e| format!("cannot read key {}: {e}", key.display()))?;
    tls_acceptor_from(certs, key)
}

pub fn tls_acceptor_from(
    certs: Vec<rustls_pki_types::CertificateDer<'static>>,
    key: rustls_pki_types::PrivateKeyDer<'static>,
) -> Result<TlsAcceptor, String> {
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let mut config = rustls::ServerConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(|e| e.to_string())?
        .with_no_client_auth()
        .with_single_cert(certs, key)
        .map_err(|e| format!("the TLS certificate and key do not fit: {e}"))?;
    config.alpn_protocols = vec![b"h2".to_vec(), b"http/1.1".to_vec()];
    Ok(TlsAcceptor::from(Arc::new(config)))
}

/// What a client speaking HTTP/2 without TLS (prior knowledge) sends first.
const HTTP2_PREFACE: &[u8] = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n";

/// Whether a plain connection speaks HTTP/2 (its first bytes are the preface) or HTTP/1; `None` when it sends
/// too little to tell within the deadline, or closes. The bytes are peeked, not read: hyper reads them again.
async fn speaks_http2(stream: &tokio::net::TcpStream, deadline: Duration) -> Option<bool> {
    let sniff = async {
        let mut first = [0u8; HTTP2_PREFACE.len()];
        let mut pause = Duration::from_millis(5);
        loop {
            let seen = stream.peek(&mut first).await.ok()?;
            if seen == 0 {
                return None;
            }
            if !HTTP2_PREFACE.starts_with(&first[..seen]) {
                return Some(false);
            }
            if seen == HTTP2_PREFACE.len() {
                return Some(true);
            }
            // Part of the preface so far: peek returns at once until more arrives, so wait a little, longer
            // each time (a client stalled mid-preface would otherwise wake the server every 5 ms until the
            // header deadline).
            tokio::time::sleep(pause).await;
            pause = (pause * 2).min(Duration::from_millis(200));
        }
    };
    tokio::time::timeout(deadline, sniff).await.ok().flatten()
}

/// Serves until `shutdown` resolves, then drains. A connection that has not sent a request's headers within
/// `header_timeout` (a slow or silent client, or an idle keep-alive) is closed; the request itself then runs
/// under the stack's own deadline.
pub async fn serve<S, F>(
    listener: TcpListener,
    tls: Option<TlsAcceptor>,
    service: S,
    header_timeout: Duration,
    shutdown: F,
    // How long in-flight requests may take to finish once shutdown is asked for.
    drain: Duration,
) where
    S: tower::Service<http::Request<hyper::body::Incoming>, Error = std::convert::Infallible> + Clone + Send + 'static,
    S::Future: Send + 'static,
    S::Response: Into<http::Response<crate::server::ResponseBody>>,
    F: Future<Output = ()>,
{
    let graceful = hyper_util::server::graceful::GracefulShutdown::new();
    let mut builder = auto::Builder::new(TokioExecutor::new());
    // Without a timer hyper enforces no header deadline at all (it only logs that its default is unused).
    builder
        .http1()
        .timer(TokioTimer::new())
        .header_read_timeout(header_timeout)
        // Past the application's own limit, so that a request over it is answered (and audited) there.
        .max_headers(super::limits::HYPER_MAX_HEADERS);
    // HTTP/2 has no header deadline in hyper: pings find a peer that has gone.
    builder
        .http2()
        .timer(TokioTimer::new())
        .keep_alive_interval(Some(Duration::from_secs(30)))
        .keep_alive_timeout(Duration::from_secs(20))
        .max_header_list_size(super::limits::HYPER_MAX_HEADER_LIST);
    // The protocol is chosen here, within the header deadline (ALPN under TLS, the HTTP/2 preface without):
    // hyper's own detection waits for the first bytes with no deadline at all.
    let http1 = builder.clone().http1_only();
    let http2 = builder.http2_only();
    tokio::pin!(shutdown);
    loop {
        let (stream, peer): (tokio::net::TcpStream, SocketAddr) = tokio::select! {
            accepted = listener.accept() => match accepted {
                Ok(pair) => pair,
                Err(e) => {
                    tracing::warn!(error = %e, "accept failed");
                    tokio::time::sleep(Duration::from_millis(50)).await;
                    continue;
                }
            },
            () = &mut shutdown => break,
        };
        let _ = stream.set_nodelay(true);
        let service = TowerToHyperService::new(tower::util::MapResponse::new(service.clone(), Into::into));
        let (http1, http2) = (http1.clone(), http2.clone());
        let watcher = graceful.watcher();
        let tls = tls.clone();
        tokio::spawn(async move {
            let result = match tls {
                Some(acceptor) => match tokio::time::timeout(Duration::from_secs(10), acceptor.accept(stream)).await {
                    Ok(Ok(stream)) => {
                        let builder = if stream.get_ref().1.alpn_protocol() == Some(b"h2") {
                            &http2
                        } else {
                            &http1
                        };
                        watcher
                            .watch(builder.serve_connection(TokioIo::new(stream), service).into_owned())
                            .await
                    }
                    _ => {
                        tracing::debug!(%peer, "TLS handshake failed");
                        return;
                    }
                },
                None => match speaks_http2(&stream, header_timeout).await {
                    Some(h2) => {
                        let builder = if h2 { &http2 } else { &http1 };
                        watcher
                            .watch(builder.serve_connection(TokioIo::new(stream), service).into_owned())
                            .await
                    }
                    None => {
                        tracing::debug!(%peer, "closed: no request within the header deadline");
                        return;
                    }
                },
            };
            if let Err(e) = result {
                tracing::debug!(%peer, error = %e, "connection ended with an error");
            }
        });
    }
    // Closed now rather than when the drain ends: a new connection is refused at once (load balancers move on)
    // instead of waiting, unanswered, in the backlog of a socket no one accepts from.
    drop(listener);
    tracing::info!("shutting down: draining in-flight requests");
    if tokio::time::timeout(drain, graceful.shutdown()).await.is_err() {
        tracing::warn!("some connections did not finish within the drain time");
    }
}
