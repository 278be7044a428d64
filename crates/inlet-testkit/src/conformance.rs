//! # The source conformance suite
//!
//! Plain async functions that take the [`Source`] under test, as `object_store`'s
//! integration suite takes a store: a connector's test builds its source against a real
//! system (a temp directory, a replay server, a Postgres server) and calls [`run`], or
//! uses [`conformance_suite!`](crate::conformance_suite) for one `#[tokio::test]` per
//! stream. A failure panics with what broke, naming the stream and the checkpoint.
//!
//! ## The contract it checks
//!
//! For one stream, in the given mode, from the given starting state:
//!
//! 1. **Resume without gap or duplicate.** The stream is read in full, following its
//!    [`ReadPlan`] (each partition). For EVERY checkpoint a partition emitted, a read of
//!    that partition resumed from the checkpoint MUST yield exactly the rows the full
//!    read yielded after it: rows before the checkpoint ++ rows of the resumed read MUST
//!    equal the partition's rows of the full read, in order (rows compared as JSON
//!    lines). A connector that re-reads a boundary (at-least-once) fails here: a
//!    duplicate is a defect, as a gap is.
//! 2. **Checkpoints are states.** [`Source::validate_state`] MUST accept every checkpoint
//!    of a single-partition read (each is the stream's state) and the final state (the
//!    last checkpoint, or the plan's `state_after` for a partitioned read).
//! 3. **Discover is stable.** Two calls of [`Source::discover`] MUST return the same
//!    catalog, and it MUST list the stream.
//! 4. **Incremental reads nothing new.** When the reads are [`SyncMode::Incremental`]
//!    (and the stream supports it), an incremental read from the final state MUST yield
//!    no rows when the source did not change. The state of a full refresh is not a
//!    cursor: an incremental read from it MAY read everything.
//! 5. **Enough checkpoints to mean something.** The full read MUST emit at least
//!    [`Options::min_checkpoints`] checkpoints (a suite that resumes from one checkpoint
//!    checks little), and rows.
//!
//! Errors say whether they are transient: [`assert_transient`] and
//! [`assert_read_fails`] check one (an unreachable endpoint is transient, a bad config
//! is not).

use std::{collections::BTreeMap, path::Path, sync::Arc};

use arrow_array::{RecordBatch, make_array};
use arrow_schema::{ArrowError, DataType, Schema};
use futures::StreamExt;
use inlet_core::{
    Catalog, Connector, Partition, ReadEvent, ReadPlan, ReadRequest, Source, SourceContext,
    SourceError, SyncMode,
};
use serde_json::Value;

/// What to read, and how strictly.
#[derive(Debug, Clone)]
pub struct Options {
    /// The stream, as [`Source::discover`] names it.
    pub stream: String,
    /// The mode of the reads.
    pub mode: SyncMode,
    /// The cursor column chosen by the connection, if the connector uses one.
    pub cursor_field: Option<String>,
    /// The committed state the reads start from (`None`: a first sync).
    pub state: Option<Value>,
    /// [`ReadRequest::batch_rows`]: keep it small so a read has several checkpoints.
    pub batch_rows: usize,
    /// The fewest checkpoints the full read must emit.
    pub min_checkpoints: usize,
    /// [`ReadRequest::attempt`] of every read: a retry's reads, which a connector MAY
    /// split into more statements and checkpoints (0: a first attempt).
    pub attempt: u32,
}

impl Options {
    /// A first incremental read of `stream`, in batches of 2 rows, with at least 2
    /// checkpoints.
    pub fn new(stream: impl Into<String>) -> Self {
        Options {
            stream: stream.into(),
            mode: SyncMode::Incremental,
            cursor_field: None,
            state: None,
            batch_rows: 2,
            min_checkpoints: 2,
            attempt: 0,
        }
    }

    /// The same, in `mode`.
    pub fn mode(mut self, mode: SyncMode) -> Self {
        self.mode = mode;
        self
    }

