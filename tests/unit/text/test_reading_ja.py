"""text/reading_ja.py: times, dates, fractions, ranges, minus signs, dotted numbers and amounts
as a Japanese speaker says them; everything else untouched."""

from __future__ import annotations

import itertools

import pytest

from litestream.text.reading_ja import Said, apply, read_japanese

SAID = [
    # times
    ("15:30に集合", "15時30分に集合"),
    ("9:05から", "9時5分から"),
    ("10:00に", "10時に"),
    ("15:30:45", "15時30分45秒"),
    ("午後3:00", "午後3時"),
    # dates, year first (ISO or slashes), and a month and day
    ("2026-12-07に会議", "2026年12月7日に会議"),
    ("2026/12/7に会議", "2026年12月7日に会議"),
    ("会議は12/7に", "会議は12月7日に"),
    ("12/25はクリスマス", "12月25日はクリスマス"),
    ("1/3(金)に", "1月3日(金)に"),
    # fractions: the smaller first, the second at most 10, or 100 or 1000
    ("データの1/3は", "データの3分の1は"),
    ("3/4の人", "4分の3の人"),
    ("1/100の確率", "100分の1の確率"),
    # ranges
    ("5-10分", "5から10分"),
    ("2020–2025年", "2020から2025年"),
    ("5〜10人", "5から10人"),
    ("5～10人", "5から10人"),
    ("50%〜60%", "50%から60%"),
    ("3日〜5日", "3日から5日"),
    ("10:00〜12:00", "10時から12時"),
    ("営業時間は10:00-18:00です", "営業時間は10時から18時です"),
    ("9:00 - 17:30まで", "9時から17時30分まで"),
    ("午前9時〜午後5時", "午前9時から午後5時"),
    # a dot inside a name of Latin letters
    ("example.comを見て", "exampleドットcomを見て"),
    ("main.pyとwww.google.co.jp", "mainドットpyとwwwドットgoogleドットcoドットjp"),
    # a minus sign
    ("気温は-5度", "気温はマイナス5度"),
    ("(−3)", "(マイナス3)"),
    # the dots after the first of a dotted run
    ("バージョン2.1.3", "バージョン2.1点3"),
    ("192.168.0.1", "192.168点0点1"),
    # an amount's currency sign said after it
    ("¥1,000と$5", "1,000円と5ドル"),
]

UNTOUCHED = [
    "〒123-4567",  # a postal code
    "03-1234-5678",  # a phone number
    "0120-123-456",
    "16:9の画面",  # a ratio: one digit after the colon
    "13/14",  # no date, no small fraction
    "99:99",
    "3.14と1,234,567円",  # a decimal and a large number: OpenJTalk reads them
    "A-5判",  # a name with a number
    "よろしく〜",  # a wave dash with no number after it
    "v2.1",
    "e.g.とi.e.とU.S.A.",  # abbreviations' dots
    "Mr.Smith",
    "3.14",
]


@pytest.mark.parametrize(("text", "said"), SAID)
def test_read_as_said(text: str, said: str) -> None:
    assert apply(text, read_japanese(text)) == said


@pytest.mark.parametrize("text", UNTOUCHED)
def test_untouched(text: str) -> None:
    assert read_japanese(text) == []


def test_edits_are_in_order_and_never_overlap() -> None:
    text = "2026-12-07の10:00〜12:00、5-10人、-5度、1/3、v1.2.3"
    edits = read_japanese(text)
    assert edits == sorted(edits, key=lambda said: said.start)
    assert all(a.end <= b.start for a, b in itertools.pairwise(edits))
    # Each replaces only what it reads: a range's numbers stay the text's own.
    assert Said(text.index("〜"), text.index("〜") + 1, "から") in edits
