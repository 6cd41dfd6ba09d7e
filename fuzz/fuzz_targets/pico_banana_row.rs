//! The Pico-Banana metadata row parser on arbitrary lines, for each subset's schema.
#![no_main]

use editfeed::dataset::pico_banana::rows::parse_row;
use editfeed::dataset::Subset;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Some((&pick, line)) = data.split_first() else {
        return;
    };
    let subset = Subset::ALL[pick as usize % Subset::ALL.len()];
    let _ = parse_row(subset, line);
});
