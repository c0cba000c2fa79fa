"""Fetch sessions (KIP-227): the pure bookkeeping of both ends (``broker/_fetch_session.py``),
then the broker's Fetch over real sockets, then a replicated cluster whose followers use them."""

from __future__ import annotations

import random
from typing import Any

import attrs
import trio

from quorumq import protocol as p
from quorumq.broker import Broker, ClusterBroker
from quorumq.broker._fetch_session import (
    FINAL_EPOCH,
    INITIAL_EPOCH,
    PROGRESS_REFRESH_S,
    FetchSessionBuilder,
    FetchSessionCache,
    by_topic,
    progress_refresh_s,
)
from quorumq.client._connection import open_connection
from quorumq.errors import ErrorCode
from quorumq.protocol.records import build_batch
from quorumq.testing import Cluster
from tests.broker.test_server import produce_request


def part(index: int, offset: int = 0) -> p.FetchRequestPartition:
    return p.FetchRequestPartition(
        partition_index=index, fetch_offset=offset, partition_max_bytes=1 << 20
    )


def request(
    session_id: int,
    epoch: int,
    parts: list[tuple[str, p.FetchRequestPartition]],
    forgotten: list[p.FetchForgottenTopic] | None = None,
) -> p.FetchRequest:
    return p.FetchRequest(
        replica_id=-1,
        max_wait_ms=0,
        min_bytes=1,
        session_id=session_id,
        session_epoch=epoch,
        topics=by_topic(parts),
        forgotten_topics_data=forgotten or [],
    )


def answer(index: int, hw: int, records: bytes = b"") -> p.FetchResponsePartition:
    return p.FetchResponsePartition(
        partition_index=index,
        error_code=0,
        high_watermark=hw,
        last_stable_offset=hw,
        log_start_offset=0,
        records=records,
    )


# --- the leader's cache -------------------------------------------------------------------------


def test_a_full_fetch_with_epoch_0_opens_a_session_and_epoch_minus_1_none() -> None:
    cache = FetchSessionCache(rng=random.Random(1))
    opened = cache.context(request(0, INITIAL_EPOCH, [("t", part(0)), ("t", part(1))]))
    assert opened.session_id != 0 and not opened.incremental and len(cache) == 1
    assert [(n, q.partition_index) for n, q in opened.partitions] == [("t", 0), ("t", 1)]
    sessionless = cache.context(request(0, FINAL_EPOCH, [("t", part(0))]))
    assert sessionless.session_id == 0 and sessionless.session is None
    closed = cache.context(request(opened.session_id, FINAL_EPOCH, [("t", part(0))]))
    assert closed.session_id == 0 and len(cache) == 0


def test_incremental_requests_update_the_session_and_check_its_epoch() -> None:
    cache = FetchSessionCache(rng=random.Random(2))
    first = cache.context(request(0, INITIAL_EPOCH, [("t", part(0)), ("t", part(1))]))
    sid = first.session_id
    # Epoch 1 moves partition 1 on and forgets partition 0; the session reads what is left.
    second = cache.context(
        request(sid, 1, [("t", part(1, 7))], [p.FetchForgottenTopic(name="t", partitions=[0])])
    )
    assert second.incremental and second.error == ErrorCode.NONE
    assert second.session is not None and second.forgotten == [("t", 0)]
    held = second.session.partitions
    assert [(key, q.fetch_offset) for key, q in held.items()] == [(("t", 1), 7)]
    third = cache.context(request(sid, 2, [("u", part(3))]))  # a new partition joins
    assert list(held) == [("t", 1), ("u", 3)] and third.session is second.session
    assert cache.context(request(sid, 2, [])).error == ErrorCode.INVALID_FETCH_SESSION_EPOCH
    assert cache.context(request(sid + 1, 1, [])).error == ErrorCode.FETCH_SESSION_ID_NOT_FOUND


