"""Word timestamps: which phoneme ids speak which word of a chunk, and when they are heard.

Two halves, both pure (no model, no espeak-ng call: the callers pass what they got):

- ``word_spans``: the words of a chunk's text and their phoneme ids. espeak-ng phonemizes a
  whole chunk at once, and what it returns does not split along the text's words: it spells
  numbers, symbols and abbreviations out (``$1,234`` is six words), drops some punctuation,
  and joins unstressed function words to the next one (``in the house`` -> ``ɪnðə hˈaʊs``). So
  each word of the text is also phonemized alone, and those phonemes are aligned, sound by
  sound, to the chunk's own (``difflib``, stress and punctuation left out): every sound of
  the chunk's phonemes then belongs to one word, in order, and a word's ids are the ids of its
  sounds. The ids the model runs on are the chunk's own, never the words' alone.
- ``timed``: each word's samples in the chunk's audio, from the frames the model's duration
  predictor gave each id (``Latent.durations``; they sum to the chunk's frames, so the words
  lie inside the chunk's exact length), or, where the model exposes none, from the chunk's
  frames spread evenly over its ids (an estimate).
"""

from __future__ import annotations

import difflib
import re
import unicodedata
from collections.abc import Sequence

import numpy as np

from litestream.engine.base import Latent, Phonemes, Word, WordSpan

# A word of the text: a run of non-space characters, also cut at dashes that stand between
# words ("this—that"); punctuation at either end is not part of it.
_TOKEN = re.compile(r"[^\s\u2013\u2014]+")
_IGNORED = frozenset("ˈˌ‖|")  # stress and intonation marks: not sounds


def split_words(text: str) -> list[tuple[int, int]]:
    """(char_start, char_end) of each word of ``text``, outer punctuation trimmed. A token
    of punctuation only ("--", "...") is no word."""
    spans = []
    for match in _TOKEN.finditer(text):
        start, end = match.span()
        while start < end and _is_punctuation(text[start]):
            start += 1
        while end > start and _is_punctuation(text[end - 1]):
            end -= 1
        if start < end:
            spans.append((start, end))
    return spans


# Punctuation by its Unicode category that a voice speaks ("50%", "&", "#1", "@home").
_SPOKEN_MARKS = frozenset("%&@#*§‰/\\")


def _is_punctuation(char: str) -> bool:
    return unicodedata.category(char).startswith("P") and char not in _SPOKEN_MARKS


def _is_sound(char: str) -> bool:
    """A character of a phoneme string that is a sound (or part of one)."""
    return not (char.isspace() or char in _IGNORED or _is_punctuation(char))


def align(sentence: str, isolated: Sequence[str]) -> list[tuple[int, int] | None]:
    """For each word's phonemes alone (``isolated[i]``), the range [start, end) of
    ``sentence`` (NFD codepoints) that speaks it, or None where the sentence has no sound of
    it. Ranges are in order and never overlap."""
    sentence = unicodedata.normalize("NFD", sentence)
    sounds = [at for at, char in enumerate(sentence) if _is_sound(char)]
    reference: list[str] = []
    owner: list[int] = []
    for index, phonemes in enumerate(isolated):
        for char in unicodedata.normalize("NFD", phonemes):
            if _is_sound(char):
                reference.append(char)
                owner.append(index)
    labels: list[int | None] = [None] * len(sounds)
    matcher = difflib.SequenceMatcher(None, [sentence[at] for at in sounds], reference,
                                      autojunk=False)
    for block in matcher.get_matching_blocks():
        for k in range(block.size):
            labels[block.a + k] = owner[block.b + k]
    _fill(labels, sounds, sentence, len(isolated))
    ranges: list[tuple[int, int] | None] = [None] * len(isolated)
    for position, label in enumerate(labels):
        if label is None:
            continue
        at = sounds[position]
        found = ranges[label]
        ranges[label] = (at, at + 1) if found is None else (found[0], at + 1)
    return ranges


