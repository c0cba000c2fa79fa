"""BrokerLiveness: the active controller's memory of heartbeats (not Raft records)."""

from __future__ import annotations

import pytest

from quorumq.controller.image import (
    BrokerHeartbeat,
    BrokerLiveness,
    ControllerConfig,
    ControllerEpochBump,
    FenceBroker,
    RegisterBroker,
    ReplicaReport,
    UnfenceBroker,
    brokers_to_probe,
    check_heartbeat_mac,
    heartbeat_mac,
    tick,
)
from quorumq.errors import BrokerIdNotRegistered, ClusterAuthorizationFailed, StaleBrokerEpoch

from ._helpers import apply_all, live_cluster

CONFIG = ControllerConfig(session_timeout_ms=9_000)


def test_a_heartbeat_counts_at_the_controller_s_clock_and_keeps_reports_until_replaced() -> None:
    image = live_cluster()  # registered at 1,000
    liveness = BrokerLiveness().for_epoch(image.controller_epoch)
    broker = image.brokers[1]
    assert liveness.last_seen_ms(broker) == 1_000  # the registration counts as a heartbeat
    report = ReplicaReport("orders", 0, 3, 120, 4)
    # The broker's clock says 99; the controller heard it at 7,000, and that is what counts.
    liveness.record(image, BrokerHeartbeat(1, 2, 99, (report,)), 7_000)
    assert liveness.last_seen_ms(broker) == 7_000
    assert liveness.reports_for(image, "orders", 0) == {1: (3, 120)}
    assert liveness.reports_for(image, "orders", 0, min_current_leader_epoch=4) == {1: (3, 120)}
    assert liveness.reports_for(image, "orders", 0, min_current_leader_epoch=5) == {}
    liveness.record(image, BrokerHeartbeat(1, 2, 6_000), 6_000)  # late, without reports
    assert liveness.last_seen_ms(broker) == 7_000
    assert liveness.reports_for(image, "orders", 0) == {1: (3, 120)}
    liveness.record(image, BrokerHeartbeat(1, 2, 8_000, ()), 8_000)  # reports replaced
    assert liveness.reports_for(image, "orders", 0) == {}
    assert liveness.heartbeats == 3


def test_a_heartbeat_from_another_incarnation_or_an_unknown_broker_is_refused() -> None:
    image = live_cluster()
    liveness = BrokerLiveness()
    with pytest.raises(StaleBrokerEpoch):
        liveness.record(image, BrokerHeartbeat(1, 1, 0), 5_000)
    with pytest.raises(BrokerIdNotRegistered):
        liveness.record(image, BrokerHeartbeat(9, 1, 0), 5_000)
    report = ReplicaReport("orders", 0, 3, 120, 4)
    liveness.record(image, BrokerHeartbeat(1, 2, 0, (report,)), 5_000)
    # Broker 1 restarts: the new incarnation is judged by its registration, without the old
    # incarnation's heartbeats or reports.
    image = apply_all([RegisterBroker(1, "inc-new", "127.0.0.1", 9093, 6_000)], image)
    broker = image.brokers[1]
    assert liveness.last_seen_ms(broker) == 6_000
    assert liveness.reports_for(image, "orders", 0) == {}


def test_a_new_controller_tenure_starts_from_an_empty_memory() -> None:
    """A voter that leads again must not trust heartbeats from its previous tenure: the tick
    forgets them, and the takeover grace protects the brokers meanwhile."""
    image = live_cluster()
    liveness = BrokerLiveness()
    for b in (0, 1, 2):
        liveness.for_epoch(1).record(image, BrokerHeartbeat(b, b + 1, 0), 50_000)
    assert tick(image, 58_000, CONFIG, liveness) == []
    image = apply_all([ControllerEpochBump(0, 3, 20_000)], image)
    records = tick(image, 58_000, CONFIG, liveness)
    assert [type(r) for r in records[:3]] == [FenceBroker] * 3
    assert liveness.controller_epoch == 3 and liveness.reports_held == 0


def test_only_fencing_decisions_leave_the_controller_s_memory() -> None:
    """Heartbeats make no record; silence makes a FenceBroker, a heartbeat after it an
    UnfenceBroker (the broker leads nothing by then)."""
    image = live_cluster()
    liveness = BrokerLiveness()
    for now in range(2_000, 10_001, 2_000):
        for b in (0, 1):
            liveness.for_epoch(1).record(image, BrokerHeartbeat(b, b + 1, 0), now)
        assert tick(image, now, CONFIG, liveness) == []
    records = tick(image, 10_001, CONFIG, liveness)
    assert records == [FenceBroker(2, 3, 1)]
    image = apply_all(records, image)
    liveness.record(image, BrokerHeartbeat(2, 3, 0), 10_500)
    assert tick(image, 10_500, CONFIG, liveness) == [UnfenceBroker(2, 3, 1)]


