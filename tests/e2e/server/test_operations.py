"""Running it for real: keys, origins, quotas, limits, metrics, logs, and the drain on SIGTERM.

The drain tests start `litestream serve` as a real subprocess and signal it, as an orchestrator
would. The others use an in-process server on a free loopback port.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import os
import resource
import selectors
import signal
import socket
import ssl
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import pytest
from websockets.asyncio.client import connect
from websockets.exceptions import ConnectionClosed, InvalidStatus

from tests import REPO
from tests.serverutil import RunningServer, free_port, read_all, run_server, until

ROOT = REPO


def http_get(url: str, headers: dict[str, str] | None = None) -> tuple[int, dict[str, str], bytes]:
    request = urllib.request.Request(url, headers=headers or {})
    try:
        with urllib.request.urlopen(request, timeout=10) as resp:
            return resp.status, dict(resp.headers), resp.read()
    except urllib.error.HTTPError as err:
        return err.code, dict(err.headers), err.read()


async def refused_status(url: str, **kwargs: object) -> tuple[int, dict[str, str], bytes]:
    with pytest.raises(InvalidStatus) as info:
        async with connect(url, **kwargs):  # type: ignore[arg-type]
            pass
    response = info.value.response
    return response.status_code, dict(response.headers.raw_items()), response.body


# ---------------------------------------------------------------- connections

def connected_within(port: int, count: int, wait_s: float) -> int:
    """Open `count` TCP connections to the port at once and return how many the kernel
    completed within `wait_s`. Blocking: called from the server's own event loop, nothing is
    accepted meanwhile, so every connection waits in the kernel's accept queue."""
    socks: list[socket.socket] = []
    with selectors.DefaultSelector() as selector:
        try:
            for _ in range(count):
                sock = socket.socket()
                sock.setblocking(False)
                sock.connect_ex(("127.0.0.1", port))
                socks.append(sock)
                selector.register(sock, selectors.EVENT_WRITE)
            done = 0
            deadline = time.monotonic() + wait_s
            while done < count and (left := deadline - time.monotonic()) > 0:
                for key, _ in selector.select(left):
                    ready = key.fileobj
                    assert isinstance(ready, socket.socket)
                    selector.unregister(ready)
                    done += ready.getsockopt(socket.SOL_SOCKET, socket.SO_ERROR) == 0
            return done
        finally:
            for sock in socks:
                sock.close()


async def test_a_burst_of_connections_waits_in_the_accept_queue_not_for_a_retry() -> None:
    # A full accept queue drops SYNs, and the client's kernel sends its next SYN a second
    # later: aiohttp's default queue of 128 did this to a burst of 200 WebSockets.
    async with run_server() as srv:
        assert connected_within(srv.port, 300, wait_s=0.5) == 300
    async with run_server(listen_backlog=128) as srv:  # the old length: the check can fail
        assert connected_within(srv.port, 300, wait_s=0.5) < 300


# ---------------------------------------------------------------- keys, origins, quotas

async def test_api_keys_required_as_header_or_token() -> None:
    async with run_server(api_keys=("s3cret-key",)) as srv:
        status, _, body = await refused_status(srv.url)
        assert status == 401
        assert json.loads(body)["error"]["code"]
        status, _, _ = await refused_status(srv.url, additional_headers={
            "Authorization": "Bearer wrong"})
        assert status == 401
        async with connect(srv.url, additional_headers={
                "Authorization": "Bearer s3cret-key"}) as ws:
            assert json.loads(await ws.recv())["type"] == "ready"
        async with connect(srv.url + "?token=s3cret-key") as ws:
            assert json.loads(await ws.recv())["type"] == "ready"


async def test_origin_allowlist_blocks_cross_site_websocket_hijacking() -> None:
    async with run_server(allowed_origins=("https://app.example",)) as srv:
        status, _, _ = await refused_status(srv.url, origin="https://evil.example")
        assert status == 403
        async with connect(srv.url, origin="https://app.example") as ws:  # type: ignore[arg-type]
            assert json.loads(await ws.recv())["type"] == "ready"


