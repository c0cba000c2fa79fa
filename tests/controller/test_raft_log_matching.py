"""AppendDeduplicator against a model of pysyncobj's leader pipelining and follower append.

The follower model mirrors pysyncobj 0.3.17 ``SyncObj.__onMessageReceived`` for
``append_entries`` (delete every entry after ``prevLogIdx``, then append), and the leader model its
``next_node_idx`` handling (a successful answer sets the next index to the answered one, even when
later appends are already in flight). That pair is what logged CRITICAL "truncating already-applied
log entries" in full-cluster restarts under load; no sockets here.
"""

from __future__ import annotations

from collections import deque
from typing import Any

import attrs
from hypothesis import given, settings
from hypothesis import strategies as st

from quorumq.controller._raft import AppendDeduplicator

LEADER = "leader:1"
Entry = tuple[bytes, int, int]


def _entry(index: int, term: int) -> Entry:
    return (f"cmd{index}@{term}".encode(), index, term)


@attrs.define
class Follower:
    """pysyncobj's follower append, with the deduplicator in front of it (or not)."""

    log: list[Entry]
    dedup: AppendDeduplicator | None
    applied: int = 1
    commit: int = 1
    applied_truncations: int = 0  # what pysyncobj logs as CRITICAL

    def handle(self, message: dict[str, Any]) -> dict[str, Any]:
        if self.dedup is not None:
            message = self.dedup.before_append(LEADER, message)
        reply = self._append(message)
        if self.dedup is not None:
            self.dedup.after_reply(reply)
        self.commit = min(message["commit_index"], self.log[-1][1])
        self.applied = max(self.applied, self.commit)  # pysyncobj applies up to the commit index
        return reply

    def _append(self, message: dict[str, Any]) -> dict[str, Any]:
        prev, entries = message["prevLogIdx"], message["entries"]
        if prev > len(self.log):
            return _reply(len(self.log) + 1, success=False, reset=True)
        if self.log[prev - 1][2] != message["prevLogTerm"]:
            return _reply(prev, success=False, reset=True)
        if len(self.log) > prev:
            if prev + 1 <= self.applied:
                self.applied_truncations += 1
            del self.log[prev:]
        self.log.extend(entries)
        return _reply(prev + 1 + len(entries), success=True, reset=False)


def _reply(next_idx: int, *, success: bool, reset: bool) -> dict[str, Any]:
    return {"type": "next_node_idx", "next_node_idx": next_idx, "success": success, "reset": reset}


@attrs.define
class Leader:
    """pysyncobj's leader: optimistic next index, rewound by every successful answer."""

    log: list[Entry]
    term: int
    batch: int = 3
    next_index: int = 0
    match_index: int = 0

    def append_entries(self) -> dict[str, Any]:
        prev = self.next_index - 1
        entries = self.log[self.next_index - 1 : self.next_index - 1 + self.batch]
        if entries:
            self.next_index = entries[-1][1] + 1
        return {
            "type": "append_entries",
            "term": self.term,
            # A second, faster follower makes every entry committed at once, so this follower may
            # apply entries beyond the leader's match index for it (three voters).
            "commit_index": len(self.log),
            "entries": entries,
            "prevLogIdx": prev,
            "prevLogTerm": self.log[prev - 1][2],
        }

    def on_reply(self, reply: dict[str, Any]) -> None:
        if reply["reset"]:
            self.next_index = reply["next_node_idx"]
        if reply["success"] and self.match_index < reply["next_node_idx"] - 1:
            self.match_index = reply["next_node_idx"] - 1
            self.next_index = reply["next_node_idx"]


def _run(schedule: list[str], dedup: AppendDeduplicator | None, *, common: int = 3) -> Follower:
    """A follower holding ``common`` entries of an earlier term plus one stale entry; the leader
    of term 2 starts appending after them, as after a restart."""
    old = [_entry(i, 1) for i in range(1, common + 1)]
    leader = Leader(list(old), term=2)
    leader.next_index = len(leader.log) + 1
    follower = Follower([*old, _entry(common + 1, 1)], dedup)  # an uncommitted term-1 entry
    to_follower: deque[dict[str, Any]] = deque()
    to_leader: deque[dict[str, Any]] = deque()
    for step in schedule:
        if step == "write":
            leader.log.append(_entry(len(leader.log) + 1, 2))
            to_follower.append(leader.append_entries())  # appendEntriesUseBatch=False
        elif step == "send":
            to_follower.append(leader.append_entries())
        elif step == "deliver" and to_follower:
            to_leader.append(follower.handle(to_follower.popleft()))
        elif step == "answer" and to_leader:
            leader.on_reply(to_leader.popleft())
    for _ in range(200):  # drain: heartbeats until the follower has everything
        if follower.log == leader.log and leader.match_index == len(leader.log):
            break
        to_follower.append(leader.append_entries())
        while to_follower:
            to_leader.append(follower.handle(to_follower.popleft()))
        while to_leader:
            leader.on_reply(to_leader.popleft())
    assert follower.log == leader.log
    return follower


