"""Hacker News as an inlet plugin, in Python: the port of the Rust plugin
(``connectors/plugins/hackernews``), landing exactly the same data.

Streams:

- ``items``: every item by id, incremental. A first sync reads the ``initial_items``
  newest items (ids ``maxitem - initial_items + 1 ..= maxitem``); later syncs resume after
  the checkpoint ``{"last_id": N}``, up to ``max_items_per_sync`` items per sync (0: no
  limit).
- ``top_stories``: the current top stories with their rank, full refresh. Within a run its
  checkpoints ``{"ids": [...], "pos": N}`` carry the list being read and how far it got, so
  a read resumed from one goes on with the same list (``{}`` or an empty list starts over).

API: <https://github.com/HackerNews/API>. One request per item, ``batch_rows`` of them (1 to
10,000) sent at once with :func:`inlet_pdk.http.send_all` (the host runs them concurrently);
each page makes one batch (when any item was not ``null``) followed by a checkpoint. Items
the API answers ``null`` for are skipped. Values land as the API sends them: ``text`` stays
HTML (entities are not decoded), ``time`` becomes a UTC timestamp, ``kids`` the number of
direct replies.

Every module is imported here, at the top: in the component only modules imported when it
was built exist.
"""

from __future__ import annotations

import dataclasses
import json
from typing import Any, Callable, Dict, Iterator, List, Optional, Sequence

import inlet_pdk as pdk
from inlet_pdk.http import Request

DEFAULT_BASE = "https://hacker-news.firebaseio.com/v0"
"""The public API root."""
DEFAULT_INITIAL = 1000
"""Items a first sync of ``items`` reads by default."""
MAX_BATCH_ROWS = 10_000
"""The largest page (items fetched at once) whatever the connection asks."""

_I64_MIN, _I64_MAX = -(2**63), 2**63 - 1


@dataclasses.dataclass
class Config:
    """The connection's ``config``."""

    base_url: str = DEFAULT_BASE
    """API root; the default is the public API."""
    initial_items: int = DEFAULT_INITIAL
    """On a first sync of ``items``, how many of the newest items to read."""
    max_items_per_sync: int = 0
    """At most this many items per sync of ``items`` (0: no limit)."""


@dataclasses.dataclass
class ItemsState:
    """The resume point of ``items``: the last id read."""

    last_id: int


@dataclasses.dataclass
class TopState:
    """The resume point of ``top_stories`` within a run: the list being read (the top
    stories when the read began) and how far it got. An empty list (``{}``) starts over."""

    ids: List[int] = dataclasses.field(default_factory=list)
    pos: int = 0


@dataclasses.dataclass
class Item:
    """An item of ``/v0/item/<id>.json`` (unknown keys such as ``parts`` are ignored)."""

    id: int
    """Unique, increasing."""
    type: Optional[str] = None
    """story, comment, job, poll, pollopt."""
    by: Optional[str] = None
    """Author."""
    time: Optional[int] = None
    """Unix seconds."""
    title: Optional[str] = None
    """Story title."""
    url: Optional[str] = None
    """Story URL."""
    text: Optional[str] = None
    """Comment or story text (HTML)."""
    score: Optional[int] = None
    """Votes."""
    descendants: Optional[int] = None
    """Comment count."""
    parent: Optional[int] = None
    """Parent item of a comment."""
    kids: Optional[List[int]] = None
    """Direct replies."""
    deleted: Optional[bool] = None
    """Whether deleted."""
    dead: Optional[bool] = None
    """Whether dead."""


ITEM_FIELDS: List[pdk.Field] = [
    pdk.field("id", pdk.INT64, False),
    pdk.field("type", pdk.UTF8, True),
    pdk.field("by", pdk.UTF8, True),
    pdk.field("time", pdk.TIMESTAMP_MICROS, True),
    pdk.field("title", pdk.UTF8, True),
    pdk.field("url", pdk.UTF8, True),
    pdk.field("text", pdk.UTF8, True),
    pdk.field("score", pdk.INT64, True),
    pdk.field("descendants", pdk.INT64, True),
    pdk.field("parent", pdk.INT64, True),
    pdk.field("kids", pdk.INT64, True),
    pdk.field("deleted", pdk.BOOLEAN, True),
    pdk.field("dead", pdk.BOOLEAN, True),
]
"""The columns of the ``items`` stream."""

TOP_FIELDS: List[pdk.Field] = [pdk.field("rank", pdk.INT64, False)] + ITEM_FIELDS
"""The columns of the ``top_stories`` stream: the rank, then the item's."""


# --- JSON checked as serde checks it in the Rust plugin -------------------------------


