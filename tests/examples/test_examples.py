"""Every script in examples/ runs as a subprocess against a real broker and says what it did.

One single-broker ThreadedCluster serves the module (each example uses its own topic or group,
or a fresh run id); group examples are skipped with a reason if the broker cannot coordinate
groups (FindCoordinator answering COORDINATOR_NOT_AVAILABLE).
"""

from __future__ import annotations

import os
import re
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest
import trio

from quorumq import protocol as p
from quorumq.client import Producer, open_connection
from quorumq.errors import ErrorCode
from quorumq.testing import ThreadedCluster

EXAMPLES = Path(__file__).resolve().parents[2] / "examples"


@pytest.fixture(scope="module")
def cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ThreadedCluster]:
    with ThreadedCluster(tmp_path=tmp_path_factory.mktemp("examples")) as cluster:
        yield cluster


async def find_coordinator(port: int) -> int:
    """FindCoordinator for a group, as every group consumer's first request; its error code."""
    async with open_connection("127.0.0.1", port) as conn:
        version = conn.version_for(p.ApiKey.FIND_COORDINATOR, (0, 2))
        request = p.FindCoordinatorRequest(key="probe-group")
        for _attempt in range(20):  # COORDINATOR_NOT_AVAILABLE while __consumer_offsets loads
            response = await conn.request(p.ApiKey.FIND_COORDINATOR, version, request)
            if response.error_code != ErrorCode.COORDINATOR_NOT_AVAILABLE:
                break
            await trio.sleep(0.1)
        return int(response.error_code)


@pytest.fixture(scope="module")
def groups_supported(cluster: ThreadedCluster) -> None:
    """Skips group tests when the broker cannot coordinate groups yet."""
    code = trio.run(find_coordinator, cluster.ports[0])
    if code:
        pytest.skip(
            f"the broker cannot coordinate groups: FindCoordinator says {ErrorCode(code).name}"
        )


def run_example(
    name: str, cluster: ThreadedCluster, *args: str, timeout: float = 60
) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "PYTHONUNBUFFERED": "1"}
    return subprocess.run(
        [sys.executable, str(EXAMPLES / name), "--bootstrap", cluster.bootstrap, *args],
        capture_output=True,
        text=True,
        timeout=timeout,
        env=env,
        check=False,
    )


def ok(result: subprocess.CompletedProcess[str]) -> str:
    assert result.returncode == 0, f"exit {result.returncode}\n{result.stdout}\n{result.stderr}"
    return result.stdout


def test_producer_creates_the_topic_and_keys_keep_their_partition(
    cluster: ThreadedCluster,
) -> None:
    out = ok(run_example("producer.py", cluster, "--topic", "ex-produce", "--count", "8"))
    assert "created topic ex-produce with 6 partitions" in out
    assert "produced 8 records to ex-produce" in out
    sent = re.findall(r"sent key=(\S+) value=(\S+) -> partition (\d+) offset (\d+)", out)
    assert len(sent) == 8
    partition_of: dict[str, set[str]] = {}
    for key, _value, partition, _offset in sent:
        partition_of.setdefault(key, set()).add(partition)
    assert all(len(partitions) == 1 for partitions in partition_of.values())


async def produce(port: int, topic: str, count: int) -> None:
    """Records for the consumer tests, produced in-process (producer.py has its own test)."""
    async with Producer(f"127.0.0.1:{port}") as producer:
        for i in range(count):
            await producer.send(topic, b"v%d" % i, key=b"k%d" % i, partition=i % 6)


def test_consumer_reads_as_a_group_member_and_resumes_from_its_commits(
    cluster: ThreadedCluster, groups_supported: None
) -> None:
    cluster.create_topic("ex-consume", partitions=6)
    trio.run(produce, cluster.ports[0], "ex-consume", 6)
    args = ("--topic", "ex-consume", "--group", "ex-group")
    out = ok(run_example("consumer.py", cluster, *args, "--count", "6", "--timeout", "20"))
    assert "assigned partitions [0, 1, 2, 3, 4, 5] of ex-consume" in out
    assert len(re.findall(r"^received partition=", out, re.MULTILINE)) == 6
    assert "consumed 6 records from ex-consume as group ex-group" in out

    trio.run(produce, cluster.ports[0], "ex-consume", 2)
    # Asks for 3 but only 2 are new: it reads those, stops at its timeout and says so.
    result = run_example("consumer.py", cluster, *args, "--count", "3", "--timeout", "3")
    assert result.returncode == 2, result.stdout + result.stderr
    received = re.findall(r"^received partition=(\d+) offset=(\d+)", result.stdout, re.MULTILINE)
    assert sorted(received) == [("0", "1"), ("1", "1")]  # only the new ones: commits held
    assert "consumed 2 records" in result.stdout and "fewer than 3" in result.stdout


def test_consumer_group_members_take_over_a_stopped_members_partitions(
    cluster: ThreadedCluster, groups_supported: None
) -> None:
    out = ok(run_example("consumer_group.py", cluster, "--timeout", "45"))
    assert "all three members hold disjoint partitions covering all six" in out
    assert "the group read round-1: 12 records" in out
    assert "stopping consumer-3" in out and "consumer-3: left the group" in out
    takeover = re.search(r"the two remaining members now cover all six partitions: (.*)", out)
    assert takeover is not None
    held = sorted(int(n) for n in re.findall(r"\d+", re.sub(r"consumer-\d", "", takeover[1])))
    assert held == [0, 1, 2, 3, 4, 5]
    assert "the remaining members read all of round-2" in out
    counts = [int(n) for n in re.findall(r"consumer-\d read (\d+) records", out)]
    assert sum(counts) == 24  # both rounds, nothing read twice


