"""The typer application and the one place that turns errors into one-line messages."""

from __future__ import annotations

import os
import sys

import typer

from quorumq.errors import QuorumqError

app = typer.Typer(
    name="quorumq",
    help="quorumq: a replicated, Kafka-compatible message log.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)
bench_app = typer.Typer(help="Benchmarks; results go to docs/benchmarks.md.", no_args_is_help=True)
app.add_typer(bench_app, name="bench")


def _register() -> None:
    # Imported for their side effect of adding commands; kept here so each command module only
    # depends on the app objects above.
    from quorumq.cli import (  # noqa: F401
        _acl,
        _bench,
        _bench_kafka,
        _broker,
        _chaos,
        _cluster,
        _compare,
        _demo,
        _group,
        _quota,
        _shell,
        _topic,
        _user,
    )


def main() -> None:
    """Console entry point: a QuorumqError or a bad file becomes one line on stderr, exit 1."""
    _register()
    try:
        app()
    except QuorumqError as exc:
        print(f"quorumq: error: {exc} ({exc.code.name})", file=sys.stderr)
        sys.exit(1)
    except OSError as exc:
        hint = ""
        if "closed by the broker" in str(exc) and not os.environ.get("QUORUMQ_SASL_USERNAME"):
            hint = " (if the broker requires a SASL login, set QUORUMQ_SASL_USERNAME and QUORUMQ_SASL_PASSWORD)"
        print(f"quorumq: error: {exc}{hint}", file=sys.stderr)
        sys.exit(1)
