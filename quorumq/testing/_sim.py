"""Deterministic whole-cluster simulation: real broker shells, in-memory network, one process.

Theory of operation: a :class:`SimCluster` runs N real :class:`~quorumq.broker.ClusterBroker`
shells (replica manager, fetchers, request handlers, logs on disk) inside one Trio run, meant for
``trio.testing.MockClock(autojump_threshold=0)``: whenever every task waits, virtual time jumps to
the next timer, so 30 s of replica lag or a 9 s session timeout cost milliseconds. Three seams
replace what would leave the process or the Trio clock:

* :class:`SimNetwork` — the brokers' listeners and ``open_connection`` become in-memory
  :class:`SimStream` pairs. Every chunk written gets a delivery time drawn from the network's
  seeded ``random.Random`` (FIFO per direction, as TCP; chunks of different connections overtake
  each other), and the network can break a connection, partition node sets, and heal. No real
  socket exists, so the clock never jumps while bytes are in flight.
* :class:`SimController` — the controller quorum, single-threaded: records apply synchronously
  with the pure ``apply_record`` and the active controller's ``tick`` runs on a Trio timer, so the
  same decision code runs as in production, minus Raft. Each broker sees it through a
  :class:`SimBridge` with :class:`~quorumq.controller.ControllerBridge`'s interface. Raft's
  availability is modelled: a broker reaches the controller only while it is connected to a
  majority of live voters (combined mode); otherwise its proposals wait and its image goes stale.
* the replication shells' clock (``quorumq.broker._replica.clock_ms``) follows ``trio.current_time``.

What is not simulated: the Raft layer (pysyncobj, a real thread, tested with real processes),
disk faults (logs are real files; a crash closes them with ``clean=False``), and the Kafka
clients (requests are built and sent with quorumq's own :class:`Connection`).

Reproducibility: faults come from ``seed``, and Trio's scheduler shuffle is seeded from it too
(its ``_r``: pytest-trio/hypothesis make that shuffle deterministic), so a failing seed replays.
"""

from __future__ import annotations

import contextlib
import logging
import math
import random
import uuid
from collections import deque
from collections.abc import AsyncIterator, Callable, Iterable, Sequence
from pathlib import Path
from typing import Any

import attrs
import trio

from quorumq.broker import _flusher, _replica
from quorumq.broker._cluster import ClusterBroker, ClusterConfig
from quorumq.broker._config import BrokerConfig
from quorumq.broker._replica import ReplicaPartition
from quorumq.client._connection import Connection, connection_over
from quorumq.controller import ControllerConfig, ImageSubscription, MetadataImage
from quorumq.controller.image import (
    BrokerHeartbeat,
    BrokerLiveness,
    ControllerEpochBump,
    HeartbeatApplied,
    ImageChange,
    MetadataRecord,
    Rejected,
    apply_record,
    plan_create_topic,
    tick,
)
from quorumq.errors import NotController, RequestTimedOut, error_for_code

log = logging.getLogger("quorumq.testing.sim")

Address = tuple[str, int]

SIM_EPOCH_MS = 1_700_000_000_000
"""What the simulated clock reads when a simulation starts."""


# --- the network --------------------------------------------------------------------------------


@attrs.define(eq=False)
class _Pipe:
    """One direction of a connection: chunks with their delivery times."""

    chunks: deque[tuple[float, bytes]] = attrs.field(factory=deque)
    eof: bool = False
    broken: bool = False
    last_at: float = 0.0
    event: trio.Event = attrs.field(factory=trio.Event)

    def wake(self) -> None:
        self.event.set()


@attrs.frozen
class _FakeSocket:
    """What ``serve_connection`` reads off a stream (``stream.socket.getpeername()``)."""

    local: Address
    remote: Address

    def getpeername(self) -> Address:
        return self.remote

    def getsockname(self) -> Address:
        return self.local