def test_an_incremental_response_carries_only_news_and_only_what_was_sent_counts() -> None:
    cache = FetchSessionCache(rng=random.Random(3))
    full = cache.context(request(0, INITIAL_EPOCH, [("t", part(0)), ("t", part(1))]))
    full.commit(
        p.FetchResponse(
            topics=[p.FetchResponseTopic(name="t", partitions=[answer(0, 5), answer(1, 5)])]
        )
    )
    inc = cache.context(request(full.session_id, 1, []))
    assert not inc.include(("t", 0), answer(0, 5))  # nothing new
    assert inc.include(("t", 0), answer(0, 6))  # the high watermark moved
    assert inc.include(("t", 1), answer(1, 5, b"records"))
    # A read that was not sent (the long poll went on waiting) must not count as told.
    assert inc.include(("t", 0), answer(0, 6))
    inc.commit(p.FetchResponse(topics=[p.FetchResponseTopic(name="t", partitions=[answer(0, 6)])]))
    assert not inc.include(("t", 0), answer(0, 6))


def test_the_oldest_session_is_evicted_when_the_cache_is_full() -> None:
    cache = FetchSessionCache(max_sessions=2, rng=random.Random(4))
    a = cache.context(request(0, INITIAL_EPOCH, [("t", part(0))])).session_id
    b = cache.context(request(0, INITIAL_EPOCH, [("t", part(0))])).session_id
    assert cache.context(request(a, 1, [])).error == ErrorCode.NONE  # a is now the newest
    cache.context(request(0, INITIAL_EPOCH, [("t", part(0))]))
    assert cache.context(request(b, 1, [])).error == ErrorCode.FETCH_SESSION_ID_NOT_FOUND
    assert cache.context(request(a, 2, [])).error == ErrorCode.NONE


def test_a_read_looks_only_at_partitions_that_moved_between_progress_refreshes() -> None:
    """Between refreshes (every PROGRESS_REFRESH_S) a read looks at named partitions, at
    those with something still to tell, and at those the broker marked as moved; a refresh
    on arrival looks at all, a parked fetch's re-check never needs to. Reads follow the
    session's order."""
    cache = FetchSessionCache(rng=random.Random(5))
    three = [("t", part(0)), ("t", part(1)), ("t", part(2))]
    full = cache.context(request(0, INITIAL_EPOCH, three), now=10.0)
    assert [q.partition_index for _, q in full.to_read(False)] == [0, 1, 2]
    session = full.session
    assert session is not None
    soon = cache.context(request(full.session_id, 1, []), now=10.01)
    assert not soon.refresh
    assert keys(soon.to_read(False)) == [0, 1, 2]  # new: never looked at incrementally
    for index in range(3):
        soon.looked(("t", index), unchanged=True)
    assert soon.to_read(True) == []  # idle: nothing to look at
    session.changed[("t", 2)] = None  # the broker marks a move
    session.changed[("t", 0)] = None
    assert keys(soon.to_read(True)) == [0, 2]  # in the session's order
    soon.looked(("t", 0), unchanged=True)
    soon.looked(("t", 2), unchanged=False)  # something to tell: look again next time
    named = cache.context(request(full.session_id, 2, [("t", part(1, 3))]), now=10.02)
    assert keys(named.to_read(False)) == [1, 2]  # named, and still pending
    later = cache.context(request(full.session_id, 3, []), now=10.0 + 2 * PROGRESS_REFRESH_S)
    assert later.refresh and keys(later.to_read(False)) == [0, 1, 2]
    assert keys(later.to_read(True)) == [1, 2]  # a re-check: positions already recorded


def test_the_progress_refresh_follows_the_lag_time() -> None:
    """A quarter of replica.lag.time.max.ms, never under PROGRESS_REFRESH_S; a cluster broker
    takes it from its config, and a session refreshes no sooner than that."""
    assert progress_refresh_s(30_000) == 7.5
    assert progress_refresh_s(2_000) == 0.5
    assert progress_refresh_s(100) == PROGRESS_REFRESH_S
    cache = FetchSessionCache(rng=random.Random(7), refresh_s=7.5)
    full = cache.context(request(0, INITIAL_EPOCH, [("t", part(0))]), now=10.0)
    assert not cache.context(request(full.session_id, 1, []), now=17.0).refresh
    assert cache.context(request(full.session_id, 2, []), now=17.6).refresh


async def test_a_cluster_broker_refreshes_at_a_quarter_of_its_lag_time() -> None:
    async with Cluster(brokers=3, replication="quorum", session_timeout_ms=6_000) as cluster:
        broker = cluster.broker(0)
        assert isinstance(broker, ClusterBroker)
        assert broker.cluster.replica_lag_time_max_ms == 12_000
        assert broker.fetch_sessions.refresh_s == 3.0


