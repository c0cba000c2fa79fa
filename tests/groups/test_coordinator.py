"""GroupCoordinator transitions, one behaviour per test, driven through a fake shell."""

from __future__ import annotations

import random

import pytest

from quorumq.errors import (
    CoordinatorLoadInProgress,
    ErrorCode,
    FencedInstanceId,
    GroupIdNotFound,
    IllegalGeneration,
    InconsistentGroupProtocol,
    InvalidGroupId,
    InvalidSessionTimeout,
    NonEmptyGroup,
    NotCoordinator,
    RebalanceInProgress,
    UnknownMemberId,
)
from quorumq.groups import (
    DeleteGroupResult,
    GroupConfig,
    GroupCoordinator,
    GroupState,
    GroupStateLoader,
    JoinGroupResult,
    LeaveGroupResult,
    MemberIdentity,
    OffsetAndMetadata,
    OffsetCommitResult,
    OffsetDeleteResult,
    TopicPartition,
)
from tests.groups.conftest import Shell

TP0 = TopicPartition("t", 0)
TP1 = TopicPartition("t", 1)


def _stable_pair(shell: Shell) -> tuple[JoinGroupResult, JoinGroupResult]:
    """Two members, generation 2, Stable, leader assigns t-0 to itself and t-1 to the other."""
    first = shell.joined(shell.join(client_id="a"))
    shell.synced(shell.sync(first, {first.member_id: b"a0"}))
    h_second = shell.join(client_id="b")
    with pytest.raises(RebalanceInProgress):
        shell.coordinator.heartbeat(
            group_id="g", member_id=first.member_id, generation_id=1, now_ms=0
        )
    h_first = shell.join(member_id=first.member_id, client_id="a")
    leader, follower = shell.joined(h_first), shell.joined(h_second)
    h_follower_sync = shell.sync(follower)
    assert h_follower_sync not in shell.responses  # waits for the leader
    shell.sync(leader, {leader.member_id: b"t-0", follower.member_id: b"t-1"})
    assert shell.synced(h_follower_sync).assignment == b"t-1"
    return leader, follower


# --- JoinGroup --------------------------------------------------------------------------------


def test_first_member_leads_generation_one(shell: Shell) -> None:
    response = shell.joined(shell.join(client_id="app"))
    assert response.error is ErrorCode.NONE
    assert response.generation_id == 1
    assert response.leader == response.member_id
    assert response.member_id.startswith("app-")
    assert response.protocol_name == "range"
    assert [m.member_id for m in response.members] == [response.member_id]
    assert response.members[0].metadata == b"sub-range"
    assert shell.coordinator.describe_group("g").state is GroupState.COMPLETING_REBALANCE


def test_member_ids_come_from_the_injected_random() -> None:
    ids = []
    for _ in range(2):
        shell = Shell(GroupCoordinator(GroupConfig(initial_rebalance_delay_ms=0), random.Random(9)))
        ids.append(shell.joined(shell.join()).member_id)
    assert ids[0] == ids[1]


def test_join_v4_without_member_id_gets_member_id_required(shell: Shell) -> None:
    handle = shell.join(require_known=True)
    response = shell.joined(handle)
    assert response.error is ErrorCode.MEMBER_ID_REQUIRED
    assert response.member_id.startswith("client-")
    assert shell.coordinator.describe_group("g").members == ()
    rejoined = shell.joined(shell.join(member_id=response.member_id, require_known=True))
    assert rejoined.error is ErrorCode.NONE
    assert rejoined.member_id == response.member_id
    assert rejoined.generation_id == 1


def test_pending_member_id_expires_after_session_timeout(shell: Shell) -> None:
    member_id = shell.joined(shell.join(require_known=True)).member_id
    shell.tick(10_001)
    with pytest.raises(UnknownMemberId):
        shell.join(member_id=member_id)


def test_pending_member_holds_the_rebalance_until_it_joins(shell: Shell) -> None:
    leader, _ = _stable_pair(shell)
    pending_id = shell.joined(shell.join(client_id="c", require_known=True)).member_id
    h_leader = shell.join(member_id=leader.member_id, client_id="a")
    assert h_leader not in shell.responses  # rebalance waits for the other member and c
    assert pending_id


def test_sync_completes_only_after_the_assignment_is_written() -> None:
    shell = Shell(auto_ack=False)
    leader = shell.joined(shell.join())
    handle = shell.sync(leader, {leader.member_id: b"everything"})
    assert handle not in shell.responses
    assert len(shell.unacked) == 1
    _, _key, value = shell.log[-1]
    assert value is not None
    shell.ack(shell.unacked.pop())
    assert shell.synced(handle).assignment == b"everything"
    assert shell.coordinator.describe_group("g").state is GroupState.STABLE


def test_failed_assignment_write_answers_sync_with_mapped_error_and_rebalances() -> None:
    shell = Shell(auto_ack=False)
    leader = shell.joined(shell.join())
    handle = shell.sync(leader, {leader.member_id: b"x"})
    shell.ack(shell.unacked.pop(), ErrorCode.NOT_LEADER_OR_FOLLOWER)
    assert shell.synced(handle).error is ErrorCode.NOT_COORDINATOR
    assert shell.coordinator.describe_group("g").state is GroupState.PREPARING_REBALANCE


