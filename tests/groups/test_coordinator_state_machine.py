"""A hypothesis state machine drives the coordinator with clients that join, sync, heartbeat,
commit, leave, die and restart while time passes and writes succeed, fail or lag behind.

Invariants (what Kafka guarantees, no more):
- each request handle is answered at most once, and only handles that were issued;
- a group's generation never goes backwards;
- in Stable, members' assignments are disjoint and are what the leader sent for them;
- OffsetFetch returns the latest commit whose write succeeded; within one generation the offset
  committed for a partition never decreases while its one owner commits increasing values
  (Kafka allows rewinds, so nothing is checked across generations);
- a coordinator rebuilt from the written records agrees with the live one (failover);
- once faults stop, the live clients converge to a Stable generation covering every partition.
"""

from __future__ import annotations

import random

import attrs
from hypothesis import settings
from hypothesis import strategies as st
from hypothesis.stateful import (
    RuleBasedStateMachine,
    initialize,
    invariant,
    precondition,
    rule,
)

from quorumq.errors import ErrorCode, QuorumqError, UnknownMemberId
from quorumq.groups import (
    GroupConfig,
    GroupCoordinator,
    GroupState,
    JoinGroupResult,
    MemberIdentity,
    OffsetAndMetadata,
    OffsetCommitResult,
    Step,
    SyncGroupResult,
    TopicPartition,
)

GROUP = "g"
PARTITIONS = 6
SESSION_MS = 10_000
REBALANCE_MS = 15_000
CLIENTS = ["c0", "c1", "c2", "c3"]


def _encode(partitions: list[int]) -> bytes:
    return ",".join(map(str, partitions)).encode()


def _decode(assignment: bytes) -> set[int]:
    return {int(p) for p in assignment.decode().split(",") if p}


@attrs.define
class Client:
    name: str
    instance_id: str | None = None  # static members (KIP-345) carry a group.instance.id
    alive: bool = True
    member_id: str = ""
    generation_id: int = -1
    join: JoinGroupResult | None = None  # answer of the last successful join
    join_handle: int | None = None
    sync_handle: int | None = None
    assignment: set[int] | None = None  # for self.generation_id, once synced
    next_offset: int = 0


