//! Records (JSON objects or CSV rows) into Arrow batches, with a schema that evolves by
//! a fixed, lossless policy:
//!
//! - a new field becomes a new nullable column (earlier rows are null: they did not have it);
//! - a field keeps its type while values agree: `Int64`, `Float64`, `Boolean`, `Utf8`;
//! - integers meeting floats widen to `Float64`;
//! - any other conflict widens the column to `Utf8`, holding each value's original text;
//! - nested objects and arrays are `Utf8` columns holding the JSON text, so nothing is
//!   dropped or nulled; the processed layer parses them.
//!
//! The schema only ever widens; it is saved in the stream's state so the next run starts
//! from it.

use std::sync::Arc;

use arrow_array::{
    ArrayRef, RecordBatch,
    builder::{BooleanBuilder, Float64Builder, Int64Builder, StringBuilder},
};
use arrow_schema::{ArrowError, DataType, Field, Schema, SchemaRef};
use serde_json::Value;

/// A value of one cell, before it is given its column type.
#[derive(Debug, Clone, PartialEq)]
pub enum Cell {
    /// Missing or null.
    Null,
    /// true/false.
    Bool(bool),
    /// An integer that fits i64.
    Int(i64),
    /// A float.
    Float(f64),
    /// Text, with nothing inferred from it.
    Text(String),
    /// JSON text of a nested object or array, or of a number too large for i64.
    Json(String),
}

impl Cell {
    /// The cell of a JSON value.
    pub fn from_json(v: Value) -> Cell {
        match v {
            Value::Null => Cell::Null,
            Value::Bool(b) => Cell::Bool(b),
            Value::Number(n) => {
                if let Some(i) = n.as_i64() {
                    Cell::Int(i)
                } else if n.is_f64() {
                    n.as_f64()
                        .map(Cell::Float)
                        .unwrap_or(Cell::Json(n.to_string()))
                } else {
                    Cell::Json(n.to_string())
                }
            }
            Value::String(s) => Cell::Text(s),
            other => Cell::Json(other.to_string()),
        }
    }

    /// The cell of a CSV field: empty is null; integers, floats and booleans are
    /// recognised; everything else is text.
    pub fn from_csv(field: &str) -> Cell {
        if field.is_empty() {
            return Cell::Null;
        }
        if let Ok(i) = field.parse::<i64>() {
            // Keep leading zeros (zip codes, ids) as text: "007" is not 7.
            if !(field.len() > 1 && (field.starts_with('0') || field.starts_with("-0"))) {
                return Cell::Int(i);
            }
            return Cell::Text(field.to_string());
        }
        let leading_zero =
            field.len() > 1 && field.starts_with('0') && field.as_bytes()[1].is_ascii_digit();
        if field.bytes().any(|b| b.is_ascii_digit())
            && !leading_zero
            && let Ok(f) = field.parse::<f64>()
            && f.is_finite()
        {
            return Cell::Float(f);
        }
        match field {
            "true" | "TRUE" | "True" => Cell::Bool(true),
            "false" | "FALSE" | "False" => Cell::Bool(false),
            _ => Cell::Text(field.to_string()),
        }
    }

    fn data_type(&self) -> Option<DataType> {
        match self {
            Cell::Null => None,
            Cell::Bool(_) => Some(DataType::Boolean),
            Cell::Int(_) => Some(DataType::Int64),
            Cell::Float(_) => Some(DataType::Float64),
            Cell::Text(_) | Cell::Json(_) => Some(DataType::Utf8),
        }
    }

    fn text(&self) -> Option<String> {
        match self {
            Cell::Null => None,
            Cell::Bool(b) => Some(b.to_string()),
            Cell::Int(i) => Some(i.to_string()),
            Cell::Float(f) => Some(f.to_string()),
            Cell::Text(s) | Cell::Json(s) => Some(s.clone()),
        }
    }
}

/// The wider of two column types under the policy above.
pub fn widen(a: &DataType, b: &DataType) -> DataType {
    match (a, b) {
        (DataType::Null, t) | (t, DataType::Null) => t.clone(),
        (x, y) if x == y => x.clone(),
        (DataType::Int64, DataType::Float64) | (DataType::Float64, DataType::Int64) => {
            DataType::Float64
        }
        _ => DataType::Utf8,
    }
}

/// Rows of one batch, each a list of (column name, cell).
pub type Row = Vec<(String, Cell)>;

