"""The fetching side of incremental fetch sessions (KIP-227): pure bookkeeping, no I/O.

Used by the broker's follower fetcher and by the Trio consumer; the leader's side is
``quorumq.broker._fetch_session``. A session lets a Fetch name only the partitions whose fetch
position changed, and lets the answer carry only partitions with records or news.
"""

from __future__ import annotations

from collections.abc import Container, Iterable

import attrs

from quorumq import protocol as p
from quorumq.errors import ErrorCode

INVALID_SESSION_ID = 0
INITIAL_EPOCH = 0
FINAL_EPOCH = -1
PartitionKey = tuple[str, int]


def next_epoch(epoch: int) -> int:
    """The epoch after ``epoch``; wraps to 1, never to the two reserved values."""
    return 1 if epoch >= 0x7FFFFFFF else epoch + 1


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

    def forget(self, key: PartitionKey) -> None:
        """Stops fetching one partition (the leader forgets it) until :meth:`want` again."""
        if self.wanted.pop(key, None) is None:
            return
        self._unsent.pop(key, None)
        if self.session_id != INVALID_SESSION_ID:
            self._forgotten[key] = None

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
