//! A small Rust client of the Loader and Admin services, used by `editfeed fetch`,
//! `editfeed admin`, the demo and the tests: connects with message limits that fit
//! batches of tens of MB.

use tonic::metadata::{Ascii, MetadataValue};
use tonic::service::interceptor::InterceptedService;
use tonic::service::Interceptor;
use tonic::transport::{Certificate, Channel, ClientTlsConfig, Endpoint};
use tonic::{Request, Status};

use crate::config::Secret;

use crate::proto::v1::admin_client::AdminClient;
use crate::proto::v1::loader_client::LoaderClient;

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

async fn channel(endpoint: &str, opts: &ConnectOptions) -> Result<Channel, ConnectError> {
    let err = |source| ConnectError::Transport {
        endpoint: endpoint.to_string(),
        source,
    };
    let mut e = Endpoint::from_shared(endpoint.to_string())
        .map_err(err)?
        .tcp_nodelay(true)
        .initial_stream_window_size(16 << 20)
        .initial_connection_window_size(16 << 20)
        .max_frame_size(MAX_FRAME_BYTES);
    if endpoint.starts_with("https://") {
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

/// Connects to the Admin service of a daemon at `endpoint` (`http://host:port` or
/// `https://`, the daemon's `admin_listen`), with no token.
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

/// Connects to a daemon at `endpoint` (`http://host:port`).
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
