//! Postgres types to Arrow, and the decoders of their binary COPY form.
//!
//! The policy, lossless unless a line says otherwise:
//!
//! | Postgres | Arrow |
//! |---|---|
//! | `smallint`, `integer`, `bigint` | Int16, Int32, Int64 |
//! | `oid` | Int64 |
//! | `real`, `double precision` | Float32, Float64 (NaN and ±Infinity kept) |
//! | `numeric(p,s)`, p ≤ 38 | Decimal128(p, s) |
//! | `numeric(p,s)`, 38 < p ≤ 76 | Utf8, the exact Postgres text (`wide_numeric = "text"`, the default); Decimal256(p, s) with `wide_numeric = "decimal256"` |
//! | `numeric` without precision | Utf8, the exact Postgres text (`NaN`, `Infinity` included) |
//! | `money` | Decimal128(19, frac digits of `lc_monetary`) |
//! | `text`, `varchar`, `char(n)` (padding kept), `citext`, `name`, enums | Utf8 |
//! | `bool` | Boolean |
//! | `bytea` | Binary |
//! | `uuid` | Utf8, canonical lower-case form |
//! | `date` | Date32 (`±infinity` become ±`i32::MAX`, which DuckDB reads as ±infinity) |
//! | `time` | Utf8 `HH:MM:SS[.ffffff]`, Postgres' text (`time = "text"`, the default); Time64(µs) with `time = "time64"` |
//! | `timetz` | Utf8 `HH:MM:SS[.ffffff]±HH[:MM]` |
//! | `timestamp` | Timestamp(µs) (`±infinity` become ±`i64::MAX`, DuckDB's ±infinity) |
//! | `timestamptz` | Timestamp(µs, UTC) (same infinity policy) |
//! | `interval` | Struct{months: Int32, days: Int32, microseconds: Int64}, exactly Postgres' fields |
//! | `json`, `jsonb` | Utf8 holding the JSON text |
//! | `inet`, `cidr` | Utf8 in Postgres' text form |
//! | `macaddr`, `macaddr8` | Utf8 `08:00:2b:01:02:03` |
//! | one-dimensional arrays of the above | List of the element type, NULL elements kept |
//! | domains | their base type |
//! | anything else (ranges, `tsvector`, geometric, bit strings, multi-dimensional arrays, xml...) | Utf8 holding the Postgres text form (the column is cast to `text` by the server) |
//!
//! Every field carries the Postgres type in its metadata (`pg_type`).
//!
//! Two defaults are chosen so that every engine reading the lake reads every column as it
//! is (Spark 3.5, Athena, Trino, Redshift Spectrum, DuckDB, pyarrow), with no value lost:
//!
//! - **Decimals wider than 38 digits land as exact text.** Spark, Athena, Trino and Redshift
//!   stop at decimal(38): Spark 3.5 refuses to read a Parquet decimal of precision 60
//!   (`Decimal precision 60 exceeds max precision 38`), and Athena/Trino cannot declare its
//!   column. The text is what Postgres prints (scale digits kept), so nothing is rounded;
//!   `wide_numeric = "decimal256"` lands Decimal256(p, s) for readers that have it (DuckDB
//!   and pyarrow do). `numeric(p,s)` with p ≤ 38 stays Decimal128(p, s).
//! - **`time` lands as its text** `HH:MM:SS[.ffffff]` (`24:00:00` included), which sorts as
//!   the times do. Spark 3.5 and Athena have no TIME type: Spark refuses the file
//!   (`Illegal Parquet type: INT64 (TIME(MICROS,false))`), and a Glue column cannot be
//!   declared as one. `time = "time64"` lands Time64(µs) for DuckDB, pyarrow or Trino.
//!
//! A stream whose landed type changes (a new default, or the setting changed) records it in
//! its schema history, and the files landed before stay readable beside the new ones.

use std::{collections::HashMap, sync::Arc};

use arrow_array::{
    ArrayRef, RecordBatch,
    builder::{
        BinaryBuilder, BooleanBuilder, Date32Builder, Decimal128Builder, Decimal256Builder,
        Float32Builder, Float64Builder, Int16Builder, Int32Builder, Int64Builder, StringBuilder,
        Time64MicrosecondBuilder, TimestampMicrosecondBuilder,
    },
};
use arrow_array::{ListArray, StructArray};
use arrow_buffer::{NullBufferBuilder, OffsetBuffer, ScalarBuffer, i256};
use arrow_schema::{DataType, Field, Fields, Schema, SchemaRef, TimeUnit};

/// Microseconds between 1970-01-01 and 2000-01-01 (Postgres' epoch).
const PG_EPOCH_MICROS: i64 = 946_684_800_000_000;
/// Days between 1970-01-01 and 2000-01-01.
const PG_EPOCH_DAYS: i32 = 10_957;

