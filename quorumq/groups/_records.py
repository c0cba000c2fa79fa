"""``__consumer_offsets`` records: Kafka's key and value layouts, byte for byte.

Theory of operation: the coordinator of a group is the leader of partition
:func:`partition_for_group` of the compacted ``__consumer_offsets`` topic. Everything it must not
forget is a record there, keyed so that compaction keeps the latest per key:

* an **offset commit**: key ``OffsetCommitKey`` (version 0 or 1, same layout: group, topic,
  partition), value ``OffsetCommitValue`` (we write v3 with the leader epoch, or v1 when the
  commit carried an explicit retention, as Kafka does);
* **group metadata**: key ``GroupMetadataKey`` (version 2: group), value ``GroupMetadataValue``
  (we write v3: generation, protocol, leader, state timestamp and every member with its
  subscription and assignment bytes).

A record with a null value is a tombstone: the offset (or the group) is deleted. Keys and values
start with an ``int16`` version. We read every version Kafka has written (values v0-v4, v4 being
the first flexible one), so a quorumq coordinator can load a log written by Kafka and the other
way round. Keys of the KIP-848 coordinator (version 3 and up) are not ours: :func:`decode_key`
returns ``None`` for them and the loader skips them.
"""

from __future__ import annotations

import attrs

from quorumq.errors import InvalidRecord
from quorumq.groups._types import TopicPartition
from quorumq.groups._wire import Reader, Writer

__all__ = [
    "DEFAULT_OFFSETS_PARTITIONS",
    "GroupMetadataKey",
    "GroupMetadataValue",
    "MemberMetadataValue",
    "OffsetAndMetadata",
    "OffsetCommitKey",
    "decode_group_metadata_value",
    "decode_key",
    "decode_offset_commit_value",
    "encode_group_metadata_key",
    "encode_group_metadata_value",
    "encode_offset_commit_key",
    "encode_offset_commit_value",
    "group_metadata_record",
    "group_tombstone",
    "java_string_hash",
    "offset_commit_record",
    "offset_tombstone",
    "partition_for_group",
]

DEFAULT_OFFSETS_PARTITIONS = 50
"""Kafka's ``offsets.topic.num.partitions`` default."""

Record = tuple[bytes, bytes | None]


def java_string_hash(text: str) -> int:
    """Returns Java's ``String.hashCode()`` of ``text``: s[0]*31^(n-1) + ... over UTF-16 units,
    wrapped to a signed 32-bit int."""
    h = 0
    raw = text.encode("utf-16-be", "surrogatepass")
    for i in range(0, len(raw), 2):
        h = (31 * h + (raw[i] << 8 | raw[i + 1])) & 0xFFFFFFFF
    return h - (1 << 32) if h & 0x80000000 else h


def partition_for_group(group_id: str, num_partitions: int = DEFAULT_OFFSETS_PARTITIONS) -> int:
    """Returns the ``__consumer_offsets`` partition of ``group_id``, as Kafka computes it:
    ``Utils.abs(groupId.hashCode) % offsets.topic.num.partitions``.

    ``Utils.abs`` maps ``Integer.MIN_VALUE`` to 0 instead of overflowing; agreeing on this matters
    because clients never compute it, but a quorumq log read by Kafka (or the reverse) must find
    each group on the partition that holds its records.
    """
    if num_partitions < 1:
        raise ValueError(f"offsets.topic.num.partitions must be at least 1, not {num_partitions}")
    h = java_string_hash(group_id)
    return (0 if h == -(1 << 31) else abs(h)) % num_partitions


# --- values -----------------------------------------------------------------------------------


@attrs.frozen
class OffsetCommitKey:
    """Key of a committed offset (``OffsetCommitKey`` v0/v1)."""

    group_id: str
    topic: str
    partition: int


@attrs.frozen
class GroupMetadataKey:
    """Key of a group's metadata (``GroupMetadataKey`` v2)."""

    group_id: str


