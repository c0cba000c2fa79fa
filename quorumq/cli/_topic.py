"""``quorumq topic create|alter|list|describe|delete``: topic administration over the Kafka protocol."""

from __future__ import annotations

import contextlib
import os
import ssl
from collections.abc import AsyncIterator
from pathlib import Path

import typer
from rich.console import Console
from rich.table import Table

from quorumq import protocol as p
from quorumq._tls import client_context
from quorumq.cli._app import app
from quorumq.cli._broker import run_trio
from quorumq.client import Admin
from quorumq.client._connection import Connection, SaslConfig, open_connection, split_host_port
from quorumq.client._metadata import parse_bootstrap
from quorumq.errors import ErrorCode, QuorumqError, error_for_code

topic_app = typer.Typer(
    help="Create, alter, list, describe and delete topics.", no_args_is_help=True
)
app.add_typer(topic_app, name="topic")

BOOTSTRAP_HELP = "HOST:PORT of a broker."
DEFAULT_BOOTSTRAP = "127.0.0.1:9092"


def raise_for_code(code: int, what: str, message: str | None = None) -> None:
    """Raises the QuorumqError for a Kafka error code (nothing for NONE); its name prints."""
    if code == 0:
        return
    try:
        error_code = ErrorCode(code)
    except ValueError:
        error_code = ErrorCode.UNKNOWN_SERVER_ERROR
    exc = error_for_code(code)(f"{what}: {message}" if message else what)
    if type(exc).code != error_code:
        exc.code = error_code  # type: ignore[misc]  # a code with no class of its own
    raise exc


@contextlib.asynccontextmanager
async def connect(bootstrap: str) -> AsyncIterator[Connection]:
    """A connection to ``bootstrap`` (ConnectionError in one line when nobody answers)."""
    try:
        host, port = split_host_port(bootstrap)
    except ValueError:
        raise typer.BadParameter(f"--bootstrap wants HOST:PORT, got {bootstrap!r}") from None
    async with open_connection(
        host, port, client_id="quorumq-cli", sasl=sasl_from_env(), ssl_context=ssl_from_env()
    ) as conn:
        yield conn


def admin(bootstrap: str) -> Admin:
    """The client's :class:`~quorumq.client.Admin` on ``bootstrap``, logged in and speaking TLS
    from the environment as :func:`connect` does."""
    try:
        parse_bootstrap(bootstrap)
    except ValueError:
        raise typer.BadParameter(f"--bootstrap wants HOST:PORT, got {bootstrap!r}") from None
    return Admin(
        bootstrap, client_id="quorumq-cli", sasl=sasl_from_env(), ssl_context=ssl_from_env()
    )


def ssl_from_env() -> ssl.SSLContext | None:
    """The CLI's TLS, for an SSL or SASL_SSL listener: ``QUORUMQ_SSL_CAFILE`` (the CA the
    broker's certificate chains to), and ``QUORUMQ_SSL_CERTFILE`` / ``QUORUMQ_SSL_KEYFILE``
    for a listener that wants a client certificate. None: plain TCP.

    Raises:
        InvalidConfig: a file that is missing or not PEM (one line).
    """
    cafile = os.environ.get("QUORUMQ_SSL_CAFILE")
    certfile = os.environ.get("QUORUMQ_SSL_CERTFILE")
    if not cafile and not certfile:
        return None
    keyfile = os.environ.get("QUORUMQ_SSL_KEYFILE")
    return client_context(
        Path(cafile) if cafile else None,
        Path(certfile) if certfile else None,
        Path(keyfile) if keyfile else None,
    )


def sasl_from_env() -> SaslConfig | None:
    """The CLI's SASL login, from ``QUORUMQ_SASL_USERNAME`` / ``QUORUMQ_SASL_PASSWORD`` (and
    ``QUORUMQ_SASL_MECHANISM``, SCRAM-SHA-512 by default): kept out of argv, where other
    users of the machine could read the password."""
    username = os.environ.get("QUORUMQ_SASL_USERNAME")
    if not username:
        return None
    mechanism = os.environ.get("QUORUMQ_SASL_MECHANISM", "SCRAM-SHA-512")
    return SaslConfig(mechanism, username, os.environ.get("QUORUMQ_SASL_PASSWORD", ""))


