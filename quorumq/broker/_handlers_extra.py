"""Handlers beyond the core four: ListOffsets, CreateTopics, DeleteTopics, DescribeConfigs,
InitProducerId, OffsetForLeaderEpoch, FindCoordinator, Describe/AlterClientQuotas and
Describe/AlterUserScramCredentials, and Describe/Create/DeleteAcls.

All are synchronous: topic changes and producer-id blocks are written (and fsynced) before the
answer, so an acknowledged CreateTopics or InitProducerId survives a crash. Each registers only
when the protocol package has its message classes, so the broker advertises exactly what it
serves.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any

import trio

from quorumq import protocol as p
from quorumq.broker._acls import (
    check_creations,
    creation_results,
    deletion_results,
    describe_acls,
    match_deletions,
    save_acls,
    security_disabled,
)
from quorumq.broker._quotas import (
    alter_result,
    apply_changes,
    check_alter_entries,
    describe_client_quotas,
    save_quotas,
)
from quorumq.broker._sasl import (
    alter_response,
    apply_alterations,
    check_alterations,
    describe_credentials,
    save_credentials,
)
from quorumq.broker._server import Delayed
from quorumq.errors import (
    ErrorCode,
    InvalidReplicaAssignment,
    InvalidReplicationFactor,
    InvalidRequest,
    KafkaStorageError,
    NotLeaderOrFollower,
    RequestTimedOut,
)
from quorumq.security import AclBinding

if TYPE_CHECKING:
    from quorumq.broker._broker import Broker, Handler

EARLIEST_TIMESTAMP = -2
LATEST_TIMESTAMP = -1

# DescribeConfigs resource types and config sources (Kafka's ConfigResource.Type and
# DescribeConfigsResponse.ConfigSource).
RESOURCE_TOPIC = 2
RESOURCE_BROKER = 4
SOURCE_TOPIC_CONFIG = 1
SOURCE_STATIC_BROKER_CONFIG = 4
SOURCE_DEFAULT_CONFIG = 5


def register(broker: Broker, handlers: dict[int, Handler]) -> None:
    """Adds the handlers whose message classes exist in ``quorumq.protocol`` to ``handlers``."""
    table: list[tuple[p.ApiKey, str, Handler]] = [
        (p.ApiKey.LIST_OFFSETS, "ListOffsetsResponse", lambda h, r: _list_offsets(broker, h, r)),
        (
            p.ApiKey.CREATE_TOPICS,
            "CreateTopicsResponse",
            lambda h, r: _create_topics(broker, h, r),
        ),
        (
            p.ApiKey.DELETE_TOPICS,
            "DeleteTopicsResponse",
            lambda h, r: _delete_topics(broker, h, r),
        ),
        (
            p.ApiKey.DESCRIBE_LOG_DIRS,
            "DescribeLogDirsResponse",
            lambda h, r: _describe_log_dirs(broker, h, r),
        ),
        (
            p.ApiKey.ELECT_LEADERS,
            "ElectLeadersResponse",
            lambda h, r: _elect_leaders(broker, h, r),
        ),
        (
            p.ApiKey.DELETE_RECORDS,
            "DeleteRecordsResponse",
            lambda h, r: _delete_records(broker, h, r),
        ),
        (
            p.ApiKey.CREATE_PARTITIONS,
            "CreatePartitionsResponse",
            lambda h, r: _create_partitions(broker, h, r),
        ),
        (
            p.ApiKey.DESCRIBE_CONFIGS,
            "DescribeConfigsResponse",
            lambda h, r: _describe_configs(broker, h, r),
        ),
        (
            p.ApiKey.INIT_PRODUCER_ID,
            "InitProducerIdResponse",
            lambda h, r: _init_producer_id(broker, h, r),
        ),
        (
            p.ApiKey.OFFSET_FOR_LEADER_EPOCH,
            "OffsetForLeaderEpochResponse",
            lambda h, r: _offset_for_leader_epoch(broker, h, r),
        ),
        (
            p.ApiKey.FIND_COORDINATOR,
            "FindCoordinatorResponse",
            lambda h, r: _find_coordinator(broker, h, r),
        ),
        (
            p.ApiKey.DESCRIBE_CLIENT_QUOTAS,
            "DescribeClientQuotasResponse",
            lambda h, r: describe_client_quotas(broker.throttler.table, r),
        ),
        (
            p.ApiKey.ALTER_CLIENT_QUOTAS,
            "AlterClientQuotasResponse",
            lambda h, r: _alter_client_quotas(broker, h, r),
        ),
        (
            p.ApiKey.DESCRIBE_USER_SCRAM_CREDENTIALS,
            "DescribeUserScramCredentialsResponse",
            lambda h, r: describe_credentials(r, broker.user_credentials),
        ),
        (
            p.ApiKey.ALTER_USER_SCRAM_CREDENTIALS,
            "AlterUserScramCredentialsResponse",
            lambda h, r: _alter_user_scram_credentials(broker, h, r),
        ),
        (p.ApiKey.DESCRIBE_ACLS, "DescribeAclsResponse", lambda h, r: _describe_acls(broker, h, r)),
        (p.ApiKey.CREATE_ACLS, "CreateAclsResponse", lambda h, r: _create_acls(broker, h, r)),
        (p.ApiKey.DELETE_ACLS, "DeleteAclsResponse", lambda h, r: _delete_acls(broker, h, r)),
    ]
    for api_key, response_class, handler in table:
        if hasattr(p, response_class):
            handlers[api_key] = handler


def _code(exc: Exception, what: str) -> int:
    from quorumq.broker._broker import error_code_for

    return error_code_for(exc, what)


def check_named_once(names: list[str], name: str) -> None:
    """Raises InvalidRequest for a topic a request names more than once (as Kafka does)."""
    if names.count(name) > 1:
        raise InvalidRequest(f"topic {name!r} appears more than once")


def failed_topic(result: Callable[..., Any], name: str, exc: Exception, what: str) -> Any:
    """One topic's failure entry of a CreateTopics or CreatePartitions answer."""
    return result(
        name=name, error_code=_code(exc, f"{what} {name!r}"), error_message=str(exc) or None
    )


