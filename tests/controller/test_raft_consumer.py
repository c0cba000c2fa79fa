"""The replicated method itself, called as pysyncobj's tick thread calls it (no sockets)."""

from __future__ import annotations

import pytest

from quorumq.controller._raft import _MetadataConsumer
from quorumq.controller.image import (
    MetadataImage,
    MetadataStateMachine,
    RegisterBroker,
    Rejected,
    encode_record,
)
from quorumq.errors import ErrorCode


def _consumer() -> tuple[_MetadataConsumer, list[tuple[MetadataImage, list]]]:
    seen: list[tuple[MetadataImage, list]] = []
    consumer = _MetadataConsumer(lambda image, changes: seen.append((image, changes)))
    return consumer, seen


def test_consumer_applies_encoded_records_and_notifies() -> None:
    consumer, seen = _consumer()
    changes = consumer.apply_record(encode_record(RegisterBroker(1, "i", "h", 1, 0)), _doApply=True)
    assert consumer.machine.image.brokers[1].broker_epoch == 1
    assert seen == [(consumer.machine.image, changes)]


def test_consumer_turns_corrupt_bytes_and_apply_bugs_into_rejections(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    consumer, seen = _consumer()
    (change,) = consumer.apply_record(b"\x80not json", _doApply=True)
    assert isinstance(change, Rejected) and change.code == ErrorCode.CORRUPT_MESSAGE

    def broken(self: MetadataStateMachine, record: object) -> list:
        raise KeyError("bug")

    monkeypatch.setattr(MetadataStateMachine, "apply", broken)
    (change,) = consumer.apply_record(
        encode_record(RegisterBroker(1, "i", "h", 1, 0)), _doApply=True
    )
    assert isinstance(change, Rejected) and change.code == ErrorCode.UNKNOWN_SERVER_ERROR
    assert len(seen) == 2 and consumer.machine.image == MetadataImage()
