"""Message schemas: ListOffsets, CreateTopics, DeleteTopics, DescribeConfigs, AlterConfigs,
IncrementalAlterConfigs, InitProducerId,
OffsetForLeaderEpoch, FindCoordinator, ElectLeaders, DescribeClientQuotas, AlterClientQuotas,
DescribeUserScramCredentials, AlterUserScramCredentials, DescribeAcls, CreateAcls, DeleteAcls
and BrokerHeartbeat.

Same conventions as ``_messages_core``: one class per Kafka struct for every version we speak,
field order is wire order, a topic is ``name`` and a partition ``partition_index`` throughout.
"""

from __future__ import annotations

import uuid
from collections.abc import Sequence

import attrs

from quorumq.protocol._codec import (
    BOOL,
    BYTES,
    FLOAT64,
    INT8,
    INT16,
    INT32,
    INT64,
    STRING,
    UUID,
    Array,
    f,
)

# --- ListOffsets (key 2) ----------------------------------------------------------------------

LATEST_TIMESTAMP = -1
"""ListOffsets ``timestamp`` asking for the log end offset (high watermark for consumers)."""
EARLIEST_TIMESTAMP = -2
"""ListOffsets ``timestamp`` asking for the log start offset."""
MAX_TIMESTAMP = -3
"""ListOffsets ``timestamp`` (v7+, KIP-734) asking for the record with the largest timestamp."""


@attrs.frozen(kw_only=True)
class ListOffsetsRequestPartition:
    partition_index: int = f(INT32)
    current_leader_epoch: int = f(INT32, v=(4, None), default=-1)
    timestamp: int = f(INT64)
    """-1 latest, -2 earliest, otherwise the first offset whose timestamp is >= this."""


@attrs.frozen(kw_only=True)
class ListOffsetsRequestTopic:
    name: str = f(STRING)
    partitions: Sequence[ListOffsetsRequestPartition] = f(Array(ListOffsetsRequestPartition))


@attrs.frozen(kw_only=True)
class ListOffsetsRequest:
    """ListOffsets: offsets by timestamp (earliest, latest, or a time)."""

    replica_id: int = f(INT32, default=-1)
    isolation_level: int = f(INT8, v=(2, None), default=0)
    topics: Sequence[ListOffsetsRequestTopic] = f(Array(ListOffsetsRequestTopic))


@attrs.frozen(kw_only=True)
class ListOffsetsResponsePartition:
    partition_index: int = f(INT32)
    error_code: int = f(INT16, default=0)
    timestamp: int = f(INT64, default=-1)
    offset: int = f(INT64, default=-1)
    leader_epoch: int = f(INT32, v=(4, None), default=-1)


@attrs.frozen(kw_only=True)
class ListOffsetsResponseTopic:
    name: str = f(STRING)
    partitions: Sequence[ListOffsetsResponsePartition] = f(Array(ListOffsetsResponsePartition))


@attrs.frozen(kw_only=True)
class ListOffsetsResponse:
    throttle_time_ms: int = f(INT32, v=(2, None), default=0)
    topics: Sequence[ListOffsetsResponseTopic] = f(Array(ListOffsetsResponseTopic))


# --- CreateTopics (key 19) --------------------------------------------------------------------


@attrs.frozen(kw_only=True)
class CreatableReplicaAssignment:
    partition_index: int = f(INT32)
    broker_ids: Sequence[int] = f(Array(INT32), default=())


@attrs.frozen(kw_only=True)
class CreatableTopicConfig:
    name: str = f(STRING)
    value: str | None = f(STRING, null=(0, None))


@attrs.frozen(kw_only=True)
class CreatableTopic:
    name: str = f(STRING)
    num_partitions: int = f(INT32, default=-1)
    """-1: the broker's ``num.partitions`` (or the assignments' count)."""
    replication_factor: int = f(INT16, default=-1)
    """-1: the broker's ``default.replication.factor``."""
    assignments: Sequence[CreatableReplicaAssignment] = f(
        Array(CreatableReplicaAssignment), default=()
    )
    configs: Sequence[CreatableTopicConfig] = f(Array(CreatableTopicConfig), default=())


@attrs.frozen(kw_only=True)
class CreateTopicsRequest:
    topics: Sequence[CreatableTopic] = f(Array(CreatableTopic))
    timeout_ms: int = f(INT32, default=60000)
    validate_only: bool = f(BOOL, v=(1, None), default=False)


