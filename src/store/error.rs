//! [`StoreError`]: why a store operation failed, naming the object's URL or path. Part
//! of the first stage of the flow: STORE -> shard reader -> plan -> ...

/// Why a store operation failed; every variant names the object's URL or path.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    /// The object does not exist (404).
    #[error("{url}: not found")]
    NotFound {
        /// The object.
        url: String,
    },
    /// The credentials are missing, wrong or not allowed to read it (401, 403).
    #[error("{url}: access denied: {message}")]
    Denied {
        /// The object.
        url: String,
        /// The store's own words.
        message: String,
    },
    /// Transient failures outlasted the retries (5xx, timeouts, unreachable endpoint).
    #[error("{url}: store unavailable after {attempts} attempts: {message}")]
    Unavailable {
        /// The object.
        url: String,
        /// Attempts made.
        attempts: u32,
        /// The last failure.
        message: String,
    },
    /// The store refused the request for a reason retrying cannot fix.
    #[error("{url}: {message}")]
    Failed {
        /// The object.
        url: String,
        /// The store's own words.
        message: String,
    },
    /// A conditional read found the object unchanged (handled inside the store).
    #[error("{url}: not modified")]
    NotModified {
        /// The object.
        url: String,
    },
    /// The location or its configuration is unusable.
    #[error("{url}: {why}")]
    Config {
        /// The location.
        url: String,
        /// What is wrong.
        why: String,
    },
    /// A local file operation failed.
    #[error("{url}: {source}")]
    Io {
        /// The file.
        url: String,
        /// What failed.
        #[source]
        source: std::io::Error,
    },
}

impl StoreError {
    /// A short, bounded label for metrics: `not_found`, `denied`, `unavailable`,
    /// `failed`, `config` or `io`.
    pub fn kind(&self) -> &'static str {
        match self {
            StoreError::NotFound { .. } => "not_found",
            StoreError::Denied { .. } => "denied",
            StoreError::Unavailable { .. } => "unavailable",
            StoreError::Failed { .. } | StoreError::NotModified { .. } => "failed",
            StoreError::Config { .. } => "config",
            StoreError::Io { .. } => "io",
        }
    }

    /// The object or location the error is about.
    pub fn url(&self) -> &str {
        match self {
            StoreError::NotFound { url }
            | StoreError::Denied { url, .. }
            | StoreError::Unavailable { url, .. }
            | StoreError::Failed { url, .. }
            | StoreError::NotModified { url }
            | StoreError::Config { url, .. }
            | StoreError::Io { url, .. } => url,
        }
    }

    /// Whether the store, not the data, is the problem (unreachable, or our
    /// credentials refused): another daemon may well succeed.
    pub fn is_unavailable(&self) -> bool {
        matches!(
            self,
            StoreError::Unavailable { .. } | StoreError::Denied { .. }
        )
    }
}
