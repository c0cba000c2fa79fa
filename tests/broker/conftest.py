"""An in-process broker on 127.0.0.1 (port 0) in the test's nursery, with a tmp data dir."""

from __future__ import annotations

from pathlib import Path

import pytest
import trio

from quorumq.broker import Broker, BrokerConfig


@pytest.fixture
async def broker(nursery: trio.Nursery, tmp_path: Path) -> Broker:
    b = Broker(BrokerConfig(data_dir=tmp_path / "data", port=0))
    await nursery.start(b.serve)
    return b
