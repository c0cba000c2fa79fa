"""SASL on a real broker: users created over the wire, librdkafka and kafka-python logging in
with PLAIN, SCRAM-SHA-256 and SCRAM-SHA-512, and every way a login or a user change is refused."""

from __future__ import annotations

import secrets
import time
from pathlib import Path
from typing import Any

import pytest
import trio
from confluent_kafka import Consumer, Producer, TopicPartition

from quorumq import protocol as p
from quorumq.client._connection import SaslConfig, open_connection
from quorumq.errors import ErrorCode, SaslAuthenticationFailed, UnsupportedSaslMechanism
from quorumq.security import SCRAM_MECHANISMS, salted_password
from tests.integration.conftest import BrokerThread
from tests.integration.conftest import call as request

MECHANISMS = ("PLAIN", "SCRAM-SHA-256", "SCRAM-SHA-512")
ADMIN = SaslConfig("SCRAM-SHA-512", "admin", "admin-secret")


@pytest.fixture
def sasl_broker(tmp_path: Path) -> Any:
    thread = BrokerThread(
        tmp_path / "data", sasl_mechanisms=MECHANISMS, sasl_users={"admin": "admin-secret"}
    )
    thread.start()
    try:
        yield thread
    finally:
        thread.stop()


def call(
    port: int, api_key: p.ApiKey, version: int, body: Any, sasl: SaslConfig | None = ADMIN
) -> Any:
    return request(port, api_key, version, body, sasl)


def upsertion(name: str, password: str, mechanism: str, iterations: int = 4096) -> Any:
    salt = secrets.token_bytes(16)
    return p.ScramCredentialUpsertion(
        name=name,
        mechanism=SCRAM_MECHANISMS[mechanism][0],
        iterations=iterations,
        salt=salt,
        salted_password=salted_password(mechanism, password, salt, iterations),
    )


def alter(port: int, upsertions: list[Any] = (), deletions: list[Any] = ()) -> dict[str, int]:  # type: ignore[assignment]
    body = p.AlterUserScramCredentialsRequest(
        upsertions=list(upsertions), deletions=list(deletions)
    )
    answer = call(port, p.ApiKey.ALTER_USER_SCRAM_CREDENTIALS, 0, body)
    return {r.user: r.error_code for r in answer.results}


def librdkafka(bootstrap: str, mechanism: str, user: str, password: str) -> dict[str, Any]:
    return {
        "bootstrap.servers": bootstrap,
        "security.protocol": "SASL_PLAINTEXT",
        "sasl.mechanism": mechanism,
        "sasl.username": user,
        "sasl.password": password,
    }


def produce(
    conf: dict[str, Any], topic: str, count: int, timeout_s: float = 30
) -> tuple[int, list[str]]:
    errors: list[str] = []
    delivered: list[int] = []
    producer = Producer({**conf, "error_cb": lambda e: errors.append(str(e))})
    for i in range(count):
        producer.produce(
            topic,
            value=b"%d" % i,
            partition=0,
            on_delivery=lambda err, msg: err is None and delivered.append(msg.offset()),
        )
    producer.flush(timeout_s)
    return len(delivered), errors


def create_users(port: int) -> None:
    codes = alter(
        port,
        [
            upsertion("alice", "alice-secret", "SCRAM-SHA-256"),
            upsertion("alice", "alice-secret", "SCRAM-SHA-512"),
            upsertion("bob", "bob-secret", "SCRAM-SHA-512"),
        ],
    )
    assert codes == {"alice": 0, "bob": 0}


@pytest.mark.parametrize("mechanism", MECHANISMS)
def test_librdkafka_logs_in_with_each_mechanism_and_round_trips(
    sasl_broker: BrokerThread, mechanism: str
) -> None:
    create_users(sasl_broker.port)
    conf = librdkafka(sasl_broker.bootstrap, mechanism, "alice", "alice-secret")
    delivered, errors = produce(conf, "t", 50)
    assert delivered == 50, errors
    consumer = Consumer({**conf, "group.id": "g", "enable.auto.commit": False})
    values = []
    try:
        consumer.assign([TopicPartition("t", 0, 0)])
        deadline = time.monotonic() + 30
        while len(values) < 50 and time.monotonic() < deadline:
            for m in consumer.consume(num_messages=50, timeout=0.2):
                assert m.error() is None, m.error()
                values.append(m.value())
    finally:
        consumer.close()
    assert values == [b"%d" % i for i in range(50)]


