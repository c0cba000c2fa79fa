"""LeanSocketStream over real loopback sockets: Trio's stream contract where callers rely on it."""

from __future__ import annotations

import os
import socket
import struct

import pytest
import trio
import trio.testing

from quorumq._net import LeanSocketStream, lean_stream


async def _pair() -> tuple[LeanSocketStream, LeanSocketStream]:
    listener = (await trio.open_tcp_listeners(0, host="127.0.0.1"))[0]
    port = listener.socket.getsockname()[1]
    async with listener:
        client = await trio.open_tcp_stream("127.0.0.1", port)
        server = await listener.accept()
    return lean_stream(client), lean_stream(server)


async def test_lean_stream_replaces_only_tcp_socket_streams() -> None:
    a, b = await _pair()
    assert isinstance(a, LeanSocketStream) and isinstance(b, LeanSocketStream)
    send, _receive = trio.testing.memory_stream_pair()
    assert lean_stream(send) is send
    await a.aclose()
    await b.aclose()


async def test_round_trips_and_eof() -> None:
    a, b = await _pair()
    await a.send_all(b"ping")
    assert await b.receive_some(100) == b"ping"
    await b.send_all(bytearray(b"pong"))
    assert await a.receive_some() == b"pong"
    await a.send_eof()
    assert await b.receive_some(100) == b""
    await a.aclose()
    await b.aclose()


async def test_a_send_larger_than_the_socket_buffers_arrives_whole() -> None:
    a, b = await _pair()
    payload = os.urandom(8 * 1024 * 1024)
    received = bytearray()

    async def read_all() -> None:
        while len(received) < len(payload):
            chunk = await b.receive_some(65536)
            assert chunk
            received.extend(chunk)

    async with trio.open_nursery() as nursery:
        nursery.start_soon(read_all)
        await a.send_all(memoryview(payload))
    assert received == payload
    await a.aclose()
    await b.aclose()


async def test_reads_what_arrived_after_a_buffer_filling_read() -> None:
    """A recv that filled its buffer leaves ``drained`` False: the next call reads at once,
    and still yields to the scheduler (a flooding peer cannot starve other tasks)."""
    a, b = await _pair()
    await a.send_all(b"x" * 1000)
    await trio.sleep(0.05)
    assert await b.receive_some(10) == b"x" * 10
    with trio.testing.assert_checkpoints():
        assert await b.receive_some(10) == b"x" * 10
    await a.aclose()
    await b.aclose()


async def test_receive_and_send_are_cancel_points() -> None:
    a, b = await _pair()
    with trio.CancelScope() as scope:
        scope.cancel()
        with pytest.raises(trio.Cancelled):
            await b.receive_some(10)
        with pytest.raises(trio.Cancelled):
            await a.send_all(b"never")
    with trio.move_on_after(0.05) as timeout:
        await b.receive_some(10)  # nothing arrives: blocks until the deadline
    assert timeout.cancelled_caught
    await a.aclose()
    await b.aclose()


async def test_closing_wakes_a_blocked_receiver() -> None:
    a, b = await _pair()

    async def receive() -> None:
        with pytest.raises(trio.ClosedResourceError):
            await b.receive_some(10)

    async with trio.open_nursery() as nursery:
        nursery.start_soon(receive)
        await trio.testing.wait_all_tasks_blocked()
        await b.aclose()
    with pytest.raises(trio.ClosedResourceError):
        await b.send_all(b"late")
    await b.aclose()  # idempotent
    await a.aclose()


async def test_a_reset_peer_is_a_broken_resource() -> None:
    a, b = await _pair()
    # SO_LINGER 0: close sends RST instead of FIN.
    a.socket.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
    a.close()
    await trio.sleep(0.05)
    with pytest.raises(trio.BrokenResourceError):
        await b.receive_some(10)
    await b.aclose()


async def test_two_receivers_at_once_is_a_bug() -> None:
    a, b = await _pair()

    async def receive() -> None:
        await b.receive_some(10)

    async with trio.open_nursery() as nursery:
        nursery.start_soon(receive)
        await trio.testing.wait_all_tasks_blocked()
        with pytest.raises(trio.BusyResourceError):
            await b.receive_some(10)
        await a.send_all(b"done")
    await a.aclose()
    await b.aclose()
