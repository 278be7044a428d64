//! Records (JSON objects or CSV rows) into Arrow batches, with a schema that evolves by
//! a fixed, lossless policy:
//!
//! - a new field becomes a new nullable column (earlier rows are null: they did not have it);
//! - numbers follow the one exact policy of [`inlet_core::number`]: integers within `i64`
//!   are `Int64`, every other number an exact `Decimal128(38, s)` with `s` the largest scale
//!   seen (`12.50` keeps its two digits), and a number no such decimal holds turns the
//!   column into text; nothing is ever inferred as a float;
//! - a field keeps its type while values agree: `Int64`, `Decimal128`, `Boolean`, `Utf8`;
//!   integers meeting decimals widen to the decimal;
//! - any other conflict widens the column to `Utf8`, holding each value's original text
//!   (`1.50e3` stays `1.50e3`, `TRUE` stays `TRUE`);
//! - nested objects and arrays are `Utf8` columns holding their JSON text as the source
//!   wrote it (compacted: whitespace between tokens dropped, numbers and escapes as
//!   written), so nothing is dropped or nulled; the processed layer parses them.
//!
//! A column that an earlier version landed as `Float64` (its saved schema says so) is
//! inferred again, exactly, from the next values: the schema change is recorded and a new
//! Parquet file starts, as for any change of type.
//!
//! The schema only ever widens; it is saved in the stream's state so the next run starts
//! from it.

use std::sync::Arc;

use arrow_array::{
    ArrayRef, RecordBatch,
    builder::{BooleanBuilder, Decimal128Builder, Float64Builder, Int64Builder, StringBuilder},
};
use arrow_schema::{ArrowError, DataType, Field, Schema, SchemaRef};
use inlet_core::number::{self, MAX_PRECISION, Number};
use serde::de::{Deserializer, MapAccess, Visitor};
use serde_json::value::RawValue;

/// A value of one cell, before it is given its column type.
#[derive(Debug, Clone, PartialEq)]
pub enum Cell {
    /// Missing or null.
    Null,
    /// true/false, with the text it was written as.
    Bool(bool, &'static str),
    /// A number literal, read exactly; `raw` is its text when rendering the number would
    /// not give it back (exponents, negative zero, numbers no decimal holds).
    Num {
        /// The value.
        number: Number,
        /// The literal as written, where it differs from the rendering of `number`.
        raw: Option<Box<str>>,
    },
    /// Text, with nothing inferred from it.
    Text(String),
    /// JSON text of a nested object or array, as written.
    Json(String),
}

impl Cell {
    /// The cell of a number literal's text, or `None` when it is not one.
    fn number(text: &str) -> Option<Cell> {
        let number = number::parse(text)?;
        // Only these forms render differently from how they were written.
        let keep = matches!(number, Number::Inexact)
            || text.starts_with("-0")
            || text.bytes().any(|b| b == b'e' || b == b'E');
        Some(Cell::Num {
            number,
            raw: keep.then(|| text.into()),
        })
    }

    /// The cell of one JSON value, as its raw text.
    pub fn from_raw_json(raw: &RawValue) -> Cell {
        let text = raw.get();
        match text.as_bytes().first() {
            Some(b'"') => match serde_json::from_str::<String>(text) {
                Ok(s) => Cell::Text(s),
                Err(_) => Cell::Json(text.to_string()),
            },
            Some(b'{' | b'[') => Cell::Json(minify(text)),
            Some(b't') => Cell::Bool(true, "true"),
            Some(b'f') => Cell::Bool(false, "false"),
            Some(b'n') => Cell::Null,
            _ => Cell::number(text).unwrap_or_else(|| Cell::Text(text.to_string())),
        }
    }

    /// The cell of a CSV field: empty is null; number literals (the JSON grammar: `007`
    /// and `+5` are text) and booleans are recognised; everything else is text.
    pub fn from_csv(field: &str) -> Cell {
        if field.is_empty() {
            return Cell::Null;
        }
        if let Some(cell) = Cell::number(field) {
            return cell;
        }
        match field {
            "true" => Cell::Bool(true, "true"),
            "TRUE" => Cell::Bool(true, "TRUE"),
            "True" => Cell::Bool(true, "True"),
            "false" => Cell::Bool(false, "false"),
            "FALSE" => Cell::Bool(false, "FALSE"),
            "False" => Cell::Bool(false, "False"),
            _ => Cell::Text(field.to_string()),
        }
    }