@attrs.frozen(kw_only=True)
class CreatableTopicConfigs:
    name: str = f(STRING)
    value: str | None = f(STRING, null=(0, None))
    read_only: bool = f(BOOL, default=False)
    config_source: int = f(INT8, default=-1)
    is_sensitive: bool = f(BOOL, default=False)


@attrs.frozen(kw_only=True)
class CreatableTopicResult:
    name: str = f(STRING)
    error_code: int = f(INT16, default=0)
    error_message: str | None = f(STRING, v=(1, None), null=(0, None), default=None)
    topic_config_error_code: int = f(INT16, v=(5, None), tag=0, default=0)
    num_partitions: int = f(INT32, v=(5, None), default=-1)
    replication_factor: int = f(INT16, v=(5, None), default=-1)
    configs: Sequence[CreatableTopicConfigs] | None = f(
        Array(CreatableTopicConfigs), v=(5, None), null=(5, None), default=()
    )


@attrs.frozen(kw_only=True)
class CreateTopicsResponse:
    throttle_time_ms: int = f(INT32, v=(2, None), default=0)
    topics: Sequence[CreatableTopicResult] = f(Array(CreatableTopicResult))


# --- DeleteTopics (key 20) --------------------------------------------------------------------


@attrs.frozen(kw_only=True)
class DeleteTopicsRequest:
    topic_names: Sequence[str] = f(Array(STRING), default=())
    timeout_ms: int = f(INT32, default=30000)


@attrs.frozen(kw_only=True)
class DeletableTopicResult:
    name: str = f(STRING)
    error_code: int = f(INT16, default=0)


@attrs.frozen(kw_only=True)
class DeleteTopicsResponse:
    throttle_time_ms: int = f(INT32, v=(1, None), default=0)
    responses: Sequence[DeletableTopicResult] = f(Array(DeletableTopicResult))


# --- DescribeConfigs (key 32) -----------------------------------------------------------------

RESOURCE_TOPIC = 2
"""DescribeConfigs ``resource_type`` of a topic (Kafka's ConfigResource.Type.TOPIC)."""
RESOURCE_BROKER = 4
"""DescribeConfigs ``resource_type`` of a broker."""


@attrs.frozen(kw_only=True)
class DescribeConfigsResource:
    resource_type: int = f(INT8)
    resource_name: str = f(STRING)
    configuration_keys: Sequence[str] | None = f(Array(STRING), null=(0, None), default=None)
    """None: every config of the resource."""


@attrs.frozen(kw_only=True)
class DescribeConfigsRequest:
    resources: Sequence[DescribeConfigsResource] = f(Array(DescribeConfigsResource))
    include_synonyms: bool = f(BOOL, v=(1, None), default=False)


@attrs.frozen(kw_only=True)
class DescribeConfigsSynonym:
    name: str = f(STRING)
    value: str | None = f(STRING, null=(0, None))
    source: int = f(INT8)


@attrs.frozen(kw_only=True)
class DescribeConfigsResourceResult:
    name: str = f(STRING)
    value: str | None = f(STRING, null=(0, None))
    read_only: bool = f(BOOL, default=False)
    config_source: int = f(INT8, v=(1, None), default=-1)
    is_default: bool = f(BOOL, v=(0, 0), default=False)
    is_sensitive: bool = f(BOOL, default=False)
    synonyms: Sequence[DescribeConfigsSynonym] = f(
        Array(DescribeConfigsSynonym), v=(1, None), default=()
    )


@attrs.frozen(kw_only=True)
class DescribeConfigsResult:
    error_code: int = f(INT16, default=0)
    error_message: str | None = f(STRING, null=(0, None), default=None)
    resource_type: int = f(INT8)
    resource_name: str = f(STRING)
    configs: Sequence[DescribeConfigsResourceResult] = f(
        Array(DescribeConfigsResourceResult), default=()
    )


@attrs.frozen(kw_only=True)
class DescribeConfigsResponse:
    throttle_time_ms: int = f(INT32, default=0)
    results: Sequence[DescribeConfigsResult] = f(Array(DescribeConfigsResult))


# --- DeleteRecords (key 21) ------------------------------------------------------------------


@attrs.frozen(kw_only=True)
class DeleteRecordsPartition:
    partition_index: int = f(INT32)
    offset: int = f(INT64)
    """Delete every record before this offset; -1: before the high watermark."""


