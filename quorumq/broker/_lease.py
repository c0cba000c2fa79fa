"""The leader lease (pure): when a cluster broker stops acting on an image that may be stale.

Theory of operation: a leader cut off from the other brokers keeps an image that names it
leader, while the controller on the other side fences it after a session and elects a new
leader. Without a lease it took writes for as long as the cut lasted, and every acks=1 record
of the cut was lost at the heal. :class:`LeaderLease` holds what one broker knows about that:
when a heartbeat was last answered, which brokers last fetched from it, and whether it must
presume itself fenced. ``ClusterBroker`` feeds it (heartbeat answers, replica fetches, one
:meth:`LeaderLease.refresh` per replica tick) and reads it on the request path, where every
question is answered from plain fields. Times are trio seconds; nothing here does I/O.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import attrs

from quorumq.replication import majority

NEVER = float("-inf")


def leader_lease_lost(
    replicas: Sequence[int],
    me: int,
    contact: Mapping[int, float],
    *,
    now: float,
    session_s: float,
) -> bool:
    """Whether leader ``me`` of a partition with ``replicas``, having lost the controller (no
    heartbeat answered for a session; the caller asks only then), may have been replaced
    without hearing of it: fewer followers heard from within the session (``contact``: broker
    id → time of its last replica Fetch) than make a majority of the replicas with ``me``.

    Both conditions: a lost controller alone (its Raft majority gone) must not stop leaders
    whose followers still fetch, as Kafka's go on serving then; followers gone alone (dead) are
    the controller's to handle. One replica never loses its lease: nobody else could lead it.
    Kafka has no such lease; Raft's CheckQuorum is the same idea.
    """
    heard = 1 + sum(1 for r in replicas if r != me and now - contact.get(r, NEVER) <= session_s)
    return heard < majority(len(replicas))


@attrs.define
class LeaderLease:
    """One broker's lease state.

    ``controller_lost`` and ``presumed_fenced`` change only in :meth:`answered` and
    :meth:`refresh`, so the produce path, which asks once per partition, and Metadata, which
    asks once per led partition, pay a field read while the controller answers.
    """

    session_s: float
    answered_at: float = NEVER
    """When a heartbeat was last answered (by the active controller, local or remote)."""
    contact: dict[int, float] = attrs.field(factory=dict)
    """Broker id → time of its last replica Fetch here: a follower's sign of life."""
    controller_lost: bool = True
    """No heartbeat answered for a session (as of the last refresh): the controller, if one is
    active anywhere, has fenced this broker by now. True before the first answer too; a
    starting broker leads nothing until its image shows it unfenced anyway."""
    presumed_fenced: bool = False
    """Set once the controller has been lost after having answered; ended by an answer that
    vouches for the image, or by an image that shows the fencing. Heartbeats travel on
    connections of their own and resume at once after a cut heals, while the Raft log that
    carries the image catches up seconds later (TCP's retransmission back-off); until then
    the image still names this broker leader of the epochs it led before the cut."""

    def fetched_by(self, broker_id: int, now: float) -> None:
        self.contact[broker_id] = now

    def answered(self, now: float, *, vouches: bool) -> None:
        """A heartbeat was answered. ``vouches``: the answer says this broker is unfenced and
        its metadata was caught up when it asked (KIP-631's ``is_caught_up``), so its image
        rules again. An "unfenced" alone is not enough: the controller may unfence a broker
        whose image still lags, which would then serve its stale high watermark."""
        self.answered_at = now
        self.controller_lost = False
        if vouches:
            self.presumed_fenced = False

    def refresh(self, now: float, *, image_shows_fenced: bool) -> None:
        """Once per replica tick: has the controller been lost, and has the image caught up
        with a fencing? (A tick late either way is harmless next to a session.)"""
        self.controller_lost = now - self.answered_at > self.session_s
        if self.controller_lost:
            # Lost after contact. Before the first answer there is nothing to presume: a
            # starting broker leads nothing until the image shows its new incarnation
            # unfenced, whatever a replayed image says of the one before.
            if self.answered_at > NEVER:
                self.presumed_fenced = True
        elif image_shows_fenced:
            self.presumed_fenced = False  # caught up: the image rules again

    @property
    def in_doubt(self) -> bool:
        """Whether :meth:`lost` can be true for any partition."""
        return self.controller_lost or self.presumed_fenced

    def lost(self, replicas: Sequence[int], me: int, now: float) -> bool:
        """Whether this broker's leadership of a partition with ``replicas`` has lost its lease:
        the controller lost and too few followers heard from (:func:`leader_lease_lost`), or
        back from such a loss with an image that has not caught up yet."""
        if not self.controller_lost:
            return self.presumed_fenced
        return leader_lease_lost(replicas, me, self.contact, now=now, session_s=self.session_s)

    def unlisted(self, now: float) -> bool:
        """Whether this broker should leave itself out of its own Metadata's broker list: cut
        off from the controller and every other broker, or back from such a cut with an
        image that has not caught up. librdkafka sends Metadata only to the brokers it is
        connected to; listing itself would keep clients that know only this broker asking
        it. (A broker that lost only the controller, its followers still fetching, stays
        listed: nobody can have replaced it.)"""
        if self.controller_lost:
            return not any(now - at <= self.session_s for at in self.contact.values())
        return self.presumed_fenced
