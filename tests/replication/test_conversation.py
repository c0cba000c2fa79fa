"""Leader and follower cores back to back, logs as in-memory lists (tests/replication/sim.py)."""

from __future__ import annotations

import pytest

from quorumq.errors import FencedLeaderEpoch, OffsetOutOfRange, UnknownLeaderEpoch
from quorumq.replication import IsrStrategy, QuorumStrategy, diverging_epoch
from tests.replication.sim import SimReplica, fetch_step, truncate_step

REPLICAS = (1, 2, 3)


def _catch_up(
    followers: list[SimReplica], leader: SimReplica, now_ms: int, rounds: int = 5
) -> None:
    for _ in range(rounds):
        for follower in followers:
            fetch_step(follower, leader, now_ms, 100)


def test_conversation_follower_learns_records_then_high_watermark() -> None:
    leader, follower = SimReplica(1), SimReplica(2)
    leader.become_leader(IsrStrategy(), 1, (1, 2), (1, 2), 0)
    follower.become_follower(1, 1)
    for record_id in range(5):
        leader.append(record_id, 0)
    assert fetch_step(follower, leader, 1, 100) is None  # divergence check first: nothing to cut
    result = fetch_step(follower, leader, 2, 100)
    assert result is not None and result.high_watermark == 0  # the leader learns LEO 5 next time
    assert follower.log == leader.log and follower.high_watermark == 0
    result = fetch_step(follower, leader, 3, 100)
    assert result is not None and (result.high_watermark, result.advanced) == (5, True)
    assert follower.high_watermark == 5
    # A partial fetch: follower HW = min(leader HW, own LEO).
    for record_id in range(5, 15):
        leader.append(record_id, 4)
    fetch_step(follower, leader, 5, 3)
    fetch_step(follower, leader, 6, 3)
    assert (follower.log_end_offset, leader.high_watermark, follower.high_watermark) == (11, 8, 8)


def test_conversation_new_leader_truncates_old_leaders_divergent_tail() -> None:
    a, b, c = SimReplica(1), SimReplica(2), SimReplica(3)
    strategy = QuorumStrategy()
    a.become_leader(strategy, 1, REPLICAS, REPLICAS, 0)
    b.become_follower(1, 1)
    c.become_follower(1, 1)
    for record_id in range(5):
        a.append(record_id, 0)
    _catch_up([b, c], a, 1)
    assert a.high_watermark == 5 and b.log == c.log == a.log
    # A appends 5..7; only B copies offset 5 before A crashes (A never learns it did).
    for record_id in (105, 106, 107):
        a.append(record_id, 2)
    fetch_step(b, a, 3, 1)
    assert (b.log_end_offset, a.high_watermark) == (6, 5)
    a.crash()
    # The controller elects among B (epoch 1, LEO 6) and C (epoch 1, LEO 5): B.
    chosen = strategy.choose_leader(REPLICAS, {2, 3}, {2: b.report(), 3: c.report()}, {2, 3}, False)
    assert chosen == 2
    b.become_leader(strategy, 2, REPLICAS, (2, 3), 10)
    c.become_follower(2, 2)
    b.append(200, 11)
    b.append(201, 11)
    _catch_up([c], b, 12)
    assert b.high_watermark == 8  # offset 5 (epoch 1) committed together with epoch 2's records
    # A comes back: it asks OffsetForLeaderEpoch(1); B's epoch 1 ended at 6; A cuts 6 and 7.
    a.alive = True
    a.become_follower(2, 2)
    assert a.log_end_offset == 8 and a.cache.latest_epoch == 1
    assert truncate_step(a, b)
    assert a.log_end_offset == 6 and a.log[5] == (1, 105)
    _catch_up([a], b, 13)
    assert a.log == b.log == c.log
    assert [record_id for _, record_id in a.log] == [0, 1, 2, 3, 4, 105, 200, 201]
    assert a.high_watermark == b.high_watermark == 8


def test_conversation_kip279_two_rounds_when_follower_has_unknown_epochs() -> None:
    # The follower wrote epoch 3 as a leader nobody followed; the leader has epochs 2 and 4.
    follower, leader = SimReplica(2), SimReplica(1)
    follower.log = [(1, i) for i in range(5)] + [(3, 30 + i) for i in range(3)]
    follower.cache.assign(1, 0)
    follower.cache.assign(3, 5)
    leader.log = [(1, i) for i in range(4)] + [(2, 20), (2, 21)] + [(4, 40 + i) for i in range(3)]
    leader.cache.assign(1, 0)
    leader.cache.assign(2, 4)
    leader.become_leader(QuorumStrategy(), 4, (1, 2), (1, 2), 0)
    assert leader.cache.latest_epoch == 4 and leader.leader is not None
    leader.leader.epoch_start_offset = 6  # the epoch began before its three records
    follower.become_follower(1, 4)
    assert not truncate_step(follower, leader)  # asked 3, told (2, 6): cut to our epoch 1's end
    assert follower.log_end_offset == 5
    assert truncate_step(follower, leader)  # asked 1, told (1, 4): cut to 4, done
    assert follower.log_end_offset == 4
    _catch_up([follower], leader, 1)
    assert follower.log == leader.log
    assert [(e.leader_epoch, e.start_offset) for e in follower.cache.entries] == [
        (1, 0),
        (2, 4),
        (4, 6),
    ]


