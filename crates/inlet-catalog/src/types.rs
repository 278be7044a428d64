//! Arrow types as catalog (Hive/Glue) types, and back from Glue's type strings.

use std::fmt;

use arrow_schema::{DataType, Field};

use crate::CatalogError;

/// A column type as Glue, Hive and Athena store it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum HiveType {
    /// `boolean`
    Boolean,
    /// `tinyint` (8 bits)
    TinyInt,
    /// `smallint` (16 bits)
    SmallInt,
    /// `int` (32 bits)
    Int,
    /// `bigint` (64 bits)
    BigInt,
    /// `float` (32 bits)
    Float,
    /// `double` (64 bits)
    Double,
    /// `decimal(precision,scale)`, precision 1..=38, scale 0..=precision.
    Decimal(u8, i8),
    /// `string`
    String,
    /// `binary`
    Binary,
    /// `date`
    Date,
    /// `timestamp`
    Timestamp,
    /// `array<T>`
    Array(Box<HiveType>),
    /// `struct<a:T,b:U>`
    Struct(Vec<(String, HiveType)>),
    /// `map<K,V>`
    Map(Box<HiveType>, Box<HiveType>),
}

/// The widest decimal every engine reads (Spark, Athena, Trino, Hive stop at 38).
pub const MAX_DECIMAL_PRECISION: u8 = 38;

impl fmt::Display for HiveType {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            HiveType::Boolean => f.write_str("boolean"),
            HiveType::TinyInt => f.write_str("tinyint"),
            HiveType::SmallInt => f.write_str("smallint"),
            HiveType::Int => f.write_str("int"),
            HiveType::BigInt => f.write_str("bigint"),
            HiveType::Float => f.write_str("float"),
            HiveType::Double => f.write_str("double"),
            HiveType::Decimal(p, s) => write!(f, "decimal({p},{s})"),
            HiveType::String => f.write_str("string"),
            HiveType::Binary => f.write_str("binary"),
            HiveType::Date => f.write_str("date"),
            HiveType::Timestamp => f.write_str("timestamp"),
            HiveType::Array(item) => write!(f, "array<{item}>"),
            HiveType::Struct(fields) => {
                f.write_str("struct<")?;
                for (i, (name, ty)) in fields.iter().enumerate() {
                    if i > 0 {
                        f.write_str(",")?;
                    }
                    write!(f, "{name}:{ty}")?;
                }
                f.write_str(">")
            }
            HiveType::Map(k, v) => write!(f, "map<{k},{v}>"),
        }
    }
}

fn unsupported(data_type: &DataType, hint: &str) -> CatalogError {
    CatalogError::UnsupportedType {
        arrow: data_type.to_string(),
        hint: hint.to_string(),
    }
}

fn decimal(data_type: &DataType, precision: u8, scale: i8) -> Result<HiveType, CatalogError> {
    if precision > MAX_DECIMAL_PRECISION {
        return Err(unsupported(
            data_type,
            "decimals stop at precision 38 in Spark, Athena, Trino and Hive; land it as exact text (the Postgres connector's default for numeric wider than 38) or cast it to a narrower numeric in the source query",
        ));
    }
    if scale < 0 || scale as u8 > precision {
        return Err(unsupported(
            data_type,
            "a decimal's scale must be between 0 and its precision; cast it in the source query",
        ));
    }
    Ok(HiveType::Decimal(precision, scale))
}

