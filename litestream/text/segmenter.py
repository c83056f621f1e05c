"""Incremental text segmentation: LLM fragments in, sentences out.

The segmenter owns one decision (docs/style.md: one owner per decision): where a chunk of text
ends. It is pure: no I/O, no clock, no threads. The server feeds it fragments as an LLM emits
them ("Hel", "lo wor", "ld. How") and hands every chunk it returns to the scheduler as one
sentence's work.

Chunks are sentences
--------------------
Audio streams inside a sentence (the engine's decode windows), so text is never cut to make first
audio sooner: a cut resets the voice's intonation (issue 8). A chunk is a whole sentence; only a
very long one is cut, and only where a speaker would pause anyway.

Completion rule
---------------
Sentence boundaries come from pysbd (abbreviations, decimals, initials and times do not split:
"Dr. Smith paid $4.50 at 5 p.m. on Jan. 3rd." is one sentence); a sentence starts only after
whitespace, so pysbd's cut inside a word (a URL's query: "example.com/a?" | "b=1") is ignored,
and marks it cuts off a sentence's last word ("claim.**") stay with that sentence. Nor does
one start after an abbreviation pysbd does not know when a number or a lowercase word follows
("approx. 40 years", `_GOES_ON_AFTER`).
A sentence in the buffer is complete when pysbd puts a boundary after it AND the next sentence
has begun, because "Dr." at the end of a buffer is ambiguous until the next token arrives.
"Hello there. How" emits "Hello there." and keeps "How". A sentence that ends in terminal
punctuation followed by a newline (a paragraph break) is complete at once.

To make the result independent of how the text was cut into fragments, pysbd is asked only at
points fixed by the text itself: at the first character after a gap that could end a sentence
(a gap after sentence or clause punctuation, a closing quote or bracket, or one holding a line
break). pysbd then sees the last few words of the buffer up to that character, whichever
fragments it came in. A line break after terminal punctuation is such a point too, and so is the
completion of a word for the long-sentence guard below. So feed(a) + feed(b) + flush() always
equals feed(a + b) + flush() (tests/unit/text/test_segmenter.py checks this with hypothesis).
Only the unfinished tail stays buffered, and pysbd never sees more than a few words per
decision, so a long text fed token by token costs linear time. Plain prose ("... the sea. In")
is not even shown to pysbd: its answer there is known from its rules (`_plain_starts`), and
asking cost ~0.25 ms a decision on the event loop (docs/benchmarks.md, issue 17).

Long sentences
--------------
A sentence longer than `max_chars` is cut at clause punctuation only (, ; : — – and parentheses,
per language: `PUNCTUATION`), never between two words of a clause: each piece ends at the last
clause boundary within `max_chars`; when the first clause alone is longer, the piece runs on to
the clause's end. The safety limit: a single clause longer than `hard_max_chars` (default
3 x max_chars: ~900 characters, a ~0.5 s front pass and ~40 s of audio) is cut at the last word
boundary within `hard_max_chars`, since one front pass over unbounded text would hold a worker
and the latent's memory without bound. Text like that (a list with no punctuation, a run-on
log line) is not prose whose intonation a cut could spoil. A single word longer than the limit
stays whole. An unfinished sentence longer than twice max_chars is cut early by the same rule
(all but its last piece go out), which keeps the buffer bounded.

A long first sentence
---------------------
The front pass runs over a whole chunk before any of its audio exists (about 0.6 ms per
character on one CPU core), so a long first sentence would hold back a stream's first audio.
With `first_max_chars` set, the first chunk of a run of speech (the stream's start, and the
first text after a `flush` or `clear`) that is longer than that is cut once, at the last clause
boundary within `first_max_chars`: "When the train pulled in, | a little later than ...". This is
the spec's "a clause of a long first sentence" (protocol-v1, Timing promise). The cut is at
clause punctuation, where the voice pauses anyway, never inside a clause; when the first
`first_max_chars` characters hold no clause boundary, the sentence is not cut at all. The rest
of that sentence is one chunk, cut only by the `max_chars` rule. The decision is taken when a
word completes (or at `flush`), so token streams get the same cut, as soon as their first
clause is known, as text sent whole. In a language without spaces a "word" runs from one
clause mark to the next, so a clause within the limit also goes out at the character where
the buffer passes the limit (the cut then depends only on the first `first_max_chars + 1`
characters): the first audio of "東京では雨が降るかもしれませんので、出かける際には..." waited
for the whole second clause to arrive (a second of an LLM's tokens) before its first went out.

Voices that make a chunk whole
------------------------------
A voice that cannot stream inside a chunk (Kokoro: its audio exists only once the whole chunk
is made) plays a short first sentence ("はい。", half a second) while the next is made whole,
and a long next sentence (46 characters, 2.5 s on a 2-core CPU) left the listener 2 s of
silence. With `whole_chunks`, the first-sentence rule above holds for the run's first
`first_max_chars` characters, not only its first chunk: each chunk until the run's chunks hold
that many is cut at its last clause boundary within `first_max_chars` (or, none there, at its
first within twice that: such a voice gains from any cut), so the audio made before the
listener runs dry grows clause by clause. Piper's voices stream inside a sentence
(decode windows) and keep the rule for the first sentence alone.

Languages
---------
The limits (`max_chars`, `hard_max_chars`, `first_max_chars`) are characters of English speech,
so they mean the same length of speech in every language: in a language whose character says
more (`languages.SPEECH_PER_CHAR`: Japanese, about three English characters a character) they
are that many times fewer characters. A Japanese reply's first sentence of 46 characters
(7 s of speech) was one chunk under the 80 that suit English (4 s); a Kokoro voice makes a
whole chunk before any of its audio, so the listener waited for all of it (2.8 s on a 2-core
CPU) where the first clause alone takes a third of that.

Chunks are normalized: runs of whitespace (newlines included) become one space, ends trimmed,
control and format characters (Unicode Cc/Cf) dropped, and markdown's formatting marks, which
espeak-ng would read aloud ("asterisk asterisk"), removed (markdown.py). A piece with no letter
or digit ("...", "—", "**") is not speakable and yields no chunk.
"""