def test_second_member_triggers_rebalance_and_keeps_the_first_leader(shell: Shell) -> None:
    leader, follower = _stable_pair(shell)
    assert leader.generation_id == follower.generation_id == 2
    assert leader.leader == follower.leader == leader.member_id
    assert {m.member_id for m in leader.members} == {leader.member_id, follower.member_id}
    assert follower.members == ()
    described = shell.coordinator.describe_group("g")
    assert described.state is GroupState.STABLE
    assert {m.member_id: m.assignment for m in described.members} == {
        leader.member_id: b"t-0",
        follower.member_id: b"t-1",
    }


def test_stable_follower_rejoining_with_same_metadata_gets_current_generation(
    shell: Shell,
) -> None:
    _, follower = _stable_pair(shell)
    again = shell.joined(shell.join(member_id=follower.member_id, client_id="b"))
    assert again.generation_id == 2
    assert shell.coordinator.describe_group("g").state is GroupState.STABLE


def test_stable_leader_rejoining_starts_a_rebalance(shell: Shell) -> None:
    leader, follower = _stable_pair(shell)
    handle = shell.join(member_id=leader.member_id, client_id="a")
    assert handle not in shell.responses
    with pytest.raises(RebalanceInProgress):
        shell.coordinator.heartbeat(
            group_id="g", member_id=follower.member_id, generation_id=2, now_ms=0
        )
    shell.join(member_id=follower.member_id, client_id="b")
    assert shell.joined(handle).generation_id == 3


def test_new_metadata_starts_a_rebalance(shell: Shell) -> None:
    _, follower = _stable_pair(shell)
    handle = shell.join(member_id=follower.member_id, protocols=[("range", b"new")])
    assert handle not in shell.responses
    assert shell.coordinator.describe_group("g").state is GroupState.PREPARING_REBALANCE


def test_protocol_chosen_by_votes_among_common_protocols(shell: Shell) -> None:
    shell.coordinator = GroupCoordinator(GroupConfig(initial_rebalance_delay_ms=100))
    for p in range(50):
        shell.coordinator.load_partition(p)
    handles = [
        shell.join(client_id="a", protocols=[("roundrobin", b""), ("range", b""), ("x", b"")]),
        shell.join(client_id="b", protocols=[("range", b""), ("roundrobin", b"")]),
        shell.join(client_id="c", protocols=[("roundrobin", b""), ("range", b"")]),
    ]
    shell.tick(100)
    shell.tick(100)  # members arrived during the initial delay: it ran once more
    assert {shell.joined(h).protocol_name for h in handles} == {"roundrobin"}


def test_member_without_a_common_protocol_is_refused(shell: Shell) -> None:
    shell.join(protocols=[("range", b"")])
    with pytest.raises(InconsistentGroupProtocol):
        shell.join(protocols=[("sticky", b"")])
    with pytest.raises(InconsistentGroupProtocol):
        shell.join(group="other", protocols=[])


def test_join_with_unknown_member_id_is_refused(shell: Shell) -> None:
    with pytest.raises(UnknownMemberId):
        shell.join(member_id="ghost")
    shell.join()
    with pytest.raises(UnknownMemberId):
        shell.join(member_id="ghost")


@pytest.mark.parametrize("timeout_ms", [5_999, 1_800_001])
def test_session_timeout_outside_the_broker_range_is_refused(shell: Shell, timeout_ms: int) -> None:
    with pytest.raises(InvalidSessionTimeout):
        shell.join(session_timeout_ms=timeout_ms)


def test_empty_group_id_is_refused(shell: Shell) -> None:
    with pytest.raises(InvalidGroupId):
        shell.join(group="")


def test_initial_rebalance_delay_gathers_members_into_one_generation() -> None:
    shell = Shell(GroupCoordinator(GroupConfig(initial_rebalance_delay_ms=3_000)))
    first = shell.join(client_id="a")
    shell.tick(2_000)
    second = shell.join(client_id="b")
    shell.tick(1_000)  # the delay passed, but a member arrived during it: wait again
    assert first not in shell.responses
    shell.tick(2_999)
    assert first not in shell.responses
    shell.tick(1)
    assert shell.joined(first).generation_id == shell.joined(second).generation_id == 1
    assert len(shell.joined(first).members) == 2


def test_initial_delay_never_exceeds_the_rebalance_timeout() -> None:
    shell = Shell(GroupCoordinator(GroupConfig(initial_rebalance_delay_ms=3_000)))
    handles = [shell.join(client_id="a", rebalance_timeout_ms=7_000)]
    for _ in range(10):
        shell.tick(3_000)
        if handles[0] in shell.responses:
            break
        handles.append(shell.join(client_id="more", rebalance_timeout_ms=7_000))
    assert shell.now_ms <= 9_000
    assert all(h in shell.responses for h in handles)


