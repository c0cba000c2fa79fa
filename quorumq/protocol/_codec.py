"""A small schema-driven codec for Kafka's message format.

Theory of operation: each Kafka message (request or response body, and every nested struct) is
one ``@attrs.frozen(kw_only=True)`` class whose fields carry their wire description in attrs
metadata, written with :func:`f`: the wire type, the versions the field exists in, the versions
in which it may be null, and its tag if it is a tagged field of flexible versions. Field order in
the class is wire order, as in Kafka's JSON schemas (``clients/src/main/resources/common/message``).
One class serves every version of a message: fields absent from a version keep their default
when decoding and are skipped when encoding.

For every (class, version, flexible) the first use compiles a reader and a writer closure over
the fields present in that version; they are cached, so the per-message cost is a loop over
pre-bound functions. Flexible versions (KIP-482) use compact strings, bytes and arrays (unsigned
varint length + 1) and end every struct with a tagged-field section; unknown tags are skipped.

Readers take ``(buf, pos)`` and return ``(value, new_pos)``; they let ``struct.error`` and
friends escape on truncation, and the public entry points (``_api.py``) turn those into
:class:`~quorumq.errors.InvalidRequest`. Lengths and counts are checked against the bytes left,
so a hostile count never allocates or loops beyond the frame's size.

Writers append to a :class:`Writer`: a growing ``bytearray`` plus a list of finished parts. The
``RECORDS`` type closes the current part and appends the caller's record buffers as they are,
so a Fetch response never copies batch data.
"""

from __future__ import annotations

import struct
import uuid
from collections.abc import Callable, Sequence
from typing import Any, TypeAlias

import attrs

from quorumq.errors import InvalidRequest

Buffer: TypeAlias = bytes | bytearray | memoryview
"""A contiguous run of bytes that the writer passes through without copying."""

Records: TypeAlias = bytes | bytearray | memoryview | Sequence[bytes | bytearray | memoryview]
"""A record set on the wire: one buffer, or a sequence of buffers written back to back
(a Fetch response's stored batches). Decoding always yields one ``memoryview``."""

ZERO_UUID = uuid.UUID(int=0)
"""Kafka's ``Uuid.ZERO_UUID``: "no topic id"."""

NO_DEFAULT: Any = attrs.NOTHING

Reader = Callable[[memoryview, int], tuple[Any, int]]
WriterFn = Callable[["Writer", Any], None]

_I8 = struct.Struct(">b")
_I16 = struct.Struct(">h")
_U16 = struct.Struct(">H")
_I32 = struct.Struct(">i")
_I64 = struct.Struct(">q")
_F64 = struct.Struct(">d")
_BOOL = struct.Struct(">?")


def malformed(what: str) -> InvalidRequest:
    """The one exception for bytes that do not follow the schema."""
    return InvalidRequest(f"malformed message: {what}")


class Writer:
    """An output buffer that can splice in caller-owned buffers without copying them."""

    __slots__ = ("buf", "parts")

    def __init__(self) -> None:
        self.buf = bytearray()
        self.parts: list[Buffer] = []

    def splice(self, data: Buffer) -> None:
        """Ends the current part and appends ``data`` as its own part (zero copy)."""
        if self.buf:
            self.parts.append(self.buf)
            self.buf = bytearray()
        if len(data):
            self.parts.append(data)

    def finish(self) -> list[Buffer]:
        """Returns the parts, the last one being whatever is still in ``buf``."""
        if self.buf or not self.parts:
            self.parts.append(self.buf)
        return self.parts

    def getvalue(self) -> bytes:
        """Joins everything (tests and tagged fields; never the Fetch hot path)."""
        return b"".join(self.finish())


# --- varints ----------------------------------------------------------------------------------


