#!/usr/bin/env bash
# Measures `journeyflow replay` on the standard workload (shared/BENCHMARK.md: S1-S6, then
# S1-S6 with journeys J1-J2) against baselines measured in the same run: the same replay with
# no segments (read, decode, dedup, and nothing else), and S1-S6 alone. Prints events/s, wall
# time and peak RSS, median of N runs.
#
#   scripts/bench-replay.sh [EVENTS] [USERS] [RUNS]     (default 1000000 100000 3)
set -euo pipefail
cd "$(dirname "$0")/.."
events=${1:-1000000}
users=${2:-100000}
runs=${3:-3}
work=${BENCH_DIR:-target/bench}
mkdir -p "$work"
cargo build --release -q -p journeyflow
bin=target/release/journeyflow
data="$work/events-$events-$users.ndjson"
[ -f "$data" ] || "$bin" generate --users "$users" --events "$events" --seed 1 --out "$data"
echo '[]' > "$work/no-segments.json"

measure() { # label segments workers [extra replay arguments]
  local label=$1 segs=$2 workers=$3 walls=() rss=()
  shift 3
  for _ in $(seq "$runs"); do
    local out
    /usr/bin/time -o "$work/time" -f "%e %M" "$bin" replay --events "$data" --segments "$segs" --out "$work/out" -w "$workers" "$@" 2>/dev/null
    out=$(tail -1 "$work/time")
    walls+=("${out% *}")
    rss+=("${out#* }")
  done
  local wall mem
  wall=$(printf '%s\n' "${walls[@]}" | sort -n | sed -n "$(( (runs + 1) / 2 ))p")
  mem=$(printf '%s\n' "${rss[@]}" | sort -n | tail -1)
  awk -v l="$label" -v w="$workers" -v t="$wall" -v m="$mem" -v n="$events" \
    'BEGIN { printf "%-22s workers %d  wall %6.2f s  %9.0f events/s  peak RSS %5.0f MB\n", l, w, t, n / t, m / 1024 }'
  echo "$wall" > "$work/last-wall"
}

echo "replay of $events events / $users users, median of $runs runs, $(nproc) cores, $(date -u +%F)"
for w in 1 2; do
  measure "baseline (no segments)" "$work/no-segments.json" "$w"; base=$(cat "$work/last-wall")
  measure "S1-S6" datasets/sample/segments.json "$w"; full=$(cat "$work/last-wall")
  measure "S1-S6 + J1-J2" datasets/sample/segments.json "$w" --journeys datasets/sample/journeys.json
  both=$(cat "$work/last-wall")
  awk -v b="$base" -v f="$full" -v j="$both" \
    'BEGIN { printf "  wall time ratios: S1-S6 / baseline %.2f, S1-S6+J1-J2 / S1-S6 %.2f\n", f / b, j / f }'
done
