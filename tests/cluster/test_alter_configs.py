"""Altering a topic's configs in a cluster: one ConfigChange record through the controller,
and every replica's log and replication settings follow from the image."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from quorumq import protocol as p
from quorumq.broker._replica import ReplicaPartition
from quorumq.client._connection import open_connection
from quorumq.errors import ErrorCode
from tests.cluster._harness import open_cluster


def _resource(name: str, *changes: tuple[str, int, str | None]) -> Any:
    return p.IncrementalAlterConfigsResource(
        resource_type=2,
        resource_name=name,
        configs=[
            p.IncrementalAlterableConfig(name=k, config_operation=op, value=v)
            for k, op, v in changes
        ],
    )


async def test_an_alteration_through_any_broker_reaches_every_replica(tmp_path: Path) -> None:
    async with open_cluster(tmp_path) as cluster:
        await cluster.create_topic(
            "t", 2, 3, {"replication.strategy": "isr", "min.insync.replicas": "2"}
        )
        broker = cluster.running()[1]
        request = p.IncrementalAlterConfigsRequest(
            resources=[
                _resource(
                    "t",
                    ("max.message.bytes", p.CONFIG_SET, "4096"),
                    ("min.insync.replicas", p.CONFIG_SET, "3"),
                ),
                _resource("t2", ("retention.ms", p.CONFIG_SET, "1")),
                _resource("t", ("replication.strategy", p.CONFIG_SET, "quorum")),
            ]
        )
        async with open_connection("127.0.0.1", broker.port or 0) as conn:
            answer = await conn.request(p.ApiKey.INCREMENTAL_ALTER_CONFIGS, 1, request)
        assert [r.error_code for r in answer.responses] == [
            0,
            ErrorCode.UNKNOWN_TOPIC_OR_PARTITION,
            ErrorCode.INVALID_CONFIG,
        ]

        def applied() -> bool:
            for b in cluster.running():
                for index in range(2):
                    replica = b.partitions.get(("t", index))
                    if not isinstance(replica, ReplicaPartition):
                        return False
                    if (
                        replica.log.config.max_message_bytes != 4096
                        or replica.min_insync_replicas != 3
                    ):
                        return False
            return True

        await cluster.wait_for(applied, 10, "the new configs on every replica")
        assert broker.bridge is not None
        configs = broker.bridge.image.topics["t"].configs
        assert configs["replication.strategy"] == "isr" and configs["min.insync.replicas"] == "3"
        # AlterConfigs replaces every override, except the strategy, which must be repeated.
        replace = p.AlterConfigsRequest(
            resources=[
                p.AlterConfigsResource(
                    resource_type=2,
                    resource_name="t",
                    configs=[
                        p.AlterableConfig(name="replication.strategy", value="isr"),
                        p.AlterableConfig(name="retention.ms", value="60000"),
                    ],
                )
            ]
        )
        async with open_connection("127.0.0.1", broker.port or 0) as conn:
            answer = await conn.request(p.ApiKey.ALTER_CONFIGS, 1, replace)
        assert [r.error_code for r in answer.responses] == [0]
        await cluster.wait_for(
            lambda: (
                dict(broker.bridge.image.topics["t"].configs)  # type: ignore[union-attr]
                == {"replication.strategy": "isr", "retention.ms": "60000"}
            ),
            10,
            "the replaced configs",
        )
