//! Arrow record batches of one stream into Parquet files of the raw layer.
//!
//! Files are zstd-compressed, partitioned by the UTC extraction date, rolled at a target
//! size, with row groups ended by size so memory stays bounded by the row group, not the
//! stream. Every row gets two lineage columns; every file carries key-value metadata.

use std::{
    io::Write,
    sync::{Arc, Mutex},
};

use arrow_array::{ArrayRef, RecordBatch, StringArray, TimestampMicrosecondArray};
use arrow_schema::{DataType, Field, Schema, SchemaRef, TimeUnit};
use bytes::Bytes;
use chrono::{DateTime, NaiveDate, Utc};
use parquet::{
    arrow::ArrowWriter,
    basic::{Compression, ZstdLevel},
    file::{metadata::KeyValue, properties::WriterProperties},
};
use serde_json::Value;

use crate::{LakeError, StagedObject, StagedUpload, Storage, layout};

/// Lineage column: when the row was extracted (UTC, microseconds).
pub const EXTRACTED_AT: &str = "_inlet_extracted_at";
/// Lineage column: the run that extracted the row.
pub const RUN_ID: &str = "_inlet_run_id";

/// How files are cut.
#[derive(Debug, Clone)]
pub struct WriterOptions {
    /// Roll to a new file once a file reaches this many bytes (default 128 MiB).
    pub target_file_bytes: u64,
    /// End a row group once its encoded size reaches this (default 64 MiB). Bounds memory.
    pub row_group_bytes: usize,
    /// End a row group after this many rows (default 1,048,576).
    pub row_group_rows: usize,
    /// zstd level (default 3).
    pub zstd_level: i32,
}

impl Default for WriterOptions {
    fn default() -> Self {
        WriterOptions {
            target_file_bytes: 128 * 1024 * 1024,
            row_group_bytes: 64 * 1024 * 1024,
            row_group_rows: 1024 * 1024,
            zstd_level: 3,
        }
    }
}

#[derive(Clone, Default)]
struct SharedBuffer(Arc<Mutex<Vec<u8>>>);

impl SharedBuffer {
    fn take(&self) -> Vec<u8> {
        std::mem::take(&mut *self.0.lock().unwrap_or_else(|e| e.into_inner()))
    }
}

impl Write for SharedBuffer {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.0
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .extend_from_slice(buf);
        Ok(buf.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

struct OpenFile {
    writer: ArrowWriter<SharedBuffer>,
    buffer: SharedBuffer,
    upload: Box<dyn StagedUpload>,
    date: NaiveDate,
    input_schema: SchemaRef,
    /// The schema the file is written with (lineage included).
    schema: SchemaRef,
    rows: u64,
    cursor_start: Option<Value>,
}

/// Writes one stream of one run. Files it closes are staged (durable, invisible) and
/// handed out by [`StreamWriter::take_staged`] for the runtime to commit.
pub struct StreamWriter {
    storage: Arc<dyn Storage>,
    source: String,
    stream: String,
    run_id: String,
    options: WriterOptions,
    open: Option<OpenFile>,
    staged: Vec<StagedObject>,
    next_file: u32,
    partition: usize,
    last_cursor: Option<Value>,
    written: Vec<(SchemaRef, NaiveDate)>,
}

impl std::fmt::Debug for StreamWriter {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("StreamWriter")
            .field("source", &self.source)
            .field("stream", &self.stream)
            .field("run_id", &self.run_id)
            .field("staged", &self.staged.len())
            .finish_non_exhaustive()
    }
}

impl StreamWriter {
    /// A writer for `source`/`stream` in run `run_id`. `partition` makes file names of
    /// several writers of one stream (parallel partitions) distinct.
    pub fn new(
        storage: Arc<dyn Storage>,
        source: &str,
        stream: &str,
        run_id: &str,
        options: WriterOptions,
        partition: usize,
    ) -> Self {
        StreamWriter {
            storage,
            source: source.to_string(),
            stream: stream.to_string(),
            run_id: run_id.to_string(),
            options,
            open: None,
            staged: Vec::new(),
            next_file: 0,
            partition,
            last_cursor: None,
            written: Vec::new(),
        }
    }

    /// Record the latest checkpoint; files record the cursor range they cover.
    pub fn note_checkpoint(&mut self, cursor: &Value) {
        self.last_cursor = Some(cursor.clone());
    }

    /// Bytes written to files not yet handed out (staged + open file).
    pub fn pending_bytes(&self) -> u64 {
        let staged: u64 = self.staged.iter().map(|s| s.size).sum();
        let open = self
            .open
            .as_ref()
            .map(|o| o.writer.bytes_written() as u64 + o.writer.in_progress_size() as u64)
            .unwrap_or(0);
        staged + open
    }

