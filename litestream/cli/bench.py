"""Engine benchmark: real-time factor per worker x thread layout on this machine.

A layout "WxT" is W worker threads, each running sessions with T intra-op threads. With W > 1
the workers either own a session each (what ``PiperVoice.new_session`` is for) or share one
(``InferenceSession.run`` is thread-safe); which one is faster depends on the machine, so the
benchmark measures both and the server uses the faster.
"""

from __future__ import annotations

import statistics
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

from litestream.engine.piper.voice import PiperVoice

BENCH_TEXT = (
    "The next chunk is due before the listener runs dry, so we measure it carefully."
)  # ~80 characters: a typical first chunk
SHORT_TEXT = "Yes, of course."  # a 3-word reply


@dataclass(frozen=True)
class Layout:
    workers: int
    threads: int  # intra-op threads per session

    @property
    def name(self) -> str:
        return f"{self.workers}x{self.threads}"


@dataclass(frozen=True)
class LayoutResult:
    layout: Layout
    sessions: str  # "own" (one session per worker) or "shared" (one session for all)
    median_rtf: float  # compute_s / audio_s of one chunk, median over every chunk run
    throughput_audio_s_per_s: float  # audio seconds produced per wall second, all workers
    chunks: int


@dataclass(frozen=True)
class LatencyResult:
    long_compute_s: float  # median compute of BENCH_TEXT alone, 1 intra-op thread
    long_chars: int
    short_compute_s: float  # median compute of SHORT_TEXT alone
    short_words: int
    phoneme_ids_s: float  # median time of one phoneme_ids(BENCH_TEXT) call


def parse_layouts(spec: str) -> list[Layout]:
    """"1x1,1x2,2x1" -> layouts; ValueError on anything else."""
    layouts = []
    for part in spec.split(","):
        workers, sep, threads = part.strip().lower().partition("x")
        if not sep or not workers.isdigit() or not threads.isdigit():
            raise ValueError(f"layout must look like 2x1 (workers x threads), not {part!r}")
        layout = Layout(int(workers), int(threads))
        if layout.workers < 1 or layout.threads < 1:
            raise ValueError(f"layout {part!r} needs at least one worker and one thread")
        layouts.append(layout)
    return layouts


def _run_layout(voices: Sequence[PiperVoice], ids: list[int], runs: int) -> tuple[list[float],
                                                                                  float, float]:
    """Each run: every worker synthesizes ``ids`` once, all starting together."""
    rtfs: list[float] = []
    audio_total_s = 0.0
    wall_total_s = 0.0
    lock = threading.Lock()

    def work(voice: PiperVoice, barrier: threading.Barrier) -> None:
        nonlocal audio_total_s
        barrier.wait()
        start = time.perf_counter()
        audio = voice.synthesize_ids([ids])[0]
        compute_s = time.perf_counter() - start
        audio_s = len(audio) / voice.sample_rate
        with lock:
            rtfs.append(compute_s / audio_s)
            audio_total_s += audio_s

    for _ in range(runs):
        barrier = threading.Barrier(len(voices))
        threads = [threading.Thread(target=work, args=(v, barrier)) for v in voices]
        start = time.perf_counter()
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
        wall_total_s += time.perf_counter() - start
    return rtfs, audio_total_s, wall_total_s


def bench_layouts(
    layouts: Sequence[Layout],
    *,
    model_path: Path | None = None,
    runs: int = 5,
    device: str = "auto",
    text: str = BENCH_TEXT,
    progress: Callable[[str], None] | None = None,
    loaded: dict[int, PiperVoice] | None = None,
) -> list[LayoutResult]:
    """Median RTF and aggregate throughput per layout; "shared" rows for every W > 1.

    ``loaded`` (intra-op threads -> voice) is filled in, so a caller can reuse the voices:
    loading one takes seconds.
    """
    bases: dict[int, PiperVoice] = {} if loaded is None else loaded

    def base(threads: int) -> PiperVoice:
        if threads not in bases:
            if progress:
                progress(f"loading voice with {threads} intra-op thread(s)")
            bases[threads] = PiperVoice.load(model_path, intra_op_threads=threads, device=device)
        return bases[threads]

    results: list[LayoutResult] = []
    for layout in layouts:
        voice = base(layout.threads)
        ids = voice.phoneme_ids(text)
        own = [voice] + [voice.new_session() for _ in range(layout.workers - 1)]
        variants = [("own", own)]
        if layout.workers > 1:
            variants.append(("shared", [voice] * layout.workers))
        for sessions, voices in variants:
            if progress:
                progress(f"running {layout.name} ({sessions} sessions)")
            _run_layout(voices, ids, 1)  # warm this shape on every session
            rtfs, audio_s, wall_s = _run_layout(voices, ids, runs)
            results.append(LayoutResult(layout, sessions, statistics.median(rtfs),
                                        audio_s / wall_s, len(rtfs)))
        del own
    return results


def bench_latency(voice: PiperVoice, runs: int = 5) -> LatencyResult:
    """Compute time of one long and one short chunk alone, and of one phoneme_ids call."""

    def median_s(fn: Callable[[], object], n: int) -> float:
        fn()
        times = []
        for _ in range(n):
            start = time.perf_counter()
            fn()
            times.append(time.perf_counter() - start)
        return statistics.median(times)

    long_ids = voice.phoneme_ids(BENCH_TEXT)
    short_ids = voice.phoneme_ids(SHORT_TEXT)
    return LatencyResult(
        long_compute_s=median_s(lambda: voice.synthesize_ids([long_ids]), runs),
        long_chars=len(BENCH_TEXT),
        short_compute_s=median_s(lambda: voice.synthesize_ids([short_ids]), runs),
        short_words=len(SHORT_TEXT.split()),
        phoneme_ids_s=median_s(lambda: voice.phoneme_ids(BENCH_TEXT), 50),
    )