# --- AlterClientQuotas (a single broker: its quota file) -------------------------------------


def _alter_client_quotas(broker: Broker, header: p.RequestHeader, request: Any) -> Any:
    checked = check_alter_entries(request)
    changes = [change for _, change, _ in checked if change is not None]
    failure: Exception | None = None
    if changes and not request.validate_only:
        table = apply_changes(broker.throttler.table, changes)
        try:
            save_quotas(Path(broker.config.data_dir), table)
            broker.throttler.table = table
        except OSError as exc:
            failure = KafkaStorageError(f"cannot save the quotas: {exc}")
    return p.AlterClientQuotasResponse(
        entries=[alter_result(entry, error or failure) for entry, _, error in checked]
    )


# --- AlterUserScramCredentials (a single broker: its credentials file) ----------------------


def _alter_user_scram_credentials(broker: Broker, header: p.RequestHeader, request: Any) -> Any:
    reserved = broker.sasl.static_users() if broker.sasl is not None else frozenset()
    checked = check_alterations(request, broker.user_credentials, reserved)
    alterations = [a for _, alts, error in checked if error is None for a in alts]
    if not alterations:
        return alter_response(checked)
    credentials = apply_alterations(broker.user_credentials, alterations)
    try:
        save_credentials(Path(broker.config.data_dir), credentials)
    except OSError as exc:
        failure = KafkaStorageError(f"cannot save the credentials: {exc}")
        return alter_response(checked, lambda user: (int(failure.code), str(failure)))
    broker.user_credentials = credentials
    return alter_response(checked)


# --- ACLs (a single broker: its ACL file) ---------------------------------------------------


def _describe_acls(broker: Broker, header: p.RequestHeader, request: Any) -> Any:
    if broker.authorizer is None:
        return security_disabled(header.api_key, request)
    return describe_acls(broker.authorizer.acls, request)


def _save_acls(broker: Broker, acls: frozenset[Any]) -> KafkaStorageError | None:
    assert broker.authorizer is not None
    try:
        save_acls(Path(broker.config.data_dir), acls)
    except OSError as exc:
        return KafkaStorageError(f"cannot save the ACLs: {exc}")
    broker.authorizer = broker.authorizer.with_acls(acls)
    return None


