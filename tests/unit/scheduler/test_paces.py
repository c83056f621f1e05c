"""Who goes first, and the two paces (protocol-v1: Pace), with a fake clock.

The pick order of scheduler/_run_queue.py: due work, then first audio, then listeners under the
lookahead cap, then downloads, then run-ahead for a worker that would otherwise idle. A download
has no playback clock after its first audio: it runs on idle capacity, as fast as the workers
allow, held only by what its client has not read; a cached sentence's windows are handed out in
order and at the stream's pace like synthesized ones. docs/scheduling.md says why."""

from __future__ import annotations

import pytest

from litestream.scheduler import AdmissionReason, Pace, Priority, Scheduler, SynthesisStep
from litestream.scheduler._admission import RETRY_PRICE_EVERY_S
from litestream.scheduler.costmodel import StepKind
from loadtest.lib.texts import LONG, PARAGRAPH
from tests.fakes import (
    APF,
    CONTEXT_FRAMES,
    SAMPLE_RATE,
    VOICE,
    FakeClock,
    SimResult,
    config,
    decode_cost_s,
    finish,
    simulate,
)
from tests.fakes import price_step as price
from tests.fakes import run_step as run


def make(workers: int = 1, **knobs: float) -> Scheduler:
    s = Scheduler(config(**knobs), workers)
    s.register_voice(VOICE, context_frames=CONTEXT_FRAMES, sample_rate=SAMPLE_RATE)
    return s


def play(s: Scheduler, sid: str, buffered_s: float, chars: int, now: float,
         pace: Pace = Pace.LISTENER) -> None:
    """A stream already playing with `buffered_s` of audio ahead of its listener, which then
    gets a sentence of `chars` characters."""
    s.open_stream(sid, Priority.NORMAL, now, pace)
    s.audio_sent(sid, buffered_s, now)
    s.submit(sid, 0, "x" * chars, speed=1.0, voice=VOICE, now=now)


def due(s: Scheduler, step: SynthesisStep, now: float) -> bool:
    return step.latest_start_s <= now + s.config.due_margin_s


# ---- work-conserving ------------------------------------------------------------------------


def test_an_idle_worker_takes_run_ahead_work() -> None:
    s = make()
    play(s, "ahead", 10.0, 80, 0.0)  # past lookahead_s (4 s), within max_lookahead_s (20 s)
    steps = s.next_steps(0.0)
    assert [step.stream_id for step in steps] == ["ahead"]
    assert s.stats().lookahead_fallbacks == 1
    # Past max_lookahead_s even an idle worker leaves it: that is the listener's bound.
    far = make()
    play(far, "far", 25.0, 80, 0.0)
    assert far.next_steps(0.0) == []
    assert far.next_wakeup_s(0.0) == pytest.approx(25.0 - 20.0)  # when it is 20 s ahead


def test_due_work_preempts_run_ahead_at_the_next_step() -> None:
    clock = FakeClock()
    s = make()
    play(s, "ahead", 10.0, 200, clock.now)
    run_ahead = s.next_steps(clock.now)[0]  # the encode step: run-ahead, the worker was idle
    assert run_ahead.stream_id == "ahead" and not due(s, run_ahead, clock.now)
    # Meanwhile a listener whose buffer is nearly out gets text: due at once.
    play(s, "thin", 0.4, 40, clock.now)
    clock.advance(price(s, run_ahead))
    assert run(s, run_ahead, clock.now)
    nxt = s.next_steps(clock.now)[0]
    assert nxt.stream_id == "thin" and due(s, nxt, clock.now)


