//! What the writer lands is read as is by Spark 3.5, DuckDB and pyarrow: spec LIST/MAP
//! names, microsecond timestamps with the UTC flag, no Null columns; and a file written the
//! old way (arrow-rs' defaults: `item` lists, Decimal256, Time64, a Null column) stays
//! readable beside the new ones by DuckDB and pyarrow.
#![allow(clippy::unwrap_used, clippy::expect_used, reason = "tests")]

use std::{collections::HashMap, sync::Arc};

use arrow_array::{
    ArrayRef, BinaryArray, BooleanArray, Date32Array, Decimal128Array, Float32Array, Float64Array,
    Int32Array, Int64Array, ListArray, MapArray, NullArray, RecordBatch, StringArray, StructArray,
    TimestampMicrosecondArray, TimestampMillisecondArray, TimestampNanosecondArray,
    TimestampSecondArray,
    builder::MapBuilder,
    builder::{Int64Builder, StringBuilder},
    types::Int32Type,
};
use arrow_schema::{DataType, Field, Fields, Schema};
use chrono::{DateTime, Utc};
use inlet_lake::{LocalStorage, Storage, StreamWriter, WriterOptions};
use inlet_testkit::lake::{outside_python, python, spark_and_pyarrow, spark_python};

fn at() -> DateTime<Utc> {
    DateTime::parse_from_rfc3339("2026-12-02T10:00:00Z")
        .unwrap()
        .to_utc()
}

/// Four rows of every shape a connector may hand the writer.
fn every_shape() -> RecordBatch {
    let interval = Fields::from(vec![
        Field::new("a", DataType::Int32, true),
        Field::new("never", DataType::Null, true),
        Field::new(
            "tags",
            DataType::List(Arc::new(Field::new("item", DataType::Null, true))),
            true,
        ),
    ]);
    let nested = StructArray::new(
        interval.clone(),
        vec![
            Arc::new(Int32Array::from(vec![Some(1), None, Some(3), Some(4)])) as ArrayRef,
            Arc::new(NullArray::new(4)),
            Arc::new(ListArray::new(
                Arc::new(Field::new("item", DataType::Null, true)),
                arrow_buffer::OffsetBuffer::from_lengths([0, 2, 0, 1]),
                Arc::new(NullArray::new(3)),
                Some(vec![true, true, false, true].into()),
            )),
        ],
        Some(vec![true, true, true, false].into()),
    );
    let mut map = MapBuilder::new(None, StringBuilder::new(), Int64Builder::new());
    for row in 0..4 {
        if row == 2 {
            map.append(false).unwrap();
            continue;
        }
        map.keys().append_value(format!("k{row}"));
        map.values().append_value(row * 10);
        map.keys().append_value("z");
        map.values().append_null();
        map.append(true).unwrap();
    }
    let map: MapArray = map.finish();
    let columns: Vec<(&str, ArrayRef)> = vec![
        ("id", Arc::new(Int64Array::from(vec![1, 2, 3, 4]))),
        (
            "amount",
            Arc::new(
                Decimal128Array::from(vec![Some(-999_999_999_999), Some(5), None, Some(0)])
                    .with_precision_and_scale(12, 2)
                    .unwrap(),
            ),
        ),
        (
            "text",
            Arc::new(StringArray::from(vec![
                Some("héllo"),
                Some(""),
                None,
                Some("a\nb"),
            ])),
        ),
        (
            "blob",
            Arc::new(BinaryArray::from(vec![
                Some(&b"\x00\xff"[..]),
                Some(&b""[..]),
                None,
                Some(&b"x"[..]),
            ])),
        ),
        (
            "day",
            Arc::new(Date32Array::from(vec![
                Some(20_000),
                Some(i32::MAX),
                None,
                Some(-i32::MAX),
            ])),
        ),
        (
            "at_utc",
            Arc::new(
                TimestampMicrosecondArray::from(vec![
                    Some(1_764_000_000_123_456),
                    Some(i64::MAX),
                    None,
                    Some(-i64::MAX),
                ])
                .with_timezone("UTC"),
            ),
        ),
        (
            "at_local_ns",
            Arc::new(TimestampNanosecondArray::from(vec![
                Some(1_764_000_000_123_456_000),
                Some(0),
                None,
                Some(-1_000),
            ])),
        ),
        (
            "at_secs",
            Arc::new(
                TimestampSecondArray::from(vec![Some(1_764_000_000), None, Some(0), Some(-1)])
                    .with_timezone("+00:00"),
            ),
        ),
        (
            "at_millis",
            Arc::new(TimestampMillisecondArray::from(vec![
                Some(1_764_000_000_123),
                None,
                Some(1),
                Some(-1),
            ])),
        ),
        (
            "ints",
            Arc::new(ListArray::from_iter_primitive::<Int32Type, _, _>(vec![
                Some(vec![Some(1), None, Some(3)]),
                Some(vec![]),
                None,
                Some(vec![Some(-1)]),
            ])),
        ),
        ("labels", Arc::new(map)),
        ("nested", Arc::new(nested)),
        ("always_null", Arc::new(NullArray::new(4))),
        (
            "ratio",
            Arc::new(Float64Array::from(vec![
                Some(f64::NAN),
                Some(f64::INFINITY),
                None,
                Some(-0.1),
            ])),
        ),
        (
            "small",
            Arc::new(Float32Array::from(vec![
                Some(3.25),
                Some(f32::NEG_INFINITY),
                None,
                Some(0.1),
            ])),
        ),
        (
            "flag",
            Arc::new(BooleanArray::from(vec![
                Some(true),
                Some(false),
                None,
                Some(true),
            ])),
        ),
    ];
    let fields: Vec<Field> = columns
        .iter()
        .map(|(name, a)| {
            Field::new(*name, a.data_type().clone(), true).with_metadata(HashMap::from([(
                "pg_type".to_string(),
                format!("the source type of {name}"),
            )]))
        })
        .collect();
    RecordBatch::try_new(
        Arc::new(Schema::new(fields)),
        columns.into_iter().map(|(_, a)| a).collect(),
    )
    .unwrap()
}