class SimStream(trio.abc.Stream):
    """One end of an in-memory connection; its bytes arrive when the network says."""

    def __init__(
        self, network: SimNetwork, link: _Link, inbound: _Pipe, outbound: _Pipe, socket: _FakeSocket
    ) -> None:
        self._network = network
        self._link = link
        self._inbound = inbound
        self._outbound = outbound
        self.socket = socket
        self._closed = False

    async def send_all(self, data: bytes | bytearray | memoryview) -> None:
        await trio.lowlevel.checkpoint()
        if self._closed:
            raise trio.ClosedResourceError("stream closed")
        if self._outbound.broken:
            raise trio.BrokenResourceError("connection reset (simulated)")
        if data:
            pipe = self._outbound
            delay = self._network.next_delay(self._link.client_host, self._link.server_host)
            at = max(trio.current_time() + delay, pipe.last_at)
            pipe.last_at = at
            pipe.chunks.append((at, bytes(data)))
            pipe.wake()

    async def wait_send_all_might_not_block(self) -> None:
        await trio.lowlevel.checkpoint()

    async def receive_some(self, max_bytes: int | None = None) -> bytes:
        await trio.lowlevel.checkpoint()
        pipe = self._inbound
        while True:
            if self._closed:
                raise trio.ClosedResourceError("stream closed")
            if pipe.broken:
                raise trio.BrokenResourceError("connection reset (simulated)")
            if pipe.chunks and pipe.chunks[0][0] <= trio.current_time():
                at, data = pipe.chunks.popleft()
                if max_bytes is not None and len(data) > max_bytes:
                    pipe.chunks.appendleft((at, data[max_bytes:]))
                    data = data[:max_bytes]
                return data
            if pipe.eof and not pipe.chunks:
                return b""
            pipe.event = trio.Event()
            deadline = pipe.chunks[0][0] if pipe.chunks else math.inf
            with trio.move_on_at(deadline):
                await pipe.event.wait()

    async def aclose(self) -> None:
        if not self._closed:
            self._closed = True
            self._outbound.eof = True
            self._outbound.wake()
            self._inbound.broken = True  # the peer's writes now fail, as after a FIN + RST
            self._inbound.wake()
            self._network._links.discard(self._link)
        await trio.lowlevel.checkpoint()


@attrs.define(eq=False)
class _Link:
    """A connection between two hosts (for breaking it)."""

    client_host: str
    server_host: str
    up: _Pipe
    down: _Pipe
    serial: int
    """Creation order: picks among links are made by it, never by object identity."""

    def involves(self, host: str) -> bool:
        return host in (self.client_host, self.server_host)

    def crosses(self, a: str, b: str) -> bool:
        return {self.client_host, self.server_host} == {a, b}

    def sever(self) -> None:
        for pipe in (self.up, self.down):
            pipe.broken = True
            pipe.chunks.clear()
            pipe.wake()


class SimListener(trio.abc.Listener[SimStream]):
    """A broker's listening address on the network."""

    def __init__(self, network: SimNetwork, address: Address) -> None:
        self._network = network
        self.address = address
        self.socket = _FakeSocket(address, ("0.0.0.0", 0))
        self._send, self._receive = trio.open_memory_channel[SimStream](math.inf)

    async def accept(self) -> SimStream:
        return await self._receive.receive()

    async def aclose(self) -> None:
        if self._network._listeners.get(self.address) is self:
            del self._network._listeners[self.address]
        self._send.close()
        await self._receive.aclose()


