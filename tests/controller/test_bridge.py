"""The Trio bridge against a stand-in voter whose callbacks come from real threads."""

from __future__ import annotations

import threading
from collections.abc import Callable
from pathlib import Path
from typing import Any, ClassVar

import pytest
import trio

from quorumq.controller import (
    BrokerMembership,
    Controller,
    ImageSubscription,
    Voter,
    open_controller_bridge,
)
from quorumq.controller import _bridge as bridge_module
from quorumq.controller.image import (
    BrokerHeartbeat,
    ControllerEpochBump,
    CreateTopic,
    ImageReset,
    MetadataImage,
    MetadataStateMachine,
    RegisterBroker,
    ReplicaReport,
    TopicCreated,
    decode_entry,
)
from quorumq.errors import NotController, RequestTimedOut, TopicAlreadyExists

VOTERS = {0: Voter(0, "127.0.0.1", 1)}


class FakeRaft:
    """Applies records on a fresh thread per call, like pysyncobj's tick thread would.

    ``fail_next`` makes the next submissions fail with that pysyncobj FAIL_REASON; ``drop``
    swallows them (no callback ever).
    """

    instances: ClassVar[list[FakeRaft]] = []

    def __init__(self, address: str, partners: list[str], data_dir: Path, **kwargs: Any) -> None:
        self.listener = kwargs["listener"]
        self.state_listener = kwargs["state_listener"]
        self.machine = MetadataStateMachine()
        self.leader = True
        self.term = 3
        self.fail_next: list[int] = []
        self.drop = False
        self.destroyed = False
        FakeRaft.instances.append(self)

    def submit(self, data: bytes, callback: Callable[[Any, int], None]) -> None:
        def run() -> None:
            if self.drop:
                return
            if self.fail_next:
                callback(None, self.fail_next.pop(0))
                return
            outcomes = [self.machine.apply(record) for record in decode_entry(data)]
            self.listener(self.machine.image, [c for changes in outcomes for c in changes])
            callback(outcomes, 0)

        threading.Thread(target=run).start()

    def is_leader(self) -> bool:
        return self.leader

    def hears_a_majority(self) -> bool:
        return self.leader  # one voter: itself is the majority

    def leader_address(self) -> str | None:
        return "127.0.0.1:1" if self.leader else None

    def destroy_synchronous(self) -> None:
        self.destroyed = True


@pytest.fixture
def fake_raft(monkeypatch: pytest.MonkeyPatch) -> type[FakeRaft]:
    FakeRaft.instances = []
    monkeypatch.setattr(bridge_module, "MetadataRaft", FakeRaft)
    return FakeRaft


async def test_bridge_claims_controller_epoch_when_elected(fake_raft, tmp_path: Path) -> None:
    async with open_controller_bridge(0, VOTERS, tmp_path, clock_ms=lambda: 77) as bridge:
        # The fake was "elected" before the nursery existed: the bridge claims term 3 anyway.
        await bridge.wait_until(lambda b: b.is_active, 5)
        assert (bridge.controller_id, bridge.controller_epoch, bridge.leader_id) == (0, 3, 0)
        assert bridge.image.controller_epoch_start_ms == 77
        raft = fake_raft.instances[0]
        raft.term = 4
        assert not bridge.is_active  # a new term is not ours until our bump for it applies
        threading.Thread(target=raft.state_listener, args=(True, 4)).start()
        await bridge.wait_until(lambda b: b.is_active, 5)
        assert bridge.controller_epoch == 4
    assert raft.destroyed and not bridge.is_active


async def test_bridge_propose_maps_failures_and_rejections(fake_raft, tmp_path: Path) -> None:
    async with open_controller_bridge(0, VOTERS, tmp_path) as bridge:
        raft = fake_raft.instances[0]
        create = CreateTopic("t", "id-t", ((0,),))
        changes = await bridge.propose(create)
        assert changes[0] == TopicCreated("t", "id-t")
        assert "t" in bridge.image.topics  # published before propose returns
        with pytest.raises(TopicAlreadyExists):
            await bridge.propose(create)
        rejected = await bridge.propose(create, raise_rejected=False)
        assert type(rejected[0]).__name__ == "Rejected"
        for reason in (2, 3, 4, 5):
            raft.fail_next = [reason]
            with pytest.raises(NotController):
                await bridge.propose(create)
        raft.fail_next = [7]
        with pytest.raises(RequestTimedOut, match="UNKNOWN_OUTCOME"):
            await bridge.propose(create)
        raft.drop = True
        with pytest.raises(RequestTimedOut):
            await bridge.propose(create, timeout_s=0.05)
    with pytest.raises(NotController):
        await bridge.propose(create)


