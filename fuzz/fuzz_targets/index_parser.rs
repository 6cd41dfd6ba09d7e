//! The shard index (`.idx`) parser on arbitrary bytes, as they come and with a valid
//! trailing checksum appended (so the fuzzer reaches the entry parser behind the
//! checksum); what parses must encode back to the same bytes.
#![no_main]

use editfeed::shard::index::ShardIndex;
use libfuzzer_sys::fuzz_target;
use sha2::{Digest, Sha256};

fuzz_target!(|data: &[u8]| {
    if let Ok(index) = ShardIndex::parse(data) {
        assert_eq!(index.encode(), data, "a parsed index re-encodes to its bytes");
    }
    let mut sealed = data.to_vec();
    sealed.extend_from_slice(&Sha256::digest(data));
    if let Ok(index) = ShardIndex::parse(&sealed) {
        assert_eq!(index.encode(), sealed, "a parsed index re-encodes to its bytes");
    }
});
