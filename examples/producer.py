"""Produce a few keyed records with quorumq's Trio producer, and print where each one landed.

    uv run python examples/producer.py --bootstrap 127.0.0.1:9092 --topic example-orders --count 10

Start a cluster first (``quorumq cluster up``, or one broker with ``quorumq broker``). The
topic is created with ``--partitions`` partitions if it does not exist yet. Records with the same
key always land in the same partition (Kafka's murmur2 partitioner), so each customer's orders
stay in order. ``acks="all"`` waits until the record is committed by the replication mode
(a majority of replicas for ``quorum``, the whole ISR for ``isr``).
"""

from __future__ import annotations

import argparse
import sys

import trio

from quorumq.client import Admin, Producer
from quorumq.errors import InvalidReplicationFactor, QuorumqError, TopicAlreadyExists


async def ensure_topic(bootstrap: str, topic: str, partitions: int) -> bool:
    """Creates the topic (the client's ``Admin``: Kafka's CreateTopics); returns False if it
    already existed. The replication factor is the number of live brokers, up to 3.
    """
    async with Admin(bootstrap, client_id="example-admin") as admin:
        for attempt in range(10):
            admin.metadata.invalidate()
            await admin.metadata.refresh()
            replication = min(3, len(admin.metadata.brokers))
            try:
                await admin.create_topic(topic, partitions, replication)
                return True
            except TopicAlreadyExists:
                return False
            except InvalidReplicationFactor:
                # The controller counts fewer live brokers than Metadata listed (one is just
                # registering, or was just fenced): look again in a moment.
                if attempt == 9:
                    raise
                await trio.sleep(0.5)
    return False


async def main(args: argparse.Namespace) -> None:
    if await ensure_topic(args.bootstrap, args.topic, args.partitions):
        print(f"created topic {args.topic} with {args.partitions} partitions")
    async with Producer(args.bootstrap, acks="all", linger_ms=5) as producer:
        futures = []
        for i in range(args.count):
            key = f"customer-{i % args.keys}".encode()
            value = f"order-{i}".encode()
            # enqueue() returns at once (batching); the futures resolve when acknowledged.
            futures.append((key, value, await producer.enqueue(args.topic, value, key=key)))
        for key, value, future in futures:
            metadata = await future.get()
            print(
                f"sent key={key.decode()} value={value.decode()} -> "
                f"partition {metadata.partition} offset {metadata.offset}"
            )
    print(f"produced {args.count} records to {args.topic}")


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--bootstrap", default="127.0.0.1:9092", help="HOST:PORT[,HOST:PORT]")
    parser.add_argument("--topic", default="example-orders")
    parser.add_argument("--count", type=int, default=10, help="records to send")
    parser.add_argument("--keys", type=int, default=4, help="distinct keys (customers)")
    parser.add_argument("--partitions", type=int, default=6, help="when creating the topic")
    return parser.parse_args(argv)


if __name__ == "__main__":
    try:
        trio.run(main, parse_args())
    except* (ConnectionError, QuorumqError) as group:
        sys.exit(f"error: {group.exceptions[0]}")