    fn data_type(&self) -> Option<DataType> {
        match self {
            Cell::Null => None,
            Cell::Bool(..) => Some(DataType::Boolean),
            Cell::Num { number, .. } => Some(match number {
                Number::Int(_) => DataType::Int64,
                Number::Decimal { scale, .. } => DataType::Decimal128(MAX_PRECISION, *scale as i8),
                Number::Inexact => DataType::Utf8,
            }),
            Cell::Text(_) | Cell::Json(_) => Some(DataType::Utf8),
        }
    }

    /// The value's original text.
    fn text(&self) -> Option<String> {
        match self {
            Cell::Null => None,
            Cell::Bool(_, text) => Some((*text).to_string()),
            Cell::Num { raw: Some(raw), .. } => Some(raw.to_string()),
            Cell::Num { number, raw: None } => Some(render(number)),
            Cell::Text(s) | Cell::Json(s) => Some(s.clone()),
        }
    }
}

/// Valid JSON text without the whitespace between tokens: the compact form, with
/// numbers and string escapes exactly as written (re-serializing would round numbers).
fn minify(json: &str) -> String {
    let mut out = String::with_capacity(json.len());
    let (mut in_string, mut escaped) = (false, false);
    for c in json.chars() {
        if in_string {
            out.push(c);
            if escaped {
                escaped = false;
            } else if c == '\\' {
                escaped = true;
            } else if c == '"' {
                in_string = false;
            }
        } else if !matches!(c, ' ' | '\t' | '\n' | '\r') {
            in_string = c == '"';
            out.push(c);
        }
    }
    out
}

/// The plain text of an exact number (its scale kept: `12.50`).
fn render(number: &Number) -> String {
    match *number {
        Number::Int(i) => i.to_string(),
        Number::Decimal {
            unscaled, scale, ..
        } => {
            let digits = unscaled.unsigned_abs().to_string();
            let scale = usize::from(scale);
            let sign = if unscaled < 0 { "-" } else { "" };
            if scale == 0 {
                return format!("{sign}{digits}");
            }
            let padded = format!("{digits:0>width$}", width = scale + 1);
            let (int, frac) = padded.split_at(padded.len() - scale);
            format!("{sign}{int}.{frac}")
        }
        // Inexact numbers always keep their raw text; this is not reached.
        Number::Inexact => String::new(),
    }
}

/// The fields of one JSON object, in order, each with its raw value; `Err` says why the
/// text is not a JSON object (the reason of a bad record).
pub fn parse_json_object(text: &[u8]) -> Result<Row, String> {
    struct Fields;
    impl<'de> Visitor<'de> for Fields {
        type Value = Row;
        fn expecting(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
            f.write_str("a JSON object")
        }
        fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Row, A::Error> {
            let mut row = Vec::with_capacity(map.size_hint().unwrap_or(8));
            while let Some((key, value)) = map.next_entry::<String, &'de RawValue>()? {
                row.push((key, Cell::from_raw_json(value)));
            }
            Ok(row)
        }
    }
    let mut de = serde_json::Deserializer::from_slice(text);
    match de
        .deserialize_map(Fields)
        .and_then(|row| de.end().map(|()| row))
    {
        Ok(row) => Ok(row),
        Err(e) => Err(match serde_json::from_slice::<serde_json::Value>(text) {
            Ok(other) => format!("expected a JSON object, found {}", kind_of(&other)),
            Err(_) => format!("malformed JSON: {e}"),
        }),
    }
}

fn kind_of(v: &serde_json::Value) -> &'static str {
    use serde_json::Value;
    match v {
        Value::Null => "null",
        Value::Bool(_) => "a boolean",
        Value::Number(_) => "a number",
        Value::String(_) => "a string",
        Value::Array(_) => "an array",
        Value::Object(_) => "an object",
    }
}

/// The wider of two column types under the policy above (before the batch's decimals
/// are checked against the widened scale, see [`evolve`]).
pub fn widen(a: &DataType, b: &DataType) -> DataType {
    use DataType as T;
    match (a, b) {
        (T::Null, t) | (t, T::Null) => t.clone(),
        (x, y) if x == y => x.clone(),
        (T::Decimal128(_, sa), T::Decimal128(_, sb)) => T::Decimal128(MAX_PRECISION, *sa.max(sb)),
        (T::Int64, d @ T::Decimal128(..)) | (d @ T::Decimal128(..), T::Int64) => d.clone(),
        _ => T::Utf8,
    }
}

