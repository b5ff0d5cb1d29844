//! Credentials a client sent where they do not belong (a bearer token as `access_token=` in the query, a JWT
//! pasted into a path and echoed by an error) are not kept in the trail: auditors read it, and a token found
//! there could be replayed until it expires. Only the Authorization header carries tokens here.

use std::borrow::Cow;

/// Query parameters that carry credentials (RFC 6750's `access_token`, OAuth's and OpenID Connect's own).
const CREDENTIAL_PARAMS: &[&str] = &[
    "access_token",
    "id_token",
    "refresh_token",
    "client_secret",
    "client_assertion",
    "code_verifier",
    "password",
];

const REDACTED: &str = "[redacted]";

/// A query (`name=value&...`) with the values of credential parameters, and anything shaped like a JWT,
/// redacted.
pub fn query(query: &str) -> String {
    query
        .split('&')
        .map(|pair| match pair.split_once('=') {
            Some((name, _)) if is_credential(name) => format!("{name}={REDACTED}"),
            _ => text(pair).into_owned(),
        })
        .collect::<Vec<_>>()
        .join("&")
}

fn is_credential(name: &str) -> bool {
    // Stored queries are form-encoded (`password%3Aexact`); a modifier does not make it something else.
    let name = percent_encoding::percent_decode_str(name).decode_utf8_lossy();
    let name = name.split(':').next().unwrap_or_default();
    CREDENTIAL_PARAMS.iter().any(|c| name.eq_ignore_ascii_case(c))
}

/// Text with anything shaped like a JWT (a base64url JSON header, `eyJ…`, a payload and a signature, joined
/// by dots) redacted.
pub fn text(text: &str) -> Cow<'_, str> {
    if !text.contains("eyJ") {
        return Cow::Borrowed(text);
    }
    let mut out = String::with_capacity(text.len());
    let mut rest = text;
    while let Some(at) = rest.find("eyJ") {
        let (before, candidate) = rest.split_at(at);
        out.push_str(before);
        match jwt_len(candidate) {
            Some(len) => {
                out.push_str(REDACTED);
                rest = &candidate[len..];
            }
            None => {
                out.push_str("eyJ");
                rest = &candidate[3..];
            }
        }
    }
    out.push_str(rest);
    Cow::Owned(out)
}

/// The length of the JWT `text` starts with, if it does: a header and a payload, each base64url and followed
/// by a dot, then a signature (empty for `alg: none`).
fn jwt_len(text: &str) -> Option<usize> {
    let base64url = |b: &u8| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_');
    let bytes = text.as_bytes();
    let mut at = 0;
    // The shortest header, `{"alg":"none"}`, is 18 characters encoded; a payload holds at least `{}`.
    for least in [16, 2] {
        let part = bytes[at..].iter().take_while(|b| base64url(b)).count();
        if part < least || bytes.get(at + part) != Some(&b'.') {
            return None;
        }
        at += part + 1;
    }
    Some(at + bytes[at..].iter().take_while(|b| base64url(b)).count())
}

#[cfg(test)]
mod tests {
    use super::*;

    const JWT: &str = "eyJhbGciOiJFUzI1NiIsImtpZCI6ImRlbW8ifQ.eyJzdWIiOiJhIn0.c2lnbmF0dXJl_-x";

    #[test]
    fn credentials_and_tokens_are_redacted_and_nothing_else() {
        assert_eq!(
            query(&format!("patient=p1&access_token={JWT}&code=1234")),
            "patient=p1&access_token=[redacted]&code=1234"
        );
        assert_eq!(query("Access_Token:exact=secret"), "Access_Token:exact=[redacted]");
        // As the trail stores a query: form-encoded, the modifier's colon too.
        assert_eq!(
            query("password%3Aexact=hunter2&family=Smith"),
            "password%3Aexact=[redacted]&family=Smith"
        );
        assert_eq!(query(&format!("name={JWT}")), "name=[redacted]");
        // Unsigned (`alg: none`) tokens too.
        let unsigned = "eyJhbGciOiJub25lIn0.eyJzdWIiOiJhIn0.";
        assert_eq!(text(&format!("unknown type '{unsigned}'")), "unknown type '[redacted]'");
        assert_eq!(text(&format!("{JWT} then {JWT}.")), "[redacted] then [redacted].");
        // What merely starts like one stays.
        for kept in [
            "eyJ",
            "eyJhbGciOiJFUzI1NiJ9",
            "family=eyJones",
            "eyJhbGciOiJFUzI1NiJ9.x.y",
        ] {
            assert_eq!(text(kept), kept);
            assert_eq!(query(kept), kept);
        }
    }
}
