//! The `postgres` source against a real primary and streaming hot standby.

use std::{
    collections::{BTreeMap, BTreeSet},
    fs,
    sync::{
        Arc,
        atomic::{AtomicBool, Ordering},
    },
    time::{Duration, Instant},
};

use arrow_array::{
    Array, BinaryArray, BooleanArray, Date32Array, Decimal128Array, Decimal256Array, Float32Array,
    Float64Array, Int16Array, Int32Array, Int64Array, ListArray, RecordBatch, StringArray,
    StructArray, Time64MicrosecondArray, TimestampMicrosecondArray,
};
use arrow_schema::DataType;
use inlet_testkit::postgres::{PASSWORD, PgPair, project};
use inlet_testkit::{
    TestProject,
    lake::{
        SparkTable, column, downcast, kill_after_files, outside_python, parquet_files, python,
        read_batches, spark_and_pyarrow, spark_python, spark_tables_and_pyarrow,
    },
};

fn ids_by_run(batches: &[RecordBatch], key: &str) -> BTreeMap<String, Vec<i64>> {
    let mut out: BTreeMap<String, Vec<i64>> = BTreeMap::new();
    for b in batches {
        let col = b.column_by_name(key).unwrap();
        let ids: Vec<i64> = match col.as_any().downcast_ref::<Int64Array>() {
            Some(a) => a.values().to_vec(),
            None => col
                .as_any()
                .downcast_ref::<Int32Array>()
                .unwrap()
                .values()
                .iter()
                .map(|v| i64::from(*v))
                .collect(),
        };
        let runs = b.column_by_name("_inlet_run_id").unwrap();
        let runs = runs.as_any().downcast_ref::<StringArray>().unwrap();
        for (i, id) in ids.into_iter().enumerate() {
            out.entry(runs.value(i).to_string()).or_default().push(id);
        }
    }
    out
}

fn assert_no_duplicates_within_a_run(by_run: &BTreeMap<String, Vec<i64>>) {
    for (run, ids) in by_run {
        let set: BTreeSet<_> = ids.iter().collect();
        assert_eq!(set.len(), ids.len(), "run {run} landed a row twice");
    }
}

#[test]
fn refuses_the_primary_reads_the_standby_and_discovers_tables() {
    let pair = PgPair::start("");
    pair.seed(
        "shop",
        "CREATE TABLE public.orders (id bigint PRIMARY KEY, note text, updated_at timestamptz NOT NULL);
         CREATE INDEX ON public.orders (updated_at);
         INSERT INTO public.orders SELECT g, 'n' || g, '2026-01-01'::timestamptz + g * interval '1 second' FROM generate_series(1, 1000) g;
         CREATE TABLE public.events (id int, at date NOT NULL, v text, PRIMARY KEY (id, at)) PARTITION BY RANGE (at);
         CREATE TABLE public.events_2025 PARTITION OF public.events FOR VALUES FROM ('2025-01-01') TO ('2026-01-01');
         CREATE TABLE public.events_2026 PARTITION OF public.events FOR VALUES FROM ('2026-01-01') TO ('2027-01-01');
         INSERT INTO public.events SELECT g, '2025-06-01'::date + (g % 400), 'e' FROM generate_series(1, 300) g;
         CREATE VIEW public.big_orders AS SELECT * FROM public.orders WHERE id > 500;
         ANALYZE;",
    );

    // The primary is refused, by check and by sync, naming the setting to change.
    let p = project(&pair.config_toml(pair.primary_port, "shop"), "", "");
    let out = p.inlet(&["check", "c"]);
    assert!(!out.status.success());
    let text =
        String::from_utf8_lossy(&out.stdout).to_string() + &String::from_utf8_lossy(&out.stderr);
    assert!(text.contains("is a primary"), "{text}");
    let err = p.fails(&["sync", "c"]);
    assert!(
        err.contains("is a primary") && err.contains("allow_primary"),
        "{err}"
    );
    assert!(!p.lake().join("c").join("public.orders").exists());

    // allow_primary reads it, with a warning.
    let p = project(
        &format!(
            "{}allow_primary = true\n",
            pair.config_toml(pair.primary_port, "shop")
        ),
        "",
        "",
    );
    let out = p.inlet(&["sync", "c"]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(String::from_utf8_lossy(&out.stderr).contains("allow_primary"));

    // The standby: check passes, discover lists the tables, the partitioned parent as one
    // stream, and the view; sync lands the tables (a view is synced only when named, with
    // a cursor).
    let p = pair.standby_project("shop", "", "", "");
    let check = p.ok(&["check", "c"]);
    assert!(check.contains("replica"), "{check}");
    // A login without SELECT on some tables: check names those tables and the GRANT.
    pair.primary(
        "shop",
        &format!("CREATE ROLE reader LOGIN PASSWORD '{PASSWORD}'; GRANT SELECT ON public.orders TO reader;"),
    );
    pair.wait_replay();
    let limited = project(
        &pair
            .config_toml(pair.standby_port, "shop")
            .replace("user = \"postgres\"", "user = \"reader\""),
        "",
        "",
    );
    let out = limited.inlet(&["check", "c"]);
    let text =
        String::from_utf8_lossy(&out.stdout).into_owned() + &String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success(), "{text}");
    let denied = text
        .lines()
        .find(|l| l.contains("no SELECT privilege on"))
        .unwrap_or_else(|| panic!("{text}"));
    assert!(
        denied.contains("public.events")
            && denied.contains("GRANT pg_read_all_data TO reader")
            && !denied.contains("public.orders"),
        "{denied}"
    );
    let discovered: serde_json::Value =
        serde_json::from_str(&p.ok(&["--json", "discover", "c"])).unwrap();
    let text = discovered.to_string();
    assert!(
        text.contains("public.orders") && text.contains("public.events"),
        "{text}"
    );
    assert!(text.contains("public.big_orders"), "{text}");
    assert!(
        !text.contains("events_2025"),
        "leaf partitions are read through their parent: {text}"
    );
    assert!(
        text.contains("updated_at"),
        "cursor candidates listed: {text}"
    );
    let view = discovered["streams"]
        .as_array()
        .unwrap()
        .iter()
        .find(|s| s["name"] == "public.big_orders")
        .unwrap();
    assert_eq!(view["opt_in"], true, "{view}");
    let report = p.sync_json(&[]);
    assert_eq!(report["streams"]["public.orders"]["rows"], 1000, "{report}");
    assert_eq!(report["streams"]["public.events"]["rows"], 300, "{report}");
    assert!(
        report["streams"].get("public.big_orders").is_none(),
        "{report}"
    );
    // Named with a cursor, the view lands; the next run reads only from its cursor on.
    let views = pair.standby_project(
        "shop",
        "",
        "",
        "[connections.c.streams.\"public.big_orders\"]\nmode = \"incremental\"\ncursor_field = \"id\"\n",
    );
    assert_eq!(
        views.sync_json(&[])["streams"]["public.big_orders"]["rows"],
        500
    );
    assert_eq!(
        views.sync_json(&[])["streams"]["public.big_orders"]["rows"],
        0,
        "the inclusive lower bound re-reads the saved id, whose row (hashed by content: a \
         view has no xmin) was landed already"
    );
    // Named without a cursor: a clear error naming the stream and the setting.
    let bare = pair.standby_project(
        "shop",
        "",
        "",
        "[connections.c.streams.\"public.big_orders\"]\nmode = \"full_refresh\"\n",
    );
    let err = bare.fails(&["sync", "c"]);
    assert!(
        err.contains("is a view") && err.contains("cursor_field"),
        "{err}"
    );

    // A partitioned table by xmin: one watermark over its leaves; a view cannot use xmin.
    let p = pair.standby_project(
        "shop",
        "",
        "",
        "[connections.c.streams.\"public.events\"]\nmode = \"incremental\"\ncursor_field = \"xmin\"\n",
    );
    assert_eq!(p.sync_json(&[])["streams"]["public.events"]["rows"], 300);
    pair.primary(
        "shop",
        "INSERT INTO public.events VALUES (1001, '2025-02-01', 'new'), (1002, '2026-02-01', 'new')",
    );
    pair.wait_replay();
    assert_eq!(p.sync_json(&[])["streams"]["public.events"]["rows"], 2);
    // A partition attached later brings rows with old xmins: the next run re-syncs.
    pair.primary(
        "shop",
        "CREATE TABLE public.events_2027 (id int, at date NOT NULL, v text, PRIMARY KEY (id, at));
         INSERT INTO public.events_2027 SELECT g, '2027-03-01', 'old' FROM generate_series(5001, 5040) g;",
    );
    assert_eq!(p.sync_json(&[])["streams"]["public.events"]["rows"], 0);
    pair.primary(
        "shop",
        "ALTER TABLE public.events ATTACH PARTITION public.events_2027 FOR VALUES FROM ('2027-01-01') TO ('2028-01-01')",
    );
    pair.wait_replay();
    assert_eq!(p.sync_json(&[])["streams"]["public.events"]["rows"], 342);
    let p = pair.standby_project(
        "shop",
        "",
        "",
        "[connections.c.streams.\"public.big_orders\"]\nmode = \"incremental\"\ncursor_field = \"xmin\"\n",
    );
    assert!(p.fails(&["sync", "c"]).contains("is a view"));
}

