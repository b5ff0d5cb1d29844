//! The [`Handler`]: splits `/emis/...` into its surfaces, names routes for the counters (ids replaced by
//! `{id}`) and renders injected faults in EMIS shapes.

use crate::cache::SectionCache;
use crate::config::EmisConfig;
use crate::errors;
use crate::session::Sessions;
use crate::{bulk, codes, partner, pfs};
use http::StatusCode;
use im1_sim::common::throttle::RateLimiter;
use im1_sim::common::{Handler, InjectedReply, RequestContext, SimRequest, SimResponse};
use im1_sim::record::World;
use std::sync::Arc;

/// The simulator's state: the shared world, configuration, sessions and the rate limiter.
pub struct Emis {
    pub world: Arc<World>,
    pub config: EmisConfig,
    pub sessions: Sessions,
    pub limiter: RateLimiter,
    /// Rendered record sections (see `cache`).
    pub sections: SectionCache,
}

impl Emis {
    pub fn new(world: Arc<World>, config: EmisConfig) -> Self {
        let sessions = Sessions::new(config.end_user_session_idle, config.session_idle, config.token_lifetime);
        let limiter = RateLimiter::new(config.rate_per_second, config.throttle).with_retry_after(2);
        Emis {
            world,
            config,
            sessions,
            limiter,
            sections: SectionCache::default(),
        }
    }
}

fn not_found() -> SimResponse {
    errors::message(
        StatusCode::NOT_FOUND,
        "No HTTP resource was found that matches the request URI.",
    )
}

impl Handler for Emis {
    async fn handle(&self, req: SimRequest, cx: RequestContext) -> SimResponse {
        let path = req.uri().path().to_string();
        let Some(rest) = path.strip_prefix("/emis/") else {
            return not_found();
        };
        if let Some(p) = rest.strip_prefix("pfs/") {
            pfs::handle(self, &req, p, &cx)
        } else if let Some(p) = rest.strip_prefix("partner/v1/") {
            partner::handle(self, &req, p, &cx)
        } else if let Some(p) = rest.strip_prefix("bulk/v1/") {
            match partner::authorise(self, &req) {
                Ok(()) => bulk::handle(self, &req, p),
                Err(resp) => resp,
            }
        } else if let Some(p) = rest.strip_prefix("sim/") {
            codes::handle(&req, p)
        } else {
            not_found()
        }
    }

    fn route(&self, req: &SimRequest) -> String {
        // Ids in paths would make one counter per item; fold them.
        let path: Vec<&str> = req
            .uri()
            .path()
            .split('/')
            .map(|seg| {
                let is_guid = seg.len() == 36 && seg.bytes().filter(|b| *b == b'-').count() == 4;
                if is_guid || seg.ends_with(".csv") {
                    "{id}"
                } else {
                    seg
                }
            })
            .collect();
        format!("{} {}", req.method(), path.join("/"))
    }

    fn fault_reply(&self, reply: InjectedReply, _req: &SimRequest) -> SimResponse {
        errors::fault(reply)
    }
}
