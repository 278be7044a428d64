"""Tests of hackernews-py in plain CPython, against the Rust plugin's recordings
(``../hackernews/testdata/replay-*.json``): ``python3 test_plugin.py``.

They assert what the end-to-end test of the Rust plugin (tests/plugins/sync.rs) and its
conformance run assert, so both plugins land the same rows and checkpoints from the same
recordings: 39 items with ``initial_items = 40`` (item 41000022 is ``null``), then the 20
new ones from the second recording, then none; 12 ranked top stories.

The SDK is ``../../../crates/inlet-pdk/python`` (and its ``bindings``), or the folder the
environment variable ``INLET_PDK_PYTHON`` names.
"""

import datetime
import json
import os
import sys
import unittest
from typing import Any, Dict, List, Optional, Tuple

HERE = os.path.dirname(os.path.abspath(__file__))
SDK = os.environ.get(
    "INLET_PDK_PYTHON",
    os.path.normpath(os.path.join(HERE, "..", "..", "..", "crates", "inlet-pdk", "python")),
)
sys.path[:0] = [HERE, SDK, os.path.join(SDK, "bindings")]

from componentize_py_types import Err  # noqa: E402
from inlet_pdk import rows_of  # noqa: E402
from inlet_pdk._export import source_class  # noqa: E402
from inlet_pdk.testing import Replay, read_all  # noqa: E402
from wit_world.imports import host as wit_host  # noqa: E402
from wit_world.imports import types as wit  # noqa: E402

import plugin  # noqa: E402

API = "https://hacker-news.firebaseio.com"
TESTDATA = os.path.join(HERE, "..", "hackernews", "testdata")
REPLAY_1 = os.path.join(TESTDATA, "replay-1.json")
REPLAY_2 = os.path.join(TESTDATA, "replay-2.json")
BASE = 41_000_000
CONFIG = {"initial_items": 40}
TOP_IDS = [BASE + n for n in (57, 53, 49, 45, 41, 37, 33, 29, 25, 21, 17, 13)]
UTC = datetime.timezone.utc
TEXT_2 = "Comment 1: I&#x27;d say it depends \u2014 na\u00efve take &gt; none"


def pages(
    config: Dict[str, Any],
    stream: str,
    state: Optional[Dict[str, Any]] = None,
    batch_rows: int = 1000,
) -> List[Tuple[List[int], Optional[Dict[str, Any]]]]:
    """Each answer of ``next`` as (rows per batch, checkpoint), through the component's
    bridge, as the host reads them."""
    src = source_class(plugin)()
    src.open(
        wit.ReadRequest(
            config=json.dumps(config),
            stream=stream,
            incremental=state is not None,
            cursor_field=None,
            state=json.dumps(state) if state is not None else None,
            batch_rows=batch_rows,
        )
    )
    out = []
    while True:
        events = src.next()
        if events is None:
            return out
        batches = [e.value.rows for e in events if isinstance(e, wit.Event_Batch)]
        checkpoints = [json.loads(e.value) for e in events if isinstance(e, wit.Event_Checkpoint)]
        out.append((batches, checkpoints[-1] if checkpoints else None))


def config_error(config: Dict[str, Any]) -> wit.FieldError:
    """The field error ``validate`` answers for ``config``."""
    try:
        source_class(plugin)().validate(json.dumps(config))
    except Err as e:
        assert isinstance(e.value, wit.PluginError_Config), e.value
        return e.value.value
    raise AssertionError(f"{config} was accepted")


