"""The CLI against a real broker: topic admin, produce/consume, one-line errors."""

from __future__ import annotations

import io
import re
import signal
import socket
import subprocess
import sys
from pathlib import Path

import pytest

from quorumq import protocol as p
from quorumq.cli import main
from quorumq.client._connection import SaslConfig
from quorumq.log import CLEAN_SHUTDOWN_FILE
from tests.integration._workload import samples
from tests.integration.conftest import BrokerThread, wait_listening
from tests.integration.conftest import call as request
from tests.integration.test_kafka_python import produce


def run_cli(
    args: list[str],
    monkeypatch: pytest.MonkeyPatch,
    capfd: pytest.CaptureFixture[str],
    stdin: bytes = b"",
) -> tuple[int, str, str]:
    monkeypatch.setattr(sys, "argv", ["quorumq", *args])
    monkeypatch.setattr(sys, "stdin", io.TextIOWrapper(io.BytesIO(stdin)))
    try:
        main()
        code = 0
    except SystemExit as exc:
        code = int(exc.code or 0)
    out, err = capfd.readouterr()
    return code, out, err


def test_topic_admin_and_shell_round_trip(
    broker: BrokerThread, monkeypatch: pytest.MonkeyPatch, capfd: pytest.CaptureFixture[str]
) -> None:
    b = ["--bootstrap", broker.bootstrap]
    code, out, _ = run_cli(
        ["topic", "create", "orders", "--partitions", "3", "--config", "retention.ms=60000", *b],
        monkeypatch,
        capfd,
    )
    assert code == 0 and "created topic" in out
    code, out, _ = run_cli(["topic", "list", *b], monkeypatch, capfd)
    assert code == 0 and "orders" in out and "3" in out
    code, out, _ = run_cli(["topic", "describe", "orders", *b], monkeypatch, capfd)
    assert code == 0 and "retention.ms" in out and "60000" in out
    alter = ["topic", "alter", "orders", "-c", "segment.ms=120000", "-d", "retention.ms", *b]
    code, out, _ = run_cli(alter, monkeypatch, capfd)
    assert code == 0 and "altered" in out
    code, out, _ = run_cli(["topic", "describe", "orders", *b], monkeypatch, capfd)
    rows = {line.split()[1]: line for line in out.splitlines() if ".ms " in line}
    assert "120000" in rows["segment.ms"] and "topic" in rows["segment.ms"]
    assert "604800000" in rows["retention.ms"] and "default" in rows["retention.ms"]
    lines = b"".join(b"k%d:v%d\n" % (i, i) for i in range(50))
    code, _, err = run_cli(
        ["produce", "orders", "--key-separator", ":", *b], monkeypatch, capfd, stdin=lines
    )
    assert code == 0 and "produced 50" in err
    code, out, _ = run_cli(
        [
            "consume",
            "orders",
            "--from-beginning",
            "--max-messages",
            "50",
            "--print-key",
            "-K",
            ":",
            *b,
        ],
        monkeypatch,
        capfd,
    )
    assert code == 0
    assert sorted(out.splitlines()) == sorted(f"k{i}:v{i}" for i in range(50))
    code, out, _ = run_cli(
        ["topic", "delete-records", "orders", "--before", "-1", *b], monkeypatch, capfd
    )
    starts = dict(re.findall(r"(\d+)\s+│\s+(\d+)", out))
    assert code == 0 and sorted(starts) == ["0", "1", "2"], out
    assert sum(int(v) for v in starts.values()) == 50  # every record gone
    code, _, err = run_cli(
        ["topic", "delete-records", "orders", "--before", "99999", "-p", "0", *b],
        monkeypatch,
        capfd,
    )
    assert code == 1 and "OFFSET_OUT_OF_RANGE" in err and err.count("\n") == 1
    code, _, err = run_cli(
        ["topic", "delete-records", "orders", "--before", "0", "-p", "9", *b], monkeypatch, capfd
    )
    assert code == 1 and "UNKNOWN_TOPIC_OR_PARTITION" in err
    code, out, _ = run_cli(
        ["topic", "alter", "orders", "--partitions", "5", *b], monkeypatch, capfd
    )
    assert code == 0 and "now has 5" in out
    code, out, _ = run_cli(["topic", "list", *b], monkeypatch, capfd)
    assert "5" in out
    code, out, _ = run_cli(["topic", "delete", "orders", *b], monkeypatch, capfd)
    assert code == 0


