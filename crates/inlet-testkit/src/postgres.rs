//! A throwaway PostgreSQL primary and streaming hot standby (`pg_basebackup -R`) in a
//! temp dir on free ports, from the server binaries on PATH (or Debian's location).
//! As root, the servers run as the `postgres` OS user (Postgres refuses root).
//! [`PgPair::start_opts`] picks another major version (`scripts/ensure-postgres-version`
//! installs 16-18) and sets the pair up for logical decoding on the standby.

use crate::{free_port, project::TestProject};

use std::{
    os::unix::fs::PermissionsExt,
    path::{Path, PathBuf},
    process::Command,
    time::{Duration, Instant},
};

/// The `postgres` user's password on both servers (tests assert it is never printed).
pub const PASSWORD: &str = "s3cr3t-Pa55word-never-printed";

/// A primary and a hot standby replicating from it.
#[derive(Debug)]
pub struct PgPair {
    /// The servers' data folders, sockets and certificates.
    pub dir: tempfile::TempDir,
    /// The primary's TCP port on 127.0.0.1.
    pub primary_port: u16,
    /// The standby's TCP port on 127.0.0.1.
    pub standby_port: u16,
    bin: PathBuf,
    os_user: Option<String>,
    rt: tokio::runtime::Runtime,
}

fn bin_dir() -> PathBuf {
    if let Ok(out) = Command::new("sh")
        .args(["-c", "command -v initdb"])
        .output()
        && out.status.success()
    {
        let p = PathBuf::from(String::from_utf8_lossy(&out.stdout).trim());
        let p = std::fs::canonicalize(&p).unwrap_or(p);
        if let Some(d) = p.parent() {
            return d.to_path_buf();
        }
    }
    PathBuf::from("/usr/lib/postgresql/15/bin")
}

/// How [`PgPair::start_opts`] sets the pair up.
#[derive(Debug, Clone, Default)]
pub struct PgOptions {
    /// The major version (16, 17, 18) from `scripts/ensure-postgres-version`; `None`:
    /// the binaries on PATH (Debian's 15).
    pub version: Option<u32>,
    /// `wal_level = logical` on both servers, a physical slot from the standby
    /// (`primary_slot_name`) and `hot_standby_feedback = on`: logical decoding on the
    /// standby works.
    pub logical: bool,
    /// TLS on both servers (see [`PgPair::start_with`]).
    pub tls: bool,
    /// Appended to the standby's config.
    pub standby_conf: String,
    /// Appended to the primary's config.
    pub primary_conf: String,
}

/// The bin folder of PostgreSQL `major`, installed by `scripts/ensure-postgres-version`.
pub fn versioned_bin(major: u32) -> PathBuf {
    let script =
        Path::new(env!("CARGO_MANIFEST_DIR")).join("../../scripts/ensure-postgres-version");
    let out = Command::new("bash")
        .arg(&script)
        .arg(major.to_string())
        .output()
        .unwrap_or_else(|e| panic!("run {}: {e}", script.display()));
    assert!(
        out.status.success(),
        "{} {major} failed: {}",
        script.display(),
        String::from_utf8_lossy(&out.stderr)
    );
    PathBuf::from(String::from_utf8_lossy(&out.stdout).trim())
}

impl PgPair {
    /// Start both servers; `standby_conf` is appended to the standby's config.
    pub fn start(standby_conf: &str) -> PgPair {
        Self::start_with(standby_conf, false)
    }

    /// As [`PgPair::start`]; with `tls`, both servers accept TLS with a certificate for
    /// `localhost` and `127.0.0.1` signed by a test CA (`ca.crt` in the temp dir).
    pub fn start_with(standby_conf: &str, tls: bool) -> PgPair {
        Self::start_opts(PgOptions {
            tls,
            standby_conf: standby_conf.to_string(),
            ..Default::default()
        })
    }

    /// The major version of the servers.
    pub fn version(&self) -> u32 {
        self.scalar(
            "postgres",
            "SELECT current_setting('server_version_num')::int / 10000",
        )
        .parse()
        .unwrap_or(0)
    }

