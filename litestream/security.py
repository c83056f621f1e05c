"""Handshake security and per-client limits, sans I/O: no asyncio, no sockets, no clock.

protocol-v1: Endpoint. Refusals happen at the handshake as plain HTTP before the upgrade:
401 (key missing or wrong), 403 (Origin not allowed), 400 (bad query parameter), 429 (over
rate or concurrent-stream quota, with Retry-After), 503 (draining or no capacity, with
Retry-After). This module decides; the server writes the response (server/routes.py renders it).

Every time-dependent call takes `now` (seconds, monotonic) from the caller, so tests drive it
with a fake clock.
"""

from __future__ import annotations

import hashlib
import hmac
from collections import OrderedDict
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from enum import StrEnum
from ipaddress import (
    IPv4Address,
    IPv4Network,
    IPv6Address,
    IPv6Network,
    ip_address,
    ip_network,
)
from typing import TYPE_CHECKING
from urllib.parse import urlsplit

if TYPE_CHECKING:
    from litestream.config import Config


# ---------------------------------------------------------------- refusals


class RefusalReason(StrEnum):
    """Why a handshake was refused. A bounded set: it is a metrics label."""

    UNAUTHORIZED = "unauthorized"  # 401
    ORIGIN = "origin"  # 403
    BAD_PARAM = "bad_param"  # 400
    RATE = "rate"  # 429, over the message rate
    STREAMS = "streams"  # 429, over the concurrent-stream quota
    DRAINING = "draining"  # 503, shutting down
    CAPACITY = "capacity"  # 503, admission control said no: predicted steady load
    BACKLOG = "backlog"  # 503, admission control said no: a burst's first audio is behind
    MAX_STREAMS = "max_streams"  # 503, the server holds `max_streams` streams already
    WARMING_UP = "warming_up"  # 503, start-up: listening, voices warming, not ready yet


# HTTP status for each reason; the one place this mapping lives.
STATUS_FOR_REASON: dict[RefusalReason, int] = {
    RefusalReason.UNAUTHORIZED: 401,
    RefusalReason.ORIGIN: 403,
    RefusalReason.BAD_PARAM: 400,
    RefusalReason.RATE: 429,
    RefusalReason.STREAMS: 429,
    RefusalReason.DRAINING: 503,
    RefusalReason.CAPACITY: 503,
    RefusalReason.BACKLOG: 503,
    RefusalReason.MAX_STREAMS: 503,
    RefusalReason.WARMING_UP: 503,
}

# The `code` in a refusal's JSON body. protocol-v1 has codes for most refusals; it has none
# for 401 and 403, so those two are litestream's choice ("unauthorized", "forbidden_origin"),
# documented in docs/protocol.md. They only ever appear in handshake bodies, never in an
# `error` message on an open stream.
CODE_FOR_REASON: dict[RefusalReason, str] = {
    RefusalReason.UNAUTHORIZED: "unauthorized",
    RefusalReason.ORIGIN: "forbidden_origin",
    RefusalReason.BAD_PARAM: "invalid_param",
    RefusalReason.RATE: "rate_limited",
    RefusalReason.STREAMS: "rate_limited",
    RefusalReason.DRAINING: "overloaded",
    RefusalReason.CAPACITY: "overloaded",
    RefusalReason.BACKLOG: "overloaded",
    RefusalReason.MAX_STREAMS: "overloaded",
    RefusalReason.WARMING_UP: "overloaded",
}

# Retry-After when nobody can know when a slot frees up (a stream ends when its client says).
STREAMS_RETRY_AFTER_S = 1.0


@dataclass(frozen=True)
class Refusal:
    """A handshake refusal: what the server answers instead of upgrading."""

    status: int  # HTTP status: 400, 401, 403, 429 or 503
    reason: RefusalReason  # bounded; the metrics label
    message: str  # human-readable; never contains a key or client text
    retry_after_s: float | None = None  # sent as Retry-After (whole seconds, rounded up)
    code: str = ""  # JSON body code; "" means CODE_FOR_REASON[reason]
    param: str | None = None  # for 400: the query parameter at fault

    @property
    def body_code(self) -> str:
        return self.code or CODE_FOR_REASON[self.reason]


def refuse(
    reason: RefusalReason,
    message: str,
    *,
    retry_after_s: float | None = None,
    code: str = "",
    param: str | None = None,
) -> Refusal:
    """Build a Refusal with the status that belongs to its reason."""
    return Refusal(
        status=STATUS_FOR_REASON[reason],
        reason=reason,
        message=message,
        retry_after_s=retry_after_s,
        code=code,
        param=param,
    )


