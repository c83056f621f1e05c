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
- against the audio itself, at each pause: where the sound stops and starts again, set against
  our word ends and starts and against whisper's (a check that needs no recognizer's word for
  what is true: at a pause the audio shows where a word begins and ends).

Whisper's own word times are an estimate too (attention alignment, 20 ms steps), so the error
is an upper bound on ours. Figures are printed, never asserted (docs/style.md: tests)."""

from __future__ import annotations

import asyncio
import difflib
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


PAUSE_MS = 120.0  # a gap this long between two words (in our times) is a pause
# A 5 ms window louder than this is sound. The voice's silence sits near -100 dBFS, and weak
# consonants ("h", "f", "th") near -45: a higher bar (the first version used -30) finds a
# word's loud part, tens of ms after the word really begins.
SOUND_DBFS = -50.0


@dataclass(frozen=True)
class Pause:
    """A silence in the audio between word `after` - 1 and word `after`: where the sound
    stops (`offset_ms`) and starts again (`onset_ms`), read from the audio."""

    after: int
    offset_ms: float
    onset_ms: float


def pauses(heard: Heard) -> list[Pause]:
    """The pauses of a stream's audio: for each gap of at least PAUSE_MS between two of our
    words whose middle is quiet, the last sound before that middle and the first after it.
    Our times only say which silence to look at; its edges come from the audio, so they judge
    our times and whisper's alike."""
    audio = heard.samples().astype(np.float64) / 32768.0
    window = max(1, heard.sample_rate // 200)
    count = len(audio) // window
    if count == 0:
        return []
    frames = audio[: count * window].reshape(count, window)
    rms = np.sqrt((frames * frames).mean(axis=1))
    sound = 20 * np.log10(np.maximum(rms, 1e-9)) > SOUND_DBFS
    found = []
    words = ours(heard)
    for index in range(1, len(words)):
        before, word = words[index - 1], words[index]
        if word.start_ms - before.end_ms < PAUSE_MS:
            continue
        middle = int((before.end_ms + word.start_ms) / 2 / 5)
        if middle >= count or sound[middle]:
            continue
        earlier = np.flatnonzero(sound[:middle])
        later = np.flatnonzero(sound[middle:])
        if earlier.size and later.size:
            found.append(Pause(index, (int(earlier[-1]) + 1) * 5.0,
                               (middle + int(later[0])) * 5.0))
    return found


def edge_errors_ms(starts: dict[int, float], ends: dict[int, float],
                   found: Sequence[Pause]) -> tuple[list[float], list[float]]:
    """Word start - the audio's onset after each pause, and word end - its offset before it,
    for the words timed (``starts``/``ends`` by our word index, ms)."""
    onsets = [starts[p.after] - p.onset_ms for p in found if p.after in starts]
    offsets = [ends[p.after - 1] - p.offset_ms for p in found if p.after - 1 in ends]
    return onsets, offsets


def _key(text: str) -> str:
    return _KEY.sub("", text.lower())


def pairs(mine: Sequence[TimedWord],
          recognized: Sequence[tuple[str, float, float]]) -> list[tuple[int, int]]:
    """(our index, whisper's index) for each pair of words with the same letters and digits,
    along difflib's matching runs of the two word sequences."""
    a = [_key(w.text) for w in mine]
    b = [_key(w) for w, _, _ in recognized]
    matcher = difflib.SequenceMatcher(None, a, b, autojunk=False)
    return [(block.a + k, block.b + k)
            for block in matcher.get_matching_blocks() for k in range(block.size)
            if a[block.a + k]]


def paired_errors_ms(mine: Sequence[TimedWord],
                     recognized: Sequence[tuple[str, float, float]]) -> list[float]:
    """our start - whisper's start (signed) for each pair of words (``pairs``)."""
    return [mine[i].start_ms - 1000 * recognized[j][1] for i, j in pairs(mine, recognized)]


def summary(label: str, heard: Sequence[Heard],
            recognized: Sequence[Sequence[tuple[str, float, float]]]) -> dict[str, object]:
    exact: list[float] = []
    estimate: list[float] = []
    edges: dict[str, list[float]] = {"ours_start": [], "ours_end": [], "whisper_start": [],
                                     "whisper_end": []}
    words = 0
    silences = 0
    for h, r in zip(heard, recognized, strict=True):
        mine = ours(h)
        words += len(mine)
        exact += paired_errors_ms(mine, r)
        estimate += paired_errors_ms(spread_by_characters(h), r)
        found = pauses(h)
        silences += len(found)
        onsets, offsets = edge_errors_ms({i: w.start_ms for i, w in enumerate(mine)},
                                         {i: w.end_ms for i, w in enumerate(mine)}, found)
        edges["ours_start"] += onsets
        edges["ours_end"] += offsets
        paired = pairs(mine, r)
        onsets, offsets = edge_errors_ms({i: 1000 * r[j][1] for i, j in paired},
                                         {i: 1000 * r[j][2] for i, j in paired}, found)
        edges["whisper_start"] += onsets
        edges["whisper_end"] += offsets

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
        # Against the audio itself, at the pauses: start - onset and end - offset (< 0: early).
        "pauses": silences,
        "at_pauses_ms": {name: stats(values) for name, values in edges.items()},
        "outside_chunk": sum(outside_their_chunk(h) for h in heard),
        "errors": [h.error for h in heard if h.error],
    }