@pytest.mark.parametrize(
    ("args", "error"),
    [
        (["topic", "create", "bad name"], "INVALID_TOPIC_EXCEPTION"),
        (["topic", "create", "t", "--partitions", "0"], "INVALID_PARTITIONS"),
        (["topic", "create", "t", "--config", "no.such=1"], "INVALID_CONFIG"),
        (["topic", "describe", "missing"], "UNKNOWN_TOPIC_OR_PARTITION"),
        (["topic", "delete", "missing"], "UNKNOWN_TOPIC_OR_PARTITION"),
        (["topic", "alter", "missing", "-c", "retention.ms=1"], "UNKNOWN_TOPIC_OR_PARTITION"),
        (["topic", "alter", "missing", "--partitions", "3"], "UNKNOWN_TOPIC_OR_PARTITION"),
    ],
)
def test_cli_errors_are_one_line_with_the_kafka_name(
    broker: BrokerThread,
    monkeypatch: pytest.MonkeyPatch,
    capfd: pytest.CaptureFixture[str],
    args: list[str],
    error: str,
) -> None:
    code, _, err = run_cli([*args, "--bootstrap", broker.bootstrap], monkeypatch, capfd)
    assert code == 1
    assert err.count("\n") == 1 and error in err and "Traceback" not in err


def test_cli_create_existing_topic(
    broker: BrokerThread, monkeypatch: pytest.MonkeyPatch, capfd: pytest.CaptureFixture[str]
) -> None:
    b = ["--bootstrap", broker.bootstrap]
    assert run_cli(["topic", "create", "t", *b], monkeypatch, capfd)[0] == 0
    code, _, err = run_cli(["topic", "create", "t", *b], monkeypatch, capfd)
    assert code == 1 and "TOPIC_ALREADY_EXISTS" in err


def test_cli_quota_set_describe_remove(
    broker: BrokerThread, monkeypatch: pytest.MonkeyPatch, capfd: pytest.CaptureFixture[str]
) -> None:
    b = ["--bootstrap", broker.bootstrap]
    code, out, _ = run_cli(
        ["quota", "set", "--client-id", "app", "--producer-byte-rate", "1500", *b],
        monkeypatch,
        capfd,
    )
    assert code == 0 and "client-id=app" in out
    args = ["quota", "set", "--client-id", "<default>", "--consumer-byte-rate", "2e6", *b]
    assert run_cli(args, monkeypatch, capfd)[0] == 0
    code, out, _ = run_cli(["quota", "describe", *b], monkeypatch, capfd)
    assert code == 0 and "client-id=app" in out and "1,500" in out and "2,000,000" in out
    assert run_cli(["quota", "remove", "--client-id", "app", *b], monkeypatch, capfd)[0] == 0
    code, out, _ = run_cli(["quota", "describe", *b], monkeypatch, capfd)
    assert code == 0 and "client-id=app" not in out and "client-id=<default>" in out
    # Bad input: one line, no traceback.
    code, _, err = run_cli(["quota", "set", "--client-id", "x", *b], monkeypatch, capfd)
    assert code == 2 and "--producer-byte-rate" in err
    args = ["quota", "set", "--client-id", "", "--producer-byte-rate", "5", *b]
    code, _, err = run_cli(args, monkeypatch, capfd)
    assert code == 1 and err.count("\n") == 1 and "INVALID_REQUEST" in err