impl HiveType {
    /// The catalog type of what the Parquet writer writes for an Arrow type. `None` for
    /// an all-null (`Null`) column, or a list or struct holding only such: it is left out
    /// of the table until it lands with a type.
    pub fn from_arrow(data_type: &DataType) -> Result<Option<HiveType>, CatalogError> {
        use DataType as D;
        let ty = match data_type {
            D::Null => return Ok(None),
            D::Boolean => HiveType::Boolean,
            D::Int8 => HiveType::TinyInt,
            D::Int16 | D::UInt8 => HiveType::SmallInt,
            D::Int32 | D::UInt16 => HiveType::Int,
            D::Int64 | D::UInt32 => HiveType::BigInt,
            // Spark reads Parquet's unsigned 64-bit integers as decimal(20,0).
            D::UInt64 => HiveType::Decimal(20, 0),
            D::Float16 | D::Float32 => HiveType::Float,
            D::Float64 => HiveType::Double,
            D::Decimal32(p, s) | D::Decimal64(p, s) | D::Decimal128(p, s) | D::Decimal256(p, s) => {
                decimal(data_type, *p, *s)?
            }
            D::Utf8 | D::LargeUtf8 | D::Utf8View => HiveType::String,
            D::Binary | D::LargeBinary | D::BinaryView | D::FixedSizeBinary(_) => HiveType::Binary,
            D::Date32 | D::Date64 => HiveType::Date,
            D::Timestamp(_, _) => HiveType::Timestamp,
            D::List(item)
            | D::LargeList(item)
            | D::ListView(item)
            | D::LargeListView(item)
            | D::FixedSizeList(item, _) => match Self::from_arrow(item.data_type())? {
                Some(t) => HiveType::Array(Box::new(t)),
                None => return Ok(None),
            },
            D::Struct(fields) => {
                let mut out = Vec::with_capacity(fields.len());
                for field in fields {
                    if let Some(t) = Self::from_arrow(field.data_type())? {
                        out.push((field.name().clone(), t));
                    }
                }
                if out.is_empty() {
                    return Ok(None);
                }
                HiveType::Struct(out)
            }
            D::Map(entries, _) => {
                let D::Struct(kv) = entries.data_type() else {
                    return Err(unsupported(data_type, "a map's entries must be a struct"));
                };
                let (Some(k), Some(v)) = (kv.first(), kv.get(1)) else {
                    return Err(unsupported(
                        data_type,
                        "a map's entries must have a key and a value",
                    ));
                };
                let key = Self::from_arrow(k.data_type())?;
                let value = Self::from_arrow(v.data_type())?;
                match (key, value) {
                    (Some(k), Some(v)) => HiveType::Map(Box::new(k), Box::new(v)),
                    // A map of null values still has its keys: the values are strings
                    // until they land with a type.
                    (Some(k), None) => HiveType::Map(Box::new(k), Box::new(HiveType::String)),
                    (None, _) => return Ok(None),
                }
            }
            D::Dictionary(_, value) => return Self::from_arrow(value),
            D::RunEndEncoded(_, values) => return Self::from_arrow(values.data_type()),
            D::Time32(_) | D::Time64(_) => {
                return Err(unsupported(
                    data_type,
                    "no catalog has a time-of-day type; land it as text (the Postgres connector's default for time) or cast it to a string in the source query",
                ));
            }
            D::Duration(_) | D::Interval(_) => {
                return Err(unsupported(
                    data_type,
                    "no catalog reads Parquet durations or intervals; land it as text or as a number of seconds (cast it in the source query)",
                ));
            }
            D::Union(_, _) => {
                return Err(unsupported(
                    data_type,
                    "no catalog has union types; land it as JSON text",
                ));
            }
        };
        Ok(Some(ty))
    }

    /// The catalog type of a field (see [`HiveType::from_arrow`]).
    pub fn from_field(field: &Field) -> Result<Option<HiveType>, CatalogError> {
        Self::from_arrow(field.data_type())
    }

    /// Parse a type string as Glue stores it (`decimal(12,2)`, `array<struct<a:int>>`).
    /// Case-insensitive; `integer`, `char(n)`, `varchar(n)` and a bare `decimal` are
    /// accepted as Hive writes them.
    pub fn parse(text: &str) -> Result<HiveType, CatalogError> {
        let mut p = Parser { text, pos: 0 };
        let ty = p.ty()?;
        p.skip_ws();
        if p.pos != text.len() {
            return Err(p.error("unexpected text after the type"));
        }
        Ok(ty)
    }

