"""inlet_pdk: write an inlet source connector in Python, run in inlet's sandbox.

A plugin is a module ``plugin.py`` with one subclass of :class:`Plugin`; ``inlet plugin
build`` turns it (with CPython, by ``componentize-py``) into a WebAssembly component
implementing the ``inlet:plugin@0.1.0`` world, the same interface Rust plugins implement.
It runs with no files, no environment, no sockets: only what the host offers.

- :mod:`inlet_pdk.http`: requests to the hosts ``plugin.toml`` declares (and the operator
  allows), secrets added by the host from their names;
- :func:`log` (and ``print``, which becomes log lines): the host redacts secrets;
- :class:`BatchBuilder`: typed record batches (64-bit integers, decimals and timestamps
  keep every digit);
- :func:`parse_config` / :func:`parse_state`: dataclasses from JSON, errors naming the
  field; :func:`checkpoint`: a resume point.

A minimal plugin::

    import inlet_pdk as pdk

    class Things(pdk.Plugin):
        def streams(self, config):
            return [pdk.Stream("things", [pdk.field("id", pdk.INT64, False)], ["id"])]

        def read(self, request):
            b = pdk.BatchBuilder(self.streams(request.config)[0].fields)
            for t in pdk.http.get_json("https://api.example.com/things")["items"]:
                b.append({"id": t["id"]})
            yield b.finish()
            yield pdk.checkpoint({})
"""

from __future__ import annotations

import dataclasses as _dc
import json as _json
import typing as _typing
from typing import Any, Dict, Iterator, List, Optional, Type, TypeVar

from wit_world.imports import host as _host
from wit_world.imports import types as _t

from . import http
from .batch import (
    BINARY,
    BOOLEAN,
    DATE32,
    FLOAT64,
    INT64,
    TIMESTAMP_MICROS,
    UTF8,
    Batch,
    BatchBuilder,
    Checkpoint,
    ColumnType,
    Field,
    Item,
    Skipped,
    Stream,
    decimal,
    field,
    rows_of,
)
from .errors import (
    AuthError,
    ConfigError,
    DataError,
    DeniedError,
    OtherError,
    PluginError,
    StateError,
    UnavailableError,
    UnknownStreamError,
)

__all__ = [
    "Plugin", "Read", "CheckItem", "Stream", "Field", "field", "ColumnType", "BOOLEAN",
    "INT64", "FLOAT64", "UTF8", "BINARY", "DATE32", "TIMESTAMP_MICROS", "decimal",
    "BatchBuilder", "Batch", "Checkpoint", "Skipped", "Item", "checkpoint", "skipped",
    "parse_config", "parse_state", "log", "debug", "info", "warn", "error", "now_millis",
    "http", "rows_of", "PluginError", "ConfigError", "AuthError", "UnavailableError",
    "DataError", "StateError", "UnknownStreamError", "DeniedError", "OtherError",
]

T = TypeVar("T")


@_dc.dataclass
class CheckItem:
    """One line of ``inlet check``: what was checked, whether it passed, and a message."""

    name: str
    ok: bool
    message: str = ""


@_dc.dataclass
class Read:
    """What a read asks for (the argument of :meth:`Plugin.read`)."""

    config: Dict[str, Any]
    """The connection's ``config`` table (without its ``sandbox`` table)."""
    stream: str
    """The stream to read."""
    incremental: bool
    """Whether to resume from ``state`` (False: a full refresh)."""
    cursor_field: Optional[str]
    """The cursor column the connection chose, if any."""
    state: Optional[Dict[str, Any]]
    """The last checkpoint this plugin emitted for the stream, or None on a first sync."""
    batch_rows: int
    """Rows per batch the connection asks for (a hint)."""


class Plugin:
    """The base class of a plugin. Override :meth:`streams` and :meth:`read` (and
    :meth:`spec`, :meth:`validate`, :meth:`check` as needed). Methods get the connection's
    ``config`` as a dict.

    One instance of the component serves one read: module globals and ``self`` start fresh
    for every stream read.
    """

    def spec(self) -> Dict[str, Any]:
        """The JSON Schema of the connection's ``config`` table."""
        return {"type": "object"}

    def validate(self, config: Dict[str, Any]) -> None:
        """Check a configuration without I/O; raise :class:`ConfigError` naming the field."""

    def check(self, config: Dict[str, Any]) -> List[CheckItem]:
        """Check the source can be read (for ``inlet check``): failures are items with
        ``ok=False``; raise only when the check itself cannot run."""
        return []

    def streams(self, config: Dict[str, Any]) -> List[Stream]:
        """The streams this plugin offers."""
        raise NotImplementedError("a plugin must define streams()")

    def read(self, request: Read) -> Iterator[Item]:
        """Read one stream: yield batches, each followed (sooner or later) by a
        :func:`checkpoint` that covers it. The host lands and commits at every checkpoint,
        and calls the generator again for more; each resumption has its own CPU budget."""
        raise NotImplementedError("a plugin must define read()")


