"""Languages as the text side sees them: one key per language, the segmenter's rules for a
voice's language, and the text each language is calibrated on. Pure."""

from __future__ import annotations

from collections.abc import Mapping

from pysbd.languages import LANGUAGE_CODES

# What every voice is measured on at start-up, by language: the cost model prices chunks per
# character, and a character of Japanese is several of English in speech.
CALIBRATION_TEXTS: Mapping[str, str] = {
    "en": ("The weather today is mild, with a light breeze from the west. "
           "Later this evening, clouds will gather and rain may fall."),
    "ja": "今日は穏やかな天気です。夕方には雲が広がり、雨が降るかもしれません。",
}

# How much speech one character of a language carries, in characters of English (1 where not
# listed). The segmenter's limits (--max-chunk-chars, --first-chunk-chars) are counted in
# characters of English, so they mean the same length of speech in every language: a Japanese
# character is about three of English (jf_alpha says 151 ms of audio a character of an LLM's
# reply, joe 50 ms), so a Japanese first sentence is cut at a clause past 27 characters (about
# 4 s of speech, as 80 English characters are), not 80 (12 s).
SPEECH_PER_CHAR: Mapping[str, int] = {"ja": 3}

# pysbd's languages; a voice in any other language is segmented with the English rules, which
# split at . ! ? as most scripts do.
_SEGMENTER_LANGUAGES = frozenset(LANGUAGE_CODES)


def base_language(language: str) -> str:
    """"en_US" -> "en", "pt-BR" -> "pt", "ja" -> "ja": the one key per language (the
    segmenter's punctuation tables, calibration texts and cost groups are keyed by it)."""
    return language.replace("-", "_").split("_", 1)[0].lower()


def segmenter_language(language: str) -> str:
    """The segmenter's rules for a voice's language (pysbd's code; "en" where it has none)."""
    base = base_language(language)
    return base if base in _SEGMENTER_LANGUAGES else "en"


def speech_per_char(language: str) -> int:
    """Characters of English one character of ``language`` is worth in speech (SPEECH_PER_CHAR)."""
    return SPEECH_PER_CHAR.get(base_language(language), 1)


def calibration_text(language: str) -> str:
    return CALIBRATION_TEXTS.get(base_language(language), CALIBRATION_TEXTS["en"])


def _is_kana(ch: str) -> bool:
    return "\u3040" <= ch <= "\u30ff" or "\uff66" <= ch <= "\uff9f"  # with half-width kana


def _is_han(ch: str) -> bool:
    return "\u4e00" <= ch <= "\u9fff" or "\u3400" <= ch <= "\u4dbf"


def script_language(text: str) -> str | None:
    """The language a text's script says, where it says one: "ja" for text mostly in Japanese
    script (kana and kanji; any kana at all marks Han characters as Japanese, not Chinese),
    "en" for text mostly in Latin letters, None for anything else (digits and marks only,
    Chinese without kana, other scripts). Counts letters only, so an English word or two in a
    Japanese sentence ("Pythonで書く") keeps it Japanese as a whole. Pure, one pass."""
    kana = han = latin = 0
    for ch in text:
        if ch.isascii():
            latin += ch.isalpha()
        elif _is_kana(ch):
            kana += 1
        elif _is_han(ch):
            han += 1
        elif ch.isalpha() and ch < "\u0250":  # Latin letters with accents ("café")
            latin += 1
    japanese = kana + han if kana else 0
    if japanese and japanese * 3 >= latin:  # a kana is worth about three Latin letters of speech
        return "ja"
    if latin and latin >= han:
        return "en"
    return None
