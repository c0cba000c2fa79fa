"""In-memory replicas driving the replication cores back to back (no Trio, no sockets).

A log is a list of ``(leader_epoch, record_id)``, one per offset. :class:`SimReplica` plays the
broker shell: it owns the log and the epoch cache and feeds :class:`LeaderReplicaState` /
:class:`FollowerReplicaState`. :func:`truncate_step` and :func:`fetch_step` are one
OffsetForLeaderEpoch and one Fetch round trip. :func:`run_model` is a seeded model-check of a
three-replica partition under crashes, restarts, zombie leaders, slow metadata and elections.
"""

from __future__ import annotations

import random
from collections.abc import Iterable

import attrs

from quorumq.errors import (
    FencedLeaderEpoch,
    NotEnoughReplicas,
    NotEnoughReplicasAfterAppend,
    UnknownLeaderEpoch,
)
from quorumq.replication import (
    FollowerFetchResult,
    FollowerReplicaState,
    IsrChange,
    IsrStrategy,
    LeaderEpochCache,
    LeaderReplicaState,
    QuorumStrategy,
    ReplicationStrategy,
    strategy_for,
)

MARKER = -1
"""Record id of an epoch marker a new quorum leader appends to commit its predecessors' tail."""


@attrs.define(eq=False)
class SimReplica:
    """One replica: its log, epoch cache, and whichever role state it has now."""

    broker_id: int
    log: list[tuple[int, int]] = attrs.Factory(list)
    cache: LeaderEpochCache = attrs.Factory(LeaderEpochCache)
    stored_high_watermark: int = 0
    flush_every_append: bool = False
    """``flush.messages=1``: every append is fsynced before it counts (or is fetched again)."""
    flushed_offset: int = 0
    """Offsets below this survive a power loss; the rest sits in the page cache."""
    alive: bool = True
    leader: LeaderReplicaState | None = None
    follower: FollowerReplicaState | None = None

    @property
    def log_end_offset(self) -> int:
        return len(self.log)

    @property
    def high_watermark(self) -> int:
        if self.leader is not None:
            return self.leader.high_watermark
        if self.follower is not None:
            return self.follower.high_watermark
        return self.stored_high_watermark

    def report(self) -> tuple[int, int]:
        """(last leader epoch, LEO), as the controller's election wants it."""
        latest = self.cache.latest_epoch
        return (-1 if latest is None else latest, self.log_end_offset)

    def become_leader(
        self,
        strategy: ReplicationStrategy,
        leader_epoch: int,
        replicas: Iterable[int],
        isr: Iterable[int],
        now_ms: int,
        *,
        partition_epoch: int = 0,
        min_insync_replicas: int = 1,
    ) -> LeaderReplicaState:
        self.stored_high_watermark = self.high_watermark
        self.cache.assign(leader_epoch, self.log_end_offset)
        self.follower = None
        self.leader = LeaderReplicaState.become_leader(
            strategy=strategy,
            broker_id=self.broker_id,
            leader_epoch=leader_epoch,
            replicas=tuple(replicas),
            isr=frozenset(isr),
            log_start_offset=0,
            log_end_offset=self.log_end_offset,
            high_watermark=self.stored_high_watermark,
            now_ms=now_ms,
            partition_epoch=partition_epoch,
            min_insync_replicas=min_insync_replicas,
        )
        return self.leader

    def become_follower(self, leader_id: int, leader_epoch: int) -> FollowerReplicaState:
        self.stored_high_watermark = self.high_watermark
        self.leader = None
        self.follower = FollowerReplicaState.become_follower(
            broker_id=self.broker_id,
            leader_id=leader_id,
            leader_epoch=leader_epoch,
            log_start_offset=0,
            log_end_offset=self.log_end_offset,
            high_watermark=self.stored_high_watermark,
        )
        return self.follower

    def append(self, record_id: int, now_ms: int) -> int:
        """Appends one record as leader; returns its offset."""
        assert self.leader is not None
        offset = self.log_end_offset
        self.log.append((self.leader.leader_epoch, record_id))
        if self.flush_every_append:
            self.flushed_offset = self.log_end_offset
        self.leader.on_append(self.log_end_offset, now_ms)
        return offset

    def crash(self) -> None:
        self.stored_high_watermark = self.high_watermark
        self.alive = False
        self.leader = None
        self.follower = None

    def power_loss(self) -> None:
        """A crash of the machine: what was not fsynced is gone (recovery truncates to it)."""
        self.crash()
        del self.log[self.flushed_offset :]
        self.cache.truncate_from_end(self.log_end_offset)
        self.stored_high_watermark = min(self.stored_high_watermark, self.log_end_offset)

    def flush(self) -> None:
        """The OS (or a periodic flush) wrote the page cache to disk."""
        self.flushed_offset = self.log_end_offset


