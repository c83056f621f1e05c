"""Japanese text -> Kokoro phonemes.

Kokoro-82M was trained on phonemes from misaki's ``ja`` module: a kana reading of each word,
romanized into an IPA-like alphabet (``ɕ ʨ ʥ ʦ ʣ ɲ ɾ ɸ ç β ɨ ɯ``, ``ʲ`` for palatalized
consonants, ``ː`` for a long vowel, ``ʔ`` for the geminate ``ッ``, ``ɴ/m/n/ŋ/ɲ`` for ``ン`` by
what follows), words separated by spaces, Japanese punctuation as ASCII. This module produces
the same alphabet from pyopenjtalk-plus (OpenJTalk with its dictionary inside the wheel), which
gives each word's reading in katakana with numbers already spelled out (``100円`` ->
``ヒャクエン``) and long vowels as ``ー`` (``東京`` -> ``トーキョー``).

pyopenjtalk keeps global state in its C library (the dictionary and the analyser), so every
call holds ``OPENJTALK_LOCK``, as espeak-ng calls hold theirs.
"""

from __future__ import annotations

import logging
import re
import threading
import unicodedata
from collections.abc import Iterator, Mapping, Sequence
from typing import Any

logger = logging.getLogger("litestream.engine.japanese")

OPENJTALK_LOCK = threading.Lock()

# How Japanese text is read into phonemes: a part of each Kokoro voice's fingerprint, so that
# the shared sentence cache, which outlives a deploy, never serves audio read by an older rule.
# Change it whenever the reading changes.
# 2: symbols OpenJTalk reads are spoken ("AとB", "（AI）", "&", "¥"), ℃ and °C read ド, a currency
#    sign before an amount said after it (was: every symbol node dropped).
READING = "2"

# --- one mora -> phonemes -----------------------------------------------------------------

_VOWELS = "aiɯeo"
# Each katakana row: its five morae (ア イ ウ エ オ columns; "" where the row has none) and
# their phonemes. The イ column carries the palatalized onset that ャ ュ ョ combine with.
_ROWS: tuple[tuple[str, tuple[str, ...]], ...] = (
    ("アイウエオ", ("a", "i", "ɯ", "e", "o")),
    ("カキクケコ", ("ka", "kʲi", "kɯ", "ke", "ko")),
    ("ガギグゲゴ", ("ɡa", "ɡʲi", "ɡɯ", "ɡe", "ɡo")),
    ("サシスセソ", ("sa", "ɕi", "sɨ", "se", "so")),
    ("ザジズゼゾ", ("ʣa", "ʥi", "zɨ", "ʣe", "ʣo")),
    ("タチツテト", ("ta", "ʨi", "ʦɨ", "te", "to")),
    ("ダヂヅデド", ("da", "ʥi", "zɨ", "de", "do")),
    ("ナニヌネノ", ("na", "ɲi", "nɯ", "ne", "no")),
    ("ハヒフヘホ", ("ha", "çi", "ɸɯ", "he", "ho")),
    ("バビブベボ", ("ba", "bʲi", "bɯ", "be", "bo")),
    ("パピプペポ", ("pa", "pʲi", "pɯ", "pe", "po")),
    ("マミムメモ", ("ma", "mʲi", "mɯ", "me", "mo")),
    ("ヤ ユ ヨ", ("ja", "", "jɯ", "", "jo")),
    ("ラリルレロ", ("ɾa", "ɾʲi", "ɾɯ", "ɾe", "ɾo")),
    ("ワヰ ヱヲ", ("βa", "i", "", "e", "o")),
)
_SMALL = {"ァ": "a", "ィ": "i", "ゥ": "ɯ", "ェ": "e", "ォ": "o", "ャ": "ja", "ュ": "jɯ",
          "ョ": "jo", "ヮ": "βa"}
_MORA: dict[str, str] = {
    kana: ipa
    for row, sounds in _ROWS
    for kana, ipa in zip(row, sounds, strict=True)
    if kana != " "
}
_MORA.update(_SMALL)
_MORA.update({"ヴ": "vɯ", "ヵ": "ka", "ヶ": "ke", "ヷ": "va", "ヸ": "vʲi", "ヹ": "ve",
              "ヺ": "vo"})

# Two-kana morae. イ column + ャ ュ ョ ェ: the palatalized onset, and ュ sounds [ɨ] after it.
_DIGRAPHS: dict[str, str] = {}
for _kana in "キギシジチヂニヒビピミリ":
    _onset = _MORA[_kana][:-1]  # "kʲi" -> "kʲ", "ɕi" -> "ɕ"
    for _small, _vowel in (("ャ", "a"), ("ュ", "ɨ"), ("ョ", "o"), ("ェ", "e")):
        _DIGRAPHS[_kana + _small] = _onset + _vowel
