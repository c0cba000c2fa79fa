"""Leadership back to preferred replicas: ElectLeaders from a real admin client, and the
controller's periodic imbalance check."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
import trio

from quorumq.errors import ErrorCode
from tests.cluster._harness import Cluster, open_cluster


def _elect(bootstrap: str, election: str, partitions: list[tuple[str, int]] | None) -> Any:
    """confluent-kafka's AdminClient.elect_leaders: {(topic, partition): error code or 0}."""
    from confluent_kafka import ElectionType, TopicPartition
    from confluent_kafka.admin import AdminClient

    admin = AdminClient({"bootstrap.servers": bootstrap, "log_level": 0})
    chosen = None if partitions is None else [TopicPartition(t, i) for t, i in partitions]
    future = admin.elect_leaders(ElectionType[election], chosen)
    result = future.result(timeout=30)
    return {
        (tp.topic, tp.partition): 0 if error is None else error.code()
        for tp, error in result.items()
    }


def _topic(cluster: Cluster, topic: str) -> Any:
    """The topic's state in the image of a running broker that has it (a broker just
    restarted may not have replayed it yet)."""
    for broker in cluster.running():
        if broker.bridge is not None and topic in broker.bridge.image.topics:
            return broker.bridge.image.topics[topic]
    raise AssertionError(f"no running broker knows {topic!r}")


def _leaders(cluster: Cluster, topic: str) -> dict[int, tuple[int, tuple[int, ...]]]:
    """partition → (leader, replicas)."""
    return {i: (p.leader, p.replicas) for i, p in _topic(cluster, topic).partitions.items()}


async def _fail_over_from(
    cluster: Cluster, topic: str, victim: int, partitions: int, *, isr: bool = True
) -> None:
    """Stops ``victim`` until it leads nothing, starts it again, and (``isr``) waits until it
    is back in every ISR, so a preferred election may pick it. A ``quorum`` topic's ISR in the
    image is advisory and does not grow back: there the election itself waits."""
    await cluster.stop(victim)
    await cluster.wait_for(
        lambda: all(leader != victim for leader, _ in _leaders(cluster, topic).values()),
        15,
        "leadership moved off the stopped broker",
    )
    await cluster.start(victim)

    def back_in_sync() -> bool:
        return all(victim in p.isr for p in _topic(cluster, topic).partitions.values())

    if isr:
        await cluster.wait_for(back_in_sync, 20, "the restarted broker back in every ISR")
    await cluster.wait_leaders(topic, partitions)


@pytest.mark.parametrize("strategy", ["isr", "quorum"])
async def test_elect_leaders_moves_leadership_back_to_preferred_replicas(
    tmp_path: Path, strategy: str
) -> None:
    async with open_cluster(tmp_path, auto_leader_rebalance_enable=False) as cluster:
        await cluster.create_topic("t", 3, 3, {"replication.strategy": strategy})
        leaders = _leaders(cluster, "t")
        assert all(leader == replicas[0] for leader, replicas in leaders.values())
        victim = leaders[0][0]
        await _fail_over_from(cluster, "t", victim, 3, isr=strategy == "isr")
        led_by_victim = [i for i, (_, replicas) in leaders.items() if replicas[0] == victim]
        assert all(_leaders(cluster, "t")[i][0] != victim for i in led_by_victim)
        bootstrap = f"127.0.0.1:{cluster.members[(victim + 1) % 3].port}"
        wanted = [("t", i) for i in led_by_victim]
        result: dict[tuple[str, int], int] = {}
        with trio.fail_after(40):
            while True:
                # A quorum election waits until the preferred replica has reported the new
                # leader epoch (a heartbeat away): PREFERRED_LEADER_NOT_AVAILABLE until then.
                result = await trio.to_thread.run_sync(_elect, bootstrap, "PREFERRED", wanted)
                if set(result.values()) != {ErrorCode.PREFERRED_LEADER_NOT_AVAILABLE}:
                    break
                await trio.sleep(0.3)
        assert result == dict.fromkeys(wanted, 0)
        # Answered once the controller's image has the new leaders; every broker's image has
        # them a Raft append later.
        await cluster.wait_leaders("t", 3)
        assert all(_leaders(cluster, "t")[i][0] == victim for i in led_by_victim)
        # Again: nothing to do. An unknown partition is named as such.
        again = await trio.to_thread.run_sync(_elect, bootstrap, "PREFERRED", [*wanted, ("t", 7)])
        assert again == {
            **dict.fromkeys(wanted, ErrorCode.ELECTION_NOT_NEEDED),
            ("t", 7): ErrorCode.UNKNOWN_TOPIC_OR_PARTITION,
        }
        # Unclean: every partition has a live leader, so none is needed.
        unclean = await trio.to_thread.run_sync(_elect, bootstrap, "UNCLEAN", None)
        assert set(unclean.values()) == {ErrorCode.ELECTION_NOT_NEEDED}
        assert len(unclean) >= 3


