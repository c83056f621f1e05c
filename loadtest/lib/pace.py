"""What `python -m loadtest.pace_bench` measures (issue 18): downloads against the engine's own
speed, downloads beside real-time listeners, a campaign of downloads with the official `openai`
client, and the realtime bars (a burst's first audio against its compute floor, taken from the
server's own DEBUG lines).

Each tree (a checkout: the base before a change, the branch after it) is served by its own
`litestream serve` subprocess, run from that checkout, one after the other on the same machine
in one run, with the sentence cache off (a repeated text must cost synthesis, not a lookup).
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import re
import statistics
import subprocess
import sys
import time
import urllib.request
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import Any

from litestream.scheduler import SchedulerConfig
from loadtest.lib.recorder import Summary
from loadtest.lib.streams import run_load
from loadtest.lib.texts import LONG, PARAGRAPH

# One line per finished step at DEBUG (synthesis/dispatcher.py, Synthesis.take_result): its
# session, kind, frames and time are fields, `[SESSION] step frames=N kind=K ... took_ms=T`
# in the plain format, keys of the object in the JSON one. A tree from before 2026-12-07
# (a base checkout) wrote them in the message: `session=S seq=N KIND frames=N took T ms`.
_PLAIN_STEP = re.compile(r" litestream\.synthesis \[(\w+)\] step (.*)$")
_FIELD = re.compile(r"(\w+)=(\S+)")
_OLD_STEP = re.compile(r"session=(\w+) seq=\d+ (encode|decode) frames=(\d+) took ([\d.]+) ms")


@dataclass(frozen=True)
class StepLine:
    """One step's DEBUG line: the stream, `encode` or `decode`, its frames and compute."""

    session: str
    kind: str
    frames: int
    took_ms: float


def step_lines(log: str) -> list[StepLine]:
    """Every step's line in a server's log (plain or JSON, this tree's or an older one's)."""
    steps: list[StepLine] = []
    for line in log.splitlines():
        if line.startswith("{"):
            try:
                obj = json.loads(line)
            except ValueError:
                continue
            if obj.get("msg") == "step" and "session" in obj:
                steps.append(StepLine(str(obj["session"]), str(obj["kind"]),
                                      int(obj["frames"]), float(obj["took_ms"])))
                continue
            line = str(obj.get("msg", ""))
        if old := _OLD_STEP.search(line):
            steps.append(StepLine(old[1], old[2], int(old[3]), float(old[4])))
        elif new := _PLAIN_STEP.search(line):
            fields = dict(_FIELD.findall(new[2]))
            steps.append(StepLine(new[1], fields["kind"], int(fields["frames"]),
                                  float(fields["took_ms"])))
    return steps


def download_text(chars: int = 2500) -> str:
    """About `chars` characters of plain English, whole sentences (LONG, the paragraph, then
    LONG again as far as needed)."""
    sentences = re.split(r"(?<=[.!?])\s+", f"{LONG} {PARAGRAPH} {LONG}")
    out: list[str] = []
    for sentence in sentences:
        if len(" ".join(out)) >= chars:
            break
        out.append(sentence)
    return " ".join(out)


def campaign_texts(n: int) -> list[str]:
    """`n` different paragraphs: a voice-message campaign (each opens with its own line)."""
    return [f"Hello, this is message number {i + 1} for you. {PARAGRAPH}" for i in range(n)]


@dataclass
class Server:
    """A `litestream serve` subprocess run from one checkout, its stderr in a file."""

    tree: Path
    port: int
    log_path: Path
    proc: subprocess.Popen[bytes] | None = None

    @property
    def ws_url(self) -> str:
        return f"ws://127.0.0.1:{self.port}/v1/stream"

    @property
    def http_url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def log_size(self) -> int:
        return self.log_path.stat().st_size

    def log_since(self, offset: int) -> str:
        with self.log_path.open("rb") as fh:
            fh.seek(offset)
            return fh.read().decode(errors="replace")


