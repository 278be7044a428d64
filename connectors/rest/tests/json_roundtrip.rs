//! Property test: random JSON pages (nesting, empty objects and lists, nulls, mixed types
//! across records and pages, odd keys, numbers at the edges) through the REST engine's
//! batcher into Parquet and back. Every value must be recoverable by the landing rules of
//! `json.rs`: structs and lists equal, text columns holding the exact JSON text (numbers as
//! their literals), numbers exact, and a field left out of a file only when it had no
//! type (null, `{}`, `[]`).
//!
//! The seed and the case budget are fixed, so a CI run is bounded (a few seconds) and
//! repeatable (2,000 cases, about 5 s in a debug build); `INLET_PROPTEST_CASES` and
//! `INLET_PROPTEST_SEED` run a longer or another search locally.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    reason = "tests fail loudly on purpose"
)]

use std::{fmt::Write, sync::Arc};

use arrow_array::{Array, ArrayRef, Int64Array, RecordBatch, cast::AsArray, types};
use arrow_schema::{DataType, Field, Schema, TimeUnit};
use inlet_connector_rest::json::{JsonBatcher, SchemaPolicy, TEXT_ENCODING_KEY, landable};
use inlet_core::number::{self, Number};
use parquet::arrow::{ArrowWriter, arrow_reader::ParquetRecordBatchReaderBuilder};
use proptest::{
    prelude::*,
    test_runner::{Config, RngAlgorithm, RngSeed, TestRunner},
};

/// A JSON value that keeps each number's literal text (serde_json's `Value` would not).
#[derive(Debug, Clone)]
enum J {
    Null,
    Bool(bool),
    Num(String),
    Str(String),
    Arr(Vec<J>),
    Obj(Vec<(String, J)>),
}

/// Compact JSON with the escapes inlet's text columns use, so that a text column's value
/// can be compared as a string.
fn write(j: &J, out: &mut String) {
    match j {
        J::Null => out.push_str("null"),
        J::Bool(b) => out.push_str(if *b { "true" } else { "false" }),
        J::Num(n) => out.push_str(n),
        J::Str(s) => write_str(s, out),
        J::Arr(items) => {
            out.push('[');
            for (i, item) in items.iter().enumerate() {
                if i > 0 {
                    out.push(',');
                }
                write(item, out);
            }
            out.push(']');
        }
        J::Obj(members) => {
            out.push('{');
            for (i, (k, v)) in members.iter().enumerate() {
                if i > 0 {
                    out.push(',');
                }
                write_str(k, out);
                out.push(':');
                write(v, out);
            }
            out.push('}');
        }
    }
}

fn write_str(s: &str, out: &mut String) {
    out.push('"');
    for c in s.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            '\n' => out.push_str("\\n"),
            '\r' => out.push_str("\\r"),
            '\t' => out.push_str("\\t"),
            c if (c as u32) < 0x20 => {
                let _ = write!(out, "\\u{:04x}", c as u32);
            }
            c => out.push(c),
        }
    }
    out.push('"');
}

fn text(j: &J) -> String {
    let mut out = String::new();
    write(j, &mut out);
    out
}

/// Number literals, many at the edges of int64, decimal(38, s) and beyond.
fn number() -> impl Strategy<Value = String> {
    prop_oneof![
        Just("0".to_string()),
        Just("-0".to_string()),
        Just("-0.0".to_string()),
        Just(i64::MAX.to_string()),
        Just(i64::MIN.to_string()),
        Just("9223372036854775808".to_string()),
        Just("18446744073709551615".to_string()),
        Just("12.50".to_string()),
        Just("0.10".to_string()),
        Just("1e2".to_string()),
        Just("1.5E-3".to_string()),
        Just("1e400".to_string()),
        Just("0.30000000000000000444".to_string()),
        Just("9".repeat(38)),
        Just("9".repeat(39)),
        Just(format!("0.{}1", "0".repeat(37))),
        any::<i64>().prop_map(|i| i.to_string()),
        (-1000i64..1000).prop_map(|i| i.to_string()),
        (any::<bool>(), "[1-9][0-9]{0,24}", "[0-9]{1,24}")
            .prop_map(|(neg, i, f)| format!("{}{i}.{f}", if neg { "-" } else { "" })),
        ("[1-9]\\.[0-9]{1,5}", -45i32..45).prop_map(|(m, e)| format!("{m}e{e}")),
    ]
}

