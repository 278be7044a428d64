//! Reading the catalog: tables, partitioned tables, views, their columns with Arrow types,
//! primary keys and indexed cursor candidates.

use std::collections::{HashMap, HashSet};

use inlet_core::SourceError;
use tokio_postgres::Client;

use crate::{
    config::{ArrayPolicy, NumericPolicy, PostgresConfig, TimePolicy, WideNumericPolicy, matches},
    session::Connect,
    types::{ColumnType, Kind},
};

/// What kind of relation a stream reads.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RelKind {
    /// An ordinary table.
    Table,
    /// A partitioned table: its leaf partitions are read through it, under one watermark.
    Partitioned,
    /// A view.
    View,
    /// A materialized view.
    MaterializedView,
}

impl RelKind {
    /// Whether rows have an `xmin` the source can use.
    pub fn has_xmin(self) -> bool {
        matches!(
            self,
            RelKind::Table | RelKind::Partitioned | RelKind::MaterializedView
        )
    }
}

/// A table as the catalog describes it.
#[derive(Debug, Clone)]
pub struct Table {
    /// `pg_class.oid`.
    pub oid: u32,
    /// Schema.
    pub schema: String,
    /// Name.
    pub name: String,
    /// Relation kind.
    pub kind: RelKind,
    /// Estimated rows (`reltuples`, summed over leaf partitions); negative when unknown.
    pub est_rows: f64,
    /// Primary key columns in key order.
    pub primary_key: Vec<String>,
    /// The columns in table order.
    pub columns: Vec<ColumnType>,
    /// Columns that lead an index, in column order: cheap cursor candidates.
    pub indexed: Vec<String>,
    /// `pg_class.relispopulated`: false for a materialized view created or refreshed
    /// `WITH NO DATA`, which cannot be read until it is refreshed.
    pub populated: bool,
}

impl Table {
    /// The stream name: `schema.table`.
    pub fn stream_name(&self) -> String {
        format!("{}.{}", self.schema, self.name)
    }

    /// The quoted, qualified name for SQL.
    pub fn sql_name(&self) -> String {
        format!("{}.{}", ident(&self.schema), ident(&self.name))
    }

    /// A column by name.
    pub fn column(&self, name: &str) -> Option<&ColumnType> {
        self.columns.iter().find(|c| c.name == name)
    }

    /// The single integer primary-key column, when the key is one.
    pub fn integer_key(&self) -> Option<&ColumnType> {
        match self.primary_key.as_slice() {
            [k] => self.column(k).filter(|c| c.kind.is_integer()),
            _ => None,
        }
    }

    /// Cursor candidates: indexed columns of orderable types, timestamps first.
    pub fn cursor_candidates(&self) -> Vec<String> {
        let mut out: Vec<&ColumnType> = self
            .columns
            .iter()
            .filter(|c| c.kind.is_cursor_type() && self.indexed.contains(&c.name))
            .collect();
        out.sort_by_key(|c| match c.kind {
            Kind::Timestamptz | Kind::Timestamp => 0,
            Kind::Date => 1,
            _ => 2,
        });
        out.into_iter().map(|c| c.name.clone()).collect()
    }

    /// The SELECT list: every column, cast to text where there is no binary decoder.
    pub fn select_list(&self) -> String {
        self.columns
            .iter()
            .map(|c| {
                if c.cast_to_text {
                    format!("{}::text", ident(&c.name))
                } else {
                    ident(&c.name)
                }
            })
            .collect::<Vec<_>>()
            .join(", ")
    }
}

/// Quote an identifier.
pub fn ident(name: &str) -> String {
    format!("\"{}\"", name.replace('"', "\"\""))
}

/// Quote a literal.
pub fn literal(value: &str) -> String {
    format!("'{}'", value.replace('\'', "''"))
}

#[derive(Debug, Clone)]
struct PgType {
    name: String,
    namespace: String,
    typtype: String,
    base: u32,
    base_typmod: i32,
    elem: u32,
    category: String,
}

