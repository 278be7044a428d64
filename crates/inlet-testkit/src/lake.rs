//! Reading back what a sync landed: every Parquet file of a folder, its batches and
//! columns (our reader), and the outside readers DuckDB and pyarrow (through Python).

use std::{
    collections::BTreeMap,
    fs,
    path::{Path, PathBuf},
    process::Command,
};

use arrow_array::{Array, Int64Array, RecordBatch, StringArray};
use parquet::arrow::arrow_reader::ParquetRecordBatchReaderBuilder;

/// Every `*.parquet` file under `dir`, recursively, sorted.
pub fn parquet_files(dir: &Path) -> Vec<PathBuf> {
    let mut out = Vec::new();
    let mut stack = vec![dir.to_path_buf()];
    while let Some(d) = stack.pop() {
        let Ok(entries) = fs::read_dir(&d) else {
            continue;
        };
        for e in entries.flatten() {
            let p = e.path();
            if p.is_dir() {
                stack.push(p);
            } else if p.extension().is_some_and(|x| x == "parquet") {
                out.push(p);
            }
        }
    }
    out.sort();
    out
}

/// Kill `child`, a sync, `extra` after `dir` holds `files` Parquet files (at once when
/// `None`; waiting at most `limit`); whether it was still running, so killed. Ties a kill
/// to the run's progress rather than to the wall clock.
pub fn kill_after_files(
    mut child: std::process::Child,
    dir: &Path,
    files: Option<usize>,
    limit: std::time::Duration,
    extra: std::time::Duration,
) -> bool {
    let started = std::time::Instant::now();
    while let Some(files) = files
        && child.try_wait().expect("wait for the sync").is_none()
        && parquet_files(dir).len() < files
        && started.elapsed() < limit
    {
        std::thread::sleep(std::time::Duration::from_millis(2));
    }
    std::thread::sleep(extra);
    let killed = child.try_wait().expect("wait for the sync").is_none();
    if killed {
        child.kill().expect("kill the sync");
    }
    child.wait().expect("wait for the sync");
    killed
}

/// Column `name` of `batch` as the Arrow array type `A`; panics naming the column when it
/// is missing or of another type.
pub fn column<'a, A: Array + 'static>(batch: &'a RecordBatch, name: &str) -> &'a A {
    let c = batch
        .column_by_name(name)
        .unwrap_or_else(|| panic!("no column `{name}` in {:?}", batch.schema()));
    c.as_any().downcast_ref::<A>().unwrap_or_else(|| {
        panic!(
            "column `{name}` is {}, not {}",
            c.data_type(),
            std::any::type_name::<A>()
        )
    })
}

/// `col` as the Arrow array type `A`; panics naming both types when it is another.
pub fn downcast<A: Array + 'static>(col: &dyn Array) -> &A {
    col.as_any().downcast_ref::<A>().unwrap_or_else(|| {
        panic!(
            "a {} array is not {}",
            col.data_type(),
            std::any::type_name::<A>()
        )
    })
}

/// All record batches of every Parquet file under `dir` (each file must be complete).
pub fn read_batches(dir: &Path) -> Vec<RecordBatch> {
    let mut out = Vec::new();
    for path in parquet_files(dir) {
        let file = fs::File::open(&path).expect("open parquet");
        let reader = ParquetRecordBatchReaderBuilder::try_new(file)
            .unwrap_or_else(|e| panic!("{} is not a complete Parquet file: {e}", path.display()))
            .build()
            .expect("reader");
        for b in reader {
            out.push(b.expect("batch"));
        }
    }
    out
}

/// The values of an Int64 column across all files under `dir`.
pub fn int_column(dir: &Path, name: &str) -> Vec<i64> {
    let mut out = Vec::new();
    for b in read_batches(dir) {
        let Some(col) = b.column_by_name(name) else {
            continue;
        };
        let col = col
            .as_any()
            .downcast_ref::<Int64Array>()
            .unwrap_or_else(|| panic!("column `{name}` is not Int64"));
        for i in 0..col.len() {
            assert!(!col.is_null(i), "null in {name}");
            out.push(col.value(i));
        }
    }
    out
}

