"""Which requests each principal may make: one gate per API, in front of its handler, with
Kafka's resource and operation for each (``KafkaApis``' ``authorize`` calls).

A gate returns the request to handle, with what the principal may not touch taken out, and a
fix that puts Kafka's authorization errors for those parts back into the answer. A request
denied whole gets its answer from the gate and never reaches the handler. What a gate cannot
see, it leaves to the handler as a per-topic ``check``: a fetch session names partitions the
request does not, so Fetch checks each topic as it reads (``Broker._read_fetch``); only
Metadata knows which topics are missing, so it asks whether each may be auto-created.

Only brokers with an authorizer run gates (``--authorizer``); on the others nothing here costs
a thing.
"""

from __future__ import annotations

import functools
from collections.abc import Callable, Sequence
from typing import Any

import attrs

from quorumq import protocol as p
from quorumq.errors import ErrorCode
from quorumq.security import CLUSTER_NAME, AclOperation, Authorizer, ResourceType

Op = AclOperation
TOPIC, GROUP, CLUSTER = ResourceType.TOPIC, ResourceType.GROUP, ResourceType.CLUSTER
TOPIC_DENIED = int(ErrorCode.TOPIC_AUTHORIZATION_FAILED)
GROUP_DENIED = int(ErrorCode.GROUP_AUTHORIZATION_FAILED)
CLUSTER_DENIED = int(ErrorCode.CLUSTER_AUTHORIZATION_FAILED)
RESOURCE_BROKER = 4  # DescribeConfigs' resource type of a broker


@attrs.frozen
class Caller:
    """Who sent the request, as the authorizer sees them."""

    authorizer: Authorizer
    principal: str
    host: str

    def may(self, op: AclOperation, rtype: ResourceType, name: str) -> bool:
        return self.authorizer.authorize(self.principal, self.host, op, rtype, name)

    def may_on_cluster(self, op: AclOperation) -> bool:
        return self.may(op, CLUSTER, CLUSTER_NAME)


@attrs.frozen
class Decision:
    """What a gate decided: answer ``deny`` at once, or handle ``request`` and pass the answer
    through ``fix``; ``check`` is the per-topic test the handler applies itself."""

    request: Any = None
    fix: Callable[[Any], Any] | None = None
    deny: Any = None
    check: Callable[[str], bool] | None = None


ALLOWED = Decision()
Gate = Callable[[Caller, Any], Decision]


def _split(
    items: Sequence[Any], name: Callable[[Any], str], allowed: Callable[[str], bool]
) -> tuple[list[Any], list[Any]]:
    kept, denied = [], []
    for item in items:
        (kept if allowed(name(item)) else denied).append(item)
    return kept, denied


def _every_partition(
    topic_result: type, partition_result: type, **fields: Any
) -> Callable[[Any], Any]:
    """A denied topic's answer entry: every partition it names TOPIC_AUTHORIZATION_FAILED."""

    def answer(topic: Any) -> Any:
        return topic_result(
            name=topic.name,
            partitions=[
                partition_result(
                    partition_index=x.partition_index, error_code=TOPIC_DENIED, **fields
                )
                for x in topic.partitions
            ],
        )

    return answer


def _appending(field: str, extra: list[Any]) -> Callable[[Any], Any]:
    def fix(response: Any) -> Any:
        return attrs.evolve(response, **{field: [*getattr(response, field), *extra]})

    return fix


# --- records ---------------------------------------------------------------------------------


def _produce(caller: Caller, request: Any) -> Decision:
    return _per_topic(
        request,
        lambda name: caller.may(Op.WRITE, TOPIC, name),
        _every_partition(p.ProduceResponseTopic, p.ProduceResponsePartition, base_offset=-1),
        whole=lambda extra: NO_ANSWER if request.acks == 0 else p.ProduceResponse(topics=extra),
    )


NO_ANSWER = object()
"""A denied acks=0 produce: the broker closes the connection, as for any failed acks=0."""


def _cached(caller: Caller, op: AclOperation) -> Callable[[str], bool]:
    """``caller.may(op, TOPIC, name)``, asked once per name within one request."""
    cache: dict[str, bool] = {}

    def check(name: str) -> bool:
        found = cache.get(name)
        if found is None:
            found = cache[name] = caller.may(op, TOPIC, name)
        return found

    return check


