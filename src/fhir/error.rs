//! One error type for the whole request path, and the single place it becomes an OperationOutcome.
//!
//! Every variant is an HTTP meaning (after HAPI's list, plus 502/504 for the native side). Each carries a
//! stable diagnostic code (`IM1-xxxx`) so that the OperationOutcome a client sees and the log line an
//! operator sees name the same thing. Messages never contain patient data or secrets.

use http::StatusCode;
use serde_json::{json, Value};

/// FHIR issue-type codes (http://hl7.org/fhir/issue-type) used by the proxy.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum IssueType {
    Invalid,
    Structure,
    Required,
    Value,
    Security,
    Login,
    Forbidden,
    NotSupported,
    NotFound,
    Deleted,
    TooLong,
    Conflict,
    Duplicate,
    Throttled,
    Exception,
    Timeout,
    Transient,
    Processing,
    Incomplete,
    /// More work than the server will do for one request.
    TooCostly,
    Informational,
    /// Information withheld by policy (data minimisation).
    Suppressed,
}

impl IssueType {
    pub fn code(self) -> &'static str {
        match self {
            IssueType::Invalid => "invalid",
            IssueType::Structure => "structure",
            IssueType::Required => "required",
            IssueType::Value => "value",
            IssueType::Security => "security",
            IssueType::Login => "login",
            IssueType::Forbidden => "forbidden",
            IssueType::NotSupported => "not-supported",
            IssueType::NotFound => "not-found",
            IssueType::Deleted => "deleted",
            IssueType::TooLong => "too-long",
            IssueType::Conflict => "conflict",
            IssueType::Duplicate => "duplicate",
            IssueType::Throttled => "throttled",
            IssueType::Exception => "exception",
            IssueType::Timeout => "timeout",
            IssueType::Transient => "transient",
            IssueType::Processing => "processing",
            IssueType::Incomplete => "incomplete",
            IssueType::TooCostly => "too-costly",
            IssueType::Informational => "informational",
            IssueType::Suppressed => "suppressed",
        }
    }
}

/// A failed interaction: status, FHIR issue type, stable code and a sentence for a human.
#[derive(Debug, Clone, thiserror::Error)]
#[error("{code} {status}: {message}")]
pub struct FhirError {
    pub status: StatusCode,
    pub issue: IssueType,
    /// Stable diagnostic code, `IM1-` and four digits; the first digit is the phase (1 request, 2 auth,
    /// 3 mapping, 4 native, 5 server).
    pub code: &'static str,
    pub message: String,
    /// A FHIRPath-ish location (`Patient.birthDate`, or a parameter name) when one helps.
    pub expression: Option<String>,
    /// Seconds for `Retry-After` (429, 503).
    pub retry_after: Option<u64>,
    /// The methods the path takes, for a 405's `Allow` (RFC 9110: a 405 carries it; empty: none).
    pub allow: &'static str,
}

impl FhirError {
    pub fn new(status: StatusCode, issue: IssueType, code: &'static str, message: impl Into<String>) -> Self {
        FhirError {
            status,
            issue,
            code,
            message: message.into(),
            expression: None,
            retry_after: None,
            allow: "",
        }
    }

    pub fn at(mut self, expression: impl Into<String>) -> Self {
        self.expression = Some(expression.into());
        self
    }

    /// The methods a 405's path does take (`GET, HEAD`).
    pub fn allow(mut self, methods: &'static str) -> Self {
        self.allow = methods;
        self
    }

    pub fn retry_after(mut self, seconds: u64) -> Self {
        self.retry_after = Some(seconds);
        self
    }

    // 4xx: the request.
    pub fn bad_request(code: &'static str, message: impl Into<String>) -> Self {
        Self::new(StatusCode::BAD_REQUEST, IssueType::Invalid, code, message)
    }
    pub fn bad_structure(code: &'static str, message: impl Into<String>) -> Self {
        Self::new(StatusCode::BAD_REQUEST, IssueType::Structure, code, message)
    }
    pub fn unauthorized(code: &'static str, message: impl Into<String>) -> Self {
        Self::new(StatusCode::UNAUTHORIZED, IssueType::Login, code, message)
    }
    pub fn forbidden(code: &'static str, message: impl Into<String>) -> Self {
        Self::new(StatusCode::FORBIDDEN, IssueType::Forbidden, code, message)
    }
    pub fn not_found(code: &'static str, message: impl Into<String>) -> Self {
        Self::new(StatusCode::NOT_FOUND, IssueType::NotFound, code, message)
    }
    pub fn method_not_allowed(code: &'static str, message: impl Into<String>) -> Self {
        Self::new(StatusCode::METHOD_NOT_ALLOWED, IssueType::NotSupported, code, message)
    }
    pub fn not_acceptable(code: &'static str, message: impl Into<String>) -> Self {
        Self::new(StatusCode::NOT_ACCEPTABLE, IssueType::NotSupported, code, message)
    }
    pub fn conflict(code: &'static str, message: impl Into<String>) -> Self {
        Self::new(StatusCode::CONFLICT, IssueType::Conflict, code, message)
    }
    pub fn gone(code: &'static str, message: impl Into<String>) -> Self {
        Self::new(StatusCode::GONE, IssueType::Deleted, code, message)
    }
    pub fn precondition_failed(code: &'static str, message: impl Into<String>) -> Self {
        Self::new(StatusCode::PRECONDITION_FAILED, IssueType::Conflict, code, message)
    }
    pub fn too_large(code: &'static str, message: impl Into<String>) -> Self {
        Self::new(StatusCode::PAYLOAD_TOO_LARGE, IssueType::TooLong, code, message)
    }
    pub fn unsupported_media(code: &'static str, message: impl Into<String>) -> Self {
        Self::new(
            StatusCode::UNSUPPORTED_MEDIA_TYPE,
            IssueType::NotSupported,
            code,
            message,
        )
    }
    pub fn unprocessable(code: &'static str, message: impl Into<String>) -> Self {
        Self::new(StatusCode::UNPROCESSABLE_ENTITY, IssueType::Processing, code, message)
    }
    pub fn too_many(code: &'static str, message: impl Into<String>, retry_after: u64) -> Self {
        Self::new(StatusCode::TOO_MANY_REQUESTS, IssueType::Throttled, code, message).retry_after(retry_after)
    }

