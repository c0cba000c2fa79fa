"""The metadata log's byte format: versioned JSON objects, never pickle.

A record is one compact JSON object ``{"type": "PartitionChange", "v": 1, ...fields}`` (UTF-8,
sorted keys, so equal records give equal bytes). ``v`` is the record type's schema version: the
encoder writes :data:`RECORD_VERSIONS`, the decoder reads every version listed in
:data:`READABLE_VERSIONS`, so a newer quorumq replays an older journal or snapshot. A version newer
than this code knows is refused (a mixed-version cluster must upgrade readers first).

History:
    BrokerHeartbeat v1: broker_id, broker_epoch, now_ms (liveness only).
    BrokerHeartbeat v2: + reports (per replica: last leader epoch, LEO and the current leader
        epoch the broker knew, for quorum elections).
    RecordBatch v1: the Raft entry (records in order; see :func:`encode_batches`). Journals
        written before it hold one record per entry, which :func:`decode_entry` still reads.
    MetadataImage v1: the snapshot format (see :func:`encode_image`), with each broker's
        last_heartbeat_ms and replica reports.
    MetadataImage v2: brokers carry registered_ms and no reports (heartbeats left Raft for the
        active controller's memory); v1 is read with its last heartbeat as the registration time
        and its reports dropped (the controller waits for fresh ones).
    BrokerHeartbeat records are still read (old journals) but no longer written.
    MetadataImage v3: + client_quotas (entity pairs and values), scram_credentials (bytes in
        base64) and acls (seven-value lists); v1 and v2 are read with none of them.
    Every other record: v1.

Decoding failures raise :class:`CorruptRecord`: bytes that are not JSON, an unknown type, a
missing field, a value of the wrong type.
"""

from __future__ import annotations

import base64
import binascii
import json
from collections.abc import Callable, Mapping, Sequence
from typing import Any

import attrs

from quorumq.errors import CorruptRecord
from quorumq.security import AclBinding, QuotaTable, ScramCredential

from ._image import BrokerState, MetadataImage, PartitionState, TopicState
from ._records import (
    AlterPartition,
    BrokerHeartbeat,
    ClientQuotaChange,
    ConfigChange,
    ControllerEpochBump,
    CreateAcl,
    CreatePartitions,
    CreateTopic,
    DeleteAcl,
    DeleteTopic,
    FenceBroker,
    MetadataRecord,
    PartitionChange,
    RegisterBroker,
    RemoveUserScramCredential,
    ReplicaReport,
    UnfenceBroker,
    UserScramCredential,
)

# --- field kinds ---------------------------------------------------------------------------------


def _bad(what: str) -> CorruptRecord:
    return CorruptRecord(f"metadata record: {what}")


def _int(value: Any) -> int:
    if isinstance(value, bool) or not isinstance(value, int):
        raise _bad(f"expected an integer, got {value!r}")
    return value


def _str(value: Any) -> str:
    if not isinstance(value, str):
        raise _bad(f"expected a string, got {value!r}")
    return value


def _list(value: Any) -> list[Any]:
    if not isinstance(value, list):
        raise _bad(f"expected a list, got {value!r}")
    return value


def _optional(kind: Callable[[Any], Any]) -> Callable[[Any], Any]:
    return lambda value: None if value is None else kind(value)


def _ints(value: Any) -> tuple[int, ...]:
    return tuple(_int(v) for v in _list(value))


def _int_lists(value: Any) -> tuple[tuple[int, ...], ...]:
    return tuple(_ints(v) for v in _list(value))


def _strs(value: Any) -> tuple[str, ...]:
    return tuple(_str(v) for v in _list(value))


def _configs(value: Any) -> dict[str, str]:
    if not isinstance(value, dict):
        raise _bad(f"expected an object of configs, got {value!r}")
    return {_str(k): _str(v) for k, v in value.items()}


def _float(value: Any) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise _bad(f"expected a number, got {value!r}")
    return float(value)


def _b64(value: Any) -> bytes:
    try:
        return base64.b64decode(_str(value), validate=True)
    except (binascii.Error, ValueError):
        raise _bad(f"expected base64 bytes, got {value!r}") from None


def _entity(value: Any) -> tuple[tuple[str, str | None], ...]:
    pairs = []
    for pair in _list(value):
        if len(_list(pair)) != 2:
            raise _bad(f"expected an [entity type, name] pair, got {pair!r}")
        pairs.append((_str(pair[0]), _optional(_str)(pair[1])))
    return tuple(pairs)


