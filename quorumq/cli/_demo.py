"""``quorumq demo``: the main job on an embedded default.

The demo is the short version of ``quorumq compare``: three broker processes on loopback in a
temporary directory, the same workload under ``quorum`` and ``isr`` with acks=all, a follower
paused and a leader killed, and the measured figures side by side. ``--log-only`` instead tours
the partition log engine alone (append, a torn tail, recovery, compaction, retention) in seconds.
"""

from __future__ import annotations

import os
import shutil
import tempfile
from pathlib import Path

import typer
from rich.console import Console
from rich.panel import Panel
from rich.table import Table

from quorumq.cli._app import app
from quorumq.log import LogConfig, PartitionLog
from quorumq.protocol.records import Record, build_batch, decode_batch, iter_batch_headers

_START_MS = 1_700_000_000_000


def _segments_table(log: PartitionLog, title: str) -> Table:
    table = Table(title=title, title_justify="left")
    for column in ("segment file", "bytes", "offsets", "index entries"):
        table.add_column(column, justify="left" if column == "segment file" else "right")
    for segment in log.segments:
        last = f"{segment.base_offset}..{segment.next_offset - 1}" if segment.size else "(empty)"
        table.add_row(segment.path.name, f"{segment.size:,}", last, str(len(segment.index)))
    return table


def _put(log: PartitionLog, first_key: int, count: int, now_ms: int) -> None:
    rows = [
        Record(i, now_ms, f"user-{(first_key + i) % 40}".encode(), f"v{first_key + i}".encode())
        for i in range(count)
    ]
    log.append(build_batch(rows), leader_epoch=1, now_ms=now_ms)


def _decoded(records: bytes) -> list[Record]:
    out: list[Record] = []
    position = 0
    for header in iter_batch_headers(records):
        out += decode_batch(records, position)[1]
        position += header.size
    return out


def log_tour(console: Console, directory: Path) -> None:
    """Walks through the log engine's features, printing what happens."""
    config = LogConfig(segment_bytes=8 * 1024, index_interval_bytes=512, retention_ms=-1)
    path = directory / "orders-0"
    now = _START_MS
    console.rule("[bold]1. append")
    log = PartitionLog.open(path, config, now_ms=now)
    for n in range(60):
        _put(log, n * 20, 20, now + n * 1000)
    console.print(
        f"60 produce requests of 20 records -> offsets 0..{log.log_end_offset - 1}; "
        f"segments roll at segment.bytes={config.segment_bytes:,}"
    )
    console.print(_segments_table(log, f"{path.name}: log start 0, LEO {log.log_end_offset}"))

    console.rule("[bold]2. read")
    result = log.read(777, 1500)
    ranges = [(h.base_offset, h.last_offset) for h in iter_batch_headers(result.records)]
    console.print(
        f"read(fetch_offset=777, max_bytes=1500) -> {len(result.records)} bytes of whole batches "
        f"{ranges} (one os.pread, no per-record work)"
    )
    found = log.offset_for_timestamp(now + 30_500)
    console.print(f"offset_for_timestamp(t0 + 30.5 s) -> {found}")

    console.rule("[bold]3. crash with a torn write, then recovery")
    _put(log, 5000, 20, now + 61_000)
    leo_before = log.log_end_offset
    active = log.active_segment.path
    log.close(clean=False)  # the process dies: no flush, no clean-shutdown marker
    size = active.stat().st_size
    os.truncate(active, size - 37)  # the last batch was half written...
    with open(active, "ab") as f:
        f.write(b"\x00garbage from a dying disk")  # ...followed by junk
    console.print(f"LEO was {leo_before}; cut the last 37 bytes of {active.name} and appended junk")
    log = PartitionLog.open(path, config, now_ms=now + 62_000)
    console.print(
        f"reopen: full CRC scan of the active segment cut "
        f"[bold]{log.recovered_bytes_truncated}[/] bytes; LEO is now {log.log_end_offset} "
        f"(the torn batch is gone, everything before it is intact)"
    )
    info = log.append(build_batch([(b"user-1", b"after the crash")]), leader_epoch=2, now_ms=now)
    console.print(f"appends continue at offset {info.first_offset}")
    log.close()

    console.rule("[bold]4. compaction (cleanup.policy=compact)")
    compacting = LogConfig(
        segment_bytes=config.segment_bytes,
        index_interval_bytes=512,
        cleanup_policy=frozenset({"compact"}),
    )
    log = PartitionLog.open(path, compacting, now_ms=now + 63_000)
    before = log.size_bytes()
    result_c = log.compact(now_ms=now + 63_000)
    console.print(
        f"{result_c.segments_cleaned} closed segments rewritten: "
        f"{result_c.records_before:,} -> {result_c.records_after:,} records, "
        f"{before:,} -> {log.size_bytes():,} bytes; offsets unchanged, the active segment "
        f"untouched"
    )
    first = next(s for s in log.segments if s.size)
    kept = _decoded(first.read(0, first.size))
    sample = ", ".join(f"{r.offset}:{r.key!r}={r.value!r}" for r in kept[:3])
    console.print(
        f"{first.path.name} now holds the latest value of each of {len(kept)} keys "
        f"({sample}, ...); emptied segments are gone, the first one stays (log start)"
    )
    console.print(_segments_table(log, "after compaction"))
    log.close()

    console.rule("[bold]5. retention (cleanup.policy=delete, retention.bytes=16 KiB)")
    deleting = LogConfig(
        segment_bytes=config.segment_bytes, retention_bytes=16 * 1024, retention_ms=-1
    )
    log = PartitionLog.open(path, deleting, now_ms=now + 64_000)
    for n in range(40):
        _put(log, 10_000 + n * 20, 20, now + 64_000 + n)
    deleted = log.delete_old_segments(now_ms=now + 65_000)
    console.print(
        f"{deleted} oldest segments deleted; log start offset advanced to "
        f"{log.log_start_offset} (LEO {log.log_end_offset})"
    )
    console.print(_segments_table(log, "after retention"))
    log.close()


@app.command()
def demo(
    log_only: bool = typer.Option(
        False, "--log-only", help="Only tour the partition log engine (seconds, no brokers)."
    ),
) -> None:
    """The main job: a 3-broker cluster, both replication modes, a leader killed, side by side."""
    console = Console()
    if log_only:
        _log_demo(console)
        raise typer.Exit(0)
    # Imported here: the compare runner pulls in the client and matplotlib, which the log tour
    # does not need.
    from quorumq.cli._compare import print_report
    from quorumq.compare import CompareOptions, run_compare

    console.print(
        Panel.fit(
            "quorumq demo: a 3-broker cluster on 127.0.0.1 in a temporary directory.\n"
            "The same acks=all workload runs under both replication modes: steady, with a\n"
            "follower paused (SIGSTOP), and with the partition leader killed (SIGKILL).\n"
            "Every figure below is measured in this run. The full matrix: quorumq compare.",
            title="quorumq",
        )
    )
    report = run_compare(
        CompareOptions.for_demo(), progress=lambda message: console.print(f"[dim]{message}[/dim]")
    )
    print_report(report, console)
    console.print("[green]done[/]: the brokers are stopped and their data removed.")


def _log_demo(console: Console) -> None:
    directory = Path(tempfile.mkdtemp(prefix="quorumq-demo-"))
    try:
        console.print(
            Panel.fit(
                f"quorumq demo: the partition log engine, in a temporary directory\n{directory}",
                title="quorumq",
            )
        )
        log_tour(console, directory)
    finally:
        shutil.rmtree(directory, ignore_errors=True)
    console.print("[green]done[/]: every step above ran against real files, then was removed.")
