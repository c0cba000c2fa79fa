"""LeaderEpochCache against the cases of Kafka's LeaderEpochFileCacheTest, plus the checkpoint."""

from __future__ import annotations

import itertools
import os
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from quorumq.errors import KafkaStorageError
from quorumq.replication import (
    UNDEFINED_EPOCH,
    UNDEFINED_EPOCH_OFFSET,
    EpochEntry,
    LeaderEpochCache,
    load_checkpoint,
    rebuild_from_log,
    save_checkpoint,
)

UNDEFINED = (UNDEFINED_EPOCH, UNDEFINED_EPOCH_OFFSET)


def _pairs(cache: LeaderEpochCache) -> list[tuple[int, int]]:
    return [(e.leader_epoch, e.start_offset) for e in cache.entries]


def test_epoch_cache_latest_epoch_ends_at_log_end_offset() -> None:
    cache = LeaderEpochCache.from_entries([(2, 6), (3, 8), (4, 11)])
    assert cache.end_offset_for(4, 20) == (4, 20)
    assert cache.latest_epoch == 4
    assert cache.latest_entry == EpochEntry(4, 11)


def test_epoch_cache_undefined_epoch_request_is_undefined() -> None:
    cache = LeaderEpochCache.from_entries([(2, 6)])
    assert cache.end_offset_for(UNDEFINED_EPOCH, 10) == UNDEFINED


def test_epoch_cache_empty_answers_undefined() -> None:
    cache = LeaderEpochCache()
    assert cache.latest_epoch is None
    assert cache.end_offset_for(0, 0) == UNDEFINED
    assert cache.end_offset_for(UNDEFINED_EPOCH, 0) == UNDEFINED
    assert cache.epoch_for_offset(0) is None


def test_epoch_cache_epoch_older_than_first_answers_first_start_offset() -> None:
    cache = LeaderEpochCache.from_entries([(5, 11), (6, 12)])
    assert cache.end_offset_for(4, 20) == (4, 11)


def test_epoch_cache_previous_epoch_ends_where_next_starts() -> None:
    cache = LeaderEpochCache()
    assert cache.assign(1, 5)
    assert not cache.assign(1, 6)
    assert not cache.assign(1, 7)
    assert cache.assign(2, 8)
    assert not cache.assign(2, 9)
    assert _pairs(cache) == [(1, 5), (2, 8)]
    assert cache.end_offset_for(1, 11) == (1, 8)


def test_epoch_cache_gap_in_epochs_answers_floor_epoch() -> None:
    cache = LeaderEpochCache.from_entries([(0, 10), (2, 13), (4, 17)])
    assert cache.end_offset_for(0, 20) == (0, 13)
    assert cache.end_offset_for(1, 20) == (0, 13)
    assert cache.end_offset_for(2, 20) == (2, 17)
    assert cache.end_offset_for(3, 20) == (2, 17)
    assert cache.end_offset_for(4, 20) == (4, 20)


def test_epoch_cache_newer_epoch_than_known_is_undefined() -> None:
    cache = LeaderEpochCache.from_entries([(2, 100)])
    assert cache.end_offset_for(3, 110) == UNDEFINED


def test_epoch_cache_same_epoch_earlier_offset_truncates_non_monotonic_entries() -> None:
    cache = LeaderEpochCache.from_entries([(5, 11), (6, 12), (7, 13)])
    assert cache.assign(7, 12)
    assert _pairs(cache) == [(5, 11), (7, 12)]


def test_epoch_cache_lower_epoch_replaces_newer_entries() -> None:
    cache = LeaderEpochCache.from_entries([(2, 6), (3, 8), (4, 11)])
    assert cache.assign(3, 9)
    assert _pairs(cache) == [(2, 6), (3, 9)]


def test_epoch_cache_rejects_negative_entries() -> None:
    with pytest.raises(KafkaStorageError):
        LeaderEpochCache().assign(-1, 0)
    with pytest.raises(KafkaStorageError):
        LeaderEpochCache().assign(0, -5)


