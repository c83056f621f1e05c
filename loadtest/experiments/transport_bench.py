"""Per-frame cost of the candidate transports: which one serves WebSocket and HTTP on one port.

`POST /v1/audio/speech` must share the WebSocket endpoint's port, and the `websockets` server
answers only GET handshakes. This benchmark measures what each candidate costs the server for
the work litestream does most: sending one 40 ms PCM frame (1,764 bytes at 22,050 Hz s16le)
to a client over loopback. Candidates:

- ``websockets``: litestream's server when this was measured
  (``websockets.asyncio.server.serve``, no compression); the measurement chose aiohttp.
- ``uvicorn-sansio``, ``uvicorn-legacy``, ``uvicorn-wsproto``: uvicorn with httptools and each
  of its WebSocket implementations, running a bare ASGI app (no framework in between).
- ``aiohttp``: aiohttp.web's own HTTP and WebSocket.

Each server runs in its own process on uvloop (as `litestream serve` does); its CPU time is read
from /proc before and after a run, so the figure is the server's own cost per frame, whatever
the client costs. Frames/s is wall-clock throughput; the client (websockets, the same for every
candidate) shares the two cores, so it bounds that figure. Modes:

- ``ws``: C connections at once, each receives one JSON text message then N binary frames.
- ``http``: C ``POST`` requests at once, each answered with N chunks of the frame's size in a
  chunked body (the shape of a streamed speech response). Not possible on ``websockets``.
- ``handshake``: C clients open, read one message and close, K times each (connections/s).

Run (it starts and stops the servers itself):
    flock -x /tmp/litestream-cpu.lock .venv/bin/python -m loadtest.experiments.transport_bench

A running litestream server can be measured the same way (before/after a transport change):
    .venv/bin/python -m loadtest.experiments.transport_bench \
        --litestream ws://127.0.0.1:8799/v1/stream --pid PID --streams 1,20
N streams each speak the realtime benchmark's paragraph. Synthesis runs on worker threads, so
the figure is the CPU of the event-loop thread alone (`/proc/PID/task/PID`): everything the
server does per frame besides synthesis (protocol, session, scheduler, framing, transport),
divided by the frames sent. Run the server with `--cache-bytes 0` where it has a sentence
cache, or every stream after the first is served from it.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import statistics
import subprocess
import sys
import time
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass
from typing import Any
from urllib.parse import parse_qsl, urlsplit

from loadtest.lib.streams import machine_info

IMPLS = ("websockets", "uvicorn-sansio", "uvicorn-legacy", "uvicorn-wsproto", "aiohttp")
FRAME_BYTES = 1764  # 40 ms of 22,050 Hz mono s16le: the bundled voice's frame
READY = json.dumps({"type": "ready", "protocol": 1, "session": "bench", "sample_rate": 22050})
CLK_TCK = os.sysconf("SC_CLK_TCK")


def _params(path_qs: str) -> tuple[str, int, int]:
    url = urlsplit(path_qs)
    q = dict(parse_qsl(url.query))
    return url.path, int(q.get("frames", "0")), int(q.get("bytes", str(FRAME_BYTES)))


# ---------------------------------------------------------------- servers (child process)

async def _serve_websockets(port: int) -> None:
    from websockets.asyncio.server import ServerConnection, serve
    from websockets.datastructures import Headers
    from websockets.http11 import Request, Response

    def process_request(conn: ServerConnection, request: Request) -> Response | None:
        if urlsplit(request.path).path == "/healthz":
            return Response(200, "OK", Headers({"Content-Length": "3"}), b"ok\n")
        return None

    async def handler(ws: ServerConnection) -> None:
        assert ws.request is not None
        _, frames, size = _params(ws.request.path)
        payload = bytes(size)
        await ws.send(READY)
        for _ in range(frames):
            await ws.send(payload)
        await ws.close()

    async with serve(handler, "127.0.0.1", port, compression=None, max_size=2**20,
                     process_request=process_request) as server:
        await server.serve_forever()


def _asgi_app() -> Callable[..., Awaitable[None]]:
    async def app(scope: dict[str, Any], receive: Any, send: Any) -> None:
        qs = scope.get("query_string", b"").decode()
        path, frames, size = _params(scope["path"] + ("?" + qs if qs else ""))
        payload = bytes(size)
        if scope["type"] == "websocket":
            await receive()  # websocket.connect
            await send({"type": "websocket.accept"})
            await send({"type": "websocket.send", "text": READY})
            for _ in range(frames):
                await send({"type": "websocket.send", "bytes": payload})
            await send({"type": "websocket.close", "code": 1000})
            return
        if scope["type"] != "http":
            return
        if path == "/healthz":
            await send({"type": "http.response.start", "status": 200,
                        "headers": [(b"content-length", b"3")]})
            await send({"type": "http.response.body", "body": b"ok\n"})
            return
        while (await receive()).get("more_body"):
            pass
        # No content-length: uvicorn sends the body chunked, one chunk per message.
        await send({"type": "http.response.start", "status": 200,
                    "headers": [(b"content-type", b"audio/pcm")]})
        for _ in range(frames):
            await send({"type": "http.response.body", "body": payload, "more_body": True})
        await send({"type": "http.response.body", "body": b""})

    return app


async def _serve_uvicorn(port: int, ws_impl: str) -> None:
    import uvicorn

    config = uvicorn.Config(
        _asgi_app(), host="127.0.0.1", port=port, loop="none", http="httptools", ws=ws_impl,
        lifespan="off", log_level="warning", access_log=False, ws_per_message_deflate=False,
        ws_max_size=2**20,
    )
    await uvicorn.Server(config).serve()


async def _serve_aiohttp(port: int) -> None:
    from aiohttp import web

    async def ws_handler(request: web.Request) -> web.StreamResponse:
        _, frames, size = _params(request.path_qs)
        payload = bytes(size)
        ws = web.WebSocketResponse(compress=False, max_msg_size=2**20)
        await ws.prepare(request)
        await ws.send_str(READY)
        for _ in range(frames):
            await ws.send_bytes(payload)
        await ws.close()
        return ws

    async def http_handler(request: web.Request) -> web.StreamResponse:
        _, frames, size = _params(request.path_qs)
        payload = bytes(size)
        await request.read()
        response = web.StreamResponse(headers={"Content-Type": "audio/pcm"})
        response.enable_chunked_encoding()
        await response.prepare(request)
        for _ in range(frames):
            await response.write(payload)
        await response.write_eof()
        return response

    async def healthz(request: web.Request) -> web.Response:
        return web.Response(text="ok\n")

    app = web.Application()
    app.router.add_get("/ws", ws_handler)
    app.router.add_post("/http", http_handler)
    app.router.add_get("/healthz", healthz)
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    await web.TCPSite(runner, "127.0.0.1", port).start()
    await asyncio.Event().wait()


def serve(impl: str, port: int) -> None:
    import uvloop

    if impl == "websockets":
        uvloop.run(_serve_websockets(port))
    elif impl.startswith("uvicorn-"):
        ws_impl = {"uvicorn-sansio": "websockets-sansio", "uvicorn-legacy": "websockets",
                   "uvicorn-wsproto": "wsproto"}[impl]
        uvloop.run(_serve_uvicorn(port, ws_impl))
    elif impl == "aiohttp":
        uvloop.run(_serve_aiohttp(port))
    else:
        raise SystemExit(f"unknown impl {impl}")


# ---------------------------------------------------------------- clients (driver process)

def cpu_s(pid: int, thread: int | None = None) -> float:
    """utime + stime of a process (or one of its threads), seconds (clock ticks: 10 ms
    resolution; runs are long)."""
    path = f"/proc/{pid}/stat" if thread is None else f"/proc/{pid}/task/{thread}/stat"
    with open(path, encoding="ascii") as f:
        fields = f.read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / CLK_TCK


async def _ws_client(port: int, frames: int) -> int:
    from websockets.asyncio.client import connect

    got = 0
    async with connect(f"ws://127.0.0.1:{port}/ws?frames={frames}&bytes={FRAME_BYTES}",
                       compression=None, max_size=2**20, proxy=None) as ws:
        async for message in ws:
            if isinstance(message, bytes):
                got += 1
    return got


async def _http_client(port: int, frames: int) -> int:
    """POST, then read the chunked body to EOF; returns body bytes (chunk framing included)."""
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    writer.write(
        f"POST /http?frames={frames}&bytes={FRAME_BYTES} HTTP/1.1\r\nHost: bench\r\n"
        "Content-Length: 2\r\nConnection: close\r\n\r\n{}".encode()
    )
    total = 0
    while chunk := await reader.read(1 << 16):
        total += len(chunk)
    writer.close()
    return total


async def _handshake_client(port: int, times: int) -> int:
    from websockets.asyncio.client import connect

    for _ in range(times):
        async with connect(f"ws://127.0.0.1:{port}/ws?frames=0", compression=None,
                           proxy=None) as ws:
            await ws.recv()
    return times


@dataclass(frozen=True)
class Run:
    impl: str
    mode: str
    connections: int
    units: int  # frames (ws, http) or handshakes
    wall_s: float
    server_cpu_s: float

    @property
    def per_s(self) -> float:
        return self.units / self.wall_s

    @property
    def cpu_us(self) -> float:
        return self.server_cpu_s / self.units * 1e6


async def measure(pid: int, port: int, impl: str, mode: str, connections: int,
                  per_conn: int) -> Run:
    client = {"ws": _ws_client, "http": _http_client, "handshake": _handshake_client}[mode]
    cpu0, t0 = cpu_s(pid), time.perf_counter()
    results = await asyncio.gather(*(client(port, per_conn) for _ in range(connections)))
    wall, cpu = time.perf_counter() - t0, cpu_s(pid) - cpu0
    if mode == "ws" and sum(results) != connections * per_conn:
        raise RuntimeError(f"{impl}: got {sum(results)} frames, sent {connections * per_conn}")
    if mode == "http" and min(results) < per_conn * FRAME_BYTES:
        raise RuntimeError(f"{impl}: short body {min(results)}")
    return Run(impl, mode, connections, connections * per_conn, wall, cpu)


def _start(impl: str, port: int) -> subprocess.Popen[bytes]:
    proc = subprocess.Popen([sys.executable, "-m", "loadtest.experiments.transport_bench", "serve",
                             "--impl", impl, "--port", str(port)])
    deadline = time.monotonic() + 20
    while time.monotonic() < deadline:
        with contextlib.suppress(OSError):
            import urllib.request

            with urllib.request.urlopen(f"http://127.0.0.1:{port}/healthz", timeout=1):
                return proc
        time.sleep(0.1)
    proc.kill()
    raise RuntimeError(f"{impl} did not start")


def _free_port() -> int:
    import socket

    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


SCENARIOS: tuple[tuple[str, int, int], ...] = (
    # (mode, connections, per connection)
    ("ws", 1, 40_000),
    ("ws", 20, 2_000),
    ("http", 1, 40_000),
    ("http", 20, 2_000),
    ("handshake", 20, 50),
)


def run_all(impls: Sequence[str], repeats: int) -> list[Run]:
    import uvloop

    runs: list[Run] = []
    for impl in impls:
        port = _free_port()
        proc = _start(impl, port)
        try:
            for mode, conns, per_conn in SCENARIOS:
                if mode == "http" and impl == "websockets":
                    continue  # the point: it cannot answer a POST
                # Warm-up, then the runs whose median is reported.
                uvloop.run(measure(proc.pid, port, impl, mode, conns, max(1, per_conn // 10)))
                for _ in range(repeats):
                    runs.append(uvloop.run(measure(proc.pid, port, impl, mode, conns,
                                                   per_conn)))
        finally:
            proc.terminate()
            proc.wait(10)
    return runs


def report(runs: Sequence[Run]) -> str:
    keys: list[tuple[str, str, int]] = []
    for r in runs:
        if (r.impl, r.mode, r.connections) not in keys:
            keys.append((r.impl, r.mode, r.connections))
    lines = [f"{'transport':<16} {'mode':<10} {'conns':>5} {'server CPU/unit':>16} "
             f"{'units/s':>9}  (medians of {len(runs) // max(1, len(keys))} runs)"]
    for impl, mode, conns in keys:
        group = [r for r in runs if (r.impl, r.mode, r.connections) == (impl, mode, conns)]
        unit = "handshake" if mode == "handshake" else "frame"
        cpu = statistics.median(r.cpu_us for r in group)
        rate = statistics.median(r.per_s for r in group)
        lines.append(f"{impl:<16} {mode:<10} {conns:>5} {cpu:>9.1f} us/{unit:<6} {rate:>9.0f}")
    return "\n".join(lines)


async def _litestream_stream(url: str, text: str) -> int:
    """One protocol-v1 stream: the text, `end`, then every frame until the server closes.
    A stream refused at the handshake (admission: 503) sends nothing and counts 0 frames."""
    from websockets.asyncio.client import connect
    from websockets.exceptions import InvalidStatus

    frames = 0
    try:
        ws = await connect(url, compression=None, max_size=2**22, proxy=None)
    except InvalidStatus:
        return 0
    async with ws:
        await ws.send(json.dumps({"type": "text", "text": text}))
        await ws.send(json.dumps({"type": "end"}))
        async for message in ws:
            if isinstance(message, bytes):
                frames += 1
    return frames


async def measure_litestream(url: str, pid: int, streams: int, text: str) -> Run:
    """Event-loop thread CPU per frame of a real server (the main thread runs the loop)."""
    cpu0, t0 = cpu_s(pid, pid), time.perf_counter()
    frames = await asyncio.gather(*(_litestream_stream(url, text) for _ in range(streams)))
    wall, cpu = time.perf_counter() - t0, cpu_s(pid, pid) - cpu0
    return Run("litestream", "stream", streams, sum(frames), wall, cpu)


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m loadtest.experiments.transport_bench")
    sub = parser.add_subparsers(dest="cmd")
    s = sub.add_parser("serve", help="(internal) run one candidate server")
    s.add_argument("--impl", choices=IMPLS, required=True)
    s.add_argument("--port", type=int, required=True)
    parser.add_argument("--impls", default=",".join(IMPLS), help="comma list of candidates")
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--litestream", metavar="URL", help="measure this running server")
    parser.add_argument("--pid", type=int, help="the running server's process id")
    parser.add_argument("--streams", default="1,20", help="with --litestream: stream counts")
    args = parser.parse_args(argv)
    if args.cmd == "serve":
        serve(args.impl, args.port)
        return 0
    meta = machine_info()
    if args.litestream:
        import uvloop

        from loadtest.lib.texts import PARAGRAPH

        runs = [uvloop.run(measure_litestream(args.litestream, args.pid, int(n), PARAGRAPH))
                for n in args.streams.split(",") for _ in range(args.repeats)]
        print(f"machine {meta['node']} | {meta['cpu']} | nproc {meta['nproc']} | python "
              f"{meta['python']} | load avg 1m {meta['loadavg_1m_at_start']} at start, "
              f"{os.getloadavg()[0]:.2f} at end")
        print(f"server {args.litestream} pid {args.pid}: event-loop thread CPU per frame sent "
              "(synthesis runs on other threads); paragraph per stream")
        print(report(runs))
        return 0
    runs = run_all([i for i in args.impls.split(",") if i], args.repeats)
    print(f"machine {meta['node']} | {meta['cpu']} | nproc {meta['nproc']} | python "
          f"{meta['python']} | load avg 1m {meta['loadavg_1m_at_start']} at start, "
          f"{os.getloadavg()[0]:.2f} at end")
    print(f"frame {FRAME_BYTES} bytes (40 ms, 22,050 Hz s16le); server CPU from /proc; "
          "every server on uvloop")
    print(report(runs))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
