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
