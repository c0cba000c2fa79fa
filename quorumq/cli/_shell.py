"""``quorumq produce`` and ``quorumq consume``: quorumq from a shell, like kcat.

Both sit on quorumq's own client, so they find each partition's leader from Metadata and follow
it when it moves, as any Kafka client does. ``produce`` reads lines from stdin
(``KEY<sep>VALUE`` with ``--key-separator``) and partitions them as Kafka's default partitioner
does (murmur2 of the key; sticky batches without one). ``consume`` reads every partition (or one)
and prints one record per line, until ``--max-messages``, ``--timeout-ms`` or Ctrl-C.
"""

from __future__ import annotations

import sys
from typing import BinaryIO

import trio
import typer

from quorumq.cli._app import app
from quorumq.cli._broker import run_trio
from quorumq.cli._topic import BOOTSTRAP_HELP, DEFAULT_BOOTSTRAP, sasl_from_env, ssl_from_env
from quorumq.client import Consumer, Producer, RecordFuture, TopicPartition

_CHUNK_LINES = 1000
_COMPRESSIONS = ("none", "gzip", "snappy", "lz4", "zstd")


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
    if compression.lower() not in _COMPRESSIONS:
        raise typer.BadParameter(f"--compression must be one of {', '.join(_COMPRESSIONS)}")
    if acks not in (-1, 0, 1):
        raise typer.BadParameter("--acks must be 0, 1 or -1 (all)")
    separator = key_separator.encode() if key_separator else None
    stdin = sys.stdin.buffer

    async def main() -> int:
        sent = 0
        async with Producer(
            bootstrap,
            acks="all" if acks == -1 else acks,
            compression=compression.lower(),
            sasl=sasl_from_env(),
            ssl_context=ssl_from_env(),
        ) as producer:
            while lines := await trio.to_thread.run_sync(_read_lines, stdin, _CHUNK_LINES):
                futures: list[RecordFuture] = []
                for raw in lines:
                    line = raw.rstrip(b"\r\n")
                    key: bytes | None = None
                    if separator is not None and separator in line:
                        key, line = line.split(separator, 1)
                    futures.append(
                        await producer.enqueue(topic, line, key=key, partition=partition)
                    )
                await producer.flush()
                for future in futures:
                    await future.get()  # raises the record's typed error, if it failed
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
        async with Consumer(
            bootstrap, enable_auto_commit=False, sasl=sasl_from_env(), ssl_context=ssl_from_env()
        ) as consumer:
            topic_meta = await consumer.metadata.topic(topic)
            indexes = [partition] if partition is not None else range(topic_meta.num_partitions)
            partitions = [TopicPartition(topic, i) for i in indexes]
            consumer.assign(partitions)
            if from_beginning:
                consumer.seek_to_beginning(*partitions)
            else:
                consumer.seek_to_end(*partitions)
            idle_s = None if timeout_ms is None else timeout_ms / 1000
            while max_messages is None or printed < max_messages:
                wanted = None if max_messages is None else max_messages - printed
                got = 0
                with trio.move_on_after(idle_s if idle_s is not None else float("inf")):
                    while not got:
                        batches = await consumer.getmany(timeout_ms=500, max_records=wanted)
                        for records in batches.values():
                            for record in records:
                                line = record.value or b""
                                if print_key:
                                    line = (record.key or b"") + separator + line
                                out.write(line + b"\n")
                                got += 1
                        out.flush()
                if not got:
                    break  # --timeout-ms passed without a new record
                printed += got
        return printed

    try:
        printed = run_trio(main)
    except KeyboardInterrupt:
        return
    print(f"consumed {printed} record(s) from {topic}", file=sys.stderr)
