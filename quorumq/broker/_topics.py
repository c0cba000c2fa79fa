"""Topics on one broker: Kafka's name and config validation, and their persistence.

Theory of operation: validation is pure (:func:`validate_topic_name`, :func:`validate_topic_configs`)
and mirrors Kafka's ``Topic.validate`` and ``LogConfig.validate``. :class:`TopicStore` keeps the
broker's topics (partition count, explicit configs, topic id) in one JSON file under the data
directory, rewritten atomically (write a temporary file, fsync, rename) on every change, so a crash
leaves either the old or the new set of topics, never a torn file. With a single broker this file is
the metadata; the controller (issue 4) replaces it in a cluster.
"""

from __future__ import annotations

import fcntl
import json
import os
import re
import uuid
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import BinaryIO, ClassVar

import attrs

from quorumq.errors import (
    InvalidConfig,
    InvalidPartitions,
    InvalidReplicationFactor,
    InvalidTopic,
    KafkaStorageError,
    TopicAlreadyExists,
    UnknownTopicOrPartition,
)

MAX_TOPIC_NAME_LENGTH = 249
"""Kafka's limit: partition directory names ``<topic>-<partition>`` must fit in 255 bytes."""

_LEGAL_TOPIC_NAME = re.compile(r"[a-zA-Z0-9._-]+")
_LONG_MAX = (1 << 63) - 1
_INT_MAX = (1 << 31) - 1


def validate_topic_name(name: str) -> None:
    """Checks a topic name as Kafka's ``Topic.validate`` does.

    Raises:
        InvalidTopic: empty, longer than 249 characters, ``.`` or ``..``, or a character outside
            ``[a-zA-Z0-9._-]``.
    """
    if not name:
        raise InvalidTopic("topic name is empty")
    if name in (".", ".."):
        raise InvalidTopic(f"topic name cannot be {name!r}")
    if len(name) > MAX_TOPIC_NAME_LENGTH:
        raise InvalidTopic(
            f"topic name is {len(name)} characters long, the limit is {MAX_TOPIC_NAME_LENGTH}"
        )
    if not _LEGAL_TOPIC_NAME.fullmatch(name):
        raise InvalidTopic(
            f"topic name {name!r} has characters outside ASCII alphanumerics, '.', '_' and '-'"
        )


def _long(lo: int, hi: int = _LONG_MAX) -> Callable[[str], None]:
    def check(value: str) -> None:
        try:
            number = int(value)
        except ValueError:
            raise InvalidConfig(f"{value!r} is not an integer") from None
        if not lo <= number <= hi:
            raise InvalidConfig(f"{value} is outside [{lo}, {hi}]")

    return check


def _double(lo: float, hi: float) -> Callable[[str], None]:
    def check(value: str) -> None:
        try:
            number = float(value)
        except ValueError:
            raise InvalidConfig(f"{value!r} is not a number") from None
        if not lo <= number <= hi:
            raise InvalidConfig(f"{value} is outside [{lo}, {hi}]")

    return check


def _choice(*allowed: str, lists: bool = False) -> Callable[[str], None]:
    def check(value: str) -> None:
        items = [item.strip() for item in value.split(",")] if lists else [value]
        for item in items:
            if item not in allowed:
                raise InvalidConfig(f"{item!r} is not one of {', '.join(allowed)}")

    return check


def _bool(value: str) -> None:
    if value.lower() not in ("true", "false"):
        raise InvalidConfig(f"{value!r} is not true or false")


@attrs.frozen
class ConfigDef:
    """One topic config key: Kafka's default (as the string DescribeConfigs returns) and check."""

    default: str
    check: Callable[[str], None]
    sensitive: bool = False