    /// Append a batch extracted at `extracted_at`.
    pub async fn write(
        &mut self,
        batch: &RecordBatch,
        extracted_at: DateTime<Utc>,
    ) -> Result<(), LakeError> {
        if batch.num_rows() == 0 {
            return Ok(());
        }
        let date = extracted_at.date_naive();
        let must_roll = self
            .open
            .as_ref()
            .is_some_and(|o| o.date != date || o.input_schema.fields() != batch.schema().fields());
        if must_roll {
            self.close_file().await?;
        }
        if self.open.is_none() {
            self.open_file(batch.schema(), date).await?;
        }
        let resource = format!("{}/{}", self.source, self.stream);
        let with_lineage = self.add_lineage(batch, extracted_at)?;
        let Some(open) = self.open.as_mut() else {
            return Err(LakeError::Invalid("no open file".into()));
        };
        open.writer
            .write(&with_lineage)
            .map_err(|e| LakeError::Parquet {
                resource: resource.clone(),
                message: e.to_string(),
            })?;
        open.rows += batch.num_rows() as u64;
        if open.writer.in_progress_size() >= self.options.row_group_bytes {
            open.writer.flush().map_err(|e| LakeError::Parquet {
                resource,
                message: e.to_string(),
            })?;
        }
        let bytes = open.buffer.take();
        if !bytes.is_empty() {
            open.upload.write(Bytes::from(bytes)).await?;
        }
        let size = open.writer.bytes_written() as u64 + open.writer.in_progress_size() as u64;
        if size >= self.options.target_file_bytes {
            self.close_file().await?;
        }
        Ok(())
    }

    /// Close the open file (if any) and hand out every staged file since the last call.
    pub async fn take_staged(&mut self) -> Result<Vec<StagedObject>, LakeError> {
        self.close_file().await?;
        Ok(std::mem::take(&mut self.staged))
    }

    /// The schema (as written, lineage included) and extraction date of every file this
    /// writer has closed, in order: what the runtime records in the
    /// [`crate::SchemaStore`] once they are committed.
    pub fn written(&self) -> Vec<(SchemaRef, NaiveDate)> {
        self.written.clone()
    }

    /// Drop the open file and every staged file not handed out.
    pub async fn abort(&mut self) {
        if let Some(open) = self.open.take() {
            open.upload.abort().await;
        }
        for staged in std::mem::take(&mut self.staged) {
            let _ = self.storage.discard(&staged).await;
        }
    }

    fn add_lineage(
        &self,
        batch: &RecordBatch,
        extracted_at: DateTime<Utc>,
    ) -> Result<RecordBatch, LakeError> {
        let n = batch.num_rows();
        let ts: ArrayRef = Arc::new(
            TimestampMicrosecondArray::from_value(extracted_at.timestamp_micros(), n)
                .with_timezone("UTC"),
        );
        let run: ArrayRef = Arc::new(StringArray::from_iter_values(std::iter::repeat_n(
            &self.run_id,
            n,
        )));
        let mut columns = batch.columns().to_vec();
        columns.push(ts);
        columns.push(run);
        RecordBatch::try_new(lineage_schema(&batch.schema())?, columns).map_err(|e| {
            LakeError::Parquet {
                resource: format!("{}/{}", self.source, self.stream),
                message: e.to_string(),
            }
        })
    }

    async fn open_file(
        &mut self,
        input_schema: SchemaRef,
        date: NaiveDate,
    ) -> Result<(), LakeError> {
        // Partitions of one run write side by side: their index keeps names distinct.
        let tag = match self.partition {
            0 => self.run_id.clone(),
            p => format!("{}-p{p}", self.run_id),
        };
        let key = layout::data_file(&self.source, &self.stream, date, &tag, self.next_file);
        self.next_file = self.next_file.checked_add(1).ok_or_else(|| {
            LakeError::Invalid(format!("{}: more than 2^32 files in one run", self.stream))
        })?;
        let schema = lineage_schema(&input_schema)?;
        let level =
            ZstdLevel::try_new(self.options.zstd_level).map_err(|e| LakeError::Parquet {
                resource: key.clone(),
                message: e.to_string(),
            })?;
        let props = WriterProperties::builder()
            .set_compression(Compression::ZSTD(level))
            .set_max_row_group_row_count(Some(self.options.row_group_rows))
            .set_key_value_metadata(Some(vec![
                KeyValue::new("inlet.source".into(), self.source.clone()),
                KeyValue::new("inlet.stream".into(), self.stream.clone()),
                KeyValue::new("inlet.run_id".into(), self.run_id.clone()),
                KeyValue::new(
                    "inlet.schema_fingerprint".into(),
                    inlet_core::schema::fingerprint(&input_schema),
                ),
                KeyValue::new(
                    "inlet.extracted_date".into(),
                    date.format("%Y-%m-%d").to_string(),
                ),
            ]))
            .build();
        let buffer = SharedBuffer::default();
        let writer =
            ArrowWriter::try_new(buffer.clone(), schema.clone(), Some(props)).map_err(|e| {
                LakeError::Parquet {
                    resource: key.clone(),
                    message: e.to_string(),
                }
            })?;
        let upload = self.storage.stage(&key).await?;
        self.open = Some(OpenFile {
            writer,
            buffer,
            upload,
            date,
            input_schema,
            schema,
            rows: 0,
            cursor_start: self.last_cursor.clone(),
        });
        Ok(())
    }

