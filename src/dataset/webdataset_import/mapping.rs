//! Maps one input sample onto the editfeed schema: kept member for member when it fits
//! already, else mapped from common WebDataset names (source, edit, instruction), with
//! every image probed and, when asked, every image but the source transcoded.
//!
//! Flow: foreign shard sample -> MAPPING (here) -> dataset writer.

use bytes::Bytes;

use super::report::WdsSkipReason;
use crate::codec::{ImageFormat, TranscodeTarget};
use crate::dataset::edit_types::category_of;
use crate::dataset::sample::{check_key, Role, Sample, SampleImage, SampleMeta};
use crate::dataset::transcode::{probe, transcode, DEFAULT_PIXEL_LIMIT};
use crate::dataset::{Category, Subset};
use crate::shard::RawSample;

/// Text member names, in order of preference.
const TEXT_FIELDS: [&str; 5] = ["instruction", "prompt", "txt", "text", "caption"];

/// One input sample made ready for the writer.
#[derive(Debug, Clone, PartialEq)]
pub enum Prepared {
    /// Already an editfeed sample: its members are written unchanged.
    Kept {
        /// The category for the manifest.
        category: Option<Category>,
        /// The members as read.
        members: Vec<(String, Bytes)>,
    },
    /// Mapped from WebDataset conventions; lists the member fields left out.
    Mapped {
        /// The new sample (image bytes unchanged).
        sample: Sample,
        /// Fields that had no place in the schema.
        dropped: Vec<String>,
    },
}

fn probe_images(
    images: &[SampleImage],
    field: impl Fn(&SampleImage) -> String,
) -> Result<(), WdsSkipReason> {
    for img in images {
        probe(&img.bytes).map_err(|e| WdsSkipReason::UndecodableImage {
            field: field(img),
            why: e.to_string(),
        })?;
    }
    Ok(())
}

/// Decides what to write for one input sample of `subset`.
pub fn prepare(subset: Subset, raw: RawSample) -> Result<Prepared, WdsSkipReason> {
    check_key(&raw.key).map_err(|e| WdsSkipReason::BadKey { why: e.to_string() })?;
    let as_is = Sample::from_members(&raw.key, raw.members.clone());
    let as_is_err = match as_is {
        Ok(sample) => {
            if sample.subset() != subset {
                return Err(WdsSkipReason::SubsetMismatch {
                    found: sample.subset(),
                    wanted: subset,
                });
            }
            probe_images(&sample.images, |i| {
                format!("{}.{}", i.role.field(), i.format.ext())
            })?;
            let category = sample
                .meta
                .category
                .or_else(|| sample.meta.edit_type.as_deref().and_then(category_of));
            return Ok(Prepared::Kept {
                category,
                members: raw.members,
            });
        }
        Err(e) => e,
    };
    map_members(subset, raw).map_err(|e| match e {
        WdsSkipReason::Unmappable { fields, why } => WdsSkipReason::Unmappable {
            fields,
            why: format!("{why} (as an editfeed sample: {as_is_err})"),
        },
        other => other,
    })
}

/// Re-encodes the images of a prepared sample other than its source to `target`; the
/// sample is then written from its schema (`Mapped`), since its members change.
pub(super) fn transcode_edits(
    key: &str,
    prepared: Prepared,
    target: TranscodeTarget,
) -> Result<Prepared, WdsSkipReason> {
    let (mut sample, dropped) = match prepared {
        Prepared::Kept { category, members } => {
            let mut sample =
                Sample::from_members(key, members).map_err(|e| WdsSkipReason::Unmappable {
                    fields: String::new(),
                    why: e.to_string(),
                })?;
            sample.meta.category = sample.meta.category.or(category);
            (sample, Vec::new())
        }
        Prepared::Mapped { sample, dropped } => (sample, dropped),
    };
    for img in sample.images.iter_mut().filter(|i| i.role != Role::Source) {
        let (format, bytes) = transcode(&img.bytes, Some(target), None, DEFAULT_PIXEL_LIMIT)
            .map_err(|e| WdsSkipReason::UndecodableImage {
                field: format!("{}.{}", img.role.field(), img.format.ext()),
                why: e.to_string(),
            })?;
        img.format = format;
        img.bytes = bytes;
    }
    Ok(Prepared::Mapped { sample, dropped })
}

