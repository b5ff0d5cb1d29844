//! Per-call authentication: every request carries `Authorization: Bearer <jwt>`, RS256, signed by the
//! accredited app's key. There is no session; expiry is the token's own `exp` (at most 5 minutes after `iat`)
//! and each `jti` may be used once.

use crate::errors::ApiError;
use crate::StartError;
use jsonwebtoken::{decode, decode_header, errors::ErrorKind, Algorithm, DecodingKey, Validation};
use serde::Deserialize;
use std::collections::HashMap;
use std::sync::Mutex;

/// Longest lifetime a token may declare (`exp - iat`).
const MAX_LIFETIME_SECS: i64 = 300;

/// The practitioner a user-restricted Transactional call acts for.
#[derive(Debug, Clone, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "camelCase")]
pub struct RequestingPractitioner {
    pub sds_user_id: String,
    #[serde(default)]
    pub name: Option<String>,
}

/// The claims the simulator reads.
#[derive(Debug, Clone, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Claims {
    pub iss: String,
    pub iat: i64,
    pub exp: i64,
    pub jti: String,
    #[serde(default)]
    pub user_identifier_type: Option<String>,
    #[serde(default)]
    pub user_identifier_value: Option<String>,
    #[serde(default)]
    pub requesting_practitioner: Option<RequestingPractitioner>,
}

/// Verifies tokens and remembers used `jti`s until they expire.
pub struct Verifier {
    key: DecodingKey,
    key_id: Option<String>,
    validation: Validation,
    reject_replays: bool,
    seen: Mutex<HashMap<String, i64>>,
    /// Tokens whose signature already verified, when replays are allowed (benchmarks reuse one token; RSA
    /// verification would otherwise dominate). Never consulted while replays are refused.
    verified: Mutex<HashMap<String, Claims>>,
}

fn unauthorised(code: &'static str, title: &'static str, detail: &str) -> ApiError {
    ApiError::new(401, code, title, detail)
}

impl Verifier {
    pub fn new(
        pem: &[u8],
        key_id: Option<String>,
        app_id: &str,
        tenant: &str,
        reject_replays: bool,
    ) -> Result<Self, StartError> {
        let key = DecodingKey::from_rsa_pem(pem).map_err(|e| StartError(format!("bad RSA public key: {e}")))?;
        let mut validation = Validation::new(Algorithm::RS256);
        validation.set_audience(&[tenant]);
        validation.set_issuer(&[app_id]);
        validation.set_required_spec_claims(&["exp", "iat", "iss", "aud"]);
        validation.leeway = 5;
        Ok(Verifier {
            key,
            key_id,
            validation,
            reject_replays,
            seen: Mutex::new(HashMap::new()),
            verified: Mutex::new(HashMap::new()),
        })
    }

    /// Check the `Authorization` header value and return the claims.
    pub fn verify(&self, authorization: Option<&str>, now_unix: i64) -> Result<Claims, ApiError> {
        let token = authorization
            .and_then(|h| h.strip_prefix("Bearer "))
            .map(str::trim)
            .filter(|t| !t.is_empty())
            .ok_or_else(|| {
                unauthorised(
                    "JWT_MISSING",
                    "Missing token",
                    "Send a signed JSON web token as 'Authorization: Bearer <jwt>'.",
                )
            })?;
        if !self.reject_replays {
            let cached = self
                .verified
                .lock()
                .unwrap_or_else(|e| e.into_inner())
                .get(token)
                .cloned();
            if let Some(claims) = cached {
                if claims.exp + self.validation.leeway as i64 >= now_unix {
                    return Ok(claims);
                }
            }
        }
        let claims = self.verify_signed(token, now_unix)?;
        if !self.reject_replays {
            let mut verified = self.verified.lock().unwrap_or_else(|e| e.into_inner());
            if verified.len() >= 1024 {
                verified.clear();
            }
            verified.insert(token.to_string(), claims.clone());
        }
        Ok(claims)
    }

    fn verify_signed(&self, token: &str, now_unix: i64) -> Result<Claims, ApiError> {
        let invalid = |detail: &str| unauthorised("JWT_INVALID", "Invalid token", detail);
        let header = decode_header(token).map_err(|_| invalid("The token cannot be decoded."))?;
        if header.alg != Algorithm::RS256 {
            return Err(invalid("The token must be signed with RS256."));
        }
        if header.typ.as_deref() != Some("JWT") {
            return Err(invalid("The token header must have typ JWT."));
        }
        if let Some(kid) = &self.key_id {
            if header.kid.as_deref() != Some(kid.as_str()) {
                return Err(invalid("Unknown key id (kid)."));
            }
        }
        let data = decode::<Claims>(token, &self.key, &self.validation).map_err(|e| match e.kind() {
            ErrorKind::ExpiredSignature => {
                unauthorised("JWT_EXPIRED", "Expired token", "The JSON web token has expired.")
            }
            ErrorKind::InvalidIssuer => unauthorised(
                "INVALID_CREDENTIALS",
                "Invalid credentials",
                "The issuer is not an application accredited for this tenant.",
            ),
            ErrorKind::InvalidAudience => invalid("The audience must be the tenant id."),
            ErrorKind::InvalidSignature => invalid("The signature does not verify."),
            _ => invalid("The token or its claims are malformed."),
        })?;
        let claims = data.claims;
        if claims.exp - claims.iat > MAX_LIFETIME_SECS || claims.exp < claims.iat {
            return Err(invalid("exp must be at most 5 minutes after iat."));
        }
        if claims.iat > now_unix + 60 {
            return Err(invalid("iat is in the future."));
        }
        if claims.jti.is_empty() {
            return Err(invalid("jti is required."));
        }
        if self.reject_replays {
            let mut seen = self.seen.lock().unwrap_or_else(|e| e.into_inner());
            if seen.len() > 10_000 {
                seen.retain(|_, exp| *exp + 60 >= now_unix);
            }
            if seen.insert(claims.jti.clone(), claims.exp).is_some() {
                return Err(unauthorised(
                    "JWT_REPLAYED",
                    "Token replayed",
                    "This jti has been used before; sign a fresh token for every call.",
                ));
            }
        }
        Ok(claims)
    }
}