/// How a column is decoded. Chosen once from the catalog.
#[derive(Debug, Clone, PartialEq)]
pub enum Kind {
    /// `bool`
    Bool,
    /// `smallint`
    Int2,
    /// `integer`
    Int4,
    /// `bigint`
    Int8,
    /// `oid`
    Oid,
    /// `real`
    Float4,
    /// `double precision`
    Float8,
    /// `numeric(p,s)` with p ≤ 38
    Decimal128 {
        /// precision
        precision: u8,
        /// scale
        scale: i8,
    },
    /// `numeric(p,s)` with p ≤ 76
    Decimal256 {
        /// precision
        precision: u8,
        /// scale
        scale: i8,
    },
    /// unconstrained `numeric`, as exact text
    NumericText,
    /// `numeric(p,s)` with 38 < p ≤ 76, as exact text (`wide_numeric = "text"`)
    WideNumericText {
        /// precision
        precision: u8,
        /// scale
        scale: i8,
    },
    /// `money`, scaled by the frac digits of `lc_monetary`
    Money {
        /// digits after the point
        scale: i8,
    },
    /// text-like: the binary form is the UTF-8 text (text, varchar, char, name, citext,
    /// enums, json, and any column the server casts to text)
    Text,
    /// `jsonb`: a version byte, then the text
    Jsonb,
    /// `bytea`
    Bytea,
    /// `uuid`
    Uuid,
    /// `date`
    Date,
    /// `time` as Time64(µs) (`time = "time64"`)
    Time,
    /// `time` as its text `HH:MM:SS[.ffffff]` (`time = "text"`)
    TimeText,
    /// `timetz`
    TimeTz,
    /// `timestamp`
    Timestamp,
    /// `timestamptz`
    Timestamptz,
    /// `interval`
    Interval,
    /// `inet` or `cidr`
    Inet {
        /// `cidr` always prints its mask
        cidr: bool,
    },
    /// `macaddr` (6 bytes) or `macaddr8` (8 bytes)
    MacAddr,
    /// a one-dimensional array
    Array(Box<Kind>),
}

impl Kind {
    /// The Arrow type of this kind.
    pub fn data_type(&self) -> DataType {
        match self {
            Kind::Bool => DataType::Boolean,
            Kind::Int2 => DataType::Int16,
            Kind::Int4 => DataType::Int32,
            Kind::Int8 | Kind::Oid => DataType::Int64,
            Kind::Float4 => DataType::Float32,
            Kind::Float8 => DataType::Float64,
            Kind::Decimal128 { precision, scale } => DataType::Decimal128(*precision, *scale),
            Kind::Decimal256 { precision, scale } => DataType::Decimal256(*precision, *scale),
            Kind::Money { scale } => DataType::Decimal128(19, *scale),
            Kind::NumericText
            | Kind::WideNumericText { .. }
            | Kind::TimeText
            | Kind::Text
            | Kind::Jsonb
            | Kind::Uuid
            | Kind::TimeTz
            | Kind::Inet { .. }
            | Kind::MacAddr => DataType::Utf8,
            Kind::Bytea => DataType::Binary,
            Kind::Date => DataType::Date32,
            Kind::Time => DataType::Time64(TimeUnit::Microsecond),
            Kind::Timestamp => DataType::Timestamp(TimeUnit::Microsecond, None),
            Kind::Timestamptz => DataType::Timestamp(TimeUnit::Microsecond, Some("UTC".into())),
            Kind::Interval => DataType::Struct(interval_fields()),
            Kind::Array(elem) => {
                DataType::List(Arc::new(Field::new("item", elem.data_type(), true)))
            }
        }
    }

    /// Whether this column can be an incremental cursor (ordered, exactly comparable).
    pub fn is_cursor_type(&self) -> bool {
        matches!(
            self,
            Kind::Int2
                | Kind::Int4
                | Kind::Int8
                | Kind::Date
                | Kind::Timestamp
                | Kind::Timestamptz
                | Kind::Decimal128 { .. }
                | Kind::Decimal256 { .. }
                | Kind::WideNumericText { .. }
        )
    }

    /// The kind this column landed as before the text defaults of `wide_numeric` and
    /// `time` (streams whose state does not record the landed types were landed so).
    pub fn before_text_defaults(&self) -> Kind {
        match self {
            Kind::WideNumericText { precision, scale } => Kind::Decimal256 {
                precision: *precision,
                scale: *scale,
            },
            Kind::TimeText => Kind::Time,
            Kind::Array(elem) => Kind::Array(Box::new(elem.before_text_defaults())),
            other => other.clone(),
        }
    }

    /// Whether this column can split a table into value ranges.
    pub fn is_integer(&self) -> bool {
        matches!(self, Kind::Int2 | Kind::Int4 | Kind::Int8)
    }
}

fn interval_fields() -> Fields {
    Fields::from(vec![
        Field::new("months", DataType::Int32, false),
        Field::new("days", DataType::Int32, false),
        Field::new("microseconds", DataType::Int64, false),
    ])
}

/// A column as read: its name, Postgres type and decoding.
#[derive(Debug, Clone, PartialEq)]
pub struct ColumnType {
    /// Column name.
    pub name: String,
    /// `format_type()` of the column, e.g. `numeric(12,2)`.
    pub pg_type: String,
    /// How it is decoded.
    pub kind: Kind,
    /// Whether the server must cast it to `text` (types without a native decoder).
    pub cast_to_text: bool,
    /// Whether the column may hold NULL.
    pub nullable: bool,
    /// The type's oid and modifier, where read from the catalog.
    pub type_id: Option<(u32, i32)>,
}