#[test]
fn wrong_password_and_unreachable_host_fail_clearly() {
    let pair = PgPair::start("");
    let config = pair
        .config_toml(pair.standby_port, "postgres")
        .replace("${env:INLET_TEST_PGPASSWORD}", "${env:WRONG_PW}");
    let p = project(&config, "max_retries = 0", "");
    let out = p
        .command(&["sync", "c"])
        .env("WRONG_PW", "not-the-Password-42")
        .output()
        .unwrap();
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("authentication failed") && err.contains("password"),
        "{err}"
    );
    assert!(!err.contains("not-the-Password-42"), "{err}");

    let dead = inlet_testkit::CLOSED_PORT;
    let p = project(&pair.config_toml(dead, "postgres"), "max_retries = 0", "");
    let started = Instant::now();
    let err = p.fails(&["sync", "c"]);
    assert!(
        err.contains(&format!("127.0.0.1:{dead}")) && err.contains("host"),
        "{err}"
    );
    assert!(started.elapsed() < Duration::from_secs(30));

    let p = project(
        &pair
            .config_toml(pair.standby_port, "postgres")
            .replace("database", "databse"),
        "",
        "",
    );
    let out = p.inlet(&["sync", "c"]);
    assert_eq!(out.status.code(), Some(2), "config errors exit 2");
    assert!(String::from_utf8_lossy(&out.stderr).contains("databse"));
}

/// Render an Arrow value as Postgres prints it (`TimeZone = UTC`, `DateStyle = ISO`).
fn pg_text(col: &dyn Array, row: usize) -> Option<String> {
    if col.is_null(row) {
        return None;
    }
    let trim_frac = |micros: i64| -> String {
        if micros == 0 {
            String::new()
        } else {
            format!(".{micros:06}").trim_end_matches('0').to_string()
        }
    };
    Some(match col.data_type() {
        DataType::Boolean => if downcast::<BooleanArray>(col).value(row) {
            "t"
        } else {
            "f"
        }
        .into(),
        DataType::Int16 => downcast::<Int16Array>(col).value(row).to_string(),
        DataType::Int32 => downcast::<Int32Array>(col).value(row).to_string(),
        DataType::Int64 => downcast::<Int64Array>(col).value(row).to_string(),
        DataType::Float32 => float_text(f64::from(downcast::<Float32Array>(col).value(row))),
        DataType::Float64 => float_text(downcast::<Float64Array>(col).value(row)),
        DataType::Decimal128(_, _) => downcast::<Decimal128Array>(col).value_as_string(row),
        DataType::Decimal256(_, _) => downcast::<Decimal256Array>(col).value_as_string(row),
        DataType::Utf8 => downcast::<StringArray>(col).value(row).to_string(),
        DataType::Binary => {
            let b = downcast::<BinaryArray>(col).value(row);
            format!(
                "\\x{}",
                b.iter().map(|x| format!("{x:02x}")).collect::<String>()
            )
        }
        DataType::Date32 => {
            let d = downcast::<Date32Array>(col).value(row);
            match d {
                i32::MAX => "infinity".into(),
                d if d == -i32::MAX => "-infinity".into(),
                d => (chrono::NaiveDate::from_ymd_opt(1970, 1, 1).unwrap()
                    + chrono::Duration::days(d.into()))
                .format("%Y-%m-%d")
                .to_string(),
            }
        }
        DataType::Time64(_) => {
            let t = downcast::<Time64MicrosecondArray>(col).value(row);
            let s = t / 1_000_000;
            format!(
                "{:02}:{:02}:{:02}{}",
                s / 3600,
                s / 60 % 60,
                s % 60,
                trim_frac(t % 1_000_000)
            )
        }
        DataType::Timestamp(_, tz) => {
            let t = downcast::<TimestampMicrosecondArray>(col).value(row);
            match t {
                i64::MAX => "infinity".into(),
                t if t == -i64::MAX => "-infinity".into(),
                t => {
                    let dt = chrono::DateTime::from_timestamp_micros(t)
                        .unwrap()
                        .naive_utc();
                    format!(
                        "{}{}{}",
                        dt.format("%Y-%m-%d %H:%M:%S"),
                        trim_frac(t.rem_euclid(1_000_000)),
                        if tz.is_some() { "+00" } else { "" }
                    )
                }
            }
        }
        DataType::Struct(_) => {
            let s = downcast::<StructArray>(col);
            let months = downcast::<Int32Array>(s.column(0).as_ref()).value(row);
            let days = downcast::<Int32Array>(s.column(1).as_ref()).value(row);
            let micros = downcast::<Int64Array>(s.column(2).as_ref()).value(row);
            interval_text(months, days, micros)
        }
        DataType::List(_) => {
            let l = downcast::<ListArray>(col);
            let values = l.value(row);
            let quote = matches!(values.data_type(), DataType::Utf8);
            let items: Vec<String> = (0..values.len())
                .map(|i| match pg_text(values.as_ref(), i) {
                    None => "NULL".into(),
                    Some(t)
                        if quote
                            && (t.is_empty()
                                || t.eq_ignore_ascii_case("null")
                                || t.contains([' ', ',', '"', '\\', '{', '}'])) =>
                    {
                        format!("\"{}\"", t.replace('\\', "\\\\").replace('"', "\\\""))
                    }
                    Some(t) => t,
                })
                .collect();
            format!("{{{}}}", items.join(","))
        }
        other => panic!("no renderer for {other:?}"),
    })
}

fn float_text(f: f64) -> String {
    if f.is_nan() {
        "NaN".into()
    } else if f.is_infinite() {
        if f > 0.0 {
            "Infinity".into()
        } else {
            "-Infinity".into()
        }
    } else {
        format!("{f}")
    }
}

fn interval_text(months: i32, days: i32, micros: i64) -> String {
    let mut parts = Vec::new();
    let plural = |n: i64, unit: &str| format!("{n} {unit}{}", if n.abs() == 1 { "" } else { "s" });
    let (y, m) = (months / 12, months % 12);
    if y != 0 {
        parts.push(plural(y.into(), "year"));
    }
    if m != 0 {
        parts.push(plural(m.into(), "mon"));
    }
    if days != 0 {
        parts.push(plural(days.into(), "day"));
    }
    if micros != 0 || parts.is_empty() {
        let sign = if micros < 0 { "-" } else { "" };
        let a = micros.unsigned_abs();
        let s = a / 1_000_000;
        let frac = a % 1_000_000;
        let frac = if frac == 0 {
            String::new()
        } else {
            format!(".{frac:06}").trim_end_matches('0').to_string()
        };
        parts.push(format!(
            "{sign}{:02}:{:02}:{:02}{frac}",
            s / 3600,
            s / 60 % 60,
            s % 60
        ));
    }
    parts.join(" ")
}