    /// Whether files written with `self` can be read as `newer`: the same type, a wider
    /// integer, `float` to `double`, a decimal with at least as many digits on both sides
    /// of the point, and arrays, maps and structs whose parts widen (a struct may gain
    /// fields, never lose one).
    pub fn widens_to(&self, newer: &HiveType) -> bool {
        use HiveType as H;
        fn rank(t: &HiveType) -> Option<u8> {
            match t {
                H::TinyInt => Some(0),
                H::SmallInt => Some(1),
                H::Int => Some(2),
                H::BigInt => Some(3),
                _ => None,
            }
        }
        if self == newer {
            return true;
        }
        match (self, newer) {
            (H::Float, H::Double) => true,
            (H::Decimal(p, s), H::Decimal(np, ns)) => {
                ns >= s && (*np as i16 - *ns as i16) >= (*p as i16 - *s as i16)
            }
            (H::Array(a), H::Array(b)) => a.widens_to(b),
            (H::Map(k, v), H::Map(nk, nv)) => k == nk && v.widens_to(nv),
            (H::Struct(old), H::Struct(new)) => old.iter().all(|(name, ty)| {
                new.iter()
                    .find(|(n, _)| n.eq_ignore_ascii_case(name))
                    .is_some_and(|(_, nt)| ty.widens_to(nt))
            }),
            _ => match (rank(self), rank(newer)) {
                (Some(a), Some(b)) => a <= b,
                _ => false,
            },
        }
    }

    /// Whether a timestamp is anywhere inside this type.
    pub fn has_timestamp(&self) -> bool {
        match self {
            HiveType::Timestamp => true,
            HiveType::Array(t) => t.has_timestamp(),
            HiveType::Map(k, v) => k.has_timestamp() || v.has_timestamp(),
            HiveType::Struct(fields) => fields.iter().any(|(_, t)| t.has_timestamp()),
            _ => false,
        }
    }
}

struct Parser<'a> {
    text: &'a str,
    pos: usize,
}