from __future__ import annotations

import functools
import itertools
import re
import unicodedata
from dataclasses import dataclass

import pysbd
from pysbd.lang.english import English

from litestream.text.languages import base_language, speech_per_char
from litestream.text.markdown import unmark

__all__ = ["PUNCTUATION", "Punctuation", "Segmenter"]


@dataclass(frozen=True)
class Punctuation:
    """One language's punctuation, as the segmenter uses it."""

    # Terminal punctuation: a gap after it may end a sentence, and a line break after it does.
    sentence_end: frozenset[str]
    # Clause punctuation a long sentence may be cut after. "." is not here: inside what pysbd
    # calls one sentence, ". " is an abbreviation ("Dr. Smith").
    clause_break: frozenset[str]
    # Closing quotes and brackets that may follow sentence or clause punctuation.
    closers: frozenset[str]

    @property
    def gap_triggers(self) -> frozenset[str]:
        """A gap after one of these may end a sentence, so pysbd is asked there. pysbd may also
        find boundaries elsewhere (numbered lists); those are picked up at the next such gap."""
        return self.sentence_end | self.closers | (self.clause_break & frozenset(";:"))


_LATIN = Punctuation(
    sentence_end=frozenset(".!?…"),
    clause_break=frozenset(",;:—–"),
    closers=frozenset("\"'”’)]»"),
)

# Keyed by the language's base code ("en" for "en_US"); others fall back to "en". A language is
# one entry here (and one pysbd supports). Japanese: 。！？ end sentences (pysbd's "ja" rules
# decide), 、 is a clause break.
PUNCTUATION: dict[str, Punctuation] = {
    "en": _LATIN,
    "ja": Punctuation(
        sentence_end=frozenset(".!?…。！？"),
        clause_break=frozenset(",;:—–、，"),
        closers=frozenset("\"'”’)]»」』）"),
    ),
}

# Languages written without spaces between words, and the marks after which such text gets a
# word gap of its own (after the whole run, closing quotes included): decisions are taken at
# the first character after whitespace (`Segmenter._word`), so the sentence and clause rules
# work on gaps. The added gaps leave again when the chunk goes out.
_UNSPACED_BREAKS: dict[str, frozenset[str]] = {"ja": frozenset("。！？!?、，」』）")}

# The characters str.splitlines() treats as line breaks.
_NEWLINES = frozenset("\n\r\v\f\x1c\x1d\x1e\x85\u2028\u2029")
_RUNS = re.compile(r"\s+|\S+")
# Whitespace that holds no line break (a run of it is one plain word gap).
_GAP = "[^\\S" + "".join(sorted(_NEWLINES)).encode("unicode_escape").decode() + "]+"
# Left context pysbd gets at a decision point (whole words, at least this many characters).
# pysbd costs about 0.3 ms + 6 us per character a call; the whole buffer could be 600 chars.
_LOOKBACK_CHARS = 64
# hard_max_chars when not given, as a multiple of max_chars.
_HARD_FACTOR = 3


