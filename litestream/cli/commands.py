"""The ``litestream`` command: serve | say | voices | bench."""

from __future__ import annotations

import argparse
import dataclasses
import json
import logging
import os
import sys
import time
from collections.abc import Sequence
from pathlib import Path
from typing import TextIO

import numpy as np

from litestream.errors import ConfigError, LitestreamError
from litestream.protocol import SPEED_MAX, SPEED_MIN

logger = logging.getLogger("litestream.cli")

DEFAULT_LAYOUTS = "1x1,1x2,2x1"


def _build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="litestream", description="Realtime text-to-speech streaming server."
    )
    parser.add_argument("-v", "--verbose", action="store_true", help="log at INFO level")
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    # `serve` is dispatched before parsing (its flags belong to litestream.server); this entry
    # only makes it show up in --help.
    commands.add_parser("serve", help="run the streaming server (litestream serve --help)")

    say = commands.add_parser("say", help="synthesize text to a WAV file")
    say.add_argument("text", nargs="?", default="-", help='text to speak; "-" or none: stdin')
    say.add_argument("-o", "--output", required=True, help='WAV file to write ("-": stdout)')
    say.add_argument("--voice", default=None,
                     help="voice id (litestream voices) or a Piper .onnx path; "
                          "default: the bundled voice")
    say.add_argument("--speed", type=_speed, default=1.0,
                     help=f"1.0 normal, 2.0 twice as fast ({SPEED_MIN}..{SPEED_MAX}, as a stream's "
                          "`speed`)")
    say.add_argument("--device", default="auto", choices=["auto", "cpu", "cuda"])
    say.add_argument("--threads", type=int, default=1, help="intra-op threads")
    say.add_argument("--server", default=None, metavar="URL",
                     help="synthesize on a running server (ws://host:port/...) instead")

    voices = commands.add_parser("voices", help="list available voices")
    voices.add_argument("paths", nargs="*", type=Path,
                        help="extra .onnx files or directories holding them")
    voices.add_argument("--json", action="store_true", help="print JSON instead of a table")
    voices.add_argument("--no-kokoro", dest="kokoro", action="store_false",
                        help="leave out the Kokoro Japanese voices")

    bench = commands.add_parser("bench", help="benchmarks")
    bench_commands = bench.add_subparsers(dest="bench_command", required=True, metavar="WHAT")
    engine = bench_commands.add_parser("engine", help="engine RTF per worker x thread layout")
    engine.add_argument("--layouts", default=DEFAULT_LAYOUTS,
                        help=f"comma-separated WORKERSxTHREADS (default {DEFAULT_LAYOUTS})")
    engine.add_argument("--runs", type=int, default=5, help="timed runs per layout")
    engine.add_argument("--voice", type=Path, default=None, help="voice .onnx path")
    engine.add_argument("--device", default="auto", choices=["auto", "cpu", "cuda"])
    return parser


def _speed(value: str) -> float:
    """A stream's speed range (protocol v1), so `say` speaks as a stream would."""
    try:
        speed = float(value)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a number: {value!r}") from None
    if not SPEED_MIN <= speed <= SPEED_MAX:
        raise argparse.ArgumentTypeError(f"must be {SPEED_MIN}..{SPEED_MAX}, got {value}")
    return speed


def _check_output(output: str) -> None:
    """Refuse a WAV path that cannot be written before any text is synthesized."""
    if output == "-":
        return
    path = Path(output)
    if path.is_dir():
        raise ConfigError(f"cannot write {output}: it is a directory")
    parent = path.parent
    if not parent.is_dir():
        raise ConfigError(f"cannot write {output}: no directory {parent}")
    if not os.access(parent, os.W_OK) or (path.exists() and not os.access(path, os.W_OK)):
        raise ConfigError(f"cannot write {output}: permission denied")


def _read_text(text: str, stdin: TextIO) -> str:
    return stdin.read() if text == "-" else text


