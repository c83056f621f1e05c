"""Prometheus metrics of one litestream server, on its own registry.

Every label has a bounded set of values, each pre-initialized so it shows as 0 before the first
event (a rate() over a series that appears late misses its first increment). Nothing is
labelled per session, key or client: cardinality stays constant however many streams come.

Useful queries:
  RTF (compute per second of audio): rate(litestream_synthesis_seconds_total[1m])
                                     / rate(litestream_audio_seconds_total[1m])
  late chunks: histogram_quantile(0.01, rate(litestream_chunk_slack_seconds_bucket[5m])) < 0
"""

from __future__ import annotations

from collections.abc import Iterator

from prometheus_client import (
    CONTENT_TYPE_LATEST,
    CollectorRegistry,
    Counter,
    Gauge,
    Histogram,
    generate_latest,
)
from prometheus_client.core import GaugeMetricFamily, Metric
from prometheus_client.registry import Collector

from litestream.config import default_of
from litestream.errors import CloseCode, ErrorCode
from litestream.security import RefusalReason

OTHER = "other"

# Bounded label values. Unknown values map to "other" rather than raising: a metrics call
# must never take a stream down, and "other" moving is itself the signal to look.
REFUSAL_REASONS: tuple[str, ...] = (*(r.value for r in RefusalReason), OTHER)
ERROR_CODES: tuple[str, ...] = (*(c.value for c in ErrorCode), OTHER)

# 1006 is not in protocol-v1's list (it is never sent), but it is what a stream ends with
# when the client vanishes without a close frame, and that is worth counting apart.
ABNORMAL_CLOSE = 1006
CLOSE_CODE_LABELS: dict[int, str] = {
    CloseCode.NORMAL: "normal",
    CloseCode.GOING_AWAY: "going_away",
    CloseCode.POLICY: "policy",
    CloseCode.TOO_BIG: "too_big",
    CloseCode.INTERNAL_ERROR: "internal",
    CloseCode.TRY_AGAIN_LATER: "try_again",
    ABNORMAL_CLOSE: "abnormal",
}
CLOSE_LABELS: tuple[str, ...] = (*CLOSE_CODE_LABELS.values(), OTHER)

# Time to first audio: resolve finely around the default first-audio target (Config's
# first_audio_target_ms), which is always one of the bucket bounds, and in 10 ms steps below
# 50 ms: a GPU's first audio (p95 23-55 ms measured, docs/benchmarks.md) and a cached
# sentence's all fell in one bucket, where histogram_quantile can only guess.
FIRST_AUDIO_TARGET_S: float = default_of("first_audio_target_ms") / 1000.0
TTFA_BUCKETS_S = tuple(sorted({0.01, 0.02, 0.03, 0.04, 0.05, 0.075, 0.1, 0.15, 0.2, 0.25, 0.3,
                               0.4, 0.5, 0.75, 1.0, 1.5, 2.0, 3.0, 5.0, FIRST_AUDIO_TARGET_S}))
# Deadline minus send time: below 0 the listener ran dry (late); the default jitter budget
# (Config's jitter_ms) is one of the bucket bounds, and 50 ms either side of 0 resolves a
# piece that was just in time from one that was just late.
JITTER_S: float = default_of("jitter_ms") / 1000.0
SLACK_BUCKETS_S = tuple(sorted({-2.0, -1.0, -0.5, -0.25, -0.1, -0.05, 0.0, 0.05, 0.1, JITTER_S,
                                0.25, 0.5, 1.0, 2.0, 3.0, 5.0, 7.5, 10.0}))


# Steps per engine run (a decode run's windows share one decode_batch): exact up to 8, then
# GPU-sized steps up to twice the largest batch anyone has configured so far (64).
BATCH_BUCKETS = (1, 2, 3, 4, 5, 6, 7, 8, 12, 16, 24, 32, 48, 64, 96, 128)
STEP_KINDS = ("encode", "decode")
# Each step's compute on its worker: a front pass of a short clause on a GPU to a long
# sentence's on a loaded CPU (a decode batch's time is shared among its windows).
STEP_BUCKETS_S = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0)


