"""Markdown's formatting marks out of a chunk's text (pure).

An LLM writes markdown, and espeak-ng reads its marks aloud: "**Note:** see [the docs](https://
example.com)" was spoken "asterisk asterisk note asterisk asterisk see the docs h t t p s colon
slash slash example dot com". The marks are formatting, not words, so a chunk's text goes out
without them: emphasis and strikethrough marks (`*`, `**`, `***`, `~~`), a heading's `#`s and a
`*` or `+` bullet at the chunk's start, a link's or image's target (`[text](url)` is
"text"), a footnote's mark ("details[^1]", "[^1]: The note", espeak-ng: "details one"), and the
HTML tags an LLM writes into markdown, by name ("line<br>line" was "line B R line";
"List<String>" is no tag and stays). Marks espeak-ng does not read (`_`, `` ` ``, `>`, `-`
and `|`) are left as they are.

It works on one chunk, after the segmenter cut it (so a chunk's text stays independent of how
the text came in fragments): a mark whose pair is in the previous chunk ("**Bold claim." |
"** Here") goes too. A `*` that is not formatting stays: between two spaces ("2 * 3") or between
two ASCII letters or digits ("2*3", "x*y").
"""

from __future__ import annotations

import re

__all__ = ["unmark"]

# [text](target) and ![alt](target); a target may hold one level of parentheses (Wikipedia).
_LINK = re.compile(r"!?\[([^\[\]]*[^\W_][^\[\]]*)\]\((?:[^()\s]|\([^()\s]*\))*\)")
# A heading's hashes, or a "*" or "+" bullet, at the start of a chunk.
_LEAD = re.compile(r"^(?:#{1,6}|[*+])\s+")
_EMPHASIS = re.compile(r"\*+|~~+")
_FOOTNOTE = re.compile(r"\[\^[^\]\s]+\]:?")
# A tag that breaks a line or a block leaves a gap ("one<br>two"); an inline one leaves none.
_HTML_TAG = re.compile(
    r"<(?P<block>/?(?:br|hr|p|div|li|ul|ol|center|table|tr|td|th|h[1-6]|blockquote)\b)?"
    r"(?(block)|/?(?:b|i|u|s|em|strong|del|ins|mark|small|sup|sub|span|code|kbd|a|font)\b)"
    r"(?:\s[^<>]*)?/?>", re.IGNORECASE)


def _keep(text: str, match: re.Match[str]) -> bool:
    """A run of `*` or `~` that is not formatting: between two spaces, or two ASCII letters or
    digits (in a language written without spaces, "で**音声**を" is emphasis)."""
    start, end = match.span()
    if start == 0 or end == len(text):
        return False
    around = text[start - 1] + text[end]
    return around == "  " or (around.isascii() and around.isalnum())


def unmark(text: str) -> str:
    """``text`` (single spaces, trimmed) without markdown's formatting marks, single-spaced and
    trimmed again."""
    if not any(ch in text for ch in "*~#+[<"):  # most chunks: nothing to do
        return text
    if "<" in text:
        text = _HTML_TAG.sub(lambda m: " " if m["block"] else "", text)
    text = _FOOTNOTE.sub("", text)
    text = _LINK.sub(r"\1", text)
    text = _LEAD.sub("", text)
    text = _EMPHASIS.sub(lambda m: m.group() if _keep(text, m) else "", text)
    return " ".join(text.split())
