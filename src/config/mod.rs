//! Configuration for `serve`: read in two levels, raw (TOML, as written) then checked (types the proxy
//! uses), reporting every problem at once with its file, line and column.
//!
//! ```toml
//! [server]
//! listen = "0.0.0.0:8443"
//! public_base_url = "https://fhir.example.nhs.uk/fhir"   # absolute URLs in Bundles and Location
//! request_timeout_ms = 30000
//! header_timeout_ms = 30000   # a request's headers, and an idle keep-alive connection, get this long
//! max_body_bytes = 1048576
//! body_timeout_ms = 10000      # a request body must arrive whole within this (408 past it)
//! tls = { cert = "/etc/im1-fhir/cert.pem", key = "/etc/im1-fhir/key.pem" }
//!
//! [security]
//! id_key = { env = "IM1_FHIR_ID_KEY" }                  # HMAC key for logical ids
//! [[security.issuers]]
//! issuer = "https://auth.example.nhs.uk"
//! audience = "im1-fhir"
//! jwks_file = "/etc/im1-fhir/jwks.json"
//! token_endpoint = "https://auth.example.nhs.uk/token"            # published for SMART clients (optional)
//! authorization_endpoint = "https://auth.example.nhs.uk/authorize"
//!
//! [native]
//! timeout_ms = 10000          # deadline of one native call (504 past it)
//! retries = 2                 # for safe (read) calls only
//! max_in_flight = 8           # per practice and surface: the proxy queues rather than hammer a supplier
//! breaker = { trip_after = 5, open_ms = 30000 }   # calls left unanswered in a row that stop calls to that API of
//!                                                # the practice for open_ms (503 at once); trip_after = 0: never
//!
//! [[practices]]
//! ods = "Y90001"
//! supplier = "emis"
//! base_url = "https://emis.example/emis"
//! emis = { application_id = "...", partner_client_id = "...", partner_client_secret = { env = "EMIS_SECRET" }, cdb = "50002" }
//! requests_per_second = { patient = 9 }   # the pace the supplier allows, per surface: calls wait for it
//! ```

pub mod secret;

use secret::{Secret, SecretRef};
use serde::Deserialize;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use toml::Spanned;

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawConfig {
    #[serde(default)]
    server: RawServer,
    security: RawSecurity,
    #[serde(default)]
    native: RawNative,
    #[serde(default)]
    practices: Vec<RawPractice>,
    #[serde(default)]
    audit: RawAudit,
    #[serde(default)]
    cache: RawCache,
}

/// The longest `[cache]` lifetime, in seconds.
const MAX_CACHE_SECONDS: u64 = 86_400;

#[derive(Debug, Deserialize, Default)]
#[serde(deny_unknown_fields)]
struct RawCache {
    /// Seconds an answer is kept; 0 switches the cache off.
    ttl_seconds: Option<Spanned<u64>>,
    max_resources: Option<u64>,
    /// Seconds a patient's linked records are remembered; 0 asks at every lookup.
    linkage_seconds: Option<Spanned<u64>>,
}

#[derive(Debug, Deserialize, Default)]
#[serde(deny_unknown_fields)]
struct RawAudit {
    path: Option<Spanned<String>>,
    synchronous: Option<Spanned<String>>,
    forward_jsonl: Option<Spanned<String>>,
}

