//! A real AWS API on 127.0.0.1: `moto` in server mode (PyPI `moto[server]`), serving Glue,
//! S3 and IAM on one endpoint, with IAM enforced.
//!
//! moto checks IAM policies once `INITIAL_NO_AUTH_ACTION_COUNT` requests have passed
//! unchecked: the harness spends exactly those on creating an `admin` user (allowed `*`)
//! and its keys, then every other user, policy and bucket is made through the admin, so a
//! key made by [`MotoServer::user`] is allowed what its policy says and nothing more
//! (moto answers a denied Glue call with 403 `AccessDenied` naming the action).
//!
//! One server per test binary ([`MotoServer::shared`]): it starts in about a second and
//! keeps its state in memory, so tests keep apart by their own database, bucket and user
//! names. The server's Python reads its stdin and exits when it closes, so the server goes
//! away with the test process even though a `static` is never dropped.

use std::{
    io::Read,
    net::TcpStream,
    process::{Child, ChildStdin, Command, Stdio},
    sync::{Mutex, OnceLock},
    time::{Duration, Instant},
};

/// The unchecked requests moto allows before it enforces IAM: the admin's user, policy, key.
const SETUP_REQUESTS: u32 = 3;

/// The region every client of the harness uses.
pub const REGION: &str = "eu-west-1";

/// A running moto server and its admin's keys.
#[derive(Debug)]
pub struct MotoServer {
    child: Mutex<Child>,
    _stdin: Mutex<Option<ChildStdin>>,
    python: String,
    port: u16,
    admin: (String, String),
}

/// A Python with moto's server, if one is available. Under CI (env `CI` set) it must be.
pub fn moto_python() -> Option<String> {
    crate::lake::find_python(
        "import moto.server, boto3, flask",
        "moto[server]",
        "the Glue checks",
    )
}

/// The launcher: moto's server, ended when the test process (holding stdin) goes away.
const LAUNCH: &str = r#"
import os, sys, threading
def watch():
    sys.stdin.read()
    os._exit(0)
threading.Thread(target=watch, daemon=True).start()
from moto.server import main
main(["-H", "127.0.0.1", "-p", sys.argv[1]])
"#;

