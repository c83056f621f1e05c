"""loadtest/lib/word_timing.py's accounting, with plain values: words paired with a
recognizer's by their letters and digits, the character-spread estimate, words outside their
chunk."""

from __future__ import annotations

import pytest

from litestream.client import Chunk, Word, Words
from loadtest.lib.word_timing import (
    Heard,
    TimedWord,
    edge_errors_ms,
    ours,
    outside_their_chunk,
    paired_errors_ms,
    pauses,
    spread_by_characters,
    summary,
)


def heard() -> Heard:
    h = Heard(sample_rate=1000)
    h.chunks[0] = Chunk(0, "Dr. Smith paid $1,234.", 0, 1000)
    h.words[0] = Words(0, (Word("Dr", 0, 300, 0, 2), Word("Smith", 320, 500, 4, 9),
                           Word("paid", 520, 600, 10, 14), Word("$1,234", 620, 1000, 15, 21)))
    h.chunks[1] = Chunk(1, "Done.", 1000, 200)
    h.words[1] = Words(1, (Word("Done", 1010, 1250, 0, 4),))  # ends past its chunk
    return h


def test_words_pair_by_letters_and_digits_and_skip_what_differs() -> None:
    recognized = [("Doctor", 0.0, 0.3), (" Smith", 0.30, 0.5), (" paid", 0.5, 0.6),
                  (" $1,234.", 0.64, 1.0), (" done", 1.0, 1.2)]
    errors = paired_errors_ms(ours(heard()), recognized)
    # "Dr" and "Doctor" do not pair; the rest do, signed: ours minus whisper's.
    assert errors == pytest.approx([20.0, 20.0, -20.0, 10.0])


def test_character_spread_and_chunk_bounds() -> None:
    h = heard()
    spread = spread_by_characters(h)
    assert spread[1] == TimedWord("Smith", 4 * 1000 / 22, 9 * 1000 / 22)
    assert spread[4].start_ms == 1000
    assert outside_their_chunk(h) == 1


def test_summary_reports_the_lead_and_the_spread() -> None:
    recognized = [("Smith", 0.25, 0.5), ("paid", 0.45, 0.6), ("1234", 0.55, 1.0),
                  ("done", 0.94, 1.2)]
    row = summary("speed 1.0", [heard()], [recognized])
    assert row["paired"] == 4 and row["words"] == 5 and row["outside_chunk"] == 1
    stats = row["start_error_ms"]
    assert isinstance(stats, dict)
    assert stats["median"] == 70.0 and stats["signed_median"] == 70.0
    assert stats["spread_median"] == 0.0


def test_pause_edges_come_from_the_audio_and_judge_both_timelines() -> None:
    import numpy as np

    from litestream.client import Audio

    h = Heard(sample_rate=1000)
    pcm = np.zeros(2000, dtype=np.int16)
    pcm[100:400] = 8000  # the first word
    pcm[900:1300] = 8000  # the second, after a pause: heard from 900 ms
    h.audio.append(Audio(0, pcm.tobytes()).samples())
    h.chunks[0] = Chunk(0, "One two.", 0, 2000)
    h.words[0] = Words(0, (Word("One", 90, 380, 0, 3), Word("two", 850, 1300, 4, 7)))
    found = pauses(h)
    assert [(p.after, p.offset_ms, p.onset_ms) for p in found] == [(1, 400.0, 900.0)]
    assert edge_errors_ms({1: 850.0}, {0: 380.0}, found) == ([-50.0], [-20.0])

    recognized = [("one", 0.1, 0.35), ("two", 0.8, 1.3)]
    row = summary("speed 1.0", [h], [recognized])
    assert row["pauses"] == 1
    edges = row["at_pauses_ms"]
    assert isinstance(edges, dict)
    assert edges["ours_start"]["signed_median"] == -50.0
    assert edges["ours_end"]["signed_median"] == -20.0
    assert edges["whisper_start"]["signed_median"] == -100.0
    assert edges["whisper_end"]["signed_median"] == -50.0


def test_a_gap_with_sound_in_its_middle_is_no_pause() -> None:
    import numpy as np

    from litestream.client import Audio

    h = Heard(sample_rate=1000)
    pcm = np.full(2000, 8000, dtype=np.int16)  # sound all through: our gap is not a silence
    h.audio.append(Audio(0, pcm.tobytes()).samples())
    h.chunks[0] = Chunk(0, "One two.", 0, 2000)
    h.words[0] = Words(0, (Word("One", 90, 380, 0, 3), Word("two", 850, 1300, 4, 7)))
    assert pauses(h) == []