/// Read every table the config selects.
pub async fn tables(connect: &Connect, client: &Client) -> Result<Vec<Table>, SourceError> {
    let cfg = connect.config();
    let err = |e| connect.error(e);
    let types: HashMap<u32, PgType> = client
        .query(
            "SELECT t.oid, t.typname::text, n.nspname::text, t.typtype::text, t.typbasetype, \
                    t.typtypmod, t.typelem, t.typcategory::text \
             FROM pg_type t JOIN pg_namespace n ON n.oid = t.typnamespace",
            &[],
        )
        .await
        .map_err(err)?
        .into_iter()
        .map(|r| {
            (
                r.get::<_, u32>(0),
                PgType {
                    name: r.get(1),
                    namespace: r.get(2),
                    typtype: r.get(3),
                    base: r.get(4),
                    base_typmod: r.get(5),
                    elem: r.get(6),
                    category: r.get(7),
                },
            )
        })
        .collect();
    let money_scale: i32 = client
        .query_one("SELECT scale('1'::money::numeric)", &[])
        .await
        .map_err(err)?
        .get::<_, Option<i32>>(0)
        .unwrap_or(2);
    let rows = client
        .query(
            "SELECT c.oid, n.nspname::text, c.relname::text, c.relkind::text, \
                    CASE WHEN c.relkind = 'p' THEN \
                      (SELECT COALESCE(sum(GREATEST(l.reltuples, 0)), 0)::float8 \
                         FROM pg_partition_tree(c.oid) pt JOIN pg_class l ON l.oid = pt.relid \
                        WHERE pt.isleaf) \
                    ELSE c.reltuples::float8 END, \
                    COALESCE((SELECT array_agg(a.attname::text ORDER BY k.ord) \
                       FROM pg_index i \
                       CROSS JOIN LATERAL unnest(i.indkey::int2[]) WITH ORDINALITY AS k(attnum, ord) \
                       JOIN pg_attribute a ON a.attrelid = c.oid AND a.attnum = k.attnum \
                      WHERE i.indrelid = c.oid AND i.indisprimary), '{}'), \
                    COALESCE((SELECT array_agg(DISTINCT a.attname::text) \
                       FROM pg_index i JOIN pg_attribute a \
                         ON a.attrelid = c.oid AND a.attnum = i.indkey[0] \
                      WHERE i.indrelid = c.oid AND i.indisvalid), '{}'), \
                    c.relispopulated \
             FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace \
             WHERE c.relkind IN ('r', 'p', 'v', 'm') AND NOT c.relispartition \
               AND n.nspname NOT IN ('pg_catalog', 'information_schema') \
               AND n.nspname NOT LIKE 'pg\\_toast%' AND n.nspname NOT LIKE 'pg\\_temp%' \
             ORDER BY 2, 3",
            &[],
        )
        .await
        .map_err(err)?;
    let mut out = Vec::new();
    for r in rows {
        let schema: String = r.get(1);
        let name: String = r.get(2);
        let stream = format!("{schema}.{name}");
        if !selected(cfg, &stream) {
            continue;
        }
        let kind = match r.get::<_, String>(3).as_str() {
            "p" => RelKind::Partitioned,
            "v" => RelKind::View,
            "m" => RelKind::MaterializedView,
            _ => RelKind::Table,
        };
        out.push(Table {
            oid: r.get(0),
            schema,
            name,
            kind,
            est_rows: r.get(4),
            primary_key: r.get(5),
            columns: Vec::new(),
            indexed: r.get(6),
            populated: r.get(7),
        });
    }
    if out.is_empty() {
        return Ok(out);
    }
    let oids: Vec<u32> = out.iter().map(|t| t.oid).collect();
    let cols = client
        .query(
            "SELECT a.attrelid, a.attname::text, a.atttypid, a.atttypmod, \
                    format_type(a.atttypid, a.atttypmod), NOT a.attnotnull, a.attndims::int4 \
             FROM pg_attribute a \
             WHERE a.attrelid = ANY($1) AND a.attnum > 0 AND NOT a.attisdropped \
             ORDER BY a.attrelid, a.attnum",
            &[&oids],
        )
        .await
        .map_err(err)?;
    let mut by_rel: HashMap<u32, Vec<ColumnType>> = HashMap::new();
    for c in cols {
        let rel: u32 = c.get(0);
        let name: String = c.get(1);
        let oid: u32 = c.get(2);
        let typmod: i32 = c.get(3);
        let pg_type: String = c.get(4);
        let nullable: bool = c.get(5);
        let ndims: i32 = c.get(6);
        let kind = resolve(&types, oid, typmod, ndims, cfg, money_scale, 0);
        let (kind, cast_to_text) = match kind {
            Some(k) => (k, false),
            None => (Kind::Text, true),
        };
        by_rel.entry(rel).or_default().push(ColumnType {
            name,
            pg_type,
            kind,
            cast_to_text,
            nullable,
            type_id: Some((oid, typmod)),
        });
    }
    for t in &mut out {
        t.columns = by_rel.remove(&t.oid).unwrap_or_default();
    }
    Ok(out)
}

