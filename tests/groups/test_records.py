"""__consumer_offsets records equal Kafka's schema encoding byte for byte; the loader replays them.

The independent encoder is kafka-python's generic schema codec fed with Kafka's record schemas
(``kafka_schemas/``), so a layout mistake here would have to be made twice to pass.
"""

from __future__ import annotations

import contextlib
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from kafka.protocol.api_data import ApiData

from quorumq.errors import InvalidRecord
from quorumq.groups import (
    GroupMetadataKey,
    GroupMetadataValue,
    GroupStateLoader,
    MemberMetadataValue,
    OffsetAndMetadata,
    OffsetCommitKey,
    TopicPartition,
    decode_group_metadata_value,
    decode_key,
    decode_offset_commit_value,
    encode_group_metadata_key,
    encode_group_metadata_value,
    encode_offset_commit_key,
    encode_offset_commit_value,
    group_metadata_record,
    group_tombstone,
    java_string_hash,
    offset_commit_record,
    offset_tombstone,
    partition_for_group,
)

SCHEMAS = "tests.groups.kafka_schemas"


def _kafka_schema(name: str) -> Any:
    """kafka-python's data class for one of Kafka's record schemas (it names classes after the
    schema, hence ``type``)."""
    return type(name, (ApiData,), {}, load_json=SCHEMAS)


KafkaGroupMetadataValue = _kafka_schema("GroupMetadataValue")
KafkaOffsetCommitValue = _kafka_schema("OffsetCommitValue")
KafkaOffsetCommitKey = _kafka_schema("OffsetCommitKey")
KafkaGroupMetadataKey = _kafka_schema("GroupMetadataKey")

names = st.text(max_size=12)
i32 = st.integers(min_value=-(2**31), max_value=2**31 - 1)
i64 = st.integers(min_value=-(2**63), max_value=2**63 - 1)

members = st.builds(
    MemberMetadataValue,
    member_id=names,
    client_id=names,
    client_host=names,
    rebalance_timeout_ms=i32,
    session_timeout_ms=i32,
    subscription=st.binary(max_size=16),
    assignment=st.binary(max_size=16),
    group_instance_id=st.one_of(st.none(), names),
)
group_values = st.builds(
    GroupMetadataValue,
    protocol_type=names,
    generation_id=i32,
    protocol_name=st.one_of(st.none(), names),
    leader=st.one_of(st.none(), names),
    members=st.lists(members, max_size=3).map(tuple),
    current_state_timestamp_ms=i64,
)
offset_values = st.builds(
    OffsetAndMetadata,
    offset=i64,
    metadata=names,
    commit_timestamp_ms=i64,
    leader_epoch=i32,
    expire_timestamp_ms=st.one_of(st.none(), i64),
)


def _kafka_group_value(value: GroupMetadataValue, version: int) -> Any:
    member_cls = KafkaGroupMetadataValue.MemberMetadata
    return KafkaGroupMetadataValue(
        version=version,
        protocol_type=value.protocol_type,
        generation=value.generation_id,
        protocol=value.protocol_name,
        leader=value.leader,
        current_state_timestamp=value.current_state_timestamp_ms,
        members=[
            member_cls(
                member_id=m.member_id,
                group_instance_id=m.group_instance_id,
                client_id=m.client_id,
                client_host=m.client_host,
                rebalance_timeout=m.rebalance_timeout_ms,
                session_timeout=m.session_timeout_ms,
                subscription=m.subscription,
                assignment=m.assignment,
            )
            for m in value.members
        ],
    )


def _as_read_at(value: GroupMetadataValue, version: int) -> GroupMetadataValue:
    """What survives a write at ``version``: older versions lack some fields."""
    return GroupMetadataValue(
        value.protocol_type,
        value.generation_id,
        value.protocol_name,
        value.leader,
        tuple(
            MemberMetadataValue(
                m.member_id,
                m.client_id,
                m.client_host,
                m.rebalance_timeout_ms if version >= 1 else m.session_timeout_ms,
                m.session_timeout_ms,
                m.subscription,
                m.assignment,
                m.group_instance_id if version >= 3 else None,
            )
            for m in value.members
        ),
        value.current_state_timestamp_ms if version >= 2 else -1,
    )


@settings(max_examples=150, deadline=None)
@given(group_values, st.integers(min_value=0, max_value=3))
def test_group_metadata_value_bytes_equal_kafka_schema(
    value: GroupMetadataValue, version: int
) -> None:
    ours = encode_group_metadata_value(value, version)
    assert ours == bytes(_kafka_group_value(value, version).encode())
    assert decode_group_metadata_value(ours) == _as_read_at(value, version)


@settings(max_examples=100, deadline=None)
@given(group_values)
def test_group_metadata_value_v4_flexible_is_read(value: GroupMetadataValue) -> None:
    raw = bytes(_kafka_group_value(value, 4).encode())
    assert decode_group_metadata_value(raw) == value


@settings(max_examples=150, deadline=None)
@given(offset_values)
def test_offset_commit_value_bytes_equal_kafka_schema(value: OffsetAndMetadata) -> None:
    ours = encode_offset_commit_value(value)
    version = 1 if value.expire_timestamp_ms is not None else 3
    kafka = KafkaOffsetCommitValue(
        version=version,
        offset=value.offset,
        leader_epoch=value.leader_epoch,
        metadata=value.metadata,
        commit_timestamp=value.commit_timestamp_ms,
        expire_timestamp=-1 if value.expire_timestamp_ms is None else value.expire_timestamp_ms,
    )
    assert ours == bytes(kafka.encode())
    decoded = decode_offset_commit_value(ours)
    if version == 1:
        assert decoded == OffsetAndMetadata(
            value.offset, value.metadata, value.commit_timestamp_ms, -1, value.expire_timestamp_ms
        )
    else:
        assert decoded == value


