//! The shard a subset is filling: its writer and the per-sample manifest strings
//! (categories, splits, edit types, turns, instruction lengths), and closing it: the
//! shard, then its index, both in place before the manifest names them.

use std::collections::HashSet;
use std::path::PathBuf;

use bytes::Bytes;
use sha2::{Digest, Sha256};

use super::encoded::SampleAttrs;
use super::io_err;
use super::options::WriteError;
use crate::dataset::manifest::{base36, category_char, ContentHasher, ShardManifest};
use crate::dataset::splits::split_char;
use crate::hex::hex;
use crate::shard::{Frame, ShardWriter};
use crate::store::{ObjectWriter, Store};

/// A shard being written.
pub(super) struct OpenShard {
    pub(super) name: String,
    pub(super) writer: ShardWriter<ObjectWriter>,
    categories: String,
    splits: String,
    edit_types: String,
    turns: String,
    instruction_words: String,
}

/// What the writer keeps per subset.
#[derive(Default)]
pub(super) struct SubsetState {
    pub(super) shards: Vec<ShardManifest>,
    pub(super) open: Option<OpenShard>,
    pub(super) content: ContentHasher,
    pub(super) keys: HashSet<String>,
    pub(super) max_turns: u32,
}

impl OpenShard {
    /// Starts shard `name` through the store.
    pub(super) fn create(
        store: &Store,
        name: String,
        level: i32,
        compress_literals: bool,
    ) -> Result<OpenShard, WriteError> {
        let out = store.writer(&name)?;
        let url = PathBuf::from(out.url());
        let writer = ShardWriter::new(out, level, compress_literals).map_err(io_err(&url))?;
        Ok(OpenShard {
            name,
            writer,
            categories: String::new(),
            splits: String::new(),
            edit_types: String::new(),
            turns: String::new(),
            instruction_words: String::new(),
        })
    }

    /// Appends a frame and records its attributes; returns the frame's length.
    pub(super) fn add(
        &mut self,
        store: &Store,
        frame: Frame,
        attrs: &SampleAttrs,
        split: Option<u8>,
    ) -> Result<u64, WriteError> {
        let path = PathBuf::from(store.url_of(&self.name));
        let len = self.writer.add_frame(frame).map_err(io_err(&path))?;
        self.categories.push(category_char(attrs.category));
        if let Some(id) = split {
            self.splits.push(split_char(id));
        }
        self.edit_types
            .push(attrs.edit_type.map_or('-', |i| base36(i as u32)));
        self.turns.push(base36(attrs.turns));
        let words = attrs.instruction_words.min(36 * 36 - 1);
        self.instruction_words.push(base36(words / 36));
        self.instruction_words.push(base36(words % 36));
        Ok(len)
    }

    /// The content digest of the last sample added.
    pub(super) fn last_digest(&self) -> [u8; 32] {
        self.writer.last_digest().expect("a sample was just added")
    }
}

pub(super) fn close_shard(store: &Store, state: &mut SubsetState) -> Result<(), WriteError> {
    let Some(open) = state.open.take() else {
        return Ok(());
    };
    let url = PathBuf::from(store.url_of(&open.name));
    let (out, done) = open.writer.finish().map_err(io_err(&url))?;
    // A shard, then its index: both are in place before the manifest names them.
    out.finish()?;
    let index_name = format!("{}.idx", open.name);
    let index_bytes = done.index.encode();
    let index_sha256 = hex(&Sha256::digest(&index_bytes));
    store.put(&index_name, Bytes::from(index_bytes))?;
    state.shards.push(ShardManifest {
        path: open.name,
        index: Some(index_name),
        samples: done.index.entries.len() as u64,
        bytes: done.bytes,
        sha256: done.sha256,
        index_sha256: Some(index_sha256),
        categories: open.categories,
        splits: open.splits,
        edit_types: open.edit_types,
        turns: open.turns,
        instruction_words: open.instruction_words,
    });
    Ok(())
}
