"""The Trio server: listener, connections, the request pipeline and ordered responses.

Theory of operation. Each connection has a *reader* task that cuts frames (int32 size, then the
request) out of the byte stream, decodes the request header, and runs the API's handler, in
request order: that is what keeps appends from one connection in the order the client sent them
(librdkafka's idempotent producer pipelines up to five produce requests). Each request gets a
*slot* in the connection's queue, and responses leave strictly in slot order. A handler answers
in one of four ways:

* a response: the slot is ready at once;
* :data:`NO_RESPONSE` (Produce with acks=0): the slot is ready and sends nothing;
* :class:`Parked` (a Fetch short of ``min_bytes``, an acks=all Produce short of the high
  watermark): Kafka's purgatory. The slot itself joins the watcher sets of the partitions the
  request waits on, and the shared expiry (``_expiry.py``) for its deadline. Whoever moves one
  of those partitions (an append, a follower's fetch that advances the high watermark, a role
  change) calls the slot's ``set()``, which re-checks the request right there with ``poll()``
  and, once it is answered, sends what is ready at the head of the queue. No task wakes for it.
  A parked Fetch is answered as it stands when another request arrives behind it (the client
  abandoned the long-poll), rather than making that request wait out its deadline;
* :class:`Delayed`: a coroutine (group joins, topic creation through the controller) that the
  connection's *writer* task runs when the slot reaches the head;
* :class:`Held`: the request names a partition this broker is still opening. The *reader*
  waits (bounded) and then handles the request again, reading nothing more from the
  connection meanwhile, so the requests behind it keep their order, as Kafka's one request
  in flight per connection does.

Responses that are ready at the head of the queue are sent at once, by whoever made them ready,
with a non-blocking ``send`` (:meth:`LeanSocketStream.send_nowait`). The writer task wakes only
for what needs an ``await``: the rest of a response the socket could not take, a ``Delayed``
coroutine, or a stream without ``send_nowait`` (the simulation's in-memory streams). Why: on
the benchmark VM every task step is a trip through Trio's scheduler and often an
``epoll_wait``; a replicated acks=all produce used to wake the leader's writer tasks six times
(two per connection: once to start waiting, once to send), and now wakes none
(docs/benchmarks.md). While the writer owns the stream, nobody else sends, so the order holds.

A full queue (``queued.max.requests``) stops the reader: that is the connection's backpressure.
A frame that cannot be a request (over ``socket.request.max.bytes``, truncated, an unknown API
key, a body that does not parse) closes that connection with a one-line log entry; every other
connection carries on.
"""

from __future__ import annotations

import errno
import logging
import math
import ssl
import struct
from collections import deque
from collections.abc import Awaitable, Callable, Sequence
from typing import Any

import attrs
import trio

from quorumq._net import lean_stream
from quorumq._tls import subject_principal
from quorumq.broker._config import BrokerConfig
from quorumq.broker._expiry import Expiry, Waker, expiry
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


class _Pending:
    def __repr__(self) -> str:
        return "PENDING"


PENDING: Any = _Pending()
"""What :attr:`Parked.poll` returns while the request must wait on."""


@attrs.frozen
class Delayed:
    """A response that needs a coroutine; ``wait`` returns the response (or NO_RESPONSE)."""

    wait: Callable[[], Awaitable[Any]]


@attrs.frozen
class Parked:
    """A response waiting for partitions to move (Kafka's delayed operation in purgatory).

    ``poll`` re-checks the request and returns the response, or :data:`PENDING` to wait on. It
    runs synchronously inside whatever moved a partition (so it must not block, and is called
    at most once per move of a watched partition), and once at ``deadline`` (trio clock), where
    it must give its final answer. The handler has just found the request pending, so the
    first ``poll`` comes with the first move after it: nothing can slip in between."""

    poll: Callable[[], Any]
    watchers: Sequence[set[Waker]]
    """The watcher sets (``Partition.append_watchers`` / ``commit_watchers``) to join."""
    deadline: float
    answer_now: Callable[[], Any] | None = None
    """For a request whose wait is only an upper bound (a Fetch's ``max_wait_ms``): its final
    answer, given now. Any later request on the same connection calls it. Responses leave in
    request order, so that request would otherwise wait out this one's deadline (Kafka does
    not even read it until then). The case that matters: a follower abandons its long-poll
    to take up a partition it has just begun to follow (an OffsetForLeaderEpoch, then a
    Fetch). It used to wait up to ``replica.fetch.wait.max.ms``, and so did every acks=all
    produce to that partition. None (an acks=all Produce): the wait is the answer, and
    nothing cuts it short."""


