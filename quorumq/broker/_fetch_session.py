"""Incremental fetch sessions (KIP-227), both ends, as pure bookkeeping (no I/O, no clock).

Why: a follower's Fetch names every partition it follows from that leader, on every round, and
the leader answers for every one of them. With ``__consumer_offsets`` (50 partitions, three
copies) in the cluster, each replicated produce then encoded, decoded and walked about 17 idle
partitions four times over: in an in-process cluster the Python calls per replicated produce
nearly tripled (docs/benchmarks.md, fifth session).
With a session the leader remembers the partitions and what it last told the fetcher about
each, so a request names only partitions whose fetch position changed and a response carries
only partitions with records or news (high watermark, log start offset, an error).

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
request; the fetcher's half is :class:`FetchSessionBuilder`.
"""

from __future__ import annotations

import random
from collections import OrderedDict
from collections.abc import Container, Iterable

import attrs

from quorumq import protocol as p
from quorumq.errors import ErrorCode

INVALID_SESSION_ID = 0
INITIAL_EPOCH = 0
FINAL_EPOCH = -1
DEFAULT_MAX_SESSIONS = 1000
"""Kafka's ``max.incremental.fetch.session.cache.slots``."""
PROGRESS_REFRESH_S = 0.1
"""How often an incremental fetch records the fetcher's position in partitions it does not
name (they are where they were). Kafka does it on every fetch; here each visit of an idle
partition costs Python work on every replicated produce, and a position a tenth of a second
old is far inside ``replica.lag.time.max.ms`` (2 s at the least anywhere in quorumq)."""

PartitionKey = tuple[str, int]


def next_epoch(epoch: int) -> int:
    """The epoch after ``epoch``; wraps to 1, never to the two reserved values."""
    return 1 if epoch >= 0x7FFFFFFF else epoch + 1


@attrs.define(eq=False)
class FetchSession:
    """One fetcher's session on the leader."""

    session_id: int
    epoch: int
    """The epoch the next request must carry."""
    partitions: dict[PartitionKey, p.FetchRequestPartition]
    """Insertion-ordered; the request data last given for each partition."""
    sent: dict[PartitionKey, tuple[int, int]] = attrs.Factory(dict)
    """(high watermark, log start offset) last sent for each partition."""
    refreshed_at: float = 0.0
    """When a request last visited every partition (see :data:`PROGRESS_REFRESH_S`)."""
    seen: dict[PartitionKey, int] = attrs.Factory(dict)
    """The partition version (``Partition.version``) at which the fetcher, at its current
    position, had been told everything: while the version stays, there is nothing to look at."""


@attrs.define(eq=False)
class FetchContext:
    """What one Fetch request reads, and which of its answers go into the response.

    ``partitions`` are the ones to read (for an incremental request: the whole session).
    :meth:`include` says whether a partition's answer belongs in the response; :meth:`commit`
    records what a response that is actually sent told the fetcher, so that a read which was
    discarded (a long poll that went on waiting) cannot hide news from the next one."""

    partitions: list[tuple[str, p.FetchRequestPartition]]
    session_id: int = INVALID_SESSION_ID
    error: ErrorCode = ErrorCode.NONE
    session: FetchSession | None = None
    incremental: bool = False
    named: frozenset[PartitionKey] = frozenset()
    """The partitions this (incremental) request names: their positions changed."""
    refresh: bool = True
    """Whether this request visits every partition, named or not."""

    def skip(self, key: PartitionKey, version: int | None, rereading: bool) -> bool:
        """Whether partition ``key``, now at ``version``, needs no look at all: it has not
        changed since the fetcher was last found to know everything about it, and its
        position was recorded already (on a parked fetch's re-check, or on arrival for a
        partition the request does not name, unless a progress refresh is due)."""
        if not self.incremental or version is None:
            return False
        if not rereading and (self.refresh or key in self.named):
            return False
        assert self.session is not None
        return self.session.seen.get(key) == version

    def mark_seen(self, key: PartitionKey, version: int) -> None:
        """:meth:`unchanged` held for ``key`` at ``version``."""
        assert self.session is not None
        self.session.seen[key] = version

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
        order = session.partitions
        for topic in response.topics:
            for answer in topic.partitions:
                key = (topic.name, answer.partition_index)
                if answer.error_code:
                    sent.pop(key, None)  # tell it again next time, whatever it is
                    continue
                sent[key] = (answer.high_watermark, answer.log_start_offset)
                if answer.records and key in order:
                    order[key] = order.pop(key)


