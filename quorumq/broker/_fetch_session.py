"""Incremental fetch sessions (KIP-227), both ends, as pure bookkeeping (no I/O, no clock).

Why: a follower's Fetch names every partition it follows from that leader, on every round, and
the leader answers for every one of them. With ``__consumer_offsets`` (50 partitions, three
copies) in the cluster, each replicated produce then encoded, decoded and walked about 17 idle
partitions four times over: in an in-process cluster the Python calls per replicated produce
nearly tripled (docs/benchmarks.md, fifth session).
With a session the leader remembers the partitions and what it last told the fetcher about
each, so a request names only partitions whose fetch position changed and a response carries
only partitions with records or news (high watermark, log start offset, an error).

Neither end walks idle partitions either. On the leader each partition marks itself changed in
every session holding it (``Partition.fetch_sessions``), so a read looks only at partitions that
moved or still have something to tell, and a parked session fetch waits on its session rather
than on each partition; the fetcher hands its builder only the positions that moved
(``_fetcher.py``). Kafka's sessions still visit every partition on every fetch, which is cheap
in the JVM; here that visit was the cost (docs/benchmarks.md, sixth session).

The rules are Kafka's (``FetchSession.scala``, ``FetchSessionHandler.java``):

* ``session_id`` 0 with ``session_epoch`` 0 is a full fetch that opens a session; the response
  carries its id (or 0 when the leader keeps no session: the fetcher stays on full fetches).
* ``session_epoch`` -1 is a full fetch without a session (closing ``session_id`` if given). That
  is what librdkafka sends, so its consumers are served exactly as before.
* Otherwise the request is incremental: ``session_epoch`` must be the session's next epoch
  (INVALID_FETCH_SESSION_EPOCH) and the id must be known (FETCH_SESSION_ID_NOT_FOUND); on either
  error the fetcher starts over with a full fetch. Named partitions are added or updated, and
  ``forgotten_topics_data`` removes partitions from the session.

The leader's half is :class:`FetchSessionCache` and the :class:`FetchContext` it hands out per
request; the fetcher's half is :class:`FetchSessionBuilder` (``quorumq.client._fetch_session``,
shared with the Trio consumer).
"""

from __future__ import annotations

import random
from collections import OrderedDict
from typing import Any

import attrs

from quorumq import protocol as p
from quorumq.client._fetch_session import (
    FINAL_EPOCH,
    INITIAL_EPOCH,
    INVALID_SESSION_ID,
    FetchSessionBuilder,
    PartitionKey,
    by_topic,
    next_epoch,
)
from quorumq.errors import ErrorCode

DEFAULT_MAX_SESSIONS = 1000
"""Kafka's ``max.incremental.fetch.session.cache.slots``."""
PROGRESS_REFRESH_S = 0.1
"""The shortest interval at which an incremental fetch records the fetcher's position in
partitions it does not name (they are where they were); see :func:`progress_refresh_s`."""


def progress_refresh_s(replica_lag_time_max_ms: int) -> float:
    """How often a session's fetch visits every partition: a quarter of the lag time, at least
    :data:`PROGRESS_REFRESH_S`.

    Kafka records the follower's position in every session partition on every fetch; here
    each visit of an idle partition costs Python work (at 0.1 s, about 30 ms of CPU a second
    on an idle broker with 2,000 partitions, docs/benchmarks.md). The visit only moves the
    follower's progress clocks: a follower at the leader's LEO is in sync whatever they say
    (Kafka's ``isCaughtUp``), and they matter only from the first append after a quiet spell
    until the follower's next fetch. By then they are at most this interval plus one idle
    fetch (``max_wait_ms``, 0.5 s) old, inside ``replica.lag.time.max.ms``."""
    return max(PROGRESS_REFRESH_S, replica_lag_time_max_ms / 4000)


