"""Schemas and record batches, typed so that nothing loses precision.

A stream's schema is a list of :class:`Field`; a :class:`BatchBuilder` takes rows (dicts)
and checks every value against its column's type: 64-bit integers stay integers, decimals
keep every digit (a value that does not fit the scale is an error, never rounded),
timestamps keep their microseconds.
"""

from __future__ import annotations

import datetime as _dt
import decimal as _dec
from dataclasses import dataclass
from typing import Any, Iterable, List, Mapping, Optional, Sequence, Union

from wit_world.imports import types as _t

from .errors import DataError

ColumnType = _t.ColumnType
"""A column's type: one of the constants below, or :func:`decimal`."""

BOOLEAN: ColumnType = _t.ColumnType_Boolean()
"""``bool``."""
INT64: ColumnType = _t.ColumnType_Int64()
"""``int`` in -2**63 .. 2**63-1."""
FLOAT64: ColumnType = _t.ColumnType_Float64()
"""``float`` (or ``int``)."""
UTF8: ColumnType = _t.ColumnType_Utf8()
"""``str``."""
BINARY: ColumnType = _t.ColumnType_Binary()
"""``bytes``."""
DATE32: ColumnType = _t.ColumnType_Date32()
"""``datetime.date`` (or days since 1970-01-01 as ``int``)."""
TIMESTAMP_MICROS: ColumnType = _t.ColumnType_TimestampMicros()
"""``datetime.datetime`` (naive values are taken as UTC), or microseconds since the epoch."""


def decimal(precision: int, scale: int) -> ColumnType:
    """A fixed-point decimal column: ``precision`` digits (1..38), ``scale`` after the point.

    Values are ``decimal.Decimal``, ``int`` or ``str``; one with more digits after the point
    than ``scale`` (or more in all than ``precision``) is a :class:`DataError`.
    """
    if not 1 <= precision <= 38:
        raise ValueError(f"decimal precision {precision}: must be 1..38")
    if not -128 <= scale <= 127 or scale > precision:
        raise ValueError(f"decimal scale {scale}: must be at most the precision ({precision})")
    return _t.ColumnType_Decimal128(_t.DecimalType(precision=precision, scale=scale))


Field = _t.Field


def field(name: str, type: ColumnType, nullable: bool = True) -> Field:
    """A column of a stream's schema."""
    return _t.Field(name=name, type=type, nullable=nullable)


@dataclass
class Stream:
    """A stream the plugin offers (what ``discover`` reports).

    ``primary_key`` names the key columns (readers keep the latest row per key);
    ``cursor_candidates`` the columns an incremental read may use; ``incremental`` whether
    the stream resumes from its checkpoints.
    """

    name: str
    fields: List[Field]
    primary_key: Sequence[str] = ()
    cursor_candidates: Sequence[str] = ()
    incremental: bool = False

    def to_wit(self) -> _t.StreamInfo:
        """The WIT value."""
        return _t.StreamInfo(
            name=self.name,
            fields=list(self.fields),
            primary_key=list(self.primary_key),
            cursor_candidates=list(self.cursor_candidates),
            incremental=self.incremental,
        )


_EPOCH = _dt.datetime(1970, 1, 1, tzinfo=_dt.timezone.utc)
_EPOCH_DATE = _dt.date(1970, 1, 1)
_MICRO = _dt.timedelta(microseconds=1)
_I64_MIN, _I64_MAX = -(2**63), 2**63 - 1
_U64 = 2**64 - 1


def _int64(v: Any) -> int:
    if isinstance(v, bool) or not isinstance(v, int):
        raise TypeError(f"expected int, got {type(v).__name__}")
    if not _I64_MIN <= v <= _I64_MAX:
        raise ValueError(f"{v} does not fit in 64 bits")
    return v


def _float64(v: Any) -> float:
    if isinstance(v, bool) or not isinstance(v, (int, float)):
        raise TypeError(f"expected float, got {type(v).__name__}")
    return float(v)


def _utf8(v: Any) -> str:
    if not isinstance(v, str):
        raise TypeError(f"expected str, got {type(v).__name__}")
    return v


def _binary(v: Any) -> bytes:
    if not isinstance(v, (bytes, bytearray, memoryview)):
        raise TypeError(f"expected bytes, got {type(v).__name__}")
    return bytes(v)


def _boolean(v: Any) -> bool:
    if not isinstance(v, bool):
        raise TypeError(f"expected bool, got {type(v).__name__}")
    return v