async def fetch_metadata(conn: Connection, topics: list[str] | None, auto_create: bool) -> object:
    version = conn.version_for(p.ApiKey.METADATA, (4, 8))
    request = p.MetadataRequest(
        topics=None if topics is None else [p.MetadataRequestTopic(name=t) for t in topics],
        allow_auto_topic_creation=auto_create,
    )
    return await conn.request(p.ApiKey.METADATA, version, request)


def _parse_configs(pairs: list[str]) -> dict[str, str]:
    out: dict[str, str] = {}
    for pair in pairs:
        key, sep, value = pair.partition("=")
        if not sep or not key:
            raise typer.BadParameter(f"--config wants KEY=VALUE, got {pair!r}")
        out[key.strip()] = value.strip()
    return out


@topic_app.command("create")
def create(
    name: str,
    partitions: int = typer.Option(1, "--partitions", "-p", help="Number of partitions."),
    replication_factor: int = typer.Option(1, "--replication-factor", "-r"),
    config: list[str] = typer.Option([], "--config", "-c", help="Topic config KEY=VALUE."),
    bootstrap: str = typer.Option(DEFAULT_BOOTSTRAP, "--bootstrap", "-b", help=BOOTSTRAP_HELP),
) -> None:
    """Create a topic."""
    configs = _parse_configs(config)

    async def main() -> None:
        async with connect(bootstrap) as conn:
            version = conn.version_for(p.ApiKey.CREATE_TOPICS, (0, 4))
            request = p.CreateTopicsRequest(
                topics=[
                    p.CreatableTopic(
                        name=name,
                        num_partitions=partitions,
                        replication_factor=replication_factor,
                        configs=[
                            p.CreatableTopicConfig(name=k, value=v) for k, v in configs.items()
                        ],
                    )
                ],
                timeout_ms=30_000,
            )
            response = await conn.request(p.ApiKey.CREATE_TOPICS, version, request)
            result = response.topics[0]
            raise_for_code(result.error_code, f"cannot create topic {name!r}", result.error_message)

    run_trio(main)
    Console().print(f"created topic [bold]{name}[/bold] with {partitions} partition(s)")


@topic_app.command("alter")
def alter(
    name: str,
    config: list[str] = typer.Option(
        [], "--config", "-c", help="Set a topic config KEY=VALUE; repeatable."
    ),
    delete_config: list[str] = typer.Option(
        [], "--delete-config", "-d", help="Return a topic config KEY to its default; repeatable."
    ),
    partitions: int | None = typer.Option(
        None,
        "--partitions",
        "-p",
        min=1,
        help="Grow the topic to this many partitions (keys then hash to other partitions).",
    ),
    bootstrap: str = typer.Option(DEFAULT_BOOTSTRAP, "--bootstrap", "-b", help=BOOTSTRAP_HELP),
) -> None:
    """Change some of a topic's configs (IncrementalAlterConfigs; the others stay), or add
    partitions (CreatePartitions)."""
    configs = _parse_configs(config)
    if not configs and not delete_config and partitions is None:
        raise typer.BadParameter(
            "nothing to change: give --config, --delete-config or --partitions"
        )

    async def main() -> None:
        async with admin(bootstrap) as client:
            if partitions is not None:
                await client.create_partitions(name, partitions)
            if configs or delete_config:
                await client.alter_topic_configs(name, configs, delete=delete_config)

    run_trio(main)
    if partitions is not None:
        Console().print(f"topic [bold]{name}[/bold] now has {partitions} partition(s)")
    if configs or delete_config:
        Console().print(f"altered the configs of topic [bold]{name}[/bold]")


