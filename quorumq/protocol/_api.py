"""API keys, version tables, request/response headers and the public encode/decode entry points.

Theory of operation: a request frame is ``RequestHeader`` + body; the header is v1 (api_key,
api_version, correlation_id, nullable client_id) or, for flexible versions, v2 (v1 + tagged
fields). A response frame is ``correlation_id`` (header v0) + body, plus tagged fields (header
v1) for flexible versions, except ApiVersions whose response header is always v0 so that a
client can read it before it knows what the broker speaks (KIP-511).

Everything goes through the schema codec (``_codec.py``) except the two hot paths, which are
written by hand: decoding a Produce request (the record sets become zero-copy ``memoryview``
slices of the frame) and encoding a Fetch response (a list of buffers: our header bytes
interleaved with the caller's stored batch buffers, never concatenated).
"""

from __future__ import annotations

import enum
import struct
from collections.abc import Mapping
from typing import Any

import attrs

from quorumq.errors import InvalidRequest, UnsupportedVersion
from quorumq.protocol import _messages_admin as admin
from quorumq.protocol import _messages_core as core
from quorumq.protocol import _messages_groups as groups
from quorumq.protocol._codec import (
    Buffer,
    Writer,
    malformed,
    read_uvarint,
    struct_reader,
    struct_writer,
)


class ApiKey(enum.IntEnum):
    """Kafka's API keys (org.apache.kafka.common.protocol.ApiKeys) that quorumq knows."""

    PRODUCE = 0
    FETCH = 1
    LIST_OFFSETS = 2
    METADATA = 3
    OFFSET_COMMIT = 8
    OFFSET_FETCH = 9
    FIND_COORDINATOR = 10
    JOIN_GROUP = 11
    HEARTBEAT = 12
    LEAVE_GROUP = 13
    SYNC_GROUP = 14
    DESCRIBE_GROUPS = 15
    LIST_GROUPS = 16
    SASL_HANDSHAKE = 17
    API_VERSIONS = 18
    CREATE_TOPICS = 19
    DELETE_TOPICS = 20
    DELETE_RECORDS = 21
    INIT_PRODUCER_ID = 22
    OFFSET_FOR_LEADER_EPOCH = 23
    DESCRIBE_ACLS = 29
    CREATE_ACLS = 30
    DELETE_ACLS = 31
    DESCRIBE_CONFIGS = 32
    ALTER_CONFIGS = 33
    DESCRIBE_LOG_DIRS = 35
    CREATE_PARTITIONS = 37
    SASL_AUTHENTICATE = 36
    DELETE_GROUPS = 42
    ELECT_LEADERS = 43
    OFFSET_DELETE = 47
    INCREMENTAL_ALTER_CONFIGS = 44
    DESCRIBE_CLIENT_QUOTAS = 48
    ALTER_CLIENT_QUOTAS = 49
    DESCRIBE_USER_SCRAM_CREDENTIALS = 50
    ALTER_USER_SCRAM_CREDENTIALS = 51
    BROKER_HEARTBEAT = 63


# The first flexible version of every API Kafka has (their JSON's "flexibleVersions"), including
# APIs quorumq does not serve: the request header version depends on it, and we must parse the
# header of any request (to answer its correlation id) before we know whether we serve it.
_FLEXIBLE_FROM: dict[int, int] = {
    0: 9, 1: 12, 2: 6, 3: 9, 4: 4, 5: 2, 6: 6, 7: 3, 8: 8, 9: 6, 10: 3, 11: 6, 12: 4, 13: 4, 14: 4,
    15: 5, 16: 3, 17: 1 << 15, 18: 3, 19: 5, 20: 4, 21: 2, 22: 2, 23: 4, 24: 3, 25: 3, 26: 3,
    27: 1, 28: 3, 29: 2, 30: 2, 31: 2, 32: 4, 33: 2, 34: 2, 35: 2, 36: 2, 37: 2, 38: 2, 39: 2,
    40: 2, 41: 2, 42: 2, 43: 2, 44: 1, 45: 0, 46: 0, 47: 1 << 15, 48: 1, 49: 1, 50: 0, 51: 0,
    52: 0, 53: 0, 54: 0, 55: 0, 56: 0, 57: 0, 58: 0, 59: 0, 60: 0, 61: 0, 62: 0, 63: 0, 64: 0,
    65: 0, 66: 0, 67: 0, 68: 0, 69: 0, 70: 0, 71: 0, 72: 0, 73: 0, 74: 0, 75: 0, 76: 0, 77: 0,
    78: 0, 79: 0, 80: 0, 81: 0, 82: 0, 83: 0, 84: 0, 85: 0, 86: 0, 87: 0, 88: 0, 89: 0, 90: 0,
}  # fmt: skip