def _create_acls(broker: Broker, header: p.RequestHeader, request: Any) -> Any:
    if broker.authorizer is None:
        return security_disabled(header.api_key, request)
    checked = check_creations(request)
    new = [c for c in checked if isinstance(c, AclBinding)]
    failure = _save_acls(broker, broker.authorizer.acls | set(new)) if new else None
    return creation_results(checked, failure)


def _delete_acls(broker: Broker, header: p.RequestHeader, request: Any) -> Any:
    if broker.authorizer is None:
        return security_disabled(header.api_key, request)
    matched = match_deletions(broker.authorizer.acls, request)
    gone = {a for found, _ in matched for a in found}
    failure = _save_acls(broker, broker.authorizer.acls - gone) if gone else None
    return deletion_results(matched, failure)


# --- ListOffsets ------------------------------------------------------------------------------


def _list_offsets(broker: Broker, header: p.RequestHeader, request: Any) -> Any:
    is_consumer = request.replica_id < 0
    topics = []
    for topic in request.topics:
        partitions = []
        for lp in topic.partitions:
            try:
                partition = broker.partition(topic.name, lp.partition_index)
                partition.check_leader_epoch(lp.current_leader_epoch)
                limit = partition.high_watermark if is_consumer else partition.log_end_offset
                timestamp = -1
                if lp.timestamp == EARLIEST_TIMESTAMP:
                    offset = partition.log_start_offset
                elif lp.timestamp == LATEST_TIMESTAMP:
                    offset = limit
                elif lp.timestamp == p.MAX_TIMESTAMP and header.api_version >= 7:
                    found = partition.log.offset_of_max_timestamp()
                    if found is None or found[0] >= limit:
                        offset = -1  # as Kafka: nothing below the high watermark to tell
                    else:
                        offset, timestamp = found
                elif lp.timestamp < 0:
                    raise InvalidRequest(f"unsupported ListOffsets timestamp {lp.timestamp}")
                else:
                    found = partition.log.offset_for_timestamp(lp.timestamp)
                    if found is None or found[0] >= limit:
                        offset = -1
                    else:
                        offset, timestamp = found
                partitions.append(
                    p.ListOffsetsResponsePartition(
                        partition_index=lp.partition_index,
                        error_code=0,
                        timestamp=timestamp,
                        offset=offset,
                        leader_epoch=partition.leader_epoch,
                    )
                )
            except Exception as exc:
                partitions.append(
                    p.ListOffsetsResponsePartition(
                        partition_index=lp.partition_index,
                        error_code=_code(exc, f"list offsets {topic.name}-{lp.partition_index}"),
                    )
                )
        topics.append(p.ListOffsetsResponseTopic(name=topic.name, partitions=partitions))
    return p.ListOffsetsResponse(topics=topics)


# --- CreateTopics / DeleteTopics --------------------------------------------------------------


def _create_topics(broker: Broker, header: p.RequestHeader, request: Any) -> Any:
    assert broker.topics is not None
    names = [t.name for t in request.topics]
    results = []
    for topic in request.topics:
        try:
            check_named_once(names, topic.name)
            partitions = topic.num_partitions
            if topic.assignments:
                if partitions != -1 or topic.replication_factor != -1:
                    raise InvalidRequest(
                        "give either assignments or partitions and replication factor"
                    )
                partitions = len(topic.assignments)
                for assignment in topic.assignments:
                    if list(assignment.broker_ids) != [broker.config.node_id]:
                        raise InvalidReplicationFactor(
                            f"partition {assignment.partition_index} assigned to "
                            f"{list(assignment.broker_ids)}; the only broker is "
                            f"{broker.config.node_id}"
                        )
            if partitions == -1:
                partitions = broker.config.num_partitions
            if topic.replication_factor not in (-1, 1):
                raise InvalidReplicationFactor(
                    f"replication factor {topic.replication_factor} is larger than the 1 "
                    f"available broker"
                )
            configs = {c.name: c.value for c in topic.configs}
            if request.validate_only:
                broker.topics.check_create(topic.name, partitions, configs)
            else:
                broker.create_topic(topic.name, partitions, configs)
            results.append(p.CreatableTopicResult(name=topic.name, error_code=0))
        except Exception as exc:
            results.append(failed_topic(p.CreatableTopicResult, topic.name, exc, "create topic"))
    return p.CreateTopicsResponse(topics=results)


