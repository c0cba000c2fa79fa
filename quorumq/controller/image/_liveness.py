"""Broker liveness: the active controller's memory of heartbeats, outside Raft (KIP-631).

Why not in the Raft log: a heartbeat committed through Raft is only as fast as the controller's
Raft path. When a failover moved thousands of partitions, that path congested, heartbeats
failed to commit within their timeout, and the controller fenced brokers that were alive, which
moved more partitions: a metastable loop (measured in the ninth session: 11,000 leader changes in
12 minutes). Kafka's controller keeps heartbeats in memory for the same reason
(``BrokerHeartbeatManager``) and commits only what they decide: fencing and unfencing.

What is lost when the active controller changes: nothing the image needs. The new controller
starts with an empty :class:`BrokerLiveness` and gives every broker a full session from its
takeover before fencing it (``tick`` counts from ``controller_epoch_start_ms``), and unfences
only a broker it heard from in its own tenure; brokers heartbeat to it as soon as they see
the new controller epoch, with fresh replica reports. A
broker in controlled shutdown says so again in each of those heartbeats, so its request
survives the change too.
"""

from __future__ import annotations

import hashlib
import hmac
import json
from collections.abc import Mapping

import attrs

from quorumq.errors import BrokerIdNotRegistered, ClusterAuthorizationFailed, StaleBrokerEpoch

from ._image import BrokerState, MetadataImage
from ._records import BrokerHeartbeat


@attrs.define
class _Seen:
    broker_epoch: int
    last_heartbeat_ms: int
    reports: Mapping[tuple[str, int], tuple[int, int, int]]
    want_shut_down: bool = False


@attrs.frozen
class _Gone:
    broker_epoch: int
    probed_at_ms: int


@attrs.define(eq=False)
class BrokerLiveness:
    """Heartbeats the active controller received, per broker incarnation.

    ``controller_epoch`` is the tenure the memory belongs to: a table built under an older
    epoch is cleared before use (:meth:`for_epoch`), so that a voter that leads again does not
    trust heartbeats from its previous tenure.
    """

    controller_epoch: int = 0
    _seen: dict[int, _Seen] = attrs.field(factory=dict)
    _gone: dict[int, _Gone] = attrs.field(factory=dict)
    heartbeats: int = 0
    """Heartbeats recorded in all (tests and stats)."""

    def for_epoch(self, controller_epoch: int) -> BrokerLiveness:
        """This table, emptied first if it was built under another controller epoch."""
        if controller_epoch != self.controller_epoch:
            self._seen.clear()
            self._gone.clear()
            self.controller_epoch = controller_epoch
        return self

    def mark_gone(self, broker: BrokerState, probed_at_ms: int) -> None:
        """Records that this incarnation's listener refused a connection the controller began
        at ``probed_at_ms`` (its clock): nothing listens where the broker said it would, so
        its process is gone. A heartbeat received after ``probed_at_ms`` outweighs the mark.

        Why: a crashed broker is otherwise fenced only after a whole session of silence
        (``broker.session.timeout.ms``, 9 s by default), and the partitions it led stay
        leaderless all that time. A refused connection is evidence a silence is not: a paused
        or cut-off broker's kernel still accepts (or its packets are lost, and the connect
        times out), so only a process that no longer listens is fenced early.
        """
        self._gone[broker.broker_id] = _Gone(broker.broker_epoch, probed_at_ms)

    def gone(self, broker: BrokerState) -> bool:
        """Whether this incarnation's listener refused a probe, with no heartbeat since."""
        mark = self._gone.get(broker.broker_id)
        if mark is None or mark.broker_epoch != broker.broker_epoch:
            return False
        seen = self._current(broker)
        return seen is None or seen.last_heartbeat_ms < mark.probed_at_ms

    def record(
        self,
        image: MetadataImage,
        heartbeat: BrokerHeartbeat,
        now_ms: int,
        *,
        want_shut_down: bool = False,
    ) -> BrokerState:
        """Records a heartbeat received at ``now_ms`` (the controller's clock: comparing it with
        the controller's own clock later needs no agreement between hosts). ``reports`` replaces
        the broker's reports when given; ``None`` keeps them. ``want_shut_down`` is the
        heartbeat's (KIP-631) controlled-shutdown request; each heartbeat restates it.

        Returns:
            The broker as the image has it (its ``fenced`` is the heartbeat's answer).

        Raises:
            BrokerIdNotRegistered: the image has no such broker.
            StaleBrokerEpoch: the heartbeat names another incarnation (the broker re-registers).
        """
        broker = image.brokers.get(heartbeat.broker_id)
        if broker is None:
            raise BrokerIdNotRegistered(f"broker {heartbeat.broker_id} is not registered")
        if broker.broker_epoch != heartbeat.broker_epoch:
            raise StaleBrokerEpoch(
                f"broker {broker.broker_id} is at epoch {broker.broker_epoch}, "
                f"not {heartbeat.broker_epoch}"
            )
        old = self._seen.get(broker.broker_id)
        reports: Mapping[tuple[str, int], tuple[int, int, int]]
        if heartbeat.reports is not None:
            reports = {
                (r.topic, r.partition): (
                    r.last_leader_epoch,
                    r.log_end_offset,
                    r.current_leader_epoch,
                )
                for r in heartbeat.reports
            }
        elif old is not None and old.broker_epoch == broker.broker_epoch:
            reports = old.reports
        else:
            reports = {}
        last = now_ms if old is None else max(old.last_heartbeat_ms, now_ms)
        self._seen[broker.broker_id] = _Seen(broker.broker_epoch, last, reports, want_shut_down)
        self.heartbeats += 1
        return broker

    def _current(self, broker: BrokerState) -> _Seen | None:
        seen = self._seen.get(broker.broker_id)
        return seen if seen is not None and seen.broker_epoch == broker.broker_epoch else None

    def last_seen_ms(self, broker: BrokerState) -> int:
        """When this incarnation was last heard of: its last heartbeat, or its registration."""
        seen = self._current(broker)
        if seen is None:
            return broker.registered_ms
        return max(seen.last_heartbeat_ms, broker.registered_ms)

    def heard_from(self, broker: BrokerState) -> bool:
        """Whether this table holds a heartbeat of this incarnation (this tenure's, since
        :meth:`for_epoch` clears the table when the controller epoch changes)."""
        return self._current(broker) is not None

    def wants_shut_down(self, broker: BrokerState) -> bool:
        """Whether this incarnation's last heartbeat asked for a controlled shutdown."""
        seen = self._current(broker)
        return seen is not None and seen.want_shut_down

    def reports_for(
        self,
        image: MetadataImage,
        topic: str,
        partition: int,
        *,
        min_current_leader_epoch: int | None = None,
    ) -> dict[int, tuple[int, int]]:
        """Broker id → (last leader epoch, LEO) for one partition, from the last heartbeats of
        the brokers' current incarnations.

        With ``min_current_leader_epoch``, only reports made while the broker already knew that
        leader epoch (or a later one) count: votes cast after the previous epoch ended.
        """
        key = (topic, partition)
        reports: dict[int, tuple[int, int]] = {}
        for broker in image.brokers.values():
            seen = self._current(broker)
            report = None if seen is None else seen.reports.get(key)
            if report is None:
                continue
            if min_current_leader_epoch is not None and report[2] < min_current_leader_epoch:
                continue
            reports[broker.broker_id] = (report[0], report[1])
        return reports

    @property
    def reports_held(self) -> int:
        """Replica reports held across all brokers (tests and stats)."""
        return sum(len(seen.reports) for seen in self._seen.values())


