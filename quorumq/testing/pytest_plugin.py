"""pytest fixtures for tests against a real in-process quorumq cluster.

Enable in a ``conftest.py``::

    pytest_plugins = ["quorumq.testing.pytest_plugin"]

- ``quorumq_cluster``: a running :class:`~quorumq.testing.Cluster` (async fixture: needs
  pytest-trio, with ``trio_mode = true`` or ``@pytest.mark.trio`` on the test).
- ``quorumq_threaded_cluster``: a running :class:`~quorumq.testing.ThreadedCluster` (plain sync
  tests: kafka-python, confluent-kafka, asyncio clients).

Both start one broker by default; ``@pytest.mark.quorumq(brokers=3, replication="isr", ...)``
on a test (or a module's ``pytestmark``) passes any :class:`~quorumq.testing.Cluster` argument.
Each test gets a fresh cluster under its ``tmp_path``, removed afterwards.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import pytest

from quorumq.testing._cluster import Cluster, ThreadedCluster

__all__ = ["cluster_options", "quorumq_cluster", "quorumq_threaded_cluster"]


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line(
        "markers",
        "quorumq(brokers=1, replication='quorum', **broker_config): options of the "
        "quorumq_cluster / quorumq_threaded_cluster fixtures (any quorumq.testing.Cluster "
        "argument)",
    )


def cluster_options(request: pytest.FixtureRequest) -> dict[str, Any]:
    """The ``@pytest.mark.quorumq(...)`` arguments closest to the test (``brokers`` may also be
    given positionally)."""
    marker = request.node.get_closest_marker("quorumq")
    if marker is None:
        return {}
    options = dict(marker.kwargs)
    if marker.args:
        if len(marker.args) > 1 or "brokers" in options:
            raise TypeError("@pytest.mark.quorumq takes brokers as its only positional argument")
        options["brokers"] = marker.args[0]
    return options


@pytest.fixture
async def quorumq_cluster(request: pytest.FixtureRequest, tmp_path: Path) -> AsyncIterator[Cluster]:
    """A running in-process quorumq cluster (one broker unless the test's marker says)."""
    options = {"tmp_path": tmp_path, **cluster_options(request)}
    async with Cluster(**options) as cluster:
        yield cluster


@pytest.fixture
def quorumq_threaded_cluster(
    request: pytest.FixtureRequest, tmp_path: Path
) -> Iterator[ThreadedCluster]:
    """A running quorumq cluster in a background thread, for blocking clients."""
    options = {"tmp_path": tmp_path, **cluster_options(request)}
    with ThreadedCluster(**options) as cluster:
        yield cluster
