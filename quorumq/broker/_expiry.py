"""Deadlines for parked requests without a cancel scope each: the expiry side of Kafka's
purgatory.

A long-poll Fetch and an acks=all Produce park until their partition moves or their deadline
passes. Parking each under its own ``trio.move_on_at`` costs a cancel scope per wait, about 58
Python calls to enter and leave; with three parked waits per replicated produce (the two
followers' fetches and the produce itself) that was about 8% of the calls of the whole
replicated request (cProfile call counts, docs/benchmarks.md). Here a waiter registers a
:class:`Waker` instead: a parked request's slot (``_server.py``), or a private ``trio.Event``
for a coroutine's wait. Its partition calls ``set()`` on progress, and one system task per Trio
run (:class:`Expiry`) calls it once the deadline has passed.

Deadlines are kept in buckets of :data:`GRANULARITY_S`. The task sleeps until the earliest
bucket that held a waiter when it last looked; buckets whose waiters all finished early (the
common case under load: a parked follower fetch is answered by the next append) are skipped
when it wakes, so it wakes about once per ``max_wait_ms`` under load and only for due waiters
when idle. A waiter is woken up to one bucket after its deadline, never before it (callers
re-check the clock, so an early wake would only cost a loop).
"""

from __future__ import annotations

import heapq
import math
from typing import Protocol

import trio

GRANULARITY_S = 0.005
"""Bucket width: the latest a parked request is answered after its deadline."""


class Waker(Protocol):
    """What the expiry and a partition's watcher sets wake: a ``trio.Event``, or a parked
    request's slot (``_server.py``), which re-checks its request inside ``set()``."""

    def set(self) -> None: ...


class Expiry:
    """Sets each registered event once its deadline (trio clock) has passed.

    Pure bookkeeping plus one sleeping task: :meth:`add` and :meth:`discard` never block or
    checkpoint; :meth:`run` is the task (started by :func:`expiry` as a system task)."""

    def __init__(self) -> None:
        self._buckets: dict[int, set[Waker]] = {}
        self._ticks: list[int] = []  # heap of bucket ticks; may hold ticks already dropped
        self._armed = math.inf  # the tick the task sleeps until
        self._scope: trio.CancelScope | None = None

    def add(self, deadline: float, event: Waker) -> int:
        """Sets ``event`` at ``deadline`` unless discarded first; returns the token for
        :meth:`discard`. The bucket is the first whose end is after ``deadline``."""
        tick = int(deadline / GRANULARITY_S) + 1
        bucket = self._buckets.get(tick)
        if bucket is None:
            bucket = self._buckets[tick] = set()
            heapq.heappush(self._ticks, tick)
            if tick < self._armed:
                self._arm(tick)
        bucket.add(event)
        return tick

    def discard(self, tick: int, event: Waker) -> None:
        """Forgets ``event`` (its wait ended). The task is not re-armed here: if it was armed
        for this bucket it wakes once for nothing and then sleeps until the next bucket that
        still holds a waiter. Under load that is about one wake per ``max_wait_ms``, where
        re-arming on every emptied bucket moved a deadline on almost every request."""
        bucket = self._buckets.get(tick)
        if bucket is None:
            return
        bucket.discard(event)
        if not bucket:
            del self._buckets[tick]

    def _next_tick(self) -> float:
        ticks = self._ticks
        while ticks and ticks[0] not in self._buckets:
            heapq.heappop(ticks)
        return ticks[0] if ticks else math.inf

    def _arm(self, tick: float) -> None:
        self._armed = tick
        if self._scope is not None:
            self._scope.deadline = tick * GRANULARITY_S

    def expire(self, now: float) -> None:
        """Sets the events of every bucket that has ended by ``now``."""
        ticks = self._ticks
        while ticks and ticks[0] * GRANULARITY_S <= now:
            for event in self._buckets.pop(heapq.heappop(ticks), ()):
                event.set()

    async def run(self) -> None:
        while True:
            self.expire(trio.current_time())
            self._armed = self._next_tick()
            with trio.CancelScope(deadline=self._armed * GRANULARITY_S) as scope:
                self._scope = scope
                await trio.sleep_forever()
            self._scope = None


_EXPIRY: trio.lowlevel.RunVar[Expiry] = trio.lowlevel.RunVar("quorumq_expiry")


def expiry() -> Expiry:
    """This Trio run's :class:`Expiry`, its task started on first use (a system task: it lives
    as long as the run and needs no nursery from the caller)."""
    try:
        return _EXPIRY.get()
    except LookupError:
        found = Expiry()
        _EXPIRY.set(found)
        trio.lowlevel.spawn_system_task(found.run, name="quorumq.expiry")
        return found


async def wait_until(event: trio.Event, deadline: float) -> None:
    """Returns once ``event`` is set or ``deadline`` (trio clock) has passed, whichever is
    first, always through a checkpoint; ``event`` must be one only this waiter waits on (the
    expiry sets it)."""
    if deadline == math.inf:
        await event.wait()
        return
    # A deadline already past needs no check here: its bucket is due, so the expiry task,
    # armed for it by add(), sets the event on its next pass.
    timer = expiry()
    tick = timer.add(deadline, event)
    try:
        await event.wait()
    finally:
        timer.discard(tick, event)