    fn request(&self, state: Option<Value>, mode: SyncMode) -> ReadRequest {
        ReadRequest {
            stream: self.stream.clone(),
            mode,
            cursor_field: self.cursor_field.clone(),
            previous: state.clone(),
            state,
            batch_rows: self.batch_rows,
            attempt: self.attempt,
        }
    }
}

/// One item of a read, rows as JSON lines.
#[derive(Debug, Clone, PartialEq)]
pub enum Item {
    /// A batch's rows.
    Rows(Vec<String>),
    /// A checkpoint.
    Checkpoint(Value),
}

/// What one partition's read yielded.
#[derive(Debug, Clone)]
pub struct PartitionRead {
    /// The partition.
    pub partition: Partition,
    /// The resume point it was read from.
    pub resume: Option<Value>,
    /// Its batches and checkpoints, in order.
    pub items: Vec<Item>,
}

impl PartitionRead {
    /// Every row, in order.
    pub fn rows(&self) -> Vec<String> {
        rows_of(&self.items)
    }

    /// Every checkpoint, in order.
    pub fn checkpoints(&self) -> impl Iterator<Item = &Value> {
        self.items.iter().filter_map(|i| match i {
            Item::Checkpoint(c) => Some(c),
            Item::Rows(_) => None,
        })
    }
}

/// A stream read in full: its plan and each partition's read.
#[derive(Debug, Clone)]
pub struct StreamRead {
    /// The plan followed.
    pub plan: ReadPlan,
    /// Each partition, in plan order.
    pub partitions: Vec<PartitionRead>,
}

impl StreamRead {
    /// Whether the plan is partitioned (checkpoints are then partition resume points).
    pub fn multi(&self) -> bool {
        self.plan.partitions.len() > 1 || self.plan.state_after.is_some()
    }

    /// The stream's state after the read: the plan's `state_after`, else the last
    /// checkpoint, else the state the read started from.
    pub fn final_state(&self, started: Option<&Value>) -> Option<Value> {
        if self.multi() {
            return self.plan.state_after.clone();
        }
        self.partitions
            .iter()
            .flat_map(PartitionRead::checkpoints)
            .last()
            .cloned()
            .or_else(|| started.cloned())
    }

    /// Every row of every partition.
    pub fn rows(&self) -> Vec<String> {
        self.partitions
            .iter()
            .flat_map(PartitionRead::rows)
            .collect()
    }
}

/// What [`run`] found, for a test that checks more.
#[derive(Debug, Clone)]
pub struct Report {
    /// The full read.
    pub read: StreamRead,
    /// Checkpoints resumed from.
    pub resumes: usize,
    /// The stream's state after the full read.
    pub final_state: Option<Value>,
}

/// The source `connector` builds from `config` (checked by `validate` first), for a
/// connection named `conformance` whose project folder is `base_dir`.
pub async fn build(connector: &dyn Connector, config: Value, base_dir: &Path) -> Arc<dyn Source> {
    ok(connector.validate(&config), "validate");
    let ctx = SourceContext {
        connection: "conformance".into(),
        base_dir: base_dir.to_path_buf(),
    };
    ok(connector.build(config, ctx).await, "build")
}