async def test_the_controller_moves_leadership_back_by_itself(tmp_path: Path) -> None:
    """auto.leader.rebalance.enable (Kafka's default): a broker that failed and came back
    leads its preferred partitions again after the next imbalance check (a quorum topic, the
    default: the election waits for fresh reports)."""
    async with open_cluster(tmp_path, leader_imbalance_check_interval_ms=500) as cluster:
        await cluster.create_topic("t", 6, 3)
        victim = _leaders(cluster, "t")[0][0]
        await _fail_over_from(cluster, "t", victim, 6, isr=False)
        await cluster.wait_for(
            lambda: all(
                leader == replicas[0] for leader, replicas in _leaders(cluster, "t").values()
            ),
            15,
            "every partition led by its preferred replica",
        )
        await cluster.wait_leaders("t", 6)


async def test_a_quorum_preferred_election_under_load_is_won_by_the_preferred_replica(
    tmp_path: Path,
) -> None:
    """Leadership transfer (Raft's): the leader holds writes until the preferred replica has
    its whole log, and only then does the election run, so the preferred replica wins it even
    when it was the slowest of the three. Without the transfer another replica won here
    (PREFERRED_LEADER_NOT_AVAILABLE): the preferred one was behind both others when the epoch
    ended."""
    from quorumq.client import Producer

    # A long transfer timeout: the election must run when the leader says "drained", not
    # when the controller gives up waiting.
    async with open_cluster(
        tmp_path, auto_leader_rebalance_enable=False, leader_transfer_timeout_ms=20_000
    ) as cluster:
        await cluster.create_topic("t", 1, 3, {"replication.strategy": "quorum"})
        preferred = _leaders(cluster, "t")[0][1][0]
        await _fail_over_from(cluster, "t", preferred, 1, isr=False)
        leader = cluster.leader_of("t", 0)
        assert leader != preferred
        # The preferred replica lags: each of its requests to the leader waits 150 ms first.
        # Its fetcher for the new leader starts when its image names that leader, which can
        # come a moment after the test's own view of the failover.
        follower = cluster.broker(preferred)
        await cluster.wait_for(lambda: leader in follower.fetchers, 10, "a fetcher for the leader")
        fetcher = follower.fetchers[leader]
        request = fetcher._request

        async def slow(*args: Any) -> Any:
            await trio.sleep(0.15)
            return await request(*args)

        fetcher._request = slow  # type: ignore[method-assign]
        sent = 0
        refused = 0
        stop = trio.Event()

        async def produce() -> None:
            nonlocal sent, refused
            async with Producer(
                cluster.bootstrap, acks=1, linger_ms=0, retry_backoff_ms=20
            ) as producer:
                while not stop.is_set():
                    try:
                        await producer.send("t", b"x" * 100, partition=0)
                        sent += 1
                    except Exception:  # retries ran out during the election
                        refused += 1
                    await trio.sleep(0.005)

        async with trio.open_nursery() as nursery:
            nursery.start_soon(produce)
            await cluster.wait_for(lambda: sent >= 100, 15, "the producer under way")
            bootstrap = f"127.0.0.1:{cluster.members[leader].port}"
            started = trio.current_time()
            result = await trio.to_thread.run_sync(_elect, bootstrap, "PREFERRED", [("t", 0)])
            elapsed = trio.current_time() - started
            after = sent
            await cluster.wait_for(lambda: sent >= after + 50, 15, "writes to the new leader")
            stop.set()
        assert result == {("t", 0): 0}
        assert elapsed < 10, elapsed
        assert cluster.leader_of("t", 0) == preferred
        assert refused == 0


async def test_elect_leaders_sent_to_a_broker_that_is_not_the_active_controller(
    tmp_path: Path,
) -> None:
    """Any broker takes ElectLeaders and hands it to its own voter's controller service. A
    voter that is not the active controller has no heartbeats to tell a leader of a transfer
    with, so it proposes the election at once, as before transfers existed."""
    from quorumq.errors import PreferredLeaderNotAvailable
    from quorumq.protocol import ELECTION_PREFERRED

    async with open_cluster(tmp_path, auto_leader_rebalance_enable=False) as cluster:
        await cluster.create_topic("t", 1, 3, {"replication.strategy": "quorum"})
        preferred = _leaders(cluster, "t")[0][1][0]
        await _fail_over_from(cluster, "t", preferred, 1, isr=False)

        def preferred_live() -> bool:
            image = cluster.running()[0].bridge.image  # type: ignore[union-attr]
            return preferred in image.live_brokers()

        await cluster.wait_for(preferred_live, 15, "the restarted broker unfenced")
        passive = next(
            b
            for b in cluster.running()
            if b.controller is not None and b.bridge is not None and not b.bridge.is_active
        )
        assert passive.controller is not None
        results = await passive.controller.elect_leaders(
            ELECTION_PREFERRED, [("t", 0)], timeout_s=10
        )
        result = results[("t", 0)]
        assert result is None or isinstance(result, PreferredLeaderNotAvailable), result
        assert not isinstance(result, PreferredLeaderNotAvailable) or "not live" not in str(result)
        assert passive.controller.transfers.pending == {}
