from __future__ import annotations

import asyncio

import pytest

from review_reminders.pacer import DEFAULT_THROTTLE_PAUSE_S, PACE_DECREASE, PACE_WINDOW_S, Pacer
from tests.conftest import FakeClock


async def test_unthrottled_never_waits(clock: FakeClock) -> None:
    pacer = Pacer(clock)
    for _ in range(100):
        await pacer.acquire()
    assert clock.sleeps == []
    assert pacer.pace_per_s is None


async def test_throttle_pauses_every_caller(clock: FakeClock) -> None:
    pacer = Pacer(clock)
    start = clock.now
    pacer.record_throttled(3.0)
    await asyncio.gather(*(pacer.acquire() for _ in range(5)))
    assert clock.now >= start + 3.0


async def test_pace_follows_measured_throughput(clock: FakeClock) -> None:
    pacer = Pacer(clock)
    for _ in range(50):
        await pacer.acquire()
    clock.now += PACE_WINDOW_S / 2
    pacer.record_throttled(1.0)
    assert pacer.pace_per_s == pytest.approx(50 / (PACE_WINDOW_S / 2) * PACE_DECREASE)


async def test_few_requests_only_pause(clock: FakeClock) -> None:
    pacer = Pacer(clock)
    await pacer.acquire()
    pacer.record_throttled(0.7)
    assert pacer.pace_per_s is None


async def test_burst_of_429s_cuts_once(clock: FakeClock) -> None:
    pacer = Pacer(clock)
    for _ in range(50):
        await pacer.acquire()
    pacer.record_throttled(1.0)
    first = pacer.pace_per_s
    pacer.record_throttled(1.0)
    pacer.record_throttled(1.0)
    assert pacer.pace_per_s == first
    assert pacer.throttled == 3


async def test_paced_requests_spaced(clock: FakeClock) -> None:
    pacer = Pacer(clock)
    for _ in range(100):
        await pacer.acquire()
    pacer.record_throttled(1.0)
    pace = pacer.pace_per_s
    assert pace is not None
    resume = clock.now + 1.0
    for _ in range(10):
        await pacer.acquire()
    assert clock.now == pytest.approx(resume + 9 / pace)


async def test_success_raises_pace(clock: FakeClock) -> None:
    pacer = Pacer(clock)
    for _ in range(20):
        await pacer.acquire()
    pacer.record_throttled(None)
    before = pacer.pace_per_s
    assert before is not None
    pacer.record_success(100)
    assert pacer.pace_per_s is not None
    assert pacer.pace_per_s > before


async def test_missing_retry_after_uses_default(clock: FakeClock) -> None:
    pacer = Pacer(clock)
    start = clock.now
    pacer.record_throttled(None)
    await pacer.acquire()
    assert clock.now == pytest.approx(start + DEFAULT_THROTTLE_PAUSE_S)
