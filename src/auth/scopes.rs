//! SMART App Launch scopes: v2 (`patient/Observation.rs?category=laboratory`) and v1
//! (`patient/Observation.read`, read as its v2 meaning). Anything else is refused when the token is read.

/// Whose data a scope reaches.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Context {
    Patient,
    User,
    System,
}

/// One granted scope.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Scope {
    pub context: Context,
    /// A resource type, or `*`.
    pub resource: String,
    /// Permissions from `cruds`.
    pub permissions: String,
    /// Granular restriction (`category=laboratory`), as parameter pairs.
    pub filter: Vec<(String, String)>,
}

impl Scope {
    pub fn allows(&self, resource: &str, permission: char) -> bool {
        (self.resource == "*" || self.resource == resource) && self.permissions.contains(permission)
    }
}

/// Parses a space-separated scope string. OpenID and launch scopes are accepted and carry no access.
pub fn parse(scopes: &str) -> Result<Vec<Scope>, String> {
    let mut out = Vec::new();
    for raw in scopes.split_whitespace() {
        if matches!(
            raw,
            "openid" | "fhirUser" | "profile" | "offline_access" | "online_access" | "launch"
        ) || raw.starts_with("launch/")
        {
            continue;
        }
        out.push(
            parse_one(raw).ok_or_else(|| format!("unknown scope '{}'", raw.chars().take(60).collect::<String>()))?,
        );
    }
    Ok(out)
}

fn parse_one(raw: &str) -> Option<Scope> {
    let (context, rest) = raw.split_once('/')?;
    let context = match context {
        "patient" => Context::Patient,
        "user" => Context::User,
        "system" => Context::System,
        _ => return None,
    };
    let (body, query) = match rest.split_once('?') {
        Some((b, q)) => (b, Some(q)),
        None => (rest, None),
    };
    let (resource, action) = body.split_once('.')?;
    if resource != "*" && !crate::fhir::resource_types::is_resource_type(resource) {
        return None;
    }
    let permissions = match action {
        "read" => "rs".to_string(),
        "write" => "cud".to_string(),
        "*" => "cruds".to_string(),
        v2 if !v2.is_empty() && is_ordered_subset(v2, "cruds") => v2.to_string(),
        _ => return None,
    };
    let filter = match query {
        Some(q) => {
            let pairs: Vec<(String, String)> = form_urlencoded::parse(q.as_bytes())
                .map(|(k, v)| (k.into_owned(), v.into_owned()))
                .collect();
            if pairs.is_empty() || pairs.iter().any(|(k, v)| k.is_empty() || v.is_empty()) {
                return None;
            }
            pairs
        }
        None => Vec::new(),
    };
    Some(Scope {
        context,
        resource: resource.to_string(),
        permissions,
        filter,
    })
}

/// `rs` is fine, `sr` and `rr` are not: SMART v2 permissions appear once each, in `cruds` order.
fn is_ordered_subset(text: &str, order: &str) -> bool {
    let mut position = 0;
    for c in text.chars() {
        match order[position..].find(c) {
            Some(i) => position += i + 1,
            None => return false,
        }
    }
    true
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn v2_and_v1_scopes() {
        let scopes = parse("openid patient/Observation.rs?category=laboratory user/*.read system/Patient.*").unwrap();
        assert_eq!(scopes[0].filter, vec![("category".into(), "laboratory".into())]);
        assert!(scopes[0].allows("Observation", 's'));
        assert!(!scopes[0].allows("Observation", 'c'));
        assert_eq!(scopes[1].permissions, "rs");
        assert_eq!(scopes[2].permissions, "cruds");
    }

    #[test]
    fn unknown_scopes_are_refused() {
        assert!(parse("patient/Potato.rs").is_err());
        assert!(parse("patient/Observation.sr").is_err());
        assert!(parse("admin/*.*").is_err());
        assert!(parse("patient/Observation.rs?").is_err());
    }
}
