"""Per-stream state: the scheduler's view of one stream and of each sentence it has queued.

Plain records that the scheduler's parts read and update (`_pacing` prices and times them,
`_run_queue` orders them, `scheduler.Scheduler` moves them through their life).
Internal to the scheduler: nothing outside it sees these.
"""

from __future__ import annotations

from collections import deque

from litestream.scheduler.types import Pace, Priority, SynthesisStep

__all__ = ["Sentence", "StreamRecord", "sentence_of"]


class Sentence:
    """One submitted sentence: its encode step, then (once encoded) the frames left to decode."""

    __slots__ = ("cached", "encode", "frames", "latent", "next_frame")

    def __init__(self, encode: SynthesisStep, cached_frames: int | None = None,
                 latent: object | None = None) -> None:
        self.encode = encode
        # Known once encoded; at once for a sentence found in the cache (no encode step).
        self.frames: int | None = cached_frames
        self.latent: object | None = latent
        self.cached = cached_frames is not None  # its windows are slices, run by no worker
        self.next_frame = 0  # first frame not yet handed out


def sentence_of(s: StreamRecord, step: SynthesisStep) -> Sentence:
    """The queued sentence `step` belongs to (seqs are unique within a stream)."""
    for sentence in s.sentences:
        if sentence.encode.seq == step.seq:
            return sentence
    raise KeyError(step.seq)


class StreamRecord:
    """The scheduler's view of one stream: its sentences, its listener's playback clock, its
    VTC counter. Heap entries name it with its `version`; any change bumps the version."""

    __slots__ = (
        "attained_s",
        "blocked",
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
        "out_s",
        "pace",
        "planned_due_s",
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

    def __init__(self, stream_id: str, priority: Priority, shift_s: float, now: float,
                 pace: Pace = Pace.LISTENER) -> None:
        self.id = stream_id
        self.priority = priority
        self.pace = pace
        self.shift_s = shift_s
        self.opened_s = now
        self.sentences: deque[Sentence] = deque()  # head: the sentence being synthesized
        # Steps handed out and not finished: at most one per sentence, and one in all for a
        # listener or a first audio (Pacing.next_sentence).
        self.in_flight: list[SynthesisStep] = []
        self.inflight_audio_s = 0.0  # predicted audio of the in-flight steps
        self.ready_audio_s = 0.0  # audio completed but not yet reported sent
        self.playback_start_s: float | None = None
        self.sent_audio_s = 0.0  # since playback_start_s
        # A download's audio handed to its session and not yet taken by the client's socket.
        self.out_s = 0.0
        self.blocked = False  # a download waiting for its client to read (in no heap)
        self.first_deadline_s: float | None = None  # before playback: first audio's deadline
        self.first_cost_s = 0.0  # its share in Pacing.pending_first_s
        self.first_rank_s: float | None = None  # rank its first audio's encode step went out at
        self.window_frames = 0  # the last window handed out; 0: the next is a first window
        # When its first window is in flight: when the window after it falls due (Pacing's
        # burst sizing of first windows counts it among the work due before another's).
        self.planned_due_s: float | None = None
        self.attained_s = 0.0  # VTC counter: compute seconds charged to this stream
        self.busy_rtf = 0.0  # its share in Pacing.busy_rtf (0 while it has no work)
        self.version = 0
        self.closed = False
        self.submitted = False
        # Last voice used (before any text, the voice it was admitted for; "" if not known):
        # admission and load price the stream at it.
        self.voice = ""
        self.stall_s = 0.0
        # Key of the next step, valid for the current version.
        self.due_s = 0.0  # when its audio must be sent
        self.deadline_s = 0.0
        self.rank_s = 0.0
        self.eligible_s = 0.0