/// The Arrow schema of a list of columns, with each field's Postgres type in metadata.
pub fn arrow_schema(columns: &[ColumnType]) -> SchemaRef {
    let fields: Vec<Field> = columns
        .iter()
        .map(|c| {
            Field::new(&c.name, c.kind.data_type(), c.nullable)
                .with_metadata(HashMap::from([("pg_type".to_string(), c.pg_type.clone())]))
        })
        .collect();
    Arc::new(Schema::new(fields))
}

/// Builds one Arrow column from binary COPY values.
#[derive(Debug)]
#[expect(
    clippy::large_enum_variant,
    reason = "one decoder per column, matched per value: boxing would add an indirection on the hot path"
)]
pub enum Decoder {
    /// bool
    Bool(BooleanBuilder),
    /// int2
    I16(Int16Builder),
    /// int4
    I32(Int32Builder),
    /// int8
    I64(Int64Builder),
    /// oid
    Oid(Int64Builder),
    /// float4
    F32(Float32Builder),
    /// float8
    F64(Float64Builder),
    /// numeric(p≤38)
    Dec128(Decimal128Builder, u8, i8),
    /// numeric(p≤76)
    Dec256(Decimal256Builder, u8, i8),
    /// money
    Money(Decimal128Builder, i8),
    /// numeric as text (unconstrained, or wider than 38 digits)
    NumericText(StringBuilder),
    /// utf-8 text
    Text(StringBuilder),
    /// jsonb
    Jsonb(StringBuilder),
    /// bytea
    Bytea(BinaryBuilder),
    /// uuid
    Uuid(StringBuilder),
    /// date
    Date(Date32Builder),
    /// time
    Time(Time64MicrosecondBuilder),
    /// time as text
    TimeText(StringBuilder),
    /// timetz
    TimeTz(StringBuilder),
    /// timestamp / timestamptz
    Timestamp(TimestampMicrosecondBuilder),
    /// interval
    Interval {
        /// months
        months: Int32Builder,
        /// days
        days: Int32Builder,
        /// microseconds
        micros: Int64Builder,
        /// validity
        nulls: NullBufferBuilder,
    },
    /// inet / cidr
    Inet(StringBuilder, bool),
    /// macaddr
    Mac(StringBuilder),
    /// array
    List {
        /// the element field
        field: Arc<Field>,
        /// offsets into the child
        offsets: Vec<i32>,
        /// validity
        nulls: NullBufferBuilder,
        /// the element decoder
        child: Box<Decoder>,
    },
}

impl Decoder {
    /// A decoder for `kind` with room for `capacity` values.
    pub fn new(kind: &Kind, capacity: usize) -> Decoder {
        match kind {
            Kind::Bool => Decoder::Bool(BooleanBuilder::with_capacity(capacity)),
            Kind::Int2 => Decoder::I16(Int16Builder::with_capacity(capacity)),
            Kind::Int4 => Decoder::I32(Int32Builder::with_capacity(capacity)),
            Kind::Int8 => Decoder::I64(Int64Builder::with_capacity(capacity)),
            Kind::Oid => Decoder::Oid(Int64Builder::with_capacity(capacity)),
            Kind::Float4 => Decoder::F32(Float32Builder::with_capacity(capacity)),
            Kind::Float8 => Decoder::F64(Float64Builder::with_capacity(capacity)),
            Kind::Decimal128 { precision, scale } => Decoder::Dec128(
                Decimal128Builder::with_capacity(capacity)
                    .with_data_type(DataType::Decimal128(*precision, *scale)),
                *precision,
                *scale,
            ),
            Kind::Decimal256 { precision, scale } => Decoder::Dec256(
                Decimal256Builder::with_capacity(capacity)
                    .with_data_type(DataType::Decimal256(*precision, *scale)),
                *precision,
                *scale,
            ),
            Kind::Money { scale } => Decoder::Money(
                Decimal128Builder::with_capacity(capacity)
                    .with_data_type(DataType::Decimal128(19, *scale)),
                *scale,
            ),
            Kind::NumericText | Kind::WideNumericText { .. } => {
                Decoder::NumericText(StringBuilder::with_capacity(capacity, 0))
            }
            Kind::Text => Decoder::Text(StringBuilder::with_capacity(capacity, capacity * 16)),
            Kind::Jsonb => Decoder::Jsonb(StringBuilder::with_capacity(capacity, capacity * 64)),
            Kind::Bytea => Decoder::Bytea(BinaryBuilder::with_capacity(capacity, 0)),
            Kind::Uuid => Decoder::Uuid(StringBuilder::with_capacity(capacity, capacity * 36)),
            Kind::Date => Decoder::Date(Date32Builder::with_capacity(capacity)),
            Kind::Time => Decoder::Time(Time64MicrosecondBuilder::with_capacity(capacity)),
            Kind::TimeText => {
                Decoder::TimeText(StringBuilder::with_capacity(capacity, capacity * 15))
            }
            Kind::TimeTz => Decoder::TimeTz(StringBuilder::with_capacity(capacity, 0)),
            Kind::Timestamp => {
                Decoder::Timestamp(TimestampMicrosecondBuilder::with_capacity(capacity))
            }
            Kind::Timestamptz => Decoder::Timestamp(
                TimestampMicrosecondBuilder::with_capacity(capacity).with_timezone("UTC"),
            ),
            Kind::Interval => Decoder::Interval {
                months: Int32Builder::with_capacity(capacity),
                days: Int32Builder::with_capacity(capacity),
                micros: Int64Builder::with_capacity(capacity),
                nulls: NullBufferBuilder::new(capacity),
            },
            Kind::Inet { cidr } => Decoder::Inet(StringBuilder::with_capacity(capacity, 0), *cidr),
            Kind::MacAddr => Decoder::Mac(StringBuilder::with_capacity(capacity, 0)),
            Kind::Array(elem) => {
                let mut offsets = Vec::with_capacity(capacity + 1);
                offsets.push(0);
                Decoder::List {
                    field: Arc::new(Field::new("item", elem.data_type(), true)),
                    offsets,
                    nulls: NullBufferBuilder::new(capacity),
                    child: Box::new(Decoder::new(elem, capacity * 2)),
                }
            }
        }
    }

