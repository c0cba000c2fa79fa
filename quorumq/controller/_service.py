"""Trio services on top of the bridge: the controller loop, admin writes, broker membership.

:class:`Controller` runs ``tick`` only while its voter is the active controller and proposes the
decisions; on every voter it also offers the admin writes a broker forwards (CreateTopics,
DeleteTopics, AlterConfigs), planned against the local image and committed through Raft.
:class:`BrokerMembership` is a broker's side: register once, then heartbeat (with replica reports)
so the controller does not fence it.
"""

from __future__ import annotations

import collections
import logging
import random
import uuid
from collections.abc import Awaitable, Callable, Mapping, Sequence

import trio

from quorumq.errors import (
    BrokerIdNotRegistered,
    InvalidConfig,
    NotController,
    PreferredLeaderNotAvailable,
    QuorumqError,
    RequestTimedOut,
    StaleBrokerEpoch,
    UnknownTopicOrPartition,
)
from quorumq.protocol import ELECTION_PREFERRED
from quorumq.security import ScramCredential

from ._bridge import ControllerBridge, outcome_error, wall_clock_ms
from .image import (
    NO_LEADER,
    TOPIC_CONFIG_CHECKS,
    BrokerChanged,
    BrokerHeartbeat,
    BrokerLiveness,
    BrokerState,
    ClientQuotaChange,
    ConfigChange,
    ControllerConfig,
    CreateAcl,
    CreatePartitions,
    CreateTopic,
    DeleteAcl,
    DeleteTopic,
    LeaderTransfer,
    LeaderTransfers,
    MetadataImage,
    MetadataRecord,
    PartitionChange,
    PartitionScan,
    RegisterBroker,
    RemoveUserScramCredential,
    ReplicaReport,
    UserScramCredential,
    brokers_to_probe,
    controlled_shutdown_done,
    plan_create_partitions,
    plan_create_topic,
    plan_election,
    plan_leader_rebalance,
    tick,
    validate_topic_configs,
)

logger = logging.getLogger(__name__)

CRASH_PROBE_TIMEOUT_S = 1.0
"""How long a crash probe's connection attempt may take. Only a refusal fences early; a
connect that times out (packets lost, a cut-off broker) leaves the broker to its session."""


async def listener_refuses(host: str, port: int, timeout_s: float) -> bool:
    """Whether every address of ``host:port`` refuses a TCP connection (nothing listens
    there); False when one accepts, or the attempt times out or fails otherwise."""
    with trio.move_on_after(timeout_s):
        try:
            stream = await trio.open_tcp_stream(host, port)
        except OSError as exc:
            causes = getattr(exc.__cause__, "exceptions", None) or [exc]
            return all(isinstance(cause, ConnectionRefusedError) for cause in causes)
        await stream.aclose()
    return False


MIN_TICK_GAP_S = 0.02
"""The least time between two ticks: heartbeats with reports wake the tick loop early, and a
tick over thousands of partitions must not run back to back with the next."""


def _preferred(image: MetadataImage, key: tuple[str, int]) -> int:
    """The preferred replica of a partition an election was just planned for."""
    return image.topics[key[0]].partitions[key[1]].replicas[0]