/// Rows of one batch, each a list of (column name, cell).
pub type Row = Vec<(String, Cell)>;

/// The schema after seeing `rows`, starting from `current`. Returns `None` when unchanged.
pub fn evolve(current: &Schema, rows: &[Row]) -> Option<SchemaRef> {
    // A float64 column comes from a saved schema of an earlier version (none is inferred
    // now): it starts again with no type, so its values are inferred exactly.
    let mut changed = false;
    // Each column with the most integer digits a number of this batch has in it.
    let mut fields: Vec<(String, DataType, u8)> = current
        .fields()
        .iter()
        .map(|f| match f.data_type() {
            DataType::Float64 => {
                changed = true;
                (f.name().clone(), DataType::Null, 0)
            }
            t => (f.name().clone(), t.clone(), 0),
        })
        .collect();
    for row in rows {
        for (name, cell) in row {
            let int_digits = match cell {
                Cell::Num { number, .. } => number.int_digits(),
                _ => 0,
            };
            let Some(t) = cell.data_type() else {
                if !fields.iter().any(|(n, ..)| n == name) {
                    fields.push((name.clone(), DataType::Null, 0));
                    changed = true;
                }
                continue;
            };
            match fields.iter_mut().find(|(n, ..)| n == name) {
                Some((_, existing, digits)) => {
                    *digits = (*digits).max(int_digits);
                    let w = widen(existing, &t);
                    if w != *existing {
                        *existing = w;
                        changed = true;
                    }
                }
                None => {
                    fields.push((name.clone(), t, int_digits));
                    changed = true;
                }
            }
        }
    }
    // A widened scale leaves fewer integer digits: a value of this batch that no longer
    // fits makes its column text (never a rounded or overflowing decimal).
    for (_, t, digits) in fields.iter_mut() {
        if let DataType::Decimal128(_, scale) = *t
            && !number::decimal_fits(*digits, scale as u8)
        {
            *t = DataType::Utf8;
            changed = true;
        }
    }
    changed.then(|| {
        Arc::new(Schema::new(
            fields
                .into_iter()
                .map(|(n, t, _)| Field::new(n, t, true))
                .collect::<Vec<_>>(),
        ))
    })
}

/// Build a batch of `rows` in `schema` (which must already cover them).
pub fn build_batch(schema: &SchemaRef, rows: &[Row]) -> Result<RecordBatch, ArrowError> {
    let index: std::collections::HashMap<&str, usize> = schema
        .fields()
        .iter()
        .enumerate()
        .map(|(i, f)| (f.name().as_str(), i))
        .collect();
    // Cells by column, in row order; columns a row lacks are null.
    let ncols = schema.fields().len();
    let mut cols: Vec<Vec<Option<&Cell>>> = vec![vec![None; rows.len()]; ncols];
    for (r, row) in rows.iter().enumerate() {
        for (name, cell) in row {
            if let Some(&c) = index.get(name.as_str()) {
                cols[c][r] = Some(cell);
            }
        }
    }
    let arrays = schema
        .fields()
        .iter()
        .zip(cols)
        .map(|(field, cells)| build_column(field.data_type(), &cells))
        .collect::<Result<Vec<ArrayRef>, ArrowError>>()?;
    RecordBatch::try_new(schema.clone(), arrays)
}

