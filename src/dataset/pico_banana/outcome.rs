//! What became of one metadata row: imported, with the [`SourceWay`] that found its
//! source photo, or skipped for a [`SkipReason`] with a stable short name. The
//! vocabulary the row checks, source resolution and the report share.
//!
//! Flow: rows -> checks and SOURCE RESOLUTION -> OUTCOME (here) -> report and writer.

use serde::{Deserialize, Serialize};

/// Which way found a source photo.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub enum SourceWay {
    /// The row's `local_input_image`.
    LocalInputImage,
    /// The Open Images URL -> ImageID map.
    SourceMap,
    /// The folder of files named like their URLs.
    SourceDir,
}

impl SourceWay {
    /// A stable short name for reports.
    pub fn name(self) -> &'static str {
        match self {
            SourceWay::LocalInputImage => "local_input_image",
            SourceWay::SourceMap => "source_map",
            SourceWay::SourceDir => "source_dir",
        }
    }
}

/// Why one row was not imported. Each variant has a stable short name ([`Self::name`])
/// used in the summary and the JSON report.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error, Serialize, Deserialize)]
pub enum SkipReason {
    /// The line is not a JSON object.
    #[error("malformed json: {why}")]
    BadJson {
        /// The parser's message.
        why: String,
    },
    /// A required field is absent, null or empty.
    #[error("missing required field {field:?}")]
    MissingField {
        /// The field's name.
        field: String,
    },
    /// A field has the wrong type.
    #[error("field {field:?}: {why}")]
    BadField {
        /// The field's name.
        field: String,
        /// What is wrong with it.
        why: String,
    },
    /// An edited image named by the row is not under the root.
    #[error("edited image {path}: {why}")]
    MissingEditFile {
        /// The path as written in the row.
        path: String,
        /// The file system's message.
        why: String,
    },
    /// The row's `local_input_image` names a file that is not there, and no other way
    /// found the source photo.
    #[error("source photo {path}: {why}")]
    MissingSourceFile {
        /// The path as written in the row.
        path: String,
        /// The file system's message (and what else was tried).
        why: String,
    },
    /// The source URL is dead or unmapped: not in the source map, and no downloaded file
    /// for it in the source folders.
    #[error("source {url}: {why}")]
    UnresolvedSource {
        /// The source photo URL.
        url: String,
        /// What each way tried found.
        why: String,
    },
    /// An earlier accepted row of the same subset already used this output path.
    #[error("output image {path} was already used by line {first_line}")]
    DuplicateOutput {
        /// The shared path.
        path: String,
        /// The line of the row that was kept.
        first_line: u64,
    },
    /// A path named by the row (an edited image, `local_input_image`, a source found
    /// through `--source-dir` or `--source-images`) leaves the folders it must stay in,
    /// as written or through a symlink. It is not opened.
    #[error("{path} is outside {allowed}")]
    OutsideRoot {
        /// The path as written in the row (or the file name looked up).
        path: String,
        /// The folders it had to stay in.
        allowed: String,
    },
    /// A path named by the row is a FIFO, a device, a socket or a folder; it is not
    /// read (a FIFO would block the import forever, a device never ends).
    #[error("{why}")]
    NotAFile {
        /// The path as written in the row.
        path: String,
        /// What it is.
        why: String,
    },
    /// An image is larger than the import allows: more bytes than `--max-image-bytes`
    /// (checked before reading), or more declared pixels than `--max-decode-pixels`
    /// (checked from the header).
    #[error("image {path}: {why}")]
    ImageTooLarge {
        /// The image's path.
        path: String,
        /// Which limit, and by how much.
        why: String,
    },
    /// The edit type is not one of the 35 published strings.
    #[error("unknown edit type {edit_type:?}")]
    UnknownEditType {
        /// The string found.
        edit_type: String,
    },
    /// An image file is not a decodable JPEG, PNG, WebP, QOI or PPM.
    #[error("image {path} does not decode: {why}")]
    UndecodableImage {
        /// The image's path.
        path: String,
        /// The decoder's message.
        why: String,
    },
    /// A multi-turn row's turn numbers (from the image paths) are not 1..N.
    #[error("bad turns: {why}")]
    BadTurns {
        /// What is wrong.
        why: String,
    },
    /// A multi-turn row has a different number of prompts than turn images.
    #[error("{prompts} prompts for {turns} turn images")]
    PromptCountMismatch {
        /// Entries in `metadata_edit_turn_prompts`.
        prompts: usize,
        /// Turn images in `files`.
        turns: usize,
    },
    /// A preference row has no rejected image.
    #[error("no rejected images")]
    NoRejectedImages,
}

impl SkipReason {
    /// Every short name (the summary and report list them alphabetically).
    pub const NAMES: [&'static str; 15] = [
        "bad_json",
        "missing_field",
        "bad_field",
        "missing_edit_file",
        "missing_source_file",
        "unresolved_source",
        "duplicate_output",
        "outside_root",
        "not_a_file",
        "image_too_large",
        "unknown_edit_type",
        "undecodable_image",
        "bad_turns",
        "prompt_count_mismatch",
        "no_rejected_images",
    ];

    /// The stable short name of the reason.
    pub fn name(&self) -> &'static str {
        match self {
            SkipReason::BadJson { .. } => "bad_json",
            SkipReason::MissingField { .. } => "missing_field",
            SkipReason::BadField { .. } => "bad_field",
            SkipReason::MissingEditFile { .. } => "missing_edit_file",
            SkipReason::MissingSourceFile { .. } => "missing_source_file",
            SkipReason::UnresolvedSource { .. } => "unresolved_source",
            SkipReason::DuplicateOutput { .. } => "duplicate_output",
            SkipReason::OutsideRoot { .. } => "outside_root",
            SkipReason::NotAFile { .. } => "not_a_file",
            SkipReason::ImageTooLarge { .. } => "image_too_large",
            SkipReason::UnknownEditType { .. } => "unknown_edit_type",
            SkipReason::UndecodableImage { .. } => "undecodable_image",
            SkipReason::BadTurns { .. } => "bad_turns",
            SkipReason::PromptCountMismatch { .. } => "prompt_count_mismatch",
            SkipReason::NoRejectedImages => "no_rejected_images",
        }
    }

    /// A missing-field reason.
    pub(crate) fn missing(field: &str) -> SkipReason {
        SkipReason::MissingField {
            field: field.to_string(),
        }
    }

    /// A wrong-type reason.
    pub(crate) fn bad_field(field: &str, why: impl Into<String>) -> SkipReason {
        SkipReason::BadField {
            field: field.to_string(),
            why: why.into(),
        }
    }
}