@attrs.frozen(kw_only=True)
class DeleteRecordsTopic:
    name: str = f(STRING)
    partitions: Sequence[DeleteRecordsPartition] = f(Array(DeleteRecordsPartition))


@attrs.frozen(kw_only=True)
class DeleteRecordsRequest:
    topics: Sequence[DeleteRecordsTopic] = f(Array(DeleteRecordsTopic))
    timeout_ms: int = f(INT32, default=30000)


@attrs.frozen(kw_only=True)
class DeleteRecordsPartitionResult:
    partition_index: int = f(INT32)
    low_watermark: int = f(INT64, default=-1)
    error_code: int = f(INT16, default=0)


@attrs.frozen(kw_only=True)
class DeleteRecordsTopicResult:
    name: str = f(STRING)
    partitions: Sequence[DeleteRecordsPartitionResult] = f(Array(DeleteRecordsPartitionResult))


@attrs.frozen(kw_only=True)
class DeleteRecordsResponse:
    throttle_time_ms: int = f(INT32, default=0)
    topics: Sequence[DeleteRecordsTopicResult] = f(Array(DeleteRecordsTopicResult))


# --- DescribeLogDirs (key 35) ----------------------------------------------------------------


@attrs.frozen(kw_only=True)
class DescribableLogDirTopic:
    topic: str = f(STRING)
    partitions: Sequence[int] = f(Array(INT32), default=())


@attrs.frozen(kw_only=True)
class DescribeLogDirsRequest:
    topics: Sequence[DescribableLogDirTopic] | None = f(
        Array(DescribableLogDirTopic), null=(0, None), default=None
    )
    """None: every partition in every log directory."""


@attrs.frozen(kw_only=True)
class DescribeLogDirsPartition:
    partition_index: int = f(INT32)
    partition_size: int = f(INT64)
    offset_lag: int = f(INT64, default=0)
    is_future_key: bool = f(BOOL, default=False)


@attrs.frozen(kw_only=True)
class DescribeLogDirsTopic:
    name: str = f(STRING)
    partitions: Sequence[DescribeLogDirsPartition] = f(Array(DescribeLogDirsPartition))


@attrs.frozen(kw_only=True)
class DescribeLogDirsResult:
    error_code: int = f(INT16, default=0)
    log_dir: str = f(STRING)
    topics: Sequence[DescribeLogDirsTopic] = f(Array(DescribeLogDirsTopic), default=())
    total_bytes: int = f(INT64, v=(4, None), default=-1)
    usable_bytes: int = f(INT64, v=(4, None), default=-1)


@attrs.frozen(kw_only=True)
class DescribeLogDirsResponse:
    throttle_time_ms: int = f(INT32, default=0)
    error_code: int = f(INT16, v=(3, None), default=0)
    results: Sequence[DescribeLogDirsResult] = f(Array(DescribeLogDirsResult), default=())


# --- CreatePartitions (key 37) ---------------------------------------------------------------


@attrs.frozen(kw_only=True)
class CreatePartitionsAssignment:
    broker_ids: Sequence[int] = f(Array(INT32))


@attrs.frozen(kw_only=True)
class CreatePartitionsTopic:
    name: str = f(STRING)
    count: int = f(INT32)
    """The topic's new total partition count."""
    assignments: Sequence[CreatePartitionsAssignment] | None = f(
        Array(CreatePartitionsAssignment), null=(0, None), default=None
    )
    """One replica list per new partition; None: the broker places them."""


@attrs.frozen(kw_only=True)
class CreatePartitionsRequest:
    topics: Sequence[CreatePartitionsTopic] = f(Array(CreatePartitionsTopic))
    timeout_ms: int = f(INT32, default=30000)
    validate_only: bool = f(BOOL, default=False)


@attrs.frozen(kw_only=True)
class CreatePartitionsTopicResult:
    name: str = f(STRING)
    error_code: int = f(INT16, default=0)
    error_message: str | None = f(STRING, null=(0, None), default=None)


@attrs.frozen(kw_only=True)
class CreatePartitionsResponse:
    throttle_time_ms: int = f(INT32, default=0)
    results: Sequence[CreatePartitionsTopicResult] = f(Array(CreatePartitionsTopicResult))


# --- AlterConfigs (key 33) and IncrementalAlterConfigs (key 44) -----------------------------

