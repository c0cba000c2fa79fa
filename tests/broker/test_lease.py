"""The leader lease (pure): when a leader stops taking writes because it may have been
replaced without hearing of it, and when a broker presumes itself fenced. The end-to-end
effect, a cut-off leader under load, is in ``tests/process/test_partition.py``."""

from __future__ import annotations

from quorumq.broker._lease import LeaderLease, leader_lease_lost

NOW = 100.0
SESSION = 3.0


def _lost(replicas: tuple[int, ...], contact: dict[int, float]) -> bool:
    """Asked of leader 0 once it has lost the controller (``ClusterBroker.lease_lost``)."""
    return leader_lease_lost(replicas, 0, contact, now=NOW, session_s=SESSION)


def test_a_leader_that_hears_the_controller_keeps_its_lease_even_alone() -> None:
    """Followers gone (dead, or cut off) while the controller answers: the controller decides
    (an ISR shrink, or nothing for quorum); the leader does not fence itself."""
    lease = LeaderLease(session_s=SESSION)
    lease.answered(NOW - 1.0, vouches=True)
    lease.refresh(NOW, image_shows_fenced=False)
    assert not lease.in_doubt
    assert not lease.lost((0, 1, 2), 0, NOW)
    assert not lease.unlisted(NOW)


def test_a_leader_cut_off_from_the_controller_and_its_followers_loses_it() -> None:
    assert _lost((0, 1, 2), {})
    stale = {1: NOW - SESSION - 0.1, 2: NOW - 10 * SESSION}
    assert _lost((0, 1, 2), stale)


def test_a_majority_still_fetching_keeps_the_lease_without_a_controller() -> None:
    """The controller's Raft majority lost, followers alive: leaders go on serving, as in
    Kafka; one follower of two is a majority of three with the leader."""
    assert not _lost((0, 1, 2), {1: NOW - 1.0})
    assert not _lost((0, 1, 2), {2: NOW - SESSION})  # within the session


def test_majorities_count_the_leader_and_every_replica() -> None:
    five = (0, 1, 2, 3, 4)
    assert _lost(five, {1: NOW})  # 2 of 5
    assert not _lost(five, {1: NOW, 2: NOW})  # 3 of 5
    assert _lost((0, 1), {})  # 1 of 2 is no majority
    assert not _lost((0, 1), {1: NOW})
    # Contact from a broker that is no replica of this partition does not count.
    assert _lost((0, 1, 2), {7: NOW, 8: NOW})


def test_a_single_replica_never_loses_its_lease() -> None:
    """Nobody else could lead it, so refusing writes would only make it unavailable."""
    assert not _lost((0,), {})


def test_a_broker_that_loses_the_controller_it_heard_presumes_itself_fenced() -> None:
    lease = LeaderLease(session_s=SESSION)
    lease.answered(NOW - SESSION - 0.5, vouches=True)
    lease.fetched_by(1, NOW - 0.5)
    lease.refresh(NOW, image_shows_fenced=False)
    assert lease.controller_lost and lease.presumed_fenced
    # Still heard from follower 1: a majority of three with itself, so nobody replaced it.
    assert not lease.lost((0, 1, 2), 0, NOW)
    assert not lease.unlisted(NOW)
    later = NOW + SESSION
    lease.refresh(later, image_shows_fenced=False)
    assert lease.lost((0, 1, 2), 0, later)
    assert lease.unlisted(later)  # nobody fetches: clients must look elsewhere


def test_the_presumption_outlives_the_cut_until_something_vouches_for_the_image() -> None:
    """After the heal heartbeats resume at once, but the image lags: an answer that does not
    vouch for it (fenced, or not caught up) leaves the broker presuming itself fenced, with
    every lease lost, even for partitions whose followers fetch again."""
    lease = LeaderLease(session_s=SESSION)
    lease.answered(NOW - SESSION - 1.0, vouches=True)
    lease.refresh(NOW, image_shows_fenced=False)
    lease.answered(NOW, vouches=False)
    lease.fetched_by(1, NOW)
    lease.fetched_by(2, NOW)
    lease.refresh(NOW + 0.1, image_shows_fenced=False)
    assert not lease.controller_lost
    assert lease.lost((0, 1, 2), 0, NOW + 0.1)
    assert lease.unlisted(NOW + 0.1)
    lease.answered(NOW + 0.2, vouches=True)
    assert not lease.in_doubt
    assert not lease.lost((0, 1, 2), 0, NOW + 0.2)


def test_an_image_that_shows_the_fencing_ends_the_presumption() -> None:
    lease = LeaderLease(session_s=SESSION)
    lease.answered(NOW - SESSION - 1.0, vouches=True)
    lease.refresh(NOW, image_shows_fenced=True)  # while the controller is lost: stays
    assert lease.presumed_fenced
    lease.answered(NOW + 0.1, vouches=False)
    lease.refresh(NOW + 0.2, image_shows_fenced=True)
    assert not lease.in_doubt


def test_a_starting_broker_presumes_nothing() -> None:
    """No answer yet: nothing to presume. It leads nothing until its image shows its new
    incarnation unfenced, whatever a replayed image says of the one before."""
    lease = LeaderLease(session_s=SESSION)
    lease.refresh(NOW, image_shows_fenced=False)
    assert lease.controller_lost and not lease.presumed_fenced
    lease.answered(NOW + 0.1, vouches=False)  # e.g. not caught up yet
    lease.refresh(NOW + 0.2, image_shows_fenced=False)
    assert not lease.in_doubt
