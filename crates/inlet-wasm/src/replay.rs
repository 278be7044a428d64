//! A recorded API served on loopback: the test harness for plugins.
//!
//! A recording is a JSON object from request path (with query) to the response body
//! (any JSON value, served as is). Run a plugin against it with the connection's
//! `sandbox.redirect` pointing the plugin's declared origin at [`ReplayServer::origin`]
//! (and `allow_private = ["127.0.0.1"]`, `allow_http = true`): the plugin code runs
//! unchanged, the sandbox checks still apply to the declared host.
//!
//! Paths not in the recording answer 404. `/__echo` answers with the request's head, so
//! tests can see what the host really sent; `/__redirect` answers `302` to `/__echo`. [`ReplayServer::fail`] makes a path answer
//! with an error status a few times first (a 429 with `Retry-After`, a 502), as real APIs
//! do.

use std::{
    collections::BTreeMap,
    io::{BufRead, BufReader, Write},
    net::{SocketAddr, TcpListener, TcpStream},
    path::Path,
    sync::{
        Arc, Mutex,
        atomic::{AtomicBool, AtomicU64, Ordering},
    },
};

/// An error a path answers with before its recorded body.
#[derive(Debug, Clone)]
struct Fault {
    status: u16,
    times: u32,
    retry_after: Option<u64>,
}

type Faults = Arc<Mutex<BTreeMap<String, Vec<Fault>>>>;

/// A running replay server; stops when dropped.
#[derive(Debug)]
pub struct ReplayServer {
    addr: SocketAddr,
    stop: Arc<AtomicBool>,
    requests: Arc<AtomicU64>,
    faults: Faults,
}

impl ReplayServer {
    /// Serve `recording` (path → JSON body) on 127.0.0.1, on a free port.
    pub fn start(recording: BTreeMap<String, serde_json::Value>) -> std::io::Result<Self> {
        let bodies: Arc<BTreeMap<String, Vec<u8>>> = Arc::new(
            recording
                .into_iter()
                .map(|(k, v)| (k, v.to_string().into_bytes()))
                .collect(),
        );
        let listener = TcpListener::bind("127.0.0.1:0")?;
        let addr = listener.local_addr()?;
        let stop = Arc::new(AtomicBool::new(false));
        let requests = Arc::new(AtomicU64::new(0));
        let faults: Faults = Arc::default();
        let (s, r, f) = (stop.clone(), requests.clone(), faults.clone());
        std::thread::spawn(move || {
            for conn in listener.incoming() {
                if s.load(Ordering::Relaxed) {
                    break;
                }
                let Ok(conn) = conn else { continue };
                r.fetch_add(1, Ordering::Relaxed);
                let (bodies, faults) = (bodies.clone(), f.clone());
                std::thread::spawn(move || {
                    let _ = serve(conn, &bodies, &faults);
                });
            }
        });
        Ok(ReplayServer {
            addr,
            stop,
            requests,
            faults,
        })
    }

    /// Make `path` answer `status` (with `Retry-After: retry_after` when given) `times`
    /// times before it serves its recording. Faults on one path queue up in order.
    pub fn fail(&self, path: &str, status: u16, times: u32, retry_after: Option<u64>) {
        if let Ok(mut f) = self.faults.lock() {
            f.entry(path.to_string()).or_default().push(Fault {
                status,
                times,
                retry_after,
            });
        }
    }

    /// Serve the recording in a JSON file.
    pub fn from_file(path: &Path) -> std::io::Result<Self> {
        let text = std::fs::read_to_string(path)?;
        let rec: BTreeMap<String, serde_json::Value> = serde_json::from_str(&text)
            .map_err(|e| std::io::Error::new(std::io::ErrorKind::InvalidData, e))?;
        Self::start(rec)
    }

    /// `http://127.0.0.1:<port>`.
    pub fn origin(&self) -> String {
        format!("http://{}", self.addr)
    }

    /// The address.
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// Connections served so far.
    pub fn requests(&self) -> u64 {
        self.requests.load(Ordering::Relaxed)
    }
}

impl Drop for ReplayServer {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        // Wake the accept loop.
        let _ = TcpStream::connect(self.addr);
    }
}

fn next_fault(faults: &Faults, path: &str) -> Option<Fault> {
    let mut all = faults.lock().ok()?;
    let queue = all.get_mut(path)?;
    let first = queue.first_mut()?;
    let fault = first.clone();
    first.times = first.times.saturating_sub(1);
    if first.times == 0 {
        queue.remove(0);
    }
    (fault.times > 0).then_some(fault)
}

fn serve(
    conn: TcpStream,
    bodies: &BTreeMap<String, Vec<u8>>,
    faults: &Faults,
) -> std::io::Result<()> {
    let mut reader = BufReader::new(conn.try_clone()?);
    let mut head = String::new();
    loop {
        let mut line = String::new();
        if reader.read_line(&mut line)? == 0 || line == "\r\n" {
            break;
        }
        head.push_str(&line);
    }
    let path = head
        .lines()
        .next()
        .and_then(|l| l.split_whitespace().nth(1))
        .unwrap_or("/")
        .to_string();
    let mut extra = String::new();
    let (status, body): (String, Vec<u8>) = if let Some(f) = next_fault(faults, &path) {
        if let Some(secs) = f.retry_after {
            extra = format!("Retry-After: {secs}\r\n");
        }
        (
            format!("{} Injected", f.status),
            format!("{{\"error\":\"injected {}\"}}", f.status).into_bytes(),
        )
    } else if path == "/__redirect" {
        extra = "Location: /__echo\r\n".into();
        ("302 Found".into(), b"{\"moved\":\"/__echo\"}".to_vec())
    } else if path == "/__echo" {
        ("200 OK".into(), head.clone().into_bytes())
    } else {
        match bodies.get(&path) {
            Some(b) => ("200 OK".into(), b.clone()),
            None => (
                "404 Not Found".into(),
                b"{\"error\":\"not recorded\"}".to_vec(),
            ),
        }
    };
    // One write: a head and a body in separate segments would wait on Nagle and the
    // client's delayed ACK.
    let mut response = format!(
        "HTTP/1.1 {status}\r\nContent-Type: application/json\r\nContent-Length: {}\r\n{extra}Connection: close\r\n\r\n",
        body.len()
    )
    .into_bytes();
    response.extend_from_slice(&body);
    let mut conn = conn;
    let _ = conn.set_nodelay(true);
    conn.write_all(&response)?;
    conn.flush()
}