def test_a_single_download_keeps_every_worker_busy() -> None:
    # One download on an idle server, two workers: synthesized as fast as the workers go (its
    # sentences decode in parallel, each one's windows in order), with no worker idle while it
    # has work. The client reads at once.
    result = simulate(PARAGRAPH, streams=0, downloads=1, download_text=LONG)
    (download,) = result.downloads
    audio_s = sum(a for _, a, _ in download.arrivals)
    assert audio_s > 60.0
    assert download.first_audio_s() < config().first_audio_target_s  # a listener's promise
    # Two workers busy from start to end, but for the first audio and the last sentence.
    assert result.end_s < 0.6 * result.busy_s
    assert result.end_s < audio_s / 8  # far faster than real time
    # Its windows past the first audio are long: whole sentences or download_window_frames.
    decode = [st for _, _, steps in result.handed_out for st in steps
              if st.kind is StepKind.DECODE]
    assert decode[0].frames == config().first_window_frames
    assert all(st.last or st.frames >= 128 for st in decode[2:])
    assert sum(st.last for st in decode) > len(decode) / 2  # mostly whole sentences
    # Each sentence's windows were handed out in order.
    starts: dict[int, int] = {}
    for st in decode:
        assert st.start_frame == starts.get(st.seq, 0)
        starts[st.seq] = st.start_frame + st.frames


def test_a_download_never_delays_a_listeners_due_step() -> None:
    # Eight listeners and a long download start together on two workers: at every decision
    # where a listener had a step due, no download step was handed out, the listeners never
    # stall, and their first audio is no later than without the download (it waited only for
    # the download's own first audio, which keeps a listener's promise).
    alone = simulate(PARAGRAPH, streams=8, admit=False, first_chunk_chars=80)
    mixed = simulate(PARAGRAPH, streams=8, admit=False, first_chunk_chars=80, downloads=1,
                     download_text=LONG)
    assert mixed.stalls == 0
    download_first = 0.0
    for start, end, steps in mixed.handed_out:
        for step in steps:
            if step.stream_id.startswith("d"):
                if step.start_frame == 0 and step.seq == 0 and step.kind is StepKind.DECODE:
                    download_first = end
                continue
            if due(mixed.sched, step, start):  # a listener's due step went at once
                assert not any(st.stream_id.startswith("d") for s0, e0, other in
                               mixed.handed_out if s0 == start and other is not steps
                               for st in other)
    # The listeners' first audio waits at most for the download's own first audio.
    assert max(mixed.first_audio_s) <= max(alone.first_audio_s) + download_first
    (download,) = mixed.downloads
    audio_s = sum(a for _, a, _ in download.arrivals)
    assert download.arrivals[-1][0] < audio_s / 3  # still far faster than real time


def test_a_download_that_waited_resumes_with_long_windows() -> None:
    # Two downloads on one worker, the client reading at once: the younger gets its first
    # audio (a listener's promise), then waits while the older one runs (oldest first). Any
    # player of it ran dry long ago, so when it resumes its windows grow as a healthy
    # buffer's would, not from the smallest up (context margins on tiny windows: capacity
    # lost for every stream).
    clock = FakeClock()
    s = make(workers=1)
    for sid in ("old", "young"):
        s.open_stream(sid, Priority.NORMAL, clock.now, Pace.DOWNLOAD)
        for seq in range(4):
            s.submit(sid, seq, "x" * 150, speed=1.0, voice=VOICE, now=clock.now)
        clock.advance(0.001)
    windows: dict[str, list[SynthesisStep]] = {"old": [], "young": []}
    while steps := s.next_steps(clock.now):
        for step in steps:
            clock.advance(price(s, step))
            assert run(s, step, clock.now)
            if step.kind is StepKind.DECODE:
                windows[step.stream_id].append(step)
                s.audio_delivered(step.stream_id, step.frames * APF, clock.now)
    young = windows["young"]
    first, resumed = young[0], young[1]
    assert first.frames == config().first_window_frames
    # It resumed after the older download's whole text: far past the audio it had sent.
    old_done = max(st.dispatched_s for st in windows["old"])
    assert resumed.dispatched_s >= old_done
    # Nobody shares the workers with it now: straight to a download's long window, not grown
    # to step by step (each step a window's context margins more).
    assert resumed.frames == config().download_window_frames
    # No window of it (but a sentence's tail) was shorter than its first.
    assert all(st.last or st.frames >= first.frames for st in young)