def _quota_values(value: Any) -> tuple[tuple[str, float], ...]:
    pairs = []
    for pair in _list(value):
        if len(_list(pair)) != 2:
            raise _bad(f"expected a [key, value] pair, got {pair!r}")
        pairs.append((_str(pair[0]), _float(pair[1])))
    return tuple(pairs)


def _report(value: Any) -> ReplicaReport:
    fields = _object(
        value,
        ("topic", "partition", "last_leader_epoch", "log_end_offset", "current_leader_epoch"),
    )
    return ReplicaReport(
        topic=_str(fields["topic"]),
        partition=_int(fields["partition"]),
        last_leader_epoch=_int(fields["last_leader_epoch"]),
        log_end_offset=_int(fields["log_end_offset"]),
        current_leader_epoch=_int(fields["current_leader_epoch"]),
    )


def _endpoints(value: Any) -> tuple[tuple[str, str, int], ...]:
    endpoints = []
    for entry in _list(value):
        if len(_list(entry)) != 3:
            raise _bad(f"expected a [listener, host, port] triple, got {entry!r}")
        endpoints.append((_str(entry[0]), _str(entry[1]), _int(entry[2])))
    return tuple(endpoints)


def _reports(value: Any) -> tuple[ReplicaReport, ...]:
    return tuple(_report(v) for v in _list(value))


def _object(value: Any, required: tuple[str, ...]) -> dict[str, Any]:
    if not isinstance(value, dict):
        raise _bad(f"expected an object, got {type(value).__name__}")
    missing = [name for name in required if name not in value]
    if missing:
        raise _bad(f"missing fields {missing}")
    return value


# --- schemas -------------------------------------------------------------------------------------

_Schema = dict[str, Callable[[Any], Any]]

_ACL_FIELDS: _Schema = {
    "resource_type": _int,
    "resource_name": _str,
    "pattern_type": _int,
    "principal": _str,
    "host": _str,
    "operation": _int,
    "permission": _int,
}

_SCHEMAS: dict[type, dict[int, _Schema]] = {
    RegisterBroker: {
        1: {
            "broker_id": _int,
            "incarnation_id": _str,
            "host": _str,
            "port": _int,
            "now_ms": _int,
            "rack": _optional(_str),
        },
        2: {
            "broker_id": _int,
            "incarnation_id": _str,
            "host": _str,
            "port": _int,
            "now_ms": _int,
            "rack": _optional(_str),
            "listeners": _endpoints,
        },
    },
    BrokerHeartbeat: {
        1: {"broker_id": _int, "broker_epoch": _int, "now_ms": _int},
        2: {
            "broker_id": _int,
            "broker_epoch": _int,
            "now_ms": _int,
            "reports": _optional(_reports),
        },
    },
    FenceBroker: {1: {"broker_id": _int, "broker_epoch": _int, "controller_epoch": _int}},
    UnfenceBroker: {1: {"broker_id": _int, "broker_epoch": _int, "controller_epoch": _int}},
    CreateTopic: {
        1: {"name": _str, "topic_id": _str, "assignments": _int_lists, "configs": _configs}
    },
    CreatePartitions: {
        1: {"name": _str, "topic_id": _str, "first_partition": _int, "assignments": _int_lists}
    },
    DeleteTopic: {1: {"name": _str, "topic_id": _optional(_str)}},
    ConfigChange: {1: {"topic": _str, "set_configs": _configs, "delete_keys": _strs}},
    AlterPartition: {
        1: {
            "topic": _str,
            "topic_id": _str,
            "partition": _int,
            "leader_id": _int,
            "leader_epoch": _int,
            "partition_epoch": _int,
            "new_isr": _ints,
        }
    },
    PartitionChange: {
        1: {
            "topic": _str,
            "topic_id": _str,
            "partition": _int,
            "leader_epoch": _int,
            "partition_epoch": _int,
            "controller_epoch": _int,
            "new_leader": _int,
            "new_isr": _optional(_ints),
            "new_replicas": _optional(_ints),
        }
    },
    ControllerEpochBump: {1: {"controller_id": _int, "controller_epoch": _int, "now_ms": _int}},
    CreateAcl: {1: _ACL_FIELDS},
    DeleteAcl: {1: _ACL_FIELDS},
    UserScramCredential: {
        1: {
            "user": _str,
            "mechanism": _str,
            "salt": _b64,
            "iterations": _int,
            "stored_key": _b64,
            "server_key": _b64,
        }
    },
    RemoveUserScramCredential: {1: {"user": _str, "mechanism": _str}},
    ClientQuotaChange: {1: {"entity": _entity, "set_values": _quota_values, "remove_keys": _strs}},
}

