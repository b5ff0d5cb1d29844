//! Secrets in configuration are references (`{ env = "NAME" }` or `{ file = "/path" }`), never values, and
//! a resolved secret never prints: its `Debug` is `<secret>`.

use serde::Deserialize;

/// Where a secret comes from.
#[derive(Debug, Clone, Deserialize, PartialEq, Eq)]
#[serde(deny_unknown_fields, rename_all = "lowercase")]
pub enum SecretRef {
    /// An environment variable.
    Env(String),
    /// A file whose content (trimmed) is the secret.
    File(String),
}

/// A resolved secret.
#[derive(Clone, PartialEq, Eq)]
pub struct Secret(String);

impl Secret {
    pub fn new(value: impl Into<String>) -> Secret {
        Secret(value.into())
    }

    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl std::fmt::Debug for Secret {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("<secret>")
    }
}

impl SecretRef {
    pub fn resolve(&self) -> Result<Secret, String> {
        match self {
            SecretRef::Env(name) => std::env::var(name)
                .map(Secret)
                .map_err(|_| format!("environment variable {name} is not set")),
            SecretRef::File(path) => std::fs::read_to_string(path)
                .map(|s| Secret(s.trim().to_string()))
                .map_err(|e| format!("cannot read secret file {path}: {e}")),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn secrets_never_print() {
        assert_eq!(format!("{:?}", Secret::new("hunter2")), "<secret>");
    }
}
