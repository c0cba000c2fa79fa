"""Message schemas: ApiVersions, Metadata, Produce and Fetch (the APIs every client starts with).

Each class is one Kafka struct for every version the codec speaks; :func:`~._codec.f` says in which
versions a field exists, may be null, or is tagged. Field order is wire order (Kafka's JSON message
schemas). Names follow Kafka's JSON in snake_case, with two deliberate, uniform changes so handlers
read alike across APIs: a topic's name is ``name`` and a partition's number is
``partition_index`` everywhere (Kafka's Produce says ``Index``, Fetch says ``Topic``/``Partition``),
and durations keep Kafka's ``_ms`` suffix. Arrays decode as lists; any sequence encodes.
"""

# ruff: noqa: RUF009  (f() returns attrs.field(...), which ruff cannot see)

from __future__ import annotations

import uuid
from collections.abc import Sequence

import attrs

from quorumq.protocol._codec import (
    BOOL,
    INT8,
    INT16,
    INT32,
    INT64,
    RECORDS,
    STRING,
    UUID,
    ZERO_UUID,
    Array,
    Records,
    f,
)

# --- ApiVersions (key 18) ---------------------------------------------------------------------


@attrs.frozen(kw_only=True)
class ApiVersionsRequest:
    """ApiVersions: the first request of every connection (KIP-35; v3 adds the client's name)."""

    client_software_name: str = f(STRING, v=(3, None), default="")
    client_software_version: str = f(STRING, v=(3, None), default="")


@attrs.frozen(kw_only=True)
class ApiVersionsResponseKey:
    """One API the broker serves and its version range."""

    api_key: int = f(INT16)
    min_version: int = f(INT16)
    max_version: int = f(INT16)


@attrs.frozen(kw_only=True)
class SupportedFeatureKey:
    name: str = f(STRING)
    min_version: int = f(INT16)
    max_version: int = f(INT16)


@attrs.frozen(kw_only=True)
class FinalizedFeatureKey:
    name: str = f(STRING)
    max_version_level: int = f(INT16)
    min_version_level: int = f(INT16)


@attrs.frozen(kw_only=True)
class ApiVersionsResponse:
    """The broker's API table. Its response header is always v0, even for flexible v3."""

    error_code: int = f(INT16, default=0)
    api_keys: Sequence[ApiVersionsResponseKey] = f(Array(ApiVersionsResponseKey), default=())
    throttle_time_ms: int = f(INT32, v=(1, None), default=0)
    supported_features: Sequence[SupportedFeatureKey] = f(
        Array(SupportedFeatureKey), v=(3, None), tag=0, default=()
    )
    finalized_features_epoch: int = f(INT64, v=(3, None), tag=1, default=-1)
    finalized_features: Sequence[FinalizedFeatureKey] = f(
        Array(FinalizedFeatureKey), v=(3, None), tag=2, default=()
    )
    zk_migration_ready: bool = f(BOOL, v=(3, None), tag=3, default=False)


# --- Metadata (key 3) -------------------------------------------------------------------------


@attrs.frozen(kw_only=True)
class MetadataRequestTopic:
    topic_id: uuid.UUID = f(UUID, v=(10, None), default=ZERO_UUID)
    name: str | None = f(STRING, null=(10, None))


@attrs.frozen(kw_only=True)
class MetadataRequest:
    """Metadata: brokers, and leaders of the named topics (``topics=None``: all topics)."""

    topics: Sequence[MetadataRequestTopic] | None = f(Array(MetadataRequestTopic), null=(1, None))
    allow_auto_topic_creation: bool = f(BOOL, v=(4, None), default=True)
    include_cluster_authorized_operations: bool = f(BOOL, v=(8, 10), default=False)
    include_topic_authorized_operations: bool = f(BOOL, v=(8, None), default=False)


@attrs.frozen(kw_only=True)
class MetadataResponsePartition:
    error_code: int = f(INT16)
    partition_index: int = f(INT32)
    leader_id: int = f(INT32)
    leader_epoch: int = f(INT32, v=(7, None), default=-1)
    replica_nodes: Sequence[int] = f(Array(INT32), default=())
    isr_nodes: Sequence[int] = f(Array(INT32), default=())
    offline_replicas: Sequence[int] = f(Array(INT32), v=(5, None), default=())