class Controller:
    """The controller role of one voter.

    Args:
        bridge: this process's voter.
        config: session timeout and electors (``ControllerConfig(electors={"quorum": ...})``).
        tick_interval_s: how often the active controller looks for silent brokers and leaderless
            partitions (fencing latency is ``session_timeout_ms`` plus up to this).
        clock_ms: wall clock in ms (the one heartbeats are stamped with).
        rng: seeds replica assignment; a seeded ``random.Random`` gives reproducible layouts.
    """

    def __init__(
        self,
        bridge: ControllerBridge,
        config: ControllerConfig | None = None,
        *,
        tick_interval_s: float = 0.25,
        clock_ms: Callable[[], int] = wall_clock_ms,
        rng: random.Random | None = None,
    ) -> None:
        self.bridge = bridge
        self.config = config or ControllerConfig()
        self.tick_interval_s = tick_interval_s
        self._clock_ms = clock_ms
        self._rng = rng or random.Random()
        self.scan = PartitionScan()
        """The last tick's partition pass, reused while nothing it depends on changed."""
        self.liveness = BrokerLiveness()
        """Heartbeats received while active (not in Raft: see ``image.BrokerLiveness``)."""
        self.transfers = LeaderTransfers()
        """Quorum preferred elections waiting for their leader to drain (``image._transfers``)."""
        self._heard = trio.Event()
        self._probes: trio.Nursery | None = None
        self._probed: dict[int, tuple[int, int]] = {}
        """Broker id → (broker epoch, when it was last probed, controller clock ms)."""
        self._probing: set[int] = set()
        self.brokers_found_gone = 0
        """Brokers fenced early because their listener refused a probe (tests and stats)."""

    def record_heartbeat(
        self, heartbeat: BrokerHeartbeat, *, want_shut_down: bool = False
    ) -> BrokerState:
        """BrokerHeartbeat, on the active controller: remembered in memory, never proposed.

        A heartbeat carrying reports wakes the tick loop at once: reports are the votes of
        quorum elections, and a leaderless partition should not wait a tick interval for them.
        So does one asking for a controlled shutdown (``want_shut_down``): the tick fences the
        broker, which moves its leaderships (``image.controlled_shutdown_done``).

        Returns:
            The broker as the image has it (``fenced`` answers the heartbeat).

        Raises:
            NotController: this voter is not the active controller.
            StaleBrokerEpoch, BrokerIdNotRegistered: the broker must register again.
        """
        if not self.bridge.is_active:
            raise NotController(f"broker {self.bridge.node_id} is not the active controller")
        if not self.bridge.hears_a_majority:
            # Cut off from the other voters: a heartbeat it answered would keep its own
            # broker's leader lease (docs/cluster.md) alive for as long as pysyncobj keeps
            # believing it leads.
            raise NotController(f"controller {self.bridge.node_id} has lost its Raft majority")
        image = self.bridge.image
        liveness = self.liveness.for_epoch(image.controller_epoch)
        broker = liveness.record(image, heartbeat, self._clock_ms(), want_shut_down=want_shut_down)
        if heartbeat.reports or (want_shut_down and not broker.fenced):
            self._heard.set()
        return broker

    def shutdown_ready(self, broker_id: int) -> bool:
        """A heartbeat answer's ``ShouldShutDown``: the broker asked for a controlled shutdown
        and leads nothing any more (``image.controlled_shutdown_done``)."""
        if not self.bridge.is_active:
            return False
        image = self.bridge.image
        return controlled_shutdown_done(
            image, self.config, self.liveness.for_epoch(image.controller_epoch), broker_id
        )

    def transfers_for(self, broker_id: int) -> list[LeaderTransfer]:
        """The leadership transfers broker ``broker_id`` should drain for (its heartbeat's
        answer); none unless this voter is the active controller."""
        if not self.bridge.is_active:
            return []
        return self._transfers().instructions_for(broker_id)

    def record_drained(self, broker_id: int, drained: Sequence[tuple[str, int, int]]) -> None:
        """A heartbeat says these (topic, partition, leader epoch) drained: their elections
        are proposed at the next tick, which this wakes."""
        if (
            drained
            and self.bridge.is_active
            and self._transfers().record_drained(broker_id, drained)
        ):
            self._heard.set()

    def _transfers(self) -> LeaderTransfers:
        return self.transfers.for_epoch(self.bridge.image.controller_epoch)

    def _held_for_transfer(self, record: PartitionChange) -> bool:
        """Starts a leadership transfer if ``record`` is a two-step preferred election
        (``quorum``: it ends the epoch); True when it did, and the record waits for the tick
        that finds the transfer drained (:meth:`_ready_transfers`) instead of being proposed.

        Only the active controller starts transfers: it alone hears heartbeats, through which
        a leader learns of one. ElectLeaders may reach any voter's controller service (any
        broker takes the request); a passive one proposes every record at once, as before
        transfers existed, rather than hold elections nobody would run."""
        if record.new_leader != NO_LEADER or not self.bridge.is_active:
            return False
        transfer = self._transfers().begin(
            self.bridge.image,
            record.topic,
            record.partition,
            self._clock_ms(),
            self.config.leader_transfer_timeout_ms,
        )
        return transfer is not None

    def _ready_transfers(self) -> list[PartitionChange]:
        """The election records of transfers that drained or ran out of time, planned again
        on the current image (a partition may meanwhile need none)."""
        image = self.bridge.image
        records = []
        for transfer in self._transfers().take_ready(image, self._clock_ms()):
            try:
                record = plan_election(
                    image, self.config, transfer.topic, transfer.partition, ELECTION_PREFERRED
                )
            except QuorumqError as exc:
                logger.info("controller %d: transfer dropped: %s", self.bridge.node_id, exc)
            else:
                records.append(record)
        return records

    async def run(self, *, task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED) -> None:
        """Ticks while this voter is the active controller, idles otherwise; runs until
        cancelled. The leader-imbalance check runs every ``leader_imbalance_check_interval_ms``
        of being active (the first one that long after taking over, as Kafka schedules it)."""
        async with trio.open_nursery() as probes:
            self._probes = probes
            try:
                await self._run_ticks(task_status)
            finally:
                self._probes = None
                probes.cancel_scope.cancel()

    async def _run_ticks(self, task_status: trio.TaskStatus[None]) -> None:
        task_status.started()
        rebalance_at: int | None = None
        while True:
            if self.bridge.is_active:
                await self.tick_once()
                self._start_crash_probes()
                if self.config.auto_leader_rebalance_enable:
                    now = self._clock_ms()
                    if rebalance_at is None:
                        rebalance_at = now + self.config.leader_imbalance_check_interval_ms
                    elif now >= rebalance_at:
                        await self.rebalance_once()
                        rebalance_at = now + self.config.leader_imbalance_check_interval_ms
                await trio.sleep(MIN_TICK_GAP_S)
                with trio.move_on_after(self.tick_interval_s - MIN_TICK_GAP_S):
                    await self._heard.wait()
                self._heard = trio.Event()
            else:
                rebalance_at = None
                with trio.move_on_after(self.tick_interval_s):
                    await self.bridge.changed.wait()

    def _start_crash_probes(self) -> None:
        """Probes the listener of each broker :func:`brokers_to_probe` names (silent for
        ``crash_probe_after_ms``, or not heard from since the takeover), at most once per that
        interval per broker incarnation (``BrokerLiveness.mark_gone``)."""
        after_ms = self.config.crash_probe_after_ms
        if after_ms <= 0 or self._probes is None:
            return
        now = self._clock_ms()
        for broker in brokers_to_probe(self.bridge.image, now, self.liveness, after_ms):
            if broker.broker_id == self.bridge.node_id or broker.broker_id in self._probing:
                continue
            last = self._probed.get(broker.broker_id)
            if last is not None and last[0] == broker.broker_epoch and now - last[1] < after_ms:
                continue
            self._probed[broker.broker_id] = (broker.broker_epoch, now)
            self._probing.add(broker.broker_id)
            self._probes.start_soon(self._crash_probe, broker, now)

    async def _crash_probe(self, broker: BrokerState, started_ms: int) -> None:
        try:
            refused = await listener_refuses(broker.host, broker.port, CRASH_PROBE_TIMEOUT_S)
        finally:
            self._probing.discard(broker.broker_id)
        image = self.bridge.image
        current = image.brokers.get(broker.broker_id)
        if not refused or current is None or current.broker_epoch != broker.broker_epoch:
            return
        self.liveness.for_epoch(image.controller_epoch).mark_gone(current, started_ms)
        self.brokers_found_gone += 1
        # INFO, as the tick's own fencing is: a crash is what the probe is for, not a fault of
        # the cluster (quorumq.testing's kill_broker printed it on every kill).
        logger.info(
            "controller %d: broker %d refuses connections at %s:%d: fencing it now, "
            "without waiting out its session",
            self.bridge.node_id,
            broker.broker_id,
            broker.host,
            broker.port,
        )
        self._heard.set()

    async def rebalance_once(self) -> list[PartitionChange]:
        """Proposes the preferred-leader elections the imbalance check finds
        (``image.plan_leader_rebalance``); returns them. Rejections are ignored, as in
        :meth:`tick_once`: the next check decides again."""
        records = plan_leader_rebalance(self.bridge.image, self.config)
        if records:
            now = [record for record in records if not self._held_for_transfer(record)]
            logger.info(
                "controller %d: leader imbalance: %d preferred elections (%d after a transfer)",
                self.bridge.node_id,
                len(records),
                len(records) - len(now),
            )
            await self.bridge.propose_all(now)
        return records

    async def elect_leaders(
        self,
        election_type: int,
        partitions: Sequence[tuple[str, int]] | None,
        *,
        timeout_s: float = 30.0,
    ) -> dict[tuple[str, int], QuorumqError | None]:
        """ElectLeaders: plans each partition's election (``image.plan_election``),
        commits them together, and waits until each has its leader (``None``) or has failed.

        A two-step election (``quorum``, preferred) starts with a leadership transfer
        (``image.LeaderTransfers``): the leader stops taking writes until the preferred replica
        has caught up, then a tick proposes the election, and it is complete once a later tick
        has elected from fresh reports. If the preferred replica was behind all the same (the
        transfer ran out of time) another replica leads, and the answer is
        PREFERRED_LEADER_NOT_AVAILABLE.

        Args:
            partitions: None for every partition of the cluster.
        """
        deadline = trio.current_time() + timeout_s
        image = self.bridge.image
        if partitions is None:
            partitions = [(n, i) for n in sorted(image.topics) for i in image.topics[n].partitions]
        results: dict[tuple[str, int], QuorumqError | None] = {}
        planned: dict[tuple[str, int], PartitionChange] = {}
        for key in partitions:
            try:
                planned[key] = plan_election(image, self.config, key[0], key[1], election_type)
            except QuorumqError as exc:
                results[key] = exc
        # partition → (preferred replica, the leader epoch its transfer holds it at, or -1)
        waiting: dict[tuple[str, int], tuple[int, int]] = {}
        if election_type == ELECTION_PREFERRED:
            for key, record in list(planned.items()):
                if self._held_for_transfer(record):
                    waiting[key] = (_preferred(image, key), record.leader_epoch)
                    del planned[key]
        outcomes = await self.bridge.propose_all(list(planned.values()), timeout_s=timeout_s)
        for (key, record), outcome in zip(planned.items(), outcomes, strict=True):
            error = outcome_error(outcome)
            if error is not None:
                results[key] = error
            elif record.new_leader == NO_LEADER:
                waiting[key] = (_preferred(image, key), -1)
            else:
                results[key] = None
        while waiting:
            changed = self.bridge.changed
            for key, (preferred, held_epoch) in list(waiting.items()):
                state = self.bridge.image.partition(*key)
                if state is None:
                    results[key] = UnknownTopicOrPartition(f"{key[0]}-{key[1]} was deleted")
                elif state.leader == preferred:
                    results[key] = None
                elif state.leader_epoch == held_epoch:
                    continue  # the transfer: its leader is draining, the election comes next
                elif state.leader != NO_LEADER:
                    results[key] = PreferredLeaderNotAvailable(
                        f"{key[0]}-{key[1]}: broker {state.leader} was more up to date than "
                        f"preferred replica {preferred} when the epoch ended, and leads"
                    )
                else:
                    continue
                del waiting[key]
            if not waiting:
                break
            with trio.move_on_at(deadline) as scope:
                await changed.wait()
            if scope.cancelled_caught:
                for key in waiting:
                    results[key] = RequestTimedOut(f"{key[0]}-{key[1]}: election still running")
                break
        return results

    async def tick_once(self) -> list[MetadataRecord]:
        """Proposes this moment's decisions (see ``image.tick``); returns them.

        Rejections are expected (a decision raced another change) and ignored: the next tick
        decides again from the newer image. The records are in flight together
        (``ControllerBridge.propose_all``): a broker failure that moves thousands of partitions
        costs a few Raft round trips, not one per partition.
        """
        records = tick(self.bridge.image, self._clock_ms(), self.config, self.liveness, self.scan)
        records += self._ready_transfers()
        if not records:
            return records
        started = trio.current_time()
        outcomes = await self.bridge.propose_all(records)
        kinds = collections.Counter(type(r).__name__ for r in records)
        logger.info(
            "controller %d: tick: %s in %.0f ms",
            self.bridge.node_id,
            ", ".join(f"{n} {kind}" for kind, n in sorted(kinds.items())),
            (trio.current_time() - started) * 1000,
        )
        for outcome in outcomes:
            if isinstance(outcome, QuorumqError):
                logger.info("controller %d: tick not committed: %s", self.bridge.node_id, outcome)
                break
        return records

    async def create_topic(
        self,
        name: str,
        num_partitions: int,
        replication_factor: int,
        *,
        configs: Mapping[str, str] | None = None,
        assignments: Mapping[int, Sequence[int]] | None = None,
        validate_only: bool = False,
        timeout_s: float = 5.0,
    ) -> CreateTopic:
        """CreateTopics for one topic: validates, assigns replicas, commits.

        Returns:
            The committed (or, with ``validate_only``, the planned) record: its ``assignments``
            and ``topic_id`` are what CreateTopics v5+ answers with.

        Raises:
            InvalidTopic, TopicAlreadyExists, InvalidPartitions, InvalidReplicationFactor,
            InvalidReplicaAssignment, InvalidConfig: as Kafka answers.
            NotController, RequestTimedOut: the write did not commit (retriable).
        """
        record = plan_create_topic(
            self.bridge.image,
            name,
            num_partitions,
            replication_factor,
            topic_id=str(uuid.UUID(int=self._rng.getrandbits(128), version=4)),
            seed=self._rng.getrandbits(31),
            configs=configs,
            assignments=assignments,
        )
        if not validate_only:
            await self.bridge.propose(record, timeout_s=timeout_s)
        return record

    async def create_partitions(
        self,
        name: str,
        count: int,
        *,
        assignments: Sequence[Sequence[int]] | None = None,
        validate_only: bool = False,
        timeout_s: float = 5.0,
    ) -> CreatePartitions:
        """CreatePartitions for one topic: grows it to ``count`` partitions.

        Raises:
            UnknownTopicOrPartition, InvalidPartitions, InvalidReplicaAssignment,
            InvalidReplicationFactor: as Kafka answers.
            NotController, RequestTimedOut: the write did not commit (retriable).
        """
        record = plan_create_partitions(
            self.bridge.image,
            name,
            count,
            seed=self._rng.getrandbits(31),
            assignments=assignments,
        )
        if not validate_only:
            await self.bridge.propose(record, timeout_s=timeout_s)
        return record

    async def delete_topic(self, name: str, *, timeout_s: float = 5.0) -> None:
        """DeleteTopics for one topic.

        Raises:
            UnknownTopicOrPartition: no such topic. NotController, RequestTimedOut: retriable.
        """
        topic = self.bridge.image.topics.get(name)
        if topic is None:
            raise UnknownTopicOrPartition(f"no topic {name!r}")
        await self.bridge.propose(DeleteTopic(name, topic.topic_id), timeout_s=timeout_s)

    async def alter_topic_configs(
        self,
        name: str,
        set_configs: Mapping[str, str],
        delete_keys: Sequence[str] = (),
        *,
        validate_only: bool = False,
        timeout_s: float = 5.0,
    ) -> None:
        """IncrementalAlterConfigs (SET / DELETE) for one topic.

        Raises:
            UnknownTopicOrPartition, InvalidConfig; NotController, RequestTimedOut: retriable.
        """
        if name not in self.bridge.image.topics:
            raise UnknownTopicOrPartition(f"no topic {name!r}")
        validate_topic_configs(set_configs)
        unknown = [k for k in delete_keys if k not in TOPIC_CONFIG_CHECKS]
        if unknown:
            raise InvalidConfig(f"unknown topic configs {unknown}")
        if not validate_only:
            record = ConfigChange(name, dict(set_configs), tuple(delete_keys))
            await self.bridge.propose(record, timeout_s=timeout_s)

    async def alter_client_quotas(
        self,
        changes: Sequence[
            tuple[tuple[tuple[str, str | None], ...], Mapping[str, float], Sequence[str]]
        ],
        *,
        timeout_s: float = 5.0,
    ) -> None:
        """AlterClientQuotas: one ClientQuotaChange record per entity, checked by the caller
        (``quorumq.security.quota_entity`` and ``check_quota_value``). Setting the same values
        twice is harmless, so a retry after a timeout is safe.

        Raises:
            NotController, RequestTimedOut: retriable.
        """
        for entity, set_values, remove_keys in changes:
            record = ClientQuotaChange(entity, dict(set_values), tuple(remove_keys))
            await self.bridge.propose(record, timeout_s=timeout_s)

    async def alter_user_scram_credentials(
        self,
        alterations: Sequence[tuple[str, str, ScramCredential | None]],
        *,
        timeout_s: float = 5.0,
    ) -> None:
        """AlterUserScramCredentials for one user: a UserScramCredential record per upsertion
        (the stored form, never the password) and a RemoveUserScramCredential per deletion.

        Raises:
            NotController, RequestTimedOut: retriable (setting a credential twice is harmless).
        """
        for user, mechanism, credential in alterations:
            if credential is None:
                await self.bridge.propose(
                    RemoveUserScramCredential(user, mechanism),
                    timeout_s=timeout_s,
                    raise_rejected=False,  # already gone: what the caller wanted
                )
            else:
                record = UserScramCredential(
                    user,
                    mechanism,
                    credential.salt,
                    credential.iterations,
                    credential.stored_key,
                    credential.server_key,
                )
                await self.bridge.propose(record, timeout_s=timeout_s)

    async def propose_acl(self, record: CreateAcl | DeleteAcl, *, timeout_s: float = 5.0) -> None:
        """CreateAcls / DeleteAcls: one ACL added or removed. Adding one that exists, or
        removing one already gone, changes nothing, so a retry is safe.

        Raises:
            NotController, RequestTimedOut: retriable.
        """
        await self.bridge.propose(record, timeout_s=timeout_s, raise_rejected=False)


