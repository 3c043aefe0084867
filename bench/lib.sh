# Shared helpers for the benchmark scripts: loopback registries and timing.
# Sourced, not run.

# A free TCP port on loopback.
free_port() {
  python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1]); s.close()'
}

# start_distribution NAME [accesslog]: starts Debian's docker-registry
# (distribution 2.8) with storage under $WORK/NAME; prints host:port. Killed
# by the EXIT trap. With "accesslog", every request is logged to
# $WORK/NAME/log (combined log format; see requests_since).
start_distribution() {
  local name=$1 access=true port dir
  [ "${2:-}" = accesslog ] && access=false
  port=$(free_port)
  dir="$WORK/$name"
  mkdir -p "$dir/data"
  cat >"$dir/config.yml" <<YML
version: 0.1
log: { level: error, accesslog: { disabled: $access } }
storage:
  filesystem: { rootdirectory: $dir/data }
  delete: { enabled: true }
http: { addr: 127.0.0.1:$port }
YML
  "${OCIMIRROR_DISTRIBUTION_BIN:-/usr/bin/docker-registry}" serve "$dir/config.yml" >"$dir/log" 2>&1 &
  echo $! >>"$WORK/pids"
  echo $! >"$dir/pid"
  for _ in $(seq 100); do
    curl -fs "http://127.0.0.1:$port/v2/" >/dev/null 2>&1 && { echo "127.0.0.1:$port"; return; }
    sleep 0.1
  done
  echo "docker-registry $name did not start: $(cat "$dir/log")" >&2
  return 1
}

# start_test_registry NAME [ARGS...]: starts the project's test registry
# (examples/test-registry.rs: referrers API, optional --latency-ms), logging
# requests to $WORK/NAME/log like distribution's access log; prints
# host:port. Killed by the EXIT trap.
start_test_registry() {
  local name=$1 dir="$WORK/$1"; shift
  mkdir -p "$dir"
  : >"$dir/log"
  "$TESTREG" --access-log "$dir/log" "$@" >"$dir/host" 2>"$dir/stderr" &
  echo $! >>"$WORK/pids"
  echo $! >"$dir/pid"
  for _ in $(seq 100); do
    [ -s "$dir/host" ] && { head -1 "$dir/host"; return; }
    sleep 0.1
  done
  echo "test registry $name did not start: $(cat "$dir/stderr")" >&2
  return 1
}

# measure LABEL CMD...: runs CMD under GNU time; appends "LABEL wall_s
# peak_rss_kib cpu_s" (cpu: user + sys) to $RESULTS and echoes it.
measure() {
  local label=$1; shift
  local out="$WORK/time.$RANDOM"
  /usr/bin/time -f '%e %M %U %S' -o "$out" "$@" >"$WORK/$label.stdout" 2>"$WORK/$label.stderr" || {
    echo "$label failed:" >&2; tail -20 "$WORK/$label.stderr" >&2; return 1; }
  read -r wall rss user sys <"$out"
  echo "$label $wall $rss $(awk -v u="$user" -v s="$sys" 'BEGIN { printf "%.2f", u + s }')" |
    tee -a "$RESULTS"
}

# mirror_config NAME SOURCE TARGET TARGET_MODE [SOURCE_MODE] [REFERRERS]: a
# config with one catalog job mirroring every bench/ repository of SOURCE
# (referrers read as SOURCE_MODE, default tags) to the same path on TARGET
# (written as TARGET_MODE), referrers 3 deep (REFERRERS=false: none), state
# in $WORK/NAME.db; prints its path. SOURCE_IN_FLIGHT (env) sets the
# source's max_in_flight (default: ocimirror's, 32).
mirror_config() {
  local file="$WORK/$1.toml"
  cat >"$file" <<TOML
version = 1
[state]
database = "$WORK/$1.db"
[log]
level = "warn"
[defaults.referrers]
enabled = ${6:-true}
depth = 3
[registries."$2"]
referrers = "${5:-tags}"
${SOURCE_IN_FLIGHT:+max_in_flight = $SOURCE_IN_FLIGHT}
[registries."$3"]
referrers = "$4"
[[jobs]]
name = "bench"
source = { registry = "$2", namespace = "bench/" }
target = { registry = "$3" }
TOML
  echo "$file"
}

# corpus_defaults: the bench corpus's size, each overridable from the
# environment: REPOS repositories x TAGS tags, per platform LAYERS unique
# layers of LAYER_SIZE bytes plus a base layer of BASE_SIZE shared by all.
corpus_defaults() {
  REPOS=${REPOS:-10}
  TAGS=${TAGS:-5}
  LAYERS=${LAYERS:-2}
  LAYER_SIZE=${LAYER_SIZE:-1048576}
  BASE_SIZE=${BASE_SIZE:-1048576}
}

# corpus_generator SOURCE: sets GEN to the `ocimirror generate` command
# writing the bench corpus under SOURCE/bench/ (2-platform indexes,
# referrers 3 deep as fallback tags); add --repos and --tags.
corpus_generator() {
  GEN=("$BIN" generate "$1/bench" --seed 42 --platforms 2 --layers "$LAYERS"
    --layer-size "$LAYER_SIZE" --base-layer-size "$BASE_SIZE"
    --referrer-depth 3 --referrer-form fallback-tag)
}