def test_forgotten_partitions_and_ended_sessions_are_reported_for_release() -> None:
    cache = FetchSessionCache(max_sessions=1, rng=random.Random(6))
    first = cache.context(request(0, INITIAL_EPOCH, [("t", part(0)), ("t", part(1))]))
    session = first.session
    forgetting = attrs.evolve(
        request(first.session_id, 1, []),
        forgotten_topics_data=[p.FetchForgottenTopic(name="t", partitions=[1, 7])],
    )
    context = cache.context(forgetting)
    assert context.forgotten == [("t", 1)]  # 7 was never in the session
    session_changed = context.session
    assert session_changed is session and list(session.partitions) == [("t", 0)]
    session.changed[("t", 1)] = None  # a stale mark from a partition not yet released
    assert keys(context.to_read(True)) == [0]
    evicting = cache.context(request(0, INITIAL_EPOCH, [("t", part(0))]))
    assert evicting.dropped == [session]  # the cache holds one session
    closing = cache.context(request(evicting.session_id, FINAL_EPOCH, []))
    assert closing.dropped == [evicting.session]


def keys(read: list[tuple[str, p.FetchRequestPartition]]) -> list[int]:
    return [q.partition_index for _, q in read]


# --- the fetcher's builder ----------------------------------------------------------------------


def test_the_builder_names_only_changed_partitions_and_starts_over_on_session_errors() -> None:
    builder = FetchSessionBuilder()
    builder.want("t", part(0, 10))
    builder.want("t", part(1, 20))
    sid, epoch, topics, forgotten = builder.build()
    assert (sid, epoch, forgotten) == (0, INITIAL_EPOCH, [])
    assert [q.partition_index for q in topics[0].partitions] == [0, 1]
    assert builder.on_response(p.FetchResponse(session_id=99, topics=[]))
    builder.want("t", part(0, 11))
    sid, epoch, topics, forgotten = builder.build()
    assert (sid, epoch) == (99, 1)
    assert [(q.partition_index, q.fetch_offset) for q in topics[0].partitions] == [(0, 11)]
    assert builder.on_response(p.FetchResponse(session_id=99, topics=[]))
    assert builder.build()[2:] == ([], [])  # nothing moved: an empty incremental request
    assert builder.on_response(p.FetchResponse(session_id=99, topics=[]))
    builder.keep_only({("t", 0)})  # partition 1 left
    sid, epoch, topics, forgotten = builder.build()
    assert (sid, epoch, topics) == (99, 3, [])
    assert forgotten == [p.FetchForgottenTopic(name="t", partitions=[1])]
    lost = p.FetchResponse(error_code=ErrorCode.FETCH_SESSION_ID_NOT_FOUND, topics=[])
    assert not builder.on_response(lost)
    sid, epoch, topics, forgotten = builder.build()  # a full fetch of what is still wanted
    assert (sid, epoch, forgotten) == (0, INITIAL_EPOCH, [])
    assert [(q.partition_index, q.fetch_offset) for q in topics[0].partitions] == [(0, 11)]


def test_the_builder_forgets_one_partition_until_it_is_wanted_again() -> None:
    """What the follower does with a partition that backs off: out of the session, then back
    in with its position, each touching only that partition."""
    builder = FetchSessionBuilder()
    builder.forget(("t", 0))  # not wanted: nothing to do
    builder.want("t", part(0, 10))
    builder.want("t", part(1, 20))
    builder.build()
    assert builder.on_response(p.FetchResponse(session_id=5, topics=[]))
    builder.forget(("t", 1))
    _, _, topics, forgotten = builder.build()
    assert (topics, forgotten) == ([], [p.FetchForgottenTopic(name="t", partitions=[1])])
    assert builder.on_response(p.FetchResponse(session_id=5, topics=[]))
    builder.want("t", part(1, 21))
    _, _, topics, forgotten = builder.build()
    assert forgotten == []
    assert [(q.partition_index, q.fetch_offset) for q in topics[0].partitions] == [(1, 21)]


def test_the_builder_names_again_what_an_unanswered_request_named() -> None:
    builder = FetchSessionBuilder()
    builder.want("t", part(0, 10))
    builder.build()
    assert builder.on_response(p.FetchResponse(session_id=7, topics=[]))
    builder.want("t", part(0, 11))
    assert len(builder.build()[2]) == 1
    builder.reset()  # the request failed: the leader may not have seen offset 11
    sid, epoch, topics, _ = builder.build()
    assert (sid, epoch) == (0, INITIAL_EPOCH)
    assert [(q.partition_index, q.fetch_offset) for q in topics[0].partitions] == [(0, 11)]