def _create_partitions(broker: Broker, header: p.RequestHeader, request: Any) -> Any:
    """CreatePartitions on a single broker: the topics file, then the new partitions' logs."""
    assert broker.topics is not None
    names = [t.name for t in request.topics]
    results = []
    for topic in request.topics:
        try:
            check_named_once(names, topic.name)
            if topic.assignments is not None:
                current = len(topic.assignments) + broker.topics.get(topic.name).partitions
                if current != topic.count:
                    raise InvalidReplicaAssignment(
                        f"{len(topic.assignments)} replica lists for a count of {topic.count}"
                    )
                for assignment in topic.assignments:
                    if list(assignment.broker_ids) != [broker.config.node_id]:
                        raise InvalidReplicaAssignment(
                            f"replicas {list(assignment.broker_ids)}; the only broker is "
                            f"{broker.config.node_id}"
                        )
            broker.create_partitions(topic.name, topic.count, validate_only=request.validate_only)
            results.append(p.CreatePartitionsTopicResult(name=topic.name))
        except Exception as exc:
            what = "create partitions of"
            results.append(failed_topic(p.CreatePartitionsTopicResult, topic.name, exc, what))
    return p.CreatePartitionsResponse(results=results)


def _delete_records(broker: Broker, header: p.RequestHeader, request: Any) -> Any:
    """DeleteRecords (``kafka-delete-records``): each leader moves its log start offset at
    once; the answer waits, up to the request's timeout, until the low watermark (the lowest
    log start offset of the leader and its in-sync followers, which learn it from their next
    fetch) has passed it, so that a failover cannot bring the deleted records back, as Kafka's
    DelayedDeleteRecords does. Each partition is answered alone."""
    deadline = trio.current_time() + max(request.timeout_ms, 0) / 1000
    moved: list[tuple[str, int, Any, int]] = []  # (topic, index, partition, offset)
    errors: dict[tuple[str, int], int] = {}
    for topic in request.topics:
        for entry in topic.partitions:
            key = (topic.name, entry.partition_index)
            try:
                partition = broker.partition(*key)
                offset = partition.delete_records(entry.offset)
                moved.append((topic.name, entry.partition_index, partition, offset))
            except Exception as exc:
                errors[key] = _code(exc, f"delete records of {topic.name}-{key[1]}")

    async def settle() -> Any:
        low: dict[tuple[str, int], int] = {}
        for name, index, partition, offset in moved:
            try:
                while partition.low_watermark() < offset:
                    if trio.current_time() >= deadline:
                        raise RequestTimedOut(
                            f"{name}-{index}: followers still hold records below {offset}"
                        )
                    # Woken by each report; every 100 ms too, for an ISR that shrank.
                    with trio.move_on_at(min(deadline, trio.current_time() + 0.1)):
                        await partition.log_start_reported.wait()
                if broker.partitions.get((name, index)) is not partition:
                    raise NotLeaderOrFollower(f"{name}-{index} moved while deleting")
                low[(name, index)] = partition.low_watermark()
            except Exception as exc:
                errors[(name, index)] = _code(exc, f"delete records of {name}-{index}")
        return p.DeleteRecordsResponse(
            topics=[
                p.DeleteRecordsTopicResult(
                    name=topic.name,
                    partitions=[
                        p.DeleteRecordsPartitionResult(
                            partition_index=x.partition_index,
                            low_watermark=low.get((topic.name, x.partition_index), -1),
                            error_code=errors.get((topic.name, x.partition_index), 0),
                        )
                        for x in topic.partitions
                    ],
                )
                for topic in request.topics
            ]
        )

    return Delayed(settle)


