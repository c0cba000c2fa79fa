"""Topic and group administration for quorumq's own Trio client: what Kafka's ``AdminClient``
does for topics, configs, partitions, records and groups, over the same APIs.

Each call goes where Kafka sends it: topic changes to any broker (a cluster broker forwards them
to the controller), DeleteRecords to each partition's leader, DeleteGroups and OffsetDelete to
the group's coordinator. Retriable answers (an election, a coordinator loading) are retried a
bounded number of times; anything else raises the :class:`~quorumq.errors.QuorumqError` of its
Kafka code.
"""

from __future__ import annotations

import ssl
from collections.abc import Awaitable, Callable, Iterable, Mapping, Sequence
from typing import Any, TypeVar

import trio

from quorumq import protocol as p
from quorumq.client._connection import Connection, SaslConfig
from quorumq.client._metadata import ClusterMetadata, TopicPartition, raise_for_code
from quorumq.errors import ErrorCode

T = TypeVar("T")

_ATTEMPTS = 20
_BACKOFF_S = 0.1


class _Retry(Exception):
    """A retriable answer: refresh the metadata and ask again."""

    def __init__(self, code: int, what: str) -> None:
        super().__init__(what)
        self.code, self.what = code, what


_RETRIABLE = frozenset(
    {
        ErrorCode.NOT_CONTROLLER,
        ErrorCode.LEADER_NOT_AVAILABLE,
        ErrorCode.NOT_LEADER_OR_FOLLOWER,
        ErrorCode.COORDINATOR_NOT_AVAILABLE,
        ErrorCode.COORDINATOR_LOAD_IN_PROGRESS,
        ErrorCode.NOT_COORDINATOR,
    }
)
"""Answers that mean "ask again, maybe elsewhere": an election or a coordinator moving. Not
UNKNOWN_TOPIC_OR_PARTITION, which a producer retries but an admin call reports at once (as
Kafka's AdminClient does)."""


def _check(code: int, what: str) -> None:
    if code in _RETRIABLE:
        raise _Retry(code, what)
    raise_for_code(code, what)


