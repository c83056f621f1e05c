"""Japanese: text -> Kokoro phonemes (engine/japanese.py), and segmentation by Japanese rules.

The phoneme table is misaki's ``ja`` alphabet (what Kokoro-82M was trained on); readings come
from pyopenjtalk-plus, the real dictionary, not a mock.
"""

from __future__ import annotations

import itertools

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from litestream.engine.kokoro import japanese
from litestream.text.segmenter import Segmenter

# Sentence -> phonemes, each row chosen for one thing a reader can get wrong.
PHONEME_TABLE = [
    # kanji readings in context, particle は read "wa" (βa), です's devoiced su
    ("今日は良い天気ですね。", "kʲoː βa joi teŋkʲi desɨ ne."),
    # long vowels from kanji (東京 tōkyō) and ー; へ read "e"; 100 spelled out; ッ held
    ("東京へ100円で行った。", "toːkʲoː e çakɯ eɴ de iʔta."),
    # a date: numbers with counters (年 月 日) and their sound changes; a number is one word
    ("2024年3月15日", "ɲiseɴɲiʥɨːjo neɴ saŋɡaʦɨ ʥɨːɡo ɲiʨi"),
    # a decimal point read テン, not dropped as punctuation
    ("1.5キロ", "iʔteɴɡo kʲiɾo"),
    # question mark, 先生 with its long e
    ("先生は3時15分に来ます？", "seɴseː βa saɴ ʥi ʥɨːɡo ɸɯɴ ɲi kʲi masɨ?"),
    # quotes and punctuation inside them; ！ at the end
    ("「はい。」と言った！", "“hai.” to iʔta!"),
    # katakana loanwords: palatal ピュ, long vowels, clause comma
    ("コンピューター、スマートフォン", "kompʲɨːtaː, sɨmaːtoɸoɴ"),
    # ン before m/p, n and a vowel-less end: m, m, n, ɴ
    ("さんま、かんぱい、あんない、こんや", "samma, kampai, annai, koɴja"),
    # ファ, ティ from loanword spelling
    ("ヴァイオリンとティーカップ", "vaioɾʲiɴ to tʲiː kaʔpɯ"),
    # ン before b (新聞 shimbun), を read "o"
    ("新聞を読みました。", "ɕimbɯɴ o jomʲi maɕi ta."),
    # percent spelled out, geminate across the counter
    ("10%です。", "ʥɨʔpaːsento desɨ."),
    # what OpenJTalk tags a symbol but reads is spoken: letters in brackets or alone, &
    ("人工知能（AI）の発展", "ʥiŋkoː ʨinoː (ei ai) no haʔteɴ"),
    ("AとBとA&B", "ei to bʲiː to ei ando bʲiː"),
    # ℃ (and °C) read ド, not dropped by NFKC's "°C"
    ("気温は20℃、20°C。", "kʲioɴ βa ɲiʥɨː do, ɲiʥɨː do."),
    # a currency sign before the amount is said after it
    ("￥1,000と$5と€2と£3", "seɴ eɴ to ɡo doɾɯ to ɲi jɯːɾo to saɴ pondo"),
]


@pytest.mark.parametrize(("text", "phonemes"), PHONEME_TABLE)
def test_phonemes_of_sentences(text: str, phonemes: str) -> None:
    assert japanese.phonemize(text) == phonemes


@pytest.mark.parametrize(("kana", "phonemes"), [
    ("キャ", "kʲa"), ("シュ", "ɕɨ"), ("チョ", "ʨo"), ("ジャ", "ʥa"), ("ニュ", "ɲɨ"),
    ("ファ", "ɸa"), ("ウィ", "βi"), ("ツァ", "ʦa"), ("スィ", "si"),  # not in the table
    ("ガッコー", "ɡaʔkoː"), ("がっこう", "ɡaʔkoɯ"),  # hiragana too
    ("サンポ", "sampo"), ("リンゴ", "ɾʲiŋɡo"), ("コンニチワ", "koɲɲiʨiβa"), ("ホン", "hoɴ"),
    ("テンイン", "teɴiɴ"),  # ン before a vowel stays uvular
])
def test_kana_to_phonemes(kana: str, phonemes: str) -> None:
    assert japanese.kana_to_phonemes(kana) == phonemes