def test_a_wrong_password_or_no_login_gets_nothing_through(sasl_broker: BrokerThread) -> None:
    create_users(sasl_broker.port)
    bad = librdkafka(sasl_broker.bootstrap, "SCRAM-SHA-256", "alice", "guess")
    delivered, errors = produce({**bad, "message.timeout.ms": 2000}, "t", 5, timeout_s=5)
    assert delivered == 0 and any("Authentication failed" in e for e in errors), errors
    # bob has only a SCRAM-SHA-512 credential.
    wrong_mechanism = librdkafka(sasl_broker.bootstrap, "SCRAM-SHA-256", "bob", "bob-secret")
    delivered, errors = produce(
        {**wrong_mechanism, "message.timeout.ms": 2000}, "t", 5, timeout_s=5
    )
    assert delivered == 0 and errors
    # A client that does not log in is cut off at its first request past ApiVersions.
    metadata = p.MetadataRequest(topics=None, allow_auto_topic_creation=False)
    with pytest.raises(ConnectionError):
        call(sasl_broker.port, p.ApiKey.METADATA, 8, metadata, sasl=None)
    # Our own client: the same refusals, as Kafka error codes.
    with pytest.raises(SaslAuthenticationFailed):
        call(sasl_broker.port, p.ApiKey.METADATA, 8, metadata, SaslConfig("PLAIN", "alice", "x"))
    with pytest.raises(UnsupportedSaslMechanism):
        call(sasl_broker.port, p.ApiKey.METADATA, 8, metadata, SaslConfig("GSSAPI", "alice", "x"))


def test_sasl_requests_out_of_order_close_the_connection(sasl_broker: BrokerThread) -> None:
    async def main() -> None:
        async with open_connection("127.0.0.1", sasl_broker.port) as conn:
            with pytest.raises(ConnectionError):
                await conn.request(
                    p.ApiKey.SASL_AUTHENTICATE, 1, p.SaslAuthenticateRequest(auth_bytes=b"\0a\0b")
                )
        async with open_connection("127.0.0.1", sasl_broker.port) as conn:
            answer = await conn.request(
                p.ApiKey.SASL_HANDSHAKE, 1, p.SaslHandshakeRequest(mechanism="PLAIN")
            )
            assert answer.error_code == 0 and list(answer.mechanisms) == list(MECHANISMS)
            failed = await conn.request(
                p.ApiKey.SASL_AUTHENTICATE, 1, p.SaslAuthenticateRequest(auth_bytes=b"\0a\0b")
            )
            assert failed.error_code == ErrorCode.SASL_AUTHENTICATION_FAILED
            # After a failed login the connection may only close.
            with pytest.raises(ConnectionError):
                await conn.request(
                    p.ApiKey.SASL_AUTHENTICATE, 1, p.SaslAuthenticateRequest(auth_bytes=b"\0a\0b")
                )
        async with open_connection("127.0.0.1", sasl_broker.port, sasl=ADMIN) as conn:
            # Logged in: a second handshake (re-authentication) is refused while
            # connections_max_reauth_ms is 0 (test_reauth.py has it on).
            with pytest.raises(ConnectionError):
                await conn.request(
                    p.ApiKey.SASL_HANDSHAKE, 1, p.SaslHandshakeRequest(mechanism="PLAIN")
                )

    trio.run(main)


