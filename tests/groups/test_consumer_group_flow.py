"""The issue's scenario at the core level: three consumers share six partitions through the real
ConsumerProtocol bytes and Kafka's assignors; one leaves, one is killed, the rest take over;
a second group reads independently; committed offsets survive a coordinator failover."""

from __future__ import annotations

import pytest

from quorumq.client._assignors import (
    MemberSubscription,
    RangeAssignor,
    RoundRobinAssignor,
)
from quorumq.client._consumer_protocol import (
    CONSUMER_PROTOCOL_TYPE,
    decode_assignment,
    decode_subscription,
    encode_assignment,
    encode_subscription,
)
from quorumq.errors import ErrorCode, RebalanceInProgress
from quorumq.groups import (
    GroupConfig,
    GroupCoordinator,
    GroupState,
    JoinGroupResult,
    MemberIdentity,
    OffsetAndMetadata,
    TopicPartition,
)
from tests.groups.conftest import Shell

TOPIC = "orders"
PARTITIONS = {TOPIC: 6}


class Consumer:
    """Just enough of a group consumer: join (v4+, so MEMBER_ID_REQUIRED first), sync, heartbeat."""

    def __init__(self, shell: Shell, group: str, name: str, assignor: str = "range") -> None:
        self.shell, self.group, self.name = shell, group, name
        self.assignor = RangeAssignor() if assignor == "range" else RoundRobinAssignor()
        self.member_id = ""
        self.join_response: JoinGroupResult | None = None
        self.assignment: list[tuple[str, int]] | None = None
        self.pending: int | None = None
        self.pending_sync: int | None = None

    def join(self) -> None:
        metadata = encode_subscription(self.assignor.metadata([TOPIC]))
        step = self.shell.run(
            self.shell.coordinator.join_group(
                group_id=self.group,
                member_id=self.member_id,
                client_id=self.name,
                session_timeout_ms=10_000,
                rebalance_timeout_ms=30_000,
                protocol_type=CONSUMER_PROTOCOL_TYPE,
                protocols=[(self.assignor.name, metadata)],
                require_known_member_id=True,
                now_ms=self.shell.now_ms,
            )
        )
        response = step.result
        if isinstance(response, JoinGroupResult) and response.error is (
            ErrorCode.MEMBER_ID_REQUIRED
        ):
            self.member_id = response.member_id
            self.join()
            return
        self.assignment = None
        self.pending = step.handle

    def poll(self) -> None:
        """Acts on answers: after JoinGroup the leader assigns and everyone syncs; after SyncGroup
        the consumer takes its partitions (or rejoins if the group moved on)."""
        if self.pending is not None and self.pending in self.shell.responses:
            response = self.shell.joined(self.pending)
            self.pending = None
            assert response.error is ErrorCode.NONE
            self.member_id = response.member_id
            self.join_response = response
            assignments: dict[str, bytes] = {}
            if response.members:
                members = [
                    MemberSubscription(
                        m.member_id, decode_subscription(m.metadata), m.group_instance_id
                    )
                    for m in response.members
                ]
                result = self.assignor.assign(PARTITIONS, members)
                assignments = {member: encode_assignment(a) for member, a in result.items()}
            try:
                self.pending_sync = self.shell.sync(response, assignments, group=self.group)
            except RebalanceInProgress:
                self.join()
                return
        if self.pending_sync is not None and self.pending_sync in self.shell.responses:
            synced = self.shell.synced(self.pending_sync)
            self.pending_sync = None
            if synced.error is ErrorCode.NONE:
                self.assignment = decode_assignment(synced.assignment).partitions()
            else:
                self.join()

    def heartbeat(self) -> bool:
        """Returns False when the group rebalances and the consumer must rejoin."""
        assert self.join_response is not None
        try:
            self.shell.coordinator.heartbeat(
                group_id=self.group,
                member_id=self.member_id,
                generation_id=self.join_response.generation_id,
                now_ms=self.shell.now_ms,
            )
        except RebalanceInProgress:
            return False
        return True


def _settle(shell: Shell, consumers: list[Consumer]) -> None:
    for _ in range(4):
        for consumer in consumers:
            consumer.poll()


