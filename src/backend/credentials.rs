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
        "IM1-2110",
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

/// What a one-off native link gave (EMIS's AccessIdentityGuid, SystmOne's authentication passphrase), per
/// patient NHS number, for later sessions. Remembered with the linkage it was made with: a linkage corrected or
/// replaced since links again, rather than keep opening the account the old one named.
#[derive(Default)]
pub struct LinkMemory(std::sync::Mutex<HashMap<String, (Linkage, String)>>);

impl LinkMemory {
    /// What the link made with this very linkage gave, if one was.
    pub fn get(&self, nhs: &str, linkage: &Linkage) -> Option<String> {
        let links = self.0.lock().ok()?;
        links
            .get(nhs)
            .filter(|(made_with, _)| made_with == linkage)
            .map(|(_, value)| value.clone())
    }

    pub fn remember(&self, nhs: &str, linkage: Linkage, value: String) {
        if let Ok(mut links) = self.0.lock() {
            links.insert(nhs.to_string(), (linkage, value));
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn linkage(passphrase: &str) -> Linkage {
        Linkage::SystmOne {
            account_id: "148607559".into(),
            passphrase: passphrase.into(),
            last_name: "Tester".into(),
            date_of_birth: "1985-04-12".into(),
        }
    }

    #[test]
    fn a_link_is_remembered_for_the_linkage_it_was_made_with_only() {
        let memory = LinkMemory::default();
        assert_eq!(memory.get("9000000009", &linkage("GDBQ-H5GQ")), None);
        memory.remember("9000000009", linkage("GDBQ-H5GQ"), "made".into());
        assert_eq!(memory.get("9000000009", &linkage("GDBQ-H5GQ")).as_deref(), Some("made"));
        // The practice re-issued the linkage: what the old one gave is not used.
        assert_eq!(memory.get("9000000009", &linkage("QQQQ-1111")), None);
        assert_eq!(memory.get("9000000017", &linkage("GDBQ-H5GQ")), None);
    }
}
