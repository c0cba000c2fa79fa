"""Network partitions between brokers, in network namespaces the lab makes itself.

Why namespaces, not a proxy: a partition must cut *every* path between two brokers (replica
fetches, the Raft voters' own TCP links, heartbeats to the active controller) while clients
still reach both sides, which is the case that loses acks=1 records and must not lose acks=all
ones. Each broker gets a namespace of its own with one address, and a *router* namespace joins
them. A partition is a policy-routing rule in the router (``ip rule ... blackhole``): the
packets are dropped silently, as by a broken switch, so TCP connections hang rather than being
refused, and they recover when the rule goes. No iptables and no change to the host's own
namespace: the lab adds namespaces and links inside them, and deletes them on exit.

The clients (and the supervisor's own Metadata calls) run in the router namespace:
:meth:`NetworkLab.entered` moves the calling thread there, and the threads it starts inherit
it (Linux keeps the network namespace per thread). The brokers run under ``ip netns exec``,
which execs the broker itself, so its PID is the one the supervisor signals.

Needs root and iproute2 (``ip``); :func:`netlab_unavailable` says why not, for a test to skip.
"""

from __future__ import annotations

import contextlib
import ctypes
import os
import shutil
import subprocess
import sys
import threading
from collections.abc import Iterable, Iterator, Sequence

import attrs

from quorumq.errors import QuorumqError

_CLONE_NEWNET = 0x40000000
_SUBNET = "10.199"


class NetLabError(QuorumqError):
    """The lab could not make or change its namespaces (with ``ip``'s own message)."""


def _ip(*args: str) -> None:
    done = subprocess.run(["ip", *args], capture_output=True, text=True, timeout=10)
    if done.returncode != 0:
        raise NetLabError(f"ip {' '.join(args)}: {done.stderr.strip() or done.returncode}")


def netlab_unavailable() -> str | None:
    """Why a :class:`NetworkLab` cannot run here (None when it can)."""
    if not hasattr(os, "geteuid") or os.geteuid() != 0:
        return "network namespaces need root"
    if shutil.which("ip") is None:
        return "iproute2's `ip` is not installed"
    name = f"qqprobe{os.getpid()}"
    try:
        _ip("netns", "add", name)
    except (NetLabError, OSError, subprocess.TimeoutExpired) as exc:
        return f"cannot make a network namespace: {exc}"
    try:
        # The two other things a lab does: run a process in a namespace, move a thread there.
        _ip("netns", "exec", name, sys.executable, "-c", "pass")
        failed: list[BaseException] = []

        def enter() -> None:
            try:
                _setns(f"/run/netns/{name}")
            except (NetLabError, OSError) as exc:
                failed.append(exc)

        thread = threading.Thread(target=enter)  # it ends in the namespace: a thread of its own
        thread.start()
        thread.join()
        if failed:
            raise failed[0]
    except (NetLabError, OSError, subprocess.TimeoutExpired) as exc:
        return f"cannot use a network namespace: {exc}"
    finally:
        with contextlib.suppress(NetLabError, OSError, subprocess.TimeoutExpired):
            _ip("netns", "del", name)
    return None


def _setns(path: str) -> None:
    libc = ctypes.CDLL(None, use_errno=True)
    fd = os.open(path, os.O_RDONLY)
    try:
        if libc.setns(fd, _CLONE_NEWNET) != 0:
            err = ctypes.get_errno()
            raise NetLabError(f"setns({path}): {os.strerror(err)}")
    finally:
        os.close(fd)