HeartbeatSender = Callable[[BrokerHeartbeat], Awaitable[bool]]
"""Delivers one heartbeat to the active controller and returns whether the broker is fenced.
Raises NotController or RequestTimedOut when it cannot (no controller known, unreachable, not
active), StaleBrokerEpoch or BrokerIdNotRegistered when the broker must register again."""


class BrokerMembership:
    """A broker's registration and heartbeats (KIP-631's BrokerRegistration / BrokerHeartbeat).

    Registration is a Raft record (the image must name every broker); heartbeats are not: they
    go to the active controller (``send_heartbeat``), which keeps them in memory and commits
    only the fencing they decide (see ``image.BrokerLiveness``).

    Args:
        bridge: the process's voter (any voter forwards to the leader).
        broker_id, host, port: where other brokers reach this one (its inter-broker listener).
        listeners: (name, advertised host, port) of every listener, for Metadata.
        send_heartbeat: the way to the active controller (the broker's: its own controller
            when it is the active one, else a BrokerHeartbeat request to the one that is).
        heartbeat_interval_s: Kafka's broker.heartbeat.interval.ms default is 2 s, well inside the
            9 s session. A failed heartbeat is retried sooner (from 0.1 s, doubling): after a
            controller failover the new one waits for fresh reports before a quorum election.
        reports: returns this broker's replica reports (last leader epoch, LEO per partition) for
            quorum elections; None sends liveness-only heartbeats.
    """

    def __init__(
        self,
        bridge: ControllerBridge,
        broker_id: int,
        host: str,
        port: int,
        *,
        send_heartbeat: HeartbeatSender,
        heartbeat_interval_s: float = 2.0,
        reports: Callable[[], Sequence[ReplicaReport]] | None = None,
        clock_ms: Callable[[], int] = wall_clock_ms,
        rack: str | None = None,
        listeners: Sequence[tuple[str, str, int]] = (),
    ) -> None:
        self.bridge = bridge
        self.broker_id = broker_id
        self.host = host
        self.port = port
        self.rack = rack
        self.listeners = tuple(listeners)
        self.heartbeat_interval_s = heartbeat_interval_s
        self.incarnation_id = str(uuid.uuid4())
        self.broker_epoch: int | None = None
        self.fenced = True
        """As the active controller answered the last heartbeat."""
        self.want_shut_down = False
        """Every heartbeat from now on asks for a controlled shutdown (KIP-631): the sender
        reads it (``HeartbeatSender``), and the broker stops once the answer says it may."""
        self._send = send_heartbeat
        self._reports = reports
        self._clock_ms = clock_ms
        self._wake = trio.Event()

    def request_heartbeat(self) -> None:
        """Heartbeats now instead of at the next interval: call it after learning of a new leader
        epoch, so quorum elections get this broker's fresh report without waiting, and after
        learning of a new active controller, which has heard nothing yet."""
        self._wake.set()

    async def register(self) -> int:
        """Registers (retrying through elections) and returns the broker epoch."""
        record = RegisterBroker(
            self.broker_id,
            self.incarnation_id,
            self.host,
            self.port,
            self._clock_ms(),
            self.rack,
            self.listeners,
        )
        while True:
            try:
                changes = await self.bridge.propose(record)
            except (NotController, RequestTimedOut) as exc:
                logger.info("broker %d: registration retry: %s", self.broker_id, exc)
                await trio.sleep(0.1)
                continue
            for change in changes:
                if isinstance(change, BrokerChanged) and change.broker_id == self.broker_id:
                    self.broker_epoch = change.broker_epoch
                    return change.broker_epoch
            raise AssertionError(f"registration applied without a BrokerChanged: {changes}")

    async def heartbeat(self) -> None:
        """Sends one heartbeat (with replica reports when configured).

        Raises:
            StaleBrokerEpoch, BrokerIdNotRegistered: re-register. NotController,
            RequestTimedOut: try again soon.
        """
        assert self.broker_epoch is not None, "register() before heartbeat()"
        reports = tuple(self._reports()) if self._reports is not None else None
        record = BrokerHeartbeat(self.broker_id, self.broker_epoch, self._clock_ms(), reports)
        self.fenced = await self._send(record)

    async def run(self, *, task_status: trio.TaskStatus[int] = trio.TASK_STATUS_IGNORED) -> None:
        """Registers, reports the broker epoch to ``nursery.start``, heartbeats until cancelled."""
        task_status.started(await self.register())
        retry_s: float | None = 0.0  # the first heartbeat at once
        while True:
            with trio.move_on_after(self.heartbeat_interval_s if retry_s is None else retry_s):
                await self._wake.wait()
            self._wake = trio.Event()
            try:
                await self.heartbeat()
            except (StaleBrokerEpoch, BrokerIdNotRegistered) as exc:
                logger.warning("broker %d: %s; registering again", self.broker_id, exc)
                self.incarnation_id = str(uuid.uuid4())
                await self.register()
                retry_s = 0.0
            except QuorumqError as exc:
                logger.info("broker %d: heartbeat failed: %s", self.broker_id, exc)
                retry_s = min(max(2 * (retry_s or 0.05), 0.1), self.heartbeat_interval_s)
            else:
                retry_s = None
