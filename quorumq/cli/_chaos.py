"""``quorumq chaos``: a seeded sequence of kills, pauses and network cuts under load while a
consumer tails, then the verdicts of the history and read checkers."""

from __future__ import annotations

import statistics
import time
from pathlib import Path

import typer
from rich.console import Console
from rich.table import Table

from quorumq.chaos._soak import NEMESES, SoakOptions, SoakResult, run_soak
from quorumq.cli._app import app

console = Console()


def result_table(result: SoakResult) -> Table:
    """The run's figures, one per row (what people compare across seeds and strategies)."""
    o = result.options
    h = result.history
    table = Table(
        title=f"quorumq chaos: {o.strategy}, acks={o.acks}, seed {o.seed}, "
        f"{len(result.faults)} faults in {o.duration_s:.0f} s",
        title_justify="left",
    )
    table.add_column("")
    table.add_column("records", justify="right")
    table.add_column("promise", justify="left")
    acks = "acks=all: none" if result.promised else "none at this acks"
    g = result.group
    rows = [
        ("attempted", f"{result.attempted:,}", ""),
        ("acknowledged", f"{result.acked:,}", ""),
        ("read back", f"{h.read_back:,}", ""),
        ("acknowledged, then lost", f"{len(h.lost):,}", acks),
        ("offsets reused", f"{len(h.offsets_reused):,}", acks),
        ("duplicates", f"{h.duplicate_count:,}", "allowed (no idempotence)"),
        ("unacknowledged, present", f"{len(h.unacknowledged_present):,}", "allowed"),
        ("read live by a tailing consumer", f"{result.reads.seen:,}", ""),
        ("dirty reads (read, then gone)", f"{len(result.reads.dirty):,}", "none, at any acks"),
    ]
    if g is not None:
        rows += [
            (f"consumer group: {g.members} members, {g.rejoins} rejoins", f"{g.consumed:,}", ""),
            ("  never received by the group", f"{g.missing:,}", "none (at least once)"),
            ("  dirty reads in the group", f"{g.dirty:,}", "none"),
        ]
    for row in rows:
        table.add_row(*row)
    if not result.promise_kept:
        verdict = "[bold red]BROKEN[/bold red]"
    elif not result.promised:
        verdict = "reads [green]kept[/green]; acks: [yellow]no promise[/yellow] (acks=all needed)"
    else:
        verdict = "[green]kept[/green]"
    table.add_row("verdict", "", verdict)
    return table