def test_rebalance_timeout_drops_members_that_did_not_rejoin(shell: Shell) -> None:
    leader, follower = _stable_pair(shell)
    handle = shell.join(member_id=leader.member_id, client_id="a")
    for _ in range(3):  # the follower's heartbeats keep it in the group, but it never rejoins
        shell.tick(9_000)
        with pytest.raises(RebalanceInProgress):
            shell.coordinator.heartbeat(
                group_id="g", member_id=follower.member_id, generation_id=2, now_ms=shell.now_ms
            )
    shell.tick(2_999)
    assert handle not in shell.responses
    shell.tick(1)
    response = shell.joined(handle)
    assert response.generation_id == 3
    assert [m.member_id for m in response.members] == [leader.member_id]
    with pytest.raises(UnknownMemberId):
        shell.coordinator.heartbeat(
            group_id="g", member_id=follower.member_id, generation_id=2, now_ms=shell.now_ms
        )


def test_leader_that_does_not_rejoin_is_replaced(shell: Shell) -> None:
    _leader, follower = _stable_pair(shell)
    handle = shell.join(member_id=follower.member_id, client_id="b", protocols=[("range", b"")])
    assert handle not in shell.responses  # new metadata: a rebalance the leader never joins
    shell.tick(30_000)  # past the leader's session too; the follower waits in JoinGroup
    response = shell.joined(handle)
    assert response.leader == follower.member_id
    assert [m.member_id for m in response.members] == [follower.member_id]


def test_join_v0_uses_the_session_timeout_as_rebalance_timeout(shell: Shell) -> None:
    first = shell.joined(shell.join(client_id="a", rebalance_timeout_ms=-1))
    shell.sync(first, {first.member_id: b"x"})
    handle = shell.join(client_id="b", rebalance_timeout_ms=-1)
    shell.tick(0)
    assert handle not in shell.responses  # waits for "a" up to the session timeout, not -1 ms
    shell.join(member_id=first.member_id, client_id="a", rebalance_timeout_ms=-1)
    assert shell.joined(handle).generation_id == 2


def test_second_join_supersedes_the_first(shell: Shell) -> None:
    leader, follower = _stable_pair(shell)
    first = shell.join(member_id=leader.member_id, client_id="a")
    second = shell.join(member_id=leader.member_id, client_id="a")
    assert shell.joined(first).error is ErrorCode.REBALANCE_IN_PROGRESS
    shell.join(member_id=follower.member_id, client_id="b")
    assert shell.joined(second).generation_id == 3


# --- SyncGroup --------------------------------------------------------------------------------


def test_sync_errors(shell: Shell) -> None:
    leader, follower = _stable_pair(shell)
    coordinator = shell.coordinator
    with pytest.raises(UnknownMemberId):
        coordinator.sync_group(
            group_id="g", generation_id=2, member_id="x", assignments={}, now_ms=0
        )
    with pytest.raises(UnknownMemberId):
        coordinator.sync_group(
            group_id="nope", generation_id=2, member_id="x", assignments={}, now_ms=0
        )
    with pytest.raises(IllegalGeneration):
        coordinator.sync_group(
            group_id="g", generation_id=1, member_id=leader.member_id, assignments={}, now_ms=0
        )
    with pytest.raises(InconsistentGroupProtocol):
        coordinator.sync_group(
            group_id="g",
            generation_id=2,
            member_id=leader.member_id,
            assignments={},
            protocol_name="roundrobin",
            now_ms=0,
        )
    shell.join(member_id=leader.member_id, client_id="a")
    with pytest.raises(RebalanceInProgress):
        coordinator.sync_group(
            group_id="g", generation_id=2, member_id=follower.member_id, assignments={}, now_ms=0
        )


def test_stable_sync_returns_the_stored_assignment_at_once(shell: Shell) -> None:
    _, follower = _stable_pair(shell)
    assert shell.synced(shell.sync(follower)).assignment == b"t-1"


def test_member_left_out_by_the_leader_gets_an_empty_assignment(shell: Shell) -> None:
    first = shell.joined(shell.join(client_id="a"))
    shell.sync(first, {first.member_id: b"x"})
    h_b = shell.join(client_id="b")
    h_a = shell.join(member_id=first.member_id, client_id="a")
    b = shell.joined(h_b)
    shell.sync(shell.joined(h_a), {first.member_id: b"all"})
    assert shell.synced(shell.sync(b)).assignment == b""


def test_member_that_joins_but_never_syncs_is_removed_after_the_rebalance_timeout(
    shell: Shell,
) -> None:
    first = shell.joined(shell.join(client_id="a"))
    shell.sync(first, {first.member_id: b"x"})
    h_b = shell.join(client_id="b")
    leader = shell.joined(shell.join(member_id=first.member_id, client_id="a"))
    lazy = shell.joined(h_b)
    shell.sync(leader, {leader.member_id: b"t-0", lazy.member_id: b"t-1"})
    for _ in range(3):  # both heartbeat; only the leader ever synced
        shell.tick(9_000)
        for member in (leader, lazy):
            shell.coordinator.heartbeat(
                group_id="g", member_id=member.member_id, generation_id=2, now_ms=shell.now_ms
            )
    shell.tick(3_000)  # 30 s (the rebalance timeout) after the join completed
    described = shell.coordinator.describe_group("g")
    assert described.state is GroupState.PREPARING_REBALANCE
    assert [m.member_id for m in described.members] == [leader.member_id]


