"""Three real pysyncobj voters on 127.0.0.1 in one Trio process.

Elect, replicate a CreateTopic to every image, lose the active controller, re-elect with a higher
controller epoch, then restart voters from their journal and snapshot and find every topic.
Durations are printed (run with -s), never asserted.
"""

from __future__ import annotations

import socket
import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path

import attrs
import pytest
import trio

from quorumq.controller import (
    BrokerMembership,
    Controller,
    ControllerBridge,
    ImageSubscription,
    Voter,
    open_controller_bridge,
    parse_voters,
)
from quorumq.controller.image import (
    NO_LEADER,
    BrokerHeartbeat,
    ControllerConfig,
    ImageReset,
    RegisterBroker,
    ReplicaReport,
    TopicCreated,
    electors_for,
)
from quorumq.errors import (
    InvalidConfig,
    InvalidReplicationFactor,
    NotController,
    TopicAlreadyExists,
)
from quorumq.replication import STRATEGIES
from quorumq.testing import free_ports

from ._helpers import send_to_active

PASSWORD = "test-secret"  # cryptography is a dependency: the Raft ports are always protected


@attrs.define(eq=False)
class Node:
    bridge: ControllerBridge
    controller: Controller
    cancel_scope: trio.CancelScope
    done: trio.Event
    feed: ImageSubscription  # every change since the voter started

    async def stop(self) -> None:
        self.cancel_scope.cancel()
        await self.done.wait()


CONTROLLERS: list[Controller] = []
"""Every controller the running test started (heartbeats go to the active one)."""


@pytest.fixture(autouse=True)
def _forget_controllers() -> None:
    CONTROLLERS.clear()


async def _run_node(
    node_id: int, voters: dict[int, Voter], root: Path, *, task_status: trio.TaskStatus[Node]
) -> None:
    """One voter in its own task (nurseries must nest per task): bridge, controller, broker."""
    done = trio.Event()
    try:
        with trio.CancelScope() as scope:
            data_dir = root / f"node{node_id}"
            async with (
                open_controller_bridge(node_id, voters, data_dir, password=PASSWORD) as bridge,
                trio.open_nursery() as nursery,
            ):
                feed = bridge.subscribe()
                controller = Controller(bridge, tick_interval_s=0.1)
                CONTROLLERS.append(controller)
                nursery.start_soon(controller.run)
                membership = BrokerMembership(
                    bridge,
                    node_id,
                    "127.0.0.1",
                    9092 + node_id,
                    send_heartbeat=send_to_active(lambda: CONTROLLERS),
                    heartbeat_interval_s=0.5,
                )
                nursery.start_soon(membership.run)
                task_status.started(Node(bridge, controller, scope, done, feed))
    finally:
        done.set()


async def _wait_for_file(path: Path) -> None:
    with trio.fail_after(5):
        while not await trio.Path(path).exists():  # noqa: ASYNC110 - written by the raft thread
            await trio.sleep(0.02)


@asynccontextmanager
async def _three_voters(root: Path) -> AsyncIterator[dict[int, Node]]:
    """Three voters on free ports, each with its controller and broker membership, stopped
    when the block ends."""
    ports = free_ports(3)
    voters = {i: Voter(i, "127.0.0.1", ports[i]) for i in range(3)}
    async with trio.open_nursery() as nursery:
        yield {i: await nursery.start(_run_node, i, voters, root) for i in range(3)}
        nursery.cancel_scope.cancel()


async def _active(nodes: dict[int, Node], timeout_s: float = 10.0) -> Node:
    with trio.fail_after(timeout_s):
        while True:
            for node in nodes.values():
                if node.bridge.is_active:
                    return node
            await trio.sleep(0.01)


