"""The one typed configuration of a litestream server.

Every setting has a default here. Flags (`litestream serve --help`), environment variables
(`LITESTREAM_<NAME>`) and an optional TOML file map onto these fields and nothing else reads the
environment. Precedence, lowest to highest: defaults, TOML file, environment, flags.
"""

from __future__ import annotations

import argparse
import dataclasses
import ipaddress
import os
import tomllib
import types
import typing
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import Any

from litestream.errors import ConfigError
from litestream.protocol import FRAME_MS_MAX, FRAME_MS_MIN, PCM_FORMATS

ENV_PREFIX = "LITESTREAM_"


def _default_workers() -> int:
    # Measured on CPU: N workers of one intra-op thread each beat one worker of N threads.
    return max(1, os.cpu_count() or 1)


@dataclass(frozen=True)
class Config:
    """Server settings. Each field's metadata holds its help text (shown by --help)."""

    # --- network
    host: str = field(default="127.0.0.1", metadata={"help": "address to listen on"})
    port: int = field(default=8765, metadata={"help": "TCP port"})
    tls_cert: Path | None = field(default=None, metadata={"help": "PEM certificate: serve wss://"})
    tls_key: Path | None = field(default=None, metadata={"help": "PEM private key for --tls-cert"})

    # --- voice and engine
    voice: Path | None = field(
        default=None,
        metadata={"help": "Piper .onnx voice (default: bundled en_US-joe-medium), or 'synthetic':"
                          " a GPU-shaped stand-in for benchmarks and tests only"},
    )
    synthetic_cost: str = field(
        default="",
        metadata={"help": "the synthetic voice's cost per run: decode_run_ms=,decode_frame_us=,"
                          "encode_run_ms=,encode_char_us=,devices= (any of them), or a JSON file "
                          "of them (default: the bundled voice measured on an H200, see "
                          "engine/synthetic.py)"},
    )
    extra_voices: tuple[Path, ...] = field(
        default=(), metadata={"help": "more Piper .onnx voices clients may choose (comma list)"}
    )
    kokoro: bool = field(
        default=True,
        metadata={"help": "serve the Kokoro Japanese voices too when their packages are installed"},
    )
    model_cache_dir: Path | None = field(
        default=None,
        metadata={"help": "where the joined Kokoro model is kept (default: ~/.cache/litestream)"},
    )
    device: str = field(default="auto", metadata={"help": "auto, cpu or cuda"})
    # heuristic: on an H200 its kernels ran about as fast as exhaustive's, and a new shape's
    # first run cost 100-250 ms, not 600-970 (docs/benchmarks.md, "On a GPU"); default's
    # kernels ran 2-3x slower.
    cuda_conv_search: str = field(
        default="heuristic",
        metadata={"help": "cuDNN convolution algorithm search on CUDA: heuristic, exhaustive "
                          "(times every algorithm on a shape's first run) or default"},
    )
    # blocking: the workers' threads sleep while the GPU runs, rather than each polling a core
    # (CUDA's default on a one-GPU host). On the H200 the inference threads spent 97-116 ms
    # of CPU per second of audio beside a GPU that was mostly idle, while the CPU front
    # passes, the event loop and the load generator needed those cores (docs/benchmarks.md,
    # "The server on CUDA"). Not yet measured against spin on a GPU: the GPU benchmark
    # compares the two.
    cuda_sync: str = field(
        default="blocking",
        metadata={"help": "how inference threads wait for the GPU: blocking, spin, yield or "
                          "auto (CUDA's own choice, which spins on a one-GPU host)"},
    )
    # gpu: on CUDA a batch of sentences' front passes runs on the GPU as one run on padded,
    # fixed shapes (engine/piper/front.py); cpu: each sentence's front runs on a host core, as
    # in the 2026-12-04 GPU runs, at about 0.5 ms of CPU per character: ten host cores at 1,000
    # listeners (docs/operations.md). Not yet measured on a GPU: the GPU benchmark compares them.
    cuda_front: str = field(
        default="gpu",
        metadata={"help": "where a voice's front pass runs when its decoder is on CUDA: gpu "
                          "(sentences batched on fixed shapes) or cpu (one per host core)"},
    )
    # A burst of connections waits in the kernel's accept queue while the event loop is busy;
    # past the queue's length the kernel drops SYNs and the client retries a second later
    # (aiohttp's default, 128, did this to a burst of 200: docs/benchmarks.md). The kernel
    # caps it at net.core.somaxconn (4096 on Linux 5.4+).
    listen_backlog: int = field(
        default=2048,
        metadata={"help": "connections the kernel holds until the server accepts them"},
    )
    workers: int = field(
        default_factory=_default_workers,
        metadata={"help": "inference threads (default: one per core)"},
    )
    intra_op_threads: int = field(default=1, metadata={"help": "ONNX Runtime threads per worker"})
    max_batch: int = field(
        default=0, metadata={"help": "decode windows per engine run (0: 1 on CPU, 8 on CUDA)"}
    )
    # 512 on a GPU: a sentence of a few seconds then decodes in one or two windows rather than
    # two or three, so the event loop handles a third fewer results and writes for the same
    # audio (at 1,000 synthetic listeners: 0.38 against 0.45 ms of loop CPU per audio second,
    # docs/benchmarks.md); a 512-frame window is a few ms there (rows of the 256-frame shape).
    # 256 on a CPU: a window is one run that a newcomer's first audio may wait behind, and
    # there it costs 0.1-0.3 s.
    max_window_frames: int = field(
        default=0,
        metadata={"help": "longest decode window in frames after the first ones (0: 512 on a "
                          "GPU, 256 on a CPU)"},
    )
    deterministic: bool = field(
        default=False, metadata={"help": "noise scales 0: identical text gives identical audio"}
    )

    # --- watchdog (a stuck synthesis run must not hold a worker forever)
    watchdog_factor: float = field(
        default=3.0,
        metadata={"help": "terminate a synthesis run after this many times its predicted "
                          "compute (0: no watchdog)"},
    )
    # The floor sits above the longest honest step on a loaded node (a Kokoro sentence's
    # encode took over 2 s on a shared 2-core box): a terminated honest step is a lost sentence.
    watchdog_floor_s: float = field(
        default=10.0, metadata={"help": "shortest time limit of a synthesis run, s"}
    )
    watchdog_grace_s: float = field(
        default=5.0,
        metadata={"help": "a worker not back this long after terminate is replaced, s"},
    )

    # --- stream defaults (protocol-v1 config message)
    frame_ms: int = field(default=40, metadata={"help": "default audio frame length, ms"})
    audio_format: str = field(default="s16le", metadata={"help": "default format: s16le|f32le"})

    # --- scheduler knobs
    first_audio_target_ms: int = field(
        default=250, metadata={"help": "first audio deadline after its text arrives, ms"}
    )
    first_audio_slack_ms: int = field(
        default=500, metadata={"help": "a late first audio yields to playing streams this long, ms"}
    )
    jitter_ms: int = field(default=150, metadata={"help": "jitter budget before a buffer runs dry"})
    lookahead_s: float = field(
        default=4.0, metadata={"help": "unplayed audio per stream beyond which it waits, s"}
    )
    max_lookahead_s: float = field(
        default=20.0, metadata={"help": "unplayed audio beyond which it waits even if idle, s"}
    )
    target_utilization: float = field(
        default=0.8, metadata={"help": "admission control: refuse above this predicted load"}
    )
    max_streams: int = field(default=0, metadata={"help": "hard cap on open streams (0: none)"})
    download_buffer_s: float = field(
        default=10.0,
        metadata={"help": "a download stream's audio made and not yet read by its client, "
                          "beyond which its synthesis waits, s"},
    )
    max_chunk_chars: int = field(
        default=300,
        metadata={"help": "longest chunk, characters (of English speech: a third as many "
                          "Japanese ones)"})
    first_chunk_chars: int = field(
        default=80,
        metadata={"help": "a run's first sentence longer than this (characters, as "
                          "max_chunk_chars counts them) is cut once, at a clause boundary "
                          "within it, for sooner first audio (0: never)"},
    )
    cache_bytes: int = field(
        default=256 * 1024 * 1024,
        metadata={"help": "sentence cache: finished sentence audio kept for reuse, bytes (0: off)"},
    )
    # The shared level (synthesis/shared_cache.py): a sentence made on one replica is a hit on
    # every other. Lookups are bounded by cache_timeout_ms and skipped while Redis is down.
    cache_url: str = field(
        default="",
        metadata={"help": "shared sentence cache behind the in-process one: redis://[:PASSWORD@]"
                          "HOST[:PORT][/DB], rediss://... or unix://PATH (empty: none; needs the "
                          "[redis] extra)", "secret": True},
    )
    cache_ttl_s: float = field(
        default=24 * 3600.0,
        metadata={"help": "shared sentence cache: how long an entry lives in Redis, s"},
    )
    cache_timeout_ms: float = field(
        default=20.0,
        metadata={"help": "shared sentence cache: longest lookup before synthesizing instead, ms"},
    )

    # --- limits and security (protocol-v1 handshake refusals)
    api_keys: tuple[str, ...] = field(
        default=(),
        metadata={"help": "accepted API keys (comma list); none: no auth", "secret": True},
    )
    api_keys_file: Path | None = field(
        default=None, metadata={"help": "file with one API key per line"}
    )
    allowed_origins: tuple[str, ...] = field(
        default=(), metadata={"help": "allowed Origin headers, for the WebSocket handshake "
                              "and CORS alike (comma list); none: any"}
    )
    trusted_proxies: tuple[str, ...] = field(
        default=(), metadata={"help": "reverse proxies (addresses or CIDR networks, comma "
                              "list) whose X-Forwarded-For names the client for per-address "
                              "limits and logs; none: the connection's address is the client"}
    )
    max_message_bytes: int = field(
        default=64 * 1024, metadata={"help": "largest client message (close 1009 above)"}
    )
    max_buffered_chars: int = field(
        default=20_000, metadata={"help": "text buffered per stream before text_too_long"}
    )
    max_stream_chars: int = field(
        default=200_000, metadata={"help": "text one stream may send in all"}
    )
    idle_timeout_s: float = field(
        default=300.0, metadata={"help": "close a stream with no message and no audio for this"}
    )
    # aiohttp's own default keeps a connection that never sends a request for an hour (its
    # keep-alive timer also runs from the connection's start): slow clients could hold every
    # socket the open-files limit allows. nginx's client_header_timeout is 60 s; a client of
    # this API sends its whole request at once.
    request_timeout_s: float = field(
        default=30.0,
        metadata={"help": "close an HTTP connection that has sent no whole request this long "
                          "after it opened or after its last answer, and answer 408 to a "
                          "request body not in this long after its headers"},
    )
    # Per-address defaults are generous: many clients may share one address (a NAT, a proxy,
    # a load test over loopback). Operators with API keys tighten them per key.
    messages_per_s: float = field(
        default=200.0, metadata={"help": "message rate per key (or client address)"}
    )
    chars_per_s: float = field(
        default=20_000.0, metadata={"help": "text rate per key (or client address), chars/s"}
    )
    streams_per_key: int = field(
        default=64, metadata={"help": "concurrent streams per key (or client address)"}
    )
    send_buffer_s: float = field(
        default=30.0, metadata={"help": "audio queued to a slow reader before it is closed, s"}
    )
    slow_reader_timeout_s: float = field(
        default=10.0, metadata={"help": "how long a client may stop reading before close"}
    )

    # --- lifecycle and logs
    drain_grace_s: float = field(
        default=30.0, metadata={"help": "on SIGTERM, time streams get to finish"}
    )
    log_level: str = field(default="INFO", metadata={"help": "DEBUG, INFO, WARNING, ERROR"})
    log_json: bool = field(default=False, metadata={"help": "log one JSON object per line"})

    def __post_init__(self) -> None:
        _validate(self)

    # The scheduler's view in seconds: the one place these ms settings are converted.
    @property
    def first_audio_target_s(self) -> float:
        return self.first_audio_target_ms / 1000.0

    @property
    def first_audio_slack_s(self) -> float:
        return self.first_audio_slack_ms / 1000.0

    @property
    def jitter_s(self) -> float:
        return self.jitter_ms / 1000.0

    def all_api_keys(self) -> frozenset[str]:
        """Keys from --api-keys and --api-keys-file together."""
        keys = set(self.api_keys)
        if self.api_keys_file is not None:
            try:
                text = self.api_keys_file.read_text(encoding="utf-8")
            except OSError as exc:
                raise ConfigError(
                    f"api_keys_file: cannot read {self.api_keys_file}: {exc}"
                ) from exc
            keys.update(line.strip() for line in text.splitlines() if line.strip())
        return frozenset(keys)


