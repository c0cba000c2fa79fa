"""The CLI against a real broker: topic admin, produce/consume, one-line errors."""

from __future__ import annotations

import io
import sys

import pytest

from quorumq.cli import main
from tests.integration.conftest import BrokerThread


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


def test_cli_refused_connection_is_one_line(
    monkeypatch: pytest.MonkeyPatch, capfd: pytest.CaptureFixture[str]
) -> None:
    code, _, err = run_cli(["topic", "list", "--bootstrap", "127.0.0.1:1"], monkeypatch, capfd)
    assert code == 1
    assert err.strip() == "quorumq: error: cannot connect to 127.0.0.1:1: connection refused"