def refuse_unauthorized() -> Refusal:
    # One message for missing and wrong keys: the answer must not say which it was.
    return refuse(RefusalReason.UNAUTHORIZED, "missing or invalid API key")


def refuse_origin() -> Refusal:
    return refuse(RefusalReason.ORIGIN, "origin not allowed")


def refuse_bad_param(param: str, why: str) -> Refusal:
    """400 naming the parameter (protocol-v1: Endpoint), in `param` and in the message unless
    `why` names it already. A bad voice gets `invalid_voice`."""
    code = "invalid_voice" if param == "voice" else "invalid_param"
    message = why if repr(param) in why else f"{param}: {why}"
    return refuse(RefusalReason.BAD_PARAM, message, code=code, param=param)


def refuse_draining(retry_after_s: float) -> Refusal:
    return refuse(RefusalReason.DRAINING, "server is shutting down", retry_after_s=retry_after_s)


# The scheduler's admission reasons (`AdmissionReason` values, less "accepted") and what a
# client is told for each. The set is closed; a test holds this table to it.
ADMISSION_REFUSALS: dict[str, tuple[RefusalReason, str]] = {
    "capacity": (RefusalReason.CAPACITY, "no capacity for another stream"),
    "backlog": (RefusalReason.BACKLOG, "too many streams are starting at once; retry shortly"),
    "streams": (RefusalReason.MAX_STREAMS, "the server holds as many streams as it may"),
}


def refuse_admission(reason: str, retry_after_s: float) -> Refusal:
    """503 for a stream the scheduler would not admit; `reason` is `Admission.reason`."""
    refusal_reason, message = ADMISSION_REFUSALS[reason]
    return refuse(refusal_reason, message, retry_after_s=retry_after_s)


def refuse_warming_up(retry_after_s: float) -> Refusal:
    """503 while the server listens but is not ready (voices warming, calibration)."""
    return refuse(RefusalReason.WARMING_UP, "server is warming up; retry shortly",
                  retry_after_s=retry_after_s)


# ---------------------------------------------------------------- API keys


def key_label(key: str) -> str:
    """A stable, non-secret name for a key: safe for logs and as a rate-limit bucket id."""
    return "key-" + hashlib.sha256(key.encode("utf-8")).hexdigest()[:8]


class KeyCheck:
    """Constant-time API key check against every configured key."""

    def __init__(self, keys: frozenset[str]) -> None:
        # Compare sha256 digests, not the keys: every comparison is 32 bytes against 32
        # bytes, so neither the time nor an early length mismatch tells a key's length.
        self._digests: tuple[tuple[bytes, str], ...] = tuple(
            (hashlib.sha256(k.encode("utf-8")).digest(), key_label(k)) for k in sorted(keys) if k
        )

    @property
    def enabled(self) -> bool:
        """False when no keys are configured: every client is let in (protocol-v1: 401)."""
        return bool(self._digests)

    def check(self, presented: str | None) -> str | None:
        """The key's label when `presented` is a configured key, else None.

        Always None when no keys are configured; the server checks `enabled` first.
        """
        if not self._digests or not presented:
            return None
        digest = hashlib.sha256(presented.encode("utf-8")).digest()
        found: str | None = None
        # Compare against every key, no early exit, so the time does not tell which matched.
        for stored, label in self._digests:
            if hmac.compare_digest(digest, stored):
                found = label
        return found


def extract_key(headers: Mapping[str, str], query: Mapping[str, str]) -> str | None:
    """The presented key: `Authorization: Bearer KEY`, else the `token` query parameter.

    protocol-v1: Endpoint. Header names are case-insensitive; the scheme must be exactly
    "Bearer" followed by one space. A header with another scheme falls back to the query.
    """
    auth: str | None = None
    for name, value in headers.items():
        if name.lower() == "authorization":
            auth = value
            break
    if auth is not None and auth.startswith("Bearer "):
        key = auth[len("Bearer ") :].strip()
        if key:
            return key
    token = query.get("token")
    if token:
        return token
    return None


# ---------------------------------------------------------------- Origin

_DEFAULT_PORTS = {"http": 80, "https": 443, "ws": 80, "wss": 443}


