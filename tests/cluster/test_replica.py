"""ReplicaPartition without sockets: roles, follower appends, truncation, HW and epoch files."""

from __future__ import annotations

import os
from pathlib import Path

import pytest
import trio

from quorumq.broker._replica import FOLLOWER, IDLE, LEADER, ReplicaPartition
from quorumq.errors import NotEnoughReplicas, NotLeaderOrFollower, UnknownLeaderEpoch
from quorumq.log import LogConfig, PartitionLog
from quorumq.protocol.records import build_batch, parse_batch_header, patch_batch
from quorumq.replication import CHECKPOINT_FILE_NAME, load_checkpoint


def _open(directory: Path, broker_id: int = 1) -> ReplicaPartition:
    log = PartitionLog.open(directory, LogConfig(), now_ms=0)
    return ReplicaPartition.open(
        "t", 0, log, broker_id=broker_id, topic_id="x", directory=directory
    )


def _leader_batches(epochs_and_counts: list[tuple[int, int]]) -> bytes:
    """Batches as a leader stored them: dense offsets from 0, each stamped with its epoch."""
    out = bytearray()
    offset = 0
    for epoch, count in epochs_and_counts:
        batch = bytearray(build_batch([(None, b"v%d" % (offset + i)) for i in range(count)]))
        patch_batch(batch, 0, base_offset=offset, partition_leader_epoch=epoch)
        out += batch
        offset += count
    return bytes(out)


def test_single_replica_leader_commits_on_append(tmp_path: Path) -> None:
    replica = _open(tmp_path / "p")
    replica.configure("quorum", 1, 30_000)
    replica.become_leader(3, 0, [1], [1])
    assert replica.role == LEADER and replica.leader_epoch == 3
    replica.log.append(build_batch([(None, b"a"), (None, b"b")]), leader_epoch=3, now_ms=1)
    replica.notify_append()
    assert replica.high_watermark == 2
    assert load_checkpoint(tmp_path / "p" / CHECKPOINT_FILE_NAME).latest_epoch == 3
    with pytest.raises(UnknownLeaderEpoch):
        replica.check_fetch(-1, 0, 4)


def test_follower_appends_whole_batches_and_learns_epochs(tmp_path: Path) -> None:
    replica = _open(tmp_path / "p")
    assert replica.become_follower(0, 2, 0, [0, 1, 2], [0, 1, 2])
    assert replica.role == FOLLOWER
    data = _leader_batches([(1, 2), (2, 3)])
    # A response cut inside the second batch: only the first goes in.
    cut = parse_batch_header(data, 0).size + 20
    assert replica.append_as_follower(data[:cut], now=1) == parse_batch_header(data, 0).size
    assert replica.log_end_offset == 2
    replica.append_as_follower(data, now=1)  # the first batch again is skipped
    assert replica.log_end_offset == 5
    assert [(e.leader_epoch, e.start_offset) for e in replica.epoch_cache.entries] == [
        (1, 0),
        (2, 2),
    ]
    assert replica.report() == (2, 5, 2)
    with pytest.raises(NotLeaderOrFollower):
        replica.check_acks_all()
    replica.truncate_to(2)
    assert replica.log_end_offset == 2
    checkpoint = tmp_path / "p" / CHECKPOINT_FILE_NAME
    reloaded = load_checkpoint(checkpoint)
    assert [(e.leader_epoch, e.start_offset) for e in reloaded.entries] == [(1, 0)]
    # A truncation at the log end (what every follower does after a leader change) changes
    # nothing, so the checkpoint is not rewritten (two fsyncs each, thousands per failover).
    written = checkpoint.stat().st_ino
    replica.truncate_to(2)
    assert checkpoint.stat().st_ino == written


def test_quorum_leader_writes_an_epoch_record_for_its_predecessors_tail(tmp_path: Path) -> None:
    replica = _open(tmp_path / "p")
    replica.become_follower(0, 1, 0, [0, 1, 2], [0, 1, 2])
    replica.append_as_follower(_leader_batches([(1, 3)]), now=1)
    replica.configure("quorum", 1, 30_000)
    replica.become_leader(2, 1, [0, 1, 2], [0, 1, 2])
    # HW 0 < epoch start 3: a LEADER_CHANGE control batch of epoch 2 follows the tail.
    assert replica.log_end_offset == 4
    header = parse_batch_header(bytes(replica.log.read(3, 1 << 20).records), 0)
    assert header.is_control and header.partition_leader_epoch == 2
    assert replica.high_watermark == 0
    replica.check_fetch(0, 4, 2)  # follower 0 holds everything: majority (leader + 0)
    assert replica.high_watermark == 4


def test_acks_all_refused_without_a_caught_up_majority(tmp_path: Path) -> None:
    replica = _open(tmp_path / "p")
    replica.configure("isr", 2, 30_000)
    replica.become_leader(1, 0, [1, 2, 3], [1])
    with pytest.raises(NotEnoughReplicas):
        replica.check_acks_all()


async def test_waiting_produce_fails_when_leadership_ends(tmp_path: Path) -> None:
    replica = _open(tmp_path / "p")
    replica.configure("isr", 1, 30_000)
    replica.become_leader(1, 0, [1, 2], [1, 2])
    replica.log.append(build_batch([(None, b"a")]), leader_epoch=1, now_ms=1)
    replica.notify_append()
    assert replica.high_watermark == 0  # follower 2 has not fetched it

    async def depose() -> None:
        await trio.sleep(0.01)
        replica.become_follower(2, 2, 1, [1, 2], [2])

    async with trio.open_nursery() as nursery:
        nursery.start_soon(depose)
        with pytest.raises(NotLeaderOrFollower):
            await replica.wait_for_high_watermark(0, 5000)