def test_epoch_cache_truncate_from_end() -> None:
    cache = LeaderEpochCache.from_entries([(2, 6), (3, 8), (4, 11)])
    assert not cache.truncate_from_end(12)  # nothing removed: no checkpoint write needed
    assert _pairs(cache) == [(2, 6), (3, 8), (4, 11)]
    assert cache.truncate_from_end(9)
    assert _pairs(cache) == [(2, 6), (3, 8)]
    assert cache.truncate_from_end(8)
    assert _pairs(cache) == [(2, 6)]
    assert not cache.truncate_from_end(-1)
    assert _pairs(cache) == [(2, 6)]
    assert cache.truncate_from_end(0)
    assert _pairs(cache) == []


@pytest.mark.parametrize(
    ("start_offset", "expected"),
    [
        (5, [(2, 6), (3, 8), (4, 11)]),
        (6, [(2, 6), (3, 8), (4, 11)]),
        (8, [(3, 8), (4, 11)]),
        (9, [(3, 9), (4, 11)]),
        (11, [(4, 11)]),
        (12, [(4, 12)]),
        (17, [(4, 17)]),
    ],
)
def test_epoch_cache_truncate_from_start(
    start_offset: int, expected: list[tuple[int, int]]
) -> None:
    cache = LeaderEpochCache.from_entries([(2, 6), (3, 8), (4, 11)])
    cache.truncate_from_start(start_offset)
    assert _pairs(cache) == expected


def test_epoch_cache_epoch_for_offset() -> None:
    cache = LeaderEpochCache.from_entries([(2, 6), (3, 8), (4, 11)])
    assert cache.epoch_for_offset(5) is None
    assert cache.epoch_for_offset(6) == 2
    assert cache.epoch_for_offset(10) == 3
    assert cache.epoch_for_offset(1000) == 4


def test_epoch_cache_checkpoint_text_matches_kafka_format() -> None:
    cache = LeaderEpochCache.from_entries([(0, 0), (1, 100), (3, 250)])
    assert cache.to_checkpoint() == "0\n3\n0 0\n1 100\n3 250\n"
    assert _pairs(LeaderEpochCache.from_checkpoint(cache.to_checkpoint())) == _pairs(cache)
    assert LeaderEpochCache().to_checkpoint() == "0\n0\n"
    assert len(LeaderEpochCache.from_checkpoint("")) == 0
    assert len(LeaderEpochCache.from_checkpoint("0\n")) == 0


@pytest.mark.parametrize(
    "text",
    [
        "1\n0\n",  # unknown version
        "x\n0\n",
        "0\n2\n0 0\n",  # fewer entries than announced
        "0\n1\n0 0\n1 5\n",  # more entries than announced
        "0\n1\n0\n",  # one field
        "0\n1\n0 0 0\n",  # three fields
        "0\n1\na 0\n",
        "0\n1\n0 1_0\n",
        "0\n1\n-1 0\n",  # negative epoch
        "0\n1\n0 -4\n",  # negative offset
        "0\n\n",  # empty count
    ],
)
def test_epoch_cache_bad_checkpoint_raises_storage_error(text: str) -> None:
    with pytest.raises(KafkaStorageError):
        LeaderEpochCache.from_checkpoint(text)


def test_epoch_cache_save_and_load_checkpoint(tmp_path: Path) -> None:
    path = tmp_path / "leader-epoch-checkpoint"
    assert len(load_checkpoint(path)) == 0
    cache = LeaderEpochCache.from_entries([(0, 0), (4, 42)])
    save_checkpoint(path, cache)
    assert path.read_text() == "0\n2\n0 0\n4 42\n"
    assert _pairs(load_checkpoint(path)) == [(0, 0), (4, 42)]
    cache.assign(5, 50)
    save_checkpoint(path, cache)
    assert _pairs(load_checkpoint(path)) == [(0, 0), (4, 42), (5, 50)]
    assert sorted(os.listdir(tmp_path)) == ["leader-epoch-checkpoint"]