    /// Append one value (`None` is SQL NULL).
    pub fn push(&mut self, value: Option<&[u8]>) -> Result<(), String> {
        let Some(v) = value else {
            self.push_null();
            return Ok(());
        };
        match self {
            Decoder::Bool(b) => b.append_value(fixed::<1>(v)?[0] != 0),
            Decoder::I16(b) => b.append_value(i16::from_be_bytes(fixed(v)?)),
            Decoder::I32(b) => b.append_value(i32::from_be_bytes(fixed(v)?)),
            Decoder::I64(b) => b.append_value(i64::from_be_bytes(fixed(v)?)),
            Decoder::Oid(b) => b.append_value(i64::from(u32::from_be_bytes(fixed(v)?))),
            Decoder::F32(b) => b.append_value(f32::from_be_bytes(fixed(v)?)),
            Decoder::F64(b) => b.append_value(f64::from_be_bytes(fixed(v)?)),
            Decoder::Dec128(b, precision, scale) => {
                let n = Numeric::parse(v)?;
                b.append_value(n.to_i128(*scale, *precision)?)
            }
            Decoder::Dec256(b, precision, scale) => {
                let n = Numeric::parse(v)?;
                b.append_value(n.to_i256(*scale, *precision)?)
            }
            Decoder::Money(b, _) => b.append_value(i128::from(i64::from_be_bytes(fixed(v)?))),
            Decoder::NumericText(b) => b.append_value(Numeric::parse(v)?.to_text()),
            Decoder::Text(b) => b.append_value(utf8(v)?),
            Decoder::Jsonb(b) => match v.split_first() {
                Some((1, rest)) => b.append_value(utf8(rest)?),
                _ => return Err("unknown jsonb binary version".into()),
            },
            Decoder::Bytea(b) => b.append_value(v),
            Decoder::Uuid(b) => b.append_value(uuid_text(&fixed::<16>(v)?)),
            Decoder::Date(b) => {
                let d = i32::from_be_bytes(fixed(v)?);
                // ±infinity: the values DuckDB reads as ±infinity.
                b.append_value(match d {
                    i32::MAX => i32::MAX,
                    i32::MIN => -i32::MAX,
                    d => d.checked_add(PG_EPOCH_DAYS).ok_or("date out of range")?,
                })
            }
            Decoder::Time(b) => b.append_value(i64::from_be_bytes(fixed(v)?)),
            Decoder::TimeText(b) => b.append_value(time_text(i64::from_be_bytes(fixed(v)?))),
            Decoder::TimeTz(b) => {
                let raw: [u8; 12] = fixed(v)?;
                let micros = i64::from_be_bytes(raw[0..8].try_into().map_err(|_| "timetz")?);
                let zone = i32::from_be_bytes(raw[8..12].try_into().map_err(|_| "timetz")?);
                b.append_value(timetz_text(micros, zone))
            }
            Decoder::Timestamp(b) => {
                let t = i64::from_be_bytes(fixed(v)?);
                b.append_value(match t {
                    i64::MAX => i64::MAX,
                    i64::MIN => -i64::MAX,
                    t => t
                        .checked_add(PG_EPOCH_MICROS)
                        .ok_or("timestamp out of range")?,
                })
            }
            Decoder::Interval {
                months,
                days,
                micros,
                nulls,
            } => {
                let raw: [u8; 16] = fixed(v)?;
                micros.append_value(i64::from_be_bytes(
                    raw[0..8].try_into().map_err(|_| "interval")?,
                ));
                days.append_value(i32::from_be_bytes(
                    raw[8..12].try_into().map_err(|_| "interval")?,
                ));
                months.append_value(i32::from_be_bytes(
                    raw[12..16].try_into().map_err(|_| "interval")?,
                ));
                nulls.append_non_null();
            }
            Decoder::Inet(b, cidr) => b.append_value(inet_text(v, *cidr)?),
            Decoder::Mac(b) => b.append_value(
                v.iter()
                    .map(|x| format!("{x:02x}"))
                    .collect::<Vec<_>>()
                    .join(":"),
            ),
            Decoder::List {
                offsets,
                nulls,
                child,
                ..
            } => {
                let count = decode_array(v, child)?;
                let last = offsets.last().copied().unwrap_or(0);
                let next = i32::try_from(count)
                    .ok()
                    .and_then(|c| last.checked_add(c))
                    .ok_or("array offsets overflow a batch; lower batch_rows")?;
                offsets.push(next);
                nulls.append_non_null();
            }
        }
        Ok(())
    }