@pytest.mark.parametrize("version", [0, 2, 4])
def test_offset_commit_value_other_versions_are_read(version: int) -> None:
    raw = bytes(
        KafkaOffsetCommitValue(
            version=version, offset=7, leader_epoch=3, metadata="m", commit_timestamp=99
        ).encode()
    )
    expected_epoch = 3 if version >= 3 else -1
    assert decode_offset_commit_value(raw) == OffsetAndMetadata(7, "m", 99, expected_epoch, None)


@settings(max_examples=100, deadline=None)
@given(names, names, i32)
def test_keys_equal_kafka_schema_and_round_trip(group: str, topic: str, partition: int) -> None:
    offset_key = encode_offset_commit_key(group, topic, partition)
    assert offset_key == bytes(
        KafkaOffsetCommitKey(version=1, group=group, topic=topic, partition=partition).encode()
    )
    assert decode_key(offset_key) == OffsetCommitKey(group, topic, partition)
    v0 = bytes(
        KafkaOffsetCommitKey(version=0, group=group, topic=topic, partition=partition).encode()
    )
    assert decode_key(v0) == OffsetCommitKey(group, topic, partition)
    group_key = encode_group_metadata_key(group)
    assert group_key == bytes(KafkaGroupMetadataKey(version=2, group=group).encode())
    assert decode_key(group_key) == GroupMetadataKey(group)


def test_keys_of_other_coordinators_are_skipped() -> None:
    assert decode_key(b"\x00\x03\x00\x01g") is None
    loader = GroupStateLoader()
    loader.apply(b"\x00\x05\x00\x01g", b"whatever")
    assert loader.skipped == 1
    assert loader.group_ids() == set()


@pytest.mark.parametrize(
    "raw", [b"", b"\x00", b"\x00\x01\x00\x05ab", b"\xff\xff", b"\x00\x02\xff\xfe"]
)
def test_bad_keys_raise_invalid_record(raw: bytes) -> None:
    with pytest.raises(InvalidRecord):
        decode_key(raw)


@settings(max_examples=200, deadline=None)
@given(st.binary(max_size=60))
def test_garbage_values_raise_only_invalid_record(raw: bytes) -> None:
    for decode in (decode_offset_commit_value, decode_group_metadata_value, decode_key):
        with contextlib.suppress(InvalidRecord):
            decode(raw)


def test_unknown_value_versions_are_refused() -> None:
    with pytest.raises(InvalidRecord):
        decode_offset_commit_value(b"\x00\x05" + b"\x00" * 30)
    with pytest.raises(InvalidRecord):
        decode_group_metadata_value(b"\x00\x09" + b"\x00" * 30)


# --- partition_for_group ----------------------------------------------------------------------


def _reference_hash(text: str) -> int:
    """Java's String.hashCode for BMP-only text, written the obvious way."""
    h = 0
    for ch in text:
        h = (h * 31 + ord(ch)) % 2**32
    return h - 2**32 if h >= 2**31 else h


def test_java_string_hash_known_values() -> None:
    assert java_string_hash("") == 0
    assert java_string_hash("hello") == 99162322
    assert java_string_hash("polygenelubricants") == -(2**31)
    # U+1F600 is two UTF-16 code units in Java: 0xD83D * 31 + 0xDE00.
    assert java_string_hash("\U0001f600") == 0xD83D * 31 + 0xDE00


@settings(max_examples=200, deadline=None)
@given(st.text(alphabet=st.characters(max_codepoint=0xD7FF), max_size=30))
def test_java_string_hash_matches_reference(text: str) -> None:
    assert java_string_hash(text) == _reference_hash(text)


def test_partition_for_group_is_kafkas() -> None:
    assert partition_for_group("hello") == 99162322 % 50
    assert partition_for_group("polygenelubricants") == 0  # Utils.abs(MIN_VALUE) == 0
    assert partition_for_group("hello", 7) == 99162322 % 7
    assert java_string_hash("my-group") == -1906497762  # negative: abs, not Python's modulo
    assert partition_for_group("my-group") == 1906497762 % 50
    with pytest.raises(ValueError):
        partition_for_group("g", 0)


# --- loader -----------------------------------------------------------------------------------


def test_loader_keeps_the_latest_value_and_honours_tombstones() -> None:
    tp0, tp1 = TopicPartition("t", 0), TopicPartition("t", 1)
    group = GroupMetadataValue("consumer", 3, "range", "m1", (), 10)
    records = [
        offset_commit_record("g", tp0, OffsetAndMetadata(1, "", 1)),
        offset_commit_record("g", tp0, OffsetAndMetadata(5, "", 2)),
        offset_commit_record("g", tp1, OffsetAndMetadata(9, "", 2)),
        offset_tombstone("g", tp1),
        group_metadata_record("g", GroupMetadataValue("consumer", 2, "range", "m1")),
        group_metadata_record("g", group),
        offset_commit_record("gone", tp0, OffsetAndMetadata(3)),
        offset_tombstone("gone", tp0),
        group_metadata_record("dead", group),
        group_tombstone("dead"),
        offset_commit_record("solo", tp1, OffsetAndMetadata(4)),
    ]
    loader = GroupStateLoader()
    loader.apply_all(records)
    assert loader.groups == {"g": group}
    assert loader.offsets == {
        "g": {tp0: OffsetAndMetadata(5, "", 2)},
        "solo": {tp1: OffsetAndMetadata(4)},
    }
    assert loader.group_ids() == {"g", "solo"}