def test_a_broker_whose_listener_refused_a_probe_is_fenced_at_once_and_stays_fenced() -> None:
    """A refused probe (``mark_gone``) fences without waiting out the session, and keeps the
    broker fenced although its last heartbeat is recent; a heartbeat that came after the
    probe began outweighs the mark, one from before does not, and another incarnation is
    not touched."""
    image = live_cluster()
    liveness = BrokerLiveness().for_epoch(1)
    for b in (0, 1, 2):
        liveness.record(image, BrokerHeartbeat(b, b + 1, 0), 2_000)
    broker = image.brokers[2]
    liveness.mark_gone(broker, 2_500)
    assert liveness.gone(broker)
    records = tick(image, 3_000, CONFIG, liveness)  # 1 s of silence, of a 9 s session
    assert records == [FenceBroker(2, 3, 1)]
    image = apply_all(records, image)
    assert tick(image, 3_100, CONFIG, liveness) == []  # fresh, but gone: not unfenced
    liveness.record(image, BrokerHeartbeat(2, 3, 0), 2_400)  # from before the probe
    assert liveness.gone(image.brokers[2])
    liveness.record(image, BrokerHeartbeat(2, 3, 0), 3_200)  # it answers after all
    assert not liveness.gone(image.brokers[2])
    assert tick(image, 3_200, CONFIG, liveness) == [UnfenceBroker(2, 3, 1)]
    # A mark names an incarnation: the broker registered again is not gone.
    liveness.mark_gone(image.brokers[1], 3_300)
    image = apply_all([RegisterBroker(1, "inc-1-again", "127.0.0.1", 9093, 3_400)], image)
    assert not liveness.gone(image.brokers[1])
    # A new tenure forgets the marks, as it forgets heartbeats.
    liveness.mark_gone(image.brokers[0], 3_500)
    assert not liveness.for_epoch(2).gone(image.brokers[0])


def test_brokers_to_probe_are_the_silent_unfenced_ones_not_yet_known_gone() -> None:
    image = live_cluster()  # registered at 1,000; controller epoch started at 1,000
    liveness = BrokerLiveness().for_epoch(1)
    liveness.record(image, BrokerHeartbeat(0, 1, 0), 3_000)
    liveness.record(image, BrokerHeartbeat(1, 2, 0), 1_500)
    liveness.record(image, BrokerHeartbeat(2, 3, 0), 2_500)
    assert brokers_to_probe(image, 3_000, liveness, 1_000) == [image.brokers[1]]
    assert brokers_to_probe(image, 3_600, liveness, 1_000) == [image.brokers[1], image.brokers[2]]
    liveness.mark_gone(image.brokers[2], 2_900)
    assert brokers_to_probe(image, 3_600, liveness, 1_000) == [image.brokers[1]]
    image = apply_all([FenceBroker(1, 2, 1)], image)
    assert brokers_to_probe(image, 3_600, liveness, 1_000) == []
    # A new controller has heard nobody yet: it probes every broker at once, and stops
    # probing one as soon as it hears from it.
    image = apply_all([ControllerEpochBump(1, 2, 2_500)], live_cluster())
    liveness = BrokerLiveness().for_epoch(2)
    assert len(brokers_to_probe(image, 2_500, liveness, 1_000)) == 3
    liveness.record(image, BrokerHeartbeat(0, 1, 0), 2_600)
    liveness.record(image, BrokerHeartbeat(1, 2, 0), 2_600)
    assert brokers_to_probe(image, 2_700, liveness, 1_000) == [image.brokers[2]]
    # A wildcard address would probe the controller's own host: never probed.
    image = apply_all([RegisterBroker(2, "inc-2-any", "0.0.0.0", 9094, 2_500)], image)
    image = apply_all([RegisterBroker(1, "inc-1-any", "[::]", 9093, 2_500)], image)
    assert brokers_to_probe(image, 3_600, BrokerLiveness(), 1_000) == [image.brokers[0]]


def test_a_heartbeat_s_mac_covers_what_it_asserts_and_ages_out() -> None:
    report = ReplicaReport("orders", 0, 3, 120, 4)
    heartbeat = BrokerHeartbeat(1, 2, 0, (report,))
    mac = heartbeat_mac("secret", heartbeat, 10_000)
    check_heartbeat_mac("secret", heartbeat, 10_000, mac, 12_000, 9_000)
    check_heartbeat_mac("secret", heartbeat, 10_000, mac, 1_000, 9_000)  # its clock is ahead
    forged = BrokerHeartbeat(1, 2, 0, (ReplicaReport("orders", 0, 3, 999, 4),))
    cases = [
        (heartbeat, 10_000, None, 12_000),  # no MAC
        (forged, 10_000, mac, 12_000),  # a longer log claimed: a forged vote
        (BrokerHeartbeat(1, 3, 0, (report,)), 10_000, mac, 12_000),  # another incarnation
        (heartbeat, 10_001, mac, 12_000),  # another send time
        (heartbeat, 10_000, heartbeat_mac("other", heartbeat, 10_000), 12_000),  # wrong key
        (heartbeat, 10_000, mac, 19_001),  # replayed a session later
    ]
    for beat, sent_ms, candidate, now_ms in cases:
        with pytest.raises(ClusterAuthorizationFailed):
            check_heartbeat_mac("secret", beat, sent_ms, candidate, now_ms, 9_000)


def test_a_heartbeat_s_mac_covers_a_controlled_shutdown_request() -> None:
    """A request to shut down fences the broker and moves its leaderships: one forged onto a
    captured heartbeat must not pass, nor one taken off a genuine request."""
    heartbeat = BrokerHeartbeat(1, 2, 0)
    plain = heartbeat_mac("secret", heartbeat, 10_000)
    asking = heartbeat_mac("secret", heartbeat, 10_000, want_shut_down=True)
    assert plain != asking
    check_heartbeat_mac("secret", heartbeat, 10_000, asking, 10_000, 9_000, want_shut_down=True)
    with pytest.raises(ClusterAuthorizationFailed):
        check_heartbeat_mac("secret", heartbeat, 10_000, plain, 10_000, 9_000, want_shut_down=True)
    with pytest.raises(ClusterAuthorizationFailed):
        check_heartbeat_mac("secret", heartbeat, 10_000, asking, 10_000, 9_000)
