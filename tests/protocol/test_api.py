"""Headers, framing, the hot paths' zero-copy promises and ApiVersions' special cases."""

from __future__ import annotations

import struct

import attrs
import pytest

from quorumq import protocol as p
from quorumq.errors import ErrorCode, InvalidRequest, UnsupportedVersion
from quorumq.protocol import (
    API_VERSIONS,
    ApiKey,
    ApiVersionsRequest,
    FetchResponse,
    FetchResponsePartition,
    FetchResponseTopic,
    FrameReader,
    ProduceRequest,
    ProduceRequestPartition,
    ProduceRequestTopic,
    RequestHeader,
    api_versions_response,
    decode_request,
    decode_request_header,
    decode_response,
    encode_request,
    encode_response,
    frame_bytes,
    is_flexible,
    peek_correlation_id,
    read_frame_size,
    request_header_version,
)


def _request_frame(api_key: ApiKey, version: int, request: object) -> bytes:
    return frame_bytes(encode_request(api_key, version, 42, "test-client", request))[4:]


def test_produce_request_records_are_slices_of_the_frame() -> None:
    batches = [bytes([i]) * (100 + i) for i in range(10)]
    request = ProduceRequest(
        acks=-1,
        timeout_ms=30_000,
        topics=[
            ProduceRequestTopic(
                name="orders",
                partitions=[
                    ProduceRequestPartition(partition_index=i, records=b)
                    for i, b in enumerate(batches)
                ],
            )
        ],
    )
    for version in range(3, 10):
        frame = _request_frame(ApiKey.PRODUCE, version, request)
        header, offset = decode_request_header(frame)
        decoded = decode_request(header, frame, offset)
        assert decoded == request
        for partition in decoded.topics[0].partitions:
            assert isinstance(partition.records, memoryview)
            assert partition.records.obj is frame  # zero copy: a view into the frame


def test_fetch_response_passes_stored_batches_through_uncopied() -> None:
    stored = [b"a" * 70, memoryview(b"b" * 80), bytearray(b"c" * 90)]
    response = FetchResponse(
        topics=[
            FetchResponseTopic(
                name="orders",
                partitions=[
                    FetchResponsePartition(partition_index=0, high_watermark=3, records=stored),
                    FetchResponsePartition(partition_index=1, high_watermark=0, records=stored[0]),
                    FetchResponsePartition(partition_index=2, high_watermark=0, records=None),
                ],
            )
        ]
    )
    for version in range(4, 13):
        header = RequestHeader(ApiKey.FETCH, version, 5, "c")
        parts = encode_response(header, response)
        for batch in stored:
            assert any(part is batch for part in parts)
        frame = frame_bytes(parts)
        assert read_frame_size(frame[:4], 1 << 20) == len(frame) - 4
        decoded = decode_response(ApiKey.FETCH, version, frame[4:])
        partitions = decoded.topics[0].partitions
        assert bytes(partitions[0].records) == b"".join(stored)
        assert bytes(partitions[1].records) == stored[0]
        assert partitions[2].records is None


def test_api_versions_above_ours_is_answered_as_v0_with_our_table() -> None:
    header = RequestHeader(ApiKey.API_VERSIONS, 7, 11, "new-client")
    answer = api_versions_response(error_code=ErrorCode.UNSUPPORTED_VERSION)
    frame = frame_bytes(encode_response(header, answer))[4:]
    assert peek_correlation_id(frame) == 11
    decoded = decode_response(ApiKey.API_VERSIONS, 0, frame)
    assert decoded.error_code == ErrorCode.UNSUPPORTED_VERSION
    assert {k.api_key: (k.min_version, k.max_version) for k in decoded.api_keys} == {
        int(k): v for k, v in API_VERSIONS.items()
    }
    # A v3 client reading the v0 error body still gets it (as Kafka's clients do).
    assert decode_response(ApiKey.API_VERSIONS, 3, frame).error_code == 35


def test_api_versions_v3_request_uses_header_v2_but_response_header_v0() -> None:
    frame = _request_frame(ApiKey.API_VERSIONS, 3, ApiVersionsRequest(client_software_name="x"))
    header, offset = decode_request_header(frame)
    assert header.flexible
    assert decode_request(header, frame, offset).client_software_name == "x"
    body = frame_bytes(encode_response(header, api_versions_response()))
    assert body[8:10] == b"\x00\x00"  # error_code right after the correlation id: no tag byte


def test_unsupported_version_and_unknown_api_key() -> None:
    header = RequestHeader(ApiKey.METADATA, 99, 1, None)
    with pytest.raises(UnsupportedVersion):
        decode_request(header, b"", 0)
    with pytest.raises(InvalidRequest):
        decode_request(RequestHeader(1000, 0, 1, None), b"", 0)


@pytest.mark.parametrize(
    "frame",
    [
        b"",
        b"\x00\x03",
        b"\x00\x03\x00\x08\x00\x00\x00\x01",
        b"\x00\x03\x00\x08\x00\x00\x00\x01\x00\x09ab",
    ],
)
def test_truncated_header_raises_invalid_request(frame: bytes) -> None:
    with pytest.raises(InvalidRequest):
        decode_request_header(frame)