    fn push_null(&mut self) {
        match self {
            Decoder::Bool(b) => b.append_null(),
            Decoder::I16(b) => b.append_null(),
            Decoder::I32(b) => b.append_null(),
            Decoder::I64(b) | Decoder::Oid(b) => b.append_null(),
            Decoder::F32(b) => b.append_null(),
            Decoder::F64(b) => b.append_null(),
            Decoder::Dec128(b, ..) | Decoder::Money(b, _) => b.append_null(),
            Decoder::Dec256(b, ..) => b.append_null(),
            Decoder::NumericText(b)
            | Decoder::Text(b)
            | Decoder::Jsonb(b)
            | Decoder::Uuid(b)
            | Decoder::TimeTz(b)
            | Decoder::TimeText(b)
            | Decoder::Inet(b, _)
            | Decoder::Mac(b) => b.append_null(),
            Decoder::Bytea(b) => b.append_null(),
            Decoder::Date(b) => b.append_null(),
            Decoder::Time(b) => b.append_null(),
            Decoder::Timestamp(b) => b.append_null(),
            Decoder::Interval {
                months,
                days,
                micros,
                nulls,
            } => {
                months.append_value(0);
                days.append_value(0);
                micros.append_value(0);
                nulls.append_null();
            }
            Decoder::List { offsets, nulls, .. } => {
                let last = offsets.last().copied().unwrap_or(0);
                offsets.push(last);
                nulls.append_null();
            }
        }
    }

    /// Take the values built so far as an array; the decoder is empty afterwards.
    pub fn finish(&mut self) -> ArrayRef {
        match self {
            Decoder::Bool(b) => Arc::new(b.finish()),
            Decoder::I16(b) => Arc::new(b.finish()),
            Decoder::I32(b) => Arc::new(b.finish()),
            Decoder::I64(b) | Decoder::Oid(b) => Arc::new(b.finish()),
            Decoder::F32(b) => Arc::new(b.finish()),
            Decoder::F64(b) => Arc::new(b.finish()),
            Decoder::Dec128(b, ..) | Decoder::Money(b, _) => Arc::new(b.finish()),
            Decoder::Dec256(b, ..) => Arc::new(b.finish()),
            Decoder::NumericText(b)
            | Decoder::Text(b)
            | Decoder::Jsonb(b)
            | Decoder::Uuid(b)
            | Decoder::TimeTz(b)
            | Decoder::TimeText(b)
            | Decoder::Inet(b, _)
            | Decoder::Mac(b) => Arc::new(b.finish()),
            Decoder::Bytea(b) => Arc::new(b.finish()),
            Decoder::Date(b) => Arc::new(b.finish()),
            Decoder::Time(b) => Arc::new(b.finish()),
            Decoder::Timestamp(b) => Arc::new(b.finish()),
            Decoder::Interval {
                months,
                days,
                micros,
                nulls,
            } => {
                let columns: Vec<ArrayRef> = vec![
                    Arc::new(months.finish()),
                    Arc::new(days.finish()),
                    Arc::new(micros.finish()),
                ];
                Arc::new(StructArray::new(interval_fields(), columns, nulls.finish()))
            }
            Decoder::List {
                field,
                offsets,
                nulls,
                child,
            } => {
                let taken = std::mem::replace(offsets, vec![0]);
                let values = child.finish();
                Arc::new(ListArray::new(
                    field.clone(),
                    OffsetBuffer::new(ScalarBuffer::from(taken)),
                    values,
                    nulls.finish(),
                ))
            }
        }
    }
}

/// Decode a binary array value into `child`, returning how many elements it held.
fn decode_array(v: &[u8], child: &mut Decoder) -> Result<usize, String> {
    let mut r = Reader(v);
    let ndim = r.i32()?;
    let _flags = r.i32()?;
    let _elem_oid = r.u32()?;
    if ndim == 0 {
        return Ok(0);
    }
    if ndim != 1 {
        return Err(format!(
            "a {ndim}-dimensional array value; inlet lands arrays as lists only when they are \
             one-dimensional: declare the column with its dimensions (e.g. `int[][]`), which \
             lands it as Postgres text, or set `arrays = \"text\"`"
        ));
    }
    let len = usize::try_from(r.i32()?).map_err(|_| "negative array length")?;
    let lower = r.i32()?;
    if lower != 1 {
        return Err(format!(
            "an array with lower bound {lower}; lists cannot keep it: set `arrays = \"text\"`"
        ));
    }
    for _ in 0..len {
        let n = r.i32()?;
        if n < 0 {
            child.push(None)?;
        } else {
            let bytes = r.take(usize::try_from(n).map_err(|_| "bad element length")?)?;
            child.push(Some(bytes))?;
        }
    }
    Ok(len)
}

/// A cursor over a byte slice.
struct Reader<'a>(&'a [u8]);