def _fetch(caller: Caller, request: Any) -> Decision:
    """A consumer needs READ on each topic it reads, a follower CLUSTER_ACTION on the cluster
    (decided once)."""
    if request.replica_id >= 0:
        may = caller.may_on_cluster(Op.CLUSTER_ACTION)
        return Decision(check=lambda _name: may)
    return Decision(check=_cached(caller, Op.READ))


def _per_topic(
    request: Any,
    allowed: Callable[[str], bool],
    answer: Callable[[Any], Any],
    whole: Callable[[list[Any]], Any] | None = None,
    field: str = "topics",
) -> Decision:
    """Takes the topics ``allowed`` refuses out of ``request.topics``; ``answer`` builds each
    one's entry (TOPIC_AUTHORIZATION_FAILED) for the response's ``field``. ``whole``: the
    answer when no topic is left (else the handler gets a request for none)."""
    kept, denied = _split(request.topics, lambda t: t.name, allowed)
    if not denied:
        return ALLOWED
    extra = [answer(t) for t in denied]
    if not kept and whole is not None:
        return Decision(deny=whole(extra))
    return Decision(attrs.evolve(request, topics=kept), _appending(field, extra))


def _list_offsets(caller: Caller, request: Any) -> Decision:
    return _per_topic(
        request,
        lambda name: caller.may(Op.DESCRIBE, TOPIC, name),
        _every_partition(p.ListOffsetsResponseTopic, p.ListOffsetsResponsePartition),
    )


def _offset_for_leader_epoch(caller: Caller, request: Any) -> Decision:
    if request.replica_id >= 0:
        follower = caller.may_on_cluster(Op.CLUSTER_ACTION)
        allowed: Callable[[str], bool] = lambda _name: follower  # noqa: E731
    else:
        allowed = lambda name: caller.may(Op.DESCRIBE, TOPIC, name)  # noqa: E731
    return _per_topic(
        request,
        allowed,
        _every_partition(p.OffsetForLeaderTopicResult, p.EpochEndOffset),
    )


# --- metadata and topics ---------------------------------------------------------------------


def _metadata(caller: Caller, request: Any) -> Decision:
    """Every topic asked for needs DESCRIBE, and auto-creating a missing one CREATE (on the
    cluster or the topic): the handler answers a missing topic the caller may not create with
    TOPIC_AUTHORIZATION_FAILED and creates the others, as Kafka does. A request for all topics
    sees only those it may describe."""
    may_describe = _cached(caller, Op.DESCRIBE)
    if request.topics is None:

        def only_described(response: Any) -> Any:
            return attrs.evolve(
                response, topics=[t for t in response.topics if may_describe(t.name)]
            )

        return Decision(request, only_described)
    kept, denied = _split(request.topics, lambda t: t.name, may_describe)
    may_create = None if caller.may_on_cluster(Op.CREATE) else _cached(caller, Op.CREATE)
    if not denied:
        return Decision(check=may_create)
    extra = [
        p.MetadataResponseTopic(error_code=TOPIC_DENIED, name=t.name, partitions=[]) for t in denied
    ]
    return Decision(
        attrs.evolve(request, topics=kept), _appending("topics", extra), check=may_create
    )


def _create_topics(caller: Caller, request: Any) -> Decision:
    if caller.may_on_cluster(Op.CREATE):
        return ALLOWED
    return _per_topic(
        request,
        lambda name: caller.may(Op.CREATE, TOPIC, name),
        lambda t: p.CreatableTopicResult(
            name=t.name, error_code=TOPIC_DENIED, error_message="not authorized to create it"
        ),
    )


def _delete_records(caller: Caller, request: Any) -> Decision:
    return _per_topic(
        request,
        lambda name: caller.may(Op.DELETE, TOPIC, name),
        _every_partition(p.DeleteRecordsTopicResult, p.DeleteRecordsPartitionResult),
    )