@attrs.frozen
class OffsetAndMetadata:
    """A committed offset as stored (``OffsetCommitValue``) and as OffsetFetch answers it.

    ``expire_timestamp_ms`` is set only when the commit named a retention (OffsetCommit v2-v4);
    it selects value v1, the only version that stores it.
    """

    offset: int
    metadata: str = ""
    commit_timestamp_ms: int = -1
    leader_epoch: int = -1
    expire_timestamp_ms: int | None = None


@attrs.frozen
class MemberMetadataValue:
    """One member inside ``GroupMetadataValue``: who it is, its timeouts, its two byte blobs.

    ``subscription`` is the member's metadata for the group's chosen protocol, ``assignment``
    what the leader gave it; both opaque to the coordinator (ConsumerProtocol for consumers).
    """

    member_id: str
    client_id: str
    client_host: str
    rebalance_timeout_ms: int
    session_timeout_ms: int
    subscription: bytes
    assignment: bytes
    group_instance_id: str | None = None


@attrs.frozen
class GroupMetadataValue:
    """A group's metadata as stored after each generation (``GroupMetadataValue``)."""

    protocol_type: str
    generation_id: int
    protocol_name: str | None
    leader: str | None
    members: tuple[MemberMetadataValue, ...] = ()
    current_state_timestamp_ms: int = -1


# --- keys -------------------------------------------------------------------------------------

OFFSET_COMMIT_KEY_VERSION = 1
GROUP_METADATA_KEY_VERSION = 2


def encode_offset_commit_key(group_id: str, topic: str, partition: int) -> bytes:
    """Returns ``OffsetCommitKey`` v1 bytes (Kafka writes v1; v0 has the same layout)."""
    w = Writer()
    w.int16(OFFSET_COMMIT_KEY_VERSION)
    w.string(group_id)
    w.string(topic)
    w.int32(partition)
    return w.getvalue()


def encode_group_metadata_key(group_id: str) -> bytes:
    """Returns ``GroupMetadataKey`` v2 bytes."""
    w = Writer()
    w.int16(GROUP_METADATA_KEY_VERSION)
    w.string(group_id)
    return w.getvalue()


def decode_key(data: bytes) -> OffsetCommitKey | GroupMetadataKey | None:
    """Returns the key of a ``__consumer_offsets`` record, or None for a key version that belongs
    to another coordinator (KIP-848 consumer groups, share groups: version 3 and up).

    Raises:
        InvalidRecord: truncated or malformed bytes, or a negative version.
    """
    r = Reader(data)
    version = r.int16()
    if version in (0, 1):
        return OffsetCommitKey(r.string(), r.string(), r.int32())
    if version == 2:
        return GroupMetadataKey(r.string())
    if version < 0:
        raise InvalidRecord(f"negative __consumer_offsets key version {version}")
    return None


# --- offset commit values ---------------------------------------------------------------------


def encode_offset_commit_value(value: OffsetAndMetadata) -> bytes:
    """Returns ``OffsetCommitValue`` bytes: v1 when an expire timestamp is set, else v3."""
    w = Writer()
    if value.expire_timestamp_ms is not None:
        w.int16(1)
        w.int64(value.offset)
        w.string(value.metadata)
        w.int64(value.commit_timestamp_ms)
        w.int64(value.expire_timestamp_ms)
    else:
        w.int16(3)
        w.int64(value.offset)
        w.int32(value.leader_epoch)
        w.string(value.metadata)
        w.int64(value.commit_timestamp_ms)
    return w.getvalue()


def decode_offset_commit_value(data: bytes) -> OffsetAndMetadata:
    """Returns the committed offset in ``OffsetCommitValue`` bytes (v0-v4).

    Raises:
        InvalidRecord: truncated or malformed bytes, or an unknown version.
    """
    r = Reader(data)
    version = r.int16()
    if version < 0 or version > 4:
        raise InvalidRecord(f"unknown OffsetCommitValue version {version}")
    flexible = version >= 4
    offset = r.int64()
    leader_epoch = r.int32() if version >= 3 else -1
    metadata = r.string(compact=flexible)
    commit_timestamp = r.int64()
    expire_timestamp = r.int64() if version == 1 else None
    if flexible:
        r.skip_tagged_fields()
    return OffsetAndMetadata(offset, metadata, commit_timestamp, leader_epoch, expire_timestamp)


