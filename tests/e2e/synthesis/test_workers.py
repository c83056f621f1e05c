"""The worker pool and its watchdog (issue 10), on the real bundled voice.

Faults are injected by tests.fakes.FaultyVoice, a wrapper of our own engine: a marker word
in a chunk's text makes that run raise, hang (the real ONNX Runtime run repeated until the
watchdog's terminate stops it), wedge (deaf to terminate) or kill its thread.
"""

from __future__ import annotations

import asyncio
import dataclasses
import json
import os
import subprocess
import sys
import threading
import time
import urllib.request
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

import onnxruntime as ort
import pytest
from websockets.asyncio.client import connect

from litestream import config as config_mod
from litestream.engine import PiperVoice
from litestream.engine.synthetic import SyntheticCost, SyntheticVoice
from litestream.errors import SynthesisError
from litestream.scheduler import Scheduler, StepKind, SynthesisStep
from litestream.synthesis import scheduler_config, workers
from litestream.synthesis.workers import (
    TERMINATED,
    PoolEvent,
    WatchdogConfig,
    WorkerPool,
    WorkResult,
)
from tests import REPO
from tests.fakes import MARKERS, Fault, FaultPlan, FaultyVoice, faulty_server
from tests.serverutil import read_all

SHORT = "A short sentence to speak."


def job(text: str, seq: int = 0, predicted_compute_s: float = 5.0) -> SynthesisStep:
    """A sentence's encode step. Fault-free runs get a generous limit (3 x 5 s) so that a
    loaded test machine never trips the watchdog; faulted ones get the 0.3 s floor."""
    return SynthesisStep(stream_id="s", seq=seq, kind=StepKind.ENCODE, text=text, voice="v",
                         speed=1.0, predicted_compute_s=predicted_compute_s)


class PoolHarness:
    """A pool of `workers` threads on FaultyVoice sessions; results and events recorded."""

    def __init__(self, voice: PiperVoice, workers: int, plan: FaultPlan) -> None:
        self.results: asyncio.Queue[WorkResult] = asyncio.Queue()
        self.events: list[PoolEvent] = []
        self.pool = WorkerPool(
            {"v": FaultyVoice(voice, plan)}, workers, asyncio.get_running_loop(),
            self.results.put_nowait, watchdog=WatchdogConfig(factor=3.0, floor_s=0.3,
                                                             grace_s=0.3),
            on_change=self.events.append)

    async def run(self, *jobs: SynthesisStep) -> list[WorkResult]:
        """Dispatch as a batch, wait for one result per job."""
        self.pool.dispatch(list(jobs))
        async with asyncio.timeout(60):
            return [await self.results.get() for _ in jobs]

    async def until(self, cond: Any) -> None:
        async with asyncio.timeout(60):
            while not cond():
                await asyncio.sleep(0.01)


@asynccontextmanager
async def harness(voice: PiperVoice, workers: int = 1) -> AsyncIterator[tuple[PoolHarness,
                                                                              FaultPlan]]:
    plan = FaultPlan()
    h = PoolHarness(voice, workers, plan)
    await h.pool.ready()
    try:
        yield h, plan
    finally:
        plan.release()
        await asyncio.to_thread(h.pool.close)


# ---------------------------------------------------------------- the engine's terminate

def test_terminate_from_another_thread_stops_a_real_run(voice: PiperVoice) -> None:
    ids = voice.phoneme_ids("A long text to keep the model busy for a while. " * 30)
    options = ort.RunOptions()
    failure: list[BaseException] = []
    started = threading.Event()

    def run() -> None:
        started.set()
        try:
            voice.synthesize_ids([ids], run_options=options)
        except BaseException as exc:
            failure.append(exc)

    thread = threading.Thread(target=run)
    thread.start()
    started.wait()
    options.terminate = True
    thread.join(60)
    assert not thread.is_alive()
    assert len(failure) == 1 and isinstance(failure[0], SynthesisError)
    # The session is not harmed: the next run, with fresh options, speaks.
    assert len(voice.synthesize_ids([voice.phoneme_ids(SHORT)],
                                    run_options=ort.RunOptions())[0]) > 1000
    terminated = ort.RunOptions()
    terminated.terminate = True
    with pytest.raises(SynthesisError):
        voice.encode(voice.phoneme_ids(SHORT), run_options=terminated)


