"""Consume as a member of a consumer group with quorumq's Trio consumer, then commit.

    uv run python examples/consumer.py --bootstrap 127.0.0.1:9092 --group example-group --count 10

Run ``producer.py`` first (it creates ``example-orders``). The consumer joins ``--group``: the
group coordinator (one broker, chosen by the group id) assigns it partitions of the topic;
start this script twice at once and each copy gets its own share. It reads from the group's
committed offsets (or the beginning, the first time), prints each record, commits what it read
and leaves the group. A second run of the same group reads only what was produced since.

It stops after ``--count`` records or ``--timeout`` seconds, whichever comes first; the exit code
is 0 when it read ``--count`` records, 2 when the timeout came first.
"""

from __future__ import annotations

import argparse
import sys

import trio

from quorumq.client import Consumer
from quorumq.errors import QuorumqError


async def main(args: argparse.Namespace) -> int:
    received = 0
    async with Consumer(
        args.bootstrap,
        group_id=args.group,
        auto_offset_reset="earliest",  # a new group starts at the beginning of the topic
        enable_auto_commit=False,  # we commit ourselves, once the records are handled
        heartbeat_interval_ms=1000,
    ) as consumer:
        consumer.subscribe([args.topic])
        print(f"joining group {args.group} for topic {args.topic}")
        assignment: set[tuple[str, int]] = set()
        with trio.move_on_after(args.timeout):
            while received < args.count:
                batches = await consumer.getmany(timeout_ms=500, max_records=args.count - received)
                if consumer.assignment() != assignment:
                    assignment = set(consumer.assignment())
                    partitions = sorted(tp[1] for tp in assignment)
                    print(f"assigned partitions {partitions} of {args.topic}")
                for records in batches.values():
                    for record in records:
                        key = record.key.decode() if record.key is not None else None
                        value = record.value.decode() if record.value is not None else None
                        print(
                            f"received partition={record.partition} offset={record.offset} "
                            f"key={key} value={value}"
                        )
                        received += 1
                if batches:
                    await consumer.commit()  # the positions of everything handled so far
        if received:
            await consumer.commit()
            positions = {tp[1]: await consumer.position(tp) for tp in sorted(consumer.assignment())}
            print(f"committed offsets {positions}")
    print(f"consumed {received} records from {args.topic} as group {args.group}")
    if received < args.count:
        print(f"stopped after {args.timeout} s with fewer than {args.count} records")
        return 2
    return 0


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--bootstrap", default="127.0.0.1:9092", help="HOST:PORT[,HOST:PORT]")
    parser.add_argument("--topic", default="example-orders")
    parser.add_argument("--group", default="example-group")
    parser.add_argument("--count", type=int, default=10, help="stop after this many records")
    parser.add_argument("--timeout", type=float, default=30.0, help="stop after this many s")
    return parser.parse_args(argv)


if __name__ == "__main__":
    try:
        sys.exit(trio.run(main, parse_args()))
    except* (ConnectionError, QuorumqError) as group:
        sys.exit(f"error: {group.exceptions[0]}")
