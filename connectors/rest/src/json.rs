//! JSON records to Arrow, fast, exact, with a schema that evolves by a documented policy.
//!
//! Pages are decoded by arrow-json's tape decoder straight into typed Arrow builders (no
//! `serde_json::Value` per record). The decoder runs in strict mode with exact decoders of
//! our own for numbers, timestamps and text, so a field the schema does not know, or a value
//! that its column cannot hold exactly, fails the page instead of being dropped, nulled,
//! truncated or rounded. Only then is the page read a second time (from the same tape, so
//! every number keeps its literal text) to infer what changed, the schema is widened, and
//! the page is decoded again with the new schema.
//!
//! # Landing rules
//!
//! Any JSON an API can send lands; nothing is lost silently. What each value becomes:
//!
//! | JSON | Arrow / Parquet column |
//! |---|---|
//! | `true` / `false` | boolean |
//! | an integer within int64 | int64 |
//! | any other number (a fraction, an exponent, an integer past int64) | decimal(38, s), `s` the largest scale seen ([`inlet_core::number`]) |
//! | a number no decimal(38, s) holds (more than 38 digits) | text: each value's original literal |
//! | an RFC 3339 date-time in UTC (`Z` or `+00:00`, at most 6 fractional digits) | timestamp(µs, UTC) |
//! | any other string (other offsets, nanoseconds, dates) | utf8, as sent |
//! | an object | struct of its fields (the union over records and pages) |
//! | an array | list of the merged element type |
//! | an object with a key engines cannot take as a column (below) | text: its JSON |
//! | values nested deeper than [`MAX_NESTING`] levels | text: their JSON |
//! | `null`, a field absent from a record | null |
//! | a field with no type yet (only `null`, `{}`, `[]` so far) | not landed yet, with a schema note |
//!
//! - **Text columns** (utf8 with field metadata `inlet.encoding = json`) hold strings as they
//!   are and every other value as its JSON text, with numbers as their original literals.
//!   They come from `nested = "json"`, a declared `json` column, a type conflict under
//!   `type_conflict = "widen"` (a string where numbers were, an object where a string
//!   was), and the cases in the table. In such a column a string and a non-string with the
//!   same characters (`"5"` and `5`) read the same.
//! - **No float64 is inferred**: a decimal fraction such as `0.1` has no exact binary form.
//!   Declared `float64` columns still decode as float64. A landed schema from before this
//!   rule (in the stream's state) with an inferred float64 column re-infers that column
//!   exactly from the next value on: the next file holds decimal(38, s) (or int64, or text),
//!   and `schema_changes` records the change from float64.
//! - **Fields with no type yet.** Parquet has no null type that every engine reads (Spark,
//!   Hive and Athena refuse Parquet's `UNKNOWN`), and it cannot write a struct without
//!   fields. So a field that has been only `null`, `{}`, `[]` (or a list or object of those)
//!   is kept in the stream's schema (state) as `null` or an empty struct, but the Parquet
//!   file leaves it out, and the schema change notes it under `untyped`. Readers that bind
//!   columns by name (all of the engines above) read a column missing from a file as null.
//!   When a value arrives it becomes a column from that file on. What this gives up: in
//!   files written while a field had no type, `{}` and `[]` read as null. Once a field
//!   has a type, `{}` (a struct with every field null) and `[]` (an empty list) land as
//!   they are.
//! - **Keys.** A key becomes the column (or struct field) name exactly as sent: dots,
//!   spaces, any Unicode. Within a nested object, a key that engines cannot take as a
//!   column makes that object a text column: an empty key, a key longer than
//!   [`MAX_KEY_BYTES`] bytes, a key with control characters, or two keys equal when
//!   case is ignored (Athena, Spark and DuckDB resolve names without case, so `id` beside
//!   `ID` is ambiguous; also when the two spellings come in different records). At the
//!   top level of a record such keys are kept as they are (the record cannot be text):
//!   pyarrow and inlet read them, DuckDB renames the second (`ID_1`), Athena or Spark may
//!   refuse the file. A key repeated in one object: the last value wins, as in most JSON
//!   parsers.
//! - **Widening**: int64 + decimal → decimal; decimal(38, a) + decimal(38, b) →
//!   decimal(38, max(a, b)) while the page's values fit, else text; timestamp + other
//!   string → utf8; struct + struct → the union of their fields; list + list → list of the
//!   widened element; untyped + T → T. Any other conflict, under `type_conflict = "widen"`
//!   (default), makes the column text; under `type_conflict = "fail"` the read stops with
//!   the field's path and both types.
//! - **Declared columns** keep their declared type; a value that does not fit it exactly
//!   (`1.005` in `decimal(18,2)`, `1.5` in `int64`) fails the page.

use std::{
    collections::{HashMap, HashSet},
    fmt::Write,
    sync::{Arc, Mutex},
};

use arrow_array::{
    Array, ArrayRef, GenericListArray, OffsetSizeTrait, RecordBatch, StructArray,
    builder::{Decimal128Builder, Int64Builder, StringBuilder, TimestampMicrosecondBuilder},
    cast::AsArray,
};
use arrow_json::{
    ReaderBuilder,
    reader::{ArrayDecoder, Decoder, DecoderContext, DecoderFactory, Tape, TapeElement},
};
use arrow_schema::{ArrowError, DataType, Field, FieldRef, Fields, Schema, SchemaRef, TimeUnit};
use inlet_core::number::{self, MAX_PRECISION, Number};
use serde::Deserialize;

/// Field metadata marking a utf8 column that holds values as text (strings as they are,
/// anything else as JSON text).
pub const TEXT_ENCODING_KEY: &str = "inlet.encoding";

/// Field metadata marking a column the manifest declares (its type never widens, and its
/// decoders accept numbers sent as strings, as the manifest asked for that type).
pub const DECLARED_KEY: &str = "inlet.declared";

/// Nesting (objects and arrays) below a record kept as structs and lists; deeper values
/// land as JSON text. It bounds the schema engines must handle and the decoder's depth.
pub const MAX_NESTING: usize = 32;

/// The longest key kept as a nested field name (Glue's limit for column names).
pub const MAX_KEY_BYTES: usize = 255;

/// How nested objects land.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize, schemars::JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum NestedPolicy {
    /// Objects become Arrow structs, arrays become lists (queryable as is).
    #[default]
    Struct,
    /// Objects and arrays become utf8 columns holding their JSON text.
    Json,
}

/// What a type conflict does.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize, schemars::JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum ConflictPolicy {
    /// The column becomes utf8 text (see the module docs); nothing is lost.
    #[default]
    Widen,
    /// The read stops, naming the field and both types.
    Fail,
}

/// The policies of one stream.
#[derive(Debug, Clone, Copy, Default)]
pub struct SchemaPolicy {
    /// Nested values.
    pub nested: NestedPolicy,
    /// Conflicts.
    pub conflict: ConflictPolicy,
}

/// What a page changed in the schema.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct SchemaChange {
    /// Paths of new columns (`user.login`).
    pub added: Vec<String>,
    /// Paths whose type widened, with old and new types.
    pub widened: Vec<(String, String, String)>,
    /// Paths in the schema with no type yet (only null, `{}` or `[]` so far): they are not
    /// in the Parquet files until a value gives them a type.
    pub untyped: Vec<String>,
}

/// A failed decode: what and where in the record.
#[derive(Debug, thiserror::Error)]
pub enum JsonError {
    /// Not JSON, or not objects.
    #[error("malformed JSON: {0}")]
    Malformed(String),
    /// A type conflict under `type_conflict = "fail"`, or a value that does not fit a
    /// declared column.
    #[error("{0}")]
    Conflict(String),
}

/// Turns pages of JSON records into record batches of an evolving schema.
#[derive(Debug)]
pub struct JsonBatcher {
    schema: SchemaRef,
    declared: HashMap<String, FieldRef>,
    policy: SchemaPolicy,
    decoder: Option<DecoderHolder>,
    /// The schema the next change is reported against: the prior schema as landed, so
    /// that re-inferred legacy float64 columns show as changed from float64.
    baseline: Option<SchemaRef>,
}