#[test]
fn type_corpus_lands_every_value_as_postgres_prints_it() {
    let pair = PgPair::start("");
    pair.seed(
        "types",
        r#"CREATE EXTENSION IF NOT EXISTS citext;
        CREATE TYPE mood AS ENUM ('sad', 'ok', 'happy');
        CREATE DOMAIN posint AS integer CHECK (VALUE > 0);
        CREATE TABLE corpus (
          id int PRIMARY KEY,
          c_int2 smallint, c_int4 integer, c_int8 bigint,
          c_num numeric(12,2), c_num_wide numeric(60,10), c_num_free numeric,
          c_real real, c_double double precision,
          c_text text, c_varchar varchar(20), c_char char(5), c_citext citext,
          c_bool boolean, c_bytea bytea, c_uuid uuid,
          c_date date, c_time time, c_timetz timetz, c_ts timestamp, c_tstz timestamptz,
          c_interval interval, c_json json, c_jsonb jsonb,
          c_int_arr int[], c_text_arr text[], c_matrix int[][],
          c_enum mood, c_domain posint,
          c_inet inet, c_cidr cidr, c_mac macaddr, c_money money,
          c_range int4range, c_tsv tsvector, c_point point, c_bit bit(4)
        );
        INSERT INTO corpus VALUES
        (1, -32768, -2147483648, -9223372036854775808,
         -9999999999.99, 12345678901234567890123456789012345678901234567890.0123456789, 3.14159265358979323846264338327950288419716939937510,
         3.25, -0.1, 'héllo "world"', 'v', 'ab', 'MiXeD', true, '\x00ff10', 'a0eebc99-9c0b-4ef8-bb6d-6bb9bd380a11',
         '2026-02-28', '23:59:59.999999', '12:34:56.5+05:30', '2026-11-24 01:02:03.000004', '1999-12-31 23:59:59.123456+00',
         '1 year 2 mons 3 days 04:05:06.789', '{"b": [1, 2.50, null], "a": "x"}', '{"b": [1, 2.50, null], "a": "x"}',
         '{1,NULL,3}', '{a,NULL,"b c"}', '{{1,2},{3,4}}',
         'happy', 7, '192.168.1.5', '10.0.0.0/8', '08:00:2b:01:02:03', 1234.56,
         '[1,10)', 'a fat cat', '(1.5,2)', B'1010'),
        (2, 32767, 2147483647, 9223372036854775807,
         0.05, -0.0000000001, 'NaN',
         'NaN', 'Infinity', '', NULL, 'x', NULL, false, '', NULL,
         'infinity', '00:00:00', '00:00:00+00', '-infinity', 'infinity',
         '-3 days', '[]', '{}',
         '{}', '{}', NULL,
         'sad', 1, '::1', '2001:db8::/32', 'ff:ff:ff:ff:ff:ff', -0.01,
         'empty', '', '(0,0)', B'0000'),
        (3, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL,
         NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL,
         NULL, NULL, NULL, NULL),
        (4, 0, 0, 0, 0, 0, '-1e-20', '-Infinity', 12345.678, 'line
break', 'x', '', 'a', true, NULL, '00000000-0000-0000-0000-000000000000',
         '0001-01-01', '12:00:00', '23:00:00-11', '2000-01-01 00:00:00', '1970-01-01 00:00:00+00',
         '00:00:00.000001', 'null', '"s"',
         '{-1}', '{"",NULL}', '{{NULL}}',
         'ok', 2147483647, '2001:db8::1/64', '192.168.0.0/16', '00:00:00:00:00:00', 0,
         '(,5]', 'x:1A', '(-1,-1)', B'1111');"#,
    );
    let p = pair.standby_project("types", "", "", "");
    let report = p.sync_json(&[]);
    assert_eq!(report["streams"]["public.corpus"]["rows"], 4, "{report}");

    let batches = read_batches(&p.stream_dir("public.corpus"));
    let schema = batches[0].schema();
    let ty = |name: &str| schema.field_with_name(name).unwrap().data_type().clone();
    assert_eq!(ty("c_num"), DataType::Decimal128(12, 2));
    // Wider than decimal(38) and `time`: their exact text by default (see types.rs).
    assert_eq!(ty("c_num_wide"), DataType::Utf8);
    assert_eq!(ty("c_time"), DataType::Utf8);
    assert_eq!(ty("c_num_free"), DataType::Utf8);
    assert_eq!(ty("c_money"), DataType::Decimal128(19, 2));
    assert_eq!(ty("c_domain"), DataType::Int32);
    assert_eq!(ty("c_matrix"), DataType::Utf8);
    assert_eq!(ty("c_bytea"), DataType::Binary);
    assert!(matches!(ty("c_tstz"), DataType::Timestamp(_, Some(tz)) if &*tz == "UTC"));
    assert!(matches!(ty("c_ts"), DataType::Timestamp(_, None)));
    assert!(matches!(ty("c_int_arr"), DataType::List(f) if f.data_type() == &DataType::Int32));
    assert!(matches!(ty("c_interval"), DataType::Struct(_)));
    let mut compared = 0;
    for field in schema.fields() {
        let name = field.name();
        if name.starts_with("_inlet") || name == "id" {
            continue;
        }
        // The simple protocol returns each type's output text.
        let expr = match name.as_str() {
            "c_money" => format!("{name}::numeric"),
            _ => name.to_string(),
        };
        let rows = pair.standby(
            "types",
            &format!("SELECT id, {expr} FROM corpus ORDER BY id"),
        );
        for r in rows {
            let id: i32 = r[0].as_deref().unwrap().parse().unwrap();
            let expected = r[1].clone();
            let mut found = None;
            for b in &batches {
                let ids = column::<Int32Array>(b, "id");
                for i in 0..b.num_rows() {
                    if ids.value(i) == id {
                        found = Some(pg_text(b.column_by_name(name).unwrap().as_ref(), i));
                    }
                }
            }
            let got = found.expect("row landed");
            assert_eq!(
                got,
                expected,
                "column {name} row {id} ({})",
                field.data_type()
            );
            compared += 1;
        }
    }
    assert_eq!(compared, 36 * 4);

    // An outside reader sees the same values: pyarrow for the wide decimal, the UTC
    // timestamp, the list with a NULL element and the interval struct; DuckDB reads the
    // stream as a hive-partitioned dataset.
    if let Some(py) = outside_python() {
        let dir = p.stream_dir("public.corpus");
        let code = format!(
            r#"
import glob, pyarrow.parquet as pq, pyarrow.compute as pc, duckdb
t = pq.read_table(sorted(glob.glob("{dir}/**/*.parquet", recursive=True)), columns=["id", "c_num_wide", "c_tstz", "c_int_arr", "c_interval"])
r = t.filter(pc.equal(t["id"], 1)).to_pylist()[0]
print(str(r["c_num_wide"]))
print(r["c_tstz"].isoformat())
print(r["c_int_arr"])
print(r["c_interval"])
print(duckdb.sql("select count(*), sum(c_int4), max(c_text) from read_parquet('{dir}/**/*.parquet', hive_partitioning = true)").fetchall())
print(duckdb.sql("select c_date::varchar, c_ts::varchar, c_tstz::varchar from read_parquet('{dir}/**/*.parquet') where id = 2").fetchall())
"#,
            dir = dir.display()
        );
        let out = python(&py, &code);
        let lines: Vec<&str> = out.lines().collect();
        assert_eq!(
            lines,
            vec![
                "12345678901234567890123456789012345678901234567890.0123456789",
                "1999-12-31T23:59:59.123456+00:00",
                "[1, None, 3]",
                "{'months': 14, 'days': 3, 'microseconds': 14706789000}",
                "[(4, -1, 'line\\nbreak')]",
                "[('infinity', '-infinity', 'infinity')]",
            ],
            "{out}"
        );
    }

    // Spark reads every column of every row as pyarrow does: once from the files, once
    // through the table inlet's printed Spark DDL creates (and its current-state view).
    if let Some(py) = spark_python() {
        let dir = p.stream_dir("public.corpus");
        let (readings, secs) = spark_and_pyarrow(&py, &[&dir]);
        eprintln!("Spark check of the type corpus: {secs:.1} s");
        let r = &readings[0];
        assert_eq!(r.spark_error, None, "{r:?}");
        assert!(r.mismatches.is_empty(), "{:#?}", r.mismatches);
        assert_eq!((r.rows, r.columns.len()), (4, 37 + 2), "{r:?}");
        let tables = SparkTable::all_of(&p, "c");
        let (readings, secs) = spark_tables_and_pyarrow(&py, &tables);
        eprintln!("Spark check of the type corpus through its DDL: {secs:.1} s");
        let r = &readings[0];
        assert_eq!(r.spark_error, None, "{r:?}");
        assert!(r.mismatches.is_empty(), "{:#?}", r.mismatches);
        assert_eq!(r.rows, 4, "{r:?}");
        assert_eq!(
            r.current,
            Some((4, 4)),
            "one row per key in the current-state view"
        );
    }
}

