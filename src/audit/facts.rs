//! What the pipeline knows about one interaction, as plain owned data.
//!
//! The request pipeline fills an [`AuditFacts`] as it goes (who, what, which patients, which native calls) and hands
//! it to the store when the response is known. Keeping the facts separate from the AuditEvent JSON lets the pipeline
//! stay ignorant of BALP, and lets the store derive its indexed columns from typed fields rather than from JSON.
//!
//! `Debug` is written by hand: facts and principals end up in logs and panics, and must never show an NHS number,
//! a token id or the query string (which may hold identifiers).

use std::fmt;

/// One interaction, whatever its outcome.
#[derive(Clone)]
pub struct AuditFacts {
    /// The request id (`X-Request-Id`), so the event joins up with traces.
    pub request_id: String,
    pub started: time::OffsetDateTime,
    pub ended: time::OffsetDateTime,
    /// The HTTP method.
    pub method: String,
    /// A `http://hl7.org/fhir/restful-interaction` code (`read`, `search-type`, `capabilities`, ...) or `unknown`
    /// when the request never became an interaction (a 401, a malformed URL).
    pub interaction: String,
    pub resource_type: Option<String>,
    pub resource_id: Option<String>,
    /// The canonical query string. It may hold identifiers, so it goes to the database only.
    pub query: Option<String>,
    /// `None` when authentication failed or was not needed.
    pub who: Option<Who>,
    pub client_address: Option<String>,
    /// Each patient whose data was touched.
    pub patients: Vec<PatientRef>,
    /// The HTTP status returned.
    pub status: u16,
    /// Our OperationOutcome diagnostic code, e.g. `IM1-2002`.
    pub outcome_code: Option<String>,
    pub outcome_text: Option<String>,
    pub native_calls: Vec<NativeCallFact>,
    /// Practices some of whose answers came from the cache, and those whose answers the cache had to load from
    /// the GP system (both, for a request such as `$everything`).
    pub cache: CacheFacts,
    /// ODS codes of the practices the request reached.
    pub practices: Vec<String>,
}

/// How a request's answers met the cache, per practice (ODS codes).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct CacheFacts {
    pub hits: std::collections::BTreeSet<String>,
    pub loads: std::collections::BTreeSet<String>,
}

impl CacheFacts {
    /// `hit` (every answer from the cache), `partial` (some from the cache, some loaded from the GP system),
    /// `miss` (every answer loaded from the GP system) or `none` (no answer was looked for: a refusal, say).
    pub fn summary(any_hit: bool, any_load: bool) -> &'static str {
        match (any_hit, any_load) {
            (true, false) => "hit",
            (true, true) => "partial",
            (false, true) => "miss",
            (false, false) => "none",
        }
    }
}

/// The authenticated caller.
#[derive(Clone)]
pub struct Who {
    /// The principal's subject (user id, or client id for system principals).
    pub subject: String,
    /// `patient`, `clinician`, `system` or `auditor`.
    pub role: String,
    pub client_id: String,
    /// National RBAC role code, for clinicians.
    pub rbac_role: Option<String>,
    /// ODS codes of the organisations the caller acts for.
    pub organisations: Vec<String>,
    /// The token's id (`jti`): a bearer secret's handle, so never logged.
    pub token_id: String,
}

/// Where an authenticated user's event is filed when it concerns no practice: not an ODS code, so no
/// auditor's token names it.
pub const NO_PRACTICE: &str = "-";

/// A patient whose data was touched: the logical id, the NHS number, or both.
#[derive(Clone, Default, PartialEq, Eq)]
pub struct PatientRef {
    /// `Patient/<id>` or a bare logical id.
    pub reference: Option<String>,
    pub nhs_number: Option<String>,
}

/// One call to a supplier system made while serving the interaction.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NativeCallFact {
    /// `emis`, `systmone`, `medicus`.
    pub supplier: String,
    /// The practice's ODS code.
    pub practice: String,
    /// Method and path template, e.g. `GET /patients/{id}`: no query, no ids.
    pub operation: String,
    /// The native HTTP status, or `None` when no reply came (time-out, connection refused).
    pub status: Option<u16>,
    pub millis: u64,
}

impl PatientRef {
    /// The logical id, without any `Patient/` prefix or base URL.
    pub fn logical_id(&self) -> Option<&str> {
        self.reference
            .as_deref()
            .map(patient_logical_id)
            .filter(|id| !id.is_empty())
    }
}

