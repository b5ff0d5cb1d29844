//! Bearer tokens: minting demo tokens (`im1-fhir token`) and verifying incoming ones against the configured
//! issuers. Verification is cached per token, so a cached read pays for the signature check once.

use super::principal::{Principal, Role};
use super::scopes;
use jsonwebtoken::{decode, decode_header, encode, Algorithm, DecodingKey, EncodingKey, Header, Validation};
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};
use std::time::{SystemTime, UNIX_EPOCH};

/// The published demo signing key (see keys/README.md). Only `demo` trusts it.
pub const DEMO_PRIVATE_KEY: &[u8] = include_bytes!("../../keys/demo-token-signing.key.pem");
pub const DEMO_PUBLIC_KEY: &[u8] = include_bytes!("../../keys/demo-token-signing.pub.pem");
pub const DEMO_ISSUER: &str = "im1-fhir-demo";
pub const DEMO_AUDIENCE: &str = "im1-fhir-demo";
pub const DEMO_KID: &str = "im1-fhir-demo";

/// Clock skew tolerated on `exp` and `nbf`.
pub const LEEWAY_SECONDS: u64 = 60;

/// The claims the proxy reads.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Claims {
    pub iss: String,
    pub aud: Audience,
    pub sub: String,
    pub exp: u64,
    pub nbf: u64,
    pub iat: u64,
    pub jti: String,
    /// One of patient, clinician, system, auditor.
    pub im1_role: String,
    pub scope: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub client_id: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub nhs_number: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub identity_proofing_level: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub rbac_role: Option<String>,
    #[serde(default)]
    pub ods: Vec<String>,
}

/// `aud`: one audience, or several (RFC 7519 section 4.1.3); jsonwebtoken checks this server is among them.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(untagged)]
pub enum Audience {
    One(String),
    Several(Vec<String>),
}

/// What to put in a demo token.
#[derive(Debug, Clone)]
pub struct TokenRequest {
    pub practices: Vec<String>,
    pub role: Role,
    pub nhs_number: Option<String>,
    pub scope: Option<String>,
    pub ttl_seconds: u64,
}

/// The default scopes per role (design.md, fixed interfaces).
pub fn default_scope(role: Role) -> &'static str {
    match role {
        Role::Patient => "patient/*.cruds",
        Role::Clinician => "user/*.cruds",
        Role::System => "system/*.rs",
        Role::Auditor => "user/AuditEvent.rs",
    }
}

pub fn now_seconds() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0)
}

/// Mints a token signed with the demo key.
pub fn mint_demo(request: &TokenRequest) -> Result<String, String> {
    if let Some(bad) = request.practices.iter().find(|ods| !is_ods_code(ods)) {
        return Err(format!("'{bad}' is not an ODS code (three or more letters and digits)"));
    }
    let now = now_seconds();
    let role = request.role;
    let nhs_number = match role {
        Role::Patient => Some(request.nhs_number.clone().unwrap_or_else(|| "9000000009".into())),
        _ => None,
    };
    let claims = Claims {
        iss: DEMO_ISSUER.into(),
        aud: Audience::One(DEMO_AUDIENCE.into()),
        sub: match (&nhs_number, role) {
            (Some(n), _) => format!("nhs-login-{}", short_hash(n)),
            (None, Role::Clinician) => "cis2-demo-clinician".into(),
            (None, Role::System) => "demo-system-client".into(),
            (None, _) => "demo-auditor".into(),
        },
        exp: now + request.ttl_seconds,
        nbf: now.saturating_sub(1),
        iat: now,
        jti: uuid::Uuid::new_v4().to_string(),
        im1_role: role.name().into(),
        scope: request.scope.clone().unwrap_or_else(|| default_scope(role).into()),
        client_id: Some("im1-fhir-demo-app".into()),
        identity_proofing_level: nhs_number.as_ref().map(|_| "P9".into()),
        nhs_number,
        // R8000 is the national RBAC "Clinical Practitioner Access Role".
        rbac_role: (role == Role::Clinician).then(|| "R8000".into()),
        ods: request.practices.clone(),
    };
    let mut header = Header::new(Algorithm::ES256);
    header.kid = Some(DEMO_KID.into());
    let key = EncodingKey::from_ec_pem(DEMO_PRIVATE_KEY).map_err(|e| e.to_string())?;
    encode(&header, &claims, &key).map_err(|e| e.to_string())
}