    /// Start a pair set up as `opts` says.
    pub fn start_opts(opts: PgOptions) -> PgPair {
        let tls = opts.tls;
        let dir = tempfile::tempdir().expect("tempdir");
        let is_root = Command::new("id")
            .arg("-u")
            .output()
            .map(|o| String::from_utf8_lossy(&o.stdout).trim() == "0")
            .unwrap_or(false);
        let os_user = is_root.then(|| "postgres".to_string());
        if let Some(u) = &os_user {
            let st = Command::new("chown")
                .args(["-R", u])
                .arg(dir.path())
                .status()
                .expect("chown");
            assert!(st.success(), "chown temp dir to {u}");
        }
        std::fs::set_permissions(dir.path(), std::fs::Permissions::from_mode(0o755)).ok();
        let mut pair = PgPair {
            dir,
            primary_port: free_port(),
            standby_port: free_port(),
            bin: opts.version.map_or_else(bin_dir, versioned_bin),
            os_user,
            rt: tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .expect("runtime"),
        };
        let primary = pair.dir.path().join("primary");
        let pwfile = pair.dir.path().join("pw");
        std::fs::write(&pwfile, PASSWORD).expect("pwfile");
        if let Some(u) = &pair.os_user {
            Command::new("chown").arg(u).arg(&pwfile).status().ok();
        }
        pair.run(
            "initdb",
            &[
                "-D",
                primary.to_str().expect("path"),
                "-U",
                "postgres",
                "--auth-local=trust",
                "--auth-host=scram-sha-256",
                "-E",
                "UTF8",
                "--locale=C.UTF-8",
                "--pwfile",
                pwfile.to_str().expect("path"),
            ],
        );
        let sock = pair.dir.path().to_str().expect("path").to_string();
        std::fs::write(
            primary.join("postgresql.auto.conf"),
            format!(
                "listen_addresses = '127.0.0.1'\nport = {}\nunix_socket_directories = '{sock}'\n\
                 wal_level = replica\nmax_wal_senders = 5\nhot_standby = on\nfsync = off\n\
                 full_page_writes = off\nshared_buffers = 32MB\n\
                 max_connections = 40\nautovacuum = off\ntimezone = 'UTC'\nDateStyle = 'ISO, MDY'\n\
                 {}{}\n",
                pair.primary_port,
                if opts.logical {
                    "wal_level = logical\nmax_replication_slots = 20\n"
                } else {
                    ""
                },
                opts.primary_conf
            ),
        )
        .expect("conf");
        // Replication connections from the standby over the socket are trusted; TCP
        // logins need the password.
        let hba = std::fs::read_to_string(primary.join("pg_hba.conf")).expect("hba");
        std::fs::write(
            primary.join("pg_hba.conf"),
            format!("local replication all trust\n{hba}"),
        )
        .expect("hba");
        if tls {
            pair.write_certificates(&primary);
        }
        pair.chown(&primary);
        pair.primary_port = pair.start_server(&primary, pair.primary_port);
        let standby = pair.dir.path().join("standby");
        let slot_args: &[&str] = if opts.logical {
            &["-C", "-S", "standby1"]
        } else {
            &[]
        };
        pair.run(
            "pg_basebackup",
            &[
                slot_args,
                &[
                    "-h",
                    &sock,
                    "-p",
                    &pair.primary_port.to_string(),
                    "-U",
                    "postgres",
                    "-D",
                    standby.to_str().expect("path"),
                    "-R",
                    "-X",
                    "stream",
                ],
            ]
            .concat(),
        );
        let mut auto = std::fs::read_to_string(standby.join("postgresql.auto.conf")).expect("auto");
        // An older server's walreceiver (16) refuses the options a newer pg_basebackup
        // (18's, see versioned_bin) writes that its libpq does not know.
        auto = auto.replace(" sslnegotiation=postgres", "");
        auto = auto.replace(
            &format!("port = {}", pair.primary_port),
            &format!("port = {}", pair.standby_port),
        );
        auto.push_str(&format!(
            "\nport = {}\nhot_standby_feedback = {}\n{}\n",
            pair.standby_port,
            if opts.logical { "on" } else { "off" },
            opts.standby_conf
        ));
        std::fs::write(standby.join("postgresql.auto.conf"), auto).expect("standby conf");
        pair.chown(&standby);
        pair.standby_port = pair.start_server(&standby, pair.standby_port);
        pair.watchdog();
        // Wait for the standby to accept logins.
        let deadline = Instant::now() + Duration::from_secs(60);
        loop {
            let ok = pair
                .rt
                .block_on(connect(pair.standby_port, "postgres"))
                .is_ok();
            if ok {
                break;
            }
            assert!(Instant::now() < deadline, "standby did not come up");
            std::thread::sleep(Duration::from_millis(200));
        }
        pair
    }

