"""The replicated method itself, called as pysyncobj's tick thread calls it (no sockets)."""

from __future__ import annotations

import pytest

from quorumq.controller._raft import _MetadataConsumer
from quorumq.controller.image import (
    MAX_ENTRY_BYTES,
    FenceBroker,
    MetadataImage,
    MetadataStateMachine,
    RegisterBroker,
    Rejected,
    decode_entry,
    encode_batches,
    encode_record,
)
from quorumq.errors import ErrorCode


def _consumer() -> tuple[_MetadataConsumer, list[tuple[MetadataImage, list]]]:
    seen: list[tuple[MetadataImage, list]] = []
    consumer = _MetadataConsumer(lambda image, changes: seen.append((image, changes)))
    return consumer, seen


def test_consumer_applies_encoded_records_and_notifies() -> None:
    """An entry from a journal written before batches holds one record."""
    consumer, seen = _consumer()
    (changes,) = consumer.apply_record(
        encode_record(RegisterBroker(1, "i", "h", 1, 0)), _doApply=True
    )
    assert consumer.machine.image.brokers[1].broker_epoch == 1
    assert seen == [(consumer.machine.image, changes)]


def test_consumer_applies_a_batch_in_order_and_answers_per_record() -> None:
    """One entry, several records: each applies as if alone (the retried registration is
    answered with the epoch the first got, the unknown fence is rejected on its own), and
    listeners hear of all of them at once."""
    consumer, seen = _consumer()
    records = [
        RegisterBroker(1, "i", "h", 1, 0),
        RegisterBroker(1, "i", "h", 1, 5),
        FenceBroker(7, 1, 0),
        RegisterBroker(2, "j", "h", 2, 0),
    ]
    ((count, data),) = encode_batches(records)
    assert count == 4
    outcomes = consumer.apply_record(data, _doApply=True)
    assert [type(o[0]).__name__ for o in outcomes] == [
        "BrokerChanged",
        "BrokerChanged",
        "Rejected",
        "BrokerChanged",
    ]
    assert outcomes[1] == outcomes[0]
    assert consumer.machine.image.record_count == 4
    assert seen == [(consumer.machine.image, [c for o in outcomes for c in o])]


def test_records_beyond_the_entry_size_go_in_further_entries() -> None:
    records = [FenceBroker(b, 1, 0) for b in range(2_000)]
    entries = encode_batches(records)
    assert sum(count for count, _ in entries) == 2_000 and len(entries) > 1
    assert all(len(data) <= MAX_ENTRY_BYTES for _, data in entries)
    decoded = [r for _, data in entries for r in decode_entry(data)]
    assert decoded == records


def test_consumer_turns_corrupt_bytes_and_apply_bugs_into_rejections(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    consumer, seen = _consumer()
    ((change,),) = consumer.apply_record(b"\x80not json", _doApply=True)
    assert isinstance(change, Rejected) and change.code == ErrorCode.CORRUPT_MESSAGE
    ((change,),) = consumer.apply_record(
        b'{"type":"RecordBatch","v":9,"records":[]}', _doApply=True
    )
    assert isinstance(change, Rejected) and change.code == ErrorCode.CORRUPT_MESSAGE

    def broken(self: MetadataStateMachine, record: object) -> list:
        raise KeyError("bug")

    monkeypatch.setattr(MetadataStateMachine, "apply", broken)
    ((change,),) = consumer.apply_record(
        encode_batches([RegisterBroker(1, "i", "h", 1, 0)])[0][1], _doApply=True
    )
    assert isinstance(change, Rejected) and change.code == ErrorCode.UNKNOWN_SERVER_ERROR
    assert len(seen) == 3 and consumer.machine.image == MetadataImage()
