"""Raft's pre-vote (``controller._raft.PreVote``) against a stand-in for pysyncobj's state: who
says yes, and when a voter may raise its term. The behaviour it exists for, a bridge that no
longer moves the controller, is ``tests/process/test_partition.py``."""

from __future__ import annotations

import time
from typing import Any

from quorumq.controller._raft import PRE_VOTE, PRE_VOTE_REPLY, PreVote


class FakeTransport:
    def __init__(self) -> None:
        self.sent: list[tuple[Any, dict[str, Any]]] = []

    def send(self, node: Any, message: dict[str, Any]) -> bool:
        self.sent.append((node, message))
        return True


class FakeSyncObj:
    """The pysyncobj attributes PreVote reads, under their mangled names."""

    def __init__(self, others: list[str], log: tuple[int, int] = (5, 100), leader: bool = False):
        self._SyncObj__otherNodes = set(others)
        self._SyncObj__transport = FakeTransport()
        self.log_term, self.log_index = log
        self.leader = leader

    def _SyncObj__getCurrentLogTerm(self) -> int:
        return self.log_term

    def _SyncObj__getCurrentLogIndex(self) -> int:
        return self.log_index

    def _isLeader(self) -> bool:
        return self.leader


def _ask(log: tuple[int, int]) -> dict[str, Any]:
    return {"type": PRE_VOTE, "last_log_term": log[0], "last_log_index": log[1]}


def _answer(pre_vote: PreVote, me: FakeSyncObj, ask: dict[str, Any]) -> bool:
    pre_vote.on_message(me, "asker", ask)
    node, reply = me._SyncObj__transport.sent[-1]
    assert node == "asker" and reply["type"] == PRE_VOTE_REPLY
    return bool(reply["granted"])


def test_a_voter_that_hears_a_leader_says_no_and_one_that_does_not_says_yes() -> None:
    me = FakeSyncObj(["a", "b"])
    pre_vote = PreVote(min_timeout_s=0.3)
    pre_vote.heard_leader()
    assert not _answer(pre_vote, me, _ask((5, 100)))
    pre_vote.leader_heard_at = time.monotonic() - 0.31
    assert _answer(pre_vote, me, _ask((5, 100)))


def test_the_leader_and_voters_with_longer_logs_say_no() -> None:
    pre_vote = PreVote(min_timeout_s=0.3)
    assert not _answer(pre_vote, FakeSyncObj(["a", "b"], leader=True), _ask((5, 100)))
    me = FakeSyncObj(["a", "b"], log=(5, 100))
    assert not _answer(pre_vote, me, _ask((5, 99)))  # the asker's log is shorter
    assert not _answer(pre_vote, me, _ask((4, 500)))  # or from an older term
    assert _answer(pre_vote, me, _ask((6, 1)))


def test_a_voter_raises_its_term_only_with_a_majority_of_yes() -> None:
    me = FakeSyncObj(["a", "b", "c", "d"])  # five voters: itself and two more make a majority
    pre_vote = PreVote(min_timeout_s=0.3)
    assert not pre_vote.may_start_election(me)  # asks everyone
    asked = [node for node, message in me._SyncObj__transport.sent if message["type"] == PRE_VOTE]
    assert sorted(asked) == ["a", "b", "c", "d"]
    pre_vote.on_message(me, "a", {"type": PRE_VOTE_REPLY, "granted": True})
    pre_vote.on_message(me, "b", {"type": PRE_VOTE_REPLY, "granted": False})
    assert not pre_vote.may_start_election(me)
    pre_vote.on_message(me, "c", {"type": PRE_VOTE_REPLY, "granted": True})
    assert pre_vote.may_start_election(me)
    assert pre_vote.elections_held_back == 2


def test_a_yes_goes_stale_and_a_single_voter_needs_nobody() -> None:
    me = FakeSyncObj(["a", "b"])
    pre_vote = PreVote(min_timeout_s=0.3)
    pre_vote.on_message(me, "a", {"type": PRE_VOTE_REPLY, "granted": True})
    pre_vote._granted["a"] -= 0.31  # said yes longer ago than a minimum timeout
    assert not pre_vote.may_start_election(me)
    assert PreVote(min_timeout_s=0.3).may_start_election(FakeSyncObj([]))
