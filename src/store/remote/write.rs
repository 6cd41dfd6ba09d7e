//! Remote writes: whole objects in one request, deletions, and the steps of a multipart
//! upload, on the store's I/O runtime. Part of the store's object-store backend, first
//! stage of the flow: STORE -> shard reader -> ...

use std::sync::Arc;

use bytes::Bytes;
use object_store::multipart::{MultipartStore, PartId};
use object_store::{ObjectStoreExt, PutPayload};

use super::Core;
use crate::store::StoreError;

impl Core {
    /// The multipart side of the client; callers check that there is one first.
    fn multipart_store(&self) -> Arc<dyn MultipartStore> {
        self.multipart
            .clone()
            .expect("callers check for multipart support")
    }

    /// Writes a whole object in one request (objects appear whole or not at all).
    pub async fn put(&self, name: &str, bytes: Bytes) -> Result<(), StoreError> {
        let path = self.path(name);
        let store = &self.store;
        self.retrier()
            .run(&self.url_of(name), || {
                store.put(&path, PutPayload::from_bytes(bytes.clone()))
            })
            .await?;
        Ok(())
    }

    /// Deletes an object; a missing one is not an error.
    pub async fn delete(&self, name: &str) -> Result<(), StoreError> {
        let path = self.path(name);
        let store = &self.store;
        match self
            .retrier()
            .run(&self.url_of(name), || store.delete(&path))
            .await
        {
            Ok(()) | Err(StoreError::NotFound { .. }) => Ok(()),
            Err(e) => Err(e),
        }
    }

    /// Starts a multipart upload.
    pub async fn create_multipart(&self, name: &str) -> Result<String, StoreError> {
        let mp = self.multipart_store();
        let path = self.path(name);
        self.retrier()
            .run(&self.url_of(name), || mp.create_multipart(&path))
            .await
    }

    /// Uploads part `idx`; a retry re-sends the same part number, so it is idempotent.
    pub async fn put_part(
        &self,
        name: &str,
        id: &str,
        idx: usize,
        data: Bytes,
    ) -> Result<PartId, StoreError> {
        let mp = self.multipart_store();
        let path = self.path(name);
        let id = id.to_string();
        self.retrier()
            .run(&self.url_of(name), || {
                mp.put_part(&path, &id, idx, PutPayload::from_bytes(data.clone()))
            })
            .await
    }

    /// Completes a multipart upload: the object appears now.
    pub async fn complete_multipart(
        &self,
        name: &str,
        id: &str,
        parts: Vec<PartId>,
    ) -> Result<(), StoreError> {
        let mp = self.multipart_store();
        let path = self.path(name);
        let id = id.to_string();
        self.retrier()
            .run(&self.url_of(name), || {
                mp.complete_multipart(&path, &id, parts.clone())
            })
            .await?;
        Ok(())
    }

    /// Abandons a multipart upload (best effort; the bucket's lifecycle rules clean up
    /// what this misses).
    pub async fn abort_multipart(&self, name: &str, id: &str) {
        if let Some(mp) = self.multipart.clone() {
            let _ = mp.abort_multipart(&self.path(name), &id.to_string()).await;
        }
    }
}
