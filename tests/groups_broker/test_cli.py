"""``quorumq group list|describe`` against an in-process broker with one raw-protocol member."""

from __future__ import annotations

import io
import sys

import pytest
import trio
from rich.console import Console

from quorumq import protocol as p
from quorumq.broker import Broker
from quorumq.cli import main
from quorumq.cli._group import describe_group, list_groups, render_listing, render_report
from quorumq.client._connection import Connection, open_connection
from quorumq.client._consumer_protocol import (
    CONSUMER_PROTOCOL_TYPE,
    Assignment,
    Subscription,
    encode_assignment,
    encode_subscription,
)
from tests.groups_broker._members import produce
from tests.groups_broker.conftest import bootstrap

TOPIC = "clicks"
GROUP = "dashboards"


async def _member_with_commit(conn: Connection) -> str:
    """Joins GROUP alone, takes both partitions, commits 2 on partition 0; returns its id."""
    request = p.JoinGroupRequest(
        group_id=GROUP,
        session_timeout_ms=30_000,
        rebalance_timeout_ms=30_000,
        member_id="",
        protocol_type=CONSUMER_PROTOCOL_TYPE,
        protocols=[
            p.JoinGroupRequestProtocol(
                name="range", metadata=encode_subscription(Subscription((TOPIC,)))
            )
        ],
    )
    joined = await conn.request(p.ApiKey.JOIN_GROUP, 3, request)
    assert joined.error_code == 0
    member = joined.member_id
    assignment = encode_assignment(Assignment(((TOPIC, (0, 1)),)))
    synced = await conn.request(
        p.ApiKey.SYNC_GROUP,
        3,
        p.SyncGroupRequest(
            group_id=GROUP,
            generation_id=joined.generation_id,
            member_id=member,
            assignments=[p.SyncGroupRequestAssignment(member_id=member, assignment=assignment)],
        ),
    )
    assert synced.error_code == 0
    committed = await conn.request(
        p.ApiKey.OFFSET_COMMIT,
        7,
        p.OffsetCommitRequest(
            group_id=GROUP,
            generation_id=joined.generation_id,
            member_id=member,
            topics=[
                p.OffsetCommitRequestTopic(
                    name=TOPIC,
                    partitions=[
                        p.OffsetCommitRequestPartition(partition_index=0, committed_offset=2)
                    ],
                )
            ],
        ),
    )
    assert committed.topics[0].partitions[0].error_code == 0
    return str(member)


def _main(argv: list[str]) -> int:
    """Runs the console entry point (in a worker thread: it calls trio.run itself)."""
    saved = sys.argv
    sys.argv = ["quorumq", *argv]
    try:
        main()
    except SystemExit as exc:
        return int(exc.code or 0)
    finally:
        sys.argv = saved
    return 0


async def test_group_describe_and_list(broker: Broker, capsys: pytest.CaptureFixture[str]) -> None:
    broker.create_topic(TOPIC, 2)
    address = bootstrap(broker)
    await trio.to_thread.run_sync(produce, address, TOPIC, 10)
    ends = [broker.partition(TOPIC, i).log_end_offset for i in range(2)]
    async with open_connection("127.0.0.1", broker.port or 0) as conn:
        await conn.request(p.ApiKey.FIND_COORDINATOR, 2, p.FindCoordinatorRequest(key=GROUP))
        member = await _member_with_commit(conn)

        report = await describe_group(address, GROUP)
        assert (report.state, report.protocol, report.coordinator) == ("Stable", "range", 0)
        assert [(m.member_id, m.partitions) for m in report.members] == [
            (member, ((TOPIC, 0), (TOPIC, 1)))
        ]
        rows = [
            (r.topic, r.partition, r.committed_offset, r.log_end_offset, r.lag, r.member_id)
            for r in report.partitions
        ]
        assert rows == [
            (TOPIC, 0, 2, ends[0], ends[0] - 2, member),
            (TOPIC, 1, -1, ends[1], None, member),
        ]
        assert report.total_lag == ends[0] - 2
        listing = await list_groups(address)
        assert [(g.group_id, g.state, g.members) for g in listing] == [(GROUP, "Stable", 1)]

        console = Console(file=io.StringIO(), width=250)
        render_report(report, console)
        render_listing(listing, console)
        out = console.file.getvalue()  # type: ignore[attr-defined]
        assert member in out and "total" in out and "Stable" in out and GROUP in out

    # The console entry point: an unknown group is a one-line error and exit status 1.
    code = await trio.to_thread.run_sync(
        _main, ["group", "describe", "nobody-here", "--bootstrap", address]
    )
    err = capsys.readouterr().err
    assert code == 1
    assert err.strip().count("\n") == 0 and "GROUP_ID_NOT_FOUND" in err, err
    # `group delete`: a group with a member is refused; an empty one goes.
    code = await trio.to_thread.run_sync(_main, ["group", "delete", GROUP, "--bootstrap", address])
    assert code == 1 and "NON_EMPTY_GROUP" in capsys.readouterr().err
    async with open_connection("127.0.0.1", broker.port or 0) as conn:
        await conn.request(
            p.ApiKey.LEAVE_GROUP,
            3,
            p.LeaveGroupRequest(group_id=GROUP, members=[p.LeaveGroupMember(member_id=member)]),
        )
    delete_offsets = ["group", "delete-offsets", GROUP, "--topic", TOPIC, "--bootstrap", address]
    code = await trio.to_thread.run_sync(_main, delete_offsets)
    assert code == 0 and f"deleted the offsets of group {GROUP} on {TOPIC}: 0" in (
        capsys.readouterr().out
    )
    code = await trio.to_thread.run_sync(_main, delete_offsets)
    assert code == 0 and "has no offsets" in capsys.readouterr().out
    code = await trio.to_thread.run_sync(_main, ["group", "delete", GROUP, "--bootstrap", address])
    assert code == 0 and "deleted group" in capsys.readouterr().out
    listing = await list_groups(address)
    assert listing == []
