//! Secrets in configuration: a literal, `${env:NAME}` or `${file:PATH}`, resolved late.

use std::{fmt, path::Path};

use schemars::JsonSchema;
use secrecy::{ExposeSecret, SecretString};
use serde::{Deserialize, Deserializer};

/// A secret as written in config. It never prints its value ([`fmt::Debug`] and
/// [`fmt::Display`] are redacted) and cannot be serialized; [`SecretValue::resolve`]
/// turns it into a [`SecretString`] when a source is built.
#[derive(Clone)]
pub enum SecretValue {
    /// Written in the config file as is.
    Literal(SecretString),
    /// `${env:NAME}`: read from the environment when resolved.
    Env(String),
    /// `${file:PATH}`: the file's content, trailing newline removed.
    File(String),
}

impl SecretValue {
    /// Parse the config form. Only a whole-value reference is a reference; nothing is
    /// templated into surrounding text.
    pub fn parse(text: &str) -> Self {
        if let Some(inner) = text.strip_prefix("${").and_then(|t| t.strip_suffix('}')) {
            if let Some(name) = inner.strip_prefix("env:") {
                return SecretValue::Env(name.to_string());
            }
            if let Some(path) = inner.strip_prefix("file:") {
                return SecretValue::File(path.to_string());
            }
        }
        SecretValue::Literal(SecretString::from(text.to_string()))
    }

    /// Read the secret. `field` names the config field in errors; `base_dir` anchors
    /// relative file paths. Errors never contain the secret.
    pub fn resolve(
        &self,
        field: &str,
        base_dir: &Path,
    ) -> Result<SecretString, crate::SourceError> {
        match self {
            SecretValue::Literal(s) => Ok(s.clone()),
            SecretValue::Env(name) => std::env::var(name).map(SecretString::from).map_err(|_| {
                crate::SourceError::config(
                    field,
                    format!(
                        "environment variable `{name}` is not set (referenced as ${{env:{name}}})"
                    ),
                )
            }),
            SecretValue::File(path) => {
                let full = base_dir.join(path);
                std::fs::read_to_string(&full)
                    .map(|s| SecretString::from(s.trim_end_matches(['\n', '\r']).to_string()))
                    .map_err(|e| {
                        crate::SourceError::config(
                            field,
                            format!("cannot read secret file {}: {e}", full.display()),
                        )
                    })
            }
        }
    }

    /// Whether a resolved value equals `text` (for tests that prove redaction).
    pub fn literal_equals(&self, text: &str) -> bool {
        matches!(self, SecretValue::Literal(s) if s.expose_secret() == text)
    }
}

impl fmt::Debug for SecretValue {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            SecretValue::Literal(_) => f.write_str("SecretValue(***)"),
            SecretValue::Env(name) => write!(f, "SecretValue(${{env:{name}}})"),
            SecretValue::File(path) => write!(f, "SecretValue(${{file:{path}}})"),
        }
    }
}

impl fmt::Display for SecretValue {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Debug::fmt(self, f)
    }
}

impl<'de> Deserialize<'de> for SecretValue {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let text = String::deserialize(deserializer)?;
        Ok(SecretValue::parse(&text))
    }
}

impl JsonSchema for SecretValue {
    fn schema_name() -> std::borrow::Cow<'static, str> {
        "Secret".into()
    }

    fn json_schema(_: &mut schemars::SchemaGenerator) -> schemars::Schema {
        schemars::json_schema!({
            "type": "string",
            "description": "A secret: a literal, ${env:NAME} or ${file:PATH}. Never printed.",
            "writeOnly": true
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn debug_and_display_never_show_a_literal_secret() {
        let s = SecretValue::parse("hunter2-very-secret");
        assert!(!format!("{s:?}").contains("hunter2"));
        assert!(!format!("{s}").contains("hunter2"));
        assert!(s.literal_equals("hunter2-very-secret"));
        #[derive(Debug, Deserialize)]
        #[expect(dead_code, reason = "only Debug output is inspected")]
        struct Cfg {
            password: SecretValue,
        }
        let cfg: Cfg = serde_json::from_str(r#"{"password":"hunter2-very-secret"}"#).unwrap();
        assert!(!format!("{cfg:?}").contains("hunter2"), "{cfg:?}");
    }

    #[test]
    fn references_resolve_late_and_errors_name_the_field() {
        assert!(
            matches!(SecretValue::parse("${env:PG_PASSWORD}"), SecretValue::Env(n) if n == "PG_PASSWORD")
        );
        assert!(matches!(
            SecretValue::parse("${file:secret.txt}"),
            SecretValue::File(_)
        ));
        // Not a whole-value reference: a literal, never templated.
        assert!(SecretValue::parse("pre${env:X}").literal_equals("pre${env:X}"));
        let err = SecretValue::Env("INLET_TEST_SURELY_UNSET_VAR".into())
            .resolve("password", Path::new("."))
            .unwrap_err();
        assert!(err.to_string().contains("password"), "{err}");
        let dir = std::env::temp_dir().join(format!("inlet-secret-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        std::fs::write(dir.join("s.txt"), "tok3n\n").unwrap();
        let got = SecretValue::File("s.txt".into())
            .resolve("token", &dir)
            .unwrap();
        assert_eq!(got.expose_secret(), "tok3n");
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
