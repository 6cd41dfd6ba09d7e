//! The allocator settings, in a process of their own: glibc's malloc is process-wide.

#[cfg(all(target_os = "linux", target_env = "gnu"))]
#[test]
fn freed_buffers_stay_in_the_heap_once_the_allocator_is_set() {
    const MIB: usize = 1 << 20;
    // SAFETY: mallinfo2 only reads the allocator's counters.
    let info = || unsafe { libc::mallinfo2() };
    let touch = |len: usize| std::hint::black_box(vec![1u8; len]);

    // glibc's defaults: a 4 MiB buffer is a mapping of its own.
    let before = info();
    let small = touch(4 * MIB);
    assert!(
        info().hblkhd >= before.hblkhd + 4 * MIB,
        "defaults map 4 MiB"
    );
    drop(small);

    assert!(editfeed::allocator::keep_freed_memory());
    // With the settings, a buffer of 24 MiB (past what the defaults adjusted to) comes
    // from the heap, and stays there once freed.
    let before = info();
    let big = touch(24 * MIB);
    let held = info();
    assert!(
        held.hblkhd < before.hblkhd + 24 * MIB,
        "24 MiB was mapped on its own: {} -> {} bytes",
        before.hblkhd,
        held.hblkhd
    );
    drop(big);
    let freed = info();
    assert!(
        freed.arena + 24 * MIB > held.arena && freed.fordblks >= 24 * MIB,
        "the freed 24 MiB went back to the kernel: heap {} -> {} bytes, {} free",
        held.arena,
        freed.arena,
        freed.fordblks
    );
}