#[derive(Debug, Deserialize, Default)]
#[serde(deny_unknown_fields)]
struct RawServer {
    listen: Option<Spanned<String>>,
    public_base_url: Option<Spanned<String>>,
    request_timeout_ms: Option<Spanned<u64>>,
    header_timeout_ms: Option<u64>,
    max_body_bytes: Option<usize>,
    body_timeout_ms: Option<u64>,
    tls: Option<RawTls>,
    /// Requests per second per client; 0 switches the limit off.
    client_requests_per_second: Option<u32>,
    client_burst: Option<u32>,
    max_requests_in_flight: Option<Spanned<usize>>,
    max_connections: Option<Spanned<usize>>,
    /// Addresses or CIDR blocks of proxies whose X-Forwarded-For is believed.
    trusted_proxies: Option<Vec<Spanned<String>>>,
    /// Failed authentications per minute per client address; 0 switches the limit off.
    failed_auth_per_minute: Option<u32>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawTls {
    cert: Spanned<String>,
    key: Spanned<String>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawSecurity {
    id_key: Spanned<SecretRef>,
    #[serde(default)]
    issuers: Vec<RawIssuer>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawIssuer {
    issuer: Spanned<String>,
    audience: String,
    jwks_file: Spanned<String>,
    token_endpoint: Option<Spanned<String>>,
    authorization_endpoint: Option<Spanned<String>>,
}

#[derive(Debug, Deserialize, Default)]
#[serde(deny_unknown_fields)]
struct RawNative {
    timeout_ms: Option<Spanned<u64>>,
    retries: Option<u32>,
    max_in_flight: Option<Spanned<usize>>,
    breaker: Option<RawBreaker>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawBreaker {
    trip_after: Option<u32>,
    open_ms: Option<Spanned<u64>>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawPractice {
    ods: Spanned<String>,
    supplier: Spanned<String>,
    base_url: Spanned<String>,
    emis: Option<Spanned<RawEmis>>,
    medicus: Option<Spanned<RawMedicus>>,
    systmone: Option<Spanned<RawSystmOne>>,
    free_text_roles: Option<Vec<Spanned<String>>>,
    requests_per_second: Option<Spanned<RawPace>>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawPace {
    transaction: Option<u32>,
    patient: Option<u32>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawSystmOne {
    provider_id: String,
    api_key: SecretRef,
    device_id: String,
    transaction_address: String,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawMedicus {
    app_id: String,
    tenant: String,
    /// The `kid` Medicus's developer portal assigned to the key.
    key_id: String,
    private_key: SecretRef,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawEmis {
    application_id: String,
    partner_client_id: String,
    partner_client_secret: SecretRef,
    cdb: String,
}

/// Checked configuration.
#[derive(Debug, Clone)]
pub struct Config {
    pub server: ServerConfig,
    pub id_key: Secret,
    pub issuers: Vec<IssuerConfig>,
    pub native: NativeConfig,
    pub practices: Vec<PracticeConfig>,
    pub audit: crate::audit::AuditConfig,
    pub cache: crate::cache::CacheConfig,
}

#[derive(Debug, Clone)]
pub struct ServerConfig {
    pub listen: SocketAddr,
    pub public_base_url: Option<String>,
    pub request_timeout_ms: u64,
    /// How long a client may take to send a request's headers (and an HTTP/1.1 connection may sit idle between
    /// requests) before the connection is closed: a slow or silent client cannot hold connections forever.
    pub header_timeout_ms: u64,
    pub max_body_bytes: usize,
    /// How long a request body may take to arrive whole: a client trickling one cannot hold a request open
    /// until the whole request's deadline.
    pub body_timeout_ms: u64,
    pub tls: Option<TlsConfig>,
    /// Requests per second each client (token `client_id`) may make, and the burst above it; None: no limit.
    pub client_rate: Option<ClientRate>,
    /// FHIR requests handled at once; past it a request is turned away (503) at once, so that a surge
    /// cannot hold memory and connections without bound.
    pub max_requests_in_flight: usize,
    /// Connections open at once; past it a new one is closed as soon as it is accepted, so a flood of idle
    /// connections cannot take every file descriptor.
    pub max_connections: usize,
    /// Proxies (load balancers) whose `X-Forwarded-For` names the client (see `server::client_address`).
    pub trusted_proxies: Vec<ipnet::IpNet>,
    /// Failed authentications (401s) per minute each client address may cause before its requests are
    /// refused for a while (see `server::failed_auth`); None: no limit.
    pub failed_auth_per_minute: Option<std::num::NonZeroU32>,
}

/// A per-client request rate.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ClientRate {
    pub per_second: u32,
    pub burst: u32,
}

impl Default for ServerConfig {
    fn default() -> Self {
        ServerConfig {
            listen: SocketAddr::from(([127, 0, 0, 1], 8080)),
            public_base_url: None,
            request_timeout_ms: 30_000,
            header_timeout_ms: 30_000,
            max_body_bytes: 1024 * 1024,
            body_timeout_ms: 10_000,
            tls: None,
            client_rate: Some(ClientRate {
                per_second: 100,
                burst: 200,
            }),
            max_requests_in_flight: 1024,
            max_connections: 4096,
            trusted_proxies: Vec::new(),
            // Off unless asked for: clients sharing an address share its budget (see `server::failed_auth`).
            failed_auth_per_minute: None,
        }
    }
}

#[derive(Debug, Clone)]
pub struct TlsConfig {
    pub cert: PathBuf,
    pub key: PathBuf,
}

#[derive(Debug, Clone)]
pub struct IssuerConfig {
    pub issuer: String,
    pub audience: String,
    pub jwks: String,
    /// The authorisation server's endpoints, published in `.well-known/smart-configuration`.
    pub token_endpoint: Option<String>,
    pub authorization_endpoint: Option<String>,
}

#[derive(Debug, Clone)]
pub struct NativeConfig {
    pub timeout_ms: u64,
    pub retries: u32,
    pub max_in_flight: usize,
    /// When a GP system that has stopped answering is no longer called for a while.
    pub breaker: BreakerSettings,
}

impl Default for NativeConfig {
    fn default() -> Self {
        NativeConfig {
            timeout_ms: 10_000,
            retries: 2,
            max_in_flight: 8,
            breaker: BreakerSettings::default(),
        }
    }
}

/// When calls to a GP system that has stopped answering stop for a while (see `backend::breaker`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct BreakerSettings {
    /// Unanswered calls in a row that open the circuit; 0 never opens it.
    pub trip_after: u32,
    pub open_for: std::time::Duration,
}

impl Default for BreakerSettings {
    fn default() -> Self {
        BreakerSettings {
            trip_after: 5,
            open_for: std::time::Duration::from_secs(30),
        }
    }
}

/// Which GP system a practice runs.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Supplier {
    Emis,
    SystmOne,
    Medicus,
}

impl Supplier {
    /// The folder name under `mappings/`.
    pub fn key(self) -> &'static str {
        match self {
            Supplier::Emis => "emis",
            Supplier::SystmOne => "systmone",
            Supplier::Medicus => "medicus",
        }
    }

    /// The system's name, as `meta.source` and the CapabilityStatement state it.
    pub fn display(self) -> &'static str {
        match self {
            Supplier::Emis => "EMIS Web",
            Supplier::SystmOne => "TPP SystmOne",
            Supplier::Medicus => "Medicus",
        }
    }

    pub fn parse(text: &str) -> Option<Supplier> {
        match text {
            "emis" => Some(Supplier::Emis),
            "systmone" => Some(Supplier::SystmOne),
            "medicus" => Some(Supplier::Medicus),
            _ => None,
        }
    }
}

#[derive(Debug, Clone)]
pub struct PracticeConfig {
    pub ods: String,
    pub supplier: Supplier,
    pub base_url: String,
    pub credentials: Credentials,
    pub policy: PracticePolicy,
    pub pace: NativePace,
}

/// How many native calls a second a practice's supplier allows on each surface (none: no limit). Suppliers
/// limit the rate of calls (EMIS per application, TPP per device and per session, Medicus per application
/// and tenant) and refuse the excess; the proxy waits for its turn instead, so it never hammers them.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct NativePace {
    pub transaction: Option<std::num::NonZeroU32>,
    pub patient: Option<std::num::NonZeroU32>,
}

/// A practice's data-minimisation policy.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PracticePolicy {
    /// Roles (`patient`, `clinician`, `system`) that receive free text (notes, free-text results) and
    /// documents; for the others they are withheld with a coded warning.
    pub free_text_roles: Vec<String>,
}

impl Default for PracticePolicy {
    /// Direct care (the patient and clinicians) sees free text; system clients, often for secondary use, do
    /// not unless the practice says so.
    fn default() -> Self {
        PracticePolicy {
            free_text_roles: vec!["patient".into(), "clinician".into()],
        }
    }
}

/// A practice's transaction-API credentials, per supplier.
#[derive(Debug, Clone)]
pub enum Credentials {
    Emis(EmisCredentials),
    Medicus(MedicusCredentials),
    SystmOne(SystmOneCredentials),
}

/// SystmOne: the PFS provider id, and the Client Integration API key, device id and TCP address.
#[derive(Debug, Clone)]
pub struct SystmOneCredentials {
    pub provider_id: String,
    pub api_key: Secret,
    pub device_id: String,
    /// `HOST:PORT` of the Client Integration (framed XML over TCP) endpoint.
    pub transaction_address: String,
}

/// A Medicus application's identity: its App ID (`iss`), the practice's tenant (`aud`) and the RSA key that
/// signs a fresh JWT for every call.
#[derive(Debug, Clone)]
pub struct MedicusCredentials {
    pub app_id: String,
    pub tenant: String,
    /// The JWT header's `kid`: the key id Medicus's developer portal assigned to the key (confirmed).
    pub key_id: String,
    /// PEM (PKCS#8) of the RS256 signing key.
    pub private_key: Secret,
}

#[derive(Debug, Clone)]
pub struct EmisCredentials {
    pub application_id: String,
    pub partner_client_id: String,
    pub partner_client_secret: Secret,
    pub cdb: String,
}

/// A configuration problem with its place.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConfigError {
    pub file: String,
    pub line: usize,
    pub col: usize,
    pub message: String,
}

impl std::fmt::Display for ConfigError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // A file that could not be read has no position in it.
        if self.line == 0 {
            return write!(f, "{}: {}", self.file, self.message);
        }
        write!(f, "{}:{}:{}: {}", self.file, self.line, self.col, self.message)
    }
}

