"""The single broker: owns the data directory, the partitions and the request handlers.

Theory of operation: :meth:`Broker.serve` opens the data directory (topics, producer ids, logs),
binds the listener and runs connections (``_server.py``). Each request frame goes through
:meth:`Broker.handle_frame`: decode the header, look the API up in the dispatch table, decode the
body, run the handler. Handlers are plain methods that do their synchronous work (validate and
append, read) at once, in request order, and return the response, ``NO_RESPONSE`` or a
``Delayed`` for what must wait (a Fetch short of ``min_bytes``, an acks=all produce short of the
high watermark).

Errors: every handler catches per partition (or per topic) and calls :func:`error_code_for`, the
one place where a ``QuorumqError`` becomes its Kafka code and anything else becomes
``UNKNOWN_SERVER_ERROR`` with its traceback logged. A frame that cannot be decoded, an unknown API
key or an unsupported version closes the connection (as Kafka does) with one log line.
"""

from __future__ import annotations

import logging
import math
import ssl
import struct
import time
from collections.abc import Awaitable, Callable, Mapping
from functools import partial
from pathlib import Path
from typing import Any, BinaryIO

import attrs
import trio

from quorumq import protocol as p
from quorumq._tls import server_context
from quorumq.broker._acls import load_acls
from quorumq.broker._authorize import GATES, NO_ANSWER, Caller
from quorumq.broker._config import BrokerConfig
from quorumq.broker._fetch_session import FetchContext, FetchSessionCache
from quorumq.broker._flusher import LogFlusher, run_log_maintenance
from quorumq.broker._listeners import Listener
from quorumq.broker._partition import Partition, rebuild_producer_state
from quorumq.broker._quotas import (
    Throttler,
    load_quotas,
    mute_deadline,
    produce_throttle_ms,
    throttled_encoder,
)
from quorumq.broker._sasl import (
    SASL_KEYS,
    Credentials,
    SaslLogin,
    check_mechanisms,
    load_credentials,
    static_credentials,
)
from quorumq.broker._server import (
    NO_RESPONSE,
    PENDING,
    ConnectionClosed,
    ConnectionInfo,
    ConnectionSet,
    Delayed,
    Held,
    Parked,
    open_listeners,
    serve_connection,
)
from quorumq.broker._topics import (
    ProducerIdStore,
    TopicSpec,
    TopicStore,
    load_cluster_id,
    lock_data_dir,
    validate_topic_name,
)
from quorumq.errors import (
    CorruptRecord,
    ErrorCode,
    IllegalSaslState,
    InvalidConfig,
    InvalidRecord,
    InvalidRequest,
    InvalidRequiredAcks,
    KafkaStorageError,
    MessageTooLarge,
    OffsetOutOfRange,
    QuorumqError,
    TopicAuthorizationFailed,
    UnknownTopicOrPartition,
    UnsupportedCompressionType,
    UnsupportedVersion,
)
from quorumq.log import (
    LogConfig,
    LogManager,
    PartitionLog,
    parse_partition_dir_name,
    validate_records,
)
from quorumq.protocol.records import ATTR_TIMESTAMP_TYPE, BatchHeader, compute_crc
from quorumq.security import ANONYMOUS, Authorizer, QuotaTracker

log = logging.getLogger("quorumq.broker")

# Errors that mean "the client sent something bad": worth a warning line each.
_BAD_INPUT = (CorruptRecord, InvalidRecord, MessageTooLarge, UnsupportedCompressionType)


def error_code_for(exc: Exception, what: str) -> int:
    """The one mapping from an exception to the Kafka error code a response carries.

    A ``QuorumqError`` answers with its own code (bad client input is logged as one line); any
    other exception is a bug: logged with its traceback, answered ``UNKNOWN_SERVER_ERROR``.
    """
    if isinstance(exc, QuorumqError):
        if isinstance(exc, _BAD_INPUT):
            log.warning("%s: %s (%s)", what, exc, exc.code.name)
        else:
            log.debug("%s: %s (%s)", what, exc, exc.code.name)
        return int(exc.code)
    log.error("%s: unexpected error", what, exc_info=exc)
    return int(ErrorCode.UNKNOWN_SERVER_ERROR)


def now_ms() -> int:
    """Wall-clock milliseconds (record timestamps, segment ages): the shell's job, not the log's."""
    return int(time.time() * 1000)


Handler = Callable[[p.RequestHeader, Any], Any]


