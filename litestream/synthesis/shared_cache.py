"""The shared sentence cache: Redis behind each replica's in-process `SentenceCache`.

With `--cache-url`, a chunk the in-process cache misses is looked up in Redis before it is
synthesized, and every chunk a replica synthesizes whole is written there in the background. So
a stock phrase synthesized on one replica is a hit on every other.

The key (`shared_key`) carries everything that changes the audio: the voice id, the voice's
`fingerprint` (its model and config files' checksums, noise settings and how its text is read,
engine.base.Voice), the speed and the chunk's normalized text (hashed). A changed voice file has
another fingerprint, so it never gets the old file's audio. The value is the audio as the engine
made it, float32 mono, behind a small header and the sentence's words with their times
(`encode_entry`): a hit takes the same road to the client as fresh synthesis, so cached and
synthesized chunks give the same bytes and the same `words` events.

Size: 4 bytes per sample, 88.2 kB per second of audio at 22,050 Hz (the Piper voices), 96 kB at
24,000 Hz (Kokoro), some 40 bytes a word, plus about 100 bytes of key and Redis overhead; a
typical 2-3 s sentence is about 0.2 MB. Entries live `--cache-ttl-s` (a day by default); Redis
itself should run with `maxmemory` and `maxmemory-policy allkeys-lru`, so a full Redis drops its
least used sentences instead of refusing writes (docs/operations.md, "Shared sentence cache").

Redis is never on a client's error path. Every lookup is bounded by `--cache-timeout-ms` (20 ms
by default); a lookup or write that fails or runs out of time marks Redis down for `RETRY_S`,
during which no lookup is tried at all, then the next operation tries again. A warning is logged
once when Redis goes away (and an info line when it is back); the metrics count every error by
reason (`litestream_shared_cache_errors_total`). A full Redis (maxmemory with noeviction) only
pauses writes. Writes run in the background, at most `MAX_PENDING_WRITES` at a time.

Loop thread only: `get` is a coroutine, `put` schedules one.
"""

from __future__ import annotations

import asyncio
import hashlib
import json
import logging
import struct
import urllib.parse
from collections.abc import Mapping
from typing import Any

import numpy as np

from litestream.engine.base import Word
from litestream.errors import ConfigError
from litestream.metrics import Metrics
from litestream.synthesis.cache import CachedAudio, normalize_key

log = logging.getLogger("litestream.cache")

# v2: entries carry their sentence's words (v1 entries, audio only, are never read).
KEY_PREFIX = "litestream:audio:v2"
# magic, sample rate (Hz), length of the words' JSON; that JSON and the float32 little-endian
# samples follow.
_HEADER = struct.Struct("<4sII")
_MAGIC = b"LSA2"
# Longer chunks are not written: about 45 s of audio at 22,050 Hz. Stock phrases are short.
MAX_ENTRY_BYTES = 4 * 1024 * 1024
RETRY_S = 2.0  # after a failure, how long no operation is tried
MAX_PENDING_WRITES = 32
# How long a background write may take: it is on no one's path, but a slow Redis must not pile
# up writes (MAX_PENDING_WRITES bounds them too).
WRITE_TIMEOUT_S = 0.5
# A later repeat of an outage within this long is logged at INFO, not WARNING: a flapping Redis
# must not flood the log.
WARN_EVERY_S = 300.0


def shared_key(voice: str, fingerprint: str, speed: float, text: str) -> str:
    """`litestream:audio:v2:<voice>:<fingerprint[:16]>:<speed>:<sha256(text)[:32]>`."""
    digest = hashlib.sha256(normalize_key(text).encode("utf-8")).hexdigest()[:32]
    return f"{KEY_PREFIX}:{voice}:{fingerprint[:16]}:{round(float(speed), 4):.4f}:{digest}"


def encode_entry(samples: np.ndarray, sample_rate: int, text: str = "",
                 words: tuple[Word, ...] = ()) -> bytes:
    audio = np.ascontiguousarray(samples, dtype="<f4").reshape(-1)
    meta = json.dumps({"text": text, "words": [
        [w.text, w.char_start, w.char_end, w.start_sample, w.end_sample] for w in words]},
        ensure_ascii=False, separators=(",", ":")).encode("utf-8")
    return _HEADER.pack(_MAGIC, sample_rate, len(meta)) + meta + audio.tobytes()


