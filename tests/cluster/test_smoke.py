from __future__ import annotations

from pathlib import Path

from tests.cluster._harness import open_cluster


async def test_three_brokers_spread_leaders(tmp_path: Path) -> None:
    async with open_cluster(tmp_path) as cluster:
        await cluster.create_topic("orders", 6, 3)
        leaders = {cluster.leader_of("orders", i) for i in range(6)}
        assert leaders == {0, 1, 2}