def checkpoint(value: Any) -> Checkpoint:
    """A checkpoint carrying ``value`` (a dict or a dataclass), which MUST be a complete
    resume point: the next read gets it back as ``request.state``."""
    if _dc.is_dataclass(value) and not isinstance(value, type):
        value = _dc.asdict(value)
    try:
        return Checkpoint(_json.dumps(value, separators=(",", ":")))
    except (TypeError, ValueError) as e:
        raise OtherError(f"cannot encode the checkpoint as JSON: {e}") from None


def skipped(location: str, reason: str) -> Skipped:
    """A record skipped under the connection's bad-record policy."""
    return Skipped(location, reason)


def _check_type(name: str, value: Any, hint: Any) -> Any:
    origin = _typing.get_origin(hint)
    args = _typing.get_args(hint)
    if hint is Any:
        return value
    if origin is _typing.Union:
        if value is None and type(None) in args:
            return None
        for a in args:
            if a is type(None):
                continue
            try:
                return _check_type(name, value, a)
            except TypeError:
                continue
        raise TypeError(f"expected {hint}, got {type(value).__name__}")
    if origin in (list, List):
        if not isinstance(value, list):
            raise TypeError(f"expected a list, got {type(value).__name__}")
        return [_check_type(name, v, args[0]) if args else v for v in value]
    if origin in (dict, Dict):
        if not isinstance(value, dict):
            raise TypeError(f"expected a table, got {type(value).__name__}")
        return value
    if hint is float and isinstance(value, int) and not isinstance(value, bool):
        return float(value)
    if isinstance(hint, type):
        if hint is int and isinstance(value, bool):
            raise TypeError("expected an integer, got a boolean")
        if not isinstance(value, hint):
            raise TypeError(f"expected {hint.__name__}, got {type(value).__name__}")
    return value


def _into(cls: Type[T], data: Any, what: str, error: Any) -> T:
    if not (_dc.is_dataclass(cls) and isinstance(cls, type)):
        raise TypeError(f"{cls!r} is not a dataclass")
    if not isinstance(data, dict):
        raise error(what, f"expected a table, got {type(data).__name__}")
    hints = _typing.get_type_hints(cls)
    names = {f.name for f in _dc.fields(cls) if f.init}
    for key in data:
        if key not in names:
            known = ", ".join(sorted(names)) or "none"
            raise error(key, f"unknown field `{key}` (known: {known})")
    values = {}
    for f in _dc.fields(cls):
        if not f.init:
            continue
        if f.name not in data:
            if f.default is _dc.MISSING and f.default_factory is _dc.MISSING:
                raise error(f.name, f"missing field `{f.name}`")
            continue
        try:
            values[f.name] = _check_type(f.name, data[f.name], hints.get(f.name, Any))
        except TypeError as e:
            raise error(f.name, str(e)) from None
    return cls(**values)


def parse_config(config: Dict[str, Any], cls: Type[T]) -> T:
    """The connection's ``config`` as dataclass ``cls``: unknown fields, missing fields
    without a default and values of the wrong type are :class:`ConfigError` naming the
    field."""
    return _into(cls, config, "config", ConfigError)


def parse_state(state: Optional[Dict[str, Any]], cls: Type[T]) -> Optional[T]:
    """The saved resume point as dataclass ``cls`` (None on a first sync); one that does
    not fit is a :class:`StateError` telling the operator to reset it."""
    if state is None:
        return None

    def err(field: str, message: str) -> StateError:
        return StateError(f"cannot read the saved state ({field}: {message}); reset it with `inlet state reset`")

    return _into(cls, state, "state", err)


def log(level: str, message: str) -> None:
    """Log a line under the plugin's name (``debug``, ``info``, ``warn``, ``error``)."""
    lv = {
        "debug": _host.LogLevel.DEBUG,
        "info": _host.LogLevel.INFO,
        "warn": _host.LogLevel.WARN,
        "warning": _host.LogLevel.WARN,
        "error": _host.LogLevel.ERROR,
    }.get(level, _host.LogLevel.INFO)
    _host.log(lv, str(message))


def debug(message: str) -> None:
    """Log at debug level."""
    log("debug", message)


def info(message: str) -> None:
    """Log at info level."""
    log("info", message)


def warn(message: str) -> None:
    """Log at warn level."""
    log("warn", message)


def error(message: str) -> None:
    """Log at error level."""
    log("error", message)


def now_millis() -> int:
    """Wall-clock time from the host, milliseconds since the Unix epoch."""
    return _host.now_millis()