class SimNetwork:
    """In-memory connections between hosts, with seeded delays and faults.

    Args:
        seed: seeds every random choice (delays, and what a scenario does with :attr:`rng`).
        min_delay_s, max_delay_s: the usual one-way delivery time of a write.
        spike_probability, spike_max_s: how often a write is held up, and for how long at most.
    """

    def __init__(
        self,
        seed: int,
        *,
        min_delay_s: float = 0.0002,
        max_delay_s: float = 0.003,
        spike_probability: float = 0.02,
        spike_max_s: float = 0.3,
    ) -> None:
        self.seed = seed
        self.rng = random.Random(seed)
        self.min_delay_s = min_delay_s
        self.max_delay_s = max_delay_s
        self.spike_probability = spike_probability
        self.spike_max_s = spike_max_s
        self._listeners: dict[Address, SimListener] = {}
        self._links: set[_Link] = set()
        self._serial = 0
        self._blocked: set[frozenset[str]] = set()
        self._slow: dict[frozenset[str | None], float] = {}
        self.changed = trio.Event()
        """Set (and replaced) whenever reachability changes (partitions, heals, crashes)."""

    def next_delay(self, a: str | None = None, b: str | None = None) -> float:
        """A write's delivery delay (plus the slowdown of the ``a``-``b`` link, if any)."""
        extra = self._slow.get(frozenset((a, b)), 0.0) if a is not None else 0.0
        if self.rng.random() < self.spike_probability:
            return extra + self.rng.uniform(self.max_delay_s, self.spike_max_s)
        return extra + self.rng.uniform(self.min_delay_s, self.max_delay_s)

    def slow_down(self, a: str, b: str, extra_s: float) -> None:
        """Adds ``extra_s`` to every write between hosts ``a`` and ``b`` until :meth:`heal`
        (a congested link: followers behind it lag, in-flight records pile up)."""
        self._slow[frozenset((a, b))] = extra_s

    def _changed(self) -> None:
        self.changed.set()
        self.changed = trio.Event()

    # --- reachability ---------------------------------------------------------------------------

    def can_talk(self, a: str, b: str) -> bool:
        return a == b or frozenset((a, b)) not in self._blocked

    def partition(self, *groups: Iterable[str]) -> None:
        """Cuts every pair of hosts in different groups (hosts in no group are unaffected)."""
        sets = [set(g) for g in groups]
        for i, left in enumerate(sets):
            for right in sets[i + 1 :]:
                for a in left:
                    for b in right:
                        self._blocked.add(frozenset((a, b)))
        for link in list(self._links):
            if not self.can_talk(link.client_host, link.server_host):
                self._sever(link)
        self._changed()

    def isolate(self, host: str, others: Iterable[str]) -> None:
        """Cuts ``host`` off from every host in ``others``."""
        self.partition([host], [h for h in others if h != host])

    def heal(self) -> None:
        """Ends every partition and slow link."""
        self._blocked.clear()
        self._slow.clear()
        self._changed()

    def drop_random_connection(self) -> bool:
        """Breaks one established connection (chosen by the seeded rng); False if none."""
        links = sorted(self._links, key=lambda lk: lk.serial)
        if not links:
            return False
        self._sever(links[self.rng.randrange(len(links))])
        return True

    def crash_host(self, host: str) -> None:
        """Breaks every connection of ``host`` and forgets its listeners (a dead process)."""
        for address, listener in list(self._listeners.items()):
            if address[0] == host:
                del self._listeners[address]
                listener._send.close()
        for link in list(self._links):
            if link.involves(host):
                self._sever(link)
        self._changed()

    def _sever(self, link: _Link) -> None:
        link.sever()
        self._links.discard(link)

    # --- the broker's side ----------------------------------------------------------------------

    async def listen(self, config: BrokerConfig) -> list[SimListener]:
        """``open_listeners``' shape: binds ``config.host:config.port`` on the network."""
        await trio.lowlevel.checkpoint()
        address = (config.host, config.port)
        if address in self._listeners:
            raise OSError(f"address {config.host}:{config.port} in use (simulated)")
        listener = SimListener(self, address)
        self._listeners[address] = listener
        self._changed()
        return [listener]

    def connector(
        self, source_host: str
    ) -> Callable[..., contextlib.AbstractAsyncContextManager[Any]]:
        """``open_connection``'s shape, for connections made by ``source_host``."""

        @contextlib.asynccontextmanager
        async def connect(
            host: str,
            port: int,
            *,
            client_id: str | None = "quorumq",
            negotiate: bool = True,
            connect_timeout_s: float = 10.0,
            inline: bool = False,
        ) -> AsyncIterator[Connection]:
            stream = await self._open_stream(source_host, (host, port), connect_timeout_s)
            async with connection_over(
                stream,
                peer=f"{host}:{port}",
                client_id=client_id,
                negotiate=negotiate,
                inline=inline,
            ) as conn:
                yield conn

        return connect

    async def _open_stream(self, source: str, address: Address, timeout_s: float) -> SimStream:
        # A SYN and its answer take a round trip; an unreachable host times out, a closed port
        # refuses at once.
        delay = self.next_delay() + self.next_delay()
        if not self.can_talk(source, address[0]):
            await trio.sleep(timeout_s)
            raise ConnectionError(f"cannot connect to {address[0]}:{address[1]}: timed out")
        await trio.sleep(delay)
        listener = self._listeners.get(address)
        if listener is None or not self.can_talk(source, address[0]):
            raise ConnectionError(f"cannot connect to {address[0]}:{address[1]}: refused")
        up, down = _Pipe(), _Pipe()
        self._serial += 1
        link = _Link(source, address[0], up, down, self._serial)
        self._links.add(link)
        client = SimStream(self, link, down, up, _FakeSocket((source, 0), address))
        server = SimStream(self, link, up, down, _FakeSocket(address, (source, 0)))
        listener._send.send_nowait(server)
        return client


