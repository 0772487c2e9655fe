# Sourced by every project script: where the pinned tools live and the
# variables that make worker-build and wrangler work offline (see
# docs/DEVELOPING.md). Safe to source twice.
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
export ROOT
export PATH="$ROOT/.tools/bin:$ROOT/node_modules/.bin:$HOME/.cargo/bin:$PATH"

# Pinned versions; the setup script installs exactly these.
export WORKER_BUILD_VERSION="0.8.7"
export WASM_TARGET="wasm32-unknown-unknown"

# worker-build: use our binaries instead of downloading them.
export WASM_BINDGEN_BIN="$ROOT/.tools/bin/wasm-bindgen"
export WASM_OPT_BIN="$ROOT/node_modules/.bin/wasm-opt"
export ESBUILD_BIN="$ROOT/node_modules/.bin/esbuild"
export XDG_CACHE_HOME="$ROOT/.cache"

# wrangler offline: no metrics, no update check, no cf-properties fetch.
export WRANGLER_SEND_METRICS=false
export WRANGLER_SEND_ERROR_REPORTS=false
export WRANGLER_HIDE_BANNER=true
export CLOUDFLARE_CF_FETCH_ENABLED=false
export XDG_CONFIG_HOME="$ROOT/.config"

log() { printf '[%s] %s\n' "$(basename "$0")" "$*" >&2; }
