"""How Japanese text is read aloud where OpenJTalk's own reading is not what a speaker says.

Pure: text in, edits out. `engine/kokoro/japanese.py` applies them to the (NFKC) text it hands
OpenJTalk and maps each word it gets back onto the text as sent, so the chunk's text (what
clients see, what `char_start`/`char_end` index) is never changed; only what is spoken is.

OpenJTalk reads marks between numbers as pauses or not at all: "15:30" is "jūgo, sanjū",
"5-10分" is "go juppun" (the hyphen dropped: "5 10 minutes"), "12/7" is "jūni, nana",
"2026-12-07" is "ni zero ni roku ichi ni zero nana", "-5度" is "go do", and the second dot of
"2.1.3" a pause. The rules, each for a form that has one reading (or, where a form has two,
the one a reader meets more often, said below):

- a currency sign before an amount is said after it as its word ("¥1,000" 1,000円, "$5" 5ドル);
- a date, year first ("2026-12-07", "2026/12/7"): 2026年12月7日; a month and day
  ("12/7", "12/25"), or a fraction ("1/3" 3分の1): a slash between two numbers is a fraction
  where the first is the smaller and the second at most 10, or 100 or 1000 ("1/3", "3/4",
  "1/100"), unless a weekday in brackets follows ("1/3(金)"); else a date where it is one;
- a time ("15:30", "9:05", "10:00", "15:30:45"): 15時30分, 9時5分, 10時, 15時30分45秒; two
  joined by a hyphen or an en dash, spaced or not ("10:00-18:00", "9:00 - 17:00"): から
  between them (OpenJTalk read "10:00-12:00" "jū, zero zero ichi ni, zero zero");
- a range: a hyphen or en dash between two numbers ("5-10分", "2020-2025年"), or a wave dash
  after a number (and its counter or unit) and before one ("5〜10人", "50%〜60%",
  "10:00〜12:00", "午前9時〜午後5時"): から. Not a postal code ("123-4567"), a number with a
  leading zero ("03-1234"), or a longer chain (a phone number);
- a minus sign before a number that no letter or digit precedes ("-5度"): マイナス;
- the dots after the first in a dotted run of numbers ("2.1.3", "192.168.0.1"): 点 (テン)
  each, as OpenJTalk reads the first;
- a dot inside a name of Latin letters, before a lowercase word ("example.com", "main.py",
  "www.google.co.jp"): ドット (OpenJTalk: a pause). Not an abbreviation's ("e.g.", "U.S.A.",
  "Mr.Smith") nor a number's ("v2.1").
"""

from __future__ import annotations

import re
from dataclasses import dataclass

__all__ = ["Said", "apply", "read_japanese"]


@dataclass(frozen=True)
class Said:
    """What is read in place of ``text[start:end]`` (character indices of the text given)."""

    start: int
    end: int
    said: str


# ASCII letters, digits and these marks bound a number; kana and kanji do not ("の1/3は").
_NUM_BEFORE = r"(?<![0-9A-Za-z.,:/\-–−])"
_NUM_AFTER = r"(?![0-9A-Za-z/\-–−:]|[.,]\d)"

_CURRENCY = {"¥": "円", "$": "ドル", "€": "ユーロ", "£": "ポンド"}
_AMOUNT = re.compile(r"([¥$€£])\s?(\d[\d,]*(?:\.\d+)?)")

_DAYS_IN = (31, 29, 31, 30, 31, 30, 31, 31, 30, 31, 30, 31)
_YEAR_FIRST = re.compile(_NUM_BEFORE + r"(\d{4})([-/])(\d{1,2})\2(\d{1,2})" + _NUM_AFTER)
_SLASH = re.compile(_NUM_BEFORE + r"(\d{1,4})/(\d{1,4})" + _NUM_AFTER)
_WEEKDAY_AFTER = re.compile(r"\s?\([月火水木金土日]\)")
_TIME_TEXT = r"(?:[01]?\d|2[0-4]):[0-5]\d(?::[0-5]\d)?"
_TIME = re.compile(_NUM_BEFORE + r"([01]?\d|2[0-4]):([0-5]\d)(?::([0-5]\d))?" + _NUM_AFTER)
_TIME_RANGE = re.compile(_NUM_BEFORE + rf"({_TIME_TEXT})(\s?[\-–]\s?)({_TIME_TEXT})" + _NUM_AFTER)
# A number (no leading zero) joined by a hyphen or en dash to another, spaced not at all.
_NUMBER = r"(?:0|[1-9]\d{0,3})(?:\.\d+)?"
_DASH_RANGE = re.compile(_NUM_BEFORE + rf"({_NUMBER})([\-–])({_NUMBER})" + _NUM_AFTER)
_POSTAL = re.compile(r"\d{3}-\d{4}")
# A wave dash after a number and up to two characters of its counter or unit ("5時〜", "50%〜").
_WAVE_RANGE = re.compile(r"\d[^\s\d〜～~、。,.]{0,2}\s?([〜～~])\s?(?=(?:午前|午後|約)?[\d¥$€£])")
_MINUS = re.compile(r"(?<![0-9A-Za-z\-−–.])([\-−])(?=\d)")
# A dot after two letters or digits, before a lowercase letter: "example.com", not "e.g.".
_NAME_DOT = re.compile(r"(?<=[A-Za-z0-9]{2})\.(?=[a-z])")
_DOTTED = re.compile(r"(?<![0-9.])\d+\.\d+(?:\.\d+)+(?![0-9]|\.\d)")