def is_flexible(api_key: int, api_version: int) -> bool:
    """True if this API version uses compact types and tagged fields (KIP-482)."""
    return api_version >= _FLEXIBLE_FROM.get(api_key, 1 << 15)


def request_header_version(api_key: int, api_version: int) -> int:
    """1 for classic versions, 2 for flexible ones."""
    return 2 if is_flexible(api_key, api_version) else 1


def response_header_version(api_key: int, api_version: int) -> int:
    """0 for classic versions and for ApiVersions always, 1 for flexible ones."""
    if api_key == ApiKey.API_VERSIONS:
        return 0
    return 1 if is_flexible(api_key, api_version) else 0


@attrs.frozen
class ApiSpec:
    """What the codec knows of one API: message classes and the versions it can encode."""

    api_key: ApiKey
    request: type
    response: type
    min_version: int
    max_version: int


_SPECS: dict[int, ApiSpec] = {}


def register(
    api_key: ApiKey, request: type, response: type, min_version: int, max_version: int
) -> None:
    """Adds an API to the codec (at import time of the schema modules)."""
    _SPECS[api_key] = ApiSpec(api_key, request, response, min_version, max_version)


register(ApiKey.API_VERSIONS, core.ApiVersionsRequest, core.ApiVersionsResponse, 0, 3)
register(ApiKey.METADATA, core.MetadataRequest, core.MetadataResponse, 1, 12)
register(ApiKey.PRODUCE, core.ProduceRequest, core.ProduceResponse, 3, 9)
register(ApiKey.FETCH, core.FetchRequest, core.FetchResponse, 4, 12)
register(ApiKey.LIST_OFFSETS, admin.ListOffsetsRequest, admin.ListOffsetsResponse, 1, 7)
register(ApiKey.CREATE_TOPICS, admin.CreateTopicsRequest, admin.CreateTopicsResponse, 0, 5)
register(ApiKey.DELETE_TOPICS, admin.DeleteTopicsRequest, admin.DeleteTopicsResponse, 1, 3)
register(ApiKey.DESCRIBE_CONFIGS, admin.DescribeConfigsRequest, admin.DescribeConfigsResponse, 0, 2)
register(
    ApiKey.DESCRIBE_LOG_DIRS, admin.DescribeLogDirsRequest, admin.DescribeLogDirsResponse, 1, 4
)
register(ApiKey.DELETE_RECORDS, admin.DeleteRecordsRequest, admin.DeleteRecordsResponse, 0, 2)
register(
    ApiKey.CREATE_PARTITIONS, admin.CreatePartitionsRequest, admin.CreatePartitionsResponse, 0, 3
)
register(ApiKey.ALTER_CONFIGS, admin.AlterConfigsRequest, admin.AlterConfigsResponse, 0, 2)
register(
    ApiKey.INCREMENTAL_ALTER_CONFIGS,
    admin.IncrementalAlterConfigsRequest,
    admin.IncrementalAlterConfigsResponse,
    0,
    1,
)
register(ApiKey.INIT_PRODUCER_ID, admin.InitProducerIdRequest, admin.InitProducerIdResponse, 0, 1)
register(
    ApiKey.OFFSET_FOR_LEADER_EPOCH,
    admin.OffsetForLeaderEpochRequest,
    admin.OffsetForLeaderEpochResponse,
    2,
    3,
)
register(ApiKey.ELECT_LEADERS, admin.ElectLeadersRequest, admin.ElectLeadersResponse, 0, 2)
register(
    ApiKey.DESCRIBE_CLIENT_QUOTAS,
    admin.DescribeClientQuotasRequest,
    admin.DescribeClientQuotasResponse,
    0,
    1,
)
register(
    ApiKey.ALTER_CLIENT_QUOTAS,
    admin.AlterClientQuotasRequest,
    admin.AlterClientQuotasResponse,
    0,
    1,
)
register(
    ApiKey.DESCRIBE_USER_SCRAM_CREDENTIALS,
    admin.DescribeUserScramCredentialsRequest,
    admin.DescribeUserScramCredentialsResponse,
    0,
    0,
)
register(
    ApiKey.ALTER_USER_SCRAM_CREDENTIALS,
    admin.AlterUserScramCredentialsRequest,
    admin.AlterUserScramCredentialsResponse,
    0,
    0,
)
register(ApiKey.DESCRIBE_ACLS, admin.DescribeAclsRequest, admin.DescribeAclsResponse, 1, 3)
register(ApiKey.CREATE_ACLS, admin.CreateAclsRequest, admin.CreateAclsResponse, 1, 3)
register(ApiKey.DELETE_ACLS, admin.DeleteAclsRequest, admin.DeleteAclsResponse, 1, 3)
register(ApiKey.BROKER_HEARTBEAT, admin.BrokerHeartbeatRequest, admin.BrokerHeartbeatResponse, 0, 1)
register(ApiKey.FIND_COORDINATOR, admin.FindCoordinatorRequest, admin.FindCoordinatorResponse, 0, 2)
register(ApiKey.JOIN_GROUP, groups.JoinGroupRequest, groups.JoinGroupResponse, 0, 5)
register(ApiKey.SYNC_GROUP, groups.SyncGroupRequest, groups.SyncGroupResponse, 0, 3)
register(ApiKey.HEARTBEAT, groups.HeartbeatRequest, groups.HeartbeatResponse, 0, 3)
register(ApiKey.LEAVE_GROUP, groups.LeaveGroupRequest, groups.LeaveGroupResponse, 0, 3)
register(ApiKey.OFFSET_COMMIT, groups.OffsetCommitRequest, groups.OffsetCommitResponse, 2, 7)
register(ApiKey.OFFSET_FETCH, groups.OffsetFetchRequest, groups.OffsetFetchResponse, 1, 5)
register(ApiKey.OFFSET_DELETE, groups.OffsetDeleteRequest, groups.OffsetDeleteResponse, 0, 0)
register(ApiKey.DELETE_GROUPS, groups.DeleteGroupsRequest, groups.DeleteGroupsResponse, 0, 2)
register(ApiKey.LIST_GROUPS, groups.ListGroupsRequest, groups.ListGroupsResponse, 0, 2)
register(ApiKey.DESCRIBE_GROUPS, groups.DescribeGroupsRequest, groups.DescribeGroupsResponse, 0, 3)
register(ApiKey.SASL_HANDSHAKE, groups.SaslHandshakeRequest, groups.SaslHandshakeResponse, 0, 1)
register(
    ApiKey.SASL_AUTHENTICATE, groups.SaslAuthenticateRequest, groups.SaslAuthenticateResponse, 0, 1
)


