//! JSON records to Arrow, fast, with a schema that evolves by a documented policy.
//!
//! Pages are decoded by arrow-json's tape decoder straight into typed Arrow builders (no
//! `serde_json::Value` per record). The decoder runs in strict mode, so a field the schema
//! does not know, or a value that does not fit its column, fails the page instead of being
//! dropped or nulled; only then is the page parsed a second time to infer what changed,
//! the schema is widened, and the page is decoded again with the new schema.
//!
//! # Evolution policy
//!
//! - A new field becomes a new nullable column (nested: a new struct child). Earlier
//!   batches do not have it; readers see null for them.
//! - Types are inferred from values: `true`/`false` → boolean, integers → int64, integers
//!   beyond int64 → decimal(38,0), other numbers → float64, strings in RFC 3339 date-time
//!   form → timestamp(µs, UTC), other strings → utf8, objects → struct (or JSON text under
//!   `nested = "json"`), arrays → list of the merged element type.
//! - null alone says nothing: the column is `null` typed until a value arrives.
//! - Widening: int64 + float64 → float64; int64 + decimal → decimal; timestamp + other
//!   string → utf8; struct + struct → the union of their fields; list + list → list of
//!   the widened element.
//! - Any other conflict (a string where a number was, an object where a string was),
//!   under `type_conflict = "widen"` (default), turns the column into utf8 holding strings
//!   as they are and every other value as its JSON text, so nothing is lost; under
//!   `type_conflict = "fail"` the read stops with the field's path and both types.
//! - Declared columns keep their declared type; a value that does not fit fails the page.

use std::{collections::HashMap, fmt::Write, sync::Arc};

use arrow_array::{ArrayRef, RecordBatch, builder::StringBuilder};
use arrow_json::{
    ReaderBuilder,
    reader::{ArrayDecoder, Decoder, DecoderContext, DecoderFactory, Tape, TapeElement},
};
use arrow_schema::{ArrowError, DataType, Field, FieldRef, Fields, Schema, SchemaRef, TimeUnit};
use serde::Deserialize;
use serde_json::Value;

/// Field metadata marking a utf8 column that holds values as text (strings as they are,
/// anything else as JSON text).
pub const TEXT_ENCODING_KEY: &str = "inlet.encoding";

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
            .map(|f| (f.name().clone(), Arc::new(f)))
            .collect();
        let mut fields: Vec<FieldRef> = prior
            .map(|s| s.fields().iter().cloned().collect())
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
        }
    }

    /// The schema so far.
    pub fn schema(&self) -> &SchemaRef {
        &self.schema
    }

    /// Decode `json`: an array of objects (one row each) or one object. Returns the batch
    /// (`None` for an empty page) and the schema change it needed, if any.
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
        let value: Value =
            serde_json::from_slice(json).map_err(|e| JsonError::Malformed(e.to_string()))?;
        let records: Vec<&serde_json::Map<String, Value>> = match &value {
            Value::Array(items) => items
                .iter()
                .enumerate()
                .map(|(i, v)| {
                    v.as_object().ok_or_else(|| {
                        JsonError::Malformed(format!("record {i} is not a JSON object"))
                    })
                })
                .collect::<Result<_, _>>()?,
            Value::Object(map) => vec![map],
            Value::Null => vec![],
            _ => return Err(JsonError::Malformed("records are not JSON objects".into())),
        };
        if records.is_empty() {
            return Ok((None, None));
        }
        let mut fields: Vec<FieldRef> = self.schema.fields().iter().cloned().collect();
        for record in &records {
            merge_object(&mut fields, record, self.policy, "", &self.declared)?;
        }
        let next = Arc::new(Schema::new(fields));
        let change = diff(&self.schema, &next);
        if next == self.schema {
            let detail = first_error.map(|e| e.to_string()).unwrap_or_default();
            return Err(JsonError::Conflict(describe_arrow_error(&detail)));
        }
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
                .with_decoder_factory(Arc::new(TextFactory))
                .build_decoder()?;
            self.decoder = Some(DecoderHolder(decoder));
        }
        let Some(DecoderHolder(decoder)) = self.decoder.as_mut() else {
            return Ok(None);
        };
        let result = (|| {
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
                _ => arrow_select_concat(&batches).map(Some),
            }
        })();
        if result.is_err() {
            self.decoder = None;
        }
        result
    }
}

