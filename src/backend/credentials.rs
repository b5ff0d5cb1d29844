//! Patients' linkage credentials for the native patient-facing APIs, as NHS login hands them over to an IM1
//! app (`gp_integration_credentials`). Keyed by practice and NHS number. `demo` loads the simulators' seeded
//! credentials; a deployment fills it from its NHS login integration. Nothing here is ever logged.

use std::collections::HashMap;
use std::sync::RwLock;

/// One patient's linkage at one practice.
#[derive(Clone, PartialEq, Eq)]
pub enum Linkage {
    /// EMIS: Account ID + Linkage Key + ODS code, plus the surname and date of birth `me/applications` asks for.
    Emis {
        account_id: String,
        linkage_key: String,
        surname: String,
        date_of_birth: String,
    },
    /// Medicus: a Patient App Linkage Token (exchanged once for a patient id), the date of birth the exchange
    /// asks for, and the patient's NHS login `sub`, which every patient-facing JWT carries.
    /// SystmOne: the practice-issued account id and passphrase, with the surname and date of birth
    /// `LinkAccount` checks.
    SystmOne {
        account_id: String,
        passphrase: String,
        last_name: String,
        date_of_birth: String,
    },
    Medicus {
        linkage_token: String,
        date_of_birth: String,
        nhs_login_sub: String,
    },
}

impl std::fmt::Debug for Linkage {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Linkage(<redacted>)")
    }
}

/// The error every dialect gives when the store holds no linkage for the patient at the practice.
pub fn no_linkage() -> crate::fhir::FhirError {
    crate::fhir::FhirError::forbidden(
        "IM1-2301",
        "no patient-facing linkage is held for this patient at this practice",
    )
}

#[derive(Default)]
pub struct CredentialStore {
    entries: RwLock<HashMap<(String, String), Linkage>>,
}

impl CredentialStore {
    pub fn insert(&self, ods: &str, nhs_number: &str, linkage: Linkage) {
        if let Ok(mut entries) = self.entries.write() {
            entries.insert((ods.to_string(), nhs_number.to_string()), linkage);
        }
    }

    pub fn get(&self, ods: &str, nhs_number: &str) -> Option<Linkage> {
        self.entries
            .read()
            .ok()?
            .get(&(ods.to_string(), nhs_number.to_string()))
            .cloned()
    }
}