def test_cli_users_and_a_sasl_login_from_the_environment(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capfd: pytest.CaptureFixture[str]
) -> None:
    broker = BrokerThread(
        tmp_path / "data",
        sasl_mechanisms=("PLAIN", "SCRAM-SHA-512"),
        sasl_users={"admin": "admin-secret"},
    )
    broker.start()
    try:
        b = ["--bootstrap", broker.bootstrap]
        code, _, err = run_cli(["topic", "list", *b], monkeypatch, capfd)
        assert code == 1 and err.count("\n") == 1 and "QUORUMQ_SASL_USERNAME" in err
        monkeypatch.setenv("QUORUMQ_SASL_USERNAME", "admin")
        monkeypatch.setenv("QUORUMQ_SASL_PASSWORD", "admin-secret")
        args = ["user", "set", "dave", "--password", "dave-secret", *b]
        code, out, _ = run_cli(args, monkeypatch, capfd)
        assert code == 0 and "SCRAM-SHA-512" in out
        code, out, _ = run_cli(["user", "describe", *b], monkeypatch, capfd)
        assert code == 0 and "dave" in out and "SCRAM-SHA-512 (8192)" in out
        monkeypatch.setenv("QUORUMQ_SASL_USERNAME", "dave")
        monkeypatch.setenv("QUORUMQ_SASL_PASSWORD", "dave-secret")
        assert run_cli(["topic", "list", *b], monkeypatch, capfd)[0] == 0
        code, out, _ = run_cli(["cluster", "status", *b], monkeypatch, capfd)
        assert code == 0 and "broker" in out.lower()
        monkeypatch.setenv("QUORUMQ_SASL_PASSWORD", "wrong")
        code, _, err = run_cli(["topic", "list", *b], monkeypatch, capfd)
        assert code == 1 and "SASL_AUTHENTICATION_FAILED" in err and err.count("\n") == 1
        monkeypatch.setenv("QUORUMQ_SASL_PASSWORD", "dave-secret")
        args = ["user", "set", "erin", "--password", "x", "--iterations", "10", *b]
        assert run_cli(args, monkeypatch, capfd)[0] == 2
        args = ["user", "set", "erin", "--password", "x", "--mechanism", "md5", *b]
        assert run_cli(args, monkeypatch, capfd)[0] == 2
        code, _, err = run_cli(["user", "delete", "nobody", *b], monkeypatch, capfd)
        assert code == 1 and "RESOURCE_NOT_FOUND" in err and err.count("\n") == 1
        assert run_cli(["user", "delete", "dave", *b], monkeypatch, capfd)[0] == 0
        code, _, err = run_cli(["topic", "list", *b], monkeypatch, capfd)
        assert code == 1 and "SASL_AUTHENTICATION_FAILED" in err
    finally:
        broker.stop()


