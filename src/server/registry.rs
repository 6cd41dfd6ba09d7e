//! The datasets a daemon serves, by registered name. Streams can only name a registered
//! dataset, never a path or URL. Each entry holds the open dataset and what the planner
//! needs, computed once when the dataset is registered. A location is a folder, a
//! `file://` URL or an object-store URL (`s3://`, `gs://`, `az://`), opened through the
//! store layer with a [`StoreConfig`].

use std::collections::BTreeMap;
use std::sync::{Arc, RwLock};

use crate::config::check_dataset_name;
use crate::dataset::{Dataset, DatasetError};
use crate::plan::PlanDataset;
use crate::store::StoreConfig;
use crate::transport::proto::v1::{DatasetInfo, SubsetInfo};

/// One served dataset.
pub struct ServedDataset {
    /// Its registered name.
    pub name: String,
    /// Where it was opened from.
    pub location: String,
    /// The open dataset.
    pub dataset: Arc<Dataset>,
    /// The planner's view of it.
    pub plan_input: PlanDataset,
}

impl ServedDataset {
    /// Opens the dataset at `location` (a folder, `file://`, `s3://`, `gs://` or
    /// `az://` URL) with the store configured from the environment.
    pub fn open(name: &str, location: &str) -> Result<ServedDataset, RegistryError> {
        ServedDataset::open_with(name, location, &StoreConfig::from_env())
    }

    /// Opens the dataset at `location` with a store configuration (the daemon's
    /// `[store]`).
    pub fn open_with(
        name: &str,
        location: &str,
        store: &StoreConfig,
    ) -> Result<ServedDataset, RegistryError> {
        check_dataset_name(name).map_err(RegistryError::BadName)?;
        let dataset =
            Dataset::open_with(location, store).map_err(|source| RegistryError::Open {
                name: name.to_string(),
                source,
            })?;
        let plan_input = PlanDataset::from(&dataset);
        Ok(ServedDataset {
            name: name.into(),
            location: location.into(),
            dataset: Arc::new(dataset),
            plan_input,
        })
    }

    /// The description `Describe` returns.
    pub fn info(&self) -> DatasetInfo {
        let m = self.dataset.manifest();
        DatasetInfo {
            name: self.name.clone(),
            version: m.version.clone(),
            subsets: m
                .subsets
                .iter()
                .map(|(k, s)| SubsetInfo {
                    name: k.name().into(),
                    samples: s.samples,
                    shards: s.shards.len() as u64,
                    bytes: s.bytes,
                })
                .collect(),
        }
    }
}

/// Why a dataset could not be registered.
#[derive(Debug, thiserror::Error)]
pub enum RegistryError {
    /// The name is not a valid dataset name.
    #[error("{0}")]
    BadName(String),
    /// The dataset does not open.
    #[error("dataset {name}: {source}")]
    Open {
        name: String,
        #[source]
        source: DatasetError,
    },
    /// The daemon's persisted state (registry or jobs) cannot be read or written.
    #[error("state {path}: {why}")]
    State {
        path: std::path::PathBuf,
        why: String,
    },
}

/// The registry of served datasets.
#[derive(Default)]
pub struct Registry {
    datasets: RwLock<BTreeMap<String, Arc<ServedDataset>>>,
}

impl Registry {
    /// Opens every `name -> location` pair; the first failure is returned.
    pub fn open_all(datasets: &BTreeMap<String, String>) -> Result<Registry, RegistryError> {
        Registry::open_all_with(datasets, &StoreConfig::from_env())
    }

    /// [`open_all`](Self::open_all) with a store configuration.
    pub fn open_all_with(
        datasets: &BTreeMap<String, String>,
        store: &StoreConfig,
    ) -> Result<Registry, RegistryError> {
        let reg = Registry::default();
        for (name, location) in datasets {
            reg.insert(ServedDataset::open_with(name, location, store)?);
        }
        Ok(reg)
    }

    /// Adds or replaces a dataset; returns the one it replaced. Streams that took the
    /// replaced one keep it until they end.
    pub fn insert(&self, ds: ServedDataset) -> Option<Arc<ServedDataset>> {
        self.datasets
            .write()
            .expect("registry lock")
            .insert(ds.name.clone(), Arc::new(ds))
    }

    /// Removes a name; returns what it served.
    pub fn remove(&self, name: &str) -> Option<Arc<ServedDataset>> {
        self.datasets.write().expect("registry lock").remove(name)
    }

    /// A dataset by name.
    pub fn get(&self, name: &str) -> Option<Arc<ServedDataset>> {
        self.datasets
            .read()
            .expect("registry lock")
            .get(name)
            .cloned()
    }

    /// Every registered name.
    pub fn names(&self) -> Vec<String> {
        self.datasets
            .read()
            .expect("registry lock")
            .keys()
            .cloned()
            .collect()
    }

    /// Every dataset.
    pub fn all(&self) -> Vec<Arc<ServedDataset>> {
        self.datasets
            .read()
            .expect("registry lock")
            .values()
            .cloned()
            .collect()
    }
}
