//! Parses one line of a Pico-Banana metadata file (`sft.jsonl`, `preference.jsonl`,
//! `multi-turn.jsonl`) into a [`Row`]: the source URL, the instructions, the edit type
//! and the relative paths of the edited images with their roles. Checks everything that
//! the line alone can tell (JSON, required fields, edit type, rejected images, turn
//! numbering); files are looked at later by the importer.
//!
//! Flow: metadata file -> ROW PARSING (here) -> source resolution, image checks -> writer.

use serde_json::{Map, Value};

use super::outcome::SkipReason;
use crate::dataset::edit_types::category_of;
use crate::dataset::sample::{Role, MAX_IMAGES_PER_ROLE};
use crate::dataset::{Category, Subset};

/// The `files[].id` of a multi-turn row's source photo.
pub const ORIGINAL_INPUT_ID: &str = "original_input_image";

/// One metadata row, checked and ready for its files to be read.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Row {
    /// The source photo's published URL.
    pub source_url: String,
    /// `local_input_image`, when the publisher's mapping script added it.
    pub local_input_image: Option<String>,
    /// The long instruction (multi-turn: the first turn's prompt).
    pub text: String,
    /// The short rewrite of the instruction (single-turn and preference only).
    pub summarized_text: Option<String>,
    /// The exact edit type (absent for multi-turn).
    pub edit_type: Option<String>,
    /// The category of the edit type.
    pub category: Option<Category>,
    /// Multi-turn: the prompts in turn order.
    pub turns: Vec<String>,
    /// The edited images as (role, path relative to the root), in storage order:
    /// `edit`; or `chosen`, `rejected0`...; or `turn1`...`turnN`.
    pub outputs: Vec<(Role, String)>,
    /// The path that must be unique within the subset: `output_image`, or a multi-turn
    /// row's final (highest) turn.
    pub output_path: String,
}

/// Parses one non-blank line of the metadata file of `subset`.
pub fn parse_row(subset: Subset, line: &[u8]) -> Result<Row, SkipReason> {
    let value: Value =
        serde_json::from_slice(line).map_err(|e| SkipReason::BadJson { why: e.to_string() })?;
    let Value::Object(obj) = value else {
        return Err(SkipReason::BadJson {
            why: format!("expected an object, found {}", kind(&value)),
        });
    };
    match subset {
        Subset::Sft => single_turn(&obj, false),
        Subset::Preference => single_turn(&obj, true),
        Subset::MultiTurn => multi_turn(&obj),
    }
}

fn kind(v: &Value) -> &'static str {
    match v {
        Value::Null => "null",
        Value::Bool(_) => "a boolean",
        Value::Number(_) => "a number",
        Value::String(_) => "a string",
        Value::Array(_) => "an array",
        Value::Object(_) => "an object",
    }
}

/// An optional string field: absent, null and blank all read as `None`.
fn opt_str(obj: &Map<String, Value>, field: &str) -> Result<Option<String>, SkipReason> {
    match obj.get(field) {
        None | Some(Value::Null) => Ok(None),
        Some(Value::String(s)) if s.trim().is_empty() => Ok(None),
        Some(Value::String(s)) => Ok(Some(s.clone())),
        Some(other) => Err(SkipReason::bad_field(
            field,
            format!("expected a string, found {}", kind(other)),
        )),
    }
}

fn req_str(obj: &Map<String, Value>, field: &str) -> Result<String, SkipReason> {
    opt_str(obj, field)?.ok_or_else(|| SkipReason::missing(field))
}

fn single_turn(obj: &Map<String, Value>, preference: bool) -> Result<Row, SkipReason> {
    let source_url = req_str(obj, "open_image_input_url")?;
    let text = req_str(obj, "text")?;
    let summarized_text = opt_str(obj, "summarized_text")?;
    let output = req_str(obj, "output_image")?;
    let edit_type = req_str(obj, "edit_type")?;
    let local_input_image = opt_str(obj, "local_input_image")?;
    let category = category_of(&edit_type).ok_or_else(|| SkipReason::UnknownEditType {
        edit_type: edit_type.clone(),
    })?;
    let outputs = if preference {
        let rejected = rejected_images(obj)?;
        let mut outputs = vec![(Role::Chosen, output.clone())];
        outputs.extend(
            rejected
                .into_iter()
                .enumerate()
                .map(|(i, p)| (Role::Rejected(i as u8), p)),
        );
        outputs
    } else {
        vec![(Role::Edit, output.clone())]
    };
    Ok(Row {
        source_url,
        local_input_image,
        text,
        summarized_text,
        edit_type: Some(edit_type),
        category: Some(category),
        turns: Vec::new(),
        outputs,
        output_path: output,
    })
}

