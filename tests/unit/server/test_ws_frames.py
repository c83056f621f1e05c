"""The WebSocket writer's framing (server/websocket.py, `ws_frames`): what it writes, read back
by an independent parser (python-websockets' sans-I/O client), is one message per event and
per audio frame, in order, whatever the sizes: a SendAudio holds a piece's frames and is split
only here."""

from __future__ import annotations

import msgpack
import pytest
from websockets.frames import Opcode
from websockets.protocol import Protocol, Side, State

from litestream.protocol import Encoding
from litestream.protocol import v1 as protocol
from litestream.server.websocket import ws_frames
from litestream.session import SendAudio, SendMessage


def messages(parts: list[bytes | memoryview]) -> list[tuple[Opcode, bytes]]:
    client = Protocol(Side.CLIENT, state=State.OPEN, max_size=None)
    client.receive_data(b"".join(parts))
    return [(frame.opcode, bytes(frame.data)) for frame in client.events_received()]


@pytest.mark.parametrize("size", [1, 100, 125, 126, 1764, 65535, 65536, 70000])
@pytest.mark.parametrize("tail", [0, 1, 7])
def test_a_pieces_frames_go_out_as_one_message_each(size: int, tail: int) -> None:
    pcm = bytes(range(256)) * ((3 * size + tail) // 256 + 1)
    pcm = pcm[:3 * size + tail]  # three whole frames and a short last one (or none)
    items: list[SendMessage | SendAudio] = [
        SendMessage("chunk", '{"type": "chunk"}'),
        SendAudio(0, pcm, 3.0, size),
        SendMessage("done", b"\x81\xa4type\xa4done"),
    ]
    got = messages(ws_frames(items))
    frames = [pcm[i:i + size] for i in range(0, len(pcm), size)]
    assert got == [(Opcode.TEXT, b'{"type": "chunk"}'),
                   *[(Opcode.BINARY, frame) for frame in frames],
                   (Opcode.BINARY, b"\x81\xa4type\xa4done")]
    assert [bytes(f) for f in items[1].frames()] == frames  # type: ignore[union-attr]


def test_msgpack_frames_split_at_each_message() -> None:
    pcm = bytes(range(250)) * 8  # 2000 bytes: frames of 800, 800 and 400
    encoded = [protocol.encode_audio(4, pcm[i:i + 800], Encoding.MSGPACK)
               for i in range(0, 2000, 800)]
    item = SendAudio(4, b"".join(encoded), 50.0, len(encoded[0]))
    got = messages(ws_frames([item]))
    assert [msgpack.unpackb(data) for _, data in got] == [
        {"type": "audio", "seq": 4, "pcm": pcm[i:i + 800]} for i in range(0, 2000, 800)]


def test_one_frame_is_one_message() -> None:
    item = SendAudio(1, b"\x01\x02" * 10, 1.0)  # frame_size 0: the payload is one frame
    assert messages(ws_frames([item])) == [(Opcode.BINARY, b"\x01\x02" * 10)]
    assert item.frames() == [b"\x01\x02" * 10]