#[test]
fn a_type_that_lands_differently_is_recorded_and_old_files_stay_readable_beside_new_ones() {
    let pair = PgPair::start("");
    pair.seed(
        "wide",
        "CREATE TABLE t (id int PRIMARY KEY, n numeric(48,10), clock time, ns numeric(48,10)[]);
         INSERT INTO t VALUES (1, 12345678901234567890123456789012345678.0123456789, '23:59:59.999999', '{1.5,NULL}');",
    );
    // The old types, on request.
    let p = pair.standby_project(
        "wide",
        "wide_numeric = \"decimal256\"\ntime = \"time64\"\n",
        "",
        "",
    );
    p.sync_json(&[]);
    let old = read_batches(&p.stream_dir("public.t"));
    assert_eq!(
        old[0].schema().field_with_name("n").unwrap().data_type(),
        &DataType::Decimal256(48, 10)
    );
    pair.primary(
        "wide",
        "INSERT INTO t VALUES (2, -0.0000000001, '24:00:00', '{}')",
    );
    pair.wait_replay();
    // The defaults: text. The stream's history says what changed and why.
    p.write_toml(
        p.config_text()
            .replace("wide_numeric = \"decimal256\"\ntime = \"time64\"\n", ""),
    );
    let report = p.sync_json(&[]);
    assert_eq!(report["streams"]["public.t"]["rows"], 2, "{report}");
    let state: serde_json::Value = serde_json::from_str(&p.ok(&["state", "show", "c"])).unwrap();
    let changes = state["streams"]["public.t"]["cursor"]["schema_changes"].to_string();
    for change in [
        "column `n` (numeric(48,10)) lands as Utf8, was Decimal256(48, 10)",
        "column `clock` (time without time zone) lands as Utf8, was Time64(µs)",
        "column `ns` (numeric(48,10)[]) lands as List(Utf8), was List(Decimal256(48, 10))",
    ] {
        assert!(changes.contains(change), "{change}: {changes}");
    }
    // A third run with nothing changed records nothing more.
    p.sync_json(&[]);
    let again: serde_json::Value = serde_json::from_str(&p.ok(&["state", "show", "c"])).unwrap();
    assert_eq!(
        again["streams"]["public.t"]["cursor"]["schema_changes"],
        state["streams"]["public.t"]["cursor"]["schema_changes"]
    );

    // Old and new files, read as one stream.
    let Some(py) = outside_python() else { return };
    let dir = p.stream_dir("public.t");
    let out = python(
        &py,
        &format!(
            r#"
import duckdb, pyarrow as pa, pyarrow.dataset as ds, glob
d = "{d}"
files = sorted(glob.glob(d + "/**/*.parquet", recursive=True))
# DuckDB has no decimal wider than 38 digits: the Decimal256 files are pyarrow's to read.
for r in duckdb.sql(f"select id, clock::varchar from read_parquet('{{d}}/**/*.parquet', union_by_name=true, hive_partitioning=true) order by id, _inlet_run_id").fetchall(): print("duckdb", r)
for f in files:
    for r in ds.dataset(f, format="parquet").to_table(columns=["id", "n", "clock", "ns"]).to_pylist():
        print("pyarrow", r["id"], str(r["n"]), str(r["clock"]), [None if x is None else str(x) for x in r["ns"]])
"#,
            d = dir.display()
        ),
    );
    let lines: Vec<&str> = out.lines().collect();
    assert!(lines.contains(&"duckdb (1, '23:59:59.999999')"), "{out}");
    assert!(lines.contains(&"duckdb (2, '24:00:00')"), "{out}");
    for line in [
        "pyarrow 1 12345678901234567890123456789012345678.0123456789 23:59:59.999999 ['1.5000000000', None]",
        "pyarrow 2 -0.0000000001 24:00:00 []",
    ] {
        assert!(lines.contains(&line), "{line}: {out}");
    }
}

#[test]
fn full_and_incremental_syncs_of_a_standby_under_concurrent_writes_lose_nothing() {
    let pair = Arc::new(PgPair::start(""));
    pair.seed(
        "app",
        "CREATE TABLE items (id bigserial PRIMARY KEY, v int NOT NULL, note text,
                             updated_at timestamptz NOT NULL DEFAULT clock_timestamp());
         CREATE INDEX ON items (updated_at);
         INSERT INTO items (v, note, updated_at) SELECT g, repeat('x', g % 50), now() - interval '1 hour' + g * interval '1 ms' FROM generate_series(1, 60000) g;
         CREATE TABLE plain (id int PRIMARY KEY, v int NOT NULL);
         INSERT INTO plain SELECT g, 0 FROM generate_series(1, 20000) g;
         CREATE TABLE snap (id bigserial PRIMARY KEY, v int NOT NULL);
         INSERT INTO snap (v) SELECT 0 FROM generate_series(1, 30000) g;
         ANALYZE;",
    );
    let p = pair.standby_project(
        "app",
        "chunk_rows = 7000\nlookback_secs = 5\n",
        "parallelism = 2\nbatch_rows = 2000",
        "[connections.c.streams.\"public.items\"]\nmode = \"incremental\"\ncursor_field = \"updated_at\"\n\
         [connections.c.streams.\"public.plain\"]\nmode = \"incremental\"\ncursor_field = \"xmin\"\n\
         [connections.c.streams.\"public.snap\"]\nmode = \"full_refresh\"\n",
    );

    // A writer inserts and updates on the primary during the syncs.
    let stop = Arc::new(AtomicBool::new(false));
    let writer = {
        let pair = pair.clone();
        let stop = stop.clone();
        std::thread::spawn(move || {
            let mut n = 0;
            while !stop.load(Ordering::SeqCst) {
                pair.primary(
                    "app",
                    &format!(
                        "INSERT INTO items (v, note) SELECT {n}, 'new' FROM generate_series(1, 50);
                         UPDATE items SET v = v + 1, updated_at = clock_timestamp() WHERE id % 997 = {};
                         UPDATE plain SET v = v + 1 WHERE id % 499 = {};
                         INSERT INTO snap (v) SELECT 1 FROM generate_series(1, 20);
                         UPDATE snap SET v = v + 1 WHERE id % 101 = {};",
                        n % 997,
                        n % 499,
                        n % 101
                    ),
                );
                n += 1;
                std::thread::sleep(Duration::from_millis(20));
            }
        })
    };
    let first = p.sync_json(&[]);
    // Rows updated after the plan are left for the next run (their cursor is past the
    // planned upper bound).
    assert!(
        first["streams"]["public.items"]["rows"].as_u64().unwrap() > 55000,
        "{first}"
    );
    assert_eq!(first["streams"]["public.plain"]["rows"], 20000, "{first}");
    let second = p.sync_json(&[]);
    stop.store(true, Ordering::SeqCst);
    writer.join().unwrap();
    pair.wait_replay();
    let third = p.sync_json(&[]);

    // Full refresh under writes: each run lands every row that existed when it started
    // once; the run after the writer stopped equals the source.
    let snap = read_batches(&p.stream_dir("public.snap"));
    let by_run = ids_by_run(&snap, "id");
    assert_no_duplicates_within_a_run(&by_run);
    for (run, ids) in &by_run {
        let set: BTreeSet<i64> = ids.iter().copied().collect();
        assert!(
            (1..=30000).all(|i| set.contains(&i)),
            "run {run} missed seeded rows"
        );
    }
    let last: BTreeSet<i64> = by_run[third["run_id"].as_str().unwrap()]
        .iter()
        .copied()
        .collect();
    let source: BTreeSet<i64> = pair
        .primary("app", "SELECT id FROM snap")
        .into_iter()
        .map(|r| r[0].as_deref().unwrap().parse().unwrap())
        .collect();
    assert_eq!(last, source);
    let third_items = third["streams"]["public.items"]["rows"].as_u64().unwrap();
    assert!(
        third_items < 20000,
        "an incremental run reads only recent changes: {third}"
    );

    // Items: no duplicate within a run; the newest landed version of each row equals the
    // source; every source row landed.
    let batches = read_batches(&p.stream_dir("public.items"));
    assert_no_duplicates_within_a_run(&ids_by_run(&batches, "id"));
    let mut newest: BTreeMap<i64, (i64, i32)> = BTreeMap::new();
    for b in &batches {
        let ids = column::<Int64Array>(b, "id");
        let v = column::<Int32Array>(b, "v");
        let at = column::<TimestampMicrosecondArray>(b, "updated_at");
        for i in 0..b.num_rows() {
            let e = newest.entry(ids.value(i)).or_insert((i64::MIN, 0));
            if at.value(i) >= e.0 {
                *e = (at.value(i), v.value(i));
            }
        }
    }
    let source: BTreeMap<i64, (i64, i32)> = pair
        .primary(
            "app",
            "SELECT id, (extract(epoch from updated_at) * 1000000)::int8, v FROM items",
        )
        .into_iter()
        .map(|r| {
            (
                r[0].as_deref().unwrap().parse().unwrap(),
                (
                    r[1].as_deref().unwrap().parse().unwrap(),
                    r[2].as_deref().unwrap().parse().unwrap(),
                ),
            )
        })
        .collect();
    assert_eq!(newest.len(), source.len(), "every row landed, none extra");
    assert_eq!(
        newest, source,
        "the newest landed version of each row is the source's"
    );

    // Plain (xmin): same, by the newest run's value.
    let batches = read_batches(&p.stream_dir("public.plain"));
    assert_no_duplicates_within_a_run(&ids_by_run(&batches, "id"));
    let runs: Vec<String> = [&first, &second, &third]
        .iter()
        .map(|r| r["run_id"].as_str().unwrap().to_string())
        .collect();
    let mut latest: BTreeMap<i64, (usize, i32)> = BTreeMap::new();
    for b in &batches {
        let ids = column::<Int32Array>(b, "id");
        let v = column::<Int32Array>(b, "v");
        let run = column::<StringArray>(b, "_inlet_run_id");
        for i in 0..b.num_rows() {
            let order = runs.iter().position(|r| r == run.value(i)).unwrap();
            let e = latest
                .entry(i64::from(ids.value(i)))
                .or_insert((0, i32::MIN));
            if order >= e.0 {
                *e = (order, v.value(i));
            }
        }
    }
    let source: BTreeMap<i64, i32> = pair
        .primary("app", "SELECT id, v FROM plain")
        .into_iter()
        .map(|r| {
            (
                r[0].as_deref().unwrap().parse().unwrap(),
                r[1].as_deref().unwrap().parse().unwrap(),
            )
        })
        .collect();
    let landed: BTreeMap<i64, i32> = latest.into_iter().map(|(k, (_, v))| (k, v)).collect();
    assert_eq!(landed, source);
    let plain_third = third["streams"]["public.plain"]["rows"].as_u64().unwrap();
    assert!(plain_third < 20000, "xmin reads only changed rows: {third}");

    // Rows changed after the watermark and then frozen keep their raw xmin: the next
    // xmin run reads exactly them, no re-sync.
    pair.primary("app", "UPDATE plain SET v = v + 1000 WHERE id <= 10");
    pair.primary("app", "VACUUM FREEZE plain");
    pair.wait_replay();
    let fourth = p.sync_json(&[]);
    assert_eq!(fourth["streams"]["public.plain"]["rows"], 10, "{fourth}");
    let changed: usize = read_batches(&p.stream_dir("public.plain"))
        .iter()
        .map(|b| {
            let run = column::<StringArray>(b, "_inlet_run_id").clone();
            let v = column::<Int32Array>(b, "v").clone();
            (0..b.num_rows())
                .filter(|&i| {
                    run.value(i) == fourth["run_id"].as_str().unwrap() && v.value(i) >= 1000
                })
                .count()
        })
        .sum();
    assert_eq!(changed, 10, "the rows changed then frozen landed");
    let state: serde_json::Value = serde_json::from_str(&p.ok(&["state", "show", "c"])).unwrap();
    let s = state["streams"]["public.items"]["cursor"].clone();
    assert_eq!(s["method"], "cursor", "{state}");
    assert!(s["value"].as_str().unwrap().ends_with('Z'), "{state}");
    assert!(
        state["streams"]["public.plain"]["cursor"]["xmin"]
            .as_i64()
            .unwrap()
            > 0,
        "{state}"
    );
}