def read_uvarint(buf: memoryview, pos: int) -> tuple[int, int]:
    """Reads an unsigned varint of at most 5 bytes (Kafka's ``readUnsignedVarint``)."""
    result = 0
    shift = 0
    while True:
        b = buf[pos]
        pos += 1
        result |= (b & 0x7F) << shift
        if not b & 0x80:
            return result, pos
        shift += 7
        if shift > 28:
            raise malformed("unsigned varint longer than 5 bytes")


def write_uvarint(out: bytearray, value: int) -> None:
    """Appends an unsigned varint."""
    while value > 0x7F:
        out.append((value & 0x7F) | 0x80)
        value >>= 7
    out.append(value)


# --- wire types -------------------------------------------------------------------------------


@attrs.frozen
class Primitive:
    """A fixed-size or length-prefixed scalar type; ``kind`` picks the reader and writer."""

    kind: str


INT8 = Primitive("int8")
INT16 = Primitive("int16")
UINT16 = Primitive("uint16")
INT32 = Primitive("int32")
INT64 = Primitive("int64")
FLOAT64 = Primitive("float64")
BOOL = Primitive("bool")
STRING = Primitive("string")
BYTES = Primitive("bytes")
UUID = Primitive("uuid")
RECORDS = Primitive("records")


@attrs.frozen
class Array:
    """An array of a primitive or of a struct class."""

    item: Any


@attrs.frozen
class FieldSpec:
    """The wire description of one field (attrs metadata key ``"wire"``)."""

    type: Any
    min_version: int
    max_version: int | None
    null_min: int | None
    null_max: int | None
    tag: int | None

    def present(self, version: int) -> bool:
        return self.min_version <= version and (
            self.max_version is None or version <= self.max_version
        )

    def nullable(self, version: int) -> bool:
        return (
            self.null_min is not None
            and self.null_min <= version
            and (self.null_max is None or version <= self.null_max)
        )


def f(
    wire_type: Any,
    *,
    v: tuple[int, int | None] = (0, None),
    null: tuple[int, int | None] | None = None,
    tag: int | None = None,
    default: Any = NO_DEFAULT,
) -> Any:
    """Declares a message field: wire type, versions ``v=(min, max|None)``, nullable versions
    ``null=(min, max|None)`` and, for tagged fields of flexible versions, ``tag``."""
    spec = FieldSpec(
        wire_type, v[0], v[1], null[0] if null else None, null[1] if null else None, tag
    )
    if isinstance(default, list):
        default = tuple(default)
    return attrs.field(default=default, metadata={"wire": spec})


# --- readers ----------------------------------------------------------------------------------


def _fixed_reader(st: struct.Struct) -> Reader:
    size = st.size
    unpack_from = st.unpack_from

    def read(buf: memoryview, pos: int) -> tuple[Any, int]:
        return unpack_from(buf, pos)[0], pos + size

    return read


def _length_reader(flexible: bool, wide: bool) -> Reader:
    """Reads a length prefix; -1 means null. ``wide`` is int32 (bytes) vs int16 (strings)."""
    if flexible:

        def read(buf: memoryview, pos: int) -> tuple[int, int]:
            n, pos = read_uvarint(buf, pos)
            return n - 1, pos

        return read
    return _fixed_reader(_I32 if wide else _I16)


def _take(buf: memoryview, pos: int, n: int, nullable: bool, what: str) -> memoryview | None:
    if n < 0:
        if n == -1 and nullable:
            return None
        raise malformed(f"{what} length {n}")
    if pos + n > len(buf):
        raise malformed(f"{what} of {n} bytes runs past the end of the frame")
    return buf[pos : pos + n]


def _string_reader(flexible: bool, nullable: bool) -> Reader:
    length = _length_reader(flexible, wide=False)

    def read(buf: memoryview, pos: int) -> tuple[str | None, int]:
        n, pos = length(buf, pos)
        data = _take(buf, pos, n, nullable, "string")
        if data is None:
            return None, pos
        return str(data, "utf-8"), pos + n

    return read