def test_a_download_waits_for_its_client_to_read() -> None:
    clock = FakeClock()
    s = make(workers=2, download_buffer_s=3.0)
    s.open_stream("d", Priority.NORMAL, clock.now, Pace.DOWNLOAD)
    for seq in range(6):
        s.submit("d", seq, "x" * 120, speed=1.0, voice=VOICE, now=clock.now)
    made = 0.0
    while steps := s.next_steps(clock.now):
        for step in steps:
            clock.advance(price(s, step))
            assert run(s, step, clock.now)  # sent to the session, never read by the client
            made += step.frames * APF
    # Held by what its client has not read: a bound on its memory, not a playback clock.
    assert 3.0 <= made < 3.0 + 256 * APF
    assert s.next_wakeup_s(clock.now + 100.0) is None
    assert not s.audio_delivered("d", 0.1, clock.now)  # still over the bound
    assert s.audio_delivered("d", made, clock.now)  # the client read: it may run again
    assert s.next_steps(clock.now)


@pytest.mark.parametrize("workers", [2, 8])
def test_a_download_whose_later_sentences_finish_first_still_ends(workers: int) -> None:
    # A download decodes several sentences at once, but its session sends them in order: audio
    # of a later sentence made before an earlier one is done waits, made and not taken. That
    # audio counted toward download_buffer_s and held the stream, so the earlier sentence it
    # waited behind was never finished: the response hung with 10 s of audio made (seen with
    # 40 POSTs at once on the stand-in's 16 workers). Steps here finish latest sentence first.
    clock = FakeClock()
    s = make(workers=workers, download_buffer_s=3.0)
    s.open_stream("d", Priority.NORMAL, clock.now, Pace.DOWNLOAD)
    sentences = 6
    for seq in range(sentences):
        s.submit("d", seq, "x" * 120, speed=1.0, voice=VOICE, now=clock.now)  # ~5.7 s each
    made: dict[int, list[float]] = {seq: [] for seq in range(sentences)}
    whole: set[int] = set()
    head = 0  # the session's next sentence to send; audio of later ones waits
    in_flight: list[SynthesisStep] = []
    while True:
        while len(in_flight) < workers and (steps := s.next_steps(clock.now)):
            in_flight += steps
        if not in_flight:
            break
        step = max(in_flight, key=lambda x: x.seq)  # a later sentence's step finishes first
        in_flight.remove(step)
        clock.advance(price(s, step))
        audio = finish(s, step, price(s, step), clock.now)
        if audio is not None:
            made[step.seq].append(audio)
            if step.last:
                whole.add(step.seq)
        while head < sentences:  # the session: in order, each piece as soon as it may go
            for piece in made[head]:
                s.audio_sent("d", piece, clock.now)
                s.audio_delivered("d", piece, clock.now)  # the client reads at once
            made[head] = []
            if head not in whole:
                break
            head += 1
    assert head == sentences, f"stuck before sentence {head}: {sorted(whole)} done"


def test_a_download_costs_admission_only_its_first_audio() -> None:
    s = make(workers=1)
    opened = 0
    while s.admit(0.0, VOICE).accepted:  # listeners up to the target utilization
        play(s, f"l{opened}", 2.0, 80, 0.0)
        opened += 1
    assert s.admit(0.0, VOICE).reason is AdmissionReason.CAPACITY
    load = s.load(0.0)
    # A download takes only idle capacity: admitted, and the steady demand does not move.
    assert s.admit(0.0, VOICE, Pace.DOWNLOAD).accepted
    play(s, "d", 0.0, 80, 0.0, Pace.DOWNLOAD)
    assert s.load(0.0) == pytest.approx(load)
    # But its first audio is urgent work like a listener's: a burst of downloads is refused
    # once their first audio could not come in time.
    burst = make(workers=1)
    accepted = 0
    while burst.admit(0.0, VOICE, Pace.DOWNLOAD).accepted:
        burst.open_stream(f"d{accepted}", Priority.NORMAL, 0.0, Pace.DOWNLOAD)
        burst.submit(f"d{accepted}", 0, "x" * 80, speed=1.0, voice=VOICE, now=0.0)
        accepted += 1
        assert accepted < 100
    refused = burst.admit(0.0, VOICE, Pace.DOWNLOAD)
    assert refused.reason is AdmissionReason.BACKLOG
    # Retry after the first audio owed, not after the downloads' whole texts: those run on
    # idle capacity and never delay a newcomer's first audio.
    for i in range(accepted):
        burst.audio_sent(f"d{i}", 0.5, 0.0)  # every first audio out; minutes of text left
        for seq in range(1, 40):
            burst.submit(f"d{i}", seq, "x" * 200, speed=1.0, voice=VOICE, now=0.0)
    assert burst.admit(0.0, VOICE, Pace.DOWNLOAD).accepted
    play(burst, "l", 0.0, 80, 0.0)
    assert burst._admission.backlog_s() / burst.workers < 2.0  # Retry-After under 2 s


