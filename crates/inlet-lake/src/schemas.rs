//! Schema records: every distinct schema a stream has landed, oldest first, and the first
//! date it landed. What a catalog table of the stream is built from.

use std::sync::Arc;

use arrow_schema::{Schema, SchemaRef};
use bytes::Bytes;
use chrono::{DateTime, NaiveDate, NaiveDateTime, Utc};
use serde::{Deserialize, Serialize};

use crate::{LakeError, Storage, layout};

/// `_inlet/connections/<source>/schemas/<stream>.json`: every distinct schema (by
/// `inlet_core::schema::fingerprint`) a stream has landed, oldest first, and its first
/// extraction date. Written by the runtime after each committed stream.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct SchemaRecord {
    /// The stream.
    pub stream: String,
    /// The earliest extraction date (partition) any file of the stream has.
    pub first_date: NaiveDate,
    /// Every distinct schema, oldest first; never empty.
    pub versions: Vec<SchemaVersion>,
    /// The stream's primary key as the source declared it at the last record (empty:
    /// none, or not known, as after a [`SchemaStore::scan`]).
    #[serde(default)]
    pub primary_key: Vec<String>,
}

/// One schema a stream landed.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct SchemaVersion {
    /// 1, 2, ... in the order they landed.
    pub version: u64,
    /// `inlet_core::schema::fingerprint` of `schema`.
    pub fingerprint: String,
    /// The schema as written, lineage columns and field metadata (`pg_type`) included.
    pub schema: Schema,
    /// The run that first landed it.
    pub run_id: String,
    /// When it was first recorded.
    pub at: DateTime<Utc>,
}

impl SchemaRecord {
    /// The newest schema.
    pub fn latest(&self) -> &SchemaVersion {
        // `versions` is never empty: `record` and `scan` build it with at least one, and
        // `load` refuses a record without.
        &self.versions[self.versions.len() - 1]
    }

    /// A record whose first version is `schema`.
    fn first(
        stream: &str,
        schema: &Schema,
        date: NaiveDate,
        run_id: &str,
        at: DateTime<Utc>,
    ) -> SchemaRecord {
        let mut r = SchemaRecord {
            stream: stream.to_string(),
            first_date: date,
            versions: Vec::new(),
            primary_key: Vec::new(),
        };
        r.add(schema, date, run_id, at);
        r
    }

    /// Add `schema` as a new version unless its fingerprint is known; keep the earliest
    /// date. Returns whether anything changed.
    fn add(&mut self, schema: &Schema, date: NaiveDate, run_id: &str, at: DateTime<Utc>) -> bool {
        let mut changed = false;
        if date < self.first_date {
            self.first_date = date;
            changed = true;
        }
        let fingerprint = inlet_core::schema::fingerprint(schema);
        if !self.versions.iter().any(|v| v.fingerprint == fingerprint) {
            self.versions.push(SchemaVersion {
                version: self.versions.len() as u64 + 1,
                fingerprint,
                schema: schema.clone(),
                run_id: run_id.to_string(),
                at,
            });
            changed = true;
        }
        changed
    }
}

/// Reads and writes schema records. Only the holder of a connection's lease (the
/// runtime, in a run) SHOULD call [`SchemaStore::record`].
#[derive(Debug, Clone)]
pub struct SchemaStore {
    storage: Arc<dyn Storage>,
}

impl SchemaStore {
    /// A store over a lake.
    pub fn new(storage: Arc<dyn Storage>) -> Self {
        SchemaStore { storage }
    }

    /// The record of a stream; `None` when there is none yet.
    pub async fn load(
        &self,
        source: &str,
        stream: &str,
    ) -> Result<Option<SchemaRecord>, LakeError> {
        let key = layout::schema_key(source, stream);
        let Some((bytes, _)) = self.storage.get(&key).await? else {
            return Ok(None);
        };
        let record: SchemaRecord =
            serde_json::from_slice(&bytes).map_err(|e| LakeError::Corrupt {
                resource: key.clone(),
                message: format!("{e}; delete it and run `inlet catalog ddl` (it scans the files) or the next sync to rebuild it"),
            })?;
        if record.versions.is_empty() {
            return Err(LakeError::Corrupt {
                resource: key,
                message: "a schema record without versions; delete it to rebuild it".into(),
            });
        }
        Ok(Some(record))
    }

    /// The streams of a source that have a schema record.
    pub async fn streams(&self, source: &str) -> Result<Vec<String>, LakeError> {
        let prefix = layout::schemas_prefix(source);
        Ok(self
            .storage
            .list(&prefix)
            .await?
            .into_iter()
            .filter_map(|o| {
                o.key
                    .strip_prefix(&prefix)
                    .and_then(|k| k.strip_suffix(".json"))
                    .map(str::to_string)
            })
            .collect())
    }