def test_conversation_paused_old_leader_is_fenced_and_cannot_commit() -> None:
    a, b, c = SimReplica(1), SimReplica(2), SimReplica(3)
    strategy = QuorumStrategy()
    a.become_leader(strategy, 1, REPLICAS, REPLICAS, 0)
    b.become_follower(1, 1)
    c.become_follower(1, 1)
    a.append(1, 0)
    _catch_up([b, c], a, 1)
    assert a.high_watermark == 1
    # A pauses; the controller makes B leader of epoch 2 and C follows it.
    b.become_leader(strategy, 2, REPLICAS, (2, 3), 5)
    c.become_follower(2, 2)
    # A wakes up still believing it leads epoch 1, and takes a write.
    a.append(99, 6)
    # C's fetch (epoch 2) reaches A: refused, so A can count nobody.
    c.follower.truncating = False  # type: ignore[union-attr]
    with pytest.raises(UnknownLeaderEpoch):
        fetch_step(c, a, 7, 10)
    assert a.high_watermark == 1  # the write at offset 1 is never acknowledged
    # A learns the new epoch, becomes a follower and its uncommitted write is cut.
    a.become_follower(2, 2)
    b.append(2, 8)
    _catch_up([a, c], b, 9)
    assert a.log == b.log == c.log == [(1, 1), (2, 2)]
    # And a straggler still in epoch 1 is fenced by the new leader.
    straggler = SimReplica(3, log=list(c.log))
    straggler.become_follower(1, 1)
    straggler.follower.truncating = False  # type: ignore[union-attr]
    with pytest.raises(FencedLeaderEpoch):
        fetch_step(straggler, b, 10, 10)


def test_conversation_isr_slow_follower_stalls_until_shrunk_quorum_does_not() -> None:
    for strategy in (QuorumStrategy(), IsrStrategy()):
        leader, fast, slow = SimReplica(1), SimReplica(2), SimReplica(3)
        leader.become_leader(strategy, 1, REPLICAS, REPLICAS, 0)
        fast.become_follower(1, 1)
        slow.become_follower(1, 1)
        _catch_up([fast, slow], leader, 0, rounds=1)
        leader.append(1, 1_000)
        _catch_up([fast], leader, 1_000, rounds=2)
        committed = leader.high_watermark == 1
        assert committed is isinstance(strategy, QuorumStrategy)
        assert leader.leader is not None
        change = leader.leader.tick(31_001)
        assert change is not None and change.isr == {1, 2}
        if not change.advisory:
            leader.leader.on_isr_committed(change.isr, 1)
        assert leader.high_watermark == 1


def test_conversation_fetch_diverging_epoch_replaces_offset_for_leader_epoch() -> None:
    # Fetch v12+: the follower sends last_fetched_epoch; the leader answers diverging_epoch.
    leader, follower = SimReplica(1), SimReplica(2)
    for replica in (leader, follower):
        replica.log = [(1, i) for i in range(4)]
        replica.cache.assign(1, 0)
    follower.log += [(1, 104), (1, 105)]  # the old leader's uncommitted tail
    leader.log += [(2, 204)]
    leader.cache.assign(2, 4)
    assert leader.leader is None
    state = follower.become_follower(1, 2)
    state.truncating = False  # fetch-based truncation: no OffsetForLeaderEpoch round
    answer = diverging_epoch(
        leader.cache,
        log_start_offset=0,
        log_end_offset=leader.log_end_offset,
        fetch_offset=state.fetch_offset,
        last_fetched_epoch=state.last_fetched_epoch(follower.cache),
    )
    assert answer == (1, 4)
    plan = state.on_leader_epoch_answer(follower.cache, answer)
    del follower.log[plan.offset :]
    assert plan.complete and follower.log_end_offset == 4
    # Now consistent: no divergence, and the fetch proceeds.
    assert (
        diverging_epoch(
            leader.cache,
            log_start_offset=0,
            log_end_offset=leader.log_end_offset,
            fetch_offset=4,
            last_fetched_epoch=1,
        )
        is None
    )
    assert (
        diverging_epoch(
            leader.cache,
            log_start_offset=0,
            log_end_offset=5,
            fetch_offset=4,
            last_fetched_epoch=-1,
        )
        is None
    )
    with pytest.raises(OffsetOutOfRange):
        diverging_epoch(
            leader.cache, log_start_offset=0, log_end_offset=5, fetch_offset=4, last_fetched_epoch=7
        )
    with pytest.raises(OffsetOutOfRange):
        diverging_epoch(
            leader.cache, log_start_offset=3, log_end_offset=5, fetch_offset=2, last_fetched_epoch=1
        )
