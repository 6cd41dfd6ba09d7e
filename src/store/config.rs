//! `[store]`: how datasets in object stores are reached (endpoint, region, credentials,
//! timeouts, retries, concurrency, read-ahead) and the optional local disk cache.
//!
//! Precedence, lowest first: the defaults here, the config file, the environment
//! ([`StoreConfig::with_env`]), then overrides in a dataset's URL (see `store::url`).
//! Credentials are never logged: `Debug` redacts them.

use std::fmt;
use std::path::PathBuf;

use serde::{Deserialize, Deserializer};

/// Configuration of the object-store layer (the `[store]` table of the daemon config).
#[derive(Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct StoreConfig {
    /// S3-compatible endpoint, e.g. `http://127.0.0.1:9000` for MinIO, Ceph or moto.
    /// Default: AWS S3 for the region. Environment: `EDITFEED_S3_ENDPOINT` (or
    /// `AWS_ENDPOINT_URL`).
    pub endpoint: Option<String>,
    /// The buckets' region. Default: `AWS_REGION` or `AWS_DEFAULT_REGION`, else
    /// `us-east-1`.
    pub region: Option<String>,
    /// Address buckets as `bucket.endpoint/key` (virtual-hosted style) instead of
    /// `endpoint/bucket/key` (path style, the default, which every S3-compatible server
    /// understands). Environment: `EDITFEED_S3_VIRTUAL_HOSTED`.
    pub virtual_hosted: bool,
    /// Allow a plain-http endpoint (S3-compatible servers on a private network).
    /// Environment: `EDITFEED_S3_ALLOW_HTTP`.
    pub allow_http: bool,
    /// Access key id. Default: the environment (`AWS_ACCESS_KEY_ID`), a profile's web
    /// identity or the instance metadata service, as the AWS SDKs do. Never logged.
    pub access_key_id: Option<String>,
    /// Secret access key that goes with `access_key_id`. Never logged.
    pub secret_access_key: Option<String>,
    /// Session token for temporary credentials. Never logged.
    pub session_token: Option<String>,
    /// Send unsigned requests (public buckets that allow anonymous reads).
    pub skip_signature: bool,
    /// Requests one dataset may have in flight at once (range reads, uploads).
    pub max_concurrent_requests: usize,
    /// Threads of the store's own I/O runtime (network work only; decoding stays on the
    /// worker pool).
    pub io_threads: usize,
    /// Times a request is retried after a transient failure (5xx, 429, timeout,
    /// connection error) before the read fails. 403 and 404 are never retried.
    pub max_retries: u32,
    /// Backoff before the first retry, in milliseconds; doubles per retry, with jitter.
    pub retry_initial_backoff_ms: u64,
    /// Longest backoff between retries, in milliseconds.
    pub retry_max_backoff_ms: u64,
    /// Time to establish a connection, in milliseconds.
    pub connect_timeout_ms: u64,
    /// Time for one whole request including its body, in milliseconds.
    pub request_timeout_ms: u64,
    /// Samples each stream reads ahead of its workers, in plan order, from an object
    /// store; 0 turns read-ahead off. Hides store latency: with latency L and a worker
    /// pool preparing R samples per second, about L x R reads must be in flight.
    pub read_ahead_samples: usize,
    /// Bytes of read-ahead each stream may hold (fetched or in flight); the daemon's
    /// read-ahead memory is at most this times its open streams. Accepts sizes like
    /// `128MiB`.
    #[serde(deserialize_with = "de_bytes")]
    pub read_ahead_bytes: u64,
    /// When several samples of one shard are read together, frames separated by at most
    /// this many bytes are fetched with one range request. Accepts sizes like `64KiB`.
    #[serde(deserialize_with = "de_bytes")]
    pub coalesce_gap_bytes: u64,
    /// Part size of multipart uploads when packing into an object store (at least
    /// 5MiB, S3's minimum). Accepts sizes like `16MiB`.
    #[serde(deserialize_with = "de_bytes")]
    pub upload_part_bytes: u64,
    /// Parts of one shard uploaded at once.
    pub upload_concurrency: usize,
    /// A local folder caching bytes read from object stores (sample frames, indexes,
    /// manifests), kept across restarts. Unset: no cache. Environment:
    /// `EDITFEED_CACHE_DIR`.
    pub cache_dir: Option<PathBuf>,
    /// Largest size of the cache; least recently used entries are evicted beyond it.
    /// Accepts sizes like `50GiB`. Environment: `EDITFEED_CACHE_BYTES`.
    #[serde(deserialize_with = "de_bytes")]
    pub cache_bytes: u64,
    /// Read local shards through memory maps (the default): the bytes of a read are the
    /// mapped pages themselves, not a copy (see `store::maps` for the limits). A file
    /// system that refuses to map files is read with positioned reads. `false` reads
    /// with positioned reads into fresh buffers: for disk, network or FUSE file systems
    /// whose I/O errors should fail a read rather than fault the daemon (SIGBUS), or
    /// where other programs may truncate shard files in place while the daemon runs.
    /// Object stores are not affected. Environment: `EDITFEED_STORE_MMAP`.
    pub mmap: bool,
}

