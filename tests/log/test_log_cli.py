"""`quorumq bench log` and `quorumq demo` run end to end (tiny sizes; no speed assertions)."""

from __future__ import annotations

from pathlib import Path

from typer.testing import CliRunner

from quorumq.cli._app import _register, app


def test_bench_log_prints_the_three_phases(tmp_path: Path) -> None:
    _register()
    result = CliRunner().invoke(
        app, ["bench", "log", "--records", "3000", "--no-warmup", "--dir", str(tmp_path)]
    )
    assert result.exit_code == 0, result.output
    for phase in ("append (no fsync)", "append (fsync/1 MiB)", "sequential read"):
        assert phase in result.output
    assert list(tmp_path.iterdir()) == []  # cleans up after itself


def test_demo_tours_the_log_and_exits() -> None:
    _register()
    result = CliRunner().invoke(app, ["demo", "--log-only"])
    assert result.exit_code == 0, result.output
    assert "recovery" in result.output and "compaction" in result.output