def _run_until_stable(shell: Shell, group: str, consumers: list[Consumer]) -> None:
    """Plays the consumers' loop (poll, heartbeat, rejoin when told) until the group settles."""
    for _ in range(10):
        _settle(shell, consumers)
        described = shell.coordinator.describe_group(group)
        if described.state is GroupState.STABLE and all(
            c.assignment is not None
            and c.join_response is not None
            and c.join_response.generation_id == described.generation_id
            for c in consumers
        ):
            return
        for consumer in consumers:
            waiting = consumer.pending is not None or consumer.pending_sync is not None
            if not waiting and (consumer.join_response is None or not consumer.heartbeat()):
                consumer.join()
    raise AssertionError(f"group {group} did not settle")


def _owned(consumers: list[Consumer]) -> list[tuple[str, int]]:
    return sorted(tp for c in consumers for tp in (c.assignment or []))


@pytest.mark.parametrize("assignor", ["range", "roundrobin"])
def test_three_consumers_share_six_partitions_and_the_rest_take_over(assignor: str) -> None:
    shell = Shell(GroupCoordinator(GroupConfig(initial_rebalance_delay_ms=3_000)))
    consumers = [Consumer(shell, "readers", f"c{i}", assignor) for i in range(3)]
    for consumer in consumers:
        consumer.join()
    shell.tick(3_000)  # the initial rebalance delay: members kept arriving, so it runs again
    assert _owned(consumers) == []
    shell.tick(3_000)  # ... and gathers all three into generation 1
    _settle(shell, consumers)
    assert _owned(consumers) == [(TOPIC, p) for p in range(6)]
    assert all(len(c.assignment or []) == 2 for c in consumers)

    # One leaves cleanly: the others hear REBALANCE_IN_PROGRESS, rejoin and cover everything.
    leaver, *rest = consumers
    shell.run(
        shell.coordinator.leave_group(
            group_id="readers", members=[MemberIdentity(leaver.member_id)], now_ms=shell.now_ms
        )
    )
    for consumer in rest:
        assert not consumer.heartbeat()
        consumer.join()
    _settle(shell, rest)
    assert _owned(rest) == [(TOPIC, p) for p in range(6)]

    # One is killed: within its session timeout the survivor owns everything.
    killed, survivor = rest
    killed_at_ms = shell.now_ms
    while survivor.assignment != [(TOPIC, p) for p in range(6)]:
        shell.tick(3_000)  # the survivor heartbeats every 3 s; the killed one never again
        if not survivor.heartbeat():
            survivor.join()
            _settle(shell, [survivor])
        assert shell.now_ms - killed_at_ms <= 10_000 + 3_000, "not within the session timeout"
    assert killed.member_id not in {
        m.member_id for m in shell.coordinator.describe_group("readers").members
    }


def test_a_second_group_reads_independently_and_offsets_survive_failover() -> None:
    shell = Shell()
    first = [Consumer(shell, "billing", "b0"), Consumer(shell, "billing", "b1")]
    second = [Consumer(shell, "audit", "a0")]
    for consumer in [*first, *second]:
        consumer.join()
    _run_until_stable(shell, "billing", first)
    _run_until_stable(shell, "audit", second)
    assert _owned(first) == [(TOPIC, p) for p in range(6)]
    assert _owned(second) == [(TOPIC, p) for p in range(6)]

    for group, consumers, offset in (("billing", first, 100), ("audit", second, 7)):
        for consumer in consumers:
            assert consumer.join_response is not None
            shell.run(
                shell.coordinator.commit_offsets(
                    group_id=group,
                    member_id=consumer.member_id,
                    generation_id=consumer.join_response.generation_id,
                    offsets={
                        TopicPartition(*tp): OffsetAndMetadata(offset + tp[1])
                        for tp in consumer.assignment or []
                    },
                    now_ms=shell.now_ms,
                )
            )

    # The coordinator's broker dies; the next leader of each partition reloads from the log.
    successor = GroupCoordinator()
    for partition in {successor.partition_for("billing"), successor.partition_for("audit")}:
        records = [(k, v) for p, k, v in shell.log if p == partition]
        successor.load_partition(partition, records, now_ms=shell.now_ms)
    for group, offset in (("billing", 100), ("audit", 7)):
        fetched = successor.fetch_offsets(group_id=group)
        assert {tp.partition: v.offset for tp, v in fetched.items() if v} == {
            p: offset + p for p in range(6)
        }
        assert successor.describe_group(group).state is GroupState.STABLE
