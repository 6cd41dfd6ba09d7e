//! Finds the local file of a row's source photo. Pico-Banana does not redistribute its
//! Open Images sources; each row names one by URL, and the user downloads them. Three
//! ways are tried, in this order, and the first that names an existing file wins:
//!
//! 1. `local_input_image` from the row (written by the publisher's own mapping script):
//!    a path relative to the import root, or absolute.
//! 2. The Open Images map: a CSV with a header row holding at least the columns
//!    `OriginalURL` and `ImageID` (other columns ignored, quoted fields allowed, such as
//!    Open Images' `image_ids_and_rotation.csv`) and a folder holding `<ImageID>.jpg`.
//!    URLs match ignoring their `http://` or `https://` scheme. Only the URLs the
//!    metadata needs are kept in memory, since the full CSV has about 9M rows.
//! 3. A source folder holding a file named like the URL's last path segment (query and
//!    fragment removed), e.g. `https://farm3.staticflickr.com/2/123_abc_o.jpg` ->
//!    `<dir>/123_abc_o.jpg`, as a plain `wget -i urls.txt` leaves them.
//!
//! Flow: row -> SOURCE RESOLUTION (here) -> image checks -> writer.

use std::collections::{HashMap, HashSet};
use std::path::{Path, PathBuf};

use super::outcome::{SkipReason, SourceWay};
use super::ImportError;
use crate::dataset::input_files::{Confinement, InputFileError};
use crate::dataset::input_root::{InputDir, InputFile};

/// Where the user keeps source photos; any combination may be given.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct SourceOptions {
    /// A folder of downloaded photos named like the last segment of their URLs.
    pub source_dir: Option<PathBuf>,
    /// A CSV mapping `OriginalURL` to Open Images `ImageID` (needs `source_images`).
    pub source_map: Option<PathBuf>,
    /// The folder holding `<ImageID>.jpg` files for `source_map`.
    pub source_images: Option<PathBuf>,
}

/// The URL with its scheme removed, so `http://` and `https://` spellings match.
pub fn url_key(url: &str) -> &str {
    let url = url.trim();
    url.strip_prefix("https://")
        .or_else(|| url.strip_prefix("http://"))
        .unwrap_or(url)
}

/// The last path segment of a URL without query or fragment, if it is a usable file name.
pub fn url_file_name(url: &str) -> Option<&str> {
    let url = url.trim();
    let end = url.find(['?', '#']).unwrap_or(url.len());
    let name = url[..end].rsplit('/').next()?;
    if name.is_empty() || name == "." || name == ".." || name.contains('\\') || name.contains(':') {
        return None;
    }
    Some(name)
}

/// The Open Images URL -> ImageID map, restricted to the URLs wanted.
#[derive(Debug, Clone, Default)]
pub struct SourceMap {
    ids: HashMap<String, String>,
}

impl SourceMap {
    /// Reads the CSV at `path`, keeping the rows whose URL (scheme removed) is in
    /// `wanted`, or every row when `wanted` is `None`. The first row of a URL wins.
    pub fn load(path: &Path, wanted: Option<&HashSet<String>>) -> Result<SourceMap, ImportError> {
        let failed = |why: String| ImportError::SourceMap {
            path: path.to_path_buf(),
            why,
        };
        // The CSV is a local file or an object (`s3://bucket/prefix/map.csv`).
        let (parent, name) = match (path.parent(), path.file_name().and_then(|n| n.to_str())) {
            (Some(parent), Some(name)) => (parent, name),
            _ => return Err(failed("no file name".into())),
        };
        let dir = InputDir::open(parent).map_err(|e| failed(e.to_string()))?;
        let file = dir
            .open_text(name)
            .map_err(|e| failed(e.full()))?
            .ok_or_else(|| failed("no such file".into()))?;
        Self::from_reader(std::io::BufReader::with_capacity(1 << 20, file), wanted).map_err(failed)
    }

    /// Reads the CSV from a reader; see [`SourceMap::load`].
    pub fn from_reader(
        reader: impl std::io::Read,
        wanted: Option<&HashSet<String>>,
    ) -> Result<SourceMap, String> {
        let mut csv = csv::ReaderBuilder::new().flexible(true).from_reader(reader);
        let headers = csv
            .byte_headers()
            .map_err(|e| format!("bad header row: {e}"))?
            .clone();
        let column = |name: &str| {
            headers
                .iter()
                .position(|h| h.trim_ascii().eq_ignore_ascii_case(name.as_bytes()))
                .ok_or_else(|| format!("the header row has no {name} column"))
        };
        let (url_col, id_col) = (column("OriginalURL")?, column("ImageID")?);
        let mut ids = HashMap::new();
        let mut record = csv::ByteRecord::new();
        loop {
            match csv.read_byte_record(&mut record) {
                Ok(false) => break,
                Ok(true) => {}
                Err(e) => return Err(e.to_string()),
            }
            let (Some(url), Some(id)) = (record.get(url_col), record.get(id_col)) else {
                continue;
            };
            let (Ok(url), Ok(id)) = (std::str::from_utf8(url), std::str::from_utf8(id)) else {
                continue;
            };
            let (key, id) = (url_key(url), id.trim());
            // An id becomes a file name: refuse anything that could leave the folder.
            if key.is_empty() || id.is_empty() || id.starts_with('.') || id.contains(['/', '\\']) {
                continue;
            }
            if wanted.is_some_and(|w| !w.contains(key)) {
                continue;
            }
            ids.entry(key.to_string()).or_insert_with(|| id.to_string());
        }
        Ok(SourceMap { ids })
    }

