#!/usr/bin/env bash
# Issue 12 scale benchmarks: many tags in one repository, and a catalog of
# many repositories. Source and target are Debian's docker-registry
# (distribution 2.8, access logs on). Images are tiny (one platform, one
# 1 KiB layer, no referrers): the cost measured is per image and per
# repository, not per byte.
#
#  tags-N:  one repository with N tags (TAG_COUNTS, default "2000 10000"),
#           cold and no-op: linear in N, peak RSS (target < 256 MiB).
#  repos-R: a catalog of R repositories x 1 tag (REPO_COUNT, default 1000),
#           cold and no-op.
#
# Prints one Markdown table: wall s, CPU s (user + sys) of ocimirror and of
# each registry during the step, peak RSS MiB, and the requests each
# registry saw by kind.
# Usage: bench/scale.sh (env: TAG_COUNTS REPO_COUNT; OCIMIRROR_BIN)
set -euo pipefail
cd "$(dirname "$0")/.."
. bench/lib.sh
TAG_COUNTS=${TAG_COUNTS:-2000 10000}
REPO_COUNT=${REPO_COUNT:-1000}
setup_bench

declare -A REQ_SRC REQ_DST CPU_SRC CPU_DST
step() {
  local label=$1 from=$2 to=$3; shift 3
  local ms mt cs ct
  ms=$(log_mark "$from"); mt=$(log_mark "$to")
  cs=$(cpu_ticks "$from"); ct=$(cpu_ticks "$to")
  measure "$label" "$@" >/dev/null
  CPU_SRC[$label]=$(cpu_since "$from" "$cs")
  CPU_DST[$label]=$(cpu_since "$to" "$ct")
  REQ_SRC[$label]=$(requests_since "$from" "$ms")
  REQ_DST[$label]=$(requests_since "$to" "$mt")
}
tiny=(--platforms 1 --layers 1 --layer-size 1024 --base-layer-size 0 --referrer-depth 0)
labels=()
for n in $TAG_COUNTS; do
  src=$(start_distribution "src$n" accesslog)
  dst=$(start_distribution "dst$n" accesslog)
  "$BIN" generate "$src/bench" --seed 7 --repos 1 --tags "$n" "${tiny[@]}" >/dev/null
  cfg=$(mirror_config "tags$n" "$src" "$dst" tags tags false)
  step "tags-$n-cold" "src$n" "dst$n" "$BIN" once -c "$cfg"
  step "tags-$n-noop" "src$n" "dst$n" "$BIN" once -c "$cfg"
  labels+=("tags-$n-cold" "tags-$n-noop")
done
r=$REPO_COUNT
src=$(start_distribution srcrepos accesslog)
dst=$(start_distribution dstrepos accesslog)
"$BIN" generate "$src/bench" --seed 9 --repos "$r" --tags 1 "${tiny[@]}" >/dev/null
cfg=$(mirror_config repos "$src" "$dst" tags tags false)
step "repos-$r-cold" srcrepos dstrepos "$BIN" once -c "$cfg"
step "repos-$r-noop" srcrepos dstrepos "$BIN" once -c "$cfg"
labels+=("repos-$r-cold" "repos-$r-noop")

col() { awk -v l="$1" -v c="$2" '$1 == l { print $c }' "$RESULTS"; }
echo "| step | wall s | CPU s | source / target registry CPU s | peak RSS MiB | source requests | target requests |"
echo "|---|---:|---:|---:|---:|---|---|"
for l in "${labels[@]}"; do
  echo "| $l | $(col "$l" 2) | $(col "$l" 4) | ${CPU_SRC[$l]} / ${CPU_DST[$l]} |" \
    "$(awk -v k="$(col "$l" 3)" 'BEGIN { printf "%.1f", k / 1024 }') | ${REQ_SRC[$l]} | ${REQ_DST[$l]} |"
done
echo
echo "Load average at the end: $(cut -d' ' -f1-3 /proc/loadavg)"
