"""Event-driven playback simulation of the scheduler with a fake engine (used by
tests/unit/scheduler/ and loadtest/sched_bench.py). Simulated time only: no sleeps, no wall
clock.

The fake engine has the figures measured for the bundled Piper voice on the 2-core CPU machine,
one thread per worker (docs/scheduling.md, "Streaming inside the model"): a front pass of
3 ms + 0.6 ms per character, a decode window of 2 ms + 1.1 ms per frame computed (the window
plus 16 frames of context on each side that lies inside the sentence), 4.1 frames per
character, 11.6 ms of audio per frame.
Each step's compute varies by +-10% (seeded; `noise` sets it).
"""

from __future__ import annotations

import heapq
import random
from dataclasses import dataclass, field

from litestream.scheduler import (
    Pace,
    Priority,
    Scheduler,
    SchedulerConfig,
    StepKind,
    SynthesisStep,
)
from litestream.text.segmenter import Segmenter

SAMPLE_RATE = 22050
SAMPLES_PER_FRAME = 256
APF = SAMPLES_PER_FRAME / SAMPLE_RATE  # audio seconds per frame
FRAMES_PER_CHAR = 4.1
ENCODE_OVERHEAD_S = 0.003
ENCODE_PER_CHAR_S = 0.0006
DECODE_OVERHEAD_S = 0.002
DECODE_PER_FRAME_S = 0.0011
CONTEXT_FRAMES = 16
VOICE = "joe"


def config(**knobs: float) -> SchedulerConfig:
    """A SchedulerConfig with the server's default values for the knobs Config owns."""
    base: dict[str, float] = {
        "first_audio_target_s": 0.25,
        "first_audio_slack_s": 0.5,
        "jitter_s": 0.15,
        "lookahead_s": 4.0,
        "max_lookahead_s": 20.0,
        "target_utilization": 0.8,
        "max_streams": 0,
        "download_buffer_s": 10.0,
    }
    base.update(knobs)
    return SchedulerConfig(**base)  # type: ignore[arg-type]


def sentence_frames(step: SynthesisStep) -> int:
    return round(FRAMES_PER_CHAR * step.chars / step.speed)


@dataclass
class FakeEngine:
    """Computes what a step costs (and makes) on the fake engine; `slow` scales compute."""

    rng: random.Random
    slow: float = 1.0
    context_frames: int = CONTEXT_FRAMES
    noise: float = 0.1  # each step's compute varies by up to this share either way

    def compute_s(self, steps: list[SynthesisStep]) -> float:
        """A decode batch runs as one: its longest member (equal windows: no padding waste).
        Encode steps run one after another (run_steps in synthesis/workers.py), so a batch of
        them takes the sum."""
        noise = self.rng.uniform(1.0 - self.noise, 1.0 + self.noise) * self.slow
        if steps[0].kind is StepKind.ENCODE:
            return noise * sum(ENCODE_OVERHEAD_S + ENCODE_PER_CHAR_S * step.chars
                               for step in steps)
        return noise * decode_cost_s(steps[0], self.context_frames)


def decode_cost_s(step: SynthesisStep, context_frames: int = CONTEXT_FRAMES) -> float:
    """A decode window's compute at the fake engine's rates: the window plus its context
    margins, which exist only inside the sentence (a sentence's first window has none on its
    left, its last none on its right), as in the Piper voice's windows
    (engine/piper/windows.py)."""
    return DECODE_OVERHEAD_S + DECODE_PER_FRAME_S * (
        step.frames + step.context_sides * context_frames)


def finish(sched: Scheduler, step: SynthesisStep, compute_s: float, now: float) -> float | None:
    """Report a finished step as the server would; the audio seconds to send, or None."""
    if step.kind is StepKind.ENCODE:
        sched.encoded(step, frames=sentence_frames(step), samples_per_frame=SAMPLES_PER_FRAME,
                      latent=("latent", step.stream_id, step.seq), compute_s=compute_s, now=now)
        return None
    audio = step.frames * APF
    if sched.decoded(step, audio_s=audio, compute_s=compute_s, now=now):
        return audio
    return None


