//! The manifest parser and validator on arbitrary bytes; a valid manifest must survive
//! a round trip through its JSON.
#![no_main]

use editfeed::dataset::Manifest;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    if let Ok(m) = Manifest::parse(data) {
        let _ = m.validate();
        let again = Manifest::parse(&m.to_json()).expect("a parsed manifest re-parses");
        assert_eq!(again.to_json(), m.to_json());
    }
});