def test_a_builder_without_sessions_always_names_everything() -> None:
    builder = FetchSessionBuilder(sessions=False)
    builder.want("t", part(0, 10))
    builder.want("u", part(0, 5))
    for _ in range(2):
        sid, epoch, topics, forgotten = builder.build()
        assert (sid, epoch, forgotten) == (0, FINAL_EPOCH, [])
        assert [t.name for t in topics] == ["t", "u"]
        assert builder.on_response(p.FetchResponse(session_id=0, topics=[]))


# --- the broker over real sockets ---------------------------------------------------------------


async def fetch_during_append(
    consumer: Any, producer: Any, fetch: p.FetchRequest, topic: str, partition: int
) -> p.FetchResponse:
    """Sends ``fetch`` and, 0.1 s later (while it is parked), appends one record to
    ``topic``-``partition`` on the other connection; returns the fetch's answer."""
    async with trio.open_nursery() as nursery:

        async def append_soon() -> None:
            await trio.sleep(0.1)
            produce = produce_request(topic, build_batch([(None, b"x")]), partition=partition)
            await producer.request(p.ApiKey.PRODUCE, 8, produce)

        nursery.start_soon(append_soon)
        answer: p.FetchResponse = await consumer.request(p.ApiKey.FETCH, 11, fetch)
    return answer


async def test_the_broker_serves_fetch_sessions_over_the_wire(broker: Broker) -> None:
    broker.create_topic("s", 3)
    wanted = [("s", part(i)) for i in range(3)]
    async with open_connection("127.0.0.1", broker.port or 0) as conn:
        full = await conn.request(p.ApiKey.FETCH, 11, request(0, INITIAL_EPOCH, wanted))
        assert full.error_code == 0 and full.session_id != 0
        assert [q.partition_index for q in full.topics[0].partitions] == [0, 1, 2]
        sid = full.session_id
        quiet = await conn.request(p.ApiKey.FETCH, 11, request(sid, 1, []))
        assert quiet.session_id == sid and quiet.topics == []  # nothing new anywhere
        produce = produce_request("s", build_batch([(None, b"v")]), partition=1)
        await conn.request(p.ApiKey.PRODUCE, 8, produce)
        news = await conn.request(p.ApiKey.FETCH, 11, request(sid, 2, []))
        assert [(t.name, [q.partition_index for q in t.partitions]) for t in news.topics] == [
            ("s", [1])
        ]
        assert news.topics[0].partitions[0].high_watermark == 1
        stale = await conn.request(p.ApiKey.FETCH, 11, request(sid, 2, []))
        assert stale.error_code == ErrorCode.INVALID_FETCH_SESSION_EPOCH and stale.topics == []
        gone = await conn.request(p.ApiKey.FETCH, 11, request(sid + 1, 1, []))
        assert gone.error_code == ErrorCode.FETCH_SESSION_ID_NOT_FOUND
        plain = await conn.request(p.ApiKey.FETCH, 11, request(0, FINAL_EPOCH, wanted))
        assert plain.session_id == 0 and len(plain.topics[0].partitions) == 3


async def test_partitions_stop_telling_sessions_that_let_them_go(broker: Broker) -> None:
    """A partition tells every session holding it of each move; forgetting it, or closing
    the session, takes the session off the partition (no leak, no wasted wake-ups)."""
    broker.create_topic("r", 2)
    wanted = [("r", part(0)), ("r", part(1))]
    async with open_connection("127.0.0.1", broker.port or 0) as conn:
        full = await conn.request(p.ApiKey.FETCH, 11, request(0, INITIAL_EPOCH, wanted))
        sessions = [broker.partitions[("r", i)].fetch_sessions for i in range(2)]
        assert all(len(held) == 1 for held in sessions)
        forget = attrs.evolve(
            request(full.session_id, 1, []),
            forgotten_topics_data=[p.FetchForgottenTopic(name="r", partitions=[1])],
        )
        await conn.request(p.ApiKey.FETCH, 11, forget)
        assert len(sessions[0]) == 1 and not sessions[1]
        await conn.request(p.ApiKey.FETCH, 11, request(full.session_id, FINAL_EPOCH, []))
        assert not sessions[0]


