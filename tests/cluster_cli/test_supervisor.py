"""The supervisor drives real broker processes: start, ready, kill, pause, resume, restart, stop."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest

from quorumq.bench._kafka import create_topic
from quorumq.cluster import ClusterError, Supervisor, free_port_block, pid_exists


def test_supervisor_kill_pause_resume_restart_and_stop() -> None:
    sup = Supervisor(2, base_port=free_port_block(2))
    data_dir = sup.data_dir
    pids: list[int] = []
    with sup:
        sup.start(timeout_s=60)
        assert sup.bootstrap == f"{sup.address(0)},{sup.address(1)}"
        pids = [p for p in (sup.pid(0), sup.pid(1)) if p is not None]
        assert len(set(pids)) == 2 and all(pid_exists(p) for p in pids)
        assert sup.view().live_ids() >= {0} | ({1} if sup.cluster_mode else set())

        sup.kill(1)
        assert sup.poll_exits() == [(1, -9)]
        assert sup.poll_exits() == []  # reported once
        assert sup.running() == [0] and sup.is_ready(0)

        sup.pause(0)
        assert not sup.is_ready(0, timeout_s=0.5)
        sup.resume(0)
        assert sup.is_ready(0)

        new_pid = sup.restart(1, timeout_s=60)
        assert new_pid not in pids and sup.running() == [0, 1]
        pids.append(new_pid)
    assert not any(pid_exists(p) for p in pids)
    assert not data_dir.exists()  # a temporary directory the supervisor made is removed


def test_supervisor_reusing_a_data_dir_restarts_the_same_cluster(tmp_path: Path) -> None:
    base = free_port_block(1)
    with Supervisor(1, base_port=base, data_dir=tmp_path) as sup:
        sup.start(timeout_s=60)
        create_topic(sup.bootstrap, "kept", 2, 1)
    assert (tmp_path / "broker-0").is_dir() and (tmp_path / "broker-0.log").is_file()
    with Supervisor(1, base_port=base, data_dir=tmp_path) as sup:
        sup.start(timeout_s=60)
        view = sup.view()
        assert [(i.topic, i.partition) for i in view.partitions] == [("kept", 0), ("kept", 1)]
    assert tmp_path.exists()  # a directory we were given is kept


def test_supervisor_refuses_a_taken_port() -> None:
    base = free_port_block(1)
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", base))
        taken.listen()
        with Supervisor(1, base_port=base) as sup, pytest.raises(ClusterError, match="in use"):
            sup.start(timeout_s=10)


def test_supervisor_reports_a_broker_that_exits_before_ready(tmp_path: Path) -> None:
    sup = Supervisor(1, base_port=free_port_block(1), data_dir=tmp_path,
                     broker_args=["--no-such-option"])  # fmt: skip
    with sup, pytest.raises(ClusterError, match="exited"):
        sup.start(timeout_s=30)


def test_supervisor_rejects_unknown_broker_ids() -> None:
    with Supervisor(1, base_port=free_port_block(1)) as sup, pytest.raises(ClusterError):
        sup.kill(3)


def test_cluster_mode_keeps_a_private_raft_password_per_data_dir(tmp_path: Path) -> None:
    first = Supervisor(3, cluster_mode=True, data_dir=tmp_path)
    secret = tmp_path / "controller.secret"
    assert first.controller_password and secret.stat().st_mode & 0o777 == 0o600
    # Passed through the environment, never on the command line (which `ps` shows).
    assert all(first.controller_password not in " ".join(first.command(i)) for i in range(3))
    assert Supervisor(3, cluster_mode=True, data_dir=tmp_path).controller_password == (
        first.controller_password
    )
    assert Supervisor(1, cluster_mode=False, data_dir=tmp_path / "solo").controller_password is None


def test_free_port_blocks_stay_below_the_ephemeral_range() -> None:
    """A checked-free port inside the ephemeral range can be taken by any outgoing connection
    before the broker binds it (a CI failure); blocks come from below it."""
    from quorumq.cluster._supervisor import RAFT_PORT_OFFSET, _ephemeral_low

    low = _ephemeral_low()
    if low <= 10_000 + 3 + RAFT_PORT_OFFSET:
        pytest.skip(f"no room below the ephemeral range (it starts at {low})")
    for _ in range(100):
        base = free_port_block(3)
        assert base >= 10_000 and base + 2 + RAFT_PORT_OFFSET < low
        assert free_port_block(3, with_raft=False) + 2 < low


def _orphan_broker(tmp_path: Path, start: str) -> None:
    """Runs a supervisor that starts broker 0 with ``start`` and then dies (os._exit); the
    orphaned broker must stop by itself, cleanly."""
    base = free_port_block(1)
    script = (
        "import os, sys\n"
        "from pathlib import Path\n"
        "from quorumq.cluster import Supervisor\n"
        f"sup = Supervisor(1, base_port={base}, data_dir=Path(sys.argv[1]))\n"
        f"{start}\n"
        "print(sup.pid(0), flush=True)\n"
        "os._exit(0)\n"
    )
    done = subprocess.run(
        [sys.executable, "-c", script, str(tmp_path)],
        capture_output=True,
        text=True,
        timeout=120,
        check=True,
    )
    broker_pid = int(done.stdout.split()[-1])
    try:
        deadline = time.monotonic() + 20
        while pid_exists(broker_pid) and time.monotonic() < deadline:
            time.sleep(0.1)
        assert not pid_exists(broker_pid), "the orphaned broker is still running"
    finally:
        if pid_exists(broker_pid):  # ours: started by the supervisor this test ran
            os.kill(broker_pid, signal.SIGKILL)
    assert "is gone: stopping" in (tmp_path / "broker-0.log").read_text()


def test_brokers_stop_by_themselves_when_the_supervisor_dies(tmp_path: Path) -> None:
    """A supervisor killed without stopping its running brokers must not leave them running:
    each broker notices its parent is gone and stops cleanly."""
    _orphan_broker(tmp_path, "sup.start(timeout_s=60)")


def test_a_broker_orphaned_while_starting_stops_too(tmp_path: Path) -> None:
    """The supervisor dies before the broker has even imported its code (a bench or test run
    interrupted while it starts brokers): the broker's parent is already gone when it first
    looks, so only the supervisor's PID handed down tells it to stop."""
    _orphan_broker(tmp_path, "sup.launch(0)")


