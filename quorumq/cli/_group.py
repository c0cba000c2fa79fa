"""``quorumq group list|describe|delete``: consumer groups, their members, committed offsets and lag.

Everything goes over the Kafka protocol, as ``kafka-consumer-groups.sh`` does: ListGroups on
every broker (each lists the groups it coordinates), FindCoordinator + DescribeGroups +
OffsetFetch on a group's coordinator, Metadata + ListOffsets (latest) on partition leaders for the
log end offsets. Lag is ``log end offset - committed offset`` where the group has committed.
"""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator, Sequence
from typing import Any

import attrs
import trio
import typer
from rich.console import Console
from rich.table import Table

from quorumq import protocol as p
from quorumq.cli._app import app
from quorumq.cli._broker import run_trio
from quorumq.cli._topic import (
    BOOTSTRAP_HELP,
    DEFAULT_BOOTSTRAP,
    admin,
    connect,
    raise_for_code,
    sasl_from_env,
    ssl_from_env,
)
from quorumq.client._connection import Connection, open_connection
from quorumq.client._consumer_protocol import CONSUMER_PROTOCOL_TYPE, decode_assignment
from quorumq.errors import ErrorCode, QuorumqError, RequestTimedOut, error_for_code

_COORDINATOR_WAIT_S = 10.0

group_app = typer.Typer(help="List, describe and delete consumer groups.", no_args_is_help=True)
app.add_typer(group_app, name="group")

LATEST = -1


@attrs.frozen
class GroupListing:
    """One row of ``group list``."""

    group_id: str
    protocol_type: str
    state: str
    members: int
    coordinator: int


@attrs.frozen
class MemberRow:
    member_id: str
    client_id: str
    client_host: str
    partitions: tuple[tuple[str, int], ...]


@attrs.frozen
class PartitionRow:
    topic: str
    partition: int
    committed_offset: int  # -1: nothing committed
    log_end_offset: int  # -1: unknown (no leader, or an error)
    member_id: str  # "" when no member owns it

    @property
    def lag(self) -> int | None:
        if self.committed_offset < 0 or self.log_end_offset < 0:
            return None
        return max(self.log_end_offset - self.committed_offset, 0)


@attrs.frozen
class GroupReport:
    """What ``group describe`` shows."""

    group_id: str
    state: str
    protocol_type: str
    protocol: str
    coordinator: int
    members: tuple[MemberRow, ...]
    partitions: tuple[PartitionRow, ...]

    @property
    def total_lag(self) -> int:
        return sum(row.lag or 0 for row in self.partitions)


@contextlib.asynccontextmanager
async def _connect_to(host: str, port: int) -> AsyncIterator[Connection]:
    async with open_connection(
        host, port, client_id="quorumq-cli", sasl=sasl_from_env(), ssl_context=ssl_from_env()
    ) as conn:
        yield conn


async def _metadata(conn: Connection, topics: Sequence[str] | None) -> Any:
    version = conn.version_for(p.ApiKey.METADATA, (4, 8))
    request = p.MetadataRequest(
        topics=None if topics is None else [p.MetadataRequestTopic(name=t) for t in topics],
        allow_auto_topic_creation=False,
    )
    return await conn.request(p.ApiKey.METADATA, version, request)


async def list_groups(bootstrap: str) -> list[GroupListing]:
    """ListGroups on every broker, then DescribeGroups on each for its state and members."""
    async with connect(bootstrap) as conn:
        metadata = await _metadata(conn, [])
    rows: list[GroupListing] = []
    for broker in sorted(metadata.brokers, key=lambda b: b.node_id):
        async with _connect_to(broker.host, broker.port) as conn:
            version = conn.version_for(p.ApiKey.LIST_GROUPS, (0, 2))
            listed = await conn.request(p.ApiKey.LIST_GROUPS, version, p.ListGroupsRequest())
            raise_for_code(listed.error_code, f"cannot list groups on broker {broker.node_id}")
            if not listed.groups:
                continue
            version = conn.version_for(p.ApiKey.DESCRIBE_GROUPS, (0, 3))
            described = await conn.request(
                p.ApiKey.DESCRIBE_GROUPS,
                version,
                p.DescribeGroupsRequest(groups=[g.group_id for g in listed.groups]),
            )
            states = {g.group_id: g for g in described.groups if g.error_code == 0}
            for g in listed.groups:
                d = states.get(g.group_id)
                rows.append(
                    GroupListing(
                        g.group_id,
                        g.protocol_type,
                        d.group_state if d is not None else "?",
                        len(d.members) if d is not None else 0,
                        broker.node_id,
                    )
                )
    return sorted(rows, key=lambda r: r.group_id)


