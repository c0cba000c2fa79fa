"""``quorumq produce`` and ``quorumq consume``: quorumq from a shell, like kcat.

``produce`` reads lines from stdin (``KEY<sep>VALUE`` with ``--key-separator``), partitions them
as Kafka's default partitioner does (murmur2 of the key; round-robin without one), and sends one
RecordBatch per partition per chunk of lines. ``consume`` fetches from every partition and prints
one record per line, until ``--max-messages`` or Ctrl-C.
"""

from __future__ import annotations

import sys
import time
from typing import Any, BinaryIO

import trio
import typer

from quorumq import protocol as p
from quorumq.cli._app import app
from quorumq.cli._broker import run_trio
from quorumq.cli._topic import (
    BOOTSTRAP_HELP,
    DEFAULT_BOOTSTRAP,
    connect,
    fetch_metadata,
    raise_for_code,
)
from quorumq.client._connection import Connection
from quorumq.client._partitioner import partition_for_key
from quorumq.protocol.records import (
    HEADER_SIZE,
    Compression,
    build_batch,
    decode_batch,
    parse_batch_header,
    peek_offset_and_length,
)

_CHUNK_LINES = 1000
_COMPRESSIONS = {c.name.lower(): c for c in Compression}


async def _partition_count(conn: Connection, topic: str, auto_create: bool) -> int:
    metadata: Any = await fetch_metadata(conn, [topic], auto_create=auto_create)
    info = metadata.topics[0]
    raise_for_code(info.error_code, f"topic {topic!r}")
    return len(info.partitions)


def _read_lines(stream: BinaryIO, count: int) -> list[bytes]:
    lines = []
    for _ in range(count):
        line = stream.readline()
        if not line:
            break
        lines.append(line)
    return lines


@app.command("produce")
def produce(
    topic: str,
    bootstrap: str = typer.Option(DEFAULT_BOOTSTRAP, "--bootstrap", "-b", help=BOOTSTRAP_HELP),
    key_separator: str | None = typer.Option(
        None, "--key-separator", "-K", help="Split each line into KEY<sep>VALUE."
    ),
    partition: int | None = typer.Option(None, "--partition", "-p", help="Send all here."),
    acks: int = typer.Option(-1, "--acks", help="0, 1 or -1 (all)."),
    compression: str = typer.Option("none", "--compression", help="none, gzip, snappy, lz4, zstd"),
) -> None:
    """Send each line of stdin as one record."""
    codec = _COMPRESSIONS.get(compression.lower())
    if codec is None:
        raise typer.BadParameter(f"--compression must be one of {', '.join(_COMPRESSIONS)}")
    separator = key_separator.encode() if key_separator else None
    stdin = sys.stdin.buffer

    async def main() -> int:
        sent = 0
        round_robin = 0
        async with connect(bootstrap) as conn:
            partitions = await _partition_count(conn, topic, auto_create=True)
            version = conn.version_for(p.ApiKey.PRODUCE, (3, 8))
            while lines := await trio.to_thread.run_sync(_read_lines, stdin, _CHUNK_LINES):
                by_partition: dict[int, list[tuple[bytes | None, bytes]]] = {}
                for raw in lines:
                    line = raw.rstrip(b"\r\n")
                    key: bytes | None = None
                    if separator is not None and separator in line:
                        key, line = line.split(separator, 1)
                    if partition is not None:
                        target = partition
                    elif key is not None:
                        target = partition_for_key(key, partitions)
                    else:
                        target = round_robin % partitions
                        round_robin += 1
                    by_partition.setdefault(target, []).append((key, line))
                now = int(time.time() * 1000)
                request = p.ProduceRequest(
                    acks=acks,
                    timeout_ms=30_000,
                    topics=[
                        p.ProduceRequestTopic(
                            name=topic,
                            partitions=[
                                p.ProduceRequestPartition(
                                    partition_index=index,
                                    records=build_batch(records, timestamp=now, compression=codec),
                                )
                                for index, records in sorted(by_partition.items())
                            ],
                        )
                    ],
                )
                response = await conn.request(
                    p.ApiKey.PRODUCE, version, request, expect_response=acks != 0
                )
                if response is not None:
                    for part in response.topics[0].partitions:
                        raise_for_code(
                            part.error_code,
                            f"produce to {topic}-{part.partition_index}",
                            part.error_message,
                        )
                sent += len(lines)
        return sent

    sent = run_trio(main)
    print(f"produced {sent} record(s) to {topic}", file=sys.stderr)