fn short_hash(text: &str) -> String {
    Sha256::digest(text.as_bytes())
        .iter()
        .take(8)
        .map(|b| format!("{b:02x}"))
        .collect()
}

/// A trusted token issuer.
#[derive(Clone)]
pub struct Issuer {
    pub issuer: String,
    pub audience: String,
    /// Keys by `kid`.
    pub keys: Vec<(String, Algorithm, DecodingKey)>,
    /// Where clients get tokens from it, for `.well-known/smart-configuration` (none for the demo issuer).
    pub token_endpoint: Option<String>,
    pub authorization_endpoint: Option<String>,
}

impl Issuer {
    /// The demo issuer, trusted only by `demo`.
    pub fn demo() -> Result<Issuer, String> {
        let key = DecodingKey::from_ec_pem(DEMO_PUBLIC_KEY).map_err(|e| e.to_string())?;
        Ok(Issuer {
            issuer: DEMO_ISSUER.into(),
            audience: DEMO_AUDIENCE.into(),
            keys: vec![(DEMO_KID.into(), Algorithm::ES256, key)],
            token_endpoint: None,
            authorization_endpoint: None,
        })
    }

    /// An issuer from a JWKS document.
    pub fn from_jwks(issuer: &str, audience: &str, jwks: &str) -> Result<Issuer, String> {
        let set: jsonwebtoken::jwk::JwkSet = serde_json::from_str(jwks).map_err(|e| format!("not a JWKS: {e}"))?;
        let mut keys = Vec::new();
        for jwk in &set.keys {
            let kid = jwk.common.key_id.clone().ok_or("every JWKS key needs a kid")?;
            let alg = match jwk.common.key_algorithm {
                Some(jsonwebtoken::jwk::KeyAlgorithm::RS256) => Algorithm::RS256,
                Some(jsonwebtoken::jwk::KeyAlgorithm::ES256) => Algorithm::ES256,
                Some(jsonwebtoken::jwk::KeyAlgorithm::PS256) => Algorithm::PS256,
                Some(other) => {
                    return Err(format!(
                        "key {kid}: algorithm {other:?} is not accepted (RS256, ES256, PS256)"
                    ))
                }
                None => return Err(format!("key {kid}: it names no algorithm (alg: RS256, ES256 or PS256)")),
            };
            let key = DecodingKey::from_jwk(jwk).map_err(|e| format!("key {kid}: {e}"))?;
            keys.push((kid, alg, key));
        }
        // With no key, no token of this issuer could ever be accepted.
        if keys.is_empty() {
            return Err("the JWKS holds no key".into());
        }
        Ok(Issuer {
            issuer: issuer.into(),
            audience: audience.into(),
            keys,
            token_endpoint: None,
            authorization_endpoint: None,
        })
    }
}

/// The demo public key's SubjectPublicKeyInfo (DER), from its PEM.
fn demo_key_der() -> Option<Vec<u8>> {
    use base64::Engine;
    let pem = String::from_utf8_lossy(DEMO_PUBLIC_KEY);
    let body: String = pem.lines().filter(|line| !line.starts_with("-----")).collect();
    base64::engine::general_purpose::STANDARD.decode(body).ok()
}