async def test_three_voters_replicate_fail_over_and_restart(tmp_path: Path) -> None:
    ports = free_ports(3)
    voters = {i: Voter(i, "127.0.0.1", ports[i]) for i in range(3)}
    nodes: dict[int, Node] = {}
    async with trio.open_nursery() as nursery:
        start = trio.current_time()
        for i in range(3):
            nodes[i] = await nursery.start(_run_node, i, voters, tmp_path)
        first = await _active(nodes)
        print(
            f"\nfirst active controller {first.bridge.node_id} after "
            f"{trio.current_time() - start:.2f} s (password={'on' if PASSWORD else 'off'})"
        )
        first_epoch = first.bridge.controller_epoch
        assert first_epoch >= 1

        # Every broker registers and is unfenced by the active controller's tick.
        for node in nodes.values():
            await node.bridge.wait_until(lambda b: b.image.live_brokers() == {0, 1, 2}, 10)

        # CreateTopics through a follower: forwarded to the leader, applied on every voter.
        follower = next(n for n in nodes.values() if n is not first)
        with follower.bridge.subscribe() as feed:
            record = await follower.controller.create_topic("orders", 6, 3)
            update = await feed.receive()
        assert TopicCreated("orders", record.topic_id) in update.changes
        assert "orders" in follower.bridge.image.topics  # visible once propose returns
        for node in nodes.values():
            await node.bridge.wait_until(lambda b: "orders" in b.image.topics, 5)
        images = [n.bridge.image.topics["orders"] for n in nodes.values()]
        assert images[0] == images[1] == images[2]
        assert sorted(p.leader for p in images[0].partitions.values()) == [0, 0, 1, 1, 2, 2]
        with pytest.raises(TopicAlreadyExists):
            await first.controller.create_topic("orders", 1, 1)
        with pytest.raises(InvalidReplicationFactor):
            await follower.controller.create_topic("wide", 1, 4)

        # Lose the active controller: another voter takes over with a higher epoch.
        old_id = first.bridge.node_id
        killed_at = trio.current_time()
        await first.stop()
        del nodes[old_id]
        second = await _active(nodes)
        print(
            f"re-election: controller {old_id} -> {second.bridge.node_id} in "
            f"{trio.current_time() - killed_at:.2f} s, epoch {first_epoch} -> "
            f"{second.bridge.controller_epoch}"
        )
        assert second.bridge.node_id != old_id
        assert second.bridge.controller_epoch > first_epoch
        await second.controller.create_topic("after", 2, 2)

        # Snapshot one survivor, then bring the old controller back from its journal.
        second.bridge.raft.force_snapshot()
        snapshot = tmp_path / f"node{second.bridge.node_id}" / "raft.snapshot"
        await _wait_for_file(snapshot)
        nodes[old_id] = await nursery.start(_run_node, old_id, voters, tmp_path)
        await nodes[old_id].bridge.wait_until(lambda b: "after" in b.image.topics, 10)
        # Its journal ends before the leader's snapshot point: the leader sent the snapshot, and
        # installing it told the listeners to re-read everything.
        with trio.fail_after(5):
            while not (update := await nodes[old_id].feed.receive()).reset:
                pass
        assert {"orders", "after"} <= set(update.image.topics)

        # Full cluster restart: journals (and one snapshot) keep every topic.
        for node in nodes.values():
            await node.stop()
        nodes.clear()
        restarted = trio.current_time()
        for i in range(3):
            nodes[i] = await nursery.start(_run_node, i, voters, tmp_path)
        third = await _active(nodes)
        print(
            f"full restart: controller {third.bridge.node_id} active after "
            f"{trio.current_time() - restarted:.2f} s, epoch {third.bridge.controller_epoch}"
        )
        assert third.bridge.controller_epoch > second.bridge.controller_epoch
        for node in nodes.values():
            await node.bridge.wait_until(lambda b: {"orders", "after"} <= set(b.image.topics), 10)
        assert nodes[0].bridge.image.topics["orders"].topic_id == record.topic_id
        nursery.cancel_scope.cancel()


async def test_snapshot_install_resets_listeners(tmp_path: Path) -> None:
    # A voter restarted from a compacted log loads the snapshot first: subscribers see a reset.
    ports = free_ports(1)
    voters = {0: Voter(0, "127.0.0.1", ports[0])}
    async with open_controller_bridge(0, voters, tmp_path, password=PASSWORD) as bridge:
        await bridge.wait_until(lambda b: b.is_active, 5)
        controller = Controller(bridge)
        async with trio.open_nursery() as nursery:
            send = send_to_active(lambda: [controller])
            await nursery.start(
                BrokerMembership(bridge, 0, "127.0.0.1", 9092, send_heartbeat=send).run
            )
            await nursery.start(controller.run)
            await bridge.wait_until(lambda b: b.image.live_brokers() == {0}, 5)
            await controller.create_topic("kept", 1, 1)
            nursery.cancel_scope.cancel()
        bridge.raft.force_snapshot()
        await _wait_for_file(tmp_path / "raft.snapshot")
        before = bridge.image
    async with open_controller_bridge(0, voters, tmp_path, password=PASSWORD) as bridge:
        with bridge.subscribe() as feed:
            with trio.fail_after(5):
                update = await feed.receive()
        assert update.reset
        assert update.image.topics == before.topics
        await bridge.wait_until(lambda b: b.is_active, 5)
        assert bridge.controller_epoch > before.controller_epoch
        assert ImageReset not in {type(c) for c in update.changes}