async def test_concurrent_stream_quota_gives_429_with_retry_after() -> None:
    async with run_server(streams_per_key=2) as srv:
        async with connect(srv.url), connect(srv.url):
            status, headers, _ = await refused_status(srv.url)
            assert status == 429
            assert int(headers["Retry-After"]) >= 1
        # Slots are released when streams close.
        for _ in range(50):
            if not srv.server.streams:
                break
            await asyncio.sleep(0.02)
        async with connect(srv.url) as ws:
            assert json.loads(await ws.recv())["type"] == "ready"


def _from(address: str) -> dict[str, str]:
    """Headers of a client that a proxy in front of the server forwards."""
    return {"X-Forwarded-For": address}


def http_post_speech(url: str, headers: dict[str, str]) -> int:
    body = json.dumps({"model": "tts-1", "voice": "alloy", "input": "Hello there.",
                       "response_format": "pcm"}).encode()
    request = urllib.request.Request(url + "/v1/audio/speech", data=body, method="POST",
                                     headers={"Content-Type": "application/json", **headers})
    try:
        with urllib.request.urlopen(request, timeout=30) as response:
            response.read()
            return int(response.status)
    except urllib.error.HTTPError as exc:
        return int(exc.code)


async def test_behind_a_trusted_proxy_each_forwarded_client_has_its_own_quota() -> None:
    # The loopback client plays the proxy: every connection comes from 127.0.0.1.
    async with (run_server(streams_per_key=1, trusted_proxies=("127.0.0.1",)) as srv,
                connect(srv.url, additional_headers=_from("203.0.113.9")) as first,
                connect(srv.url, additional_headers=_from("203.0.113.10")) as second):
        assert json.loads(await first.recv())["type"] == "ready"
        assert json.loads(await second.recv())["type"] == "ready"
        status, _, body = await refused_status(srv.url,
                                               additional_headers=_from("203.0.113.9"))
        assert status == 429 and json.loads(body)["error"]["code"] == "rate_limited"
        # The speech endpoint counts the same client.
        assert await asyncio.to_thread(http_post_speech, srv.http_url,
                                       _from("203.0.113.9")) == 429
        assert await asyncio.to_thread(http_post_speech, srv.http_url,
                                       _from("203.0.113.11")) == 200


async def test_without_trusted_proxies_a_forwarded_header_changes_nothing() -> None:
    async with (run_server(streams_per_key=1) as srv,
                connect(srv.url, additional_headers=_from("203.0.113.9")) as first):
        assert json.loads(await first.recv())["type"] == "ready"
        # Another "client" by its header, the same one by its address: refused.
        status, _, _ = await refused_status(srv.url, additional_headers=_from("203.0.113.10"))
        assert status == 429


async def test_text_rate_limit_refuses_the_message_and_the_stream_goes_on() -> None:
    async with run_server(chars_per_s=10.0) as srv, connect(srv.url) as ws:
        await read_all(ws, stop_after="ready")
        await ws.send(json.dumps({"type": "text", "text": "Hi. " * 10}))  # burst covers it
        await ws.send(json.dumps({"type": "text", "text": "More words here. " * 5}))
        t = await read_all(ws, stop_after="error")
        err = t.of_type("error")[0]
        assert err["code"] == "rate_limited" and err["fatal"] is False
        await ws.send(json.dumps({"type": "end"}))  # never rate limited
        t = await read_all(ws)
        assert t.events[-1]["type"] == "done"
        assert t.events[-1]["stats"]["chars"] == len("Hi. " * 10)


async def test_admission_refuses_with_503_when_full() -> None:
    async with run_server(max_streams=1) as srv, connect(srv.url):
        status, headers, _ = await refused_status(srv.url)
        assert status == 503
        assert int(headers["Retry-After"]) >= 1


async def test_a_warming_server_refuses_and_counts_it_as_warming_up() -> None:
    async with run_server() as srv:
        srv.server.warming = True  # as between listening and ready at start-up
        status, headers, body = await refused_status(srv.url)
        assert status == 503 and int(headers["Retry-After"]) >= 1
        assert json.loads(body)["error"]["code"] == "overloaded"
        _, _, metrics = await asyncio.to_thread(http_get, srv.http_url + "/metrics")
    lines = metrics.decode().splitlines()
    assert 'litestream_refusals_total{reason="warming_up"} 1.0' in lines
    assert 'litestream_refusals_total{reason="capacity"} 0.0' in lines


