"""engine/phonemize.py: espeak-ng under one lock, Piper's phoneme id convention."""

from __future__ import annotations

import threading
import unicodedata
from concurrent.futures import ThreadPoolExecutor

from litestream.engine.phonemize import (
    ESPEAK_LOCK,
    phonemes_to_ids,
    phonemize,
    phonemize_each,
    split_ids,
)

SENTENCES = [
    "Hello world.",
    "The quick brown fox jumps over the lazy dog.",
    "Is it 5 o'clock yet? No, it's half past four!",
    "Streaming speech should never stutter; the next chunk is due before the buffer runs dry.",
]


def test_phonemize_keeps_stress_and_punctuation() -> None:
    phonemes = phonemize("Hello, world.", "en-us")
    assert phonemes == "həlˈoʊ, wˈɜːld."


def test_phonemize_empty_text() -> None:
    assert phonemize("   \n ", "en-us") == ""


def test_ids_use_nfd_and_skip_unknown() -> None:
    id_map = {"_": [0], "^": [1], "$": [2], "e": [5], "\u0301": [6]}
    # "é" precomposed decomposes to e + combining acute; "?" is unknown and skipped.
    assert phonemes_to_ids(unicodedata.normalize("NFC", "é?"), id_map) == [1, 0, 5, 0, 6, 0, 2]


def test_concurrent_phonemize_matches_sequential() -> None:
    work = SENTENCES * 10
    expected = [phonemize(text, "en-us") for text in work]
    with ThreadPoolExecutor(max_workers=4) as pool:
        got = list(pool.map(lambda text: phonemize(text, "en-us"), work))
    assert got == expected


def test_phonemize_waits_for_the_lock() -> None:
    done = threading.Event()

    def speak() -> None:
        phonemize("Hi.", "en-us")
        done.set()

    with ESPEAK_LOCK:
        thread = threading.Thread(target=speak)
        thread.start()
        assert not done.wait(0.2)  # blocked while another caller holds espeak
    thread.join(5)
    assert done.is_set()


ID_MAP = {"_": [0], "^": [1], "$": [2], " ": [3], "a": [4], "b": [5]}


def _ids(phonemes: str) -> list[int]:
    return phonemes_to_ids(phonemes, ID_MAP)


def _inner(ids: list[int]) -> list[int]:
    return ids[2:-1]  # without "^ _" and "$"


def test_split_ids_leaves_a_sentence_under_the_bound_alone() -> None:
    ids = _ids("ab ba")
    assert split_ids(ids, ID_MAP, len(ids)) == [ids]


def test_split_ids_cuts_at_word_gaps_and_keeps_every_id() -> None:
    ids = _ids(" ".join(["abab"] * 12))  # 12 words of 4 phonemes: 2 + 2 * 59 + 1 ids
    pieces = split_ids(ids, ID_MAP, 40)
    assert len(pieces) > 1
    for piece in pieces:
        assert len(piece) <= 40
        assert piece[:2] == [1, 0] and piece[-1] == 2  # each one a sentence of its own
    for piece in pieces[:-1]:
        assert _inner(piece)[-2:] == [3, 0]  # ends at a word gap, never inside a word
    assert [i for p in pieces for i in _inner(p)] == _inner(ids)


