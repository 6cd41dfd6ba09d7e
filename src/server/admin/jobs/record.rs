//! A job as persisted in `<state_dir>/jobs/<id>.json`, and the names its states are
//! written with. Stage: server (Admin service).

use serde::{Deserialize, Serialize};

use crate::transport::proto::v1::{Job, JobState, ReshardPriority, ReshardRequest};

fn literals_were_coded() -> bool {
    true
}

/// A job as persisted.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct JobRecord {
    pub(super) id: String,
    state: String,
    dataset: String,
    shard_samples: u64,
    shard_bytes: u64,
    destination: String,
    level: i32,
    /// Missing in records written before frames could be written without coded
    /// literals, whose jobs coded them: a resumed job keeps writing what it started.
    #[serde(default = "literals_were_coded")]
    compress_literals: bool,
    transcode_edits: String,
    max_side: u32,
    subsets: Vec<String>,
    activate: bool,
    #[serde(default)]
    priority: String,
    samples_done: u64,
    samples_total: u64,
    bytes_written: u64,
    shards_done: u64,
    error: String,
    version: String,
    created_unix: u64,
    #[serde(default)]
    samples_resumed: u64,
    #[serde(default)]
    source_version: String,
}

pub(super) fn state_name(s: JobState) -> &'static str {
    match s {
        JobState::Unspecified => "unspecified",
        JobState::Queued => "queued",
        JobState::Running => "running",
        JobState::Succeeded => "succeeded",
        JobState::Failed => "failed",
        JobState::Cancelled => "cancelled",
        JobState::Interrupted => "interrupted",
    }
}

fn state_from_name(s: &str) -> JobState {
    [
        JobState::Queued,
        JobState::Running,
        JobState::Succeeded,
        JobState::Failed,
        JobState::Cancelled,
        JobState::Interrupted,
    ]
    .into_iter()
    .find(|x| state_name(*x) == s)
    .unwrap_or(JobState::Unspecified)
}

impl JobRecord {
    pub(super) fn from_job(j: &Job) -> JobRecord {
        let r = j.request.clone().unwrap_or_default();
        let priority = r.priority().as_str_name().into();
        JobRecord {
            id: j.id.clone(),
            state: state_name(j.state()).into(),
            dataset: r.dataset,
            shard_samples: r.shard_samples,
            shard_bytes: r.shard_bytes,
            destination: r.destination,
            level: r.level,
            compress_literals: r.compress_literals,
            transcode_edits: r.transcode_edits,
            max_side: r.max_side,
            subsets: r.subsets,
            activate: r.activate,
            priority,
            samples_done: j.samples_done,
            samples_total: j.samples_total,
            bytes_written: j.bytes_written,
            shards_done: j.shards_done,
            error: j.error.clone(),
            version: j.version.clone(),
            created_unix: j.created_unix,
            samples_resumed: j.samples_resumed,
            source_version: j.source_version.clone(),
        }
    }

    pub(super) fn into_job(self) -> Job {
        Job {
            id: self.id,
            state: state_from_name(&self.state) as i32,
            request: Some(ReshardRequest {
                dataset: self.dataset,
                shard_samples: self.shard_samples,
                shard_bytes: self.shard_bytes,
                destination: self.destination,
                level: self.level,
                compress_literals: self.compress_literals,
                transcode_edits: self.transcode_edits,
                max_side: self.max_side,
                subsets: self.subsets,
                activate: self.activate,
                priority: ReshardPriority::from_str_name(&self.priority).unwrap_or_default() as i32,
            }),
            samples_done: self.samples_done,
            samples_total: self.samples_total,
            bytes_written: self.bytes_written,
            shards_done: self.shards_done,
            rate: 0.0,
            eta_seconds: 0.0,
            error: self.error,
            version: self.version,
            created_unix: self.created_unix,
            samples_resumed: self.samples_resumed,
            source_version: self.source_version,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_record_from_before_the_literals_switch_keeps_coded_literals() {
        let job = Job {
            id: "job-1".into(),
            request: Some(ReshardRequest {
                dataset: "d".into(),
                ..Default::default()
            }),
            ..Default::default()
        };
        let mut json = serde_json::to_value(JobRecord::from_job(&job)).unwrap();
        assert_eq!(json["compress_literals"], false);
        json.as_object_mut().unwrap().remove("compress_literals");
        let old: JobRecord = serde_json::from_value(json).unwrap();
        assert!(old.into_job().request.unwrap().compress_literals);
    }
}
