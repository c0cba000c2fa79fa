"""ThreadedCluster: a cluster in a background thread for blocking clients (kafka-python here)."""

from __future__ import annotations

import socket
import threading
from pathlib import Path

import pytest
from kafka import KafkaConsumer, KafkaProducer, TopicPartition

from quorumq.testing import ThreadedCluster


def port_is_closed(port: int) -> bool:
    with socket.socket() as s:
        return s.connect_ex(("127.0.0.1", port)) != 0


def produce(bootstrap: str, topic: str, values: list[bytes]) -> None:
    producer = KafkaProducer(bootstrap_servers=bootstrap, acks="all", linger_ms=0)
    try:
        for value in values:
            producer.send(topic, value).get(timeout=10)
    finally:
        producer.close(timeout=5)


def consume(bootstrap: str, topic: str, count: int) -> list[bytes]:
    consumer = KafkaConsumer(
        bootstrap_servers=bootstrap,
        auto_offset_reset="earliest",
        enable_auto_commit=False,
        consumer_timeout_ms=5000,
    )
    try:
        consumer.assign([TopicPartition(topic, 0)])
        values: list[bytes] = []
        for message in consumer:
            values.append(message.value)
            if len(values) == count:
                break
        return values
    finally:
        consumer.close()


def test_kafka_python_against_a_threaded_cluster_with_a_restart(tmp_path: Path) -> None:
    with ThreadedCluster(tmp_path=tmp_path) as cluster:
        root = cluster.cluster.root
        assert root is not None and root.is_dir()
        cluster.create_topic("sync-orders")
        produce(cluster.bootstrap, "sync-orders", [b"a", b"b"])
        cluster.kill_broker(0)
        assert cluster.running == []
        cluster.restart_broker(0)
        cluster.wait_ready()
        produce(cluster.bootstrap, "sync-orders", [b"c"])
        assert consume(cluster.bootstrap, "sync-orders", 3) == [b"a", b"b", b"c"]
        port = cluster.ports[0]
    assert port_is_closed(port)
    assert not root.exists()
    assert "quorumq-testing-cluster" not in {t.name for t in threading.enumerate()}


def test_threaded_errors_reach_the_caller() -> None:
    with ThreadedCluster() as cluster:
        with pytest.raises(IndexError, match="no broker 5"):
            cluster.kill_broker(5)
        cluster.create_topic("once")
        with pytest.raises(Exception, match="once"):
            cluster.create_topic("once")
    cluster.close()  # idempotent
    with pytest.raises(RuntimeError, match="not running"):
        cluster.wait_ready()


def test_threaded_start_failure_is_raised_in_the_caller() -> None:
    with pytest.raises(ValueError, match="unknown broker config"):
        ThreadedCluster(nonsense=True)


def test_a_failed_start_raises_in_the_caller_and_ends_the_thread(tmp_path: Path) -> None:
    not_a_dir = tmp_path / "file"
    not_a_dir.write_text("")
    with pytest.raises(OSError):
        ThreadedCluster(tmp_path=not_a_dir).__enter__()
    assert "quorumq-testing-cluster" not in {t.name for t in threading.enumerate()}
