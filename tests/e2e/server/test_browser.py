"""The browser player in a real browser: Debian's headless chromium, driven by playwright-core.

Starts a real server on a free loopback port and runs clients/browser/test/browser_test.mjs
against it: one stream played to the end (played audio == the server's chunk durations,
0 underruns, audio clock at real time, and the read-along highlighting the word under the
playback position, within 100 ms, at moments sampled as it plays) and one stopped mid-stream
(state "stopped", the server's `cleared`, no audio after it). This test never skips: when
chromium or the node modules are missing it fails and says to run `bash .ci/browser-deps.sh`.
"""

from __future__ import annotations

import asyncio
import json
import os
import shutil
from pathlib import Path
from typing import Any

import pytest

from litestream.engine import registry
from tests import REPO
from tests.fakes import make_tiny_piper
from tests.serverutil import run_server, shared_voices

pytestmark = pytest.mark.browser

ROOT = REPO
TEST_DIR = ROOT / "clients" / "browser" / "test"
SCRIPT = TEST_DIR / "browser_test.mjs"
PNG_MAGIC = b"\x89PNG\r\n\x1a\n"
NODE_TIMEOUT_S = 180


def _prerequisites() -> tuple[str, str]:
    """(node, chromium) paths, or a test failure naming what is missing and the fix."""
    missing = []
    node = shutil.which("node")
    if node is None:
        missing.append("node (Node.js 18+) is not on PATH")
    chromium = os.environ.get("CHROMIUM") or shutil.which("chromium") or "/usr/bin/chromium"
    if not Path(chromium).is_file():
        missing.append(f"no chromium at {chromium} (Debian package `chromium`)")
    if not (TEST_DIR / "node_modules" / "playwright-core").is_dir():
        missing.append(f"{TEST_DIR.relative_to(ROOT)}/node_modules/playwright-core is missing")
    if missing:
        pytest.fail(
            "browser test prerequisites missing: " + "; ".join(missing)
            + ". Run `bash .ci/browser-deps.sh` (as root: apt-get install chromium, "
            "npm install in clients/browser/test).",
            pytrace=False,
        )
    assert node is not None
    return node, chromium


def _summary(output: str) -> dict[str, Any]:
    for line in reversed(output.splitlines()):
        if line.startswith("RESULT "):
            result: dict[str, Any] = json.loads(line[len("RESULT "):])
            return result
    pytest.fail(f"browser_test.mjs printed no RESULT line; output:\n{output[-4000:]}")


def _assert_png(path: Path) -> None:
    assert path.is_file(), f"no screenshot at {path}"
    data = path.read_bytes()
    assert data[:8] == PNG_MAGIC, f"{path} is not a PNG"
    assert len(data) > 5000, f"{path} is suspiciously small ({len(data)} bytes)"