def _fill(labels: list[int | None], sounds: list[int], sentence: str, words: int) -> None:
    """Give each run of unmatched sounds a word. Words that matched nothing between the run's
    neighbours (a letter said another way in context: "a" alone is "eɪ", in a sentence "ɐ")
    take its parts, one per word gap, in order; otherwise each sound goes to the word before
    it, unless a word gap lies between them, then to the word after it."""
    count = len(labels)
    position = 0
    while position < count:
        if labels[position] is not None:
            position += 1
            continue
        end = position
        while end < count and labels[end] is None:
            end += 1
        before = labels[position - 1] if position > 0 else None
        after = labels[end] if end < count else None
        low = -1 if before is None else before
        high = words if after is None else after
        missing = list(range(low + 1, high))
        if missing:
            _share(labels, sounds, sentence, position, end, before, after, missing)
        else:
            for at in range(position, end):
                gap_before = position > 0 and " " in sentence[sounds[position - 1]:sounds[at]]
                labels[at] = after if before is None or (gap_before and after is not None) \
                    else before
        position = end


def _gap(sounds: list[int], sentence: str, first: int, second: int) -> bool:
    """A word gap (space) between sounds ``first`` and ``second``."""
    return " " in sentence[sounds[first]:sounds[second]]


def _share(labels: list[int | None], sounds: list[int], sentence: str, start: int, end: int,
           before: int | None, after: int | None, missing: list[int]) -> None:
    """Sounds [start, end), between words ``before`` and ``after``, to the ``missing`` words:
    one part (cut at word gaps) each, in order; a part joined to a neighbour word without a
    gap stays with it while there are more parts than words."""
    groups: list[list[int]] = [[start]]
    for at in range(start + 1, end):
        if _gap(sounds, sentence, at - 1, at):
            groups.append([at])
        else:
            groups[-1].append(at)
    if (before is not None and len(groups) > len(missing)
            and not _gap(sounds, sentence, start - 1, start)):
        for at in groups.pop(0):
            labels[at] = before
    if (after is not None and len(groups) > len(missing)
            and not _gap(sounds, sentence, end - 1, end)):
        for at in groups.pop():
            labels[at] = after
    for index, group in enumerate(groups):
        for at in group:
            labels[at] = missing[min(index, len(missing) - 1)]


def word_spans(text: str, spans: Sequence[tuple[int, int]], sentence: str,
               isolated: Sequence[str], sources: Sequence[int]) -> tuple[WordSpan, ...]:
    """The words of ``text`` (``spans``, from ``split_words``) with their ids. ``sentence``
    is the chunk's phonemes, ``isolated[i]`` word i's phonemes alone, and ``sources[j]`` the
    NFD codepoint of ``sentence`` that id j speaks (-1 for ids of no codepoint)."""
    ranges = align(sentence, isolated)
    out = []
    ids = len(sources)
    cursor = _first_sound_id(sources)  # a dropped word sits where the previous one ended
    for (start, end), found in zip(spans, ranges, strict=True):
        first_id = end_id = cursor
        if found is not None:
            first = next((j for j in range(ids) if sources[j] >= found[0]), ids)
            last = next((j for j in range(ids - 1, -1, -1) if 0 <= sources[j] < found[1]), -1)
            if last >= first:
                first_id, end_id = first, last + 1
                cursor = end_id
        out.append(WordSpan(text[start:end], start, end, first_id, end_id))
    return tuple(out)


def _first_sound_id(sources: Sequence[int]) -> int:
    return next((j for j, source in enumerate(sources) if source >= 0), 0)


def timed(phonemes: Phonemes, latent: Latent) -> tuple[Word, ...]:
    """Each word's samples in the chunk's audio (see the module's docstring)."""
    if not phonemes.words:
        return ()
    hop = latent.samples_per_frame
    count = len(phonemes.ids)
    durations = latent.durations
    if durations is not None and len(durations) == count:
        # Frame boundaries of each id: the model's own, exact.
        bounds = np.concatenate(([0], np.cumsum(durations))) * hop
    else:
        # The chunk's samples spread evenly over its ids.
        bounds = np.linspace(0, latent.frames * hop, count + 1)
    edges = np.minimum(np.rint(bounds).astype(np.int64), latent.frames * hop)
    return tuple(
        Word(span.text, span.char_start, span.char_end,
             int(edges[span.first_id]), int(edges[span.end_id]))
        for span in phonemes.words
    )