def test_rebalance_during_completing_answers_waiting_syncs(shell: Shell) -> None:
    first = shell.joined(shell.join(client_id="a"))
    shell.sync(first, {first.member_id: b"x"})
    h_b = shell.join(client_id="b")
    shell.join(member_id=first.member_id, client_id="a")
    h_sync = shell.sync(shell.joined(h_b))
    shell.join(client_id="c")  # a third member arrives before the leader synced
    assert shell.synced(h_sync).error is ErrorCode.REBALANCE_IN_PROGRESS


# --- Heartbeat --------------------------------------------------------------------------------


def test_heartbeat_errors(shell: Shell) -> None:
    leader, _ = _stable_pair(shell)
    coordinator = shell.coordinator
    coordinator.heartbeat(group_id="g", member_id=leader.member_id, generation_id=2, now_ms=0)
    with pytest.raises(UnknownMemberId):
        coordinator.heartbeat(group_id="g", member_id="x", generation_id=2, now_ms=0)
    with pytest.raises(UnknownMemberId):
        coordinator.heartbeat(group_id="none", member_id="x", generation_id=2, now_ms=0)
    with pytest.raises(IllegalGeneration):
        coordinator.heartbeat(group_id="g", member_id=leader.member_id, generation_id=1, now_ms=0)


def test_heartbeats_keep_a_member_past_its_session_timeout(shell: Shell) -> None:
    leader, follower = _stable_pair(shell)
    for _ in range(5):
        shell.tick(9_000)
        for member in (leader, follower):
            shell.coordinator.heartbeat(
                group_id="g",
                member_id=member.member_id,
                generation_id=2,
                now_ms=shell.now_ms,
            )
    assert shell.coordinator.describe_group("g").state is GroupState.STABLE


def test_silent_member_expires_and_the_rest_rebalance(shell: Shell) -> None:
    leader, _follower = _stable_pair(shell)
    shell.tick(9_000)
    shell.coordinator.heartbeat(
        group_id="g", member_id=leader.member_id, generation_id=2, now_ms=shell.now_ms
    )
    shell.tick(1_000)  # follower's session (10 s) passed
    described = shell.coordinator.describe_group("g")
    assert described.state is GroupState.PREPARING_REBALANCE
    assert [m.member_id for m in described.members] == [leader.member_id]
    with pytest.raises(RebalanceInProgress):
        shell.coordinator.heartbeat(
            group_id="g", member_id=leader.member_id, generation_id=2, now_ms=shell.now_ms
        )
    response = shell.joined(shell.join(member_id=leader.member_id, client_id="a"))
    assert response.generation_id == 3


def test_last_member_expiring_empties_the_group_and_writes_it(shell: Shell) -> None:
    shell.joined(shell.join())
    shell.tick(10_000)  # a joined member waiting for nothing is not kept alive
    described = shell.coordinator.describe_group("g")
    assert described.state is GroupState.EMPTY
    assert described.generation_id == 2
    assert described.members == ()
    assert shell.log, "the empty generation is written to __consumer_offsets"


# --- LeaveGroup -------------------------------------------------------------------------------


def test_leave_rebalances_the_rest(shell: Shell) -> None:
    leader, follower = _stable_pair(shell)
    step = shell.run(
        shell.coordinator.leave_group(
            group_id="g", members=[MemberIdentity(follower.member_id)], now_ms=0
        )
    )
    response = step.result
    assert isinstance(response, LeaveGroupResult)
    assert response.members[0].error is ErrorCode.NONE
    assert shell.joined(shell.join(member_id=leader.member_id, client_id="a")).generation_id == 3


def test_leave_batch_reports_per_member_errors(shell: Shell) -> None:
    leader, follower = _stable_pair(shell)
    step = shell.run(
        shell.coordinator.leave_group(
            group_id="g",
            members=[MemberIdentity("ghost"), MemberIdentity(leader.member_id)],
            now_ms=0,
        )
    )
    response = step.result
    assert isinstance(response, LeaveGroupResult)
    assert [m.error for m in response.members] == [ErrorCode.UNKNOWN_MEMBER_ID, ErrorCode.NONE]
    # The follower is the only one left, and leads the next generation.
    assert shell.joined(shell.join(member_id=follower.member_id, client_id="b")).leader == (
        follower.member_id
    )


def test_leave_of_the_last_member_empties_the_group(shell: Shell) -> None:
    member = shell.joined(shell.join())
    shell.run(
        shell.coordinator.leave_group(
            group_id="g", members=[MemberIdentity(member.member_id)], now_ms=0
        )
    )
    assert shell.coordinator.describe_group("g").state is GroupState.EMPTY