def test_kafka_python_interop(cluster: ThreadedCluster, groups_supported: None) -> None:
    out = ok(run_example("kafka_python_interop.py", cluster, "--count", "7"))
    assert "created topic interop-events: 3 partitions" in out
    assert len(re.findall(r"^produced to partition", out, re.MULTILINE)) == 7
    assert re.search(r"kafka-python read 7 of 7 records of run-\w+ through quorumq", out)
    assert "committed offsets" in out


def test_examples_fail_in_one_line_when_no_broker_answers(tmp_path: Path) -> None:
    with ThreadedCluster(tmp_path=tmp_path) as dead:
        pass  # stopped: its port refuses connections now
    result = run_example("producer.py", dead, "--count", "1", timeout=30)
    assert result.returncode == 1
    assert result.stderr.startswith("error: ") and result.stderr.count("\n") == 1
    assert "cannot connect to 127.0.0.1:" in result.stderr
    assert "Traceback" not in result.stderr


@pytest.fixture(scope="module")
def three_brokers(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ThreadedCluster]:
    """What `quorumq cluster up` runs: three combined-mode brokers, replicated topics."""
    with ThreadedCluster(brokers=3, tmp_path=tmp_path_factory.mktemp("examples3")) as cluster:
        yield cluster


def test_producer_against_three_brokers_finds_each_partitions_leader(
    three_brokers: ThreadedCluster,
) -> None:
    out = ok(run_example("producer.py", three_brokers, "--topic", "ex-three", "--count", "12"))
    assert "created topic ex-three with 6 partitions" in out
    partitions = set(re.findall(r"-> partition (\d+) offset", out))
    assert len(partitions) == 4  # four keys, four partitions, led by different brokers
    leaders = {three_brokers.leader("ex-three", int(n)) for n in partitions}
    assert len(leaders) > 1
    # A second run finds the topic and appends after the first run's records.
    again = ok(run_example("producer.py", three_brokers, "--topic", "ex-three", "--count", "1"))
    assert "created topic" not in again
    assert re.search(r"sent key=customer-0 value=order-0 -> partition \d+ offset 3", again)


def test_consumer_group_against_three_brokers(three_brokers: ThreadedCluster) -> None:
    code = trio.run(find_coordinator, three_brokers.ports[0])
    if code:
        pytest.skip(
            "cluster-mode brokers cannot coordinate groups yet: FindCoordinator says "
            f"{ErrorCode(code).name}"
        )
    out = ok(run_example("consumer_group.py", three_brokers, "--timeout", "45"))
    assert "the two remaining members now cover all six partitions" in out
    assert "the remaining members read all of round-2" in out


def test_secure_shows_users_acls_and_a_refused_write(tmp_path: Path) -> None:
    """secure.py against a real `quorumq broker` process with SASL and an authorizer."""
    from quorumq.testing import free_ports
    from tests.integration.conftest import wait_listening

    (port,) = free_ports(1)
    proc = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "quorumq",
            "broker",
            "--data-dir",
            str(tmp_path / "data"),
            "--listen",
            f"127.0.0.1:{port}",
            "--sasl-mechanism",
            "SCRAM-SHA-512",
            "--sasl-user",
            "admin=admin-secret",
            "--authorizer",
            "--super-user",
            "User:admin",
        ],
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    try:
        wait_listening(port, proc)
        result = subprocess.run(
            [
                sys.executable,
                str(EXAMPLES / "secure.py"),
                "--bootstrap",
                f"127.0.0.1:{port}",
                "--admin-password",
                "admin-secret",
            ],
            capture_output=True,
            text=True,
            timeout=60,
            check=False,
        )
        out = ok(result)
        assert re.search(r"writer wrote 5 records", out)
        assert re.search(r"reader may not write to \S+: TopicAuthorizationFailed", out)
        assert re.search(r"reader read 5 records", out)
        wrong = subprocess.run(
            [sys.executable, str(EXAMPLES / "secure.py"), "--bootstrap", f"127.0.0.1:{port}",
             "--admin-password", "guess"],
            capture_output=True, text=True, timeout=60, check=False,
        )  # fmt: skip
        assert wrong.returncode == 1 and "Authentication failed" in wrong.stderr
    finally:
        proc.terminate()
        proc.communicate(timeout=30)


def test_admin_alters_grows_deletes_records_and_a_group(
    cluster: ThreadedCluster, groups_supported: None
) -> None:
    out = ok(run_example("admin.py", cluster))
    assert "config retention.ms = 3600000" in out
    assert "config cleanup.policy = delete,compact" in out
    assert re.search(r"topic admin-\w+ now has 4 partitions", out)
    assert "deleted records below offset 6" in out
    assert "a consumer now starts at offset 6: record-6" in out
    assert re.search(r"deleted group admin-group-\w+ and its committed offsets", out)


def test_admin_against_three_brokers(three_brokers: ThreadedCluster) -> None:
    out = ok(run_example("admin.py", three_brokers))
    assert "on 3 broker(s)" in out and "now has 4 partitions" in out
    assert "a consumer now starts at offset 6: record-6" in out
