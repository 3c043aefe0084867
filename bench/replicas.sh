#!/usr/bin/env bash
# 1, 2 and 3 `ocimirror once` replicas sharing one PostgreSQL database mirror
# the same latency-bound corpus (15 repositories x 10 images from the test
# registry at 40 ms per request, concurrency 4 per replica), each on a fresh
# database and target. Prints the wall time and the writes per object.
# Needs Debian's postgresql (tests/run installs it).
set -euo pipefail
cd "$(dirname "$0")/.."
profile=(--release)
[ "${1:-}" = "--debug" ] && profile=()
cargo test "${profile[@]}" --test it replicas::bench_one_two_three_replicas \
  -- --ignored --nocapture 2>&1 | grep -E '^replicas='
