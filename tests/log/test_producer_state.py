"""Idempotent-producer state: Kafka's epoch and sequence rules, duplicates, rebuild from headers."""

from __future__ import annotations

from collections.abc import Iterator

import attrs
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from quorumq.errors import (
    CorruptRecord,
    InvalidProducerEpoch,
    InvalidRecord,
    OutOfOrderSequenceNumber,
)
from quorumq.log._producer_state import (
    NUM_BATCHES_TO_RETAIN,
    BatchMetadata,
    DuplicateBatch,
    ProducerStateManager,
    in_sequence,
)
from quorumq.protocol.records import (
    BatchHeader,
    ControlRecordType,
    build_batch,
    control_record,
    validate_batch,
)

MAX_SEQ = 2**31 - 1


def producer_batch(
    producer_id: int,
    epoch: int,
    sequence: int,
    count: int = 1,
    *,
    base_offset: int = 0,
    timestamp: int = 1_000,
) -> BatchHeader:
    """The header of a real producer batch of ``count`` records."""
    raw = build_batch(
        [(None, b"v")] * count,
        base_offset=base_offset,
        producer_id=producer_id,
        producer_epoch=epoch,
        base_sequence=sequence,
        timestamp=timestamp,
    )
    return validate_batch(raw, dense=True)


class Log:
    """A leader's log as the broker drives it: check, append at the LEO, on_append."""

    def __init__(self) -> None:
        self.state = ProducerStateManager()
        self.headers: list[BatchHeader] = []
        self.log_end_offset = 0

    def produce(self, header: BatchHeader) -> int:
        """Returns the base offset the client is answered with."""
        duplicate = self.state.check(header)
        if duplicate is not None:
            return duplicate.first_offset
        appended = attrs.evolve(header, base_offset=self.log_end_offset)
        self.headers.append(appended)
        self.log_end_offset = appended.next_offset
        self.state.on_append(header, base_offset=appended.base_offset)
        return appended.base_offset


def test_non_idempotent_batches_skip_every_check() -> None:
    log = Log()
    plain = producer_batch(-1, -1, -1, 3)
    assert log.produce(plain) == 0
    assert log.produce(plain) == 3  # no producer id: a resend is a new batch
    assert log.state.producers == {}
    assert log.state.map_end_offset == 6


@pytest.mark.parametrize("sequence", [0, 42])
def test_unknown_producer_is_accepted_at_any_sequence(sequence: int) -> None:
    # Kafka >= 2.5 (KIP-360): no UNKNOWN_PRODUCER_ID, the state may have been deleted.
    log = Log()
    assert log.produce(producer_batch(7, 0, sequence, 2)) == 0
    entry = log.state.last_entry(7)
    assert entry is not None
    assert (entry.producer_epoch, entry.last_sequence, entry.last_offset) == (0, sequence + 1, 1)


def test_in_order_batches_append_and_a_gap_is_out_of_order() -> None:
    log = Log()
    assert log.produce(producer_batch(1, 0, 0, 3)) == 0
    assert log.produce(producer_batch(1, 0, 3, 2)) == 3
    with pytest.raises(OutOfOrderSequenceNumber):
        log.produce(producer_batch(1, 0, 6, 1))  # 5 is missing
    with pytest.raises(OutOfOrderSequenceNumber):
        log.produce(producer_batch(1, 0, 4, 1))  # overlaps the last batch, not a retry of it
    assert log.log_end_offset == 5


def test_retry_of_any_of_the_last_five_batches_returns_its_original_offsets() -> None:
    log = Log()
    log.produce(producer_batch(2, 0, 0, 1))  # will leave the window
    offsets = [log.produce(producer_batch(2, 0, 1 + 2 * i, 2, timestamp=50 + i)) for i in range(5)]
    for i, offset in enumerate(offsets):
        retry = producer_batch(2, 0, 1 + 2 * i, 2)
        assert log.state.check(retry) == DuplicateBatch(2, 0, offset, offset + 1, 50 + i)
        assert log.produce(retry) == offset
    assert log.log_end_offset == 11  # nothing was appended twice
    with pytest.raises(OutOfOrderSequenceNumber):
        log.produce(producer_batch(2, 0, 0, 1))  # sixth-oldest: no longer retained
    entry = log.state.last_entry(2)
    assert entry is not None and len(entry.batches) == NUM_BATCHES_TO_RETAIN


def test_a_retry_with_another_epoch_is_not_a_duplicate() -> None:
    log = Log()
    log.produce(producer_batch(3, 1, 0, 1))
    with pytest.raises(InvalidProducerEpoch):
        log.produce(producer_batch(3, 0, 0, 1))


