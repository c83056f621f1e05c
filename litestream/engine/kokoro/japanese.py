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

import functools
import logging
import re
import threading
import unicodedata
from collections.abc import Iterator, Mapping, Sequence
from typing import Any

from litestream.text.reading_ja import Said, apply, read_japanese

logger = logging.getLogger("litestream.engine.japanese")

OPENJTALK_LOCK = threading.Lock()

# How Japanese text is read into phonemes: a part of each Kokoro voice's fingerprint, so that
# the shared sentence cache, which outlives a deploy, never serves audio read by an older rule.
# Change it whenever the reading changes.
# 2: symbols OpenJTalk reads are spoken ("AとB", "（AI）", "&", "¥"), ℃ and °C read ド, a currency
#    sign before an amount said after it (was: every symbol node dropped).
# 3: English words OpenJTalk spells letter by letter read as katakana (e2k); times, dates,
#    fractions, ranges, minus signs and dotted version numbers read as said
#    (text/reading_ja.py).
# 4: the same speech; a number's words are one word, found where its digits are ("第1章と第一章":
#    the word 一 of "1" took the 一 of 第一章, and every word after it was misplaced), and a
#    cached sentence carries its words.
# 5: two times joined by a dash ("10:00-18:00") and a wave dash before 午前/午後 read から; a
#    dot inside a name of Latin letters ("example.com") ドット (text/reading_ja.py).
READING = "5"

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

def _nfkc(text: str) -> str:
    # NFKC turns ℃ into "°C", which OpenJTalk reads as a mark and the letter C ("20℃" would
    # be "nijū" alone); ℃ itself it reads ド.
    return unicodedata.normalize("NFKC", text).replace("°C", "℃")


def normalize(text: str) -> str:
    """The text OpenJTalk is given: NFKC (full-width ASCII, digits and ！？ to half-width,
    half-width katakana to full-width; 。 and 、 stay as they are, both are mapped below; ℃
    stays, and "°C" becomes it), then read as a speaker reads it (text/reading_ja.py: amounts,
    dates, times, ranges, minus signs)."""
    text = _nfkc(text)
    return apply(text, read_japanese(text))


def _said(text: str) -> tuple[str, list[tuple[int, int]]]:
    """``normalize(text)``, and for each of its characters the [start, end) of ``text`` it
    stands for: its own character, or all of what a reading rule replaced."""
    normalized = ""
    starts: list[int] = []  # NFKC position -> index in text
    for index, char in enumerate(text):
        piece = _nfkc(char)
        normalized += piece
        starts.extend([index] * len(piece))
    said = ""
    owners: list[tuple[int, int]] = []
    at = 0
    for edit in [*read_japanese(normalized), Said(len(normalized), len(normalized), "")]:
        for position in range(at, edit.start):
            said += normalized[position]
            owners.append((starts[position], starts[position] + 1))
        if edit.said:
            whole = (starts[edit.start], starts[edit.end - 1] + 1)
            said += edit.said
            owners.extend([whole] * len(edit.said))
        at = edit.end
    return said, owners


def _frontend(text: str) -> list[dict[str, Any]]:
    import pyopenjtalk

    with OPENJTALK_LOCK:
        nodes = pyopenjtalk.run_frontend(text)
    return [dict(node) for node in nodes]


def _reading(node: Mapping[str, Any]) -> str:
    # pyopenjtalk-plus marks the accent nucleus with ’ in some readings; Kokoro's misaki
    # phonemes carry no pitch accent.
    return str(node.get("pron") or node.get("read") or "").replace("’", "").replace("'", "")


# --- Latin-script words ------------------------------------------------------------------

# OpenJTalk's dictionary knows some English words (Google グーグル, server サーバー, coffee
# コーヒー); one it does not know it tags フィラー and spells letter by letter ("Python" is
# ピーワイティーエイチオーエヌ). Such a word is read by e2k (small numpy models inside its
# wheel: nothing is downloaded), cut where its case changes first: a part in capitals is an
# acronym and is spelled ("ChatGPT" is チャット + ジーピーティー, "OpenAI" オープン + エーアイ), as
# is a word all in capitals ("JSON", "AWS"), a single letter, and a part e2k's n-gram model
# finds no English word ("js", "npm", "css": letters, as a speaker says them); the rest is read
# by its C2K model (letters -> katakana).
_UNKNOWN_POS = "フィラー"
_LATIN_WORD = re.compile(r"[A-Za-z]+")
_CASE_PARTS = re.compile(r"[A-Z]+(?![a-z])|[A-Z]?[a-z]+")
_E2K_MAX_KANA = 32  # e2k's default is 16, which cuts a long word's reading
_E2K_LOCK = threading.Lock()
_e2k: tuple[Any, Any] | None = None  # (C2K, NGram)


def _english_katakana(word: str) -> str | None:
    """Katakana for one English word (e2k's C2K "turbo" model: of its base and turbo models,
    the one that reads "Python" パイソン), or None where it is no word to read (an
    abbreviation: e2k's n-gram model)."""
    with _E2K_LOCK:
        reader, is_word = _e2k_models()
        word = word.lower()
        return str(reader(word)) if is_word(word) else None


def _e2k_models() -> tuple[Any, Any]:
    global _e2k
    if _e2k is None:
        from e2k import C2K, NGram

        _e2k = (C2K(max_len=_E2K_MAX_KANA, model="turbo"), NGram())
    return _e2k


def load_english() -> None:
    """Load e2k's models now (about 0.3 s, once a process; the n-gram model is most of it), not
    on the first English word a listener waits for."""
    with _E2K_LOCK:
        _e2k_models()


