"""An in-process broker on 127.0.0.1 with fast group settings, and helpers for sync clients."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import pytest
import trio

from quorumq.broker import Broker, BrokerConfig

OFFSETS_PARTITIONS = 4


def group_config(data_dir: Path, port: int = 0) -> BrokerConfig:
    return BrokerConfig(
        data_dir=data_dir,
        port=port,
        offsets_topic_num_partitions=OFFSETS_PARTITIONS,
        group_initial_rebalance_delay_ms=0,
    )


@pytest.fixture
async def broker(nursery: trio.Nursery, tmp_path: Path) -> Broker:
    b = Broker(group_config(tmp_path / "data"))
    await nursery.start(b.serve)
    return b


def bootstrap(broker: Broker) -> str:
    return f"127.0.0.1:{broker.port}"


async def wait_until(check: Callable[[], bool], timeout_s: float, what: str) -> None:
    """Polls ``check`` every 50 ms (trio sleep), failing with ``what`` after ``timeout_s``."""
    with trio.move_on_after(timeout_s):
        while not check():  # noqa: ASYNC110 - polls client threads, no event to wait on
            await trio.sleep(0.05)
        return
    raise AssertionError(f"timed out after {timeout_s} s waiting for {what}")