async def test_followers_replicate_through_sessions_and_survive_losing_them() -> None:
    """Followers open a session per leader and name only moving partitions; when the leaders
    forget every session (as after eviction) the followers start over and keep replicating."""
    async with Cluster(brokers=3) as cluster:
        await cluster.create_topic("many", 12, 3)
        leaders = [await cluster.leader("many", i) for i in range(12)]
        for round_ in range(3):
            for index, leader in enumerate(leaders):
                async with open_connection("127.0.0.1", cluster.ports[leader]) as conn:
                    produce = produce_request("many", build_batch([(None, b"r")]), acks=-1)
                    produce = attrs.evolve(
                        produce,
                        topics=[
                            attrs.evolve(
                                produce.topics[0],
                                partitions=[
                                    attrs.evolve(
                                        produce.topics[0].partitions[0], partition_index=index
                                    )
                                ],
                            )
                        ],
                    )
                    response = await conn.request(p.ApiKey.PRODUCE, 8, produce)
                    assert response.topics[0].partitions[0].error_code == 0
            brokers = [cluster.broker(i) for i in range(3)]
            if round_ == 0:
                # Every broker follows some partitions of each other one: a session each. An
                # acks=all answer needs only a majority, so the second follower's first fetch
                # may still be on its way (it applies the image later): wait for it, bounded.
                with trio.fail_after(10):
                    while not all(len(b.fetch_sessions) == 2 for b in brokers):  # noqa: ASYNC110
                        await trio.sleep(0.02)
            if round_ == 1:
                for b in brokers:  # every leader forgets every session
                    b.fetch_sessions = FetchSessionCache()

        def ends() -> set[int]:
            return {
                cluster.broker(b).partitions[("many", i)].log_end_offset
                for b in range(3)
                for i in range(12)
            }

        with trio.fail_after(20):
            while ends() != {3}:  # noqa: ASYNC110 - polling other brokers' state
                await trio.sleep(0.05)
        assert all(len(cluster.broker(i).fetch_sessions) == 2 for i in range(3))


async def _busy_next_to_idle(cluster: Cluster) -> tuple[int, ClusterBroker, Any]:
    """A one-partition topic next to a 40-partition one, both RF 2, once the follower of the
    busy partition's leader has settled: (leader id, follower, its fetcher from the leader).

    Why wait: the follower may have asked for partitions before the leader had them (it
    applies the image later, or opens them later: part of a topic this size opens in a worker
    thread), and a NOT_LEADER_OR_FOLLOWER answer means 50 ms of back-off; measuring starts
    once no back-off or truncation is pending."""
    await cluster.create_topic("busy", 1, 2)
    await cluster.create_topic("idle", 40, 2)
    await cluster.wait_ready("idle")
    leader = await cluster.leader("busy")
    follower = cluster.broker(1 - leader)
    fetcher = follower.fetchers[leader]

    def unsettled() -> bool:
        now = trio.current_time()
        return any(at > now for at in fetcher._retry_at.values()) or any(
            r.follower is not None and r.follower.truncating for r in follower.followed_from(leader)
        )

    with trio.fail_after(10):
        while unsettled():  # noqa: ASYNC110 - polls the fetcher, no event to wait on
            await trio.sleep(0.02)
    return leader, follower, fetcher


async def _thirty_produces(
    cluster: Cluster, leader: int, fetcher: Any, before_each: Any = None
) -> tuple[int, int]:
    """One acks=all produce to "busy", then 30 more (``before_each()`` before each): (fetch
    rounds, positions the fetcher looked at) over the 30."""
    async with open_connection("127.0.0.1", cluster.ports[leader]) as conn:
        first = produce_request("busy", build_batch([(None, b"r")]), acks=-1)
        await conn.request(p.ApiKey.PRODUCE, 8, first)
        checked, fetches = fetcher.positions_checked, fetcher.fetches
        for _ in range(30):
            if before_each is not None:
                before_each()
            produce = produce_request("busy", build_batch([(None, b"r")]), acks=-1)
            response = await conn.request(p.ApiKey.PRODUCE, 8, produce)
            assert response.topics[0].partitions[0].error_code == 0
    return fetcher.fetches - fetches, fetcher.positions_checked - checked


