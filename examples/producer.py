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

from quorumq import protocol as p
from quorumq.client import Producer, open_connection
from quorumq.errors import ErrorCode, QuorumqError


async def ensure_topic(bootstrap: str, topic: str, partitions: int) -> bool:
    """Creates the topic with Kafka's CreateTopics; returns False if it already existed.

    The replication factor is the number of live brokers (Metadata lists them), up to 3.
    """
    host, _, port = bootstrap.split(",")[0].rpartition(":")
    async with open_connection(host, int(port), client_id="example-admin") as conn:
        for _attempt in range(10):
            version = conn.version_for(p.ApiKey.METADATA, (4, 8))
            metadata = await conn.request(p.ApiKey.METADATA, version, p.MetadataRequest(topics=[]))
            replication = min(3, len(metadata.brokers))
            topics = [
                p.CreatableTopic(
                    name=topic, num_partitions=partitions, replication_factor=replication
                )
            ]
            request = p.CreateTopicsRequest(topics=topics, timeout_ms=30_000)
            version = conn.version_for(p.ApiKey.CREATE_TOPICS, (0, 4))
            response = await conn.request(p.ApiKey.CREATE_TOPICS, version, request, timeout_s=35)
            result = response.topics[0]
            if result.error_code != ErrorCode.INVALID_REPLICATION_FACTOR:
                break
            # The controller counts fewer live brokers than this broker listed (one is just
            # registering, or was just fenced): look again in a moment.
            await trio.sleep(0.5)
    if result.error_code == ErrorCode.TOPIC_ALREADY_EXISTS:
        return False
    if result.error_code:
        reason = result.error_message or ErrorCode(result.error_code).name
        raise SystemExit(f"cannot create {topic!r}: {reason}")
    return True


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
