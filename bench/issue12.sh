#!/usr/bin/env bash
# Issue 12 benchmark: ocimirror's cold and no-op mirror against the floor,
# and the same with a round trip added to every source request.
#
# 1. Loopback: source distribution 2.8 (referrers as sha256-<hex> fallback
#    tags), target the project's test registry (referrers API). Corpus:
#    REPOS x TAGS, 2 platforms, one LAYER_SIZE layer per platform, a shared
#    base layer, 3 referrers per image (signature and attestation on the
#    index, SBOM on a platform manifest). Steps: ocimirror cold, no-op, and
#    the floor (bench/floor_upload.py: the same objects from the source's
#    files, each blob once and mounted elsewhere, PAR at a time, into a
#    fresh target).
# 2. Latency (LAT_REPOS x TAGS, small layers): the source is a test
#    registry adding LATENCIES ms to every request; cold and no-op.
#
# Each step: wall s, CPU s (user + sys of the process), peak RSS, and the
# requests each registry saw by kind. Prints Markdown tables.
#
# Usage: bench/issue12.sh (env: REPOS TAGS LAYER_SIZE BASE_SIZE PAR
#        LAT_REPOS LATENCIES SOURCE_IN_FLIGHT; OCIMIRROR_BIN to use a given
#        binary; PERF_OUT=file to record the cold step with `perf record -g`
#        into file: its times then include perf's overhead)
set -euo pipefail
cd "$(dirname "$0")/.."
. bench/lib.sh

REPOS=${REPOS:-20}
TAGS=${TAGS:-3}
LAYER_SIZE=${LAYER_SIZE:-4194304}
BASE_SIZE=${BASE_SIZE:-1048576}
# ocimirror's default per-registry in-flight limit (registries.max_in_flight).
PAR=${PAR:-32}
LAT_REPOS=${LAT_REPOS:-12}
LATENCIES=${LATENCIES:-0 25 100}
setup_bench

src=$(start_distribution src accesslog)
measure generate "$BIN" generate "$src/bench" --seed 42 --repos "$REPOS" --tags "$TAGS" \
  --platforms 2 --layers 1 --layer-size "$LAYER_SIZE" --base-layer-size "$BASE_SIZE" \
  --referrer-depth 1 --referrer-form fallback-tag >/dev/null

declare -A REQ_SRC REQ_DST CPU_SRC CPU_DST
# step LABEL SOURCE TARGET CMD...: measure CMD, the requests each side saw
# and the CPU each registry used meanwhile.
step() {
  local label=$1 from=$2 to=$3; shift 3
  local ms mt cs ct
  ms=$(log_mark "$from"); mt=$(log_mark "$to")
  cs=$(cpu_ticks "$from"); ct=$(cpu_ticks "$to")
  measure "$label" "$@" >/dev/null
  REQ_SRC[$label]=$(requests_since "$from" "$ms")
  REQ_DST[$label]=$(requests_since "$to" "$mt")
  CPU_SRC[$label]=$(cpu_since "$from" "$cs")
  CPU_DST[$label]=$(cpu_since "$to" "$ct")
}

api=$(start_test_registry api)
cfg=$(mirror_config cold "$src" "$api" auto)
profile=()
[ -n "${PERF_OUT:-}" ] && profile=(perf record -F 999 -g -o "$PERF_OUT" --)
step cold src api "${profile[@]}" "$BIN" once -c "$cfg"
step noop src api "$BIN" once -c "$cfg"
floor=$(start_test_registry floor)
step floor src floor python3 bench/floor_upload.py "$floor" "$WORK/src/data" bench/ "$PAR"
# Both targets hold the same tags.
for r in 0 $((REPOS - 1)); do
  a=$(curl -fsS "http://$api/v2/bench/app-$r/tags/list")
  f=$(curl -fsS "http://$floor/v2/bench/app-$r/tags/list")
  [ "$a" = "$f" ] || { echo "tags differ: $a / $f" >&2; exit 1; }
done

for ms in $LATENCIES; do
  name=lat$ms
  slow=$(start_test_registry "src$ms" --latency-ms "$ms")
  "$BIN" generate "$slow/bench" --seed 42 --repos "$LAT_REPOS" --tags "$TAGS" --platforms 2 \
    --referrer-depth 1 --referrer-form api >/dev/null
  dst=$(start_test_registry "dst$ms")
  cfg=$(mirror_config "$name" "$slow" "$dst" auto auto)
  step "$name-cold" "src$ms" "dst$ms" "$BIN" once -c "$cfg"
  step "$name-noop" "src$ms" "dst$ms" "$BIN" once -c "$cfg"
done

col() { awk -v l="$1" -v c="$2" '$1 == l { print $c }' "$RESULTS"; }
ratio() { awk -v a="$1" -v b="$2" 'BEGIN { printf "%.2f", a / b }'; }
count() { echo "${1%% *}"; }
echo "Corpus: $REPOS repositories x $TAGS tags, 2 platforms, 1 x $LAYER_SIZE B layer per" \
  "platform + $BASE_SIZE B shared base, 3 referrers per image (fallback tags on the source)."
echo
echo "| step | wall s | CPU s | source / target registry CPU s | peak RSS MiB | source requests | target requests |"
echo "|---|---:|---:|---:|---:|---|---|"
for l in cold noop floor; do
  echo "| $l | $(col "$l" 2) | $(col "$l" 4) | ${CPU_SRC[$l]} / ${CPU_DST[$l]} |" \
    "$(awk -v k="$(col "$l" 3)" 'BEGIN { printf "%.1f", k / 1024 }') |" \
    "${REQ_SRC[$l]} | ${REQ_DST[$l]} |"
done
echo
echo "cold / floor: wall $(ratio "$(col cold 2)" "$(col floor 2)")," \
  "CPU $(ratio "$(col cold 4)" "$(col floor 4)")," \
  "target requests $(ratio "$(count "${REQ_DST[cold]}")" "$(count "${REQ_DST[floor]}")")"
echo
echo "Latency ($LAT_REPOS repositories x $TAGS tags, source delayed per request):"
echo
echo "| source delay ms | cold wall s | no-op wall s | cold source requests | no-op source requests |"
echo "|---:|---:|---:|---|---|"
for ms in $LATENCIES; do
  echo "| $ms | $(col "lat$ms-cold" 2) | $(col "lat$ms-noop" 2) | ${REQ_SRC[lat$ms-cold]} | ${REQ_SRC[lat$ms-noop]} |"
done