def test_every_phoneme_is_in_kokoros_vocabulary(kokoro_vocab: dict[str, int]) -> None:
    # A phoneme missing from the vocabulary would be dropped silently at synthesis.
    for text, _ in PHONEME_TABLE:
        phonemes = japanese.phonemize(text)
        assert set(phonemes) <= set(kokoro_vocab), set(phonemes) - set(kokoro_vocab)
        assert len(japanese.phoneme_ids(phonemes, kokoro_vocab)) == len(phonemes)


def test_no_character_of_latin_letters_or_symbols_read_by_openjtalk_is_dropped() -> None:
    # Each of these, once dropped as punctuation, left its sentence spoken without it.
    for text, spoken in [("（AI）", "ei ai"), ("A", "ei"), ("¥", "eɴ"), ("&", "ando")]:
        assert japanese.phonemize(text).strip("()") == spoken


def test_latin_words_are_found_in_the_text_for_word_spans() -> None:
    # OpenJTalk returns ASCII full-width ("ＧｉｔＨｕｂ"): the surfaces are NFKC, so each word's
    # span is its own, not the text back to the previous word ("、GitHub").
    text = "例えば、GitHubでは、AIが書く。"
    _, spoken = japanese.phonemize_words(text)
    spans = japanese.word_spans(text, [surface for surface, _ in spoken])
    words = [text[a:b] for a, b in spans]
    assert words == ["例えば", "GitHub", "で", "は", "AI", "が", "書く"]


# Words of Latin letters: OpenJTalk's dictionary reads some; the rest it spelled letter by
# letter ("Python" ピーワイティーエイチオーエヌ) and e2k now reads; capitals stay letters.
LATIN_TABLE = [
    ("Pythonで書く", "paisoɴ de kakɯ"),
    ("GitHubのリポジトリ", "ɡʲiʔtohabɯ no ɾʲipoʥitoɾʲi"),  # cut where its case changes
    ("ChatGPTに聞いた", "ʨaʔtoʥiːpʲiːtʲiː ɲi kʲii ta"),  # GPT: an acronym's letters
    ("OpenAIとMacBook", "oːpɯɴeiai to maʔkɯbɯʔkɯ"),
    # capitals letter by letter, not as a word OpenJTalk knows (VS バーサス)
    ("VSCodeの拡張", "bɯiesɨkoːdo no kakɯʨoː"),
    # no English word (e2k's n-gram model): an abbreviation's letters
    ("npmでinstall", "enɯpʲiːemɯ de iɴsɨtoːɾɯ"),
    ("Dockerとdeploy", "doʔkaː to depɯɾoi"),
    ("Googleで検索", "ɡɯːɡɯɾɯ de keɴsakɯ"),  # in OpenJTalk's dictionary: its reading
    ("AIとAPIとJSON", "eːai to eːpʲiːai to ʥeːesɨoːenɯ"),  # capitals: letters
]


@pytest.mark.parametrize(("text", "phonemes"), LATIN_TABLE)
def test_latin_words_are_read_not_spelled(text: str, phonemes: str) -> None:
    assert japanese.phonemize(text) == phonemes


# What OpenJTalk read wrongly (text/reading_ja.py), and a number as one word.
NUMBER_TABLE = [
    ("15:30に集合", "ʥɨːɡo ʥi saɴʥɨʔpɯɴ ɲi ɕɨːɡoː"),  # was ʥɨː ɡo: saɴ ʥɨː
    ("5-10分", "ɡo kaɾa ʥɨʔpɯɴ"),  # was ɡo ʥɨʔpɯɴ: the hyphen dropped
    ("5〜10人", "ɡo kaɾa ʥɨː ɲiɴ"),  # was ɡo — ʥɨː ɲiɴ
    ("2026-12-07", "ɲiseɴɲiʥɨːɾokɯ neɴ ʥɨːɲiɡaʦɨ nanoka"),  # was digit by digit
    ("12/7に", "ʥɨːɲiɡaʦɨ nanoka ɲi"),  # was ʥɨː ɲi nana
    ("1/3の", "saɴ bɯɴ no iʨi no"),  # was iʨi saɴ
    ("-5度", "mainasɨ ɡo do"),  # was ɡo do
    ("2.1.3", "ɲiːteɴiʨiteɴsaɴ"),  # was ɲiː teɴ iʨi. saɴ
    # one number, one word: spaced, "maɴ joɴ" was heard 万1 4
    ("1,234,567円", "çakɯɲiʥɨːsaɴmaɴjoɴseɴɡoçakɯɾokɯʥɨːnana eɴ"),
]


