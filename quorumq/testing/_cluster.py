"""An in-process quorumq cluster for users' own tests: real brokers, real sockets, no Docker.

Theory of operation: :class:`Cluster` is an async context manager that owns a Trio nursery. Each
broker runs in that nursery inside a cancel scope of its own, so one broker can be killed (its
tasks cancelled, its logs closed *without* a flush or the clean-shutdown marker, as a crashed
process leaves them) and started again on the same port and data directory, while the others keep
serving. With ``brokers=1`` the broker is the standalone :class:`~quorumq.broker.Broker` (what
``quorumq broker`` runs; it starts in a few milliseconds); with more, every broker is a
:class:`~quorumq.broker._cluster.ClusterBroker` and a controller voter (combined mode, as
``quorumq cluster up`` runs them), with timings shortened so a failover takes about two seconds.

Everything a test touches goes over the Kafka protocol on 127.0.0.1 (``create_topic`` sends
CreateTopics, ``wait_ready`` reads Metadata from every running broker), so what the helper reports
is what the user's client will see.

On exit every broker is stopped, the nursery is closed (no task outlives the ``async with``),
listeners are closed and the temporary directory is removed.

:class:`ThreadedCluster` runs a :class:`Cluster` in a thread with its own ``trio.run``, for tests
of blocking clients (kafka-python, confluent-kafka) or of asyncio code.
"""

from __future__ import annotations

import contextlib
import functools
import logging
import os
import queue
import secrets
import shutil
import socket
import tempfile
import threading
from collections.abc import Awaitable, Callable, Iterable, Mapping
from pathlib import Path
from types import TracebackType
from typing import Any, TypeVar

import attrs
import trio

from quorumq import protocol as p
from quorumq.broker import Broker, BrokerConfig
from quorumq.client import open_connection
from quorumq.errors import ErrorCode, QuorumqError, RequestTimedOut, error_for_code
from quorumq.log import LogManager

__all__ = ["TESTING_BROKER_DEFAULTS", "Cluster", "ThreadedCluster"]

log = logging.getLogger("quorumq.testing")

T = TypeVar("T")

REPLICATION_MODES = ("quorum", "isr")

TESTING_BROKER_DEFAULTS: Mapping[str, Any] = {"group_initial_rebalance_delay_ms": 0}
"""BrokerConfig values that differ from a production broker's: a test's group should not wait
Kafka's 3 s for more members (Kafka's own test harness sets the same). Override any of them with
keyword arguments to :class:`Cluster`."""

# BrokerConfig fields the helper decides itself (one data dir and port per broker, loopback).
_RESERVED_FIELDS = frozenset({"data_dir", "node_id", "port", "host"})


def free_ports(count: int) -> list[int]:
    """Ports the kernel says are free now (bound and released together, so they differ)."""
    with contextlib.ExitStack() as stack:
        sockets = []
        for _ in range(count):
            s = stack.enter_context(socket.socket())
            s.bind(("127.0.0.1", 0))
            sockets.append(s)
        return [s.getsockname()[1] for s in sockets]


def _close_logs_uncleanly(logs: LogManager) -> None:
    """Closes every log as a killed process leaves it: no flush, no clean-shutdown marker.

    Installed as the broker's ``close_all`` right before its tasks are cancelled, so it runs in
    the broker's own shutdown path, after its tasks (the flusher's fsync threads included) ended.
    """
    for partition_log in logs.all_logs():
        partition_log.close(clean=False)


@attrs.define(eq=False)
class _Member:
    """One broker slot: its identity and files survive kills and restarts."""

    node_id: int
    data_dir: Path
    port: int = 0  # 0 until the first start binds one; then reused by restarts
    raft_port: int = 0  # cluster mode only
    broker: Broker | None = None
    scope: trio.CancelScope | None = None
    done: trio.Event | None = None


