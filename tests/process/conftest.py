"""One 3-broker cluster of separate processes, shared by the tests of this directory.

Starting three brokers costs seconds of a 2-core machine, so the tests share them; each test
starts with :func:`ensure_running`, which restarts what an earlier test killed or paused.
"""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from quorumq.cluster import Supervisor
from tests.process._procs import ensure_running, open_cluster


@pytest.fixture(scope="session")
def _cluster3() -> Iterator[Supervisor]:
    with open_cluster(3) as sup:
        yield sup


@pytest.fixture
def cluster3(_cluster3: Supervisor) -> Supervisor:
    ensure_running(_cluster3)
    return _cluster3
