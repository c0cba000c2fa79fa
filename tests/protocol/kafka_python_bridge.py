"""Converts quorumq protocol values to and from kafka-python 3's independent message classes.

kafka-python 3 builds its codecs from Kafka's JSON message schemas; ours are hand-declared attrs
classes, so comparing the two byte for byte checks our schemas against Kafka's. Names differ in
a few uniform places (quorumq says ``name``/``partition_index`` everywhere): ``RENAMES`` maps them.
"""

from __future__ import annotations

import uuid
from typing import Any

import attrs
import hypothesis.strategies as st

from quorumq.protocol import ZERO_UUID
from quorumq.protocol._codec import Array, FieldSpec, Primitive

RENAMES: dict[tuple[str, str], str] = {
    ("ProduceRequest", "topics"): "topic_data",
    ("ProduceRequestTopic", "partitions"): "partition_data",
    ("ProduceRequestPartition", "partition_index"): "index",
    ("ProduceResponse", "topics"): "responses",
    ("ProduceResponseTopic", "partitions"): "partition_responses",
    ("ProduceResponsePartition", "partition_index"): "index",
    ("FetchRequestTopic", "name"): "topic",
    ("FetchRequestPartition", "partition_index"): "partition",
    ("FetchForgottenTopic", "name"): "topic",
    ("FetchResponse", "topics"): "responses",
    ("FetchResponseTopic", "name"): "topic",
    ("OffsetCommitRequest", "generation_id"): "generation_id_or_member_epoch",
    ("OffsetForLeaderTopic", "name"): "topic",
    ("OffsetForLeaderPartition", "partition_index"): "partition",
    ("OffsetForLeaderTopicResult", "name"): "topic",
    ("EpochEndOffset", "partition_index"): "partition",
    ("MetadataResponse", "cluster_authorized_operations"): "authorized_operations",
    ("MetadataResponseTopic", "topic_authorized_operations"): "authorized_operations",
}

# kafka-python decodes these int32 fields as the set of bits that are set (None for {31}).
BITFIELDS = {"authorized_operations"}


def _to_bits(value: int) -> set[int] | None:
    value &= 0xFFFFFFFF
    bits = {b for b in range(32) if value >> b & 1}
    return None if bits == {31} else bits


def _from_bits(bits: set[int] | None) -> int:
    value = sum(1 << b for b in ({31} if bits is None else bits))
    return value - (1 << 32) if value >= 1 << 31 else value


def kp_name(cls: type, name: str) -> str:
    return RENAMES.get((cls.__name__, name), name)


def _spec(field: attrs.Attribute) -> FieldSpec:  # type: ignore[type-arg]
    return field.metadata["wire"]


def _item_class(wire_type: Any) -> type | None:
    if isinstance(wire_type, Array):
        wire_type = wire_type.item
    if isinstance(wire_type, Primitive):
        return None
    return wire_type


def to_kafka_python(value: Any, kp_cls: Any, version: int) -> Any:
    """Builds the kafka-python object equal to ``value`` at ``version``."""
    kw: dict[str, Any] = {}
    kp_fields = kp_cls._struct.fields
    for field in attrs.fields(type(value)):
        spec = _spec(field)
        if not spec.present(version):
            continue
        name = kp_name(type(value), field.name)
        kp_field = kp_fields[name]
        v = getattr(value, field.name)
        if spec.tag is not None and v == field.default:
            continue  # kafka-python writes every tagged field it was given
        item = _item_class(spec.type)
        if item is not None and v is not None:
            if isinstance(spec.type, Array):
                v = [to_kafka_python(x, kp_field.data_class, version) for x in v]
            else:
                v = to_kafka_python(v, kp_field.data_class, version)
        elif spec.type == Primitive("records") and v is not None:
            v = bytes(v)
        elif name in BITFIELDS:
            v = _to_bits(v)
        kw[name] = v
    return kp_cls(**kw, version=version) if hasattr(kp_cls, "API_KEY") else kp_cls(**kw)


