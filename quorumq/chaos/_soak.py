"""A randomized chaos run: faults one after another under a steady workload, then the verdict.

Theory of operation: the single-fault tests and ``quorumq compare`` show what one fault does
to a healthy cluster. Real failures come in sequences: a broker killed while another is still
catching up from a pause, the controller cut off right after a leader moved. A soak draws a
schedule of faults from a seed (:func:`plan_faults`, pure), one at a time with calm gaps, and
runs it from the produce loop of one long paced workload over several partitions:

- ``kill``: SIGKILL, then a restart (not waited for) when the fault ends;
- ``pause``: SIGSTOP, then SIGCONT;
- ``partition``: the broker cut off from every other broker, clients still reaching it
  (:class:`~quorumq.chaos.NetworkLab`; the whole run then happens in network namespaces);
- ``one-way``: only one direction cut, drawn per fault: the broker's packets to every other
  broker dropped (it hears them, they do not hear it), or theirs to it. A TCP connection
  needs both ways, but a request that arrives still counts as a sign of life for the
  receiver, and Raft's votes and heartbeats each go one way;
- ``bridge``: the broker cut off from one other broker only; the third reaches both. The
  classic trap for Raft: the two that cannot hear each other each have a majority with the
  bridge, and without pre-vote they can take the leadership from each other in turn;
- ``client``: a member of the consumer group cut off from every broker (each member runs in
  a network namespace of its own). The coordinator drops it after its session and hands its
  partitions to the others; it comes back as a zombie that still thinks it owns them.

Each broker fault picks its victim when it starts, by a role drawn from the seed: the leader
of a partition, the active controller, or any broker (a ``client`` fault draws a member). One fault at a time keeps a majority of three
brokers alive, so the promises hold throughout: with ``acks=all`` no acknowledged record may be
lost or overwritten, under ``quorum`` and under ``isr`` with ``min.insync.replicas=2`` alike.
After the schedule every broker is healed, resumed and restarted, every partition is read to
its end, and the history checker gives the verdict. acks 0 and 1 promise nothing under these
faults: their losses are reported, not judged. A consumer tails every partition throughout,
and what it read is judged at every acks setting: a record a consumer has seen is committed,
and must be in the final log at the offset it was read at (no dirty reads). A consumer group
(``group_members`` librdkafka members, committing after each batch) reads the topic too, and
must end up with every record of the final log (at least once) while the coordinator dies,
pauses and moves with the faults.

The schedule replays exactly from the seed; the victims (who leads at that moment) and the
timing of the cluster's reactions do not.
"""

from __future__ import annotations

import contextlib
import itertools
import random
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import attrs

from quorumq.chaos._history import HistoryReport, ReadReport, check_history, check_reads
from quorumq.chaos._nemesis import leader_of
from quorumq.chaos._netlab import NetworkLab, netlab_unavailable
from quorumq.chaos._workload import (
    GroupRun,
    WorkloadResult,
    consuming_group,
    produce_workload,
    read_back,
    tailing,
)
from quorumq.cluster import ClusterError, Supervisor, cluster_view, free_port_block
from quorumq.errors import QuorumqError

NEMESES = ("kill", "pause", "partition", "one-way", "bridge", "client")
NETWORK_NEMESES = ("partition", "one-way", "bridge", "client")
"""The nemeses that need a :class:`~quorumq.chaos.NetworkLab` (root)."""
ROLES = ("leader", "controller", "any")

Progress = Callable[[str], None]


class SoakError(QuorumqError):
    """The soak could not run (a cluster that does not start, namespaces that cannot be made)."""


@attrs.frozen
class Fault:
    """One scheduled fault: what, to whom (a role, resolved when it starts), when, how long."""

    kind: str
    role: str
    start_s: float
    length_s: float

    @property
    def end_s(self) -> float:
        return self.start_s + self.length_s


def plan_faults(
    seed: int,
    duration_s: float,
    nemeses: tuple[str, ...] = NEMESES,
    *,
    fault_s: tuple[float, float] = (2.0, 6.0),
    calm_s: tuple[float, float] = (1.0, 4.0),
    warmup_s: float = 2.0,
) -> list[Fault]:
    """The seed's schedule: faults one at a time, each ``fault_s`` long (uniform), separated
    by ``calm_s``, the first after ``warmup_s``, the last ending by ``duration_s``.

    Raises:
        ValueError: an unknown nemesis, none at all, or a range that is not (low <= high, > 0).
    """
    unknown = [n for n in nemeses if n not in NEMESES]
    if unknown or not nemeses:
        raise ValueError(f"nemeses must be some of {list(NEMESES)}, not {list(nemeses)}")
    for name, (low, high) in (("fault_s", fault_s), ("calm_s", calm_s)):
        if not 0 < low <= high:
            raise ValueError(f"{name} must be 0 < low <= high, not {(low, high)}")
    rng = random.Random(seed)
    faults: list[Fault] = []
    at = warmup_s
    while True:
        # Rounded first, and the next start counted from the rounded end, so that the gaps
        # and the bound hold for the values the faults carry.
        start, length = round(at, 3), round(rng.uniform(*fault_s), 3)
        if start + length > duration_s:
            return faults
        faults.append(Fault(rng.choice(nemeses), rng.choice(ROLES), start, length))
        at = start + length + rng.uniform(*calm_s)


