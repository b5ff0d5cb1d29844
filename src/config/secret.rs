//! Secrets in configuration are references (`{ env = "NAME" }` or `{ file = "/path" }`), never values, and
//! a resolved secret never prints: its `Debug` is `<secret>`.

use serde::de::{self, Deserializer, MapAccess, Visitor};
use serde::Deserialize;

/// Where a secret comes from.
#[derive(Debug, Clone, PartialEq, Eq)]
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

/// What a configuration error says of a value written where a reference belongs: never the value, which is
/// most likely the secret itself (serde's own message would repeat it, and errors reach logs).
const WRITTEN_AS_A_VALUE: &str =
    "a secret is written as { env = \"NAME\" } or { file = \"/path\" }, never as its value";

/// By hand, so that no error repeats what was written in place of a reference.
impl<'de> Deserialize<'de> for SecretRef {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<SecretRef, D::Error> {
        struct Reference;

        impl<'de> Visitor<'de> for Reference {
            type Value = SecretRef;

            fn expecting(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
                f.write_str(WRITTEN_AS_A_VALUE)
            }

            fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<SecretRef, A::Error> {
                let mut found = None;
                while let Some(key) = map.next_key::<String>()? {
                    let where_from: String = map.next_value()?;
                    let reference = match key.as_str() {
                        "env" => SecretRef::Env(where_from),
                        "file" => SecretRef::File(where_from),
                        _ => return Err(de::Error::custom(WRITTEN_AS_A_VALUE)),
                    };
                    if found.replace(reference).is_some() {
                        return Err(de::Error::custom("a secret comes from one place: env or file"));
                    }
                }
                found.ok_or_else(|| de::Error::custom(WRITTEN_AS_A_VALUE))
            }

            // Anything else is refused without being repeated.
            fn visit_str<E: de::Error>(self, _: &str) -> Result<SecretRef, E> {
                Err(E::custom(WRITTEN_AS_A_VALUE))
            }

            fn visit_i64<E: de::Error>(self, _: i64) -> Result<SecretRef, E> {
                Err(E::custom(WRITTEN_AS_A_VALUE))
            }

            fn visit_u64<E: de::Error>(self, _: u64) -> Result<SecretRef, E> {
                Err(E::custom(WRITTEN_AS_A_VALUE))
            }

            fn visit_f64<E: de::Error>(self, _: f64) -> Result<SecretRef, E> {
                Err(E::custom(WRITTEN_AS_A_VALUE))
            }

            fn visit_bool<E: de::Error>(self, _: bool) -> Result<SecretRef, E> {
                Err(E::custom(WRITTEN_AS_A_VALUE))
            }

            fn visit_seq<A: de::SeqAccess<'de>>(self, _: A) -> Result<SecretRef, A::Error> {
                Err(de::Error::custom(WRITTEN_AS_A_VALUE))
            }
        }

        deserializer.deserialize_any(Reference)
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

    #[derive(Debug, Deserialize)]
    struct Holder {
        #[allow(dead_code)]
        secret: SecretRef,
    }

    #[test]
    fn a_secret_written_in_place_of_its_reference_is_never_repeated() {
        for written in [
            "secret = \"hunter2\"",
            "secret = 2222",
            "secret = [\"hunter2\"]",
            "secret = { value = \"hunter2\" }",
        ] {
            let error = toml::from_str::<Holder>(written).unwrap_err();
            // The message is what configuration errors print (`config::parse`), without TOML's source line.
            let message = error.message();
            assert!(!message.contains("hunter2") && !message.contains("2222"), "{message}");
            assert!(message.contains("{ env = \"NAME\" }"), "{written}: {message}");
        }
        let parsed: Holder = toml::from_str("secret = { env = \"PARTNER_SECRET\" }").unwrap();
        assert_eq!(parsed.secret, SecretRef::Env("PARTNER_SECRET".into()));
        let parsed: Holder = toml::from_str("secret = { file = \"/run/secret\" }").unwrap();
        assert_eq!(parsed.secret, SecretRef::File("/run/secret".into()));
        assert!(toml::from_str::<Holder>("secret = { env = \"A\", file = \"/b\" }").is_err());
    }
}