fn selected(cfg: &PostgresConfig, stream: &str) -> bool {
    (cfg.tables.is_empty() || cfg.tables.iter().any(|p| matches(p, stream)))
        && !cfg.exclude.iter().any(|p| matches(p, stream))
}

/// The decoding of a type, or `None` when the server should cast it to text.
fn resolve(
    types: &HashMap<u32, PgType>,
    oid: u32,
    typmod: i32,
    ndims: i32,
    cfg: &PostgresConfig,
    money_scale: i32,
    depth: u32,
) -> Option<Kind> {
    let t = types.get(&oid)?;
    if depth > 8 {
        return None;
    }
    match t.typtype.as_str() {
        // A domain reads as its base type (with the domain's typmod).
        "d" => {
            return resolve(
                types,
                t.base,
                t.base_typmod,
                ndims,
                cfg,
                money_scale,
                depth + 1,
            );
        }
        "e" => return Some(Kind::Text),
        "b" => {}
        _ => return None,
    }
    if t.category == "A" && t.elem != 0 {
        if cfg.arrays == ArrayPolicy::Text || ndims > 1 {
            return None;
        }
        let elem = resolve(types, t.elem, typmod, 0, cfg, money_scale, depth + 1)?;
        if matches!(elem, Kind::Array(_)) {
            return None;
        }
        return Some(Kind::Array(Box::new(elem)));
    }
    if t.namespace != "pg_catalog" {
        // Extension types: citext sends its text; anything else is cast.
        return (t.name == "citext").then_some(Kind::Text);
    }
    Some(match t.name.as_str() {
        "bool" => Kind::Bool,
        "int2" => Kind::Int2,
        "int4" => Kind::Int4,
        "int8" => Kind::Int8,
        "oid" => Kind::Oid,
        "float4" => Kind::Float4,
        "float8" => Kind::Float8,
        "numeric" => numeric_kind(typmod, cfg.numeric, cfg.wide_numeric),
        "money" => Kind::Money {
            scale: i8::try_from(money_scale).ok()?,
        },
        "text" | "varchar" | "bpchar" | "name" | "json" => Kind::Text,
        "jsonb" => Kind::Jsonb,
        "bytea" => Kind::Bytea,
        "uuid" => Kind::Uuid,
        "date" => Kind::Date,
        "time" => match cfg.time {
            TimePolicy::Text => Kind::TimeText,
            TimePolicy::Time64 => Kind::Time,
        },
        "timetz" => Kind::TimeTz,
        "timestamp" => Kind::Timestamp,
        "timestamptz" => Kind::Timestamptz,
        "interval" => Kind::Interval,
        "inet" => Kind::Inet { cidr: false },
        "cidr" => Kind::Inet { cidr: true },
        "macaddr" | "macaddr8" => Kind::MacAddr,
        _ => return None,
    })
}

