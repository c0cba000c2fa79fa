"""The leader lease rule (pure): when a leader stops taking writes because it may have been
replaced without hearing of it. The end-to-end effect, a cut-off leader under load, is in
``tests/process/test_partition.py``."""

from __future__ import annotations

from quorumq.broker._replica import leader_lease_lost

NOW = 100.0
SESSION = 3.0


def _lost(replicas: tuple[int, ...], contact: dict[int, float], *, controller_lost: bool) -> bool:
    return leader_lease_lost(
        replicas, 0, contact, now=NOW, session_s=SESSION, controller_lost=controller_lost
    )


def test_a_leader_that_hears_the_controller_keeps_its_lease_even_alone() -> None:
    """Followers gone (dead, or cut off) while the controller answers: the controller decides
    (an ISR shrink, or nothing for quorum); the leader does not fence itself."""
    assert not _lost((0, 1, 2), {}, controller_lost=False)


def test_a_leader_cut_off_from_the_controller_and_its_followers_loses_it() -> None:
    assert _lost((0, 1, 2), {}, controller_lost=True)
    stale = {1: NOW - SESSION - 0.1, 2: NOW - 10 * SESSION}
    assert _lost((0, 1, 2), stale, controller_lost=True)


def test_a_majority_still_fetching_keeps_the_lease_without_a_controller() -> None:
    """The controller's Raft majority lost, followers alive: leaders go on serving, as in
    Kafka; one follower of two is a majority of three with the leader."""
    assert not _lost((0, 1, 2), {1: NOW - 1.0}, controller_lost=True)
    assert not _lost((0, 1, 2), {2: NOW - SESSION}, controller_lost=True)  # within the session


def test_majorities_count_the_leader_and_every_replica() -> None:
    five = (0, 1, 2, 3, 4)
    assert _lost(five, {1: NOW}, controller_lost=True)  # 2 of 5
    assert not _lost(five, {1: NOW, 2: NOW}, controller_lost=True)  # 3 of 5
    assert _lost((0, 1), {}, controller_lost=True)  # 1 of 2 is no majority
    assert not _lost((0, 1), {1: NOW}, controller_lost=True)
    # Contact from a broker that is no replica of this partition does not count.
    assert _lost((0, 1, 2), {7: NOW, 8: NOW}, controller_lost=True)


def test_a_single_replica_never_loses_its_lease() -> None:
    """Nobody else could lead it, so refusing writes would only make it unavailable."""
    assert not _lost((0,), {}, controller_lost=True)
