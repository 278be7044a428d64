//! WIT values to Arrow and inlet-core types, checked: a plugin cannot make the host panic
//! with a malformed batch.

use std::sync::Arc;

use arrow_array::{
    ArrayRef, BinaryArray, BooleanArray, Date32Array, Decimal128Array, Float64Array, Int64Array,
    RecordBatch, StringArray, TimestampMicrosecondArray,
};
use arrow_buffer::{BooleanBuffer, NullBuffer, ScalarBuffer};
use arrow_schema::{DataType, Field, Schema, SchemaRef, TimeUnit};
use inlet_core::{StreamDescriptor, SyncMode};

use crate::bindings::inlet::plugin::types::{self, ColumnData, ColumnType};

/// The Arrow type of a WIT column type.
pub fn data_type(t: &ColumnType) -> Result<DataType, String> {
    Ok(match t {
        ColumnType::Boolean => DataType::Boolean,
        ColumnType::Int64 => DataType::Int64,
        ColumnType::Float64 => DataType::Float64,
        ColumnType::Utf8 => DataType::Utf8,
        ColumnType::Binary => DataType::Binary,
        ColumnType::Date32 => DataType::Date32,
        ColumnType::TimestampMicros => {
            DataType::Timestamp(TimeUnit::Microsecond, Some("UTC".into()))
        }
        ColumnType::Decimal128(d) => {
            if d.precision == 0 || d.precision > 38 || i16::from(d.scale) > i16::from(d.precision) {
                return Err(format!(
                    "decimal128({}, {}): precision must be 1..=38 and scale at most the precision",
                    d.precision, d.scale
                ));
            }
            DataType::Decimal128(d.precision, d.scale)
        }
    })
}

/// The Arrow schema of a stream's fields.
pub fn schema(fields: &[types::Field]) -> Result<SchemaRef, String> {
    let mut out = Vec::with_capacity(fields.len());
    for f in fields {
        let dt = data_type(&f.type_).map_err(|m| format!("field `{}`: {m}", f.name))?;
        out.push(Field::new(&f.name, dt, f.nullable));
    }
    Ok(Arc::new(Schema::new(out)))
}

/// A stream descriptor.
pub fn stream(s: &types::StreamInfo) -> Result<StreamDescriptor, String> {
    let schema = schema(&s.fields).map_err(|m| format!("stream `{}`: {m}", s.name))?;
    for k in s.primary_key.iter().chain(&s.cursor_candidates) {
        if schema.field_with_name(k).is_err() {
            return Err(format!(
                "stream `{}`: key or cursor `{k}` is not a field",
                s.name
            ));
        }
    }
    let mut modes = vec![SyncMode::FullRefresh];
    if s.incremental {
        modes.push(SyncMode::Incremental);
    }
    Ok(StreamDescriptor {
        name: s.name.clone(),
        schema,
        primary_key: s.primary_key.clone(),
        cursor_candidates: s.cursor_candidates.clone(),
        default_mode: if s.incremental {
            SyncMode::Incremental
        } else {
            SyncMode::FullRefresh
        },
        opt_in: false,
        sync_modes: modes,
    })
}

fn nulls(valid: Vec<bool>, rows: usize, name: &str) -> Result<Option<NullBuffer>, String> {
    if valid.is_empty() {
        return Ok(None);
    }
    if valid.len() != rows {
        return Err(format!(
            "column `{name}`: {} validity entries for {rows} rows",
            valid.len()
        ));
    }
    Ok(Some(NullBuffer::from(valid)))
}