async fn land(dir: &std::path::Path, stream: &str, batch: &RecordBatch) -> Result<(), String> {
    let storage: Arc<dyn Storage> = Arc::new(LocalStorage::new(dir).unwrap());
    let mut w = StreamWriter::new(
        storage.clone(),
        "src",
        stream,
        "run1",
        WriterOptions::default(),
        0,
    );
    w.write(batch, at()).await.map_err(|e| e.to_string())?;
    for s in w.take_staged().await.map_err(|e| e.to_string())? {
        storage.publish(&s).await.unwrap();
    }
    Ok(())
}

#[tokio::test]
async fn every_shape_lands_as_spec_parquet_that_spark_reads_value_for_value_as_pyarrow() {
    let dir = tempfile::tempdir().unwrap();
    land(dir.path(), "shapes", &every_shape()).await.unwrap();
    let stream = dir.path().join("src/shapes");

    // Our reader: the portable schema, field metadata kept, the Null column left out.
    let batches = inlet_testkit::lake::read_batches(&stream);
    let schema = batches[0].schema();
    assert!(schema.field_with_name("always_null").is_err(), "{schema:?}");
    let ty = |name: &str| schema.field_with_name(name).unwrap().data_type().clone();
    assert_eq!(
        ty("at_local_ns"),
        DataType::Timestamp(arrow_schema::TimeUnit::Microsecond, None)
    );
    assert_eq!(
        schema.field_with_name("amount").unwrap().metadata()["pg_type"],
        "the source type of amount"
    );
    let Some(py) = outside_python() else { return };
    // The Parquet schema itself, as the specification names it.
    let files = inlet_testkit::lake::parquet_files(&stream);
    let out = python(
        &py,
        &format!(
            r#"
import pyarrow.parquet as pq
f = pq.ParquetFile("{}")
s = f.schema
cols = dict((s.column(i).path, s.column(i)) for i in range(len(s)))
print([p for p in cols if p.startswith("ints")][0])
print([p for p in cols if p.startswith("labels")])
for name in ["at_utc", "at_local_ns", "at_secs", "at_millis"]:
    print(name, cols[name].logical_type)
print(f.schema_arrow.field("amount").metadata)
print(sorted(k.decode() for k in f.metadata.metadata if k.startswith(b"inlet.")))
"#,
            files[0].display()
        ),
    );
    let lines: Vec<&str> = out.lines().collect();
    assert_eq!(lines[0], "ints.list.element", "{out}");
    assert_eq!(
        lines[1], "['labels.key_value.key', 'labels.key_value.value']",
        "{out}"
    );
    assert!(
        lines[2].contains("isAdjustedToUTC=true, timeUnit=microseconds"),
        "{out}"
    );
    assert!(
        lines[3].contains("isAdjustedToUTC=false, timeUnit=microseconds"),
        "{out}"
    );
    assert!(
        lines[4].contains("isAdjustedToUTC=true, timeUnit=microseconds"),
        "{out}"
    );
    assert!(
        lines[5].contains("isAdjustedToUTC=false, timeUnit=microseconds"),
        "{out}"
    );
    assert_eq!(
        lines[6], "{b'pg_type': b'the source type of amount'}",
        "{out}"
    );
    assert!(lines[7].contains("inlet.schema_fingerprint"), "{out}");

    let Some(spark) = spark_python() else { return };
    let (readings, secs) = spark_and_pyarrow(&spark, &[&stream]);
    eprintln!("Spark check: {secs:.1} s");
    let r = &readings[0];
    assert_eq!(r.spark_error, None, "{r:?}");
    assert!(r.mismatches.is_empty(), "{:#?}", r.mismatches);
    assert_eq!(r.rows, 4);
    assert_eq!(r.columns.len(), 15 + 2, "{:?}", r.columns);
}

