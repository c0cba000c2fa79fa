"""SimNetwork on its own: delivery order, delays in virtual time, partitions, resets."""

from __future__ import annotations

import pytest
import trio
import trio.testing

from quorumq.broker._config import BrokerConfig
from quorumq.testing._sim import SimNetwork


async def _pair(network: SimNetwork) -> tuple[object, object]:
    """A connection from host ``client`` to ``b1:9092`` (data_dir is unused by listen)."""
    [listener] = await network.listen(BrokerConfig(data_dir="unused", host="b1", port=9092))
    client = await network._open_stream("client", ("b1", 9092), 1.0)
    server = await listener.accept()
    return client, server


async def test_writes_arrive_in_order_after_a_virtual_delay(
    autojump_clock: trio.testing.MockClock,
) -> None:
    network = SimNetwork(seed=3, min_delay_s=0.01, max_delay_s=0.02, spike_probability=0.0)
    client, server = await _pair(network)
    start = trio.current_time()
    for i in range(20):
        await client.send_all(b"%02d" % i)  # type: ignore[attr-defined]
    received = b""
    while len(received) < 40:
        received += await server.receive_some(7)  # type: ignore[attr-defined]
    assert received == b"".join(b"%02d" % i for i in range(20))
    assert trio.current_time() - start >= 0.01


async def test_partition_refuses_and_resets_then_heal_reconnects(
    autojump_clock: trio.testing.MockClock,
) -> None:
    network = SimNetwork(seed=1)
    client, server = await _pair(network)
    network.partition(["client"], ["b1"])
    with pytest.raises(trio.BrokenResourceError):
        await server.receive_some()  # type: ignore[attr-defined]
    with pytest.raises(trio.BrokenResourceError):
        await client.send_all(b"x")  # type: ignore[attr-defined]
    with pytest.raises(ConnectionError, match="timed out"):
        await network._open_stream("client", ("b1", 9092), 1.0)
    network.heal()
    await network._open_stream("client", ("b1", 9092), 1.0)
    with pytest.raises(ConnectionError, match="refused"):
        await network._open_stream("client", ("b2", 9092), 1.0)


async def test_close_gives_the_peer_end_of_stream(
    autojump_clock: trio.testing.MockClock,
) -> None:
    network = SimNetwork(seed=2)
    client, server = await _pair(network)
    await client.send_all(b"last")  # type: ignore[attr-defined]
    await client.aclose()  # type: ignore[attr-defined]
    assert await server.receive_some() == b"last"  # type: ignore[attr-defined]
    assert await server.receive_some() == b""  # type: ignore[attr-defined]
    assert network.drop_random_connection() is False


async def test_drop_breaks_one_connection(autojump_clock: trio.testing.MockClock) -> None:
    network = SimNetwork(seed=5)
    _client, server = await _pair(network)
    assert network.drop_random_connection()
    with pytest.raises(trio.BrokenResourceError):
        await server.receive_some()  # type: ignore[attr-defined]