# ---------------------------------------------------------------- the watchdog

async def test_hung_run_is_terminated_and_the_worker_serves_again(voice: PiperVoice) -> None:
    async with harness(voice) as (h, plan):
        [hung] = await h.run(job(f"{MARKERS[Fault.HANG]} never ends.",
                                  predicted_compute_s=0.01))
        assert hung.failed and hung.error == TERMINATED
        assert plan.injected[Fault.HANG] == 1
        [after] = await h.run(job(SHORT, seq=1))
        assert not after.failed and after.latent is not None and after.latent.frames > 10
        assert PoolEvent.TERMINATED in h.events and PoolEvent.REPLACED not in h.events
        assert h.pool.serving == 1


async def test_engine_exception_fails_its_chunk_only(voice: PiperVoice) -> None:
    async with harness(voice) as (h, _):
        results = await h.run(job(f"{MARKERS[Fault.RAISE]} here.", seq=0), job(SHORT, seq=1))
        by_seq = {r.step.seq: r for r in results}
        assert by_seq[0].failed and "injected" in (by_seq[0].error or "")
        assert by_seq[1].latent is not None  # the other sentence of the batch is encoded
        assert PoolEvent.TERMINATED not in h.events


async def test_wedged_worker_is_abandoned_and_replaced(voice: PiperVoice) -> None:
    async with harness(voice) as (h, plan):
        plan.sessions_allowed.clear()  # hold the replacement so the gap can be seen
        [wedged] = await h.run(job(f"{MARKERS[Fault.WEDGE]} is stuck.",
                                  predicted_compute_s=0.01))
        assert wedged.failed and "abandoned" in (wedged.error or "")
        assert h.events.count(PoolEvent.TERMINATED) == 1
        assert PoolEvent.REPLACED in h.events
        assert h.pool.serving == 0 and h.pool.idle == 0  # capacity follows what serves
        plan.sessions_allowed.set()
        await h.until(lambda: h.pool.serving == 1)
        [after] = await h.run(job(SHORT, seq=1))
        assert after.latent is not None
        # The stuck thread, released at last, posts nothing: its chunk ended once.
        plan.released.set()
        await asyncio.sleep(0.2)
        assert h.results.empty()


async def test_a_worker_thread_that_dies_is_replaced(voice: PiperVoice) -> None:
    async with harness(voice, workers=2) as (h, plan):
        [dead] = await h.run(job(f"{MARKERS[Fault.DIE]} now.",
                                  predicted_compute_s=0.01))
        assert dead.failed and "died" in (dead.error or "")
        assert plan.injected[Fault.DIE] == 1
        assert PoolEvent.REPLACED in h.events and PoolEvent.TERMINATED not in h.events
        await h.until(lambda: h.pool.serving == 2)
        for seq in range(1, 4):
            [after] = await h.run(job(SHORT, seq=seq))
            assert after.latent is not None


def test_time_limit_is_factor_times_prediction_with_a_floor() -> None:
    watchdog = WatchdogConfig(factor=3.0, floor_s=2.0)  # not the defaults: the rule
    assert watchdog.limit_s(0.1) == 2.0
    assert watchdog.limit_s(1.0) == 3.0
    assert WatchdogConfig(factor=0.0).limit_s(1.0) is None


def test_admission_follows_the_workers_serving() -> None:
    scheduler = Scheduler(scheduler_config(config_mod.build(environ={})), workers=2)
    scheduler.register_voice("v", context_frames=0, sample_rate=22050)
    assert scheduler.admit(0.0, "v").accepted
    scheduler.set_workers(0, 0.0)
    refused = scheduler.admit(0.0, "v")
    assert not refused.accepted and refused.reason == "capacity"
    scheduler.set_workers(1, 0.0)
    assert scheduler.admit(0.0, "v").accepted and scheduler.workers == 1