/// The schema after seeing `rows`, starting from `current`. Returns `None` when unchanged.
pub fn evolve(current: &Schema, rows: &[Row]) -> Option<SchemaRef> {
    let mut fields: Vec<(String, DataType)> = current
        .fields()
        .iter()
        .map(|f| (f.name().clone(), f.data_type().clone()))
        .collect();
    let mut changed = false;
    for row in rows {
        for (name, cell) in row {
            let Some(t) = cell.data_type() else {
                if !fields.iter().any(|(n, _)| n == name) {
                    fields.push((name.clone(), DataType::Null));
                    changed = true;
                }
                continue;
            };
            match fields.iter_mut().find(|(n, _)| n == name) {
                Some((_, existing)) => {
                    let w = widen(existing, &t);
                    if w != *existing {
                        *existing = w;
                        changed = true;
                    }
                }
                None => {
                    fields.push((name.clone(), t));
                    changed = true;
                }
            }
        }
    }
    changed.then(|| {
        Arc::new(Schema::new(
            fields
                .into_iter()
                .map(|(n, t)| Field::new(n, t, true))
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
                    Some(Cell::Int(i)) => Some(*i),
                    _ => None,
                });
            }
            Arc::new(b.finish())
        }
        DataType::Float64 => {
            let mut b = Float64Builder::with_capacity(cells.len());
            for c in cells {
                b.append_option(match c {
                    Some(Cell::Float(f)) => Some(*f),
                    Some(Cell::Int(i)) => Some(*i as f64),
                    _ => None,
                });
            }
            Arc::new(b.finish())
        }
        DataType::Boolean => {
            let mut b = BooleanBuilder::with_capacity(cells.len());
            for c in cells {
                b.append_option(match c {
                    Some(Cell::Bool(v)) => Some(*v),
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
    use super::*;
    use arrow_array::{Array, Float64Array, StringArray};

    fn row(cells: &[(&str, Cell)]) -> Row {
        cells
            .iter()
            .map(|(n, c)| (n.to_string(), c.clone()))
            .collect()
    }

    #[test]
    fn new_fields_are_added_and_conflicts_widen_losslessly() {
        let empty = Schema::empty();
        let rows = vec![row(&[("id", Cell::Int(1)), ("v", Cell::Int(2))])];
        let s1 = evolve(&empty, &rows).unwrap();
        assert_eq!(s1.field(0).data_type(), &DataType::Int64);
        assert!(evolve(&s1, &rows).is_none());
        let rows2 = vec![row(&[
            ("v", Cell::Float(2.5)),
            ("extra", Cell::Text("x".into())),
        ])];
        let s2 = evolve(&s1, &rows2).unwrap();
        assert_eq!(
            s2.field_with_name("v").unwrap().data_type(),
            &DataType::Float64
        );
        assert_eq!(
            s2.field_with_name("extra").unwrap().data_type(),
            &DataType::Utf8
        );
        let rows3 = vec![
            row(&[("id", Cell::Text("abc".into()))]),
            row(&[("id", Cell::Int(7))]),
        ];
        let s3 = evolve(&s2, &rows3).unwrap();
        assert_eq!(
            s3.field_with_name("id").unwrap().data_type(),
            &DataType::Utf8
        );
        let batch = build_batch(&s3, &rows3).unwrap();
        let ids = batch
            .column(0)
            .as_any()
            .downcast_ref::<StringArray>()
            .unwrap();
        assert_eq!(ids.value(0), "abc");
        assert_eq!(ids.value(1), "7");
        let v = batch
            .column(1)
            .as_any()
            .downcast_ref::<Float64Array>()
            .unwrap();
        assert!(v.is_null(0));
    }

    #[test]
    fn nested_json_is_kept_as_text_and_big_integers_are_exact() {
        let c = Cell::from_json(serde_json::json!({"a": [1, 2]}));
        assert_eq!(c, Cell::Json(r#"{"a":[1,2]}"#.into()));
        let big: Value = serde_json::from_str("18446744073709551615").unwrap();
        assert_eq!(
            Cell::from_json(big),
            Cell::Json("18446744073709551615".into())
        );
    }

    #[test]
    fn csv_cells_keep_leading_zeros_as_text() {
        assert_eq!(Cell::from_csv("007"), Cell::Text("007".into()));
        assert_eq!(Cell::from_csv("0"), Cell::Int(0));
        assert_eq!(Cell::from_csv("-12"), Cell::Int(-12));
        assert_eq!(Cell::from_csv("3.25"), Cell::Float(3.25));
        assert_eq!(Cell::from_csv("0.5"), Cell::Float(0.5));
        assert_eq!(Cell::from_csv(""), Cell::Null);
        assert_eq!(
            Cell::from_csv("2026-11-23T10:00:00Z"),
            Cell::Text("2026-11-23T10:00:00Z".into())
        );
    }
}
