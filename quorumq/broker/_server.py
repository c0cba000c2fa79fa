"""The Trio server: listener, connections, the request pipeline and ordered responses.

Theory of operation. Each connection runs two tasks. The *reader* cuts frames (int32 size, then
the request) out of the byte stream, decodes the request header, and runs the API's handler up to
its first wait, in request order: that is what keeps appends from one connection in the order the
client sent them (librdkafka's idempotent producer pipelines up to five produce requests). The
handler returns a response, :data:`NO_RESPONSE` (Produce with acks=0) or a :class:`Delayed`
(a Fetch waiting for ``min_bytes``, a Produce waiting for the high watermark). Each request gets
a *slot* in a bounded channel; the *writer* takes the slots in order, runs a slot's ``Delayed``
itself and writes each response once it is ready, so responses leave strictly in request order
while later requests are already being read and handled. Running the wait in the writer rather
than in a task of its own is equivalent (a response cannot leave before the ones ahead of it
anyway) and saves a task per acks=all produce and per long-poll fetch, the commonest requests
of a replicated cluster; handlers therefore fix their deadlines when the request arrives. A full channel stops the reader: that is the
connection's backpressure (``queued.max.requests``).

A frame that cannot be a request (over ``socket.request.max.bytes``, truncated, an unknown API
key, a body that does not parse) closes that connection with a one-line log entry; every other
connection carries on.
"""

from __future__ import annotations

import errno
import logging
import struct
from collections.abc import Awaitable, Callable
from typing import Any

import attrs
import trio

from quorumq._net import lean_stream
from quorumq.broker._config import BrokerConfig
from quorumq.errors import QuorumqError

log = logging.getLogger("quorumq.broker")

_SIZE = struct.Struct(">i")
_RECEIVE_SIZE = 256 * 1024
_MAX_RECEIVE_SIZE = 4 * 1024 * 1024


class _NoResponse:
    def __repr__(self) -> str:
        return "NO_RESPONSE"


NO_RESPONSE: Any = _NoResponse()
"""A handler's answer when Kafka sends none (Produce with acks=0)."""


@attrs.frozen
class Delayed:
    """A response that needs waiting for; ``wait`` returns the response (or NO_RESPONSE)."""

    wait: Callable[[], Awaitable[Any]]


class ConnectionClosed(Exception):
    """The peer sent something that ends the conversation; the message is the log line."""


@attrs.define(eq=False)
class _Slot:
    """One request's place in the response order."""

    done: trio.Event = attrs.Factory(trio.Event)
    payload: list[Any] | None = None  # the encoded response frame as buffers
    delayed: Delayed | None = None  # run by the writer when the slot's turn comes


class FrameReader:
    """Cuts Kafka frames (int32 size + payload) out of a stream, with one receive buffer."""

    def __init__(self, stream: trio.abc.ReceiveStream, max_frame_bytes: int) -> None:
        self._stream = stream
        self._buffer = bytearray()
        self._position = 0
        self._max = max_frame_bytes

    async def _fill(self, need: int) -> bool:
        """Reads until ``need`` unread bytes are buffered; False at a clean end of stream."""
        while len(self._buffer) - self._position < need:
            if self._position:
                del self._buffer[: self._position]
                self._position = 0
            # Ask for what the frame still needs, within [256 KiB, 4 MiB]: recv allocates its
            # whole argument up front, so a 100 MiB frame must not mean 100 MiB per call.
            want = min(max(_RECEIVE_SIZE, need - len(self._buffer)), _MAX_RECEIVE_SIZE)
            chunk = await self._stream.receive_some(want)
            if not chunk:
                if self._buffer:
                    raise ConnectionClosed(
                        f"connection closed inside a frame ({len(self._buffer)} bytes pending)"
                    )
                return False
            self._buffer += chunk
        return True

    async def next_frame(self) -> bytes | None:
        """Returns the next frame's payload, or None when the peer closed between frames.

        Raises:
            ConnectionClosed: a negative size, a size above the limit, or EOF inside a frame.
        """
        if not await self._fill(4):
            return None
        (size,) = _SIZE.unpack_from(self._buffer, self._position)
        if size < 0 or size > self._max:
            raise ConnectionClosed(
                f"frame of {size} bytes refused (socket.request.max.bytes is {self._max})"
            )
        if not await self._fill(4 + size):
            raise ConnectionClosed("connection closed inside a frame")
        start = self._position + 4
        frame = bytes(self._buffer[start : start + size])
        self._position = start + size
        return frame


RequestHandler = Callable[[bytes, "ConnectionInfo"], Any]
"""Decodes and handles one request frame; returns a response payload, NO_RESPONSE or Delayed.

It raises ConnectionClosed for a frame that ends the connection."""


@attrs.frozen
class ConnectionInfo:
    """Who is on the other end (for log lines)."""

    peer: str


