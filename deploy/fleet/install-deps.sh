#!/usr/bin/env bash
# The fleet's three outside parts, from Debian (bookworm: HAProxy 2.6, Redis 7.0, Prometheus 2.42),
# installed only when missing. `make fleet` and `make fleet-test` run this first.
# --no-install-recommends keeps out prometheus-node-exporter and the like. On a host with
# systemd the packages also start their own system services (haproxy with an empty config,
# redis on 6379, prometheus on 9090); the fleet runs its own copies on its own ports and never
# touches those.
set -euo pipefail
need=()
command -v haproxy >/dev/null 2>&1 || need+=(haproxy)
command -v redis-server >/dev/null 2>&1 || need+=(redis-server)
command -v prometheus >/dev/null 2>&1 || need+=(prometheus)
if [ ${#need[@]} -eq 0 ]; then
    exit 0
fi
echo "fleet: installing ${need[*]} from Debian"
sudo=""
[ "$(id -u)" -eq 0 ] || sudo="sudo"
$sudo env DEBIAN_FRONTEND=noninteractive apt-get update -qq
$sudo env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${need[@]}"