impl<'a> Reader<'a> {
    fn take(&mut self, n: usize) -> Result<&'a [u8], String> {
        if self.0.len() < n {
            return Err("truncated value".into());
        }
        let (head, tail) = self.0.split_at(n);
        self.0 = tail;
        Ok(head)
    }
    fn i32(&mut self) -> Result<i32, String> {
        Ok(i32::from_be_bytes(fixed(self.take(4)?)?))
    }
    fn u32(&mut self) -> Result<u32, String> {
        Ok(u32::from_be_bytes(fixed(self.take(4)?)?))
    }
    fn i16(&mut self) -> Result<i16, String> {
        Ok(i16::from_be_bytes(fixed(self.take(2)?)?))
    }
    fn u16(&mut self) -> Result<u16, String> {
        Ok(u16::from_be_bytes(fixed(self.take(2)?)?))
    }
}

fn fixed<const N: usize>(v: &[u8]) -> Result<[u8; N], String> {
    v.try_into()
        .map_err(|_| format!("expected {N} bytes, got {}", v.len()))
}

fn utf8(v: &[u8]) -> Result<&str, String> {
    std::str::from_utf8(v).map_err(|e| format!("invalid UTF-8: {e}"))
}

fn uuid_text(b: &[u8; 16]) -> String {
    const HEX: &[u8; 16] = b"0123456789abcdef";
    let mut s = String::with_capacity(36);
    for (i, x) in b.iter().enumerate() {
        if matches!(i, 4 | 6 | 8 | 10) {
            s.push('-');
        }
        s.push(HEX[usize::from(x >> 4)] as char);
        s.push(HEX[usize::from(x & 0xf)] as char);
    }
    s
}

/// A `time` value (microseconds since midnight) as Postgres prints it.
fn time_text(micros: i64) -> String {
    let secs = micros / 1_000_000;
    let frac = micros % 1_000_000;
    let mut s = format!(
        "{:02}:{:02}:{:02}",
        secs / 3600,
        (secs / 60) % 60,
        secs % 60
    );
    if frac != 0 {
        let f = format!("{frac:06}");
        s.push('.');
        s.push_str(f.trim_end_matches('0'));
    }
    s
}

fn timetz_text(micros: i64, zone_west_secs: i32) -> String {
    let mut s = time_text(micros);
    // Postgres stores the offset west of Greenwich; text shows it east.
    let east = -zone_west_secs;
    let sign = if east < 0 { '-' } else { '+' };
    let a = east.unsigned_abs();
    s.push_str(&format!("{sign}{:02}", a / 3600));
    if !a.is_multiple_of(3600) {
        s.push_str(&format!(":{:02}", (a / 60) % 60));
        if !a.is_multiple_of(60) {
            s.push_str(&format!(":{:02}", a % 60));
        }
    }
    s
}

fn inet_text(v: &[u8], cidr: bool) -> Result<String, String> {
    let mut r = Reader(v);
    let family = r.take(1)?[0];
    let bits = r.take(1)?[0];
    let _is_cidr = r.take(1)?[0];
    let n = r.take(1)?[0];
    let addr = r.take(usize::from(n))?;
    let (text, max) = match (family, addr.len()) {
        (2, 4) => (
            std::net::Ipv4Addr::new(addr[0], addr[1], addr[2], addr[3]).to_string(),
            32,
        ),
        (3, 16) => {
            let a: [u8; 16] = fixed(addr)?;
            let words: Vec<u16> = a
                .chunks(2)
                .map(|w| u16::from_be_bytes([w[0], w[1]]))
                .collect();
            // Postgres prints IPv4-compatible addresses (`::1.2.3.4`) with the dotted
            // quad, as inet_net_ntop does; Rust prints them as hex words.
            let text = if words[..6].iter().all(|w| *w == 0) && words[6] != 0 {
                format!("::{}.{}.{}.{}", a[12], a[13], a[14], a[15])
            } else {
                std::net::Ipv6Addr::from(a).to_string()
            };
            (text, 128)
        }
        _ => return Err("unknown inet address family".into()),
    };
    Ok(if cidr || bits != max {
        format!("{text}/{bits}")
    } else {
        text
    })
}

/// A `numeric` in Postgres' binary form: base-10000 digits.
#[derive(Debug)]
pub struct Numeric {
    weight: i16,
    sign: u16,
    dscale: u16,
    digits: Vec<i16>,
}

const NUMERIC_NEG: u16 = 0x4000;
const NUMERIC_NAN: u16 = 0xC000;
const NUMERIC_PINF: u16 = 0xD000;
const NUMERIC_NINF: u16 = 0xF000;

impl Numeric {
    /// Parse the binary form.
    pub fn parse(v: &[u8]) -> Result<Numeric, String> {
        let mut r = Reader(v);
        let ndigits = usize::try_from(r.i16()?).map_err(|_| "bad numeric")?;
        let weight = r.i16()?;
        let sign = r.u16()?;
        let dscale = r.u16()?;
        let mut digits = Vec::with_capacity(ndigits);
        for _ in 0..ndigits {
            digits.push(r.i16()?);
        }
        Ok(Numeric {
            weight,
            sign,
            dscale,
            digits,
        })
    }

