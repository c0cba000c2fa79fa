"""A broker that is a member of a replicated cluster (combined mode: also a controller voter).

Theory of operation: :class:`ClusterBroker` is the single :class:`Broker` plus four things that
run beside its listener, all under :meth:`ClusterBroker.serve`:

1. the controller voter (``open_controller_bridge``), the :class:`Controller` tick loop (active
   only on the Raft leader) and :class:`BrokerMembership` (register, heartbeat with replica
   reports for quorum elections);
2. the image follower: on every image change it reconciles each partition this broker hosts —
   leader (only while this broker is registered with its current epoch and unfenced), follower of
   the named leader, or idle (no leader) — synchronously, so no task keeps acting for an older
   epoch, and asks for an early heartbeat when a leader epoch moved (two-step quorum elections);
3. one :class:`FollowerFetcher` task per leader broker this broker follows;
4. the replica tick (ISR shrink/expand; ``isr`` proposals go to the controller as AlterPartition).

Requests: Metadata is built from the image (any broker answers for the whole cluster),
CreateTopics/DeleteTopics go through the controller (answered once committed, retried across
controller elections within the request timeout), OffsetForLeaderEpoch answers from the leader's
epoch cache, and Produce/Fetch/ListOffsets reach only partitions this broker leads
(NOT_LEADER_OR_FOLLOWER otherwise; the replica's hooks do epoch fencing, acks=all and the HW).
"""

from __future__ import annotations

import base64
import functools
import hashlib
import logging
import uuid
from collections.abc import Awaitable, Callable, Iterable
from contextlib import AbstractAsyncContextManager
from pathlib import Path
from typing import Any, TypeVar

import attrs
import trio

from quorumq import protocol as p
from quorumq._tls import client_context
from quorumq.broker._acls import (
    binding_values,
    check_creations,
    creation_results,
    deletion_results,
    match_deletions,
    security_disabled,
)
from quorumq.broker._alter_configs import (
    check_resource,
    config_delta,
    planned_configs,
    resource_result,
    response,
)
from quorumq.broker._broker import Broker, error_code_for
from quorumq.broker._config import BrokerConfig
from quorumq.broker._fetch_session import progress_refresh_s
from quorumq.broker._fetcher import FollowerFetcher
from quorumq.broker._handlers_extra import check_named_once, failed_topic
from quorumq.broker._lease import LeaderLease
from quorumq.broker._quotas import alter_result, check_alter_entries
from quorumq.broker._replica import FOLLOWER, IDLE, ReplicaPartition, now_ms
from quorumq.broker._sasl import (
    INTER_BROKER_USER,
    alter_response,
    check_alterations,
    static_credentials,
)
from quorumq.broker._server import Delayed, Held, open_listeners
from quorumq.broker._topics import TopicSpec
from quorumq.client._connection import SaslConfig, open_connection
from quorumq.controller import (
    BrokerMembership,
    Controller,
    ControllerBridge,
    ControllerConfig,
    MetadataImage,
    RaftConfig,
    ReplicaReport,
    electors_for,
    open_controller_bridge,
)
from quorumq.controller.image import (
    NO_LEADER,
    TOPIC_CONFIG_CHECKS,
    AlterPartition,
    BrokerHeartbeat,
    CreateAcl,
    DeleteAcl,
    PartitionState,
    TopicState,
    changed_partitions,
    check_heartbeat_mac,
    heartbeat_mac,
    validate_topic_configs,
    validate_topic_name,
)
from quorumq.errors import (
    CoordinatorNotAvailable,
    ErrorCode,
    InvalidConfig,
    InvalidRequest,
    NotController,
    NotLeaderOrFollower,
    QuorumqError,
    RequestTimedOut,
    TopicAuthorizationFailed,
    UnknownTopicOrPartition,
    error_for_code,
)
from quorumq.log import LogConfig, LogManager
from quorumq.log._manager import partition_dir_name
from quorumq.replication import DEFAULT_REPLICA_LAG_TIME_MAX_MS, DEFAULT_STRATEGY, STRATEGIES
from quorumq.security import PLAIN, SCRAM_SHA_256, SCRAM_SHA_512, AclBinding

log = logging.getLogger("quorumq.broker.cluster")

T = TypeVar("T")

OFFSETS_TOPIC = "__consumer_offsets"

HEARTBEAT_TIMEOUT_S = 1.0
"""Connect and answer bound of one BrokerHeartbeat to another broker's controller."""


@attrs.frozen
class ClusterConfig:
    """How a broker joins a cluster (``--controller-voters`` and friends).

    ``voters`` is ``"0@127.0.0.1:19092,1@127.0.0.1:19093,..."``: every broker is a voter (combined
    mode), its Raft port bound to the address given for its own id.
    """

    voters: str
    password: str | None = None
    raft_config: RaftConfig | None = None
    session_timeout_ms: int = 9000
    """``broker.session.timeout.ms``: silence after which a broker is fenced."""
    heartbeat_interval_s: float = 2.0
    """``broker.heartbeat.interval.ms`` / 1000."""
    controller_tick_s: float = 0.25
    default_replication_factor: int = 1
    """``default.replication.factor`` (CreateTopics with -1, auto-creation)."""
    replica_lag_time_max_ms: int = DEFAULT_REPLICA_LAG_TIME_MAX_MS
    replica_fetch_max_wait_ms: int = 500
    replica_tick_s: float = 0.25
    auto_leader_rebalance_enable: bool = True
    """``auto.leader.rebalance.enable``: the controller moves leadership back to preferred
    replicas (``controller.image.plan_leader_rebalance``)."""
    leader_imbalance_check_interval_ms: int = 300_000
    """``leader.imbalance.check.interval.seconds`` × 1000 (Kafka's default: 300 s)."""
    leader_imbalance_per_broker_percentage: int = 10
    """``leader.imbalance.per.broker.percentage``."""
    leader_transfer_timeout_ms: int | None = None
    """How long a quorum preferred election waits for its leader to drain before it is
    proposed anyway (``ControllerConfig.leader_transfer_timeout_ms``); None: two heartbeat
    intervals and a second, since the leader hears of it in a heartbeat answer."""
    controlled_shutdown_timeout_ms: int = 5_000
    """How long a stopping broker waits for the controller to move its leaderships away
    (:meth:`ClusterBroker.controlled_shutdown`, Kafka's ``controlled.shutdown.enable``);
    0: stop at once, leaving them to the session timeout."""
    crash_probe: bool = True
    """The active controller probes the listener of a broker silent for 1.5 heartbeat
    intervals (and, at its takeover, of every broker it has not heard from), and fences it at
    once if the connection is refused (its process is gone), instead of after a whole session
    (``BrokerLiveness.mark_gone``). A paused or cut-off broker still accepts, or does not
    answer at all, and waits out its session as before."""


CONTROLLED_SHUTDOWN_POLL_S = 0.05
"""How often a broker in controlled shutdown heartbeats to ask whether it may stop."""
CONTROLLED_SHUTDOWN_UNANSWERED_S = 2.0
"""A controlled shutdown gives up after this long without a heartbeat answered: there is no
controller to move the leaderships (a cluster losing its Raft majority), so waiting longer
would only delay the stop."""
CONTROLLER_RESIGN_TIMEOUT_S = 1.0
"""How long a stopping broker that is the active controller waits for another voter to take
the role over (an election round trip, usually a few milliseconds) before it stops anyway."""

OPENS_PER_PASS = 400
"""New replicas opened per batch. A batch is opened in a worker thread (file creation and
recovery, about 4 ms a replica here), so the event loop serves requests and heartbeats
meanwhile; between batches the image follower reconciles, so a broker given thousands of
replicas takes up its roles a batch at a time (``ClusterBroker._open_replicas``)."""

LIST_OFFSETS_HOLD_MS = 5_000
"""How long a ListOffsets (which carries no timeout of its own) may wait for a replica that is
still opening (:meth:`ClusterBroker._hold_while_opening`)."""


