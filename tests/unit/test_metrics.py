"""litestream/metrics.py: names, movement, bounded labels, separate registries."""

from __future__ import annotations

import pytest
from prometheus_client.parser import text_string_to_metric_families

from litestream.errors import CloseCode, ErrorCode
from litestream.metrics import CLOSE_LABELS, ERROR_CODES, REFUSAL_REASONS, Metrics
from litestream.security import RefusalReason

METRIC_NAMES = (
    "litestream_active_streams",
    "litestream_queued_chunks",
    "litestream_scheduler_load",
    "litestream_ttfa_seconds",
    "litestream_chunk_slack_seconds",
    "litestream_stalls_total",
    "litestream_stall_seconds_total",
    "litestream_deadline_misses_total",
    "litestream_synthesis_seconds_total",
    "litestream_audio_seconds_total",
    "litestream_chunks_total",
    "litestream_refusals_total",
    "litestream_errors_total",
    "litestream_bytes_sent_total",
    "litestream_streams_total",
    "litestream_step_seconds",
)


def samples(m: Metrics) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    body, _ = m.render()
    out: dict[tuple[str, tuple[tuple[str, str], ...]], float] = {}
    for family in text_string_to_metric_families(body.decode()):
        for s in family.samples:
            out[(s.name, tuple(sorted(s.labels.items())))] = s.value
    return out


def value(m: Metrics, name: str, **labels: str) -> float:
    return samples(m)[(name, tuple(sorted(labels.items())))]


def test_render_contains_every_metric() -> None:
    body, content_type = Metrics().render()
    text = body.decode()
    assert content_type.startswith("text/plain")
    for name in METRIC_NAMES:
        assert name in text, name


def test_labels_pre_initialized() -> None:
    m = Metrics()
    for reason in RefusalReason:
        assert value(m, "litestream_refusals_total", reason=reason.value) == 0
    for code in ErrorCode:
        assert value(m, "litestream_errors_total", code=code.value) == 0
    for close in CLOSE_LABELS:
        assert value(m, "litestream_streams_total", close_code=close) == 0


def test_counters_move() -> None:
    m = Metrics()
    m.stream_opened()
    m.stream_opened()
    assert value(m, "litestream_active_streams") == 2
    m.first_audio(0.21)
    m.synthesized(compute_s=0.5, audio_s=2.0)
    m.chunk_sent(slack_s=1.5, nbytes=88200)
    m.chunk_sent(slack_s=-0.3, nbytes=100)
    m.stall(0.25)
    m.refused("rate")
    m.error("rate_limited")
    m.set_queue(7, 0.8)
    m.stream_closed(CloseCode.NORMAL)
    m.stream_closed(1006)

    assert value(m, "litestream_active_streams") == 0
    assert value(m, "litestream_ttfa_seconds_count") == 1
    assert value(m, "litestream_ttfa_seconds_bucket", le="0.25") == 1
    assert value(m, "litestream_ttfa_seconds_bucket", le="0.2") == 0
    assert value(m, "litestream_synthesis_seconds_total") == pytest.approx(0.5)
    assert value(m, "litestream_audio_seconds_total") == pytest.approx(2.0)
    assert value(m, "litestream_chunks_total") == 2
    assert value(m, "litestream_bytes_sent_total") == 88300
    assert value(m, "litestream_deadline_misses_total") == 1
    assert value(m, "litestream_chunk_slack_seconds_bucket", le="0.0") == 1
    assert value(m, "litestream_chunk_slack_seconds_bucket", le="-2.0") == 0
    assert value(m, "litestream_stalls_total") == 1
    assert value(m, "litestream_stall_seconds_total") == pytest.approx(0.25)
    assert value(m, "litestream_refusals_total", reason="rate") == 1
    assert value(m, "litestream_errors_total", code="rate_limited") == 1
    assert value(m, "litestream_queued_chunks") == 7
    assert value(m, "litestream_scheduler_load") == pytest.approx(0.8)
    assert value(m, "litestream_streams_total", close_code="normal") == 1
    assert value(m, "litestream_streams_total", close_code="abnormal") == 1


