"""Endurance runs against `litestream serve` processes: cold start, soak, memory growth.

`serve_process` starts the server as a child process on a free loopback port; `rss_mb` and
`cache_mb` read its resident memory and its sentence cache. `coldstart` compares the first
stream on fresh servers with warm ones; `soak` runs closed-loop mixed traffic and judges the
growth of RSS less the cache; `memory_variant` feeds one engine session hostile chunks under
each ONNX Runtime memory setting. The command line is loadtest/faults.py's (`--coldstart`,
`--soak`, `--memory`). Figures are printed, never asserted (docs/style.md: tests).
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import random
import signal
import statistics
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from loadtest.lib.net import free_port
from loadtest.lib.recorder import fmt_ms, percentile
from loadtest.lib.scripted_client import fuzz_frames, speak, text_msgs
from loadtest.lib.texts import LONG, PARAGRAPH, words

ROOT = Path(__file__).resolve().parents[1]


# ---------------------------------------------------------------- subprocess server

def rss_mb(pid: int) -> float:
    with open(f"/proc/{pid}/status", encoding="ascii") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024.0
    raise RuntimeError(f"no VmRSS for pid {pid}")


def cache_mb(ws_url: str) -> float:
    """The server's sentence cache in MB (`litestream_cache_bytes` on /metrics; 0 when off)."""
    from prometheus_client.parser import text_string_to_metric_families

    base = ws_url.replace("ws://", "http://", 1).split("/v1/", 1)[0]
    with urllib.request.urlopen(f"{base}/metrics", timeout=5) as resp:
        text = resp.read().decode("utf-8")
    for family in text_string_to_metric_families(text):
        if family.name == "litestream_cache_bytes":
            return sum(sample.value for sample in family.samples) / 1e6
    return 0.0


def http_status(url: str) -> int:
    try:
        with urllib.request.urlopen(url, timeout=5) as resp:
            return int(resp.status)
    except urllib.error.HTTPError as err:
        return int(err.code)


@contextlib.contextmanager
def serve_process(args: Sequence[str], cwd: Path = ROOT,
                  env: dict[str, str] | None = None) -> Any:
    """`litestream serve` as a child process on a free port; yields (proc, port, ready_s)."""
    port = free_port()
    clean = {k: v for k, v in os.environ.items() if not k.startswith("LITESTREAM_")}
    clean.update(env or {})
    clean["PYTHONPATH"] = str(cwd)
    proc = subprocess.Popen([sys.executable, "-m", "litestream", "serve", "--host", "127.0.0.1",
                             "--port", str(port), "--log-level", "WARNING", *args],
                            cwd=cwd, env=clean, stdout=subprocess.DEVNULL,
                            stderr=subprocess.DEVNULL)
    started = time.monotonic()
    try:
        while True:
            if proc.poll() is not None:
                raise RuntimeError(f"server exited with {proc.returncode}")
            if time.monotonic() - started > 180:
                raise RuntimeError("server not ready in 180 s")
            try:
                if http_status(f"http://127.0.0.1:{port}/readyz") == 200:
                    break
            except OSError:
                pass
            time.sleep(0.05)
        yield proc, port, time.monotonic() - started
    finally:
        if proc.poll() is None:
            proc.send_signal(signal.SIGINT)
            proc.send_signal(signal.SIGINT)  # a second signal: exit now, no drain
            try:
                proc.wait(15)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()


# ---------------------------------------------------------------- cold start

async def first_audio_ms(url: str, text: str, burst: int = 1) -> float | None:
    """Median first audio of `burst` streams opened at once with `text`."""
    results = await asyncio.gather(*(speak(url, i, text_msgs(text)) for i in range(burst)))
    ttfa = [r.ttfa_ms for r in results if r.ttfa_ms is not None]
    return statistics.median(ttfa) if ttfa else None