def test_retry_after_counts_only_the_first_audio_downloads_owe() -> None:
    # A campaign of downloads: those admitted wait for their first audio with their whole
    # texts queued. A refused one is told to come back when that first audio is out (the
    # texts behind it run on idle capacity and yield to a newcomer's first audio), not when
    # every text is done.
    s = make(workers=2)
    accepted = 0
    while s.admit(0.0, VOICE, Pace.DOWNLOAD).accepted:
        s.open_stream(f"d{accepted}", Priority.NORMAL, 0.0, Pace.DOWNLOAD)
        for seq in range(30):
            s.submit(f"d{accepted}", seq, "x" * 150, speed=1.0, voice=VOICE, now=0.0)
        accepted += 1
        assert accepted < 100
    refused = s.admit(0.0, VOICE, Pace.DOWNLOAD)
    assert refused.reason is AdmissionReason.BACKLOG
    model = s.model
    # Each first audio: its encode step, a first window and the window after it (<= 32 each).
    first = (model.price(VOICE, StepKind.ENCODE, 150)
             + 2 * model.price(VOICE, StepKind.DECODE, 32))
    assert 1.0 <= refused.retry_after_s <= max(1.0, accepted * first / 2)
    # The whole texts would have said ten times longer (their encode steps alone).
    texts = accepted * 30 * model.price(VOICE, StepKind.ENCODE, 150)
    assert texts / 2 > 10 * refused.retry_after_s
    # A listener's queued text still counts whole: it loads the workers until it is spoken.
    play(s, "l", 0.0, 80, 0.0)
    for seq in range(1, 30):
        s.submit("l", seq, "x" * 150, speed=1.0, voice=VOICE, now=0.0)
    # (Half a second later: a refusal reuses the last price for RETRY_PRICE_EVERY_S.)
    later = s.admit(RETRY_PRICE_EVERY_S, VOICE, Pace.DOWNLOAD)
    assert later.retry_after_s > refused.retry_after_s + 1.0


# ---- the burst ------------------------------------------------------------------------------


def test_no_newcomer_waits_behind_a_step_not_due() -> None:
    # Ten streams at once on two workers: while any waits for its first audio, every step
    # handed out is either a first audio's (an encode step or a first window) or due.
    result = simulate(PARAGRAPH, streams=10, admit=False, slow=0.5, first_chunk_chars=80)
    sched = result.sched
    first_done: dict[str, float] = {}
    for sid, listener in zip((f"s{i}" for i in range(10)), result.listeners, strict=True):
        first_done[sid] = listener.arrivals[0][0]
    for now, _, steps in result.handed_out:
        running = {st.stream_id for start, end, other in result.handed_out
                   if start < now < end for st in other}
        # Newcomers whose next step could have gone instead (none of theirs was running).
        waiting = [sid for sid, t in first_done.items() if t > now and sid not in running]
        for step in steps:
            first_audio = first_done[step.stream_id] > now
            if waiting and not first_audio:
                assert due(sched, step, now), (
                    f"at {now:.3f} s a step of {step.stream_id} not due until "
                    f"{step.latest_start_s:.3f} s ran while {len(waiting)} waited")
    assert result.stalls == 0


def test_windows_after_a_first_window_stay_small_while_others_wait() -> None:
    result = simulate(PARAGRAPH, streams=10, admit=False, slow=0.5, first_chunk_chars=80)
    firsts = sorted(listener.arrivals[0][0] for listener in result.listeners)
    last_window: dict[str, int] = {}
    grown = 0
    for now, _, steps in result.handed_out:
        for step in steps:
            if step.kind is not StepKind.DECODE:
                continue
            before = last_window.get(step.stream_id)
            last_window[step.stream_id] = step.frames
            if before is None:
                continue  # its first window
            if now < firsts[-1]:  # someone still waits for a first audio: no growth
                assert step.frames <= before or step.last
            else:
                grown += step.frames > before
    assert grown > 0  # they grow once everyone plays