@attrs.frozen
class Held:
    """A request that cannot be handled yet because something local is not ready (a replica
    the image gives this broker is still opening its files). The reader awaits ``wait``, which
    bounds itself, then answers with ``again()``, which must give a final answer (a response,
    ``NO_RESPONSE``, :class:`Parked` or :class:`Delayed`, never another ``Held``)."""

    wait: Callable[[], Awaitable[None]]
    again: Callable[[], Any]


class ConnectionClosed(Exception):
    """The peer sent something that ends the conversation; the message is the log line."""


@attrs.define(eq=False)
class _Slot:
    """One request's place in the response order; for a parked request, also its waker."""

    connection: _Connection
    ready: bool = False
    payload: list[Any] | None = None  # the encoded response frame as buffers
    delayed: Delayed | None = None  # run by the writer when the slot's turn comes
    parked: Parked | None = None
    expiry_tick: int | None = None

    def set(self) -> None:
        """A watched partition moved, or the deadline passed (the :class:`Waker` protocol)."""
        if self.parked is not None:
            self.connection.poll(self)


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


@attrs.define
class ConnectionInfo:
    """Who is on the other end (for log lines and, once logged in, for quotas), and until when
    the connection is muted."""

    peer: str
    host: str = ""
    """The client's address, which ACLs may name."""
    muted_until: float = 0.0
    """Trio time before which the connection reads no request: a client over its quota
    (KIP-219; ``_quotas.py``). 0: not muted."""
    principal: str | None = None
    """Who the connection is: the SASL user it logged in as (``_sasl.py``), or its TLS client
    certificate's subject; None before a login, and on a PLAINTEXT listener (``ANONYMOUS``)."""
    sasl: Any = None
    """The login in progress: the mechanism after SaslHandshake, a SCRAM exchange, or
    ``_sasl.FAILED``."""
    mechanism: str | None = None
    """The SASL mechanism it logged in with (a re-authentication must use the same)."""
    session_expires_at: float = math.inf
    """Trio time its SASL login expires (KIP-368, ``connections_max_reauth_ms``): a request
    after it, other than a new login, closes the connection."""
    listener: str = ""
    """The name of the listener it came in on: Metadata and FindCoordinator answer with the
    brokers' addresses on that listener."""
    needs_login: bool = False
    """A SASL listener's connection: nothing but ApiVersions and the SASL requests before a
    login."""


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


TLS_HANDSHAKE_TIMEOUT_S = 10.0
"""A client that has not finished its TLS handshake by then is dropped (it holds a connection
slot and a task, and may be a port scanner)."""


async def serve_connection(
    stream: trio.SocketStream,
    handle: RequestHandler,
    config: BrokerConfig,
    connections: ConnectionSet | None = None,
    *,
    ssl_context: ssl.SSLContext | None = None,
    cert_principal: bool = False,
    listener: str = "",
    needs_login: bool = False,
) -> None:
    """Runs one client connection until it closes, sends something unacceptable, or the broker
    drains it (then it answers what it has read and closes).

    ``ssl_context``: a TLS listener; ``cert_principal``: the client certificate's subject is the
    connection's principal (TLS client authentication without SASL); ``listener``: its name;
    ``needs_login``: a SASL listener."""
    if connections is None:
        connections = ConnectionSet()
    stream = lean_stream(stream)
    try:
        address = stream.socket.getpeername()[:2]
        peer, host = "{}:{}".format(*address), str(address[0])
    except OSError:
        peer, host = "?", ""
    info = ConnectionInfo(peer, host, listener=listener, needs_login=needs_login)
    if ssl_context is not None:
        tls = trio.SSLStream(stream, ssl_context, server_side=True)
        try:
            with trio.fail_after(TLS_HANDSHAKE_TIMEOUT_S):
                await tls.do_handshake()
        except (trio.BrokenResourceError, trio.TooSlowError, OSError) as exc:
            cause = exc.__cause__ if isinstance(exc, trio.BrokenResourceError) else exc
            log.warning("TLS handshake with %s failed: %s", peer, cause or "closed")
            await trio.aclose_forcefully(stream)
            return
        if cert_principal:
            info.principal = subject_principal(tls.getpeercert())
        stream = tls  # type: ignore[assignment]
    reader = FrameReader(stream, config.socket_request_max_bytes)
    connection = _Connection(stream, config.queued_max_requests)
    try:
        try:
            async with stream, trio.open_nursery() as nursery:
                connection.scope = nursery.cancel_scope
                nursery.start_soon(connection.write)
                with trio.CancelScope() as read_scope:
                    connections.read_scopes.add(read_scope)
                    if connections.draining:
                        read_scope.cancel()
                    try:
                        await connection.read(reader, handle, info)
                    finally:
                        connections.read_scopes.discard(read_scope)
                connection.stop_reading()
        finally:
            connection.close()
        if connection.error is not None:
            raise connection.error
    except* ConnectionClosed as group:
        log.warning("closing connection from %s: %s", peer, group.exceptions[0])
    except* (trio.BrokenResourceError, trio.ClosedResourceError, OSError):
        log.debug("connection from %s dropped", peer)
    except* Exception as group:
        # A bug, not bad input (handlers answer errors themselves): this connection ends, the
        # broker and every other connection carry on.
        log.error("closing connection from %s after an unexpected error", peer, exc_info=group)


