"""Real pysyncobj voters on 127.0.0.1: full-cluster restarts under write load, and a voter stopped
between writing a snapshot and trimming its journal.

Regression for pysyncobj's CRITICAL "truncating already-applied log entries", seen in full-cluster
restarts under load (docs/controller.md, "Durability of the Raft journal").
"""

from __future__ import annotations

import logging
import shutil
from pathlib import Path

import pytest
import trio
from pysyncobj.journal import FileJournal

from quorumq.controller import (
    BrokerMembership,
    Controller,
    ControllerBridge,
    Voter,
    _raft,
    open_controller_bridge,
)
from quorumq.controller.image import image_to_dict
from quorumq.errors import QuorumqError
from quorumq.testing import free_ports

from ._helpers import send_to_active

PASSWORD = "test-secret"
TRUNCATION = "truncating already-applied log entries"


async def _broker(
    node_id: int,
    voters: dict[int, Voter],
    root: Path,
    nodes: dict[int, tuple[ControllerBridge, Controller]],
    *,
    task_status: trio.TaskStatus[None],
) -> None:
    """One combined-mode broker's controller side: voter, tick loop, registration, heartbeats."""
    async with (
        open_controller_bridge(node_id, voters, root / f"node{node_id}", password=PASSWORD) as b,
        trio.open_nursery() as nursery,
    ):
        controller = Controller(b, tick_interval_s=0.1)
        nursery.start_soon(controller.run)
        send = send_to_active(lambda: [controller for _, controller in nodes.values()])
        membership = BrokerMembership(b, node_id, "127.0.0.1", 9092 + node_id, send_heartbeat=send)
        nursery.start_soon(membership.run)
        nodes[node_id] = (b, controller)
        task_status.started()
        await trio.sleep_forever()


async def _voter(
    node_id: int,
    voters: dict[int, Voter],
    root: Path,
    bridges: dict[int, ControllerBridge],
    *,
    task_status: trio.TaskStatus[None],
) -> None:
    async with open_controller_bridge(
        node_id, voters, root / f"node{node_id}", password=PASSWORD
    ) as bridge:
        bridges[node_id] = bridge
        task_status.started()
        await trio.sleep_forever()


async def _restarts_under_load(root: Path, rounds: int, writes_per_writer: int) -> tuple[int, int]:
    """Starts 3 brokers, writes from every broker at once, stops all mid-load; ``rounds`` times.
    Then starts bare voters and checks every acknowledged topic is on every voter, with the same
    image bytes. Returns (acknowledged topics, appends deduplicated)."""
    ports = free_ports(3)
    voters = {i: Voter(i, "127.0.0.1", ports[i]) for i in range(3)}
    acked: set[str] = set()
    deduplicated = 0
    for round_no in range(rounds):
        nodes: dict[int, tuple[ControllerBridge, Controller]] = {}
        async with trio.open_nursery() as nursery:
            for i in range(3):
                await nursery.start(_broker, i, voters, root, nodes)
            with trio.fail_after(15):
                while not any(  # noqa: ASYNC110 - state of three bridges, no single event
                    b.is_active and len(b.image.live_brokers()) == 3 for b, _ in nodes.values()
                ):
                    await trio.sleep(0.02)

            async def writer(controller: Controller, prefix: str) -> None:
                for k in range(writes_per_writer):
                    name = f"{prefix}-{k}"
                    try:
                        await controller.create_topic(name, 1, 1, timeout_s=2.0)
                    except QuorumqError:
                        await trio.sleep(0.01)
                    else:
                        acked.add(name)

            async with trio.open_nursery() as writers:
                for i in range(3):
                    for slot in range(3):
                        writers.start_soon(writer, nodes[i][1], f"r{round_no}-n{i}-w{slot}")
                await trio.sleep(0.3)  # then stop every broker with writes in flight
                writers.cancel_scope.cancel()
            deduplicated += sum(b.raft.appends_deduplicated for b, _ in nodes.values())
            assert all(b.raft.fsyncs > 0 for b, _ in nodes.values())
            nursery.cancel_scope.cancel()

    bridges: dict[int, ControllerBridge] = {}
    async with trio.open_nursery() as nursery:
        for i in range(3):
            await nursery.start(_voter, i, voters, root, bridges)
        with trio.fail_after(15):
            # No tick loop or heartbeats now: once every voter applied the same number of records
            # (and the new controller epoch), the images must be identical.
            while not (  # noqa: ASYNC110 - state of three bridges, no single event
                any(b.is_active for b in bridges.values())
                and len({b.image.record_count for b in bridges.values()}) == 1
                and all(acked <= set(b.image.topics) for b in bridges.values())
            ):
                await trio.sleep(0.05)
        images = [image_to_dict(b.image) for b in bridges.values()]
        assert images[1] == images[0] and images[2] == images[0]
        nursery.cancel_scope.cancel()
    return len(acked), deduplicated


async def test_full_restart_under_load_keeps_acked_records_without_truncation(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.WARNING, logger="pysyncobj")
    acked, deduplicated = await _restarts_under_load(tmp_path, rounds=2, writes_per_writer=30)
    print(f"\n{acked} topics acknowledged, {deduplicated} appends deduplicated")
    assert acked > 0
    # The leader's rewinds did happen (about a hundred per run here): without the deduplicator,
    # this load logged the CRITICAL in every one of three runs.
    assert deduplicated > 0
    assert [r.getMessage() for r in caplog.records if TRUNCATION in r.getMessage()] == []


