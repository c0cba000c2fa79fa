"""``quorumq chaos``: a seeded sequence of kills, pauses and partitions under load, then the
verdict of the history checker."""

from __future__ import annotations

import time
from pathlib import Path

import typer
from rich.console import Console
from rich.table import Table

from quorumq.chaos._soak import NEMESES, SoakOptions, SoakResult, run_soak
from quorumq.cli._app import app

console = Console()


def result_table(result: SoakResult) -> Table:
    """The run's figures in one table (what people compare across seeds and strategies)."""
    o = result.options
    h = result.history
    table = Table(
        title=f"quorumq chaos: {o.strategy}, acks={o.acks}, seed {o.seed}, "
        f"{len(result.faults)} faults in {o.duration_s:.0f} s",
        title_justify="left",
    )
    for column in ("attempted", "acknowledged", "read back", "lost", "offsets reused",
                   "duplicates", "unacked present", "verdict"):  # fmt: skip
        table.add_column(column, justify="right")
    if not result.promised:
        verdict = "[yellow]no promise[/yellow] (acks=all needed)"
    elif result.promise_kept:
        verdict = "[green]kept[/green]"
    else:
        verdict = "[bold red]BROKEN[/bold red]"
    table.add_row(
        f"{result.attempted:,}", f"{result.acked:,}", f"{h.read_back:,}", f"{len(h.lost):,}",
        f"{len(h.offsets_reused):,}", f"{h.duplicate_count:,}",
        f"{len(h.unacknowledged_present):,}",
        verdict,
    )  # fmt: skip
    return table


def faults_table(result: SoakResult) -> Table:
    """Each fault as it ran (its victim was chosen when it started) and what it cost in
    availability: the longest time one partition went without an acknowledgement, until the
    next fault."""
    table = Table(title="faults", title_justify="left")
    for column, justify in (("at s", "right"), ("fault", "left"), ("longest ack gap s", "right")):
        table.add_column(column, justify=justify)  # type: ignore[arg-type]
    starts = result.events[::2]  # one fault at a time: start, end, start, end...
    for event, gap in zip(starts, result.gaps_s, strict=False):
        table.add_row(f"{event.at_s:.1f}", event.what, f"{gap:.2f}")
    return table


@app.command("chaos")
def chaos(
    strategy: str = typer.Option("quorum", "--strategy", help="quorum or isr."),
    acks: str = typer.Option("all", "--acks", help="0, 1 or all (only all carries a promise)."),
    duration: float = typer.Option(60.0, "--duration", min=5, max=3600, help="Seconds of load."),
    seed: int = typer.Option(1, "--seed", help="Draws the fault schedule (replays exactly)."),
    nemesis: list[str] = typer.Option(
        list(NEMESES),
        "--nemesis",
        help="kill, pause, partition, one-way, bridge (repeatable; the last three: root).",
    ),
    rate: float = typer.Option(1_000.0, "--rate", min=10, max=100_000, help="Records/s."),
    partitions: int = typer.Option(3, "--partitions", min=1, max=64),
    data_dir: Path | None = typer.Option(
        None, "--data-dir", help="Keep the cluster's data and broker logs here (default: temp)."
    ),
) -> None:
    """Kill, pause and partition brokers one after another under load, then check every
    acknowledged record. Exits 1 if acks=all lost or overwrote one."""
    if strategy not in ("quorum", "isr"):
        raise typer.BadParameter(f"--strategy: {strategy!r} not in ['quorum', 'isr']")
    if acks not in ("0", "1", "all"):
        raise typer.BadParameter(f"--acks: {acks!r} not in ['0', '1', 'all']")
    bad = [n for n in nemesis if n not in NEMESES]
    if bad or not nemesis:
        raise typer.BadParameter(f"--nemesis: {bad or nemesis} not in {list(NEMESES)}")
    options = SoakOptions(
        strategy=strategy, acks=acks, duration_s=duration, seed=seed,
        nemeses=tuple(n for n in NEMESES if n in nemesis), rate=rate, partitions=partitions,
        data_dir=data_dir,
    )  # fmt: skip
    started = time.monotonic()

    def progress(message: str) -> None:
        console.print(f"[dim]{time.monotonic() - started:6.1f} s[/dim] {message}")

    result = run_soak(options, progress)
    console.print(faults_table(result))
    console.print(result_table(result))
    if not result.promise_kept:
        console.print(
            f"[bold red]acks=all promise broken:[/bold red] {len(result.history.lost)} "
            f"acknowledged records lost, {len(result.history.offsets_reused)} offsets reused"
        )
        raise typer.Exit(1)
