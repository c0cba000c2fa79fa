"""A broker with two listeners: PLAINTEXT and SASL_PLAINTEXT side by side. Each client is told
the broker's address on the listener it came in on, and only the SASL one asks for a login."""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

import pytest
from confluent_kafka import Consumer, Producer

from quorumq import protocol as p
from quorumq.broker._listeners import parse_listeners
from quorumq.client._connection import SaslConfig
from tests.integration.conftest import BrokerThread, call

ADMIN = SaslConfig("SCRAM-SHA-512", "admin", "admin-secret")


@pytest.fixture
def two_listeners(tmp_path: Path) -> Any:
    thread = BrokerThread(
        tmp_path / "data",
        listeners=parse_listeners(
            "INSIDE://127.0.0.1:0,OUTSIDE://127.0.0.1:0", "INSIDE:PLAINTEXT,OUTSIDE:SASL_PLAINTEXT"
        ),
        sasl_mechanisms=("SCRAM-SHA-512",),
        sasl_users={"admin": "admin-secret"},
    )
    thread.start()
    try:
        yield thread
    finally:
        thread.stop()


def _metadata_port(port: int, sasl: SaslConfig | None) -> int:
    answer = call(port, p.ApiKey.METADATA, 8, p.MetadataRequest(topics=None), sasl)
    assert len(answer.brokers) == 1
    return answer.brokers[0].port


def test_each_listener_advertises_itself_and_keeps_its_own_security(
    two_listeners: BrokerThread,
) -> None:
    assert two_listeners.broker is not None
    inside = two_listeners.broker.ports["INSIDE"]
    outside = two_listeners.broker.ports["OUTSIDE"]
    assert inside == two_listeners.port and outside != inside
    assert _metadata_port(inside, None) == inside
    assert _metadata_port(outside, ADMIN) == outside
    # No login on the SASL listener: closed; a login on the PLAINTEXT one: closed too.
    with pytest.raises(ConnectionError):
        call(outside, p.ApiKey.METADATA, 8, p.MetadataRequest(topics=None))
    with pytest.raises(ConnectionError):
        call(inside, p.ApiKey.METADATA, 8, p.MetadataRequest(topics=None), ADMIN)
    # librdkafka writes through the SASL listener and reads through the plain one: each
    # follows the metadata of its own listener.
    delivered: list[int] = []
    producer = Producer(
        {
            "bootstrap.servers": f"127.0.0.1:{outside}",
            "security.protocol": "SASL_PLAINTEXT",
            "sasl.mechanism": "SCRAM-SHA-512",
            "sasl.username": "admin",
            "sasl.password": "admin-secret",
            "message.timeout.ms": 10000,
        }
    )
    for i in range(50):
        producer.produce(
            "both", value=b"%d" % i, on_delivery=lambda e, m: e is None and delivered.append(1)
        )
    producer.flush(15)
    assert len(delivered) == 50
    consumer = Consumer(
        {
            "bootstrap.servers": f"127.0.0.1:{inside}",
            "group.id": "inside",
            "auto.offset.reset": "earliest",
        }
    )
    got: list[bytes] = []
    try:
        consumer.subscribe(["both"])
        deadline = time.monotonic() + 30
        while len(got) < 50 and time.monotonic() < deadline:
            for message in consumer.consume(num_messages=50, timeout=0.2):
                assert message.error() is None, message.error()
                got.append(message.value())
    finally:
        consumer.close()
    assert got == [b"%d" % i for i in range(50)]


def test_describe_configs_shows_the_listeners_and_no_secrets(two_listeners: BrokerThread) -> None:
    assert two_listeners.broker is not None
    ports = two_listeners.broker.ports
    answer = call(
        ports["INSIDE"],
        p.ApiKey.DESCRIBE_CONFIGS,
        2,
        p.DescribeConfigsRequest(
            resources=[p.DescribeConfigsResource(resource_type=4, resource_name="0")]
        ),
    )
    configs = {c.name: c.value for c in answer.results[0].configs}
    assert configs["listeners"] == (
        f"INSIDE://127.0.0.1:{ports['INSIDE']},OUTSIDE://127.0.0.1:{ports['OUTSIDE']}"
    )
    assert configs["listener.security.protocol.map"] == "INSIDE:PLAINTEXT,OUTSIDE:SASL_PLAINTEXT"
    assert configs["inter.broker.listener.name"] == "INSIDE"
    assert configs["sasl.enabled.mechanisms"] == "SCRAM-SHA-512"
    assert not any("admin-secret" in (v or "") for v in configs.values())
