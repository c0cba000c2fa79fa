"""Zigzag varints against kafka-python's encoder and decoder."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from kafka.record.util import decode_varint as kafka_decode_varint
from kafka.record.util import encode_varint as kafka_encode_varint

from quorumq.errors import CorruptRecord
from quorumq.protocol.records._varint import decode_varint, encode_varint, size_of_varint

_int64 = st.integers(min_value=-(2**63), max_value=2**63 - 1)


def _kafka_encoding(value: int) -> bytes:
    out = bytearray()
    kafka_encode_varint(value, out.append)
    return bytes(out)


@settings(max_examples=300, deadline=None)
@given(value=_int64 | st.integers(min_value=-20_000, max_value=20_000))
def test_varint_matches_kafka_python(value: int) -> None:
    encoded = encode_varint(value)
    assert encoded == _kafka_encoding(value)
    assert size_of_varint(value) == len(encoded)
    assert decode_varint(b"\xaa" + encoded + b"\xbb", 1) == (value, 1 + len(encoded))
    assert kafka_decode_varint(bytearray(encoded), 0) == (value, len(encoded))


def test_varint_refuses_values_beyond_64_bits() -> None:
    with pytest.raises(OverflowError):
        encode_varint(2**63)


@pytest.mark.parametrize(
    "raw",
    [b"", b"\x80", b"\xff" * 3, b"\xff" * 11, b"\xff" * 9 + b"\x7f"],
    ids=["empty", "unterminated", "truncated", "too-long", "beyond-64-bits"],
)
def test_bad_varints_are_corrupt(raw: bytes) -> None:
    with pytest.raises(CorruptRecord):
        decode_varint(raw, 0)
