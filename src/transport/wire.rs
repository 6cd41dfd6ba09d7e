//! Helpers over the wire messages shared by the server and clients: building tensors and
//! the batch digest that `editfeed fetch --hash` prints.
//!
//! The digest is sha256 over, in this order (integers little endian, every string and
//! byte string preceded by its length as u64):
//! 1. the tag `editfeed-batch-v1`;
//! 2. the subset name;
//! 3. per tensor in message order: name, dtype, the number of dimensions (u64) and each
//!    dimension (u64), then the data;
//! 4. per sample in message order: key, subset, edit type, category, text, summarized
//!    text, turns (u64), the number of turn texts (u64) and each turn text, flipped (one
//!    byte), ordinal (u64), epoch (u64), replaced key.
//!
//! Step, rank, world size and cursor are left out, so a batch's digest is the same
//! whichever daemon served it; the Python client computes the same digest.

use bytes::Bytes;
use sha2::{Digest, Sha256};

use crate::transport::proto::v1::{Batch, Tensor};

/// The batch digest tag; bump it if the digest's definition changes.
pub const DIGEST_TAG: &str = "editfeed-batch-v1";

/// A uint8 tensor.
pub fn tensor_u8(name: &str, shape: &[u64], data: Bytes) -> Tensor {
    debug_assert_eq!(shape.iter().product::<u64>(), data.len() as u64, "{name}");
    Tensor {
        name: name.into(),
        dtype: "uint8".into(),
        shape: shape.to_vec(),
        data,
        shm_file: String::new(),
    }
}

/// A uint8 tensor whose bytes are in a shared-memory file (`crate::transport::shared_memory`).
pub fn tensor_u8_in_file(name: &str, shape: &[u64], file: String) -> Tensor {
    Tensor {
        name: name.into(),
        dtype: "uint8".into(),
        shape: shape.to_vec(),
        data: Bytes::new(),
        shm_file: file,
    }
}

/// An int32 tensor.
pub fn tensor_i32(name: &str, shape: &[u64], values: &[i32]) -> Tensor {
    let data: Vec<u8> = values.iter().flat_map(|v| v.to_le_bytes()).collect();
    Tensor {
        name: name.into(),
        dtype: "int32".into(),
        shape: shape.to_vec(),
        data: data.into(),
        shm_file: String::new(),
    }
}

/// An int64 tensor.
pub fn tensor_i64(name: &str, shape: &[u64], values: &[i64]) -> Tensor {
    let data: Vec<u8> = values.iter().flat_map(|v| v.to_le_bytes()).collect();
    Tensor {
        name: name.into(),
        dtype: "int64".into(),
        shape: shape.to_vec(),
        data: data.into(),
        shm_file: String::new(),
    }
}

/// The bytes a tensor's shape and dtype take (an unknown dtype counts 1 byte per item).
pub fn tensor_bytes(t: &Tensor) -> u64 {
    let item = match t.dtype.as_str() {
        "int32" => 4,
        "int64" => 8,
        _ => 1,
    };
    t.shape.iter().product::<u64>() * item
}

struct Hasher(Sha256);

impl Hasher {
    fn bytes(&mut self, b: &[u8]) {
        self.0.update((b.len() as u64).to_le_bytes());
        self.0.update(b);
    }
    fn u64(&mut self, v: u64) {
        self.0.update(v.to_le_bytes());
    }
}

/// The batch digest (see the module docs), as 64 hex digits.
pub fn batch_digest(batch: &Batch) -> String {
    let mut h = Hasher(Sha256::new());
    h.bytes(DIGEST_TAG.as_bytes());
    h.bytes(batch.subset.as_bytes());
    for t in &batch.tensors {
        h.bytes(t.name.as_bytes());
        h.bytes(t.dtype.as_bytes());
        h.u64(t.shape.len() as u64);
        for d in &t.shape {
            h.u64(*d);
        }
        h.bytes(&t.data);
    }
    for s in &batch.samples {
        for text in [
            &s.key,
            &s.subset,
            &s.edit_type,
            &s.category,
            &s.text,
            &s.summarized_text,
        ] {
            h.bytes(text.as_bytes());
        }
        h.u64(s.turns as u64);
        h.u64(s.turn_texts.len() as u64);
        for t in &s.turn_texts {
            h.bytes(t.as_bytes());
        }
        h.0.update([s.flipped as u8]);
        h.u64(s.ordinal);
        h.u64(s.epoch);
        h.bytes(s.replaced_key.as_bytes());
    }
    crate::hex::hex(&h.0.finalize())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::transport::proto::v1::SampleMeta;

    #[test]
    fn digest_covers_tensors_and_metadata_but_not_position() {
        let batch = Batch {
            step: 3,
            rank: 1,
            subset: "sft".into(),
            tensors: vec![tensor_u8(
                "source",
                &[1, 1, 1, 3],
                Bytes::from_static(&[1, 2, 3]),
            )],
            samples: vec![SampleMeta {
                key: "k".into(),
                text: "left".into(),
                ..Default::default()
            }],
            cursor: "c".into(),
            ..Default::default()
        };
        let d = batch_digest(&batch);
        assert_eq!(d.len(), 64);
        let moved = Batch {
            step: 9,
            rank: 0,
            cursor: "other".into(),
            ..batch.clone()
        };
        assert_eq!(batch_digest(&moved), d);
        let mut pixel = batch.clone();
        pixel.tensors[0].data = Bytes::from_static(&[1, 2, 4]);
        assert_ne!(batch_digest(&pixel), d);
        let mut text = batch.clone();
        text.samples[0].text = "right".into();
        assert_ne!(batch_digest(&text), d);
    }
}