def api_spec(api_key: int) -> ApiSpec:
    """The codec's description of ``api_key``.

    Raises:
        InvalidRequest: an API key the codec does not know.
    """
    spec = _SPECS.get(api_key)
    if spec is None:
        raise InvalidRequest(f"unknown api key {api_key}")
    return spec


def codec_versions() -> dict[ApiKey, tuple[int, int]]:
    """Every API and version range the codec can encode and decode (a superset of what the
    broker advertises)."""
    return {spec.api_key: (spec.min_version, spec.max_version) for spec in _SPECS.values()}


# What the broker advertises in ApiVersions: the ranges of issue 3, which every client accepts.
# The codec speaks more (Metadata up to 12, Produce 9, Fetch 12, CreateTopics 5: flexible
# versions, topic ids); widen this table only together with the broker features they imply.
API_VERSIONS: Mapping[ApiKey, tuple[int, int]] = {
    ApiKey.PRODUCE: (3, 8),
    ApiKey.FETCH: (4, 11),
    ApiKey.LIST_OFFSETS: (1, 7),
    ApiKey.METADATA: (1, 8),
    ApiKey.FIND_COORDINATOR: (0, 2),
    ApiKey.API_VERSIONS: (0, 3),
    ApiKey.CREATE_TOPICS: (0, 4),
    ApiKey.DELETE_TOPICS: (1, 3),
    ApiKey.INIT_PRODUCER_ID: (0, 1),
    ApiKey.OFFSET_FOR_LEADER_EPOCH: (2, 3),
    ApiKey.DESCRIBE_CONFIGS: (0, 2),
}

