//! Datasets: the sample schema, the manifest, the Pico-Banana importer and the synthetic
//! dataset generator.

pub mod edit_types;
pub mod subset;

pub use edit_types::Category;
pub use subset::Subset;