@contextlib.asynccontextmanager
async def serve(tree: Path, port: int, log_path: Path,
                extra: tuple[str, ...] = ()) -> AsyncIterator[Server]:
    """Start `litestream serve` from `tree` (its own code: cwd and PYTHONPATH are the tree),
    wait for /readyz, stop it (SIGTERM, then kill) on the way out."""
    env = dict(os.environ, PYTHONPATH=str(tree))
    args = [sys.executable, "-m", "litestream", "serve", "--port", str(port),
            "--log-level", "DEBUG", "--cache-bytes", "0", *extra]
    server = Server(tree, port, log_path)
    with log_path.open("wb") as log:
        server.proc = subprocess.Popen(args, cwd=tree, env=env, stdout=log, stderr=log)
    try:
        deadline = time.monotonic() + 180
        while True:
            if server.proc.poll() is not None:
                raise RuntimeError(f"server from {tree} exited: see {log_path}")
            try:
                with urllib.request.urlopen(server.http_url + "/readyz", timeout=2) as r:
                    if r.status == 200:
                        break
            except OSError:
                pass
            if time.monotonic() > deadline:
                raise RuntimeError(f"server from {tree} not ready in 180 s: see {log_path}")
            await asyncio.sleep(0.5)
        yield server
    finally:
        server.proc.terminate()
        try:
            server.proc.wait(timeout=40)
        except subprocess.TimeoutExpired:
            server.proc.kill()
            server.proc.wait()


# ---------------------------------------------------------------- the floor of a burst

# A decode window's context margin per side, in decoder frames' worth of compute
# (PiperVoice.context_frames for the bundled voice): scales a window's measured time to
# another length when the burst has none of that length to measure.
_CONTEXT_FRAMES = 17


def burst_floor_s(log: str, workers: int, first_frames: int | None = None
                  ) -> tuple[float, int]:
    """The compute floor of a burst's first audio, from the server's DEBUG lines written
    during it: each stream's first encode step and first decode window (as measured), summed,
    over the workers. Returns (floor seconds, streams counted).

    `first_frames`: count every first window longer than that as one of `first_frames` (the
    scheduler lengthens the first windows at a burst's start; this is the floor had each been
    as short as alone): the median time of the burst's first windows of exactly that length,
    or, with none, the window's own time scaled by its frames plus context margins."""
    first_encode: dict[str, float] = {}
    first_window: dict[str, tuple[int, float]] = {}
    for step in step_lines(log):
        if step.kind == "encode":
            first_encode.setdefault(step.session, step.took_ms)
        elif step.session in first_encode:
            first_window.setdefault(step.session, (step.frames, step.took_ms))
    streams = [s for s in first_window if s in first_encode]
    if first_frames is not None:
        short = [ms for frames, ms in first_window.values() if frames == first_frames]
        for s in streams:
            frames, ms = first_window[s]
            if frames > first_frames:
                ms = statistics.median(short) if short else ms * (
                    first_frames + 2 * _CONTEXT_FRAMES) / (frames + 2 * _CONTEXT_FRAMES)
                first_window[s] = (first_frames, ms)
    total_ms = sum(first_encode[s] + first_window[s][1] for s in streams)
    return total_ms / 1000.0 / workers, len(streams)


# ---------------------------------------------------------------- downloads

@dataclass
class Download:
    ok: bool
    wall_s: float
    audio_s: float
    first_byte_s: float | None = None
    error: str = ""


async def download(http_url: str, text: str, *, client: Any = None,
                   response_format: str = "pcm") -> Download:
    """One `POST /v1/audio/speech` with the official `openai` client (its retries on), read to
    its end; pcm, so the bytes and the X-Sample-Rate header say the audio's length."""
    import openai

    own = client is None
    api = client or openai.AsyncOpenAI(base_url=http_url + "/v1", api_key="unused",
                                       max_retries=8, timeout=600)
    t0 = time.monotonic()
    first: float | None = None
    size = 0
    rate = 24_000  # OpenAI's pcm rate, until the response says
    try:
        async with api.audio.speech.with_streaming_response.create(
                model="tts-1", voice="alloy", input=text, response_format=response_format,
        ) as response:
            rate = int(response.headers.get("x-sample-rate", rate))
            async for chunk in response.iter_bytes():
                if first is None and chunk:
                    first = time.monotonic() - t0
                size += len(chunk)
    except openai.APIError as exc:
        return Download(False, time.monotonic() - t0, size / 2 / rate, first,
                        f"{type(exc).__name__}: {exc}")
    finally:
        if own:
            await api.close()
    return Download(True, time.monotonic() - t0, size / 2 / rate, first)