def _write_output(output: str, audio: np.ndarray, sample_rate: int) -> None:
    from litestream.protocol.wav import write_wav

    if output == "-":
        write_wav(sys.stdout.buffer, audio, sample_rate)
        sys.stdout.buffer.flush()
    else:
        # Opened here, not by wave: a failed open then raises one clear error (wave's own
        # leaves a half-built writer that complains again when collected).
        try:
            with open(output, "wb") as target:
                write_wav(target, audio, sample_rate)
        except OSError as exc:
            raise ConfigError(f"cannot write {output}: {exc.strerror or exc}") from exc


def _cmd_say(args: argparse.Namespace, out: TextIO) -> int:
    _check_output(args.output)
    text = _read_text(args.text, sys.stdin)
    # Figures go to stderr when the WAV itself goes to stdout.
    report = sys.stderr if args.output == "-" else out
    if args.server:
        from litestream.client import synthesize as remote_synthesize

        start = time.perf_counter()
        sample_rate, pcm = remote_synthesize(args.server, text, voice=args.voice,
                                             speed=args.speed)
        wall_s = time.perf_counter() - start
        _write_output(args.output, pcm, sample_rate)
        audio_s = len(pcm) / sample_rate
        print(f"audio {audio_s:.2f} s  wall {wall_s:.2f} s  (server {args.server})", file=report)
        return 0

    from litestream.engine import registry
    from litestream.text import languages
    from litestream.text.segmenter import Segmenter

    voice = registry.load_voice(args.voice, cache_dir=_model_cache_dir(),
                                intra_op_threads=args.threads, device=args.device)
    # The same segmenter as the server, so `say` hears the chunks a stream would.
    segmenter = Segmenter(language=languages.segmenter_language(voice.language))
    chunks = segmenter.feed(text) + segmenter.flush()
    if not chunks:
        print("litestream say: nothing speakable in the text", file=sys.stderr)
        return 1
    pieces: list[np.ndarray] = []
    compute_s = 0.0
    for chunk in chunks:
        start = time.perf_counter()
        pieces.append(voice.synthesize(chunk, speed=args.speed))
        compute_s += time.perf_counter() - start
    audio = np.concatenate(pieces)
    _write_output(args.output, audio, voice.sample_rate)
    audio_s = len(audio) / voice.sample_rate
    print(f"audio {audio_s:.2f} s  compute {compute_s:.2f} s  RTF {compute_s / audio_s:.3f}  "
          f"({len(chunks)} chunk(s), {voice.provider})", file=report)
    return 0


def _model_cache_dir() -> Path | None:
    """The server's setting (LITESTREAM_MODEL_CACHE_DIR), so both find one joined model."""
    from litestream import config as config_mod

    return config_mod.build(environ=os.environ).model_cache_dir


def _cmd_voices(args: argparse.Namespace, out: TextIO) -> int:
    """Every voice `serve` would load with the same voices given, as GET /v1/voices lists."""
    from litestream.engine import describe_voices

    voices = describe_voices(None, args.paths, kokoro_voices=args.kokoro)
    if args.json:
        print(json.dumps([dataclasses.asdict(v) for v in voices], indent=2), file=out)
        return 0
    table = [("ID", "MODEL", "LANGUAGE", "RATE", "GENDER", "SOURCE")]
    table += [(v.id, v.model, v.language, str(v.sample_rate), v.gender or "-", v.source)
              for v in voices]
    widths = [max(len(row[i]) for row in table) for i in range(len(table[0]) - 1)]
    for row in table:
        print("  ".join(cell.ljust(w) for cell, w in zip(row, widths, strict=False)) + "  "
              + row[-1], file=out)
    return 0


