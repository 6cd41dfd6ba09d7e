#!/usr/bin/env bash
# Installs s3s-fs (an S3-compatible server over a folder, written in Rust, from
# crates.io) into target/tools/s3s for `cargo bench --bench store`: unlike moto it
# answers a range request by reading only that range, so the benchmark measures the
# client rather than the server. Takes a few minutes once.
set -euo pipefail
cd "$(dirname "$0")/.."
bin=target/tools/s3s/bin/s3s-fs
if [ -x "$bin" ]; then
  echo "$bin is installed"
  exit 0
fi
# 0.14.1 is the newest release that builds with Rust 1.95 (0.17 needs 1.96).
cargo install s3s-fs --version 0.14.1 --features binary --locked --root target/tools/s3s