RECORD_VERSIONS: Mapping[str, int] = {cls.__name__: max(v) for cls, v in _SCHEMAS.items()}
"""The version each record type is written at."""

READABLE_VERSIONS: Mapping[str, tuple[int, ...]] = {
    cls.__name__: tuple(sorted(v)) for cls, v in _SCHEMAS.items()
}
"""Every version of each record type this code decodes."""

_BY_NAME: dict[str, type] = {cls.__name__: cls for cls in _SCHEMAS}


def _plain(value: Any) -> Any:
    """attrs values, tuples and config pairs → JSON-ready objects."""
    if attrs.has(type(value)):
        return {f.name: _plain(getattr(value, f.name)) for f in attrs.fields(type(value))}
    if isinstance(value, tuple):
        return [_plain(v) for v in value]
    if isinstance(value, bytes):
        return base64.b64encode(value).decode()
    return value


def record_to_dict(record: MetadataRecord) -> dict[str, Any]:
    """The JSON object of ``record`` at its current version (``type`` and ``v`` included)."""
    cls = type(record)
    if cls not in _SCHEMAS:
        raise TypeError(f"not a metadata record: {cls.__name__}")  # a bug, not bad input
    out: dict[str, Any] = {"type": cls.__name__, "v": RECORD_VERSIONS[cls.__name__]}
    for field in attrs.fields(cls):
        value = getattr(record, field.name)
        if field.name in ("configs", "set_configs"):
            out[field.name] = dict(value)
        else:
            out[field.name] = _plain(value)
    return out


def encode_record(record: MetadataRecord) -> bytes:
    """The bytes of ``record`` for the metadata log (deterministic: sorted keys, compact)."""
    return json.dumps(record_to_dict(record), sort_keys=True, separators=(",", ":")).encode()


def record_from_dict(obj: Any) -> MetadataRecord:
    """Builds a record from its JSON object, at any readable version.

    Raises:
        CorruptRecord: unknown type or version, missing or mistyped fields.
    """
    fields = _object(obj, ("type", "v"))
    name, version = fields["type"], fields["v"]
    cls = _BY_NAME.get(name) if isinstance(name, str) else None
    if cls is None:
        raise _bad(f"unknown record type {name!r}")
    schema = _SCHEMAS[cls].get(version) if isinstance(version, int) else None
    if schema is None:
        raise _bad(f"{name} version {version!r} is not one of {READABLE_VERSIONS[name]}")
    _object(fields, tuple(schema))
    kwargs = {key: kind(fields[key]) for key, kind in schema.items()}
    try:
        record: MetadataRecord = cls(**kwargs)
    except (TypeError, ValueError) as exc:  # pragma: no cover - schemas mirror the classes
        raise _bad(f"{name}: {exc}") from exc
    return record


def decode_record(data: bytes) -> MetadataRecord:
    """Parses bytes written by :func:`encode_record` (this or any older version).

    Raises:
        CorruptRecord: not UTF-8 JSON, or not a record this code can read.
    """
    try:
        obj = json.loads(data)
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise _bad(f"not JSON ({exc})") from exc
    return record_from_dict(obj)


# --- Raft entries: record batches ---------------------------------------------------------------

BATCH_VERSION = 1
MAX_ENTRY_BYTES = 48 * 1024
"""The most bytes :func:`encode_batches` puts in one entry (a single larger record gets an
entry of its own). Below pysyncobj's 64 KiB append-message batch, so an entry never travels in
chunks (``AppendDeduplicator`` leaves chunked messages alone)."""


def encode_batches(records: Sequence[MetadataRecord]) -> list[tuple[int, bytes]]:
    """Packs ``records``, in order, into Raft entries of at most :data:`MAX_ENTRY_BYTES`:
    ``(how many records, entry bytes)`` per entry. An entry is
    ``{"records": [...], "type": "RecordBatch", "v": 1}`` and applies its records in order,
    each exactly as if it were alone.

    Why batches: every entry costs pysyncobj an append message and a journal fsync on each
    follower. A failover's tick of 2,000 PartitionChange records as 2,000 entries took 4.2 s to
    commit (docs/benchmarks.md, tenth session); as 42 entries it takes a small fraction of that.
    """
    head, tail = b'{"records":[', b'],"type":"RecordBatch","v":%d}' % BATCH_VERSION
    entries: list[tuple[int, bytes]] = []
    parts: list[bytes] = []
    size = len(head) + len(tail) - 1  # the first part has no comma before it

    def flush() -> None:
        entries.append((len(parts), head + b",".join(parts) + tail))

    for record in records:
        part = encode_record(record)
        if parts and size + len(part) + 1 > MAX_ENTRY_BYTES:
            flush()
            parts, size = [], len(head) + len(tail) - 1
        parts.append(part)
        size += len(part) + 1
    if parts:
        flush()
    return entries


