"""Controlled shutdown (KIP-631 WantShutDown): a stopping broker's leaderships move first.

The sessions here are 30 s long, so a leader that simply stopped would leave its partitions
leaderless for 30 s: every bound below is far shorter, and fails without the feature.
"""

from __future__ import annotations

import logging
from pathlib import Path

import trio

from quorumq.controller.image import NO_LEADER
from tests.cluster._clients import ProduceLog, consume_all, produce_confluent, produce_in_background
from tests.cluster._harness import BOTH_STRATEGIES, Cluster, open_cluster

log = logging.getLogger(__name__)

SESSION_MS = 30_000


@BOTH_STRATEGIES
async def test_a_leader_in_controlled_shutdown_hands_over_without_losing_acked_records(
    tmp_path: Path, configs: dict[str, str]
) -> None:
    async with open_cluster(
        tmp_path, session_timeout_ms=SESSION_MS, replica_lag_time_max_ms=SESSION_MS
    ) as cluster:
        await cluster.create_topic("events", 2, 3, configs)
        victim = cluster.leader_of("events", 0)
        values = [b"e%05d" % i for i in range(600)]
        async with trio.open_nursery() as nursery:
            produced = await produce_in_background(
                nursery, cluster.bootstrap, "events", values, partitions=2, spread_s=4.0
            )
            await cluster.wait_for(lambda: produced.count() >= 150, 20, "150 acks")
            started = trio.current_time()
            with trio.fail_after(5):
                assert await cluster.broker(victim).controlled_shutdown()
            moved_s = trio.current_time() - started
            # Still running, and every partition is led by another replica already (under
            # quorum too: the victim waits for the election that follows the epoch's end).
            # A victim that was the active controller has handed the role over: its successor
            # may still be claiming it.
            await cluster.wait_for(
                lambda: any(b.bridge and b.bridge.is_active for b in cluster.running()),
                5,
                "an active controller",
            )
            (active,) = [b for b in cluster.running() if b.bridge and b.bridge.is_active]
            image = active.bridge.image  # type: ignore[union-attr]
            assert image.brokers[victim].fenced
            assert all(
                state.leader not in (victim, NO_LEADER)
                for topic in image.topics.values()
                for state in topic.partitions.values()
            )
            await cluster.stop(victim)
            await cluster.wait_for(
                lambda: cluster.leader_of("events", 0) not in (-1, victim), 5, "new leader"
            )
            log.info(
                "controlled shutdown done after %.2f s, new leader after %.2f s",
                moved_s,
                trio.current_time() - started,
            )
        assert produced.count() == len(values), produced.errors
        acked = {v for _, _, v in produced.acked}
        survivor = next(m.port for m in cluster.members if m.broker is not None)
        records = await trio.to_thread.run_sync(
            lambda: consume_all(f"127.0.0.1:{survivor}", "events", 2, len(acked))
        )
        lost = acked - {r.value for r in records}
        assert not lost, f"{len(lost)} acknowledged records lost: {sorted(lost)[:10]}"


async def test_a_follower_in_controlled_shutdown_leaves_the_isr_before_it_stops(
    tmp_path: Path,
) -> None:
    """isr acks=all waits for every ISR member: a follower that stops while still in the ISR
    stalls it until ``replica.lag.time.max.ms`` drops it (30 s here). Shut down under control,
    it leaves the ISR first, and acks=all goes on at once."""
    async with open_cluster(
        tmp_path, session_timeout_ms=SESSION_MS, replica_lag_time_max_ms=SESSION_MS
    ) as cluster:
        await cluster.create_topic(
            "events", 1, 3, {"replication.strategy": "isr", "min.insync.replicas": "2"}
        )
        leader = cluster.leader_of("events", 0)
        follower = (leader + 1) % 3
        with trio.fail_after(5):
            assert await cluster.broker(follower).controlled_shutdown()
        await cluster.stop(follower)
        image = cluster.broker(leader).bridge.image  # type: ignore[union-attr]
        state = image.topics["events"].partitions[0]
        assert state.leader == leader and follower not in state.isr
        produced = ProduceLog()
        bootstrap = cluster.bootstrap
        with trio.fail_after(10):
            await trio.to_thread.run_sync(
                lambda: produce_confluent(
                    bootstrap, "events", [b"a", b"b", b"c"], partition=0, out=produced
                )
            )
        assert produced.count() == 3, produced.errors


async def test_brokers_shutting_down_together_all_finish_and_a_restarted_one_is_unfenced(
    tmp_path: Path,
) -> None:
    """Nobody is left to take over: every broker's controlled shutdown still ends at once
    (their partitions become leaderless, as they would when they stop). One asked to shut
    down stays fenced while it runs; one started again is a new incarnation that asked
    nothing, and is unfenced."""
    async with open_cluster(
        tmp_path, session_timeout_ms=SESSION_MS, replica_lag_time_max_ms=SESSION_MS
    ) as cluster:
        await cluster.create_topic("events", 3, 3, {"replication.strategy": "isr"})
        results: dict[int, bool] = {}

        async def shut_down(node_id: int) -> None:
            results[node_id] = await cluster.broker(node_id).controlled_shutdown()

        with trio.fail_after(3):
            async with trio.open_nursery() as nursery:
                for node_id in range(3):
                    nursery.start_soon(shut_down, node_id)
        assert results == {0: True, 1: True, 2: True}
        await cluster.stop(1)
        await cluster.start(1)
        with trio.fail_after(10):
            await cluster.broker(1).wait_registered()
        await cluster.wait_for(lambda: not _fenced(cluster, 1), 10, "broker 1 unfenced")
        await trio.sleep(0.5)  # a few controller ticks
        assert _fenced(cluster, 0) and _fenced(cluster, 2)


async def test_the_active_controller_hands_its_role_over_before_it_stops(tmp_path: Path) -> None:
    """A stopping broker that is the active controller hands the role to another voter
    (Raft's TimeoutNow) while it still runs: without it, the others elect a new controller only
    after its silence outlasts an election timeout and a pre-vote round. The pre-vote must not
    block the transfer's election (the third voter still hears the old leader)."""
    async with open_cluster(tmp_path, session_timeout_ms=SESSION_MS) as cluster:
        await cluster.create_topic("events", 1, 3)
        await cluster.wait_for(
            lambda: any(b.bridge and b.bridge.is_active for b in cluster.running()),
            10,
            "an active controller",
        )
        (active,) = [b for b in cluster.running() if b.bridge and b.bridge.is_active]
        assert active.bridge is not None
        with trio.fail_after(5):
            assert await active.controlled_shutdown()
        # Still running, and no longer the Raft leader: another voter is, by its own account.
        assert not active.bridge.is_leader
        others = [b for b in cluster.running() if b is not active]
        assert [b.bridge.is_leader for b in others].count(True) == 1  # type: ignore[union-attr]
        await cluster.wait_for(
            lambda: any(b.bridge.is_active for b in others),  # type: ignore[union-attr]
            5,
            "the new controller active",
        )
        await cluster.stop(active.config.node_id)
        # The new controller runs the cluster: the stopped broker's session is not waited out
        # for anything, and a new topic gets its leaders.
        await cluster.create_topic("after", 1, 2)


def _fenced(cluster: Cluster, node_id: int) -> bool:
    bridge = cluster.broker(0).bridge
    assert bridge is not None
    return bridge.image.brokers[node_id].fenced
