"""Kafka's ConsumerProtocol: the bytes inside JoinGroup metadata and SyncGroup assignments.

Theory of operation: the group coordinator treats a member's protocol metadata and assignment
as opaque bytes; only consumers read them. A consumer puts a :class:`Subscription` (the topics
it wants, user data, and from v1 the partitions it owns) into each JoinGroup protocol entry,
and the leader answers SyncGroup with one :class:`Assignment` per member. Both start with an
``int16`` version, then the fields of Kafka's ``ConsumerProtocolSubscription`` /
``ConsumerProtocolAssignment`` schemas (non-flexible: ``int16``-length strings, ``int32``
array counts, ``int32``-length nullable bytes).

As Kafka's ``ConsumerProtocol`` does, a version newer than the newest we know (3) is read with
the newest layout and trailing bytes are ignored: later versions only append fields, so old
consumers keep working beside new ones. A negative version is refused.
"""

from __future__ import annotations

import struct

import attrs

from quorumq.errors import InvalidRequest

__all__ = [
    "CONSUMER_PROTOCOL_TYPE",
    "MAX_CONSUMER_PROTOCOL_VERSION",
    "Assignment",
    "Subscription",
    "TopicPartitions",
    "decode_assignment",
    "decode_subscription",
    "encode_assignment",
    "encode_subscription",
]

CONSUMER_PROTOCOL_TYPE = "consumer"
"""The JoinGroup ``protocol_type`` of Kafka consumers."""

MAX_CONSUMER_PROTOCOL_VERSION = 3

TopicPartitions = tuple[str, tuple[int, ...]]
"""One ``(topic, partitions)`` entry of an assignment or of owned partitions, in wire order."""

_I16 = struct.Struct(">h")
_I32 = struct.Struct(">i")


@attrs.frozen
class Subscription:
    """A consumer's JoinGroup metadata (``ConsumerProtocolSubscription`` v0-v3).

    ``owned_partitions`` exists from v1 (KIP-429), ``generation_id`` from v2 and ``rack_id``
    from v3; encoding at a lower version drops them, as Kafka does.
    """

    topics: tuple[str, ...]
    user_data: bytes | None = None
    owned_partitions: tuple[TopicPartitions, ...] = ()
    generation_id: int = -1
    rack_id: str | None = None
    version: int = 0


@attrs.frozen
class Assignment:
    """A member's SyncGroup assignment (``ConsumerProtocolAssignment``; v0-v3 share a layout)."""

    assigned_partitions: tuple[TopicPartitions, ...]
    user_data: bytes | None = None
    version: int = 0

    def partitions(self) -> list[tuple[str, int]]:
        """Returns the assignment as ``(topic, partition)`` pairs, in wire order."""
        return [(topic, p) for topic, parts in self.assigned_partitions for p in parts]


def encode_subscription(subscription: Subscription) -> bytes:
    """Returns the JoinGroup metadata bytes for ``subscription`` at ``subscription.version``.

    Raises:
        InvalidRequest: a negative version or a field too long for its wire type.
    """
    version = _check_version(subscription.version)
    out = bytearray(_I16.pack(version))
    out += _I32.pack(len(subscription.topics))
    for topic in subscription.topics:
        _put_string(out, topic)
    _put_nullable_bytes(out, subscription.user_data)
    if version >= 1:
        _put_topic_partitions(out, subscription.owned_partitions)
    if version >= 2:
        out += _I32.pack(subscription.generation_id)
    if version >= 3:
        _put_nullable_string(out, subscription.rack_id)
    return bytes(out)


def decode_subscription(data: bytes) -> Subscription:
    """Returns the :class:`Subscription` in JoinGroup metadata bytes.

    Raises:
        InvalidRequest: truncated or malformed bytes, or a negative version.
    """
    reader = _Reader(data)
    wire_version = reader.int16()
    version = _check_version(wire_version)
    topics = tuple(reader.string() for _ in range(reader.array_length()))
    user_data = reader.nullable_bytes()
    owned: tuple[TopicPartitions, ...] = ()
    generation_id = -1
    rack_id = None
    if version >= 1:
        owned = _read_topic_partitions(reader)
    if version >= 2:
        generation_id = reader.int32()
    if version >= 3:
        rack_id = reader.nullable_string()
    return Subscription(topics, user_data, owned, generation_id, rack_id, wire_version)


