"""Per-stream state: the scheduler's view of one stream and of each sentence it has queued.

Plain records that the scheduler's parts read and update (`_pacing` prices and times them,
`_run_queue` orders them, `scheduler.Scheduler` moves them through their life).
Internal to the scheduler: nothing outside it sees these.
"""

from __future__ import annotations

from collections import deque

from litestream.scheduler.types import Priority, SynthesisStep

__all__ = ["Sentence", "StreamRecord"]


class Sentence:
    """One submitted sentence: its encode step, then (once encoded) the frames left to decode."""

    __slots__ = ("encode", "frames", "latent", "next_frame")

    def __init__(self, encode: SynthesisStep) -> None:
        self.encode = encode
        self.frames: int | None = None  # known once encoded
        self.latent: object | None = None
        self.next_frame = 0  # first frame not yet handed out


class StreamRecord:
    """The scheduler's view of one stream: its sentences, its listener's playback clock, its
    VTC counter. Heap entries name it with its `version`; any change bumps the version."""

    __slots__ = (
        "attained_s",
        "busy_rtf",
        "closed",
        "deadline_s",
        "due_s",
        "eligible_s",
        "first_cost_s",
        "first_deadline_s",
        "first_rank_s",
        "id",
        "in_flight",
        "inflight_audio_s",
        "opened_s",
        "playback_start_s",
        "priority",
        "rank_s",
        "ready_audio_s",
        "sent_audio_s",
        "sentences",
        "shift_s",
        "stall_s",
        "submitted",
        "version",
        "voice",
        "window_frames",
    )

    def __init__(self, stream_id: str, priority: Priority, shift_s: float, now: float) -> None:
        self.id = stream_id
        self.priority = priority
        self.shift_s = shift_s
        self.opened_s = now
        self.sentences: deque[Sentence] = deque()  # head: the sentence being synthesized
        self.in_flight: SynthesisStep | None = None  # at most one step at a time
        self.inflight_audio_s = 0.0  # predicted audio of the in-flight step
        self.ready_audio_s = 0.0  # audio completed but not yet reported sent
        self.playback_start_s: float | None = None
        self.sent_audio_s = 0.0  # since playback_start_s
        self.first_deadline_s: float | None = None  # before playback: first audio's deadline
        self.first_cost_s = 0.0  # its share in Pacing.pending_first_s
        self.first_rank_s: float | None = None  # rank its first audio's encode step went out at
        self.window_frames = 0  # the last window handed out; 0: the next is a first window
        self.attained_s = 0.0  # VTC counter: compute seconds charged to this stream
        self.busy_rtf = 0.0  # its share in Pacing.busy_rtf (0 while it has no work)
        self.version = 0
        self.closed = False
        self.submitted = False
        self.voice = ""  # last voice used: admission and load price the stream at it
        self.stall_s = 0.0
        # Key of the next step, valid for the current version.
        self.due_s = 0.0  # when its audio must be sent
        self.deadline_s = 0.0
        self.rank_s = 0.0
        self.eligible_s = 0.0

