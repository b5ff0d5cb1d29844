//! On-demand bulk extract (placeholder until the CSV tables land).

use crate::errors::message;
use crate::routes::Emis;
use http::StatusCode;
use im1_sim::common::{SimRequest, SimResponse};

pub fn handle(_e: &Emis, _req: &SimRequest, _path: &str) -> SimResponse {
    message(
        StatusCode::NOT_FOUND,
        "No HTTP resource was found that matches the request URI.",
    )
}
