//! A project folder in a temp dir (`inlet.toml`, `data/`, the lake in `lake/`) and runs
//! of the real `inlet` binary in it. Every test writes its project through here, so the
//! shape of `inlet.toml` is written down once.

use std::{
    ffi::OsString,
    fs,
    path::{Path, PathBuf},
    process::{Command, Output},
};

use crate::lake::parquet_files;

/// The head of every test project: the version key and a local lake in `./lake`.
pub const HEADER: &str = "version = 1\n\n[destinations.local]\nurl = \"file://./lake\"\n\n";

/// The `inlet` binary of this build: `CARGO_BIN_EXE_inlet` when set, else the binary
/// beside the test executable's folder (`target/<profile>/deps/..`), where cargo puts
/// the binaries of the package whose integration tests run.
pub fn inlet_bin() -> PathBuf {
    if let Some(p) = std::env::var_os("CARGO_BIN_EXE_inlet") {
        return PathBuf::from(p);
    }
    let exe = std::env::current_exe().expect("the test executable's path");
    let mut dir = exe.parent().map(Path::to_path_buf).unwrap_or_default();
    if dir.ends_with("deps") {
        dir.pop();
    }
    let bin = dir.join(format!("inlet{}", std::env::consts::EXE_SUFFIX));
    assert!(
        bin.exists(),
        "no `inlet` binary at {} (run the tests of the inlet-cli package)",
        bin.display()
    );
    bin
}

/// What a run printed: its stdout followed by its stderr.
pub fn said(out: &Output) -> String {
    format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    )
}

/// A project directory with `inlet.toml`, `data/`, and the lake in `lake/`.
#[derive(Debug)]
pub struct TestProject {
    dir: tempfile::TempDir,
    env: Vec<(OsString, OsString)>,
    never_print: Vec<String>,
}

impl TestProject {
    /// A project with one `files` connection `c` over `data/` and the given stream tables.
    pub fn new(streams_toml: &str) -> Self {
        let p = Self::empty();
        p.write_config(streams_toml, "");
        p
    }

    /// A project folder with `data/` and no `inlet.toml` yet.
    pub fn empty() -> Self {
        let dir = tempfile::tempdir().expect("a temp dir for the project");
        fs::create_dir_all(dir.path().join("data")).expect("the data dir");
        TestProject {
            dir,
            env: Vec::new(),
            never_print: Vec::new(),
        }
    }

    /// A project with one connection `c` of `connector` (see
    /// [`TestProject::write_connection`]).
    pub fn with_connection(
        connector: &str,
        connection_extra: &str,
        config: &str,
        streams: &str,
    ) -> Self {
        let p = Self::empty();
        p.write_connection(connector, connection_extra, config, streams);
        p
    }

    /// This project, with `name=value` in the environment of every command it runs.
    pub fn env(mut self, name: impl Into<OsString>, value: impl Into<OsString>) -> Self {
        self.env.push((name.into(), value.into()));
        self
    }

    /// This project, with [`TestProject::ok`] failing when a command prints `secret`.
    pub fn never_print(mut self, secret: impl Into<String>) -> Self {
        self.never_print.push(secret.into());
        self
    }

    /// Rewrite `inlet.toml`: the `files` connection `c` over `data/`, with `extra_config`
    /// in its `[connections.c.config]` and the stream tables after it.
    pub fn write_config(&self, streams_toml: &str, extra_config: &str) {
        self.write_connection(
            "files",
            "",
            &format!("path = \"data\"\n{extra_config}"),
            streams_toml,
        );
    }

    /// Rewrite `inlet.toml` with one connection `c` of `connector`: `connection_extra` in
    /// `[connections.c]`, `config` in `[connections.c.config]`, then `streams`.
    pub fn write_connection(
        &self,
        connector: &str,
        connection_extra: &str,
        config: &str,
        streams: &str,
    ) {
        self.write_project(format!(
            "[connections.c]\nconnector = \"{connector}\"\n{connection_extra}\n\n[connections.c.config]\n{config}\n{streams}"
        ));
    }

    /// Rewrite `inlet.toml` as [`HEADER`] followed by `body` (connections, more
    /// destinations).
    pub fn write_project(&self, body: impl AsRef<str>) {
        self.write_toml(format!("{HEADER}{}", body.as_ref()));
    }

    /// Rewrite `inlet.toml` with exactly `text`.
    pub fn write_toml(&self, text: impl AsRef<str>) {
        fs::write(self.config_path(), text.as_ref()).expect("write inlet.toml");
    }

    /// The text of `inlet.toml`.
    pub fn config_text(&self) -> String {
        fs::read_to_string(self.config_path()).expect("read inlet.toml")
    }

    /// Write `text` to `rel` in the project folder (a manifest, a plugin file).
    pub fn write(&self, rel: &str, text: &str) -> PathBuf {
        let p = self.dir.path().join(rel);
        if let Some(parent) = p.parent() {
            fs::create_dir_all(parent).expect("mkdir");
        }
        fs::write(&p, text).unwrap_or_else(|e| panic!("write {}: {e}", p.display()));
        p
    }