def read_japanese(text: str) -> list[Said]:
    """Where ``text`` is read otherwise than OpenJTalk reads it (module doc): edits in order,
    none overlapping. Rules earlier in the list win where two would touch the same text."""
    found: list[Said] = []
    if not any(ch.isdigit() for ch in text):
        return _name_dots(text) if "." in text else []
    for rule in (_amounts, _year_first, _slashes, _time_ranges, _times, _dash_ranges,
                 _wave_ranges, _minus, _dotted, _name_dots):
        for said in rule(text):
            if not any(said.start < other.end and other.start < said.end for other in found):
                found.append(said)
    return sorted(found, key=lambda said: said.start)


def apply(text: str, edits: list[Said]) -> str:
    """``text`` as read: each edit's text replaced by what is said in its place."""
    out: list[str] = []
    at = 0
    for edit in edits:
        out.append(text[at:edit.start])
        out.append(edit.said)
        at = edit.end
    out.append(text[at:])
    return "".join(out)


def _amounts(text: str) -> list[Said]:
    return [Said(m.start(), m.end(), m[2] + _CURRENCY[m[1]]) for m in _AMOUNT.finditer(text)]


def _is_date(month: int, day: int) -> bool:
    return 1 <= month <= 12 and 1 <= day <= _DAYS_IN[month - 1]


def _year_first(text: str) -> list[Said]:
    out = []
    for m in _YEAR_FIRST.finditer(text):
        month, day = int(m[3]), int(m[4])
        if _is_date(month, day):
            out.append(Said(m.start(), m.end(), f"{m[1]}年{month}月{day}日"))
    return out


def _slashes(text: str) -> list[Said]:
    out = []
    for m in _SLASH.finditer(text):
        top, bottom = int(m[1]), int(m[2])
        weekday = _WEEKDAY_AFTER.match(text, m.end()) is not None
        if not weekday and 0 < top < bottom and (bottom <= 10 or bottom in (100, 1000)):
            out.append(Said(m.start(), m.end(), f"{bottom}分の{top}"))
        elif _is_date(top, bottom):
            out.append(Said(m.start(), m.end(), f"{top}月{bottom}日"))
    return out


def _time_said(m: re.Match[str]) -> str:
    minutes = int(m[2])
    said = f"{int(m[1])}時" + (f"{minutes}分" if minutes or m[3] else "")
    if m[3] is not None:
        said += f"{int(m[3])}秒"
    return said


def _times(text: str) -> list[Said]:
    return [Said(m.start(), m.end(), _time_said(m)) for m in _TIME.finditer(text)]


def _time_ranges(text: str) -> list[Said]:
    out = []
    for m in _TIME_RANGE.finditer(text):
        first, last = _TIME.fullmatch(m[1]), _TIME.fullmatch(m[3])
        assert first is not None and last is not None  # the same pattern, alone
        out += [Said(m.start(1), m.end(1), _time_said(first)),
                Said(m.start(2), m.end(2), "から"),
                Said(m.start(3), m.end(3), _time_said(last))]
    return out


def _dash_ranges(text: str) -> list[Said]:
    return [Said(m.start(2), m.end(2), "から") for m in _DASH_RANGE.finditer(text)
            if not _POSTAL.fullmatch(m[0])]


def _wave_ranges(text: str) -> list[Said]:
    return [Said(m.start(1), m.end(1), "から") for m in _WAVE_RANGE.finditer(text)]


def _minus(text: str) -> list[Said]:
    return [Said(m.start(1), m.end(1), "マイナス") for m in _MINUS.finditer(text)]


def _dotted(text: str) -> list[Said]:
    out: list[Said] = []
    for m in _DOTTED.finditer(text):
        dots = [m.start() + i for i, ch in enumerate(m[0]) if ch == "."]
        out.extend(Said(at, at + 1, "点") for at in dots[1:])
    return out


def _name_dots(text: str) -> list[Said]:
    return [Said(m.start(), m.end(), "ドット") for m in _NAME_DOT.finditer(text)]
