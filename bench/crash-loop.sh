#!/usr/bin/env bash
# The long reliability loop (not in CI): kill -9 a real `ocimirror once` at
# random moments N times, checking after every kill that no tag on the
# target points at incomplete content, then one clean run that must
# converge: every image and referrer of the source is on the target and a
# further run copies nothing. Bytes re-moved must stay bounded: all runs
# together read at most the corpus plus, per kill, the transfers that were
# in flight (concurrent_blobs x the largest blob).
#   N=20 SEED=7 bench/crash-loop.sh
set -euo pipefail
cd "$(dirname "$0")/.."
. bench/lib.sh
setup_bench
N=${N:-20}
SEED=${SEED:-7}

src=$(start_distribution src accesslog)
dst=$(start_distribution dst accesslog)
"$BIN" generate "$src/crash" --seed "$SEED" --repos 3 --tags 4 --platforms 2 --layers 2 \
  --layer-size 4194304 --base-layer-size 1048576 --referrer-depth 3 \
  --referrer-form fallback-tag >/dev/null

src_mark=$(log_mark src)
corpus_bytes=$(find "$WORK/src/data/docker/registry/v2/blobs" -name data -exec stat -c %s {} + |
  awk '{ s += $1 } END { print s }')
largest=$(find "$WORK/src/data/docker/registry/v2/blobs" -name data -exec stat -c %s {} + |
  sort -n | tail -1)
CONCURRENT_BLOBS=4

cfg="$WORK/crash.toml"
cat >"$cfg" <<TOML
version = 1
[state]
database = "$WORK/state.db"
[limits]
concurrent_blobs = $CONCURRENT_BLOBS
[[jobs]]
name = "crash"
source = { registry = "$src", namespace = "crash/" }
target = { registry = "$dst", prefix = "mirror" }
concurrency = 2
TOML

# Every tag on the target resolves to a manifest whose children (index
# entries, config and layers) all exist.
check_complete() {
  python3 - "$dst" <<'PY'
import json, sys, urllib.request
host = sys.argv[1]
ACCEPT = ",".join([
    "application/vnd.oci.image.index.v1+json", "application/vnd.oci.image.manifest.v1+json",
    "application/vnd.docker.distribution.manifest.list.v2+json",
    "application/vnd.docker.distribution.manifest.v2+json"])
def get(path, method="GET"):
    req = urllib.request.Request(f"http://{host}{path}", method=method, headers={"Accept": ACCEPT})
    with urllib.request.urlopen(req) as r:
        return r.read()
try:
    repos = json.loads(get("/v2/_catalog"))["repositories"]
except Exception:
    repos = []
bad = 0
for repo in repos:
    try:
        tags = json.loads(get(f"/v2/{repo}/tags/list")).get("tags") or []
    except Exception:
        continue
    for tag in tags:
        todo = [tag]
        while todo:
            ref = todo.pop()
            try:
                m = json.loads(get(f"/v2/{repo}/manifests/{ref}"))
            except Exception as e:
                print(f"INCOMPLETE {repo}:{tag}: manifest {ref}: {e}"); bad += 1; continue
            todo += [d["digest"] for d in m.get("manifests", [])]
            for d in ([m["config"]] if "config" in m else []) + m.get("layers", []):
                try:
                    get(f"/v2/{repo}/blobs/{d['digest']}", "HEAD")
                except Exception as e:
                    print(f"INCOMPLETE {repo}:{tag}: blob {d['digest']}: {e}"); bad += 1
sys.exit(1 if bad else 0)
PY
}

rng=$SEED
for i in $(seq "$N"); do
  "$BIN" once -c "$cfg" >"$WORK/run.$i.log" 2>&1 &
  pid=$!
  rng=$(( (rng * 1103515245 + 12345) % 2147483648 ))
  delay_ms=$(( 50 + rng % 2500 ))
  sleep "$(printf '0.%03d' $((delay_ms % 1000)))"; sleep $((delay_ms / 1000))
  kill -9 "$pid" 2>/dev/null || true
  wait "$pid" 2>/dev/null || true
  check_complete || { echo "kill $i (after ${delay_ms} ms) left a tag on incomplete content" >&2; exit 1; }
  echo "kill $i after ${delay_ms} ms: every tag on the target is complete"
done

mark=$(log_mark dst)
"$BIN" once -c "$cfg" >"$WORK/clean.log" 2>&1 || { cat "$WORK/clean.log" >&2; exit 1; }
echo "clean run: $(grep -E '^job crash' "$WORK/clean.log")"
echo "clean run target requests: $(requests_since dst "$mark")"
check_complete
read_bytes=$(bytes_since src "$src_mark")
bound=$((corpus_bytes + N * CONCURRENT_BLOBS * largest))
echo "read from the source over all runs: $read_bytes bytes for a $corpus_bytes-byte corpus" \
  "($((100 * (read_bytes - corpus_bytes) / corpus_bytes)) % re-moved; bound $bound)"
[ "$read_bytes" -le "$bound" ] || { echo "bytes re-moved are not bounded" >&2; exit 1; }
mark=$(log_mark dst)
"$BIN" once -c "$cfg" --full >"$WORK/again.log" 2>&1
writes=$(tail -n +"$((mark + 1))" "$WORK/dst/log" | grep -cE '"(PUT|POST|PATCH) ' || true)
echo "verifying run: $(grep -E '^job crash' "$WORK/again.log"); target writes: $writes"
[ "$writes" -eq 0 ] || { echo "a converged target was written to again" >&2; exit 1; }
echo "converged after $N kills"
