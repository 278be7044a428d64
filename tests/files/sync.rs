//! End-to-end: the `files` source landing in a local lake through the real `inlet` binary.

use std::{collections::BTreeMap, fs, io::Write};

use inlet_testkit::{TestProject, lake::*};

const STREAMS: &str = r#"
[connections.c.config.streams.clicks]
glob = "clicks/*.jsonl"

[connections.c.config.streams.orders]
glob = "exports/*.csv"
"#;

fn write_clicks(p: &TestProject, name: &str, ids: std::ops::Range<i64>) -> Vec<serde_json::Value> {
    let mut f = fs::File::create(p.data(&format!("clicks/{name}"))).unwrap();
    let mut rows = Vec::new();
    for id in ids {
        let v = serde_json::json!({
            "event_id": id,
            "user": format!("u{}", id % 17),
            "amount": (id as f64) / 8.0,
            "ok": id % 2 == 0,
            "ctx": {"page": format!("/p/{}", id % 5), "tags": ["a", id]},
            "big": 9_007_199_254_740_993_i64 + id,
        });
        writeln!(f, "{v}").unwrap();
        rows.push(v);
    }
    rows
}

#[test]
fn the_quickstart_lands_the_sample_files_exactly() {
    let p = TestProject::new("");
    let src = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../../examples/quickstart");
    for sub in ["clicks", "exports"] {
        for e in fs::read_dir(src.join("data").join(sub)).unwrap() {
            let e = e.unwrap();
            fs::copy(
                e.path(),
                p.data(&format!("{sub}/{}", e.file_name().to_string_lossy())),
            )
            .unwrap();
        }
    }
    let config = fs::read_to_string(src.join("inlet.toml")).unwrap();
    assert!(config.contains("url = \"file://../../lake\""));
    p.write_toml(config.replace("file://../../lake", "file://./lake"));
    let out = p.ok(&["--json", "sync", "quickstart"]);
    let run: serde_json::Value = serde_json::from_str(&out).unwrap();
    assert_eq!(run["outcome"], "succeeded");
    assert_eq!(run["streams"]["clicks"]["rows"], 3000);
    assert_eq!(run["streams"]["orders"]["rows"], 1000);

    // Value by value against the input.
    let clicks_dir = p.lake().join("quickstart/clicks");
    let landed = rows_as_text(&clicks_dir, "event_id");
    assert_eq!(landed.len(), 3000);
    for e in fs::read_dir(p.data("clicks")).unwrap() {
        for line in fs::read_to_string(e.unwrap().path()).unwrap().lines() {
            let v: serde_json::Value = serde_json::from_str(line).unwrap();
            let id = v["event_id"].as_i64().unwrap();
            let row = &landed[&id];
            assert_eq!(row["page"], v["page"].as_str().unwrap());
            assert_eq!(row["user_id"], v["user_id"].to_string());
            assert_eq!(
                row["device"],
                v["device"].to_string(),
                "nested objects are kept as JSON text"
            );
            match v.get("referrer").and_then(|r| r.as_str()) {
                Some(r) => assert_eq!(row["referrer"], r),
                None => assert!(!row.contains_key("referrer")),
            }
        }
    }
    let orders = rows_as_text(&p.lake().join("quickstart/orders"), "order_id");
    assert_eq!(orders.len(), 1000);
    let mut csv_total = 0.0;
    for e in fs::read_dir(p.data("exports")).unwrap() {
        let text = fs::read_to_string(e.unwrap().path()).unwrap();
        for line in text.lines().skip(1) {
            let f: Vec<&str> = line.split(',').collect();
            let row = &orders[&f[0].parse::<i64>().unwrap()];
            assert_eq!(
                row["amount"].parse::<f64>().unwrap(),
                f[2].parse::<f64>().unwrap()
            );
            assert_eq!(row["status"], f[4]);
            assert_eq!(row["created_at"], f[5]);
            csv_total += f[2].parse::<f64>().unwrap();
        }
    }

    // Hive layout, readable by outside engines with the exact counts and values.
    for f in parquet_files(&p.lake()) {
        let rel = f
            .strip_prefix(p.lake())
            .unwrap()
            .to_string_lossy()
            .into_owned();
        let parts: Vec<&str> = rel.split('/').collect();
        assert_eq!(parts.len(), 4, "{rel}");
        assert!(parts[2].starts_with("extracted_at=20"), "{rel}");
    }
    if let Some(py) = outside_python() {
        let lake = p.lake();
        let got = python(
            &py,
            &format!(
                "import duckdb, pyarrow.dataset as ds\n\
                 c = duckdb.sql(\"select count(*), count(distinct event_id), sum(event_id), count(referrer) from read_parquet('{0}/quickstart/clicks/**/*.parquet', hive_partitioning=true, union_by_name=true)\").fetchone()\n\
                 o = duckdb.sql(\"select count(*), round(sum(amount), 2) from read_parquet('{0}/quickstart/orders/**/*.parquet', hive_partitioning=true)\").fetchone()\n\
                 t = ds.dataset('{0}/quickstart/orders', format='parquet', partitioning='hive').to_table()\n\
                 print(c[0], c[1], c[2], c[3], o[0], o[1], t.num_rows, 'extracted_at' in t.column_names)",
                lake.display()
            ),
        );
        let referrers = fs::read_dir(p.data("clicks"))
            .unwrap()
            .flat_map(|e| {
                fs::read_to_string(e.unwrap().path())
                    .unwrap()
                    .lines()
                    .map(str::to_string)
                    .collect::<Vec<_>>()
            })
            .filter(|l| {
                serde_json::from_str::<serde_json::Value>(l)
                    .unwrap()
                    .get("referrer")
                    .is_some_and(|r| !r.is_null())
            })
            .count();
        let expected = format!(
            "3000 3000 {} {referrers} 1000 {:.2} 1000 True",
            (1..=3000).sum::<i64>(),
            (csv_total * 100.0).round() / 100.0
        );
        assert_eq!(got, expected);
    }
}

