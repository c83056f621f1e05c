"""The GPU benchmark's results as a markdown table, and nvidia-smi's per-process memory read
back: the pure parts of `python -m loadtest.gpu.bench` (its command is loadtest/gpu/bench.py),
which writes gpu-bench.json as it goes and this table from it at the end. Pure: a dict in, lines
out."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any


def compute_apps_mib(query: str, pids: Sequence[int]) -> dict[str, int]:
    """``pid -> MiB`` for ``pids`` from nvidia-smi's ``--query-compute-apps=pid,used_memory
    --format=csv,noheader,nounits`` lines."""
    used: dict[str, int] = {}
    for line in query.splitlines():
        pid, _, mib = line.partition(",")
        if pid.strip().isdigit() and int(pid) in pids and mib.strip().isdigit():
            used[pid.strip()] = int(mib)
    return used


def markdown(data: dict[str, Any]) -> str:
    m = data.get("machine", {})
    lines = [f"# GPU run {data.get('started_utc')} UTC", "",
             f"- machine: {m.get('gpu', 'no GPU')} ({m.get('gpu_memory', '-')}), driver "
             f"{m.get('driver', '-')} (CUDA {m.get('driver_cuda', '-')}), {m.get('cores')} "
             f"cores of {m.get('cpu')}, Python {m.get('python')}",
             f"- onnxruntime {m.get('onnxruntime', {}).get('version')} from "
             f"{m.get('onnxruntime', {}).get('file')}; providers "
             f"{m.get('onnxruntime', {}).get('providers')}; distributions "
             f"{m.get('distributions')}", ""]
    for search in ("exhaustive", "heuristic", "default"):
        engine = data.get(f"engine_{search}")
        voice = data.get(f"engine_{search}_voice", {})
        if not engine:
            continue
        enc = engine["encode"]
        cpu = engine.get("cpu_front")
        lines += [f"## Engine, cuDNN {search} search (flow and decoder on "
                  f"{voice.get('provider')}, front on {voice.get('front_provider')}, fixed "
                  f"shapes {voice.get('fixed_shapes')})", "",
                  f"encode: {enc['audio_s_per_s']:.0f} s of audio per s "
                  f"({enc['front_ms_per_sentence']:.1f} ms per sentence front pass over "
                  f"sentences of {enc['sentences']} lengths, "
                  f"{enc.get('steady_front_ms', 0):.1f} ms on a length already seen, "
                  f"{enc['phonemize_ms_per_sentence']:.2f} ms phonemize)", "",
                  *([f"the whole front on one host core (--cuda-front cpu): "
                     f"{cpu['front_ms_per_sentence']:.1f} ms per sentence, "
                     f"{cpu['cpu_ms_per_char']:.3f} ms per character, "
                     f"{cpu['audio_s_per_s']:.0f} s of audio per s", ""] if cpu else []),
                  *([f"batched front, {b} sentences a run: {r['run_ms']:.1f} ms, "
                     f"{r['sentences_per_s']:.0f} sentences per s, {r['audio_s_per_s']:.0f} s "
                     f"of audio per s" for b, r in engine.get("front_batches", {}).items()]
                    + [""]),
                  "| window (frames) | batch | audio s per s | run ms | first run ms |",
                  "| --- | --- | --- | --- | --- |"]
        for row in engine["decode"]:
            if "skipped" in row:
                lines.append(f"| {row['window']} | {row['batch']} | skipped | | |")
                continue
            lines.append(f"| {row['window']} | {row['batch']} | {row['audio_s_per_s']:.0f} | "
                         f"{row['run_ms']:.1f} | {row['first_run_ms']:.0f} |")
        lines.append("")
    half = data.get("engine_fp16")
    if half:
        lines += ["## fp16 flow + decoder", "", "| window | batch | audio s per s | run ms |",
                  "| --- | --- | --- | --- |"]
        lines += [f"| {r['window']} | {r['batch']} | {r.get('audio_s_per_s', 0):.0f} | "
                  f"{r.get('run_ms', 0):.1f} |" for r in half["decode"]]
        lines.append("")
    lines += servers(data)
    errors = {k: v for k, v in data.items() if k.endswith("_error")}
    if errors:
        lines += ["", "## Errors", ""] + [f"- {k}: {v}" for k, v in errors.items()]
    return "\n".join(lines) + "\n"


def servers(data: dict[str, Any]) -> list[str]:
    """Each server's section: args, 1 user, the burst, the capacity search."""
    lines: list[str] = []
    for prefix, title in (("compare_", "Server for comparison"), ("", "Server"),
                          ("replicas_", "Replicas sharing the GPU")):
        ready = data.get(f"{prefix}server_ready")
        if ready is None:
            continue
        count = ready.get("replicas", 1)
        lines += [f"## {title}", "", f"args: {ready.get('args')}"
                  + (f", {count} processes, streams dealt round-robin" if count > 1 else ""),
                  ""]
        one = data.get(f"{prefix}one_user")
        if one:
            lines.append(f"- 1 user's first audio: median {one['median_ms']:.0f} ms (runs "
                         f"{', '.join(f'{x:.0f}' for x in one['first_audio_ms'] if x)})")
            lines += [f"  - {kind} compute per step (each run's mean): "
                      f"{', '.join(f'{x:.1f}' for x in runs)} ms"
                      for kind, runs in one.get("step_ms", {}).items()]
        burst = data.get(f"{prefix}burst")
        if burst:
            inference = burst["server"].get("inference_ms_per_audio_s")
            lines.append(f"- burst of {burst['streams']}: first audio p50 "
                         f"{burst['ttfa_p50_ms'] or 0:.0f} ms, p95 "
                         f"{burst['ttfa_p95_ms'] or 0:.0f} ms; stalls {burst['stalls']} in "
                         f"{burst['streams_with_stalls']} streams; admitted "
                         f"{burst['admitted']}, refused {burst['refused']}; inference threads "
                         f"{'-' if inference is None else f'{inference:.1f}'} ms CPU per audio s")
            lines += [f"  - {kind['line']}" for kind in burst["server"].get("batches",
                                                                            {}).values()]
        memory = data.get(f"{prefix}gpu_memory_mib")
        if memory:
            lines.append(f"- GPU memory after the burst: "
                         f"{', '.join(f'{mib} MiB' for mib in memory.values())} "
                         f"({'one process' if len(memory) == 1 else 'a process each'})")
        lines += capacity_table(data, prefix)
        lines.append("")
    return lines


def capacity_table(data: dict[str, Any], prefix: str) -> list[str]:
    lines: list[str] = []
    cap = data.get(f"{prefix}capacity")
    if cap:
        lines.append(f"- largest passing load (0 stalls, all admitted and whole): "
                     f"{cap['largest_passing']} streams ({cap['note']})")
        lines += ["", "| streams | admitted | refused | first audio p95 ms | stalls | "
                  "event loop ms per audio s | frames/s | passed |",
                  "| --- | --- | --- | --- | --- | --- | --- | --- |"]
        head = f"{prefix}capacity_"
        for key in sorted((k for k in data if k.startswith(head) and k[len(head):].isdigit()),
                          key=lambda k: int(k[len(head):])):
            r = data[key]
            lines.append(f"| {r['streams']} | {r['admitted']} | {r['refused']} | "
                         f"{r['ttfa_p95_ms'] or 0:.0f} | {r['stalls']} | "
                         f"{r['server'].get('event_loop_ms_per_audio_s', 0):.3f} | "
                         f"{r['frames_per_s']:.0f} | {r['passed']} |")
    return lines