struct DecoderHolder(Decoder);

impl std::fmt::Debug for DecoderHolder {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Decoder")
    }
}

impl JsonBatcher {
    /// A batcher starting from `prior` (the schema landed so far) with `declared` columns.
    pub fn new(declared: Vec<Field>, prior: Option<Schema>, policy: SchemaPolicy) -> Self {
        let declared: HashMap<String, FieldRef> = declared
            .into_iter()
            .map(|f| {
                let mut metadata = f.metadata().clone();
                metadata.insert(DECLARED_KEY.to_string(), "true".to_string());
                (f.name().clone(), Arc::new(f.with_metadata(metadata)))
            })
            .collect();
        let baseline = prior.clone().map(Arc::new);
        // An inferred float64 (from before inference became exact) is re-inferred from the
        // next value: it restarts as untyped. Declared columns are replaced just below.
        let mut fields: Vec<FieldRef> = prior
            .map(|s| s.fields().iter().map(|f| Arc::new(unfloat(f))).collect())
            .unwrap_or_default();
        // Declared columns replace what the prior schema had under their name; new ones
        // are appended by name (a TOML table does not keep its order).
        let mut names: Vec<&String> = declared.keys().collect();
        names.sort();
        for name in names {
            if let Some(existing) = fields.iter_mut().find(|f| f.name() == name) {
                *existing = declared[name].clone();
            } else {
                fields.push(declared[name].clone());
            }
        }
        JsonBatcher {
            schema: Arc::new(Schema::new(fields)),
            declared,
            policy,
            decoder: None,
            baseline,
        }
    }

    /// The schema so far (with fields that have no type yet; see [`landable`]).
    pub fn schema(&self) -> &SchemaRef {
        &self.schema
    }

    /// Decode `json`: an array of objects (one row each) or one object. Returns the batch
    /// (`None` for an empty page) and the schema change it needed, if any. The batch has
    /// the full schema; [`landable`] takes out the fields Parquet cannot hold yet.
    pub fn decode(
        &mut self,
        json: &[u8],
    ) -> Result<(Option<RecordBatch>, Option<SchemaChange>), JsonError> {
        let first_error = if self.schema.fields().is_empty() {
            None
        } else {
            match self.try_decode(json) {
                Ok(batch) => return Ok((batch, None)),
                Err(e) => Some(e),
            }
        };
        // Slow path: learn what the page has that the schema does not.
        let transit: Vec<FieldRef> = self
            .schema
            .fields()
            .iter()
            .map(|f| {
                if is_declared(f) {
                    f.clone()
                } else {
                    Arc::new(map_field(f, &to_transit))
                }
            })
            .collect();
        let Some(fields) = infer_page(json, transit, self.policy, &self.declared)? else {
            return Ok((None, None));
        };
        let fields: Vec<FieldRef> = fields
            .iter()
            .map(|f| {
                if is_declared(f) {
                    f.clone()
                } else {
                    Arc::new(map_field(f, &finalize))
                }
            })
            .collect();
        let next = Arc::new(Schema::new(fields));
        if next == self.schema && first_error.is_none() {
            // Records with nothing in them yet (`[{}]` on a first page): rows, no columns.
            let batch = self
                .try_decode(json)
                .map_err(|e| JsonError::Conflict(describe_arrow_error(&e.to_string())))?;
            return Ok((batch, None));
        }
        if next == self.schema {
            let detail = first_error.map(|e| e.to_string()).unwrap_or_default();
            return Err(JsonError::Conflict(describe_arrow_error(&detail)));
        }
        let old = self.baseline.take().unwrap_or_else(|| self.schema.clone());
        let mut change = diff(&old, &next);
        change.untyped = untyped_paths(&next);
        self.schema = next;
        self.decoder = None;
        let batch = self
            .try_decode(json)
            .map_err(|e| JsonError::Conflict(describe_arrow_error(&e.to_string())))?;
        Ok((batch, Some(change)))
    }

    fn try_decode(&mut self, json: &[u8]) -> Result<Option<RecordBatch>, ArrowError> {
        if self.decoder.is_none() {
            let decoder = ReaderBuilder::new(self.schema.clone())
                .with_strict_mode(true)
                .with_flatten(true)
                .with_batch_size(1 << 20)
                .with_decoder_factory(Arc::new(ExactFactory))
                .build_decoder()?;
            self.decoder = Some(DecoderHolder(decoder));
        }
        let Some(DecoderHolder(decoder)) = self.decoder.as_mut() else {
            return Ok(None);
        };
        let result = run_decoder(decoder, json);
        if result.is_err() {
            self.decoder = None;
        }
        result
    }
}

/// Feed all of `json` to `decoder` and collect what it decoded.
fn run_decoder(decoder: &mut Decoder, json: &[u8]) -> Result<Option<RecordBatch>, ArrowError> {
    let mut rest = json;
    let mut batches = Vec::new();
    while !rest.is_empty() {
        let n = decoder.decode(rest)?;
        if n == 0 {
            break;
        }
        rest = &rest[n..];
        if !rest.is_empty()
            && let Some(b) = decoder.flush()?
        {
            batches.push(b);
        }
    }
    if decoder.has_partial_record() {
        return Err(ArrowError::JsonError("truncated JSON".into()));
    }
    if let Some(b) = decoder.flush()? {
        batches.push(b);
    }
    match batches.len() {
        0 => Ok(None),
        1 => Ok(batches.pop()),
        _ => {
            let schema = batches[0].schema();
            arrow_select::concat::concat_batches(&schema, &batches).map(Some)
        }
    }
}

fn describe_arrow_error(text: &str) -> String {
    text.strip_prefix("Json error: ")
        .unwrap_or(text)
        .to_string()
}

/// `batch` without the columns and struct fields that have no type yet (null-typed, empty
/// structs, lists of those), which Parquet cannot write for every engine; see the module
/// docs. Returns `batch` itself when it has none, which is the common case (one walk of the
/// schema, no data touched).
pub fn landable(batch: RecordBatch) -> Result<RecordBatch, JsonError> {
    let schema = batch.schema();
    if schema.fields().iter().all(|f| is_typed(f.data_type())) {
        return Ok(batch);
    }
    let mut fields = Vec::new();
    let mut columns = Vec::new();
    for (f, col) in schema.fields().iter().zip(batch.columns()) {
        if let Some((f, col)) = prune(f, col).map_err(arrow_conflict)? {
            fields.push(f);
            columns.push(col);
        }
    }
    let options = arrow_array::RecordBatchOptions::new().with_row_count(Some(batch.num_rows()));
    RecordBatch::try_new_with_options(
        Arc::new(Schema::new_with_metadata(fields, schema.metadata().clone())),
        columns,
        &options,
    )
    .map_err(arrow_conflict)
}

fn arrow_conflict(e: ArrowError) -> JsonError {
    JsonError::Conflict(describe_arrow_error(&e.to_string()))
}

/// Whether a type holds something Parquet can write: no null type, no struct without
/// fields, anywhere inside.
fn is_typed(t: &DataType) -> bool {
    match t {
        DataType::Null => false,
        DataType::Struct(fields) => {
            !fields.is_empty() && fields.iter().all(|f| is_typed(f.data_type()))
        }
        DataType::List(f) | DataType::LargeList(f) => is_typed(f.data_type()),
        _ => true,
    }
}

/// Whether any landable value can sit in a type (a struct with at least one typed field).
fn has_type(t: &DataType) -> bool {
    match t {
        DataType::Null => false,
        DataType::Struct(fields) => fields.iter().any(|f| has_type(f.data_type())),
        DataType::List(f) | DataType::LargeList(f) => has_type(f.data_type()),
        _ => true,
    }
}

