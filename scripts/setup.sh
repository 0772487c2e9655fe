#!/usr/bin/env bash
# Installs what the project needs and is missing, pinned, into ignored
# project folders (.tools/, node_modules/). Idempotent: a second run only
# checks versions and prints "present" for each tool.
set -euo pipefail
source "$(dirname "$0")/env.sh"
cd "$ROOT"

# 0. Chromium and its WebDriver, Debian's packages: the end-to-end spec of
#    the operations page (crates/e2e/tests/ops_page.rs) drives it headless.
#    Their download and install wait on the network and the disk, the tools
#    below on the CPU: on a fresh machine they run side by side (output in
#    target/setup-chromium.log), and step 5 waits for them.
if [ -x /usr/bin/chromium ] && [ -x /usr/bin/chromedriver ]; then
  log "present: chromium, chromedriver"
else
  mkdir -p target
  chromium_log="$ROOT/target/setup-chromium.log"
  log "installing chromium and chromium-driver (Debian packages) in the background: $chromium_log"
  ( apt-get update && DEBIAN_FRONTEND=noninteractive apt-get install -y chromium chromium-driver ) \
    >"$chromium_log" 2>&1 &
  chromium_pid=$!
fi

# The two Rust tools below are compiled from source, which is most of a cold
# setup. They are build tools that run for seconds per build, so they are
# compiled at opt-level 1 (about a third less compile time than the default
# 3) into one target folder (they share many dependencies).
tools_build() {
  CARGO_PROFILE_RELEASE_OPT_LEVEL=1 CARGO_PROFILE_RELEASE_DEBUG=0 \
    CARGO_TARGET_DIR="$ROOT/target/tools-build" cargo install --root "$ROOT/.tools" "$@"
}

# npm's packages download while the Rust tools compile (step 4 waits).
want_wr=$(node -p 'require("./package-lock.json").packages["node_modules/wrangler"].version')
have_wr=$(node -p 'try{require("./node_modules/wrangler/package.json").version}catch(e){""}' 2>/dev/null || true)
want_up=$(node -p 'require("./package-lock.json").packages["node_modules/uplot"].version')
have_up=$(node -p 'try{require("./node_modules/uplot/package.json").version}catch(e){""}' 2>/dev/null || true)
if [ "$have_wr" = "$want_wr" ] && [ -x node_modules/.bin/wasm-opt ] && [ "$have_up" = "$want_up" ]; then
  log "present: wrangler $want_wr, wasm-opt, uplot $want_up"
else
  mkdir -p target
  npm_log="$ROOT/target/setup-npm.log"
  log "installing wrangler $want_wr, binaryen and uplot $want_up from package-lock.json in the background: $npm_log"
  npm ci --no-audit --no-fund >"$npm_log" 2>&1 &
  npm_pid=$!
fi

# 1. The wasm target for the toolchain in use.
if rustup target list --installed 2>/dev/null | grep -qx "$WASM_TARGET"; then
  log "present: rust target $WASM_TARGET"
else
  log "installing rust target $WASM_TARGET"
  rustup target add "$WASM_TARGET"
fi

# 2. worker-build, the build driver, at the pinned version.
if [ "$(worker-build --version 2>/dev/null | awk '{print $NF}')" = "$WORKER_BUILD_VERSION" ]; then
  log "present: worker-build $WORKER_BUILD_VERSION"
else
  log "installing worker-build $WORKER_BUILD_VERSION (about 2 min cold on 2 cores)"
  tools_build worker-build --version "=$WORKER_BUILD_VERSION" --locked
fi

# 3. wasm-bindgen-cli at exactly the wasm-bindgen version in Cargo.lock, so
#    worker-build never tries to download one.
want_wb=$(awk '/^name = "wasm-bindgen"$/{getline; gsub(/version = |"/, ""); print; exit}' Cargo.lock)
if [ "$("$WASM_BINDGEN_BIN" --version 2>/dev/null | awk '{print $2}')" = "$want_wb" ]; then
  log "present: wasm-bindgen-cli $want_wb"
else
  log "installing wasm-bindgen-cli $want_wb (about 1.5 min cold on 2 cores)"
  # --locked fails for this crate here (a locked dependency is missing from
  # the registry); fall back to a fresh resolution of its dependencies.
  tools_build wasm-bindgen-cli --version "=$want_wb" --locked \
    || tools_build wasm-bindgen-cli --version "=$want_wb"
fi

# 4. wrangler (with workerd and esbuild), binaryen's wasm-opt and uPlot (the
#    operations page's charts), exactly as package-lock.json pins them; the
#    install started before step 1.
if [ -n "${npm_pid:-}" ]; then
  if wait "$npm_pid"; then
    log "installed wrangler $want_wr, binaryen and uplot $want_up"
  else
    cat "$npm_log" >&2
    log "npm ci failed (output above)"
    exit 1
  fi
fi

# 5. Chromium's install (started first, above) must have succeeded.
if [ -n "${chromium_pid:-}" ]; then
  if wait "$chromium_pid"; then
    log "installed chromium and chromium-driver"
  else
    cat "$chromium_log" >&2
    log "installing chromium and chromium-driver failed (output above)"
    exit 1
  fi
fi