CONFIG_SET, CONFIG_DELETE, CONFIG_APPEND, CONFIG_SUBTRACT = 0, 1, 2, 3
"""IncrementalAlterConfigs ``config_operation`` values (Kafka's AlterConfigOp.OpType)."""


@attrs.frozen(kw_only=True)
class AlterableConfig:
    name: str = f(STRING)
    value: str | None = f(STRING, null=(0, None))


@attrs.frozen(kw_only=True)
class AlterConfigsResource:
    resource_type: int = f(INT8)
    resource_name: str = f(STRING)
    configs: Sequence[AlterableConfig] = f(Array(AlterableConfig))


@attrs.frozen(kw_only=True)
class AlterConfigsRequest:
    """AlterConfigs: replaces every config override of each resource with the ones given."""

    resources: Sequence[AlterConfigsResource] = f(Array(AlterConfigsResource))
    validate_only: bool = f(BOOL, default=False)


@attrs.frozen(kw_only=True)
class AlterConfigsResourceResponse:
    error_code: int = f(INT16, default=0)
    error_message: str | None = f(STRING, null=(0, None), default=None)
    resource_type: int = f(INT8)
    resource_name: str = f(STRING)


@attrs.frozen(kw_only=True)
class AlterConfigsResponse:
    throttle_time_ms: int = f(INT32, default=0)
    responses: Sequence[AlterConfigsResourceResponse] = f(Array(AlterConfigsResourceResponse))


@attrs.frozen(kw_only=True)
class IncrementalAlterableConfig:
    name: str = f(STRING)
    config_operation: int = f(INT8)
    value: str | None = f(STRING, null=(0, None))


@attrs.frozen(kw_only=True)
class IncrementalAlterConfigsResource:
    resource_type: int = f(INT8)
    resource_name: str = f(STRING)
    configs: Sequence[IncrementalAlterableConfig] = f(Array(IncrementalAlterableConfig))


@attrs.frozen(kw_only=True)
class IncrementalAlterConfigsRequest:
    """IncrementalAlterConfigs (KIP-339): SET, DELETE, APPEND or SUBTRACT one key at a time."""

    resources: Sequence[IncrementalAlterConfigsResource] = f(Array(IncrementalAlterConfigsResource))
    validate_only: bool = f(BOOL, default=False)


@attrs.frozen(kw_only=True)
class IncrementalAlterConfigsResponse:
    throttle_time_ms: int = f(INT32, default=0)
    responses: Sequence[AlterConfigsResourceResponse] = f(Array(AlterConfigsResourceResponse))


# --- InitProducerId (key 22) ------------------------------------------------------------------


@attrs.frozen(kw_only=True)
class InitProducerIdRequest:
    transactional_id: str | None = f(STRING, null=(0, None), default=None)
    transaction_timeout_ms: int = f(INT32, default=60000)


@attrs.frozen(kw_only=True)
class InitProducerIdResponse:
    throttle_time_ms: int = f(INT32, default=0)
    error_code: int = f(INT16, default=0)
    producer_id: int = f(INT64, default=-1)
    producer_epoch: int = f(INT16, default=-1)


# --- OffsetForLeaderEpoch (key 23) ------------------------------------------------------------


@attrs.frozen(kw_only=True)
class OffsetForLeaderPartition:
    partition_index: int = f(INT32)
    current_leader_epoch: int = f(INT32, default=-1)
    leader_epoch: int = f(INT32)


@attrs.frozen(kw_only=True)
class OffsetForLeaderTopic:
    name: str = f(STRING)
    partitions: Sequence[OffsetForLeaderPartition] = f(Array(OffsetForLeaderPartition))


@attrs.frozen(kw_only=True)
class OffsetForLeaderEpochRequest:
    """OffsetForLeaderEpoch (KIP-101): the end offset of a leader epoch, for truncation."""

    replica_id: int = f(INT32, v=(3, None), default=-2)
    topics: Sequence[OffsetForLeaderTopic] = f(Array(OffsetForLeaderTopic))


@attrs.frozen(kw_only=True)
class EpochEndOffset:
    error_code: int = f(INT16, default=0)
    partition_index: int = f(INT32)
    leader_epoch: int = f(INT32, default=-1)
    end_offset: int = f(INT64, default=-1)


@attrs.frozen(kw_only=True)
class OffsetForLeaderTopicResult:
    name: str = f(STRING)
    partitions: Sequence[EpochEndOffset] = f(Array(EpochEndOffset))


