"""The history checker: hand-made histories and generated logs with injected faults."""

from __future__ import annotations

from hypothesis import given, settings
from hypothesis import strategies as st

from quorumq.chaos import ProduceAttempt, ReadRecord, check_history, check_reads


def _v(i: int) -> bytes:
    return f"v{i}".encode()


def test_check_history_clean_run_is_ok() -> None:
    attempts = [ProduceAttempt(None, _v(i), True, 0, i) for i in range(3)]
    report = check_history(attempts, [ReadRecord(0, i, None, _v(i)) for i in range(3)])
    assert report.ok
    assert report.summary()["lost"] == 0
    assert report.acknowledged == report.read_back == 3


def test_check_history_finds_acknowledged_then_lost() -> None:
    attempts = [ProduceAttempt(None, _v(i), True, 0, i) for i in range(3)]
    report = check_history(attempts, [ReadRecord(0, 0, None, _v(0))])
    assert [a.value for a in report.lost] == [_v(1), _v(2)]
    assert not report.ok


def test_check_history_unacknowledged_but_present_is_legal() -> None:
    attempts = [ProduceAttempt(None, _v(0), False)]
    report = check_history(attempts, [ReadRecord(0, 0, None, _v(0))])
    assert report.ok
    assert len(report.unacknowledged_present) == 1
    assert not report.lost


def test_check_history_counts_duplicates_as_extra_copies() -> None:
    attempts = [ProduceAttempt(None, _v(0), True, 0, 0)]
    read = [ReadRecord(0, 0, None, _v(0)), ReadRecord(0, 1, None, _v(0)),
            ReadRecord(0, 2, None, _v(0))]  # fmt: skip
    report = check_history(attempts, read)
    assert report.duplicate_count == 2
    assert report.ok


def test_check_history_finds_an_acknowledged_offset_holding_other_data() -> None:
    attempts = [ProduceAttempt(None, _v(0), True, 0, 5), ProduceAttempt(None, _v(1), True, 0, 6)]
    # v0's offset 5 was truncated and rewritten with v9; v0 itself survives elsewhere? No: lost.
    read = [ReadRecord(0, 5, None, _v(9)), ReadRecord(0, 6, None, _v(1))]
    report = check_history(attempts, read)
    assert report.offsets_reused == ((0, 5),)
    assert [a.value for a in report.lost] == [_v(0)]
    assert [r.value for r in report.unknown] == [_v(9)]


def test_check_history_two_values_acknowledged_at_one_offset() -> None:
    attempts = [ProduceAttempt(None, _v(0), True, 0, 0), ProduceAttempt(None, _v(1), True, 0, 0)]
    report = check_history(attempts, [ReadRecord(0, 0, None, _v(1))])
    assert report.offsets_reused == ((0, 0),)


def test_check_history_acks_without_offsets_only_check_presence() -> None:
    attempts = [
        ProduceAttempt(None, _v(0), True, 0, None),
        ProduceAttempt(None, _v(1), True, 0, -1),
    ]
    report = check_history(attempts, [ReadRecord(0, 7, None, _v(0))])
    assert [a.value for a in report.lost] == [_v(1)]
    assert not report.offsets_reused and not report.moved


def test_check_history_moved_record() -> None:
    attempts = [ProduceAttempt(None, _v(0), True, 0, 3)]
    report = check_history(attempts, [ReadRecord(0, 4, None, _v(0))])
    assert len(report.moved) == 1 and not report.lost


def test_check_history_retried_attempts_count_once() -> None:
    attempts = [ProduceAttempt(None, _v(0), False), ProduceAttempt(None, _v(0), True, 0, 0)]
    report = check_history(attempts, [ReadRecord(0, 0, None, _v(0))])
    assert report.attempted == 1 and report.acknowledged == 1
    assert not report.unacknowledged_present


@st.composite
def _runs(draw: st.DrawFn) -> tuple[list[ProduceAttempt], list[ReadRecord], set[int], set[int]]:
    """A run on one partition: n records at offsets 0..n-1, some acked; then some records
    vanish from the log (truncated) and some are duplicated at the end."""
    n = draw(st.integers(0, 40))
    acked = draw(st.sets(st.integers(0, max(0, n - 1)), max_size=n)) if n else set()
    vanished = draw(st.sets(st.integers(0, max(0, n - 1)), max_size=n)) if n else set()
    dup = draw(st.sets(st.integers(0, max(0, n - 1)), max_size=5)) if n else set()
    attempts = [ProduceAttempt(None, _v(i), i in acked, 0, i if i in acked else None)
                for i in range(n)]  # fmt: skip
    survivors = [i for i in range(n) if i not in vanished]
    # Compaction of offsets is not what a truncation does, but the checker must not care
    # whether offsets are dense: survivors keep their offset, duplicates go after the end.
    read = [ReadRecord(0, i, None, _v(i)) for i in survivors]
    read += [ReadRecord(0, n + k, None, _v(i)) for k, i in enumerate(sorted(dup - vanished))]
    return attempts, read, vanished, dup - vanished


@settings(max_examples=150, deadline=None)
@given(_runs())
def test_check_history_finds_exactly_the_injected_faults(
    run: tuple[list[ProduceAttempt], list[ReadRecord], set[int], set[int]],
) -> None:
    attempts, read, vanished, duplicated = run
    report = check_history(attempts, read)
    acked = {i for i, a in enumerate(attempts) if a.acked}
    assert {a.value for a in report.lost} == {_v(i) for i in vanished & acked}
    assert report.duplicate_count == len(duplicated)
    assert {a.value for a in report.unacknowledged_present} == {
        _v(i) for i in range(len(attempts)) if i not in acked and i not in vanished
    }
    assert not report.offsets_reused
    assert report.ok == (not (vanished & acked))
    assert report.acknowledged == len(acked)


def test_check_reads_finds_records_seen_then_gone_or_replaced() -> None:
    final = [
        ReadRecord(0, 0, None, b"a"),
        ReadRecord(0, 1, None, b"b"),
        ReadRecord(1, 0, None, b"c"),
    ]
    seen = [
        ReadRecord(0, 0, None, b"a"),
        ReadRecord(0, 0, None, b"a"),  # read again after a leader change: fine
        ReadRecord(0, 1, None, b"x"),  # the offset now holds another record
        ReadRecord(1, 1, None, b"d"),  # truncated away
    ]
    report = check_reads(seen, final)
    assert report.seen == 4 and not report.ok
    assert report.dirty == (seen[2], seen[3])
    assert check_reads(seen[:2], final).ok
    assert check_reads([], final).ok
