"""The pysyncobj adapter: the metadata state machine replicated by Raft.

Theory of operation: a :class:`MetadataRaft` owns one ``SyncObj`` with one consumer,
:class:`_MetadataConsumer`, whose single ``@replicated`` method decodes a record (versioned JSON
bytes, see ``image._codec``) and applies it to a :class:`MetadataStateMachine`. pysyncobj runs that
method on its tick thread, on every voter, in log order; the method is deterministic because every
time and id is inside the record. Each apply calls ``listener(image, changes)`` on the tick thread:
the listener must not block (the Trio bridge hands the call to Trio with ``run_sync_soon``).

Snapshots (pysyncobj's "full dump") use our own serializer, not pickle: a JSON file with the image
(``image_to_dict``) and the two Raft log entries pysyncobj needs to resume from it. Loading one, at
start or when a lagging follower is sent the leader's snapshot, replaces the whole image and calls
the listener with ``[ImageReset()]``.

Measured traps this module avoids (../shared/notes/pysyncobj.md): the ``SyncObj`` is constructed on
the caller's thread (the tick thread dies with the thread that built it: build it on the Trio main
thread); replicated state is set after ``super().__init__()``; ``useFork`` is off (we are threaded,
and a custom serializer disables it anyway); ``appendEntriesUseBatch=False`` so one write costs a
round trip, not 100 ms; short Raft timeouts so a failover takes well under 2 s; the Raft port is
bound to the voter's own address and, with ``password``, encrypted and authenticated (peers
exchange pickles: an open port would run anyone's code).
"""

from __future__ import annotations

import base64
import errno
import json
import logging
import os
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import attrs
from pysyncobj import SyncObj, SyncObjConf, SyncObjConsumer, SyncObjException, replicated

from quorumq.errors import CorruptRecord, ErrorCode, InvalidConfig

from .image import (
    ImageChange,
    MetadataImage,
    MetadataStateMachine,
    Rejected,
    decode_record,
    image_from_dict,
    image_to_dict,
)

logger = logging.getLogger(__name__)

ImageListener = Callable[[MetadataImage, list[ImageChange]], None]
"""Called on the Raft tick thread after each apply (and with ``[ImageReset()]`` on snapshot load)."""

StateListener = Callable[[bool, int], None]
"""Called on the Raft tick thread when this voter becomes or stops being leader: (leader?, term)."""

JOURNAL_FILE = "raft.journal"
SNAPSHOT_FILE = "raft.snapshot"
SNAPSHOT_VERSION = 1


@attrs.frozen
class RaftConfig:
    """pysyncobj timings, tuned so a controller failover completes in well under 2 s.

    Measured (notes/pysyncobj.md): 0.3/0.6 s election timeouts with 75 ms heartbeats re-elect in
    0.25-0.36 s. ``leader_fallback_timeout`` bounds how long an isolated leader keeps believing it
    leads (the controller epoch, not this belief, fences its decisions).
    ``connection_retry_time`` is how often a voter redials a lost peer (pysyncobj's default of 5 s
    would delay a restarted voter's rejoin).
    """

    raft_min_timeout: float = 0.3
    raft_max_timeout: float = 0.6
    append_entries_period: float = 0.075
    leader_fallback_timeout: float = 1.5
    connection_timeout: float = 1.0
    connection_retry_time: float = 0.5
    log_compaction_min_entries: int = 5000
    log_compaction_min_time: float = 300.0


