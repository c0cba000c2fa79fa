"""The authorizer's rules (Kafka's StandardAuthorizer): patterns, principals, hosts, DENY
winning, implied operations, super users, the no-ACL default, and the filters."""

from __future__ import annotations

import pytest

from quorumq.errors import InvalidRequest
from quorumq.security import (
    AclBinding,
    AclFilter,
    AclOperation,
    AclPermission,
    Authorizer,
    PatternType,
    ResourceType,
    acl_binding,
)

T, G, C = ResourceType.TOPIC, ResourceType.GROUP, ResourceType.CLUSTER
L, P = PatternType.LITERAL, PatternType.PREFIXED
ALLOW, DENY = AclPermission.ALLOW, AclPermission.DENY
Op = AclOperation


def acl(
    name: str,
    op: AclOperation,
    principal: str = "User:alice",
    perm: AclPermission = ALLOW,
    pattern: PatternType = L,
    rtype: ResourceType = T,
    host: str = "*",
) -> AclBinding:
    return AclBinding(rtype, name, pattern, principal, host, op, perm)


def can(
    authorizer: Authorizer,
    op: AclOperation,
    name: str,
    principal: str = "User:alice",
    host: str = "10.0.0.1",
    rtype: ResourceType = T,
) -> bool:
    return authorizer.authorize(principal, host, op, rtype, name)


def test_literal_prefixed_and_wildcard_patterns() -> None:
    a = Authorizer(
        [acl("orders", Op.WRITE), acl("logs-", Op.READ, pattern=P), acl("*", Op.READ, "User:bob")]
    )
    assert can(a, Op.WRITE, "orders") and not can(a, Op.WRITE, "orders2")
    assert can(a, Op.READ, "logs-app") and not can(a, Op.READ, "log")
    assert can(a, Op.READ, "anything", "User:bob") and not can(a, Op.WRITE, "anything", "User:bob")
    assert not can(a, Op.READ, "orders")  # alice may write it, not read it


def test_principal_and_host_must_match() -> None:
    a = Authorizer([acl("t", Op.READ, "User:*", host="10.0.0.1"), acl("u", Op.READ)])
    assert can(a, Op.READ, "t", "User:anyone", "10.0.0.1")
    assert not can(a, Op.READ, "t", "User:anyone", "10.0.0.2")
    assert can(a, Op.READ, "u") and not can(a, Op.READ, "u", "User:bob")


def test_deny_wins_over_allow_and_all_covers_every_operation() -> None:
    a = Authorizer(
        [
            acl("t", Op.ALL),
            acl("t", Op.WRITE, perm=DENY),
            acl("secret-", Op.ALL, "User:*", DENY, P),
            acl("secret-x", Op.READ),
        ]
    )
    assert can(a, Op.READ, "t") and can(a, Op.DELETE, "t") and not can(a, Op.WRITE, "t")
    assert not can(a, Op.READ, "secret-x")


def test_describe_is_implied_by_read_write_delete_and_alter() -> None:
    for op in (Op.READ, Op.WRITE, Op.DELETE, Op.ALTER):
        assert can(Authorizer([acl("t", op)]), Op.DESCRIBE, "t"), op
    assert not can(Authorizer([acl("t", Op.CREATE)]), Op.DESCRIBE, "t")
    assert can(Authorizer([acl("t", Op.ALTER_CONFIGS)]), Op.DESCRIBE_CONFIGS, "t")
    assert not can(Authorizer([acl("t", Op.DESCRIBE)]), Op.READ, "t")
    # A DENY of READ does not deny DESCRIBE that WRITE allows.
    a = Authorizer([acl("t", Op.WRITE), acl("t", Op.READ, perm=DENY)])
    assert can(a, Op.DESCRIBE, "t") and not can(a, Op.READ, "t")


def test_super_users_and_the_no_acl_default() -> None:
    a = Authorizer([acl("t", Op.READ, "User:bob")], super_users={"User:root"})
    assert can(a, Op.ALTER, "kafka-cluster", "User:root", rtype=C)
    assert not can(a, Op.READ, "untouched")  # no ACL at all: denied by default
    assert not can(a, Op.READ, "t")  # ACLs exist, none for alice
    open_by_default = Authorizer(
        [acl("t", Op.READ, "User:bob")], allow_everyone_if_no_acl_found=True
    )
    assert can(open_by_default, Op.READ, "untouched") and not can(open_by_default, Op.READ, "t")


def test_resource_types_are_apart() -> None:
    a = Authorizer([acl("x", Op.READ, rtype=G)])
    assert can(a, Op.READ, "x", rtype=G) and not can(a, Op.READ, "x", rtype=T)


def test_filters_match_as_describe_and_delete_acls_do() -> None:
    acls = [
        acl("orders", Op.WRITE),
        acl("ord", Op.READ, pattern=P),
        acl("*", Op.DESCRIBE, "User:bob"),
        acl("g", Op.READ, rtype=G),
    ]

    def found(
        rtype: int, name: str | None, pattern: int, principal: str | None = None, op: int = 1
    ) -> set[str]:
        f = AclFilter(rtype, name, pattern, principal, None, op, 1)
        f.check()
        return {f"{a.resource_name}/{a.operation.name}" for a in acls if f.matches(a)}

    assert found(1, None, 1) == {"orders/WRITE", "ord/READ", "*/DESCRIBE", "g/READ"}
    assert found(2, "orders", 3) == {"orders/WRITE"}
    assert found(2, "orders", 2) == {"orders/WRITE", "ord/READ", "*/DESCRIBE"}  # MATCH
    assert found(2, None, 4) == {"ord/READ"}
    assert found(1, None, 1, principal="User:bob") == {"*/DESCRIBE"}
    assert found(1, None, 1, op=int(Op.READ)) == {"ord/READ", "g/READ"}
    with pytest.raises(InvalidRequest):
        AclFilter(0, None, 1, None, None, 1, 1).check()
    with pytest.raises(InvalidRequest):
        AclFilter(1, None, 9, None, None, 1, 1).check()


@pytest.mark.parametrize(
    "args",
    [
        (1, "t", 3, "User:a", "*", 3, 3),  # ANY resource type
        (2, "t", 2, "User:a", "*", 3, 3),  # MATCH pattern
        (2, "t", 3, "User:a", "*", 1, 3),  # ANY operation
        (2, "t", 3, "User:a", "*", 3, 1),  # ANY permission
        (2, "t", 3, "alice", "*", 3, 3),  # not User:
        (2, "t", 3, "Group:a", "*", 3, 3),
        (2, "", 3, "User:a", "*", 3, 3),
        (2, "t", 3, "User:a", "", 3, 3),
        (4, "other", 3, "User:a", "*", 7, 3),  # cluster resource name
        (2, "*", 4, "User:a", "*", 3, 3),  # PREFIXED *
        (9, "t", 3, "User:a", "*", 3, 3),  # unknown numbers
        (2, "t", 3, "User:a", "*", 99, 3),
    ],
)
def test_bad_acls_are_refused(args: tuple) -> None:
    with pytest.raises(InvalidRequest):
        acl_binding(*args)


def test_a_good_acl_is_built() -> None:
    built = acl_binding(4, "kafka-cluster", 3, "User:ops", "*", 7, 3)
    assert built.resource_type == C and built.operation == Op.ALTER and built.permission == ALLOW
