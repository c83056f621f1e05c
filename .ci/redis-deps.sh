#!/usr/bin/env bash
# Installs redis-server from Debian when it is missing: the shared sentence cache's tests
# (tests/e2e/server/test_shared_cache.py) run a real one on loopback. Idempotent.
set -euo pipefail
if command -v redis-server >/dev/null 2>&1; then
    exit 0
fi
SUDO=""
if [ "$(id -u)" -ne 0 ] && command -v sudo >/dev/null 2>&1; then SUDO="sudo"; fi
export DEBIAN_FRONTEND=noninteractive
$SUDO apt-get update -qq
# Only the binary is needed: nothing here starts Debian's service (tests start their own).
$SUDO apt-get install -y -qq redis-server >/dev/null