def load_sample(metrics_body: bytes) -> float | None:
    """litestream_load's value in a /metrics body, or None when it has no sample."""
    for line in metrics_body.decode().splitlines():
        if line.startswith("litestream_load "):
            return float(line.split()[1])
    return None


async def test_load_gauge_readyz_and_refusals_agree() -> None:
    """Issue 19: one gauge says how full a replica is. At 1, /readyz is 503 and a new stream
    is refused; below 1, /readyz is 200 and a new stream is admitted."""
    async def observe(srv: RunningServer) -> tuple[float | None, int, bytes]:
        _, _, metrics = await asyncio.to_thread(http_get, srv.http_url + "/metrics")
        status, _, body = await asyncio.to_thread(http_get, srv.http_url + "/readyz")
        return load_sample(metrics), status, body

    async with run_server(max_streams=2) as srv:
        # Each admitted stream raises the gauge; at every step /readyz agrees with it, and it
        # reaches 1 by the second stream at the latest (max_streams), or sooner where this
        # machine's measured compute is the bound. At 1 a new stream is refused.
        loads: list[float] = []
        async with contextlib.AsyncExitStack() as streams:
            while True:
                load, ready, body = await observe(srv)
                assert load is not None and 0.0 <= load <= 1.0
                assert not loads or load > loads[-1]
                loads.append(load)
                if load == 1.0:
                    assert ready == 503 and body == b"at capacity\n"
                    assert (await refused_status(srv.url))[0] == 503
                    break
                assert ready == 200 and len(loads) <= 2
                await streams.enter_async_context(connect(srv.url))
            assert len(loads) >= 2  # an idle replica is below 1
        async with asyncio.timeout(10):
            while srv.server.streams:
                await asyncio.sleep(0.02)
        load, ready, _ = await observe(srv)
        assert load is not None and load < 1.0 and ready == 200
        async with connect(srv.url) as ws:  # admitted again
            await ws.send(json.dumps({"type": "end"}))
            assert (await read_all(ws)).events[-1]["type"] == "done"
        # Warming up or draining, the replica is no capacity source: no sample at all.
        for state in ("warming", "draining"):
            setattr(srv.server, state, True)
            load, ready, _ = await observe(srv)
            assert load is None and ready == 503
            setattr(srv.server, state, False)


async def test_total_stream_text_limit_is_fatal() -> None:
    async with run_server(max_buffered_chars=100, max_stream_chars=150) as srv, \
            connect(srv.url) as ws:
        await read_all(ws, stop_after="ready")
        await ws.send(json.dumps({"type": "text", "text": "One sentence here. " * 5}))
        await ws.send(json.dumps({"type": "text", "text": "Two sentences here. " * 4}))
        t = await read_all(ws)
        err = t.of_type("error")[-1]
        assert err["code"] == "text_too_long" and err["fatal"] is True
        assert t.close_code == 1008


async def test_idle_stream_is_closed() -> None:
    async with run_server(idle_timeout_s=0.5) as srv, connect(srv.url) as ws:
        t = await read_all(ws, timeout_s=10)
        assert t.close_code == 1008


async def test_streams_are_counted_under_the_close_code_the_server_sent() -> None:
    """litestream_streams_total (and the summary line) name the code on the server's close
    frame. aiohttp records 1000 for a close the server starts while its reader waits, and 1006
    for a frame it refused, so idle timeouts were counted as normal and 1009s as abnormal."""
    async with run_server(idle_timeout_s=0.5) as srv:
        async with connect(srv.url) as ws:
            idle = await read_all(ws, timeout_s=10)
        async with connect(srv.url, max_size=None) as ws:
            await read_all(ws, stop_after="ready")
            await ws.send(json.dumps({"type": "text", "text": "y" * 70_000}))
            big = await read_all(ws)
        assert (idle.close_code, big.close_code) == (1008, 1009)

        def closed(label: str) -> float:
            value = srv.server.metrics.registry.get_sample_value(
                "litestream_streams_total", {"close_code": label})
            return value or 0.0

        labels = ("normal", "going_away", "policy", "too_big", "internal", "try_again",
                  "abnormal", "other")
        await until(lambda: sum(closed(label) for label in labels) == 2)
        assert {label: closed(label) for label in labels if closed(label)} == {
            "policy": 1, "too_big": 1}


