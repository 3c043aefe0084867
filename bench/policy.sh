#!/usr/bin/env bash
# Signature policy cost: the bench corpus (as bench/mirror.sh, distribution
# 2.8 on loopback) with every image index signed by an ECDSA P-256 key
# (openssl, cosign's legacy .sig tag form), mirrored with and without
# `mode = "enforce"`: cold, no-op (checkpoint), and `--full` (every image
# walked again; with the policy, verifications come from the cache).
# Prints a Markdown table.
#
# Usage: bench/policy.sh    (env: REPOS TAGS LAYERS LAYER_SIZE BASE_SIZE)
set -euo pipefail
cd "$(dirname "$0")/.."
. bench/lib.sh

corpus_defaults
command -v openssl >/dev/null || { echo "openssl is needed" >&2; exit 1; }
setup_bench

src=$(start_distribution src accesslog)
plain=$(start_distribution plain accesslog)
signed=$(start_distribution signed accesslog)

corpus_generator "$src"
"${GEN[@]}" --repos "$REPOS" --tags "$TAGS" >/dev/null

openssl genpkey -algorithm EC -pkeyopt ec_paramgen_curve:P-256 -out "$WORK/release.key" 2>/dev/null
openssl pkey -in "$WORK/release.key" -pubout -out "$WORK/release.pub"

# sign REPO TAG: a cosign simple-signing payload naming the tag's digest,
# signed with openssl, pushed as tag sha256-<hex>.sig.
accept='Accept: application/vnd.oci.image.index.v1+json'
sign() {
  local repo=$1 tag=$2 digest payload sig config layer manifest
  digest=$(curl -fsSI -H "$accept" "http://$src/v2/$repo/manifests/$tag" |
    awk -F': ' 'tolower($1) == "docker-content-digest" { print $2 }' | tr -d '\r')
  payload="$WORK/payload"
  printf '{"critical":{"identity":{"docker-reference":"%s/%s"},"image":{"docker-manifest-digest":"%s"},"type":"cosign container image signature"},"optional":null}' \
    "$src" "$repo" "$digest" >"$payload"
  sig=$(openssl dgst -sha256 -sign "$WORK/release.key" "$payload" | base64 -w0)
  printf '{"architecture":"","config":{},"os":""}' >"$WORK/config"
  config=$(push_blob "$src" "$repo" "$WORK/config")
  layer=$(push_blob "$src" "$repo" "$payload")
  manifest=$(printf '{"schemaVersion":2,"mediaType":"application/vnd.oci.image.manifest.v1+json","config":{"mediaType":"application/vnd.oci.image.config.v1+json","digest":"%s","size":%d},"layers":[{"mediaType":"application/vnd.dev.cosign.simplesigning.v1+json","digest":"%s","size":%d,"annotations":{"dev.cosignproject.cosign/signature":"%s"}}]}' \
    "$config" "$(stat -c %s "$WORK/config")" "$layer" "$(stat -c %s "$payload")" "$sig")
  curl -fsS -X PUT -H 'Content-Type: application/vnd.oci.image.manifest.v1+json' \
    --data-binary "$manifest" "http://$src/v2/$repo/manifests/${digest/:/-}.sig" >/dev/null
}
for r in $(seq 0 $((REPOS - 1))); do
  for t in $(seq 0 $((TAGS - 1))); do sign "bench/app-$r" "v1.0.$t"; done
done

without=$(mirror_config without "$src" "$plain" tags)
with=$(mirror_config with "$src" "$signed" tags)
cat >>"$with" <<TOML
[defaults.policy]
mode = "enforce"
[[defaults.policy.cosign]]
name = "release"
key = "$WORK/release.pub"
TOML

declare -A REQ_SRC
step() {
  local label=$1; shift
  local ms
  ms=$(log_mark src)
  measure "$label" "$@" >/dev/null
  REQ_SRC[$label]=$(requests_since src "$ms")
}
step cold-without "$BIN" once -c "$without"
step cold-with "$BIN" once -c "$with"
step noop-without "$BIN" once -c "$without"
step noop-with "$BIN" once -c "$with"
step full-without "$BIN" once --full -c "$without"
step full-with-cached "$BIN" once --full -c "$with"

# Every image passed the policy (once exits 1 otherwise), and is there.
curl -fsS -o /dev/null -H "$accept" "http://$signed/v2/bench/app-0/manifests/v1.0.0"
grep -q "$((REPOS * TAGS)) copied" "$WORK/cold-with.stdout" "$WORK/cold-with.stderr" ||
  { echo "the policy run did not copy every image" >&2; tail "$WORK/cold-with.stderr" >&2; exit 1; }

echo "Corpus: $REPOS repositories x $TAGS tags (as bench/mirror.sh), each index signed"
echo "(ECDSA P-256, legacy .sig tag); policy: enforce, one cosign key."
echo
echo "| step | wall s | cpu s | peak RSS MiB | source requests |"
echo "|---|---:|---:|---:|---|"
while read -r label wall rss cpu; do
  printf '| %s | %s | %s | %.1f | %s |\n' "$label" "$wall" "$cpu" "$(echo "$rss / 1024" | bc -l)" "${REQ_SRC[$label]}"
done <"$RESULTS"