async def test_a_follower_round_looks_only_at_partitions_that_moved() -> None:
    """Idle partitions cost a follower's round nothing: after the first round only partitions
    a response or a truncation moved are looked at (and every one once per FULL_CHECK_S), so
    replicating one busy partition next to 40 idle ones does not walk the 40 each time."""
    async with Cluster(brokers=2) as cluster:
        leader, follower, fetcher = await _busy_next_to_idle(cluster)
        followed = len(follower.followed_from(leader))
        assert followed > 10  # the leader leads some idle partitions too
        rounds, checked = await _thirty_produces(cluster, leader, fetcher)
        # About a round per produce; a position not handed on would have the leader send the
        # same records again and again.
        assert 30 <= rounds <= 60, rounds
        assert checked <= 2 * followed + 2 * rounds


async def test_a_partition_backing_off_costs_the_others_nothing() -> None:
    """While one followed partition backs off (an error from the leader), the follower leaves
    it out of the session and keeps looking only at what moved: a back-off used to rebuild
    the round's partition list, and a new list means looking at every partition. When the
    back-off ends the partition is fetched again from where it stands."""
    async with Cluster(brokers=2) as cluster:
        leader, follower, fetcher = await _busy_next_to_idle(cluster)
        followed = follower.followed_from(leader)
        idle = next(r for r in followed if r.topic == "idle")
        # Kept in back-off throughout (each one lasts 50 ms).
        rounds, checked = await _thirty_produces(
            cluster,
            leader,
            fetcher,
            lambda: fetcher._back_off(idle, ErrorCode.NOT_LEADER_OR_FOLLOWER),
        )
        assert 30 <= rounds <= 60, rounds
        assert checked <= 2 * len(followed) + 2 * rounds
        # Back-off over: the partition is fetched again.
        async with open_connection("127.0.0.1", cluster.ports[leader]) as conn:
            produce = produce_request(
                "idle", build_batch([(None, b"r")]), acks=-1, partition=idle.index
            )
            response = await conn.request(p.ApiKey.PRODUCE, 8, produce)
            assert response.topics[0].partitions[0].error_code == 0
        with trio.fail_after(5):
            while idle.log_end_offset < 1:  # noqa: ASYNC110 - polls the replica
                await trio.sleep(0.02)


async def test_news_read_by_a_long_poll_that_kept_waiting_is_still_sent(broker: Broker) -> None:
    """A parked incremental fetch reads a high watermark move, keeps waiting (min_bytes not
    reached) and answers at max_wait_ms: that answer must still carry the move, because the
    first read was never sent."""
    broker.create_topic("hw", 2)
    async with open_connection("127.0.0.1", broker.port or 0) as conn:
        full = await conn.request(
            p.ApiKey.FETCH, 11, request(0, INITIAL_EPOCH, [("hw", part(0)), ("hw", part(1))])
        )
        produce = produce_request("hw", build_batch([(None, b"v")]), partition=1)
        await conn.request(p.ApiKey.PRODUCE, 8, produce)
        waiting = attrs.evolve(
            request(full.session_id, 1, [("hw", part(1, 1))]),  # already holds offset 0
            min_bytes=1 << 20,
            max_wait_ms=200,
        )
        with trio.fail_after(10):
            news = await conn.request(p.ApiKey.FETCH, 11, waiting)
        answers = [
            (t.name, q.partition_index, q.high_watermark) for t in news.topics for q in t.partitions
        ]
        assert answers == [("hw", 1, 1)]
        quiet = await conn.request(p.ApiKey.FETCH, 11, request(full.session_id, 2, []))
        assert quiet.topics == []  # and once sent, it is not repeated


async def test_a_parked_incremental_fetch_wakes_for_an_idle_partition_that_moves(
    broker: Broker,
) -> None:
    """Partitions the session found idle are skipped until they change: an append to one must
    count as a change by the time the parked fetch looks again (not only at max_wait_ms). A
    follower's fetch (replica_id 1; a single broker checks nothing more): followers wake on
    appends, before the high watermark moves."""
    woken = await parked_session_fetch_during_append(broker, "idle", 3, 2, replica_id=1)
    assert [(t.name, [q.partition_index for q in t.partitions]) for t in woken.topics] == [
        ("idle", [2])
    ]


async def test_a_parked_consumer_session_fetch_wakes_when_a_high_watermark_moves(
    broker: Broker,
) -> None:
    """Consumers' session fetches wait on the session's commit waiters: a produce to an idle
    partition must answer the parked fetch at once, not at max_wait_ms."""
    woken = await parked_session_fetch_during_append(broker, "c", 2, 0, replica_id=-1)
    assert [(t.name, [q.partition_index for q in t.partitions]) for t in woken.topics] == [
        ("c", [0])
    ]


