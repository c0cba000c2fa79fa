"""TLS listeners (Kafka's SSL and SASL_SSL) on a real broker, with certificates from a test CA
(trustme): librdkafka, kafka-python and quorumq's own client, client certificates as
principals, and what a client without the right certificate or without TLS gets."""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

import pytest
import trio
import trustme
from confluent_kafka import Consumer, KafkaError, Producer

from quorumq import protocol as p
from quorumq._tls import client_context
from quorumq.client import Consumer as TrioConsumer
from quorumq.client import Producer as TrioProducer
from quorumq.client import SaslConfig
from quorumq.errors import InvalidConfig, TopicAuthorizationFailed
from tests.integration.conftest import BrokerThread, call


@pytest.fixture(scope="module")
def pki(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """A CA, the broker's certificate for 127.0.0.1, client certificates for alice and bob,
    and a second CA nobody trusts."""
    root = tmp_path_factory.mktemp("pki")
    ca, other = trustme.CA(), trustme.CA()
    files = {"ca": root / "ca.pem", "other_ca": root / "other.pem"}
    ca.cert_pem.write_to_path(str(files["ca"]))
    other.cert_pem.write_to_path(str(files["other_ca"]))
    for name, issued in (
        ("server", ca.issue_cert("127.0.0.1", "localhost")),
        ("alice", ca.issue_cert("alice@example.com", common_name="alice")),
        ("bob", ca.issue_cert("bob@example.com", common_name="bob")),
    ):
        files[f"{name}_cert"] = root / f"{name}.pem"
        files[f"{name}_key"] = root / f"{name}.key"
        with open(files[f"{name}_cert"], "wb") as out:
            for blob in issued.cert_chain_pems:
                out.write(blob.bytes())
        issued.private_key_pem.write_to_path(str(files[f"{name}_key"]))
    return files


def tls_broker(tmp_path: Path, pki: dict[str, Path], **config: Any) -> BrokerThread:
    thread = BrokerThread(
        tmp_path / "data", ssl_certfile=pki["server_cert"], ssl_keyfile=pki["server_key"], **config
    )
    thread.start()
    return thread


def round_trip(conf: dict[str, Any], topic: str, count: int) -> list[bytes]:
    producer = Producer(conf)
    delivered: list[int] = []
    for i in range(count):
        producer.produce(
            topic, value=b"%d" % i, partition=0,
            on_delivery=lambda err, msg: err is None and delivered.append(1),
        )  # fmt: skip
    producer.flush(30)
    assert len(delivered) == count
    consumer = Consumer(
        {**conf, "group.id": "g", "enable.auto.commit": False, "auto.offset.reset": "earliest"}
    )
    got: list[bytes] = []
    try:
        consumer.subscribe([topic])
        deadline = time.monotonic() + 30
        while len(got) < count and time.monotonic() < deadline:
            for m in consumer.consume(num_messages=count, timeout=0.2):
                assert m.error() is None, m.error()
                got.append(m.value())
    finally:
        consumer.close()
    return got


def test_librdkafka_and_kafka_python_over_tls(tmp_path: Path, pki: dict[str, Path]) -> None:
    broker = tls_broker(tmp_path, pki)
    try:
        conf = {
            "bootstrap.servers": broker.bootstrap,
            "security.protocol": "SSL",
            "ssl.ca.location": str(pki["ca"]),
        }
        assert round_trip(conf, "tls", 30) == [b"%d" % i for i in range(30)]
        from kafka import KafkaProducer

        producer = KafkaProducer(
            bootstrap_servers=broker.bootstrap, security_protocol="SSL", ssl_cafile=str(pki["ca"])
        )
        producer.send("tls-kp", b"v").get(timeout=30)
        producer.close()
    finally:
        broker.stop()


def test_sasl_over_tls(tmp_path: Path, pki: dict[str, Path]) -> None:
    broker = tls_broker(
        tmp_path, pki, sasl_mechanisms=("SCRAM-SHA-256", "PLAIN"), sasl_users={"carol": "secret"}
    )
    try:
        conf = {
            "bootstrap.servers": broker.bootstrap,
            "security.protocol": "SASL_SSL",
            "ssl.ca.location": str(pki["ca"]),
            "sasl.mechanism": "PLAIN",
            "sasl.username": "carol",
            "sasl.password": "secret",
        }
        assert round_trip(conf, "sasl-tls", 10) == [b"%d" % i for i in range(10)]

        async def trio_client() -> int:
            context = client_context(pki["ca"])
            sasl = SaslConfig("SCRAM-SHA-256", "carol", "secret")
            async with TrioProducer(broker.bootstrap, sasl=sasl, ssl_context=context) as producer:
                await producer.send("sasl-tls", b"from trio", partition=0)
            async with TrioConsumer(
                broker.bootstrap, auto_offset_reset="earliest", sasl=sasl, ssl_context=context
            ) as consumer:
                consumer.assign([("sasl-tls", 0)])
                seen = 0
                with trio.move_on_after(20):
                    while seen < 11:
                        batches = await consumer.getmany(timeout_ms=200)
                        seen += sum(len(r) for r in batches.values())
                return seen

        assert trio.run(trio_client) == 11
    finally:
        broker.stop()


def test_a_wrong_ca_or_plain_tcp_is_refused_and_the_broker_carries_on(
    tmp_path: Path, pki: dict[str, Path]
) -> None:
    broker = tls_broker(tmp_path, pki)
    try:
        metadata = p.MetadataRequest(topics=None, allow_auto_topic_creation=False)

        async def with_context(context: Any) -> Any:
            from quorumq.client import open_connection

            async with open_connection("127.0.0.1", broker.port, ssl_context=context) as conn:
                return await conn.request(p.ApiKey.METADATA, 8, metadata)

        with pytest.raises(ConnectionError, match="TLS"):
            trio.run(with_context, client_context(pki["other_ca"]))
        with pytest.raises((ConnectionError, BaseExceptionGroup)):
            call(broker.port, p.ApiKey.METADATA, 8, metadata)  # no TLS at all
        librdkafka = Producer(
            {"bootstrap.servers": broker.bootstrap, "message.timeout.ms": 2000}
        )  # PLAINTEXT against TLS: fails, does not hang
        errors: list[Any] = []
        librdkafka.produce("x", b"v", on_delivery=lambda err, msg: errors.append(err))
        librdkafka.flush(10)
        assert errors and errors[0] is not None
        # Still serving TLS clients.
        assert trio.run(with_context, client_context(pki["ca"])).brokers
    finally:
        broker.stop()


def test_client_certificates_are_principals_for_acls(tmp_path: Path, pki: dict[str, Path]) -> None:
    import ssl

    from quorumq._tls import subject_principal

    # Kafka's principal for a certificate is its whole subject, most specific part first.
    subject = subject_principal(ssl._ssl._test_decode_cert(str(pki["alice_cert"])))  # type: ignore[attr-defined]
    assert subject is not None and subject.startswith("CN=alice,")
    broker = tls_broker(
        tmp_path,
        pki,
        ssl_cafile=pki["ca"],
        ssl_client_auth=True,
        authorizer=True,
        super_users=(f"User:{subject}",),
    )
    try:
        alice = client_context(pki["ca"], pki["alice_cert"], pki["alice_key"])
        bob = client_context(pki["ca"], pki["bob_cert"], pki["bob_key"])

        async def write(context: Any, topic: str) -> None:
            async with TrioProducer(broker.bootstrap, ssl_context=context, retries=0) as producer:
                await producer.send(topic, b"v", partition=0)

        trio.run(write, alice, "certs")  # a super user by her certificate's subject
        with pytest.raises(BaseException) as denied:
            trio.run(write, bob, "certs")
        assert (
            denied.group_contains(TopicAuthorizationFailed)
            if isinstance(denied.value, BaseExceptionGroup)
            else isinstance(denied.value, TopicAuthorizationFailed)
        )
        # No certificate at all: the handshake fails.
        librdkafka = Producer(
            {
                "bootstrap.servers": broker.bootstrap,
                "security.protocol": "SSL",
                "ssl.ca.location": str(pki["ca"]),
                "message.timeout.ms": 2000,
            }
        )
        codes: list[Any] = []
        librdkafka.produce("certs", b"v", on_delivery=lambda err, msg: codes.append(err))
        librdkafka.flush(10)
        assert codes and codes[0] is not None and codes[0].code() != KafkaError.NO_ERROR
    finally:
        broker.stop()


def test_bad_certificate_files_are_one_line_errors(tmp_path: Path, pki: dict[str, Path]) -> None:
    from quorumq.broker import Broker, BrokerConfig

    with pytest.raises(InvalidConfig, match="cannot load"):
        Broker(BrokerConfig(data_dir=tmp_path, ssl_certfile=tmp_path / "missing.pem"))
    with pytest.raises(InvalidConfig, match="cannot load"):
        Broker(BrokerConfig(data_dir=tmp_path, ssl_certfile=pki["ca"]))  # a certificate, no key
    with pytest.raises(InvalidConfig, match="client authentication"):
        Broker(
            BrokerConfig(
                data_dir=tmp_path,
                ssl_certfile=pki["server_cert"],
                ssl_keyfile=pki["server_key"],
                ssl_client_auth=True,
            )
        )