def _check(cond: bool, name: str, why: str) -> None:
    if not cond:
        raise ConfigError(f"invalid setting {name}: {why}")


def _validate(c: Config) -> None:
    _check(0 < c.port < 65536, "port", f"{c.port} is not a TCP port")
    _check(c.workers >= 1, "workers", "must be at least 1")
    _check(c.listen_backlog >= 1, "listen_backlog", "must be at least 1")
    _check(c.intra_op_threads >= 1, "intra_op_threads", "must be at least 1")
    _check(c.max_batch >= 0, "max_batch", "must be 0 (auto) or more")
    _check(c.max_window_frames == 0 or 32 <= c.max_window_frames <= 2048, "max_window_frames",
           "must be 0 (auto) or 32..2048")
    _check(c.watchdog_factor == 0 or c.watchdog_factor >= 1, "watchdog_factor",
           "must be 0 (off) or at least 1")
    _check(c.watchdog_floor_s > 0, "watchdog_floor_s", "must be positive")
    _check(c.watchdog_grace_s > 0, "watchdog_grace_s", "must be positive")
    _check(c.device in ("auto", "cpu", "cuda"), "device", f"{c.device!r} is not auto, cpu or cuda")
    _check(c.cuda_conv_search in ("exhaustive", "heuristic", "default"), "cuda_conv_search",
           f"{c.cuda_conv_search!r} is not exhaustive, heuristic or default")
    _check(c.cuda_sync in ("blocking", "spin", "yield", "auto"), "cuda_sync",
           f"{c.cuda_sync!r} is not blocking, spin, yield or auto")
    _check(c.cuda_front in ("gpu", "cpu"), "cuda_front", f"{c.cuda_front!r} is not gpu or cpu")
    _check(FRAME_MS_MIN <= c.frame_ms <= FRAME_MS_MAX, "frame_ms",
           f"must be {FRAME_MS_MIN}..{FRAME_MS_MAX} (protocol-v1)")
    _check(c.audio_format in PCM_FORMATS, "audio_format",
           f"must be one of {', '.join(PCM_FORMATS)}")
    _check(c.first_audio_target_ms > 0, "first_audio_target_ms", "must be positive")
    _check(c.jitter_ms >= 0, "jitter_ms", "must not be negative")
    _check(c.first_audio_slack_ms >= 0, "first_audio_slack_ms", "must not be negative")
    _check(0 < c.lookahead_s <= c.max_lookahead_s, "lookahead_s", "must be in (0, max_lookahead_s]")
    _check(0 < c.target_utilization <= 1.5, "target_utilization", "must be in (0, 1.5]")
    _check(c.max_streams >= 0, "max_streams", "must not be negative")
    _check(c.download_buffer_s > 0, "download_buffer_s", "must be positive")
    _check(c.max_chunk_chars >= 40, "max_chunk_chars", "must be at least 40")
    _check(0 <= c.first_chunk_chars <= c.max_chunk_chars, "first_chunk_chars",
           "must be 0 (never) up to max_chunk_chars")
    _check(c.cache_bytes >= 0, "cache_bytes", "must be 0 (off) or more")
    _check(c.cache_url == "" or c.cache_url.startswith(("redis://", "rediss://", "unix://")),
           "cache_url", "must be empty or a redis://, rediss:// or unix:// URL")
    _check(c.cache_ttl_s >= 1, "cache_ttl_s", "must be at least 1")
    _check(0 < c.cache_timeout_ms <= 1000, "cache_timeout_ms", "must be in (0, 1000]")
    _check(c.max_message_bytes >= 1024, "max_message_bytes", "must be at least 1024")
    _check(c.max_buffered_chars >= 1, "max_buffered_chars", "must be positive")
    _check(c.max_stream_chars >= c.max_buffered_chars, "max_stream_chars", "below max_buffered")
    for name in ("idle_timeout_s", "request_timeout_s", "messages_per_s", "chars_per_s",
                 "send_buffer_s", "slow_reader_timeout_s"):
        _check(getattr(c, name) > 0, name, "must be positive")
    _check(c.streams_per_key >= 1, "streams_per_key", "must be at least 1")
    _check(c.drain_grace_s >= 0, "drain_grace_s", "must not be negative")
    _check(c.log_level.upper() in ("DEBUG", "INFO", "WARNING", "ERROR"), "log_level", c.log_level)
    _check((c.tls_cert is None) == (c.tls_key is None), "tls_cert", "needs tls_key, and back")
    for entry in c.trusted_proxies:
        try:
            ipaddress.ip_network(entry.strip(), strict=False)
        except ValueError:
            _check(False, "trusted_proxies", f"{entry!r} is not an address or network")
    for key in c.api_keys:
        _check(bool(key) and key == key.strip(), "api_keys", "an empty or padded key")