/// The whole suite for one stream (the contract in the module docs). Panics on the
/// first rule broken.
pub async fn run(source: &Arc<dyn Source>, options: &Options) -> Report {
    let catalog = discover_is_stable(source).await;
    let descriptor = catalog
        .streams
        .iter()
        .find(|s| s.name == options.stream)
        .unwrap_or_else(|| panic!("discover does not list stream `{}`", options.stream));
    let read = read_stream(source, options).await;
    let checkpoints: usize = read
        .partitions
        .iter()
        .map(|p| p.checkpoints().count())
        .sum();
    assert!(
        checkpoints >= options.min_checkpoints,
        "stream `{}`: the read emitted {checkpoints} checkpoints, fewer than the {} the suite needs to mean something",
        options.stream,
        options.min_checkpoints
    );
    assert!(
        !read.rows().is_empty(),
        "stream `{}`: the read yielded no rows",
        options.stream
    );
    let resumes = resumes_have_no_gap_or_duplicate(source, options, &read).await;
    let final_state = read.final_state(options.state.as_ref());
    checkpoints_are_valid_states(source, options, &read, final_state.as_ref());
    if options.mode == SyncMode::Incremental
        && descriptor.sync_modes.contains(&SyncMode::Incremental)
    {
        incremental_reads_nothing_new(source, options, final_state.clone()).await;
    }
    Report {
        read,
        resumes,
        final_state,
    }
}

/// Two calls of `discover` return the same catalog; returns it.
pub async fn discover_is_stable(source: &Arc<dyn Source>) -> Catalog {
    let first = ok(source.discover().await, "discover");
    let second = ok(source.discover().await, "discover (again)");
    assert_eq!(
        format!("{first:#?}"),
        format!("{second:#?}"),
        "discover returned two different catalogs"
    );
    first
}

/// Read the stream in full from `options.state`, following its plan.
pub async fn read_stream(source: &Arc<dyn Source>, options: &Options) -> StreamRead {
    read_from(
        source,
        &options.request(options.state.clone(), options.mode),
    )
    .await
}

async fn read_from(source: &Arc<dyn Source>, request: &ReadRequest) -> StreamRead {
    let plan = ok(
        source.plan(request).await,
        &format!("plan of `{}`", request.stream),
    );
    let multi = plan.partitions.len() > 1 || plan.state_after.is_some();
    let mut partitions = Vec::new();
    for partition in &plan.partitions {
        // As the runtime does: one partition resumes from the stream's state, partitions
        // of a split read start from nothing.
        let resume = if multi { None } else { request.state.clone() };
        let items = read_partition(source, request, partition, resume.clone()).await;
        partitions.push(PartitionRead {
            partition: partition.clone(),
            resume,
            items,
        });
    }
    StreamRead { plan, partitions }
}

/// One partition's read from `resume`, to its end.
pub async fn read_partition(
    source: &Arc<dyn Source>,
    request: &ReadRequest,
    partition: &Partition,
    resume: Option<Value>,
) -> Vec<Item> {
    let what = format!(
        "read of `{}` partition `{}` from {}",
        request.stream,
        partition.id,
        shown(resume.as_ref())
    );
    let mut events = ok(source.read(request, partition, resume).await, &what);
    let mut items = Vec::new();
    while let Some(event) = events.next().await {
        match ok(event, &what) {
            ReadEvent::Batch(batch) => items.push(Item::Rows(json_lines(&batch))),
            ReadEvent::Checkpoint(c) => items.push(Item::Checkpoint(c)),
            ReadEvent::Skipped(s) => panic!("{what}: skipped {}: {}", s.location, s.reason),
        }
    }
    items
}

/// Rule 1: for every checkpoint, the rows before it and a read resumed from it make the
/// full read. Returns how many checkpoints were resumed from.
pub async fn resumes_have_no_gap_or_duplicate(
    source: &Arc<dyn Source>,
    options: &Options,
    read: &StreamRead,
) -> usize {
    let request = options.request(options.state.clone(), options.mode);
    let mut resumes = 0;
    for p in &read.partitions {
        let full = p.rows();
        for (i, item) in p.items.iter().enumerate() {
            let Item::Checkpoint(checkpoint) = item else {
                continue;
            };
            let mut rows = rows_of(&p.items[..i]);
            let after =
                read_partition(source, &request, &p.partition, Some(checkpoint.clone())).await;
            rows.extend(rows_of(&after));
            resumes += 1;
            if rows != full {
                panic!(
                    "stream `{}` partition `{}`: resuming from checkpoint {} of the read ({}) {}",
                    options.stream,
                    p.partition.id,
                    p.checkpoints().take_while(|c| *c != checkpoint).count() + 1,
                    shown(Some(checkpoint)),
                    difference(&full, &rows)
                );
            }
        }
    }
    resumes
}