@dataclass
class Listener:
    """One client: when each sentence was submitted, when each piece of audio arrived."""

    submitted: dict[int, float] = field(default_factory=dict)  # seq -> time
    arrivals: list[tuple[float, float, int]] = field(default_factory=list)  # (t, audio_s, seq)

    def first_audio_s(self) -> float:
        return self.arrivals[0][0] - self.submitted[0]

    def stalls(self) -> tuple[int, float]:
        """(count, seconds) of audio arriving after the listener ran dry, although the
        sentence it belongs to was submitted before then (else the listener waited for text,
        which no scheduler can help: idle, not stalled)."""
        count, total = 0, 0.0
        dry_at = None
        for t, audio, seq in self.arrivals:
            if dry_at is not None and t > dry_at + 1e-9:
                if self.submitted[seq] < dry_at:
                    count, total = count + 1, total + t - dry_at
                dry_at = t
            dry_at = (t if dry_at is None else dry_at) + audio
        return count, total


@dataclass
class SimResult:
    admitted: int
    refused: int
    listeners: list[Listener]  # the listener-paced streams
    sched: Scheduler
    downloads: list[Listener] = field(default_factory=list)  # the download-paced streams
    # Every batch handed out: (when, when it finished, its steps).
    handed_out: list[tuple[float, float, list[SynthesisStep]]] = field(default_factory=list)
    end_s: float = 0.0  # when the last step finished
    busy_s: float = 0.0  # worker-seconds of compute

    @property
    def first_audio_s(self) -> list[float]:
        return sorted(listener.first_audio_s() for listener in self.listeners)

    @property
    def stalls(self) -> int:
        return sum(listener.stalls()[0] for listener in self.listeners)

    @property
    def stall_s(self) -> float:
        return sum(listener.stalls()[1] for listener in self.listeners)

    def p95_first_audio_s(self) -> float:
        firsts = self.first_audio_s
        return firsts[max(0, round(0.95 * len(firsts)) - 1)]


