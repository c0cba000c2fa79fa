"""``quorumq compare``: quorum vs isr, under acks 0, 1 and all, through the same faults.

Theory of operation: one embedded cluster (a :class:`~quorumq.cluster.Supervisor` of broker
processes in a temporary directory), or an external one (``bootstrap``, then only the steady
scenario: we cannot kill processes we did not start). For each (strategy, acks) row, each
scenario gets a fresh one-partition topic, so no scenario inherits another's damage:

- **steady**: ``records`` records flat out; records/s and latency p50/p99/max.
- **stall**: a paced workload; a follower of the partition is SIGSTOPped for ``stall_s``;
  acks/s and latency of records sent during the stall, next to the seconds before it.
- **kill**: a paced workload; the leader is SIGKILLed mid-stream and restarted after the
  workload; every partition is read to its end; the history checker counts acknowledged-and-lost
  records, duplicates, offsets reused; a Metadata watch measures seconds without a live leader.
- **partition**: a paced workload on a second cluster whose brokers each run in a network
  namespace of their own (:class:`~quorumq.chaos.NetworkLab`; needs root, else "n/a"); the
  leader is cut off from the other brokers for ``partition_s`` while the producer still
  reaches it, then the cut heals. The old leader keeps taking writes it cannot commit; the
  history checker counts what the producer was told and the log does not hold. A watcher on
  the majority side times the new leader. A cluster of its own, because the namespaces' veth
  links and routing cost more than loopback: the other scenarios keep loopback's figures.
- **bridge**: on the partition scenario's cluster, the leader is cut off from one follower
  only (one that is not the active controller, so the leader still reaches the controller);
  the third broker reaches both. The fault where the two rules differ most: a quorum leader
  still has a majority with the other follower, while an isr leader waits for every ISR
  member until the one it cannot reach drops out of the ISR (``replica.lag.time.max.ms``).
- **unclean** (isr rows only): a replication-factor-2 topic with
  ``unclean.leader.election.enable=true``; its follower is killed, the ISR shrinks to the leader
  alone, records are written, the leader is killed and the stale follower restarted, so the
  controller can only elect it uncleanly. Replication factor 2 on 3 brokers keeps a controller
  majority alive (every broker is a Raft voter) while both replicas are down.

Degraded mode: when the broker has no cluster mode yet (or ``brokers == 1``), the cluster is one
standalone broker, replication factor 1; ``stall`` and ``unclean`` are "n/a" and ``kill`` kills
and restarts the only broker. Every figure in the report was measured in this run; a scenario
that could not run says why instead of a number.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import json
import os
import platform
import tempfile
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import attrs

from quorumq.chaos import (
    LeaderWatch,
    NetworkLab,
    WorkloadResult,
    check_history,
    followers_of,
    leader_of,
    netlab_unavailable,
    percentile,
    produce_workload,
    read_back,
)
from quorumq.cluster import ClusterError, Supervisor, cluster_view, free_port_block
from quorumq.errors import QuorumqError

STRATEGIES = ("quorum", "isr")
ACKS = ("0", "1", "all")
SCENARIOS = ("steady", "stall", "kill", "partition", "bridge", "unclean")

Progress = Callable[[str], None]

CLUSTER_BROKER_ARGS: tuple[str, ...] = (
    "--session-timeout-ms", "3000", "--heartbeat-interval-ms", "500",
    "--replica-lag-time-max-ms", "2000",
)  # fmt: skip
"""Timeouts of the embedded cluster (before any ``broker_args``, which can override them).

