"""Tests for litestream/text/markdown.py: markdown's formatting marks leave a chunk's text, and
marks that are words ("2 * 3") stay."""

from __future__ import annotations

import pytest

from litestream.text.markdown import unmark

CASES: list[tuple[str, str]] = [
    ("**Bold claim.**", "Bold claim."),
    ("Here is *italic* and ***both*** and ~~gone~~ text.",
     "Here is italic and both and gone text."),
    ("**Note:** read this.", "Note: read this."),
    # A mark whose pair went with the previous chunk.
    ("** Here it is.", "Here it is."),
    ("Bold claim.**", "Bold claim."),
    ("# Heading", "Heading"),
    ("### Step 2: install", "Step 2: install"),
    ("* a star bullet", "a star bullet"),
    ("+ a plus bullet", "a plus bullet"),
    ("See [the docs](https://example.com/a/b?c=d).", "See the docs."),
    ("![a cat](cat.png) sits.", "a cat sits."),
    ("Read [Python (language)](https://en.wikipedia.org/wiki/Python_(language)) now.",
     "Read Python (language) now."),
    ("1. **Install** it", "1. Install it"),
    ("WebSocketで**音声**を送ります。", "WebSocketで音声を送ります。"),
    # Footnotes and HTML tags.
    ("See the note[^1].", "See the note."),
    ("[^note]: The footnote text.", "The footnote text."),
    ("Line one<br>Line two.<br/>Three<BR />four.", "Line one Line two. Three four."),
    ("A <b>bold</b> <a href=\"https://x.com\">link</a> and x<sup>2</sup>.",
     "A bold link and x2."),
    ("<p>One.</p><p>Two.</p>", "One. Two."),
    # Not formatting: arithmetic, code, a hashtag, a number sign, a lone tilde, plain brackets.
    ("2 * 3 = 6 and 2*3 too, x*y.", "2 * 3 = 6 and 2*3 too, x*y."),
    ("We're #1 and it costs ~5 dollars.", "We're #1 and it costs ~5 dollars."),
    ("The list [1, 2] (sorted) is fine.", "The list [1, 2] (sorted) is fine."),
    ("C++ and a+b are fine.", "C++ and a+b are fine."),
    # Not a tag: generics, comparisons.
    ("Use List<String> if a<b and 2 < 3 > 1.", "Use List<String> if a<b and 2 < 3 > 1."),
    ("Plain text.", "Plain text."),
    ("***", ""),
]


@pytest.mark.parametrize(("text", "expected"), CASES)
def test_unmark(text: str, expected: str) -> None:
    assert unmark(text) == expected


def test_unmark_leaves_text_without_marks_alone() -> None:
    text = "Dr. Smith paid $4.50 at 5 p.m., i.e. late (again) — fine?"
    assert unmark(text) is text
