"""The cluster benchmarks run end to end (tiny sizes; no speed assertions)."""

from __future__ import annotations

import math
import sys

import pytest
from typer.testing import CliRunner

from quorumq.bench import (
    elections_bench,
    failover_bench,
    produce_bench,
    start_quorumq_cluster,
)
from quorumq.bench._kafka import create_topic


def test_failover_bench_times_controller_kills_from_a_balanced_start() -> None:
    trials = failover_bench(brokers=3, trials=2, trial_timeout_s=30, partitions=30)
    assert len(trials) == 2
    for trial in trials:
        assert trial.new_controller not in (-1, trial.killed)
        assert not math.isnan(trial.elected_s) and not math.isnan(trial.topic_created_s)
        assert 0 < trial.elected_s <= trial.topic_created_s
        # All 30 are led again, later.
        assert trial.topic_created_s <= trial.partitions_led_s < 30
        # Each trial starts balanced (the second after the leader-imbalance check moved the
        # restarted broker's partitions back): the victim leads its preferred third, not the
        # half or more that the first failover left the new controller.
        assert trial.partitions_moved == 10


@pytest.mark.slow
def test_failover_bench_with_sigterm_moves_the_leaderships_before_the_session_ends() -> None:
    (trial,) = failover_bench(brokers=3, trials=1, trial_timeout_s=30, partitions=30, stop="term")
    assert trial.new_controller not in (-1, trial.killed)
    assert trial.partitions_moved == 10
    # A SIGKILLed broker is fenced 3 s (the session) after its last heartbeat, 0.5 s apart.
    assert trial.partitions_led_s < 2.5


@pytest.mark.slow
def test_elections_bench_runs_both_settings_and_the_cli_prints_the_table() -> None:
    from quorumq.cli._app import _register, app

    trials = elections_bench(trials=1, partitions=3, rate=2000)
    assert [t.transfers for t in trials] == [False, True]
    for trial in trials:
        assert trial.wanted == 1  # the victim preferred one of the three partitions
        assert 0 <= trial.won <= trial.wanted and trial.elapsed_s > 0
        assert trial.acked > 0 and trial.failed == 0
    assert trials[1].won == 1  # with the transfer the preferred replica wins
    _register()  # the subcommands register on first use
    result = CliRunner().invoke(
        app, ["bench", "elections", "--trials", "1", "--partitions", "3", "--rate", "1000"]
    )
    assert result.exit_code == 0, result.output
    assert "preferred elections under load" in result.output and "of 1" in result.output


@pytest.mark.slow
def test_produce_bench_on_three_brokers_sums_their_cpu() -> None:
    with start_quorumq_cluster(3) as proc:
        assert len(proc.processes) == 3
        create_topic(proc.bootstrap, "b", 1, 3, {"replication.strategy": "isr",
                                                 "min.insync.replicas": "2"})  # fmt: skip
        result = produce_bench(proc, topic="b", records=2000, record_size=100, acks="all",
                               rate=2000, timeout_s=60)  # fmt: skip
    assert result.delivered == 2000 and result.failed == 0
    assert result.broker_cpu_seconds > 0
    assert 0 < result.percentile_ms(0.5) <= result.percentile_ms(0.99)


@pytest.mark.slow
def test_bench_produce_cli_both_strategies() -> None:
    from quorumq.cli._app import (
        _register,  # the subcommands register on first use
        app,
    )

    _register()
    result = CliRunner().invoke(app, ["bench", "produce", "--brokers", "3", "--strategy", "both",
                                      "--acks", "all", "--records", "3000"])  # fmt: skip
    assert result.exit_code == 0, result.output
    out = result.output  # the table wraps "quorumq ×3 isr" in a narrow terminal
    assert out.count("quorumq") == 2 and "quorum" in out and "isr" in out


@pytest.mark.parametrize("pacing", ["record", "kafka"])
def test_paced_produce_bench_keeps_the_rate(pacing: str) -> None:
    from quorumq.bench import BrokerProcess
    from quorumq.testing import ThreadedCluster

    with ThreadedCluster() as cluster:
        create_topic(cluster.bootstrap, "paced", 1)
        proc = BrokerProcess(name="in-process", bootstrap=cluster.bootstrap, processes=[])
        result = produce_bench(proc, topic="paced", records=3000, record_size=10, acks="1",
                               rate=5000, timeout_s=30, pacing=pacing)  # fmt: skip
    assert result.delivered == 3000 and result.failed == 0
    # Either pacing averages the rate: 3,000 records at 5,000/s take at least 0.6 s.
    assert result.seconds >= 0.59


def test_unknown_pacing_is_refused() -> None:
    from quorumq.bench import BrokerProcess
    from quorumq.bench._kafka import BenchError

    proc = BrokerProcess(name="none", bootstrap="127.0.0.1:1", processes=[])
    with pytest.raises(BenchError, match="pacing"):
        produce_bench(proc, topic="t", records=1, record_size=1, acks="1", pacing="burst")