class _Pairs(list):
    """A JSON object as its ``(key, value)`` pairs, in the order of the document."""


def _shown(value: Any) -> str:
    """A JSON value as serde names it in an "invalid type" message."""
    if value is None:
        return "null"
    if isinstance(value, bool):
        return f"boolean `{'true' if value else 'false'}`"
    if isinstance(value, int):
        return f"integer `{value}`"
    if isinstance(value, float):
        return f"floating point `{value!r}`"
    if isinstance(value, str):
        return f"string {json.dumps(value, ensure_ascii=False)}"
    if isinstance(value, list) and not isinstance(value, _Pairs):
        return "sequence"
    return "map"


def _i64(value: Any) -> int:
    """A JSON integer that fits in 64 bits, else ``ValueError`` (serde's ``i64``)."""
    if isinstance(value, bool) or not isinstance(value, int):
        raise ValueError(f"invalid type: {_shown(value)}, expected i64")
    if not _I64_MIN <= value <= _I64_MAX:
        raise ValueError(f"invalid value: integer `{value}`, expected i64")
    return value


def _string(value: Any) -> str:
    """A JSON string, else ``ValueError``."""
    if not isinstance(value, str):
        raise ValueError(f"invalid type: {_shown(value)}, expected a string")
    return value


def _boolean(value: Any) -> bool:
    """A JSON boolean, else ``ValueError``."""
    if not isinstance(value, bool):
        raise ValueError(f"invalid type: {_shown(value)}, expected a boolean")
    return value


def _i64_list(value: Any) -> List[int]:
    """A JSON array of 64-bit integers, else ``ValueError``."""
    if not isinstance(value, list) or isinstance(value, _Pairs):
        raise ValueError(f"invalid type: {_shown(value)}, expected a sequence")
    return [_i64(v) for v in value]


def _optional(check: Callable[[Any], Any]) -> Callable[[Any], Any]:
    """``check`` for a value that may be ``null`` (an ``Option`` in Rust)."""

    def run(value: Any) -> Any:
        return None if value is None else check(value)

    return run


_ITEM_KEYS: Dict[str, Callable[[Any], Any]] = {
    "id": _i64,
    "type": _optional(_string),
    "by": _optional(_string),
    "time": _optional(_i64),
    "title": _optional(_string),
    "url": _optional(_string),
    "text": _optional(_string),
    "score": _optional(_i64),
    "descendants": _optional(_i64),
    "parent": _optional(_i64),
    "kids": _optional(_i64_list),
    "deleted": _optional(_boolean),
    "dead": _optional(_boolean),
}


def parse_item(body: bytes, id: int) -> Optional[Item]:
    """Parse an item body; ``None`` for ``null`` (an id that does not exist). A body that
    does not fit is a :class:`~inlet_pdk.DataError` naming the item. The keys are checked
    in the order of the document, as serde does: a wrong value or a known key given twice
    is an error when reached, a missing ``id`` at the end; unknown keys are ignored."""
    try:
        value = json.loads(body, object_pairs_hook=_Pairs)
    except ValueError as e:
        raise pdk.DataError(f"item {id}: {e}") from None
    if value is None:
        return None
    if not isinstance(value, _Pairs):
        raise pdk.DataError(f"item {id}: invalid type: {_shown(value)}, expected struct Item")
    fields: Dict[str, Any] = {}
    for key, v in value:
        check = _ITEM_KEYS.get(key)
        if check is None:
            continue
        if key in fields:
            raise pdk.DataError(f"item {id}: duplicate field `{key}`")
        try:
            fields[key] = check(v)
        except ValueError as e:
            raise pdk.DataError(f"item {id}: {e}") from None
    if "id" not in fields:
        raise pdk.DataError(f"item {id}: missing field `id`")
    return Item(**fields)


def item_row(item: Item) -> Dict[str, Any]:
    """An item as a row of the ``items`` columns (``time`` in microseconds, saturating as
    the Rust plugin's; ``kids`` as the number of replies)."""
    micros = None
    if item.time is not None:
        micros = max(_I64_MIN, min(_I64_MAX, item.time * 1_000_000))
    return {
        "id": item.id,
        "type": item.type,
        "by": item.by,
        "time": micros,
        "title": item.title,
        "url": item.url,
        "text": item.text,
        "score": item.score,
        "descendants": item.descendants,
        "parent": item.parent,
        "kids": None if item.kids is None else len(item.kids),
        "deleted": item.deleted,
        "dead": item.dead,
    }


# --- Config, state and HTTP -------------------------------------------------------------