def test_newer_epoch_must_start_at_zero_and_fences_the_old_one() -> None:
    log = Log()
    log.produce(producer_batch(4, 0, 0, 5))
    with pytest.raises(OutOfOrderSequenceNumber):
        log.produce(producer_batch(4, 1, 5, 1))
    assert log.produce(producer_batch(4, 1, 0, 1)) == 5
    with pytest.raises(InvalidProducerEpoch):
        log.produce(producer_batch(4, 0, 5, 1))  # the zombie, even in sequence
    with pytest.raises(InvalidProducerEpoch):
        log.produce(producer_batch(4, 0, 0, 5))  # even as a retry of its own batch
    entry = log.state.last_entry(4)
    assert entry is not None
    assert entry.producer_epoch == 1
    assert [b.first_sequence for b in entry.batches] == [0]


def test_sequences_wrap_at_int32_max() -> None:
    assert in_sequence(MAX_SEQ, 0)
    assert not in_sequence(MAX_SEQ, MAX_SEQ + 1)
    log = Log()
    log.produce(producer_batch(5, 0, MAX_SEQ - 1, 2))
    entry = log.state.last_entry(5)
    assert entry is not None and entry.last_sequence == MAX_SEQ
    assert log.produce(producer_batch(5, 0, 0, 1)) == 2
    # A batch that itself wraps: sequences MAX_SEQ, 0, 1.
    wrapping = producer_batch(6, 0, MAX_SEQ, 3)
    assert wrapping.last_sequence == 1
    log.produce(wrapping)
    assert log.state.check(producer_batch(6, 0, MAX_SEQ, 3)) is not None
    assert log.produce(producer_batch(6, 0, 2, 1)) == 6


def test_control_batch_moves_the_epoch_without_a_sequence() -> None:
    state = ProducerStateManager()
    state.on_append(producer_batch(8, 0, 0, 2))
    marker = build_batch(
        [control_record(ControlRecordType.ABORT, 2, 99)],
        base_offset=2,
        producer_id=8,
        producer_epoch=1,
        is_control=True,
        is_transactional=True,
    )
    state.on_append(validate_batch(marker))
    entry = state.last_entry(8)
    assert entry is not None
    assert (entry.producer_epoch, entry.batches, entry.last_timestamp) == (1, [], 99)
    assert state.map_end_offset == 3
    with pytest.raises(OutOfOrderSequenceNumber):
        state.check(producer_batch(8, 1, 2, 1))  # same epoch, no batches: must start at 0
    assert state.check(producer_batch(8, 1, 0, 1)) is None


def test_check_ignores_control_batches() -> None:
    marker = build_batch(
        [control_record(ControlRecordType.COMMIT, 0, 1)],
        producer_id=9,
        producer_epoch=0,
        is_control=True,
        is_transactional=True,
    )
    state = ProducerStateManager()
    state.on_append(producer_batch(9, 3, 0, 1))
    assert state.check(validate_batch(marker)) is None


def test_remove_expired_drops_silent_producers() -> None:
    state = ProducerStateManager()
    state.on_append(producer_batch(1, 0, 0, timestamp=1_000))
    state.on_append(producer_batch(2, 0, 0, base_offset=1, timestamp=5_000))
    assert state.remove_expired(now_ms=6_000, producer_id_expiration_ms=4_000) == [1]
    assert set(state.producers) == {2}


def test_rebuild_from_empty_compacted_batch_keeps_the_last_sequence() -> None:
    # The cleaner keeps a producer's last batch even when it removed every record of it.
    empty = build_batch(
        [], base_offset=10, last_offset_delta=3, producer_id=4, producer_epoch=2, base_sequence=30
    )
    state = ProducerStateManager()
    state.load_from_batches([validate_batch(empty)])
    assert state.check(producer_batch(4, 2, 34, 1)) is None
    assert state.check(producer_batch(4, 2, 30, 4)) == DuplicateBatch(4, 2, 10, 13, -1)


def test_truncate_below_nothing_applied_keeps_the_state() -> None:
    log = Log()
    log.produce(producer_batch(1, 0, 0, 2))

    def never() -> Iterator[BatchHeader]:
        raise AssertionError("headers must not be scanned")
        yield  # a generator: scanning starts only when iterated

    log.state.truncate_to(2, never())
    assert log.state.last_entry(1) is not None


# --- properties ---------------------------------------------------------------------------------

# One step of a workload: (producer id, action); action "next" sends the producer's next batch,
# "retry k" resends its k-th most recent batch, "bump" moves to a new epoch.
_steps = st.lists(
    st.tuples(
        st.integers(min_value=0, max_value=2),
        st.one_of(
            st.just(("next", 0)),
            st.tuples(st.just("retry"), st.integers(min_value=1, max_value=7)),
            st.just(("bump", 0)),
        ),
        st.integers(min_value=1, max_value=4),
    ),
    max_size=40,
)


