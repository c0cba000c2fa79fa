"""ACLs on a real broker with SASL: what each principal may do, with librdkafka, kafka-python's
admin client and quorumq's own client, Kafka's error codes for what it may not, and the ACL
APIs themselves."""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

import pytest
from confluent_kafka import Consumer, KafkaError, Producer

from quorumq import protocol as p
from quorumq.broker import Broker, BrokerConfig
from quorumq.broker._authorize import GATES
from quorumq.client._connection import SaslConfig
from quorumq.errors import ErrorCode
from tests.integration.conftest import BrokerThread
from tests.integration.conftest import call as request

ADMIN = SaslConfig("SCRAM-SHA-512", "admin", "admin-secret")
ALICE = SaslConfig("SCRAM-SHA-512", "alice", "alice-secret")


@pytest.fixture
def acl_broker(tmp_path: Path) -> Any:
    thread = BrokerThread(
        tmp_path / "data",
        sasl_mechanisms=("SCRAM-SHA-512",),
        sasl_users={"admin": "admin-secret", "alice": "alice-secret", "bob": "bob-secret"},
        authorizer=True,
        super_users=("User:admin",),
        auto_create_topics_enable=False,
    )
    thread.start()
    try:
        yield thread
    finally:
        thread.stop()


def call(port: int, sasl: SaslConfig | None, api_key: p.ApiKey, version: int, body: Any) -> Any:
    return request(port, api_key, version, body, sasl)


def add_acls(port: int, *acls: tuple[int, str, int, str, int, int]) -> list[int]:
    """(resource type, name, pattern type, principal, operation, permission) each, host *."""
    body = p.CreateAclsRequest(
        creations=[
            p.AclCreation(
                resource_type=t,
                resource_name=n,
                resource_pattern_type=pt,
                principal=who,
                host="*",
                operation=op,
                permission_type=perm,
            )
            for t, n, pt, who, op, perm in acls
        ]
    )
    return [r.error_code for r in call(port, ADMIN, p.ApiKey.CREATE_ACLS, 3, body).results]


TOPIC, GROUP, CLUSTER = 2, 3, 4
LITERAL, PREFIXED = 3, 4
READ, WRITE, CREATE, DESCRIBE = 3, 4, 5, 8
ALLOW, DENY = 3, 2


def create_topics(port: int, *names: str) -> None:
    body = p.CreateTopicsRequest(
        topics=[p.CreatableTopic(name=n, num_partitions=1, replication_factor=1) for n in names],
        timeout_ms=5000,
    )
    answer = call(port, ADMIN, p.ApiKey.CREATE_TOPICS, 4, body)
    assert [t.error_code for t in answer.topics] == [0] * len(names)


def librdkafka(bootstrap: str, who: SaslConfig) -> dict[str, Any]:
    return {
        "bootstrap.servers": bootstrap,
        "security.protocol": "SASL_PLAINTEXT",
        "sasl.mechanism": who.mechanism,
        "sasl.username": who.username,
        "sasl.password": who.password,
    }


def produce(conf: dict[str, Any], topic: str, count: int) -> tuple[int, set[int]]:
    """Delivered count and the error codes of the failed deliveries."""
    codes: set[int] = set()
    delivered = [0]

    def report(err: KafkaError | None, msg: object) -> None:
        if err is None:
            delivered[0] += 1
        else:
            codes.add(err.code())

    producer = Producer({**conf, "message.timeout.ms": 5000, "enable.idempotence": False})
    for i in range(count):
        producer.produce(topic, value=b"%d" % i, partition=0, on_delivery=report)
    producer.flush(10)
    return delivered[0], codes


def test_every_api_a_client_can_reach_has_a_gate(tmp_path: Path) -> None:
    broker = Broker(BrokerConfig(data_dir=tmp_path, sasl_mechanisms=("PLAIN",), authorizer=True))
    exempt = {
        p.ApiKey.API_VERSIONS,
        p.ApiKey.SASL_HANDSHAKE,
        p.ApiKey.SASL_AUTHENTICATE,
    }
    ungated = {
        p.ApiKey(k).name for k in broker.advertised_versions() if k not in GATES and k not in exempt
    }
    assert not ungated, f"APIs open to every principal: {ungated}"