@attrs.frozen(kw_only=True)
class OffsetForLeaderEpochResponse:
    throttle_time_ms: int = f(INT32, default=0)
    topics: Sequence[OffsetForLeaderTopicResult] = f(Array(OffsetForLeaderTopicResult))


# --- FindCoordinator (key 10) -----------------------------------------------------------------

COORDINATOR_GROUP = 0
"""FindCoordinator ``key_type`` of a consumer group."""
COORDINATOR_TRANSACTION = 1
"""FindCoordinator ``key_type`` of a transactional id."""


@attrs.frozen(kw_only=True)
class FindCoordinatorRequest:
    key: str = f(STRING)
    key_type: int = f(INT8, v=(1, None), default=0)


@attrs.frozen(kw_only=True)
class FindCoordinatorResponse:
    throttle_time_ms: int = f(INT32, v=(1, None), default=0)
    error_code: int = f(INT16, default=0)
    error_message: str | None = f(STRING, v=(1, None), null=(1, None), default=None)
    node_id: int = f(INT32, default=-1)
    host: str = f(STRING, default="")
    port: int = f(INT32, default=-1)


# --- ElectLeaders (key 43) --------------------------------------------------------------------

ELECTION_PREFERRED = 0
"""ElectLeaders ``election_type``: move leadership to the first replica of the assignment."""
ELECTION_UNCLEAN = 1
"""ElectLeaders ``election_type``: elect the first live replica of a leaderless partition
whose in-sync replicas are all gone (KIP-460)."""


@attrs.frozen(kw_only=True)
class ElectLeadersTopicPartitions:
    topic: str = f(STRING)
    partitions: Sequence[int] = f(Array(INT32), default=())


@attrs.frozen(kw_only=True)
class ElectLeadersRequest:
    election_type: int = f(INT8, v=(1, None), default=ELECTION_PREFERRED)
    topic_partitions: Sequence[ElectLeadersTopicPartitions] | None = f(
        Array(ElectLeadersTopicPartitions), null=(0, None), default=None
    )
    """None: every partition of the cluster."""
    timeout_ms: int = f(INT32, default=60000)


@attrs.frozen(kw_only=True)
class ElectLeadersPartitionResult:
    partition_id: int = f(INT32)
    error_code: int = f(INT16, default=0)
    error_message: str | None = f(STRING, null=(0, None), default=None)


@attrs.frozen(kw_only=True)
class ElectLeadersTopicResult:
    topic: str = f(STRING)
    partition_result: Sequence[ElectLeadersPartitionResult] = f(Array(ElectLeadersPartitionResult))


@attrs.frozen(kw_only=True)
class ElectLeadersResponse:
    throttle_time_ms: int = f(INT32, default=0)
    error_code: int = f(INT16, v=(1, None), default=0)
    replica_election_results: Sequence[ElectLeadersTopicResult] = f(
        Array(ElectLeadersTopicResult), default=()
    )


# --- DescribeClientQuotas (key 48) and AlterClientQuotas (key 49) ----------------------------

QUOTA_MATCH_EXACT = 0
"""DescribeClientQuotas ``match_type``: the entity named ``match`` (null: the default entity)."""
QUOTA_MATCH_DEFAULT = 1
"""DescribeClientQuotas ``match_type``: the default entity of this type."""
QUOTA_MATCH_SPECIFIED = 2
"""DescribeClientQuotas ``match_type``: any entity of this type that has a name."""


@attrs.frozen(kw_only=True)
class DescribeClientQuotasComponent:
    entity_type: str = f(STRING)
    match_type: int = f(INT8, default=QUOTA_MATCH_EXACT)
    match: str | None = f(STRING, null=(0, None), default=None)


@attrs.frozen(kw_only=True)
class DescribeClientQuotasRequest:
    components: Sequence[DescribeClientQuotasComponent] = f(
        Array(DescribeClientQuotasComponent), default=()
    )
    strict: bool = f(BOOL, default=False)
    """Only entities with exactly these component types (else: at least these)."""


@attrs.frozen(kw_only=True)
class QuotaEntityData:
    entity_type: str = f(STRING)
    entity_name: str | None = f(STRING, null=(0, None), default=None)
    """None: the entity type's default."""


@attrs.frozen(kw_only=True)
class QuotaValueData:
    key: str = f(STRING)
    value: float = f(FLOAT64)