/// Wait until inlet's COPY is running on the standby, then run `action` on the pair.
fn during_copy(pair: &PgPair, action: impl FnOnce()) {
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let rows = pair.standby(
            "postgres",
            "SELECT count(*) FROM pg_stat_activity WHERE application_name = 'inlet/c' AND query LIKE 'COPY%' AND state = 'active'",
        );
        if rows[0][0].as_deref() != Some("0") {
            break;
        }
        assert!(Instant::now() < deadline, "the sync's COPY never started");
        std::thread::sleep(Duration::from_millis(20));
    }
    action();
}

#[test]
fn a_recovery_conflict_and_a_killed_session_are_survived() {
    let pair = Arc::new(PgPair::start("max_standby_streaming_delay = 200ms\n"));
    pair.seed(
        "big",
        "CREATE TABLE big (id int PRIMARY KEY, pad text NOT NULL);
         INSERT INTO big SELECT g, repeat(md5(g::text), 2) FROM generate_series(1, 1500000) g;
         ANALYZE big;",
    );
    let p = pair.standby_project("big", "chunk_rows = 100000000\n", "max_retries = 8", "");

    // A conflict: the primary deletes rows and vacuums them away while the standby's COPY
    // still needs them; replay cancels the COPY after max_standby_streaming_delay.
    let handle = {
        let mut sync = p.command(&["--json", "--log", "debug", "sync", "c"]);
        std::thread::spawn(move || sync.output().unwrap())
    };
    during_copy(&pair, || {
        pair.primary("big", "DELETE FROM big WHERE id % 100 = 0");
        pair.primary("big", "VACUUM big");
    });
    let out = handle.join().unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let report: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        report["streams"]["public.big"]["retries"].as_u64().unwrap() >= 1,
        "{report}\n{stderr}"
    );
    assert!(stderr.contains("conflict"), "{stderr}");
    // The first read is one statement over the whole table; after the conflict the retry
    // reads it in halves, each ending in a checkpoint.
    let copies: Vec<&str> = stderr
        .lines()
        .filter(|l| l.contains("COPY (SELECT"))
        .collect();
    assert!(
        copies.len() >= 3 && copies.iter().skip(1).any(|l| l.contains("\"id\" < ")),
        "{}",
        copies.join("\n")
    );
    let batches = read_batches(&p.stream_dir("public.big"));
    let by_run = ids_by_run(&batches, "id");
    assert_eq!(by_run.len(), 1);
    let ids: BTreeSet<i32> = batches
        .iter()
        .flat_map(|b| {
            let a = column::<Int32Array>(b, "id").clone();
            (0..a.len()).map(move |i| a.value(i))
        })
        .collect();
    let total: usize = batches.iter().map(|b| b.num_rows()).sum();
    assert_eq!(ids.len(), total, "no duplicates after the retry");
    assert_eq!(
        total, 1_485_000,
        "the rows of the table as it is after the delete"
    );

    // A killed session: pg_terminate_backend mid-COPY.
    let handle = {
        let mut sync = p.command(&["--json", "sync", "c", "--full-refresh"]);
        std::thread::spawn(move || sync.output().unwrap())
    };
    during_copy(&pair, || {
        pair.standby(
            "postgres",
            "SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE application_name = 'inlet/c' AND query LIKE 'COPY%'",
        );
    });
    let out = handle.join().unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let report: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert!(
        report["streams"]["public.big"]["retries"].as_u64().unwrap() >= 1,
        "{report}"
    );
    assert_eq!(
        report["streams"]["public.big"]["rows"], 1_485_000,
        "{report}"
    );
}

