"""Client quotas in a cluster: AlterClientQuotas on any broker goes through the controller, and
every broker enforces and describes the same quotas, also after a restart from the journal."""

from __future__ import annotations

from pathlib import Path

import trio

from quorumq import protocol as p
from quorumq.client._connection import open_connection
from tests.cluster._harness import open_cluster


async def _request(port: int, api_key: p.ApiKey, body: object) -> object:
    async with open_connection("127.0.0.1", port) as conn:
        return await conn.request(api_key, 1, body)


def _entity(**names: str | None) -> list[p.QuotaEntityData]:
    return [
        p.QuotaEntityData(entity_type=k.replace("_", "-"), entity_name=v) for k, v in names.items()
    ]


async def _described(port: int) -> dict[tuple[tuple[str, str | None], ...], dict[str, float]]:
    answer = await _request(port, p.ApiKey.DESCRIBE_CLIENT_QUOTAS, p.DescribeClientQuotasRequest())
    assert answer.error_code == 0  # type: ignore[attr-defined]
    return {
        tuple((e.entity_type, e.entity_name) for e in x.entity): {v.key: v.value for v in x.values}
        for x in answer.entries  # type: ignore[attr-defined]
    }


async def _wait_described(port: int, expected: object) -> None:
    """Polls DescribeClientQuotas: the image reaches each broker on its own time."""
    with trio.fail_after(10):
        while await _described(port) != expected:  # noqa: ASYNC110
            await trio.sleep(0.05)


async def test_quotas_altered_on_any_broker_reach_every_broker(tmp_path: Path) -> None:
    async with open_cluster(tmp_path) as cluster:
        body = p.AlterClientQuotasRequest(
            entries=[
                p.AlterClientQuotasEntry(
                    entity=_entity(client_id="app"),
                    ops=[p.AlterClientQuotasOp(key="producer_byte_rate", value=2048.0)],
                ),
                p.AlterClientQuotasEntry(
                    entity=_entity(user=None),
                    ops=[p.AlterClientQuotasOp(key="consumer_byte_rate", value=4096.0)],
                ),
                p.AlterClientQuotasEntry(
                    entity=_entity(client_id="bad"),
                    ops=[p.AlterClientQuotasOp(key="no_such_quota", value=1.0)],
                ),
            ]
        )
        # Through a broker that is not the active controller, where there is one.
        active = cluster.broker(0).bridge.image.controller_id  # type: ignore[union-attr]
        via = next(b for b in cluster.running() if b.config.node_id != active)
        answer = await _request(via.port or 0, p.ApiKey.ALTER_CLIENT_QUOTAS, body)
        assert [e.error_code for e in answer.entries] == [0, 0, 42]  # type: ignore[attr-defined]
        expected = {
            (("client-id", "app"),): {"producer_byte_rate": 2048.0},
            (("user", None),): {"consumer_byte_rate": 4096.0},
        }
        for broker in cluster.running():
            await _wait_described(broker.port or 0, expected)
            found = broker.throttler.table.quota_for("producer_byte_rate", "ANONYMOUS", "app")
            assert found is not None and found[0] == 2048.0
        # A restarted broker rebuilds them from the metadata log.
        await cluster.stop(1)
        restarted = await cluster.start(1)
        await _wait_described(restarted.port or 0, expected)
