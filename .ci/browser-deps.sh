#!/usr/bin/env bash
# Installs what the real-browser test needs without downloading a browser build:
# Debian's chromium, and playwright-core from npm (which drives it, bringing no browser).
set -euo pipefail
cd "$(dirname "$0")/.."
if ! command -v chromium >/dev/null 2>&1; then
    export DEBIAN_FRONTEND=noninteractive
    apt-get update -qq
    apt-get install -y -qq chromium >/dev/null
fi
if [ ! -d clients/browser/test/node_modules/playwright-core ]; then
    (cd clients/browser/test && npm install --no-audit --no-fund --silent)
fi