def decode_entry(data: bytes, sample_rate: int) -> CachedAudio | None:
    """The audio and words of an entry, or None when it is not one of ours at this rate."""
    if len(data) <= _HEADER.size:
        return None
    magic, rate, meta_len = _HEADER.unpack_from(data)
    start = _HEADER.size + meta_len
    if magic != _MAGIC or rate != sample_rate or len(data) <= start or (len(data) - start) % 4:
        return None
    try:
        meta = json.loads(data[_HEADER.size:start].decode("utf-8"))
        words = tuple(Word(str(t), int(a), int(b), int(c), int(d))
                      for t, a, b, c, d in meta["words"])
        text = str(meta["text"])
    except (ValueError, TypeError, KeyError):
        return None
    samples = np.frombuffer(data, dtype="<f4", offset=start).astype(np.float32)
    samples.setflags(write=False)
    return CachedAudio(samples, sample_rate, text, words)


def redacted(url: str) -> str:
    """The URL without its password, for logs (even a malformed one)."""
    parts = urllib.parse.urlsplit(url)
    userinfo, at, hostport = parts.netloc.rpartition("@")
    if not at or ":" not in userinfo:
        return url
    user = userinfo.split(":", 1)[0]
    return urllib.parse.urlunsplit(parts._replace(netloc=f"{user}:***@{hostport}"))


def _reason(exc: BaseException) -> str:
    from redis import exceptions as rex

    if isinstance(exc, TimeoutError | rex.TimeoutError):
        return "timeout"
    if isinstance(exc, rex.OutOfMemoryError) or (
            isinstance(exc, rex.ResponseError) and str(exc).startswith("OOM")):
        return "full"
    if isinstance(exc, rex.ConnectionError | OSError):
        return "unavailable"
    return "other"


