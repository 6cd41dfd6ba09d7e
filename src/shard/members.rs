//! Tar members of one sample: building them into tar bytes (one zstd frame's content)
//! and splitting tar bytes back into `(key, field, bytes)`. Member names follow
//! WebDataset: the key is the path up to the first dot of the base name, the field the
//! rest.

use bytes::Bytes;

/// The tar block size.
pub const BLOCK: usize = 512;

/// One tar member split into WebDataset key and field.
#[derive(Debug, Clone, PartialEq)]
pub struct Member {
    /// The sample key (`dir/000123` for `dir/000123.src.jpg`).
    pub key: String,
    /// The field (`src.jpg`).
    pub field: String,
    /// The member's bytes.
    pub data: Bytes,
}

/// Splits a member path into (key, field) at the first dot of its base name. A path
/// whose base name has no dot has an empty field.
pub fn split_name(path: &str) -> (&str, &str) {
    let base_start = path.rfind('/').map_or(0, |i| i + 1);
    match path[base_start..].find('.') {
        Some(dot) => (&path[..base_start + dot], &path[base_start + dot + 1..]),
        None => (path, ""),
    }
}

/// Appends one regular-file member (ustar header, data, zero padding) to `out`.
/// Headers are deterministic: mode 0644, uid/gid 0, mtime 0, no user names, so the same
/// sample always gives the same bytes.
pub fn append_member(out: &mut Vec<u8>, path: &str, data: &[u8]) -> std::io::Result<()> {
    let mut header = tar::Header::new_ustar();
    header.set_path(path)?;
    header.set_size(data.len() as u64);
    header.set_mode(0o644);
    header.set_uid(0);
    header.set_gid(0);
    header.set_mtime(0);
    header.set_entry_type(tar::EntryType::Regular);
    header.set_cksum();
    out.extend_from_slice(header.as_bytes());
    out.extend_from_slice(data);
    let pad = (BLOCK - data.len() % BLOCK) % BLOCK;
    out.extend(std::iter::repeat_n(0u8, pad));
    Ok(())
}

/// The bytes that end a tar archive: two zero blocks.
pub fn end_of_archive() -> [u8; 2 * BLOCK] {
    [0u8; 2 * BLOCK]
}

/// Why tar bytes could not be split into members.
#[derive(Debug, thiserror::Error)]
pub enum MemberError {
    /// The tar structure is broken at this byte offset of the uncompressed stream.
    #[error("bad tar data at offset {offset}: {why}")]
    Tar { offset: u64, why: String },
    /// A member's name is absolute or climbs out of the archive (`..`): a sample key must
    /// never name a place outside the dataset.
    #[error("member {path:?} at offset {offset}: {why}")]
    BadName {
        path: String,
        offset: u64,
        why: &'static str,
    },
    /// A member declares more bytes than the limit allows.
    #[error(
        "member {path:?} at offset {offset} declares {size} bytes, over the {limit}-byte limit"
    )]
    TooLarge {
        path: String,
        offset: u64,
        size: u64,
        limit: u64,
    },
}

/// The largest member accepted (an image or metadata file), to refuse absurd headers.
pub const MAX_MEMBER_BYTES: u64 = 256 << 20;

/// Reads regular-file members from a tar stream in order. Directories and other entry
/// types are skipped. Stops at the end-of-archive marker or at end of input.
pub fn read_members<R: std::io::Read>(
    reader: R,
    mut on_member: impl FnMut(String, Bytes) -> Result<(), MemberError>,
) -> Result<(), MemberError> {
    let mut archive = tar::Archive::new(reader);
    let entries = archive.entries().map_err(tar_error(0))?;
    for entry in entries {
        let mut entry = entry.map_err(tar_error(0))?;
        let Some((path, size, offset)) = checked(&entry)? else {
            continue;
        };
        // Grown as bytes arrive: a header alone cannot make the reader allocate.
        let mut data = Vec::with_capacity(size.min(1 << 20) as usize);
        std::io::Read::read_to_end(&mut entry, &mut data).map_err(|e| MemberError::Tar {
            offset,
            why: format!("member {path:?}: {e}"),
        })?;
        if data.len() as u64 != size {
            return Err(truncated(&path, offset, data.len() as u64, size));
        }
        on_member(path, Bytes::from(data))?;
    }
    Ok(())
}

/// The members of tar bytes already in memory, in order, as slices of `tar`: no member
/// is copied. Otherwise as [`read_members`].
pub fn slice_members(
    tar: &Bytes,
    mut on_member: impl FnMut(String, Bytes) -> Result<(), MemberError>,
) -> Result<(), MemberError> {
    let mut archive = tar::Archive::new(std::io::Cursor::new(&tar[..]));
    // Seeks over member data instead of reading it.
    let entries = archive.entries_with_seek().map_err(tar_error(0))?;
    for entry in entries {
        let entry = entry.map_err(tar_error(0))?;
        let Some((path, size, offset)) = checked(&entry)? else {
            continue;
        };
        let start = entry.raw_file_position();
        let have = (tar.len() as u64).saturating_sub(start).min(size);
        if have != size {
            return Err(truncated(&path, offset, have, size));
        }
        on_member(path, tar.slice(start as usize..(start + size) as usize))?;
    }
    Ok(())
}