def simulate(
    text: str,
    *,
    streams: int,
    workers: int = 2,
    seed: int = 1,
    words_per_s: float | None = None,
    cfg: SchedulerConfig | None = None,
    max_steps: int = 1,
    slow: float = 1.0,
    admit: bool = True,
    downloads: int = 0,
    download_text: str | None = None,
    first_chunk_chars: int | None = None,
    calibrated: bool = False,
    noise: float = 0.1,
) -> SimResult:
    """`streams` clients connect at t=0 (each passes admission first, unless `admit` is off)
    and send `text`: all at once, or word by word at `words_per_s` as an LLM would. The real
    segmenter cuts it into sentences; `workers` fake engines take steps (batches of up to
    `max_steps`) whenever idle; audio is sent as each window finishes and played in real time
    from its first frame. `downloads` more clients, opened first, ask for `download_text` (or
    `text`) at pace download and read every piece the moment it is sent. `first_chunk_chars`:
    the segmenter cuts a long first sentence at a clause within it, as the server does
    (Config.first_chunk_chars; None: never). `calibrated`: the cost model starts from the fake
    engine's true rates at `slow`, as the server's start-up calibration sets them (otherwise
    from the priors, which it learns from as steps finish). `noise`: each step's compute
    varies by up to that share either way (seeded)."""
    rng = random.Random(seed)
    engine = FakeEngine(rng, slow=slow, noise=noise)
    sched = Scheduler(cfg or config(), workers)
    sched.register_voice(VOICE, context_frames=CONTEXT_FRAMES, sample_rate=SAMPLE_RATE)
    sched.set_workers(workers, 0.0)
    if calibrated:
        sched.model.calibrate(VOICE, encode_per_char_s=ENCODE_PER_CHAR_S * slow,
                              decode_per_frame_s=DECODE_PER_FRAME_S * slow)
    now = 0.0
    listeners: dict[str, Listener] = {}
    segmenters: dict[str, Segmenter] = {}
    paces: dict[str, Pace] = {}
    refused = 0
    clients = [(f"d{i}", Pace.DOWNLOAD) for i in range(downloads)]
    clients += [(f"s{i}", Pace.LISTENER) for i in range(streams)]
    for sid, pace in clients:
        if admit and not sched.admit(now, VOICE, pace).accepted:
            refused += 1
            continue
        sched.open_stream(sid, Priority.NORMAL, now, pace)
        segmenters[sid] = Segmenter(first_max_chars=first_chunk_chars)
        listeners[sid], paces[sid] = Listener(), pace

    def submit(sid: str, chunks: list[str], at: float) -> None:
        listener = listeners[sid]
        for chunk in chunks:
            seq = len(listener.submitted)
            listener.submitted[seq] = at
            sched.submit(sid, seq, chunk, speed=1.0, voice=VOICE, now=at)

    # (time, order, kind, payload): kind 0 = a word arrives, 1 = a batch finishes.
    events: list[tuple[float, int, int, object]] = []
    order = 0
    words = text.split(" ")
    handed_out: list[tuple[float, float, list[SynthesisStep]]] = []
    busy = 0.0
    for sid in listeners:
        if paces[sid] is Pace.DOWNLOAD:
            said = download_text or text
            submit(sid, segmenters[sid].feed(said) + segmenters[sid].flush(), now)
            continue
        if words_per_s is None:
            submit(sid, segmenters[sid].feed(text) + segmenters[sid].flush(), now)
            continue
        offset = rng.uniform(0.0, 0.05)  # LLMs do not start in lockstep
        for k, word in enumerate(words):
            order += 1
            last = k == len(words) - 1
            heapq.heappush(events, (offset + k / words_per_s, order, 0, (sid, word, last)))
    idle = workers
    while True:
        while idle and (steps := sched.next_steps(now, max_steps)):
            compute = engine.compute_s(steps)
            handed_out.append((now, now + compute, steps))
            busy += compute
            order += 1
            heapq.heappush(events, (now + compute, order, 1, (steps, compute)))
            idle -= 1
        wake = sched.next_wakeup_s(now) if idle else None
        if not events and wake is None:
            break
        if wake is not None and (not events or wake < events[0][0]):
            now = max(now, wake)
            continue
        now, _, kind, payload = heapq.heappop(events)
        if kind == 0:
            sid, word, last = payload  # type: ignore[misc]
            seg = segmenters[sid]
            submit(sid, seg.feed(word + " ") + (seg.flush() if last else []), now)
            continue
        steps, compute = payload  # type: ignore[misc]
        idle += 1
        for step in steps:
            audio = finish(sched, step, compute, now)
            if audio is not None:
                sched.audio_sent(step.stream_id, audio, now)
                if paces[step.stream_id] is Pace.DOWNLOAD:
                    sched.audio_delivered(step.stream_id, audio, now)  # read at once
                listeners[step.stream_id].arrivals.append((now, audio, step.seq))
    return SimResult(
        admitted=len(listeners) - sum(p is Pace.DOWNLOAD for p in paces.values()),
        refused=refused,
        listeners=[v for k, v in listeners.items() if paces[k] is Pace.LISTENER],
        sched=sched,
        downloads=[v for k, v in listeners.items() if paces[k] is Pace.DOWNLOAD],
        handed_out=handed_out, end_s=now, busy_s=busy)


def price_step(s: Scheduler, step: SynthesisStep) -> float:
    if step.kind is StepKind.ENCODE:
        return s.model.price(step.voice, step.kind, step.chars)
    return s.model.price(step.voice, step.kind, step.frames, step.context_sides)


def run_step(s: Scheduler, step: SynthesisStep, now: float, *, send: bool = True) -> bool:
    """Finish `step` as the fake engine would (at its predicted cost) and send its audio."""
    if step.kind is StepKind.ENCODE:
        return s.encoded(step, frames=sentence_frames(step), samples_per_frame=SAMPLES_PER_FRAME,
                         latent=("latent", step.stream_id, step.seq), compute_s=price_step(s, step),
                         now=now)
    audio = step.frames * APF
    ok = s.decoded(step, audio_s=audio, compute_s=price_step(s, step), now=now)
    if ok and send:
        s.audio_sent(step.stream_id, audio, now)
    return ok