TOPIC_CONFIG_DEFS: Mapping[str, ConfigDef] = {
    "cleanup.policy": ConfigDef("delete", _choice("delete", "compact", lists=True)),
    "compression.type": ConfigDef(
        "producer", _choice("uncompressed", "zstd", "lz4", "snappy", "gzip", "producer")
    ),
    "delete.retention.ms": ConfigDef("86400000", _long(0)),
    "file.delete.delay.ms": ConfigDef("60000", _long(0)),
    "flush.messages": ConfigDef(str(_LONG_MAX), _long(1)),
    "flush.ms": ConfigDef(str(_LONG_MAX), _long(0)),
    "index.interval.bytes": ConfigDef("4096", _long(0, _INT_MAX)),
    "max.compaction.lag.ms": ConfigDef(str(_LONG_MAX), _long(1)),
    "max.message.bytes": ConfigDef("1048588", _long(0, _INT_MAX)),
    "message.downconversion.enable": ConfigDef("true", _bool),
    "message.timestamp.difference.max.ms": ConfigDef(str(_LONG_MAX), _long(0)),
    "message.timestamp.type": ConfigDef("CreateTime", _choice("CreateTime", "LogAppendTime")),
    "min.cleanable.dirty.ratio": ConfigDef("0.5", _double(0.0, 1.0)),
    "min.compaction.lag.ms": ConfigDef("0", _long(0)),
    "min.insync.replicas": ConfigDef("1", _long(1, _INT_MAX)),
    "preallocate": ConfigDef("false", _bool),
    "retention.bytes": ConfigDef("-1", _long(-1)),
    "retention.ms": ConfigDef("604800000", _long(-1)),
    "segment.bytes": ConfigDef("1073741824", _long(14, _INT_MAX)),
    "segment.index.bytes": ConfigDef("10485760", _long(4, _INT_MAX)),
    "segment.jitter.ms": ConfigDef("0", _long(0)),
    "segment.ms": ConfigDef("604800000", _long(1)),
    "unclean.leader.election.enable": ConfigDef("false", _bool),
}
"""The topic configs quorumq knows, with Kafka's defaults; unknown keys are INVALID_CONFIG."""


def validate_topic_configs(configs: Mapping[str, str | None]) -> dict[str, str]:
    """Checks explicit topic configs and returns them without ``None`` values.

    Raises:
        InvalidConfig: an unknown key or a value Kafka would refuse for it.
    """
    out: dict[str, str] = {}
    for key, value in configs.items():
        definition = TOPIC_CONFIG_DEFS.get(key)
        if definition is None:
            raise InvalidConfig(f"unknown topic config {key!r}")
        if value is None:
            continue
        try:
            definition.check(value)
        except InvalidConfig as exc:
            raise InvalidConfig(f"invalid value for {key}: {exc}") from None
        out[key] = value
    return out


def validate_partition_count(partitions: int) -> None:
    """Raises InvalidPartitions for a count below one (Kafka's ``-1`` means "broker default")."""
    if partitions < 1:
        raise InvalidPartitions(f"number of partitions must be at least 1, got {partitions}")


def validate_replication_factor(replication_factor: int, live_brokers: int) -> None:
    """Raises InvalidReplicationFactor for a factor below one or above the broker count."""
    if replication_factor < 1 or replication_factor > live_brokers:
        raise InvalidReplicationFactor(
            f"replication factor {replication_factor} is not within 1..{live_brokers} "
            f"(live brokers)"
        )


@attrs.frozen
class TopicSpec:
    """A topic as the broker knows it: its partitions count and explicit configs."""

    name: str
    partitions: int
    configs: Mapping[str, str] = attrs.field(factory=dict)
    topic_id: uuid.UUID = attrs.field(factory=uuid.uuid4)
    replication_factor: int = 1

    def effective_configs(self) -> dict[str, str]:
        """Every known config: explicit values over Kafka's defaults."""
        out = {key: definition.default for key, definition in TOPIC_CONFIG_DEFS.items()}
        out.update(self.configs)
        return out


def _write_atomically(path: Path, data: bytes) -> None:
    tmp = path.with_suffix(path.suffix + ".tmp")
    with open(tmp, "wb") as f:
        f.write(data)
        f.flush()
        os.fsync(f.fileno())
    os.replace(tmp, path)
    dir_fd = os.open(path.parent, os.O_RDONLY)
    try:
        os.fsync(dir_fd)
    finally:
        os.close(dir_fd)