del _DIGRAPHS["ギェ"], _DIGRAPHS["ヂェ"], _DIGRAPHS["ビェ"], _DIGRAPHS["ピェ"]
del _DIGRAPHS["ミェ"], _DIGRAPHS["リェ"]
# Loanword sounds written with a small vowel (misaki's table).
_DIGRAPHS.update({
    "イェ": "je", "ウィ": "βi", "ウェ": "βe", "ウォ": "βo",
    "クァ": "kᵝa", "クィ": "kᵝi", "クェ": "kᵝe", "クォ": "kᵝo",
    "グァ": "ɡᵝa", "グィ": "ɡᵝi", "グェ": "ɡᵝe", "グォ": "ɡᵝo",
    "ツァ": "ʦa", "ツィ": "ʦʲi", "ツェ": "ʦe", "ツォ": "ʦo",
    "ティ": "tʲi", "テュ": "tʲɨ", "ディ": "dʲi", "デュ": "dʲɨ", "トゥ": "tɯ", "ドゥ": "dɯ",
    "ファ": "ɸa", "フィ": "ɸʲi", "フェ": "ɸe", "フォ": "ɸo", "フュ": "ɸʲɨ", "フョ": "ɸʲo",
    "ヴァ": "va", "ヴィ": "vʲi", "ヴェ": "ve", "ヴォ": "vo", "ヴュ": "bʲɨ", "ヴョ": "bʲo",
})

LONG = "ː"  # ー: the vowel before it, held
GEMINATE = "ʔ"  # ッ: a held closure before the next consonant

# Japanese punctuation -> the ASCII marks Kokoro learned pauses and intonation from.
PUNCTUATION: Mapping[str, str] = {
    "。": ".", "、": ",", "，": ",", "．": ".", "？": "?", "！": "!", "：": ":", "；": ";",
    "「": "“", "」": "”", "『": "“", "』": "”", "（": "(", "）": ")", "《": "(", "》": ")",
    "【": "(", "】": ")", "〜": "—", "～": "—", "—": "—", "…": "…", "・": " ",
    ".": ".", ",": ",", "?": "?", "!": "!", ":": ":", ";": ";", "(": "(", ")": ")",
    "\"": "\"",
}
# Marks that attach to the word before them (no space before, a space after), and those that
# open (a space before, none after).
_CLOSING = frozenset(".,?!:;)”\"…")
_OPENING = frozenset("(“")


def _n_before(next_phonemes: str) -> str:
    """ン assimilates to the sound after it: [m] before lips, [ŋ] before velars, [ɲ] before
    palatals, [n] before alveolars, and uvular [ɴ] at a word's end or before a vowel."""
    if not next_phonemes:
        return "ɴ"
    first = next_phonemes[0]
    if first in "mpb":
        return "m"
    if first in "kɡ":
        return "ŋ"
    if first in "ɲʨʥ":
        return "ɲ"
    if first in "ntdɾzʦʣ":
        return "n"
    return "ɴ"


def _morae(kana: str) -> Iterator[str]:
    """Split a katakana reading into morae: a kana plus the small kana that bends it."""
    i = 0
    while i < len(kana):
        if i + 1 < len(kana) and kana[i + 1] in _SMALL and kana[i] not in "ッン":
            yield kana[i : i + 2]
            i += 2
        else:
            yield kana[i]
            i += 1


def _mora_phonemes(mora: str) -> str:
    found = _DIGRAPHS.get(mora) or _MORA.get(mora)
    if found is not None:
        return found
    if len(mora) == 2 and mora[0] in _MORA and mora[1] in _SMALL:
        # A rare pairing not in the table (スィ, ズィ): the onset of the first, the small vowel.
        head = _MORA[mora[0]]
        onset = head[:-1] if head[-1] in _VOWELS + "ɨ" else head
        return onset + _SMALL[mora[1]]
    return "".join(_MORA.get(ch, "") for ch in mora)


def kana_to_phonemes(kana: str) -> str:
    """One word's katakana (or hiragana) reading -> Kokoro phonemes."""
    morae = [m for m in _morae(_to_katakana(kana)) if m]
    sounds = [_mora_phonemes(m) if m not in "ッンー" else m for m in morae]
    out: list[str] = []
    for i, sound in enumerate(sounds):
        if sound == "ー":
            out.append(LONG)
        elif sound == "ッ":
            out.append(GEMINATE)
        elif sound == "ン":
            following = next((s for s in sounds[i + 1 :] if s not in "ー"), "")
            out.append(_n_before("" if following in ("ッ", "ン") else following))
        else:
            out.append(sound)
    return "".join(out)


def _to_katakana(text: str) -> str:
    # Hiragana and katakana sit 0x60 apart in Unicode (ぁ U+3041 .. ゖ U+3096).
    return "".join(chr(ord(ch) + 0x60) if "ぁ" <= ch <= "ゖ" else ch for ch in text)


# --- text -> words -> phonemes ------------------------------------------------------------

# A currency sign before an amount, said after it as a Japanese speaker does ("¥1,000" is
# 千円, not OpenJTalk's "エン セン"; "$5" is 5ドル where OpenJTalk reads no "$" at all).
_CURRENCY = {"¥": "円", "$": "ドル", "€": "ユーロ", "£": "ポンド"}
_AMOUNT = re.compile(r"([¥$€£])\s?(\d[\d,]*(?:\.\d+)?)")


