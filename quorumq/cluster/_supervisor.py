"""Broker child processes on one machine: start, watch, stop, and hurt them on purpose.

Theory of operation: the supervisor is plain synchronous code around ``subprocess.Popen``, so the
CLI, the chaos nemeses and ``quorumq compare`` (which drives librdkafka, itself synchronous) share
it. Broker ``i`` runs ``python -m quorumq broker --node-id i --listen 127.0.0.1:(base_port+i)
--data-dir DIR/broker-i``; in cluster mode it also gets ``--controller-voters`` naming every
broker's Raft port (``raft_base_port + i``). Its stderr goes to ``DIR/broker-i.log``.

A broker is *ready* when it answers Metadata and that answer lists the broker itself: in cluster
mode Metadata lists only registered, unfenced brokers, so this is "registered with the
controller"; a standalone broker lists itself at once.

Every process the supervisor starts is remembered by its ``Popen`` and only ever signalled by its
PID: SIGTERM, a bounded wait, then SIGKILL. A broker whose supervisor dies without stopping it
stops by itself within a second (:data:`EXIT_WITH_PARENT_ENV`). Chaos verbs (``kill``, ``pause``, ``resume``,
``restart``) act on one broker and leave the others alone.
"""

from __future__ import annotations

import contextlib
import inspect
import logging
import os
import secrets
import shutil
import signal
import socket
import ssl
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path
from types import TracebackType
from typing import Protocol

import attrs

from quorumq.client._connection import SaslConfig
from quorumq.cluster._metadata import ClusterView, cluster_view
from quorumq.errors import QuorumqError

EXIT_WITH_PARENT_ENV = "QUORUMQ_EXIT_WITH_PARENT"
"""Set on every broker the supervisor starts, to the supervisor's PID: the broker stops by
itself (as on SIGTERM) once its parent or that PID is gone (even if it went while the broker
was still starting), so a supervisor that dies without stopping its brokers (SIGKILL, a killed
test run) leaves no orphans running. Linux's ``PR_SET_PDEATHSIG`` would do it in the kernel,
but it fires when the *thread* that forked the child exits, and brokers are launched from
worker threads too (chaos nemeses, ``trio.to_thread``)."""

log = logging.getLogger("quorumq.cluster")


def default_launcher() -> list[str]:
    """``python -m quorumq`` with this interpreter: the command a child broker runs by default."""
    return [sys.executable, "-m", "quorumq"]


def broker_environment(base: Mapping[str, str], *, own_code: bool) -> dict[str, str]:
    """The environment a broker child process starts in, so that it runs the code its launcher
    names and not whatever ``quorumq`` sits in the current directory.

    Why: ``python -m`` puts the current directory first on ``sys.path``, ahead of
    ``PYTHONPATH``. From a source checkout a launcher such as ``env PYTHONPATH=<other worktree>
    python -m quorumq`` therefore imported the checkout's own quorumq, and A/B benchmarks of two
    versions through ``--launcher`` ran the same brokers on both sides (found in the eleventh
    session; ``docs/benchmarks.md``). ``PYTHONSAFEPATH`` (Python 3.11+, like ``-P``) keeps the
    directory off ``sys.path``. The default launcher (``own_code``) also gets the root of the
    package this process runs on ``PYTHONPATH``, so the child runs exactly the parent's code,
    installed or not.
    """
    env = dict(base)
    env["PYTHONSAFEPATH"] = "1"
    if own_code:
        root = str(Path(__file__).resolve().parents[2])
        rest = env.get("PYTHONPATH")
        env["PYTHONPATH"] = root if not rest else os.pathsep.join([root, rest])
    return env


RAFT_PORT_OFFSET = 10_000
"""Default distance from a broker's Kafka port to its Raft port (9092 -> 19092)."""


class ClusterError(QuorumqError):
    """A local cluster could not be started or driven (port taken, broker exited, timeout)."""


def broker_supports_cluster_mode() -> bool:
    """True once ``quorumq broker`` accepts ``--controller-voters`` (the Raft controller)."""
    from quorumq.cli._broker import broker_command

    return "controller_voters" in inspect.signature(broker_command).parameters


def port_is_free(port: int, host: str = "127.0.0.1") -> bool:
    """True if a listener could bind ``host:port`` now.

    SO_REUSEADDR as the broker sets it: connections of a killed broker linger in TIME_WAIT for a
    minute, which must not count as "in use" (only another listener does).
    """
    with socket.socket() as s:
        s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            s.bind((host, port))
        except OSError:
            return False
    return True


