"""litestream/security.py: keys, origins, rate limits, quotas, refusals. Fake clock only."""

from __future__ import annotations

import json

import pytest
from hypothesis import given
from hypothesis import strategies as st

from litestream.config import Config
from litestream.scheduler import AdmissionReason
from litestream.security import (
    ADMISSION_REFUSALS,
    STREAM_SHARE,
    ClientLimits,
    KeyCheck,
    RateLimiter,
    Refusal,
    RefusalReason,
    StreamQuota,
    TrustedProxies,
    extract_key,
    key_label,
    origin_allowed,
    parse_networks,
    refuse_admission,
    refuse_bad_param,
    refuse_origin,
    refuse_unauthorized,
    refuse_warming_up,
)
from litestream.server.routes import refusal, retry_after_header

# ---------------------------------------------------------------- keys


def test_key_check_accepts_configured_keys_and_labels_them() -> None:
    check = KeyCheck(frozenset({"alpha-secret", "beta-secret", "gamma"}))
    assert check.enabled
    for key in ("alpha-secret", "beta-secret", "gamma"):
        label = check.check(key)
        assert label == key_label(key)
        assert label is not None and label.startswith("key-") and len(label) == 12
        assert key not in label
    assert len({check.check(k) for k in ("alpha-secret", "beta-secret", "gamma")}) == 3


@pytest.mark.parametrize("presented", [None, "", "alpha", "alpha-secret ", "ALPHA-SECRET", "x"])
def test_key_check_rejects_wrong_missing_empty(presented: str | None) -> None:
    check = KeyCheck(frozenset({"alpha-secret", "beta-secret"}))
    assert check.check(presented) is None


def test_key_check_disabled_without_keys() -> None:
    check = KeyCheck(frozenset())
    assert not check.enabled
    assert check.check("anything") is None
    assert not KeyCheck(frozenset({""})).enabled  # an empty key is never a key


def test_key_check_compares_against_every_key(monkeypatch: pytest.MonkeyPatch) -> None:
    import litestream.security as security

    calls: list[int] = []
    real = security.hmac.compare_digest

    def counting(a: bytes, b: bytes) -> bool:
        calls.append(1)
        assert len(a) == len(b) == 32  # digests, so lengths never differ
        return real(a, b)

    monkeypatch.setattr(security.hmac, "compare_digest", counting)
    check = KeyCheck(frozenset({"k1", "k2", "k3", "k4"}))
    for presented in ("k1", "k4", "nope"):
        calls.clear()
        check.check(presented)
        assert len(calls) == 4


@given(st.text(min_size=1, max_size=40))
def test_key_check_only_accepts_exact(presented: str) -> None:
    check = KeyCheck(frozenset({"the-one-key"}))
    assert (check.check(presented) is not None) == (presented == "the-one-key")


@pytest.mark.parametrize(
    ("headers", "query", "expected"),
    [
        ({"Authorization": "Bearer abc"}, {}, "abc"),
        ({"authorization": "Bearer abc"}, {}, "abc"),
        ({"AUTHORIZATION": "Bearer abc "}, {}, "abc"),
        ({}, {"token": "qtok"}, "qtok"),
        ({"Authorization": "Bearer hdr"}, {"token": "qtok"}, "hdr"),  # header wins
        ({"Authorization": "bearer abc"}, {}, None),  # scheme is exact
        ({"Authorization": "Basic abc"}, {"token": "q"}, "q"),  # other scheme: query
        ({"Authorization": "Bearer "}, {}, None),
        ({"Authorization": "Bearerabc"}, {}, None),
        ({}, {"token": ""}, None),
        ({}, {}, None),
    ],
)
def test_extract_key(headers: dict[str, str], query: dict[str, str], expected: str | None) -> None:
    assert extract_key(headers, query) == expected


# ---------------------------------------------------------------- origins


def test_origin_empty_allowlist_allows_everything() -> None:
    assert origin_allowed("https://evil.example", ())
    assert origin_allowed(None, ())