@attrs.define(eq=False)
class ConnectionSet:
    """The broker's open connections, so that a shutdown can stop them reading and let each
    answer what it has already read."""

    read_scopes: set[trio.CancelScope] = attrs.Factory(set)
    draining: bool = False

    def drain(self) -> None:
        """Stops every connection (and every one still to come) from reading more requests."""
        self.draining = True
        for scope in self.read_scopes:
            scope.cancel()


async def serve_connection(
    stream: trio.SocketStream,
    handle: RequestHandler,
    config: BrokerConfig,
    connections: ConnectionSet | None = None,
) -> None:
    """Runs one client connection until it closes, sends something unacceptable, or the broker
    drains it (then it answers what it has read and closes)."""
    if connections is None:
        connections = ConnectionSet()
    stream = lean_stream(stream)
    try:
        peer = "{}:{}".format(*stream.socket.getpeername()[:2])
    except OSError:
        peer = "?"
    info = ConnectionInfo(peer)
    reader = FrameReader(stream, config.socket_request_max_bytes)
    send_slots, receive_slots = trio.open_memory_channel[_Slot](config.queued_max_requests)
    try:
        async with stream, trio.open_nursery() as nursery:
            nursery.start_soon(_write_responses, stream, receive_slots)
            async with send_slots:
                with trio.CancelScope() as read_scope:
                    connections.read_scopes.add(read_scope)
                    if connections.draining:
                        read_scope.cancel()
                    try:
                        await _read_requests(reader, send_slots, handle, info, nursery)
                    finally:
                        connections.read_scopes.discard(read_scope)
    except* ConnectionClosed as group:
        log.warning("closing connection from %s: %s", peer, group.exceptions[0])
    except* (trio.BrokenResourceError, trio.ClosedResourceError, OSError):
        log.debug("connection from %s dropped", peer)
    except* Exception as group:
        # A bug, not bad input (handlers answer errors themselves): this connection ends, the
        # broker and every other connection carry on.
        log.error("closing connection from %s after an unexpected error", peer, exc_info=group)


async def _read_requests(
    reader: FrameReader,
    send_slots: trio.MemorySendChannel[_Slot],
    handle: RequestHandler,
    info: ConnectionInfo,
    nursery: trio.Nursery,
) -> None:
    while True:
        frame = await reader.next_frame()
        if frame is None:
            # The client closed its side: like Kafka, drop what is still pending (appends
            # already made stay made) rather than wait for delayed fetches.
            nursery.cancel_scope.cancel()
            return
        slot = _Slot()
        try:
            # No schedule point when the channel has room (the common case): the receive
            # above was one, and each extra pass of the run loop costs an epoll_wait.
            send_slots.send_nowait(slot)
        except trio.WouldBlock:
            await send_slots.send(slot)  # the writer is queued.max.requests behind: wait
        result = _handle_guarded(handle, frame, info)
        if isinstance(result, Delayed):
            slot.delayed = result
            slot.done.set()
        else:
            _fill_slot(slot, result)


def _handle_guarded(handle: RequestHandler, frame: bytes, info: ConnectionInfo) -> Any:
    try:
        return handle(frame, info)
    except ConnectionClosed:
        raise
    except Exception as exc:
        log.error("request from %s failed unexpectedly", info.peer, exc_info=exc)
        raise ConnectionClosed(f"unexpected {type(exc).__name__} handling a request") from exc


def _fill_slot(slot: _Slot, result: Any) -> None:
    if result is not NO_RESPONSE:
        slot.payload = result
    slot.done.set()


async def _write_responses(
    stream: trio.SocketStream, slots: trio.MemoryReceiveChannel[_Slot]
) -> None:
    async with slots:
        while True:
            # Take the next slot without a schedule point when one is queued, and skip the
            # wait when its answer is already there: each saved pass of the run loop is an
            # epoll_wait and a trip through the scheduler, per request.
            try:
                slot = slots.receive_nowait()
            except trio.WouldBlock:
                try:
                    slot = await slots.receive()
                except trio.EndOfChannel:
                    return
            except trio.EndOfChannel:
                return
            if not slot.done.is_set():
                await slot.done.wait()
            if slot.delayed is not None:
                result = await slot.delayed.wait()
                if result is not NO_RESPONSE:
                    slot.payload = result
            payload = slot.payload
            if payload is not None:
                await stream.send_all(payload[0] if len(payload) == 1 else b"".join(payload))


async def open_listeners(config: BrokerConfig) -> list[trio.SocketListener]:
    """Binds the broker's listen address.

    Raises:
        OSError: the port is taken or the address cannot be bound (message says which).
    """
    try:
        return await trio.open_tcp_listeners(config.port, host=config.host)
    except OSError as exc:
        if exc.errno == errno.EADDRINUSE:
            raise OSError(
                f"cannot listen on {config.host}:{config.port}: address already in use"
            ) from None
        raise OSError(
            f"cannot listen on {config.host}:{config.port}: {exc.strerror or exc}"
        ) from None


def describe_error(exc: BaseException) -> str:
    """One line for a log entry."""
    if isinstance(exc, QuorumqError):
        return f"{exc.code.name}: {exc}"
    return f"{type(exc).__name__}: {exc}"