@attrs.define(eq=False)
class TopicStore:
    """The broker's topics, persisted as ``<data_dir>/meta/topics.json``.

    Use :meth:`open`; every change is written before it returns, so an acknowledged CreateTopics
    survives a crash.
    """

    path: Path
    topics: dict[str, TopicSpec] = attrs.Factory(dict)

    @classmethod
    def open(cls, data_dir: Path) -> TopicStore:
        """Loads the topics file (an absent one means no topics yet).

        Raises:
            KafkaStorageError: the file exists but does not parse.
        """
        meta = Path(data_dir) / "meta"
        meta.mkdir(parents=True, exist_ok=True)
        path = meta / "topics.json"
        store = cls(path)
        if path.exists():
            try:
                raw = json.loads(path.read_bytes())
                for item in raw["topics"]:
                    spec = TopicSpec(
                        name=item["name"],
                        partitions=int(item["partitions"]),
                        configs=dict(item["configs"]),
                        topic_id=uuid.UUID(item["topic_id"]),
                        replication_factor=int(item.get("replication_factor", 1)),
                    )
                    store.topics[spec.name] = spec
            except (ValueError, KeyError, TypeError) as exc:
                raise KafkaStorageError(f"cannot read {path}: {exc}") from exc
        return store

    def _save(self) -> None:
        raw = {
            "topics": [
                {
                    "name": spec.name,
                    "partitions": spec.partitions,
                    "configs": dict(spec.configs),
                    "topic_id": str(spec.topic_id),
                    "replication_factor": spec.replication_factor,
                }
                for spec in self.topics.values()
            ]
        }
        _write_atomically(self.path, json.dumps(raw, indent=1, sort_keys=True).encode())

    def get(self, name: str) -> TopicSpec:
        """Raises UnknownTopicOrPartition when the topic does not exist."""
        try:
            return self.topics[name]
        except KeyError:
            raise UnknownTopicOrPartition(f"unknown topic {name!r}") from None

    def __contains__(self, name: object) -> bool:
        return name in self.topics

    def config(self, name: str, key: str) -> str | None:
        """One explicitly set config of a topic (None when unset or no such topic): the
        produce path's per-request lookup, without building a spec."""
        spec = self.topics.get(name)
        return None if spec is None else spec.configs.get(key)

    def check_create(
        self, name: str, partitions: int, configs: Mapping[str, str | None]
    ) -> TopicSpec:
        """Validates a CreateTopics entry without changing anything (``validate_only``).

        Raises:
            InvalidTopic, TopicAlreadyExists, InvalidPartitions, InvalidConfig.
        """
        validate_topic_name(name)
        if name in self.topics:
            raise TopicAlreadyExists(f"topic {name!r} already exists")
        validate_partition_count(partitions)
        return TopicSpec(name, partitions, validate_topic_configs(configs))

    def create(self, name: str, partitions: int, configs: Mapping[str, str | None]) -> TopicSpec:
        """Validates, records and persists a new topic; see :meth:`check_create`."""
        spec = self.check_create(name, partitions, configs)
        self.topics[name] = spec
        self._save()
        return spec

    def check_grow(self, name: str, count: int) -> TopicSpec:
        """The topic with ``count`` partitions, checked, without changing anything.

        Raises:
            UnknownTopicOrPartition, InvalidPartitions: ``count`` not above the current count.
        """
        spec = self.get(name)
        if count <= spec.partitions:
            raise InvalidPartitions(
                f"topic {name!r} has {spec.partitions} partitions; a new count must be higher, "
                f"got {count}"
            )
        return attrs.evolve(spec, partitions=count)

    def grow(self, name: str, count: int) -> TopicSpec:
        """Grows and persists a topic's partition count; see :meth:`check_grow`."""
        spec = self.check_grow(name, count)
        self.topics[name] = spec
        self._save()
        return spec

    def check_alter(self, name: str, configs: Mapping[str, str | None]) -> TopicSpec:
        """The topic with ``configs`` as its explicit configs, checked, without changing
        anything.

        Raises:
            UnknownTopicOrPartition, InvalidConfig.
        """
        return attrs.evolve(self.get(name), configs=validate_topic_configs(configs))

    def alter(self, name: str, configs: Mapping[str, str | None]) -> TopicSpec:
        """Replaces and persists a topic's explicit configs; see :meth:`check_alter`."""
        spec = self.check_alter(name, configs)
        self.topics[name] = spec
        self._save()
        return spec

    def delete(self, name: str) -> TopicSpec:
        """Forgets a topic (the caller removes its logs). Raises UnknownTopicOrPartition."""
        spec = self.get(name)
        del self.topics[name]
        self._save()
        return spec