/// A column without its untyped parts, or `None` when nothing in it has a type.
fn prune(field: &FieldRef, array: &ArrayRef) -> Result<Option<(FieldRef, ArrayRef)>, ArrowError> {
    if is_typed(field.data_type()) {
        return Ok(Some((field.clone(), array.clone())));
    }
    if !has_type(field.data_type()) {
        return Ok(None);
    }
    match field.data_type() {
        DataType::Struct(_) => {
            let s = array.as_struct();
            let mut fields = Vec::new();
            let mut columns = Vec::new();
            for (f, col) in s.fields().iter().zip(s.columns()) {
                if let Some((f, col)) = prune(f, col)? {
                    fields.push(f);
                    columns.push(col);
                }
            }
            let fields = Fields::from(fields);
            let pruned = StructArray::try_new(fields.clone(), columns, s.nulls().cloned())?;
            Ok(Some((
                Arc::new(
                    field
                        .as_ref()
                        .clone()
                        .with_data_type(DataType::Struct(fields)),
                ),
                Arc::new(pruned),
            )))
        }
        DataType::List(_) => prune_list::<i32>(field, array.as_list::<i32>()),
        DataType::LargeList(_) => prune_list::<i64>(field, array.as_list::<i64>()),
        _ => Ok(Some((field.clone(), array.clone()))),
    }
}

fn prune_list<O: OffsetSizeTrait>(
    field: &FieldRef,
    list: &GenericListArray<O>,
) -> Result<Option<(FieldRef, ArrayRef)>, ArrowError> {
    let (item, offsets, values, nulls) = list.clone().into_parts();
    let Some((item, values)) = prune(&item, &values)? else {
        return Ok(None);
    };
    let pruned = GenericListArray::<O>::try_new(item.clone(), offsets, values, nulls)?;
    let t = pruned.data_type().clone();
    Ok(Some((
        Arc::new(field.as_ref().clone().with_data_type(t)),
        Arc::new(pruned),
    )))
}

/// Paths of the schema's fields that have no type yet.
fn untyped_paths(schema: &Schema) -> Vec<String> {
    fn walk(fields: &Fields, prefix: &str, out: &mut Vec<String>) {
        for f in fields {
            let path = if prefix.is_empty() {
                f.name().clone()
            } else {
                format!("{prefix}.{}", f.name())
            };
            let mut t = f.data_type();
            let mut path = path;
            while let DataType::List(item) | DataType::LargeList(item) = t {
                t = item.data_type();
                path.push_str("[]");
            }
            match t {
                DataType::Null => out.push(path),
                DataType::Struct(children) if children.is_empty() => out.push(path),
                DataType::Struct(children) => walk(children, &path, out),
                _ => {}
            }
        }
    }
    let mut out = Vec::new();
    walk(schema.fields(), "", &mut out);
    out
}

// ---------------------------------------------------------------------------------------
// Inference. While a page is inferred, numbers carry what they need in transit types that
// never reach a schema: `Decimal256(d, 0)` is "integers within int64 of up to d digits",
// `Decimal128(p, s)` is "decimals needing p digits, s after the point". A landed schema is
// mapped to transit before merging ([`to_transit`]) and back after ([`finalize`]).
// ---------------------------------------------------------------------------------------

/// The in-transit marker of a text column (fields carry it as metadata, [`field_of`]).
const TEXT: DataType = DataType::LargeUtf8;

fn transit_int(digits: u8) -> DataType {
    DataType::Decimal256(digits, 0)
}

/// A decimal needing `int_digits` before the point and `scale` after it, or text when no
/// decimal(38, s) holds both.
fn transit_decimal(int_digits: u8, scale: u8) -> DataType {
    if number::decimal_fits(int_digits, scale) {
        // Both are at most 38 here, so neither the sum nor the cast overflows.
        DataType::Decimal128(int_digits + scale, scale as i8)
    } else {
        TEXT
    }
}

/// A landed type as the inference merges it. Earlier values are in earlier files, so only
/// the scale of a decimal column matters, not the digits its old values had.
fn to_transit(t: &DataType) -> Option<DataType> {
    match t {
        DataType::Int64 => Some(transit_int(0)),
        DataType::Decimal128(_, s) => Some(DataType::Decimal128((*s).max(0) as u8, *s)),
        _ => None,
    }
}

/// A transit type as it lands: int64, or decimal(38, s).
fn finalize(t: &DataType) -> Option<DataType> {
    match t {
        DataType::Decimal256(_, 0) => Some(DataType::Int64),
        DataType::Decimal128(_, s) => Some(DataType::Decimal128(MAX_PRECISION, *s)),
        _ => None,
    }
}

/// Undeclared float64 (landed before inference became exact) restarts as untyped.
fn unfloat(field: &FieldRef) -> Field {
    map_field(field, &|t| {
        (t == &DataType::Float64).then_some(DataType::Null)
    })
}

/// `field` with `f` applied to every type inside it (where `f` returns `Some`).
fn map_field(field: &FieldRef, f: &dyn Fn(&DataType) -> Option<DataType>) -> Field {
    let t = map_type(field.data_type(), f);
    field.as_ref().clone().with_data_type(t)
}

fn map_type(t: &DataType, f: &dyn Fn(&DataType) -> Option<DataType>) -> DataType {
    if let Some(mapped) = f(t) {
        return mapped;
    }
    match t {
        DataType::Struct(fields) => DataType::Struct(
            fields
                .iter()
                .map(|c| Arc::new(map_field(c, f)))
                .collect::<Fields>(),
        ),
        DataType::List(item) => DataType::List(Arc::new(map_field(item, f))),
        other => other.clone(),
    }
}

/// Infer the page's records into `fields` (transit types). `None`: the page has no
/// records (`[]` or `null`).
fn infer_page(
    json: &[u8],
    fields: Vec<FieldRef>,
    policy: SchemaPolicy,
    declared: &HashMap<String, FieldRef>,
) -> Result<Option<Vec<FieldRef>>, JsonError> {
    let shared = Arc::new(Mutex::new(Inference {
        fields,
        policy,
        declared: declared.keys().cloned().collect(),
        records: 0,
        error: None,
    }));
    let mut decoder = ReaderBuilder::new(Arc::new(Schema::empty()))
        .with_flatten(true)
        .with_batch_size(1 << 20)
        .with_decoder_factory(Arc::new(InferFactory(shared.clone())))
        .build_decoder()
        .map_err(|e| JsonError::Malformed(e.to_string()))?;
    let result = run_decoder(&mut decoder, json);
    let mut inference = shared.lock().unwrap_or_else(|e| e.into_inner());
    if let Some(e) = inference.error.take() {
        return Err(e);
    }
    result.map_err(|e| JsonError::Malformed(describe_arrow_error(&e.to_string())))?;
    if inference.records == 0 {
        return Ok(None);
    }
    Ok(Some(std::mem::take(&mut inference.fields)))
}

/// What the inference pass has learnt so far.
struct Inference {
    fields: Vec<FieldRef>,
    policy: SchemaPolicy,
    declared: HashSet<String>,
    records: usize,
    error: Option<JsonError>,
}

/// Hands the inference decoder to the root of an empty schema, so that it sees the tape of
/// every record.
#[derive(Debug)]
struct InferFactory(Arc<Mutex<Inference>>);

impl std::fmt::Debug for Inference {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Inference")
    }
}

impl DecoderFactory for InferFactory {
    fn make_default_decoder(
        &self,
        _ctx: &DecoderContext,
        field: &FieldRef,
        _is_nullable: bool,
    ) -> Result<Option<Box<dyn ArrayDecoder>>, ArrowError> {
        Ok(
            (field.name().is_empty() && field.data_type() == &DataType::Struct(Fields::empty()))
                .then(|| Box::new(InferDecoder(self.0.clone())) as Box<dyn ArrayDecoder>),
        )
    }
}

struct InferDecoder(Arc<Mutex<Inference>>);

