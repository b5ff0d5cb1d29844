//! Limits on a request's headers, answered with an OperationOutcome (and so audited) rather than by hyper's
//! own bare 431. hyper's limits are set above these (see `listener`), so theirs are met only by requests far
//! past any client's. The URL has no limit of its own below hyper's (64 KiB): the page links of a long
//! `_search` repeat its query, percent-encoded, and must still be followable.

use crate::fhir::{FhirError, IssueType};
use http::{header, HeaderMap, StatusCode};

/// The most header bytes (names and values) taken: room for large tokens and forwarded headers.
pub const MAX_HEADER_BYTES: usize = 32 * 1024;
/// The most header fields taken.
pub const MAX_HEADERS: usize = 100;
/// What hyper itself is told, past ours: requests beyond it get its bare replies.
pub const HYPER_MAX_HEADERS: usize = 2 * MAX_HEADERS;
/// HTTP/2's header list limit for hyper (its default, 16 KiB, is below ours; HTTP/2 counts 32 bytes more
/// for each field).
pub const HYPER_MAX_HEADER_LIST: u32 = (2 * MAX_HEADER_BYTES) as u32;

/// Whether a request's headers are within the limits.
pub fn check(headers: &HeaderMap) -> Result<(), FhirError> {
    let header_bytes: usize = headers
        .iter()
        .map(|(name, value)| name.as_str().len() + value.len())
        .sum();
    // HTTP/2 may send each cookie as a field of its own: they count as the one header HTTP/1.1 sends.
    let cookies = headers.get_all(header::COOKIE).iter().count();
    let fields = headers.len() - cookies.saturating_sub(1);
    if fields > MAX_HEADERS || header_bytes > MAX_HEADER_BYTES {
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
    fn large_headers_are_refused_and_cookies_count_as_one() {
        assert!(check(&HeaderMap::new()).is_ok());
        let mut headers = HeaderMap::new();
        headers.insert("x-big", HeaderValue::from_str(&"b".repeat(MAX_HEADER_BYTES)).unwrap());
        let refused = check(&headers).unwrap_err();
        assert_eq!(refused.status, StatusCode::REQUEST_HEADER_FIELDS_TOO_LARGE);
        let mut many = HeaderMap::new();
        for i in 0..=MAX_HEADERS {
            many.insert(
                http::HeaderName::from_bytes(format!("x-h{i}").as_bytes()).unwrap(),
                HeaderValue::from_static("1"),
            );
        }
        assert!(check(&many).is_err());
        let mut cookies = HeaderMap::new();
        for i in 0..=MAX_HEADERS {
            cookies.append(header::COOKIE, HeaderValue::from_str(&format!("c{i}=1")).unwrap());
        }
        assert!(check(&cookies).is_ok());
    }
}
