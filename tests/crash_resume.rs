//! Crash safety of landing: a real process killed at many moments (SIGKILL), and at each
//! step of a commit (failpoints), then re-run. Readers that glob `**/*.parquet` never see a
//! partial file or a duplicate, and after the re-run they see every input row exactly once.

mod support;

use std::{
    collections::HashSet,
    fs,
    io::Write,
    process::Stdio,
    time::{Duration, Instant},
};

use support::*;

const STREAMS: &str = r#"
[connections.c.config.streams.events]
glob = "events/*.jsonl"
"#;

const FILES: i64 = 8;
const LINES: i64 = 25_000;

fn make_project() -> TestProject {
    let p = TestProject::new(STREAMS);
    for f in 0..FILES {
        let mut out = std::io::BufWriter::new(fs::File::create(p.data(&format!("events/{f:02}.jsonl"))).unwrap());
        for i in 0..LINES {
            let id = f * LINES + i;
            writeln!(out, r#"{{"id":{id},"user":"user-{}","v":{}.25,"tag":"t{}"}}"#, id % 977, id % 1000, id % 7).unwrap();
        }
    }
    p
}

fn sync_cmd(p: &TestProject) -> std::process::Command {
    let mut c = p.command(&["sync", "c"]);
    // Small files so that a run commits many times and a kill can land anywhere.
    c.env("INLET_TARGET_FILE_BYTES", "262144").stdout(Stdio::null()).stderr(Stdio::null());
    c
}

/// Everything a globbing reader sees is complete Parquet with no duplicate ids.
fn assert_visible_ok(p: &TestProject) -> usize {
    let ids = int_column(&p.lake(), "id");
    let unique: HashSet<i64> = ids.iter().copied().collect();
    assert_eq!(unique.len(), ids.len(), "a reader sees duplicate rows");
    ids.len()
}

fn assert_exact(p: &TestProject) {
    let mut ids = int_column(&p.lake(), "id");
    ids.sort_unstable();
    assert_eq!(ids.len() as i64, FILES * LINES, "row count after the re-run");
    assert!(ids.iter().copied().eq(0..FILES * LINES), "landed ids differ from the input");
}

struct Lcg(u64);
impl Lcg {
    fn next_f64(&mut self) -> f64 {
        self.0 = self.0.wrapping_mul(6_364_136_223_846_793_005).wrapping_add(1_442_695_040_888_963_407);
        (self.0 >> 11) as f64 / (1u64 << 53) as f64
    }
}

#[test]
fn killing_a_sync_at_random_moments_and_rerunning_lands_every_row_exactly_once() {
    let p = make_project();
    // How long does an uninterrupted sync take here?
    let t = Instant::now();
    assert!(sync_cmd(&p).status().unwrap().success());
    let full = t.elapsed();
    assert_exact(&p);
    fs::remove_dir_all(p.lake()).unwrap();

    let seed = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_nanos() as u64;
    eprintln!("full sync {full:?}; kill schedule seed {seed}");
    let mut rng = Lcg(seed);
    let mut kills = 0;
    let mut moments = Vec::new();
    for _round in 0..4 {
        for _ in 0..6 {
            // Anywhere from process start to the end of a full sync.
            let delay = full.mul_f64(0.02 + 0.9 * rng.next_f64());
            let mut child = sync_cmd(&p).spawn().unwrap();
            std::thread::sleep(delay);
            let finished = child.try_wait().unwrap().is_some();
            if !finished {
                child.kill().unwrap();
                kills += 1;
                moments.push(delay.as_millis());
            }
            child.wait().unwrap();
            assert_visible_ok(&p);
        }
        assert!(sync_cmd(&p).status().unwrap().success());
        assert_exact(&p);
        fs::remove_dir_all(p.lake()).unwrap();
    }
    eprintln!("killed {kills} runs at {moments:?} ms");
    assert!(kills >= 20, "only {kills} runs were still running when killed; the input is too small");
}

#[test]
fn a_crash_at_each_step_of_a_commit_is_repaired_by_the_next_run() {
    let p = make_project();
    for point in ["after-stage", "after-history", "after-state", "after-publish-one"] {
        let status = sync_cmd(&p).env("INLET_CRASH_AT", point).status().unwrap();
        assert!(!status.success(), "{point}: the failpoint did not fire");
        assert_visible_ok(&p);
        let status = sync_cmd(&p).status().unwrap();
        assert!(status.success(), "{point}: the re-run failed");
        assert_exact(&p);
        // Nothing is left in staging once a run has finished.
        let staging = p.lake().join("_inlet/staging");
        let left: Vec<_> = walk(&staging);
        assert!(left.is_empty(), "{point}: staging not cleaned: {left:?}");
        fs::remove_dir_all(p.lake()).unwrap();
    }
}

fn walk(dir: &std::path::Path) -> Vec<std::path::PathBuf> {
    let mut out = Vec::new();
    let Ok(entries) = fs::read_dir(dir) else { return out };
    for e in entries.flatten() {
        if e.path().is_dir() {
            out.extend(walk(&e.path()));
        } else if !e.file_name().to_string_lossy().starts_with('.') {
            out.push(e.path());
        }
    }
    out
}

#[test]
fn memory_stays_bounded_by_batch_size_not_input_size() {
    // 300 MB of JSON lines; the sync's peak RSS must stay far below the input size.
    let p = TestProject::new(STREAMS);
    let mut out = std::io::BufWriter::new(fs::File::create(p.data("events/big.jsonl")).unwrap());
    let filler = "x".repeat(200);
    let mut written = 0usize;
    let mut id = 0i64;
    while written < 300 * 1024 * 1024 {
        let line = format!(r#"{{"id":{id},"user":"user-{}","payload":"{filler}-{id}","n":{}}}"#, id % 977, id % 13);
        written += line.len() + 1;
        writeln!(out, "{line}").unwrap();
        id += 1;
    }
    drop(out);
    let t = Instant::now();
    let status = p.command(&["sync", "c"]).stdout(Stdio::null()).status().unwrap();
    assert!(status.success());
    let elapsed = t.elapsed();
    let rss_kib = children_max_rss_kib();
    eprintln!("300 MB of JSON lines ({id} rows) in {elapsed:?}, peak RSS {} MiB", rss_kib / 1024);
    assert!(rss_kib < 250 * 1024, "peak RSS {} MiB for a 300 MB input", rss_kib / 1024);
    assert_eq!(int_column(&p.lake(), "id").len() as i64, id);
    assert!(elapsed < Duration::from_secs(300));
}

/// Peak RSS of the largest child process waited for so far.
fn children_max_rss_kib() -> i64 {
    let text = fs::read_to_string("/proc/self/status").unwrap_or_default();
    let _ = text;
    // getrusage(RUSAGE_CHILDREN) is the maximum over waited-for children.
    let mut usage = std::mem::MaybeUninit::<libc::rusage>::zeroed();
    // SAFETY: getrusage writes a rusage into the pointer we pass.
    let rc = unsafe { libc::getrusage(libc::RUSAGE_CHILDREN, usage.as_mut_ptr()) };
    assert_eq!(rc, 0);
    // SAFETY: initialised by the successful call above.
    unsafe { usage.assume_init() }.ru_maxrss
}