# The classic group protocol (issue 6): add to what the broker advertises once the coordinator
# serves it, e.g. ``{**API_VERSIONS, **GROUP_API_VERSIONS}``.
GROUP_API_VERSIONS: Mapping[ApiKey, tuple[int, int]] = {
    ApiKey.OFFSET_COMMIT: (2, 7),
    ApiKey.OFFSET_FETCH: (1, 5),
    ApiKey.JOIN_GROUP: (0, 5),
    ApiKey.HEARTBEAT: (0, 3),
    ApiKey.LEAVE_GROUP: (0, 3),
    ApiKey.SYNC_GROUP: (0, 3),
    ApiKey.DESCRIBE_GROUPS: (0, 3),
    ApiKey.LIST_GROUPS: (0, 2),
    ApiKey.DELETE_GROUPS: (0, 2),
    ApiKey.OFFSET_DELETE: (0, 0),
}

SASL_API_VERSIONS: Mapping[ApiKey, tuple[int, int]] = {
    ApiKey.SASL_HANDSHAKE: (0, 1),
    ApiKey.SASL_AUTHENTICATE: (0, 1),
}


def api_versions_response(
    versions: Mapping[ApiKey, tuple[int, int]] = API_VERSIONS, error_code: int = 0
) -> core.ApiVersionsResponse:
    """The ApiVersions answer for ``versions`` (use ``error_code=UNSUPPORTED_VERSION`` for a
    request version above 3: :func:`encode_response` then writes it as v0)."""
    keys = [
        core.ApiVersionsResponseKey(api_key=int(k), min_version=lo, max_version=hi)
        for k, (lo, hi) in sorted(versions.items())
    ]
    return core.ApiVersionsResponse(error_code=error_code, api_keys=keys)


# --- headers ----------------------------------------------------------------------------------


@attrs.frozen
class RequestHeader:
    """Request header v1/v2. ``api_key`` is a plain int: it may name an API we do not serve."""

    api_key: int
    api_version: int
    correlation_id: int
    client_id: str | None = None

    @property
    def flexible(self) -> bool:
        return is_flexible(self.api_key, self.api_version)


_HEADER_FIXED = struct.Struct(">hhih")
_HEADER_KEY_VERSION_ID = struct.Struct(">hhi")
_I16 = struct.Struct(">h")
_I32 = struct.Struct(">i")
_DECODE_ERRORS = (struct.error, IndexError, ValueError, UnicodeDecodeError)


def _skip_tagged_fields(buf: memoryview, pos: int) -> int:
    count, pos = read_uvarint(buf, pos)
    for _ in range(count):
        _tag, pos = read_uvarint(buf, pos)
        size, pos = read_uvarint(buf, pos)
        pos += size
        if pos > len(buf):
            raise malformed("tagged field runs past the end of the frame")
    return pos


