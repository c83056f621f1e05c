"""How exact the `words` events are, against whisper base's word timestamps.

    python -m loadtest.word_timing --url ws://127.0.0.1:8765/v1/stream \
        --whisper /path/to/whisper-venv/bin/python

The command line only; what it measures and how is in loadtest/lib/word_timing.py.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import sys
import tempfile
from collections.abc import Sequence
from pathlib import Path

from loadtest.lib.listening import DEFAULT_URL, whisper_model_dir
from loadtest.lib.streams import machine_info
from loadtest.lib.word_timing import TEXT, hear, recognize, summary


def main(argv: Sequence[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m loadtest.word_timing", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--url", default=DEFAULT_URL)
    p.add_argument("--whisper", required=True, help="python of a venv with faster-whisper")
    p.add_argument("--cache", default=str(Path(tempfile.gettempdir()) / "litestream-quality"))
    p.add_argument("--speeds", default="1.0,1.5", help="comma-separated stream speeds")
    p.add_argument("--runs", type=int, default=2, help="streams per speed (one at a time)")
    p.add_argument("--timeout-s", type=float, default=300.0)
    args = p.parse_args(argv)
    print(json.dumps({"machine": machine_info(), "words_in_text": len(TEXT.split())}))
    model = whisper_model_dir(args.whisper, Path(args.cache))
    with tempfile.TemporaryDirectory() as tmp:
        for speed in (float(s) for s in args.speeds.split(",")):
            heard = [asyncio.run(hear(args.url, TEXT, speed, args.timeout_s))
                     for _ in range(args.runs)]
            recognized = recognize(args.whisper, model, heard, Path(tmp))
            print(json.dumps(summary(f"speed {speed}", heard, recognized)))
    return 0


if __name__ == "__main__":
    sys.exit(main())