#[test]
fn a_second_sync_lands_nothing_and_a_new_file_lands_only_its_rows() {
    let p = TestProject::new(STREAMS);
    let rows = write_clicks(&p, "a.jsonl", 0..500);
    let run = p.sync_json(&[]);
    assert_eq!(run["streams"]["clicks"]["rows"], 500);
    let seq_after_first = p.state_json()["seq"].clone();

    let run = p.sync_json(&[]);
    assert_eq!(run["streams"]["clicks"]["rows"], 0);
    assert_eq!(run["streams"]["clicks"]["files"], 0);
    assert_eq!(
        p.state_json()["seq"],
        seq_after_first,
        "a no-op sync must not change state"
    );

    write_clicks(&p, "b.jsonl", 500..800);
    let run = p.sync_json(&[]);
    assert_eq!(run["streams"]["clicks"]["rows"], 300);
    let mut ids = int_column(&p.lake().join("c/clicks"), "event_id");
    ids.sort();
    assert_eq!(ids, (0..800).collect::<Vec<_>>());

    // Exact values survive: 64-bit integers beyond 2^53, fractions, booleans, nested JSON.
    let landed = rows_as_text(&p.lake().join("c/clicks"), "event_id");
    for v in rows {
        let row = &landed[&v["event_id"].as_i64().unwrap()];
        assert_eq!(row["big"], v["big"].to_string());
        assert_eq!(
            row["amount"].parse::<f64>().unwrap(),
            v["amount"].as_f64().unwrap()
        );
        assert_eq!(row["ok"], v["ok"].to_string());
        assert_eq!(row["ctx"], v["ctx"].to_string());
    }
}

#[test]
fn lines_appended_to_a_file_land_once_and_a_rewritten_file_is_read_again() {
    let p = TestProject::new(STREAMS);
    write_clicks(&p, "log.jsonl", 0..100);
    p.sync_json(&[]);
    let mut f = fs::OpenOptions::new()
        .append(true)
        .open(p.data("clicks/log.jsonl"))
        .unwrap();
    for id in 100..150 {
        writeln!(f, "{{\"event_id\": {id}}}").unwrap();
    }
    drop(f);
    let run = p.sync_json(&[]);
    assert_eq!(run["streams"]["clicks"]["rows"], 50);
    let mut ids = int_column(&p.lake().join("c/clicks"), "event_id");
    ids.sort();
    assert_eq!(ids, (0..150).collect::<Vec<_>>());
}