def test_origin_allowlist_rules() -> None:
    allowed = ("https://app.example.com", "http://localhost:3000/")
    assert origin_allowed(None, allowed)  # non-browser clients send no Origin
    assert origin_allowed("https://app.example.com", allowed)
    assert origin_allowed("https://APP.Example.com", allowed)
    assert origin_allowed("https://app.example.com:443", allowed)  # default port
    assert origin_allowed("http://localhost:3000", allowed)  # entry's trailing slash ignored
    assert not origin_allowed("http://app.example.com", allowed)  # scheme matters
    assert not origin_allowed("https://app.example.com:8443", allowed)
    assert not origin_allowed("https://app.example.com.evil.net", allowed)
    assert not origin_allowed("https://evil.app.example.com", allowed)
    assert not origin_allowed("http://localhost:3001", allowed)
    assert not origin_allowed("null", allowed)
    assert not origin_allowed("", allowed)


def test_origin_star_allows_all() -> None:
    assert origin_allowed("https://anything.example", ("https://a.example", "*"))


# ---------------------------------------------------------------- rate limiter


def test_rate_limiter_burst_then_refill() -> None:
    rl = RateLimiter(rate_per_s=2.0, burst=4.0)
    now = 100.0
    assert [rl.allow("c", 1, now) for _ in range(4)] == [0.0] * 4
    wait = rl.allow("c", 1, now)
    assert wait == pytest.approx(0.5)  # one token at 2/s
    assert rl.allow("c", 1, now + 0.49) > 0.0
    assert rl.allow("c", 1, now + 0.5) == 0.0
    # Other clients have their own buckets.
    assert rl.allow("other", 1, now) == 0.0


def test_rate_limiter_retry_after_is_exact() -> None:
    rl = RateLimiter(rate_per_s=10.0, burst=10.0)
    assert rl.allow("c", 10, 0.0) == 0.0
    wait = rl.allow("c", 3, 0.0)
    assert wait == pytest.approx(0.3)
    assert rl.allow("c", 3, wait) == 0.0


def test_rate_limiter_refused_request_consumes_nothing() -> None:
    rl = RateLimiter(rate_per_s=1.0, burst=2.0)
    assert rl.allow("c", 2, 0.0) == 0.0
    for _ in range(100):
        assert rl.allow("c", 1, 0.5) > 0.0
    assert rl.allow("c", 1, 1.0) == 0.0


def test_rate_limiter_cost_above_burst_goes_into_debt() -> None:
    rl = RateLimiter(rate_per_s=100.0, burst=200.0)
    assert rl.allow("c", 1000, 0.0) == 0.0  # full bucket: a big message is never refused forever
    wait = rl.allow("c", 1, 0.0)
    assert wait == pytest.approx((1 + 800) / 100.0)  # pays the debt back first
    assert rl.allow("c", 0, 0.0) == 0.0  # cost 0 always passes


def test_rate_limiter_clock_backwards_costs_nothing() -> None:
    rl = RateLimiter(rate_per_s=1.0, burst=1.0)
    assert rl.allow("c", 1, 10.0) == 0.0
    assert rl.allow("c", 1, 5.0) == pytest.approx(1.0)
    assert rl.allow("c", 1, 11.0) == 0.0


def test_rate_limiter_forgets_idle_buckets() -> None:
    rl = RateLimiter(rate_per_s=1.0, burst=1.0)
    for i in range(50):
        rl.allow(f"c{i}", 1, 0.0)
    assert len(rl) == 50
    # Long after, every old bucket is full again; traffic sweeps them out a few at a time.
    for i in range(50):
        rl.allow("fresh", 0.001, 1000.0 + i)
    assert len(rl) <= 2


def test_rate_limiter_bounds_tracked_clients() -> None:
    rl = RateLimiter(rate_per_s=1.0, burst=5.0, max_clients=100)
    for i in range(10_000):
        rl.allow(f"c{i}", 1, 0.0)
        assert len(rl) <= 100
    # Evicting the oldest only forgives it: it comes back with a full bucket.
    assert rl.allow("c0", 5, 0.0) == 0.0


# ---------------------------------------------------------------- stream quota


