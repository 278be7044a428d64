//! Cursor incremental: the SQL that plans a read on the cursor's index, and the set of
//! row versions already landed at the saved cursor value (the boundary).
//!
//! Every statement here is answered from a b-tree on the cursor column (or the key)
//! without reading the table: the upper bound is a backward scan that stops at the first
//! finite value, the boundary is an equality lookup, the key bounds are min/max. A test
//! runs `EXPLAIN` of exactly these statements on a table big enough that the planner
//! would otherwise read it all.

use base64::Engine;

use crate::{
    catalog::{RelKind, Table, ident, literal},
    types::{ColumnType, Kind},
};

/// The planning statements of a cursor column.
#[derive(Debug, Clone, Copy)]
pub struct CursorSql<'a> {
    table: &'a Table,
    column: &'a ColumnType,
}

impl<'a> CursorSql<'a> {
    /// The statements for `column` of `table`, when the table has it.
    pub fn new(table: &'a Table, column: &str) -> Option<Self> {
        Some(CursorSql {
            table,
            column: table.column(column)?,
        })
    }

    fn col(&self) -> String {
        ident(&self.column.name)
    }

    /// The SQL type cursor values are cast to in comparisons.
    pub fn value_type(&self) -> &'static str {
        base_type(&self.column.kind)
    }

    /// The largest finite cursor value as exact text (no row when there is none).
    ///
    /// NULL, ±infinity and NaN are not finite: an `infinity` sentinel would stop the
    /// cursor for good (those rows are read by the first run). The range conditions are
    /// the same set as `isfinite()` / `NOT IN ('NaN', 'Infinity', '-Infinity')`, written
    /// so that they are index conditions of a backward scan that stops at the first row;
    /// `max(c) FILTER (WHERE isfinite(c))` cannot use the index and reads every row.
    pub fn upper_bound(&self) -> String {
        let c = self.col();
        let ty = self.value_type();
        let finite = match self.column.kind {
            Kind::Timestamp | Kind::Timestamptz | Kind::Date => {
                format!("{c} > '-infinity'::{ty} AND {c} < 'infinity'::{ty}")
            }
            // NaN sorts above Infinity in a numeric b-tree, so `< 'Infinity'` leaves it
            // out too.
            Kind::Decimal128 { .. }
            | Kind::Decimal256 { .. }
            | Kind::WideNumericText { .. }
            | Kind::NumericText => {
                format!("{c} > '-Infinity'::{ty} AND {c} < 'Infinity'::{ty}")
            }
            _ => format!("{c} IS NOT NULL"),
        };
        // The subquery keeps ORDER BY on the column: the outer text rendering may carry
        // the column's name, and ordering by text would neither be right nor indexed.
        format!(
            "SELECT {} FROM (SELECT {c} FROM {} WHERE {finite} ORDER BY {c} DESC LIMIT 1) s",
            cursor_text(&self.column.kind, &c),
            self.table.sql_name()
        )
    }

    /// The hashes of the row versions whose cursor is exactly `value`, at most `limit`.
    pub fn boundary_rows(&self, value: &str, limit: u64) -> String {
        format!(
            "SELECT {} FROM {} WHERE {} = {}::{} LIMIT {limit}",
            row_hash(self.table),
            self.table.sql_name(),
            self.col(),
            literal(value),
            self.value_type()
        )
    }
}

/// The min and max of an integer key, for key ranges (answered by min/max index scans).
pub fn key_bounds(table: &Table, key: &str) -> String {
    let k = ident(key);
    format!(
        "SELECT min({k})::int8, max({k})::int8 FROM {}",
        table.sql_name()
    )
}

/// SQL for a 64-bit hash that identifies a row version.
///
/// Tables and materialized views hash `xmin` with the primary key (or with every column
/// when there is none): an update writes a new version with a new `xmin`, so a changed
/// row never matches the hash of a version landed before, even when its cursor and
/// content end up as they were. Views have no `xmin`: their rows hash by content.
pub fn row_hash(table: &Table) -> String {
    let mut parts: Vec<String> = Vec::new();
    if table.kind.has_xmin() {
        parts.push("xmin".into());
    }
    if table.primary_key.is_empty() || table.kind == RelKind::View {
        parts.extend(table.columns.iter().map(|c| ident(&c.name)));
    } else {
        parts.extend(table.primary_key.iter().map(|c| ident(c)));
    }
    format!("hashtextextended(ROW({})::text, 0)", parts.join(", "))
}

/// The SQL type cursor values of a kind are cast to.
pub fn base_type(kind: &Kind) -> &'static str {
    match kind {
        Kind::Timestamptz => "timestamptz",
        Kind::Timestamp => "timestamp",
        Kind::Date => "date",
        Kind::Int2 | Kind::Int4 | Kind::Int8 => "int8",
        _ => "numeric",
    }
}

/// SQL that is true for finite cursor values.
pub fn finite_filter(kind: &Kind, column: &str) -> String {
    match kind {
        Kind::Timestamp | Kind::Timestamptz | Kind::Date => format!("isfinite({column})"),
        Kind::Decimal128 { .. }
        | Kind::Decimal256 { .. }
        | Kind::WideNumericText { .. }
        | Kind::NumericText => {
            format!("{column} NOT IN ('NaN', 'Infinity', '-Infinity')")
        }
        _ => "true".to_string(),
    }
}

/// SQL that renders a cursor value as exact text.
pub fn cursor_text(kind: &Kind, expr: &str) -> String {
    match kind {
        Kind::Timestamptz => {
            format!("to_char({expr} AT TIME ZONE 'UTC', 'YYYY-MM-DD\"T\"HH24:MI:SS.US\"Z\"')")
        }
        Kind::Timestamp => format!("to_char({expr}, 'YYYY-MM-DD\"T\"HH24:MI:SS.US')"),
        _ => format!("({expr})::text"),
    }
}

/// Row-version hashes as kept in the state: sorted, 8 bytes each (big-endian), base64.
/// 100,000 hashes take 1,066,668 characters.
pub fn encode_hashes(hashes: &mut Vec<i64>) -> String {
    hashes.sort_unstable();
    hashes.dedup();
    let mut bytes = Vec::with_capacity(hashes.len() * 8);
    for h in hashes.iter() {
        bytes.extend_from_slice(&h.to_be_bytes());
    }
    base64::engine::general_purpose::STANDARD.encode(bytes)
}

/// The hashes of [`encode_hashes`]' text.
pub fn decode_hashes(text: &str) -> Result<Vec<i64>, String> {
    let bytes = base64::engine::general_purpose::STANDARD
        .decode(text)
        .map_err(|e| format!("boundary hashes are not base64: {e}"))?;
    if bytes.len() % 8 != 0 {
        return Err(format!(
            "boundary hashes are {} bytes, not a multiple of 8",
            bytes.len()
        ));
    }
    Ok(bytes
        .chunks_exact(8)
        .map(|c| {
            let mut b = [0u8; 8];
            b.copy_from_slice(c);
            i64::from_be_bytes(b)
        })
        .collect())
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, reason = "tests")]
    use super::*;

    #[test]
    fn hashes_round_trip_sorted_and_unique() {
        let mut h = vec![5, -1, i64::MAX, i64::MIN, 5, 0];
        let text = encode_hashes(&mut h);
        assert_eq!(
            decode_hashes(&text).unwrap(),
            vec![i64::MIN, -1, 0, 5, i64::MAX]
        );
        assert!(decode_hashes("AAAA").is_err());
        assert!(decode_hashes("not base64!").is_err());
    }
}
