"""How exact the `words` events are: the library behind `python -m loadtest.word_timing` (its
command line is loadtest/word_timing.py).

A stream asks for `timestamps=word` and speaks a varied text (numbers, abbreviations, a URL,
punctuation runs, a long sentence, questions). Its audio, joined in order, is the stream's
timeline (the clock of `start_ms`), so each word's `start_ms` can be set against the start a
speech recognizer hears: whisper base (faster-whisper with `word_timestamps=True`, in a venv of
its own, as for `quality`: lib/listening.py). Words are paired by their letters and digits
(`$1,234` and whisper's `$1,234` are both `1234`) along the longest matching runs (difflib);
words that do not pair (a recognizer error, an expansion written another way) are counted, not
timed. It prints, per speed:

- the median, mean and 90th percentile of |our start - whisper's start| over paired words, the
  signed median (whisper's constant lead or lag) and the spread around it;
- the same for the estimate the Pipecat service used before word events: each chunk's
  duration spread over its characters;
- how many words lie outside their chunk's interval (`[start_ms, start_ms + duration_ms]`);
- with no recognizer: for each word after a pause, its start against the audio's own onset.

Whisper's own word times are an estimate too (attention alignment, 20 ms steps), so the error
is an upper bound on ours. Figures are printed, never asserted (docs/style.md: tests)."""

from __future__ import annotations

import asyncio
import difflib
import itertools
import json
import re
import subprocess
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from litestream.client import Audio, Chunk, Done, Error, Ready, Words, connect
from litestream.protocol.wav import write_wav

# About 150 words: what the voice expands (numbers, dates, money, times, abbreviations, a URL),
# punctuation runs, questions, a long sentence that is cut at a clause.
TEXT = (
    "Good morning! Dr. Smith's flight, number 1492, lands at 10:45 a.m. on March 3rd, 2026. "
    "The ticket cost $1,234, which is more than twice what I paid last year... really?! "
    "Please write to support at example.com, or call 555-0199 before Friday. "
    "When the wind comes down from the mountains in the early evening, the whole valley goes "
    "quiet, the birds stop singing, and the old farmers say that rain will follow by "
    "midnight. "
    "Is it 7 o'clock yet? No -- it's half past six; we still have time. "
    "The U.S. team won 3 to 2, and the crowd of 40,000 people cheered for ten minutes. "
    "Thank you for listening, and have a wonderful day."
)
_KEY = re.compile(r"[^a-z0-9]+")


@dataclass
class Heard:
    """One stream as the client received it."""

    sample_rate: int = 0
    chunks: dict[int, Chunk] = field(default_factory=dict)
    words: dict[int, Words] = field(default_factory=dict)
    audio: list[np.ndarray] = field(default_factory=list)  # int16 frames, in order
    error: str | None = None

    def samples(self) -> np.ndarray:
        return np.concatenate(self.audio) if self.audio else np.zeros(0, dtype=np.int16)


async def hear(url: str, text: str, speed: float, timeout_s: float) -> Heard:
    heard = Heard()
    async with connect(url, timestamps="word", speed=speed) as stream:
        await stream.send_text(text)
        await stream.end()
        async with asyncio.timeout(timeout_s):
            async for event in stream:
                if isinstance(event, Ready):
                    heard.sample_rate = event.sample_rate
                elif isinstance(event, Chunk):
                    heard.chunks[event.seq] = event
                elif isinstance(event, Words):
                    heard.words[event.seq] = event
                elif isinstance(event, Audio):
                    heard.audio.append(event.samples())
                elif isinstance(event, Error):
                    heard.error = event.code
                elif isinstance(event, Done):
                    break
    return heard


_RECOGNIZE = r"""
import json, sys
from faster_whisper import WhisperModel
model = WhisperModel(sys.argv[1], device="cpu", compute_type="int8", cpu_threads=2)
out = {}
for path in sys.argv[2:]:
    segments, _ = model.transcribe(path, language="en", beam_size=5, word_timestamps=True)
    out[path] = [[w.word, w.start, w.end] for s in segments for w in s.words]
print(json.dumps(out))
"""


def recognize(python: str, model_dir: Path, heard: Sequence[Heard],
              workdir: Path) -> list[list[tuple[str, float, float]]]:
    """Whisper's words with their (start, end) in seconds, for each stream's audio."""
    paths = []
    for i, h in enumerate(heard):
        path = workdir / f"words{i}.wav"
        write_wav(path, h.samples(), h.sample_rate)
        paths.append(str(path))
    out = subprocess.run([python, "-c", _RECOGNIZE, str(model_dir), *paths], check=True,
                         capture_output=True, text=True).stdout
    found: dict[str, list[list[object]]] = json.loads(out.strip().splitlines()[-1])
    return [[(str(w), float(str(s)), float(str(e))) for w, s, e in found[p]] for p in paths]


# ---------------------------------------------------------------- pure accounting

