"""Three consumers share six partitions; one stops; the other two take over its partitions.

    uv run python examples/consumer_group.py --bootstrap 127.0.0.1:9092

A consumer group spreads a topic's partitions over its members: each partition is read by
exactly one member at a time. This script runs three members of one group (three Trio tasks,
each with its own quorumq :class:`~quorumq.client.Consumer`, as three processes would):

1. it creates ``example-shared`` with six partitions (if needed) and produces a first round;
2. the three members join; the coordinator's rebalance gives each two partitions (printed);
3. ``consumer-3`` stops (it leaves the group, as a clean shutdown does); the group rebalances
   and the two others now cover all six partitions between them (printed);
4. a second round is produced, and the two survivors read every record of it.

Offsets are committed on every rebalance, so nothing handled before the rebalance is read
twice. Everything is bounded by ``--timeout``; the exit code is 0 when every step happened.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Callable

import attrs
import trio

from quorumq.client import Admin, Consumer, Producer
from quorumq.errors import InvalidReplicationFactor, QuorumqError

PARTITIONS = 6


@attrs.define
class Member:
    """What one member task shares with the script: its partitions and what it has read."""

    name: str
    partitions: frozenset[int] = frozenset()
    values: list[str] = attrs.Factory(list)
    stop: trio.Event = attrs.Factory(trio.Event)


async def ensure_topic(bootstrap: str, topic: str, partitions: int) -> None:
    """Creates the topic (the client's ``Admin``; an existing topic is fine), replicated on
    every live broker, up to 3."""
    async with Admin(bootstrap, client_id="example-admin") as admin:
        for attempt in range(10):
            admin.metadata.invalidate()
            await admin.metadata.refresh()
            replication = min(3, len(admin.metadata.brokers))
            try:
                await admin.create_topic(topic, partitions, replication, exist_ok=True)
                return
            except InvalidReplicationFactor:
                if attempt == 9:
                    raise
                await trio.sleep(0.5)  # the controller counts fewer live brokers: look again


async def produce_round(bootstrap: str, topic: str, round_name: str, count: int) -> None:
    async with Producer(bootstrap, acks="all") as producer:
        for i in range(count):
            # One record per partition and round, so every member has something to read.
            await producer.send(topic, f"{round_name}-{i}".encode(), partition=i % PARTITIONS)
    print(f"produced {count} records ({round_name})")


async def run_member(args: argparse.Namespace, member: Member, progress: Progress) -> None:
    """One group member: poll, note the assignment, remember values; leave when told to."""
    async with Consumer(
        args.bootstrap,
        group_id=args.group,
        client_id=member.name,
        auto_offset_reset="earliest",
        heartbeat_interval_ms=500,  # a rebalance is noticed within one heartbeat
        session_timeout_ms=6000,
        auto_commit_interval_ms=1000,
    ) as consumer:
        consumer.subscribe([args.topic])
        while not member.stop.is_set():
            batches = await consumer.getmany(timeout_ms=200)
            partitions = frozenset(tp[1] for tp in consumer.assignment())
            if partitions != member.partitions:
                member.partitions = partitions
                print(f"{member.name}: assigned partitions {sorted(partitions)}")
                progress.notify()
            for records in batches.values():
                member.values.extend((r.value or b"").decode() for r in records)
            if batches:
                progress.notify()
        member.partitions = frozenset()
    # Leaving the `async with` commits the positions and sends LeaveGroup.
    print(f"{member.name}: left the group")


class Progress:
    """Members call :meth:`notify` when their partitions or records change; the script waits
    for the state it wants with :meth:`wait_for` (the enclosing ``--timeout`` bounds it)."""

    def __init__(self) -> None:
        self._changed = trio.Event()

    def notify(self) -> None:
        self._changed.set()
        self._changed = trio.Event()

    async def wait_for(self, done: Callable[[], bool], what: Callable[[], str]) -> None:
        while not done():
            await self._changed.wait()
        print(what())


def covers_all(members: list[Member]) -> bool:
    """Each partition is held by exactly one of ``members``."""
    held = [p for m in members for p in m.partitions]
    return len(held) == PARTITIONS and set(held) == set(range(PARTITIONS))


async def main(args: argparse.Namespace) -> int:
    await ensure_topic(args.bootstrap, args.topic, PARTITIONS)
    await produce_round(args.bootstrap, args.topic, "round-1", PARTITIONS * 2)
    members = [Member(f"consumer-{i}") for i in (1, 2, 3)]
    progress = Progress()
    ok = False
    with trio.move_on_after(args.timeout):
        async with trio.open_nursery() as nursery:
            for member in members:
                nursery.start_soon(run_member, args, member, progress)

            await progress.wait_for(
                lambda: covers_all(members) and all(m.partitions for m in members),
                lambda: "all three members hold disjoint partitions covering all six",
            )
            await progress.wait_for(
                lambda: sum(len(m.values) for m in members) >= PARTITIONS * 2,
                lambda: f"the group read round-1: {sum(len(m.values) for m in members)} records",
            )

            stopped, survivors = members[2], members[:2]
            print(f"stopping {stopped.name} (it held partitions {sorted(stopped.partitions)})")
            stopped.stop.set()
            await progress.wait_for(
                lambda: covers_all(survivors),
                lambda: (
                    "the two remaining members now cover all six partitions: "
                    + ", ".join(f"{m.name} {sorted(m.partitions)}" for m in survivors)
                ),
            )

            await produce_round(args.bootstrap, args.topic, "round-2", PARTITIONS * 2)
            await progress.wait_for(
                lambda: (
                    sum(v.startswith("round-2") for m in survivors for v in m.values)
                    >= PARTITIONS * 2
                ),
                lambda: "the remaining members read all of round-2",
            )
            for member in members:
                member.stop.set()
            ok = True
    if not ok:
        print(f"timed out after {args.timeout} s")
        return 2
    for member in members:
        print(f"{member.name} read {len(member.values)} records")
    return 0


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--bootstrap", default="127.0.0.1:9092", help="HOST:PORT[,HOST:PORT]")
    parser.add_argument("--topic", default="example-shared")
    parser.add_argument("--group", default="example-shared-group")
    parser.add_argument("--timeout", type=float, default=60.0, help="give up after this many s")
    return parser.parse_args(argv)


if __name__ == "__main__":
    try:
        sys.exit(trio.run(main, parse_args()))
    except* (ConnectionError, QuorumqError) as group:
        sys.exit(f"error: {group.exceptions[0]}")
