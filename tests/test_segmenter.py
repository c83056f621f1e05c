"""Tests for litestream/segmenter.py: boundaries, normalization, first-chunk policy, and the
property that the chunks do not depend on how the text was cut into fragments."""

from __future__ import annotations

import itertools
import time
import unicodedata

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from litestream.segmenter import Segmenter


def run(text: str, **kwargs: float | None) -> list[str]:
    seg = Segmenter(**kwargs)  # type: ignore[arg-type]
    return seg.feed(text) + seg.flush()


def run_fragments(fragments: list[str], **kwargs: float | None) -> list[str]:
    seg = Segmenter(**kwargs)  # type: ignore[arg-type]
    out: list[str] = []
    for fragment in fragments:
        out += seg.feed(fragment)
    return out + seg.flush()


def normalize(text: str) -> str:
    """What the segmenter promises to keep: Cc/Cf dropped, whitespace runs collapsed."""
    kept = "".join(
        ch for ch in text if ch.isspace() or unicodedata.category(ch) not in ("Cc", "Cf")
    )
    return " ".join(kept.split())


def speakable(text: str) -> bool:
    return any(ch.isalnum() for ch in text)


# -- the table of tricky inputs ----------------------------------------------------------------

TABLE: list[tuple[str, list[str]]] = [
    (
        "Dr. Smith paid $4.50 at 5 p.m. on Jan. 3rd.",
        ["Dr. Smith paid $4.50 at 5 p.m. on Jan. 3rd."],
    ),
    (
        "Mr. and Mrs. Jones arrived. They sat down.",
        ["Mr. and Mrs. Jones arrived.", "They sat down."],
    ),
    (
        "Use a tool, e.g. a hammer, i.e. something heavy. Then hit it.",
        ["Use a tool, e.g. a hammer, i.e. something heavy.", "Then hit it."],
    ),
    (
        "The U.S. Army is large. It has many units.",
        ["The U.S. Army is large.", "It has many units."],
    ),
    (
        "Pi is about 3.14 today. It costs $4.50 too.",
        ["Pi is about 3.14 today.", "It costs $4.50 too."],
    ),
    (
        "J. R. R. Tolkien wrote The Hobbit. It was a success.",
        ["J. R. R. Tolkien wrote The Hobbit.", "It was a success."],
    ),
    (
        "We meet at 5 p.m. on Friday. Bring snacks.",
        ["We meet at 5 p.m. on Friday.", "Bring snacks."],
    ),
    ("Well... I guess so. Fine.", ["Well...", "I guess so.", "Fine."]),
    ("He said 'hi.' Then left.", ["He said 'hi.'", "Then left."]),
    ('Say "yes." No.', ['Say "yes."', "No."]),
    ("Is it done? Yes! Great.", ["Is it done?", "Yes!", "Great."]),
    ("Really?! Yes.", ["Really?!", "Yes."]),
    (
        "First paragraph.\n\nSecond paragraph.\nThird line.",
        ["First paragraph.", "Second paragraph.", "Third line."],
    ),
    # A line break is a boundary even without punctuation (pysbd's rule): headings, list items.
    ("Heading\nBody text here.", ["Heading", "Body text here."]),
    (
        "Hello 😀 world.\x00 Zero\u200bwidth\u00ad here.\tTabs  and   spaces.",
        ["Hello 😀 world.", "Zerowidth here.", "Tabs and spaces."],
    ),
    ("He stopped—then ran. Ok.", ["He stopped—then ran.", "Ok."]),
    ("Prices rose by 1,000 dollars. Ok.", ["Prices rose by 1,000 dollars.", "Ok."]),
    ("Ok. ... Next one.", ["Ok.", "Next one."]),  # the bare "..." is not speakable
    ("... !!! ?", []),
    ("— (—) ...", []),
    ("", []),
    ("   \n\n  \t", []),
    ("no punctuation at all", ["no punctuation at all"]),
]


@pytest.mark.parametrize(("text", "expected"), TABLE)
def test_table_whole(text: str, expected: list[str]) -> None:
    assert run(text) == expected


@pytest.mark.parametrize(("text", "expected"), TABLE)
def test_table_char_by_char(text: str, expected: list[str]) -> None:
    assert run_fragments(list(text)) == expected


def test_long_sentence_splits_at_commas_under_max_chars() -> None:
    clauses = [f"this is clause number {i} of a long sentence" for i in range(20)]
    text = ", ".join(clauses) + "."
    chunks = run(text, max_chars=100)
    assert len(chunks) > 1
    assert all(len(c) <= 100 for c in chunks)
    # Every cut is at a comma: each chunk but the last ends with one.
    assert all(c.endswith(",") for c in chunks[:-1])
    assert " ".join(chunks) == text