fn numeric_kind(typmod: i32, policy: NumericPolicy, wide: WideNumericPolicy) -> Kind {
    if typmod < 4 || policy == NumericPolicy::Text {
        return Kind::NumericText;
    }
    let precision = ((typmod - 4) >> 16) & 0xffff;
    let raw_scale = (typmod - 4) & 0x7ff;
    let scale = if raw_scale & 0x400 != 0 {
        raw_scale - 0x800
    } else {
        raw_scale
    };
    match (u8::try_from(precision), i8::try_from(scale)) {
        (Ok(p), Ok(s)) if s >= 0 && i32::from(s) <= i32::from(p) && p <= 38 => Kind::Decimal128 {
            precision: p,
            scale: s,
        },
        (Ok(p), Ok(s)) if s >= 0 && i32::from(s) <= i32::from(p) && p <= 76 => match wide {
            WideNumericPolicy::Text => Kind::WideNumericText {
                precision: p,
                scale: s,
            },
            WideNumericPolicy::Decimal256 => Kind::Decimal256 {
                precision: p,
                scale: s,
            },
        },
        _ => Kind::NumericText,
    }
}

/// The Arrow type each column lands as, for detecting a change of the landed type alone
/// (a new default, or `wide_numeric`/`time` changed) where the Postgres type stayed.
pub fn landed(columns: &[ColumnType]) -> Vec<(String, String)> {
    columns
        .iter()
        .map(|c| (c.name.clone(), c.kind.data_type().to_string()))
        .collect()
}

/// What [`landed`] was before inlet recorded it: the types of the defaults then (wide
/// numerics as Decimal256, `time` as Time64).
pub fn landed_before_record(columns: &[ColumnType]) -> Vec<(String, String)> {
    columns
        .iter()
        .map(|c| {
            let kind = c.kind.before_text_defaults();
            (c.name.clone(), kind.data_type().to_string())
        })
        .collect()
}

/// Columns whose Postgres type stayed (`previous_shape`, from [`shape`]) but whose landed
/// Arrow type changed (`previous_landed`, from [`landed`]), in words.
pub fn landed_diff(
    previous_shape: &[(String, String)],
    previous_landed: &[(String, String)],
    columns: &[ColumnType],
) -> Vec<String> {
    let mut out = Vec::new();
    for c in columns {
        let same_pg = previous_shape
            .iter()
            .any(|(n, t)| n == &c.name && t == &c.pg_type);
        let old = previous_landed.iter().find(|(n, _)| n == &c.name);
        let now = c.kind.data_type().to_string();
        if let (true, Some((_, old))) = (same_pg, old)
            && old != &now
        {
            out.push(format!(
                "column `{}` ({}) lands as {now}, was {old} (the connector's `wide_numeric` \
                 and `time` settings choose; files landed before keep {old})",
                c.name, c.pg_type
            ));
        }
    }
    out
}

/// The column names and types, for schema-change detection.
pub fn shape(columns: &[ColumnType]) -> Vec<(String, String)> {
    columns
        .iter()
        .map(|c| (c.name.clone(), c.pg_type.clone()))
        .collect()
}

