//! The blocking part: walking the directory and turning lines into batches, on a thread
//! of its own that hands events to the async side through a small bounded channel (so
//! memory is bounded by a couple of batches).

use std::{
    fs::File,
    io::{BufRead, BufReader, Seek, SeekFrom},
    path::{Path, PathBuf},
    sync::Arc,
};

use arrow_schema::{Schema, SchemaRef};
use inlet_core::{EventStream, ReadEvent, SourceError, producer::Emitter, read::Skipped};
use serde_json::Value;

use crate::{
    BadRecordPolicy, FileFormat, FileMark, FilePosition, FileStreamConfig, FilesState,
    columns::{Cell, Row, build_batch, evolve, parse_json_object},
};

/// A file matching a stream's glob.
#[derive(Debug, Clone)]
pub(crate) struct Found {
    pub rel: String,
    pub path: PathBuf,
    pub mark: FileMark,
}

/// Files under `root` matching `glob`, sorted by relative path. Hidden files are skipped.
pub(crate) fn list_files(root: &Path, glob: &str) -> Result<Vec<Found>, SourceError> {
    let matcher = globset::Glob::new(glob)
        .map_err(|e| SourceError::config("glob", e))?
        .compile_matcher();
    let mut out = Vec::new();
    for entry in walkdir::WalkDir::new(root).follow_links(true) {
        let entry = entry.map_err(|e| {
            let path = e
                .path()
                .map(|p| p.display().to_string())
                .unwrap_or_else(|| root.display().to_string());
            match e.into_io_error() {
                Some(io) => SourceError::io(path, io),
                None => SourceError::other(format!("{path}: filesystem loop")),
            }
        })?;
        if !entry.file_type().is_file() || entry.file_name().to_string_lossy().starts_with('.') {
            continue;
        }
        let Ok(rel) = entry.path().strip_prefix(root) else {
            continue;
        };
        let rel = rel.to_string_lossy().replace('\\', "/");
        if !matcher.is_match(&rel) {
            continue;
        }
        let meta = entry.metadata().map_err(|e| {
            SourceError::io(
                entry.path().display().to_string(),
                e.into_io_error()
                    .unwrap_or_else(|| std::io::Error::other("metadata")),
            )
        })?;
        let mtime_ns = meta
            .modified()
            .ok()
            .and_then(|m| m.duration_since(std::time::UNIX_EPOCH).ok())
            .map(|d| d.as_nanos() as i128)
            .unwrap_or(0);
        out.push(Found {
            rel,
            path: entry.path().to_path_buf(),
            mark: FileMark {
                size: meta.len(),
                mtime_ns,
                lines: 0,
            },
        });
    }
    out.sort_by(|a, b| a.rel.cmp(&b.rel));
    Ok(out)
}

/// The schema of the first records of the first file (for `discover`).
pub(crate) fn sample_schema(
    root: &Path,
    cfg: &FileStreamConfig,
    format: FileFormat,
) -> Result<SchemaRef, SourceError> {
    let files = list_files(root, &cfg.glob)?;
    let Some(first) = files.first() else {
        return Ok(Arc::new(Schema::empty()));
    };
    let mut rows = Vec::new();
    let file = File::open(&first.path)
        .map_err(|e| SourceError::io(first.path.display().to_string(), e))?;
    match format {
        FileFormat::Jsonl => {
            for line in BufReader::new(file).lines().take(1000) {
                let line =
                    line.map_err(|e| SourceError::io(first.path.display().to_string(), e))?;
                if let Ok(row) = parse_json_object(line.as_bytes()) {
                    rows.push(row);
                }
            }
        }
        FileFormat::Csv => {
            let delimiter = cfg
                .delimiter
                .as_ref()
                .and_then(|d| d.bytes().next())
                .unwrap_or(b',');
            let mut r = csv::ReaderBuilder::new()
                .delimiter(delimiter)
                .flexible(true)
                .from_reader(file);
            let header: Vec<String> = r
                .headers()
                .map_err(|e| SourceError::data(first.path.display().to_string(), e))?
                .iter()
                .map(str::to_string)
                .collect();
            for rec in r.records().take(1000).flatten() {
                rows.push(
                    header
                        .iter()
                        .cloned()
                        .zip(rec.iter().map(Cell::from_csv))
                        .collect(),
                );
            }
            if rows.is_empty() {
                rows.push(header.into_iter().map(|h| (h, Cell::Null)).collect());
            }
        }
    }
    Ok(evolve(&Schema::empty(), &rows).unwrap_or_else(|| Arc::new(Schema::empty())))
}