def _normalize_origin(origin: str) -> str:
    """scheme://host[:port], lower-cased, no trailing slash, default port dropped."""
    text = origin.strip().rstrip("/").lower()
    try:
        parts = urlsplit(text)
        port = parts.port
    except ValueError:
        return text  # not a URL; it can still match an identical allowlist entry
    if not parts.scheme or not parts.hostname:
        return text  # e.g. "null" (sandboxed iframes, file://)
    host = parts.hostname
    if ":" in host:
        host = f"[{host}]"  # IPv6 literal
    if port is None or port == _DEFAULT_PORTS.get(parts.scheme):
        return f"{parts.scheme}://{host}"
    return f"{parts.scheme}://{host}:{port}"


def origin_allowed(origin: str | None, allowed: tuple[str, ...]) -> bool:
    """protocol-v1: 403 when the Origin header is not in the allowlist.

    Empty allowlist: any origin. With one, a request without Origin is allowed (non-browser
    clients send none; the Origin check protects browsers, keys protect the rest), a present
    Origin must match an entry exactly up to case, trailing slash and default port, and an
    entry "*" allows every origin.
    """
    if not allowed or origin is None:
        return True
    wanted = _normalize_origin(origin)
    return any(entry.strip() == "*" or _normalize_origin(entry) == wanted for entry in allowed)


# ---------------------------------------------------------------- the client behind a proxy

# The header nginx, HAProxy (`option forwardfor`) and ingress controllers add: each proxy
# appends the address it was connected from, so the last entries are the most trustworthy.
FORWARDED_FOR = "X-Forwarded-For"
_MAX_CLIENT_CHARS = 64  # an entry that is not an address is kept, cut to this, as the name

Network = IPv4Network | IPv6Network


def parse_networks(entries: Iterable[str]) -> tuple[Network, ...]:
    """Addresses or CIDR networks (``10.0.0.0/8``, ``127.0.0.1``, ``fd00::/8``); ValueError
    naming the first entry that is neither."""
    networks = []
    for entry in entries:
        try:
            networks.append(ip_network(entry.strip(), strict=False))
        except ValueError:
            raise ValueError(f"{entry!r} is not an address or network") from None
    return tuple(networks)


def _address(text: str) -> IPv4Address | IPv6Address | None:
    """An address as proxies write it: bare, ``[v6]``, ``[v6]:port`` or ``v4:port``."""
    text = text.strip()
    if text.startswith("["):
        text = text[1:].partition("]")[0]
    elif text.count(":") == 1:
        text = text.partition(":")[0]
    try:
        address = ip_address(text)
    except ValueError:
        return None
    if isinstance(address, IPv6Address) and address.ipv4_mapped is not None:
        return address.ipv4_mapped  # a dual-stack socket's view of an IPv4 peer
    return address


@dataclass(frozen=True)
class TrustedProxies:
    """Who the client is when the server sits behind reverse proxies (Config.trusted_proxies).

    Behind a proxy every connection comes from the proxy, so without this the limits "per
    client address" (ClientLimits) would be one bucket for every client of the service: the
    65th stream through the proxy refused with 429 at the default `streams_per_key`. A peer in
    ``networks`` is a proxy whose X-Forwarded-For is believed: its entries are read from the
    right (the hop nearest us) and the first one not itself a trusted proxy is the client, as
    uvicorn's ProxyHeadersMiddleware reads them; entries further left were written by the
    client or by proxies we do not know, and are never believed. A peer outside ``networks``
    is the client whatever its headers say. With no networks (the default) no header is read.
    """

    networks: tuple[Network, ...] = ()

    @classmethod
    def from_config(cls, config: Config) -> TrustedProxies:
        return cls(parse_networks(config.trusted_proxies))

    def trusts(self, address: IPv4Address | IPv6Address | None) -> bool:
        return address is not None and any(address in network for network in self.networks)

    def client(self, peer: str | None, forwarded_for: Sequence[str]) -> str:
        """The client's address for limits and logs: ``peer`` is the socket's, and
        ``forwarded_for`` every X-Forwarded-For line of the request, in order."""
        if peer is None:
            return "unknown"
        peer_address = _address(peer)
        if not self.trusts(peer_address):
            return peer if peer_address is None else str(peer_address)
        hops = [hop.strip() for line in forwarded_for for hop in line.split(",") if hop.strip()]
        if not hops:
            return str(peer_address)
        for hop in reversed(hops):
            address = _address(hop)
            if not self.trusts(address):
                return str(address) if address is not None else hop[:_MAX_CLIENT_CHARS]
        # Every hop a trusted proxy: the first is the nearest to the client we know of.
        first = _address(hops[0])
        return str(first) if first is not None else hops[0][:_MAX_CLIENT_CHARS]


# ---------------------------------------------------------------- rate limiting