def test_stream_quota() -> None:
    q = StreamQuota(2)
    assert q.acquire("a") and q.acquire("a")
    assert not q.acquire("a")
    assert q.acquire("b")
    assert q.count("a") == 2 and q.total == 3
    q.release("a")
    assert q.count("a") == 1
    assert q.acquire("a")
    q.release("a")
    q.release("a")
    q.release("a")  # extra release is a no-op
    assert q.count("a") == 0
    assert q.total == 1
    with pytest.raises(ValueError):
        StreamQuota(0)


# ---------------------------------------------------------------- client limits


def test_client_limits_handshake_streams_quota() -> None:
    limits = ClientLimits(messages_per_s=100.0, chars_per_s=1000.0, streams_per_key=2)
    assert limits.admit_handshake("k", 0.0) is None
    assert limits.admit_handshake("k", 0.0) is None
    refusal = limits.admit_handshake("k", 0.0)
    assert refusal is not None
    assert refusal.status == 429 and refusal.reason == RefusalReason.STREAMS
    assert refusal.retry_after_s is not None and refusal.retry_after_s > 0
    limits.release("k")
    assert limits.admit_handshake("k", 0.0) is None
    assert limits.admit_handshake("other", 0.0) is None


def test_client_limits_handshake_rate() -> None:
    limits = ClientLimits(messages_per_s=1.0, chars_per_s=1000.0, streams_per_key=100)
    # burst = 2 s of rate
    assert limits.admit_handshake("k", 0.0) is None
    assert limits.admit_handshake("k", 0.0) is None
    refusal = limits.admit_handshake("k", 0.0)
    assert refusal is not None and refusal.status == 429 and refusal.reason == RefusalReason.RATE
    assert refusal.retry_after_s == pytest.approx(1.0)
    assert limits.streams.count("k") == 2  # a refused handshake holds no slot


def test_a_handshake_preview_says_what_the_handshake_would_and_takes_nothing() -> None:
    limits = ClientLimits(messages_per_s=1.0, chars_per_s=1000.0, streams_per_key=1)
    assert limits.preview_handshake("k", 0.0) is None
    assert limits.admit_handshake("k", 0.0) is None  # the one slot, one of 2 messages
    streams = limits.preview_handshake("k", 0.0)
    assert streams is not None and streams.status == 429
    assert streams.reason == RefusalReason.STREAMS
    assert streams == limits.admit_handshake("k", 0.0)  # the second message: the bucket is dry
    rate = limits.preview_handshake("k", 0.0)
    assert rate is not None and rate.reason == RefusalReason.RATE
    assert rate.retry_after_s == pytest.approx(1.0)
    # Asked a hundred times, the preview took no message and no slot.
    for _ in range(100):
        limits.preview_handshake("k", 1.0)
    limits.release("k")
    assert limits.streams.count("k") == 0
    assert limits.admit_handshake("k", 1.0) is None


def test_client_limits_on_message() -> None:
    limits = ClientLimits(messages_per_s=10.0, chars_per_s=100.0, streams_per_key=4)
    assert limits.on_message("k", 150, 0.0) == 0.0  # chars burst is 200
    wait = limits.on_message("k", 100, 0.0)
    assert wait == pytest.approx(0.5)  # 50 left, needs 100
    # The same wait asked again (a speech request's Retry-After), still charging nothing.
    assert limits.message_wait_s("k", 100, 0.0) == pytest.approx(0.5)
    assert limits.message_wait_s("k", 100, 0.25) == pytest.approx(0.25)
    # The refused message charged nothing: control messages still pass.
    assert limits.on_message("k", 0, 0.0) == 0.0
    assert limits.on_message("k", 100, 0.5) == 0.0
    # Message count limit: burst 20 messages.
    for _ in range(18):
        assert limits.on_message("m", 0, 10.0) == 0.0
    assert limits.on_message("m", 0, 10.0) == 0.0
    assert limits.on_message("m", 0, 10.0) == 0.0
    assert limits.on_message("m", 0, 10.0) == pytest.approx(0.1)