def decode_request_header(frame: bytes | bytearray | memoryview) -> tuple[RequestHeader, int]:
    """Parses a request header (v1, or v2 for flexible versions of known APIs).

    The version is not checked against what we serve: the caller needs the correlation id (and
    for ApiVersions, must answer an unsupported version with a v0 body).

    Returns:
        The header and the offset of the body in ``frame``.
    Raises:
        InvalidRequest: a frame too short or otherwise malformed.
    """
    buf = memoryview(frame)
    try:
        api_key, api_version, correlation_id, n = _HEADER_FIXED.unpack_from(buf, 0)
        pos = _HEADER_FIXED.size
        client_id: str | None = None
        if n >= 0:
            if pos + n > len(buf):
                raise malformed("client_id runs past the end of the frame")
            client_id = str(buf[pos : pos + n], "utf-8")
            pos += n
        elif n != -1:
            raise malformed(f"client_id length {n}")
        if is_flexible(api_key, api_version):
            pos = _skip_tagged_fields(buf, pos)
    except _DECODE_ERRORS as exc:
        raise InvalidRequest(f"malformed request header: {exc}") from None
    return RequestHeader(api_key, api_version, correlation_id, client_id), pos


def peek_correlation_id(frame: bytes | bytearray | memoryview) -> int:
    """The correlation id of a response frame (its first four bytes).

    Raises:
        InvalidRequest: fewer than four bytes.
    """
    if len(frame) < 4:
        raise InvalidRequest("response frame shorter than its header")
    return int(_I32.unpack_from(frame, 0)[0])


def _check_version(spec: ApiSpec, api_version: int) -> None:
    if not spec.min_version <= api_version <= spec.max_version:
        raise UnsupportedVersion(
            f"{spec.api_key.name} v{api_version} (supported v{spec.min_version}-{spec.max_version})"
        )


# --- requests ---------------------------------------------------------------------------------


def decode_request(
    header: RequestHeader, frame: bytes | bytearray | memoryview, body_offset: int
) -> Any:
    """Decodes a request body into its typed value (e.g. :class:`ProduceRequest`).

    Record sets in a Produce request are ``memoryview`` slices of ``frame`` (keep the frame alive
    while you use them; they are not validated here).

    Raises:
        InvalidRequest: an unknown API key or bytes that do not follow the schema.
        UnsupportedVersion: a version outside what the codec speaks (see :func:`codec_versions`).
    """
    spec = api_spec(header.api_key)
    version = header.api_version
    _check_version(spec, version)
    buf = memoryview(frame)
    try:
        if spec.api_key == ApiKey.PRODUCE and not header.flexible:
            return _decode_produce_request(buf, body_offset)
        value, _pos = struct_reader(spec.request, version, header.flexible)(buf, body_offset)
    except _DECODE_ERRORS as exc:
        raise InvalidRequest(f"malformed {spec.api_key.name} v{version}: {exc}") from None
    return value


def encode_request(
    api_key: ApiKey, api_version: int, correlation_id: int, client_id: str | None, request: Any
) -> list[Buffer]:
    """Encodes a whole request frame (size prefix, header v1/v2, body) as a list of buffers.

    Raises:
        UnsupportedVersion: a version outside what the codec speaks.
    """
    spec = api_spec(api_key)
    _check_version(spec, api_version)
    flexible = is_flexible(api_key, api_version)
    w = Writer()
    buf = w.buf
    buf += b"\0\0\0\0"
    buf += _HEADER_KEY_VERSION_ID.pack(api_key, api_version, correlation_id)
    if client_id is None:
        buf += _I16.pack(-1)
    else:
        data = client_id.encode()
        buf += _I16.pack(len(data))
        buf += data
    if flexible:
        buf.append(0)  # no tagged fields in the header
    struct_writer(spec.request, api_version, flexible)(w, request)
    return _finish_frame(w)


def _finish_frame(w: Writer) -> list[Buffer]:
    parts = w.finish()
    size = sum(memoryview(p).nbytes for p in parts) - 4
    first = parts[0]
    assert isinstance(first, bytearray)
    _I32.pack_into(first, 0, size)
    return parts


# --- responses --------------------------------------------------------------------------------


