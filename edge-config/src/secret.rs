//! A string that must never be printed: passwords and other credentials.

use std::fmt;

use serde::de::{self, Deserialize, Deserializer, Visitor};

/// Text shown instead of a secret's value.
pub const REDACTED: &str = "<redacted>";

/// A credential (database or broker password, camera password).
///
/// `Debug` and `Display` print `<redacted>`; the only way to the value is
/// [`Secret::expose`], so a secret reaches a log line or an error message only
/// if someone asks for it by name. It deserializes from a TOML string; a value
/// of another type is rejected with a message that does not repeat the value.
/// It deliberately does not implement `Serialize`.
#[derive(Clone, PartialEq, Eq)]
pub struct Secret(String);

impl Secret {
    /// Wraps a value.
    pub fn new(value: impl Into<String>) -> Self {
        Self(value.into())
    }

    /// The secret value itself. Call it where the credential is handed to a
    /// client library, nowhere else.
    pub fn expose(&self) -> &str {
        &self.0
    }

    /// True when the value is the empty string.
    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }
}

impl From<String> for Secret {
    fn from(value: String) -> Self {
        Self(value)
    }
}

impl fmt::Debug for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(REDACTED)
    }
}

impl fmt::Display for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(REDACTED)
    }
}

impl<'de> Deserialize<'de> for Secret {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        deserializer.deserialize_string(SecretVisitor)
    }
}

struct SecretVisitor;

/// Serde's default "invalid type" errors quote the value (`integer `1234``);
/// for a secret only the type may be named.
fn wrong_type<E: de::Error>(found: &str) -> E {
    E::custom(format!(
        "wrong type: expected a string, found {found} (quote the secret; its value is not shown)"
    ))
}

impl<'de> Visitor<'de> for SecretVisitor {
    type Value = Secret;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("a string")
    }

    fn visit_str<E: de::Error>(self, v: &str) -> Result<Secret, E> {
        Ok(Secret(v.to_owned()))
    }

    fn visit_string<E: de::Error>(self, v: String) -> Result<Secret, E> {
        Ok(Secret(v))
    }

    fn visit_bool<E: de::Error>(self, _: bool) -> Result<Secret, E> {
        Err(wrong_type("a boolean"))
    }

    fn visit_i64<E: de::Error>(self, _: i64) -> Result<Secret, E> {
        Err(wrong_type("an integer"))
    }

    fn visit_u64<E: de::Error>(self, _: u64) -> Result<Secret, E> {
        Err(wrong_type("an integer"))
    }

    fn visit_i128<E: de::Error>(self, _: i128) -> Result<Secret, E> {
        Err(wrong_type("an integer"))
    }

    fn visit_u128<E: de::Error>(self, _: u128) -> Result<Secret, E> {
        Err(wrong_type("an integer"))
    }

    fn visit_f64<E: de::Error>(self, _: f64) -> Result<Secret, E> {
        Err(wrong_type("a float"))
    }

    fn visit_char<E: de::Error>(self, _: char) -> Result<Secret, E> {
        Err(wrong_type("a character"))
    }

    fn visit_bytes<E: de::Error>(self, _: &[u8]) -> Result<Secret, E> {
        Err(wrong_type("bytes"))
    }

    fn visit_seq<A: de::SeqAccess<'de>>(self, _: A) -> Result<Secret, A::Error> {
        Err(wrong_type("an array"))
    }

    fn visit_map<A: de::MapAccess<'de>>(self, _: A) -> Result<Secret, A::Error> {
        Err(wrong_type("a table"))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn debug_and_display_are_redacted() {
        let s = Secret::new("hunter2");
        assert_eq!(format!("{s}"), "<redacted>");
        assert_eq!(format!("{s:?}"), "<redacted>");
        assert_eq!(format!("{:?}", Some(&s)), "Some(<redacted>)");
        assert_eq!(s.expose(), "hunter2");
    }

    #[test]
    fn deserializes_from_a_string_only() {
        #[derive(serde::Deserialize, Debug)]
        struct T {
            password: Secret,
        }
        let t: T = toml::from_str("password = \"s3cr3t\"").unwrap();
        assert_eq!(t.password.expose(), "s3cr3t");
        // toml's Display quotes the source line; the loader uses only `message()`.
        let e = toml::from_str::<T>("password = 987654").unwrap_err();
        assert!(!e.message().contains("987654"), "{e}");
        assert!(e.message().contains("expected a string"), "{e}");
    }
}