fn arrow_select_concat(batches: &[RecordBatch]) -> Result<RecordBatch, ArrowError> {
    let schema = batches[0].schema();
    arrow_select::concat::concat_batches(&schema, batches)
}

fn describe_arrow_error(text: &str) -> String {
    text.strip_prefix("Json error: ")
        .unwrap_or(text)
        .to_string()
}

/// The type of a value under the policy. `LargeUtf8` is used in transit only, as the
/// marker of "keep as text"; fields carry that as metadata ([`field_of`]).
fn infer(value: &Value, policy: SchemaPolicy, path: &str) -> Result<DataType, JsonError> {
    Ok(match value {
        Value::Null => DataType::Null,
        Value::Bool(_) => DataType::Boolean,
        Value::Number(n) => {
            if n.is_i64() {
                DataType::Int64
            } else if n.is_u64() {
                DataType::Decimal128(38, 0)
            } else {
                DataType::Float64
            }
        }
        Value::String(s) => {
            if looks_like_timestamp(s) {
                timestamp_type()
            } else {
                DataType::Utf8
            }
        }
        Value::Object(map) => {
            if policy.nested == NestedPolicy::Json {
                return Ok(TEXT);
            }
            let mut fields = Vec::new();
            merge_object(&mut fields, map, policy, path, &HashMap::new())?;
            DataType::Struct(Fields::from(fields))
        }
        Value::Array(items) => {
            if policy.nested == NestedPolicy::Json {
                return Ok(TEXT);
            }
            let mut element = DataType::Null;
            let item_path = format!("{path}[]");
            for item in items {
                let t = infer(item, policy, &item_path)?;
                element = widen(&element, &t, policy, &item_path)?;
            }
            DataType::List(Arc::new(field_of("item", element)))
        }
    })
}

/// The in-transit marker of a text column.
const TEXT: DataType = DataType::LargeUtf8;

/// The timestamp type of inferred date-times.
pub fn timestamp_type() -> DataType {
    DataType::Timestamp(TimeUnit::Microsecond, Some("+00:00".into()))
}

fn looks_like_timestamp(s: &str) -> bool {
    // Cheap shape test before the parse: `YYYY-MM-DDTHH:MM:SS...`.
    let b = s.as_bytes();
    b.len() >= 20
        && b.len() <= 40
        && b[4] == b'-'
        && b[7] == b'-'
        && (b[10] == b'T' || b[10] == b't')
        && b[13] == b':'
        && chrono::DateTime::parse_from_rfc3339(s).is_ok()
}

