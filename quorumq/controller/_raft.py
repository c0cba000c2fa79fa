"""The pysyncobj adapter: the metadata state machine replicated by Raft.

Theory of operation: a :class:`MetadataRaft` owns one ``SyncObj`` with one consumer,
:class:`_MetadataConsumer`, whose single ``@replicated`` method decodes an entry (a batch of
records as versioned JSON bytes, see ``image._codec``) and applies its records in order to a
:class:`MetadataStateMachine`. pysyncobj runs that method on its tick thread, on every voter, in
log order; the method is deterministic because every time and id is inside the records. Each
entry calls ``listener(image, changes)`` once on the tick thread: the listener must not block
(the Trio bridge hands the call to Trio with ``run_sync_soon``).

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

Durability and log matching (docs/controller.md, "Durability of the Raft journal"): pysyncobj
0.3.17 never fsyncs its journal or its term/vote file, and a follower deletes *every* entry after
``prevLogIdx`` before appending, even entries identical to the ones it is sent. pysyncobj's leader
pipelines appends and rewinds its next index when an older acknowledgement arrives, so a follower
is routinely asked to delete and re-append entries it has already applied (logged CRITICAL
"truncating already-applied log entries"). :class:`_RaftTransport`, a pysyncobj transport subclass
(its documented extension point, no patch), fixes both where messages leave and enter: it fsyncs
the journal before any acknowledgement or append leaves the voter and the term/vote file before
any vote message, and :class:`AppendDeduplicator` drops the already-held prefix of an append (the
Raft rule: delete only on conflict). Before the ``SyncObj`` starts, :func:`reconcile_journal`
trims a journal that a stop left out of step with its snapshot (pysyncobj would clear it).
"""

from __future__ import annotations

import base64
import errno
import functools
import json
import logging
import os
import struct
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import attrs
from pysyncobj import (
    FAIL_REASON,
    SyncObj,
    SyncObjConf,
    SyncObjConsumer,
    SyncObjException,
    replicated,
)
from pysyncobj.journal import FileJournal
from pysyncobj.transport import TCPTransport

from quorumq.errors import CorruptRecord, ErrorCode, InvalidConfig
from quorumq.replication import majority