    /// The CA certificate of a `tls` pair.
    pub fn ca_cert(&self) -> PathBuf {
        self.dir.path().join("ca.crt")
    }

    fn write_certificates(&self, data: &Path) {
        let mut ca = rcgen::CertificateParams::new(Vec::<String>::new()).expect("ca params");
        ca.is_ca = rcgen::IsCa::Ca(rcgen::BasicConstraints::Unconstrained);
        ca.distinguished_name
            .push(rcgen::DnType::CommonName, "inlet test CA");
        let ca_key = rcgen::KeyPair::generate().expect("ca key");
        let ca_cert = ca.self_signed(&ca_key).expect("ca cert");
        let leaf = rcgen::CertificateParams::new(vec!["localhost".into(), "127.0.0.1".into()])
            .expect("leaf params");
        let leaf_key = rcgen::KeyPair::generate().expect("leaf key");
        let leaf_cert = leaf
            .signed_by(&leaf_key, &ca_cert, &ca_key)
            .expect("leaf cert");
        std::fs::write(data.join("server.crt"), leaf_cert.pem()).expect("crt");
        std::fs::write(data.join("server.key"), leaf_key.serialize_pem()).expect("key");
        std::fs::set_permissions(
            data.join("server.key"),
            std::fs::Permissions::from_mode(0o600),
        )
        .expect("key mode");
        std::fs::write(self.ca_cert(), ca_cert.pem()).expect("ca");
        let mut conf = std::fs::read_to_string(data.join("postgresql.auto.conf")).expect("conf");
        conf.push_str("ssl = on\n");
        std::fs::write(data.join("postgresql.auto.conf"), conf).expect("conf");
    }

    fn chown(&self, path: &Path) {
        if let Some(u) = &self.os_user {
            Command::new("chown")
                .args(["-R", u])
                .arg(path)
                .status()
                .ok();
        }
    }

    fn command(&self, program: &str) -> Command {
        let exe = self.bin.join(program);
        let exe = if exe.exists() {
            exe
        } else {
            PathBuf::from(program)
        };
        match &self.os_user {
            Some(u) => {
                let mut c = Command::new("runuser");
                c.args(["-u", u, "--"]).arg(exe);
                c
            }
            None => Command::new(exe),
        }
    }

