"""quorumq.testing.Cluster with one broker: start, topics, kill/restart, nothing left behind."""

from __future__ import annotations

import socket
from pathlib import Path

import pytest
import trio

from quorumq.client import Consumer, Producer
from quorumq.errors import InvalidPartitions, RequestTimedOut, TopicAlreadyExists
from quorumq.log import CLEAN_SHUTDOWN_FILE
from quorumq.testing import Cluster


def port_is_closed(port: int) -> bool:
    with socket.socket() as s:
        return s.connect_ex(("127.0.0.1", port)) != 0


async def produce(bootstrap: str, topic: str, count: int, partitions: int = 1) -> None:
    async with Producer(bootstrap, acks="all", linger_ms=0) as producer:
        for i in range(count):
            await producer.send(topic, b"value-%d" % i, key=b"k", partition=i % partitions)


async def consume_all(bootstrap: str, topic: str, partitions: int, count: int) -> list[bytes]:
    values: list[bytes] = []
    async with Consumer(bootstrap, auto_offset_reset="earliest", fetch_max_wait_ms=100) as c:
        c.assign([(topic, i) for i in range(partitions)])
        with trio.fail_after(10):
            while len(values) < count:
                for records in (await c.getmany(timeout_ms=200)).values():
                    values.extend(r.value or b"" for r in records)
    return values


async def test_single_broker_round_trip_and_cleanup(tmp_path: Path) -> None:
    async with Cluster(tmp_path=tmp_path) as cluster:
        root = cluster.root
        assert root is not None and root.parent == tmp_path and root.is_dir()
        (port,) = cluster.ports
        assert cluster.bootstrap == f"127.0.0.1:{port}"
        assert cluster.running == [0]
        await cluster.create_topic("orders", partitions=3)
        await produce(cluster.bootstrap, "orders", 9, partitions=3)
        values = await consume_all(cluster.bootstrap, "orders", 3, 9)
        assert sorted(values) == sorted(b"value-%d" % i for i in range(9))
        await cluster.wait_ready()
    assert not root.exists()
    assert port_is_closed(port)
    assert cluster.root is None


async def test_default_tmp_dir_is_removed_and_tasks_end() -> None:
    tasks_before = len(trio.lowlevel.current_task().child_nurseries)
    async with Cluster() as cluster:
        root = cluster.root
        assert root is not None and root.is_dir()
    assert not root.exists()
    assert len(trio.lowlevel.current_task().child_nurseries) == tasks_before
    with pytest.raises(RuntimeError, match="not running"):
        await cluster.kill_broker(0)


async def test_keep_data_leaves_the_directory(tmp_path: Path) -> None:
    async with Cluster(tmp_path=tmp_path, keep_data=True) as cluster:
        await cluster.create_topic("kept")
        root = cluster.root
    assert root is not None and (root / "broker-0").is_dir()


async def test_kill_is_unclean_and_restart_recovers_acknowledged_records(tmp_path: Path) -> None:
    async with Cluster(tmp_path=tmp_path) as cluster:
        await cluster.create_topic("events", partitions=2)
        await produce(cluster.bootstrap, "events", 20, partitions=2)
        port = cluster.ports[0]
        partition_dir = cluster.data_dir(0) / "events-0"

        await cluster.kill_broker(0)
        assert cluster.running == []
        assert port_is_closed(port)
        assert not (partition_dir / CLEAN_SHUTDOWN_FILE).exists()  # as a crash leaves it
        with pytest.raises(RuntimeError, match="not running"):
            cluster.broker(0)

        await cluster.restart_broker(0)
        assert cluster.ports == [port]  # same port: the client's bootstrap stays valid
        await cluster.wait_ready()
        values = await consume_all(cluster.bootstrap, "events", 2, 20)
        assert sorted(values) == sorted(b"value-%d" % i for i in range(20))
        # And it keeps taking writes after recovery.
        await produce(cluster.bootstrap, "events", 2, partitions=2)


async def test_stop_is_clean_and_restart_of_a_running_broker_kills_it_first(
    tmp_path: Path,
) -> None:
    async with Cluster(tmp_path=tmp_path) as cluster:
        await cluster.create_topic("events")
        await produce(cluster.bootstrap, "events", 3)
        partition_dir = cluster.data_dir(0) / "events-0"
        await cluster.stop_broker(0)
        assert (partition_dir / CLEAN_SHUTDOWN_FILE).exists()
        await cluster.restart_broker(0)
        first = cluster.broker(0)
        await cluster.restart_broker(0)  # running: killed, then started
        assert cluster.broker(0) is not first
        assert await consume_all(cluster.bootstrap, "events", 1, 3) == [
            b"value-0",
            b"value-1",
            b"value-2",
        ]


async def test_create_topic_errors_are_typed() -> None:
    async with Cluster() as cluster:
        await cluster.create_topic("twice", config={"cleanup.policy": "compact"})
        with pytest.raises(TopicAlreadyExists):
            await cluster.create_topic("twice")
        with pytest.raises(InvalidPartitions):
            await cluster.create_topic("none", partitions=0)


async def test_wait_ready_names_what_is_missing() -> None:
    async with Cluster() as cluster:
        await cluster.kill_broker(0)
        with pytest.raises(RequestTimedOut, match="no broker is running"):
            await cluster.wait_ready(timeout_s=0.2)


async def test_broker_config_overrides_reach_the_broker() -> None:
    async with Cluster(auto_create_topics_enable=False, num_partitions=4) as cluster:
        config = cluster.broker(0).config
        assert not config.auto_create_topics_enable and config.num_partitions == 4
        assert config.group_initial_rebalance_delay_ms == 0  # the testing default
    async with Cluster(group_initial_rebalance_delay_ms=50) as cluster:
        assert cluster.broker(0).config.group_initial_rebalance_delay_ms == 50


def test_bad_arguments_are_refused_before_anything_starts() -> None:
    with pytest.raises(ValueError, match="at least one broker"):
        Cluster(brokers=0)
    with pytest.raises(ValueError, match="replication"):
        Cluster(replication="raft")
    with pytest.raises(ValueError, match="port"):
        Cluster(port=9092)
    with pytest.raises(ValueError, match="unknown broker config"):
        Cluster(no_such_setting=1)


async def test_user_errors_propagate_and_still_clean_up(tmp_path: Path) -> None:
    with pytest.raises(KeyError):
        async with Cluster(tmp_path=tmp_path) as cluster:
            root, port = cluster.root, cluster.ports[0]
            raise KeyError("user bug")
    assert root is not None and not root.exists()
    assert port_is_closed(port)


async def test_a_broker_that_cannot_start_fails_the_block_and_cleans_up(tmp_path: Path) -> None:
    cluster = Cluster(tmp_path=tmp_path)
    async with cluster:
        root, port = cluster.root, cluster.ports[0]
        await cluster.stop_broker(0)
        # Another process takes the port meanwhile: the restart says so.
        with socket.socket() as squatter:
            squatter.bind(("127.0.0.1", port))
            squatter.listen()
            with pytest.raises(OSError, match="address already in use"):
                await cluster.restart_broker(0)
    assert root is not None and not root.exists()
    async with cluster:  # a Cluster can be entered again after it exited
        assert cluster.running == [0]