class SharedCache:
    """Redis as a second level of sentence cache. Never raises to its caller."""

    def __init__(self, url: str, fingerprints: Mapping[str, str], sample_rates: Mapping[str, int],
                 metrics: Metrics, *, ttl_s: float, timeout_s: float) -> None:
        try:
            from redis.asyncio import BlockingConnectionPool, Redis
            from redis.asyncio.retry import Retry
            from redis.backoff import NoBackoff
        except ImportError as exc:
            raise ConfigError("cache_url needs the redis package: pip install "
                              "'litestream[redis]'") from exc
        self.url = url
        self.timeout_s = timeout_s
        self.ttl_s = ttl_s
        self._fingerprints = dict(fingerprints)
        self._rates = dict(sample_rates)
        self._metrics = metrics
        # Blocking pool: a burst of lookups waits (within the timeout) for a connection rather
        # than failing. No retries: the timeout is the whole budget. The sockets' own timeouts
        # are a write's (a lookup is cut at timeout_s by asyncio.timeout in get).
        write_timeout_s = max(timeout_s, WRITE_TIMEOUT_S)
        try:
            pool = BlockingConnectionPool.from_url(
                url, max_connections=MAX_PENDING_WRITES * 2, timeout=timeout_s,
                socket_timeout=write_timeout_s, socket_connect_timeout=write_timeout_s)
        except ValueError as exc:
            raise ConfigError(f"invalid setting cache_url {redacted(url)}: {exc}") from exc
        self._client: Any = Redis(connection_pool=pool, retry=Retry(NoBackoff(), 0))
        self._down_until = 0.0  # loop time before which no operation is tried
        self._writes_paused_until = 0.0  # Redis full: reads go on, writes wait
        self._up = True  # answering (not marked down)
        self._writes_ok = True  # not refusing writes for memory
        self._warned_at: float | None = None
        self._writes: set[asyncio.Task[None]] = set()
        metrics.set_shared_cache_up(True)

    # ------------------------------------------------------------ state

    def _now(self) -> float:
        return asyncio.get_running_loop().time()

    @property
    def available(self) -> bool:
        """False while Redis is marked down: callers then skip the lookup altogether."""
        return self._now() >= self._down_until

    def _failed(self, op: str, exc: BaseException) -> None:
        reason = _reason(exc)
        self._metrics.shared_cache_error(op, reason)
        now = self._now()
        if reason == "full":  # Redis answers; only writes wait
            self._writes_paused_until = now + RETRY_S
            if self._writes_ok:
                self._writes_ok = False
                self._tell(now, "full on put", exc, "lookups go on, writes paused")
            return
        self._down_until = now + RETRY_S
        self._metrics.set_shared_cache_up(False)
        if self._up:
            self._up = False
            self._tell(now, f"{reason} on {op}", exc, "going on without it")

    def _tell(self, now: float, what: str, exc: BaseException, then: str) -> None:
        """The one line an outage gets: a WARNING, or INFO when one was logged less than
        WARN_EVERY_S ago (a flapping Redis must not flood the log)."""
        level = logging.WARNING
        if self._warned_at is not None and now - self._warned_at < WARN_EVERY_S:
            level = logging.INFO
        else:
            self._warned_at = now
        detail = str(exc) or type(exc).__name__
        log.log(level, "shared sentence cache %s: %s (%s); %s, trying again every %.0f s",
                redacted(self.url), what, detail, then, RETRY_S)

    def _succeeded(self, op: str) -> None:
        if op == "put":
            self._writes_paused_until = 0.0
            if not self._writes_ok:
                self._writes_ok = True
                log.info("shared sentence cache %s takes writes again", redacted(self.url))
        if not self._up:
            self._up = True
            log.info("shared sentence cache %s answers again", redacted(self.url))
        self._metrics.set_shared_cache_up(True)

    # ------------------------------------------------------------ operations

    def key(self, voice: str, speed: float, text: str) -> str | None:
        fingerprint = self._fingerprints.get(voice)
        return None if fingerprint is None else shared_key(voice, fingerprint, speed, text)

    async def ping(self) -> bool:
        """One bounded round trip (at start-up): True if Redis answers."""
        try:
            async with asyncio.timeout(max(self.timeout_s, 0.2)):
                await self._client.ping()
        except Exception as exc:
            self._failed("get", exc)
            return False
        self._succeeded("get")
        return True

    async def get(self, voice: str, speed: float, text: str) -> CachedAudio | None:
        """The chunk's audio from Redis, or None: not there, Redis down, slow or failing.
        Returns within `timeout_s`."""
        key = self.key(voice, speed, text)
        if key is None:
            return None
        if not self.available:
            self._metrics.shared_cache_skip("get")
            return None
        try:
            async with asyncio.timeout(self.timeout_s):
                data = await self._client.get(key)
        except Exception as exc:
            self._failed("get", exc)
            return None
        self._succeeded("get")
        found = None if data is None else decode_entry(bytes(data), self._rates[voice])
        if data is not None and found is None:
            self._metrics.shared_cache_error("get", "other")  # not an entry of ours
        self._metrics.shared_cache_lookup(hit=found is not None)
        return found

    def put(self, voice: str, speed: float, text: str, samples: np.ndarray,
            words: tuple[Word, ...] = ()) -> None:
        """Write a synthesized chunk and its words in the background (with the TTL); returns
        at once."""
        key = self.key(voice, speed, text)
        if key is None or len(samples) == 0 or len(samples) * 4 > MAX_ENTRY_BYTES:
            return
        now = self._now()
        if (now < self._down_until or now < self._writes_paused_until
                or len(self._writes) >= MAX_PENDING_WRITES):
            self._metrics.shared_cache_skip("put")
            return
        payload = encode_entry(samples, self._rates[voice], text, words)
        task = asyncio.get_running_loop().create_task(self._write(key, payload))
        self._writes.add(task)
        task.add_done_callback(self._writes.discard)

    async def _write(self, key: str, payload: bytes) -> None:
        try:
            async with asyncio.timeout(max(self.timeout_s, WRITE_TIMEOUT_S)):
                await self._client.set(key, payload, ex=max(1, round(self.ttl_s)))
        except asyncio.CancelledError:
            raise
        except Exception as exc:
            self._failed("put", exc)
            return
        self._succeeded("put")
        self._metrics.shared_cache_written()

    async def wait_writes(self) -> None:
        """Until the writes scheduled so far have ended (each is bounded)."""
        if self._writes:
            await asyncio.gather(*self._writes, return_exceptions=True)

    async def close(self) -> None:
        """Let pending writes finish (each is bounded), then close the connections."""
        await self.wait_writes()
        try:
            await self._client.aclose()
        except Exception as exc:  # closing a broken connection: nothing left to do
            log.debug("shared sentence cache close: %s", exc)