@pytest.mark.slow
async def test_repeated_full_restarts_under_load_soak(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.WARNING, logger="pysyncobj")
    acked, deduplicated = await _restarts_under_load(tmp_path, rounds=6, writes_per_writer=40)
    print(f"\n{acked} topics acknowledged, {deduplicated} appends deduplicated")
    assert acked > 0
    assert [r.getMessage() for r in caplog.records if TRUNCATION in r.getMessage()] == []


def _entries(journal_path: Path) -> list[tuple[bytes, int, int]]:
    journal = FileJournal(str(journal_path))
    try:
        return [(bytes(cmd), idx, term) for cmd, idx, term in journal]
    finally:
        journal._destroy()


def _write_journal(journal_path: Path, entries: list[tuple[bytes, int, int]]) -> None:
    journal_path.unlink()
    journal = FileJournal(str(journal_path))
    try:
        for entry in entries:
            journal.add(*entry)
    finally:
        journal._destroy()


async def _topics_after_restart(data_dir: Path, voters: dict[int, Voter]) -> set[str]:
    async with open_controller_bridge(0, voters, data_dir, password=PASSWORD) as bridge:
        await bridge.wait_until(lambda b: b.is_active, 5)
        return set(bridge.image.topics)


async def test_stop_between_snapshot_and_journal_trim_keeps_later_records(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    data_dir = tmp_path / "voter"
    journal_path = data_dir / _raft.JOURNAL_FILE
    voters = {0: Voter(0, "127.0.0.1", free_ports(1)[0])}
    async with open_controller_bridge(0, voters, data_dir, password=PASSWORD) as bridge:
        await bridge.wait_until(lambda b: b.is_active, 5)
        controller = Controller(bridge)
        async with trio.open_nursery() as nursery:
            send = send_to_active(lambda: [controller])
            await nursery.start(
                BrokerMembership(bridge, 0, "127.0.0.1", 9092, send_heartbeat=send).run
            )
            await nursery.start(controller.run)
            await bridge.wait_until(lambda b: b.image.live_brokers() == {0}, 5)
            await controller.create_topic("before", 1, 1)
            nursery.cancel_scope.cancel()  # quiet: no heartbeats or ticks from here on
        untrimmed = _entries(journal_path)
        bridge.raft.force_snapshot()
        with trio.fail_after(5):
            # pysyncobj trims the journal on the tick after the snapshot (its thread, no event).
            while len(_entries(journal_path)) != 2:  # noqa: ASYNC110
                await trio.sleep(0.02)
        await controller.create_topic("after", 1, 1)  # the broker is still within its session
        compacted = _entries(journal_path)
        assert bridge.raft.fsyncs > 0
    # Rebuild the journal as a stop between the snapshot and the trim leaves it: every entry
    # from the start, then those written after the snapshot point.
    prev, last = compacted[0], compacted[1]
    at = untrimmed.index(prev)
    assert untrimmed[at + 1] == last and at > 0
    _write_journal(journal_path, untrimmed[: at + 2] + compacted[2:])
    unreconciled = tmp_path / "unreconciled"
    shutil.copytree(data_dir, unreconciled)

    # pysyncobj alone clears such a journal down to the snapshot: "after" is gone.
    with monkeypatch.context() as m:
        m.setattr(_raft, "reconcile_journal", lambda data_dir: 0)
        assert await _topics_after_restart(unreconciled, voters) == {"before"}

    # Reconciled first, the voter keeps it.
    assert await _topics_after_restart(data_dir, voters) == {"before", "after"}
    assert _entries(journal_path)[:2] == [prev, last]


async def test_heartbeats_do_not_fsync_an_unchanged_journal(tmp_path: Path) -> None:
    """A follower acknowledges every heartbeat (an append without entries, every 75 ms), and
    a heartbeat can change the journal only by truncating it, which the unforced check sees.
    Forcing an fsync for each cost a follower 12 fsyncs a second on an idle cluster, 2 now."""
    ports = free_ports(3)
    voters = {i: Voter(i, "127.0.0.1", ports[i]) for i in range(3)}
    bridges: dict[int, ControllerBridge] = {}
    async with trio.open_nursery() as nursery:
        for i in range(3):
            await nursery.start(_voter, i, voters, tmp_path, bridges)
        with trio.fail_after(15):
            while not any(b.is_active for b in bridges.values()):  # noqa: ASYNC110
                await trio.sleep(0.02)
        await trio.sleep(0.5)  # past the first leader's opening entries
        followers = [b.raft for b in bridges.values() if not b.is_active]
        before = [f.fsyncs for f in followers]
        await trio.sleep(1.0)  # about 13 heartbeats to each follower
        assert len(followers) == 2
        # What is left is pysyncobj rewriting its term/vote file once a second (the commit
        # index lives there too): that file and its directory, two fsyncs.
        assert all(f.fsyncs - b <= 4 for f, b in zip(followers, before, strict=True))
        nursery.cancel_scope.cancel()