@attrs.frozen(kw_only=True)
class DescribeClientQuotasEntry:
    entity: Sequence[QuotaEntityData] = f(Array(QuotaEntityData), default=())
    values: Sequence[QuotaValueData] = f(Array(QuotaValueData), default=())


@attrs.frozen(kw_only=True)
class DescribeClientQuotasResponse:
    throttle_time_ms: int = f(INT32, default=0)
    error_code: int = f(INT16, default=0)
    error_message: str | None = f(STRING, null=(0, None), default=None)
    entries: Sequence[DescribeClientQuotasEntry] | None = f(
        Array(DescribeClientQuotasEntry), null=(0, None), default=()
    )


@attrs.frozen(kw_only=True)
class AlterClientQuotasOp:
    key: str = f(STRING)
    value: float = f(FLOAT64, default=0.0)
    remove: bool = f(BOOL, default=False)


@attrs.frozen(kw_only=True)
class AlterClientQuotasEntry:
    entity: Sequence[QuotaEntityData] = f(Array(QuotaEntityData), default=())
    ops: Sequence[AlterClientQuotasOp] = f(Array(AlterClientQuotasOp), default=())


@attrs.frozen(kw_only=True)
class AlterClientQuotasRequest:
    entries: Sequence[AlterClientQuotasEntry] = f(Array(AlterClientQuotasEntry), default=())
    validate_only: bool = f(BOOL, default=False)


@attrs.frozen(kw_only=True)
class AlterClientQuotasResult:
    error_code: int = f(INT16, default=0)
    error_message: str | None = f(STRING, null=(0, None), default=None)
    entity: Sequence[QuotaEntityData] = f(Array(QuotaEntityData), default=())


@attrs.frozen(kw_only=True)
class AlterClientQuotasResponse:
    throttle_time_ms: int = f(INT32, default=0)
    entries: Sequence[AlterClientQuotasResult] = f(Array(AlterClientQuotasResult), default=())


# --- DescribeUserScramCredentials (key 50) and AlterUserScramCredentials (key 51) ------------

SCRAM_SHA_256 = 1
"""Kafka's ``ScramMechanism`` number of SCRAM-SHA-256."""
SCRAM_SHA_512 = 2
"""Kafka's ``ScramMechanism`` number of SCRAM-SHA-512."""


@attrs.frozen(kw_only=True)
class ScramUserName:
    name: str = f(STRING)


@attrs.frozen(kw_only=True)
class DescribeUserScramCredentialsRequest:
    users: Sequence[ScramUserName] | None = f(Array(ScramUserName), null=(0, None), default=None)
    """None (or empty): every user with a credential."""


@attrs.frozen(kw_only=True)
class ScramCredentialInfo:
    mechanism: int = f(INT8)
    iterations: int = f(INT32)


@attrs.frozen(kw_only=True)
class DescribeUserScramCredentialsResult:
    user: str = f(STRING)
    error_code: int = f(INT16, default=0)
    error_message: str | None = f(STRING, null=(0, None), default=None)
    credential_infos: Sequence[ScramCredentialInfo] = f(Array(ScramCredentialInfo), default=())


@attrs.frozen(kw_only=True)
class DescribeUserScramCredentialsResponse:
    throttle_time_ms: int = f(INT32, default=0)
    error_code: int = f(INT16, default=0)
    error_message: str | None = f(STRING, null=(0, None), default=None)
    results: Sequence[DescribeUserScramCredentialsResult] = f(
        Array(DescribeUserScramCredentialsResult), default=()
    )


@attrs.frozen(kw_only=True)
class ScramCredentialDeletion:
    name: str = f(STRING)
    mechanism: int = f(INT8)


@attrs.frozen(kw_only=True)
class ScramCredentialUpsertion:
    name: str = f(STRING)
    mechanism: int = f(INT8)
    iterations: int = f(INT32)
    salt: bytes = f(BYTES)
    salted_password: bytes = f(BYTES)


@attrs.frozen(kw_only=True)
class AlterUserScramCredentialsRequest:
    deletions: Sequence[ScramCredentialDeletion] = f(Array(ScramCredentialDeletion), default=())
    upsertions: Sequence[ScramCredentialUpsertion] = f(Array(ScramCredentialUpsertion), default=())