# ---------------------------------------------------------------- metrics and logs

async def test_metrics_move_with_traffic(caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.INFO, logger="litestream")
    async with run_server(max_streams=1) as srv:
        async with connect(srv.url) as ws:
            await ws.send(json.dumps({"type": "text", "text": "Count me in. Secret words."}))
            await ws.send(json.dumps({"type": "end"}))
            await read_all(ws)
        await refused_status(srv.url + "?format=mp3")
        status, _, body = await asyncio.to_thread(http_get, srv.http_url + "/metrics")
    text = body.decode()
    assert status == 200

    def value(line_start: str) -> float:
        line = next(x for x in text.splitlines() if x.startswith(line_start))
        return float(line.rsplit(" ", 1)[1])

    assert value("litestream_ttfa_seconds_count") == 1
    assert value("litestream_audio_seconds_total") > 0
    assert value("litestream_synthesis_seconds_total") > 0
    # Two sentences: two front passes, and at least one decode window each, timed by kind.
    assert value('litestream_step_seconds_count{kind="encode"}') == 2
    assert value('litestream_step_seconds_count{kind="decode"}') >= 2
    assert 0 < value('litestream_step_seconds_sum{kind="encode"}') < value(
        "litestream_synthesis_seconds_total")
    assert value("litestream_chunk_slack_seconds_count") >= 1
    assert value("litestream_bytes_sent_total") > 0
    assert value('litestream_refusals_total{reason="bad_param"}') == 1
    assert "session" not in text  # no per-session labels
    # One structured summary line per finished stream, with counts and not the text.
    summaries = [r for r in caplog.records if getattr(r, "event", "") == "stream_summary"]
    assert len(summaries) == 1
    assert summaries[0].chars == len("Count me in. Secret words.")  # type: ignore[attr-defined]
    assert all("Secret words" not in r.getMessage() for r in caplog.records)


# ---------------------------------------------------------------- slow clients

async def _closed_by_server(reader: asyncio.StreamReader, within_s: float) -> bytes:
    """What the server sent before it closed the connection (b"" if nothing)."""
    async with asyncio.timeout(within_s):
        return await reader.read()


async def test_connections_that_never_finish_a_request_are_closed() -> None:
    async with run_server(request_timeout_s=1.0) as srv:
        silent = await asyncio.open_connection("127.0.0.1", srv.port)
        half_headers = await asyncio.open_connection("127.0.0.1", srv.port)
        half_headers[1].write(b"POST /v1/audio/speech HTTP/1.1\r\nHost: x\r\n")
        half_body = await asyncio.open_connection("127.0.0.1", srv.port)
        half_body[1].write(b"POST /v1/audio/speech HTTP/1.1\r\nHost: x\r\n"
                           b"Content-Type: application/json\r\nContent-Length: 100\r\n\r\n"
                           b'{"input": "He')
        # A stream past its handshake is not an idle HTTP connection: it outlives the timeout.
        async with connect(srv.url) as ws:
            assert await _closed_by_server(silent[0], 10) == b""
            assert await _closed_by_server(half_headers[0], 10) == b""
            # The body that trickles: an answer, then the close (after aiohttp's lingering
            # read of what the client still sends, up to 10 s).
            async with asyncio.timeout(10):
                answer = await half_body[0].readuntil(b"request_timeout")
            assert answer.startswith(b"HTTP/1.1 408"), answer[:200]
            assert b"Connection: close" in answer
            await ws.send(json.dumps({"type": "text", "text": "Still here.", "flush": True}))
            await ws.send(json.dumps({"type": "end"}))
            kinds = [json.loads(m)["type"] async for m in ws if isinstance(m, str)]
            assert kinds[-1] == "done"
        for _, writer in (silent, half_headers, half_body):
            writer.close()


# ---------------------------------------------------------------- a start that cannot go on

