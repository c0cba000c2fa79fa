"""``quorumq bench produce`` / ``bench consume``: a broker driven by librdkafka."""

from __future__ import annotations

import contextlib
import functools
import os
import platform
import shlex
import statistics
from collections.abc import Iterator
from enum import StrEnum

import psutil
import typer
from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TimeElapsedColumn
from rich.table import Table

from quorumq.bench import (
    SECURITY_MODES,
    BrokerProcess,
    ConsumeResult,
    ProduceResult,
    RunSummary,
    consume_bench,
    elections_bench,
    failover_bench,
    produce_bench,
    start_quorumq_broker,
    start_quorumq_cluster,
    start_secured_quorumq_broker,
    start_secured_quorumq_cluster,
    start_tansu_broker,
    summarize_runs,
)
from quorumq.bench._kafka import create_topic
from quorumq.cli._app import bench_app

console = Console()


class Strategy(StrEnum):
    quorum = "quorum"
    isr = "isr"
    both = "both"


class Pacing(StrEnum):
    record = "record"
    kafka = "kafka"


class Target(StrEnum):
    quorumq = "quorumq"
    tansu = "tansu"
    both = "both"


@contextlib.contextmanager
def _external(bootstrap: str, pid: int | None) -> Iterator[BrokerProcess]:
    procs = []
    if pid is not None:
        # Not started by us, so never stopped by us: only its CPU clock is read.
        procs = [_Pid(pid)]
    yield BrokerProcess("external", bootstrap, procs)  # type: ignore[arg-type]


class _Pid:
    def __init__(self, pid: int) -> None:
        self.pid = pid

    def poll(self) -> int:
        return 0  # reported as exited, so BrokerProcess.stop leaves it alone


def _targets(  # type: ignore[no-untyped-def]
    target: Target, bootstrap: str | None, pid: int | None, launcher: list[str] | None = None
):
    if bootstrap:
        return [lambda: _external(bootstrap, pid)]
    out = []
    if target in (Target.quorumq, Target.both):
        out.append(functools.partial(start_quorumq_broker, launcher=launcher))
    if target in (Target.tansu, Target.both):
        out.append(start_tansu_broker)
    return out


def _produce_runs(  # type: ignore[no-untyped-def]
    broker: Target,
    bootstrap: str,
    broker_pid: int,
    brokers: int,
    strategy: Strategy,
    min_insync_replicas: int,
    launcher: str = "",
):
    """(broker starter, topic configs) for each run of ``bench produce``."""
    argv = shlex.split(launcher) or None
    if brokers == 1:
        starts = _targets(broker, bootstrap or None, broker_pid or None, argv)
        return [(start, {}) for start in starts]
    if bootstrap or broker != Target.quorumq:
        raise typer.BadParameter("--brokers > 1 starts quorumq brokers only (no --bootstrap)")
    return [
        (functools.partial(start_quorumq_cluster, brokers, name=label, launcher=argv), configs)
        for label, configs in _strategy_runs(brokers, strategy, min_insync_replicas)
    ]


def _strategy_runs(
    brokers: int, strategy: Strategy, min_insync_replicas: int
) -> list[tuple[str, dict[str, str]]]:
    """(label, topic configs) of each replication strategy ``--strategy`` names."""
    names = ["quorum", "isr"] if strategy == Strategy.both else [strategy.value]
    runs = []
    for name in names:
        configs = {"replication.strategy": name}
        if name == "isr":
            configs["min.insync.replicas"] = str(min_insync_replicas)
        runs.append((f"quorumq ×{brokers} {name}", configs))
    return runs


def _machine() -> str:
    cpu = platform.processor() or platform.machine()
    with contextlib.suppress(OSError), open("/proc/cpuinfo") as f:
        for line in f:
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    return f"{os.cpu_count()} cores, {cpu}, Python {platform.python_version()}"


