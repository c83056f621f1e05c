#!/usr/bin/env bash
# Installs what the real-browser test (tests/test_browser.py) needs without downloading a
# browser build: Debian's chromium, and playwright-core from npm (which drives it, bringing
# no browser). Idempotent: does nothing when both are already there at the pinned version.
set -euo pipefail
cd "$(dirname "$0")/.."
SUDO=""
if [ "$(id -u)" -ne 0 ] && command -v sudo >/dev/null 2>&1; then SUDO="sudo"; fi
if ! command -v chromium >/dev/null 2>&1; then
    export DEBIAN_FRONTEND=noninteractive
    $SUDO apt-get update -qq
    $SUDO apt-get install -y -qq chromium >/dev/null
fi
if ! command -v node >/dev/null 2>&1; then
    echo "browser-deps: node (Node.js 18+) is required for clients/browser/test" >&2
    exit 1
fi
cd clients/browser/test
want=$(node -p "require('./package.json').dependencies['playwright-core']")
have=$(node -p "try { require('./node_modules/playwright-core/package.json').version } catch { '' }")
if [ "$want" != "$have" ]; then
    npm ci --no-audit --no-fund --silent
fi
