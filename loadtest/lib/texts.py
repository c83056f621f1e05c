"""Benchmark texts for the realtime load test.

Fixed, plain English so runs are comparable across commits and machines:
- `paragraph`: five sentences, mixed lengths (one long first sentence with clauses, so the
  first-chunk policy has something to cut), about 20 s of audio with the bundled voice.
- `long`: twenty-four sentences, a few minutes of audio: steady state, not just the start.
- `tokens`: the paragraph, sent word by word (see `words()`), as an LLM would stream it.
"""

from __future__ import annotations

PARAGRAPH = (
    "When the morning train pulled into the station, a little later than the timetable "
    "promised, the platform was already crowded with people holding coffee and umbrellas. "
    "Nobody seemed to mind the rain. "
    "A conductor walked along the cars, checking tickets and answering questions about the "
    "connection to the coast. "
    "Two children pressed their faces against the window and counted the bridges as they "
    "passed. "
    "By noon the clouds had lifted, and the whole valley shone in the sun."
)

LONG = " ".join([
    "The old lighthouse stood at the end of a narrow path, where the land gave way to rocks "
    "and the sea.",
    "For more than a hundred years, its keepers had climbed the spiral stairs every evening "
    "to light the lamp.",
    "Ships passing in the night relied on that steady beam to find their way around the "
    "dangerous point.",
    "The last keeper, a quiet man named Thomas, kept a journal of every storm he had seen.",
    "He wrote about the winter when the waves reached the top of the cliff.",
    "He wrote about the summer fog that lasted for eleven days without a break.",
    "Most of all, he wrote about the birds that rested on the gallery during their long "
    "migrations.",
    "When the light was finally automated, Thomas moved to a small house in the village.",
    "He still walked to the point each morning, just to look at the water.",
    "Visitors sometimes asked him whether he missed the work.",
    "He would smile and say that the sea had never really let him go.",
    "In the spring, a group of students came to study the tides along the coast.",
    "They set up instruments on the rocks and measured the water every hour, day and night.",
    "Thomas brought them tea and told them stories about the shipwrecks of the past.",
    "One student, curious about the journal, asked if she could read it.",
    "She spent three evenings turning the pages by the light of a small lamp.",
    "The entries were short, but each one held a clear picture of a single day.",
    "Wind from the north, heavy rain, two fishing boats safely home before dark.",
    "Calm sea, a seal on the lower rocks, the smell of salt and cut grass.",
    "By the end of the summer, the students had finished their measurements.",
    "Before they left, they helped Thomas paint the railing around the gallery.",
    "The lighthouse looked brighter than it had in years.",
    "That autumn, the village held a small celebration in its honor.",
    "Thomas told one last story, and then he thanked everyone for listening.",
])

# Japanese, for the Kokoro voices: five sentences, about 15 s of audio.
JA_PARAGRAPH = (
    "朝の電車は、時刻表より少し遅れて駅に着きました。"
    "ホームには、傘とコーヒーを持った人がたくさんいました。"
    "車掌は切符を確かめながら、海へ行く乗り換えについて答えました。"
    "二人の子どもが窓に顔をつけて、橋の数を数えていました。"
    "昼には雲が晴れて、谷全体が日の光に輝きました。"
)

TEXTS: dict[str, str] = {"paragraph": PARAGRAPH, "long": LONG, "tokens": PARAGRAPH,
                         "ja": JA_PARAGRAPH}


def words(text: str) -> list[str]:
    """The text as streamed tokens: each word carries its leading space after the first,
    the way LLM tokenizers emit them, so concatenating the tokens gives the text back."""
    parts = text.split()
    return [parts[0]] + [" " + w for w in parts[1:]] if parts else []


def text_for(mode: str) -> str:
    try:
        return TEXTS[mode]
    except KeyError:
        raise ValueError(f"unknown text {mode!r}; choose from {', '.join(TEXTS)}") from None
