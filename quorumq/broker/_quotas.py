"""Client quotas in the broker: DescribeClientQuotas / AlterClientQuotas, the single broker's
quota file, and the throttle a produce or consumer fetch earns (``quorumq.security``).

A throttled request is answered at once with ``throttle_time_ms`` set, and its connection reads
nothing more until the throttle has passed (KIP-219: clients that know the field back off by
themselves; the muting holds back the ones that do not).
"""

from __future__ import annotations

import json
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import Any

import attrs

from quorumq import protocol as p
from quorumq.errors import ErrorCode, InvalidRequest, KafkaStorageError, QuorumqError
from quorumq.security import (
    ANONYMOUS,
    CONSUMER_BYTE_RATE,
    PRODUCER_BYTE_RATE,
    QuotaEntity,
    QuotaTable,
    QuotaTracker,
    check_quota_value,
    quota_entity,
)

QUOTAS_FILE = "client_quotas.json"
"""A single broker's quotas, under ``<data_dir>/meta`` (a cluster keeps them in its image)."""

QuotaChange = tuple[QuotaEntity, dict[str, float], tuple[str, ...]]
"""One AlterClientQuotas entry, checked: (entity, values to set, keys to remove)."""


def load_quotas(data_dir: Path) -> QuotaTable:
    """The single broker's quota file (none yet: no quotas).

    Raises:
        KafkaStorageError: the file exists but does not parse.
    """
    path = Path(data_dir) / "meta" / QUOTAS_FILE
    if not path.exists():
        return QuotaTable()
    try:
        raw = json.loads(path.read_bytes())
        entries = {}
        for item in raw["quotas"]:
            entity = quota_entity((kind, name) for kind, name in item["entity"])
            values = {str(k): float(v) for k, v in item["values"].items()}
            for key, value in values.items():
                check_quota_value(key, value)
            entries[entity] = values
    except (ValueError, KeyError, TypeError, QuorumqError) as exc:
        raise KafkaStorageError(f"cannot read {path}: {exc}") from exc
    return QuotaTable(entries)


def save_quotas(data_dir: Path, table: QuotaTable) -> None:
    """Writes the quota file atomically (an acknowledged AlterClientQuotas survives a crash)."""
    from quorumq.broker._topics import _write_atomically

    raw = {
        "quotas": [
            {"entity": [list(pair) for pair in entity], "values": dict(sorted(values.items()))}
            for entity, values in sorted(table.entries.items(), key=lambda kv: json.dumps(kv[0]))
        ]
    }
    path = Path(data_dir) / "meta" / QUOTAS_FILE
    _write_atomically(path, json.dumps(raw, indent=1, sort_keys=True).encode())


def _entity_data(entity: QuotaEntity) -> list[p.QuotaEntityData]:
    return [p.QuotaEntityData(entity_type=kind, entity_name=name) for kind, name in entity]


def describe_client_quotas(table: QuotaTable, request: Any) -> p.DescribeClientQuotasResponse:
    """DescribeClientQuotas from ``table``; a bad filter answers INVALID_REQUEST as Kafka does."""
    try:
        found = list(
            table.matching(
                ((c.entity_type, c.match_type, c.match) for c in request.components),
                strict=request.strict,
            )
        )
    except InvalidRequest as exc:
        return p.DescribeClientQuotasResponse(
            error_code=int(exc.code), error_message=str(exc), entries=None
        )
    return p.DescribeClientQuotasResponse(
        entries=[
            p.DescribeClientQuotasEntry(
                entity=_entity_data(entity),
                values=[p.QuotaValueData(key=k, value=v) for k, v in sorted(values.items())],
            )
            for entity, values in found
        ]
    )