    async fn close_file(&mut self) -> Result<(), LakeError> {
        let Some(mut open) = self.open.take() else {
            return Ok(());
        };
        let resource = format!("{}/{}", self.source, self.stream);
        for (key, value) in [
            ("inlet.cursor_start", &open.cursor_start),
            ("inlet.cursor_end", &self.last_cursor),
        ] {
            if let Some(v) = value {
                open.writer
                    .append_key_value_metadata(KeyValue::new(key.into(), summarize_cursor(v)));
            }
        }
        open.writer
            .append_key_value_metadata(KeyValue::new("inlet.rows".into(), open.rows.to_string()));
        if let Err(e) = open.writer.finish() {
            open.upload.abort().await;
            return Err(LakeError::Parquet {
                resource,
                message: e.to_string(),
            });
        }
        let bytes = open.buffer.take();
        if !bytes.is_empty()
            && let Err(e) = open.upload.write(Bytes::from(bytes)).await
        {
            open.upload.abort().await;
            return Err(e);
        }
        let mut staged = open.upload.finish().await?;
        staged.rows = open.rows;
        self.written.push((open.schema, open.date));
        self.staged.push(staged);
        Ok(())
    }
}

/// A cursor for file metadata: the JSON itself when short, else its length and a digest
/// (a files source's state lists every file; it does not belong in every file footer).
fn summarize_cursor(v: &Value) -> String {
    let text = v.to_string();
    if text.len() <= 2048 {
        text
    } else {
        format!("{{\"summary\":\"{} bytes of state\"}}", text.len())
    }
}

/// The schema of a file: the stream's columns, then the lineage columns.
pub fn lineage_schema(input: &Schema) -> Result<SchemaRef, LakeError> {
    if input
        .fields()
        .iter()
        .any(|f| f.name() == EXTRACTED_AT || f.name() == RUN_ID)
    {
        return Err(LakeError::Invalid(format!(
            "a source column is named `{EXTRACTED_AT}` or `{RUN_ID}`, which inlet reserves for lineage"
        )));
    }
    let mut fields: Vec<Arc<Field>> = input.fields().iter().cloned().collect();
    fields.push(Arc::new(Field::new(
        EXTRACTED_AT,
        DataType::Timestamp(TimeUnit::Microsecond, Some("UTC".into())),
        false,
    )));
    fields.push(Arc::new(Field::new(RUN_ID, DataType::Utf8, false)));
    Ok(Arc::new(Schema::new_with_metadata(
        fields,
        input.metadata().clone(),
    )))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::LocalStorage;
    use arrow_array::Int64Array;

    fn batch(start: i64, n: i64) -> RecordBatch {
        let schema = Arc::new(Schema::new(vec![Field::new("id", DataType::Int64, false)]));
        RecordBatch::try_new(
            schema,
            vec![Arc::new(Int64Array::from_iter_values(start..start + n))],
        )
        .unwrap()
    }

    #[tokio::test]
    async fn files_roll_by_size_and_by_date_and_carry_metadata() {
        let dir = tempfile::tempdir().unwrap();
        let storage: Arc<dyn Storage> = Arc::new(LocalStorage::new(dir.path()).unwrap());
        let opts = WriterOptions {
            target_file_bytes: 20_000,
            row_group_bytes: 10_000,
            ..Default::default()
        };
        let mut w = StreamWriter::new(storage.clone(), "src", "st", "run1", opts, 0);
        let day1 = DateTime::parse_from_rfc3339("2026-11-23T23:59:00Z")
            .unwrap()
            .to_utc();
        let day2 = DateTime::parse_from_rfc3339("2026-11-24T00:00:01Z")
            .unwrap()
            .to_utc();
        for i in 0..10 {
            w.write(&batch(i * 5000, 5000), day1).await.unwrap();
        }
        w.note_checkpoint(&serde_json::json!({"n": 1}));
        w.write(&batch(50_000, 10), day2).await.unwrap();
        let staged = w.take_staged().await.unwrap();
        assert!(staged.len() >= 3, "{staged:?}");
        assert_eq!(staged.iter().map(|s| s.rows).sum::<u64>(), 50_010);
        assert!(
            staged
                .last()
                .unwrap()
                .final_key
                .contains("extracted_at=2026-11-24/")
        );
        for s in &staged {
            storage.publish(s).await.unwrap();
        }
        let listed = storage.list("src/st/").await.unwrap();
        assert_eq!(listed.len(), staged.len());
        let path = dir.path().join(&staged.last().unwrap().final_key);
        let reader =
            parquet::file::reader::SerializedFileReader::new(std::fs::File::open(path).unwrap())
                .unwrap();
        use parquet::file::reader::FileReader;
        let kv = reader
            .metadata()
            .file_metadata()
            .key_value_metadata()
            .unwrap()
            .clone();
        let get = |k: &str| kv.iter().find(|e| e.key == k).and_then(|e| e.value.clone());
        assert_eq!(get("inlet.source").as_deref(), Some("src"));
        assert_eq!(get("inlet.run_id").as_deref(), Some("run1"));
        assert_eq!(get("inlet.cursor_end").as_deref(), Some(r#"{"n":1}"#));
        assert_eq!(get("inlet.rows").as_deref(), Some("10"));
    }
}