@attrs.define(eq=False)
class ProducerIdStore:
    """Hands out producer ids (InitProducerId) that stay unique across restarts.

    Like Kafka's ``ProducerIdManager`` it reserves ids in blocks: the file records the end of the
    current block, so a restart skips the unused rest of it but never hands out an id twice, and
    the file is written once per block rather than once per producer.

    Ids must also be unique across the cluster: two producers that asked different brokers for an
    id and got the same one would have each other's batches taken for duplicates and dropped.
    Each broker therefore owns its own range, ``node_id << NODE_ID_SHIFT`` onwards (2**40 ids per
    broker, node ids up to 2**23), which needs no controller round trip per block.
    """

    NODE_ID_SHIFT: ClassVar[int] = 40

    path: Path
    next_producer_id: int = 0
    block_end: int = 0
    block_size: int = 1000
    node_id: int = 0

    @classmethod
    def open(cls, data_dir: Path, block_size: int = 1000, *, node_id: int = 0) -> ProducerIdStore:
        meta = Path(data_dir) / "meta"
        meta.mkdir(parents=True, exist_ok=True)
        path = meta / "producer_ids.json"
        start = 0
        if path.exists():
            try:
                start = int(json.loads(path.read_bytes())["block_end"])
            except (ValueError, KeyError, TypeError) as exc:
                raise KafkaStorageError(f"cannot read {path}: {exc}") from exc
        if not 0 <= node_id < 1 << (63 - cls.NODE_ID_SHIFT):
            raise InvalidConfig(f"node id {node_id} is outside the producer-id ranges")
        return cls(
            path, next_producer_id=start, block_end=start, block_size=block_size, node_id=node_id
        )

    def allocate(self) -> int:
        """Returns a producer id never returned before by this broker, nor by any other."""
        if self.next_producer_id >= self.block_end:
            self.block_end = self.next_producer_id + self.block_size
            _write_atomically(self.path, json.dumps({"block_end": self.block_end}).encode())
        local_id = self.next_producer_id
        self.next_producer_id += 1
        return (self.node_id << self.NODE_ID_SHIFT) | local_id


def load_cluster_id(data_dir: Path) -> str:
    """Returns the data directory's cluster id, creating ``meta/cluster.json`` the first time."""
    meta = Path(data_dir) / "meta"
    meta.mkdir(parents=True, exist_ok=True)
    path = meta / "cluster.json"
    if path.exists():
        try:
            return str(json.loads(path.read_bytes())["cluster_id"])
        except (ValueError, KeyError, TypeError) as exc:
            raise KafkaStorageError(f"cannot read {path}: {exc}") from exc
    cluster_id = uuid.uuid4().hex[:22]
    _write_atomically(path, json.dumps({"cluster_id": cluster_id}).encode())
    return cluster_id


def lock_data_dir(data_dir: Path) -> BinaryIO:
    """Takes an exclusive lock on ``<data_dir>/.lock`` so two brokers never share a directory.

    Returns the open lock file; closing it releases the lock.

    Raises:
        KafkaStorageError: another process holds the lock.
    """
    lock = open(Path(data_dir) / ".lock", "wb")  # noqa: SIM115 - held for the broker's lifetime
    try:
        fcntl.flock(lock.fileno(), fcntl.LOCK_EX | fcntl.LOCK_NB)
    except OSError:
        lock.close()
        raise KafkaStorageError(f"data dir {data_dir} is in use by another broker") from None
    return lock
