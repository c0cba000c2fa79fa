"""``quorumq compare``: quorum vs isr under acks 0/1/all and real faults, side by side."""

from __future__ import annotations

import math
import time
from pathlib import Path
from typing import Any

import typer
from rich.console import Console
from rich.table import Table

from quorumq.cli._app import app
from quorumq.compare import ACKS, SCENARIOS, STRATEGIES, CompareOptions, CompareReport
from quorumq.compare import run_compare as _run_compare

console = Console()


def _fmt(value: Any, digits: int = 1) -> str:
    if value is None:
        return "-"
    if isinstance(value, float):
        if math.isnan(value):
            return "-"
        return f"{value:,.{digits}f}"
    if isinstance(value, int):
        return f"{value:,}"
    return str(value)


def _cell(figures: dict[str, Any], keys: list[tuple[str, str, int]]) -> str:
    if "skipped" in figures:
        return f"[dim]n/a: {figures['skipped']}[/dim]"
    return "\n".join(f"{label} {_fmt(figures.get(key), d)}" for label, key, d in keys
                     if key in figures)  # fmt: skip


def report_table(report: CompareReport) -> Table:
    """One row per (strategy, acks); one column per scenario, its headline figures inside."""
    env = report.environment
    table = Table(
        title=f"quorumq compare: replication factor {env.get('replication_factor', '?')}, "
        f"{report.options.get('record_size')} B records ({env.get('machine', '')})",
        title_justify="left",
        show_lines=True,
    )
    table.add_column("strategy", style="bold")
    table.add_column("acks")
    columns = {
        "steady": ("steady state", [("rec/s", "records_per_s", 0), ("p50 ms", "p50_ms", 2),
                                    ("p99 ms", "p99_ms", 2), ("max ms", "max_ms", 1)]),
        "stall": ("follower paused (SIGSTOP)", [
            ("stall s", "stall_s", 1), ("acks/s before", "acks_per_s_before", 0),
            ("acks/s during", "acks_per_s_during", 0), ("p99 ms during", "p99_ms_during", 1),
            ("max ms during", "max_ms_during", 1), ("longest ack gap s", "longest_ack_gap_s", 2)]),
        "kill": ("leader SIGKILLed", [
            ("acked", "acknowledged", 0), ("[bold]lost[/bold]", "lost", 0),
            ("duplicates", "duplicates", 0), ("offsets reused", "offsets_reused", 0),
            ("s no leader", "seconds_without_leader", 2), ("longest ack gap s",
                                                            "longest_ack_gap_s", 2)]),
        "partition": ("leader partitioned away", [
            ("cut s", "cut_s", 1), ("acked", "acknowledged", 0), ("[bold]lost[/bold]", "lost", 0),
            ("duplicates", "duplicates", 0), ("new leader s", "new_leader_s", 2),
            ("longest ack gap s", "longest_ack_gap_s", 2)]),
        "bridge": ("leader cut from one follower", [
            ("cut s", "cut_s", 1), ("acks/s during", "acks_per_s_during", 0),
            ("max ms during", "max_ms_during", 0), ("longest ack gap s", "longest_ack_gap_s", 2),
            ("[bold]lost[/bold]", "lost", 0)]),
        "unclean": ("isr unclean election", [
            ("ISR shrink s", "isr_shrink_s", 1), ("acked alone", "acked_alone", 0),
            ("refused", "refused_or_failed", 0), ("[bold]lost[/bold]", "lost", 0),
            ("election s", "unclean_election_s", 1)]),
    }  # fmt: skip
    scenarios = [s for s in SCENARIOS if s in report.options.get("scenarios", SCENARIOS)]
    for scenario in scenarios:
        table.add_column(columns[scenario][0])
    for row in report.rows:
        cells = [_cell(row.scenarios.get(s, {"skipped": "not run"}), columns[s][1])
                 for s in scenarios]  # fmt: skip
        table.add_row(row.strategy, row.acks, *cells)
    return table


def print_report(report: CompareReport, console: Console = console) -> None:
    console.print(report_table(report))
    for row in report.rows:
        console.print(row.explanation)
    for note in report.notes:
        console.print(f"[yellow]note:[/yellow] {note}")


def _split(items: list[str]) -> tuple[str, ...]:
    """``--broker-arg "--x 1"`` and ``--broker-arg --x --broker-arg 1`` mean the same."""
    return tuple(arg for item in items for arg in item.split())


@app.command("compare")
def compare(
    brokers: int = typer.Option(3, "--brokers", min=1, max=9, help="Brokers in the cluster."),
    records: int = typer.Option(
        100_000,
        "--records",
        min=10,
        max=10_000_000,
        help="Records in the steady-state run of each row.",
    ),
    record_size: int = typer.Option(100, "--record-size", min=16, max=1_000_000),
    out: Path | None = typer.Option(None, "--out", help="Directory for compare.json and .png."),
    bootstrap: str | None = typer.Option(
        None, "--bootstrap", help="Use a running cluster (steady state only: no faults)."
    ),
    strategy: list[str] = typer.Option(list(STRATEGIES), "--strategy", help="quorum, isr"),
    acks: list[str] = typer.Option(list(ACKS), "--acks", help="0, 1, all"),
    scenario: list[str] = typer.Option(
        list(SCENARIOS), "--scenario", help="steady, stall, kill, partition, bridge, unclean"
    ),
    rate: float = typer.Option(2_000.0, "--rate", min=10, help="Paced records/s under faults."),
    stall_s: float = typer.Option(5.0, "--stall", min=0.5, max=120, help="Seconds paused."),
    short: bool = typer.Option(False, "--short", help="The demo's version (< 1 min)."),
    data_dir: Path | None = typer.Option(
        None, "--data-dir", help="Keep the embedded cluster's data and logs here (default: temp)."
    ),
    broker_arg: list[str] = typer.Option(
        [], "--broker-arg", help="Extra `quorumq broker` option for every broker (repeatable)."
    ),
) -> None:
    """Run both replication strategies under acks 0/1/all through the same faults."""  # fmt: skip
    for name, given, allowed in (("--strategy", strategy, STRATEGIES), ("--acks", acks, ACKS),
                                 ("--scenario", scenario, SCENARIOS)):  # fmt: skip
        bad = [g for g in given if g not in allowed]
        if bad:
            raise typer.BadParameter(f"{name}: {bad} not in {list(allowed)}")
    if short:
        options = CompareOptions.for_demo(brokers=brokers, bootstrap=bootstrap,
                                          record_size=record_size,
                                          broker_args=_split(broker_arg),
                                          data_dir=data_dir)  # fmt: skip
    else:
        options = CompareOptions(
            brokers=brokers, records=records, record_size=record_size, bootstrap=bootstrap,
            strategies=tuple(strategy), acks=tuple(acks),
            scenarios=tuple(s for s in SCENARIOS if s in scenario), paced_rate=rate,
            stall_s=stall_s, broker_args=_split(broker_arg), data_dir=data_dir,
        )  # fmt: skip
    started = time.monotonic()

    def progress(message: str) -> None:
        console.print(f"[dim]{time.monotonic() - started:6.1f} s[/dim] {message}")

    report = _run_compare(options, out=out, progress=progress)
    print_report(report)
    if out is not None:
        console.print(f"wrote {out / 'compare.json'} and {out / 'compare.png'}")
