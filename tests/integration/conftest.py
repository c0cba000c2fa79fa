"""A real broker on 127.0.0.1 in a background thread (its own trio.run), for sync clients.

kafka-python and confluent-kafka block, and aiokafka runs its own asyncio loop, so the broker
gets a thread of its own; tests talk to it over real sockets like any client would.
"""

from __future__ import annotations

import queue
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import trio

from quorumq.broker import Broker, BrokerConfig


class BrokerThread:
    """Runs one Broker in a thread; ``restart()`` stops and starts it on the same data dir."""

    def __init__(self, data_dir: Path, **config: Any) -> None:
        self.data_dir = data_dir
        self.config = config
        """Further :class:`BrokerConfig` fields."""
        self.port = 0
        self.broker: Broker | None = None
        self._thread: threading.Thread | None = None
        self._token: trio.lowlevel.TrioToken | None = None
        self.error: BaseException | None = None

    @property
    def bootstrap(self) -> str:
        return f"127.0.0.1:{self.port}"

    def start(self) -> None:
        ready: queue.Queue[object] = queue.Queue()
        broker = Broker(BrokerConfig(data_dir=self.data_dir, port=self.port, **self.config))
        self.broker = broker

        async def main() -> None:
            self._token = trio.lowlevel.current_trio_token()
            async with trio.open_nursery() as nursery:
                bound = await nursery.start(broker.serve)
                ready.put(bound)

        def run() -> None:
            try:
                trio.run(main)
            except BaseException as exc:
                self.error = exc
                ready.put(exc)

        self._thread = threading.Thread(target=run, name="quorumq-broker", daemon=True)
        self._thread.start()
        result = ready.get(timeout=30)
        if isinstance(result, BaseException):
            raise result
        assert isinstance(result, int)
        self.port = result

    def stop(self) -> None:
        if self._thread is None:
            return
        assert self.broker is not None and self._token is not None
        trio.from_thread.run_sync(self.broker.shutdown, trio_token=self._token)
        self._thread.join(timeout=30)
        assert not self._thread.is_alive(), "broker thread did not stop"
        self._thread = None
        if self.error is not None:
            raise self.error

    def restart(self) -> None:
        self.stop()
        self.start()


@pytest.fixture
def broker(tmp_path: Path) -> Iterator[BrokerThread]:
    thread = BrokerThread(tmp_path / "data")
    thread.start()
    try:
        yield thread
    finally:
        thread.stop()


def call(port: int, api_key: Any, version: int, body: Any, sasl: Any = None) -> Any:
    """One request on a fresh connection (logged in with ``sasl``, a ``SaslConfig``), from
    synchronous test code; what the request raises comes out unwrapped."""
    from quorumq.client._connection import open_connection

    async def main() -> Any:
        async with open_connection("127.0.0.1", port, sasl=sasl) as conn:
            return await conn.request(api_key, version, body)

    try:
        return trio.run(main)
    except BaseExceptionGroup as group:
        # open_connection's reader nursery wraps what the body raises.
        leaf: BaseException = group
        while isinstance(leaf, BaseExceptionGroup) and len(leaf.exceptions) == 1:
            leaf = leaf.exceptions[0]
        raise leaf from None


def wait_listening(port: int, proc: Any, timeout_s: float = 30.0) -> None:
    """Waits until a broker process started by a test accepts connections on ``port``; fails
    with its output if it exits first."""
    import socket
    import time

    deadline = time.monotonic() + timeout_s
    while True:
        try:
            socket.create_connection(("127.0.0.1", port), timeout=1).close()
            return
        except OSError:
            assert proc.poll() is None, proc.stdout.read() if proc.stdout else ""
            assert time.monotonic() < deadline, "broker did not start listening"
            time.sleep(0.05)