from .image import (
    ImageChange,
    MetadataImage,
    MetadataRecord,
    MetadataStateMachine,
    Rejected,
    decode_entry,
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
    pre_vote: bool = True
    """Raft's pre-vote (:class:`PreVote`): a voter raises its term only if a majority would
    vote for it. Off only to measure what it prevents."""
    fsync: bool = True
    """fsync the journal before acknowledging or sending entries, and the term/vote before votes
    (Raft's persistence rule). Off only for throwaway clusters: a power loss can then lose
    acknowledged records and let a voter vote twice in one term."""


class _MetadataConsumer(SyncObjConsumer):  # type: ignore[misc]
    """The replicated state: one state machine, one replicated method."""

    def __init__(self, listener: ImageListener) -> None:
        super().__init__()
        # Set after super().__init__(): attributes set before it count as pysyncobj internals.
        self.machine = MetadataStateMachine()
        self.listener = listener

    @replicated  # type: ignore[misc]
    def apply_record(self, data: bytes) -> list[list[ImageChange]]:
        """Applies one entry, a record batch or (older journals) one record, and returns each
        record's changes in order. Runs on the tick thread of every voter, in log order; the
        name predates batches and stays, since pysyncobj's journal names the method."""
        try:
            records = decode_entry(data)
        except CorruptRecord as exc:
            # Every voter reads the same bytes and rejects them alike: still deterministic.
            outcomes = [[Rejected("?", ErrorCode.CORRUPT_MESSAGE, str(exc))]]
        else:
            outcomes = [self._apply(record) for record in records]
        try:
            self.listener(self.machine.image, [c for changes in outcomes for c in changes])
        except Exception:
            logger.exception("controller: image listener failed")
        return outcomes

    def _apply(self, record: MetadataRecord) -> list[ImageChange]:
        try:
            return self.machine.apply(record)
        except Exception as exc:
            # A bug in apply. Raising here would make pysyncobj retry the entry on the next
            # tick (and log forever); the same bug hits every voter alike, so a logged no-op
            # keeps the voters identical and the log moving.
            logger.exception("controller: applying %s failed", type(record).__name__)
            return [Rejected(type(record).__name__, ErrorCode.UNKNOWN_SERVER_ERROR, repr(exc))]


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


# --- log matching: delete only on conflict ------------------------------------------------------


@attrs.define
class AppendDeduplicator:
    """A follower-side rewrite of pysyncobj ``append_entries`` messages (pure: no I/O).

    pysyncobj's follower deletes every entry after ``prevLogIdx`` and appends the message's
    entries, whether or not the entries it held were the same. Its leader sends appends back to
    back (``appendEntriesUseBatch=False``) and, when the acknowledgement of an older append arrives,
    sets the follower's next index back to it. The next append then starts below entries the
    follower already holds (and may already have applied): the follower deletes them, logs
    CRITICAL "truncating already-applied log entries", and appends the same entries again. Had
    the message been cut at the 64 KiB batch limit, committed entries would stay missing while
    the leader still counts them as held by this follower.

    This class applies Raft's own rule instead ("if an existing entry conflicts with a new one,
    delete it and all that follow"): when every entry the message repeats is one this follower
    holds with the same term, the message is rewritten to start after the follower's last entry.
    By log matching, same index and term means the same entry, and the leader of a term never
    removes entries from its log, so the rewritten message states only facts about the leader's
    log. Anything it cannot vouch for (an unknown index, a conflict, a snapshot, a chunked entry,
    a new leader or term, a refused append) goes through unchanged, and tracking starts over.

    What it knows comes only from appends this follower acknowledged to the current leader in the
    current term: after a successful append the follower's log ends at ``next_node_idx - 1``.
    """

    max_tracked: int = 4096
    leader: Any = None
    term: int = -1
    log_end: int | None = None  # the follower's last log index after its last acknowledged append
    terms: dict[int, int] = attrs.Factory(dict)  # log index -> term of entries known to be held
    rewritten: int = 0
    _pending: tuple[int, int, list[Any]] | None = None  # (prev idx, prev term, entries) in flight

    def before_append(self, node: Any, message: dict[str, Any]) -> dict[str, Any]:
        """Returns the message pysyncobj should see for an incoming ``append_entries``."""
        self._pending = None
        if "prevLogIdx" not in message or message.get("transmission") is not None:
            self._forget()  # a snapshot install or a chunked entry: the log is replaced
            return message
        if node != self.leader or message["term"] != self.term:
            self._forget()
            self.leader, self.term = node, message["term"]
        prev, prev_term = message["prevLogIdx"], message["prevLogTerm"]
        entries = list(message.get("entries", []))
        if prev is None:
            return message  # the leader no longer has the entry; pysyncobj answers with a reset
        end = self.log_end
        if end is not None and prev < end and self._holds(prev, prev_term, entries, end):
            tail = [entry for entry in entries if entry[1] > end]
            message = dict(message, prevLogIdx=end, prevLogTerm=self.terms[end], entries=tail)
            prev, prev_term, entries = end, self.terms[end], tail
            self.rewritten += 1
        self._pending = (prev, prev_term, entries)
        return message

    def after_reply(self, message: dict[str, Any]) -> None:
        """Learns from this follower's ``next_node_idx`` answer to the append just handled."""
        pending, self._pending = self._pending, None
        if pending is None:
            return
        if not message.get("success"):
            self._forget()
            return
        prev, prev_term, entries = pending
        end = prev + len(entries)
        if message.get("next_node_idx") != end + 1:
            self._forget()  # not the log we think it is: vouch for nothing
            return
        if self.log_end is not None:
            for index in range(prev + 1, self.log_end + 1):
                self.terms.pop(index, None)
        self.terms[prev] = prev_term
        for _, index, term in entries:
            self.terms[index] = term
        self.log_end = end
        if len(self.terms) > self.max_tracked:
            keep_from = end - self.max_tracked // 2
            self.terms = {i: t for i, t in self.terms.items() if i >= keep_from}

    def _holds(self, prev: int, prev_term: int, entries: list[Any], end: int) -> bool:
        terms = self.terms
        if terms.get(prev) != prev_term:
            return False
        if any(index not in terms for index in range(prev + 1, end + 1)):
            return False
        return all(terms[index] == term for _, index, term in entries if index <= end)

    def _forget(self) -> None:
        self.log_end = None
        self.terms = {}


# --- durability: fsync what pysyncobj writes ------------------------------------------------------

_JOURNAL_LAST_RECORD_OFFSET = 36  # pysyncobj.journal.LAST_RECORD_OFFSET_OFFSET (header field)


def _fsync_path(path: Path, *, directory: bool = False) -> None:
    flags = os.O_RDONLY | (os.O_DIRECTORY if directory else 0)
    fd = os.open(path, flags)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


class _Durability:
    """fsyncs the journal, the term/vote file and snapshots at the moments Raft needs them.

    pysyncobj writes the journal through ``mmap`` and the term/vote (``.meta``) by rename, and
    syncs neither: both survive a process kill through the page cache, not a power loss. Calls
    come from the tick thread only. A failed fsync raises: the message it guards is not sent.
    """

    def __init__(self, journal: Path, snapshot: Path) -> None:
        self.journal = journal
        self.meta = Path(f"{journal}.meta")
        self.snapshot = snapshot
        self.fsyncs = 0
        self._journal_fd: int | None = None
        self._synced_offset = -1
        self._synced_snapshot: tuple[int, int, int] | None = None
        self._synced_meta: tuple[int, int, int] | None = None

    def sync_journal(self, *, force: bool) -> None:
        """fsyncs the journal if it may hold unsynced writes (``force``: it may have been
        rewritten in place, e.g. a truncation followed by appends of the same size)."""
        if self._journal_fd is None:
            if not self.journal.exists():
                return
            self._journal_fd = os.open(self.journal, os.O_RDONLY)
        header = os.pread(self._journal_fd, 4, _JOURNAL_LAST_RECORD_OFFSET)
        offset = struct.unpack("<I", header)[0] if len(header) == 4 else -1
        if force or offset != self._synced_offset:
            os.fsync(self._journal_fd)  # on Linux this writes back the mmap's dirty pages too
            self._synced_offset = offset
            self.fsyncs += 1

    def sync_term_and_vote(self) -> None:
        """fsyncs the ``.meta`` file (term, vote) and its directory if pysyncobj renamed a new one
        into place since the last call (a new inode each time)."""
        self._synced_meta = self._sync_replaced_file(self.meta, self._synced_meta)

    def sync_snapshot(self) -> None:
        """fsyncs a snapshot file that appeared since the last call (written by us or received
        from the leader and renamed into place), and its directory, so the rename is durable
        before pysyncobj rewrites the journal to start at the snapshot."""
        self._synced_snapshot = self._sync_replaced_file(self.snapshot, self._synced_snapshot)

    def _sync_replaced_file(
        self, path: Path, synced: tuple[int, int, int] | None
    ) -> tuple[int, int, int] | None:
        try:
            st = os.stat(path)
        except FileNotFoundError:
            return synced
        identity = (st.st_ino, st.st_mtime_ns, st.st_size)
        if identity != synced:
            _fsync_path(path)
            _fsync_path(path.parent, directory=True)
            self.fsyncs += 2
        return identity

    def on_tick(self) -> None:
        """Tick callback: covers what no message guards (a single voter's commits, compaction)."""
        self.sync_snapshot()
        self.sync_journal(force=False)

    def close(self) -> None:
        if self._journal_fd is not None:
            os.close(self._journal_fd)
            self._journal_fd = None


PRE_VOTE = "quorumq_pre_vote"
PRE_VOTE_RETRY_S = 0.05
PRE_VOTE_REPLY = "quorumq_pre_vote_reply"
RESIGN_RETRY_S = 0.2
"""How long a resigning leader waits for the voter it sent TimeoutNow to take over before it
asks again (perhaps another one): an election round on a LAN takes milliseconds."""


class PreVote:
    """Raft's pre-vote (Ongaro's thesis, section 9.6), which pysyncobj lacks: a voter whose
    election timeout passed first asks the others whether they would vote for it, and starts
    the election (raising its term) only once a majority, itself included, says yes. A voter
    says yes only if it has not heard from a leader within the minimum election timeout, is
    not the leader itself, and the asker's log is at least as complete as its own.

    Why: without it, a voter cut off from the leader alone (a bridge, a one-way cut) raises
    its term on every timeout; the term reaches the voters that still hear the leader, the
    leader steps down, and the controller role churns between voters for as long as the cut
    lasts. A controller that lasts a session then fences brokers it cannot hear, while their
    leases hold (the bridge broker still fetches from them): acks=1 records were lost. And a
    voter whose term did not grow can rejoin the moment the cut heals.

    Runs on pysyncobj's tick thread only (the election check and the transport's messages).
    """

    def __init__(self, min_timeout_s: float) -> None:
        self.min_timeout_s = min_timeout_s
        self.leader_heard_at = float("-inf")
        self._asked_at = float("-inf")
        self._granted: dict[Any, float] = {}
        """Voter → when it last said yes (a yes holds for a minimum timeout)."""
        self.elections_held_back = 0

    def heard_leader(self) -> None:
        self.leader_heard_at = time.monotonic()

    def may_start_election(self, syncobj: Any) -> bool:
        """Called when the election timeout has passed: True once a majority granted the
        current round; otherwise asks (again every :data:`PRE_VOTE_RETRY_S`: a voter whose
        last append came a moment later than ours says no for that moment)."""
        others = list(syncobj._SyncObj__otherNodes)
        if not others:
            return True
        now = time.monotonic()
        yes = sum(1 for at in self._granted.values() if now - at < self.min_timeout_s)
        if 1 + yes >= majority(len(others) + 1):
            self._granted.clear()
            return True
        if now - self._asked_at >= PRE_VOTE_RETRY_S:
            self._asked_at = now
            ask = {
                "type": PRE_VOTE,
                "last_log_index": syncobj._SyncObj__getCurrentLogIndex(),
                "last_log_term": syncobj._SyncObj__getCurrentLogTerm(),
            }
            transport = syncobj._SyncObj__transport
            for node in others:
                transport.send(node, dict(ask))
        self.elections_held_back += 1
        return False

    def on_message(self, syncobj: Any, node: Any, message: dict[str, Any]) -> None:
        if message["type"] == PRE_VOTE_REPLY:
            if message.get("granted"):
                self._granted[node] = time.monotonic()
            else:
                self._granted.pop(node, None)
            return
        log_term = syncobj._SyncObj__getCurrentLogTerm()
        complete = message["last_log_term"] > log_term or (
            message["last_log_term"] == log_term
            and message["last_log_index"] >= syncobj._SyncObj__getCurrentLogIndex()
        )
        granted = (
            complete
            and not syncobj._isLeader()
            and time.monotonic() - self.leader_heard_at >= self.min_timeout_s
        )
        syncobj._SyncObj__transport.send(node, {"type": PRE_VOTE_REPLY, "granted": granted})


class _PreVoteSyncObj(SyncObj):  # type: ignore[misc]
    """pysyncobj with :class:`PreVote`: its election check (``__connectedToAnyone``, consulted
    only once the election timeout has passed, and only to decide whether to start an
    election) also asks the pre-vote."""

    def __init__(self, *args: Any, pre_vote: PreVote, **kwargs: Any) -> None:
        self._pre_vote = pre_vote
        super().__init__(*args, **kwargs)

    def _SyncObj__connectedToAnyone(self) -> bool:  # overrides SyncObj.__connectedToAnyone
        connected = bool(SyncObj._SyncObj__connectedToAnyone(self))
        if self._SyncObj__transferInProgress:
            # The leader asked for this election (TimeoutNow, :meth:`MetadataRaft.resign`):
            # the others still hear it, so a pre-vote would be refused until it is gone.
            # etcd's raft skips the pre-vote of a transfer's election too (campaignTransfer).
            return connected
        return connected and self._pre_vote.may_start_election(self)


class _RaftTransport(TCPTransport):  # type: ignore[misc]
    """pysyncobj's TCP transport plus the two guards above, applied where messages cross.

    Outgoing: an acknowledgement (``next_node_idx`` with success) leaves only after the journal,
    the term/vote file and any new snapshot are fsynced; an append carrying entries only after
    the journal is; a vote request or grant only after the term/vote file is. Incoming: ``append_entries`` passes through :class:`AppendDeduplicator`. pysyncobj
    builds the transport itself (``SyncObj(transportClass=...)``); every call is on its tick
    thread.
    """

    def __init__(
        self,
        syncObj: Any,  # pysyncobj calls transportClass(syncObj, selfNode, otherNodes)
        selfNode: Any,
        otherNodes: Any,
        *,
        durability: _Durability | None,
        dedup: AppendDeduplicator,
        pre_vote: PreVote | None = None,
    ) -> None:
        self._durability = durability
        self._dedup = dedup
        self._pre_vote = pre_vote
        self._answering_append = False
        self._append_may_rewrite = True
        super().__init__(syncObj, selfNode, otherNodes)
        if durability is not None:
            syncObj.addOnTickCallback(durability.on_tick)

    def _onMessageReceived(self, node: Any, message: Any) -> None:
        kind = message.get("type") if isinstance(message, dict) else None
        if kind in (PRE_VOTE, PRE_VOTE_REPLY):
            if self._pre_vote is not None:
                self._pre_vote.on_message(self._syncObj, node, message)
            return
        if kind == "append_entries":
            # From a leader of our term or a newer one (a deposed leader that has not heard
            # yet sends older terms, which pysyncobj ignores: so do we).
            if self._pre_vote is not None and message.get("term", -1) >= self._syncObj._getTerm():
                self._pre_vote.heard_leader()
            message = self._dedup.before_append(node, message)
            self._answering_append = True
            # A heartbeat (no entries, no snapshot chunk) can only truncate the journal, which
            # moves its last-record offset: the unforced check sees that. Forcing an fsync of an
            # unchanged journal on every heartbeat cost each follower 12 fsyncs a second.
            self._append_may_rewrite = (
                "prevLogIdx" not in message
                or bool(message.get("entries"))
                or message.get("transmission") is not None
            )
            try:
                super()._onMessageReceived(node, message)
            finally:
                self._answering_append = False
        else:
            super()._onMessageReceived(node, message)

    def send(self, node: Any, message: Any) -> bool:
        kind = message.get("type") if isinstance(message, dict) else None
        durability = self._durability
        if kind == "next_node_idx" and self._answering_append:
            if durability is not None and message.get("success"):
                durability.sync_term_and_vote()  # the append may have raised our term
                durability.sync_snapshot()  # an installed snapshot is part of the log
                durability.sync_journal(force=self._append_may_rewrite)
            self._dedup.after_reply(message)
        elif durability is not None:
            if kind in ("request_vote", "response_vote"):
                durability.sync_term_and_vote()
            elif kind == "append_entries" and message.get("entries"):
                durability.sync_journal(force=False)
        return bool(super().send(node, message))


# --- journal and snapshot in step -----------------------------------------------------------------


def reconcile_journal(data_dir: Path) -> int:
    """Trims a journal that still holds entries from before its snapshot; returns how many.

    pysyncobj compacts in two ticks: it writes the snapshot, and only on the next tick deletes
    the journal entries the snapshot covers. A voter stopped (or killed) in between restarts with
    a journal that does not begin at the snapshot's last two entries, and pysyncobj then *clears*
    the journal down to those two entries, dropping every entry after the snapshot point,
    committed ones included. Called before the ``SyncObj`` starts, this finds the snapshot's two
    entries in the journal and rewrites the journal to begin there (a new file, fsynced, renamed
    into place), so pysyncobj keeps the suffix. A journal that does not contain them (older than
    the snapshot, or already in step) is left alone.
    """
    journal_path, snapshot_path = data_dir / JOURNAL_FILE, data_dir / SNAPSHOT_FILE
    if not journal_path.exists() or not snapshot_path.exists():
        return 0
    try:
        with open(snapshot_path, "rb") as f:
            raft = json.loads(f.read())["raft"]
        last, prev = _entry_from_json(raft["last"]), _entry_from_json(raft["prev"])
    except (OSError, ValueError, KeyError, TypeError, CorruptRecord):
        return 0  # pysyncobj's own load reports the unreadable snapshot
    journal = FileJournal(str(journal_path))
    try:
        entries = [(bytes(cmd), int(idx), int(term)) for cmd, idx, term in journal]
    finally:
        journal._destroy()
    start = next(
        (i for i in range(len(entries) - 1) if entries[i] == prev and entries[i + 1] == last),
        None,
    )
    if not start:  # None: not found; 0: already in step
        return 0
    tmp_path = data_dir / f"{JOURNAL_FILE}.reconcile.tmp"
    tmp_path.unlink(missing_ok=True)
    trimmed = FileJournal(str(tmp_path))
    try:
        for entry in entries[start:]:
            trimmed.add(*entry)
        trimmed.flush()
    finally:
        trimmed._destroy()
    _fsync_path(tmp_path)
    os.replace(tmp_path, journal_path)
    _fsync_path(data_dir, directory=True)
    logger.warning(
        "controller journal %s was behind its snapshot (index %d): dropped %d covered entries",
        journal_path,
        last[1],
        start,
    )
    return start


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
        self._contact_s = config.raft_max_timeout
        self.address = self_address
        self.data_dir = data_dir
        self._listener = listener
        self._state_listener = state_listener
        self._consumer = _MetadataConsumer(listener)
        reconcile_journal(data_dir)
        self._durability = (
            _Durability(data_dir / JOURNAL_FILE, data_dir / SNAPSHOT_FILE) if config.fsync else None
        )
        self._dedup = AppendDeduplicator()
        self._pre_vote = PreVote(config.raft_min_timeout) if config.pre_vote else None
        transport = functools.partial(
            _RaftTransport, durability=self._durability, dedup=self._dedup,
            pre_vote=self._pre_vote,
        )  # fmt: skip
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
            extra = {} if self._pre_vote is None else {"pre_vote": self._pre_vote}
            self._syncobj = (SyncObj if self._pre_vote is None else _PreVoteSyncObj)(
                self_address,
                list(partner_addresses),
                conf=conf,
                consumers=[self._consumer],
                transportClass=transport,
                **extra,
            )
        except ImportError as exc:  # pysyncobj's "Please install 'cryptography' module"
            raise InvalidConfig(
                f"controller password needs the cryptography package: {exc}"
            ) from exc
        self._resign_asked_at: float | None = None
        """When :meth:`resign` last asked pysyncobj for a transfer (None: no resign wanted)."""
        self._syncobj.addOnTickCallback(self._resign_on_tick)
        try:
            self._syncobj.waitBinded()
        except SyncObjException:
            self.destroy_synchronous()
            raise OSError(
                errno.EADDRINUSE, f"controller Raft port {self_address} is already in use"
            ) from None

    # --- called from the owner's thread ---------------------------------------------------------

    def submit(self, data: bytes, callback: Callable[[Any, int], None]) -> None:
        """Queues an encoded entry (``encode_batches``); ``callback(outcomes, fail_reason)``
        runs on the tick thread, ``outcomes`` being each record's changes.

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

    def hears_a_majority(self) -> bool:
        """Whether this voter, leading, has had an answer from a majority of the voters (itself
        counted) within the longest election timeout: Raft's CheckQuorum. After that long
        without one, the others may have elected a new leader, yet pysyncobj steps down only
        after ``leader_fallback_timeout``. Reads the tick thread's per-peer answer times
        (private state of the pinned pysyncobj, as ``_isLeader`` is): one dict copy, which the
        GIL makes atomic; pysyncobj stamps them with ``time.monotonic``."""
        syncobj = self._syncobj
        answered = dict(syncobj._SyncObj__lastResponseTime)
        others = list(syncobj._SyncObj__otherNodes)
        since = time.monotonic() - self._contact_s
        heard = 1 + sum(1 for node in others if answered.get(node, since) > since)
        return heard >= majority(len(others) + 1)

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

    def resign(self, wanted: bool = True) -> None:
        """Asks this voter, while it leads, to hand the leadership to the most caught-up voter
        it hears (Raft's TimeoutNow, pysyncobj's ``transferLeadership``); ``wanted=False``
        withdraws the request. The transfer runs on the tick thread, where pysyncobj's state
        lives. pysyncobj refuses it while no voter has the whole log (the leader is still
        appending): it is asked again on the next tick. Once a TimeoutNow went out, it is asked
        again only after :data:`RESIGN_RETRY_S`, if this voter still leads.

        Why: a leader that simply stops leaves the voters without one for an election
        timeout and a pre-vote round (0.3–0.6 s and more); one that hands over first leaves
        them without one for an election round trip. KRaft's controllers resign on shutdown
        too (EndQuorumEpoch).
        """
        self._resign_asked_at = float("-inf") if wanted else None

    def destroy_synchronous(self) -> None:
        """Stops the tick thread, closes the port and the journal; blocks until done."""
        self._syncobj.destroy_synchronous()
        if self._durability is not None:
            self._durability.close()

    @property
    def elections_held_back(self) -> int:
        """Election timeouts after which the pre-vote kept this voter from raising its term
        (0 with ``pre_vote`` off)."""
        return 0 if self._pre_vote is None else self._pre_vote.elections_held_back

    @property
    def appends_deduplicated(self) -> int:
        """Appends whose already-held prefix was dropped instead of truncated and re-appended."""
        return self._dedup.rewritten

    @property
    def fsyncs(self) -> int:
        """fsync calls made so far (0 with ``RaftConfig(fsync=False)``)."""
        return 0 if self._durability is None else self._durability.fsyncs

    # --- called on the tick thread --------------------------------------------------------------

    def _resign_on_tick(self) -> None:
        asked_at = self._resign_asked_at
        if asked_at is None:
            return
        syncobj = self._syncobj
        if not syncobj._isLeader():
            return
        now = time.monotonic()
        if now - asked_at >= RESIGN_RETRY_S:
            syncobj.transferLeadership(callback=self._on_transfer_asked)

    def _on_transfer_asked(self, _result: Any, error: int) -> None:
        # Called at once, on the tick thread. Refused (no voter has the whole log: the leader
        # is still appending) is asked again on the next tick; once a TimeoutNow went out, its
        # target gets RESIGN_RETRY_S to win before another one is asked (two at once would
        # split the vote).
        if error == FAIL_REASON.SUCCESS and self._resign_asked_at is not None:
            self._resign_asked_at = time.monotonic()

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
