//! Range checks of a [`ServeConfig`], run after command-line flags are applied, and
//! the rule for dataset names. Stage: server/config.

use std::net::SocketAddr;

use super::{ConfigError, ServeConfig};

impl ServeConfig {
    /// Checks ranges; call after flags are applied.
    pub fn validate(&self) -> Result<(), ConfigError> {
        let bad = |field, why: &str| {
            Err(ConfigError::Invalid {
                field,
                why: why.to_string(),
            })
        };
        if self.listen.parse::<SocketAddr>().is_err() {
            return bad(
                "listen",
                &format!("{:?} is not an address like 127.0.0.1:50051", self.listen),
            );
        }
        if self.admin_listen.parse::<SocketAddr>().is_err() {
            return bad(
                "admin_listen",
                &format!(
                    "{:?} is not an address like 127.0.0.1:50052",
                    self.admin_listen
                ),
            );
        }
        let admin_ip = self.admin_listen.parse::<SocketAddr>().map(|a| a.ip());
        if self.resolved_admin_token()?.is_none() && admin_ip.is_ok_and(|ip| !ip.is_loopback()) {
            return bad(
                "admin_listen",
                &format!(
                    "{} is reachable from other hosts: set admin_token_file (or \
                     EDITFEED_ADMIN_TOKEN) so that the Admin service checks a bearer token",
                    self.admin_listen
                ),
            );
        }
        if self.tls_cert_file.is_empty() != self.tls_key_file.is_empty() {
            return bad(
                "tls_cert_file",
                "set both tls_cert_file and tls_key_file, or neither",
            );
        }
        if self.max_streams_per_client == 0 {
            return bad("max_streams_per_client", "must be at least 1");
        }
        if self.reshard_threads == 0 {
            return bad("reshard_threads", "must be at least 1");
        }
        if self.prefetch_batches == 0 {
            return bad("prefetch_batches", "must be at least 1");
        }
        if self.queue_samples == 0 {
            return bad("queue_samples", "must be at least 1");
        }
        if self.max_streams == 0 {
            return bad("max_streams", "must be at least 1");
        }
        if self.max_global_batch == 0 || self.max_image_side == 0 || self.max_batch_bytes == 0 {
            return bad("max_global_batch", "limits must be positive");
        }
        if self.max_inflight_bytes < 1 << 20 {
            return bad("max_inflight_bytes", "must be at least 1 MiB (1048576)");
        }
        if !self.metrics_listen.is_empty() && self.metrics_listen.parse::<SocketAddr>().is_err() {
            return bad(
                "metrics_listen",
                &format!(
                    "{:?} is not an address like 0.0.0.0:9090",
                    self.metrics_listen
                ),
            );
        }
        if !matches!(self.log_format.as_str(), "text" | "json") {
            return bad(
                "log_format",
                &format!("{:?} is not text or json", self.log_format),
            );
        }
        if self.http2_window_bytes < 65_535 {
            return bad(
                "http2_window_bytes",
                "must be at least 65535 (the HTTP/2 minimum)",
            );
        }
        self.store.validate().map_err(|e| ConfigError::Invalid {
            field: "store",
            why: e.to_string(),
        })?;
        for (name, url) in &self.datasets {
            check_dataset_name(name).map_err(|why| ConfigError::Invalid {
                field: "datasets",
                why,
            })?;
            if url.trim().is_empty() {
                return bad(
                    "datasets",
                    &format!("dataset {name:?} has an empty location"),
                );
            }
        }
        Ok(())
    }
}

/// Dataset names are short identifiers: letters, digits, `-`, `_` and `.`, so that a
/// name can never be mistaken for a path or URL.
pub fn check_dataset_name(name: &str) -> Result<(), String> {
    let ok = !name.is_empty()
        && name.len() <= 64
        && name
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.'))
        && !name.starts_with('.');
    if ok {
        Ok(())
    } else {
        Err(format!(
            "{name:?} is not a dataset name (letters, digits, '-', '_', '.'; at most 64)"
        ))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tls_needs_both_halves() {
        let c = ServeConfig::from_toml("t.toml", "tls_cert_file = \"/c.pem\"\n").unwrap();
        let e = c.validate().unwrap_err().to_string();
        assert!(e.contains("tls_key_file"), "{e}");
    }

    #[test]
    fn bad_values_name_the_field() {
        let c = ServeConfig {
            prefetch_batches: 0,
            ..Default::default()
        };
        assert!(c
            .validate()
            .unwrap_err()
            .to_string()
            .contains("prefetch_batches"));
        let c = ServeConfig {
            listen: "nowhere".into(),
            ..Default::default()
        };
        assert!(c.validate().unwrap_err().to_string().contains("listen"));
        let c = ServeConfig {
            admin_listen: "loopback".into(),
            ..Default::default()
        };
        assert!(c
            .validate()
            .unwrap_err()
            .to_string()
            .contains("admin_listen"));
        let c = ServeConfig {
            reshard_threads: 0,
            ..Default::default()
        };
        assert!(c
            .validate()
            .unwrap_err()
            .to_string()
            .contains("reshard_threads"));
        assert!(check_dataset_name("../etc").is_err());
        assert!(check_dataset_name("s3://bucket").is_err());
        assert!(check_dataset_name("pico-banana_v2").is_ok());
    }
}