    fn special(&self) -> Option<&'static str> {
        match self.sign {
            NUMERIC_NAN => Some("NaN"),
            NUMERIC_PINF => Some("Infinity"),
            NUMERIC_NINF => Some("-Infinity"),
            _ => None,
        }
    }

    /// The decimal exponent `e` such that value = digits-as-integer × 10^-e.
    fn exponent(&self) -> i32 {
        4 * (self.digits.len() as i32 - 1 - i32::from(self.weight))
    }

    fn special_error(&self, scale: i8) -> String {
        format!(
            "numeric value {} cannot be held by Decimal(…,{scale}); set `numeric = \"text\"` in \
             the connection's config to land numerics as exact text",
            self.special().unwrap_or("?")
        )
    }

    /// The unscaled value at `scale`, checked against `precision`.
    pub fn to_i128(&self, scale: i8, precision: u8) -> Result<i128, String> {
        if self.special().is_some() {
            return Err(self.special_error(scale));
        }
        let overflow = || format!("numeric value does not fit Decimal128({precision},{scale})");
        if self.digits.iter().all(|d| *d == 0) {
            return Ok(0);
        }
        let mut acc: i128 = 0;
        for d in &self.digits {
            match acc
                .checked_mul(10_000)
                .and_then(|a| a.checked_add(i128::from(*d)))
            {
                Some(a) => acc = a,
                // The last base-10000 group carries up to three padding zeros that may
                // overflow before the scaling divides them away: redo it in 256 bits.
                None => {
                    return self
                        .to_i256(scale, precision)?
                        .to_i128()
                        .ok_or_else(overflow);
                }
            }
        }
        let shift = i32::from(scale) - self.exponent();
        if shift >= 0 {
            acc = 10i128
                .checked_pow(shift as u32)
                .and_then(|p| acc.checked_mul(p))
                .ok_or_else(overflow)?;
        } else {
            let p = 10i128.checked_pow((-shift) as u32);
            match p {
                Some(p) if acc % p == 0 => acc /= p,
                Some(_) => return Err(format!("numeric value has more than {scale} decimals")),
                None if acc == 0 => {}
                None => return Err(overflow()),
            }
        }
        if self.sign == NUMERIC_NEG {
            acc = -acc;
        }
        Ok(acc)
    }

    /// As [`Numeric::to_i128`], for Decimal256.
    pub fn to_i256(&self, scale: i8, precision: u8) -> Result<i256, String> {
        if self.special().is_some() {
            return Err(self.special_error(scale));
        }
        let overflow = || format!("numeric value does not fit Decimal256({precision},{scale})");
        if self.digits.iter().all(|d| *d == 0) {
            return Ok(i256::ZERO);
        }
        let ten = i256::from_i128(10);
        let mut acc = i256::ZERO;
        for d in &self.digits {
            acc = acc
                .checked_mul(i256::from_i128(10_000))
                .and_then(|a| a.checked_add(i256::from_i128(i128::from(*d))))
                .ok_or_else(overflow)?;
        }
        let shift = i32::from(scale) - self.exponent();
        if shift >= 0 {
            for _ in 0..shift {
                acc = acc.checked_mul(ten).ok_or_else(overflow)?;
            }
        } else {
            for _ in 0..(-shift) {
                let q = acc.checked_div(ten).ok_or_else(overflow)?;
                if q.checked_mul(ten) != Some(acc) {
                    return Err(format!("numeric value has more than {scale} decimals"));
                }
                acc = q;
            }
        }
        if self.sign == NUMERIC_NEG {
            acc = acc.checked_neg().ok_or_else(overflow)?;
        }
        Ok(acc)
    }

    /// The exact text Postgres prints.
    pub fn to_text(&self) -> String {
        if let Some(s) = self.special() {
            return s.to_string();
        }
        // Integer part: digits with weight >= 0; fraction: dscale decimal digits.
        let mut int_part = String::new();
        let mut frac_part = String::new();
        for w in (0..=i32::from(self.weight).max(0)).rev() {
            let idx = i32::from(self.weight) - w;
            let d = if idx >= 0 {
                self.digits.get(idx as usize).copied().unwrap_or(0)
            } else {
                0
            };
            if int_part.is_empty() {
                if d != 0 || w == 0 {
                    int_part.push_str(&d.to_string());
                }
            } else {
                int_part.push_str(&format!("{d:04}"));
            }
        }
        if int_part.is_empty() {
            int_part.push('0');
        }
        let mut i = 1;
        while frac_part.len() < usize::from(self.dscale) {
            let idx = i32::from(self.weight) + i;
            let d = if idx >= 0 {
                self.digits.get(idx as usize).copied().unwrap_or(0)
            } else {
                0
            };
            frac_part.push_str(&format!("{d:04}"));
            i += 1;
        }
        frac_part.truncate(usize::from(self.dscale));
        let sign = if self.sign == NUMERIC_NEG { "-" } else { "" };
        if frac_part.is_empty() {
            format!("{sign}{int_part}")
        } else {
            format!("{sign}{int_part}.{frac_part}")
        }
    }
}

/// Builds record batches from binary COPY rows.
#[derive(Debug)]
pub struct BatchBuilder {
    schema: SchemaRef,
    columns: Vec<ColumnType>,
    decoders: Vec<Decoder>,
    rows: usize,
}

impl BatchBuilder {
    /// A builder for `columns` with room for `capacity` rows per batch.
    pub fn new(columns: &[ColumnType], capacity: usize) -> BatchBuilder {
        BatchBuilder {
            schema: arrow_schema(columns),
            columns: columns.to_vec(),
            decoders: columns
                .iter()
                .map(|c| Decoder::new(&c.kind, capacity))
                .collect(),
            rows: 0,
        }
    }

