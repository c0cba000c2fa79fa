"""The connection pipeline (``quorumq/broker/_server.py``) over real sockets: parked requests
completed from other tasks, responses sent without the writer task, and the writer taking over
what the socket cannot take at once.

Most tests drive ``serve_connection`` with small handlers of their own, so that they can park a
request on a watcher set they hold and move it themselves; the last drives the whole broker."""

from __future__ import annotations

import socket
import struct
from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import Any

import pytest
import trio

from quorumq import protocol as p
from quorumq.broker import Broker
from quorumq.broker._config import BrokerConfig
from quorumq.broker._server import PENDING, Parked, serve_connection
from quorumq.protocol.records import build_batch, validate_batch
from tests.broker.test_server import produce_request, raw_stream, read_frames

_SIZE = struct.Struct(">i")


def frame(data: bytes) -> bytes:
    return _SIZE.pack(len(data)) + data


class Switch:
    """A watched condition a test flips by hand: a watcher set plus a value."""

    def __init__(self) -> None:
        self.watchers: set[Any] = set()
        self.value: bytes | None = None

    async def parked(self, expected: bool) -> None:
        """Waits (at most 10 s) until a request is parked on the switch, or until none is."""
        with trio.fail_after(10):
            while bool(self.watchers) != expected:  # noqa: ASYNC110 - the server's state
                await trio.sleep(0.01)

    def move(self, value: bytes) -> None:
        self.value = value
        for watcher in tuple(self.watchers):
            watcher.set()


Handler = Callable[[bytes, Any], Any]


@pytest.fixture
async def serve(tmp_path: Path) -> AsyncIterator[Callable[[Handler], Any]]:
    """Starts a server on 127.0.0.1 whose connections run ``handler``; yields its port."""
    config = BrokerConfig(data_dir=tmp_path, port=0)
    async with trio.open_nursery() as nursery:

        async def start(handler: Handler) -> int:
            async def on_connection(stream: trio.SocketStream) -> None:
                await serve_connection(stream, handler, config)

            listeners = await nursery.start(trio.serve_tcp, on_connection, 0)
            port: int = listeners[0].socket.getsockname()[1]
            return port

        yield start
        nursery.cancel_scope.cancel()


async def read_raw_frames(stream: trio.SocketStream, count: int) -> list[bytes]:
    buffer = b""
    frames: list[bytes] = []
    while len(frames) < count:
        chunk = await stream.receive_some(65536)
        if not chunk:
            raise EOFError(f"closed after {len(frames)} frames")
        buffer += chunk
        while len(buffer) >= 4 and len(buffer) >= 4 + _SIZE.unpack_from(buffer)[0]:
            size = _SIZE.unpack_from(buffer)[0]
            frames.append(buffer[4 : 4 + size])
            buffer = buffer[4 + size :]
    return frames


async def test_a_parked_request_is_answered_by_whoever_moves_it_in_order(
    serve: Callable[[Handler], Any],
) -> None:
    """The parked head holds back a ready answer behind it; moving the switch (from this test's
    task, not the connection's) answers both, in request order."""
    switch = Switch()
    polls = 0

    def handle(request: bytes, _info: Any) -> Any:
        if request == b"wait":

            def poll() -> Any:
                nonlocal polls
                polls += 1
                return PENDING if switch.value is None else [frame(b"moved:" + switch.value)]

            return Parked(poll, [switch.watchers], trio.current_time() + 30)
        return [frame(b"now:" + request)]

    port = await serve(handle)
    stream = await trio.open_tcp_stream("127.0.0.1", port)
    await stream.send_all(frame(b"wait") + frame(b"x"))
    await switch.parked(True)
    with trio.move_on_after(0.2):
        await stream.receive_some(100)
        pytest.fail("an answer left before the parked request ahead of it")
    switch.move(b"1")
    with trio.fail_after(10):
        assert await read_raw_frames(stream, 2) == [b"moved:1", b"now:x"]
    assert polls == 1 and not switch.watchers
    await stream.aclose()


async def test_a_request_behind_a_parked_fetch_makes_it_answer_as_it_stands(
    serve: Callable[[Handler], Any],
) -> None:
    """A parked request whose wait is only an upper bound (``answer_now``: a Fetch) is
    answered at once when another request arrives behind it: the client abandoned the
    long-poll, and the new request must not wait out its deadline. (One without
    ``answer_now``, an acks=all Produce, keeps waiting: the test above.)"""
    switch = Switch()
    polls = 0

    def handle(request: bytes, _info: Any) -> Any:
        if request == b"wait":

            def poll() -> Any:
                nonlocal polls
                polls += 1
                return PENDING

            return Parked(
                poll, [switch.watchers], trio.current_time() + 30, lambda: [frame(b"as it stands")]
            )
        return [frame(b"now:" + request)]

    port = await serve(handle)
    stream = await trio.open_tcp_stream("127.0.0.1", port)
    await stream.send_all(frame(b"wait"))
    await switch.parked(True)
    await stream.send_all(frame(b"x"))
    with trio.fail_after(5):  # not the 30 s deadline
        assert await read_raw_frames(stream, 2) == [b"as it stands", b"now:x"]
    assert polls == 0 and not switch.watchers
    await stream.aclose()