def _nodelay_of_sockets_to(port: int) -> list[int]:
    """TCP_NODELAY of every socket in this process whose peer is 127.0.0.1:``port``."""
    import os
    import socket

    found = []
    for name in os.listdir("/proc/self/fd"):
        try:
            fd = os.dup(int(name))
        except OSError:
            continue  # gone (the listing's own descriptor)
        try:
            sock = socket.socket(fileno=fd)
        except OSError:
            os.close(fd)  # not a socket
            continue
        with sock:
            try:
                if sock.family != socket.AF_INET or sock.type != socket.SOCK_STREAM:
                    continue
                if sock.getpeername()[1] != port:
                    continue
                found.append(sock.getsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY))
            except OSError:
                continue  # not connected, or not TCP
    return found


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="reads /proc/self/fd")
@pytest.mark.parametrize("nagle", [False, True])
def test_produce_bench_sets_tcp_nodelay_like_the_java_client(nagle: bool) -> None:
    from quorumq.bench import BrokerProcess
    from quorumq.testing import ThreadedCluster

    seen: list[int] = []
    with ThreadedCluster() as cluster:
        create_topic(cluster.bootstrap, "nagle", 1)
        port = int(cluster.bootstrap.rsplit(":", 1)[1])
        proc = BrokerProcess(name="in-process", bootstrap=cluster.bootstrap, processes=[])
        result = produce_bench(proc, topic="nagle", records=2000, record_size=10, acks="1",
                               timeout_s=30, nagle=nagle,
                               progress=lambda _: seen.extend(_nodelay_of_sockets_to(port)))  # fmt: skip
    assert result.delivered == 2000
    assert seen, "found no producer socket to the broker"
    assert set(seen) == ({0} if nagle else {1})


def test_runs_are_summarized_by_median_and_counted_against_the_target() -> None:
    from quorumq.bench import ProduceResult, summarize_runs

    def run(broker: str, p99: float, cpu: float, failed: int = 0) -> ProduceResult:
        # 100 latencies: 98 at 1 ms, then p99 (index 99) and one more at the same value.
        latencies = [1.0] * 98 + [p99, p99]
        return ProduceResult(broker, 100, 10, "all", 1.0, 100 - failed, failed, latencies, cpu)

    results = [run("q", 4.0, 70e-6 * 100), run("i", 9.0, 90e-6 * 100), run("q", 6.0, 80e-6 * 100),
               run("i", 5.0, 80e-6 * 100, failed=2), run("q", 5.0, 75e-6 * 100)]  # fmt: skip
    q, i = summarize_runs(results, p99_target_ms=5.0)
    assert (q.broker, q.runs, q.p99_ms, q.p99_min_ms, q.p99_max_ms) == ("q", 3, 5.0, 4.0, 6.0)
    assert q.met == 2 and q.p50_ms == 1.0 and math.isclose(q.cpu_s_per_million, 75.0)
    assert (i.runs, i.p99_ms, i.met, i.failed) == (2, 7.0, 1, 2)


def test_bench_produce_repeat_prints_a_summary() -> None:
    from quorumq.cli._app import _register, app

    _register()
    result = CliRunner().invoke(app, ["bench", "produce", "--records", "300", "--rate", "3000",
                                      "--acks", "all", "--repeat", "2",
                                      "--p99-target-ms", "1000"])  # fmt: skip
    assert result.exit_code == 0, result.output
    assert "summary over runs" in result.output
    assert "2 of 2" in result.output  # both runs under a 1 s p99
    assert result.output.count("│ quorumq") == 3  # two runs, one summary row


def test_bench_produce_compares_security_modes() -> None:
    from quorumq.cli._app import _register, app

    _register()
    args = ["bench", "produce", "--records", "2000", "--acks", "1"]
    for mode in ("none", "sasl", "ssl", "sasl_ssl_acl"):
        args += ["--security", mode]
    result = CliRunner(env={"COLUMNS": "200"}).invoke(app, args)
    assert result.exit_code == 0, result.output
    rows = {
        cells[1]: cells
        for line in result.output.splitlines()
        if (cells := [c.strip() for c in line.split("│")])[1:2] and cells[1].startswith("quorumq ")
    }
    assert sorted(rows) == sorted(f"quorumq {m}" for m in ("none", "sasl", "ssl", "sasl_ssl_acl"))
    assert all(cells[7] == "0" for cells in rows.values()), rows  # failed: every record delivered
    bad = CliRunner().invoke(app, ["bench", "produce", "--security", "kerberos"])
    assert bad.exit_code == 2 and "--security" in bad.output
    bad = CliRunner().invoke(
        app, ["bench", "produce", "--bootstrap", "127.0.0.1:1", "--security", "ssl"]
    )
    assert bad.exit_code == 2


def test_bench_produce_runs_secured_clusters() -> None:
    """Three brokers replicating over SASL_SSL with an authorizer: brokers log in to each
    other over TLS, the benchmark's user holds only its topic's ACLs, acks=all commits."""
    from quorumq.cli._app import _register, app

    _register()
    args = ["bench", "produce", "--records", "2000", "--acks", "all", "--brokers", "3"]
    args += ["--strategy", "isr", "--security", "sasl_ssl_acl", "--timeout", "60"]
    result = CliRunner(env={"COLUMNS": "200"}).invoke(app, args)
    assert result.exit_code == 0, result.output
    rows = [
        cells
        for line in result.output.splitlines()
        if (cells := [c.strip() for c in line.split("│")])[1:2] and cells[1].startswith("quorumq ")
    ]
    assert [cells[1] for cells in rows] == ["quorumq ×3 isr sasl_ssl_acl"]
    assert rows[0][7] == "0", rows  # failed: every record committed