/// The role a foreign image field name stands for.
fn image_role(name: &str) -> Option<Role> {
    match name.to_ascii_lowercase().as_str() {
        "" | "input" | "source" | "src" => Some(Role::Source),
        "edit" | "output" | "target" => Some(Role::Edit),
        other => Role::from_field(other),
    }
}

/// The text-field rank of a member (lower is preferred), if it is text.
fn text_rank(field: &str) -> Option<usize> {
    let lower = field.to_ascii_lowercase();
    let name = lower.strip_suffix(".txt").unwrap_or(&lower);
    TEXT_FIELDS.iter().position(|t| *t == name)
}

/// The instruction from a foreign JSON object, and the edit type if it has one.
fn foreign_json_text(bytes: &[u8]) -> (Option<String>, Option<String>) {
    let Ok(serde_json::Value::Object(obj)) = serde_json::from_slice::<serde_json::Value>(bytes)
    else {
        return (None, None);
    };
    let text = [
        "instruction",
        "edit_instruction",
        "prompt",
        "text",
        "caption",
    ]
    .iter()
    .find_map(|k| {
        obj.get(*k)
            .and_then(|v| v.as_str())
            .filter(|s| !s.trim().is_empty())
    })
    .map(str::to_string);
    let edit_type = obj
        .get("edit_type")
        .and_then(|v| v.as_str())
        .map(str::to_string);
    (text, edit_type)
}

