"""text/reading.py: amounts and ranges as a speaker says them; everything else untouched."""

from __future__ import annotations

import pytest

from litestream.text.reading import read_english

SAID = [
    ("It costs $5.", "It costs 5 dollars."),
    ("It costs $5.99 today.", "It costs 5 dollars and 99 cents today."),
    ("$1 only", "1 dollar only"),
    ("$0.50", "50 cents"),
    ("$0.01", "1 cent"),
    ("$1.01", "1 dollar and 1 cent"),
    ("$5.00", "5 dollars"),
    ("$1,234.", "1,234 dollars."),
    ("$2.5", "2.5 dollars"),
    ("$5 more", "5 dollars more"),
    ("($5)", "(5 dollars)"),
    ("-$5", "-5 dollars"),
    ("€20, 20 € and 20€", "20 euros, 20 euros and 20 euros"),
    ("£1m", "1 million pounds"),
    ("£1M", "1 million pounds"),
    ("£4.20", "4 pounds and 20 pence"),
    ("$1.5 million", "1.5 million dollars"),
    ("$3bn", "3 billion dollars"),
    ("$5k", "5 thousand dollars"),
    ("¥100", "100 yen"),
    ("It takes 5-10 minutes.", "It takes 5 to 10 minutes."),
    ("3–5 days", "3 to 5 days"),
    ("10-15%", "10 to 15%"),
    ("They won 3-2.", "They won 3 to 2."),
]

LEFT = [
    "Call 555-1234.",          # a phone number
    "Call 1-800-555-0199.",    # a chain of numbers
    "On 2026-12-07.",          # a date
    "10 - 5 is 5.",            # spaced: a subtraction
    "COVID-19",                # a name with a number
    "US$5",                    # a symbol inside a word
    "No numbers here: $ and €.",
    "It is 5 dollars.",        # already as said
]


@pytest.mark.parametrize(("text", "said"), SAID)
def test_amounts_and_ranges_are_written_as_said(text: str, said: str) -> None:
    assert read_english(text) == said


@pytest.mark.parametrize("text", LEFT)
def test_other_forms_are_left_alone(text: str) -> None:
    assert read_english(text) == text


@pytest.mark.parametrize(("text", "said"), SAID)
def test_reading_twice_changes_nothing_more(text: str, said: str) -> None:
    # phonemize may read a word again when it falls back to one call per word.
    assert read_english(said) == said