@dataclass
class _Bucket:
    tokens: float  # may go negative: debt from a message bigger than the burst
    updated_s: float  # `now` of the last refill


class RateLimiter:
    """Token buckets keyed by client id (a key label, or the client address without keys).

    A request of `cost` is let through when the bucket holds min(cost, burst) tokens, and
    then takes the whole cost, which may leave the bucket in debt. So a single message larger
    than the burst is never refused forever; it is paid for by waiting afterwards, and the
    long-run rate stays at `rate_per_s`.

    Memory is bounded: a full bucket is the same as no bucket, so full ones are forgotten
    lazily, and at most `max_clients` are tracked (the least recently used is evicted, which
    only ever forgives it: it comes back with a full bucket).
    """

    # Idle buckets forgotten per call: bounded work per call, amortized cleanup.
    _SWEEP_PER_CALL = 4

    def __init__(self, rate_per_s: float, burst: float, *, max_clients: int = 100_000) -> None:
        if rate_per_s <= 0 or burst <= 0 or max_clients < 1:
            raise ValueError("rate_per_s, burst and max_clients must be positive")
        self.rate_per_s = rate_per_s
        self.burst = burst
        self.max_clients = max_clients
        # Least recently touched first: the front is the oldest, the first to be idle.
        self._buckets: OrderedDict[str, _Bucket] = OrderedDict()

    def __len__(self) -> int:
        return len(self._buckets)

    def _tokens_at(self, bucket: _Bucket, now: float) -> float:
        elapsed_s = max(0.0, now - bucket.updated_s)  # a clock step back never costs tokens
        return min(self.burst, bucket.tokens + elapsed_s * self.rate_per_s)

    def wait_s(self, client: str, cost: float, now: float) -> float:
        """Seconds until `cost` would be allowed (0.0: now). Consumes nothing."""
        if cost <= 0:
            return 0.0
        bucket = self._buckets.get(client)
        tokens = self.burst if bucket is None else self._tokens_at(bucket, now)
        need = min(cost, self.burst)
        if tokens >= need:
            return 0.0
        return (need - tokens) / self.rate_per_s

    def consume(self, client: str, cost: float, now: float) -> None:
        """Take `cost` tokens unconditionally (the caller checked wait_s first)."""
        if cost <= 0:
            return
        bucket = self._buckets.get(client)
        if bucket is None:
            bucket = _Bucket(tokens=self.burst, updated_s=now)
            self._buckets[client] = bucket
        else:
            self._buckets.move_to_end(client)
        bucket.tokens = self._tokens_at(bucket, now) - cost
        bucket.updated_s = max(bucket.updated_s, now)
        self._sweep(now)

    def allow(self, client: str, cost: float, now: float) -> float:
        """0.0 when allowed (and consumed), else seconds until it would be (Retry-After)."""
        wait = self.wait_s(client, cost, now)
        if wait == 0.0:
            self.consume(client, cost, now)
        return wait

    def forget(self, client: str) -> None:
        """Drop `client`'s bucket (it will never be asked for again)."""
        self._buckets.pop(client, None)

    def _sweep(self, now: float) -> None:
        while len(self._buckets) > self.max_clients:
            self._buckets.popitem(last=False)
        for _ in range(self._SWEEP_PER_CALL):
            if not self._buckets:
                return
            client, oldest = next(iter(self._buckets.items()))
            if self._tokens_at(oldest, now) < self.burst:
                return
            del self._buckets[client]


class StreamQuota:
    """Concurrent streams per client. Only clients with open streams take memory."""

    def __init__(self, max_per_client: int) -> None:
        if max_per_client < 1:
            raise ValueError("max_per_client must be at least 1")
        self.max_per_client = max_per_client
        self._open: dict[str, int] = {}

    def acquire(self, client: str) -> bool:
        """Take a slot; False (and nothing taken) when the client is at its quota."""
        n = self._open.get(client, 0)
        if n >= self.max_per_client:
            return False
        self._open[client] = n + 1
        return True

    def release(self, client: str) -> None:
        """Give a slot back. Releasing a client with no slot is a no-op, not an error."""
        n = self._open.get(client, 0)
        if n <= 1:
            self._open.pop(client, None)
        else:
            self._open[client] = n - 1

    def count(self, client: str) -> int:
        return self._open.get(client, 0)

    @property
    def total(self) -> int:
        return sum(self._open.values())


# ---------------------------------------------------------------- the bundle the server uses

# Burst allowance of both rate buckets, in seconds of their rate: lets a client send a
# paragraph or a quick run of LLM tokens at once without tripping the limit.
BURST_S = 2.0

