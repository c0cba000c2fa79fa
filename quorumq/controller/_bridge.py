"""The one module where Trio meets pysyncobj's thread.

Theory of operation: :func:`open_controller_bridge` builds the :class:`MetadataRaft` on the Trio
main thread (pysyncobj's tick thread dies with the thread that built the ``SyncObj``). From then on
the tick thread only ever calls ``TrioToken.run_sync_soon`` (thread-safe, FIFO, never blocks it):

* after each apply, ``_deliver(image, changes)`` runs on Trio and publishes the new image:
  ``bridge.image``, the ``bridge.changed`` event (a fresh ``trio.Event`` swapped in per change) and
  every :class:`ImageSubscription`;
* a proposal's pysyncobj callback hands ``(outcomes, fail_reason)`` to the waiting
  ``propose_all``: records travel packed into record-batch entries (``image.encode_batches``)
  and ``outcomes`` holds each record's changes. Because the apply's delivery is queued before
  the callback's, ``bridge.image`` already holds a record when ``await propose(record)`` returns;
* when this voter becomes Raft leader, Trio proposes a ControllerEpochBump with the Raft term, and
  the voter becomes the *active* controller once that record is applied.

Nothing else in quorumq touches threads.
"""

from __future__ import annotations

import contextlib
import logging
import math
import re
import time
from collections.abc import AsyncIterator, Callable, Mapping, Sequence
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import attrs
import trio

from quorumq.errors import (
    InvalidConfig,
    NotController,
    QuorumqError,
    RequestTimedOut,
    StaleControllerEpoch,
    error_for_code,
)

from ._raft import MetadataRaft, RaftConfig
from .image import (
    ControllerEpochBump,
    HeartbeatApplied,
    ImageChange,
    ImageReset,
    MetadataImage,
    MetadataRecord,
    Rejected,
    encode_batches,
)

logger = logging.getLogger(__name__)

_FAIL_REASONS = {
    1: "QUEUE_FULL",
    2: "MISSING_LEADER",
    3: "DISCARDED",
    4: "NOT_LEADER",
    5: "LEADER_CHANGED",
    6: "REQUEST_DENIED",
    7: "UNKNOWN_OUTCOME",
}
_NOT_CONTROLLER_REASONS = {2, 3, 4, 5, 6}  # no leader, or the leader changed under the write

DEFAULT_PROPOSE_TIMEOUT_S = 5.0
RESIGN_POLL_S = 0.005
"""How often :meth:`ControllerBridge.resign` looks whether another voter leads yet (pysyncobj
state, which changes without an image change)."""


# --- voters -------------------------------------------------------------------------------------


@attrs.frozen
class Voter:
    """One controller voter: ``node_id@host:port`` (KRaft's controller.quorum.voters syntax)."""

    node_id: int
    host: str
    port: int

    @property
    def address(self) -> str:
        return f"{self.host}:{self.port}"


_VOTER = re.compile(r"\s*(\d+)@([^:@\s]+|\[[0-9a-fA-F:]+\]):(\d+)\s*")


def parse_voters(spec: str) -> dict[int, Voter]:
    """Parses ``0@127.0.0.1:19092,1@127.0.0.1:19093,...`` into node id → :class:`Voter`.

    Raises:
        InvalidConfig: malformed entry, a port out of range, or a duplicate id or address.
    """
    voters: dict[int, Voter] = {}
    for part in spec.split(","):
        match = _VOTER.fullmatch(part)
        if match is None:
            raise InvalidConfig(f"controller voter {part.strip()!r} is not id@host:port")
        node_id, host, port = int(match[1]), match[2], int(match[3])
        if not 0 < port < 65536:
            raise InvalidConfig(f"controller voter {part.strip()!r}: port out of range")
        voter = Voter(node_id, host, port)
        if node_id in voters or any(v.address == voter.address for v in voters.values()):
            raise InvalidConfig(f"controller voter {part.strip()!r} is listed twice")
        voters[node_id] = voter
    return voters


# --- subscriptions ------------------------------------------------------------------------------


