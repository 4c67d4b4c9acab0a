#!/usr/bin/env bash
# The whole test suite, on a fresh machine: checks formatting and lints, then runs every
# test (unit, property, end-to-end on real files). Needs only the Rust toolchain for now;
# anything else a test needs is installed and started from here.
set -euo pipefail
cd "$(dirname "$0")/.."

cargo fmt --all -- --check
cargo clippy --workspace --all-targets --locked -- -D warnings
cargo test --workspace --all-targets --locked
