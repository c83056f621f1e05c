"""A new stream routed to a frozen replica is retried on another one, not held.

Found by stopping a replica (SIGSTOP: what a blocked event loop, a long pause or swapping look
like from outside) while new streams arrived through HAProxy: the kernel still accepts its
connections, so the handshakes HAProxy sent there before its checks marked it DOWN (~1 s)
got no answer until HAProxy's `timeout server` (60 s, then 504); a client with a 15 s open
timeout gave up on every one of them. HAProxy now gives a handshake 3 s, then retries it on
another replica (haproxy.cfg: `retry-on ... response-timeout`).
"""

from __future__ import annotations

import asyncio
import os
import signal
from pathlib import Path

import pytest
from websockets.asyncio.client import connect

from deploy.fleet import fleet

pytestmark = pytest.mark.asyncio


def free_base() -> int:
    for base in range(18300, 18345, 5):
        if all(fleet._port_free(base + k) for k in (0, 1, 2, 3, 11, 12)):
            return base
    raise AssertionError("no free ports")


async def open_stream(url: str) -> str:
    """The replica that answered the handshake (the client waits 10 s for one)."""
    async with connect(url, open_timeout=10) as ws:
        return str(ws.response.headers["X-Litestream-Replica"])


async def test_handshakes_sent_to_a_frozen_replica_are_answered_by_another(
        tmp_path: Path) -> None:
    f = await asyncio.to_thread(
        fleet.Fleet.up, 2, base_port=free_base(), state_dir=tmp_path, say=lambda *_: None,
        replica_args=["--voice", "synthetic", "--no-kokoro", "--workers", "1"])
    frozen = f.state.replicas["r1"].pid
    try:
        os.kill(frozen, signal.SIGSTOP)
        # At once, before its checks fail: leastconn sends some of them to r1.
        replicas = await asyncio.gather(*(open_stream(f.url) for _ in range(4)))
        assert replicas == ["r2"] * 4
    finally:
        os.kill(frozen, signal.SIGCONT)
        await asyncio.to_thread(f.on_disk().down, say=lambda *_: None)