# ---------------------------------------------------------------- mapping sources onto Config

def _field_types() -> dict[str, Any]:
    return typing.get_type_hints(Config)


def _base_type(tp: Any) -> Any:
    """`Path | None` -> Path; `tuple[str, ...]` -> tuple."""
    if isinstance(tp, types.UnionType) or typing.get_origin(tp) is typing.Union:
        args = [a for a in typing.get_args(tp) if a is not type(None)]
        return args[0]
    return typing.get_origin(tp) or tp


def _item_type(tp: Any) -> Any:
    args = typing.get_args(tp)
    return args[0] if args else str


def _convert(name: str, raw: Any) -> Any:
    """Turn a string (env, flag) or TOML value into the field's type, or raise ConfigError."""
    tp = _field_types()[name]
    base = _base_type(tp)
    try:
        if raw is None:
            return None
        if base is bool:
            if isinstance(raw, bool):
                return raw
            text = str(raw).strip().lower()
            if text in ("1", "true", "yes", "on"):
                return True
            if text in ("0", "false", "no", "off"):
                return False
            raise ValueError(f"{raw!r} is not a boolean")
        if base is tuple:
            item = _item_type(tp)
            items = raw if isinstance(raw, list | tuple) else str(raw).split(",")
            return tuple(item(str(x).strip()) for x in items if str(x).strip())
        if base in (int, float):
            if isinstance(raw, bool):
                raise ValueError(f"{raw!r} is not a number")
            return base(raw)
        if base is Path:
            return Path(str(raw)).expanduser() if str(raw) else None
        return str(raw)
    except (TypeError, ValueError) as exc:
        raise ConfigError(f"invalid setting {name}: {exc}") from exc