def _create_partitions(caller: Caller, request: Any) -> Decision:
    return _per_topic(
        request,
        lambda name: caller.may(Op.ALTER, TOPIC, name),
        lambda t: p.CreatePartitionsTopicResult(
            name=t.name, error_code=TOPIC_DENIED, error_message="not authorized"
        ),
        field="results",
    )


def _delete_topics(caller: Caller, request: Any) -> Decision:
    kept, denied = _split(
        request.topic_names, lambda n: n, lambda n: caller.may(Op.DELETE, TOPIC, n)
    )
    if not denied:
        return ALLOWED
    extra = [p.DeletableTopicResult(name=n, error_code=TOPIC_DENIED) for n in denied]
    return Decision(attrs.evolve(request, topic_names=kept), _appending("responses", extra))


def _config_resources(op: AclOperation, denied_entry: Callable[..., Any], field: str) -> Gate:
    """A gate for requests about config resources: ``op`` on each topic, or on the cluster for
    a broker; each refused resource answered by ``denied_entry`` in the response's ``field``."""

    def gate(caller: Caller, request: Any) -> Decision:
        def allowed(resource: Any) -> bool:
            if resource.resource_type == RESOURCE_BROKER:
                return caller.may_on_cluster(op)
            return caller.may(op, TOPIC, resource.resource_name)

        kept, denied = _split(request.resources, lambda r: r, allowed)
        if not denied:
            return ALLOWED
        extra = [
            denied_entry(
                error_code=CLUSTER_DENIED if r.resource_type == RESOURCE_BROKER else TOPIC_DENIED,
                error_message="not authorized",
                resource_type=r.resource_type,
                resource_name=r.resource_name,
            )
            for r in denied
        ]
        return Decision(attrs.evolve(request, resources=kept), _appending(field, extra))

    return gate


_describe_configs = _config_resources(
    Op.DESCRIBE_CONFIGS, functools.partial(p.DescribeConfigsResult, configs=[]), "results"
)
_alter_configs = _config_resources(Op.ALTER_CONFIGS, p.AlterConfigsResourceResponse, "responses")
"""AlterConfigs and IncrementalAlterConfigs alike."""


def _init_producer_id(caller: Caller, request: Any) -> Decision:
    # KIP-679: an idempotent producer needs IDEMPOTENT_WRITE on the cluster or WRITE on any topic.
    if caller.may_on_cluster(Op.IDEMPOTENT_WRITE) or caller.authorizer.allows_any(
        caller.principal, caller.host, Op.WRITE, TOPIC
    ):
        return ALLOWED
    return Decision(deny=p.InitProducerIdResponse(error_code=CLUSTER_DENIED))


# --- groups ----------------------------------------------------------------------------------


def _group_gate(op: AclOperation, denial: Callable[[], Any]) -> Gate:
    def gate(caller: Caller, request: Any) -> Decision:
        return ALLOWED if caller.may(op, GROUP, request.group_id) else Decision(deny=denial())

    return gate


def _find_coordinator(caller: Caller, request: Any) -> Decision:
    key_type = getattr(request, "key_type", p.COORDINATOR_GROUP)
    if key_type != p.COORDINATOR_GROUP or caller.may(Op.DESCRIBE, GROUP, request.key):
        return ALLOWED  # transaction coordinators are refused by the handler itself
    return Decision(
        deny=p.FindCoordinatorResponse(error_code=GROUP_DENIED, node_id=-1, host="", port=-1)
    )


def _offset_commit(caller: Caller, request: Any) -> Decision:
    if not caller.may(Op.READ, GROUP, request.group_id):
        return Decision(deny=_commit_answer(request.topics, GROUP_DENIED))
    return _per_topic(
        request,
        lambda name: caller.may(Op.READ, TOPIC, name),
        lambda t: _commit_answer([t], TOPIC_DENIED).topics[0],
        whole=lambda extra: p.OffsetCommitResponse(topics=extra),
    )


def _commit_answer(topics: Sequence[Any], code: int) -> Any:
    return p.OffsetCommitResponse(
        topics=[
            p.OffsetCommitResponseTopic(
                name=t.name,
                partitions=[
                    p.OffsetCommitResponsePartition(
                        partition_index=x.partition_index, error_code=code
                    )
                    for x in t.partitions
                ],
            )
            for t in topics
        ]
    )


