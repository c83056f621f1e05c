"""text/reading.py: amounts, ranges, units, dates and decades as a speaker says them; everything
else untouched."""

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
    ("It weighs 70 kg.", "It weighs 70 kilograms."),
    ("5km away", "5 kilometers away"),
    ("1 km", "1 kilometer"),
    ("1.5 km", "1.5 kilometers"),
    ("It is 20°C, or 98.6°F.", "It is 20 degrees Celsius, or 98.6 degrees Fahrenheit."),
    ("16 GB of memory", "16 gigabytes of memory"),
    ("at 100 km/h", "at 100 kilometers per hour"),
    ("in 200 ms", "in 200 milliseconds"),
    ("a 5 min read", "a 5 minute read"),
    ("6 ft tall", "6 feet tall"),
    ("On 2026-12-07.", "On December 7th, 2026."),
    ("2026-12-01 to 2026-12-22", "December 1st, 2026 to December 22nd, 2026"),
    ("In the 1990s.", "In the nineteen nineties."),
    ("In the 1990's.", "In the nineteen nineties."),
    ("the 80s and the '70s", "the eighties and the seventies"),
    ("the 1900s", "the nineteen hundreds"),
    ("the 2010s", "the twenty tens"),
    # "~" before a number, fractions, "24/7"
    ("It serves ~6 people.", "It serves about 6 people."),
    ("It costs ~$20.", "It costs about 20 dollars."),
    ("Add 1/2 cup of sugar and 3/4 cup of flour.",
     "Add a half cup of sugar and three quarters cup of flour."),
    ("About 1/3 of them left.", "About a third of them left."),
    ("Use 1 1/2 cups and 2 3/4 inches.", "Use 1 and a half cups and 2 and three quarters inches."),
    ("Cut 1/16 inch off.", "Cut a sixteenth inch off."),
    ("Support is open 24/7.", "Support is open 24 7."),
    ("He is 5 yrs old, 2 wks late.", "He is 5 years old, 2 weeks late."),
    # abbreviations
    ("It is Python vs. Rust, or Go vs Java.", "It is Python versus Rust, or Go versus Java."),
    ("Bake for approx. 25 minutes.", "Bake for approximately 25 minutes."),
    ("Approx. 5 people came.", "Approximately 5 people came."),
    ("It was built ca. 1900.", "It was built circa 1900."),
    ("See No. 5 in Fig. 3 and Eq. 2.", "See number 5 in figure 3 and equation 2."),
    ("Dr. Smith met Mr. Jones, Mrs. Brown, Ms. Green and Prof. Black.",
     "Doctor Smith met Mister Jones, Mrs Brown, Miz Green and Professor Black."),
    ("She lives in St. Louis.", "She lives in Saint Louis."),
    # Roman numerals
    ("World War II ended in 1945.", "World War 2 ended in 1945."),
    ("World War I, Part I and chapter IV.", "World War 1, Part 1 and chapter 4."),
    ("Henry VIII had six wives.", "Henry the 8th had six wives."),
    ("Louis XIV met Pope John Paul II and King John I.",
     "Louis the 14th met Pope John Paul the 2nd and King John the 1st."),
    ("Henry VIII's wives", "Henry the 8th's wives"),
    ("Type II diabetes, Phase III trials.", "Type 2 diabetes, Phase 3 trials."),
    # emoji
    ("Great job 🎉!", "Great job !"),
    ("I love it 😀 a lot ❤️ and 👍🏽 ok.", "I love it a lot and ok."),
    # Chinese characters, kana and Hangul: not spoken (espeak-ng: "Chinese letter" each);
    # full-width forms: their ASCII twins (espeak-ng: "letter FF21")
    ("I met 田中さん yesterday.", "I met yesterday."),
    ("The word for hello is こんにちは.", "The word for hello is."),
    ("Tokyo (東京) and Seoul (서울) are big.", "Tokyo and Seoul are big."),
    ("He said “東京” and 「はい」.", "He said and."),
    ("Café in ｶﾀｶﾅ and ＡＢＣ１２３！", "Café in and ABC123!"),
    ("It costs ＄５ for ５〜１０ or ５～１０ items.",
     "It costs 5 dollars for 5 to 10 or 5 to 10 items."),
    ("Yes。No、maybe【note】", "Yes. No, maybe(note)"),
    # words of other scripts: not spoken (espeak-ng: "Arabic meem Arabic ra", "P R I V E T",
    # or "(hi)" flags of another voice); a Greek word too, but not a lone Greek letter
    ("In Russian привет is hi, in Arabic مرحبا.", "In Russian is hi, in Arabic."),
    ("Moscow (Москва), p-значение, שלום, नमस्ते!", "Moscow,,,!"),
    ("Thai สวัสดี, Georgian გამარჯობა, Armenian Բարեւ, Amharic ሰላም.",
     "Thai, Georgian, Armenian, Amharic."),
    ("Greek: Γειά σου, and Ο Νίκος ήρθε.", "Greek:, and."),
    ("With α = 0.05, π r² and Ω, a β-blocker, an α-helix.",
     "With α = 0.05, π r² and Ω, a β-blocker, an α-helix."),
    ("Δt and ΔG in mΩ", "Δ t and Δ G in m Ω"),  # espeak-ng: "deltat"
    ("A 5 μm cell in 3 µs.", "A 5 micrometer cell in 3 microseconds."),
]

LEFT = [
    "Call 555-1234.",          # a phone number
    "Call 1-800-555-0199.",    # a chain of numbers
    "10 - 5 is 5.",            # spaced: a subtraction
    "COVID-19",                # a name with a number
    "US$5",                    # a symbol inside a word
    "No numbers here: $ and €.",
    "It is 5 dollars.",        # already as said
    "On 2026-02-30.",          # no such day
    "5 m",                     # metres, minutes or millions
    "5 kgs",                   # not a unit as written
    "It is 70 kilograms.",
    "version 1.90s",
    "We met on 3/4 and rated it 4/5.",  # a fraction alone: a date or a score as often
    "Read 5/4 cup.",                    # not a proper fraction
    "The ratio was 1/2 in tests.",      # "in" is not surely inches
    "See 1/2/2026 and a/1/2.",
    "Use ~/bin and x~5.",
    "I was there. I think so.",         # "I" is a pronoun
    "He needs an IV drip.",
    "Rocky II and Malcolm X.",          # names, not a ruler's number
    "the part I wrote",
    "Henry I said so.",                 # "Henry, I said so": only after a title
    "I live on Main St. Then I left.",  # a street
    "no. 5",
    "Washington DC and XL sizes.",
    "It is 5 dollars vs",
    "A café in Łódź, naïve Ærø and Ångström.",  # Latin with diacritics
    "the α and β chains, χ² and the σ of it",   # lone Greek letters: their names
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