def _shim_package(root: Path, marker: Path) -> Path:
    """A fake ``quorumq`` package under ``root`` whose ``python -m quorumq`` only writes its argv
    to ``marker`` and exits: a stand-in for "some other version of quorumq"."""
    pkg = root / "quorumq"
    pkg.mkdir(parents=True)
    (pkg / "__init__.py").write_text("")
    (pkg / "__main__.py").write_text(
        f"import sys, pathlib\npathlib.Path({str(marker)!r}).write_text(' '.join(sys.argv[1:]))\n"
    )
    return root


def test_a_launcher_runs_the_quorumq_it_names_not_the_current_directorys(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """``env PYTHONPATH=<other version> python -m quorumq`` started from a checkout must run the
    other version: ``python -m`` puts the current directory ahead of PYTHONPATH, and A/B
    benchmarks through ``--launcher`` once compared a checkout with itself."""
    import quorumq

    marker = tmp_path / "ran"
    shim = _shim_package(tmp_path / "other", marker)
    monkeypatch.chdir(Path(quorumq.__file__).resolve().parents[1])  # holds the real quorumq
    launcher = ["/usr/bin/env", f"PYTHONPATH={shim}", sys.executable, "-m", "quorumq", "broker"]
    with Supervisor(1, base_port=free_port_block(1), cluster_mode=False, launcher=launcher) as sup:
        sup.launch(0)
        process = sup.brokers[0].process
        assert process is not None
        try:
            process.wait(timeout=30)
        except subprocess.TimeoutExpired:
            pytest.fail("the launcher ran the current directory's quorumq (a real broker)")
    assert marker.read_text().startswith("broker --node-id 0")


def test_the_default_launcher_runs_this_processs_quorumq(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Without a launcher the brokers run the code of the process that starts them, wherever it
    was started from: here a directory holding another ``quorumq``."""
    marker = tmp_path / "ran"
    monkeypatch.chdir(_shim_package(tmp_path / "cwd", marker))
    with Supervisor(1, base_port=free_port_block(1), cluster_mode=False) as sup:
        sup.start(timeout_s=60)
        assert sup.is_ready(0)
    assert not marker.exists()
