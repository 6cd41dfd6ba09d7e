//! A small Rust client of the Loader and Admin services, used by `editfeed fetch`,
//! `editfeed admin`, the demo and the tests: connects with message limits that fit
//! batches of tens of MB.

use tonic::metadata::{Ascii, MetadataValue};
use tonic::service::interceptor::InterceptedService;
use tonic::service::Interceptor;
use tonic::transport::{Certificate, Channel, ClientTlsConfig, Endpoint};
use tonic::{Request, Status};

use crate::secret::Secret;

use crate::transport::proto::v1::admin_client::AdminClient;
use crate::transport::proto::v1::loader_client::LoaderClient;

/// The largest message the client accepts (1 GiB, the server's default batch limit).
pub const MAX_MESSAGE_BYTES: usize = (1 << 30) + (1 << 20);

/// Why a connection failed.
#[derive(Debug, thiserror::Error)]
pub enum ConnectError {
    /// The endpoint is unusable or does not answer (or its TLS handshake failed).
    #[error("cannot connect to {endpoint}: {source}")]
    Transport {
        /// The endpoint tried.
        endpoint: String,
        /// Why.
        #[source]
        source: tonic::transport::Error,
    },
    /// A file the connection needs cannot be read.
    #[error("{what} {path}: {source}")]
    File {
        /// What the file is for.
        what: &'static str,
        /// The file.
        path: String,
        /// Why.
        #[source]
        source: std::io::Error,
    },
    /// The token cannot be sent as an HTTP header value.
    #[error("the Admin token holds characters an HTTP header cannot carry")]
    BadToken,
    /// The endpoint is not `host:port` or an `http://` / `https://` URL.
    #[error(
        "endpoint {endpoint:?} is not host:port, http://host:port or https://host:port ({why})"
    )]
    BadEndpoint {
        /// The endpoint given.
        endpoint: String,
        /// What is wrong with it.
        why: String,
    },
}

/// The URL of an endpoint: `host:port` means plaintext `http://host:port`, as the
/// Python client reads it; `http://` and `https://` URLs are kept as given.
pub fn endpoint_url(endpoint: &str) -> Result<String, ConnectError> {
    let text = endpoint.trim();
    let bad = |why: String| ConnectError::BadEndpoint {
        endpoint: endpoint.to_string(),
        why,
    };
    let url = if text.contains("://") {
        text.to_string()
    } else {
        format!("http://{text}")
    };
    if url.ends_with("://") {
        return Err(bad("no host".into()));
    }
    let uri: tonic::transport::Uri = url.parse().map_err(|e| bad(format!("{e}")))?;
    match uri.scheme_str() {
        Some("http" | "https") => {}
        Some(other) => return Err(bad(format!("scheme {other:?} is not http or https"))),
        None => return Err(bad("no scheme".into())),
    }
    let Some(authority) = uri.authority().filter(|a| !a.host().is_empty()) else {
        return Err(bad("no host".into()));
    };
    // `Uri` takes any text after the host's colon; the connection would then fail
    // with a resolver error that does not say the port is at fault.
    let host_port = authority.as_str().rsplit('@').next().unwrap_or_default();
    match host_port
        .strip_prefix(authority.host())
        .and_then(|rest| rest.strip_prefix(':'))
    {
        Some(port) if port.parse::<u16>().is_err() => Err(bad(format!(
            "port {port:?} is not a number from 0 to 65535"
        ))),
        _ => Ok(url),
    }
}

/// How to reach a daemon beyond its address: TLS trust and the Admin bearer token.
#[derive(Clone, Default, Debug)]
pub struct ConnectOptions {
    /// PEM certificates to trust for an `https://` endpoint (the daemon's own
    /// certificate, or its issuer's).
    pub ca_pem: Option<Vec<u8>>,
    /// The name the daemon's certificate must carry, when not the endpoint's host.
    pub server_name: Option<String>,
    /// The Admin service's bearer token (its `Debug` is redacted).
    pub token: Secret,
}

impl ConnectOptions {
    /// Options from files: a PEM CA file for TLS and a file holding the Admin token
    /// (either may be absent); `EDITFEED_ADMIN_TOKEN` gives the token when no file does.
    pub fn from_files(
        tls_ca: Option<&str>,
        token_file: Option<&str>,
    ) -> Result<ConnectOptions, ConnectError> {
        let read = |what, path: &str| {
            std::fs::read(path).map_err(|source| ConnectError::File {
                what,
                path: path.to_string(),
                source,
            })
        };
        let ca_pem = tls_ca.map(|p| read("TLS CA file", p)).transpose()?;
        let token = match token_file {
            Some(p) => String::from_utf8_lossy(&read("token file", p)?)
                .trim()
                .to_string(),
            None => std::env::var("EDITFEED_ADMIN_TOKEN").unwrap_or_default(),
        };
        Ok(ConnectOptions {
            ca_pem,
            server_name: None,
            token: Secret::new(token),
        })
    }
}