impl ArrayDecoder for InferDecoder {
    fn decode(&mut self, tape: &Tape<'_>, pos: &[u32]) -> Result<ArrayRef, ArrowError> {
        let mut inference = self.0.lock().unwrap_or_else(|e| e.into_inner());
        if let Err(e) = inference.records(tape, pos) {
            inference.error = Some(e);
            return Err(ArrowError::JsonError("inference failed".into()));
        }
        Ok(Arc::new(StructArray::new_empty_fields(pos.len(), None)))
    }
}

impl Inference {
    fn records(&mut self, tape: &Tape<'_>, pos: &[u32]) -> Result<(), JsonError> {
        for (i, &p) in pos.iter().enumerate() {
            let end = match tape.get(p) {
                TapeElement::StartObject(end) => end,
                // A page that is `null` has no records.
                TapeElement::Null if pos.len() == 1 => continue,
                _ => {
                    return Err(JsonError::Malformed(format!(
                        "record {} is not a JSON object",
                        self.records + i
                    )));
                }
            };
            let mut cur = p + 1;
            while cur < end {
                let name = key_at(tape, cur)?;
                let (t, next) = infer(tape, cur + 1, self.policy, name, 1)?;
                if !self.declared.contains(name) {
                    merge_member(&mut self.fields, name, t, self.policy, name)?;
                }
                cur = next;
            }
        }
        self.records += pos
            .iter()
            .filter(|&&p| !matches!(tape.get(p), TapeElement::Null))
            .count();
        Ok(())
    }
}

fn key_at<'a>(tape: &Tape<'a>, idx: u32) -> Result<&'a str, JsonError> {
    match tape.get(idx) {
        TapeElement::String(k) => Ok(tape.get_string(k)),
        _ => Err(JsonError::Malformed("an object key is not a string".into())),
    }
}

/// The index after the value at `idx`.
fn after(tape: &Tape<'_>, idx: u32) -> Result<u32, JsonError> {
    tape.next(idx, "a value")
        .map_err(|e| JsonError::Malformed(e.to_string()))
}

/// The (transit) type of the value at `idx` under the policy, and the index after it.
fn infer(
    tape: &Tape<'_>,
    idx: u32,
    policy: SchemaPolicy,
    path: &str,
    depth: usize,
) -> Result<(DataType, u32), JsonError> {
    let t = match tape.get(idx) {
        TapeElement::Null => DataType::Null,
        TapeElement::True | TapeElement::False => DataType::Boolean,
        TapeElement::Number(i) => match number::parse(tape.get_string(i)) {
            Some(n @ Number::Int(_)) => transit_int(n.int_digits()),
            Some(Number::Decimal {
                scale, int_digits, ..
            }) => transit_decimal(int_digits, scale),
            Some(Number::Inexact) | None => TEXT,
        },
        TapeElement::String(i) => {
            if looks_like_timestamp(tape.get_string(i)) {
                timestamp_type()
            } else {
                DataType::Utf8
            }
        }
        TapeElement::StartObject(end) => {
            if policy.nested == NestedPolicy::Json
                || depth > MAX_NESTING
                || has_unsafe_keys(tape, idx, end)?
            {
                return Ok((TEXT, end + 1));
            }
            let mut fields = Vec::new();
            let mut cur = idx + 1;
            while cur < end {
                let name = key_at(tape, cur)?;
                let child = format!("{path}.{name}");
                let (t, next) = infer(tape, cur + 1, policy, &child, depth + 1)?;
                merge_member(&mut fields, name, t, policy, &child)?;
                cur = next;
            }
            return Ok((DataType::Struct(Fields::from(fields)), end + 1));
        }
        TapeElement::StartList(end) => {
            if policy.nested == NestedPolicy::Json || depth > MAX_NESTING {
                return Ok((TEXT, end + 1));
            }
            let mut element = DataType::Null;
            let item_path = format!("{path}[]");
            let mut cur = idx + 1;
            while cur < end {
                let (t, next) = infer(tape, cur, policy, &item_path, depth + 1)?;
                element = widen(&element, &t, policy, &item_path)?;
                cur = next;
            }
            return Ok((DataType::List(Arc::new(field_of("item", element))), end + 1));
        }
        _ => return Err(JsonError::Malformed(format!("unexpected JSON at `{path}`"))),
    };
    Ok((t, after(tape, idx)?))
}

/// Whether the object at `start` has a key engines cannot take as a column name.
fn has_unsafe_keys(tape: &Tape<'_>, start: u32, end: u32) -> Result<bool, JsonError> {
    // Lower-cased key -> the key as sent: a key repeated exactly is the same field (the
    // last value wins), two spellings of one name are a clash.
    let mut seen: HashMap<String, &str> = HashMap::new();
    let mut cur = start + 1;
    while cur < end {
        let key = key_at(tape, cur)?;
        if key.is_empty() || key.len() > MAX_KEY_BYTES || key.chars().any(char::is_control) {
            return Ok(true);
        }
        if let Some(earlier) = seen.insert(key.to_lowercase(), key)
            && earlier != key
        {
            return Ok(true);
        }
        cur = after(tape, cur + 1)?;
    }
    Ok(false)
}

/// Whether two of the fields have names equal but for case.
fn case_clash(fields: &[FieldRef]) -> bool {
    let mut seen = HashSet::new();
    fields.iter().any(|f| !seen.insert(f.name().to_lowercase()))
}

/// The timestamp type of inferred date-times.
pub fn timestamp_type() -> DataType {
    DataType::Timestamp(TimeUnit::Microsecond, Some("+00:00".into()))
}

/// An RFC 3339 date-time that a timestamp(µs, UTC) holds exactly: UTC (`Z`, `+00:00`) and
/// at most 6 fractional digits. Other offsets and finer fractions stay text, so that what
/// the source said is kept.
fn looks_like_timestamp(s: &str) -> bool {
    // Cheap shape test before the parse: `YYYY-MM-DDTHH:MM:SS...`.
    let b = s.as_bytes();
    if !(b.len() >= 20
        && b.len() <= 32
        && b[4] == b'-'
        && b[7] == b'-'
        && (b[10] == b'T' || b[10] == b't')
        && b[13] == b':'
        && b[16] == b':')
    {
        return false;
    }
    let offset_len = if matches!(b[b.len() - 1], b'Z' | b'z') {
        1
    } else if s.ends_with("+00:00") {
        6
    } else {
        return false;
    };
    let seconds_end = b.len() - offset_len;
    if seconds_end > 19 {
        // A fraction: `.` and 1 to 6 digits.
        let frac = &b[19..seconds_end];
        if frac[0] != b'.' || frac.len() < 2 || frac.len() > 7 {
            return false;
        }
    }
    chrono::DateTime::parse_from_rfc3339(s).is_ok()
}

fn is_text(field: &Field) -> bool {
    field.data_type() == &DataType::Utf8
        && field
            .metadata()
            .get(TEXT_ENCODING_KEY)
            .is_some_and(|v| v == "json")
}

fn is_declared(field: &Field) -> bool {
    field.metadata().contains_key(DECLARED_KEY)
}

fn text_field(name: &str) -> Field {
    Field::new(name, DataType::Utf8, true).with_metadata(HashMap::from([(
        TEXT_ENCODING_KEY.to_string(),
        "json".to_string(),
    )]))
}

/// A nullable field of type `t`, or a text field for the marker.
fn field_of(name: &str, t: DataType) -> Field {
    if t == TEXT {
        text_field(name)
    } else {
        Field::new(name, t, true)
    }
}

/// A field's type, with the text marker for text fields.
fn type_of(field: &Field) -> DataType {
    if is_text(field) {
        TEXT
    } else {
        field.data_type().clone()
    }
}

/// `existing` widened by a value of type `t`, or `None` when it already covers it.
fn merged_field(
    existing: &Field,
    t: &DataType,
    policy: SchemaPolicy,
    path: &str,
) -> Result<Option<Field>, JsonError> {
    let current = type_of(existing);
    let w = widen(&current, t, policy, path)?;
    Ok((w != current).then(|| field_of(existing.name(), w)))
}

