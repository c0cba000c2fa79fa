"""``quorumq cluster up`` and ``cluster status`` as a user runs them: separate processes."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

from quorumq import protocol as p
from quorumq.bench._kafka import create_topic
from quorumq.cluster import Supervisor, free_port_block, pid_exists, view_from_response


def _quorumq(*args: str, timeout: float = 30) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "quorumq", *args], capture_output=True,
                          text=True, timeout=timeout)  # fmt: skip


def test_cluster_status_prints_brokers_controller_and_partitions() -> None:
    with Supervisor(1, base_port=free_port_block(1)) as sup:
        sup.start(timeout_s=60)
        create_topic(sup.bootstrap, "orders", 2, 1)
        done = _quorumq("cluster", "status", "--bootstrap", sup.address(0))
    assert done.returncode == 0, done.stderr
    out = done.stdout
    assert sup.address(0) in out and "active controller" in out
    assert out.count("orders") == 2


def test_cluster_status_without_a_broker_is_one_line() -> None:
    done = _quorumq("cluster", "status", "--bootstrap", f"127.0.0.1:{free_port_block(1)}")
    assert done.returncode == 1
    assert done.stderr.startswith("quorumq: error: cannot connect")
    assert len(done.stderr.strip().splitlines()) == 1


def test_view_marks_replicas_missing_from_the_broker_list_as_fenced() -> None:
    response = p.MetadataResponse(
        brokers=[p.MetadataResponseBroker(node_id=0, host="h", port=1)],
        controller_id=0,
        topics=[p.MetadataResponseTopic(error_code=0, name="t", partitions=[
            p.MetadataResponsePartition(error_code=0, partition_index=0, leader_id=0,
                                        leader_epoch=3, replica_nodes=[0, 2], isr_nodes=[0])])],
    )  # fmt: skip
    view = view_from_response("h:1", response)
    assert [(b.node_id, b.fenced) for b in view.brokers] == [(0, False), (2, True)]
    assert view.live_ids() == {0}
    info = view.partition("t", 0)
    assert info is not None and (info.leader_epoch, info.replicas, info.isr) == (3, (0, 2), (0,))


def test_cluster_up_reports_a_dead_broker_and_stops_cleanly_on_sigterm() -> None:
    base = free_port_block(2)
    proc = subprocess.Popen(
        [sys.executable, "-m", "quorumq", "cluster", "up", "--brokers", "2",
         "--base-port", str(base)],
        stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
        env={**os.environ, "COLUMNS": "200"},
    )  # fmt: skip
    try:
        assert proc.stdout is not None
        lines: list[str] = []
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            line = proc.stdout.readline()
            if not line:
                break
            lines.append(line)
            if "Ctrl-C stops the cluster" in line:
                break
        text = "".join(lines)
        assert f"bootstrap: 127.0.0.1:{base},127.0.0.1:{base + 1}" in text, text
        pids = [int(ln.split(" pid ")[1].split()[0]) for ln in lines if " pid " in ln]
        assert len(pids) == 2
        # A broker dying is reported; the other one keeps running.
        os.kill(pids[1], signal.SIGKILL)
        line = ""
        while time.monotonic() < deadline and "exited" not in line:
            line = proc.stdout.readline()
        assert "broker 1 exited with status -9" in line
        assert pid_exists(pids[0])
        proc.send_signal(signal.SIGTERM)
        rest = proc.communicate(timeout=30)[0]
        assert "SIGTERM: stopping 1 broker(s)" in rest and "stopped" in rest
        assert proc.returncode == 0
        assert not pid_exists(pids[0])
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait(timeout=10)


def test_a_bad_voter_list_is_refused_before_the_broker_listens(tmp_path: Path) -> None:
    """A malformed or duplicated ``--controller-voters``, or a ``--node-id`` not in it, is a
    usage error (exit 2, no traceback) before the broker opens its listener or data dir."""
    port = free_port_block(1)
    for voters, node_id, says in (
        ("garbage", 0, "is not id@host:port"),
        (f"0@127.0.0.1:{port + 1},0@127.0.0.1:{port + 2}", 0, "is listed twice"),
        (f"0@127.0.0.1:{port + 1}", 5, "--node-id 5 is not among --controller-voters"),
    ):
        data = tmp_path / f"data-{node_id}-{len(voters)}"
        done = _quorumq("broker", "--data-dir", str(data), "--node-id", str(node_id),
                        "--listen", f"127.0.0.1:{port}", "--controller-voters", voters)  # fmt: skip
        assert done.returncode == 2, done.stderr
        text = " ".join(done.stderr.replace("│", " ").split())  # unwrap typer's error box
        assert says in text, done.stderr
        assert "Traceback" not in done.stderr and "listening" not in done.stderr
        assert not data.exists()