def _bytes_reader(flexible: bool, nullable: bool, zero_copy: bool) -> Reader:
    length = _length_reader(flexible, wide=True)

    def read(buf: memoryview, pos: int) -> tuple[Any, int]:
        n, pos = length(buf, pos)
        data = _take(buf, pos, n, nullable, "bytes")
        if data is None:
            return None, pos
        return (data if zero_copy else bytes(data)), pos + n

    return read


def _uuid_read(buf: memoryview, pos: int) -> tuple[uuid.UUID, int]:
    if pos + 16 > len(buf):
        raise malformed("uuid runs past the end of the frame")
    return uuid.UUID(bytes=bytes(buf[pos : pos + 16])), pos + 16


def _array_reader(item: Reader, flexible: bool, nullable: bool) -> Reader:
    length = _length_reader(flexible, wide=True)

    def read(buf: memoryview, pos: int) -> tuple[list[Any] | None, int]:
        n, pos = length(buf, pos)
        if n < 0:
            if n == -1 and nullable:
                return None, pos
            raise malformed(f"array length {n}")
        if n > len(buf) - pos:
            raise malformed(f"array of {n} items in {len(buf) - pos} bytes")
        out = []
        append = out.append
        for _ in range(n):
            value, pos = item(buf, pos)
            append(value)
        return out, pos

    return read


def _fixed_array_reader(fmt: str, flexible: bool, nullable: bool) -> Reader:
    """An array of fixed-size items (replica lists, partition indexes): one ``unpack_from``."""
    length = _length_reader(flexible, wide=True)
    size = struct.calcsize(">" + fmt)

    def read(buf: memoryview, pos: int) -> tuple[list[Any] | None, int]:
        n, pos = length(buf, pos)
        if n < 0:
            if n == -1 and nullable:
                return None, pos
            raise malformed(f"array length {n}")
        if n * size > len(buf) - pos:
            raise malformed(f"array of {n} items in {len(buf) - pos} bytes")
        st = cache.get(n)
        if st is None:
            st = struct.Struct(f">{n}{fmt}")
            if n <= 64:
                cache[n] = st
        return list(st.unpack_from(buf, pos)), pos + n * size

    cache: dict[int, struct.Struct] = {}
    return read


_PRIMITIVE_READERS: dict[str, Reader] = {
    "int8": _fixed_reader(_I8),
    "int16": _fixed_reader(_I16),
    "uint16": _fixed_reader(_U16),
    "int32": _fixed_reader(_I32),
    "int64": _fixed_reader(_I64),
    "float64": _fixed_reader(_F64),
    "bool": _fixed_reader(_BOOL),
    "uuid": _uuid_read,
}


def _reader_for(wire_type: Any, version: int, flexible: bool, nullable: bool) -> Reader:
    if isinstance(wire_type, Primitive):
        kind = wire_type.kind
        if kind == "string":
            return _string_reader(flexible, nullable)
        if kind == "bytes":
            return _bytes_reader(flexible, nullable, zero_copy=False)
        if kind == "records":
            return _bytes_reader(flexible, nullable, zero_copy=True)
        return _PRIMITIVE_READERS[kind]
    if isinstance(wire_type, Array):
        kind = wire_type.item.kind if isinstance(wire_type.item, Primitive) else None
        if kind in _FIXED_FORMATS:
            return _fixed_array_reader(_FIXED_FORMATS[kind], flexible, nullable)
        item = _reader_for(wire_type.item, version, flexible, nullable=False)
        return _array_reader(item, flexible, nullable)
    return struct_reader(wire_type, version, flexible)


_READERS: dict[tuple[type, int, bool], Reader] = {}

_FIXED_FORMATS = {
    "int8": "b", "int16": "h", "uint16": "H", "int32": "i", "int64": "q", "float64": "d",
    "bool": "?",
}  # fmt: skip


