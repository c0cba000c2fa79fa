"""``quorumq acl add|remove|list``: ACLs over the Kafka protocol (CreateAcls, DeleteAcls,
DescribeAcls), as ``kafka-acls.sh`` does. Brokers enforce them when started with
``--authorizer``."""

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
    CLUSTER_NAME,
    AclOperation,
    AclPermission,
    PatternType,
    ResourceType,
)

acl_app = typer.Typer(help="Add, remove and list ACLs.", no_args_is_help=True)
app.add_typer(acl_app, name="acl")

OPERATIONS = [op.name for op in AclOperation if op not in (AclOperation.UNKNOWN, AclOperation.ANY)]
RESOURCE_HELP = "Exactly one of --topic, --group, --cluster."
OPERATION_HELP = f"{', '.join(OPERATIONS)}; repeatable."


def _resource(
    topic: str | None, group: str | None, cluster: bool, prefixed: bool, *, any_ok: bool
) -> tuple[int, str | None, int]:
    chosen = [(ResourceType.TOPIC, topic), (ResourceType.GROUP, group)]
    named = [(t, n) for t, n in chosen if n is not None]
    if cluster:
        named.append((ResourceType.CLUSTER, CLUSTER_NAME))
    if len(named) > 1:
        raise typer.BadParameter(RESOURCE_HELP)
    if not named:
        if any_ok:
            return int(ResourceType.ANY), None, int(PatternType.ANY)
        raise typer.BadParameter(RESOURCE_HELP)
    rtype, name = named[0]
    if prefixed and rtype == ResourceType.CLUSTER:
        raise typer.BadParameter("--prefixed names topics or groups, not the cluster")
    pattern = PatternType.PREFIXED if prefixed else PatternType.LITERAL
    return int(rtype), name, int(pattern)


def _operation(name: str) -> int:
    try:
        op = AclOperation[name.upper()]
    except KeyError:
        raise typer.BadParameter(
            f"--operation wants one of {', '.join(OPERATIONS)}, got {name!r}"
        ) from None
    if op.name not in OPERATIONS:
        raise typer.BadParameter(f"--operation wants one of {', '.join(OPERATIONS)}")
    return int(op)


async def _request(bootstrap: str, api_key: p.ApiKey, body: Any) -> Any:
    async with connect(bootstrap) as conn:
        version = conn.version_for(api_key, (1, 3))
        return await conn.request(api_key, version, body)


def _principal(principal: str) -> str:
    if not principal.startswith("User:") or principal == "User:":
        raise typer.BadParameter(f"--principal wants User:NAME or User:*, got {principal!r}")
    return principal


@acl_app.command("add")
def add_command(
    principal: str = typer.Option(..., "--principal", help="User:NAME, or User:* for everyone."),
    operation: list[str] = typer.Option(..., "--operation", help=OPERATION_HELP),
    topic: str | None = typer.Option(None, "--topic", help="A topic (* for every topic)."),
    group: str | None = typer.Option(None, "--group", help="A consumer group (* for every group)."),
    cluster: bool = typer.Option(False, "--cluster", help="The cluster itself."),
    prefixed: bool = typer.Option(False, "--prefixed", help="The name is a prefix."),
    deny: bool = typer.Option(False, "--deny", help="A DENY ACL (DENY wins over ALLOW)."),
    host: str = typer.Option("*", "--host", help="Only from this address (* for any)."),
    bootstrap: str = typer.Option(DEFAULT_BOOTSTRAP, "--bootstrap", "-b", help=BOOTSTRAP_HELP),
) -> None:
    """Allow (or, with --deny, forbid) operations on a resource for a principal."""
    rtype, name, pattern = _resource(topic, group, cluster, prefixed, any_ok=False)
    creations = [
        p.AclCreation(
            resource_type=rtype,
            resource_name=name or "",
            resource_pattern_type=pattern,
            principal=_principal(principal),
            host=host,
            operation=_operation(op),
            permission_type=int(AclPermission.DENY if deny else AclPermission.ALLOW),
        )
        for op in operation
    ]
    answer = run_trio(
        _request, bootstrap, p.ApiKey.CREATE_ACLS, p.CreateAclsRequest(creations=creations)
    )
    for result in answer.results:
        raise_for_code(result.error_code, "cannot add the ACL", result.error_message)
    Console().print(f"added {len(creations)} ACL(s)")


