"""The metadata log format: round trips, older versions, corrupt input."""

from __future__ import annotations

import json

import attrs
import pytest

from quorumq.controller.image import (
    READABLE_VERSIONS,
    RECORD_VERSIONS,
    AlterPartition,
    BrokerHeartbeat,
    ClientQuotaChange,
    ConfigChange,
    ControllerEpochBump,
    CreateAcl,
    CreatePartitions,
    CreateTopic,
    DeleteAcl,
    DeleteTopic,
    FenceBroker,
    MetadataImage,
    PartitionChange,
    RegisterBroker,
    RemoveUserScramCredential,
    ReplicaReport,
    UnfenceBroker,
    UserScramCredential,
    decode_image,
    decode_record,
    encode_image,
    encode_record,
    image_from_dict,
    image_to_dict,
    plan_create_topic,
)
from quorumq.errors import CorruptRecord

from ._helpers import apply_all, live_cluster

RECORDS = [
    RegisterBroker(1, "8c0f", "127.0.0.1", 9093, 1_700_000_000_000),
    RegisterBroker(2, "9d1e", "10.0.0.2", 9094, 5, rack="r1"),
    RegisterBroker(
        3, "ae2f", "10.0.0.3", 9092, 6, None, (("INSIDE", "10.0.0.3", 9092), ("OUT", "h", 9093))
    ),
    BrokerHeartbeat(1, 3, 42),
    BrokerHeartbeat(1, 3, 43, (ReplicaReport("orders", 0, 7, 1_000, 8),)),
    FenceBroker(1, 3, 2),
    UnfenceBroker(1, 3, 2),
    CreateTopic("orders", "2f6c", ((0, 1), (1, 0)), {"cleanup.policy": "compact"}),
    CreatePartitions("orders", "2f6c", 2, ((0, 1), (1, 0))),
    DeleteTopic("orders"),
    DeleteTopic("orders", "2f6c"),
    ConfigChange("orders", {"retention.ms": "-1"}, ("segment.ms",)),
    AlterPartition("orders", "2f6c", 0, 1, 4, 9, (1, 0)),
    PartitionChange("orders", "2f6c", 0, 4, 9, 2, new_leader=-1),
    PartitionChange("orders", "2f6c", 0, 4, 9, 2, 0, (0,), (0, 1)),
    ControllerEpochBump(2, 7, 99),
    ClientQuotaChange((("client-id", None),), {"producer_byte_rate": 1024.0}),
    ClientQuotaChange((("client-id", "app"), ("user", "alice")), {}, ("consumer_byte_rate",)),
    UserScramCredential("alice", "SCRAM-SHA-256", b"\x00salt", 4096, b"s" * 32, b"k" * 32),
    RemoveUserScramCredential("alice", "SCRAM-SHA-512"),
    CreateAcl(2, "orders", 3, "User:alice", "*", 4, 3),
    DeleteAcl(3, "g-", 4, "User:*", "10.0.0.1", 3, 2),
]


@pytest.mark.parametrize("record", RECORDS, ids=lambda r: type(r).__name__)
def test_codec_record_round_trip(record) -> None:
    data = encode_record(record)
    obj = json.loads(data)
    assert obj["type"] == type(record).__name__ and obj["v"] == RECORD_VERSIONS[obj["type"]]
    assert decode_record(data) == record
    assert encode_record(decode_record(data)) == data


def test_codec_reads_a_v1_heartbeat() -> None:
    # BrokerHeartbeat v1 (liveness only) predates the replica reports of v2.
    old = b'{"broker_epoch":3,"broker_id":1,"now_ms":42,"type":"BrokerHeartbeat","v":1}'
    assert decode_record(old) == BrokerHeartbeat(1, 3, 42, None)
    assert READABLE_VERSIONS["BrokerHeartbeat"] == (1, 2)


def test_codec_reads_a_v1_registration_as_one_listener_and_a_v3_snapshot_too() -> None:
    old = (
        b'{"broker_id":1,"host":"10.0.0.1","incarnation_id":"x","now_ms":5,"port":9092,'
        b'"rack":null,"type":"RegisterBroker","v":1}'
    )
    assert decode_record(old) == RegisterBroker(1, "x", "10.0.0.1", 9092, 5)
    image = apply_all(
        [RegisterBroker(7, "y", "10.0.0.7", 9092, 5, None, (("IN", "10.0.0.7", 9092),))],
        live_cluster(),
    )
    assert decode_image(encode_image(image)) == image
    broker = image.brokers[7]
    assert broker.endpoint("IN") == ("10.0.0.7", 9092) and broker.endpoint("OUT") is None
    snapshot = image_to_dict(image)
    snapshot["v"] = 3
    for entry in snapshot["brokers"]:
        del entry["listeners"]
    read = image_from_dict(snapshot).brokers[7]
    assert read.listeners == () and read.endpoint("ANY") == ("10.0.0.7", 9092)
    snapshot = image_to_dict(image)
    snapshot["brokers"][-1]["listeners"] = [["IN", "10.0.0.7"]]
    with pytest.raises(CorruptRecord, match="listener, host, port"):
        image_from_dict(snapshot)


