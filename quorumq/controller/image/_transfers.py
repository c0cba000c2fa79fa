"""Leadership transfers: a planned quorum election that its preferred replica can win.

Why: a preferred-leader election of a ``quorum`` topic ends the epoch and elects, from fresh
reports, the first replica in assignment order that is at least as up to date as a majority.
Under load the preferred replica is often the slower follower, behind both others, and another
replica wins: a leader change for nothing (PREFERRED_LEADER_NOT_AVAILABLE). Raft's answer is
leadership transfer: the leader stops taking writes until the target has its whole log, then
hands over. Here the hand-over is the election the controller already runs, so a transfer is
only its first half, and never a safety input:

1. the controller remembers the transfer (this table, in the active controller's memory like
   ``BrokerLiveness``) and tells the leader in its next BrokerHeartbeat answer;
2. the leader refuses writes to the partition (NOT_LEADER_OR_FOLLOWER, which clients retry)
   until the target has fetched up to its log end offset, then says "drained" in a heartbeat;
3. the controller proposes the election record (``plan_election``): the target now has
   the longest log of the three and comes first in assignment order, so it wins.

A transfer that is not drained by its deadline (a leader that never heard, a target that
cannot catch up) is proposed anyway: the election is as safe as before and may pick another
replica, as before. The leader stops refusing writes after its own deadline, so a lost
controller costs at most that.
"""

from __future__ import annotations

from collections.abc import Iterable

import attrs

from ._image import MetadataImage
from ._records import NO_LEADER


@attrs.frozen
class LeaderTransfer:
    """Partition ``topic``-``partition``, led by ``leader`` at ``leader_epoch``, is to be
    handed to ``target``; the election is proposed at ``deadline_ms`` even if not drained."""

    topic: str
    partition: int
    leader: int
    leader_epoch: int
    target: int
    deadline_ms: int


@attrs.define(eq=False)
class LeaderTransfers:
    """The active controller's pending transfers, for one controller epoch (a new tenure
    starts empty: its ElectLeaders callers time out, and the next imbalance check asks again)."""

    controller_epoch: int = 0
    pending: dict[tuple[str, int], LeaderTransfer] = attrs.field(factory=dict)
    drained: set[tuple[str, int]] = attrs.field(factory=set)

    def for_epoch(self, controller_epoch: int) -> LeaderTransfers:
        """This table, emptied first if it was built under another controller epoch."""
        if controller_epoch != self.controller_epoch:
            self.pending.clear()
            self.drained.clear()
            self.controller_epoch = controller_epoch
        return self

    def begin(
        self, image: MetadataImage, topic: str, partition: int, now_ms: int, timeout_ms: int
    ) -> LeaderTransfer | None:
        """Starts handing the partition to its preferred replica; None when it has no live
        leader to drain (the election needs no transfer then). A transfer already pending
        for the partition is kept, deadline and all."""
        key = (topic, partition)
        if key in self.pending:
            return self.pending[key]
        state = image.partition(topic, partition)
        if state is None or state.leader == NO_LEADER or state.leader == state.replicas[0]:
            return None
        transfer = LeaderTransfer(
            topic, partition, state.leader, state.leader_epoch, state.replicas[0],
            now_ms + timeout_ms,
        )  # fmt: skip
        self.pending[key] = transfer
        return transfer

    def instructions_for(self, broker_id: int) -> list[LeaderTransfer]:
        """What a heartbeat answer tells broker ``broker_id``: the transfers it leads that have
        not drained yet."""
        return [
            t
            for key, t in self.pending.items()
            if t.leader == broker_id and key not in self.drained
        ]

    def record_drained(self, broker_id: int, drained: Iterable[tuple[str, int, int]]) -> bool:
        """A heartbeat of ``broker_id`` says these (topic, partition, leader epoch) drained;
        returns whether any pending transfer became ready. Claims for other leaders or epochs
        are ignored (a late heartbeat from an earlier transfer)."""
        ready = False
        for topic, partition, leader_epoch in drained:
            key = (topic, partition)
            transfer = self.pending.get(key)
            if (
                transfer is not None
                and transfer.leader == broker_id
                and transfer.leader_epoch == leader_epoch
                and key not in self.drained
            ):
                self.drained.add(key)
                ready = True
        return ready

    def take_ready(self, image: MetadataImage, now_ms: int) -> list[LeaderTransfer]:
        """Removes and returns the transfers whose election should be proposed now: drained,
        or past their deadline. Transfers whose partition changed leader or epoch meanwhile
        (a failover, a deletion) are dropped: the election they were for is moot."""
        ready = []
        for key, transfer in list(self.pending.items()):
            state = image.partition(*key)
            if (
                state is None
                or state.leader != transfer.leader
                or state.leader_epoch != transfer.leader_epoch
            ):
                del self.pending[key]
                self.drained.discard(key)
            elif key in self.drained or now_ms >= transfer.deadline_ms:
                del self.pending[key]
                self.drained.discard(key)
                ready.append(transfer)
        return ready