def test_leave_answers_the_waiting_join_of_the_leaver(shell: Shell) -> None:
    _leader, follower = _stable_pair(shell)
    handle = shell.join(member_id=follower.member_id, client_id="c", protocols=[("range", b"")])
    assert handle not in shell.responses  # waits for the leader to rejoin
    shell.run(
        shell.coordinator.leave_group(
            group_id="g", members=[MemberIdentity(follower.member_id)], now_ms=0
        )
    )
    assert shell.joined(handle).error is ErrorCode.UNKNOWN_MEMBER_ID


# --- static membership ------------------------------------------------------------------------


def test_static_member_restart_takes_its_place_without_a_rebalance(shell: Shell) -> None:
    old = shell.joined(shell.join(client_id="s", instance_id="host-1"))
    shell.sync(old, {old.member_id: b"p"})
    log_before = len(shell.log)
    new = shell.joined(shell.join(client_id="s", instance_id="host-1"))
    assert new.member_id != old.member_id
    assert new.generation_id == 1  # no rebalance
    assert new.leader == old.member_id  # the previous id: the restarted leader assigns nothing
    assert len(shell.log) == log_before + 1  # the new member id is written for a successor
    assert shell.synced(shell.sync(new)).assignment == b"p"
    shell.coordinator.heartbeat(
        group_id="g", member_id=new.member_id, generation_id=1, group_instance_id="host-1", now_ms=0
    )
    with pytest.raises(FencedInstanceId):
        shell.coordinator.heartbeat(
            group_id="g",
            member_id=old.member_id,
            generation_id=1,
            group_instance_id="host-1",
            now_ms=0,
        )
    step = shell.run(
        shell.coordinator.leave_group(
            group_id="g", members=[MemberIdentity(old.member_id, "host-1")], now_ms=0
        )
    )
    assert isinstance(step.result, LeaveGroupResult)
    assert step.result.members[0].error is ErrorCode.FENCED_INSTANCE_ID


def test_static_member_restart_with_new_metadata_rebalances(shell: Shell) -> None:
    old = shell.joined(shell.join(client_id="s", instance_id="host-1"))
    shell.sync(old, {old.member_id: b"p"})
    new = shell.joined(
        shell.join(client_id="s", instance_id="host-1", protocols=[("range", b"other")])
    )
    assert new.generation_id == 2
    assert new.leader == new.member_id


def test_static_member_that_stops_is_kept_through_a_rebalance_until_its_session_ends(
    shell: Shell,
) -> None:
    static = shell.joined(shell.join(client_id="s", instance_id="host-1"))
    shell.sync(static, {static.member_id: b"p"})
    handle = shell.join(client_id="d")  # a dynamic member arrives; the static one stays silent
    shell.tick(9_999)
    assert handle not in shell.responses
    shell.tick(1)  # the static member's session expired: the rebalance completes without it
    response = shell.joined(handle)
    assert [m.member_id for m in response.members] == [response.member_id]


def test_static_member_leaves_by_instance_id(shell: Shell) -> None:
    static = shell.joined(shell.join(client_id="s", instance_id="host-1"))
    step = shell.run(
        shell.coordinator.leave_group(
            group_id="g", members=[MemberIdentity("", "host-1")], now_ms=0
        )
    )
    assert isinstance(step.result, LeaveGroupResult)
    assert step.result.members[0].error is ErrorCode.NONE
    with pytest.raises(UnknownMemberId):
        shell.join(member_id=static.member_id, instance_id="host-1")


# --- offsets ----------------------------------------------------------------------------------


def _commit(
    shell: Shell,
    member_id: str,
    generation_id: int,
    offsets: dict[TopicPartition, int],
    group: str = "g",
) -> int:
    step = shell.run(
        shell.coordinator.commit_offsets(
            group_id=group,
            member_id=member_id,
            generation_id=generation_id,
            offsets={tp: OffsetAndMetadata(o, "meta") for tp, o in offsets.items()},
            now_ms=shell.now_ms,
        )
    )
    assert step.handle is not None
    return step.handle


def _committed(shell: Shell, handle: int) -> OffsetCommitResult:
    response = shell.responses[handle]
    assert isinstance(response, OffsetCommitResult)
    return response


def test_standalone_commit_to_unknown_group_is_allowed(shell: Shell) -> None:
    handle = _commit(shell, "", -1, {TP0: 42}, group="standalone")
    assert _committed(shell, handle).errors == {TP0: ErrorCode.NONE}
    fetched = shell.coordinator.fetch_offsets(group_id="standalone", partitions=[TP0, TP1])
    assert fetched[TP0] is not None and fetched[TP0].offset == 42
    assert fetched[TP0].metadata == "meta"
    assert fetched[TP1] is None


def test_commit_to_unknown_group_with_a_generation_is_illegal(shell: Shell) -> None:
    with pytest.raises(IllegalGeneration):
        _commit(shell, "m", 3, {TP0: 1}, group="nope")