fn is_text(field: &Field) -> bool {
    field.data_type() == &DataType::Utf8
        && field
            .metadata()
            .get(TEXT_ENCODING_KEY)
            .is_some_and(|v| v == "json")
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

/// Fold the fields of `record` into `fields`.
fn merge_object(
    fields: &mut Vec<FieldRef>,
    record: &serde_json::Map<String, Value>,
    policy: SchemaPolicy,
    prefix: &str,
    declared: &HashMap<String, FieldRef>,
) -> Result<(), JsonError> {
    for (name, value) in record {
        if prefix.is_empty() && declared.contains_key(name) {
            continue;
        }
        let path = if prefix.is_empty() {
            name.clone()
        } else {
            format!("{prefix}.{name}")
        };
        let t = infer(value, policy, &path)?;
        match fields.iter_mut().find(|f| f.name() == name) {
            Some(existing) => {
                if let Some(f) = merged_field(existing, &t, policy, &path)? {
                    *existing = Arc::new(f);
                }
            }
            None => fields.push(Arc::new(field_of(name, t))),
        }
    }
    Ok(())
}

/// The wider of two types, or the conflict policy's answer.
fn widen(
    a: &DataType,
    b: &DataType,
    policy: SchemaPolicy,
    path: &str,
) -> Result<DataType, JsonError> {
    use DataType as T;
    Ok(match (a, b) {
        (T::Null, t) | (t, T::Null) => t.clone(),
        (x, y) if x == y => x.clone(),
        (T::LargeUtf8, _) | (_, T::LargeUtf8) => TEXT,
        (T::Int64, T::Float64) | (T::Float64, T::Int64) => T::Float64,
        (T::Int64, d @ T::Decimal128(..)) | (d @ T::Decimal128(..), T::Int64) => d.clone(),
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
            T::Struct(Fields::from(fields))
        }
        (T::List(ea), T::List(eb)) => {
            let w = widen(&type_of(ea), &type_of(eb), policy, &format!("{path}[]"))?;
            T::List(Arc::new(field_of("item", w)))
        }
        (x, y) => match policy.conflict {
            ConflictPolicy::Widen => TEXT,
            ConflictPolicy::Fail => {
                return Err(JsonError::Conflict(format!(
                    "field `{path}` was {x} and now holds {y} (type_conflict = \"fail\"; set it to \"widen\" to keep such values as text, or declare the column)"
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

/// Builds the text decoder for text-marked utf8 fields.
#[derive(Debug)]
struct TextFactory;

impl DecoderFactory for TextFactory {
    fn make_default_decoder(
        &self,
        _ctx: &DecoderContext,
        field: &FieldRef,
        _is_nullable: bool,
    ) -> Result<Option<Box<dyn ArrayDecoder>>, ArrowError> {
        Ok(is_text(field).then(|| Box::new(TextDecoder) as Box<dyn ArrayDecoder>))
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

/// Write the JSON text of the value at `idx`; returns the index after it.
fn write_json(tape: &Tape<'_>, idx: u32, out: &mut String) -> Result<u32, ArrowError> {
    Ok(match tape.get(idx) {
        TapeElement::StartObject(end) => {
            out.push('{');
            let mut cur = idx + 1;
            let mut first = true;
            while cur < end {
                if !first {
                    out.push(',');
                }
                first = false;
                cur = write_json(tape, cur, out)?;
                out.push(':');
                cur = write_json(tape, cur, out)?;
            }
            out.push('}');
            end + 1
        }
        TapeElement::StartList(end) => {
            out.push('[');
            let mut cur = idx + 1;
            let mut first = true;
            while cur < end {
                if !first {
                    out.push(',');
                }
                first = false;
                cur = write_json(tape, cur, out)?;
            }
            out.push(']');
            end + 1
        }
        TapeElement::String(i) => {
            write_json_string(tape.get_string(i), out);
            idx + 1
        }
        TapeElement::Number(i) => {
            out.push_str(tape.get_string(i));
            idx + 1
        }
        TapeElement::True => {
            out.push_str("true");
            idx + 1
        }
        TapeElement::False => {
            out.push_str("false");
            idx + 1
        }
        TapeElement::Null => {
            out.push_str("null");
            idx + 1
        }
        TapeElement::I64(high) => {
            let low = match tape.get(idx + 1) {
                TapeElement::I32(low) => low,
                _ => return Err(tape.error(idx, "i64")),
            };
            let _ = write!(out, "{}", (i64::from(high) << 32) | i64::from(low as u32));
            idx + 2
        }
        TapeElement::I32(v) => {
            let _ = write!(out, "{v}");
            idx + 1
        }
        TapeElement::F64(high) => {
            let low = match tape.get(idx + 1) {
                TapeElement::F32(low) => low,
                _ => return Err(tape.error(idx, "f64")),
            };
            let _ = write!(
                out,
                "{}",
                f64::from_bits((u64::from(high) << 32) | u64::from(low))
            );
            idx + 2
        }
        TapeElement::F32(v) => {
            let _ = write!(out, "{}", f32::from_bits(v));
            idx + 1
        }
        TapeElement::EndObject(_) | TapeElement::EndList(_) => {
            return Err(tape.error(idx, "a value"));
        }
        _ => return Err(tape.error(idx, "a value")),
    })
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
                if p == 0 || p > 38 || i16::from(s) > i16::from(p) {
                    return Err(format!(
                        "`{other}`: precision 1..=38, scale at most precision"
                    ));
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
        assert_eq!(
            batch.column_by_name("price").unwrap().data_type(),
            &DataType::Float64
        );
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
}