def _nfkc(text: str) -> str:
    # NFKC turns ℃ into "°C", which OpenJTalk reads as a mark and the letter C ("20℃" would
    # be "nijū" alone); ℃ itself it reads ド.
    return unicodedata.normalize("NFKC", text).replace("°C", "℃")


def normalize(text: str) -> str:
    """NFKC: full-width ASCII, digits and ！？ to half-width, half-width katakana to
    full-width; 。 and 、 stay as they are (both are mapped below). ℃ stays (and "°C" becomes
    it), and a currency sign before an amount goes after it as its word."""
    return _AMOUNT.sub(lambda m: m.group(2) + _CURRENCY[m.group(1)], _nfkc(text))


def _frontend(text: str) -> list[dict[str, Any]]:
    import pyopenjtalk

    with OPENJTALK_LOCK:
        nodes = pyopenjtalk.run_frontend(text)
    return [dict(node) for node in nodes]


def _reading(node: Mapping[str, Any]) -> str:
    # pyopenjtalk-plus marks the accent nucleus with ’ in some readings; Kokoro's misaki
    # phonemes carry no pitch accent.
    return str(node.get("pron") or node.get("read") or "").replace("’", "").replace("'", "")


def phonemize(text: str) -> str:
    """Kokoro phonemes for Japanese text: words separated by spaces, punctuation as ASCII."""
    return phonemize_words(text)[0]


def phonemize_words(text: str) -> tuple[str, list[tuple[str, str]]]:
    """``phonemize(text)``, and each spoken word's (surface as in the NFKC text, phonemes
    alone), in order: what word timestamps align (engine/words.py)."""
    text = normalize(text).strip()
    if not text:
        return "", []
    pieces: list[str] = []  # words and marks, in order
    spoken: list[tuple[str, str]] = []
    for node in _frontend(text):
        # OpenJTalk hands back ASCII as full-width ("ＧｉｔＨｕｂ"): the surface as in the
        # NFKC text, so that word_spans finds it there.
        surface = _nfkc(str(node.get("string", "")))
        # By its reading, not its part of speech or look: what OpenJTalk reads is spoken, as
        # OpenJTalk speaks it (the "." of "1.5" is a noun read テン; "A" alone or in "(AI)",
        # "&" and "¥" are symbols read エイ, アンド, エン); a mark without a reading is
        # punctuation.
        word = kana_to_phonemes(_reading(node))
        if word:
            pieces.append(word)
            spoken.append((surface, word))
            continue
        marks = "".join(PUNCTUATION.get(ch, "") for ch in surface)
        if marks.strip():
            pieces.append(marks.strip())
    return _join(pieces), spoken


def _join(pieces: Sequence[str]) -> str:
    out = ""
    for piece in pieces:
        if not out:
            out = piece
        elif piece[0] in _CLOSING or out[-1] in _OPENING:
            out += piece
        else:
            out += " " + piece
    # A geminate closes onto the next word's consonant ("ʔ te" would be a pause, not a hold).
    return out.replace(f"{GEMINATE} ", GEMINATE).replace(f" {GEMINATE}", GEMINATE)


def phoneme_ids(phonemes: str, vocab: Mapping[str, int],
                sources: list[int] | None = None) -> list[int]:
    """Kokoro token ids: one per phoneme character in the vocabulary; others dropped. With
    ``sources``, it is filled with the index in ``phonemes`` each id comes from."""
    ids = []
    for at, ch in enumerate(phonemes):
        token = vocab.get(ch)
        if token is None:
            logger.debug("phoneme %r (U+%04X) not in Kokoro's vocabulary, dropped", ch, ord(ch))
            continue
        ids.append(token)
        if sources is not None:
            sources.append(at)
    return ids


def word_spans(text: str, surfaces: Sequence[str]) -> list[tuple[int, int]]:
    """(char_start, char_end) in ``text`` of each word surface, found in order in its NFKC
    form. OpenJTalk rewrites numbers (``100`` is the word ``百``): a run of words not found
    takes the text between its found neighbours, all of it to the run's first word (the rest
    get empty spans there)."""
    starts: list[int] = []  # NFKC position -> index in text
    normalized = ""
    for index, char in enumerate(text):
        piece = _nfkc(char)
        normalized += piece
        starts.extend([index] * len(piece))
    starts.append(len(text))
    found: list[tuple[int, int] | None] = []
    cursor = 0
    for surface in surfaces:
        at = normalized.find(surface, cursor) if surface else -1
        if at < 0:
            found.append(None)
            continue
        found.append((at, at + len(surface)))
        cursor = at + len(surface)
    spans: list[tuple[int, int]] = []
    for index, place in enumerate(found):
        if place is not None:
            spans.append((starts[place[0]], starts[place[1] - 1] + 1))
            continue
        begin = spans[-1][1] if spans else 0
        if index > 0 and found[index - 1] is None:
            spans.append((begin, begin))  # the run's first word took the text
            continue
        following = next((p for p in found[index + 1:] if p is not None), None)
        stop = starts[following[0]] if following is not None else len(text)
        while stop > begin and not text[stop - 1].strip():
            stop -= 1
        spans.append((begin, stop))
    return spans