def test_codec_reads_a_v1_partition_change_written_by_hand() -> None:
    data = json.dumps(
        {
            "type": "PartitionChange",
            "v": 1,
            "topic": "t",
            "topic_id": "x",
            "partition": 2,
            "leader_epoch": 1,
            "partition_epoch": 3,
            "controller_epoch": 4,
            "new_leader": 5,
            "new_isr": [5, 6],
            "new_replicas": None,
        }
    ).encode()
    assert decode_record(data) == PartitionChange("t", "x", 2, 1, 3, 4, 5, (5, 6), None)


@pytest.mark.parametrize(
    "data",
    [
        b"",
        b"\xff\xfe",
        b"[]",
        b'{"type": "Nope", "v": 1}',
        b'{"type": "FenceBroker", "v": 9, "broker_id": 1, "broker_epoch": 1, "controller_epoch": 1}',
        b'{"type": "FenceBroker", "v": 1, "broker_id": 1, "broker_epoch": 1}',
        b'{"type": "FenceBroker", "v": 1, "broker_id": "1", "broker_epoch": 1, "controller_epoch": 1}',
        b'{"type": "FenceBroker", "v": 1, "broker_id": true, "broker_epoch": 1, "controller_epoch": 1}',
        b'{"type": "CreateTopic", "v": 1, "name": "t", "topic_id": "x", "assignments": [1], "configs": {}}',
        b'{"type": "CreateTopic", "v": 1, "name": "t", "topic_id": "x", "assignments": [], "configs": {"a": 1}}',
        b'{"v": 1}',
    ],
)
def test_codec_refuses_corrupt_records(data: bytes) -> None:
    with pytest.raises(CorruptRecord):
        decode_record(data)


def test_codec_image_snapshot_round_trip() -> None:
    image = live_cluster()
    create = plan_create_topic(
        image, "orders", 3, 2, topic_id="id", seed=3, configs={"retention.ms": "5"}
    )
    image = apply_all(
        [
            create,
            BrokerHeartbeat(1, 2, 5_000, (ReplicaReport("orders", 1, 0, 17, 0),)),
            FenceBroker(2, 3, 1),
        ],
        image,
    )
    data = encode_image(image)
    assert decode_image(data) == image
    assert encode_image(decode_image(data)) == data
    assert decode_image(encode_image(MetadataImage())) == MetadataImage()


def test_codec_snapshot_keeps_quotas_credentials_and_acls_and_reads_v2_as_having_none() -> None:
    image = apply_all(
        [
            ClientQuotaChange((("client-id", None),), {"producer_byte_rate": 1024.0}),
            ClientQuotaChange((("user", "alice"),), {"consumer_byte_rate": 5.5}),
            UserScramCredential("alice", "SCRAM-SHA-512", b"salt", 8192, b"s" * 64, b"k" * 64),
            CreateAcl(2, "orders", 3, "User:alice", "*", 4, 3),
            CreateAcl(4, "kafka-cluster", 3, "User:ops", "*", 7, 3),
        ],
        live_cluster(),
    )
    assert len(image.client_quotas.entries) == 2 and len(image.scram_credentials) == 1
    assert len(image.acls) == 2
    assert decode_image(encode_image(image)) == image
    old = image_to_dict(image)
    old["v"] = 2
    del old["client_quotas"], old["scram_credentials"], old["acls"]
    assert not image_from_dict(old).client_quotas and not image_from_dict(old).scram_credentials
    assert not image_from_dict(old).acls
    bad = image_to_dict(image)
    bad["client_quotas"][0]["values"] = [["producer_byte_rate", "fast"]]
    with pytest.raises(CorruptRecord):
        image_from_dict(bad)
    bad = image_to_dict(image)
    bad["scram_credentials"][0]["salt"] = "not base64!"
    with pytest.raises(CorruptRecord):
        image_from_dict(bad)
    for broken in ([2, "t", 3, "User:a", "*", 4], [2, "t", 3, "User:a", "*", 4, 99]):
        bad = image_to_dict(image)
        bad["acls"][0] = broken
        with pytest.raises(CorruptRecord):
            image_from_dict(bad)


def test_codec_reads_a_v1_snapshot_with_heartbeats_and_reports() -> None:
    """Snapshots written while heartbeats were Raft records carry each broker's last heartbeat
    and reports: the heartbeat becomes the registration time, the reports are dropped (the
    active controller waits for fresh ones)."""
    image = apply_all([FenceBroker(2, 3, 1)], live_cluster())
    old = image_to_dict(image)
    old["v"] = 1
    for broker in old["brokers"]:
        broker["last_heartbeat_ms"] = broker.pop("registered_ms") + 500
        broker["reports"] = [["orders", 1, 0, 17, 0]]
    read = image_from_dict(old)
    assert {b: s.registered_ms for b, s in read.brokers.items()} == {0: 1_500, 1: 1_500, 2: 1_500}
    assert attrs.evolve(read, brokers=image.brokers) == image
    old["brokers"][0]["reports"] = [["orders", 1]]
    with pytest.raises(CorruptRecord, match="replica report"):
        image_from_dict(old)


@pytest.mark.parametrize(
    "data",
    [b"nope", b"{}", b'{"type": "MetadataImage", "v": 99}', encode_record(FenceBroker(1, 1, 1))],
)
def test_codec_refuses_corrupt_snapshots(data: bytes) -> None:
    with pytest.raises(CorruptRecord):
        decode_image(data)
