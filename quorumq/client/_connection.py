"""A minimal Trio Kafka connection: pipelined requests matched to responses by correlation id.

Theory of operation: one TCP stream, one background reader task. :meth:`Connection.request`
encodes a frame with a fresh correlation id, registers a waiter, sends the frame (a lock keeps
frames whole when tasks send concurrently) and waits; the reader cuts response frames out of the
stream (``quorumq.protocol.FrameReader``), peeks their correlation id and hands the raw frame to
its waiter, which decodes it in its own task. Many requests can be in flight at once; Kafka
answers them in order, but matching by id keeps us honest. When the stream ends every waiter
fails with :class:`ConnectionError`.

Produce with acks=0 gets no response: pass ``expect_response=False``.

An *inline* connection (``open_connection(..., inline=True)``) has no reader task: the task
that sent a request reads the answer itself, skipping answers to requests it abandoned. It
serves one request at a time, and saves a task switch per request on the replication path
(the follower fetcher, which never has two fetches in flight).
"""

from __future__ import annotations

import contextlib
import secrets
import ssl
from collections.abc import AsyncIterator
from typing import Any

import attrs
import trio

from quorumq import protocol as p
from quorumq._net import lean_stream
from quorumq.errors import (
    ErrorCode,
    RequestTimedOut,
    UnsupportedSaslMechanism,
    UnsupportedVersion,
    error_for_code,
)
from quorumq.security import PLAIN, SCRAM_MECHANISMS, ScramClient

DEFAULT_TIMEOUT_S = 30.0
_MAX_RESPONSE_BYTES = 1 << 30


@attrs.define(eq=False)
class _Waiter:
    done: trio.Event = attrs.Factory(trio.Event)
    frame: memoryview | None = None
    error: BaseException | None = None