def decode_entry(data: bytes) -> tuple[MetadataRecord, ...]:
    """The records of one Raft entry: a record batch, or (journals written before batches) a
    single record.

    Raises:
        CorruptRecord: not an entry this code can read (a batch in a batch included).
    """
    try:
        obj = json.loads(data)
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise _bad(f"not JSON ({exc})") from exc
    if isinstance(obj, dict) and obj.get("type") == "RecordBatch":
        fields = _object(obj, ("v", "records"))
        if fields["v"] != BATCH_VERSION:
            raise _bad(f"RecordBatch version {fields['v']!r} is not {BATCH_VERSION}")
        return tuple(record_from_dict(r) for r in _list(fields["records"]))
    return (record_from_dict(obj),)


# --- image snapshots -----------------------------------------------------------------------------

IMAGE_VERSION = 4
READABLE_IMAGE_VERSIONS = (1, 2, 3, 4)


def image_to_dict(image: MetadataImage) -> dict[str, Any]:
    """The JSON object of a whole image (the snapshot body)."""
    brokers = []
    for broker_id in sorted(image.brokers):
        b = image.brokers[broker_id]
        brokers.append(
            {
                "broker_id": b.broker_id,
                "incarnation_id": b.incarnation_id,
                "host": b.host,
                "port": b.port,
                "rack": b.rack,
                "broker_epoch": b.broker_epoch,
                "fenced": b.fenced,
                "registered_ms": b.registered_ms,
                "listeners": _plain(b.listeners),
            }
        )
    topics = []
    for name in sorted(image.topics):
        t = image.topics[name]
        partitions = []
        for index in sorted(t.partitions):
            p = t.partitions[index]
            partitions.append(
                {
                    "partition": index,
                    "leader": p.leader,
                    "leader_epoch": p.leader_epoch,
                    "partition_epoch": p.partition_epoch,
                    "replicas": list(p.replicas),
                    "isr": list(p.isr),
                }
            )
        topics.append(
            {
                "name": t.name,
                "topic_id": t.topic_id,
                "configs": dict(sorted(t.configs.items())),
                "partitions": partitions,
            }
        )
    return {
        "type": "MetadataImage",
        "v": IMAGE_VERSION,
        "brokers": brokers,
        "topics": topics,
        "controller_id": image.controller_id,
        "controller_epoch": image.controller_epoch,
        "controller_epoch_start_ms": image.controller_epoch_start_ms,
        "last_broker_epoch": image.last_broker_epoch,
        "record_count": image.record_count,
        "scram_credentials": credentials_to_json(image.scram_credentials),
        "acls": sorted(
            [
                int(a.resource_type),
                a.resource_name,
                int(a.pattern_type),
                a.principal,
                a.host,
                int(a.operation),
                int(a.permission),
            ]
            for a in image.acls
        ),
        "client_quotas": [
            {"entity": _plain(entity), "values": sorted([k, v] for k, v in values.items())}
            for entity, values in sorted(
                image.client_quotas.entries.items(), key=lambda kv: json.dumps(kv[0])
            )
        ],
    }


def _bool(value: Any) -> bool:
    if not isinstance(value, bool):
        raise _bad(f"expected a boolean, got {value!r}")
    return value


