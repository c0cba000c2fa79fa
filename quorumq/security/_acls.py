"""ACLs: who may do what to which resource, with Kafka's rules (``StandardAuthorizer``).

An ACL binding is (resource type, resource name, pattern type, principal, host, operation,
permission), with Kafka's numbers for each enum, so the same values travel in CreateAcls, the
metadata log and the authorizer. Pure: the broker's shell asks :meth:`Authorizer.authorize`
with the request's principal and host.

The rules, as Kafka's:

- A super user may do everything.
- An ACL applies to a resource when its pattern is LITERAL and names the resource or ``*``,
  or PREFIXED and the resource's name starts with it; to a principal when it names the
  principal or ``User:*``; to a host when it names it or ``*``.
- A DENY that applies wins over any ALLOW.
- ALL allows (or denies) every operation. READ, WRITE, DELETE and ALTER each imply DESCRIBE,
  and ALTER_CONFIGS implies DESCRIBE_CONFIGS.
- With no ACL at all on the resource, the answer is ``allow_everyone_if_no_acl_found``
  (false by default, as in Kafka).
"""

from __future__ import annotations

import enum
from collections.abc import Iterable

import attrs

from quorumq.errors import InvalidRequest


class ResourceType(enum.IntEnum):
    UNKNOWN = 0
    ANY = 1
    TOPIC = 2
    GROUP = 3
    CLUSTER = 4
    TRANSACTIONAL_ID = 5


class PatternType(enum.IntEnum):
    UNKNOWN = 0
    ANY = 1
    MATCH = 2
    LITERAL = 3
    PREFIXED = 4


class AclOperation(enum.IntEnum):
    UNKNOWN = 0
    ANY = 1
    ALL = 2
    READ = 3
    WRITE = 4
    CREATE = 5
    DELETE = 6
    ALTER = 7
    DESCRIBE = 8
    CLUSTER_ACTION = 9
    DESCRIBE_CONFIGS = 10
    ALTER_CONFIGS = 11
    IDEMPOTENT_WRITE = 12


class AclPermission(enum.IntEnum):
    UNKNOWN = 0
    ANY = 1
    DENY = 2
    ALLOW = 3


CLUSTER_NAME = "kafka-cluster"
"""The one CLUSTER resource's name, as in Kafka."""
WILDCARD = "*"

_IMPLIED_BY: dict[AclOperation, tuple[AclOperation, ...]] = {
    AclOperation.DESCRIBE: (
        AclOperation.DESCRIBE,
        AclOperation.READ,
        AclOperation.WRITE,
        AclOperation.DELETE,
        AclOperation.ALTER,
    ),
    AclOperation.DESCRIBE_CONFIGS: (AclOperation.DESCRIBE_CONFIGS, AclOperation.ALTER_CONFIGS),
}

_CONCRETE_TYPES = (
    ResourceType.TOPIC,
    ResourceType.GROUP,
    ResourceType.CLUSTER,
    ResourceType.TRANSACTIONAL_ID,
)


@attrs.frozen
class AclBinding:
    """One ACL (Kafka's AclBinding: a resource pattern and an access control entry)."""

    resource_type: ResourceType = attrs.field(converter=ResourceType)
    resource_name: str
    pattern_type: PatternType = attrs.field(converter=PatternType)
    principal: str
    host: str
    operation: AclOperation = attrs.field(converter=AclOperation)
    permission: AclPermission = attrs.field(converter=AclPermission)

    def applies_to(self, resource_type: ResourceType, name: str) -> bool:
        if self.resource_type != resource_type:
            return False
        if self.pattern_type == PatternType.LITERAL:
            return self.resource_name in (name, WILDCARD)
        return name.startswith(self.resource_name)

    def describe(self) -> str:
        return (
            f"{self.permission.name} {self.principal} {self.operation.name} on "
            f"{self.resource_type.name}:{self.pattern_type.name}:{self.resource_name} "
            f"from {self.host}"
        )


def acl_binding(
    resource_type: int,
    resource_name: str,
    pattern_type: int,
    principal: str,
    host: str,
    operation: int,
    permission: int,
) -> AclBinding:
    """Checks a CreateAcls entry as Kafka does and builds its binding.

    Raises:
        InvalidRequest: an unknown or non-concrete enum value (ANY, MATCH, UNKNOWN), a
            principal that is not ``User:<name>``, an empty name or host, or a CLUSTER
            resource not named ``kafka-cluster``.
    """
    try:
        rtype, ptype = ResourceType(resource_type), PatternType(pattern_type)
        op, perm = AclOperation(operation), AclPermission(permission)
    except ValueError as exc:
        raise InvalidRequest(f"unknown ACL value: {exc}") from None
    if rtype not in _CONCRETE_TYPES:
        raise InvalidRequest(f"an ACL needs a concrete resource type, not {rtype.name}")
    if ptype not in (PatternType.LITERAL, PatternType.PREFIXED):
        raise InvalidRequest(f"an ACL needs a LITERAL or PREFIXED pattern, not {ptype.name}")
    if op in (AclOperation.ANY, AclOperation.UNKNOWN):
        raise InvalidRequest(f"an ACL needs a concrete operation, not {op.name}")
    if perm not in (AclPermission.ALLOW, AclPermission.DENY):
        raise InvalidRequest(f"an ACL needs ALLOW or DENY, not {perm.name}")
    kind, sep, name = principal.partition(":")
    if kind != "User" or not sep or not name:
        raise InvalidRequest(f"a principal is User:<name> or User:*, not {principal!r}")
    if not resource_name or not host:
        raise InvalidRequest("an ACL names a resource and a host (* for any)")
    if rtype == ResourceType.CLUSTER and resource_name != CLUSTER_NAME:
        raise InvalidRequest(f"the cluster resource is named {CLUSTER_NAME!r}")
    if ptype == PatternType.PREFIXED and resource_name == WILDCARD:
        raise InvalidRequest("a PREFIXED pattern of '*' is not allowed (use LITERAL '*')")
    return AclBinding(rtype, resource_name, ptype, principal, host, op, perm)