class _Connection:
    """One connection's queue of slots, and who may send next (see the module docstring).

    Invariants: ``slots`` holds the unanswered-or-unsent requests in request order; only the
    head may be sent; while ``writer_owns`` is true only the writer task touches the stream
    (it has a partial send or a ``Delayed`` in hand), otherwise whoever makes the head ready
    sends it synchronously."""

    def __init__(self, stream: Any, max_queued: int) -> None:
        self.stream = stream
        self.send_nowait: Callable[[Any], int] | None = getattr(stream, "send_nowait", None)
        self.max_queued = max_queued
        self.scope = trio.CancelScope()  # the connection's nursery scope, once it is open
        self.expiry: Expiry = expiry()
        self.slots: deque[_Slot] = deque()
        self.unsent: memoryview | None = None  # the tail of a response the socket did not take
        self.writer_owns = False
        self.writer_wakeup = trio.Event()
        self.room: trio.Event | None = None  # set when a full queue gets room (the reader waits)
        self.reading = True
        self.closed = False
        self.error: BaseException | None = None
        self.answerable = 0
        """Parked slots that may answer early (:attr:`Parked.answer_now`): usually none, so a
        pipelined producer's requests pay nothing for the check."""

    # --- reader ------------------------------------------------------------------------------

    async def read(self, reader: FrameReader, handle: RequestHandler, info: ConnectionInfo) -> None:
        slots = self.slots
        while True:
            while info.muted_until:
                # A throttle earned while muted (a delayed fetch's) pushes the deadline out.
                until = info.muted_until
                await trio.sleep_until(until)
                if info.muted_until == until:
                    info.muted_until = 0.0
            frame = await reader.next_frame()
            if frame is None:
                # The client closed its side: like Kafka, drop what is still pending (appends
                # already made stay made) rather than wait for delayed fetches.
                self.scope.cancel()
                return
            while len(slots) >= self.max_queued:  # queued.max.requests: wait for the writer
                self.room = room = trio.Event()
                await room.wait()
            if self.answerable:
                self.answer_parked_now()
            slot = _Slot(self)
            slots.append(slot)
            result = _guarded(info, handle, frame, info)
            if isinstance(result, Held):
                await result.wait()
                result = _guarded(info, result.again)
            if isinstance(result, Parked):
                self.park(slot, result)
            elif isinstance(result, Delayed):
                slot.delayed = result
            else:
                _fill_slot(slot, result)
            if slot is slots[0]:
                self.flush()

    def stop_reading(self) -> None:
        """The reader has stopped (drained): answer what was read, then end."""
        self.reading = False
        if not self.slots:
            self.hand_to_writer()

    # --- parked requests ---------------------------------------------------------------------

    def park(self, slot: _Slot, parked: Parked) -> None:
        slot.parked = parked
        if parked.answer_now is not None:
            self.answerable += 1
        for watchers in parked.watchers:
            watchers.add(slot)
        if parked.deadline != math.inf:
            slot.expiry_tick = self.expiry.add(parked.deadline, slot)

    def unpark(self, slot: _Slot) -> None:
        parked = slot.parked
        if parked is None:
            return
        slot.parked = None
        if parked.answer_now is not None:
            self.answerable -= 1
        for watchers in parked.watchers:
            watchers.discard(slot)
        if slot.expiry_tick is not None:
            self.expiry.discard(slot.expiry_tick, slot)

    def poll(self, slot: _Slot, *, early: bool = False) -> None:
        """Re-checks a parked request; called by whatever moved a watched partition (another
        connection's handler, the expiry, a role change), so it must not raise. ``early``:
        take its final answer now (:attr:`Parked.answer_now`) instead."""
        parked = slot.parked
        assert parked is not None
        if self.closed:
            self.unpark(slot)
            return
        try:
            result = parked.answer_now() if early else parked.poll()
        except Exception as exc:
            log.error("a parked request failed unexpectedly", exc_info=exc)
            self.unpark(slot)
            self.fail(ConnectionClosed(f"unexpected {type(exc).__name__} in a parked request"))
            return
        if result is PENDING or slot.parked is None:
            return  # still waiting, or answered meanwhile by a nested poll
        self.unpark(slot)
        _fill_slot(slot, result)
        if slot is self.slots[0]:
            self.flush()

    def answer_parked_now(self) -> None:
        """A new request arrived behind parked ones: those that may answer early do so now
        (see :attr:`Parked.answer_now`). Only fetches can, and clients wait for a fetch's
        answer before sending more on its connection, unless they abandoned it."""
        # A copy: an early answer can advance a high watermark, which may answer and send
        # other parked requests of this same connection (popping them from the queue).
        for slot in list(self.slots):
            parked = slot.parked
            if parked is not None and parked.answer_now is not None and self.error is None:
                self.poll(slot, early=True)

    # --- sending -----------------------------------------------------------------------------

    def flush(self) -> None:
        """Sends every ready response at the head of the queue, now, unless the writer owns
        the stream; hands the writer what needs an ``await``."""
        if self.writer_owns or self.closed:
            return
        slots = self.slots
        send_nowait = self.send_nowait
        while slots:
            head = slots[0]
            if not head.ready:
                if head.delayed is not None:
                    self.hand_to_writer()
                return
            if head.payload is not None:
                if send_nowait is None:
                    self.hand_to_writer()
                    return
                payload = head.payload
                data = payload[0] if len(payload) == 1 else b"".join(payload)
                try:
                    sent = send_nowait(data)
                except (trio.BrokenResourceError, trio.ClosedResourceError) as exc:
                    self.fail(exc)
                    return
                if sent < len(data):
                    self.unsent = memoryview(data)[sent:]
                    self.pop_head()
                    self.hand_to_writer()
                    return
            self.pop_head()
        if not self.reading:
            self.hand_to_writer()  # all answered: the writer ends the connection

    def pop_head(self) -> None:
        self.slots.popleft()
        if self.room is not None:
            self.room.set()
            self.room = None

    def hand_to_writer(self) -> None:
        self.writer_owns = True
        self.writer_wakeup.set()

    def fail(self, error: BaseException) -> None:
        """Ends the connection from a synchronous path; ``serve_connection`` raises ``error``."""
        if self.error is None:
            self.error = error
        self.scope.cancel()

    async def write(self) -> None:
        """The writer task: the sends and waits that need an ``await``, then back to
        :meth:`flush`."""
        slots = self.slots
        stream = self.stream
        while True:
            await self.writer_wakeup.wait()
            self.writer_wakeup = trio.Event()
            if self.unsent is not None:
                await stream.send_all(self.unsent)
                self.unsent = None
            while slots:
                head = slots[0]
                if not head.ready:
                    if head.delayed is None:
                        break  # parked: its partitions (or the expiry) complete it
                    _fill_slot(head, await head.delayed.wait())
                    head.delayed = None
                    continue
                if head.payload is not None and self.send_nowait is None:
                    payload = head.payload
                    await stream.send_all(payload[0] if len(payload) == 1 else b"".join(payload))
                    self.pop_head()
                    continue
                break  # ready with send_nowait: flush() below sends it
            self.writer_owns = False
            if not self.reading and not slots:
                return
            self.flush()

    def close(self) -> None:
        """The connection is ending: leave every watcher set and the expiry."""
        self.closed = True
        for slot in self.slots:
            self.unpark(slot)
        if self.room is not None:
            self.room.set()


def _guarded(info: ConnectionInfo, call: Callable[..., Any], *args: Any) -> Any:
    try:
        return call(*args)
    except ConnectionClosed:
        raise
    except Exception as exc:
        log.error("request from %s failed unexpectedly", info.peer, exc_info=exc)
        raise ConnectionClosed(f"unexpected {type(exc).__name__} handling a request") from exc


def _fill_slot(slot: _Slot, result: Any) -> None:
    if result is not NO_RESPONSE:
        slot.payload = result
    slot.ready = True


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
