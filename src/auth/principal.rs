//! Who is asking: the principal a verified token stands for.

use super::scopes::Scope;

/// The four kinds of principal.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Role {
    /// A patient (NHS login style), possibly acting for others through proxy access.
    Patient,
    /// A clinician (CIS2 style) in one practice, with one selected role.
    Clinician,
    /// A system client (client credentials) with the practices it may reach.
    System,
    /// Reads AuditEvents.
    Auditor,
}

impl Role {
    pub fn name(self) -> &'static str {
        match self {
            Role::Patient => "patient",
            Role::Clinician => "clinician",
            Role::System => "system",
            Role::Auditor => "auditor",
        }
    }

    pub fn parse(text: &str) -> Option<Role> {
        match text {
            "patient" => Some(Role::Patient),
            "clinician" => Some(Role::Clinician),
            "system" => Some(Role::System),
            "auditor" => Some(Role::Auditor),
            _ => None,
        }
    }
}

/// A verified caller. `Debug` leaves out the NHS number: principals are logged.
#[derive(Clone)]
pub struct Principal {
    pub subject: String,
    pub role: Role,
    pub client_id: String,
    pub scopes: Vec<Scope>,
    /// The patient's own NHS number, for patient principals.
    pub nhs_number: Option<String>,
    /// NHS login identity proofing level (`P9` is needed for the GP record).
    pub proofing_level: Option<String>,
    /// National RBAC role code, for clinicians.
    pub rbac_role: Option<String>,
    /// ODS codes the principal may reach.
    pub practices: Vec<String>,
    /// The token's id (`jti`), for audit.
    pub token_id: String,
}

impl Principal {
    /// The client whose request budget a request spends: its `client_id`, or, for a token without one, its
    /// subject, so tokens without a client id do not all share (and exhaust) one budget.
    pub fn budget_key(&self) -> String {
        if self.client_id.is_empty() {
            format!("sub:{}", self.subject)
        } else {
            format!("client:{}", self.client_id)
        }
    }
}

impl std::fmt::Debug for Principal {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Principal")
            .field("subject", &self.subject)
            .field("role", &self.role)
            .field("client_id", &self.client_id)
            .field("practices", &self.practices)
            .field("nhs_number", &self.nhs_number.as_ref().map(|_| "<redacted>"))
            .finish_non_exhaustive()
    }
}

impl Principal {
    /// The SMART scope context a principal's scopes must carry: patient/, user/ (clinicians, auditors) or system/.
    pub fn scope_context(&self) -> super::scopes::Context {
        use super::scopes::Context;
        match self.role {
            Role::Patient => Context::Patient,
            Role::Clinician | Role::Auditor => Context::User,
            Role::System => Context::System,
        }
    }

    /// The token's scopes that grant a permission (`r`, `s`, ...) on a resource type, in its own context.
    pub fn scopes_granting<'p>(
        &'p self,
        resource_type: &'p str,
        permission: char,
    ) -> impl Iterator<Item = &'p Scope> + 'p {
        let context = self.scope_context();
        self.scopes
            .iter()
            .filter(move |s| s.context == context && s.allows(resource_type, permission))
    }

    pub fn may_reach_practice(&self, ods: &str) -> bool {
        self.practices.iter().any(|p| p == ods)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn debug_output_hides_the_nhs_number() {
        let principal = Principal {
            subject: "s".into(),
            role: Role::Patient,
            client_id: "c".into(),
            scopes: vec![],
            nhs_number: Some("9000000009".into()),
            proofing_level: Some("P9".into()),
            rbac_role: None,
            practices: vec!["Y90001".into()],
            token_id: "t".into(),
        };
        assert!(!format!("{principal:?}").contains("9000000009"));
    }

    #[test]
    fn tokens_without_a_client_id_each_have_their_own_budget() {
        let principal = |subject: &str, client_id: &str| Principal {
            subject: subject.into(),
            role: Role::System,
            client_id: client_id.into(),
            scopes: vec![],
            nhs_number: None,
            proofing_level: None,
            rbac_role: None,
            practices: vec![],
            token_id: String::new(),
        };
        assert_ne!(principal("a", "").budget_key(), principal("b", "").budget_key());
        assert_eq!(principal("a", "app").budget_key(), principal("b", "app").budget_key());
        // A subject cannot pass for a client id.
        assert_ne!(principal("app", "").budget_key(), principal("x", "app").budget_key());
    }
}
