"""The schema codec's own rules: varints, tagged fields, nulls, hostile lengths."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from quorumq.errors import InvalidRequest
from quorumq.protocol import (
    ApiKey,
    ApiVersionsRequest,
    FetchEpochEndOffset,
    FetchResponse,
    FetchResponsePartition,
    FetchResponseTopic,
    MetadataRequest,
    ProduceRequest,
    ProduceRequestTopic,
    RequestHeader,
    decode_request,
    decode_request_header,
    decode_response,
    encode_request,
    encode_response,
    frame_bytes,
)
from quorumq.protocol._codec import read_uvarint, write_uvarint


@settings(max_examples=200, deadline=None)
@given(st.integers(0, 2**32 - 1))
def test_uvarint_round_trip(value: int) -> None:
    out = bytearray()
    write_uvarint(out, value)
    assert read_uvarint(memoryview(bytes(out)), 0) == (value, len(out))


def test_uvarint_longer_than_five_bytes_is_malformed() -> None:
    with pytest.raises(InvalidRequest):
        read_uvarint(memoryview(b"\x80\x80\x80\x80\x80\x01"), 0)


def test_unknown_tagged_fields_are_skipped_in_header_and_body() -> None:
    # ApiVersions v3: header v2 and body both end with tagged-field sections.
    frame = bytearray(b"\x00\x12\x00\x03\x00\x00\x00\x05\x00\x01c")
    frame += b"\x01\x07\x02zz"  # header: one unknown tag 7 of 2 bytes
    frame += b"\x02n\x02v"  # client_software_name "n", client_software_version "v"
    frame += b"\x02\x05\x01x\x09\x00"  # body: tags 5 (1 byte) and 9 (empty)
    header, offset = decode_request_header(bytes(frame))
    assert header == RequestHeader(ApiKey.API_VERSIONS, 3, 5, "c")
    assert decode_request(header, bytes(frame), offset) == ApiVersionsRequest(
        client_software_name="n", client_software_version="v"
    )


def test_tagged_field_written_only_when_not_default() -> None:
    def partition(**kw: object) -> FetchResponse:
        return FetchResponse(
            topics=[
                FetchResponseTopic(
                    name="t",
                    partitions=[FetchResponsePartition(partition_index=0, high_watermark=0, **kw)],
                )
            ]
        )

    header = RequestHeader(ApiKey.FETCH, 12, 1, None)
    plain = frame_bytes(encode_response(header, partition()))
    diverging = partition(diverging_epoch=FetchEpochEndOffset(epoch=3, end_offset=10))
    tagged = frame_bytes(encode_response(header, diverging))
    assert len(tagged) == len(plain) + 2 + 4 + 8 + 1  # tag, size, epoch, end_offset, no tags
    assert decode_response(ApiKey.FETCH, 12, tagged[4:]) == diverging


def test_null_where_the_version_forbids_it() -> None:
    # Metadata v0 had no null topic list; v1+ may be null (all topics). We speak 1+.
    frame = frame_bytes(encode_request(ApiKey.METADATA, 1, 1, None, MetadataRequest(topics=None)))
    header, offset = decode_request_header(frame[4:])
    assert decode_request(header, frame[4:], offset).topics is None
    with pytest.raises(ValueError, match="not nullable"):
        topic = ProduceRequestTopic(name=None, partitions=[])  # type: ignore[arg-type]
        encode_request(
            ApiKey.PRODUCE, 8, 1, None, ProduceRequest(acks=1, timeout_ms=1, topics=[topic])
        )


@pytest.mark.parametrize(
    "body",
    [
        b"\x7f\xff\xff\xff",  # 2**31-1 topics in 0 bytes
        b"\x00\x00\x00\x01\x00\x05ab",  # a topic name longer than the frame
        b"\x00\x00\x00\x01\xff\xfe",  # a string length of -2
        b"\xff\xff\xff\xfe",  # an array length of -2
    ],
)
def test_hostile_lengths_are_invalid_requests(body: bytes) -> None:
    frame = b"\x00\x03\x00\x01\x00\x00\x00\x01\xff\xff" + body  # Metadata v1, null client id
    header, offset = decode_request_header(frame)
    with pytest.raises(InvalidRequest):
        decode_request(header, frame, offset)