async def _find_coordinator(bootstrap: str, group_id: str) -> Any:
    """The FindCoordinator answer for ``group_id`` (retried while retriable, bounded).

    Raises:
        QuorumqError: no coordinator in time, or a non-retriable answer.
    """
    async with connect(bootstrap) as conn:
        version = conn.version_for(p.ApiKey.FIND_COORDINATOR, (0, 2))
        # Right after a cluster starts, __consumer_offsets may still be being created: retry
        # retriable answers for a while, as Kafka clients do, before reporting one line.
        found: Any = None
        with trio.move_on_after(_COORDINATOR_WAIT_S):
            while True:
                found = await conn.request(
                    p.ApiKey.FIND_COORDINATOR, version, p.FindCoordinatorRequest(key=group_id)
                )
                if found.error_code == 0 or not error_for_code(found.error_code).retriable:
                    break
                await trio.sleep(0.2)
        if found is None:
            raise RequestTimedOut(f"no broker answered FindCoordinator for {group_id!r}")
        raise_for_code(
            found.error_code, f"cannot find the coordinator of {group_id!r}", found.error_message
        )
    return found


async def delete_group(bootstrap: str, group_id: str) -> None:
    """Deletes an empty group and its committed offsets (the client's ``Admin``: DeleteGroups
    on its coordinator).

    Raises:
        QuorumqError: NON_EMPTY_GROUP, GROUP_ID_NOT_FOUND, or the coordinator's other errors.
    """
    async with admin(bootstrap) as client:
        await client.delete_group(group_id)


async def delete_offsets(
    bootstrap: str, group_id: str, topic: str, partitions: Sequence[int]
) -> list[int]:
    """Deletes a group's committed offsets of ``topic`` (``partitions``, or every one it has
    an offset for): OffsetDelete on its coordinator. Returns the partitions it deleted.

    Raises:
        QuorumqError: the group's error, or a partition's (GROUP_SUBSCRIBED_TO_TOPIC when a
            member still reads the topic).
    """
    if not partitions:
        found = await _find_coordinator(bootstrap, group_id)
        async with _connect_to(found.host, found.port) as coordinator:
            version = coordinator.version_for(p.ApiKey.OFFSET_FETCH, (2, 5))
            fetched = await coordinator.request(
                p.ApiKey.OFFSET_FETCH, version, p.OffsetFetchRequest(group_id=group_id, topics=None)
            )
        raise_for_code(fetched.error_code, f"cannot fetch offsets of {group_id!r}")
        partitions = sorted(
            x.partition_index
            for t in fetched.topics
            if t.name == topic
            for x in t.partitions
            if x.committed_offset >= 0
        )
        if not partitions:
            return []
    async with admin(bootstrap) as client:
        await client.delete_group_offsets(group_id, topic, partitions)
    return list(partitions)


