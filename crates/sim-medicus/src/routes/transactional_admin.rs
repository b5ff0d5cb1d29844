//! Practice-level Transactional calls **[invented]**: `GET v1/organisation`, the practice `ping` names as the
//! requesting organisation, reachable under `v1` like every other call (clients resolve paths against
//! `transactional-api/v1/`).

use super::{ok, Call, Medicus, Reply};
use http::Method;
use im1_sim::record::Record;
use serde_json::{json, Value};

impl Medicus {
    /// `GET v1/organisation`; `None` for any other call.
    pub(super) fn transactional_admin(&self, call: &Call<'_>) -> Option<Reply> {
        match (call.method, call.rest.as_slice()) {
            (&Method::GET, ["organisation"]) => Some(self.world.read(|r| ok(self.requesting_organisation(r)))),
            _ => None,
        }
    }

    /// The practice as `ping`'s `requestingOrganisation` (address and telephone invented there).
    pub(super) fn requesting_organisation(&self, r: &Record) -> Value {
        let org = r.practice(self.ods());
        json!({
            "organisationName": org.map(|o| o.name.clone()),
            "organisationIdentifierType": "nhs-england-ods-code",
            "organisationIdentifierValue": self.ods(),
            "address": org.map(|o| crate::demographics::address(&o.address)),
            "telephone": org.map(|o| o.phone.clone()),
        })
    }
}
