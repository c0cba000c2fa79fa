"""The Trio connection: negotiation, pipelining by correlation id, closed and refused sockets."""

from __future__ import annotations

import pytest
import trio

from quorumq import protocol as p
from quorumq.broker import Broker
from quorumq.client._connection import open_connection, split_host_port
from quorumq.errors import RequestTimedOut
from tests.broker.conftest import broker  # noqa: F401  (fixture)
from tests.broker.test_server import fetch_request


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


async def test_inline_connection_skips_answers_to_abandoned_requests(
    broker: Broker,  # noqa: F811
) -> None:
    assert broker.port is not None
    broker.create_topic("inline", 1)
    async with open_connection("127.0.0.1", broker.port, inline=True) as conn:
        fetch = fetch_request("inline", 0, max_wait_ms=300)
        with trio.move_on_after(0.05) as scope:
            # A long poll on an empty partition: abandoned before its answer comes.
            await conn.request(p.ApiKey.FETCH, 11, fetch)
        assert scope.cancelled_caught
        # The next request must get its own answer, not the late Fetch answer ahead of it.
        response = await conn.request(p.ApiKey.METADATA, 8, p.MetadataRequest(topics=[]))
        assert response.brokers[0].port == broker.port
        with pytest.raises(RequestTimedOut):
            await conn.request(p.ApiKey.FETCH, 11, fetch, timeout_s=0.05)


async def test_inline_connection_closed_by_the_peer_is_connection_error() -> None:
    async def close_at_once(stream: trio.SocketStream) -> None:
        await stream.aclose()

    async with trio.open_nursery() as nursery:
        listeners = await nursery.start(trio.serve_tcp, close_at_once, 0)
        port = listeners[0].socket.getsockname()[1]
        async with open_connection("127.0.0.1", port, negotiate=False, inline=True) as conn:
            with pytest.raises(ConnectionError):
                await conn.request(p.ApiKey.METADATA, 8, p.MetadataRequest(topics=[]))
        nursery.cancel_scope.cancel()
