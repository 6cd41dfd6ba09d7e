//! The daemon's typed configuration: one TOML file, named defaults, a separate
//! validation step, unknown keys rejected by name. Command-line flags override the file.

use std::collections::BTreeMap;
use std::net::SocketAddr;

use serde::{Deserialize, Serialize};

use crate::secret::Secret;

/// Why a configuration is unusable.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    /// The file does not parse (the message names the bad key and line).
    #[error("config {path}: {message}")]
    Parse { path: String, message: String },
    /// A value is out of range.
    #[error("config: {field}: {why}")]
    Invalid { field: &'static str, why: String },
}

/// Configuration of `editfeed serve`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct ServeConfig {
    /// Address of the Loader service. Default `127.0.0.1:50051`; use `0.0.0.0:50051` to
    /// serve other hosts.
    pub listen: String,
    /// Address of the Admin service (dataset registry, reshard jobs, stats), on its own
    /// port. Default `127.0.0.1:50052`: loopback only, since it changes what is served.
    /// Port 0 (`127.0.0.1:0`) takes a free port, printed on the `admin listening on`
    /// line: a second daemon on one host needs another port, or 0.
    pub admin_listen: String,
    /// A file holding the Admin service's bearer token (surrounding whitespace is
    /// ignored). `EDITFEED_ADMIN_TOKEN` gives the token itself instead. With a token,
    /// every Admin call must carry `authorization: Bearer TOKEN`; without one the Admin
    /// service is open, which is allowed only on a loopback `admin_listen`.
    pub admin_token_file: String,
    /// The Admin token from `EDITFEED_ADMIN_TOKEN` (never in the file, never printed).
    #[serde(skip)]
    pub admin_token: Secret,
    /// PEM certificate chain for TLS on both services; with `tls_key_file`. Empty (the
    /// default): plaintext.
    pub tls_cert_file: String,
    /// PEM private key of `tls_cert_file`.
    pub tls_key_file: String,
    /// Folder where the daemon keeps its state: the dataset registry (`registry.json`)
    /// and reshard jobs (`jobs/`), so both survive a restart. Empty (the default) keeps
    /// them in memory only.
    pub state_dir: String,
    /// Reshard jobs that run at once, each on one dedicated thread at a lowered CPU
    /// priority (SCHED_IDLE unless the request asks otherwise); more jobs wait in the
    /// queue. This is the CPU budget that keeps serving's throughput during a reshard.
    pub reshard_threads: usize,
    /// Reshard jobs that may wait for a thread; more are refused with
    /// RESOURCE_EXHAUSTED.
    pub reshard_queue_jobs: usize,
    /// Worker threads for decode and augmentation; 0 means one per core.
    pub workers: usize,
    /// Batches each stream prepares ahead of its client (the prefetch depth).
    pub prefetch_batches: usize,
    /// Sample jobs one stream may have waiting for a worker.
    pub queue_samples: usize,
    /// Concurrent streams the daemon accepts; more are refused with RESOURCE_EXHAUSTED.
    pub max_streams: usize,
    /// Concurrent streams one client (one IP address) may hold; more are refused with
    /// RESOURCE_EXHAUSTED, so one runaway job cannot take every slot.
    pub max_streams_per_client: usize,
    /// Largest global batch a request may ask for.
    pub max_global_batch: u32,
    /// Largest output side in pixels a request may ask for.
    pub max_image_side: u32,
    /// Largest batch message in bytes; larger requests are refused up front.
    pub max_batch_bytes: u64,
    /// Bytes of batches in flight for all streams together: prepared ahead, being
    /// collated, queued and being sent. A stream is admitted with a base of three times
    /// its largest batch's tensor bytes, and each batch it prepares beyond one takes
    /// twice its bytes when there is room. Streams wait for admission rather than grow
    /// the heap; a request whose base alone would pass it is refused with
    /// RESOURCE_EXHAUSTED.
    pub max_inflight_bytes: u64,
    /// Images declaring more pixels than this are refused before decoding.
    pub max_decode_pixels: u64,
    /// HTTP/2 stream and connection window in bytes (batches are tens of MB).
    pub http2_window_bytes: u32,
    /// Shared-memory folder (a tmpfs) for trainers on this host: a client that shows it
    /// sees the same folder (`StreamRequest.shm_probe`; the Python client does this by
    /// default) gets large tensors there as files it maps, instead of in the gRPC
    /// messages. Default `/dev/shm`; empty turns this off. In Kubernetes, mount one
    /// folder into both the daemon's and the trainer's containers, and run both as the
    /// same user.
    pub shm_dir: String,
    /// Bytes in shared-memory files that clients have not taken yet, for all streams;
    /// past it, batches travel in the messages.
    pub shm_max_bytes: u64,
    /// Seconds to finish in-flight batches after SIGTERM or SIGINT.
    pub drain_seconds: u64,
    /// Address of the Prometheus `/metrics` HTTP endpoint, e.g. `0.0.0.0:9090`; empty
    /// (the default) disables it, so several daemons can share a machine.
    pub metrics_listen: String,
    /// Log format: `text` or `json`.
    pub log_format: String,
    /// Log level or filter (tracing's EnvFilter syntax, e.g. `info` or
    /// `editfeed=debug,info`).
    pub log_level: String,
    /// Seconds between attempts to load a dataset that failed to load (for example a
    /// volume not mounted yet); the daemon reports NOT_SERVING until all are loaded.
    pub load_retry_seconds: u64,
    /// Datasets served, by name: `name = "path or URL"`.
    pub datasets: BTreeMap<String, String>,
    /// Object-store access for datasets at `s3://`, `gs://` or `az://` URLs (the
    /// `[store]` table; see README). Credentials also come from the environment.
    #[serde(skip_serializing)]
    pub store: crate::store::StoreConfig,
}

impl Default for ServeConfig {
    fn default() -> Self {
        ServeConfig {
            listen: "127.0.0.1:50051".into(),
            admin_listen: "127.0.0.1:50052".into(),
            admin_token_file: String::new(),
            admin_token: Secret::default(),
            tls_cert_file: String::new(),
            tls_key_file: String::new(),
            state_dir: String::new(),
            reshard_threads: 1,
            reshard_queue_jobs: 16,
            workers: 0,
            prefetch_batches: 2,
            queue_samples: 64,
            max_streams: 256,
            max_streams_per_client: 128,
            max_global_batch: 4096,
            max_image_side: 2048,
            max_batch_bytes: 1 << 30,
            max_inflight_bytes: 2 << 30,
            max_decode_pixels: 64 << 20,
            http2_window_bytes: 16 << 20,
            shm_dir: "/dev/shm".into(),
            shm_max_bytes: 512 << 20,
            drain_seconds: 30,
            metrics_listen: String::new(),
            log_format: "text".into(),
            log_level: "info".into(),
            load_retry_seconds: 5,
            datasets: BTreeMap::new(),
            store: crate::store::StoreConfig::default(),
        }
    }
}

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

    /// Worker threads after resolving 0 to the core count.
    pub fn worker_threads(&self) -> usize {
        if self.workers == 0 {
            std::thread::available_parallelism().map_or(1, |n| n.get())
        } else {
            self.workers
        }
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
    fn tls_needs_both_halves() {
        let c = ServeConfig::from_toml("t.toml", "tls_cert_file = \"/c.pem\"\n").unwrap();
        let e = c.validate().unwrap_err().to_string();
        assert!(e.contains("tls_key_file"), "{e}");
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