@attrs.frozen
class ImageUpdate:
    """What a subscriber missed since its last receive.

    ``changes`` are in apply order. ``reset`` means the changes are incomplete (a snapshot was
    installed, or the subscriber fell more than its limit behind): re-read ``image`` whole.
    """

    image: MetadataImage
    changes: tuple[ImageChange, ...]
    reset: bool


@attrs.define(eq=False)
class ImageSubscription:
    """A bounded, coalescing feed of image changes for one consumer (e.g. the broker's
    partition-ownership task). Never blocks the bridge: past ``max_pending`` changes it drops them
    and reports a reset instead, so memory stays bounded and no state is lost."""

    _bridge: ControllerBridge
    max_pending: int
    _image: MetadataImage
    _pending: list[ImageChange] = attrs.field(factory=list)
    _reset: bool = False
    _event: trio.Event = attrs.field(factory=trio.Event)

    def _push(self, image: MetadataImage, changes: Sequence[ImageChange]) -> None:
        self._image = image
        overflow = len(self._pending) + len(changes) > self.max_pending
        if self._reset or overflow or any(isinstance(c, ImageReset) for c in changes):
            self._reset, self._pending = True, []
        else:
            self._pending.extend(changes)
        self._event.set()

    async def receive(self) -> ImageUpdate:
        """Waits for at least one change since the last receive and returns them all."""
        while not (self._pending or self._reset):
            self._event = trio.Event()
            await self._event.wait()
        update = ImageUpdate(self._image, tuple(self._pending), self._reset)
        self._pending, self._reset = [], False
        return update

    def close(self) -> None:
        """Stops the feed (idempotent)."""
        self._bridge._subscriptions.discard(self)

    def __enter__(self) -> ImageSubscription:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    def __aiter__(self) -> ImageSubscription:
        return self

    async def __anext__(self) -> ImageUpdate:
        return await self.receive()


# --- the bridge ---------------------------------------------------------------------------------


@attrs.define(eq=False)
class _Pending:
    event: trio.Event = attrs.field(factory=trio.Event)
    result: Any = None
    fail_reason: int = 0

    def set(self, result: Any, fail_reason: int) -> None:
        self.result, self.fail_reason = result, fail_reason
        self.event.set()


def _outcome(
    name: str, pending: _Pending, index: int, timeout_s: float | None
) -> list[ImageChange] | QuorumqError:
    """One record's outcome, the ``index``-th of its entry's."""
    if not pending.event.is_set():
        return RequestTimedOut(f"{name} not committed within {timeout_s} s")
    if pending.fail_reason:
        reason = _FAIL_REASONS.get(pending.fail_reason, str(pending.fail_reason))
        if pending.fail_reason in _NOT_CONTROLLER_REASONS:
            return NotController(f"{name} not committed: {reason}")
        return RequestTimedOut(f"{name} outcome unknown: {reason}")
    results = pending.result or [[]]
    # An entry that failed to decode has one outcome for all its records.
    return list(results[index] if index < len(results) else results[0])


def wall_clock_ms() -> int:
    """Milliseconds since the Unix epoch: the clock records carry (comparable across hosts,
    unlike a monotonic clock; skew between hosts eats into broker.session.timeout.ms)."""
    return int(time.time() * 1000)


def outcome_error(outcome: list[ImageChange] | QuorumqError) -> QuorumqError | None:
    """The error of one :meth:`ControllerBridge.propose_all` outcome: the error it is, or one
    carrying the Kafka code of its :class:`Rejected` change; None when the record applied."""
    if isinstance(outcome, QuorumqError):
        return outcome
    for change in outcome:
        if isinstance(change, Rejected):
            error = error_for_code(int(change.code))
            return error(f"{change.record_type} rejected: {change.reason}")
    return None


