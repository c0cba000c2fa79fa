"""The history checker: what a workload sent, what the brokers acknowledged, what is there now.

Theory of operation: every produce attempt carries a unique value (its identity) and ends in one
of two states: acknowledged with a (partition, offset), or not (failed, timed out, or never
answered). After the faults, every partition is read from its log start to its end. The checker
compares the two, and never needs to know what faults happened:

- **lost**: acknowledged, but the value is nowhere in the read-back. The one outcome a mode's
  promise forbids (acks=all while a majority / the ISR with ``min.insync.replicas`` >= 2 holds).
- **duplicates**: a value read back more than once (a retry after a lost answer; idempotence
  off), counted as extra copies.
- **unacknowledged but present**: failed or unanswered, yet written. Legal: a timeout says
  nothing about whether the write happened.
- **offsets reused**: an acknowledged (partition, offset) that now holds another value, i.e. the
  offset was handed out twice (a divergent tail truncated and rewritten after an ack). Acks
  without an offset (acks=0 answers nothing) are only checked for presence.
- **moved**: acknowledged, present, but at another (partition, offset) than acknowledged.

A second check (:func:`check_reads`) judges what a consumer saw *during* the faults: a record
consumed live must be in the final log at the offset it was read at. Consumers see only
records below the high watermark, and a committed record survives every clean failover, so a
**dirty read** (seen, then gone or replaced) breaks a promise at every acks setting.

Pure: no I/O, no clock; the caller collects attempts and the read-back.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterable

import attrs


@attrs.frozen
class ProduceAttempt:
    """One produce call and its outcome (``offset`` None or negative: acked without one)."""

    key: bytes | None
    value: bytes
    acked: bool
    partition: int | None = None
    offset: int | None = None


@attrs.frozen
class ReadRecord:
    """One record read back after the run."""

    partition: int
    offset: int
    key: bytes | None
    value: bytes


@attrs.frozen
class HistoryReport:
    """What the checker found. Each tuple lists the offending attempts or records."""

    attempted: int
    acknowledged: int
    read_back: int
    lost: tuple[ProduceAttempt, ...]
    duplicates: tuple[tuple[bytes, int], ...]
    """(value, extra copies) for each value read more than once."""
    unacknowledged_present: tuple[ProduceAttempt, ...]
    offsets_reused: tuple[tuple[int, int], ...]
    """(partition, offset) acknowledged for one value and holding another (or acked twice)."""
    moved: tuple[ProduceAttempt, ...]
    unknown: tuple[ReadRecord, ...]
    """Read back, but no attempt sent that value (another writer, or corruption)."""

    @property
    def duplicate_count(self) -> int:
        return sum(extra for _, extra in self.duplicates)

    @property
    def ok(self) -> bool:
        """True if nothing acknowledged was lost or overwritten (duplicates are allowed)."""
        return not self.lost and not self.offsets_reused

    def summary(self) -> dict[str, int]:
        return {
            "attempted": self.attempted,
            "acknowledged": self.acknowledged,
            "read_back": self.read_back,
            "lost": len(self.lost),
            "duplicates": self.duplicate_count,
            "unacknowledged_present": len(self.unacknowledged_present),
            "offsets_reused": len(self.offsets_reused),
            "moved": len(self.moved),
            "unknown": len(self.unknown),
        }


def check_history(
    attempts: Iterable[ProduceAttempt], read_back: Iterable[ReadRecord]
) -> HistoryReport:
    """Compares what was acknowledged with what was read back (see the module docstring).

    Values identify attempts: two attempts with one value are treated as one logical record
    (acked if either was).
    """
    attempts = list(attempts)
    records = list(read_back)
    copies = Counter(r.value for r in records)
    where: dict[bytes, set[tuple[int, int]]] = {}
    at: dict[tuple[int, int], list[bytes]] = {}
    for r in records:
        where.setdefault(r.value, set()).add((r.partition, r.offset))
        at.setdefault((r.partition, r.offset), []).append(r.value)

    sent_values: set[bytes] = set()
    claimed: dict[tuple[int, int], bytes] = {}
    lost: list[ProduceAttempt] = []
    unacked_present: list[ProduceAttempt] = []
    moved: list[ProduceAttempt] = []
    reused: set[tuple[int, int]] = set()
    lost_values: set[bytes] = set()
    acked_attempts = [a for a in attempts if a.acked]
    acked_values = {a.value for a in acked_attempts}
    for attempt in attempts:
        sent_values.add(attempt.value)
        present = attempt.value in copies
        if not attempt.acked:
            if present and attempt.value not in acked_values:
                unacked_present.append(attempt)
            continue
        if attempt.partition is not None and attempt.offset is not None and attempt.offset >= 0:
            slot = (attempt.partition, attempt.offset)
            holder = claimed.setdefault(slot, attempt.value)
            if holder != attempt.value:
                reused.add(slot)  # two different values acknowledged at one offset
            elif slot in at and attempt.value not in at[slot]:
                reused.add(slot)  # the acknowledged offset now holds other data
            elif present and slot not in where[attempt.value]:
                moved.append(attempt)
        if not present and attempt.value not in lost_values:
            lost_values.add(attempt.value)  # one logical record is lost once
            lost.append(attempt)
    for slot, values in at.items():
        if len(values) > 1:
            reused.add(slot)  # the read-back itself has one offset twice: invalid log
    return HistoryReport(
        attempted=len({a.value for a in attempts}),
        acknowledged=len(acked_values),
        read_back=len(records),
        lost=tuple(lost),
        duplicates=tuple(sorted((v, n - 1) for v, n in copies.items() if n > 1)),
        unacknowledged_present=tuple({a.value: a for a in unacked_present}.values()),
        offsets_reused=tuple(sorted(reused)),
        moved=tuple(moved),
        unknown=tuple(r for r in records if r.value not in sent_values),
    )


@attrs.frozen
class ReadReport:
    """What :func:`check_reads` found."""

    seen: int
    """Records the live consumer received (re-reads included)."""
    dirty: tuple[ReadRecord, ...]
    """Seen, but the final log holds nothing, or another value, at that (partition, offset)."""

    @property
    def ok(self) -> bool:
        return not self.dirty


def check_reads(seen: Iterable[ReadRecord], final: Iterable[ReadRecord]) -> ReadReport:
    """Checks records consumed while faults happened against the log read afterwards."""
    at = {(r.partition, r.offset): r.value for r in final}
    seen = list(seen)
    dirty = tuple(r for r in seen if at.get((r.partition, r.offset)) != r.value)
    return ReadReport(seen=len(seen), dirty=dirty)