/// Reads and checks a configuration file.
pub fn load(path: &Path) -> Result<Config, Vec<ConfigError>> {
    let file = path.display().to_string();
    let text = std::fs::read_to_string(path).map_err(|e| {
        vec![ConfigError {
            file: file.clone(),
            line: 0,
            col: 0,
            message: format!("cannot read: {e}"),
        }]
    })?;
    parse(&file, &text)
}

/// The most `max_connections` may say (a million: far past any open-files limit).
const MAX_CONNECTIONS: usize = 1_000_000;

/// `HOST:PORT`, as a TCP connection is opened to it (a name or an address, and a port).
fn is_host_and_port(text: &str) -> bool {
    text.rsplit_once(':').is_some_and(|(host, port)| {
        // An IPv6 address is bracketed (`[::1]:9000`), so its own colons are not the port's.
        let bare_v6 = host.contains(':') && !(host.starts_with('[') && host.ends_with(']'));
        !host.trim().is_empty()
            && !bare_v6
            && !host.contains(char::is_whitespace)
            && port.parse::<u16>().is_ok_and(|p| p > 0)
    })
}

/// The `demo` command's id and page-link key: fixed, so ids stay stable across restarts of the demo, and
/// refused by `serve`.
pub const DEMO_ID_KEY: &str = "im1-fhir demo id and page-link key (published)";

