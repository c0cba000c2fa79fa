"""FollowerReplicaState and KIP-101/KIP-279 truncation as pure functions."""

from __future__ import annotations

import pytest

from quorumq.errors import FencedLeaderEpoch, OffsetOutOfRange
from quorumq.replication import (
    UNDEFINED_EPOCH,
    UNDEFINED_EPOCH_OFFSET,
    FollowerReplicaState,
    LeaderEpochCache,
    Truncation,
    plan_truncation,
)


def _follower(log_end_offset: int = 10, high_watermark: int = 4) -> FollowerReplicaState:
    return FollowerReplicaState.become_follower(
        broker_id=2,
        leader_id=1,
        leader_epoch=3,
        log_start_offset=0,
        log_end_offset=log_end_offset,
        high_watermark=high_watermark,
    )


def test_truncation_same_epoch_cuts_at_leader_end_offset() -> None:
    cache = LeaderEpochCache.from_entries([(0, 0), (2, 5)])
    # Leader's epoch 2 ended at 7; ours runs to our LEO (10): cut at 7.
    plan = plan_truncation(cache, (2, 7), log_end_offset=10, high_watermark=4)
    assert plan == Truncation(7, True)
    # Leader has more of epoch 2 than we do: nothing to cut.
    assert plan_truncation(cache, (2, 12), log_end_offset=10, high_watermark=4) == Truncation(
        10, True
    )


def test_truncation_leader_answers_older_epoch_we_know() -> None:
    cache = LeaderEpochCache.from_entries([(0, 0), (2, 5), (3, 8)])
    # We asked about 3, the leader never had 3: its epoch 2 ended at 6. Our epoch 2 ends at 8.
    assert plan_truncation(cache, (2, 6), log_end_offset=10, high_watermark=4) == Truncation(
        6, True
    )


def test_truncation_leader_answers_epoch_we_never_had_needs_another_round() -> None:
    cache = LeaderEpochCache.from_entries([(1, 0), (3, 5)])
    # Leader answers epoch 2 (ended at 6); we have no epoch 2: cut to the end of our epoch 1.
    assert plan_truncation(cache, (2, 6), log_end_offset=8, high_watermark=2) == Truncation(
        5, False
    )


def test_truncation_undefined_answers() -> None:
    cache = LeaderEpochCache.from_entries([(1, 0)])
    undefined = (UNDEFINED_EPOCH, UNDEFINED_EPOCH_OFFSET)
    assert plan_truncation(cache, undefined, log_end_offset=8, high_watermark=3) == Truncation(
        3, True
    )
    # OffsetForLeaderEpoch v0 style: an offset without epoch.
    assert plan_truncation(
        cache, (UNDEFINED_EPOCH, 5), log_end_offset=8, high_watermark=3
    ) == Truncation(5, True)
    # No epochs locally: Kafka truncates to the HW without asking.
    assert plan_truncation(
        LeaderEpochCache(), (4, 100), log_end_offset=8, high_watermark=3
    ) == Truncation(3, True)


def test_truncation_leader_epoch_older_than_all_we_track() -> None:
    cache = LeaderEpochCache.from_entries([(5, 20), (6, 30)])
    # Our earliest epoch is 5; the leader answers epoch 2 ending at 25. As in Kafka our cache
    # answers (2, 20) for an epoch older than all it tracks: whatever we keep of epoch 2 ends
    # at 20, so we cut there.
    assert plan_truncation(cache, (2, 25), log_end_offset=40, high_watermark=10) == Truncation(
        20, True
    )


def test_follower_on_leader_epoch_answer_applies_to_state_and_cache() -> None:
    cache = LeaderEpochCache.from_entries([(1, 0), (3, 5)])
    follower = _follower(log_end_offset=8, high_watermark=6)
    assert follower.offset_for_leader_epoch_request(cache) == 3
    assert follower.truncation_offset(cache, (2, 6)) == 5
    plan = follower.on_leader_epoch_answer(cache, (2, 6))
    assert plan == Truncation(5, False)
    assert (follower.log_end_offset, follower.high_watermark, follower.truncating) == (5, 5, True)
    assert cache.latest_epoch == 1
    assert follower.offset_for_leader_epoch_request(cache) == 1
    plan = follower.on_leader_epoch_answer(cache, (1, 4))
    assert plan == Truncation(4, True)
    assert (follower.fetch_offset, follower.high_watermark, follower.truncating) == (4, 4, False)
    assert [(e.leader_epoch, e.start_offset) for e in cache.entries] == [(1, 0)]
    assert follower.offset_for_leader_epoch_request(LeaderEpochCache()) == UNDEFINED_EPOCH


def test_follower_high_watermark_is_min_of_leader_hw_and_own_leo() -> None:
    follower = _follower(log_end_offset=10, high_watermark=4)
    assert follower.on_fetch_response(leader_high_watermark=15, log_end_offset=12) == 12
    assert follower.on_fetch_response(leader_high_watermark=11, log_end_offset=14) == 11
    with pytest.raises(OffsetOutOfRange):
        follower.on_fetch_response(leader_high_watermark=11, log_end_offset=13)


def test_follower_new_leader_restarts_truncation_and_fences_old_metadata() -> None:
    follower = _follower()
    follower.truncating = False
    assert not follower.on_new_leader(1, 3)
    assert not follower.truncating
    assert follower.on_new_leader(2, 4)
    assert (follower.leader_id, follower.leader_epoch, follower.truncating) == (2, 4, True)
    with pytest.raises(FencedLeaderEpoch):
        follower.on_new_leader(1, 3)


def test_follower_log_start_offset_moves_everything_forward() -> None:
    follower = _follower(log_end_offset=10, high_watermark=4)
    follower.on_log_start_offset(6)
    assert (follower.log_start_offset, follower.high_watermark, follower.log_end_offset) == (
        6,
        6,
        10,
    )
    follower.on_log_start_offset(20)
    assert (follower.high_watermark, follower.log_end_offset) == (20, 20)
    assert _follower(log_end_offset=3, high_watermark=9).high_watermark == 3


def test_follower_truncate_fully_and_start_at_leader_log_start() -> None:
    cache = LeaderEpochCache.from_entries([(1, 0), (2, 5)])
    follower = _follower(log_end_offset=10, high_watermark=8)
    follower.truncate_fully_and_start_at(50, cache)
    assert (follower.log_start_offset, follower.fetch_offset, follower.high_watermark) == (
        50,
        50,
        50,
    )
    assert cache.latest_epoch is None
