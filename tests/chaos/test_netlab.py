"""The network lab itself: what a cut blocks, what it leaves alone, and that nothing stays
behind. Probes are TCP connections from a process in one host's namespace to an echo server
in another's (skipped where namespaces cannot be made)."""

from __future__ import annotations

import socket
import subprocess
import sys
from collections.abc import Iterator

import pytest

from quorumq.chaos import NetLabError, NetworkLab, netlab_unavailable

_WHY_NOT = netlab_unavailable()
pytestmark = pytest.mark.skipif(_WHY_NOT is not None, reason=_WHY_NOT or "")

PORT = 9000
_SERVER = f"""
import socket, sys
s = socket.socket()
s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
s.bind((sys.argv[1], {PORT}))
s.listen()
print("up", flush=True)
while True:
    c, (host, _) = s.accept()
    c.sendall(host.encode())
    c.close()
"""
_PROBE = f"""
import socket, sys
try:
    with socket.create_connection((sys.argv[1], {PORT}), timeout=0.5) as c:
        print(c.recv(64).decode())
except OSError:
    print("blocked")
"""


@pytest.fixture(scope="module")
def lab() -> Iterator[NetworkLab]:
    with NetworkLab(3) as lab:
        servers = []
        try:
            for host in range(3):
                server = subprocess.Popen(
                    [*lab.exec_prefix(host), sys.executable, "-c", _SERVER, lab.address(host)],
                    stdout=subprocess.PIPE,
                    text=True,
                )
                servers.append(server)
                assert server.stdout is not None and server.stdout.readline().strip() == "up"
            yield lab
        finally:
            for server in servers:
                server.kill()
                server.wait(10)


def _probe(lab: NetworkLab, src: int, dst: int) -> str:
    """What host ``dst``'s server saw as the caller, or "blocked"."""
    done = subprocess.run(
        [*lab.exec_prefix(src), sys.executable, "-c", _PROBE, lab.address(dst)],
        capture_output=True,
        text=True,
        timeout=20,
    )
    return done.stdout.strip()


def test_hosts_reach_each_other_from_their_own_addresses(lab: NetworkLab) -> None:
    lab.heal()
    assert _probe(lab, 0, 1) == lab.address(0)
    assert _probe(lab, 2, 0) == lab.address(2)


def test_isolate_cuts_one_host_off_both_ways_and_leaves_the_rest(lab: NetworkLab) -> None:
    lab.heal()
    lab.isolate(0)
    try:
        assert lab.cuts == {(0, 1), (0, 2), (1, 0), (2, 0)}
        assert _probe(lab, 0, 1) == "blocked"
        assert _probe(lab, 2, 0) == "blocked"
        assert _probe(lab, 1, 2) == lab.address(1)
        # Clients in the router still reach the cut-off host.
        with lab.entered(), socket.create_connection((lab.address(0), PORT), timeout=2) as conn:
            assert conn.recv(64).decode().endswith(".1")
    finally:
        lab.heal()
    assert lab.cuts == frozenset()
    assert _probe(lab, 0, 1) == lab.address(0)


def test_a_one_way_cut_blocks_only_that_direction(lab: NetworkLab) -> None:
    """TCP needs both directions, so a one-way cut blocks a connection either side opens;
    the rule itself covers one direction only, which ``cuts`` reports."""
    lab.heal()
    lab.cut(1, 2, both_ways=False)
    try:
        assert lab.cuts == {(1, 2)}
        assert _probe(lab, 1, 2) == "blocked"
        assert _probe(lab, 2, 0) == lab.address(2)
    finally:
        lab.heal()


def test_a_thread_entered_into_a_host_is_cut_off_with_it(lab: NetworkLab) -> None:
    """How the soak cuts one consumer off alone: its thread runs in a host of its own."""
    lab.heal()
    lab.isolate(2, others=[0])
    try:
        with lab.entered(host=2):
            with socket.create_connection((lab.address(1), PORT), timeout=2) as conn:
                assert conn.recv(64).decode() == lab.address(2)  # seen as host 2
            with pytest.raises(OSError):
                socket.create_connection((lab.address(0), PORT), timeout=0.5)
        with lab.entered(), socket.create_connection((lab.address(0), PORT), timeout=2):
            pass  # the router is not cut
    finally:
        lab.heal()


def test_partition_cuts_between_sides_only(lab: NetworkLab) -> None:
    lab.heal()
    lab.partition([0], [1, 2])
    try:
        assert lab.cuts == {(0, 1), (0, 2), (1, 0), (2, 0)}
        assert _probe(lab, 1, 2) == lab.address(1)
    finally:
        lab.heal()


def test_namespaces_are_gone_after_exit_and_names_are_checked() -> None:
    with NetworkLab(1, prefix="qqtestgone") as lab:
        names = [lab.router, lab.namespace(0)]
        listed = subprocess.run(["ip", "netns", "list"], capture_output=True, text=True).stdout
        assert all(name in listed for name in names)
    listed = subprocess.run(["ip", "netns", "list"], capture_output=True, text=True).stdout
    assert not any(name in listed for name in names)
    with pytest.raises(NetLabError, match="1 to 250 hosts"):
        NetworkLab(0).__enter__()
