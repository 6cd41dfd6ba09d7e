//! Parallel work in canonical order, for the writing commands (pack, reshard): items are
//! handed out in order to a fixed number of threads, and their results come back to the
//! calling thread in the same order, whatever thread finished first. Whatever the
//! thread count, the caller sees the same sequence, so a dataset written from it is
//! byte for byte the same.
//!
//! Memory is bounded twice: at most `4 x threads` items are out at once, and no new item
//! is handed out while the results waiting for their turn, plus the items being worked
//! on counted at the mean size of the results so far, would pass `max_inflight_bytes`.
//! The item the caller waits for next is always out already, so the bound cannot stall
//! the work; it can be passed by at most the results of the items out when it was
//! reached.
//!
//! Flow: reader of inputs -> PARALLEL (read, check, transcode, compress) -> writer.

use std::collections::BTreeMap;

use crossbeam_channel::bounded;

/// How many threads, and how much memory results may hold while they wait.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Parallelism {
    /// Worker threads (1 works on the calling thread).
    pub threads: usize,
    /// Bytes the finished results waiting for their turn may hold before no more items
    /// are handed out.
    pub max_inflight_bytes: u64,
}

/// The default of [`Parallelism::max_inflight_bytes`]: 1 GiB.
pub const DEFAULT_MAX_INFLIGHT_BYTES: u64 = 1 << 30;

impl Default for Parallelism {
    fn default() -> Self {
        Parallelism {
            threads: default_threads(),
            max_inflight_bytes: DEFAULT_MAX_INFLIGHT_BYTES,
        }
    }
}

/// One thread per core.
pub fn default_threads() -> usize {
    std::thread::available_parallelism().map_or(1, |n| n.get())
}

impl Parallelism {
    /// `threads` threads (0: one per core) with the default memory bound.
    pub fn threads(threads: usize) -> Parallelism {
        Parallelism {
            threads: if threads == 0 {
                default_threads()
            } else {
                threads
            },
            ..Parallelism::default()
        }
    }
}

