"""Run a plugin in plain CPython against a recorded API, for its unit tests.

The recording is the format inlet's replay server reads (``testdata/*.json``): a JSON
object from request path (with its query) to the JSON body answered with 200; any other
path answers 404. The same file then serves ``inlet sync`` through a replay server, so a
plugin is tested on the same shapes in CPython and in the sandbox::

    from inlet_pdk.testing import Replay, read_all
    import plugin

    with Replay.from_file("testdata/replay.json", origin="https://api.example.com"):
        rows, state = read_all(plugin, {"base_url": "https://api.example.com"}, "things")

Outside the sandbox nothing stops a plugin from opening files or sockets: these tests
check the plugin's logic, ``inlet sync`` checks it in the sandbox.
"""

from __future__ import annotations

import json as _json
import time as _time
import types as _types
from typing import Any, Dict, List, Optional, Tuple
from urllib.parse import urlsplit

from componentize_py_types import Err, Ok
from wit_world.imports import host as _host
from wit_world.imports import types as _t

from ._export import source_class
from .batch import rows_of

__all__ = ["Replay", "read_all", "discover"]


class Replay:
    """Answers the plugin's HTTP requests from a recording while active (a context
    manager). ``requests`` lists the URLs asked for; ``logs`` the log lines."""

    def __init__(self, recording: Dict[str, Any], origin: Optional[str] = None) -> None:
        self.recording = recording
        self.origin = origin.rstrip("/") if origin else None
        self.requests: List[str] = []
        self.logs: List[str] = []
        self._saved: Dict[str, Any] = {}

    @classmethod
    def from_file(cls, path: str, origin: Optional[str] = None) -> "Replay":
        """The recording in ``path``; ``origin`` (``https://host``), when given, is the only
        origin answered (others fail as an undeclared host would)."""
        with open(path, encoding="utf-8") as f:
            return cls(_json.load(f), origin)

    def _answer(self, request: _host.HttpRequest) -> _host.HttpResponse:
        self.requests.append(request.url)
        parts = urlsplit(request.url)
        if self.origin and f"{parts.scheme}://{parts.netloc}" != self.origin:
            raise AssertionError(f"the plugin asked for {request.url}, outside {self.origin}")
        path = parts.path + (f"?{parts.query}" if parts.query else "")
        headers = [_host.Header(name="content-type", value="application/json")]
        if path in self.recording:
            body = _json.dumps(self.recording[path]).encode()
            return _host.HttpResponse(status=200, headers=headers, body=body)
        return _host.HttpResponse(status=404, headers=headers, body=b'{"error":"not recorded"}')

    def __enter__(self) -> "Replay":
        def fetch(request):
            return self._answer(request)

        def fetch_many(requests):
            return [Ok(self._answer(r)) for r in requests]

        def log(level, message):
            self.logs.append(f"{level.name.lower()}: {message}")

        patches = {
            "http_fetch": fetch,
            "http_fetch_many": fetch_many,
            "log": log,
            "now_millis": lambda: int(_time.time() * 1000),
        }
        for name, f in patches.items():
            self._saved[name] = getattr(_host, name)
            setattr(_host, name, f)
        return self

    def __exit__(self, *exc: Any) -> None:
        for name, f in self._saved.items():
            setattr(_host, name, f)
        self._saved.clear()


def _source(module: _types.ModuleType):
    return source_class(module)()


def discover(module: _types.ModuleType, config: Dict[str, Any]) -> List[_t.StreamInfo]:
    """The streams, through the same bridge the component uses."""
    return _source(module).discover(_json.dumps(config))


def read_all(
    module: _types.ModuleType,
    config: Dict[str, Any],
    stream: str,
    state: Optional[Dict[str, Any]] = None,
    batch_rows: int = 1000,
) -> Tuple[List[dict], Optional[Dict[str, Any]]]:
    """Read ``stream`` to its end as the host would (validate, open, next until none), and
    return the rows (dicts, see :func:`inlet_pdk.rows_of`) and the last checkpoint.

    A plugin error raises ``componentize_py_types.Err`` with the WIT error, as the host
    would receive it."""
    src = _source(module)
    text = _json.dumps(config)
    src.validate(text)
    fields = {s.name: s.fields for s in src.discover(text)}
    if stream not in fields:
        raise Err(_t.PluginError_UnknownStream(stream))
    src.open(
        _t.ReadRequest(
            config=text,
            stream=stream,
            incremental=state is not None,
            cursor_field=None,
            state=_json.dumps(state) if state is not None else None,
            batch_rows=batch_rows,
        )
    )
    rows: List[dict] = []
    last: Optional[Dict[str, Any]] = None
    while True:
        events = src.next()
        if events is None:
            break
        for e in events:
            if isinstance(e, _t.Event_Batch):
                rows.extend(rows_of(e.value, fields[stream]))
            elif isinstance(e, _t.Event_Checkpoint):
                last = _json.loads(e.value)
    return rows, last

