"""QuorumStrategy and IsrStrategy as pure functions: commit, admission, ISR and election rules."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from quorumq.errors import InvalidConfig, NotEnoughReplicas, NotEnoughReplicasAfterAppend
from quorumq.replication import (
    DEFAULT_STRATEGY,
    IsrStrategy,
    QuorumStrategy,
    ReplicaProgress,
    ReplicationStrategy,
    majority,
    strategy_for,
)

QUORUM = QuorumStrategy()
ISR = IsrStrategy()


def _progress(**log_end_offsets: int) -> dict[int, ReplicaProgress]:
    return {
        int(name[1:]): ReplicaProgress(broker_id=int(name[1:]), log_end_offset=leo)
        for name, leo in log_end_offsets.items()
    }


# --- selection ------------------------------------------------------------------------------


def test_strategy_for_names() -> None:
    assert isinstance(strategy_for("quorum"), QuorumStrategy)
    assert isinstance(strategy_for("isr"), IsrStrategy)
    assert isinstance(strategy_for(DEFAULT_STRATEGY), ReplicationStrategy)
    assert DEFAULT_STRATEGY == "quorum"


@pytest.mark.parametrize("name", ["", "Quorum", "raft", "isr ", "primary-backup"])
def test_strategy_for_unknown_raises_invalid_config(name: str) -> None:
    with pytest.raises(InvalidConfig):
        strategy_for(name)


def test_majority() -> None:
    assert [majority(n) for n in range(1, 8)] == [1, 2, 2, 3, 3, 4, 4]


# --- high watermark -------------------------------------------------------------------------


def test_quorum_high_watermark_is_majority_th_highest() -> None:
    # Leader at 10, followers at 7 and 3: two of three hold offsets below 7.
    assert QUORUM.high_watermark(10, _progress(b2=7, b3=3), {1, 2, 3}) == 7
    # One dead follower (unknown LEO) does not stall: the other follower is the majority.
    assert QUORUM.high_watermark(10, _progress(b2=10, b3=-1), {1}) == 10
    # Five replicas: the third highest.
    assert QUORUM.high_watermark(10, _progress(b2=9, b3=8, b4=2, b5=1), {1}) == 8


def test_quorum_high_watermark_waits_for_a_record_of_the_current_epoch() -> None:
    # Epoch began at 10: offsets below 10 are earlier epochs' and must not commit by count.
    assert QUORUM.high_watermark(10, _progress(b2=10, b3=10), {1, 2, 3}, 10) < 10
    assert QUORUM.high_watermark(11, _progress(b2=11, b3=0), {1, 2, 3}, 10) == 11


def test_quorum_high_watermark_single_and_two_replicas_need_no_epoch_record() -> None:
    assert QUORUM.high_watermark(10, {}, {1}, 10) == 10
    assert QUORUM.high_watermark(10, _progress(b2=10), {1, 2}, 10) == 10
    assert QUORUM.high_watermark(10, _progress(b2=4), {1, 2}, 0) == 4


def test_isr_high_watermark_is_lowest_isr_leo() -> None:
    progress = _progress(b2=7, b3=3)
    assert ISR.high_watermark(10, progress, {1, 2, 3}) == 3
    assert ISR.high_watermark(10, progress, {1, 2}) == 7
    assert ISR.high_watermark(10, progress, {1}) == 10
    # A member that has not fetched yet in this epoch holds the HW back.
    assert ISR.high_watermark(10, _progress(b2=-1, b3=10), {1, 2, 3}) == -1


@settings(max_examples=200, deadline=None)
@given(st.integers(0, 1000), st.lists(st.integers(-1, 1000), min_size=0, max_size=6))
def test_quorum_high_watermark_is_held_by_a_majority(
    leader_leo: int, follower_leos: list[int]
) -> None:
    follower_leos = [min(leo, leader_leo) for leo in follower_leos]
    progress = {i + 2: ReplicaProgress(i + 2, leo) for i, leo in enumerate(follower_leos)}
    hw = QUORUM.high_watermark(leader_leo, progress, {1}, 0)
    all_leos = [leader_leo, *follower_leos]
    if hw > 0:
        assert sum(leo >= hw for leo in all_leos) >= majority(len(all_leos))
    assert hw <= leader_leo


@settings(max_examples=200, deadline=None)
@given(
    st.integers(0, 1000),
    st.lists(st.integers(-1, 1000), min_size=0, max_size=6),
    st.data(),
)
def test_isr_high_watermark_never_exceeds_an_isr_member_leo(
    leader_leo: int, follower_leos: list[int], data: st.DataObject
) -> None:
    follower_leos = [min(leo, leader_leo) for leo in follower_leos]
    progress = {i + 2: ReplicaProgress(i + 2, leo) for i, leo in enumerate(follower_leos)}
    isr = {1} | set(data.draw(st.sets(st.sampled_from(sorted(progress) or [1]))))
    hw = ISR.high_watermark(leader_leo, progress, isr)
    assert hw <= leader_leo
    for member in isr - {1}:
        assert hw <= progress[member].log_end_offset


# --- acks=all admission ----------------------------------------------------------------------


def test_isr_acks_all_needs_min_insync_replicas() -> None:
    assert ISR.can_accept_acks_all((1, 2, 3), {1, 2}, 2) is None
    assert isinstance(ISR.can_accept_acks_all((1, 2, 3), {1}, 2), NotEnoughReplicas)
    after = ISR.can_accept_acks_all((1, 2, 3), {1}, 2, after_append=True)
    assert isinstance(after, NotEnoughReplicasAfterAppend)
    assert ISR.can_accept_acks_all((1, 2, 3), {1}, 1) is None


def test_quorum_acks_all_needs_a_caught_up_majority_and_ignores_min_insync() -> None:
    assert QUORUM.can_accept_acks_all((1, 2, 3), {1, 2}, 3) is None
    assert isinstance(QUORUM.can_accept_acks_all((1, 2, 3), {1}, 1), NotEnoughReplicas)
    assert QUORUM.can_accept_acks_all((1, 2, 3), {1}, 1, after_append=True) is None
    assert QUORUM.can_accept_acks_all((1,), {1}, 1) is None
    assert isinstance(QUORUM.can_accept_acks_all((1, 2), {1}, 1), NotEnoughReplicas)


# --- ISR changes ------------------------------------------------------------------------------


def _isr_changes(
    strategy: ReplicationStrategy,
    now_ms: int,
    isr: set[int],
    progress: dict[int, ReplicaProgress],
    *,
    leader_leo: int = 100,
    high_watermark: int = 50,
    epoch_start_offset: int = 0,
) -> frozenset[int] | None:
    return strategy.isr_changes(
        now_ms,
        leader_id=1,
        leader_log_end_offset=leader_leo,
        high_watermark=high_watermark,
        epoch_start_offset=epoch_start_offset,
        replicas=(1, 2, 3),
        isr=isr,
        progress=progress,
        lag_time_max_ms=30_000,
    )


def test_isr_shrinks_a_follower_not_caught_up_for_the_lag_time() -> None:
    progress = {
        2: ReplicaProgress(2, 100, last_fetch_ms=40_000, last_caught_up_ms=40_000),
        3: ReplicaProgress(3, 60, last_fetch_ms=40_000, last_caught_up_ms=5_000),
    }
    assert _isr_changes(ISR, 35_000, {1, 2, 3}, progress) is None  # 30 s exactly: still in
    assert _isr_changes(ISR, 35_001, {1, 2, 3}, progress) == {1, 2}
    # At the leader's LEO counts as caught up whatever the clock says.
    progress[3] = ReplicaProgress(3, 100, last_fetch_ms=0, last_caught_up_ms=0)
    assert _isr_changes(ISR, 99_000, {1, 2, 3}, progress) is None


def test_isr_expands_a_follower_at_the_high_watermark_and_epoch_start() -> None:
    progress = {
        2: ReplicaProgress(2, 100, last_caught_up_ms=1_000),
        3: ReplicaProgress(3, 49, last_caught_up_ms=0),
    }
    assert _isr_changes(ISR, 1_000, {1, 2}, progress) is None  # 49 < HW 50
    progress[3] = ReplicaProgress(3, 50)
    assert _isr_changes(ISR, 1_000, {1, 2}, progress) == {1, 2, 3}
    # Not before reaching the offset where this leader's epoch began.
    assert _isr_changes(ISR, 1_000, {1, 2}, progress, epoch_start_offset=80) is None


def test_quorum_reports_replicas_within_lag_as_isr() -> None:
    progress = {
        2: ReplicaProgress(2, 100, last_caught_up_ms=1_000),
        3: ReplicaProgress(3, 10, last_caught_up_ms=0),
    }
    assert _isr_changes(QUORUM, 20_000, {1, 2, 3}, progress) is None
    assert _isr_changes(QUORUM, 31_000, {1, 2, 3}, progress) == {1, 2}
    # Back within lag once it reaches the leader's LEO, no HW condition needed.
    progress[3] = ReplicaProgress(3, 100, last_caught_up_ms=31_000)
    assert _isr_changes(QUORUM, 31_000, {1, 2}, progress) == {1, 2, 3}


# --- leader election --------------------------------------------------------------------------


def test_quorum_elects_the_first_replica_at_least_as_up_to_date_as_a_majority() -> None:
    """Raft's vote rule: (last leader epoch, LEO) compared as a pair, the earliest replica in
    the assignment that a majority (itself included) would vote for."""
    reports = {1: (3, 10), 2: (4, 7), 3: (4, 9)}
    # 2 is ahead of 1 (a later epoch) and of itself: a majority of three.
    assert QUORUM.choose_leader((1, 2, 3), {1, 2, 3}, reports, {1}, False) == 2
    # 1's later offsets are of an older epoch: 1 is behind both others.
    assert QUORUM.choose_leader((1, 3, 2), {1, 2, 3}, reports, {1}, False) == 3
    # Two reporters of three: the winner must be at least as up to date as both.
    assert QUORUM.choose_leader((2, 3, 1), {2, 3}, reports, {1}, False) == 3
    assert QUORUM.choose_leader((1, 2, 3), {1, 2}, reports, {1}, False) == 2
    # Ties go to the earlier replica in the assignment.
    tied = {1: (4, 9), 2: (4, 9), 3: (4, 9)}
    assert QUORUM.choose_leader((3, 2, 1), {1, 2, 3}, tied, set(), False) == 3
    # Five replicas, all reporting: the preferred one, two records behind the most complete,
    # is still ahead of two others and itself.
    five = {1: (4, 8), 2: (4, 10), 3: (4, 9), 4: (4, 7), 5: (4, 6)}
    assert QUORUM.choose_leader((1, 2, 3, 4, 5), set(five), five, set(), False) == 1
    assert QUORUM.choose_leader((5, 4, 1, 2, 3), set(five), five, set(), False) == 1


def test_quorum_elects_nobody_without_a_live_majority_reporting() -> None:
    reports = {1: (3, 10), 2: (4, 7), 3: (4, 9)}
    assert QUORUM.choose_leader((1, 2, 3), {1}, reports, {1}, True) is None
    assert QUORUM.choose_leader((1, 2, 3), {1, 2, 3}, {1: (3, 10)}, {1}, True) is None
    # A live broker that is not a replica does not count.
    assert QUORUM.choose_leader((1, 2, 3), {1, 4}, {1: (0, 0), 4: (9, 9)}, set(), True) is None


def test_isr_elects_first_live_isr_member_in_assignment_order() -> None:
    assert ISR.choose_leader((1, 2, 3), {2, 3}, {}, {1, 3, 2}, False) == 2
    assert ISR.choose_leader((3, 1, 2), {1, 2, 3}, {}, {1, 2}, False) == 1


def test_isr_unclean_election_only_when_allowed() -> None:
    assert ISR.choose_leader((1, 2, 3), {2, 3}, {}, {1}, False) is None
    assert ISR.choose_leader((1, 2, 3), {3, 2}, {}, {1}, True) == 2
    assert ISR.choose_leader((1, 2, 3), set(), {}, {1}, True) is None
