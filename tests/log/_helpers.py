"""Batches for log tests, built with the project's record codec."""

from __future__ import annotations

from quorumq.protocol.records import Record, build_batch, decode_batch, iter_batch_headers


def batch(
    count: int = 1,
    *,
    timestamp: int = 1_000,
    keys: list[bytes | None] | None = None,
    values: list[bytes | None] | None = None,
    value_size: int = 10,
) -> bytes:
    """A producer batch of ``count`` records (base offset 0, as a client sends it)."""
    rows = []
    for i in range(count):
        key = keys[i] if keys is not None else None
        value = values[i] if values is not None else bytes([i % 256]) * value_size
        rows.append(Record(i, timestamp + i, key, value))
    return build_batch(rows)


def offsets_in(records: bytes) -> list[int]:
    """Every record offset in a record set (decoding each batch)."""
    out: list[int] = []
    position = 0
    for header in iter_batch_headers(records):
        out.extend(r.offset for r in decode_batch(records, position)[1])
        position += header.size
    return out


def batch_ranges(records: bytes) -> list[tuple[int, int]]:
    """``(base_offset, last_offset)`` of each batch of a record set."""
    return [(h.base_offset, h.last_offset) for h in iter_batch_headers(records)]