#[test]
fn schema_drift_is_recorded_or_stops_the_sync() {
    let pair = PgPair::start("");
    pair.seed(
        "drift",
        "CREATE TABLE t (id int PRIMARY KEY, a int, b text);
         INSERT INTO t SELECT g, g, 'b' FROM generate_series(1, 100) g;",
    );
    let base = pair.config_toml(pair.standby_port, "drift");
    let p = project(&base, "", "");
    p.sync_json(&[]);
    pair.primary(
        "drift",
        "ALTER TABLE t ADD COLUMN c timestamptz DEFAULT '2026-01-01';
         ALTER TABLE t DROP COLUMN b;
         ALTER TABLE t ALTER COLUMN a TYPE bigint;",
    );
    pair.wait_replay();

    // fail: stops, names every change, lands nothing.
    p.write_toml(p.config_text().replace(
        "ssl_mode = \"disable\"",
        "ssl_mode = \"disable\"\non_schema_change = \"fail\"",
    ));
    let err = p.fails(&["sync", "c"]);
    for change in [
        "`c` added",
        "`b` dropped",
        "`a` retyped from integer to bigint",
    ] {
        assert!(err.contains(change), "{change}: {err}");
    }

    // evolve: lands the new shape, records the change.
    p.write_toml(p.config_text().replace(
        "on_schema_change = \"fail\"",
        "on_schema_change = \"evolve\"",
    ));
    let report = p.sync_json(&[]);
    assert_eq!(report["streams"]["public.t"]["rows"], 100);
    let state: serde_json::Value = serde_json::from_str(&p.ok(&["state", "show", "c"])).unwrap();
    let changes = state["streams"]["public.t"]["cursor"]["schema_changes"].to_string();
    assert!(
        changes.contains("`c` added") && changes.contains("`b` dropped"),
        "{state}"
    );
    let batches = read_batches(&p.stream_dir("public.t"));
    let last = batches
        .iter()
        .find(|b| b.schema().field_with_name("c").is_ok())
        .unwrap();
    assert_eq!(
        last.schema().field_with_name("a").unwrap().data_type(),
        &DataType::Int64
    );

    // A dropped table: a clear error naming it.
    pair.primary("drift", "ALTER TABLE t RENAME TO t2");
    pair.wait_replay();
    let p2 = project(
        &base,
        "",
        "[connections.c.streams.\"public.t\"]\nmode = \"full_refresh\"\n",
    );
    assert!(p2.fails(&["sync", "c"]).contains("public.t"));
}

#[test]
fn composite_and_text_keys_are_split_into_sampled_ranges() {
    let pair = PgPair::start("");
    pair.seed(
        "keys",
        "CREATE TABLE accounts (region text, id uuid, n int NOT NULL, PRIMARY KEY (region, id));
         INSERT INTO accounts SELECT (array['eu','us','ap'])[1 + g % 3], md5(g::text)::uuid, g
           FROM generate_series(1, 30000) g;
         CREATE TABLE codes (code text PRIMARY KEY, n int NOT NULL);
         INSERT INTO codes SELECT 'c-' || md5(g::text), g FROM generate_series(1, 12000) g;
         ANALYZE;",
    );
    let p = pair.standby_project("keys", "chunk_rows = 4000\n", "parallelism = 2", "");
    let report = p.sync_json(&[]);
    assert_eq!(
        report["streams"]["public.accounts"]["rows"], 30000,
        "{report}"
    );
    assert_eq!(report["streams"]["public.codes"]["rows"], 12000, "{report}");
    for (stream, expected) in [("public.accounts", 30000), ("public.codes", 12000)] {
        let batches = read_batches(&p.stream_dir(stream));
        let ns: BTreeSet<i32> = batches
            .iter()
            .flat_map(|b| {
                let a = column::<Int32Array>(b, "n").clone();
                (0..a.len()).map(move |i| a.value(i))
            })
            .collect();
        assert_eq!(ns.len(), expected, "{stream}: every row once");
        // Several ranges were read (files carry the partition index in their names).
        let files = parquet_files(&p.stream_dir(stream));
        assert!(files.len() >= 3, "{stream}: {} files", files.len());
    }
}

#[test]
fn tls_modes_and_replay_lag_limits() {
    let pair = Arc::new(PgPair::start_with("", true));
    pair.seed(
        "sec",
        "CREATE TABLE t (id int PRIMARY KEY); INSERT INTO t SELECT generate_series(1, 10);",
    );
    let plain = pair.config_toml(pair.standby_port, "sec");

    // require: encrypted; verify_full with the CA and a matching host name: checked.
    let p = project(&plain.replace("\"disable\"", "\"require\""), "", "");
    assert_eq!(p.sync_json(&[])["streams"]["public.t"]["rows"], 10);
    let verified = plain
        .replace("\"disable\"", "\"verify_full\"")
        .replace("127.0.0.1", "localhost")
        + &format!("ssl_root_cert = \"{}\"\n", pair.ca_cert().display());
    let p = project(&verified, "", "");
    assert_eq!(p.sync_json(&[])["streams"]["public.t"]["rows"], 10);
    // verify_full against the public roots: the test CA is unknown, the session refused.
    let p = project(
        &plain
            .replace("\"disable\"", "\"verify_full\"")
            .replace("127.0.0.1", "localhost"),
        "max_retries = 0",
        "",
    );
    let err = p.fails(&["sync", "c"]);
    assert!(err.to_lowercase().contains("certificate"), "{err}");
    // A CA file that holds no PEM certificate is named, not silently an empty trust store.
    let not_pem = tempfile::NamedTempFile::new().unwrap();
    std::fs::write(not_pem.path(), "not a certificate\n").unwrap();
    let p = project(
        &verified.replace(
            &pair.ca_cert().display().to_string(),
            &not_pem.path().display().to_string(),
        ),
        "max_retries = 0",
        "",
    );
    let err = p.fails(&["sync", "c"]);
    assert!(
        err.contains("ssl_root_cert") && err.contains("no PEM certificate"),
        "{err}"
    );

    // Replay paused on the standby while the primary writes: the lag grows past the limit.
    pair.standby("postgres", "SELECT pg_wal_replay_pause()");
    pair.primary("sec", "INSERT INTO t VALUES (11)");
    std::thread::sleep(Duration::from_millis(2500));
    let lagging = format!("{plain}max_replay_lag_secs = 1\non_replay_lag = \"fail\"\n");
    let p = project(&lagging, "max_retries = 0", "");
    let err = p.fails(&["sync", "c"]);
    assert!(
        err.contains("behind its primary") && err.contains("max_replay_lag_secs"),
        "{err}"
    );
    // wait: the sync waits, and reads once replay resumes.
    let p = project(&lagging.replace("\"fail\"", "\"wait\""), "", "");
    let resume = {
        let pair = pair.clone();
        std::thread::spawn(move || {
            std::thread::sleep(Duration::from_secs(3));
            pair.standby("postgres", "SELECT pg_wal_replay_resume()");
        })
    };
    let started = Instant::now();
    let report = p.sync_json(&[]);
    resume.join().unwrap();
    assert!(
        started.elapsed() >= Duration::from_secs(2),
        "the sync waited"
    );
    assert_eq!(report["streams"]["public.t"]["rows"], 11, "{report}");
}

#[test]
fn a_sync_killed_at_random_moments_lands_every_row_exactly_once() {
    let pair = PgPair::start("");
    pair.seed(
        "crash",
        "CREATE TABLE t (id bigint PRIMARY KEY, pad text NOT NULL);
         INSERT INTO t SELECT g, md5(g::text) FROM generate_series(1, 400000) g;
         ANALYZE t;",
    );
    let p = pair.standby_project(
        "crash",
        "chunk_rows = 20000\n",
        "parallelism = 2\nbatch_rows = 5000\ncommit_interval_secs = 0",
        // Incremental, so a run after a completed one reads only changes (none): every
        // row must land exactly once however the runs were cut.
        "[connections.c.streams.\"public.t\"]\nmode = \"incremental\"\ncursor_field = \"xmin\"\n",
    );
    let mut next = inlet_testkit::seeded_rng();
    // Each run is killed at a moment tied to its progress, not to the wall clock (a fast
    // machine finishes a whole sync before a fixed delay runs out): after 1 to 3 more
    // Parquet files have landed, plus up to 60 ms, so the kill falls anywhere between
    // writing a file, committing its checkpoint and starting the next partition.
    let dir = p.stream_dir("public.t");
    let mut kills = 0;
    let mut logs = Vec::new();
    for i in 0..6 {
        let landed = parquet_files(&dir).len();
        let target = landed + 1 + next(3) as usize;
        let extra = Duration::from_millis(next(60));
        let log = p.root().join(format!("killed-run-{i}.log"));
        let child = p
            .command(&["sync", "c"])
            .stdout(std::process::Stdio::null())
            .stderr(fs::File::create(&log).unwrap())
            .spawn()
            .unwrap();
        logs.push(log);
        let limit = Duration::from_secs(120);
        if kill_after_files(child, &dir, Some(target), limit, extra) {
            kills += 1;
        }
    }
    let tails: String = logs
        .iter()
        .map(|l| {
            let text = fs::read_to_string(l).unwrap_or_default();
            let mut start = text.len().saturating_sub(600);
            while !text.is_char_boundary(start) {
                start += 1;
            }
            format!("--- {}\n{}\n", l.display(), &text[start..])
        })
        .collect();
    println!("{kills} of 6 runs killed mid-sync");
    assert!(
        kills >= 2,
        "the test killed too few syncs ({kills})\n{tails}"
    );
    let report = p.sync_json(&[]);
    assert_eq!(report["outcome"], "succeeded", "{report}");
    let batches = read_batches(&p.stream_dir("public.t"));
    let by_run = ids_by_run(&batches, "id");
    let all: Vec<i64> = by_run.values().flatten().copied().collect();
    let set: BTreeSet<i64> = all.iter().copied().collect();
    assert_eq!(
        all.len(),
        set.len(),
        "a row landed twice across {kills} kills"
    );
    assert_eq!(set.len(), 400_000, "every row landed ({kills} kills)");
}