/// Fold a member `name` of type `t` into `fields`.
fn merge_member(
    fields: &mut Vec<FieldRef>,
    name: &str,
    t: DataType,
    policy: SchemaPolicy,
    path: &str,
) -> Result<(), JsonError> {
    match fields.iter_mut().find(|f| f.name() == name) {
        Some(existing) => {
            if let Some(f) = merged_field(existing, &t, policy, path)? {
                *existing = Arc::new(f);
            }
        }
        None => fields.push(Arc::new(field_of(name, t))),
    }
    Ok(())
}

/// A type as a person reads it in an error (transit types by what they land as).
fn describe(t: &DataType) -> String {
    match t {
        DataType::Decimal256(_, 0) => "Int64".into(),
        DataType::Decimal128(_, s) => format!("Decimal128({MAX_PRECISION}, {s})"),
        DataType::LargeUtf8 => "text".into(),
        other => other.to_string(),
    }
}

/// The wider of two (transit) types, or the conflict policy's answer.
fn widen(
    a: &DataType,
    b: &DataType,
    policy: SchemaPolicy,
    path: &str,
) -> Result<DataType, JsonError> {
    use DataType as T;
    let int_digits = |p: u8, s: i8| p.saturating_sub(s.max(0) as u8);
    Ok(match (a, b) {
        (T::Null, t) | (t, T::Null) => t.clone(),
        (x, y) if x == y => x.clone(),
        (T::LargeUtf8, _) | (_, T::LargeUtf8) => TEXT,
        (T::Decimal256(x, 0), T::Decimal256(y, 0)) => transit_int(*x.max(y)),
        (T::Decimal256(d, 0), T::Decimal128(p, s)) | (T::Decimal128(p, s), T::Decimal256(d, 0)) => {
            transit_decimal((*d).max(int_digits(*p, *s)), (*s).max(0) as u8)
        }
        (T::Decimal128(p1, s1), T::Decimal128(p2, s2)) => transit_decimal(
            int_digits(*p1, *s1).max(int_digits(*p2, *s2)),
            (*s1).max(*s2).max(0) as u8,
        ),
        (T::Timestamp(..), T::Utf8) | (T::Utf8, T::Timestamp(..)) => T::Utf8,
        (T::Struct(fa), T::Struct(fb)) => {
            let mut fields: Vec<FieldRef> = fa.iter().cloned().collect();
            for f in fb {
                let child = format!("{path}.{}", f.name());
                match fields.iter_mut().find(|x| x.name() == f.name()) {
                    Some(existing) => {
                        if let Some(nf) = merged_field(existing, &type_of(f), policy, &child)? {
                            *existing = Arc::new(nf);
                        }
                    }
                    None => fields.push(f.clone()),
                }
            }
            // Records may each be fine and still spell one name two ways (`id` in one,
            // `ID` in the next): such a struct lands as text too.
            if case_clash(&fields) {
                TEXT
            } else {
                T::Struct(Fields::from(fields))
            }
        }
        (T::List(ea), T::List(eb)) => {
            let w = widen(&type_of(ea), &type_of(eb), policy, &format!("{path}[]"))?;
            T::List(Arc::new(field_of("item", w)))
        }
        (x, y) => match policy.conflict {
            ConflictPolicy::Widen => TEXT,
            ConflictPolicy::Fail => {
                return Err(JsonError::Conflict(format!(
                    "field `{path}` was {} and now holds {} (type_conflict = \"fail\"; set it to \"widen\" to keep such values as text, or declare the column)",
                    describe(x),
                    describe(y)
                )));
            }
        },
    })
}

/// Paths added and widened from `old` to `new`.
fn diff(old: &Schema, new: &Schema) -> SchemaChange {
    fn walk(old: &Fields, new: &Fields, prefix: &str, change: &mut SchemaChange) {
        for f in new {
            let path = if prefix.is_empty() {
                f.name().clone()
            } else {
                format!("{prefix}.{}", f.name())
            };
            match old.iter().find(|o| o.name() == f.name()) {
                None => change.added.push(path),
                Some(o) => match (o.data_type(), f.data_type()) {
                    (DataType::Struct(a), DataType::Struct(b)) => walk(a, b, &path, change),
                    (a, b) if a != b || is_text(o) != is_text(f) => change.widened.push((
                        path,
                        a.to_string(),
                        if is_text(f) {
                            "utf8 (text)".into()
                        } else {
                            b.to_string()
                        },
                    )),
                    _ => {}
                },
            }
        }
    }
    let mut change = SchemaChange::default();
    walk(old.fields(), new.fields(), "", &mut change);
    change
}

// ---------------------------------------------------------------------------------------
// Decoders. arrow-json's own would truncate `1.5` into an int64 column, round `1.005` into
// decimal(_, 2), read a number as epoch microseconds in a timestamp column and take a
// numeric string for a number; each of these must instead fail the fast path, so the
// schema widens.
// ---------------------------------------------------------------------------------------

/// Builds the exact decoders: text for text-marked utf8 fields, and exact int64,
/// decimal and timestamp decoders.
#[derive(Debug)]
struct ExactFactory;

impl DecoderFactory for ExactFactory {
    fn make_default_decoder(
        &self,
        _ctx: &DecoderContext,
        field: &FieldRef,
        _is_nullable: bool,
    ) -> Result<Option<Box<dyn ArrayDecoder>>, ArrowError> {
        let declared = is_declared(field);
        Ok(match field.data_type() {
            DataType::Utf8 if is_text(field) => Some(Box::new(TextDecoder)),
            DataType::Int64 => Some(Box::new(IntDecoder { strings: declared })),
            DataType::Decimal128(p, s) if *s >= 0 => Some(Box::new(DecimalDecoder {
                precision: *p,
                scale: *s as u8,
                strings: declared,
            })),
            DataType::Timestamp(TimeUnit::Microsecond, Some(tz))
                if !declared && tz.as_ref() == "+00:00" =>
            {
                Some(Box::new(TimestampDecoder))
            }
            _ => None,
        })
    }
}

/// The literal of a number, or of a string when `strings` (declared columns) allows it.
fn literal<'a>(tape: &Tape<'a>, p: u32, strings: bool) -> Option<&'a str> {
    match tape.get(p) {
        TapeElement::Number(i) => Some(tape.get_string(i)),
        TapeElement::String(i) if strings => Some(tape.get_string(i)),
        _ => None,
    }
}

/// Integers within int64, exactly; anything else fails.
struct IntDecoder {
    strings: bool,
}

impl ArrayDecoder for IntDecoder {
    fn decode(&mut self, tape: &Tape<'_>, pos: &[u32]) -> Result<ArrayRef, ArrowError> {
        let mut builder = Int64Builder::with_capacity(pos.len());
        for &p in pos {
            if let TapeElement::Null = tape.get(p) {
                builder.append_null();
                continue;
            }
            match literal(tape, p, self.strings).and_then(number::parse) {
                Some(Number::Int(v)) => builder.append_value(v),
                _ => return Err(tape.error(p, "an integer within int64")),
            }
        }
        Ok(Arc::new(builder.finish()))
    }
}

/// Decimals that the column's precision and scale hold exactly; anything else fails (no
/// rounding).
struct DecimalDecoder {
    precision: u8,
    scale: u8,
    strings: bool,
}

impl ArrayDecoder for DecimalDecoder {
    fn decode(&mut self, tape: &Tape<'_>, pos: &[u32]) -> Result<ArrayRef, ArrowError> {
        let mut builder = Decimal128Builder::with_capacity(pos.len());
        for &p in pos {
            if let TapeElement::Null = tape.get(p) {
                builder.append_null();
                continue;
            }
            let value = literal(tape, p, self.strings)
                .and_then(number::parse)
                .filter(|n| n.fits_in(self.precision, self.scale))
                .and_then(|n| n.unscaled_at(self.scale));
            match value {
                Some(v) => builder.append_value(v),
                None => {
                    return Err(tape.error(
                        p,
                        &format!(
                            "a number that decimal({},{}) holds exactly",
                            self.precision, self.scale
                        ),
                    ));
                }
            }
        }
        let array = builder
            .finish()
            .with_precision_and_scale(self.precision, self.scale as i8)?;
        Ok(Arc::new(array))
    }
}