# --- the controller -----------------------------------------------------------------------------


class SimBridge:
    """One broker's view of the :class:`SimController`, with ``ControllerBridge``'s interface.

    Never the active controller itself (the :class:`SimController` ticks), so the broker's own
    :class:`~quorumq.controller.Controller` only serves admin writes.
    """

    def __init__(self, controller: SimController, node_id: int) -> None:
        self._controller = controller
        self.node_id = node_id
        self.voters = dict.fromkeys(controller.voters)
        self.image = MetadataImage()
        self.changed = trio.Event()
        self._subscriptions: set[ImageSubscription] = set()
        self._delivered = 0
        self.closed = False

    is_leader = False
    is_active = False
    is_ready = True

    @property
    def leader_id(self) -> int | None:
        return self._controller.controller_id if self._controller.reaches(self.node_id) else None

    @property
    def controller_id(self) -> int:
        return self.image.controller_id

    @property
    def controller_epoch(self) -> int:
        return self.image.controller_epoch

    def _deliver(self, image: MetadataImage, changes: Sequence[ImageChange]) -> None:
        self.image = image
        news = [c for c in changes if not isinstance(c, HeartbeatApplied | Rejected)]
        if not news:
            return
        for subscription in list(self._subscriptions):
            subscription._push(image, news)
        self.changed.set()
        self.changed = trio.Event()

    async def propose(
        self, record: MetadataRecord, *, timeout_s: float = 5.0, raise_rejected: bool = True
    ) -> list[ImageChange]:
        """Applies ``record`` once this broker reaches a controller majority (commit latency is
        one simulated round trip); RequestTimedOut if it does not within ``timeout_s``."""
        if self.closed:
            raise NotController(f"controller {self.node_id} is shut down")
        network = self._controller.network
        with trio.move_on_after(timeout_s):
            await trio.sleep(network.next_delay() + network.next_delay())
            while not self._controller.reaches(self.node_id):
                await network.changed.wait()
            if self.closed:
                raise NotController(f"controller {self.node_id} is shut down")
            changes = self._controller.apply(record)
            if raise_rejected:
                for change in changes:
                    if isinstance(change, Rejected):
                        error = error_for_code(int(change.code))
                        raise error(f"{change.record_type} rejected: {change.reason}")
            return changes
        raise RequestTimedOut(f"{type(record).__name__} not committed within {timeout_s} s")

    async def heartbeat(self, heartbeat: BrokerHeartbeat) -> bool:
        """A BrokerHeartbeat to the active controller: one simulated round trip, recorded in the
        controller's memory (not applied as a record), answered with whether the broker is
        fenced. NotController when the controller cannot be reached within a second."""
        controller = self._controller
        network = controller.network
        me = controller.host_of(self.node_id)
        with trio.move_on_after(1.0):
            await trio.sleep(network.next_delay() + network.next_delay())
            while not (
                controller.reaches(self.node_id)
                and network.can_talk(me, controller.host_of(controller.controller_id))
            ):
                await network.changed.wait()
            if self.closed:
                raise NotController(f"controller {self.node_id} is shut down")
            return controller.record_heartbeat(heartbeat)
        raise NotController("the active controller is not reachable")

    def subscribe(self, max_pending: int = 1024) -> ImageSubscription:
        subscription = ImageSubscription(self, max_pending, self.image)  # type: ignore[arg-type]
        self._subscriptions.add(subscription)
        return subscription

    async def wait_until(self, predicate: Callable[[SimBridge], bool], timeout_s: float) -> None:
        with trio.move_on_after(timeout_s):
            while not predicate(self):
                with trio.move_on_after(0.05):
                    await self.changed.wait()
            return
        raise RequestTimedOut(f"controller {self.node_id}: condition not met in {timeout_s} s")


