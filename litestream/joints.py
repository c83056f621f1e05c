"""Seamless joints between chunks cut mid-clause.

Under load the segmenter cuts sentences into short chunks ("The morning train" | "was late
again,"). Piper pads every item with silence, about 60 ms before the speech and 110-160 ms after
it, so a cut where no punctuation is would be heard as a ~200 ms pause: a stutter. At such a
cut, the silence is trimmed to what a word boundary sounds like. Cuts at punctuation keep their
pause. Pure: arrays in, arrays out.
"""

from __future__ import annotations

import numpy as np

# Speech ends with one of these where a pause belongs (a clause or a sentence ends).
_PAUSE_AFTER = frozenset(".,;:!?…—–)]\"'”’»")
KEEP_TAIL_MS = 30.0  # silence kept after the last word before a mid-clause cut
KEEP_LEAD_MS = 10.0  # silence kept before the first word after one
SILENCE = 0.01  # |sample| below this is silence (float audio in [-1, 1])


def ends_mid_clause(text: str) -> bool:
    """True when a chunk was cut where no pause belongs (it ends with a letter or digit)."""
    stripped = text.rstrip()
    return bool(stripped) and stripped[-1] not in _PAUSE_AFTER


def smooth(audio: np.ndarray, sample_rate: int, *, after_cut: bool, before_cut: bool
           ) -> np.ndarray:
    """Trim leading silence when this chunk continues a mid-clause cut (`after_cut`) and
    trailing silence when it ends at one (`before_cut`). Never trims into speech."""
    if not (after_cut or before_cut) or audio.size == 0:
        return audio
    loud = np.flatnonzero(np.abs(audio) > SILENCE)
    if loud.size == 0:
        return audio
    start, end = 0, audio.size
    if after_cut:
        start = max(0, int(loud[0]) - int(sample_rate * KEEP_LEAD_MS / 1000))
    if before_cut:
        end = min(audio.size, int(loud[-1]) + 1 + int(sample_rate * KEEP_TAIL_MS / 1000))
    return audio[start:end]