/// Inferred timestamps: only the strings inference takes for timestamps.
struct TimestampDecoder;

impl ArrayDecoder for TimestampDecoder {
    fn decode(&mut self, tape: &Tape<'_>, pos: &[u32]) -> Result<ArrayRef, ArrowError> {
        let mut builder = TimestampMicrosecondBuilder::with_capacity(pos.len());
        for &p in pos {
            match tape.get(p) {
                TapeElement::Null => builder.append_null(),
                TapeElement::String(i) => {
                    let s = tape.get_string(i);
                    let micros = looks_like_timestamp(s)
                        .then(|| chrono::DateTime::parse_from_rfc3339(s).ok())
                        .flatten()
                        .map(|d| d.timestamp_micros());
                    match micros {
                        Some(v) => builder.append_value(v),
                        None => return Err(tape.error(p, "an RFC 3339 UTC date-time")),
                    }
                }
                _ => return Err(tape.error(p, "an RFC 3339 UTC date-time")),
            }
        }
        Ok(Arc::new(builder.finish().with_timezone("+00:00")))
    }
}

/// Strings as they are; every other value as its JSON text.
struct TextDecoder;

impl ArrayDecoder for TextDecoder {
    fn decode(&mut self, tape: &Tape<'_>, pos: &[u32]) -> Result<ArrayRef, ArrowError> {
        let mut builder = StringBuilder::with_capacity(pos.len(), pos.len() * 32);
        let mut buf = String::new();
        for &p in pos {
            match tape.get(p) {
                TapeElement::Null => builder.append_null(),
                TapeElement::String(i) => builder.append_value(tape.get_string(i)),
                _ => {
                    buf.clear();
                    write_json(tape, p, &mut buf)?;
                    builder.append_value(&buf);
                }
            }
        }
        Ok(Arc::new(builder.finish()))
    }
}

/// Write the compact JSON text of the value at `idx`, numbers as their literals. It walks
/// the tape in order with a stack of open containers rather than recursing, so a value
/// nested a million levels deep does not overflow the stack.
fn write_json(tape: &Tape<'_>, idx: u32, out: &mut String) -> Result<(), ArrowError> {
    // Per open container: (is an object, members or items written so far).
    let mut open: Vec<(bool, u32)> = Vec::new();
    let mut cur = idx;
    loop {
        let element = tape.get(cur);
        if !matches!(element, TapeElement::EndObject(_) | TapeElement::EndList(_))
            && let Some((is_object, n)) = open.last_mut()
        {
            // In an object, odd positions are values (after their key), even ones keys.
            if *is_object && *n % 2 == 1 {
                out.push(':');
            } else if *n > 0 {
                out.push(',');
            }
            *n += 1;
        }
        match element {
            TapeElement::StartObject(_) => {
                out.push('{');
                open.push((true, 0));
            }
            TapeElement::StartList(_) => {
                out.push('[');
                open.push((false, 0));
            }
            TapeElement::EndObject(_) => {
                out.push('}');
                open.pop();
            }
            TapeElement::EndList(_) => {
                out.push(']');
                open.pop();
            }
            TapeElement::String(i) => write_json_string(tape.get_string(i), out),
            TapeElement::Number(i) => out.push_str(tape.get_string(i)),
            TapeElement::True => out.push_str("true"),
            TapeElement::False => out.push_str("false"),
            TapeElement::Null => out.push_str("null"),
            // The other elements come only from `Decoder::serialize`, which inlet does not use.
            _ => return Err(tape.error(cur, "a JSON value")),
        }
        cur += 1;
        if open.is_empty() {
            return Ok(());
        }
    }
}

