//! End-to-end: `inlet sync` landing on S3 (a real S3-compatible server on 127.0.0.1,
//! s3s-fs with SigV4), read back value by value; a process killed during multipart
//! uploads and re-run; a wrong secret and a missing bucket from the CLI.

use std::{collections::HashSet, fs, io::Write, process::Stdio, time::Instant};

use inlet_testkit::{TestProject, lake::*, s3::S3Server};

const AK: &str = "e2e-access-key";
const SK: &str = "e2e-secret-key-never-printed";

/// An S3 server on 127.0.0.1 with a bucket `raw`; objects are files under its root.
fn start_server() -> S3Server {
    S3Server::start(AK, SK, "raw")
}

fn s3_project(server: &S3Server, bucket: &str, secret: &str, extra: &str) -> TestProject {
    // The secret is not in the file: each command gets it through the environment.
    assert!(!secret.is_empty());
    let p = TestProject::empty().env("INLET_E2E_S3_SECRET", secret);
    p.write_toml(format!(
        r#"version = 1

[destinations.raw]
url = "s3://{bucket}/lake"
endpoint = "{}"
path_style = true
region = "us-east-1"
access_key_id = "{AK}"
secret_access_key = "${{env:INLET_E2E_S3_SECRET}}"
{extra}

[connections.c]
connector = "files"

[connections.c.config]
path = "data"

[connections.c.config.streams.events]
glob = "events/*.jsonl"
"#,
        server.endpoint()
    ));
    p
}

fn write_events(p: &TestProject, name: &str, ids: std::ops::Range<i64>, payload_len: usize) {
    let mut f =
        std::io::BufWriter::new(fs::File::create(p.data(&format!("events/{name}"))).unwrap());
    let mut x: u64 = ids.start as u64 ^ 0x9e37_79b9_7f4a_7c15;
    for id in ids {
        let mut payload = String::with_capacity(payload_len);
        while payload.len() < payload_len {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            payload.push_str(&format!("{x:016x}"));
        }
        writeln!(
            f,
            r#"{{"id":{id},"user":"u{}","payload":"{payload}"}}"#,
            id % 101
        )
        .unwrap();
    }
}

fn landed_dir(server: &S3Server) -> std::path::PathBuf {
    server.root().join("raw/lake/c/events")
}

#[test]
fn a_sync_lands_on_s3_and_reads_back_value_by_value() {
    let server = start_server();
    let p = s3_project(&server, "raw", SK, "");
    write_events(&p, "a.jsonl", 0..5000, 32);
    let out = p.inlet(&["--json", "sync", "c"]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let record: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(record["streams"]["events"]["rows"], 5000);

    let landed = rows_as_text(&landed_dir(&server), "id");
    assert_eq!(landed.len(), 5000);
    for line in fs::read_to_string(p.data("events/a.jsonl"))
        .unwrap()
        .lines()
    {
        let v: serde_json::Value = serde_json::from_str(line).unwrap();
        let row = &landed[&v["id"].as_i64().unwrap()];
        assert_eq!(row["payload"], v["payload"].as_str().unwrap());
        assert_eq!(row["user"], v["user"].as_str().unwrap());
    }
    // Hive layout under the prefix; state and runs in the bucket.
    for f in parquet_files(&server.root().join("raw/lake")) {
        assert!(
            f.to_string_lossy()
                .contains("/raw/lake/c/events/extracted_at=20"),
            "{}",
            f.display()
        );
    }
    assert!(
        server
            .root()
            .join("raw/lake/_inlet/connections/c/state.json")
            .exists()
    );

    // Incremental: nothing new, then only the new file.
    let out = p.inlet(&["--json", "sync", "c"]);
    let record: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(record["streams"]["events"]["rows"], 0);
    write_events(&p, "b.jsonl", 5000..5100, 32);
    let out = p.inlet(&["--json", "sync", "c"]);
    let record: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(record["streams"]["events"]["rows"], 100);
    let out = p.inlet(&["check", "c"]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stdout)
    );
    drop(server);
}

#[test]
fn a_process_killed_during_multipart_uploads_lands_every_row_once_after_a_rerun() {
    let server = start_server();
    let p = s3_project(&server, "raw", SK, "target_file_mb = 12\npart_size_mb = 5");
    // Incompressible payloads: files of several 5 MiB parts.
    for f in 0..4 {
        write_events(&p, &format!("{f}.jsonl"), f * 20_000..(f + 1) * 20_000, 480);
    }
    let total = 80_000i64;
    let t = Instant::now();
    let out = p.inlet(&["sync", "c"]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let full = t.elapsed();
    let count = |server: &S3Server| {
        let ids = int_column(&landed_dir(server), "id");
        let unique: HashSet<i64> = ids.iter().copied().collect();
        assert_eq!(unique.len(), ids.len(), "duplicates visible");
        ids.len()
    };
    assert_eq!(count(&server) as i64, total);
    // Start again on a fresh prefix and kill runs mid-way.
    let p = s3_project(&server, "raw", SK, "target_file_mb = 12\npart_size_mb = 5");
    fs::remove_dir_all(server.root().join("raw/lake")).unwrap();
    for f in 0..4 {
        write_events(&p, &format!("{f}.jsonl"), f * 20_000..(f + 1) * 20_000, 480);
    }
    let mut kills = 0;
    for i in 0..6 {
        let mut child = p
            .command(&["sync", "c"])
            .env("INLET_E2E_S3_SECRET", SK)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap();
        std::thread::sleep(full.mul_f64(0.15 + 0.12 * i as f64));
        if child.try_wait().unwrap().is_none() {
            child.kill().unwrap();
            kills += 1;
        }
        child.wait().unwrap();
        count(&server);
    }
    assert!(kills >= 3, "only {kills} kills landed mid-run");
    let out = p.inlet(&["sync", "c"]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(
        count(&server) as i64,
        total,
        "rows lost or duplicated after kills and a re-run"
    );
    // No upload left open: every staging marker is gone (their uploads completed or aborted).
    let staging = server.root().join("raw/lake/_inlet/staging");
    let left: Vec<_> = walk(&staging);
    assert!(left.is_empty(), "uploads left behind: {left:?}");
    drop(server);
}

#[test]
fn a_wrong_secret_or_a_missing_bucket_is_a_clear_error_without_the_secret() {
    let server = start_server();
    let wrong = "wrong-secret-e2e-0000";
    let p = s3_project(&server, "raw", wrong, "");
    write_events(&p, "a.jsonl", 0..10, 8);
    let out = p.inlet(&["sync", "c"]);
    assert!(!out.status.success());
    let all = inlet_testkit::project::said(&out);
    assert!(all.contains("secret access key is wrong"), "{all}");
    assert!(
        !all.contains(wrong) && !all.contains(SK),
        "secret printed: {all}"
    );
    let out = p.inlet(&["check", "c"]);
    let all = inlet_testkit::project::said(&out);
    assert!(
        !out.status.success() && all.contains("secret access key is wrong") && !all.contains(wrong),
        "{all}"
    );

    let p = s3_project(&server, "nope", SK, "");
    write_events(&p, "a.jsonl", 0..10, 8);
    let out = p.inlet(&["check", "c"]);
    let all = inlet_testkit::project::said(&out);
    assert!(
        !out.status.success() && all.contains("bucket `nope`"),
        "{all}"
    );
    drop(server);
}
