#!/usr/bin/env bash
# Builds the Worker into build/worker/ (wrangler.toml's [build] command).
#   PIPELINE_TEST_ROUTES=1  compile in the benchmark and fault-injection
#                           routes (feature `test-routes`); never for deploys.
#   PIPELINE_FAST_BUILD=1   skip wasm-opt (2 s instead of 8 s; wasm ~25 % larger).
#   PIPELINE_SKIP_BUILD=1   do nothing when a build exists (the test harness
#                           builds once and starts wrangler dev many times).
set -euo pipefail
source "$(dirname "$0")/env.sh"
cd "$ROOT"

if [ "${PIPELINE_SKIP_BUILD:-}" = "1" ] && [ -f build/worker/shim.mjs ]; then
  exit 0
fi
args=(--release)
[ "${PIPELINE_FAST_BUILD:-}" = "1" ] && args+=(--no-opt)
cargo_args=()
if [ "${PIPELINE_TEST_ROUTES:-}" = "1" ]; then
  cargo_args=(--features test-routes)
fi
log "worker-build ${args[*]} ${cargo_args[*]:+-- ${cargo_args[*]}}"
worker-build "${args[@]}" ${cargo_args[@]:+-- "${cargo_args[@]}"}