@attrs.frozen(kw_only=True)
class MetadataResponseTopic:
    error_code: int = f(INT16)
    name: str | None = f(STRING, null=(12, None))
    topic_id: uuid.UUID = f(UUID, v=(10, None), default=ZERO_UUID)
    is_internal: bool = f(BOOL, default=False)
    partitions: Sequence[MetadataResponsePartition] = f(
        Array(MetadataResponsePartition), default=()
    )
    topic_authorized_operations: int = f(INT32, v=(8, None), default=-2147483648)


@attrs.frozen(kw_only=True)
class MetadataResponseBroker:
    node_id: int = f(INT32)
    host: str = f(STRING)
    port: int = f(INT32)
    rack: str | None = f(STRING, null=(1, None), default=None)


@attrs.frozen(kw_only=True)
class MetadataResponse:
    throttle_time_ms: int = f(INT32, v=(3, None), default=0)
    brokers: Sequence[MetadataResponseBroker] = f(Array(MetadataResponseBroker))
    cluster_id: str | None = f(STRING, v=(2, None), null=(2, None), default=None)
    controller_id: int = f(INT32, default=-1)
    topics: Sequence[MetadataResponseTopic] = f(Array(MetadataResponseTopic))
    cluster_authorized_operations: int = f(INT32, v=(8, 10), default=-2147483648)


# --- Produce (key 0) --------------------------------------------------------------------------


@attrs.frozen(kw_only=True)
class ProduceRequestPartition:
    partition_index: int = f(INT32)
    records: Records | None = f(RECORDS, null=(0, None))
    """The record set: decoded as a zero-copy ``memoryview`` into the request frame."""


@attrs.frozen(kw_only=True)
class ProduceRequestTopic:
    name: str = f(STRING)
    partitions: Sequence[ProduceRequestPartition] = f(Array(ProduceRequestPartition))


@attrs.frozen(kw_only=True)
class ProduceRequest:
    """Produce: record sets per partition. ``acks`` 0 means the broker sends no response."""

    transactional_id: str | None = f(STRING, null=(0, None), default=None)
    acks: int = f(INT16)
    timeout_ms: int = f(INT32)
    topics: Sequence[ProduceRequestTopic] = f(Array(ProduceRequestTopic))


@attrs.frozen(kw_only=True)
class ProduceRecordError:
    batch_index: int = f(INT32)
    batch_index_error_message: str | None = f(STRING, null=(8, None), default=None)


@attrs.frozen(kw_only=True)
class ProduceResponsePartition:
    partition_index: int = f(INT32)
    error_code: int = f(INT16)
    base_offset: int = f(INT64)
    log_append_time_ms: int = f(INT64, v=(2, None), default=-1)
    log_start_offset: int = f(INT64, v=(5, None), default=-1)
    record_errors: Sequence[ProduceRecordError] = f(
        Array(ProduceRecordError), v=(8, None), default=()
    )
    error_message: str | None = f(STRING, v=(8, None), null=(8, None), default=None)


@attrs.frozen(kw_only=True)
class ProduceResponseTopic:
    name: str = f(STRING)
    partitions: Sequence[ProduceResponsePartition] = f(Array(ProduceResponsePartition))


@attrs.frozen(kw_only=True)
class ProduceResponse:
    topics: Sequence[ProduceResponseTopic] = f(Array(ProduceResponseTopic))
    throttle_time_ms: int = f(INT32, v=(1, None), default=0)


# --- Fetch (key 1) ----------------------------------------------------------------------------


@attrs.frozen(kw_only=True)
class FetchRequestPartition:
    partition_index: int = f(INT32)
    current_leader_epoch: int = f(INT32, v=(9, None), default=-1)
    fetch_offset: int = f(INT64)
    last_fetched_epoch: int = f(INT32, v=(12, None), default=-1)
    log_start_offset: int = f(INT64, v=(5, None), default=-1)
    partition_max_bytes: int = f(INT32)