# ---------------------------------------------------------------- through the server

def metric(srv: Any, name: str) -> float:
    value = srv.metrics.registry.get_sample_value(name)
    return 0.0 if value is None else float(value)


def http_status(url: str) -> int:
    try:
        with urllib.request.urlopen(url, timeout=10) as resp:
            return int(resp.status)
    except urllib.error.HTTPError as err:
        return int(err.code)


async def test_hung_chunk_gets_synthesis_failed_and_the_stream_goes_on(
        caplog: pytest.LogCaptureFixture) -> None:
    plan = FaultPlan()
    async with faulty_server(plan, workers=1, watchdog_floor_s=3.0) as srv:
        url = f"ws://127.0.0.1:{srv.port}/v1/stream"
        async with connect(url) as ws:
            await ws.send(json.dumps({"type": "text", "text": (
                f"The first sentence is fine. {MARKERS[Fault.HANG]} hangs here. "
                "The last sentence is fine too.")}))
            await ws.send(json.dumps({"type": "end"}))
            t = await read_all(ws)
        errors = t.of_type("error")
        chunks = t.of_type("chunk")
        assert [e["code"] for e in errors] == ["synthesis_failed"]
        assert errors[0]["fatal"] is False
        spoken = " ".join(c["text"] for c in chunks)
        assert MARKERS[Fault.HANG] not in spoken  # the hung chunk alone is missing
        assert spoken.startswith("The first") and chunks[-1]["text"].endswith("fine too.")
        assert len(t.audio) == len(chunks)
        assert t.events[-1]["type"] == "done" and t.close_code == 1000
        assert metric(srv, "litestream_watchdog_terminations_total") == 1
        assert metric(srv, "litestream_workers_serving") == 1
        assert metric(srv, "litestream_workers_replaced_total") == 0
    (line,) = [r for r in caplog.records if "terminating the run" in r.getMessage()]
    assert line.__dict__["session"] and "session=" not in line.getMessage()  # a field


async def test_wedged_worker_takes_the_server_out_of_rotation_until_replaced() -> None:
    plan = FaultPlan()
    async with faulty_server(plan, workers=1, watchdog_floor_s=3.0) as srv:
        url = f"ws://127.0.0.1:{srv.port}/v1/stream"
        readyz = f"http://127.0.0.1:{srv.port}/readyz"
        plan.sessions_allowed.clear()
        async with connect(url) as ws:
            await ws.send(json.dumps({"type": "text", "text": f"{MARKERS[Fault.WEDGE]} stuck."}))
            await ws.send(json.dumps({"type": "end"}))
            t = await read_all(ws)
        assert [e["code"] for e in t.of_type("error")] == ["synthesis_failed"]
        assert t.events[-1]["type"] == "done"
        assert metric(srv, "litestream_workers_replaced_total") == 1
        assert metric(srv, "litestream_workers_serving") == 0
        assert await asyncio.to_thread(http_status, readyz) == 503
        with pytest.raises(Exception) as refused:
            async with connect(url):
                pass
        assert getattr(getattr(refused.value, "response", None), "status_code", None) == 503
        plan.sessions_allowed.set()
        async with asyncio.timeout(60):
            while await asyncio.to_thread(http_status, readyz) != 200:
                await asyncio.sleep(0.05)
        assert metric(srv, "litestream_workers_serving") == 1
        async with connect(url) as ws:
            await ws.send(json.dumps({"type": "text", "text": SHORT}))
            await ws.send(json.dumps({"type": "end"}))
            t = await read_all(ws)
        assert not t.of_type("error") and len(t.of_type("chunk")) == len(t.audio) >= 1


