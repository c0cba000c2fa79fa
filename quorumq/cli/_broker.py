"""``quorumq broker``: one broker in the foreground until Ctrl-C or SIGTERM."""

from __future__ import annotations

import logging
import os
import signal
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

import trio
import typer

from quorumq.broker import Broker, BrokerConfig, ClusterBroker, ClusterConfig
from quorumq.broker._listeners import Listener, inter_broker_listener, parse_listeners
from quorumq.broker._sasl import check_mechanisms
from quorumq.cli._app import app
from quorumq.client._connection import split_host_port
from quorumq.cluster._supervisor import EXIT_WITH_PARENT_ENV, pid_exists
from quorumq.controller import parse_voters
from quorumq.errors import InvalidConfig, InvalidRequest


@app.command("broker")
def broker_command(
    data_dir: Path = typer.Option(..., "--data-dir", help="Where topics and logs live."),
    node_id: int = typer.Option(0, "--node-id", help="This broker's id (broker.id)."),
    listen: str = typer.Option("127.0.0.1:9092", "--listen", help="HOST:PORT to listen on."),
    listeners: str | None = typer.Option(
        None,
        "--listeners",
        help="NAME://HOST:PORT,... to listen on instead of --listen, each with its own "
        "security (listeners), e.g. INTERNAL://127.0.0.1:9092,EXTERNAL://0.0.0.0:9093. A "
        "listener named PLAINTEXT, SSL, SASL_PLAINTEXT or SASL_SSL speaks that protocol.",
    ),
    listener_security_protocol_map: str | None = typer.Option(
        None,
        "--listener-security-protocol-map",
        help="NAME:PROTOCOL,... for listeners not named after a protocol, e.g. "
        "INTERNAL:PLAINTEXT,EXTERNAL:SASL_SSL.",
    ),
    advertised_listeners: str | None = typer.Option(
        None,
        "--advertised-listeners",
        help="NAME://HOST:PORT,... that clients are told to connect to, where it differs "
        "from --listeners (behind NAT or a proxy).",
    ),
    inter_broker_listener_name: str | None = typer.Option(
        None,
        "--inter-broker-listener-name",
        help="The listener brokers reach each other on (default: the first of --listeners).",
    ),
    num_partitions: int = typer.Option(1, "--num-partitions", help="num.partitions"),
    auto_create_topics: bool = typer.Option(
        True, "--auto-create-topics/--no-auto-create-topics", help="auto.create.topics.enable"
    ),
    log_level: str = typer.Option("info", "--log-level", help="debug, info, warning, error"),
    controller_voters: str | None = typer.Option(
        None,
        "--controller-voters",
        help="Join a cluster: ID@HOST:PORT,... of every controller voter (every broker is one); "
        "this broker's Raft port is its own entry. Without it the broker runs alone.",
    ),
    controller_password: str | None = typer.Option(
        None,
        "--controller-password",
        envvar="QUORUMQ_CONTROLLER_PASSWORD",
        help="Shared secret for Raft traffic (all voters must agree).",
    ),
    default_replication_factor: int = typer.Option(
        1, "--default-replication-factor", help="default.replication.factor (cluster mode)"
    ),
    session_timeout_ms: int = typer.Option(
        9000, "--session-timeout-ms", help="broker.session.timeout.ms (cluster mode)"
    ),
    heartbeat_interval_ms: int = typer.Option(
        2000, "--heartbeat-interval-ms", help="broker.heartbeat.interval.ms (cluster mode)"
    ),
    replica_lag_time_max_ms: int = typer.Option(
        30000, "--replica-lag-time-max-ms", help="replica.lag.time.max.ms (cluster mode)"
    ),
    auto_leader_rebalance: bool = typer.Option(
        True,
        "--auto-leader-rebalance/--no-auto-leader-rebalance",
        help="auto.leader.rebalance.enable (cluster mode)",
    ),
    leader_imbalance_check_interval_ms: int = typer.Option(
        300_000,
        "--leader-imbalance-check-interval-ms",
        min=100,
        help="leader.imbalance.check.interval.seconds, in ms (cluster mode)",
    ),
    leader_transfer_timeout_ms: int | None = typer.Option(
        None,
        "--leader-transfer-timeout-ms",
        min=0,
        help="how long a quorum preferred election waits for its leader to drain before it "
        "runs anyway; default two heartbeat intervals + 1 s; 0: no leadership transfer "
        "(cluster mode)",
    ),
    controlled_shutdown_timeout_ms: int = typer.Option(
        5000,
        "--controlled-shutdown-timeout-ms",
        min=0,
        help="on SIGTERM or Ctrl-C, how long to wait for the controller to move this broker's "
        "leaderships away before stopping; 0: stop at once (controlled.shutdown.enable=false; "
        "cluster mode)",
    ),
    crash_probe: bool = typer.Option(
        True,
        "--crash-probe/--no-crash-probe",
        help="the active controller fences a silent broker whose port refuses connections "
        "(its process is gone) at once, instead of after its session (cluster mode)",
    ),
    sasl_mechanism: list[str] = typer.Option(
        [],
        "--sasl-mechanism",
        help="Require a SASL login on the listener with this mechanism (PLAIN, SCRAM-SHA-256, "
        "SCRAM-SHA-512); repeat for several (sasl.enabled.mechanisms).",
    ),
    sasl_user: list[str] = typer.Option(
        [],
        "--sasl-user",
        envvar="QUORUMQ_SASL_USERS",
        help="NAME=PASSWORD of a user defined in the broker's config (the first admin); "
        "repeat for several. Users in the metadata log come from `quorumq user set`.",
    ),
    connections_max_reauth_ms: int = typer.Option(
        0,
        "--connections-max-reauth-ms",
        min=0,
        help="How long a SASL login lasts (KIP-368): clients log in again on the same "
        "connection before then, or it is closed. 0: as long as the connection.",
    ),
    ssl_certfile: Path | None = typer.Option(
        None,
        "--ssl-certfile",
        help="PEM certificate of the listener: it speaks TLS (SSL, or SASL_SSL with "
        "--sasl-mechanism).",
    ),
    ssl_keyfile: Path | None = typer.Option(None, "--ssl-keyfile", help="PEM private key."),
    ssl_cafile: Path | None = typer.Option(
        None,
        "--ssl-cafile",
        help="PEM CA: client certificates must chain to it (--ssl-client-auth), and a "
        "cluster's brokers check each other against it.",
    ),
    ssl_client_auth: bool = typer.Option(
        False,
        "--ssl-client-auth",
        help="Require a client certificate; without SASL its subject is the principal.",
    ),
    authorizer: bool = typer.Option(
        False,
        "--authorizer/--no-authorizer",
        help="Check every request against the ACLs (`quorumq acl`); in a cluster this needs "
        "--sasl-mechanism.",
    ),
    super_user: list[str] = typer.Option(
        [], "--super-user", help="User:NAME the ACLs do not apply to (super.users); repeatable."
    ),
    allow_everyone_if_no_acl_found: bool = typer.Option(
        False,
        "--allow-everyone-if-no-acl-found",
        help="A resource with no ACL at all is open to everyone.",
    ),
) -> None:
    """Run one broker in the foreground; Ctrl-C or SIGTERM stops it cleanly."""
    logging.basicConfig(
        level=getattr(logging, log_level.upper(), logging.INFO),
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
    )
    try:
        host, port = split_host_port(listen)
    except ValueError:
        raise typer.BadParameter(f"--listen wants HOST:PORT, got {listen!r}") from None
    users: dict[str, str] = {}
    for entry in sasl_user:
        name, sep, password = entry.partition("=")
        if not sep or not name or not password:
            raise typer.BadParameter("--sasl-user wants NAME=PASSWORD")
        users[name] = password
    try:
        mechanisms = check_mechanisms(tuple(sasl_mechanism))
    except InvalidRequest as exc:
        raise typer.BadParameter(f"--sasl-mechanism: {exc}") from None
    if (ssl_keyfile or ssl_cafile or ssl_client_auth) and ssl_certfile is None:
        raise typer.BadParameter(
            "--ssl-keyfile, --ssl-cafile and --ssl-client-auth need --ssl-certfile"
        )
    if ssl_client_auth and ssl_cafile is None:
        raise typer.BadParameter(
            "--ssl-client-auth needs --ssl-cafile (what client certificates chain to)"
        )
    bad = [u for u in super_user if not u.startswith("User:") or u == "User:"]
    if bad:
        raise typer.BadParameter(f"--super-user wants User:NAME, got {bad[0]!r}")
    parsed: tuple[Listener, ...] = ()
    if listeners is not None:
        try:
            parsed = parse_listeners(
                listeners, listener_security_protocol_map, advertised_listeners
            )
            inter_broker = inter_broker_listener(parsed, inter_broker_listener_name)
        except InvalidConfig as exc:
            raise typer.BadParameter(f"--listeners: {exc}") from None
        if any(x.sasl for x in parsed) and not mechanisms:
            raise typer.BadParameter("a SASL listener needs --sasl-mechanism")
        if any(x.tls for x in parsed) and ssl_certfile is None:
            raise typer.BadParameter("an SSL or SASL_SSL listener needs --ssl-certfile")
        inter_broker_sasl = inter_broker.sasl
    else:
        if listener_security_protocol_map or advertised_listeners or inter_broker_listener_name:
            raise typer.BadParameter(
                "--listener-security-protocol-map, --advertised-listeners and "
                "--inter-broker-listener-name need --listeners"
            )
        inter_broker_sasl = bool(mechanisms)
    if authorizer and controller_voters and not inter_broker_sasl:
        raise typer.BadParameter(
            "--authorizer in a cluster needs --sasl-mechanism (on the inter-broker listener): "
            "without a login a broker's replica fetches cannot be told from a client's"
        )
    if inter_broker_sasl and controller_voters and not controller_password:
        raise typer.BadParameter(
            "--sasl-mechanism in a cluster needs --controller-password: brokers log in to "
            "each other with it"
        )
    config = BrokerConfig(
        data_dir=data_dir,
        node_id=node_id,
        host=host,
        port=port,
        num_partitions=num_partitions,
        auto_create_topics_enable=auto_create_topics,
        sasl_mechanisms=mechanisms,
        sasl_users=users,
        connections_max_reauth_ms=connections_max_reauth_ms,
        authorizer=authorizer,
        ssl_certfile=ssl_certfile,
        ssl_keyfile=ssl_keyfile,
        ssl_cafile=ssl_cafile,
        ssl_client_auth=ssl_client_auth,
        super_users=tuple(super_user),
        allow_everyone_if_no_acl_found=allow_everyone_if_no_acl_found,
        listeners=parsed,
        inter_broker_listener_name=inter_broker_listener_name,
    )
    cluster = None
    if controller_voters:
        # Checked before anything starts: a bad voter list used to be found only after the
        # broker had opened its listener and logged that it was listening.
        try:
            voters = parse_voters(controller_voters)
        except InvalidConfig as exc:
            raise typer.BadParameter(f"--controller-voters: {exc}") from None
        if node_id not in voters:
            raise typer.BadParameter(
                f"--node-id {node_id} is not among --controller-voters ({controller_voters})"
            )
        cluster = ClusterConfig(
            voters=controller_voters,
            password=controller_password,
            default_replication_factor=default_replication_factor,
            session_timeout_ms=session_timeout_ms,
            heartbeat_interval_s=heartbeat_interval_ms / 1000,
            replica_lag_time_max_ms=replica_lag_time_max_ms,
            auto_leader_rebalance_enable=auto_leader_rebalance,
            leader_imbalance_check_interval_ms=leader_imbalance_check_interval_ms,
            leader_transfer_timeout_ms=leader_transfer_timeout_ms,
            controlled_shutdown_timeout_ms=controlled_shutdown_timeout_ms,
            crash_probe=crash_probe,
        )
    run_trio(_serve_until_signal, config, cluster)