def test_one_stream_flooding_leaves_its_neighbours_half_of_the_clients_rate() -> None:
    """The message bucket is per key (or address), shared by its streams; one stream may use at
    most STREAM_SHARE of it, and what it is refused over its share takes nothing from the
    rest."""
    limits = ClientLimits(messages_per_s=10.0, chars_per_s=1000.0, streams_per_key=4)
    # Burst 20 messages for the client, 10 for one stream.
    sent = sum(limits.on_message("k", 1, 0.0, stream="flood") == 0.0 for _ in range(1000))
    assert sent == 10 == 20 * STREAM_SHARE
    assert limits.on_message("k", 1, 0.0, stream="flood") == pytest.approx(0.2)  # 5/s refill
    # Its neighbour on the same key still has the other half.
    assert all(limits.on_message("k", 40, 0.0, stream="listener") == 0.0 for _ in range(10))
    # A closed stream's buckets are forgotten (and its slot given back).
    tracked = len(limits.stream_messages)
    limits.release("k", "flood")
    assert len(limits.stream_messages) == tracked - 1
    assert limits.on_message("k", 1, 1.0, stream="flood") == 0.0
    # Text is not split: one stream may send the client's whole text burst at once (a page
    # sending a long text in pieces), as before.
    assert limits.on_message("k", 1900, 2.0, stream="big") == 0.0


def test_client_limits_from_config() -> None:
    config = Config(messages_per_s=5.0, chars_per_s=50.0, streams_per_key=3, workers=1)
    limits = ClientLimits.from_config(config)
    assert limits.streams.max_per_client == 3
    assert limits.messages.rate_per_s == 5.0
    assert limits.chars.rate_per_s == 50.0


# ---------------------------------------------------------------- refusals


def refusal_body(refused: Refusal) -> bytes:
    return refusal(refused).body


def refusal_headers(refused: Refusal) -> tuple[tuple[str, str], ...]:
    return refusal(refused).headers


def test_refusal_bodies_and_headers() -> None:
    r = refuse_unauthorized()
    assert r.status == 401
    body = json.loads(refusal_body(r))
    assert body == {"error": {"code": "unauthorized", "message": "missing or invalid API key"}}
    assert ("WWW-Authenticate", 'Bearer realm="litestream"') in refusal_headers(r)

    assert refuse_origin().status == 403
    assert json.loads(refusal_body(refuse_origin()))["error"]["code"] == "forbidden_origin"

    bad = refuse_bad_param("format", "must be s16le or f32le")
    assert bad.status == 400
    err = json.loads(refusal_body(bad))["error"]
    assert err["code"] == "invalid_param" and err["param"] == "format"
    assert "format" in err["message"]
    named = refuse_bad_param("speed", "query parameter 'speed': speed must be 0.5..2.0, got 3")
    assert named.message == "query parameter 'speed': speed must be 0.5..2.0, got 3"  # once
    assert json.loads(refusal_body(refuse_bad_param("voice", "unknown")))["error"]["code"] == (
        "invalid_voice"
    )

    cap = refuse_admission("capacity", 2.2)
    assert cap.status == 503 and cap.reason is RefusalReason.CAPACITY
    assert json.loads(refusal_body(cap))["error"]["code"] == "overloaded"
    assert ("Retry-After", "3") in refusal_headers(cap)


def test_the_admission_reason_reaches_the_refusal() -> None:
    full = refuse_admission("streams", 1.0)
    assert full.status == 503 and full.reason is RefusalReason.MAX_STREAMS
    assert json.loads(refusal_body(full))["error"]["code"] == "overloaded"
    burst = refuse_admission("backlog", 4.5)
    assert burst.status == 503 and burst.reason is RefusalReason.BACKLOG
    assert json.loads(refusal_body(burst))["error"]["code"] == "overloaded"
    assert ("Retry-After", "5") in refusal_headers(burst)


def test_every_admission_reason_has_its_refusal() -> None:
    refused = {r.value for r in AdmissionReason} - {AdmissionReason.ACCEPTED.value}
    assert set(ADMISSION_REFUSALS) == refused
    assert len({reason for reason, _ in ADMISSION_REFUSALS.values()}) == len(refused)


def test_a_warming_server_refuses_with_its_own_reason() -> None:
    warming = refuse_warming_up(5.0)
    assert warming.status == 503 and warming.reason is RefusalReason.WARMING_UP
    assert json.loads(refusal_body(warming))["error"]["code"] == "overloaded"
    assert ("Retry-After", "5") in refusal_headers(warming)


