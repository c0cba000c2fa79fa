"""Test helpers for the client: an in-process broker and a loopback proxy that can lose,
rewrite or hold responses (to simulate lost acks, leader errors and a slow broker)."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import attrs
import pytest
import trio

from quorumq import protocol as p
from quorumq.broker import Broker, BrokerConfig


@pytest.fixture
async def broker(nursery: trio.Nursery, tmp_path: Path) -> Broker:
    """One broker on 127.0.0.1 (port 0), three partitions per auto-created topic, groups that
    start without the initial rebalance delay."""
    b = Broker(
        BrokerConfig(
            data_dir=tmp_path / "data",
            port=0,
            num_partitions=3,
            offsets_topic_num_partitions=3,
            group_initial_rebalance_delay_ms=0,
        )
    )
    await nursery.start(b.serve)
    return b


def bootstrap_of(broker: Broker) -> str:
    assert broker.port is not None
    return f"127.0.0.1:{broker.port}"


DROP = None
"""A rewrite hook's answer meaning: lose this response and close the client's connection."""

Rewrite = Callable[[p.RequestHeader, bytes], bytes | None]


@attrs.define(eq=False)
class LoopbackProxy:
    """Forwards Kafka connections to a broker; Metadata answers advertise the proxy, so every
    later connection of the client goes through it too.

    ``rewrite(header, frame)`` sees each response frame (size prefix excluded) with the header of
    the request it answers, and returns the frame to deliver or :data:`DROP`. ``hold`` (a
    ``trio.Event``) delays every response until it is set.
    """

    target_port: int
    rewrite: Rewrite | None = None
    port: int = 0
    requests: list[p.RequestHeader] = attrs.Factory(list)
    hold: trio.Event | None = None
    connections: int = 0

    async def serve(self, *, task_status: trio.TaskStatus[int] = trio.TASK_STATUS_IGNORED) -> None:
        listeners = await trio.open_tcp_listeners(0, host="127.0.0.1")
        self.port = listeners[0].socket.getsockname()[1]
        async with trio.open_nursery() as nursery:
            await nursery.start(trio.serve_listeners, self._handle, listeners)
            task_status.started(self.port)

    @property
    def bootstrap(self) -> str:
        return f"127.0.0.1:{self.port}"

    def count(self, api_key: p.ApiKey) -> int:
        return sum(1 for h in self.requests if h.api_key == api_key)

    async def _handle(self, client: trio.SocketStream) -> None:
        self.connections += 1
        pending: dict[int, p.RequestHeader] = {}
        try:
            upstream = await trio.open_tcp_stream("127.0.0.1", self.target_port)
        except OSError:
            await client.aclose()
            return
        async with client, upstream, trio.open_nursery() as nursery:

            async def close_all() -> None:
                nursery.cancel_scope.cancel()

            async def requests() -> None:
                reader = p.FrameReader()
                while data := await client.receive_some(65536):
                    reader.feed(data)
                    while (frame := reader.next_frame()) is not None:
                        header, _ = p.decode_request_header(frame)
                        pending[header.correlation_id] = header
                        self.requests.append(header)
                        await upstream.send_all(p.frame_size_prefix(len(frame)) + bytes(frame))
                await close_all()

            async def responses() -> None:
                reader = p.FrameReader(1 << 30)
                while data := await upstream.receive_some(65536):
                    reader.feed(data)
                    while (frame := reader.next_frame()) is not None:
                        header = pending.pop(p.peek_correlation_id(frame))
                        out: bytes | None = bytes(frame)
                        if header.api_key == p.ApiKey.METADATA:
                            out = self._advertise_self(header, bytes(frame))
                        if self.rewrite is not None and out is not None:
                            out = self.rewrite(header, out)
                        if out is DROP:
                            await close_all()
                            return
                        if self.hold is not None:
                            await self.hold.wait()
                        await client.send_all(p.frame_size_prefix(len(out)) + out)
                await close_all()

            nursery.start_soon(requests)
            nursery.start_soon(responses)

    def _advertise_self(self, header: p.RequestHeader, frame: bytes) -> bytes:
        response = p.decode_response(p.ApiKey.METADATA, header.api_version, frame)
        response = attrs.evolve(
            response, brokers=[attrs.evolve(b, port=self.port) for b in response.brokers]
        )
        return encode_response(header, response)


def encode_response(header: p.RequestHeader, response: object) -> bytes:
    """A response frame without its size prefix (what a rewrite hook returns)."""
    return p.frame_bytes(p.encode_response(header, response))[4:]


def decode_response(header: p.RequestHeader, frame: bytes) -> object:
    return p.decode_response(p.ApiKey(header.api_key), header.api_version, frame)


async def start_proxy(
    nursery: trio.Nursery, broker: Broker, rewrite: Rewrite | None = None
) -> LoopbackProxy:
    assert broker.port is not None
    proxy = LoopbackProxy(broker.port, rewrite)
    await nursery.start(proxy.serve)
    return proxy