@attrs.frozen(kw_only=True)
class FetchRequestTopic:
    name: str = f(STRING)
    partitions: Sequence[FetchRequestPartition] = f(Array(FetchRequestPartition))


@attrs.frozen(kw_only=True)
class FetchForgottenTopic:
    name: str = f(STRING)
    partitions: Sequence[int] = f(Array(INT32), default=())


@attrs.frozen(kw_only=True)
class FetchRequest:
    """Fetch, from consumers (``replica_id=-1``) and from follower replicas alike."""

    cluster_id: str | None = f(STRING, v=(12, None), null=(12, None), tag=0, default=None)
    replica_id: int = f(INT32, default=-1)
    max_wait_ms: int = f(INT32)
    min_bytes: int = f(INT32)
    max_bytes: int = f(INT32, v=(3, None), default=0x7FFFFFFF)
    isolation_level: int = f(INT8, v=(4, None), default=0)
    session_id: int = f(INT32, v=(7, None), default=0)
    session_epoch: int = f(INT32, v=(7, None), default=-1)
    topics: Sequence[FetchRequestTopic] = f(Array(FetchRequestTopic))
    forgotten_topics_data: Sequence[FetchForgottenTopic] = f(
        Array(FetchForgottenTopic), v=(7, None), default=()
    )
    rack_id: str = f(STRING, v=(11, None), default="")


@attrs.frozen(kw_only=True)
class FetchAbortedTransaction:
    producer_id: int = f(INT64)
    first_offset: int = f(INT64)


@attrs.frozen(kw_only=True)
class FetchEpochEndOffset:
    epoch: int = f(INT32, default=-1)
    end_offset: int = f(INT64, default=-1)


@attrs.frozen(kw_only=True)
class FetchLeaderIdAndEpoch:
    leader_id: int = f(INT32, default=-1)
    leader_epoch: int = f(INT32, default=-1)


@attrs.frozen(kw_only=True)
class FetchSnapshotId:
    end_offset: int = f(INT64, default=-1)
    epoch: int = f(INT32, default=-1)


@attrs.frozen(kw_only=True)
class FetchResponsePartition:
    partition_index: int = f(INT32)
    error_code: int = f(INT16, default=0)
    high_watermark: int = f(INT64)
    last_stable_offset: int = f(INT64, v=(4, None), default=-1)
    log_start_offset: int = f(INT64, v=(5, None), default=-1)
    diverging_epoch: FetchEpochEndOffset = f(
        FetchEpochEndOffset, v=(12, None), tag=0, default=FetchEpochEndOffset()
    )
    current_leader: FetchLeaderIdAndEpoch = f(
        FetchLeaderIdAndEpoch, v=(12, None), tag=1, default=FetchLeaderIdAndEpoch()
    )
    snapshot_id: FetchSnapshotId = f(
        FetchSnapshotId, v=(12, None), tag=2, default=FetchSnapshotId()
    )
    aborted_transactions: Sequence[FetchAbortedTransaction] | None = f(
        Array(FetchAbortedTransaction), v=(4, None), null=(4, None), default=None
    )
    preferred_read_replica: int = f(INT32, v=(11, None), default=-1)
    records: Records | None = f(RECORDS, null=(0, None), default=None)
    """Stored batches: one buffer or a sequence of buffers, written without copying.
    Decoded as one ``memoryview`` into the response frame."""


@attrs.frozen(kw_only=True)
class FetchResponseTopic:
    name: str = f(STRING)
    partitions: Sequence[FetchResponsePartition] = f(Array(FetchResponsePartition))


@attrs.frozen(kw_only=True)
class FetchResponse:
    throttle_time_ms: int = f(INT32, v=(1, None), default=0)
    error_code: int = f(INT16, v=(7, None), default=0)
    session_id: int = f(INT32, v=(7, None), default=0)
    topics: Sequence[FetchResponseTopic] = f(Array(FetchResponseTopic))
