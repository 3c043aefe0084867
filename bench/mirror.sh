#!/usr/bin/env bash
# Mirror benchmark: ocimirror against skopeo and against the raw upload
# limit, registry -> registry over loopback (distribution 2.8, which has no
# referrers API, so referrers travel as sha256-<hex> fallback tags).
#
# Corpus (ocimirror generate): REPOS repositories x TAGS tags, each a
# 2-platform index; per platform LAYERS unique layers of LAYER_SIZE bytes
# plus a base layer (BASE_SIZE) shared by all repositories; referrers 3 deep
# (signature + attestation on the index, SBOM on a platform manifest, a
# signature on the SBOM, a timestamp on that signature).
#
# Steps, each timed (wall, peak RSS) with its requests per registry and the
# bytes read from the source counted from the registries' access logs:
#   ocimirror cold / no-op; incremental: one new tag in one repository, then
#   one new signature on an image already mirrored,
#   ocimirror cold / no-op to the project's test registry, which has the
#   referrers API (fallback tags -> referrers API conversion),
#   ocimirror images only (referrers off) cold / no-op,
#   skopeo sync cold / no-op (skopeo copies no referrers: compare it with
#   the images-only runs),
#   raw: the corpus's blobs and manifests uploaded as blobs from local files
#   (bench/raw_upload.py: PAR at a time, POST + PUT each, keep-alive),
#   nothing read over HTTP: the transfer limit.
# Prints a Markdown table.
#
# Usage: bench/mirror.sh    (env: REPOS TAGS LAYERS LAYER_SIZE BASE_SIZE PAR)
set -euo pipefail
cd "$(dirname "$0")/.."
. bench/lib.sh

corpus_defaults
PAR=${PAR:-8}
command -v skopeo >/dev/null || { echo "skopeo is needed" >&2; exit 1; }
setup_bench

src=$(start_distribution src accesslog)
dst=$(start_distribution dst accesslog)
img=$(start_distribution img accesslog)
api=$(start_test_registry api)
sko=$(start_distribution sko accesslog)
raw=$(start_distribution raw accesslog)

corpus_generator "$src"

# config NAME TARGET REFERRERS [TARGET_MODE]: mirror_config from the source
# to TARGET, whose referrers mode is TARGET_MODE (default tags: distribution
# has no API); REFERRERS true or false.
config() {
  mirror_config "$1" "$src" "$2" "${4:-tags}" tags "$3"
}

# step LABEL CMD...: measure CMD, then record the requests each registry
# saw during it.
declare -A REQ_SRC REQ_DST READ_SRC
step() {
  local label=$1 target=$2; shift 2
  local ms mt
  ms=$(log_mark src); mt=$(log_mark "$target")
  measure "$label" "$@" >/dev/null
  REQ_SRC[$label]=$(requests_since src "$ms")
  REQ_DST[$label]=$(requests_since "$target" "$mt")
  READ_SRC[$label]=$(bytes_since src "$ms" | awk '{ printf "%.2f", $1 / 1048576 }')
}

measure generate "${GEN[@]}" --repos "$REPOS" --tags "$TAGS" >/dev/null
full=$(config full "$dst" true)
images=$(config images "$img" false)
to_api=$(config api "$api" true auto)

step ocimirror-cold dst "$BIN" once -c "$full"
step ocimirror-noop dst "$BIN" once -c "$full"
step ocimirror-api-cold api "$BIN" once -c "$to_api"
step ocimirror-api-noop api "$BIN" once -c "$to_api"
step ocimirror-images-cold img "$BIN" once -c "$images"
step ocimirror-images-noop img "$BIN" once -c "$images"

# skopeo: the image tags (v*) of every repository, all platforms, digests
# kept; fallback tags left out (they are ocimirror's referrers).
{
  echo "$src:"
  echo "  tls-verify: false"
  echo "  images-by-tag-regex:"
  for r in $(seq 0 $((REPOS - 1))); do echo "    bench/app-$r: '^v'"; done
} >"$WORK/skopeo.yaml"
# Unscoped: bench/app-<n> lands at s/app-<n>.
SK=(skopeo sync --src yaml --dest docker --dest-tls-verify=false --all
  --preserve-digests "$WORK/skopeo.yaml" "$sko/s")
step skopeo-cold sko "${SK[@]}"
step skopeo-noop sko "${SK[@]}"