#[tokio::test]
async fn a_nanosecond_timestamp_with_digits_below_the_microsecond_fails_naming_the_column() {
    let dir = tempfile::tempdir().unwrap();
    let schema = Arc::new(Schema::new(vec![Field::new(
        "seen",
        DataType::Timestamp(arrow_schema::TimeUnit::Nanosecond, None),
        true,
    )]));
    let batch = RecordBatch::try_new(
        schema,
        vec![Arc::new(TimestampNanosecondArray::from(vec![
            Some(1_000),
            Some(1_764_000_000_123_456_789),
        ]))],
    )
    .unwrap();
    let e = land(dir.path(), "ns", &batch).await.unwrap_err();
    assert!(e.contains("`seen`"), "{e}");
    assert!(e.contains("1764000000123456789"), "{e}");
    assert!(e.contains("below the microsecond"), "{e}");
    assert!(inlet_testkit::lake::parquet_files(dir.path()).is_empty());
}

/// arrow-rs' defaults, as inlet wrote before: `item` lists, Decimal256, Time64, a Null column.
fn write_the_old_way(path: &std::path::Path) {
    use arrow_array::{Decimal256Array, Time64MicrosecondArray};
    use arrow_buffer::i256;
    let schema = Arc::new(Schema::new(vec![
        Field::new("id", DataType::Int64, false),
        Field::new("wide", DataType::Decimal256(60, 10), true),
        Field::new(
            "clock",
            DataType::Time64(arrow_schema::TimeUnit::Microsecond),
            true,
        ),
        Field::new(
            "ints",
            DataType::List(Arc::new(Field::new("item", DataType::Int32, true))),
            true,
        ),
        Field::new("always_null", DataType::Null, true),
    ]));
    let batch = RecordBatch::try_new(
        schema.clone(),
        vec![
            Arc::new(Int64Array::from(vec![1])),
            Arc::new(
                Decimal256Array::from(vec![Some(
                    i256::from_string(
                        "123456789012345678901234567890123456789012345678900123456789",
                    )
                    .unwrap(),
                )])
                .with_precision_and_scale(60, 10)
                .unwrap(),
            ),
            Arc::new(Time64MicrosecondArray::from(vec![Some(86_399_999_999)])),
            Arc::new(ListArray::from_iter_primitive::<Int32Type, _, _>(vec![
                Some(vec![Some(1), None]),
            ])),
            Arc::new(NullArray::new(1)),
        ],
    )
    .unwrap();
    std::fs::create_dir_all(path.parent().unwrap()).unwrap();
    let mut w =
        parquet::arrow::ArrowWriter::try_new(std::fs::File::create(path).unwrap(), schema, None)
            .unwrap();
    w.write(&batch).unwrap();
    w.close().unwrap();
}