def _describe_log_dirs(broker: Broker, header: p.RequestHeader, request: Any) -> Any:
    """DescribeLogDirs (``kafka-log-dirs``): the broker's one log directory, each partition's
    size on disk and how far its log end is past its high watermark, and the volume's space."""
    wanted: set[tuple[str, int]] | None = None
    if request.topics is not None:
        wanted = {(t.topic, index) for t in request.topics for index in t.partitions}
    by_topic: dict[str, list[p.DescribeLogDirsPartition]] = {}
    for (name, index), partition in sorted(broker.partitions.items()):
        if wanted is not None and (name, index) not in wanted:
            continue
        by_topic.setdefault(name, []).append(
            p.DescribeLogDirsPartition(
                partition_index=index,
                partition_size=partition.log.size_bytes(),
                offset_lag=max(0, partition.log_end_offset - partition.high_watermark),
            )
        )
    log_dir = str(Path(broker.config.data_dir).resolve())
    try:
        volume = os.statvfs(log_dir)
        total, usable = volume.f_blocks * volume.f_frsize, volume.f_bavail * volume.f_frsize
    except OSError:
        total = usable = -1
    return p.DescribeLogDirsResponse(
        results=[
            p.DescribeLogDirsResult(
                log_dir=log_dir,
                topics=[
                    p.DescribeLogDirsTopic(name=name, partitions=parts)
                    for name, parts in by_topic.items()
                ],
                total_bytes=total,
                usable_bytes=usable,
            )
        ]
    )


def _elect_leaders(broker: Broker, header: p.RequestHeader, request: Any) -> Any:
    """ElectLeaders on a single broker: it leads every partition already, so each named one
    is ELECTION_NOT_NEEDED (UNKNOWN_TOPIC_OR_PARTITION if it has no such partition), and a
    request for every partition elects none, as Kafka answers when nothing moves."""
    results = []
    for topic in request.topic_partitions or ():
        parts = []
        for index in topic.partitions:
            if (topic.topic, index) in broker.partitions:
                code, message = ErrorCode.ELECTION_NOT_NEEDED, "the only broker leads it already"
            else:
                code, message = ErrorCode.UNKNOWN_TOPIC_OR_PARTITION, "no such partition"
            parts.append(
                p.ElectLeadersPartitionResult(
                    partition_id=index, error_code=int(code), error_message=message
                )
            )
        results.append(p.ElectLeadersTopicResult(topic=topic.topic, partition_result=parts))
    return p.ElectLeadersResponse(replica_election_results=results)


def _delete_topics(broker: Broker, header: p.RequestHeader, request: Any) -> Any:
    results = []
    for name in request.topic_names:
        try:
            broker.delete_topic(name)
            results.append(p.DeletableTopicResult(name=name, error_code=0))
        except Exception as exc:
            results.append(
                p.DeletableTopicResult(name=name, error_code=_code(exc, f"delete topic {name!r}"))
            )
    return p.DeleteTopicsResponse(responses=results)


# --- DescribeConfigs --------------------------------------------------------------------------


def _broker_configs(broker: Broker) -> dict[str, str]:
    config = broker.config
    return {
        "broker.id": str(config.node_id),
        "node.id": str(config.node_id),
        "auto.create.topics.enable": str(config.auto_create_topics_enable).lower(),
        "num.partitions": str(config.num_partitions),
        "socket.request.max.bytes": str(config.socket_request_max_bytes),
        "queued.max.requests": str(config.queued_max_requests),
        "log.dirs": str(config.data_dir),
        "message.max.bytes": "1048588",
        "default.replication.factor": "1",
        "min.insync.replicas": "1",
        **_security_configs(broker),
    }


def _security_configs(broker: Broker) -> dict[str, str]:
    """The listeners and security settings, as Kafka names them (no secrets: passwords and
    key files are not shown, only whether TLS is configured)."""
    config = broker.config
    listeners = config.effective_listeners()
    bound = broker.ports
    return {
        "listeners": ",".join(
            f"{x.name}://{x.host}:{bound.get(x.name, x.port)}" for x in listeners
        ),
        "advertised.listeners": ",".join(
            f"{name}://{host}:{port}" for name, (host, port) in broker.endpoints.items()
        ),
        "listener.security.protocol.map": ",".join(
            f"{x.name}:{x.security_protocol}" for x in listeners
        ),
        "inter.broker.listener.name": config.inter_broker_listener().name,
        "sasl.enabled.mechanisms": ",".join(config.sasl_mechanisms),
        "connections.max.reauth.ms": str(config.connections_max_reauth_ms),
        "ssl.client.auth": "required" if config.ssl_client_auth else "none",
        "authorizer.class.name": "quorumq" if config.authorizer else "",
        "super.users": ";".join(config.super_users),
        "allow.everyone.if.no.acl.found": str(config.allow_everyone_if_no_acl_found).lower(),
    }