@attrs.frozen(kw_only=True)
class AlterUserScramCredentialsResult:
    user: str = f(STRING)
    error_code: int = f(INT16, default=0)
    error_message: str | None = f(STRING, null=(0, None), default=None)


@attrs.frozen(kw_only=True)
class AlterUserScramCredentialsResponse:
    throttle_time_ms: int = f(INT32, default=0)
    results: Sequence[AlterUserScramCredentialsResult] = f(
        Array(AlterUserScramCredentialsResult), default=()
    )


# --- DescribeAcls (key 29), CreateAcls (key 30), DeleteAcls (key 31) ------------------------


@attrs.frozen(kw_only=True)
class AclCreation:
    resource_type: int = f(INT8)
    resource_name: str = f(STRING)
    resource_pattern_type: int = f(INT8, v=(1, None), default=3)
    principal: str = f(STRING)
    host: str = f(STRING)
    operation: int = f(INT8)
    permission_type: int = f(INT8)


@attrs.frozen(kw_only=True)
class CreateAclsRequest:
    creations: Sequence[AclCreation] = f(Array(AclCreation), default=())


@attrs.frozen(kw_only=True)
class AclCreationResult:
    error_code: int = f(INT16, default=0)
    error_message: str | None = f(STRING, null=(0, None), default=None)


@attrs.frozen(kw_only=True)
class CreateAclsResponse:
    throttle_time_ms: int = f(INT32, default=0)
    results: Sequence[AclCreationResult] = f(Array(AclCreationResult), default=())


@attrs.frozen(kw_only=True)
class DescribeAclsRequest:
    resource_type_filter: int = f(INT8)
    resource_name_filter: str | None = f(STRING, null=(0, None), default=None)
    pattern_type_filter: int = f(INT8, v=(1, None), default=3)
    principal_filter: str | None = f(STRING, null=(0, None), default=None)
    host_filter: str | None = f(STRING, null=(0, None), default=None)
    operation: int = f(INT8)
    permission_type: int = f(INT8)


@attrs.frozen(kw_only=True)
class AclDescription:
    principal: str = f(STRING)
    host: str = f(STRING)
    operation: int = f(INT8)
    permission_type: int = f(INT8)


@attrs.frozen(kw_only=True)
class DescribeAclsResource:
    resource_type: int = f(INT8)
    resource_name: str = f(STRING)
    pattern_type: int = f(INT8, v=(1, None), default=3)
    acls: Sequence[AclDescription] = f(Array(AclDescription), default=())


@attrs.frozen(kw_only=True)
class DescribeAclsResponse:
    throttle_time_ms: int = f(INT32, default=0)
    error_code: int = f(INT16, default=0)
    error_message: str | None = f(STRING, null=(0, None), default=None)
    resources: Sequence[DescribeAclsResource] = f(Array(DescribeAclsResource), default=())


@attrs.frozen(kw_only=True)
class DeleteAclsFilter:
    resource_type_filter: int = f(INT8)
    resource_name_filter: str | None = f(STRING, null=(0, None), default=None)
    pattern_type_filter: int = f(INT8, v=(1, None), default=3)
    principal_filter: str | None = f(STRING, null=(0, None), default=None)
    host_filter: str | None = f(STRING, null=(0, None), default=None)
    operation: int = f(INT8)
    permission_type: int = f(INT8)


@attrs.frozen(kw_only=True)
class DeleteAclsRequest:
    filters: Sequence[DeleteAclsFilter] = f(Array(DeleteAclsFilter), default=())


@attrs.frozen(kw_only=True)
class DeleteAclsMatchingAcl:
    error_code: int = f(INT16, default=0)
    error_message: str | None = f(STRING, null=(0, None), default=None)
    resource_type: int = f(INT8)
    resource_name: str = f(STRING)
    pattern_type: int = f(INT8, v=(1, None), default=3)
    principal: str = f(STRING)
    host: str = f(STRING)
    operation: int = f(INT8)
    permission_type: int = f(INT8)


@attrs.frozen(kw_only=True)
class DeleteAclsFilterResult:
    error_code: int = f(INT16, default=0)
    error_message: str | None = f(STRING, null=(0, None), default=None)
    matching_acls: Sequence[DeleteAclsMatchingAcl] = f(Array(DeleteAclsMatchingAcl), default=())


@attrs.frozen(kw_only=True)
class DeleteAclsResponse:
    throttle_time_ms: int = f(INT32, default=0)
    filter_results: Sequence[DeleteAclsFilterResult] = f(Array(DeleteAclsFilterResult), default=())


