"""SASL in a cluster: brokers log in to each other (replica fetches, heartbeats) with the
cluster's secret, and users created through one broker log in at every broker."""

from __future__ import annotations

import secrets
from pathlib import Path
from typing import Any

import pytest
import trio
from confluent_kafka import Producer

from quorumq import protocol as p
from quorumq.client._connection import SaslConfig, open_connection
from quorumq.errors import ErrorCode
from quorumq.security import SCRAM_MECHANISMS, salted_password
from tests.cluster._harness import open_cluster

SASL = {"sasl_mechanisms": ("SCRAM-SHA-512", "PLAIN"), "sasl_users": {"admin": "admin-secret"}}


def _produce(
    bootstrap: str, user: str, password: str, count: int, timeout_s: float = 10
) -> tuple[int, list[str]]:
    errors: list[str] = []
    delivered: list[int] = []
    producer = Producer(
        {
            "bootstrap.servers": bootstrap,
            "security.protocol": "SASL_PLAINTEXT",
            "sasl.mechanism": "SCRAM-SHA-512",
            "sasl.username": user,
            "sasl.password": password,
            "acks": "all",
            "message.timeout.ms": int(timeout_s * 1000),
            "error_cb": lambda e: errors.append(str(e)),
        }
    )
    for i in range(count):
        producer.produce(
            "r",
            value=b"%d" % i,
            partition=0,
            on_delivery=lambda err, msg: err is None and delivered.append(msg.offset()),
        )
    producer.flush(timeout_s + 5)
    return len(delivered), errors


async def test_a_sasl_cluster_replicates_and_every_broker_knows_its_users(tmp_path: Path) -> None:
    async with open_cluster(tmp_path, password="cluster-secret", broker_options=SASL) as cluster:
        await cluster.create_topic("r", 1, 3, {"replication.strategy": "quorum"})
        leader = cluster.broker(cluster.leader_of("r", 0))
        # acks=all needs a follower's fetch: brokers logged in to each other.
        delivered, errors = await trio.to_thread.run_sync(
            _produce, f"127.0.0.1:{leader.port}", "admin", "admin-secret", 200
        )
        assert delivered == 200, errors
        for broker in cluster.running():
            replica = broker.partitions[("r", 0)]
            await cluster.wait_for(lambda r=replica: r.log_end_offset == 200, 10, "replicated")
        # A user created through one broker logs in at another.
        first, second = cluster.running()[0], cluster.running()[1]
        salt = secrets.token_bytes(16)
        upsertion = p.ScramCredentialUpsertion(
            name="carol",
            mechanism=SCRAM_MECHANISMS["SCRAM-SHA-512"][0],
            iterations=4096,
            salt=salt,
            salted_password=salted_password("SCRAM-SHA-512", "carol-secret", salt, 4096),
        )
        admin = SaslConfig("PLAIN", "admin", "admin-secret")
        async with open_connection("127.0.0.1", first.port or 0, sasl=admin) as conn:
            answer: Any = await conn.request(
                p.ApiKey.ALTER_USER_SCRAM_CREDENTIALS,
                0,
                p.AlterUserScramCredentialsRequest(upsertions=[upsertion]),
            )
        assert [r.error_code for r in answer.results] == [0]
        await cluster.wait_for(
            lambda: ("carol", "SCRAM-SHA-512") in second.user_credentials, 10, "carol everywhere"
        )
        carol = SaslConfig("SCRAM-SHA-512", "carol", "carol-secret")
        async with open_connection("127.0.0.1", second.port or 0, sasl=carol) as conn:
            metadata = await conn.request(
                p.ApiKey.METADATA,
                8,
                p.MetadataRequest(topics=None, allow_auto_topic_creation=False),
            )
        assert [t.name for t in metadata.topics] == ["r"]


ACLS = {
    **SASL,
    "authorizer": True,
    "super_users": ("User:admin",),
    "sasl_users": {"admin": "admin-secret", "alice": "alice-secret"},
}


