//! Who may talk to the daemon: TLS (rustls) for both services when `tls_cert_file` and
//! `tls_key_file` are set, and the Admin service's bearer token. The token is compared
//! in constant time and never logged; a missing or wrong token is UNAUTHENTICATED.

use std::sync::Arc;

use tonic::service::Interceptor;
use tonic::transport::{Identity, ServerTlsConfig};
use tonic::{Request, Status};

use crate::config::{ConfigError, ServeConfig};
use crate::secret::Secret;

/// Why the daemon's security settings cannot be applied.
#[derive(Debug, thiserror::Error)]
pub enum SecurityError {
    /// A TLS file cannot be read.
    #[error("{key} {path}: {source}")]
    TlsFile {
        /// The config key naming the file.
        key: &'static str,
        /// The file.
        path: String,
        /// Why.
        #[source]
        source: std::io::Error,
    },
    /// The Admin token cannot be read.
    #[error(transparent)]
    Token(#[from] ConfigError),
}

/// The TLS settings of both services, or `None` for plaintext.
pub fn server_tls(config: &ServeConfig) -> Result<Option<ServerTlsConfig>, SecurityError> {
    if config.tls_cert_file.is_empty() {
        return Ok(None);
    }
    let read = |key: &'static str, path: &str| {
        std::fs::read(path).map_err(|source| SecurityError::TlsFile {
            key,
            path: path.to_string(),
            source,
        })
    };
    let cert = read("tls_cert_file", &config.tls_cert_file)?;
    let key = read("tls_key_file", &config.tls_key_file)?;
    Ok(Some(
        ServerTlsConfig::new().identity(Identity::from_pem(cert, key)),
    ))
}

/// Checks the `authorization: Bearer TOKEN` header of every call when a token is set.
#[derive(Clone)]
pub struct RequireToken {
    token: Option<Arc<Secret>>,
}

impl RequireToken {
    /// The check for `config`'s Admin token (none: every call passes).
    pub fn from_config(config: &ServeConfig) -> Result<RequireToken, SecurityError> {
        Ok(RequireToken {
            token: config.resolved_admin_token()?.map(Arc::new),
        })
    }
}

impl Interceptor for RequireToken {
    fn call(&mut self, request: Request<()>) -> Result<Request<()>, Status> {
        let Some(token) = &self.token else {
            return Ok(request);
        };
        let Some(header) = request.metadata().get("authorization") else {
            return Err(Status::unauthenticated(
                "the Admin service needs an `authorization: Bearer TOKEN` header",
            ));
        };
        let given = header
            .to_str()
            .ok()
            .and_then(|v| v.strip_prefix("Bearer "))
            .unwrap_or("");
        if constant_time_eq(given.as_bytes(), token.expose().as_bytes()) {
            Ok(request)
        } else {
            Err(Status::unauthenticated("the Admin bearer token is wrong"))
        }
    }
}

/// Compares without stopping at the first difference, so timing does not reveal how
/// much of a guess was right.
fn constant_time_eq(a: &[u8], b: &[u8]) -> bool {
    if a.len() != b.len() {
        return false;
    }
    a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

#[cfg(test)]
mod tests {
    use super::*;

    fn call(check: &mut RequireToken, header: Option<&str>) -> Result<(), tonic::Code> {
        let mut req = Request::new(());
        if let Some(h) = header {
            req.metadata_mut()
                .insert("authorization", h.parse().unwrap());
        }
        check.call(req).map(|_| ()).map_err(|s| s.code())
    }

    #[test]
    fn only_the_right_bearer_token_passes() {
        let mut check = RequireToken {
            token: Some(Arc::new(Secret::new("abc123".into()))),
        };
        assert_eq!(call(&mut check, Some("Bearer abc123")), Ok(()));
        for bad in [None, Some("Bearer abc124"), Some("abc123"), Some("Bearer ")] {
            assert_eq!(
                call(&mut check, bad),
                Err(tonic::Code::Unauthenticated),
                "{bad:?}"
            );
        }
        let mut open = RequireToken { token: None };
        assert_eq!(call(&mut open, None), Ok(()));
    }
}
