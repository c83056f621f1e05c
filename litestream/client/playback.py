"""A simulated listener of a protocol-v1 stream: pure, the caller passes `now`.

Starts playing at the first audio frame and plays in real time; reports stalls, chunk
lateness, which chunks were fully heard and, given the chunks' `words` events, which words.
The voice agent, the locust user and the realtime benchmark share it (through
`litestream.client`, which re-exports it).
"""

from __future__ import annotations

import math
import re
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

from litestream.client.events import Chunk, Ready, Word, Words
from litestream.protocol import BYTES_PER_SAMPLE

# A markdown link's target, "](url)" (one level of parentheses inside, as Wikipedia's have): the
# server speaks "[text](url)" as "text" (text/markdown.py).
_LINK_TARGET = re.compile(r"\]\((?:[^()\s]|\([^()\s]*\))*\)")


@dataclass(frozen=True)
class Stall:
    """The simulated listener ran dry: silence it did not ask for."""

    at_s: float  # caller's clock when the buffer ran dry
    ms: float  # how long it stayed dry
    seq: int  # the chunk whose audio ended the stall


@dataclass
class ChunkPlayback:
    """Where one chunk sits on the listener's timeline (ms of audio from playback start)."""

    seq: int
    text: str
    start_ms: float  # position of its first sample on the local playback timeline
    duration_ms: float  # from the `chunk` message
    received_ms: float = 0.0  # audio of it that arrived
    arrived_at: float | None = None  # caller's clock at its first audio frame
    lateness_ms: float | None = None  # how long the listener waited for it; 0 if on time
    dropped: bool = False  # a clear cut it: audio after the clear point is never played
    heard_at_clear_ms: float = 0.0  # for a dropped chunk: how much of it was heard
    server_start_ms: int = 0  # the chunk's start_ms (the clock of its words' times)
    words: tuple[Word, ...] | None = None  # from its `words` event; None if none came

    @property
    def end_ms(self) -> float:
        return self.start_ms + max(self.duration_ms, self.received_ms)

    def words_begun(self, heard_ms: float) -> tuple[Word, ...]:
        """Its words whose first sound is within the first `heard_ms` of it (a word counts as
        heard once its start has played, as Pipecat releases a word's text frame)."""
        return tuple(w for w in self.words or ()
                     if w.start_ms - self.server_start_ms < heard_ms)


@dataclass(frozen=True)
class HeardText:
    """What a listener heard of some chunks, split after the last word heard: `heard` runs to
    the end of that word and the punctuation right after it, `unheard` is the rest."""

    heard: str
    unheard: str