LOAD_HELP = ("Admitted load over capacity, 0..1: 1 exactly when this replica refuses a new "
             "stream (then /readyz is 503); absent while warming up or draining")


SHARED_CACHE_UP_HELP = ("1 while the shared sentence cache (--cache-url) answers, 0 while "
                        "it is skipped as down or slow; absent without --cache-url")
SHARED_CACHE_OPS = ("get", "put")
# Why a shared cache operation failed: it took longer than --cache-timeout-ms, Redis could not
# be reached, Redis refused the write for memory (maxmemory with noeviction), or anything else.
SHARED_CACHE_REASONS = ("timeout", "unavailable", "full", OTHER)


class _OptionalGauge(Collector):
    """A gauge with no sample while its value is None. `litestream_load` has none while the
    replica is no capacity source (warming up, draining): an autoscaler then treats it as
    missing, not as full or empty (a warming pod reporting 1 would make the HPA add pods for
    load that is not there)."""

    def __init__(self, name: str, documentation: str) -> None:
        self.name = name
        self.documentation = documentation
        self.value: float | None = None

    def describe(self) -> Iterator[Metric]:
        yield GaugeMetricFamily(self.name, self.documentation)

    def collect(self) -> Iterator[Metric]:
        family = GaugeMetricFamily(self.name, self.documentation)
        if self.value is not None:
            family.add_metric([], self.value)
        yield family


def _label(value: object, allowed: tuple[str, ...]) -> str:
    text = str(value)
    return text if text in allowed else OTHER


