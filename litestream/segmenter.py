"""Incremental text segmentation: LLM fragments in, speakable chunks out.

The segmenter owns one decision (style habit 3): where a chunk of text ends. It is pure: no I/O,
no clock, no threads. The server feeds it fragments as an LLM emits them ("Hel", "lo wor",
"ld. How") and hands every chunk it returns to the scheduler.

Completion rule
---------------
Sentence boundaries come from pysbd (abbreviations, decimals, initials and times do not split:
"Dr. Smith paid $4.50 at 5 p.m. on Jan. 3rd." is one sentence). A sentence in the buffer is
complete when pysbd puts a boundary after it AND the next sentence has begun, because "Dr." at
the end of a buffer is ambiguous until the next token arrives. "Hello there. How" emits
"Hello there." and keeps "How". A sentence that ends in terminal punctuation followed by a
newline (a paragraph break) is complete at once.

To make the result independent of how the text was cut into fragments, pysbd is asked only at
points fixed by the text itself: at the first character after a gap that could end a sentence
(a gap after . ! ? … ; : or a closing quote or bracket, or one holding a line break). pysbd then
sees the last few words of the buffer up to that character, whichever fragments it came in. A
line break after terminal punctuation is such a point too, and so is the completion of a word
for the long-sentence guard below. So feed(a) + feed(b) + flush() always equals
feed(a + b) + flush() when first_chunk_chars is None (tests/test_segmenter.py checks this with
hypothesis). Only the unfinished tail stays buffered, and pysbd never sees more than a few words
per decision, so a long text fed token by token costs linear time; an unfinished sentence longer
than twice max_chars is split early, which keeps the buffer bounded.

Chunk sizes
-----------
A sentence longer than max_chars is split at clause punctuation (, ; : — – and parentheses)
first, then at word boundaries, never inside a word; a single word longer than max_chars stays
whole.

First-chunk policy (see shared/design/scheduler-notes.md): under load the scheduler sets
first_chunk_chars so that first audio comes sooner. The first chunk of the stream (and the
first after clear()) is then cut at the last clause boundary at or below first_chunk_chars,
else at the last word boundary at or below it (at least one word). It may come from an
unfinished sentence: at the end of feed(), once more than first_chunk_chars characters are
buffered past a word boundary, the first chunk is emitted without waiting for the sentence to
end. A complete sentence shorter than 1.5 x first_chunk_chars is emitted whole instead, to avoid
a tiny first chunk followed by a tiny remainder. This policy depends on when text arrives, so it
is the one part that is not fragment-independent.

Ramp (scheduler-notes: "chunk sizes can grow by about 1/u per round"): with chunk_growth set as
well, the chunk after one of n characters may have at most (n - ramp_margin_chars) x
chunk_growth characters (never fewer than n, nor than first_chunk_chars), cut the same way,
until that limit reaches max_chars; from then on chunks are whole sentences again. So the
compute of chunk n+1 fits inside the playback of chunk n, less the jitter budget, even when many
streams start together.

Chunks are normalized: runs of whitespace (newlines included) become one space, ends trimmed,
control and format characters (Unicode Cc/Cf) dropped. A piece with no letter or digit ("...",
"—") is not speakable and yields no chunk.
"""

from __future__ import annotations

import itertools
import math
import re
import unicodedata

import pysbd

__all__ = ["Segmenter"]

# A gap after one of these may end a sentence, so pysbd is asked there. pysbd may also find
# boundaries elsewhere (numbered lists); those are picked up at the next such gap.
_GAP_TRIGGERS = frozenset(".!?…;:\"'”’)]»。！？」』）")
# Closing quotes and brackets that may follow terminal or clause punctuation.
_CLOSERS = frozenset("\"'”’)]»」』）")
_TERMINAL = frozenset(".!?…。！？")
# Clause punctuation a long sentence may be split after. "." is not here: inside what pysbd
# calls one sentence, ". " is an abbreviation ("Dr. Smith").
_CLAUSE_END = frozenset(",;:—–、，")
# Languages written without spaces between words, and the marks after which such text gets a
# word gap of its own (after the whole run, closing quotes included): the sentence and clause
# rules above work on gaps. Japanese: 。！？ end sentences (pysbd's "ja" rules decide), 、 is
# a clause break. The added gaps leave again when the chunk goes out.
_UNSPACED_BREAKS: dict[str, frozenset[str]] = {"ja": frozenset("。！？!?、，」』）")}
# The characters str.splitlines() treats as line breaks.
_NEWLINES = frozenset("\n\r\v\f\x1c\x1d\x1e\x85\u2028\u2029")
_RUNS = re.compile(r"\s+|\S+")
# Below this share of max_chars a clause cut is too short to be worth the prosody break: a long
# sentence that starts "Yes, ..." is cut at a word near max_chars, not after "Yes,".
_MIN_CLAUSE_SHARE = 3
# Left context pysbd gets at a decision point (whole words, at least this many characters).
# pysbd costs about 0.3 ms + 6 us per character a call; the whole buffer could be 600 chars.
_LOOKBACK_CHARS = 64
# The tiny-remainder rule: a complete first sentence shorter than this many first_chunk_chars
# is emitted whole.
_FIRST_WHOLE_FACTOR = 1.5