# -- plain text: where pysbd's answer is known without asking it --------------------------------
#
# Most decision points in prose are "... last word. N": words of ASCII letters, single spaces,
# commas, one terminal mark and the first letter of the next sentence. pysbd's answer there is
# fixed by its English rules (pysbd 0.3.4, pysbd/lang/common/, processor.py): with no digit,
# quote, bracket, line break or second period in the text, no list, number, ellipsis, quote,
# e-mail or multi-period rule can match, and the one period (or ! or ?) ends the sentence
# unless the word before it is an abbreviation in pysbd's lists (pysbd then keeps "Dr. N"
# together), a single letter ("J. R. R.", lists), or one of pysbd's exclamation words
# ("Yahoo!"). So for such text the result is computed here, a regular expression instead of
# ~100 regular expression passes; any other text goes to pysbd. Identity with pysbd is tested
# over generated and real text (tests/unit/text/test_segmenter.py).
_WORD = r"[A-Za-z]+(?:['’-][A-Za-z]+)*"  # apostrophes and hyphens only inside a word
_PLAIN = re.compile(
    rf"(?:{_WORD}[,;:]? )*(?P<last>{_WORD})(?:(?P<end>[.!?])(?P<next> [A-Z])?|[,;:]?)"
)
_ABBREVIATIONS = frozenset(
    a.strip().lower()
    for a in (*English.Abbreviation.ABBREVIATIONS, *English.Abbreviation.PREPOSITIVE_ABBREVIATIONS,
              *English.Abbreviation.NUMBER_ABBREVIATIONS)
)
_EXCLAMATION_WORDS = ("Yahoo", "Yum")  # pysbd's ExclamationWords that can end a plain word


def _plain_starts(text: str) -> list[int] | None:
    """pysbd's sentence starts of `text` when it is plain (see above), else None."""
    m = _PLAIN.fullmatch(text)
    if m is None:
        return None
    end = m.group("end")
    if end is None:
        return [0]  # no terminal mark: one sentence
    last = m.group("last")
    if len(last) < 2 or last.lower() in _ABBREVIATIONS:
        return None
    if end == "!" and last.endswith(_EXCLAMATION_WORDS):
        return None
    return [0] if m.group("next") is None else [0, len(text) - 1]


# Abbreviations pysbd's lists lack, after which it starts a sentence even where a number or a
# lowercase word follows ("approx. | 40 years old", "5 yrs. | old"): there no sentence starts.
# Before a capital it may end one ("It took 5 hrs. Then"), and pysbd's cut stands.
_GOES_ON_AFTER = re.compile(
    r"(?<![\w.])(?i:approx|est|ca|cf|avg|incl|excl|esp|resp|yrs?|hrs|mins|secs|wks?|mos)\.\s+$")
_GOES_ON = re.compile(r"[\da-z$€£¥(]")

_GAPS = re.compile(_GAP)
_GAPS_ANY = re.compile(r"\s+")


@functools.cache  # one pattern per language's triggers, not one per stream
def _quiet_stretch(triggers: frozenset[str]) -> re.Pattern[str]:
    """Gaps without a line break, each followed by a whole word; every word but the last
    ends in no trigger (so no gap of the stretch follows one)."""
    not_trigger = "[^\\s" + re.escape("".join(sorted(triggers))) + "]"
    return re.compile(rf"(?:{_GAP}\S*{not_trigger}(?!\S))*(?:{_GAP}\S+)?")


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


def _in_language(chars: int, weight: int) -> int:
    """A limit of `chars` characters of English speech, in characters of a language whose
    character carries `weight` of them."""
    return max(1, round(chars / weight))


