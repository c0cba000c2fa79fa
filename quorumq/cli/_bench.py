"""``quorumq bench ...`` commands."""

from __future__ import annotations

import os
import platform
import shutil
import struct
import tempfile
import time
from pathlib import Path
from typing import Annotated

import attrs
import typer
from rich.console import Console
from rich.table import Table

from quorumq.cli._app import bench_app
from quorumq.log import LogConfig, PartitionLog
from quorumq.protocol.records import build_batch

_OFFSET_LENGTH_DELTA = struct.Struct(">qi11xi")  # baseOffset, batchLength, lastOffsetDelta


@attrs.frozen
class BenchRow:
    """One measured phase."""

    name: str
    records: int
    size_bytes: int
    seconds: float
    cpu_seconds: float  # this process's CPU time (user + system): contention does not count

    @property
    def records_per_s(self) -> float:
        return self.records / self.seconds if self.seconds > 0 else float("inf")

    @property
    def mb_per_s(self) -> float:
        return self.size_bytes / 1e6 / self.seconds if self.seconds > 0 else float("inf")


def machine_info() -> str:
    """CPU model, cores and Python version, as docs/benchmarks.md records them."""
    model = platform.processor() or "unknown CPU"
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("model name"):
                    model = line.split(":", 1)[1].strip()
                    break
    except OSError:
        pass
    return f"{model}, {os.cpu_count()} cores, Python {platform.python_version()}"


def _producer_batch(batch_bytes: int, record_size: int) -> tuple[bytes, int]:
    """A client-style batch of ``record_size``-byte values no larger than ``batch_bytes``."""
    value = bytes(range(256)) * (record_size // 256 + 1)
    value = value[:record_size]
    count = max(1, (batch_bytes - 61) // (record_size + 8))
    while True:
        data = build_batch([(None, value)] * count, timestamp=1_700_000_000_000)
        if len(data) <= batch_bytes or count == 1:
            return data, count
        count -= 1


def _append_phase(
    name: str, directory: Path, batch: bytes, per_batch: int, batches: int, fsync_bytes: int
) -> tuple[BenchRow, PartitionLog]:
    log = PartitionLog.open(directory, LogConfig(), now_ms=0)
    append = log.append
    since_flush = 0
    cpu_start = time.process_time()
    start = time.perf_counter()
    for _ in range(batches):
        append(batch, leader_epoch=1, now_ms=0)
        if fsync_bytes:
            since_flush += len(batch)
            if since_flush >= fsync_bytes:
                log.flush()
                since_flush = 0
    if fsync_bytes:
        log.flush()
    elapsed = time.perf_counter() - start
    cpu = time.process_time() - cpu_start
    return BenchRow(name, batches * per_batch, batches * len(batch), elapsed, cpu), log


def _read_phase(log: PartitionLog, fetch_bytes: int) -> BenchRow:
    """Reads the whole log front to back like a consumer: fetch, find the next offset, repeat."""
    unpack = _OFFSET_LENGTH_DELTA.unpack_from
    read = log.read
    offset = log.log_start_offset
    end = log.log_end_offset
    total = 0
    cpu_start = time.process_time()
    start = time.perf_counter()
    while offset < end:
        data = read(offset, fetch_bytes).records
        total += len(data)
        # The next fetch offset: walk the batch headers (12 + 4 bytes each), as a client does.
        position = 0
        size = len(data)
        while position < size:
            base, length, delta = unpack(data, position)
            position += 12 + length
        offset = base + delta + 1
    elapsed = time.perf_counter() - start
    cpu = time.process_time() - cpu_start
    return BenchRow("sequential read", end - log.log_start_offset, total, elapsed, cpu)


def run_log_bench(
    *,
    records: int,
    batch_bytes: int,
    record_size: int,
    fetch_bytes: int,
    directory: Path,
    warmup: bool = True,
) -> list[BenchRow]:
    """Runs the three log phases in ``directory`` (emptied between phases)."""
    batch, per_batch = _producer_batch(batch_bytes, record_size)
    batches = max(1, records // per_batch)
    rows = []
    if warmup:
        # One untimed pass, deleted at once: the timed pass then writes into page-cache memory
        # the kernel has handed out before (on a VM, first-touch of guest memory is slow and
        # would measure the hypervisor, not the log).
        _row, log = _append_phase(
            "warm-up", directory / "bench-warmup-0", batch, per_batch, batches, 0
        )
        log.delete()
    plain = directory / "bench-nofsync-0"
    row, log = _append_phase("append (no fsync)", plain, batch, per_batch, batches, 0)
    rows.append(row)
    rows.append(_read_phase(log, fetch_bytes))
    log.delete()
    synced = directory / "bench-fsync-0"
    row, log = _append_phase("append (fsync/1 MiB)", synced, batch, per_batch, batches, 1 << 20)
    rows.insert(1, row)
    log.delete()
    return rows


@bench_app.command("log")
def bench_log(
    records: Annotated[int, typer.Option(help="Records to append per phase.")] = 1_000_000,
    batch_bytes: Annotated[int, typer.Option(help="Bytes per RecordBatch.")] = 16384,
    record_size: Annotated[int, typer.Option(help="Value bytes per record.")] = 100,
    fetch_bytes: Annotated[int, typer.Option(help="max_bytes of each read.")] = 1 << 20,
    warmup: Annotated[
        bool, typer.Option(help="Run one untimed append pass first (page-cache warm-up).")
    ] = True,
    dir: Annotated[
        Path | None, typer.Option(help="Where to write the logs (default: a temp dir).")
    ] = None,
) -> None:
    """Appends and reads back a partition log; prints records/s and MB/s per phase."""
    console = Console()
    base = Path(tempfile.mkdtemp(prefix="quorumq-bench-", dir=dir))
    try:
        console.print(f"[bold]quorumq bench log[/]  {machine_info()}")
        rows = run_log_bench(
            records=records,
            batch_bytes=batch_bytes,
            record_size=record_size,
            fetch_bytes=fetch_bytes,
            directory=base,
            warmup=warmup,
        )
    finally:
        shutil.rmtree(base, ignore_errors=True)
    title = (
        f"{records:,} records of {record_size} B in {batch_bytes:,} B batches, "
        f"{rows[0].size_bytes / 1e6:,.1f} MB per phase"
    )
    table = Table(title=title + (" (after a warm-up pass)" if warmup else ""))
    for column in ("phase", "records", "seconds", "CPU s", "records/s", "MB/s"):
        table.add_column(
            column, justify="left" if column == "phase" else "right", no_wrap=column == "phase"
        )
    for row in rows:
        table.add_row(
            row.name,
            f"{row.records:,}",
            f"{row.seconds:.3f}",
            f"{row.cpu_seconds:.3f}",
            f"{row.records_per_s / 1e6:,.2f} M",
            f"{row.mb_per_s:,.0f}",
        )
    console.print(table)
