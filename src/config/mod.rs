//! The daemon's typed configuration: one TOML file, named defaults, a separate
//! validation step, unknown keys rejected by name. Command-line flags override the file.
//! Stage: server/config, read by the server and the CLI.
//!
//! [`ServeConfig`] and its defaults live in `serve`; reading it from TOML text with
//! `EDITFEED_*` environment overrides, and resolving the Admin token, in `load`; the
//! range checks and dataset names in `validate`.

mod load;
mod serve;
mod validate;

pub use load::overridable_keys;
pub use serve::ServeConfig;
pub use validate::check_dataset_name;

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
