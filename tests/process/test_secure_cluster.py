"""A secured three-process cluster: the Supervisor starts `quorumq broker` processes with SASL
and an authorizer, checks readiness logged in, and a librdkafka producer writes acks=all."""

from __future__ import annotations

from confluent_kafka import Producer

from quorumq.bench import CLUSTER_BROKER_ARGS
from quorumq.client import SaslConfig
from quorumq.cluster import Supervisor, free_port_block

SECURE = (
    "--sasl-mechanism", "SCRAM-SHA-512",
    "--sasl-user", "admin=admin-secret",
    "--authorizer", "--super-user", "User:admin",
)  # fmt: skip


def test_a_sasl_cluster_with_an_authorizer_starts_and_takes_acks_all_writes() -> None:
    sup = Supervisor(
        3,
        base_port=free_port_block(3),
        cluster_mode=True,
        broker_args=(*CLUSTER_BROKER_ARGS, *SECURE),
        client_sasl=SaslConfig("SCRAM-SHA-512", "admin", "admin-secret"),
    )
    with sup:
        sup.start(timeout_s=90)  # readiness: every broker answers Metadata to the admin
        assert len(sup.view().brokers) == 3
        delivered: list[int] = []
        producer = Producer(
            {
                "bootstrap.servers": sup.bootstrap,
                "security.protocol": "SASL_PLAINTEXT",
                "sasl.mechanism": "SCRAM-SHA-512",
                "sasl.username": "admin",
                "sasl.password": "admin-secret",
                "acks": "all",
                "message.timeout.ms": 30000,
            }
        )
        for i in range(100):
            producer.produce(
                "secured", value=b"%d" % i,
                on_delivery=lambda err, msg: err is None and delivered.append(1),
            )  # fmt: skip
        producer.flush(40)
        assert len(delivered) == 100