    /// The ImageID of a URL.
    pub fn image_id(&self, url: &str) -> Option<&str> {
        self.ids.get(url_key(url)).map(String::as_str)
    }

    /// URLs in the map.
    pub fn len(&self) -> usize {
        self.ids.len()
    }

    /// Whether the map is empty.
    pub fn is_empty(&self) -> bool {
        self.ids.is_empty()
    }
}

/// Resolves source photos for rows; see the module docs for the order. Every local path
/// it returns is real (symlinks resolved) and inside the folder it came from: the root
/// (or a source folder the user named) for `local_input_image`, `--source-images` for
/// the map, `--source-dir` for the folder. In an object-store folder a name is taken
/// without a request (see [`crate::dataset::input_root`]): the first way that names a
/// file wins, and a missing object is reported when it is read.
#[derive(Debug, Clone)]
pub struct SourceResolver {
    root: InputDir,
    local: Option<Confinement>,
    source_dir: Option<(InputDir, Option<Confinement>)>,
    map: Option<(SourceMap, InputDir, Option<Confinement>)>,
}

/// The reason for a refused path, or its message when it was merely not found.
fn refused(e: InputFileError) -> Result<String, SkipReason> {
    match e {
        InputFileError::Outside { path, allowed } => Err(SkipReason::OutsideRoot { path, allowed }),
        other => Ok(other.full()),
    }
}

/// A confinement to one folder, for a local one.
fn confine(dir: &InputDir) -> std::io::Result<Option<Confinement>> {
    dir.local().map(|d| Confinement::new([d])).transpose()
}

/// A file named `written` in `dir`: confined and found when local, normalised when not.
fn in_dir(
    dir: &InputDir,
    confined: Option<&Confinement>,
    written: &str,
) -> Result<InputFile, InputFileError> {
    match (dir.local(), confined) {
        (Some(base), Some(c)) => c.resolve(base, written).map(InputFile::Local),
        _ => dir.object(written),
    }
}

impl SourceResolver {
    /// A resolver over the root, an optional source folder and an optional map with its
    /// image folder.
    pub fn new(
        root: &InputDir,
        source_dir: Option<InputDir>,
        map: Option<(SourceMap, InputDir)>,
    ) -> std::io::Result<SourceResolver> {
        // `local_input_image` may point into any local folder the user named.
        let local_roots: Vec<&Path> = [Some(root), source_dir.as_ref(), map.as_ref().map(|m| &m.1)]
            .into_iter()
            .flatten()
            .filter_map(InputDir::local)
            .collect();
        let local = match root.local() {
            Some(_) => Some(Confinement::new(local_roots)?),
            None => None,
        };
        let source_dir = match source_dir {
            Some(dir) => {
                let c = confine(&dir)?;
                Some((dir, c))
            }
            None => None,
        };
        let map = match map {
            Some((map, images)) => {
                let c = confine(&images)?;
                Some((map, images, c))
            }
            None => None,
        };
        Ok(SourceResolver {
            root: root.clone(),
            local,
            source_dir,
            map,
        })
    }