/// Rows as maps of column -> text, for value-by-value comparison.
pub fn rows_as_text(dir: &Path, key: &str) -> BTreeMap<i64, BTreeMap<String, String>> {
    let mut out = BTreeMap::new();
    for b in read_batches(dir) {
        let keys = b
            .column_by_name(key)
            .unwrap_or_else(|| panic!("no key column `{key}`"));
        let keys = keys
            .as_any()
            .downcast_ref::<Int64Array>()
            .unwrap_or_else(|| panic!("key column `{key}` is not Int64"));
        for row in 0..b.num_rows() {
            let mut m = BTreeMap::new();
            for (field, col) in b.schema().fields().iter().zip(b.columns()) {
                if field.name().starts_with("_inlet") || col.is_null(row) {
                    continue;
                }
                let text = arrow_cast_text(col.as_ref(), row);
                m.insert(field.name().clone(), text);
            }
            assert!(
                out.insert(keys.value(row), m).is_none(),
                "duplicate key {}",
                keys.value(row)
            );
        }
    }
    out
}

fn arrow_cast_text(col: &dyn Array, row: usize) -> String {
    use arrow_array::{BooleanArray, Float64Array};
    if let Some(a) = col.as_any().downcast_ref::<StringArray>() {
        return a.value(row).to_string();
    }
    if let Some(a) = col.as_any().downcast_ref::<Int64Array>() {
        return a.value(row).to_string();
    }
    if let Some(a) = col.as_any().downcast_ref::<Float64Array>() {
        return a.value(row).to_string();
    }
    if let Some(a) = col.as_any().downcast_ref::<BooleanArray>() {
        return a.value(row).to_string();
    }
    if let Some(a) = col.as_any().downcast_ref::<arrow_array::Decimal128Array>() {
        return a.value_as_string(row);
    }
    panic!("unexpected column type {:?}", col.data_type())
}

/// A Python with duckdb and pyarrow, if one is available. Under CI it must be.
pub fn outside_python() -> Option<String> {
    find_python(
        "import duckdb, pyarrow, prometheus_client",
        "duckdb and pyarrow",
        "the outside-reader check",
    )
}

/// `INLET_TEST_PYTHON`, else `python3`, if it runs `imports`; `None` (and a line saying
/// `skipping` is skipped) when neither does. Under CI (env `CI` set) one must.
pub fn find_python(imports: &str, what: &str, skipping: &str) -> Option<String> {
    let candidates = [
        std::env::var("INLET_TEST_PYTHON").ok(),
        Some("python3".to_string()),
    ];
    for py in candidates.into_iter().flatten() {
        let ok = Command::new(&py)
            .args(["-c", imports])
            .output()
            .map(|o| o.status.success())
            .unwrap_or(false);
        if ok {
            return Some(py);
        }
    }
    assert!(
        std::env::var_os("CI").is_none(),
        "CI must provide a Python with {what} (set INLET_TEST_PYTHON)"
    );
    eprintln!("skipping {skipping}: no Python with {what} (set INLET_TEST_PYTHON)");
    None
}