async def _stop_when_orphaned(broker: Broker, supervisor_pid: int | None) -> None:
    """Stops the broker (as SIGTERM does) once the supervisor that started it is gone.

    Two checks, because each misses a case. The parent changes when it dies (the kernel
    reparents us), compared with the parent at start rather than the supervisor's PID, so a
    launcher in between that execs (``env``) does not count as gone. But a supervisor killed
    while this process was still importing is already gone when we first look, and a launcher
    that stays alive in between (``uv run``) hides its death; so the supervisor's own PID,
    handed down in the environment, is checked too."""
    log = logging.getLogger("quorumq.broker")
    parent = os.getppid()

    def gone() -> bool:
        return os.getppid() != parent or (
            supervisor_pid is not None and not pid_exists(supervisor_pid)
        )

    while not gone():  # noqa: ASYNC110 - nothing to wait on: the kernel tells no one
        await trio.sleep(PARENT_CHECK_INTERVAL_S)
    log.warning("supervisor process %d is gone: stopping", supervisor_pid or parent)
    broker.shutdown()


def _supervisor_pid(value: str) -> int | None:
    """The supervisor's PID from :data:`EXIT_WITH_PARENT_ENV`; None for the old value "1"
    (PID 1 is always alive) or anything else that is not a PID."""
    return int(value) if value.isdecimal() and int(value) > 1 else None