/// The rejected images of a preference row: `rejected_images` as a list or a single
/// string, or else `rejected_image`, since no literal record of this subset was published.
fn rejected_images(obj: &Map<String, Value>) -> Result<Vec<String>, SkipReason> {
    let (field, value) = match obj.get("rejected_images") {
        Some(v) if !v.is_null() => ("rejected_images", v),
        _ => match obj.get("rejected_image") {
            Some(v) if !v.is_null() => ("rejected_image", v),
            _ => return Err(SkipReason::NoRejectedImages),
        },
    };
    let paths = match value {
        Value::String(s) if s.trim().is_empty() => Vec::new(),
        Value::String(s) => vec![s.clone()],
        Value::Array(items) => {
            let mut paths = Vec::with_capacity(items.len());
            for (i, item) in items.iter().enumerate() {
                match item {
                    Value::String(s) if !s.trim().is_empty() => paths.push(s.clone()),
                    other => {
                        return Err(SkipReason::bad_field(
                            field,
                            format!("entry {i} is {}, expected a path", kind(other)),
                        ))
                    }
                }
            }
            paths
        }
        other => {
            return Err(SkipReason::bad_field(
                field,
                format!("expected a list of paths or a path, found {}", kind(other)),
            ))
        }
    };
    if paths.is_empty() {
        return Err(SkipReason::NoRejectedImages);
    }
    if paths.len() > MAX_IMAGES_PER_ROLE {
        return Err(SkipReason::bad_field(
            field,
            format!(
                "{} rejected images, at most {MAX_IMAGES_PER_ROLE} are supported",
                paths.len()
            ),
        ));
    }
    Ok(paths)
}

/// The turn number in an image path: the digits after the last `turn` of the file name
/// (`images/multi-turn/12_0_turn5.png` -> 5).
pub fn turn_of(path: &str) -> Option<u32> {
    let name = path.rsplit('/').next().unwrap_or(path);
    name.rmatch_indices("turn").find_map(|(i, _)| {
        let digits: String = name[i + 4..]
            .chars()
            .take_while(|c| c.is_ascii_digit())
            .collect();
        if digits.is_empty() || digits.len() > 4 {
            return None;
        }
        digits.parse().ok()
    })
}

