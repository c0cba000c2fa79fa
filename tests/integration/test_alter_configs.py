"""Altering topic configs on a real broker with Kafka's admin clients: librdkafka's
incremental_alter_configs and alter_configs, and kafka-python's alter_configs. The new values
show in DescribeConfigs, survive a restart, and take effect on the log at once."""

from __future__ import annotations

from typing import Any

import pytest
from confluent_kafka import KafkaError, KafkaException, Producer
from confluent_kafka.admin import (
    AdminClient,
    AlterConfigOpType,
    ConfigEntry,
    ConfigResource,
    NewTopic,
)

from quorumq import protocol as p
from quorumq.errors import ErrorCode
from tests.integration.conftest import BrokerThread, call


def _described(port: int, topic: str) -> dict[str, tuple[str | None, bool]]:
    """Each config's (value, is it the default)."""
    answer = call(
        port,
        p.ApiKey.DESCRIBE_CONFIGS,
        2,
        p.DescribeConfigsRequest(
            resources=[p.DescribeConfigsResource(resource_type=2, resource_name=topic)]
        ),
    )
    (result,) = answer.results
    return {c.name: (c.value, c.config_source == 5) for c in result.configs}


def _alter(admin: AdminClient, resource: ConfigResource, incremental: bool = True) -> None:
    futures = (
        admin.incremental_alter_configs([resource])
        if incremental
        else admin.alter_configs([resource])
    )
    for future in futures.values():
        future.result(timeout=10)


def _produce_one(bootstrap: str, size: int) -> Any:
    """The delivery error of one record of ``size`` bytes (None: delivered)."""
    result: list[Any] = []
    producer = Producer({"bootstrap.servers": bootstrap, "message.timeout.ms": 5000})
    producer.produce("t", value=b"x" * size, on_delivery=lambda e, m: result.append(e))
    producer.flush(10)
    return result[0]


@pytest.mark.filterwarnings("ignore:alter_configs has been deprecated")
def test_librdkafka_alters_topic_configs_and_the_log_follows(broker: BrokerThread) -> None:
    admin = AdminClient({"bootstrap.servers": broker.bootstrap})
    admin.create_topics([NewTopic("t", 1, 1, config={"retention.ms": "3600000"})])["t"].result(10)
    resource = ConfigResource(
        ConfigResource.Type.TOPIC,
        "t",
        incremental_configs=[
            ConfigEntry("max.message.bytes", "200", incremental_operation=AlterConfigOpType.SET),
            ConfigEntry(
                "cleanup.policy", "compact", incremental_operation=AlterConfigOpType.APPEND
            ),
            ConfigEntry("retention.ms", None, incremental_operation=AlterConfigOpType.DELETE),
        ],
    )
    _alter(admin, resource)
    described = _described(broker.port, "t")
    assert described["max.message.bytes"] == ("200", False)
    assert described["cleanup.policy"] == ("delete,compact", False)
    assert described["retention.ms"] == ("604800000", True)
    # The open log follows at once: a record over the new bound is refused.
    error = _produce_one(broker.bootstrap, 1000)
    assert error is not None and error.code() == KafkaError.MSG_SIZE_TOO_LARGE
    assert _produce_one(broker.bootstrap, 10) is None
    # It survives a restart.
    broker.restart()
    assert _described(broker.port, "t")["max.message.bytes"] == ("200", False)
    # AlterConfigs (not incremental) replaces every override: the others return to defaults.
    admin = AdminClient({"bootstrap.servers": broker.bootstrap})
    _alter(admin, ConfigResource("topic", "t", set_config={"segment.ms": "60000"}), False)
    described = _described(broker.port, "t")
    assert described["segment.ms"] == ("60000", False)
    assert described["max.message.bytes"] == ("1048588", True)
    assert _produce_one(broker.bootstrap, 1000) is None


def test_bad_alterations_get_kafkas_codes_and_change_nothing(broker: BrokerThread) -> None:
    admin = AdminClient({"bootstrap.servers": broker.bootstrap})
    admin.create_topics([NewTopic("t", 1, 1)])["t"].result(10)
    for entries, code in [
        ({"retention.ms": "soon"}, KafkaError.INVALID_CONFIG),
        ({"log.retention.hours": "1"}, KafkaError.INVALID_CONFIG),
    ]:
        resource = ConfigResource(
            "topic",
            "t",
            incremental_configs=[
                ConfigEntry(k, v, incremental_operation=AlterConfigOpType.SET)
                for k, v in entries.items()
            ],
        )
        with pytest.raises(KafkaException) as raised:
            _alter(admin, resource)
        assert raised.value.args[0].code() == code
    assert _described(broker.port, "t")["retention.ms"] == ("604800000", True)
    # Straight on the wire: an unknown topic, a broker resource, validate_only, an APPEND to
    # a config that is not a list; each resource answered alone.
    request = p.IncrementalAlterConfigsRequest(
        resources=[
            p.IncrementalAlterConfigsResource(
                resource_type=2,
                resource_name=name,
                configs=[p.IncrementalAlterableConfig(name=key, config_operation=op, value=v)],
            )
            for name, key, op, v in [
                ("missing", "retention.ms", p.CONFIG_SET, "1"),
                ("t", "retention.ms", p.CONFIG_APPEND, "1"),
                ("t", "segment.ms", p.CONFIG_SET, "1000"),
            ]
        ]
        + [p.IncrementalAlterConfigsResource(resource_type=4, resource_name="0", configs=[])],
        validate_only=True,
    )
    for version in (0, 1):
        answer = call(broker.port, p.ApiKey.INCREMENTAL_ALTER_CONFIGS, version, request)
        assert [r.error_code for r in answer.responses] == [
            ErrorCode.UNKNOWN_TOPIC_OR_PARTITION,
            ErrorCode.INVALID_CONFIG,
            0,
            ErrorCode.INVALID_REQUEST,
        ]
    assert _described(broker.port, "t")["segment.ms"] == ("604800000", True)  # validate only


def test_kafka_pythons_admin_client_alters_topic_configs(broker: BrokerThread) -> None:
    from kafka.admin import ConfigResource as KafkaConfigResource
    from kafka.admin import ConfigResourceType, KafkaAdminClient
    from kafka.admin import NewTopic as KafkaNewTopic

    admin = KafkaAdminClient(bootstrap_servers=broker.bootstrap, request_timeout_ms=10000)
    try:
        admin.create_topics([KafkaNewTopic("k", 1, 1)])
        admin.alter_configs(
            [KafkaConfigResource(ConfigResourceType.TOPIC, "k", configs={"retention.ms": "5000"})]
        )
    finally:
        admin.close()
    assert _described(broker.port, "k")["retention.ms"] == ("5000", False)