def _dropped(ch: str) -> bool:
    """Control and format characters that are not whitespace carry nothing to speak."""
    return not ch.isspace() and unicodedata.category(ch) in ("Cc", "Cf")


def _clean(fragment: str) -> str:
    # Fast path: a printable fragment holds no Cc/Cf character (nor any whitespace but " ").
    if fragment.isprintable():
        return fragment
    return "".join(ch for ch in fragment if not _dropped(ch))


def _speakable(text: str) -> bool:
    return any(ch.isalnum() for ch in text)


def _cut(text: str, pos: int, limit: int, min_clause: int) -> tuple[int, int] | None:
    """Where to end a chunk that starts at text[pos] and should be at most `limit` chars long.

    `text` holds single spaces only. Returns (end, next_start): the chunk is text[pos:end], the
    rest starts at next_start. Prefers the last clause boundary at least `min_clause` chars in,
    then the last word boundary, then (a first word longer than limit) the first word boundary.
    None when the rest of text is a single word.
    """
    n = len(text)
    stop = min(n, pos + limit + 1)
    last_clause: tuple[int, int] | None = None
    last_word: tuple[int, int] | None = None
    for i in range(pos + 1, stop):
        ch = text[i]
        if ch == " ":
            if i - pos > limit:
                break
            last_word = (i, i + 1)
            before = text[i - 1]
            after = text[i + 1] if i + 1 < n else ""
            j = i - 1
            while j > pos and text[j] in _CLOSERS and text[j] != ")":
                j -= 1
            clause = before == ")" or after == "(" or text[j] in _CLAUSE_END
            if clause and i - pos >= min_clause:
                last_clause = (i, i + 1)
        elif (
            ch == "—"
            and i + 1 < n
            and text[i - 1] != " "
            and text[i + 1] != " "
            and i + 1 - pos <= limit
            and i + 1 - pos >= min_clause
        ):
            # An unspaced em dash ("word—word") is a clause boundary between two words.
            last_clause = (i + 1, i + 1)
    if last_clause is not None:
        return last_clause
    if last_word is not None:
        return last_word
    space = text.find(" ", pos + 1)
    return None if space < 0 else (space, space + 1)