async def test_healthz_fails_once_no_worker_is_left_to_serve() -> None:
    """Past the limit of stuck threads the pool stops replacing workers: with none left the
    process will never serve again, and /healthz says so (it answered 200, so a liveness probe
    kept the dead pod, and the docs asked an operator to restart it by hand)."""
    plan = FaultPlan()
    async with faulty_server(plan, workers=1, watchdog_floor_s=3.0) as srv:
        url = f"ws://127.0.0.1:{srv.port}/v1/stream"
        healthz = f"http://127.0.0.1:{srv.port}/healthz"
        for wedged in (1, 2):
            async with connect(url) as ws:
                await ws.send(json.dumps({"type": "text",
                                          "text": f"{MARKERS[Fault.WEDGE]} stuck."}))
                await ws.send(json.dumps({"type": "end"}))
                await read_all(ws)
            if wedged == 1:  # abandoned and replaced: still alive
                assert metric(srv, "litestream_workers_replaced_total") == 1
                assert await asyncio.to_thread(http_status, healthz) == 200
                async with asyncio.timeout(60):
                    while metric(srv, "litestream_workers_serving") != 1:
                        await asyncio.sleep(0.05)
        # The second stuck thread is one more than the pool's size: not replaced.
        assert metric(srv, "litestream_workers_replaced_total") == 1
        assert metric(srv, "litestream_workers_serving") == 0
        assert await asyncio.to_thread(http_status, healthz) == 503


async def test_readyz_is_503_until_every_worker_is_warm() -> None:
    """start() listens at once; /readyz says 503 warming up until warm-up and calibration."""
    from litestream import config as config_mod
    from litestream.server import LitestreamServer
    from tests.serverutil import free_port, shared_voices

    plan = FaultPlan()
    plan.sessions_allowed.clear()  # worker 1 cannot build its session yet
    voices = {k: FaultyVoice(v, plan) for k, v in shared_voices().items()}
    port = free_port()
    config = config_mod.build(environ={}, host="127.0.0.1", port=port, workers=2,
                              deterministic=True)
    server = LitestreamServer(config, voices=voices)  # type: ignore[arg-type]
    starting = asyncio.create_task(server.start())
    try:
        async with asyncio.timeout(30):
            while True:
                try:
                    status = await asyncio.to_thread(
                        http_status, f"http://127.0.0.1:{port}/readyz")
                    break
                except OSError:
                    await asyncio.sleep(0.05)
        assert status == 503 and server.warming
        assert await asyncio.to_thread(http_status, f"http://127.0.0.1:{port}/healthz") == 200
        plan.sessions_allowed.set()
        await starting
        assert await asyncio.to_thread(http_status, f"http://127.0.0.1:{port}/readyz") == 200
    finally:
        plan.release()
        if not starting.done():
            starting.cancel()
        await server.close()


async def test_a_busy_worker_trims_memory_at_most_every_interval_and_once_idle(
        monkeypatch: pytest.MonkeyPatch) -> None:
    """malloc_trim after every run cost more than a GPU's run itself (and 11-15% of a CPU
    worker's): a busy worker trims at most every TRIM_BUSY_S, and once TRIM_IDLE_S after it
    goes idle, not again while it stays idle."""
    trims: list[float] = []
    monkeypatch.setattr(workers, "release_memory", lambda: trims.append(0.0))
    monkeypatch.setattr(workers, "TRIM_BUSY_S", 0.5)
    monkeypatch.setattr(workers, "TRIM_IDLE_S", 0.3)
    results: asyncio.Queue[WorkResult] = asyncio.Queue()
    voice = SyntheticVoice(sleep=lambda seconds: None)  # its runs cost nothing
    pool = WorkerPool({"v": voice}, 1, asyncio.get_running_loop(), results.put_nowait)
    await pool.ready()
    try:
        loop = asyncio.get_running_loop()
        started = loop.time()
        runs = 0
        while loop.time() - started < 1.2:  # back to back for 1.2 s: at most 2 trims
            pool.dispatch([job(SHORT, seq=runs)])
            assert not (await results.get()).failed
            runs += 1
        busy_trims = len(trims)
        assert runs > 20 and busy_trims <= 2
        async with asyncio.timeout(10):  # idle: one trim, about TRIM_IDLE_S later
            while len(trims) == busy_trims:
                await asyncio.sleep(0.05)
        await asyncio.sleep(1.2)  # and no more while it stays idle
        assert len(trims) == busy_trims + 1
    finally:
        await asyncio.to_thread(pool.close)