Kafka's defaults (session 9 s here, ``replica.lag.time.max.ms`` 30 s) would make every failover
scenario last tens of seconds; with these, a paused or cut-off broker is fenced within ~3 s
(a crashed one sooner, once the controller's probe finds its port closed) and a silent isr
follower leaves the ISR after 2 s, so a 5 s stall shows both the isr stall and its end.
"""


class CompareError(QuorumqError):
    """The comparison could not run (cluster would not start, client missing)."""


@attrs.frozen
class CompareOptions:
    """What to run. ``short`` is the demo's version: acks=all only, small counts, < 1 min."""

    brokers: int = 3
    records: int = 100_000
    record_size: int = 100
    bootstrap: str | None = None
    short: bool = False
    strategies: tuple[str, ...] = STRATEGIES
    acks: tuple[str, ...] = ACKS
    scenarios: tuple[str, ...] = SCENARIOS
    paced_rate: float = 2_000.0
    """records/s during the stall and kill scenarios (latency under a fault, not queueing)."""
    stall_s: float = 5.0
    kill_run_s: float = 6.0
    partition_s: float = 6.0
    """Seconds the leader is cut off: more than the session timeout (3 s), so the majority
    side elects a new leader while the old one still takes writes."""
    min_insync_replicas: int = 2
    data_dir: Path | None = None
    broker_args: tuple[str, ...] = ()
    """Extra ``quorumq broker`` options for every broker (timeouts, lag time)."""
    launcher: tuple[str, ...] | None = None
    """Argv that runs one broker (default ``python -m quorumq broker``)."""
    cluster_mode: bool | None = None
    """None: use cluster mode when the broker supports it and ``brokers > 1``."""

    @classmethod
    def for_demo(cls, **overrides: Any) -> CompareOptions:
        base: dict[str, Any] = dict(
            records=20_000, short=True, acks=("all",), scenarios=("steady", "stall", "kill"),
            paced_rate=1_000.0, stall_s=3.0, kill_run_s=4.0,
        )  # fmt: skip
        base.update(overrides)
        return cls(**base)


@attrs.define
class Row:
    """One (strategy, acks) row: per scenario, a dict of measured figures or a "skipped" note."""

    strategy: str
    acks: str
    scenarios: dict[str, dict[str, Any]] = attrs.Factory(dict)
    explanation: str = ""


@attrs.define
class CompareReport:
    options: dict[str, Any]
    environment: dict[str, Any]
    rows: list[Row] = attrs.Factory(list)
    notes: list[str] = attrs.Factory(list)

    def to_json(self) -> dict[str, Any]:
        return attrs.asdict(self)


def _ms(x: float) -> float:
    return round(x, 2) if x == x else x  # NaN stays NaN (no latency measured)


def _latency(values: list[float]) -> dict[str, float]:
    return {
        "p50_ms": _ms(percentile(values, 0.50)),
        "p99_ms": _ms(percentile(values, 0.99)),
        "max_ms": _ms(max(values) if values else float("nan")),
    }


@attrs.define
class _Env:
    """The cluster under test and how topics are made on it."""

    supervisor: Supervisor | None
    bootstrap: str
    replication_factor: int
    cluster_mode: bool
    progress: Progress
    strategy_config_ok: bool | None = None
    created: int = 0
    stack: contextlib.ExitStack | None = None
    """Closes what the run opened lazily (the partition scenario's lab cluster)."""
    lab: tuple[NetworkLab, _Env] | None = None
    run_token: str = attrs.Factory(lambda: f"{time.time_ns() // 1_000_000 % 10**8:08d}")
    """Makes topic names unique per run: a reused ``data_dir`` must not hand us old topics."""

    def create_topic(self, strategy: str, tag: str, *, replication_factor: int | None = None,
                     extra: dict[str, str] | None = None) -> str:  # fmt: skip
        """A fresh one-partition topic with the strategy's configs; returns its name."""
        from quorumq.bench._kafka import BenchError

        self.created += 1
        name = f"cmp-{self.run_token}-{self.created:03d}-{strategy}-{tag}"
        rf = replication_factor or self.replication_factor
        config = {"replication.strategy": strategy, **(extra or {})}
        if strategy == "isr" and "min.insync.replicas" not in config:
            config["min.insync.replicas"] = str(min(rf, 2))
        if self.strategy_config_ok is False:
            config.pop("replication.strategy")
        try:
            self._create(name, rf, config)
            self.strategy_config_ok = self.strategy_config_ok or "replication.strategy" in config
        except BenchError as exc:
            if "replication.strategy" not in config or "INVALID_CONFIG" not in str(exc).upper():
                raise
            # A broker without replication (standalone, today) does not know the key yet: the
            # run goes on, and the report says the strategy was not applied.
            self.strategy_config_ok = False
            config.pop("replication.strategy")
            self._create(name, rf, config)
        if self.supervisor is not None:
            leader_of(self.supervisor, name, 0, timeout_s=20)
        return name

    def lab_cluster(self, options: CompareOptions) -> tuple[NetworkLab, _Env]:
        """The partition scenario's cluster: as many brokers, each on a host of a network lab,
        started on first use and kept for the run.

        Raises:
            CompareError: it does not start.
        """
        if self.lab is not None:
            return self.lab
        assert self.stack is not None and self.supervisor is not None
        brokers = len(self.supervisor.brokers)
        lab = self.stack.enter_context(NetworkLab(brokers))
        supervisor = self.stack.enter_context(
            Supervisor(
                brokers, cluster_mode=True, launcher=options.launcher, network=lab,
                broker_args=(*CLUSTER_BROKER_ARGS, *options.broker_args),
            )
        )  # fmt: skip
        self.progress(f"starting {brokers} broker(s) in network namespaces ({lab.prefix}*)")
        try:
            with lab.entered():
                supervisor.start(timeout_s=60)
        except ClusterError as exc:
            raise CompareError(f"the partition scenario's cluster did not start: {exc}") from None
        env = _Env(supervisor, supervisor.bootstrap, self.replication_factor, True, self.progress,
                   strategy_config_ok=self.strategy_config_ok, run_token=self.run_token)  # fmt: skip
        self.lab = (lab, env)
        return self.lab

    def _create(self, name: str, rf: int, config: dict[str, str]) -> None:
        """CreateTopics, retried (bounded) while a restarted broker is not yet unfenced."""
        from quorumq.bench._kafka import BenchError, create_topic

        deadline = time.perf_counter() + 30
        while True:
            try:
                create_topic(self.bootstrap, name, 1, rf, config)
                return
            except BenchError as exc:
                if "INVALID_REPLICATION_FACTOR" not in str(exc).upper():
                    raise
                if time.perf_counter() > deadline:
                    raise
            time.sleep(0.5)


def run_compare(
    options: CompareOptions | None = None,
    *,
    out: Path | None = None,
    progress: Progress | None = None,
    short: bool = False,
) -> CompareReport:
    """Runs every (strategy, acks) row through the scenarios and returns the measured report.

    Writes ``compare.json`` and ``compare.png`` to ``out`` when given.

    Raises:
        CompareError: the cluster does not start, the client is missing, or ``out`` cannot
            be written (checked before anything runs).
        ClusterError: a broker cannot be restarted between scenarios.
    """
    if options is None:
        options = CompareOptions.for_demo() if short else CompareOptions()
    if out is not None:
        _check_writable(out)
    say = progress or (lambda _msg: None)
    report = CompareReport(options=_options_json(options), environment=_environment())
    with _cluster(options, say) as env:
        report.environment.update(
            cluster_mode=env.cluster_mode,
            replication_factor=env.replication_factor,
            bootstrap=env.bootstrap,
        )
        if not env.cluster_mode:
            report.notes.append(
                "degraded: brokers ran standalone (no cluster mode in this build), one broker, "
                "replication factor 1; follower and unclean scenarios do not apply"
            )
        for strategy in options.strategies:
            for acks in options.acks:
                row = Row(strategy, acks)
                for scenario in options.scenarios:
                    say(f"{strategy} acks={acks}: {scenario}")
                    row.scenarios[scenario] = _run_guarded(env, options, scenario, row)
                row.explanation = explain(row)
                report.rows.append(row)
        if env.strategy_config_ok is False:
            report.notes.append(
                "the broker refused the topic config replication.strategy: both strategies ran "
                "the broker's only behaviour, so their rows measure the same thing"
            )
    if out is not None:
        write_outputs(report, out)
    return report


def _options_json(options: CompareOptions) -> dict[str, Any]:
    return {k: (str(v) if isinstance(v, Path) else v) for k, v in attrs.asdict(options).items()}


def _environment() -> dict[str, Any]:
    cpu = platform.machine()
    with contextlib.suppress(OSError), open("/proc/cpuinfo") as f:
        for line in f:
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    return {
        "date": dt.datetime.now(dt.UTC).isoformat(timespec="seconds"),
        "machine": f"{os.cpu_count()} cores, {cpu}",
        "python": platform.python_version(),
    }


@contextlib.contextmanager
def _cluster(options: CompareOptions, say: Progress) -> Iterator[_Env]:
    if options.bootstrap:
        yield _Env(None, options.bootstrap, replication_factor=min(3, options.brokers),
                   cluster_mode=True, progress=say)  # fmt: skip
        return
    from quorumq.cluster import broker_supports_cluster_mode

    cluster_mode = options.cluster_mode
    if cluster_mode is None:
        cluster_mode = broker_supports_cluster_mode() and options.brokers > 1
    brokers = options.brokers if cluster_mode else 1
    supervisor = Supervisor(
        brokers, base_port=free_port_block(brokers), data_dir=options.data_dir,
        cluster_mode=cluster_mode, launcher=options.launcher,
        broker_args=(*(CLUSTER_BROKER_ARGS if cluster_mode else ()), *options.broker_args),
    )  # fmt: skip
    with supervisor, contextlib.ExitStack() as stack:
        say(f"starting {brokers} broker(s) in {supervisor.data_dir}")
        try:
            supervisor.start(timeout_s=60)
        except ClusterError as exc:
            raise CompareError(f"the cluster did not start: {exc}") from None
        yield _Env(supervisor, supervisor.bootstrap, replication_factor=min(3, brokers),
                   cluster_mode=cluster_mode, progress=say, stack=stack)  # fmt: skip


def _run_guarded(env: _Env, options: CompareOptions, scenario: str, row: Row) -> dict[str, Any]:
    """One scenario; a failure becomes the cell's text (and the cluster is made whole again)
    rather than the end of the whole comparison."""
    try:
        return _run_scenario(env, options, scenario, row)
    except QuorumqError as exc:
        env.progress(f"  {scenario} failed: {exc}")
        failed = {"skipped": f"failed: {exc}"}
    sup = env.supervisor
    if sup is not None:
        for handle in sup.brokers:
            if handle.paused:
                sup.resume(handle.spec.node_id)
            if not handle.alive() or not sup.is_ready(handle.spec.node_id):
                try:
                    sup.restart(handle.spec.node_id, timeout_s=60)
                except ClusterError as exc:
                    raise CompareError(
                        f"cannot restore broker {handle.spec.node_id}: {exc}"
                    ) from None
    return failed


def _run_scenario(env: _Env, options: CompareOptions, scenario: str, row: Row) -> dict[str, Any]:
    if scenario != "steady" and env.supervisor is None:
        return {"skipped": "external cluster: faults need processes we started"}
    if scenario == "steady":
        return _steady(env, options, row)
    if scenario == "stall":
        return _stall(env, options, row)
    if scenario == "kill":
        return _kill(env, options, row)
    if scenario == "partition":
        return _partition(env, options, row)
    if scenario == "bridge":
        return _bridge(env, options, row)
    if scenario == "unclean":
        return _unclean(env, options, row)
    raise CompareError(f"unknown scenario {scenario!r}")


def _steady(env: _Env, options: CompareOptions, row: Row) -> dict[str, Any]:
    topic = env.create_topic(row.strategy, f"a{row.acks}-steady")
    result = produce_workload(
        env.bootstrap, topic, records=options.records, record_size=options.record_size,
        acks=row.acks, timeout_s=60 if options.short else 120, run_id=topic,
    )  # fmt: skip
    seconds = max(1e-9, _last_ack(result) - result.started_at)
    return {
        "records": len(result.deliveries),
        "acked": result.acked,
        "seconds": round(seconds, 3),
        "records_per_s": round(result.acked / seconds, 1),
        **_latency(result.latencies_ms()),
    }


def _last_ack(result: WorkloadResult) -> float:
    times = [d.done_at for d in result.deliveries if d.acked and d.done_at is not None]
    return max(times) if times else result.finished_at


def _paced_fault(
    bootstrap: str,
    topic: str,
    options: CompareOptions,
    row: Row,
    window: tuple[float, float, float],
    start: Callable[[], str],
    end: Callable[[], str],
) -> WorkloadResult:
    """The row's acks at ``paced_rate`` for (before, fault, after) seconds, with the fault
    started and ended from the produce loop."""
    before_s, fault_s, after_s = window
    duration = before_s + fault_s + after_s
    return produce_workload(
        bootstrap, topic, records=int(options.paced_rate * duration) + 1,
        record_size=options.record_size, acks=row.acks, rate=options.paced_rate,
        duration_s=duration, timeout_s=duration + 30, run_id=topic,
        at=[(before_s, start), (before_s + fault_s, end)],
    )  # fmt: skip


def _stall(env: _Env, options: CompareOptions, row: Row) -> dict[str, Any]:
    sup = env.supervisor
    assert sup is not None
    if env.replication_factor < 2:
        return {"skipped": "replication factor 1: no follower to pause"}
    topic = env.create_topic(row.strategy, f"a{row.acks}-stall")
    follower = followers_of(sup, topic, 0)[-1]
    before_s, after_s = 1.5, 1.5
    marks: dict[str, float] = {}

    def pause() -> str:
        marks["paused"] = time.perf_counter()
        sup.pause(follower)
        return f"SIGSTOP broker {follower}"

    def resume() -> str:
        sup.resume(follower)
        marks["resumed"] = time.perf_counter()
        return f"SIGCONT broker {follower}"

    try:
        result = _paced_fault(env.bootstrap, topic, options, row, (before_s, options.stall_s,
                                                                   after_s), pause, resume)  # fmt: skip
    finally:
        sup.resume(follower)
    p0, p1 = marks.get("paused", result.started_at), marks.get("resumed", result.finished_at)
    # "Before": records sent after a warm-up and answered before the pause (a record sent just
    # before it may wait through it: that wait belongs to "during").
    b0, b1 = result.started_at + 0.25, p0
    lat_before = [
        lat for d in result.deliveries
        if (lat := d.latency_ms) is not None and d.sent_at >= b0 and d.done_at is not None
        and d.done_at < b1
    ]  # fmt: skip
    lat_stall = result.latencies_ms(p0, p1)
    return {
        "follower": follower,
        "stall_s": round(p1 - p0, 2),
        "acks_per_s_before": round(result.acks_per_s(b0, b1), 1),
        "acks_per_s_during": round(result.acks_per_s(p0, p1), 1),
        "p99_ms_before": _ms(percentile(lat_before, 0.99)),
        **{f"{k}_during": v for k, v in _latency(lat_stall).items()},
        "longest_ack_gap_s": round(result.longest_ack_gap_s(p0), 2),
        "acked": result.acked,
        "records": len(result.deliveries),
    }


def _kill(env: _Env, options: CompareOptions, row: Row) -> dict[str, Any]:
    sup = env.supervisor
    assert sup is not None
    topic = env.create_topic(row.strategy, f"a{row.acks}-kill")
    watch = LeaderWatch(sup, topic, 0)
    killed: dict[str, Any] = {}

    def kill() -> str:
        leader = leader_of(sup, topic, 0)
        killed["id"], killed["at"] = leader, time.perf_counter()
        sup.kill(leader)
        return f"SIGKILL broker {leader}"

    actions: list[tuple[float, Callable[[], str]]] = [(options.kill_run_s * 0.4, kill)]
    if env.replication_factor < 2:
        # One broker: no one else can lead, so it comes back (same data dir) mid-stream.
        def restart() -> str:
            sup.restart(killed["id"], timeout_s=30)
            return f"restarted broker {killed['id']}"

        actions.append((options.kill_run_s * 0.4 + 1.0, restart))
    watch.start()
    try:
        result = produce_workload(
            env.bootstrap, topic, records=int(options.paced_rate * options.kill_run_s) + 1,
            record_size=options.record_size, acks=row.acks, rate=options.paced_rate,
            duration_s=options.kill_run_s, timeout_s=options.kill_run_s + 30, run_id=topic,
            at=actions,
        )  # fmt: skip
    finally:
        watch.stop()
    leaderless = watch.leaderless_s(killed.get("at"))
    new_leaders = watch.leaders()
    # Bring the killed broker back: it rejoins as a follower (and truncates a divergent tail).
    if "id" in killed and killed["id"] not in sup.running():
        sup.restart(killed["id"], timeout_s=60)
    history = check_history(result.attempts(), read_back(env.bootstrap, topic, [0], timeout_s=30))
    return {
        "killed": killed.get("id"),
        "leaders_seen": new_leaders,
        "seconds_without_leader": round(leaderless, 2),
        "longest_ack_gap_s": round(result.longest_ack_gap_s(killed.get("at")), 2),
        **history.summary(),
        **{f"{k}": v for k, v in _latency(result.latencies_ms()).items() if k == "max_ms"},
    }


def _lab_or_skip(
    env: _Env, options: CompareOptions, need: str
) -> tuple[NetworkLab, _Env, Supervisor] | dict[str, Any]:
    """The network scenarios' lab cluster (started on first use), or why there is none."""
    if not env.cluster_mode or env.supervisor is None or len(env.supervisor.brokers) < 3:
        return {"skipped": f"needs 3 brokers in cluster mode ({need})"}
    why = netlab_unavailable()
    if why is not None:
        return {"skipped": why}
    lab, lab_env = env.lab_cluster(options)
    assert lab_env.supervisor is not None
    return lab, lab_env, lab_env.supervisor


def _healer(lab: NetworkLab, cut: dict[str, Any]) -> Callable[[], str]:
    """The end of a network fault: every cut healed, and when (``cut["healed"]``)."""

    def heal() -> str:
        lab.heal()
        cut["healed"] = time.perf_counter()
        return "healed"

    return heal


def _partition(env: _Env, options: CompareOptions, row: Row) -> dict[str, Any]:
    found = _lab_or_skip(env, options, "a majority without the leader")
    if isinstance(found, dict):
        return found
    lab, lab_env, sup = found
    with lab.entered():
        sup.wait_ready(timeout_s=60)
        topic = lab_env.create_topic(row.strategy, f"a{row.acks}-partition")
        before_s, after_s = 1.5, 1.5
        cut: dict[str, Any] = {}
        elected = threading.Event()

        def watch_majority() -> None:
            """Times the first leader the majority side names (the cut-off leader's own
            Metadata still names itself)."""
            others = [i for i in range(len(sup.brokers)) if i != cut["id"]]
            deadline = time.perf_counter() + options.partition_s + 10
            while not elected.is_set() and time.perf_counter() < deadline:
                for node_id in others:
                    with contextlib.suppress(ConnectionError, ClusterError):
                        view = cluster_view(sup.address(node_id), [topic], timeout_s=1.0)
                        info = view.partition(topic, 0)
                        if info is not None and info.leader_id in others:
                            cut["new_leader_s"] = time.perf_counter() - cut["at"]
                            elected.set()
                            return
                time.sleep(0.05)

        def isolate() -> str:
            cut["id"] = leader_of(sup, topic, 0)
            lab.isolate(cut["id"])
            cut["at"] = time.perf_counter()
            watcher = threading.Thread(target=watch_majority, name="partition-watch", daemon=True)
            watcher.start()
            cut["watcher"] = watcher
            return f"cut broker {cut['id']} off from the other brokers"

        heal = _healer(lab, cut)

        try:
            result = _paced_fault(lab_env.bootstrap, topic, options, row,
                                  (before_s, options.partition_s, after_s), isolate, heal)  # fmt: skip
        finally:
            lab.heal()
            elected.set()
            if "watcher" in cut:
                cut["watcher"].join(timeout=15)
        sup.wait_ready(timeout_s=60)
        history = check_history(
            result.attempts(), read_back(lab_env.bootstrap, topic, [0], timeout_s=30)
        )
    new_leader_s = cut.get("new_leader_s")
    return {
        "isolated": cut.get("id"),
        "cut_s": round(cut.get("healed", cut.get("at", 0.0)) - cut.get("at", 0.0), 2),
        "new_leader_s": round(new_leader_s, 2) if new_leader_s is not None else None,
        "longest_ack_gap_s": round(result.longest_ack_gap_s(cut.get("at")), 2),
        **history.summary(),
        **{k: v for k, v in _latency(result.latencies_ms()).items() if k == "max_ms"},
    }


def _bridge(env: _Env, options: CompareOptions, row: Row) -> dict[str, Any]:
    found = _lab_or_skip(env, options, "a follower on each side")
    if isinstance(found, dict):
        return found
    lab, lab_env, sup = found
    with lab.entered():
        sup.wait_ready(timeout_s=60)
        topic = lab_env.create_topic(row.strategy, f"a{row.acks}-bridge")
        cut: dict[str, Any] = {}

        def bridge() -> str:
            leader = leader_of(sup, topic, 0)
            controller = -1
            with contextlib.suppress(ConnectionError, ClusterError):
                controller = cluster_view(sup.address(leader), [], timeout_s=1.0).controller_id
            followers = [i for i in range(len(sup.brokers)) if i != leader]
            # Not the controller: the leader keeps reaching it, so this measures the
            # commit rule, not a controller failover.
            follower = next((f for f in followers if f != controller), followers[-1])
            lab.cut(leader, follower)
            cut.update(leader=leader, follower=follower, controller=controller,
                       at=time.perf_counter())  # fmt: skip
            return f"cut broker {leader} (leader) from broker {follower} only"

        heal = _healer(lab, cut)

        try:
            result = _paced_fault(lab_env.bootstrap, topic, options, row,
                                  (1.5, options.partition_s, 1.5), bridge, heal)  # fmt: skip
        finally:
            lab.heal()
        sup.wait_ready(timeout_s=60)
        history = check_history(
            result.attempts(), read_back(lab_env.bootstrap, topic, [0], timeout_s=30)
        )
        leader_after = _leader_or_none(sup, topic)
    at = cut.get("at", result.started_at)
    healed = cut.get("healed", result.finished_at)
    return {
        "leader": cut.get("leader"),
        "cut_from": cut.get("follower"),
        "controller": cut.get("controller"),
        "leader_after": leader_after,
        "cut_s": round(healed - at, 2),
        "acks_per_s_during": round(result.acks_per_s(at, healed), 1),
        **{f"{k}_during": v for k, v in _latency(result.latencies_ms(at, healed)).items()},
        "longest_ack_gap_s": round(result.longest_ack_gap_s(at), 2),
        **history.summary(),
    }


def _leader_or_none(sup: Supervisor, topic: str) -> int | None:
    """The partition's leader now, or None when no broker names one in time."""
    try:
        return leader_of(sup, topic, 0, timeout_s=5.0)
    except ClusterError:
        return None


def _unclean(env: _Env, options: CompareOptions, row: Row) -> dict[str, Any]:
    sup = env.supervisor
    assert sup is not None
    if row.strategy != "isr":
        return {"skipped": "only isr has unclean leader election"}
    if len(sup.brokers) < 3 or env.replication_factor < 2:
        return {"skipped": "needs 3 brokers (replication factor 2 plus a controller majority)"}
    topic = env.create_topic(
        row.strategy, f"a{row.acks}-unclean", replication_factor=2,
        extra={"unclean.leader.election.enable": "true",
               "min.insync.replicas": str(options.min_insync_replicas)},
    )  # fmt: skip
    leader = leader_of(sup, topic, 0)
    follower = next(r for r in followers_of(sup, topic, 0) if r != leader)
    n = max(200, options.records // 10)
    phase_a = produce_workload(env.bootstrap, topic, records=n, record_size=options.record_size,
                               acks="all", timeout_s=30, run_id=f"{topic}-a")  # fmt: skip
    sup.kill(follower)
    t0 = time.perf_counter()
    shrunk_s = _wait_isr(sup, topic, (leader,), timeout_s=45)
    figures: dict[str, Any] = {"leader": leader, "follower": follower}
    if shrunk_s is None:
        sup.restart(follower, timeout_s=60)
        figures["skipped"] = "the ISR did not shrink to the leader alone within 45 s"
        return figures
    figures["isr_shrink_s"] = round(shrunk_s - t0, 2)
    phase_b = produce_workload(env.bootstrap, topic, records=n, record_size=options.record_size,
                               acks=row.acks, timeout_s=20, run_id=f"{topic}-b")  # fmt: skip
    refused = sum(1 for d in phase_b.deliveries if not d.acked)
    sup.kill(leader)
    sup.restart(follower, timeout_s=60)
    t1 = time.perf_counter()
    elected = _wait_leader(sup, topic, {follower}, timeout_s=45)
    figures["unclean_election_s"] = round(elected - t1, 2) if elected else None
    sup.restart(leader, timeout_s=60)
    history = check_history(
        [*phase_a.attempts(), *phase_b.attempts()],
        read_back(env.bootstrap, topic, [0], timeout_s=30),
    )
    figures.update(written_alone=n, refused_or_failed=refused, acked_alone=phase_b.acked,
                   elected=elected is not None, **history.summary())  # fmt: skip
    return figures


def _wait_isr(sup: Supervisor, topic: str, isr: tuple[int, ...], timeout_s: float) -> float | None:
    deadline = time.perf_counter() + timeout_s
    while time.perf_counter() < deadline:
        with contextlib.suppress(ClusterError):
            info = sup.view(topics=[topic]).partition(topic, 0)
            if info is not None and tuple(sorted(info.isr)) == tuple(sorted(isr)):
                return time.perf_counter()
        time.sleep(0.2)
    return None


def _wait_leader(sup: Supervisor, topic: str, among: set[int], timeout_s: float) -> float | None:
    deadline = time.perf_counter() + timeout_s
    while time.perf_counter() < deadline:
        with contextlib.suppress(ClusterError):
            info = sup.view(topics=[topic]).partition(topic, 0)
            if info is not None and info.leader_id in among:
                return time.perf_counter()
        time.sleep(0.2)
    return None


# --- explanation, JSON and plot -------------------------------------------------------------

_RULES = {
    ("quorum", "0"): "no answer at all: the producer counts a record sent as delivered",
    ("quorum", "1"): "answered after the leader's append, before any follower has it",
    ("quorum", "all"): "answered when a majority of the replicas (leader included) has the record",
    ("isr", "0"): "no answer at all: the producer counts a record sent as delivered",
    ("isr", "1"): "answered after the leader's append, before any follower has it",
    ("isr", "all"): "answered when every ISR member has the record (ISR >= min.insync.replicas)",
}


def explain(row: Row) -> str:
    """One or two sentences: the row's rule, then what this run measured under the faults."""
    parts = [f"{row.strategy} acks={row.acks}: {_RULES.get((row.strategy, row.acks), '')}."]
    steady = row.scenarios.get("steady", {})
    if "records_per_s" in steady:
        parts.append(f"Steady {steady['records_per_s']:,.0f} rec/s, p99 {steady['p99_ms']} ms.")
    stall = row.scenarios.get("stall", {})
    if "acks_per_s_during" in stall:
        parts.append(
            f"Follower paused {stall['stall_s']} s: {stall['acks_per_s_during']:,.0f} acks/s "
            f"(before {stall['acks_per_s_before']:,.0f}), no ack for up to "
            f"{stall['longest_ack_gap_s']} s, max latency {stall['max_ms_during']} ms."
        )
    kill = row.scenarios.get("kill", {})
    if "lost" in kill:
        parts.append(
            f"Leader killed: {kill['lost']} acknowledged records lost, {kill['duplicates']} "
            f"duplicates, {kill['seconds_without_leader']} s without a leader."
        )
    partition = row.scenarios.get("partition", {})
    if "lost" in partition:
        elected = partition["new_leader_s"]
        parts.append(
            f"Leader cut off from the other brokers for {partition['cut_s']} s, the producer "
            f"still reaching it: {partition['lost']} acknowledged records lost, "
            + (f"a new leader after {elected} s." if elected is not None else "no new leader.")
        )
    bridge = row.scenarios.get("bridge", {})
    if "lost" in bridge:
        parts.append(
            f"Leader cut from one follower for {bridge['cut_s']} s: "
            f"{bridge['acks_per_s_during']:,.0f} acks/s during it, no ack for up to "
            f"{bridge['longest_ack_gap_s']} s, {bridge['lost']} acknowledged records lost."
        )
    unclean = row.scenarios.get("unclean", {})
    if "lost" in unclean:
        parts.append(
            f"Unclean election: {unclean['acked_alone']} of {unclean['written_alone']} records "
            f"acked by the lone leader, {unclean['lost']} acknowledged records lost."
        )
    return " ".join(parts)


def _check_writable(out: Path) -> None:
    """A full run measures for minutes: an ``out`` it cannot write fails now, not after."""
    try:
        out.mkdir(parents=True, exist_ok=True)
        with tempfile.NamedTemporaryFile(dir=out, prefix=".compare-probe-"):
            pass
    except OSError as exc:
        raise CompareError(f"cannot write to {out}: {exc.strerror or exc}") from None


def write_outputs(report: CompareReport, out: Path) -> tuple[Path, Path]:
    """``compare.json`` (everything measured) and ``compare.png`` (nine panels) in ``out``."""
    out.mkdir(parents=True, exist_ok=True)
    json_path = out / "compare.json"
    json_path.write_text(json.dumps(report.to_json(), indent=2, default=str) + "\n")
    png_path = out / "compare.png"
    plot(report, png_path)
    return json_path, png_path


def plot(report: CompareReport, path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    labels = [f"{r.strategy}\nacks={r.acks}" for r in report.rows]
    colors = ["#4c72b0" if r.strategy == "quorum" else "#dd8452" for r in report.rows]

    def series(scenario: str, key: str) -> list[float | None]:
        out: list[float | None] = []
        for r in report.rows:
            v = r.scenarios.get(scenario, {}).get(key)
            out.append(float(v) if isinstance(v, int | float) and v == v else None)
        return out

    panels = [
        ("steady: records/s", "steady", "records_per_s"),
        ("steady: p99 latency (ms)", "steady", "p99_ms"),
        ("follower paused: max latency (ms)", "stall", "max_ms_during"),
        ("leader killed: acknowledged records lost", "kill", "lost"),
        ("leader killed: seconds without a leader", "kill", "seconds_without_leader"),
        ("leader partitioned away: acknowledged records lost", "partition", "lost"),
        ("leader partitioned away: seconds to a new leader", "partition", "new_leader_s"),
        ("leader cut from one follower: longest ack gap (s)", "bridge", "longest_ack_gap_s"),
        ("unclean election: acknowledged records lost", "unclean", "lost"),
    ]
    fig, axes = plt.subplots(3, 3, figsize=(18, 12))
    for ax, (title, scenario, key) in zip(axes.flat, panels, strict=True):
        values = series(scenario, key)
        ax.bar(range(len(labels)), [v or 0.0 for v in values], color=colors)
        ax.set_xticks(range(len(labels)), labels, fontsize=8)
        ax.set_title(title, fontsize=10)
        ax.set_ylim(bottom=0, top=max([1.0, *(v * 1.15 for v in values if v)]))
        for i, v in enumerate(values):
            text = "n/a" if v is None else f"{v:,.0f}" if v >= 100 else f"{v:.3g}"
            ax.annotate(text, (i, v or 0.0), ha="center", va="bottom", fontsize=7)
    env = report.environment
    fig.suptitle(
        f"quorumq compare: {env.get('replication_factor', '?')} replicas, "
        f"{report.options.get('record_size')} B records, {env.get('machine', '')} "
        f"({env.get('date', '')})",
        fontsize=11,
    )
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)
