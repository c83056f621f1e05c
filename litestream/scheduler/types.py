"""The scheduler's public vocabulary: priority classes, its knobs (`SchedulerConfig`), the unit
of work it hands out (`SynthesisStep`), its admission answer and its counters.

Plain data, no policy: the decisions that use these live in `litestream.scheduler` and the
modules it is built from. Importers may take these names from `litestream.scheduler`.
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import StrEnum

from litestream.scheduler.costmodel import StepKind

__all__ = [
    "Admission",
    "AdmissionReason",
    "Pace",
    "Priority",
    "SchedulerConfig",
    "SchedulerStats",
    "SynthesisStep",
]


class Priority(StrEnum):
    HIGH = "high"
    NORMAL = "normal"
    LOW = "low"


class Pace(StrEnum):
    """protocol-v1: Pace. What clock a stream's work races (docs/scheduling.md, "Two paces").

    LISTENER: a player's real-time playback; the next step is due before it runs dry, and
    synthesis runs at most `max_lookahead_s` ahead of it (text further ahead is wasted at
    barge-in). DOWNLOAD: no playback clock after its first audio; synthesized as fast as idle
    capacity allows, held only by what its client has not read yet (`download_buffer_s`)."""

    LISTENER = "listener"
    DOWNLOAD = "download"


class AdmissionReason(StrEnum):
    """Why `admit` answered as it did: the whole set. It reaches the client (the refusal's
    message) and the metrics (a label), so it stays small and stable."""

    ACCEPTED = "accepted"
    # Steady demand of the streams already playing, plus the new one, would pass
    # workers x target_utilization (or no worker is serving at all).
    CAPACITY = "capacity"
    # Urgent work is already so far behind that the new stream's first audio would be late by
    # more than admit_backlog_s (a burst is in progress): retry in a moment.
    BACKLOG = "backlog"
    # max_streams streams are open.
    STREAMS = "streams"


@dataclass(frozen=True)
class SchedulerConfig:
    """Every scheduling knob, each with its unit in its name.

    The first group has no defaults here: their one home is `litestream.config.Config`, and the
    server builds this from it in one function. The rest are internal knobs, defined only here.
    """

    # protocol-v1: Timing promise. First audio of a stream is due this long after its text.
    first_audio_target_s: float
    # A stream's first audio is ordered as due this much later: a listener who has not started
    # yet can wait a little longer, one who is playing would hear a stall (Andes: lateness hurts
    # a started stream most). Bounded, so first audio stays bounded.
    first_audio_slack_s: float
    # Audio must arrive this long before the listener would run dry (network, frame pacing).
    jitter_s: float
    # Unplayed audio beyond `lookahead_s` buys nothing and is lost at barge-in: such a stream
    # waits unless a worker would otherwise idle; beyond `max_lookahead_s` it waits regardless.
    lookahead_s: float
    max_lookahead_s: float
    # Admission (acceptance test): steady demand in worker units must stay under this share.
    target_utilization: float
    max_streams: int  # 0 = unlimited
    # protocol-v1: Pace. A download stream's synthesis waits while this much of its audio is
    # made and not yet taken by its client's socket: the per-stream memory bound that, with the
    # socket's backpressure, lets the client's reading pace a download.
    download_buffer_s: float

    # Decode windows, in frames (11.6 ms of audio each for Piper voices). The first window of a
    # stream is small so first audio comes fast; later ones grow by about 1/utilization times
    # `window_growth_headroom` (within the growth bounds) while their compute fits in the audio
    # already buffered, up to `max_window_frames` (context overhead 2P/W small there).
    # 32 frames (0.37 s of audio) rather than 16-20: measured first audio costs ~15 ms more
    # (docs/benchmarks.md, engine windows), but the second window gets ~220 ms to compute
    # after the jitter budget instead of ~80 ms, so a listener on a busy machine does not run
    # dry right after the first window (seen in the browser test under load at 20 frames).
    first_window_frames: int = 32
    min_window_frames: int = 16
    max_window_frames: int = 256
    window_growth_headroom: float = 0.85
    # Windows never shrink below the length at which the streams with work would load the
    # workers past this share: small windows pay context margins on few frames, and under
    # load that overhead would eat the capacity that keeps every buffer from running dry.
    window_floor_utilization: float = 0.9
    # Under load (a window floor above first_window_frames) a first window is long enough that
    # the next one, at the floor, computes this many times over within its playback less the
    # jitter budget: a tiny first window would be followed by a stall.
    first_window_margin: float = 3.0
    min_window_growth: float = 1.25
    max_window_growth: float = 4.0
    # A download's windows when no listener needs the workers (no listener has work, no stream
    # waits for first audio): long, so context margins cost little (2P/W = 7% at 512 frames),
    # yet a newcomer waits at most one such window for a worker (~0.6 s on the 2-core CPU).
    download_window_frames: int = 512
    # A step counts as due this long before its latest start. While any stream waits for its
    # first audio, work not yet due yields to the newcomers' encode steps and first windows
    # (docs/scheduling.md, "The burst"); the jitter budget is the safety beyond it.
    due_margin_s: float = 0.05
    # Near-ties in latest start go to the least attained service; at most this many are looked at.
    tie_window_s: float = 0.05
    tie_candidates: int = 8
    # Priority classes shift deadlines. Bounded shifts mean no class starves: a low step past its
    # deadline still beats normal steps due more than `low_shift_s` after it.
    high_shift_s: float = -0.2
    normal_shift_s: float = 0.0
    low_shift_s: float = 0.5
    # Admission: refuse when urgent work is already this far behind the first-audio target.
    admit_backlog_s: float = 0.75
    # Admission: refuse new listeners for this long after playing listeners of two streams
    # had a step finish past its deadline within this time (their jitter budget being eaten):
    # the server is not keeping up, whatever the prices say (the host's GIL or cores can run
    # out before the workers do).
    admit_late_hold_s: float = 1.0
    # A typical sentence, characters: prices a new stream's first audio and a stream's steady
    # share of a worker (its RTF at max_window_frames).
    admit_sentence_chars: int = 80
    open_grace_s: float = 1.0  # a stream opened this recently, without text yet, counts as active
    # Batching (GPU): candidates within `batch_window_s` of the most urgent step's latest start.
    batch_window_s: float = 0.05
    batch_candidates: int = 32
    # Predicted time of a batch: its longest member plus this share of the others.
    batch_marginal_cost: float = 0.25
    # A batch whose seed is already late may still grow to this multiple of the seed's time:
    # catching up needs throughput.
    batch_late_growth: float = 1.5
    # A window joins a batch at the batch's length only when that is at least this share of
    # the window it would take alone. Cut shorter, its sentence costs more windows than the
    # batch saves runs: a 300-frame window cut to a 20-frame tail's length is 15 windows,
    # each a hand-out, a result and a socket write on the event loop, and 15 context margins
    # on the device (docs/benchmarks.md, "The event loop, seventh pass").
    batch_min_window_share: float = 0.5
    # A step is an overrun when it took > factor x its prediction and more than min seconds.
    overrun_factor: float = 3.0
    overrun_min_s: float = 0.5

    def shift_s(self, priority: Priority) -> float:
        if priority is Priority.HIGH:
            return self.high_shift_s
        if priority is Priority.LOW:
            return self.low_shift_s
        return self.normal_shift_s


@dataclass(slots=True, eq=False)
class SynthesisStep:
    """One unit of synthesis work: a sentence's encode step or one of its decode windows.
    Prediction and deadline fields are refreshed when it is handed out."""

    stream_id: str
    seq: int  # the sentence's seq, assigned by the caller's session
    kind: StepKind
    text: str  # the whole sentence (a decode window carries it too, for logs)
    voice: str
    speed: float  # 0.5..2.0; windows of one batch share it
    start_frame: int = 0  # DECODE: first frame of the window
    frames: int = 0  # DECODE: window length; ENCODE: 0 (the sentence's frames come from encoded)
    last: bool = False  # DECODE: the sentence's final window
    latent: object | None = None  # DECODE: what encoded() was given; opaque to the scheduler
    # DECODE: a window of a sentence found in the cache (submit's `cached_frames`): no worker
    # runs it, the caller slices the cached audio; ordered and paced like synthesized windows.
    cached: bool = False
    # ENCODE: also time the sentence's words (engine.words.timed); False when nobody will see
    # them (the stream did not ask, and no cache keeps the sentence for one that may).
    words: bool = True
    predicted_audio_s: float = 0.0  # audio seconds this step should make (ENCODE: none)
    predicted_compute_s: float = 0.0  # compute seconds on one worker
    deadline_s: float = 0.0  # when it must be done (listener runs dry, less jitter)
    latest_start_s: float = 0.0  # deadline_s - predicted_compute_s
    priority: Priority = Priority.NORMAL
    submitted_s: float = 0.0  # when the sentence was submitted (caller's clock)
    dispatched_s: float | None = None  # when next_steps handed it out
    # Set by encoded()/decoded(): deadline_s - completion time (negative = late).
    slack_s: float | None = None
    overrun: bool = False  # set on completion: ran far past its prediction; the caller logs it

    @property
    def chars(self) -> int:
        return len(self.text)

    @property
    def context_sides(self) -> int:
        """DECODE: on how many sides the window computes context (costmodel.context_sides:
        none outside its sentence)."""
        return (self.start_frame > 0) + (not self.last)


@dataclass(frozen=True)
class Admission:
    accepted: bool
    retry_after_s: float  # 0 when accepted; else >= 1 s, the estimated backlog drain time
    reason: AdmissionReason


@dataclass
class SchedulerStats:
    """Counters (since start) and gauges (now) for metrics. Times in seconds."""

    queued_sentences: int = 0  # gauge: sentences submitted and not finished
    in_flight: int = 0  # gauge: steps handed out, not yet finished (cancelled ones excluded)
    workers: int = 0  # gauge: workers serving (set_workers)
    open_streams: int = 0  # gauge
    active_streams: int = 0  # gauge: streams with sentences to synthesize
    held_streams: int = 0  # gauge: backlogged streams held back by the lookahead cap
    dispatched: int = 0  # steps handed out by next_steps (requeued ones count again)
    encode_steps: int = 0  # ... of which encode steps
    decode_steps: int = 0  # ... of which decode windows
    decoded_frames: int = 0  # frames of audio those windows make
    context_frames: int = 0  # frames of context margin they compute on top (2 x per window)
    completed: int = 0  # encoded() + decoded() calls
    failed: int = 0  # fail() calls
    requeued: int = 0  # steps put back by requeue()
    # Steps handed out after their deadline. (The metric litestream_deadline_misses counts
    # something else: pieces of audio *sent* after their deadline.)
    late_handouts: int = 0
    late_completions: int = 0  # steps completed after their deadline (negative slack)
    overruns: int = 0  # steps that ran > overrun_factor x their prediction (and > overrun_min_s)
    refused: int = 0  # admit() refusals
    lookahead_fallbacks: int = 0  # held-back steps handed out because a worker would idle
    cached_windows: int = 0  # windows of cached sentences handed out (no worker runs them)
    cleared_sentences: int = 0  # sentences dropped (whole or mid-way) by clear/close
    cancelled_in_flight: int = 0  # in-flight steps whose result will be dropped
    dropped_results: int = 0  # encoded()/decoded() calls answered False
    stalls: int = 0  # estimated listener underruns (audio sent after the buffer ran out)
    stall_s: float = 0.0  # their total length
    batches: int = 0  # next_steps calls that returned more than one step
    batched_steps: int = 0  # steps in those batches
    service_spread_s: float = 0.0  # gauge: max - min attained service among backlogged streams