class Schema(unittest.TestCase):
    def test_streams_columns_and_keys_are_the_rust_plugins(self):
        streams = {s.name: s for s in source_class(plugin)().discover("{}")}
        self.assertEqual(list(streams), ["items", "top_stories"])
        items = streams["items"]
        cols = [(f.name, type(f.type).__name__, f.nullable) for f in items.fields]
        self.assertEqual(
            cols,
            [
                ("id", "ColumnType_Int64", False),
                ("type", "ColumnType_Utf8", True),
                ("by", "ColumnType_Utf8", True),
                ("time", "ColumnType_TimestampMicros", True),
                ("title", "ColumnType_Utf8", True),
                ("url", "ColumnType_Utf8", True),
                ("text", "ColumnType_Utf8", True),
                ("score", "ColumnType_Int64", True),
                ("descendants", "ColumnType_Int64", True),
                ("parent", "ColumnType_Int64", True),
                ("kids", "ColumnType_Int64", True),
                ("deleted", "ColumnType_Boolean", True),
                ("dead", "ColumnType_Boolean", True),
            ],
        )
        self.assertEqual((items.primary_key, items.cursor_candidates, items.incremental),
                         (["id"], ["id"], True))
        top = streams["top_stories"]
        self.assertEqual([(f.name, f.nullable) for f in top.fields][:2],
                         [("rank", False), ("id", False)])
        self.assertIsInstance(top.fields[0].type, wit.ColumnType_Int64)
        self.assertEqual(top.fields[1:], items.fields)
        self.assertEqual((top.primary_key, top.cursor_candidates, top.incremental),
                         (["id"], [], False))

    def test_spec_has_the_three_fields_and_their_defaults(self):
        spec = json.loads(source_class(plugin)().spec())
        self.assertFalse(spec["additionalProperties"])
        props = spec["properties"]
        self.assertEqual(props["base_url"]["default"], "https://hacker-news.firebaseio.com/v0")
        self.assertEqual((props["initial_items"]["default"], props["initial_items"]["minimum"]),
                         (1000, 1))
        self.assertEqual(props["max_items_per_sync"]["default"], 0)


class Config(unittest.TestCase):
    def test_defaults(self):
        c = plugin.parse_config({})
        self.assertEqual((c.base_url, c.initial_items, c.max_items_per_sync),
                         ("https://hacker-news.firebaseio.com/v0", 1000, 0))
        self.assertEqual(plugin.base(plugin.parse_config({"base_url": "http://x/v0//"})),
                         "http://x/v0")

    def test_errors_name_the_field(self):
        self.assertEqual(config_error({"initial_itemz": 3}).field, "initial_itemz")
        e = config_error({"initial_items": 0})
        self.assertEqual((e.field, e.message), ("initial_items", "must be at least 1"))
        e = config_error({"max_items_per_sync": -1})
        self.assertEqual((e.field, e.message),
                         ("max_items_per_sync", "must be 0 (no limit) or more"))
        e = config_error({"base_url": "ftp://example.org"})
        self.assertEqual((e.field, e.message), ("base_url", "must be an http(s) URL"))
        self.assertEqual(config_error({"initial_items": "40"}).field, "initial_items")
        self.assertEqual(config_error({"initial_items": True}).field, "initial_items")
        self.assertEqual(config_error({"initial_items": 2**64}).field, "initial_items")
        self.assertEqual(config_error({"base_url": None}).field, "base_url")

    def test_a_read_with_a_bad_config_fails_naming_the_field(self):
        with Replay.from_file(REPLAY_1, origin=API) as api:
            with self.assertRaises(Err) as e:
                read_all(plugin, {"initial_items": 0}, "items")
        self.assertEqual(e.exception.value.value.field, "initial_items")
        self.assertEqual(api.requests, [])


class Check(unittest.TestCase):
    def test_api_reachable(self):
        with Replay.from_file(REPLAY_1, origin=API):
            items = source_class(plugin)().check("{}")
        self.assertEqual(len(items), 1)
        self.assertEqual((items[0].name, items[0].ok), ("api reachable", True))
        self.assertEqual(items[0].message,
                         "https://hacker-news.firebaseio.com/v0/maxitem.json: newest item 41000040")

    def test_an_unreachable_api_is_a_failed_item_not_an_error(self):
        with Replay.from_file(REPLAY_1, origin=API):
            items = source_class(plugin)().check(json.dumps({"base_url": f"{API}/v9"}))
        url = f"{API}/v9/maxitem.json"
        self.assertEqual((items[0].name, items[0].ok), ("api reachable", False))
        self.assertEqual(items[0].message, f'{url}: Data("{url}: HTTP 404")')


