//! Simulator of the Medicus native IM1 API: stateless JSON REST under `/medicus/{tenant}/pfs-api/v1/...`
//! (patient facing) and `/medicus/{tenant}/transactional-api/v1/...` (clinician facing), every call
//! authenticated by its own RS256 JWT. It renders the shared [`World`] in the Medicus dialect described in
//! `DIALECT.md` (next to this crate's `Cargo.toml`).
//!
//! Start it with [`serve`]; [`linkage_credentials`] lists what the proxy's credential store needs.

#![forbid(unsafe_code)]

mod appointments;
mod auth;
mod changes;
mod demographics;
mod errors;
mod journal;
mod messages;
mod paging;
mod prescriptions;
mod routes;
mod style;
mod writes;

use im1_sim::common::{serve_with, FaultRates, ServeConfig, SimHandle};
use im1_sim::record::{LinkageSecret, World};
use std::sync::Arc;
use tokio::net::TcpListener;

/// ODS code of the demo Medicus practice.
pub const PRACTICE_ODS: &str = "Y90003";
/// The demo practice's tenant id (the first path label after `/medicus/`).
pub const TENANT: &str = "y90003";
/// The demo application's Medicus App ID (the JWT `iss`).
pub const DEMO_APP_ID: &str = "im1-fhir-demo-app";
/// The `kid` the demo key goes by (Medicus's developer portal assigns one per uploaded key).
pub const DEMO_KEY_ID: &str = "demo";
/// Requests a second the simulator allows per app per tenant when it throttles (see DIALECT.md).
pub const RATE_PER_SECOND: u32 = 20;
/// The demo application's public key (PEM), whose private half is `keys/demo-medicus-app.key.pem`.
pub const DEMO_PUBLIC_KEY_PEM: &[u8] = include_bytes!("../../../keys/demo-medicus-app.pub.pem");

/// Settings of one Medicus simulator.
#[derive(Debug, Clone)]
pub struct MedicusConfig {
    /// Tenant id served (path label and JWT `aud`); demo `y90003`.
    pub tenant: String,
    /// ODS code of the practice behind the tenant; demo `Y90003`.
    pub practice_ods: String,
    /// The accredited application's App ID, required as the JWT `iss`; demo `im1-fhir-demo-app`.
    pub app_id: String,
    /// Display name of the application (echoed by `ping`); demo `im1-fhir demo`.
    pub app_name: String,
    /// RSA public key (PEM) that verifies the application's JWTs; demo `keys/demo-medicus-app.pub.pem`.
    pub public_key_pem: Vec<u8>,
    /// The `kid` the developer portal assigned to that key; `None` accepts any `kid` (demo: [`DEMO_KEY_ID`]).
    pub key_id: Option<String>,
    /// Refuse a JWT whose `jti` was seen before (401); demo `true`. Benchmarks that reuse one token turn it off.
    pub reject_replayed_jti: bool,
    /// The simulator's throttling (a convention, not Medicus's published figure): 20 requests/second per app
    /// per tenant, 429 `RATE_LIMITED` above it; demo `true`.
    pub throttle: bool,
    /// Random fault rates (the `X-Sim-Fault` header works whatever these are); demo: none.
    pub faults: FaultRates,
}

impl Default for MedicusConfig {
    fn default() -> Self {
        MedicusConfig {
            tenant: TENANT.to_string(),
            practice_ods: PRACTICE_ODS.to_string(),
            app_id: DEMO_APP_ID.to_string(),
            app_name: "im1-fhir demo".to_string(),
            public_key_pem: DEMO_PUBLIC_KEY_PEM.to_vec(),
            key_id: Some(DEMO_KEY_ID.to_string()),
            reject_replayed_jti: true,
            throttle: true,
            faults: FaultRates::default(),
        }
    }
}

/// Why the simulator could not start.
#[derive(Debug)]
pub struct StartError(pub String);

impl std::fmt::Display for StartError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "medicus simulator: {}", self.0)
    }
}

impl std::error::Error for StartError {}

/// Serve the Medicus dialect on `listener`. The handle gives the bound address (`handle.base_url()`); paths
/// start with `/medicus/{tenant}/`.
pub async fn serve(listener: TcpListener, world: Arc<World>, config: MedicusConfig) -> Result<SimHandle, StartError> {
    let serve_config = ServeConfig {
        faults: config.faults,
        ..ServeConfig::default()
    };
    let handler = routes::Medicus::new(world, config)?;
    Ok(serve_with(listener, handler, serve_config))
}

/// One patient's linkage credentials in Medicus terms: what the proxy's credential store holds.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "camelCase")]
pub struct MedicusLinkage {
    pub nhs_number: String,
    /// The NHS login subject the app sends as the PFS `userIdentifierValue` claim.
    pub nhs_login_sub: String,
    /// The Patient App Linkage Token (`y90003-123456-654321`), exchanged once.
    pub linkage_token: String,
    /// Date of birth (`YYYY-MM-DD`), the second factor of the exchange.
    pub date_of_birth: String,
    /// The Medicus patient id the exchange returns.
    pub patient_id: String,
}

/// Per patient (record order), the linkage credentials at the practice behind `config`.
pub fn linkage_credentials(world: &World, config: &MedicusConfig) -> Vec<MedicusLinkage> {
    world.read(|r| {
        r.credentials
            .iter()
            .filter(|c| c.practice == config.practice_ods)
            .filter_map(|c| {
                let LinkageSecret::LinkageToken { token } = &c.secret else {
                    return None;
                };
                let patient = r.patient(&c.patient)?;
                Some(MedicusLinkage {
                    nhs_number: c.nhs_number.clone(),
                    nhs_login_sub: c.nhs_login_sub.clone(),
                    linkage_token: token.clone(),
                    date_of_birth: style::date(patient.birth_date),
                    patient_id: style::nid(&patient.id),
                })
            })
            .collect()
    })
}
