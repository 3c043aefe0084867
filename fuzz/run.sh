#!/usr/bin/env bash
# Runs every fuzz target for a bounded time (default 120 s each; not in CI).
#   fuzz/run.sh [SECONDS] [TARGET...]
# Needs cargo-fuzz (`cargo install cargo-fuzz`) and a nightly toolchain, or
# RUSTC_BOOTSTRAP=1 on stable (cargo-fuzz passes -Z flags). Crashes land in
# fuzz/artifacts/<target>/; turn each into a regression test next to the
# parser it broke.
set -euo pipefail
cd "$(dirname "$0")"
secs=${1:-120}
shift || true
targets=("$@")
[ ${#targets[@]} -gt 0 ] || mapfile -t targets < <(cargo fuzz list)
toolchain=()
if rustup run nightly rustc --version >/dev/null 2>&1; then
  toolchain=(+nightly)
else
  export RUSTC_BOOTSTRAP=1
fi
for t in "${targets[@]}"; do
  echo "== $t: ${secs}s" >&2
  # -s none: the code is safe Rust; coverage-guided search without ASan
  # runs several times faster. 64 KiB inputs reach every structure; the
  # size caps themselves are unit-tested.
  mkdir -p "corpus/$t"
  cargo "${toolchain[@]}" fuzz run -s none -O "$t" "corpus/$t" "seeds/$t" -- \
    -max_total_time="$secs" -max_len=65536 -timeout=10 -rss_limit_mb=2048
done
