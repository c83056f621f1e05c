"""CORS on a real server over loopback (litestream/server/cors.py, wired in server/app.py), and the
plain GET of the stream endpoint that tells a browser why its handshake was refused. An
HTTP client sends what a browser sends; tests/e2e/server/test_browser_origin.py does it with
chromium."""

from __future__ import annotations

import json

import aiohttp
import pytest
from websockets.asyncio.client import connect
from websockets.exceptions import InvalidStatus

from tests.serverutil import read_all, run_server

APP = "http://app.example:8080"
PREFLIGHT = {"Origin": APP, "Access-Control-Request-Method": "POST",
             "Access-Control-Request-Headers": "authorization, content-type"}
SPEECH = {"model": "tts-1", "input": "Hi.", "response_format": "pcm"}


async def test_with_no_allowlist_any_page_may_call_the_api_but_not_read_metrics() -> None:
    async with run_server() as srv, aiohttp.ClientSession(srv.http_url) as http:
        async with http.options("/v1/audio/speech", headers=PREFLIGHT) as pre:
            assert pre.status == 204
            assert pre.headers["Access-Control-Allow-Origin"] == "*"
            assert pre.headers["Access-Control-Allow-Methods"] == "POST"
            assert "Authorization" in pre.headers["Access-Control-Allow-Headers"]
            assert int(pre.headers["Access-Control-Max-Age"]) > 0
        async with http.post("/v1/audio/speech", json=SPEECH, headers={"Origin": APP}) as res:
            assert res.status == 200 and await res.read()
            assert res.headers["Access-Control-Allow-Origin"] == "*"
        async with http.get("/v1/voices", headers={"Origin": APP}) as res:
            assert res.headers["Access-Control-Allow-Origin"] == "*"
        async with http.get("/metrics", headers={"Origin": APP}) as res:
            assert res.status == 200 and "Access-Control-Allow-Origin" not in res.headers
        # An OPTIONS that is no preflight is answered as before.
        async with http.options("/v1/audio/speech") as res:
            assert res.status == 405


async def test_an_allowlist_grants_its_origins_only_and_refusals_stay_readable() -> None:
    async with run_server(allowed_origins=(APP,), api_keys=("k",)) as srv, \
            aiohttp.ClientSession(srv.http_url) as http:
        async with http.options("/v1/audio/speech", headers=PREFLIGHT) as pre:
            assert pre.status == 204 and pre.headers["Access-Control-Allow-Origin"] == APP
            assert pre.headers["Vary"] == "Origin"
        evil = {**PREFLIGHT, "Origin": "http://evil.example"}
        async with http.options("/v1/audio/speech", headers=evil) as pre:
            assert pre.status == 403 and "Access-Control-Allow-Origin" not in pre.headers
        # A refusal on an allowed origin is granted, with what a page needs to retry.
        async with http.post("/v1/audio/speech", json=SPEECH, headers={"Origin": APP}) as res:
            assert res.status == 401
            assert res.headers["Access-Control-Allow-Origin"] == APP
            assert "WWW-Authenticate" in res.headers["Access-Control-Expose-Headers"]
        # A request the browser sends without asking (a simple POST) is still refused.
        async with http.post("/v1/audio/speech", data="x", headers={
                "Origin": "http://evil.example", "Authorization": "Bearer k"}) as res:
            assert res.status == 403 and "Access-Control-Allow-Origin" not in res.headers


async def test_a_plain_get_of_the_stream_url_says_what_the_handshake_was_told() -> None:
    async with run_server(max_streams=1, streams_per_key=64) as srv, \
            aiohttp.ClientSession(srv.http_url) as http:
        # Admitted now: 426 as before.
        async with http.get("/v1/stream") as res:
            assert res.status == 426
        async with http.get("/v1/stream?voice=nobody") as res:
            assert res.status == 400
            assert (await res.json())["error"]["param"] == "voice"
        async with connect(srv.url) as first:
            await read_all(first, stop_after="ready")
            with pytest.raises(InvalidStatus) as info:
                async with connect(srv.url):
                    pass
            handshake = info.value.response
            for _ in range(20):  # asking is free: no refusal counted, nothing taken
                async with http.get("/v1/stream") as res:
                    assert res.status == handshake.status_code == 503
                    told = json.loads(await res.read())["error"]
                    assert told["code"] == json.loads(handshake.body)["error"]["code"]
                    assert told["message"] == json.loads(handshake.body)["error"]["message"]
                    assert int(res.headers["Retry-After"]) >= 1
                    assert res.headers["Cache-Control"] == "no-store"
        assert srv.server.metrics.registry.get_sample_value(
            "litestream_refusals_total", {"reason": "max_streams"}) == 1
        # The stream closed: the next handshake is let in.
        async with connect(srv.url) as second:
            assert (await read_all(second, stop_after="ready")).events[0]["type"] == "ready"