async def test_browser_player_plays_and_stops(tmp_path: Path) -> None:
    node, chromium = _prerequisites()
    artifacts = Path(os.environ.get("BROWSER_TEST_ARTIFACTS", tmp_path))
    artifacts.mkdir(parents=True, exist_ok=True)
    play_png = artifacts / "browser-play.png"
    stop_png = artifacts / "browser-stop.png"

    # A second voice (a tiny German Piper model) so the picker has a choice to show.
    voices = {**shared_voices(), **registry.load_voices(
        make_tiny_piper(tmp_path), [], kokoro_voices=False, deterministic=True)}
    async with run_server(voices) as srv:
        returncode, output = await _browser_test(
            node, "--url", srv.http_url, "--screenshot", str(play_png),
            "--stop-screenshot", str(stop_png), "--chromium", chromium)
    summary = _summary(output)

    assert returncode == 0 and summary["ok"], (
        f"browser checks failed: {summary.get('failures')}\noutput:\n{output[-4000:]}"
    )
    play, stop = summary["play"], summary["stop"]
    # The voice picker lists every voice the server has, in its order, the default selected.
    picker = summary["picker"]
    assert picker["options"] == picker["voiceIds"] == ["en_US-joe-medium", "de_DE-tiny-x_low"]
    assert picker["selected"] == "en_US-joe-medium"
    assert "male" in picker["labels"][0] and "16000 Hz" in picker["labels"][1]
    # Played to the end: every chunk's audio, no dry spell, at real time.
    assert play["state"] == "done"
    assert play["chunks"] > 0
    assert abs(play["playedMs"] - play["audioMs"]) <= max(300, 0.1 * play["audioMs"])
    assert play["underruns"] == 0
    assert play["sampleRate"] == play["contextRate"] == 22050  # no resampling in chromium
    assert 0 < play["ttfaMs"] < 30_000  # sanity only: latency is loadtest territory, not this
    assert 0.8 < play["realtimeRatio"] < 1.25
    assert play["pageProblems"] == []
    # Read-along: the player asked for word timestamps and got them; at every sampled moment
    # the highlighted word was the server's word under the audio clock's position (100 ms).
    highlight = play["highlight"]
    assert play["words"] == highlight["wordsTimed"] > 0
    assert highlight["highlighted"] >= 5 and highlight["distinct"] >= 3, highlight
    assert highlight["wrong"] == [] and highlight["maxErrorMs"] <= 100, highlight
    # Stopped mid-stream: cleared by the server, nothing played after.
    assert stop["state"] == "stopped"
    assert stop["clearSent"] is True
    # protocol-v1: `clear` is a barge-in and must work after `end` too (the player sends
    # text + end at once, so Stop always comes after end).
    assert stop["cleared"] is True
    assert stop["playedAfterMs"] == stop["playedLaterMs"]
    assert 0 <= stop["playedAfterMs"] - stop["playedAtStopMs"] < 250
    _assert_png(play_png)
    _assert_png(stop_png)


async def _browser_test(node: str, *args: str) -> tuple[int | None, str]:
    """browser_test.mjs with `args`, waited for without blocking the server on this loop:
    its exit status and output."""
    proc = await asyncio.create_subprocess_exec(
        node, str(SCRIPT), *args,
        cwd=TEST_DIR, stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.STDOUT,
    )
    try:
        raw, _ = await asyncio.wait_for(proc.communicate(), NODE_TIMEOUT_S)
    except TimeoutError:
        proc.kill()
        await proc.wait()
        pytest.fail(f"browser_test.mjs {' '.join(args)} ran past {NODE_TIMEOUT_S} s")
    return proc.returncode, raw.decode(errors="replace")


async def _run_long(node: str, chromium: str, http_url: str) -> dict[str, Any]:
    """browser_test.mjs --only long against a server: the page's state, chunks and message."""
    returncode, output = await _browser_test(node, "--url", http_url, "--only", "long",
                                             "--chromium", chromium)
    summary = _summary(output)
    assert returncode == 0 and summary["ok"], output[-4000:]
    long: dict[str, Any] = summary["long"]
    assert long["pageProblems"] == [], long
    return long


async def test_browser_player_speaks_a_text_over_one_messages_limit() -> None:
    # 27191 characters: as one `text` message the server refused it (text_too_long, buffered
    # text over 20000) and the page went to "done" with nothing spoken and nothing said.
    node, chromium = _prerequisites()
    async with run_server() as srv:
        long = await _run_long(node, chromium, srv.http_url)
    assert long["chars"] > 20000
    assert long["chunks"] > 0 and long["state"] == "playing", long
    assert long["message"] == "", long


async def test_browser_player_keeps_a_servers_error_on_screen_after_done() -> None:
    # Every piece of the text is over this server's buffered-text limit: each is refused with
    # a non-fatal text_too_long and the stream ends with nothing spoken. "done" used to wipe
    # the error, leaving the user no reason for the silence.
    node, chromium = _prerequisites()
    async with run_server(max_buffered_chars=100) as srv:
        long = await _run_long(node, chromium, srv.http_url)
    assert long["state"] == "done" and long["chunks"] == 0, long
    assert "text_too_long" in long["message"], long
