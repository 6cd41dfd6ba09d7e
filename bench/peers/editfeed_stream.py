"""editfeed measured as the peers are: a fresh daemon (``editfeed serve``, one worker per
core, a child of this process) and this process as its Python consumer
(``editfeed.Client.stream``, numpy arrays for every batch), timed, checked and reported
by the same code as every peer, so that the time to the first batch counts the daemon's
start-up and the peak RSS is the daemon's plus the consumer's.

    python bench/peers/editfeed_stream.py --bin target/release/editfeed --data DATASET --subset sft --size 256 --batches 20
"""

from __future__ import annotations

import importlib.util
import os
import tempfile
from pathlib import Path

import common
import editfeed


def bench_client():
    """clients/python/bench_client.py, for its daemon start-up."""
    path = common.BENCH.parent / "clients/python/bench_client.py"
    spec = importlib.util.spec_from_file_location("bench_client", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def main() -> None:
    p = common.parser(__doc__)
    p.add_argument("--bin", default=str(common.BENCH.parent / "target/release/editfeed"))
    p.add_argument("--shm", action="store_true", help="take the tensors through shared memory (/dev/shm)")
    p.add_argument("--endpoint", help="stream from this running daemon (serving the dataset as `bench`) instead of starting one")
    args = p.parse_args()
    if common.prepared(args, lambda: None):
        return
    _, slots = common.ref.subset_shards(args.data, args.subset)
    # With --shm the daemon writes large tensors into files of /dev/shm (its shm_dir,
    # through the EDITFEED_SHM_DIR override) and the client maps them; without, the
    # tensors travel in the messages.
    shm = "/dev/shm" if args.shm else ""
    os.environ["EDITFEED_SHM_DIR"] = shm
    proc, endpoint = None, args.endpoint
    if endpoint is None:
        proc, endpoint = bench_client().start_daemon(args.bin, {"bench": args.data}, 0)
    client = editfeed.Client(endpoint, shm_dir=shm)
    with tempfile.TemporaryDirectory() as tmp:
        cur = Path(tmp) / "curriculum.toml"
        cur.write_text(f"[[curriculum]]\nweights = {{ {args.subset} = 1.0 }}\n")
        stream = client.stream("bench", cur, seed=args.seed, size=args.size, global_batch=args.batch, max_batches=args.batches + 1)

        def stop() -> None:
            client.close()
            if proc is not None:
                proc.terminate()
                proc.wait()

        common.run(args, (b.tensors for b in stream), slots, "editfeed", cleanup=stop)


if __name__ == "__main__":
    main()
