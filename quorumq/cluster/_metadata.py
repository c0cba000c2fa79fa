"""What a Metadata request says about the cluster, as plain values (for ``cluster status``,
the supervisor's readiness check, nemeses and ``compare``).

Kafka's Metadata lists only live (registered, unfenced) brokers. A broker that is named as a
replica but absent from the list is therefore reported as fenced or offline: Metadata cannot tell
the two apart, and neither can a Kafka client.
"""

from __future__ import annotations

import ssl
from collections.abc import Sequence

import attrs
import trio

from quorumq import protocol as p
from quorumq.client._connection import SaslConfig, open_connection, split_host_port


@attrs.frozen
class BrokerInfo:
    """One broker as Metadata names it (``fenced``: a replica id missing from the list)."""

    node_id: int
    host: str
    port: int
    fenced: bool = False

    @property
    def address(self) -> str:
        return f"{self.host}:{self.port}" if self.host else "?"


@attrs.frozen
class PartitionInfo:
    """One partition's leader, leader epoch, replicas and ISR (leader -1: no leader)."""

    topic: str
    partition: int
    leader_id: int
    leader_epoch: int
    replicas: tuple[int, ...]
    isr: tuple[int, ...]
    error_code: int = 0


@attrs.frozen
class ClusterView:
    """A Metadata response, flattened; ``answered_by`` is the broker that answered."""

    answered_by: str
    cluster_id: str | None
    controller_id: int
    brokers: tuple[BrokerInfo, ...]
    partitions: tuple[PartitionInfo, ...]
    topic_errors: tuple[tuple[str, int], ...] = ()

    def live_ids(self) -> set[int]:
        return {b.node_id for b in self.brokers if not b.fenced}

    def partition(self, topic: str, partition: int) -> PartitionInfo | None:
        for info in self.partitions:
            if info.topic == topic and info.partition == partition:
                return info
        return None


def view_from_response(answered_by: str, response: p.MetadataResponse) -> ClusterView:
    """Flattens a MetadataResponse; replica ids with no broker entry become fenced brokers."""
    brokers = {b.node_id: BrokerInfo(b.node_id, b.host, b.port) for b in response.brokers}
    partitions: list[PartitionInfo] = []
    topic_errors: list[tuple[str, int]] = []
    for topic in response.topics:
        name = topic.name or ""
        if topic.error_code:
            topic_errors.append((name, topic.error_code))
        for part in topic.partitions:
            partitions.append(
                PartitionInfo(
                    topic=name,
                    partition=part.partition_index,
                    leader_id=part.leader_id,
                    leader_epoch=part.leader_epoch,
                    replicas=tuple(part.replica_nodes),
                    isr=tuple(part.isr_nodes),
                    error_code=part.error_code,
                )
            )
            for node in (*part.replica_nodes, *part.offline_replicas):
                if node not in brokers:
                    brokers[node] = BrokerInfo(node, "", -1, fenced=True)
    partitions.sort(key=lambda i: (i.topic, i.partition))
    return ClusterView(
        answered_by=answered_by,
        cluster_id=response.cluster_id,
        controller_id=response.controller_id,
        brokers=tuple(sorted(brokers.values(), key=lambda b: b.node_id)),
        partitions=tuple(partitions),
        topic_errors=tuple(topic_errors),
    )


async def fetch_cluster_view(
    address: str,
    topics: Sequence[str] | None = None,
    *,
    timeout_s: float = 5.0,
    sasl: SaslConfig | None = None,
    ssl_context: ssl.SSLContext | None = None,
) -> ClusterView:
    """Asks one broker for Metadata (all topics, or ``topics``; never auto-creates), logged in
    with ``sasl`` and over TLS with ``ssl_context`` when the listener needs them.

    Raises:
        ConnectionError: the broker does not answer (refused, closed, or not within
            ``timeout_s``).
        ValueError: ``address`` is not HOST:PORT.
    """
    host, port = split_host_port(address)
    with trio.move_on_after(timeout_s) as scope:
        async with open_connection(host, port, client_id="quorumq-cluster",
                                   connect_timeout_s=timeout_s, sasl=sasl,
                                   ssl_context=ssl_context) as conn:  # fmt: skip
            version = conn.version_for(p.ApiKey.METADATA, (4, 12))
            request = p.MetadataRequest(
                topics=None if topics is None else [p.MetadataRequestTopic(name=t) for t in topics],
                allow_auto_topic_creation=False,
            )
            response = await conn.request(p.ApiKey.METADATA, version, request, timeout_s=timeout_s)
            return view_from_response(address, response)
    assert scope.cancelled_caught
    raise ConnectionError(f"{address}: no Metadata answer within {timeout_s} s")


def cluster_view(
    address: str,
    topics: Sequence[str] | None = None,
    *,
    timeout_s: float = 5.0,
    sasl: SaslConfig | None = None,
    ssl_context: ssl.SSLContext | None = None,
) -> ClusterView:
    """:func:`fetch_cluster_view` for synchronous callers (runs its own Trio loop).

    Raises:
        ConnectionError: the broker does not answer; any error from the request is reported as
            one (a broker being killed or paused is an expected state here).
    """
    try:
        return trio.run(
            lambda: fetch_cluster_view(
                address, topics, timeout_s=timeout_s, sasl=sasl, ssl_context=ssl_context
            )
        )
    except ConnectionError:
        raise
    except (OSError, Exception) as exc:  # a half-dead broker: treated as not answering
        raise ConnectionError(f"{address}: {type(exc).__name__}: {exc}") from None