@attrs.frozen
class SoakOptions:
    """What to run. The defaults are the CLI's: a minute of acks=all on three brokers."""

    strategy: str = "quorum"
    acks: str = "all"
    duration_s: float = 60.0
    seed: int = 1
    nemeses: tuple[str, ...] = NEMESES
    brokers: int = 3
    partitions: int = 3
    rate: float = 1_000.0
    record_size: int = 100
    min_insync_replicas: int = 2
    fault_s: tuple[float, float] = (2.0, 6.0)
    calm_s: tuple[float, float] = (1.0, 4.0)
    data_dir: Path | None = None
    broker_args: tuple[str, ...] = ()
    group_members: int = 2
    """Members of the consumer group that reads the topic throughout (0: no group)."""


@attrs.frozen
class SoakEvent:
    at_s: float
    what: str


@attrs.frozen
class GroupReport:
    """What the consumer group received, against the final log."""

    members: int
    consumed: int
    """Records the members received (redeliveries included)."""
    missing: int
    """Records of the final log that no member received (at-least-once broken)."""
    dirty: int
    """Records a member received that the final log does not hold at that offset."""
    commit_failures: int
    rejoins: int
    """Times a member left and joined again (each a rebalance through committed offsets)."""

    @property
    def ok(self) -> bool:
        return not self.missing and not self.dirty


@attrs.frozen
class SoakResult:
    options: SoakOptions
    faults: tuple[Fault, ...]
    events: tuple[SoakEvent, ...]
    history: HistoryReport
    acked: int
    attempted: int
    seconds: float
    gaps_s: tuple[float, ...] = ()
    """Per fault that ran: the longest time without any acknowledgement from its start until
    the next fault starts (or the load ends): what the fault cost in availability."""
    reads: ReadReport = attrs.field(factory=lambda: ReadReport(seen=0, dirty=()))
    """What a consumer tailing every partition during the run read, checked against the final
    log (``check_reads``)."""
    group: GroupReport | None = None
    """What the consumer group received (None when the run had no group)."""

    @property
    def promised(self) -> bool:
        """Whether the run's settings promise that nothing acknowledged is lost."""
        return self.options.acks == "all" and (
            self.options.strategy == "quorum" or self.options.min_insync_replicas >= 2
        )

    @property
    def promise_kept(self) -> bool:
        """False only when a promise was made and broken: with acks=all, acknowledged records
        lost or an acknowledged offset overwritten; at any acks, a dirty read, or a record of
        the final log that the consumer group never received."""
        group_ok = self.group is None or self.group.ok
        return (not self.promised or self.history.ok) and self.reads.ok and group_ok


