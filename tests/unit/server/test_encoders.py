"""Incremental encoders: each output decodes back (PyAV) to the audio that went in."""

from __future__ import annotations

import io
import struct

import av
import numpy as np
import pytest

from litestream.protocol.openai import RESPONSE_FORMATS
from litestream.server.encoders import (
    EMPTY_STREAM_S,
    STREAMING_SIZE,
    new_encoder,
    output_rate,
    wav_header,
)

RATE = 22050


def tone(seconds: float, rate: int = RATE) -> np.ndarray:
    t = np.arange(round(seconds * rate)) / rate
    return (np.sin(2 * np.pi * 330 * t) * 9000).astype(np.int16)


def encode_in_pieces(fmt: str, samples: np.ndarray, piece: int = 2205) -> list[bytes]:
    encoder = new_encoder(fmt, RATE)
    parts = [encoder.feed(samples[i:i + piece]) for i in range(0, len(samples), piece)]
    parts.append(encoder.finish())
    return parts


def decode(data: bytes) -> tuple[np.ndarray, int]:
    """All samples of the first audio stream as float mono, and the stream's rate."""
    with av.open(io.BytesIO(data)) as container:
        stream = container.streams.audio[0]
        frames = [f.to_ndarray().reshape(-1).astype(np.float64) for f in container.decode(stream)]
        rate = stream.codec_context.sample_rate
    return (np.concatenate(frames) if frames else np.zeros(0)), rate


# Encoder delay and end padding of the lossy codecs: at most about two codec frames.
PADDING_S = {"mp3": 0.11, "aac": 0.1, "opus": 0.03, "flac": 0.0, "wav": 0.0}


@pytest.mark.parametrize("fmt", [f for f in RESPONSE_FORMATS if f != "pcm"])
def test_each_format_decodes_to_the_length_and_rate_fed(fmt: str) -> None:
    samples = tone(2.0)
    data = b"".join(encode_in_pieces(fmt, samples))
    decoded, rate = decode(data)
    assert rate == output_rate(fmt, RATE) == (48000 if fmt == "opus" else RATE)
    seconds = len(decoded) / rate
    assert 2.0 - 0.001 <= seconds <= 2.0 + PADDING_S[fmt]


@pytest.mark.parametrize("fmt", ["wav", "flac"])
def test_lossless_formats_give_back_the_exact_samples(fmt: str) -> None:
    samples = tone(1.0)
    decoded, _ = decode(b"".join(encode_in_pieces(fmt, samples)))
    # Both decode to s16 samples (held here as float64, which represents them exactly).
    assert np.array_equal(decoded, samples.astype(np.float64))


@pytest.mark.parametrize("fmt", ["mp3", "aac", "opus"])
def test_lossy_formats_keep_the_tone(fmt: str) -> None:
    samples = tone(1.0)
    decoded, rate = decode(b"".join(encode_in_pieces(fmt, samples)))
    spectrum = np.abs(np.fft.rfft(decoded))
    peak_hz = np.argmax(spectrum) * rate / len(decoded)
    assert abs(peak_hz - 330) < 5


@pytest.mark.parametrize("fmt", RESPONSE_FORMATS)
def test_bytes_come_out_before_the_end(fmt: str) -> None:
    """Streaming: most of the output is handed back while audio is still being fed."""
    parts = encode_in_pieces(fmt, tone(2.0))
    fed, final = parts[:-1], parts[-1]
    assert sum(map(len, fed[:3])) > 0  # the first 300 ms already gave bytes to send
    assert sum(map(len, fed)) > len(final)


def test_pcm_is_the_samples_as_s16le() -> None:
    samples = tone(0.5)
    data = b"".join(encode_in_pieces("pcm", samples))
    assert np.array_equal(np.frombuffer(data, "<i2"), samples)


