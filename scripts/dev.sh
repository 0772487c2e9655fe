#!/usr/bin/env bash
# README command 1: installs what is missing, then runs the Worker locally on
# wrangler dev (workerd) with state persisted under .state/ (Durable Objects,
# R2, alarms). Extra arguments go to wrangler dev (e.g. --port 8788).
set -euo pipefail
source "$(dirname "$0")/env.sh"
cd "$ROOT"
bash scripts/setup.sh
if [ ! -f .dev.vars ]; then
  printf 'API_TOKEN=dev-token\n' > .dev.vars
  log "created .dev.vars with API_TOKEN=dev-token (local only; never deploy it)"
fi
exec wrangler dev --ip 127.0.0.1 --port "${PORT:-8787}" --persist-to "$ROOT/.state" "$@"