def run_soak(options: SoakOptions, progress: Progress | None = None) -> SoakResult:
    """Starts a cluster (in a network lab when ``partition`` is a nemesis), runs the seed's
    schedule under the workload, restores the cluster, reads everything back and checks.

    Raises:
        SoakError: the cluster does not start, or partitions were asked for where network
            namespaces cannot be made (with the reason).
        ValueError: bad options (see :func:`plan_faults`).
    """
    say = progress or (lambda _msg: None)
    if options.brokers < 3:
        raise SoakError("a soak needs at least 3 brokers (a majority must survive each fault)")
    if options.strategy not in ("quorum", "isr"):
        raise SoakError(f"unknown strategy {options.strategy!r} (quorum or isr)")
    if "client" in options.nemeses and options.group_members < 1:
        raise SoakError("the client nemesis cuts off group members: --group-members 1 or more")
    faults = plan_faults(options.seed, options.duration_s, options.nemeses,
                         fault_s=options.fault_s, calm_s=options.calm_s)  # fmt: skip
    with _cluster(options, say) as (sup, lab):
        topic = f"soak-{options.strategy}-{options.seed}-{time.time_ns() // 1_000_000}"
        configs = {"replication.strategy": options.strategy}
        if options.strategy == "isr":
            configs["min.insync.replicas"] = str(options.min_insync_replicas)
        _create_topic(sup, topic, options.partitions, configs)
        rng = random.Random(options.seed)
        events: list[SoakEvent] = []
        started = [0.0]
        say(f"{len(faults)} faults over {options.duration_s:.0f} s (seed {options.seed}): "
            + ", ".join(f"{f.kind} {f.role}" for f in faults))  # fmt: skip

        fault_started: list[float] = []

        def logged(action: Callable[[], str], *, begins: bool = False) -> Callable[[], str]:
            def run() -> str:
                if begins:
                    fault_started.append(time.perf_counter())
                what = action()
                at = time.perf_counter() - started[0]
                events.append(SoakEvent(round(at, 2), what))
                say(f"{at:6.1f} s  {what}")
                return what

            return run

        actions: list[tuple[float, Callable[[], str]]] = []
        for fault in faults:
            start, end = _fault_actions(fault, sup, lab, topic, options, rng)
            actions += [(fault.start_s, logged(start, begins=True)), (fault.end_s, logged(end))]

        members = options.group_members
        with contextlib.ExitStack() as stack:
            group_run: GroupRun | None = None
            if members > 0:
                # With a lab, member i runs on host brokers + i, to be cut off alone.
                enter = None if lab is None else (lambda i: lab.entered(options.brokers + i))
                group_run = stack.enter_context(
                    consuming_group(sup.bootstrap, topic, range(options.partitions), members,
                                    enter=enter)
                )  # fmt: skip
            with tailing(sup.bootstrap, topic, range(options.partitions)) as seen:
                started[0] = time.perf_counter()
                try:
                    result: WorkloadResult = produce_workload(
                        sup.bootstrap, topic, records=int(options.rate * options.duration_s) + 1,
                        record_size=options.record_size, acks=options.acks,
                        partitions=range(options.partitions), rate=options.rate,
                        duration_s=options.duration_s, timeout_s=options.duration_s + 60,
                        at=actions, run_id=topic,
                    )  # fmt: skip
                finally:
                    _restore(sup, lab, say)
            say("reading every partition back")
            partitions = list(range(options.partitions))
            records = read_back(sup.bootstrap, topic, partitions, timeout_s=60)
            missing: set[bytes] = set()
            if group_run is not None:
                say(f"waiting for the consumer group ({members} members) to read it all")
                missing = group_run.wait_for({r.value for r in records}, timeout_s=60)
        group = None
        if group_run is not None:  # its members have stopped
            group = GroupReport(
                members=members,
                consumed=len(group_run.consumed),
                missing=len(missing),
                dirty=len(check_reads(group_run.consumed, records).dirty),
                commit_failures=group_run.commit_failures,
                rejoins=group_run.rejoins,
            )
        history = check_history(result.attempts(), records)
        reads = check_reads(seen, records)
    return SoakResult(
        options=options,
        faults=tuple(faults),
        events=tuple(events),
        history=history,
        acked=result.acked,
        attempted=len(result.deliveries),
        seconds=round(result.finished_at - result.started_at, 2),
        gaps_s=fault_gaps(result, fault_started),
        reads=reads,
        group=group,
    )


def fault_gaps(result: WorkloadResult, starts: list[float]) -> tuple[float, ...]:
    """For each fault start (``perf_counter`` times, in order): the longest time one partition
    went without an acknowledgement, until the next start or the end of the load. Per
    partition, because a fault usually stops one partition while the others go on."""
    acked: dict[int, list[float]] = {}
    for d in result.deliveries:
        if d.acked and d.done_at is not None:
            acked.setdefault(d.partition, []).append(d.done_at)
    for times in acked.values():
        times.sort()
    gaps = []
    for start, end in zip(starts, [*starts[1:], result.finished_at], strict=True):
        until = max(start, end)
        longest = 0.0
        for times in acked.values():
            window = [start, *(t for t in times if start <= t <= until), until]
            longest = max(longest, *(b - a for a, b in itertools.pairwise(window)))
        gaps.append(round(longest, 2))
    return tuple(gaps)


@contextlib.contextmanager
def _cluster(options: SoakOptions, say: Progress) -> Iterator[tuple[Supervisor, NetworkLab | None]]:
    from quorumq.compare import CLUSTER_BROKER_ARGS

    args = (*CLUSTER_BROKER_ARGS, *options.broker_args)
    if not set(NETWORK_NEMESES) & set(options.nemeses):
        sup = Supervisor(options.brokers, base_port=free_port_block(options.brokers),
                         data_dir=options.data_dir, cluster_mode=True, broker_args=args)  # fmt: skip
        with sup:
            say(f"starting {options.brokers} brokers in {sup.data_dir}")
            _start(sup)
            yield sup, None
        return
    why = netlab_unavailable()
    if why is not None:
        raise SoakError(
            f"the {'/'.join(n for n in options.nemeses if n in NETWORK_NEMESES)} nemesis "
            f"needs network namespaces ({why}); without it: --nemesis kill --nemesis pause"
        )
    with NetworkLab(options.brokers + options.group_members) as lab:
        sup = Supervisor(options.brokers, data_dir=options.data_dir, cluster_mode=True,
                         broker_args=args, network=lab)  # fmt: skip
        with sup, lab.entered():
            say(f"starting {options.brokers} brokers in network namespaces ({lab.prefix}*), "
                f"data in {sup.data_dir}")  # fmt: skip
            _start(sup)
            yield sup, lab


