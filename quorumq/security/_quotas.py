"""Client byte-rate quotas, as Kafka defines them (KIP-13, KIP-55, KIP-219, KIP-546).

Two pure parts:

- :class:`QuotaTable`: which quota applies to a request, from the configured entities by
  Kafka's precedence (user and client-id, each named or ``<default>``). An entity is a sorted
  tuple of ``(entity_type, name)`` pairs, ``name`` None for the type's default:
  ``(("client-id", "app"),)``, ``(("client-id", None), ("user", "alice"))``.
- :class:`QuotaTracker`: how fast each quota group is going (Kafka's sampled ``Rate``: 11 windows
  of 1 s) and how long a request that overshoots it must be throttled.

The broker's shell records each client produce request's size and each consumer fetch
response's size, writes the throttle into the response's ``throttle_time_ms``, and stops
reading that connection for as long (KIP-219's muting). Replication traffic between brokers is
never throttled.

Without authentication every connection's user is ``ANONYMOUS``, as Kafka's PLAINTEXT
listener sees it, so user quotas (named ``ANONYMOUS`` or the user default) apply to it.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Iterator, Mapping

import attrs

from quorumq.errors import InvalidRequest

USER = "user"
CLIENT_ID = "client-id"
ENTITY_TYPES = (USER, CLIENT_ID)
"""The entity types a quota can name. Kafka's ``ip`` entity (connection-creation rate) is not
supported and is refused."""

PRODUCER_BYTE_RATE = "producer_byte_rate"
CONSUMER_BYTE_RATE = "consumer_byte_rate"
QUOTA_KEYS = (PRODUCER_BYTE_RATE, CONSUMER_BYTE_RATE)
"""The quota keys enforced (bytes per second). ``request_percentage`` and
``controller_mutation_rate`` are refused rather than accepted and ignored."""

ANONYMOUS = "ANONYMOUS"
"""The user of a connection that has not authenticated (Kafka's ``User:ANONYMOUS``)."""

QuotaEntity = tuple[tuple[str, str | None], ...]
"""Sorted ``(entity_type, name)`` pairs; ``name`` None is the type's default."""


def quota_entity(pairs: Iterable[tuple[str, str | None]]) -> QuotaEntity:
    """Checks and normalises an entity as a client sends it (any order).

    Raises:
        InvalidRequest: an unknown or repeated entity type, or no type at all (Kafka answers
            INVALID_REQUEST for each).
    """
    entity = tuple(sorted((str(kind), None if name is None else str(name)) for kind, name in pairs))
    kinds = [kind for kind, _ in entity]
    if not kinds:
        raise InvalidRequest("a quota entity needs at least one entity type")
    unknown = [kind for kind in kinds if kind not in ENTITY_TYPES]
    if unknown:
        raise InvalidRequest(f"unsupported quota entity type {unknown[0]!r}")
    if len(set(kinds)) != len(kinds):
        raise InvalidRequest("a quota entity names each entity type once")
    if any(name == "" for _, name in entity):
        raise InvalidRequest("an entity name is not empty (null names the default)")
    return entity


def check_quota_value(key: str, value: float) -> None:
    """Raises InvalidRequest for a key quorumq does not enforce or a rate that is not positive."""
    if key not in QUOTA_KEYS:
        raise InvalidRequest(f"unsupported quota key {key!r} (supported: {', '.join(QUOTA_KEYS)})")
    if not math.isfinite(value) or value <= 0:
        raise InvalidRequest(f"{key} must be a positive number of bytes per second, not {value}")


def describe_entity(entity: QuotaEntity) -> str:
    """``user=alice,client-id=<default>``: for log lines and the CLI."""
    return ",".join(f"{kind}={'<default>' if name is None else name}" for kind, name in entity)


@attrs.frozen
class QuotaTable:
    """The configured quotas: entity → {key: bytes per second}. Immutable; a change is a new
    table (the controller image holds one; a standalone broker its own)."""

    entries: Mapping[QuotaEntity, Mapping[str, float]] = attrs.field(factory=dict)

    def __bool__(self) -> bool:
        return bool(self.entries)

    def altered(
        self, entity: QuotaEntity, set_values: Mapping[str, float], remove_keys: Iterable[str]
    ) -> QuotaTable:
        """The table after one AlterClientQuotas entry (an entity left with no key goes)."""
        values = dict(self.entries.get(entity, {}))
        for key in remove_keys:
            values.pop(key, None)
        values.update(set_values)
        entries = dict(self.entries)
        if values:
            entries[entity] = values
        else:
            entries.pop(entity, None)
        return QuotaTable(entries)

    def matching(
        self, components: Iterable[tuple[str, int, str | None]], *, strict: bool
    ) -> Iterator[tuple[QuotaEntity, Mapping[str, float]]]:
        """DescribeClientQuotas' filter: ``(entity_type, match_type, match)`` components, with
        match types 0 (exactly ``match``; None is the default), 1 (the default) and 2 (any
        named entity). ``strict``: the entity has no other types.

        Raises:
            InvalidRequest: an unknown entity or match type, or a type named twice.
        """
        wanted: dict[str, tuple[int, str | None]] = {}
        for kind, match_type, match in components:
            if kind not in ENTITY_TYPES:
                raise InvalidRequest(f"unsupported quota entity type {kind!r}")
            if kind in wanted:
                raise InvalidRequest(f"entity type {kind!r} named twice")
            if match_type not in (0, 1, 2):
                raise InvalidRequest(f"unknown match type {match_type}")
            wanted[kind] = (match_type, match)
        for entity, values in sorted(self.entries.items(), key=lambda kv: _sort_key(kv[0])):
            names = dict(entity)
            if strict and set(names) != set(wanted):
                continue
            if all(kind in names and _matches(names[kind], *m) for kind, m in wanted.items()):
                yield entity, values

    def quota_for(self, key: str, user: str, client_id: str) -> tuple[float, QuotaEntity] | None:
        """The bound for ``key`` of a request from ``(user, client_id)`` and the group it is
        counted in, by Kafka's precedence (most specific first):

        user+client-id, user+default client-id, user, default user+client-id, default
        user+default client-id, default user, client-id, default client-id.

        The group is the matched entity with each default replaced by the request's own name:
        a default quota bounds each user or client-id on its own, a named one bounds all
        traffic it names together (Kafka's quota metric tags). None: no quota applies.
        """
        entries = self.entries
        if not entries:
            return None
        for entity in _precedence(user, client_id):
            values = entries.get(entity)
            if values is not None and key in values:
                names = {USER: user, CLIENT_ID: client_id}
                group = tuple((kind, names[kind]) for kind, _ in entity)
                return values[key], group
        return None


def _precedence(user: str, client_id: str) -> tuple[QuotaEntity, ...]:
    return (
        ((CLIENT_ID, client_id), (USER, user)),
        ((CLIENT_ID, None), (USER, user)),
        ((USER, user),),
        ((CLIENT_ID, client_id), (USER, None)),
        ((CLIENT_ID, None), (USER, None)),
        ((USER, None),),
        ((CLIENT_ID, client_id),),
        ((CLIENT_ID, None),),
    )


def _matches(name: str | None, match_type: int, match: str | None) -> bool:
    if match_type == 0:
        return name == match
    if match_type == 1:
        return name is None
    return name is not None


def _sort_key(entity: QuotaEntity) -> tuple[tuple[str, int, str], ...]:
    return tuple((kind, name is not None, name or "") for kind, name in entity)


@attrs.define
class _Rate:
    """Kafka's ``Rate`` over a ``SampledStat``: byte counts in ``samples`` windows."""

    starts_ms: list[int] = attrs.Factory(list)
    totals: list[float] = attrs.Factory(list)


@attrs.define
class QuotaTracker:
    """Measures each quota group's byte rate and answers how long to throttle.

    The rate is the bytes of the last ``samples`` windows over their span, and the span
    counts as at least ``samples - 1`` whole windows: a client that starts fresh may send
    about ten seconds' worth of its quota at once before it is throttled, as in Kafka. A
    request that takes the rate over the bound is throttled for as long as it takes the
    rate to come back to it: ``(rate - bound) / bound × span``, at most the whole
    ``samples × window_ms``.
    """

    window_ms: int = 1000
    samples: int = 11
    _rates: dict[tuple[str, QuotaEntity], _Rate] = attrs.Factory(dict)

    def record(self, key: str, group: QuotaEntity, bound: float, size: int, now_ms: int) -> int:
        """Counts ``size`` bytes for ``group``'s ``key`` and returns the throttle in ms."""
        rate = self._rates.get((key, group))
        if rate is None:
            rate = self._rates[(key, group)] = _Rate()
        window = self.window_ms
        if not rate.starts_ms or now_ms >= rate.starts_ms[-1] + window:
            rate.starts_ms.append(now_ms - (now_ms % window))
            rate.totals.append(0.0)
        rate.totals[-1] += size
        horizon = now_ms - self.samples * window
        while rate.starts_ms[0] <= horizon:
            del rate.starts_ms[0]
            del rate.totals[0]
        span_ms = max(now_ms - rate.starts_ms[0], (self.samples - 1) * window)
        observed = sum(rate.totals) * 1000 / span_ms
        if observed <= bound:
            return 0
        throttle = (observed - bound) / bound * span_ms
        return min(math.ceil(throttle), self.samples * window)

    def forget_idle(self, now_ms: int) -> None:
        """Drops groups with no bytes in the whole span (bounds memory to active clients)."""
        horizon = now_ms - self.samples * self.window_ms
        for k in [k for k, r in self._rates.items() if r.starts_ms[-1] <= horizon]:
            del self._rates[k]