def _cut(
    text: str, pos: int, limit: int, hard_limit: int, punct: Punctuation, *,
    clauses_only: bool = False,
) -> tuple[int, int] | None:
    """Where to end a piece of a long sentence that starts at text[pos].

    `text` holds single spaces only. Returns (end, next_start): the piece is text[pos:end], the
    rest starts at next_start. In order of preference: the last clause boundary within `limit`
    characters; the first clause boundary past it, within `hard_limit`; when the rest is a
    single clause longer than `hard_limit`, the last word boundary within it (or, a first word
    longer than that, the first word boundary). None: the rest stays one piece.
    ``clauses_only``: a clause boundary or None, never a word boundary.
    """
    n = len(text)
    stop = min(n, pos + hard_limit + 1)
    last_clause: tuple[int, int] | None = None
    last_word: tuple[int, int] | None = None
    for i in range(pos + 1, stop):
        ch = text[i]
        boundary: tuple[int, int] | None = None
        if ch == " ":
            last_word = (i, i + 1)
            before = text[i - 1]
            after = text[i + 1] if i + 1 < n else ""
            j = i - 1
            while j > pos and text[j] in punct.closers and text[j] != ")":
                j -= 1
            if before == ")" or after == "(" or text[j] in punct.clause_break:
                boundary = (i, i + 1)
        elif (ch == "—" and i + 1 < n and text[i - 1] != " " and text[i + 1] != " "
              and i + 1 - pos <= hard_limit):
            # An unspaced em dash ("word—word") is a clause boundary between two words.
            boundary = (i + 1, i + 1)
        if boundary is not None:
            if boundary[0] - pos <= limit:
                last_clause = boundary
            else:
                return last_clause or boundary  # the first clause boundary past the limit
    if last_clause is not None or clauses_only:
        return last_clause
    if n - pos <= hard_limit:
        return None
    if last_word is not None:
        return last_word
    space = text.find(" ", pos + 1)
    return None if space < 0 else (space, space + 1)


