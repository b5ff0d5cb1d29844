//! Limits on a request's line and headers, answered with an OperationOutcome (and so audited) rather than by
//! hyper's own bare 414 or 431. hyper's limits are set above these (see `listener`), so theirs are met only
//! by requests far past any client's.

use crate::fhir::{FhirError, IssueType};
use http::{HeaderMap, StatusCode, Uri};

/// The longest request target taken: a long search fits (POST `_search` takes any length), and common
/// proxies refuse longer lines too.
pub const MAX_URI_BYTES: usize = 8 * 1024;
/// The most header bytes (names and values) taken: room for large tokens and forwarded headers.
pub const MAX_HEADER_BYTES: usize = 32 * 1024;
/// The most header fields taken.
pub const MAX_HEADERS: usize = 100;
/// What hyper itself is told, past ours: requests beyond it get its bare replies.
pub const HYPER_MAX_HEADERS: usize = 2 * MAX_HEADERS;
/// HTTP/2's header list limit for hyper (its default, 16 KiB, is below ours; HTTP/2 counts 32 bytes more
/// for each field).
pub const HYPER_MAX_HEADER_LIST: u32 = (2 * MAX_HEADER_BYTES) as u32;

/// Whether a request's target and headers are within the limits.
pub fn check(uri: &Uri, headers: &HeaderMap) -> Result<(), FhirError> {
    let target = uri.path_and_query().map_or(0, |p| p.as_str().len());
    if target > MAX_URI_BYTES {
        return Err(FhirError::new(
            StatusCode::URI_TOO_LONG,
            IssueType::TooLong,
            "IM1-1118",
            format!("the request URL is longer than {MAX_URI_BYTES} bytes (POST _search takes long queries)"),
        ));
    }
    let header_bytes: usize = headers
        .iter()
        .map(|(name, value)| name.as_str().len() + value.len())
        .sum();
    if headers.len() > MAX_HEADERS || header_bytes > MAX_HEADER_BYTES {
        return Err(FhirError::new(
            StatusCode::REQUEST_HEADER_FIELDS_TOO_LARGE,
            IssueType::TooLong,
            "IM1-1119",
            format!("the request has more than {MAX_HEADERS} headers or {MAX_HEADER_BYTES} bytes of them"),
        ));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use http::HeaderValue;

    #[test]
    fn long_targets_and_large_headers_are_refused_with_their_statuses() {
        let short: Uri = "/fhir/Patient?name=a".parse().unwrap();
        assert!(check(&short, &HeaderMap::new()).is_ok());
        let long: Uri = format!("/fhir/Patient?name={}", "a".repeat(MAX_URI_BYTES))
            .parse()
            .unwrap();
        assert_eq!(
            check(&long, &HeaderMap::new()).unwrap_err().status,
            StatusCode::URI_TOO_LONG
        );
        let mut headers = HeaderMap::new();
        headers.insert("x-big", HeaderValue::from_str(&"b".repeat(MAX_HEADER_BYTES)).unwrap());
        let refused = check(&short, &headers).unwrap_err();
        assert_eq!(refused.status, StatusCode::REQUEST_HEADER_FIELDS_TOO_LARGE);
        let mut many = HeaderMap::new();
        for i in 0..=MAX_HEADERS {
            many.insert(
                http::HeaderName::from_bytes(format!("x-h{i}").as_bytes()).unwrap(),
                HeaderValue::from_static("1"),
            );
        }
        assert!(check(&short, &many).is_err());
    }
}