    /// The project folder.
    pub fn root(&self) -> &Path {
        self.dir.path()
    }

    /// `inlet.toml`.
    pub fn config_path(&self) -> PathBuf {
        self.dir.path().join("inlet.toml")
    }

    /// `data/<rel>`, its parent folders created.
    pub fn data(&self, rel: &str) -> PathBuf {
        let p = self.dir.path().join("data").join(rel);
        if let Some(parent) = p.parent() {
            fs::create_dir_all(parent).expect("mkdir");
        }
        p
    }

    /// The local lake, `lake/`.
    pub fn lake(&self) -> PathBuf {
        self.dir.path().join("lake")
    }

    /// Where connection `c` lands `stream`: `lake/c/<stream>`.
    pub fn stream_dir(&self, stream: &str) -> PathBuf {
        self.lake().join("c").join(stream)
    }

    /// Run `inlet -p <project> <args>`.
    pub fn inlet(&self, args: &[&str]) -> Output {
        self.command(args).output().expect("run inlet")
    }

    /// The command `inlet -p <project> <args>` with the project's environment, to add to.
    pub fn command(&self, args: &[&str]) -> Command {
        let mut c = Command::new(inlet_bin());
        c.arg("-p").arg(self.config_path()).args(args);
        c.env_remove("RUST_LOG").env_remove("INLET_CRASH_AT");
        c.envs(self.env.iter().map(|(k, v)| (k, v)));
        c
    }

    /// Run and require success (and none of the never-printed secrets in the output);
    /// returns stdout.
    pub fn ok(&self, args: &[&str]) -> String {
        let out = self.inlet(args);
        let (stdout, stderr) = (
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr),
        );
        assert!(
            out.status.success(),
            "inlet {args:?} failed ({:?}):\nstdout: {stdout}\nstderr: {stderr}",
            out.status.code(),
        );
        for secret in &self.never_print {
            assert!(
                !stdout.contains(secret.as_str()) && !stderr.contains(secret.as_str()),
                "inlet {args:?} printed a secret"
            );
        }
        stdout.into_owned()
    }

    /// Run and require failure; returns stderr (what the person running it reads).
    pub fn fails(&self, args: &[&str]) -> String {
        let out = self.inlet(args);
        assert!(
            !out.status.success(),
            "inlet {args:?} succeeded:\nstdout: {}",
            String::from_utf8_lossy(&out.stdout)
        );
        String::from_utf8_lossy(&out.stderr).into_owned()
    }

    /// `inlet --json sync c <extra>`, parsed.
    pub fn sync_json(&self, extra: &[&str]) -> serde_json::Value {
        let mut args = vec!["--json", "sync", "c"];
        args.extend_from_slice(extra);
        serde_json::from_str(&self.ok(&args)).expect("sync --json output")
    }

    /// `inlet state show c`, parsed.
    pub fn state_json(&self) -> serde_json::Value {
        serde_json::from_str(&self.ok(&["state", "show", "c"])).expect("state json")
    }

    /// Run `inlet sync <sync_args>` (a connection, then options) with the producer
    /// failpoint `INLET_PANIC_AT=<at>` and assert what a producer that panics must lead
    /// to: the run fails (exit 1) saying that `stream` did not finish and why, nothing
    /// lands, the connection's state does not move, and the run is recorded as failed.
    pub fn assert_panicked_sync(&self, at: &str, sync_args: &[&str], stream: &str) {
        let state = self.panicked_sync(at, sync_args, stream);
        assert!(
            state["streams"].get(stream).is_none(),
            "the state must not move: {state}"
        );
    }

    /// [`TestProject::assert_panicked_sync`] for a source that records a plan before it
    /// reads (the stream's state then exists, and the caller checks that no partition
    /// moved): every assertion but the state's, which it returns (`inlet state show`).
    pub fn panicked_sync(&self, at: &str, sync_args: &[&str], stream: &str) -> serde_json::Value {
        let connection = sync_args.first().copied().unwrap_or("c");
        let mut args = vec!["sync"];
        args.extend_from_slice(sync_args);
        let out = self
            .command(&args)
            .env("INLET_PANIC_AT", at)
            .output()
            .expect("run inlet");
        let stdout = String::from_utf8_lossy(&out.stdout);
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(1), "{stdout}\n{stderr}");
        let said = format!("{stdout}{stderr}");
        assert!(
            said.contains(&format!("stream `{stream}` did not finish"))
                && said.contains("panicked"),
            "{stdout}\n{stderr}"
        );
        assert!(
            parquet_files(&self.lake()).is_empty(),
            "nothing may land from a reader that died"
        );
        let runs = self.ok(&["runs", connection]);
        assert!(runs.contains("failed"), "{runs}");
        serde_json::from_str(&self.ok(&["state", "show", connection])).expect("state json")
    }
}