class SimController:
    """The controller quorum without Raft: one image, records applied in call order.

    Args:
        network: decides which brokers reach a majority of live voters.
        voters: the voter (= broker) ids; voter ``i`` is host ``host_of(i)``.
        host_of: a voter id's network host.
        config: the controller's decision config (electors, session timeout).
        tick_interval_s: how often ``tick`` runs (while some majority is connected).
        seed: seeds topic ids and replica placement.
    """

    def __init__(
        self,
        network: SimNetwork,
        voters: Sequence[int],
        host_of: Callable[[int], str],
        config: ControllerConfig,
        *,
        tick_interval_s: float = 0.25,
        seed: int = 0,
    ) -> None:
        self.network = network
        self.voters = list(voters)
        self.host_of = host_of
        self.config = config
        self.tick_interval_s = tick_interval_s
        self.rng = random.Random(seed)
        self.image = MetadataImage()
        self.controller_id = self.voters[0]
        self.bridges: dict[int, SimBridge] = {}
        self._history: list[list[ImageChange]] = []
        self.applied: list[MetadataRecord] = []
        """Every record applied, in order (a failing run's log)."""
        self.changed = trio.Event()
        """Set (and replaced) on every applied record."""
        self.liveness = BrokerLiveness()
        """Heartbeats, kept in memory as the active controller keeps them."""

    def reaches(self, node_id: int) -> bool:
        """Whether ``node_id`` is up and connected to a majority of live voters (itself too)."""
        if node_id not in self.bridges:
            return False
        me = self.host_of(node_id)
        connected = sum(1 for v in self.bridges if self.network.can_talk(me, self.host_of(v)))
        return connected > len(self.voters) // 2

    def has_quorum(self) -> bool:
        return any(self.reaches(v) for v in self.bridges)

    def apply(self, record: MetadataRecord) -> list[ImageChange]:
        self.image, changes = apply_record(self.image, record)
        self.applied.append(record)
        self._history.append(changes)
        self.sync()
        self.changed.set()
        self.changed = trio.Event()
        return changes

    def record_heartbeat(self, heartbeat: BrokerHeartbeat) -> bool:
        """Remembers a heartbeat and answers whether the broker is fenced (raises as
        ``BrokerLiveness.record`` does)."""
        liveness = self.liveness.for_epoch(self.image.controller_epoch)
        return liveness.record(self.image, heartbeat, self.now_ms()).fenced

    def sync(self) -> None:
        """Brings every bridge that reaches the quorum up to date (call after heals)."""
        for bridge in list(self.bridges.values()):
            if bridge._delivered < len(self._history) and self.reaches(bridge.node_id):
                changes = [c for batch in self._history[bridge._delivered :] for c in batch]
                bridge._delivered = len(self._history)
                bridge._deliver(self.image, changes)

    def now_ms(self) -> int:
        return _replica.now_ms()

    async def run(self, *, task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED) -> None:
        """Takes over as the active controller and ticks until cancelled.

        The active controller is a voter: when its broker crashes or is cut off from the
        majority, the lowest voter that still reaches a majority takes over (as a Raft election
        would), with the next controller epoch and an empty memory of heartbeats, so every
        broker must heartbeat to it, with fresh replica reports, before it fences or elects.
        """
        self.apply(ControllerEpochBump(self.controller_id, 1, self.now_ms()))
        task_status.started()
        while True:
            await trio.sleep(self.tick_interval_s)
            self.sync()
            if not self.has_quorum():
                continue
            if not self.reaches(self.controller_id):
                self.controller_id = min(v for v in self.bridges if self.reaches(v))
                epoch = self.image.controller_epoch + 1
                self.apply(ControllerEpochBump(self.controller_id, epoch, self.now_ms()))
                continue
            for record in tick(self.image, self.now_ms(), self.config, self.liveness):
                self.apply(record)

    def create_topic(
        self, name: str, partitions: int, replication_factor: int, configs: dict[str, str]
    ) -> None:
        """CreateTopics straight into the image (seeded placement, so a seed replays)."""
        record = plan_create_topic(
            self.image,
            name,
            partitions,
            replication_factor,
            topic_id=str(_uuid4(self.rng)),
            seed=self.rng.getrandbits(31),
            configs=configs,
        )
        changes = self.apply(record)
        for change in changes:
            if isinstance(change, Rejected):
                raise error_for_code(int(change.code))(change.reason)

    @contextlib.asynccontextmanager
    async def open_bridge(self, node_id: int) -> AsyncIterator[SimBridge]:
        """A broker's ``open_controller_bridge``."""
        bridge = SimBridge(self, node_id)
        self.bridges[node_id] = bridge
        self.sync()
        try:
            yield bridge
        finally:
            bridge.closed = True
            if self.bridges.get(node_id) is bridge:
                del self.bridges[node_id]
            for subscription in list(bridge._subscriptions):
                subscription.close()


