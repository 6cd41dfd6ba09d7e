//! A small Rust client of the Loader and Admin services, used by `editfeed fetch`,
//! `editfeed admin`, the demo and the tests: connects with message limits that fit
//! batches of tens of MB.

use tonic::transport::{Channel, Endpoint};

use crate::proto::v1::admin_client::AdminClient;
use crate::proto::v1::loader_client::LoaderClient;

/// The largest message the client accepts (1 GiB, the server's default batch limit).
pub const MAX_MESSAGE_BYTES: usize = (1 << 30) + (1 << 20);

/// Why a connection failed.
#[derive(Debug, thiserror::Error)]
#[error("cannot connect to {endpoint}: {source}")]
pub struct ConnectError {
    /// The endpoint tried.
    pub endpoint: String,
    /// Why.
    #[source]
    pub source: tonic::transport::Error,
}

async fn channel(endpoint: &str) -> Result<Channel, ConnectError> {
    let err = |source| ConnectError {
        endpoint: endpoint.to_string(),
        source,
    };
    Endpoint::from_shared(endpoint.to_string())
        .map_err(err)?
        .tcp_nodelay(true)
        .initial_stream_window_size(16 << 20)
        .initial_connection_window_size(16 << 20)
        .connect()
        .await
        .map_err(err)
}

/// Connects to the Admin service of a daemon at `endpoint` (`http://host:port`, the
/// daemon's `admin_listen`).
pub async fn connect_admin(endpoint: &str) -> Result<AdminClient<Channel>, ConnectError> {
    Ok(AdminClient::new(channel(endpoint).await?))
}

/// Connects to a daemon at `endpoint` (`http://host:port`).
pub async fn connect(endpoint: &str) -> Result<LoaderClient<Channel>, ConnectError> {
    let channel = channel(endpoint).await?;
    Ok(LoaderClient::new(channel)
        .max_decoding_message_size(MAX_MESSAGE_BYTES)
        .max_encoding_message_size(1 << 20))
}
