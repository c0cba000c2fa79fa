"""Client byte-rate quotas on a real broker: AlterClientQuotas / DescribeClientQuotas over the
wire, and librdkafka producers and consumers throttled (throttle events, and time) while
clients without a quota are not."""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

import pytest
from confluent_kafka import Consumer, Producer, TopicPartition

from quorumq import protocol as p
from quorumq.errors import ErrorCode
from tests.integration.conftest import BrokerThread, call

# Short sampling windows so that a throttle shows within seconds: a client may burst one
# window's worth (0.1 s at its rate) before it is held to its rate.
WINDOWS = {"quota_window_num": 2, "quota_window_size_seconds": 0.1}


@pytest.fixture
def quota_broker(tmp_path: Path) -> Any:
    thread = BrokerThread(tmp_path / "data", **WINDOWS)
    thread.start()
    try:
        yield thread
    finally:
        thread.stop()


def request(port: int, api_key: p.ApiKey, version: int, body: Any) -> Any:
    return call(port, api_key, version, body)


def alter(port: int, *entries: tuple[dict[str, str | None], dict[str, float | None]]) -> list[int]:
    """Sets (a number) or removes (None) quota keys; the error code of each entry."""
    body = p.AlterClientQuotasRequest(
        entries=[
            p.AlterClientQuotasEntry(
                entity=[p.QuotaEntityData(entity_type=k, entity_name=n) for k, n in e.items()],
                ops=[
                    p.AlterClientQuotasOp(key=k, value=v or 0.0, remove=v is None)
                    for k, v in ops.items()
                ],
            )
            for e, ops in entries
        ]
    )
    answer = request(port, p.ApiKey.ALTER_CLIENT_QUOTAS, 1, body)
    return [entry.error_code for entry in answer.entries]


def describe(port: int, version: int = 1) -> dict[tuple[tuple[str, str | None], ...], dict]:
    answer = request(
        port, p.ApiKey.DESCRIBE_CLIENT_QUOTAS, version, p.DescribeClientQuotasRequest()
    )
    assert answer.error_code == 0
    return {
        tuple((e.entity_type, e.entity_name) for e in entry.entity): {
            v.key: v.value for v in entry.values
        }
        for entry in answer.entries
    }


def produce(
    bootstrap: str, client_id: str, count: int, size: int, extra: dict[str, Any] | None = None
) -> tuple[float, list[int]]:
    """Seconds to deliver ``count`` records of ``size`` bytes, and the throttles reported;
    ``extra``: further librdkafka settings (a SASL login)."""
    throttles: list[int] = []
    producer = Producer(
        {
            **(extra or {}),
            "bootstrap.servers": bootstrap,
            "client.id": client_id,
            "linger.ms": 5,
            "batch.size": 16384,
            "throttle_cb": lambda event: throttles.append(int(event.throttle_time * 1000)),
        }
    )
    failed: list[Any] = []
    start = time.monotonic()
    for _ in range(count):
        producer.produce(
            "q",
            value=bytes(size),
            partition=0,
            on_delivery=lambda err, msg: err and failed.append(err),
        )
        producer.poll(0)
    assert producer.flush(60) == 0
    elapsed = time.monotonic() - start
    producer.poll(0.2)  # throttle events arrive with the responses
    assert not failed, failed[:3]
    return elapsed, throttles


def test_quotas_are_set_described_removed_and_survive_a_restart(
    quota_broker: BrokerThread,
) -> None:
    port = quota_broker.port
    assert describe(port) == {}
    codes = alter(
        port,
        ({"client-id": "app"}, {"producer_byte_rate": 1000.0, "consumer_byte_rate": 2000.0}),
        ({"client-id": None}, {"producer_byte_rate": 500.0}),
        ({"user": "alice", "client-id": "app"}, {"consumer_byte_rate": 10.0}),
    )
    assert codes == [0, 0, 0]
    quota_broker.restart()
    port = quota_broker.port
    expected = {
        (("client-id", "app"),): {"producer_byte_rate": 1000.0, "consumer_byte_rate": 2000.0},
        (("client-id", None),): {"producer_byte_rate": 500.0},
        (("client-id", "app"), ("user", "alice")): {"consumer_byte_rate": 10.0},
    }
    assert describe(port) == expected
    assert describe(port, version=0) == expected
    assert alter(port, ({"client-id": "app"}, {"producer_byte_rate": None})) == [0]
    assert describe(port)[(("client-id", "app"),)] == {"consumer_byte_rate": 2000.0}
    # A filter: the default client-id only.
    only_default = p.DescribeClientQuotasRequest(
        components=[p.DescribeClientQuotasComponent(entity_type="client-id", match_type=1)],
        strict=True,
    )
    answer = request(port, p.ApiKey.DESCRIBE_CLIENT_QUOTAS, 1, only_default)
    assert [[(e.entity_type, e.entity_name) for e in x.entity] for x in answer.entries] == [
        [("client-id", None)]
    ]