@bench_app.command("produce")
def bench_produce(
    records: int = typer.Option(1_000_000, min=1, max=100_000_000, help="Records to send."),
    record_size: int = typer.Option(100, min=1, max=1_000_000, help="Value bytes per record."),
    acks: str = typer.Option("1", help="0, 1 or all."),
    partitions: int = typer.Option(1, min=1, max=1000),
    rate: int = typer.Option(0, min=0, help="Pace to this many records/s (0: flat out)."),
    broker: Target = typer.Option(Target.quorumq, help="Which broker to start locally."),
    bootstrap: str = typer.Option("", help="Use a running broker instead of starting one."),
    broker_pid: int = typer.Option(0, help="With --bootstrap: PID whose CPU time to report."),
    timeout: float = typer.Option(300.0, min=1.0, help="Seconds before giving up."),
    brokers: int = typer.Option(
        1, min=1, max=9, help="Start this many cluster-mode broker processes (quorumq only)."
    ),
    replication_factor: int = typer.Option(
        0, min=0, max=9, help="Replication factor of the topic (0: --brokers)."
    ),
    strategy: Strategy = typer.Option(
        Strategy.quorum, help="replication.strategy of the topic (with --brokers > 1)."
    ),
    min_insync_replicas: int = typer.Option(2, min=1, help="min.insync.replicas for isr."),
    linger_ms: float = typer.Option(5.0, min=0.0, help="The producer's linger.ms."),
    pacing: Pacing = typer.Option(
        Pacing.record,
        help="With --rate: 'record' sends each record at its own time; 'kafka' sleeps only "
        "when 2 ms are owed, as Kafka's ProducerPerformance does.",
    ),
    launcher: str = typer.Option(
        "", help="Command that runs quorumq for the brokers (default: python -m quorumq)."
    ),
    nagle: bool = typer.Option(
        False,
        "--nagle",
        help="Keep librdkafka's default of Nagle's algorithm on (the default here is "
        "TCP_NODELAY, as Kafka's Java client always sets).",
    ),
    repeat: int = typer.Option(
        1,
        min=1,
        max=100,
        help="Run everything this many times (fresh brokers each time, setups alternating) "
        "and add a summary: median p50 and p99, the p99 spread, median CPU.",
    ),
    p99_target_ms: float = typer.Option(
        5.0, min=0.0, help="With --repeat: count the runs whose p99 meets this (ms)."
    ),
    security: list[str] = typer.Option(
        [],
        "--security",
        help="quorumq brokers whose listeners need this: none, sasl (SCRAM-SHA-512), ssl, "
        "sasl_ssl, sasl_ssl_acl (and an authorizer checking every request); repeat to "
        "compare modes side by side. With --brokers 3, brokers replicate over it too.",
    ),
) -> None:
    """Produce with confluent-kafka (librdkafka); print records/s, MB/s, latency, broker CPU.

    With ``--brokers 3`` the CPU column sums the three broker processes. A paced run's p99
    moves with the machine's speed; ``--repeat`` judges it on several runs.
    """
    if acks not in ("0", "1", "all", "-1"):
        raise typer.BadParameter("--acks must be 0, 1 or all")
    rf = replication_factor or brokers
    if rf > brokers:
        raise typer.BadParameter("--replication-factor cannot exceed --brokers")
    topic = f"bench-{os.getpid()}"
    if security:
        unknown = [m for m in security if m not in SECURITY_MODES]
        if unknown:
            raise typer.BadParameter(f"--security wants one of {', '.join(SECURITY_MODES)}")
        if bootstrap or broker != Target.quorumq:
            raise typer.BadParameter("--security runs quorumq brokers it starts itself")
        argv = shlex.split(launcher) or None
        if brokers == 1:
            runs = [
                (functools.partial(start_secured_quorumq_broker, mode, topic, launcher=argv), {})
                for mode in security
            ]
        else:
            runs = [
                (
                    functools.partial(
                        start_secured_quorumq_cluster,
                        mode,
                        topic,
                        brokers,
                        name=f"{label} {mode}",
                        launcher=argv,
                    ),
                    configs,
                )
                for mode in security
                for label, configs in _strategy_runs(brokers, strategy, min_insync_replicas)
            ]
    else:
        runs = _produce_runs(
            broker, bootstrap, broker_pid, brokers, strategy, min_insync_replicas, launcher
        )
    results: list[ProduceResult] = []
    for start, configs in [run for _ in range(repeat) for run in runs]:
        with start() as proc:
            create_topic(proc.bootstrap, topic, partitions, rf, configs, proc.client_config)
            with _progress(f"produce → {proc.name}", records, rate=rate) as advance:
                results.append(
                    produce_bench(
                        proc,
                        topic=topic,
                        records=records,
                        record_size=record_size,
                        acks=acks,
                        rate=rate or None,
                        timeout_s=timeout,
                        extra_config={"linger.ms": f"{linger_ms:g}"},
                        progress=advance,
                        pacing=pacing.value,
                        nagle=nagle,
                    )
                )
    title = f"produce: {records:,} × {record_size} B, acks={acks}, {partitions} partition(s)"
    if brokers > 1:
        title += f", {brokers} brokers, RF {rf}"
    if rate:
        title += f", paced at {rate:,} records/s"
    if rate and pacing != Pacing.record:
        title += f" ({pacing.value} pacing)"
    if linger_ms != 5:
        title += f", linger.ms={linger_ms:g}"
    if nagle:
        title += ", Nagle on"
    table = Table(title=title)
    for col in (
        "broker",
        "records/s",
        "MB/s",
        "p50 ms",
        "p99 ms",
        "max ms",
        "failed",
        "broker CPU s / M records",
    ):
        table.add_column(col, justify="right")
    for r in results:
        table.add_row(
            r.broker,
            f"{r.records_per_s:,.0f}",
            f"{r.mb_per_s:.1f}",
            f"{r.percentile_ms(0.5):.2f}",
            f"{r.percentile_ms(0.99):.2f}",
            f"{r.percentile_ms(1.0):.1f}",
            f"{r.failed:,}",
            f"{r.cpu_s_per_million:.2f}",
        )
    console.print(table)
    if repeat > 1:
        console.print(_summary_table(summarize_runs(results, p99_target_ms), p99_target_ms))
    else:
        _ratio(results)
    console.print(f"machine: {_machine()}")


