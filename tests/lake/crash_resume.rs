//! Crash safety of landing: a real process killed at many moments (SIGKILL), and at each
//! step of a commit (failpoints), then re-run. Readers that glob `**/*.parquet` never see a
//! partial file or a duplicate, and after the re-run they see every input row exactly once.

use std::{
    collections::HashSet,
    fs,
    io::Write,
    process::Stdio,
    time::{Duration, Instant},
};

use inlet_testkit::{TestProject, lake::*};

const STREAMS: &str = r#"
[connections.c.config.streams.events]
glob = "events/*.jsonl"
"#;

const FILES: i64 = 8;
const LINES: i64 = 25_000;

fn make_project() -> TestProject {
    let p = TestProject::new(STREAMS);
    // Small files (256 KiB) so that a run commits many times and a kill can land anywhere.
    let toml = p.root().join("inlet.toml");
    let text = fs::read_to_string(&toml).unwrap();
    fs::write(
        &toml,
        text.replace(
            "[connections.c]",
            "target_file_mb = 0.25\n\n[connections.c]",
        ),
    )
    .unwrap();
    for f in 0..FILES {
        let mut out = std::io::BufWriter::new(
            fs::File::create(p.data(&format!("events/{f:02}.jsonl"))).unwrap(),
        );
        for i in 0..LINES {
            let id = f * LINES + i;
            writeln!(
                out,
                r#"{{"id":{id},"user":"user-{}","v":{}.25,"tag":"t{}"}}"#,
                id % 977,
                id % 1000,
                id % 7
            )
            .unwrap();
        }
    }
    p
}

fn sync_cmd(p: &TestProject) -> std::process::Command {
    let mut c = p.command(&["sync", "c"]);
    c.stdout(Stdio::null()).stderr(Stdio::null());
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
    assert_eq!(
        ids.len() as i64,
        FILES * LINES,
        "row count after the re-run"
    );
    assert!(
        ids.iter().copied().eq(0..FILES * LINES),
        "landed ids differ from the input"
    );
}

struct Lcg(u64);
impl Lcg {
    fn next_f64(&mut self) -> f64 {
        self.0 = self
            .0
            .wrapping_mul(6_364_136_223_846_793_005)
            .wrapping_add(1_442_695_040_888_963_407);
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
    let mut attempts = 0;
    while kills < 24 && attempts < 100 {
        let mut landed = 0usize;
        for _ in 0..5 {
            // Anywhere from process start to the estimated end of what is left to do.
            let left = 1.0 - landed as f64 / (FILES * LINES) as f64;
            let delay = full.mul_f64((0.05 + 0.95 * rng.next_f64()) * left.max(0.1));
            attempts += 1;
            let mut child = sync_cmd(&p).spawn().unwrap();
            std::thread::sleep(delay);
            let finished = child.try_wait().unwrap().is_some();
            if !finished {
                child.kill().unwrap();
                kills += 1;
                moments.push(delay.as_millis());
            }
            child.wait().unwrap();
            landed = assert_visible_ok(&p);
        }
        assert!(sync_cmd(&p).status().unwrap().success());
        assert_exact(&p);
        fs::remove_dir_all(p.lake()).unwrap();
    }
    eprintln!("killed {kills} runs at {moments:?} ms");
    assert!(
        kills >= 20,
        "only {kills} runs were still running when killed; the input is too small"
    );
}

#[test]
fn a_crash_at_each_step_of_a_commit_is_repaired_by_the_next_run() {
    let p = make_project();
    for point in [
        "after-stage",
        "after-history",
        "after-state",
        "after-publish-one",
    ] {
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

#[test]
fn memory_stays_bounded_by_batch_size_not_input_size() {
    // 300 MB of JSON lines; the sync's peak RSS must stay far below the input size.
    let p = TestProject::new(STREAMS);
    let mut out = std::io::BufWriter::new(fs::File::create(p.data("events/big.jsonl")).unwrap());
    let filler = "x".repeat(200);
    let mut written = 0usize;
    let mut id = 0i64;
    while written < 300 * 1024 * 1024 {
        let line = format!(
            r#"{{"id":{id},"user":"user-{}","payload":"{filler}-{id}","n":{}}}"#,
            id % 977,
            id % 13
        );
        written += line.len() + 1;
        writeln!(out, "{line}").unwrap();
        id += 1;
    }
    drop(out);
    let t = Instant::now();
    let child = p
        .command(&["sync", "c"])
        .stdout(Stdio::null())
        .spawn()
        .unwrap();
    let (status, rss_kib) = inlet_testkit::wait_peak_rss(child);
    assert!(status.success());
    let elapsed = t.elapsed();
    eprintln!(
        "300 MB of JSON lines ({id} rows) in {elapsed:?}, peak RSS {} MiB",
        rss_kib / 1024
    );
    assert!(rss_kib > 0, "could not read the child's peak RSS");
    assert!(
        rss_kib < 250 * 1024,
        "peak RSS {} MiB for a 300 MB input",
        rss_kib / 1024
    );
    assert_eq!(int_column(&p.lake(), "id").len() as i64, id);
    assert!(elapsed < Duration::from_secs(300));
}