def test_wav_header_has_streaming_sizes_and_the_rate() -> None:
    parts = encode_in_pieces("wav", tone(0.2))
    header = parts[0][:44]
    assert header[:4] == b"RIFF" and header[8:16] == b"WAVEfmt "
    assert struct.unpack("<I", header[4:8])[0] == STREAMING_SIZE
    assert struct.unpack("<I", header[40:44])[0] == STREAMING_SIZE
    assert struct.unpack("<I", header[24:28])[0] == RATE
    assert b"".join(parts).count(b"RIFF") == 1  # the header is sent once


def test_wav_of_nothing_is_still_a_header() -> None:
    encoder = new_encoder("wav", RATE)
    assert encoder.finish() == wav_header(RATE)
    assert encoder.finish() == b""


@pytest.mark.parametrize("fmt", [f for f in RESPONSE_FORMATS if f != "pcm"])
def test_a_stream_of_no_audio_is_still_a_file_that_decodes(fmt: str) -> None:
    """An input with nothing to speak ("...") makes no samples; the body must still be a file
    of its format (an MP3, Ogg or ADTS body of 0 bytes is not one), at most a blip long."""
    encoder = new_encoder(fmt, RATE)
    data = encoder.feed(np.zeros(0, dtype=np.int16)) + encoder.finish()
    assert data
    decoded, rate = decode(data)
    assert rate == output_rate(fmt, RATE)
    assert len(decoded) / rate <= EMPTY_STREAM_S + PADDING_S[fmt]
    assert not np.any(decoded)  # silence


def test_known_length_wav_header() -> None:
    header = wav_header(16000, data_bytes=3200)
    assert struct.unpack("<I", header[4:8])[0] == 36 + 3200
    assert struct.unpack("<I", header[40:44])[0] == 3200


def test_finish_twice_and_empty_feeds_are_harmless() -> None:
    encoder = new_encoder("mp3", RATE)
    assert encoder.feed(np.zeros(0, dtype=np.int16)) == b""
    data = encoder.feed(tone(0.5)) + encoder.finish()
    assert encoder.finish() == b""
    decoded, _ = decode(data)
    assert len(decoded) > 0


def test_float_samples_are_refused() -> None:
    with pytest.raises(TypeError):
        new_encoder("pcm", RATE).feed(np.zeros(10, dtype=np.float32))
    with pytest.raises(ValueError):
        new_encoder("ogg", RATE)


@pytest.mark.parametrize("fmt", RESPONSE_FORMATS)
def test_each_format_can_be_written_at_another_rate(fmt: str) -> None:
    """OpenAI's pcm is 24 kHz whatever the voice's rate; a request may ask for another rate:
    the audio is resampled as it streams, keeping its length and its pitch."""
    asked = 24_000
    encoder = new_encoder(fmt, RATE, asked)
    samples = tone(2.0)
    data = b"".join([encoder.feed(samples[i:i + 2205]) for i in range(0, len(samples), 2205)]
                    + [encoder.finish()])
    rate = output_rate(fmt, RATE, asked)
    assert rate == (48000 if fmt == "opus" else asked)
    if fmt == "pcm":
        decoded = np.frombuffer(data, "<i2").astype(np.float64)
    else:
        decoded, decoded_rate = decode(data)
        assert decoded_rate == rate
    seconds = len(decoded) / rate
    assert 2.0 - 0.002 <= seconds <= 2.0 + PADDING_S.get(fmt, 0.0) + 0.002
    steady = decoded[rate // 4: -rate // 4]  # away from the codec's and filter's edges
    spectrum = np.abs(np.fft.rfft(steady))
    assert abs(np.argmax(spectrum) * rate / len(steady) - 330) < 5


def test_resampled_pcm_of_nothing_is_nothing_and_finish_twice_is_harmless() -> None:
    encoder = new_encoder("pcm", RATE, 24_000)
    assert encoder.feed(np.zeros(0, dtype=np.int16)) == b""
    assert encoder.finish() == b""
    wav = new_encoder("wav", RATE, 16_000)
    assert wav.finish() == wav_header(16_000)
    assert wav.finish() == b""