async def describe_group(bootstrap: str, group_id: str) -> GroupReport:
    """Members, assignments, committed offsets, log end offsets and lag of ``group_id``.

    Raises:
        QuorumqError: the coordinator cannot be found or answers with an error; the group
            does not exist (GROUP_ID_NOT_FOUND).
    """
    found = await _find_coordinator(bootstrap, group_id)
    async with _connect_to(found.host, found.port) as coordinator:
        version = coordinator.version_for(p.ApiKey.DESCRIBE_GROUPS, (0, 3))
        described = await coordinator.request(
            p.ApiKey.DESCRIBE_GROUPS, version, p.DescribeGroupsRequest(groups=[group_id])
        )
        group = described.groups[0]
        raise_for_code(group.error_code, f"cannot describe group {group_id!r}")
        version = coordinator.version_for(p.ApiKey.OFFSET_FETCH, (2, 5))
        fetched = await coordinator.request(
            p.ApiKey.OFFSET_FETCH, version, p.OffsetFetchRequest(group_id=group_id, topics=None)
        )
        raise_for_code(fetched.error_code, f"cannot fetch offsets of {group_id!r}")
    committed: dict[tuple[str, int], int] = {}
    for topic in fetched.topics:
        for part in topic.partitions:
            if part.error_code == 0 and part.committed_offset >= 0:
                committed[(topic.name, part.partition_index)] = part.committed_offset
    if group.group_state == "Dead" and not committed:
        raise_for_code(ErrorCode.GROUP_ID_NOT_FOUND, f"consumer group {group_id!r} does not exist")
    members = tuple(
        MemberRow(
            m.member_id,
            m.client_id,
            m.client_host,
            _assigned(group.protocol_type, m.member_assignment),
        )
        for m in group.members
    )
    owner = {tp: m.member_id for m in members for tp in m.partitions}
    wanted = sorted(set(committed) | set(owner))
    log_end = await _log_end_offsets(bootstrap, wanted)
    partitions = tuple(
        PartitionRow(
            topic,
            index,
            committed.get((topic, index), -1),
            log_end.get((topic, index), -1),
            owner.get((topic, index), ""),
        )
        for topic, index in wanted
    )
    return GroupReport(
        group_id,
        group.group_state,
        group.protocol_type,
        group.protocol_data,
        found.node_id,
        members,
        partitions,
    )


def _assigned(protocol_type: str, data: bytes) -> tuple[tuple[str, int], ...]:
    if protocol_type != CONSUMER_PROTOCOL_TYPE or not data:
        return ()
    try:
        return tuple(decode_assignment(bytes(data)).partitions())
    except QuorumqError:
        return ()  # not a ConsumerProtocol assignment: nothing to show per partition


async def _log_end_offsets(
    bootstrap: str, partitions: Sequence[tuple[str, int]]
) -> dict[tuple[str, int], int]:
    """ListOffsets(latest) on each partition's leader: the offset a consumer would reach."""
    if not partitions:
        return {}
    topics = sorted({topic for topic, _ in partitions})
    async with connect(bootstrap) as conn:
        metadata = await _metadata(conn, topics)
    brokers = {b.node_id: (b.host, b.port) for b in metadata.brokers}
    leaders: dict[tuple[str, int], int] = {}
    for topic in metadata.topics:
        for part in topic.partitions:
            if part.error_code == 0:
                leaders[(topic.name, part.partition_index)] = part.leader_id
    by_leader: dict[int, list[tuple[str, int]]] = {}
    for tp in partitions:
        leader = leaders.get(tp)
        if leader is not None and leader in brokers:
            by_leader.setdefault(leader, []).append(tp)
    out: dict[tuple[str, int], int] = {}
    for leader, owned in by_leader.items():
        per_topic: dict[str, list[int]] = {}
        for topic, index in owned:
            per_topic.setdefault(topic, []).append(index)
        async with _connect_to(*brokers[leader]) as conn:
            version = conn.version_for(p.ApiKey.LIST_OFFSETS, (1, 5))
            response = await conn.request(
                p.ApiKey.LIST_OFFSETS,
                version,
                p.ListOffsetsRequest(
                    topics=[
                        p.ListOffsetsRequestTopic(
                            name=topic,
                            partitions=[
                                p.ListOffsetsRequestPartition(partition_index=i, timestamp=LATEST)
                                for i in indexes
                            ],
                        )
                        for topic, indexes in per_topic.items()
                    ]
                ),
            )
        for topic in response.topics:
            for part in topic.partitions:
                if part.error_code == 0:
                    out[(topic.name, part.partition_index)] = part.offset
    return out


