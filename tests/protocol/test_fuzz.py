"""Random, mutated and truncated frames only ever raise QuorumqError subclasses.

The broker's dispatcher catches ``QuorumqError`` and answers or closes the connection; any other
exception from the codec would be a bug that kills a connection task with a traceback.
"""

from __future__ import annotations

import contextlib
from typing import Any

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from quorumq.errors import QuorumqError
from quorumq.protocol import (
    ApiKey,
    api_spec,
    codec_versions,
    decode_request,
    decode_request_header,
    decode_response,
    encode_request,
    encode_response,
    frame_bytes,
)
from tests.protocol.kafka_python_bridge import values

CASES = [
    (api_key, version)
    for api_key, (lo, hi) in sorted(codec_versions().items())
    for version in range(lo, hi + 1)
]
FUZZ = settings(max_examples=150, deadline=None, suppress_health_check=list(HealthCheck))


@st.composite
def _mutated(draw: st.DrawFn, frame: bytes) -> bytes:
    """Truncates, flips, overwrites with extremes, or inserts bytes."""
    data = bytearray(frame)
    for _ in range(draw(st.integers(1, 4))):
        kind = draw(st.sampled_from(["truncate", "flip", "extreme", "insert"]))
        if not data:
            break
        at = draw(st.integers(0, len(data) - 1))
        if kind == "truncate":
            del data[at:]
        elif kind == "flip":
            data[at] ^= 1 << draw(st.integers(0, 7))
        elif kind == "extreme":
            data[at : at + 4] = draw(
                st.sampled_from([b"\xff\xff\xff\xff", b"\x7f\xff\xff\xff", b"\x80\x00", b"\xff"])
            )
        else:
            data[at:at] = draw(st.binary(min_size=1, max_size=4))
    return bytes(data)


def _decode_request_or_error(frame: bytes) -> Any:
    try:
        header, offset = decode_request_header(frame)
        return decode_request(header, frame, offset)
    except QuorumqError as exc:
        return exc


@FUZZ
@given(case=st.sampled_from(CASES), data=st.data())
def test_mutated_request_raises_only_quorumq_errors(
    case: tuple[ApiKey, int], data: st.DataObject
) -> None:
    api_key, version = case
    value = data.draw(values(api_spec(api_key).request, version))
    frame = frame_bytes(encode_request(api_key, version, 1, "fuzz", value))[4:]
    _decode_request_or_error(data.draw(_mutated(frame)))


@FUZZ
@given(case=st.sampled_from(CASES), data=st.data())
def test_mutated_response_raises_only_quorumq_errors(
    case: tuple[ApiKey, int], data: st.DataObject
) -> None:
    api_key, version = case
    value = data.draw(values(api_spec(api_key).response, version))
    request = data.draw(values(api_spec(api_key).request, version))
    header = decode_request_header(
        frame_bytes(encode_request(api_key, version, 1, None, request))[4:]
    )[0]
    frame = frame_bytes(encode_response(header, value))[4:]
    with contextlib.suppress(QuorumqError):
        decode_response(api_key, version, data.draw(_mutated(frame)))


@settings(max_examples=150, deadline=None)
@given(
    api_key=st.sampled_from([int(k) for k in ApiKey] + [-1, 99, 32767]),
    version=st.integers(-2, 20),
    tail=st.binary(max_size=64),
)
def test_random_body_after_a_plausible_header(api_key: int, version: int, tail: bytes) -> None:
    frame = api_key.to_bytes(2, "big", signed=True) + version.to_bytes(2, "big", signed=True)
    _decode_request_or_error(frame + b"\x00\x00\x00\x07" + tail)


@settings(max_examples=150, deadline=None)
@given(frame=st.binary(max_size=64))
def test_random_bytes(frame: bytes) -> None:
    _decode_request_or_error(frame)
