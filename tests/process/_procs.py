"""Helpers for tests with separate broker processes (the Supervisor) and sync Kafka clients."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import attrs
import pytest

from quorumq.bench import CLUSTER_BROKER_ARGS
from quorumq.chaos._history import ProduceAttempt, ReadRecord, check_history
from quorumq.cluster import ClusterError, ClusterView, Supervisor, cluster_view, free_port_block

STRATEGIES = [
    pytest.param({"replication.strategy": "quorum"}, id="quorum"),
    pytest.param(
        {"replication.strategy": "isr", "min.insync.replicas": "2"},
        id="isr-min2",
        marks=pytest.mark.slow,
    ),
]
"""The topic configs the process tests run under: ``quorum`` by default, ``isr`` (with
``min.insync.replicas=2``) under ``-m slow``."""


@contextmanager
def open_cluster(brokers: int = 3, data_dir: Path | None = None) -> Iterator[Supervisor]:
    """``brokers`` cluster-mode broker processes on free loopback ports, stopped on exit."""
    sup = Supervisor(
        brokers,
        base_port=free_port_block(brokers),
        data_dir=data_dir,
        cluster_mode=True,
        broker_args=CLUSTER_BROKER_ARGS,
    )
    with sup:
        sup.start(timeout_s=90)
        yield sup


def ensure_running(sup: Supervisor) -> None:
    """Restarts any broker a previous test left dead or paused (tests share one cluster)."""
    for handle in sup.brokers:
        if handle.paused:
            sup.resume(handle.spec.node_id)
        if not handle.alive():
            sup.restart(handle.spec.node_id, timeout_s=90)
    sup.wait_ready(timeout_s=60)


def wait_for(predicate: Callable[[], Any], timeout_s: float = 30.0, what: str = "") -> Any:
    """Polls ``predicate`` every 50 ms until it returns something but None or False (0 counts:
    it is a broker id); returns that."""
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        value = predicate()
        if value is not None and value is not False:
            return value
        time.sleep(0.05)
    raise AssertionError(f"timed out after {timeout_s:.0f} s waiting for {what or predicate}")


def view_from(sup: Supervisor, node_ids: Sequence[int], topics: Sequence[str] | None = None
              ) -> ClusterView | None:  # fmt: skip
    """Metadata from the first of ``node_ids`` that answers (None if none does)."""
    for node_id in node_ids:
        try:
            return cluster_view(sup.address(node_id), topics, timeout_s=2)
        except ConnectionError:
            continue
    return None


def wait_leaders(
    sup: Supervisor, topic: str, partitions: int, *, among: Sequence[int] | None = None,
    timeout_s: float = 30.0,
) -> ClusterView:  # fmt: skip
    """Waits until every partition has a live leader (one of ``among``) and returns the view."""
    askers = list(among) if among is not None else sup.running()

    def ready() -> ClusterView | None:
        try:
            view = view_from(sup, askers, [topic])
        except ClusterError:
            return None
        if view is None:
            return None
        infos = [view.partition(topic, i) for i in range(partitions)]
        live = view.live_ids() & set(askers)
        if all(info is not None and info.leader_id in live for info in infos):
            return view
        return None

    return wait_for(ready, timeout_s, f"leaders of {topic} among {askers}")


def create_topic(bootstrap: str, topic: str, partitions: int, rf: int,
                 configs: dict[str, str] | None = None, timeout_s: float = 30.0) -> None:  # fmt: skip
    """CreateTopics through confluent-kafka's admin client, retried while the cluster settles."""
    from confluent_kafka import KafkaError, KafkaException
    from confluent_kafka.admin import AdminClient, NewTopic

    deadline = time.monotonic() + timeout_s
    last = ""
    while time.monotonic() < deadline:
        admin = AdminClient({"bootstrap.servers": bootstrap, "log_level": 0})
        fut = admin.create_topics(
            [NewTopic(topic, partitions, rf, config=configs or {})],
            operation_timeout=5, request_timeout=5,
        )[topic]  # fmt: skip
        try:
            fut.result(timeout=10)
            return
        except KafkaException as exc:
            if exc.args[0].code() == KafkaError.TOPIC_ALREADY_EXISTS:
                return
            last = str(exc)
        time.sleep(0.2)
    raise AssertionError(f"could not create {topic}: {last}")


@attrs.define
class History:
    """Every produce attempt of a confluent-kafka producer thread, for the history checker."""

    attempts: list[ProduceAttempt] = attrs.Factory(list)
    errors: dict[str, int] = attrs.Factory(dict)
    lock: threading.Lock = attrs.Factory(threading.Lock)

    def acked(self) -> int:
        with self.lock:
            return sum(1 for a in self.attempts if a.acked)


