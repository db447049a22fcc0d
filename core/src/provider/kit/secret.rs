//! Secrets in settings and in providers (bot tokens, signing secrets): never printed.

use std::fmt;

use serde::Deserialize;

/// A secret text. `Debug` and `Display` show `[redacted]`, so a secret cannot reach a log or an
/// error message by accident; its text is reached only through [`Secret::expose`]. Reads from
/// settings as a plain string; blank is no secret at all ([`Secret::from_setting`]).
#[derive(Clone, PartialEq, Eq, Deserialize)]
#[serde(transparent)]
pub struct Secret(String);

impl Secret {
    pub fn new(text: impl Into<String>) -> Self {
        Self(text.into())
    }

    /// A setting's value trimmed, or `None` when it is unset or blank.
    pub fn from_setting(value: Option<Secret>) -> Option<Secret> {
        value
            .map(|secret| Secret(secret.0.trim().to_string()))
            .filter(|secret| !secret.0.is_empty())
    }

    /// The secret itself, for the one place that sends it.
    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl fmt::Debug for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("[redacted]")
    }
}

impl fmt::Display for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("[redacted]")
    }
}

impl schemars::JsonSchema for Secret {
    fn inline_schema() -> bool {
        true
    }

    fn schema_name() -> std::borrow::Cow<'static, str> {
        "Secret".into()
    }

    fn json_schema(_: &mut schemars::SchemaGenerator) -> schemars::Schema {
        schemars::json_schema!({"type": "string", "writeOnly": true})
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn never_prints_its_text() {
        let secret = Secret::new("123:ABC");
        assert_eq!(format!("{secret}"), "[redacted]");
        assert_eq!(format!("{secret:?}"), "[redacted]");
        assert_eq!(format!("{:?}", Some(&secret)), "Some([redacted])");
        assert_eq!(secret.expose(), "123:ABC");
    }

    #[test]
    fn blank_settings_are_no_secret() {
        let read = |json: &str| serde_json::from_str::<Option<Secret>>(json).expect("json");
        assert_eq!(
            Secret::from_setting(read("\"  tok \"")).map(|s| s.expose().to_string()),
            Some("tok".into())
        );
        assert_eq!(Secret::from_setting(read("\"  \"")), None);
        assert_eq!(Secret::from_setting(read("null")), None);
    }
}