pub(crate) struct ReadJob {
    pub root: PathBuf,
    pub stream: String,
    pub format: FileFormat,
    pub delimiter: u8,
    pub glob: String,
    pub batch_rows: usize,
    pub policy: BadRecordPolicy,
    pub state: FilesState,
}

type Sender = Emitter;

/// The consumer went away (the run was stopped): stop reading.
struct Stopped;

enum Failure {
    Stopped,
    Error(SourceError),
}

impl From<SourceError> for Failure {
    fn from(e: SourceError) -> Self {
        Failure::Error(e)
    }
}

impl From<Stopped> for Failure {
    fn from(_: Stopped) -> Self {
        Failure::Stopped
    }
}

pub(crate) fn spawn(job: ReadJob) -> Result<EventStream, SourceError> {
    let (mut tx, guard, events) = inlet_core::producer::channel(job.stream.clone(), 2);
    let name = format!("inlet-files-{}", job.stream);
    // The guard ends the stream as the thread ended: a panic is an error naming the
    // stream, never a finished stream (which would commit a partial read).
    std::thread::Builder::new()
        .name(name)
        .spawn(move || {
            guard.run_blocking(move || match job.run(&mut tx) {
                Ok(()) | Err(Failure::Stopped) => Ok(()),
                Err(Failure::Error(e)) => Err(e),
            })
        })
        .map_err(|e| SourceError::other(format!("cannot start a reader thread: {e}")))?;
    Ok(events)
}

fn send(tx: &mut Sender, event: ReadEvent) -> Result<(), Stopped> {
    tx.send_blocking(event).map_err(|_| Stopped)
}

struct Work {
    found: Found,
    offset: u64,
    line: u64,
    header: Option<Vec<String>>,
}

impl ReadJob {
    fn run(mut self, tx: &mut Sender) -> Result<(), Failure> {
        if let Err(e) = std::fs::read_dir(&self.root) {
            return Err(SourceError::io(self.root.display().to_string(), e).into());
        }
        let files = list_files(&self.root, &self.glob)?;
        let mut work = Vec::new();
        let current = self.state.current.take();
        for found in files {
            if let Some(cur) = &current
                && cur.path == found.rel
                && found.mark.size >= cur.mark.size
                && (found.mark == cur.mark || found.mark.size > cur.mark.size)
            {
                // Continue the file in progress (it may have grown meanwhile).
                work.push(Work {
                    offset: cur.offset,
                    line: cur.line,
                    header: cur.header.clone(),
                    found,
                });
                continue;
            }
            match self.state.files.get(&found.rel) {
                Some(done)
                    if done.size == found.mark.size && done.mtime_ns == found.mark.mtime_ns => {}
                Some(done) if found.mark.size > done.size => {
                    // Appended to since it was read: read the new bytes only.
                    work.push(Work {
                        offset: done.size,
                        line: done.lines,
                        header: None,
                        found,
                    });
                }
                _ => work.push(Work {
                    offset: 0,
                    line: 0,
                    header: None,
                    found,
                }),
            }
        }
        // The file in progress first, then the rest in path order.
        if let Some(cur) = &current {
            work.sort_by_key(|w| w.found.rel != cur.path);
        }
        let mut schema: SchemaRef =
            Arc::new(self.state.schema.clone().unwrap_or_else(Schema::empty));
        for w in work {
            self.read_file(w, &mut schema, tx)?;
        }
        // A final checkpoint: the runtime commits it only if something changed.
        send(tx, ReadEvent::Checkpoint(self.checkpoint(None)))?;
        Ok(())
    }

    fn checkpoint(&self, current: Option<FilePosition>) -> Value {
        let state = FilesState {
            current,
            ..self.state.clone()
        };
        serde_json::to_value(state).unwrap_or(Value::Null)
    }