class ControllerBridge:
    """A controller voter seen from Trio. Build it with :func:`open_controller_bridge`.

    Attributes:
        node_id: this voter's id (the broker id in combined mode).
        voters: every voter by id.
        image: the latest applied :class:`MetadataImage` (replaced, never mutated).
        changed: a ``trio.Event`` set (and replaced) on each image change other than heartbeats;
            ``await bridge.changed.wait()`` then re-read ``bridge.image``.
    """

    def __init__(
        self,
        node_id: int,
        voters: Mapping[int, Voter],
        data_dir: Path,
        *,
        password: str | None,
        raft_config: RaftConfig | None,
        clock_ms: Callable[[], int],
    ) -> None:
        if node_id not in voters:
            listed = ",".join(str(v) for v in sorted(voters))
            raise InvalidConfig(f"node id {node_id} is not among the controller voters ({listed})")
        self.node_id = node_id
        self.voters = dict(voters)
        self._clock_ms = clock_ms
        self._token = trio.lowlevel.current_trio_token()
        self._nursery: trio.Nursery | None = None
        self._subscriptions: set[ImageSubscription] = set()
        self._stopping = False  # no new proposals or takeovers
        self._closed = False  # the raft voter is destroyed
        self.in_flight_max = 0
        """The most records one :meth:`propose_all` had in flight at once."""
        self.entries_submitted = 0
        """Raft entries submitted in all (records travel batched: ``encode_batches``)."""
        self.image = MetadataImage()
        self.changed = trio.Event()
        self._by_address = {v.address: v.node_id for v in self.voters.values()}
        me = self.voters[node_id]
        partners = [v.address for v in self.voters.values() if v.node_id != node_id]
        # Built here, on the Trio main thread: pysyncobj's tick thread dies with its creator.
        self._raft = MetadataRaft(
            me.address,
            partners,
            data_dir,
            password=password,
            listener=self._from_raft_apply,
            state_listener=self._from_raft_state,
            config=raft_config,
        )

    # --- tick thread → Trio (the only cross-thread calls) -----------------------------------------

    def _soon(self, fn: Callable[..., object], *args: object) -> None:
        # RunFinishedError: Trio has exited; the raft thread is being torn down with it.
        with contextlib.suppress(trio.RunFinishedError):
            self._token.run_sync_soon(fn, *args)

    def _from_raft_apply(self, image: MetadataImage, changes: list[ImageChange]) -> None:
        self._soon(self._deliver, image, changes)

    def _from_raft_state(self, is_leader: bool, term: int) -> None:
        self._soon(self._on_leadership, is_leader, term)

    # --- Trio side ----------------------------------------------------------------------------

    def _deliver(self, image: MetadataImage, changes: list[ImageChange]) -> None:
        self.image = image
        news = [c for c in changes if not isinstance(c, HeartbeatApplied | Rejected)]
        if not news:
            return  # heartbeats and no-ops: nobody needs waking
        for subscription in list(self._subscriptions):
            subscription._push(image, news)
        self.changed.set()
        self.changed = trio.Event()

    def _on_leadership(self, is_leader: bool, term: int) -> None:
        logger.info(
            "controller %d: raft %s in term %d",
            self.node_id,
            "leader" if is_leader else "follower",
            term,
        )
        if is_leader and self._nursery is not None and not self._stopping:
            self._nursery.start_soon(self._claim_controller_epoch, term)
        self.changed.set()
        self.changed = trio.Event()

    async def _claim_controller_epoch(self, term: int) -> None:
        """Commits ControllerEpochBump(term) while we still lead in ``term``; retries on failures
        (the bump is idempotent: an epoch not above the current one is a no-op)."""
        while self._raft.is_leader() and self._raft.term == term and not self._stopping:
            if self.image.controller_epoch >= term:
                return
            try:
                await self.propose(
                    ControllerEpochBump(self.node_id, term, self._clock_ms()), timeout_s=2.0
                )
            except StaleControllerEpoch:
                return
            except (NotController, RequestTimedOut) as exc:
                logger.debug("controller %d: epoch bump retry: %s", self.node_id, exc)
                await trio.sleep(0.05)
            else:
                logger.info("controller %d: active with controller epoch %d", self.node_id, term)
                return

    # --- public API -----------------------------------------------------------------------------

    @property
    def is_leader(self) -> bool:
        """Whether this voter is the Raft leader (by its own, possibly stale, belief)."""
        return not self._closed and self._raft.is_leader()

    @property
    def is_active(self) -> bool:
        """Whether this voter is the active controller: Raft leader, and its ControllerEpochBump
        for the current term is applied. Only the active controller runs ``tick``."""
        image = self.image
        return (
            not self._closed
            and self._raft.is_leader()
            and image.controller_id == self.node_id
            and image.controller_epoch == self._raft.term
        )

    @property
    def hears_a_majority(self) -> bool:
        """Whether this voter, leading, heard from a majority of voters within an election
        timeout (``MetadataRaft.hears_a_majority``). An active controller cut off from the
        rest keeps believing it leads for ``leader_fallback_timeout`` longer; answers it gives
        meanwhile must not vouch for anything."""
        return not self._closed and self._raft.hears_a_majority()

    @property
    def leader_id(self) -> int | None:
        """The node id of the last known Raft leader, or None during an election."""
        address = None if self._closed else self._raft.leader_address()
        return None if address is None else self._by_address.get(address)

    @property
    def controller_id(self) -> int:
        """The active controller per the image (-1 before the first one took over)."""
        return self.image.controller_id

    @property
    def controller_epoch(self) -> int:
        """The controller epoch per the image (Raft term of the last takeover; 0 before)."""
        return self.image.controller_epoch

    @property
    def is_ready(self) -> bool:
        """Whether this voter has caught up with the log once since it started."""
        return self._raft.is_ready()

    @property
    def raft(self) -> MetadataRaft:
        """The underlying voter (tests force snapshots through it)."""
        return self._raft

    async def propose(
        self,
        record: MetadataRecord,
        *,
        timeout_s: float | None = DEFAULT_PROPOSE_TIMEOUT_S,
        raise_rejected: bool = True,
    ) -> list[ImageChange]:
        """Replicates ``record`` and returns what applying it changed.

        Works on any voter (a follower forwards to the leader). While no leader exists the record
        waits in pysyncobj's queue until one is elected or ``timeout_s`` passes. Cancelling the
        wait does not withdraw the record: it may still be applied (records are compare-and-set,
        so retrying is safe).

        Raises:
            NotController: no leader, or leadership changed before the record committed (retry).
            RequestTimedOut: no outcome within ``timeout_s`` (the record may still apply).
            QuorumqError subclass: with ``raise_rejected``, the record was a no-op; the error
                carries the Kafka code of the :class:`Rejected` change (e.g. TopicAlreadyExists).
        """
        (outcome,) = await self.propose_all([record], timeout_s=timeout_s)
        if isinstance(outcome, QuorumqError):
            raise outcome
        if raise_rejected:
            error = outcome_error(outcome)
            if error is not None:
                raise error
        return outcome

    async def propose_all(
        self,
        records: Sequence[MetadataRecord],
        *,
        timeout_s: float | None = DEFAULT_PROPOSE_TIMEOUT_S,
    ) -> list[list[ImageChange] | QuorumqError]:
        """Replicates ``records`` in this order, all in flight at once, and returns each one's
        changes, or the error :meth:`propose` would have raised for it (rejections are returned
        as changes, as with ``raise_rejected=False``).

        Why not ``propose`` in a loop: each would wait a Raft round trip for the one before, so
        a controller tick that moves 2,000 partitions took minutes. Submitted together, and
        packed into entries of up to ``MAX_ENTRY_BYTES`` (``encode_batches``: 2,000
        PartitionChanges as 2,000 entries still took 4.2 s to commit, one fsync'd append each),
        Raft carries them in a few appends. They apply in submission order (one leader, one
        queue), so a later record sees what the earlier ones did; the records of one entry
        commit together or not at all.
        """
        if self._stopping or self._closed:
            raise NotController(f"controller {self.node_id} is shut down")
        entries: list[tuple[int, _Pending]] = []
        for count, data in encode_batches(records):
            pending = _Pending()

            def on_result(result: Any, fail_reason: int, pending: _Pending = pending) -> None:
                self._soon(pending.set, result, fail_reason)  # tick thread

            self._raft.submit(data, on_result)
            entries.append((count, pending))
        self.in_flight_max = max(self.in_flight_max, len(records))
        self.entries_submitted += len(entries)
        with trio.move_on_after(timeout_s if timeout_s is not None else math.inf):
            for _, pending in entries:
                await pending.event.wait()
        outcomes: list[list[ImageChange] | QuorumqError] = []
        position = 0
        for count, pending in entries:
            for index, record in enumerate(records[position : position + count]):
                outcomes.append(_outcome(type(record).__name__, pending, index, timeout_s))
            position += count
        return outcomes

    def subscribe(self, max_pending: int = 1024) -> ImageSubscription:
        """A feed of changes from now on (use as a context manager to close it)."""
        subscription = ImageSubscription(self, max_pending, self.image)
        self._subscriptions.add(subscription)
        return subscription

    async def wait_until(
        self, predicate: Callable[[ControllerBridge], bool], timeout_s: float
    ) -> None:
        """Waits until ``predicate(bridge)`` holds, re-checking on every change and every 50 ms
        (leadership is pysyncobj state that changes without an image change).

        Raises:
            RequestTimedOut: it did not hold within ``timeout_s``.
        """
        with trio.move_on_after(timeout_s):
            while not predicate(self):
                with trio.move_on_after(0.05):
                    await self.changed.wait()
            return
        raise RequestTimedOut(f"controller {self.node_id}: condition not met in {timeout_s} s")

    async def resign(self, timeout_s: float) -> bool:
        """Hands the Raft leadership, and with it the active controller role, to another voter
        (:meth:`MetadataRaft.resign`), and returns True once another voter leads; False at
        once if this voter does not lead, or after ``timeout_s`` (the request is withdrawn).
        A stopping controller calls it last, once the image holds everything it must say.
        """
        if not self.is_leader:
            return False
        self._raft.resign()
        try:
            with trio.move_on_after(timeout_s):
                # pysyncobj state, with no event to wait on.
                while self.is_leader or self.leader_id in (None, self.node_id):  # noqa: ASYNC110
                    await trio.sleep(RESIGN_POLL_S)
                return True
            return False
        finally:
            self._raft.resign(wanted=False)

    async def aclose(self) -> None:
        """Stops this voter: the tick thread is joined and the Raft port freed (idempotent)."""
        if self._closed:
            return
        self._stopping = self._closed = True
        for subscription in list(self._subscriptions):
            subscription.close()
        with trio.CancelScope(shield=True):
            # destroy_synchronous joins the tick thread (up to a tick): keep Trio responsive.
            await trio.to_thread.run_sync(self._raft.destroy_synchronous)