def test_frame_reader_cuts_frames_and_refuses_oversized_prefix() -> None:
    reader = FrameReader(max_bytes=10)
    data = struct.pack(">i", 3) + b"abc" + struct.pack(">i", 0) + struct.pack(">i", 2) + b"x"
    for i in range(len(data)):  # one byte at a time
        reader.feed(data[i : i + 1])
    frames = []
    while (frame := reader.next_frame()) is not None:
        frames.append(bytes(frame))
    assert frames == [b"abc", b""]
    assert reader.buffered == 1
    reader = FrameReader(max_bytes=10)
    reader.feed(struct.pack(">i", 11))
    with pytest.raises(InvalidRequest):
        reader.next_frame()
    with pytest.raises(InvalidRequest):
        read_frame_size(struct.pack(">i", -1), 10)


def _kafka_request_schemas() -> list[tuple[int, str]]:
    """(api key, flexibleVersions) of every request schema kafka-python ships (Kafka's JSON)."""
    from importlib import resources

    from kafka.protocol.schemas.load_json import load_json

    out = []
    for entry in resources.files("kafka.protocol.schemas.resources").iterdir():
        if entry.name.endswith("Request.json"):
            data = load_json(entry.name[: -len(".json")], "kafka.protocol.schemas.resources")
            out.append((data["apiKey"], data["flexibleVersions"]))
    return sorted(out)


def test_flexible_versions_match_kafkas_schemas() -> None:
    schemas = _kafka_request_schemas()
    assert len(schemas) > 40
    for api_key, flexible in schemas:
        first = None if flexible == "none" else int(flexible.rstrip("+"))
        assert request_header_version(api_key, 100) == (1 if first is None else 2), api_key
        if first is not None:
            assert is_flexible(api_key, first), api_key
            assert not is_flexible(api_key, first - 1) if first > 0 else True, api_key


def test_broker_heartbeat_is_kafka_s_bytes_with_quorumq_s_tags_on_top() -> None:
    """BrokerHeartbeat v0 as Kafka's schema lays it out (kafka-python has no codec for it):
    without quorumq's fields the bytes are exactly Kafka's; with them, three tagged fields
    follow, which a Kafka controller would skip, and they decode back."""
    bare = p.BrokerHeartbeatRequest(broker_id=2, broker_epoch=9, current_metadata_offset=40)
    frame = frame_bytes(p.encode_request(p.ApiKey.BROKER_HEARTBEAT, 0, 7, "b", bare))
    kafka = (
        struct.pack(">hhih", 63, 0, 7, 1)  # header v2: key, version, correlation id, client id
        + b"b"
        + b"\x00"  # the header's tagged fields
        + struct.pack(">iqq??", 2, 9, 40, False, False)
        + b"\x00"  # the body's tagged fields
    )
    assert frame == struct.pack(">i", len(kafka)) + kafka
    report = p.BrokerHeartbeatReplicaReport(
        topic="t", partition_index=1, last_leader_epoch=3, log_end_offset=42, current_leader_epoch=4
    )
    full = attrs.evolve(bare, replica_reports=[report], quorumq_sent_ms=5, quorumq_mac=b"\x01" * 32)
    frame = frame_bytes(p.encode_request(p.ApiKey.BROKER_HEARTBEAT, 1, 7, "b", full))
    header, offset = p.decode_request_header(frame[4:])
    assert p.decode_request(header, frame[4:], offset) == full
    body = frame[4 + len(kafka) - 1 :]  # after the fixed fields: the tagged-field section
    assert body[0] == 3  # three tagged fields (reports, send time, MAC), Kafka's own absent


def test_broker_heartbeat_carries_leadership_transfers_both_ways_as_tagged_fields() -> None:
    """A drained transfer rides in the request, the transfers to drain for in the response;
    both are tagged fields a Kafka peer skips, absent (Kafka's bytes) when empty."""
    drained = p.BrokerHeartbeatPartitionEpoch(topic="t", partition_index=1, leader_epoch=7)
    request = p.BrokerHeartbeatRequest(broker_id=2, broker_epoch=9, quorumq_drained=[drained])
    frame = frame_bytes(p.encode_request(p.ApiKey.BROKER_HEARTBEAT, 1, 7, "b", request))
    header, offset = p.decode_request_header(frame[4:])
    assert p.decode_request(header, frame[4:], offset) == request
    transfer = p.BrokerHeartbeatTransfer(topic="t", partition_index=1, leader_epoch=7, target_id=0)
    for transfers in ([transfer], ()):
        response = p.BrokerHeartbeatResponse(is_fenced=False, quorumq_transfers=transfers)
        request_header = p.RequestHeader(p.ApiKey.BROKER_HEARTBEAT, 1, 7, "b")
        out = frame_bytes(p.encode_response(request_header, response))
        assert p.decode_response(p.ApiKey.BROKER_HEARTBEAT, 1, out[4:]) == response
        bare = frame_bytes(
            p.encode_response(request_header, attrs.evolve(response, quorumq_transfers=[]))
        )
        assert (out == bare) == (not transfers)