#[test]
fn cursors_survive_null_and_infinite_values_and_reread_the_saved_day() {
    let pair = PgPair::start("");
    pair.seed(
        "cur",
        "CREATE TABLE t (id int PRIMARY KEY, ts timestamptz, d date NOT NULL);
         CREATE INDEX ON t (ts); CREATE INDEX ON t (d);
         INSERT INTO t VALUES (1, '2026-01-01 00:00:00+00', '2026-01-01'),
                              (2, NULL, '2026-01-02'),
                              (3, 'infinity', '2026-01-03');",
    );
    let streams =
        "[connections.c.streams.\"public.t\"]\nmode = \"incremental\"\ncursor_field = \"ts\"\n";
    let p = pair.standby_project("cur", "lookback_secs = 0\n", "", streams);
    // The first run reads every row, NULL and infinity included; the saved cursor is the
    // largest finite value, so new rows keep coming.
    assert_eq!(p.sync_json(&[])["streams"]["public.t"]["rows"], 3);
    let state: serde_json::Value = serde_json::from_str(&p.ok(&["state", "show", "c"])).unwrap();
    assert_eq!(
        state["streams"]["public.t"]["cursor"]["value"], "2026-01-01T00:00:00.000000Z",
        "{state}"
    );
    pair.primary(
        "cur",
        "INSERT INTO t VALUES (4, '2026-02-01 00:00:00+00', '2026-01-03'), (5, '2026-01-01 00:00:00+00', '2026-01-03')",
    );
    pair.wait_replay();
    // Inclusive lower bound: id 5, committed later with the saved value, is not lost;
    // id 1, landed at that value and unchanged, is not landed again (the boundary).
    let report = p.sync_json(&[]);
    assert_eq!(report["streams"]["public.t"]["rows"], 2, "{report}");

    // A date cursor re-reads the saved day: a row added later that day is not lost.
    let p = pair.standby_project(
        "cur",
        "lookback_secs = 0\n",
        "",
        &streams.replace("\"ts\"", "\"d\""),
    );
    assert_eq!(p.sync_json(&[])["streams"]["public.t"]["rows"], 5);
    pair.primary("cur", "INSERT INTO t VALUES (6, NULL, '2026-01-03')");
    pair.wait_replay();
    // The saved day is read again: 6 (new, same day) lands; 3, 4 and 5, landed at that
    // day and unchanged, do not.
    assert_eq!(p.sync_json(&[])["streams"]["public.t"]["rows"], 1);
}

#[test]
fn an_unpopulated_materialized_view_is_skipped_with_a_warning_and_the_rest_lands() {
    let pair = PgPair::start("");
    pair.seed(
        "mv",
        "CREATE TABLE t (id int PRIMARY KEY, v text);
         INSERT INTO t SELECT i, 'v' || i FROM generate_series(1, 50) i;
         CREATE MATERIALIZED VIEW t_summary AS SELECT count(*) AS n FROM t WITH NO DATA;",
    );
    // No `streams` table: every stream is selected, the unpopulated view too.
    let p = pair.standby_project("mv", "", "", "");
    let report = p.sync_json(&[]);
    assert_eq!(report["outcome"], "succeeded", "{report}");
    assert_eq!(report["streams"]["public.t"]["rows"], 50, "{report}");
    let mv = &report["streams"]["public.t_summary"];
    assert_eq!(mv["rows"], 0, "{report}");
    // Nothing was retried.
    assert_eq!(mv["retries"], 0, "{report}");
    let warnings = mv["warnings"]
        .as_array()
        .expect("warnings in the run report");
    assert!(
        warnings.len() == 1
            && warnings[0].as_str().unwrap().contains("not been populated")
            && warnings[0]
                .as_str()
                .unwrap()
                .contains("REFRESH MATERIALIZED VIEW"),
        "{report}"
    );
    // The text report prints it too.
    let text = p.ok(&["sync", "c"]);
    assert!(
        text.contains("warning: skipped `public.t_summary`"),
        "{text}"
    );

    // Once refreshed, it lands, without a warning.
    pair.primary("mv", "REFRESH MATERIALIZED VIEW t_summary");
    pair.wait_replay();
    let report = p.sync_json(&[]);
    assert_eq!(report["streams"]["public.t_summary"]["rows"], 1, "{report}");
    assert!(
        report["streams"]["public.t_summary"]
            .get("warnings")
            .is_none(),
        "{report}"
    );
}

#[test]
fn a_postgres_reader_that_panics_fails_the_run_and_neither_rows_nor_state_move() {
    let pair = PgPair::start("");
    pair.create_db("panic");
    // No key: the table is one partition read in one COPY, in batches of 1000 rows.
    pair.primary(
        "panic",
        "CREATE TABLE t (id int NOT NULL, v text);
         INSERT INTO t SELECT i, 'v' || i FROM generate_series(1, 5000) i;",
    );
    pair.wait_replay();
    let p = pair.standby_project("panic", "", "batch_rows = 1000", "");
    // The COPY task panics right after sending its second batch. The plan is recorded
    // before the read (a crash resumes it), but no partition may move.
    let state = p.panicked_sync("postgres-batch#2", &["c"], "public.t");
    let stream = &state["streams"]["public.t"];
    assert!(
        stream.get("cursor").is_none_or(serde_json::Value::is_null)
            && stream["partitions"]["done"]
                .as_array()
                .is_none_or(Vec::is_empty)
            && stream["partitions"]["checkpoints"]
                .as_object()
                .is_none_or(serde_json::Map::is_empty),
        "the state must not move: {state}"
    );
    // Without the failpoint, every row lands once.
    let report = p.sync_json(&[]);
    assert_eq!(report["streams"]["public.t"]["rows"], 5000, "{report}");
    let mut ids = ids_per_run(&p, "public.t").concat();
    ids.sort_unstable();
    assert_eq!(ids, (1..=5000).collect::<Vec<i64>>());
}

/// The ids landed by each run, oldest run first.
fn ids_per_run(p: &TestProject, stream: &str) -> Vec<Vec<i64>> {
    let by_run = ids_by_run(&read_batches(&p.stream_dir(stream)), "id");
    by_run.into_values().collect()
}

