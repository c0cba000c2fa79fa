"""The Trio connection: negotiation, pipelining by correlation id, closed and refused sockets."""

from __future__ import annotations

import pytest
import trio

from quorumq import protocol as p
from quorumq.broker import Broker
from quorumq.client._connection import open_connection, split_host_port
from tests.broker.conftest import broker  # noqa: F401  (fixture)


async def test_connection_negotiates_and_pipelines(broker: Broker) -> None:  # noqa: F811
    assert broker.port is not None
    async with open_connection("127.0.0.1", broker.port) as conn:
        assert conn.version_for(p.ApiKey.METADATA) >= 8
        results: list[int] = []

        async def ask(i: int) -> None:
            response = await conn.request(p.ApiKey.METADATA, 8, p.MetadataRequest(topics=[]))
            assert response.brokers[0].port == broker.port
            results.append(i)

        async with trio.open_nursery() as nursery:
            for i in range(20):
                nursery.start_soon(ask, i)
        assert sorted(results) == list(range(20))


async def test_connection_refused_is_one_line_connection_error() -> None:
    listener = await trio.open_tcp_listeners(0, host="127.0.0.1")
    port = listener[0].socket.getsockname()[1]
    await listener[0].aclose()
    with pytest.raises(ConnectionError, match="connection refused"):
        async with open_connection("127.0.0.1", port):
            pass


def test_split_host_port() -> None:
    assert split_host_port("127.0.0.1:9093") == ("127.0.0.1", 9093)
    assert split_host_port("localhost") == ("localhost", 9092)
