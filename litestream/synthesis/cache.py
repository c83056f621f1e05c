"""Sentence cache: finished chunk audio kept for reuse, least recently used first out.

Voice agents repeat themselves ("Sure, one moment.", greetings, confirmations). Their audio is
kept here, keyed by everything that changes it: the voice, the speed and the chunk's text after
normalization. So a hit can only ever come from the same voice at the same speed; a different
voice or speed is a different key and misses (issue: cached audio must never reach a stream in
another voice or speed).

The audio is stored as the engine made it: float32 mono at the voice's rate, before any wire
format. A hit then takes the same road to the client as fresh synthesis (s16le or f32le
framing, encoders), so cached and synthesized chunks give identical bytes.

Memory is bounded in bytes, not entries: a long sentence costs more than a short one. The
default, 256 MiB (Config.cache_bytes), holds about 50 minutes of 22,050 Hz audio, some 1,200
sentences. Sized for the 24 GB, 2-core machine litestream runs on: it is 1% of memory. What
matters is how long a stock phrase survives the new text flowing through: at full load (13
streams, about 13 s of new audio a second, 1.1 MB/s as float32) 256 MiB turns over in about four
minutes, so a phrase any agent repeats within four minutes stays; 64 MiB would keep only
phrases repeated within a minute (loadtest/cache_bench.py compares sizes). One entry may take at
most `max_entry_bytes` (1/8 of the total by default), so one long chunk cannot flush the stock
phrases.

Each entry also keeps the sentence's words and their times (`engine.base.Word`), so a hit
carries its `words` event as fresh synthesis would; their character spans are the text's that
was stored, and a hit on a text that differs from it only in whitespace or Unicode form gets
them found again in its own text (`CachedAudio.words_in`).

Sans I/O and single-threaded: the event loop calls it (lookup at submission, store at result).
"""

from __future__ import annotations

import dataclasses
import logging
import re
import unicodedata
from collections import OrderedDict
from dataclasses import dataclass

import numpy as np

from litestream.engine.base import Word

log = logging.getLogger("litestream.cache")

_SPACE = re.compile(r"\s+")


def normalize_key(text: str) -> str:
    """The key form of a sentence: Unicode NFC, runs of whitespace as one space, trimmed.

    Case and punctuation are kept: both can change what the voice says ("US" and "us", a
    question's rise), so only differences that cannot change the audio are folded."""
    return _SPACE.sub(" ", unicodedata.normalize("NFC", text)).strip()


@dataclass(frozen=True, slots=True)
class CacheKey:
    voice: str
    speed: float  # as the stream asked for it, rounded to 1/10,000
    text: str  # normalize_key()d

    @classmethod
    def of(cls, voice: str, speed: float, text: str) -> CacheKey:
        return cls(voice, round(float(speed), 4), normalize_key(text))


@dataclass(frozen=True, slots=True)
class CachedAudio:
    """One sentence's audio: float32 mono samples (read-only) at `sample_rate`."""

    samples: np.ndarray
    sample_rate: int  # Hz
    text: str = ""  # the sentence as it was stored (its words' character spans index it)
    words: tuple[Word, ...] = ()

    def words_in(self, text: str) -> tuple[Word, ...]:
        """The words with their character spans in ``text`` (a text of the same key): each
        word's text is found in order; one that is not (a Unicode form that differs) keeps an
        empty span where the previous word ended."""
        if text == self.text:
            return self.words
        found = []
        cursor = 0
        for word in self.words:
            at = text.find(word.text, cursor)
            if at < 0:
                found.append(dataclasses.replace(word, text="", char_start=cursor,
                                                 char_end=cursor))
                continue
            cursor = at + len(word.text)
            found.append(dataclasses.replace(word, char_start=at, char_end=cursor))
        return tuple(found)

    @property
    def nbytes(self) -> int:
        return int(self.samples.nbytes)

    @property
    def sample_count(self) -> int:
        return int(self.samples.shape[0])

    @property
    def audio_s(self) -> float:
        return self.sample_count / self.sample_rate


@dataclass(frozen=True, slots=True)
class CacheStats:
    hits: int
    misses: int
    evictions: int
    bytes: int  # audio held now
    entries: int
    max_bytes: int

    @property
    def hit_rate(self) -> float:
        looked = self.hits + self.misses
        return self.hits / looked if looked else 0.0


class SentenceCache:
    """LRU of sentence audio bounded in bytes. `max_bytes=0` turns it off (every get misses,
    nothing is stored); its default lives in Config.cache_bytes, the one home of defaults."""

    def __init__(self, max_bytes: int, *,
                 max_entry_bytes: int | None = None) -> None:
        if max_bytes < 0:
            raise ValueError("max_bytes must not be negative")
        self.max_bytes = max_bytes
        self.max_entry_bytes = max_bytes // 8 if max_entry_bytes is None else max_entry_bytes
        self._entries: OrderedDict[CacheKey, CachedAudio] = OrderedDict()  # oldest first
        self._bytes = 0
        self.hits = 0
        self.misses = 0
        self.evictions = 0

    @property
    def enabled(self) -> bool:
        return self.max_bytes > 0

    def __len__(self) -> int:
        return len(self._entries)

    def __contains__(self, key: CacheKey) -> bool:
        """Membership without counting a lookup or touching the order."""
        return key in self._entries

    def get(self, voice: str, speed: float, text: str) -> CachedAudio | None:
        """The audio of this sentence in this voice at this speed, or None. Counts a hit or a
        miss; a hit becomes the most recently used entry."""
        if not self.enabled:
            return None
        key = CacheKey.of(voice, speed, text)
        found = self._entries.get(key)
        if found is None:
            self.misses += 1
            return None
        self._entries.move_to_end(key)
        self.hits += 1
        return found

    def put(self, voice: str, speed: float, text: str, samples: np.ndarray,
            sample_rate: int, words: tuple[Word, ...] = ()) -> int:
        """Keep a finished sentence's audio and its words' times. Returns how many entries were
        evicted for it.

        Audio over `max_entry_bytes`, or empty, is not kept. The samples are copied into a
        read-only float32 array: the caller's buffer may be reused, a hit's must not change."""
        if not self.enabled:
            return 0
        audio = np.array(samples, dtype=np.float32).reshape(-1)
        if audio.size == 0 or audio.nbytes > self.max_entry_bytes:
            return 0
        audio.setflags(write=False)
        key = CacheKey.of(voice, speed, text)
        old = self._entries.pop(key, None)
        if old is not None:
            self._bytes -= old.nbytes
        entry = CachedAudio(audio, sample_rate, text, words)
        self._entries[key] = entry
        self._bytes += entry.nbytes
        evicted = 0
        while self._bytes > self.max_bytes:
            _, gone = self._entries.popitem(last=False)
            self._bytes -= gone.nbytes
            evicted += 1
        self.evictions += evicted
        return evicted

    def clear(self) -> None:
        self._entries.clear()
        self._bytes = 0

    def stats(self) -> CacheStats:
        return CacheStats(hits=self.hits, misses=self.misses, evictions=self.evictions,
                          bytes=self._bytes, entries=len(self._entries),
                          max_bytes=self.max_bytes)