def test_member_commits_in_its_generation(shell: Shell) -> None:
    _leader, follower = _stable_pair(shell)
    handle = _commit(shell, follower.member_id, 2, {TP1: 7})
    assert _committed(shell, handle).errors == {TP1: ErrorCode.NONE}
    # Kafka lets a member rewind its committed offset.
    _commit(shell, follower.member_id, 2, {TP1: 3})
    fetched = shell.coordinator.fetch_offsets(group_id="g")
    assert fetched[TP1] is not None and fetched[TP1].offset == 3


def test_commits_with_stale_generation_or_unknown_member_fail_and_the_group_recovers(
    shell: Shell,
) -> None:
    _leader, follower = _stable_pair(shell)
    with pytest.raises(IllegalGeneration):
        _commit(shell, follower.member_id, 1, {TP1: 7})
    with pytest.raises(UnknownMemberId):
        _commit(shell, "intruder", 2, {TP1: 7})
    with pytest.raises(UnknownMemberId):
        _commit(shell, "", -1, {TP1: 7})  # a standalone commit to a live group
    assert shell.coordinator.fetch_offsets(group_id="g") == {}
    handle = _commit(shell, follower.member_id, 2, {TP1: 8})
    assert _committed(shell, handle).errors == {TP1: ErrorCode.NONE}
    assert shell.coordinator.describe_group("g").state is GroupState.STABLE


def test_commit_during_rebalance(shell: Shell) -> None:
    leader, follower = _stable_pair(shell)
    shell.join(member_id=leader.member_id, client_id="a")  # PreparingRebalance
    handle = _commit(shell, follower.member_id, 2, {TP1: 5})
    assert _committed(shell, handle).errors == {TP1: ErrorCode.NONE}
    h = shell.join(member_id=follower.member_id, client_id="b")  # CompletingRebalance
    with pytest.raises(RebalanceInProgress):
        _commit(shell, follower.member_id, 3, {TP1: 6})
    assert shell.joined(h).generation_id == 3


def test_commit_is_visible_only_after_it_is_written() -> None:
    shell = Shell(auto_ack=False)
    handle = _commit(shell, "", -1, {TP0: 5})
    assert handle not in shell.responses
    assert shell.coordinator.fetch_offsets(group_id="g") == {}
    shell.ack(shell.unacked.pop())
    assert _committed(shell, handle).errors == {TP0: ErrorCode.NONE}
    assert shell.coordinator.fetch_offsets(group_id="g")[TP0] is not None


@pytest.mark.parametrize(
    ("append_error", "expected"),
    [
        (ErrorCode.NOT_LEADER_OR_FOLLOWER, ErrorCode.NOT_COORDINATOR),
        (ErrorCode.NOT_ENOUGH_REPLICAS, ErrorCode.COORDINATOR_NOT_AVAILABLE),
        (ErrorCode.MESSAGE_TOO_LARGE, ErrorCode.INVALID_COMMIT_OFFSET_SIZE),
    ],
)
def test_failed_commit_write_maps_the_error_and_stores_nothing(
    append_error: ErrorCode, expected: ErrorCode
) -> None:
    shell = Shell(auto_ack=False)
    handle = _commit(shell, "", -1, {TP0: 5})
    shell.ack(shell.unacked.pop(), append_error)
    assert _committed(shell, handle).errors == {TP0: expected}
    assert shell.coordinator.fetch_offsets(group_id="g") == {}


def test_too_large_metadata_is_refused_per_partition(shell: Shell) -> None:
    step = shell.run(
        shell.coordinator.commit_offsets(
            group_id="g",
            member_id="",
            generation_id=-1,
            offsets={TP0: OffsetAndMetadata(1, "x" * 4097), TP1: OffsetAndMetadata(2)},
            now_ms=0,
        )
    )
    assert step.handle is not None
    assert _committed(shell, step.handle).errors == {
        TP0: ErrorCode.OFFSET_METADATA_TOO_LARGE,
        TP1: ErrorCode.NONE,
    }


def test_offsets_of_an_empty_group_expire_after_retention() -> None:
    config = GroupConfig(
        initial_rebalance_delay_ms=0,
        offsets_retention_ms=60_000,
        offsets_retention_check_interval_ms=1_000,
    )
    shell = Shell(GroupCoordinator(config))
    shell.tick()
    _commit(shell, "", -1, {TP0: 5})
    shell.tick(59_000)
    assert shell.coordinator.fetch_offsets(group_id="g") != {}
    shell.tick(1_000)
    assert shell.coordinator.fetch_offsets(group_id="g") == {}
    assert "g" not in shell.coordinator.group_ids()
    tombstones = [(key, value) for _, key, value in shell.log if value is None]
    assert len(tombstones) == 2  # the offset and the group


# --- ownership, listing, failover -------------------------------------------------------------


def test_groups_of_other_partitions_are_not_ours() -> None:
    coordinator = GroupCoordinator()
    partition = coordinator.partition_for("g")
    with pytest.raises(NotCoordinator):
        coordinator.heartbeat(group_id="g", member_id="m", generation_id=1, now_ms=0)
    coordinator.begin_load(partition)
    with pytest.raises(CoordinatorLoadInProgress):
        coordinator.fetch_offsets(group_id="g")
    assert coordinator.list_groups().error is ErrorCode.COORDINATOR_LOAD_IN_PROGRESS
    coordinator.complete_load(partition, GroupStateLoader(), now_ms=0)
    assert coordinator.fetch_offsets(group_id="g") == {}
    assert coordinator.list_groups().error is ErrorCode.NONE