@dataclass
class Campaign:
    sent: int
    completed: int
    wall_s: float
    audio_s: float
    errors: list[str] = field(default_factory=list)

    @property
    def throughput(self) -> float:
        """Audio seconds made per wall second, all requests together."""
        return self.audio_s / self.wall_s if self.wall_s > 0 else 0.0


async def campaign(http_url: str, n: int) -> Campaign:
    """`n` paragraph downloads sent at once with one official `openai` client and its retries
    (503 with Retry-After while admission is full)."""
    import openai

    api = openai.AsyncOpenAI(base_url=http_url + "/v1", api_key="unused", max_retries=20,
                             timeout=600)
    t0 = time.monotonic()
    try:
        done = await asyncio.gather(*(download(http_url, t, client=api)
                                      for t in campaign_texts(n)))
    finally:
        await api.close()
    wall = time.monotonic() - t0
    return Campaign(n, sum(d.ok for d in done), wall, sum(d.audio_s for d in done if d.ok),
                    [d.error for d in done if not d.ok])


# ---------------------------------------------------------------- listeners

async def listeners(server: Server, n: int) -> Summary:
    summary, _ = await run_load(server.ws_url, streams=n, arrival="burst", text="paragraph",
                                timeout_s=300)
    return summary


async def listeners_beside_download(server: Server, n: int, text: str
                                    ) -> tuple[Summary, Download]:
    """`n` real-time listeners and one download of `text`, all starting together."""
    load = asyncio.create_task(listeners(server, n))
    got = await download(server.http_url, text)
    return await load, got


@dataclass
class Burst:
    summary: Summary
    floor_s: float  # first windows as they ran
    floor_streams: int
    short_floor_s: float  # first windows as short as alone (FIRST_WINDOW_FRAMES)

    @property
    def p95_over_floor(self) -> float | None:
        return self._over(self.floor_s)

    @property
    def p95_over_short_floor(self) -> float | None:
        return self._over(self.short_floor_s)

    def _over(self, floor_s: float) -> float | None:
        p95 = self.summary.ttfa_p95_ms
        return p95 / 1000.0 / floor_s if p95 is not None and floor_s > 0 else None


# A stream's first window alone: the scheduler's own default, not a copy of it.
FIRST_WINDOW_FRAMES: int = next(
    f.default for f in fields(SchedulerConfig) if f.name == "first_window_frames")


async def burst(server: Server, n: int, workers: int) -> Burst:
    offset = server.log_size()
    summary = await listeners(server, n)
    await asyncio.sleep(0.5)  # the last lines reach the file
    log = server.log_since(offset)
    floor, counted = burst_floor_s(log, workers)
    short, _ = burst_floor_s(log, workers, FIRST_WINDOW_FRAMES)
    return Burst(summary, floor, counted, short)


def first_audio_ms(runs: list[Summary]) -> float | None:
    values = [r.ttfa_p50_ms for r in runs if r.ttfa_p50_ms is not None]
    return statistics.median(values) if values else None


def engine_throughput(runs: int, progress: Callable[[str], None] | None = None
                      ) -> tuple[str, float, list[tuple[str, float]]]:
    """`litestream bench engine`'s layouts (1x1, 1x2, 2x1) on this machine now: the best
    layout's name and throughput (audio seconds per second), and every layout's."""
    from litestream.cli.bench import bench_layouts, parse_layouts

    results = bench_layouts(parse_layouts("1x1,1x2,2x1"), runs=runs, progress=progress)
    rows = [(f"{r.layout.name} {r.sessions}", r.throughput_audio_s_per_s) for r in results]
    best = max(rows, key=lambda row: row[1])
    return best[0], best[1], rows