def _summary_table(summaries: list[RunSummary], p99_target_ms: float) -> Table:
    table = Table(title="summary over runs (medians)")
    for col in (
        "broker",
        "runs",
        "p50 ms",
        "p99 ms",
        "p99 min–max ms",
        f"runs with p99 ≤ {p99_target_ms:g} ms",
        "broker CPU s / M records",
        "failed",
    ):
        table.add_column(col, justify="right")
    for s in summaries:
        table.add_row(
            s.broker,
            str(s.runs),
            f"{s.p50_ms:.2f}",
            f"{s.p99_ms:.2f}",
            f"{s.p99_min_ms:.2f}–{s.p99_max_ms:.2f}",
            f"{s.met} of {s.runs}",
            f"{s.cpu_s_per_million:.2f}",
            f"{s.failed:,}",
        )
    return table


@bench_app.command("consume")
def bench_consume(
    records: int = typer.Option(1_000_000, min=1, max=100_000_000),
    record_size: int = typer.Option(100, min=1, max=1_000_000),
    partitions: int = typer.Option(1, min=1, max=1000),
    broker: Target = typer.Option(Target.quorumq),
    timeout: float = typer.Option(300.0, min=1.0),
    launcher: str = typer.Option(
        "", help="Command that runs quorumq for the brokers (default: python -m quorumq)."
    ),
) -> None:
    """Fill a topic, then read it back with confluent-kafka; print records/s, MB/s, broker CPU."""
    results: list[ConsumeResult] = []
    for start in _targets(broker, None, None, shlex.split(launcher) or None):
        with start() as proc:
            topic = f"bench-{os.getpid()}"
            create_topic(proc.bootstrap, topic, partitions)
            with _progress(f"fill {proc.name}", records) as advance:
                filled = produce_bench(
                    proc,
                    topic=topic,
                    records=records,
                    record_size=record_size,
                    acks="1",
                    timeout_s=timeout,
                    progress=advance,
                )
            results.append(
                consume_bench(
                    proc,
                    topic=topic,
                    records=filled.delivered + 1,
                    record_size=record_size,
                    timeout_s=timeout,
                )
            )
    table = Table(title=f"consume: {records:,} × {record_size} B, {partitions} partition(s)")
    for col in ("broker", "records", "records/s", "MB/s", "broker CPU s / M records"):
        table.add_column(col, justify="right")
    for r in results:
        table.add_row(
            r.broker,
            f"{r.records:,}",
            f"{r.records_per_s:,.0f}",
            f"{r.mb_per_s:.1f}",
            f"{r.cpu_s_per_million:.2f}",
        )
    console.print(table)
    _ratio(results)
    console.print(f"machine: {_machine()}")