fn string() -> impl Strategy<Value = String> {
    prop_oneof![
        Just("2011-04-22T13:33:48Z".to_string()),
        Just("2011-04-22T13:33:48.123456Z".to_string()),
        Just("2011-04-22T13:33:48.123456789Z".to_string()),
        Just("2011-04-22T15:33:48+02:00".to_string()),
        Just("2011-04-22".to_string()),
        Just("5".to_string()),
        Just("".to_string()),
        Just("line\nbreak \"quoted\" back\\slash \u{1}".to_string()),
        "[a-z]{0,8}",
        "\\PC{0,6}",
    ]
}

/// Keys of nested objects, with the ones engines dislike.
fn key() -> impl Strategy<Value = String> {
    prop_oneof![
        4 => prop::sample::select(vec!["id", "name", "a", "b", "metadata", "data"]).prop_map(str::to_string),
        1 => prop::sample::select(vec!["", "ID", "Id", "a.b", "with space", "é", "x\ny", "Name"]).prop_map(str::to_string),
        1 => Just("k".repeat(300)),
    ]
}

/// Keys of records: a small pool, so records and pages share fields of differing types.
fn top_key() -> impl Strategy<Value = String> {
    prop::sample::select(vec![
        "id", "amount", "meta", "tags", "when", "d.e", "f g", "A", "é",
    ])
    .prop_map(str::to_string)
}

fn dedupe(members: Vec<(String, J)>) -> Vec<(String, J)> {
    let mut out: Vec<(String, J)> = Vec::new();
    for (k, v) in members {
        if !out.iter().any(|(seen, _)| *seen == k) {
            out.push((k, v));
        }
    }
    out
}

fn value() -> impl Strategy<Value = J> {
    let leaf = prop_oneof![
        3 => Just(J::Null),
        1 => any::<bool>().prop_map(J::Bool),
        3 => number().prop_map(J::Num),
        3 => string().prop_map(J::Str),
        1 => Just(J::Obj(vec![])),
        1 => Just(J::Arr(vec![])),
    ];
    leaf.prop_recursive(5, 48, 5, |inner| {
        prop_oneof![
            prop::collection::vec(inner.clone(), 0..5).prop_map(J::Arr),
            prop::collection::vec((key(), inner), 0..5).prop_map(|m| J::Obj(dedupe(m))),
        ]
    })
}

fn record() -> impl Strategy<Value = Vec<(String, J)>> {
    prop::collection::vec((top_key(), value()), 0..6).prop_map(dedupe)
}

fn pages() -> impl Strategy<Value = Vec<Vec<Vec<(String, J)>>>> {
    prop::collection::vec(prop::collection::vec(record(), 0..6), 1..5)
}

/// Nothing a file can hold: null, or objects and arrays of nothing.
fn untyped(j: &J) -> bool {
    match j {
        J::Null => true,
        J::Arr(items) => items.iter().all(untyped),
        J::Obj(members) => members.iter().all(|(_, v)| untyped(v)),
        _ => false,
    }
}

fn is_text_field(field: &Field) -> bool {
    field
        .metadata()
        .get(TEXT_ENCODING_KEY)
        .is_some_and(|v| v == "json")
}