def test_a_taken_port_stops_the_start_with_one_line() -> None:
    # Another process holds the port: the server says so and exits 1, with no traceback and
    # no worker thread left for the interpreter's exit to abort on ("terminate called").
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        env = {k: v for k, v in os.environ.items() if not k.startswith("LITESTREAM_")}
        done = subprocess.run(
            [sys.executable, "-m", "litestream", "serve", "--port", str(port), "--workers", "2",
             "--no-kokoro"], cwd=ROOT, env=env, capture_output=True, text=True, timeout=120)
    assert done.returncode == 1, done.stderr
    assert f"cannot listen on 127.0.0.1:{port}: Address already in use" in done.stderr
    assert "Traceback" not in done.stderr and "terminate called" not in done.stderr
    assert done.stdout == ""


def test_a_bad_setting_goes_to_stderr() -> None:
    done = subprocess.run([sys.executable, "-m", "litestream", "serve", "--workers", "0"],
                          cwd=ROOT, capture_output=True, text=True, timeout=60)
    assert done.returncode == 2
    assert "litestream serve: invalid setting workers" in done.stderr and done.stdout == ""


# ---------------------------------------------------------------- drain on SIGTERM

@pytest.fixture
def serve_process() -> Iterator[tuple[subprocess.Popen[bytes], int]]:
    port = free_port()
    env = {k: v for k, v in os.environ.items() if not k.startswith("LITESTREAM_")}
    proc = subprocess.Popen(
        [sys.executable, "-m", "litestream", "serve", "--port", str(port), "--workers", "2",
         "--drain-grace-s", "3", "--deterministic", "--no-kokoro"],  # drain, not voices
        cwd=ROOT, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
    )
    # The server listens at once (/healthz) and turns ready once every worker is warm
    # (/readyz): streams are for a ready server, as a load balancer's readiness probe decides.
    deadline = time.monotonic() + 90
    while time.monotonic() < deadline:
        try:
            if http_get(f"http://127.0.0.1:{port}/readyz")[0] == 200:
                break
        except OSError:
            pass
        time.sleep(0.2)
    else:
        proc.kill()
        pytest.fail("server did not start: " + (proc.stdout.read().decode() if proc.stdout
                                                else ""))
    yield proc, port
    if proc.poll() is None:
        proc.kill()
    proc.wait(10)


async def test_sigterm_drains_in_flight_streams(
        serve_process: tuple[subprocess.Popen[bytes], int]) -> None:
    proc, port = serve_process
    url = f"ws://127.0.0.1:{port}/v1/stream"
    long_text = " ".join(f"Sentence {i} of a text that will not finish in time." for i in range(80))
    async with connect(url) as short_ws, connect(url) as long_ws:
        await short_ws.send(json.dumps({"type": "text", "text": "A short goodbye."}))
        await long_ws.send(json.dumps({"type": "text", "text": long_text}))
        await read_all(long_ws, stop_after="chunk")
        proc.send_signal(signal.SIGTERM)
        await asyncio.sleep(0.3)
        status, _, _ = await asyncio.to_thread(http_get, f"http://127.0.0.1:{port}/readyz")
        assert status == 503
        assert (await refused_status(url))[0] == 503
        # A stream in flight finishes within the grace period...
        await short_ws.send(json.dumps({"type": "end"}))
        short = await read_all(short_ws)
        assert short.events[-1]["type"] == "done" and short.close_code == 1000
        # ...and one that cannot is closed with 1001 when the grace runs out.
        long = await read_all(long_ws, timeout_s=20)
        assert long.close_code == 1001
    assert await asyncio.to_thread(proc.wait, 20) == 0


def test_second_signal_exits_at_once(
        serve_process: tuple[subprocess.Popen[bytes], int]) -> None:
    proc, port = serve_process

    async def hold_stream() -> None:
        async with connect(f"ws://127.0.0.1:{port}/v1/stream") as ws:
            await ws.recv()
            proc.send_signal(signal.SIGTERM)
            await asyncio.sleep(0.5)
            proc.send_signal(signal.SIGTERM)
            with pytest.raises(ConnectionClosed):
                async with asyncio.timeout(5):
                    while True:
                        await ws.recv()

    started = time.monotonic()
    asyncio.run(hold_stream())
    assert proc.wait(5) == -signal.SIGTERM
    assert time.monotonic() - started < 3  # well inside the 3 s grace + close


# ---------------------------------------------------------------- TLS

