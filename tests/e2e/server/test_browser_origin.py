"""The browser against a server on another origin, and a browser refused: real chromium.

`cors`: the player and a page's own `fetch` on one origin use a server on another
(litestream/server/cors.py), and a page on an origin the server does not allow is kept out.
`refused`: the player tells the user why its handshake was refused (its WebSocket sees only
close 1006) and retries after the server's Retry-After. Both drive
clients/browser/test/browser_test.mjs (see test_browser.py for what it needs).
"""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator

import pytest
from aiohttp import web

from loadtest.lib.net import free_port
from tests.e2e.server.test_browser import ROOT, _browser_test, _prerequisites, _summary
from tests.serverutil import run_server

pytestmark = pytest.mark.browser

KEY = "browser-key"
PLAYER = ROOT / "clients" / "browser"


@contextlib.asynccontextmanager
async def player_elsewhere(*ports: int) -> AsyncIterator[list[str]]:
    """The player's files served as a web app's own server would, on each of `ports`: other
    origins than litestream's. Yields their base URLs."""

    async def page(request: web.Request) -> web.FileResponse:
        return web.FileResponse(PLAYER / "index.html")

    async def static(request: web.Request) -> web.FileResponse:
        name = request.match_info["name"]
        if "/" in name or not (PLAYER / name).is_file():
            raise web.HTTPNotFound()
        return web.FileResponse(PLAYER / name)

    app = web.Application()
    app.router.add_get("/", page)
    app.router.add_get("/static/{name}", static)
    runner = web.AppRunner(app)
    await runner.setup()
    for port in ports:
        await web.TCPSite(runner, "127.0.0.1", port).start()
    try:
        yield [f"http://127.0.0.1:{port}" for port in ports]
    finally:
        await runner.cleanup()


async def test_browser_on_another_origin_speaks_and_one_not_allowed_is_kept_out() -> None:
    node, chromium = _prerequisites()
    allowed_port, denied_port = free_port(), free_port()
    async with player_elsewhere(allowed_port, denied_port) as (allowed_url, denied_url), \
            run_server(api_keys=(KEY,), allowed_origins=(allowed_url,)) as srv:
        returncode, output = await _browser_test(
            node, "--url", srv.http_url, "--only", "cors", "--page-url", allowed_url,
            "--denied-url", denied_url, "--key", KEY, "--chromium", chromium)
    summary = _summary(output)
    assert returncode == 0 and summary["ok"], output[-4000:]
    allowed, denied = summary["cors"]["allowed"], summary["cors"]["denied"]
    assert allowed["origin"] == allowed_url and denied["origin"] == denied_url
    # The player on the allowed origin: its voice picker came from GET /v1/voices over there,
    # and it spoke to the end.
    assert allowed["picker"] == 1, allowed
    assert allowed["state"] == "done" and allowed["chunks"] > 0, allowed
    # The page's own fetch: preflighted (JSON, Authorization, an X-Stainless-* header), read,
    # decoded and played.
    fetched = allowed["fetch"]
    assert fetched.get("error") is None, fetched
    assert fetched["status"] == 200 and fetched["contentType"] == "audio/wav", fetched
    assert fetched["durationMs"] > 500 and fetched["played"] is True, fetched
    # The headers that say what the body is (X-Sample-Rate: the only place `pcm`'s rate is
    # stated) and which request it was (X-Request-Id, as the official client reads it).
    assert fetched["sampleRateHeader"] == "22050", fetched  # the Piper voice's, in a WAV
    assert fetched["requestId"] and fetched["requestId"].startswith("req_"), fetched
    assert fetched["voiceHeader"], fetched
    # A refusal is readable too (so is its reason), and so is GET /v1/models.
    assert fetched["badKey"] == {"status": 401, "code": "invalid_api_key"}, fetched
    assert fetched["models"]["status"] == 200 and fetched["models"]["count"] > 0, fetched
    # The origin not allowed: every fetch is blocked before the page reads anything, the
    # player's handshake is refused, and the player says why it cannot know more.
    blocked = denied["fetch"]
    assert blocked.get("status") is None and blocked["error"].startswith("TypeError"), blocked
    assert "error" in blocked["badKey"] and "error" in blocked["models"], blocked
    assert denied["picker"] == 0, denied
    assert denied["state"] == "error", denied
    assert "allowed origins" in denied["message"] and denied_url in denied["message"], denied
    # The server's own player, its origin not on the list: the handshake is refused, the
    # player's same-origin check carries no Origin and would be let in; it says both.
    own = summary["cors"]["own"]
    assert own["state"] == "error", own
    assert "HTTP 426" in own["message"] and srv.http_url in own["message"], own
    assert "allowed origins" in own["message"], own


async def test_browser_player_says_why_its_handshake_was_refused_and_retries() -> None:
    node, chromium = _prerequisites()
    async with run_server(api_keys=(KEY,), max_streams=1) as srv:
        returncode, output = await _browser_test(
            node, "--url", srv.http_url, "--only", "refused", "--key", KEY,
            "--chromium", chromium)
    summary = _summary(output)
    assert returncode == 0 and summary["ok"], output[-4000:]
    refused = summary["refused"]
    # No key: the server's 401 and its message, not "connection closed (1006)".
    no_key = refused["noKey"]
    assert no_key["state"] == "error", no_key
    assert "missing or invalid API key" in no_key["message"] and "401" in no_key["message"]
    assert no_key["refusal"]["code"] == "unauthorized", no_key
    # The server full: 503 with its reason and Retry-After, shown while the player waits...
    waiting = refused["waiting"]
    assert waiting["state"] == "waiting", waiting
    assert waiting["refusal"]["status"] == 503 and waiting["refusal"]["code"] == "overloaded"
    assert waiting["refusal"]["retryAfterS"] >= 1, waiting
    assert "as many streams as it may" in waiting["message"], waiting
    assert "retrying in" in waiting["message"] and waiting["stopEnabled"], waiting
    # ... then the retry, once the server has room, plays to the end.
    after = refused["after"]
    assert after["state"] == "done" and after["chunks"] > 0 and after["retries"] >= 1, after