class Connection:
    """One Kafka connection. Open it with :func:`open_connection` (an async context manager)."""

    def __init__(
        self, stream: trio.abc.Stream, *, client_id: str | None, peer: str, inline: bool = False
    ) -> None:
        self._stream = stream
        self._inline_reader = p.FrameReader(_MAX_RESPONSE_BYTES) if inline else None
        self.client_id = client_id
        self.peer = peer
        self._send_lock = trio.Lock()
        self._next_correlation_id = 0
        self._waiters: dict[int, _Waiter] = {}
        self._closed_error: BaseException | None = None
        self.api_versions: dict[int, tuple[int, int]] = {}
        """The broker's ApiVersions table, filled by :meth:`negotiate`."""

    async def request(
        self,
        api_key: p.ApiKey,
        api_version: int,
        request: Any,
        *,
        expect_response: bool = True,
        timeout_s: float | None = DEFAULT_TIMEOUT_S,
    ) -> Any:
        """Sends one request and returns its decoded response (None if none is expected).

        ``timeout_s=None`` sets no timeout of its own: for a caller that already runs the
        request under a cancel scope with a deadline (the follower fetcher), which saves a
        scope per request on the replication path.

        Raises:
            ConnectionError: the connection is closed or closes before the answer.
            RequestTimedOut: no answer within ``timeout_s``.
            InvalidRequest: the answer does not parse.
        """
        if self._closed_error is not None:
            raise ConnectionError(f"connection to {self.peer} is closed: {self._closed_error}")
        correlation_id = self._next_correlation_id
        self._next_correlation_id = (correlation_id + 1) & 0x7FFFFFFF
        frame = p.encode_request(api_key, api_version, correlation_id, self.client_id, request)
        exchange = self._exchange_inline if self._inline_reader is not None else self._exchange
        answer = exchange(correlation_id, frame, expect_response)
        try:
            if timeout_s is None:
                frame_in = await answer
            else:
                with trio.move_on_after(timeout_s) as scope:
                    frame_in = await answer
                if scope.cancelled_caught:
                    raise RequestTimedOut(
                        f"{api_key.name} to {self.peer}: no response within {timeout_s} s"
                    )
        except (trio.BrokenResourceError, trio.ClosedResourceError) as exc:
            if self._inline_reader is not None:
                self._closed_error = exc
            raise ConnectionError(f"connection to {self.peer} lost: {exc}") from None
        if frame_in is None:
            return None
        return p.decode_response(api_key, api_version, frame_in)

    async def _exchange(
        self, correlation_id: int, frame: list[Any], expect_response: bool
    ) -> memoryview | None:
        """Sends a frame and waits for the reader task to hand over its answer's frame."""
        waiter = _Waiter()
        if expect_response:
            self._waiters[correlation_id] = waiter
        try:
            await self._send(frame)
            if not expect_response:
                return None
            await waiter.done.wait()
        finally:
            self._waiters.pop(correlation_id, None)
        if waiter.error is not None:
            raise ConnectionError(f"connection to {self.peer} lost: {waiter.error}")
        assert waiter.frame is not None
        return waiter.frame

    async def _exchange_inline(
        self, correlation_id: int, frame: list[Any], expect_response: bool
    ) -> memoryview | None:
        """Sends a frame and reads answers until its own (skipping answers to requests their
        senders abandoned): an inline connection's exchange."""
        reader = self._inline_reader
        assert reader is not None
        await self._send(frame)
        if not expect_response:
            return None
        while True:
            answer = reader.next_frame()
            if answer is None:
                data = await self._stream.receive_some(256 * 1024)
                if not data:
                    raise ConnectionError(f"connection to {self.peer} closed by the broker")
                reader.feed(data)
            elif p.peek_correlation_id(answer) == correlation_id:
                return answer

    async def _send(self, frame: list[Any]) -> None:
        """Sends one whole frame; concurrent senders take turns (the lock keeps frames whole).

        An uncontended lock is taken without ``Lock.acquire``'s extra trip through the
        scheduler; ``send_all`` still checkpoints."""
        lock = self._send_lock
        try:
            lock.acquire_nowait()
        except trio.WouldBlock:
            await lock.acquire()
        try:
            await self._stream.send_all(frame[0] if len(frame) == 1 else b"".join(frame))
        finally:
            lock.release()

    async def negotiate(self) -> dict[int, tuple[int, int]]:
        """Asks ApiVersions (v3, falling back to v0 as KIP-511 says) and stores the table."""
        response = await self.request(
            p.ApiKey.API_VERSIONS,
            3,
            p.ApiVersionsRequest(client_software_name="quorumq", client_software_version="0.1.0"),
        )
        if response.error_code == ErrorCode.UNSUPPORTED_VERSION:
            response = await self.request(p.ApiKey.API_VERSIONS, 0, p.ApiVersionsRequest())
        self.api_versions = {k.api_key: (k.min_version, k.max_version) for k in response.api_keys}
        return self.api_versions

    def version_for(self, api_key: p.ApiKey, ours: tuple[int, int] | None = None) -> int:
        """The highest version of ``api_key`` both sides speak.

        Raises:
            UnsupportedVersion: the broker does not serve the API in a version we speak.
        """
        if ours is None:
            ours = p.codec_versions().get(api_key)
        theirs = self.api_versions.get(int(api_key))
        if ours is None or theirs is None or max(ours[0], theirs[0]) > min(ours[1], theirs[1]):
            raise UnsupportedVersion(f"{self.peer} does not serve {api_key.name} in {ours}")
        return min(ours[1], theirs[1])

    async def _read_responses(self) -> None:
        reader = p.FrameReader(_MAX_RESPONSE_BYTES)
        error: BaseException
        try:
            while True:
                data = await self._stream.receive_some(256 * 1024)
                if not data:
                    error = ConnectionError("closed by the broker")
                    break
                reader.feed(data)
                while (frame := reader.next_frame()) is not None:
                    waiter = self._waiters.get(p.peek_correlation_id(frame))
                    if waiter is not None:
                        waiter.frame = frame
                        waiter.done.set()
        except (trio.BrokenResourceError, trio.ClosedResourceError, OSError) as exc:
            error = exc
        self._closed_error = error
        for waiter in list(self._waiters.values()):
            waiter.error = error
            waiter.done.set()

    async def aclose(self) -> None:
        await self._stream.aclose()


def split_host_port(address: str, default_port: int = 9092) -> tuple[str, int]:
    """``("127.0.0.1", 9092)`` from ``"127.0.0.1:9092"`` (or ``"host"``).

    Raises:
        ValueError: a port that is not a number.
    """
    host, sep, port = address.rpartition(":")
    if not sep:
        return address, default_port
    return host.strip("[]"), int(port)


@attrs.frozen(repr=False)
class SaslConfig:
    """A SASL login (``sasl.mechanism``, ``sasl.username``, ``sasl.password``)."""

    mechanism: str
    username: str
    password: str

    def __repr__(self) -> str:  # never print the password
        return f"SaslConfig({self.mechanism!r}, {self.username!r})"