@pytest.mark.parametrize(("text", "phonemes"), NUMBER_TABLE)
def test_numbers_times_dates_and_ranges_read_as_said(text: str, phonemes: str) -> None:
    assert japanese.phonemize(text) == phonemes


def test_word_spans_keep_the_text_as_sent() -> None:
    # The text is read otherwise ("15:30" as 15時30分, "〜" as から, "1/3" as 3分の1), but each
    # word's span is the text as sent: a replacement is one word, its first.
    text = "会議は12/7（月）、15:30から。参加者は5〜10人、データの1/3はPythonで。"
    _, spoken = japanese.phonemize_words(text)
    spans = japanese.word_spans(text, [surface for surface, _ in spoken])
    words = [text[a:b] for a, b in spans if b > a]
    assert words == ["会議", "は", "12/7", "（月）", "15:30", "から", "参加", "者", "は", "5",
                     "〜", "10", "人", "データ", "の", "1/3", "は", "Python", "で"]
    assert all(a <= b for a, b in spans)
    assert all(spans[i][1] <= spans[i + 1][0] for i in range(len(spans) - 1))


@pytest.mark.parametrize(("text", "words"), [
    # OpenJTalk writes digits as kanji ("1" is the word 一): that word is the digits, not a
    # kanji numeral further on, and the words after it keep their places.
    ("第1章と第一章。", ["第", "1", "章", "と", "第", "一", "章"]),
    ("1位は一郎。", ["1", "位", "は", "一郎"]),
    ("1日と一日。", ["1日", "と", "一日"]),
    ("2. 二番目の項目", ["2", "二番", "目", "の", "項目"]),
    # a number is one word ("1,234" was 千 二 百 三 十 四, six), "1万" with its kanji
    ("価格は1,234円、一万円。", ["価格", "は", "1,234", "円", "一万", "円"]),
    ("1万円と3.5ドル", ["1万", "円", "と", "3.5", "ドル"]),
    ("ＡＢＣ１２３を入力。", ["ＡＢＣ", "１２３", "を", "入力"]),
])
def test_word_spans_of_numbers(text: str, words: list[str]) -> None:
    _, spoken = japanese.phonemize_words(text)
    spans = japanese.word_spans(text, [surface for surface, _ in spoken])
    assert [text[a:b] for a, b in spans] == words


def test_empty_and_symbol_only_text() -> None:
    assert japanese.phonemize("") == ""
    assert japanese.phonemize("   ") == ""
    assert japanese.phonemize("😀") == ""


# ---------------------------------------------------------------- segmentation

SEGMENT_TABLE = [
    ("今日は晴れ。明日は雨！本当？", ["今日は晴れ。", "明日は雨！", "本当？"]),
    # a quote with its own 。 inside does not end the sentence
    ("「はい。」と言った。次の文。", ["「はい。」と言った。", "次の文。"]),
    # a decimal point is not a sentence end
    ("価格は3.5ドルです。以上。", ["価格は3.5ドルです。", "以上。"]),
    # half-width marks after Japanese text end sentences too
    ("本当!そうです?はい。", ["本当!", "そうです?", "はい。"]),
    # a line break after 。 completes the sentence; 、 alone does not
    ("一行目。\n二行目、続き。", ["一行目。", "二行目、続き。"]),
    # a URL's query is no sentence end (as in spaced text); a ? or ! after Japanese is
    ("詳細はhttps://example.com/search?q=東京&x=1を見て。次。",
     ["詳細はhttps://example.com/search?q=東京&x=1を見て。", "次。"]),
    ("OK!次へ。本当?!すごい。", ["OK!", "次へ。", "本当?!", "すごい。"]),
]