def test_unknown_label_values_map_to_other() -> None:
    m = Metrics()
    m.refused("because-i-said-so")
    m.error("session-1234")
    m.stream_closed(4000)
    assert value(m, "litestream_refusals_total", reason="other") == 1
    assert value(m, "litestream_errors_total", code="other") == 1
    assert value(m, "litestream_streams_total", close_code="other") == 1
    # The label sets stay exactly the bounded ones.
    s = samples(m)
    reasons = {dict(k[1])["reason"] for k in s if k[0] == "litestream_refusals_total"}
    codes = {dict(k[1])["code"] for k in s if k[0] == "litestream_errors_total"}
    closes = {dict(k[1])["close_code"] for k in s if k[0] == "litestream_streams_total"}
    assert reasons == set(REFUSAL_REASONS)
    assert codes == set(ERROR_CODES)
    assert closes == set(CLOSE_LABELS)


def test_no_session_labels() -> None:
    m = Metrics()
    m.stream_opened()
    m.first_audio(0.1)
    allowed = {"reason", "code", "close_code", "le", "kind", "op"}
    for _, labels in samples(m):
        assert {k for k, _ in labels} <= allowed


def test_two_instances_do_not_clash() -> None:
    a, b = Metrics(), Metrics()
    a.stream_opened()
    a.refused("capacity")
    assert value(a, "litestream_active_streams") == 1
    assert value(b, "litestream_active_streams") == 0
    assert value(b, "litestream_refusals_total", reason="capacity") == 0


def test_the_first_audio_target_in_the_metrics_is_config_default() -> None:
    from litestream.config import Config
    from litestream.metrics import FIRST_AUDIO_TARGET_S, TTFA_BUCKETS_S

    assert Config().first_audio_target_s == FIRST_AUDIO_TARGET_S
    assert FIRST_AUDIO_TARGET_S in TTFA_BUCKETS_S
    body = Metrics().render()[0].decode()
    help_line = next(line for line in body.splitlines()
                     if line.startswith("# HELP litestream_ttfa_seconds "))
    assert help_line.endswith(f"(default target {Config().first_audio_target_ms} ms)")


def test_load_gauge_has_a_sample_only_while_the_replica_takes_streams() -> None:
    m = Metrics()
    assert not any(name == "litestream_load" for name, _ in samples(m))
    m.set_load(0.25)
    assert value(m, "litestream_load") == 0.25
    m.set_load(1.0)
    assert value(m, "litestream_load") == 1.0
    m.set_load(None)  # warming up or draining
    assert not any(name == "litestream_load" for name, _ in samples(m))
    assert b"# TYPE litestream_load gauge" in m.render()[0]


def quantile(m: Metrics, name: str, q: float) -> float:
    """histogram_quantile(q, ...) as Prometheus computes it: linear within the bucket."""
    buckets = sorted((float(labels[0][1]), v) for (n, labels), v in samples(m).items()
                     if n == f"{name}_bucket" and labels[0][1] != "+Inf")
    total = value(m, f"{name}_count")
    below, lower = 0.0, 0.0
    for bound, count in buckets:
        if count >= q * total:
            return lower + (bound - lower) * (q * total - below) / (count - below)
        below, lower = count, bound
    raise AssertionError("above the last bucket")


@pytest.mark.parametrize("ttfa_ms", [15, 25, 35, 45])
def test_a_gpus_first_audio_is_resolved_not_one_bucket(ttfa_ms: int) -> None:
    """First audio on a GPU (or from the sentence cache) is 10-50 ms: the median
    Prometheus computes from the buckets must land within 5 ms of it."""
    m = Metrics()
    for _ in range(100):
        m.first_audio(ttfa_ms / 1000)
    assert quantile(m, "litestream_ttfa_seconds", 0.5) == pytest.approx(ttfa_ms / 1000,
                                                                         abs=0.005)


def test_slack_tells_just_late_from_quite_late() -> None:
    m = Metrics()
    for slack_s in (-0.03, -0.03, -0.03, -0.09):
        m.piece_sent(slack_s, 0)
    assert quantile(m, "litestream_chunk_slack_seconds", 0.5) > -0.05