fn write_json_string(s: &str, out: &mut String) {
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

/// Parse a declared column type: `int64`, `float64`, `bool`, `string`, `timestamp`
/// (RFC 3339 text), `unix_timestamp` (seconds since the epoch), `date`,
/// `decimal(P,S)`, `json` (any value as JSON text).
pub fn declared_type(name: &str, spec: &str) -> Result<Field, String> {
    let t = match spec.trim() {
        "int64" | "integer" => DataType::Int64,
        "float64" | "number" => DataType::Float64,
        "bool" | "boolean" => DataType::Boolean,
        "string" | "utf8" => DataType::Utf8,
        "timestamp" => timestamp_type(),
        "unix_timestamp" => DataType::Timestamp(TimeUnit::Second, Some("+00:00".into())),
        "date" => DataType::Date32,
        "json" => return Ok(text_field(name)),
        other => {
            if let Some(inner) = other
                .strip_prefix("decimal(")
                .and_then(|r| r.strip_suffix(')'))
            {
                let (p, s) = inner
                    .split_once(',')
                    .ok_or_else(|| format!("`{other}`: write decimal(PRECISION,SCALE)"))?;
                let p: u8 = p
                    .trim()
                    .parse()
                    .map_err(|_| format!("`{other}`: bad precision"))?;
                let s: i8 = s
                    .trim()
                    .parse()
                    .map_err(|_| format!("`{other}`: bad scale"))?;
                if p == 0 || p > 38 || s < 0 || i16::from(s) > i16::from(p) {
                    return Err(format!("`{other}`: precision 1..=38, scale 0..=precision"));
                }
                DataType::Decimal128(p, s)
            } else {
                return Err(format!(
                    "unknown type `{other}`; use int64, float64, bool, string, timestamp, unix_timestamp, date, decimal(P,S) or json"
                ));
            }
        }
    };
    Ok(Field::new(name, t, true))
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, reason = "tests")]
    use super::*;
    use arrow_array::{
        Array, Decimal128Array, Int64Array, ListArray, StringArray, StructArray,
        TimestampMicrosecondArray, cast::AsArray,
    };

    #[test]
    fn nested_objects_become_structs_and_lists_with_timestamps_and_exact_integers() {
        let mut b = JsonBatcher::new(vec![], None, SchemaPolicy::default());
        let page = br#"[
          {"id": 1, "number": 18446744073709551615, "user": {"login": "octocat", "id": 583231},
           "labels": [{"name": "bug"}], "closed_at": null, "created_at": "2011-04-22T13:33:48Z",
           "price": 19.99, "body": "Line\n\"quoted\""},
          {"id": 2, "number": 7, "user": {"login": "hubot", "id": 2, "site_admin": false},
           "labels": [], "closed_at": "2011-04-23T13:33:48Z", "created_at": "2011-04-22T13:33:49Z",
           "price": 5, "body": null}
        ]"#;
        let (batch, change) = b.decode(page).unwrap();
        let batch = batch.unwrap();
        assert_eq!(batch.num_rows(), 2);
        assert!(change.unwrap().added.contains(&"user".to_string()));
        let number = batch.column_by_name("number").unwrap();
        let number = number.as_any().downcast_ref::<Decimal128Array>().unwrap();
        assert_eq!(number.value(0), 18446744073709551615i128);
        assert_eq!(number.value(1), 7);
        let user = batch.column_by_name("user").unwrap();
        let user = user.as_any().downcast_ref::<StructArray>().unwrap();
        assert_eq!(
            user.column_by_name("login")
                .unwrap()
                .as_string::<i32>()
                .value(1),
            "hubot"
        );
        assert!(user.column_by_name("site_admin").unwrap().is_null(0));
        let labels = batch.column_by_name("labels").unwrap();
        let labels = labels.as_any().downcast_ref::<ListArray>().unwrap();
        assert_eq!(labels.value_length(0), 1);
        assert_eq!(labels.value_length(1), 0);
        let created = batch.column_by_name("created_at").unwrap();
        let created = created
            .as_any()
            .downcast_ref::<TimestampMicrosecondArray>()
            .unwrap();
        assert_eq!(created.value(0), 1_303_479_228_000_000);
        let closed = batch.column_by_name("closed_at").unwrap();
        assert!(closed.is_null(0));
        assert_eq!(closed.data_type(), &timestamp_type());
        // 19.99 and 5: exact decimal(38, 2), never float64.
        let price = batch.column_by_name("price").unwrap();
        assert_eq!(price.data_type(), &DataType::Decimal128(38, 2));
        let price = price.as_any().downcast_ref::<Decimal128Array>().unwrap();
        assert_eq!((price.value(0), price.value(1)), (1999, 500));
        // The same shape again decodes on the fast path with no change.
        let (again, change) = b.decode(page).unwrap();
        assert_eq!(again.unwrap().num_rows(), 2);
        assert!(change.is_none());
    }

    #[test]
    fn a_renamed_field_is_a_new_column_and_conflicts_widen_to_text() {
        let mut b = JsonBatcher::new(vec![], None, SchemaPolicy::default());
        b.decode(br#"[{"id": 1, "amount": 100, "meta": {"a": 1}}]"#)
            .unwrap();
        let (batch, change) = b
            .decode(br#"[{"id": "ch_2", "total": 5, "meta": "plain", "amount": 7}]"#)
            .unwrap();
        let change = change.unwrap();
        assert_eq!(change.added, vec!["total".to_string()]);
        let widened: Vec<&str> = change.widened.iter().map(|w| w.0.as_str()).collect();
        assert_eq!(widened, ["id", "meta"]);
        let batch = batch.unwrap();
        assert_eq!(
            batch
                .column_by_name("id")
                .unwrap()
                .as_string::<i32>()
                .value(0),
            "ch_2"
        );
        assert_eq!(
            batch
                .column_by_name("meta")
                .unwrap()
                .as_string::<i32>()
                .value(0),
            "plain"
        );
        // Old values of a widened column keep their text on the next page.
        let (batch, _) = b
            .decode(br#"[{"id": 3, "meta": {"a": [1, "x\"y"]}}]"#)
            .unwrap();
        let batch = batch.unwrap();
        assert_eq!(
            batch
                .column_by_name("id")
                .unwrap()
                .as_string::<i32>()
                .value(0),
            "3"
        );
        assert_eq!(
            batch
                .column_by_name("meta")
                .unwrap()
                .as_string::<i32>()
                .value(0),
            r#"{"a":[1,"x\"y"]}"#
        );
        let amount = batch.column_by_name("amount").unwrap();
        assert!(
            amount
                .as_any()
                .downcast_ref::<Int64Array>()
                .unwrap()
                .is_null(0)
        );
    }

    #[test]
    fn fail_policy_names_the_field_and_json_policy_keeps_nested_as_text() {
        let mut b = JsonBatcher::new(
            vec![],
            None,
            SchemaPolicy {
                conflict: ConflictPolicy::Fail,
                ..SchemaPolicy::default()
            },
        );
        b.decode(br#"{"id": 1, "user": {"id": 5}}"#).unwrap();
        let err = b.decode(br#"{"id": 2, "user": {"id": "x"}}"#).unwrap_err();
        assert!(
            err.to_string().contains("field `user.id` was Int64"),
            "{err}"
        );

        let mut b = JsonBatcher::new(
            vec![],
            None,
            SchemaPolicy {
                nested: NestedPolicy::Json,
                ..SchemaPolicy::default()
            },
        );
        let (batch, _) = b
            .decode(br#"[{"id": 1, "user": {"login": "a\nb"}, "tags": [1, 2.5, null]}]"#)
            .unwrap();
        let batch = batch.unwrap();
        let user = batch.column_by_name("user").unwrap();
        let user: &StringArray = user.as_string::<i32>();
        assert_eq!(user.value(0), r#"{"login":"a\nb"}"#);
        assert_eq!(
            batch
                .column_by_name("tags")
                .unwrap()
                .as_string::<i32>()
                .value(0),
            "[1,2.5,null]"
        );
    }

    #[test]
    fn declared_decimals_are_exact_and_malformed_pages_are_errors() {
        let declared = vec![
            declared_type("amount", "decimal(18,2)").unwrap(),
            declared_type("created", "unix_timestamp").unwrap(),
        ];
        let mut b = JsonBatcher::new(declared, None, SchemaPolicy::default());
        let (batch, _) = b
            .decode(br#"[{"amount": 1234567890123.45, "created": 1680000000}]"#)
            .unwrap();
        let batch = batch.unwrap();
        let amount = batch.column_by_name("amount").unwrap();
        let amount = amount.as_any().downcast_ref::<Decimal128Array>().unwrap();
        assert_eq!(amount.value(0), 123_456_789_012_345);
        assert_eq!(
            batch.column_by_name("created").unwrap().data_type(),
            &DataType::Timestamp(TimeUnit::Second, Some("+00:00".into()))
        );
        let err = b.decode(br#"[{"amount": 1}, {"amount": "#).unwrap_err();
        assert!(matches!(err, JsonError::Malformed(_)), "{err}");
        let err = b.decode(br#"[{"amount": "not money"}]"#).unwrap_err();
        assert!(err.to_string().contains("not money"), "{err}");
        assert!(declared_type("x", "decimal(40,2)").is_err());
    }

    /// The page through the batcher, made landable, through Parquet and back.
    fn land(b: &mut JsonBatcher, page: &[u8]) -> RecordBatch {
        let (batch, _) = b.decode(page).unwrap();
        let batch = landable(batch.unwrap()).unwrap();
        let mut buf = Vec::new();
        let mut w = parquet::arrow::ArrowWriter::try_new(&mut buf, batch.schema(), None).unwrap();
        w.write(&batch).unwrap();
        w.close().unwrap();
        let mut r = parquet::arrow::arrow_reader::ParquetRecordBatchReaderBuilder::try_new(
            bytes::Bytes::from(buf),
        )
        .unwrap()
        .build()
        .unwrap();
        let back = r.next().unwrap().unwrap();
        assert_eq!(back.num_rows(), batch.num_rows());
        back
    }

    fn text(batch: &RecordBatch, name: &str, row: usize) -> Option<String> {
        let col = batch.column_by_name(name).unwrap();
        (!col.is_null(row)).then(|| col.as_string::<i32>().value(row).to_string())
    }

    fn decimal(batch: &RecordBatch, name: &str) -> (DataType, Vec<Option<i128>>) {
        let col = batch.column_by_name(name).unwrap();
        let values = col
            .as_any()
            .downcast_ref::<Decimal128Array>()
            .unwrap()
            .iter()
            .collect();
        (col.data_type().clone(), values)
    }

    #[test]
    fn empty_objects_and_lists_land_in_parquet_and_fill_in_on_a_later_page() {
        // Stripe's own charge and invoice examples: `fraud_details: {}`, and
        // `lines.data[].metadata: {}`; before, Parquet refused the empty structs.
        let mut b = JsonBatcher::new(vec![], None, SchemaPolicy::default());
        let back = land(
            &mut b,
            br#"[{"id": "ch_1", "fraud_details": {}, "refunds": [], "outcome": null,
                  "lines": {"data": [{"id": "il_1", "metadata": {}, "tax_rates": []}]}}]"#,
        );
        assert!(back.column_by_name("fraud_details").is_none());
        assert!(back.column_by_name("refunds").is_none());
        assert!(back.column_by_name("outcome").is_none());
        let lines = back.column_by_name("lines").unwrap().as_struct();
        let data = lines.column_by_name("data").unwrap().as_list::<i32>();
        let item = data.value(0);
        let item = item.as_struct();
        assert_eq!(
            item.column_by_name("id")
                .unwrap()
                .as_string::<i32>()
                .value(0),
            "il_1"
        );
        assert!(item.column_by_name("metadata").is_none());
        // The schema keeps them, so the next page's values widen them.
        assert_eq!(
            untyped_paths(b.schema()),
            [
                "fraud_details",
                "refunds[]",
                "outcome",
                "lines.data[].metadata",
                "lines.data[].tax_rates[]"
            ]
        );
        let (_, change) = b
            .decode(br#"[{"id": "ch_2", "fraud_details": {"stripe_report": "fraudulent"},
                         "refunds": [{"id": "re_1"}], "outcome": {"type": "authorized"},
                         "lines": {"data": [{"id": "il_2", "metadata": {"k": "v"}, "tax_rates": []}]}}]"#)
            .unwrap();
        let change = change.unwrap();
        assert!(
            change
                .added
                .contains(&"fraud_details.stripe_report".to_string()),
            "{change:?}"
        );
        assert!(
            change.widened.iter().any(|w| w.0 == "outcome"),
            "{change:?}"
        );
        assert_eq!(change.untyped, ["lines.data[].tax_rates[]"]);
        // And once typed, `{}` and `[]` land as they are.
        let back = land(
            &mut b,
            br#"[{"id": "ch_3", "fraud_details": {}, "refunds": [], "outcome": null,
                  "lines": {"data": [{"id": "il_3", "metadata": {}, "tax_rates": []}]}}]"#,
        );
        let fraud = back.column_by_name("fraud_details").unwrap().as_struct();
        assert!(fraud.is_valid(0) && fraud.column(0).is_null(0));
        let refunds = back.column_by_name("refunds").unwrap().as_list::<i32>();
        assert!(refunds.is_valid(0) && refunds.value_length(0) == 0);
    }

    #[test]
    fn numbers_are_exact_never_truncated_rounded_or_float() {
        let mut b = JsonBatcher::new(vec![], None, SchemaPolicy::default());
        land(&mut b, br#"[{"n": 1, "d": 12.50, "big": 1}]"#);
        assert_eq!(
            decimal(&land(&mut b, br#"[{"d": 0.10}]"#), "d").1,
            [Some(10)]
        );
        // 1.5 into the int64 column: arrow-json's own decoder makes it 1.
        let back = land(&mut b, br#"[{"n": 1.5}, {"n": 7}]"#);
        assert_eq!(
            decimal(&back, "n"),
            (DataType::Decimal128(38, 1), vec![Some(15), Some(70)])
        );
        // 1.005 into decimal(38, 2): arrow-json's own decoder rounds it to 1.01.
        let back = land(&mut b, br#"[{"d": 1.005}]"#);
        assert_eq!(
            decimal(&back, "d"),
            (DataType::Decimal128(38, 3), vec![Some(1005)])
        );
        let back = land(&mut b, br#"[{"d": 12345678901234567890.12, "n": -0}]"#);
        assert_eq!(
            decimal(&back, "d").1,
            [Some(12_345_678_901_234_567_890_120)]
        );
        // No decimal(38, s) holds these: text, each value as its original literal.
        let back = land(
            &mut b,
            br#"[{"big": 123456789012345678901234567890123456789}, {"big": 1e400}, {"big": 2}, {"big": 0.1000}]"#,
        );
        assert_eq!(
            (0..4)
                .map(|i| text(&back, "big", i).unwrap())
                .collect::<Vec<_>>(),
            [
                "123456789012345678901234567890123456789",
                "1e400",
                "2",
                "0.1000"
            ]
        );
        assert!(
            b.schema()
                .fields()
                .iter()
                .all(|f| f.data_type() != &DataType::Float64)
        );
    }

    #[test]
    fn a_float64_column_of_a_landed_schema_is_reinferred_exactly() {
        let prior = Schema::new(vec![
            Field::new("id", DataType::Int64, true),
            Field::new("price", DataType::Float64, true),
        ]);
        let declared = vec![declared_type("ratio", "float64").unwrap()];
        let mut b = JsonBatcher::new(declared, Some(prior), SchemaPolicy::default());
        let (batch, change) = b
            .decode(br#"[{"id": 1, "price": 19.99, "ratio": 0.5}]"#)
            .unwrap();
        let change = change.unwrap();
        assert_eq!(
            change.widened,
            [(
                "price".to_string(),
                "Float64".to_string(),
                "Decimal128(38, 2)".to_string()
            )]
        );
        let batch = batch.unwrap();
        assert_eq!(decimal(&batch, "price").1, [Some(1999)]);
        // A declared float64 stays one.
        assert_eq!(
            batch.column_by_name("ratio").unwrap().data_type(),
            &DataType::Float64
        );
    }

    #[test]
    fn timestamps_are_inferred_only_when_exact_and_numbers_are_not_epochs() {
        let mut b = JsonBatcher::new(vec![], None, SchemaPolicy::default());
        land(
            &mut b,
            br#"[{"t": "2011-04-22T13:33:48Z", "u": "2011-04-22T13:33:48.123456+00:00"}]"#,
        );
        assert_eq!(
            b.schema().field_with_name("u").unwrap().data_type(),
            &timestamp_type()
        );
        let back = land(
            &mut b,
            br#"[{"t": 5, "u": "2011-04-22T13:33:48.123456789Z", "o": "2011-04-22T15:33:48+02:00"}]"#,
        );
        assert_eq!(text(&back, "t", 0).unwrap(), "5");
        assert_eq!(
            text(&back, "u", 0).unwrap(),
            "2011-04-22T13:33:48.123456789Z"
        );
        assert_eq!(text(&back, "o", 0).unwrap(), "2011-04-22T15:33:48+02:00");
    }

    #[test]
    fn keys_engines_cannot_take_make_their_object_text_and_deep_values_are_text() {
        let mut b = JsonBatcher::new(vec![], None, SchemaPolicy::default());
        let long = "k".repeat(300);
        let page = format!(
            r#"[{{"a.b c": 1, "m": {{"": 1}}, "c": {{"id": 1, "ID": 2}}, "l": {{"{long}": true}},
                 "ok": {{"x.y": 1, "dup": 1, "dup": 2}}}}]"#
        );
        let back = land(&mut b, page.as_bytes());
        assert_eq!(
            back.column_by_name("a.b c")
                .unwrap()
                .as_primitive::<arrow_array::types::Int64Type>()
                .value(0),
            1
        );
        assert_eq!(text(&back, "m", 0).unwrap(), r#"{"":1}"#);
        assert_eq!(text(&back, "c", 0).unwrap(), r#"{"id":1,"ID":2}"#);
        assert_eq!(
            text(&back, "l", 0).unwrap(),
            format!(r#"{{"{long}":true}}"#)
        );
        let ok = back.column_by_name("ok").unwrap().as_struct();
        assert_eq!(
            ok.column_by_name("dup")
                .unwrap()
                .as_primitive::<arrow_array::types::Int64Type>()
                .value(0),
            2
        );
        assert!(ok.column_by_name("x.y").is_some());

        // Each record fine, the two spellings across records: text as well.
        let mut b = JsonBatcher::new(vec![], None, SchemaPolicy::default());
        let back = land(&mut b, br#"[{"m": {"id": 1}}, {"m": {"ID": 2}}]"#);
        assert_eq!(text(&back, "m", 1).unwrap(), r#"{"ID":2}"#);

        // Deeper than MAX_NESTING lands as text from there; a very deep value does not
        // overflow the stack.
        for depth in [MAX_NESTING + 5, 100_000] {
            let mut b = JsonBatcher::new(vec![], None, SchemaPolicy::default());
            let deep = format!("{}1{}", "[".repeat(depth), "]".repeat(depth));
            let back = land(&mut b, format!(r#"[{{"deep": {deep}}}]"#).as_bytes());
            let mut col = back.column_by_name("deep").unwrap().clone();
            let mut levels = 0;
            while let DataType::List(_) = col.data_type() {
                col = col.as_list::<i32>().value(0);
                levels += 1;
            }
            assert_eq!(levels, MAX_NESTING);
            let rest = depth - MAX_NESTING;
            assert_eq!(
                col.as_string::<i32>().value(0),
                format!("{}1{}", "[".repeat(rest), "]".repeat(rest))
            );
        }
    }
}