def _offset_fetch(caller: Caller, request: Any) -> Decision:
    if not caller.may(Op.DESCRIBE, GROUP, request.group_id):
        topics = [_fetch_answer(t, GROUP_DENIED) for t in request.topics or ()]
        return Decision(deny=p.OffsetFetchResponse(topics=topics, error_code=GROUP_DENIED))
    if request.topics is None:

        def only_described(response: Any) -> Any:
            return attrs.evolve(
                response,
                topics=[t for t in response.topics if caller.may(Op.DESCRIBE, TOPIC, t.name)],
            )

        return Decision(request, only_described)
    return _per_topic(
        request,
        lambda name: caller.may(Op.DESCRIBE, TOPIC, name),
        lambda t: _fetch_answer(t, TOPIC_DENIED),
    )


def _fetch_answer(topic: Any, code: int) -> Any:
    return p.OffsetFetchResponseTopic(
        name=topic.name,
        partitions=[
            p.OffsetFetchResponsePartition(partition_index=i, committed_offset=-1, error_code=code)
            for i in topic.partition_indexes
        ],
    )


def _list_groups(caller: Caller, request: Any) -> Decision:
    if caller.may_on_cluster(Op.DESCRIBE):
        return ALLOWED

    def only_described(response: Any) -> Any:
        groups = [g for g in response.groups if caller.may(Op.DESCRIBE, GROUP, g.group_id)]
        return attrs.evolve(response, groups=groups)

    return Decision(request, only_described)


def _describe_groups(caller: Caller, request: Any) -> Decision:
    kept, denied = _split(request.groups, lambda g: g, lambda g: caller.may(Op.DESCRIBE, GROUP, g))
    if not denied:
        return ALLOWED
    extra = [p.DescribedGroup(error_code=GROUP_DENIED, group_id=g) for g in denied]
    return Decision(attrs.evolve(request, groups=kept), _appending("groups", extra))


def _offset_delete(caller: Caller, request: Any) -> Decision:
    """DELETE on the group, then READ on each topic (as Kafka's ``handleDeleteOffsets``)."""
    if not caller.may(Op.DELETE, GROUP, request.group_id):
        return Decision(deny=p.OffsetDeleteResponse(error_code=GROUP_DENIED))
    return _per_topic(
        request,
        lambda name: caller.may(Op.READ, TOPIC, name),
        _every_partition(p.OffsetDeleteResponseTopic, p.OffsetDeleteResponsePartition),
    )


def _delete_groups(caller: Caller, request: Any) -> Decision:
    kept, denied = _split(
        request.groups_names, lambda g: g, lambda g: caller.may(Op.DELETE, GROUP, g)
    )
    if not denied:
        return ALLOWED
    extra = [p.DeletableGroupResult(group_id=g, error_code=GROUP_DENIED) for g in denied]
    return Decision(attrs.evolve(request, groups_names=kept), _appending("results", extra))


# --- cluster-wide ----------------------------------------------------------------------------


def _cluster_gate(op: AclOperation, denial: Callable[[Any], Any]) -> Gate:
    def gate(caller: Caller, request: Any) -> Decision:
        return ALLOWED if caller.may_on_cluster(op) else Decision(deny=denial(request))

    return gate


def _denied_quota_entries(request: Any) -> Any:
    return p.AlterClientQuotasResponse(
        entries=[
            p.AlterClientQuotasResult(error_code=CLUSTER_DENIED, entity=list(e.entity))
            for e in request.entries
        ]
    )


def _denied_users(request: Any) -> Any:
    users = dict.fromkeys(
        [d.name for d in request.deletions] + [u.name for u in request.upsertions]
    )
    return p.AlterUserScramCredentialsResponse(
        results=[
            p.AlterUserScramCredentialsResult(user=u, error_code=CLUSTER_DENIED) for u in users
        ]
    )


