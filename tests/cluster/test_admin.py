"""CreateTopics / DeleteTopics on any broker go through the controller (kafka-python admin)."""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

import trio

from tests.cluster._harness import open_cluster


def _admin_session(bootstrap: str) -> dict[str, Any]:
    from kafka.admin import KafkaAdminClient, NewTopic

    admin = KafkaAdminClient(bootstrap_servers=bootstrap)
    out: dict[str, Any] = {}

    def create(name: str, partitions: int, rf: int, configs: dict[str, str] | None = None) -> str:
        try:
            admin.create_topics([NewTopic(name, partitions, rf, topic_configs=configs or {})])
        except Exception as exc:  # the error class names Kafka's code
            return type(exc).__name__
        return "ok"

    try:
        out["quorum"] = create("q", 3, 3, {"replication.strategy": "quorum"})
        out["isr"] = create(
            "i",
            2,
            3,
            {
                "replication.strategy": "isr",
                "min.insync.replicas": "2",
                "unclean.leader.election.enable": "false",
            },
        )
        out["duplicate"] = create("q", 1, 1)
        out["rf_too_big"] = create("big", 1, 4)
        out["bad_strategy"] = create("s", 1, 1, {"replication.strategy": "raft"})
        out["bad_min_isr"] = create("m", 1, 1, {"min.insync.replicas": "0"})
        out["bad_unclean"] = create("u", 1, 1, {"unclean.leader.election.enable": "maybe"})
        out["bad_name"] = create("no way", 1, 1)
        deadline = time.monotonic() + 5  # as after the delete below
        while not {"i", "q"} <= set(admin.list_topics()) and time.monotonic() < deadline:
            time.sleep(0.02)
        out["topics_after_create"] = sorted(admin.list_topics())
        from kafka.admin import ConfigResource, ConfigResourceType

        described = admin.describe_configs([ConfigResource(ConfigResourceType.TOPIC, "i")])
        out["described"] = repr(described)
        admin.delete_topics(["i"])
        # The answer comes once the controller committed the change; the broker that
        # kafka-python asks next may apply it a Raft append period later (as in KRaft, where
        # metadata reaches brokers asynchronously), so look until it is gone, briefly.
        deadline = time.monotonic() + 5
        while "i" in admin.list_topics() and time.monotonic() < deadline:
            time.sleep(0.02)
        out["topics_after_delete"] = sorted(admin.list_topics())
        out["cluster"] = admin.describe_cluster()
    finally:
        admin.close()
    return out


async def test_create_and_delete_topics_through_any_broker(tmp_path: Path) -> None:
    async with open_cluster(tmp_path) as cluster:
        bootstrap = f"127.0.0.1:{cluster.members[2].port}"
        out = await trio.to_thread.run_sync(lambda: _admin_session(bootstrap))
        assert out["quorum"] == "ok"
        assert out["isr"] == "ok"
        assert out["duplicate"] == "TopicAlreadyExistsError"
        assert out["rf_too_big"] == "InvalidReplicationFactorError"
        assert out["bad_strategy"] == "InvalidConfigurationError"
        assert out["bad_min_isr"] == "InvalidConfigurationError"
        assert out["bad_unclean"] == "InvalidConfigurationError"
        assert out["bad_name"] == "InvalidTopicError"
        assert out["topics_after_create"] == ["i", "q"]
        assert out["topics_after_delete"] == ["q"]
        assert "min.insync.replicas" in out["described"] and "'2'" in out["described"]
        assert sorted(b["broker_id"] for b in out["cluster"]["brokers"]) == [0, 1, 2]
        # Every broker's image agrees, and the deleted topic's replicas are gone from disk.
        for broker in cluster.running():
            assert broker.bridge is not None
            assert set(broker.bridge.image.topics) == {"q"}
            assert not any(key[0] == "i" for key in broker.partitions)
            assert not (Path(broker.config.data_dir) / "i-0").exists()
        image = cluster.broker(0).bridge.image  # type: ignore[union-attr]
        assert dict(image.topics["q"].configs)["replication.strategy"] == "quorum"
