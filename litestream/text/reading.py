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
  longer chain of them, so a phone number ("555-1234", "1-800-555-0199") is left as it is;
- a unit after a number, where espeak-ng spells its letters ("70 kg" "seventy K G", "20°C"
  "twenty degrees C", "16 GB" "sixteen G B"): its name, singular for exactly 1 and after an
  article ("70 kilograms", "20 degrees Celsius", "1 foot", "a 5 minute read"). Only units
  that mean one thing after a number: not "m" (metres, minutes or millions), "g", "s", "h" or
  "in";
- an ISO date ("2026-12-07", a real month and day): "December 7th, 2026";
- a decade ("1990s", "1990's", "the 80s"): "nineteen nineties", "eighties" (espeak-ng: "nineteen
  hundred ninety z", "eighty z");
- "~" before a number ("~5", "~$20"): "about" (espeak-ng: "tilde five");
- a fraction (espeak-ng: "three slash four"): after a whole number ("1 1/2 cups": "1 and a half
  cups"), or before "of" or a measure ("3/4 cup", "1/3 of them": "three quarters cup", "a third
  of them"); proper, with a denominator of 2-10, 12 or 16. Alone it is as often a date ("on
  3/4") or a score ("rated 4/5"), and is left. "24/7" is "24 7";
- an abbreviation espeak-ng says letter by letter, as its short word, or with a sentence's
  pause after its dot: "vs." "versus" (was "V S"), "approx." "approximately", "ca. 1900"
  "circa", "No. 5" "number 5", "Fig. 3" "figure 3" (and "Eq.", "Vol.", "Ch.", "Sec." before a
  number), and a title before a name ("Dr. Smith", "Mr.", "Mrs.", "Ms.", "Prof.", "St. Louis")
  as the word, without the pause ("doctor. Smith");
- a Roman numeral espeak-ng reads as "roman eight": after a ruler's name or title ("Henry VIII",
  "Pope John Paul II", "King Charles III") "the 8th"; after a word that numbers a part or a kind
  ("World War II", "Chapter IV", "Phase III", "Type 1") the number. Elsewhere it is left: "I" is
  a pronoun, "IV" a drip, "Rocky II" or "Malcolm X" names;
- an emoji (espeak-ng says its name: "party popper", "grinning face") is not spoken;
- full-width letters, digits and marks ("ＡＢＣ１２３", "（", "！"; espeak-ng reads each as its
  code: "letter FF21") are read as their ASCII twins;
- Chinese characters, kana and Hangul (a Japanese name in kanji, "田中さん", or a Japanese
  sentence; espeak-ng says "Chinese letter", "Japanese letter" for each character, about a
  second each, and for Hangul switches to its Korean voice, whose language marks "(ko)" Piper
  then speaks) are not spoken, as an English speaker who cannot read them would not; a
  bracket or quote left empty goes with them, and Japanese punctuation is read as its ASCII
  twin ("。" a full stop, "、" a comma, "「」" quotes, "〜" a dash). A voice of the language
  speaks them: the OpenAI endpoint picks one by the text's script (`languages.script_language`).
- so is a word of another script the English voice has no rules for (Cyrillic, Arabic, Hebrew,
  Thai, Devanagari and the other Indic scripts, Georgian, Armenian, Ethiopic ...; espeak-ng
  names each letter, "Arabic meem Arabic ra", or switches to a voice of the language whose
  marks "(hi)" Piper speaks), and a Greek word ("Γειά σου": "gamma epsilon iota alpha"). A
  lone Greek letter is what a speaker says by its name, in science and maths ("α = 0.05",
  "π r²", "β-blocker", "Ω"), and is kept; beside a Latin letter it stands apart ("Δt" is
  "delta t", espeak-ng: "deltat"). Each word is decided whole: "p-значение" goes, "Δt" stays.
  Latin letters with diacritics ("café", "Łódź") are Latin.
"""

from __future__ import annotations

import itertools
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


# unit -> (one, many); matched case-sensitively ("MB" megabytes, "mb" is not a unit here).
_UNITS = {
    "km": ("kilometer", "kilometers"), "cm": ("centimeter", "centimeters"),
    "mm": ("millimeter", "millimeters"), "kg": ("kilogram", "kilograms"),
    "mg": ("milligram", "milligrams"), "ml": ("milliliter", "milliliters"),
    "mL": ("milliliter", "milliliters"), "lb": ("pound", "pounds"), "lbs": ("pound", "pounds"),
    "oz": ("ounce", "ounces"), "ft": ("foot", "feet"), "mph": ("mile per hour", "miles per hour"),
    "km/h": ("kilometer per hour", "kilometers per hour"),
    "kph": ("kilometer per hour", "kilometers per hour"),
    "°C": ("degree Celsius", "degrees Celsius"), "°F": ("degree Fahrenheit", "degrees Fahrenheit"),
    "ms": ("millisecond", "milliseconds"), "sec": ("second", "seconds"),
    "secs": ("second", "seconds"), "min": ("minute", "minutes"), "mins": ("minute", "minutes"),
    "hr": ("hour", "hours"), "hrs": ("hour", "hours"), "wk": ("week", "weeks"),
    "wks": ("week", "weeks"), "yr": ("year", "years"), "yrs": ("year", "years"),
    "Hz": ("hertz", "hertz"), "kHz": ("kilohertz", "kilohertz"), "MHz": ("megahertz", "megahertz"),
    "GHz": ("gigahertz", "gigahertz"), "kW": ("kilowatt", "kilowatts"),
    "kWh": ("kilowatt hour", "kilowatt hours"), "KB": ("kilobyte", "kilobytes"),
    "MB": ("megabyte", "megabytes"), "GB": ("gigabyte", "gigabytes"),
    "TB": ("terabyte", "terabytes"),
    "μm": ("micrometer", "micrometers"), "µm": ("micrometer", "micrometers"),
    "μs": ("microsecond", "microseconds"), "µs": ("microsecond", "microseconds"),
    "μg": ("microgram", "micrograms"), "µg": ("microgram", "micrograms"),
}
_UNIT_NAMES = "|".join(re.escape(u) for u in sorted(_UNITS, key=len, reverse=True))
# A number, then the unit, then no more of a word ("5 kgs" is left, as is "5 kilograms").
_UNIT = re.compile(rf"(?<![\w.,])(?P<number>\d{{1,3}}(?:,\d{{3}})+|\d+)(?P<decimals>\.\d+)?"
                   rf"\s?(?P<unit>{_UNIT_NAMES})(?![\w/°])")
_MONTHS = ("January", "February", "March", "April", "May", "June", "July", "August",
           "September", "October", "November", "December")
_DAYS_IN = (31, 29, 31, 30, 31, 30, 31, 31, 30, 31, 30, 31)
_ISO_DATE = re.compile(r"(?<![\w\-–/.])(\d{4})-(\d{2})-(\d{2})(?![\w\-–/]|[.:]\d)")
_TENS = {"1": "tens", "2": "twenties", "3": "thirties", "4": "forties", "5": "fifties",
         "6": "sixties", "7": "seventies", "8": "eighties", "9": "nineties"}
_CENTURIES = {"11": "eleven", "12": "twelve", "13": "thirteen", "14": "fourteen",
              "15": "fifteen", "16": "sixteen", "17": "seventeen", "18": "eighteen",
              "19": "nineteen", "20": "twenty"}
# "1990s", "1990's", "80s", "'80s": a year or two digits ending in 0, then "s".
_DECADE = re.compile(r"(?<![\w.,])(?:(1[1-9]|20)(\d)0|[’']?(\d)0)[’']?s\b")


def read_english(text: str) -> str:
    """``text`` with amounts, ranges, units, dates, decades, fractions, abbreviations, Roman
    numerals and emoji written as they are read (module doc)."""
    if not text.isascii():
        text = _drop_unread(_drop_emoji(text))
    text = _words(text)
    if not any(ch.isdigit() for ch in text):
        return text
    text = _ABOUT.sub("about ", text)
    text = _ROUND_THE_CLOCK.sub("24 7", text)
    text = _FRACTION.sub(_fraction, text)
    text = _SYMBOL_FIRST.sub(_amount, text)
    text = _SYMBOL_AFTER.sub(_amount, text)
    text = _ISO_DATE.sub(_date, text)
    text = _RANGE.sub(r"\1 to \2", text)
    text = _UNIT.sub(_unit, text)
    return _DECADE.sub(_decade, text)


_ARTICLE_BEFORE = re.compile(r"(?:^|\W)(?:a|an|A|An)\s+$")


def _unit(match: re.Match[str]) -> str:
    one, many = _UNITS[match["unit"]]
    number, decimals = match["number"], match["decimals"] or ""
    # After an article the amount describes a noun: "a 5 min read" is "a 5 minute read".
    describes = _ARTICLE_BEFORE.search(match.string, 0, match.start()) is not None
    singular = describes or (number == "1" and not decimals)
    return f"{number}{decimals} {one if singular else many}"


def _date(match: re.Match[str]) -> str:
    year, month, day = match[1], int(match[2]), int(match[3])
    if not (1 <= month <= 12 and 1 <= day <= _DAYS_IN[month - 1]):
        return match[0]
    suffix = "th" if 10 <= day % 100 <= 20 else {1: "st", 2: "nd", 3: "rd"}.get(day % 10, "th")
    return f"{_MONTHS[month - 1]} {day}{suffix}, {year}"


def _decade(match: re.Match[str]) -> str:
    century, tens, short = match[1], match[2], match[3]
    if century is None:  # "the 80s"
        return _TENS[short] if short != "0" else match[0]
    if tens == "0":  # "1900s", "2000s"
        return f"{_CENTURIES[century]} hundreds" if century != "20" else "two thousands"
    return f"{_CENTURIES[century]} {_TENS[tens]}"


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


# -- about, fractions -------------------------------------------------------------------------

# "~5", "~ 5", "~$20", not "x~5" or "~~5".
_ABOUT = re.compile(r"(?<![\w~])~\s?(?=[$€£¥]?\d)")
_ROUND_THE_CLOCK = re.compile(r"(?<![\w/.,])24/7(?![\w/]|[.,]\d)")
# denominator -> (one, many)
_PARTS = {2: ("half", "halves"), 3: ("third", "thirds"), 4: ("quarter", "quarters"),
          5: ("fifth", "fifths"), 6: ("sixth", "sixths"), 7: ("seventh", "sevenths"),
          8: ("eighth", "eighths"), 9: ("ninth", "ninths"), 10: ("tenth", "tenths"),
          12: ("twelfth", "twelfths"), 16: ("sixteenth", "sixteenths")}
# What a fraction alone may measure ("3/4 cup"); a mixed number ("1 1/2") needs none.
_MEASURES = (
    "of|cups?|tsp|tbsp|teaspoons?|tablespoons?|sticks?|pints?|quarts?|gallons?|liters?"
    "|litres?|lbs?|pounds?|oz|ounces?|inch|inches|ft|feet|foot|yards?|miles?|mi|km|cm|mm"
    "|meters?|metres?|kg|g|grams?|acres?|hours?|hrs?|minutes?|mins?|seconds?|days?|weeks?"
    "|months?|years?|turns?|pages?|slices?|servings?|portions?|pieces?")
_FRACTION = re.compile(
    r"(?<![\w/.,\-–])(?:(?P<whole>\d{1,3}) (?=\d/))?(?P<top>\d)/(?P<bottom>1[026]|[2-9])"
    rf"(?![\w/\-–]|[.,]\d)(?(whole)|(?=\s(?:{_MEASURES})\b))")


def _fraction(match: re.Match[str]) -> str:
    top, bottom = int(match["top"]), int(match["bottom"])
    if not 0 < top < bottom:
        return match[0]
    one, many = _PARTS[bottom]
    said = f"a {one}" if top == 1 else f"{_SMALL[top]} {many}"
    return f"{match['whole']} and {said}" if match["whole"] else said


_SMALL = ("zero", "one", "two", "three", "four", "five", "six", "seven", "eight", "nine", "ten",
          "eleven", "twelve", "thirteen", "fourteen", "fifteen")

# -- abbreviations, Roman numerals --------------------------------------------------------------

# Read the same wherever they stand: the dot goes with them when a sentence goes on after it
# (a lowercase word or a number), and stays where it may end one.
_ALWAYS = {"vs": "versus", "Vs": "versus", "approx": "approximately",
           "Approx": "Approximately"}
_ALWAYS_WORD = re.compile(r"(?<![\w.])(?:(?P<abbr>[Vv]s)\.?(?=\s\S)"
                          r"|(?P<long>[Aa]pprox)(?:\.(?=\s+[a-z\d$€£¥(\"“])|(?=\s)))")
# Before a number only: "No. 5", "Fig. 3", "ca. 1900".
_BEFORE_NUMBER = {"No": "number", "Nos": "numbers", "Fig": "figure", "Figs": "figures",
                  "Eq": "equation", "Vol": "volume", "Ch": "chapter", "Sec": "section",
                  "ca": "circa"}
_NUMBERED = re.compile(r"(?<![\w.])(?P<abbr>No|Nos|Figs?|Eq|Vol|Ch|Sec|ca)\.\s?(?=\d)")
# Before a name: "Dr. Smith" (espeak-ng: "doctor. Smith", a sentence's pause).
_TITLES = {"Dr": "Doctor", "Mr": "Mister", "Mrs": "Mrs", "Ms": "Miz", "Prof": "Professor",
           "St": "Saint"}
_TITLE = re.compile(r"(?<![\w.])(?P<abbr>Dr|Mr|Mrs|Ms|Prof|St)\.(?=\s[A-Z][a-z])")
# "St." is "Saint" at the start, or after a lowercase word or a clause mark ("in St. Louis",
# "and, St. Paul"); after a name or a number it may be a street ("Main St. Then", "5th St.").
_SAINT_AFTER = re.compile(r"(?:^|(?<!\S)[a-z][\w'’]* |[,;:(] ?)$")

_ROMAN = r"X{0,3}(?:IX|IV|VI{0,3}|I{1,3})|X{1,3}"  # 1-39
# Words that number a part or a kind: "Chapter IV" is "Chapter 4". Capitalized ones take "I"
# too ("World War I", "Phase I"); lowercase ones ("part I wrote") only II and up.
_NUMBERING = ("War|Chapter|Part|Volume|Vol\\.|Book|Act|Scene|Phase|Stage|Type|Class|Level|Tier"
              "|Grade|Season|Episode|Article|Title|Section|Appendix|Round|Bowl|Council|Apollo")
# Rulers' names and titles: "Henry VIII" is "Henry the 8th".
_RULERS = ("King|Queen|Pope|Emperor|Empress|Tsar|Czar|Tsarina|Kaiser|Sultan|Pharaoh|Shah"
           "|Henry|Louis|Elizabeth|George|Charles|Edward|William|James|Richard|John|Paul"
           "|Benedict|Pius|Leo|Gregory|Innocent|Clement|Urban|Boniface|Alexander|Frederick"
           "|Philip|Ferdinand|Peter|Catherine|Nicholas|Ivan|Gustav|Gustavus|Christian|Victor"
           "|Emmanuel|Mary|Anne|Ramesses|Ramses|Amenhotep|Thutmose|Napoleon|Alfonso|Juan|Carlos"
           "|Felipe|Olaf|Harald|Haakon|Magnus|Otto|Wilhelm|Francis|Joseph|Leopold|Rudolf"
           "|Constantine|Justinian|Mehmed|Suleiman|Selim|Murad|Ptolemy|Cleopatra|Darius|Xerxes"
           "|Antiochus|Rama|Edmund|Robert|David|Harold|Stephen|Matilda|Victoria")
_ROMAN_NUMBER = re.compile(
    rf"\b(?:(?P<numbering>{_NUMBERING})|(?P<lower>{_NUMBERING.lower()})|(?P<ruler>{_RULERS}))"
    rf" (?P<numeral>{_ROMAN})(?![\w\-–]|['’](?!s\b)|\.\w)")
_ROMAN_VALUES = {"I": 1, "V": 5, "X": 10}


def _roman(numeral: str) -> int:
    total = 0
    for at, letter in enumerate(numeral):
        value = _ROMAN_VALUES[letter]
        following = _ROMAN_VALUES[numeral[at + 1]] if at + 1 < len(numeral) else 0
        total += -value if value < following else value
    return total


def _roman_number(match: re.Match[str]) -> str:
    numeral = match["numeral"]
    word = match[0][: match.start("numeral") - match.start()]  # with its space
    if match["numbering"]:
        return f"{word}{_roman(numeral)}"
    if match["lower"]:  # "the part I wrote": only II and up
        return match[0] if numeral == "I" else f"{word}{_roman(numeral)}"
    if numeral == "I" and not _RULER_TITLE.search(match.string, 0, match.start("numeral")):
        return match[0]  # "Henry I" may be "Henry, I think": only after a title ("King John I")
    number = _roman(numeral)
    suffix = "th" if 10 <= number % 100 <= 20 else {1: "st", 2: "nd", 3: "rd"}.get(number % 10,
                                                                                   "th")
    return f"{word}the {number}{suffix}"


_RULER_TITLE = re.compile(r"\b(?:King|Queen|Pope|Emperor|Empress|Tsar|Czar|Kaiser|Sultan"
                          r"|Pharaoh|Shah)(?: [A-Z]\w*){1,2} $")


def _words(text: str) -> str:
    if "." in text or "s " in text:
        text = _ALWAYS_WORD.sub(lambda m: _ALWAYS[m["abbr"] or m["long"]], text)
        text = _NUMBERED.sub(lambda m: _BEFORE_NUMBER[m["abbr"]] + " ", text)
        text = _TITLE.sub(_title, text)
    if "I" in text or "V" in text or "X" in text:
        text = _ROMAN_NUMBER.sub(_roman_number, text)
    return text


def _title(match: re.Match[str]) -> str:
    abbr = match["abbr"]
    if abbr == "St" and not _SAINT_AFTER.search(match.string, 0, match.start()):
        return match[0]
    return _TITLES[abbr]


# -- emoji ----------------------------------------------------------------------------------------

# Pictographs, emoticons, transport, flags' letters, skin tones (U+1F000-U+1FAFF), the emoji
# among the miscellaneous symbols and dingbats, the emoji variation selector and the keycap mark.
_EMOJI = re.compile("[\U0001F000-\U0001FAFF\u2600-\u27BF\u2B50\u2B55\u2B1B\u2B1C"
                    "\u2B05-\u2B07\uFE0F\u20E3\u200D]+")


def _drop_emoji(text: str) -> str:
    if not _EMOJI.search(text):
        return text
    return " ".join(_EMOJI.sub(" ", text).split())


# -- other scripts -------------------------------------------------------------------------------

# Full-width ASCII (U+FF01-U+FF5E) and the ideographic space: their ASCII twins.
# "～" (U+FF5E) is the wave dash as Japanese writes it ("5～10"), so it is read as "〜" below.
_FULL_WIDTH = {code: code - 0xFEE0 for code in range(0xFF01, 0xFF5E)} | {0x3000: 0x20}
# Letters of scripts an English voice cannot read: CJK radicals, kana (with ・ and ー; half-width
# too), Bopomofo, Hangul (jamo and syllables), the CJK ideographs (with extensions and
# compatibility forms), and the iteration and closing marks (々〆〇).
_UNREAD = re.compile(
    "[\u2E80-\u2FDF\u3005-\u3007\u3021-\u3029\u3031-\u3035\u303B\u303C"
    "\u3040-\u30FF\u3100-\u312F\u3130-\u318F\u31A0-\u31FF\u3400-\u4DBF"
    "\u4E00-\u9FFF\u1100-\u11FF\uA960-\uA97F\uAC00-\uD7FF\uF900-\uFAFF\uFF66-\uFFDC"
    "\U00020000-\U0003134F]+")
_SPACE_BEFORE_MARK = re.compile(r" +(?=[.,!?;:](?!\S))")
_GONE = "\x00"  # where unread letters stood, until empty brackets around them are dropped
# Brackets and quotes holding nothing left but where letters were: "Tokyo (東京)" is "Tokyo".
_EMPTIED = re.compile(
    "[(\\[「『【〈《〔〖〘〚“\"\u301D｢]"
    f"[\\s{_GONE}]*{_GONE}[\\s{_GONE}]*"
    "[)\\]」』】〉》〕〗〙〛”\"\u301E\u301F｣]")
# Japanese punctuation (and the half-width forms): the ASCII marks espeak-ng pauses at.
_MARKS = str.maketrans({
    "。": ". ", "、": ", ", "｡": ". ", "､": ", ", "･": " ", "「": '"', "」": '"', "『": '"',
    "』": '"', "｢": '"', "｣": '"', "〝": '"', "〞": '"', "〟": '"', "【": "(", "】": ")",
    "〈": "(", "〉": ")", "《": "(", "》": ")", "〔": "(", "〕": ")", "〖": "(", "〗": ")",
    "〘": "(", "〙": ")", "〚": "(", "〛": ")", "〜": "-", "～": "-", "〃": " ", "〓": " ",
})


# Letters of other scripts an English voice cannot read, as whole Unicode blocks: Cyrillic,
# Armenian, Hebrew, Arabic (with Syriac, Thaana, N'Ko, Samaritan, Mandaic), the Indic scripts
# to Sinhala, Thai, Lao, Tibetan, Myanmar, Georgian, Ethiopic, Cherokee, Canadian syllabics,
# Ogham, Runic, Khmer, Mongolian and the other scripts of South and Southeast Asia, Tifinagh,
# Vai, Bamum, Lisu, and the presentation forms of Hebrew and Arabic. Not Latin Extended-D/E
# (U+A720-A7FF, U+AB30-AB6F), nor the byte order mark (U+FEFF).
_OTHER_SCRIPT = (
    "\u0400-\u052F\u0530-\u058F\u0590-\u05FF\u0600-\u08FF\u0900-\u0DFF\u0E00-\u0FFF"
    "\u1000-\u10FF\u1200-\u1C7F\u1C80-\u1CBF\u2D00-\u2DFF\uA4D0-\uA4FF\uA500-\uA6FF"
    "\uA800-\uAB2F\uAB70-\uABFF\uFB13-\uFB17\uFB1D-\uFDFF\uFE70-\uFEFC"
    "\U00010000-\U00011FFF\U0001E800-\U0001E95F")
_GREEK = "\u0370-\u03FF\u1F00-\u1FFF"
# The Greek letters science and maths use as symbols: the plain letters, and the symbol forms
# (ϑ ϕ ϖ ϰ ϱ ϵ). An accented letter ("ά") or punctuation (";" U+037E) is Greek writing.
_GREEK_SYMBOL = "[\u0391-\u03A9\u03B1-\u03C9\u03D1\u03D5\u03D6\u03F0\u03F1\u03F5]"
_FOREIGN_WORD = re.compile(f"\\S*[{_OTHER_SCRIPT}{_GREEK}]\\S*")
_OTHER_LETTER = re.compile(f"[{_OTHER_SCRIPT}]")
# Two Greek letters in a row, or any Greek but a symbol letter: a Greek word.
_GREEK_WORD = re.compile(f"[{_GREEK}]{{2}}|(?!{_GREEK_SYMBOL})[{_GREEK}]")
_SYMBOL_LETTER = re.compile(_GREEK_SYMBOL)
_MARKS_AROUND = re.compile(f"(?P<before>[^\\w{_OTHER_SCRIPT}{_GREEK}]*).+?"
                           f"(?P<after>[^\\w{_OTHER_SCRIPT}{_GREEK}]*)$")
_GREEK_TEXT = re.compile(f"[{_GREEK}]")


def _drop_foreign_words(text: str) -> str:
    """``text`` with each word of another script, and each Greek word, as _GONE. A lone Greek
    letter beside a Greek word is Greek writing too ("Ο Νίκος", the article)."""
    words = list(_FOREIGN_WORD.finditer(text))
    gone = [_OTHER_LETTER.search(m[0]) is not None or _GREEK_WORD.search(m[0]) is not None
            for m in words]
    greek = [g and _GREEK_TEXT.search(m[0]) is not None for m, g in zip(words, gone, strict=True)]
    read, end = [], 0
    for at, match in enumerate(words):
        beside_greek = any(
            0 <= other < len(words) and greek[other]
            and text[min(match.end(), words[other].end()):
                     max(match.start(), words[other].start())].isspace()
            for other in (at - 1, at + 1))
        read.append(text[end:match.start()])
        if gone[at] or beside_greek:  # the marks around it stay: "(Москва)," is "(),"
            read.append(_MARKS_AROUND.sub(lambda m: m["before"] + _GONE + m["after"], match[0]))
        else:
            read.append(_symbol_word(match[0]))
        end = match.end()
    return "".join(read) + text[end:]


def _symbol_word(word: str) -> str:
    if word.rstrip(".,;:!?)") in _UNITS:  # "5 μm" is "5 micrometers" (_UNIT)
        return word
    # A symbol letter against another letter ("Δt", "mΩ"): espeak-ng runs them together
    # ("deltat"); apart, it is "delta t".
    spaced = [word[0]]
    for before, ch in itertools.pairwise(word):
        if before.isalpha() and ch.isalpha() and (
                _SYMBOL_LETTER.match(before) or _SYMBOL_LETTER.match(ch)):
            spaced.append(" ")
        spaced.append(ch)
    return "".join(spaced)


def _drop_unread(text: str) -> str:
    if not any(ch >= "\u0370" for ch in text):
        return text
    read = text.translate(_FULL_WIDTH)
    if _UNREAD.search(read):
        read = _UNREAD.sub(_GONE, read)
    read = _drop_foreign_words(read)
    if _GONE in read:
        read = _EMPTIED.sub(" ", read).replace(_GONE, " ")
    read = read.translate(_MARKS)
    if read == text:
        return text
    return _SPACE_BEFORE_MARK.sub("", " ".join(read.split()))  # "is こんにちは." is "is."