/// A regular-file entry's path, size and header offset once its name and size pass;
/// `None` for entries that are not regular files.
fn checked<R: std::io::Read>(
    entry: &tar::Entry<'_, R>,
) -> Result<Option<(String, u64, u64)>, MemberError> {
    let offset = entry.raw_header_position();
    if !entry.header().entry_type().is_file() {
        return Ok(None);
    }
    let path = entry
        .path()
        .map_err(|e| MemberError::Tar {
            offset,
            why: format!("bad member name: {e}"),
        })?
        .to_string_lossy()
        .into_owned();
    if let Some(why) = unsafe_name(&path) {
        return Err(MemberError::BadName { path, offset, why });
    }
    let size = entry.size();
    if size > MAX_MEMBER_BYTES {
        return Err(MemberError::TooLarge {
            path,
            offset,
            size,
            limit: MAX_MEMBER_BYTES,
        });
    }
    Ok(Some((path, size, offset)))
}

fn tar_error(offset: u64) -> impl Fn(std::io::Error) -> MemberError {
    move |e| MemberError::Tar {
        offset,
        why: e.to_string(),
    }
}

fn truncated(path: &str, offset: u64, have: u64, size: u64) -> MemberError {
    MemberError::Tar {
        offset,
        why: format!("member {path:?} is truncated: {have} of {size} bytes"),
    }
}

/// Why a member path is refused: absolute, or with a `..` component.
fn unsafe_name(path: &str) -> Option<&'static str> {
    if path.starts_with('/') || path.starts_with('\\') {
        return Some("absolute member names are not allowed");
    }
    if path.split(['/', '\\']).any(|c| c == "..") {
        return Some("member names must not contain '..'");
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_split_at_the_first_dot_of_the_base_name() {
        assert_eq!(split_name("000123.src.jpg"), ("000123", "src.jpg"));
        assert_eq!(split_name("a.b/000123.json"), ("a.b/000123", "json"));
        assert_eq!(split_name("dir/key"), ("dir/key", ""));
    }

    #[test]
    fn members_round_trip_including_long_names() {
        let long_key = format!("{}/{}", "d".repeat(120), "k".repeat(60));
        let mut out = Vec::new();
        append_member(&mut out, "k1.json", b"{}").unwrap();
        append_member(&mut out, &format!("{long_key}.src.jpg"), &[7u8; 1000]).unwrap();
        assert_eq!(out.len() % BLOCK, 0);
        let mut got = Vec::new();
        read_members(&out[..], |p, d| {
            got.push((p, d.len()));
            Ok(())
        })
        .unwrap();
        assert_eq!(
            got,
            vec![("k1.json".into(), 2), (format!("{long_key}.src.jpg"), 1000)]
        );
    }

    #[test]
    fn truncated_member_is_an_error() {
        let mut out = Vec::new();
        append_member(&mut out, "k.src.jpg", &[1u8; 2000]).unwrap();
        out.truncate(1200);
        let r = read_members(&out[..], |_, _| Ok(()));
        assert!(r.is_err(), "{r:?}");
        let r = slice_members(&Bytes::from(out), |_, _| Ok(()));
        let err = r.unwrap_err().to_string();
        assert!(err.contains("truncated: 688 of 2000 bytes"), "{err}");
    }

    #[test]
    fn slices_are_the_members_read_from_a_stream() {
        let mut out = Vec::new();
        append_member(&mut out, "k.json", b"{\"a\": 1}").unwrap();
        append_member(
            &mut out,
            "k.src.jpg",
            &(0..3000).map(|i| i as u8).collect::<Vec<_>>(),
        )
        .unwrap();
        append_member(
            &mut out,
            &format!("{}/{}.edit.png", "d".repeat(120), "k".repeat(30)),
            &[9u8; 513],
        )
        .unwrap();
        out.extend_from_slice(&end_of_archive());
        let mut streamed = Vec::new();
        read_members(&out[..], |p, d| {
            streamed.push((p, d));
            Ok(())
        })
        .unwrap();
        let mut sliced = Vec::new();
        let tar = Bytes::from(out);
        slice_members(&tar, |p, d| {
            sliced.push((p, d));
            Ok(())
        })
        .unwrap();
        assert_eq!(streamed.len(), 3);
        assert_eq!(sliced, streamed);
        // Slices share the tar's buffer.
        let within = tar.as_ptr_range();
        assert!(within.contains(&sliced[1].1.as_ptr()));
    }

    #[test]
    fn sliced_members_refuse_unsafe_names_and_huge_sizes() {
        let mut out = Vec::new();
        let mut header = tar::Header::new_gnu();
        header.as_gnu_mut().unwrap().name[..9].copy_from_slice(b"../x.json");
        header.set_size(2);
        header.set_entry_type(tar::EntryType::Regular);
        header.set_cksum();
        out.extend_from_slice(header.as_bytes());
        out.extend_from_slice(b"{}");
        out.resize(2 * BLOCK, 0);
        let err = slice_members(&Bytes::from(out), |_, _| Ok(())).unwrap_err();
        assert!(matches!(err, MemberError::BadName { .. }), "{err}");
        let mut out = Vec::new();
        let mut header = tar::Header::new_ustar();
        header.set_path("k.src.jpg").unwrap();
        header.set_size(1 << 40);
        header.set_entry_type(tar::EntryType::Regular);
        header.set_cksum();
        out.extend_from_slice(header.as_bytes());
        let err = slice_members(&Bytes::from(out), |_, _| Ok(())).unwrap_err();
        assert!(matches!(err, MemberError::TooLarge { .. }), "{err}");
    }
}
