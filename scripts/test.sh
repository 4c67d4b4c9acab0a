#!/usr/bin/env bash
# The whole test suite, on a fresh machine: checks formatting and lints, then runs every
# test (unit, property, end-to-end on real files and through real sockets). Needs the Rust
# toolchain; anything else a test needs is installed and started from here.
set -euo pipefail
cd "$(dirname "$0")/.."

apt_install() {
  if [ "$(id -u)" = 0 ]; then SUDO=; else SUDO=sudo; fi
  $SUDO apt-get update -q
  DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -q "$@"
}

# `kill` (procps), with which the end-to-end tests stop the server with SIGTERM.
type -P kill >/dev/null || apt_install procps

# Python with Segment's own client library, for the end-to-end ingest test (cached in target/).
venv=target/pyenv
if ! "$venv/bin/python" -c 'import segment.analytics' >/dev/null 2>&1; then
  if ! python3 -m venv "$venv" >/dev/null 2>&1; then
    apt_install python3 python3-venv
    python3 -m venv "$venv"
  fi
  "$venv/bin/pip" install -q --disable-pip-version-check segment-analytics-python==2.3.3
fi
export JOURNEYFLOW_PYTHON="$PWD/$venv/bin/python"

cargo fmt --all -- --check
cargo clippy --workspace --all-targets --locked -- -D warnings
# nextest ends a hung test (see .config/nextest.toml); plain cargo test runs under a timeout.
if cargo nextest --version >/dev/null 2>&1; then
  cargo nextest run --workspace --all-targets --locked
else
  timeout 1800 cargo test --workspace --all-targets --locked
fi