# Raw limit: everything in the source store (distribution keeps manifests
# as blobs too, so this is the corpus's blobs and manifests: what the cold
# mirror moves), uploaded from local files with POST + PUT, PAR at a time.
find "$WORK/src/data/docker/registry/v2/blobs/sha256" -name data >"$WORK/blobs.txt"
blob_bytes=$(xargs -a "$WORK/blobs.txt" stat -c %s | awk '{ s += $1 } END { print s }')
step raw-upload raw python3 bench/raw_upload.py "$raw" raw "$PAR" "$WORK/blobs.txt"
stored=$(find "$WORK/raw/data/docker/registry/v2/blobs/sha256" -name data | wc -l)
[ "$stored" -eq "$(wc -l <"$WORK/blobs.txt")" ] ||
  { echo "raw upload stored $stored of $(wc -l <"$WORK/blobs.txt") blobs" >&2; exit 1; }

# One new tag (v1.0.$TAGS) in the first repository, with its referrers.
"${GEN[@]}" --repos 1 --tags $((TAGS + 1)) >/dev/null
step ocimirror-new-tag dst "$BIN" once -c "$full"
# One new signature on an image already mirrored.
signed=$("$BIN" generate "$src/bench/app-1:v1.0.0" --add-signature --seed 7 \
  --referrer-form fallback-tag)
signature=${signed##* }
signature=${signature%.}
step ocimirror-new-signature dst "$BIN" once -c "$full"

# The copies really happened: the new tag and the new signature are on the
# target; the API target lists the referrers of one image through its API
# and has no fallback tag; skopeo's copy of one image is there.
accept='Accept: application/vnd.oci.image.index.v1+json'
curl -fsS -o /dev/null -H "$accept" "http://$dst/v2/bench/app-0/manifests/v1.0.$TAGS"
curl -fsS -o /dev/null -H 'Accept: application/vnd.oci.image.manifest.v1+json' \
  "http://$dst/v2/bench/app-1/manifests/$signature"
subject=$(curl -fsS -H "$accept" "http://$src/v2/bench/app-1/manifests/v1.0.0" | sha256sum | cut -d' ' -f1)
curl -fsS "http://$dst/v2/bench/app-1/manifests/sha256-$subject" -H "$accept" | grep -q "$signature" ||
  { echo "the new signature is not in the target's fallback index" >&2; exit 1; }
curl -fsS "http://$api/v2/bench/app-1/referrers/sha256:$subject" | grep -q '"manifests":\[{' ||
  { echo "the API target lists no referrers" >&2; exit 1; }
! curl -fs -o /dev/null -H "$accept" "http://$api/v2/bench/app-1/manifests/sha256-$subject" ||
  { echo "the API target got a fallback tag" >&2; exit 1; }
curl -fsS -o /dev/null -H "$accept" "http://$sko/v2/s/app-0/manifests/v1.0.0"

wall() { awk -v l="$1" '$1 == l { print $2 }' "$RESULTS"; }
rss() { awk -v l="$1" '$1 == l { printf "%.1f", $3 / 1024 }' "$RESULTS"; }
echo "Corpus: $REPOS repositories x $TAGS tags, 2 platforms, $LAYERS x $LAYER_SIZE B layers" \
  "per platform + $BASE_SIZE B shared base, referrers 3 deep (fallback tags);" \
  "$(wc -l <"$WORK/blobs.txt") blobs and manifests, $blob_bytes bytes in the source store."
echo
echo "| step | wall s | peak RSS MiB | MiB read from source | source requests | target requests |"
echo "|---|---:|---:|---:|---|---|"
echo "| generate (source) | $(wall generate) | $(rss generate) | | | |"
for l in ocimirror-cold ocimirror-noop ocimirror-new-tag ocimirror-new-signature \
  ocimirror-api-cold ocimirror-api-noop ocimirror-images-cold ocimirror-images-noop \
  skopeo-cold skopeo-noop raw-upload; do
  echo "| $l | $(wall "$l") | $(rss "$l") | ${READ_SRC[$l]} | ${REQ_SRC[$l]} | ${REQ_DST[$l]} |"
done
echo
cold=$(wall ocimirror-cold) rawt=$(wall raw-upload)
echo "Raw upload of the same objects ($PAR in parallel, POST + PUT): ${rawt}s;" \
  "ocimirror cold mirror (with referrers): ${cold}s: ocimirror runs at" \
  "$(awk -v a="$rawt" -v b="$cold" 'BEGIN { printf "%.0f", 100 * a / b }')% of the raw rate."
echo
echo "ocimirror's own summary of the cold run:"
sed 's/^/    /' "$WORK/ocimirror-cold.stdout"
