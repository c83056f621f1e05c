"""Text -> phonemes -> phoneme ids, the way Piper does it.

espeak-ng keeps global state in its C library and is not thread-safe, so this module is the
only place in litestream that calls it, and every call holds ``ESPEAK_LOCK`` (one lock per
process, shared by every voice and every worker thread).
"""

from __future__ import annotations

import logging
import re
import threading
import unicodedata
from collections.abc import Mapping, Sequence
from typing import Any

from litestream.text.reading import read_english

logger = logging.getLogger("litestream.engine")

# Piper's special symbols (piper/phoneme_ids.py).
PAD = "_"
BOS = "^"
EOS = "$"

# The one process-wide lock around espeak-ng: backend creation and phonemize calls both touch
# the library's global state.
ESPEAK_LOCK = threading.Lock()

# espeak voice ("en-us") -> phonemizer backend. Only read or written under ESPEAK_LOCK.
_backends: dict[str, Any] = {}
_library_configured = False


def _configure_library() -> None:
    """Point phonemizer at the espeak-ng bundled by espeakng_loader (no system espeak needed).

    Caller holds ESPEAK_LOCK.
    """
    global _library_configured
    if _library_configured:
        return
    import espeakng_loader
    from phonemizer.backend.espeak.wrapper import EspeakWrapper

    EspeakWrapper.set_library(espeakng_loader.get_library_path())
    EspeakWrapper.set_data_path(espeakng_loader.get_data_path())
    _library_configured = True


# How a text is read before espeak-ng (which marks are cut out as punctuation, which are left to
# it): a part of each Piper voice's fingerprint, so that the shared sentence cache, which outlives
# a deploy, never serves audio read by an older rule. Change it whenever the reading changes.
# 2: the marks below left to espeak-ng (was: every "." and ":" cut).
# 3: amounts, small ranges, units, ISO dates and decades said as a speaker says them, for
#    English (text/reading.py).
# 4: English: "~5", fractions, "24/7", abbreviations ("vs.", "approx.", "No. 5", "Dr. Smith"),
#    Roman numerals after a ruler's name or a numbering word, and emoji not spoken.
# 5: English: Chinese characters, kana and Hangul not spoken (were "Chinese letter",
#    "Japanese letter" each), full-width forms as ASCII (were "letter FF21"), Japanese
#    punctuation as ASCII marks.
# 6: English: words of other scripts (Cyrillic, Arabic, Hebrew, Indic, Thai, Georgian, ...) and
#    Greek words not spoken (were letter names); a lone Greek letter is, apart from a Latin one
#    ("Δt": "delta t", was "deltat"); "μm", "µs", "μg" after a number as units.
READING = "6"

# Marks left to espeak-ng, as Piper leaves them (it hands espeak-ng the whole text), because cut
# out as punctuation they put a sentence's pause where none is:
# - a "." or ":" inside a word: espeak-ng reads "example.com" as "example dot com", "U.S.A" as
#   one word and "3:45" as "three forty-five"; cut, they were "example. com" (no "dot"),
#   "U. S. A." and "three: forty-five". "ended.Then" (a missing space) stays a sentence end;
# - a "." before a word without a capital: espeak-ng's own rule (an abbreviation's dot: "e.g.
#   a", "U.S.A. office", "5 p.m. today"), so no pause after the abbreviation.
_LEFT_TO_ESPEAK = re.compile(
    r"(?<=[^\W_])\.(?=[^\W_])(?<![a-z]{2}\.(?=[A-Z][a-z]))"  # a "." inside a word
    r"|(?<=\d):(?=\d)"  # a ":" between digits
    r"|(?<=\S)\.(?=[^\S\n]+[^\W\d_])"  # a "." before a word: one without a capital, below
)


def _left_to_espeak(line: str) -> set[int]:
    """Where in ``line`` the marks that `_LEFT_TO_ESPEAK` describes stand."""
    kept = set()
    for match in _LEFT_TO_ESPEAK.finditer(line):
        at = match.start()
        after = line[at + 1:at + 2]
        if after.isspace() and line[at + 1:].lstrip()[0].isupper():
            continue  # "Dr. Smith": espeak-ng ends a clause there too
        kept.add(at)
    return kept


def _span_punctuation() -> Any:
    """phonemizer's Punctuation, cutting a line at the marks its pattern found.

    phonemizer 3.4 finds the marks with a pattern that leaves a decimal separator between two
    digits alone, then cuts the line with ``str.split(mark)``, at the first place the same
    character appears: "He paid 1.5 dollars today." was cut at "1.5", and everything after it
    was lost ("He paid one."). Cutting at each match's own span keeps the number whole. A mark
    that espeak-ng reads better (`_LEFT_TO_ESPEAK`) is left to it."""
    from phonemizer.punctuation import Punctuation, _MarkIndex

    class SpanPunctuation(Punctuation):  # type: ignore[misc]
        def _preserve_line(self, line: str, num: int) -> tuple[list[str], list[Any]]:
            kept = _left_to_espeak(line)
            matches = [m for m in re.finditer(self._marks_re, line)
                       if m.group().strip() not in (".", ":") or m.start() not in kept]
            if not matches:
                return [line], []
            if len(matches) == 1 and matches[0].group() == line:
                return [], [_MarkIndex(num, line, "A")]
            marks, pieces, start = [], [], 0
            for index, match in enumerate(matches):
                position = "I"
                if index == 0 and match.start() == 0:
                    position = "B"
                elif index == len(matches) - 1 and match.end() == len(line):
                    position = "E"
                marks.append(_MarkIndex(num, match.group(), position))
                pieces.append(line[start:match.start()])
                start = match.end()
            return [*pieces, line[start:]], marks

    return SpanPunctuation(Punctuation.default_marks())


