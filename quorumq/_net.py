"""A lean Trio stream over a TCP socket, for the broker's connections and the client's.

Why not ``trio.SocketStream``: it is correct and general, but every ``receive_some`` first tries
``recv`` (an ``EAGAIN`` when the peer has not answered yet, which on a request/response
connection is nearly always), and every successful ``recv`` or ``send`` ends with a schedule
point, which costs the Trio run loop one more pass (one more ``epoll_wait``). On the VM the
benchmarks run on (syscalls cost 15–40 µs each, docs/benchmarks.md) an acks=all produce with
three replicas makes six sends and six receives across the cluster, so those extra calls were a
measurable share of the CPU per request.

:class:`LeanSocketStream` keeps ``trio.SocketStream``'s contract where it matters — every call
is a cancel point, a receive waits without spinning, closing wakes a blocked task with
``ClosedResourceError``, a reset peer raises ``BrokenResourceError`` — and changes two things:

* ``receive_some`` waits for readability *before* calling ``recv`` when the previous ``recv``
  returned less than it asked for (the socket was drained then, so trying again first would
  almost surely fail). When the previous ``recv`` filled the buffer it reads at once, after a
  schedule point, so a peer that floods cannot starve the other tasks.
* ``send_all`` yields only when the socket's send buffer is full. Callers here always wait for
  something between sends (the next request, the next slot), which is their schedule point.

Only sockets get this: the simulation's in-memory streams stay as they are
(:func:`lean_stream` returns any other stream unchanged).
"""

from __future__ import annotations

import errno
import socket
from typing import Any

import trio

_DEFAULT_RECEIVE = 64 * 1024

# errnos that mean the peer is gone rather than a bug of ours.
_BROKEN = {errno.EPIPE, errno.ECONNRESET, errno.ECONNABORTED, errno.ENOTCONN, errno.ETIMEDOUT}


class LeanSocketStream(trio.abc.HalfCloseableStream):
    """A connected, non-blocking TCP socket as a Trio stream (see the module docstring)."""

    def __init__(self, sock: socket.socket) -> None:
        sock.setblocking(False)
        self.socket = sock
        self._drained = True  # the last recv returned short: wait before the next one
        self._closed = False
        self._receiving = False
        self._sending = False

    # --- receive ---------------------------------------------------------------------------

    async def receive_some(self, max_bytes: int | None = None) -> bytes:
        size = _DEFAULT_RECEIVE if max_bytes is None else max_bytes
        if size < 1:
            raise ValueError("max_bytes must be >= 1")
        if self._receiving:
            raise trio.BusyResourceError("another task is already receiving on this stream")
        self._receiving = True
        try:
            if self._closed:
                raise trio.ClosedResourceError("the stream is closed")
            if self._drained:
                await self._wait_readable()
            else:
                await trio.lowlevel.checkpoint()
            while True:
                if self._closed:
                    raise trio.ClosedResourceError("the stream is closed")
                try:
                    data = self.socket.recv(size)
                except BlockingIOError:
                    await self._wait_readable()
                    continue
                except OSError as exc:
                    raise _translate(exc) from exc
                self._drained = len(data) < size
                return data
        finally:
            self._receiving = False

    async def _wait_readable(self) -> None:
        try:
            await trio.lowlevel.wait_readable(self.socket)
        except trio.ClosedResourceError:
            raise trio.ClosedResourceError("the stream was closed while receiving") from None

    # --- send ------------------------------------------------------------------------------

    async def send_all(self, data: bytes | bytearray | memoryview) -> None:
        if self._sending:
            raise trio.BusyResourceError("another task is already sending on this stream")
        self._sending = True
        try:
            if self._closed:
                raise trio.ClosedResourceError("the stream is closed")
            await trio.lowlevel.checkpoint_if_cancelled()
            view = memoryview(data)
            total = len(view)
            sent = 0
            while sent < total:
                try:
                    sent += self.socket.send(view[sent:] if sent else view)
                except BlockingIOError:
                    await self._wait_writable()
                except OSError as exc:
                    raise _translate(exc) from exc
                if self._closed:
                    raise trio.ClosedResourceError("the stream was closed while sending")
        finally:
            self._sending = False

    def send_nowait(self, data: bytes | bytearray | memoryview) -> int:
        """Sends what the socket takes now and returns how many bytes that was (0 when its
        buffer is full); never waits and is not a checkpoint. Why: the broker sends a response
        from whatever completed it (``broker/_server.py``) instead of waking a task for it.

        Raises:
            trio.ClosedResourceError, trio.BrokenResourceError, trio.BusyResourceError (a
            ``send_all`` is in progress).
        """
        if self._sending:
            raise trio.BusyResourceError("another task is already sending on this stream")
        if self._closed:
            raise trio.ClosedResourceError("the stream is closed")
        try:
            return self.socket.send(data)
        except BlockingIOError:
            return 0
        except OSError as exc:
            raise _translate(exc) from exc

    async def wait_send_all_might_not_block(self) -> None:
        if self._closed:
            raise trio.ClosedResourceError("the stream is closed")
        await self._wait_writable()

    async def _wait_writable(self) -> None:
        try:
            await trio.lowlevel.wait_writable(self.socket)
        except trio.ClosedResourceError:
            raise trio.ClosedResourceError("the stream was closed while sending") from None

    async def send_eof(self) -> None:
        if self._closed:
            raise trio.ClosedResourceError("the stream is closed")
        await trio.lowlevel.checkpoint()
        try:
            self.socket.shutdown(socket.SHUT_WR)
        except OSError as exc:
            if exc.errno != errno.ENOTCONN:
                raise _translate(exc) from exc

    # --- close -----------------------------------------------------------------------------

    async def aclose(self) -> None:
        self.close()
        await trio.lowlevel.checkpoint()

    def close(self) -> None:
        """Closes at once (idempotent); a task blocked on this socket gets ClosedResourceError."""
        if self._closed:
            return
        self._closed = True
        if self.socket.fileno() >= 0:
            trio.lowlevel.notify_closing(self.socket)
        self.socket.close()

    def setsockopt(self, level: int, option: int, value: Any) -> None:
        self.socket.setsockopt(level, option, value)

    def getsockopt(self, level: int, option: int, buffersize: int = 0) -> Any:
        return self.socket.getsockopt(level, option, buffersize)


def _translate(exc: OSError) -> Exception:
    if exc.errno == errno.EBADF:
        return trio.ClosedResourceError("the stream is closed")
    if exc.errno in _BROKEN:
        return trio.BrokenResourceError(f"connection lost: {exc.strerror or exc}")
    return trio.BrokenResourceError(f"socket error: {exc}")


def lean_stream(stream: Any) -> Any:
    """``stream`` as a :class:`LeanSocketStream` when it is a ``trio.SocketStream`` over TCP (it
    takes the socket over: the old stream object is left detached), else ``stream`` itself."""
    if not isinstance(stream, trio.SocketStream):
        return stream
    trio_socket = stream.socket
    if trio_socket.type != socket.SOCK_STREAM or trio_socket.family not in (
        socket.AF_INET,
        socket.AF_INET6,
    ):
        return stream
    family = trio_socket.family
    fd = trio_socket.detach()
    return LeanSocketStream(socket.socket(family, socket.SOCK_STREAM, fileno=fd))