class Segmenter:
    """Turns a stream of text fragments into speakable chunks; see the module docstring."""

    def __init__(
        self,
        *,
        max_chars: int = 300,
        first_chunk_chars: int | None = None,
        chunk_growth: float | None = None,
        language: str = "en",
    ) -> None:
        if max_chars < 1:
            raise ValueError(f"max_chars must be >= 1, got {max_chars}")
        self.max_chars = max_chars
        # Settable at any time by the scheduler under load; None = whole first sentence.
        self.first_chunk_chars = first_chunk_chars
        # Settable too: how much each chunk after a short first one may grow; None = no ramp.
        self.chunk_growth = chunk_growth
        self.ramp_margin_chars = 0.0  # the jitter budget, in characters of speech
        self._ramp: int | None = None  # limit of the next chunk while ramping up
        self._pysbd = pysbd.Segmenter(language=language, clean=False)
        self._breaks = _UNSPACED_BREAKS.get(language)  # None: a language with word spaces
        self._after_break = False  # unspaced text: the last character was a break mark
        self._buf = ""  # normalized unfinished tail: single " " or "\n" gaps, no trailing space
        self._pending_ws = False  # whitespace seen after the last word, not yet written
        self._pending_nl = False  # ... and it held a line break
        self._first = True  # no chunk emitted since the start or the last clear()

    @property
    def buffered_chars(self) -> int:
        """Normalized characters held back, waiting for their sentence to complete."""
        return len(self._buf)

    def feed(self, fragment: str) -> list[str]:
        """Add a fragment of text; return the chunks that became complete, in order."""
        out: list[str] = []
        text = _clean(fragment) if self._breaks is None else self._gapped(_clean(fragment))
        for match in _RUNS.finditer(text):
            run = match.group()
            if run[0].isspace():
                self._whitespace(run, out)
            else:
                self._word(run, out)
        self._early_first_chunk(out)
        return out

    def flush(self) -> list[str]:
        """Emit everything buffered, even an unfinished sentence."""
        out: list[str] = []
        if self._buf:
            starts = self._sentence_starts(self._buf)
            for a, b in zip(starts, [*starts[1:], len(self._buf)], strict=True):
                self._emit_sentence(self._buf[a:b], out)
        self._reset_buffer()
        return out

    def clear(self) -> None:
        """Drop buffered text; the next chunk counts as the first again."""
        self._reset_buffer()
        self._first = True
        self._ramp = None
        self._after_break = False

    def _gapped(self, text: str) -> str:
        """Unspaced text with a gap after each run of break marks (see _UNSPACED_BREAKS).
        Decided from the characters alone, so fragments cut anywhere give the same gaps."""
        assert self._breaks is not None
        out = []
        for ch in text:
            if self._after_break and not ch.isspace() and ch not in self._breaks:
                out.append(" ")
            out.append(ch)
            self._after_break = ch in self._breaks
        return "".join(out)

    # -- input --------------------------------------------------------------------------------

    def _reset_buffer(self) -> None:
        self._buf = ""
        self._pending_ws = False
        self._pending_nl = False

    def _word(self, run: str, out: list[str]) -> None:
        if self._pending_ws:
            trigger = self._pending_nl or self._buf[-1] in _GAP_TRIGGERS
            self._buf += ("\n" if self._pending_nl else " ") + run[0]
            self._pending_ws = self._pending_nl = False
            if trigger:
                # A decision point fixed by the text: the first character after a gap that
                # may end a sentence. pysbd sees exactly that much, whatever the fragments.
                # pysbd sees only the last few words: enough left context for "Dr.", "5 p.m."
                # or "J. R. R.", and the cost of a call stays flat however long the sentence.
                cut = len(self._buf) - _LOOKBACK_CHARS
                w = 0
                if cut > 0:
                    w = max(self._buf.rfind(" ", 0, cut), self._buf.rfind("\n", 0, cut)) + 1
                starts = [0, *(w + i for i in self._sentence_starts(self._buf[w:])[1:])]
                # Every sentence but the last is followed by one that has begun: complete.
                for a, b in itertools.pairwise(starts):
                    self._emit_sentence(self._buf[a:b], out)
                self._drop_head(starts[-1])
            run = run[1:]
        # Without pending whitespace the run continues the last word (or starts the buffer).
        self._buf += run

    def _whitespace(self, run: str, out: list[str]) -> None:
        if not self._buf:
            return  # leading whitespace is trimmed
        if not self._pending_ws:
            self._pending_ws = True
            if len(self._buf) > 2 * self.max_chars:
                self._overflow(out)
        if self._buf and not self._pending_nl and any(ch in _NEWLINES for ch in run):
            # The line break is a decision point too, whichever fragment brings it.
            self._pending_nl = True
            self._line_break(out)

    def _overflow(self, out: list[str]) -> None:
        # An unfinished sentence this long would be split anyway: emit all but its last piece
        # now, which bounds the buffer and the cost of each pysbd call. Decided when a word
        # completes, so that the cut does not depend on the fragments either.
        text = self._buf.replace("\n", " ")
        spans = self._plan(text)
        for a, b in spans[:-1]:
            self._emit_chunk(text[a:b], out)
        if len(spans) > 1:
            self._drop_head(spans[-1][0])

    def _line_break(self, out: list[str]) -> None:
        j = len(self._buf) - 1
        while j > 0 and self._buf[j] in _CLOSERS:
            j -= 1
        if j >= 0 and self._buf[j] in _TERMINAL:
            # Terminal punctuation then a line break: everything buffered is complete, and
            # the rest of this whitespace run becomes leading whitespace (trimmed).
            out.extend(self.flush())

    def _drop_head(self, start: int) -> None:
        if start <= 0:
            return
        self._buf = self._buf[start:]

    def _sentence_starts(self, text: str) -> list[int]:
        """Offsets where pysbd starts each sentence of text; always begins with 0."""
        starts = [0]
        pos = 0
        for seg in self._pysbd.segment(text):
            piece = seg.strip()
            if not piece:
                continue
            # pysbd may trim or alter whitespace, so locate each sentence instead of summing
            # lengths; if it altered the text itself, treat the whole text as one sentence.
            at = text.find(piece, pos)
            if at < 0:
                return [0]
            if at > 0 and at != starts[-1]:
                starts.append(at)
            pos = at + len(piece)
        return starts

    # -- output -------------------------------------------------------------------------------

    def _limit(self) -> int | None:
        """The most characters the next chunk may have under the first-chunk policy and the
        ramp; None when only max_chars applies."""
        return self.first_chunk_chars if self._first else self._ramp

    @staticmethod
    def _min_clause(limit: int, first: bool) -> int:
        # The first chunk takes the first clause however short ("Yes," is fine: first audio
        # sooner). A ramp chunk that short would waste a round; it is cut at a word instead.
        return 0 if first else limit // _MIN_CLAUSE_SHARE

    def _grown(self, limit: int, length: int) -> int | None:
        """The limit of the chunk after one of `length` characters cut under `limit`.

        Never below the last limit: at high load a ramp may stay at small chunks for a while,
        which is what fits (scheduler-notes: chunk n+1 within chunk n's playback)."""
        if self.chunk_growth is None:
            return None
        grown = max(limit, math.ceil((length - self.ramp_margin_chars) * self.chunk_growth))
        return None if grown >= self.max_chars else grown

    def _early_first_chunk(self, out: list[str]) -> None:
        limit = self._limit()
        if limit is None or len(self._buf) <= limit:
            return
        text = self._buf.replace("\n", " ")
        # Only complete words may go: the last word is complete only if whitespace followed
        # it. Keep that whitespace in `text` so that _cut sees a word boundary there.
        text = text + " " if self._pending_ws else text[: text.rfind(" ") + 1]
        while text.strip():
            limit = self._limit()
            if limit is None or (not self._first and len(text.rstrip()) <= limit):
                break  # past the first chunk, a ramp chunk waits to fill its limit
            cut = _cut(text, 0, min(limit, self.max_chars), self._min_clause(limit, self._first))
            if cut is None:  # not reached: text ends with a space
                break
            self._emit_chunk(text[: cut[0]], out)
            self._drop_head(cut[1])
            text = text[cut[1] :]
        if not self._buf:
            # The whole buffer went out; the whitespace after it is leading whitespace now.
            self._reset_buffer()

    def _emit_sentence(self, sentence: str, out: list[str]) -> None:
        text = " ".join(sentence.split())
        for a, b in self._plan(text):
            self._emit_chunk(text[a:b], out)

    def _emit_chunk(self, chunk: str, out: list[str]) -> None:
        chunk = chunk.strip()
        if self._breaks is not None:
            chunk = "".join(ch for i, ch in enumerate(chunk)
                            if ch != " " or chunk[i - 1] not in self._breaks)
        if _speakable(chunk):
            out.append(chunk)
            limit = self._limit()
            self._ramp = None if limit is None else self._grown(limit, len(chunk))
            self._first = False

    def _plan(self, text: str) -> list[tuple[int, int]]:
        """Spans of `text` (single spaces) to emit as chunks: first-chunk policy, max_chars."""
        spans: list[tuple[int, int]] = []
        pos, n = 0, len(text)
        # The first-chunk policy and the ramp, simulated as _emit_chunk will apply them.
        limit = self._limit()
        first = self._first
        while limit is not None and pos < n:
            rest = n - pos
            if rest < _FIRST_WHOLE_FACTOR * limit and rest <= self.max_chars:
                break  # short enough to go whole: no tiny remainder
            cut = _cut(text, pos, min(limit, self.max_chars), self._min_clause(limit, first))
            if cut is None:
                break
            spans.append((pos, cut[0]))
            piece = text[pos : cut[0]].strip()
            pos = cut[1]
            # An unspeakable piece is dropped; it does not use up the limit.
            if _speakable(piece):
                limit = self._grown(limit, len(piece))
                first = False
        while n - pos > self.max_chars:
            cut = _cut(text, pos, self.max_chars, self.max_chars // _MIN_CLAUSE_SHARE)
            if cut is None:
                break  # a single word longer than max_chars stays whole
            spans.append((pos, cut[0]))
            pos = cut[1]
        if pos < n:
            spans.append((pos, n))
        return spans