@attrs.define(eq=False)
class NetworkLab:
    """``hosts`` namespaces, host *i* at ``10.199.i.2``, joined by a router namespace.

    Use as a context manager: it makes the namespaces on entry and deletes them on exit (stop
    the processes in them first). Names carry this process's PID, so two runs never collide.
    """

    hosts: int
    prefix: str = attrs.field(factory=lambda: f"qq{os.getpid()}")
    _cuts: set[tuple[int, int]] = attrs.field(factory=set, init=False)
    _made: list[str] = attrs.field(factory=list, init=False)

    @property
    def router(self) -> str:
        return f"{self.prefix}r"

    def namespace(self, host: int) -> str:
        return f"{self.prefix}h{host}"

    def address(self, host: int) -> str:
        """Host ``host``'s address, the one its broker listens on and connects from."""
        return f"{_SUBNET}.{host}.2"

    def exec_prefix(self, host: int) -> list[str]:
        """The argv prefix that runs a command in host ``host``'s namespace."""
        return ["ip", "netns", "exec", self.namespace(host)]

    # --- lifecycle ---------------------------------------------------------------------------

    def __enter__(self) -> NetworkLab:
        if not 1 <= self.hosts <= 250:
            raise NetLabError(f"a lab has 1 to 250 hosts, not {self.hosts}")
        try:
            self._make()
        except BaseException:
            self.close()
            raise
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def _make(self) -> None:
        router = self.router
        _ip("netns", "add", router)
        self._made.append(router)
        _ip("-n", router, "link", "set", "lo", "up")
        for host in range(self.hosts):
            ns = self.namespace(host)
            _ip("netns", "add", ns)
            self._made.append(ns)
            link = f"h{host}"
            _ip("-n", router, "link", "add", link, "type", "veth", "peer", "name", "eth0",
                "netns", ns)  # fmt: skip
            _ip("-n", router, "addr", "add", f"{_SUBNET}.{host}.1/24", "dev", link)
            _ip("-n", router, "link", "set", link, "up")
            _ip("-n", ns, "addr", "add", f"{self.address(host)}/24", "dev", "eth0")
            _ip("-n", ns, "link", "set", "eth0", "up")
            _ip("-n", ns, "link", "set", "lo", "up")
            _ip("-n", ns, "route", "add", "default", "via", f"{_SUBNET}.{host}.1")
        # Forwarding inside the router namespace only: /proc/sys/net is per namespace.
        done = subprocess.run(
            ["ip", "netns", "exec", router, "sh", "-c", "echo 1 > /proc/sys/net/ipv4/ip_forward"],
            capture_output=True, text=True, timeout=10,
        )  # fmt: skip
        if done.returncode != 0:
            raise NetLabError(f"cannot enable forwarding in {router}: {done.stderr.strip()}")

    def close(self) -> None:
        """Deletes the namespaces (and with them their links and rules)."""
        while self._made:
            with contextlib.suppress(NetLabError, OSError, subprocess.TimeoutExpired):
                _ip("netns", "del", self._made.pop())
        self._cuts.clear()

    @contextlib.contextmanager
    def entered(self, host: int | None = None) -> Iterator[None]:
        """Runs the calling thread in the router namespace (where every host is reachable and
        no cut applies), or with ``host`` in that host's namespace (a client there is cut off
        with the host), until the block ends; threads started meanwhile stay there for their
        lifetime.

        Why per thread: sockets belong to the namespace of the thread that made them, so the
        test's clients made here reach the hosts while the rest of the process is untouched.
        """
        own = os.open("/proc/thread-self/ns/net", os.O_RDONLY)
        try:
            _setns(f"/run/netns/{self.router if host is None else self.namespace(host)}")
            try:
                yield
            finally:
                libc = ctypes.CDLL(None, use_errno=True)
                if libc.setns(own, _CLONE_NEWNET) != 0:
                    raise NetLabError(f"cannot return to the thread's namespace: "
                                      f"{os.strerror(ctypes.get_errno())}")  # fmt: skip
        finally:
            os.close(own)

    # --- partitions --------------------------------------------------------------------------

    def cut(self, a: int, b: int, *, both_ways: bool = True) -> None:
        """Drops every packet from host ``a`` to host ``b`` (and back, by default)."""
        for src, dst in ((a, b), (b, a)) if both_ways else ((a, b),):
            if (src, dst) in self._cuts or src == dst:
                continue
            _ip("-n", self.router, "rule", "add", "from", self.address(src), "to",
                self.address(dst), "blackhole", "priority", str(self._priority(src, dst)))  # fmt: skip
            self._cuts.add((src, dst))

    def isolate(self, host: int, others: Iterable[int] | None = None) -> None:
        """Cuts host ``host`` from every other host (clients in the router still reach it)."""
        for other in range(self.hosts) if others is None else others:
            self.cut(host, other)

    def partition(self, *sides: Sequence[int]) -> None:
        """Cuts every link between hosts on different ``sides``; links within a side stay."""
        for i, side in enumerate(sides):
            for other in sides[i + 1 :]:
                for a in side:
                    for b in other:
                        self.cut(a, b)

    def heal(self) -> None:
        """Removes every cut."""
        for src, dst in sorted(self._cuts):
            _ip("-n", self.router, "rule", "del", "priority", str(self._priority(src, dst)))
        self._cuts.clear()

    @property
    def cuts(self) -> frozenset[tuple[int, int]]:
        """The (from, to) host pairs whose packets are dropped now."""
        return frozenset(self._cuts)

    def _priority(self, src: int, dst: int) -> int:
        # One rule per directed pair, ahead of the main table's lookup (priority 32766).
        return 1000 + src * 256 + dst