async def test_acls_granted_through_one_broker_hold_at_every_broker(tmp_path: Path) -> None:
    async with open_cluster(tmp_path, password="cluster-secret", broker_options=ACLS) as cluster:
        await cluster.create_topic(
            "r", 1, 3, {"replication.strategy": "isr", "min.insync.replicas": "2"}
        )
        leader = cluster.broker(cluster.leader_of("r", 0))
        bootstrap = f"127.0.0.1:{leader.port}"
        # The followers replicate under the authorizer: brokers are super users.
        delivered, errors = await trio.to_thread.run_sync(
            _produce, bootstrap, "admin", "admin-secret", 50
        )
        assert delivered == 50, errors
        delivered, errors = await trio.to_thread.run_sync(
            _produce, bootstrap, "alice", "alice-secret", 5
        )
        assert delivered == 0
        other = next(b for b in cluster.running() if b is not leader)
        admin = SaslConfig("SCRAM-SHA-512", "admin", "admin-secret")
        grant = p.CreateAclsRequest(
            creations=[
                p.AclCreation(
                    resource_type=2,
                    resource_name="r",
                    principal="User:alice",
                    host="*",
                    operation=4,
                    permission_type=3,
                )
            ]
        )
        async with open_connection("127.0.0.1", other.port or 0, sasl=admin) as conn:
            answer: Any = await conn.request(p.ApiKey.CREATE_ACLS, 3, grant)
        assert [r.error_code for r in answer.results] == [0]
        await cluster.wait_for(
            lambda: leader.authorizer is not None and len(leader.authorizer.acls) == 1,
            10,
            "the ACL",
        )
        delivered, errors = await trio.to_thread.run_sync(
            _produce, bootstrap, "alice", "alice-secret", 5
        )
        assert delivered == 5, errors


async def test_a_cluster_auto_creates_only_the_topics_the_principal_may_create(
    tmp_path: Path,
) -> None:
    options = {**ACLS, "auto_create_topics_enable": True}
    async with open_cluster(tmp_path, password="cluster-secret", broker_options=options) as cluster:
        broker = cluster.running()[0]
        admin = SaslConfig("SCRAM-SHA-512", "admin", "admin-secret")
        acls = [
            p.AclCreation(
                resource_type=2,
                resource_name=name,
                resource_pattern_type=pattern,
                principal="User:alice",
                host="*",
                operation=operation,
                permission_type=3,
            )
            for name, pattern, operation in (("alice-", 4, 5), ("*", 3, 8))  # CREATE, DESCRIBE
        ]
        async with open_connection("127.0.0.1", broker.port or 0, sasl=admin) as conn:
            answer: Any = await conn.request(
                p.ApiKey.CREATE_ACLS, 3, p.CreateAclsRequest(creations=acls)
            )
        assert [r.error_code for r in answer.results] == [0, 0]
        await cluster.wait_for(
            lambda: broker.authorizer is not None and len(broker.authorizer.acls) == 2,
            10,
            "the ACLs",
        )
        alice = SaslConfig("SCRAM-SHA-512", "alice", "alice-secret")
        wanted = [p.MetadataRequestTopic(name=n) for n in ("alice-new", "bob-new")]
        async with open_connection("127.0.0.1", broker.port or 0, sasl=alice) as conn:
            metadata = await conn.request(p.ApiKey.METADATA, 8, p.MetadataRequest(topics=wanted))
        assert [(t.name, t.error_code) for t in metadata.topics] == [
            ("alice-new", ErrorCode.LEADER_NOT_AVAILABLE),  # being created
            ("bob-new", ErrorCode.TOPIC_AUTHORIZATION_FAILED),
        ]
        await cluster.wait_for(
            lambda: broker.bridge is not None and "alice-new" in broker.bridge.image.topics,
            10,
            "alice-new created",
        )
        assert "bob-new" not in broker.bridge.image.topics


async def test_logins_expire_for_clients_but_not_between_brokers(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    """With connections_max_reauth_ms, a client's login expires; brokers' own logins last, so
    replication never stalls on an expired login: no fetcher is closed over four lifetimes."""
    options = {**SASL, "connections_max_reauth_ms": 500}
    async with open_cluster(tmp_path, password="cluster-secret", broker_options=options) as cluster:
        await cluster.create_topic("r", 1, 3, {"replication.strategy": "isr"})
        leader = cluster.broker(cluster.leader_of("r", 0))
        bootstrap = f"127.0.0.1:{leader.port}"
        caplog.clear()
        for _ in range(4):  # about 2 s: four login lifetimes
            delivered, errors = await trio.to_thread.run_sync(
                _produce, bootstrap, "admin", "admin-secret", 20
            )
            assert delivered == 20 and not errors, errors
            await trio.sleep(0.3)
        for broker in cluster.running():
            replica = broker.partitions[("r", 0)]
            await cluster.wait_for(lambda r=replica: r.log_end_offset == 80, 10, "replicated")
        closed = [r.getMessage() for r in caplog.records if "closing connection" in r.getMessage()]
        assert not [m for m in closed if "expired" in m], closed
        assert not [r for r in caplog.records if "fetcher from" in r.getMessage()]
        # A client's login does expire: one that waits past it is closed.
        admin = SaslConfig("PLAIN", "admin", "admin-secret")
        async with open_connection("127.0.0.1", leader.port or 0, sasl=admin) as conn:
            await trio.sleep(0.7)
            with pytest.raises(ConnectionError):
                await conn.request(p.ApiKey.METADATA, 8, p.MetadataRequest(topics=None))