def _uuid4(rng: random.Random) -> uuid.UUID:
    return uuid.UUID(int=rng.getrandbits(128), version=4)


# --- the cluster --------------------------------------------------------------------------------


class SimClusterBroker(ClusterBroker):
    """A :class:`ClusterBroker` whose crash closes its logs as a killed process leaves them."""

    crashed = False
    open_in_thread = False  # a thread's wait would let the autojumping clock run on

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        # Consumer groups are not simulated: their coordinator runs on the broker's wall clock.
        self.groups = None

    async def _send_heartbeat(self, heartbeat: BrokerHeartbeat) -> bool:
        assert isinstance(self.bridge, SimBridge)
        return await self.bridge.heartbeat(heartbeat)

    def close_data_dir(self) -> None:
        if self.crashed and self.logs is not None:
            for partition_log in self.logs.all_logs():
                partition_log.close(clean=False)
        super().close_data_dir()


@attrs.define(eq=False)
class _Node:
    broker_id: int
    broker: SimClusterBroker | None = None
    scope: trio.CancelScope | None = None
    incarnation: int = 0
    stopped: trio.Event | None = None
    """Set once the last incarnation's tasks unwound and its data dir is closed."""


class SimCluster:
    """N simulated brokers on a :class:`SimNetwork` with a :class:`SimController`.

    Use :func:`sim_cluster`. Hosts are ``b1``, ``b2``, ... (port 9092); the test's client is
    host ``client``.
    """

    def __init__(
        self,
        nursery: trio.Nursery,
        base_dir: Path,
        brokers: int,
        seed: int,
        *,
        network: SimNetwork | None = None,
        cluster_config: ClusterConfig | None = None,
        controller_config: ControllerConfig | None = None,
        cluster_options: dict[str, Any] | None = None,
    ) -> None:
        from quorumq.controller import electors_for
        from quorumq.replication import DEFAULT_STRATEGY, STRATEGIES

        self.seed = seed
        self._nursery = nursery
        self.base_dir = base_dir
        self.network = network or SimNetwork(seed)
        self.cluster_config = cluster_config or ClusterConfig(
            voters=",".join(f"{i}@sim-b{i}:1" for i in range(1, brokers + 1)),
            **(cluster_options or {}),
        )
        self.controller = SimController(
            self.network,
            list(range(1, brokers + 1)),
            self.host_of,
            controller_config
            or ControllerConfig(
                session_timeout_ms=self.cluster_config.session_timeout_ms,
                electors=electors_for(STRATEGIES),
                default_replication_strategy=DEFAULT_STRATEGY,
            ),
            tick_interval_s=self.cluster_config.controller_tick_s,
            seed=seed,
        )
        self.nodes = {i: _Node(i) for i in range(1, brokers + 1)}
        self.client_connect = self.network.connector("client")

    @staticmethod
    def host_of(broker_id: int) -> str:
        return f"b{broker_id}"

    def address_of(self, broker_id: int) -> Address:
        return (self.host_of(broker_id), 9092)

    @property
    def alive(self) -> list[int]:
        return [i for i, n in self.nodes.items() if n.broker is not None]

    async def start(self, broker_id: int) -> None:
        """Starts (or restarts, on its old data dir) one broker and waits for its listener."""
        node = self.nodes[broker_id]
        assert node.broker is None, f"broker {broker_id} is running"
        if node.stopped is not None:
            await node.stopped.wait()  # the killed incarnation still holds its data dir lock
        config = BrokerConfig(
            data_dir=self.base_dir / f"broker-{broker_id}",
            node_id=broker_id,
            host=self.host_of(broker_id),
            port=9092,
            auto_create_topics_enable=False,
        )

        def open_bridge(broker: ClusterBroker, directory: Path) -> Any:
            return self.controller.open_bridge(broker.config.node_id)

        broker = SimClusterBroker(
            config,
            self.cluster_config,
            listen=self.network.listen,
            connect=self.network.connector(self.host_of(broker_id)),
            open_bridge=open_bridge,
        )
        node.incarnation += 1
        node.broker = broker
        node.stopped = trio.Event()
        node.scope = await self._nursery.start(self._run, node, broker)

    async def _run(
        self,
        node: _Node,
        broker: SimClusterBroker,
        *,
        task_status: trio.TaskStatus[trio.CancelScope],
    ) -> None:
        stopped = node.stopped
        with trio.CancelScope() as scope:
            try:
                await broker.serve(task_status=_Relay(task_status, scope))
            finally:
                if node.broker is broker:
                    node.broker = None
                    node.scope = None
                if stopped is not None:
                    stopped.set()

    def crash(self, broker_id: int) -> None:
        """Kills a broker: its tasks are cancelled, its connections reset, its logs closed
        uncleanly (the next start runs log recovery)."""
        node = self.nodes[broker_id]
        broker, scope = node.broker, node.scope
        if broker is None or scope is None:
            return
        broker.crashed = True
        node.broker = None
        node.scope = None
        self.network.crash_host(self.host_of(broker_id))
        scope.cancel()
        bridge = self.controller.bridges.get(broker_id)
        if bridge is not None:  # gone at once, not when the cancelled tasks have unwound
            bridge.closed = True
            del self.controller.bridges[broker_id]
        self.network._changed()

    def all_unfenced(self) -> bool:
        """Whether the image lists every broker, unfenced."""
        brokers = self.controller.image.brokers
        return all(i in brokers and not brokers[i].fenced for i in self.nodes)

    def replicas(self, topic: str, index: int) -> dict[int, ReplicaPartition]:
        """The live brokers' replicas of one partition."""
        found = {}
        for broker_id, node in self.nodes.items():
            broker = node.broker
            if broker is None or broker.logs is None:
                continue
            replica = broker.partitions.get((topic, index))
            if isinstance(replica, ReplicaPartition) and not replica.log.closed:
                found[broker_id] = replica
        return found