@bench_app.command("failover")
def bench_failover(
    trials: int = typer.Option(5, min=1, max=100, help="How many controller kills."),
    brokers: int = typer.Option(3, min=3, max=9, help="Cluster-mode broker processes."),
    replication_factor: int = typer.Option(
        2, min=1, help="Of the topic created after each kill (must fit the survivors)."
    ),
    trial_timeout: float = typer.Option(30.0, min=1.0, help="Seconds before a trial gives up."),
    partitions: int = typer.Option(
        0,
        min=0,
        max=100_000,
        help="Also time until every partition of a topic this large (RF 3) is led again.",
    ),
    strategy: str = typer.Option(
        "quorum", help="replication.strategy of the --partitions topic: quorum or isr."
    ),
    launcher: str = typer.Option(
        "", help="Command that runs quorumq for the brokers (default: python -m quorumq)."
    ),
    stop: str = typer.Option(
        "kill",
        help="kill: SIGKILL (a crash); term: SIGTERM (a controlled shutdown moves the "
        "leaderships first).",
    ),
) -> None:
    """SIGKILL (or, --stop term, SIGTERM) the active controller N times: seconds until
    Metadata names a new controller, and until a topic creation succeeds (and, with --partitions, until every partition of a
    large topic is led again); min / median / max."""
    if stop not in ("kill", "term"):
        raise typer.BadParameter("must be kill or term", param_hint="--stop")
    if strategy not in ("quorum", "isr"):
        raise typer.BadParameter("must be quorum or isr", param_hint="--strategy")
    if partitions and brokers < 3:
        raise typer.BadParameter("needs --brokers 3 or more (RF 3)", param_hint="--partitions")

    verb = "killed" if stop == "kill" else "stopped"

    def report(trial) -> None:  # type: ignore[no-untyped-def]
        led = (
            f", all {partitions} partitions led {trial.partitions_led_s:.2f} s"
            f" ({trial.partitions_moved} had to move)"
            if partitions
            else ""
        )
        console.print(
            f"{verb} controller {trial.killed} → {trial.new_controller}: "
            f"elected {trial.elected_s:.2f} s, topic created {trial.topic_created_s:.2f} s{led}"
        )

    out = failover_bench(
        brokers=brokers, trials=trials, replication_factor=replication_factor,
        trial_timeout_s=trial_timeout, partitions=partitions, strategy=strategy,
        launcher=shlex.split(launcher) or None, progress=report, stop=stop,
    )  # fmt: skip
    load = f", a {partitions}-partition {strategy} topic" if partitions else ""
    signal_name = "SIGKILL" if stop == "kill" else "SIGTERM"
    table = Table(title=f"controller failover: {trials} {signal_name}s of the active controller, "
                        f"{brokers} brokers{load}")  # fmt: skip
    for col in ("seconds until", "min", "median", "max", "failed trials"):
        table.add_column(col, justify="right")
    for label, values in (
        ("new controller in Metadata", [t.elected_s for t in out]),
        ("topic created", [t.topic_created_s for t in out]),
        *([(f"all {partitions} partitions led", [t.partitions_led_s for t in out])]
          if partitions else []),
    ):  # fmt: skip
        ok = [v for v in values if v == v]  # nan: not within the trial timeout
        if ok:
            row = [f"{min(ok):.2f}", f"{statistics.median(ok):.2f}", f"{max(ok):.2f}"]
        else:
            row = ["-", "-", "-"]
        table.add_row(label, *row, str(len(values) - len(ok)))
    console.print(table)
    console.print(f"machine: {_machine()}")