/// `Patient/123`, `https://host/fhir/Patient/123` and `123` all give `123`.
pub fn patient_logical_id(reference: &str) -> &str {
    match reference.rfind("Patient/") {
        Some(at) => &reference[at + "Patient/".len()..],
        None => reference,
    }
}

impl AuditFacts {
    /// The FHIR AuditEvent outcome code for the HTTP status: `0` for 1xx-3xx, `4` (minor failure) for 4xx, `8`
    /// (serious failure) for 5xx and anything unexpected. `12` (major failure) is not used: it means the
    /// requested action failed in a way that damaged something, and a read-only facade that answered at all did not.
    pub fn outcome(&self) -> &'static str {
        AuditFacts::outcome_of(self.status)
    }

    /// The AuditEvent outcome of an HTTP status.
    pub fn outcome_of(status: u16) -> &'static str {
        match status {
            100..=399 => "0",
            400..=499 => "4",
            _ => "8",
        }
    }

    /// The indexed `entity` column: `Type/id` for an instance, `Type` for a type-level interaction.
    pub fn entity_key(&self) -> Option<String> {
        let resource_type = self.resource_type.as_deref()?;
        Some(match self.resource_id.as_deref() {
            Some(id) => format!("{resource_type}/{id}"),
            None => resource_type.to_string(),
        })
    }

    /// The practices an event belongs to, for auditors of those practices: the ones the request reached or
    /// named; when it reached and named none, those its user acts for; and when it named a practice its user
    /// does not act for, those too (their user's attempt on another's data, refused or found empty). Not the user's
    /// other practices when what it named is one of theirs: its query (an NHS number) is that practice's data.
    /// None at all (metadata, a 401 without a token): any auditor's. A user acting for no practice who named
    /// and reached none (a token without practices, refused) is filed under [`NO_PRACTICE`], no practice's:
    /// what they asked (an NHS number in a query) is nobody's auditor's to read, only the trail's keepers'.
    pub fn audit_practices(&self) -> Vec<String> {
        let mut practices: Vec<String> = Vec::new();
        let reached = self
            .practices
            .iter()
            .chain(self.native_calls.iter().map(|c| &c.practice));
        for ods in reached {
            if !practices.contains(ods) {
                practices.push(ods.clone());
            }
        }
        let organisations = self.who.iter().flat_map(|who| &who.organisations);
        let outside = practices.iter().any(|ods| !organisations.clone().any(|own| own == ods));
        if practices.is_empty() || outside {
            if let Some(who) = &self.who {
                for ods in &who.organisations {
                    if !practices.contains(ods) {
                        practices.push(ods.clone());
                    }
                }
                if practices.is_empty() {
                    practices.push(NO_PRACTICE.to_string());
                }
            }
        }
        practices
    }

    /// The distinct logical ids of the patients touched, in order.
    pub fn patient_ids(&self) -> Vec<String> {
        let mut ids: Vec<String> = Vec::new();
        for id in self.patients.iter().filter_map(PatientRef::logical_id) {
            if !ids.iter().any(|seen| seen == id) {
                ids.push(id.to_string());
            }
        }
        ids
    }
}

impl fmt::Debug for AuditFacts {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("AuditFacts")
            .field("request_id", &self.request_id)
            .field("started", &self.started)
            .field("ended", &self.ended)
            .field("method", &self.method)
            .field("interaction", &self.interaction)
            .field("resource_type", &self.resource_type)
            .field("resource_id", &self.resource_id)
            .field("query", &self.query.as_ref().map(|_| "<redacted>"))
            .field("who", &self.who)
            .field("client_address", &self.client_address)
            .field("patients", &self.patients)
            .field("status", &self.status)
            .field("outcome_code", &self.outcome_code)
            .field("outcome_text", &self.outcome_text)
            .field("native_calls", &self.native_calls)
            .field("cache", &self.cache)
            .field("practices", &self.practices)
            .finish()
    }
}

impl fmt::Debug for Who {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Who")
            .field("subject", &self.subject)
            .field("role", &self.role)
            .field("client_id", &self.client_id)
            .field("rbac_role", &self.rbac_role)
            .field("organisations", &self.organisations)
            .field("token_id", &"<redacted>")
            .finish()
    }
}

