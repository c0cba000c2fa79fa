"""Topic validation and the persisted topic and producer-id stores (no sockets)."""

from __future__ import annotations

from pathlib import Path

import pytest

from quorumq.broker import (
    ProducerIdStore,
    TopicStore,
    validate_topic_configs,
    validate_topic_name,
)
from quorumq.errors import (
    InvalidConfig,
    InvalidPartitions,
    InvalidTopic,
    TopicAlreadyExists,
    UnknownTopicOrPartition,
)


@pytest.mark.parametrize("name", ["", ".", "..", "a" * 250, "has space", "slash/", "ünï", "a:b"])
def test_validate_topic_name_refuses_what_kafka_refuses(name: str) -> None:
    with pytest.raises(InvalidTopic):
        validate_topic_name(name)


@pytest.mark.parametrize("name", ["a", "orders", "A-b_c.d", "a" * 249, "..a", "__consumer"])
def test_validate_topic_name_accepts_legal_names(name: str) -> None:
    validate_topic_name(name)


def test_validate_topic_configs_checks_keys_and_values() -> None:
    assert validate_topic_configs({"retention.ms": "1000", "cleanup.policy": "compact,delete"}) == {
        "retention.ms": "1000",
        "cleanup.policy": "compact,delete",
    }
    with pytest.raises(InvalidConfig):
        validate_topic_configs({"no.such.key": "1"})
    with pytest.raises(InvalidConfig):
        validate_topic_configs({"retention.ms": "soon"})
    with pytest.raises(InvalidConfig):
        validate_topic_configs({"cleanup.policy": "shred"})
    with pytest.raises(InvalidConfig):
        validate_topic_configs({"min.cleanable.dirty.ratio": "2"})


def test_topic_store_persists_and_validates(tmp_path: Path) -> None:
    store = TopicStore.open(tmp_path)
    spec = store.create("orders", 3, {"retention.ms": "60000"})
    with pytest.raises(TopicAlreadyExists):
        store.create("orders", 1, {})
    with pytest.raises(InvalidPartitions):
        store.create("other", 0, {})
    reopened = TopicStore.open(tmp_path)
    assert reopened.get("orders") == spec
    assert reopened.get("orders").effective_configs()["retention.ms"] == "60000"
    assert reopened.get("orders").effective_configs()["cleanup.policy"] == "delete"
    reopened.delete("orders")
    with pytest.raises(UnknownTopicOrPartition):
        TopicStore.open(tmp_path).get("orders")


def test_producer_ids_are_never_reused_across_restarts(tmp_path: Path) -> None:
    first = ProducerIdStore.open(tmp_path, block_size=3)
    ids = [first.allocate() for _ in range(5)]
    second = ProducerIdStore.open(tmp_path, block_size=3)
    more = [second.allocate() for _ in range(5)]
    assert len(set(ids + more)) == 10
    assert min(more) > max(ids)