# --- group metadata values --------------------------------------------------------------------

GROUP_METADATA_VALUE_VERSION = 3


def encode_group_metadata_value(
    value: GroupMetadataValue, version: int = GROUP_METADATA_VALUE_VERSION
) -> bytes:
    """Returns ``GroupMetadataValue`` bytes at ``version`` (0-3; Kafka 2.3+ writes v3).

    Lower versions drop the fields they lack (instance ids, rebalance timeouts, the state
    timestamp); they exist for tests and for logs an old Kafka must read.
    """
    if not 0 <= version <= 3:
        raise ValueError(f"GroupMetadataValue version {version} is not writable (0-3)")
    w = Writer()
    w.int16(version)
    w.string(value.protocol_type)
    w.int32(value.generation_id)
    w.nullable_string(value.protocol_name)
    w.nullable_string(value.leader)
    if version >= 2:
        w.int64(value.current_state_timestamp_ms)
    w.int32(len(value.members))
    for m in value.members:
        w.string(m.member_id)
        if version >= 3:
            w.nullable_string(m.group_instance_id)
        w.string(m.client_id)
        w.string(m.client_host)
        if version >= 1:
            w.int32(m.rebalance_timeout_ms)
        w.int32(m.session_timeout_ms)
        w.bytes_(m.subscription)
        w.bytes_(m.assignment)
    return w.getvalue()


def decode_group_metadata_value(data: bytes) -> GroupMetadataValue:
    """Returns the group metadata in ``GroupMetadataValue`` bytes (v0-v4).

    v0 has no rebalance timeout; as Kafka does, the member's session timeout stands in for it.

    Raises:
        InvalidRecord: truncated or malformed bytes, or an unknown version.
    """
    r = Reader(data)
    version = r.int16()
    if version < 0 or version > 4:
        raise InvalidRecord(f"unknown GroupMetadataValue version {version}")
    flexible = version >= 4
    protocol_type = r.string(compact=flexible)
    generation = r.int32()
    protocol = r.nullable_string(compact=flexible)
    leader = r.nullable_string(compact=flexible)
    state_timestamp = r.int64() if version >= 2 else -1
    members = []
    for _ in range(r.array_length(compact=flexible)):
        member_id = r.string(compact=flexible)
        instance_id = r.nullable_string(compact=flexible) if version >= 3 else None
        client_id = r.string(compact=flexible)
        client_host = r.string(compact=flexible)
        rebalance_timeout = r.int32() if version >= 1 else None
        session_timeout = r.int32()
        subscription = r.bytes_(compact=flexible)
        assignment = r.bytes_(compact=flexible)
        if flexible:
            r.skip_tagged_fields()
        members.append(
            MemberMetadataValue(
                member_id,
                client_id,
                client_host,
                session_timeout if rebalance_timeout is None else rebalance_timeout,
                session_timeout,
                subscription,
                assignment,
                instance_id,
            )
        )
    if flexible:
        r.skip_tagged_fields()
    return GroupMetadataValue(
        protocol_type, generation, protocol, leader, tuple(members), state_timestamp
    )


# --- whole records ----------------------------------------------------------------------------


def offset_commit_record(group_id: str, tp: TopicPartition, value: OffsetAndMetadata) -> Record:
    """Returns the ``(key, value)`` record that stores a committed offset."""
    return encode_offset_commit_key(group_id, tp.topic, tp.partition), encode_offset_commit_value(
        value
    )


def offset_tombstone(group_id: str, tp: TopicPartition) -> Record:
    """Returns the tombstone that deletes a committed offset (expiry, OffsetDelete)."""
    return encode_offset_commit_key(group_id, tp.topic, tp.partition), None


def group_metadata_record(group_id: str, value: GroupMetadataValue) -> Record:
    """Returns the ``(key, value)`` record that stores a group's metadata."""
    return encode_group_metadata_key(group_id), encode_group_metadata_value(value)


def group_tombstone(group_id: str) -> Record:
    """Returns the tombstone that deletes a group (it became Dead)."""
    return encode_group_metadata_key(group_id), None
