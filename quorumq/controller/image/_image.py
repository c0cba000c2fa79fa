"""The metadata image: brokers, topics, partitions, the controller epoch; and ``apply``.

Theory of operation: the image is an immutable value. ``apply_record(image, record)`` returns the
next image and what changed; nothing is mutated, so the Raft thread can swap in a new image while
the Trio thread keeps reading a consistent old one (a reference assignment is atomic). Containers
inside the image are plain dicts that are never mutated after construction (copy on write): only
the touched broker, topic or partition is copied, so an apply costs O(brokers) or O(partitions of
one topic), not O(image).

``apply_record`` is a pure function of (image, record): it reads no clock and no randomness, so the
same record sequence gives the same image on every voter (tests/controller check it).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any

import attrs

from quorumq.errors import ErrorCode
from quorumq.security import AclBinding, QuotaTable, ScramCredential

from ._records import (
    NO_LEADER,
    AclsChanged,
    AlterPartition,
    BrokerChanged,
    BrokerHeartbeat,
    ClientQuotaChange,
    ClientQuotasChanged,
    ConfigChange,
    ControllerChanged,
    ControllerEpochBump,
    CreateAcl,
    CreatePartitions,
    CreateTopic,
    DeleteAcl,
    DeleteTopic,
    FenceBroker,
    HeartbeatApplied,
    ImageChange,
    ImageReset,
    MetadataRecord,
    PartitionChange,
    PartitionChanged,
    RegisterBroker,
    Rejected,
    RemoveUserScramCredential,
    TopicConfigChanged,
    TopicCreated,
    TopicDeleted,
    UnfenceBroker,
    UserCredentialsChanged,
    UserScramCredential,
)
from ._validation import topic_name_error


@attrs.frozen
class PartitionState:
    """One partition as the controller decided it (Kafka's PartitionRegistration).

    invariant: ``leader`` is ``NO_LEADER`` or a member of ``replicas``; ``isr`` is a non-empty
    subset of ``replicas`` in replica order. ``leader_epoch`` grows on every leader change,
    ``partition_epoch`` on every change at all (the AlterPartition compare-and-set version).
    """

    leader: int
    leader_epoch: int
    partition_epoch: int
    replicas: tuple[int, ...]
    isr: tuple[int, ...]


@attrs.frozen
class BrokerState:
    """A registered broker.

    ``broker_epoch`` identifies this registration (grows on every new incarnation); decisions and
    heartbeats name it so that a restarted broker is not fenced by an old decision.
    ``registered_ms`` is when it registered, which counts as its first heartbeat. Later
    heartbeats are not in the image: the active controller keeps them in memory
    (``BrokerLiveness``), so that liveness never waits on Raft.
    """

    broker_id: int
    incarnation_id: str
    host: str
    port: int
    rack: str | None
    broker_epoch: int
    fenced: bool
    registered_ms: int
    listeners: tuple[tuple[str, str, int], ...] = ()
    """(name, advertised host, port) of every listener (``RegisterBroker.listeners``)."""

    def endpoint(self, listener: str) -> tuple[str, int] | None:
        """(host, port) of this broker's ``listener``; None: it has no such listener. A broker
        registered without listeners has one, which answers to every name."""
        if not self.listeners:
            return self.host, self.port
        for name, host, port in self.listeners:
            if name == listener:
                return host, port
        return None


@attrs.frozen
class TopicState:
    """A topic: its id (a uuid string chosen at creation), configs and partitions."""

    name: str
    topic_id: str
    configs: Mapping[str, str]
    partitions: Mapping[int, PartitionState]


@attrs.frozen
class MetadataImage:
    """The whole cluster metadata as of ``record_count`` applied records.

    ``controller_id``/``controller_epoch`` name the active controller (-1/0 before the first
    ControllerEpochBump); ``controller_epoch_start_ms`` is when it took over (fencing grace).
    ``last_broker_epoch`` is the counter broker epochs are drawn from. ``client_quotas`` are the
    byte-rate quotas every broker enforces, ``scram_credentials`` the users SASL logins are
    checked against, ``acls`` what each user may do (``quorumq.security``).
    """

    brokers: Mapping[int, BrokerState] = attrs.field(factory=dict)
    topics: Mapping[str, TopicState] = attrs.field(factory=dict)
    controller_id: int = -1
    controller_epoch: int = 0
    controller_epoch_start_ms: int = 0
    last_broker_epoch: int = 0
    record_count: int = 0
    client_quotas: QuotaTable = attrs.field(factory=QuotaTable)
    acls: frozenset[AclBinding] = frozenset()
    """Every ACL; the brokers' authorizers decide from these."""
    scram_credentials: Mapping[tuple[str, str], ScramCredential] = attrs.field(factory=dict)
    """(user, SCRAM mechanism) → the stored credential: the users SASL logins are checked
    against."""

    def live_brokers(self) -> frozenset[int]:
        """Ids of registered, unfenced brokers: the ones that may lead and be in an ISR."""
        return frozenset(b.broker_id for b in self.brokers.values() if not b.fenced)

    def partition(self, topic: str, partition: int) -> PartitionState | None:
        """The partition's state, or None when the topic or partition does not exist."""
        state = self.topics.get(topic)
        return None if state is None else state.partitions.get(partition)

    def topic_by_id(self, topic_id: str) -> TopicState | None:
        """The topic with this id (Kafka's topic ids survive renames; ours identify incarnations)."""
        for topic in self.topics.values():
            if topic.topic_id == topic_id:
                return topic
        return None


def _reject(record: MetadataRecord, code: ErrorCode, reason: str) -> list[ImageChange]:
    return [Rejected(type(record).__name__, code, reason)]


def apply_record(
    image: MetadataImage, record: MetadataRecord
) -> tuple[MetadataImage, list[ImageChange]]:
    """Applies one record: the next image and what changed (``[Rejected]`` for a no-op).

    Deterministic and total: every record gives an image (possibly the same one, with its
    ``record_count`` advanced), never an exception, because a voter that raised here would stop
    applying the log while the others go on.
    """
    handler = _HANDLERS.get(type(record))
    if handler is None:  # pragma: no cover - the codec only builds known record types
        new, changes = image, _reject(record, ErrorCode.INVALID_REQUEST, "unknown record type")
    else:
        new, changes = handler(image, record)
    return attrs.evolve(new, record_count=image.record_count + 1), changes


@attrs.define(eq=False)
class MetadataStateMachine:
    """Holds the current image and applies records to it (what each Raft voter runs).

    ``image`` is replaced, never mutated, on each apply: readers on other threads keep whatever
    consistent image they picked up.
    """

    image: MetadataImage = attrs.field(factory=MetadataImage)

    def apply(self, record: MetadataRecord) -> list[ImageChange]:
        """Applies ``record`` and returns what changed (see :func:`apply_record`)."""
        self.image, changes = apply_record(self.image, record)
        return changes

    def reset(self, image: MetadataImage) -> list[ImageChange]:
        """Replaces the whole image (snapshot load) and reports it as an :class:`ImageReset`."""
        self.image = image
        return [ImageReset()]


# --- handlers ------------------------------------------------------------------------------------

_Result = tuple[MetadataImage, list[ImageChange]]


def _with_broker(image: MetadataImage, broker: BrokerState) -> MetadataImage:
    return attrs.evolve(image, brokers={**image.brokers, broker.broker_id: broker})


def _with_partition(
    image: MetadataImage, topic: TopicState, index: int, state: PartitionState
) -> MetadataImage:
    new_topic = attrs.evolve(topic, partitions={**topic.partitions, index: state})
    return attrs.evolve(image, topics={**image.topics, topic.name: new_topic})


def _register(image: MetadataImage, r: RegisterBroker) -> _Result:
    old = image.brokers.get(r.broker_id)
    if old is not None and old.incarnation_id == r.incarnation_id:
        # A retried registration of the same process: answer with the epoch it already has.
        return image, [BrokerChanged(old.broker_id, old.broker_epoch, old.fenced, registered=True)]
    epoch = image.last_broker_epoch + 1
    broker = BrokerState(
        broker_id=r.broker_id,
        incarnation_id=r.incarnation_id,
        host=r.host,
        port=r.port,
        rack=r.rack,
        broker_epoch=epoch,
        fenced=True,
        registered_ms=r.now_ms,
        listeners=r.listeners,
    )
    image = attrs.evolve(_with_broker(image, broker), last_broker_epoch=epoch)
    return image, [BrokerChanged(r.broker_id, epoch, fenced=True, registered=True)]


def _broker_check(
    image: MetadataImage, record: MetadataRecord, broker_id: int, broker_epoch: int
) -> tuple[BrokerState | None, list[ImageChange]]:
    broker = image.brokers.get(broker_id)
    if broker is None:
        return None, _reject(record, ErrorCode.BROKER_ID_NOT_REGISTERED, f"broker {broker_id}")
    if broker.broker_epoch != broker_epoch:
        return None, _reject(
            record,
            ErrorCode.STALE_BROKER_EPOCH,
            f"broker {broker_id} is at epoch {broker.broker_epoch}, not {broker_epoch}",
        )
    return broker, []


def _heartbeat(image: MetadataImage, r: BrokerHeartbeat) -> _Result:
    """Heartbeats left in journals written before liveness moved out of Raft: checked, and
    otherwise ignored (``BrokerLiveness`` holds heartbeats now)."""
    broker, rejected = _broker_check(image, r, r.broker_id, r.broker_epoch)
    if broker is None:
        return image, rejected
    return image, [HeartbeatApplied(r.broker_id, r.broker_epoch)]


def _stale_controller(
    image: MetadataImage, record: MetadataRecord, epoch: int
) -> list[ImageChange]:
    if epoch < image.controller_epoch:
        return _reject(
            record,
            ErrorCode.STALE_CONTROLLER_EPOCH,
            f"stamped with controller epoch {epoch}, current is {image.controller_epoch}",
        )
    return []


def _set_fenced(image: MetadataImage, r: FenceBroker | UnfenceBroker, fenced: bool) -> _Result:
    stale = _stale_controller(image, r, r.controller_epoch)
    if stale:
        return image, stale
    broker, rejected = _broker_check(image, r, r.broker_id, r.broker_epoch)
    if broker is None:
        return image, rejected
    if broker.fenced == fenced:
        state = "fenced" if fenced else "unfenced"
        return image, _reject(r, ErrorCode.INVALID_REQUEST, f"broker {r.broker_id} already {state}")
    image = _with_broker(image, attrs.evolve(broker, fenced=fenced))
    return image, [BrokerChanged(r.broker_id, broker.broker_epoch, fenced=fenced)]


def _fence(image: MetadataImage, r: FenceBroker) -> _Result:
    return _set_fenced(image, r, True)


def _unfence(image: MetadataImage, r: UnfenceBroker) -> _Result:
    return _set_fenced(image, r, False)


def _create_topic(image: MetadataImage, r: CreateTopic) -> _Result:
    problem = topic_name_error(r.name)
    if problem is not None:
        return image, _reject(r, ErrorCode.INVALID_TOPIC_EXCEPTION, problem)
    if r.name in image.topics:
        return image, _reject(r, ErrorCode.TOPIC_ALREADY_EXISTS, f"topic {r.name!r} exists")
    if image.topic_by_id(r.topic_id) is not None:
        return image, _reject(r, ErrorCode.INVALID_REQUEST, f"topic id {r.topic_id} is taken")
    if not r.assignments or any(not replicas for replicas in r.assignments):
        return image, _reject(r, ErrorCode.INVALID_PARTITIONS, "every partition needs replicas")
    if any(len(set(replicas)) != len(replicas) for replicas in r.assignments):
        return image, _reject(r, ErrorCode.INVALID_REPLICA_ASSIGNMENT, "duplicate replica")
    partitions: dict[int, PartitionState] = {}
    changes: list[ImageChange] = [TopicCreated(r.name, r.topic_id)]
    for index, replicas in enumerate(r.assignments):
        partitions[index], change = _new_partition(image, r.name, index, replicas)
        changes.append(change)
    topic = TopicState(r.name, r.topic_id, dict(r.configs), partitions)
    return attrs.evolve(image, topics={**image.topics, r.name: topic}), changes


def _new_partition(
    image: MetadataImage, name: str, index: int, replicas: tuple[int, ...]
) -> tuple[PartitionState, ImageChange]:
    """A new partition's first state, as Kafka starts one: the first live replica leads, the
    live replicas form the ISR. With none live it starts leaderless with the full ISR, so a
    clean election waits for them."""
    live = image.live_brokers()
    live_replicas = tuple(b for b in replicas if b in live)
    leader = live_replicas[0] if live_replicas else NO_LEADER
    state = PartitionState(leader, 0, 0, replicas, live_replicas or replicas)
    return state, PartitionChanged(name, index, leader, 0, 0, leader_changed=True)


def _create_partitions(image: MetadataImage, r: CreatePartitions) -> _Result:
    topic = image.topics.get(r.name)
    if topic is None or topic.topic_id != r.topic_id:
        return image, _reject(r, ErrorCode.UNKNOWN_TOPIC_OR_PARTITION, f"no topic {r.name!r}")
    if len(topic.partitions) != r.first_partition:
        return image, _reject(
            r,
            ErrorCode.INVALID_PARTITIONS,
            f"topic {r.name!r} has {len(topic.partitions)} partitions now",
        )
    if not r.assignments or any(not replicas for replicas in r.assignments):
        return image, _reject(r, ErrorCode.INVALID_PARTITIONS, "every partition needs replicas")
    if any(len(set(replicas)) != len(replicas) for replicas in r.assignments):
        return image, _reject(r, ErrorCode.INVALID_REPLICA_ASSIGNMENT, "duplicate replica")
    partitions = dict(topic.partitions)
    changes: list[ImageChange] = []
    for offset, replicas in enumerate(r.assignments):
        index = r.first_partition + offset
        partitions[index], change = _new_partition(image, r.name, index, replicas)
        changes.append(change)
    new_topic = attrs.evolve(topic, partitions=partitions)
    return attrs.evolve(image, topics={**image.topics, r.name: new_topic}), changes


def _delete_topic(image: MetadataImage, r: DeleteTopic) -> _Result:
    topic = image.topics.get(r.name)
    if topic is None or (r.topic_id is not None and topic.topic_id != r.topic_id):
        return image, _reject(r, ErrorCode.UNKNOWN_TOPIC_OR_PARTITION, f"no topic {r.name!r}")
    topics = {name: t for name, t in image.topics.items() if name != r.name}
    return attrs.evolve(image, topics=topics), [TopicDeleted(r.name, topic.topic_id)]


def _config_change(image: MetadataImage, r: ConfigChange) -> _Result:
    topic = image.topics.get(r.topic)
    if topic is None:
        return image, _reject(r, ErrorCode.UNKNOWN_TOPIC_OR_PARTITION, f"no topic {r.topic!r}")
    configs = {k: v for k, v in topic.configs.items() if k not in r.delete_keys}
    configs.update(r.set_configs)
    new_topic = attrs.evolve(topic, configs=configs)
    image = attrs.evolve(image, topics={**image.topics, r.topic: new_topic})
    return image, [TopicConfigChanged(r.topic)]


def _find_partition(
    image: MetadataImage, record: AlterPartition | PartitionChange
) -> tuple[TopicState | None, PartitionState | None, list[ImageChange]]:
    topic = image.topics.get(record.topic)
    if topic is None or topic.topic_id != record.topic_id:
        return None, None, _reject(record, ErrorCode.UNKNOWN_TOPIC_OR_PARTITION, record.topic)
    state = topic.partitions.get(record.partition)
    if state is None:
        reason = f"{record.topic}-{record.partition}"
        return None, None, _reject(record, ErrorCode.UNKNOWN_TOPIC_OR_PARTITION, reason)
    return topic, state, []


def _epoch_check(
    record: AlterPartition | PartitionChange, state: PartitionState
) -> list[ImageChange]:
    if record.leader_epoch != state.leader_epoch:
        return _reject(
            record,
            ErrorCode.FENCED_LEADER_EPOCH,
            f"leader epoch is {state.leader_epoch}, not {record.leader_epoch}",
        )
    if record.partition_epoch != state.partition_epoch:
        return _reject(
            record,
            ErrorCode.INVALID_UPDATE_VERSION,
            f"partition epoch is {state.partition_epoch}, not {record.partition_epoch}",
        )
    return []


def _alter_partition(image: MetadataImage, r: AlterPartition) -> _Result:
    topic, state, rejected = _find_partition(image, r)
    if topic is None or state is None:
        return image, rejected
    if state.leader != r.leader_id:
        return image, _reject(
            r, ErrorCode.NOT_LEADER_OR_FOLLOWER, f"broker {r.leader_id} does not lead"
        )
    rejected = _epoch_check(r, state)
    if rejected:
        return image, rejected
    live = image.live_brokers()
    if r.leader_id not in r.new_isr or len(set(r.new_isr)) != len(r.new_isr):
        return image, _reject(r, ErrorCode.INVALID_REQUEST, "the ISR must hold the leader once")
    added = set(r.new_isr) - set(state.isr)
    if any(b not in state.replicas for b in r.new_isr) or any(b not in live for b in added):
        return image, _reject(r, ErrorCode.INELIGIBLE_REPLICA, f"ISR {list(r.new_isr)}")
    isr = tuple(b for b in state.replicas if b in r.new_isr)
    new = attrs.evolve(state, isr=isr, partition_epoch=state.partition_epoch + 1)
    image = _with_partition(image, topic, r.partition, new)
    change = PartitionChanged(
        r.topic, r.partition, new.leader, new.leader_epoch, new.partition_epoch, False
    )
    return image, [change]


def _partition_change(image: MetadataImage, r: PartitionChange) -> _Result:
    stale = _stale_controller(image, r, r.controller_epoch)
    if stale:
        return image, stale
    topic, state, rejected = _find_partition(image, r)
    if topic is None or state is None:
        return image, rejected
    rejected = _epoch_check(r, state)
    if rejected:
        return image, rejected
    replicas = r.new_replicas if r.new_replicas is not None else state.replicas
    isr = r.new_isr if r.new_isr is not None else state.isr
    if not replicas or len(set(replicas)) != len(replicas):
        return image, _reject(r, ErrorCode.INVALID_REPLICA_ASSIGNMENT, f"replicas {replicas}")
    if not isr or any(b not in replicas for b in isr):
        return image, _reject(r, ErrorCode.INVALID_REQUEST, f"ISR {list(isr)} not in replicas")
    if r.new_leader != NO_LEADER and r.new_leader not in replicas:
        return image, _reject(r, ErrorCode.INVALID_REQUEST, f"leader {r.new_leader} not a replica")
    leader_changed = r.new_leader != state.leader
    new = PartitionState(
        leader=r.new_leader,
        leader_epoch=state.leader_epoch + 1 if leader_changed else state.leader_epoch,
        partition_epoch=state.partition_epoch + 1,
        replicas=tuple(replicas),
        isr=tuple(b for b in replicas if b in isr),
    )
    image = _with_partition(image, topic, r.partition, new)
    change = PartitionChanged(
        r.topic, r.partition, new.leader, new.leader_epoch, new.partition_epoch, leader_changed
    )
    return image, [change]


def _controller_epoch(image: MetadataImage, r: ControllerEpochBump) -> _Result:
    if r.controller_epoch <= image.controller_epoch:
        return image, _reject(
            r,
            ErrorCode.STALE_CONTROLLER_EPOCH,
            f"epoch {r.controller_epoch} is not above {image.controller_epoch}",
        )
    image = attrs.evolve(
        image,
        controller_id=r.controller_id,
        controller_epoch=r.controller_epoch,
        controller_epoch_start_ms=r.now_ms,
    )
    return image, [ControllerChanged(r.controller_id, r.controller_epoch)]


def _client_quota_change(image: MetadataImage, r: ClientQuotaChange) -> _Result:
    quotas = image.client_quotas.altered(r.entity, dict(r.set_values), r.remove_keys)
    return attrs.evolve(image, client_quotas=quotas), [ClientQuotasChanged(r.entity)]


def _user_scram_credential(image: MetadataImage, r: UserScramCredential) -> _Result:
    credential = ScramCredential(r.salt, r.iterations, r.stored_key, r.server_key)
    credentials = {**image.scram_credentials, (r.user, r.mechanism): credential}
    image = attrs.evolve(image, scram_credentials=credentials)
    return image, [UserCredentialsChanged(r.user, r.mechanism)]


def _remove_user_scram_credential(image: MetadataImage, r: RemoveUserScramCredential) -> _Result:
    key = (r.user, r.mechanism)
    if key not in image.scram_credentials:
        return image, _reject(r, ErrorCode.RESOURCE_NOT_FOUND, f"no {r.mechanism} credential")
    credentials = {k: v for k, v in image.scram_credentials.items() if k != key}
    image = attrs.evolve(image, scram_credentials=credentials)
    return image, [UserCredentialsChanged(r.user, r.mechanism)]


def _acl(r: CreateAcl | DeleteAcl) -> AclBinding:
    return AclBinding(
        r.resource_type,
        r.resource_name,
        r.pattern_type,
        r.principal,
        r.host,
        r.operation,
        r.permission,
    )


def _create_acl(image: MetadataImage, r: CreateAcl) -> _Result:
    try:
        binding = _acl(r)
    except ValueError:  # numbers this code does not know: a newer writer
        return image, _reject(r, ErrorCode.INVALID_REQUEST, "unknown ACL values")
    if binding in image.acls:
        return image, _reject(r, ErrorCode.NONE, "the ACL exists")
    return attrs.evolve(image, acls=image.acls | {binding}), [AclsChanged()]


def _delete_acl(image: MetadataImage, r: DeleteAcl) -> _Result:
    try:
        binding = _acl(r)
    except ValueError:
        return image, _reject(r, ErrorCode.INVALID_REQUEST, "unknown ACL values")
    if binding not in image.acls:
        return image, _reject(r, ErrorCode.RESOURCE_NOT_FOUND, "no such ACL")
    return attrs.evolve(image, acls=image.acls - {binding}), [AclsChanged()]


_HANDLERS: dict[type, Callable[[MetadataImage, Any], _Result]] = {
    RegisterBroker: _register,
    BrokerHeartbeat: _heartbeat,
    FenceBroker: _fence,
    UnfenceBroker: _unfence,
    CreateTopic: _create_topic,
    CreatePartitions: _create_partitions,
    DeleteTopic: _delete_topic,
    ConfigChange: _config_change,
    AlterPartition: _alter_partition,
    PartitionChange: _partition_change,
    ControllerEpochBump: _controller_epoch,
    ClientQuotaChange: _client_quota_change,
    UserScramCredential: _user_scram_credential,
    RemoveUserScramCredential: _remove_user_scram_credential,
    CreateAcl: _create_acl,
    DeleteAcl: _delete_acl,
}


def changed_partitions(
    last: MetadataImage, image: MetadataImage
) -> tuple[list[tuple[TopicState, list[tuple[int, PartitionState]]]], set[str]]:
    """What ``image`` changed since ``last``: each changed topic with the partitions to look at
    (all of them when its id or configs changed, else those whose state is a new object), and
    the names of topics deleted or recreated under a new id (their old replicas must go).

    Relies on the image being persistent: a record rebuilds only the topics and partitions it
    changes and shares the rest, so an unchanged part is the very same object."""
    touched: list[tuple[TopicState, list[tuple[int, PartitionState]]]] = []
    replaced = {name for name in last.topics if name not in image.topics}
    if image.topics is last.topics:
        return touched, replaced
    for name, topic in image.topics.items():
        prev = last.topics.get(name)
        if prev is topic:
            continue
        if prev is None or prev.topic_id != topic.topic_id or prev.configs != topic.configs:
            if prev is not None and prev.topic_id != topic.topic_id:
                replaced.add(name)
            touched.append((topic, list(topic.partitions.items())))
            continue
        old = prev.partitions
        changed = [(i, state) for i, state in topic.partitions.items() if old.get(i) is not state]
        if changed:
            touched.append((topic, changed))
    return touched, replaced
