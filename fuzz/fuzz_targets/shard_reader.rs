//! The shard reader on arbitrary bytes: as a whole shard read as a stream (zstd or plain
//! tar, recognised from the first bytes), and as one indexed sample frame.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let mut samples = 0u32;
    let _ = editfeed::shard::reader::stream_samples("fuzz.tar.zst", data, |s| {
        samples += 1;
        let _ = editfeed::dataset::sample::Sample::from_raw(s);
        Ok(())
    });
    if data.len() > 4 {
        // The index's raw length bounds the decompressed frame: take it from the input,
        // capped like an index entry's would be by the writer's member limit.
        let raw_len = u32::from_le_bytes([data[0], data[1], data[2], data[3]]) % (4 << 20);
        let _ = editfeed::shard::reader::decode_frame("fuzz.tar.zst", 0, &data[4..], raw_len);
    }
});