def test_long_sentence_without_clauses_splits_at_words() -> None:
    words = [f"word{i}" for i in range(100)]
    text = " ".join(words) + "."
    chunks = run(text, max_chars=50)
    assert all(len(c) <= 50 for c in chunks)
    assert " ".join(chunks) == text  # never inside a word


def test_clause_cut_at_parentheses_and_dashes() -> None:
    text = "alpha beta gamma (delta epsilon zeta) eta theta iota — kappa lambda mu nu."
    assert run(text, max_chars=40) == [
        "alpha beta gamma (delta epsilon zeta)",
        "eta theta iota — kappa lambda mu nu.",
    ]
    assert run(text, max_chars=30) == [
        "alpha beta gamma",
        "(delta epsilon zeta)",
        "eta theta iota —",
        "kappa lambda mu nu.",
    ]
    # An unspaced em dash joins two words but is still a clause boundary.
    assert run("one two three four five—six seven eight nine ten.", max_chars=30) == [
        "one two three four five—",
        "six seven eight nine ten.",
    ]


def test_giant_word_stays_whole() -> None:
    giant = "x" * 50
    assert run(f"A {giant} b c.", max_chars=10) == ["A", giant, "b c."]


# -- incremental feeding -----------------------------------------------------------------------


def test_sentence_emitted_when_next_begins() -> None:
    seg = Segmenter()
    assert seg.feed("Hel") == []
    assert seg.feed("lo wor") == []
    assert seg.feed("ld. How") == ["Hello world."]
    assert seg.buffered_chars == len("How")
    assert seg.flush() == ["How"]
    assert seg.buffered_chars == 0


def test_abbreviation_at_buffer_end_waits() -> None:
    seg = Segmenter()
    assert seg.feed("I saw Dr.") == []
    assert seg.feed(" ") == []  # "Dr." is ambiguous until the next word begins
    assert seg.feed("Smith at 5 p.m. ") == []
    assert seg.feed("on Monday. ") == []
    assert seg.feed("Then") == ["I saw Dr. Smith at 5 p.m. on Monday."]


def test_paragraph_break_completes_at_once() -> None:
    seg = Segmenter()
    assert seg.feed("Hello there.") == []
    assert seg.feed(" \n") == ["Hello there."]
    assert seg.feed("\nNext one") == []
    assert seg.flush() == ["Next one"]


def test_clear_drops_buffer() -> None:
    seg = Segmenter()
    seg.feed("Half a sen")
    assert seg.buffered_chars > 0
    seg.clear()
    assert seg.buffered_chars == 0
    assert seg.flush() == []
    assert seg.feed("New start. Go") == ["New start."]


def test_flush_twice_is_empty() -> None:
    seg = Segmenter()
    seg.feed("Some text")
    assert seg.flush() == ["Some text"]
    assert seg.flush() == []


# -- first-chunk policy ------------------------------------------------------------------------

LONG_WITH_COMMAS = (
    "When the storm finally passed, the villagers came out of their houses, "
    "looked at the damage and started to rebuild."
)


def test_first_chunk_is_first_clause() -> None:
    chunks = run(LONG_WITH_COMMAS + " Next sentence.", first_chunk_chars=40)
    assert chunks[0] == "When the storm finally passed,"
    assert " ".join(chunks) == LONG_WITH_COMMAS + " Next sentence."
    # Only the first chunk is cut short: the rest of the sentence goes whole.
    assert chunks[1:] == [LONG_WITH_COMMAS[len(chunks[0]) + 1 :], "Next sentence."]


def test_first_chunk_without_commas_is_first_words() -> None:
    text = "The quick brown fox jumps over the lazy dog and keeps on running far away."
    chunks = run(text, first_chunk_chars=20)
    assert chunks[0] == "The quick brown fox"
    assert len(chunks[0]) <= 20
    assert " ".join(chunks) == text


def test_first_chunk_from_unfinished_sentence() -> None:
    seg = Segmenter(first_chunk_chars=20)
    assert seg.feed("The quick brown") == []  # not yet more than 20 chars
    assert seg.feed(" fox jumps ov") == ["The quick brown fox"]
    assert seg.feed("er the lazy dog. And") == ["jumps over the lazy dog."]
    assert seg.flush() == ["And"]


def test_first_chunk_at_least_one_word() -> None:
    seg = Segmenter(first_chunk_chars=5)
    assert seg.feed("Extraordinarily") == []  # the word may not be finished
    assert seg.feed(" long words follow here") == ["Extraordinarily"]