def side_by_side(results: list[SoakResult]) -> Table:
    """The strategies through the same schedule: per kind of fault, what it cost in
    availability (the longest ack gap of one partition: median and worst over the faults of
    that kind), then what each lost. The victims were resolved per run, so they may differ."""
    table = Table(
        title=f"side by side: seed {results[0].options.seed}, acks={results[0].options.acks}",
        title_justify="left",
    )
    table.add_column("")
    for result in results:
        table.add_column(result.options.strategy, justify="right")
    kinds = list(dict.fromkeys(f.kind for f in results[0].faults))
    for kind in kinds:
        cells = []
        for result in results:
            gaps = sorted(g for f, g in zip(result.faults, result.gaps_s, strict=False)
                          if f.kind == kind)  # fmt: skip
            cells.append("n/a" if not gaps else f"{statistics.median(gaps):.2f} / {gaps[-1]:.2f}")
        count = sum(f.kind == kind for f in results[0].faults)
        table.add_row(f"{kind} ({count}×): ack gap s, median / max", *cells)
    table.add_row("acknowledged", *(f"{r.acked:,}" for r in results))
    table.add_row("acknowledged, then lost", *(f"{len(r.history.lost):,}" for r in results))
    table.add_row(
        "dirty reads", *(f"{len(r.reads.dirty) + (r.group.dirty if r.group else 0):,}"
                         for r in results),
    )  # fmt: skip
    table.add_row(
        "never received by the group",
        *("n/a" if r.group is None else f"{r.group.missing:,}" for r in results),
    )
    table.add_row(
        "verdict",
        *("[green]kept[/green]" if r.promise_kept else "[bold red]BROKEN[/bold red]"
          for r in results),
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
    strategy: list[str] = typer.Option(
        ["quorum"],
        "--strategy",
        help="quorum, isr (repeatable: each runs the same schedule, then a side-by-side table).",
    ),
    acks: str = typer.Option("all", "--acks", help="0, 1 or all (only all promises its acks)."),
    duration: float = typer.Option(60.0, "--duration", min=5, max=3600, help="Seconds of load."),
    seed: int = typer.Option(1, "--seed", help="Draws the fault schedule (replays exactly)."),
    nemesis: list[str] = typer.Option(
        list(NEMESES),
        "--nemesis",
        help="kill, pause, partition, one-way, bridge, client (repeatable; the last four: root).",
    ),
    rate: float = typer.Option(1_000.0, "--rate", min=10, max=100_000, help="Records/s."),
    partitions: int = typer.Option(3, "--partitions", min=1, max=64),
    group_members: int = typer.Option(
        2,
        "--group-members",
        min=0,
        max=16,
        help="Members of a consumer group that must read every record (0: none).",
    ),
    data_dir: Path | None = typer.Option(
        None, "--data-dir", help="Keep the cluster's data and broker logs here (default: temp)."
    ),
) -> None:
    """Kill, pause and cut off brokers one after another under load while a consumer tails,
    then check every acknowledged and every consumed record. Exits 1 if acks=all lost or
    overwrote one, or if the consumer saw a record the log no longer holds."""
    bad_strategies = [s for s in strategy if s not in ("quorum", "isr")]
    if bad_strategies or not strategy:
        raise typer.BadParameter(
            f"--strategy: {bad_strategies or strategy} not in ['quorum', 'isr']"
        )
    strategies = list(dict.fromkeys(strategy))
    if acks not in ("0", "1", "all"):
        raise typer.BadParameter(f"--acks: {acks!r} not in ['0', '1', 'all']")
    bad = [n for n in nemesis if n not in NEMESES]
    if bad or not nemesis:
        raise typer.BadParameter(f"--nemesis: {bad or nemesis} not in {list(NEMESES)}")
    if "client" in nemesis and group_members < 1:
        raise typer.BadParameter("--group-members: the client nemesis cuts members off, 1 or more")
    started = time.monotonic()

    def progress(message: str) -> None:
        console.print(f"[dim]{time.monotonic() - started:6.1f} s[/dim] {message}")

    results = []
    for name in strategies:
        options = SoakOptions(
            strategy=name, acks=acks, duration_s=duration, seed=seed,
            nemeses=tuple(n for n in NEMESES if n in nemesis), rate=rate,
            partitions=partitions, group_members=group_members,
            data_dir=None if data_dir is None or len(strategies) == 1 else data_dir / name,
        )  # fmt: skip
        if len(strategies) > 1:
            progress(f"[bold]{name}[/bold]")
        result = run_soak(options, progress)
        console.print(faults_table(result))
        console.print(result_table(result))
        results.append(result)
    if len(results) > 1:
        console.print(side_by_side(results))
    broken = [r for r in results if not r.promise_kept]
    for result in broken:
        lost = len(result.history.lost) if result.promised else 0
        reused = len(result.history.offsets_reused) if result.promised else 0
        dirty = len(result.reads.dirty) + (result.group.dirty if result.group else 0)
        missed = result.group.missing if result.group else 0
        console.print(
            f"[bold red]{result.options.strategy}: promise broken:[/bold red] {lost} "
            f"acknowledged records lost, {reused} offsets reused, {dirty} dirty reads (records "
            f"a consumer saw that the log no longer holds), {missed} records the consumer "
            "group never received"
        )
    if broken:
        raise typer.Exit(1)
