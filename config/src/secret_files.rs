//! `<ENV NAME>_FILE`: any setting read from the file an environment variable names, trimmed, as
//! Docker secrets and systemd credentials hand them over
//! (`PINGPILOT_PROVIDERS__DISCORD__BOT_TOKEN_FILE=/run/secrets/discord`).

use std::path::PathBuf;

use figment::value::{Dict, Map, Value};
use figment::{Metadata, Profile, Provider};

use crate::ConfigError;

const PREFIX: &str = "PINGPILOT_";
pub(crate) const SUFFIX: &str = "_FILE";

/// One setting whose value was read from a file.
pub(crate) struct SecretFile {
    /// The setting, e.g. `providers.discord.bot_token`.
    pub key: String,
    /// The variable that named the file.
    pub variable: String,
    pub path: PathBuf,
    value: String,
}

impl SecretFile {
    /// Where the value came from, for messages (never the value).
    pub fn source(&self) -> String {
        format!("file {} ({})", self.path.display(), self.variable)
    }
}

/// Whether an environment variable names a file rather than holding a value.
pub(crate) fn is_file_variable(name: &str) -> bool {
    name.len() > PREFIX.len() + SUFFIX.len()
        && name.starts_with(PREFIX)
        && name.ends_with(SUFFIX)
        && name.contains("__")
}

/// The settings read from the files that `PINGPILOT_…_FILE` variables name. A file that cannot
/// be read, or a setting given both ways, is an error naming the variable.
pub(crate) fn read(
    vars: impl Iterator<Item = (String, String)>,
) -> Result<Vec<SecretFile>, ConfigError> {
    let vars: Vec<(String, String)> = vars.collect();
    let mut files = Vec::new();
    for (variable, path) in &vars {
        if !is_file_variable(variable) {
            continue;
        }
        let direct = &variable[..variable.len() - SUFFIX.len()];
        if vars.iter().any(|(name, _)| name == direct) {
            return Err(ConfigError::Invalid(format!(
                "{direct} and {variable} are both set: give the value one way"
            )));
        }
        let path = PathBuf::from(path);
        let text = std::fs::read_to_string(&path).map_err(|err| {
            ConfigError::Invalid(format!("{variable}: cannot read {}: {err}", path.display()))
        })?;
        files.push(SecretFile {
            key: direct[PREFIX.len()..]
                .to_ascii_lowercase()
                .replace("__", "."),
            variable: variable.clone(),
            path,
            value: text.trim().to_string(),
        });
    }
    Ok(files)
}

impl Provider for SecretFile {
    fn metadata(&self) -> Metadata {
        Metadata::named("a file named by a PINGPILOT_…_FILE variable")
            .source(figment::Source::Custom(self.source()))
    }

    fn data(&self) -> Result<Map<Profile, Dict>, figment::Error> {
        // Read as the variable's own value would be (`true`, numbers, text).
        let value: Value = self.value.parse().unwrap_or_else(|never| match never {});
        let dict = match figment::util::nest(&self.key, value) {
            Value::Dict(_, dict) => dict,
            _ => Dict::new(),
        };
        Ok(Profile::Default.collect(dict))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn vars(pairs: &[(&str, &str)]) -> impl Iterator<Item = (String, String)> {
        pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect::<Vec<_>>()
            .into_iter()
    }

    #[test]
    fn file_variables_name_a_setting_and_a_file() {
        let dir = std::env::temp_dir().join(format!("pp-secret-{}", std::process::id()));
        std::fs::create_dir_all(&dir).expect("dir");
        let file = dir.join("token");
        std::fs::write(&file, "  123:ABC\n").expect("write");
        let path = file.display().to_string();
        let read = read(vars(&[
            ("PINGPILOT_PROVIDERS__DISCORD__BOT_TOKEN_FILE", &path),
            ("PINGPILOT_LOG", "debug"),
            ("HOME_FILE", "/x"),
        ]))
        .expect("read");
        assert_eq!(read.len(), 1);
        assert_eq!(read[0].key, "providers.discord.bot_token");
        assert_eq!(read[0].value, "123:ABC");
        assert_eq!(
            read[0].source(),
            format!("file {path} (PINGPILOT_PROVIDERS__DISCORD__BOT_TOKEN_FILE)")
        );
        let both = read_err(&[
            ("PINGPILOT_METRICS__TOKEN_FILE", &path),
            ("PINGPILOT_METRICS__TOKEN", "x"),
        ]);
        assert!(both.contains("both set"), "{both}");
        let missing = read_err(&[("PINGPILOT_METRICS__TOKEN_FILE", "/nonexistent/token")]);
        assert!(
            missing.starts_with("invalid configuration: PINGPILOT_METRICS__TOKEN_FILE: cannot read /nonexistent/token"),
            "{missing}"
        );
        std::fs::remove_dir_all(&dir).ok();
    }

    fn read_err(pairs: &[(&str, &str)]) -> String {
        read(vars(pairs)).err().expect("refused").to_string()
    }
}