def test_cli_acls_add_list_remove(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capfd: pytest.CaptureFixture[str]
) -> None:
    broker = BrokerThread(
        tmp_path / "data",
        sasl_mechanisms=("PLAIN",),
        sasl_users={"admin": "admin-secret", "alice": "alice-secret"},
        authorizer=True,
        super_users=("User:admin",),
    )
    broker.start()
    try:
        b = ["--bootstrap", broker.bootstrap]
        monkeypatch.setenv("QUORUMQ_SASL_MECHANISM", "PLAIN")
        monkeypatch.setenv("QUORUMQ_SASL_USERNAME", "admin")
        monkeypatch.setenv("QUORUMQ_SASL_PASSWORD", "admin-secret")
        assert run_cli(["topic", "create", "orders", *b], monkeypatch, capfd)[0] == 0
        add = ["acl", "add", "--principal", "User:alice", "--operation", "write", "--operation",
               "READ", "--topic", "ord", "--prefixed", *b]  # fmt: skip
        code, out, _ = run_cli(add, monkeypatch, capfd)
        assert code == 0 and "added 2" in out
        code, out, _ = run_cli(["acl", "list", "--topic", "orders", *b], monkeypatch, capfd)
        assert code == 0 and "TOPIC:ord" in out and "PREFIXED" in out and "WRITE" in out
        monkeypatch.setenv("QUORUMQ_SASL_USERNAME", "alice")
        monkeypatch.setenv("QUORUMQ_SASL_PASSWORD", "alice-secret")
        code, out, _ = run_cli(["produce", "orders", *b], monkeypatch, capfd, stdin=b"hi\n")
        assert code == 0
        code, _, err = run_cli(["acl", "list", *b], monkeypatch, capfd)
        assert code == 1 and "CLUSTER_AUTHORIZATION_FAILED" in err and err.count("\n") == 1
        monkeypatch.setenv("QUORUMQ_SASL_USERNAME", "admin")
        monkeypatch.setenv("QUORUMQ_SASL_PASSWORD", "admin-secret")
        remove = ["acl", "remove", "--principal", "User:alice", "--operation", "WRITE", *b]
        code, out, _ = run_cli(remove, monkeypatch, capfd)
        assert code == 0 and "removed 1" in out
        # Bad input: one line each.
        for bad in (
            ["acl", "add", "--principal", "alice", "--operation", "READ", "--topic", "t"],
            ["acl", "add", "--principal", "User:a", "--operation", "FLY", "--topic", "t"],
            ["acl", "add", "--principal", "User:a", "--operation", "READ"],
            [
                "acl",
                "add",
                "--principal",
                "User:a",
                "--operation",
                "READ",
                "--topic",
                "t",
                "--group",
                "g",
            ],
            ["acl", "remove"],
        ):
            code, _, err = run_cli([*bad, *b], monkeypatch, capfd)
            assert code == 2 and "Traceback" not in err, bad
    finally:
        broker.stop()


def test_cli_over_tls_from_the_environment(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capfd: pytest.CaptureFixture[str]
) -> None:
    import trustme

    ca = trustme.CA()
    ca_file, cert_file = tmp_path / "ca.pem", tmp_path / "server.pem"
    ca.cert_pem.write_to_path(str(ca_file))
    ca.issue_cert("127.0.0.1").private_key_and_cert_chain_pem.write_to_path(str(cert_file))
    broker = BrokerThread(tmp_path / "data", ssl_certfile=cert_file)
    broker.start()
    try:
        b = ["--bootstrap", broker.bootstrap]
        monkeypatch.setenv("QUORUMQ_SSL_CAFILE", str(ca_file))
        assert run_cli(["topic", "create", "tls", *b], monkeypatch, capfd)[0] == 0
        code, out, err = run_cli(["produce", "tls", *b], monkeypatch, capfd, stdin=b"over tls\n")
        assert code == 0 and "produced 1" in out + err
        args = ["consume", "tls", "--from-beginning", "--max-messages", "1", *b]
        code, out, _ = run_cli(args, monkeypatch, capfd)
        assert code == 0 and "over tls" in out
        monkeypatch.setenv("QUORUMQ_SSL_CAFILE", str(tmp_path / "missing.pem"))
        code, _, err = run_cli(["topic", "list", *b], monkeypatch, capfd)
        assert code == 1 and "INVALID_CONFIG" in err and err.count("\n") == 1
        monkeypatch.setenv("QUORUMQ_SSL_CAFILE", str(cert_file))  # not the CA that signed it
        code, _, err = run_cli(["topic", "list", *b], monkeypatch, capfd)
        assert code == 1 and "TLS" in err and err.count("\n") == 1
    finally:
        broker.stop()


