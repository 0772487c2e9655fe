#!/usr/bin/env bash
# Builds the Worker into build/worker/ and the operations page (ops/, with
# uPlot bundled in by esbuild) into build/ops/ (wrangler.toml's [build]
# command).
#   PIPELINE_TEST_ROUTES=1  compile in the benchmark and fault-injection
#                           routes (feature `test-routes`); never for deploys.
#   PIPELINE_FAST_BUILD=1   skip wasm-opt (2 s instead of 8 s; wasm ~25 % larger).
#   PIPELINE_SKIP_BUILD=1   do nothing when a build exists (the test harness
#                           builds once and starts wrangler dev many times).
set -euo pipefail
source "$(dirname "$0")/env.sh"
cd "$ROOT"

# The operations page: app.js with uPlot bundled in, style.css with uPlot's
# stylesheet inlined, index.html as is. Built in a folder of its own and
# moved in whole, so a running `wrangler dev` never serves half a build and
# two builds at once do not mix their files.
build_ops() {
  log "esbuild ops/ -> build/ops/"
  mkdir -p build
  local tmp
  tmp=$(mktemp -d build/ops.XXXXXX)
  esbuild ops/app.js --bundle --minify --format=esm --target=es2020 \
    --log-level=warning --outfile="$tmp/app.js"
  esbuild ops/style.css --bundle --minify --log-level=warning \
    --outfile="$tmp/style.css"
  cp ops/index.html "$tmp/index.html"
  chmod 755 "$tmp"
  rm -rf build/ops
  mv -T "$tmp" build/ops 2>/dev/null || rm -rf "$tmp"
}

if [ "${PIPELINE_SKIP_BUILD:-}" = "1" ] && [ -f build/worker/shim.mjs ]; then
  [ -f build/ops/index.html ] || build_ops
  exit 0
fi
build_ops
args=(--release)
[ "${PIPELINE_FAST_BUILD:-}" = "1" ] && args+=(--no-opt)
cargo_args=()
if [ "${PIPELINE_TEST_ROUTES:-}" = "1" ]; then
  cargo_args=(--features test-routes)
fi
log "worker-build ${args[*]} ${cargo_args[*]:+-- ${cargo_args[*]}}"
worker-build "${args[@]}" ${cargo_args[@]:+-- "${cargo_args[@]}"}