impl MotoServer {
    /// The server of this test binary, started on first use; `None` when no Python with
    /// moto is found outside CI (the caller skips its checks).
    pub fn shared() -> Option<&'static MotoServer> {
        static SERVER: OnceLock<Option<MotoServer>> = OnceLock::new();
        SERVER
            .get_or_init(|| moto_python().map(|py| MotoServer::start(&py)))
            .as_ref()
    }

    /// Start a server with the interpreter `python` and make its admin.
    pub fn start(python: &str) -> MotoServer {
        let port = crate::free_port();
        let mut child = Command::new(python)
            .args(["-c", LAUNCH, &port.to_string()])
            .env("INITIAL_NO_AUTH_ACTION_COUNT", SETUP_REQUESTS.to_string())
            .env("MOTO_ALLOW_NONEXISTENT_REGION", "true")
            .stdin(Stdio::piped())
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .expect("start moto's server");
        let stdin = child.stdin.take();
        let deadline = Instant::now() + Duration::from_secs(30);
        while TcpStream::connect(("127.0.0.1", port)).is_err() {
            if let Ok(Some(status)) = child.try_wait() {
                let mut err = String::new();
                if let Some(mut e) = child.stderr.take() {
                    let _ = e.read_to_string(&mut err);
                }
                panic!("moto's server exited ({status}): {err}");
            }
            assert!(
                Instant::now() < deadline,
                "moto's server did not listen on {port} within 30 s"
            );
            std::thread::sleep(Duration::from_millis(50));
        }
        let mut server = MotoServer {
            child: Mutex::new(child),
            _stdin: Mutex::new(stdin),
            python: python.to_string(),
            port,
            admin: (String::new(), String::new()),
        };
        let out = server.boto_as(
            ("AKIAIOSFODNN7EXAMPLE", "setup"),
            r#"
iam = boto3.client("iam", **kw)
iam.create_user(UserName="admin")
iam.put_user_policy(UserName="admin", PolicyName="all", PolicyDocument=json.dumps(
    {"Version": "2012-10-17", "Statement": [{"Effect": "Allow", "Action": "*", "Resource": "*"}]}))
k = iam.create_access_key(UserName="admin")["AccessKey"]
print(k["AccessKeyId"], k["SecretAccessKey"])
"#,
        );
        let (id, secret) = out
            .split_once(' ')
            .expect("the admin's access key id and secret");
        server.admin = (id.to_string(), secret.to_string());
        server
    }

    /// `http://127.0.0.1:<port>`: Glue, S3 and IAM.
    pub fn endpoint(&self) -> String {
        format!("http://127.0.0.1:{}", self.port)
    }

    /// The interpreter running the server (it has boto3).
    pub fn python(&self) -> &str {
        &self.python
    }

    /// The admin's access key id and secret (allowed everything).
    pub fn admin(&self) -> (&str, &str) {
        (&self.admin.0, &self.admin.1)
    }

    /// A new IAM user `name` allowed exactly `actions` (e.g. `"glue:GetTable"`, `"s3:*"`) on
    /// every resource; returns its access key id and secret.
    pub fn user(&self, name: &str, actions: &[&str]) -> (String, String) {
        let actions = serde_json::to_string(actions).expect("actions as JSON");
        let out = self.boto(&format!(
            r#"
iam = boto3.client("iam", **kw)
iam.create_user(UserName={name:?})
iam.put_user_policy(UserName={name:?}, PolicyName="inlet", PolicyDocument=json.dumps(
    {{"Version": "2012-10-17", "Statement": [{{"Effect": "Allow", "Action": {actions}, "Resource": "*"}}]}}))
k = iam.create_access_key(UserName={name:?})["AccessKey"]
print(k["AccessKeyId"], k["SecretAccessKey"])
"#
        ));
        let (id, secret) = out.split_once(' ').expect("the user's access key");
        (id.to_string(), secret.to_string())
    }

    /// Create the bucket `name` (as the admin).
    pub fn bucket(&self, name: &str) {
        self.boto(&format!(
            "boto3.client('s3', **kw).create_bucket(Bucket={name:?}, \
             CreateBucketConfiguration={{'LocationConstraint': {REGION:?}}})"
        ));
    }

    /// A `[destinations.<name>]` table landing in `s3://<bucket>/raw` on this server (the
    /// bucket is created), with its Glue catalog in `database`, as the admin (whose secret
    /// is a test value).
    pub fn destination_toml(&self, name: &str, bucket: &str, database: &str) -> String {
        self.bucket(bucket);
        format!(
            "[destinations.{name}]\nurl = \"s3://{bucket}/raw\"\nendpoint = \"{endpoint}\"\npath_style = true\nregion = \"{REGION}\"\naccess_key_id = \"{id}\"\nsecret_access_key = \"{secret}\"\ncatalog = {{ type = \"glue\", database = \"{database}\", endpoint = \"{endpoint}\" }}\n\n",
            endpoint = self.endpoint(),
            id = self.admin.0,
            secret = self.admin.1,
        )
    }

    /// A Glue table as boto3 reads it: columns `[name, type, comment]`, partition keys
    /// `[name, type]`, the SerDe, the location, the parameters and the number of versions.
    pub fn glue_table(&self, database: &str, table: &str) -> serde_json::Value {
        let out = self.boto(&format!(
            r#"
g = boto3.client("glue", **kw)
t = g.get_table(DatabaseName={database:?}, Name={table:?})["Table"]
sd = t["StorageDescriptor"]
v = g.get_table_versions(DatabaseName={database:?}, TableName={table:?})["TableVersions"]
print(json.dumps({{"columns": [[c["Name"], c["Type"], c.get("Comment")] for c in sd["Columns"]],
                  "partition_keys": [[k["Name"], k["Type"]] for k in t.get("PartitionKeys", [])],
                  "serde": sd["SerdeInfo"]["SerializationLibrary"], "location": sd["Location"],
                  "parameters": t.get("Parameters", {{}}), "versions": len(v)}}))
"#
        ));
        serde_json::from_str(&out).expect("boto3's JSON")
    }

    /// Run Python `code` as the admin with `boto3`, `json` imported and `kw` holding the
    /// client arguments (endpoint, region, keys); returns its stdout, trimmed.
    pub fn boto(&self, code: &str) -> String {
        self.boto_as((&self.admin.0, &self.admin.1), code)
    }

    fn boto_as(&self, (id, secret): (&str, &str), code: &str) -> String {
        let prelude = format!(
            "import boto3, json\nkw = dict(endpoint_url={:?}, region_name={REGION:?}, \
             aws_access_key_id={id:?}, aws_secret_access_key={secret:?})\n",
            self.endpoint()
        );
        crate::lake::python(&self.python, &format!("{prelude}{code}"))
    }
}

impl Drop for MotoServer {
    fn drop(&mut self) {
        if let Ok(mut child) = self.child.lock() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}