class Admin:
    """``async with Admin("127.0.0.1:9092") as admin: await admin.create_topic("orders", 6)``.

    Args:
        bootstrap: ``"host:port[,host:port...]"``.
        client_id: sent in every request header.
        sasl, ssl_context: the login and TLS of a secured listener (as the producer's).
        timeout_ms: how long the brokers may take over one change (CreateTopics' and
            DeleteRecords' ``timeout_ms``).
    """

    def __init__(
        self,
        bootstrap: str | Sequence[str],
        *,
        client_id: str = "quorumq-admin",
        sasl: SaslConfig | None = None,
        ssl_context: ssl.SSLContext | None = None,
        timeout_ms: int = 30_000,
    ) -> None:
        self.timeout_ms = timeout_ms
        self.metadata = ClusterMetadata(
            bootstrap,
            client_id=client_id,
            max_attempts=5,  # a topic that does not exist is an answer, not a wait
            allow_auto_topic_creation=False,
            sasl=sasl,
            ssl_context=ssl_context,
        )

    async def __aenter__(self) -> Admin:
        await self.metadata.__aenter__()
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        await self.metadata.aclose()

    # --- plumbing ------------------------------------------------------------------------------

    async def _retrying(self, call: Callable[[], Awaitable[T]]) -> T:
        """``call()``, again after a metadata refresh while it answers retriably (bounded)."""
        for attempt in range(_ATTEMPTS):
            try:
                return await call()
            except _Retry as retry:
                if attempt + 1 == _ATTEMPTS:
                    raise_for_code(retry.code, retry.what)
            self.metadata.invalidate()
            await trio.sleep(_BACKOFF_S * min(attempt + 1, 5))
        raise AssertionError("unreachable")  # pragma: no cover

    async def _any(self, api_key: p.ApiKey, request: Any) -> Any:
        _, conn = await self.metadata.any_connection()
        return await conn.request(api_key, conn.version_for(api_key), request)

    async def _coordinator(self, group_id: str) -> Connection:
        found = await self._any(p.ApiKey.FIND_COORDINATOR, p.FindCoordinatorRequest(key=group_id))
        _check(found.error_code, f"the coordinator of {group_id!r}")
        if found.node_id not in self.metadata.brokers:
            await self.metadata.refresh()
        return await self.metadata.connection(found.node_id)

    # --- topics --------------------------------------------------------------------------------

    async def create_topic(
        self,
        name: str,
        partitions: int = -1,
        replication_factor: int = -1,
        configs: Mapping[str, str] | None = None,
        *,
        exist_ok: bool = False,
    ) -> None:
        """CreateTopics for one topic (-1: the broker's defaults).

        Raises:
            TopicAlreadyExists (unless ``exist_ok``), InvalidTopic, InvalidPartitions,
            InvalidReplicationFactor, InvalidConfig, TopicAuthorizationFailed, ...
        """
        request = p.CreateTopicsRequest(
            topics=[
                p.CreatableTopic(
                    name=name,
                    num_partitions=partitions,
                    replication_factor=replication_factor,
                    configs=[
                        p.CreatableTopicConfig(name=k, value=v) for k, v in (configs or {}).items()
                    ],
                )
            ],
            timeout_ms=self.timeout_ms,
        )

        async def create() -> None:
            (result,) = (await self._any(p.ApiKey.CREATE_TOPICS, request)).topics
            if exist_ok and result.error_code == ErrorCode.TOPIC_ALREADY_EXISTS:
                return
            _check(result.error_code, f"create topic {name!r}")

        await self._retrying(create)

    async def delete_topic(self, name: str) -> None:
        """DeleteTopics for one topic. Raises UnknownTopicOrPartition, ..."""
        request = p.DeleteTopicsRequest(topic_names=[name], timeout_ms=self.timeout_ms)

        async def delete() -> None:
            (result,) = (await self._any(p.ApiKey.DELETE_TOPICS, request)).responses
            _check(result.error_code, f"delete topic {name!r}")

        await self._retrying(delete)

    async def alter_topic_configs(
        self, name: str, set_configs: Mapping[str, str] | None = None, delete: Iterable[str] = ()
    ) -> None:
        """IncrementalAlterConfigs: sets some configs, returns others to their defaults, and
        leaves the rest as they are. Raises InvalidConfig, UnknownTopicOrPartition, ..."""
        changes = [
            p.IncrementalAlterableConfig(name=k, config_operation=p.CONFIG_SET, value=v)
            for k, v in (set_configs or {}).items()
        ] + [
            p.IncrementalAlterableConfig(name=k, config_operation=p.CONFIG_DELETE, value=None)
            for k in delete
        ]
        request = p.IncrementalAlterConfigsRequest(
            resources=[
                p.IncrementalAlterConfigsResource(
                    resource_type=2, resource_name=name, configs=changes
                )
            ]
        )

        async def alter() -> None:
            (result,) = (await self._any(p.ApiKey.INCREMENTAL_ALTER_CONFIGS, request)).responses
            _check(result.error_code, f"alter the configs of {name!r}")

        await self._retrying(alter)

    async def create_partitions(self, name: str, count: int) -> None:
        """CreatePartitions: grows the topic to ``count`` partitions.

        Raises:
            InvalidPartitions: ``count`` is not above the current count; UnknownTopicOrPartition.
        """
        request = p.CreatePartitionsRequest(
            topics=[p.CreatePartitionsTopic(name=name, count=count)], timeout_ms=self.timeout_ms
        )

        async def grow() -> None:
            (result,) = (await self._any(p.ApiKey.CREATE_PARTITIONS, request)).results
            _check(result.error_code, f"add partitions to {name!r}")

        await self._retrying(grow)
        self.metadata.invalidate()

    async def delete_records(self, name: str, before: Mapping[int, int]) -> dict[int, int]:
        """DeleteRecords: drops each partition's records below its offset (-1: all committed),
        on each partition's leader. Returns each partition's new log start offset.

        Raises:
            OffsetOutOfRange: an offset above the high watermark; PolicyViolation: a compacted
            topic; UnknownTopicOrPartition; RequestTimedOut: a follower did not follow in time.
        """
        low: dict[int, int] = {}
        for index, offset in sorted(before.items()):

            async def delete(index: int = index, offset: int = offset) -> None:
                leader = await self.metadata.leader_for(TopicPartition(name, index))
                conn = await self.metadata.connection(leader)
                request = p.DeleteRecordsRequest(
                    topics=[
                        p.DeleteRecordsTopic(
                            name=name,
                            partitions=[
                                p.DeleteRecordsPartition(partition_index=index, offset=offset)
                            ],
                        )
                    ],
                    timeout_ms=self.timeout_ms,
                )
                answer = await conn.request(
                    p.ApiKey.DELETE_RECORDS, conn.version_for(p.ApiKey.DELETE_RECORDS), request
                )
                (result,) = answer.topics[0].partitions
                _check(result.error_code, f"delete records of {name}-{index}")
                low[index] = result.low_watermark

            await self._retrying(delete)
        return low

    # --- groups --------------------------------------------------------------------------------

    async def delete_group(self, group_id: str) -> None:
        """DeleteGroups on the group's coordinator: an empty group and its committed offsets.

        Raises:
            NonEmptyGroup: it has members; GroupIdNotFound: there is no such group.
        """

        async def delete() -> None:
            conn = await self._coordinator(group_id)
            answer = await conn.request(
                p.ApiKey.DELETE_GROUPS,
                conn.version_for(p.ApiKey.DELETE_GROUPS),
                p.DeleteGroupsRequest(groups_names=[group_id]),
            )
            (result,) = answer.results
            _check(result.error_code, f"delete group {group_id!r}")

        await self._retrying(delete)

    async def delete_group_offsets(
        self, group_id: str, topic: str, partitions: Iterable[int]
    ) -> None:
        """OffsetDelete on the group's coordinator.

        Raises:
            GroupSubscribedToTopic: a member still reads ``topic``; GroupIdNotFound; ...
        """
        request = p.OffsetDeleteRequest(
            group_id=group_id,
            topics=[
                p.OffsetDeleteRequestTopic(
                    name=topic,
                    partitions=[
                        p.OffsetDeleteRequestPartition(partition_index=i) for i in partitions
                    ],
                )
            ],
        )

        async def delete() -> None:
            conn = await self._coordinator(group_id)
            answer = await conn.request(
                p.ApiKey.OFFSET_DELETE, conn.version_for(p.ApiKey.OFFSET_DELETE), request
            )
            _check(answer.error_code, f"delete the offsets of {group_id!r}")
            for result in answer.topics[0].partitions:
                _check(result.error_code, f"delete the offset of {topic}-{result.partition_index}")

        await self._retrying(delete)
