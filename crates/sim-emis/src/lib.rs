//! The EMIS Web simulator: the shared synthetic [`World`] rendered in EMIS's dialects (see `DIALECT.md`):
//! the patient-facing PFS API (`/emis/pfs/...`), the Partner/Transaction API (`/emis/partner/v1/...`), an
//! on-demand bulk extract (`/emis/bulk/v1/...`) and the code tables (`/emis/sim/...`).
//!
//! Start it with [`serve`]; [`linkage_credentials`] lists what the proxy's credential store needs.

#![forbid(unsafe_code)]
// Handlers return their error replies (whole HTTP responses) early through `Result`; they are built once on the
// cold path, so boxing them would only add noise.
#![allow(clippy::result_large_err)]

mod booking;
mod bulk;
mod cache;
mod codes;
mod config;
mod dates;
mod errors;
mod feed;
mod messages;
mod partner;
mod partner_admin;
mod partner_appointments;
mod pfs;
mod pharmacy;
mod render;
mod request;
mod routes;
mod session;
mod writes;

pub use config::EmisConfig;

use im1_sim::common::{serve_with, ServeConfig, SimHandle};
use im1_sim::record::{native_id, LinkageSecret, Supplier, World};
use std::sync::Arc;
use tokio::net::TcpListener;

/// Start the EMIS simulator on `listener`. The returned handle knows the bound address; the proxy's base URL
/// is `handle.base_url() + "/emis"`.
pub async fn serve(listener: TcpListener, world: Arc<World>, config: EmisConfig) -> SimHandle {
    let serve_config = ServeConfig {
        faults: config.faults,
        // The dialect's documented Retry-After for throttling.
        retry_after_secs: 2,
        ..ServeConfig::default()
    };
    serve_with(listener, routes::Emis::new(world, config), serve_config)
}

/// One patient's EMIS PFS linkage credentials, as the proxy's credential store keeps them.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct EmisLinkage {
    pub nhs_number: String,
    /// The patient's EMIS `PatientGuid`.
    pub patient_guid: String,
    /// `LinkageDetails.AccountId`.
    pub account_id: String,
    /// `LinkageDetails.LinkageKey`.
    pub linkage_key: String,
    /// `LinkageDetails.NationalPracticeCode` (the ODS code).
    pub national_practice_code: String,
    /// `Surname` for `me/applications`.
    pub surname: String,
    /// `DateOfBirth` for `me/applications` (`yyyy-MM-ddT00:00:00`).
    pub date_of_birth: String,
}

/// Every living patient's linkage credentials at the simulator's practice, in record order.
pub fn linkage_credentials(world: &World, config: &EmisConfig) -> Vec<EmisLinkage> {
    world.read(|r| {
        r.credentials
            .iter()
            .filter(|c| c.practice == config.practice_ods)
            .filter_map(|c| {
                let LinkageSecret::AccountLinkageKey {
                    account_id,
                    linkage_key,
                    ods_code,
                } = &c.secret
                else {
                    return None;
                };
                let p = r.patient(&c.patient)?;
                Some(EmisLinkage {
                    nhs_number: c.nhs_number.clone(),
                    patient_guid: native_id(Supplier::Emis, &p.id),
                    account_id: account_id.clone(),
                    linkage_key: linkage_key.clone(),
                    national_practice_code: ods_code.clone(),
                    surname: p.name.family.clone(),
                    date_of_birth: dates::midnight(p.birth_date),
                })
            })
            .collect()
    })
}