class Broker:
    """One quorumq broker: the leader of every partition it holds.

    Start it with ``port = await nursery.start(broker.serve)``; cancel the nursery (or call
    :meth:`shutdown`) to stop: it stops accepting, drops connections, flushes and closes logs.
    """

    def __init__(
        self,
        config: BrokerConfig,
        *,
        listen: Callable[[BrokerConfig], Awaitable[list[Any]]] = open_listeners,
    ) -> None:
        self.config = config
        self._listen = listen
        """How :meth:`serve` binds (the simulation passes its in-memory network's listeners)."""
        self.port: int | None = None
        """The bound port of the first listener."""
        self.ports: dict[str, int] = {}
        """Each listener's bound port, by listener name."""
        self.endpoints: dict[str, tuple[str, int]] = {}
        """What each listener advertises: (host, port), by listener name."""
        self._request_listener = ""
        """The listener of the request being handled (set by :meth:`handle_frame`)."""
        self.cluster_id = ""
        self.topics: TopicStore | None = None
        self.producer_ids: ProducerIdStore | None = None
        self.logs: LogManager | None = None
        self.partitions: dict[tuple[str, int], Partition] = {}
        self._cancel_scope: trio.CancelScope | None = None
        self._accept_scope: trio.CancelScope | None = None
        self.connections = ConnectionSet()
        self.fetch_sessions = FetchSessionCache()
        """Incremental fetch sessions (KIP-227) of followers and Java consumers."""
        self.stopping = False
        """Set by :meth:`shutdown`: waiting fetches answer at once."""
        self._lock_file: BinaryIO | None = None
        self.flusher: LogFlusher | None = None
        self.groups: Any = None  # the group coordinator shell (_groups.GroupCoordinatorShell)
        self._advertised: tuple[int, dict[p.ApiKey, tuple[int, int]]] | None = None
        self.throttler = Throttler(
            tracker=QuotaTracker(
                window_ms=max(1, round(config.quota_window_size_seconds * 1000)),
                samples=max(1, config.quota_window_num),
            )
        )
        """Client quotas: the single broker's from its quota file, a cluster's from the image."""
        self._handlers: dict[int, Handler] = {
            p.ApiKey.API_VERSIONS: self._api_versions,
            p.ApiKey.METADATA: self._metadata,
            p.ApiKey.PRODUCE: self._produce,
            p.ApiKey.FETCH: self._fetch,
        }
        listeners = config.effective_listeners()
        config.inter_broker_listener()  # names a listener
        if any(x.tls for x in listeners) and config.ssl_certfile is None:
            raise InvalidConfig("an SSL or SASL_SSL listener needs a certificate (--ssl-certfile)")
        if any(x.sasl for x in listeners) and not config.sasl_mechanisms:
            raise InvalidConfig("a SASL listener needs a mechanism (--sasl-mechanism)")
        self.ssl_context: ssl.SSLContext | None = None
        """The TLS of the SSL and SASL_SSL listeners (``ssl_certfile``); None: plain TCP."""
        if config.ssl_certfile is not None:
            self.ssl_context = server_context(
                config.ssl_certfile,
                config.ssl_keyfile,
                config.ssl_cafile,
                client_auth=config.ssl_client_auth,
            )
        self.authorizer: Authorizer | None = None
        """The ACLs every request is checked against (``--authorizer``); None: no checks."""
        if config.authorizer:
            self.authorizer = Authorizer(
                super_users=config.super_users,
                allow_everyone_if_no_acl_found=config.allow_everyone_if_no_acl_found,
            )
        self._topic_check: Callable[[str], bool] | None = None
        """Set for the length of one handler call under an authorizer: the gate's per-topic
        check (Fetch: may the caller read it? Metadata: may it create it?)."""
        self.user_credentials: Credentials = {}
        """Users that log in with SASL and can be altered over the wire: the single broker's
        file, or a cluster's image (``_sasl.py``)."""
        self.sasl: SaslLogin | None = None
        if config.sasl_mechanisms:
            self.sasl = SaslLogin(
                check_mechanisms(config.sasl_mechanisms),
                static_credentials(config.sasl_users),
                lambda: self.user_credentials,
                reauth_ms=max(0, config.connections_max_reauth_ms),
            )
            # Routed with the connection's state by handle_frame; listed here so that
            # ApiVersions advertises them.
            self._handlers[p.ApiKey.SASL_HANDSHAKE] = _routed_by_handle_frame
            self._handlers[p.ApiKey.SASL_AUTHENTICATE] = _routed_by_handle_frame
        self._register_optional_handlers()

    # --- lifecycle -------------------------------------------------------------------------

    def open_data_dir(self) -> None:
        """Loads topics, producer ids and every partition log (recovering unclean ones).

        Raises:
            KafkaStorageError: the data directory is missing its parent, unwritable or corrupt.
        """
        data_dir = Path(self.config.data_dir)
        if not data_dir.exists() and not data_dir.parent.is_dir():
            raise KafkaStorageError(
                f"data dir {data_dir} does not exist, nor does its parent {data_dir.parent}"
            )
        try:
            data_dir.mkdir(exist_ok=True)
            probe = data_dir / ".write-probe"
            probe.write_bytes(b"")
            probe.unlink()
        except OSError as exc:
            raise KafkaStorageError(f"data dir {data_dir} is not writable: {exc}") from None
        self._lock_file = lock_data_dir(data_dir)
        self.cluster_id = load_cluster_id(data_dir)
        self.topics = TopicStore.open(data_dir)
        self.throttler.table = load_quotas(data_dir)
        self.user_credentials = load_credentials(data_dir)
        if self.authorizer is not None:
            self.authorizer = self.authorizer.with_acls(load_acls(data_dir))
        self.producer_ids = ProducerIdStore.open(data_dir, node_id=self.config.node_id)
        self.logs = LogManager(data_dir)
        for spec in list(self.topics.topics.values()):
            self._open_topic(spec)

    def close_data_dir(self) -> None:
        """Flushes and closes every log (clean shutdown marker included)."""
        if self.logs is not None:
            self.logs.close_all()
            self.logs = None
        self.partitions.clear()
        if self._lock_file is not None:
            self._lock_file.close()  # closing the file releases the flock
            self._lock_file = None

    async def serve(self, *, task_status: trio.TaskStatus[int] = trio.TASK_STATUS_IGNORED) -> None:
        """Runs the broker until cancelled; reports the bound port through ``task_status``.

        Raises:
            OSError: the listen address cannot be bound (the message says why).
            KafkaStorageError: the data directory cannot be used.
        """
        bound: list[tuple[Listener, list[Any]]] = []
        try:
            for listener in self.config.effective_listeners():
                address = attrs.evolve(self.config, host=listener.host, port=listener.port)
                bound.append((listener, await self._listen(address)))
            self.open_data_dir()
        except BaseException:
            self.close_data_dir()
            for _, sockets in bound:
                for socket_listener in sockets:
                    await socket_listener.aclose()
            raise
        try:
            for listener, sockets in bound:
                port = sockets[0].socket.getsockname()[1]
                self.ports[listener.name] = port
                self.endpoints[listener.name] = (
                    listener.advertised_host or listener.host,
                    listener.advertised_port or port,
                )
            self.port = self.ports[bound[0][0].name]
            log.info(
                "broker %d listening on %s, data in %s",
                self.config.node_id,
                ", ".join(f"{x.name}://{x.host}:{self.ports[x.name]}" for x, _ in bound),
                self.config.data_dir,
            )
            with trio.CancelScope() as scope:
                self._cancel_scope = scope
                async with trio.open_nursery() as nursery:
                    assert self.logs is not None
                    self.flusher = LogFlusher(self.logs, clock_ms=now_ms)
                    await nursery.start(self.flusher.run)
                    await nursery.start(
                        partial(
                            run_log_maintenance,
                            self.logs,
                            interval_s=self.config.log_retention_check_interval_ms / 1000,
                            clock_ms=now_ms,
                            high_watermark=self._maintenance_high_watermark,
                        )
                    )
                    if self.groups is not None:
                        await nursery.start(self.groups.run)
                    # Connections live in their own nursery, so that a shutdown can stop the
                    # listener, let the connections drain, and only then stop the tasks above.
                    async with trio.open_nursery() as connections:
                        await connections.start(self._accept, bound, connections)
                        task_status.started(self.port)
                    nursery.cancel_scope.cancel()
        finally:
            self.close_data_dir()
            log.info("broker %d stopped", self.config.node_id)

    def shutdown(self, grace_s: float = 5.0) -> None:
        """Stops :meth:`serve` cleanly (call it from the broker's trio run).

        The listener stops at once; every connection stops reading and answers what it has
        already read (a waiting Fetch answers now, with what is there); then the logs are
        flushed and closed. Whatever is still running after ``grace_s`` seconds is cancelled.
        """
        self.stopping = True
        if self._accept_scope is not None:
            self._accept_scope.cancel()
        self.connections.drain()
        for partition in list(self.partitions.values()):
            partition.notify_append()
        if self._cancel_scope is not None:
            self._cancel_scope.deadline = min(
                self._cancel_scope.deadline, trio.current_time() + grace_s
            )

    async def _accept(
        self,
        bound: list[tuple[Listener, list[Any]]],
        connections: trio.Nursery,
        *,
        task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED,
    ) -> None:
        with trio.CancelScope() as scope:
            self._accept_scope = scope
            if self.stopping:
                scope.cancel()
            async with trio.open_nursery() as nursery:
                for listener, sockets in bound:
                    await nursery.start(
                        partial(
                            trio.serve_listeners,
                            partial(self._serve_connection, listener),
                            sockets,
                            handler_nursery=connections,
                        )
                    )
                task_status.started()

    async def _serve_connection(self, listener: Listener, stream: trio.SocketStream) -> None:
        await serve_connection(
            stream,
            self.handle_frame,
            self.config,
            self.connections,
            ssl_context=self.ssl_context if listener.tls else None,
            cert_principal=listener.tls and self.config.ssl_client_auth and not listener.sasl,
            listener=listener.name,
            needs_login=listener.sasl,
        )

    # --- topics and partitions ---------------------------------------------------------------

    def _log_config(self, spec: TopicSpec) -> LogConfig:
        return LogConfig.from_topic_config(dict(spec.configs))

    def _open_topic(self, spec: TopicSpec) -> None:
        assert self.logs is not None
        config = self._log_config(spec)
        now = now_ms()
        for index in range(spec.partitions):
            key = (spec.name, index)
            if key not in self.partitions:
                partition_log = self.logs.get_or_create(spec.name, index, config, now)
                self.partitions[key] = Partition(
                    spec.name, index, partition_log, rebuild_producer_state(partition_log)
                )

    def create_topic(
        self, name: str, partitions: int, configs: dict[str, str | None] | None = None
    ) -> TopicSpec:
        """Creates, persists and opens a topic (CreateTopics, auto-creation, the CLI's tests)."""
        assert self.topics is not None
        if partitions == -1:
            partitions = self.config.num_partitions
        spec = self.topics.check_create(name, partitions, configs or {})
        self._log_config(spec)  # values the log engine refuses are INVALID_CONFIG too
        spec = self.topics.create(name, partitions, configs or {})
        self._open_topic(spec)
        log.info("created topic %s with %d partitions", name, partitions)
        return spec

    def create_partitions(self, name: str, count: int, *, validate_only: bool = False) -> None:
        """Grows a topic to ``count`` partitions (CreatePartitions): persisted, then opened.

        Raises:
            UnknownTopicOrPartition, InvalidPartitions: ``count`` not above the current count.
        """
        assert self.topics is not None
        spec = self.topics.check_grow(name, count)
        if validate_only:
            return
        self.topics.grow(name, count)
        self._open_topic(spec)
        log.info("topic %s now has %d partitions", name, count)

    def alter_topic_configs(
        self, name: str, configs: Mapping[str, str], *, validate_only: bool = False
    ) -> None:
        """Replaces a topic's explicit configs (AlterConfigs and IncrementalAlterConfigs,
        ``_alter_configs.py``): written to the topics file, then to its partitions' logs, so
        retention, compaction, segment rolls and flushes follow the new values at once.

        Raises:
            UnknownTopicOrPartition, InvalidConfig.
        """
        assert self.topics is not None
        spec = self.topics.check_alter(name, configs)
        log_config = self._log_config(spec)  # values the log engine refuses are INVALID_CONFIG
        if validate_only:
            return
        self.topics.alter(name, configs)
        for index in range(spec.partitions):
            partition = self.partitions.get((name, index))
            if partition is not None:
                partition.log.config = log_config
        log.info("altered the configs of topic %s: %s", name, dict(spec.configs))

    def delete_topic(self, name: str) -> None:
        """Forgets a topic and removes its logs."""
        assert self.topics is not None and self.logs is not None
        spec = self.topics.delete(name)
        for index in range(spec.partitions):
            partition = self.partitions.pop((name, index), None)
            if partition is not None:
                partition.notify_append()  # wake fetchers so they notice
            self.logs.delete(name, index)
        log.info("deleted topic %s", name)

    def _maintenance_high_watermark(self, partition_log: PartitionLog) -> int:
        """The HW retention and compaction stop at for ``partition_log``: its partition's (a
        follower's own HW, as in Kafka), or 0 (touch nothing) for a log no partition owns."""
        key = parse_partition_dir_name(partition_log.directory.name)
        partition = None if key is None else self.partitions.get(key)
        if partition is None or partition.log is not partition_log:
            return 0
        return partition.high_watermark

    def partition(self, topic: str, index: int) -> Partition:
        """Raises UnknownTopicOrPartition when this broker has no such partition."""
        partition = self.partitions.get((topic, index))
        if partition is None:
            raise UnknownTopicOrPartition(f"unknown topic-partition {topic}-{index}")
        return partition

    # --- dispatch ----------------------------------------------------------------------------

    def advertised_versions(self) -> dict[p.ApiKey, tuple[int, int]]:
        """API versions we serve: the protocol table, limited to APIs with a handler.

        Computed once per handler table: every request checks its version against it, and
        rebuilding it per request cost about 9% of a replicated leader's CPU.
        """
        handlers = len(self._handlers)
        cached = self._advertised
        if cached is not None and cached[0] == handlers:
            return cached[1]
        table: dict[p.ApiKey, tuple[int, int]] = {}
        codec = p.codec_versions()
        wanted = dict(p.API_VERSIONS)
        wanted.update(_EXTRA_VERSIONS)
        wanted.update(p.GROUP_API_VERSIONS)
        if self.sasl is not None:
            # v1 only: v0 would send the tokens outside Kafka's framing.
            wanted.update({p.ApiKey.SASL_HANDSHAKE: (1, 1), p.ApiKey.SASL_AUTHENTICATE: (0, 1)})
        for key, (lo, hi) in wanted.items():
            if key in self._handlers and key in codec:
                clo, chi = codec[key]
                if max(lo, clo) <= min(hi, chi):
                    table[key] = (max(lo, clo), min(hi, chi))
        self._advertised = (handlers, table)
        return table

    def handle_frame(self, frame: bytes, info: ConnectionInfo) -> Any:
        """Decodes and handles one request frame; returns the encoded response (list of
        buffers), ``NO_RESPONSE``, or a ``Parked``, ``Delayed`` or ``Held`` that gives one of
        those later (``_server.py``).

        Raises:
            ConnectionClosed: the frame cannot be served (the connection closes).
        """
        try:
            header, body_offset = p.decode_request_header(frame)
        except QuorumqError as exc:
            raise ConnectionClosed(f"bad request header: {exc}") from None
        handler = self._handlers.get(header.api_key)
        if handler is None:
            raise ConnectionClosed(f"unknown api key {header.api_key}")
        if info.needs_login:
            if header.api_key in SASL_KEYS:
                handler = partial(self._sasl_request, info)
            elif info.principal is None and header.api_key != p.ApiKey.API_VERSIONS:
                raise ConnectionClosed(f"api key {header.api_key} before SASL authentication")
            elif info.session_expires_at != math.inf and (
                info.session_expires_at < trio.current_time()
            ):
                # KIP-368: the login expired and the client did not log in again. (A login
                # that never expires costs no clock read per request.)
                raise ConnectionClosed(f"the SASL login of {info.principal} expired")
        elif header.api_key in SASL_KEYS:
            raise ConnectionClosed(f"SASL on listener {info.listener}, which has none")
        self._request_listener = info.listener
        if header.api_key == p.ApiKey.API_VERSIONS and header.api_version > 3:
            response = p.api_versions_response(
                self.advertised_versions(), error_code=ErrorCode.UNSUPPORTED_VERSION
            )
            return p.encode_response(header, response)
        versions = self.advertised_versions().get(p.ApiKey(header.api_key))
        if versions is None or not versions[0] <= header.api_version <= versions[1]:
            raise ConnectionClosed(
                f"unsupported version {header.api_version} of api key {header.api_key}"
            )
        try:
            request = p.decode_request(header, frame, body_offset)
        except (InvalidRequest, UnsupportedVersion) as exc:
            raise ConnectionClosed(f"bad request body: {exc}") from None
        fix = None
        if self.authorizer is not None:
            caller = Caller(self.authorizer, "User:" + (info.principal or ANONYMOUS), info.host)
            gate = GATES.get(header.api_key)
            if gate is not None:
                decision = gate(caller, request)
                if decision.deny is not None:
                    if decision.deny is NO_ANSWER:
                        raise ConnectionClosed("acks=0 produce to topics it may not write")
                    return p.encode_response(header, decision.deny)
                if decision.request is not None:
                    request = decision.request
                fix = decision.fix
                if decision.check is not None:
                    handler = partial(self._checked, handler, decision.check)
        result = handler(header, request)
        if self.throttler.table and (
            header.api_key == p.ApiKey.PRODUCE
            or (header.api_key == p.ApiKey.FETCH and request.replica_id < 0)
        ):
            return self._throttled(header, len(frame), info, result, fix)
        if fix is not None:
            return _encoded(
                header, result, lambda response: p.encode_response(header, fix(response))
            )
        return _encoded(header, result)

    def _checked(
        self, handler: Handler, check: Callable[[str], bool], header: p.RequestHeader, request: Any
    ) -> Any:
        """Runs a handler with its gate's per-topic ``check`` in reach (``_topic_check``: may
        the caller read this topic, or create it?), also when the handler is held and called
        again later."""
        self._topic_check = check
        try:
            result = handler(header, request)
        finally:
            self._topic_check = None
        if isinstance(result, Held):
            again = result.again
            return Held(
                result.wait,
                lambda: self._checked(lambda h, r: again(), check, header, request),
            )
        return result

    def _sasl_request(self, info: ConnectionInfo, header: p.RequestHeader, request: Any) -> Any:
        """SaslHandshake or SaslAuthenticate of a connection that has not logged in yet, or
        that logs in again (KIP-368)."""
        assert self.sasl is not None
        try:
            if header.api_key == p.ApiKey.SASL_HANDSHAKE:
                return self.sasl.handshake(request, info)
            answer = self.sasl.authenticate(request, info, trio.current_time())
        except IllegalSaslState as exc:
            raise ConnectionClosed(str(exc)) from None
        if not answer.error_code:
            return answer

        async def after_a_pause() -> Any:
            # Kafka's connection.failed.authentication.delay.ms: a password guesser gets one
            # answer per pause per connection, not as many as the CPU allows.
            await trio.sleep(FAILED_LOGIN_DELAY_S)
            return answer

        return Delayed(after_a_pause)

    def _throttled(
        self,
        header: p.RequestHeader,
        frame_size: int,
        info: ConnectionInfo,
        result: Any,
        fix: Callable[[Any], Any] | None = None,
    ) -> Any:
        """A client produce's or consumer fetch's answer under a quota (``_quotas.py``):
        encoded with the throttle it earned, which also mutes the connection that long."""

        def mute(throttle_ms: int) -> None:
            until = mute_deadline(trio.current_time(), throttle_ms)
            info.muted_until = max(info.muted_until, until)

        throttle = None
        if header.api_key == p.ApiKey.PRODUCE:
            throttle = produce_throttle_ms(
                self.throttler, header, info.principal, frame_size, now_ms()
            )
            if throttle and result is NO_RESPONSE:
                mute(throttle)  # acks=0: no answer to carry it, the muting alone holds it back
        encode = throttled_encoder(self.throttler, header, info.principal, throttle, now_ms, mute)
        if fix is not None:
            throttled = encode
            encode = lambda response: throttled(fix(response))  # noqa: E731
        return _encoded(header, result, encode)

    def _register_optional_handlers(self) -> None:
        """APIs whose codecs land separately from the core four (ListOffsets, topics, ...)."""
        from quorumq.broker import _handlers_extra

        _handlers_extra.register(self, self._handlers)
        from quorumq.broker import _alter_configs

        for api_key, incremental in (
            (p.ApiKey.ALTER_CONFIGS, False),
            (p.ApiKey.INCREMENTAL_ALTER_CONFIGS, True),
        ):
            self._handlers[api_key] = _alter_configs.single_broker_handler(self, incremental)
        from quorumq.broker import _groups

        _groups.register(self, self._handlers)  # after _handlers_extra: owns FindCoordinator

    # --- ApiVersions -------------------------------------------------------------------------

    def _api_versions(self, header: p.RequestHeader, request: Any) -> Any:
        return p.api_versions_response(self.advertised_versions())

    # --- Metadata ----------------------------------------------------------------------------

    def own_endpoint(self) -> tuple[str, int]:
        """(host, port) this broker advertises on the listener of the request being handled
        (before :meth:`serve` has bound: the configured ones)."""
        found = self.endpoints.get(self._request_listener)
        if found is None and self.endpoints:
            found = next(iter(self.endpoints.values()))
        return found or (self.config.advertised, self.port or self.config.port)

    def _metadata(self, header: p.RequestHeader, request: p.MetadataRequest) -> Any:
        assert self.topics is not None
        if request.topics is None:
            names = list(self.topics.topics)
        else:
            names = [t.name for t in request.topics if t.name is not None]
        auto_create = self.config.auto_create_topics_enable and (
            header.api_version < 4 or request.allow_auto_topic_creation
        )
        topics = []
        for name in names:
            topics.append(self._metadata_topic(name, auto_create and request.topics is not None))
        host, port = self.own_endpoint()
        return p.MetadataResponse(
            brokers=[
                p.MetadataResponseBroker(
                    node_id=self.config.node_id, host=host, port=port, rack=None
                )
            ],
            cluster_id=self.cluster_id,
            controller_id=self.config.node_id,
            topics=topics,
        )

    def _metadata_topic(self, name: str, auto_create: bool) -> p.MetadataResponseTopic:
        assert self.topics is not None
        spec = self.topics.topics.get(name)
        if spec is None:
            try:
                may_create = self._topic_check  # None: no authorizer, or CREATE on the cluster
                if auto_create and may_create is not None and not may_create(name):
                    raise TopicAuthorizationFailed(f"may not create {name!r}")
                validate_topic_name(name)
                if not auto_create:
                    raise UnknownTopicOrPartition(f"unknown topic {name!r}")
                spec = self.create_topic(name, self.config.num_partitions)
            except Exception as exc:
                return p.MetadataResponseTopic(
                    error_code=error_code_for(exc, f"metadata for {name!r}"), name=name
                )
        node = self.config.node_id
        return p.MetadataResponseTopic(
            error_code=0,
            name=spec.name,
            topic_id=spec.topic_id,
            is_internal=spec.name == "__consumer_offsets",  # Kafka's internal topic
            partitions=[
                p.MetadataResponsePartition(
                    error_code=0,
                    partition_index=index,
                    leader_id=node,
                    leader_epoch=0,
                    replica_nodes=[node],
                    isr_nodes=[node],
                    offline_replicas=[],
                )
                for index in range(spec.partitions)
            ],
        )

    # --- Produce -----------------------------------------------------------------------------

    def _append(
        self, partition: Partition, records: Any, now: int, *, log_append_time: bool = False
    ) -> tuple[int, int, int, int]:
        """Validates and appends one partition's record set.

        Returns ``(base_offset, last_offset, log_start_offset, log_append_time_ms)``; for a
        duplicate retry of an idempotent producer, the offsets of the original append. With
        ``log_append_time`` (``message.timestamp.type=LogAppendTime``) every batch is stamped
        with ``now`` as Kafka's LogValidator does; otherwise ``log_append_time_ms`` is -1.
        """
        if records is None:
            raise CorruptRecord("produce request without a record set")
        partition.check_writable()
        partition_log = partition.log
        validated = validate_records(
            records, max_message_bytes=partition_log.config.max_message_bytes
        )
        for _position, batch in validated:
            if batch.is_control:
                raise InvalidRecord("control batches are written by the broker, not by clients")
        if log_append_time:
            records, validated = stamp_log_append_time(records, validated, now)
        state = partition.producer_state
        first = validated[0][1]
        # check -> append -> on_append with no checkpoint between: two concurrent retries of
        # one batch cannot both pass.
        duplicate = state.check(first)
        if duplicate is not None:
            return (
                duplicate.first_offset,
                duplicate.last_offset,
                partition.log_start_offset,
                duplicate.timestamp if log_append_time else -1,
            )
        info = partition_log.append(
            records, leader_epoch=partition.leader_epoch, now_ms=now, validated=validated
        )
        base_offset = info.first_offset
        for _position, batch in validated:
            state.on_append(batch, base_offset)
            base_offset += batch.last_offset_delta + 1
        partition.notify_append()
        return (
            info.first_offset,
            info.last_offset,
            info.log_start_offset,
            now if log_append_time else -1,
        )

    def _uses_log_append_time(self, topic: str) -> bool:
        assert self.topics is not None
        return self.topics.config(topic, "message.timestamp.type") == "LogAppendTime"

    def _produce(self, header: p.RequestHeader, request: p.ProduceRequest) -> Any:
        now = now_ms()
        acks = request.acks
        topics = []
        waits: list[tuple[Partition, int, int]] = []
        any_error = False
        for topic in request.topics:
            partitions = []
            for pd in topic.partitions:
                what = f"produce to {topic.name}-{pd.partition_index}"
                try:
                    if acks not in (0, 1, -1):
                        raise InvalidRequiredAcks(f"acks={acks}")
                    partition = self.partition(topic.name, pd.partition_index)
                    if acks == -1:
                        partition.check_acks_all()
                    base_offset, last_offset, log_start, append_time = self._append(
                        partition,
                        pd.records,
                        now,
                        log_append_time=self._uses_log_append_time(topic.name),
                    )
                    waits.append((partition, last_offset, partition.leader_epoch))
                    partitions.append(
                        p.ProduceResponsePartition(
                            partition_index=pd.partition_index,
                            error_code=0,
                            base_offset=base_offset,
                            log_append_time_ms=append_time,
                            log_start_offset=log_start,
                        )
                    )
                except Exception as exc:
                    any_error = True
                    partitions.append(
                        p.ProduceResponsePartition(
                            partition_index=pd.partition_index,
                            error_code=error_code_for(exc, what),
                            base_offset=-1,
                            error_message=str(exc) or None,
                        )
                    )
            topics.append(p.ProduceResponseTopic(name=topic.name, partitions=partitions))
        if acks == 0:
            if any_error:
                # Kafka closes the connection so that a fire-and-forget producer notices.
                raise ConnectionClosed("acks=0 produce failed")
            return NO_RESPONSE
        response = p.ProduceResponse(topics=topics)
        pending = [wait for wait in waits if wait[0].high_watermark <= wait[1]]
        if acks != -1 or not pending:
            return response
        timeout_ms = min(request.timeout_ms, self.config.produce_timeout_ms_cap)
        # The timeout counts from the request's arrival, as in Kafka's purgatory.
        deadline = trio.current_time() + max(timeout_ms, 0) / 1000

        def poll_commit() -> Any:
            # acks=all: answer once the high watermark passes every appended batch; called on
            # each HW move of a waiting partition (and role change), and at the deadline.
            try:
                while pending:
                    part, last, epoch = pending[-1]
                    if not part.is_committed(last, epoch, deadline, timeout_ms):
                        return PENDING
                    pending.pop()
            except QuorumqError as exc:
                return _with_produce_error(response, error_code_for(exc, "acks=all produce"))
            return response

        return Parked(poll_commit, [part.commit_watchers for part, _, _ in pending], deadline)

    # --- Fetch -------------------------------------------------------------------------------

    def _read_fetch(
        self,
        request: p.FetchRequest,
        context: FetchContext,
        *,
        rereading: bool = False,
        may_read: Callable[[str], bool] | None = None,
    ) -> tuple[p.FetchResponse, int, bool]:
        """Reads the partitions ``context`` names once; returns (response, bytes, any_error).
        An incremental session's read looks only at partitions that moved or still have
        something to tell, and its response leaves out those with nothing new
        (``_fetch_session.py``); ``rereading``: a parked fetch's re-check."""
        remaining = request.max_bytes if request.max_bytes > 0 else 0x7FFFFFFF
        total = 0
        any_error = False
        is_consumer = request.replica_id < 0
        incremental = context.incremental
        topics: dict[str, list[p.FetchResponsePartition]] = {}
        partitions = self.partitions
        session = context.session
        for name, fp in context.to_read(rereading):
            key = (name, fp.partition_index)
            try:
                if may_read is not None and not may_read(name):
                    raise TopicAuthorizationFailed(f"not authorized to read {name!r}")
                partition = self.partition(name, fp.partition_index)
                if session is not None:
                    partition.fetch_sessions.add(session)
                partition.check_fetch(request.replica_id, fp.fetch_offset, fp.current_leader_epoch)
                if not is_consumer:
                    partition.note_follower_log_start(request.replica_id, fp.log_start_offset)
                high_watermark = partition.high_watermark
                read_limit = partition.replica_read_limit
                if incremental and context.unchanged(
                    key,
                    fp.fetch_offset,
                    high_watermark
                    if is_consumer
                    else (partition.log_end_offset if read_limit is None else read_limit),
                    high_watermark,
                    partition.log_start_offset,
                ):
                    # Nothing to read, nothing new to tell: not in the response, and not
                    # looked at again until the partition changes.
                    context.looked(key, unchanged=True)
                    continue
                if total and remaining <= 0:
                    records: Any = b""
                    log_start = partition.log_start_offset
                else:
                    limit = min(fp.partition_max_bytes, remaining)
                    result = partition.log.read(
                        fp.fetch_offset,
                        limit if total else max(limit, 1),
                        max_offset=high_watermark if is_consumer else read_limit,
                    )
                    records = result.records
                    if total and len(records) > limit:
                        # Only the first non-empty partition may exceed the byte limits
                        # (KIP-74); this one's batch waits for the next fetch.
                        records = b""
                    log_start = result.log_start_offset
                    total += len(records)
                    remaining -= len(records)
                answer = p.FetchResponsePartition(
                    partition_index=fp.partition_index,
                    error_code=0,
                    high_watermark=high_watermark,
                    last_stable_offset=high_watermark,
                    log_start_offset=log_start,
                    aborted_transactions=None,
                    records=records,
                )
                if incremental:
                    context.looked(key, unchanged=False)
                    if not context.include(key, answer):
                        continue
            except Exception as exc:
                any_error = True
                context.looked(key, unchanged=False)
                log_start = -1
                if not is_consumer and isinstance(exc, OffsetOutOfRange):
                    # A follower below our log start learns where to restart from this
                    # field (Kafka's followers ask ListOffsets; clients ignore it on error).
                    known = partitions.get(key)
                    if known is not None:
                        log_start = known.log_start_offset
                answer = p.FetchResponsePartition(
                    partition_index=fp.partition_index,
                    error_code=error_code_for(exc, f"fetch from {name}-{fp.partition_index}"),
                    high_watermark=-1,
                    last_stable_offset=-1,
                    log_start_offset=log_start,
                    records=b"",
                )
            answers = topics.get(name)
            if answers is None:
                answers = topics[name] = []
            answers.append(answer)
        response = p.FetchResponse(
            session_id=context.session_id,
            topics=[p.FetchResponseTopic(name=n, partitions=parts) for n, parts in topics.items()],
        )
        return response, total, any_error

    def _release_sessions(self, context: FetchContext) -> None:
        """Partitions stop telling sessions that no longer hold them (forgotten partitions,
        closed, replaced or evicted sessions)."""
        partitions = self.partitions
        for key in context.forgotten:
            partition = partitions.get(key)
            if partition is not None:
                partition.fetch_sessions.discard(context.session)
        for session in context.dropped:
            for key in session.partitions:
                partition = partitions.get(key)
                if partition is not None:
                    partition.fetch_sessions.discard(session)

    def _fetch(self, header: p.RequestHeader, request: p.FetchRequest) -> Any:
        may_read = self._topic_check  # None: no authorizer
        now = trio.current_time()
        context = self.fetch_sessions.context(request, now)
        if context.forgotten or context.dropped:
            self._release_sessions(context)
        if context.error:
            return p.FetchResponse(error_code=context.error, session_id=0, topics=[])
        response, total, any_error = self._read_fetch(request, context, may_read=may_read)
        if any_error or total >= request.min_bytes or request.max_wait_ms <= 0:
            context.commit(response)
            return response
        deadline = trio.current_time() + request.max_wait_ms / 1000
        # Consumers see only committed offsets, so they wake when an HW moves; followers
        # wake when a log end moves. Parked right after the read above, with nothing in
        # between, so no append can slip past unnoticed.
        is_consumer = request.replica_id < 0
        session = context.session
        if session is not None:
            # Every partition of the session has been looked at since it joined, which
            # registered it: the session's waiters are woken by whichever of them moves
            # (``Partition.fetch_sessions``).
            watched = [session.commit_waiters if is_consumer else session.append_waiters]
        else:
            watched = [
                part.commit_watchers if is_consumer else part.append_watchers
                for name, fp in context.partitions
                if (part := self.partitions.get((name, fp.partition_index))) is not None
            ]

        def poll_data() -> Any:
            response, total, failed = self._read_fetch(
                request, context, rereading=True, may_read=may_read
            )
            if (
                failed
                or total >= request.min_bytes
                or trio.current_time() >= deadline
                or self.stopping
            ):
                context.commit(response)  # only what is sent counts as told
                return response
            return PENDING

        def answer_now() -> Any:
            response, _, _ = self._read_fetch(request, context, rereading=True, may_read=may_read)
            context.commit(response)
            return response

        return Parked(poll_data, watched, deadline, answer_now)