fn build_column(data_type: &DataType, cells: &[Option<&Cell>]) -> Result<ArrayRef, ArrowError> {
    Ok(match data_type {
        DataType::Int64 => {
            let mut b = Int64Builder::with_capacity(cells.len());
            for c in cells {
                b.append_option(match c {
                    Some(Cell::Num {
                        number: Number::Int(i),
                        ..
                    }) => Some(*i),
                    _ => None,
                });
            }
            Arc::new(b.finish())
        }
        DataType::Decimal128(precision, scale) => {
            let mut b = Decimal128Builder::with_capacity(cells.len())
                .with_precision_and_scale(*precision, *scale)?;
            for c in cells {
                match c {
                    Some(Cell::Num { number, .. }) => match number.unscaled_at(*scale as u8) {
                        Some(v) => b.append_value(v),
                        // evolve() made such a column text; a schema given from outside
                        // (state) that cannot hold the value is an error, not a rounding.
                        None => {
                            return Err(ArrowError::InvalidArgumentError(format!(
                                "{} does not fit decimal({precision},{scale})",
                                c.and_then(Cell::text).unwrap_or_default()
                            )));
                        }
                    },
                    _ => b.append_null(),
                }
            }
            Arc::new(b.finish())
        }
        DataType::Float64 => {
            let mut b = Float64Builder::with_capacity(cells.len());
            for c in cells {
                b.append_option(match c {
                    Some(cell @ Cell::Num { .. }) => {
                        cell.text().and_then(|t| t.parse::<f64>().ok())
                    }
                    _ => None,
                });
            }
            Arc::new(b.finish())
        }
        DataType::Boolean => {
            let mut b = BooleanBuilder::with_capacity(cells.len());
            for c in cells {
                b.append_option(match c {
                    Some(Cell::Bool(v, _)) => Some(*v),
                    _ => None,
                });
            }
            Arc::new(b.finish())
        }
        DataType::Null => Arc::new(arrow_array::NullArray::new(cells.len())),
        _ => {
            let mut b = StringBuilder::with_capacity(cells.len(), cells.len() * 16);
            for c in cells {
                b.append_option(c.and_then(Cell::text));
            }
            Arc::new(b.finish())
        }
    })
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, reason = "tests")]
    use super::*;
    use arrow_array::{Array, Decimal128Array, StringArray};

    fn row(cells: &[(&str, Cell)]) -> Row {
        cells
            .iter()
            .map(|(n, c)| (n.to_string(), c.clone()))
            .collect()
    }

    fn int(i: i64) -> Cell {
        Cell::Num {
            number: Number::Int(i),
            raw: None,
        }
    }

    fn strings(batch: &RecordBatch, name: &str) -> Vec<Option<String>> {
        let col = batch.column_by_name(name).unwrap();
        let col = col.as_any().downcast_ref::<StringArray>().unwrap();
        (0..col.len())
            .map(|i| col.is_valid(i).then(|| col.value(i).to_string()))
            .collect()
    }

    #[test]
    fn new_fields_are_added_and_conflicts_widen_losslessly() {
        let empty = Schema::empty();
        let rows = vec![row(&[("id", int(1)), ("v", int(2))])];
        let s1 = evolve(&empty, &rows).unwrap();
        assert_eq!(s1.field(0).data_type(), &DataType::Int64);
        assert!(evolve(&s1, &rows).is_none());
        let rows2 = vec![row(&[
            ("v", Cell::from_csv("2.5")),
            ("extra", Cell::Text("x".into())),
        ])];
        let s2 = evolve(&s1, &rows2).unwrap();
        assert_eq!(
            s2.field_with_name("v").unwrap().data_type(),
            &DataType::Decimal128(38, 1)
        );
        assert_eq!(
            s2.field_with_name("extra").unwrap().data_type(),
            &DataType::Utf8
        );
        let rows3 = vec![
            row(&[("id", Cell::Text("abc".into()))]),
            row(&[("id", int(7))]),
        ];
        let s3 = evolve(&s2, &rows3).unwrap();
        assert_eq!(
            s3.field_with_name("id").unwrap().data_type(),
            &DataType::Utf8
        );
        let batch = build_batch(&s3, &rows3).unwrap();
        assert_eq!(
            strings(&batch, "id"),
            [Some("abc".to_string()), Some("7".to_string())]
        );
        assert!(batch.column_by_name("v").unwrap().is_null(0));
    }

    /// Issue 16, item 7: a CSV column of money, big numbers and text kept each value's
    /// float rendering (`12345678901234567000`, `0.1`) instead of what the file said.
    #[test]
    fn numbers_widened_to_text_keep_their_original_text() {
        let fields = [
            "12345678901234567890.12",
            "0.10",
            "abc",
            "1.50e3",
            "-0",
            "NaN",
            "TRUE",
            "123456789012345678901234567890123456789",
        ];
        let rows: Vec<Row> = fields
            .iter()
            .map(|f| row(&[("amount", Cell::from_csv(f))]))
            .collect();
        let schema = evolve(&Schema::empty(), &rows).unwrap();
        assert_eq!(schema.field(0).data_type(), &DataType::Utf8);
        let batch = build_batch(&schema, &rows).unwrap();
        let expected: Vec<Option<String>> = fields.iter().map(|f| Some(f.to_string())).collect();
        assert_eq!(strings(&batch, "amount"), expected);
    }

    #[test]
    fn decimal_looking_values_are_exact_decimals_with_their_scale() {
        let fields = ["12.50", "0.1", "-3", "1.5e2", "99999999999999999999.999"];
        let rows: Vec<Row> = fields
            .iter()
            .map(|f| row(&[("price", Cell::from_csv(f))]))
            .collect();
        let schema = evolve(&Schema::empty(), &rows).unwrap();
        assert_eq!(schema.field(0).data_type(), &DataType::Decimal128(38, 3));
        let batch = build_batch(&schema, &rows).unwrap();
        let col = batch
            .column(0)
            .as_any()
            .downcast_ref::<Decimal128Array>()
            .unwrap();
        let values: Vec<String> = (0..col.len()).map(|i| col.value_as_string(i)).collect();
        assert_eq!(
            values,
            [
                "12.500",
                "0.100",
                "-3.000",
                "150.000",
                "99999999999999999999.999"
            ]
        );
        // A scale that leaves too few integer digits for a value of the batch: text.
        let rows = vec![
            row(&[("x", Cell::from_csv("12345678901234567890123456789"))]),
            row(&[("x", Cell::from_csv("0.0000000001"))]),
        ];
        let schema = evolve(&Schema::empty(), &rows).unwrap();
        assert_eq!(schema.field(0).data_type(), &DataType::Utf8);
        assert_eq!(
            strings(&build_batch(&schema, &rows).unwrap(), "x"),
            [
                Some("12345678901234567890123456789".to_string()),
                Some("0.0000000001".to_string())
            ]
        );
    }

    #[test]
    fn a_float64_column_of_a_saved_schema_is_inferred_again_exactly() {
        let saved = Schema::new(vec![
            Field::new("id", DataType::Int64, true),
            Field::new("amount", DataType::Float64, true),
        ]);
        let rows = vec![row(&[("id", int(1)), ("amount", Cell::from_csv("0.10"))])];
        let schema = evolve(&saved, &rows).unwrap();
        assert_eq!(
            schema.field_with_name("amount").unwrap().data_type(),
            &DataType::Decimal128(38, 2)
        );
        assert!(evolve(&schema, &rows).is_none());
    }

    #[test]
    fn json_objects_keep_nested_text_and_exact_numbers() {
        let row = parse_json_object(
            br#"{"a": {"b": [1, 2.50]}, "big": 18446744073709551615, "f": 0.1, "s": "12.5", "t": true, "n": null}"#,
        )
        .unwrap();
        assert_eq!(
            row[0],
            ("a".to_string(), Cell::Json(r#"{"b":[1,2.50]}"#.into()))
        );
        assert_eq!(
            minify(r#"{ "k y": "a \" b\\", "n" : [ 1e3 ,-0 ] }"#),
            r#"{"k y":"a \" b\\","n":[1e3,-0]}"#
        );
        assert_eq!(row[1].1.data_type(), Some(DataType::Decimal128(38, 0)));
        assert_eq!(row[1].1.text().unwrap(), "18446744073709551615");
        assert_eq!(row[2].1.text().unwrap(), "0.1");
        assert_eq!(row[3].1, Cell::Text("12.5".into()));
        assert_eq!(row[4].1, Cell::Bool(true, "true"));
        assert_eq!(row[5].1, Cell::Null);
        assert_eq!(
            parse_json_object(b"[1]").unwrap_err(),
            "expected a JSON object, found an array"
        );
        assert!(
            parse_json_object(b"{\"a\": ")
                .unwrap_err()
                .starts_with("malformed JSON")
        );
        assert!(parse_json_object(br#"{"a": 1} x"#).is_err());
    }

    #[test]
    fn csv_cells_keep_leading_zeros_as_text() {
        assert_eq!(Cell::from_csv("007"), Cell::Text("007".into()));
        assert_eq!(Cell::from_csv("0"), int(0));
        assert_eq!(Cell::from_csv("-12"), int(-12));
        assert_eq!(Cell::from_csv("+5"), Cell::Text("+5".into()));
        assert_eq!(Cell::from_csv(""), Cell::Null);
        assert_eq!(
            Cell::from_csv("2026-11-23T10:00:00Z"),
            Cell::Text("2026-11-23T10:00:00Z".into())
        );
    }
}
