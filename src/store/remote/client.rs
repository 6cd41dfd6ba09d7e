//! The `object_store` client of a bucket URL: S3 (or an S3-compatible server), Google
//! Cloud Storage or Azure Blob Storage, configured from the URL and `[store]`. Part of
//! the store's object-store backend, first stage of the flow: STORE -> shard reader -> ...

use std::sync::Arc;
use std::time::Duration;

use object_store::{ClientOptions, RetryConfig};

use super::Clients;
use crate::store::retry;
use crate::store::url::{RemoteUrl, Scheme};
use crate::store::{StoreConfig, StoreError};

/// Builds the object_store client for a URL. Its own retries are off: ours count.
pub(crate) fn build(url: &RemoteUrl, config: &StoreConfig) -> Result<Clients, StoreError> {
    let failed = |e: object_store::Error| StoreError::Config {
        url: url.to_string(),
        why: retry::store_message(&e),
    };
    let client = ClientOptions::new()
        .with_connect_timeout(Duration::from_millis(config.connect_timeout_ms))
        .with_timeout(Duration::from_millis(config.request_timeout_ms))
        .with_pool_max_idle_per_host(config.max_concurrent_requests);
    let retry = RetryConfig {
        max_retries: 0,
        ..RetryConfig::default()
    };
    match url.scheme {
        Scheme::S3 => {
            use object_store::aws::AmazonS3Builder;
            let o = &url.options;
            let mut b = AmazonS3Builder::from_env()
                .with_bucket_name(&url.bucket)
                .with_retry(retry)
                .with_virtual_hosted_style_request(
                    o.virtual_hosted.unwrap_or(config.virtual_hosted),
                )
                .with_allow_http(o.allow_http.unwrap_or(config.allow_http))
                .with_skip_signature(config.skip_signature);
            if let Some(e) = o.endpoint.as_ref().or(config.endpoint.as_ref()) {
                b = b.with_endpoint(e);
            }
            let region = o
                .region
                .clone()
                .or_else(|| config.region.clone())
                .unwrap_or_else(|| "us-east-1".to_string());
            b = b.with_region(region);
            if let (Some(k), Some(s)) = (&config.access_key_id, &config.secret_access_key) {
                b = b.with_access_key_id(k).with_secret_access_key(s);
            }
            if let Some(t) = &config.session_token {
                b = b.with_token(t);
            }
            let allow_http = o.allow_http.unwrap_or(config.allow_http);
            let s3 = Arc::new(
                b.with_client_options(client.with_allow_http(allow_http))
                    .build()
                    .map_err(failed)?,
            );
            Ok((s3.clone(), Some(s3)))
        }
        Scheme::Gcs => {
            use object_store::gcp::GoogleCloudStorageBuilder;
            let g = Arc::new(
                GoogleCloudStorageBuilder::from_env()
                    .with_bucket_name(&url.bucket)
                    .with_retry(retry)
                    .with_client_options(client)
                    .build()
                    .map_err(failed)?,
            );
            Ok((g.clone(), Some(g)))
        }
        Scheme::Azure => {
            use object_store::azure::MicrosoftAzureBuilder;
            let a = Arc::new(
                MicrosoftAzureBuilder::from_env()
                    .with_container_name(&url.bucket)
                    .with_retry(retry)
                    .with_client_options(client)
                    .build()
                    .map_err(failed)?,
            );
            Ok((a.clone(), Some(a)))
        }
    }
}
