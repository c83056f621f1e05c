"""How speech sounds under load: chunk joins, silence at joins, and recognizer errors.

    python -m loadtest.quality --url ws://127.0.0.1:8765/v1/stream --streams 10
    python -m loadtest.quality --streams 10 --whisper /path/to/whisper-venv/bin/python

The command line only; what it measures and how is in loadtest/lib/listening.py.
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
    return 0 if all(row["spoken"] for row in rows) else 1  # a run with nothing to measure


if __name__ == "__main__":
    sys.exit(main())
