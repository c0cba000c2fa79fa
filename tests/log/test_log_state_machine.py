"""A hypothesis state machine drives PartitionLog against a plain in-memory model.

The model is the list of records the log must serve, each with its batch's offset range. Rules
append, read, truncate, roll, reopen (clean or crashed), apply retention and compaction; after
every step a full scan of the log must match the model exactly.
"""

from __future__ import annotations

import shutil
import tempfile
from pathlib import Path

import attrs
from hypothesis import settings
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, invariant, rule

from quorumq.errors import OffsetOutOfRange
from quorumq.log import LogConfig, PartitionLog
from quorumq.protocol.records import Record, build_batch, decode_batch, iter_batch_headers

CONFIG = LogConfig(
    segment_bytes=700,
    index_interval_bytes=90,
    retention_ms=5_000,
    retention_bytes=2_500,
    cleanup_policy=frozenset({"compact", "delete"}),
    delete_retention_ms=2_000,
)
KEYS = [b"a", b"b", b"c", b"d", None]


@attrs.frozen
class ModelRecord:
    offset: int
    key: bytes | None
    value: bytes | None
    timestamp: int
    batch: tuple[int, int]  # (base_offset, last_offset) of its batch


def _scan(log: PartitionLog) -> list[tuple[int, bytes | None, bytes | None]]:
    """Every record the log serves, by fetching from the log start offset to the end."""
    out: list[tuple[int, bytes | None, bytes | None]] = []
    offset = log.log_start_offset
    while offset < log.log_end_offset:
        data = log.read(offset, 300).records
        headers = list(iter_batch_headers(data))
        if not headers:
            break
        position = 0
        for header in headers:
            # A batch straddling the log start offset is served whole (as Kafka does); the
            # records below the log start are the consumer's to skip.
            out += [
                (r.offset, r.key, r.value)
                for r in decode_batch(data, position)[1]
                if r.offset >= log.log_start_offset
            ]
            position += header.size
        offset = headers[-1].next_offset
    return out