/// Whether a JWKS holds the published demo key, as a JWK (its point) or in a certificate of a key's `x5c`
/// chain: `serve` refuses it, since its private half is in this repository.
pub fn holds_demo_key(jwks: &str) -> bool {
    use base64::engine::general_purpose::{STANDARD, URL_SAFE_NO_PAD};
    use base64::Engine;
    use jsonwebtoken::jwk::{AlgorithmParameters, JwkSet};
    // The demo key's point, X then Y: the last 64 bytes of its SubjectPublicKeyInfo.
    let Some(point) = demo_key_der().filter(|der| der.len() > 64) else {
        return false;
    };
    let point = &point[point.len() - 64..];
    // A JWKS that does not parse is refused where it is loaded.
    let Ok(set) = serde_json::from_str::<JwkSet>(jwks) else {
        return false;
    };
    set.keys.iter().any(|jwk| {
        let as_jwk = match &jwk.algorithm {
            AlgorithmParameters::EllipticCurve(ec) => {
                let coordinate = |c: &str| URL_SAFE_NO_PAD.decode(c.trim_end_matches('=')).unwrap_or_default();
                [coordinate(&ec.x), coordinate(&ec.y)].concat() == point
            }
            _ => false,
        };
        let in_certificate = jwk.common.x509_chain.iter().flatten().any(|certificate| {
            STANDARD
                .decode(certificate)
                .is_ok_and(|der| der.windows(64).any(|window| window == point))
        });
        as_jwk || in_certificate
    })
}

/// Why a token was refused. Messages are safe to show: they never echo the token.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum TokenError {
    #[error("no bearer token")]
    Missing,
    #[error("the token is not valid: {0}")]
    Invalid(String),
}

/// Verifies tokens against the trusted issuers, remembering the verdict for each token until it expires.
pub struct Verifier {
    issuers: Vec<Issuer>,
    /// Verdicts by the token's SHA-256: moka's bounded cache (its own eviction, without a lock every request
    /// waits on), each kept a few minutes at most and never past its token's expiry.
    cache: moka::sync::Cache<[u8; 32], (Principal, u64)>,
}

/// Bound on remembered tokens (verification is only a cost, never a risk: a token not found is verified).
const CACHE_LIMIT: u64 = 10_000;
/// How long a verdict is kept, whatever the token's own lifetime.
const CACHE_SECONDS: u64 = 300;

impl Verifier {
    pub fn new(issuers: Vec<Issuer>) -> Verifier {
        Verifier {
            issuers,
            cache: moka::sync::Cache::builder()
                .max_capacity(CACHE_LIMIT)
                .time_to_live(std::time::Duration::from_secs(CACHE_SECONDS))
                .build(),
        }
    }

    pub fn verify(&self, token: &str) -> Result<Principal, TokenError> {
        let digest: [u8; 32] = Sha256::digest(token.as_bytes()).into();
        let now = now_seconds();
        if let Some((principal, exp)) = self.cache.get(&digest) {
            if now <= exp + LEEWAY_SECONDS {
                return Ok(principal);
            }
        }
        let (principal, exp) = self.verify_uncached(token)?;
        self.cache.insert(digest, (principal.clone(), exp));
        Ok(principal)
    }

    fn verify_uncached(&self, token: &str) -> Result<(Principal, u64), TokenError> {
        let invalid = |m: &str| TokenError::Invalid(m.to_string());
        let header = decode_header(token).map_err(|_| invalid("malformed token"))?;
        let kid = header.kid.ok_or_else(|| invalid("the token names no key (kid)"))?;
        let (issuer, alg, key) = self
            .issuers
            .iter()
            .find_map(|i| {
                i.keys
                    .iter()
                    .find(|(k, _, _)| *k == kid)
                    .map(|(_, a, key)| (i, *a, key))
            })
            .ok_or_else(|| invalid("the token is signed by an unknown key"))?;
        if header.alg != alg {
            return Err(invalid("the token's algorithm does not match its key"));
        }
        let mut validation = Validation::new(alg);
        validation.leeway = LEEWAY_SECONDS;
        validation.validate_nbf = true;
        validation.set_audience(&[&issuer.audience]);
        validation.set_issuer(&[&issuer.issuer]);
        validation.set_required_spec_claims(&["exp", "nbf", "iss", "aud", "sub"]);
        let data = decode::<Claims>(token, key, &validation).map_err(|e| {
            use jsonwebtoken::errors::ErrorKind as K;
            invalid(match e.kind() {
                K::ExpiredSignature => "the token has expired",
                K::ImmatureSignature => "the token is not valid yet",
                K::InvalidAudience => "the token is for another audience",
                K::InvalidIssuer => "the token is from an untrusted issuer",
                K::InvalidSignature => "the token's signature does not verify",
                _ => "the token could not be verified",
            })
        })?;
        let claims = data.claims;
        // The subject is who the audit trail names and what page links are bound to.
        if claims.sub.trim().is_empty() {
            return Err(invalid("the token names no subject"));
        }
        if claims.iat > now_seconds() + LEEWAY_SECONDS {
            return Err(invalid("the token was issued in the future"));
        }
        let role = Role::parse(&claims.im1_role).ok_or_else(|| invalid("unknown role"))?;
        let scopes = scopes::parse(&claims.scope).map_err(TokenError::Invalid)?;
        if role == Role::Patient && claims.nhs_number.is_none() {
            return Err(invalid("a patient token needs an NHS number"));
        }
        if !claims.ods.iter().all(|ods| is_ods_code(ods)) {
            return Err(invalid("the token's ods claim holds something that is not an ODS code"));
        }
        let principal = Principal {
            subject: claims.sub,
            role,
            client_id: claims.client_id.unwrap_or_default(),
            scopes,
            nhs_number: claims.nhs_number,
            proofing_level: claims.identity_proofing_level,
            rbac_role: claims.rbac_role,
            practices: distinct(claims.ods),
            token_id: claims.jti,
        };
        Ok((principal, claims.exp))
    }
}

