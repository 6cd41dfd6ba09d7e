//! A remote object uploaded from a blocking writer: the buffer goes out part by part as
//! a multipart upload, with a bounded number of parts in flight on the store's I/O
//! runtime (or in one request for a small object or a store without multipart
//! support). An upload dropped before it finishes is aborted. Part of the first stage
//! of the flow: STORE -> shard reader -> ...

use std::sync::Arc;

use bytes::Bytes;
use object_store::multipart::PartId;

use super::io::IoRuntime;
use super::remote::Core;
use super::StoreError;

/// A multipart upload in progress (or the buffer of a one-request upload).
pub(super) struct Upload {
    core: Arc<Core>,
    io: Arc<IoRuntime>,
    name: String,
    buf: Vec<u8>,
    id: Option<String>,
    parts: Vec<Part>,
    finished: bool,
}

enum Part {
    Pending(tokio::task::JoinHandle<Result<PartId, StoreError>>),
    Done(PartId),
}

impl Upload {
    /// An upload of object `name`; nothing is sent before the first full part.
    pub(super) fn new(core: Arc<Core>, io: Arc<IoRuntime>, name: &str) -> Upload {
        Upload {
            core,
            io,
            name: name.to_string(),
            buf: Vec::new(),
            id: None,
            parts: Vec::new(),
            finished: false,
        }
    }

    /// Buffers `data`, sending the buffer as the next part once it holds a part's worth.
    pub(super) fn write(&mut self, data: &[u8]) -> Result<(), StoreError> {
        self.buf.extend_from_slice(data);
        if self.buf.len() >= self.core.part_bytes {
            self.send_part()?;
        }
        Ok(())
    }

    /// Sends the buffer as the next part, keeping at most `upload_concurrency` parts in
    /// flight. Without multipart support the buffer just grows (one request at the end).
    fn send_part(&mut self) -> Result<(), StoreError> {
        if self.core.multipart.is_none() {
            return Ok(());
        }
        let id = match &self.id {
            Some(id) => id.clone(),
            None => {
                let (core, name) = (self.core.clone(), self.name.clone());
                let id = self
                    .io
                    .block_on(async move { core.create_multipart(&name).await })?;
                self.id = Some(id.clone());
                id
            }
        };
        let data = Bytes::from(std::mem::take(&mut self.buf));
        let (core, name, idx) = (self.core.clone(), self.name.clone(), self.parts.len());
        let task = self
            .io
            .spawn(async move { core.put_part(&name, &id, idx, data).await });
        self.parts.push(Part::Pending(task));
        let pending = self
            .parts
            .iter()
            .filter(|p| matches!(p, Part::Pending(_)))
            .count();
        if pending > self.core.upload_concurrency {
            self.wait_oldest()?;
        }
        Ok(())
    }

    fn wait_oldest(&mut self) -> Result<(), StoreError> {
        let Some(slot) = self
            .parts
            .iter_mut()
            .find(|p| matches!(p, Part::Pending(_)))
        else {
            return Ok(());
        };
        let Part::Pending(task) = std::mem::replace(
            slot,
            Part::Done(PartId {
                content_id: String::new(),
            }),
        ) else {
            unreachable!("found pending above")
        };
        let url = self.core.url_of(&self.name);
        let id = self.io.block_on(task).map_err(|e| StoreError::Failed {
            url,
            message: format!("an upload task failed: {e}"),
        })??;
        *slot = Part::Done(id);
        Ok(())
    }

    /// Sends what is left and completes the upload: the object appears now.
    pub(super) fn finish(&mut self) -> Result<(), StoreError> {
        let Some(id) = self.id.clone() else {
            // Small object (or no multipart support): one request.
            let (core, name) = (self.core.clone(), self.name.clone());
            let data = Bytes::from(std::mem::take(&mut self.buf));
            self.io
                .block_on(async move { core.put(&name, data).await })?;
            self.finished = true;
            return Ok(());
        };
        if !self.buf.is_empty() {
            self.send_part()?;
        }
        while self.parts.iter().any(|p| matches!(p, Part::Pending(_))) {
            self.wait_oldest()?;
        }
        let parts: Vec<PartId> = self
            .parts
            .drain(..)
            .map(|p| match p {
                Part::Done(id) => id,
                Part::Pending(_) => unreachable!("all parts waited for"),
            })
            .collect();
        let (core, name) = (self.core.clone(), self.name.clone());
        self.io
            .block_on(async move { core.complete_multipart(&name, &id, parts).await })?;
        self.finished = true;
        Ok(())
    }
}

impl Drop for Upload {
    fn drop(&mut self) {
        if self.finished {
            return;
        }
        for p in &self.parts {
            if let Part::Pending(t) = p {
                t.abort();
            }
        }
        if let Some(id) = self.id.take() {
            let (core, name) = (self.core.clone(), self.name.clone());
            self.io
                .spawn(async move { core.abort_multipart(&name, &id).await });
        }
    }
}