async def parked_session_fetch_during_append(
    broker: Broker, topic: str, partitions: int, append_to: int, *, replica_id: int
) -> p.FetchResponse:
    """Opens a session on every partition of a new ``topic``, finds them all idle, then parks
    an incremental fetch (max_wait_ms 30 s) and appends to ``append_to``; the fetch's answer,
    which must come far sooner than max_wait_ms."""
    broker.create_topic(topic, partitions)
    wanted = [(topic, part(i)) for i in range(partitions)]
    async with (
        open_connection("127.0.0.1", broker.port or 0) as consumer,
        open_connection("127.0.0.1", broker.port or 0) as producer,
    ):

        def as_fetcher(fetch: p.FetchRequest) -> p.FetchRequest:
            return attrs.evolve(fetch, replica_id=replica_id)

        full = await consumer.request(
            p.ApiKey.FETCH, 11, as_fetcher(request(0, INITIAL_EPOCH, wanted))
        )
        quiet = await consumer.request(
            p.ApiKey.FETCH, 11, as_fetcher(request(full.session_id, 1, []))
        )
        assert quiet.topics == []  # every partition is now known to be idle
        parked = as_fetcher(attrs.evolve(request(full.session_id, 2, []), max_wait_ms=30_000))
        with trio.fail_after(10):  # far below max_wait_ms
            return await fetch_during_append(consumer, producer, parked, topic, append_to)


async def test_records_a_recheck_found_while_waiting_for_min_bytes_are_sent_at_the_deadline(
    broker: Broker,
) -> None:
    """An idle partition moves while a fetch waits for min_bytes: the re-check reads its
    records, keeps waiting, and the answer at max_wait_ms must still carry them (the
    partition stays to be looked at until a sent response told it)."""
    broker.create_topic("m", 2)
    wanted = [("m", part(0)), ("m", part(1))]
    async with (
        open_connection("127.0.0.1", broker.port or 0) as consumer,
        open_connection("127.0.0.1", broker.port or 0) as producer,
    ):
        full = await consumer.request(p.ApiKey.FETCH, 11, request(0, INITIAL_EPOCH, wanted))
        await consumer.request(p.ApiKey.FETCH, 11, request(full.session_id, 1, []))
        waiting = attrs.evolve(request(full.session_id, 2, []), min_bytes=1 << 20, max_wait_ms=500)
        with trio.fail_after(10):
            answer = await fetch_during_append(consumer, producer, waiting, "m", 1)
        got = [
            (t.name, q.partition_index, bool(q.records))
            for t in answer.topics
            for q in t.partitions
        ]
        assert got == [("m", 1, True)]


async def test_a_busy_partition_does_not_starve_the_others_under_max_bytes(
    broker: Broker,
) -> None:
    """Kafka's session fairness: a partition that returned records moves to the end of the
    session's order, so a first partition that always has more cannot hold the response's
    max_bytes forever."""
    broker.create_topic("fair", 2)
    value = b"v" * 300_000
    async with open_connection("127.0.0.1", broker.port or 0) as conn:
        for partition in (0, 1):
            produce = produce_request("fair", build_batch([(None, value)]), partition=partition)
            await conn.request(p.ApiKey.PRODUCE, 8, produce)
        full = await conn.request(
            p.ApiKey.FETCH,
            11,
            attrs.evolve(
                request(0, INITIAL_EPOCH, [("fair", part(0, 1)), ("fair", part(1, 0))]),
                max_bytes=1,
            ),
        )
        sid, offset, served = full.session_id, 1, []
        for epoch in (1, 2, 3):
            # Partition 0 always has one more batch than the fetcher holds.
            produce = produce_request("fair", build_batch([(None, value)]), partition=0)
            await conn.request(p.ApiKey.PRODUCE, 8, produce)
            response = await conn.request(
                p.ApiKey.FETCH,
                11,
                attrs.evolve(request(sid, epoch, [("fair", part(0, offset))]), max_bytes=1),
            )
            with_records = [
                q.partition_index for t in response.topics for q in t.partitions if q.records
            ]
            served += with_records
            if 0 in with_records:
                offset += 1
        assert 1 in served, served
