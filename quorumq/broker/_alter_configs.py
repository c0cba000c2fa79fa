"""AlterConfigs (33) and IncrementalAlterConfigs (44) for topics: Kafka's `kafka-configs
--alter`, and the admin clients' ``alter_configs`` / ``incremental_alter_configs``.

The rule (:func:`altered_configs`) is pure: from a topic's explicit configs and one request's
entries, the explicit configs it should have afterwards. A single broker writes them to its
topics file and hands the new log config to the partitions; a cluster proposes the difference
as a ``ConfigChange`` record, and every replica takes it from the image.

Broker resources are refused: quorumq has no dynamic broker configs (they are set at start).
"""

from __future__ import annotations

from collections.abc import Callable, Collection, Iterable, Mapping
from typing import Any

from quorumq import protocol as p
from quorumq.broker._topics import TOPIC_CONFIG_DEFS
from quorumq.errors import InvalidConfig, InvalidRequest, QuorumqError

RESOURCE_TOPIC = 2
RESOURCE_BROKER = 4
LIST_CONFIGS = frozenset({"cleanup.policy"})
"""Topic configs whose value is a list (APPEND and SUBTRACT apply only to them)."""
FIXED_AT_CREATION = frozenset({"replication.strategy"})
"""quorumq's own topic configs that cannot change once the topic exists: switching a live
partition between the quorum and ISR rules would change which replicas count as committed
under records already acknowledged."""

Change = tuple[str, int, str | None]
"""One entry: (config name, operation, value); AlterConfigs' entries are all SET."""


def altered_configs(
    current: Mapping[str, str],
    changes: Iterable[Change],
    *,
    incremental: bool,
    defaults: Mapping[str, str],
    known: Collection[str],
) -> dict[str, str]:
    """The explicit configs a topic has after ``changes``.

    AlterConfigs (``incremental`` False) replaces them all: a key not named returns to its
    default. IncrementalAlterConfigs changes only the keys it names: SET and DELETE a value,
    APPEND and SUBTRACT items of a list config (starting from its default if it has no value
    of its own), as Kafka does. The values are checked by the caller.

    Raises:
        InvalidRequest: a key named twice, an unknown operation, or no value for a SET.
        InvalidConfig: an unknown key, APPEND / SUBTRACT on a config that is not a list, or a
            change to a config fixed at creation.
    """
    changes = list(changes)
    names = [name for name, _, _ in changes]
    twice = sorted({n for n in names if names.count(n) > 1})
    if twice:
        raise InvalidRequest(f"config keys given more than once: {', '.join(twice)}")
    after = dict(current) if incremental else {}
    for name, operation, value in changes:
        if name not in known:
            raise InvalidConfig(f"unknown topic config {name!r}")
        if operation == p.CONFIG_SET:
            if value is None:
                raise InvalidRequest(f"no value for config {name!r}")
            after[name] = value
        elif operation == p.CONFIG_DELETE:
            after.pop(name, None)
        elif operation in (p.CONFIG_APPEND, p.CONFIG_SUBTRACT):
            if name not in LIST_CONFIGS:
                raise InvalidConfig(f"config {name!r} is not a list: it cannot be appended to")
            items = [x.strip() for x in after.get(name, defaults.get(name, "")).split(",")]
            items = [x for x in items if x]
            given = [x.strip() for x in (value or "").split(",") if x.strip()]
            if operation == p.CONFIG_APPEND:
                items += [x for x in given if x not in items]
            else:
                items = [x for x in items if x not in given]
            after[name] = ",".join(items)
        else:
            raise InvalidRequest(f"unknown config operation {operation} for {name!r}")
    for name in FIXED_AT_CREATION:
        if after.get(name) != current.get(name):
            raise InvalidConfig(f"{name} is chosen when a topic is created and cannot change")
    return after


def config_delta(before: Mapping[str, str], after: Mapping[str, str]) -> tuple[dict, tuple]:
    """(configs to set, keys to delete) that turn ``before`` into ``after``."""
    set_configs = {k: v for k, v in after.items() if before.get(k) != v}
    return set_configs, tuple(sorted(k for k in before if k not in after))


TOPIC_DEFAULTS: Mapping[str, str] = {k: d.default for k, d in TOPIC_CONFIG_DEFS.items()}
"""Kafka's default of each topic config (where APPEND starts from a config with no value)."""


def planned_configs(
    resource: Any, current: Mapping[str, str], *, incremental: bool, known: Collection[str]
) -> dict[str, str]:
    """The topic's explicit configs after ``resource``'s entries (:func:`altered_configs`)."""
    if incremental:
        changes = [(c.name, c.config_operation, c.value) for c in resource.configs]
    else:
        changes = [(c.name, p.CONFIG_SET, c.value) for c in resource.configs]
    return altered_configs(
        current, changes, incremental=incremental, defaults=TOPIC_DEFAULTS, known=known
    )


def resource_result(resource: Any, error: Exception | None) -> Any:
    """One resource's entry of either answer (an unexpected error is logged, as every
    handler's is)."""
    from quorumq.broker._broker import error_code_for

    code, message = 0, None
    if error is not None:
        code = error_code_for(error, f"alter the configs of {resource.resource_name!r}")
        message = (str(error) or None) if isinstance(error, QuorumqError) else "internal error"
    return p.AlterConfigsResourceResponse(
        error_code=code,
        error_message=message,
        resource_type=resource.resource_type,
        resource_name=resource.resource_name,
    )


def check_resource(resource: Any) -> None:
    """Raises for a resource that is not a topic."""
    if resource.resource_type == RESOURCE_BROKER:
        raise InvalidRequest("quorumq has no dynamic broker configs: set them when it starts")
    if resource.resource_type != RESOURCE_TOPIC:
        raise InvalidRequest(f"unsupported resource type {resource.resource_type}")


def response(incremental: bool, results: list[Any]) -> Any:
    if incremental:
        return p.IncrementalAlterConfigsResponse(responses=results)
    return p.AlterConfigsResponse(responses=results)


def single_broker_handler(broker: Any, incremental: bool) -> Callable[[Any, Any], Any]:
    """The single broker's handler: its topics file, then its partitions' logs."""

    def handle(header: p.RequestHeader, request: Any) -> Any:
        assert broker.topics is not None
        results = []
        for resource in request.resources:
            try:
                check_resource(resource)
                spec = broker.topics.get(resource.resource_name)
                after = planned_configs(
                    resource, spec.configs, incremental=incremental, known=TOPIC_CONFIG_DEFS
                )
                broker.alter_topic_configs(spec.name, after, validate_only=request.validate_only)
                results.append(resource_result(resource, None))
            except Exception as exc:  # each resource fails alone, as in Kafka
                results.append(resource_result(resource, exc))
        return response(incremental, results)

    return handle
