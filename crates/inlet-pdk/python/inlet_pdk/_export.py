"""The bridge between a :class:`inlet_pdk.Plugin` and the ``source`` export of the WIT
world: JSON text in, Python values to the plugin, WIT values and errors out.

``inlet plugin build`` generates the component's entry module, which is just::

    import plugin
    from inlet_pdk._export import source_class
    Source = source_class(plugin)
"""

from __future__ import annotations

import json as _json
import types as _types
from typing import Any, Iterator, List, Optional

from componentize_py_types import Err
from wit_world import exports
from wit_world.imports import types as _t

from . import CheckItem, Plugin, Read
from .batch import Batch, Checkpoint, Skipped
from .errors import ConfigError, OtherError, to_wit

# Batches one `next` returns at most when the plugin yields no checkpoint for a while: it
# bounds what one call holds in memory.
MAX_BATCHES_PER_CALL = 16


def find_plugin(module: _types.ModuleType) -> Plugin:
    """The plugin a module defines: its ``PLUGIN`` object, or its one subclass of
    :class:`Plugin`."""
    obj = getattr(module, "PLUGIN", None)
    if isinstance(obj, Plugin):
        return obj
    found = [
        v
        for v in vars(module).values()
        if isinstance(v, type) and issubclass(v, Plugin) and v is not Plugin
        and v.__module__ == module.__name__
    ]
    if len(found) != 1:
        names = ", ".join(c.__name__ for c in found) or "none"
        raise TypeError(
            f"{module.__name__}.py must define exactly one subclass of inlet_pdk.Plugin "
            f"(or a PLUGIN object); found: {names}"
        )
    return found[0]()


def _config(text: str) -> Any:
    try:
        value = _json.loads(text)
    except ValueError as e:
        raise ConfigError("config", f"not JSON: {e}") from None
    if not isinstance(value, dict):
        raise ConfigError("config", "must be a table")
    return value


def _call(f, *args):
    try:
        return f(*args)
    except Err:
        raise
    except BaseException as e:  # noqa: BLE001 - every failure becomes a plugin-error
        raise Err(to_wit(e)) from None


def source_class(module: _types.ModuleType) -> type:
    """The class componentize-py exports as ``source``, serving the plugin of ``module``."""
    plugin = find_plugin(module)
    # The read in progress. Module state, not the exported object's: componentize-py may
    # make a new object per call, and the host makes a fresh instance for every read.
    reading: dict = {"items": None, "done": False}

    class Source(exports.Source):
        def spec(self) -> str:
            return _json.dumps(plugin.spec())

        def validate(self, config: str) -> None:
            _call(lambda: plugin.validate(_config(config)))

        def check(self, config: str) -> List[_t.CheckItem]:
            def run():
                items = plugin.check(_config(config)) or []
                return [_t.CheckItem(name=i.name, ok=bool(i.ok), message=i.message) for i in items]

            return _call(run)

        def discover(self, config: str) -> List[_t.StreamInfo]:
            return _call(lambda: [s.to_wit() for s in plugin.streams(_config(config))])

        def open(self, request: _t.ReadRequest) -> None:
            def run():
                config = _config(request.config)
                state = None
                if request.state is not None:
                    try:
                        state = _json.loads(request.state)
                    except ValueError as e:
                        raise OtherError(f"the saved state is not JSON: {e}") from None
                read = Read(
                    config=config,
                    stream=request.stream,
                    incremental=request.incremental,
                    cursor_field=request.cursor_field,
                    state=state,
                    batch_rows=request.batch_rows,
                )
                items = plugin.read(read)
                if items is None:
                    items = iter(())
                reading["items"] = iter(items)
                reading["done"] = False

            _call(run)

        def next(self) -> Optional[List[_t.Event]]:
            def run():
                items = reading["items"]
                if items is None:
                    raise OtherError("next before open")
                if reading["done"]:
                    return None
                events: List[_t.Event] = []
                batches = 0
                for item in items:
                    if isinstance(item, Batch):
                        events.append(_t.Event_Batch(item.wit))
                        batches += 1
                    elif isinstance(item, Checkpoint):
                        events.append(_t.Event_Checkpoint(item.text))
                        return events
                    elif isinstance(item, Skipped):
                        events.append(_t.Event_Skipped(_t.Skipped(location=item.location, reason=item.reason)))
                    else:
                        raise OtherError(
                            f"read() yielded a {type(item).__name__}; yield BatchBuilder.finish(), "
                            "inlet_pdk.checkpoint(...) or inlet_pdk.skipped(...)"
                        )
                    if batches >= MAX_BATCHES_PER_CALL:
                        return events
                reading["done"] = True
                return events or None

            return _call(run)

    Source.__qualname__ = Source.__name__ = "Source"
    return Source


__all__ = ["source_class", "find_plugin", "CheckItem"]