def _backend(espeak_voice: str) -> Any:
    """The cached backend for one espeak voice. Caller holds ESPEAK_LOCK."""
    backend = _backends.get(espeak_voice)
    if backend is None:
        _configure_library()
        from phonemizer.backend import EspeakBackend

        # phonemizer logs a warning per call about word-count mismatches when punctuation
        # is kept; that is expected for Piper-style input, so give it a quiet logger.
        quiet = logging.getLogger("litestream.engine.espeak")
        quiet.setLevel(logging.ERROR)
        backend = EspeakBackend(
            espeak_voice,
            preserve_punctuation=True,
            with_stress=True,
            logger=quiet,
        )
        backend._punctuator = _span_punctuation()
        _backends[espeak_voice] = backend
    return backend


def _as_read(line: str, espeak_voice: str) -> str:
    """What espeak-ng is given for ``line``: for an English voice, amounts and ranges as a
    speaker says them (text/reading.py); the chunk's own text is not changed."""
    return read_english(line) if espeak_voice.lower().startswith("en") else line


def phonemize(text: str, espeak_voice: str) -> str:
    """IPA phonemes for ``text`` with stress marks and punctuation kept (Piper's input)."""
    # phonemizer treats each line as its own utterance; a chunk is one utterance.
    line = _as_read(" ".join(text.split()), espeak_voice)
    if not line:
        return ""
    with ESPEAK_LOCK:
        backend = _backend(espeak_voice)
        result: list[str] = backend.phonemize([line], strip=True)
    return result[0] if result else ""


def phonemize_each(words: Sequence[str], espeak_voice: str) -> list[str]:
    """Each word's phonemes alone (``phonemize`` of each, in one call): what word timestamps
    align to a chunk's phonemes (engine/words.py). "" for a word espeak-ng does not speak."""
    lines = [_as_read(" ".join(word.split()), espeak_voice) for word in words]
    if not any(lines):
        return ["" for _ in lines]
    with ESPEAK_LOCK:
        backend = _backend(espeak_voice)
        result: list[str] = backend.phonemize(lines, strip=True)
    if len(result) != len(lines):  # phonemizer keeps one line per input; be sure of it
        return [phonemize(word, espeak_voice) for word in words]  # each read there, once
    return result


def phonemes_to_ids(phonemes: str, id_map: Mapping[str, Sequence[int]],
                    sources: list[int] | None = None) -> list[int]:
    """Piper's convention: ``^ _ (p _)* $``, one entry per NFD codepoint; unknown ones skipped.

    With ``sources``, it is filled with the NFD codepoint each id comes from (a phoneme's pad
    is its phoneme's; -1 for ``^ _`` and ``$``): which ids speak which sounds."""
    head = [*id_map[BOS], *id_map[PAD]]
    ids: list[int] = list(head)
    pad = id_map[PAD]
    if sources is not None:
        sources[:] = [-1] * len(head)
    # Piper splits the phoneme string into NFD codepoints, so a precomposed character maps
    # through its base letter plus combining marks.
    for at, phoneme in enumerate(unicodedata.normalize("NFD", phonemes)):
        mapped = id_map.get(phoneme)
        if mapped is None:
            if logger.isEnabledFor(logging.DEBUG):
                logger.debug("phoneme %r (U+%04X) not in the voice's map, skipped",
                             phoneme, ord(phoneme))
            continue
        ids.extend(mapped)
        ids.extend(pad)
        if sources is not None:
            sources.extend([at] * (len(mapped) + len(pad)))
    ids.extend(id_map[EOS])
    if sources is not None:
        sources.extend([-1] * len(id_map[EOS]))
    return ids


def split_ids(ids: Sequence[int], id_map: Mapping[str, Sequence[int]],
              max_ids: int) -> list[list[int]]:
    """Cut a sentence's ids (``^ _ (p _)* $``) into sequences of at most ``max_ids``, each in
    the same convention, at word gaps (after a space phoneme), a hard cut only inside a word
    longer than the bound. Joined again without their ``^ _`` and ``$``, they are ``ids``.

    The front pass is quadratic in its ids: espeak-ng spells emoji and symbols out, so 150
    such characters became 2,131 ids and one front pass of 5.3 s (docs/operations.md). Ordinary
    sentences stay far under the bound and are never cut."""
    head = [*id_map[BOS], *id_map[PAD]]
    tail = list(id_map[EOS])
    if len(ids) <= max_ids:
        return [list(ids)]
    budget = max_ids - len(head) - len(tail)
    budget -= budget % 2  # whole (phoneme, pad) pairs
    if budget < 2:
        raise ValueError(f"max_ids {max_ids} leaves no room for a phoneme")
    inner = list(ids[len(head): len(ids) - len(tail)])
    space = [*id_map[" "], *id_map[PAD]] if " " in id_map else []
    pieces: list[list[int]] = []
    start = 0
    while len(inner) - start > budget:
        end = start + budget
        gap = _last_gap(inner, space, start, end)
        cut = gap if gap is not None else end
        pieces.append([*head, *inner[start:cut], *tail])
        start = cut
    pieces.append([*head, *inner[start:], *tail])
    return pieces


def _last_gap(inner: list[int], space: list[int], start: int, end: int) -> int | None:
    """The end of the last word gap (space phoneme, then pad) within inner[start:end]."""
    n = len(space)
    if not n:
        return None
    for at in range(end - n, start, -1):
        if inner[at: at + n] == space:
            return at + n
    return None