async def test_bridge_refuses_bad_voters_and_busy_port(tmp_path: Path) -> None:
    with pytest.raises(InvalidConfig):
        parse_voters("0@127.0.0.1:19092,0@127.0.0.1:19093")
    with pytest.raises(InvalidConfig):
        parse_voters("zero@127.0.0.1:19092")
    assert parse_voters("0@127.0.0.1:19092, 1@[::1]:19093")[1].address == "[::1]:19093"
    ports = free_ports(2)
    voters = {0: Voter(0, "127.0.0.1", ports[0]), 1: Voter(1, "127.0.0.1", ports[1])}
    with pytest.raises(InvalidConfig, match="not among the controller voters"):
        async with open_controller_bridge(5, voters, tmp_path / "x"):
            pass
    with socket.socket() as busy:
        busy.bind(("127.0.0.1", ports[0]))
        busy.listen()
        with pytest.raises(OSError, match="already in use"):
            async with open_controller_bridge(0, voters, tmp_path / "y"):
                pass


async def _register_three(bridge: ControllerBridge, now_ms: int) -> dict[int, int]:
    """Registers brokers 0-2 (fenced until a tick); returns their broker epochs."""
    epochs = {}
    for broker_id in range(3):
        changes = await bridge.propose(
            RegisterBroker(broker_id, f"inc-{broker_id}", "127.0.0.1", 9092 + broker_id, now_ms)
        )
        epochs[broker_id] = changes[0].broker_epoch  # type: ignore[union-attr]
    return epochs


async def test_a_tick_that_moves_many_partitions_commits_them_together(tmp_path: Path) -> None:
    """A broker that leads a third of 300 partitions goes silent: the tick that fences it and
    moves its leaderships proposes every record at once (one Raft round trip each, one after
    another, took minutes at 2,000 partitions), and they apply in order."""
    ports = free_ports(1)
    voters = {0: Voter(0, "127.0.0.1", ports[0])}
    async with open_controller_bridge(0, voters, tmp_path, password=PASSWORD) as bridge:
        await bridge.wait_until(lambda b: b.is_active, 5)
        # The fake clock starts at the takeover's: a tick only unfences brokers that registered
        # in the active controller's tenure.
        now = [bridge.image.controller_epoch_start_ms]
        controller = Controller(
            bridge, ControllerConfig(session_timeout_ms=1_000), clock_ms=lambda: now[0]
        )
        epochs = await _register_three(bridge, now[0])
        await controller.tick_once()
        assert bridge.image.live_brokers() == {0, 1, 2}
        await controller.create_topic("t", 300, 3, configs={"replication.strategy": "isr"})
        partitions = bridge.image.topics["t"].partitions
        assert sum(state.leader == 0 for state in partitions.values()) >= 90
        now[0] += 2_000
        for broker_id in (1, 2):
            controller.record_heartbeat(BrokerHeartbeat(broker_id, epochs[broker_id], now[0]))
        entries = bridge.entries_submitted
        with trio.fail_after(30):
            records = await controller.tick_once()
        assert len(records) >= 91  # the fence, then a new leader for each of its partitions
        assert bridge.in_flight_max == len(records)
        # ~300 records (a third of the partitions move, every ISR shrinks), ~57 KB: two Raft
        # entries, not one per record.
        assert bridge.entries_submitted - entries == 2
        image = bridge.image
        assert image.live_brokers() == {1, 2}
        assert all(state.leader in (1, 2) for state in image.topics["t"].partitions.values())