#[test]
fn cursor_incremental_lands_nothing_on_a_quiet_run_after_a_bulk_load() {
    let pair = PgPair::start("");
    pair.create_db("bulk");
    // A bulk load: every row has the same cursor value, so every row is at the boundary.
    pair.primary(
        "bulk",
        "CREATE TABLE keyed (id int PRIMARY KEY, v text, updated_at timestamptz NOT NULL);
         CREATE INDEX ON keyed (updated_at);
         INSERT INTO keyed SELECT i, 'v' || i, '2026-01-01 00:00:00+00' FROM generate_series(1, 100000) i;
         CREATE TABLE keyless (id int, v text, n int8 NOT NULL);
         CREATE INDEX ON keyless (n);
         INSERT INTO keyless SELECT i, 'v', 7 FROM generate_series(1, 3000) i;",
    );
    pair.wait_replay();
    let streams = "[connections.c.streams.\"public.keyed\"]\nmode = \"incremental\"\ncursor_field = \"updated_at\"\n\
                   [connections.c.streams.\"public.keyless\"]\nmode = \"incremental\"\ncursor_field = \"n\"\n";
    // The default lookback (60 s) is kept: the boundary rows are inside it.
    let p = pair.standby_project("bulk", "", "", streams);
    let rows = |r: &serde_json::Value, s: &str| r["streams"][s]["rows"].as_u64().unwrap();

    let first = p.sync_json(&[]);
    assert_eq!(rows(&first, "public.keyed"), 100_000, "{first}");
    assert_eq!(rows(&first, "public.keyless"), 3000, "{first}");
    let state: serde_json::Value = serde_json::from_str(&p.ok(&["state", "show", "c"])).unwrap();
    let keyed = &state["streams"]["public.keyed"]["cursor"];
    assert_eq!(keyed["version"], 4, "{keyed}");
    assert_eq!(keyed["boundary"]["rows"], 100_000);
    let size = serde_json::to_string(keyed).unwrap().len();
    let file = p.lake().join("_inlet/connections/c/state.json");
    eprintln!(
        "state of public.keyed with a 100,000-row boundary: {size} bytes of JSON; state.json {} bytes",
        fs::metadata(&file).map(|m| m.len()).unwrap_or(0)
    );
    assert!(size < 1_100_000, "{size}");

    // A quiet run lands nothing.
    let quiet = p.sync_json(&[]);
    assert_eq!(rows(&quiet, "public.keyed"), 0, "{quiet}");
    assert_eq!(rows(&quiet, "public.keyless"), 0, "{quiet}");

    // A row changed without moving its cursor lands, and only it; so does a row whose
    // cursor moved, and an identical copy of a keyless row (a new row, not one landed).
    pair.primary(
        "bulk",
        "UPDATE keyed SET v = 'changed' WHERE id = 42;
         INSERT INTO keyless VALUES (1, 'v', 7);",
    );
    pair.wait_replay();
    let changed = p.sync_json(&[]);
    assert_eq!(rows(&changed, "public.keyed"), 1, "{changed}");
    assert_eq!(rows(&changed, "public.keyless"), 1, "{changed}");
    assert_eq!(ids_per_run(&p, "public.keyed").last(), Some(&vec![42]));
    pair.primary(
        "bulk",
        "UPDATE keyed SET updated_at = '2026-01-02 00:00:00+00' WHERE id = 7",
    );
    pair.wait_replay();
    let moved = p.sync_json(&[]);
    assert_eq!(rows(&moved, "public.keyed"), 1, "{moved}");
    assert_eq!(ids_per_run(&p, "public.keyed").last(), Some(&vec![7]));
    let quiet = p.sync_json(&[]);
    assert_eq!(rows(&quiet, "public.keyed"), 0, "{quiet}");
    assert_eq!(rows(&quiet, "public.keyless"), 0, "{quiet}");

    // Past max_boundary_rows nothing is kept: the rows land again, and the report says so.
    let p = pair.standby_project(
        "bulk",
        "max_boundary_rows = 100\n",
        "",
        "[connections.c.streams.\"public.keyless\"]\nmode = \"incremental\"\ncursor_field = \"n\"\n",
    );
    assert_eq!(rows(&p.sync_json(&[]), "public.keyless"), 3001);
    let again = p.sync_json(&[]);
    assert_eq!(rows(&again, "public.keyless"), 3001, "{again}");
    let warning = again["streams"]["public.keyless"]["warnings"][0]
        .as_str()
        .unwrap_or_default()
        .to_string();
    assert!(warning.contains("max_boundary_rows = 100"), "{again}");
}

/// Every node of an `EXPLAIN (FORMAT JSON)` plan.
fn plan_nodes<'a>(node: &'a serde_json::Value, out: &mut Vec<&'a serde_json::Value>) {
    out.push(node);
    for child in node["Plans"].as_array().into_iter().flatten() {
        plan_nodes(child, out);
    }
}

#[test]
fn planning_an_incremental_read_on_an_indexed_cursor_never_scans_the_table() {
    use inlet_connector_postgres::{PostgresSource, config, session::Connect};
    use inlet_core::{ReadRequest, Source, SyncMode};

    let pair = PgPair::start("");
    pair.create_db("ix");
    // Big enough that reading it all is the planner's choice for an aggregate, with
    // NULL, ±infinity and NaN cursors (numeric(p,s) holds no infinity) so that the
    // finite-value conditions matter.
    pair.primary(
        "ix",
        "CREATE TABLE big (id int8 PRIMARY KEY, ts timestamptz, d date, n int8, amount numeric(14,2), pad text);
         INSERT INTO big SELECT i,
             '2026-01-01 00:00:00+00'::timestamptz + i * interval '1 second',
             '2026-01-01'::date + (i / 1000)::int, i, i / 100.0, repeat('x', 40)
           FROM generate_series(1, 200000) i;
         UPDATE big SET ts = 'infinity', d = 'infinity', amount = 'NaN' WHERE id % 50000 = 1;
         UPDATE big SET ts = NULL, d = NULL, n = NULL, amount = NULL WHERE id % 50000 = 2;
         UPDATE big SET ts = '-infinity', d = '-infinity' WHERE id % 50000 = 3;
         CREATE INDEX ON big (ts); CREATE INDEX ON big (d); CREATE INDEX ON big (n);
         CREATE INDEX ON big (amount);
         ANALYZE big;",
    );
    pair.wait_replay();
    let pages: i64 = pair
        .scalar("ix", "SELECT relpages FROM pg_class WHERE relname = 'big'")
        .parse()
        .unwrap();
    assert!(
        pages > 1000,
        "the table is too small to tell: {pages} pages"
    );
    let dir = tempfile::tempdir().unwrap();
    let cfg = serde_json::json!({
        "host": "127.0.0.1", "port": pair.standby_port, "database": "ix",
        "user": "postgres", "password": PASSWORD, "ssl_mode": "disable",
    });
    let connect = Connect::new(Arc::new(config::parse(&cfg).unwrap()), "c", dir.path()).unwrap();
    let source = PostgresSource::new(connect);
    let request = |column: &str, state: Option<serde_json::Value>| ReadRequest {
        stream: "public.big".into(),
        mode: SyncMode::Incremental,
        cursor_field: Some(column.into()),
        state: state.clone(),
        previous: state,
        batch_rows: 8192,
        attempt: 0,
    };
    let mut checked = 0;
    for column in ["ts", "d", "n", "amount"] {
        // The first run (key ranges) and a later one (the delta from the saved value).
        let first = pair.block_on(source.plan(&request(column, None))).unwrap();
        let mut queries = source.planning_queries();
        let state = first.state_after.clone();
        let saved = state.as_ref().unwrap()["value"].clone();
        assert!(
            !saved.is_null()
                && !["inf", "nan"]
                    .iter()
                    .any(|x| saved.to_string().to_lowercase().contains(x)),
            "{column}: the saved value is the largest finite one: {saved}"
        );
        pair.block_on(source.plan(&request(column, state))).unwrap();
        let later = source.planning_queries();
        assert!(later.len() >= 3, "{later:?}");
        queries.extend(later);
        for sql in queries {
            let out = pair.standby(
                "ix",
                &format!("EXPLAIN (ANALYZE, BUFFERS, FORMAT JSON) {sql}"),
            );
            let explain: serde_json::Value =
                serde_json::from_str(out[0][0].as_deref().unwrap()).unwrap();
            let top = &explain[0]["Plan"];
            let mut nodes = Vec::new();
            plan_nodes(top, &mut nodes);
            for node in &nodes {
                assert_ne!(
                    node["Node Type"], "Seq Scan",
                    "{column}: a sequential scan planning with\n{sql}\n{explain:#}"
                );
            }
            // Buffers touched, not time: a fast machine cannot make a full read look cheap.
            let blocks = top["Shared Hit Blocks"].as_i64().unwrap_or(0)
                + top["Shared Read Blocks"].as_i64().unwrap_or(0);
            assert!(
                blocks < 50,
                "{column}: {blocks} of {pages} pages read planning with\n{sql}\n{explain:#}"
            );
            checked += 1;
        }
    }
    assert!(checked >= 16, "{checked} statements checked");
}
