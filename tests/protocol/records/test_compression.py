"""The codecs: round trips, Kafka's framings, and garbage that must be CorruptRecord only."""

from __future__ import annotations

from contextlib import suppress

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from quorumq.errors import CorruptRecord, UnsupportedCompressionType
from quorumq.protocol.records import Compression, compress, decompress
from quorumq.protocol.records._compression import XERIAL_MAGIC

COMPRESSED = [c for c in Compression if c != Compression.NONE]


@settings(max_examples=40, deadline=None)
@given(codec=st.sampled_from(COMPRESSED), data=st.binary(max_size=5_000))
def test_compress_then_decompress_round_trips(codec: Compression, data: bytes) -> None:
    assert decompress(codec, compress(codec, data)) == data
    assert decompress(codec, memoryview(bytearray(compress(codec, data)))) == data


@settings(max_examples=200, deadline=None)
@given(codec=st.sampled_from(COMPRESSED), garbage=st.binary(max_size=200))
def test_garbage_is_corrupt_or_decodes(codec: Compression, garbage: bytes) -> None:
    with suppress(CorruptRecord):
        decompress(codec, garbage)


@settings(max_examples=100, deadline=None)
@given(
    codec=st.sampled_from(COMPRESSED),
    data=st.binary(min_size=1, max_size=2_000),
    cut=st.integers(min_value=0),
)
def test_truncated_streams_are_corrupt(codec: Compression, data: bytes, cut: int) -> None:
    stream = compress(codec, data)
    truncated = stream[: cut % len(stream)]
    try:
        result = decompress(codec, truncated)
    except CorruptRecord:
        return
    assert len(result) < len(data) or codec == Compression.SNAPPY  # a whole xerial prefix


def test_snappy_is_written_in_xerial_framing_of_32_kib_blocks() -> None:
    data = bytes(range(256)) * 300  # 75 KiB: three blocks
    stream = compress(Compression.SNAPPY, data)
    assert stream.startswith(XERIAL_MAGIC + b"\x00\x00\x00\x01\x00\x00\x00\x01")


def test_lz4_frames_have_independent_blocks() -> None:
    stream = compress(Compression.LZ4, b"x" * 1000)
    assert stream[:4] == b"\x04\x22\x4d\x18"
    assert stream[4] & 0x20  # FLG.B.Indep: Kafka refuses linked blocks (KIP-57)


def test_levels_are_honoured() -> None:
    data = bytes(range(256)) * 64
    fast = compress(Compression.GZIP, data, level=1)
    best = compress(Compression.GZIP, data, level=9)
    assert decompress(Compression.GZIP, fast) == decompress(Compression.GZIP, best) == data


@pytest.mark.parametrize("codec", [Compression.NONE, 5, 7])
def test_no_codec_is_unsupported(codec: int) -> None:
    with pytest.raises(UnsupportedCompressionType):
        compress(codec, b"x")  # type: ignore[arg-type]
    with pytest.raises(UnsupportedCompressionType):
        decompress(codec, b"x")