def _describe_configs(broker: Broker, header: p.RequestHeader, request: Any) -> Any:
    assert broker.topics is not None
    from quorumq.broker._topics import TOPIC_CONFIG_DEFS

    results = []
    for resource in request.resources:
        try:
            if resource.resource_type == RESOURCE_TOPIC:
                spec = broker.topics.get(resource.resource_name)
                values = spec.effective_configs()
                explicit = set(spec.configs)
                sensitive = {k for k, d in TOPIC_CONFIG_DEFS.items() if d.sensitive}
                source_of = {
                    key: SOURCE_TOPIC_CONFIG if key in explicit else SOURCE_DEFAULT_CONFIG
                    for key in values
                }
                read_only = False
            elif resource.resource_type == RESOURCE_BROKER:
                if resource.resource_name not in ("", str(broker.config.node_id)):
                    raise InvalidRequest(f"unknown broker {resource.resource_name!r}")
                values = _broker_configs(broker)
                sensitive = set()
                source_of = dict.fromkeys(values, SOURCE_STATIC_BROKER_CONFIG)
                read_only = True
            else:
                raise InvalidRequest(f"unsupported resource type {resource.resource_type}")
            keys = resource.configuration_keys
            if keys is not None:
                values = {k: v for k, v in values.items() if k in set(keys)}
            configs = [
                p.DescribeConfigsResourceResult(
                    name=key,
                    value=None if key in sensitive else value,
                    read_only=read_only,
                    config_source=source_of[key],
                    is_default=source_of[key] == SOURCE_DEFAULT_CONFIG,
                    is_sensitive=key in sensitive,
                )
                for key, value in sorted(values.items())
            ]
            results.append(
                p.DescribeConfigsResult(
                    error_code=0,
                    resource_type=resource.resource_type,
                    resource_name=resource.resource_name,
                    configs=configs,
                )
            )
        except Exception as exc:
            what = f"describe configs {resource.resource_name!r}"
            results.append(
                p.DescribeConfigsResult(
                    error_code=_code(exc, what),
                    error_message=str(exc) or None,
                    resource_type=resource.resource_type,
                    resource_name=resource.resource_name,
                    configs=[],
                )
            )
    return p.DescribeConfigsResponse(results=results)


# --- InitProducerId, OffsetForLeaderEpoch, FindCoordinator ----------------------------------


def _init_producer_id(broker: Broker, header: p.RequestHeader, request: Any) -> Any:
    assert broker.producer_ids is not None
    if request.transactional_id is not None:
        # Transactions need a transaction coordinator, which quorumq does not have (yet).
        return p.InitProducerIdResponse(error_code=ErrorCode.COORDINATOR_NOT_AVAILABLE)
    try:
        producer_id = broker.producer_ids.allocate()
    except Exception as exc:
        return p.InitProducerIdResponse(error_code=_code(exc, "init producer id"))
    return p.InitProducerIdResponse(error_code=0, producer_id=producer_id, producer_epoch=0)


def _offset_for_leader_epoch(broker: Broker, header: p.RequestHeader, request: Any) -> Any:
    topics = []
    for topic in request.topics:
        partitions = []
        for ep in topic.partitions:
            try:
                partition = broker.partition(topic.name, ep.partition_index)
                epoch, end_offset = partition.end_offset_for(
                    ep.leader_epoch, ep.current_leader_epoch
                )
                partitions.append(
                    p.EpochEndOffset(
                        error_code=0,
                        partition_index=ep.partition_index,
                        leader_epoch=epoch,
                        end_offset=end_offset,
                    )
                )
            except Exception as exc:
                partitions.append(
                    p.EpochEndOffset(
                        error_code=_code(exc, f"epoch end {topic.name}-{ep.partition_index}"),
                        partition_index=ep.partition_index,
                    )
                )
        topics.append(p.OffsetForLeaderTopicResult(name=topic.name, partitions=partitions))
    return p.OffsetForLeaderEpochResponse(topics=topics)


def _find_coordinator(broker: Broker, header: p.RequestHeader, request: Any) -> Any:
    # Consumer groups arrive with the group coordinator (a later issue).
    return p.FindCoordinatorResponse(
        error_code=ErrorCode.COORDINATOR_NOT_AVAILABLE,
        error_message="quorumq has no group coordinator yet",
    )