@attrs.frozen
class AclFilter:
    """DescribeAcls' and DeleteAcls' filter: ANY (or None for names) matches everything; a
    MATCH pattern matches every ACL that would apply to the named resource."""

    resource_type: int
    resource_name: str | None
    pattern_type: int
    principal: str | None
    host: str | None
    operation: int
    permission: int

    def check(self) -> None:
        """Raises InvalidRequest for UNKNOWN or out-of-range values (Kafka's answer)."""
        try:
            values = (
                ResourceType(self.resource_type),
                PatternType(self.pattern_type),
                AclOperation(self.operation),
                AclPermission(self.permission),
            )
        except ValueError as exc:
            raise InvalidRequest(f"unknown ACL filter value: {exc}") from None
        if any(v == 0 for v in values):
            raise InvalidRequest("an ACL filter has an UNKNOWN value")

    def matches(self, acl: AclBinding) -> bool:
        if self.resource_type != ResourceType.ANY and acl.resource_type != self.resource_type:
            return False
        if self.principal is not None and acl.principal != self.principal:
            return False
        if self.host is not None and acl.host != self.host:
            return False
        if self.operation != AclOperation.ANY and acl.operation != self.operation:
            return False
        if self.permission != AclPermission.ANY and acl.permission != self.permission:
            return False
        if self.pattern_type == PatternType.MATCH:
            if self.resource_name is None:
                return True
            return acl.applies_to(acl.resource_type, self.resource_name)
        if self.pattern_type != PatternType.ANY and acl.pattern_type != self.pattern_type:
            return False
        return self.resource_name is None or acl.resource_name == self.resource_name


@attrs.frozen
class Authorizer:
    """Decides each request from the current ACLs (immutable: a change is a new one)."""

    acls: frozenset[AclBinding] = attrs.field(default=frozenset(), converter=frozenset)
    super_users: frozenset[str] = attrs.field(default=frozenset(), converter=frozenset)
    allow_everyone_if_no_acl_found: bool = False
    _by_literal: dict[tuple[ResourceType, str], list[AclBinding]] = attrs.field(
        init=False, eq=False, repr=False
    )
    _by_type: dict[ResourceType, list[AclBinding]] = attrs.field(init=False, eq=False, repr=False)

    def __attrs_post_init__(self) -> None:
        # An index, so that a check looks at the ACLs of its resource, not at every ACL.
        by_literal: dict[tuple[ResourceType, str], list[AclBinding]] = {}
        by_type: dict[ResourceType, list[AclBinding]] = {}
        for acl in self.acls:
            if acl.pattern_type == PatternType.LITERAL and acl.resource_name != WILDCARD:
                by_literal.setdefault((acl.resource_type, acl.resource_name), []).append(acl)
            else:
                by_type.setdefault(acl.resource_type, []).append(acl)
        object.__setattr__(self, "_by_literal", by_literal)
        object.__setattr__(self, "_by_type", by_type)

    def authorize(
        self,
        principal: str,
        host: str,
        operation: AclOperation,
        resource_type: ResourceType,
        name: str,
    ) -> bool:
        if principal in self.super_users:
            return True
        found_any = False
        allowed = False
        allowing = _IMPLIED_BY.get(operation, (operation,))
        candidates = self._by_literal.get((resource_type, name), [])
        others = self._by_type.get(resource_type, [])
        for acl in (*candidates, *others):
            if not acl.applies_to(resource_type, name):
                continue
            found_any = True
            if acl.principal not in (principal, "User:*") or acl.host not in (host, WILDCARD):
                continue
            if acl.permission == AclPermission.DENY:
                if acl.operation in (operation, AclOperation.ALL):
                    return False
            elif acl.operation == AclOperation.ALL or acl.operation in allowing:
                allowed = True
        if not found_any:
            return self.allow_everyone_if_no_acl_found
        return allowed

    def allows_any(
        self, principal: str, host: str, operation: AclOperation, resource_type: ResourceType
    ) -> bool:
        """Whether ``operation`` is allowed on some resource of this type (Kafka's
        ``authorizeByResourceType``, which KIP-679 uses for idempotent producers): an ALLOW
        that applies to the principal, and no DENY of the operation on every resource."""
        if principal in self.super_users:
            return True
        allowing = _IMPLIED_BY.get(operation, (operation,))
        allowed = False
        any_of_type = False
        for acl in self._by_type.get(resource_type, []) + [
            a for k, v in self._by_literal.items() if k[0] == resource_type for a in v
        ]:
            any_of_type = True
            if acl.principal not in (principal, "User:*") or acl.host not in (host, WILDCARD):
                continue
            if acl.permission == AclPermission.DENY:
                everywhere = (
                    acl.pattern_type == PatternType.LITERAL and acl.resource_name == WILDCARD
                )
                if everywhere and acl.operation in (operation, AclOperation.ALL):
                    return False
            elif acl.operation == AclOperation.ALL or acl.operation in allowing:
                allowed = True
        return allowed or (not any_of_type and self.allow_everyone_if_no_acl_found)

    def with_acls(self, acls: Iterable[AclBinding]) -> Authorizer:
        return attrs.evolve(self, acls=frozenset(acls))