    /// Add what a run landed: each schema (as written) whose fingerprint is new becomes a
    /// version; `first_date` stays the earliest. Writes only when something changed.
    pub async fn record(
        &self,
        source: &str,
        stream: &str,
        schemas: &[SchemaRef],
        first_date: NaiveDate,
        run_id: &str,
    ) -> Result<SchemaRecord, LakeError> {
        self.record_keyed(source, stream, schemas, first_date, run_id, None)
            .await
    }

    /// [`SchemaStore::record`], also setting the stream's primary key (`None` keeps it).
    pub async fn record_keyed(
        &self,
        source: &str,
        stream: &str,
        schemas: &[SchemaRef],
        first_date: NaiveDate,
        run_id: &str,
        primary_key: Option<&[String]>,
    ) -> Result<SchemaRecord, LakeError> {
        let now = Utc::now();
        let existing = match self.load(source, stream).await {
            Ok(r) => r,
            // A damaged record is rebuilt from what this run landed (and `scan` repairs
            // the rest): better a partial record than none.
            Err(LakeError::Corrupt { resource, message }) => {
                tracing::warn!(%resource, %message, "replacing a damaged schema record");
                None
            }
            Err(e) => return Err(e),
        };
        let (mut record, mut changed) = match existing {
            Some(r) => (r, false),
            None => {
                let Some(first) = schemas.first() else {
                    return Err(LakeError::Invalid(format!(
                        "{source}/{stream}: no schema to record"
                    )));
                };
                let r = SchemaRecord::first(stream, first, first_date, run_id, now);
                (r, true)
            }
        };
        for schema in schemas {
            changed |= record.add(schema, first_date, run_id, now);
        }
        if let Some(key) = primary_key
            && record.primary_key != key
        {
            record.primary_key = key.to_vec();
            changed = true;
        }
        if changed {
            self.save(source, &record).await?;
        }
        Ok(record)
    }

    async fn save(&self, source: &str, record: &SchemaRecord) -> Result<(), LakeError> {
        let key = layout::schema_key(source, &record.stream);
        let bytes = serde_json::to_vec_pretty(record)
            .map_err(|e| LakeError::Invalid(format!("{key}: {e}")))?;
        self.storage.put(&key, Bytes::from(bytes)).await?;
        Ok(())
    }

    /// For lakes landed before schema records: read the footers of the stream's files
    /// (oldest first) and build the record they imply. It reads each whole file (the
    /// storage has no ranged read); the result is not saved. `None` without files.
    pub async fn scan(
        &self,
        source: &str,
        stream: &str,
    ) -> Result<Option<SchemaRecord>, LakeError> {
        let prefix = layout::stream_prefix(source, stream);
        let mut record: Option<SchemaRecord> = None;
        for object in self.storage.list(&prefix).await? {
            if !object.key.ends_with(".parquet") {
                continue;
            }
            let Some(date) = partition_date(&object.key) else {
                continue;
            };
            let Some((bytes, _)) = self.storage.get(&object.key).await? else {
                continue;
            };
            let (schema, run_id) = footer(&object.key, bytes)?;
            let at = run_time(&run_id)
                .unwrap_or_else(|| date.and_time(chrono::NaiveTime::MIN).and_utc());
            match record.as_mut() {
                Some(r) => {
                    r.add(&schema, date, &run_id, at);
                }
                None => record = Some(SchemaRecord::first(stream, &schema, date, &run_id, at)),
            }
        }
        Ok(record)
    }
}

/// `extracted_at=YYYY-MM-DD` of a data file's key.
fn partition_date(key: &str) -> Option<NaiveDate> {
    key.split('/')
        .find_map(|part| part.strip_prefix("extracted_at="))
        .and_then(|d| NaiveDate::parse_from_str(d, "%Y-%m-%d").ok())
}

/// The start time a run id begins with (`20261103T101500Z-...`).
fn run_time(run_id: &str) -> Option<DateTime<Utc>> {
    let stamp = run_id.get(..16)?;
    NaiveDateTime::parse_from_str(stamp, "%Y%m%dT%H%M%SZ")
        .ok()
        .map(|t| t.and_utc())
}

/// The Arrow schema (with field metadata, from the embedded Arrow schema) and run of a file.
fn footer(key: &str, bytes: Bytes) -> Result<(Schema, String), LakeError> {
    let corrupt = |message: String| LakeError::Corrupt {
        resource: key.to_string(),
        message,
    };
    let metadata = parquet::file::metadata::ParquetMetaDataReader::new()
        .parse_and_finish(&bytes)
        .map_err(|e| corrupt(format!("not a Parquet file: {e}")))?;
    let file = metadata.file_metadata();
    let schema =
        parquet::arrow::parquet_to_arrow_schema(file.schema_descr(), file.key_value_metadata())
            .map_err(|e| corrupt(format!("its schema has no Arrow form: {e}")))?;
    let run_id = file
        .key_value_metadata()
        .and_then(|kv| kv.iter().find(|e| e.key == "inlet.run_id"))
        .and_then(|e| e.value.clone())
        .unwrap_or_default();
    // The file-level metadata names the run and stream; the record keeps only fields.
    let schema = Schema::new(schema.fields().clone());
    Ok((schema, run_id))
}