def test_a_principal_does_only_what_its_acls_allow(acl_broker: BrokerThread) -> None:
    port, bootstrap = acl_broker.port, acl_broker.bootstrap
    create_topics(port, "orders", "orders-eu", "secret")
    alice = librdkafka(bootstrap, ALICE)
    # No ACL: nothing.
    delivered, codes = produce(alice, "orders", 3)
    assert delivered == 0 and KafkaError.TOPIC_AUTHORIZATION_FAILED in codes, codes
    assert add_acls(
        port,
        (TOPIC, "orders", PREFIXED, "User:alice", WRITE, ALLOW),
        (TOPIC, "orders", LITERAL, "User:alice", READ, ALLOW),
        (TOPIC, "orders-eu", LITERAL, "User:alice", WRITE, DENY),
        (GROUP, "alice-", PREFIXED, "User:alice", READ, ALLOW),
    ) == [0, 0, 0, 0]
    assert produce(alice, "orders", 20) == (20, set())
    delivered, codes = produce(alice, "orders-eu", 3)  # DENY wins over the prefix's ALLOW
    assert delivered == 0 and KafkaError.TOPIC_AUTHORIZATION_FAILED in codes
    # Metadata for all topics shows only those alice may describe: WRITE and READ imply
    # DESCRIBE, and the DENY of WRITE on orders-eu does not deny DESCRIBE (as in Kafka).
    metadata = call(port, ALICE, p.ApiKey.METADATA, 8, p.MetadataRequest(topics=None))
    assert sorted(t.name for t in metadata.topics) == ["orders", "orders-eu"]
    named = call(
        port,
        ALICE,
        p.ApiKey.METADATA,
        8,
        p.MetadataRequest(
            topics=[p.MetadataRequestTopic(name="secret")], allow_auto_topic_creation=False
        ),
    )
    assert [(t.name, t.error_code) for t in named.topics] == [
        ("secret", ErrorCode.TOPIC_AUTHORIZATION_FAILED)
    ]
    # A consumer group she may use, on a topic she may read.
    consumer = Consumer({**alice, "group.id": "alice-app", "auto.offset.reset": "earliest"})
    got: list[bytes] = []
    try:
        consumer.subscribe(["orders"])
        deadline = time.monotonic() + 30
        while len(got) < 20 and time.monotonic() < deadline:
            for m in consumer.consume(num_messages=20, timeout=0.2):
                assert m.error() is None, m.error()
                got.append(m.value())
        consumer.commit(asynchronous=False)
    finally:
        consumer.close()
    assert got == [b"%d" % i for i in range(20)]
    # A group she may not use.
    find = call(port, ALICE, p.ApiKey.FIND_COORDINATOR, 2, p.FindCoordinatorRequest(key="bob-app"))
    assert find.error_code == ErrorCode.GROUP_AUTHORIZATION_FAILED
    # Bob has nothing; a fetch of orders is refused per partition.
    fetch = p.FetchRequest(
        replica_id=-1,
        max_wait_ms=0,
        min_bytes=1,
        topics=[
            p.FetchRequestTopic(
                name="orders",
                partitions=[
                    p.FetchRequestPartition(
                        partition_index=0, fetch_offset=0, partition_max_bytes=1 << 20
                    )
                ],
            )
        ],
    )
    answer = call(port, SaslConfig("SCRAM-SHA-512", "bob", "bob-secret"), p.ApiKey.FETCH, 11, fetch)
    assert [x.error_code for t in answer.topics for x in t.partitions] == [
        ErrorCode.TOPIC_AUTHORIZATION_FAILED
    ]
    # Nobody but a super user may change ACLs or users.
    denied = call(
        port,
        ALICE,
        p.ApiKey.CREATE_ACLS,
        3,
        p.CreateAclsRequest(
            creations=[
                p.AclCreation(
                    resource_type=CLUSTER,
                    resource_name="kafka-cluster",
                    principal="User:alice",
                    host="*",
                    operation=2,
                    permission_type=ALLOW,
                )
            ]
        ),
    )
    assert [r.error_code for r in denied.results] == [ErrorCode.CLUSTER_AUTHORIZATION_FAILED]


def test_acls_are_described_deleted_and_survive_a_restart(acl_broker: BrokerThread) -> None:
    port = acl_broker.port
    assert add_acls(
        port,
        (TOPIC, "t", LITERAL, "User:alice", READ, ALLOW),
        (TOPIC, "t", LITERAL, "User:bob", READ, ALLOW),
        (GROUP, "*", LITERAL, "User:bob", READ, ALLOW),
        (TOPIC, "bad", 2, "User:bob", READ, ALLOW),  # MATCH is a filter, not a pattern
        (TOPIC, "bad", LITERAL, "bob", READ, ALLOW),  # not User:
    ) == [0, 0, 0, ErrorCode.INVALID_REQUEST, ErrorCode.INVALID_REQUEST]
    acl_broker.restart()
    port = acl_broker.port

    def described(**filters: Any) -> list[tuple[int, str, str, int]]:
        fields = {
            "resource_type_filter": 1,
            "resource_name_filter": None,
            "pattern_type_filter": 1,
            "principal_filter": None,
            "host_filter": None,
            "operation": 1,
            "permission_type": 1,
            **filters,
        }
        answer = call(port, ADMIN, p.ApiKey.DESCRIBE_ACLS, 3, p.DescribeAclsRequest(**fields))
        assert answer.error_code == 0
        return sorted(
            (r.resource_type, r.resource_name, a.principal, a.operation)
            for r in answer.resources
            for a in r.acls
        )

    assert described() == [
        (2, "t", "User:alice", 3),
        (2, "t", "User:bob", 3),
        (3, "*", "User:bob", 3),
    ]
    assert described(principal_filter="User:bob") == [
        (2, "t", "User:bob", 3),
        (3, "*", "User:bob", 3),
    ]
    assert described(
        resource_type_filter=3, resource_name_filter="any-group", pattern_type_filter=2
    ) == [(3, "*", "User:bob", 3)]
    delete = p.DeleteAclsRequest(
        filters=[
            p.DeleteAclsFilter(
                resource_type_filter=1,
                pattern_type_filter=1,
                principal_filter="User:bob",
                operation=1,
                permission_type=1,
            ),
            p.DeleteAclsFilter(
                resource_type_filter=0, pattern_type_filter=1, operation=1, permission_type=1
            ),
        ]
    )
    answer = call(port, ADMIN, p.ApiKey.DELETE_ACLS, 3, delete)
    assert [len(r.matching_acls) for r in answer.filter_results] == [2, 0]
    assert [r.error_code for r in answer.filter_results] == [0, ErrorCode.INVALID_REQUEST]
    assert described() == [(2, "t", "User:alice", 3)]


