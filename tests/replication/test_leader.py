"""LeaderReplicaState: progress, high watermark, fencing, ISR proposals, acks=all checks."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from quorumq.errors import (
    FencedLeaderEpoch,
    NotEnoughReplicas,
    NotEnoughReplicasAfterAppend,
    NotLeaderOrFollower,
    OffsetOutOfRange,
    UnknownLeaderEpoch,
)
from quorumq.replication import (
    NO_EPOCH_CHECK,
    IsrStrategy,
    LeaderReplicaState,
    QuorumStrategy,
    ReplicaProgress,
    ReplicationStrategy,
    majority,
)


def _leader(
    strategy: ReplicationStrategy,
    *,
    replicas: tuple[int, ...] = (1, 2, 3),
    isr: tuple[int, ...] | None = None,
    log_end_offset: int = 0,
    high_watermark: int = 0,
    min_insync_replicas: int = 1,
    leader_epoch: int = 5,
) -> LeaderReplicaState:
    return LeaderReplicaState.become_leader(
        strategy=strategy,
        broker_id=1,
        leader_epoch=leader_epoch,
        replicas=replicas,
        isr=replicas if isr is None else isr,
        log_start_offset=0,
        log_end_offset=log_end_offset,
        high_watermark=high_watermark,
        now_ms=0,
        min_insync_replicas=min_insync_replicas,
    )


def test_leader_quorum_commits_on_one_follower_of_two() -> None:
    leader = _leader(QuorumStrategy())
    assert leader.on_append(10, 1).advanced is False
    result = leader.on_follower_fetch(2, 10, 5, 2)
    assert (result.high_watermark, result.advanced) == (10, True)
    # Follower 3 never fetches: nothing stalls.
    assert leader.on_append(20, 3).high_watermark == 10
    assert leader.on_follower_fetch(2, 20, 5, 4).high_watermark == 20


def test_leader_isr_commits_only_when_every_isr_member_has_it() -> None:
    leader = _leader(IsrStrategy())
    leader.on_append(10, 1)
    assert leader.on_follower_fetch(2, 10, 5, 2).high_watermark == 0
    result = leader.on_follower_fetch(3, 7, 5, 3)
    assert (result.high_watermark, result.advanced) == (7, True)


def test_leader_single_replica_commits_on_append() -> None:
    leader = _leader(QuorumStrategy(), replicas=(1,))
    assert leader.on_append(3, 0).high_watermark == 3
    isr_leader = _leader(IsrStrategy(), replicas=(1,))
    assert isr_leader.on_append(3, 0).high_watermark == 3


def test_leader_high_watermark_starts_from_follower_knowledge_clamped() -> None:
    leader = _leader(IsrStrategy(), log_end_offset=10, high_watermark=40)
    assert leader.high_watermark == 10
    assert leader.epoch_start_offset == 10


def test_leader_quorum_new_epoch_commits_predecessor_tail_with_own_record() -> None:
    leader = _leader(QuorumStrategy(), log_end_offset=10, high_watermark=4)
    leader.on_follower_fetch(2, 10, 5, 1)
    assert leader.high_watermark == 4
    assert leader.awaiting_epoch_record
    leader.on_append(11, 2)
    assert leader.on_follower_fetch(2, 11, 5, 3).high_watermark == 11
    assert not leader.awaiting_epoch_record


def test_leader_fences_fetches_from_other_epochs() -> None:
    leader = _leader(QuorumStrategy(), log_end_offset=5)
    with pytest.raises(FencedLeaderEpoch):
        leader.on_follower_fetch(2, 5, 4, 1)
    with pytest.raises(UnknownLeaderEpoch):
        leader.on_follower_fetch(2, 5, 6, 1)
    leader.on_follower_fetch(2, 5, NO_EPOCH_CHECK, 1)
    assert leader.progress[2].log_end_offset == 5


def test_leader_refuses_non_replicas_and_offsets_out_of_range() -> None:
    leader = _leader(QuorumStrategy(), log_end_offset=5)
    with pytest.raises(NotLeaderOrFollower):
        leader.on_follower_fetch(9, 0, 5, 1)
    with pytest.raises(NotLeaderOrFollower):
        leader.on_follower_fetch(1, 0, 5, 1)  # the leader does not fetch from itself
    with pytest.raises(OffsetOutOfRange):
        leader.on_follower_fetch(2, 6, 5, 1)
    leader.on_log_start_offset(3)
    with pytest.raises(OffsetOutOfRange):
        leader.on_follower_fetch(2, 2, 5, 1)
    assert leader.high_watermark == 3  # log start moved past the HW: HW follows it
    with pytest.raises(OffsetOutOfRange):
        leader.on_append(4, 1)


def test_leader_caught_up_time_follows_kafka_rule() -> None:
    leader = _leader(IsrStrategy(), log_end_offset=10)
    leader.on_follower_fetch(2, 10, 5, 100)
    assert leader.progress[2].last_caught_up_ms == 100
    leader.on_append(20, 150)
    # Fetch at 10 while leader is at 20: reached the LEO of the previous fetch (10), so caught up
    # as of that fetch (100), not now.
    leader.on_follower_fetch(2, 10, 5, 200)
    assert leader.progress[2].last_caught_up_ms == 100
    leader.on_append(30, 250)
    # Now at 20, which was the leader's LEO at the fetch of t=200.
    leader.on_follower_fetch(2, 20, 5, 300)
    assert leader.progress[2].last_caught_up_ms == 200


def test_leader_isr_shrink_is_proposed_then_committed_and_advances_hw() -> None:
    leader = _leader(IsrStrategy(), min_insync_replicas=2)
    leader.on_append(10, 0)
    leader.on_follower_fetch(2, 10, 5, 1_000)
    assert leader.high_watermark == 0  # follower 3 silent
    assert leader.tick(20_000) is None
    change = leader.tick(30_001)
    assert change is not None and not change.advisory
    assert (change.isr, change.removed, change.added) == ({1, 2}, {3}, frozenset())
    assert (change.leader_epoch, change.partition_epoch) == (5, 0)
    assert leader.tick(30_002) is None  # one proposal in flight
    assert leader.high_watermark == 0  # not applied before the controller commits
    update = leader.on_isr_committed({1, 2}, 1)
    assert (update.high_watermark, update.advanced) == (10, True)
    assert leader.partition_epoch == 1
    leader.acks_all_check()
    assert leader.acks_all_completed(9)
    assert not leader.acks_all_completed(10)


@pytest.mark.parametrize("strategy", [QuorumStrategy(), IsrStrategy()], ids=["quorum", "isr"])
def test_a_settled_leader_skips_the_isr_check_until_something_moves(
    strategy: ReplicationStrategy,
) -> None:
    """Every follower at the leader's LEO and every replica in the ISR: no time can change the
    ISR (a follower at the LEO is caught up however long ago it fetched), so the tick skips
    the strategy's check, which brokers run on every partition they lead four times a second.
    An append ends that, and a follower that then stays behind is dropped as before."""
    calls = []

    class Counting:
        name = strategy.name
        isr_is_advisory = strategy.isr_is_advisory

        def __getattr__(self, attribute: str) -> object:
            return getattr(strategy, attribute)

        def isr_changes(self, *args: object, **kwargs: object) -> object:
            calls.append(1)
            return strategy.isr_changes(*args, **kwargs)  # type: ignore[arg-type]

    leader = _leader(Counting())  # type: ignore[arg-type]
    leader.on_append(10, 0)
    leader.on_follower_fetch(2, 10, 5, 1)
    leader.on_follower_fetch(3, 10, 5, 1)
    calls.clear()
    assert leader.tick(1_000_000) is None  # both silent for ages, but at the LEO
    assert calls == []
    leader.on_follower_fetch(3, 10, 5, 1_000_000)
    leader.on_append(20, 1_000_001)
    leader.on_follower_fetch(2, 20, 5, 1_000_002)
    assert leader.tick(1_000_003) is None
    assert calls == [1]
    change = leader.tick(1_040_000)  # follower 3 behind for longer than the lag time
    assert change is not None and change.removed == {3}


def test_leader_isr_expansion_on_fetch_counts_pending_member_for_hw() -> None:
    leader = _leader(IsrStrategy(), isr=(1, 2))
    leader.on_append(10, 0)
    leader.on_follower_fetch(2, 10, 5, 1)
    assert leader.high_watermark == 10
    result = leader.on_follower_fetch(3, 10, 5, 2)
    assert result.isr_change is not None and result.isr_change.added == {3}
    assert leader.maximal_isr == {1, 2, 3}
    leader.on_append(20, 3)
    leader.on_follower_fetch(2, 20, 5, 4)
    # Follower 3 is about to join: the HW waits for it as Kafka's maximal ISR does.
    assert leader.high_watermark == 10
    leader.on_isr_rejected()
    assert leader.maximal_isr == {1, 2}


def test_leader_isr_min_insync_refuses_and_fails_after_append() -> None:
    leader = _leader(IsrStrategy(), isr=(1,), min_insync_replicas=2)
    with pytest.raises(NotEnoughReplicas):
        leader.acks_all_check()
    leader.on_append(10, 0)
    with pytest.raises(NotEnoughReplicasAfterAppend):
        leader.acks_all_completed(5)
    with pytest.raises(NotLeaderOrFollower):
        leader.on_isr_committed({2, 3}, 2)


def test_leader_quorum_isr_is_advisory_and_gates_acks_all_by_majority() -> None:
    leader = _leader(QuorumStrategy())
    leader.on_append(10, 0)
    leader.on_follower_fetch(2, 10, 5, 1)
    leader.acks_all_check()
    change = leader.tick(40_000)
    assert change is not None and change.advisory and change.isr == {1, 2}
    assert leader.isr == {1, 2}  # applied at once
    leader.acks_all_check()
    leader.on_append(20, 40_001)  # follower 2 stops fetching and falls behind
    change = leader.tick(80_000)
    assert change is not None and change.isr == {1}
    with pytest.raises(NotEnoughReplicas):
        leader.acks_all_check()
    result = leader.on_follower_fetch(3, 20, 5, 80_001)
    assert result.isr_change is not None and result.isr_change.isr == {1, 3}
    leader.acks_all_check()


_FETCH = st.tuples(
    st.sampled_from(["append", "fetch", "tick"]),
    st.integers(2, 5),  # follower
    st.integers(0, 30),  # size or offset draw
    st.integers(0, 20_000),  # time step
)


@pytest.mark.parametrize("strategy", [QuorumStrategy(), IsrStrategy()], ids=["quorum", "isr"])
@settings(max_examples=120, deadline=None)
@given(events=st.lists(_FETCH, max_size=60), start_leo=st.integers(0, 20))
def test_leader_high_watermark_never_moves_back_and_respects_rule(
    strategy: ReplicationStrategy, events: list[tuple[str, int, int, int]], start_leo: int
) -> None:
    replicas = (1, 2, 3, 4, 5)
    leader = LeaderReplicaState.become_leader(
        strategy=strategy,
        broker_id=1,
        leader_epoch=1,
        replicas=replicas,
        isr=replicas,
        log_start_offset=0,
        log_end_offset=start_leo,
        high_watermark=0,
        now_ms=0,
    )
    now = 0
    previous_hw = leader.high_watermark
    for kind, follower, amount, step in events:
        now += step
        if kind == "append":
            leader.on_append(leader.log_end_offset + amount, now)
        elif kind == "fetch":
            # Any offset the follower could have, including going back after a truncation.
            leader.on_follower_fetch(follower, min(amount, leader.log_end_offset), 1, now)
        else:
            change = leader.tick(now)
            if change is not None and not change.advisory:
                leader.on_isr_committed(change.isr, leader.partition_epoch + 1)
        hw = leader.high_watermark
        assert hw >= previous_hw
        assert leader.log_start_offset <= hw <= leader.log_end_offset
        previous_hw = hw
    # What the rule promises about the final HW, for the offsets counted now.
    leos = {1: leader.log_end_offset} | {b: p.log_end_offset for b, p in leader.progress.items()}
    candidate = strategy.high_watermark(
        leader.log_end_offset, leader.progress, leader.maximal_isr, leader.epoch_start_offset
    )
    if candidate == leader.high_watermark and candidate > start_leo:
        if isinstance(strategy, QuorumStrategy):
            assert sum(leo >= candidate for leo in leos.values()) >= majority(len(replicas))
        else:
            assert all(leos[b] >= candidate for b in leader.maximal_isr)


def test_leader_caught_up_refetch_only_moves_the_clocks() -> None:
    """A caught-up follower fetching again where it stood (what every idle partition of a
    fetch session does on every fetch) takes a shortcut; it must give the full rule's answer."""
    leader = _leader(IsrStrategy(), log_end_offset=10)
    leader.on_follower_fetch(2, 10, 5, 100)
    leader.on_follower_fetch(3, 10, 5, 100)
    assert leader.high_watermark == 10
    result = leader.on_follower_fetch(2, 10, 5, 250)
    assert (result.high_watermark, result.advanced, result.isr_change) == (10, False, None)
    assert leader.progress[2] == ReplicaProgress(
        broker_id=2,
        log_end_offset=10,
        last_fetch_ms=250,
        last_caught_up_ms=250,
        last_fetch_leader_log_end_offset=10,
    )
    # After an append the same fetch is no longer caught up "now" (the full rule applies).
    leader.on_append(20, 300)
    leader.on_follower_fetch(2, 10, 5, 400)
    assert leader.progress[2].last_caught_up_ms == 250


def test_leader_caught_up_refetch_outside_the_isr_still_proposes_to_rejoin() -> None:
    leader = _leader(IsrStrategy(), isr=(1, 2), log_end_offset=10)
    leader.on_follower_fetch(2, 10, 5, 100)
    first = leader.on_follower_fetch(3, 10, 5, 100)
    assert first.isr_change is not None and 3 in first.isr_change.isr
    leader.on_isr_rejected()
    again = leader.on_follower_fetch(3, 10, 5, 200)  # same position, caught up: still outside
    assert again.isr_change is not None and 3 in again.isr_change.isr