def image_from_dict(obj: Any) -> MetadataImage:
    """Builds an image from :func:`image_to_dict` output.

    Raises:
        CorruptRecord: not an image, an unknown version, missing or mistyped fields.
    """
    top = _object(
        obj,
        (
            "type",
            "v",
            "brokers",
            "topics",
            "controller_id",
            "controller_epoch",
            "controller_epoch_start_ms",
            "last_broker_epoch",
            "record_count",
        ),
    )
    version = top["v"]
    if top["type"] != "MetadataImage" or version not in READABLE_IMAGE_VERSIONS:
        raise _bad(f"not a MetadataImage v1-v{IMAGE_VERSION}: {top['type']!r} v{version!r}")
    brokers: dict[int, BrokerState] = {}
    for raw in _list(top["brokers"]):
        b = _object(
            raw,
            ("broker_id", "incarnation_id", "host", "port", "rack", "broker_epoch", "fenced"),
        )
        if version == 1:
            _object(b, ("last_heartbeat_ms", "reports"))
            for entry in _list(b["reports"]):
                if len(_list(entry)) != 5:
                    raise _bad(
                        "a replica report is [topic, partition, last leader epoch, LEO, current "
                        f"leader epoch], got {entry!r}"
                    )
            registered_ms = _int(b["last_heartbeat_ms"])
        else:
            registered_ms = _int(_object(b, ("registered_ms",))["registered_ms"])
        state = BrokerState(
            broker_id=_int(b["broker_id"]),
            incarnation_id=_str(b["incarnation_id"]),
            host=_str(b["host"]),
            port=_int(b["port"]),
            rack=_optional(_str)(b["rack"]),
            broker_epoch=_int(b["broker_epoch"]),
            fenced=_bool(b["fenced"]),
            registered_ms=registered_ms,
            listeners=_endpoints(_object(b, ("listeners",))["listeners"]) if version >= 4 else (),
        )
        brokers[state.broker_id] = state
    topics: dict[str, TopicState] = {}
    for raw in _list(top["topics"]):
        t = _object(raw, ("name", "topic_id", "configs", "partitions"))
        partitions: dict[int, PartitionState] = {}
        for praw in _list(t["partitions"]):
            p = _object(
                praw,
                ("partition", "leader", "leader_epoch", "partition_epoch", "replicas", "isr"),
            )
            partitions[_int(p["partition"])] = PartitionState(
                leader=_int(p["leader"]),
                leader_epoch=_int(p["leader_epoch"]),
                partition_epoch=_int(p["partition_epoch"]),
                replicas=_ints(p["replicas"]),
                isr=_ints(p["isr"]),
            )
        name = _str(t["name"])
        topics[name] = TopicState(name, _str(t["topic_id"]), _configs(t["configs"]), partitions)
    return MetadataImage(
        brokers=brokers,
        topics=topics,
        controller_id=_int(top["controller_id"]),
        controller_epoch=_int(top["controller_epoch"]),
        controller_epoch_start_ms=_int(top["controller_epoch_start_ms"]),
        last_broker_epoch=_int(top["last_broker_epoch"]),
        record_count=_int(top["record_count"]),
        client_quotas=_client_quotas(top.get("client_quotas", []) if version >= 3 else []),
        scram_credentials=credentials_from_json(
            top.get("scram_credentials", []) if version >= 3 else []
        ),
        acls=_acls(top.get("acls", []) if version >= 3 else []),
    )


def _acls(value: Any) -> frozenset[AclBinding]:
    out = set()
    for raw in _list(value):
        fields = _list(raw)
        if len(fields) != 7:
            raise _bad(f"expected an ACL of seven values, got {raw!r}")
        rtype, name, ptype, principal, host, op, perm = fields
        try:
            out.add(
                AclBinding(
                    _int(rtype),
                    _str(name),
                    _int(ptype),
                    _str(principal),
                    _str(host),
                    _int(op),
                    _int(perm),
                )
            )
        except ValueError as exc:
            raise _bad(f"unknown ACL values {raw!r}: {exc}") from None
    return frozenset(out)


def credentials_to_json(credentials: Mapping[tuple[str, str], ScramCredential]) -> list[Any]:
    """SCRAM credentials as JSON (bytes in base64): in snapshots and a single broker's file."""
    return [
        {"user": user, "mechanism": mechanism, **_plain(credential)}
        for (user, mechanism), credential in sorted(credentials.items())
    ]


def credentials_from_json(value: Any) -> dict[tuple[str, str], ScramCredential]:
    """Raises CorruptRecord for anything but :func:`credentials_to_json` output."""
    out = {}
    for raw in _list(value):
        c = _object(raw, ("user", "mechanism", "salt", "iterations", "stored_key", "server_key"))
        out[(_str(c["user"]), _str(c["mechanism"]))] = ScramCredential(
            _b64(c["salt"]), _int(c["iterations"]), _b64(c["stored_key"]), _b64(c["server_key"])
        )
    return out


def _client_quotas(value: Any) -> QuotaTable:
    entries = {}
    for raw in _list(value):
        q = _object(raw, ("entity", "values"))
        entries[_entity(q["entity"])] = dict(_quota_values(q["values"]))
    return QuotaTable(entries)


def encode_image(image: MetadataImage) -> bytes:
    """A snapshot of the whole image (deterministic bytes: equal images, equal bytes)."""
    return json.dumps(image_to_dict(image), sort_keys=True, separators=(",", ":")).encode()


def decode_image(data: bytes) -> MetadataImage:
    """Parses :func:`encode_image` output.

    Raises:
        CorruptRecord: not UTF-8 JSON or not a readable image.
    """
    try:
        obj = json.loads(data)
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise _bad(f"snapshot is not JSON ({exc})") from exc
    return image_from_dict(obj)
