"""Per-voice cost model: what a synthesis step costs, and how much audio a sentence makes.

Pure and clock-free, like the scheduler that owns it. A sentence's work is two kinds of step
(engine/base.py): its encode step (the front pass; cost grows with its characters) and then
decode windows (cost grows with the frames each window computes, its context margins included).
`CostModel.price` is the one pricing function; every prediction the scheduler makes (ordering,
window sizes, admission, the first audio of a new stream) goes through it:

    encode step:  encode_overhead_s + encode_per_char_s x chars
    decode step:  decode_overhead_s + decode_per_frame_s x (frames + 2 x context_frames)

Both terms are learned per voice and step kind from what each step really took: their shape
from a least-squares line through the recent steps of different sizes (`_LineFit`, slow:
about FIT_MEMORY steps), and their level fast, as an EWMA of each step's time over the line's
price for it (`_fold`), which scales both. Where all steps were of one size the overhead stays
at its prior and the rest is per unit. On the CPU a run's fixed part is small beside its
frames; on a GPU it is most of a window's cost (launching the graph, waiting for the GIL and
the device). With the overhead fixed at the CPU prior, the rest was charged to the frames and
a 256-frame window was priced at twice what it took (docs/benchmarks.md, "What a run costs").
`context_frames` is a property of the voice the caller registers (17 for a split Piper voice
with its default margins, `PiperVoice.context_frames`;
0 for a non-streaming voice, whose encode step synthesizes the whole sentence and whose windows
only slice finished audio: the model then learns an expensive front pass and nearly free windows,
with nothing above the engine branching on it).

Before a sentence is encoded its length in frames is predicted from its characters
(`frames_per_char`, learned from each encode step); after, it is known exactly.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from enum import StrEnum

__all__ = ["CostModel", "CostPriors", "StepKind", "VoiceCost"]


class StepKind(StrEnum):
    ENCODE = "encode"  # a sentence's front pass; units: characters
    DECODE = "decode"  # one decode window; units: frames


@dataclass(frozen=True)
class CostPriors:
    """Starting points before a voice has been observed: the bundled Piper voice on the 2-core
    CPU machine, one intra-op thread (issue 8 and docs/scheduling.md, "Streaming inside the
    model"). The one home of these figures."""

    encode_overhead_s: float = 0.003  # per encode step (phoneme ids, session.run setup)
    encode_per_char_s: float = 0.0006  # front pass: 27 ms for 45 characters
    decode_overhead_s: float = 0.002  # per decode window (session.run setup, stitching)
    decode_per_frame_s: float = 0.0011  # flow + decoder per frame computed, context included
    frames_per_char: float = 4.1  # frames per character at speed 1 (184 for 45 characters)
    audio_per_frame_s: float = 256 / 22050  # the vocoder's hop at 22.05 kHz: 11.6 ms
    context_frames: int = 16  # per side, for a voice the caller has not registered
    ewma_alpha: float = 0.2  # weight of each new observation once warmed up


# Each line weighs the last ~FIT_MEMORY steps of its kind (each older step counts 1 - 1 /
# FIT_MEMORY less): on a busy server a second or less, on one CPU listener a few sentences.
FIT_MEMORY = 100
# The fast level (see the module docstring) takes a step that took more than OUTLIER_RATIO times
# its price as that many times, once a voice has OUTLIER_AFTER observations of the kind (the
# line takes every step whole): at 1,000 synthetic listeners a short window held up 30-40 ms
# (the GIL, a busy event loop) is common, and admission refused streams for the moment it
# moved every price (uncapped, one such window raised them all by 60%; capped, by 12%). A real
# slowdown is still followed: each step at twice its price raises the level by alpha (a fifth).
OUTLIER_RATIO = 2.0
OUTLIER_AFTER = 5
# The prior overhead counts as this many steps, on the intercept alone: it decides where the
# steps' sizes do not (all of one size), and barely moves a line that they do decide.
FIT_PRIOR_WEIGHT = 0.1


@dataclass
class _LineFit:
    """An exponentially weighted least-squares line y = a + b x through (units, seconds)
    observations: `a` is the fixed cost of a run, `b` its cost per unit."""

    s0: float = 0.0  # summed weights
    sx: float = 0.0
    sy: float = 0.0
    sxx: float = 0.0
    sxy: float = 0.0

    def add(self, x: float, y: float, weight: float = 1.0) -> None:
        keep = 1.0 - weight / FIT_MEMORY
        self.s0 = self.s0 * keep + weight
        self.sx = self.sx * keep + weight * x
        self.sy = self.sy * keep + weight * y
        self.sxx = self.sxx * keep + weight * x * x
        self.sxy = self.sxy * keep + weight * x * y

    def line(self, prior_a: float) -> tuple[float, float] | None:
        """(a, b), with `prior_a` as FIT_PRIOR_WEIGHT observations of the intercept (ridge):
        the prior where all sizes were alike, the data's line where they spread. Neither is
        below 0: a line falling with size (noise) is read as flat (b = 0, a = the mean). None
        before any observation with units."""
        lam = FIT_PRIOR_WEIGHT
        a11 = self.s0 + lam
        r1 = self.sy + lam * prior_a
        det = a11 * self.sxx - self.sx * self.sx
        if self.s0 <= 0.0 or det <= 0.0:
            return None
        a = (r1 * self.sxx - self.sx * self.sxy) / det
        b = (a11 * self.sxy - self.sx * r1) / det
        if b < 0.0:
            return r1 / a11, 0.0
        if a < 0.0:
            return 0.0, self.sxy / self.sxx
        return a, b


def _fold(fit: _LineFit, level: float, overhead_s: float, per_unit_s: float, prior_a: float,
          *, units: float, took_s: float, batch: int, alpha: float,
          guard: bool) -> tuple[float, float, float]:
    """One observed step of `units`, in a run of `batch` steps alike (`took_s`: its share of
    the run): (overhead, per unit, level) after it, from those before it."""
    price_s = overhead_s / batch + per_unit_s * units
    fit.add(units * batch, took_s * batch, 1.0 / batch)
    line = fit.line(prior_a)
    if line is None:
        return overhead_s, per_unit_s, level
    a, b = line
    base = a / batch + b * units
    if guard:
        took_s = min(took_s, OUTLIER_RATIO * price_s)
    if base > 0.0:
        level += alpha * (took_s / base - level)
    return level * a, level * b, level


@dataclass
class VoiceCost:
    """The running estimate for one voice."""

    context_frames: int  # frames of context decoded on each side of a window
    encode_per_char_s: float  # compute seconds per character of an encode step
    decode_per_frame_s: float  # compute seconds per frame a decode step computes
    frames_per_char: float  # sentence frames per character at speed 1
    audio_per_frame_s: float  # audio seconds per frame
    encode_overhead_s: float  # compute seconds of an encode step whatever its characters
    decode_overhead_s: float  # compute seconds of a decode run whatever its frames
    encode_samples: int = 0  # encode observations folded in so far
    decode_samples: int = 0  # decode observations folded in so far
    # Its encode steps batch as one run (a GPU's batched front), priced as decode batches are;
    # else a worker runs a batch's front passes one after another.
    batched_encode: bool = False
    # The slow lines and the fast levels over them: overhead = level x a, rate = level x b.
    encode_fit: _LineFit = field(default_factory=_LineFit)
    decode_fit: _LineFit = field(default_factory=_LineFit)
    encode_level: float = 1.0
    decode_level: float = 1.0


def context_sides(start_frame: int, frames: int, total: int) -> int:
    """On how many sides a window of `frames` at `start_frame` of a sentence of `total` frames
    computes context: none outside the sentence (CostModel.price)."""
    return (start_frame > 0) + (start_frame + frames < total)


class CostModel:
    """Running EWMA cost estimates, keyed by voice id."""

    def __init__(self, priors: CostPriors | None = None) -> None:
        self.priors = priors or CostPriors()
        self._voices: dict[str, VoiceCost] = {}

    def register(
        self, voice: str, *, context_frames: int, audio_per_frame_s: float | None = None,
        batched_encode: bool = False,
    ) -> None:
        """Declare a voice's context margin (0: a non-streaming voice), whether its encode
        steps batch as one run, and, when known, its exact audio per frame (samples_per_frame /
        sample_rate). Learned rates are kept."""
        if context_frames < 0:
            raise ValueError("context_frames must be >= 0")
        cost = self.voice(voice)
        cost.context_frames = context_frames
        cost.batched_encode = batched_encode
        if audio_per_frame_s is not None:
            if audio_per_frame_s <= 0.0:
                raise ValueError("audio_per_frame_s must be > 0")
            cost.audio_per_frame_s = audio_per_frame_s

    def voice(self, voice: str) -> VoiceCost:
        """The estimate for `voice` (the priors until it has been registered or observed)."""
        cost = self._voices.get(voice)
        if cost is None:
            p = self.priors
            cost = VoiceCost(
                context_frames=p.context_frames,
                encode_per_char_s=p.encode_per_char_s,
                decode_per_frame_s=p.decode_per_frame_s,
                frames_per_char=p.frames_per_char,
                audio_per_frame_s=p.audio_per_frame_s,
                encode_overhead_s=p.encode_overhead_s,
                decode_overhead_s=p.decode_overhead_s,
            )
            self._voices[voice] = cost
        return cost

    # ---- the pricing function ---------------------------------------------------------------

    def price(self, voice: str, kind: StepKind, units: float, sides: int = 2) -> float:
        """Predicted compute seconds of one step on one worker: `units` characters (encode) or
        frames (decode window, context margins added here on its `sides` that lie inside the
        sentence: a sentence's first window has none on its left, its last none on its right,
        so a first window costs about a quarter less than a window of its length inside)."""
        cost = self.voice(voice)
        if kind is StepKind.ENCODE:
            return cost.encode_overhead_s + cost.encode_per_char_s * units
        frames = units + sides * cost.context_frames
        return cost.decode_overhead_s + cost.decode_per_frame_s * frames

    def window_within(self, voice: str, budget_s: float) -> int:
        """The most frames a decode window may have for its price to fit in `budget_s`
        (the inverse of `price`; 0 when not even an empty window fits)."""
        cost = self.voice(voice)
        spare = budget_s - cost.decode_overhead_s
        if cost.decode_per_frame_s <= 0.0:
            return 1 << 30 if spare >= 0.0 else 0
        return max(0, math.floor(spare / cost.decode_per_frame_s) - 2 * cost.context_frames)

    def sentence_frames(self, voice: str, chars: int, speed: float) -> float:
        """Predicted frames of a sentence of `chars` characters at `speed` (before its encode)."""
        return chars * self.voice(voice).frames_per_char / speed

    def audio_s(self, voice: str, frames: float) -> float:
        """Audio seconds of `frames` frames."""
        return frames * self.voice(voice).audio_per_frame_s

    def decode_cost_s(self, voice: str, frames: float, window_frames: int) -> float:
        """Predicted compute of decoding `frames` frames in windows of about `window_frames`:
        ceil(frames / window_frames) equal windows, each priced with its context."""
        windows = max(1, math.ceil(frames / window_frames))
        return windows * self.price(voice, StepKind.DECODE, frames / windows)

    def sentence_cost_s(self, voice: str, chars: int, speed: float, window_frames: int) -> float:
        """Predicted compute of a whole sentence: its encode step, then its windows."""
        return self.price(voice, StepKind.ENCODE, chars) + self.decode_cost_s(
            voice, self.sentence_frames(voice, chars, speed), window_frames)

    def rtf(self, voice: str, *, sentence_chars: int, window_frames: int) -> float:
        """Compute seconds per audio second of a stream speaking sentences of `sentence_chars`
        in windows of `window_frames`: its share of one worker (admission, load)."""
        frames = self.sentence_frames(voice, sentence_chars, 1.0)
        audio = self.audio_s(voice, frames)
        if audio <= 0.0:
            return 0.0
        return self.sentence_cost_s(voice, sentence_chars, 1.0, window_frames) / audio

    def window_for_rtf(self, voice: str, *, rtf: float, sentence_chars: int) -> float:
        """The shortest window at which `rtf(voice, ...)` is at most `rtf` (the inverse of
        `rtf`, ignoring the last window's rounding); inf when no window is long enough."""
        cost = self.voice(voice)
        frames = self.sentence_frames(voice, sentence_chars, 1.0)
        audio = self.audio_s(voice, frames)
        if audio <= 0.0:
            return 0.0
        encode_share = self.price(voice, StepKind.ENCODE, sentence_chars) / audio
        # Per window of W frames: overhead + rate x (W + 2P) <= (rtf - encode share) x W x apf.
        spare = (rtf - encode_share) * cost.audio_per_frame_s - cost.decode_per_frame_s
        if spare <= 0.0:
            return math.inf
        fixed = cost.decode_overhead_s + 2 * cost.context_frames * cost.decode_per_frame_s
        return fixed / spare

    # ---- learning ---------------------------------------------------------------------------

    def _alpha(self, samples: int) -> float:
        # The level's (and frames_per_char's) weight: the first observation weighs 1/2, the
        # second 1/3, ... until that falls below alpha. (The line passes through a voice's
        # first observation; calibration's measurement weighs as `weight` of them.)
        return max(self.priors.ewma_alpha, 1.0 / (samples + 2))

    def observe_encode(
        self, voice: str, *, chars: int, speed: float, frames: int, compute_s: float,
        batch: int = 1,
    ) -> None:
        """Fold one finished encode step in; degenerate observations are ignored. A step run
        in one run of `batch` (a batched front) took `compute_s` = the run's time / batch, and
        counts as 1/batch of a run of batch x its characters, as a decode window does."""
        if chars <= 0 or speed <= 0.0 or compute_s < 0.0:
            return
        batch = max(batch, 1)
        cost = self.voice(voice)
        alpha = self._alpha(cost.encode_samples)
        cost.encode_overhead_s, cost.encode_per_char_s, cost.encode_level = _fold(
            cost.encode_fit, cost.encode_level, cost.encode_overhead_s, cost.encode_per_char_s,
            self.priors.encode_overhead_s, units=chars, took_s=compute_s, batch=batch,
            alpha=alpha,
            guard=cost.encode_samples >= OUTLIER_AFTER)
        if frames > 0:
            cost.frames_per_char += alpha * (frames * speed / chars - cost.frames_per_char)
        cost.encode_samples += 1

    def observe_decode(self, voice: str, *, frames: int, audio_s: float, compute_s: float,
                       sides: int = 2, batch: int = 1) -> None:
        """Fold one finished decode window in (its context computed on `sides` sides, as
        `price`); degenerate observations are ignored. A window decoded in a run of `batch`
        windows took `compute_s` = the run's time / batch: the run paid one overhead for all
        of them (its windows are of one length), so the window counts as 1/batch of a run
        of batch x its frames."""
        if frames <= 0 or compute_s < 0.0:
            return
        batch = max(batch, 1)
        cost = self.voice(voice)
        alpha = self._alpha(cost.decode_samples)
        computed = frames + sides * cost.context_frames
        cost.decode_overhead_s, cost.decode_per_frame_s, cost.decode_level = _fold(
            cost.decode_fit, cost.decode_level, cost.decode_overhead_s, cost.decode_per_frame_s,
            self.priors.decode_overhead_s,
            units=computed, took_s=compute_s, batch=batch, alpha=alpha,
            guard=cost.decode_samples >= OUTLIER_AFTER)
        if audio_s > 0.0:
            # Constant per voice (hop / sample rate): the latest observation is exact. Only a
            # real change moves it: audio_s / frames differs in its last bit from one window
            # length to another, and each such flip would move every price a little without
            # any stream changing (AdmissionControl keeps sums of prices up to date by the
            # streams that changed).
            apf = audio_s / frames
            if not math.isclose(apf, cost.audio_per_frame_s, rel_tol=1e-9):
                cost.audio_per_frame_s = apf
        cost.decode_samples += 1

    def calibrate(
        self,
        voice: str,
        *,
        encode_per_char_s: float,
        decode_per_frame_s: float,
        frames_per_char: float | None = None,
        weight: int = 5,
        chars: int = 80,
        frames: int = 98,
    ) -> None:
        """Replace the priors for `voice` with measured figures (the server measures at start,
        all workers busy at once, as under load; the overheads stay the priors'); later
        observations refine them as usual, the measurement counting as `weight` observations
        of each kind, made on sentences of `chars` characters and windows of `frames` frames
        computed (context included). At one size each, they tell the lines where they pass,
        not how they slope: the steps of other sizes that follow decide that."""
        cost = self.voice(voice)
        cost.encode_per_char_s = encode_per_char_s
        cost.decode_per_frame_s = decode_per_frame_s
        cost.encode_overhead_s = self.priors.encode_overhead_s
        cost.decode_overhead_s = self.priors.decode_overhead_s
        cost.encode_fit, cost.decode_fit = _LineFit(), _LineFit()
        cost.encode_fit.add(chars, self.price(voice, StepKind.ENCODE, chars), weight)
        cost.decode_fit.add(frames, self.price(voice, StepKind.DECODE, frames, sides=0), weight)
        cost.encode_level = cost.decode_level = 1.0
        if frames_per_char is not None:
            cost.frames_per_char = frames_per_char
        cost.encode_samples = max(cost.encode_samples, weight)
        cost.decode_samples = max(cost.decode_samples, weight)