@bench_app.command("elections")
def bench_elections(
    trials: int = typer.Option(3, min=1, max=50, help="Trials per setting (off, on)."),
    partitions: int = typer.Option(12, min=3, max=1000, help="Of the quorum topic (RF 3)."),
    rate: int = typer.Option(
        15_000, min=100, max=200_000, help="Records per second during the election."
    ),
    launcher: str = typer.Option(
        "", help="Command that runs quorumq for the brokers (default: python -m quorumq)."
    ),
) -> None:
    """Quorum preferred elections under load, without and with leadership transfer: after a
    failover, one ElectLeaders while a producer writes; how many partitions the preferred
    replica won, how long the election took, and records that failed."""

    def report(trial) -> None:  # type: ignore[no-untyped-def]
        console.print(
            f"transfers {'on ' if trial.transfers else 'off'}: preferred replica won "
            f"{trial.won} of {trial.wanted} in {trial.elapsed_s:.2f} s; "
            f"{trial.acked:,} records acked, {trial.failed} failed"
        )

    out = elections_bench(
        trials=trials, partitions=partitions, rate=rate,
        launcher=shlex.split(launcher) or None, progress=report,
    )  # fmt: skip
    table = Table(
        title=f"preferred elections under load: {trials} trial(s) per setting, a "
        f"{partitions}-partition quorum topic, {rate:,} records/s acks=all"
    )
    for col in ("leadership transfer", "preferred replica won", "election s (median)",
                "election s (max)", "records failed"):  # fmt: skip
        table.add_column(col, justify="right")
    for transfers in (False, True):
        runs = [t for t in out if t.transfers == transfers]
        times = [t.elapsed_s for t in runs]
        table.add_row(
            "on" if transfers else "off (--leader-transfer-timeout-ms 0)",
            f"{sum(t.won for t in runs)} of {sum(t.wanted for t in runs)}",
            f"{statistics.median(times):.2f}",
            f"{max(times):.2f}",
            str(sum(t.failed for t in runs)),
        )
    console.print(table)
    console.print(f"machine: {_machine()}")


def _ratio(results: list) -> None:  # type: ignore[type-arg]
    by = {r.broker: r for r in results}
    if "quorumq" in by and "tansu" in by and by["tansu"].records_per_s:
        q, t = by["quorumq"], by["tansu"]
        console.print(
            f"quorumq / tansu: throughput {q.records_per_s / t.records_per_s:.2f}×, "
            f"broker CPU per record {q.cpu_s_per_million / t.cpu_s_per_million:.2f}×"
        )


@contextlib.contextmanager
def _progress(label: str, total: int, *, rate: int = 0):  # type: ignore[no-untyped-def]
    if rate:
        # A paced run measures latency in this process: a live bar's redraws (a thread taking
        # the GIL ten times a second) delay the delivery callbacks that timestamp records, and
        # raised the p99 at 10,000 records/s from about 7 to 9-11 ms. Say what runs instead.
        console.print(
            f"{label}: {total:,} records at {rate:,}/s, about {total / rate:.0f} s "
            "(no live progress bar: redrawing it would add to the latencies measured)"
        )
        yield lambda done: None
        return
    with Progress(
        "[progress.description]{task.description}", BarColumn(), MofNCompleteColumn(),
        TimeElapsedColumn(), console=console, transient=True,
    ) as progress:  # fmt: skip
        task = progress.add_task(label, total=total)
        yield lambda done: progress.update(task, completed=done)


_ = psutil  # CPU clocks are read in quorumq.bench