#[cfg(test)]
mod tests {
    use std::collections::HashMap;

    use arrow_array::{Int64Array, RecordBatch, StringArray};
    use arrow_schema::{DataType, Field};

    use super::*;
    use crate::{LocalStorage, StreamWriter, WriterOptions};

    fn schema(extra: bool) -> SchemaRef {
        let mut fields =
            vec![
                Field::new("id", DataType::Int64, false).with_metadata(HashMap::from([(
                    "pg_type".to_string(),
                    "bigint".to_string(),
                )])),
            ];
        if extra {
            fields.push(Field::new("name", DataType::Utf8, true));
        }
        Arc::new(Schema::new(fields))
    }

    fn date(s: &str) -> NaiveDate {
        NaiveDate::parse_from_str(s, "%Y-%m-%d").unwrap()
    }

    #[tokio::test]
    async fn versions_are_added_only_for_new_fingerprints() {
        let dir = tempfile::tempdir().unwrap();
        let storage: Arc<dyn Storage> = Arc::new(LocalStorage::new(dir.path()).unwrap());
        let store = SchemaStore::new(storage);
        assert!(store.load("src", "st").await.unwrap().is_none());
        let r = store
            .record("src", "st", &[schema(false)], date("2026-11-03"), "r1")
            .await
            .unwrap();
        assert_eq!(r.versions.len(), 1);
        let key = vec!["id".to_string()];
        let r = store
            .record_keyed(
                "src",
                "st",
                &[schema(false), schema(true)],
                date("2026-11-01"),
                "r2",
                Some(&key),
            )
            .await
            .unwrap();
        assert_eq!(r.versions.len(), 2);
        assert_eq!(r.first_date, date("2026-11-01"));
        let again = store
            .record("src", "st", &[schema(true)], date("2026-11-05"), "r3")
            .await
            .unwrap();
        assert_eq!(again, r, "a known schema and a later date change nothing");
        let loaded = store.load("src", "st").await.unwrap().unwrap();
        assert_eq!(loaded, r);
        assert_eq!(loaded.primary_key, key);
        assert_eq!(loaded.latest().version, 2);
        assert_eq!(loaded.latest().run_id, "r2");
        assert_eq!(
            loaded.versions[0]
                .schema
                .field(0)
                .metadata()
                .get("pg_type")
                .map(String::as_str),
            Some("bigint"),
            "field metadata survives"
        );
    }

    #[tokio::test]
    async fn a_scan_reads_what_the_files_hold() {
        let dir = tempfile::tempdir().unwrap();
        let storage: Arc<dyn Storage> = Arc::new(LocalStorage::new(dir.path()).unwrap());
        let store = SchemaStore::new(storage.clone());
        assert!(store.scan("src", "st").await.unwrap().is_none());
        let mut written = Vec::new();
        for (run, extra, at) in [
            ("20261103T100000Z-aaaaaaaa", false, "2026-11-03T10:00:00Z"),
            ("20261104T100000Z-bbbbbbbb", true, "2026-11-04T10:00:00Z"),
        ] {
            let mut w = StreamWriter::new(
                storage.clone(),
                "src",
                "st",
                run,
                WriterOptions::default(),
                0,
            );
            let s = schema(extra);
            let mut columns: Vec<arrow_array::ArrayRef> =
                vec![Arc::new(Int64Array::from(vec![1, 2]))];
            if extra {
                columns.push(Arc::new(StringArray::from(vec!["a", "b"])));
            }
            let batch = RecordBatch::try_new(s, columns).unwrap();
            let at = DateTime::parse_from_rfc3339(at).unwrap().to_utc();
            w.write(&batch, at).await.unwrap();
            for staged in w.take_staged().await.unwrap() {
                storage.publish(&staged).await.unwrap();
            }
            written.extend(w.written());
        }
        let r = store.scan("src", "st").await.unwrap().unwrap();
        assert_eq!(r.first_date, date("2026-11-03"));
        assert_eq!(r.versions.len(), 2);
        assert_eq!(r.versions[1].run_id, "20261104T100000Z-bbbbbbbb");
        let names: Vec<&str> = r
            .latest()
            .schema
            .fields()
            .iter()
            .map(|f| f.name().as_str())
            .collect();
        assert_eq!(
            names,
            ["id", "name", "_inlet_extracted_at", "_inlet_run_id"]
        );
        assert_eq!(
            r.versions[0]
                .schema
                .field(0)
                .metadata()
                .get("pg_type")
                .map(String::as_str),
            Some("bigint")
        );
        // What the writer reports it wrote is what the scan finds.
        assert_eq!(written.len(), 2);
        for ((schema, day), version) in written.iter().zip(&r.versions) {
            assert_eq!(inlet_core::schema::fingerprint(schema), version.fingerprint);
            assert!(*day >= r.first_date);
        }
    }
}
