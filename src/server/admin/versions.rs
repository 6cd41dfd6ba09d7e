//! Dataset versions by name: which location each name points at, and the versions a
//! switch or re-registration retired. The name -> location map is persisted in
//! `<state_dir>/registry.json` (written atomically), so a restart keeps what the Admin
//! service changed; config's `[datasets]` fill in names the file does not mention.
//!
//! A retired version stays on its store while any stream still reads it (a stream holds
//! its dataset from start to end); `Gc` deletes the others: the manifest first, so a
//! half-deleted version is never a dataset, then the shards and indexes it names.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

use serde::{Deserialize, Serialize};

use super::AdminError;
use crate::dataset::manifest::MANIFEST_FILE;
use crate::dataset::Dataset;
use crate::server::registry::{Registry, RegistryError, ServedDataset};
use crate::store::StoreConfig;
use crate::transport::proto::v1::RetiredVersion;

/// The registry file's name inside the state folder.
pub const REGISTRY_FILE: &str = "registry.json";

/// What `registry.json` holds.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct RegistryFile {
    /// Name -> location, as the Admin service last left it.
    datasets: BTreeMap<String, String>,
    /// Names unregistered through Admin: config's `[datasets]` does not bring them back.
    #[serde(default)]
    unregistered: BTreeSet<String>,
    /// Versions retired and not yet collected.
    #[serde(default)]
    retired: Vec<RetiredEntry>,
}

/// A retired version as persisted.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct RetiredEntry {
    name: String,
    location: String,
    version: String,
}

struct State {
    file: RegistryFile,
    /// The open datasets of retired versions, parallel to `file.retired` (`None` after a
    /// restart: nothing can be reading them).
    held: Vec<Option<Arc<ServedDataset>>>,
}

/// The versions each name points at, persisted when a state folder is configured.
pub struct Versions {
    path: Option<PathBuf>,
    state: Mutex<State>,
}

fn state_err(path: &Path, why: impl ToString) -> RegistryError {
    RegistryError::State {
        path: path.to_path_buf(),
        why: why.to_string(),
    }
}

impl Versions {
    /// Loads `<state_dir>/registry.json` (when `state_dir` is not empty) over the
    /// configured datasets.
    pub fn load(
        state_dir: &str,
        configured: &BTreeMap<String, String>,
    ) -> Result<Versions, RegistryError> {
        let path = (!state_dir.is_empty()).then(|| Path::new(state_dir).join(REGISTRY_FILE));
        let mut file = match &path {
            Some(p) if p.exists() => {
                let text = std::fs::read(p).map_err(|e| state_err(p, e))?;
                serde_json::from_slice::<RegistryFile>(&text).map_err(|e| state_err(p, e))?
            }
            _ => RegistryFile::default(),
        };
        for (name, location) in configured {
            if !file.datasets.contains_key(name) && !file.unregistered.contains(name) {
                file.datasets.insert(name.clone(), location.clone());
            }
        }
        let held = vec![None; file.retired.len()];
        Ok(Versions {
            path,
            state: Mutex::new(State { file, held }),
        })
    }

