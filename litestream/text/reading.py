"""How English text is read aloud where espeak-ng's own reading is not what a speaker says.

Pure: text in, text out. `engine/phonemize.py` applies it to each line it hands espeak-ng for an
English voice, and to each word alone for word timestamps, so the chunk's text (what clients see,
what `char_start`/`char_end` index) is never changed; only what is spoken is.

espeak-ng reads an amount in the order it is written: "$5.99" is "dollar five point nine nine",
"€20" "euros twenty", "£1m" "pound one m". A speaker says "five dollars and ninety-nine cents",
"twenty euros", "one million pounds". And "5-10 minutes" is "five dash ten minutes", where a
speaker says "five to ten". The rules, each for a form that has one reading:

- an amount in dollars, euros, pounds or yen, the symbol before the number or after it ("$5",
  "$1,234", "$5.99", "$0.50", "€20", "20 €", "£1m", "$1.5 million", "$3bn"): the number, then
  the scale word, then the currency's name, singular for exactly 1; two decimals are cents (or
  pence), one or three are a decimal number ("$2.5" is "two point five dollars");
- a range of two small numbers ("5-10", "3–5", "9-5"): "5 to 10". Only numbers of at most three
  digits joined with no space (spaced, "10 - 5" is more likely a subtraction), not part of a
  longer chain of them, so a phone number ("555-1234", "1-800-555-0199") or a date
  ("2026-12-07") is left as it is.
"""

from __future__ import annotations

import re

__all__ = ["read_english"]

# symbol -> (one, many, the hundredth's one, many)
_CURRENCIES = {
    "$": ("dollar", "dollars", "cent", "cents"),
    "€": ("euro", "euros", "cent", "cents"),
    "£": ("pound", "pounds", "penny", "pence"),
    "¥": ("yen", "yen", "sen", "sen"),
}
_SCALES = {"k": "thousand", "thousand": "thousand", "m": "million", "mn": "million",
           "million": "million", "b": "billion", "bn": "billion", "billion": "billion",
           "t": "trillion", "tn": "trillion", "trillion": "trillion"}

_NUMBER = r"(?P<whole>\d{1,3}(?:,\d{3})+|\d+)(?:\.(?P<decimals>\d+))?"
_SCALE = (r"(?i:\s?(?P<scale>k|m|mn|b|bn|t|tn)\b"
          r"|\s(?P<scale_word>thousand|million|billion|trillion)\b)")
_SYMBOL = "[" + re.escape("".join(_CURRENCIES)) + "]"
# "$5", "$ 5", "$1.5m", "$2 million"; not inside a word or another amount ("US$5" is left).
_SYMBOL_FIRST = re.compile(rf"(?<![\w$€£¥])(?P<symbol>{_SYMBOL})\s?{_NUMBER}{_SCALE}?(?![\d,.]\d)")
# "20€", "20 €", "5$": the symbol right after a number that no other symbol precedes.
_SYMBOL_AFTER = re.compile(rf"(?<![\w$€£¥.,]){_NUMBER}\s?(?P<symbol>{_SYMBOL})(?![\w$€£¥])")
# "5-10", "3–5": two numbers of 1-3 digits joined by a hyphen or an en dash, in no longer chain.
# Spaced ("10 - 5") it is more likely a subtraction, and is left.
_RANGE = re.compile(r"(?<![\w.,\-–])(\d{1,3})[-–](\d{1,3})(?![\w\-–]|[.,]\d)")


def read_english(text: str) -> str:
    """``text`` with amounts and ranges written as they are read (module doc)."""
    if not any(ch.isdigit() for ch in text):
        return text
    text = _SYMBOL_FIRST.sub(_amount, text)
    text = _SYMBOL_AFTER.sub(_amount, text)
    return _RANGE.sub(r"\1 to \2", text)


def _amount(match: re.Match[str]) -> str:
    one, many, small_one, small_many = _CURRENCIES[match["symbol"]]
    whole, decimals = match["whole"], match["decimals"]
    groups = match.groupdict()
    scale_key = (groups.get("scale") or groups.get("scale_word") or "").lower()
    scale = _SCALES.get(scale_key, "")
    if scale:  # "$1.5 million": one point five million dollars
        number = whole + (f".{decimals}" if decimals else "")
        return f"{number} {scale} {many}"
    if decimals is not None and len(decimals) == 2:
        units = int(whole.replace(",", ""))
        hundredths = int(decimals)
        if units == 0 and hundredths > 0:
            return f"{hundredths} {small_one if hundredths == 1 else small_many}"
        said = f"{whole} {one if units == 1 else many}"
        if hundredths:
            said += f" and {hundredths} {small_one if hundredths == 1 else small_many}"
        return said
    if decimals is not None:  # "$2.5": two point five dollars
        return f"{whole}.{decimals} {many}"
    return f"{whole} {one if whole == '1' else many}"