class PartitionLogMachine(RuleBasedStateMachine):
    def __init__(self) -> None:
        super().__init__()
        self.directory = Path(tempfile.mkdtemp(prefix="qq-log-sm-"))
        self.now_ms = 0
        self.log = PartitionLog.open(self.directory, CONFIG, now_ms=0)
        self.records: list[ModelRecord] = []
        self.batches: list[tuple[int, int]] = []  # (base, last) of every batch in the log
        self.log_start_offset = 0
        self.log_end_offset = 0

    def teardown(self) -> None:
        if not self.log.closed:
            self.log.close()
        shutil.rmtree(self.directory, ignore_errors=True)

    # --- rules -----------------------------------------------------------------------------

    @rule(
        batches=st.lists(
            st.lists(
                st.tuples(st.sampled_from(KEYS), st.none() | st.binary(min_size=0, max_size=30)),
                min_size=1,
                max_size=5,
            ),
            min_size=1,
            max_size=3,
        ),
        advance_ms=st.integers(0, 1500),
    )
    def append(
        self, batches: list[list[tuple[bytes | None, bytes | None]]], advance_ms: int
    ) -> None:
        self.now_ms += advance_ms
        data = b"".join(
            build_batch([Record(i, self.now_ms, k, v) for i, (k, v) in enumerate(rows)])
            for rows in batches
        )
        info = self.log.append(data, leader_epoch=1, now_ms=self.now_ms)
        assert info.first_offset == self.log_end_offset
        offset = self.log_end_offset
        for rows in batches:
            span = (offset, offset + len(rows) - 1)
            self.batches.append(span)
            for k, v in rows:
                self.records.append(ModelRecord(offset, k, v, self.now_ms, span))
                offset += 1
        assert info.last_offset == offset - 1
        self.log_end_offset = offset

    @rule(where=st.floats(0, 1), max_bytes=st.integers(1, 2000))
    def read(self, where: float, max_bytes: int) -> None:
        span = self.log_end_offset - self.log_start_offset
        fetch = self.log_start_offset + int(where * span)
        data = self.log.read(fetch, max_bytes).records
        headers = list(iter_batch_headers(data))
        later = [r for r in self.records if r.batch[1] >= fetch]
        got = []
        position = 0
        for header in headers:
            got += [
                (r.offset, r.key, r.value)
                for r in decode_batch(data, position)[1]
                if r.offset >= self.log_start_offset
            ]
            position += header.size
        if not later:
            # Only batches emptied by compaction or below the log start may come back.
            assert [row for row in got if row[0] >= fetch] == []
            return
        assert headers, "a fetch below the LEO with data after it returns at least one batch"
        assert len(headers) == 1 or len(data) <= max_bytes
        first = headers[0]
        assert first.base_offset <= max(fetch, later[0].batch[0])
        expected = [
            (r.offset, r.key, r.value)
            for r in self.records
            if first.base_offset <= r.offset <= headers[-1].last_offset
        ]
        assert got == expected

    @rule(where=st.floats(0, 1), max_bytes=st.integers(1, 2000), hw_where=st.floats(0, 1))
    def read_below_high_watermark(self, where: float, max_bytes: int, hw_where: float) -> None:
        span = self.log_end_offset - self.log_start_offset
        fetch = self.log_start_offset + int(where * span)
        high_watermark = fetch + int(hw_where * (self.log_end_offset - fetch))
        data = self.log.read(fetch, max_bytes, max_offset=high_watermark).records
        for header in iter_batch_headers(data):
            assert header.base_offset < high_watermark

    @rule(beyond=st.integers(1, 5))
    def read_out_of_range(self, beyond: int) -> None:
        for offset in (self.log_end_offset + beyond, self.log_start_offset - beyond):
            if offset >= 0:
                try:
                    self.log.read(offset, 100)
                except OffsetOutOfRange:
                    pass
                else:
                    raise AssertionError(f"read({offset}) outside the log did not fail")

    @rule(where=st.floats(0, 1.1))
    def truncate(self, where: float) -> None:
        span = self.log_end_offset - self.log_start_offset
        offset = self.log_start_offset + int(where * span)
        self.log.truncate_to(offset)
        if offset >= self.log_end_offset:
            return
        cut = [base for base, last in self.batches if last >= offset]
        self.records = [r for r in self.records if r.batch[1] < offset]
        self.batches = [(base, last) for base, last in self.batches if last < offset]
        if offset < self.log_start_offset:
            new_end = self.log_start_offset = offset  # below the start: the log restarts
        else:
            new_end = max(min([offset, *cut]), self.log_start_offset)
        self.log_end_offset = new_end
        assert self.log.log_end_offset == new_end

    @rule(where=st.floats(0, 1))
    def delete_records(self, where: float) -> None:
        offset = self.log_start_offset + int(where * (self.log_end_offset - self.log_start_offset))
        self.log.advance_log_start_offset(offset)
        self.log_start_offset = max(self.log_start_offset, offset)
        self.batches = [(b, last) for b, last in self.batches if last >= self.log_start_offset]
        # Records below the new start stay on disk until their segment goes, but are not served.
        self.records = [r for r in self.records if r.offset >= self.log_start_offset]

    @rule()
    def flush(self) -> None:
        self.log.flush(now_ms=self.now_ms)
        assert self.log.flushed_offset == self.log_end_offset
        assert self.log.unflushed_messages == 0

    @rule()
    def roll(self) -> None:
        self.log.roll(now_ms=self.now_ms)

    @rule(clean=st.booleans())
    def reopen(self, clean: bool) -> None:
        if clean:
            self.log.close()
        else:
            self.log._close_segments()
        self.log = PartitionLog.open(self.directory, CONFIG, now_ms=self.now_ms)
        # Reopening may only move the log start up to the first segment (never past data).
        assert self.log.log_end_offset == self.log_end_offset
        assert self.log.log_start_offset >= self.log_start_offset
        assert all(r.offset >= self.log.log_start_offset for r in self.records)
        self.log_start_offset = self.log.log_start_offset

    @rule(advance_ms=st.integers(0, 8000))
    def retention(self, advance_ms: int) -> None:
        self.now_ms += advance_ms
        active_base = self.log.active_segment.base_offset
        self.log.delete_old_segments(now_ms=self.now_ms)
        start = self.log.log_start_offset
        assert self.log_start_offset <= start <= max(active_base, self.log_start_offset)
        assert self.log.log_end_offset == self.log_end_offset
        self.records = [r for r in self.records if r.offset >= start]
        self.batches = [(b, last) for b, last in self.batches if last >= start]
        self.log_start_offset = start

    @rule(advance_ms=st.integers(0, 3000))
    def compact(self, advance_ms: int) -> None:
        self.now_ms += advance_ms
        result = self.log.compact(now_ms=self.now_ms)
        limit = result.first_uncleanable_offset
        after = _scan(self.log)
        kept = set(after)
        latest: dict[bytes, int] = {}
        for r in self.records:
            if r.key is not None and r.offset < limit:
                latest[r.key] = r.offset
        survivors = []
        for r in self.records:
            row = (r.offset, r.key, r.value)
            if r.offset >= limit or r.key is None:
                assert row in kept, f"compaction removed {row} it had no reason to"
            elif latest[r.key] == r.offset:
                tombstone_expired = r.value is None and r.timestamp < self.now_ms - 2_000
                assert (row in kept) != tombstone_expired
            else:
                assert row not in kept, f"compaction kept superseded {row}"
            if row in kept:
                survivors.append(r)
        self.records = survivors
        assert self.log.log_end_offset == self.log_end_offset
        # Compaction may drop batches, never create one or change an offset range.
        present = [
            (h.base_offset, h.last_offset)
            for segment in self.log.segments
            for h in iter_batch_headers(segment.read(0, segment.size))
            if h.last_offset >= self.log_start_offset
        ]
        assert set(present) <= set(self.batches)
        self.batches = present

    # --- invariants ------------------------------------------------------------------------

    @invariant()
    def log_matches_model(self) -> None:
        assert self.log.log_end_offset == self.log_end_offset
        assert self.log.log_start_offset == self.log_start_offset
        assert _scan(self.log) == [(r.offset, r.key, r.value) for r in self.records]


PartitionLogMachine.TestCase.settings = settings(
    max_examples=120, stateful_step_count=40, deadline=None
)
test_partition_log_state_machine = PartitionLogMachine.TestCase
