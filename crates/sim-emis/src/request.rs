//! Reading requests: headers, query parameters (names matched case-insensitively: the public sources spell
//! `userPatientLinkToken` both ways, so the simulator takes either), JSON and form bodies.

use crate::errors;
use im1_sim::common::{SimRequest, SimResponse};
use serde_json::Value;

/// A request header as text.
pub fn header<'a>(req: &'a SimRequest, name: &str) -> Option<&'a str> {
    req.headers()
        .get(name)
        .and_then(|v| v.to_str().ok())
        .map(str::trim)
        .filter(|v| !v.is_empty())
}

/// The decoded query parameters.
pub struct Query(Vec<(String, String)>);

impl Query {
    pub fn of(req: &SimRequest) -> Query {
        let q = req.uri().query().unwrap_or("");
        Query(
            form_urlencoded::parse(q.as_bytes())
                .map(|(k, v)| (k.into_owned(), v.into_owned()))
                .collect(),
        )
    }

    /// A parameter by case-insensitive name, if present and not empty.
    pub fn get(&self, name: &str) -> Option<&str> {
        self.0
            .iter()
            .find(|(k, _)| k.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
            .filter(|v| !v.is_empty())
    }

    /// A required parameter, or the 400 naming it.
    pub fn need(&self, name: &str) -> Result<&str, SimResponse> {
        self.get(name).ok_or_else(|| errors::missing(name))
    }
}

/// The body as a JSON object, or a 400.
pub fn json_body(req: &SimRequest) -> Result<Value, SimResponse> {
    match serde_json::from_slice::<Value>(req.body()) {
        Ok(v) if v.is_object() => Ok(v),
        _ => Err(errors::model_state("", "The request body is not a valid JSON object.")),
    }
}

/// A required string field of a JSON body.
pub fn field<'a>(body: &'a Value, name: &str) -> Result<&'a str, SimResponse> {
    body.get(name)
        .and_then(Value::as_str)
        .filter(|s| !s.is_empty())
        .ok_or_else(|| errors::missing(name))
}

/// An optional string field.
pub fn opt_field(body: &Value, name: &str) -> Option<String> {
    body.get(name)
        .and_then(Value::as_str)
        .filter(|s| !s.is_empty())
        .map(str::to_string)
}

/// Form fields of an `application/x-www-form-urlencoded` body.
pub fn form(req: &SimRequest) -> Vec<(String, String)> {
    form_urlencoded::parse(req.body())
        .map(|(k, v)| (k.into_owned(), v.into_owned()))
        .collect()
}
