"""Word timestamps from the real voices: the bundled Piper voice's own phoneme durations (exact),
Kokoro's and the synthetic voice's estimates. The mapping of words to ids on hard texts is
tested without a model in tests/unit/engine/test_words.py."""

from __future__ import annotations

import pytest

from litestream.engine import PiperVoice
from litestream.engine.base import Latent, Voice, Word
from litestream.engine.kokoro.voice import KokoroModel
from litestream.engine.piper import voice as piper
from litestream.engine.synthetic import SyntheticVoice
from litestream.engine.words import split_words, timed

TEXTS = [
    "A blue crane is a tall wading bird, and a fresh start will work such wonders.",
    "Dr. Smith paid $1,234 on 3/4/2021 at 10:30 a.m. for the U.S.A. trip!!!",
    "Visit https://example.com/docs or call 555-0199 -- really?! Yes.",
]
SPEEDS = (0.5, 1.0, 1.37, 2.0)


def encoded(voice: Voice, text: str, speed: float = 1.0) -> tuple[Latent, tuple[Word, ...]]:
    phonemes = voice.phonemes(text)
    assert phonemes.ids == voice.phoneme_ids(text)  # the model runs on the chunk's own ids
    latent = voice.encode(phonemes.ids, speed)
    return latent, timed(phonemes, latent)


def check_inside(text: str, latent: Latent, words: tuple[Word, ...]) -> None:
    """Every word of the text, in order, inside the chunk's exact length, none overlapping."""
    assert [w.text for w in words] == [text[a:b] for a, b in split_words(text)]
    end = 0
    for word in words:
        assert word.text == text[word.char_start:word.char_end]
        assert end <= word.start_sample < word.end_sample <= latent.samples, word
        end = word.end_sample


@pytest.mark.parametrize("speed", SPEEDS)
def test_durations_sum_to_the_chunks_frames_at_every_speed(voice: PiperVoice,
                                                           speed: float) -> None:
    assert voice.description.timestamps == "exact"
    for text in TEXTS:
        latent, words = encoded(voice, text, speed)
        assert latent.durations is not None
        assert len(latent.durations) == len(voice.phoneme_ids(text))
        assert int(latent.durations.sum()) == latent.frames
        assert (latent.durations >= 0).all()
        check_inside(text, latent, words)


def test_word_times_follow_the_speed(voice: PiperVoice) -> None:
    text = TEXTS[0]
    normal, slow_words = encoded(voice, text, 1.0)
    fast, fast_words = encoded(voice, text, 2.0)
    assert fast.frames < 0.7 * normal.frames
    # No word is longer at double speed (a frame is the unit: a short word may keep its two),
    # every start is earlier, and the words take much less time in all.
    for slow, quick in zip(slow_words, fast_words, strict=True):
        assert quick.end_sample - quick.start_sample <= slow.end_sample - slow.start_sample
        assert quick.start_sample <= slow.start_sample
    assert (sum(w.end_sample - w.start_sample for w in fast_words)
            < 0.7 * sum(w.end_sample - w.start_sample for w in slow_words))


def test_expansions_take_their_time(voice: PiperVoice) -> None:
    """A number espeak-ng says as many words is one word, as long as what is said."""
    latent, words = encoded(voice, "He paid $1,234 and left.")
    by_text = {w.text: w.end_sample - w.start_sample for w in words}
    assert by_text["$1,234"] > 3 * by_text["paid"]
    assert by_text["$1,234"] > 0.3 * latent.samples


def test_a_front_pass_in_pieces_keeps_every_word_inside(
        voice: PiperVoice, monkeypatch: pytest.MonkeyPatch) -> None:
    text = TEXTS[0] + " " + TEXTS[1]
    ids = voice.phoneme_ids(text)
    monkeypatch.setattr(piper, "MAX_FRONT_IDS", 64)  # this sentence runs as several pieces
    assert len(ids) > 4 * 64
    for speed in (1.0, 1.6):
        latent, words = encoded(voice, text, speed)
        # Each piece's own ^ _ and $ frames (a pause at the cut) fall between two words.
        assert latent.durations is not None and int(latent.durations.sum()) == latent.frames
        check_inside(text, latent, words)


def test_synthetic_voice_estimates_words() -> None:
    synthetic = SyntheticVoice(sleep=lambda s: None)
    assert synthetic.description.timestamps == "estimated"
    latent, words = encoded(synthetic, TEXTS[1])
    assert latent.durations is None
    check_inside(TEXTS[1], latent, words)


def test_kokoro_estimates_words_of_japanese(kokoro_model: KokoroModel) -> None:
    alpha = kokoro_model.voice("jf_alpha")
    assert alpha.description.timestamps == "estimated"
    text = "今日は100円の良い天気です。"
    latent, words = encoded(alpha, text)
    assert [w.text for w in words] == ["今日", "は", "100", "円", "の", "良い", "天気", "です"]
    end = 0
    for word in words:
        assert word.text == text[word.char_start:word.char_end] and word.text
        assert end <= word.start_sample <= word.end_sample <= latent.samples
        end = word.end_sample
    assert latent.words == ()  # the worker attaches them (synthesis/workers.py)


def test_a_long_expansion_runs_in_pieces_and_keeps_its_words(voice: PiperVoice) -> None:
    """Symbols espeak-ng spells out make a sentence too long for one front pass (no bound
    lowered): it runs in pieces, and every word still gets its own time."""
    # Symbols espeak-ng names aloud ("section sign pilcrow"); emoji are no longer spoken.
    text = "Votes: " + " ".join(["§¶"] * 45) + " and 1,234,567 more!"
    ids = voice.phoneme_ids(text)
    assert len(ids) > piper.MAX_FRONT_IDS
    latent, words = encoded(voice, text)
    assert latent.durations is not None and int(latent.durations.sum()) == latent.frames
    check_inside(text, latent, words)
    assert len(words) == 49
    number = words[-2]
    assert number.text == "1,234,567"
    assert number.end_sample - number.start_sample > 4 * (words[-3].end_sample
                                                          - words[-3].start_sample)


def test_a_kokoro_fingerprint_follows_how_text_is_read(kokoro_model: KokoroModel,
                                                      monkeypatch: pytest.MonkeyPatch) -> None:
    """A replica whose Japanese reader reads by another rule (another release) makes other
    audio for the same text: the shared sentence cache keeps the two apart."""
    from litestream.engine.kokoro import japanese

    before = kokoro_model.voice("jf_alpha").fingerprint
    monkeypatch.setattr(japanese, "READING", japanese.READING + "-next")
    assert kokoro_model.voice("jf_alpha").fingerprint != before
