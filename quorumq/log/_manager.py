"""LogManager: the partition logs of one broker's data directory.

One directory per partition replica, named ``f"{topic}-{partition}"`` as Kafka names them.
Topic names may contain ``-``; the partition is what follows the last one.
"""

from __future__ import annotations

import shutil
from collections.abc import Callable, Iterator
from pathlib import Path

from quorumq.errors import KafkaStorageError
from quorumq.log._config import LogConfig
from quorumq.log._log import PartitionLog


def partition_dir_name(topic: str, partition: int) -> str:
    return f"{topic}-{partition}"


def parse_partition_dir_name(name: str) -> tuple[str, int] | None:
    """``("orders", 3)`` from ``"orders-3"``; None for names that are not partition dirs."""
    topic, sep, partition = name.rpartition("-")
    if not sep or not topic or not partition.isdigit():
        return None
    return topic, int(partition)


class LogManager:
    """Opens, creates, lists and deletes the partition logs under ``data_dir``.

    invariant: at most one open :class:`PartitionLog` per (topic, partition).
    """

    def __init__(self, data_dir: Path, *, default_config: LogConfig | None = None) -> None:
        self.data_dir = Path(data_dir)
        self.default_config = default_config if default_config is not None else LogConfig()
        self._logs: dict[tuple[str, int], PartitionLog] = {}
        self._write_listener: Callable[[PartitionLog], None] | None = None
        try:
            self.data_dir.mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            raise KafkaStorageError(f"cannot create data dir {self.data_dir}: {exc}") from exc

    def existing_partitions(self) -> list[tuple[str, int]]:
        """Partitions that have a directory on disk (open or not), sorted."""
        found = []
        for child in self.data_dir.iterdir():
            parsed = parse_partition_dir_name(child.name) if child.is_dir() else None
            if parsed is not None:
                found.append(parsed)
        return sorted(found)

    def load_all(
        self, *, now_ms: int, config_for: Callable[[str], LogConfig] | None = None
    ) -> list[PartitionLog]:
        """Opens (recovering) every partition directory found on disk.

        Args:
            config_for: the config of a topic; ``default_config`` when None.
        """
        opened = []
        for topic, partition in self.existing_partitions():
            config = config_for(topic) if config_for is not None else self.default_config
            opened.append(self.get_or_create(topic, partition, config, now_ms))
        return opened

    def get_or_create(
        self, topic: str, partition: int, config: LogConfig | None, now_ms: int
    ) -> PartitionLog:
        """The open log of a partition, opening or creating its directory if needed."""
        log = self._logs.get((topic, partition))
        if log is None:
            return self.adopt(topic, partition, self.open_log(topic, partition, config, now_ms))
        if config is not None and config != log.config:
            log.config = config
            log.note_write()  # a new flush.ms or flush.messages may make it due
        return log

    def open_log(
        self, topic: str, partition: int, config: LogConfig | None, now_ms: int
    ) -> PartitionLog:
        """Opens or creates a partition's log without registering it: touches only that
        partition's directory, so a worker thread may run it (a broker opening thousands of
        replicas); :meth:`adopt` then registers it, on the thread that owns the manager."""
        directory = self.data_dir / partition_dir_name(topic, partition)
        return PartitionLog.open(
            directory, config if config is not None else self.default_config, now_ms=now_ms
        )

    def adopt(self, topic: str, partition: int, log: PartitionLog) -> PartitionLog:
        """Registers a log from :meth:`open_log`.

        Raises:
            ValueError: the partition already has an open log (two logs would share files).
        """
        key = (topic, partition)
        if key in self._logs:
            raise ValueError(f"{topic}-{partition} already has an open log")
        self._logs[key] = log
        if self._write_listener is not None:
            log.write_listener = self._write_listener
            log.note_write()  # recovery may have left unflushed segments
        return log

    def listen_writes(self, listener: Callable[[PartitionLog], None]) -> None:
        """Has every log, open now or later, tell ``listener`` when a write may make it due
        for an fsync (:attr:`PartitionLog.write_listener`); every open log tells it once now."""
        self._write_listener = listener
        for log in self._logs.values():
            log.write_listener = listener
            log.rearm_write_listener()
            log.note_write()

    def get(self, topic: str, partition: int) -> PartitionLog | None:
        return self._logs.get((topic, partition))

    def delete(self, topic: str, partition: int) -> None:
        """Closes the partition's log (if open) and removes its directory."""
        log = self._logs.pop((topic, partition), None)
        if log is not None:
            log.delete()
        else:
            directory = self.data_dir / partition_dir_name(topic, partition)
            if directory.exists():
                shutil.rmtree(directory, ignore_errors=True)

    def all_logs(self) -> list[PartitionLog]:
        return list(self._logs.values())

    def items(self) -> Iterator[tuple[tuple[str, int], PartitionLog]]:
        return iter(list(self._logs.items()))

    def close_all(self) -> None:
        """Flushes and closes every open log (clean shutdown)."""
        logs, self._logs = self._logs, {}
        for log in logs.values():
            log.close()