class Segmenter:
    """Turns a stream of text fragments into sentences; see the module docstring."""

    def __init__(
        self, *, max_chars: int = 300, hard_max_chars: int | None = None, language: str = "en",
        first_max_chars: int | None = None, whole_chunks: bool = False,
    ) -> None:
        if max_chars < 1:
            raise ValueError(f"max_chars must be >= 1, got {max_chars}")
        if first_max_chars is not None and not 1 <= first_max_chars <= max_chars:
            raise ValueError(f"first_max_chars must be in 1..max_chars, got {first_max_chars}")
        hard = _HARD_FACTOR * max_chars if hard_max_chars is None else hard_max_chars
        if hard < max_chars:
            raise ValueError(f"hard_max_chars must be >= max_chars ({max_chars}), got {hard}")
        key = base_language(language) or "en"
        # The limits are given in characters of English speech (see "Languages" above).
        weight = speech_per_char(key)
        self.max_chars = _in_language(max_chars, weight)
        self.hard_max_chars = _in_language(hard, weight)
        self.first_max_chars = (None if first_max_chars is None
                                else _in_language(first_max_chars, weight))
        # A voice that makes a chunk's audio whole before any of it plays: the first
        # first_max_chars of a run go out as clauses, not only its first sentence's.
        self.whole_chunks = whole_chunks
        self._first = False  # the next chunk is cut as a run's first (see _start_run)
        self._run_chars = 0  # characters of the run's chunks so far
        self._start_run()
        self.punctuation = PUNCTUATION.get(key, _LATIN)
        self._triggers = self.punctuation.gap_triggers
        self._quiet = _quiet_stretch(self._triggers)
        self._pysbd = pysbd.Segmenter(language=key, clean=False)
        self._plain = key == "en"  # plain English text skips pysbd: see _plain_starts
        self._breaks = _UNSPACED_BREAKS.get(key)  # None: a language with word spaces
        self._after_break = False  # unspaced text: the last character was a break mark
        self._inside = ""  # ... a run of marks that may be inside a word (`_gapped`)
        self._last = ""  # ... the last character ("" for whitespace)
        self._buf = ""  # normalized unfinished tail: single " " or "\n" gaps, no trailing space
        self._pending_ws = False  # whitespace seen after the last word, not yet written
        self._pending_nl = False  # ... and it held a line break

    @property
    def buffered_chars(self) -> int:
        """Normalized characters held back, waiting for their sentence to complete."""
        return len(self._buf)

    def feed(self, fragment: str) -> list[str]:
        """Add a fragment of text; return the chunks that became complete, in order."""
        out: list[str] = []
        text = _clean(fragment) if self._breaks is None else self._gapped(_clean(fragment))
        pos, n = 0, len(text)
        while pos < n:
            if self._buf and not self._pending_ws and text[pos].isspace():
                pos = self._quiet_words(text, pos)
                if pos == n:
                    break
            match = _RUNS.match(text, pos)
            assert match is not None  # every character is whitespace or not
            run = match.group()
            if run[0].isspace():
                self._whitespace(run, out)
            else:
                self._word(run, out)
            pos = match.end()
        return out

    def _quiet_words(self, text: str, pos: int) -> int:
        """Append, in one step, the words from text[pos] (a gap after a word) on whose gaps
        run by run (`_whitespace`, then `_word`) would decide nothing: no line break, no
        gap after a trigger, the buffer within the lengths `_whitespace` checks. Returns
        where run-by-run handling resumes. Text fed whole (a paragraph) then costs a few
        steps per sentence, not two per word; fed character by character it never gets here
        with a whole gap and word, so the tests compare the two."""
        if self._buf[-1] in self._triggers:
            return pos
        match = self._quiet.match(text, pos)
        if match is None or match.end() == pos:
            return pos
        words = match.group().split()
        # _whitespace acts once the buffer is longer than the first-clause limit (while the
        # run's first sentence is open) or twice max_chars: words go in while it is not.
        limit = 2 * self.max_chars
        if self._first and self.first_max_chars is not None:
            limit = min(limit, self.first_max_chars)
        added = " " + " ".join(words)
        if len(self._buf) + len(added) - 1 - len(words[-1]) <= limit:  # before the last gap
            self._buf += added
            return match.end()
        size = len(self._buf)
        taken = 0
        for word in words:
            if size > limit:
                break
            size += 1 + len(word)
            taken += 1
        if taken == 0:
            return pos
        self._buf += " " + " ".join(words[:taken])
        # Resume at the gap before the first word not taken.
        return [gap.start() for gap in _GAPS.finditer(text, pos, match.end())][taken]

    def flush(self) -> list[str]:
        """Emit everything buffered, even an unfinished sentence. The next text starts a new run
        of speech (its first sentence may be cut at a clause)."""
        out = self._emit_buffer()
        self._start_run()
        return out

    def _emit_buffer(self) -> list[str]:
        out: list[str] = []
        self._first_clause(out)
        if self._buf:
            starts = self._sentence_starts(self._buf)
            for a, b in zip(starts, [*starts[1:], len(self._buf)], strict=True):
                self._emit_sentence(self._buf[a:b], out)
        self._reset_buffer()
        return out

    def clear(self) -> None:
        """Drop buffered text (barge-in). The next text starts a new run of speech."""
        self._reset_buffer()
        self._after_break = False
        self._inside = self._last = ""
        self._start_run()

    def _start_run(self) -> None:
        """The next chunk starts a run of speech: a long first sentence is cut at a clause."""
        self._first = self.first_max_chars is not None
        self._run_chars = 0

    def _gapped(self, text: str) -> str:
        """Unspaced text with a gap after each run of break marks (see _UNSPACED_BREAKS).
        Decided from the characters alone, so fragments cut anywhere give the same gaps."""
        assert self._breaks is not None
        out = []
        for ch in text:
            if self._after_break and not ch.isspace() and ch not in self._breaks:
                # A mark inside a word is no break: ASCII ? and ! in a run of ASCII
                # ("search?q=1": a URL's query is no sentence, as in spaced text), a
                # full-width comma between digits ("１，２３４円": one number, never cut).
                inside = (ch.isascii() if self._inside == "ascii"
                          else ch.isdigit() if self._inside == "digit" else False)
                if not inside:
                    out.append(" ")
            out.append(ch)
            if ch in self._breaks:
                if not self._after_break:
                    self._inside = ("ascii" if ch in "!?" and self._last.isascii()
                                    else "digit" if ch == "，" and self._last.isdigit() else "")
                elif not (self._inside == "ascii" and ch in "!?"):
                    self._inside = ""
            self._after_break = ch in self._breaks
            self._last = "" if ch.isspace() else ch
        return "".join(out)

    # -- input --------------------------------------------------------------------------------

    def _reset_buffer(self) -> None:
        self._buf = ""
        self._pending_ws = False
        self._pending_nl = False

    def _word(self, run: str, out: list[str]) -> None:
        if self._pending_ws:
            trigger = self._pending_nl or self._buf[-1] in self._triggers
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
        if self._breaks is not None and run:
            self._first_clause(out, in_word=True)

    def _whitespace(self, run: str, out: list[str]) -> None:
        if not self._buf:
            return  # leading whitespace is trimmed
        if not self._pending_ws:
            self._pending_ws = True
            self._first_clause(out)
            if len(self._buf) > 2 * self.max_chars:
                self._overflow(out)
        if self._buf and not self._pending_nl and any(ch in _NEWLINES for ch in run):
            # The line break is a decision point too, whichever fragment brings it.
            self._pending_nl = True
            self._line_break(out)

    def _overflow(self, out: list[str]) -> None:
        # An unfinished sentence this long would be cut anyway: emit all but its last piece
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
        closers = self.punctuation.closers
        while j > 0 and self._buf[j] in closers:
            j -= 1
        if j >= 0 and self._buf[j] in self.punctuation.sentence_end:
            # Terminal punctuation then a line break: everything buffered is complete, and
            # the rest of this whitespace run becomes leading whitespace (trimmed).
            out.extend(self._emit_buffer())

    def _first_clause(self, out: list[str], *, in_word: bool = False) -> None:
        """A run's first sentence, once longer than first_max_chars: its first clause goes out
        alone when one ends within first_max_chars; either way the decision is taken once, when
        a word completes. `in_word`: a word of unspaced text grew past the limit (see "A long
        first sentence"): a clause within the limit goes out now; no decision otherwise."""
        limit = self.first_max_chars
        while self._first and limit is not None and len(self._buf) > limit:
            # A word just completed ends at a gap: a clause mark there is a boundary too.
            text = self._buf.replace("\n", " ") + (" " if self._pending_ws else "")
            reach = limit if in_word or not self.whole_chunks else 2 * limit
            cut = _cut(text, 0, limit, reach, self.punctuation, clauses_only=True)
            if cut is None:
                if not in_word and (not self.whole_chunks or len(self._buf) > reach):
                    self._first = False  # decided: no clause goes out alone
                return
            self._first = False  # _emit_chunk says whether the next chunk is cut so too
            self._emit_chunk(text[: cut[0]], out)
            if cut[1] > len(self._buf):
                self._reset_buffer()  # the whole buffer was the clause
            else:
                self._drop_head(cut[1])

    def _drop_head(self, start: int) -> None:
        if start <= 0:
            return
        self._buf = self._buf[start:]

    def _sentence_starts(self, text: str) -> list[int]:
        """Offsets where pysbd starts each sentence of text; always begins with 0."""
        if self._plain:
            known = _plain_starts(text)
            if known is not None:
                return known
        return self._pysbd_starts(text)

    def _pysbd_starts(self, text: str) -> list[int]:
        """`_sentence_starts` from pysbd itself (~0.3 ms + 6 us per character a call)."""
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
            pos = at + len(piece)
            if at > 0 and not text[at - 1].isspace():
                # A sentence starts after a gap, never inside a word: pysbd cuts a URL's query
                # after its "?" ("example.com/a?" | "b=1"). Marks it cut off the end of a
                # sentence ("claim.**") stay with that sentence. (Unspaced languages get their
                # gaps from _gapped.)
                gap = _GAPS_ANY.search(text, at)
                if gap is None or _speakable(text[at:gap.start()]):
                    continue
                at = gap.end()
            if _GOES_ON.match(text, at) and _GOES_ON_AFTER.search(text, 0, at):
                continue
            if at > starts[-1]:
                starts.append(at)
        return starts

    # -- output -------------------------------------------------------------------------------

    def _emit_sentence(self, sentence: str, out: list[str]) -> None:
        text = " ".join(sentence.split())
        for a, b in self._plan(text):
            self._emit_chunk(text[a:b], out)

    def _emit_chunk(self, chunk: str, out: list[str]) -> None:
        chunk = chunk.strip()
        if self._breaks is not None:  # the gaps _gapped added leave again
            chunk = "".join(ch for i, ch in enumerate(chunk)
                            if ch != " " or chunk[i - 1] not in self._breaks)
        chunk = unmark(chunk)
        if _speakable(chunk):
            out.append(chunk)
            self._run_chars += len(chunk)
            self._first = (self.whole_chunks and self.first_max_chars is not None
                           and self._run_chars < self.first_max_chars)

    def _plan(self, text: str) -> list[tuple[int, int]]:
        """Spans of one sentence `text` (single spaces) to emit: whole unless over max_chars."""
        spans: list[tuple[int, int]] = []
        pos, n = 0, len(text)
        while n - pos > self.max_chars:
            cut = _cut(text, pos, self.max_chars, self.hard_max_chars, self.punctuation)
            if cut is None:
                break
            spans.append((pos, cut[0]))
            pos = cut[1]
        if pos < n:
            spans.append((pos, n))
        return spans