/// A batch of the stream with `schema`. Columns must match the schema by name and type, in
/// order, and have `rows` values each.
pub fn batch(schema: &SchemaRef, b: types::Batch) -> Result<RecordBatch, String> {
    let rows = b.rows as usize;
    if b.columns.len() != schema.fields().len() {
        return Err(format!(
            "batch has {} columns, the stream's schema {}",
            b.columns.len(),
            schema.fields().len()
        ));
    }
    let mut arrays: Vec<ArrayRef> = Vec::with_capacity(b.columns.len());
    for (col, field) in b.columns.into_iter().zip(schema.fields()) {
        let name = col.name;
        if &name != field.name() {
            return Err(format!(
                "column `{name}` where the schema has `{}`",
                field.name()
            ));
        }
        let len = match &col.data {
            ColumnData::Boolean(v) => v.len(),
            ColumnData::Int64(v) | ColumnData::TimestampMicros(v) => v.len(),
            ColumnData::Float64(v) => v.len(),
            ColumnData::Utf8(v) => v.len(),
            ColumnData::Binary(v) => v.len(),
            ColumnData::Date32(v) => v.len(),
            ColumnData::Decimal128(v) => v.len(),
        };
        if len != rows {
            return Err(format!("column `{name}`: {len} values for {rows} rows"));
        }
        let nb = nulls(col.valid, rows, &name)?;
        if nb.as_ref().is_some_and(|n| n.null_count() > 0) && !field.is_nullable() {
            return Err(format!("column `{name}` is not nullable but has nulls"));
        }
        let wrong = || {
            format!(
                "column `{name}`: values are not of type {}",
                field.data_type()
            )
        };
        let array: ArrayRef = match (col.data, field.data_type()) {
            (ColumnData::Boolean(v), DataType::Boolean) => {
                Arc::new(BooleanArray::new(BooleanBuffer::from(v), nb))
            }
            (ColumnData::Int64(v), DataType::Int64) => {
                Arc::new(Int64Array::new(ScalarBuffer::from(v), nb))
            }
            (ColumnData::TimestampMicros(v), DataType::Timestamp(TimeUnit::Microsecond, _)) => {
                Arc::new(
                    TimestampMicrosecondArray::new(ScalarBuffer::from(v), nb).with_timezone("UTC"),
                )
            }
            (ColumnData::Float64(v), DataType::Float64) => {
                Arc::new(Float64Array::new(ScalarBuffer::from(v), nb))
            }
            (ColumnData::Date32(v), DataType::Date32) => {
                Arc::new(Date32Array::new(ScalarBuffer::from(v), nb))
            }
            (ColumnData::Utf8(v), DataType::Utf8) => {
                let arr: StringArray = match &nb {
                    None => StringArray::from_iter_values(v.iter()),
                    Some(n) => v
                        .iter()
                        .zip(n.iter())
                        .map(|(s, ok)| ok.then_some(s.as_str()))
                        .collect(),
                };
                Arc::new(arr)
            }
            (ColumnData::Binary(v), DataType::Binary) => {
                let arr: BinaryArray = match &nb {
                    None => BinaryArray::from_iter_values(v.iter()),
                    Some(n) => v
                        .iter()
                        .zip(n.iter())
                        .map(|(s, ok)| ok.then_some(s.as_slice()))
                        .collect(),
                };
                Arc::new(arr)
            }
            (ColumnData::Decimal128(v), DataType::Decimal128(p, s)) => {
                let values: Vec<i128> = v
                    .iter()
                    .map(|x| (i128::from(x.hi) << 64) | i128::from(x.lo))
                    .collect();
                let arr = Decimal128Array::new(ScalarBuffer::from(values), nb)
                    .with_precision_and_scale(*p, *s)
                    .map_err(|e| format!("column `{name}`: {e}"))?;
                Arc::new(arr)
            }
            _ => return Err(wrong()),
        };
        arrays.push(array);
    }
    RecordBatch::try_new(schema.clone(), arrays).map_err(|e| e.to_string())
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, reason = "tests")]
    use super::*;
    use arrow_array::Array;
    use types::{Column, DecimalType, I128Parts};

    fn f(name: &str, t: ColumnType, nullable: bool) -> types::Field {
        types::Field {
            name: name.into(),
            type_: t,
            nullable,
        }
    }

    #[test]
    fn int64_and_decimal_keep_every_digit() {
        let s = schema(&[
            f("id", ColumnType::Int64, false),
            f(
                "amount",
                ColumnType::Decimal128(DecimalType {
                    precision: 38,
                    scale: 4,
                }),
                true,
            ),
        ])
        .unwrap();
        let big: i128 = 12_345_678_901_234_567_890_123_456_789_012_345_678;
        let b = types::Batch {
            rows: 2,
            columns: vec![
                Column {
                    name: "id".into(),
                    data: ColumnData::Int64(vec![i64::MAX, 9_007_199_254_740_993]),
                    valid: vec![],
                },
                Column {
                    name: "amount".into(),
                    data: ColumnData::Decimal128(vec![
                        I128Parts {
                            hi: (big >> 64) as i64,
                            lo: big as u64,
                        },
                        I128Parts {
                            hi: -1,
                            lo: u64::MAX,
                        },
                    ]),
                    valid: vec![true, true],
                },
            ],
        };
        let rb = batch(&s, b).unwrap();
        let ids = rb.column(0).as_any().downcast_ref::<Int64Array>().unwrap();
        assert_eq!(ids.value(0), i64::MAX);
        assert_eq!(ids.value(1), 9_007_199_254_740_993);
        let d = rb
            .column(1)
            .as_any()
            .downcast_ref::<Decimal128Array>()
            .unwrap();
        assert_eq!(d.value(0), big);
        assert_eq!(d.value(1), -1);
        assert_eq!(d.value_as_string(1), "-0.0001");
    }

    #[test]
    fn malformed_batches_are_errors_not_panics() {
        let s = schema(&[f("a", ColumnType::Utf8, false)]).unwrap();
        let short = types::Batch {
            rows: 3,
            columns: vec![Column {
                name: "a".into(),
                data: ColumnData::Utf8(vec!["x".into()]),
                valid: vec![],
            }],
        };
        assert!(
            batch(&s, short)
                .unwrap_err()
                .contains("1 values for 3 rows")
        );
        let typed = types::Batch {
            rows: 1,
            columns: vec![Column {
                name: "a".into(),
                data: ColumnData::Int64(vec![1]),
                valid: vec![],
            }],
        };
        assert!(batch(&s, typed).unwrap_err().contains("not of type"));
        let null = types::Batch {
            rows: 1,
            columns: vec![Column {
                name: "a".into(),
                data: ColumnData::Utf8(vec![String::new()]),
                valid: vec![false],
            }],
        };
        assert!(batch(&s, null).unwrap_err().contains("not nullable"));
        let bad_dec = schema(&[f(
            "d",
            ColumnType::Decimal128(DecimalType {
                precision: 40,
                scale: 0,
            }),
            true,
        )]);
        assert!(bad_dec.is_err());
        let ok = schema(&[f("a", ColumnType::Utf8, true)]).unwrap();
        let rb = batch(
            &ok,
            types::Batch {
                rows: 2,
                columns: vec![Column {
                    name: "a".into(),
                    data: ColumnData::Utf8(vec!["x".into(), String::new()]),
                    valid: vec![true, false],
                }],
            },
        )
        .unwrap();
        assert_eq!(rb.column(0).null_count(), 1);
    }
}
