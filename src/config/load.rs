//! Loading a [`ServeConfig`]: TOML text, `EDITFEED_<KEY>` environment overrides, and
//! the Admin token from `EDITFEED_ADMIN_TOKEN` or `admin_token_file`. Stage:
//! server/config.

use serde::Deserialize;

use super::{ConfigError, ServeConfig};
use crate::secret::Secret;

impl ServeConfig {
    /// Parses a TOML file's text; `path` names it in errors.
    pub fn from_toml(path: &str, text: &str) -> Result<ServeConfig, ConfigError> {
        toml::from_str(text).map_err(|e| ConfigError::Parse {
            path: path.to_string(),
            message: e.to_string(),
        })
    }

    /// Parses a TOML file's text and applies `EDITFEED_<KEY>` overrides from `env`
    /// (for example `EDITFEED_WORKERS=4`, `EDITFEED_LISTEN=0.0.0.0:50051`); values are
    /// read as TOML values, or as strings when they do not parse as one. Only the
    /// top-level keys of this struct are overridable; `datasets` is not.
    pub fn from_toml_with_env(
        path: &str,
        text: &str,
        env: impl IntoIterator<Item = (String, String)>,
    ) -> Result<ServeConfig, ConfigError> {
        let parse_err = |message: String| ConfigError::Parse {
            path: path.to_string(),
            message,
        };
        let mut table: toml::Table = toml::from_str(text).map_err(|e| parse_err(e.to_string()))?;
        let keys = overridable_keys();
        let mut token = Secret::default();
        for (name, value) in env {
            if name == "EDITFEED_ADMIN_TOKEN" {
                // Trimmed like admin_token_file, and refused when nothing is left, so a
                // token of spaces cannot authenticate a non-loopback Admin service.
                if value.trim().is_empty() {
                    return Err(ConfigError::Invalid {
                        field: "EDITFEED_ADMIN_TOKEN",
                        why: "is set but empty or only whitespace".into(),
                    });
                }
                token = Secret::new(value.trim().to_string());
                continue;
            }
            let Some(key) = name.strip_prefix("EDITFEED_").map(str::to_ascii_lowercase) else {
                continue;
            };
            if !keys.contains(&key) {
                continue;
            }
            let parsed = toml::from_str::<toml::Table>(&format!("v = {value}"))
                .ok()
                .and_then(|mut t| t.remove("v"))
                .unwrap_or(toml::Value::String(value.clone()));
            table.insert(key, parsed);
        }
        let mut config = ServeConfig::deserialize(table).map_err(|e| {
            parse_err(format!(
                "{e} (after applying EDITFEED_* environment overrides)"
            ))
        })?;
        config.admin_token = token;
        Ok(config)
    }

    /// The Admin service's bearer token: `EDITFEED_ADMIN_TOKEN`, else the content of
    /// `admin_token_file`; `None` when neither is set.
    pub fn resolved_admin_token(&self) -> Result<Option<Secret>, ConfigError> {
        if !self.admin_token.is_empty() {
            return Ok(Some(self.admin_token.clone()));
        }
        if self.admin_token_file.is_empty() {
            return Ok(None);
        }
        let bad = |why: String| ConfigError::Invalid {
            field: "admin_token_file",
            why,
        };
        let text = std::fs::read_to_string(&self.admin_token_file)
            .map_err(|e| bad(format!("{}: {e}", self.admin_token_file)))?;
        let token = Secret::new(text.trim().to_string());
        if token.is_empty() {
            return Err(bad(format!("{} is empty", self.admin_token_file)));
        }
        Ok(Some(token))
    }
}

