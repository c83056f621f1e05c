"""The local fleet's configuration (deploy/fleet/) says what docs/operations.md says it does.

These read the files; the fleet itself runs in tests/e2e/loadtest/test_fleet.py.
"""

from __future__ import annotations

import ipaddress
import re
from pathlib import Path

import pytest
import yaml

from deploy.fleet import fleet
from litestream import config as config_mod
from litestream.config import default_of
from tests import REPO

pytestmark = pytest.mark.unit

FLEET = REPO / "deploy" / "fleet"


def _haproxy_sections(path: Path = FLEET / "haproxy.cfg") -> dict[str, list[str]]:
    """haproxy.cfg as {'global': [...], 'defaults': [...], 'backend replicas': [...]}, each a
    list of directive lines without comments."""
    sections: dict[str, list[str]] = {}
    current = ""
    for raw in path.read_text().splitlines():
        line = raw.split("#", 1)[0].rstrip()
        if not line.strip():
            continue
        if not raw[0].isspace():
            current = line.strip()
            sections[current] = []
        else:
            sections[current].append(" ".join(line.split()))
    return sections


def _seconds(value: str) -> float:
    number, unit = re.fullmatch(r"(\d+)(ms|s|m|h)?", value).groups()  # type: ignore[union-attr]
    return float(number) * {"ms": 0.001, "s": 1, "m": 60, "h": 3600, None: 0.001}[unit]


def test_haproxy_balances_on_open_streams_and_checks_readiness() -> None:
    backend = _haproxy_sections()["backend replicas"]
    assert "balance leastconn" in backend
    assert "option httpchk" in backend
    assert "http-check send meth GET uri /readyz" in backend
    assert "http-check expect status 200" in backend
    # A replica that turns unready keeps its open streams.
    assert not any("shutdown-sessions" in line for line in backend)
    assert "check" in fleet.SERVER_OPTIONS.split()


def test_haproxy_retries_a_refused_handshake_on_another_replica() -> None:
    backend = _haproxy_sections()["backend replicas"]
    retry_on = next(line for line in backend if line.startswith("retry-on "))
    assert "503" in retry_on.split() and "conn-failure" in retry_on.split()
    assert "option redispatch 1" in backend
    assert any(line.startswith("retries ") and int(line.split()[1]) >= 2 for line in backend)


def test_the_tunnel_outlives_litestreams_own_idle_timeout() -> None:
    timeouts = dict(line.split()[1:3] for line in _haproxy_sections()["defaults"]
                    if line.startswith("timeout "))
    assert _seconds(timeouts["tunnel"]) > float(default_of("idle_timeout_s"))


def test_haproxys_503_page_is_litestreams_refusal() -> None:
    page = (FLEET / "errors" / "503.http").read_bytes()
    head, body = page.split(b"\r\n\r\n", 1)
    lines = head.decode().split("\r\n")
    assert lines[0] == "HTTP/1.1 503 Service Unavailable"
    headers = dict(line.split(": ", 1) for line in lines[1:])
    assert int(headers["Retry-After"]) >= 1
    assert int(headers["Content-Length"]) == len(body)
    assert b'"code":"overloaded"' in body
    # A page on another origin reads it as it reads a replica's own refusal (server/cors.py):
    # it says only that the fleet is full, so every origin may.
    assert headers["Access-Control-Allow-Origin"] == "*"
    assert "Retry-After" in headers["Access-Control-Expose-Headers"]


def test_prometheus_scrapes_replicas_and_haproxy_from_the_files_the_fleet_writes() -> None:
    yaml = pytest.importorskip("yaml")
    config = yaml.safe_load((FLEET / "prometheus.yml").read_text())
    jobs = {job["job_name"]: job["file_sd_configs"][0]["files"]
            for job in config["scrape_configs"]}
    assert jobs == {"litestream": ["replicas.json"], "haproxy": ["haproxy.json"]}


def test_redis_is_a_bounded_cache() -> None:
    conf = dict(line.split(" ", 1) for line in (FLEET / "redis.conf").read_text().splitlines()
                if line and not line.startswith("#"))
    assert conf["maxmemory-policy"] == "allkeys-lru"
    assert conf["maxmemory"].endswith(("mb", "gb"))
    assert conf["save"] == '""' and conf["appendonly"] == "no"


def test_ports_and_state() -> None:
    ports = fleet.Ports(18300)
    assert {ports.public, ports.stats, ports.prometheus, ports.redis} == {18300, 18301, 18302,
                                                                          18303}
    assert ports.replica(1) == 18311
    state = fleet.State(base_port=18300, replica_args=["--workers", "1"], pids={"redis": 7},
                        replicas={"r1": fleet.Replica("r1", 1, 18311, 42)}, next_index=2)
    assert fleet.State.from_json(state.to_json()) == state


def test_show_stat_is_read_by_column_name() -> None:
    csv = ("# pxname,svname,qcur,scur,status\n"
           "public,FRONTEND,,3,OPEN\n"
           "replicas,r1,0,2,UP\n"
           "replicas,r2,0,1,DOWN 1/2\n"
           "replicas,BACKEND,0,3,UP\n")
    rows = fleet.parse_stat(csv)
    assert [(r["svname"], r["scur"], r["status"]) for r in rows if r["pxname"] == "replicas"] == [
        ("r1", "2", "UP"), ("r2", "1", "DOWN 1/2"), ("BACKEND", "3", "UP")]
    assert fleet.parse_stat("") == []


def test_replicas_know_their_clients_through_haproxy(tmp_path: Path) -> None:
    # HAProxy names each client in X-Forwarded-For, and replicas believe it from HAProxy's
    # address only, so the limits per client address are per client, not one for the fleet.
    assert "option forwardfor" in _haproxy_sections()["backend replicas"]
    state = fleet.State(base_port=18300, replica_args=["--workers", "1"])
    command = fleet.Fleet(tmp_path, state).replica_command(18311)
    serve = command[command.index("serve") + 1:]
    config = config_mod.build(config_mod.parse_args(serve), environ={})
    assert config.trusted_proxies == ("127.0.0.1",)
    assert config.workers == 1  # the operator's own arguments still apply


def test_the_container_fleets_replicas_trust_exactly_its_haproxy() -> None:
    # The same as the host fleet, in deploy/fleet/containers: HAProxy forwards the client, and
    # has a fixed address on a fixed subnet, and the replicas trust that address, not the subnet
    # (where Redis, Prometheus and the other replicas also live).
    containers = FLEET / "containers"
    assert "option forwardfor" in _haproxy_sections(containers / "haproxy.cfg")["backend replicas"]
    compose = yaml.safe_load((containers / "compose.yaml").read_text())
    [pool] = compose["networks"]["default"]["ipam"]["config"]
    haproxy_address = compose["services"]["haproxy"]["networks"]["default"]["ipv4_address"]
    subnet = ipaddress.ip_network(pool["subnet"])
    assert ipaddress.ip_address(haproxy_address) in subnet
    # Outside the range Docker hands out, so no container started before HAProxy can take it.
    assert ipaddress.ip_address(haproxy_address) not in ipaddress.ip_network(pool["ip_range"])
    config = config_mod.build(
        config_mod.parse_args(compose["services"]["litestream"]["command"]), environ={})
    assert config.trusted_proxies == (haproxy_address,)
    assert config.cache_url == "redis://redis:6379/0"  # the rest of the command still applies
    # Every other service stays on the one default network (service names resolve there).
    for name, service in compose["services"].items():
        assert set(service.get("networks", {"default": None})) == {"default"}, name
