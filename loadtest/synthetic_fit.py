"""The synthetic voice's lengths against the real bundled voice: fit them, and say how close.

    python -m loadtest.synthetic_fit            # error of the checked-in table, espeak's cost
    python -m loadtest.synthetic_fit --write    # refit and rewrite engine/synthetic_lengths.py

The synthetic voice (litestream/engine/synthetic.py) cannot afford the real front pass per
sentence at 1,000 streams on two cores (0.6 ms per character), so it prices a sentence's frames
from its phonemes: an intercept plus frames per phoneme symbol, fit by least squares (a little
ridge) to what the real voice gives, deterministic (no noise), over FIT_TEXTS; speed scales the
whole by a measured factor per speed. This script prints the error on HELD_OUT_TEXTS (texts the
fit never saw) and on the benchmark paragraph and long text, per sentence and in total, at each
speed; the noisy voice (noise_w 0.8, the server's default) against the deterministic one; and
what espeak-ng costs per sentence, the part of the synthetic encode that really runs.
Run it under the heavy lock: the espeak figures are timings.
"""

from __future__ import annotations

import argparse
import time
import unicodedata
from collections.abc import Sequence
from pathlib import Path

import numpy as np

from litestream.engine import synthetic, synthetic_lengths
from litestream.engine.phonemize import phonemize
from litestream.engine.piper.voice import PiperVoice
from litestream.text.segmenter import Segmenter
from loadtest.lib.streams import machine_info
from loadtest.lib.texts import LONG, PARAGRAPH

SPEEDS = (0.5, 0.75, 1.0, 1.25, 1.5, 2.0)
RIDGE = 1.0  # pulls rare symbols' weights toward zero rather than letting them absorb noise

