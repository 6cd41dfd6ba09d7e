//! Shared-memory delivery of batch tensors, for trainers on the daemon's host.
//!
//! A batch of 512 px images is megabytes per sample. Over gRPC those bytes are copied
//! into tonic's encode buffer, through the socket, into the client's receive buffers and,
//! in Python, into one more `bytes`: on a machine whose cores also run the trainer, that
//! is CPU the trainer does not get. When the client shares a folder on a tmpfs
//! (`/dev/shm` by default) with the daemon, each large tensor goes there as one file
//! instead, and the message carries its name (`Tensor.shm_file`). The client maps the
//! file and reads the pixels in place. The bytes are the same either way.
//!
//! - **Handshake.** The client creates an empty file with a random name in its folder
//!   and sends the name (`StreamRequest.shm_probe`). If the daemon finds that file in
//!   its own folder, owned by its own user, they share the folder and the stream uses it;
//!   the daemon removes the probe. Otherwise (another host, another container, another
//!   user) every tensor stays in its message.
//! - **Files go back and forth.** Once the client no longer uses a file's bytes (in
//!   Python: when the last array over it is gone) it renames the file to
//!   `<name>.free`; the daemon renames it back and writes a later batch into it. Steady
//!   streaming so writes into pages the folder already holds and both sides already
//!   map, with no page allocated, zeroed or faulted in per batch.
//! - **Bounded.** A stream has at most `3 x (prefetch_batches + 4)` files, and the
//!   daemon at most `shm_max_bytes` in files for all streams; past either, and when the
//!   folder is full (the files' pages are allocated when they are created, so a full
//!   tmpfs is an error there, never a fault later), a tensor travels in its message.
//! - **When a stream ends** the files given back are removed. The client may still be
//!   reading the last messages, so the others are removed once given back, or
//!   [`GRACE`] later, and count against `shm_max_bytes` until then. The daemon removes
//!   what is left when it stops; a daemon killed outright leaves its files
//!   (`editfeed-<id>-<n>.tensor`) behind.
//!
//! The client side is here too ([`Probe`], [`take_files`]), for `editfeed fetch` and the
//! tests; the Python client does the same in `editfeed/wire.py`.
//!
//! Stage: transport. The pipeline's collation writes into a stream's files; the server
//! checks a request's probe. Files: `folder` (the daemon's folder and byte budget),
//! `probe` (the handshake: probe names and the ownership check), `stream` (a stream's
//! files and their reuse), `orphans` (an ended stream's files until they are removed),
//! `take` (the client reading tensors from files and giving them back).

mod folder;
mod orphans;
mod probe;
mod stream;
mod take;

use std::path::{Path, PathBuf};
use std::time::Duration;

pub use folder::SharedMemory;
pub use probe::{BadProbe, Probe};
pub use stream::{BatchFiles, StreamFiles};
pub use take::{take_files, TakeError};

/// Tensors smaller than this stay in the message (turn counts, offsets).
pub const MIN_FILE_BYTES: usize = 64 << 10;
/// How long the files of an ended stream wait for its client.
pub const GRACE: Duration = Duration::from_secs(300);

/// A random 64-bit value for file names (not for anything the batches depend on).
fn random_u64() -> u64 {
    use std::hash::{BuildHasher, Hasher};
    let mut h = std::collections::hash_map::RandomState::new().build_hasher();
    h.write_u128(
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.as_nanos()),
    );
    h.write_u32(std::process::id());
    h.finish()
}

fn free_path(path: &Path) -> PathBuf {
    let mut p = path.as_os_str().to_owned();
    p.push(FREE_SUFFIX);
    PathBuf::from(p)
}

/// The suffix a client adds to a file's name to give it back.
pub const FREE_SUFFIX: &str = ".free";