# --- authentication of heartbeats on the wire ------------------------------------------------


def heartbeat_mac(
    password: str, heartbeat: BrokerHeartbeat, sent_ms: int, *, want_shut_down: bool = False
) -> bytes:
    """HMAC-SHA256, keyed with the controller password, of what a BrokerHeartbeat asserts.

    Why: heartbeats used to travel inside Raft, whose port the password protects; now they
    reach the active controller on its Kafka listener, which anyone can connect to. A forged
    heartbeat could keep a dead broker unfenced, and a forged replica report is a vote: one
    claiming a longer log than a replica has could elect it and lose acknowledged records.
    A forged shutdown request would fence a live broker and move its leaderships away.
    (The request is covered only when made, so heartbeats without it keep their MAC.)
    """
    reports = (
        None
        if heartbeat.reports is None
        else [
            [r.topic, r.partition, r.last_leader_epoch, r.log_end_offset, r.current_leader_epoch]
            for r in heartbeat.reports
        ]
    )
    asserted: list[object] = [heartbeat.broker_id, heartbeat.broker_epoch, sent_ms, reports]
    if want_shut_down:
        asserted.append("shut down")
    body = json.dumps(asserted, separators=(",", ":"))
    return hmac.new(password.encode(), body.encode(), hashlib.sha256).digest()


def check_heartbeat_mac(
    password: str,
    heartbeat: BrokerHeartbeat,
    sent_ms: int,
    mac: bytes | None,
    now_ms: int,
    max_age_ms: int,
    *,
    want_shut_down: bool = False,
) -> None:
    """Accepts a heartbeat whose MAC matches and that was sent within ``max_age_ms`` of
    ``now_ms`` (either way: clocks of different hosts differ); a replay is therefore good for
    at most one session.

    Raises:
        ClusterAuthorizationFailed: no MAC, a wrong one, or a stale or future ``sent_ms``.
    """
    if mac is None:
        raise ClusterAuthorizationFailed("heartbeat without the cluster's authentication")
    expected = heartbeat_mac(password, heartbeat, sent_ms, want_shut_down=want_shut_down)
    if not hmac.compare_digest(mac, expected):
        raise ClusterAuthorizationFailed("heartbeat authentication does not match")
    if abs(now_ms - sent_ms) > max_age_ms:
        raise ClusterAuthorizationFailed(
            f"heartbeat sent at {sent_ms}, {now_ms - sent_ms} ms from the controller's clock"
        )