class Cluster:
    """In-process quorumq brokers on free 127.0.0.1 ports, for tests.

    ``async with Cluster(brokers=3) as cluster:`` starts the brokers and waits until they serve
    (and, with several, until every broker is registered with the controller); leaving the block
    stops them, cancels their tasks and removes their data.

    Args:
        brokers: how many brokers. 1 runs the standalone broker; more run a replicated cluster
            whose every broker is also a controller voter.
        replication: ``"quorum"`` or ``"isr"``, the ``replication.strategy`` that
            :meth:`create_topic` gives topics (cluster mode; a single broker has one replica).
        tmp_path: a directory to put the cluster's temporary directory in (pytest's
            ``tmp_path``, say); the system temp dir when None. The cluster's own directory is
            removed on exit either way, unless ``keep_data`` is true.
        keep_data: leave the data directories behind (to look at after a failure).
        session_timeout_ms: ``broker.session.timeout.ms``: how long a killed broker keeps its
            partitions before the controller fences it and elects new leaders.
        heartbeat_interval_ms: how often brokers heartbeat to the controller.
        start_timeout_s: the longest entering the block (or a restart) waits for readiness.
        **broker_config: any other :class:`~quorumq.broker.BrokerConfig` field, e.g.
            ``auto_create_topics_enable=False``, ``num_partitions=3``,
            ``group_min_session_timeout_ms=1000``. See :data:`TESTING_BROKER_DEFAULTS`.

    Raises:
        ValueError: ``brokers < 1``, an unknown replication mode or an unknown config field.
    """

    def __init__(
        self,
        brokers: int = 1,
        *,
        replication: str = "quorum",
        tmp_path: str | os.PathLike[str] | None = None,
        keep_data: bool = False,
        session_timeout_ms: int = 3000,
        heartbeat_interval_ms: int = 500,
        start_timeout_s: float = 30.0,
        **broker_config: Any,
    ) -> None:
        if brokers < 1:
            raise ValueError(f"a cluster needs at least one broker, not {brokers}")
        if replication not in REPLICATION_MODES:
            raise ValueError(f"replication must be one of {REPLICATION_MODES}, not {replication!r}")
        known = set(attrs.fields_dict(BrokerConfig)) - _RESERVED_FIELDS
        unknown = set(broker_config) - known
        if unknown:
            raise ValueError(
                f"unknown broker config {sorted(unknown)}; "
                f"Cluster decides {sorted(_RESERVED_FIELDS)} itself"
            )
        self.num_brokers = brokers
        self.replication = replication
        self.keep_data = keep_data
        self.session_timeout_ms = session_timeout_ms
        # Raft peers exchange pickles: even in a test, the Raft ports get a password.
        self._controller_password = secrets.token_urlsafe(16)
        self.heartbeat_interval_ms = heartbeat_interval_ms
        self.start_timeout_s = start_timeout_s
        self.broker_config: dict[str, Any] = {**TESTING_BROKER_DEFAULTS, **broker_config}
        self._tmp_parent = Path(tmp_path) if tmp_path is not None else None
        self.root: Path | None = None
        """The cluster's directory (``broker-<id>`` per broker inside); None outside the block."""
        self._members: list[_Member] = []
        self._cluster_config: Any = None
        self._nursery: trio.Nursery | None = None
        self._stack: contextlib.AsyncExitStack | None = None

    @property
    def cluster_mode(self) -> bool:
        """True when the brokers form a replicated cluster (more than one broker)."""
        return self.num_brokers > 1

    # --- lifecycle ---------------------------------------------------------------------------

    async def __aenter__(self) -> Cluster:
        if self._stack is not None:
            raise RuntimeError("this Cluster is already running")
        parent = self._tmp_parent
        if parent is not None:
            parent.mkdir(parents=True, exist_ok=True)
        self.root = Path(tempfile.mkdtemp(prefix="quorumq-", dir=parent))
        self._members = [
            _Member(node_id=i, data_dir=self.root / f"broker-{i}") for i in range(self.num_brokers)
        ]
        if self.cluster_mode:
            self._cluster_config = self._make_cluster_config()
        stack = contextlib.AsyncExitStack()
        await stack.__aenter__()
        try:
            stack.callback(self._remove_data)
            self._nursery = await stack.enter_async_context(trio.open_nursery())
            stack.push_async_callback(self._stop_all)
            with trio.fail_after(self.start_timeout_s):
                for member in self._members:
                    await self._start(member)
                await self._wait_ready(topics=())
        except BaseException as exc:
            await stack.__aexit__(type(exc), exc, exc.__traceback__)
            self._nursery = None
            raise
        self._stack = stack
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> bool | None:
        stack, self._stack = self._stack, None
        try:
            if stack is not None:
                return await stack.__aexit__(exc_type, exc, tb)
            return None
        except BaseExceptionGroup as group:
            # The nursery wraps whatever the block raised; give the user their own exception
            # back when it is all there is (a broker's crash stays a group, with its traceback).
            if exc is None or _leaves(group) != [exc]:
                raise
        finally:
            self._nursery = None
        assert exc is not None
        raise exc

    async def _stop_all(self) -> None:
        assert self._nursery is not None
        for member in self._members:
            if member.scope is not None:
                member.scope.cancel()
        for member in self._members:
            if member.done is not None:
                await member.done.wait()
            member.broker = None
        self._nursery.cancel_scope.cancel()  # anything a broker left in our nursery

    def _remove_data(self) -> None:
        if self.root is not None and not self.keep_data:
            shutil.rmtree(self.root, ignore_errors=True)
        self.root = None

    def _make_cluster_config(self) -> Any:
        from quorumq.broker._cluster import ClusterConfig

        ports = free_ports(self.num_brokers)
        for member, port in zip(self._members, ports, strict=True):
            member.raft_port = port
        voters = ",".join(f"{m.node_id}@127.0.0.1:{m.raft_port}" for m in self._members)
        return ClusterConfig(
            voters=voters,
            password=self._controller_password,
            session_timeout_ms=self.session_timeout_ms,
            heartbeat_interval_s=self.heartbeat_interval_ms / 1000,
            default_replication_factor=min(3, self.num_brokers),
            replica_lag_time_max_ms=max(2 * self.session_timeout_ms, 2000),
            controller_tick_s=0.1,
            replica_tick_s=0.1,
        )

    def _new_broker(self, member: _Member) -> Broker:
        config = BrokerConfig(
            data_dir=member.data_dir,
            node_id=member.node_id,
            host="127.0.0.1",
            port=member.port,
            **self.broker_config,
        )
        if not self.cluster_mode:
            return Broker(config)
        from quorumq.broker._cluster import ClusterBroker

        return ClusterBroker(config, self._cluster_config)

    async def _start(self, member: _Member) -> None:
        nursery = self._require_running()
        broker = self._new_broker(member)
        done = trio.Event()
        member.done = done

        async def run(*, task_status: trio.TaskStatus[int]) -> None:
            try:
                with trio.CancelScope() as scope:
                    member.scope = scope
                    await broker.serve(task_status=task_status)
            finally:
                done.set()

        member.port = await nursery.start(run)
        member.broker = broker
        log.info("test broker %d serving on 127.0.0.1:%d", member.node_id, member.port)

    def _require_running(self) -> trio.Nursery:
        if self._nursery is None:
            raise RuntimeError("the Cluster is not running (use `async with Cluster(...)`)")
        return self._nursery

    def _member(self, index: int) -> _Member:
        self._require_running()
        if not 0 <= index < len(self._members):
            raise IndexError(f"no broker {index}: the cluster has brokers 0..{len(self._members)}")
        return self._members[index]

    # --- what tests read ---------------------------------------------------------------------

    @property
    def bootstrap(self) -> str:
        """``"127.0.0.1:PORT,..."`` of every broker (killed ones included: their ports come
        back on restart, and clients skip an address that refuses)."""
        return ",".join(f"127.0.0.1:{m.port}" for m in self._members)

    @property
    def ports(self) -> list[int]:
        """Each broker's Kafka port, by broker id."""
        return [m.port for m in self._members]

    @property
    def running(self) -> list[int]:
        """Ids of the brokers running now."""
        return [m.node_id for m in self._members if m.broker is not None]

    def broker(self, index: int) -> Broker:
        """The running broker object (for white-box assertions; the API may change).

        Raises:
            RuntimeError: that broker is killed or stopped.
        """
        broker = self._member(index).broker
        if broker is None:
            raise RuntimeError(f"broker {index} is not running")
        return broker

    def data_dir(self, index: int) -> Path:
        """Broker ``index``'s data directory (kept across kills and restarts)."""
        return self._member(index).data_dir

    # --- failures ----------------------------------------------------------------------------

    async def kill_broker(self, index: int) -> None:
        """Stops broker ``index`` abruptly: its tasks are cancelled, its connections and ports
        closed, its logs closed without a flush or the clean-shutdown marker (the next start
        recovers them, as after a crash). Its data directory stays.

        In cluster mode the others notice when its session times out (``session_timeout_ms``)
        and elect new leaders; ``await cluster.wait_ready()`` returns once they have.

        Raises:
            RuntimeError: the broker is not running.
        """
        await self._stop(index, crash=True)

    async def stop_broker(self, index: int) -> None:
        """Stops broker ``index`` cleanly, as on SIGTERM: in cluster mode its leaderships move
        to other replicas first (a controlled shutdown, up to
        ``ClusterConfig.controlled_shutdown_timeout_ms``), then its logs are flushed."""
        broker = self._member(index).broker
        if broker is not None and hasattr(broker, "controlled_shutdown"):
            await broker.controlled_shutdown()
        await self._stop(index, crash=False)

    async def _stop(self, index: int, *, crash: bool) -> None:
        member = self._member(index)
        broker = member.broker
        if broker is None or member.scope is None or member.done is None:
            raise RuntimeError(f"broker {index} is not running")
        if crash and broker.logs is not None:
            # Runs in the broker's own shutdown path, once its tasks are gone (see the helper).
            broker.logs.close_all = functools.partial(  # type: ignore[method-assign]
                _close_logs_uncleanly, broker.logs
            )
        member.scope.cancel()
        await member.done.wait()
        member.broker = None
        log.info("test broker %d %s", index, "killed" if crash else "stopped")

    async def restart_broker(self, index: int) -> None:
        """Starts broker ``index`` again on its port and data directory (killing it first if it
        is running), and waits until it serves (in cluster mode: until it is registered).

        Raises:
            OSError: its port was taken meanwhile by another process.
        """
        member = self._member(index)
        if member.broker is not None:
            await self.kill_broker(index)
        with trio.fail_after(self.start_timeout_s):
            await self._start(member)
            broker = member.broker
            if broker is not None and hasattr(broker, "wait_registered"):
                await broker.wait_registered()

    # --- readiness and topics ----------------------------------------------------------------

    async def wait_ready(self, *topics: str, timeout_s: float = 30.0) -> None:
        """Waits until the cluster agrees with what runs: every running broker answers Metadata
        listing exactly the running brokers, and every partition (of ``topics``, or of every
        topic when none are named) that has a running replica has a running leader.

        Call it after :meth:`kill_broker` or :meth:`restart_broker` to wait for the failover.

        Raises:
            RequestTimedOut: not ready within ``timeout_s`` (the message says what was missing).
        """
        with trio.move_on_after(timeout_s):
            await self._wait_ready(topics=topics or None)
            return
        raise RequestTimedOut(f"cluster not ready within {timeout_s} s: {self._last_not_ready}")

    _last_not_ready = "no answer yet"

    async def _wait_ready(self, topics: Iterable[str] | None) -> None:
        wanted = None if topics is None else list(topics)
        while True:
            reason = await self._not_ready(wanted)
            if reason is None:
                return
            self._last_not_ready = reason
            await trio.sleep(0.05)

    async def _not_ready(self, topics: list[str] | None) -> str | None:
        """Why the cluster is not ready, or None when it is."""
        running = set(self.running)
        if not running:
            return "no broker is running"
        for node_id in sorted(running):
            broker = self._members[node_id].broker
            if broker is not None and not getattr(broker, "roles_current", True):
                # Metadata comes from the image; the replicas take it up a moment later
                # (opening new ones in a worker thread).
                return f"broker {node_id} has not yet taken up the image's roles"
            port = self._members[node_id].port
            try:
                response = await self._metadata(port, topics)
            except (OSError, QuorumqError) as exc:
                return f"broker {node_id}: {exc}"
            listed = {b.node_id for b in response.brokers}
            if listed != running:
                return f"broker {node_id} lists brokers {sorted(listed)}, running {sorted(running)}"
            for topic in response.topics:
                if topic.name is None or topic.name.startswith("__"):
                    continue
                if topic.error_code == ErrorCode.UNKNOWN_TOPIC_OR_PARTITION:
                    return f"broker {node_id} does not know topic {topic.name!r} yet"
                for part in topic.partitions:
                    if not running & set(part.replica_nodes):
                        continue  # every replica is down: nobody can lead it
                    if part.error_code or part.leader_id not in running:
                        return (
                            f"broker {node_id}: {topic.name}-{part.partition_index} has leader "
                            f"{part.leader_id} (running {sorted(running)})"
                        )
        return None

    async def _metadata(self, port: int, topics: list[str] | None) -> Any:
        request = p.MetadataRequest(
            topics=None if topics is None else [p.MetadataRequestTopic(name=t) for t in topics],
            allow_auto_topic_creation=False,
        )
        return await _request(port, p.ApiKey.METADATA, (4, 8), request, timeout_s=5.0)

    async def leader(self, topic: str, partition: int = 0) -> int:
        """The broker id that leads ``topic``-``partition`` now, as Metadata says (so a test
        can kill exactly the leader: ``await cluster.kill_broker(await cluster.leader("t"))``).

        Raises:
            UnknownTopicOrPartition: no such partition.
            LeaderNotAvailable: it has no leader right now (``wait_ready`` first).
        """
        running = self.running
        if not running:
            raise ConnectionError("no broker is running")
        response = await self._metadata(self._members[running[0]].port, [topic])
        for entry in response.topics:
            if entry.error_code:
                raise _error(entry.error_code, f"topic {topic!r}")
            for part in entry.partitions:
                if part.partition_index == partition:
                    if part.error_code or part.leader_id < 0:
                        raise _error(
                            part.error_code or ErrorCode.LEADER_NOT_AVAILABLE,
                            f"{topic}-{partition} has no leader",
                        )
                    return int(part.leader_id)
        raise _error(ErrorCode.UNKNOWN_TOPIC_OR_PARTITION, f"no partition {topic}-{partition}")

    async def create_topic(
        self,
        name: str,
        partitions: int = 1,
        replication_factor: int | None = None,
        config: Mapping[str, str] | None = None,
        *,
        timeout_s: float = 30.0,
    ) -> None:
        """Creates a topic with Kafka's CreateTopics and waits until every partition has a
        leader.

        Args:
            replication_factor: replicas per partition; None: every broker, up to 3.
            config: topic configs (``{"cleanup.policy": "compact"}``); in cluster mode
                ``replication.strategy`` defaults to the cluster's ``replication``.

        Raises:
            TopicAlreadyExists, InvalidPartitions, InvalidReplicationFactor, InvalidConfig,
            InvalidTopic: as the broker answers.
            RequestTimedOut: no leaders within ``timeout_s``.
        """
        if replication_factor is None:
            replication_factor = min(3, self.num_brokers)
        configs = dict(config or {})
        if self.cluster_mode:
            configs.setdefault("replication.strategy", self.replication)
        request = p.CreateTopicsRequest(
            topics=[
                p.CreatableTopic(
                    name=name,
                    num_partitions=partitions,
                    replication_factor=replication_factor,
                    configs=[p.CreatableTopicConfig(name=k, value=v) for k, v in configs.items()],
                )
            ],
            timeout_ms=int(timeout_s * 1000),
        )
        with trio.move_on_after(timeout_s):
            result = await self._any_broker(p.ApiKey.CREATE_TOPICS, (0, 4), request)
            topic = result.topics[0]
            if topic.error_code:
                message = f"cannot create topic {name!r}: {topic.error_message or ''}".rstrip(": ")
                raise _error(topic.error_code, message)
            await self._wait_ready(topics=[name])
            return
        raise RequestTimedOut(f"topic {name!r} has no leaders within {timeout_s} s")

    async def _any_broker(self, api_key: p.ApiKey, versions: tuple[int, int], request: Any) -> Any:
        """Sends ``request`` to the first running broker that takes a connection."""
        last: Exception | None = None
        for node_id in self.running:
            port = self._members[node_id].port
            try:
                return await _request(port, api_key, versions, request, timeout_s=30.0)
            except ConnectionError as exc:
                last = exc
        raise ConnectionError(f"no running broker answered: {last}")