def stamp_log_append_time(
    records: Any, validated: list[tuple[int, BatchHeader]], now: int
) -> tuple[bytearray, list[tuple[int, BatchHeader]]]:
    """Sets LOG_APPEND_TIME and ``maxTimestamp = now`` in every batch (Kafka's
    ``setMaxTimestamp``), recomputing each CRC; records keep their own timestamps, which
    consumers ignore for such batches. Returns the new bytes and their headers."""
    data = bytearray(records)
    for position, batch in validated:
        _ATTRIBUTES.pack_into(data, position + 21, batch.attributes | ATTR_TIMESTAMP_TYPE)
        _MAX_TIMESTAMP.pack_into(data, position + 35, now)
        _CRC.pack_into(data, position + 17, compute_crc(data, position))
    return data, [
        (
            position,
            attrs.evolve(
                batch,
                attributes=batch.attributes | ATTR_TIMESTAMP_TYPE,
                max_timestamp=now,
                crc=_CRC.unpack_from(data, position + 17)[0],
            ),
        )
        for position, batch in validated
    ]


_ATTRIBUTES = struct.Struct(">h")
_MAX_TIMESTAMP = struct.Struct(">q")
_CRC = struct.Struct(">I")


def _with_produce_error(response: p.ProduceResponse, code: int) -> p.ProduceResponse:
    return attrs.evolve(
        response,
        topics=[
            attrs.evolve(
                t,
                partitions=[attrs.evolve(x, error_code=code, base_offset=-1) for x in t.partitions],
            )
            for t in response.topics
        ],
    )


