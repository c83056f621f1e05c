"""Unspoken: the text a stream was sent and has not spoken, to send again on a new stream."""

from __future__ import annotations

from litestream.client.unspoken import Segment, Unspoken


def tokens(ledger: Unspoken, text: str) -> None:
    """As an LLM sends it: pieces that cut words."""
    for i in range(0, len(text), 3):
        ledger.sent_text(text[i:i + 3])


def test_a_spoken_chunk_lets_go_of_its_text_and_the_rest_is_kept() -> None:
    ledger = Unspoken()
    tokens(ledger, "Hello  there,\nfriend. How are you? Fine.")
    ledger.spoken("Hello there, friend.")  # the chunk is the text normalized
    assert ledger.segments() == [Segment(" How are you? Fine.")]


def test_flush_marks_stay_between_the_texts_they_followed() -> None:
    ledger = Unspoken()
    ledger.sent_text("First turn. ")
    ledger.sent_flush("turn-1")
    ledger.sent_text("Second turn ")
    ledger.sent_text("goes on.")
    ledger.sent_flush("turn-2")
    ledger.spoken("First turn.")
    assert ledger.segments() == [Segment(" ", "turn-1"), Segment("Second turn goes on.", "turn-2")]
    # The second turn's first chunk may come before the first turn's `flushed`.
    ledger.spoken("Second turn goes on.")
    assert ledger.segments() == [Segment(" ", "turn-1"), Segment("", "turn-2")]
    ledger.flushed()
    ledger.flushed()
    assert ledger.segments() == []


def test_markdown_and_text_without_spaces_are_matched_by_their_letters() -> None:
    ledger = Unspoken()
    ledger.sent_text("**Note:** see [the docs](https://example.com) first. Then go on.")
    ledger.spoken("Note: see the docs first.")
    assert ledger.segments() == [Segment(" Then go on.")]
    japanese = Unspoken()
    japanese.sent_text("こんにちは。元気ですか。")
    japanese.spoken("こんにちは。")
    assert japanese.segments() == [Segment("元気ですか。")]


def test_a_chunk_that_cannot_be_followed_lets_go_of_nothing() -> None:
    ledger = Unspoken()
    ledger.sent_text("One sentence. Two sentences.")
    ledger.spoken("Something else entirely.")
    assert ledger.segments() == [Segment("One sentence. Two sentences.")]


def test_clear_drops_everything_and_flushed_without_a_mark_is_ignored() -> None:
    ledger = Unspoken()
    ledger.sent_text("Never to be heard.")
    ledger.flushed()  # no flush was sent: nothing to let go of
    assert ledger.chars() == len("Never to be heard.")
    ledger.clear()
    assert ledger.segments() == []


def test_a_new_turn_drops_the_turn_left_without_its_end_and_keeps_earlier_ones() -> None:
    ledger = Unspoken()
    assert not ledger
    ledger.sent_text("An earlier turn. ")
    ledger.sent_flush("turn-1")
    ledger.sent_text("A turn that never ended")
    assert ledger
    ledger.drop_turn()
    assert ledger.segments() == [Segment("An earlier turn. ", "turn-1")]
    ledger.drop_turn()  # no text after the last mark: nothing goes
    assert ledger.segments() == [Segment("An earlier turn. ", "turn-1")]
    # A turn whose end was kept (no stream to send its flush on) goes by its mark.
    ledger.sent_text("A turn whose end came with no stream.")
    ledger.sent_flush("turn-3")
    ledger.drop_turn("turn-1")  # not the last turn: kept
    assert len(ledger.segments()) == 2
    ledger.drop_turn("turn-3")
    assert ledger.segments() == [Segment("An earlier turn. ", "turn-1")]
    ledger.flushed()
    assert not ledger