    fn run(&self, program: &str, args: &[&str]) {
        let out = self
            .command(program)
            .args(args)
            .output()
            .unwrap_or_else(|e| panic!("run {program}: {e}"));
        assert!(
            out.status.success(),
            "{program} failed: {}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
    }

    /// Start the server in `data`, configured for `port`; the port it listens on. A port
    /// taken since [`free_port`] chose it is replaced by another (three tries); any other
    /// failure panics with the end of the server's log.
    fn start_server(&self, data: &Path, mut port: u16) -> u16 {
        let log = data.join("server.log");
        for _ in 0..3 {
            let out = self
                .command("pg_ctl")
                .args(["-D", data.to_str().expect("path")])
                .args(["-l", log.to_str().expect("path"), "-w", "-t", "60", "start"])
                .output()
                .unwrap_or_else(|e| panic!("run pg_ctl: {e}"));
            if out.status.success() {
                return port;
            }
            let text = std::fs::read_to_string(&log).unwrap_or_default();
            if !text.contains("could not bind") {
                let tail: Vec<&str> = text.lines().rev().take(20).collect();
                panic!(
                    "pg_ctl start failed: {}{}\nserver log (last lines):\n{}",
                    String::from_utf8_lossy(&out.stdout),
                    String::from_utf8_lossy(&out.stderr),
                    tail.into_iter().rev().collect::<Vec<_>>().join("\n")
                );
            }
            let conf = data.join("postgresql.auto.conf");
            let next = free_port();
            let text = std::fs::read_to_string(&conf).expect("conf");
            std::fs::write(&conf, format!("{text}\nport = {next}\n")).expect("conf");
            std::fs::remove_file(&log).ok();
            port = next;
        }
        panic!("pg_ctl start failed three times: each port was taken");
    }

    /// Stop the servers when this test process dies, even without unwinding.
    fn watchdog(&self) {
        let pid = std::process::id();
        let ctl = self.bin.join("pg_ctl");
        let stop = |d: &Path| {
            let cmd = format!("{} -D {} -m immediate stop", ctl.display(), d.display());
            match &self.os_user {
                Some(u) => format!("runuser -u {u} -- {cmd}"),
                None => cmd,
            }
        };
        let script = format!(
            "while kill -0 {pid} 2>/dev/null; do sleep 1; done; {} >/dev/null 2>&1; {} >/dev/null 2>&1; rm -rf {}",
            stop(&self.dir.path().join("standby")),
            stop(&self.dir.path().join("primary")),
            self.dir.path().display()
        );
        Command::new("setsid")
            .args(["sh", "-c", &script])
            .stdin(std::process::Stdio::null())
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null())
            .spawn()
            .ok();
    }

    /// Run SQL on the primary (simple protocol; several statements allowed); returns the
    /// rows of the last statement as text.
    pub fn primary(&self, db: &str, sql: &str) -> Vec<Vec<Option<String>>> {
        self.sql(self.primary_port, db, sql)
    }

    /// Run SQL on the standby.
    pub fn standby(&self, db: &str, sql: &str) -> Vec<Vec<Option<String>>> {
        self.sql(self.standby_port, db, sql)
    }

    /// Run SQL on the server at `port` (see [`PgPair::primary`]).
    pub fn sql(&self, port: u16, db: &str, sql: &str) -> Vec<Vec<Option<String>>> {
        self.rt.block_on(async {
            let client = connect(port, db).await.expect("connect");
            let msgs = client
                .simple_query(sql)
                .await
                .unwrap_or_else(|e| panic!("{sql}: {e}"));
            let mut rows = Vec::new();
            for m in msgs {
                if let tokio_postgres::SimpleQueryMessage::Row(r) = m {
                    rows.push(
                        (0..r.len())
                            .map(|i| r.get(i).map(|s| s.to_string()))
                            .collect(),
                    );
                }
            }
            rows
        })
    }

    /// Run a future on the harness's runtime (for tests that drive the source in-process).
    pub fn block_on<F: std::future::Future>(&self, f: F) -> F::Output {
        self.rt.block_on(f)
    }

    /// One text value from the primary.
    pub fn scalar(&self, db: &str, sql: &str) -> String {
        self.primary(db, sql)
            .first()
            .and_then(|r| r.first().cloned().flatten())
            .unwrap_or_default()
    }

    /// Create a database on the primary and wait until the standby has it.
    pub fn create_db(&self, name: &str) {
        self.primary("postgres", &format!("CREATE DATABASE {name}"));
        self.wait_replay();
    }