class FetchSessionCache:
    """The leader's sessions, least recently used first; at most ``max_sessions`` (the oldest
    is evicted for a new one: its fetcher gets FETCH_SESSION_ID_NOT_FOUND and starts over)."""

    def __init__(
        self, max_sessions: int = DEFAULT_MAX_SESSIONS, rng: random.Random | None = None
    ) -> None:
        self.max_sessions = max_sessions
        self._rng = rng or random.Random()
        self._sessions: OrderedDict[int, FetchSession] = OrderedDict()

    def __len__(self) -> int:
        return len(self._sessions)

    def context(self, request: p.FetchRequest, now: float = 0.0) -> FetchContext:
        """Opens, continues or closes the request's session; see the module docstring.
        ``now`` (seconds, any monotonic clock) paces the progress refresh."""
        requested = [(topic.name, part) for topic in request.topics for part in topic.partitions]
        if request.session_epoch == FINAL_EPOCH:
            self._sessions.pop(request.session_id, None)
            return FetchContext(requested)
        if request.session_epoch == INITIAL_EPOCH:
            self._sessions.pop(request.session_id, None)
            if self.max_sessions <= 0:
                return FetchContext(requested)
            session = FetchSession(
                self._new_id(),
                next_epoch(INITIAL_EPOCH),
                {(name, part.partition_index): part for name, part in requested},
                refreshed_at=now,
            )
            while len(self._sessions) >= self.max_sessions:
                self._sessions.popitem(last=False)
            self._sessions[session.session_id] = session
            return FetchContext(requested, session.session_id, session=session)
        session = self._sessions.get(request.session_id)
        if session is None:
            return FetchContext([], error=ErrorCode.FETCH_SESSION_ID_NOT_FOUND)
        if session.epoch != request.session_epoch:
            return FetchContext([], error=ErrorCode.INVALID_FETCH_SESSION_EPOCH)
        self._sessions.move_to_end(session.session_id)
        session.epoch = next_epoch(session.epoch)
        for forgotten in request.forgotten_topics_data:
            for index in forgotten.partitions:
                session.partitions.pop((forgotten.name, index), None)
                session.sent.pop((forgotten.name, index), None)
                session.seen.pop((forgotten.name, index), None)
        named = []
        for name, part in requested:
            key = (name, part.partition_index)
            session.partitions[key] = part
            session.seen.pop(key, None)  # a new position: look again
            named.append(key)
        refresh = now - session.refreshed_at >= PROGRESS_REFRESH_S
        if refresh:
            session.refreshed_at = now
        return FetchContext(
            [(key[0], part) for key, part in session.partitions.items()],
            session.session_id,
            session=session,
            incremental=True,
            named=frozenset(named),
            refresh=refresh,
        )

    def _new_id(self) -> int:
        while True:
            session_id = self._rng.randint(1, 0x7FFFFFFF)
            if session_id not in self._sessions:
                return session_id


