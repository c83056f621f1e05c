"""Incremental audio encoders: int16 PCM pieces in as they are synthesized, bytes out to send.

Every encoder has the same two calls: `feed(samples) -> bytes` and `finish() -> bytes`. The
bytes of each call can be sent at once, so a speech response streams while it is synthesized
(issue: first bytes as soon as the first audio exists).

- ``pcm``: the samples as raw s16le, nothing added.
- ``wav``: a 44-byte header first, then raw s16le. The length is not known until the end and a
  streamed response cannot go back to fix it, so the RIFF and data sizes are 0xFFFFFFFF, as
  OpenAI's streamed WAV does; decoders read such a file to its end.
- ``mp3`` (LAME), ``opus`` (libopus in Ogg), ``aac`` (ADTS) and ``flac``: PyAV (FFmpeg's
  libraries, in-process; no ffmpeg binary). The muxer writes to a sink that cannot seek, so
  it never holds back a header to rewrite later: what it writes can be sent at once. Codecs
  whose rates are fixed (Opus: 48 kHz) get the audio resampled by PyAV.

Any format can be sent at another rate than the voice's (`output_rate`: OpenAI's `pcm` is
24 kHz; a request may ask for one): PyAV's resampler (FFmpeg's libswresample) converts it as it
streams, holding back only its filter's few samples until `finish`.

Encoding costs CPU (mp3 runs at about 100x real time); the server runs `feed` and `finish` in a
thread executor, never on the event loop. PyAV releases the GIL while it encodes. An encoder
belongs to one stream and is called by one thread at a time, in order.
"""

from __future__ import annotations

import logging
import struct
from typing import TYPE_CHECKING, Protocol

import numpy as np

from litestream.protocol.openai import RESPONSE_FORMATS

if TYPE_CHECKING:
    from av.audio.frame import AudioFrame

log = logging.getLogger("litestream.audio_encode")

STREAMING_SIZE = 0xFFFFFFFF  # RIFF/data size of a WAV whose length is not known yet

# PyAV codec and container for each compressed format, and the sample rate the codec needs
# (None: keep the voice's rate).
_AV_FORMATS: dict[str, tuple[str, str, int | None, int | None]] = {
    # format: (codec, container, rate, bit rate)
    "mp3": ("libmp3lame", "mp3", None, 64_000),
    "opus": ("libopus", "ogg", 48_000, 32_000),
    "aac": ("aac", "adts", None, 64_000),
    "flac": ("flac", "flac", None, None),
}


# A stream with no audio (an input with nothing to speak, "...") must still be a file a player
# opens, as the empty WAV is: an MP3, Ogg or ADTS stream given no samples came out as 0 bytes,
# which is no file at all. So the compressed formats get this much silence (Opus, resampled,
# needs some: 10 samples at 22,050 Hz still made nothing).
EMPTY_STREAM_S = 0.02

# The Ogg muxer holds packets until a page spans 1 s by default: a listener would wait that long
# for the first sound. A 60 ms page costs about 30 bytes of page header per 60 ms of audio.
_MUXER_OPTIONS: dict[str, dict[str, str]] = {"opus": {"page_duration": "60000"}}


class Encoder(Protocol):
    """One stream's encoder. `feed` and `finish` return bytes ready to send (may be empty)."""

    format: str
    sample_rate: int  # of the input; the output's may differ (opus)

    def feed(self, samples: np.ndarray) -> bytes: ...

    def finish(self) -> bytes: ...


def _s16(samples: np.ndarray) -> np.ndarray:
    if samples.dtype != np.int16:
        raise TypeError(f"expected int16 samples, got {samples.dtype}")
    return samples.reshape(-1).astype("<i2", copy=False)


class _Resampler:
    """s16 mono from one rate to another, in pieces as they come (PyAV's AudioResampler)."""

    def __init__(self, rate_in: int, rate_out: int) -> None:
        import av  # imported here: only a rate change needs FFmpeg's libraries

        self._rate_in = rate_in
        self._resampler = av.AudioResampler(format="s16", layout="mono", rate=rate_out)
        self._pts = 0
        self._flushed = False

    def feed(self, pcm: np.ndarray) -> np.ndarray:
        import av

        if pcm.size == 0:
            return pcm
        frame = av.AudioFrame.from_ndarray(pcm.reshape(1, -1), format="s16", layout="mono")
        frame.sample_rate = self._rate_in
        frame.pts = self._pts
        self._pts += pcm.size
        return self._samples(self._resampler.resample(frame))

    def flush(self) -> np.ndarray:
        """What the filter still holds; nothing on a second call."""
        if self._flushed or self._pts == 0:
            return np.zeros(0, dtype="<i2")
        self._flushed = True
        return self._samples(self._resampler.resample(None))

    @staticmethod
    def _samples(frames: list[AudioFrame]) -> np.ndarray:
        parts = [f.to_ndarray().reshape(-1).astype("<i2", copy=False) for f in frames]
        return np.concatenate(parts) if parts else np.zeros(0, dtype="<i2")


class PcmEncoder:
    """Raw s16le mono: what protocol-v1 sends, with no frame headers; resampled to
    `output_rate` when it differs from the voice's."""

    def __init__(self, sample_rate: int, output_rate: int | None = None) -> None:
        self.format = "pcm"
        self.sample_rate = sample_rate
        self.output_rate = output_rate or sample_rate
        self._resampler = (None if self.output_rate == sample_rate
                           else _Resampler(sample_rate, self.output_rate))

    def _pcm(self, samples: np.ndarray) -> bytes:
        pcm = _s16(samples)
        if self._resampler is not None:
            pcm = self._resampler.feed(pcm)
        return pcm.tobytes()

    def _tail(self) -> bytes:
        return b"" if self._resampler is None else self._resampler.flush().tobytes()

    def feed(self, samples: np.ndarray) -> bytes:
        return self._pcm(samples)

    def finish(self) -> bytes:
        return self._tail()