#[test]
fn a_full_refresh_re_extracts_everything_as_a_new_extraction() {
    let p = TestProject::new(STREAMS);
    write_clicks(&p, "a.jsonl", 0..100);
    p.sync_json(&[]);
    let run = p.sync_json(&["--full-refresh"]);
    assert_eq!(run["streams"]["clicks"]["rows"], 100);
    assert_eq!(run["streams"]["clicks"]["mode"], "full_refresh");
    // Two extractions, each complete, told apart by run id.
    let batches = read_batches(&p.lake().join("c/clicks"));
    let mut by_run: BTreeMap<String, usize> = BTreeMap::new();
    for b in &batches {
        let runs = b.column_by_name("_inlet_run_id").unwrap();
        let runs = runs
            .as_any()
            .downcast_ref::<arrow_array::StringArray>()
            .unwrap();
        for i in 0..b.num_rows() {
            *by_run.entry(runs.value(i).to_string()).or_default() += 1;
        }
    }
    assert_eq!(by_run.values().copied().collect::<Vec<_>>(), vec![100, 100]);
}

#[test]
fn bad_lines_fail_with_file_and_line_and_nothing_lands() {
    let p = TestProject::new(STREAMS);
    let mut f = fs::File::create(p.data("clicks/bad.jsonl")).unwrap();
    writeln!(
        f,
        "{{\"event_id\": 1}}\n{{\"event_id\": 2}}\n{{\"event_id\": 3, oops}}\n{{\"event_id\": 4}}"
    )
    .unwrap();
    drop(f);
    let out = p.inlet(&["sync", "c"]);
    assert_eq!(out.status.code(), Some(1));
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        stdout.contains("bad.jsonl:3") && stdout.contains("malformed JSON"),
        "{stdout}"
    );
    assert!(
        parquet_files(&p.lake()).is_empty(),
        "nothing may land from a failed stream"
    );
    assert!(
        p.state_json()["streams"].get("clicks").is_none(),
        "the failed stream's state must not advance"
    );
    let runs = p.ok(&["runs", "c"]);
    assert!(
        runs.contains("failed") && runs.contains("bad.jsonl:3"),
        "{runs}"
    );

    // The same input under the skip policy: 3 rows land, 1 is counted.
    p.write_config(STREAMS, "on_bad_record = \"skip\"");
    let run = p.sync_json(&[]);
    assert_eq!(run["streams"]["clicks"]["rows"], 3);
    assert_eq!(run["streams"]["clicks"]["skipped"], 1);
}

#[test]
fn csv_rows_with_the_wrong_number_of_fields_are_reported_by_line() {
    let p = TestProject::new(STREAMS);
    fs::write(p.data("exports/o.csv"), "id,name\n1,a\n2,b,extra\n3,c\n").unwrap();
    let out = p.inlet(&["sync", "c"]);
    assert_eq!(out.status.code(), Some(1));
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        stdout.contains("o.csv:3") && stdout.contains("3 fields, the header has 2"),
        "{stdout}"
    );
}

#[test]
fn bad_config_names_the_field_and_the_line() {
    let p = TestProject::new(
        STREAMS
            .replace(
                "glob = \"exports/*.csv\"",
                "glob = \"exports/*.csv\"\ndelimter = \";\"",
            )
            .as_str(),
    );
    let out = p.inlet(&["sync", "c"]);
    assert_eq!(out.status.code(), Some(2));
    let err = String::from_utf8_lossy(&out.stderr);
    let text = p.config_text();
    let line = text
        .lines()
        .position(|l| l.starts_with("delimter"))
        .unwrap()
        + 1;
    assert!(
        err.contains(&format!("inlet.toml:{line}:")) && err.contains("unknown field `delimter`"),
        "{err}"
    );
    assert!(parquet_files(&p.lake()).is_empty());

    // A top-level typo is located by the TOML parser itself.
    p.write_toml("version = 1\n[destinations.local]\nurl = \"file://./lake\"\nurll = 1\n");
    let out = p.inlet(&["sync", "--all"]);
    assert_eq!(out.status.code(), Some(2));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("inlet.toml:4") && err.contains("urll"),
        "{err}"
    );
}

#[test]
fn a_missing_directory_is_a_clear_error_and_check_says_what_to_fix() {
    let p = TestProject::new(STREAMS);
    fs::remove_dir_all(p.root().join("data")).unwrap();
    let out = p.inlet(&["sync", "c"]);
    assert_eq!(out.status.code(), Some(1));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("connection `c`") && err.contains("data") && err.contains("No such file"),
        "{err}"
    );
    let out = p.inlet(&["check", "c"]);
    assert_eq!(out.status.code(), Some(3));
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(stdout.contains("FAIL directory readable"), "{stdout}");
    assert!(parquet_files(&p.lake()).is_empty());
}