def test_short_complete_first_sentence_stays_whole() -> None:
    # 26 chars < 1.5 x 20: cutting would leave a tiny remainder.
    assert run("The cat sat on a warm mat. Then", first_chunk_chars=20) == [
        "The cat sat on a warm mat.",
        "Then",
    ]


def test_first_chunk_chars_back_to_none_mid_stream() -> None:
    seg = Segmenter(first_chunk_chars=20)
    assert seg.feed("The quick brown") == []
    seg.first_chunk_chars = None
    assert seg.feed(" fox jumps over the lazy dog. And") == [
        "The quick brown fox jumps over the lazy dog."
    ]


def test_only_the_first_chunk_is_short() -> None:
    seg = Segmenter(first_chunk_chars=40)
    # The sentence is unfinished (nothing follows it yet), but the first chunk may go.
    assert seg.feed(LONG_WITH_COMMAS + " ") == ["When the storm finally passed,"]
    # The rest of the sentence and the next sentence go whole.
    rest = LONG_WITH_COMMAS[len("When the storm finally passed, ") :]
    assert seg.feed(LONG_WITH_COMMAS + " Go") == [rest, LONG_WITH_COMMAS]


def test_clear_makes_next_chunk_first_again() -> None:
    seg = Segmenter(first_chunk_chars=40)
    assert seg.feed(LONG_WITH_COMMAS + " Go")[0] == "When the storm finally passed,"
    seg.clear()
    assert seg.feed(LONG_WITH_COMMAS + " Go")[0] == "When the storm finally passed,"


def test_unspeakable_does_not_use_up_first_chunk() -> None:
    chunks = run("... " + LONG_WITH_COMMAS, first_chunk_chars=40)
    assert chunks[0] == "When the storm finally passed,"


# -- properties --------------------------------------------------------------------------------

WORDS = ["the", "cat", "sat", "Smith", "ran", "house", "blue", "quickly", "a", "I", "yes"]
ABBREVIATIONS = ["Dr.", "Mr.", "Mrs.", "e.g.", "i.e.", "U.S.", "p.m.", "Jan.", "J.", "R."]
NUMBERS = ["$4.50", "3.14", "1,000", "5", "42", "2nd"]
INNER = [",", ";", ":", " —", "—", " (", ")", '"', "'"]
ENDS = [".", "!", "?", "...", "?!", '."', ".'", ".)"]
GAPS = [" ", " ", " ", "  ", "\n", "\n\n", "\t", " \n "]
ODD = ["😀", "\x00", "\u200b", "\x07", "\u00ad", "…", "–"]

token = st.one_of(
    st.sampled_from(WORDS),
    st.sampled_from(WORDS).map(str.capitalize),
    st.sampled_from(ABBREVIATIONS),
    st.sampled_from(NUMBERS),
    st.sampled_from(INNER),
    st.sampled_from(ODD),
)


@st.composite
def sentences(draw: st.DrawFn) -> str:
    parts = draw(st.lists(token, min_size=1, max_size=14))
    text = ""
    for part in parts:
        text += part if part in INNER and draw(st.booleans()) else " " + part
    return text.strip() + draw(st.sampled_from([*ENDS, ""]))


@st.composite
def texts(draw: st.DrawFn) -> str:
    body = draw(st.lists(sentences(), min_size=0, max_size=8))
    text = ""
    for sentence in body:
        text += sentence + draw(st.sampled_from(GAPS))
    return draw(st.sampled_from(["", " ", "\n"])) + text


@st.composite
def fragmented(draw: st.DrawFn) -> tuple[str, list[str]]:
    text = draw(texts())
    cuts = sorted(set(draw(st.lists(st.integers(0, len(text)), max_size=30))))
    bounds = [0, *cuts, len(text)]
    return text, [text[a:b] for a, b in itertools.pairwise(bounds)]


@settings(max_examples=200, deadline=None)
@given(fragmented(), st.sampled_from([20, 60, 300]))
def test_fragments_do_not_change_chunks(case: tuple[str, list[str]], max_chars: int) -> None:
    text, fragments = case
    assert run_fragments(fragments, max_chars=max_chars) == run(text, max_chars=max_chars)


@settings(max_examples=200, deadline=None)
@given(fragmented(), st.sampled_from([20, 60, 300]), st.sampled_from([None, 10, 30]),
       st.sampled_from([None, 1.4, 3.0]))