FAILED_LOGIN_DELAY_S = 0.1
"""Kafka's ``connection.failed.authentication.delay.ms`` default."""


def _routed_by_handle_frame(header: p.RequestHeader, request: Any) -> Any:
    raise AssertionError("SASL requests are handled with their connection (handle_frame)")


Encoder = Callable[[Any], Any]
"""A response value → the buffers to send (``p.encode_response`` for the request's header)."""


def _encoded(header: p.RequestHeader, result: Any, encode: Encoder | None = None) -> Any:
    """A handler's answer, with what it will send encoded for ``header``'s version (by
    ``encode`` when given: a throttled answer)."""
    if result is NO_RESPONSE:
        return NO_RESPONSE
    if encode is None:
        if not isinstance(result, (Parked, Delayed, Held)):
            return p.encode_response(header, result)
        encode = partial(p.encode_response, header)
    if isinstance(result, Parked):
        answer_now = result.answer_now
        return Parked(
            _encode_poll(encode, result.poll),
            result.watchers,
            result.deadline,
            None if answer_now is None else _encode_poll(encode, answer_now),
        )
    if isinstance(result, Delayed):
        return Delayed(_encode_later(encode, result))
    if isinstance(result, Held):
        again = result.again
        return Held(result.wait, lambda: _encoded(header, again(), encode))
    return encode(result)