def coldstart(servers: int, warm_streams: int, cwd: Path, extra: Sequence[str],
              burst: int = 1) -> None:
    """First stream (or burst of streams) after /readyz turns green vs warm ones, on fresh
    server processes."""
    texts = [PARAGRAPH, LONG[:400], "Hello there, how are you today?"]
    firsts: list[float] = []
    warms: list[float] = []
    for i in range(servers):
        with serve_process(["--workers", "2", *extra], cwd=cwd) as (_, port, ready_s):
            url = f"ws://127.0.0.1:{port}/v1/stream"
            text = texts[i % len(texts)]
            first = asyncio.run(first_audio_ms(url, text, burst))
            warm = [asyncio.run(first_audio_ms(url, text, burst)) for _ in range(warm_streams)]
            warm_ok = [w for w in warm if w is not None]
            if first is not None:
                firsts.append(first)
            warms.extend(warm_ok)
            print(f"server {i}: ready after {ready_s:.1f} s; first stream first audio "
                  f"{fmt_ms(first)} ms; warm {', '.join(fmt_ms(w) for w in warm_ok)} ms",
                  flush=True)
    if firsts and warms:
        ratio = statistics.median(firsts) / statistics.median(warms)
        print(f"first stream median {statistics.median(firsts):.0f} ms, warm median "
              f"{statistics.median(warms):.0f} ms: ratio {ratio:.2f} (bar 1.5)")


# ---------------------------------------------------------------- soak

WEIRD = ("日本語のテキストと漢字が続きます。", "😀🎉🚀✨🌍", "1234567890 3.14159 $1,000,000.",
         "Ωμέγα Ελληνικά κείμενο.", "ﷺ ﷽ ẞ ǅ Ꙭ", "e\u0301\u0302\u0303" * 4, "\u202eevil\u202c")