async def test_runs_that_finish_together_are_taken_at_once_and_dispatched_once() -> None:
    """Runs that finish while the loop is busy are handed over together: every one of their
    workers is idle before any of their results is handled, and the caller is told once after
    them (on_drained), where it hands out the next work: one wake-up and one dispatch for the
    lot, not one per run."""
    seen: list[tuple[int, int]] = []  # (seq, idle workers when its result was handled)
    drained: list[int] = []  # results handled so far, at each on_drained
    voice = SyntheticVoice(sleep=lambda seconds: None)
    holder: list[WorkerPool] = []

    def on_result(result: WorkResult) -> None:
        assert not result.failed
        seen.append((result.step.seq, holder[0].idle))

    pool = WorkerPool({"v": voice}, 3, asyncio.get_running_loop(), on_result,
                      on_drained=lambda: drained.append(len(seen)))
    holder.append(pool)
    await pool.ready()
    try:
        for seq in range(3):
            pool.dispatch([job(SHORT, seq=seq)])
        assert pool.idle == 0
        # Hold the loop (as a busy one is) until all three runs have been posted back.
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            with pool._done_lock:
                if len(pool._done) == 3:
                    break
            time.sleep(0.005)
        async with asyncio.timeout(30):
            while len(seen) < 3:
                await asyncio.sleep(0.01)
        assert sorted(seq for seq, _ in seen) == [0, 1, 2]
        assert [idle for _, idle in seen] == [3, 3, 3]  # all idle before the first result
        assert drained == [3]  # told once, after the three
        # A run on its own is taken on its own, and told about once too.
        pool.dispatch([job(SHORT, seq=3)])
        async with asyncio.timeout(30):
            while len(drained) < 2:
                await asyncio.sleep(0.01)
        assert drained == [3, 4] and seen[3] == (3, 3)
    finally:
        await asyncio.to_thread(pool.close)


async def test_an_encode_batch_hands_each_result_over_as_it_is_done() -> None:
    """A worker runs a batch's encode steps one after another; each result goes to the loop
    as soon as its step is done, not with the batch's last (a newcomer's first window waits
    for no other sentence's front pass). The worker is idle again only when the batch is."""
    armed, release = threading.Event(), threading.Event()
    runs: list[float] = []

    def sleep(seconds: float) -> None:  # the second run of the batch holds until released
        if armed.is_set():
            runs.append(seconds)
            if len(runs) == 2:
                release.wait(30)

    results: asyncio.Queue[WorkResult] = asyncio.Queue()
    one_by_one = SyntheticCost(encode_batch=0)  # front passes on the CPU, as here
    pool = WorkerPool({"v": SyntheticVoice(one_by_one, sleep=sleep)}, 1,
                      asyncio.get_running_loop(), results.put_nowait)
    await pool.ready()
    try:
        armed.set()
        pool.dispatch([job(SHORT, seq=0), job(SHORT, seq=1), job(SHORT, seq=2)])
        async with asyncio.timeout(10):
            first = await results.get()
        assert (first.step.seq, first.failed, first.latent is not None) == (0, False, True)
        assert pool.idle == 0 and results.empty()  # the rest of the batch is under way
        release.set()
        async with asyncio.timeout(30):
            rest = [await results.get() for _ in range(2)]
        assert [(r.step.seq, r.failed) for r in rest] == [(1, False), (2, False)]
        assert pool.idle == 1
    finally:
        release.set()
        await asyncio.to_thread(pool.close)