/// Parses and checks configuration text.
pub fn parse(file: &str, text: &str) -> Result<Config, Vec<ConfigError>> {
    let at = |span: std::ops::Range<usize>, message: String| {
        let (line, col) = line_col(text, span.start);
        ConfigError {
            file: file.to_string(),
            line,
            col,
            message,
        }
    };
    let raw: RawConfig =
        toml::from_str(text).map_err(|e| vec![at(e.span().unwrap_or(0..0), e.message().to_string())])?;
    let mut errors = Vec::new();
    let mut server = ServerConfig::default();
    if let Some(listen) = &raw.server.listen {
        match listen.get_ref().parse() {
            Ok(addr) => server.listen = addr,
            Err(_) => errors.push(at(listen.span(), "listen must be HOST:PORT with a numeric host".into())),
        }
    }
    if let Some(base) = &raw.server.public_base_url {
        let url = base.get_ref().trim_end_matches('/');
        if !(url.starts_with("https://") || url.starts_with("http://")) {
            errors.push(at(
                base.span(),
                "public_base_url must be an absolute http(s) URL".into(),
            ));
        }
        server.public_base_url = Some(url.to_string());
    }
    match &raw.server.request_timeout_ms {
        // Every request would be past its deadline before it began.
        Some(ms) if *ms.get_ref() == 0 => errors.push(at(ms.span(), "request_timeout_ms must be at least 1".into())),
        Some(ms) => server.request_timeout_ms = *ms.get_ref(),
        None => {}
    }
    server.header_timeout_ms = raw.server.header_timeout_ms.unwrap_or(server.header_timeout_ms).max(1);
    server.max_body_bytes = raw.server.max_body_bytes.unwrap_or(server.max_body_bytes);
    server.body_timeout_ms = raw.server.body_timeout_ms.unwrap_or(server.body_timeout_ms).max(1);
    // A bound of 0 would admit nothing; elsewhere 0 switches a limit off, so it is refused rather than read
    // either way.
    let mut at_least_one = |value: &Option<Spanned<usize>>, name: &str, default: usize| match value {
        Some(v) if *v.get_ref() == 0 => {
            errors.push(at(v.span(), format!("{name} must be at least 1")));
            default
        }
        Some(v) => *v.get_ref(),
        None => default,
    };
    server.max_requests_in_flight = at_least_one(
        &raw.server.max_requests_in_flight,
        "server.max_requests_in_flight",
        server.max_requests_in_flight,
    );
    server.max_connections = at_least_one(
        &raw.server.max_connections,
        "server.max_connections",
        server.max_connections,
    )
    .min(MAX_CONNECTIONS);
    let native_in_flight = at_least_one(&raw.native.max_in_flight, "native.max_in_flight", 8);
    if let Some(per_second) = raw.server.client_requests_per_second {
        server.client_rate = (per_second > 0).then(|| ClientRate {
            per_second,
            burst: raw.server.client_burst.unwrap_or(per_second * 2).max(1),
        });
    }
    for entry in raw.server.trusted_proxies.iter().flatten() {
        match parse_network(entry.get_ref()) {
            Ok(network) => server.trusted_proxies.push(network),
            Err(problem) => errors.push(at(
                entry.span(),
                format!("trusted_proxies: '{}' {problem}", entry.get_ref()),
            )),
        }
    }
    if let Some(per_minute) = raw.server.failed_auth_per_minute {
        server.failed_auth_per_minute = std::num::NonZeroU32::new(per_minute);
    }
    if let Some(tls) = &raw.server.tls {
        for (file_ref, what) in [(&tls.cert, "certificate"), (&tls.key, "key")] {
            if !Path::new(file_ref.get_ref()).is_file() {
                errors.push(at(
                    file_ref.span(),
                    format!("TLS {what} file {} does not exist", file_ref.get_ref()),
                ));
            }
        }
        let (cert, key) = (Path::new(tls.cert.get_ref()), Path::new(tls.key.get_ref()));
        if cert.is_file() && key.is_file() {
            // As `serve` reads them, so a pair that does not make a TLS server is said here, not at start-up.
            if let Err(e) = crate::server::listener::tls_acceptor(cert, key) {
                errors.push(at(tls.cert.span(), format!("TLS: {e}")));
            }
        }
        server.tls = Some(TlsConfig {
            cert: cert.into(),
            key: key.into(),
        });
    }
    let id_key = match raw.security.id_key.get_ref().resolve() {
        // Published in this repository: with it anyone could forge ids and page links.
        Ok(key) if key.expose() == DEMO_ID_KEY => {
            errors.push(at(
                raw.security.id_key.span(),
                "id_key is the demo's published key: use a secret of your own".into(),
            ));
            Secret::new("")
        }
        Ok(key) if key.expose().len() >= 32 => key,
        Ok(_) => {
            errors.push(at(
                raw.security.id_key.span(),
                "id_key must be at least 32 characters".into(),
            ));
            Secret::new("")
        }
        Err(e) => {
            errors.push(at(raw.security.id_key.span(), e));
            Secret::new("")
        }
    };
    let mut issuers = Vec::new();
    for issuer in &raw.security.issuers {
        let mut endpoint = |url: &Option<Spanned<String>>, name: &str| {
            let url = url.as_ref()?;
            if !url.get_ref().starts_with("https://") && !url.get_ref().starts_with("http://") {
                errors.push(at(url.span(), format!("{name} must be an absolute http(s) URL")));
            }
            Some(url.get_ref().clone())
        };
        let token_endpoint = endpoint(&issuer.token_endpoint, "token_endpoint");
        let authorization_endpoint = endpoint(&issuer.authorization_endpoint, "authorization_endpoint");
        match std::fs::read_to_string(issuer.jwks_file.get_ref()) {
            Ok(jwks) => {
                if crate::auth::token::holds_demo_key(&jwks) {
                    errors.push(at(
                        issuer.jwks_file.span(),
                        "the published demo key is refused outside `demo`".into(),
                    ));
                } else if let Err(e) =
                    crate::auth::token::Issuer::from_jwks(issuer.issuer.get_ref(), &issuer.audience, &jwks)
                {
                    // As `serve` reads it, so a JWKS it would refuse is said here, with where it is named.
                    errors.push(at(
                        issuer.jwks_file.span(),
                        format!("{}: {e}", issuer.jwks_file.get_ref()),
                    ));
                }
                issuers.push(IssuerConfig {
                    issuer: issuer.issuer.get_ref().clone(),
                    audience: issuer.audience.clone(),
                    jwks,
                    token_endpoint,
                    authorization_endpoint,
                })
            }
            Err(e) => errors.push(at(issuer.jwks_file.span(), format!("cannot read JWKS: {e}"))),
        }
        if issuer.issuer.get_ref() == crate::auth::token::DEMO_ISSUER {
            errors.push(at(
                issuer.issuer.span(),
                "the demo issuer is refused outside `demo`".into(),
            ));
        }
    }
    // (One named whose JWKS could not be read is said above, not again here.)
    if issuers.is_empty() && raw.security.issuers.is_empty() {
        errors.push(at(0..0, "security.issuers: at least one token issuer is needed".into()));
    }
    let mut breaker = BreakerSettings::default();
    if let Some(raw_breaker) = &raw.native.breaker {
        breaker.trip_after = raw_breaker.trip_after.unwrap_or(breaker.trip_after);
        match &raw_breaker.open_ms {
            Some(ms) if *ms.get_ref() == 0 => {
                errors.push(at(ms.span(), "native.breaker.open_ms must be at least 1".into()))
            }
            Some(ms) => breaker.open_for = std::time::Duration::from_millis(*ms.get_ref()),
            None => {}
        }
    }
    let native = NativeConfig {
        timeout_ms: raw.native.timeout_ms.as_ref().map_or(10_000, |ms| *ms.get_ref()),
        retries: raw.native.retries.unwrap_or(2),
        max_in_flight: native_in_flight,
        breaker,
    };
    // A request's deadline before one native call's would cut every slow call off before it could time out.
    if server.request_timeout_ms > 0 && server.request_timeout_ms <= native.timeout_ms {
        // Said where it is written: the request's deadline, or else the native one (the other is the default).
        let (span, default) = match (&raw.server.request_timeout_ms, &raw.native.timeout_ms) {
            (Some(ms), _) => (ms.span(), ""),
            (None, Some(ms)) => (ms.span(), " by default"),
            (None, None) => (0..0, ""),
        };
        errors.push(at(
            span,
            format!(
                "server.request_timeout_ms ({}{default}) must be longer than native.timeout_ms ({}): a request \
                 would be cut off before its native call could time out",
                server.request_timeout_ms, native.timeout_ms
            ),
        ));
    }
    // Every interaction's AuditEvent is committed here before its response leaves (see src/audit).
    let mut audit = crate::audit::AuditConfig::new(
        raw.audit
            .path
            .as_ref()
            .map_or("im1-fhir-audit.db", |p| p.get_ref().as_str()),
    );
    // The store, and the copy forwarded, in folders that exist: a file that could never be written is said now,
    // not as a failure (or a warning) once serving.
    for (name, path) in [
        ("audit.path", &raw.audit.path),
        ("audit.forward_jsonl", &raw.audit.forward_jsonl),
    ] {
        let Some(path) = path else { continue };
        let folder = Path::new(path.get_ref()).parent().filter(|f| !f.as_os_str().is_empty());
        if folder.is_some_and(|f| !f.is_dir()) {
            errors.push(at(
                path.span(),
                format!("{name}: the folder of {} does not exist", path.get_ref()),
            ));
        }
    }
    if let Some(sync) = &raw.audit.synchronous {
        match sync.get_ref().as_str() {
            "normal" => audit.synchronous = crate::audit::Synchronous::Normal,
            "full" => audit.synchronous = crate::audit::Synchronous::Full,
            _ => errors.push(at(sync.span(), "audit.synchronous must be normal or full".into())),
        }
    }
    audit.forward_jsonl = raw.audit.forward_jsonl.as_ref().map(|p| PathBuf::from(p.get_ref()));
    let defaults = crate::cache::CacheConfig::default();
    // A day at most: answers and linkages are short-lived by design (and the cache refuses lifetimes of years).
    let mut lifetime = |value: &Option<Spanned<u64>>, name: &str, default: std::time::Duration| match value {
        None => default,
        Some(seconds) if *seconds.get_ref() <= MAX_CACHE_SECONDS => std::time::Duration::from_secs(*seconds.get_ref()),
        Some(seconds) => {
            errors.push(at(
                seconds.span(),
                format!("cache.{name} must be at most {MAX_CACHE_SECONDS}"),
            ));
            default
        }
    };
    let cache = crate::cache::CacheConfig {
        ttl: lifetime(&raw.cache.ttl_seconds, "ttl_seconds", defaults.ttl),
        max_resources: raw.cache.max_resources.unwrap_or(defaults.max_resources),
        linkage_ttl: lifetime(&raw.cache.linkage_seconds, "linkage_seconds", defaults.linkage_ttl),
    };
    let mut practices = Vec::new();
    for practice in &raw.practices {
        let ods = practice.ods.get_ref().clone();
        if !crate::auth::token::is_ods_code(&ods) {
            errors.push(at(practice.ods.span(), format!("'{ods}' is not an ODS code")));
        }
        if practices.iter().any(|p: &PracticeConfig| p.ods == ods) {
            errors.push(at(practice.ods.span(), format!("practice {ods} is configured twice")));
        }
        let base = practice.base_url.get_ref();
        if !(base.starts_with("https://") || base.starts_with("http://")) {
            errors.push(at(
                practice.base_url.span(),
                "base_url must be an absolute http(s) URL".into(),
            ));
        }
        let Some(supplier) = Supplier::parse(practice.supplier.get_ref()) else {
            errors.push(at(
                practice.supplier.span(),
                "supplier must be emis, systmone or medicus".into(),
            ));
            continue;
        };
        let credentials = match (supplier, &practice.emis) {
            (Supplier::Emis, Some(emis)) if emis.get_ref().cdb.trim().is_empty() => {
                errors.push(at(
                    emis.span(),
                    "emis.cdb (the practice's EMIS database number) is empty".into(),
                ));
                continue;
            }
            (Supplier::Emis, Some(emis)) => match emis.get_ref().partner_client_secret.resolve() {
                Ok(secret) => Credentials::Emis(EmisCredentials {
                    application_id: emis.get_ref().application_id.clone(),
                    partner_client_id: emis.get_ref().partner_client_id.clone(),
                    partner_client_secret: secret,
                    cdb: emis.get_ref().cdb.clone(),
                }),
                Err(e) => {
                    errors.push(at(emis.span(), e));
                    continue;
                }
            },
            (Supplier::SystmOne, _) if practice.systmone.is_some() => {
                let Some(tpp) = &practice.systmone else { continue };
                if !is_host_and_port(&tpp.get_ref().transaction_address) {
                    errors.push(at(tpp.span(), "systmone.transaction_address must be HOST:PORT".into()));
                    continue;
                }
                match tpp.get_ref().api_key.resolve() {
                    Ok(key) => Credentials::SystmOne(SystmOneCredentials {
                        provider_id: tpp.get_ref().provider_id.clone(),
                        api_key: key,
                        device_id: tpp.get_ref().device_id.clone(),
                        transaction_address: tpp.get_ref().transaction_address.clone(),
                    }),
                    Err(e) => {
                        errors.push(at(tpp.span(), e));
                        continue;
                    }
                }
            }
            (Supplier::SystmOne, _) => {
                errors.push(at(
                    practice.supplier.span(),
                    "a SystmOne practice needs a `systmone` credentials table".into(),
                ));
                continue;
            }
            (Supplier::Medicus, _) if practice.medicus.is_some() => {
                let Some(medicus) = &practice.medicus else { continue };
                match medicus.get_ref().private_key.resolve() {
                    // Every call is signed with it: one that is not an RSA key would fail every request.
                    Ok(key) if jsonwebtoken::EncodingKey::from_rsa_pem(key.expose().as_bytes()).is_err() => {
                        errors.push(at(
                            medicus.span(),
                            "medicus.private_key is not an RSA private key in PEM".into(),
                        ));
                        continue;
                    }
                    Ok(key) => Credentials::Medicus(MedicusCredentials {
                        app_id: medicus.get_ref().app_id.clone(),
                        tenant: medicus.get_ref().tenant.clone(),
                        key_id: medicus.get_ref().key_id.clone(),
                        private_key: key,
                    }),
                    Err(e) => {
                        errors.push(at(medicus.span(), e));
                        continue;
                    }
                }
            }
            (Supplier::Medicus, _) => {
                errors.push(at(
                    practice.supplier.span(),
                    "a Medicus practice needs a `medicus` credentials table".into(),
                ));
                continue;
            }
            (Supplier::Emis, None) => {
                errors.push(at(
                    practice.supplier.span(),
                    "an EMIS practice needs an `emis` credentials table".into(),
                ));
                continue;
            }
        };
        let mut policy = PracticePolicy::default();
        if let Some(roles) = &practice.free_text_roles {
            for role in roles {
                if !matches!(role.get_ref().as_str(), "patient" | "clinician" | "system") {
                    errors.push(at(
                        role.span(),
                        "free_text_roles are patient, clinician or system".into(),
                    ));
                }
            }
            policy.free_text_roles = roles.iter().map(|r| r.get_ref().clone()).collect();
        }
        let mut pace = NativePace::default();
        if let Some(raw) = &practice.requests_per_second {
            let rate = |n: Option<u32>| n.map(std::num::NonZeroU32::new);
            match (rate(raw.get_ref().transaction), rate(raw.get_ref().patient)) {
                (Some(None), _) | (_, Some(None)) => errors.push(at(
                    raw.span(),
                    "requests_per_second is at least 1 (leave a surface out for no limit)".into(),
                )),
                (transaction, patient) => {
                    pace = NativePace {
                        transaction: transaction.flatten(),
                        patient: patient.flatten(),
                    }
                }
            }
        }
        practices.push(PracticeConfig {
            ods,
            supplier,
            base_url: base.trim_end_matches('/').to_string(),
            credentials,
            policy,
            pace,
        });
    }
    if errors.is_empty() {
        Ok(Config {
            server,
            id_key,
            issuers,
            native,
            practices,
            audit,
            cache,
        })
    } else {
        Err(errors)
    }
}