FIT_TEXTS = (
    'Hello.',
    'Yes, of course.',
    'No, thank you!',
    'Are you sure about that?',
    'Please hold while I transfer your call.',
    'Your order number is 48213, and it will ship on Tuesday.',
    'The meeting has been moved to 3:30 in the afternoon.',
    'It costs $19.99 plus tax, which comes to about twenty-two dollars.',
    'Dr. Patel will see you at 9 a.m. sharp.',
    'The temperature dropped to minus 12 degrees overnight.',
    'NASA launched the probe in 1977, and it is still sending data.',
    'Call me back at 555-0142 when you get a chance.',
    "I'd like a large coffee, two sugars, and a splash of milk.",
    'Wait, what did you just say?',
    "That's absolutely incredible!",
    'Turn left at the second light, then continue for about 400 meters.',
    'The quarterly report shows a 7.5% increase in revenue.',
    'Could you please spell your last name for me?',
    'According to the manual, the device must be charged for at least eight hours before '
    'first use.',
    'She said, "I\'ll be there by noon," but she never showed up.',
    'The quick brown fox jumps over the lazy dog.',
    'Pack my box with five dozen liquor jugs.',
    'How vexingly quick daft zebras jump!',
    'Sphinx of black quartz, judge my vow.',
    'The committee, after much deliberation and several heated arguments, finally '
    'approved the budget.',
    'In the beginning, there was only darkness, silence, and a cold, endless sea.',
    'We apologize for the inconvenience; the service will resume shortly.',
    'Thank you for calling. Your call is important to us.',
    'The password must contain at least one uppercase letter, one digit, and one symbol.',
    'Mr. and Mrs. Thompson arrived on the 4th of July, 2019.',
    'The file is 2.4 gigabytes, so the download may take several minutes.',
    'Hmm, let me think about that for a second.',
    'Oh no, I left my keys in the car again.',
    'Would you like to hear the weather forecast for tomorrow?',
    'Expect scattered showers in the morning, clearing by late afternoon, with highs near 68.',
    'The train to Boston departs from platform 7 at 6:45.',
    'Chapter one. The boy who lived.',
    'Breaking news: the bridge will be closed for repairs until further notice.',
    'To reset your device, press and hold the power button for ten seconds.',
    "I'm not sure I understand the question.",
    'The Eiffel Tower is about 330 meters tall.',
    'Photosynthesis converts light energy into chemical energy stored in glucose.',
    'Mitochondria are often called the powerhouse of the cell.',
    'The stock market closed higher today, led by gains in technology and energy shares.',
    'Please remember to bring your identification and a copy of your reservation.',
    'Ladies and gentlemen, we are now beginning our descent into Chicago.',
    'What time does the pharmacy close on Sundays?',
    "Whenever you're ready, we can begin the interview.",
    'The recipe calls for two cups of flour, one egg, and a pinch of salt.',
    'He ran, stumbled, got up, and ran again, faster than before.',
    'Absolutely not.',
    'Maybe later.',
    'Sure thing!',
    "I'll get right on it.",
    "Honestly, I think the first option is better, but it's your call.",
    'The jury deliberated for three days before reaching a unanimous verdict.',
    "Her grandmother's garden was full of roses, lavender, and tall sunflowers.",
    'Despite the storm, the fishermen set out before dawn, hoping for a good catch.',
    'Please enter your four-digit PIN followed by the pound key.',
    'You have three new messages and one missed call.',
    'The museum is open from ten to six, Tuesday through Sunday.',
    'An apple a day keeps the doctor away, or so they say.',
    'If it rains tomorrow, the picnic will be postponed until next weekend.',
    'Software version 4.2.1 fixes several bugs and improves battery life.',
    'My flight was delayed by almost two hours because of fog.',
    'They built the cathedral over the course of nearly two centuries.',
    'Can you recommend a good Italian restaurant nearby?',
    'The library will be closed on Monday for the holiday.',
    'Scientists have discovered a new species of frog in the rainforest.',
    'Click the blue button in the upper right corner to continue.',
    "I've been waiting for this moment my whole life.",
    'Every Tuesday and Thursday, the market fills the square with fruit, bread, and flowers.',
    'Remember: safety first, speed second.',
    'The CEO announced record profits and a new hiring plan.',
    "Let's meet at the corner café around half past seven.",
    "Isn't it wonderful how quickly children learn new languages?",
    'The lecture covered quantum mechanics, relativity, and the history of thermodynamics.',
    'Your appointment is confirmed for Friday, March 14th, at 2:15 p.m.',
    'Water boils at 100 degrees Celsius at sea level.',
    'Unfortunately, that item is currently out of stock.',
    "We'll send you an email as soon as it becomes available again.",
    'Good morning! How can I help you today?',
    "I'm sorry, I didn't catch that. Could you repeat it?",
    'There are approximately 7.9 billion people living on Earth.',
    'The spacecraft traveled 480 million kilometers to reach its destination.',
    'Rain, snow, sleet, or hail, the mail must go through.',
    'Knowledge is power, but enthusiasm pulls the switch.',
    'Once upon a time, in a kingdom far, far away, there lived a curious young princess.',
    'The old man sat by the fire, telling stories of the sea.',
    'Please fasten your seatbelts and return your seats to the upright position.',
    'The algorithm runs in linear time, with constant memory overhead.',
    "Don't forget to water the plants while I'm away.",
    'Fourteen, fifteen, sixteen, seventeen, eighteen, nineteen, twenty.',
    'Zero point zero zero one.',
    'The URL is www dot example dot com slash help.',
    'Press one for sales, two for support, or stay on the line for an operator.',
    'Whoa, that was close!',
    'It was the best of times, it was the worst of times.',
    'Through the window, she watched the snow fall softly on the empty street.',
    'Happy birthday! I hope all your wishes come true.',
    'The conference will feature speakers from over thirty countries.',
    'Are we there yet?',
    'Keep calm and carry on.',
    'The hikers reached the summit just before sunset, exhausted but triumphant.',
    'This product contains nuts and may not be suitable for people with allergies.',
    'He whispered, "Don\'t move," and pointed at the snake.',
    'The bakery on Fifth Street sells the best croissants in town.',
    'Our records indicate that your last payment was received on June 2nd.',
    "I can't believe it's already December.",
    "The orchestra played Beethoven's Ninth Symphony to a standing ovation.",
    'Please leave a message after the tone.',
    'Traffic is heavy on the northbound highway due to an accident near exit 23.',
    'Good night, and sweet dreams.',
    'The experiment failed twice, but the third attempt succeeded beyond expectations.',
    'Wow.',
    'Okay.',
    'Right, so where were we?',
    'Exactly!',
    'The capital of Australia is Canberra, not Sydney.',
    "About 71 percent of the Earth's surface is covered by water.",
    'The painting sold at auction for 4.5 million dollars.',
    'Could you turn the volume down a little, please?',
    'She plays the violin, the piano, and, surprisingly, the bagpipes.',
    'The volcano erupted without warning, sending ash miles into the sky.',
    'Grab an umbrella; it looks like rain.',
    'We regret to inform you that your application has not been successful.',
    'Congratulations on your promotion!',
    'The package was left at your front door at 4:52 p.m.',
    'A journey of a thousand miles begins with a single step.',
    'I think, therefore I am.',
    'The children laughed and splashed in the shallow water of the lake.',
    "Alright, let's get started with today's agenda.",
    "First, we'll review last week's results; then, we'll plan the next sprint.",
    'The battery level is low. Please connect your charger.',
    "Kyoto, Osaka, and Tokyo are among Japan's most visited cities.",
    'The wolf howled at the moon, and the forest fell silent.',
)