async def test_bridge_changed_event_skips_heartbeats(fake_raft, tmp_path: Path) -> None:
    async with open_controller_bridge(0, VOTERS, tmp_path) as bridge:
        await bridge.wait_until(lambda b: b.is_active, 5)
        changes = await bridge.propose(RegisterBroker(0, "inc", "h", 1, 5))
        event = bridge.changed
        await bridge.propose(BrokerHeartbeat(0, changes[0].broker_epoch, 10))  # type: ignore[union-attr]
        assert bridge.changed is event and not event.is_set()
        assert bridge.image.brokers[0].registered_ms == 5
        await bridge.propose(CreateTopic("t", "id", ((0,),)))
        assert event.is_set() and bridge.changed is not event


async def test_subscription_coalesces_and_resets_on_overflow(fake_raft, tmp_path: Path) -> None:
    async with open_controller_bridge(0, VOTERS, tmp_path) as bridge:
        with bridge.subscribe(max_pending=4) as feed:
            await bridge.propose(ControllerEpochBump(0, 9, 0))
            await bridge.propose(CreateTopic("a", "id-a", ((0,),)))
            update = await feed.receive()
            assert not update.reset
            assert [type(c).__name__ for c in update.changes] == [
                "ControllerChanged",
                "TopicCreated",
                "PartitionChanged",
            ]
            for i in range(3):  # 6 changes > max_pending: coalesced into one reset
                await bridge.propose(CreateTopic(f"b{i}", f"id-b{i}", ((0,),)))
            update = await feed.receive()
            assert update.reset and update.changes == ()
            assert {"a", "b0", "b1", "b2"} <= set(update.image.topics)
            with trio.move_on_after(0.05) as scope:
                await feed.receive()
            assert scope.cancelled_caught  # nothing new
        assert feed not in bridge._subscriptions


async def test_subscription_reports_snapshot_reset() -> None:
    class Owner:
        _subscriptions: ClassVar[set[ImageSubscription]] = set()

    feed = ImageSubscription(Owner(), 10, MetadataImage())  # type: ignore[arg-type]
    feed._push(MetadataImage(record_count=5), [ImageReset()])
    update = await feed.receive()
    assert update.reset and update.image.record_count == 5


async def wait_for(condition: Callable[[], bool], timeout_s: float = 5.0) -> None:
    with trio.fail_after(timeout_s):
        while not condition():  # noqa: ASYNC110 - the membership task's progress, no event
            await trio.sleep(0.01)


async def test_membership_registers_and_heartbeats_on_request(fake_raft, tmp_path: Path) -> None:
    now = [1_000]
    reports = [ReplicaReport("t", 0, 2, 50, 3)]
    async with open_controller_bridge(0, VOTERS, tmp_path) as bridge, trio.open_nursery() as n:
        await bridge.wait_until(lambda b: b.is_active, 5)
        controller = Controller(bridge, clock_ms=lambda: now[0])
        sent: list[BrokerHeartbeat] = []

        async def send(heartbeat: BrokerHeartbeat) -> bool:
            sent.append(heartbeat)
            return controller.record_heartbeat(heartbeat).fenced

        membership = BrokerMembership(
            bridge,
            0,
            "127.0.0.1",
            9092,
            send_heartbeat=send,
            heartbeat_interval_s=100,
            reports=lambda: reports,
            clock_ms=lambda: now[0],
        )
        epoch = await n.start(membership.run)
        assert bridge.image.brokers[0].broker_epoch == epoch == 1
        await wait_for(lambda: len(sent) == 1)  # the first heartbeat goes at once
        records = bridge.image.record_count
        now[0] = 2_000
        membership.request_heartbeat()
        await wait_for(lambda: len(sent) == 2)
        broker = bridge.image.brokers[0]
        assert controller.liveness.last_seen_ms(broker) == 2_000
        assert controller.liveness.reports_for(bridge.image, "t", 0) == {0: (2, 50)}
        assert membership.fenced  # registered fenced, and no tick here unfences it
        assert bridge.image.record_count == records  # heartbeats are not Raft records
        # Another incarnation took the id: the next heartbeat is stale, so it registers again.
        await bridge.propose(RegisterBroker(0, "someone-else", "h", 1, 2_500))
        now[0] = 3_000
        membership.request_heartbeat()
        await bridge.wait_until(lambda b: b.image.brokers[0].broker_epoch == 3, 5)
        await wait_for(lambda: sent[-1].broker_epoch == 3)
        assert bridge.image.brokers[0].incarnation_id == membership.incarnation_id
        n.cancel_scope.cancel()