def parse_config(config: Dict[str, Any]) -> Config:
    """The checked config; a :class:`~inlet_pdk.ConfigError` names the field."""
    c = pdk.parse_config(config, Config)
    for name in ("initial_items", "max_items_per_sync"):
        v = getattr(c, name)
        if not _I64_MIN <= v <= _I64_MAX:
            raise pdk.ConfigError(name, f"invalid value: integer `{v}`, expected i64")
    if not (c.base_url.startswith("https://") or c.base_url.startswith("http://")):
        raise pdk.ConfigError("base_url", "must be an http(s) URL")
    if c.initial_items < 1:
        raise pdk.ConfigError("initial_items", "must be at least 1")
    if c.max_items_per_sync < 0:
        raise pdk.ConfigError("max_items_per_sync", "must be 0 (no limit) or more")
    return c


def base(c: Config) -> str:
    """The API root without trailing slashes."""
    return c.base_url.rstrip("/")


def _bad_state(message: str) -> pdk.StateError:
    """A saved state that does not fit (as :func:`inlet_pdk.parse_state` words it)."""
    return pdk.StateError(
        f"cannot read the saved state ({message}); reset it with `inlet state reset`"
    )


def parse_items_state(state: Optional[Dict[str, Any]]) -> Optional[ItemsState]:
    """The resume point of ``items``, ``None`` when there is none."""
    s = pdk.parse_state(state, ItemsState)
    if s is not None and not _I64_MIN <= s.last_id <= _I64_MAX:
        raise _bad_state(f"last_id: {s.last_id} does not fit in 64 bits")
    return s


def parse_top_state(state: Optional[Dict[str, Any]]) -> Optional[TopState]:
    """The resume point of ``top_stories``, ``None`` when there is none."""
    s = pdk.parse_state(state, TopState)
    if s is None:
        return None
    if s.pos < 0:
        raise _bad_state(f"pos: {s.pos} is negative")
    for v in s.ids:
        if not _I64_MIN <= v <= _I64_MAX:
            raise _bad_state(f"ids: {v} does not fit in 64 bits")
    return s


def get_json(url: str, check: Callable[[Any], Any]) -> Any:
    """GET ``url`` and parse its JSON body with ``check`` (as ``Request::json`` in Rust:
    a non-2xx status is an error, a body that does not fit is a data error)."""
    resp = pdk.http.get(url)
    pdk.http.check_status(url, resp)
    try:
        return check(json.loads(resp.body))
    except ValueError as e:
        raise pdk.DataError(f"{url}: response is not the JSON expected: {e}") from None


def fetch_items(base: str, ids: Sequence[int]) -> List[Optional[Item]]:
    """Items by id, fetched at once (the host runs the requests concurrently), in order;
    ``None`` where the API answers ``null``. The first failure, in order, is raised."""
    urls = [f"{base}/item/{id}.json" for id in ids]
    answers = pdk.http.send_all([Request.get(u) for u in urls])
    if len(answers) != len(ids):
        raise pdk.OtherError(
            f"asked for {len(ids)} items, the host answered {len(answers)}"
        )
    out: List[Optional[Item]] = []
    for url, id, answer in zip(urls, ids, answers):
        if isinstance(answer, pdk.PluginError):
            raise answer
        pdk.http.check_status(url, answer)
        out.append(parse_item(answer.body, id))
    return out


_VARIANTS = {
    pdk.AuthError: "Auth",
    pdk.UnavailableError: "Unavailable",
    pdk.DataError: "Data",
    pdk.StateError: "State",
    pdk.UnknownStreamError: "UnknownStream",
    pdk.DeniedError: "Denied",
    pdk.OtherError: "Other",
}


def describe(e: pdk.PluginError) -> str:
    """An error as the Rust plugin shows it in a check (``Unavailable("...")``)."""
    if isinstance(e, pdk.ConfigError):
        field = json.dumps(e.field, ensure_ascii=False)
        message = json.dumps(e.message, ensure_ascii=False)
        return f"Config(FieldError {{ field: {field}, message: {message} }})"
    return f"{_VARIANTS.get(type(e), 'Other')}({json.dumps(e.message, ensure_ascii=False)})"


# --- The reads ----------------------------------------------------------------------------


def read_items(base: str, next_id: int, end_id: int, batch_rows: int) -> Iterator[pdk.Item]:
    """Items ``next_id ..= end_id``, ``batch_rows`` per page: each page a batch (unless
    every item was ``null``) and the checkpoint ``{"last_id": <its last id>}``."""
    while next_id <= end_id:
        last = min(next_id + batch_rows - 1, end_id)
        b = pdk.BatchBuilder(ITEM_FIELDS)
        for item in fetch_items(base, range(next_id, last + 1)):
            if item is not None:
                b.append(item_row(item))
        next_id = last + 1
        if b.rows > 0:
            yield b.finish()
        yield pdk.checkpoint(ItemsState(last_id=last))