GATES: dict[int, Gate] = {
    p.ApiKey.PRODUCE: _produce,
    p.ApiKey.LIST_OFFSETS: _list_offsets,
    p.ApiKey.OFFSET_FOR_LEADER_EPOCH: _offset_for_leader_epoch,
    p.ApiKey.METADATA: _metadata,
    p.ApiKey.FETCH: _fetch,
    p.ApiKey.CREATE_TOPICS: _create_topics,
    p.ApiKey.ALTER_CONFIGS: _alter_configs,
    p.ApiKey.CREATE_PARTITIONS: _create_partitions,
    p.ApiKey.DELETE_RECORDS: _delete_records,
    p.ApiKey.DESCRIBE_LOG_DIRS: _cluster_gate(
        Op.DESCRIBE, lambda request: p.DescribeLogDirsResponse(error_code=CLUSTER_DENIED)
    ),
    p.ApiKey.INCREMENTAL_ALTER_CONFIGS: _alter_configs,
    p.ApiKey.DELETE_TOPICS: _delete_topics,
    p.ApiKey.DESCRIBE_CONFIGS: _describe_configs,
    p.ApiKey.INIT_PRODUCER_ID: _init_producer_id,
    p.ApiKey.FIND_COORDINATOR: _find_coordinator,
    p.ApiKey.JOIN_GROUP: _group_gate(Op.READ, lambda: p.JoinGroupResponse(error_code=GROUP_DENIED)),
    p.ApiKey.SYNC_GROUP: _group_gate(Op.READ, lambda: p.SyncGroupResponse(error_code=GROUP_DENIED)),
    p.ApiKey.HEARTBEAT: _group_gate(Op.READ, lambda: p.HeartbeatResponse(error_code=GROUP_DENIED)),
    p.ApiKey.LEAVE_GROUP: _group_gate(
        Op.READ, lambda: p.LeaveGroupResponse(error_code=GROUP_DENIED)
    ),
    p.ApiKey.OFFSET_COMMIT: _offset_commit,
    p.ApiKey.OFFSET_FETCH: _offset_fetch,
    p.ApiKey.LIST_GROUPS: _list_groups,
    p.ApiKey.DESCRIBE_GROUPS: _describe_groups,
    p.ApiKey.DELETE_GROUPS: _delete_groups,
    p.ApiKey.OFFSET_DELETE: _offset_delete,
    p.ApiKey.ELECT_LEADERS: _cluster_gate(
        Op.ALTER, lambda r: p.ElectLeadersResponse(error_code=CLUSTER_DENIED)
    ),
    p.ApiKey.BROKER_HEARTBEAT: _cluster_gate(
        Op.CLUSTER_ACTION, lambda r: p.BrokerHeartbeatResponse(error_code=CLUSTER_DENIED)
    ),
    p.ApiKey.DESCRIBE_CLIENT_QUOTAS: _cluster_gate(
        Op.DESCRIBE_CONFIGS,
        lambda r: p.DescribeClientQuotasResponse(error_code=CLUSTER_DENIED, entries=None),
    ),
    p.ApiKey.ALTER_CLIENT_QUOTAS: _cluster_gate(Op.ALTER_CONFIGS, _denied_quota_entries),
    p.ApiKey.DESCRIBE_USER_SCRAM_CREDENTIALS: _cluster_gate(
        Op.DESCRIBE, lambda r: p.DescribeUserScramCredentialsResponse(error_code=CLUSTER_DENIED)
    ),
    p.ApiKey.ALTER_USER_SCRAM_CREDENTIALS: _cluster_gate(Op.ALTER, _denied_users),
    p.ApiKey.DESCRIBE_ACLS: _cluster_gate(
        Op.DESCRIBE, lambda r: p.DescribeAclsResponse(error_code=CLUSTER_DENIED)
    ),
    p.ApiKey.CREATE_ACLS: _cluster_gate(
        Op.ALTER,
        lambda r: p.CreateAclsResponse(
            results=[p.AclCreationResult(error_code=CLUSTER_DENIED) for _ in r.creations]
        ),
    ),
    p.ApiKey.DELETE_ACLS: _cluster_gate(
        Op.ALTER,
        lambda r: p.DeleteAclsResponse(
            filter_results=[p.DeleteAclsFilterResult(error_code=CLUSTER_DENIED) for _ in r.filters]
        ),
    ),
}
"""Every API a principal could use, but ApiVersions, the SASL ones and Fetch (checked as it
reads); an API missing here would be open to everyone, which a test checks against the
handler table."""