def _fixed_runs(
    fields: list[tuple[str, FieldSpec]],
) -> list[tuple[list[str], str] | tuple[str, FieldSpec]]:
    """Groups consecutive fixed-size fields, so one ``struct`` call reads or writes them all."""
    steps: list[Any] = []
    run: list[str] = []
    fmt = ""
    for name, spec in fields:
        kind = spec.type.kind if isinstance(spec.type, Primitive) else None
        if kind in _FIXED_FORMATS:
            run.append(name)
            fmt += _FIXED_FORMATS[kind]
            continue
        if run:
            steps.append((run, fmt))
            run, fmt = [], ""
        steps.append((name, spec))
    if run:
        steps.append((run, fmt))
    return steps


def _read_tagged(
    buf: memoryview, pos: int, tagged: dict[int, tuple[str, Reader]], kw: dict[str, Any]
) -> int:
    count, pos = read_uvarint(buf, pos)
    for _ in range(count):
        tag, pos = read_uvarint(buf, pos)
        size, pos = read_uvarint(buf, pos)
        end = pos + size
        if end > len(buf):
            raise malformed("tagged field runs past the end of the frame")
        known = tagged.get(tag)
        if known is not None:
            kw[known[0]], _ = known[1](buf[:end], pos)
        pos = end
    return pos


def struct_reader(cls: type, version: int, flexible: bool) -> Reader:
    """Returns (and caches) the reader of ``cls`` at ``version``.

    The reader is generated Python source, compiled once: consecutive fixed-size fields are one
    ``unpack_from``, classic strings are inlined, and the value is built with one call, so a
    struct costs about as much as hand-written code.
    """
    key = (cls, version, flexible)
    cached = _READERS.get(key)
    if cached is not None:
        return cached
    plain: list[tuple[str, FieldSpec]] = []
    tagged: dict[int, tuple[str, Reader]] = {}
    for field in attrs.fields(cls):
        spec: FieldSpec = field.metadata["wire"]
        if not spec.present(version):
            continue
        if spec.tag is not None:
            if flexible:
                tagged[spec.tag] = (
                    field.name,
                    _reader_for(spec.type, version, flexible, spec.nullable(version)),
                )
        else:
            plain.append((field.name, spec))
    ns: dict[str, Any] = {
        "cls": cls,
        "malformed": malformed,
        "I16": _I16.unpack_from,
        "read_tagged": _read_tagged,
        "tagged": tagged,
    }
    lines = ["def read(buf, pos):", "    end = len(buf)"]
    names: list[str] = []
    for i, step in enumerate(_fixed_runs(plain)):
        if isinstance(step[0], list):
            run, fmt = step
            st = struct.Struct(">" + fmt)
            ns[f"S{i}"] = st.unpack_from
            targets = "".join(f"f_{n}, " for n in run)
            lines.append(f"    {targets}= S{i}(buf, pos)")
            lines.append(f"    pos += {st.size}")
            names.extend(run)
            continue
        name, spec = step
        names.append(name)
        nullable = spec.nullable(version)
        if spec.type == STRING and not flexible:
            null_branch = f"f_{name} = None" if nullable else f"raise malformed('{name} is null')"
            lines += [
                "    (n,) = I16(buf, pos)",
                "    pos += 2",
                "    if n >= 0:",
                "        if pos + n > end:",
                f"            raise malformed('{name} runs past the end of the frame')",
                f"        f_{name} = str(buf[pos : pos + n], 'utf-8')",
                "        pos += n",
                "    elif n == -1:",
                f"        {null_branch}",
                "    else:",
                f"        raise malformed('{name} length %d' % n)",
            ]
            continue
        ns[f"R{i}"] = _reader_for(spec.type, version, flexible, nullable)
        lines.append(f"    f_{name}, pos = R{i}(buf, pos)")
    args = ", ".join(f"{n}=f_{n}" for n in names)  # f_ keeps field names off our locals
    if flexible:
        lines.append("    kw = {}")
        lines.append("    pos = read_tagged(buf, pos, tagged, kw)")
        lines.append(f"    return cls({args}{', ' if args else ''}**kw), pos")
    else:
        lines.append(f"    return cls({args}), pos")
    exec(compile("\n".join(lines), f"<quorumq reader {cls.__name__} v{version}>", "exec"), ns)
    read: Reader = ns["read"]
    _READERS[key] = read
    return read