def _run(steps: list[tuple[int, tuple[str, int], int]]) -> Log:
    """Drives the model producers; asserts each verdict against what a correct broker answers."""
    log = Log()
    epoch = {p: 0 for p in range(3)}
    next_sequence = {p: 0 for p in range(3)}
    sent: dict[int, list[tuple[BatchHeader, int]]] = {p: [] for p in range(3)}
    for producer_id, (action, k), count in steps:
        if action == "bump":
            epoch[producer_id] += 1
            next_sequence[producer_id] = 0
            sent[producer_id] = []
            continue
        if action == "retry":
            history = sent[producer_id]
            if k > len(history):
                continue
            header, offset = history[-k]
            if k <= NUM_BATCHES_TO_RETAIN:
                assert log.produce(header) == offset
            else:
                with pytest.raises(OutOfOrderSequenceNumber):
                    log.produce(header)
            continue
        header = producer_batch(producer_id, epoch[producer_id], next_sequence[producer_id], count)
        before = log.log_end_offset
        assert log.produce(header) == before
        sent[producer_id].append((header, before))
        next_sequence[producer_id] = header.last_sequence + 1
    return log


def _snapshot(state: ProducerStateManager) -> dict[int, tuple[int, list[BatchMetadata]]]:
    return {p: (e.producer_epoch, list(e.batches)) for p, e in state.producers.items()}


@settings(max_examples=120, deadline=None)
@given(steps=_steps)
def test_retries_never_duplicate_and_the_log_rebuilds_the_same_state(
    steps: list[tuple[int, tuple[str, int], int]],
) -> None:
    log = _run(steps)
    # Offsets are dense: every appended batch starts where the previous one ended.
    assert [h.base_offset for h in log.headers] == [
        sum(h.record_count for h in log.headers[:i]) for i in range(len(log.headers))
    ]
    rebuilt = ProducerStateManager()
    rebuilt.load_from_batches(log.headers)
    assert _snapshot(rebuilt) == _snapshot(log.state)
    assert rebuilt.map_end_offset == log.state.map_end_offset == log.log_end_offset


@settings(max_examples=80, deadline=None)
@given(steps=_steps, cut=st.integers(min_value=0, max_value=200))
def test_truncate_to_equals_the_state_of_the_surviving_prefix(
    steps: list[tuple[int, tuple[str, int], int]], cut: int
) -> None:
    log = _run(steps)
    boundaries = [h.base_offset for h in log.headers] + [log.log_end_offset]
    offset = boundaries[cut % len(boundaries)]
    log.state.truncate_to(offset, iter(log.headers))
    prefix = ProducerStateManager()
    prefix.load_from_batches(h for h in log.headers if h.base_offset < offset)
    assert _snapshot(log.state) == _snapshot(prefix)
    assert log.state.map_end_offset == offset


@settings(max_examples=60, deadline=None)
@given(steps=_steps, data=st.data())
def test_snapshot_round_trips_and_corruption_is_detected(
    steps: list[tuple[int, tuple[str, int], int]], data: st.DataObject
) -> None:
    log = _run(steps)
    snapshot = log.state.to_snapshot()
    restored = ProducerStateManager.from_snapshot(snapshot)
    assert _snapshot(restored) == _snapshot(log.state)
    assert restored.map_end_offset == log.state.map_end_offset
    for entry in log.state.producers.values():
        assert restored.producers[entry.producer_id].last_timestamp == entry.last_timestamp
    cut = data.draw(st.integers(min_value=0, max_value=len(snapshot) - 1))
    with pytest.raises(CorruptRecord):
        ProducerStateManager.from_snapshot(snapshot[:cut])
    flipped = bytearray(snapshot)
    index = data.draw(st.integers(min_value=0, max_value=len(snapshot) - 1))
    flipped[index] ^= 1 << data.draw(st.integers(min_value=0, max_value=7))
    with pytest.raises(CorruptRecord):
        ProducerStateManager.from_snapshot(flipped)


def test_snapshot_then_replay_of_the_tail_equals_a_full_rebuild() -> None:
    log = Log()
    for sequence in range(0, 12, 2):
        log.produce(producer_batch(1, 0, sequence, 2))
    middle = log.state.to_snapshot()
    head_count = len(log.headers)
    log.produce(producer_batch(1, 0, 12, 3))
    log.produce(producer_batch(2, 0, 0, 1))
    restored = ProducerStateManager.from_snapshot(middle)
    restored.load_from_batches(log.headers)  # the log replays from the start: old ones skipped
    assert _snapshot(restored) == _snapshot(log.state)
    assert head_count == 6


def test_producer_id_without_a_sequence_is_an_invalid_record() -> None:
    with pytest.raises(InvalidRecord):
        ProducerStateManager().check(producer_batch(3, 0, -1))