def test_high_watermark_survives_a_restart(tmp_path: Path) -> None:
    replica = _open(tmp_path / "p")
    replica.configure("isr", 1, 30_000)
    replica.become_leader(1, 0, [1], [1])
    replica.log.append(build_batch([(None, b"a"), (None, b"b")]), leader_epoch=1, now_ms=1)
    replica.notify_append()
    replica.stop()
    assert replica.role == IDLE
    replica.log.close()
    again = _open(tmp_path / "p")
    assert again.high_watermark == 2
    assert again.leader_epoch == 1


def test_a_reopened_replica_takes_its_epochs_from_its_log(tmp_path: Path) -> None:
    """The checkpoint may be missing, torn or stale after a crash (it is written without
    fsync): the epochs come from the log's own batches on open."""
    replica = _open(tmp_path / "p")
    replica.become_follower(0, 4, 0, [0, 1, 2], [0, 1, 2])
    replica.append_as_follower(_leader_batches([(1, 2), (2, 3), (4, 1)]), now=1)
    expected = [(1, 0), (2, 2), (4, 5)]
    assert [(e.leader_epoch, e.start_offset) for e in replica.epoch_cache.entries] == expected
    replica.log.close()
    checkpoint = tmp_path / "p" / CHECKPOINT_FILE_NAME
    for content in ("", "0\n3\n1 0\n", "0\n2\n1 0\n3 2\n"):  # torn, malformed, stale
        checkpoint.write_text(content)
        reopened = _open(tmp_path / "p")
        assert [(e.leader_epoch, e.start_offset) for e in reopened.epoch_cache.entries] == (
            expected
        )
        assert reopened.leader_epoch == 4
        reopened.log.close()
    checkpoint.unlink()
    reopened = _open(tmp_path / "p")
    assert [(e.leader_epoch, e.start_offset) for e in reopened.epoch_cache.entries] == expected


def test_a_leader_change_writes_its_epoch_without_fsync(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Two fsyncs per partition on the event loop were 6-11% of a survivor's samples in a
    2,000-partition failover; the checkpoint is now only a record of history."""
    replica = _open(tmp_path / "p")
    replica.configure("isr", 1, 30_000)
    calls: list[int] = []
    monkeypatch.setattr(os, "fsync", lambda fd: calls.append(fd))
    replica.become_leader(3, 0, [1, 2], [1, 2])
    assert replica.epoch_cache.latest_epoch == 3
    assert load_checkpoint(tmp_path / "p" / CHECKPOINT_FILE_NAME).latest_epoch == 3
    assert calls == []


def test_a_leader_draining_for_a_transfer_refuses_writes_until_the_target_caught_up(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Leadership transfer, the leader's half: writes are refused (NOT_LEADER_OR_FOLLOWER,
    which clients retry) from the instruction on; the target fetching at the leader's log end
    is "drained", said once; the hold ends with the epoch, or after TRANSFER_HOLD_S."""
    from quorumq.broker import _replica

    replica = _open(tmp_path / "p")
    replica.configure("quorum", 1, 30_000)
    replica.become_leader(3, 0, [0, 1, 2], [0, 1, 2])
    replica.log.append(build_batch([(None, b"a"), (None, b"b")]), leader_epoch=3, now_ms=1)
    replica.notify_append()
    replica.check_writable()  # no transfer: writes go in
    drained: list[ReplicaPartition] = []
    assert not replica.begin_transfer(2, 2, drained.append)  # another epoch
    assert not replica.begin_transfer(1, 3, drained.append)  # itself: not a follower
    assert replica.begin_transfer(0, 3, drained.append)
    with pytest.raises(NotLeaderOrFollower, match="handed to broker 0"):
        replica.check_writable()
    end = replica.log_end_offset
    replica.check_fetch(2, end, 3)  # the other follower caught up: not the target
    replica.check_fetch(0, end - 1, 3)  # the target, not there yet
    assert drained == []
    replica.check_fetch(0, end, 3)
    replica.check_fetch(0, end, 3)
    assert drained == [replica] and replica.transfer is not None and replica.transfer.drained
    with pytest.raises(NotLeaderOrFollower):
        replica.check_writable()  # still held: the election comes next
    # Out of time (a lost controller): writes go in again, and the same transfer is not begun
    # a second time by a late heartbeat answer.
    clock = [0.0]
    monkeypatch.setattr(_replica.time, "monotonic", lambda: clock[0])
    replica.transfer = None
    replica.log.append(build_batch([(None, b"c")]), leader_epoch=3, now_ms=1)
    replica.notify_append()  # the target is behind again
    assert replica.begin_transfer(0, 3, drained.append)
    assert replica.transfer is not None and not replica.transfer.drained
    clock[0] = _replica.TRANSFER_HOLD_S
    replica.check_writable()
    assert replica.transfer is None
    assert not replica.begin_transfer(0, 3, drained.append)
    # A new epoch ends any transfer.
    replica.become_leader(4, 1, [0, 1, 2], [0, 1, 2])
    assert replica.begin_transfer(0, 4, drained.append)
    replica.become_follower(0, 5, 2, [0, 1, 2], [0, 1, 2])
    assert replica.transfer is None