def test_split_ids_cuts_a_word_longer_than_the_bound_between_phonemes() -> None:
    ids = _ids("ab" * 40)  # one word, 80 phonemes
    pieces = split_ids(ids, ID_MAP, 21)
    for piece in pieces:
        assert len(piece) <= 21
        assert len(_inner(piece)) % 2 == 0  # whole (phoneme, pad) pairs
        assert _inner(piece)[1::2] == [0] * (len(_inner(piece)) // 2)
    assert [i for p in pieces for i in _inner(p)] == _inner(ids)


def test_a_decimal_number_keeps_the_rest_of_the_sentence() -> None:
    """phonemizer 3.4 cut the line at the first "." it saw, the decimal point, and lost the
    rest ("He paid one."); phonemize cuts at the punctuation marks themselves."""
    assert phonemize("He paid 1.5 dollars today.", "en-us") == (
        "hiː pˈeɪd wˈʌn pɔɪnt fˈaɪv dˈɑːlɚz tədˈeɪ.")
    assert phonemize("It costs 19,99 euro, ok?", "en-us").endswith("jˈʊɹɹoʊ, ˌoʊkˈeɪ?")
    # Marks elsewhere are kept where they stand, as before.
    assert phonemize("Wait... what?! No.", "en-us") == "wˈeɪt... wˌʌt?! nˈoʊ."


def test_marks_espeak_reads_better_are_left_to_it() -> None:
    """A "." or ":" inside a word, or a "." before a word without a capital, was cut out as
    punctuation, a sentence's pause where none is: "example.com" was read "example. com" (no
    "dot"), "3:45" "three: forty-five", "U.S.A. office" "U. S. A. office" with a full stop
    after each letter. espeak-ng reads them whole, as Piper gives them to it."""
    assert phonemize("Mail joe.bloggs@example.com now.", "en-us") == (
        "mˈeɪl dʒˈoʊ dˈɑːt blˈɑːɡz æt ɛɡzˈæmpəl dˈɑːt kˈɑːm nˈaʊ.")
    assert phonemize("At 3:45 pm, in the U.S.A. office.", "en-us") == (
        "æt θɹˈiː fˈɔːɹɾi fˈaɪv pˌiːˈɛm, ɪnðə jˌuːˌɛsˈeɪ ˈɑːfɪs.")
    assert phonemize("Take a tool, e.g. a hammer.", "en-us") == (
        "tˈeɪk ɐ tˈuːl, fˌɔːɹɛɡzˈæmpəl ɐ hˈæmɚ.")
    # Before a capital a "." ends a clause, as espeak-ng's own rule has it (a title before a
    # name is read as its word, text/reading.py); a sentence end with its space missing is
    # still one; decimals are as before.
    assert phonemize("Gen. Smith left.", "en-us").startswith("dʒˈɛn. smˈɪθ")
    assert phonemize("Dr. Smith left.", "en-us") == "dˈɑːktɚ smˈɪθ lˈɛft."
    assert phonemize("It ended.Then we left.", "en-us") == "ɪɾ ˈɛndᵻd.ðˈɛn wiː lˈɛft."
    assert phonemize("Pi is 3.14.", "en-us") == "pˈaɪ ɪz θɹˈiː pɔɪnt wˈʌn fˈɔːɹ."


def test_an_english_voice_says_amounts_and_ranges_as_a_speaker_does() -> None:
    assert phonemize("It costs $5.99 today.", "en-us") == phonemize(
        "It costs 5 dollars and 99 cents today.", "en-us")
    assert phonemize("It takes 5-10 minutes.", "en-us") == phonemize(
        "It takes 5 to 10 minutes.", "en-us")
    assert "dˈɑːlɚz" in phonemize_each(["$5.99"], "en-us")[0]  # a word alone reads the same


def test_an_english_voice_does_not_name_japanese_characters() -> None:
    # espeak-ng alone: "I met Chinese letter Chinese letter Japanese letter Japanese letter".
    said = phonemize("I met 田中さん in 東京 (ｶﾀｶﾅ) and 서울.", "en-us")
    assert said == phonemize("I met in and.", "en-us")
    assert phonemize_each(["田中さん", "(東京)", "ＡＢＣ"], "en-us") == [
        "", "", phonemize("ABC", "en-us")]


def test_an_english_voice_does_not_name_letters_of_other_scripts() -> None:
    # espeak-ng alone: "P R I V E T", "Arabic meem Arabic ra ...", "deltat".
    said = phonemize("Say привет or مرحبا, with Δt.", "en-us")
    assert said == phonemize("Say or, with Δ t.", "en-us")
    assert "dˈɛltə tˈiː" in said
    assert phonemize_each(["привет", "(مرحبا),", "α"], "en-us") == [
        "", phonemize(",", "en-us"), phonemize("alpha", "en-us")]


def test_another_language_is_given_the_text_as_written() -> None:
    # The rules are English; a German voice reads "$5" by its own language's rules.
    assert "dˈɑːlɚz" not in phonemize("Es kostet $5.", "de")
    assert phonemize("Es kostet $5.", "de") != phonemize("Es kostet 5 dollars.", "de")