class ClusterBroker(Broker):
    """A broker in a cluster. Start it like :class:`Broker`:
    ``port = await nursery.start(broker.serve)``; it registers in the background
    (:meth:`wait_registered`)."""

    open_in_thread = True
    """Whether new replicas' files are opened in a worker thread (:meth:`_open_replicas`).
    The deterministic simulation opens them inline: under its autojumping MockClock, waiting
    for a thread would let simulated time run on."""

    def __init__(
        self,
        config: BrokerConfig,
        cluster: ClusterConfig,
        *,
        listen: Callable[[BrokerConfig], Awaitable[list[Any]]] = open_listeners,
        connect: Callable[..., AbstractAsyncContextManager[Any]] = open_connection,
        open_bridge: Callable[[ClusterBroker, Path], AbstractAsyncContextManager[Any]]
        | None = None,
    ) -> None:
        super().__init__(config, listen=listen)
        self.cluster = cluster
        self.fetch_sessions.refresh_s = progress_refresh_s(cluster.replica_lag_time_max_ms)
        # Seams for the deterministic simulation (quorumq.testing._sim): its in-memory network's
        # listeners and connect, and a single-threaded controller instead of the Raft voter.
        inter_broker = config.inter_broker_listener()
        if inter_broker.tls:
            # Brokers reach each other's listeners over TLS too, checking them against the
            # cluster's CA and showing their own certificate (for client authentication).
            peers = client_context(config.ssl_cafile, config.ssl_certfile, config.ssl_keyfile)
            connect = functools.partial(connect, ssl_context=peers)
        self._connect = connect
        if inter_broker.sasl:
            self._connect = self._inter_broker_login(connect)
        if self.authorizer is not None:
            if not inter_broker.sasl:
                raise InvalidRequest(
                    "an authorizer in a cluster needs SASL on the inter-broker listener "
                    "(--sasl-mechanism): without a login a broker's replica fetches cannot be "
                    "told from a client's"
                )
            self.authorizer = attrs.evolve(
                self.authorizer,
                super_users=self.authorizer.super_users | {f"User:{INTER_BROKER_USER}"},
            )
        self._open_bridge = open_bridge
        self.bridge: ControllerBridge | None = None
        self.controller: Controller | None = None
        self.membership: BrokerMembership | None = None
        self._transferring: set[ReplicaPartition] = set()
        """Replicas draining for a leadership transfer (``ReplicaPartition.begin_transfer``)."""
        self._should_shut_down = False
        """The last heartbeat answer said this broker, in controlled shutdown, may stop."""
        self.lease = LeaderLease(session_s=cluster.session_timeout_ms / 1000)
        """The leader lease (``lease_lost``): fed by heartbeat answers, replica fetches and
        the replica tick."""
        self.fetchers: dict[int, FollowerFetcher] = {}
        self._followed_lists: dict[int, list[ReplicaPartition]] = {}
        self._followed_version = -1
        self._led_list: list[ReplicaPartition] = []
        self._led_version = -1
        self._nursery: trio.Nursery | None = None
        self._outer_scope: trio.CancelScope | None = None
        self._cluster_scope: trio.CancelScope | None = None
        self._registered = trio.Event()
        self._creating: set[str] = set()
        self._to_open: dict[tuple[str, int], tuple[str, dict[str, str]]] = {}
        """Replicas the image gives this broker that are not open yet: (topic id, configs)."""
        self._reconciled: MetadataImage | None = None
        self._reconciled_live_self = False
        self._recheck: set[tuple[str, int]] = set()
        """Replicas opened since the last reconcile, which must look at them again."""
        self._opened = trio.Event()
        """Set (and replaced) after each reconcile, which is when opened replicas take up their
        roles: what a request held for an opening replica waits on."""
        self.partitions_reconciled = 0
        """How many partitions reconciles have looked at in all (they look at changes only)."""
        self.most_opened_in_one_pass = 0
        """The most new replicas one batch opened (at most :data:`OPENS_PER_PASS`)."""
        groups = getattr(self, "groups", None)
        if groups is not None:  # the group coordinator follows leadership from the image
            groups.standalone = False
            groups.leader_lookup = self._leader_lookup
        self._handlers[p.ApiKey.CREATE_TOPICS] = self._create_topics
        self._handlers[p.ApiKey.DELETE_TOPICS] = self._delete_topics
        self._handlers[p.ApiKey.CREATE_PARTITIONS] = self._create_partitions
        self._handlers[p.ApiKey.ALTER_CONFIGS] = functools.partial(self._alter_configs, False)
        self._handlers[p.ApiKey.INCREMENTAL_ALTER_CONFIGS] = functools.partial(
            self._alter_configs, True
        )
        self._handlers[p.ApiKey.ELECT_LEADERS] = self._elect_leaders
        self._handlers[p.ApiKey.BROKER_HEARTBEAT] = self._broker_heartbeat
        self._handlers[p.ApiKey.ALTER_CLIENT_QUOTAS] = self._alter_client_quotas
        self._handlers[p.ApiKey.ALTER_USER_SCRAM_CREDENTIALS] = self._alter_user_scram_credentials
        self._handlers[p.ApiKey.CREATE_ACLS] = self._create_acls
        self._handlers[p.ApiKey.DELETE_ACLS] = self._delete_acls
        for api_key, bound_ms in (
            (p.ApiKey.PRODUCE, _produce_hold_ms),
            (p.ApiKey.FETCH, _fetch_hold_ms),
            (p.ApiKey.LIST_OFFSETS, _list_offsets_hold_ms),
        ):
            self._handlers[api_key] = self._hold_while_opening(self._handlers[api_key], bound_ms)

    # --- lifecycle -----------------------------------------------------------------------------

    async def serve(self, *, task_status: trio.TaskStatus[int] = trio.TASK_STATUS_IGNORED) -> None:
        """Runs the listener and the cluster membership until cancelled (or :meth:`shutdown`).

        Raises:
            OSError: the listen address or the Raft port cannot be bound.
            InvalidConfig: this broker's id is not among the voters, or a malformed voter list.
        """
        with trio.CancelScope() as scope:
            self._outer_scope = scope
            async with trio.open_nursery() as nursery:
                port = await nursery.start(super().serve)
                await nursery.start(self._run_cluster_first_to_stop, port)
                task_status.started(port)

    async def _run_cluster_first_to_stop(
        self, port: int, *, task_status: trio.TaskStatus[None]
    ) -> None:
        """:meth:`_run_cluster` in a scope of its own, which :meth:`shutdown` cancels first;
        the rest of the broker stops once it has ended.

        Why: closing the logs blocks the event loop, for seconds with thousands of partitions
        (2,000: about 3 s). Meanwhile a voter that still ran would keep the Raft leadership of
        a controller that answers nothing, and the other voters would elect a new one only
        after. Stopped first, it leaves the quorum before the logs are closed.
        """
        with trio.CancelScope() as scope:
            self._cluster_scope = scope
            await self._run_cluster(port, task_status=task_status)
        if self._outer_scope is not None:
            self._outer_scope.cancel()

    def open_data_dir(self) -> None:
        super().open_data_dir()
        # Topics live in the controller's image; readers of ``broker.topics`` (DescribeConfigs,
        # the group coordinator) see that instead of the single-broker topic store.
        self.topics = ImageTopics(self)  # type: ignore[assignment]
        # One id for the whole cluster (clients compare the brokers' answers): derived from the
        # voter set rather than from each broker's own data dir.
        digest = hashlib.sha256(",".join(sorted(self._voter_ids())).encode()).digest()
        self.cluster_id = base64.urlsafe_b64encode(digest[:16]).decode().rstrip("=")

    def _voter_ids(self) -> list[str]:
        return [entry.split("@", 1)[0].strip() for entry in self.cluster.voters.split(",")]

    def shutdown(self) -> None:
        """Stops :meth:`serve`: the cluster part first (replicas, membership, the Raft
        voter), then the rest, which closes the logs only once nothing uses them (a replica
        opening in a worker thread finishes first). Unlike the single broker's, this stop
        does not wait for connections to answer what they have read."""
        self.stopping = True
        if self._cluster_scope is not None:
            self._cluster_scope.cancel()
        elif self._outer_scope is not None:
            self._outer_scope.cancel()

    async def wait_registered(self) -> None:
        """Returns once this broker is registered with the controller."""
        await self._registered.wait()

    async def _run_cluster(self, port: int, *, task_status: trio.TaskStatus[None]) -> None:
        controller_dir = Path(self.config.data_dir) / "controller"
        controller_dir.mkdir(exist_ok=True)
        if self._open_bridge is not None:
            opened = self._open_bridge(self, controller_dir)
        else:
            opened = open_controller_bridge(
                self.config.node_id,
                self.cluster.voters,
                controller_dir,
                password=self.cluster.password,
                raft_config=self.cluster.raft_config,
            )
        async with opened as bridge:
            self.bridge = bridge
            self.controller = Controller(
                bridge,
                ControllerConfig(
                    session_timeout_ms=self.cluster.session_timeout_ms,
                    electors=electors_for(STRATEGIES),
                    default_replication_strategy=DEFAULT_STRATEGY,
                    auto_leader_rebalance_enable=self.cluster.auto_leader_rebalance_enable,
                    leader_imbalance_check_interval_ms=(
                        self.cluster.leader_imbalance_check_interval_ms
                    ),
                    leader_imbalance_per_broker_percentage=(
                        self.cluster.leader_imbalance_per_broker_percentage
                    ),
                    leader_transfer_timeout_ms=(
                        int(2000 * self.cluster.heartbeat_interval_s) + 1000
                        if self.cluster.leader_transfer_timeout_ms is None
                        else self.cluster.leader_transfer_timeout_ms
                    ),
                    crash_probe_after_ms=(
                        int(1500 * self.cluster.heartbeat_interval_s)
                        if self.cluster.crash_probe
                        else 0
                    ),
                ),
                tick_interval_s=self.cluster.controller_tick_s,
                clock_ms=now_ms,
            )
            inter_broker = self.config.inter_broker_listener().name
            host, port = self.endpoints.get(inter_broker, (self.config.advertised, port))
            self.membership = BrokerMembership(
                bridge,
                self.config.node_id,
                host,
                port,
                listeners=[(name, *endpoint) for name, endpoint in self.endpoints.items()],
                send_heartbeat=self._send_heartbeat,
                heartbeat_interval_s=self.cluster.heartbeat_interval_s,
                reports=self._reports,
                clock_ms=now_ms,
            )
            try:
                async with trio.open_nursery() as nursery:
                    self._nursery = nursery
                    nursery.start_soon(self.controller.run)
                    nursery.start_soon(self._follow_image)
                    nursery.start_soon(self._run_membership)
                    nursery.start_soon(self._tick_replicas)
                    task_status.started()
            finally:
                self._nursery = None
                for partition in list(self.partitions.values()):
                    if isinstance(partition, ReplicaPartition):
                        partition.stop()

    async def _run_membership(self) -> None:
        assert self.membership is not None

        async def registered(*, task_status: trio.TaskStatus[int]) -> None:
            assert self.membership is not None
            await self.membership.run(task_status=task_status)

        assert self._nursery is not None
        epoch = await self._nursery.start(registered)
        log.info("broker %d registered with broker epoch %d", self.config.node_id, epoch)
        self._registered.set()
        self._reconcile()

    # --- following the image -----------------------------------------------------------------

    async def _follow_image(self) -> None:
        assert self.bridge is not None
        controller_epoch = self.bridge.image.controller_epoch
        while True:
            changed = self.bridge.changed
            if self.bridge.image.controller_epoch != controller_epoch:
                # A new active controller has heard no heartbeat yet: the first one carries
                # the reports its quorum elections wait for.
                controller_epoch = self.bridge.image.controller_epoch
                if self.membership is not None and self.membership.broker_epoch:
                    self.membership.request_heartbeat()
            self.throttler.table = self.bridge.image.client_quotas
            self.user_credentials = self.bridge.image.scram_credentials
            if self.authorizer is not None and self.authorizer.acls is not self.bridge.image.acls:
                self.authorizer = self.authorizer.with_acls(self.bridge.image.acls)
            self._reconcile()
            self._opened.set()
            self._opened = trio.Event()
            if self._to_open:
                await self._open_replicas()
                continue
            await changed.wait()

    def _is_live_self(self, image: MetadataImage) -> bool:
        me = image.brokers.get(self.config.node_id)
        return (
            me is not None
            and self.membership is not None
            and self.membership.broker_epoch == me.broker_epoch
            and not me.fenced
        )

    @property
    def roles_current(self) -> bool:
        """Whether every replica the image's topics give this broker is open and in the role
        the image names (the image follower has caught up)."""
        if self.bridge is None or self._reconciled is None:
            return False
        image = self.bridge.image
        return (
            self._reconciled.topics is image.topics
            and self._reconciled_live_self == self._is_live_self(image)
            and not self._to_open
            and not self._recheck
        )

    def _follow_state(self, key: tuple[str, int]) -> tuple[int | None, int]:
        """(leader followed or None, fetch generation): what a fetcher must notice change."""
        partition = self.partitions.get(key)
        if not isinstance(partition, ReplicaPartition):
            return None, 0
        follower = partition.follower
        return (None if follower is None else follower.leader_id), partition.fetch_generation

    def _reconcile(self, *, full: bool = False) -> None:
        """Makes the local replicas' roles match the image (synchronous: see module doc).

        Only what changed since the last pass is looked at: partitions whose state differs
        from the image last reconciled (images share every part a record did not change, so
        this is an identity check), all partitions of a topic whose configs or id changed, and
        the replicas of deleted topics, plus replicas just opened. Why: a pass over every
        partition costs in proportion to all the broker hosts, and a failover of thousands of
        partitions changes the image many times. All of them are looked at on the first pass,
        when this broker's own standing (registered, fenced) changed, since that decides every
        role it holds, or when asked (``full``). Replicas not open yet are queued for
        :meth:`_open_replicas`.
        """
        if self.bridge is None or self.logs is None:
            return
        image = self.bridge.image
        node = self.config.node_id
        live_self = self._is_live_self(image)
        last = self._reconciled
        if full or last is None or live_self != self._reconciled_live_self:
            touched: list[tuple[TopicState, list[tuple[int, PartitionState]]]] = [
                (topic, list(topic.partitions.items())) for topic in image.topics.values()
            ]
            examined = {k for k, v in self.partitions.items() if isinstance(v, ReplicaPartition)}
            examined.update(self._to_open)
        else:
            touched, replaced = changed_partitions(last, image)
            examined = {key for key in (*self.partitions, *self._to_open) if key[0] in replaced}
            for key in self._recheck:
                examined.add(key)  # dropped below unless the image still gives it to us
                topic = image.topics.get(key[0])
                state = None if topic is None else topic.partitions.get(key[1])
                if topic is not None and state is not None:
                    touched.append((topic, [(key[1], state)]))
        self._reconciled, self._reconciled_live_self = image, live_self
        self._recheck = set()
        for topic, partitions in touched:
            examined.update((topic.name, index) for index, _ in partitions)
        before = {key: self._follow_state(key) for key in examined}
        self.partitions_reconciled += len(examined)
        epochs_moved = False
        wanted: set[tuple[str, int]] = set()
        for topic, partitions in touched:
            configs = dict(topic.configs)
            strategy = configs.get("replication.strategy", DEFAULT_STRATEGY)
            min_isr = _int_config(configs, "min.insync.replicas", 1)
            log_config = _log_config(configs)  # AlterConfigs reaches open logs here
            for index, state in partitions:
                if node not in state.replicas:
                    continue
                key = (topic.name, index)
                wanted.add(key)
                replica = self.partitions.get(key)
                if not isinstance(replica, ReplicaPartition) or replica.topic_id != topic.topic_id:
                    if replica is not None:
                        self._drop(key)
                    self._to_open[key] = (topic.topic_id, configs)
                    continue
                self._to_open.pop(key, None)
                replica.configure(strategy, min_isr, self.cluster.replica_lag_time_max_ms)
                if log_config is not None and replica.log.config != log_config:
                    replica.log.config = log_config
                old_epoch = replica.leader_epoch
                was_leader = replica.leader is not None
                if state.leader == node and live_self:
                    replica.become_leader(
                        state.leader_epoch, state.partition_epoch, state.replicas, state.isr
                    )
                elif state.leader not in (NO_LEADER, node):
                    replica.become_follower(
                        state.leader,
                        state.leader_epoch,
                        state.partition_epoch,
                        state.replicas,
                        state.isr,
                    )
                else:
                    replica.become_idle(
                        state.leader,
                        state.leader_epoch,
                        state.partition_epoch,
                        state.replicas,
                        state.isr,
                    )
                if replica.leader_epoch != old_epoch:
                    epochs_moved = True
                if (replica.leader is not None) != was_leader:
                    self._on_leadership(topic.name, index, replica.leader is not None)
        moved: set[int] = set()
        following: set[int] = set()
        for key in examined:
            if key not in wanted:
                self._to_open.pop(key, None)
                if isinstance(self.partitions.get(key), ReplicaPartition):
                    self._drop(key)
            after = self._follow_state(key)
            if after[0] is not None:
                following.add(after[0])
            if after != before[key]:
                moved.update(leader for leader in (before[key][0], after[0]) if leader is not None)
        for leader_id in following:
            self._ensure_fetcher(leader_id)
        for leader_id in moved:
            fetcher = self.fetchers.get(leader_id)
            if fetcher is not None:
                fetcher.wake()
        if epochs_moved and self.membership is not None and self.membership.broker_epoch:
            self.membership.request_heartbeat()

    async def _open_replicas(self) -> None:
        """Opens up to :data:`OPENS_PER_PASS` queued replicas in a worker thread; the next
        reconcile looks at them again, which gives them their roles (or drops them, if the
        image moved on while they were opening).

        Why a thread: creating a replica's files and recovering its log took about 4 ms each
        (mostly the file system); 2,000 of them opened on the event loop stopped this broker
        serving for seconds, long enough to miss heartbeats and be fenced, and made a
        restarted broker slow to report for the next failover. Only files are touched there;
        the replicas join the broker back on the event loop."""
        batch = list(self._to_open.items())[:OPENS_PER_PASS]
        assert self.logs is not None
        logs = self.logs  # the thread must not look at self.logs: a shutdown clears it
        now = now_ms()
        opened: list[tuple[tuple[str, int], ReplicaPartition]] = []

        def open_files() -> None:
            for key, (topic_id, configs) in batch:
                opened.append((key, self._open_replica_files(logs, key, topic_id, configs, now)))

        try:
            if self.open_in_thread:
                await trio.to_thread.run_sync(open_files)
            else:
                open_files()
            # A cancellation that came while the thread ran is delivered here, before the
            # logs are adopted: a broker stopped all at once (not by :meth:`shutdown`) has
            # closed its data dir meanwhile, and ``self.logs`` is gone.
            await trio.lowlevel.checkpoint()
        except BaseException:
            # Cancelled (a shutdown) once the thread was done: these logs were never adopted,
            # so nothing else would close them.
            for _, replica in opened:
                replica.log.close()
            raise
        for key, replica in opened:
            self._register(key, replica)
            if self._to_open.get(key, ("",))[0] == replica.topic_id:
                del self._to_open[key]
            self._recheck.add(key)
        self.most_opened_in_one_pass = max(self.most_opened_in_one_pass, len(opened))

    def _hold_while_opening(
        self, handler: Callable[[p.RequestHeader, Any], Any], bound_ms: Callable[[Any], int]
    ) -> Callable[[p.RequestHeader, Any], Any]:
        """Wraps a Produce, Fetch or ListOffsets handler so that a request naming a replica
        this broker is still opening waits for it (up to ``bound_ms(request)``, then it is
        answered as it stands, NOT_LEADER_OR_FOLLOWER for what is still not open).

        Why: Metadata, built from the image, names a new topic's leaders at once, while their
        files open in a worker thread; an acks=0 producer writing into that window would lose
        its records without being told (Kafka closes the connection, after the fact), and
        every other client would pay a retry back-off. The wait holds the connection's reader,
        so the requests behind it keep their order."""

        def handle(header: p.RequestHeader, request: Any) -> Any:
            to_open = self._to_open
            if to_open:
                waiting = [
                    (topic.name, part.partition_index)
                    for topic in request.topics
                    for part in topic.partitions
                    if (topic.name, part.partition_index) in to_open
                ]
                if waiting:
                    deadline = trio.current_time() + max(bound_ms(request), 0) / 1000
                    return Held(
                        functools.partial(self._wait_opened, waiting, deadline),
                        functools.partial(handler, header, request),
                    )
            return handler(header, request)

        return handle

    async def _wait_opened(self, keys: list[tuple[str, int]], deadline: float) -> None:
        with trio.move_on_at(deadline):
            while any(key in self._to_open for key in keys):
                await self._opened.wait()

    def _open_replica_files(
        self,
        logs: LogManager,
        key: tuple[str, int],
        topic_id: str,
        configs: dict[str, str],
        now: int,
    ) -> ReplicaPartition:
        """Opens (or creates) a replica's log and checkpoints; touches only its own files, so
        a worker thread may run it (:meth:`_register` then adds it, on the event loop)."""
        topic, index = key
        partition_log = logs.open_log(topic, index, _log_config(configs), now)
        return ReplicaPartition.open(
            topic,
            index,
            partition_log,
            broker_id=self.config.node_id,
            topic_id=topic_id,
            directory=Path(self.config.data_dir) / partition_dir_name(topic, index),
        )

    def _register(self, key: tuple[str, int], replica: ReplicaPartition) -> None:
        assert self.logs is not None
        self.logs.adopt(key[0], key[1], replica.log)
        replica.on_isr_proposal = self._on_isr_proposal
        replica.request_flush = self._request_flush
        replica.lease_lost = self.lease_lost
        self.partitions[key] = replica

    def _on_leadership(self, topic: str, index: int, leads: bool) -> None:
        """Tells the group coordinator when an ``__consumer_offsets`` partition moves."""
        groups = getattr(self, "groups", None)
        if groups is None or topic != OFFSETS_TOPIC:
            return
        if leads:
            groups.on_become_leader(index)
        else:
            groups.on_stop_leading(index)

    def _leader_lookup(self, topic: str, index: int) -> tuple[int, str, int] | None:
        """(node id, host, port) of a partition's live leader (FindCoordinator)."""
        if self.bridge is None:
            return None
        image = self.bridge.image
        state = image.topics.get(topic)
        partition = None if state is None else state.partitions.get(index)
        if partition is None:
            return None
        broker = image.brokers.get(partition.leader)
        if broker is None or broker.fenced:
            return None
        endpoint = broker.endpoint(self._request_listener)
        return None if endpoint is None else (broker.broker_id, *endpoint)

    def create_topic(
        self, name: str, partitions: int, configs: dict[str, str | None] | None = None
    ) -> TopicSpec:
        """Starts creating a topic through the controller (the group coordinator's
        ``__consumer_offsets``); the caller asks again later.

        Raises:
            CoordinatorNotAvailable: always: the topic exists only once the controller commits.
        """
        if self.bridge is not None and name in self.bridge.image.topics:
            return self.topics.get(name)  # type: ignore[union-attr]
        live = (
            sum(1 for b in self.bridge.image.brokers.values() if not b.fenced)
            if (self.bridge is not None)
            else 0
        )
        if partitions == -1:
            partitions = self.config.num_partitions
        self._create_in_background(
            name,
            partitions,
            max(1, min(3, live)),
            {k: v for k, v in (configs or {}).items() if v is not None},
        )
        raise CoordinatorNotAvailable(f"topic {name!r} is being created")

    def _drop(self, key: tuple[str, int]) -> None:
        partition = self.partitions.pop(key, None)
        if isinstance(partition, ReplicaPartition):
            if partition.leader is not None:
                self._on_leadership(key[0], key[1], False)
            partition.stop()
            if self.logs is not None:
                self.logs.delete(*key)
            log.info("broker %d dropped replica %s-%d", self.config.node_id, *key)

    def _reports(self) -> list[ReplicaReport]:
        """Reports for the replicas of leaderless partitions only.

        Why only those: the one reader is the quorum elector, which elects a leaderless
        partition from reports made after its epoch ended (``requires_fresh_reports``); a report
        on a partition that has a leader is never read. Reporting all of them made, with 2,000
        partitions, every heartbeat a 207 KB message, every 2 s per broker (measured when
        heartbeats were still Raft records: docs/benchmarks.md). A heartbeat replaces the
        broker's reports, so those of partitions that got a leader are dropped with the next."""
        reports = []
        for (topic, index), partition in self.partitions.items():
            if (
                isinstance(partition, ReplicaPartition)
                and partition.role == IDLE
                and partition.leader_id == NO_LEADER
            ):
                last_epoch, leo, current = partition.report()
                reports.append(ReplicaReport(topic, index, last_epoch, leo, current))
        return reports

    # --- fetchers (ReplicaSource) ------------------------------------------------------------

    @property
    def broker_id(self) -> int:
        return self.config.node_id

    def leader_address(self, leader_id: int) -> tuple[str, int] | None:
        if self.bridge is None:
            return None
        broker = self.bridge.image.brokers.get(leader_id)
        return None if broker is None else (broker.host, broker.port)

    def followed_from(self, leader_id: int) -> list[ReplicaPartition]:
        """The replicas following ``leader_id``: the same list object until a role changes
        (``ReplicaPartition.role_changes``), which is how the fetcher knows that nothing but
        positions moved, and every round need not scan every partition of the broker."""
        if self._followed_version != ReplicaPartition.role_changes:
            followed: dict[int, list[ReplicaPartition]] = {}
            for partition in self.partitions.values():
                if (
                    isinstance(partition, ReplicaPartition)
                    and partition.role == FOLLOWER
                    and partition.follower is not None
                ):
                    followed.setdefault(partition.follower.leader_id, []).append(partition)
            self._followed_lists = followed
            self._followed_version = ReplicaPartition.role_changes
        return self._followed_lists.get(leader_id, [])

    def _ensure_fetcher(self, leader_id: int) -> None:
        if leader_id in self.fetchers or self._nursery is None:
            return
        fetcher = FollowerFetcher(
            self,
            leader_id,
            max_wait_ms=self.cluster.replica_fetch_max_wait_ms,
            connect=self._connect,
        )
        self.fetchers[leader_id] = fetcher

        async def run() -> None:
            try:
                await fetcher.run()
            finally:
                if self.fetchers.get(leader_id) is fetcher:
                    del self.fetchers[leader_id]

        self._nursery.start_soon(run)

    # --- leader-side ISR ---------------------------------------------------------------------

    async def _tick_replicas(self) -> None:
        last_saved = trio.current_time()
        while True:
            await trio.sleep(self.cluster.replica_tick_s)
            save = trio.current_time() - last_saved >= 1.0
            self._tick_round(now_ms(), save=save)
            if save:
                last_saved = trio.current_time()

    def _tick_round(self, now: int, *, save: bool) -> None:
        """ISR checks on the replicas this broker leads (only a leader has any), and with
        ``save`` the HW files of all replicas (each writes only if its HW moved)."""
        lease = self.lease
        lease.refresh(trio.current_time(), image_shows_fenced=self._image_shows_fenced())
        check = lease.in_doubt
        for replica in self._led():
            replica.tick(now)
            if check and self.lease_lost(replica):
                replica.notify_high_watermark()  # parked acks=all requests fail, clients move
        if save:
            for partition in list(self.partitions.values()):
                if isinstance(partition, ReplicaPartition):
                    partition.save_high_watermark()

    def _led(self) -> list[ReplicaPartition]:
        """The replicas this broker leads: the same list until a role changes anywhere
        (``ReplicaPartition.role_changes``), as :meth:`followed_from` does for followers."""
        if self._led_version != ReplicaPartition.role_changes:
            self._led_list = [
                p
                for p in self.partitions.values()
                if isinstance(p, ReplicaPartition) and p.leader is not None
            ]
            self._led_version = ReplicaPartition.role_changes
        return self._led_list

    def _request_flush(self, replica: ReplicaPartition, offset: int) -> None:
        """flush.messages=1 on a leader: once ``offset`` is fsynced, the HW may count it."""
        if self._nursery is None or self.flusher is None or offset in replica.flush_requested:
            return
        flusher = self.flusher
        replica.flush_requested.add(offset)

        async def flush() -> None:
            try:
                await flusher.wait_flushed(replica.log, offset)
            except QuorumqError as exc:
                log.warning("%s-%d: flush failed: %s", replica.topic, replica.index, exc)
            finally:
                replica.flush_requested.discard(offset)
            replica.notify_append()

        self._nursery.start_soon(flush)

    def _on_isr_proposal(self, replica: ReplicaPartition) -> None:
        if self._nursery is not None:
            self._nursery.start_soon(self._propose_isr, replica)

    async def _propose_isr(self, replica: ReplicaPartition) -> None:
        change = replica.isr_proposal
        replica.isr_proposal = None
        leader = replica.leader
        if change is None or leader is None or self.bridge is None:
            return
        record = AlterPartition(
            replica.topic,
            replica.topic_id,
            replica.index,
            change.leader_id,
            change.leader_epoch,
            change.partition_epoch,
            tuple(r for r in replica.replicas if r in change.isr),
        )
        try:
            await self.bridge.propose(record, timeout_s=5.0)
        except QuorumqError as exc:
            log.info("%s-%d: ISR change %s refused: %s", replica.topic, replica.index, change, exc)
            if replica.leader is leader:
                leader.on_isr_rejected()
            return
        if replica.leader is leader and leader.pending_isr is not None:
            self._reconcile()

    # --- requests ----------------------------------------------------------------------------

    def partition(self, topic: str, index: int) -> Any:
        """The partition if this broker leads it.

        Raises:
            NotLeaderOrFollower: another broker leads it (or nobody, right now).
            UnknownTopicOrPartition: no such partition in the cluster.
        """
        partition = self.partitions.get((topic, index))
        if isinstance(partition, ReplicaPartition):
            partition.require_leader()
            return partition
        image = self.bridge.image if self.bridge is not None else None
        if image is not None:
            state = image.topics.get(topic)
            if state is not None and index in state.partitions:
                raise NotLeaderOrFollower(
                    f"broker {self.config.node_id} is not the leader of {topic}-{index}"
                )
        raise UnknownTopicOrPartition(f"unknown topic-partition {topic}-{index}")

    def _metadata(self, header: p.RequestHeader, request: p.MetadataRequest) -> Any:
        # Before the voter is up (the listener starts first) the image is empty.
        image = self.bridge.image if self.bridge is not None else MetadataImage()
        live = {b.broker_id for b in image.brokers.values() if not b.fenced}
        # A lost lease: clients that know only this broker must look elsewhere.
        lease_check = self.lease.in_doubt
        if lease_check and self.lease.unlisted(trio.current_time()):
            live.discard(self.config.node_id)
        # Each live broker's address on the listener this request came in on; a broker
        # without that listener is left out, as Kafka does.
        reachable: dict[int, tuple[str, int, str | None]] = {}
        for broker_id in live:
            state = image.brokers[broker_id]
            endpoint = state.endpoint(self._request_listener)
            if endpoint is not None:
                reachable[broker_id] = (*endpoint, state.rack)
        if request.topics is None:
            names = list(image.topics)
        else:
            names = [t.name for t in request.topics if t.name is not None]
        auto_create = (
            self.config.auto_create_topics_enable
            and request.topics is not None
            and (header.api_version < 4 or request.allow_auto_topic_creation)
        )
        may_create = self._topic_check  # None: no authorizer, or CREATE on the cluster
        topics = []
        for name in names:
            topic = image.topics.get(name)
            if topic is None:
                code = ErrorCode.UNKNOWN_TOPIC_OR_PARTITION
                try:
                    if auto_create and may_create is not None and not may_create(name):
                        raise TopicAuthorizationFailed(f"may not create {name!r}")
                    validate_topic_name(name)
                    if auto_create:
                        self._auto_create(name, len(live))
                        code = ErrorCode.LEADER_NOT_AVAILABLE
                except QuorumqError as exc:
                    code = exc.code
                topics.append(p.MetadataResponseTopic(error_code=int(code), name=name))
                continue
            partitions = []
            for index in sorted(topic.partitions):
                state = topic.partitions[index]
                leader = state.leader if state.leader in live else NO_LEADER
                isr = state.isr
                local = self.partitions.get((name, index))
                if (
                    leader == self.config.node_id
                    and lease_check
                    and isinstance(local, ReplicaPartition)
                    and self.lease_lost(local)
                ):
                    leader = NO_LEADER  # it may have been replaced: clients ask elsewhere
                if isinstance(local, ReplicaPartition) and local.leader is not None:
                    isr = local.isr
                error = 0
                if leader == NO_LEADER:
                    error = ErrorCode.LEADER_NOT_AVAILABLE
                elif leader not in reachable:  # no such listener there: Kafka's answer
                    error = ErrorCode.LISTENER_NOT_FOUND
                partitions.append(
                    p.MetadataResponsePartition(
                        error_code=error,
                        partition_index=index,
                        leader_id=leader,
                        leader_epoch=state.leader_epoch,
                        replica_nodes=list(state.replicas),
                        isr_nodes=list(isr),
                        offline_replicas=[r for r in state.replicas if r not in live],
                    )
                )
            topics.append(
                p.MetadataResponseTopic(
                    error_code=0,
                    name=name,
                    topic_id=uuid.UUID(topic.topic_id),
                    is_internal=False,
                    partitions=partitions,
                )
            )
        controller_id = image.controller_id
        if controller_id not in live:
            raft_leader = self.bridge.leader_id if self.bridge is not None else None
            controller_id = raft_leader if raft_leader is not None else -1
        return p.MetadataResponse(
            brokers=[
                p.MetadataResponseBroker(node_id=broker_id, host=host, port=port, rack=rack)
                for broker_id, (host, port, rack) in sorted(reachable.items())
            ],
            cluster_id=self.cluster_id,
            controller_id=controller_id,
            topics=topics,
        )

    def _auto_create(self, name: str, live_brokers: int) -> None:
        rf = max(1, min(self.cluster.default_replication_factor, live_brokers))
        self._create_in_background(name, self.config.num_partitions, rf, {})

    def _create_in_background(
        self, name: str, partitions: int, rf: int, configs: dict[str, str]
    ) -> None:
        if self._nursery is None or self.controller is None or name in self._creating:
            return
        controller = self.controller
        self._creating.add(name)

        async def create() -> None:
            try:
                await controller.create_topic(name, partitions, rf, configs=configs)
            except QuorumqError as exc:
                log.info("background creation of %r: %s", name, exc)
            finally:
                self._creating.discard(name)

        self._nursery.start_soon(create)

    async def _controller_by(self, deadline: float) -> Controller:
        """The controller service, once the voter is up (it starts after the listener).

        Raises:
            NotController: not up by ``deadline``.
        """
        while self.controller is None or self.bridge is None:
            if trio.current_time() >= deadline:
                raise NotController(f"broker {self.config.node_id}: controller not started")
            await trio.sleep(0.05)
        return self.controller

    async def _through_controller(self, call: Callable[[], Awaitable[T]], deadline: float) -> T:
        """Runs a controller write, retrying across elections until ``deadline`` (trio clock)."""
        await self._controller_by(deadline)
        while True:
            try:
                return await call()
            except (NotController, RequestTimedOut):
                if trio.current_time() + 0.1 >= deadline:
                    raise
                await trio.sleep(0.1)

    def _create_topics(self, header: p.RequestHeader, request: Any) -> Any:
        deadline = trio.current_time() + max(request.timeout_ms, 1000) / 1000
        names = [t.name for t in request.topics]

        async def create_all() -> Any:
            try:
                controller = await self._controller_by(deadline)
            except NotController as exc:
                code = error_code_for(exc, "create topics")
                return p.CreateTopicsResponse(
                    topics=[p.CreatableTopicResult(name=name, error_code=code) for name in names]
                )
            assert self.bridge is not None
            live = sum(1 for b in self.bridge.image.brokers.values() if not b.fenced)
            results = []
            for topic in request.topics:
                try:
                    check_named_once(names, topic.name)
                    configs = {c.name: c.value for c in topic.configs}
                    if any(v is None for v in configs.values()):
                        raise InvalidConfig("topic config without a value")
                    assignments = None
                    partitions = topic.num_partitions
                    rf = topic.replication_factor
                    if topic.assignments:
                        if partitions != -1 or rf != -1:
                            raise InvalidRequest(
                                "give either assignments or partitions and replication factor"
                            )
                        assignments = {
                            a.partition_index: list(a.broker_ids) for a in topic.assignments
                        }
                        partitions = len(assignments)
                        rf = len(next(iter(assignments.values())))
                    if partitions == -1:
                        partitions = self.config.num_partitions
                    if rf == -1:
                        rf = max(1, min(self.cluster.default_replication_factor, live))
                    record = await self._through_controller(
                        lambda topic=topic, partitions=partitions, rf=rf, configs=configs, a=(assignments): (
                            controller.create_topic(
                                topic.name,
                                partitions,
                                rf,
                                configs=configs,  # type: ignore[arg-type]
                                assignments=a,
                                validate_only=request.validate_only,
                            )
                        ),
                        deadline,
                    )
                    results.append(
                        p.CreatableTopicResult(
                            name=topic.name,
                            error_code=0,
                            num_partitions=len(record.assignments),
                            replication_factor=len(record.assignments[0]),
                        )
                    )
                except Exception as exc:
                    what = "create topic"
                    results.append(failed_topic(p.CreatableTopicResult, topic.name, exc, what))
            return p.CreateTopicsResponse(topics=results)

        return Delayed(create_all)

    def _create_partitions(self, header: p.RequestHeader, request: Any) -> Any:
        """CreatePartitions through the controller: one CreatePartitions record per topic;
        every broker opens its new replicas when it applies the image."""
        deadline = trio.current_time() + max(request.timeout_ms, 1000) / 1000
        names = [t.name for t in request.topics]

        async def create_all() -> Any:
            results = []
            for topic in request.topics:
                try:
                    check_named_once(names, topic.name)
                    assignments = (
                        None
                        if topic.assignments is None
                        else [list(a.broker_ids) for a in topic.assignments]
                    )
                    await self._through_controller(
                        lambda topic=topic, a=assignments: (
                            self._controller_or_raise().create_partitions(
                                topic.name,
                                topic.count,
                                assignments=a,
                                validate_only=request.validate_only,
                            )
                        ),
                        deadline,
                    )
                    results.append(p.CreatePartitionsTopicResult(name=topic.name))
                except Exception as exc:
                    what = "create partitions of"
                    results.append(
                        failed_topic(p.CreatePartitionsTopicResult, topic.name, exc, what)
                    )
            return p.CreatePartitionsResponse(results=results)

        return Delayed(create_all)

    def _alter_configs(self, incremental: bool, header: p.RequestHeader, request: Any) -> Any:
        """AlterConfigs / IncrementalAlterConfigs through the controller: each topic's change
        is a ConfigChange record of the difference, which every replica applies from the image
        (:meth:`_reconcile`)."""
        deadline = trio.current_time() + ALTER_CONFIGS_TIMEOUT_S

        async def alter_all() -> Any:
            results = []
            for resource in request.resources:
                try:
                    check_resource(resource)
                    await self._controller_by(deadline)
                    assert self.bridge is not None
                    topic = self.bridge.image.topics.get(resource.resource_name)
                    if topic is None:
                        raise UnknownTopicOrPartition(f"no topic {resource.resource_name!r}")
                    after = planned_configs(
                        resource, topic.configs, incremental=incremental, known=TOPIC_CONFIG_CHECKS
                    )
                    validate_topic_configs(after)
                    LogConfig.from_topic_config(after)  # what the log engine refuses, too
                    set_configs, delete_keys = config_delta(topic.configs, after)
                    await self._through_controller(
                        lambda name=topic.name, s=set_configs, d=delete_keys: (
                            self._controller_or_raise().alter_topic_configs(
                                name, s, d, validate_only=request.validate_only
                            )
                        ),
                        deadline,
                    )
                    results.append(resource_result(resource, None))
                except Exception as exc:  # each resource fails alone, as in Kafka
                    results.append(resource_result(resource, exc))
            return response(incremental, results)

        return Delayed(alter_all)

    def _delete_topics(self, header: p.RequestHeader, request: Any) -> Any:
        deadline = trio.current_time() + max(request.timeout_ms, 1000) / 1000

        async def delete_all() -> Any:
            results = []
            for name in request.topic_names:
                try:
                    await self._through_controller(
                        lambda name=name: self._controller_or_raise().delete_topic(name), deadline
                    )
                    results.append(p.DeletableTopicResult(name=name, error_code=0))
                except Exception as exc:
                    results.append(
                        p.DeletableTopicResult(
                            name=name, error_code=error_code_for(exc, f"delete topic {name!r}")
                        )
                    )
            return p.DeleteTopicsResponse(responses=results)

        return Delayed(delete_all)

    def _inter_broker_login(
        self, connect: Callable[..., AbstractAsyncContextManager[Any]]
    ) -> Callable[..., AbstractAsyncContextManager[Any]]:
        """On a SASL listener, brokers log in to each other (replica fetches, heartbeats) as
        ``INTER_BROKER_USER`` with the cluster's shared secret, which every broker knows.

        Raises:
            InvalidRequest: SASL without ``--controller-password``, or with no mechanism that
                carries a password (all of them do today).
        """
        assert self.sasl is not None
        password = self.cluster.password
        if not password:
            raise InvalidRequest(
                "a SASL cluster needs a controller password (--controller-password)"
            )
        self.sasl.static = {
            **self.sasl.static,
            **static_credentials({INTER_BROKER_USER: password}),
        }
        self.sasl.lasting_users = frozenset({INTER_BROKER_USER})
        offered = self.sasl.mechanisms
        mechanism = next(m for m in (SCRAM_SHA_512, SCRAM_SHA_256, PLAIN) if m in offered)
        return functools.partial(connect, sasl=SaslConfig(mechanism, INTER_BROKER_USER, password))

    def _create_acls(self, header: p.RequestHeader, request: Any) -> Any:
        """CreateAcls through the controller: one CreateAcl record per new ACL."""
        if self.authorizer is None:
            return security_disabled(header.api_key, request)
        checked = check_creations(request)
        new = [CreateAcl(*binding_values(c)) for c in checked if isinstance(c, AclBinding)]
        return self._propose_acls(new, lambda failure: creation_results(checked, failure))

    def _delete_acls(self, header: p.RequestHeader, request: Any) -> Any:
        """DeleteAcls through the controller: one DeleteAcl record per matching ACL."""
        if self.authorizer is None:
            return security_disabled(header.api_key, request)
        matched = match_deletions(self.authorizer.acls, request)
        gone = sorted({a for found, _ in matched for a in found}, key=binding_values)
        records = [DeleteAcl(*binding_values(a)) for a in gone]
        return self._propose_acls(records, lambda failure: deletion_results(matched, failure))

    def _propose_acls(
        self,
        records: list[CreateAcl] | list[DeleteAcl],
        answer: Callable[[QuorumqError | None], Any],
    ) -> Any:
        """Commits ACL records one by one; the answer reports the first failure, if any."""
        deadline = trio.current_time() + 10.0

        async def propose() -> Any:
            try:
                for record in records:
                    await self._through_controller(
                        lambda r=record: self._controller_or_raise().propose_acl(r), deadline
                    )
            except QuorumqError as exc:
                return answer(exc)
            return answer(None)

        return Delayed(propose)

    def _alter_user_scram_credentials(self, header: p.RequestHeader, request: Any) -> Any:
        """AlterUserScramCredentials through the controller: each user's changes are records of
        the metadata log, so every broker checks logins against the same users."""
        reserved = self.sasl.static_users() if self.sasl is not None else frozenset()
        checked = check_alterations(request, self.user_credentials, reserved)
        deadline = trio.current_time() + 10.0

        async def alter() -> Any:
            failures: dict[str, tuple[int, str | None]] = {}
            for user, alterations, error in checked:
                if error is not None:
                    continue
                try:
                    await self._through_controller(
                        lambda a=alterations: (
                            self._controller_or_raise().alter_user_scram_credentials(a)
                        ),
                        deadline,
                    )
                except Exception as exc:
                    failures[user] = (
                        error_code_for(exc, "alter user credentials"),
                        str(exc) or None,
                    )
            return alter_response(checked, lambda user: failures.get(user, (0, None)))

        return Delayed(alter)

    def _alter_client_quotas(self, header: p.RequestHeader, request: Any) -> Any:
        """AlterClientQuotas through the controller: every broker enforces the image's quotas
        (DescribeClientQuotas answers from this broker's copy of it)."""
        checked = check_alter_entries(request)
        changes = [change for _, change, _ in checked if change is not None]
        deadline = trio.current_time() + 10.0

        async def alter() -> Any:
            failure: Exception | None = None
            if changes and not request.validate_only:
                try:
                    await self._through_controller(
                        lambda: self._controller_or_raise().alter_client_quotas(changes), deadline
                    )
                except Exception as exc:
                    failure = exc
            code = 0 if failure is None else error_code_for(failure, "alter client quotas")
            return p.AlterClientQuotasResponse(
                entries=[
                    alter_result(entry, error) if error else alter_result(entry, failure, code)
                    for entry, _, error in checked
                ]
            )

        return Delayed(alter)

    def _elect_leaders(self, header: p.RequestHeader, request: p.ElectLeadersRequest) -> Any:
        """ElectLeaders (``kafka-leader-election.sh``, AdminClient ``elect_leaders``): planned
        and committed by the controller service on this broker's voter, answered once each
        partition has its leader or has failed (see ``Controller.elect_leaders``)."""
        deadline = trio.current_time() + max(request.timeout_ms, 1000) / 1000
        keys: list[tuple[str, int]] | None = None
        if request.topic_partitions is not None:
            keys = [(t.topic, index) for t in request.topic_partitions for index in t.partitions]

        async def elect() -> Any:
            top_level = 0
            results: dict[tuple[str, int], QuorumqError | None]
            try:
                controller = await self._controller_by(deadline)
                # Each partition's error comes back in the results, not raised: nothing to
                # retry across elections here (the client retries what is retriable).
                results = await controller.elect_leaders(
                    request.election_type,
                    keys,
                    timeout_s=max(deadline - trio.current_time(), 0.1),
                )
            except QuorumqError as exc:
                # v0 has no top-level error code: the partitions named carry it too.
                top_level = exc.code
                results = dict.fromkeys(keys or [], exc)
            by_topic: dict[str, list[p.ElectLeadersPartitionResult]] = {}
            for (topic, index), error in results.items():
                by_topic.setdefault(topic, []).append(
                    p.ElectLeadersPartitionResult(
                        partition_id=index,
                        error_code=0 if error is None else error.code,
                        error_message=None if error is None else str(error),
                    )
                )
            return p.ElectLeadersResponse(
                error_code=top_level,
                replica_election_results=[
                    p.ElectLeadersTopicResult(topic=topic, partition_result=parts)
                    for topic, parts in by_topic.items()
                ],
            )

        return Delayed(elect)

    def _broker_heartbeat(self, header: p.RequestHeader, request: p.BrokerHeartbeatRequest) -> Any:
        """BrokerHeartbeat (KIP-631) from another broker, answered by this broker's controller
        from memory when it is the active one (NOT_CONTROLLER otherwise: the sender looks the
        active controller up in its image again). With a controller password, a heartbeat
        must carry its MAC (CLUSTER_AUTHORIZATION_FAILED otherwise): the Kafka listener is
        open to anyone, and a forged replica report is a vote in a quorum election."""
        reports = None
        if request.replica_reports is not None:
            reports = tuple(
                ReplicaReport(
                    r.topic,
                    r.partition_index,
                    r.last_leader_epoch,
                    r.log_end_offset,
                    r.current_leader_epoch,
                )
                for r in request.replica_reports
            )
        heartbeat = BrokerHeartbeat(request.broker_id, request.broker_epoch, now_ms(), reports)
        try:
            controller = self._controller_or_raise()
            if self.cluster.password is not None:
                check_heartbeat_mac(
                    self.cluster.password,
                    heartbeat,
                    request.quorumq_sent_ms,
                    request.quorumq_mac,
                    heartbeat.now_ms,
                    controller.config.session_timeout_ms,
                    want_shut_down=request.want_shut_down,
                )
            broker = controller.record_heartbeat(heartbeat, want_shut_down=request.want_shut_down)
        except QuorumqError as exc:
            return p.BrokerHeartbeatResponse(error_code=exc.code, is_fenced=True)
        controller.record_drained(
            request.broker_id,
            [(d.topic, d.partition_index, d.leader_epoch) for d in request.quorumq_drained],
        )
        return p.BrokerHeartbeatResponse(
            # KIP-631's meaning: the broker's metadata has every record this controller has.
            is_caught_up=request.current_metadata_offset >= controller.bridge.image.record_count,
            is_fenced=broker.fenced,
            should_shut_down=request.want_shut_down
            and controller.shutdown_ready(request.broker_id),
            quorumq_transfers=[
                p.BrokerHeartbeatTransfer(
                    topic=t.topic,
                    partition_index=t.partition,
                    leader_epoch=t.leader_epoch,
                    target_id=t.target,
                )
                for t in controller.transfers_for(request.broker_id)
            ],
        )

    def _drained(self) -> list[tuple[str, int, int]]:
        """(topic, partition, leader epoch) of the transfers this broker drained: its heartbeat
        says so until the election ends them (or they run out of time)."""
        drained = []
        for replica in list(self._transferring):
            transfer = replica.transfer
            if transfer is None:
                self._transferring.discard(replica)
            elif transfer.drained:
                drained.append((replica.topic, replica.index, transfer.leader_epoch))
        return drained

    def _begin_transfers(self, transfers: Iterable[tuple[str, int, int, int]]) -> None:
        """A heartbeat answer's leadership transfers: (topic, partition, leader epoch, target)
        for partitions this broker leads. Each drain ends with an early heartbeat."""
        for topic, index, leader_epoch, target in transfers:
            replica = self.partitions.get((topic, index))
            if isinstance(replica, ReplicaPartition) and replica.begin_transfer(
                target, leader_epoch, self._transfer_drained
            ):
                self._transferring.add(replica)

    def _transfer_drained(self, replica: ReplicaPartition) -> None:
        log.info(
            "broker %d: %s-%d drained for a leadership transfer",
            self.config.node_id,
            replica.topic,
            replica.index,
        )
        if self.membership is not None:
            self.membership.request_heartbeat()

    async def _send_heartbeat(self, heartbeat: BrokerHeartbeat) -> bool:
        """Delivers this broker's heartbeat to the active controller the image names: a call
        when it is this broker's own, else a BrokerHeartbeat request on a connection of its own.

        Why a connection per heartbeat: one every 2 s costs a loopback connect, and nothing is
        left to go stale when the active controller moves.
        """
        assert self.bridge is not None and self.controller is not None
        image = self.bridge.image
        controller_id = image.controller_id
        drained = self._drained()
        want_shut_down = self.membership is not None and self.membership.want_shut_down
        if controller_id == self.config.node_id:
            controller = self.controller
            fenced = controller.record_heartbeat(heartbeat, want_shut_down=want_shut_down).fenced
            controller.record_drained(self.config.node_id, drained)
            transfers = controller.transfers_for(self.config.node_id)
            self._begin_transfers(
                (t.topic, t.partition, t.leader_epoch, t.target) for t in transfers
            )
            self._heartbeat_answered(
                want_shut_down and controller.shutdown_ready(self.config.node_id), fenced=fenced
            )
            return fenced
        target = image.brokers.get(controller_id)
        if target is None:
            raise NotController(f"active controller {controller_id} has no listener known yet")
        request = p.BrokerHeartbeatRequest(
            broker_id=heartbeat.broker_id,
            broker_epoch=heartbeat.broker_epoch,
            current_metadata_offset=image.record_count,
            want_shut_down=want_shut_down,
            quorumq_sent_ms=heartbeat.now_ms,
            quorumq_mac=None
            if self.cluster.password is None
            else heartbeat_mac(
                self.cluster.password, heartbeat, heartbeat.now_ms, want_shut_down=want_shut_down
            ),
            replica_reports=None
            if heartbeat.reports is None
            else [
                p.BrokerHeartbeatReplicaReport(
                    topic=r.topic,
                    partition_index=r.partition,
                    last_leader_epoch=r.last_leader_epoch,
                    log_end_offset=r.log_end_offset,
                    current_leader_epoch=r.current_leader_epoch,
                )
                for r in heartbeat.reports
            ],
            quorumq_drained=[
                p.BrokerHeartbeatPartitionEpoch(topic=t, partition_index=i, leader_epoch=e)
                for t, i, e in drained
            ],
        )
        response = None
        error: BaseException | None = None
        try:
            async with self._connect(
                target.host,
                target.port,
                client_id=f"quorumq-broker-{self.config.node_id}",
                negotiate=False,
                connect_timeout_s=HEARTBEAT_TIMEOUT_S,
                inline=True,
            ) as conn:
                response = await conn.request(
                    p.ApiKey.BROKER_HEARTBEAT, 1, request, timeout_s=HEARTBEAT_TIMEOUT_S
                )
        except* (ConnectionError, OSError, QuorumqError) as group:
            error = group.exceptions[0]
        if response is None:
            raise NotController(f"controller {controller_id} not reached: {error}")
        if response.error_code:
            raise error_for_code(response.error_code)(
                f"controller {controller_id} refused the heartbeat"
            )
        self._begin_transfers(
            (t.topic, t.partition_index, t.leader_epoch, t.target_id)
            for t in response.quorumq_transfers
        )
        self._heartbeat_answered(
            want_shut_down and bool(response.should_shut_down),
            fenced=bool(response.is_fenced) or not response.is_caught_up,
        )
        return bool(response.is_fenced)

    def _image_shows_fenced(self) -> bool:
        image = self.bridge.image if self.bridge is not None else None
        me = None if image is None else image.brokers.get(self.config.node_id)
        return me is not None and me.fenced

    def lease_lost(self, replica: ReplicaPartition) -> bool:
        """Whether this broker's leadership of ``replica`` has lost its lease
        (:meth:`LeaderLease.lost`); two field reads while the controller answers."""
        lease = self.lease
        if not lease.in_doubt:
            return False
        return lease.lost(replica.replicas, self.config.node_id, trio.current_time())

    def _fetch(self, header: p.RequestHeader, request: p.FetchRequest) -> Any:
        if request.replica_id >= 0:
            self.lease.fetched_by(request.replica_id, trio.current_time())
        return super()._fetch(header, request)

    def _heartbeat_answered(self, should_shut_down: bool, *, fenced: bool) -> None:
        """``fenced``: the answer does not vouch for this broker's image (it is fenced, or its
        metadata was behind the controller's when it asked), so a presumption stays."""
        self._should_shut_down = should_shut_down
        self.lease.answered(trio.current_time(), vouches=not fenced)

    async def controlled_shutdown(self) -> bool:
        """Asks the active controller to move this broker's leaderships away, and returns once
        its heartbeat answer says this broker may stop (True): it is fenced and leads nothing
        (``controller.image.controlled_shutdown_done``). False after
        ``controlled_shutdown_timeout_ms``, or :data:`CONTROLLED_SHUTDOWN_UNANSWERED_S` without
        a heartbeat answered, or at once when the timeout is 0 or this broker never
        registered; the broker then stops as if it had died, and its partitions wait out its
        session. Call :meth:`shutdown` afterwards either way.

        Why: a broker that simply stops leaves every partition it led without a leader until
        the controller notices its silence (``broker.session.timeout.ms``, 9 s by default).
        Kafka's brokers shut down this way unless ``controlled.shutdown.enable`` is false,
        so a rolling restart never leaves a partition leaderless for a session.

        The broker keeps serving meanwhile: it stops leading (and fetching) a partition
        when its image shows it fenced, and clients move to the new leaders as they do on
        any leader change.
        """
        membership = self.membership
        timeout_s = self.cluster.controlled_shutdown_timeout_ms / 1000
        if membership is None or membership.broker_epoch is None or timeout_s <= 0:
            return False
        membership.want_shut_down = True
        started = trio.current_time()
        log.info("broker %d: controlled shutdown: asking the controller", self.config.node_id)
        with trio.move_on_after(timeout_s):
            while not self._should_shut_down:
                answered = max(started, self.lease.answered_at)
                if trio.current_time() - answered > CONTROLLED_SHUTDOWN_UNANSWERED_S:
                    break
                membership.request_heartbeat()
                await trio.sleep(CONTROLLED_SHUTDOWN_POLL_S)
        elapsed_ms = (trio.current_time() - started) * 1000
        if self._should_shut_down:
            log.info(
                "broker %d: controlled shutdown: leaderships moved in %.0f ms",
                self.config.node_id,
                elapsed_ms,
            )
            await self._resign_controller()
        else:
            log.warning(
                "broker %d: controlled shutdown: no answer in %.0f ms; stopping anyway",
                self.config.node_id,
                elapsed_ms,
            )
        return self._should_shut_down

    async def _resign_controller(self) -> None:
        """Hands the active controller role to another voter before this one stops, once the
        image says this broker leads nothing (:meth:`ControllerBridge.resign`).

        Why: a controller that simply stops leaves the cluster without one for an election
        timeout and a pre-vote round, about 0.4 s, during which no leader moves and no ISR
        changes; after a hand-over, for an election round trip.
        """
        bridge = self.bridge
        if bridge is None or not bridge.is_leader:
            return
        started = trio.current_time()
        resigned = await bridge.resign(CONTROLLER_RESIGN_TIMEOUT_S)
        log.log(
            logging.INFO if resigned else logging.WARNING,
            "broker %d: controlled shutdown: controller role %s after %.0f ms",
            self.config.node_id,
            f"handed to voter {bridge.leader_id}" if resigned else "not handed over",
            (trio.current_time() - started) * 1000,
        )

    def _controller_or_raise(self) -> Controller:
        if self.controller is None:
            raise NotController(f"broker {self.config.node_id}: controller not started")
        return self.controller