@attrs.define(eq=False)
class FetchSession:
    """One fetcher's session on the leader.

    A read looks only at partitions that may have something to tell: ``pending`` ones and
    ``changed`` ones. The broker marks a partition ``changed`` in every session holding it
    whenever it moves (``Partition.fetch_sessions``), so an idle partition costs a read
    nothing; every ``refresh_s`` (:func:`progress_refresh_s`) a read visits them all anyway, to record where
    the fetcher is."""

    session_id: int
    epoch: int
    """The epoch the next request must carry."""
    partitions: dict[PartitionKey, p.FetchRequestPartition] = attrs.Factory(dict)
    """Insertion-ordered; the request data last given for each partition."""
    sent: dict[PartitionKey, tuple[int, int]] = attrs.Factory(dict)
    """(high watermark, log start offset) last sent for each partition."""
    refreshed_at: float = 0.0
    """When a request last visited every partition (see :func:`progress_refresh_s`)."""
    pending: dict[PartitionKey, None] = attrs.Factory(dict)
    """Partitions the next read must look at: new or named ones, and those the last look
    found with something to tell (an ordered set)."""
    changed: dict[PartitionKey, None] = attrs.Factory(dict)
    """Partitions that moved since the last read (an ordered set, filled by the broker)."""
    rank: dict[PartitionKey, int] = attrs.Factory(dict)
    """Each partition's place in the session's order (reads answer in this order)."""
    next_rank: int = 0
    append_waiters: set[Any] = attrs.Factory(set)
    """Parked follower fetches of this session: woken when one of its partitions grows."""
    commit_waiters: set[Any] = attrs.Factory(set)
    """Parked consumer fetches of this session: woken when a high watermark moves."""

    def put(self, key: PartitionKey, part: p.FetchRequestPartition) -> None:
        """Adds a partition or takes its new request data; the next read looks at it."""
        if key not in self.partitions:
            self.rank[key] = self.next_rank
            self.next_rank += 1
        self.partitions[key] = part
        self.pending[key] = None

    def forget(self, key: PartitionKey) -> None:
        self.partitions.pop(key, None)
        self.sent.pop(key, None)
        self.pending.pop(key, None)
        self.changed.pop(key, None)
        self.rank.pop(key, None)

    def to_end(self, key: PartitionKey) -> None:
        """Moves a partition to the end of the order (Kafka's fairness rule, see
        :meth:`FetchContext.commit`)."""
        self.partitions[key] = self.partitions.pop(key)
        self.rank[key] = self.next_rank
        self.next_rank += 1


@attrs.define(eq=False)
class FetchContext:
    """What one Fetch request reads, and which of its answers go into the response.

    :meth:`to_read` says which partitions a read looks at; :meth:`include` whether a
    partition's answer belongs in the response; :meth:`commit` records what a response that
    is actually sent told the fetcher, so that a read which was discarded (a long poll that
    went on waiting) cannot hide news from the next one."""

    partitions: list[tuple[str, p.FetchRequestPartition]]
    """A full fetch's partitions (an incremental fetch reads from its session)."""
    session_id: int = INVALID_SESSION_ID
    error: ErrorCode = ErrorCode.NONE
    session: FetchSession | None = None
    incremental: bool = False
    refresh: bool = True
    """Whether this request visits every partition of its session, named or not."""
    forgotten: list[PartitionKey] = attrs.Factory(list)
    """Partitions this request took out of its session."""
    dropped: list[FetchSession] = attrs.Factory(list)
    """Sessions this request ended (closed, replaced or evicted)."""

    def to_read(self, rereading: bool) -> list[tuple[str, p.FetchRequestPartition]]:
        """The partitions a read looks at, in the session's order: all of a full fetch's;
        all of the session's on arrival when a progress refresh is due; otherwise only the
        pending and changed ones (``rereading``: a parked fetch's re-check, whose positions
        were recorded on arrival)."""
        session = self.session
        if session is None or not self.incremental:
            return self.partitions
        if self.refresh and not rereading:
            session.changed.clear()
            return [(key[0], part) for key, part in session.partitions.items()]
        partitions = session.partitions
        keys = list(session.pending)  # always held: put and forget keep both in step
        if session.changed:
            keys.extend(
                key for key in session.changed if key in partitions and key not in session.pending
            )
            session.changed.clear()
        if len(keys) > 1:
            keys.sort(key=session.rank.__getitem__)
        return [(key[0], partitions[key]) for key in keys]

    def looked(self, key: PartitionKey, unchanged: bool) -> None:
        """A read looked at ``key``: an :meth:`unchanged` partition needs no look until it
        moves; any other is looked at again next time (what it had to tell is told only once
        a response carrying it is sent)."""
        session = self.session
        if session is None:
            return
        if unchanged:
            session.pending.pop(key, None)
        else:
            session.pending[key] = None

    def include(self, key: PartitionKey, answer: p.FetchResponsePartition) -> bool:
        """Full fetches answer every partition; an incremental one only those with records,
        an error, or a high watermark or log start offset the fetcher has not been told."""
        if not self.incremental or answer.error_code or answer.records:
            return True
        assert self.session is not None
        return self.session.sent.get(key) != (answer.high_watermark, answer.log_start_offset)

    def unchanged(
        self,
        key: PartitionKey,
        fetch_offset: int,
        read_end: int,
        high_watermark: int,
        log_start_offset: int,
    ) -> bool:
        """True for a partition an incremental response leaves out without reading it: the
        fetch is at the end of what it may read, and the fetcher already knows this high
        watermark and log start offset. Why: a follower's session holds every partition of
        its leader, most of them idle, and reading each one on every fetch was most of the
        cost that sessions are meant to remove."""
        assert self.session is not None
        return fetch_offset == read_end and self.session.sent.get(key) == (
            high_watermark,
            log_start_offset,
        )

    def commit(self, response: p.FetchResponse) -> None:
        """The response is being sent: remember what it told the fetcher, and move partitions
        that returned records to the end of the session's order (Kafka's fairness rule: under
        ``max_bytes`` a busy first partition must not starve the ones after it)."""
        session = self.session
        if session is None:
            return
        sent = session.sent
        for topic in response.topics:
            for answer in topic.partitions:
                key = (topic.name, answer.partition_index)
                if answer.error_code:
                    sent.pop(key, None)  # tell it again next time, whatever it is
                    continue
                sent[key] = (answer.high_watermark, answer.log_start_offset)
                if answer.records and key in session.partitions:
                    session.to_end(key)


