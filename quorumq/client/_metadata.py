"""The client's view of the cluster: brokers, topics, the leader of every partition.

Theory of operation: a :class:`ClusterMetadata` starts from a bootstrap list (``"host:port"``,
comma separated or a sequence), asks one reachable broker for ``Metadata`` of the topics the
client uses, and caches brokers and partition leaders. Producer and consumer ask it who leads a
partition (:meth:`ClusterMetadata.leader_for`) and for a connection to that broker
(:meth:`ClusterMetadata.connection`). It keeps one connection per broker: a bootstrap
connection is known by a negative pseudo node id (as in Kafka's client) until a Metadata answer
names a broker at its address, and then becomes that broker's connection.

When a request fails because the leader moved (``NOT_LEADER_OR_FOLLOWER``,
``LEADER_NOT_AVAILABLE``, ``UNKNOWN_TOPIC_OR_PARTITION``, ``FENCED_LEADER_EPOCH``) or the
connection broke, the caller calls :meth:`ClusterMetadata.invalidate` (and
:meth:`ClusterMetadata.close_connection`) and asks again; the next question refreshes the cache,
with ``retry_backoff_ms`` between attempts and ``max_attempts`` before the typed error is raised.
Concurrent refreshes are coalesced: one Metadata request answers every task waiting for it.

Connections live in the metadata's own nursery (each in a task that holds
:func:`~quorumq.client._connection.open_connection` open), so opening the metadata as an async
context manager is what bounds their lifetime.
"""

from __future__ import annotations

import contextlib
import logging
import ssl
from collections.abc import AsyncIterator, Iterable, Sequence

import attrs
import trio

from quorumq import protocol as p
from quorumq.client._connection import Connection, SaslConfig, open_connection, split_host_port
from quorumq.errors import (
    ErrorCode,
    LeaderNotAvailable,
    QuorumqError,
    UnknownTopicOrPartition,
    error_for_code,
)
from quorumq.groups import TopicPartition

__all__ = [
    "RETRIABLE_LEADER_ERRORS",
    "BrokerAddress",
    "ClusterMetadata",
    "PartitionMetadata",
    "TopicMetadata",
    "TopicPartition",
    "parse_bootstrap",
    "raise_for_code",
]

log = logging.getLogger(__name__)

RETRIABLE_LEADER_ERRORS = frozenset(
    {
        ErrorCode.NOT_LEADER_OR_FOLLOWER,
        ErrorCode.LEADER_NOT_AVAILABLE,
        ErrorCode.UNKNOWN_TOPIC_OR_PARTITION,
        ErrorCode.FENCED_LEADER_EPOCH,
        ErrorCode.UNKNOWN_LEADER_EPOCH,
        ErrorCode.REPLICA_NOT_AVAILABLE,
        ErrorCode.BROKER_NOT_AVAILABLE,
    }
)
"""Errors that mean "your metadata is stale": refresh it before the retry."""


def raise_for_code(code: int, what: str) -> None:
    """Raises the typed :class:`QuorumqError` for a non-zero Kafka error code.

    Codes without a dedicated class raise a plain ``QuorumqError`` whose message names the code.
    """
    if code == ErrorCode.NONE:
        return
    cls = error_for_code(code)
    try:
        name = ErrorCode(code).name
    except ValueError:
        name = str(code)
    raise cls(f"{what}: {name}")


def is_retriable(code: int) -> bool:
    """True if Kafka's client would retry a request that failed with ``code``."""
    if code in RETRIABLE_LEADER_ERRORS:
        return True
    return error_for_code(code).retriable


def parse_bootstrap(bootstrap: str | Sequence[str]) -> list[tuple[str, int]]:
    """``[("127.0.0.1", 9092), ...]`` from ``"127.0.0.1:9092,127.0.0.1:9093"`` or a list.

    Raises:
        ValueError: an empty list or a port that is not a number.
    """
    items = bootstrap.split(",") if isinstance(bootstrap, str) else list(bootstrap)
    out = [split_host_port(item.strip()) for item in items if item.strip()]
    if not out:
        raise ValueError("bootstrap names no broker")
    return out


@attrs.frozen
class BrokerAddress:
    """One broker as Metadata names it."""

    node_id: int
    host: str
    port: int


