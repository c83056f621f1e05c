"""engine/words.py: the words of a chunk's text, mapped to the phoneme ids that speak them, and
their times from per-id durations. espeak-ng (real, as the voice runs it) phonemizes; an id
per phoneme codepoint stands in for a voice's map."""

from __future__ import annotations

import unicodedata

import numpy as np
import pytest

from litestream.engine.base import Latent, Phonemes, WordSpan
from litestream.engine.phonemize import phonemes_to_ids, phonemize, phonemize_each
from litestream.engine.words import align, split_words, timed, word_spans

ESPEAK = "en-us"


class _AnyId(dict[str, list[int]]):
    """Every codepoint has an id (its code), as a voice whose map covers espeak's output."""

    def __missing__(self, key: str) -> list[int]:
        return [ord(key)]

    def get(self, key: str, default: object = None) -> list[int]:  # type: ignore[override]
        return self[key]


ID_MAP = _AnyId({"_": [0], "^": [1], "$": [2]})


def mapped(text: str) -> tuple[str, Phonemes]:
    """The chunk's phonemes (NFD) and its ids with each word's, as a Piper voice makes them."""
    sentence = phonemize(text, ESPEAK)
    sources: list[int] = []
    ids = phonemes_to_ids(sentence, ID_MAP, sources)
    spans = split_words(text)
    isolated = phonemize_each([text[a:b] for a, b in spans], ESPEAK)
    return unicodedata.normalize("NFD", sentence), Phonemes(
        ids, word_spans(text, spans, sentence, isolated, sources))


def spoken(sentence: str, phonemes: Phonemes, span: WordSpan) -> str:
    """The phonemes a word's ids speak (each phoneme id is followed by its pad)."""
    return "".join(chr(i) for i in phonemes.ids[span.first_id:span.end_id:2])


# (text, {word: phonemes its ids must contain}); stress marks left out of the expectations.
HARD_TEXTS = [
    ("Dr. Smith paid $1,234 on 3/4/2021 for No. 7.",
     {"Dr": "dɑːktɚ", "Smith": "smɪθ", "$1,234": "θaʊzənd", "3/4/2021": "slæʃ",
      "paid": "peɪd", "No": "nʌmbɚ", "7": "sɛvən"}),
    ("The U.S.A. and the U.K. met at 10:30 a.m. sharp!!!",
     {"U.S.A": "juː", "U.K": "keɪ", "10:30": "tɛn", "a.m": "ɛm", "sharp": "ʃɑːɹp"}),
    ("Visit https://example.com/path?x=1 or mail john@doe.org -- really?!",
     {"Visit": "vɪzɪt", "https://example.com/path?x=1": "ɛɡzæmpəl", "or": "ɔːɹ",
      "john@doe.org": "doʊ", "really": "ɹiəli"}),
    ("In the house of the rising sun, it's 42 degrees; isn't it?",
     {"In": "ɪn", "the": "ðə", "house": "haʊs", "of": "ʌv", "42": "fɔːɹɾi tuː",
      "isn't": "ɪzənt"}),
    ("Wait... what?! No—never... (maybe) \"yes\".",
     {"Wait": "weɪt", "what": "wʌt", "No": "noʊ", "never": "nɛvɚ", "maybe": "meɪbi",
      "yes": "jɛs"}),
    ("He paid $1,234.56 today, 1.5 times more.",
     {"$1,234.56": "dɑːlɚz fɪfti sɪks sɛnts", "today": "tədeɪ", "1.5": "wʌn pɔɪnt faɪv",
      "times": "taɪmz"}),
    ("Call 555-0199 at 7pm, or 1st & 2nd floor: 50% off §2.",
     {"Call": "kɔːl", "555-0199": "faɪv", "7pm": "sɛvən", "1st": "fɜːst", "&": "ænd",
      "50%": "pɚsɛnt"}),
]


def _plain(phonemes: str) -> str:
    return "".join(c for c in unicodedata.normalize("NFD", phonemes) if c not in "ˈˌ")


@pytest.mark.parametrize(("text", "expected"), HARD_TEXTS, ids=[t[:24] for t, _ in HARD_TEXTS])
def test_each_word_gets_the_ids_that_speak_it(text: str, expected: dict[str, str]) -> None:
    sentence, phonemes = mapped(text)
    words = phonemes.words
    assert [w.text for w in words] == [text[a:b] for a, b in split_words(text)]
    previous_end = 0
    for word in words:
        assert word.text == text[word.char_start:word.char_end]
        assert word.first_id >= previous_end  # in order, never overlapping
        assert word.end_id > word.first_id, f"{word.text!r} got no phonemes in {sentence!r}"
        previous_end = word.end_id
    by_text = {w.text: w for w in words}
    for word, sounds in expected.items():
        got = _plain(spoken(sentence, phonemes, by_text[word]))
        for part in sounds.split():
            assert part in got, f"{word!r} -> {got!r}, expected {sounds!r} in {sentence!r}"