def _from_mapping(values: Mapping[str, Any], source: str) -> dict[str, Any]:
    known = {f.name for f in fields(Config)}
    out: dict[str, Any] = {}
    for key, raw in values.items():
        name = key.replace("-", "_")
        if name not in known:
            raise ConfigError(f"unknown setting {key!r} in {source}")
        out[name] = _convert(name, raw)
    return out


def load_toml(path: Path) -> dict[str, Any]:
    try:
        with path.open("rb") as fh:
            data = tomllib.load(fh)
    except OSError as exc:
        raise ConfigError(f"cannot read config file {path}: {exc}") from exc
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(f"config file {path} is not valid TOML: {exc}") from exc
    # Settings may sit at the top level or under [litestream].
    table = data.get("litestream", data)
    return _from_mapping(table, str(path))


def from_env(environ: Mapping[str, str]) -> dict[str, Any]:
    known = {f.name for f in fields(Config)}
    picked: dict[str, str] = {}
    for key, value in environ.items():
        if not key.startswith(ENV_PREFIX):
            continue
        name = key[len(ENV_PREFIX):].lower()
        if name == "config":
            continue  # LITESTREAM_CONFIG names the TOML file, not a field
        if _is_service_link(name, value):
            continue
        if name not in known:
            raise ConfigError(f"unknown environment variable {key}")
        picked[name] = value
    return _from_mapping(picked, "environment")