class PlaybackClock:
    """A simulated listener: starts at the first audio frame, plays in real time.

    Pure: no clock calls inside; every method takes the caller's `now` in seconds (any
    monotonic clock). Calls must come in time order. This is the listener of protocol-v1's
    Timing promise: a stall is time the listener spent dry after playback started and before
    more audio came. The clock cannot tell a server stall from a client that simply had no
    more text to send; callers that send text slowly must read stalls with that in mind.
    """

    def __init__(self, sample_rate: int, format: str = "s16le", *, channels: int = 1,
                 min_stall_ms: float = 1.0) -> None:
        self.sample_rate = sample_rate
        self.bytes_per_ms = sample_rate * channels * BYTES_PER_SAMPLE[format] / 1000.0
        # Rounding of duration_ms and float error make sub-millisecond "stalls"; not audible.
        self.min_stall_ms = min_stall_ms
        self.first_audio_at: float | None = None
        self.chunks: dict[int, ChunkPlayback] = {}
        self.stalls: list[Stall] = []
        self._received_ms = 0.0  # end of audio on the local timeline
        self._played_ms = 0.0  # play head at `_last_t`
        self._last_t: float | None = None
        self._dry_since: float | None = None  # when the play head caught up with the audio
        self._playing = False  # False before the first frame and after a clear
        self._discard_through: int | None = None  # after clear(): drop audio of seq <= this
        self._discarding = False  # between clear() and on_cleared(): drop all audio

    @classmethod
    def for_ready(cls, ready: Ready, **kwargs: Any) -> PlaybackClock:
        return cls(ready.sample_rate, ready.format, channels=ready.channels, **kwargs)

    # -- feeding

    def _advance(self, now: float) -> None:
        """Move the play head to `now`, noting when the listener ran dry."""
        if self._last_t is not None and now < self._last_t:
            raise ValueError(f"time went backwards: {now} < {self._last_t}")
        if self._playing and self._last_t is not None and self._dry_since is None:
            head = self._played_ms + (now - self._last_t) * 1000.0
            if head >= self._received_ms:
                self._dry_since = self._last_t + (self._received_ms - self._played_ms) / 1000.0
                head = self._received_ms
            self._played_ms = head
        self._last_t = now

    def on_chunk(self, chunk: Chunk, now: float) -> None:
        self._advance(now)
        # Every frame of earlier chunks came before this chunk (protocol-v1: Server to client),
        # so it starts where received audio ends.
        self.chunks[chunk.seq] = ChunkPlayback(
            seq=chunk.seq, text=chunk.text, start_ms=self._received_ms,
            duration_ms=float(chunk.duration_ms), dropped=self._discarding,
            server_start_ms=chunk.start_ms,
        )

    def on_words(self, words: Words) -> None:
        """The chunk's `words` event (it follows the chunk's `chunk` event)."""
        record = self.chunks.get(words.seq)
        if record is not None:
            record.words = words.words

    def on_audio(self, seq: int, nbytes: int, now: float) -> float:
        """An audio frame arrived. Returns the stall it ended, in ms (0 if none)."""
        if self._discarding or (self._discard_through is not None
                                and seq <= self._discard_through):
            self._advance(now)
            return 0.0
        self._advance(now)
        stall_ms = 0.0
        if not self._playing:
            self._playing = True
            if self.first_audio_at is None:
                self.first_audio_at = now
        elif self._dry_since is not None:
            dry_ms = (now - self._dry_since) * 1000.0
            if dry_ms > self.min_stall_ms:
                stall_ms = dry_ms
                self.stalls.append(Stall(at_s=self._dry_since, ms=dry_ms, seq=seq))
        self._dry_since = None
        frame_ms = nbytes / self.bytes_per_ms
        self._received_ms += frame_ms
        record = self.chunks.get(seq)
        if record is not None:
            if record.arrived_at is None:
                record.arrived_at = now
                record.lateness_ms = stall_ms
            record.received_ms += frame_ms
        return stall_ms

    def clear(self, now: float) -> None:
        """The listener stops playback now (barge-in): unplayed audio is thrown away.

        Audio keeps arriving until the server's `cleared`; it is dropped until `on_cleared`.
        The next audio after that starts playback afresh (no stall: the silence was asked for).
        """
        self._advance(now)
        for record in self.chunks.values():
            if not record.dropped and record.end_ms > self._played_ms + self.min_stall_ms:
                record.heard_at_clear_ms = self._heard_ms(record, self._played_ms)
                record.dropped = True
        self._received_ms = self._played_ms
        self._playing = False
        self._dry_since = None
        self._discarding = True

    def on_cleared(self, seq: int) -> None:
        """The server's `cleared`: audio of chunks up to `seq` will not come; later audio plays."""
        self._discarding = False
        self._discard_through = seq

    # -- queries (do not change state)

    def played_ms(self, t: float) -> float:
        """Audio the listener has heard by `t`, ms."""
        if not self._playing or self._last_t is None or self._dry_since is not None:
            return self._played_ms
        return min(self._received_ms, self._played_ms + max(0.0, t - self._last_t) * 1000.0)

    def buffered_ms(self, t: float) -> float:
        """Audio received but not yet played at `t`, ms."""
        return self._received_ms - self.played_ms(t)

    def ends_at(self, t: float) -> float:
        """When playback of everything received so far ends, if nothing else arrives."""
        return t + self.buffered_ms(t) / 1000.0

    @property
    def stall_count(self) -> int:
        return len(self.stalls)

    @property
    def stall_ms(self) -> float:
        return math.fsum(s.ms for s in self.stalls)

    def _heard_ms(self, c: ChunkPlayback, head: float) -> float:
        if c.dropped:
            return c.heard_at_clear_ms
        if c.received_ms == 0:
            return 0.0
        return min(max(0.0, head - c.start_ms), c.end_ms - c.start_ms)

    def _is_whole(self, c: ChunkPlayback, heard_ms: float) -> bool:
        return heard_ms > 0 and heard_ms >= c.end_ms - c.start_ms - self.min_stall_ms

    def fully_played(self, t: float) -> list[ChunkPlayback]:
        """Chunks whose every sample was heard by `t`, in seq order."""
        head = self.played_ms(t)
        return [c for _, c in sorted(self.chunks.items())
                if self._is_whole(c, self._heard_ms(c, head))]

    def partly_played(self, t: float) -> list[tuple[ChunkPlayback, float]]:
        """Chunks begun but not finished by `t` (or cut by a clear), with the fraction heard."""
        head = self.played_ms(t)
        out: list[tuple[ChunkPlayback, float]] = []
        for _, c in sorted(self.chunks.items()):
            heard = self._heard_ms(c, head)
            if heard > 0 and not self._is_whole(c, heard):
                out.append((c, heard / (c.end_ms - c.start_ms)))
        return out

    def heard_text(self, t: float, *, from_seq: int = 0) -> HeardText:
        """The text of chunks `from_seq` on, split where the listener was at `t`: whole chunks
        heard, then a chunk cut short up to the end of its last word begun (by its words'
        times; without them nothing of it counts as heard), then everything not heard."""
        head = self.played_ms(t)
        heard: list[str] = []
        unheard: list[str] = []
        for _, c in sorted(self.chunks.items()):
            if c.seq < from_seq:
                continue
            heard_ms = self._heard_ms(c, head)
            if self._is_whole(c, heard_ms):
                heard.append(c.text)
                continue
            begun = c.words_begun(heard_ms) if heard_ms > 0 else ()
            cut = _after_punctuation(c.text, begun[-1].char_end) if begun else 0
            heard.append(c.text[:cut].strip())
            unheard.append(c.text[cut:].strip())
        return HeardText(join_text(heard), join_text(unheard))

    def unchunked(self, sent: str) -> str:
        """What of `sent`, the text sent on the stream since this clock's timeline began, no
        chunk announced yet carries: text the server still held (a `listener` stream is
        segmented and synthesized only as playback needs it), never spoken. After a barge-in
        it belongs to what was not heard, after the last chunk's unheard rest.

        A chunk's text is the sent text with whitespace, control characters and markdown
        marks taken out, in order (text/segmenter.py), so each chunk's characters are found in
        `sent` one after another; what follows the last of them is the rest. A link's target
        (``[text](url)`` is spoken "text") is not searched: its characters are in no chunk."""
        visible = _LINK_TARGET.sub(lambda m: " " * len(m.group()), sent)
        at = 0
        for _, c in sorted(self.chunks.items()):
            for ch in c.text:
                if ch.isspace():
                    continue
                found = visible.find(ch, at)
                if found >= 0:
                    at = found + 1
        return sent[_after_punctuation(visible, at):].strip()

    def unplayed(self, t: float) -> list[ChunkPlayback]:
        """Chunks announced of which the listener had heard nothing by `t`."""
        head = self.played_ms(t)
        return [c for _, c in sorted(self.chunks.items()) if self._heard_ms(c, head) <= 0]


def unspaced_script(char: str) -> bool:
    """A character of a script written without spaces between words (kana, CJK ideographs,
    Hangul, and the CJK and full-width punctuation around them)."""
    return ("\u3000" <= char <= "\u9fff" or "\uac00" <= char <= "\ud7af"
            or "\uff00" <= char <= "\uffef")


def join_text(parts: Iterable[str]) -> str:
    """Pieces of a turn's text (chunks) joined as it reads: with a space, but none between two
    of a script without spaces ("はい。" + "東京では" is "はい。東京では")."""
    out = ""
    for part in parts:
        if not part:
            continue
        if out and not (unspaced_script(out[-1]) and unspaced_script(part[0])):
            out += " "
        out += part
    return out


def _after_punctuation(text: str, at: int) -> int:
    """`at` moved past the punctuation that ends a word there ("moment." -> after the stop)."""
    while at < len(text) and not text[at].isspace() and not text[at].isalnum():
        at += 1
    return at