    // 5xx: us or the native system.
    pub fn internal(code: &'static str, message: impl Into<String>) -> Self {
        Self::new(StatusCode::INTERNAL_SERVER_ERROR, IssueType::Exception, code, message)
    }
    pub fn bad_gateway(code: &'static str, message: impl Into<String>) -> Self {
        Self::new(StatusCode::BAD_GATEWAY, IssueType::Exception, code, message)
    }
    pub fn unavailable(code: &'static str, message: impl Into<String>) -> Self {
        Self::new(StatusCode::SERVICE_UNAVAILABLE, IssueType::Transient, code, message)
    }
    pub fn gateway_timeout(code: &'static str, message: impl Into<String>) -> Self {
        Self::new(StatusCode::GATEWAY_TIMEOUT, IssueType::Timeout, code, message)
    }

    /// The OperationOutcome for this error (UK Core profile).
    pub fn to_outcome(&self) -> Value {
        let message = fhir_string(&self.message);
        let mut issue = json!({
            "severity": if self.status.is_server_error() { "fatal" } else { "error" },
            "code": self.issue.code(),
            "details": {
                "coding": [{ "system": DIAGNOSTIC_SYSTEM, "code": self.code }],
                "text": message,
            },
            "diagnostics": message,
        });
        if let Some(expression) = &self.expression {
            issue["expression"] = json!([fhir_string(expression)]);
        }
        outcome(vec![issue])
    }
}

/// Text as a FHIR string may hold it: messages echo what a request sent (a parameter's name, say), and FHIR
/// strings hold no control characters but tab, CR and LF, nor Unicode's non-characters (R4 datatypes, string).
/// Each is replaced by U+FFFD, as the XML writer does, so the JSON and XML answers say the same.
pub fn fhir_string(text: &str) -> String {
    text.chars()
        .map(|c| {
            let control = (c as u32) < 0x20 && !matches!(c, '\t' | '\r' | '\n');
            let non_character = matches!(c as u32, 0xFDD0..=0xFDEF) || (c as u32 & 0xFFFE) == 0xFFFE;
            if control || non_character {
                '\u{FFFD}'
            } else {
                c
            }
        })
        .collect()
}

/// The code system of the proxy's stable diagnostic codes.
pub const DIAGNOSTIC_SYSTEM: &str = "https://im1-fhir.dev/CodeSystem/diagnostic";

/// An OperationOutcome around the given issues.
pub fn outcome(issues: Vec<Value>) -> Value {
    json!({
        "resourceType": "OperationOutcome",
        "meta": { "profile": ["https://fhir.hl7.org.uk/StructureDefinition/UKCore-OperationOutcome"] },
        "issue": issues,
    })
}

/// A warning or information issue, for Bundles that succeed with something to say.
pub fn warning(issue: IssueType, code: &'static str, message: impl Into<String>) -> Value {
    let message = fhir_string(&message.into());
    json!({
        "severity": "warning",
        "code": issue.code(),
        "details": {
            "coding": [{ "system": DIAGNOSTIC_SYSTEM, "code": code }],
            "text": message,
        },
        "diagnostics": message,
    })
}

/// Adds a warning unless the same one is there already (a type refused, a policy applied: said once a Bundle).
pub fn push_once(warnings: &mut Vec<Value>, said: Value) {
    if !warnings.contains(&said) {
        warnings.push(said);
    }
}

pub type FhirResult<T> = Result<T, FhirError>;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn outcome_names_the_code_and_the_expression() {
        let error = FhirError::bad_request("IM1-1201", "unknown search parameter 'colour'").at("colour");
        let oo = error.to_outcome();
        assert_eq!(oo["issue"][0]["code"], "invalid");
        assert_eq!(oo["issue"][0]["details"]["coding"][0]["code"], "IM1-1201");
        assert_eq!(oo["issue"][0]["expression"][0], "colour");
        assert_eq!(oo["issue"][0]["severity"], "error");
    }

    /// A message echoing what a request sent holds nothing a FHIR string may not.
    #[test]
    fn echoed_control_characters_become_replacement_characters() {
        let error = FhirError::bad_request("IM1-1201", "unknown search parameter 'a\u{1}b\u{FFFE}'").at("a\u{1}b");
        let oo = error.to_outcome();
        assert_eq!(
            oo["issue"][0]["diagnostics"],
            "unknown search parameter 'a\u{FFFD}b\u{FFFD}'"
        );
        assert_eq!(oo["issue"][0]["expression"][0], "a\u{FFFD}b");
        let said = warning(IssueType::NotSupported, "IM1-1205", "line\none\ttab\u{7}");
        assert_eq!(said["diagnostics"], "line\none\ttab\u{FFFD}");
    }

    #[test]
    fn server_side_errors_are_fatal() {
        let oo = FhirError::gateway_timeout("IM1-4002", "slow").to_outcome();
        assert_eq!(oo["issue"][0]["severity"], "fatal");
        assert_eq!(oo["issue"][0]["code"], "timeout");
    }
}