    /// Rows appended since the last batch.
    pub fn rows(&self) -> usize {
        self.rows
    }

    /// Append one value to column `i`.
    pub fn push(&mut self, i: usize, value: Option<&[u8]>) -> Result<(), String> {
        match self.decoders.get_mut(i) {
            Some(d) => d.push(value).map_err(|e| {
                format!(
                    "column `{}` ({}): {e}",
                    self.columns[i].name, self.columns[i].pg_type
                )
            }),
            None => Err(format!("row has more than {} fields", self.columns.len())),
        }
    }

    /// Count a row as complete.
    pub fn end_row(&mut self) {
        self.rows += 1;
    }

    /// The number of columns.
    pub fn width(&self) -> usize {
        self.decoders.len()
    }

    /// Take the rows built so far as a batch.
    pub fn finish(&mut self) -> Result<RecordBatch, String> {
        let arrays: Vec<ArrayRef> = self.decoders.iter_mut().map(|d| d.finish()).collect();
        self.rows = 0;
        RecordBatch::try_new(self.schema.clone(), arrays).map_err(|e| e.to_string())
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, reason = "tests")]
    use super::*;

    fn numeric(ndigits: &[i16], weight: i16, sign: u16, dscale: u16) -> Vec<u8> {
        let mut v = Vec::new();
        v.extend((ndigits.len() as i16).to_be_bytes());
        v.extend(weight.to_be_bytes());
        v.extend(sign.to_be_bytes());
        v.extend(dscale.to_be_bytes());
        for d in ndigits {
            v.extend(d.to_be_bytes());
        }
        v
    }

    #[test]
    fn numeric_to_decimal_and_text() {
        // 1234.56 = digits [1234, 5600], weight 0, dscale 2
        let n = Numeric::parse(&numeric(&[1234, 5600], 0, 0, 2)).unwrap();
        assert_eq!(n.to_i128(2, 12).unwrap(), 123_456);
        assert_eq!(n.to_text(), "1234.56");
        // -0.05 = digits [500], weight -1
        let n = Numeric::parse(&numeric(&[500], -1, NUMERIC_NEG, 2)).unwrap();
        assert_eq!(n.to_i128(2, 12).unwrap(), -5);
        assert_eq!(n.to_text(), "-0.05");
        // 10000000 = digits [1000], weight 1... 1000*10000 = 10,000,000
        let n = Numeric::parse(&numeric(&[1000], 1, 0, 0)).unwrap();
        assert_eq!(n.to_i128(2, 12).unwrap(), 1_000_000_000);
        assert_eq!(n.to_text(), "10000000");
        // 0 with dscale 3
        let n = Numeric::parse(&numeric(&[], 0, 0, 3)).unwrap();
        assert_eq!(n.to_text(), "0.000");
        assert_eq!(n.to_i256(3, 40).unwrap(), i256::ZERO);
        // numeric(38,2) at its limit: the last group's padding zeros overflow i128
        // before scaling.
        let big = Numeric::parse(&numeric(
            &[2345, 6789, 123, 4567, 8901, 2345, 6789, 123, 4567, 8900],
            8,
            0,
            2,
        ))
        .unwrap();
        assert_eq!(
            big.to_i128(2, 38).unwrap(),
            23_456_789_012_345_678_901_234_567_890_123_456_789_i128
        );
        let zero = Numeric::parse(&numeric(&[], 0, 0, 37)).unwrap();
        assert_eq!(zero.to_i128(37, 38).unwrap(), 0);
        let n = Numeric::parse(&numeric(&[], 0, NUMERIC_NAN, 0)).unwrap();
        assert_eq!(n.to_text(), "NaN");
        assert!(n.to_i128(2, 12).unwrap_err().contains("numeric = \"text\""));
    }

    #[test]
    fn text_forms() {
        assert_eq!(
            uuid_text(&[
                0xa0, 0xee, 0xbc, 0x99, 0x9c, 0x0b, 0x4e, 0xf8, 0xbb, 0x6d, 0x6b, 0xb9, 0xbd, 0x38,
                0x0a, 0x11
            ]),
            "a0eebc99-9c0b-4ef8-bb6d-6bb9bd380a11"
        );
        assert_eq!(timetz_text(3_723_500_000, -3600), "01:02:03.5+01");
        assert_eq!(timetz_text(0, 19800), "00:00:00-05:30");
        assert_eq!(
            inet_text(&[2, 24, 1, 4, 192, 168, 0, 0], true).unwrap(),
            "192.168.0.0/24"
        );
        assert_eq!(
            inet_text(&[2, 32, 0, 4, 10, 0, 0, 1], false).unwrap(),
            "10.0.0.1"
        );
        let mut v6 = vec![3, 128, 0, 16];
        v6.extend([0u8; 12]);
        v6.extend([1, 2, 3, 4]);
        assert_eq!(inet_text(&v6, false).unwrap(), "::1.2.3.4");
        let mut one = vec![3, 128, 0, 16];
        one.extend([0u8; 15]);
        one.push(1);
        assert_eq!(inet_text(&one, false).unwrap(), "::1");
    }
}
