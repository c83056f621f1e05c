"""Per-voice cost model: how much audio a chunk of text makes and how long it takes to synthesize.

Pure and clock-free, like the scheduler that owns it. Two running averages per voice:

- audio seconds per character at speed 1 (speed divides it: `length_scale = 1 / speed`);
- compute seconds per audio second (the real-time factor, RTF), plus a fixed per-chunk overhead.

So `compute per character = RTF * audio per character / speed`. Keying compute by audio seconds
rather than by characters keeps predictions right when a stream changes speed: Piper's decoder,
which dominates the cost, scales with the audio it writes.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class CostPriors:
    """Starting points before a voice has been observed (figures from the 2-core CPU machine)."""

    audio_per_char_s: float = 0.065  # audio seconds per text character at speed 1
    compute_per_audio_s: float = 0.072  # RTF: compute seconds per audio second, one thread
    overhead_s: float = 0.005  # fixed compute seconds per chunk (phonemize, session.run setup)
    ewma_alpha: float = 0.2  # weight of each new observation once warmed up


@dataclass
class VoiceCost:
    """The running estimate for one voice."""

    audio_per_char_s: float  # audio seconds per character at speed 1
    compute_per_audio_s: float  # RTF (compute seconds per audio second)
    samples: int = 0  # observations folded in so far


class CostModel:
    """Running EWMA cost estimates, keyed by voice id."""

    def __init__(self, priors: CostPriors | None = None) -> None:
        self.priors = priors or CostPriors()
        self._voices: dict[str, VoiceCost] = {}

    def voice(self, voice: str) -> VoiceCost:
        """The estimate for `voice` (the priors until it has been observed)."""
        cost = self._voices.get(voice)
        if cost is None:
            cost = VoiceCost(self.priors.audio_per_char_s, self.priors.compute_per_audio_s)
            self._voices[voice] = cost
        return cost

    def predict(self, voice: str, chars: int, speed: float) -> tuple[float, float]:
        """(predicted audio seconds, predicted compute seconds) for one chunk."""
        cost = self.voice(voice)
        audio_s = chars * cost.audio_per_char_s / speed
        return audio_s, self.priors.overhead_s + cost.compute_per_audio_s * audio_s

    def rtf(self, voice: str) -> float:
        """Compute seconds per audio second for `voice`: a stream's share of one worker."""
        return self.voice(voice).compute_per_audio_s

    def observe(
        self, voice: str, chars: int, speed: float, *, audio_s: float, compute_s: float
    ) -> None:
        """Fold one finished chunk into the estimate; degenerate observations are ignored."""
        if chars <= 0 or audio_s <= 0.0 or compute_s < 0.0 or speed <= 0.0:
            return
        cost = self.voice(voice)
        # Faster start from the priors: the first observation weighs 1/2, the second 1/3, ...
        # until that falls below alpha; one noisy sample still cannot wipe out the prior.
        alpha = max(self.priors.ewma_alpha, 1.0 / (cost.samples + 2))
        apc = audio_s * speed / chars
        rtf = max(compute_s - self.priors.overhead_s, 0.0) / audio_s
        cost.audio_per_char_s += alpha * (apc - cost.audio_per_char_s)
        cost.compute_per_audio_s += alpha * (rtf - cost.compute_per_audio_s)
        cost.samples += 1

    def calibrate(self, voice: str, *, audio_per_char_s: float, compute_per_audio_s: float,
                  weight: int = 5) -> None:
        """Replace the priors for `voice` with measured figures (the server measures at start,
        all workers busy at once, as under load); later observations refine them as usual, the
        measurement counting as `weight` observations."""
        cost = self.voice(voice)
        cost.audio_per_char_s = audio_per_char_s
        cost.compute_per_audio_s = compute_per_audio_s
        cost.samples = max(cost.samples, weight)