class Items(unittest.TestCase):
    def test_first_sync_reads_the_newest_40_ids_39_items(self):
        with Replay.from_file(REPLAY_1, origin=API) as api:
            rows, state = read_all(plugin, CONFIG, "items", batch_rows=10)
        ids = [r["id"] for r in rows]
        self.assertEqual(len(rows), 39)
        self.assertEqual((ids[0], ids[-1]), (BASE + 1, BASE + 40))
        self.assertEqual(ids, [i for i in range(BASE + 1, BASE + 41) if i != BASE + 22])
        self.assertEqual(state, {"last_id": BASE + 40})
        self.assertEqual(api.requests[0], f"{API}/v0/maxitem.json")
        self.assertEqual(len(api.requests), 41)
        self.assertEqual(api.requests[-1], f"{API}/v0/item/41000040.json")

        by_id = {r["id"]: r for r in rows}
        self.assertEqual(
            by_id[BASE + 1],
            {
                "id": BASE + 1, "type": "story", "by": "pg",
                "time": datetime.datetime(2024, 11, 23, 22, 13, 20, tzinfo=UTC),
                "title": "Show HN: A tiny Parquet viewer in the browser",
                "url": "https://example.org/post/41000001", "text": None, "score": 242,
                "descendants": 155, "parent": None, "kids": 2, "deleted": None, "dead": None,
            },
        )
        # HTML stays as the API sends it: entities are not decoded.
        self.assertEqual(by_id[BASE + 2]["text"], TEXT_2)
        self.assertEqual((by_id[BASE + 2]["parent"], by_id[BASE + 2]["kids"]), (BASE, 1))
        self.assertEqual(by_id[BASE + 6]["text"], "Apply &amp; build <i>pipelines</i>")
        self.assertEqual(by_id[BASE + 6]["type"], "job")
        deleted = by_id[BASE + 10]
        self.assertEqual((deleted["deleted"], deleted["by"], deleted["text"]), (True, None, None))
        self.assertEqual(by_id[BASE + 14]["dead"], True)
        self.assertEqual(by_id[BASE + 25]["title"], "\u00dcber-fast CSV parsing with SIMD")
        self.assertEqual(by_id[BASE + 40]["time"],
                         datetime.datetime(2024, 11, 23, 22, 37, 23, tzinfo=UTC))

    def test_pages_of_batch_rows_each_a_batch_and_its_checkpoint(self):
        with Replay.from_file(REPLAY_1, origin=API):
            got = pages(CONFIG, "items", batch_rows=10)
        self.assertEqual(
            got,
            [
                ([10], {"last_id": BASE + 10}),
                ([10], {"last_id": BASE + 20}),
                ([9], {"last_id": BASE + 30}),
                ([10], {"last_id": BASE + 40}),
            ],
        )

    def test_a_page_of_only_nulls_is_a_checkpoint_without_a_batch(self):
        with Replay.from_file(REPLAY_1, origin=API):
            got = pages(CONFIG, "items", state={"last_id": BASE + 21}, batch_rows=1)
        self.assertEqual(got[0], ([], {"last_id": BASE + 22}))
        self.assertEqual(got[1], ([1], {"last_id": BASE + 23}))
        self.assertEqual(len(got), 19)  # 22 ..= 40, one id a page

    def test_resume_reads_only_the_new_items_then_none(self):
        with Replay.from_file(REPLAY_2, origin=API):
            rows, state = read_all(plugin, CONFIG, "items", state={"last_id": BASE + 40},
                                   batch_rows=10)
        self.assertEqual([r["id"] for r in rows], list(range(BASE + 41, BASE + 61)))
        self.assertEqual(state, {"last_id": BASE + 60})
        self.assertEqual(rows[-1]["text"], TEXT_2.replace("1:", "59:"))
        with Replay.from_file(REPLAY_2, origin=API) as api:
            rows, state = read_all(plugin, CONFIG, "items", state={"last_id": BASE + 60},
                                   batch_rows=10)
        self.assertEqual((rows, state), ([], None))
        self.assertEqual(api.requests, [f"{API}/v0/maxitem.json"])

    def test_max_items_per_sync_caps_a_sync(self):
        config = {"initial_items": 40, "max_items_per_sync": 15}
        with Replay.from_file(REPLAY_1, origin=API):
            rows, state = read_all(plugin, config, "items", batch_rows=10)
        self.assertEqual([r["id"] for r in rows], list(range(BASE + 1, BASE + 16)))
        self.assertEqual(state, {"last_id": BASE + 15})
        with Replay.from_file(REPLAY_2, origin=API):
            rows, state = read_all(plugin, config, "items", state=state, batch_rows=10)
        self.assertEqual(len(rows), 14)  # 16..=30 without the null 22
        self.assertEqual(state, {"last_id": BASE + 30})

    def test_initial_items_beyond_the_first_id_starts_at_1(self):
        recording = {"/v0/maxitem.json": 3, "/v0/item/1.json": {"id": 1},
                     "/v0/item/2.json": None, "/v0/item/3.json": {"id": 3, "kids": []}}
        with Replay(recording, origin=API):
            rows, state = read_all(plugin, {}, "items")
        self.assertEqual([(r["id"], r["kids"], r["type"]) for r in rows],
                         [(1, None, None), (3, 0, None)])
        self.assertEqual(state, {"last_id": 3})

    def test_a_large_page_goes_to_the_host_1000_requests_at_a_time(self):
        recording = {"/v0/maxitem.json": 2500}
        recording.update({f"/v0/item/{i}.json": {"id": i, "time": i} for i in range(1, 2501)})
        calls = []
        with Replay(recording, origin=API):
            fetch_many = wit_host.http_fetch_many

            def counting(requests):
                calls.append(len(requests))
                return fetch_many(requests)

            wit_host.http_fetch_many = counting
            rows, state = read_all(plugin, {"initial_items": 5000}, "items", batch_rows=8192)
        self.assertEqual(calls, [1000, 1000, 500])
        self.assertEqual(len(rows), 2500)
        self.assertEqual(rows[-1]["time"], datetime.datetime.fromtimestamp(2500, UTC))
        self.assertEqual(state, {"last_id": 2500})

    def test_a_missing_item_or_a_bad_one_fails_the_read_naming_it(self):
        with open(REPLAY_2, encoding="utf-8") as f:
            ahead = {**json.load(f), "/v0/maxitem.json": BASE + 61}
        with Replay(ahead, origin=API):
            with self.assertRaises(Err) as e:
                read_all(plugin, CONFIG, "items", state={"last_id": BASE + 55})
        # Not recorded: 404, a permanent data error (as the Rust SDK's check_status).
        self.assertIsInstance(e.exception.value, wit.PluginError_Data)
        self.assertEqual(e.exception.value.value, f"{API}/v0/item/41000061.json: HTTP 404")
        bad = {"/v0/maxitem.json": 2, "/v0/item/1.json": {"id": 1},
               "/v0/item/2.json": {"id": 2, "time": "yesterday"}}
        with Replay(bad, origin=API):
            with self.assertRaises(Err) as e:
                read_all(plugin, {}, "items")
        self.assertIsInstance(e.exception.value, wit.PluginError_Data)
        self.assertEqual(e.exception.value.value,
                         'item 2: invalid type: string "yesterday", expected i64')
        for body, message in [
            ({"by": "pg"}, "item 2: missing field `id`"),
            ([2], "item 2: invalid type: sequence, expected struct Item"),
            ({"id": 2, "kids": [1.5]}, "item 2: invalid type: floating point `1.5`, expected i64"),
            ({"id": 2, "dead": 1}, "item 2: invalid type: integer `1`, expected a boolean"),
        ]:
            with Replay({**bad, "/v0/item/2.json": body}, origin=API):
                with self.assertRaises(Err) as e:
                    read_all(plugin, {}, "items")
            self.assertEqual(e.exception.value.value, message)

    def test_a_saved_state_that_does_not_fit_is_a_state_error(self):
        with Replay.from_file(REPLAY_1, origin=API):
            with self.assertRaises(Err) as e:
                read_all(plugin, CONFIG, "items", state={"last": 3})
        self.assertIsInstance(e.exception.value, wit.PluginError_State)