/// Check that `array[row]` holds `value` (`None`: the field was absent) by the rules.
fn check(value: Option<&J>, field: &Field, array: &ArrayRef, row: usize, path: &str) {
    let value = value.unwrap_or(&J::Null);
    if let J::Null = value {
        assert!(array.is_null(row), "{path}: null landed as a value");
        return;
    }
    assert!(
        array.is_valid(row),
        "{path}: {} landed as null",
        text(value)
    );
    match field.data_type() {
        DataType::Utf8 if is_text_field(field) => {
            let got = array.as_string::<i32>().value(row);
            let want = match value {
                J::Str(s) => s.clone(),
                other => text(other),
            };
            assert_eq!(got, want, "{path}: text column");
        }
        DataType::Utf8 => match value {
            J::Str(s) => assert_eq!(array.as_string::<i32>().value(row), s, "{path}"),
            other => panic!("{path}: {} in a utf8 column", text(other)),
        },
        DataType::Boolean => match value {
            J::Bool(b) => assert_eq!(array.as_boolean().value(row), *b, "{path}"),
            other => panic!("{path}: {} in a boolean column", text(other)),
        },
        DataType::Int64 => match value {
            J::Num(lit) => {
                let got = array.as_primitive::<types::Int64Type>().value(row);
                assert_eq!(number::parse(lit), Some(Number::Int(got)), "{path}: {lit}");
            }
            other => panic!("{path}: {} in an int64 column", text(other)),
        },
        DataType::Decimal128(38, s) => match value {
            J::Num(lit) => {
                let got = array.as_primitive::<types::Decimal128Type>().value(row);
                let want = number::parse(lit).and_then(|n| n.unscaled_at(*s as u8));
                assert_eq!(want, Some(got), "{path}: {lit} in decimal(38, {s})");
            }
            other => panic!("{path}: {} in a decimal column", text(other)),
        },
        DataType::Timestamp(TimeUnit::Microsecond, Some(_)) => match value {
            J::Str(s) => {
                let got = array
                    .as_primitive::<types::TimestampMicrosecondType>()
                    .value(row);
                let want = chrono::DateTime::parse_from_rfc3339(s).unwrap();
                assert_eq!(got, want.timestamp_micros(), "{path}: {s}");
                assert!(
                    s.ends_with('Z') || s.ends_with("+00:00"),
                    "{path}: {s} is not UTC, so a timestamp loses its offset"
                );
            }
            other => panic!("{path}: {} in a timestamp column", text(other)),
        },
        DataType::Struct(children) => {
            let J::Obj(members) = value else {
                panic!("{path}: {} in a struct column", text(value));
            };
            let s = array.as_struct();
            check_members(
                members,
                children.iter().map(|f| f.as_ref()),
                s.columns(),
                row,
                path,
            );
        }
        DataType::List(item) => {
            let J::Arr(items) = value else {
                panic!("{path}: {} in a list column", text(value));
            };
            let list = array.as_list::<i32>();
            let values = list.value(row);
            assert_eq!(values.len(), items.len(), "{path}: list length");
            for (i, v) in items.iter().enumerate() {
                check(Some(v), item, &values, i, &format!("{path}[{i}]"));
            }
        }
        other => panic!("{path}: unexpected column type {other}"),
    }
}

/// Every member lands in its column, or has no type; every column holds its member.
fn check_members<'a>(
    members: &[(String, J)],
    fields: impl Iterator<Item = &'a Field>,
    columns: &[ArrayRef],
    row: usize,
    path: &str,
) {
    let fields: Vec<&Field> = fields.collect();
    for (k, v) in members {
        if !fields.iter().any(|f| f.name() == k) {
            assert!(
                untyped(v),
                "{path}.{k}: {} was not landed (only untyped values may be left out)",
                text(v)
            );
        }
    }
    for (f, col) in fields.iter().zip(columns) {
        let member = members.iter().find(|(k, _)| k == f.name()).map(|(_, v)| v);
        check(member, f, col, row, &format!("{path}.{}", f.name()));
    }
}

fn no_float(t: &DataType) -> bool {
    match t {
        DataType::Float16 | DataType::Float32 | DataType::Float64 => false,
        DataType::Struct(fields) => fields.iter().all(|f| no_float(f.data_type())),
        DataType::List(f) => no_float(f.data_type()),
        _ => true,
    }
}

