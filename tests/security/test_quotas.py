"""The pure quota core: which quota applies (Kafka's precedence), the describe filter, and the
sampled rate that decides a throttle."""

from __future__ import annotations

import pytest

from quorumq.errors import InvalidRequest
from quorumq.security import (
    ANONYMOUS,
    CONSUMER_BYTE_RATE,
    PRODUCER_BYTE_RATE,
    QuotaTable,
    QuotaTracker,
    check_quota_value,
    quota_entity,
)

P = PRODUCER_BYTE_RATE


def table(*entries: tuple[dict[str, str | None], float]) -> QuotaTable:
    t = QuotaTable()
    for names, rate in entries:
        t = t.altered(quota_entity(names.items()), {P: rate}, ())
    return t


def test_the_most_specific_entity_wins_in_kafkas_order() -> None:
    levels = [
        ({"user": "alice", "client-id": "app"}, 1.0),
        ({"user": "alice", "client-id": None}, 2.0),
        ({"user": "alice"}, 3.0),
        ({"user": None, "client-id": "app"}, 4.0),
        ({"user": None, "client-id": None}, 5.0),
        ({"user": None}, 6.0),
        ({"client-id": "app"}, 7.0),
        ({"client-id": None}, 8.0),
    ]
    # Remove the most specific level one at a time: the next one takes over.
    for i in range(len(levels)):
        found = table(*levels[i:]).quota_for(P, "alice", "app")
        assert found is not None and found[0] == levels[i][1]
    assert table().quota_for(P, "alice", "app") is None
    assert table(({"client-id": "other"}, 1.0)).quota_for(P, ANONYMOUS, "app") is None
    assert table(({"client-id": "app"}, 1.0)).quota_for(CONSUMER_BYTE_RATE, "u", "app") is None


def test_a_default_bounds_each_client_alone_and_a_named_user_bounds_all_its_clients() -> None:
    defaults = table(({"client-id": None}, 100.0))
    a = defaults.quota_for(P, ANONYMOUS, "a")
    b = defaults.quota_for(P, ANONYMOUS, "b")
    assert a is not None and b is not None and a[1] != b[1]
    named = table(({"user": "alice"}, 100.0))
    x = named.quota_for(P, "alice", "x")
    y = named.quota_for(P, "alice", "y")
    assert x is not None and y is not None and x[1] == y[1] == (("user", "alice"),)


def test_describe_filters_by_exact_name_default_and_any_name() -> None:
    t = table(
        ({"client-id": "app"}, 1.0),
        ({"client-id": None}, 2.0),
        ({"user": "alice", "client-id": "app"}, 3.0),
    )

    def names(components: list[tuple[str, int, str | None]], strict: bool) -> list[object]:
        return [dict(e) for e, _ in t.matching(components, strict=strict)]

    assert names([("client-id", 0, "app")], True) == [{"client-id": "app"}]
    assert names([("client-id", 0, "app")], False) == [
        {"client-id": "app"},
        {"client-id": "app", "user": "alice"},
    ]
    assert names([("client-id", 1, None)], False) == [{"client-id": None}]
    assert names([("user", 2, None)], False) == [{"client-id": "app", "user": "alice"}]
    assert len(names([], False)) == 3 and names([], True) == []
    for bad in ([("ip", 0, None)], [("user", 7, None)], [("user", 0, "a"), ("user", 0, "b")]):
        with pytest.raises(InvalidRequest):
            list(t.matching(bad, strict=False))


def test_bad_entities_and_values_are_refused() -> None:
    for pairs in ([], [("ip", "1.2.3.4")], [("user", "a"), ("user", "b")], [("client-id", "")]):
        with pytest.raises(InvalidRequest):
            quota_entity(pairs)
    for key, value in (
        ("request_percentage", 10.0),
        (P, 0.0),
        (P, -5.0),
        (P, float("nan")),
        (P, float("inf")),
    ):
        with pytest.raises(InvalidRequest):
            check_quota_value(key, value)
    check_quota_value(P, 1.0)


def test_removing_the_last_key_removes_the_entity() -> None:
    e = quota_entity([("client-id", "app")])
    t = QuotaTable().altered(e, {P: 1.0, CONSUMER_BYTE_RATE: 2.0}, ())
    t = t.altered(e, {}, [P])
    assert t.entries == {e: {CONSUMER_BYTE_RATE: 2.0}}
    assert not t.altered(e, {}, [CONSUMER_BYTE_RATE])


def test_a_client_may_burst_its_window_then_is_throttled_back_to_its_rate() -> None:
    tracker = QuotaTracker(window_ms=1000, samples=11)
    group = (("client-id", "app"),)
    # 1,000 bytes/s: ten seconds' worth (the minimum span) goes through unthrottled.
    assert tracker.record(P, group, 1000.0, 10_000, now_ms=0) == 0
    throttle = tracker.record(P, group, 1000.0, 5_000, now_ms=10)
    # 15,000 bytes over a 10 s span is 1,500/s: half again over, so throttled for half the span.
    assert throttle == 5000
    # Once time has passed at the rate, the client is under its bound again.
    assert tracker.record(P, group, 1000.0, 1, now_ms=16_000) == 0
    # Other groups are counted apart.
    assert tracker.record(P, (("client-id", "other"),), 1000.0, 100, now_ms=16_000) == 0


def test_a_throttle_is_capped_at_the_whole_window_and_idle_groups_are_forgotten() -> None:
    tracker = QuotaTracker(window_ms=100, samples=3)
    group = (("client-id", "app"),)
    assert tracker.record(P, group, 1.0, 10**9, now_ms=0) == 300
    tracker.forget_idle(now_ms=10_000)
    assert tracker.record(P, group, 1000.0, 100, now_ms=10_000) == 0