def test_bad_quota_entries_fail_alone_with_invalid_request(quota_broker: BrokerThread) -> None:
    port = quota_broker.port
    codes = alter(
        port,
        ({"client-id": "ok"}, {"producer_byte_rate": 100.0}),
        ({"ip": "127.0.0.1"}, {"connection_creation_rate": 5.0}),
        ({"client-id": "x"}, {"request_percentage": 50.0}),
        ({"client-id": "y"}, {"producer_byte_rate": -1.0}),
        ({}, {"producer_byte_rate": 1.0}),
    )
    assert codes == [0] + [ErrorCode.INVALID_REQUEST] * 4
    assert describe(port) == {(("client-id", "ok"),): {"producer_byte_rate": 100.0}}
    bad_filter = p.DescribeClientQuotasRequest(
        components=[p.DescribeClientQuotasComponent(entity_type="client-id", match_type=9)]
    )
    answer = request(port, p.ApiKey.DESCRIBE_CLIENT_QUOTAS, 1, bad_filter)
    assert answer.error_code == ErrorCode.INVALID_REQUEST and answer.entries is None


def test_a_producer_over_its_quota_is_throttled_and_others_are_not(
    quota_broker: BrokerThread,
) -> None:
    port = quota_broker.port
    assert alter(port, ({"client-id": "slow"}, {"producer_byte_rate": 100_000.0})) == [0]
    produce(quota_broker.bootstrap, "warm-up", 1, 10)  # creates the topic
    # 300 KB at 100 KB/s: about 3 s once the first window's burst is spent.
    slow, slow_throttles = produce(quota_broker.bootstrap, "slow", 300, 1000)
    fast, fast_throttles = produce(quota_broker.bootstrap, "fast", 300, 1000)
    assert slow_throttles and max(slow_throttles) > 0
    assert slow >= 2.0, f"300 KB at a 100 KB/s quota took only {slow:.2f} s"
    assert not [t for t in fast_throttles if t > 0], fast_throttles
    assert fast < slow


def test_a_consumer_over_its_quota_is_throttled(quota_broker: BrokerThread) -> None:
    port = quota_broker.port
    produce(quota_broker.bootstrap, "writer", 300, 1000)
    assert alter(port, ({"client-id": "reader"}, {"consumer_byte_rate": 100_000.0})) == [0]
    throttles: list[float] = []
    consumer = Consumer(
        {
            "bootstrap.servers": quota_broker.bootstrap,
            "client.id": "reader",
            "group.id": "unused",
            "enable.auto.commit": False,
            "max.partition.fetch.bytes": 20_000,
            "throttle_cb": lambda event: throttles.append(event.throttle_time),
        }
    )
    received = 0
    start = time.monotonic()
    try:
        consumer.assign([TopicPartition("q", 0, 0)])
        deadline = start + 60
        while received < 300 and time.monotonic() < deadline:
            for m in consumer.consume(num_messages=100, timeout=0.2):
                assert m.error() is None, m.error()
                received += 1
    finally:
        consumer.close()
    elapsed = time.monotonic() - start
    assert received == 300
    assert throttles and max(throttles) > 0
    assert elapsed >= 2.0, f"300 KB at a 100 KB/s quota took only {elapsed:.2f} s"


def test_a_user_quota_throttles_that_user_whatever_its_client_id(tmp_path: Path) -> None:
    broker = BrokerThread(
        tmp_path / "data",
        sasl_mechanisms=("PLAIN",),
        sasl_users={"alice": "a", "bob": "b"},
        **WINDOWS,
    )
    broker.start()
    try:
        from quorumq.client._connection import SaslConfig

        body = p.AlterClientQuotasRequest(
            entries=[
                p.AlterClientQuotasEntry(
                    entity=[p.QuotaEntityData(entity_type="user", entity_name="alice")],
                    ops=[p.AlterClientQuotasOp(key="producer_byte_rate", value=100_000.0)],
                )
            ]
        )
        answer = call(
            broker.port, p.ApiKey.ALTER_CLIENT_QUOTAS, 1, body, SaslConfig("PLAIN", "bob", "b")
        )
        assert [e.error_code for e in answer.entries] == [0]
        login = {"security.protocol": "SASL_PLAINTEXT", "sasl.mechanism": "PLAIN"}

        def as_user(user: str, password: str, client_id: str) -> tuple[float, list[int]]:
            conf = {**login, "sasl.username": user, "sasl.password": password}
            return produce(broker.bootstrap, client_id, 300, 1000, extra=conf)

        produce(
            broker.bootstrap,
            "warm-up",
            1,
            10,
            extra={**login, "sasl.username": "bob", "sasl.password": "b"},
        )
        slow, slow_throttles = as_user("alice", "a", "any-client")
        _, fast_throttles = as_user("bob", "b", "any-client")
        assert slow_throttles and max(slow_throttles) > 0 and slow >= 2.0
        assert not [t for t in fast_throttles if t > 0]
    finally:
        broker.stop()
