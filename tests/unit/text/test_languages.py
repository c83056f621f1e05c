"""Which language a text's script says (text/languages.script_language): plain calls."""

from __future__ import annotations

import pytest

from litestream.text.languages import script_language


@pytest.mark.parametrize("text,language", [
    ("こんにちは、今日はいい天気ですね。", "ja"),
    ("Pythonでスクリプトを書く", "ja"),        # an English word in a Japanese sentence
    ("ChatGPTに聞いた", "ja"),
    ("ｱｲｳ", "ja"),                            # half-width katakana
    ("Hello there.", "en"),
    ("Café au lait, s'il vous plaît.", "en"),  # Latin script: the default voice's rules
    ("Hello, my name is 田中.", "en"),          # a Japanese name in an English sentence
    ("I love 東京タワー and sushi, really a lot.", "en"),
    ("你好世界", None),                         # Han with no kana: not said to be Japanese
    ("1234 !! ...", None),
    ("", None),
])
def test_script_language(text: str, language: str | None) -> None:
    assert script_language(text) == language