class ImageTopics:
    """A read-only view of the image's topics with the single-broker TopicStore's reading API
    (``topics``, ``get``, ``in``)."""

    def __init__(self, broker: ClusterBroker) -> None:
        self._broker = broker
        self._cached: tuple[Any, dict[str, TopicSpec]] | None = None

    @property
    def topics(self) -> dict[str, TopicSpec]:
        """Specs of every topic, built once per image (images are immutable, replaced on
        each change): Metadata and the produce path read this per request."""
        bridge = self._broker.bridge
        if bridge is None:
            return {}
        image = bridge.image
        cached = self._cached
        if cached is not None and cached[0] is image:
            return cached[1]
        specs = {name: _spec(topic) for name, topic in image.topics.items()}
        self._cached = (image, specs)
        return specs

    def config(self, name: str, key: str) -> str | None:
        """One explicitly set config of a topic (None when unset or no such topic)."""
        bridge = self._broker.bridge
        topic = None if bridge is None else bridge.image.topics.get(name)
        return None if topic is None else topic.configs.get(key)

    def get(self, name: str) -> TopicSpec:
        """Raises UnknownTopicOrPartition when the topic does not exist."""
        bridge = self._broker.bridge
        topic = None if bridge is None else bridge.image.topics.get(name)
        if topic is None:
            raise UnknownTopicOrPartition(f"unknown topic {name!r}")
        return _spec(topic)

    def __contains__(self, name: object) -> bool:
        bridge = self._broker.bridge
        return bridge is not None and name in bridge.image.topics


def _spec(topic: Any) -> TopicSpec:
    first = topic.partitions.get(0)
    return TopicSpec(
        name=topic.name,
        partitions=len(topic.partitions),
        configs=dict(topic.configs),
        topic_id=uuid.UUID(topic.topic_id),
        replication_factor=len(first.replicas) if first is not None else 0,
    )


def _log_config(configs: dict[str, str]) -> LogConfig | None:
    """The topic's log config; None (the broker's defaults) when the configs do not parse,
    which the controller's validation makes a stale-image case only."""
    try:
        return LogConfig.from_topic_config(configs)
    except QuorumqError:
        return None


ALTER_CONFIGS_TIMEOUT_S = 10.0
"""How long an AlterConfigs waits for the controller (the request carries no timeout)."""


def _int_config(configs: dict[str, str], key: str, default: int) -> int:
    try:
        return int(configs.get(key, default))
    except ValueError:
        return default


def _produce_hold_ms(request: p.ProduceRequest) -> int:
    return request.timeout_ms


def _fetch_hold_ms(request: p.FetchRequest) -> int:
    return request.max_wait_ms


def _list_offsets_hold_ms(request: Any) -> int:
    return LIST_OFFSETS_HOLD_MS
