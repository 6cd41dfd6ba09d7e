//! Settings of the C allocator (glibc's malloc) that the pipeline's buffers need.
//!
//! Each sample allocates and frees buffers of a few MiB: a decoded JPEG, a decompressed
//! frame, a batch's tensors. glibc's defaults give such buffers back to the kernel as
//! soon as they are freed: those above its mmap threshold are unmapped, and a free
//! block at the top of a thread's heap is released with `madvise(MADV_DONTNEED)` once it
//! passes the trim threshold. The next buffer then faults in and zeroes fresh pages.
//! On the daemon's workers that costs about a tenth of their time (see BENCHMARKS.md,
//! "Allocator").
//!
//! [`keep_freed_memory`] raises both thresholds, so freed buffers stay in the heap and
//! the next sample reuses their pages. Memory stays bounded: a heap keeps at most what
//! its thread held at once, plus [`TRIM_THRESHOLD`] of free space at its top.
//!
//! An operator who sets any `glibc.malloc.` tunable in `GLIBC_TUNABLES` keeps full
//! control: then nothing is changed.

/// Allocations below this size come from the heap, not from a mapping of their own.
/// 32 MiB is the highest value glibc's own adjustment reaches.
pub const MMAP_THRESHOLD: usize = 32 << 20;

/// A heap gives memory back to the kernel only past this much free space at its top.
pub const TRIM_THRESHOLD: usize = 64 << 20;

/// Applies [`MMAP_THRESHOLD`] and [`TRIM_THRESHOLD`] to glibc's malloc, unless
/// `GLIBC_TUNABLES` sets a malloc tunable. Returns whether they were applied. Call it
/// first thing in `main`, before threads start.
pub fn keep_freed_memory() -> bool {
    let tunables = std::env::var("GLIBC_TUNABLES").unwrap_or_default();
    if tunables.contains("glibc.malloc.") {
        return false;
    }
    apply()
}

#[cfg(all(target_os = "linux", target_env = "gnu"))]
fn apply() -> bool {
    // SAFETY: mallopt only sets allocator parameters; both values fit a c_int.
    unsafe {
        libc::mallopt(libc::M_MMAP_THRESHOLD, MMAP_THRESHOLD as libc::c_int) == 1
            && libc::mallopt(libc::M_TRIM_THRESHOLD, TRIM_THRESHOLD as libc::c_int) == 1
    }
}

#[cfg(not(all(target_os = "linux", target_env = "gnu")))]
fn apply() -> bool {
    false
}