def check_alter_entries(
    request: Any,
) -> list[tuple[Any, QuotaChange | None, QuorumqError | None]]:
    """Checks each AlterClientQuotas entry on its own (an entry's error fails only that entry,
    as in Kafka): (the entry, its change or None, its error or None)."""
    checked: list[tuple[Any, QuotaChange | None, QuorumqError | None]] = []
    for entry in request.entries:
        try:
            entity = quota_entity((e.entity_type, e.entity_name) for e in entry.entity)
            set_values: dict[str, float] = {}
            remove: list[str] = []
            seen: set[str] = set()
            for op in entry.ops:
                if op.key in seen:
                    raise InvalidRequest(f"quota key {op.key!r} appears twice in one entry")
                seen.add(op.key)
                if op.remove:
                    check_quota_value(op.key, 1.0)
                    remove.append(op.key)
                else:
                    check_quota_value(op.key, op.value)
                    set_values[op.key] = op.value
            checked.append((entry, (entity, set_values, tuple(remove)), None))
        except QuorumqError as exc:
            checked.append((entry, None, exc))
    return checked


def alter_result(
    entry: Any, error: BaseException | None, code: int = 0
) -> p.AlterClientQuotasResult:
    """One entry of the AlterClientQuotas answer."""
    if error is not None and not code:
        code = (
            int(error.code) if isinstance(error, QuorumqError) else ErrorCode.UNKNOWN_SERVER_ERROR
        )
    return p.AlterClientQuotasResult(
        error_code=code,
        error_message=None if error is None else (str(error) or None),
        entity=list(entry.entity),
    )


def apply_changes(table: QuotaTable, changes: Iterable[QuotaChange]) -> QuotaTable:
    for entity, set_values, remove in changes:
        table = table.altered(entity, set_values, remove)
    return table


@attrs.define(eq=False)
class Throttler:
    """The broker's side of quotas: counts a client's bytes and says how long to throttle.

    ``table`` is replaced as quotas change (the image's, or the single broker's file); with no
    quota configured nothing is counted at all.
    """

    table: QuotaTable = attrs.Factory(QuotaTable)
    tracker: QuotaTracker = attrs.Factory(QuotaTracker)
    _recorded: int = 0

    def throttle_ms(
        self, key: str, user: str | None, client_id: str | None, size: int, now_ms: int
    ) -> int:
        """Counts ``size`` bytes of ``key`` for this client (``user`` None: not logged in);
        the throttle it earned (0: none)."""
        found = self.table.quota_for(key, user or ANONYMOUS, client_id or "")
        if found is None:
            return 0
        bound, group = found
        self._recorded += 1
        if self._recorded % 4096 == 0:
            self.tracker.forget_idle(now_ms)
        return self.tracker.record(key, group, bound, size, now_ms)


def throttled_encoder(
    throttler: Throttler,
    header: p.RequestHeader,
    user: str | None,
    produce_throttle_ms: int | None,
    now_ms: Callable[[], int],
    mute: Callable[[int], None],
) -> Callable[[Any], Any]:
    """Encodes a produce or consumer-fetch answer with its throttle, and mutes the connection.

    A produce's throttle is known on arrival (``produce_throttle_ms``, from the request's size);
    a fetch's only once its answer is built, from the bytes it returns.
    """

    def encode(response: Any) -> Any:
        if produce_throttle_ms is not None:
            throttle = produce_throttle_ms
        else:
            buffers = p.encode_response(header, response)
            size = sum(len(b) for b in buffers)
            throttle = throttler.throttle_ms(
                CONSUMER_BYTE_RATE, user, header.client_id, size, now_ms()
            )
            if not throttle:
                return buffers
        if throttle:
            mute(throttle)
            response = attrs.evolve(response, throttle_time_ms=throttle)
        return p.encode_response(header, response)

    return encode


def produce_throttle_ms(
    throttler: Throttler,
    header: p.RequestHeader,
    user: str | None,
    frame_size: int,
    now_ms: int,
) -> int:
    """The throttle a produce request of ``frame_size`` bytes earns."""
    return throttler.throttle_ms(PRODUCER_BYTE_RATE, user, header.client_id, frame_size, now_ms)


def mute_deadline(now: float, throttle_ms: int) -> float:
    """The trio time until which a throttled connection reads nothing."""
    return now + throttle_ms / 1000
