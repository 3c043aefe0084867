#!/usr/bin/env bash
# Push-to-mirrored lag through webhooks: N pushes (default 50) of a ~10 MiB
# single-layer image to a distribution 2.8 that notifies `ocimirror serve`
# (notifications.endpoints with the bearer header), mirrored to a second
# distribution. No scheduled run fires (cron on 1 January). For each push the
# lag is the time from `generate` returning (the tag is on the source) to the
# target answering the manifest HEAD with 200, polled every 10 ms. Prints
# every lag and p50 / p99 / max.
#
#   bench/webhook_lag.sh [PUSHES]
set -euo pipefail
cd "$(dirname "$0")/.."
. bench/lib.sh
setup_bench
pushes=${1:-50}
layer=$((10 * 1024 * 1024))

port=$(free_port)
token=bench-hook-token
dst=$(start_distribution dst)

# The source notifies the daemon: distribution's notifications block as the
# README documents it (blob events left out).
srcport=$(free_port)
src="127.0.0.1:$srcport"
mkdir -p "$WORK/src/data"
cat >"$WORK/src/config.yml" <<YML
version: 0.1
log: { level: error, accesslog: { disabled: true } }
storage:
  filesystem: { rootdirectory: $WORK/src/data }
http: { addr: $src }
notifications:
  endpoints:
    - name: ocimirror
      url: http://127.0.0.1:$port/webhooks/distribution/src
      headers:
        Authorization: [Bearer $token]
      timeout: 5s
      threshold: 3
      backoff: 100ms
      ignoredmediatypes:
        - application/octet-stream
YML
"${OCIMIRROR_DISTRIBUTION_BIN:-/usr/bin/docker-registry}" serve "$WORK/src/config.yml" >"$WORK/src/log" 2>&1 &
echo $! >>"$WORK/pids"
for _ in $(seq 100); do curl -fs "http://$src/v2/" >/dev/null 2>&1 && break; sleep 0.1; done

cat >"$WORK/ocimirror.toml" <<TOML
version = 1
[state]
database = "$WORK/state.db"
[server]
listen = "127.0.0.1:$port"
[log]
level = "warn"
[events.sources.src]
format = "distribution"
registry = "$src"
token = "$token"
[[jobs]]
name = "lag"
source = { registry = "$src", namespace = "bench/" }
target = { registry = "$dst" }
schedule = { cron = "0 0 1 1 *" }
TOML
"$BIN" serve -c "$WORK/ocimirror.toml" >"$WORK/serve.log" 2>&1 &
echo $! >>"$WORK/pids"
for _ in $(seq 100); do curl -fs "http://127.0.0.1:$port/readyz" >/dev/null 2>&1 && break; sleep 0.1; done

now() { date +%s.%N; }
: >"$WORK/lags"
for i in $(seq "$pushes"); do
  "$BIN" generate "$src/bench/r$i" --seed "$i" --platforms 1 --layers 1 \
    --layer-size "$layer" --base-layer-size 1024 --referrer-depth 0 >/dev/null
  pushed=$(now)
  url="http://$dst/v2/bench/r$i/app-0/manifests/v1.0.0"
  for _ in $(seq 3000); do
    curl -fs -o /dev/null -I -H 'Accept: application/vnd.oci.image.index.v1+json, application/vnd.oci.image.manifest.v1+json' "$url" && break
    sleep 0.01
  done
  curl -fs -o /dev/null -I -H 'Accept: application/vnd.oci.image.index.v1+json, application/vnd.oci.image.manifest.v1+json' "$url" \
    || { echo "push $i never reached the target; daemon log:" >&2; cat "$WORK/serve.log" >&2; exit 1; }
  lag=$(echo "$(now) - $pushed" | bc)
  echo "$lag" >>"$WORK/lags"
  printf 'push %3d: %.3f s\n' "$i" "$lag"
done

python3 - "$WORK/lags" <<'PY'
import sys
lags = sorted(float(l) for l in open(sys.argv[1]) if l.strip())
def pct(p):
    # nearest-rank percentile
    k = max(0, min(len(lags) - 1, int(-(-p * len(lags) // 100)) - 1))
    return lags[k]
print(f"pushes {len(lags)}  p50 {pct(50):.3f} s  p99 {pct(99):.3f} s  max {lags[-1]:.3f} s  min {lags[0]:.3f} s")
PY