def _filter(
    principal: str | None,
    operation: str | None,
    topic: str | None,
    group: str | None,
    cluster: bool,
    prefixed: bool,
) -> dict[str, Any]:
    rtype, name, pattern = _resource(topic, group, cluster, prefixed, any_ok=True)
    return {
        "resource_type_filter": rtype,
        "resource_name_filter": name,
        "pattern_type_filter": pattern,
        "principal_filter": None if principal is None else _principal(principal),
        "host_filter": None,
        "operation": int(AclOperation.ANY) if operation is None else _operation(operation),
        "permission_type": int(AclPermission.ANY),
    }


@acl_app.command("remove")
def remove_command(
    principal: str | None = typer.Option(None, "--principal", help="Only this principal's."),
    operation: str | None = typer.Option(None, "--operation", help="Only this operation's."),
    topic: str | None = typer.Option(None, "--topic"),
    group: str | None = typer.Option(None, "--group"),
    cluster: bool = typer.Option(False, "--cluster"),
    prefixed: bool = typer.Option(False, "--prefixed"),
    bootstrap: str = typer.Option(DEFAULT_BOOTSTRAP, "--bootstrap", "-b", help=BOOTSTRAP_HELP),
) -> None:
    """Remove every ACL that matches (all of a resource's, or only a principal's or an
    operation's)."""
    if principal is None and topic is None and group is None and not cluster:
        raise typer.BadParameter(
            "name a --principal or a resource: removing every ACL is not a default"
        )
    body = p.DeleteAclsRequest(
        filters=[
            p.DeleteAclsFilter(**_filter(principal, operation, topic, group, cluster, prefixed))
        ]
    )
    answer = run_trio(_request, bootstrap, p.ApiKey.DELETE_ACLS, body)
    removed = 0
    for result in answer.filter_results:
        raise_for_code(result.error_code, "cannot remove ACLs", result.error_message)
        for acl in result.matching_acls:
            raise_for_code(acl.error_code, "cannot remove an ACL", acl.error_message)
            removed += 1
    Console().print(f"removed {removed} ACL(s)")


@acl_app.command("list")
def list_command(
    principal: str | None = typer.Option(None, "--principal"),
    topic: str | None = typer.Option(None, "--topic"),
    group: str | None = typer.Option(None, "--group"),
    cluster: bool = typer.Option(False, "--cluster"),
    bootstrap: str = typer.Option(DEFAULT_BOOTSTRAP, "--bootstrap", "-b", help=BOOTSTRAP_HELP),
) -> None:
    """List ACLs (those that apply to a named resource, prefixes and * included)."""
    fields = _filter(principal, None, topic, group, cluster, False)
    if fields["resource_name_filter"] is not None:
        fields["pattern_type_filter"] = int(PatternType.MATCH)
    answer = run_trio(_request, bootstrap, p.ApiKey.DESCRIBE_ACLS, p.DescribeAclsRequest(**fields))
    raise_for_code(answer.error_code, "cannot list ACLs", answer.error_message)
    table = Table(title="ACLs")
    for column in ("resource", "pattern", "principal", "host", "operation", "permission"):
        table.add_column(column)
    rows = 0
    for resource in answer.resources:
        for acl in resource.acls:
            rows += 1
            table.add_row(
                f"{ResourceType(resource.resource_type).name}:{resource.resource_name}",
                PatternType(resource.pattern_type).name,
                acl.principal,
                acl.host,
                AclOperation(acl.operation).name,
                AclPermission(acl.permission_type).name,
            )
    Console().print(table if rows else "no ACLs")