# --- writers ----------------------------------------------------------------------------------


def _fixed_writer(st: struct.Struct) -> WriterFn:
    pack = st.pack

    def write(w: Writer, value: Any) -> None:
        w.buf += pack(value)

    return write


def _write_length(w: Writer, n: int, flexible: bool, wide: bool) -> None:
    if flexible:
        write_uvarint(w.buf, n + 1)
    else:
        w.buf += (_I32 if wide else _I16).pack(n)


def _null(name: str, nullable: bool) -> None:
    if not nullable:
        raise ValueError(f"{name} is not nullable in this version")


def _string_writer(flexible: bool, nullable: bool) -> WriterFn:
    def write(w: Writer, value: str | None) -> None:
        if value is None:
            _null("string", nullable)
            _write_length(w, -1, flexible, wide=False)
            return
        data = value.encode()
        _write_length(w, len(data), flexible, wide=False)
        w.buf += data

    return write


def _bytes_writer(flexible: bool, nullable: bool) -> WriterFn:
    def write(w: Writer, value: Buffer | None) -> None:
        if value is None:
            _null("bytes", nullable)
            _write_length(w, -1, flexible, wide=True)
            return
        _write_length(w, len(value), flexible, wide=True)
        w.buf += value

    return write


def records_size(value: Records) -> int:
    """Bytes in a record set given as one buffer or a sequence of buffers."""
    if isinstance(value, bytes | bytearray | memoryview):
        return memoryview(value).nbytes
    return sum(memoryview(part).nbytes for part in value)


def _records_writer(flexible: bool, nullable: bool) -> WriterFn:
    def write(w: Writer, value: Records | None) -> None:
        if value is None:
            _null("records", nullable)
            _write_length(w, -1, flexible, wide=True)
            return
        _write_length(w, records_size(value), flexible, wide=True)
        if isinstance(value, bytes | bytearray | memoryview):
            w.splice(value)
        else:
            for part in value:
                w.splice(part)

    return write


def _uuid_write(w: Writer, value: uuid.UUID | None) -> None:
    w.buf += (value or ZERO_UUID).bytes


def _array_writer(item: WriterFn, flexible: bool, nullable: bool) -> WriterFn:
    def write(w: Writer, value: Sequence[Any] | None) -> None:
        if value is None:
            _null("array", nullable)
            _write_length(w, -1, flexible, wide=True)
            return
        _write_length(w, len(value), flexible, wide=True)
        for x in value:
            item(w, x)

    return write


def _fixed_array_writer(fmt: str, flexible: bool, nullable: bool) -> WriterFn:
    def write(w: Writer, value: Sequence[Any] | None) -> None:
        if value is None:
            _null("array", nullable)
            _write_length(w, -1, flexible, wide=True)
            return
        n = len(value)
        st = cache.get(n)
        if st is None:
            st = struct.Struct(f">{n}{fmt}")
            if n <= 64:
                cache[n] = st
        _write_length(w, n, flexible, wide=True)
        w.buf += st.pack(*value)

    cache: dict[int, struct.Struct] = {}
    return write


_PRIMITIVE_WRITERS: dict[str, WriterFn] = {
    "int8": _fixed_writer(_I8),
    "int16": _fixed_writer(_I16),
    "uint16": _fixed_writer(_U16),
    "int32": _fixed_writer(_I32),
    "int64": _fixed_writer(_I64),
    "float64": _fixed_writer(_F64),
    "bool": _fixed_writer(_BOOL),
    "uuid": _uuid_write,
}