    fn read_file(
        &mut self,
        w: Work,
        schema: &mut SchemaRef,
        tx: &mut Sender,
    ) -> Result<(), Failure> {
        let display = w.found.path.display().to_string();
        let mut file =
            File::open(&w.found.path).map_err(|e| SourceError::io(display.clone(), e))?;
        let mut header = w.header.clone();
        if self.format == FileFormat::Csv && header.is_none() {
            header = Some(read_csv_header(&w.found.path, self.delimiter)?);
        }
        let hold = recently_modified(&w.found.mark);
        // A CSV file still being written: read up to its last complete line only.
        let limit = if hold && self.format == FileFormat::Csv {
            complete_lines_end(&mut file)
                .map_err(|e| SourceError::io(display.clone(), e))?
                .saturating_sub(w.offset)
        } else {
            u64::MAX
        };
        file.seek(SeekFrom::Start(w.offset))
            .map_err(|e| SourceError::io(display.clone(), e))?;
        let mut reader = RecordReader::new(
            self.format,
            self.delimiter,
            file,
            w.offset,
            w.line,
            w.offset == 0,
            limit,
        );
        reader.hold_partial_line = hold;
        loop {
            let mut rows: Vec<Row> = Vec::with_capacity(self.batch_rows);
            let mut skipped = Vec::new();
            while rows.len() < self.batch_rows {
                match reader.next_record(header.as_deref()) {
                    Ok(Some(Record::Row(row))) => rows.push(row),
                    Ok(Some(Record::Header(h))) => header = Some(h),
                    Ok(Some(Record::Bad { line, reason })) => {
                        let location = format!("{display}:{line}");
                        match self.policy {
                            BadRecordPolicy::Fail => {
                                return Err(SourceError::data(
                                    location,
                                    format!(
                                        "{reason} (fix the file, or set on_bad_record = \"skip\")"
                                    ),
                                )
                                .into());
                            }
                            BadRecordPolicy::Skip => skipped.push(Skipped { location, reason }),
                        }
                    }
                    Ok(None) => break,
                    Err(e) => return Err(SourceError::io(display.clone(), e).into()),
                }
            }
            let at_end = rows.len() < self.batch_rows;
            if !rows.is_empty() {
                if let Some(next) = evolve(schema, &rows) {
                    *schema = next;
                    self.state.schema = Some(schema.as_ref().clone());
                }
                let batch = build_batch(schema, &rows).map_err(|e| {
                    SourceError::data(display.clone(), format!("building a batch: {e}"))
                })?;
                send(tx, ReadEvent::Batch(batch))?;
                inlet_core::producer::panic_point("files-batch");
            }
            for s in skipped {
                send(tx, ReadEvent::Skipped(s))?;
            }
            if at_end {
                break;
            }
            let position = FilePosition {
                path: w.found.rel.clone(),
                offset: reader.offset,
                line: reader.line,
                mark: w.found.mark.clone(),
                header: if self.format == FileFormat::Csv {
                    header.clone()
                } else {
                    None
                },
            };
            send(tx, ReadEvent::Checkpoint(self.checkpoint(Some(position))))?;
        }
        let mut mark = w.found.mark.clone();
        // Only what was read counts as read: a file that grew during the read keeps the
        // size read, so the rest is read next time.
        mark.size = reader.offset;
        mark.lines = reader.line;
        // If the file grew while it was read and was read to its end, its mtime is now
        // newer than the listing's: record that one, or the next run would think the file
        // was rewritten and read it again in full.
        if let Ok(meta) = std::fs::metadata(&w.found.path)
            && meta.len() == reader.offset
            && let Some(mtime) = meta
                .modified()
                .ok()
                .and_then(|m| m.duration_since(std::time::UNIX_EPOCH).ok())
        {
            mark.mtime_ns = mtime.as_nanos() as i128;
        }
        self.state.files.insert(w.found.rel.clone(), mark);
        send(tx, ReadEvent::Checkpoint(self.checkpoint(None)))?;
        Ok(())
    }
}

fn read_csv_header(path: &Path, delimiter: u8) -> Result<Vec<String>, SourceError> {
    let file = File::open(path).map_err(|e| SourceError::io(path.display().to_string(), e))?;
    let mut r = csv::ReaderBuilder::new()
        .delimiter(delimiter)
        .has_headers(false)
        .from_reader(file);
    let mut rec = csv::StringRecord::new();
    match r.read_record(&mut rec) {
        Ok(true) => Ok(rec.iter().map(|h| h.trim().to_string()).collect()),
        Ok(false) => Ok(Vec::new()),
        Err(e) => Err(SourceError::data(
            format!("{}:1", path.display()),
            format!("bad CSV header: {e}"),
        )),
    }
}

enum Record {
    Row(Row),
    Header(Vec<String>),
    Bad { line: u64, reason: String },
}

/// Reads one record at a time, tracking the byte offset and line of the next record.
struct RecordReader {
    inner: Inner,
    start_offset: u64,
    start_line: u64,
    expect_header: bool,
    buf: Vec<u8>,
    /// Byte offset (in the file) after the last record consumed.
    offset: u64,
    /// Lines consumed so far.
    line: u64,
    /// Leave an unterminated last line unread (the file may still be being written).
    hold_partial_line: bool,
}

/// How long after its last modification a file counts as finished: an unterminated last
/// line of a file modified more recently is left for the next run (it may be half
/// written); in an older file it is read as a complete record.
pub(crate) const SETTLE: std::time::Duration = std::time::Duration::from_secs(60);