PARENT_CHECK_INTERVAL_S = 0.5


async def _serve_until_signal(config: BrokerConfig, cluster: ClusterConfig | None = None) -> None:
    broker = Broker(config) if cluster is None else ClusterBroker(config, cluster)
    log = logging.getLogger("quorumq.broker")
    with trio.open_signal_receiver(signal.SIGINT, signal.SIGTERM) as signals:
        async with trio.open_nursery() as nursery:
            exit_with_parent = os.environ.get(EXIT_WITH_PARENT_ENV)
            if exit_with_parent:
                nursery.start_soon(_stop_when_orphaned, broker, _supervisor_pid(exit_with_parent))

            async def stop_on_signal() -> None:
                # The first signal stops cleanly (in a cluster, leaderships move away first;
                # then answer what was read, flush, close); a second one stops at once.
                asked = False
                async for signum in signals:
                    if asked or broker.stopping:
                        log.info("%s: stopping now", signal.Signals(signum).name)
                        nursery.cancel_scope.cancel()
                        return
                    asked = True
                    log.info("%s: stopping", signal.Signals(signum).name)
                    nursery.start_soon(_stop_cleanly, broker)

            nursery.start_soon(stop_on_signal)
            await broker.serve()
            nursery.cancel_scope.cancel()


async def _stop_cleanly(broker: Broker) -> None:
    if isinstance(broker, ClusterBroker):
        await broker.controlled_shutdown()
    broker.shutdown()


def run_trio(fn: Callable[..., Awaitable[Any]], *args: Any) -> Any:
    """``trio.run(fn, *args)``, with single-exception groups unwrapped.

    Nurseries wrap errors in exception groups; ``quorumq.cli.main`` prints a QuorumqError or
    an OSError as one line, so hand it the error itself rather than the group.
    """
    try:
        return trio.run(fn, *args)
    except BaseExceptionGroup as group:
        leaf = _only_leaf(group)
        if leaf is None:
            raise
        raise leaf from None


def _only_leaf(group: BaseExceptionGroup[BaseException]) -> BaseException | None:
    leaves: list[BaseException] = []

    def walk(exc: BaseException) -> None:
        if isinstance(exc, BaseExceptionGroup):
            for inner in exc.exceptions:
                walk(inner)
        else:
            leaves.append(exc)

    walk(group)
    return leaves[0] if len(leaves) == 1 else None
