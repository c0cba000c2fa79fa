"""Metadata records (what the Raft log carries) and image changes (what applying one did).

Every record is a frozen value. Records are either *facts* reported by brokers or clients
(RegisterBroker, BrokerHeartbeat, CreateTopic, DeleteTopic, ConfigChange, AlterPartition) or
*decisions* of the active controller (FenceBroker, UnfenceBroker, PartitionChange), which carry the
``controller_epoch`` they were computed under. Every record that changes existing state is a
compare-and-set on an epoch it read, so proposing it twice, or after LEADER_CHANGED, or after a
timeout, is safe: the second copy is a no-op recorded as :class:`Rejected`.

Records hold no clock and no randomness: times (``now_ms``) and ids (``topic_id``) are chosen by the
proposer and written into the record, so every voter applies the same bytes to the same result.
"""

from __future__ import annotations

from collections.abc import Mapping

import attrs

from quorumq.errors import ErrorCode

NO_LEADER = -1
"""``leader`` of a partition with no eligible leader (Kafka's -1, LEADER_NOT_AVAILABLE)."""


def _config_tuple(
    configs: Mapping[str, str] | tuple[tuple[str, str], ...],
) -> tuple[tuple[str, str], ...]:
    items = configs.items() if isinstance(configs, Mapping) else configs
    return tuple(sorted((str(k), str(v)) for k, v in items))


def _int_tuple(values: object) -> tuple[int, ...]:
    return tuple(int(v) for v in values)  # type: ignore[attr-defined]


def _optional_int_tuple(values: object) -> tuple[int, ...] | None:
    return None if values is None else _int_tuple(values)


# --- records: facts ---------------------------------------------------------------------------


@attrs.frozen
class RegisterBroker:
    """A broker process announces itself (Kafka's BrokerRegistrationRequest).

    ``incarnation_id`` is a fresh uuid per process start: the same incarnation registering again is
    an idempotent retry, a new one is a restart and gets a new broker epoch. A registered broker
    starts fenced; the controller unfences it once it heartbeats (as KRaft does).
    """

    broker_id: int
    incarnation_id: str
    host: str
    port: int
    now_ms: int
    rack: str | None = None
    listeners: tuple[tuple[str, str, int], ...] = attrs.field(
        default=(), converter=lambda x: tuple((str(n), str(h), int(p)) for n, h, p in x)
    )
    """Every listener's (name, advertised host, port); ``host``/``port`` are the inter-broker
    listener's. Empty (a registration from before listeners): the one listener is
    ``host``/``port``."""


@attrs.frozen
class ReplicaReport:
    """One replica's log as its broker sees it: the quorum election input.

    ``last_leader_epoch`` is the leader epoch of the last batch in the replica's log and
    ``log_end_offset`` its LEO; the most complete log has the highest pair.
    ``current_leader_epoch`` is the partition's leader epoch the broker knew when it made the
    report (Kafka's name for "the epoch I follow"); a report is a promise not to follow a leader of
    an older epoch afterwards, which is what makes it a valid vote once that epoch has ended.
    """

    topic: str
    partition: int
    last_leader_epoch: int
    log_end_offset: int
    current_leader_epoch: int


@attrs.frozen
class BrokerHeartbeat:
    """A broker is alive at ``now_ms`` (its wall clock, milliseconds since the epoch).

    ``reports`` replaces the broker's stored replica reports when given; ``None`` keeps them.
    Applies only for the broker's current ``broker_epoch`` (STALE_BROKER_EPOCH otherwise).
    """

    broker_id: int
    broker_epoch: int
    now_ms: int
    reports: tuple[ReplicaReport, ...] | None = attrs.field(
        default=None, converter=lambda r: None if r is None else tuple(r)
    )


@attrs.frozen
class CreateTopic:
    """A new topic with its replica assignment (one replica list per partition, index order).

    The proposer validates and assigns (see ``plan_create_topic``); apply checks again that the
    name and id are free, so a retried create is answered TOPIC_ALREADY_EXISTS, not applied twice.
    """

    name: str
    topic_id: str
    assignments: tuple[tuple[int, ...], ...] = attrs.field(
        converter=lambda a: tuple(_int_tuple(r) for r in a)
    )
    configs: tuple[tuple[str, str], ...] = attrs.field(default=(), converter=_config_tuple)