async def test_a_heartbeat_with_reports_wakes_the_tick_loop(tmp_path: Path) -> None:
    """The votes of a quorum election come by heartbeat; the controller elects as soon as they
    arrive, not at its next tick (30 s here). Without the wake-up this waits the interval."""
    ports = free_ports(1)
    voters = {0: Voter(0, "127.0.0.1", ports[0])}
    async with open_controller_bridge(0, voters, tmp_path, password=PASSWORD) as bridge:
        await bridge.wait_until(lambda b: b.is_active, 5)
        # The fake clock starts at the takeover's: a tick only unfences brokers that registered
        # in the active controller's tenure.
        now = [bridge.image.controller_epoch_start_ms]
        config = ControllerConfig(session_timeout_ms=1_000, electors=electors_for(STRATEGIES))
        controller = Controller(bridge, config, tick_interval_s=30, clock_ms=lambda: now[0])
        epochs = await _register_three(bridge, now[0])
        await controller.tick_once()
        await controller.create_topic("q", 1, 3, configs={"replication.strategy": "quorum"})
        dead = bridge.image.topics["q"].partitions[0].leader
        alive = [b for b in range(3) if b != dead]
        now[0] += 2_000
        for broker_id in alive:
            controller.record_heartbeat(BrokerHeartbeat(broker_id, epochs[broker_id], now[0]))
        await controller.tick_once()  # fenced; the epoch ends, no leader until the votes
        state = bridge.image.topics["q"].partitions[0]
        assert state.leader == NO_LEADER
        async with trio.open_nursery() as nursery:
            await nursery.start(controller.run)
            await trio.sleep(0.1)  # its first tick has run and found no votes
            assert bridge.image.topics["q"].partitions[0].leader == NO_LEADER
            for broker_id in alive:
                report = ReplicaReport("q", 0, 0, 0, state.leader_epoch)
                heartbeat = BrokerHeartbeat(broker_id, epochs[broker_id], now[0], (report,))
                controller.record_heartbeat(heartbeat)
            await bridge.wait_until(
                lambda b: b.image.topics["q"].partitions[0].leader in alive, timeout_s=5
            )
            nursery.cancel_scope.cancel()


async def test_a_controller_cut_off_from_its_voters_answers_no_heartbeat(tmp_path: Path) -> None:
    """Raft's CheckQuorum for heartbeat answers. pysyncobj lets a leader that hears no
    majority believe it leads for ``leader_fallback_timeout`` (1.5 s); a heartbeat it answered
    meanwhile kept its own broker's leader lease alive that much longer (docs/cluster.md). It
    now refuses once an election timeout (0.6 s) has passed without a majority's answer,
    while pysyncobj still calls it leader."""
    async with _three_voters(tmp_path) as nodes:
        active = await _active(nodes)
        await active.bridge.wait_until(lambda b: b.image.live_brokers() == {0, 1, 2}, 10)
        me = active.bridge.node_id
        epoch = active.bridge.image.brokers[me].broker_epoch

        def beat() -> bool:
            heartbeat = BrokerHeartbeat(me, epoch, int(time.time() * 1000))
            return active.controller.record_heartbeat(heartbeat).fenced

        assert active.bridge.hears_a_majority
        assert not beat()
        for node in list(nodes.values()):
            if node is not active:
                await node.stop()
        stopped = trio.current_time()
        with trio.fail_after(5):
            while True:
                try:
                    beat()
                except NotController:
                    break
                await trio.sleep(0.01)
        print(f"\nrefused {trio.current_time() - stopped:.2f} s after the other voters stopped")
        assert active.bridge.is_leader  # not refused because pysyncobj stepped down
        assert not active.bridge.hears_a_majority


async def test_a_resigning_controller_hands_the_role_over_in_one_election(tmp_path: Path) -> None:
    """``resign`` (Raft's TimeoutNow) moves the leadership while the leader still runs: one
    election (the term goes up by one), won by a voter that still hears the old leader's
    heartbeats, through the pre-vote the others would refuse. Three hand-overs in a row; a
    voter that does not lead refuses at once."""
    async with _three_voters(tmp_path) as nodes:
        active = await _active(nodes)
        follower = next(n for n in nodes.values() if n is not active)
        assert not await follower.bridge.resign(1.0)
        for _ in range(3):
            term = active.bridge.raft.term
            with trio.fail_after(2):
                assert await active.bridge.resign(1.0)
            assert not active.bridge.is_leader
            successor = nodes[active.bridge.leader_id]  # type: ignore[index]
            assert successor is not active and successor.bridge.raft.term == term + 1
            with trio.fail_after(5):
                while not successor.bridge.is_active:  # noqa: ASYNC110 - pysyncobj state
                    await trio.sleep(0.01)
            active = successor