@attrs.define(eq=False)
class FetchSessionBuilder:
    """The fetcher's half: holds what the fetcher wants fetched and builds full or incremental
    requests from it. One per connection to a leader; :meth:`reset` after anything that leaves
    the leader's view of the session in doubt (a failed or abandoned request).

    The fetcher reports changes only (:meth:`want` for a partition whose position moved,
    :meth:`keep_only` when the set of partitions changes), and a request is built from the
    changes, so a round costs nothing per idle partition. Why: comparing every followed
    partition's request data on every round was most of what an idle ``__consumer_offsets``
    still cost a follower per replicated produce (docs/benchmarks.md, sixth session).

    ``sessions=False`` (a leader without Fetch v7) builds a full fetch every time.
    """

    sessions: bool = True
    session_id: int = INVALID_SESSION_ID
    epoch: int = INITIAL_EPOCH
    wanted: dict[PartitionKey, p.FetchRequestPartition] = attrs.Factory(dict)
    """Insertion-ordered: the request data the fetcher wants for each partition now."""
    _unsent: dict[PartitionKey, None] = attrs.Factory(dict)
    """Wanted partitions whose data the leader's session may not hold (an ordered set)."""
    _forgotten: dict[PartitionKey, None] = attrs.Factory(dict)
    """Partitions the leader's session holds that are no longer wanted."""
    _pending: (
        tuple[list[tuple[PartitionKey, p.FetchRequestPartition]], list[PartitionKey]] | None
    ) = None

    def want(self, topic: str, part: p.FetchRequestPartition) -> None:
        """The fetcher wants ``part`` (a new partition or a new position) fetched."""
        key = (topic, part.partition_index)
        self.wanted[key] = part
        self._unsent[key] = None
        self._forgotten.pop(key, None)

    def keep_only(self, keys: Container[PartitionKey]) -> None:
        """Stops fetching every wanted partition not in ``keys`` (the leader forgets them)."""
        for key in [key for key in self.wanted if key not in keys]:
            del self.wanted[key]
            self._unsent.pop(key, None)
            if self.session_id != INVALID_SESSION_ID:
                self._forgotten[key] = None

    def build(self) -> tuple[int, int, list[p.FetchRequestTopic], list[p.FetchForgottenTopic]]:
        """(session id, session epoch, topics to name, forgotten topics) for the next request."""
        if not self.sessions or self.session_id == INVALID_SESSION_ID:
            self._pending = ([], [])
            epoch = INITIAL_EPOCH if self.sessions else FINAL_EPOCH
            return INVALID_SESSION_ID, epoch, by_topic(_named(self.wanted)), []
        named = [(key, self.wanted[key]) for key in self._unsent]
        forgotten_keys = list(self._forgotten)
        self._pending = (named, forgotten_keys)
        forgotten: dict[str, list[int]] = {}
        for name, index in forgotten_keys:
            forgotten.setdefault(name, []).append(index)
        return (
            self.session_id,
            self.epoch,
            by_topic((key[0], part) for key, part in named),
            [p.FetchForgottenTopic(name=name, partitions=ids) for name, ids in forgotten.items()],
        )

    def on_response(self, response: p.FetchResponse) -> bool:
        """Follows the answer to the request :meth:`build` made; False when the session is
        gone (the response holds no partitions then, and the next request is a full one)."""
        pending, self._pending = self._pending, None
        if response.error_code in (
            ErrorCode.FETCH_SESSION_ID_NOT_FOUND,
            ErrorCode.INVALID_FETCH_SESSION_EPOCH,
        ):
            self.reset()
            return False
        if pending is None or not self.sessions:
            return True
        if self.session_id == INVALID_SESSION_ID:
            # The answer to a full fetch: a session starts if the leader opened one, and it
            # holds everything that request named.
            self.session_id = response.session_id
            if self.session_id != INVALID_SESSION_ID:
                self.epoch = next_epoch(INITIAL_EPOCH)
                self._unsent.clear()
                self._forgotten.clear()
            return True
        self.epoch = next_epoch(self.epoch)
        named, forgotten = pending
        for key, part in named:
            if self.wanted.get(key) is part:  # not wanted anew since the request was built
                self._unsent.pop(key, None)
        for key in forgotten:
            self._forgotten.pop(key, None)
        return True

    def reset(self) -> None:
        """Back to a full fetch that opens a new session."""
        self.session_id = INVALID_SESSION_ID
        self.epoch = INITIAL_EPOCH
        self._unsent = dict.fromkeys(self.wanted)
        self._forgotten.clear()
        self._pending = None


def _named(
    wanted: dict[PartitionKey, p.FetchRequestPartition],
) -> Iterable[tuple[str, p.FetchRequestPartition]]:
    return ((key[0], part) for key, part in wanted.items())


def by_topic(
    partitions: Iterable[tuple[str, p.FetchRequestPartition]],
) -> list[p.FetchRequestTopic]:
    topics: dict[str, list[p.FetchRequestPartition]] = {}
    for name, part in partitions:
        topics.setdefault(name, []).append(part)
    return [p.FetchRequestTopic(name=name, partitions=parts) for name, parts in topics.items()]
