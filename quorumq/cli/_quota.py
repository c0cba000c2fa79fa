"""``quorumq quota set|remove|describe``: client byte-rate quotas, over the Kafka protocol
(AlterClientQuotas / DescribeClientQuotas), as ``kafka-configs.sh --entity-type clients``
does. A cluster keeps them in its metadata log; a single broker in its data dir."""

from __future__ import annotations

from typing import Any

import typer
from rich.console import Console
from rich.table import Table

from quorumq import protocol as p
from quorumq.cli._app import app
from quorumq.cli._broker import run_trio
from quorumq.cli._topic import BOOTSTRAP_HELP, DEFAULT_BOOTSTRAP, connect, raise_for_code
from quorumq.security import (
    CONSUMER_BYTE_RATE,
    PRODUCER_BYTE_RATE,
    QuotaTable,
    describe_entity,
    quota_entity,
)

quota_app = typer.Typer(
    help="Set, remove and describe client byte-rate quotas.", no_args_is_help=True
)
app.add_typer(quota_app, name="quota")

DEFAULT = "<default>"
ENTITY_HELP = f"A client id, or {DEFAULT} for every client id without a quota of its own."
USER_HELP = f"A user (ANONYMOUS until authentication exists), or {DEFAULT}."


def _pairs(client_id: str | None, user: str | None) -> list[tuple[str, str | None]]:
    pairs: list[tuple[str, str | None]] = []
    for kind, name in (("client-id", client_id), ("user", user)):
        if name is not None:
            pairs.append((kind, None if name == DEFAULT else name))
    if not pairs:
        raise typer.BadParameter("name an entity: --client-id and/or --user")
    return pairs


async def alter_quotas(
    bootstrap: str, pairs: list[tuple[str, str | None]], ops: list[p.AlterClientQuotasOp]
) -> None:
    """One AlterClientQuotas entry; raises the entry's error."""
    entity = quota_entity(pairs)  # the same check the broker makes, before any connection
    request = p.AlterClientQuotasRequest(
        entries=[
            p.AlterClientQuotasEntry(
                entity=[p.QuotaEntityData(entity_type=k, entity_name=n) for k, n in entity],
                ops=ops,
            )
        ]
    )
    async with connect(bootstrap) as conn:
        version = conn.version_for(p.ApiKey.ALTER_CLIENT_QUOTAS, (0, 1))
        answer = await conn.request(p.ApiKey.ALTER_CLIENT_QUOTAS, version, request)
    for entry in answer.entries:
        raise_for_code(entry.error_code, "cannot alter the quota", entry.error_message)


async def describe_quotas(bootstrap: str) -> QuotaTable:
    """Every configured quota, as the broker answering sees them."""
    async with connect(bootstrap) as conn:
        version = conn.version_for(p.ApiKey.DESCRIBE_CLIENT_QUOTAS, (0, 1))
        answer: Any = await conn.request(
            p.ApiKey.DESCRIBE_CLIENT_QUOTAS, version, p.DescribeClientQuotasRequest()
        )
    raise_for_code(answer.error_code, "cannot describe quotas", answer.error_message)
    return QuotaTable(
        {
            quota_entity((e.entity_type, e.entity_name) for e in entry.entity): {
                v.key: v.value for v in entry.values
            }
            for entry in answer.entries or ()
        }
    )


@quota_app.command("set")
def set_command(
    client_id: str | None = typer.Option(None, "--client-id", help=ENTITY_HELP),
    user: str | None = typer.Option(None, "--user", help=USER_HELP),
    producer_byte_rate: float | None = typer.Option(
        None, "--producer-byte-rate", min=1, help="Bytes/s a producer may send."
    ),
    consumer_byte_rate: float | None = typer.Option(
        None, "--consumer-byte-rate", min=1, help="Bytes/s a consumer may fetch."
    ),
    bootstrap: str = typer.Option(DEFAULT_BOOTSTRAP, "--bootstrap", "-b", help=BOOTSTRAP_HELP),
) -> None:
    """Set a producer and/or consumer byte rate for a client id, a user, or both."""
    ops = [
        p.AlterClientQuotasOp(key=key, value=value)
        for key, value in (
            (PRODUCER_BYTE_RATE, producer_byte_rate),
            (CONSUMER_BYTE_RATE, consumer_byte_rate),
        )
        if value is not None
    ]
    if not ops:
        raise typer.BadParameter("give --producer-byte-rate and/or --consumer-byte-rate")
    run_trio(alter_quotas, bootstrap, _pairs(client_id, user), ops)
    Console().print(
        f"set {', '.join(op.key for op in ops)} of {describe_entity(quota_entity(_pairs(client_id, user)))}"
    )


@quota_app.command("remove")
def remove_command(
    client_id: str | None = typer.Option(None, "--client-id", help=ENTITY_HELP),
    user: str | None = typer.Option(None, "--user", help=USER_HELP),
    bootstrap: str = typer.Option(DEFAULT_BOOTSTRAP, "--bootstrap", "-b", help=BOOTSTRAP_HELP),
) -> None:
    """Remove every quota of a client id, a user, or both."""
    ops = [
        p.AlterClientQuotasOp(key=k, remove=True) for k in (PRODUCER_BYTE_RATE, CONSUMER_BYTE_RATE)
    ]
    pairs = _pairs(client_id, user)
    run_trio(alter_quotas, bootstrap, pairs, ops)
    Console().print(f"removed the quotas of {describe_entity(quota_entity(pairs))}")


@quota_app.command("describe")
def describe_command(
    bootstrap: str = typer.Option(DEFAULT_BOOTSTRAP, "--bootstrap", "-b", help=BOOTSTRAP_HELP),
) -> None:
    """Show every configured quota."""
    quotas = run_trio(describe_quotas, bootstrap)
    table = Table(title="client quotas (bytes/s)")
    table.add_column("entity")
    table.add_column(PRODUCER_BYTE_RATE, justify="right")
    table.add_column(CONSUMER_BYTE_RATE, justify="right")
    for entity, values in quotas.entries.items():
        row = [values.get(k) for k in (PRODUCER_BYTE_RATE, CONSUMER_BYTE_RATE)]
        table.add_row(describe_entity(entity), *("" if v is None else f"{v:,.0f}" for v in row))
    Console().print(table if quotas else "no client quotas")