class TopStories(unittest.TestCase):
    def test_twelve_ranked_stories_and_a_checkpoint_with_the_list(self):
        with Replay.from_file(REPLAY_1, origin=API) as api:
            rows, state = read_all(plugin, CONFIG, "top_stories", batch_rows=5)
        self.assertEqual([r["rank"] for r in rows], list(range(1, 13)))
        self.assertEqual([r["id"] for r in rows], TOP_IDS)
        self.assertEqual(state, {"ids": TOP_IDS, "pos": 12})
        self.assertEqual(api.requests[0], f"{API}/v0/topstories.json")
        self.assertEqual(len(api.requests), 13)
        first = rows[0]
        self.assertEqual(
            (first["title"], first["by"], first["score"], first["descendants"], first["kids"]),
            ("\u00dcber-fast CSV parsing with SIMD", "simonw", 199, 84, 2),
        )
        self.assertEqual(first["time"], datetime.datetime(2024, 11, 23, 22, 47, 52, tzinfo=UTC))
        self.assertEqual((rows[11]["id"], rows[11]["title"]),
                         (BASE + 13, "WebAssembly components, explained"))

    def test_pages_and_checkpoints(self):
        with Replay.from_file(REPLAY_1, origin=API):
            got = pages(CONFIG, "top_stories", batch_rows=5)
        self.assertEqual(got, [([5], {"ids": TOP_IDS, "pos": 5}),
                               ([5], {"ids": TOP_IDS, "pos": 10}),
                               ([2], {"ids": TOP_IDS, "pos": 12})])

    def test_a_resumed_read_goes_on_with_the_same_list(self):
        ids = TOP_IDS[:3] + [BASE + 22] + TOP_IDS[3:6]
        with Replay.from_file(REPLAY_2, origin=API) as api:
            rows, state = read_all(plugin, CONFIG, "top_stories",
                                   state={"ids": ids, "pos": 2}, batch_rows=5)
        # Rank is the position in the list, so the null item 22 leaves a gap.
        self.assertEqual([(r["rank"], r["id"]) for r in rows],
                         [(3, TOP_IDS[2]), (5, TOP_IDS[3]), (6, TOP_IDS[4]), (7, TOP_IDS[5])])
        self.assertEqual(state, {"ids": ids, "pos": 7})
        self.assertNotIn(f"{API}/v0/topstories.json", api.requests)
        with Replay.from_file(REPLAY_1, origin=API):
            self.assertEqual(pages(CONFIG, "top_stories", state={"ids": ids, "pos": 99}), [])

    def test_an_empty_state_starts_over(self):
        with Replay.from_file(REPLAY_1, origin=API):
            rows, state = read_all(plugin, CONFIG, "top_stories", state={})
        self.assertEqual(len(rows), 12)
        self.assertEqual(state, {"ids": TOP_IDS, "pos": 12})


class Streams(unittest.TestCase):
    def test_an_unknown_stream_fails_open(self):
        src = source_class(plugin)()
        with Replay.from_file(REPLAY_1, origin=API) as api:
            with self.assertRaises(Err) as e:
                src.open(wit.ReadRequest(config="{}", stream="comments", incremental=False,
                                         cursor_field=None, state=None, batch_rows=10))
        self.assertIsInstance(e.exception.value, wit.PluginError_UnknownStream)
        self.assertEqual(e.exception.value.value,
                         "`comments`: this plugin has items, top_stories")
        self.assertEqual(api.requests, [])

    def test_rows_of_a_batch_hold_the_same_values_as_read_all(self):
        with Replay.from_file(REPLAY_1, origin=API):
            b = plugin.HackerNews().read(
                plugin.pdk.Read(config=CONFIG, stream="items", incremental=False,
                                cursor_field=None, state=None, batch_rows=3))
            batch = next(b)
        self.assertEqual([r["id"] for r in rows_of(batch)], [BASE + 1, BASE + 2, BASE + 3])


if __name__ == "__main__":
    unittest.main()