impl Default for StoreConfig {
    fn default() -> Self {
        StoreConfig {
            endpoint: None,
            region: None,
            virtual_hosted: false,
            allow_http: false,
            access_key_id: None,
            secret_access_key: None,
            session_token: None,
            skip_signature: false,
            max_concurrent_requests: 64,
            io_threads: 2,
            max_retries: 5,
            retry_initial_backoff_ms: 100,
            retry_max_backoff_ms: 5_000,
            connect_timeout_ms: 5_000,
            request_timeout_ms: 60_000,
            read_ahead_samples: 64,
            read_ahead_bytes: 128 << 20,
            coalesce_gap_bytes: 0,
            upload_part_bytes: 16 << 20,
            upload_concurrency: 4,
            cache_dir: None,
            cache_bytes: 10 << 30,
            mmap: true,
        }
    }
}

/// Shows every field but the credentials, which appear only as set or unset.
impl fmt::Debug for StoreConfig {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let secret = |v: &Option<String>| if v.is_some() { "<redacted>" } else { "<unset>" };
        f.debug_struct("StoreConfig")
            .field("endpoint", &self.endpoint)
            .field("region", &self.region)
            .field("virtual_hosted", &self.virtual_hosted)
            .field("allow_http", &self.allow_http)
            .field("access_key_id", &secret(&self.access_key_id))
            .field("secret_access_key", &secret(&self.secret_access_key))
            .field("session_token", &secret(&self.session_token))
            .field("skip_signature", &self.skip_signature)
            .field("max_concurrent_requests", &self.max_concurrent_requests)
            .field("io_threads", &self.io_threads)
            .field("max_retries", &self.max_retries)
            .field("retry_initial_backoff_ms", &self.retry_initial_backoff_ms)
            .field("retry_max_backoff_ms", &self.retry_max_backoff_ms)
            .field("connect_timeout_ms", &self.connect_timeout_ms)
            .field("request_timeout_ms", &self.request_timeout_ms)
            .field("read_ahead_samples", &self.read_ahead_samples)
            .field("read_ahead_bytes", &self.read_ahead_bytes)
            .field("coalesce_gap_bytes", &self.coalesce_gap_bytes)
            .field("upload_part_bytes", &self.upload_part_bytes)
            .field("upload_concurrency", &self.upload_concurrency)
            .field("cache_dir", &self.cache_dir)
            .field("cache_bytes", &self.cache_bytes)
            .field("mmap", &self.mmap)
            .finish()
    }
}

/// A `[store]` value out of range.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("store config: {field}: {why}")]
pub struct StoreConfigError {
    /// The offending key.
    pub field: &'static str,
    /// What is wrong with it.
    pub why: String,
}

impl StoreConfig {
    /// The defaults with the environment applied: what command-line tools use.
    pub fn from_env() -> StoreConfig {
        StoreConfig::default().with_env()
    }

    /// Applies the environment over this configuration. Reads `EDITFEED_S3_ENDPOINT`
    /// (or `AWS_ENDPOINT_URL`), `EDITFEED_S3_ALLOW_HTTP`, `EDITFEED_S3_VIRTUAL_HOSTED`,
    /// `AWS_REGION` (or `AWS_DEFAULT_REGION`), `EDITFEED_CACHE_DIR`,
    /// `EDITFEED_CACHE_BYTES` and `EDITFEED_STORE_MMAP`. Credentials in `AWS_*` variables are read by the S3
    /// client itself when the config sets none.
    pub fn with_env(self) -> StoreConfig {
        self.with_vars(|k| std::env::var(k).ok().filter(|v| !v.is_empty()))
    }

    /// [`with_env`](Self::with_env) over any variable lookup (tests use a map).
    pub fn with_vars(mut self, var: impl Fn(&str) -> Option<String>) -> StoreConfig {
        if let Some(v) = var("EDITFEED_S3_ENDPOINT").or_else(|| var("AWS_ENDPOINT_URL")) {
            self.endpoint = Some(v);
        }
        if let Some(v) = var("EDITFEED_S3_ALLOW_HTTP").and_then(|v| parse_flag(&v)) {
            self.allow_http = v;
        }
        if let Some(v) = var("EDITFEED_S3_VIRTUAL_HOSTED").and_then(|v| parse_flag(&v)) {
            self.virtual_hosted = v;
        }
        if let Some(v) = var("AWS_REGION").or_else(|| var("AWS_DEFAULT_REGION")) {
            self.region = Some(v);
        }
        if let Some(v) = var("EDITFEED_CACHE_DIR") {
            self.cache_dir = Some(PathBuf::from(v));
        }
        if let Some(v) =
            var("EDITFEED_CACHE_BYTES").and_then(|v| crate::units::parse_bytes(&v).ok())
        {
            self.cache_bytes = v;
        }
        if let Some(v) = var("EDITFEED_STORE_MMAP").and_then(|v| parse_flag(&v)) {
            self.mmap = v;
        }
        self
    }