HELD_OUT_TEXTS = (
    'Good afternoon, and welcome to the show.',
    'Your balance is $1,204.56 as of yesterday.',
    'Is this seat taken?',
    'The ferry leaves every thirty minutes, starting at 7 a.m.',
    'After the concert, we walked along the river and talked until midnight.',
    'Please verify your email address to activate your account.',
    'Mount Everest is 8,849 meters above sea level.',
    "I'll have the soup of the day and a glass of water, please.",
    'The professor, who had taught there for forty years, retired last spring.',
    'What a beautiful day!',
    'Lightning struck the old oak tree twice in one summer.',
    'You can return the item within 30 days for a full refund.',
    'The satellite orbits the planet once every ninety-two minutes.',
    'No problem at all.',
    "Hold on, I'm looking it up right now.",
    'The detective examined the letter, the footprints, and the broken lock.',
    'Our next stop is Central Station. Please mind the gap.',
    'Somewhere over the rainbow, way up high.',
    'The new policy takes effect on January 1st.',
    "Dinner will be served in the main hall at eight o'clock.",
    'Why does the sky look blue during the day?',
    'Because air scatters short blue wavelengths more than long red ones.',
    'The engine roared to life, and the car shot forward into the night.',
    'Thank you so much for your patience.',
    'The elevator is out of service; please use the stairs.',
    'Three hundred and sixty-five days make a year, except in a leap year.',
    'He opened the box slowly, afraid of what he might find inside.',
    'Please speak clearly after the beep.',
    'The dog barked at the mailman every single morning.',
    'Are there any questions before we continue?',
)


def sentences(text: str) -> list[str]:
    segmenter = Segmenter(language="en")
    return segmenter.feed(text) + segmenter.flush()


def symbols(text: str) -> str:
    """The phoneme symbols the synthetic voice weighs: NFD codepoints of espeak's output."""
    return unicodedata.normalize("NFD", phonemize(text, synthetic.ESPEAK_VOICE))


def real_frames(voice: PiperVoice, texts: Sequence[str],
                speeds: Sequence[float]) -> np.ndarray:
    """frames[i, j]: the real voice's length of texts[i] at speeds[j]."""
    out = np.zeros((len(texts), len(speeds)))
    for i, text in enumerate(texts):
        ids = voice.phoneme_ids(text)
        for j, speed in enumerate(speeds):
            out[i, j] = voice.encode(ids, speed).frames
    return out


def fit(texts: Sequence[str], frames: np.ndarray) -> tuple[float, dict[str, float], float,
                                                            tuple[tuple[float, float], ...]]:
    """(base, frames per symbol, frames of an unseen symbol, speed factors) from speed-1.0
    lengths (column SPEEDS.index(1.0)) and every speed's total against speed 1.0's."""
    seen = [symbols(t) for t in texts]
    names = sorted({c for s in seen for c in s})
    col = {c: i for i, c in enumerate(names)}
    x = np.zeros((len(texts), len(names) + 1))
    x[:, -1] = 1.0
    for row, s in enumerate(seen):
        for c in s:
            x[row, col[c]] += 1
    y = frames[:, SPEEDS.index(1.0)]
    penalty = RIDGE * np.eye(x.shape[1])
    penalty[-1, -1] = 0.0  # no pull on the intercept
    w = np.linalg.solve(x.T @ x + penalty, x.T @ y)
    per_symbol = {c: round(float(w[col[c]]), 3) for c in names}
    counts = x[:, :-1].sum(axis=0)
    other = round(float((w[:-1] * counts).sum() / counts.sum()), 3)
    total_1 = frames[:, SPEEDS.index(1.0)].sum()
    factors = tuple((s, round(float(frames[:, j].sum() / total_1), 4))
                    for j, s in enumerate(SPEEDS))
    return round(float(w[-1]), 3), per_symbol, other, factors


def write_table(path: Path, base: float, per_symbol: dict[str, float], other: float,
                factors: tuple[tuple[float, float], ...], voice_id: str) -> None:
    rows = "\n".join(f"    {c!r}: {w},  # U+{ord(c):04X}" for c, w in per_symbol.items())
    speed_rows = "\n".join(f"    ({s}, {f})," for s, f in factors)
    head = "Lengths of the synthetic voice, GENERATED: `python -m loadtest.synthetic_fit --write`."
    path.write_text(f'''"""{head}

Fit to the real bundled voice ({voice_id}, deterministic) over loadtest/synthetic_fit.py's
FIT_TEXTS: a sentence's frames at speed 1.0 are FRAMES_BASE plus, for each NFD codepoint of
its espeak-ng phonemes (en-us), FRAMES_PER_SYMBOL (FRAMES_OTHER_SYMBOL for one not seen in
the fit); at another speed, times SPEED_FACTORS (interpolated). How close it is:
docs/benchmarks.md, "The synthetic voice's lengths". Do not edit by hand.
"""

from __future__ import annotations

FRAMES_BASE = {base}
FRAMES_OTHER_SYMBOL = {other}
FRAMES_PER_SYMBOL: dict[str, float] = {{
{rows}
}}
# (speed, frames at that speed / frames at speed 1.0), summed over the fit texts.
SPEED_FACTORS: tuple[tuple[float, float], ...] = (
{speed_rows}
)
''', encoding="utf-8")