def _segment(text: str, pieces: list[str], **options: int | bool) -> list[str]:
    segmenter = Segmenter(language="ja", **options)  # type: ignore[arg-type]
    out: list[str] = []
    for piece in pieces:
        out += segmenter.feed(piece)
    return out + segmenter.flush()


@pytest.mark.parametrize(("text", "chunks"), SEGMENT_TABLE)
def test_japanese_sentences(text: str, chunks: list[str]) -> None:
    assert _segment(text, [text]) == chunks
    # Fed one character at a time (as an LLM streams), the same chunks.
    assert _segment(text, list(text)) == chunks


def test_complete_sentences_go_out_before_the_end() -> None:
    segmenter = Segmenter(language="ja")
    assert segmenter.feed("今日は晴れ。明日") == ["今日は晴れ。"]
    assert segmenter.flush() == ["明日"]


def test_clause_break_cuts_a_long_sentence() -> None:
    text = "あ" * 30 + "、" + "い" * 30 + "、" + "う" * 10 + "。"
    assert _segment(text, [text], max_chars=40) == ["あ" * 30 + "、", "い" * 30 + "、",
                                                     "う" * 10 + "。"]


def test_long_sentence_streamed_by_character_is_cut_only_at_clauses() -> None:
    # Fed as an LLM streams it, a sentence over max_chars is cut at 、 and nowhere else.
    text = "長い文ですが、ここで区切れます、そしてここでも。次の文。"
    assert _segment(text, list(text), max_chars=10) == [
        "長い文ですが、", "ここで区切れます、", "そしてここでも。", "次の文。"]


def test_english_rules_unchanged_by_the_japanese_table() -> None:
    segmenter = Segmenter()
    assert segmenter.feed("Dr. Smith paid $4.50. Then") == ["Dr. Smith paid $4.50."]


def test_limits_count_characters_of_english_speech() -> None:
    # A Japanese character says about three English ones: the first sentence of a reply, 46
    # characters (7 s of speech), is cut at its clause as an English one of that length is,
    # so a Kokoro voice, which makes a whole chunk before any audio, starts sooner.
    text = ("東京では午後から雨が降るかもしれませんので、"
            "出かける際には傘を持っていくことをおすすめします。また、明日の朝は晴れます。")
    chunks = ["東京では午後から雨が降るかもしれませんので、",
              "出かける際には傘を持っていくことをおすすめします。", "また、明日の朝は晴れます。"]
    assert _segment(text, [text], max_chars=300, first_max_chars=80) == chunks
    assert _segment(text, list(text), max_chars=300, first_max_chars=80) == chunks
    segmenter = Segmenter(language="ja", max_chars=300, first_max_chars=80)
    assert (segmenter.max_chars, segmenter.first_max_chars, segmenter.hard_max_chars) == (
        100, 27, 300)
    # A sentence of 135 characters (20 s of speech) is cut at a clause, as 300 English ones are.
    clause = "あ" * 44 + "、"
    assert _segment(clause * 3, [clause * 3], max_chars=300) == [clause * 2, clause]
    english = Segmenter(language="en", max_chars=300, first_max_chars=80)
    assert (english.max_chars, english.first_max_chars) == (300, 80)


def test_a_voice_that_makes_chunks_whole_has_its_first_clauses_cut() -> None:
    # Kokoro makes a chunk whole before any of its audio: after a short first sentence the
    # run's first clauses go out alone (while the run's chunks hold under 27 characters), as
    # the first sentence's would, fed whole or by character alike.
    text = ("はい。これは長い文で、読点だけが続き、終わりがなかなか来ないので、"
            "どこで区切るかを確かめるためのもので、最後にはここで終わります。次の文。")
    chunks = ["はい。", "これは長い文で、読点だけが続き、", "終わりがなかなか来ないので、",
              "どこで区切るかを確かめるためのもので、最後にはここで終わります。", "次の文。"]
    options = {"max_chars": 300, "first_max_chars": 80, "whole_chunks": True}
    assert _segment(text, [text], **options) == chunks
    assert _segment(text, list(text), **options) == chunks
    assert _segment(text, [text[i:i + 3] for i in range(0, len(text), 3)], **options) == chunks
    # Without it only the first sentence is cut (it is short here: nothing is).
    assert _segment(text, [text], max_chars=300, first_max_chars=80) == [
        "はい。", "".join(chunks[1:4]), "次の文。"]