def _is_service_link(name: str, value: str) -> bool:
    """Kubernetes injects LITESTREAM_SERVICE_HOST, LITESTREAM_PORT=tcp://... and friends for a
    Service named `litestream`; they are not settings and must not stop the start."""
    return (name.startswith(("service_", "port_")) or
            (name == "port" and value.startswith(("tcp://", "udp://"))))


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """One flag per Config field, each documented from the field's metadata."""
    parser.add_argument("--config", type=Path, default=None,
                        help="TOML file of settings (env LITESTREAM_CONFIG)")
    defaults = Config()
    for f in fields(Config):
        flag = "--" + f.name.replace("_", "-")
        help_text = f.metadata.get("help", "")
        env = ENV_PREFIX + f.name.upper()
        default = _show(getattr(defaults, f.name))
        # A help text that names its own default says it better than the computed value
        # ("one per core", not "2"); a secret's default is never shown.
        own = "(default:" in help_text
        shown = "" if f.metadata.get("secret") or own else f" (default: {default})"
        full_help = f"{help_text}{shown}; env {env}"
        if _base_type(_field_types()[f.name]) is bool:
            parser.add_argument(flag, dest=f.name, default=None,
                                action=argparse.BooleanOptionalAction, help=full_help)
        else:
            parser.add_argument(flag, dest=f.name, default=None, metavar=f.name.upper(),
                                help=full_help)