/// The byte offset just after the last newline of the file (its length if it ends with
/// one, 0 if it has none).
fn complete_lines_end(file: &mut File) -> std::io::Result<u64> {
    use std::io::Read;
    let len = file.seek(SeekFrom::End(0))?;
    let mut end = len;
    let mut buf = vec![0u8; 64 * 1024];
    while end > 0 {
        let start = end.saturating_sub(buf.len() as u64);
        let n = (end - start) as usize;
        file.seek(SeekFrom::Start(start))?;
        file.read_exact(&mut buf[..n])?;
        if let Some(i) = buf[..n].iter().rposition(|b| *b == b'\n') {
            return Ok(start + i as u64 + 1);
        }
        end = start;
    }
    Ok(0)
}

fn recently_modified(mark: &FileMark) -> bool {
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_nanos() as i128)
        .unwrap_or(0);
    now - mark.mtime_ns < SETTLE.as_nanos() as i128
}

enum Inner {
    Json(BufReader<File>),
    Csv(csv::Reader<std::io::Take<File>>),
}

impl RecordReader {
    /// `limit`: bytes of the file to read from `offset` (CSV; JSON lines hold back a
    /// partial last line by themselves).
    fn new(
        format: FileFormat,
        delimiter: u8,
        file: File,
        offset: u64,
        line: u64,
        at_start: bool,
        limit: u64,
    ) -> Self {
        let inner = match format {
            FileFormat::Jsonl => Inner::Json(BufReader::with_capacity(1 << 20, file)),
            FileFormat::Csv => Inner::Csv(
                csv::ReaderBuilder::new()
                    .delimiter(delimiter)
                    .has_headers(false)
                    .flexible(true)
                    .buffer_capacity(1 << 20)
                    .from_reader(std::io::Read::take(file, limit)),
            ),
        };
        RecordReader {
            inner,
            start_offset: offset,
            start_line: line,
            expect_header: at_start && format == FileFormat::Csv,
            buf: Vec::new(),
            offset,
            line,
            hold_partial_line: false,
        }
    }

    fn next_record(&mut self, header: Option<&[String]>) -> std::io::Result<Option<Record>> {
        match self.inner {
            Inner::Json(_) => self.next_json(),
            Inner::Csv(_) => self.next_csv(header),
        }
    }

    fn next_json(&mut self) -> std::io::Result<Option<Record>> {
        let Inner::Json(lines) = &mut self.inner else {
            return Ok(None);
        };
        loop {
            self.buf.clear();
            let n = lines.read_until(b'\n', &mut self.buf)?;
            if n == 0 {
                return Ok(None);
            }
            if self.hold_partial_line && !self.buf.ends_with(b"\n") {
                // The last line of a file still being written: leave it for the next run.
                return Ok(None);
            }
            self.offset += n as u64;
            self.line += 1;
            let text = trim_ascii(&self.buf);
            if text.is_empty() {
                continue;
            }
            return Ok(Some(match parse_json_object(text) {
                Ok(row) => Record::Row(row),
                Err(reason) => Record::Bad {
                    line: self.line,
                    reason,
                },
            }));
        }
    }

    fn next_csv(&mut self, header: Option<&[String]>) -> std::io::Result<Option<Record>> {
        let Inner::Csv(csv) = &mut self.inner else {
            return Ok(None);
        };
        let mut rec = csv::StringRecord::new();
        let result = csv.read_record(&mut rec);
        let pos = csv.position().clone();
        self.offset = self.start_offset + pos.byte();
        self.line = self.start_line + pos.line().saturating_sub(1);
        match result {
            Ok(false) => Ok(None),
            Ok(true) => {
                let line = self.start_line + rec.position().map(|p| p.line()).unwrap_or(pos.line());
                if self.expect_header {
                    self.expect_header = false;
                    return Ok(Some(Record::Header(
                        rec.iter().map(|h| h.trim().to_string()).collect(),
                    )));
                }
                let header = header.unwrap_or(&[]);
                if rec.len() == 1 && rec.get(0) == Some("") {
                    return self.next_csv(Some(header));
                }
                if rec.len() != header.len() {
                    return Ok(Some(Record::Bad {
                        line,
                        reason: format!("{} fields, the header has {}", rec.len(), header.len()),
                    }));
                }
                Ok(Some(Record::Row(
                    header
                        .iter()
                        .cloned()
                        .zip(rec.iter().map(Cell::from_csv))
                        .collect(),
                )))
            }
            Err(e) => match e.kind() {
                csv::ErrorKind::Io(_) => Err(std::io::Error::other(e.to_string())),
                _ => Ok(Some(Record::Bad {
                    line: self.start_line + e.position().map(|p| p.line()).unwrap_or(pos.line()),
                    reason: format!("bad CSV record: {e}"),
                })),
            },
        }
    }
}

fn trim_ascii(b: &[u8]) -> &[u8] {
    b.trim_ascii()
}
