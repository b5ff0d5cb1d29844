//! The dialect's error shape: an HTTP status plus `{"errors": [{"code", "title", "detail"}]}`, with
//! `source.pointer` where one element of a write is at fault.

use bytes::Bytes;
use http::{header, HeaderValue, Response, StatusCode};
use im1_sim::common::{InjectedReply, SimResponse};
use serde_json::{json, Value};

/// One error reply.
#[derive(Debug, Clone)]
pub struct ApiError {
    pub status: StatusCode,
    pub code: &'static str,
    pub title: &'static str,
    pub detail: String,
    pub pointer: Option<String>,
    pub retry_after: Option<u64>,
}

impl ApiError {
    pub fn new(status: u16, code: &'static str, title: &'static str, detail: impl Into<String>) -> Self {
        ApiError {
            status: StatusCode::from_u16(status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR),
            code,
            title,
            detail: detail.into(),
            pointer: None,
            retry_after: None,
        }
    }

    pub fn at(mut self, pointer: impl Into<String>) -> Self {
        self.pointer = Some(pointer.into());
        self
    }

    pub fn bad_request(detail: impl Into<String>) -> Self {
        ApiError::new(400, "INVALID_REQUEST", "Invalid request", detail)
    }

    pub fn not_found() -> Self {
        ApiError::new(404, "NOT_FOUND", "Not found", "No such endpoint.")
    }

    pub fn patient_not_found() -> Self {
        ApiError::new(
            404,
            "PATIENT_NOT_FOUND",
            "Patient not found",
            "No active patient has this id.",
        )
    }

    pub fn invalid_date(name: &str) -> Self {
        ApiError::new(
            400,
            "INVALID_DATE",
            "Invalid date",
            format!("{name} must be YYYY-MM-DD."),
        )
    }

    pub fn rate_limited(retry_after: u64) -> Self {
        let mut e = ApiError::new(
            429,
            "RATE_LIMITED",
            "Too many requests",
            "The limit is 20 requests per second per application per tenant.",
        );
        e.retry_after = Some(retry_after);
        e
    }

    pub fn service_disabled(service: &str) -> Self {
        ApiError::new(
            403,
            "SERVICE_DISABLED",
            "Service disabled",
            format!("{service} is switched off for this patient."),
        )
    }

    pub fn body(&self) -> Value {
        let mut e = json!({"code": self.code, "title": self.title, "detail": self.detail});
        if let Some(p) = &self.pointer {
            e["source"] = json!({"pointer": p});
        }
        json!({"errors": [e]})
    }

    pub fn response(&self) -> SimResponse {
        let mut resp = json_response(self.status, &self.body());
        if let Some(secs) = self.retry_after {
            if let Ok(v) = HeaderValue::from_str(&secs.to_string()) {
                resp.headers_mut().insert(header::RETRY_AFTER, v);
            }
        }
        resp
    }
}

/// A JSON reply.
pub fn json_response(status: StatusCode, body: &Value) -> SimResponse {
    let bytes = serde_json::to_vec(body).unwrap_or_default();
    let mut resp = Response::new(Bytes::from(bytes));
    *resp.status_mut() = status;
    resp.headers_mut()
        .insert(header::CONTENT_TYPE, HeaderValue::from_static("application/json"));
    resp
}

/// Injected faults in the dialect's shape.
pub fn fault_reply(reply: InjectedReply) -> SimResponse {
    match reply {
        InjectedReply::ServerError(503) => ApiError::new(
            503,
            "SERVICE_UNAVAILABLE",
            "Service unavailable",
            "The service is temporarily unavailable.",
        ),
        InjectedReply::ServerError(_) => ApiError::new(
            500,
            "INTERNAL_SERVER_ERROR",
            "Internal server error",
            "An unexpected error occurred.",
        ),
        InjectedReply::TooManyRequests { retry_after_secs } => ApiError::rate_limited(retry_after_secs),
        InjectedReply::ExpiredSession => {
            ApiError::new(401, "JWT_EXPIRED", "Expired token", "The JSON web token has expired.")
        }
    }
    .response()
}