    /// Every name with the location it should serve.
    pub fn wanted(&self) -> BTreeMap<String, String> {
        self.lock().file.datasets.clone()
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, State> {
        self.state.lock().expect("versions lock")
    }

    fn save(&self, st: &State) -> Result<(), AdminError> {
        let Some(path) = &self.path else {
            return Ok(());
        };
        if let Some(dir) = path.parent() {
            std::fs::create_dir_all(dir).map_err(|e| state_err(dir, e))?;
        }
        let json = serde_json::to_vec_pretty(&st.file).expect("the registry serialises");
        crate::dataset::writer::write_atomic(path, &json).map_err(|e| state_err(path, e))?;
        Ok(())
    }

    /// Serves `ds` under its name from now on; the version it replaces (if any, and if
    /// at another location) is retired. Streams already open keep theirs.
    pub fn point(&self, registry: &Registry, ds: ServedDataset) -> Result<(), AdminError> {
        let mut st = self.lock();
        let (name, location) = (ds.name.clone(), ds.location.clone());
        if let Some(old) = registry.insert(ds) {
            if old.location != location {
                st.file.retired.push(RetiredEntry {
                    name: old.name.clone(),
                    location: old.location.clone(),
                    version: old.dataset.manifest().version.clone(),
                });
                st.held.push(Some(old));
            }
        }
        st.file.unregistered.remove(&name);
        st.file.datasets.insert(name, location);
        self.save(&st)
    }

    /// Stops serving `name`; streams already open keep their dataset until they end.
    pub fn unregister(&self, registry: &Registry, name: &str) -> Result<(), AdminError> {
        let mut st = self.lock();
        let known = st.file.datasets.remove(name).is_some();
        if registry.remove(name).is_none() && !known {
            return Err(AdminError::UnknownDataset {
                name: name.to_string(),
                registered: registry.names().join(", "),
            });
        }
        st.file.unregistered.insert(name.to_string());
        self.save(&st)
    }

    /// The retired versions not collected yet.
    pub fn retired(&self) -> Vec<RetiredVersion> {
        let st = self.lock();
        st.file
            .retired
            .iter()
            .zip(&st.held)
            .map(|(r, held)| retired_info(r, held))
            .collect()
    }

    /// Deletes the retired versions that no stream reads and no name points at (a
    /// version a name points at again is only forgotten). Blocking: call off the async
    /// runtime. Returns (removed, kept).
    pub fn gc(
        &self,
        registry: &Registry,
        store: &StoreConfig,
        dry_run: bool,
    ) -> Result<(Vec<RetiredVersion>, Vec<RetiredVersion>), AdminError> {
        let mut st = self.lock();
        let in_use: BTreeSet<String> = registry.all().iter().map(|d| d.location.clone()).collect();
        let (mut removed, mut kept) = (Vec::new(), Vec::new());
        let mut keep_file = Vec::new();
        let mut keep_held = Vec::new();
        let entries = std::mem::take(&mut st.file.retired);
        let held = std::mem::take(&mut st.held);
        for (entry, held) in entries.into_iter().zip(held) {
            let info = retired_info(&entry, &held);
            if info.streams > 0 {
                kept.push(info);
                keep_file.push(entry);
                keep_held.push(held);
                continue;
            }
            if !dry_run && !in_use.contains(&entry.location) {
                if let Err(e) = delete_version(&entry.location, held.as_deref(), store) {
                    keep_file.push(entry);
                    keep_held.push(held);
                    st.file.retired.append(&mut keep_file);
                    st.held.append(&mut keep_held);
                    self.save(&st)?;
                    return Err(e);
                }
            }
            if dry_run {
                keep_file.push(entry);
                keep_held.push(held);
            }
            removed.push(info);
        }
        st.file.retired = keep_file;
        st.held = keep_held;
        self.save(&st)?;
        Ok((removed, kept))
    }
}

fn retired_info(r: &RetiredEntry, held: &Option<Arc<ServedDataset>>) -> RetiredVersion {
    RetiredVersion {
        name: r.name.clone(),
        location: r.location.clone(),
        version: r.version.clone(),
        // Streams hold the open dataset: one reference is the retired entry's, every
        // other is a stream's.
        streams: held.as_ref().map_or(0, |d| {
            Arc::strong_count(&d.dataset).saturating_sub(1) as u64
        }),
    }
}

/// Deletes one version: its manifest, then every shard and index the manifest names
/// (nothing is found by listing). A version already gone is not an error.
fn delete_version(
    location: &str,
    held: Option<&ServedDataset>,
    store: &StoreConfig,
) -> Result<(), AdminError> {
    let opened;
    let dataset = match held {
        Some(d) => &*d.dataset,
        None => match Dataset::open_with(location, store) {
            Ok(d) => {
                opened = d;
                &opened
            }
            Err(e) if !dataset_exists(location, store) => {
                tracing::info!(%location, error = %e, "retired version already gone");
                return Ok(());
            }
            Err(e) => {
                return Err(AdminError::Gc {
                    location: location.to_string(),
                    why: e.to_string(),
                })
            }
        },
    };
    let gc_err = |e: crate::store::StoreError| AdminError::Gc {
        location: location.to_string(),
        why: e.to_string(),
    };
    let store = dataset.store();
    store.delete(MANIFEST_FILE).map_err(gc_err)?;
    for subset in dataset.manifest().subsets.values() {
        for shard in &subset.shards {
            store.delete(&shard.path).map_err(gc_err)?;
            if let Some(index) = &shard.index {
                store.delete(index).map_err(gc_err)?;
            }
        }
    }
    tracing::info!(%location, version = %dataset.manifest().version, "retired version deleted");
    Ok(())
}

fn dataset_exists(location: &str, config: &StoreConfig) -> bool {
    use crate::store::AsLocation;
    location
        .as_location()
        .ok()
        .and_then(|l| crate::store::Store::open(&l, config).ok())
        .is_none_or(|s| s.exists(MANIFEST_FILE).unwrap_or(true))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn configured(pairs: &[(&str, &str)]) -> BTreeMap<String, String> {
        pairs
            .iter()
            .map(|(n, l)| (n.to_string(), l.to_string()))
            .collect()
    }

    #[test]
    fn the_file_wins_over_config_and_unregistered_names_stay_away() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(
            dir.path().join(REGISTRY_FILE),
            r#"{"datasets": {"a": "/new/a"}, "unregistered": ["b"]}"#,
        )
        .unwrap();
        let v = Versions::load(
            dir.path().to_str().unwrap(),
            &configured(&[("a", "/old/a"), ("b", "/b"), ("c", "/c")]),
        )
        .unwrap();
        assert_eq!(v.wanted(), configured(&[("a", "/new/a"), ("c", "/c")]));
        let memory = Versions::load("", &configured(&[("a", "/old/a")])).unwrap();
        assert_eq!(memory.wanted(), configured(&[("a", "/old/a")]));
    }

    #[test]
    fn a_broken_registry_file_is_refused_by_path_and_key() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join(REGISTRY_FILE);
        std::fs::write(&path, r#"{"datasets": {}, "retierd": []}"#).unwrap();
        let e = Versions::load(dir.path().to_str().unwrap(), &BTreeMap::new())
            .err()
            .unwrap()
            .to_string();
        assert!(e.contains("registry.json") && e.contains("retierd"), "{e}");
    }
}