class CoordinatorMachine(RuleBasedStateMachine):
    initial_rebalance_delay_ms = 0

    def __init__(self) -> None:
        super().__init__()
        config = GroupConfig(
            initial_rebalance_delay_ms=self.initial_rebalance_delay_ms,
            offsets_topic_num_partitions=1,
        )
        self.coordinator = GroupCoordinator(config, rng=random.Random(0))
        self.coordinator.load_partition(0)
        self.now_ms = 0
        self.issued: set[int] = set()
        self.answered: set[int] = set()
        self.unacked: list[tuple[int, tuple[tuple[bytes, bytes | None], ...]]] = []
        self.log: list[tuple[bytes, bytes | None]] = []
        # c2 and c3 are static members: a restart takes over the old member without a rebalance.
        self.clients = {
            name: Client(name, instance_id=f"host-{name}" if name in ("c2", "c3") else None)
            for name in CLIENTS
        }
        self.last_id_by_instance: dict[str, str] = {}
        self.replaced: dict[str, str] = {}  # new member id -> the static member id it replaced
        self.commits: dict[int, tuple[int, TopicPartition, int]] = {}  # handle -> gen, tp, offset
        self.committed: dict[TopicPartition, int] = {}
        self.last_commit_in_generation: dict[TopicPartition, tuple[int, int]] = {}
        self.sent_assignments: dict[int, dict[str, bytes]] = {}  # generation -> leader's map
        self.max_generation = 0

    # --- plumbing -----------------------------------------------------------------------------

    def _run(self, step: Step) -> None:
        if step.handle is not None:
            self.issued.add(step.handle)
        for completion in step.completions:
            assert completion.handle in self.issued, "answer to a handle never issued"
            assert completion.handle not in self.answered, "a handle was answered twice"
            self.answered.add(completion.handle)
            self._deliver(completion.handle, completion.result)
        for append in step.appends:
            self.unacked.append((append.append_id, append.records))

    def _deliver(self, handle: int, response: object) -> None:
        if handle in self.commits:
            generation, tp, offset = self.commits.pop(handle)
            assert isinstance(response, OffsetCommitResult)
            if response.errors[tp] is ErrorCode.NONE:
                previous = self.last_commit_in_generation.get(tp)
                if previous is not None and previous[0] == generation:
                    assert offset >= previous[1], "a commit went backwards within a generation"
                self.last_commit_in_generation[tp] = (generation, offset)
                self.committed[tp] = offset
            return
        for client in self.clients.values():
            if client.join_handle == handle:
                client.join_handle = None
                assert isinstance(response, JoinGroupResult)
                if response.error in (ErrorCode.NONE, ErrorCode.MEMBER_ID_REQUIRED):
                    client.member_id = response.member_id
                if response.error is ErrorCode.NONE:
                    client.generation_id = response.generation_id
                    client.join = response
                    client.assignment = None
                    if client.instance_id is not None:
                        previous = self.last_id_by_instance.get(client.instance_id)
                        if previous is not None and previous != response.member_id:
                            self.replaced[response.member_id] = previous
                        self.last_id_by_instance[client.instance_id] = response.member_id
                elif response.error is ErrorCode.UNKNOWN_MEMBER_ID:
                    client.member_id = ""
            if client.sync_handle == handle:
                client.sync_handle = None
                assert isinstance(response, SyncGroupResult)
                if response.error is ErrorCode.NONE:
                    expected = self._sent_for(client.generation_id, client.member_id)
                    assert response.assignment == expected
                    client.assignment = _decode(response.assignment)

    def _sent_for(self, generation_id: int, member_id: str) -> bytes:
        """What the leader of ``generation_id`` assigned to ``member_id`` (or to the static member
        it replaced in place)."""
        sent = self.sent_assignments.get(generation_id, {})
        while member_id not in sent and member_id in self.replaced:
            member_id = self.replaced[member_id]
        return sent.get(member_id, b"")

    def _forget_membership(self, client: Client) -> None:
        client.member_id = ""
        client.generation_id = -1
        client.join = None
        client.assignment = None

    def _call(self, client: Client, action: object) -> None:
        """Runs ``action`` (a coordinator call) the way a client reacts to its errors."""
        try:
            result = action()  # type: ignore[operator]
        except UnknownMemberId:
            self._forget_membership(client)
            return
        except QuorumqError:
            return  # IllegalGeneration, RebalanceInProgress...: the client rejoins later
        if isinstance(result, Step):
            self._run(result)

    # --- rules --------------------------------------------------------------------------------

    @initialize()
    def start(self) -> None:
        self._run(self.coordinator.tick(self.now_ms))

    @rule(name=st.sampled_from(CLIENTS), require_known=st.booleans())
    def join(self, name: str, require_known: bool) -> None:
        client = self.clients[name]
        if not client.alive or client.join_handle is not None:
            return

        def action() -> Step:
            step = self.coordinator.join_group(
                group_id=GROUP,
                member_id=client.member_id,
                client_id=name,
                session_timeout_ms=SESSION_MS,
                rebalance_timeout_ms=REBALANCE_MS,
                protocol_type="consumer",
                protocols=[("range", name.encode())],
                group_instance_id=client.instance_id,
                require_known_member_id=require_known,
                now_ms=self.now_ms,
            )
            client.join_handle = step.handle
            return step

        self._call(client, action)

    @rule(name=st.sampled_from(CLIENTS))
    def sync(self, name: str) -> None:
        client = self.clients[name]
        join = client.join
        if not client.alive or join is None or client.sync_handle is not None:
            return
        assignments: dict[str, bytes] = {}
        if join.leader == client.member_id and join.members:
            assignments = self._deal(join)

        def action() -> Step:
            step = self.coordinator.sync_group(
                group_id=GROUP,
                generation_id=join.generation_id,
                member_id=client.member_id,
                assignments=assignments,
                group_instance_id=client.instance_id,
                now_ms=self.now_ms,
            )
            if assignments:
                self.sent_assignments.setdefault(join.generation_id, assignments)
            client.sync_handle = step.handle
            return step

        self._call(client, action)

    @rule(name=st.sampled_from(CLIENTS))
    def heartbeat(self, name: str) -> None:
        client = self.clients[name]
        if not client.alive or not client.member_id:
            return
        self._call(
            client,
            lambda: self.coordinator.heartbeat(
                group_id=GROUP,
                member_id=client.member_id,
                generation_id=client.generation_id,
                group_instance_id=client.instance_id,
                now_ms=self.now_ms,
            ),
        )

    @rule(name=st.sampled_from(CLIENTS), step=st.integers(min_value=1, max_value=5))
    def commit(self, name: str, step: int) -> None:
        client = self.clients[name]
        if not client.alive or not client.assignment:
            return
        partition = sorted(client.assignment)[client.next_offset % len(client.assignment)]
        tp = TopicPartition("t", partition)
        client.next_offset += step
        offset = client.next_offset
        generation = client.generation_id

        def action() -> Step:
            result = self.coordinator.commit_offsets(
                group_id=GROUP,
                member_id=client.member_id,
                generation_id=generation,
                offsets={tp: OffsetAndMetadata(offset)},
                group_instance_id=client.instance_id,
                now_ms=self.now_ms,
            )
            assert result.handle is not None
            self.commits[result.handle] = (generation, tp, offset)
            return result

        self._call(client, action)

    @rule(name=st.sampled_from(CLIENTS))
    def leave(self, name: str) -> None:
        client = self.clients[name]
        if not client.alive or not client.member_id:
            return
        member_id = client.member_id
        self._call(
            client,
            lambda: self.coordinator.leave_group(
                group_id=GROUP,
                members=[MemberIdentity(member_id, client.instance_id)],
                now_ms=self.now_ms,
            ),
        )
        self._forget_membership(client)

    @rule(name=st.sampled_from(CLIENTS))
    def crash(self, name: str) -> None:
        """The client's process dies: it sends nothing more; its requests go unanswered."""
        client = self.clients[name]
        client.alive = False
        client.join_handle = client.sync_handle = None
        self._forget_membership(client)

    @rule(name=st.sampled_from(CLIENTS))
    def restart(self, name: str) -> None:
        client = self.clients[name]
        if not client.alive:
            self.clients[name] = Client(
                name, instance_id=client.instance_id, next_offset=client.next_offset
            )

    @rule(advance_ms=st.sampled_from([0, 100, 3_000, 9_000, 12_000, 20_000]))
    def tick(self, advance_ms: int) -> None:
        self.now_ms += advance_ms
        self._run(self.coordinator.tick(self.now_ms))

    @precondition(lambda self: bool(self.unacked))
    @rule(
        error=st.sampled_from(
            [ErrorCode.NONE] * 4 + [ErrorCode.NOT_ENOUGH_REPLICAS, ErrorCode.REQUEST_TIMED_OUT]
        )
    )
    def finish_oldest_append(self, error: ErrorCode) -> None:
        append_id, records = self.unacked.pop(0)
        if error is ErrorCode.NONE:
            self.log.extend(records)
        self._run(self.coordinator.on_append_done(append_id, error, self.now_ms))

    @rule()
    def converge(self) -> None:
        """Faults stop: every write succeeds and the live clients behave as Kafka's consumer does
        (sync after join, heartbeat every 3 s, rejoin when told to). The group must end Stable
        with every partition assigned to exactly one live client."""
        for _ in range(40):
            self._finish_all_appends()
            for client in [c for c in self.clients.values() if c.alive]:
                self._play_by_the_book(client)
            self._finish_all_appends()
            if self._converged():
                break
            self.tick(3_000)
        assert self._converged(), "the live clients did not converge"
        live = [c for c in self.clients.values() if c.alive]
        if live:
            owned = [p for c in live for p in (c.assignment or set())]
            assert sorted(owned) == list(range(PARTITIONS))

    def _play_by_the_book(self, client: Client) -> None:
        if client.join_handle is not None or client.sync_handle is not None:
            return
        if client.join is None:
            self.join(client.name, require_known=True)
            return
        try:
            if client.assignment is None:
                handle = self._sync_now(client)
                if handle is None:
                    return
            self.coordinator.heartbeat(
                group_id=GROUP,
                member_id=client.member_id,
                generation_id=client.generation_id,
                group_instance_id=client.instance_id,
                now_ms=self.now_ms,
            )
        except UnknownMemberId:
            self._forget_membership(client)
        except QuorumqError:
            client.join = None  # RebalanceInProgress, IllegalGeneration: rejoin next round
            client.assignment = None

    def _sync_now(self, client: Client) -> int | None:
        join = client.join
        assert join is not None
        assignments: dict[str, bytes] = {}
        if join.leader == client.member_id and join.members:
            assignments = self._deal(join)
        step = self.coordinator.sync_group(
            group_id=GROUP,
            generation_id=join.generation_id,
            member_id=client.member_id,
            assignments=assignments,
            group_instance_id=client.instance_id,
            now_ms=self.now_ms,
        )
        if assignments:
            self.sent_assignments.setdefault(join.generation_id, assignments)
        client.sync_handle = step.handle
        self._run(step)
        return None if client.sync_handle is not None else step.handle

    @staticmethod
    def _deal(join: JoinGroupResult) -> dict[str, bytes]:
        member_ids = [m.member_id for m in join.members]
        dealt: dict[str, list[int]] = {m: [] for m in member_ids}
        for partition in range(PARTITIONS):
            dealt[member_ids[partition % len(member_ids)]].append(partition)
        return {m: _encode(ps) for m, ps in dealt.items()}

    def _converged(self) -> bool:
        live = [c for c in self.clients.values() if c.alive]
        described = self.coordinator.describe_group(GROUP)
        if not live:
            return described.members == ()
        return (
            described.state is GroupState.STABLE
            and {m.member_id for m in described.members} == {c.member_id for c in live}
            and all(
                c.generation_id == described.generation_id and c.assignment is not None
                for c in live
            )
        )

    def _finish_all_appends(self) -> None:
        while self.unacked:
            self.finish_oldest_append(ErrorCode.NONE)

    # --- invariants ---------------------------------------------------------------------------

    @invariant()
    def generation_only_grows(self) -> None:
        described = self.coordinator.describe_group(GROUP)
        if described.state is not GroupState.DEAD:
            assert described.generation_id >= self.max_generation
            self.max_generation = described.generation_id

    @invariant()
    def stable_assignments_are_disjoint_and_the_leaders(self) -> None:
        described = self.coordinator.describe_group(GROUP)
        if described.state is not GroupState.STABLE:
            return
        assert described.leader in {m.member_id for m in described.members}
        seen: set[int] = set()
        for member in described.members:
            assert member.assignment == self._sent_for(described.generation_id, member.member_id)
            partitions = _decode(member.assignment)
            assert not partitions & seen
            seen |= partitions

    @invariant()
    def fetch_returns_the_latest_successful_commit(self) -> None:
        fetched = self.coordinator.fetch_offsets(group_id=GROUP)
        assert {tp: v.offset for tp, v in fetched.items() if v is not None} == self.committed

    @invariant()
    def a_coordinator_rebuilt_from_the_log_agrees(self) -> None:
        if self.unacked:
            return  # writes in flight: the log may not hold them yet
        successor = GroupCoordinator(GroupConfig(offsets_topic_num_partitions=1))
        successor.load_partition(0, self.log, now_ms=self.now_ms)
        assert successor.fetch_offsets(group_id=GROUP) == self.coordinator.fetch_offsets(
            group_id=GROUP
        )
        live = self.coordinator.describe_group(GROUP)
        if live.state is GroupState.STABLE:
            reloaded = successor.describe_group(GROUP)
            assert reloaded.state is GroupState.STABLE
            assert reloaded.generation_id == live.generation_id
            assert reloaded.leader == live.leader
            assert {m.member_id: m.assignment for m in reloaded.members} == {
                m.member_id: m.assignment for m in live.members
            }


class CoordinatorWithInitialDelayMachine(CoordinatorMachine):
    """Kafka's default: a new group waits group.initial.rebalance.delay.ms for more members."""

    initial_rebalance_delay_ms = 3_000


TestCoordinatorMachine = CoordinatorMachine.TestCase
TestCoordinatorMachine.settings = settings(max_examples=80, stateful_step_count=50, deadline=None)
TestCoordinatorWithInitialDelay = CoordinatorWithInitialDelayMachine.TestCase
TestCoordinatorWithInitialDelay.settings = settings(
    max_examples=40, stateful_step_count=50, deadline=None
)