def test_epoch_cache_save_into_missing_directory_raises_storage_error(tmp_path: Path) -> None:
    with pytest.raises(KafkaStorageError):
        save_checkpoint(tmp_path / "missing" / "leader-epoch-checkpoint", LeaderEpochCache())


def test_epoch_cache_load_binary_garbage_raises_storage_error(tmp_path: Path) -> None:
    path = tmp_path / "leader-epoch-checkpoint"
    path.write_bytes(b"\xff\xfe\x00")
    with pytest.raises(KafkaStorageError):
        load_checkpoint(path)


_ASSIGNS = st.lists(st.tuples(st.integers(0, 12), st.integers(0, 200)), min_size=0, max_size=25)


@settings(max_examples=150, deadline=None)
@given(_ASSIGNS, st.integers(-1, 14), st.integers(0, 250))
def test_epoch_cache_stays_monotonic_and_answers_within_log(
    assigns: list[tuple[int, int]], requested: int, extra: int
) -> None:
    cache = LeaderEpochCache.from_entries(assigns)
    pairs = _pairs(cache)
    assert all(a[0] < b[0] and a[1] <= b[1] for a, b in itertools.pairwise(pairs))
    log_end_offset = (pairs[-1][1] if pairs else 0) + extra
    epoch, end_offset = cache.end_offset_for(requested, log_end_offset)
    if (epoch, end_offset) != UNDEFINED:
        assert epoch <= requested
        assert end_offset <= log_end_offset
    assert _pairs(LeaderEpochCache.from_checkpoint(cache.to_checkpoint())) == pairs


# --- rebuilt from the log on open -------------------------------------------------------------


def _rebuilt(
    checkpoint: list[tuple[int, int]], log_start: int, batches: list[tuple[int, int]]
) -> list[tuple[int, int]]:
    return _pairs(rebuild_from_log(LeaderEpochCache.from_entries(checkpoint), log_start, batches))


def test_the_log_decides_every_epoch_it_holds() -> None:
    # No checkpoint at all (lost, or never written): the batches say it all.
    assert _rebuilt([], 0, [(1, 0), (1, 5), (3, 10)]) == [(1, 0), (3, 10)]
    # A checkpoint entry inside the log that the log contradicts (a truncation whose rewrite
    # was lost, then other epochs' records written there): the log wins.
    assert _rebuilt([(1, 0), (5, 100)], 0, [(1, 0), (4, 100), (6, 150)]) == [
        (1, 0),
        (4, 100),
        (6, 150),
    ]
    # Batches without an epoch are skipped.
    assert _rebuilt([], 0, [(-1, 0), (2, 3)]) == [(2, 3)]


def test_the_checkpoint_keeps_only_history_before_the_log_start() -> None:
    assert _rebuilt([(1, 0), (2, 50), (3, 90)], 100, [(3, 100), (4, 120)]) == [
        (1, 0),
        (2, 50),
        (3, 90),
        (4, 120),
    ]
    # History may not claim an epoch newer than the log's first batch.
    assert _rebuilt([(1, 0), (5, 90)], 100, [(3, 100)]) == [(1, 0), (3, 100)]
    # An empty log (retention took everything): the history, less epochs that start at the end.
    assert _rebuilt([(1, 0), (2, 10)], 20, []) == [(1, 0), (2, 10)]
    assert _rebuilt([(1, 0), (2, 20)], 20, []) == [(1, 0)]


def test_a_checkpoint_written_without_durability_skips_the_fsyncs(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    calls: list[int] = []
    real = os.fsync
    monkeypatch.setattr(os, "fsync", lambda fd: calls.append(fd) or real(fd))
    path = tmp_path / "leader-epoch-checkpoint"
    save_checkpoint(path, LeaderEpochCache.from_entries([(1, 0)]), durable=False)
    assert calls == []
    assert _pairs(load_checkpoint(path)) == [(1, 0)]
    save_checkpoint(path, LeaderEpochCache.from_entries([(1, 0), (2, 5)]))
    assert len(calls) == 2  # the file, then the directory
