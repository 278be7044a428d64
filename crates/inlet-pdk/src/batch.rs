//! Building record batches column by column, typed so that nothing loses precision.

use crate::{Batch, Column, ColumnData, ColumnType, Field, I128Parts, PluginError};

/// Builds a [`Batch`] for a schema, one row at a time.
///
/// Set each column of a row with the typed setters (by column index, as in the schema),
/// then call [`BatchBuilder::end_row`]; a column not set in a row is null. Setting a
/// column with the wrong type is an error naming the column.
#[derive(Debug)]
pub struct BatchBuilder {
    fields: Vec<Field>,
    columns: Vec<ColumnData>,
    valid: Vec<Vec<bool>>,
    any_null: Vec<bool>,
    set: Vec<bool>,
    rows: u32,
}

fn empty(ty: &ColumnType) -> ColumnData {
    match ty {
        ColumnType::Boolean => ColumnData::Boolean(Vec::new()),
        ColumnType::Int64 => ColumnData::Int64(Vec::new()),
        ColumnType::Float64 => ColumnData::Float64(Vec::new()),
        ColumnType::Utf8 => ColumnData::Utf8(Vec::new()),
        ColumnType::Binary => ColumnData::Binary(Vec::new()),
        ColumnType::Date32 => ColumnData::Date32(Vec::new()),
        ColumnType::TimestampMicros => ColumnData::TimestampMicros(Vec::new()),
        ColumnType::Decimal128(_) => ColumnData::Decimal128(Vec::new()),
    }
}

impl BatchBuilder {
    /// A builder for `fields`.
    pub fn new(fields: &[Field]) -> Self {
        BatchBuilder {
            fields: fields.to_vec(),
            columns: fields.iter().map(|f| empty(&f.type_)).collect(),
            valid: vec![Vec::new(); fields.len()],
            any_null: vec![false; fields.len()],
            set: vec![false; fields.len()],
            rows: 0,
        }
    }

    /// Rows so far.
    pub fn rows(&self) -> u32 {
        self.rows
    }

    /// The index of the column called `name`.
    pub fn index(&self, name: &str) -> Option<usize> {
        self.fields.iter().position(|f| f.name == name)
    }

    fn wrong(&self, col: usize, what: &str) -> PluginError {
        let name = self.fields.get(col).map_or("?", |f| f.name.as_str());
        PluginError::Other(format!(
            "column `{name}` (index {col}) is not of type {what}"
        ))
    }

    fn mark(&mut self, col: usize) {
        self.set[col] = true;
    }

    /// Set an int64 column.
    pub fn int64(&mut self, col: usize, v: i64) -> Result<(), PluginError> {
        match self.columns.get_mut(col) {
            Some(ColumnData::Int64(c) | ColumnData::TimestampMicros(c)) => c.push(v),
            _ => return Err(self.wrong(col, "int64")),
        }
        self.mark(col);
        Ok(())
    }

    /// Set a timestamp column (microseconds since the epoch, UTC).
    pub fn timestamp_micros(&mut self, col: usize, v: i64) -> Result<(), PluginError> {
        self.int64(col, v)
    }

    /// Set a float64 column.
    pub fn float64(&mut self, col: usize, v: f64) -> Result<(), PluginError> {
        match self.columns.get_mut(col) {
            Some(ColumnData::Float64(c)) => c.push(v),
            _ => return Err(self.wrong(col, "float64")),
        }
        self.mark(col);
        Ok(())
    }

    /// Set a boolean column.
    pub fn boolean(&mut self, col: usize, v: bool) -> Result<(), PluginError> {
        match self.columns.get_mut(col) {
            Some(ColumnData::Boolean(c)) => c.push(v),
            _ => return Err(self.wrong(col, "boolean")),
        }
        self.mark(col);
        Ok(())
    }

    /// Set a utf8 column.
    pub fn utf8(&mut self, col: usize, v: impl Into<String>) -> Result<(), PluginError> {
        match self.columns.get_mut(col) {
            Some(ColumnData::Utf8(c)) => c.push(v.into()),
            _ => return Err(self.wrong(col, "utf8")),
        }
        self.mark(col);
        Ok(())
    }

    /// Set a binary column.
    pub fn binary(&mut self, col: usize, v: Vec<u8>) -> Result<(), PluginError> {
        match self.columns.get_mut(col) {
            Some(ColumnData::Binary(c)) => c.push(v),
            _ => return Err(self.wrong(col, "binary")),
        }
        self.mark(col);
        Ok(())
    }

    /// Set a date column (days since 1970-01-01).
    pub fn date32(&mut self, col: usize, v: i32) -> Result<(), PluginError> {
        match self.columns.get_mut(col) {
            Some(ColumnData::Date32(c)) => c.push(v),
            _ => return Err(self.wrong(col, "date32")),
        }
        self.mark(col);
        Ok(())
    }

    /// Set a decimal column from its unscaled value (`12.34` at scale 2 is `1234`).
    pub fn decimal128(&mut self, col: usize, unscaled: i128) -> Result<(), PluginError> {
        match self.columns.get_mut(col) {
            Some(ColumnData::Decimal128(c)) => c.push(I128Parts {
                hi: (unscaled >> 64) as i64,
                lo: unscaled as u64,
            }),
            _ => return Err(self.wrong(col, "decimal128")),
        }
        self.mark(col);
        Ok(())
    }

    /// Finish the current row: columns not set are null (an error for a non-nullable one).
    pub fn end_row(&mut self) -> Result<(), PluginError> {
        for col in 0..self.fields.len() {
            if self.set[col] {
                self.valid[col].push(true);
                self.set[col] = false;
                continue;
            }
            if !self.fields[col].nullable {
                return Err(PluginError::Data(format!(
                    "column `{}` is not nullable but row {} has no value",
                    self.fields[col].name, self.rows
                )));
            }
            match &mut self.columns[col] {
                ColumnData::Boolean(c) => c.push(false),
                ColumnData::Int64(c) | ColumnData::TimestampMicros(c) => c.push(0),
                ColumnData::Float64(c) => c.push(0.0),
                ColumnData::Utf8(c) => c.push(String::new()),
                ColumnData::Binary(c) => c.push(Vec::new()),
                ColumnData::Date32(c) => c.push(0),
                ColumnData::Decimal128(c) => c.push(I128Parts { hi: 0, lo: 0 }),
            }
            self.valid[col].push(false);
            self.any_null[col] = true;
        }
        self.rows += 1;
        Ok(())
    }

    /// The batch built so far; the builder starts over empty.
    pub fn finish(&mut self) -> Batch {
        let rows = self.rows;
        let mut columns = Vec::with_capacity(self.fields.len());
        for (i, f) in self.fields.iter().enumerate() {
            let data = std::mem::replace(&mut self.columns[i], empty(&f.type_));
            let valid = std::mem::take(&mut self.valid[i]);
            columns.push(Column {
                name: f.name.clone(),
                data,
                valid: if self.any_null[i] { valid } else { Vec::new() },
            });
            self.any_null[i] = false;
        }
        self.rows = 0;
        Batch { rows, columns }
    }
}