/// Adds `authorization: Bearer TOKEN` to every call when a token is set.
#[derive(Clone, Default)]
pub struct BearerToken(Option<MetadataValue<Ascii>>);

impl Interceptor for BearerToken {
    fn call(&mut self, mut request: Request<()>) -> Result<Request<()>, Status> {
        if let Some(v) = &self.0 {
            request.metadata_mut().insert("authorization", v.clone());
        }
        Ok(request)
    }
}

/// A client of the Admin service, sending the token given at connect.
pub type Admin = AdminClient<InterceptedService<Channel, BearerToken>>;

/// The largest HTTP/2 frame a client accepts: batches are megabytes, and at HTTP/2's
/// default of 16 KiB each one would be split into thousands of frames.
pub const MAX_FRAME_BYTES: u32 = (1 << 24) - 1;

/// Every connection of this module goes through here, so every command that takes an
/// endpoint accepts the same forms (see [`endpoint_url`]).
async fn channel(endpoint: &str, opts: &ConnectOptions) -> Result<Channel, ConnectError> {
    let url = endpoint_url(endpoint)?;
    let err = |source| ConnectError::Transport {
        endpoint: url.clone(),
        source,
    };
    let mut e = Endpoint::from_shared(url.clone())
        .map_err(err)?
        .tcp_nodelay(true)
        .initial_stream_window_size(16 << 20)
        .initial_connection_window_size(16 << 20)
        .max_frame_size(MAX_FRAME_BYTES);
    if url.starts_with("https://") {
        let mut tls = ClientTlsConfig::new();
        if let Some(ca) = &opts.ca_pem {
            tls = tls.ca_certificate(Certificate::from_pem(ca));
        }
        if let Some(name) = &opts.server_name {
            tls = tls.domain_name(name.clone());
        }
        e = e.tls_config(tls).map_err(err)?;
    }
    e.connect().await.map_err(err)
}

/// Connects to the Admin service of a daemon at `endpoint` (`host:port`,
/// `http://host:port` or `https://`, the daemon's `admin_listen`), with no token.
pub async fn connect_admin(endpoint: &str) -> Result<Admin, ConnectError> {
    connect_admin_with(endpoint, &ConnectOptions::default()).await
}

/// [`connect_admin`] with TLS trust and a token.
pub async fn connect_admin_with(
    endpoint: &str,
    opts: &ConnectOptions,
) -> Result<Admin, ConnectError> {
    let token = if opts.token.is_empty() {
        None
    } else {
        let v = format!("Bearer {}", opts.token.expose());
        Some(v.parse().map_err(|_| ConnectError::BadToken)?)
    };
    Ok(AdminClient::with_interceptor(
        channel(endpoint, opts).await?,
        BearerToken(token),
    ))
}

/// Connects to a daemon at `endpoint` (`host:port`, `http://host:port` or `https://`).
pub async fn connect(endpoint: &str) -> Result<LoaderClient<Channel>, ConnectError> {
    connect_with(endpoint, &ConnectOptions::default()).await
}

/// [`connect`] with TLS trust (for `https://` endpoints).
pub async fn connect_with(
    endpoint: &str,
    opts: &ConnectOptions,
) -> Result<LoaderClient<Channel>, ConnectError> {
    let channel = channel(endpoint, opts).await?;
    Ok(LoaderClient::new(channel)
        .max_decoding_message_size(MAX_MESSAGE_BYTES)
        .max_encoding_message_size(1 << 20))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn endpoints_without_a_scheme_are_plaintext_and_bad_ones_are_named() {
        for (given, url) in [
            ("127.0.0.1:50051", "http://127.0.0.1:50051"),
            (" localhost:1 ", "http://localhost:1"),
            ("[::1]:50051", "http://[::1]:50051"),
            ("http://10.0.0.1:50051", "http://10.0.0.1:50051"),
            ("https://daemon.example:443", "https://daemon.example:443"),
        ] {
            assert_eq!(endpoint_url(given).unwrap(), url);
        }
        for (given, why) in [
            ("ftp://h:1", "scheme \"ftp\""),
            ("http://", "no host"),
            ("", "no host"),
            ("h:port", "port \"port\""),
            ("h:70000", "port \"70000\""),
            ("a b:1", "invalid"),
        ] {
            let e = endpoint_url(given).unwrap_err().to_string();
            assert!(e.starts_with(&format!("endpoint {given:?} is not")), "{e}");
            assert!(e.contains(why), "{given:?}: {e}");
        }
    }
}