def encode_response(header: RequestHeader, response: Any) -> list[Buffer]:
    """Encodes a whole response frame (size prefix, header v0/v1, body) as a list of buffers.

    Record sets in a Fetch response are passed through as the caller's buffers. An ApiVersions
    request of a version above what we speak is answered as v0 (send ``error_code``
    UNSUPPORTED_VERSION and our table: the client retries with a version we listed).

    Raises:
        UnsupportedVersion: a version outside what the codec speaks (other than ApiVersions).
    """
    spec = api_spec(header.api_key)
    version = header.api_version
    if spec.api_key == ApiKey.API_VERSIONS and version > spec.max_version:
        version = 0
    _check_version(spec, version)
    flexible = is_flexible(spec.api_key, version)
    if spec.api_key == ApiKey.FETCH and not flexible:
        return _encode_fetch_response(header.correlation_id, version, response)
    w = Writer()
    w.buf += _I32.pack(0)
    w.buf += _I32.pack(header.correlation_id)
    if response_header_version(spec.api_key, version) == 1:
        w.buf.append(0)
    struct_writer(spec.response, version, flexible)(w, response)
    return _finish_frame(w)


def decode_response(
    api_key: ApiKey, api_version: int, frame: bytes | bytearray | memoryview
) -> Any:
    """Decodes a response frame (without its size prefix, header included) for our client.

    Records in a Fetch response come back as one ``memoryview`` into ``frame`` per partition.

    Raises:
        InvalidRequest: bytes that do not follow the schema.
        UnsupportedVersion: a version outside what the codec speaks.
    """
    spec = api_spec(api_key)
    _check_version(spec, api_version)
    buf = memoryview(frame)
    if api_key == ApiKey.API_VERSIONS and len(buf) >= 6 and _I16.unpack_from(buf, 4)[0] != 0:
        api_version = 0  # an error answer is always a v0 body (KIP-511)
    flexible = is_flexible(api_key, api_version)
    try:
        pos = 4
        if len(buf) < pos:
            raise malformed("response shorter than its header")
        if response_header_version(api_key, api_version) == 1:
            pos = _skip_tagged_fields(buf, pos)
        value, _pos = struct_reader(spec.response, api_version, flexible)(buf, pos)
    except _DECODE_ERRORS as exc:
        raise InvalidRequest(
            f"malformed {spec.api_key.name} v{api_version} response: {exc}"
        ) from None
    return value


# --- hot path: Produce request decode (v3-v8) -------------------------------------------------

_ACKS_TIMEOUT = struct.Struct(">hi")


def _decode_produce_request(buf: memoryview, pos: int) -> core.ProduceRequest:
    """Hand-written decode of a classic Produce request; record sets stay in the frame."""
    end = len(buf)
    i16 = _I16.unpack_from
    i32 = _I32.unpack_from

    (n,) = i16(buf, pos)
    pos += 2
    transactional_id: str | None = None
    if n >= 0:
        if pos + n > end:
            raise malformed("transactional_id runs past the end of the frame")
        transactional_id = str(buf[pos : pos + n], "utf-8")
        pos += n
    elif n != -1:
        raise malformed(f"transactional_id length {n}")
    acks, timeout_ms = _ACKS_TIMEOUT.unpack_from(buf, pos)
    pos += 6
    (topic_count,) = i32(buf, pos)
    pos += 4
    if topic_count < 0 or topic_count > end - pos:
        raise malformed(f"topic count {topic_count}")
    topics = []
    for _ in range(topic_count):
        (n,) = i16(buf, pos)
        pos += 2
        if n < 0 or pos + n > end:
            raise malformed(f"topic name length {n}")
        name = str(buf[pos : pos + n], "utf-8")
        pos += n
        (partition_count,) = i32(buf, pos)
        pos += 4
        if partition_count < 0 or partition_count > end - pos:
            raise malformed(f"partition count {partition_count}")
        partitions = []
        for _ in range(partition_count):
            partition_index, size = _PARTITION_AND_SIZE.unpack_from(buf, pos)
            pos += 8
            records: memoryview | None = None
            if size >= 0:
                if pos + size > end:
                    raise malformed(f"record set of {size} bytes runs past the end of the frame")
                records = buf[pos : pos + size]
                pos += size
            elif size != -1:
                raise malformed(f"record set length {size}")
            partitions.append(
                core.ProduceRequestPartition(partition_index=partition_index, records=records)
            )
        topics.append(core.ProduceRequestTopic(name=name, partitions=partitions))
    return core.ProduceRequest(
        transactional_id=transactional_id, acks=acks, timeout_ms=timeout_ms, topics=topics
    )