@topic_app.command("delete-records")
def delete_records(
    name: str,
    before: int = typer.Option(
        ..., "--before", min=-1, help="Delete every record below this offset (-1: all committed)."
    ),
    partition: list[int] = typer.Option(
        [], "--partition", "-p", help="Only this partition; repeatable (default: all)."
    ),
    bootstrap: str = typer.Option(DEFAULT_BOOTSTRAP, "--bootstrap", "-b", help=BOOTSTRAP_HELP),
) -> None:
    """Delete the records below an offset (DeleteRecords, as kafka-delete-records does): each
    partition's leader moves its log start there once its in-sync followers have too."""

    async def main() -> dict[int, int]:
        async with admin(bootstrap) as client:
            wanted = partition or range((await client.metadata.topic(name)).num_partitions)
            return await client.delete_records(name, dict.fromkeys(wanted, before))

    low = run_trio(main)
    table = Table("partition", "log start offset")
    for index, offset in sorted(low.items()):
        table.add_row(str(index), str(offset))
    Console().print(table)


@topic_app.command("delete")
def delete(
    name: str,
    bootstrap: str = typer.Option(DEFAULT_BOOTSTRAP, "--bootstrap", "-b", help=BOOTSTRAP_HELP),
) -> None:
    """Delete a topic and its data."""

    async def main() -> None:
        async with connect(bootstrap) as conn:
            version = conn.version_for(p.ApiKey.DELETE_TOPICS, (1, 3))
            response = await conn.request(
                p.ApiKey.DELETE_TOPICS,
                version,
                p.DeleteTopicsRequest(topic_names=[name], timeout_ms=30_000),
            )
            raise_for_code(response.responses[0].error_code, f"cannot delete topic {name!r}")

    run_trio(main)
    Console().print(f"deleted topic [bold]{name}[/bold]")


@topic_app.command("list")
def list_topics(
    bootstrap: str = typer.Option(DEFAULT_BOOTSTRAP, "--bootstrap", "-b", help=BOOTSTRAP_HELP),
) -> None:
    """List topics with their partition counts."""

    async def main() -> object:
        async with connect(bootstrap) as conn:
            return await fetch_metadata(conn, None, auto_create=False)

    metadata = run_trio(main)
    table = Table("topic", "partitions")
    for topic in sorted(metadata.topics, key=lambda t: t.name or ""):  # type: ignore[attr-defined]
        table.add_row(topic.name, str(len(topic.partitions)))
    Console().print(table)


@topic_app.command("describe")
def describe(
    name: str,
    bootstrap: str = typer.Option(DEFAULT_BOOTSTRAP, "--bootstrap", "-b", help=BOOTSTRAP_HELP),
) -> None:
    """Show a topic's partitions (leader, epoch, replicas, ISR) and its configs."""

    async def main() -> tuple[object, object]:
        async with connect(bootstrap) as conn:
            metadata = await fetch_metadata(conn, [name], auto_create=False)
            topic = metadata.topics[0]  # type: ignore[attr-defined]
            raise_for_code(topic.error_code, f"cannot describe topic {name!r}")
            version = conn.version_for(p.ApiKey.DESCRIBE_CONFIGS, (0, 2))
            configs = await conn.request(
                p.ApiKey.DESCRIBE_CONFIGS,
                version,
                p.DescribeConfigsRequest(
                    resources=[p.DescribeConfigsResource(resource_type=2, resource_name=name)]
                ),
            )
            result = configs.results[0]
            raise_for_code(result.error_code, f"cannot describe configs of {name!r}")
            return topic, result

    topic, result = run_trio(main)
    console = Console()
    table = Table("partition", "leader", "leader epoch", "replicas", "isr", title=name)
    for part in sorted(topic.partitions, key=lambda x: x.partition_index):  # type: ignore[attr-defined]
        table.add_row(
            str(part.partition_index),
            str(part.leader_id),
            str(part.leader_epoch),
            ",".join(map(str, part.replica_nodes)),
            ",".join(map(str, part.isr_nodes)),
        )
    console.print(table)
    configs = Table("config", "value", "source")
    for entry in result.configs:  # type: ignore[attr-defined]
        default = entry.is_default or entry.config_source == 5
        configs.add_row(entry.name, entry.value or "", "default" if default else "topic")
    console.print(configs)


_ = QuorumqError