class FetchSessionCache:
    """The leader's sessions, least recently used first; at most ``max_sessions`` (the oldest
    is evicted for a new one: its fetcher gets FETCH_SESSION_ID_NOT_FOUND and starts over)."""

    def __init__(
        self,
        max_sessions: int = DEFAULT_MAX_SESSIONS,
        rng: random.Random | None = None,
        *,
        refresh_s: float = PROGRESS_REFRESH_S,
    ) -> None:
        self.max_sessions = max_sessions
        self.refresh_s = refresh_s
        """See :func:`progress_refresh_s`."""
        self._rng = rng or random.Random()
        self._sessions: OrderedDict[int, FetchSession] = OrderedDict()

    def __len__(self) -> int:
        return len(self._sessions)

    def context(self, request: p.FetchRequest, now: float = 0.0) -> FetchContext:
        """Opens, continues or closes the request's session; see the module docstring.
        ``now`` (seconds, any monotonic clock) paces the progress refresh."""
        requested = [(topic.name, part) for topic in request.topics for part in topic.partitions]
        if request.session_epoch == FINAL_EPOCH:
            closed = self._sessions.pop(request.session_id, None)
            return FetchContext(requested, dropped=[] if closed is None else [closed])
        if request.session_epoch == INITIAL_EPOCH:
            dropped = []
            replaced = self._sessions.pop(request.session_id, None)
            if replaced is not None:
                dropped.append(replaced)
            if self.max_sessions <= 0:
                return FetchContext(requested, dropped=dropped)
            session = FetchSession(self._new_id(), next_epoch(INITIAL_EPOCH), refreshed_at=now)
            for name, part in requested:
                session.put((name, part.partition_index), part)
            while len(self._sessions) >= self.max_sessions:
                dropped.append(self._sessions.popitem(last=False)[1])
            self._sessions[session.session_id] = session
            return FetchContext(requested, session.session_id, session=session, dropped=dropped)
        session = self._sessions.get(request.session_id)
        if session is None:
            return FetchContext([], error=ErrorCode.FETCH_SESSION_ID_NOT_FOUND)
        if session.epoch != request.session_epoch:
            return FetchContext([], error=ErrorCode.INVALID_FETCH_SESSION_EPOCH)
        self._sessions.move_to_end(session.session_id)
        session.epoch = next_epoch(session.epoch)
        forgotten = []
        for topic in request.forgotten_topics_data:
            for index in topic.partitions:
                key = (topic.name, index)
                if key in session.partitions:
                    session.forget(key)
                    forgotten.append(key)
        for name, part in requested:
            session.put((name, part.partition_index), part)
        refresh = now - session.refreshed_at >= self.refresh_s
        if refresh:
            session.refreshed_at = now
        return FetchContext(
            [],
            session.session_id,
            session=session,
            incremental=True,
            refresh=refresh,
            forgotten=forgotten,
        )

    def _new_id(self) -> int:
        while True:
            session_id = self._rng.randint(1, 0x7FFFFFFF)
            if session_id not in self._sessions:
                return session_id


__all__ = [
    "DEFAULT_MAX_SESSIONS",
    "FINAL_EPOCH",
    "INITIAL_EPOCH",
    "INVALID_SESSION_ID",
    "PROGRESS_REFRESH_S",
    "FetchContext",
    "FetchSession",
    "FetchSessionBuilder",
    "FetchSessionCache",
    "by_topic",
    "next_epoch",
    "progress_refresh_s",
]