class Metrics:
    """The server's metrics. One instance per server; each has its own CollectorRegistry."""

    def __init__(self, registry: CollectorRegistry | None = None) -> None:
        self.registry = CollectorRegistry(auto_describe=True) if registry is None else registry
        r = self.registry
        self.active_streams = Gauge(
            "litestream_active_streams", "Streams open now", registry=r)
        self.queued_chunks = Gauge(
            "litestream_queued_chunks", "Chunks waiting for synthesis", registry=r)
        self.load = _OptionalGauge("litestream_load", LOAD_HELP)
        r.register(self.load)
        self.scheduler_load = Gauge(
            "litestream_scheduler_load",
            "Predicted synthesis demand over capacity (1.0 = saturated)", registry=r)
        self.ttfa_seconds = Histogram(
            "litestream_ttfa_seconds",
            f"Time from first text to first audio frame sent (default target"
            f" {FIRST_AUDIO_TARGET_S * 1000:.0f} ms)",
            buckets=TTFA_BUCKETS_S, registry=r)
        self.chunk_slack_seconds = Histogram(
            "litestream_chunk_slack_seconds",
            "Chunk deadline minus send time, at send (negative: late)",
            buckets=SLACK_BUCKETS_S, registry=r)
        self.stalls = Counter(
            "litestream_stalls", "Listener buffer underruns (server-side estimate)", registry=r)
        self.stall_seconds = Counter(
            "litestream_stall_seconds", "Estimated time listeners spent with no audio",
            registry=r)
        self.deadline_misses = Counter(
            "litestream_deadline_misses", "Pieces of audio sent after their deadline", registry=r)
        self.synthesis_seconds = Counter(
            "litestream_synthesis_seconds", "Compute time spent synthesizing", registry=r)
        self.audio_seconds = Counter(
            "litestream_audio_seconds", "Audio synthesized", registry=r)
        self.audio_sent_seconds = Counter(
            "litestream_audio_sent_seconds",
            "Audio handed to clients' sockets (what listeners received; a clear or a "
            "disconnect drops the rest unsent)", registry=r)
        self.chunks = Counter("litestream_chunks", "Chunks sent", registry=r)
        self.bytes_sent = Counter(
            "litestream_bytes_sent", "Audio bytes sent to clients", registry=r)
        self.refusals = Counter(
            "litestream_refusals", "Handshakes refused", ["reason"], registry=r)
        self.errors = Counter(
            "litestream_errors", "error messages sent, by protocol-v1 code", ["code"], registry=r)
        self.streams = Counter(
            "litestream_streams", "Streams closed, by close code", ["close_code"], registry=r)
        # Sentence cache (synthesis/cache.py).
        self.cache_hits = Counter(
            "litestream_cache_hits", "Chunks whose audio came from the sentence cache", registry=r)
        self.cache_misses = Counter(
            "litestream_cache_misses", "Chunk lookups the sentence cache could not answer",
            registry=r)
        self.cache_evictions = Counter(
            "litestream_cache_evictions", "Sentences dropped from the cache to stay in bounds",
            registry=r)
        self.cache_bytes = Gauge(
            "litestream_cache_bytes", "Audio held by the sentence cache, bytes", registry=r)
        self.cache_entries = Gauge(
            "litestream_cache_entries", "Sentences held by the sentence cache", registry=r)
        # The shared level behind it (synthesis/shared_cache.py, --cache-url).
        self.shared_cache_hits = Counter(
            "litestream_shared_cache_hits",
            "Chunks whose audio came from the shared sentence cache (Redis)", registry=r)
        self.shared_cache_misses = Counter(
            "litestream_shared_cache_misses",
            "Shared sentence cache lookups that found nothing (the chunk was synthesized)",
            registry=r)
        self.shared_cache_skipped = Counter(
            "litestream_shared_cache_skipped",
            "Shared sentence cache lookups and writes not tried: Redis marked down, a listener "
            "with too little audio to wait, or too many writes pending", ["op"], registry=r)
        self.shared_cache_errors = Counter(
            "litestream_shared_cache_errors",
            "Shared sentence cache operations that failed, by operation and reason",
            ["op", "reason"], registry=r)
        self.shared_cache_writes = Counter(
            "litestream_shared_cache_writes",
            "Sentences written to the shared sentence cache", registry=r)
        self.shared_cache_up = _OptionalGauge("litestream_shared_cache_up", SHARED_CACHE_UP_HELP)
        r.register(self.shared_cache_up)
        self.workers_serving = Gauge(
            "litestream_workers_serving",
            "Inference workers taking work now (a wedged one is replaced)", registry=r)
        self.watchdog_terminations = Counter(
            "litestream_watchdog_terminations",
            "Synthesis runs terminated for running past their time limit", registry=r)
        self.workers_replaced = Counter(
            "litestream_workers_replaced",
            "Workers abandoned (wedged or dead) and replaced by a new thread", registry=r)
        self.batch_size = Histogram(
            "litestream_batch_size",
            "Steps per engine run, by kind (decode: windows in one decode_batch); a run of more "
            "than one step is batched", ["kind"], buckets=BATCH_BUCKETS, registry=r)
        # One child per kind, looked up once: a run is observed on the dispatch path.
        self._batch_by_kind = {kind: self.batch_size.labels(kind=kind) for kind in STEP_KINDS}
        self.step_seconds = Histogram(
            "litestream_step_seconds",
            "Compute of each synthesis step on its worker, by kind (a decode run's time shared "
            "among its windows)", ["kind"], buckets=STEP_BUCKETS_S, registry=r)
        self._step_by_kind = {kind: self.step_seconds.labels(kind=kind) for kind in STEP_KINDS}
        for reason in REFUSAL_REASONS:
            self.refusals.labels(reason=reason)
        for code in ERROR_CODES:
            self.errors.labels(code=code)
        for close in CLOSE_LABELS:
            self.streams.labels(close_code=close)
        for op in SHARED_CACHE_OPS:
            self.shared_cache_skipped.labels(op=op)
            for why in SHARED_CACHE_REASONS:
                self.shared_cache_errors.labels(op=op, reason=why)

    # ------------------------------------------------------------ events the server reports

    def stream_opened(self) -> None:
        self.active_streams.inc()

    def stream_closed(self, close_code: int) -> None:
        """Once per stream that stream_opened() counted, with the close code it ended with."""
        self.active_streams.dec()
        self.streams.labels(close_code=CLOSE_CODE_LABELS.get(int(close_code), OTHER)).inc()

    def first_audio(self, ttfa_s: float) -> None:
        self.ttfa_seconds.observe(ttfa_s)

    def chunk_sent(self, slack_s: float, nbytes: int) -> None:
        """A chunk's first audio went out. Its audio seconds are counted at synthesis
        (synthesized()), not here, so RTF compares like with like."""
        self.chunks.inc()
        self.piece_sent(slack_s, nbytes)

    def piece_sent(self, slack_s: float, nbytes: int) -> None:
        """The first frame of one decode window's audio went out, `slack_s` before its
        deadline (the slack histogram counts every window, the first of a chunk included)."""
        self.chunk_slack_seconds.observe(slack_s)
        if slack_s < 0:
            self.deadline_misses.inc()
        if nbytes > 0:
            self.bytes_sent.inc(nbytes)

    def bytes_out(self, nbytes: int) -> None:
        """Audio bytes sent outside chunk_sent() (e.g. frame by frame)."""
        if nbytes > 0:
            self.bytes_sent.inc(nbytes)

    def synthesized(self, compute_s: float, audio_s: float, kind: str | None = None) -> None:
        """One step's result: its compute (a batch's time shared) and the audio it made;
        `kind` ("encode", "decode") also puts the compute in litestream_step_seconds."""
        if compute_s > 0:
            self.synthesis_seconds.inc(compute_s)
            child = self._step_by_kind.get(kind) if kind is not None else None
            if child is not None:
                child.observe(compute_s)
        if audio_s > 0:
            self.audio_seconds.inc(audio_s)

    def audio_sent(self, audio_s: float) -> None:
        """A stream's writer took `audio_s` of its audio for the socket."""
        if audio_s > 0:
            self.audio_sent_seconds.inc(audio_s)

    def refused(self, reason: str) -> None:
        self.refusals.labels(reason=_label(reason, REFUSAL_REASONS)).inc()

    def error(self, code: str) -> None:
        self.errors.labels(code=_label(code, ERROR_CODES)).inc()

    def stall(self, seconds: float) -> None:
        """One underrun of `seconds` (the server's estimate from its playback clock)."""
        self.stalls.inc()
        if seconds > 0:
            self.stall_seconds.inc(seconds)

    def cache_lookup(self, hit: bool) -> None:
        (self.cache_hits if hit else self.cache_misses).inc()

    def cache_evicted(self, entries: int) -> None:
        if entries > 0:
            self.cache_evictions.inc(entries)

    def set_cache(self, nbytes: int, entries: int) -> None:
        self.cache_bytes.set(nbytes)
        self.cache_entries.set(entries)

    def set_queue(self, queued: int, load: float) -> None:
        self.queued_chunks.set(queued)
        self.scheduler_load.set(load)

    def shared_cache_lookup(self, hit: bool) -> None:
        (self.shared_cache_hits if hit else self.shared_cache_misses).inc()

    def shared_cache_skip(self, op: str) -> None:
        self.shared_cache_skipped.labels(op=_label(op, SHARED_CACHE_OPS)).inc()

    def shared_cache_error(self, op: str, reason: str) -> None:
        self.shared_cache_errors.labels(op=_label(op, SHARED_CACHE_OPS),
                                        reason=_label(reason, SHARED_CACHE_REASONS)).inc()

    def shared_cache_written(self) -> None:
        self.shared_cache_writes.inc()

    def set_shared_cache_up(self, up: bool) -> None:
        self.shared_cache_up.value = 1.0 if up else 0.0

    def set_load(self, fullness: float | None) -> None:
        """litestream_load: admitted load over capacity (Scheduler.fullness), or None while
        the replica takes no streams for a reason other than load (warming up, draining)."""
        self.load.value = fullness

    def run_dispatched(self, kind: str, steps: int) -> None:
        """One engine run handed to a worker: `steps` steps of `kind` ("encode", "decode")."""
        child = self._batch_by_kind.get(kind)
        if child is not None:
            child.observe(steps)

    def watchdog_terminated(self) -> None:
        self.watchdog_terminations.inc()

    def worker_replaced(self) -> None:
        self.workers_replaced.inc()

    def set_workers_serving(self, serving: int) -> None:
        self.workers_serving.set(serving)

    # ------------------------------------------------------------ exposition

    def render(self) -> tuple[bytes, str]:
        """(body, content type) for GET /metrics."""
        return generate_latest(self.registry), CONTENT_TYPE_LATEST