def encode_assignment(assignment: Assignment) -> bytes:
    """Returns the SyncGroup assignment bytes for ``assignment``.

    Raises:
        InvalidRequest: a negative version or a field too long for its wire type.
    """
    out = bytearray(_I16.pack(_check_version(assignment.version)))
    _put_topic_partitions(out, assignment.assigned_partitions)
    _put_nullable_bytes(out, assignment.user_data)
    return bytes(out)


def decode_assignment(data: bytes) -> Assignment:
    """Returns the :class:`Assignment` in SyncGroup assignment bytes.

    An empty byte string decodes as an empty assignment: that is what the coordinator hands a
    member the leader left out (Kafka's consumer treats it the same way).

    Raises:
        InvalidRequest: truncated or malformed bytes, or a negative version.
    """
    if not data:
        return Assignment(())
    reader = _Reader(data)
    wire_version = reader.int16()
    _check_version(wire_version)
    assigned = _read_topic_partitions(reader)
    user_data = reader.nullable_bytes()
    return Assignment(assigned, user_data, wire_version)


def _check_version(version: int) -> int:
    if version < 0:
        raise InvalidRequest(f"unsupported consumer protocol version {version}")
    if version > 0x7FFF:
        raise InvalidRequest(f"consumer protocol version {version} does not fit int16")
    return min(version, MAX_CONSUMER_PROTOCOL_VERSION)


def _put_string(out: bytearray, value: str) -> None:
    raw = value.encode("utf-8")
    if len(raw) > 0x7FFF:
        raise InvalidRequest(f"string of {len(raw)} bytes exceeds int16 length")
    out += _I16.pack(len(raw))
    out += raw


def _put_nullable_string(out: bytearray, value: str | None) -> None:
    if value is None:
        out += _I16.pack(-1)
    else:
        _put_string(out, value)


def _put_nullable_bytes(out: bytearray, value: bytes | None) -> None:
    if value is None:
        out += _I32.pack(-1)
    else:
        out += _I32.pack(len(value))
        out += value


def _put_topic_partitions(out: bytearray, entries: tuple[TopicPartitions, ...]) -> None:
    out += _I32.pack(len(entries))
    for topic, partitions in entries:
        _put_string(out, topic)
        out += _I32.pack(len(partitions))
        for partition in partitions:
            out += _I32.pack(partition)


def _read_topic_partitions(reader: _Reader) -> tuple[TopicPartitions, ...]:
    entries = []
    for _ in range(reader.array_length()):
        topic = reader.string()
        count = reader.array_length()
        entries.append((topic, tuple(reader.int32() for _ in range(count))))
    return tuple(entries)


class _Reader:
    """A cursor over bytes that raises InvalidRequest instead of reading past the end."""

    __slots__ = ("_data", "_pos")

    def __init__(self, data: bytes) -> None:
        self._data = bytes(data)
        self._pos = 0

    def _take(self, size: int) -> bytes:
        if size < 0 or self._pos + size > len(self._data):
            raise InvalidRequest(f"consumer protocol bytes truncated at {self._pos}")
        chunk = self._data[self._pos : self._pos + size]
        self._pos += size
        return chunk

    def int16(self) -> int:
        return int(_I16.unpack(self._take(2))[0])

    def int32(self) -> int:
        return int(_I32.unpack(self._take(4))[0])

    def array_length(self) -> int:
        size = self.int32()
        if size < 0 or size > len(self._data) - self._pos:
            raise InvalidRequest(f"bad array length {size} in consumer protocol bytes")
        return size

    def nullable_string(self) -> str | None:
        size = self.int16()
        if size == -1:
            return None
        if size < 0:
            raise InvalidRequest(f"negative string length {size}")
        try:
            return self._take(size).decode("utf-8")
        except UnicodeDecodeError:
            raise InvalidRequest("consumer protocol string is not UTF-8") from None

    def string(self) -> str:
        value = self.nullable_string()
        if value is None:
            raise InvalidRequest("null topic name in consumer protocol bytes")
        return value

    def nullable_bytes(self) -> bytes | None:
        size = self.int32()
        if size == -1:
            return None
        if size < 0:
            raise InvalidRequest(f"negative bytes length {size}")
        return self._take(size)