# push_blob HOST REPO FILE: uploads FILE as a blob (POST + PUT) to the
# plain-HTTP registry HOST; prints its digest.
push_blob() {
  local d loc sep
  d="sha256:$(sha256sum "$3" | cut -d' ' -f1)"
  loc=$(curl -fsS -X POST -D - -o /dev/null "http://$1/v2/$2/blobs/uploads/" |
    awk -F': ' 'tolower($1) == "location" { print $2 }' | tr -d '\r')
  case $loc in http*) ;; *) loc="http://$1$loc" ;; esac
  sep='?'; [[ $loc == *\?* ]] && sep='&'
  curl -fsS -X PUT -H 'Content-Type: application/octet-stream' --data-binary @"$3" \
    "$loc${sep}digest=$d" >/dev/null
  echo "$d"
}

setup_bench() {
  WORK=$(mktemp -d)
  RESULTS="$WORK/results"
  # Servers are started in command substitutions (subshells): their pids
  # go to a file, not a variable.
  : >"$WORK/pids"
  trap 'xargs -r kill 2>/dev/null <"$WORK/pids"; rm -rf "$WORK"' EXIT
  command -v curl >/dev/null || { echo "curl is needed" >&2; exit 1; }
  [ -x /usr/bin/time ] || { echo "GNU time is needed: apt-get install time" >&2; exit 1; }
  # OCIMIRROR_BIN: use this binary instead of building a release one
  # (for trying a script out; figures come from release builds).
  if [ -n "${OCIMIRROR_BIN:-}" ]; then
    BIN=$OCIMIRROR_BIN
  else
    cargo build --release --locked --quiet
    BIN="${CARGO_TARGET_DIR:-target}/release/ocimirror"
  fi
  # OCIMIRROR_TESTREG: likewise for the test registry.
  if [ -n "${OCIMIRROR_TESTREG:-}" ]; then
    TESTREG=$OCIMIRROR_TESTREG
  else
    cargo build --release --locked --quiet --example test-registry
    TESTREG="${CARGO_TARGET_DIR:-target}/release/examples/test-registry"
  fi
}

# cpu_ticks NAME: CPU time (user + sys, clock ticks) the registry NAME
# (start_distribution or start_test_registry) has used so far.
cpu_ticks() {
  awk '{ print $14 + $15 }' "/proc/$(cat "$WORK/$1/pid")/stat"
}

# cpu_since NAME TICKS: CPU seconds NAME used since cpu_ticks said TICKS.
cpu_since() {
  awk -v a="$2" -v b="$(cpu_ticks "$1")" -v hz="$(getconf CLK_TCK)" 'BEGIN { printf "%.2f", (b - a) / hz }'
}

# log_mark NAME: the number of lines in NAME's log now (a point to count
# requests from).
log_mark() {
  wc -l <"$WORK/$1/log"
}

# requests_since NAME MARK: the requests in NAME's access log after MARK,
# as "<total> (<type> <n>, ...)", busiest type first. Types: ping, catalog,
# tags, referrers, manifest_<method>, blob_<method>, upload_<method>.
requests_since() {
  # The test registry writes its log every 100 ms.
  [ -e "$WORK/$1/host" ] && sleep 0.3
  tail -n +"$(($2 + 1))" "$WORK/$1/log" | awk '
    match($0, /"[A-Z]+ [^ ]+ HTTP/) {
      split(substr($0, RSTART + 1, RLENGTH - 1), r, " ")
      m = tolower(r[1]); p = r[2]; sub(/\?.*/, "", p)
      if (p == "/v2/" || p == "/v2") t = "ping"
      else if (p ~ /\/_catalog$/) t = "catalog"
      else if (p ~ /\/tags\/list$/) t = "tags"
      else if (p ~ /\/referrers\//) t = "referrers"
      else if (p ~ /\/blobs\/uploads\//) t = "upload_" m
      else if (p ~ /\/blobs\//) t = "blob_" m
      else if (p ~ /\/manifests\//) t = "manifest_" m
      else t = "other"
      n[t]++; total++
    }
    END {
      out = ""
      while (length(n) > 0) {
        best = ""; for (k in n) if (best == "" || n[k] > n[best] || (n[k] == n[best] && k < best)) best = k
        out = out (out == "" ? "" : ", ") best " " n[best]; delete n[best]
      }
      printf "%d (%s)\n", total, out
    }'
}

# bytes_since NAME MARK: response body bytes NAME served after MARK (the
# size field after the status in distribution's access log).
bytes_since() {
  tail -n +"$(($2 + 1))" "$WORK/$1/log" | awk '
    match($0, /HTTP\/[0-9.]+" [0-9]+ [0-9]+/) {
      split(substr($0, RSTART, RLENGTH), f, " "); total += f[3]
    }
    END { printf "%d\n", total }'
}
