"""Batches never make their most urgent member late (RunQueue.batch_mates in
scheduler/_run_queue.py).

Random streams (buffers, sentence lengths, priorities, arrivals) on one worker that runs each
batch as the worker pool does: decode windows as one decode_batch, whose predicted time is the
scheduler's (its longest window plus `batch_marginal_cost` of the others), encode steps one
after another (run_steps in synthesis/workers.py), every result posted when the whole batch is
done (the pool hands each encode result over as its step is done: this is the worst case).
Whenever the member with the earliest deadline would have finished in time alone, the batch
finishes in time too. A member already late alone may be made later only up to
`batch_late_growth` of the seed's time, and never at the cost of a member that was on time."""

from __future__ import annotations

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from litestream.scheduler import Priority, Scheduler, SynthesisStep
from litestream.scheduler.costmodel import StepKind
from tests.fakes import APF, CONTEXT_FRAMES, SAMPLE_RATE, VOICE, FakeClock, config
from tests.fakes import run_step as run

EPS = 1e-9

streams = st.lists(
    st.tuples(
        st.lists(st.integers(5, 300), min_size=1, max_size=3),  # sentence lengths, chars
        st.floats(0.0, 3.0),  # audio already sent (buffered) when its text arrives, s
        st.sampled_from([Priority.HIGH, Priority.NORMAL, Priority.LOW]),
        st.floats(0.0, 0.5),  # arrival, s
    ),
    min_size=2, max_size=24)


def batch_time_s(steps: list[SynthesisStep], marginal: float) -> float:
    """What the worker takes for this run, by the scheduler's own prices."""
    computes = [step.predicted_compute_s for step in steps]
    if steps[0].kind is StepKind.ENCODE:
        return sum(computes)  # one front pass after another
    longest = max(computes)
    return longest + marginal * (sum(computes) - longest)


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(streams=streams, max_steps=st.sampled_from([2, 4, 8, 16]),
       marginal=st.sampled_from([0.1, 0.25, 1.0]))
def test_a_batch_never_makes_its_most_urgent_member_late(
        streams: list[tuple[list[int], float, Priority, float]], max_steps: int,
        marginal: float) -> None:
    s = Scheduler(config(first_audio_target_s=0.3, first_audio_slack_s=0.0,
                         batch_marginal_cost=marginal), 1)
    s.register_voice(VOICE, context_frames=CONTEXT_FRAMES, sample_rate=SAMPLE_RATE)
    clock = FakeClock()
    arrivals = sorted((at, i) for i, (_, _, _, at) in enumerate(streams))
    batches = 0
    while True:
        while arrivals and arrivals[0][0] <= clock.now:
            _, i = arrivals.pop(0)
            sentences, buffered, priority, _ = streams[i]
            sid = f"s{i}"
            s.open_stream(sid, priority, clock.now)
            if buffered:
                s.audio_sent(sid, buffered, clock.now)
            for seq, chars in enumerate(sentences):
                s.submit(sid, seq, "x" * chars, speed=1.0, voice=VOICE, now=clock.now)
        steps = s.next_steps(clock.now, max_steps)
        if not steps:
            wake = s.next_wakeup_s(clock.now)
            upcoming = [t for t in (wake, arrivals[0][0] if arrivals else None) if t is not None]
            if not upcoming:
                break
            clock.advance(max(min(upcoming) - clock.now, 0.0))
            continue
        assert len({(b.kind, b.voice, b.speed, b.frames) for b in steps}) == 1
        urgent = min(steps, key=lambda b: b.deadline_s)
        took = batch_time_s(steps, marginal)
        if clock.now + urgent.predicted_compute_s <= urgent.deadline_s + EPS:
            assert clock.now + took <= urgent.deadline_s + EPS, (
                f"a batch of {len(steps)} {steps[0].kind.value} steps takes {took:.3f} s: its "
                f"most urgent member, due in {urgent.deadline_s - clock.now:.3f} s and on time "
                f"alone, would be late")
        else:
            seed = steps[0]
            assert took <= max(seed.deadline_s - clock.now,
                               s.config.batch_late_growth * seed.predicted_compute_s) + EPS
        batches += len(steps) > 1
        clock.advance(took)
        for step in steps:
            if run(s, step, clock.now, send=False) and step.kind is StepKind.DECODE:
                s.audio_sent(step.stream_id, step.frames * APF, clock.now)
    assert s.stats().queued_sentences == 0
