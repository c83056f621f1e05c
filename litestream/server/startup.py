"""What the server settles once, before its first stream: voices, batch size, TLS, and warming
what a first stream would otherwise pay for on the event loop.

`LitestreamServer.start` calls these in order (listen, warm the workers, calibrate through
`synthesis/calibration.py`, turn ready); the order and the serving stay in `app.py`.
"""

from __future__ import annotations

import logging
import resource
import ssl
from collections.abc import Mapping

from litestream.config import Config
from litestream.engine import Voice, onnx, registry
from litestream.engine.synthetic import PROVIDER as SYNTHETIC_PROVIDER
from litestream.errors import ConfigError
from litestream.text import languages
from litestream.text.segmenter import Segmenter

log = logging.getLogger("litestream.startup")

def voices_from_config(config: Config) -> dict[str, Voice]:
    """Every voice by id (engine/registry.py); the first one loaded is the default."""
    onnx.set_cuda_conv_search(config.cuda_conv_search)
    onnx.set_cuda_sync(config.cuda_sync)
    onnx.set_cuda_front(config.cuda_front)
    return registry.load_voices(
        config.voice, config.extra_voices, kokoro_voices=config.kokoro,
        cache_dir=config.model_cache_dir, intra_op_threads=config.intra_op_threads,
        device=config.device, deterministic=config.deterministic,
        synthetic_cost=config.synthetic_cost,
    )


# Providers that batch as a GPU does: CUDA, and the synthetic voice that stands in for it.
GPU_PROVIDERS = ("CUDA", SYNTHETIC_PROVIDER)


def on_gpu(voices: Mapping[str, Voice]) -> bool:
    """Some voice runs on a GPU (or stands in for one): the server's GPU settings apply."""
    return any(v.provider.startswith(GPU_PROVIDERS) for v in voices.values())


def max_batch(config: Config, voices: Mapping[str, Voice]) -> int:
    """Decode windows run together: the configured bound, else 8 on a GPU and 1 on a CPU."""
    return config.max_batch or (8 if on_gpu(voices) else 1)


def max_window_frames(config: Config, voices: Mapping[str, Voice]) -> int:
    """The longest decode window: the configured bound, else 512 on a GPU and 256 on a CPU
    (Config.max_window_frames says why)."""
    return config.max_window_frames or (512 if on_gpu(voices) else 256)


# Open files a server keeps for itself beside its streams' sockets: model and log files, the
# listening socket, Redis, the event loop's, a refused handshake's socket while it is answered.
# A started server held 19, with the synthetic voice and with every voice (Kokoro too); the
# rest of the limit is for streams, each one socket (WebSocket or POST).
OWN_FILES = 128


def open_files_limit() -> int:
    """The process's soft limit of open files."""
    return resource.getrlimit(resource.RLIMIT_NOFILE)[0]


def raise_open_files_limit() -> tuple[int, int]:
    """The soft limit of open files raised to the hard one, as Go's runtime does at start:
    every stream is a socket, and a shell's or a systemd service's soft limit is often 1,024,
    under which the ~1,000th connection was reset at accept, with nothing in the log
    (docs/operations.md, "Open files"). Returns (before, after)."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if hard == resource.RLIM_INFINITY or soft >= hard:
        return soft, soft
    try:
        resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
    except (ValueError, OSError):  # a sandbox may refuse; the cap below still holds
        return soft, soft
    return soft, hard


def stream_cap(max_streams: int, open_files: int) -> int:
    """The most streams the server may hold: ``max_streams`` (0: none set), and what the
    open-files limit leaves beside the server's own files, so that the stream past it is
    refused with 503 at its handshake instead of reset at accept."""
    room = max(1, open_files - min(OWN_FILES, open_files // 4))
    return min(max_streams, room) if max_streams else room


def tls_context(config: Config) -> ssl.SSLContext | None:
    """The server's TLS context when a certificate and its key are configured, else None."""
    if config.tls_cert is None or config.tls_key is None:
        return None
    tls = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    try:
        tls.load_cert_chain(config.tls_cert, config.tls_key)
    except (OSError, ssl.SSLError) as exc:  # missing, unreadable, not PEM, key not the cert's
        why = exc.strerror if isinstance(exc, OSError) and exc.strerror else str(exc)
        raise ConfigError(f"cannot load the TLS certificate {config.tls_cert} with key "
                          f"{config.tls_key}: {why}") from exc
    return tls


def warm_segmenters(voices: Mapping[str, Voice]) -> None:
    """Cut one paragraph per voice language, so the first stream does not pay pysbd's first use.

    pysbd compiles its rules the first time a process segments text: 100-170 ms on the event
    loop, measured on the first stream after start-up with every voice loaded (docs/operations.md,
    "Warm start"), against about 3 ms later."""
    for language in sorted({v.language for v in voices.values()}):
        segmenter = Segmenter(language=languages.segmenter_language(language))
        segmenter.feed(languages.calibration_text(language))
        segmenter.flush()