@attrs.frozen
class CreatePartitions:
    """More partitions for an existing topic (Kafka's CreatePartitions): ``assignments`` are
    the replica lists of partitions ``first_partition``, ``first_partition + 1``, ...

    A compare-and-set on the partition count: applied only while the topic (``topic_id``) still
    has exactly ``first_partition`` partitions, so a retried or racing request is refused
    INVALID_PARTITIONS instead of adding partitions twice.
    """

    name: str
    topic_id: str
    first_partition: int
    assignments: tuple[tuple[int, ...], ...] = attrs.field(
        converter=lambda a: tuple(_int_tuple(r) for r in a)
    )


@attrs.frozen
class DeleteTopic:
    """Removes a topic; ``topic_id`` (when given) must still match, so a recreated topic survives."""

    name: str
    topic_id: str | None = None


@attrs.frozen
class ConfigChange:
    """Sets and deletes topic configs (Kafka's IncrementalAlterConfigs SET / DELETE)."""

    topic: str
    set_configs: tuple[tuple[str, str], ...] = attrs.field(default=(), converter=_config_tuple)
    delete_keys: tuple[str, ...] = attrs.field(
        default=(), converter=lambda keys: tuple(sorted(str(k) for k in keys))
    )


def _quota_values(values: object) -> tuple[tuple[str, float], ...]:
    items = values.items() if isinstance(values, Mapping) else values  # type: ignore[attr-defined]
    return tuple(sorted((str(k), float(v)) for k, v in items))


@attrs.frozen
class ClientQuotaChange:
    """Sets and removes byte-rate quotas of one entity (Kafka's AlterClientQuotas entry, and
    KRaft's ClientQuotaRecord). ``entity`` is a normalised
    :data:`quorumq.security.QuotaEntity`; checked by the proposer, applied as given."""

    entity: tuple[tuple[str, str | None], ...] = attrs.field(
        converter=lambda e: tuple(sorted((str(k), None if n is None else str(n)) for k, n in e))
    )
    set_values: tuple[tuple[str, float], ...] = attrs.field(default=(), converter=_quota_values)
    remove_keys: tuple[str, ...] = attrs.field(
        default=(), converter=lambda keys: tuple(sorted(str(k) for k in keys))
    )


@attrs.frozen
class UserScramCredential:
    """Sets a user's SCRAM credential for one mechanism (Kafka's UserScramCredentialRecord):
    the stored form only (``quorumq.security.ScramCredential``), never a password."""

    user: str
    mechanism: str
    salt: bytes
    iterations: int
    stored_key: bytes
    server_key: bytes


@attrs.frozen
class RemoveUserScramCredential:
    """Removes a user's credential for one mechanism (a no-op, Rejected, if there is none)."""

    user: str
    mechanism: str


@attrs.frozen
class _AclRecord:
    """One ACL, with Kafka's numbers for the resource type, pattern type, operation and
    permission (``quorumq.security``); checked by the proposer."""

    resource_type: int
    resource_name: str
    pattern_type: int
    principal: str
    host: str
    operation: int
    permission: int


@attrs.frozen
class CreateAcl(_AclRecord):
    """Adds one ACL (Kafka's AccessControlEntryRecord); adding one that exists is a no-op."""


@attrs.frozen
class DeleteAcl(_AclRecord):
    """Removes one ACL (Kafka's RemoveAccessControlEntryRecord); Rejected if it is gone."""


@attrs.frozen
class AlterPartition:
    """The partition leader changes its ISR (Kafka's AlterPartition, KIP-497): shrink or expand.

    Compare-and-set: applies only while ``leader_id`` still leads at ``leader_epoch`` and the
    partition is still at ``partition_epoch``; the leader is always in the new ISR and every member
    must be an unfenced replica.
    """

    topic: str
    topic_id: str
    partition: int
    leader_id: int
    leader_epoch: int
    partition_epoch: int
    new_isr: tuple[int, ...] = attrs.field(converter=_int_tuple)


# --- records: controller decisions ---------------------------------------------------------------


