"""``quorumq user set|delete|describe``: SCRAM users, over the Kafka protocol
(AlterUserScramCredentials / DescribeUserScramCredentials), as ``kafka-configs.sh
--entity-type users --alter --add-config SCRAM-SHA-512=[password=...]`` does.

The password never leaves this process: it is salted and hashed here (Hi(password, salt, i)),
and the broker stores only the SCRAM keys derived from that. On a SASL cluster, log in with
``QUORUMQ_SASL_USERNAME`` / ``QUORUMQ_SASL_PASSWORD``.
"""

from __future__ import annotations

import secrets
from typing import Any

import typer
from rich.console import Console
from rich.table import Table

from quorumq import protocol as p
from quorumq.cli._app import app
from quorumq.cli._broker import run_trio
from quorumq.cli._topic import BOOTSTRAP_HELP, DEFAULT_BOOTSTRAP, connect, raise_for_code
from quorumq.security import (
    MAX_ITERATIONS,
    MIN_ITERATIONS,
    SCRAM_MECHANISMS,
    SCRAM_SHA_512,
    salted_password,
)

user_app = typer.Typer(help="Set, delete and describe SASL/SCRAM users.", no_args_is_help=True)
app.add_typer(user_app, name="user")

MECHANISM_HELP = f"{' or '.join(SCRAM_MECHANISMS)}."


def _mechanism(name: str) -> str:
    upper = name.upper()
    if upper not in SCRAM_MECHANISMS:
        raise typer.BadParameter(f"--mechanism wants {MECHANISM_HELP[:-1]}, got {name!r}")
    return upper


async def alter_users(bootstrap: str, request: p.AlterUserScramCredentialsRequest) -> None:
    async with connect(bootstrap) as conn:
        version = conn.version_for(p.ApiKey.ALTER_USER_SCRAM_CREDENTIALS, (0, 0))
        answer: Any = await conn.request(p.ApiKey.ALTER_USER_SCRAM_CREDENTIALS, version, request)
    for result in answer.results:
        raise_for_code(result.error_code, f"user {result.user!r}", result.error_message)


async def describe_users(bootstrap: str) -> list[tuple[str, list[tuple[str, int]]]]:
    async with connect(bootstrap) as conn:
        version = conn.version_for(p.ApiKey.DESCRIBE_USER_SCRAM_CREDENTIALS, (0, 0))
        answer: Any = await conn.request(
            p.ApiKey.DESCRIBE_USER_SCRAM_CREDENTIALS,
            version,
            p.DescribeUserScramCredentialsRequest(),
        )
    raise_for_code(answer.error_code, "cannot describe users", answer.error_message)
    names = {number: name for name, (number, _) in SCRAM_MECHANISMS.items()}
    return [
        (
            r.user,
            [(names.get(c.mechanism, str(c.mechanism)), c.iterations) for c in r.credential_infos],
        )
        for r in answer.results
    ]


@user_app.command("set")
def set_command(
    name: str,
    password: str | None = typer.Option(
        None,
        "--password",
        envvar="QUORUMQ_USER_PASSWORD",
        help="The new password (or QUORUMQ_USER_PASSWORD; prompted for when neither is given).",
    ),
    mechanism: str = typer.Option(SCRAM_SHA_512, "--mechanism", help=MECHANISM_HELP),
    iterations: int = typer.Option(
        8192, "--iterations", min=MIN_ITERATIONS, max=MAX_ITERATIONS, help="SCRAM iterations."
    ),
    bootstrap: str = typer.Option(DEFAULT_BOOTSTRAP, "--bootstrap", "-b", help=BOOTSTRAP_HELP),
) -> None:
    """Create a user, or change its password, for one SCRAM mechanism (PLAIN logins are
    checked against any of the user's credentials)."""
    mechanism = _mechanism(mechanism)
    if password is None:
        password = typer.prompt("password", hide_input=True, confirmation_prompt=True)
    if not password:
        raise typer.BadParameter("the password is empty")
    salt = secrets.token_bytes(32)
    upsertion = p.ScramCredentialUpsertion(
        name=name,
        mechanism=SCRAM_MECHANISMS[mechanism][0],
        iterations=iterations,
        salt=salt,
        salted_password=salted_password(mechanism, password, salt, iterations),
    )
    run_trio(alter_users, bootstrap, p.AlterUserScramCredentialsRequest(upsertions=[upsertion]))
    Console().print(f"set the {mechanism} credential of {name}")


@user_app.command("delete")
def delete_command(
    name: str,
    mechanism: str = typer.Option(SCRAM_SHA_512, "--mechanism", help=MECHANISM_HELP),
    bootstrap: str = typer.Option(DEFAULT_BOOTSTRAP, "--bootstrap", "-b", help=BOOTSTRAP_HELP),
) -> None:
    """Delete a user's credential for one SCRAM mechanism."""
    mechanism = _mechanism(mechanism)
    deletion = p.ScramCredentialDeletion(name=name, mechanism=SCRAM_MECHANISMS[mechanism][0])
    run_trio(alter_users, bootstrap, p.AlterUserScramCredentialsRequest(deletions=[deletion]))
    Console().print(f"deleted the {mechanism} credential of {name}")


@user_app.command("describe")
def describe_command(
    bootstrap: str = typer.Option(DEFAULT_BOOTSTRAP, "--bootstrap", "-b", help=BOOTSTRAP_HELP),
) -> None:
    """List users and their SCRAM mechanisms (never salts or keys)."""
    users = run_trio(describe_users, bootstrap)
    if not users:
        Console().print("no SCRAM users")
        return
    table = Table(title="SCRAM users")
    table.add_column("user")
    table.add_column("mechanisms (iterations)")
    for user, mechanisms in users:
        table.add_row(user, ", ".join(f"{m} ({i})" for m, i in mechanisms))
    Console().print(table)
