//! Resuming an interrupted pack (`--resume`). A pack keeps a log of the shards it has
//! closed in its output (`pack-progress.json`, rewritten whole after each shard, so it
//! is never half written), with, for each, the row the pack had reached and its report
//! at that point. A resumed run of the same pack (the same input and options) takes over
//! the logged shards, in order, as long as their files still match their checksums, as
//! the reshard jobs do; it restores the report and goes on from the row after the last
//! shard it kept. Shards are written in canonical order, so the dataset is the one an
//! uninterrupted run writes. The log is removed once the manifest is written.
//!
//! Flow: rows -> writer -> RESUME LOG (here) -> a later `--resume`.

use std::collections::BTreeMap;

use bytes::Bytes;
use serde::{Deserialize, Serialize};

use super::outcome::SourceWay;
use super::report::{ImportReport, SkippedRow};
use super::ImportError;
use crate::dataset::writer::{ClosedShard, DatasetWriter, KeyDigests, WriteError};
use crate::dataset::Subset;
use crate::store::{Store, StoreError};

/// The log's file name in the output.
pub const LOG_FILE: &str = "pack-progress.json";

/// One closed shard, and where the pack stood when it closed.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct LoggedShard {
    closed: ClosedShard,
    /// The global index of the first row not yet in a closed shard.
    next_row: u64,
    /// The report's counts then.
    written: BTreeMap<Subset, u64>,
    sources: BTreeMap<SourceWay, u64>,
    /// How many of the log's skipped rows came before `next_row`.
    skipped: usize,
}

/// The log of one pack.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct PackLog {
    /// The pack's input digest (input and options; see `PartRecord::input`).
    input: String,
    /// The part packed, if any (`I/N`).
    part: Option<String>,
    shards: Vec<LoggedShard>,
    /// Every row skipped so far, in order.
    skipped: Vec<SkippedRow>,
}

/// Where a resumed pack goes on from.
pub(super) struct Resumed {
    /// The first row to pack.
    pub next_row: u64,
    /// The report up to it.
    pub report: ImportReport,
    /// The log, cut to the shards taken over.
    pub log: PackLog,
}

impl PackLog {
    /// An empty log for a pack of `input`.
    pub(super) fn new(input: &str, part: Option<String>) -> PackLog {
        PackLog {
            input: input.to_string(),
            part,
            shards: Vec::new(),
            skipped: Vec::new(),
        }
    }

    /// The log in `store`, if there is one.
    pub(super) fn read(store: &Store) -> Result<Option<PackLog>, ImportError> {
        let bytes = match store.read(LOG_FILE) {
            Ok(b) => b,
            Err(StoreError::NotFound { .. }) => return Ok(None),
            Err(e) => return Err(ImportError::Write(WriteError::Store(e))),
        };
        serde_json::from_slice(&bytes).map(Some).map_err(|e| {
            ImportError::Options(format!(
                "{}: the pack log does not parse ({e}); start the pack again without --resume",
                store.url_of(LOG_FILE)
            ))
        })
    }

    /// Records shards just closed, with the row the pack has reached and its report.
    pub(super) fn record(
        &mut self,
        store: &Store,
        closed: Vec<ClosedShard>,
        next_row: u64,
        report: &ImportReport,
    ) -> Result<(), WriteError> {
        if closed.is_empty() {
            return Ok(());
        }
        let new_skips = &report.skipped[self.skipped.len()..];
        self.skipped.extend_from_slice(new_skips);
        for closed in closed {
            self.shards.push(LoggedShard {
                closed,
                next_row,
                written: report.written.clone(),
                sources: report.sources.clone(),
                skipped: self.skipped.len(),
            });
        }
        let json = serde_json::to_vec(self).expect("the pack log serialises");
        store.put(LOG_FILE, Bytes::from(json))?;
        Ok(())
    }

    /// Takes over the logged shards that are still intact into `writer` and says where
    /// to go on; `input` and `part` must be those the log was written with.
    pub(super) fn resume(
        self,
        writer: &mut DatasetWriter,
        input: &str,
        part: Option<String>,
        first_row: u64,
        mut report: ImportReport,
    ) -> Result<Resumed, ImportError> {
        if self.input != input || self.part != part {
            return Err(ImportError::Options(format!(
                "{}: this pack was started with other input or options; start it again \
                 without --resume",
                writer.store().url_of(LOG_FILE)
            )));
        }
        let mut kept: Vec<(LoggedShard, KeyDigests)> = Vec::new();
        for logged in &self.shards {
            match writer.intact(&logged.closed.shard) {
                Some(samples) => kept.push((logged.clone(), samples)),
                None => {
                    tracing::info!(shard = %logged.closed.shard.path, "shard no longer matches its checksum; packing again from it");
                    break;
                }
            }
        }
        // The shards of a subset are consecutive in the log: take each run over at once.
        let mut i = 0;
        while i < kept.len() {
            let subset = kept[i].0.closed.subset;
            let run: Vec<_> = kept[i..]
                .iter()
                .take_while(|(l, _)| l.closed.subset == subset)
                .collect();
            let shards = run.iter().map(|(l, _)| l.closed.shard.clone()).collect();
            let samples: Vec<_> = run.iter().flat_map(|(_, s)| s.iter().cloned()).collect();
            let max_turns = run.last().map_or(0, |(l, _)| l.closed.max_turns);
            i += run.len();
            writer.adopt_shards(subset, shards, &samples, max_turns)?;
        }
        let mut log = PackLog::new(input, part);
        let next_row = match kept.last() {
            Some((last, _)) => {
                report.written = last.written.clone();
                report.sources = last.sources.clone();
                report.skipped = self.skipped[..last.skipped].to_vec();
                log.skipped = report.skipped.clone();
                last.next_row
            }
            None => first_row,
        };
        log.shards = kept.into_iter().map(|(l, _)| l).collect();
        tracing::info!(
            shards = log.shards.len(),
            next_row,
            "resuming the pack after the shards already written"
        );
        Ok(Resumed {
            next_row,
            report,
            log,
        })
    }
}