async def test_tls_serves_wss(tmp_path: Path) -> None:
    cert, key = tmp_path / "cert.pem", tmp_path / "key.pem"
    made = subprocess.run(
        ["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "1",
         "-subj", "/CN=127.0.0.1", "-addext", "subjectAltName=IP:127.0.0.1",
         "-keyout", str(key), "-out", str(cert)],
        capture_output=True, check=False,
    )
    assert made.returncode == 0, made.stderr.decode()
    client_ctx = ssl.create_default_context(cafile=str(cert))
    async with run_server(tls_cert=cert, tls_key=key) as srv:
        url = f"wss://127.0.0.1:{srv.port}/v1/stream"
        async with connect(url, ssl=client_ctx) as ws:
            assert json.loads(await ws.recv())["type"] == "ready"
        with pytest.raises(ssl.SSLError):  # a client that does not trust it is refused
            async with connect(url, ssl=ssl.create_default_context()):
                pass


# ---------------------------------------------------------------- open files

@contextlib.contextmanager
def serve_with_open_files(soft: int, hard: int) -> Iterator[tuple[subprocess.Popen[bytes], int]]:
    """`litestream serve` (the synthetic voice: only the open files matter here) started
    under an open-files limit of (soft, hard), as a shell's `ulimit -n` would set it."""
    port = free_port()
    env = {k: v for k, v in os.environ.items() if not k.startswith("LITESTREAM_")}
    proc = subprocess.Popen(
        [sys.executable, "-m", "litestream", "serve", "--port", str(port), "--workers", "4",
         "--voice", "synthetic", "--no-kokoro", "--streams-per-key", "1000"],
        cwd=ROOT, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
        preexec_fn=lambda: resource.setrlimit(resource.RLIMIT_NOFILE, (soft, hard)),
    )
    try:
        deadline = time.monotonic() + 90
        while time.monotonic() < deadline and proc.poll() is None:
            with contextlib.suppress(OSError):
                if http_get(f"http://127.0.0.1:{port}/readyz")[0] == 200:
                    break
            time.sleep(0.2)
        else:
            proc.kill()
            pytest.fail("server did not start: " + (proc.stdout.read().decode()
                                                    if proc.stdout else ""))
        yield proc, port
    finally:
        if proc.poll() is None:
            proc.terminate()
        proc.wait(30)


def _open_files_limits(pid: int) -> tuple[int, int]:
    line = next(x for x in Path(f"/proc/{pid}/limits").read_text().splitlines()
                if x.startswith("Max open files"))
    soft, hard = line.split()[3:5]
    return int(soft), int(hard)


async def test_the_server_raises_its_open_files_limit_to_the_hard_one() -> None:
    _, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if hard == resource.RLIM_INFINITY or hard <= 256:
        pytest.skip(f"the hard limit ({hard}) leaves nothing to raise")
    with serve_with_open_files(256, hard) as (proc, _):
        assert _open_files_limits(proc.pid) == (hard, hard)
        proc.terminate()
        out = proc.stdout.read().decode() if proc.stdout else ""
    assert f"soft limit raised from 256 to {hard}" in out


async def test_past_the_open_files_limit_a_stream_is_refused_not_reset() -> None:
    # 160 open files: the server keeps 40 for itself (a quarter, at most OWN_FILES) and
    # holds at most 120 streams. Before, the streams past what was left were reset at accept.
    with serve_with_open_files(160, 160) as (proc, port):
        url = f"ws://127.0.0.1:{port}/v1/stream"
        async with contextlib.AsyncExitStack() as stack:
            streams = await asyncio.gather(*(stack.enter_async_context(connect(url))
                                             for _ in range(120)))
            readies = await asyncio.gather(*(ws.recv() for ws in streams))
            assert all(json.loads(r)["type"] == "ready" for r in readies)
            status, headers, body = await refused_status(url)
            assert status == 503 and int(headers["Retry-After"]) >= 1
            assert json.loads(body)["error"]["code"] == "overloaded"
            _, _, metrics = await asyncio.to_thread(http_get, f"http://127.0.0.1:{port}/metrics")
        assert 'litestream_refusals_total{reason="max_streams"} 1.0' in metrics.decode()
        proc.terminate()
        out = proc.stdout.read().decode() if proc.stdout else ""
    assert "at most 120 streams: the open-files limit is 160" in out