def test_a_newcomer_served_as_it_comes_does_not_hold_windows_small() -> None:
    """The windows after a first window stay small while newcomers queue for their first
    audio (a burst). Streams arriving one at a time, as a thousand listeners over ten seconds
    do, owe less first audio than the workers get through while one window runs: beside one,
    a playing stream's window grows as if nobody waited; beside a burst it stays small."""
    first = config().first_window_frames

    def next_window(newcomers: int) -> int:
        clock = FakeClock()
        s = make(workers=16)
        s.open_stream("p", Priority.NORMAL, clock.now)
        s.submit("p", 0, "x" * 600, speed=1.0, voice=VOICE, now=clock.now)
        for _ in range(2):  # alone: its encode step and its first window
            (step,) = s.next_steps(clock.now)
            clock.advance(price(s, step))
            assert run(s, step, clock.now)
        assert step.kind is StepKind.DECODE and step.frames == first
        for i in range(newcomers):
            s.open_stream(f"n{i}", Priority.NORMAL, clock.now)
            s.submit(f"n{i}", 0, "x" * 80, speed=1.0, voice=VOICE, now=clock.now)
        steps = []  # one step for each idle worker: the newcomers' encode steps, and p's
        while len(steps) < 16 and (batch := s.next_steps(clock.now)):
            steps += batch
        assert sum(st.stream_id != "p" for st in steps) == newcomers  # all of them start
        (window,) = [st for st in steps if st.stream_id == "p"]
        return window.frames

    alone = next_window(0)
    assert alone > first
    assert next_window(1) == alone
    assert next_window(12) == first


def alone_floor_s(result: SimResult, slow: float) -> float:
    """A burst's compute floor (issue 18): each stream's encode step as it ran and a first
    window as long as alone (first_window_frames, context on its right only), over the two
    workers. A rule that lengthens first windows cannot raise this floor."""
    floor = 0.0
    seen: set[str] = set()
    for started, ended, steps in sorted(result.handed_out, key=lambda h: h[0]):
        for step in steps:
            if step.stream_id in seen:
                continue
            if step.kind is StepKind.ENCODE:
                floor += ended - started
            else:
                alone = SynthesisStep(step.stream_id, step.seq, StepKind.DECODE, step.text,
                                      step.voice, step.speed, frames=32)
                floor += slow * decode_cost_s(alone)
                seen.add(step.stream_id)
    return floor / 2


def first_windows(result: SimResult) -> list[int]:
    """Each stream's first window, in the order they went out."""
    seen: set[str] = set()
    frames: list[int] = []
    for _, _, steps in sorted(result.handed_out, key=lambda h: h[0]):
        for step in steps:
            if step.kind is StepKind.DECODE and step.stream_id not in seen:
                seen.add(step.stream_id)
                frames.append(step.frames)
    return frames


@pytest.mark.parametrize("slow", [0.5, 0.7])
@pytest.mark.parametrize("seed", range(1, 5))
def test_burst_first_audio_near_the_compute_floor(slow: float, seed: int) -> None:
    # Ten at once, the costs calibrated as the server starts, each step off by up to 25% either
    # way: the last newcomer's first audio within 1.4x of the floor counted with first windows
    # as short as alone, and nobody stalls. (slow 0.7 is the development VM's engine; with
    # 32-frame first windows in a burst this measured 1.49-1.73x at 0.7, 1.25-1.39x at 0.5:
    # the first streams' second windows ran between the last newcomers.)
    result = simulate(PARAGRAPH, streams=10, admit=False, slow=slow, first_chunk_chars=80,
                      calibrated=True, noise=0.25, seed=seed)
    assert result.p95_first_audio_s() <= 1.4 * alone_floor_s(result, slow)
    assert result.stalls == 0


