"""Text in, speakable chunks out (pure): the segmenter."""

from __future__ import annotations

from litestream.text.segmenter import PUNCTUATION, Punctuation, Segmenter

__all__ = ["PUNCTUATION", "Punctuation", "Segmenter"]
