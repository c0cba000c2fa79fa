"""ACLs in the broker: CreateAcls, DescribeAcls and DeleteAcls, and the single broker's ACL
file (a cluster keeps its ACLs in the metadata log). The authorizer itself is
``quorumq.security.Authorizer``; the gates that consult it are ``_authorize.py``."""

from __future__ import annotations

import json
from collections.abc import Iterable
from pathlib import Path
from typing import Any

from quorumq import protocol as p
from quorumq.errors import ErrorCode, KafkaStorageError, QuorumqError
from quorumq.security import AclBinding, AclFilter, acl_binding

ACLS_FILE = "acls.json"
SECURITY_DISABLED = int(ErrorCode.SECURITY_DISABLED)


def binding_values(acl: AclBinding) -> tuple[int, str, int, str, str, int, int]:
    return (
        int(acl.resource_type),
        acl.resource_name,
        int(acl.pattern_type),
        acl.principal,
        acl.host,
        int(acl.operation),
        int(acl.permission),
    )


def load_acls(data_dir: Path) -> frozenset[AclBinding]:
    """Raises KafkaStorageError for a file that exists but does not parse."""
    path = Path(data_dir) / "meta" / ACLS_FILE
    if not path.exists():
        return frozenset()
    try:
        return frozenset(acl_binding(*values) for values in json.loads(path.read_bytes())["acls"])
    except (ValueError, KeyError, TypeError, QuorumqError) as exc:
        raise KafkaStorageError(f"cannot read {path}: {exc}") from exc


def save_acls(data_dir: Path, acls: Iterable[AclBinding]) -> None:
    from quorumq.broker._topics import _write_atomically

    raw = {"acls": sorted(list(binding_values(a)) for a in acls)}
    _write_atomically(Path(data_dir) / "meta" / ACLS_FILE, json.dumps(raw, indent=1).encode())


def check_creations(request: Any) -> list[AclBinding | QuorumqError]:
    """Each CreateAcls entry's binding, or its error (an entry fails alone, as in Kafka)."""
    out: list[AclBinding | QuorumqError] = []
    for c in request.creations:
        try:
            out.append(
                acl_binding(
                    c.resource_type,
                    c.resource_name,
                    c.resource_pattern_type,
                    c.principal,
                    c.host,
                    c.operation,
                    c.permission_type,
                )
            )
        except QuorumqError as exc:
            out.append(exc)
    return out


def creation_results(
    checked: list[AclBinding | QuorumqError], failure: QuorumqError | None = None
) -> p.CreateAclsResponse:
    results = []
    for item in checked:
        error = item if isinstance(item, QuorumqError) else failure
        results.append(
            p.AclCreationResult(
                error_code=0 if error is None else int(error.code),
                error_message=None if error is None else str(error),
            )
        )
    return p.CreateAclsResponse(results=results)


def _filter(f: Any) -> AclFilter:
    acl_filter = AclFilter(
        f.resource_type_filter,
        f.resource_name_filter,
        f.pattern_type_filter,
        f.principal_filter,
        f.host_filter,
        f.operation,
        f.permission_type,
    )
    acl_filter.check()
    return acl_filter


def describe_acls(acls: Iterable[AclBinding], request: Any) -> p.DescribeAclsResponse:
    """DescribeAcls: the matching ACLs grouped by resource pattern."""
    try:
        acl_filter = _filter(request)
    except QuorumqError as exc:
        return p.DescribeAclsResponse(error_code=int(exc.code), error_message=str(exc))
    by_resource: dict[tuple[int, str, int], list[p.AclDescription]] = {}
    for acl in sorted(acls, key=binding_values):
        if acl_filter.matches(acl):
            key = (int(acl.resource_type), acl.resource_name, int(acl.pattern_type))
            by_resource.setdefault(key, []).append(
                p.AclDescription(
                    principal=acl.principal,
                    host=acl.host,
                    operation=int(acl.operation),
                    permission_type=int(acl.permission),
                )
            )
    return p.DescribeAclsResponse(
        resources=[
            p.DescribeAclsResource(resource_type=t, resource_name=n, pattern_type=pt, acls=found)
            for (t, n, pt), found in by_resource.items()
        ]
    )


def match_deletions(
    acls: Iterable[AclBinding], request: Any
) -> list[tuple[list[AclBinding], QuorumqError | None]]:
    """Each DeleteAcls filter's matching ACLs (or the filter's error)."""
    acls = sorted(acls, key=binding_values)
    out: list[tuple[list[AclBinding], QuorumqError | None]] = []
    for f in request.filters:
        try:
            acl_filter = _filter(f)
        except QuorumqError as exc:
            out.append(([], exc))
            continue
        out.append(([a for a in acls if acl_filter.matches(a)], None))
    return out


def deletion_results(
    matched: list[tuple[list[AclBinding], QuorumqError | None]],
    failure: QuorumqError | None = None,
) -> p.DeleteAclsResponse:
    results = []
    for found, error in matched:
        if error is not None:
            results.append(
                p.DeleteAclsFilterResult(error_code=int(error.code), error_message=str(error))
            )
            continue
        code = 0 if failure is None else int(failure.code)
        results.append(
            p.DeleteAclsFilterResult(
                matching_acls=[
                    p.DeleteAclsMatchingAcl(
                        error_code=code,
                        error_message=None if failure is None else str(failure),
                        resource_type=int(a.resource_type),
                        resource_name=a.resource_name,
                        pattern_type=int(a.pattern_type),
                        principal=a.principal,
                        host=a.host,
                        operation=int(a.operation),
                        permission_type=int(a.permission),
                    )
                    for a in found
                ]
            )
        )
    return p.DeleteAclsResponse(filter_results=results)


def security_disabled(api_key: int, request: Any) -> Any:
    """The answer of an ACL API on a broker without an authorizer (Kafka's SECURITY_DISABLED)."""
    message = "no authorizer is configured (start the broker with --authorizer)"
    if api_key == p.ApiKey.DESCRIBE_ACLS:
        return p.DescribeAclsResponse(error_code=SECURITY_DISABLED, error_message=message)
    if api_key == p.ApiKey.CREATE_ACLS:
        return p.CreateAclsResponse(
            results=[
                p.AclCreationResult(error_code=SECURITY_DISABLED, error_message=message)
                for _ in request.creations
            ]
        )
    return p.DeleteAclsResponse(
        filter_results=[
            p.DeleteAclsFilterResult(error_code=SECURITY_DISABLED, error_message=message)
            for _ in request.filters
        ]
    )