# The most of its client's message rate (and burst) one stream may use. The bucket is per key
# or address, shared by its streams: one stream sending 33,000 tiny messages a second took the
# whole budget, and a listener beside it on the same address had 10 of its 12 sentences refused
# `rate_limited`. Capped at half, a stream that floods leaves its neighbours the other half;
# one well-behaved stream (an LLM's tokens, batched by the Pipecat service to at most 40
# messages a second) stays far below it. The text rate is not split: a stream's text is bounded
# by its own limits (`max_buffered_chars`, `max_stream_chars`), and a page that sends a long
# text at once (the browser player: 27,000 characters in 4,000-character pieces) needs the
# client's whole text burst.
STREAM_SHARE = 0.5


class ClientLimits:
    """Per-client limits from Config: message rate, text rate, concurrent streams; and per
    stream, at most `STREAM_SHARE` of its client's message rate.

    `client` is the key label from KeyCheck.check() when keys are configured, else the
    client's address, so limits are "per key (or client address)" as Config documents.
    `stream` is the stream's session id.
    """

    def __init__(
        self,
        messages_per_s: float,
        chars_per_s: float,
        streams_per_key: int,
        *,
        burst_s: float = BURST_S,
        max_clients: int = 100_000,
    ) -> None:
        self.messages = RateLimiter(
            messages_per_s, max(1.0, messages_per_s * burst_s), max_clients=max_clients
        )
        self.chars = RateLimiter(
            chars_per_s, max(1.0, chars_per_s * burst_s), max_clients=max_clients
        )
        self.streams = StreamQuota(streams_per_key)
        self.stream_messages = RateLimiter(
            messages_per_s * STREAM_SHARE, max(1.0, messages_per_s * burst_s * STREAM_SHARE),
            max_clients=max_clients)

    @classmethod
    def from_config(cls, config: Config) -> ClientLimits:
        return cls(config.messages_per_s, config.chars_per_s, config.streams_per_key)

    def admit_handshake(self, client: str, now: float) -> Refusal | None:
        """None: admitted, and one stream slot is taken (call release() when it closes).

        A handshake costs one message from the message bucket, so a client hammering the
        endpoint with refused handshakes is slowed down too.
        """
        wait = self.messages.allow(client, 1.0, now)
        if wait > 0.0:
            return refuse(RefusalReason.RATE, "too many requests", retry_after_s=wait)
        if not self.streams.acquire(client):
            return self._streams_refusal()
        return None

    def preview_handshake(self, client: str, now: float) -> Refusal | None:
        """What admit_handshake would answer now, taking nothing: no message from the bucket,
        no stream slot (a client asking why its handshake was refused is not a new stream)."""
        wait = self.messages.wait_s(client, 1.0, now)
        if wait > 0.0:
            return refuse(RefusalReason.RATE, "too many requests", retry_after_s=wait)
        if self.streams.count(client) >= self.streams.max_per_client:
            return self._streams_refusal()
        return None

    def _streams_refusal(self) -> Refusal:
        return refuse(
            RefusalReason.STREAMS,
            f"too many concurrent streams (limit {self.streams.max_per_client})",
            retry_after_s=STREAMS_RETRY_AFTER_S,
        )

    def on_message(self, client: str, chars: int, now: float, stream: str | None = None) -> float:
        """0.0: go ahead (the client's buckets charged, and the stream's). Else seconds until
        it would be allowed.

        A refused message charges no bucket, so a limited client is not pushed further into
        debt by its own refused messages, and a stream over its own share takes nothing from
        its neighbours. Pass chars=0 for control messages.
        """
        wait = self.message_wait_s(client, chars, now, stream)
        if wait > 0.0:
            return wait
        self.messages.consume(client, 1.0, now)
        self.chars.consume(client, chars, now)
        if stream is not None:
            self.stream_messages.consume(stream, 1.0, now)
        return 0.0

    def message_wait_s(self, client: str, chars: int, now: float,
                       stream: str | None = None) -> float:
        """Seconds until a message of `chars` would be allowed (0.0: now). Consumes nothing:
        the Retry-After of a message on_message refused."""
        wait = max(self.messages.wait_s(client, 1.0, now), self.chars.wait_s(client, chars, now))
        if stream is not None:
            wait = max(wait, self.stream_messages.wait_s(stream, 1.0, now))
        return wait

    def release(self, client: str, stream: str | None = None) -> None:
        """The stream admitted by admit_handshake() closed."""
        self.streams.release(client)
        if stream is not None:
            self.stream_messages.forget(stream)