fn multi_turn(obj: &Map<String, Value>) -> Result<Row, SkipReason> {
    let files = match obj.get("files") {
        None | Some(Value::Null) => return Err(SkipReason::missing("files")),
        Some(Value::Array(a)) => a,
        Some(other) => {
            return Err(SkipReason::bad_field(
                "files",
                format!("expected a list, found {}", kind(other)),
            ))
        }
    };
    let mut source_url = None;
    let mut turns: Vec<(u32, String, String)> = Vec::new();
    for (i, entry) in files.iter().enumerate() {
        let Value::Object(entry) = entry else {
            return Err(SkipReason::bad_field(
                "files",
                format!("entry {i} is {}, expected an object", kind(entry)),
            ));
        };
        let id = opt_str(entry, "id")
            .map_err(|_| SkipReason::bad_field("files", format!("entry {i}: id is not a string")))?
            .ok_or_else(|| SkipReason::bad_field("files", format!("entry {i} has no id")))?;
        let url = opt_str(entry, "url")
            .map_err(|_| {
                SkipReason::bad_field("files", format!("entry {i} ({id}): url is not a string"))
            })?
            .ok_or_else(|| {
                SkipReason::bad_field("files", format!("entry {i} ({id}) has no url"))
            })?;
        if id == ORIGINAL_INPUT_ID {
            if source_url.is_some() {
                return Err(SkipReason::bad_field(
                    "files",
                    format!("{ORIGINAL_INPUT_ID} appears twice"),
                ));
            }
            source_url = Some(url);
            continue;
        }
        // The list order and the ids are not reliable; the path's turn number is.
        let Some(n) = turn_of(&url) else {
            return Err(SkipReason::BadTurns {
                why: format!("{id} image {url} has no turnN in its file name"),
            });
        };
        turns.push((n, id, url));
    }
    let source_url =
        source_url.ok_or_else(|| SkipReason::missing("files[original_input_image]"))?;
    if turns.is_empty() {
        return Err(SkipReason::BadTurns {
            why: "no turn images in files".into(),
        });
    }
    turns.sort_by_key(|(n, _, _)| *n);
    let numbers: Vec<u32> = turns.iter().map(|(n, _, _)| *n).collect();
    if numbers.iter().enumerate().any(|(i, n)| *n != i as u32 + 1) {
        let list = numbers
            .iter()
            .map(u32::to_string)
            .collect::<Vec<_>>()
            .join(", ");
        return Err(SkipReason::BadTurns {
            why: format!("turns {list} are not 1..{}", numbers.len()),
        });
    }
    if turns.len() > MAX_IMAGES_PER_ROLE {
        return Err(SkipReason::BadTurns {
            why: format!(
                "{} turns, at most {MAX_IMAGES_PER_ROLE} are supported",
                turns.len()
            ),
        });
    }
    let field = "metadata_edit_turn_prompts";
    let prompts = match obj.get(field) {
        None | Some(Value::Null) => return Err(SkipReason::missing(field)),
        Some(Value::Array(a)) if a.is_empty() => return Err(SkipReason::missing(field)),
        Some(Value::Array(a)) => a,
        Some(other) => {
            return Err(SkipReason::bad_field(
                field,
                format!("expected a list, found {}", kind(other)),
            ))
        }
    };
    let prompts = prompts
        .iter()
        .enumerate()
        .map(|(i, p)| match p {
            Value::String(s) if !s.trim().is_empty() => Ok(s.clone()),
            other => Err(SkipReason::bad_field(
                field,
                format!("prompt {i} is {}, expected text", kind(other)),
            )),
        })
        .collect::<Result<Vec<_>, _>>()?;
    if prompts.len() != turns.len() {
        return Err(SkipReason::PromptCountMismatch {
            prompts: prompts.len(),
            turns: turns.len(),
        });
    }
    let output_path = turns.last().expect("checked non-empty").2.clone();
    Ok(Row {
        source_url,
        local_input_image: opt_str(obj, "local_input_image")?,
        text: prompts[0].clone(),
        summarized_text: None,
        edit_type: None,
        category: None,
        turns: prompts,
        outputs: turns
            .into_iter()
            .map(|(n, _, url)| (Role::Turn(n as u8), url))
            .collect(),
        output_path,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    const ZOOM: &str = "Zoom in";

    fn sft(extra: &str) -> String {
        format!(
            r#"{{"open_image_input_url":"https://farm1.example/1_o.jpg","text":"zoom in a lot","summarized_text":"zoom","output_image":"images/positive-edit/1.png","edit_type":"{ZOOM}"{extra}}}"#
        )
    }

    #[test]
    fn single_turn_row_keeps_both_instructions() {
        let row = parse_row(Subset::Sft, sft("").as_bytes()).unwrap();
        assert_eq!(row.text, "zoom in a lot");
        assert_eq!(row.summarized_text.as_deref(), Some("zoom"));
        assert_eq!(row.category, Some(Category::ScalePerspective));
        assert_eq!(
            row.outputs,
            vec![(Role::Edit, "images/positive-edit/1.png".to_string())]
        );
        assert_eq!(row.local_input_image, None);
    }

    #[test]
    fn preference_accepts_list_string_and_singular_field() {
        let list = sft(r#","rejected_images":["a.png","b.png"]"#);
        let row = parse_row(Subset::Preference, list.as_bytes()).unwrap();
        assert_eq!(row.outputs.len(), 3);
        assert_eq!(row.outputs[2], (Role::Rejected(1), "b.png".to_string()));
        for one in [
            r#","rejected_images":"a.png""#,
            r#","rejected_image":"a.png""#,
        ] {
            let row = parse_row(Subset::Preference, sft(one).as_bytes()).unwrap();
            assert_eq!(row.outputs[1], (Role::Rejected(0), "a.png".to_string()));
        }
        for none in [
            "",
            r#","rejected_images":[]"#,
            r#","rejected_images":"""#,
            r#","rejected_images":null"#,
        ] {
            assert_eq!(
                parse_row(Subset::Preference, sft(none).as_bytes()),
                Err(SkipReason::NoRejectedImages)
            );
        }
        let bad = parse_row(
            Subset::Preference,
            sft(r#","rejected_images":[3]"#).as_bytes(),
        );
        assert_eq!(bad.unwrap_err().name(), "bad_field");
    }

    #[test]
    fn bad_single_turn_rows_are_named() {
        assert_eq!(
            parse_row(Subset::Sft, b"{not json").unwrap_err().name(),
            "bad_json"
        );
        assert_eq!(
            parse_row(Subset::Sft, b"[1]").unwrap_err().name(),
            "bad_json"
        );
        let no_text = sft("").replace(r#""text":"zoom in a lot","#, "");
        assert_eq!(
            parse_row(Subset::Sft, no_text.as_bytes()),
            Err(SkipReason::missing("text"))
        );
        let typed = sft("").replace(r#""text":"zoom in a lot""#, r#""text":5"#);
        assert_eq!(
            parse_row(Subset::Sft, typed.as_bytes()).unwrap_err().name(),
            "bad_field"
        );
        let unknown = sft("").replace(ZOOM, "zoom in");
        assert_eq!(
            parse_row(Subset::Sft, unknown.as_bytes()),
            Err(SkipReason::UnknownEditType {
                edit_type: "zoom in".into()
            })
        );
    }

    #[test]
    fn turn_numbers_come_from_the_file_name() {
        assert_eq!(turn_of("images/multi-turn/12_0_turn5.png"), Some(5));
        assert_eq!(turn_of("images/turn9/12_1_turn2.png"), Some(2));
        assert_eq!(turn_of("images/multi-turn/a_turn12_retry.png"), Some(12));
        assert_eq!(turn_of("images/multi-turn/final.png"), None);
        assert_eq!(turn_of("images/turn3/final.png"), None);
    }

    fn multi(files: &str, prompts: &str) -> Result<Row, SkipReason> {
        let line = format!(r#"{{"files":[{files}],"metadata_edit_turn_prompts":[{prompts}]}}"#);
        parse_row(Subset::MultiTurn, line.as_bytes())
    }

    #[test]
    fn multi_turn_orders_turns_by_path_not_by_list_or_id() {
        let files = r#"{"id":"final_image","url":"m/7_0_turn3.png"},{"id":"edit_turn2","url":"m/7_0_turn1.png"},{"id":"original_input_image","url":"https://x/7_o.jpg"},{"id":"edit_turn1","url":"m/7_0_turn2.png"}"#;
        let row = multi(files, r#""a","b","c""#).unwrap();
        assert_eq!(row.source_url, "https://x/7_o.jpg");
        let paths: Vec<_> = row.outputs.iter().map(|(r, p)| (*r, p.as_str())).collect();
        assert_eq!(
            paths,
            vec![
                (Role::Turn(1), "m/7_0_turn1.png"),
                (Role::Turn(2), "m/7_0_turn2.png"),
                (Role::Turn(3), "m/7_0_turn3.png")
            ]
        );
        assert_eq!(row.turns, vec!["a", "b", "c"]);
        assert_eq!(row.text, "a");
        assert_eq!(row.output_path, "m/7_0_turn3.png");
    }

    #[test]
    fn bad_multi_turn_rows_are_named() {
        let src = r#"{"id":"original_input_image","url":"https://x/7_o.jpg"}"#;
        let gap = format!(
            r#"{src},{{"id":"edit_turn1","url":"m/1_turn1.png"}},{{"id":"final_image","url":"m/1_turn3.png"}}"#
        );
        assert_eq!(multi(&gap, r#""a","b""#).unwrap_err().name(), "bad_turns");
        let two = format!(
            r#"{src},{{"id":"edit_turn1","url":"m/1_turn1.png"}},{{"id":"final_image","url":"m/1_turn2.png"}}"#
        );
        assert_eq!(
            multi(&two, r#""a""#),
            Err(SkipReason::PromptCountMismatch {
                prompts: 1,
                turns: 2
            })
        );
        let dup = format!(
            r#"{src},{{"id":"edit_turn1","url":"m/1_turn1.png"}},{{"id":"final_image","url":"m/2_turn1.png"}}"#
        );
        assert_eq!(multi(&dup, r#""a","b""#).unwrap_err().name(), "bad_turns");
        let no_src = r#"{"id":"final_image","url":"m/1_turn1.png"}"#;
        assert_eq!(
            multi(no_src, r#""a""#),
            Err(SkipReason::missing("files[original_input_image]"))
        );
        let no_number = format!(r#"{src},{{"id":"final_image","url":"m/final.png"}}"#);
        assert_eq!(multi(&no_number, r#""a""#).unwrap_err().name(), "bad_turns");
    }
}