def test_users_are_described_deleted_and_survive_a_restart(sasl_broker: BrokerThread) -> None:
    create_users(sasl_broker.port)
    sasl_broker.restart()
    port = sasl_broker.port
    described = call(
        port, p.ApiKey.DESCRIBE_USER_SCRAM_CREDENTIALS, 0, p.DescribeUserScramCredentialsRequest()
    )
    assert {
        r.user: sorted((c.mechanism, c.iterations) for c in r.credential_infos)
        for r in described.results
    } == {"alice": [(1, 4096), (2, 4096)], "bob": [(2, 4096)]}
    delete = p.ScramCredentialDeletion(name="alice", mechanism=2)
    assert alter(port, deletions=[delete]) == {"alice": 0}
    # alice still has SCRAM-SHA-256, and PLAIN checks against it.
    delivered, _ = produce(
        librdkafka(sasl_broker.bootstrap, "PLAIN", "alice", "alice-secret"), "t", 3
    )
    assert delivered == 3
    delivered, errors = produce(
        {
            **librdkafka(sasl_broker.bootstrap, "SCRAM-SHA-512", "alice", "alice-secret"),
            "message.timeout.ms": 2000,
        },
        "t",
        3,
        timeout_s=5,
    )
    assert delivered == 0 and errors


def test_bad_user_changes_fail_per_user_with_kafkas_codes(sasl_broker: BrokerThread) -> None:
    port = sasl_broker.port
    codes = alter(
        port,
        [
            upsertion("ok", "pw", "SCRAM-SHA-256"),
            upsertion("few", "pw", "SCRAM-SHA-256", iterations=100),
            upsertion("twice", "pw", "SCRAM-SHA-256"),
            upsertion("twice", "pw2", "SCRAM-SHA-256"),
            upsertion("__quorumq_broker", "pw", "SCRAM-SHA-256"),
            upsertion("admin", "pw", "SCRAM-SHA-256"),  # defined in the broker's config
            p.ScramCredentialUpsertion(
                name="odd", mechanism=7, iterations=4096, salt=b"s", salted_password=b"x"
            ),
        ],
        [p.ScramCredentialDeletion(name="ghost", mechanism=1)],
    )
    assert codes == {
        "ghost": ErrorCode.RESOURCE_NOT_FOUND,
        "ok": 0,
        "few": ErrorCode.UNACCEPTABLE_CREDENTIAL,
        "twice": ErrorCode.DUPLICATE_RESOURCE,
        "__quorumq_broker": ErrorCode.UNACCEPTABLE_CREDENTIAL,
        "admin": ErrorCode.UNACCEPTABLE_CREDENTIAL,
        "odd": ErrorCode.UNACCEPTABLE_CREDENTIAL,
    }
    described = call(
        port,
        p.ApiKey.DESCRIBE_USER_SCRAM_CREDENTIALS,
        0,
        p.DescribeUserScramCredentialsRequest(
            users=[p.ScramUserName(name="ok"), p.ScramUserName(name="few")]
        ),
    )
    assert [(r.user, r.error_code) for r in described.results] == [
        ("ok", 0),
        ("few", ErrorCode.RESOURCE_NOT_FOUND),
    ]


def test_kafka_python_logs_in_with_scram(sasl_broker: BrokerThread) -> None:
    from kafka import KafkaConsumer, KafkaProducer

    create_users(sasl_broker.port)
    conf = {
        "bootstrap_servers": sasl_broker.bootstrap,
        "security_protocol": "SASL_PLAINTEXT",
        "sasl_mechanism": "SCRAM-SHA-256",
        "sasl_plain_username": "alice",
        "sasl_plain_password": "alice-secret",
    }
    producer = KafkaProducer(**conf)
    for i in range(10):
        producer.send("kp", value=b"%d" % i, partition=0)
    producer.flush(30)
    producer.close()
    consumer = KafkaConsumer(**conf, auto_offset_reset="earliest")
    values: list[bytes] = []
    try:
        from kafka import TopicPartition as KTopicPartition

        consumer.assign([KTopicPartition("kp", 0)])
        deadline = time.monotonic() + 30
        while len(values) < 10 and time.monotonic() < deadline:
            for records in consumer.poll(timeout_ms=200).values():
                values.extend(r.value for r in records)
    finally:
        consumer.close()
    assert values == [b"%d" % i for i in range(10)]