async def _request(
    port: int, api_key: p.ApiKey, versions: tuple[int, int], request: Any, *, timeout_s: float
) -> Any:
    """One request on a fresh connection to ``127.0.0.1:port``.

    Raises:
        ConnectionError: the broker refused or dropped the connection.
        RequestTimedOut: no answer within ``timeout_s``.
    """
    try:
        async with open_connection("127.0.0.1", port, client_id="quorumq-testing") as conn:
            version = conn.version_for(api_key, versions)
            return await conn.request(api_key, version, request, timeout_s=timeout_s)
    except ExceptionGroup as group:
        # open_connection runs its reader in a nursery, which wraps what the body raises.
        raise _sole_exception(group) from None


def _leaves(group: BaseExceptionGroup[BaseException]) -> list[BaseException]:
    out: list[BaseException] = []
    for exc in group.exceptions:
        out.extend(_leaves(exc) if isinstance(exc, BaseExceptionGroup) else [exc])
    return out


def _sole_exception(group: ExceptionGroup[Exception]) -> Exception:
    leaves = []
    for exc in group.exceptions:
        leaves.append(_sole_exception(exc) if isinstance(exc, ExceptionGroup) else exc)
    return leaves[0] if len(leaves) == 1 else group


def _error(code: int, message: str) -> QuorumqError:
    """The typed error for a Kafka error code (codes without a class keep their number)."""
    exc = error_for_code(code)(message)
    if int(type(exc).code) != code:
        with contextlib.suppress(ValueError):
            exc.code = ErrorCode(code)  # type: ignore[misc]
    return exc