@app.command("consume")
def consume(
    topic: str,
    bootstrap: str = typer.Option(DEFAULT_BOOTSTRAP, "--bootstrap", "-b", help=BOOTSTRAP_HELP),
    from_beginning: bool = typer.Option(False, "--from-beginning", help="Start at the oldest."),
    max_messages: int | None = typer.Option(None, "--max-messages", "-n", help="Stop after N."),
    partition: int | None = typer.Option(None, "--partition", "-p", help="Only this one."),
    print_key: bool = typer.Option(False, "--print-key", help="Print KEY<sep>VALUE."),
    key_separator: str = typer.Option("\t", "--key-separator", "-K", help="For --print-key."),
    timeout_ms: int | None = typer.Option(
        None, "--timeout-ms", help="Stop after this long without a new record."
    ),
) -> None:
    """Print records, one per line, until --max-messages, --timeout-ms or Ctrl-C."""
    out = sys.stdout.buffer
    separator = key_separator.encode()

    async def main() -> int:
        printed = 0
        async with connect(bootstrap) as conn:
            count = await _partition_count(conn, topic, auto_create=False)
            indexes = [partition] if partition is not None else list(range(count))
            offsets = await _start_offsets(conn, topic, indexes, from_beginning)
            version = conn.version_for(p.ApiKey.FETCH, (4, 11))
            idle_deadline = None if timeout_ms is None else trio.current_time() + timeout_ms / 1000
            while max_messages is None or printed < max_messages:
                request = p.FetchRequest(
                    max_wait_ms=500,
                    min_bytes=1,
                    max_bytes=8 << 20,
                    isolation_level=0,
                    topics=[
                        p.FetchRequestTopic(
                            name=topic,
                            partitions=[
                                p.FetchRequestPartition(
                                    partition_index=i,
                                    fetch_offset=offsets[i],
                                    partition_max_bytes=1 << 20,
                                )
                                for i in indexes
                            ],
                        )
                    ],
                )
                response = await conn.request(p.ApiKey.FETCH, version, request)
                got = 0
                for part in response.topics[0].partitions:
                    raise_for_code(part.error_code, f"fetch from {topic}-{part.partition_index}")
                    for record in _records(part.records, offsets[part.partition_index]):
                        if max_messages is not None and printed >= max_messages:
                            break
                        line = record.value or b""
                        if print_key:
                            line = (record.key or b"") + separator + line
                        out.write(line + b"\n")
                        printed += 1
                        got += 1
                        offsets[part.partition_index] = record.offset + 1
                out.flush()
                if got:
                    if timeout_ms is not None:
                        idle_deadline = trio.current_time() + timeout_ms / 1000
                elif idle_deadline is not None and trio.current_time() >= idle_deadline:
                    break
        return printed

    try:
        printed = run_trio(main)
    except KeyboardInterrupt:
        return
    print(f"consumed {printed} record(s) from {topic}", file=sys.stderr)


async def _start_offsets(
    conn: Connection, topic: str, indexes: list[int], from_beginning: bool
) -> dict[int, int]:
    version = conn.version_for(p.ApiKey.LIST_OFFSETS, (1, 5))
    timestamp = -2 if from_beginning else -1
    response = await conn.request(
        p.ApiKey.LIST_OFFSETS,
        version,
        p.ListOffsetsRequest(
            topics=[
                p.ListOffsetsRequestTopic(
                    name=topic,
                    partitions=[
                        p.ListOffsetsRequestPartition(partition_index=i, timestamp=timestamp)
                        for i in indexes
                    ],
                )
            ]
        ),
    )
    offsets = {}
    for part in response.topics[0].partitions:
        raise_for_code(part.error_code, f"list offsets of {topic}-{part.partition_index}")
        offsets[part.partition_index] = part.offset
    return offsets


def _records(records: Any, fetch_offset: int) -> list[Any]:
    """The records of a fetched record set at or after ``fetch_offset`` (control batches and a
    trailing partial batch skipped)."""
    if not records:
        return []
    buf = memoryview(records)
    out = []
    position = 0
    while len(buf) - position >= HEADER_SIZE:
        _base_offset, size = peek_offset_and_length(buf, position)
        if position + size > len(buf):
            break  # a partial batch at the end of a fetch: the next fetch returns it whole
        header = parse_batch_header(buf, position)
        if not header.is_control:
            _, batch_records = decode_batch(buf, position)
            out += [r for r in batch_records if r.offset >= fetch_offset]
        position += header.size
    return out