@dataclass(frozen=True)
class TimedWord:
    text: str
    start_ms: float
    end_ms: float


def ours(heard: Heard) -> list[TimedWord]:
    return [TimedWord(w.text, w.start_ms, w.end_ms)
            for seq in sorted(heard.words) for w in heard.words[seq].words]


def spread_by_characters(heard: Heard) -> list[TimedWord]:
    """The estimate before word events: each chunk's duration spread over its characters, a
    word starting where its first character falls (what the Pipecat service did)."""
    out = []
    for seq in sorted(heard.chunks):
        chunk = heard.chunks[seq]
        per_char = chunk.duration_ms / max(1, len(chunk.text))
        for w in heard.words.get(seq, Words(seq, ())).words:
            out.append(TimedWord(w.text, chunk.start_ms + w.char_start * per_char,
                                 chunk.start_ms + w.char_end * per_char))
    return out


def outside_their_chunk(heard: Heard) -> int:
    """Words whose interval is not inside their chunk's."""
    bad = 0
    for seq, words in heard.words.items():
        chunk = heard.chunks[seq]
        end = chunk.start_ms + chunk.duration_ms
        bad += sum(1 for w in words.words
                   if not chunk.start_ms <= w.start_ms <= w.end_ms <= end)
    return bad


PAUSE_MS = 120.0  # a gap this long between two words is a pause
LOUD_DBFS = -30.0  # a 5 ms window louder than this is speech


def onsets_after_pauses_ms(heard: Heard) -> list[float]:
    """For each word after a pause: its start minus the audio's onset (the first 5 ms window
    over -30 dBFS after the pause began): a check of our times against the audio itself,
    with no recognizer (weak onsets, as of "the" or "p", cross the threshold late)."""
    audio = heard.samples().astype(np.float64) / 32768.0
    window = max(1, heard.sample_rate // 200)
    count = len(audio) // window
    if count == 0:
        return []
    frames = audio[: count * window].reshape(count, window)
    loud = 20 * np.log10(np.maximum(np.sqrt((frames * frames).mean(axis=1)), 1e-9)) > LOUD_DBFS
    out = []
    words = ours(heard)
    for before, word in itertools.pairwise(words):
        if word.start_ms - before.end_ms < PAUSE_MS:
            continue
        first = int((before.end_ms + 30) / 5)
        found = np.flatnonzero(loud[first:])
        if found.size:
            out.append(word.start_ms - (first + int(found[0])) * 5.0)
    return out


def _key(text: str) -> str:
    return _KEY.sub("", text.lower())


def paired_errors_ms(mine: Sequence[TimedWord],
                     recognized: Sequence[tuple[str, float, float]]) -> list[float]:
    """our start - whisper's start (signed) for each pair of words with the same letters and
    digits, along difflib's matching runs of the two word sequences."""
    a = [_key(w.text) for w in mine]
    b = [_key(w) for w, _, _ in recognized]
    errors = []
    matcher = difflib.SequenceMatcher(None, a, b, autojunk=False)
    for block in matcher.get_matching_blocks():
        for k in range(block.size):
            if not a[block.a + k]:
                continue
            errors.append(mine[block.a + k].start_ms - 1000 * recognized[block.b + k][1])
    return errors


def summary(label: str, heard: Sequence[Heard],
            recognized: Sequence[Sequence[tuple[str, float, float]]]) -> dict[str, object]:
    exact: list[float] = []
    estimate: list[float] = []
    onsets: list[float] = []
    words = 0
    for h, r in zip(heard, recognized, strict=True):
        words += len(ours(h))
        exact += paired_errors_ms(ours(h), r)
        estimate += paired_errors_ms(spread_by_characters(h), r)
        onsets += onsets_after_pauses_ms(h)

    def stats(signed: list[float]) -> dict[str, float | None]:
        """|error|: median, mean, p90; the signed median (> 0: ours later than whisper's);
        and the median |error - signed median|: the spread once a constant lead is taken out."""
        if not signed:
            return {"median": None, "mean": None, "p90": None, "signed_median": None,
                    "spread_median": None}
        arr = np.asarray(signed)
        lead = float(np.median(arr))
        return {"median": round(float(np.median(np.abs(arr))), 1),
                "mean": round(float(np.abs(arr).mean()), 1),
                "p90": round(float(np.percentile(np.abs(arr), 90)), 1),
                "signed_median": round(lead, 1),
                "spread_median": round(float(np.median(np.abs(arr - lead))), 1)}

    return {
        "run": label, "streams": len(heard), "words": words, "paired": len(exact),
        "start_error_ms": stats(exact),
        "char_spread_error_ms": stats(estimate),
        "after_pause_start_minus_onset_ms": stats(onsets),
        "outside_chunk": sum(outside_their_chunk(h) for h in heard),
        "errors": [h.error for h in heard if h.error],
    }