@pytest.mark.parametrize(
    "args",
    [
        ["--sasl-mechanism", "GSSAPI"],
        ["--sasl-mechanism", "PLAIN", "--sasl-user", "nopassword"],
        ["--sasl-mechanism", "PLAIN", "--controller-voters", "0@127.0.0.1:1"],
        ["--authorizer", "--controller-voters", "0@127.0.0.1:1", "--controller-password", "x"],
        ["--authorizer", "--super-user", "alice"],
        ["--ssl-keyfile", "k.pem"],
        ["--ssl-certfile", "c.pem", "--ssl-client-auth"],
        ["--listeners", "INSIDE://127.0.0.1:1"],
        ["--listeners", "PLAINTEXT://127.0.0.1:1,SSL://127.0.0.1:2"],
        ["--listeners", "SASL_PLAINTEXT://127.0.0.1:1"],
        ["--listeners", "PLAINTEXT://127.0.0.1:1", "--inter-broker-listener-name", "OTHER"],
        ["--inter-broker-listener-name", "PLAINTEXT"],
        [
            "--listeners",
            "PLAINTEXT://127.0.0.1:1,SASL_PLAINTEXT://127.0.0.1:2",
            "--sasl-mechanism",
            "PLAIN",
            "--authorizer",
            "--controller-voters",
            "0@127.0.0.1:3",
            "--controller-password",
            "x",
        ],
    ],
)
def test_cli_broker_refuses_bad_sasl_settings_in_one_line(
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    capfd: pytest.CaptureFixture[str],
    args: list[str],
) -> None:
    monkeypatch.delenv("QUORUMQ_CONTROLLER_PASSWORD", raising=False)
    code, _, err = run_cli(["broker", "--data-dir", str(tmp_path / "d"), *args], monkeypatch, capfd)
    assert code == 2 and "Traceback" not in err
    assert "sasl" in err.lower() or "super-user" in err or "--ssl" in err or "listener" in err


def test_cli_refused_connection_is_one_line(
    monkeypatch: pytest.MonkeyPatch, capfd: pytest.CaptureFixture[str]
) -> None:
    code, _, err = run_cli(["topic", "list", "--bootstrap", "127.0.0.1:1"], monkeypatch, capfd)
    assert code == 1
    assert err.strip() == "quorumq: error: cannot connect to 127.0.0.1:1: connection refused"


def test_broker_command_stops_cleanly_on_sigterm(tmp_path: Path) -> None:
    """`quorumq broker` in a real process: serves, then SIGTERM flushes and closes its logs."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    data_dir = tmp_path / "data"
    proc = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "quorumq",
            "broker",
            "--data-dir",
            str(data_dir),
            "--listen",
            f"127.0.0.1:{port}",
        ],
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    try:
        wait_listening(port, proc)
        produce(f"127.0.0.1:{port}", "sig", samples(100, tag="sig"), acks=1, compression=None)
        proc.send_signal(signal.SIGTERM)
        output, _ = proc.communicate(timeout=30)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    assert proc.returncode == 0, output
    assert "SIGTERM: stopping" in output and "stopped" in output
    assert "Traceback" not in output
    assert (data_dir / "sig-0" / CLEAN_SHUTDOWN_FILE).exists()


def test_broker_command_serves_two_listeners(tmp_path: Path) -> None:
    """`quorumq broker --listeners` in a real process: a plain and a SASL listener, each
    advertising itself."""
    from quorumq.testing import free_ports

    plain, sasl = free_ports(2)
    proc = subprocess.Popen(
        [
            *(sys.executable, "-m", "quorumq", "broker", "--data-dir", str(tmp_path / "d")),
            *("--listeners", f"PLAINTEXT://127.0.0.1:{plain},SASL_PLAINTEXT://127.0.0.1:{sasl}"),
            *("--sasl-mechanism", "PLAIN", "--sasl-user", "admin=secret"),
        ],
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    try:
        wait_listening(plain, proc)
        wait_listening(sasl, proc)
        everything = p.MetadataRequest(topics=None)
        answer = request(plain, p.ApiKey.METADATA, 8, everything)
        assert [b.port for b in answer.brokers] == [plain]
        login = SaslConfig("PLAIN", "admin", "secret")
        answer = request(sasl, p.ApiKey.METADATA, 8, everything, login)
        assert [b.port for b in answer.brokers] == [sasl]
        proc.send_signal(signal.SIGTERM)
        output, _ = proc.communicate(timeout=30)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    assert proc.returncode == 0, output
    assert f"PLAINTEXT://127.0.0.1:{plain}, SASL_PLAINTEXT://127.0.0.1:{sasl}" in output
