"""The records every client test produces and expects back, and the check that they did."""

from __future__ import annotations

import attrs

BASE_TIMESTAMP_MS = 1_700_000_000_000


@attrs.frozen
class Sample:
    key: bytes
    value: bytes
    headers: tuple[tuple[str, bytes], ...]
    timestamp_ms: int


def samples(count: int, *, tag: str = "") -> list[Sample]:
    """``count`` keyed records with two headers and distinct, increasing timestamps."""
    return [
        Sample(
            key=f"key-{tag}{i}".encode(),
            value=(f"value-{tag}{i}-" + "x" * (i % 97)).encode(),
            headers=(("seq", str(i).encode()), ("tag", tag.encode())),
            timestamp_ms=BASE_TIMESTAMP_MS + i,
        )
        for i in range(count)
    ]


@attrs.frozen
class Received:
    offset: int
    key: bytes | None
    value: bytes | None
    headers: tuple[tuple[str, bytes], ...]
    timestamp_ms: int


def check_round_trip(sent: list[Sample], received: list[Received], first_offset: int = 0) -> None:
    """Asserts that ``received`` is ``sent``, in order, at dense offsets from ``first_offset``."""
    assert len(received) == len(sent), f"sent {len(sent)}, received {len(received)}"
    for i, (s, r) in enumerate(zip(sent, received, strict=True)):
        assert r.offset == first_offset + i, f"record {i} at offset {r.offset}"
        assert (r.key, r.value, r.headers, r.timestamp_ms) == (
            s.key,
            s.value,
            s.headers,
            s.timestamp_ms,
        ), f"record {i} differs"
