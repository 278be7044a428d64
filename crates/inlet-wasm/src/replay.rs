//! A recorded API served on loopback: the test harness for plugins.
//!
//! A recording is a JSON object from request path (with query) to the response body
//! (any JSON value, served as is). Run a plugin against it with the connection's
//! `sandbox.redirect` pointing the plugin's declared origin at [`ReplayServer::origin`]
//! (and `allow_private = ["127.0.0.1"]`, `allow_http = true`): the plugin code runs
//! unchanged, the sandbox checks still apply to the declared host.
//!
//! Paths not in the recording answer 404. `/__echo` answers with the request's head, so
//! tests can see what the host really sent.

use std::{
    collections::BTreeMap,
    io::{BufRead, BufReader, Write},
    net::{SocketAddr, TcpListener, TcpStream},
    path::Path,
    sync::{
        Arc,
        atomic::{AtomicBool, AtomicU64, Ordering},
    },
};

/// A running replay server; stops when dropped.
#[derive(Debug)]
pub struct ReplayServer {
    addr: SocketAddr,
    stop: Arc<AtomicBool>,
    requests: Arc<AtomicU64>,
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
        let (s, r) = (stop.clone(), requests.clone());
        std::thread::spawn(move || {
            for conn in listener.incoming() {
                if s.load(Ordering::Relaxed) {
                    break;
                }
                let Ok(conn) = conn else { continue };
                r.fetch_add(1, Ordering::Relaxed);
                let bodies = bodies.clone();
                std::thread::spawn(move || {
                    let _ = serve(conn, &bodies);
                });
            }
        });
        Ok(ReplayServer {
            addr,
            stop,
            requests,
        })
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

fn serve(conn: TcpStream, bodies: &BTreeMap<String, Vec<u8>>) -> std::io::Result<()> {
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
    let (status, body): (&str, Vec<u8>) = if path == "/__echo" {
        ("200 OK", head.clone().into_bytes())
    } else {
        match bodies.get(&path) {
            Some(b) => ("200 OK", b.clone()),
            None => ("404 Not Found", b"{\"error\":\"not recorded\"}".to_vec()),
        }
    };
    // One write: a head and a body in separate segments would wait on Nagle and the
    // client's delayed ACK.
    let mut response = format!(
        "HTTP/1.1 {status}\r\nContent-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n",
        body.len()
    )
    .into_bytes();
    response.extend_from_slice(&body);
    let mut conn = conn;
    let _ = conn.set_nodelay(true);
    conn.write_all(&response)?;
    conn.flush()
}