@asynccontextmanager
async def open_controller_bridge(
    node_id: int,
    voters: Mapping[int, Voter] | str,
    data_dir: Path,
    *,
    password: str | None = None,
    raft_config: RaftConfig | None = None,
    clock_ms: Callable[[], int] = wall_clock_ms,
) -> AsyncIterator[ControllerBridge]:
    """Starts this process's controller voter and yields its bridge; stops it on exit.

    Args:
        node_id: this voter's id (the broker id in combined mode); must be in ``voters``.
        voters: id → :class:`Voter`, or the ``0@host:port,1@host:port`` string.
        data_dir: the voter's own directory for ``raft.journal`` and ``raft.snapshot``
            (e.g. ``<broker data dir>/controller``); reusing it restarts the voter with its state.
        password: Raft traffic encryption/authentication (all voters must agree).
        raft_config: timings; the defaults re-elect in well under 2 s.
        clock_ms: wall clock for ControllerEpochBump (tests pass a fake one).

    Raises:
        InvalidConfig: ``node_id`` not among the voters, a malformed voter string, or a password
            without the ``cryptography`` package.
        OSError: the Raft port is in use.
    """
    if isinstance(voters, str):
        voters = parse_voters(voters)
    bridge = ControllerBridge(
        node_id,
        voters,
        data_dir,
        password=password,
        raft_config=raft_config,
        clock_ms=clock_ms,
    )
    try:
        async with trio.open_nursery() as nursery:
            bridge._nursery = nursery
            if bridge._raft.is_leader():  # elected before the nursery existed: claim now
                nursery.start_soon(bridge._claim_controller_epoch, bridge._raft.term)
            try:
                yield bridge
            finally:
                bridge._stopping = True
                nursery.cancel_scope.cancel()
    finally:
        await bridge.aclose()
