#!/usr/bin/env bash
# Runs every test of the project: formatting, lints, the Rust test suite and the Python
# tests (in a virtual environment this script makes). Works on a fresh clone.
set -euo pipefail
cd "$(dirname "$0")/.."

. scripts/tools.sh

# The layering of src/ (no module imports a later stage; files of at most 500 lines),
# after a self-test that shows the check fails on an upward import.
python3 scripts/check-layers.py --self-test
python3 scripts/check-layers.py src

# zstd: the interoperability tests pipe shards through zstd -dc.
# openssl: tests/security.rs makes its test CA and server certificate with it.
# cmake, make, nasm: the `turbojpeg` feature builds libjpeg-turbo from source.
ensure_tools zstd openssl cmake make nasm

# promtool (from Debian's prometheus package, extracted rather than installed so no
# service starts) checks the /metrics output in tests/ops.rs.
if [ -z "${PROMTOOL:-}" ]; then
  if need promtool; then
    PROMTOOL=$(command -v promtool)
  elif need apt-get; then
    tools="$PWD/target/tools"
    if [ ! -x "$tools/usr/bin/promtool" ]; then
      mkdir -p "$tools"
      (cd "$tools" && { apt-get download prometheus >/dev/null 2>&1 ||
        { apt-get update -qq >/dev/null && apt-get download prometheus >/dev/null; }; } &&
        dpkg -x prometheus_*.deb . && rm -f prometheus_*.deb)
    fi
    PROMTOOL="$tools/usr/bin/promtool"
  fi
fi
export PROMTOOL

# The Python side first: the trainer client package (its stubs are generated from
# proto/ as it is built) and the test tools.
venv=".venv"
if [ ! -x "$venv/bin/python" ]; then
  python3 -m venv "$venv"
fi
pip() { "$venv/bin/pip" install --quiet --disable-pip-version-check "$@"; }
pip -r tests/python/requirements.txt
pip ./clients/python
# A real S3-compatible server for tests/s3.rs (moto's server, on loopback).
pip "moto[server]"

cargo fmt --all -- --check
# The build with the `turbojpeg` feature (libjpeg-turbo decodes JPEGs, DCT scaling on by
# default): lints and the whole suite.
cargo clippy --all-targets --locked --features turbojpeg -- -D warnings
cargo test --locked --features turbojpeg
# The default build, last, so that target/debug/editfeed (which the Python tests run)
# is the default binary.
cargo clippy --all-targets --locked -- -D warnings
cargo build --locked --bins
cargo test --locked

# deploy/: manifests against the Kubernetes schemas, the Helm chart linted and
# rendered, the Grafana dashboard against the metric names in src/metrics.rs.
bash scripts/validate-deploy.sh "$venv"

EDITFEED_BIN="$PWD/target/debug/editfeed" "$venv/bin/python" -m pytest -q tests/python