def test_retry_after_header_rounds_up_and_is_at_least_one() -> None:
    assert retry_after_header(0.0) == "1"
    assert retry_after_header(0.01) == "1"
    assert retry_after_header(1.0) == "1"
    assert retry_after_header(1.01) == "2"


# ---------------------------------------------------------------- the client behind a proxy

PROXIES = TrustedProxies(parse_networks(["127.0.0.1", "10.0.0.0/8", "fd00::/8"]))


def test_with_no_trusted_proxy_the_connection_is_the_client_whatever_it_says() -> None:
    assert TrustedProxies().client("192.0.2.7", ["203.0.113.9"]) == "192.0.2.7"
    assert TrustedProxies().client(None, []) == "unknown"


def test_an_untrusted_peer_cannot_name_another_client() -> None:
    # Spoofing: a client that writes the header itself is still its own address.
    assert PROXIES.client("192.0.2.7", ["203.0.113.9"]) == "192.0.2.7"


def test_a_trusted_proxy_names_the_client() -> None:
    assert PROXIES.client("127.0.0.1", ["203.0.113.9"]) == "203.0.113.9"
    assert PROXIES.client("127.0.0.1", []) == "127.0.0.1"  # no header: the proxy itself


def test_hops_are_read_from_the_right_and_the_first_untrusted_one_is_the_client() -> None:
    # The client wrote "198.51.100.1" itself; 203.0.113.9 connected to our first proxy
    # (10.1.2.3), which connected to the one in front of us (127.0.0.1).
    header = ["198.51.100.1, 203.0.113.9, 10.1.2.3"]
    assert PROXIES.client("127.0.0.1", header) == "203.0.113.9"
    # Several header lines are one list, in order.
    assert PROXIES.client("127.0.0.1", ["198.51.100.1", "203.0.113.9 ,10.1.2.3"]) == \
        "203.0.113.9"


def test_when_every_hop_is_a_trusted_proxy_the_first_is_the_client() -> None:
    assert PROXIES.client("127.0.0.1", ["10.0.0.5, 10.0.0.6"]) == "10.0.0.5"


def test_addresses_as_proxies_write_them() -> None:
    assert PROXIES.client("127.0.0.1", ["[2001:db8::1]:4711"]) == "2001:db8::1"
    assert PROXIES.client("127.0.0.1", ["2001:DB8:0::1"]) == "2001:db8::1"  # one spelling
    assert PROXIES.client("127.0.0.1", ["203.0.113.9:4711"]) == "203.0.113.9"
    assert PROXIES.client("fd00::1", ["203.0.113.9"]) == "203.0.113.9"
    # A dual-stack socket reports an IPv4 proxy as a mapped IPv6 address.
    assert PROXIES.client("::ffff:127.0.0.1", ["203.0.113.9"]) == "203.0.113.9"
    # What is not an address is a trusted proxy's word for the client: kept, cut short.
    assert PROXIES.client("127.0.0.1", ["unknown"]) == "unknown"
    assert PROXIES.client("127.0.0.1", ["x" * 500]) == "x" * 64


def test_clients_behind_one_proxy_get_a_quota_each() -> None:
    limits = ClientLimits(messages_per_s=100.0, chars_per_s=1000.0, streams_per_key=1)
    first = PROXIES.client("127.0.0.1", ["203.0.113.9"])
    second = PROXIES.client("127.0.0.1", ["203.0.113.10"])
    assert limits.admit_handshake(first, 0.0) is None
    assert limits.admit_handshake(second, 0.0) is None
    refused = limits.admit_handshake(first, 0.0)
    assert refused is not None and refused.reason is RefusalReason.STREAMS


def test_parse_networks_names_what_it_cannot_read() -> None:
    assert [str(n) for n in parse_networks([" 127.0.0.1", "10.1.2.3/8"])] == \
        ["127.0.0.1/32", "10.0.0.0/8"]
    with pytest.raises(ValueError, match=r"proxy\.internal"):
        parse_networks(["proxy.internal"])