class _Relay:
    """Hands the broker's cancel scope to ``nursery.start`` once its listener is up."""

    def __init__(self, status: trio.TaskStatus[trio.CancelScope], scope: trio.CancelScope) -> None:
        self._status = status
        self._scope = scope

    def started(self, value: Any = None) -> None:
        self._status.started(self._scope)


def seed_trio_scheduler(seed: int) -> None:
    """Seeds Trio's run-queue shuffle (private: ``trio._core._run._r``), so that a seed replays
    the same interleaving when Trio schedules deterministically (as under pytest-trio with
    hypothesis installed). Best effort: does nothing if Trio's internals moved."""
    try:
        from trio._core import _run
    except ImportError:  # pragma: no cover
        return
    generator = getattr(_run, "_r", None)
    if isinstance(generator, random.Random):
        generator.seed(seed)


async def _run_inline(job: Callable[[], None]) -> None:
    """The flusher's fsync runner inside a simulation: on the event loop, with a checkpoint as
    a thread hand-off would have."""
    await trio.lowlevel.checkpoint()
    job()


def _make_dir(directory: Path) -> None:
    directory.mkdir(parents=True, exist_ok=True)


@contextlib.asynccontextmanager
async def sim_cluster(
    base_dir: Path,
    *,
    brokers: int = 3,
    seed: int = 0,
    cluster_config: ClusterConfig | None = None,
    **cluster_options: Any,
) -> AsyncIterator[SimCluster]:
    """Starts a simulated cluster (run it under ``MockClock(autojump_threshold=0)``), waits until
    every broker registered, and tears it all down on exit.

    The replication shells' clock follows the Trio clock while it runs (and is restored after).
    ``cluster_options`` are :class:`ClusterConfig` fields (e.g. ``session_timeout_ms=3000``).
    """
    _make_dir(base_dir)
    seed_trio_scheduler(seed)
    saved_clock = _replica.clock_ms
    saved_offload = _flusher.offload
    _flusher.offload = _run_inline  # no real threads: they finish in real, not virtual, time
    # Milliseconds since the simulation started (MockClock starts at a random offset), on an
    # epoch-like base so that values look like wall-clock stamps.
    start = trio.current_time()
    # (+1e-6: a timer due at exactly k ms after the start must read k, whatever float rounding
    # the start time brings, or a replay starting at another virtual time diverges.)
    _replica.clock_ms = lambda: (
        SIM_EPOCH_MS + math.floor((trio.current_time() - start) * 1000 + 1e-6)
    )
    try:
        async with trio.open_nursery() as nursery:
            cluster = SimCluster(
                nursery,
                base_dir,
                brokers,
                seed,
                cluster_config=cluster_config,
                cluster_options=cluster_options,
            )
            await nursery.start(cluster.controller.run)
            for broker_id in cluster.nodes:
                await cluster.start(broker_id)
            for node in cluster.nodes.values():
                assert node.broker is not None
                await node.broker.wait_registered()
            while not cluster.all_unfenced():  # registered brokers are fenced until a heartbeat
                await cluster.controller.changed.wait()
            try:
                yield cluster
            finally:
                nursery.cancel_scope.cancel()
    finally:
        _replica.clock_ms = saved_clock
        _flusher.offload = saved_offload