def _letters(part: str) -> str:
    # Letter by letter, each alone: OpenJTalk reads some capitals as a word ("VS" バーサス).
    return "".join(_reading(node) for letter in part for node in _frontend(letter))


@functools.lru_cache(maxsize=4096)
def _latin_reading(surface: str) -> str:
    """The katakana a Japanese speaker says for a word of Latin letters OpenJTalk does not
    know (see above)."""
    kana = []
    for part in _CASE_PARTS.findall(surface):
        said = None if part.isupper() or len(part) == 1 else _english_katakana(part)
        kana.append(said if said is not None else _letters(part))
    return "".join(kana)


def _node_reading(node: Mapping[str, Any], surface: str) -> str:
    if (node.get("pos") == _UNKNOWN_POS and _LATIN_WORD.fullmatch(surface)
            and not surface.isupper() and len(surface) > 1):
        return _latin_reading(surface)
    return _reading(node)


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
    numeral = glued = False  # this node is (part of) a number; the last piece is one
    for node in _frontend(text):
        # OpenJTalk hands back ASCII as full-width ("ＧｉｔＨｕｂ"): the surface as in the
        # NFKC text, so that word_spans finds it there.
        surface = _nfkc(str(node.get("string", "")))
        # By its reading, not its part of speech or look: what OpenJTalk reads is spoken, as
        # OpenJTalk speaks it (the "." of "1.5" is a noun read テン; "A" alone or in "(AI)",
        # "&" and "¥" are symbols read エイ, アンド, エン); a mark without a reading is
        # punctuation.
        word = kana_to_phonemes(_node_reading(node, surface))
        numeral = node.get("pos_group1") == "数" or (numeral and surface in (".", "点"))
        if word:
            # OpenJTalk gives a number as one word per digit and power of ten (1,234,567 is
            # 百 二 十 三 万 四 千 ...): spaced, Kokoro says them as separate words, and
            # "maɴ joɴ" was heard 万1 4. One number is one word.
            if numeral and glued:
                pieces[-1] += word
                spoken[-1] = (spoken[-1][0] + surface, spoken[-1][1] + word)
            else:
                pieces.append(word)
                spoken.append((surface, word))
            glued = numeral
            continue
        glued = False
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
    """(char_start, char_end) in ``text`` of each word surface, found in order in the text as
    read (``_said``: NFKC, and the reading rules' words in place of what they replaced).
    OpenJTalk rewrites numbers (``100`` is the word ``百``): a run of words not found takes the
    text between its found neighbours, all of it to the run's first word. A word read in place
    of some text ("15:30" is read 15時30分) stands for all of it: the first word of a
    replacement takes it, and the words after it there get empty spans."""
    said, owners = _said(text)
    found: list[tuple[int, int] | None] = []
    cursor = 0
    for surface in surfaces:
        place = _digits_ahead(said, cursor, surface)
        if place is None:
            at = said.find(surface, cursor) if surface else -1
            place = (at, at + len(surface)) if at >= 0 else None
        found.append(place)
        if place is not None:
            cursor = place[1]
    places: list[tuple[int, int]] = []  # in ``said``
    for index, place in enumerate(found):
        if place is not None:
            places.append(place)
            continue
        begin = places[-1][1] if places else 0
        if index > 0 and found[index - 1] is None:
            places.append((begin, begin))  # the run's first word took the text
            continue
        following = next((p for p in found[index + 1:] if p is not None), None)
        stop = following[0] if following is not None else len(said)
        while begin < stop and _is_blank(said[begin]):
            begin += 1
        while stop > begin and _is_blank(said[stop - 1]):
            stop -= 1
        places.append((begin, stop))
    spans: list[tuple[int, int]] = []
    taken = 0  # the end in ``text`` of the words so far: no two words share a character
    for begin, stop in places:
        if stop > begin:
            start, end = max(owners[begin][0], taken), max(owners[stop - 1][1], taken)
        else:
            start = end = max(owners[begin][0] if begin < len(owners) else len(text), taken)
        spans.append((start, end))
        taken = end
    return spans


_KANJI_NUMERALS = frozenset("〇一二三四五六七八九十百千万億兆")


_DIGITS = re.compile(r"\d+(?:[.,]\d+)*[〇一二三四五六七八九十百千万億兆]*")
_NUMERAL_HEAD = re.compile(r"[〇一二三四五六七八九十百千万億兆.,点]+")


def _digits_ahead(said: str, cursor: int, surface: str) -> tuple[int, int] | None:
    """Where in ``said`` a word OpenJTalk made of digits stands: it writes the digits it
    reads as kanji ("1,234" is the word 千二百三十四, "1日" 一日), so such a word is the number
    next in the text ("1,234", "1万", with what follows it there: "1日"), never a kanji
    numeral further on ("1位は一郎" is not 一 of 一郎). None: no such word."""
    if not surface or surface[0] not in _KANJI_NUMERALS:
        return None
    while cursor < len(said) and _is_blank(said[cursor]):
        cursor += 1
    number = _DIGITS.match(said, cursor)
    if number is None:
        return None
    end = number.end()
    head = _NUMERAL_HEAD.match(surface)
    rest = surface[head.end():] if head else ""
    if rest and said.startswith(rest, end):
        end += len(rest)
    return cursor, end


def _is_blank(char: str) -> bool:
    """A space or a mark not spoken: no part of a word's span ("、15:30" is "15:30")."""
    return not char.strip() or (unicodedata.category(char).startswith("P")
                                and char not in "%&@#")