def test_acl_apis_without_an_authorizer_say_security_disabled(broker: BrokerThread) -> None:
    answer = call(
        broker.port,
        None,
        p.ApiKey.DESCRIBE_ACLS,
        1,
        p.DescribeAclsRequest(
            resource_type_filter=1, pattern_type_filter=1, operation=1, permission_type=1
        ),
    )
    assert answer.error_code == ErrorCode.SECURITY_DISABLED


def test_kafka_pythons_admin_client_manages_acls(acl_broker: BrokerThread) -> None:
    from kafka.admin import (
        ACL,
        ACLFilter,
        ACLOperation,
        ACLPermissionType,
        ACLResourcePatternType,
        KafkaAdminClient,
        ResourcePattern,
        ResourcePatternFilter,
    )
    from kafka.admin import (
        ResourceType as KResourceType,
    )

    admin = KafkaAdminClient(
        bootstrap_servers=acl_broker.bootstrap,
        security_protocol="SASL_PLAINTEXT",
        sasl_mechanism="SCRAM-SHA-512",
        sasl_plain_username="admin",
        sasl_plain_password="admin-secret",
    )
    try:
        acl = ACL(
            principal="User:alice",
            host="*",
            operation=ACLOperation.READ,
            permission_type=ACLPermissionType.ALLOW,
            resource_pattern=ResourcePattern(KResourceType.TOPIC, "kp"),
        )
        result = admin.create_acls([acl])
        assert result["succeeded"] and not result["failed"]
        found, _ = admin.describe_acls(
            ACLFilter(
                principal=None,
                host="*",
                operation=ACLOperation.ANY,
                permission_type=ACLPermissionType.ANY,
                resource_pattern=ResourcePatternFilter(
                    KResourceType.TOPIC, "kp", ACLResourcePatternType.LITERAL
                ),
            )
        )
        assert [(a.principal, a.resource_pattern.resource_name) for a in found] == [
            ("User:alice", "kp")
        ]
    finally:
        admin.close()


def test_metadata_auto_creates_only_the_topics_the_principal_may_create(tmp_path: Path) -> None:
    """Kafka's rule, per topic: a missing topic the principal may describe but not create is
    answered TOPIC_AUTHORIZATION_FAILED, while the others in the same request are created."""
    thread = BrokerThread(
        tmp_path / "data",
        sasl_mechanisms=("SCRAM-SHA-512",),
        sasl_users={"admin": "admin-secret", "alice": "alice-secret"},
        authorizer=True,
        super_users=("User:admin",),
    )
    thread.start()
    try:
        port = thread.port
        create_topics(port, "shared")
        assert add_acls(
            port,
            (TOPIC, "alice-", PREFIXED, "User:alice", CREATE, ALLOW),
            (TOPIC, "*", LITERAL, "User:alice", DESCRIBE, ALLOW),
        ) == [0, 0]
        wanted = ["alice-new", "bob-new", "shared", "alice-invalid!"]
        answer = call(
            port,
            ALICE,
            p.ApiKey.METADATA,
            8,
            p.MetadataRequest(topics=[p.MetadataRequestTopic(name=n) for n in wanted]),
        )
        codes = {t.name: t.error_code for t in answer.topics}
        assert codes == {
            "alice-new": 0,
            "bob-new": ErrorCode.TOPIC_AUTHORIZATION_FAILED,
            "shared": 0,
            "alice-invalid!": ErrorCode.INVALID_TOPIC_EXCEPTION,
        }
        everything = call(port, ADMIN, p.ApiKey.METADATA, 8, p.MetadataRequest(topics=None))
        assert sorted(t.name for t in everything.topics) == ["alice-new", "shared"]
        # Without auto-creation asked for, a missing topic is only unknown.
        answer = call(
            port,
            ALICE,
            p.ApiKey.METADATA,
            8,
            p.MetadataRequest(
                topics=[p.MetadataRequestTopic(name="bob-new")], allow_auto_topic_creation=False
            ),
        )
        assert [t.error_code for t in answer.topics] == [ErrorCode.UNKNOWN_TOPIC_OR_PARTITION]
    finally:
        thread.stop()