def _show(value: Any) -> str:
    if isinstance(value, tuple):
        return ",".join(str(v) for v in value) or "none"
    return "none" if value is None else str(value)


def build(
    args: argparse.Namespace | None = None,
    environ: Mapping[str, str] | None = None,
    **overrides: Any,
) -> Config:
    """Defaults < TOML file < environment < flags < keyword overrides (for tests)."""
    environ = os.environ if environ is None else environ
    values: dict[str, Any] = {}
    toml_path = getattr(args, "config", None) or environ.get(ENV_PREFIX + "CONFIG")
    if toml_path:
        values.update(load_toml(Path(toml_path)))
    values.update(from_env(environ))
    if args is not None:
        flagged = {f.name: getattr(args, f.name, None) for f in fields(Config)}
        values.update(_from_mapping({k: v for k, v in flagged.items() if v is not None}, "flags"))
    values.update(overrides)
    try:
        return Config(**values)
    except TypeError as exc:
        raise ConfigError(str(exc)) from exc


def default_of(name: str) -> Any:
    """A setting's default, read from its Config field (for docs and help texts elsewhere)."""
    f = Config.__dataclass_fields__[name]
    if f.default_factory is not dataclasses.MISSING:
        return f.default_factory()
    return f.default


def parse_args(argv: Sequence[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog="litestream serve",
        description="Serve realtime TTS over WebSocket (protocol v1) on ws://HOST:PORT/v1/stream.",
    )
    add_arguments(parser)
    return parser.parse_args(argv)