def errors(name: str, texts: Sequence[str], real: np.ndarray) -> None:
    model = synthetic.LengthModel()
    for j, speed in enumerate(SPEEDS):
        predicted = np.array([model.frames(symbols(t), speed) for t in texts], dtype=float)
        rel = (predicted - real[:, j]) / real[:, j]
        print(f"  {name:<10} speed {speed:<4} {len(texts):>3} sentences: per sentence "
              f"|error| mean {100 * np.mean(np.abs(rel)):.1f}%, p90 "
              f"{100 * np.percentile(np.abs(rel), 90):.1f}%, max {100 * np.max(np.abs(rel)):.1f}%;"
              f" total {100 * (predicted.sum() / real[:, j].sum() - 1):+.2f}%")


def espeak_cost(texts: Sequence[str], rounds: int) -> None:
    work = list(texts) * rounds
    phonemize(work[0], synthetic.ESPEAK_VOICE)  # the backend's creation is not the figure
    cpu0, wall0 = time.thread_time(), time.perf_counter()
    for text in work:
        phonemize(text, synthetic.ESPEAK_VOICE)
    cpu, wall = time.thread_time() - cpu0, time.perf_counter() - wall0
    chars = sum(map(len, work))
    per_sentence_ms = 1000 * cpu / len(work)
    # The benchmark paragraph: 5 sentences, ~20 s of audio. 1,000 listeners in steady state
    # phonemize 1000 * 5 / 20 = 250 sentences a second.
    print(f"espeak-ng phonemize, {len(work)} sentences ({chars / len(work):.0f} chars mean): "
          f"{per_sentence_ms:.3f} ms CPU per sentence ({1e6 * cpu / chars:.1f} us per char), "
          f"wall {1000 * wall / len(work):.3f} ms; at 1,000 paragraph listeners (250 sentences/s):"
          f" {per_sentence_ms * 250 / 10:.1f}% of one core")
    model = synthetic.LengthModel()
    texts_symbols = [symbols(t) for t in texts]
    start = time.thread_time()
    for _ in range(rounds):
        for s in texts_symbols:
            model.frames(s, 1.0)
    weigh = time.thread_time() - start
    print(f"  and weighing the symbols: {1e6 * weigh / (rounds * len(texts)):.1f} us per sentence")


def machine() -> str:
    info = machine_info()
    return (f"{info['cpu']}, {info['nproc']} cpus, python {info['python']}, "
            f"load {info['loadavg_1m_at_start']}")


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m loadtest.synthetic_fit",
                                     description=__doc__.split("\n\n")[0])
    parser.add_argument("--write", action="store_true",
                        help="refit on FIT_TEXTS, rewrite litestream/engine/synthetic_lengths.py")
    parser.add_argument("--rounds", type=int, default=20, help="espeak timing: passes over texts")
    args = parser.parse_args(argv)
    print(f"machine: {machine()}")
    voice = PiperVoice.load(deterministic=True)
    held = [*HELD_OUT_TEXTS]
    bench = sentences(PARAGRAPH) + sentences(LONG)
    real_fit = real_frames(voice, FIT_TEXTS, SPEEDS)
    if args.write:
        table = Path(synthetic_lengths.__file__)
        write_table(table, *fit(FIT_TEXTS, real_fit), voice_id=voice.info.id)
        print(f"wrote {table}; rerun without --write to measure it")
        return 0
    print(f"synthetic frames against {voice.info.id} (deterministic), by speed:")
    errors("fit", FIT_TEXTS, real_fit)
    errors("held-out", held, real_frames(voice, held, SPEEDS))
    errors("benchmark", bench, real_frames(voice, bench, SPEEDS))
    noisy = PiperVoice.load(deterministic=False)
    det = real_frames(voice, bench, (1.0,))[:, 0]
    runs = np.array([real_frames(noisy, bench, (1.0,))[:, 0] for _ in range(3)])
    spread = np.abs(runs - runs.mean(axis=0)) / runs.mean(axis=0)
    print(f"the noisy voice (noise_w {noisy.noise_w}, the server's default), benchmark texts, "
          f"3 runs: total {100 * (runs.sum(axis=1).mean() / det.sum() - 1):+.2f}% against "
          f"deterministic; per sentence it varies by {100 * spread.mean():.1f}% (mean |dev|)")
    espeak_cost([*FIT_TEXTS, *held], args.rounds)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