/// Rule 2: `validate_state` accepts every checkpoint of a single-partition read and the
/// final state.
pub fn checkpoints_are_valid_states(
    source: &Arc<dyn Source>,
    options: &Options,
    read: &StreamRead,
    final_state: Option<&Value>,
) {
    let mut states: Vec<&Value> = Vec::new();
    if !read.multi() {
        states.extend(read.partitions.iter().flat_map(PartitionRead::checkpoints));
    }
    states.extend(final_state);
    for state in states {
        if let Err(e) = source.validate_state(&options.stream, state) {
            panic!(
                "stream `{}`: validate_state refuses a state the read emitted ({}): {e}",
                options.stream,
                shown(Some(state))
            );
        }
    }
}

/// Rule 4: an incremental read from `state` (nothing changed since) yields no rows.
pub async fn incremental_reads_nothing_new(
    source: &Arc<dyn Source>,
    options: &Options,
    state: Option<Value>,
) {
    let again = read_from(source, &options.request(state, SyncMode::Incremental)).await;
    let rows = again.rows();
    assert!(
        rows.is_empty(),
        "stream `{}`: an incremental read from the final state, nothing changed, yielded {} rows again, first {}",
        options.stream,
        rows.len(),
        rows[0]
    );
}

/// `error` says it is transient (`expected = true`) or permanent.
pub fn assert_transient(error: &SourceError, expected: bool) {
    assert_eq!(
        error.is_transient(),
        expected,
        "the error should be {}: {error} ({error:?})",
        if expected { "transient" } else { "permanent" }
    );
}

/// A read of `options.stream` fails (when `read` is called, or in its events), with an
/// error that is transient or not as `transient` says; returns the error.
pub async fn assert_read_fails(
    source: &Arc<dyn Source>,
    options: &Options,
    transient: bool,
) -> SourceError {
    let request = options.request(options.state.clone(), options.mode);
    let error = match read_until_error(source, &request).await {
        Some(e) => e,
        None => panic!(
            "stream `{}`: the read should fail but ended",
            options.stream
        ),
    };
    assert_transient(&error, transient);
    error
}

async fn read_until_error(source: &Arc<dyn Source>, request: &ReadRequest) -> Option<SourceError> {
    let plan = match source.plan(request).await {
        Ok(p) => p,
        Err(e) => return Some(e),
    };
    for partition in &plan.partitions {
        let mut events = match source.read(request, partition, request.state.clone()).await {
            Ok(events) => events,
            Err(e) => return Some(e),
        };
        while let Some(event) = events.next().await {
            if let Err(e) = event {
                return Some(e);
            }
        }
    }
    None
}

/// The whole suite as one `#[tokio::test]` per stream: the name of the test module, an
/// expression building an `Arc<dyn Source>` (it may `.await`), and per test a name and
/// the [`Options`].
///
/// ```ignore
/// inlet_testkit::conformance_suite!(files_conformance, build_source().await, {
///     events: Options::new("events"),
///     orders: Options::new("orders"),
/// });
/// ```
#[macro_export]
macro_rules! conformance_suite {
    ($module:ident, $source:expr, { $($test:ident: $options:expr),+ $(,)? }) => {
        mod $module {
            #[allow(unused_imports, reason = "the options may name them")]
            use super::*;
            $(
                #[tokio::test]
                async fn $test() {
                    let source: ::std::sync::Arc<dyn ::inlet_core::Source> = $source;
                    $crate::conformance::run(&source, &$options).await;
                }
            )+
        }
    };
}

fn ok<T>(result: Result<T, SourceError>, what: &str) -> T {
    match result {
        Ok(v) => v,
        Err(e) => panic!("{what}: {e} ({e:?})"),
    }
}