/// Run a Python snippet and return its stdout.
pub fn python(py: &str, code: &str) -> String {
    let out = Command::new(py)
        .args(["-c", code])
        .output()
        .expect("python");
    assert!(
        out.status.success(),
        "python failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).trim().to_string()
}

/// Every file under `dir` (not hidden), recursively.
pub fn walk(dir: &Path) -> Vec<PathBuf> {
    let mut out = Vec::new();
    let Ok(entries) = fs::read_dir(dir) else {
        return out;
    };
    for e in entries.flatten() {
        if e.path().is_dir() {
            out.extend(walk(&e.path()));
        } else if !e.file_name().to_string_lossy().starts_with('.') {
            out.push(e.path());
        }
    }
    out
}

/// A Python with pyspark (Spark runs in a local JVM) beside duckdb and pyarrow, if one is
/// available. Under CI it must be, as for the other outside readers.
pub fn spark_python() -> Option<String> {
    find_python(
        "import duckdb, pyarrow, prometheus_client, pyspark",
        "pyspark (and Java) beside duckdb and pyarrow; scripts/test installs it",
        "the Spark check",
    )
}

/// What Spark and pyarrow read in one folder of Parquet files ([`spark_and_pyarrow`]).
#[derive(Debug, Clone)]
pub struct SparkReading {
    /// The folder read.
    pub folder: PathBuf,
    /// The columns pyarrow read (every column of the files, unified).
    pub columns: Vec<String>,
    /// The rows pyarrow read.
    pub rows: usize,
    /// Rows (or columns) where Spark's values differ from pyarrow's, as canonical JSON.
    pub mismatches: Vec<String>,
    /// Spark's error when it refused to read the folder.
    pub spark_error: Option<String>,
    /// Read through a table: the current-state view's rows and the table's distinct keys.
    pub current: Option<(u64, u64)>,
}

/// A folder to read in Spark through the table (and current-state view) that inlet's
/// printed Spark DDL creates, rather than with `spark.read.parquet`.
#[derive(Debug, Clone)]
pub struct SparkTable {
    /// The stream's folder (pyarrow reads its files).
    pub folder: PathBuf,
    /// The statements creating the table (`inlet catalog ddl --engine spark`).
    pub ddl: String,
    /// The table's qualified name.
    pub table: String,
    /// The statement creating `<table>_current`, for a keyed stream.
    pub current_state_view: Option<String>,
    /// The primary key.
    pub key: Vec<String>,
}

impl SparkTable {
    /// Every stream of `connection` as `inlet --json catalog ddl <connection> --engine
    /// spark` prints it, in the project's local lake.
    pub fn all_of(project: &crate::TestProject, connection: &str) -> Vec<SparkTable> {
        let text = project.ok(&["--json", "catalog", "ddl", connection, "--engine", "spark"]);
        let doc: serde_json::Value = serde_json::from_str(&text).expect("catalog ddl --json");
        doc.as_array()
            .expect("a list of streams")
            .iter()
            .map(|s| SparkTable {
                folder: project
                    .lake()
                    .join(connection)
                    .join(s["stream"].as_str().expect("stream")),
                ddl: s["ddl"].as_str().expect("ddl").to_string(),
                table: s["table"].as_str().expect("table").to_string(),
                current_state_view: s["current_state_view"].as_str().map(str::to_string),
                key: s["primary_key"]
                    .as_array()
                    .into_iter()
                    .flatten()
                    .filter_map(|k| k.as_str().map(str::to_string))
                    .collect(),
            })
            .collect()
    }
}

/// [`spark_and_pyarrow`], Spark reading each stream through its table (inlet's printed
/// Spark DDL) and counting its current-state view's rows against the distinct keys.
pub fn spark_tables_and_pyarrow(py: &str, tables: &[SparkTable]) -> (Vec<SparkReading>, f64) {
    let inputs: Vec<serde_json::Value> = tables
        .iter()
        .map(|t| {
            serde_json::json!({
                "folder": t.folder.display().to_string(),
                "ddl": t.ddl,
                "table": t.table,
                "view": t.current_state_view,
                "key": t.key,
            })
        })
        .collect();
    run_spark_check(py, &serde_json::Value::Array(inputs))
}

/// One Spark session (local, UTC) and pyarrow read every Parquet file under each folder,
/// every column and row, and compare them value by value (timestamps as microseconds since
/// the epoch, dates as days, so that ±infinity compares; NaN as `NaN`; see
/// `lake/spark_vs_pyarrow.py`). Returns each folder's reading and the seconds the whole
/// check took (the JVM's start included).
pub fn spark_and_pyarrow(py: &str, folders: &[&Path]) -> (Vec<SparkReading>, f64) {
    let folders: Vec<serde_json::Value> = folders
        .iter()
        .map(|f| serde_json::Value::String(f.display().to_string()))
        .collect();
    run_spark_check(py, &serde_json::Value::Array(folders))
}

fn run_spark_check(py: &str, inputs: &serde_json::Value) -> (Vec<SparkReading>, f64) {
    let started = std::time::Instant::now();
    let arg = inputs.to_string();
    let out = Command::new(py)
        .args(["-c", include_str!("lake/spark_vs_pyarrow.py"), &arg])
        .output()
        .expect("python");
    assert!(
        out.status.success(),
        "the Spark check failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let stdout = String::from_utf8_lossy(&out.stdout);
    let last = stdout.lines().last().unwrap_or_default();
    let report: serde_json::Value = serde_json::from_str(last)
        .unwrap_or_else(|e| panic!("the Spark check printed no report ({e}): {stdout}"));
    let text = |v: &serde_json::Value| v.as_str().map(str::to_string);
    let readings = report["folders"]
        .as_array()
        .expect("folders")
        .iter()
        .map(|f| SparkReading {
            folder: PathBuf::from(f["folder"].as_str().unwrap_or_default()),
            columns: f["columns"]
                .as_array()
                .into_iter()
                .flatten()
                .filter_map(text)
                .collect(),
            rows: f["rows"].as_u64().unwrap_or(0) as usize,
            mismatches: f["mismatches"]
                .as_array()
                .into_iter()
                .flatten()
                .filter_map(text)
                .collect(),
            spark_error: text(&f["spark_error"]),
            current: f["current"]
                .as_array()
                .map(|c| (c[0].as_u64().unwrap_or(0), c[1].as_u64().unwrap_or(0))),
        })
        .collect();
    (readings, started.elapsed().as_secs_f64())
}