/// What changed between two shapes, in words; empty when nothing did.
pub fn diff(before: &[(String, String)], after: &[(String, String)]) -> Vec<String> {
    let b: HashMap<&str, &str> = before
        .iter()
        .map(|(n, t)| (n.as_str(), t.as_str()))
        .collect();
    let a: HashMap<&str, &str> = after
        .iter()
        .map(|(n, t)| (n.as_str(), t.as_str()))
        .collect();
    let mut out = Vec::new();
    for (n, t) in after {
        match b.get(n.as_str()) {
            None => out.push(format!("column `{n}` added ({t})")),
            Some(old) if old != t => out.push(format!("column `{n}` retyped from {old} to {t}")),
            _ => {}
        }
    }
    let seen: HashSet<&str> = a.keys().copied().collect();
    for (n, t) in before {
        if !seen.contains(n.as_str()) {
            out.push(format!("column `{n}` dropped (was {t})"));
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn numeric_typmods() {
        // numeric(12,2): typmod = (12 << 16 | 2) + 4
        assert_eq!(
            numeric_kind(
                (12 << 16 | 2) + 4,
                NumericPolicy::Decimal,
                WideNumericPolicy::Text
            ),
            Kind::Decimal128 {
                precision: 12,
                scale: 2
            }
        );
        assert_eq!(
            numeric_kind(
                (60 << 16 | 10) + 4,
                NumericPolicy::Decimal,
                WideNumericPolicy::Text
            ),
            Kind::WideNumericText {
                precision: 60,
                scale: 10
            }
        );
        assert_eq!(
            numeric_kind(
                (60 << 16 | 10) + 4,
                NumericPolicy::Decimal,
                WideNumericPolicy::Decimal256
            ),
            Kind::Decimal256 {
                precision: 60,
                scale: 10
            }
        );
        assert_eq!(
            numeric_kind(-1, NumericPolicy::Decimal, WideNumericPolicy::Text),
            Kind::NumericText
        );
        assert_eq!(
            numeric_kind(
                (12 << 16 | 2) + 4,
                NumericPolicy::Text,
                WideNumericPolicy::Text
            ),
            Kind::NumericText
        );
    }

    #[test]
    fn a_stream_landed_before_the_text_defaults_records_the_new_landed_types() {
        let col = |name: &str, pg: &str, kind: Kind| ColumnType {
            name: name.into(),
            pg_type: pg.into(),
            kind,
            cast_to_text: false,
            nullable: true,
            type_id: None,
        };
        let wide = Kind::WideNumericText {
            precision: 48,
            scale: 10,
        };
        let columns = vec![
            col("id", "integer", Kind::Int4),
            col("n", "numeric(48,10)", wide.clone()),
            col("t", "time without time zone", Kind::TimeText),
            col("a", "numeric(48,10)[]", Kind::Array(Box::new(wide))),
        ];
        let shape = shape(&columns);
        // A state without landed types: the defaults then.
        let changes = landed_diff(&shape, &landed_before_record(&columns), &columns);
        assert_eq!(
            changes
                .iter()
                .map(|c| &c[..c.find(" (the").unwrap()])
                .collect::<Vec<_>>(),
            vec![
                "column `n` (numeric(48,10)) lands as Utf8, was Decimal256(48, 10)",
                "column `t` (time without time zone) lands as Utf8, was Time64(µs)",
                "column `a` (numeric(48,10)[]) lands as List(Utf8), was List(Decimal256(48, 10))",
            ]
        );
        // Recorded: nothing more changes.
        assert!(landed_diff(&shape, &landed(&columns), &columns).is_empty());
        // A retyped column is the shape diff's to report, not this one's.
        let mut retyped = shape.clone();
        retyped[1].1 = "numeric(60,10)".into();
        assert_eq!(
            landed_diff(&retyped, &landed_before_record(&columns), &columns).len(),
            2
        );
    }

    #[test]
    fn shape_diff_names_each_change() {
        let before = vec![
            ("id".to_string(), "bigint".to_string()),
            ("a".to_string(), "integer".to_string()),
            ("b".to_string(), "text".to_string()),
        ];
        let after = vec![
            ("id".to_string(), "bigint".to_string()),
            ("a".to_string(), "bigint".to_string()),
            ("c".to_string(), "text".to_string()),
        ];
        let d = diff(&before, &after);
        assert_eq!(
            d,
            vec![
                "column `a` retyped from integer to bigint",
                "column `c` added (text)",
                "column `b` dropped (was text)"
            ]
        );
    }
}
