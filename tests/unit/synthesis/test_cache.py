"""Sentence cache: plain calls."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from litestream.synthesis.cache import CacheKey, SentenceCache, normalize_key

RATE = 22050
VOICE = "en_US-joe-medium"


def audio(samples: int, value: float = 0.25) -> np.ndarray:
    return np.full(samples, value, dtype=np.float32)


def test_hit_returns_the_audio_stored() -> None:
    cache = SentenceCache(1 << 20)
    cache.put(VOICE, 1.0, "Sure, one moment.", audio(1000, 0.5), RATE)
    found = cache.get(VOICE, 1.0, "Sure, one moment.")
    assert found is not None
    assert found.sample_rate == RATE
    assert found.sample_count == 1000
    assert np.array_equal(found.samples, audio(1000, 0.5))
    assert (cache.hits, cache.misses) == (1, 0)


def test_a_different_voice_or_speed_never_hits() -> None:
    cache = SentenceCache(1 << 20)
    cache.put(VOICE, 1.0, "Hello.", audio(100), RATE)
    assert cache.get("other-voice", 1.0, "Hello.") is None
    assert cache.get(VOICE, 1.25, "Hello.") is None
    assert cache.get(VOICE, 0.5, "Hello.") is None
    assert cache.get(VOICE, 1.0, "Hello!") is None
    assert (cache.hits, cache.misses) == (0, 4)
    assert cache.get(VOICE, 1.0, "Hello.") is not None


@settings(max_examples=200, deadline=None)
@given(st.lists(st.tuples(st.sampled_from(["a", "b", "c"]), st.sampled_from([0.5, 1.0, 2.0]),
                          st.sampled_from(["Hi.", "Bye.", "Yes."])), min_size=1, max_size=30))
def test_no_key_ever_returns_audio_stored_under_another(puts: list[tuple[str, float, str]]) -> None:
    """Each entry's audio encodes its own key; every lookup must find its own key's audio."""
    cache = SentenceCache(1 << 20)

    texts = ("Hi.", "Bye.", "Yes.")

    def tag(voice: str, speed: float, text: str) -> float:
        """A value unique to the key, exact in float32."""
        return ((ord(voice) - 96) * 100 + speed * 10 + texts.index(text)) / 1024

    for voice, speed, text in puts:
        cache.put(voice, speed, text, audio(10, tag(voice, speed, text)), RATE)
    for voice in "abc":
        for speed in (0.5, 1.0, 2.0):
            for text in texts:
                found = cache.get(voice, speed, text)
                if (voice, speed, text) in puts:
                    assert found is not None
                    assert found.samples[0] == np.float32(tag(voice, speed, text))
                else:
                    assert found is None


def test_text_is_normalized_but_case_and_punctuation_are_kept() -> None:
    assert normalize_key("  Sure,\tone \n moment. ") == "Sure, one moment."
    assert normalize_key("Cafe\u0301") == "Café"  # NFC
    cache = SentenceCache(1 << 20)
    cache.put(VOICE, 1.0, "Sure,  one moment.", audio(10), RATE)
    assert cache.get(VOICE, 1.0, " Sure, one moment. ") is not None
    assert cache.get(VOICE, 1.0, "sure, one moment.") is None
    assert cache.get(VOICE, 1.0, "Sure, one moment") is None


def test_least_recently_used_goes_first() -> None:
    entry = audio(1000)  # 4,000 bytes
    cache = SentenceCache(3 * entry.nbytes, max_entry_bytes=entry.nbytes)
    for text in ("one", "two", "three"):
        cache.put(VOICE, 1.0, text, entry, RATE)
    assert cache.get(VOICE, 1.0, "one") is not None  # "one" is now the most recent
    assert cache.put(VOICE, 1.0, "four", entry, RATE) == 1
    assert CacheKey.of(VOICE, 1.0, "two") not in cache  # the least recently used left
    assert all(CacheKey.of(VOICE, 1.0, t) in cache for t in ("one", "three", "four"))
    assert cache.put(VOICE, 1.0, "five", entry, RATE) == 1
    assert CacheKey.of(VOICE, 1.0, "three") not in cache
    assert cache.evictions == 2


def test_byte_bound_holds_with_mixed_sizes() -> None:
    rng = np.random.default_rng(7)
    cache = SentenceCache(100_000, max_entry_bytes=40_000)
    stored: dict[str, int] = {}  # text -> bytes of its latest put
    for i in range(500):
        size = int(rng.integers(1, 10_000))
        text = f"sentence {i % 60}"
        cache.put(VOICE, 1.0, text, audio(size), RATE)
        stored[text] = size * 4
        stats = cache.stats()
        assert stats.bytes <= 100_000
        held = [t for t in stored if CacheKey.of(VOICE, 1.0, t) in cache]
        assert stats.bytes == sum(stored[t] for t in held)
        assert stats.entries == len(held)
    assert cache.evictions > 0


def test_an_entry_over_its_limit_is_not_kept() -> None:
    cache = SentenceCache(100_000, max_entry_bytes=4_000)
    cache.put(VOICE, 1.0, "short", audio(1000), RATE)
    assert cache.put(VOICE, 1.0, "long", audio(1001), RATE) == 0
    assert CacheKey.of(VOICE, 1.0, "long") not in cache
    assert CacheKey.of(VOICE, 1.0, "short") in cache  # and nothing was flushed for it
    assert cache.put(VOICE, 1.0, "empty", audio(0), RATE) == 0
    assert len(cache) == 1


def test_storing_a_key_again_replaces_it_and_counts_bytes_once() -> None:
    cache = SentenceCache(1 << 20)
    cache.put(VOICE, 1.0, "Hi.", audio(100), RATE)
    cache.put(VOICE, 1.0, "Hi.", audio(300, 0.1), RATE)
    assert len(cache) == 1
    assert cache.stats().bytes == 300 * 4
    found = cache.get(VOICE, 1.0, "Hi.")
    assert found is not None and found.sample_count == 300


def test_stored_audio_is_a_read_only_copy() -> None:
    cache = SentenceCache(1 << 20)
    buffer = audio(10, 0.5)
    cache.put(VOICE, 1.0, "Hi.", buffer, RATE)
    buffer[:] = 0.0  # the caller reuses its buffer
    found = cache.get(VOICE, 1.0, "Hi.")
    assert found is not None
    assert float(found.samples[0]) == 0.5
    with pytest.raises(ValueError):
        found.samples[0] = 1.0


def test_disabled_cache_stores_nothing_and_counts_nothing() -> None:
    cache = SentenceCache(0)
    assert not cache.enabled
    assert cache.put(VOICE, 1.0, "Hi.", audio(10), RATE) == 0
    assert cache.get(VOICE, 1.0, "Hi.") is None
    assert cache.stats().misses == 0 and len(cache) == 0


def test_stats_hit_rate() -> None:
    cache = SentenceCache(1 << 20)
    cache.put(VOICE, 1.0, "Hi.", audio(10), RATE)
    cache.get(VOICE, 1.0, "Hi.")
    cache.get(VOICE, 1.0, "Hi.")
    cache.get(VOICE, 1.0, "Other.")
    stats = cache.stats()
    assert (stats.hits, stats.misses, stats.entries) == (2, 1, 1)
    assert stats.hit_rate == pytest.approx(2 / 3)
    assert SentenceCache(1).stats().hit_rate == 0.0


def test_cache_metrics_move() -> None:
    """The cache's figures reach /metrics (Metrics.cache_*; the server reports each event)."""
    from prometheus_client.parser import text_string_to_metric_families

    from litestream.metrics import Metrics

    m = Metrics()
    m.cache_lookup(hit=True)
    m.cache_lookup(hit=False)
    m.cache_lookup(hit=False)
    m.cache_evicted(3)
    m.cache_evicted(0)
    m.set_cache(4096, 2)
    found = {s.name: s.value
             for family in text_string_to_metric_families(m.render()[0].decode())
             for s in family.samples}
    assert found["litestream_cache_hits_total"] == 1
    assert found["litestream_cache_misses_total"] == 2
    assert found["litestream_cache_evictions_total"] == 3
    assert found["litestream_cache_bytes"] == 4096
    assert found["litestream_cache_entries"] == 2