def _ephemeral_low() -> int:
    """The first port of the kernel's ephemeral range (Linux; 32768 elsewhere or unreadable)."""
    try:
        with open("/proc/sys/net/ipv4/ip_local_port_range") as f:
            return int(f.read().split()[0])
    except (OSError, ValueError, IndexError):
        return 32768


def free_port_block(count: int, *, with_raft: bool = True, attempts: int = 200) -> int:
    """A base port ``b`` with ``b..b+count-1`` (and ``b+10000..``) free on loopback, for tests.

    The block lies below the kernel's ephemeral range when there is room (10000–32767 on
    Linux's default): a port that is free when checked but inside that range can be taken by
    any outgoing connection before the broker binds it (seen once in CI: "address already in
    use" on a freshly checked port).

    Raises:
        ClusterError: no such block after ``attempts`` random tries.
    """
    import random

    span = count + (RAFT_PORT_OFFSET if with_raft else 0)
    low, high = 10_000, _ephemeral_low() - span
    if high <= low:
        low, high = 20_000, 55_000 - span
    rng = random.Random()
    for _ in range(attempts):
        base = rng.randrange(low, high)
        ports = list(range(base, base + count))
        if with_raft:
            ports += [p + RAFT_PORT_OFFSET for p in ports]
        if all(port_is_free(port) for port in ports):
            return base
    raise ClusterError(f"no block of {count} free loopback ports found")


class BrokerNetwork(Protocol):
    """Where each broker runs when not all on 127.0.0.1: a host of its own per broker (e.g.
    :class:`quorumq.chaos.NetworkLab`'s network namespaces, which can partition them)."""

    def address(self, host: int) -> str:
        """The address broker ``host`` listens on."""
        ...

    def exec_prefix(self, host: int) -> list[str]:
        """The argv prefix that runs a command on that host."""
        ...


@attrs.frozen
class BrokerSpec:
    """Where broker ``node_id`` listens and keeps its data."""

    node_id: int
    host: str
    port: int
    raft_port: int
    data_dir: Path
    log_path: Path

    @property
    def address(self) -> str:
        return f"{self.host}:{self.port}"


@attrs.define(eq=False)
class BrokerHandle:
    """One broker's current process (None when stopped or never started)."""

    spec: BrokerSpec
    process: subprocess.Popen[bytes] | None = None
    paused: bool = False
    reported_exit: bool = False
    """Set once :meth:`Supervisor.poll_exits` reported this process's death."""

    @property
    def pid(self) -> int | None:
        return self.process.pid if self.process is not None else None

    def alive(self) -> bool:
        return self.process is not None and self.process.poll() is None