def _start(sup: Supervisor) -> None:
    try:
        sup.start(timeout_s=90)
    except ClusterError as exc:
        raise SoakError(f"the cluster did not start: {exc}") from None


def _create_topic(sup: Supervisor, topic: str, partitions: int, configs: dict[str, str]) -> None:
    from quorumq.bench._kafka import create_topic

    create_topic(sup.bootstrap, topic, partitions, 3, configs)
    for partition in range(partitions):
        leader_of(sup, topic, partition, timeout_s=30)


def _controller(sup: Supervisor) -> int | None:
    """The controller id the first answering, unpaused broker names (None if none does)."""
    for node_id in sup.running():
        if sup.brokers[node_id].paused:
            continue
        with contextlib.suppress(ConnectionError):
            controller = cluster_view(sup.address(node_id), [], timeout_s=1.0).controller_id
            if controller in sup.running():
                return controller
    return None


def _fault_actions(
    fault: Fault,
    sup: Supervisor,
    lab: NetworkLab | None,
    topic: str,
    options: SoakOptions,
    rng: random.Random,
) -> tuple[Callable[[], str], Callable[[], str]]:
    """The (start, end) actions of one fault; the victim is chosen when it starts."""
    victim: list[int] = []
    brokers = len(sup.brokers)
    partition = rng.randrange(options.partitions)
    fallback = rng.randrange(brokers)
    # Drawn only for the kinds that use them, so older seeds keep their victims.
    outbound = fault.kind == "one-way" and rng.random() < 0.5
    far = rng.randrange(1, brokers) if fault.kind == "bridge" else 0
    member = rng.randrange(options.group_members) if fault.kind == "client" else 0

    if fault.kind == "client":  # the role does not apply: the victim is a group member
        assert lab is not None

        def cut_member() -> str:
            lab.isolate(brokers + member, others=range(brokers))
            return (
                f"client: group member {member} cut off from every broker for "
                f"{fault.length_s:.1f} s"
            )

        def heal_member() -> str:
            lab.heal()
            return f"heal group member {member}"

        return cut_member, heal_member

    def choose() -> tuple[int, str]:
        if fault.role == "leader":
            with contextlib.suppress(ClusterError):
                return leader_of(sup, topic, partition, timeout_s=2.0), f"leader of {partition}"
        if fault.role == "controller":
            controller = _controller(sup)
            if controller is not None:
                return controller, "active controller"
        return fallback, "broker"

    def start() -> str:
        node_id, role = choose()
        victim.append(node_id)
        what = f"{fault.kind} broker {node_id} ({role})"
        if fault.kind == "kill":
            sup.kill(node_id)
        elif fault.kind == "pause":
            sup.pause(node_id)
        elif fault.kind == "partition":
            assert lab is not None
            lab.isolate(node_id)
        elif fault.kind == "one-way":
            assert lab is not None
            for other in range(len(sup.brokers)):
                if other != node_id:
                    pair = (node_id, other) if outbound else (other, node_id)
                    lab.cut(*pair, both_ways=False)
            what += ": its packets to the others dropped" if outbound else ": deaf to the others"
        else:
            assert lab is not None
            other = (node_id + far) % len(sup.brokers)
            lab.cut(node_id, other)
            what += f": cut from broker {other} only, the others bridge"
        return f"{what} for {fault.length_s:.1f} s"

    def end() -> str:
        node_id = victim[-1]
        if fault.kind == "kill":
            sup.restart(node_id, wait=False)
            return f"restart broker {node_id}"
        if fault.kind == "pause":
            sup.resume(node_id)
            return f"resume broker {node_id}"
        assert lab is not None
        lab.heal()
        return f"heal broker {node_id}"

    return start, end


def _restore(sup: Supervisor, lab: NetworkLab | None, say: Progress) -> None:
    """Every cut healed, every broker resumed and running, all registered again."""
    if lab is not None:
        lab.heal()
    for handle in sup.brokers:
        if handle.paused:
            sup.resume(handle.spec.node_id)
        if not handle.alive():
            sup.restart(handle.spec.node_id, wait=False)
    say("waiting for every broker to be back")
    try:
        sup.wait_ready(timeout_s=90)
    except ClusterError as exc:
        raise SoakError(f"the cluster did not come back after the faults: {exc}") from None