def _cmd_bench_engine(args: argparse.Namespace, out: TextIO) -> int:
    from litestream.cli.bench import BENCH_TEXT, bench_latency, bench_layouts, parse_layouts
    from litestream.engine.piper.voice import PiperVoice

    try:
        layouts = parse_layouts(args.layouts)
    except ValueError as exc:
        print(f"litestream bench engine: {exc}", file=sys.stderr)
        return 2
    load_before = os.getloadavg()[0]
    loaded: dict[int, PiperVoice] = {}
    results = bench_layouts(layouts, model_path=args.voice, runs=args.runs, device=args.device,
                            progress=lambda msg: print(f"... {msg}", file=sys.stderr),
                            loaded=loaded)
    voice = next(iter(loaded.values()))
    print(f"engine benchmark: voice {voice.info.id}, {voice.provider}, {os.cpu_count()} CPUs, "
          f"{args.runs} runs per layout, chunk of {len(BENCH_TEXT)} chars", file=out)
    # Other processes skew every figure here; the load average says how much to trust them.
    print(f"1-min load average: {load_before:.2f} before, {os.getloadavg()[0]:.2f} after",
          file=out)
    print(f"{'layout':<8}{'sessions':<10}{'median RTF':>12}{'throughput':>14}  (audio s / s)",
          file=out)
    for r in results:
        print(f"{r.layout.name:<8}{r.sessions:<10}{r.median_rtf:>12.3f}"
              f"{r.throughput_audio_s_per_s:>14.2f}", file=out)
    for layout in layouts:
        own = [r for r in results if r.layout == layout and r.sessions == "own"]
        shared = [r for r in results if r.layout == layout and r.sessions == "shared"]
        if own and shared:
            best, other = (own[0], shared[0]) if (
                own[0].throughput_audio_s_per_s >= shared[0].throughput_audio_s_per_s
            ) else (shared[0], own[0])
            margin = best.throughput_audio_s_per_s / other.throughput_audio_s_per_s - 1
            # Under 10% is within run-to-run noise on a busy machine: say so, not a winner.
            verdict = "within noise" if margin < 0.10 else "clear"
            print(f"{layout.name}: {best.sessions} sessions are faster "
                  f"({best.throughput_audio_s_per_s:.2f} vs {other.throughput_audio_s_per_s:.2f}"
                  f" audio s/s, +{margin:.0%}, {verdict}); use sessions={best.sessions}",
                  file=out)
    best_all = max(results, key=lambda r: r.throughput_audio_s_per_s)
    print(f"best layout: {best_all.layout.name} ({best_all.sessions} sessions), "
          f"{best_all.throughput_audio_s_per_s:.2f} audio s/s", file=out)
    single = loaded.get(1) or PiperVoice.load(args.voice, intra_op_threads=1, device=args.device)
    latency = bench_latency(single, runs=args.runs)
    print(f"single chunk, 1 thread: {latency.long_chars}-char sentence "
          f"{latency.long_compute_s * 1000:.0f} ms compute, {latency.short_words}-word phrase "
          f"{latency.short_compute_s * 1000:.0f} ms, phoneme_ids "
          f"{latency.phoneme_ids_s * 1000:.2f} ms", file=out)
    return 0


def main(argv: Sequence[str] | None = None, *, out: TextIO | None = None) -> int:
    """Entry point of ``litestream``; returns the exit status."""
    args_list = list(sys.argv[1:] if argv is None else argv)
    out = out or sys.stdout
    if args_list and args_list[0] == "serve":
        # Lazy: the server pulls in websockets, uvloop and metrics that other commands skip.
        from litestream.server import serve

        return int(serve(args_list[1:]) or 0)
    args = _build_parser().parse_args(args_list)
    logging.basicConfig(level=logging.INFO if args.verbose else logging.WARNING,
                        format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    try:
        if args.command == "say":
            return _cmd_say(args, out)
        if args.command == "voices":
            return _cmd_voices(args, out)
        if args.command == "bench" and args.bench_command == "engine":
            return _cmd_bench_engine(args, out)
    except LitestreamError as exc:
        print(f"litestream {args.command}: {exc}", file=sys.stderr)
        return 1
    except BrokenPipeError:
        # `litestream voices | head`: the reader left; not an error worth a traceback.
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return 0
    return 2


if __name__ == "__main__":
    raise SystemExit(main())
