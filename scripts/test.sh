#!/usr/bin/env bash
# The whole test suite, on a fresh machine: checks formatting and lints, then runs every
# test (unit, property, end-to-end on real files). Needs only the Rust toolchain for now;
# anything else a test needs is installed and started from here.
set -euo pipefail
cd "$(dirname "$0")/.."

cargo fmt --all -- --check
cargo clippy --workspace --all-targets --locked -- -D warnings
# nextest ends a hung test (see .config/nextest.toml); plain cargo test runs under a timeout.
if cargo nextest --version >/dev/null 2>&1; then
  cargo nextest run --workspace --all-targets --locked
else
  timeout 1800 cargo test --workspace --all-targets --locked
fi