def _encode_poll(encode: Encoder, poll: Callable[[], Any]) -> Callable[[], Any]:
    def encoded() -> Any:
        result = poll()
        if result is PENDING or result is NO_RESPONSE:
            return result
        return encode(result)

    return encoded


def _encode_later(encode: Encoder, delayed: Delayed) -> Any:
    async def run() -> Any:
        result = await delayed.wait()
        if result is NO_RESPONSE:
            return NO_RESPONSE
        return encode(result)

    return run


# Issue 3's version ranges for the APIs beyond the protocol engineer's first four; the codec's own
# range (codec_versions) still limits what we advertise.
_EXTRA_VERSIONS: dict[p.ApiKey, tuple[int, int]] = {
    p.ApiKey.LIST_OFFSETS: (1, 7),
    p.ApiKey.CREATE_TOPICS: (0, 4),
    p.ApiKey.DELETE_TOPICS: (1, 3),
    p.ApiKey.DESCRIBE_CONFIGS: (0, 2),
    p.ApiKey.ALTER_CONFIGS: (0, 1),
    p.ApiKey.CREATE_PARTITIONS: (0, 3),
    p.ApiKey.DELETE_RECORDS: (0, 2),
    p.ApiKey.DESCRIBE_LOG_DIRS: (1, 4),
    p.ApiKey.INCREMENTAL_ALTER_CONFIGS: (0, 1),
    p.ApiKey.INIT_PRODUCER_ID: (0, 1),
    p.ApiKey.OFFSET_FOR_LEADER_EPOCH: (2, 3),
    p.ApiKey.FIND_COORDINATOR: (0, 2),
    p.ApiKey.ELECT_LEADERS: (0, 2),  # a single broker answers ELECTION_NOT_NEEDED
    p.ApiKey.BROKER_HEARTBEAT: (0, 1),  # cluster brokers only; answered by the active controller
    p.ApiKey.DESCRIBE_CLIENT_QUOTAS: (0, 1),
    p.ApiKey.ALTER_CLIENT_QUOTAS: (0, 1),
    p.ApiKey.DESCRIBE_USER_SCRAM_CREDENTIALS: (0, 0),
    p.ApiKey.ALTER_USER_SCRAM_CREDENTIALS: (0, 0),
    p.ApiKey.DESCRIBE_ACLS: (1, 3),
    p.ApiKey.CREATE_ACLS: (1, 3),
    p.ApiKey.DELETE_ACLS: (1, 3),
}
