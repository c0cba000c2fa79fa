"""The shared expiry of parked requests (``quorumq/broker/_expiry.py``), on Trio's MockClock: a
waiter is woken at its deadline (never before, at most one bucket after), a waiter set by
progress is woken at once and leaves nothing behind, and the task does not wake for buckets
whose waiters all left early."""

from __future__ import annotations

import math

import pytest
import trio
import trio.lowlevel
import trio.testing

from quorumq.broker._expiry import GRANULARITY_S, Expiry, expiry, wait_until


async def test_waiter_wakes_at_its_deadline_not_before(
    autojump_clock: trio.testing.MockClock,
) -> None:
    woken: dict[float, float] = {}

    async def park(after: float) -> None:
        deadline = trio.current_time() + after
        await wait_until(trio.Event(), deadline)
        woken[after] = trio.current_time() - deadline

    async with trio.open_nursery() as nursery:
        for after in (0.5, 0.0123, 30.0, 0.5, 0.0):
            nursery.start_soon(park, after)
    assert set(woken) == {0.5, 0.0123, 30.0, 0.0}
    for late in woken.values():
        assert 0 <= late <= GRANULARITY_S + 1e-9


async def test_progress_wakes_at_once_and_leaves_no_bucket(
    autojump_clock: trio.testing.MockClock,
) -> None:
    event = trio.Event()
    start = trio.current_time()

    async def progress() -> None:
        await trio.sleep(0.1)
        event.set()

    async with trio.open_nursery() as nursery:
        nursery.start_soon(progress)
        await wait_until(event, start + 500)
    assert trio.current_time() - start == pytest.approx(0.1)
    assert expiry()._buckets == {}


async def test_no_wake_for_buckets_emptied_early(autojump_clock: trio.testing.MockClock) -> None:
    """Many short parks, each answered early (as follower fetches under load): the expiry
    task wakes about once per max wait, not once per bucket."""
    timer = expiry()
    wakes = 0
    original = timer.expire

    def counting(now: float) -> None:
        nonlocal wakes
        wakes += 1
        original(now)

    timer.expire = counting  # type: ignore[method-assign]
    await trio.lowlevel.checkpoint()  # let the task start (its first pass counts as one)
    for _ in range(1000):
        event = trio.Event()

        async def answer(event: trio.Event = event) -> None:
            await trio.sleep(0.002)
            event.set()

        async with trio.open_nursery() as nursery:
            nursery.start_soon(answer)
            await wait_until(event, trio.current_time() + 0.5)
    # 1000 parks over 2 s with a 0.5 s max wait: a wake per 0.5 s, not 400 (one per bucket).
    assert wakes <= 1 + 2.0 / 0.5 + 1


def test_bookkeeping_without_a_task() -> None:
    timer = Expiry()
    a, b, c = trio.Event(), trio.Event(), trio.Event()
    ta = timer.add(1.0, a)
    tb = timer.add(1.0, b)
    tc = timer.add(2.0, c)
    assert ta == tb < tc
    assert ta * GRANULARITY_S > 1.0  # the bucket ends after the deadline
    timer.discard(tb, b)
    timer.expire(1.0)  # exactly at the deadline: not yet
    assert not a.is_set()
    timer.expire(ta * GRANULARITY_S)
    assert a.is_set() and not b.is_set() and not c.is_set()
    timer.discard(ta, a)  # a late discard of an expired waiter is harmless
    timer.discard(tc, c)
    timer.expire(math.inf)
    assert not c.is_set()