def test_pipelined_rewind_truncates_applied_entries_without_dedup() -> None:
    # A heartbeat's answer arrives after the next append went out: it rewinds the leader, which
    # sends that entry again, and the follower, which applied it meanwhile (a faster third voter
    # committed it), deletes and re-appends it. The CRITICAL: "from index 4 (last applied: 4)".
    schedule = ["send", "deliver", "write", "answer"]
    assert _run(schedule, None).applied_truncations >= 1
    dedup = AppendDeduplicator()
    assert _run(schedule, dedup).applied_truncations == 0
    assert dedup.rewritten >= 1


@settings(max_examples=150, deadline=None)
@given(st.lists(st.sampled_from(["write", "send", "deliver", "answer"]), max_size=60))
def test_dedup_never_truncates_applied_entries_and_follower_converges(schedule: list[str]) -> None:
    follower = _run(schedule, AppendDeduplicator())
    assert follower.applied_truncations == 0


def test_dedup_still_truncates_a_conflicting_suffix() -> None:
    dedup = AppendDeduplicator()
    follower = Follower([_entry(1, 1), _entry(2, 1), _entry(3, 1)], dedup)
    # The new leader (term 2) only has entries 1-2 of term 1: entry 3 conflicts and must go.
    reply = follower.handle(
        {
            "type": "append_entries",
            "term": 2,
            "commit_index": 1,
            "entries": [_entry(3, 2)],
            "prevLogIdx": 2,
            "prevLogTerm": 1,
        }
    )
    assert reply["success"] and follower.log[-1] == _entry(3, 2)
    assert dedup.rewritten == 0 and dedup.log_end == 3


def test_dedup_passes_through_what_it_cannot_vouch_for() -> None:
    dedup = AppendDeduplicator()
    heartbeat = {"type": "append_entries", "term": 3, "commit_index": 5, "entries": []}
    first = dict(heartbeat, prevLogIdx=5, prevLogTerm=3, entries=[_entry(6, 3), _entry(7, 3)])
    assert dedup.before_append(LEADER, first) is first
    dedup.after_reply(_reply(8, success=True, reset=False))
    assert dedup.log_end == 7

    # Below the log end with known, matching terms: rewritten to start after the log end.
    rewind = dict(heartbeat, prevLogIdx=5, prevLogTerm=3, entries=[_entry(6, 3)])
    out = dedup.before_append(LEADER, rewind)
    assert (out["prevLogIdx"], out["prevLogTerm"], out["entries"]) == (7, 3, [])
    dedup.after_reply(_reply(8, success=True, reset=False))

    # Unknown index (before tracking began): unchanged.
    older = dict(heartbeat, prevLogIdx=4, prevLogTerm=3, entries=[])
    assert dedup.before_append(LEADER, older) is older
    dedup.after_reply(_reply(5, success=True, reset=False))
    assert dedup.log_end == 4  # pysyncobj truncated after 4: tracking follows it

    # Another leader, or a new term: unchanged, tracking starts over.
    other = dict(first, term=4)
    assert dedup.before_append("other:2", other) is other
    assert (dedup.leader, dedup.term, dedup.log_end) == ("other:2", 4, None)

    # A refused append forgets everything; a snapshot install too.
    dedup.after_reply(_reply(3, success=False, reset=True))
    assert dedup.log_end is None and dedup.terms == {}
    snapshot = {"type": "append_entries", "term": 4, "commit_index": 9, "serialized": b"x"}
    assert dedup.before_append("other:2", snapshot) is snapshot
    dedup.after_reply(_reply(10, success=True, reset=False))
    assert dedup.log_end is None


def test_dedup_tracking_is_bounded() -> None:
    dedup = AppendDeduplicator(max_tracked=64)
    prev = 1
    for _ in range(100):
        entries = [_entry(i, 1) for i in range(prev + 1, prev + 6)]
        message = {
            "type": "append_entries",
            "term": 1,
            "commit_index": prev,
            "entries": entries,
            "prevLogIdx": prev,
            "prevLogTerm": 1,
        }
        dedup.before_append(LEADER, message)
        prev += 5
        dedup.after_reply(_reply(prev + 1, success=True, reset=False))
    assert len(dedup.terms) <= 64 and dedup.log_end == prev
