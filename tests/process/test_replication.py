"""Issue 5 with real processes: acks=all through a leader SIGKILL, a paused old leader, and
min.insync.replicas with two brokers down."""

from __future__ import annotations

import time
from pathlib import Path

import pytest

from quorumq.cluster import Supervisor
from tests.process._procs import (
    STRATEGIES,
    History,
    check_nothing_acked_lost,
    create_topic,
    leader_under_load,
    open_cluster,
    produce_all,
    read_all,
    replica_log_bytes,
    view_from,
    wait_for,
    wait_leaders,
)


@pytest.mark.parametrize("configs", STRATEGIES)
def test_leader_sigkilled_under_acks_all_loses_no_acknowledged_record(
    cluster3: Supervisor, configs: dict[str, str]
) -> None:
    with leader_under_load(cluster3, "failover", configs) as (topic, info, history):
        victim = info.leader_id
        cluster3.kill(victim)
        survivors = [i for i in range(3) if i != victim]
        view = wait_leaders(cluster3, topic, 3, among=survivors)
        new = view.partition(topic, 0)
        assert new is not None and new.leader_id != victim
        assert new.leader_epoch > info.leader_epoch
    cluster3.restart(victim, timeout_s=60)
    check_nothing_acked_lost(cluster3, topic, history, "")


def test_paused_old_leader_is_fenced_and_truncated(cluster3: Supervisor) -> None:
    from kafka import KafkaProducer

    topic = f"paused-{time.monotonic_ns()}"
    create_topic(cluster3.bootstrap, topic, 1, 3, {"replication.strategy": "quorum"})
    info = wait_leaders(cluster3, topic, 1).partition(topic, 0)
    assert info is not None
    old = info.leader_id
    others = [i for i in range(3) if i != old]
    # A producer that knows only the old leader: its requests reach the paused process and wait
    # in its socket until it resumes.
    stale = KafkaProducer(bootstrap_servers=cluster3.address(old), acks="all", retries=0,
                          request_timeout_ms=20000, metadata_max_age_ms=600000,
                          max_block_ms=20000)  # fmt: skip
    stale.send(topic, b"before", partition=0).get(timeout=20)
    cluster3.pause(old)
    try:
        futures = [stale.send(topic, b"stale-%02d" % i, partition=0) for i in range(5)]
        new = wait_leaders(cluster3, topic, 1, among=others).partition(topic, 0)
        assert new is not None and new.leader_id in others
        assert new.leader_epoch > info.leader_epoch
        bootstrap = ",".join(cluster3.address(i) for i in others)
        history = History()
        produce_all(bootstrap, topic, [b"new-%03d" % i for i in range(50)], partitions=1,
                    spread_s=0.0, out=history)  # fmt: skip
        assert history.acked() == 50
    finally:
        cluster3.resume(old)
    # The old leader wakes up: none of the requests it holds is acknowledged.
    acked_stale = []
    for fut in futures:
        try:
            fut.get(timeout=30)
            acked_stale.append(fut)
        except Exception:  # NotLeader, fenced, timed out: all mean "not acked"
            pass
    stale.close(timeout=5)
    assert acked_stale == []
    # It rejoins as a follower, truncates any divergent tail and ends with the same log. (A
    # probe polling its segment files saw the stale records appended right after SIGCONT, then
    # gone: the old leader does take the held requests before it learns of the new epoch.)
    leader = new.leader_id
    wait_for(
        lambda: (
            replica_log_bytes(cluster3, old, topic, 0)
            == replica_log_bytes(cluster3, leader, topic, 0)
            or None
        ),
        30,
        "the old leader's log to match the new leader's",
    )
    records = read_all(bootstrap, topic, 1)
    values = [r.value for r in records]
    assert values[0] == b"before" and values[-50:] == [b"new-%03d" % i for i in range(50)]
    assert not [v for v in values if v.startswith(b"stale-")]
    assert view_from(cluster3, [old]) is not None


@pytest.mark.slow
def test_isr_min2_with_two_replicas_down_refuses_acks_all(tmp_path: Path) -> None:
    """5 brokers: with all 3 brokers voters, 2 down would lose the controller majority too."""
    from kafka import KafkaProducer
    from kafka.errors import KafkaError, NotEnoughReplicasAfterAppendError, NotEnoughReplicasError

    with open_cluster(5, tmp_path / "five") as sup:
        topic = "min-isr"
        create_topic(sup.bootstrap, topic, 1, 3,
                     {"replication.strategy": "isr", "min.insync.replicas": "2"})  # fmt: skip
        info = wait_leaders(sup, topic, 1).partition(topic, 0)
        assert info is not None
        leader = info.leader_id
        producer = KafkaProducer(bootstrap_servers=sup.bootstrap, acks="all", retries=0,
                                 request_timeout_ms=5000)  # fmt: skip
        producer.send(topic, b"ok", partition=0).get(timeout=20)
        for node_id in info.replicas:
            if node_id != leader:
                sup.kill(node_id)
        seen: dict[str, int] = {}
        acked_after = 0
        deadline = time.monotonic() + 40
        while time.monotonic() < deadline and "NotEnoughReplicasError" not in seen:
            try:
                producer.send(topic, b"refused?", partition=0).get(timeout=10)
                acked_after += 1
            except (NotEnoughReplicasError, NotEnoughReplicasAfterAppendError, KafkaError) as exc:
                seen[type(exc).__name__] = seen.get(type(exc).__name__, 0) + 1
            time.sleep(0.2)
        producer.close(timeout=5)
        assert "NotEnoughReplicasError" in seen, seen
        assert acked_after == 0, (acked_after, seen)


@pytest.mark.parametrize("configs", STRATEGIES)
def test_leader_sigtermed_under_acks_all_hands_over_before_it_exits(
    cluster3: Supervisor, configs: dict[str, str]
) -> None:
    """SIGTERM starts a controlled shutdown: the controller fences the broker and moves its
    leaderships while it still runs (over the wire, with the heartbeat MAC), then it exits.
    The survivors lead before a session of its silence could have passed, and nothing
    acknowledged is lost."""
    with leader_under_load(cluster3, "sigterm", configs) as (topic, info, history):
        victim = info.leader_id
        started = time.monotonic()
        assert cluster3.stop(victim) == 0
        stopped_s = time.monotonic() - started
        wait_leaders(cluster3, topic, 3, among=[i for i in range(3) if i != victim])
        led_s = time.monotonic() - started
    # Fencing for silence takes the 3 s session (CLUSTER_BROKER_ARGS) after the last of the
    # heartbeats, which come every 0.5 s: never sooner than 2.5 s after the stop.
    assert led_s < 2.5, (stopped_s, led_s)
    cluster3.restart(victim, timeout_s=60)
    check_nothing_acked_lost(
        cluster3, topic, history, f"stopped in {stopped_s:.2f} s, led in {led_s:.2f} s"
    )