@attrs.frozen
class PartitionMetadata:
    """One partition as the last Metadata answer described it."""

    topic: str
    partition: int
    leader_id: int  # -1: no leader right now
    leader_epoch: int
    replicas: tuple[int, ...]
    isr: tuple[int, ...]
    error_code: int = 0


@attrs.frozen
class TopicMetadata:
    """One topic as the last Metadata answer described it (``error_code`` 0 when usable)."""

    name: str
    error_code: int
    partitions: tuple[PartitionMetadata, ...]

    @property
    def num_partitions(self) -> int:
        return len(self.partitions)

    def available(self) -> list[int]:
        """Partitions that have a leader now (null-key records prefer these)."""
        return [pm.partition for pm in self.partitions if pm.leader_id >= 0]


@attrs.define(eq=False)
class _Link:
    """A live connection and the cancel scope that closes it."""

    connection: Connection
    scope: trio.CancelScope


class ClusterMetadata:
    """Brokers, topics and leaders, refreshed on demand; one connection per broker.

    Open it with ``async with ClusterMetadata(bootstrap) as metadata:``.

    Args:
        bootstrap: ``"host:port[,host:port...]"`` or a sequence of ``"host:port"``.
        client_id: sent in every request header.
        request_timeout_ms: the longest one Metadata request may take.
        retry_backoff_ms: the wait between two attempts.
        max_attempts: how many refreshes a question gets before its error is raised.
        allow_auto_topic_creation: Metadata's ``allow_auto_topic_creation`` (producers want it;
            Kafka's consumer does not).
        sasl: the SASL login every connection makes (a SASL_PLAINTEXT listener); None: none.
        ssl_context: TLS for every connection (an SSL or SASL_SSL listener); None: plain TCP.
    """

    def __init__(
        self,
        bootstrap: str | Sequence[str],
        *,
        client_id: str = "quorumq",
        request_timeout_ms: int = 30_000,
        retry_backoff_ms: int = 100,
        max_attempts: int = 20,
        allow_auto_topic_creation: bool = True,
        connect_timeout_ms: int = 10_000,
        sasl: SaslConfig | None = None,
        ssl_context: ssl.SSLContext | None = None,
    ) -> None:
        self.bootstrap = parse_bootstrap(bootstrap)
        self.sasl = sasl
        self.ssl_context = ssl_context
        self.client_id = client_id
        self.request_timeout_ms = request_timeout_ms
        self.retry_backoff_ms = retry_backoff_ms
        self.max_attempts = max_attempts
        self.allow_auto_topic_creation = allow_auto_topic_creation
        self.connect_timeout_ms = connect_timeout_ms
        self.brokers: dict[int, BrokerAddress] = {}
        self.topics: dict[str, TopicMetadata] = {}
        self.cluster_id: str | None = None
        self.controller_id: int = -1
        self._wanted: set[str] = set()
        self._links: dict[int, _Link] = {}
        self._link_locks: dict[int, trio.Lock] = {}
        self._refresh_lock = trio.Lock()
        self._generation = 0  # bumped by every successful refresh
        self._stale = True
        self._nursery: trio.Nursery | None = None
        self._stack: contextlib.AsyncExitStack | None = None

    # --- lifecycle ---------------------------------------------------------------------------

    async def __aenter__(self) -> ClusterMetadata:
        stack = contextlib.AsyncExitStack()
        await stack.__aenter__()
        try:
            self._nursery = await stack.enter_async_context(trio.open_nursery())
        except BaseException:
            await stack.aclose()
            raise
        self._stack = stack
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        await self.aclose()

    async def aclose(self) -> None:
        """Closes every connection."""
        if self._nursery is not None:
            self._nursery.cancel_scope.cancel()
        self._links.clear()
        stack, self._stack = self._stack, None
        self._nursery = None
        if stack is not None:
            await stack.aclose()

    # --- connections -------------------------------------------------------------------------

    async def connection(self, node_id: int) -> Connection:
        """Returns the connection to broker ``node_id``, opening it if need be.

        Raises:
            ConnectionError: the broker cannot be reached.
            LeaderNotAvailable: ``node_id`` is not a broker of the last Metadata answer.
        """
        link = self._links.get(node_id)
        if link is not None and link.connection._closed_error is None:
            return link.connection
        lock = self._link_locks.setdefault(node_id, trio.Lock())
        async with lock:
            link = self._links.get(node_id)
            if link is not None and link.connection._closed_error is None:
                return link.connection
            if link is not None:
                self.close_connection(node_id)
            host, port = self._address(node_id)
            assert self._nursery is not None, "open ClusterMetadata with async with"
            link = await self._nursery.start(self._hold_connection, host, port)
            self._links[node_id] = link
            return link.connection

    def _address(self, node_id: int) -> tuple[str, int]:
        if node_id < 0:
            index = -node_id - 1
            if index < len(self.bootstrap):
                return self.bootstrap[index]
        broker = self.brokers.get(node_id)
        if broker is None:
            raise LeaderNotAvailable(f"broker {node_id} is not in the cluster metadata")
        return broker.host, broker.port

    async def _hold_connection(
        self, host: str, port: int, *, task_status: trio.TaskStatus[_Link]
    ) -> None:
        with trio.CancelScope() as scope:
            async with open_connection(
                host,
                port,
                client_id=self.client_id,
                connect_timeout_s=self.connect_timeout_ms / 1000,
                sasl=self.sasl,
                ssl_context=self.ssl_context,
            ) as conn:
                task_status.started(_Link(conn, scope))
                await trio.sleep_forever()

    def close_connection(self, node_id: int) -> None:
        """Drops the connection to ``node_id`` (after it failed); the next use reconnects."""
        link = self._links.pop(node_id, None)
        if link is not None:
            link.scope.cancel()

    async def any_connection(self) -> tuple[int, Connection]:
        """A connection to some broker: a known one first, then the bootstrap list in order.

        Raises:
            ConnectionError: no broker answers.
        """
        for node_id, link in list(self._links.items()):
            if link.connection._closed_error is None:
                return node_id, link.connection
        candidates = [*self.brokers, *(-i - 1 for i in range(len(self.bootstrap)))]
        last: Exception | None = None
        for node_id in candidates:
            try:
                return node_id, await self.connection(node_id)
            except ConnectionError as exc:
                last = exc
        raise ConnectionError(f"no broker reachable ({last})")

    # --- metadata ----------------------------------------------------------------------------

    def add_topics(self, topics: Iterable[str]) -> None:
        """Adds topics to those every refresh asks about."""
        new = set(topics) - self._wanted
        if new:
            self._wanted |= new
            self._stale = True

    def invalidate(self) -> None:
        """Marks the cache stale: the next question refreshes it."""
        self._stale = True

    async def refresh(self) -> None:
        """Asks one broker for Metadata of the wanted topics (coalesced with concurrent calls).

        Raises:
            ConnectionError: no broker answers.
            RequestTimedOut: the broker did not answer in time.
        """
        generation = self._generation
        async with self._refresh_lock:
            if self._generation != generation:
                return  # someone refreshed while we waited for the lock
            node_id, conn = await self.any_connection()
            version = conn.version_for(p.ApiKey.METADATA)
            request = p.MetadataRequest(
                topics=[p.MetadataRequestTopic(name=t) for t in sorted(self._wanted)],
                allow_auto_topic_creation=self.allow_auto_topic_creation,
            )
            try:
                response = await conn.request(
                    p.ApiKey.METADATA,
                    version,
                    request,
                    timeout_s=self.request_timeout_ms / 1000,
                )
            except ConnectionError:
                self.close_connection(node_id)
                raise
            self._apply(response)
            self._generation += 1
            self._stale = False

    def _apply(self, response: p.MetadataResponse) -> None:
        self.brokers = {
            b.node_id: BrokerAddress(b.node_id, b.host, b.port) for b in response.brokers
        }
        self.cluster_id = response.cluster_id
        self.controller_id = response.controller_id
        for topic in response.topics:
            if topic.name is None:
                continue
            partitions = tuple(
                sorted(
                    (
                        PartitionMetadata(
                            topic.name,
                            pm.partition_index,
                            pm.leader_id,
                            pm.leader_epoch,
                            tuple(pm.replica_nodes),
                            tuple(pm.isr_nodes),
                            pm.error_code,
                        )
                        for pm in topic.partitions
                    ),
                    key=lambda pm: pm.partition,
                )
            )
            self.topics[topic.name] = TopicMetadata(topic.name, topic.error_code, partitions)
        # A broker that left the cluster keeps no connection.
        for node_id in [n for n in self._links if n >= 0 and n not in self.brokers]:
            self.close_connection(node_id)
        # A bootstrap connection to a broker we now know by id becomes that broker's
        # connection: one connection per broker.
        by_address = {(b.host, b.port): b.node_id for b in self.brokers.values()}
        for pseudo_id in [n for n in self._links if n < 0]:
            node_id = by_address.get(self.bootstrap[-pseudo_id - 1])
            if node_id is None:
                continue
            link = self._links.pop(pseudo_id)
            if node_id in self._links:
                link.scope.cancel()
            else:
                self._links[node_id] = link

    async def _refresh_with_backoff(self, attempt: int) -> None:
        if attempt:
            await trio.sleep(self.retry_backoff_ms / 1000)
        try:
            await self.refresh()
        except (ConnectionError, QuorumqError) as exc:
            if attempt + 1 >= self.max_attempts:
                raise
            log.debug("metadata refresh failed (attempt %d): %s", attempt + 1, exc)

    def fresh_topic(self, name: str) -> TopicMetadata | None:
        """The cached metadata of a usable topic, without I/O (None if unknown, stale or
        in error: then ask :meth:`topic`)."""
        known = self.topics.get(name)
        if self._stale or known is None or known.error_code or not known.partitions:
            return None
        return known

    async def topic(self, name: str) -> TopicMetadata:
        """Returns a usable topic's metadata, refreshing (with backoff) until it is.

        Raises:
            UnknownTopicOrPartition, LeaderNotAvailable, InvalidTopic, ...: the topic's error
                after ``max_attempts`` refreshes (non-retriable errors at once).
            ConnectionError: no broker answers.
        """
        self.add_topics([name])
        for attempt in range(self.max_attempts):
            known = self.topics.get(name)
            if not self._stale and known is not None:
                if known.error_code == ErrorCode.NONE and known.partitions:
                    return known
                if not is_retriable(known.error_code):
                    raise_for_code(known.error_code, f"metadata for topic {name!r}")
                self._stale = True
            await self._refresh_with_backoff(attempt)
        known = self.topics.get(name)
        if known is None:
            raise UnknownTopicOrPartition(f"no metadata for topic {name!r}")
        if known.error_code != ErrorCode.NONE:
            raise_for_code(known.error_code, f"metadata for topic {name!r}")
        if not known.partitions:
            raise UnknownTopicOrPartition(f"topic {name!r} has no partitions")
        return known

    async def leader_for(self, tp: TopicPartition) -> int:
        """Returns the node id of the leader of ``tp``, refreshing until one is known.

        Raises:
            UnknownTopicOrPartition: the topic or partition does not exist.
            LeaderNotAvailable: no leader after ``max_attempts`` refreshes.
        """
        for attempt in range(self.max_attempts):
            topic = await self.topic(tp.topic)
            if tp.partition >= topic.num_partitions or tp.partition < 0:
                if attempt + 1 >= self.max_attempts:
                    raise UnknownTopicOrPartition(f"{tp.topic} has no partition {tp.partition}")
            else:
                pm = topic.partitions[tp.partition]
                if pm.leader_id >= 0 and pm.leader_id in self.brokers:
                    return pm.leader_id
            self._stale = True
            await self._refresh_with_backoff(attempt)
        raise LeaderNotAvailable(f"no leader for {tp.topic}-{tp.partition}")

    def cached_leader(self, tp: TopicPartition) -> int | None:
        """The cached leader of ``tp`` without any I/O (None if unknown or stale)."""
        if self._stale:
            return None
        topic = self.topics.get(tp.topic)
        if topic is None or not 0 <= tp.partition < topic.num_partitions:
            return None
        leader = topic.partitions[tp.partition].leader_id
        return leader if leader >= 0 else None

    def leader_epoch(self, tp: TopicPartition) -> int:
        """The cached leader epoch of ``tp`` (-1 if unknown)."""
        topic = self.topics.get(tp.topic)
        if topic is None or not 0 <= tp.partition < topic.num_partitions:
            return -1
        return topic.partitions[tp.partition].leader_epoch


@contextlib.asynccontextmanager
async def open_metadata(
    bootstrap: str | Sequence[str], **kwargs: object
) -> AsyncIterator[ClusterMetadata]:
    """``async with open_metadata("127.0.0.1:9092") as metadata:`` (see ClusterMetadata)."""
    async with ClusterMetadata(bootstrap, **kwargs) as metadata:  # type: ignore[arg-type]
        yield metadata
