"""Lengths of the synthetic voice, GENERATED: `python -m loadtest.synthetic_fit --write`.

Fit to the real bundled voice (en_US-joe-medium, deterministic) over loadtest/synthetic_fit.py's
FIT_TEXTS: a sentence's frames at speed 1.0 are FRAMES_BASE plus, for each NFD codepoint of
its espeak-ng phonemes (en-us), FRAMES_PER_SYMBOL (FRAMES_OTHER_SYMBOL for one not seen in
the fit); at another speed, times SPEED_FACTORS (interpolated). How close it is:
docs/benchmarks.md, "The synthetic voice's lengths". Do not edit by hand.
"""

from __future__ import annotations

FRAMES_BASE = 12.375
FRAMES_OTHER_SYMBOL = 4.349
FRAMES_PER_SYMBOL: dict[str, float] = {
    ' ': 0.198,  # U+0020
    '!': 9.466,  # U+0021
    '"': 2.405,  # U+0022
    ',': 26.228,  # U+002C
    '.': 11.22,  # U+002E
    ':': 16.232,  # U+003A
    ';': 5.284,  # U+003B
    '?': 6.687,  # U+003F
    'a': 3.829,  # U+0061
    'b': 6.603,  # U+0062
    'd': 2.012,  # U+0064
    'e': 4.442,  # U+0065
    'f': 5.215,  # U+0066
    'h': 4.204,  # U+0068
    'i': 6.559,  # U+0069
    'j': 3.603,  # U+006A
    'k': 6.529,  # U+006B
    'l': 2.838,  # U+006C
    'm': 2.122,  # U+006D
    'n': 3.121,  # U+006E
    'o': 4.075,  # U+006F
    'p': 2.677,  # U+0070
    's': 6.641,  # U+0073
    't': 3.052,  # U+0074
    'u': 6.7,  # U+0075
    'v': 4.823,  # U+0076
    'w': 7.421,  # U+0077
    'z': 9.642,  # U+007A
    'æ': 5.656,  # U+00E6
    'ð': 4.72,  # U+00F0
    'ŋ': -0.48,  # U+014B
    'ɐ': 11.242,  # U+0250
    'ɑ': 8.235,  # U+0251
    'ɔ': 5.068,  # U+0254
    'ə': 5.123,  # U+0259
    'ɚ': 7.325,  # U+025A
    'ɛ': 5.298,  # U+025B
    'ɜ': 5.177,  # U+025C
    'ɡ': 1.981,  # U+0261
    'ɪ': 4.989,  # U+026A
    'ɹ': 1.815,  # U+0279
    'ɾ': -0.851,  # U+027E
    'ʃ': 9.868,  # U+0283
    'ʊ': 2.846,  # U+028A
    'ʌ': 4.502,  # U+028C
    'ʒ': 3.532,  # U+0292
    'ʔ': 0.912,  # U+0294
    'ˈ': 6.439,  # U+02C8
    'ˌ': 1.097,  # U+02CC
    'ː': 0.947,  # U+02D0
    '̃': 0.685,  # U+0303
    '̩': 0.912,  # U+0329
    'θ': 5.646,  # U+03B8
    'ᵻ': 7.063,  # U+1D7B
}
# (speed, frames at that speed / frames at speed 1.0), summed over the fit texts.
SPEED_FACTORS: tuple[tuple[float, float], ...] = (
    (0.5, 1.7576),
    (0.75, 1.22),
    (1.0, 1.0),
    (1.25, 0.8734),
    (1.5, 0.7159),
    (2.0, 0.6107),
)