class ThreadedCluster:
    """A :class:`Cluster` running in a background thread (its own ``trio.run``), for tests of
    blocking or asyncio clients::

        with ThreadedCluster(brokers=1) as cluster:
            producer = KafkaProducer(bootstrap_servers=cluster.bootstrap)

    Takes the same arguments as :class:`Cluster`; its methods are the blocking twins of the
    cluster's. A broker task that crashes ends the thread; the error is raised on exit.
    """

    def __init__(self, brokers: int = 1, **kwargs: Any) -> None:
        self.cluster = Cluster(brokers, **kwargs)
        self._thread: threading.Thread | None = None
        self._token: trio.lowlevel.TrioToken | None = None
        self._stop: trio.Event | None = None
        self.error: BaseException | None = None

    def __enter__(self) -> ThreadedCluster:
        if self._thread is not None:
            raise RuntimeError("this ThreadedCluster is already running")
        started: queue.Queue[BaseException | None] = queue.Queue()

        async def main() -> None:
            self._token = trio.lowlevel.current_trio_token()
            self._stop = trio.Event()
            try:
                async with self.cluster:
                    started.put(None)
                    await self._stop.wait()
            finally:
                self._token = None

        def run() -> None:
            try:
                trio.run(main)
            except BaseException as exc:  # handed to the test's thread, raised there
                self.error = exc
                started.put(exc)

        self._thread = threading.Thread(target=run, name="quorumq-testing-cluster", daemon=True)
        self._thread.start()
        result = started.get()
        if result is not None:
            self._thread.join()
            self._thread = None
            self.error = None
            raise result
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()

    def close(self) -> None:
        """Stops every broker, ends the thread and removes the data (idempotent).

        Raises:
            BaseException: whatever ended the cluster's thread early (a broker crash).
        """
        thread, self._thread = self._thread, None
        if thread is None:
            return
        token, stop = self._token, self._stop
        if token is not None and stop is not None:
            with contextlib.suppress(trio.RunFinishedError):
                trio.from_thread.run_sync(stop.set, trio_token=token)
        thread.join()
        error, self.error = self.error, None
        if error is not None:
            raise error

    def _call(self, fn: Callable[..., Awaitable[T]], *args: Any) -> T:
        if self._token is None:
            raise RuntimeError("the ThreadedCluster is not running") from self.error
        return trio.from_thread.run(fn, *args, trio_token=self._token)

    @property
    def bootstrap(self) -> str:
        """``"127.0.0.1:PORT,..."`` of every broker."""
        return self.cluster.bootstrap

    @property
    def ports(self) -> list[int]:
        return self.cluster.ports

    @property
    def running(self) -> list[int]:
        return self.cluster.running

    def wait_ready(self, *topics: str, timeout_s: float = 30.0) -> None:
        """See :meth:`Cluster.wait_ready`."""
        self._call(functools.partial(self.cluster.wait_ready, *topics, timeout_s=timeout_s))

    def create_topic(
        self,
        name: str,
        partitions: int = 1,
        replication_factor: int | None = None,
        config: Mapping[str, str] | None = None,
    ) -> None:
        """See :meth:`Cluster.create_topic`."""
        self._call(self.cluster.create_topic, name, partitions, replication_factor, config)

    def kill_broker(self, index: int) -> None:
        """See :meth:`Cluster.kill_broker`."""
        self._call(self.cluster.kill_broker, index)

    def stop_broker(self, index: int) -> None:
        """See :meth:`Cluster.stop_broker`."""
        self._call(self.cluster.stop_broker, index)

    def restart_broker(self, index: int) -> None:
        """See :meth:`Cluster.restart_broker`."""
        self._call(self.cluster.restart_broker, index)

    def leader(self, topic: str, partition: int = 0) -> int:
        """See :meth:`Cluster.leader`."""
        return self._call(self.cluster.leader, topic, partition)