def test_a_bursts_first_windows_are_longer_for_the_streams_served_first() -> None:
    # docs/scheduling.md, "First audio in a burst": the streams served first take first windows
    # long enough that their next windows fall due after the burst, one after another; the
    # last newcomers, whose next windows fall due after the burst anyway, keep short ones.
    result = simulate(PARAGRAPH, streams=10, admit=False, slow=0.7, first_chunk_chars=80,
                      calibrated=True, noise=0.0)
    frames = first_windows(result)
    assert len(frames) == 10
    first = result.sched.config.first_window_frames
    assert min(frames[:2]) > first
    assert frames[-2:] == [first, first]
    # No stream's second window went out before the last newcomer's first window: none made a
    # newcomer wait (one may run beside the last first window, on a worker it leaves idle).
    decodes = [(begun, step) for begun, _, steps in sorted(result.handed_out, key=lambda h: h[0])
               for step in steps if step.kind is StepKind.DECODE]
    firsts = {step.stream_id: begun for begun, step in reversed(decodes)}
    last_first = max(firsts.values())
    for begun, step in decodes:
        if begun > firsts[step.stream_id]:
            assert begun >= last_first, step
    assert result.stalls == 0


@pytest.mark.parametrize("streams", [10, 14, 20])
def test_a_burst_with_noisy_compute_plays_without_a_stall(streams: int) -> None:
    # Each step's compute off by up to 25% either way (a shared VM), costs calibrated as the
    # server starts, admission on: the burst's first audio and the second windows that follow
    # it must leave every admitted listener playing (docs/scheduling.md, "The burst": a rule
    # that lengthened the burst's first windows failed this, its second windows coming due all
    # at once when the burst ended).
    for seed in range(1, 5):
        result = simulate(PARAGRAPH, streams=streams, slow=0.7, first_chunk_chars=80,
                          calibrated=True, noise=0.25, seed=seed)
        assert result.admitted >= 10
        assert result.stalls == 0, seed


# ---- cached sentences ---------------------------------------------------------------------


def test_a_cached_sentence_goes_in_order_and_at_the_listeners_pace() -> None:
    clock = FakeClock()
    s = make(workers=1, lookahead_s=1.0, max_lookahead_s=2.0)
    s.open_stream("a", Priority.NORMAL, clock.now)
    s.submit("a", 0, "x" * 40, speed=1.0, voice=VOICE, now=clock.now)
    cached_frames = round(30.0 / APF)  # 30 s of cached audio
    s.submit("a", 1, "y" * 400, speed=1.0, voice=VOICE, now=clock.now,
             cached_frames=cached_frames, latent="cached audio")
    order: list[tuple[int, bool]] = []
    sent = 0.0
    while s.queued_sentences("a"):
        steps = s.next_steps(clock.now)
        if not steps:
            wake = s.next_wakeup_s(clock.now)
            assert wake is not None
            clock.advance(max(wake - clock.now, 0.0))
            continue
        (step,) = steps
        order.append((step.seq, step.cached))
        clock.advance(price(s, step) if not step.cached else 0.0)
        assert run(s, step, clock.now)
        sent += step.frames * APF
        # Never more than max_lookahead_s (and one window) ahead of the listener.
        assert sent - clock.now <= 2.0 + 256 * APF + 0.5
    assert order == sorted(order) and order[-1] == (1, True)
    assert [seq for seq, cached in order if cached] == [1] * sum(c for _, c in order)
    assert clock.now > 25.0  # it took about as long as it plays: paced, not flooded
    assert s.stats().cached_windows == sum(c for _, c in order)


def test_a_cached_window_needs_no_worker() -> None:
    s = make(workers=1)
    s.open_stream("busy", Priority.NORMAL, 0.0)
    s.submit("busy", 0, "x" * 80, speed=1.0, voice=VOICE, now=0.0)
    (running,) = s.next_steps(0.0)  # the one worker is busy now
    s.open_stream("hit", Priority.NORMAL, 0.0)
    s.submit("hit", 0, "hello", speed=1.0, voice=VOICE, now=0.0, cached_frames=40,
             latent="audio")
    assert s.next_steps(0.0, cached_only=True)[0].stream_id == "hit"
    assert s.next_steps(0.0, cached_only=True) == []  # "busy" is next: it needs a worker
    assert running.stream_id == "busy"