def test_a_number_with_full_width_commas_is_never_cut() -> None:
    # "，" is a clause break, but not between digits: cut there, the chunks read "1,234," and
    # "567円", two numbers.
    text = "今回のご請求の合計金額は税込みで１，２３４，５６７円となっております。以上です。"
    chunks = [text[:-5], "以上です。"]
    for pieces in ([text], list(text)):
        assert _segment(text, pieces, max_chars=300, first_max_chars=80) == chunks
        assert _segment(text, pieces, max_chars=30) == chunks


def test_a_first_clause_goes_out_once_the_text_passes_the_limit() -> None:
    # Japanese has no spaces: a "word" runs from one clause mark to the next, and the first
    # clause waited for the whole second one. It goes out at the character where the buffer
    # passes the limit (27 characters), whatever the clause after it.
    text = ("東京では午後から雨が降るかもしれませんので、"
            "出かける際には傘を持っていくことをおすすめします。")
    segmenter = Segmenter(language="ja", max_chars=300, first_max_chars=80)
    out = [segmenter.feed(char) for char in text]
    # At the 27th character (28 in the buffer, with the gap after 、), not the 。 (47th).
    assert out[26] == ["東京では午後から雨が降るかもしれませんので、"]
    assert not any(out[:26])


def test_a_voice_that_makes_chunks_whole_cuts_at_a_clause_past_the_limit() -> None:
    # No clause ends within 27 characters: such a voice still gains from the first clause
    # (within twice that), where a voice that streams keeps the sentence whole.
    text = ("本日は東京都内の天気予報についてご案内させていただきますが、"
            "午後からは雨が降りますので、傘をお持ちください。")
    first = "本日は東京都内の天気予報についてご案内させていただきますが、"
    for pieces in ([text], list(text)):
        assert _segment(text, pieces, max_chars=300, first_max_chars=80, whole_chunks=True) == [
            first, "午後からは雨が降りますので、傘をお持ちください。"]
        assert _segment(text, pieces, max_chars=300, first_max_chars=80) == [text]


# Pieces of an LLM's Japanese reply, and what the segmenter must not be fooled by.
_PIECES = ["あ", "東京では", "、", "。", "！", "？", "!", "?", "「", "」", "（", "）", "１，２３４",
           "5,000円", "15:30", "Python", " ", "\n", "https://a.com/b?c=1", "ので", "ます",
           "…", "**", "😊", "ＡＢＣ", "，", "かもしれません", "出かける際には傘を持って"]


@st.composite
def _fragmented_japanese(draw: st.DrawFn) -> tuple[str, list[str]]:
    text = "".join(draw(st.lists(st.sampled_from(_PIECES), min_size=1, max_size=50)))
    cuts = sorted(set(draw(st.lists(st.integers(0, len(text)), max_size=40))))
    return text, [text[a:b] for a, b in itertools.pairwise([0, *cuts, len(text)])]


@settings(max_examples=300, deadline=None)
@given(_fragmented_japanese(), st.sampled_from([40, 120, 300]), st.sampled_from([0, 20, 40]),
       st.booleans())
def test_japanese_fragments_do_not_change_chunks(
        case: tuple[str, list[str]], max_chars: int, first: int, whole: bool) -> None:
    text, fragments = case
    options: dict[str, int | bool] = {"max_chars": max_chars, "whole_chunks": whole}
    if first:
        options["first_max_chars"] = first
    chunks = _segment(text, [text], **options)
    assert _segment(text, fragments, **options) == chunks
    # Nothing said is lost.
    assert ([ch for ch in text if ch.isalnum()]
            == [ch for chunk in chunks for ch in chunk if ch.isalnum()])