# --- BrokerHeartbeat (key 63) -----------------------------------------------------------------

QUORUMQ_REPORTS_TAG = 0x5151
"""The tag of quorumq's own tagged field in BrokerHeartbeat: the broker's replica reports.
Tagged fields are Kafka's extension point (KIP-482): a reader that does not know the tag skips it,
so the request stays Kafka's BrokerHeartbeat. The tag is far above Kafka's own (0 and up)."""
QUORUMQ_SENT_MS_TAG = 0x5152
"""quorumq's tagged field: when the broker sent the heartbeat (covered by the MAC)."""
QUORUMQ_MAC_TAG = 0x5153
"""quorumq's tagged field: the heartbeat's MAC, keyed with the controller password."""
QUORUMQ_DRAINED_TAG = 0x5154
"""quorumq's tagged field of the request: partitions this leader stopped writing for a
leadership transfer, with their new leader caught up (``controller.md``)."""
QUORUMQ_TRANSFERS_TAG = 0x5155
"""quorumq's tagged field of the response: leadership transfers this broker should drain for."""


@attrs.frozen(kw_only=True)
class BrokerHeartbeatPartitionEpoch:
    """One partition at one leader epoch: a drained leadership transfer (quorumq's)."""

    topic: str = f(STRING)
    partition_index: int = f(INT32)
    leader_epoch: int = f(INT32)


@attrs.frozen(kw_only=True)
class BrokerHeartbeatTransfer:
    """Stop taking writes for ``partition_index`` (led at ``leader_epoch``) until
    ``target_id`` has caught up, then say so (quorumq's)."""

    topic: str = f(STRING)
    partition_index: int = f(INT32)
    leader_epoch: int = f(INT32)
    target_id: int = f(INT32)


@attrs.frozen(kw_only=True)
class BrokerHeartbeatReplicaReport:
    """One replica's log as its broker sees it: the vote of a quorum election (quorumq's)."""

    topic: str = f(STRING)
    partition_index: int = f(INT32)
    last_leader_epoch: int = f(INT32)
    log_end_offset: int = f(INT64)
    current_leader_epoch: int = f(INT32)


@attrs.frozen(kw_only=True)
class BrokerHeartbeatRequest:
    """BrokerHeartbeat (KIP-631): a broker tells the active controller it is alive. Flexible
    from v0; v1 adds the offline log directories."""

    broker_id: int = f(INT32)
    broker_epoch: int = f(INT64, default=-1)
    current_metadata_offset: int = f(INT64, default=-1)
    want_fence: bool = f(BOOL, default=False)
    want_shut_down: bool = f(BOOL, default=False)
    offline_log_dirs: Sequence[uuid.UUID] = f(Array(UUID), v=(1, None), tag=0, default=())
    replica_reports: Sequence[BrokerHeartbeatReplicaReport] | None = f(
        Array(BrokerHeartbeatReplicaReport), null=(0, None), tag=QUORUMQ_REPORTS_TAG, default=None
    )
    """None keeps the reports the controller has; a list (possibly empty) replaces them."""
    quorumq_sent_ms: int = f(INT64, tag=QUORUMQ_SENT_MS_TAG, default=-1)
    """When the broker sent it (its wall clock), covered by the MAC: a replay ages out."""
    quorumq_mac: bytes | None = f(BYTES, null=(0, None), tag=QUORUMQ_MAC_TAG, default=None)
    """HMAC-SHA256 with the controller password (``controller.image.heartbeat_mac``)."""
    quorumq_drained: Sequence[BrokerHeartbeatPartitionEpoch] = f(
        Array(BrokerHeartbeatPartitionEpoch), tag=QUORUMQ_DRAINED_TAG, default=()
    )


@attrs.frozen(kw_only=True)
class BrokerHeartbeatResponse:
    throttle_time_ms: int = f(INT32, default=0)
    error_code: int = f(INT16, default=0)
    is_caught_up: bool = f(BOOL, default=False)
    is_fenced: bool = f(BOOL, default=True)
    should_shut_down: bool = f(BOOL, default=False)
    quorumq_transfers: Sequence[BrokerHeartbeatTransfer] = f(
        Array(BrokerHeartbeatTransfer), tag=QUORUMQ_TRANSFERS_TAG, default=()
    )
