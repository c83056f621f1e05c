"""The shared sentence cache's keys and entries (synthesis/shared_cache.py), without Redis:
a key changes with everything that changes the audio, an entry comes back as it went in."""

from __future__ import annotations

import numpy as np
import pytest

from litestream.engine.base import Word
from litestream.errors import ConfigError
from litestream.metrics import Metrics
from litestream.synthesis.shared_cache import (
    KEY_PREFIX,
    SharedCache,
    decode_entry,
    encode_entry,
    redacted,
    shared_key,
)

FP = "a" * 64


def test_the_key_carries_voice_fingerprint_speed_and_text() -> None:
    base = shared_key("en_US-joe-medium", FP, 1.0, "Sure, one moment.")
    assert base.startswith(f"{KEY_PREFIX}:en_US-joe-medium:{'a' * 16}:1.0000:")
    # Anything that changes the audio is another key.
    assert shared_key("en_US-other", FP, 1.0, "Sure, one moment.") != base
    assert shared_key("en_US-joe-medium", "b" * 64, 1.0, "Sure, one moment.") != base
    assert shared_key("en_US-joe-medium", FP, 1.25, "Sure, one moment.") != base
    assert shared_key("en_US-joe-medium", FP, 1.0, "Sure, one moment!") != base
    assert shared_key("en_US-joe-medium", FP, 1.0, "sure, one moment.") != base
    # What cannot change it is folded, as in the in-process cache (normalize_key).
    assert shared_key("en_US-joe-medium", FP, 1.00001, "  Sure,\tone  moment. ") == base
    assert len(base) < 160  # the text is hashed: long chunks make short keys


def test_an_entry_comes_back_bit_for_bit_at_its_rate_only() -> None:
    samples = np.random.default_rng(1).uniform(-1, 1, 22050).astype(np.float32)
    data = encode_entry(samples, 22050)
    empty = b'{"text":"","words":[]}'
    assert len(data) == 12 + len(empty) + 4 * len(samples)  # documented: 4 bytes a sample
    back = decode_entry(data, 22050)
    assert back is not None and back.sample_rate == 22050
    assert back.samples.tobytes() == samples.tobytes()
    # The sentence's words come back with it, to be found again in a hit's own text.
    words = (Word("Sure", 0, 4, 256, 5120), Word("one", 6, 9, 6144, 9000))
    back = decode_entry(encode_entry(samples, 22050, "Sure, one.", words), 22050)
    assert back is not None and back.samples.tobytes() == samples.tobytes()
    assert (back.text, back.words) == ("Sure, one.", words)
    assert [(w.char_start, w.char_end) for w in back.words_in("Sure,  one.")] == [(0, 4), (7, 10)]
    assert not back.samples.flags.writeable
    assert decode_entry(data, 24000) is None  # another voice's rate: not ours
    assert decode_entry(b"junk" + data[4:], 22050) is None
    assert decode_entry(data[:-1], 22050) is None
    garbled = data[:12] + b"x" * len(empty) + data[12 + len(empty):]
    assert decode_entry(garbled, 22050) is None
    assert decode_entry(b"", 22050) is None


@pytest.mark.parametrize(("url", "shown"), [
    ("redis://127.0.0.1:6379/0", "redis://127.0.0.1:6379/0"),
    ("redis://:hunter2@cache:6380/1", "redis://:***@cache:6380/1"),
    ("rediss://user:pw@cache/0", "rediss://user:***@cache/0"),
])
def test_logs_never_show_the_password(url: str, shown: str) -> None:
    assert redacted(url) == shown


def test_a_malformed_url_stops_the_start_with_a_config_error() -> None:
    with pytest.raises(ConfigError, match="cache_url"):
        SharedCache("redis://:pw@cache:notaport/0", {}, {}, Metrics(), ttl_s=60,
                    timeout_s=0.02)
