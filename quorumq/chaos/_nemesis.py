"""Nemeses: faults done to a :class:`~quorumq.cluster.Supervisor`'s brokers, by PID.

Each nemesis is a small function that does one thing and says what it did (a string for the
run's event log). Leaders and followers are learned from Metadata at the moment of the fault.
Network partitions are :class:`~quorumq.chaos.NetworkLab`'s (brokers in network namespaces).
"""

from __future__ import annotations

import itertools
import threading
import time

import attrs

from quorumq.cluster import ClusterError, Supervisor


def leader_of(
    supervisor: Supervisor, topic: str, partition: int, *, timeout_s: float = 10.0
) -> int:
    """The partition's current leader id (waits, bounded, while there is none).

    Raises:
        ClusterError: no leader within ``timeout_s``.
    """
    deadline = time.monotonic() + timeout_s
    while True:
        try:
            info = supervisor.view(topics=[topic]).partition(topic, partition)
            if info is not None and info.leader_id >= 0:
                return info.leader_id
        except ClusterError:
            pass
        if time.monotonic() > deadline:
            raise ClusterError(f"{topic}/{partition} has no leader after {timeout_s:.0f} s")
        time.sleep(0.1)


def followers_of(supervisor: Supervisor, topic: str, partition: int) -> list[int]:
    """The partition's replicas other than its leader (empty with replication factor 1)."""
    leader = leader_of(supervisor, topic, partition)
    info = supervisor.view(topics=[topic]).partition(topic, partition)
    assert info is not None
    return [r for r in info.replicas if r != leader]


def kill_leader(supervisor: Supervisor, topic: str, partition: int) -> int:
    """SIGKILLs the partition's leader; returns its id."""
    leader = leader_of(supervisor, topic, partition)
    supervisor.kill(leader)
    return leader


def pause_follower(supervisor: Supervisor, topic: str, partition: int) -> int | None:
    """SIGSTOPs one follower of the partition; returns its id (None without followers)."""
    followers = followers_of(supervisor, topic, partition)
    if not followers:
        return None
    supervisor.pause(followers[-1])
    return followers[-1]


@attrs.define(eq=False)
class LeaderWatch:
    """A thread that polls Metadata every ``interval_s`` and measures leaderless time.

    A partition is leaderless when Metadata names no leader, names a broker that is not running
    (killed, not yet noticed by the controller), or nobody answers at all.
    """

    supervisor: Supervisor
    topic: str
    partition: int
    interval_s: float = 0.1
    samples: list[tuple[float, int]] = attrs.Factory(list)
    """(perf_counter time, leader id or -1)."""
    _stop: threading.Event = attrs.Factory(threading.Event)
    _thread: threading.Thread | None = None

    def start(self) -> None:
        self._thread = threading.Thread(target=self._run, name="leader-watch", daemon=True)
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=10)

    def _run(self) -> None:
        while not self._stop.is_set():
            leader = -1
            try:
                info = self.supervisor.view(topics=[self.topic], timeout_s=1.0).partition(
                    self.topic, self.partition
                )
                if info is not None and info.leader_id in self.supervisor.running():
                    handle = self.supervisor.brokers[info.leader_id]
                    leader = -1 if handle.paused else info.leader_id
            except (ClusterError, IndexError):
                leader = -1
            self.samples.append((time.perf_counter(), leader))
            self._stop.wait(self.interval_s)

    def leaderless_s(self, start: float | None = None) -> float:
        """Seconds (sampled) during which the partition had no live leader, after ``start``."""
        total = 0.0
        pts = [s for s in self.samples if start is None or s[0] >= start]
        for (t0, leader), (t1, _) in itertools.pairwise(pts):
            if leader < 0:
                total += t1 - t0
        return total

    def leaders(self) -> list[int]:
        """Distinct leaders seen, in order."""
        out: list[int] = []
        for _, leader in self.samples:
            if leader >= 0 and (not out or out[-1] != leader):
                out.append(leader)
        return out