def soak_client(rng: random.Random) -> tuple[str, list[str | bytes], dict[str, Any]]:
    """One client of the mixed traffic: (kind, frames, speak() options)."""
    kind = rng.choices(["paragraph", "tokens", "clear", "disconnect", "malformed", "longest",
                        "unicode"], weights=[30, 20, 10, 10, 10, 8, 12])[0]
    if kind == "paragraph":
        return kind, text_msgs(PARAGRAPH), {}
    if kind == "tokens":
        toks = [json.dumps({"type": "text", "text": w}) for w in words(PARAGRAPH)]
        return kind, [*toks, json.dumps({"type": "end"})], {"pace_s": 0.12}
    if kind == "clear":
        return kind, [*text_msgs(LONG, end=False), json.dumps({"type": "clear"}),
                      *text_msgs("And now something short instead.")], {"pace_s": 2.0}
    if kind == "disconnect":
        return kind, text_msgs(LONG, end=False), {"abort_after_s": rng.uniform(0.2, 4.0)}
    if kind == "malformed":
        return kind, [*fuzz_frames(rng, 40), json.dumps({"type": "end"})], {"pace_s": 0.01}
    if kind == "longest":
        # The largest text one message may carry (max_buffered_chars, 20,000 by default):
        # sent, spoken for a while, then dropped.
        text = (LONG + " ") * (20_000 // (len(LONG) + 1))
        return kind, text_msgs(text[:20_000], end=False), {"abort_after_s": rng.uniform(3, 10)}
    # unusual Unicode: the phonemizer spells it out, so short texts become long shapes
    text = " ".join(rng.choice(WEIRD) for _ in range(rng.randint(3, 18)))
    return kind, text_msgs(text), {}


def memory_growth(samples: Sequence[tuple[float, float, float]], warm_s: float,
                  window_s: float = 120.0) -> tuple[float, float, float]:
    """(own MB after warm-up, own MB at the end, growth %) from (t, rss MB, cache MB) samples.

    "Own" is RSS less the sentence cache. RSS swings by tens of MB from one sample to the next
    while runs hold their activations, so each end is the mean of the samples within
    `window_s`: right after the warm-up, and before the last sample."""
    own = [(t, rss - cache) for t, rss, cache in samples]
    after = [(t, mb) for t, mb in own if t >= warm_s] or own
    start_t, end_t = after[0][0], after[-1][0]
    base = statistics.fmean(mb for t, mb in after if t <= start_t + window_s)
    final = statistics.fmean(mb for t, mb in after if t >= end_t - window_s)
    return base, final, (final - base) / base * 100


async def soak(url: str, pid: int, minutes: float, streams: int, warmup_minutes: float,
               sample_s: float = 10.0, seed: int = 1) -> bool:
    """Closed-loop mixed traffic: `streams` clients at once, each starting a new one when it
    ends; RSS of `pid` and the sentence cache's bytes sampled every `sample_s`.

    PASS: RSS less the cache grows < 5% after warm-up (means of the first and last two
    minutes, `memory_growth`). The cache is a store bounded by
    `--cache-bytes` (256 MiB by default) that fills as the mix's distinct sentences arrive;
    it is reported apart, and a soak with `--server-args "--cache-bytes 0"` has none."""
    loop = asyncio.get_running_loop()
    t0 = loop.time()
    end_at = t0 + minutes * 60
    warm_at = t0 + warmup_minutes * 60
    rng = random.Random(seed)
    counts: dict[str, int] = {}
    bad: dict[str, int] = {}
    samples: list[tuple[float, float, float]] = []  # (t, rss MB, cache MB)
    paragraph_ttfa: list[float] = []
    paragraph_stalls = [0, 0]  # stalls, paragraph streams

    async def slot(index: int) -> None:
        n = 0
        while loop.time() < end_at:
            kind, frames, options = soak_client(rng)
            counts[kind] = counts.get(kind, 0) + 1
            result = await speak(url, index * 100_000 + n, frames, timeout_s=240, **options)
            n += 1
            if result.timed_out:
                bad["timed_out"] = bad.get("timed_out", 0) + 1
            if result.refused:
                bad["refused"] = bad.get("refused", 0) + 1
                await asyncio.sleep(1.0)
            if kind == "paragraph" and result.done:
                paragraph_stalls[0] += result.stall_count
                paragraph_stalls[1] += 1
                if result.ttfa_ms is not None:
                    paragraph_ttfa.append(result.ttfa_ms)
            if kind in ("paragraph", "tokens", "unicode") and not (result.done or result.refused):
                bad[f"{kind}_not_done"] = bad.get(f"{kind}_not_done", 0) + 1

    async def sampler() -> None:
        while loop.time() < end_at:
            now = loop.time() - t0
            samples.append((now, rss_mb(pid), await asyncio.to_thread(cache_mb, url)))
            print(f"t={now / 60:5.1f} min  rss {samples[-1][1]:7.1f} MB  cache "
                  f"{samples[-1][2]:5.1f} MB  clients "
                  f"{sum(counts.values())}  {counts}  problems {bad}", flush=True)
            await asyncio.sleep(sample_s)

    await asyncio.gather(sampler(), *(slot(i) for i in range(streams)))
    samples.append((loop.time() - t0, rss_mb(pid), await asyncio.to_thread(cache_mb, url)))
    warm_s = warm_at - t0
    peak = max((mb for t, mb, _ in samples if t >= warm_s), default=samples[-1][1])
    base, final, growth = memory_growth([(t, mb, 0.0) for t, mb, _ in samples], warm_s)
    own_base, own_final, own_growth = memory_growth(samples, warm_s)
    print(f"soak: {minutes:.0f} min, {streams} concurrent clients, {sum(counts.values())} "
          f"clients in all {counts}")
    print(f"rss, mean of the first and last 2 min after warm-up ({warmup_minutes:.0f} min): "
          f"{base:.0f} -> {final:.0f} MB, growth {growth:+.1f}%; start {samples[0][1]:.0f} MB, "
          f"peak after warm-up {peak:.0f} MB")
    print(f"sentence cache: {base - own_base:.0f} MB after warm-up, {final - own_final:.0f} MB "
          f"at the end; rss less the cache: {own_base:.0f} -> {own_final:.0f} MB: growth "
          f"{own_growth:+.1f}% (bar < 5%)")
    print(f"paragraph streams: {paragraph_stalls[1]} done, {paragraph_stalls[0]} stalls, first "
          f"audio p50 {fmt_ms(percentile(paragraph_ttfa, 50))} ms p95 "
          f"{fmt_ms(percentile(paragraph_ttfa, 95))} ms; problems {bad or 'none'}")
    verdict = own_growth < 5.0
    print("PASS" if verdict else "FAIL")
    return verdict


# ---------------------------------------------------------------- memory: what grows

MEMORY_VARIANTS = ("arena", "noarena", "noarena+trim", "noarena+trim+keep")


def memory_variant(variant: str, runs: int, seed: int = 1) -> None:
    """One engine session fed hostile chunks (long, unusual Unicode, many shapes), RSS of this
    process sampled; RTF on ordinary chunks before and after. `variant`: "arena" (ONNX
    Runtime's CPU arena on: before issue 10), "noarena", "noarena+trim" (malloc_trim after
    each run), "noarena+trim+keep" (and glibc keeps what a run frees until the trim, as the
    server does now: `keep_freed_memory_until_trim`)."""
    import gc

    from litestream.engine import PiperVoice
    from litestream.engine.piper import model as piper_model
    from litestream.synthesis.calibration import CALIBRATION_WINDOW_FRAMES as window
    from litestream.synthesis.workers import keep_freed_memory_until_trim, release_memory
    from litestream.text.segmenter import Segmenter

    if variant.endswith("+keep"):
        keep_freed_memory_until_trim()  # before the voice allocates, as `litestream serve` does

    plain = piper_model.session_options

    def options(threads: int) -> Any:
        opts = plain(threads)
        opts.enable_cpu_mem_arena = variant == "arena"
        return opts

    # piper_model.create_session looks the name up at each call, so every session sees this.
    piper_model.session_options = options  # type: ignore[assignment]
    voice = PiperVoice.load(deterministic=True)
    trim = "+trim" in variant
    seg = Segmenter()
    ordinary = seg.feed(PARAGRAPH + " " + LONG) + seg.flush()
    rng = random.Random(seed)

    def run(text: str) -> tuple[float, float]:
        """The serving path: the sentence's encode, then its decode windows."""
        ids = voice.phoneme_ids(text)
        t = time.perf_counter()
        latent = voice.encode(ids)
        samples = 0
        for start in range(0, latent.frames, window):
            samples += len(voice.decode(latent, start, min(window, latent.frames - start)))
        if trim:
            release_memory()
        return time.perf_counter() - t, samples / voice.sample_rate

    def rtf() -> float:
        spent = [run(chunk) for chunk in ordinary]
        return sum(c for c, _ in spent) / sum(a for _, a in spent)

    pid = os.getpid()
    rtf_before = rtf()
    start = rss_mb(pid)
    sizes: list[int] = []
    samples = []
    for i in range(runs):
        if i % 3 == 2:
            text = " ".join(rng.choice(WEIRD) for _ in range(rng.randint(3, 30)))[:300]
        else:
            text = (LONG * 2)[: rng.randint(10, 300)]
        sizes.append(len(voice.phoneme_ids(text)))
        run(text)
        if (i + 1) % max(1, runs // 6) == 0:
            gc.collect()
            samples.append(round(rss_mb(pid)))
    rtf_after = rtf()
    print(f"{variant:>17}: rss {start:.0f} MB after ordinary chunks -> "
          f"{', '.join(map(str, samples))} MB over {runs} hostile chunks (largest "
          f"{max(sizes)} phonemes); growth {samples[-1] - start:+.0f} MB; RTF on ordinary "
          f"chunks {rtf_before:.4f} before, {rtf_after:.4f} after", flush=True)


def memory(runs: int) -> None:
    for variant in MEMORY_VARIANTS:
        subprocess.run([sys.executable, "-m", "loadtest.faults", "--memory-variant", variant,
                        "--runs", str(runs)], cwd=ROOT, check=False)
