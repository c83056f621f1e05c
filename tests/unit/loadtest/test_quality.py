"""The quality benchmark's accounting (loadtest/quality.py): plain calls, no server."""

from __future__ import annotations

import numpy as np

from loadtest.lib.listening import (
    SpokenChunk,
    SpokenStream,
    join_report,
    silence_edges_ms,
    summarize,
    word_errors,
)

RATE = 22050


def tone(ms: float) -> np.ndarray:
    n = int(RATE * ms / 1000)
    return (np.sin(np.arange(n) * 2 * np.pi * 220 / RATE) * 8000).astype(np.int16)


def quiet(ms: float) -> np.ndarray:
    return np.zeros(int(RATE * ms / 1000), dtype=np.int16)


def test_silence_edges_measure_leading_and_trailing_quiet() -> None:
    lead, trail = silence_edges_ms(np.concatenate([quiet(100), tone(300), quiet(200)]), RATE)
    assert 90 <= lead <= 110
    assert 190 <= trail <= 210


def test_all_silent_chunk_is_all_edge() -> None:
    lead, trail = silence_edges_ms(quiet(100), RATE)
    assert lead == trail == 100


def test_joins_are_classified_by_the_punctuation_before_them() -> None:
    stream = SpokenStream("A blue crane is a tall wading bird. It waits, then it eats.", RATE)
    for seq, (text, audio) in enumerate([
        ("A blue crane", [tone(200), quiet(150)]),          # inside a clause
        ("is a tall wading bird.", [quiet(50), tone(300)]),  # sentence end
        ("It waits,", [tone(200)]),                          # clause end
        ("then it eats.", [tone(200)]),
    ]):
        stream.chunks.append(SpokenChunk(seq, text, audio))
    report = join_report(stream)
    assert report.sentences == 2
    assert report.joins == 3
    assert report.joins_in_sentence == 2
    assert report.joins_in_clause == 1
    assert 190 <= report.gaps_ms[0] <= 210  # 150 trailing + 50 leading
    assert report.joins_per_sentence == 1.0


def test_word_errors_count_substitutions_insertions_and_deletions() -> None:
    assert word_errors("the cat sat", "the cat sat") == (0, 3)
    assert word_errors("the cat sat", "the bat sat down") == (2, 3)
    assert word_errors("The cat, sat.", "the cat sat") == (0, 3)
    assert word_errors("one two three", "") == (3, 3)


def test_a_run_row_says_how_many_streams_were_not_spoken_and_why() -> None:
    # The figures come from spoken streams only: a burst in which the server refused some must
    # not read as all of them.
    spoken = SpokenStream("One. Two.", RATE, [SpokenChunk(0, "One. Two.", [tone(300)])])
    refused = "RateLimited: handshake refused: HTTP 429: too many concurrent streams (limit 1)"
    streams = [spoken, SpokenStream("One. Two.", error=refused),
               SpokenStream("One. Two.", error=refused),
               SpokenStream("One. Two.", error="bad_message")]
    row = summarize("4 at once", streams, None)
    assert row["streams"] == 4 and row["spoken"] == 1
    assert row["failed"] == {refused: 2, "bad_message": 1}
    assert "failed" not in summarize("alone", [spoken], None)
