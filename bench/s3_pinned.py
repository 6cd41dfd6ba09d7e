"""S3 against local disk at equal cores: the daemon pinned to core 0, the S3 server
pinned to core 1, in one run, in interleaved rounds.

Run through ``bench/run --s3-pinned`` (which builds the release binary and installs
moto's server into .venv). The published-format dataset of bench/run (``editfeed
synth``) is uploaded to moto's server on loopback; one daemon (``editfeed serve
--workers 1``, pinned with ``taskset -a -c 0``) serves it both from the local folder
and from ``s3://`` through a proxy that adds the latency (50 ms by default) to every
request; moto, the proxy and the consumer (``editfeed fetch``) are pinned to core 1, in
the local runs too. Each run reports samples/s from the first batch on, and the daemon's
CPU-seconds per sample (utime + stime of /proc/<pid>/stat over the run). No disk cache
for the object store (EDITFEED_CACHE_DIR unset), so every read goes to the server.

    bench/run --s3-pinned [--rounds 3] [--samples 120] [--latency-ms 50] [--bin FILE]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import run  # bench/run.py: the dataset, the daemon start-up and fetch's report

ROOT = run.ROOT
TICK = os.sysconf("SC_CLK_TCK")
BUCKET = "bench"
CREDENTIALS = {"AWS_ACCESS_KEY_ID": "bench", "AWS_SECRET_ACCESS_KEY": "bench", "AWS_REGION": "us-east-1"}


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def proxy(listen: int, upstream: int, delay_s: float) -> None:
    """A TCP proxy that holds every read from the client (a request, or a part of a
    large one) for `delay_s` before passing it on; replies pass straight through."""

    async def pipe(reader, writer, delay: float) -> None:
        try:
            while data := await reader.read(1 << 16):
                if delay:
                    await asyncio.sleep(delay)
                writer.write(data)
                await writer.drain()
        finally:
            writer.close()

    async def handle(client_r, client_w) -> None:
        server_r, server_w = await asyncio.open_connection("127.0.0.1", upstream)
        await asyncio.gather(pipe(client_r, server_w, delay_s), pipe(server_r, client_w, 0.0), return_exceptions=True)

    async def main() -> None:
        server = await asyncio.start_server(handle, "127.0.0.1", listen)
        print("ready", flush=True)
        await server.serve_forever()

    asyncio.run(main())


def wait_port(port: int, what: str, seconds: float = 90) -> None:
    deadline = time.monotonic() + seconds
    while True:
        try:
            socket.create_connection(("127.0.0.1", port), timeout=1).close()
            return
        except OSError:
            if time.monotonic() > deadline:
                raise SystemExit(f"{what} did not listen on 127.0.0.1:{port} within {seconds:.0f} s")
            time.sleep(0.2)


def upload(endpoint: str, data: Path) -> None:
    import boto3  # from moto[server]

    s3 = boto3.client("s3", endpoint_url=endpoint, region_name=CREDENTIALS["AWS_REGION"])
    s3.create_bucket(Bucket=BUCKET)
    for f in sorted(data.iterdir()):
        if f.is_file():
            s3.upload_file(str(f), BUCKET, f"{data.name}/{f.name}")


def cpu_s(pid: int) -> float:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / TICK


def main() -> None:
    if sys.argv[1:2] == ["--proxy"]:
        proxy(int(sys.argv[2]), int(sys.argv[3]), float(sys.argv[4]) / 1000)
        return
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--bin", default=str(ROOT / "target/release/editfeed"))
    p.add_argument("--data", type=Path, default=ROOT / "target/bench-data/reference")
    p.add_argument("--samples", type=int, default=120)
    p.add_argument("--rounds", type=int, default=3)
    p.add_argument("--quick", action="store_true", help="one round")
    p.add_argument("--kind", default="sft", choices=run.KINDS)
    p.add_argument("--size", type=int, default=256)
    p.add_argument("--batches", type=int, default=16, help="timed batches (after the first) per run")
    p.add_argument("--latency-ms", type=float, default=50)
    p.add_argument("--moto", default=str(ROOT / ".venv/bin/moto_server"))
    p.add_argument("--json", type=Path)
    args = p.parse_args()
    if os.cpu_count() < 2 or subprocess.run(["taskset", "-c", "1", "true"]).returncode != 0:
        raise SystemExit("--s3-pinned needs taskset and at least 2 cores")
    rounds = 1 if args.quick else args.rounds
    # This process and so every child (moto, the proxy, fetch) on core 1; the daemon is
    # moved to core 0 once started.
    os.sched_setaffinity(0, {1})
    pub = run.make_datasets(args.bin, args.data, args.samples, published_only=True)["published"]
    os.environ.update(CREDENTIALS)
    os.environ.pop("EDITFEED_CACHE_DIR", None)
    s3_port, proxy_port = free_port(), free_port()
    procs = [subprocess.Popen([args.moto, "-H", "127.0.0.1", "-p", str(s3_port)], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)]
    try:
        wait_port(s3_port, "moto_server")
        procs.append(subprocess.Popen([sys.executable, __file__, "--proxy", str(proxy_port), str(s3_port), str(args.latency_ms)], stdout=subprocess.PIPE, text=True))
        procs[-1].stdout.readline()
        run.log(f"uploading {pub} to moto's server")
        upload(f"http://127.0.0.1:{s3_port}", pub)
        os.environ.update({"EDITFEED_S3_ENDPOINT": f"http://127.0.0.1:{proxy_port}", "EDITFEED_S3_ALLOW_HTTP": "true"})
        daemon, endpoint = run.load_bench_client().start_daemon(args.bin, {"local": pub, "s3": f"s3://{BUCKET}/{pub.name}"}, 1)
        procs.append(daemon)
        subprocess.run(["taskset", "-a", "-p", "-c", "0", str(daemon.pid)], check=True, capture_output=True)
        results: dict[str, list[float]] = {}
        with tempfile.TemporaryDirectory() as tmp:
            cur = run.curriculum(Path(tmp), args.kind)
            for r in range(rounds):
                for where in ("local", "s3"):
                    before = cpu_s(daemon.pid)
                    f = run.fetch(args.bin, endpoint, where, args.kind, args.size, args.batches, cur, "--seed", str(r))
                    samples = 8 * (args.batches + 1)
                    results.setdefault(f"{where}/samples_per_s", []).append(f["samples_per_s"])
                    results.setdefault(f"{where}/cpu_ms_per_sample", []).append(1000 * (cpu_s(daemon.pid) - before) / samples)
                run.log(f"round {r + 1}: local {results['local/samples_per_s'][-1]:.1f}, s3 {results['s3/samples_per_s'][-1]:.1f} samples/s")
    finally:
        for proc in reversed(procs):
            proc.terminate()
            proc.wait()
    m = {k: statistics.median(v) for k, v in results.items()}
    ratio = statistics.median([s / loc for s, loc in zip(results["s3/samples_per_s"], results["local/samples_per_s"])])
    print(f"\n{args.kind} at {args.size} px, global batch 8, daemon on core 0 (1 worker), moto + {args.latency_ms:.0f} ms proxy + consumer on core 1, {rounds} rounds, medians\n")
    print("| source | samples/s | daemon CPU ms per sample |")
    print("| --- | --- | --- |")
    print(f"| local disk | {m['local/samples_per_s']:.1f} | {m['local/cpu_ms_per_sample']:.1f} |")
    print(f"| S3 (moto, +{args.latency_ms:.0f} ms per request) | {m['s3/samples_per_s']:.1f} | {m['s3/cpu_ms_per_sample']:.1f} |")
    print(f"\nS3 / local: **{ratio:.2f}x**")
    if args.json:
        args.json.write_text(json.dumps({"results": results, "ratio": ratio, "args": {k: str(v) for k, v in vars(args).items()}}, indent=1))


if __name__ == "__main__":
    main()
