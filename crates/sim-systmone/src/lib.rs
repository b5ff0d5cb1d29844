//! The TPP SystmOne simulator, in the dialect of `shared/im1/systmone.md` (reference: `DIALECT.md`):
//!
//! - PFS: XML messages over HTTP at `POST /tpp/pfs` (header `type`, session header `suid`), the code table
//!   at `GET /tpp/sim/ctv3`, and on-demand Strategic Reporting extracts under `/tpp/bulk/`.
//! - Client Integration (transaction): framed XML over TCP (4-byte big-endian length + UTF-8 XML).
//!
//! Both render the shared [`World`]; writes go through the world so every simulator sees them.

#![forbid(unsafe_code)]

mod appointments;
mod bulk;
mod changes;
pub mod coding;
pub mod dates;
pub mod errors;
mod pfs;
mod prescriptions;
mod record_view;
pub mod render;
mod session;
mod transaction;
mod writes;
pub mod xml;

use im1_sim::common::framing::serve_framed;
use im1_sim::common::{serve_with, FaultRates, ServeConfig, SimHandle};
use im1_sim::record::{LinkageSecret, World};
use std::sync::Arc;
use std::time::Duration;
use tokio::net::TcpListener;

/// Settings of one SystmOne simulator. `Default` gives the demo values.
#[derive(Debug, Clone)]
pub struct SystmOneConfig {
    /// PFS provider id issued by TPP at pairing; `LinkAccount` and `Authenticate` must carry it in the
    /// `Application` child (and `Authenticate` as its attribute too). Demo: `SIM-PROVIDER-01`.
    pub provider_id: String,
    /// Client Integration API key, in every request envelope. Demo: `SIM-KEY`.
    pub api_key: String,
    /// Client Integration device id, in every request envelope. Demo: `WS-0042`.
    pub device_id: String,
    /// The practice (unit id, ODS code) this simulator serves. Demo: `Y90002`.
    pub unit_id: String,
    /// Apply the pacing rules: one request at a time per `suid` (TPP's), and a rate limit per session/device
    /// (the simulator's convention: TPP publishes no rate). Demo: on.
    pub throttle: bool,
    /// Requests per second per `suid` (PFS) or device (transaction) when throttled. Demo: 20.
    pub rate_per_second: u32,
    /// PFS session idle timeout. Demo: 10 minutes.
    pub session_idle: Duration,
    /// Random fault rates (PFS through the shared server; transaction through `simFault` or these rates).
    /// Demo: none.
    pub faults: FaultRates,
}

impl Default for SystmOneConfig {
    fn default() -> Self {
        SystmOneConfig {
            provider_id: "SIM-PROVIDER-01".into(),
            api_key: "SIM-KEY".into(),
            device_id: "WS-0042".into(),
            unit_id: "Y90002".into(),
            throttle: true,
            rate_per_second: 20,
            session_idle: Duration::from_secs(600),
            faults: FaultRates::default(),
        }
    }
}

/// The two running servers.
#[derive(Debug)]
pub struct SystmOneHandles {
    /// HTTP: PFS, code table, bulk (`http://IP:PORT`).
    pub pfs: SimHandle,
    /// Framed TCP: Client Integration (`tcp://IP:PORT`).
    pub transaction: SimHandle,
}

impl SystmOneHandles {
    /// Stop both servers.
    pub async fn shutdown(self) {
        self.pfs.shutdown().await;
        self.transaction.shutdown().await;
    }
}

/// Start the simulator: PFS (and code table, bulk) on `http`, Client Integration on `tcp`.
pub async fn serve(http: TcpListener, tcp: TcpListener, world: Arc<World>, config: SystmOneConfig) -> SystmOneHandles {
    let config = Arc::new(config);
    let pfs = serve_with(
        http,
        pfs::Pfs::new(world.clone(), config.clone()),
        ServeConfig {
            faults: config.faults,
            retry_after_secs: 5,
            ..ServeConfig::default()
        },
    );
    let transaction = serve_framed(tcp, transaction::Transaction::new(world, config));
    SystmOneHandles { pfs, transaction }
}

/// One patient's SystmOne linkage details, as the proxy's credential store needs them for `LinkAccount`.
#[derive(Clone, PartialEq, Eq)]
pub struct TppLinkage {
    pub nhs_number: String,
    /// The patient's NHS login subject.
    pub nhs_login_sub: String,
    /// `organisationCode` (the unit).
    pub organisation_code: String,
    pub account_id: String,
    /// The practice-issued linkage passphrase (`XXXX-XXXX`).
    pub passphrase: String,
    /// `lastName` as `LinkAccount` expects it.
    pub last_name: String,
    /// `dateOfBirth` in the dialect's form.
    pub date_of_birth: String,
    /// The SystmOne `patientId`.
    pub patient_id: String,
}

impl std::fmt::Debug for TppLinkage {
    // Never print the secret.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TppLinkage")
            .field("account_id", &self.account_id)
            .field("organisation_code", &self.organisation_code)
            .finish_non_exhaustive()
    }
}

/// Every patient's linkage details at the configured unit, in record order (deceased patients have none).
pub fn linkage_credentials(world: &World, config: &SystmOneConfig) -> Vec<TppLinkage> {
    world.read(|r| {
        r.credentials
            .iter()
            .filter(|c| c.practice == config.unit_id)
            .filter_map(|c| {
                let LinkageSecret::AccountPassphrase { account_id, passphrase } = &c.secret else {
                    return None;
                };
                let p = r.patient(&c.patient)?;
                Some(TppLinkage {
                    nhs_number: c.nhs_number.clone(),
                    nhs_login_sub: c.nhs_login_sub.clone(),
                    organisation_code: c.practice.clone(),
                    account_id: account_id.clone(),
                    passphrase: passphrase.clone(),
                    last_name: p.name.family.clone(),
                    date_of_birth: dates::day(p.birth_date),
                    patient_id: render::tid(&p.id),
                })
            })
            .collect()
    })
}
