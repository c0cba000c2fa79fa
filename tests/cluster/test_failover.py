"""Failover with acks=all: stop the leader mid-stream, nothing acknowledged is lost."""

from __future__ import annotations

import logging
from pathlib import Path

import pytest
import trio

from quorumq.broker import _cluster as cluster_module
from quorumq.broker._replica import ReplicaPartition
from tests.cluster._clients import ProduceLog, consume_all, produce_confluent, produce_in_background
from tests.cluster._harness import BOTH_STRATEGIES, open_cluster

log = logging.getLogger(__name__)


@BOTH_STRATEGIES
async def test_leader_stopped_mid_stream_loses_no_acknowledged_record(
    tmp_path: Path, configs: dict[str, str]
) -> None:
    async with open_cluster(tmp_path) as cluster:
        await cluster.create_topic("events", 2, 3, configs)
        victim = cluster.leader_of("events", 0)
        epoch_before = cluster.broker(victim).partitions[("events", 0)].leader_epoch
        values = [b"e%05d" % i for i in range(600)]
        async with trio.open_nursery() as nursery:
            produced = await produce_in_background(
                nursery, cluster.bootstrap, "events", values, partitions=2, spread_s=4.0
            )
            await cluster.wait_for(lambda: produced.count() >= 150, 20, "150 acks")
            started = trio.current_time()
            await cluster.stop(victim)
            await cluster.wait_for(
                lambda: cluster.leader_of("events", 0) not in (-1, victim), 20, "new leader"
            )
            log.info("new leader after %.2f s", trio.current_time() - started)
        new_leader = cluster.leader_of("events", 0)
        replica = cluster.broker(new_leader).partitions[("events", 0)]
        assert isinstance(replica, ReplicaPartition)
        assert replica.leader_epoch > epoch_before
        acked = {v for _, _, v in produced.acked}
        assert len(acked) > 150
        survivor = next(m.port for m in cluster.members if m.broker is not None)
        records = await trio.to_thread.run_sync(
            lambda: consume_all(f"127.0.0.1:{survivor}", "events", 2, len(acked))
        )
        seen = {r.value for r in records}
        lost = acked - seen
        assert not lost, f"{len(lost)} acknowledged records lost: {sorted(lost)[:10]}"


async def test_active_controller_lost_then_rejoins(tmp_path: Path) -> None:
    async with open_cluster(tmp_path) as cluster:
        await cluster.create_topic("before", 3, 3)
        active = [b.config.node_id for b in cluster.running() if b.bridge and b.bridge.is_active]
        assert len(active) == 1
        started = trio.current_time()
        await cluster.stop(active[0])
        await cluster.wait_for(
            lambda: any(b.bridge is not None and b.bridge.is_active for b in cluster.running()),
            10,
            "a new active controller",
        )
        log.info("new active controller after %.2f s", trio.current_time() - started)
        # Once the new controller fences the lost broker, topic creation works again and
        # places replicas on live brokers only.
        survivor = cluster.running()[0]
        await cluster.wait_for(
            lambda: survivor.bridge is not None and survivor.bridge.image.brokers[active[0]].fenced,
            10,
            "the lost broker fenced",
        )
        await cluster.create_topic("after", 2, 2)
        image = survivor.bridge.image  # type: ignore[union-attr]
        assert all(active[0] not in p.replicas for p in image.topics["after"].partitions.values())
        await cluster.wait_leaders("before", 3)
        values = [b"c%03d" % i for i in range(60)]
        produced = await trio.to_thread.run_sync(
            lambda: produce_confluent(
                cluster.bootstrap, "before", values, partitions=3, out=ProduceLog()
            )
        )
        assert len(produced.acked) == len(values)
        # The stopped broker comes back: unfenced, it follows and catches up.
        await cluster.start(active[0])
        returning = cluster.broker(active[0])
        await cluster.wait_for(
            lambda: all(
                isinstance(r := returning.partitions.get(("before", i)), ReplicaPartition)
                and r.log_end_offset
                == cluster.broker(cluster.leader_of("before", i))
                .partitions[("before", i)]
                .log_end_offset
                for i in range(3)
            ),
            20,
            "the returning broker catches up",
        )
        records = await trio.to_thread.run_sync(
            lambda: consume_all(cluster.bootstrap, "before", 3, len(values))
        )
        assert sorted(r.value for r in records) == values