#[tokio::test]
async fn files_written_the_old_way_stay_readable_beside_new_ones() {
    let dir = tempfile::tempdir().unwrap();
    let stream = dir.path().join("src/mixed");
    write_the_old_way(&stream.join("extracted_at=2026-12-01/old.parquet"));
    // The new default: the wide decimal and the time as their text.
    let schema = Arc::new(Schema::new(vec![
        Field::new("id", DataType::Int64, false),
        Field::new("wide", DataType::Utf8, true),
        Field::new("clock", DataType::Utf8, true),
        Field::new(
            "ints",
            DataType::List(Arc::new(Field::new("item", DataType::Int32, true))),
            true,
        ),
    ]));
    let batch = RecordBatch::try_new(
        schema,
        vec![
            Arc::new(Int64Array::from(vec![2])),
            Arc::new(StringArray::from(vec!["-0.0000000001"])),
            Arc::new(StringArray::from(vec!["24:00:00"])),
            Arc::new(ListArray::from_iter_primitive::<Int32Type, _, _>(vec![
                Some(vec![None, Some(7)]),
            ])),
        ],
    )
    .unwrap();
    land(dir.path(), "mixed", &batch).await.unwrap();
    let Some(py) = outside_python() else { return };
    let out = python(
        &py,
        &format!(
            r#"
import duckdb, pyarrow as pa, pyarrow.dataset as ds
d = "{d}"
# DuckDB has no decimal wider than 38 digits: it reads the old Decimal256(60, 10) as a
# wrong double (3.47e63 for 1.23e49), one more reason the default is text; pyarrow reads it.
rows = duckdb.sql(f"select id, case when extracted_at = '2026-12-01' then 'Decimal256' else wide::varchar end, clock::varchar, ints, extracted_at::varchar from read_parquet('{{d}}/**/*.parquet', union_by_name=true, hive_partitioning=true) order by id").fetchall()
for r in rows: print("duckdb", r)
schema = pa.schema([("id", pa.int64()), ("wide", pa.string()), ("clock", pa.string()), ("ints", pa.list_(pa.int32()))])
t = ds.dataset(d, format="parquet", partitioning="hive", schema=schema.append(pa.field("extracted_at", pa.string()))).to_table().sort_by("id")
for r in t.to_pylist(): print("pyarrow", r)
"#,
            d = stream.display()
        ),
    );
    let lines: Vec<&str> = out.lines().collect();
    assert_eq!(
        lines,
        vec![
            "duckdb (1, 'Decimal256', '23:59:59.999999', [1, None], '2026-12-01')",
            "duckdb (2, '-0.0000000001', '24:00:00', [None, 7], '2026-12-02')",
            "pyarrow {'id': 1, 'wide': '12345678901234567890123456789012345678901234567890.0123456789', 'clock': '23:59:59.999999', 'ints': [1, None], 'extracted_at': '2026-12-01'}",
            "pyarrow {'id': 2, 'wide': '-0.0000000001', 'clock': '24:00:00', 'ints': [None, 7], 'extracted_at': '2026-12-02'}",
        ],
        "{out}"
    );
    // Spark reads the new file and refuses the old one: why the defaults changed.
    let Some(spark) = spark_python() else { return };
    let new_day = stream.join("extracted_at=2026-12-02");
    let old_day = stream.join("extracted_at=2026-12-01");
    let (readings, _) = spark_and_pyarrow(&spark, &[&new_day, &old_day]);
    assert_eq!(readings[0].spark_error, None, "{:?}", readings[0]);
    assert!(readings[0].mismatches.is_empty(), "{:?}", readings[0]);
    let refused = readings[1].spark_error.as_deref().unwrap_or_default();
    assert!(!refused.is_empty(), "{:?}", readings[1]);
    eprintln!("Spark on the old file: {refused}");
}
