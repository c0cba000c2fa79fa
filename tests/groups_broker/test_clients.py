"""Real group consumers (kafka-python, aiokafka, confluent-kafka) against an in-process broker:
three members share six partitions, one leaves and the others take over, a second group reads
everything independently."""

from __future__ import annotations

import pytest
import trio

from quorumq.broker import Broker
from tests.groups_broker._members import Member, produce
from tests.groups_broker.conftest import bootstrap, wait_until

PARTITIONS = set(range(6))
RECORDS = 60


def disjoint_cover(members: list[Member]) -> bool:
    for m in members:
        if m.error is not None:
            raise AssertionError(f"{m.kind} member failed: {m.error!r}") from m.error
    seen: list[int] = []
    for m in members:
        with m.lock:
            seen.extend(m.assignment)
    return len(seen) == len(set(seen)) and set(seen) == PARTITIONS


def values_of(members: list[Member]) -> set[bytes]:
    out: set[bytes] = set()
    for m in members:
        with m.lock:
            out |= m.values
    return out


@pytest.mark.parametrize("kind", ["kafka-python", "aiokafka", "confluent-kafka"])
async def test_group_members_share_partitions_and_take_over(broker: Broker, kind: str) -> None:
    topic = f"orders-{kind}"
    broker.create_topic(topic, len(PARTITIONS))
    address = bootstrap(broker)
    await trio.to_thread.run_sync(produce, address, topic, RECORDS)
    expected = {f"v{i}".encode() for i in range(RECORDS)}

    members = [Member(kind, address, "g1", topic) for _ in range(3)]
    async with trio.open_nursery() as nursery:
        try:
            for m in members:
                nursery.start_soon(trio.to_thread.run_sync, m.run)
            await wait_until(
                lambda: disjoint_cover(members) and all(m.assignment for m in members),
                30,
                "three members with disjoint assignments covering six partitions",
            )
            await wait_until(lambda: values_of(members) == expected, 15, "group g1 reads all")

            members[2].stop.set()
            await wait_until(members[2].finished.is_set, 15, "the third member to close")
            await wait_until(
                lambda: disjoint_cover(members[:2]) and all(m.assignment for m in members[:2]),
                6,  # the session timeout: a clean leave must not need more
                "the two remaining members to cover all six partitions",
            )

            other = Member(kind, address, "g2", topic)
            nursery.start_soon(trio.to_thread.run_sync, other.run)
            await wait_until(lambda: values_of([other]) == expected, 20, "group g2 reads all")
            assert other.assignment == PARTITIONS
        finally:
            for m in [*members, locals().get("other")]:
                if isinstance(m, Member):
                    m.stop.set()
    for m in members:
        assert m.error is None, m.error
