//! The 35 Pico-Banana edit types and the 8 categories they belong to. The published
//! metadata has no category field: the category always comes from the edit type.

use serde::{Deserialize, Serialize};

/// One of the 8 edit categories.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Category {
    PixelPhotometric,
    ObjectSemantic,
    SceneComposition,
    Stylistic,
    TextSymbol,
    HumanCentric,
    ScalePerspective,
    SpatialLayout,
}

impl Category {
    /// Every category, in a fixed order; `id()` indexes this slice.
    pub const ALL: [Category; 8] = [
        Category::PixelPhotometric,
        Category::ObjectSemantic,
        Category::SceneComposition,
        Category::Stylistic,
        Category::TextSymbol,
        Category::HumanCentric,
        Category::ScalePerspective,
        Category::SpatialLayout,
    ];

    /// The snake_case name used in manifests, metadata and curriculum files.
    pub fn name(self) -> &'static str {
        match self {
            Category::PixelPhotometric => "pixel_photometric",
            Category::ObjectSemantic => "object_semantic",
            Category::SceneComposition => "scene_composition",
            Category::Stylistic => "stylistic",
            Category::TextSymbol => "text_symbol",
            Category::HumanCentric => "human_centric",
            Category::ScalePerspective => "scale_perspective",
            Category::SpatialLayout => "spatial_layout",
        }
    }

    /// A small dense id (0..8), stable across releases.
    pub fn id(self) -> u8 {
        Category::ALL.iter().position(|c| *c == self).unwrap_or(0) as u8
    }

    /// Parses a snake_case category name.
    pub fn from_name(name: &str) -> Option<Category> {
        Category::ALL.iter().copied().find(|c| c.name() == name)
    }
}

impl std::fmt::Display for Category {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.name())
    }
}

/// The published edit types: (exact string, category, single-turn count).
pub const EDIT_TYPES: [(&str, Category, u32); 35] = [
    (
        "Change overall color tone (warm ↔ cool)",
        Category::PixelPhotometric,
        14745,
    ),
    (
        "Add film grain or vintage filter",
        Category::PixelPhotometric,
        15443,
    ),
    (
        "Add a new object to the scene",
        Category::ObjectSemantic,
        14187,
    ),
    ("Remove an existing object", Category::ObjectSemantic, 15109),
    (
        "Replace one object category with another",
        Category::ObjectSemantic,
        14547,
    ),
    (
        "Change an object's attribute (e.g., color/material)",
        Category::ObjectSemantic,
        13813,
    ),
    (
        "Relocate an object (change its position/spatial relation)",
        Category::ObjectSemantic,
        6612,
    ),
    (
        "Change the size/shape/orientation of an object",
        Category::ObjectSemantic,
        10787,
    ),
    (
        "Add new scene context/background",
        Category::SceneComposition,
        14829,
    ),
    (
        "Apply seasonal transformation (summer ↔ winter)",
        Category::SceneComposition,
        13438,
    ),
    (
        "Change weather conditions (sunny/rainy/snowy)",
        Category::SceneComposition,
        11992,
    ),
    (
        "Adjust global lighting (golden hour/fluorescent)",
        Category::SceneComposition,
        12432,
    ),
    (
        "Strong artistic style transfer (e.g., Van Gogh/anime/etc.)",
        Category::Stylistic,
        15284,
    ),
    ("Photo to cartoon/sketch/comic", Category::Stylistic, 12735),
    ("Modern ↔ historical style/look", Category::Stylistic, 14856),
    (
        "Replace text in signs/posters/billboards",
        Category::TextSymbol,
        3494,
    ),
    (
        "Add new (handwritten/printed/etc) text",
        Category::TextSymbol,
        3866,
    ),
    (
        "Change font style or color of visible text if there is text",
        Category::TextSymbol,
        1431,
    ),
    (
        "Translate written text into other languages",
        Category::TextSymbol,
        1897,
    ),
    (
        "Add/Remove/Replace Accessories (glasses, hats, jewelry, masks)",
        Category::HumanCentric,
        1597,
    ),
    (
        "Clothing edit (change color/outfit)",
        Category::HumanCentric,
        1801,
    ),
    (
        "Pose tweak (minor plausible change)",
        Category::HumanCentric,
        1833,
    ),
    (
        "Modify expressions (smile, frown, neutral)",
        Category::HumanCentric,
        1526,
    ),
    ("Change age / gender", Category::HumanCentric, 1685),
    (
        "Convert person to 2D anime/manga style (identity-preserving)",
        Category::HumanCentric,
        1040,
    ),
    (
        "Convert person to Pixar/Disney-like 3D cartoon look",
        Category::HumanCentric,
        1036,
    ),
    (
        "Convert person to Western comic cel-shaded style",
        Category::HumanCentric,
        982,
    ),
    (
        "Line-art ink sketch of the person",
        Category::HumanCentric,
        1482,
    ),
    (
        "Sticker-ify the person with bold outline and white border",
        Category::HumanCentric,
        1422,
    ),
    (
        "Caricature with mild feature exaggeration (keep identity)",
        Category::HumanCentric,
        832,
    ),
    (
        "Funko-Pop–style toy figure of the person",
        Category::HumanCentric,
        1859,
    ),
    (
        "LEGO-minifigure rendition of the person",
        Category::HumanCentric,
        1568,
    ),
    (
        "Simpsonize the person (yellow-skin cartoon style)",
        Category::HumanCentric,
        1439,
    ),
    ("Zoom in", Category::ScalePerspective, 13729),
    (
        "Outpainting (extend canvas beyond boundaries)",
        Category::SpatialLayout,
        12402,
    ),
];

/// The category of an exact edit-type string, or `None` for an unknown type.
pub fn category_of(edit_type: &str) -> Option<Category> {
    EDIT_TYPES
        .iter()
        .find(|(name, _, _)| *name == edit_type)
        .map(|(_, c, _)| *c)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_category_has_types_and_counts_match_the_publication() {
        for c in Category::ALL {
            assert!(
                EDIT_TYPES.iter().any(|(_, cat, _)| *cat == c),
                "{c} has no types"
            );
            assert_eq!(Category::from_name(c.name()), Some(c));
        }
        let total: u32 = EDIT_TYPES.iter().map(|(_, _, n)| n).sum();
        assert_eq!(total, 257_730, "single-turn rows in sft.jsonl");
    }

    #[test]
    fn lookup_is_exact() {
        assert_eq!(category_of("Zoom in"), Some(Category::ScalePerspective));
        assert_eq!(category_of("zoom in"), None);
        assert_eq!(
            category_of("Change overall color tone (warm ↔ cool)"),
            Some(Category::PixelPhotometric)
        );
    }
}