/// Runs `work` on every item of `inputs` on `par.threads` threads, each with its own
/// state from `init`, and calls `commit` with the results in input order. `weight` is
/// the bytes a result holds. The first error, from `inputs` or `commit`, stops the run:
/// no more items are handed out, the threads finish the one they hold and the error is
/// returned. `inputs` runs on the calling thread, interleaved with `commit`.
pub fn run_ordered<I, S, O, E>(
    par: Parallelism,
    inputs: impl Iterator<Item = Result<I, E>>,
    init: impl Fn() -> S + Sync,
    work: impl Fn(&mut S, I) -> O + Sync,
    weight: impl Fn(&O) -> u64,
    mut commit: impl FnMut(O) -> Result<(), E>,
) -> Result<(), E>
where
    I: Send,
    O: Send,
{
    if par.threads <= 1 {
        let mut state = init();
        for item in inputs {
            commit(work(&mut state, item?))?;
        }
        return Ok(());
    }
    let window = par.threads * 4;
    std::thread::scope(|scope| {
        // Made inside the scope, so that leaving it early (an error) closes the work
        // channel before the scope waits for the threads.
        let (work_tx, work_rx) = bounded::<(u64, I)>(window);
        let (done_tx, done_rx) = bounded::<(u64, O)>(window);
        for _ in 0..par.threads {
            let (work_rx, done_tx) = (work_rx.clone(), done_tx.clone());
            let (init, work) = (&init, &work);
            scope.spawn(move || {
                let mut state = init();
                for (seq, item) in work_rx {
                    // The caller has gone (an error): finish quietly.
                    if done_tx.send((seq, work(&mut state, item))).is_err() {
                        return;
                    }
                }
            });
        }
        drop((work_rx, done_tx));
        let mut inputs = inputs.fuse();
        let (mut issued, mut next) = (0u64, 0u64);
        let mut waiting: BTreeMap<u64, (O, u64)> = BTreeMap::new();
        let (mut held, mut seen_bytes, mut seen) = (0u64, 0u64, 0u64);
        let mut exhausted = false;
        loop {
            let room = |issued: u64, next: u64, held: u64, waiting: usize| {
                let working = issued - next - waiting as u64;
                let mean = seen_bytes.checked_div(seen).unwrap_or(0);
                issued == next || held + working * mean < par.max_inflight_bytes
            };
            while !exhausted
                && issued - next < window as u64
                && room(issued, next, held, waiting.len())
            {
                match inputs.next() {
                    Some(item) => {
                        work_tx
                            .send((issued, item?))
                            .expect("the workers live until the work channel closes");
                        issued += 1;
                    }
                    None => exhausted = true,
                }
            }
            if issued == next {
                return Ok(());
            }
            let (seq, out) = done_rx
                .recv()
                .expect("a worker holds every item handed out until it sends it back");
            let w = weight(&out);
            held += w;
            seen_bytes += w;
            seen += 1;
            waiting.insert(seq, (out, w));
            while let Some((out, w)) = waiting.remove(&next) {
                held -= w;
                next += 1;
                commit(out)?;
            }
        }
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::{AtomicU64, Ordering};

    /// Runs `n` items; returns the results in commit order and the most items that were
    /// out (handed to a thread, not yet committed) at once.
    fn run(threads: usize, bytes: u64, n: u64) -> (Vec<u64>, u64) {
        let (started, committed, most) = (AtomicU64::new(0), AtomicU64::new(0), AtomicU64::new(0));
        let mut got = Vec::new();
        let par = Parallelism {
            threads,
            max_inflight_bytes: bytes,
        };
        run_ordered(
            par,
            (0..n).map(Ok::<u64, String>),
            || (),
            |_, i| {
                let out =
                    started.fetch_add(1, Ordering::SeqCst) + 1 - committed.load(Ordering::SeqCst);
                most.fetch_max(out, Ordering::SeqCst);
                // Later items finish first now and then.
                if i % 7 == 0 {
                    std::thread::sleep(std::time::Duration::from_millis(2));
                }
                i * i
            },
            |_| 10,
            |o| {
                committed.fetch_add(1, Ordering::SeqCst);
                got.push(o);
                Ok(())
            },
        )
        .unwrap();
        (got, most.load(Ordering::SeqCst))
    }

    #[test]
    fn results_come_in_input_order_for_any_thread_count_and_few_are_out() {
        let want: Vec<u64> = (0..200).map(|i| i * i).collect();
        for threads in [1, 2, 3, 8] {
            let (got, most) = run(threads, 1 << 20, 200);
            assert_eq!(got, want, "{threads} threads");
            assert!(
                most <= 4 * threads as u64,
                "{most} items out with {threads} threads"
            );
            // A budget smaller than one result still makes progress.
            let (got, _) = run(threads, 1, 200);
            assert_eq!(got, want, "{threads} threads");
        }
    }

    #[test]
    fn the_first_error_stops_the_run() {
        for threads in [1, 4] {
            let par = Parallelism {
                threads,
                max_inflight_bytes: 1 << 20,
            };
            let mut committed = Vec::new();
            let inputs = (0..100u64).map(|i| if i == 50 { Err(i) } else { Ok(i) });
            let r = run_ordered(
                par,
                inputs,
                || (),
                |_, i| i,
                |_| 1,
                |o| {
                    committed.push(o);
                    Ok(())
                },
            );
            assert_eq!(r, Err(50));
            assert!(committed.len() <= 50);
            assert_eq!(committed, (0..committed.len() as u64).collect::<Vec<_>>());
            let mut seen = 0;
            let r = run_ordered(
                par,
                (0..100u64).map(Ok),
                || (),
                |_, i| i,
                |_| 1,
                |o| {
                    seen += 1;
                    if o == 10 {
                        Err(o)
                    } else {
                        Ok(())
                    }
                },
            );
            assert_eq!((r, seen), (Err(10), 11));
        }
    }
}
