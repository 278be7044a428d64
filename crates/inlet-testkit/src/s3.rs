//! An S3-compatible server on 127.0.0.1: s3s-fs over a folder, SigV4 checked, so the
//! real AWS SDK talks to it as to S3. Buckets are the folders of [`S3Server::root`];
//! an object is the file at `root/bucket/key`.

use std::path::{Path, PathBuf};

use s3s::{access::S3Access, auth::SimpleAuth, service::S3ServiceBuilder};

use crate::serve::{self, Background};

/// Where a server keeps its objects.
#[derive(Debug)]
enum Root {
    Temp(tempfile::TempDir),
    Dir(PathBuf),
}

/// How to start an [`S3Server`]: credentials, buckets, an access check, a folder.
pub struct S3ServerBuilder {
    root: Root,
    service: S3ServiceBuilder,
    port: u16,
}

/// A running S3 server; stops when dropped.
#[derive(Debug)]
pub struct S3Server {
    root: Root,
    server: Background,
}

impl S3Server {
    /// A server over a fresh temp dir with the one key pair `access_key`/`secret_key`.
    pub fn builder(access_key: &str, secret_key: &str) -> S3ServerBuilder {
        let dir = tempfile::tempdir().expect("a temp dir for the S3 server");
        S3ServerBuilder::new(Root::Temp(dir), access_key, secret_key)
    }

    /// A server over the folder `dir` (created if missing).
    pub fn builder_at(dir: &Path, access_key: &str, secret_key: &str) -> S3ServerBuilder {
        std::fs::create_dir_all(dir).expect("the S3 server's folder");
        S3ServerBuilder::new(Root::Dir(dir.to_path_buf()), access_key, secret_key)
    }

    /// A server over a temp dir with one bucket, `bucket`.
    pub fn start(access_key: &str, secret_key: &str, bucket: &str) -> S3Server {
        Self::builder(access_key, secret_key).bucket(bucket).start()
    }

    /// `http://127.0.0.1:<port>`.
    pub fn endpoint(&self) -> String {
        format!("http://{}", self.server.addr)
    }

    /// The folder holding the buckets.
    pub fn root(&self) -> &Path {
        match &self.root {
            Root::Temp(d) => d.path(),
            Root::Dir(d) => d,
        }
    }

    /// Block until the server stops (for a server run as a program: it never does).
    pub fn wait(self) {
        self.server.wait();
    }
}

impl std::fmt::Debug for S3ServerBuilder {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("S3ServerBuilder")
            .field("root", &self.root)
            .field("port", &self.port)
            .finish_non_exhaustive()
    }
}

impl S3ServerBuilder {
    fn new(root: Root, access_key: &str, secret_key: &str) -> Self {
        let dir = match &root {
            Root::Temp(d) => d.path().to_path_buf(),
            Root::Dir(d) => d.clone(),
        };
        let fs = s3s_fs::FileSystem::new(&dir).unwrap_or_else(|e| panic!("s3s-fs: {e:?}"));
        let mut service = S3ServiceBuilder::new(fs);
        service.set_auth(SimpleAuth::from_single(access_key, secret_key));
        S3ServerBuilder {
            root,
            service,
            port: 0,
        }
    }

    /// Create bucket `name` (an empty folder).
    pub fn bucket(self, name: &str) -> Self {
        let dir = match &self.root {
            Root::Temp(d) => d.path().join(name),
            Root::Dir(d) => d.join(name),
        };
        std::fs::create_dir_all(dir).expect("a bucket folder");
        self
    }

    /// Check every request with `access` (to inject failures).
    pub fn access(mut self, access: impl S3Access) -> Self {
        self.service.set_access(access);
        self
    }

    /// Listen on `port` (default: a free one).
    pub fn port(mut self, port: u16) -> Self {
        self.port = port;
        self
    }

    /// Start serving.
    pub fn start(self) -> S3Server {
        let service = self.service.build();
        let server = serve::serve(
            serve::bind(self.port),
            2,
            move |req: hyper::Request<hyper::body::Incoming>| {
                let service = service.clone();
                async move { service.call(req.map(s3s::Body::from)).await }
            },
        );
        S3Server {
            root: self.root,
            server,
        }
    }
}

/// An access check that holds every write (an object or part uploaded, a multipart upload
/// begun or completed, an object copied) of a key containing a given part while it is
/// closed: a lake slow to take what a run sends. Other requests pass. Requests must be
/// signed.
#[derive(Debug, Clone)]
pub struct WriteGate {
    closed: std::sync::Arc<std::sync::atomic::AtomicBool>,
    key_part: std::sync::Arc<str>,
}

impl WriteGate {
    /// A gate, open, for writes of keys containing `key_part`.
    pub fn new(key_part: &str) -> WriteGate {
        WriteGate {
            closed: Default::default(),
            key_part: key_part.into(),
        }
    }

    /// Hold writes from now on.
    pub fn close(&self) {
        self.closed.store(true, std::sync::atomic::Ordering::SeqCst);
    }

    /// Let the held writes and the next ones through.
    pub fn open(&self) {
        self.closed
            .store(false, std::sync::atomic::Ordering::SeqCst);
    }
}

#[async_trait::async_trait]
impl S3Access for WriteGate {
    async fn check(&self, cx: &mut s3s::access::S3AccessContext<'_>) -> s3s::S3Result<()> {
        if cx.credentials().is_none() {
            return Err(s3s::s3_error!(AccessDenied, "Signature is required"));
        }
        let write = matches!(
            cx.s3_op().name(),
            "PutObject"
                | "UploadPart"
                | "CreateMultipartUpload"
                | "CompleteMultipartUpload"
                | "CopyObject"
        ) && matches!(cx.s3_path(), s3s::path::S3Path::Object { key, .. }
                if key.contains(&*self.key_part));
        while write && self.closed.load(std::sync::atomic::Ordering::SeqCst) {
            tokio::time::sleep(std::time::Duration::from_millis(50)).await;
        }
        Ok(())
    }
}