class _MetadataConsumer(SyncObjConsumer):  # type: ignore[misc]
    """The replicated state: one state machine, one replicated method."""

    def __init__(self, listener: ImageListener) -> None:
        super().__init__()
        # Set after super().__init__(): attributes set before it count as pysyncobj internals.
        self.machine = MetadataStateMachine()
        self.listener = listener

    @replicated  # type: ignore[misc]
    def apply_record(self, data: bytes) -> list[ImageChange]:
        """Applies one encoded record (runs on the tick thread of every voter, in log order)."""
        try:
            record = decode_record(data)
        except CorruptRecord as exc:
            # Every voter reads the same bytes and rejects them alike: still deterministic.
            changes: list[ImageChange] = [Rejected("?", ErrorCode.CORRUPT_MESSAGE, str(exc))]
        else:
            try:
                changes = self.machine.apply(record)
            except Exception as exc:
                # A bug in apply. Raising here would make pysyncobj retry the entry on the next
                # tick (and log forever); the same bug hits every voter alike, so a logged no-op
                # keeps the voters identical and the log moving.
                logger.exception("controller: applying %s failed", type(record).__name__)
                changes = [
                    Rejected(type(record).__name__, ErrorCode.UNKNOWN_SERVER_ERROR, repr(exc))
                ]
        try:
            self.listener(self.machine.image, changes)
        except Exception:
            logger.exception("controller: image listener failed")
        return changes


def _entry_to_json(entry: Any) -> list[Any]:
    command, idx, term = entry
    return [base64.b64encode(bytes(command)).decode("ascii"), int(idx), int(term)]


def _entry_from_json(value: Any) -> tuple[bytes, int, int]:
    if not isinstance(value, list) or len(value) != 3:
        raise CorruptRecord(f"snapshot: bad raft entry {value!r}")
    command, idx, term = value
    if not isinstance(command, str) or not isinstance(idx, int) or not isinstance(term, int):
        raise CorruptRecord(f"snapshot: bad raft entry {value!r}")
    return base64.b64decode(command), idx, term