/// Write and read back one Parquet file. As the lake does with its lineage columns, a
/// column is added first, so that a page whose fields have no type yet keeps its rows.
fn through_parquet(batch: &RecordBatch) -> RecordBatch {
    let mut fields: Vec<Field> = batch
        .schema()
        .fields()
        .iter()
        .map(|f| f.as_ref().clone())
        .collect();
    fields.push(Field::new("_row", DataType::Int64, false));
    let mut columns = batch.columns().to_vec();
    columns.push(Arc::new(Int64Array::from_iter_values(
        0..batch.num_rows() as i64,
    )));
    let batch = &RecordBatch::try_new(Arc::new(Schema::new(fields)), columns).unwrap();
    let mut buf = Vec::new();
    let mut w = ArrowWriter::try_new(&mut buf, batch.schema(), None).expect("parquet writer");
    w.write(batch).expect("parquet write");
    w.close().expect("parquet close");
    let reader = ParquetRecordBatchReaderBuilder::try_new(bytes::Bytes::from(buf))
        .unwrap()
        .with_batch_size(1 << 20)
        .build()
        .unwrap();
    let batches: Vec<RecordBatch> = reader.map(Result::unwrap).collect();
    assert_eq!(batches.len(), 1);
    let mut back = batches.into_iter().next().unwrap();
    back.remove_column(back.num_columns() - 1);
    back
}

fn land_pages(pages: &[Vec<Vec<(String, J)>>]) {
    let mut batcher = JsonBatcher::new(vec![], None, SchemaPolicy::default());
    for (n, page) in pages.iter().enumerate() {
        let json = text(&J::Arr(page.iter().cloned().map(J::Obj).collect()));
        let (batch, _) = batcher
            .decode(json.as_bytes())
            .unwrap_or_else(|e| panic!("page {n} did not decode: {e}\n{json}"));
        let Some(batch) = batch else {
            assert!(page.is_empty(), "page {n}: records but no batch");
            continue;
        };
        assert_eq!(batch.num_rows(), page.len());
        let batch = landable(batch).unwrap();
        assert!(
            batch
                .schema()
                .fields()
                .iter()
                .all(|f| no_float(f.data_type())),
            "float inferred: {:?}",
            batch.schema()
        );
        let back = through_parquet(&batch);
        assert_eq!(
            back.schema(),
            batch.schema(),
            "page {n}: schema through Parquet"
        );
        let fields: Vec<&Field> = back
            .schema_ref()
            .fields()
            .iter()
            .map(|f| f.as_ref())
            .collect();
        for (row, record) in page.iter().enumerate() {
            check_members(
                record,
                fields.iter().copied(),
                back.columns(),
                row,
                &format!("page {n} record {row}"),
            );
        }
    }
}

#[test]
fn random_json_pages_land_in_parquet_and_read_back_by_the_landing_rules() {
    let cases = std::env::var("INLET_PROPTEST_CASES")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(2000);
    let seed = std::env::var("INLET_PROPTEST_SEED")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(0x1a1e7);
    let mut runner = TestRunner::new_with_rng(
        Config {
            cases,
            failure_persistence: None,
            rng_seed: RngSeed::Fixed(seed),
            ..Config::default()
        },
        proptest::test_runner::TestRng::deterministic_rng(RngAlgorithm::ChaCha),
    );
    let started = std::time::Instant::now();
    runner
        .run(&pages(), |pages| {
            land_pages(&pages);
            Ok(())
        })
        .unwrap();
    eprintln!("{cases} cases in {:.1?}", started.elapsed());
}

/// Shapes the property test found or that the landing rules name, kept as plain cases.
#[test]
fn known_shapes_land_by_the_rules() {
    let n = |s: &str| J::Num(s.to_string());
    let s = |s: &str| J::Str(s.to_string());
    let obj = |m: Vec<(&str, J)>| {
        m.into_iter()
            .map(|(k, v)| (k.to_string(), v))
            .collect::<Vec<_>>()
    };
    land_pages(&[
        vec![
            obj(vec![
                ("id", n("1")),
                ("meta", J::Obj(vec![])),
                ("tags", J::Arr(vec![])),
            ]),
            obj(vec![
                ("id", n("2.50")),
                ("meta", J::Null),
                ("when", s("2011-04-22T13:33:48Z")),
            ]),
        ],
        vec![obj(vec![
            ("id", n("1e400")),
            ("meta", J::Obj(obj(vec![("", n("1"))]))),
            ("tags", J::Arr(vec![J::Arr(vec![]), J::Null])),
            ("when", n("5")),
        ])],
        vec![obj(vec![("tags", J::Arr(vec![J::Arr(vec![n("0.1")])]))])],
    ]);
}
