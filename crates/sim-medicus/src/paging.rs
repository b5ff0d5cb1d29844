//! Opaque cursors (`nextCursor`): base64url of a small `kind:position` string, so a client cannot mistake
//! them for offsets it may compute itself.

use crate::errors::ApiError;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine;

/// Encode a position for one list kind.
pub fn encode(kind: &str, position: u64) -> String {
    URL_SAFE_NO_PAD.encode(format!("{kind}:{position}"))
}

/// Decode a cursor made by [`encode`] for the same kind; `None` input is the start.
pub fn decode(kind: &str, cursor: Option<&str>) -> Result<u64, ApiError> {
    let Some(c) = cursor.filter(|c| !c.is_empty()) else {
        return Ok(0);
    };
    URL_SAFE_NO_PAD
        .decode(c)
        .ok()
        .and_then(|b| String::from_utf8(b).ok())
        .and_then(|s| {
            s.strip_prefix(kind)
                .and_then(|rest| rest.strip_prefix(':'))
                .and_then(|n| n.parse().ok())
        })
        .ok_or_else(|| {
            ApiError::new(
                400,
                "INVALID_CURSOR",
                "Invalid cursor",
                "Use a nextCursor value as given.",
            )
        })
}

/// Parse `limit` with a default and a maximum.
pub fn limit(value: Option<&str>, default: usize, max: usize) -> Result<usize, ApiError> {
    match value {
        None => Ok(default),
        Some(v) => v
            .parse::<usize>()
            .ok()
            .filter(|n| (1..=max).contains(n))
            .ok_or_else(|| ApiError::bad_request(format!("limit must be 1 to {max}."))),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trips_and_rejects_other_kinds() {
        let c = encode("journal", 50);
        assert_eq!(decode("journal", Some(&c)).ok(), Some(50));
        assert!(decode("changes", Some(&c)).is_err());
        assert!(decode("journal", Some("!!")).is_err());
        assert_eq!(decode("journal", None).ok(), Some(0));
    }
}