def test_expansions_are_one_word_with_all_their_sounds() -> None:
    """"$1,234.56" is said as eleven words; they are all the one word of the text."""
    sentence, phonemes = mapped("He paid $1,234.56 today, right")
    paid, money, today = phonemes.words[1:4]
    assert (paid.text, money.text, today.text) == ("paid", "$1,234.56", "today")
    money_sounds = _plain(spoken(sentence, phonemes, money))
    for part in ("dɑːlɚ", "wʌn", "θaʊzənd", "tuː", "hʌndɹɪd", "θɜːɾi", "fɔːɹ", "sɪks"):
        assert part in money_sounds
    assert "peɪd" not in money_sounds and "tədeɪ" not in money_sounds


def test_words_the_phonemizer_drops_get_an_empty_span_in_place() -> None:
    """What the voice does not say has no time: a word whose sounds are not in the chunk's
    phonemes gets no ids, where the word before it ended; every other word gets its own."""
    for text in ("He paid 1.5 dollars today.", "Dr. Smith paid $1,234.56 on 3/4/2021.",
                 "Hello -- world."):
        sentence, phonemes = mapped(text)
        plain = _plain(sentence)
        previous_end = phonemes.words[0].first_id
        for word, alone in zip(phonemes.words,
                               phonemize_each([w.text for w in phonemes.words], ESPEAK),
                               strict=True):
            if _plain(alone).split()[0] in plain:
                assert word.end_id > word.first_id >= previous_end
            else:
                assert word.first_id == word.end_id == previous_end
            previous_end = word.end_id


def test_an_emoji_is_a_word_with_no_time() -> None:
    """An emoji is not spoken (text/reading.py): its word stays, with no ids, in place."""
    sentence, phonemes = mapped("Great job 🎉 today 😀!")
    assert "pɑːɹɾi" not in _plain(sentence)  # espeak-ng's "party popper"
    spans = {w.text: (w.first_id, w.end_id) for w in phonemes.words}
    assert list(spans) == ["Great", "job", "🎉", "today", "😀"]
    assert spans["🎉"][0] == spans["🎉"][1] == spans["job"][1]
    assert spans["today"][1] > spans["today"][0] >= spans["🎉"][1]
    assert spans["😀"][0] == spans["😀"][1]


def test_punctuation_only_tokens_are_no_words() -> None:
    text = "-- ... !!! (yes) «non» — ok. 50% & #1"
    assert [text[a:b] for a, b in split_words(text)] == ["yes", "non", "ok", "50%", "&", "#1"]
    assert split_words("   ") == []


def test_align_handles_joined_function_words() -> None:
    # espeak joins "of the" into one phoneme word: each text word still gets its own part.
    ranges = align("ʌvðə hˈaʊs", ["ʌv", "ðə", "hˈaʊs"])
    assert ranges == [(0, 2), (2, 4), (5, 10)]
    assert align("hˈaʊs", ["", "hˈaʊs"]) == [None, (0, 5)]


def _latent(frames: int, durations: list[int] | None) -> Latent:
    return Latent(frames=frames, samples_per_frame=256, speed=1.0,
                  durations=None if durations is None else np.array(durations))


def test_times_come_from_the_durations_and_stay_inside_the_chunk() -> None:
    # ids: ^ _ a _ b _ space _ c _ $ ; words "ab" (ids 2..6) and "c" (ids 8..10)
    phonemes = Phonemes([1, 0, 3, 0, 4, 0, 5, 0, 6, 0, 2], (
        WordSpan("ab", 0, 2, 2, 6), WordSpan("c", 3, 4, 8, 10)))
    durations = [3, 1, 4, 1, 5, 1, 6, 2, 7, 1, 9]
    first, second = timed(phonemes, _latent(sum(durations), durations))
    assert (first.start_sample, first.end_sample) == (4 * 256, 15 * 256)
    assert (second.start_sample, second.end_sample) == (23 * 256, 31 * 256)
    assert second.end_sample <= sum(durations) * 256


def test_without_durations_times_are_spread_over_the_ids() -> None:
    phonemes = Phonemes([1, 0, 3, 0, 2], (WordSpan("a", 0, 1, 2, 4),))
    (word,) = timed(phonemes, _latent(10, None))
    assert (word.start_sample, word.end_sample) == (4 * 256, 8 * 256)
    assert timed(Phonemes([1, 0, 2]), _latent(3, None)) == ()