    /// Finds the source photo of a row with source URL `url` and optional
    /// `local_input_image`. A path that leaves its folder is refused as
    /// [`SkipReason::OutsideRoot`]; when no way finds a file, the reason lists what was
    /// tried.
    pub fn resolve(
        &self,
        url: &str,
        local: Option<&str>,
    ) -> Result<(InputFile, SourceWay), SkipReason> {
        let mut tried = Vec::new();
        if let Some(local) = local {
            match in_dir(&self.root, self.local.as_ref(), local) {
                Ok(file) => return Ok((file, SourceWay::LocalInputImage)),
                Err(e) => tried.push(format!("local_input_image {}", refused(e)?)),
            }
        }
        if let Some((map, images, confined)) = &self.map {
            match map.image_id(url) {
                Some(id) => {
                    let name = format!("{id}.jpg");
                    match in_dir(images, confined.as_ref(), &name) {
                        Ok(file) => return Ok((file, SourceWay::SourceMap)),
                        Err(e) => tried.push(format!(
                            "image id {id}: {} missing ({})",
                            images.path_of(&name).display(),
                            refused(e)?
                        )),
                    }
                }
                None => tried.push("url not in the source map".into()),
            }
        }
        if let Some((dir, confined)) = &self.source_dir {
            match url_file_name(url) {
                Some(name) => match in_dir(dir, confined.as_ref(), name) {
                    Ok(file) => return Ok((file, SourceWay::SourceDir)),
                    Err(e) => {
                        refused(e)?;
                        tried.push(format!("{} missing", dir.path_of(name).display()));
                    }
                },
                None => tried.push("url has no file name for the source folder".into()),
            }
        }
        if tried.is_empty() || (local.is_some() && tried.len() == 1) {
            tried.push("no --source-map or --source-dir given".into());
        }
        let why = tried.join("; ");
        match local {
            Some(local) => Err(SkipReason::MissingSourceFile {
                path: local.to_string(),
                why,
            }),
            None => Err(SkipReason::UnresolvedSource {
                url: url.to_string(),
                why,
            }),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn urls_give_keys_and_file_names() {
        assert_eq!(url_key("https://farm1.x/a_o.jpg"), "farm1.x/a_o.jpg");
        assert_eq!(url_key("http://farm1.x/a_o.jpg"), "farm1.x/a_o.jpg");
        assert_eq!(
            url_file_name("https://farm1.x/2/a_o.jpg?x=1#y"),
            Some("a_o.jpg")
        );
        assert_eq!(url_file_name("https://farm1.x/2/"), None);
        assert_eq!(url_file_name("https://farm1.x/.."), None);
    }

    #[test]
    fn map_reads_quoted_csv_with_extra_columns_and_keeps_only_wanted_urls() {
        let csv = "ImageID,Subset,OriginalURL,Title\n\
                   000a1,train,https://farm1.x/a_o.jpg,\"a title, with a comma\"\n\
                   000b2,train,\"http://farm1.x/b_o.jpg\",plain\n\
                   000c3,train,https://farm1.x/c_o.jpg,\"quote \"\" inside\"\n\
                   ../evil,train,https://farm1.x/d_o.jpg,x\n";
        let all = SourceMap::from_reader(csv.as_bytes(), None).unwrap();
        assert_eq!(all.image_id("http://farm1.x/a_o.jpg"), Some("000a1"));
        assert_eq!(all.image_id("https://farm1.x/b_o.jpg"), Some("000b2"));
        assert_eq!(all.image_id("https://farm1.x/c_o.jpg"), Some("000c3"));
        assert_eq!(all.image_id("https://farm1.x/d_o.jpg"), None);
        let wanted: HashSet<String> = ["farm1.x/b_o.jpg".to_string()].into();
        let some = SourceMap::from_reader(csv.as_bytes(), Some(&wanted)).unwrap();
        assert_eq!(some.len(), 1);
        let e = SourceMap::from_reader("ImageID,URL\n1,x\n".as_bytes(), None).unwrap_err();
        assert!(e.contains("OriginalURL"), "{e}");
    }

    #[test]
    fn ways_are_tried_in_order_and_failures_say_what_was_tried() {
        let dir = tempfile::tempdir().unwrap();
        let root = dir.path();
        std::fs::create_dir_all(root.join("src")).unwrap();
        std::fs::create_dir_all(root.join("oi")).unwrap();
        std::fs::write(root.join("local.jpg"), b"x").unwrap();
        std::fs::write(root.join("oi/ID1.jpg"), b"x").unwrap();
        std::fs::write(root.join("src/a_o.jpg"), b"x").unwrap();
        let map = SourceMap::from_reader(
            "OriginalURL,ImageID\nhttps://f/a_o.jpg,ID1\n".as_bytes(),
            None,
        )
        .unwrap();
        let dir = |p: PathBuf| InputDir::Local(p);
        let top = dir(root.to_path_buf());
        let r = SourceResolver::new(
            &top,
            Some(dir(root.join("src"))),
            Some((map, dir(root.join("oi")))),
        )
        .unwrap();
        let url = "https://f/a_o.jpg";
        assert_eq!(
            r.resolve(url, Some("local.jpg")).unwrap().1,
            SourceWay::LocalInputImage
        );
        assert_eq!(
            r.resolve(url, Some("gone.jpg")).unwrap().1,
            SourceWay::SourceMap
        );
        let (found, way) = r.resolve(url, None).unwrap();
        assert_eq!(
            (PathBuf::from(found.shown()), way),
            (
                root.canonicalize().unwrap().join("oi/ID1.jpg"),
                SourceWay::SourceMap
            )
        );
        let e = r.resolve("https://f/zz_o.jpg", None).unwrap_err();
        assert_eq!(e.name(), "unresolved_source");
        assert!(e.to_string().contains("not in the source map"), "{e}");
        let e = r
            .resolve("https://f/zz_o.jpg", Some("gone.jpg"))
            .unwrap_err();
        assert_eq!(e.name(), "missing_source_file");
        let bare = SourceResolver::new(&top, None, None).unwrap();
        let e = bare.resolve(url, None).unwrap_err();
        assert!(
            e.to_string().contains("no --source-map or --source-dir"),
            "{e}"
        );
    }
}