def test_while_loading_sync_says_rejoin_and_heartbeat_says_nothing() -> None:
    coordinator = GroupCoordinator()
    coordinator.begin_load(coordinator.partition_for("g"))
    with pytest.raises(RebalanceInProgress):
        coordinator.sync_group(
            group_id="g", generation_id=1, member_id="m", assignments={}, now_ms=0
        )
    coordinator.heartbeat(group_id="g", member_id="m", generation_id=1, now_ms=0)


def test_leave_of_an_unknown_group_answers_per_member(shell: Shell) -> None:
    step = shell.coordinator.leave_group(
        group_id="nope", members=[MemberIdentity("a"), MemberIdentity("b")], now_ms=0
    )
    assert isinstance(step.result, LeaveGroupResult)
    assert step.result.error is ErrorCode.NONE
    assert [m.error for m in step.result.members] == [ErrorCode.UNKNOWN_MEMBER_ID] * 2


def test_unload_answers_waiting_requests_not_coordinator(shell: Shell) -> None:
    leader, follower = _stable_pair(shell)
    handle = shell.join(member_id=leader.member_id, client_id="a")
    shell.run(shell.coordinator.unload(shell.coordinator.partition_for("g")))
    assert shell.joined(handle).error is ErrorCode.NOT_COORDINATOR
    with pytest.raises(NotCoordinator):
        shell.join(member_id=follower.member_id)


def test_reloading_a_loaded_partition_answers_its_waiting_requests(shell: Shell) -> None:
    leader, _ = _stable_pair(shell)
    handle = shell.join(member_id=leader.member_id, client_id="a")
    shell.run(shell.coordinator.begin_load(shell.coordinator.partition_for("g")))
    assert shell.joined(handle).error is ErrorCode.NOT_COORDINATOR
    with pytest.raises(CoordinatorLoadInProgress):
        shell.join(member_id=leader.member_id)


def test_list_and_describe(shell: Shell) -> None:
    leader, _follower = _stable_pair(shell)
    _commit(shell, "", -1, {TP0: 1}, group="solo")
    listed = {g.group_id: g for g in shell.coordinator.list_groups().groups}
    assert listed["g"].state is GroupState.STABLE
    assert listed["g"].protocol_type == "consumer"
    assert listed["solo"].protocol_type == ""
    only_stable = shell.coordinator.list_groups(states=[GroupState.STABLE]).groups
    assert [g.group_id for g in only_stable] == ["g"]
    described = shell.coordinator.describe_group("g")
    assert described.protocol_name == "range"
    assert described.leader == leader.member_id
    assert [m.metadata for m in described.members] == [b"sub-range", b"sub-range"]
    unknown = shell.coordinator.describe_group("unknown")
    assert unknown.state is GroupState.DEAD and unknown.members == ()


def test_new_coordinator_reloads_group_and_offsets_from_the_log(shell: Shell) -> None:
    leader, follower = _stable_pair(shell)
    _commit(shell, follower.member_id, 2, {TP1: 11})
    _commit(shell, leader.member_id, 2, {TP0: 3})
    _commit(shell, leader.member_id, 2, {TP0: 4})
    partition = shell.coordinator.partition_for("g")
    records = [(key, value) for p, key, value in shell.log if p == partition]

    successor = GroupCoordinator(GroupConfig(initial_rebalance_delay_ms=0))
    successor.load_partition(partition, records, now_ms=shell.now_ms)
    described = successor.describe_group("g")
    assert described.state is GroupState.STABLE
    assert described.generation_id == 2
    assert described.leader == leader.member_id
    assert {m.member_id: m.assignment for m in described.members} == {
        leader.member_id: b"t-0",
        follower.member_id: b"t-1",
    }
    fetched = successor.fetch_offsets(group_id="g")
    assert {tp: v.offset for tp, v in fetched.items() if v is not None} == {TP0: 4, TP1: 11}
    # Members carry on with the new coordinator without a rebalance.
    successor.heartbeat(group_id="g", member_id=follower.member_id, generation_id=2, now_ms=1)
    step = successor.commit_offsets(
        group_id="g",
        member_id=follower.member_id,
        generation_id=2,
        offsets={TP1: OffsetAndMetadata(12)},
        now_ms=1,
    )
    assert len(step.appends) == 1


# --- DeleteGroups ------------------------------------------------------------------------------