#[test]
fn discover_reports_inferred_schemas_and_connectors_lists_files() {
    let p = TestProject::new(STREAMS);
    write_clicks(&p, "a.jsonl", 0..10);
    fs::write(p.data("exports/o.csv"), "id,name,price\n1,a,1.5\n").unwrap();
    let v: serde_json::Value = serde_json::from_str(&p.ok(&["--json", "discover", "c"])).unwrap();
    let clicks = &v["streams"][0];
    assert_eq!(clicks["name"], "clicks");
    let fields: Vec<(String, String)> = clicks["schema"]["fields"]
        .as_array()
        .unwrap()
        .iter()
        .map(|f| {
            (
                f["name"].as_str().unwrap().to_string(),
                f["data_type"].to_string(),
            )
        })
        .collect();
    assert!(
        fields
            .iter()
            .any(|(n, t)| n == "event_id" && t.contains("Int64")),
        "{fields:?}"
    );
    let out = p.ok(&["connectors"]);
    assert!(out.contains("files") && out.contains("builtin"), "{out}");
    let spec: serde_json::Value = serde_json::from_str(&p.ok(&["spec", "files"])).unwrap();
    assert_eq!(spec["additionalProperties"], false);
}

#[test]
fn an_unterminated_last_line_waits_until_it_is_complete_or_the_file_has_settled() {
    let p = TestProject::new(STREAMS);
    let live = p.data("clicks/live.jsonl");
    fs::write(
        &live,
        "{\"event_id\": 1}\n{\"event_id\": 2}\n{\"event_id\": 3, \"pa",
    )
    .unwrap();
    let run = p.sync_json(&[]);
    assert_eq!(
        run["streams"]["clicks"]["rows"], 2,
        "a half-written line is not read"
    );
    let mut f = fs::OpenOptions::new().append(true).open(&live).unwrap();
    writeln!(f, "ge\": \"/x\"}}\n{{\"event_id\": 4}}").unwrap();
    drop(f);
    let run = p.sync_json(&[]);
    assert_eq!(
        run["streams"]["clicks"]["rows"], 2,
        "the completed line and the next one"
    );
    let rows = rows_as_text(&p.lake().join("c/clicks"), "event_id");
    assert_eq!(rows.keys().copied().collect::<Vec<_>>(), vec![1, 2, 3, 4]);
    assert_eq!(rows[&3]["page"], "/x");

    // A finished export without a final newline: read in full once it has settled.
    let old = p.data("clicks/old.jsonl");
    fs::write(&old, "{\"event_id\": 10}\n{\"event_id\": 11}").unwrap();
    let past = std::time::SystemTime::now() - std::time::Duration::from_secs(600);
    fs::File::options()
        .write(true)
        .open(&old)
        .unwrap()
        .set_modified(past)
        .unwrap();
    let run = p.sync_json(&[]);
    assert_eq!(run["streams"]["clicks"]["rows"], 2);
    let run = p.sync_json(&[]);
    assert_eq!(run["streams"]["clicks"]["rows"], 0);
}

#[test]
fn an_unterminated_last_csv_row_of_a_file_being_written_waits_for_the_next_run() {
    let p = TestProject::new(STREAMS);
    let path = p.data("exports/live.csv");
    fs::write(&path, "id,name\n1,alice\n2,bo").unwrap();
    let run = p.sync_json(&[]);
    assert_eq!(run["streams"]["orders"]["rows"], 1);
    let mut f = fs::OpenOptions::new().append(true).open(&path).unwrap();
    writeln!(f, "b\n3,carol").unwrap();
    drop(f);
    let run = p.sync_json(&[]);
    assert_eq!(run["streams"]["orders"]["rows"], 2);
    let rows = rows_as_text(&p.lake().join("c/orders"), "id");
    assert_eq!(rows[&2]["name"], "bob");
    assert_eq!(rows[&3]["name"], "carol");
}