def wav_header(sample_rate: int, data_bytes: int = STREAMING_SIZE, channels: int = 1) -> bytes:
    """A canonical 44-byte PCM s16le WAV header; sizes 0xFFFFFFFF when not known."""
    riff = STREAMING_SIZE if data_bytes == STREAMING_SIZE else 36 + data_bytes
    block = channels * 2
    return (b"RIFF" + struct.pack("<I", riff) + b"WAVE"
            + b"fmt " + struct.pack("<IHHIIHH", 16, 1, channels, sample_rate,
                                    sample_rate * block, block, 16)
            + b"data" + struct.pack("<I", data_bytes))


class WavEncoder(PcmEncoder):
    """Streaming WAV: the header goes out with the first bytes, sizes unknown."""

    def __init__(self, sample_rate: int, output_rate: int | None = None) -> None:
        super().__init__(sample_rate, output_rate)
        self.format = "wav"
        self._header_sent = False

    def _header(self) -> bytes:
        if self._header_sent:
            return b""
        self._header_sent = True
        return wav_header(self.output_rate)

    def feed(self, samples: np.ndarray) -> bytes:
        return self._header() + self._pcm(samples)

    def finish(self) -> bytes:
        return self._header() + self._tail()  # an empty stream is still a WAV file


class _Sink:
    """A write-only, non-seekable file for the muxer: collects what it writes until taken.

    Having no `seek`, it makes FFmpeg treat the output as a stream (a pipe), so muxers write
    headers up front and never come back to patch them (mp3's Xing frame, FLAC's STREAMINFO
    totals are left out, as for any piped output)."""

    def __init__(self) -> None:
        self._parts: list[bytes] = []

    def write(self, data: bytes) -> int:
        self._parts.append(bytes(data))
        return len(data)

    def flush(self) -> None:
        pass

    def take(self) -> bytes:
        out = b"".join(self._parts)
        self._parts.clear()
        return out


class AvEncoder:
    """mp3, opus (Ogg), aac (ADTS) or flac through PyAV, one packet at a time."""

    def __init__(self, fmt: str, sample_rate: int, output_rate: int | None = None) -> None:
        import av  # imported here: only compressed formats need FFmpeg's libraries

        codec, container_format, rate, bit_rate = _AV_FORMATS[fmt]
        self.format = fmt
        self.sample_rate = sample_rate
        self.output_rate = rate or output_rate or sample_rate
        self._sink = _Sink()
        self._container = av.open(self._sink, mode="w", format=container_format,
                                  options=_MUXER_OPTIONS.get(fmt, {}))
        stream = self._container.add_stream(codec, rate=self.output_rate, layout="mono")
        assert isinstance(stream, av.audio.stream.AudioStream)
        if bit_rate is not None:
            stream.bit_rate = bit_rate
        self._stream = stream
        codec_format = stream.codec_context.format
        assert codec_format is not None
        # Converts int16 mono at the voice's rate to what the codec takes (sample format,
        # rate); PyAV's encode then cuts the audio into the codec's frame size.
        self._resampler = av.AudioResampler(format=codec_format.name, layout="mono",
                                            rate=self.output_rate)
        self._pts = 0
        self._finished = False

    def _encode_frames(self, frames: list[AudioFrame]) -> None:
        for frame in frames:
            for packet in self._stream.encode(frame):
                self._container.mux(packet)

    def feed(self, samples: np.ndarray) -> bytes:
        import av

        pcm = _s16(samples)
        if pcm.size == 0:
            return self._sink.take()
        frame = av.AudioFrame.from_ndarray(pcm.reshape(1, -1), format="s16", layout="mono")
        frame.sample_rate = self.sample_rate
        frame.pts = self._pts
        self._pts += pcm.size
        self._encode_frames(list(self._resampler.resample(frame)))
        return self._sink.take()

    def finish(self) -> bytes:
        """Flush the resampler and the codec, write the trailer; safe to call twice. A stream
        fed no samples gets `EMPTY_STREAM_S` of silence first, so it is still a file."""
        if self._finished:
            return b""
        head = b""
        if self._pts == 0:
            silence = np.zeros(max(1, round(self.sample_rate * EMPTY_STREAM_S)), dtype=np.int16)
            head = self.feed(silence)
        self._finished = True
        self._encode_frames(list(self._resampler.resample(None)))
        for packet in self._stream.encode(None):
            self._container.mux(packet)
        self._container.close()
        return head + self._sink.take()


def output_rate(fmt: str, sample_rate: int, asked: int | None = None) -> int:
    """The sample rate of `fmt`'s output for input at `sample_rate`: the codec's own where it
    has one (Opus: 48 kHz), else `asked`, else the input's."""
    fixed = _AV_FORMATS[fmt][2] if fmt in _AV_FORMATS else None
    return fixed or asked or sample_rate


def new_encoder(fmt: str, sample_rate: int, asked_rate: int | None = None) -> Encoder:
    """An encoder for one of RESPONSE_FORMATS, fed at the voice's `sample_rate`, writing at
    `output_rate(fmt, sample_rate, asked_rate)`."""
    if fmt == "pcm":
        return PcmEncoder(sample_rate, asked_rate)
    if fmt == "wav":
        return WavEncoder(sample_rate, asked_rate)
    if fmt in _AV_FORMATS:
        return AvEncoder(fmt, sample_rate, asked_rate)
    raise ValueError(f"unknown audio format {fmt!r}; one of {', '.join(RESPONSE_FORMATS)}")
