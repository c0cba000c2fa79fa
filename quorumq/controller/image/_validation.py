"""Admission checks for topics: names (Kafka's Topic.validate) and topic configs.

The controller refuses what Kafka refuses, with Kafka's error codes, before a record is proposed;
``apply`` checks names again because a record in the log may come from an older or foreign writer.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Mapping

from quorumq.errors import InvalidConfig, InvalidTopic

MAX_TOPIC_NAME_LENGTH = 249
_LEGAL_TOPIC_NAME = re.compile(r"[a-zA-Z0-9._-]+")


def topic_name_error(name: str) -> str | None:
    """Why Kafka would refuse ``name`` as a topic name, or None if it is fine."""
    if not name:
        return "topic name is empty"
    if name in (".", ".."):
        return f"topic name cannot be {name!r}"
    if len(name) > MAX_TOPIC_NAME_LENGTH:
        return f"topic name is longer than {MAX_TOPIC_NAME_LENGTH} characters"
    if _LEGAL_TOPIC_NAME.fullmatch(name) is None:
        return f"topic name {name!r} has characters other than ASCII letters, digits, '.', '_', '-'"
    return None


def validate_topic_name(name: str) -> None:
    """Raises :class:`InvalidTopic` for a name Kafka's ``Topic.validate`` refuses."""
    problem = topic_name_error(name)
    if problem is not None:
        raise InvalidTopic(problem)


def topic_names_collide(a: str, b: str) -> bool:
    """Kafka refuses topics whose names differ only by '.' versus '_' (metric names collide)."""
    return a != b and a.replace(".", "_") == b.replace(".", "_")


def _long(minimum: int) -> Callable[[str], bool]:
    def check(value: str) -> bool:
        try:
            return int(value) >= minimum
        except ValueError:
            return False

    return check


def _ratio(value: str) -> bool:
    try:
        return 0.0 <= float(value) <= 1.0
    except ValueError:
        return False


def _one_of(*choices: str) -> Callable[[str], bool]:
    return lambda value: value in choices


def _cleanup_policy(value: str) -> bool:
    parts = [p.strip() for p in value.split(",")]
    return bool(parts) and all(p in ("delete", "compact") for p in parts)


_BOOLEAN = _one_of("true", "false")

TOPIC_CONFIG_CHECKS: Mapping[str, Callable[[str], bool]] = {
    "cleanup.policy": _cleanup_policy,
    "compression.type": _one_of("uncompressed", "producer", "gzip", "snappy", "lz4", "zstd"),
    "delete.retention.ms": _long(0),
    "file.delete.delay.ms": _long(0),
    "flush.messages": _long(1),
    "flush.ms": _long(0),
    "index.interval.bytes": _long(0),
    "max.compaction.lag.ms": _long(1),
    "max.message.bytes": _long(0),
    "message.timestamp.type": _one_of("CreateTime", "LogAppendTime"),
    "message.timestamp.difference.max.ms": _long(0),
    "message.timestamp.before.max.ms": _long(0),
    "message.timestamp.after.max.ms": _long(0),
    "min.cleanable.dirty.ratio": _ratio,
    "min.compaction.lag.ms": _long(0),
    "min.insync.replicas": _long(1),
    "preallocate": _BOOLEAN,
    "retention.bytes": _long(-1),
    "retention.ms": _long(-1),
    "segment.bytes": _long(14),
    "segment.index.bytes": _long(4),
    "segment.jitter.ms": _long(0),
    "segment.ms": _long(1),
    "unclean.leader.election.enable": _BOOLEAN,
    "replication.strategy": _one_of("quorum", "isr"),
}
"""Topic configs the controller accepts, with a value check each (Kafka's LogConfig ranges).

``replication.strategy`` is quorumq's own: which leader election and high-watermark rule the
partition follows.
"""


def validate_topic_configs(configs: Mapping[str, str]) -> None:
    """Raises :class:`InvalidConfig` for an unknown topic config key or a value out of range."""
    for key, value in configs.items():
        check = TOPIC_CONFIG_CHECKS.get(key)
        if check is None:
            raise InvalidConfig(f"unknown topic config {key!r}")
        if value is None or not check(str(value)):
            raise InvalidConfig(f"invalid value {value!r} for topic config {key!r}")