def produce_all(
    bootstrap: str, topic: str, values: Sequence[bytes], *, partitions: int, spread_s: float,
    out: History, timeout_s: float = 45.0,
) -> None:  # fmt: skip
    """acks=all, idempotence off, round-robin over ``partitions``; records each outcome."""
    from confluent_kafka import Producer

    producer = Producer({
        "bootstrap.servers": bootstrap, "acks": "all", "enable.idempotence": False,
        "linger.ms": 2, "message.timeout.ms": 30000, "request.timeout.ms": 10000,
        "retry.backoff.ms": 50, "topic.metadata.refresh.interval.ms": 500,
        "socket.timeout.ms": 5000, "log_level": 0,
    })  # fmt: skip

    def on_delivery(err: Any, msg: Any) -> None:
        with out.lock:
            if err is None:
                out.attempts.append(
                    ProduceAttempt(None, msg.value(), True, msg.partition(), msg.offset())
                )
            else:
                out.attempts.append(ProduceAttempt(None, msg.value(), False))
                out.errors[err.name()] = out.errors.get(err.name(), 0) + 1

    pause = spread_s / max(len(values), 1)
    deadline = time.monotonic() + timeout_s
    for i, value in enumerate(values):
        if time.monotonic() > deadline:
            break
        while True:
            try:
                producer.produce(topic, value, partition=i % partitions, on_delivery=on_delivery)
                break
            except BufferError:
                producer.poll(0.05)
        producer.poll(0)
        if pause:
            time.sleep(pause)
    producer.flush(max(1.0, deadline - time.monotonic()))


def read_all(bootstrap: str, topic: str, partitions: int, timeout_s: float = 30.0
             ) -> list[ReadRecord]:  # fmt: skip
    """Every record of every partition up to its end (high watermark), with confluent-kafka."""
    from confluent_kafka import (
        OFFSET_BEGINNING,
        Consumer,
        KafkaError,
        KafkaException,
        TopicPartition,
    )

    consumer = Consumer({
        "bootstrap.servers": bootstrap, "group.id": f"read-{time.monotonic_ns()}",
        "enable.auto.commit": False, "enable.partition.eof": True, "log_level": 0,
        "topic.metadata.refresh.interval.ms": 500,
    })  # fmt: skip
    try:
        consumer.assign([TopicPartition(topic, i, OFFSET_BEGINNING) for i in range(partitions)])
        ends: dict[int, int] = {}
        deadline = time.monotonic() + timeout_s
        for i in range(partitions):
            while i not in ends:
                try:
                    _low, ends[i] = consumer.get_watermark_offsets(
                        TopicPartition(topic, i), timeout=10
                    )
                except KafkaException:  # leaders still moving (a restart): ask again
                    if time.monotonic() > deadline:
                        raise
                    time.sleep(0.2)
        out: list[ReadRecord] = []
        done = {i for i, high in ends.items() if high == 0}
        while len(done) < partitions and time.monotonic() < deadline:
            for msg in consumer.consume(num_messages=1000, timeout=0.5):
                if msg.error() is None:
                    out.append(ReadRecord(msg.partition(), msg.offset(), msg.key(), msg.value()))
                    if msg.offset() + 1 >= ends[msg.partition()]:
                        done.add(msg.partition())
                elif (
                    msg.error().code() == KafkaError._PARTITION_EOF
                    and msg.offset() >= ends[msg.partition()]
                ):
                    # The end may be a control batch (a leader change), which consumers skip.
                    done.add(msg.partition())
        assert len(done) == partitions, f"read only partitions {sorted(done)} of {ends}"
        return out
    finally:
        consumer.close()


@contextmanager
def leader_under_load(
    sup: Supervisor, prefix: str, configs: dict[str, str]
) -> Iterator[tuple[str, Any, History]]:
    """A fresh 3-partition RF 3 topic and a producer thread writing 1,500 acks=all records to
    it over 6 s; yields (topic, partition 0's leader info, history) once 300 are acked, and
    joins the producer on exit."""
    topic = f"{prefix}-{configs['replication.strategy']}-{time.monotonic_ns()}"
    create_topic(sup.bootstrap, topic, 3, 3, configs)
    info = wait_leaders(sup, topic, 3).partition(topic, 0)
    assert info is not None
    history = History()
    producer = threading.Thread(
        target=produce_all,
        args=(sup.bootstrap, topic, [b"v%05d" % i for i in range(1500)]),
        kwargs={"partitions": 3, "spread_s": 6.0, "out": history},
    )
    producer.start()
    try:
        wait_for(lambda: history.acked() >= 300, 30, "300 acks")
        yield topic, info, history
    finally:
        producer.join(60)
    assert not producer.is_alive()


def check_nothing_acked_lost(sup: Supervisor, topic: str, history: History, note: str) -> None:
    records = read_all(sup.bootstrap, topic, 3)
    report = check_history(history.attempts, records)
    print(topic, note, report.summary(), history.errors)
    assert report.acknowledged > 300
    assert report.ok, report.summary()
    assert not report.lost


def replica_log_bytes(sup: Supervisor, node_id: int, topic: str, partition: int) -> bytes:
    """The bytes of every segment of one replica, in offset order (a follower appends the
    leader's batches unchanged, so equal logs are equal bytes)."""
    directory = sup.brokers[node_id].spec.data_dir / f"{topic}-{partition}"
    return b"".join(p.read_bytes() for p in sorted(Path(directory).glob("*.log")))
