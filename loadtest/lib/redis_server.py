"""A real redis-server on loopback, started and stopped by the caller (tests, benchmarks).

    with RedisServer.start(maxmemory="64mb") as redis:
        serve(cache_url=redis.url)
        redis.stop()     # Redis goes away mid-run: replicas must go on without it
        redis.restart()  # and back, on the same port

No persistence (`save ""`, no AOF): a cache, not a store. The memory policy is the one
docs/operations.md asks production to use (`allkeys-lru`) unless the caller says otherwise.
"""

from __future__ import annotations

import contextlib
import shutil
import socket
import subprocess
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

from loadtest.lib.net import free_port

REPO = Path(__file__).resolve().parents[2]
DEPS_SCRIPT = REPO / ".ci" / "redis-deps.sh"


class RedisMissing(RuntimeError):
    """No redis-server binary, and it could not be installed."""


def ensure_binary() -> str:
    """The redis-server path; installs it from Debian (.ci/redis-deps.sh) when missing.
    RedisMissing when that is impossible (no apt, no root)."""
    found = shutil.which("redis-server")
    if found:
        return found
    try:
        subprocess.run(["bash", str(DEPS_SCRIPT)], check=True, capture_output=True, timeout=600)
    except (OSError, subprocess.SubprocessError) as exc:
        raise RedisMissing(f"redis-server is not installed and {DEPS_SCRIPT.name} could not "
                           f"install it: {exc}") from exc
    found = shutil.which("redis-server")
    if not found:
        raise RedisMissing("redis-server is still missing after .ci/redis-deps.sh")
    return found


def _answers(port: int) -> bool:
    """True when something on the port answers PING with +PONG."""
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=0.5) as sock:
            sock.sendall(b"PING\r\n")
            return sock.recv(16).startswith(b"+PONG")
    except OSError:
        return False


@dataclass
class RedisServer:
    port: int
    maxmemory: str = "64mb"
    policy: str = "allkeys-lru"
    _proc: subprocess.Popen[bytes] | None = field(default=None, repr=False)

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}/0"

    @classmethod
    @contextlib.contextmanager
    def start(cls, port: int | None = None, *, maxmemory: str = "64mb",
              policy: str = "allkeys-lru") -> Iterator[RedisServer]:
        server = cls(port or free_port(), maxmemory, policy)
        server.restart()
        try:
            yield server
        finally:
            server.stop()

    def restart(self) -> None:
        """Start it (again, on the same port) and wait until it answers PING."""
        if self.running:
            return
        binary = ensure_binary()
        self._proc = subprocess.Popen(
            [binary, "--port", str(self.port), "--bind", "127.0.0.1", "--save", "",
             "--appendonly", "no", "--maxmemory", self.maxmemory,
             "--maxmemory-policy", self.policy, "--protected-mode", "yes"],
            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        deadline = time.monotonic() + 10
        while not _answers(self.port):
            if self._proc.poll() is not None or time.monotonic() > deadline:
                self.stop()
                raise RuntimeError(f"redis-server did not start on port {self.port}")
            time.sleep(0.02)

    @property
    def running(self) -> bool:
        return self._proc is not None and self._proc.poll() is None

    def stop(self) -> None:
        """Kill it (SIGKILL: Redis vanishes as in a crash) and wait for it."""
        proc, self._proc = self._proc, None
        if proc is not None and proc.poll() is None:
            proc.kill()
            proc.wait(10)