class MetadataRaft:
    """One controller voter: a pysyncobj ``SyncObj`` applying metadata records.

    Build it on the thread that outlives it (the Trio main thread). Methods are safe to call from
    that thread; pysyncobj's command queue is thread-safe, and the getters read single attributes.

    Args:
        self_address: ``host:port`` this voter binds its Raft port to.
        partner_addresses: the other voters' ``host:port``.
        data_dir: where the journal and snapshot live (created if missing).
        password: encrypts and authenticates Raft traffic (needs the ``cryptography`` package);
            None leaves the port open to anyone who can reach it: bind it to a private address.
        listener, state_listener: called on the tick thread (see :data:`ImageListener`).

    Raises:
        OSError: the Raft port is in use (EADDRINUSE), with a one-line message.
        InvalidConfig: a password without the ``cryptography`` package.
    """

    def __init__(
        self,
        self_address: str,
        partner_addresses: Sequence[str],
        data_dir: Path,
        *,
        password: str | None,
        listener: ImageListener,
        state_listener: StateListener,
        config: RaftConfig | None = None,
    ) -> None:
        config = config or RaftConfig()
        data_dir.mkdir(parents=True, exist_ok=True)
        self.address = self_address
        self.data_dir = data_dir
        self._listener = listener
        self._state_listener = state_listener
        self._consumer = _MetadataConsumer(listener)
        conf = SyncObjConf(
            password=password,
            journalFile=str(data_dir / JOURNAL_FILE),
            fullDumpFile=str(data_dir / SNAPSHOT_FILE),
            serializer=self._write_snapshot,
            deserializer=self._read_snapshot,
            useFork=False,
            appendEntriesUseBatch=False,
            raftMinTimeout=config.raft_min_timeout,
            raftMaxTimeout=config.raft_max_timeout,
            appendEntriesPeriod=config.append_entries_period,
            leaderFallbackTimeout=config.leader_fallback_timeout,
            connectionTimeout=config.connection_timeout,
            connectionRetryTime=config.connection_retry_time,
            logCompactionMinEntries=config.log_compaction_min_entries,
            logCompactionMinTime=config.log_compaction_min_time,
            onStateChanged=self._on_state_changed,
            maxBindRetries=1,
            dynamicMembershipChange=False,
        )
        try:
            self._syncobj = SyncObj(
                self_address, list(partner_addresses), conf=conf, consumers=[self._consumer]
            )
        except ImportError as exc:  # pysyncobj's "Please install 'cryptography' module"
            raise InvalidConfig(
                f"controller password needs the cryptography package: {exc}"
            ) from exc
        try:
            self._syncobj.waitBinded()
        except SyncObjException:
            self._syncobj.destroy_synchronous()
            raise OSError(
                errno.EADDRINUSE, f"controller Raft port {self_address} is already in use"
            ) from None

    # --- called from the owner's thread ---------------------------------------------------------

    def submit(self, data: bytes, callback: Callable[[Any, int], None]) -> None:
        """Queues an encoded record; ``callback(changes, fail_reason)`` runs on the tick thread.

        On a follower the record is forwarded to the leader and the callback fires after the entry
        is applied locally, so the caller's image already holds it.
        """
        self._consumer.apply_record(data, callback=callback)

    @property
    def image(self) -> MetadataImage:
        """The image as of the last apply on the tick thread (an immutable value)."""
        return self._consumer.machine.image

    def is_leader(self) -> bool:
        """Whether pysyncobj believes this voter leads (it may be wrong for a moment)."""
        return bool(self._syncobj._isLeader())

    def leader_address(self) -> str | None:
        """The ``host:port`` of the last known Raft leader, or None during an election."""
        leader = self._syncobj._getLeader()
        return None if leader is None else str(leader.address)

    @property
    def term(self) -> int:
        """The current Raft term (the controller epoch a new leader claims)."""
        return int(self._syncobj._getTerm())

    def is_ready(self) -> bool:
        """Whether this voter has caught up with the leader's commit index once since start."""
        return bool(self._syncobj.isReady())

    def force_snapshot(self) -> None:
        """Asks for log compaction (a snapshot) at the next tick."""
        self._syncobj.forceLogCompaction()

    def destroy_synchronous(self) -> None:
        """Stops the tick thread, closes the port and the journal; blocks until done."""
        self._syncobj.destroy_synchronous()

    # --- called on the tick thread --------------------------------------------------------------

    def _on_state_changed(self, old_state: int, new_state: int) -> None:
        syncobj = getattr(self, "_syncobj", None)
        if syncobj is None:  # pragma: no cover - the first tick comes 0.1 s after construction
            return
        leader_state = 2  # pysyncobj's _RAFT_STATE.LEADER
        if leader_state in (old_state, new_state):
            self._state_listener(new_state == leader_state, int(syncobj._getTerm()))

    def _write_snapshot(self, file_name: str, raft_data: Any) -> None:
        last_entry, prev_entry, cluster = raft_data
        body = {
            "type": "ControllerSnapshot",
            "v": SNAPSHOT_VERSION,
            "image": image_to_dict(self._consumer.machine.image),
            "raft": {
                "last": _entry_to_json(last_entry),
                "prev": _entry_to_json(prev_entry),
                "cluster": sorted(str(getattr(node, "id", node)) for node in cluster),
            },
        }
        with open(file_name, "wb") as f:
            f.write(json.dumps(body, sort_keys=True, separators=(",", ":")).encode())
            f.flush()
            os.fsync(f.fileno())

    def _read_snapshot(self, file_name: str) -> tuple[Any, ...]:
        try:
            with open(file_name, "rb") as f:
                body = json.loads(f.read())
            if body.get("type") != "ControllerSnapshot" or body.get("v") != SNAPSHOT_VERSION:
                raise CorruptRecord(f"not a controller snapshot v{SNAPSHOT_VERSION}")
            image = image_from_dict(body["image"])
            raft = body["raft"]
            entries = (_entry_from_json(raft["last"]), _entry_from_json(raft["prev"]))
            cluster = [str(node) for node in raft["cluster"]]
        except (OSError, ValueError, KeyError, TypeError, AttributeError, CorruptRecord):
            logger.exception("controller snapshot %s is unreadable", file_name)
            raise
        changes = self._consumer.machine.reset(image)
        self._listener(image, changes)
        return entries[0], entries[1], cluster