def _date32(v: Any) -> int:
    if isinstance(v, _dt.datetime):
        raise TypeError("expected a date, got a datetime (use .date())")
    if isinstance(v, _dt.date):
        return (v - _EPOCH_DATE).days
    return _int64(v)


def _timestamp(v: Any) -> int:
    if isinstance(v, _dt.datetime):
        if v.tzinfo is None:
            v = v.replace(tzinfo=_dt.timezone.utc)
        return _int64((v - _EPOCH) // _MICRO)
    return _int64(v)


def _unscaled(v: Any, precision: int, scale: int) -> int:
    if isinstance(v, float):
        raise TypeError("expected decimal.Decimal, int or str, got float (floats lose digits)")
    if isinstance(v, bool) or not isinstance(v, (int, str, _dec.Decimal)):
        raise TypeError(f"expected decimal.Decimal, int or str, got {type(v).__name__}")
    try:
        d = _dec.Decimal(v)
    except _dec.InvalidOperation:
        raise ValueError(f"{v!r} is not a number") from None
    if not d.is_finite():
        raise ValueError(f"{v!r} is not a finite number")
    ctx = _dec.Context(prec=80)
    scaled = d.scaleb(scale, context=ctx)
    unscaled = int(scaled.to_integral_value(context=ctx))
    if scaled != unscaled:
        raise ValueError(f"{v} has more than {scale} digits after the point")
    if abs(unscaled) >= 10**precision:
        raise ValueError(f"{v} has more than {precision} digits (decimal({precision}, {scale}))")
    return unscaled


class BatchBuilder:
    """Builds one batch of rows for a schema.

    ``append`` takes a row as a mapping from column name to value; a missing key or ``None``
    is null (a :class:`DataError` for a non-nullable column). A value of the wrong type is
    a :class:`DataError` naming the column and the row. ``finish`` returns the batch and
    starts over.

    >>> b = BatchBuilder([field("id", INT64, False), field("price", decimal(10, 2))])
    >>> b.append({"id": 1, "price": "12.30"})
    >>> b.rows
    1
    """

    def __init__(self, fields: Sequence[Field]) -> None:
        self.fields: List[Field] = list(fields)
        self._names = [f.name for f in self.fields]
        self._convert = [self._converter(f.type) for f in self.fields]
        self._reset()

    @staticmethod
    def _converter(ty: ColumnType):
        if isinstance(ty, _t.ColumnType_Int64):
            return _int64
        if isinstance(ty, _t.ColumnType_Float64):
            return _float64
        if isinstance(ty, _t.ColumnType_Utf8):
            return _utf8
        if isinstance(ty, _t.ColumnType_Binary):
            return _binary
        if isinstance(ty, _t.ColumnType_Boolean):
            return _boolean
        if isinstance(ty, _t.ColumnType_Date32):
            return _date32
        if isinstance(ty, _t.ColumnType_TimestampMicros):
            return _timestamp
        if isinstance(ty, _t.ColumnType_Decimal128):
            p, s = ty.value.precision, ty.value.scale

            def dec(v: Any) -> _t.I128Parts:
                u = _unscaled(v, p, s)
                return _t.I128Parts(hi=u >> 64, lo=u & _U64)

            return dec
        raise TypeError(f"unknown column type {ty!r}")

    @staticmethod
    def _null_of(ty: ColumnType) -> Any:
        if isinstance(ty, _t.ColumnType_Float64):
            return 0.0
        if isinstance(ty, _t.ColumnType_Utf8):
            return ""
        if isinstance(ty, _t.ColumnType_Binary):
            return b""
        if isinstance(ty, _t.ColumnType_Boolean):
            return False
        if isinstance(ty, _t.ColumnType_Decimal128):
            return _t.I128Parts(hi=0, lo=0)
        return 0

    def _reset(self) -> None:
        self._values: List[list] = [[] for _ in self.fields]
        self._valid: List[list] = [[] for _ in self.fields]
        self._any_null = [False] * len(self.fields)
        self.rows = 0
        """Rows so far."""

    def append(self, row: Mapping[str, Any]) -> None:
        """Add one row (column name to value). Keys that are not columns are errors."""
        for key in row:
            if key not in self._names:
                raise DataError(f"row {self.rows}: `{key}` is not a column of the stream")
        converted = []
        for i, f in enumerate(self.fields):
            v = row.get(f.name)
            if v is None:
                if not f.nullable:
                    raise DataError(f"column `{f.name}` is not nullable but row {self.rows} has no value")
                converted.append(None)
                continue
            try:
                converted.append(self._convert[i](v))
            except (TypeError, ValueError, OverflowError) as e:
                raise DataError(f"column `{f.name}`, row {self.rows}: {e}") from None
        for i, v in enumerate(converted):
            if v is None:
                self._values[i].append(self._null_of(self.fields[i].type))
                self._valid[i].append(False)
                self._any_null[i] = True
            else:
                self._values[i].append(v)
                self._valid[i].append(True)
        self.rows += 1

    def extend(self, rows: Iterable[Mapping[str, Any]]) -> None:
        """``append`` each row."""
        for r in rows:
            self.append(r)

    def finish(self) -> "Batch":
        """The batch built so far; the builder starts over empty."""
        columns = []
        for i, f in enumerate(self.fields):
            columns.append(
                _t.Column(
                    name=f.name,
                    data=_column_data(f.type, self._values[i]),
                    valid=self._valid[i] if self._any_null[i] else [],
                )
            )
        batch = Batch(_t.Batch(rows=self.rows, columns=columns))
        self._reset()
        return batch


def _column_data(ty: ColumnType, values: list) -> _t.ColumnData:
    table = {
        _t.ColumnType_Boolean: _t.ColumnData_Boolean,
        _t.ColumnType_Int64: _t.ColumnData_Int64,
        _t.ColumnType_Float64: _t.ColumnData_Float64,
        _t.ColumnType_Utf8: _t.ColumnData_Utf8,
        _t.ColumnType_Binary: _t.ColumnData_Binary,
        _t.ColumnType_Date32: _t.ColumnData_Date32,
        _t.ColumnType_TimestampMicros: _t.ColumnData_TimestampMicros,
        _t.ColumnType_Decimal128: _t.ColumnData_Decimal128,
    }
    return table[type(ty)](values)


class Batch:
    """Rows to land (an item a ``read`` yields). Made by :meth:`BatchBuilder.finish`."""

    __slots__ = ("wit",)

    def __init__(self, wit: _t.Batch) -> None:
        self.wit = wit

    @property
    def rows(self) -> int:
        """How many rows."""
        return self.wit.rows


class Checkpoint:
    """A complete resume point covering every batch yielded before it (an item a ``read``
    yields). The value is JSON-encodable (a dict, or a dataclass); the next read of the
    stream gets it back as ``request.state``."""

    __slots__ = ("text",)

    def __init__(self, text: str) -> None:
        self.text = text


class Skipped:
    """A record skipped under the connection's bad-record policy (an item a ``read``
    yields): where it was and why."""

    __slots__ = ("location", "reason")

    def __init__(self, location: str, reason: str) -> None:
        self.location = location
        self.reason = reason


Item = Union[Batch, Checkpoint, Skipped]
"""What a ``read`` generator yields."""


def rows_of(batch: Union[Batch, _t.Batch], fields: Optional[Sequence[Field]] = None) -> List[dict]:
    """The rows of a batch as dicts, for tests: timestamps as aware ``datetime``, dates as
    ``date``, decimals as ``decimal.Decimal`` when ``fields`` (the schema) is given, else
    as their unscaled ``int``."""
    b = batch.wit if isinstance(batch, Batch) else batch
    scales = {}
    for f in fields or ():
        if isinstance(f.type, _t.ColumnType_Decimal128):
            scales[f.name] = f.type.value.scale
    out: List[dict] = [dict() for _ in range(b.rows)]
    for col in b.columns:
        data = col.data
        vals = list(data.value)
        if isinstance(data, _t.ColumnData_Decimal128):
            vals = [(p.hi << 64) | p.lo for p in vals]
            if col.name in scales:
                vals = [_dec.Decimal(v).scaleb(-scales[col.name]) for v in vals]
        if isinstance(data, _t.ColumnData_TimestampMicros):
            vals = [_EPOCH + _dt.timedelta(microseconds=v) for v in vals]
        if isinstance(data, _t.ColumnData_Date32):
            vals = [_EPOCH_DATE + _dt.timedelta(days=v) for v in vals]
        for i in range(b.rows):
            valid = not col.valid or col.valid[i]
            out[i][col.name] = vals[i] if valid else None
    return out

