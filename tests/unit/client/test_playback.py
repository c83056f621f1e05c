"""PlaybackClock with the chunks' `words` events: which words a listener heard by a given time."""

from __future__ import annotations

from litestream.client import Chunk, HeardText, PlaybackClock, Word, Words

SR = 1000  # 1 kHz s16le: 2 bytes per ms, so frame sizes read as durations
MS = 2

# Chunk 0 starts at 0 on the stream's timeline, chunk 1 at 1000 (its words' clock too).
TEXT_0 = "Sure, one moment."
WORDS_0 = (Word("Sure", 0, 300, 0, 4), Word("one", 450, 600, 6, 9),
           Word("moment", 620, 950, 10, 16))
TEXT_1 = "It costs $1,234 today."
WORDS_1 = (Word("It", 1000, 1100, 0, 2), Word("costs", 1100, 1400, 3, 8),
           Word("$1,234", 1400, 2300, 9, 15), Word("today", 2300, 2600, 16, 21))


def listener(*, words: bool = True) -> PlaybackClock:
    clock = PlaybackClock(SR)
    for seq, text, start, duration, timed in ((0, TEXT_0, 0, 1000, WORDS_0),
                                                (1, TEXT_1, 1000, 1700, WORDS_1)):
        clock.on_chunk(Chunk(seq, text, start, duration), now=0.0)
        if words:
            clock.on_words(Words(seq, timed))
        clock.on_audio(seq, duration * MS, now=0.0)
    return clock


def test_heard_text_runs_to_the_last_word_begun_with_its_punctuation() -> None:
    clock = listener()
    assert clock.heard_text(0.0) == HeardText("", f"{TEXT_0} {TEXT_1}")
    assert clock.heard_text(0.2) == HeardText("Sure,", f"one moment. {TEXT_1}")
    # 450 ms: "one" starts exactly there, so it has not been heard yet; 451 ms it has.
    assert clock.heard_text(0.45).heard == "Sure,"
    assert clock.heard_text(0.451).heard == "Sure, one"
    # Chunk 0 heard whole, then 500 ms into chunk 1: "$1,234" (one word, 900 ms long) begun.
    assert clock.heard_text(1.5) == HeardText(f"{TEXT_0} It costs $1,234", "today.")
    assert clock.heard_text(9.0) == HeardText(f"{TEXT_0} {TEXT_1}", "")


def test_heard_text_from_a_seq_leaves_earlier_turns_out() -> None:
    assert listener().heard_text(1.2, from_seq=1) == HeardText("It costs", "$1,234 today.")


def test_without_words_only_whole_chunks_count_as_heard() -> None:
    clock = listener(words=False)
    assert clock.heard_text(0.9) == HeardText("", f"{TEXT_0} {TEXT_1}")
    assert clock.heard_text(1.5) == HeardText(TEXT_0, TEXT_1)


def test_a_clear_keeps_the_words_heard_before_it() -> None:
    clock = listener()
    clock.clear(now=1.25)  # 250 ms into chunk 1: "It" and "costs" begun
    clock.on_cleared(1)
    assert clock.heard_text(5.0) == HeardText(f"{TEXT_0} It costs", "$1,234 today.")


def test_unchunked_is_the_sent_text_no_chunk_carries_yet() -> None:
    clock = listener()
    # The server had cut the two chunks out of the text sent so far and still held the rest.
    sent = f"{TEXT_0}  {TEXT_1} Shall I\nbook it? "
    assert clock.unchunked(sent) == "Shall I\nbook it?"
    assert clock.unchunked(f"{TEXT_0} {TEXT_1}") == ""
    assert PlaybackClock(SR).unchunked("Nothing chunked yet.") == "Nothing chunked yet."


def test_unchunked_finds_chunk_text_the_server_normalized() -> None:
    # A chunk's text is the sent text without markdown marks and with single spaces.
    clock = PlaybackClock(SR)
    clock.on_chunk(Chunk(0, "Note: see the docs.", 0, 1000), now=0.0)
    sent = "**Note:** see [the docs](https://example.com).** Then** call us."
    assert clock.unchunked(sent) == "Then** call us."


def test_japanese_chunks_join_without_a_space() -> None:
    # Japanese has no spaces: "はい。" then "東京では..." is one text, not "はい。 東京では".
    clock = PlaybackClock(SR)
    chunks = ((0, "はい。", 0, 500, (Word("はい", 0, 400, 0, 2),)),
              (1, "東京では雨です。", 500, 1200, (
                  Word("東京", 500, 800, 0, 2), Word("で", 800, 900, 2, 3),
                  Word("は", 900, 1000, 3, 4), Word("雨", 1000, 1300, 4, 5),
                  Word("です", 1300, 1600, 5, 7))),
              (2, "OK.", 1700, 200, (Word("OK", 1700, 1900, 0, 2),)))
    for seq, text, start, duration, timed in chunks:
        clock.on_chunk(Chunk(seq, text, start, duration), now=0.0)
        clock.on_words(Words(seq, timed))
        clock.on_audio(seq, duration * MS, now=0.0)
    assert clock.heard_text(0.85) == HeardText("はい。東京で", "は雨です。 OK.")
    assert clock.heard_text(9.0) == HeardText("はい。東京では雨です。 OK.", "")