def truncate_step(follower: SimReplica, leader: SimReplica) -> bool:
    """One OffsetForLeaderEpoch round trip; returns whether the divergence search is done.

    Raises FencedLeaderEpoch / UnknownLeaderEpoch when the two disagree on the epoch.
    """
    state, leader_state = follower.follower, leader.leader
    assert state is not None and leader_state is not None
    leader_state.check_leader_epoch(state.leader_epoch)
    requested = state.offset_for_leader_epoch_request(follower.cache)
    answer = leader.cache.end_offset_for(requested, leader.log_end_offset)
    plan = state.on_leader_epoch_answer(follower.cache, answer)
    del follower.log[plan.offset :]
    follower.flushed_offset = min(follower.flushed_offset, plan.offset)
    return plan.complete


def fetch_step(
    follower: SimReplica, leader: SimReplica, now_ms: int, max_records: int
) -> FollowerFetchResult | None:
    """One Fetch round trip (or an OffsetForLeaderEpoch one while truncating)."""
    state, leader_state = follower.follower, leader.leader
    assert state is not None and leader_state is not None
    if state.truncating:
        truncate_step(follower, leader)
        return None
    fetch_offset = state.fetch_offset
    result = leader_state.on_follower_fetch(
        follower.broker_id, fetch_offset, state.leader_epoch, now_ms
    )
    records = leader.log[fetch_offset : fetch_offset + max_records]
    for offset, (epoch, record_id) in enumerate(records, start=fetch_offset):
        follower.cache.assign(epoch, offset)
        follower.log.append((epoch, record_id))
    if follower.flush_every_append:
        follower.flushed_offset = follower.log_end_offset
    state.on_fetch_response(result.high_watermark, follower.log_end_offset)
    return result


# --- the model-check ------------------------------------------------------------------------


