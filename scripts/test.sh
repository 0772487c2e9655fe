#!/usr/bin/env bash
# README command 2: installs what is missing, then runs every check:
#   formatting, clippy (wasm target, -D warnings), native unit and property
#   tests, the operations page's node tests, the end-to-end suite on wrangler dev (workerd), a smoke run of the
#   benchmark, and `wrangler deploy --dry-run` of the production bundle.
# E2E_FILTER=name runs only the matching end-to-end test binaries' tests.
set -euo pipefail
source "$(dirname "$0")/env.sh"
cd "$ROOT"

cleanup() {
  # Any wrangler dev a test left behind (its process group ids).
  if [ -f target/e2e/pids ]; then
    while read -r pgid; do kill -9 -- "-$pgid" 2>/dev/null || true; done < target/e2e/pids
    rm -f target/e2e/pids
  fi
  # Configs the harness generates for workers that consume the events queue.
  rm -f .wrangler-e2e-*.toml
}
trap cleanup EXIT

step() { printf '\n==> %s\n' "$*"; }
t0=$(date +%s)

step "setup"
bash scripts/setup.sh

step "cargo fmt --check"
cargo fmt --all -- --check

step "clippy (wasm32, production and test-routes builds)"
cargo clippy --target "$WASM_TARGET" -p r2-hotkey-pipeline -- -D warnings
cargo clippy --target "$WASM_TARGET" -p r2-hotkey-pipeline --features test-routes -- -D warnings
step "clippy (native crates)"
cargo clippy -p pipeline-core -p pipeline-client -p e2e -p pipeline-bench -p pipeline-sim -p r2p --all-targets -- -D warnings

step "native unit and property tests"
cargo test -p pipeline-core -p pipeline-client -p pipeline-bench -p r2p

step "operations page: its pure logic (node --test)"
node --test ops/

step "client library docs (no missing docs)"
RUSTDOCFLAGS="-D warnings" cargo doc -q -p pipeline-client --no-deps

step "deterministic simulation: planted bugs found, then ${SIM_SEEDS:-5000} seeds"
# SIM_SECONDS=3600 turns the seed run into an hour-long soak.
cargo test -p pipeline-sim --release
SIM_SEEDS="${SIM_SEEDS:-5000}" cargo run -q -p pipeline-sim --release
step "deterministic simulation: one hot key at 1 to 15,144 uploads/s (the capacity model's per-key assumptions)"
SIM_RATES=1,10,151,1514,15144 SIM_RATE_SECONDS=30 cargo run -q -p pipeline-sim --release

step "build the Worker with test routes (once for every e2e run)"
PIPELINE_TEST_ROUTES=1 PIPELINE_FAST_BUILD=1 bash scripts/build.sh
mkdir -p target/e2e

step "end-to-end suite on wrangler dev"
PIPELINE_SKIP_BUILD=1 cargo test -p e2e -- --test-threads=4 ${E2E_FILTER:+"$E2E_FILTER"}

step "benchmark smoke run"
# A debug build: its dependencies are those the unit tests above built, so
# a cold run does not compile them again in release for a one-minute smoke.
PIPELINE_SKIP_BUILD=1 cargo run -q -p pipeline-bench -- --smoke --out target/bench-smoke.json

step "production bundle: wrangler deploy --dry-run"
rm -rf build
wrangler deploy --dry-run --outdir target/deploy-dry-run 2>&1 | tail -n 5

step "all checks passed in $(( $(date +%s) - t0 )) s"