async def test_isr_shrinks_and_expands_through_the_controller(tmp_path: Path) -> None:
    async with open_cluster(tmp_path) as cluster:
        await cluster.create_topic(
            "isr", 1, 3, {"replication.strategy": "isr", "min.insync.replicas": "2"}
        )
        leader = cluster.leader_of("isr", 0)
        follower = (leader + 1) % 3
        bridge = cluster.broker(leader).bridge
        assert bridge is not None

        def image_isr() -> tuple[int, ...]:
            return tuple(sorted(bridge.image.topics["isr"].partitions[0].isr))

        await cluster.stop(follower)
        await cluster.wait_for(lambda: follower not in image_isr(), 15, "ISR shrinks")
        values = [b"s%03d" % i for i in range(50)]
        produced = await trio.to_thread.run_sync(
            lambda: produce_confluent(cluster.bootstrap, "isr", values, out=ProduceLog())
        )
        assert len(produced.acked) == len(values)  # two in-sync replicas: acks=all works
        await cluster.start(follower)
        await cluster.wait_for(lambda: image_isr() == (0, 1, 2), 20, "ISR expands back")
        back = cluster.broker(follower).partitions[("isr", 0)]
        lead = cluster.broker(leader).partitions[("isr", 0)]
        assert back.log_end_offset == lead.log_end_offset


async def test_heartbeats_report_only_leaderless_replicas(tmp_path: Path) -> None:
    """Replica reports travel in every heartbeat to the active controller, and the quorum
    elector reads only those made after a partition's epoch ended: brokers report leaderless
    replicas only, and a quorum failover still elects from those reports."""
    async with open_cluster(tmp_path) as cluster:
        await cluster.create_topic("q", 12, 3, {"replication.strategy": "quorum"})

        def reported() -> int:
            for broker in cluster.running():
                bridge, controller = broker.bridge, broker.controller
                if bridge is not None and controller is not None and bridge.is_active:
                    return controller.liveness.reports_held
            return -1

        await cluster.wait_for(lambda: reported() == 0, 10, "heartbeats without reports")
        victim = cluster.leader_of("q", 0)
        led = [i for i in range(12) if cluster.leader_of("q", i) == victim]
        await cluster.stop(victim)
        await cluster.wait_for(
            lambda: all(cluster.leader_of("q", i) not in (-1, victim) for i in led),
            20,
            "new leaders from fresh reports",
        )
        await cluster.wait_for(lambda: reported() == 0, 10, "reports gone once led again")


async def test_a_large_topic_is_opened_in_batches_between_which_the_broker_serves(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Opening a replica creates its files; a broker given more new replicas than
    OPENS_PER_PASS (here 50, for a small test) opens them that many at a time, yielding in
    between (one pass for 2,000 blocked the event loop for seconds, enough to miss
    heartbeats), and every partition still gets its leader."""
    monkeypatch.setattr(cluster_module, "OPENS_PER_PASS", 50)
    async with open_cluster(tmp_path) as cluster:
        await cluster.create_topic("wide", 150, 3)
        await cluster.wait_for(
            lambda: all(cluster.leader_of("wide", i) >= 0 for i in range(150)), 60, "all led"
        )
        for broker in cluster.running():
            assert sum(key[0] == "wide" for key in broker.partitions) == 150
            assert broker.most_opened_in_one_pass == 50


async def test_wakes_do_not_cut_the_back_off_from_a_dead_leader_short(tmp_path: Path) -> None:
    """Until the dead leader's broker is fenced, its followers keep trying to reconnect, with
    a growing back-off. Image changes wake the fetcher (that is how it learns it follows
    nothing any more), and each wake used to be an immediate reconnect and a log line: dozens
    a second during a large failover."""
    async with open_cluster(tmp_path, session_timeout_ms=6000) as cluster:
        await cluster.create_topic("t", 3, 3)
        victim = cluster.leader_of("t", 0)
        survivor = cluster.broker((victim + 1) % 3)
        fetcher = survivor.fetchers[victim]
        attempts: list[float] = []
        connect = fetcher._connect

        def counting(*args: object, **kwargs: object) -> object:
            attempts.append(trio.current_time())
            return connect(*args, **kwargs)

        fetcher._connect = counting
        await cluster.stop(victim)
        for _ in range(60):  # 1.2 s of wakes, every 20 ms, well inside the session timeout
            fetcher.wake()
            await trio.sleep(0.02)
        # Back-offs of 0.05, 0.1, 0.2, 0.4 and 0.8 s: at most 6 attempts in 1.2 s.
        assert 1 <= len(attempts) <= 6, len(attempts)