fn rows_of(items: &[Item]) -> Vec<String> {
    items
        .iter()
        .filter_map(|i| match i {
            Item::Rows(r) => Some(r.iter().cloned()),
            Item::Checkpoint(_) => None,
        })
        .flatten()
        .collect()
}

/// A batch's rows as JSON objects, one per line (nulls left out, so a column that
/// appears later does not change the rows before it).
fn json_lines(batch: &RecordBatch) -> Vec<String> {
    let mut out = Vec::new();
    let mut writer = arrow_json::LineDelimitedWriter::new(&mut out);
    let written = utc_offsets(batch).and_then(|b| writer.write(&b));
    if let Err(e) = written.and_then(|()| writer.finish()) {
        panic!("a batch that cannot be written as JSON: {e}");
    }
    String::from_utf8_lossy(&out)
        .lines()
        .map(str::to_string)
        .collect()
}

/// `batch` with its timestamps of a named zone (`UTC`, as Postgres' timestamptz lands)
/// relabelled `+00:00`, which arrow-json renders without chrono-tz. The values (instants)
/// are untouched, so rows compare the same.
fn utc_offsets(batch: &RecordBatch) -> Result<RecordBatch, ArrowError> {
    let named =
        |t: &DataType| matches!(t, DataType::Timestamp(_, Some(tz)) if !tz.starts_with(['+', '-']));
    let schema = batch.schema();
    if !schema.fields().iter().any(|f| named(f.data_type())) {
        return Ok(batch.clone());
    }
    let mut fields = Vec::new();
    let mut columns = Vec::new();
    for (field, column) in schema.fields().iter().zip(batch.columns()) {
        match field.data_type() {
            DataType::Timestamp(unit, Some(_)) if named(field.data_type()) => {
                let utc = DataType::Timestamp(*unit, Some("+00:00".into()));
                let data = column
                    .to_data()
                    .into_builder()
                    .data_type(utc.clone())
                    .build()?;
                columns.push(make_array(data));
                fields.push(field.as_ref().clone().with_data_type(utc));
            }
            _ => {
                columns.push(column.clone());
                fields.push(field.as_ref().clone());
            }
        }
    }
    RecordBatch::try_new(Arc::new(Schema::new(fields)), columns)
}

/// How `got` differs from `want`: rows missing (a gap), rows twice (a duplicate), or
/// the same rows in another order.
fn difference(want: &[String], got: &[String]) -> String {
    let mut count: BTreeMap<&str, i64> = BTreeMap::new();
    for r in want {
        *count.entry(r).or_default() += 1;
    }
    for r in got {
        *count.entry(r).or_default() -= 1;
    }
    let missing: Vec<&str> = count
        .iter()
        .filter(|(_, n)| **n > 0)
        .map(|(r, _)| *r)
        .collect();
    let extra: Vec<&str> = count
        .iter()
        .filter(|(_, n)| **n < 0)
        .map(|(r, _)| *r)
        .collect();
    let mut parts = vec![format!(
        "gives {} rows where the full read has {}",
        got.len(),
        want.len()
    )];
    if !missing.is_empty() {
        parts.push(format!(
            "a gap of {} rows, first {}",
            missing.len(),
            missing[0]
        ));
    }
    if !extra.is_empty() {
        parts.push(format!(
            "{} rows read twice (or new), first {}",
            extra.len(),
            extra[0]
        ));
    }
    if missing.is_empty() && extra.is_empty() {
        parts.push("the same rows in another order".into());
    }
    parts.join("; ")
}

fn shown(state: Option<&Value>) -> String {
    let text = state.map_or_else(|| "the start".to_string(), Value::to_string);
    if text.len() > 400 {
        let cut = (0..=400)
            .rev()
            .find(|i| text.is_char_boundary(*i))
            .unwrap_or(0);
        format!("{}...", &text[..cut])
    } else {
        text
    }
}