# --- rendering -------------------------------------------------------------------------------


def _offset(value: int) -> str:
    return "-" if value < 0 else str(value)


def render_listing(rows: Sequence[GroupListing], console: Console) -> None:
    table = Table("group", "state", "members", "protocol type", "coordinator")
    for row in rows:
        table.add_row(
            row.group_id, row.state, str(row.members), row.protocol_type, str(row.coordinator)
        )
    console.print(table)


def render_report(report: GroupReport, console: Console) -> None:
    console.print(
        f"group [bold]{report.group_id}[/bold]: {report.state}, "
        f"protocol {report.protocol or '-'} ({report.protocol_type or '-'}), "
        f"coordinator {report.coordinator}, {len(report.members)} member(s)"
    )
    members = Table("member", "client id", "host", "partitions", title="members")
    for m in report.members:
        assigned = ", ".join(f"{t}-{i}" for t, i in m.partitions) or "-"
        members.add_row(m.member_id, m.client_id, m.client_host or "-", assigned)
    console.print(members)
    offsets = Table(
        "topic",
        "partition",
        "committed offset",
        "log end offset",
        "lag",
        "member",
        title="offsets",
        show_footer=True,
    )
    total_committed = sum(max(r.committed_offset, 0) for r in report.partitions)
    total_end = sum(max(r.log_end_offset, 0) for r in report.partitions)
    for row in report.partitions:
        lag = row.lag
        offsets.add_row(
            row.topic,
            str(row.partition),
            _offset(row.committed_offset),
            _offset(row.log_end_offset),
            "-" if lag is None else str(lag),
            row.member_id or "-",
        )
    offsets.columns[0].footer = "total"
    offsets.columns[1].footer = str(len(report.partitions))
    offsets.columns[2].footer = str(total_committed)
    offsets.columns[3].footer = str(total_end)
    offsets.columns[4].footer = str(report.total_lag)
    console.print(offsets)


@group_app.command("list")
def list_command(
    bootstrap: str = typer.Option(DEFAULT_BOOTSTRAP, "--bootstrap", "-b", help=BOOTSTRAP_HELP),
) -> None:
    """List consumer groups (every broker's), with state, member count and coordinator."""
    rows = run_trio(list_groups, bootstrap)
    render_listing(rows, Console())


@group_app.command("describe")
def describe_command(
    group: str,
    bootstrap: str = typer.Option(DEFAULT_BOOTSTRAP, "--bootstrap", "-b", help=BOOTSTRAP_HELP),
) -> None:
    """Show a group's members, assignments, committed offsets, log end offsets and lag."""
    report = run_trio(describe_group, bootstrap, group)
    render_report(report, Console())


@group_app.command("delete-offsets")
def delete_offsets_command(
    group: str,
    topic: str = typer.Option(..., "--topic", "-t", help="The topic whose offsets go."),
    partition: list[int] = typer.Option(
        [], "--partition", "-p", help="Only this partition; repeatable (default: all)."
    ),
    bootstrap: str = typer.Option(DEFAULT_BOOTSTRAP, "--bootstrap", "-b", help=BOOTSTRAP_HELP),
) -> None:
    """Delete a group's committed offsets of a topic its members do not read (OffsetDelete)."""
    deleted = run_trio(delete_offsets, bootstrap, group, topic, partition)
    if deleted:
        listed = ", ".join(str(i) for i in deleted)
        Console().print(f"deleted the offsets of group [bold]{group}[/bold] on {topic}: {listed}")
    else:
        Console().print(f"group [bold]{group}[/bold] has no offsets on {topic}")


@group_app.command("delete")
def delete_command(
    group: list[str] = typer.Argument(..., help="The groups to delete."),
    bootstrap: str = typer.Option(DEFAULT_BOOTSTRAP, "--bootstrap", "-b", help=BOOTSTRAP_HELP),
) -> None:
    """Delete empty consumer groups and their committed offsets."""
    for group_id in group:
        run_trio(delete_group, bootstrap, group_id)
        Console().print(f"deleted group [bold]{group_id}[/bold]")
