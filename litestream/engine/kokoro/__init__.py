"""Kokoro-82M voices (Japanese): the voice and its model files (voice.py), and the Japanese
reader that turns text into Kokoro's phonemes (japanese.py)."""