fn map_members(subset: Subset, raw: RawSample) -> Result<Prepared, WdsSkipReason> {
    let fields = raw
        .members
        .iter()
        .map(|(f, _)| f.as_str())
        .collect::<Vec<_>>()
        .join(", ");
    let unmappable = |why: String| WdsSkipReason::Unmappable {
        fields: fields.clone(),
        why,
    };
    let mut images: Vec<(SampleImage, String)> = Vec::new();
    let mut text: Option<(usize, String)> = None;
    let mut editfeed_meta: Option<SampleMeta> = None;
    let mut json_text = (None, None);
    let mut dropped = Vec::new();
    for (field, bytes) in raw.members {
        if field == "json" {
            match serde_json::from_slice::<SampleMeta>(&bytes) {
                Ok(meta) => editfeed_meta = Some(meta),
                Err(_) => {
                    json_text = foreign_json_text(&bytes);
                    dropped.push(field);
                }
            }
            continue;
        }
        // A bare extension (`jpg`) has an empty name; `input.jpg` names the role.
        let (name, ext) = field.rsplit_once('.').unwrap_or(("", field.as_str()));
        if let (Some(declared), Some(role)) = (ImageFormat::from_ext(ext), image_role(name)) {
            if let Some((_, other)) = images.iter().find(|(i, _)| i.role == role) {
                return Err(unmappable(format!(
                    "{other} and {field} both map to {}",
                    role.field()
                )));
            }
            // The member name follows the content: a PNG named `.jpg` becomes `.png`.
            let format = ImageFormat::sniff(&bytes).unwrap_or(declared);
            images.push((
                SampleImage {
                    role,
                    format,
                    bytes,
                },
                field,
            ));
            continue;
        }
        if let Some(rank) = text_rank(&field) {
            if let Ok(s) = std::str::from_utf8(&bytes) {
                let s = s.trim();
                if !s.is_empty() && text.as_ref().is_none_or(|(r, _)| rank < *r) {
                    text = Some((rank, s.to_string()));
                }
                continue;
            }
        }
        dropped.push(field);
    }
    for (img, field) in &images {
        probe(&img.bytes).map_err(|e| WdsSkipReason::UndecodableImage {
            field: field.clone(),
            why: e.to_string(),
        })?;
    }
    let mut meta = match editfeed_meta {
        Some(meta) => {
            if meta.subset.is_some_and(|s| s != subset) {
                return Err(WdsSkipReason::SubsetMismatch {
                    found: meta.subset.expect("checked"),
                    wanted: subset,
                });
            }
            meta
        }
        None => {
            let (text, edit_type) = json_text;
            let category = edit_type.as_deref().and_then(category_of);
            SampleMeta {
                text: text.unwrap_or_default(),
                edit_type: category.and(edit_type),
                category,
                ..Default::default()
            }
        }
    };
    meta.subset = Some(subset);
    if let Some((_, t)) = text {
        meta.text = t;
    }
    let mut images: Vec<SampleImage> = images.into_iter().map(|(i, _)| i).collect();
    images.sort_by_key(|i| i.role);
    let sample = Sample {
        key: raw.key,
        meta,
        images,
    };
    sample.check().map_err(|e| unmappable(e.to_string()))?;
    Ok(Prepared::Mapped { sample, dropped })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::codec::{encode, TranscodeTarget};
    use image::{DynamicImage, RgbImage};

    fn img(target: TranscodeTarget) -> Bytes {
        let i = DynamicImage::ImageRgb8(RgbImage::from_fn(8, 6, |x, y| {
            image::Rgb([x as u8, y as u8, 1])
        }));
        Bytes::from(encode(&i, target).unwrap())
    }

    fn raw(key: &str, members: &[(&str, Bytes)]) -> RawSample {
        RawSample {
            key: key.into(),
            members: members
                .iter()
                .map(|(f, b)| (f.to_string(), b.clone()))
                .collect(),
        }
    }

    fn jpg() -> Bytes {
        img(TranscodeTarget::Jpeg { quality: 80 })
    }

    fn png() -> Bytes {
        img(TranscodeTarget::Png)
    }

    #[test]
    fn editfeed_samples_are_kept_member_for_member() {
        let json = Bytes::from_static(br#"{"subset":"sft","edit_type":"Zoom in","text":"zoom"}"#);
        let r = raw(
            "k1",
            &[
                ("json", json.clone()),
                ("src.jpg", jpg()),
                ("edit.png", png()),
            ],
        );
        match prepare(Subset::Sft, r.clone()).unwrap() {
            Prepared::Kept { category, members } => {
                assert_eq!(members, r.members);
                assert_eq!(category, Some(Category::ScalePerspective));
            }
            other => panic!("{other:?}"),
        }
        let e = prepare(Subset::Preference, r).unwrap_err();
        assert_eq!(e.name(), "subset_mismatch");
    }

    #[test]
    fn foreign_names_are_mapped_with_bytes_unchanged() {
        let (src, edit) = (jpg(), png());
        let r = raw(
            "dir/k2",
            &[
                ("input.jpg", src.clone()),
                ("output.jpg", edit.clone()),
                ("caption", Bytes::from_static(b"a caption")),
                ("instruction.txt", Bytes::from_static(b"make it blue\n")),
                ("cls", Bytes::from_static(b"3")),
            ],
        );
        let Prepared::Mapped { sample, dropped } = prepare(Subset::Sft, r).unwrap() else {
            panic!("not mapped")
        };
        assert_eq!(sample.key, "dir/k2");
        assert_eq!(sample.meta.text, "make it blue");
        assert_eq!(sample.image(Role::Source).unwrap().bytes, src);
        let e = sample.image(Role::Edit).unwrap();
        assert_eq!(
            (e.format, &e.bytes),
            (ImageFormat::Png, &edit),
            "format follows the content"
        );
        assert_eq!(dropped, vec!["cls".to_string()]);
        let bare = raw(
            "k3",
            &[
                ("jpg", src.clone()),
                ("target.png", edit.clone()),
                ("json", Bytes::from_static(br#"{"prompt":"p"}"#)),
            ],
        );
        let Prepared::Mapped { sample, .. } = prepare(Subset::Sft, bare).unwrap() else {
            panic!("not mapped")
        };
        assert_eq!(sample.meta.text, "p");
    }

    #[test]
    fn unmappable_samples_say_why() {
        let e = prepare(Subset::Sft, raw("k", &[("txt", Bytes::from_static(b"x"))])).unwrap_err();
        assert_eq!(e.name(), "unmappable");
        assert!(e.to_string().contains("source"), "{e}");
        let two = raw(
            "k",
            &[("jpg", jpg()), ("input.png", png()), ("edit.png", png())],
        );
        assert!(prepare(Subset::Sft, two)
            .unwrap_err()
            .to_string()
            .contains("both map to src"));
        let bad = raw(
            "k",
            &[("jpg", jpg()), ("edit.png", Bytes::from_static(b"nope"))],
        );
        assert_eq!(
            prepare(Subset::Sft, bad).unwrap_err().name(),
            "undecodable_image"
        );
    }
}