/// Issue 16, item 7: numbers lost digits in the files source. A CSV column holding
/// `12345678901234567890.12`, `0.10` and `abc` was widened to text holding the float's
/// rendering (`12345678901234567000`, `0.1`), and decimal-looking values (`12.50`) landed
/// as float64, in CSV and JSON lines alike.
#[test]
fn numbers_land_exactly_from_csv_and_json_lines() {
    let p = TestProject::new(
        r#"
[connections.c.config.streams.money_csv]
glob = "csv/*.csv"

[connections.c.config.streams.money_json]
glob = "json/*.jsonl"
"#,
    );
    fs::write(
        p.data("csv/money.csv"),
        "id,amount,price,odd,big\n\
         1,12345678901234567890.12,12.50,1e-3,123456789012345678901234567890\n\
         2,0.10,0.1,-0,1\n\
         3,abc,7,NaN,-9223372036854775808\n",
    )
    .unwrap();
    fs::write(
        p.data("json/money.jsonl"),
        "{\"id\": 1, \"amount\": 12345678901234567890.12, \"price\": 12.50, \"odd\": 1e-3, \"big\": 123456789012345678901234567890}\n\
         {\"id\": 2, \"amount\": 0.10, \"price\": 0.1, \"odd\": -0, \"big\": 1}\n\
         {\"id\": 3, \"amount\": \"abc\", \"price\": 7, \"odd\": \"NaN\", \"big\": -9223372036854775808}\n",
    )
    .unwrap();
    p.sync_json(&[]);
    for stream in ["money_csv", "money_json"] {
        let landed = rows_as_text(&p.lake().join(format!("c/{stream}")), "id");
        let col = |name: &str| -> Vec<String> {
            landed.values().map(|r| r[name].clone()).collect::<Vec<_>>()
        };
        assert_eq!(
            col("amount"),
            ["12345678901234567890.12", "0.10", "abc"],
            "{stream}"
        );
        assert_eq!(col("price"), ["12.50", "0.10", "7.00"], "{stream}");
        assert_eq!(
            col("big"),
            [
                "123456789012345678901234567890",
                "1",
                "-9223372036854775808"
            ],
            "{stream}"
        );
        let batches = read_batches(&p.lake().join(format!("c/{stream}")));
        let schema = batches[0].schema();
        let type_of = |name: &str| schema.field_with_name(name).unwrap().data_type().clone();
        assert_eq!(type_of("amount"), arrow_schema::DataType::Utf8, "{stream}");
        assert_eq!(
            type_of("price"),
            arrow_schema::DataType::Decimal128(38, 2),
            "{stream}"
        );
        assert_eq!(
            type_of("big"),
            arrow_schema::DataType::Decimal128(38, 0),
            "{stream}"
        );
    }
    // CSV: `1e-3`, `-0` and `NaN` make text that keeps each field as written.
    let csv = rows_as_text(&p.lake().join("c/money_csv"), "id");
    let odd: Vec<&str> = csv.values().map(|r| r["odd"].as_str()).collect();
    assert_eq!(odd, ["1e-3", "-0", "NaN"]);
    // JSON lines: the string "NaN" among numbers makes text, numbers as written.
    let json = rows_as_text(&p.lake().join("c/money_json"), "id");
    let odd: Vec<&str> = json.values().map(|r| r["odd"].as_str()).collect();
    assert_eq!(odd, ["1e-3", "-0", "NaN"]);
    if let Some(py) = outside_python() {
        let got = python(
            &py,
            &format!(
                "import pyarrow.dataset as ds\n\
                 t = ds.dataset('{}/c/money_csv', format='parquet', partitioning='hive').to_table().sort_by('id')\n\
                 print(t.schema.field('price').type, [str(v) for v in t.column('price').to_pylist()])",
                p.lake().display()
            ),
        );
        assert_eq!(got, "decimal128(38, 2) ['12.50', '0.10', '7.00']");
    }
}

#[test]
fn a_reader_thread_that_panics_fails_the_run_and_neither_rows_nor_state_move() {
    let p = TestProject::new(STREAMS);
    write_clicks(&p, "a.jsonl", 0..500);
    write_clicks(&p, "b.jsonl", 500..800);
    // The reader thread panics right after sending its second batch (b.jsonl's), with
    // a.jsonl read and checkpointed before it.
    p.assert_panicked_sync("files-batch#2", &["c"], "clicks");
    // Without the failpoint, every row lands once.
    let run = p.sync_json(&[]);
    assert_eq!(run["streams"]["clicks"]["rows"], 800);
    let mut ids = int_column(&p.lake().join("c/clicks"), "event_id");
    ids.sort();
    assert_eq!(ids, (0..800).collect::<Vec<_>>());
}