async def authenticate(conn: Connection, sasl: SaslConfig) -> None:
    """SaslHandshake v1 and SaslAuthenticate (KIP-152) on a fresh connection.

    Raises:
        UnsupportedSaslMechanism: the broker does not offer the mechanism.
        SaslAuthenticationFailed: wrong user or password, or a broker that could not prove it
            knows the credential (SCRAM).
    """
    mechanism = sasl.mechanism.upper()
    handshake = await conn.request(
        p.ApiKey.SASL_HANDSHAKE, 1, p.SaslHandshakeRequest(mechanism=mechanism)
    )
    if handshake.error_code:
        raise error_for_code(handshake.error_code)(
            f"{conn.peer} offers SASL {list(handshake.mechanisms)}, not {mechanism}"
        )
    version = conn.version_for(p.ApiKey.SASL_AUTHENTICATE, (0, 1))

    async def step(token: bytes) -> bytes:
        answer = await conn.request(
            p.ApiKey.SASL_AUTHENTICATE, version, p.SaslAuthenticateRequest(auth_bytes=token)
        )
        if answer.error_code:
            raise error_for_code(answer.error_code)(
                f"{conn.peer}: {answer.error_message or 'SASL authentication failed'}"
            )
        return bytes(answer.auth_bytes)

    if mechanism == PLAIN:
        await step(f"\0{sasl.username}\0{sasl.password}".encode())
        return
    if mechanism not in SCRAM_MECHANISMS:
        raise UnsupportedSaslMechanism(f"quorumq's client does not speak SASL {mechanism}")
    scram = ScramClient(mechanism, sasl.username, sasl.password, secrets.token_urlsafe(18))
    scram.check(await step(scram.final(await step(scram.first()))))


@contextlib.asynccontextmanager
async def open_connection(
    host: str,
    port: int,
    *,
    client_id: str | None = "quorumq",
    negotiate: bool = True,
    connect_timeout_s: float = 10.0,
    inline: bool = False,
    sasl: SaslConfig | None = None,
    ssl_context: ssl.SSLContext | None = None,
) -> AsyncIterator[Connection]:
    """Connects to a broker, runs the response reader (none when ``inline``: see the module
    docstring), and closes everything on exit. ``sasl``: log in first; ``ssl_context``: speak
    TLS (a broker's SSL or SASL_SSL listener; ``quorumq._tls.client_context``).

    Raises:
        ConnectionError: the broker refused or did not answer the connection, or its TLS
            certificate did not verify (one-line message).
    """
    stream: trio.abc.Stream
    try:
        with trio.fail_after(connect_timeout_s):
            stream = lean_stream(await trio.open_tcp_stream(host, port))
            if ssl_context is not None:
                stream = trio.SSLStream(stream, ssl_context, server_hostname=host)
                await stream.do_handshake()
    except (OSError, trio.TooSlowError, trio.BrokenResourceError) as exc:
        raise ConnectionError(f"cannot connect to {host}:{port}: {_reason(exc)}") from None
    async with connection_over(
        stream,
        peer=f"{host}:{port}",
        client_id=client_id,
        negotiate=negotiate or sasl is not None,
        inline=inline,
    ) as conn:
        if sasl is not None:
            await authenticate(conn, sasl)
        yield conn


@contextlib.asynccontextmanager
async def connection_over(
    stream: trio.abc.Stream,
    *,
    peer: str,
    client_id: str | None = "quorumq",
    negotiate: bool = True,
    inline: bool = False,
) -> AsyncIterator[Connection]:
    """A :class:`Connection` over an open ``stream`` (TCP, or the simulation's in-memory one):
    runs the response reader unless ``inline``, negotiates versions, closes the stream on exit."""
    conn = Connection(stream, client_id=client_id, peer=peer, inline=inline)
    async with stream, trio.open_nursery() as nursery:
        if not inline:
            nursery.start_soon(conn._read_responses)
        try:
            if negotiate:
                await conn.negotiate()
            yield conn
        finally:
            nursery.cancel_scope.cancel()


def _reason(exc: BaseException) -> str:
    if isinstance(exc, trio.TooSlowError):
        return "timed out"
    cause: BaseException = exc
    # trio.open_tcp_stream wraps per-address failures (an exception group as the cause); the
    # first one says it best.
    while cause.__cause__ is not None:
        nested = cause.__cause__
        cause = nested.exceptions[0] if isinstance(nested, BaseExceptionGroup) else nested
    if isinstance(cause, ConnectionRefusedError):
        return "connection refused"
    if isinstance(cause, ssl.SSLError):
        return f"TLS: {getattr(cause, 'verify_message', None) or cause.reason or cause}"
    if isinstance(exc, trio.BrokenResourceError) and cause is exc:
        return "closed during the TLS handshake"
    return str(cause) or type(cause).__name__