impl fmt::Debug for PatientRef {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("PatientRef")
            .field("reference", &self.reference.as_ref().map(|_| "<redacted>"))
            .field("nhs_number", &self.nhs_number.as_ref().map(|_| "<redacted>"))
            .finish()
    }
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;

    pub(crate) fn at(unix: i64) -> time::OffsetDateTime {
        time::OffsetDateTime::from_unix_timestamp(unix).unwrap()
    }

    /// A clinician reading a patient's record, fetched through two native calls.
    pub(crate) fn patient_read() -> AuditFacts {
        AuditFacts {
            request_id: "req-1".into(),
            started: at(1_700_000_000),
            ended: at(1_700_000_001),
            method: "GET".into(),
            interaction: "read".into(),
            resource_type: Some("Patient".into()),
            resource_id: Some("p1".into()),
            query: None,
            who: Some(Who {
                subject: "clinician-1".into(),
                role: "clinician".into(),
                client_id: "gp-app".into(),
                rbac_role: Some("R8000".into()),
                organisations: vec!["A12345".into()],
                token_id: "jti-secret-77".into(),
            }),
            client_address: Some("10.0.0.7".into()),
            patients: vec![PatientRef {
                reference: Some("Patient/p1".into()),
                nhs_number: Some("9000000009".into()),
            }],
            status: 200,
            outcome_code: None,
            outcome_text: None,
            native_calls: vec![
                NativeCallFact {
                    supplier: "emis".into(),
                    practice: "A12345".into(),
                    operation: "POST /session".into(),
                    status: Some(200),
                    millis: 12,
                },
                NativeCallFact {
                    supplier: "emis".into(),
                    practice: "A12345".into(),
                    operation: "GET /patients/{id}".into(),
                    status: Some(200),
                    millis: 31,
                },
            ],
            cache: CacheFacts::default(),
            practices: vec!["A12345".into()],
        }
    }

    /// A request with a bad token: nothing known but the URL and the status.
    pub(crate) fn unauthenticated() -> AuditFacts {
        AuditFacts {
            request_id: "req-2".into(),
            started: at(1_700_000_100),
            ended: at(1_700_000_100),
            method: "GET".into(),
            interaction: "unknown".into(),
            resource_type: None,
            resource_id: None,
            query: None,
            who: None,
            client_address: Some("10.0.0.8".into()),
            patients: Vec::new(),
            status: 401,
            outcome_code: Some("IM1-1001".into()),
            outcome_text: Some("The bearer token is missing or invalid".into()),
            native_calls: Vec::new(),
            cache: CacheFacts::default(),
            practices: Vec::new(),
        }
    }

    #[test]
    fn outcome_follows_the_status_class() {
        let mut facts = patient_read();
        for (status, code) in [
            (200, "0"),
            (304, "0"),
            (400, "4"),
            (401, "4"),
            (403, "4"),
            (502, "8"),
            (504, "8"),
        ] {
            facts.status = status;
            assert_eq!(facts.outcome(), code, "status {status}");
        }
    }

    #[test]
    fn patient_ids_are_logical_and_distinct() {
        let mut facts = patient_read();
        facts.patients.push(PatientRef {
            reference: Some("https://x/fhir/Patient/p1".into()),
            nhs_number: None,
        });
        facts.patients.push(PatientRef {
            reference: Some("p2".into()),
            nhs_number: None,
        });
        facts.patients.push(PatientRef {
            reference: None,
            nhs_number: Some("9000000017".into()),
        });
        assert_eq!(facts.patient_ids(), vec!["p1".to_string(), "p2".to_string()]);
        assert_eq!(facts.entity_key().as_deref(), Some("Patient/p1"));
    }

    #[test]
    fn debug_redacts_nhs_numbers_token_ids_and_queries() {
        let mut facts = patient_read();
        facts.query = Some("identifier=https://fhir.nhs.uk/Id/nhs-number|9000000009".into());
        let text = format!("{facts:?}");
        assert!(!text.contains("9000000009"), "{text}");
        assert!(!text.contains("jti-secret-77"), "{text}");
        assert!(text.contains("clinician-1"), "{text}");
        let who = format!("{:?}", facts.who.as_ref().unwrap());
        assert!(!who.contains("jti-secret-77"), "{who}");
    }
}