async def test_a_parked_request_answers_at_its_deadline(
    serve: Callable[[Handler], Any],
) -> None:
    switch = Switch()

    def handle(request: bytes, _info: Any) -> Any:
        deadline = trio.current_time() + 0.2

        def poll() -> Any:
            return PENDING if trio.current_time() < deadline else [frame(b"timed out")]

        return Parked(poll, [switch.watchers], deadline)

    port = await serve(handle)
    stream = await trio.open_tcp_stream("127.0.0.1", port)
    started = trio.current_time()
    await stream.send_all(frame(b"wait"))
    with trio.fail_after(10):
        assert await read_raw_frames(stream, 1) == [b"timed out"]
    assert trio.current_time() - started >= 0.2
    assert not switch.watchers
    await stream.aclose()


async def test_a_parked_request_of_a_closed_connection_leaves_its_watchers(
    serve: Callable[[Handler], Any],
) -> None:
    switch = Switch()

    def handle(request: bytes, _info: Any) -> Any:
        return Parked(lambda: PENDING, [switch.watchers], trio.current_time() + 30)

    port = await serve(handle)
    stream = await trio.open_tcp_stream("127.0.0.1", port)
    await stream.send_all(frame(b"wait"))
    await switch.parked(True)
    await stream.aclose()
    await switch.parked(False)
    switch.move(b"late")  # nobody is left to answer: nothing happens


async def test_a_failing_poll_closes_only_its_connection(
    serve: Callable[[Handler], Any], caplog: pytest.LogCaptureFixture
) -> None:
    """A bug in a parked request's re-check runs inside whoever moved the partition: it must
    end that request's connection, with a log line, and leave the mover and the others be."""
    switch = Switch()

    def handle(request: bytes, _info: Any) -> Any:
        if request == b"wait":

            def poll() -> Any:
                raise ZeroDivisionError("a bug")

            return Parked(poll, [switch.watchers], trio.current_time() + 30)
        return [frame(b"now:" + request)]

    port = await serve(handle)
    doomed = await trio.open_tcp_stream("127.0.0.1", port)
    other = await trio.open_tcp_stream("127.0.0.1", port)
    await doomed.send_all(frame(b"wait"))
    await switch.parked(True)
    switch.move(b"boom")  # must not raise here
    with trio.fail_after(10):
        assert await doomed.receive_some(100) == b""
    await other.send_all(frame(b"still"))
    with trio.fail_after(10):
        assert await read_raw_frames(other, 1) == [b"now:still"]
    assert not switch.watchers
    assert "ZeroDivisionError in a parked request" in caplog.text
    await doomed.aclose()
    await other.aclose()


async def test_a_response_the_socket_cannot_take_keeps_its_place(broker: Broker) -> None:
    """A fetch answer of several MiB to a client that is not reading yet fills the socket: the
    writer task sends the rest, and the answer pipelined behind it (ready at once) waits its
    turn instead of cutting into it."""
    broker.create_topic("big", 1)
    value = bytes(range(256)) * 3500  # 896,000 bytes, under message.max.bytes
    stream = await raw_stream(broker)
    batches = 8
    for i in range(batches):
        frames = p.encode_request(
            p.ApiKey.PRODUCE, 8, i, "test", produce_request("big", build_batch([(None, value)]))
        )
        await stream.send_all(b"".join(frames))
        await read_frames(stream, 1)
    stream.socket.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 64 * 1024)
    whole = p.FetchRequestPartition(partition_index=0, fetch_offset=0, partition_max_bytes=64 << 20)
    request = p.FetchRequest(
        max_wait_ms=0,
        min_bytes=1,
        max_bytes=64 << 20,
        topics=[p.FetchRequestTopic(name="big", partitions=[whole])],
    )
    frames = p.encode_request(p.ApiKey.FETCH, 11, 100, "test", request)
    frames += p.encode_request(p.ApiKey.METADATA, 8, 101, "test", p.MetadataRequest(topics=[]))
    await stream.send_all(b"".join(frames))
    await trio.sleep(0.3)  # the broker fills the socket and its writer waits
    with trio.fail_after(20):
        fetched, metadata = await read_frames(stream, 2)
    assert p.peek_correlation_id(fetched) == 100 and p.peek_correlation_id(metadata) == 101
    records = bytes(p.decode_response(p.ApiKey.FETCH, 11, fetched).topics[0].partitions[0].records)
    position = 0
    for _ in range(batches):
        header = validate_batch(records, position)
        position += header.size
    assert position == len(records) > 7 * len(value)
    assert p.decode_response(p.ApiKey.METADATA, 8, metadata).brokers
    await stream.aclose()