/// An ODS code, as tokens and the configuration name practices: three or more letters and digits (`Y90001`,
/// `RR8`). Anything else is refused, so no claim can name what the audit trail files under a label of its own
/// (`audit::NO_PRACTICE`).
pub fn is_ods_code(ods: &str) -> bool {
    (3..=16).contains(&ods.len()) && ods.bytes().all(|b| b.is_ascii_alphanumeric())
}

/// A token's practices once each, in its order: a practice named twice would be searched twice.
fn distinct(practices: Vec<String>) -> Vec<String> {
    let mut out: Vec<String> = Vec::with_capacity(practices.len());
    for ods in practices {
        if !out.contains(&ods) {
            out.push(ods);
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn request(role: Role) -> TokenRequest {
        TokenRequest {
            practices: vec!["Y90001".into()],
            role,
            nhs_number: None,
            scope: None,
            ttl_seconds: 3600,
        }
    }

    #[test]
    fn the_demo_key_is_found_in_a_jwks_as_a_jwk_or_a_certificate() {
        use base64::Engine;
        let jwk = |x: &str, extra: &str| {
            format!(
                r#"{{"keys": [{{"kty": "EC", "crv": "P-256", "kid": "k", "alg": "ES256", "x": "{x}",
                "y": "7BECx9U_h1YdyKlB0NT4_nxhrNhIsEiFx_ffl3pkgAs"{extra}}}]}}"#
            )
        };
        let demo_x = "XI-Ibh6at02EKJByg_Sn050mKxImejO_w6pEDl58uio";
        let other_x = "YI-Ibh6at02EKJByg_Sn050mKxImejO_w6pEDl58uio";
        assert!(holds_demo_key(&jwk(demo_x, "")));
        assert!(!holds_demo_key(&jwk(other_x, "")));
        // The key inside a certificate of the chain (here its SubjectPublicKeyInfo stands for the certificate).
        let spki = base64::engine::general_purpose::STANDARD.encode(demo_key_der().unwrap());
        assert!(holds_demo_key(&jwk(other_x, &format!(r#", "x5c": ["{spki}"]"#))));
        assert!(!holds_demo_key("not a JWKS"));
    }

    #[test]
    fn demo_tokens_verify_with_their_defaults() {
        let verifier = Verifier::new(vec![Issuer::demo().unwrap()]);
        let principal = verifier.verify(&mint_demo(&request(Role::Patient)).unwrap()).unwrap();
        assert_eq!(principal.role, Role::Patient);
        assert_eq!(principal.nhs_number.as_deref(), Some("9000000009"));
        assert_eq!(principal.proofing_level.as_deref(), Some("P9"));
        assert!(principal.scopes[0].allows("Observation", 'r'));
        let clinician = verifier.verify(&mint_demo(&request(Role::Clinician)).unwrap()).unwrap();
        assert_eq!(clinician.rbac_role.as_deref(), Some("R8000"));
    }

    #[test]
    fn tampered_and_unknown_tokens_are_refused() {
        let verifier = Verifier::new(vec![Issuer::demo().unwrap()]);
        let token = mint_demo(&request(Role::System)).unwrap();
        let mut parts: Vec<String> = token.split('.').map(String::from).collect();
        parts[1] = parts[1].chars().rev().collect();
        assert!(verifier.verify(&parts.join(".")).is_err());
        assert!(Verifier::new(vec![]).verify(&token).is_err());
        assert!(verifier.verify("not.a.token").is_err());
    }

    #[test]
    fn a_token_without_a_subject_or_issued_in_the_future_is_refused() {
        let verifier = Verifier::new(vec![Issuer::demo().unwrap()]);
        let signed = |edit: &dyn Fn(&mut Claims)| {
            let token = mint_demo(&request(Role::Clinician)).unwrap();
            let mut claims = jsonwebtoken::dangerous::insecure_decode::<Claims>(&token)
                .unwrap()
                .claims;
            edit(&mut claims);
            let mut header = Header::new(Algorithm::ES256);
            header.kid = Some(DEMO_KID.into());
            encode(&header, &claims, &EncodingKey::from_ec_pem(DEMO_PRIVATE_KEY).unwrap()).unwrap()
        };
        assert!(verifier.verify(&signed(&|_| {})).is_ok());
        let refused = |token: String| verifier.verify(&token).unwrap_err().to_string();
        assert!(refused(signed(&|c| c.sub = " ".into())).contains("no subject"));
        assert!(refused(signed(&|c| c.iat += 3600)).contains("future"));
        // A patient token must say whose record it is.
        assert!(refused(signed(&|c| {
            c.im1_role = "patient".into();
            c.scope = "patient/*.rs".into();
            c.nhs_number = None;
        }))
        .contains("NHS number"));
        // A practice named twice is one practice.
        let twice = verifier.verify(&signed(&|c| {
            c.ods = vec!["Y90001".into(), "Y90002".into(), "Y90001".into()]
        }));
        assert_eq!(twice.unwrap().practices, vec!["Y90001", "Y90002"]);
        // A practice is an ODS code: not the label the audit trail files users of no practice under.
        for bad in ["-", "", "Y9", "Y9 0001", "Y90001\n"] {
            let named = signed(&|c| c.ods = vec!["Y90001".into(), bad.into()]);
            assert!(refused(named).contains("not an ODS code"), "{bad:?}");
            let mut minted = request(Role::Clinician);
            minted.practices = vec![bad.into()];
            assert!(mint_demo(&minted).is_err(), "{bad:?}");
        }
        // Several audiences (RFC 7519): this server among them, or not.
        let several = |audiences: &[&str]| {
            signed(&|c| c.aud = Audience::Several(audiences.iter().map(|a| a.to_string()).collect()))
        };
        assert!(verifier.verify(&several(&["other", DEMO_AUDIENCE])).is_ok());
        assert!(refused(several(&["other"])).contains("another audience"));
    }

    #[test]
    fn a_token_without_a_key_id_or_with_another_algorithm_is_refused() {
        let verifier = Verifier::new(vec![Issuer::demo().unwrap()]);
        let token = mint_demo(&request(Role::Clinician)).unwrap();
        let claims = jsonwebtoken::dangerous::insecure_decode::<Claims>(&token)
            .unwrap()
            .claims;
        let refused = |token: String| verifier.verify(&token).unwrap_err().to_string();
        let pem = EncodingKey::from_ec_pem(DEMO_PRIVATE_KEY).unwrap();
        let no_kid = encode(&Header::new(Algorithm::ES256), &claims, &pem).unwrap();
        assert!(refused(no_kid).contains("names no key"));
        // HS256 under the demo key's id, its "secret" anything an attacker likes: the algorithm is the key's.
        let mut header = Header::new(Algorithm::HS256);
        header.kid = Some(DEMO_KID.into());
        let forged = encode(&header, &claims, &EncodingKey::from_secret(b"anything")).unwrap();
        assert!(refused(forged).contains("algorithm does not match"));
    }
}