def from_kafka_python(obj: Any, cls: type, version: int) -> Any:
    """Builds our value equal to kafka-python's ``obj`` at ``version``."""
    kw: dict[str, Any] = {}
    for field in attrs.fields(cls):
        spec = _spec(field)
        if not spec.present(version):
            continue
        v = getattr(obj, kp_name(cls, field.name))
        if spec.tag is not None and (v is None or (field.default == () and not v)):
            kw[field.name] = field.default  # kafka-python reads an absent tagged field as None/[]
            continue
        if kp_name(cls, field.name) in BITFIELDS:
            v = _from_bits(v)
        item = _item_class(spec.type)
        if item is not None and v is not None:
            if isinstance(spec.type, Array):
                v = [from_kafka_python(x, item, version) for x in v]
            else:
                v = from_kafka_python(v, item, version)
        elif isinstance(spec.type, Array) and v is not None:
            v = list(v)
        elif spec.type in (Primitive("records"), Primitive("bytes")) and v is not None:
            v = bytes(v)
        elif spec.type == Primitive("uuid") and v is None:
            v = ZERO_UUID  # kafka-python reads the zero uuid as None
        kw[field.name] = v
    return cls(**kw)


def missing_fields(cls: type, kp_cls: Any, version: int) -> list[str]:
    """kafka-python fields present at ``version`` that our class lacks (recursively)."""
    ours = {kp_name(cls, a.name): a for a in attrs.fields(cls) if _spec(a).present(version)}
    out = []
    for name, kp_field in kp_cls._struct.fields.items():
        if not kp_field.for_version_q(version):
            continue
        if name not in ours:
            out.append(f"{cls.__name__}.{name}")
            continue
        item = _item_class(_spec(ours[name]).type)
        if item is not None:
            out.extend(missing_fields(item, kp_field.data_class, version))
    return out


_INT_RANGES = {
    "int8": (-(2**7), 2**7 - 1),
    "int16": (-(2**15), 2**15 - 1),
    "uint16": (0, 2**16 - 1),
    "int32": (-(2**31), 2**31 - 1),
    "int64": (-(2**63), 2**63 - 1),
}


def _primitive_strategy(kind: str) -> st.SearchStrategy[Any]:
    if kind in _INT_RANGES:
        lo, hi = _INT_RANGES[kind]
        return st.integers(lo, hi)
    if kind == "bool":
        return st.booleans()
    if kind == "string":
        return st.text(max_size=8)
    if kind in ("bytes", "records"):
        return st.binary(max_size=16)
    if kind == "uuid":
        return st.one_of(st.just(ZERO_UUID), st.uuids())
    if kind == "float64":
        return st.floats(allow_nan=False)
    raise AssertionError(kind)


def _type_strategy(wire_type: Any, version: int) -> st.SearchStrategy[Any]:
    if isinstance(wire_type, Primitive):
        return _primitive_strategy(wire_type.kind)
    if isinstance(wire_type, Array):
        return st.lists(_type_strategy(wire_type.item, version), max_size=3)
    return values(wire_type, version)


def _empty_as_default(value: Any) -> Any:
    return () if isinstance(value, list) and not value else value


def values(cls: type, version: int) -> st.SearchStrategy[Any]:
    """Random values of ``cls`` whose fields absent from ``version`` keep their defaults."""
    kw: dict[str, st.SearchStrategy[Any]] = {}
    for field in attrs.fields(cls):
        spec = _spec(field)
        if not spec.present(version):
            if field.default is attrs.NOTHING:
                kw[field.name] = _type_strategy(spec.type, version)
            continue
        s = _type_strategy(spec.type, version)
        if spec.nullable(version):
            s = st.one_of(st.none(), s)
        if spec.tag is not None:
            s = st.one_of(st.just(field.default), s)
            if field.default == ():
                s = s.map(_empty_as_default)
        kw[field.name] = s
    return st.builds(cls, **kw)


def uuid_bytes(u: uuid.UUID) -> bytes:
    return u.bytes
