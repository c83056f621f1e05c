"""What a stream was sent and has not yet spoken in full (pure: no I/O, no clock).

A stream can be lost mid-turn: its server is killed, or its drain runs out of grace. The text
it was sent and had not spoken is then lost unless the client sends it again on a new stream
(a WebSocket that reaches another replica). `Unspoken` keeps that text, with the `flush` marks
between it, and lets go of it as the server speaks it: a chunk is spoken once its audio is all
in, which protocol v1 says is when the next chunk's `chunk` event arrives ("every frame of
chunk seq before any of seq+1") or the `flushed` that follows it.

A chunk's text is the sent text normalized (whitespace, control characters, markdown marks:
litestream/text/segmenter.py), so it is matched against the sent text by its letters and
digits only, in order, case-folded: the sent text up to the last one matched, and the marks
right after it, is spoken. That holds for text without spaces between words (Japanese) too.
A chunk whose letters cannot be followed in the sent text lets go of nothing: sending a
sentence twice beats losing it. (A markdown link's target right at a chunk's end is left to
be sent again: its letters are not in the chunk.)
"""

from __future__ import annotations

from collections import deque
from dataclasses import dataclass


@dataclass
class Segment:
    text: str  # sent, not yet spoken
    flush: str | None = None  # the flush sent after it (the caller's tag for it); None: open


class Unspoken:
    """Text sent on a stream, less what the server has spoken; `segments()` is what to send
    again, in order, on a new stream."""

    def __init__(self) -> None:
        self._segments: deque[Segment] = deque()

    def sent_text(self, text: str) -> None:
        if self._segments and self._segments[-1].flush is None:
            self._segments[-1].text += text
        else:
            self._segments.append(Segment(text))

    def sent_flush(self, tag: str) -> None:
        if self._segments and self._segments[-1].flush is None:
            self._segments[-1].flush = tag
        else:
            self._segments.append(Segment("", tag))

    def spoken(self, chunk_text: str) -> None:
        """A chunk's audio is all in: let go of the sent text it covers."""
        # The oldest segment with something left to say (one fully spoken may wait for its
        # `flushed` while the next one's chunks begin).
        head = next((s for s in self._segments if any(ch.isalnum() for ch in s.text)), None)
        if head is None:
            return
        wanted = [ch for ch in chunk_text.casefold() if ch.isalnum()]
        at = 0
        text = head.text.casefold()  # casefold keeps lengths for all but a few scripts
        if len(text) != len(head.text):
            return
        for ch in wanted:
            while at < len(text) and text[at] != ch:
                at += 1
            if at == len(text):
                return  # not followed: keep it all (see the module's doc)
            at += 1
        # The marks the chunk ended on (".", "**", "」") go with it; the next word stays.
        while at < len(text) and not text[at].isspace() and not text[at].isalnum():
            at += 1
        head.text = head.text[at:]

    def flushed(self) -> None:
        """The server's `flushed`: everything sent before the oldest flush is spoken."""
        if self._segments and self._segments[0].flush is not None:
            self._segments.popleft()

    def clear(self) -> None:
        """A `clear` was sent: what it drops is not to be spoken, here or anywhere."""
        self._segments.clear()

    def drop_turn(self, flush: str | None = None) -> None:
        """Let go of the last turn's text, which a new turn makes out of place: the text sent
        since the last flush mark (`flush` None: that turn never ended), or the last segment
        if its mark is `flush` (that turn ended with no stream to send its flush on, and was
        kept for the stream replacing the lost one, which did not come before the new turn).
        Earlier turns, ended on a stream, keep theirs."""
        if self._segments and self._segments[-1].flush == flush:
            self._segments.pop()

    def __bool__(self) -> bool:
        """Something (text, or a flush mark) is to be sent again on a new stream."""
        return bool(self._segments)

    def segments(self) -> list[Segment]:
        return [Segment(s.text, s.flush) for s in self._segments]

    def chars(self) -> int:
        return sum(len(s.text) for s in self._segments)
