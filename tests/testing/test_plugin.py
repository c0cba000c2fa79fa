"""The pytest plugin: fixtures (registered in conftest.py as a user's pytest_plugins would) and
a real user project enabling it with ``pytest_plugins``."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest
from kafka import KafkaProducer

from quorumq.client import Producer
from quorumq.testing import Cluster, ThreadedCluster


async def test_quorumq_cluster_fixture_is_a_running_single_broker(
    quorumq_cluster: Cluster,
) -> None:
    assert quorumq_cluster.running == [0]
    await quorumq_cluster.create_topic("fixture-topic")
    async with Producer(quorumq_cluster.bootstrap) as producer:
        metadata = await producer.send("fixture-topic", b"x")
    assert metadata.offset == 0


@pytest.mark.quorumq(auto_create_topics_enable=False, num_partitions=2)
async def test_marker_passes_cluster_options(quorumq_cluster: Cluster) -> None:
    config = quorumq_cluster.broker(0).config
    assert config.num_partitions == 2 and not config.auto_create_topics_enable


def test_threaded_fixture_serves_sync_clients(quorumq_threaded_cluster: ThreadedCluster) -> None:
    producer = KafkaProducer(bootstrap_servers=quorumq_threaded_cluster.bootstrap)
    try:
        metadata = producer.send("auto-created", b"x").get(timeout=10)
    finally:
        producer.close(timeout=5)
    assert metadata.offset == 0


USER_CONFTEST = 'pytest_plugins = ["quorumq.testing.pytest_plugin"]\n'
USER_TEST = """
import pytest
from quorumq.client import Producer

@pytest.mark.trio
async def test_users_code(quorumq_cluster):
    await quorumq_cluster.create_topic("t", partitions=2)
    async with Producer(quorumq_cluster.bootstrap) as producer:
        await producer.send("t", b"v", partition=1)

@pytest.mark.quorumq(1, num_partitions=3)
def test_sync_users_code(quorumq_threaded_cluster):
    assert quorumq_threaded_cluster.cluster.broker(0).config.num_partitions == 3
"""


def test_a_user_project_enables_the_plugin_with_pytest_plugins(tmp_path: Path) -> None:
    project = tmp_path / "project"
    project.mkdir()
    (project / "conftest.py").write_text(USER_CONFTEST)
    (project / "test_users.py").write_text(USER_TEST)
    result = subprocess.run(
        [sys.executable, "-m", "pytest", "-q", "--strict-markers", "-p", "no:cacheprovider"],
        cwd=project,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode == 0, result.stdout + result.stderr
    assert "2 passed" in result.stdout