    /// Checks ranges.
    pub fn validate(&self) -> Result<(), StoreConfigError> {
        let bad = |field, why: &str| {
            Err(StoreConfigError {
                field,
                why: why.to_string(),
            })
        };
        if self.max_concurrent_requests == 0 {
            return bad("max_concurrent_requests", "must be at least 1");
        }
        if self.io_threads == 0 {
            return bad("io_threads", "must be at least 1");
        }
        if self.upload_concurrency == 0 {
            return bad("upload_concurrency", "must be at least 1");
        }
        if self.upload_part_bytes < 5 << 20 {
            return bad(
                "upload_part_bytes",
                "must be at least 5MiB (the smallest part S3 accepts)",
            );
        }
        if self.retry_max_backoff_ms < self.retry_initial_backoff_ms {
            return bad(
                "retry_max_backoff_ms",
                "must be at least retry_initial_backoff_ms",
            );
        }
        if self.connect_timeout_ms == 0 || self.request_timeout_ms == 0 {
            return bad("request_timeout_ms", "timeouts must be positive");
        }
        if self.access_key_id.is_some() != self.secret_access_key.is_some() {
            return bad(
                "secret_access_key",
                "access_key_id and secret_access_key go together",
            );
        }
        if self.cache_dir.is_some() && self.cache_bytes == 0 {
            return bad("cache_bytes", "must be positive when cache_dir is set");
        }
        Ok(())
    }
}

fn parse_flag(v: &str) -> Option<bool> {
    match v.trim().to_ascii_lowercase().as_str() {
        "1" | "true" | "yes" | "on" => Some(true),
        "0" | "false" | "no" | "off" => Some(false),
        _ => None,
    }
}

/// A byte size given as a number or as a string with a unit (`"256MiB"`).
fn de_bytes<'de, D: Deserializer<'de>>(d: D) -> Result<u64, D::Error> {
    #[derive(Deserialize)]
    #[serde(untagged)]
    enum Size {
        N(u64),
        S(String),
    }
    match Size::deserialize(d)? {
        Size::N(n) => Ok(n),
        Size::S(s) => crate::units::parse_bytes(&s).map_err(serde::de::Error::custom),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_store_table_parses_with_units_and_validates() {
        let c: StoreConfig = toml::from_str(
            "endpoint = \"http://127.0.0.1:9000\"\nallow_http = true\ncache_dir = \"/tmp/c\"\ncache_bytes = \"2GiB\"\nread_ahead_bytes = 1048576\n",
        )
        .unwrap();
        assert_eq!(c.cache_bytes, 2 << 30);
        assert_eq!(c.read_ahead_bytes, 1 << 20);
        assert_eq!(c.max_retries, StoreConfig::default().max_retries);
        c.validate().unwrap();
    }

    #[test]
    fn a_misspelt_key_is_rejected_by_name() {
        let e = toml::from_str::<StoreConfig>("cache_dirr = \"/tmp\"\n")
            .unwrap_err()
            .to_string();
        assert!(e.contains("cache_dirr"), "{e}");
    }

    #[test]
    fn debug_never_shows_credentials() {
        let c = StoreConfig {
            access_key_id: Some("AKIAEXAMPLEKEY".into()),
            secret_access_key: Some("wJalrXUtnFEMI/K7MDENG".into()),
            session_token: Some("tok3n".into()),
            ..Default::default()
        };
        let d = format!("{c:?}");
        assert!(!d.contains("AKIAEXAMPLEKEY") && !d.contains("wJalr") && !d.contains("tok3n"));
        assert!(d.contains("<redacted>"), "{d}");
    }

    #[test]
    fn the_environment_overrides_the_file() {
        let env: std::collections::HashMap<&str, &str> = [
            ("EDITFEED_S3_ENDPOINT", "http://10.0.0.1:9000"),
            ("EDITFEED_S3_ALLOW_HTTP", "true"),
            ("AWS_REGION", "eu-central-1"),
            ("EDITFEED_CACHE_BYTES", "1GiB"),
            ("EDITFEED_STORE_MMAP", "off"),
        ]
        .into_iter()
        .collect();
        let c = StoreConfig {
            endpoint: Some("http://file".into()),
            ..Default::default()
        }
        .with_vars(|k| env.get(k).map(|v| v.to_string()));
        assert_eq!(c.endpoint.as_deref(), Some("http://10.0.0.1:9000"));
        assert!(c.allow_http);
        assert_eq!(c.region.as_deref(), Some("eu-central-1"));
        assert_eq!(c.cache_bytes, 1 << 30);
        assert!(!c.mmap && StoreConfig::default().mmap);
    }

    #[test]
    fn bad_values_name_the_field() {
        let c = StoreConfig {
            upload_part_bytes: 1 << 20,
            ..Default::default()
        };
        assert!(c
            .validate()
            .unwrap_err()
            .to_string()
            .contains("upload_part_bytes"));
        let c = StoreConfig {
            access_key_id: Some("a".into()),
            ..Default::default()
        };
        assert!(c
            .validate()
            .unwrap_err()
            .to_string()
            .contains("secret_access_key"));
    }
}