def _writer_for(wire_type: Any, version: int, flexible: bool, nullable: bool) -> WriterFn:
    if isinstance(wire_type, Primitive):
        kind = wire_type.kind
        if kind == "string":
            return _string_writer(flexible, nullable)
        if kind == "bytes":
            return _bytes_writer(flexible, nullable)
        if kind == "records":
            return _records_writer(flexible, nullable)
        return _PRIMITIVE_WRITERS[kind]
    if isinstance(wire_type, Array):
        kind = wire_type.item.kind if isinstance(wire_type.item, Primitive) else None
        if kind in _FIXED_FORMATS:
            return _fixed_array_writer(_FIXED_FORMATS[kind], flexible, nullable)
        item = _writer_for(wire_type.item, version, flexible, nullable=False)
        return _array_writer(item, flexible, nullable)
    return struct_writer(wire_type, version, flexible)


_WRITERS: dict[tuple[type, int, bool], WriterFn] = {}


def _write_tagged(
    w: Writer, value: Any, tagged: tuple[tuple[int, str, WriterFn, Any], ...]
) -> None:
    present = []
    for tag, name, wr, default in tagged:
        v = getattr(value, name)
        # Kafka writes a tagged field only when it differs from its default; an empty list is
        # the empty-tuple default.
        if v != default and not (default == () and v is not None and len(v) == 0):
            sub = Writer()
            wr(sub, v)
            present.append((tag, sub.getvalue()))
    write_uvarint(w.buf, len(present))
    for tag, data in present:
        write_uvarint(w.buf, tag)
        write_uvarint(w.buf, len(data))
        w.buf += data


def _encode_string(name: str, value: str | None, nullable: bool) -> bytes:
    """A classic (int16-prefixed) string."""
    if value is None:
        _null(name, nullable)
        return b"\xff\xff"
    data = value.encode()
    return _I16.pack(len(data)) + data


def struct_writer(cls: type, version: int, flexible: bool) -> WriterFn:
    """Returns (and caches) the writer of ``cls`` at ``version`` (generated, like the reader)."""
    key = (cls, version, flexible)
    cached = _WRITERS.get(key)
    if cached is not None:
        return cached
    plain: list[tuple[str, FieldSpec]] = []
    tagged: list[tuple[int, str, WriterFn, Any]] = []
    for field in attrs.fields(cls):
        spec: FieldSpec = field.metadata["wire"]
        if not spec.present(version):
            continue
        if spec.tag is not None:
            if flexible:
                wr = _writer_for(spec.type, version, flexible, spec.nullable(version))
                tagged.append((spec.tag, field.name, wr, field.default))
        else:
            plain.append((field.name, spec))
    tagged.sort(key=lambda t: t[0])
    ns: dict[str, Any] = {
        "tagged": tuple(tagged),
        "write_tagged": _write_tagged,
        "encode_string": _encode_string,
    }
    lines = ["def write(w, value):"]
    for i, step in enumerate(_fixed_runs(plain)):
        if isinstance(step[0], list):
            run, fmt = step
            ns[f"S{i}"] = struct.Struct(">" + fmt).pack
            args = ", ".join(f"value.{n}" for n in run)
            lines.append(f"    w.buf += S{i}({args})")
            continue
        name, spec = step
        nullable = spec.nullable(version)
        if spec.type == STRING and not flexible:
            lines.append(f"    w.buf += encode_string({name!r}, value.{name}, {nullable})")
            continue
        ns[f"W{i}"] = _writer_for(spec.type, version, flexible, nullable)
        lines.append(f"    W{i}(w, value.{name})")
    if flexible:
        lines.append("    write_tagged(w, value, tagged)")
    if len(lines) == 1:
        lines.append("    pass")
    exec(compile("\n".join(lines), f"<quorumq writer {cls.__name__} v{version}>", "exec"), ns)
    write: WriterFn = ns["write"]
    _WRITERS[key] = write
    return write
