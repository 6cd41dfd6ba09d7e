//! The shard index (`.idx`) parser on arbitrary bytes; what parses must encode back to
//! the same bytes.
#![no_main]

use editfeed::shard::index::ShardIndex;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    if let Ok(index) = ShardIndex::parse(data) {
        assert_eq!(
            index.encode(),
            data,
            "a parsed index re-encodes to its bytes"
        );
    }
});