@attrs.frozen
class ControllerEpochBump:
    """A voter that became the Raft leader takes over as the active controller.

    ``controller_epoch`` is the Raft term it was elected in, so epochs only grow (terms survive
    restarts in pysyncobj's journal). Applies only if it is greater than the image's epoch;
    afterwards decisions stamped with an older epoch are rejected (STALE_CONTROLLER_EPOCH).
    ``now_ms`` starts a grace period: brokers are not fenced for silence before it.
    """

    controller_id: int
    controller_epoch: int
    now_ms: int


@attrs.frozen
class FenceBroker:
    """The controller fences a silent broker (its ``broker.session.timeout.ms`` passed)."""

    broker_id: int
    broker_epoch: int
    controller_epoch: int


@attrs.frozen
class UnfenceBroker:
    """The controller unfences a broker that heartbeats again and leads nothing."""

    broker_id: int
    broker_epoch: int
    controller_epoch: int


@attrs.frozen
class PartitionChange:
    """A controller decision on one partition: new leader and/or ISR (or replicas).

    Compare-and-set: applies only while the partition is still at ``leader_epoch`` and
    ``partition_epoch`` (the epochs the decision was based on) and the controller epoch is current.
    A leader change bumps ``leader_epoch``; every applied change bumps ``partition_epoch``.
    ``new_isr`` / ``new_replicas`` of ``None`` keep the current ones.
    """

    topic: str
    topic_id: str
    partition: int
    leader_epoch: int
    partition_epoch: int
    controller_epoch: int
    new_leader: int
    new_isr: tuple[int, ...] | None = attrs.field(default=None, converter=_optional_int_tuple)
    new_replicas: tuple[int, ...] | None = attrs.field(default=None, converter=_optional_int_tuple)


MetadataRecord = (
    RegisterBroker
    | BrokerHeartbeat
    | FenceBroker
    | UnfenceBroker
    | CreateTopic
    | CreatePartitions
    | DeleteTopic
    | ConfigChange
    | AlterPartition
    | PartitionChange
    | ControllerEpochBump
    | ClientQuotaChange
    | UserScramCredential
    | RemoveUserScramCredential
    | CreateAcl
    | DeleteAcl
)
"""Every record type the metadata log carries."""

DECISIONS = (FenceBroker, UnfenceBroker, PartitionChange)
"""Record types stamped with a controller epoch."""


# --- image changes ------------------------------------------------------------------------------


@attrs.frozen
class BrokerChanged:
    """A broker registered, was fenced or unfenced (heartbeats that change nothing else are not
    reported, so followers of the image are not woken once a second per broker)."""

    broker_id: int
    broker_epoch: int
    fenced: bool
    registered: bool = False


@attrs.frozen
class TopicCreated:
    name: str
    topic_id: str


@attrs.frozen
class TopicDeleted:
    name: str
    topic_id: str


@attrs.frozen
class TopicConfigChanged:
    name: str


@attrs.frozen
class ClientQuotasChanged:
    """An entity's quotas were set or removed."""

    entity: tuple[tuple[str, str | None], ...]


@attrs.frozen
class UserCredentialsChanged:
    """A user's SCRAM credential for ``mechanism`` was set or removed."""

    user: str
    mechanism: str


@attrs.frozen
class AclsChanged:
    """An ACL was added or removed."""


@attrs.frozen
class PartitionChanged:
    """A partition's leader, epochs, replicas or ISR changed (also emitted at topic creation)."""

    topic: str
    partition: int
    leader: int
    leader_epoch: int
    partition_epoch: int
    leader_changed: bool


@attrs.frozen
class ControllerChanged:
    controller_id: int
    controller_epoch: int


@attrs.frozen
class HeartbeatApplied:
    """A heartbeat was recorded (returned to the proposer; carries no news for listeners)."""

    broker_id: int
    broker_epoch: int


@attrs.frozen
class Rejected:
    """The record was a no-op: a compare-and-set that lost, a duplicate, or invalid.

    ``code`` is the Kafka error the proposer answers with (``error_for_code(code)``).
    """

    record_type: str
    code: ErrorCode
    reason: str


@attrs.frozen
class ImageReset:
    """The whole image was replaced (snapshot install or restart): re-read everything."""


ImageChange = (
    BrokerChanged
    | TopicCreated
    | TopicDeleted
    | TopicConfigChanged
    | PartitionChanged
    | ControllerChanged
    | HeartbeatApplied
    | ClientQuotasChanged
    | UserCredentialsChanged
    | AclsChanged
    | Rejected
    | ImageReset
)