def test_deleting_an_empty_group_tombstones_it_and_its_offsets() -> None:
    shell = Shell(GroupCoordinator(GroupConfig(initial_rebalance_delay_ms=0)), auto_ack=False)
    handle = _commit(shell, "", -1, {TP0: 5, TP1: 6})
    shell.ack(shell.unacked[-1])
    assert _committed(shell, handle).errors == {TP0: ErrorCode.NONE, TP1: ErrorCode.NONE}
    step = shell.run(shell.coordinator.delete_group(group_id="g"))
    assert step.handle is not None and step.handle not in shell.responses  # not yet written
    assert "g" not in shell.coordinator.group_ids()
    shell.ack(shell.unacked[-1])
    assert shell.responses[step.handle] == DeleteGroupResult(ErrorCode.NONE)
    tombstones = [key for _, key, value in shell.log if value is None]
    assert len(tombstones) == 3  # two offsets and the group
    # Reloaded from the log, the group stays gone.
    partition = shell.coordinator.partition_for("g")
    successor = GroupCoordinator(GroupConfig(initial_rebalance_delay_ms=0))
    successor.load_partition(
        partition, [(k, v) for p, k, v in shell.log if p == partition], now_ms=0
    )
    assert successor.group_ids() == [] and successor.fetch_offsets(group_id="g") == {}
    with pytest.raises(GroupIdNotFound):
        shell.coordinator.delete_group(group_id="g")


def test_a_group_with_members_is_not_deleted(shell: Shell) -> None:
    _stable_pair(shell)
    with pytest.raises(NonEmptyGroup):
        shell.coordinator.delete_group(group_id="g")
    assert "g" in shell.coordinator.group_ids()
    with pytest.raises(InvalidGroupId):
        shell.coordinator.delete_group(group_id="")


def test_a_failed_tombstone_write_is_reported() -> None:
    shell = Shell(GroupCoordinator(GroupConfig(initial_rebalance_delay_ms=0)), auto_ack=False)
    _commit(shell, "", -1, {TP0: 5})
    shell.ack(shell.unacked[-1])
    step = shell.run(shell.coordinator.delete_group(group_id="g"))
    assert step.handle is not None
    shell.ack(shell.unacked[-1], ErrorCode.NOT_LEADER_OR_FOLLOWER)
    assert shell.responses[step.handle] == DeleteGroupResult(ErrorCode.NOT_COORDINATOR)


# --- OffsetDelete ------------------------------------------------------------------------------

TU = TopicPartition("u", 0)


def _topics_of(metadata: bytes) -> tuple[str, ...] | None:
    """The members of these tests subscribe to "t" (their metadata is b"sub-range")."""
    return ("t",) if metadata == b"sub-range" else None


def test_offset_delete_spares_the_topics_members_subscribe_to(shell: Shell) -> None:
    leader, _ = _stable_pair(shell)
    _commit(shell, leader.member_id, 2, {TP0: 3, TU: 9})
    step = shell.run(
        shell.coordinator.delete_offsets(group_id="g", partitions=[TP0, TU], topics_of=_topics_of)
    )
    assert step.handle is not None
    assert shell.responses[step.handle] == OffsetDeleteResult(
        ErrorCode.NONE, {TP0: ErrorCode.GROUP_SUBSCRIBED_TO_TOPIC, TU: ErrorCode.NONE}
    )
    fetched = shell.coordinator.fetch_offsets(group_id="g")
    assert TU not in fetched and fetched[TP0] is not None
    assert [key for _, key, value in shell.log if value is None]  # u-0's tombstone
    # Unreadable subscriptions count as every topic.
    step = shell.run(
        shell.coordinator.delete_offsets(
            group_id="g", partitions=[TU], topics_of=lambda metadata: None
        )
    )
    assert step.handle is not None
    assert shell.responses[step.handle].errors == {TU: ErrorCode.GROUP_SUBSCRIBED_TO_TOPIC}


def test_offset_delete_of_an_empty_group_waits_for_its_tombstones() -> None:
    shell = Shell(GroupCoordinator(GroupConfig(initial_rebalance_delay_ms=0)), auto_ack=False)
    _commit(shell, "", -1, {TP0: 5, TP1: 6})
    shell.ack(shell.unacked[-1])
    step = shell.run(
        shell.coordinator.delete_offsets(group_id="g", partitions=[TP0], topics_of=_topics_of)
    )
    assert step.handle is not None and step.handle not in shell.responses
    shell.ack(shell.unacked[-1])
    assert shell.responses[step.handle] == OffsetDeleteResult(ErrorCode.NONE, {TP0: ErrorCode.NONE})
    assert list(shell.coordinator.fetch_offsets(group_id="g")) == [TP1]
    # A failed write says so for the partitions it carried, not only for the group.
    step = shell.run(
        shell.coordinator.delete_offsets(group_id="g", partitions=[TP1], topics_of=_topics_of)
    )
    assert step.handle is not None
    shell.ack(shell.unacked[-1], ErrorCode.NOT_LEADER_OR_FOLLOWER)
    assert shell.responses[step.handle] == OffsetDeleteResult(
        ErrorCode.NOT_COORDINATOR, {TP1: ErrorCode.NOT_COORDINATOR}
    )
    with pytest.raises(GroupIdNotFound):
        shell.coordinator.delete_offsets(group_id="nope", partitions=[TP0], topics_of=_topics_of)
