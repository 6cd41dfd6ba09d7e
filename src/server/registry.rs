//! The datasets a daemon serves, by registered name. Streams can only name a registered
//! dataset, never a path or URL. Each entry holds the open dataset and what the planner
//! needs, computed once when the dataset is registered.

use std::collections::BTreeMap;
use std::path::Path;
use std::sync::{Arc, RwLock};

use crate::config::check_dataset_name;
use crate::dataset::{Dataset, DatasetError};
use crate::plan::PlanDataset;
use crate::proto::v1::{DatasetInfo, SubsetInfo};

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
    /// Opens the dataset at `location` (a folder path or `file://` URL).
    pub fn open(name: &str, location: &str) -> Result<ServedDataset, RegistryError> {
        check_dataset_name(name).map_err(RegistryError::BadName)?;
        let path = location.strip_prefix("file://").unwrap_or(location);
        let dataset = Dataset::open(Path::new(path)).map_err(|source| RegistryError::Open {
            name: name.to_string(),
            source,
        })?;
        let plan_input = dataset.plan_input();
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
}

/// The registry of served datasets.
#[derive(Default)]
pub struct Registry {
    datasets: RwLock<BTreeMap<String, Arc<ServedDataset>>>,
}

impl Registry {
    /// Opens every `name -> location` pair; the first failure is returned.
    pub fn open_all(datasets: &BTreeMap<String, String>) -> Result<Registry, RegistryError> {
        let reg = Registry::default();
        for (name, location) in datasets {
            reg.insert(ServedDataset::open(name, location)?);
        }
        Ok(reg)
    }

    /// Adds or replaces a dataset.
    pub fn insert(&self, ds: ServedDataset) {
        self.datasets
            .write()
            .expect("registry lock")
            .insert(ds.name.clone(), Arc::new(ds));
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
