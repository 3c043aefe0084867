#!/usr/bin/env bash
# One 1 GiB blob, registry -> registry (two distribution 2.8 instances on
# loopback): wall time and peak RSS of ocimirror. Memory must not grow with
# blob size, so the same is measured for a 64 MiB blob beside it.
set -euo pipefail
cd "$(dirname "$0")/.."
. bench/lib.sh
setup_bench

src=$(start_distribution src)
dst=$(start_distribution dst)
for size in 67108864 1073741824; do
  name="big-$size"
  measure "generate-$size" "$BIN" generate "$src/$name" --platforms 1 --layers 1 \
    --layer-size "$size" --base-layer-size 1024 --referrer-depth 0
  measure "copy-$size" "$BIN" copy "$src/$name/app-0:v1.0.0" "$dst/$name/app-0:v1.0.0"
  # The copy must really be there: the target serves the manifest.
  curl -fsS -o /dev/null -H 'Accept: application/vnd.oci.image.index.v1+json' \
    "http://$dst/v2/$name/app-0/manifests/v1.0.0"
done
echo
echo "label wall_seconds peak_rss_KiB"
cat "$RESULTS"
