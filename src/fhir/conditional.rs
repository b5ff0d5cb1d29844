//! Conditional reads (RFC 9110 §13): what a read's `If-Match`, `If-Unmodified-Since`, `If-None-Match` and
//! `If-Modified-Since` make of its answer, in the order §13.2.2 gives. Resources here have no versions, so no
//! entity tag: `If-Match` holds only as `*` (the resource exists), `If-None-Match` fails only as `*`, and the
//! dates are compared with the resource's `Last-Modified`, where it has one.

use http::{header, HeaderMap};
use std::time::SystemTime;

/// What the preconditions make of a read that found its resource.
#[derive(Debug, PartialEq, Eq)]
pub enum Precondition {
    /// Answer as asked.
    Proceed,
    /// 304: the client's copy is current.
    NotModified,
    /// 412: a condition the client set does not hold.
    Failed,
}

/// Evaluates a GET's (or HEAD's) preconditions against a resource last modified at `last_modified`.
pub fn evaluate(request: &HeaderMap, last_modified: Option<SystemTime>) -> Precondition {
    // Step 1, or else step 2.
    if let Some(tags) = text(request, header::IF_MATCH) {
        if tags.trim() != "*" {
            return Precondition::Failed;
        }
    } else if let (Some(since), Some(modified)) = (date(request, header::IF_UNMODIFIED_SINCE), last_modified) {
        if seconds(modified) > seconds(since) {
            return Precondition::Failed;
        }
    }
    // Step 3, or else step 4.
    if let Some(tags) = text(request, header::IF_NONE_MATCH) {
        if tags.trim() == "*" {
            return Precondition::NotModified;
        }
    } else if let (Some(since), Some(modified)) = (date(request, header::IF_MODIFIED_SINCE), last_modified) {
        if seconds(modified) <= seconds(since) {
            return Precondition::NotModified;
        }
    }
    Precondition::Proceed
}

/// A header's values joined as one list (a field sent twice is one list, RFC 9110 §5.3).
fn text(request: &HeaderMap, name: header::HeaderName) -> Option<String> {
    let values: Vec<&str> = request
        .get_all(name)
        .iter()
        .map(|v| v.to_str().unwrap_or("\u{0}"))
        .collect();
    (!values.is_empty()).then(|| values.join(","))
}

/// A date header, when it is one valid HTTP-date (an invalid one is ignored, §13.1.3-4).
fn date(request: &HeaderMap, name: header::HeaderName) -> Option<SystemTime> {
    let mut values = request.get_all(name).iter();
    let (Some(value), None) = (values.next(), values.next()) else {
        return None;
    };
    httpdate::parse_http_date(value.to_str().ok()?).ok()
}

/// Whole seconds since 1970: HTTP dates have no finer precision.
fn seconds(at: SystemTime) -> u64 {
    at.duration_since(SystemTime::UNIX_EPOCH).map_or(0, |d| d.as_secs())
}

#[cfg(test)]
mod tests {
    use super::*;
    use http::HeaderValue;
    use std::time::Duration;

    fn headers(pairs: &[(header::HeaderName, &str)]) -> HeaderMap {
        let mut map = HeaderMap::new();
        for (name, value) in pairs {
            map.append(name.clone(), HeaderValue::from_str(value).unwrap());
        }
        map
    }

    /// Sun, 01 Jun 2025 09:50:00 GMT, and a quarter of a second later (still that second).
    fn modified() -> SystemTime {
        SystemTime::UNIX_EPOCH + Duration::from_millis(1_748_771_400_250)
    }

    #[test]
    fn dates_compare_to_the_second() {
        use header::{IF_MODIFIED_SINCE as IMS, IF_UNMODIFIED_SINCE as IUS};
        let at = |name: header::HeaderName, date: &str| evaluate(&headers(&[(name, date)]), Some(modified()));
        assert_eq!(at(IMS, "Sun, 01 Jun 2025 09:50:00 GMT"), Precondition::NotModified);
        assert_eq!(at(IMS, "Mon, 02 Jun 2025 00:00:00 GMT"), Precondition::NotModified);
        assert_eq!(at(IMS, "Sun, 01 Jun 2025 09:49:59 GMT"), Precondition::Proceed);
        assert_eq!(at(IMS, "not a date"), Precondition::Proceed);
        assert_eq!(at(IUS, "Sun, 01 Jun 2025 09:50:00 GMT"), Precondition::Proceed);
        assert_eq!(at(IUS, "Sun, 01 Jun 2025 09:49:59 GMT"), Precondition::Failed);
        // Without a Last-Modified, the dates say nothing.
        let none = headers(&[(IMS, "Mon, 02 Jun 2025 00:00:00 GMT")]);
        assert_eq!(evaluate(&none, None), Precondition::Proceed);
    }

    #[test]
    fn without_entity_tags_only_the_wildcards_hold() {
        use header::{IF_MATCH, IF_MODIFIED_SINCE, IF_NONE_MATCH};
        let case = |pairs: &[(header::HeaderName, &str)]| evaluate(&headers(pairs), Some(modified()));
        assert_eq!(case(&[]), Precondition::Proceed);
        assert_eq!(case(&[(IF_MATCH, "*")]), Precondition::Proceed);
        assert_eq!(case(&[(IF_MATCH, "\"v1\"")]), Precondition::Failed);
        assert_eq!(case(&[(IF_NONE_MATCH, "*")]), Precondition::NotModified);
        assert_eq!(case(&[(IF_NONE_MATCH, "W/\"1\"")]), Precondition::Proceed);
        // If-None-Match, when sent, is evaluated instead of If-Modified-Since.
        assert_eq!(
            case(&[
                (IF_NONE_MATCH, "\"1\""),
                (IF_MODIFIED_SINCE, "Mon, 02 Jun 2025 00:00:00 GMT")
            ]),
            Precondition::Proceed
        );
        // A failed If-Match comes first.
        assert_eq!(case(&[(IF_MATCH, "\"1\""), (IF_NONE_MATCH, "*")]), Precondition::Failed);
    }
}