def test_a_voice_that_batches_its_fronts_encodes_a_batch_in_one_run() -> None:
    """Where the voice runs its fronts as one run (a GPU), the worker makes one encode_batch
    of the steps: each gets the run's time / batch (as a decode batch's windows do) and its
    own latent, with its words when asked; a sentence that cannot be phonemized fails alone."""
    slept: list[float] = []
    voice = SyntheticVoice(SyntheticCost(encode_run_s=0.004, encode_char_s=0.0),
                           sleep=slept.append)
    texts = [SHORT, "Another sentence, a little longer than the first one.", "Third."]
    steps = [dataclasses.replace(job(text, seq=seq), words=seq == 1)
             for seq, text in enumerate(texts)]
    results = workers.run_steps({"v": voice}, steps)
    assert len(slept) == 1  # one run for the three front passes
    assert [(r.step.seq, r.failed, r.batch) for r in results] == [(0, False, 3), (1, False, 3),
                                                                   (2, False, 3)]
    assert len({r.compute_s for r in results}) == 1
    for result, text in zip(results, texts, strict=True):
        assert result.latent is not None
        assert result.latent.frames == voice.encode(voice.phoneme_ids(text)).frames
    assert results[1].latent is not None and results[1].latent.words  # asked for
    assert results[0].latent is not None and not results[0].latent.words

    class Unspeakable(SyntheticVoice):
        def phoneme_ids(self, text: str) -> list[int]:
            if text == "Third.":
                raise ValueError("no phonemes")
            return super().phoneme_ids(text)

    bad = Unspeakable(SyntheticCost(encode_run_s=0.0, encode_char_s=0.0), sleep=slept.append)
    results = workers.run_steps({"v": bad}, [dataclasses.replace(job(text, seq=seq), words=False)
                                             for seq, text in enumerate(texts)])
    assert [(r.step.seq, r.failed) for r in results] == [(0, False), (1, False), (2, True)]
    assert results[0].batch == 2


_FAULTS_OF_LONG_WINDOWS = """
import resource, sys, threading
from litestream.synthesis import workers
if sys.argv[1] != "default":  # "operator": the environment sets glibc's malloc itself
    workers.keep_freed_memory_until_trim()  # first, as `litestream serve` does
from litestream.engine import PiperVoice
voice = PiperVoice.load(deterministic=True)
latent = voice.encode(voice.phoneme_ids(
    "The quick brown fox jumps over the lazy dog, and then it runs far away into the quiet "
    "forest beyond the hills."))
assert latent.frames >= 40 + 256

def worker():  # a thread of its own, as a worker
    for _ in range(2):
        voice.decode(latent, 40, 256)  # the first runs grow the heap
    before = resource.getrusage(resource.RUSAGE_THREAD).ru_minflt
    for _ in range(5):
        voice.decode(latent, 40, 256)
    print(resource.getrusage(resource.RUSAGE_THREAD).ru_minflt - before)

thread = threading.Thread(target=worker)
thread.start()
thread.join()
"""


def test_a_long_window_reuses_the_memory_its_last_run_freed() -> None:
    # glibc maps blocks over 32 MB afresh and unmaps them on free (and empties per-thread
    # heaps of at most 64 MB), so a 256-frame window (the CPU's longest) faulted every page of
    # its largest tensors in again on every run: about 13,400 page faults a run in a worker
    # thread. A fresh process, as `litestream serve` starts, tuned before its voices load.
    # An operator's own glibc malloc setting (here MALLOC_ARENA_MAX) stands: nothing is tuned.
    faults = {}
    for mode in ("tuned", "default", "operator"):
        env = {k: v for k, v in os.environ.items()
               if not k.startswith("MALLOC_") and k != "GLIBC_TUNABLES"}
        if mode == "operator":
            env["MALLOC_ARENA_MAX"] = "8"
        done = subprocess.run([sys.executable, "-c", _FAULTS_OF_LONG_WINDOWS, mode], cwd=REPO,
                              capture_output=True, text=True, timeout=120, env=env)
        assert done.returncode == 0, done.stderr
        faults[mode] = int(done.stdout.split()[-1])
    assert faults["tuned"] < 2_000, faults  # measured: 0 in five runs
    assert faults["default"] > 10 * max(faults["tuned"], 1_000), faults  # what it mends
    assert faults["operator"] > 10 * max(faults["tuned"], 1_000), faults