_PARTITION_AND_SIZE = struct.Struct(">ii")

# --- hot path: Fetch response encode (v4-v11) -------------------------------------------------

_FETCH_TOP_V7 = struct.Struct(">ihi")
_ABORTED = struct.Struct(">qq")
# Per version: the partition fields before aborted_transactions, and the common case in one
# pack: those fields + aborted_transactions=null (-1) [+ preferred_read_replica] + records size.
_FETCH_PARTITION = {
    v: struct.Struct(">ihqq" if v == 4 else ">ihqqq") for v in range(4, 12)
}  # fmt: skip
_FETCH_PARTITION_FAST = {
    v: struct.Struct(">ihqqii" if v == 4 else (">ihqqqiii" if v >= 11 else ">ihqqqii"))
    for v in range(4, 12)
}  # fmt: skip


def _encode_fetch_response(
    correlation_id: int, version: int, response: core.FetchResponse
) -> list[Buffer]:
    """Hand-written encode of a classic Fetch response: our bytes between the caller's batches.

    Record buffers must be byte-format (``bytes``, ``bytearray``, or ``memoryview`` of them):
    their ``len`` is their size in bytes.
    """
    parts: list[Buffer] = []
    out = bytearray(8)
    first = out
    _I32.pack_into(out, 4, correlation_id)
    if version >= 7:
        out += _FETCH_TOP_V7.pack(
            response.throttle_time_ms, response.error_code, response.session_id
        )
    else:
        out += _I32.pack(response.throttle_time_ms)
    out += _I32.pack(len(response.topics))
    total = 0
    v5 = version >= 5
    v11 = version >= 11
    fixed = _FETCH_PARTITION[version].pack
    fast = _FETCH_PARTITION_FAST[version].pack
    buffer_types = (bytes, bytearray, memoryview)
    for topic in response.topics:
        name = topic.name.encode()
        out += _I16.pack(len(name))
        out += name
        out += _I32.pack(len(topic.partitions))
        for p in topic.partitions:
            records = p.records
            if records is None:
                size = -1
            elif isinstance(records, buffer_types):
                size = len(records)
            else:
                size = 0
                for part in records:
                    size += len(part)
            aborted = p.aborted_transactions
            if aborted is None:
                if v11:
                    out += fast(
                        p.partition_index,
                        p.error_code,
                        p.high_watermark,
                        p.last_stable_offset,
                        p.log_start_offset,
                        -1,
                        p.preferred_read_replica,
                        size,
                    )
                elif v5:
                    out += fast(
                        p.partition_index,
                        p.error_code,
                        p.high_watermark,
                        p.last_stable_offset,
                        p.log_start_offset,
                        -1,
                        size,
                    )
                else:
                    out += fast(
                        p.partition_index,
                        p.error_code,
                        p.high_watermark,
                        p.last_stable_offset,
                        -1,
                        size,
                    )
            else:
                if v5:
                    out += fixed(
                        p.partition_index,
                        p.error_code,
                        p.high_watermark,
                        p.last_stable_offset,
                        p.log_start_offset,
                    )
                else:
                    out += fixed(
                        p.partition_index, p.error_code, p.high_watermark, p.last_stable_offset
                    )
                out += _I32.pack(len(aborted))
                for a in aborted:
                    out += _ABORTED.pack(a.producer_id, a.first_offset)
                if v11:
                    out += _I32.pack(p.preferred_read_replica)
                out += _I32.pack(size)
            if size <= 0:
                continue
            total += len(out) + size
            parts.append(out)
            if isinstance(records, buffer_types):
                parts.append(records)
            else:
                parts.extend(records)
            out = bytearray()
    total += len(out)
    parts.append(out)
    _I32.pack_into(first, 0, total - 4)
    return parts


def frame_bytes(parts: list[Buffer]) -> bytes:
    """Joins a frame's buffers (tests and small messages; never the Fetch hot path)."""
    return b"".join(parts)