    /// Wait until the standby has replayed everything the primary has written.
    pub fn wait_replay(&self) {
        let lsn = self.scalar("postgres", "SELECT pg_current_wal_insert_lsn()::text");
        let deadline = Instant::now() + Duration::from_secs(60);
        loop {
            let done = self.standby(
                "postgres",
                &format!("SELECT pg_last_wal_replay_lsn() >= '{lsn}'::pg_lsn"),
            );
            if done.first().and_then(|r| r[0].as_deref()) == Some("t") {
                return;
            }
            assert!(Instant::now() < deadline, "standby did not catch up");
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    /// Run the SQL script at `path` on the primary with `psql -v ON_ERROR_STOP=1` (over
    /// the socket, as the `postgres` superuser), for scripts the simple protocol cannot
    /// run (`COPY ... FROM stdin`, psql meta-commands). The script is piped on stdin, so
    /// the server's OS user needs no access to it.
    pub fn psql_file(&self, db: &str, path: &Path) {
        let script =
            std::fs::File::open(path).unwrap_or_else(|e| panic!("open {}: {e}", path.display()));
        let out = self
            .command("psql")
            .args(["-X", "-q", "-v", "ON_ERROR_STOP=1", "-h"])
            .arg(self.dir.path())
            .args([
                "-p",
                &self.primary_port.to_string(),
                "-U",
                "postgres",
                "-d",
                db,
            ])
            .args(["-f", "-"])
            .stdin(script)
            .output()
            .unwrap_or_else(|e| panic!("run psql: {e}"));
        assert!(
            out.status.success(),
            "psql -f {} failed: {}",
            path.display(),
            String::from_utf8_lossy(&out.stderr)
        );
    }

    /// Create database `db`, run `sql` in it on the primary, and wait until the standby
    /// has replayed it.
    pub fn seed(&self, db: &str, sql: &str) {
        self.create_db(db);
        self.primary(db, sql);
        self.wait_replay();
    }

    /// A [`project`] whose connection `c` reads database `db` on the standby:
    /// `config_extra` goes after the connection lines in `[connections.c.config]`,
    /// `connection_extra` in `[connections.c]`, `streams` after them.
    pub fn standby_project(
        &self,
        db: &str,
        config_extra: &str,
        connection_extra: &str,
        streams: &str,
    ) -> TestProject {
        let config = format!("{}{config_extra}", self.config_toml(self.standby_port, db));
        project(&config, connection_extra, streams)
    }

    /// The `[connections.c.config]` lines for the standby (or the primary).
    pub fn config_toml(&self, port: u16, db: &str) -> String {
        format!(
            "host = \"127.0.0.1\"\nport = {port}\ndatabase = \"{db}\"\nuser = \"postgres\"\npassword = \"${{env:INLET_TEST_PGPASSWORD}}\"\nssl_mode = \"disable\"\n"
        )
    }
}

impl Drop for PgPair {
    fn drop(&mut self) {
        for d in ["standby", "primary"] {
            let data = self.dir.path().join(d);
            self.command("pg_ctl")
                .args([
                    "-D",
                    data.to_str().unwrap_or_default(),
                    "-m",
                    "immediate",
                    "stop",
                ])
                .output()
                .ok();
        }
    }
}

/// A client of the server at `port`, as the `postgres` superuser.
pub async fn connect(port: u16, db: &str) -> Result<tokio_postgres::Client, tokio_postgres::Error> {
    let (client, conn) = tokio_postgres::Config::new()
        .host("127.0.0.1")
        .port(port)
        .dbname(db)
        .user("postgres")
        .password(PASSWORD)
        .connect(tokio_postgres::NoTls)
        .await?;
    tokio::spawn(async move {
        let _ = conn.await;
    });
    Ok(client)
}

/// A project with one `postgres` connection `c`: `connection_extra` goes in
/// `[connections.c]`, `config` in `[connections.c.config]`, `streams` after it. Every
/// command gets the test password in its environment, and [`TestProject::ok`] fails when
/// it is printed.
pub fn project(config: &str, connection_extra: &str, streams: &str) -> TestProject {
    TestProject::with_connection("postgres", connection_extra, config, streams)
        .env("INLET_TEST_PGPASSWORD", PASSWORD)
        .never_print(PASSWORD)
}