/// The top-level keys `EDITFEED_<KEY>` may override: every scalar key of
/// [`ServeConfig`].
pub fn overridable_keys() -> Vec<String> {
    let value = toml::Value::try_from(ServeConfig::default()).expect("the config serialises");
    value
        .as_table()
        .map(|t| {
            t.iter()
                .filter(|(_, v)| !v.is_table())
                .map(|(k, _)| k.clone())
                .collect()
        })
        .unwrap_or_default()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_full_file_parses_and_validates() {
        let c = ServeConfig::from_toml(
            "t.toml",
            "listen = \"0.0.0.0:7000\"\nworkers = 4\n[datasets]\npico = \"/data/pico\"\n",
        )
        .unwrap();
        assert_eq!(c.workers, 4);
        assert_eq!(c.datasets["pico"], "/data/pico");
        assert_eq!(c.prefetch_batches, ServeConfig::default().prefetch_batches);
        c.validate().unwrap();
    }

    #[test]
    fn an_admin_service_beyond_loopback_needs_a_token_which_debug_never_shows() {
        let open = "admin_listen = \"0.0.0.0:50052\"\n";
        let e = ServeConfig::from_toml_with_env("t.toml", open, [])
            .unwrap()
            .validate()
            .unwrap_err()
            .to_string();
        assert!(
            e.contains("admin_listen") && e.contains("admin_token_file"),
            "{e}"
        );

        let env = [(
            "EDITFEED_ADMIN_TOKEN".to_string(),
            "s3cret-t0ken".to_string(),
        )];
        let c = ServeConfig::from_toml_with_env("t.toml", open, env).unwrap();
        c.validate().unwrap();
        for blank in ["", "   ", " \t\n"] {
            let env = [("EDITFEED_ADMIN_TOKEN".to_string(), blank.to_string())];
            let e = ServeConfig::from_toml_with_env("t.toml", open, env).unwrap_err();
            assert!(e.to_string().contains("EDITFEED_ADMIN_TOKEN"), "{e}");
        }
        assert_eq!(
            c.resolved_admin_token().unwrap().unwrap().expose(),
            "s3cret-t0ken"
        );
        let shown = format!("{c:?}");
        assert!(
            !shown.contains("s3cret") && shown.contains("<redacted>"),
            "{shown}"
        );
        let serialised = format!("{:?}", toml::Value::try_from(&c).unwrap());
        assert!(!serialised.contains("s3cret"), "{serialised}");

        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("token");
        std::fs::write(&file, "from-file\n").unwrap();
        let text = format!(
            "{open}admin_token_file = {:?}\n",
            file.display().to_string()
        );
        let c = ServeConfig::from_toml_with_env("t.toml", &text, []).unwrap();
        c.validate().unwrap();
        assert_eq!(
            c.resolved_admin_token().unwrap().unwrap().expose(),
            "from-file"
        );
        std::fs::write(&file, " \n").unwrap();
        let e = c.validate().unwrap_err().to_string();
        assert!(e.contains("admin_token_file") && e.contains("empty"), "{e}");
    }

    #[test]
    fn a_misspelt_key_is_rejected_by_name() {
        let e = ServeConfig::from_toml("t.toml", "worker = 4\n")
            .unwrap_err()
            .to_string();
        assert!(e.contains("worker") && e.contains("t.toml"), "{e}");
        let e = ServeConfig::from_toml("t.toml", "admin_lisen = \"127.0.0.1:1\"\n")
            .unwrap_err()
            .to_string();
        assert!(e.contains("admin_lisen"), "{e}");
    }

    #[test]
    fn environment_overrides_apply_and_are_typed() {
        let env = [
            ("EDITFEED_WORKERS".to_string(), "3".to_string()),
            ("EDITFEED_LISTEN".to_string(), "0.0.0.0:7000".to_string()),
            ("EDITFEED_LOG_FORMAT".to_string(), "json".to_string()),
            ("EDITFEED_BIN".to_string(), "/not/a/config/key".to_string()),
            ("HOME".to_string(), "/root".to_string()),
        ];
        let c = ServeConfig::from_toml_with_env("t.toml", "workers = 1\n", env).unwrap();
        assert_eq!(
            (c.workers, c.listen.as_str(), c.log_format.as_str()),
            (3, "0.0.0.0:7000", "json")
        );
        let bad = [("EDITFEED_WORKERS".to_string(), "many".to_string())];
        let e = ServeConfig::from_toml_with_env("t.toml", "", bad)
            .unwrap_err()
            .to_string();
        assert!(e.contains("workers") && e.contains("environment"), "{e}");
        assert!(overridable_keys().contains(&"drain_seconds".to_string()));
        assert!(!overridable_keys().contains(&"datasets".to_string()));
    }
}