class Supervisor:
    """N broker processes on 127.0.0.1; a context manager that stops them all on exit.

    Args:
        brokers: how many (ids 0..brokers-1).
        base_port: broker i listens on ``base_port + i``.
        raft_base_port: broker i's Raft port is ``raft_base_port + i`` (default base + 10000).
        data_dir: the cluster's directory; None makes a fresh temporary one, removed on
            :meth:`close`. Reusing a directory restarts the same cluster.
        cluster_mode: pass ``--controller-voters``; None detects whether the broker supports it.
        broker_args: extra arguments for every ``quorumq broker`` (e.g. ``--num-partitions 3``).
        log_level: the brokers' ``--log-level``.
        launcher: the argv that runs one broker, before its options (default
            ``python -m quorumq broker``); e.g. another interpreter or a wrapper script.
        network: run broker *i* on host *i* of this network (its address, under its exec
            prefix) instead of on ``host``. Every broker then keeps ``base_port``: each host
            has its own ports. The caller must reach those hosts (e.g. from inside
            ``NetworkLab.entered()``) for anything but starting and signalling.
        client_sasl, client_ssl: the login and TLS this supervisor's own Metadata requests
            (readiness, :meth:`view`) need when ``broker_args`` secure the listeners.
    """

    def __init__(
        self,
        brokers: int = 3,
        *,
        base_port: int = 9092,
        raft_base_port: int | None = None,
        data_dir: Path | str | None = None,
        cluster_mode: bool | None = None,
        broker_args: Sequence[str] = (),
        log_level: str = "warning",
        host: str = "127.0.0.1",
        launcher: Sequence[str] | None = None,
        network: BrokerNetwork | None = None,
        client_sasl: SaslConfig | None = None,
        client_ssl: ssl.SSLContext | None = None,
    ) -> None:
        if brokers < 1:
            raise ClusterError(f"a cluster needs at least one broker, got {brokers}")
        self._own_dir = data_dir is None
        self.data_dir = Path(tempfile.mkdtemp(prefix="quorumq-cluster-") if data_dir is None
                             else data_dir).resolve()  # fmt: skip
        self.data_dir.mkdir(parents=True, exist_ok=True)
        self.cluster_mode = broker_supports_cluster_mode() if cluster_mode is None else cluster_mode
        self.broker_args = tuple(broker_args)
        self.client_sasl = client_sasl
        self.client_ssl = client_ssl
        self.log_level = log_level
        self._own_launcher = not launcher
        self.launcher = tuple(launcher) if launcher else (*default_launcher(), "broker")
        raft_base = base_port + RAFT_PORT_OFFSET if raft_base_port is None else raft_base_port
        self.network = network
        self.controller_password = self._controller_secret() if self.cluster_mode else None
        self.brokers: list[BrokerHandle] = [
            BrokerHandle(
                BrokerSpec(
                    node_id=i,
                    host=host if network is None else network.address(i),
                    port=base_port + (i if network is None else 0),
                    raft_port=raft_base + (i if network is None else 0),
                    data_dir=self.data_dir / f"broker-{i}",
                    log_path=self.data_dir / f"broker-{i}.log",
                )
            )
            for i in range(brokers)
        ]

    def _controller_secret(self) -> str:
        """The cluster's Raft password, made once per data dir and kept there (mode 0600).

        Raft peers exchange pickles: without a password anyone who reaches a Raft port could run
        code in the brokers. It reaches the brokers through the environment, not argv, so it does
        not show in ``ps``; reusing the data dir reuses the secret.
        """
        path = self.data_dir / "controller.secret"
        if path.exists():
            return path.read_text().strip()
        secret = secrets.token_urlsafe(24)
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        with os.fdopen(fd, "w") as f:
            f.write(secret + "\n")
        return secret

    # --- addresses ---------------------------------------------------------------------------

    @property
    def bootstrap(self) -> str:
        """Every broker's HOST:PORT, comma-separated (Kafka's ``bootstrap.servers``)."""
        return ",".join(b.spec.address for b in self.brokers)

    def address(self, node_id: int) -> str:
        return self._handle(node_id).spec.address

    def controller_voters(self) -> str:
        """``0@127.0.0.1:19092,1@...``: the value of ``quorumq broker --controller-voters``."""
        return ",".join(f"{b.spec.node_id}@{b.spec.host}:{b.spec.raft_port}" for b in self.brokers)

    def command(self, node_id: int) -> list[str]:
        """The argv that starts broker ``node_id``."""
        spec = self._handle(node_id).spec
        prefix = [] if self.network is None else self.network.exec_prefix(node_id)
        cmd = [
            *prefix, *self.launcher, "--node-id", str(spec.node_id),
            "--listen", spec.address, "--data-dir", str(spec.data_dir),
            "--log-level", self.log_level,
        ]  # fmt: skip
        if self.cluster_mode:
            cmd += ["--controller-voters", self.controller_voters()]
        return cmd + list(self.broker_args)

    # --- lifecycle ---------------------------------------------------------------------------

    def start(self, *, timeout_s: float = 60.0) -> None:
        """Starts every broker and waits until each is ready.

        Raises:
            ClusterError: a port is taken, a broker exits, or not all are ready in time (the
                brokers already started keep running; :meth:`close` stops them).
        """
        for handle in self.brokers:
            self._check_ports_free(handle.spec)
        for handle in self.brokers:
            self.launch(handle.spec.node_id)
        self.wait_ready(timeout_s=timeout_s)

    def launch(self, node_id: int) -> int:
        """Starts broker ``node_id``'s process (not waiting for it); returns its PID.

        Raises:
            ClusterError: it is already running.
        """
        handle = self._handle(node_id)
        if handle.alive():
            raise ClusterError(f"broker {node_id} is already running (pid {handle.pid})")
        handle.spec.data_dir.mkdir(parents=True, exist_ok=True)
        with open(handle.spec.log_path, "ab") as log_file:
            log_file.write(f"--- start {time.strftime('%H:%M:%S')}\n".encode())
            log_file.flush()
            env = broker_environment(os.environ, own_code=self._own_launcher)
            env[EXIT_WITH_PARENT_ENV] = str(os.getpid())
            if self.controller_password is not None:
                env.setdefault("QUORUMQ_CONTROLLER_PASSWORD", self.controller_password)
            handle.process = subprocess.Popen(
                self.command(node_id),
                env=env,
                stdin=subprocess.DEVNULL,
                stdout=log_file,
                stderr=log_file,
                # Own process group: a Ctrl-C at the terminal reaches the supervisor only, which
                # then stops each broker itself, in order.
                start_new_session=True,
            )
        handle.paused = False
        handle.reported_exit = False
        log.info("broker %d started (pid %d)", node_id, handle.process.pid)
        return handle.process.pid

    def wait_ready(self, node_ids: Iterable[int] | None = None, *, timeout_s: float = 60.0) -> None:
        """Waits until each broker answers Metadata that lists itself.

        Raises:
            ClusterError: one exits meanwhile (with the tail of its log), or time runs out.
        """
        pending = {h.spec.node_id for h in self.brokers} if node_ids is None else set(node_ids)
        deadline = time.monotonic() + timeout_s
        while pending:
            for node_id in sorted(pending):
                handle = self._handle(node_id)
                if not handle.alive():
                    code = handle.process.returncode if handle.process else None
                    raise ClusterError(
                        f"broker {node_id} exited (status {code}) before it was ready: "
                        f"{self.log_tail(node_id)}"
                    )
                if self.is_ready(node_id):
                    pending.discard(node_id)
            if not pending:
                return
            if time.monotonic() > deadline:
                tails = "; ".join(f"broker {i}: {self.log_tail(i, 3)}" for i in sorted(pending))
                raise ClusterError(
                    f"brokers {sorted(pending)} not ready within {timeout_s:.0f} s "
                    f"(logs in {self.data_dir}): {tails}"
                )
            time.sleep(0.1)

    def is_ready(self, node_id: int, *, timeout_s: float = 2.0) -> bool:
        """True if broker ``node_id`` answers Metadata and is listed in it.

        In cluster mode every other running broker must list it too: a restarted broker replays
        its own Raft journal first, whose image can still show it alive from before its death,
        while the controller has fenced it and does not count it (CreateTopics would answer
        INVALID_REPLICATION_FACTOR).
        """
        askers = [node_id]
        if self.cluster_mode:
            askers += [h.spec.node_id for h in self.brokers
                       if h.spec.node_id != node_id and h.alive() and not h.paused]  # fmt: skip
        for asker in askers:
            try:
                view = cluster_view(
                    self.address(asker),
                    [],
                    timeout_s=timeout_s,
                    sasl=self.client_sasl,
                    ssl_context=self.client_ssl,
                )
            except ConnectionError:
                if asker == node_id:
                    return False
                continue  # another broker not answering is its problem, not this one's
            if node_id not in view.live_ids():
                return False
        return True

    def view(self, *, topics: Sequence[str] | None = None, timeout_s: float = 3.0) -> ClusterView:
        """Metadata from the first live, unpaused broker that answers.

        Raises:
            ClusterError: none answers.
        """
        errors = []
        for handle in self.brokers:
            if handle.alive() and not handle.paused:
                try:
                    return cluster_view(
                        handle.spec.address,
                        topics,
                        timeout_s=timeout_s,
                        sasl=self.client_sasl,
                        ssl_context=self.client_ssl,
                    )
                except ConnectionError as exc:
                    errors.append(str(exc))
        raise ClusterError(f"no broker answers Metadata: {'; '.join(errors) or 'none running'}")

    def poll_exits(self) -> list[tuple[int, int]]:
        """(node_id, exit status) of each broker that died since the last call."""
        dead = []
        for handle in self.brokers:
            if handle.process is not None and not handle.reported_exit:
                code = handle.process.poll()
                if code is not None:
                    handle.reported_exit = True
                    dead.append((handle.spec.node_id, code))
        return dead

    def running(self) -> list[int]:
        return [h.spec.node_id for h in self.brokers if h.alive()]

    # --- chaos verbs ---------------------------------------------------------------------------

    def kill(self, node_id: int) -> None:
        """SIGKILL broker ``node_id`` (a crash: no clean shutdown) and reap it."""
        handle = self._handle(node_id)
        if handle.process is None or not handle.alive():
            return
        handle.process.send_signal(signal.SIGKILL)
        handle.process.wait(timeout=10)
        handle.paused = False
        log.info("broker %d killed", node_id)

    def terminate(self, node_id: int) -> None:
        """SIGTERM broker ``node_id`` and return at once: it stops cleanly in the background
        (a controlled shutdown first, in cluster mode). :meth:`stop` waits for it."""
        handle = self._handle(node_id)
        if handle.process is not None and handle.alive():
            if handle.paused:
                handle.process.send_signal(signal.SIGCONT)
                handle.paused = False
            handle.process.send_signal(signal.SIGTERM)
            log.info("broker %d sent SIGTERM", node_id)

    def pause(self, node_id: int) -> None:
        """SIGSTOP broker ``node_id``: alive, connections open, but silent (a slow node)."""
        handle = self._handle(node_id)
        if handle.process is not None and handle.alive():
            handle.process.send_signal(signal.SIGSTOP)
            handle.paused = True

    def resume(self, node_id: int) -> None:
        """SIGCONT broker ``node_id``."""
        handle = self._handle(node_id)
        if handle.process is not None and handle.alive():
            handle.process.send_signal(signal.SIGCONT)
        handle.paused = False

    def restart(self, node_id: int, *, wait: bool = True, timeout_s: float = 60.0) -> int:
        """Stops broker ``node_id`` if running (SIGTERM, then SIGKILL) and starts it again on
        the same port and data directory; returns the new PID.

        Raises:
            ClusterError: it does not become ready within ``timeout_s`` (when ``wait``).
        """
        self.stop(node_id)
        deadline = time.monotonic() + min(timeout_s, 15.0)
        # The listening port of the old process is released with it; wait for that.
        spec = self._handle(node_id).spec
        while (
            self.network is None
            and not port_is_free(spec.port, spec.host)
            and time.monotonic() < deadline
        ):
            time.sleep(0.05)
        pid = self.launch(node_id)
        if wait:
            self.wait_ready([node_id], timeout_s=timeout_s)
        return pid

    def stop(self, node_id: int, *, timeout_s: float = 10.0) -> int | None:
        """Stops broker ``node_id`` cleanly: SIGTERM, wait, then SIGKILL. Returns its status."""
        handle = self._handle(node_id)
        proc = handle.process
        if proc is None:
            return None
        if proc.poll() is None:
            if handle.paused:
                proc.send_signal(signal.SIGCONT)  # a stopped process never sees SIGTERM
                handle.paused = False
            proc.send_signal(signal.SIGTERM)
            try:
                proc.wait(timeout=timeout_s)
            except subprocess.TimeoutExpired:
                log.warning("broker %d ignored SIGTERM for %.0f s: SIGKILL", node_id, timeout_s)
                proc.kill()
                proc.wait(timeout=10)
        handle.reported_exit = True
        return proc.returncode

    def stop_all(self, *, timeout_s: float = 10.0) -> None:
        """Stops every broker: SIGTERM to all at once, one shared wait, then SIGKILL."""
        procs = []
        for handle in self.brokers:
            proc = handle.process
            if proc is not None and proc.poll() is None:
                if handle.paused:
                    proc.send_signal(signal.SIGCONT)
                    handle.paused = False
                proc.send_signal(signal.SIGTERM)
                procs.append((handle, proc))
        deadline = time.monotonic() + timeout_s
        for handle, proc in procs:
            try:
                proc.wait(timeout=max(0.1, deadline - time.monotonic()))
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait(timeout=10)
            handle.reported_exit = True

    def close(self) -> None:
        """Stops every broker and removes the data directory if the supervisor made it."""
        self.stop_all()
        if self._own_dir:
            shutil.rmtree(self.data_dir, ignore_errors=True)

    def __enter__(self) -> Supervisor:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()

    # --- helpers -------------------------------------------------------------------------------

    def log_tail(self, node_id: int, lines: int = 5) -> str:
        """The last lines of broker ``node_id``'s log, on one line."""
        path = self._handle(node_id).spec.log_path
        with contextlib.suppress(OSError):
            text = path.read_text(errors="replace").strip().splitlines()
            return " | ".join(text[-lines:])
        return "(no log)"

    def pid(self, node_id: int) -> int | None:
        return self._handle(node_id).pid

    def _handle(self, node_id: int) -> BrokerHandle:
        if not 0 <= node_id < len(self.brokers):
            raise ClusterError(f"no broker {node_id} (ids 0..{len(self.brokers) - 1})")
        return self.brokers[node_id]

    def _check_ports_free(self, spec: BrokerSpec) -> None:
        if self.network is not None:
            return  # a host of its own: its ports are not this namespace's
        if not port_is_free(spec.port, spec.host):
            raise ClusterError(f"port {spec.address} is in use (broker {spec.node_id})")
        if self.cluster_mode and not port_is_free(spec.raft_port, spec.host):
            raise ClusterError(f"raft port {spec.host}:{spec.raft_port} is in use")


def pid_exists(pid: int) -> bool:
    """True if a process with this PID exists (used by tests to check nothing was leaked)."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True