/// A trusted proxy's address (`10.0.0.7`, one host) or network (`10.0.0.0/8`), or what is wrong with it.
/// Refused as well as text that is neither: a network that trusts every address (every client could then name
/// itself), one with host bits set (`10.0.0.7/8`: a /32 mistyped, or a wider trust than meant), and IPv4 written
/// as IPv6 (`::ffff:10.0.0.7`), which would never match (client addresses are compared as IPv4).
fn parse_network(text: &str) -> Result<ipnet::IpNet, &'static str> {
    let text = text.trim();
    let network = text
        .parse::<ipnet::IpNet>()
        .ok()
        .or_else(|| text.parse::<std::net::IpAddr>().ok().map(ipnet::IpNet::from))
        .ok_or("is not an IP address or CIDR block")?;
    if network.prefix_len() == 0 {
        return Err("trusts every address: list the load balancers' own");
    }
    if network != network.trunc() {
        return Err("has host bits set: write one host as /32 (/128), or the network's first address");
    }
    match network {
        ipnet::IpNet::V6(v6) if v6.addr().to_ipv4_mapped().is_some() => {
            Err("is IPv4 written as IPv6: write it as IPv4")
        }
        network => Ok(network),
    }
}

fn line_col(text: &str, offset: usize) -> (usize, usize) {
    let before = &text[..offset.min(text.len())];
    let line = before.matches('\n').count() + 1;
    let col = before.rsplit('\n').next().map_or(0, |l| l.chars().count()) + 1;
    (line, col)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_problem_has_a_line() {
        let text = "[server]\nlisten = \"nowhere\"\n\n[security]\nid_key = { env = \"IM1_TEST_UNSET_VARIABLE\" }\n\n[[practices]]\nods = \"Y90001\"\nsupplier = \"vision\"\nbase_url = \"ftp://x\"\n";
        let errors = parse("im1.toml", text).unwrap_err();
        let lines: Vec<usize> = errors.iter().map(|e| e.line).collect();
        assert!(lines.contains(&2), "{errors:?}");
        assert!(lines.contains(&5), "{errors:?}");
        assert!(lines.contains(&9), "{errors:?}");
        assert!(lines.contains(&10), "{errors:?}");
    }

    #[test]
    fn syntax_errors_and_unknown_keys_are_placed() {
        let errors = parse("im1.toml", "[server]\nlisten = \"127.0.0.1:1\"\ncolour = 1\n").unwrap_err();
        assert_eq!(errors[0].line, 3, "{errors:?}");
        assert!(errors[0].message.contains("colour"), "{errors:?}");
    }

    /// A JWKS of one P-256 public key made for these tests (its private key was not kept).
    const TEST_JWKS: &str = r#"{"keys":[{"kty":"EC","crv":"P-256","kid":"test","alg":"ES256",
        "x":"VoH8iKmknIcSjistpCRaCQnCHNPDhM7YqDf6GltkI9E","y":"GaFZpUxk5Uu2LYI23UMtmAN4P-nbL0rXwehqU3RFz-Q"}]}"#;

    /// Bounds of 0, a JWKS with no key and an audit copy whose folder is missing are said with their places;
    /// an issuer whose JWKS cannot be read is said once, not again as no issuer at all.
    #[test]
    fn what_would_admit_or_accept_nothing_is_said() {
        let dir = tempfile::tempdir().unwrap();
        let text = with_security(
            &dir,
            "[server]\nmax_connections = 0\nmax_requests_in_flight = 0\n\n[native]\nmax_in_flight = 0\n\
             breaker = { trip_after = 0, open_ms = 0 }\n\n[audit]\nforward_jsonl = \"/nonexistent/im1/x.jsonl\"\n",
        );
        let errors = parse("im1.toml", &text).unwrap_err();
        let said = |words: &str| errors.iter().any(|e| e.message.contains(words) && e.line > 1);
        assert!(said("server.max_connections must be at least 1"), "{errors:?}");
        assert!(said("server.max_requests_in_flight must be at least 1"), "{errors:?}");
        assert!(said("native.max_in_flight must be at least 1"), "{errors:?}");
        assert!(said("native.breaker.open_ms must be at least 1"), "{errors:?}");
        assert!(said("audit.forward_jsonl: the folder of"), "{errors:?}");
        let text = with_security(
            &dir,
            "[server]\nrequest_timeout_ms = 5000\n\n[native]\ntimeout_ms = 5000\n",
        );
        let errors = parse("im1.toml", &text).unwrap_err();
        let said = |words: &str| errors.iter().any(|e| e.message.contains(words) && e.line > 1);
        assert!(said("must be longer than native.timeout_ms (5000)"), "{errors:?}");
        let text = with_security(&dir, "[native]\ntimeout_ms = 30000\n");
        let errors = parse("im1.toml", &text).unwrap_err();
        let placed = errors
            .iter()
            .find(|e| e.message.contains("(30000 by default) must be longer"));
        assert!(placed.is_some_and(|e| e.line > 1), "{errors:?}");
        let text = with_security(&dir, "");
        std::fs::write(dir.path().join("jwks.json"), r#"{"keys":[]}"#).unwrap();
        let errors = parse("im1.toml", &text).unwrap_err();
        assert!(
            errors.iter().any(|e| e.message.contains("the JWKS holds no key")),
            "{errors:?}"
        );
        let missing = with_security(&dir, "").replace("jwks.json", "missing.json");
        let errors = parse("im1.toml", &missing).unwrap_err();
        assert!(
            errors.iter().any(|e| e.message.contains("cannot read JWKS")),
            "{errors:?}"
        );
        assert!(
            !errors.iter().any(|e| e.message.contains("at least one token issuer")),
            "{errors:?}"
        );
    }

    /// A valid `[security]` section (its key and JWKS written to `dir`) followed by `rest`.
    fn with_security(dir: &tempfile::TempDir, rest: &str) -> String {
        let (key, jwks) = (dir.path().join("id.key"), dir.path().join("jwks.json"));
        std::fs::write(&key, "a test key of at least thirty-two characters").unwrap();
        std::fs::write(&jwks, TEST_JWKS).unwrap();
        format!(
            "[security]\nid_key = {{ file = {key:?} }}\n[[security.issuers]]\nissuer = \"https://auth.test\"\n\
             audience = \"im1-fhir\"\njwks_file = {jwks:?}\n\n{rest}"
        )
    }

    #[test]
    fn the_readmes_example_configuration_uses_only_known_keys() {
        let readme = include_str!("../../README.md");
        let block = readme
            .split("```toml\n")
            .skip(1)
            .filter_map(|rest| rest.split("```").next())
            .find(|block| block.starts_with("[server]"))
            .expect("the README shows a configuration");
        // Its files do not exist here; what matters is that every key is one the server reads.
        let errors = parse("README.md", block).err().unwrap_or_default();
        assert!(
            errors
                .iter()
                .all(|e| !e.message.contains("unknown field") && !e.message.contains("invalid")),
            "{errors:?}"
        );
    }

    #[test]
    fn trusted_proxies_and_the_failed_authentication_budget_are_read() {
        let dir = tempfile::tempdir().unwrap();
        let server = "[server]\ntrusted_proxies = [\"10.0.0.0/8\", \"2001:db8::7\"]\nfailed_auth_per_minute = 0\n";
        let config = parse("im1.toml", &with_security(&dir, server)).unwrap_or_else(|e| panic!("{e:?}"));
        let nets: Vec<String> = config.server.trusted_proxies.iter().map(ToString::to_string).collect();
        assert_eq!(nets, ["10.0.0.0/8", "2001:db8::7/128"]);
        assert_eq!(config.server.failed_auth_per_minute, None, "0 switches it off");
        assert_eq!(
            ServerConfig::default().failed_auth_per_minute,
            None,
            "off unless asked for"
        );
        let on = "[server]\nfailed_auth_per_minute = 30\n";
        let config = parse("im1.toml", &with_security(&dir, on)).unwrap_or_else(|e| panic!("{e:?}"));
        assert_eq!(config.server.failed_auth_per_minute, std::num::NonZeroU32::new(30));
        let bad =
            "[server]\ntrusted_proxies = [\"::ffff:10.0.0.0/104\", \"the balancer\", \"0.0.0.0/0\", \"10.0.0.7/8\"]\n";
        let errors = parse("im1.toml", &with_security(&dir, bad)).unwrap_err();
        assert!(
            errors.iter().any(|e| e.message.contains("the balancer") && e.col > 30),
            "placed at the entry: {errors:?}"
        );
        // Addresses are compared as IPv4 where they are IPv4: a mapped network would never match.
        assert!(
            errors.iter().any(|e| e.message.contains("::ffff:10.0.0.0/104")),
            "{errors:?}"
        );
    }

    #[test]
    fn the_demo_id_key_is_refused() {
        let dir = tempfile::tempdir().unwrap();
        let text = with_security(&dir, "");
        std::fs::write(dir.path().join("id.key"), DEMO_ID_KEY).unwrap();
        let errors = parse("im1.toml", &text).unwrap_err();
        assert!(
            errors.iter().any(|e| e.line == 2 && e.message.contains("published")),
            "{errors:?}"
        );
    }

    #[test]
    fn the_breaker_is_set_or_left_to_its_defaults() {
        let dir = tempfile::tempdir().unwrap();
        let config = parse("im1.toml", &with_security(&dir, "")).unwrap_or_else(|e| panic!("{e:?}"));
        assert_eq!(config.native.breaker, BreakerSettings::default());
        let text = with_security(&dir, "[native]\nbreaker = { trip_after = 0, open_ms = 2500 }\n");
        let config = parse("im1.toml", &text).unwrap_or_else(|e| panic!("{e:?}"));
        let expected = BreakerSettings {
            trip_after: 0,
            open_for: std::time::Duration::from_millis(2_500),
        };
        assert_eq!(config.native.breaker, expected);
    }

    #[test]
    fn the_cache_section_sets_answers_and_linkage_lifetimes() {
        let dir = tempfile::tempdir().unwrap();
        let text = with_security(&dir, "[cache]\nttl_seconds = 5\nlinkage_seconds = 0\n");
        let config = parse("im1.toml", &text).unwrap_or_else(|e| panic!("{e:?}"));
        assert_eq!(config.cache.ttl, std::time::Duration::from_secs(5));
        assert_eq!(config.cache.linkage_ttl, std::time::Duration::ZERO);
        assert_eq!(
            config.cache.max_resources,
            crate::cache::CacheConfig::default().max_resources
        );
    }

    /// What `serve` would refuse at start-up, or what would fail every request, is said by `check` too, with
    /// where it is written.
    #[test]
    fn what_serve_would_refuse_or_every_request_fail_on_is_said_up_front() {
        let dir = tempfile::tempdir().unwrap();
        let garbage = dir.path().join("garbage.pem");
        std::fs::write(&garbage, "garbage").unwrap();
        let secret = dir.path().join("id.key");
        let text = with_security(
            &dir,
            &format!(
                "[server]\nrequest_timeout_ms = 0\ntls = {{ cert = {garbage:?}, key = {garbage:?} }}\n\n\
                 [audit]\npath = \"/nonexistent-im1-folder/audit.db\"\n\n\
                 [[practices]]\nods = \"Y90001\"\nsupplier = \"emis\"\nbase_url = \"https://emis.test/emis\"\n\
                 emis = {{ application_id = \"a\", partner_client_id = \"b\", partner_client_secret = {{ file = {secret:?} }}, cdb = \"\" }}\n\n\
                 [[practices]]\nods = \"Y90002\"\nsupplier = \"systmone\"\nbase_url = \"https://tpp.test\"\n\
                 systmone = {{ provider_id = \"p\", api_key = {{ file = {secret:?} }}, device_id = \"d\", transaction_address = \"not an address\" }}\n\n\
                 [[practices]]\nods = \"Y90003\"\nsupplier = \"medicus\"\nbase_url = \"https://medicus.test\"\n\
                 medicus = {{ app_id = \"a\", tenant = \"t\", key_id = \"k\", private_key = {{ file = {garbage:?} }} }}\n"
            ),
        );
        // A JWKS that is not one.
        std::fs::write(dir.path().join("jwks.json"), "garbage").unwrap();
        let errors = parse("im1.toml", &text).unwrap_err();
        let said = |line: usize, words: &str| {
            assert!(
                errors.iter().any(|e| e.line == line && e.message.contains(words)),
                "line {line}: {words}: {errors:?}"
            );
        };
        said(6, "not a JWKS");
        said(9, "request_timeout_ms must be at least 1");
        said(10, "TLS");
        said(13, "does not exist");
        said(19, "cdb");
        said(25, "HOST:PORT");
        said(31, "not an RSA private key");
        assert_eq!(errors.len(), 7, "{errors:?}");
    }

    #[test]
    fn hosts_and_ports_are_told_from_other_text() {
        for good in ["tpp.example:2001", "127.0.0.1:9000", "[::1]:9000"] {
            assert!(is_host_and_port(good), "{good}");
        }
        for bad in [
            "not an address",
            "host",
            ":80",
            "host:0",
            "host:port",
            "a b:80",
            "::1:9000",
        ] {
            assert!(!is_host_and_port(bad), "{bad}");
        }
    }

    #[test]
    fn a_practice_sets_the_pace_its_supplier_allows() {
        let dir = tempfile::tempdir().unwrap();
        let secret = dir.path().join("id.key");
        let practice = |pace: &str| {
            with_security(
                &dir,
                &format!(
                    "[[practices]]\nods = \"Y90001\"\nsupplier = \"emis\"\nbase_url = \"https://emis.test/emis\"\n\
                     emis = {{ application_id = \"a\", partner_client_id = \"b\", partner_client_secret = {{ file = {secret:?} }}, cdb = \"1\" }}\n\
                     {pace}\n"
                ),
            )
        };
        let config = parse("im1.toml", &practice("requests_per_second = { patient = 9 }")).unwrap();
        assert_eq!(
            config.practices[0].pace,
            NativePace {
                transaction: None,
                patient: std::num::NonZeroU32::new(9)
            }
        );
        let errors = parse("im1.toml", &practice("requests_per_second = { transaction = 0 }")).unwrap_err();
        assert!(
            errors.iter().any(|e| e.line == 13 && e.message.contains("at least 1")),
            "{errors:?}"
        );
        let errors = parse("im1.toml", &practice("requests_per_second = { pfs = 3 }")).unwrap_err();
        assert!(errors.iter().any(|e| e.line == 13), "{errors:?}");
    }
}