def test_chunks_cover_normalized_text(
    case: tuple[str, list[str]], max_chars: int, first_chunk_chars: int | None,
    chunk_growth: float | None,
) -> None:
    text, fragments = case
    chunks = run_fragments(fragments, max_chars=max_chars, first_chunk_chars=first_chunk_chars,
                           chunk_growth=chunk_growth)
    expected = normalize(text)
    # Chunks are the normalized text in order, modulo the single spaces between chunks; only
    # pieces with nothing to speak may be missing (pysbd can split "Dr.." into "Dr." and ".").
    flat = expected.replace(" ", "")
    pos = 0
    for chunk in chunks:
        assert chunk == normalize(chunk)
        assert speakable(chunk)
        assert len(chunk) <= max_chars or " " not in chunk
        piece = chunk.replace(" ", "")
        at = flat.find(piece, pos)
        assert at >= 0, (chunk, flat[pos:])
        assert not speakable(flat[pos:at])
        pos = at + len(piece)
    assert not speakable(flat[pos:])


# -- cost --------------------------------------------------------------------------------------

REALISTIC = (
    "Dr. Smith paid $4.50 at 5 p.m. on Jan. 3rd, and he said, 'hi.' The U.S. Army is big! "
    "Is it? J. R. R. Tolkien wrote books; e.g. The Hobbit, which sold well (very well). "
)


@pytest.mark.parametrize("text", [REALISTIC * 120, "Mr. X " * 3400, "word, " * 3400])
def test_token_feeding_is_linear(text: str) -> None:
    text = text[:20_000]
    seg = Segmenter()
    seen = 0
    segment = seg._pysbd.segment

    def counting(window: str) -> list[str]:
        nonlocal seen
        seen += len(window)
        return segment(window)

    seg._pysbd.segment = counting
    started = time.perf_counter()
    out: list[str] = []
    for i in range(0, len(text), 5):
        out += seg.feed(text[i : i + 5])
    out += seg.flush()
    elapsed = time.perf_counter() - started
    # The behaviour that keeps it linear: pysbd reads each character only a bounded number of
    # times, and only the unfinished tail stays buffered.
    assert seen < 30 * len(text)
    assert out == run(text)
    # A generous wall-clock bound for a noisy shared machine; the figure to watch is ~1 s.
    assert elapsed < 10


def test_max_chars_must_be_positive() -> None:
    with pytest.raises(ValueError, match="max_chars"):
        Segmenter(max_chars=0)


# -- ramp: chunk n+1 may be at most chunk_growth times chunk n ---------------------------------

PARAGRAPH = (
    "The morning train was late again, so the platform filled with people who checked their "
    "phones and sighed. A man in a grey coat read the same page of his newspaper three times. "
    "When the train finally arrived, everyone pushed forward at once, and the doors opened with "
    "a tired hiss. Nobody said a word."
)


def test_ramp_grows_chunks_until_whole_sentences() -> None:
    chunks = run(PARAGRAPH, first_chunk_chars=20, chunk_growth=2.0)
    assert " ".join(chunks) == PARAGRAPH
    limits = [20, 40, 80, 160]
    for chunk, limit in zip(chunks, limits, strict=False):
        assert len(chunk) <= limit, (chunk, limit)
    assert len(chunks[0]) <= 20
    # Once the limit passes max_chars, sentences go whole again.
    assert chunks[-1] == "Nobody said a word."
    assert "A man in a grey coat read the same page of his newspaper three times." not in chunks[:2]


def test_no_growth_means_only_the_first_chunk_is_short() -> None:
    chunks = run(PARAGRAPH, first_chunk_chars=20)
    assert len(chunks[0]) <= 20
    assert chunks[2] == "A man in a grey coat read the same page of his newspaper three times."


def test_ramp_applies_to_unfinished_text_as_tokens_arrive() -> None:
    seg = Segmenter(first_chunk_chars=12, chunk_growth=2.0)
    out: list[str] = []
    for word in PARAGRAPH.split(" ")[:12]:
        out += seg.feed(word + " ")
    # Before any sentence ends, a first chunk (<= 12) and a ramp chunk (<= 24) went out.
    assert len(out) >= 2
    assert len(out[0]) <= 12 and len(out[1]) <= 24
    assert seg.buffered_chars <= 48


def test_clear_restarts_the_ramp() -> None:
    seg = Segmenter(first_chunk_chars=20, chunk_growth=2.0)
    seg.feed(PARAGRAPH)
    seg.clear()
    again = seg.feed(PARAGRAPH) + seg.flush()
    assert len(again[0]) <= 20 and len(again[1]) <= 40
