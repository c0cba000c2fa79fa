"""``quorumq bench produce`` / ``bench consume``: a broker driven by librdkafka."""

from __future__ import annotations

import contextlib
import os
import platform
from collections.abc import Iterator
from enum import StrEnum

import psutil
import typer
from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TimeElapsedColumn
from rich.table import Table

from quorumq.bench import (
    BrokerProcess,
    ConsumeResult,
    ProduceResult,
    consume_bench,
    produce_bench,
    start_quorumq_broker,
    start_tansu_broker,
)
from quorumq.bench._kafka import create_topic
from quorumq.cli._app import bench_app

console = Console()


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


def _targets(target: Target, bootstrap: str | None, pid: int | None):  # type: ignore[no-untyped-def]
    if bootstrap:
        return [lambda: _external(bootstrap, pid)]
    out = []
    if target in (Target.quorumq, Target.both):
        out.append(start_quorumq_broker)
    if target in (Target.tansu, Target.both):
        out.append(start_tansu_broker)
    return out


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
) -> None:
    """Produce with confluent-kafka (librdkafka); print records/s, MB/s, latency, broker CPU."""
    if acks not in ("0", "1", "all", "-1"):
        raise typer.BadParameter("--acks must be 0, 1 or all")
    results: list[ProduceResult] = []
    for start in _targets(broker, bootstrap or None, broker_pid or None):
        with start() as proc:
            topic = f"bench-{os.getpid()}"
            create_topic(proc.bootstrap, topic, partitions)
            with _progress(f"produce → {proc.name}", records) as advance:
                results.append(
                    produce_bench(
                        proc,
                        topic=topic,
                        records=records,
                        record_size=record_size,
                        acks=acks,
                        rate=rate or None,
                        timeout_s=timeout,
                        progress=advance,
                    )
                )
    table = Table(
        title=f"produce: {records:,} × {record_size} B, acks={acks}, {partitions} partition(s)"
    )
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
    _ratio(results)
    console.print(f"machine: {_machine()}")


@bench_app.command("consume")
def bench_consume(
    records: int = typer.Option(1_000_000, min=1, max=100_000_000),
    record_size: int = typer.Option(100, min=1, max=1_000_000),
    partitions: int = typer.Option(1, min=1, max=1000),
    broker: Target = typer.Option(Target.quorumq),
    timeout: float = typer.Option(300.0, min=1.0),
) -> None:
    """Fill a topic, then read it back with confluent-kafka; print records/s, MB/s, broker CPU."""
    results: list[ConsumeResult] = []
    for start in _targets(broker, None, None):
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


def _ratio(results: list) -> None:  # type: ignore[type-arg]
    by = {r.broker: r for r in results}
    if "quorumq" in by and "tansu" in by and by["tansu"].records_per_s:
        q, t = by["quorumq"], by["tansu"]
        console.print(
            f"quorumq / tansu: throughput {q.records_per_s / t.records_per_s:.2f}×, "
            f"broker CPU per record {q.cpu_s_per_million / t.cpu_s_per_million:.2f}×"
        )


@contextlib.contextmanager
def _progress(label: str, total: int):  # type: ignore[no-untyped-def]
    with Progress(
        "[progress.description]{task.description}", BarColumn(), MofNCompleteColumn(),
        TimeElapsedColumn(), console=console, transient=True,
    ) as progress:  # fmt: skip
        task = progress.add_task(label, total=total)
        yield lambda done: progress.update(task, completed=done)


_ = psutil  # CPU clocks are read in quorumq.bench