@attrs.define(eq=False)
class Model:
    """A three-replica partition, its controller, and the clients' acknowledged records."""

    rng: random.Random
    strategy: ReplicationStrategy
    unclean: bool
    min_insync_replicas: int
    replicas: dict[int, SimReplica]
    power_loss: bool = False
    reports_are_promises: bool = True
    """quorum: a replica that reported for an election stops following older leaders at once."""
    assignment: tuple[int, ...] = (1, 2, 3)
    now_ms: int = 0
    # Controller state.
    leader_id: int | None = None
    leader_epoch: int = 0
    isr: frozenset[int] = frozenset()
    partition_epoch: int = 0
    isolated: set[int] = attrs.Factory(set)
    # History.
    next_record_id: int = 1
    pending: list[tuple[int, int, int, int]] = attrs.Factory(list)
    acked: dict[int, int] = attrs.Factory(dict)
    leaders_by_epoch: dict[int, int] = attrs.Factory(dict)
    hw_seen: dict[tuple[int, int], int] = attrs.Factory(dict)
    violations: list[str] = attrs.Factory(list)

    # --- controller ---------------------------------------------------------------------------

    def live(self) -> set[int]:
        return {b for b, r in self.replicas.items() if r.alive and b not in self.isolated}

    def controller_check(self) -> None:
        """Fences brokers that look dead, shrinks the ISR (isr), and elects if needed."""
        live = self.live()
        if isinstance(self.strategy, IsrStrategy):
            kept = frozenset(b for b in self.isr if b in live)
            if kept != self.isr and kept:
                self.isr = kept
                self.partition_epoch += 1
                if self.leader_id in kept:
                    leader = self.replicas[self.leader_id].leader
                    if leader is not None and leader.leader_epoch == self.leader_epoch:
                        leader.on_isr_committed(kept, self.partition_epoch)
            elif not kept and self.leader_id is not None and self.leader_id not in live:
                # KRaft keeps the last ISR member recorded so a clean election can wait for it.
                pass
        if self.leader_id is None or self.leader_id not in live:
            self.elect()
            return
        leader = self.replicas[self.leader_id].leader
        if leader is None or leader.leader_epoch != self.leader_epoch:
            # The leader restarted (it re-registered with a new broker epoch): elect again.
            self.elect()

    def elect(self) -> None:
        live = self.live()
        reporters = [b for b in self.assignment if b in live]
        quorum = isinstance(self.strategy, QuorumStrategy)
        if quorum and len(reporters) > 2 and self.rng.random() < 0.5:
            # Not every report has to arrive: a bare majority may decide.
            reporters.remove(self.rng.choice(reporters))
        reports = {b: self.replicas[b].report() for b in reporters}
        chosen = self.strategy.choose_leader(self.assignment, live, reports, self.isr, self.unclean)
        if chosen is None:
            self.leader_id = None
            return
        self.leader_epoch += 1
        self.leader_id = chosen
        if isinstance(self.strategy, IsrStrategy):
            if chosen not in self.isr:
                self.isr = frozenset({chosen})  # unclean: the ISR restarts from the new leader
            self.partition_epoch += 1
        else:
            self.isr = frozenset(live)
        previous = self.leaders_by_epoch.setdefault(self.leader_epoch, chosen)
        if previous != chosen:
            self.violations.append(f"two leaders in epoch {self.leader_epoch}")
        self.replicas[chosen].become_leader(
            self.strategy,
            self.leader_epoch,
            self.assignment,
            self.isr,
            self.now_ms,
            partition_epoch=self.partition_epoch,
            min_insync_replicas=self.min_insync_replicas,
        )
        self.check_leader_has_acked()
        # A quorum report is a promise: the reporters stop following older leaders now.
        informed = reporters if quorum and self.reports_are_promises else []
        for broker_id in informed:
            if broker_id != chosen:
                self.replicas[broker_id].become_follower(chosen, self.leader_epoch)

    def propagate(self, broker_id: int) -> None:
        """``broker_id`` learns the controller's current leader and epoch."""
        replica = self.replicas[broker_id]
        if not replica.alive or broker_id in self.isolated or self.leader_id is None:
            return
        if broker_id == self.leader_id:
            return
        if replica.follower is not None and replica.follower.leader_epoch == self.leader_epoch:
            return
        replica.become_follower(self.leader_id, self.leader_epoch)

    def alter_isr(self, replica: SimReplica) -> None:
        leader = replica.leader
        assert leader is not None
        self.submit(leader, leader.tick(self.now_ms))

    def submit(self, leader: LeaderReplicaState, change: IsrChange | None) -> None:
        """The controller's AlterPartition handling: refuse stale proposals, commit others."""
        if change is None or change.advisory:
            return
        accepted = (
            change.leader_id == self.leader_id
            and change.leader_epoch == self.leader_epoch
            and change.partition_epoch == self.partition_epoch
            and change.leader_id not in self.isolated
        )
        if accepted:
            self.isr = change.isr
            self.partition_epoch += 1
            leader.on_isr_committed(change.isr, self.partition_epoch)
        else:
            leader.on_isr_rejected()

    # --- clients ------------------------------------------------------------------------------

    def produce(self, replica: SimReplica) -> None:
        leader = replica.leader
        assert leader is not None
        try:
            leader.acks_all_check()
        except NotEnoughReplicas:
            return
        record_id = self.next_record_id
        self.next_record_id += 1
        offset = replica.append(record_id, self.now_ms)
        self.pending.append((replica.broker_id, leader.leader_epoch, offset, record_id))

    def complete_acks(self) -> None:
        still: list[tuple[int, int, int, int]] = []
        for broker_id, epoch, offset, record_id in self.pending:
            leader = self.replicas[broker_id].leader
            if leader is None or leader.leader_epoch != epoch:
                continue  # the client gets an error (or a timeout): not acknowledged
            try:
                done = leader.acks_all_completed(offset)
            except NotEnoughReplicasAfterAppend:
                continue
            if not done:
                still.append((broker_id, epoch, offset, record_id))
                continue
            if self.acked.setdefault(offset, record_id) != record_id:
                self.violations.append(f"offset {offset} acknowledged for two records")
            else:
                self.check_leader_has_acked()
        self.pending = still

    # --- invariants ---------------------------------------------------------------------------

    def check_leader_has_acked(self) -> None:
        if self.leader_id is None:
            return
        leader = self.replicas[self.leader_id]
        if leader.leader is None or leader.leader.leader_epoch != self.leader_epoch:
            return
        for offset, record_id in self.acked.items():
            if offset >= len(leader.log) or leader.log[offset][1] != record_id:
                self.violations.append(
                    f"acknowledged record {record_id} at offset {offset} missing from leader "
                    f"{self.leader_id} of epoch {self.leader_epoch}"
                )
                return

    def check_invariants(self) -> None:
        for replica in self.replicas.values():
            leader = replica.leader
            if leader is None:
                continue
            key = (replica.broker_id, leader.leader_epoch)
            if leader.high_watermark < self.hw_seen.get(key, 0):
                self.violations.append(f"HW moved back on leader {key}")
            self.hw_seen[key] = leader.high_watermark
            if not 0 <= leader.high_watermark <= replica.log_end_offset:
                self.violations.append(f"HW outside the log on leader {key}")
        replicas = list(self.replicas.values())
        for i, first in enumerate(replicas):
            for second in replicas[i + 1 :]:
                bound = min(first.high_watermark, second.high_watermark)
                if first.log[:bound] != second.log[:bound]:
                    self.violations.append(
                        f"replicas {first.broker_id} and {second.broker_id} disagree below "
                        f"HW {bound}"
                    )
        self.check_leader_has_acked()

    # --- steps --------------------------------------------------------------------------------

    def step(self) -> None:
        rng = self.rng
        roll = rng.random()
        replicas = list(self.replicas.values())
        if roll < 0.25:
            leaders = [r for r in replicas if r.alive and r.leader is not None]
            if leaders:
                self.produce(rng.choice(leaders))
        elif roll < 0.60:
            followers = [r for r in replicas if r.alive and r.follower is not None]
            if followers:
                follower = rng.choice(followers)
                assert follower.follower is not None
                leader = self.replicas[follower.follower.leader_id]
                if leader.alive and leader.leader is not None:
                    try:
                        result = fetch_step(follower, leader, self.now_ms, rng.randint(1, 4))
                    except (FencedLeaderEpoch, UnknownLeaderEpoch):
                        result = None  # one of them is stale; metadata will catch up
                    if result is not None and leader.leader is not None:
                        self.submit(leader.leader, result.isr_change)
        elif roll < 0.70:
            self.now_ms += rng.randint(0, 15_000)
            for replica in replicas:
                if replica.alive and replica.leader is not None:
                    self.alter_isr(replica)
        elif roll < 0.74:
            alive = [r for r in replicas if r.alive]
            if alive:
                victim = rng.choice(alive)
                if self.power_loss and rng.random() < 0.5:
                    victim.power_loss()
                else:
                    victim.crash()
            if self.power_loss:
                rng.choice(replicas).flush()
        elif roll < 0.79:
            dead = [r for r in replicas if not r.alive]
            if dead:
                replica = rng.choice(dead)
                replica.alive = True
                self.propagate(replica.broker_id)
        elif roll < 0.81:
            if self.leader_id is not None and self.replicas[self.leader_id].alive:
                self.isolated.add(self.leader_id)  # a paused or partitioned leader: a zombie
        elif roll < 0.84:
            if self.isolated:
                broker_id = rng.choice(sorted(self.isolated))
                self.isolated.discard(broker_id)
                self.propagate(broker_id)
        elif roll < 0.92:
            self.controller_check()
        else:
            self.propagate(rng.choice(self.assignment))
        self.complete_acks()
        self.check_invariants()

    def heal_and_converge(self) -> None:
        """Everyone back, elections settle, followers catch up; then every log must agree."""
        for replica in self.replicas.values():
            replica.alive = True
        self.isolated.clear()
        for _ in range(20):
            self.controller_check()
            if self.leader_id is not None:
                break
        if self.leader_id is None:
            self.violations.append("no leader after healing")
            return
        for broker_id in self.assignment:
            self.propagate(broker_id)
        leader = self.replicas[self.leader_id]
        assert leader.leader is not None
        if leader.leader.awaiting_epoch_record:
            leader.append(MARKER, self.now_ms)
        for _ in range(400):
            for replica in self.replicas.values():
                if replica.follower is not None:
                    result = fetch_step(replica, leader, self.now_ms, 50)
                    if result is not None:
                        self.submit(leader.leader, result.isr_change)
            self.complete_acks()
            self.check_invariants()
            if all(r.log == leader.log for r in self.replicas.values()) and all(
                r.high_watermark == leader.log_end_offset for r in self.replicas.values()
            ):
                break
        else:
            self.violations.append("replicas did not converge after healing")
        for replica in self.replicas.values():
            for offset, record_id in self.acked.items():
                if offset >= len(replica.log) or replica.log[offset][1] != record_id:
                    self.violations.append(
                        f"acknowledged record {record_id} at {offset} lost on replica "
                        f"{replica.broker_id}"
                    )
                    return


def run_model(
    seed: int,
    *,
    strategy: str | ReplicationStrategy,
    unclean: bool = False,
    min_insync_replicas: int = 2,
    steps: int = 300,
    power_loss: bool = False,
    flush_messages_1: bool = False,
    reports_are_promises: bool = True,
) -> Model:
    """Runs one seeded history; the returned model's ``violations`` lists what broke."""
    model = Model(
        rng=random.Random(seed),
        strategy=strategy_for(strategy) if isinstance(strategy, str) else strategy,
        unclean=unclean,
        min_insync_replicas=min_insync_replicas,
        replicas={b: SimReplica(b, flush_every_append=flush_messages_1) for b in (1, 2, 3)},
        power_loss=power_loss,
        reports_are_promises=reports_are_promises,
    )
    model.isr = frozenset(model.assignment)
    model.controller_check()
    for broker_id in model.assignment:
        model.propagate(broker_id)
    for _ in range(steps):
        model.step()
        if model.violations:
            return model
    model.heal_and_converge()
    return model
