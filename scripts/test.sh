#!/usr/bin/env bash
# The whole test suite, on a fresh machine: checks formatting and lints, then runs every
# test (unit, property, end-to-end on real files, through real sockets and a real Kafka-protocol
# broker). Needs the Rust toolchain; anything else a test needs is installed and started here.
set -euo pipefail
cd "$(dirname "$0")/.."

apt_install() {
  if [ "$(id -u)" = 0 ]; then SUDO=; else SUDO=sudo; fi
  $SUDO apt-get update -q
  DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -q "$@"
}

# `kill` (procps), with which the end-to-end tests stop the server with SIGTERM; `mount` (for
# the disk-full test's tmpfs; the script runs as root in CI).
type -P kill >/dev/null || apt_install procps
type -P mount >/dev/null || apt_install mount

# Python with Segment's own client library, for the end-to-end ingest test (cached in target/).
venv=target/pyenv
if ! "$venv/bin/python" -c 'import segment.analytics' >/dev/null 2>&1; then
  if ! python3 -m venv "$venv" >/dev/null 2>&1; then
    apt_install python3 python3-venv
    python3 -m venv "$venv"
  fi
  "$venv/bin/pip" install -q --disable-pip-version-check segment-analytics-python==2.3.3
fi
# confluent-kafka (a Kafka client that is not journeyflow's), pyarrow and DuckDB (readers of
# the Parquet archive) for the Kafka and archive tests; schemathesis drives the OpenAPI document.
if ! "$venv/bin/python" -c 'import confluent_kafka, pyarrow, duckdb, schemathesis' >/dev/null 2>&1; then
  "$venv/bin/pip" install -q --disable-pip-version-check confluent-kafka==2.16.1 pyarrow==26.0.1 duckdb==2.0.0 \
    schemathesis==4.32.5
fi
# The console's browser tests: Debian's Chromium, driven by Playwright for Python (which is
# told where the browser is, and downloads none).
type -P chromium >/dev/null || apt_install --no-install-recommends chromium
if ! "$venv/bin/python" -c 'import playwright' >/dev/null 2>&1; then
  "$venv/bin/pip" install -q --disable-pip-version-check playwright==1.65.2
fi
export JOURNEYFLOW_PYTHON="$PWD/$venv/bin/python"
export JOURNEYFLOW_CHROMIUM="$(type -P chromium)"
# The console's vendored libraries are the ones pinned (scripts/vendor-console.sh fetches them).
(cd control-api/console/vendor && sha256sum --check --quiet SHA256SUMS)

# tansu, a Kafka-protocol broker, built once into a cache outside the checkout (about 12
# minutes on 2 cores), started on a free loopback port for the tests, stopped on exit.
cache="${JOURNEYFLOW_CACHE:-$HOME/.cache/journeyflow}"
tansu="$cache/tansu-0.6.0/bin/tansu"
if [ ! -x "$tansu" ]; then
  cargo install tansu --locked --version 0.6.0 --features dynostore --root "$cache/tansu-0.6.0"
fi
port=$("$venv/bin/python" -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')
mkdir -p target
"$tansu" broker --listener-url "tcp://127.0.0.1:$port" --advertised-listener-url "tcp://127.0.0.1:$port" \
  --storage-engine memory://tansu/ >target/tansu.log 2>&1 &
broker=$!
trap 'kill "$broker" 2>/dev/null || true' EXIT
for _ in $(seq 1 300); do
  grep -q '^ready' target/tansu.log && break
  kill -0 "$broker" 2>/dev/null || { cat target/tansu.log; exit 1; }
  sleep 0.1
done
grep -q '^ready' target/tansu.log || { echo "tansu did not start:"; cat target/tansu.log; exit 1; }
export JOURNEYFLOW_TEST_KAFKA="127.0.0.1:$port"

cargo fmt --all -- --check
cargo clippy --workspace --all-targets --locked -- -D warnings
# nextest ends a hung test (see .config/nextest.toml); plain cargo test runs under a timeout.
if cargo nextest --version >/dev/null 2>&1; then
  cargo nextest run --workspace --lib --bins --tests --locked
else
  timeout 1800 cargo test --workspace --lib --bins --tests --locked
fi
# The criterion micro-benchmarks must build (they are run by hand: benches/README.md).
cargo bench --workspace --no-run --locked
