#!/usr/bin/env bash
# Concurrency sweep behind ocimirror's defaults: the same cold mirror
# (distribution 2.8 source with fallback-tag referrers) with different
#   C = jobs.concurrency        (images at once, and transfers per image graph)
#   B = limits.concurrent_blobs (blob transfers at once, over all jobs)
#   M = registries.max_in_flight (requests at once per registry)
# to a fresh target each time: distribution on loopback (no latency), and
# the project's test registry with LATENCY_MS added to every request (a
# remote registry; it has the referrers API, so referrers are converted).
# Prints a Markdown table of wall seconds.
#
# Usage: bench/tune.sh   (env: REPOS TAGS LAYERS LAYER_SIZE LATENCY_MS COMBOS)
set -euo pipefail
cd "$(dirname "$0")/.."
. bench/lib.sh

REPOS=${REPOS:-10}
TAGS=${TAGS:-3}
LAYERS=${LAYERS:-2}
LAYER_SIZE=${LAYER_SIZE:-524288}
LATENCY_MS=${LATENCY_MS:-25}
# C/B/M triples; 2/4/8 were the defaults before this sweep.
COMBOS=${COMBOS:-"1/4/8 2/4/8 4/4/8 4/8/16 8/8/16 8/16/16 8/16/32 16/32/32"}
setup_bench

src=$(start_distribution src)
"$BIN" generate "$src/bench" --seed 42 --repos "$REPOS" --tags "$TAGS" --platforms 2 \
  --layers "$LAYERS" --layer-size "$LAYER_SIZE" --base-layer-size "$LAYER_SIZE" \
  --referrer-depth 3 --referrer-form fallback-tag >/dev/null

# run LABEL TARGET TARGET_MODE C B M: one cold mirror.
run() {
  local label=$1 target=$2 mode=$3 c=$4 b=$5 m=$6 file="$WORK/$1.toml"
  cat >"$file" <<TOML
version = 1
[state]
database = "$WORK/$label.db"
[log]
level = "warn"
[limits]
concurrent_blobs = $b
[registries."$src"]
referrers = "tags"
max_in_flight = $m
[registries."$target"]
referrers = "$mode"
max_in_flight = $m
[[jobs]]
name = "tune"
source = { registry = "$src", namespace = "bench/" }
target = { registry = "$target" }
concurrency = $c
TOML
  measure "$label" "$BIN" once -c "$file" >/dev/null
}

wall() { awk -v l="$1" '$1 == l { print $2 }' "$RESULTS"; }
echo "Corpus: $REPOS repositories x $TAGS tags, 2 platforms, $LAYERS x $LAYER_SIZE B layers" \
  "per platform + a $LAYER_SIZE B shared base, referrers 3 deep (fallback tags)."
echo
echo "| C / B / M | distribution, loopback: wall s | test registry, +${LATENCY_MS} ms per request: wall s |"
echo "|---|---:|---:|"
for combo in $COMBOS; do
  IFS=/ read -r c b m <<<"$combo"
  key="c$c-b$b-m$m"
  run "local-$key" "$(start_distribution "dst-$key")" tags "$c" "$b" "$m"
  run "remote-$key" "$(start_test_registry "api-$key" --latency-ms "$LATENCY_MS")" auto "$c" "$b" "$m"
  echo "| $c / $b / $m | $(wall "local-$key") | $(wall "remote-$key") |"
done