def read_top(base: str, ids: List[int], pos: int, batch_rows: int) -> Iterator[pdk.Item]:
    """The stories ``ids[pos:]`` with their rank (position in ``ids`` + 1), ``batch_rows``
    per page: each page a batch and the checkpoint ``{"ids": ids, "pos": <its end>}``."""
    while pos < len(ids):
        end = min(pos + batch_rows, len(ids))
        b = pdk.BatchBuilder(TOP_FIELDS)
        for i, item in enumerate(fetch_items(base, ids[pos:end])):
            if item is not None:
                row = item_row(item)
                row["rank"] = pos + i + 1
                b.append(row)
        pos = end
        if b.rows > 0:
            yield b.finish()
        yield pdk.checkpoint(TopState(ids=list(ids), pos=end))


class HackerNews(pdk.Plugin):
    """The plugin: ``items`` (incremental by id) and ``top_stories`` (full refresh)."""

    def spec(self) -> Dict[str, Any]:
        """The JSON Schema of the config."""
        return {
            "$schema": "https://json-schema.org/draft/2020-12/schema",
            "title": "hackernews-py",
            "type": "object",
            "additionalProperties": False,
            "properties": {
                "base_url": {
                    "type": "string",
                    "default": DEFAULT_BASE,
                    "description": "API root",
                },
                "initial_items": {
                    "type": "integer",
                    "minimum": 1,
                    "default": DEFAULT_INITIAL,
                    "description": "On a first sync of items, how many of the newest to read",
                },
                "max_items_per_sync": {
                    "type": "integer",
                    "minimum": 0,
                    "default": 0,
                    "description": "At most this many items per sync (0: no limit)",
                },
            },
        }

    def validate(self, config: Dict[str, Any]) -> None:
        """Check the config, without I/O."""
        parse_config(config)

    def check(self, config: Dict[str, Any]) -> List[pdk.CheckItem]:
        """One item, ``api reachable``: whether ``maxitem.json`` answers a number."""
        c = parse_config(config)
        url = f"{base(c)}/maxitem.json"
        try:
            newest = get_json(url, _i64)
            return [pdk.CheckItem("api reachable", True, f"{url}: newest item {newest}")]
        except pdk.PluginError as e:
            return [pdk.CheckItem("api reachable", False, f"{url}: {describe(e)}")]

    def streams(self, config: Dict[str, Any]) -> List[pdk.Stream]:
        """``items`` and ``top_stories``."""
        parse_config(config)
        return [
            pdk.Stream("items", list(ITEM_FIELDS), primary_key=["id"],
                       cursor_candidates=["id"], incremental=True),
            pdk.Stream("top_stories", list(TOP_FIELDS), primary_key=["id"],
                       cursor_candidates=[], incremental=False),
        ]

    def read(self, request: pdk.Read) -> Iterator[pdk.Item]:
        """Open a read: the work the Rust plugin's ``open`` does (the config, the newest
        id or the top stories list, the saved state) happens here, before the first page,
        so its errors are those of ``open``; the pages come from the generator returned."""
        c = parse_config(request.config)
        root = base(c)
        batch_rows = min(max(request.batch_rows, 1), MAX_BATCH_ROWS)
        if request.stream == "items":
            newest = get_json(f"{root}/maxitem.json", _i64)
            # The resume point: the saved state of an incremental sync, or a checkpoint of
            # this run when a full refresh is resumed (a new full refresh gets none).
            saved = parse_items_state(request.state)
            if saved is not None:
                next_id = saved.last_id + 1
            else:
                next_id = max(newest - c.initial_items + 1, 1)
            end_id = newest
            if c.max_items_per_sync > 0:
                end_id = min(end_id, next_id + c.max_items_per_sync - 1)
            return read_items(root, next_id, end_id, batch_rows)
        if request.stream == "top_stories":
            # A full refresh has no state between runs; within a run, a read resumed from a
            # checkpoint goes on with the same list from where it got.
            resumed = parse_top_state(request.state)
            if resumed is not None and resumed.ids:
                ids, pos = resumed.ids, min(resumed.pos, len(resumed.ids))
            else:
                ids, pos = get_json(f"{root}/topstories.json", _i64_list), 0
            return read_top(root, ids, pos, batch_rows)
        raise pdk.UnknownStreamError(
            f"`{request.stream}`: this plugin has items, top_stories"
        )