impl Parser<'_> {
    fn error(&self, message: &str) -> CatalogError {
        CatalogError::Parse {
            text: self.text.to_string(),
            message: format!("{message} at character {}", self.pos + 1),
        }
    }

    fn skip_ws(&mut self) {
        while self.text[self.pos..].starts_with(char::is_whitespace) {
            self.pos += 1;
        }
    }

    fn eat(&mut self, c: char) -> bool {
        self.skip_ws();
        if self.text[self.pos..].starts_with(c) {
            self.pos += c.len_utf8();
            true
        } else {
            false
        }
    }

    fn expect(&mut self, c: char) -> Result<(), CatalogError> {
        if self.eat(c) {
            Ok(())
        } else {
            Err(self.error(&format!("expected `{c}`")))
        }
    }

    fn word(&mut self) -> &str {
        self.skip_ws();
        let start = self.pos;
        let rest = &self.text[start..];
        let len = rest
            .find(|c: char| !(c.is_ascii_alphanumeric() || c == '_'))
            .unwrap_or(rest.len());
        self.pos += len;
        &self.text[start..start + len]
    }

    fn number(&mut self) -> Result<i64, CatalogError> {
        let neg = self.eat('-');
        let w = self.word();
        let n: i64 = w.parse().map_err(|_| self.error("expected a number"))?;
        Ok(if neg { -n } else { n })
    }

    fn field_name(&mut self) -> Result<String, CatalogError> {
        self.skip_ws();
        if self.eat('`') {
            let rest = &self.text[self.pos..];
            let Some(end) = rest.find('`') else {
                return Err(self.error("unclosed `"));
            };
            let name = rest[..end].to_string();
            self.pos += end + 1;
            return Ok(name);
        }
        let start = self.pos;
        let rest = &self.text[start..];
        let len = rest.find([':', ',', '<', '>']).unwrap_or(rest.len());
        self.pos += len;
        let name = rest[..len].trim();
        if name.is_empty() {
            return Err(self.error("expected a field name"));
        }
        Ok(name.to_string())
    }

    fn ty(&mut self) -> Result<HiveType, CatalogError> {
        let word = self.word().to_ascii_lowercase();
        Ok(match word.as_str() {
            "boolean" => HiveType::Boolean,
            "tinyint" => HiveType::TinyInt,
            "smallint" => HiveType::SmallInt,
            "int" | "integer" => HiveType::Int,
            "bigint" => HiveType::BigInt,
            "float" | "real" => HiveType::Float,
            "double" => HiveType::Double,
            "string" => HiveType::String,
            "char" | "varchar" => {
                if self.eat('(') {
                    self.number()?;
                    self.expect(')')?;
                }
                HiveType::String
            }
            "binary" => HiveType::Binary,
            "date" => HiveType::Date,
            "timestamp" => HiveType::Timestamp,
            "decimal" | "numeric" => {
                if self.eat('(') {
                    let p = self.number()?;
                    let s = if self.eat(',') { self.number()? } else { 0 };
                    self.expect(')')?;
                    let (Ok(p), Ok(s)) = (u8::try_from(p), i8::try_from(s)) else {
                        return Err(self.error("decimal precision or scale out of range"));
                    };
                    if p == 0 || p > MAX_DECIMAL_PRECISION || s < 0 || s as u8 > p {
                        return Err(
                            self.error("decimal precision must be 1..=38 and scale 0..=precision")
                        );
                    }
                    HiveType::Decimal(p, s)
                } else {
                    HiveType::Decimal(10, 0)
                }
            }
            "array" => {
                self.expect('<')?;
                let item = self.ty()?;
                self.expect('>')?;
                HiveType::Array(Box::new(item))
            }
            "map" => {
                self.expect('<')?;
                let k = self.ty()?;
                self.expect(',')?;
                let v = self.ty()?;
                self.expect('>')?;
                HiveType::Map(Box::new(k), Box::new(v))
            }
            "struct" => {
                self.expect('<')?;
                let mut fields = Vec::new();
                if !self.eat('>') {
                    loop {
                        let name = self.field_name()?;
                        self.expect(':')?;
                        fields.push((name, self.ty()?));
                        if self.eat('>') {
                            break;
                        }
                        self.expect(',')?;
                    }
                }
                HiveType::Struct(fields)
            }
            "" => return Err(self.error("expected a type")),
            other => return Err(self.error(&format!("unknown type `{other}`"))),
        })
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use arrow_schema::{Fields, IntervalUnit, TimeUnit};

    use super::*;

    fn list(item: DataType) -> DataType {
        DataType::List(Arc::new(Field::new("element", item, true)))
    }

    #[test]
    fn what_the_writer_writes_has_a_type() {
        let cases = [
            (DataType::Boolean, "boolean"),
            (DataType::Int8, "tinyint"),
            (DataType::Int16, "smallint"),
            (DataType::Int32, "int"),
            (DataType::Int64, "bigint"),
            (DataType::UInt8, "smallint"),
            (DataType::UInt16, "int"),
            (DataType::UInt32, "bigint"),
            (DataType::UInt64, "decimal(20,0)"),
            (DataType::Float16, "float"),
            (DataType::Float32, "float"),
            (DataType::Float64, "double"),
            (DataType::Decimal128(12, 2), "decimal(12,2)"),
            (DataType::Decimal256(38, 10), "decimal(38,10)"),
            (DataType::Utf8, "string"),
            (DataType::LargeUtf8, "string"),
            (DataType::Binary, "binary"),
            (DataType::Date32, "date"),
            (
                DataType::Timestamp(TimeUnit::Microsecond, Some("UTC".into())),
                "timestamp",
            ),
            (
                DataType::Timestamp(TimeUnit::Microsecond, None),
                "timestamp",
            ),
            (list(DataType::Utf8), "array<string>"),
            (
                DataType::Struct(Fields::from(vec![
                    Field::new("a", DataType::Int32, true),
                    Field::new("b", list(DataType::Float64), true),
                    Field::new("gone", DataType::Null, true),
                ])),
                "struct<a:int,b:array<double>>",
            ),
            (
                DataType::Map(
                    Arc::new(Field::new(
                        "key_value",
                        DataType::Struct(Fields::from(vec![
                            Field::new("key", DataType::Utf8, false),
                            Field::new("value", DataType::Int64, true),
                        ])),
                        false,
                    )),
                    false,
                ),
                "map<string,bigint>",
            ),
            (
                DataType::Dictionary(Box::new(DataType::Int32), Box::new(DataType::Utf8)),
                "string",
            ),
        ];
        for (arrow, hive) in cases {
            let ty = HiveType::from_arrow(&arrow).unwrap().unwrap();
            assert_eq!(ty.to_string(), hive, "{arrow}");
            assert_eq!(HiveType::parse(hive).unwrap(), ty, "{hive} parses back");
        }
        assert_eq!(HiveType::from_arrow(&DataType::Null).unwrap(), None);
        assert_eq!(HiveType::from_arrow(&list(DataType::Null)).unwrap(), None);
    }

    #[test]
    fn types_no_engine_holds_say_what_to_do() {
        for (arrow, words) in [
            (DataType::Decimal256(48, 10), "precision 38"),
            (DataType::Time64(TimeUnit::Microsecond), "text"),
            (DataType::Duration(TimeUnit::Second), "seconds"),
            (DataType::Interval(IntervalUnit::MonthDayNano), "text"),
            (DataType::Decimal128(10, -2), "scale"),
            (list(DataType::Time32(TimeUnit::Second)), "time"),
        ] {
            let err = HiveType::from_arrow(&arrow).unwrap_err().to_string();
            assert!(err.contains(words), "{arrow}: {err}");
        }
    }

    #[test]
    fn glue_strings_parse_back() {
        assert_eq!(
            HiveType::parse("STRUCT< `a b`:INT, c : array<varchar(10)> >").unwrap(),
            HiveType::Struct(vec![
                ("a b".into(), HiveType::Int),
                ("c".into(), HiveType::Array(Box::new(HiveType::String))),
            ])
        );
        assert_eq!(
            HiveType::parse("decimal").unwrap(),
            HiveType::Decimal(10, 0)
        );
        assert_eq!(HiveType::parse("integer").unwrap(), HiveType::Int);
        for bad in [
            "",
            "int8",
            "decimal(40,2)",
            "array<int",
            "map<int>",
            "int int",
        ] {
            assert!(HiveType::parse(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn widening_is_only_what_old_files_can_be_read_as() {
        let p = |s: &str| HiveType::parse(s).unwrap();
        for (old, new) in [
            ("int", "bigint"),
            ("tinyint", "int"),
            ("float", "double"),
            ("decimal(10,2)", "decimal(12,4)"),
            ("array<int>", "array<bigint>"),
            ("struct<a:int>", "struct<a:bigint,b:string>"),
            ("map<string,int>", "map<string,bigint>"),
            ("string", "string"),
        ] {
            assert!(p(old).widens_to(&p(new)), "{old} -> {new}");
        }
        for (old, new) in [
            ("bigint", "int"),
            ("int", "string"),
            ("int", "double"),
            ("decimal(10,2)", "decimal(10,3)"),
            ("struct<a:int,b:string>", "struct<a:int>"),
            ("timestamp", "date"),
            ("map<int,int>", "map<bigint,int>"),
        ] {
            assert!(!p(old).widens_to(&p(new)), "{old} -> {new}");
        }
    }
}
