//! An HTTP server on 127.0.0.1 that answers from a handler: the API tests' stand-in for
//! GitHub, Stripe, an OAuth token endpoint or a plugin's recorded API. Every request is
//! logged ([`ReplayServer::requests`]), so a test can assert what the client really sent.
//!
//! [`ReplayServer::recording`] serves a recorded API: a JSON object from request path
//! (with query) to the response body. Paths not in the recording answer 404; `/__echo`
//! answers with the request's head, so tests can see what a client really sent;
//! `/__redirect` answers `302` to `/__echo`; [`ReplayServer::fail`] makes a path answer
//! with an error status a few times first (a 429 with `Retry-After`, a 502), as real APIs
//! do.

use std::{
    collections::{BTreeMap, HashMap},
    net::SocketAddr,
    path::Path,
    sync::{
        Arc, Mutex, PoisonError,
        atomic::{AtomicUsize, Ordering},
    },
    time::Duration,
};

use http_body_util::{BodyExt, Full};
use hyper::body::Incoming;

use crate::serve::{self, Background, Never};

/// A request as the server saw it.
#[derive(Debug, Clone)]
pub struct Req {
    /// Its place in the order of arrival, from 0.
    pub n: usize,
    /// `GET`, `POST`, ...
    pub method: String,
    /// The path, without the query.
    pub path: String,
    /// The query as sent (empty when there is none).
    pub raw_query: String,
    /// The query, decoded.
    pub query: Vec<(String, String)>,
    /// The headers (names in lower case).
    pub headers: HashMap<String, String>,
    /// The body, as text.
    pub body: String,
    /// The request line and headers as text (`GET /x HTTP/1.1\r\nname: value\r\n...`).
    pub head: String,
}

impl Req {
    /// The first value of query parameter `name`.
    pub fn param(&self, name: &str) -> Option<&str> {
        self.query
            .iter()
            .find(|(k, _)| k == name)
            .map(|(_, v)| v.as_str())
    }

    /// The value of header `name` (lower case).
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers.get(name).map(String::as_str)
    }

    /// The path and, when there is one, `?` and the query.
    pub fn path_and_query(&self) -> String {
        if self.raw_query.is_empty() {
            self.path.clone()
        } else {
            format!("{}?{}", self.path, self.raw_query)
        }
    }
}

/// An answer.
#[derive(Debug, Clone)]
pub struct Reply {
    /// The status code.
    pub status: u16,
    /// Headers, in order.
    pub headers: Vec<(String, String)>,
    /// The body.
    pub body: Vec<u8>,
    /// How long to wait before answering (a slow server, a timeout).
    pub delay: Duration,
}

impl Reply {
    /// `200` with `value` as JSON.
    pub fn json(value: &serde_json::Value) -> Reply {
        Reply {
            status: 200,
            headers: vec![(
                "content-type".into(),
                "application/json; charset=utf-8".into(),
            )],
            body: serde_json::to_vec(value).expect("serialize a JSON reply"),
            delay: Duration::ZERO,
        }
    }

    /// `status` with `body` as is, no headers.
    pub fn status(status: u16, body: &str) -> Reply {
        Reply::bytes(status, body.as_bytes().to_vec())
    }

    /// `200` with `body` as is, no headers.
    pub fn ok(body: &str) -> Reply {
        Reply::status(200, body)
    }

    /// `status` with `body`, no headers.
    pub fn bytes(status: u16, body: Vec<u8>) -> Reply {
        Reply {
            status,
            headers: vec![],
            body,
            delay: Duration::ZERO,
        }
    }

    /// This reply with one more header.
    pub fn header(mut self, name: &str, value: impl Into<String>) -> Reply {
        self.headers.push((name.to_string(), value.into()));
        self
    }

    /// This reply, sent after `delay`.
    pub fn delayed(mut self, delay: Duration) -> Reply {
        self.delay = delay;
        self
    }
}

/// What answers the requests: called once per request, in the server's threads.
pub type Handler = Arc<dyn Fn(&Req) -> Reply + Send + Sync>;

/// An error a path answers with before its recorded body.
#[derive(Debug, Clone)]
struct Fault {
    status: u16,
    times: u32,
    retry_after: Option<u64>,
}

type Faults = Arc<Mutex<BTreeMap<String, Vec<Fault>>>>;

/// A running server on 127.0.0.1, on a free port; stops when dropped.
#[derive(Debug)]
pub struct ReplayServer {
    server: Background,
    log: Arc<Mutex<Vec<Req>>>,
    faults: Faults,
}

impl ReplayServer {
    /// Answer every request with `handler`.
    pub fn start(handler: Handler) -> ReplayServer {
        Self::start_on(0, handler)
    }

    /// As [`ReplayServer::start`], on `port` (0: a free one).
    pub fn start_on(port: u16, handler: Handler) -> ReplayServer {
        Self::serve(port, Arc::default(), handler)
    }

    fn serve(port: u16, faults: Faults, handler: Handler) -> ReplayServer {
        let log: Arc<Mutex<Vec<Req>>> = Arc::default();
        let count = Arc::new(AtomicUsize::new(0));
        let seen = log.clone();
        let server = serve::serve(
            serve::bind(port),
            1,
            move |req: hyper::Request<Incoming>| {
                let (handler, seen, count) = (handler.clone(), seen.clone(), count.clone());
                async move {
                    let r = read_request(req, &count).await;
                    lock(&seen).push(r.clone());
                    let reply = handler(&r);
                    // Only a delayed reply waits: even a zero sleep waits for the next
                    // tick of tokio's millisecond timer, which capped the server at
                    // about 700 replies a second.
                    if !reply.delay.is_zero() {
                        tokio::time::sleep(reply.delay).await;
                    }
                    let mut resp = hyper::Response::builder().status(reply.status);
                    for (k, v) in &reply.headers {
                        resp = resp.header(k, v);
                    }
                    Ok::<_, Never>(
                        resp.body(Full::new(bytes::Bytes::from(reply.body)))
                            .expect("a valid reply"),
                    )
                }
            },
        );
        ReplayServer {
            server,
            log,
            faults,
        }
    }

    /// Serve `recording` (path with query → JSON body) as described in the module docs.
    pub fn recording(recording: BTreeMap<String, serde_json::Value>) -> ReplayServer {
        let bodies: BTreeMap<String, Vec<u8>> = recording
            .into_iter()
            .map(|(k, v)| (k, v.to_string().into_bytes()))
            .collect();
        let faults = Faults::default();
        let pending = faults.clone();
        Self::serve(
            0,
            faults,
            Arc::new(move |req: &Req| {
                let path = req.path_and_query();
                let reply = if let Some(f) = next_fault(&pending, &path) {
                    let r = Reply::bytes(
                        f.status,
                        format!("{{\"error\":\"injected {}\"}}", f.status).into_bytes(),
                    );
                    match f.retry_after {
                        Some(secs) => r.header("retry-after", secs.to_string()),
                        None => r,
                    }
                } else if path == "/__redirect" {
                    Reply::bytes(302, b"{\"moved\":\"/__echo\"}".to_vec())
                        .header("location", "/__echo")
                } else if path == "/__echo" {
                    Reply::bytes(200, req.head.clone().into_bytes())
                } else {
                    match bodies.get(&path) {
                        Some(b) => Reply::bytes(200, b.clone()),
                        None => Reply::bytes(404, b"{\"error\":\"not recorded\"}".to_vec()),
                    }
                };
                reply.header("content-type", "application/json")
            }),
        )
    }

    /// Serve the recording in a JSON file (see [`ReplayServer::recording`]).
    pub fn from_file(path: &Path) -> std::io::Result<ReplayServer> {
        let text = std::fs::read_to_string(path)?;
        let rec: BTreeMap<String, serde_json::Value> = serde_json::from_str(&text)
            .map_err(|e| std::io::Error::new(std::io::ErrorKind::InvalidData, e))?;
        Ok(Self::recording(rec))
    }

    /// Make `path` (with query) of a recording answer `status` (with `Retry-After:
    /// retry_after` when given) `times` times before it serves its recording. Faults on
    /// one path queue up in order.
    pub fn fail(&self, path: &str, status: u16, times: u32, retry_after: Option<u64>) {
        lock(&self.faults)
            .entry(path.to_string())
            .or_default()
            .push(Fault {
                status,
                times,
                retry_after,
            });
    }

    /// The address.
    pub fn addr(&self) -> SocketAddr {
        self.server.addr
    }

    /// `http://127.0.0.1:<port>`.
    pub fn base_url(&self) -> String {
        format!("http://{}", self.server.addr)
    }

    /// `http://127.0.0.1:<port>` (the origin a plugin's declared host is redirected to).
    pub fn origin(&self) -> String {
        self.base_url()
    }

    /// `http://127.0.0.1:<port><path>`.
    pub fn url(&self, path: &str) -> String {
        format!("http://{}{path}", self.server.addr)
    }

    /// Every request so far, in order of arrival.
    pub fn requests(&self) -> Vec<Req> {
        lock(&self.log).clone()
    }

    /// Forget the requests so far.
    pub fn clear(&self) {
        lock(&self.log).clear();
    }

    /// Block until the server stops (for a server run as a program: it never does).
    pub fn wait(self) {
        self.server.wait();
    }
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    // A handler that panicked (a failed assertion in a test's handler) poisons nothing
    // this log needs: the request it holds is complete.
    m.lock().unwrap_or_else(PoisonError::into_inner)
}

async fn read_request(req: hyper::Request<Incoming>, count: &AtomicUsize) -> Req {
    let raw_query = req.uri().query().unwrap_or("").to_string();
    let mut head = format!(
        "{} {} {:?}\r\n",
        req.method(),
        req.uri()
            .path_and_query()
            .map(|p| p.as_str())
            .unwrap_or("/"),
        req.version()
    );
    for (k, v) in req.headers() {
        head.push_str(&format!("{k}: {}\r\n", v.to_str().unwrap_or("")));
    }
    let (parts, body) = req.into_parts();
    let body = body
        .collect()
        .await
        .map(|b| b.to_bytes())
        .unwrap_or_default();
    Req {
        n: count.fetch_add(1, Ordering::SeqCst),
        method: parts.method.to_string(),
        path: parts.uri.path().to_string(),
        query: url::form_urlencoded::parse(raw_query.as_bytes())
            .map(|(k, v)| (k.into_owned(), v.into_owned()))
            .collect(),
        raw_query,
        headers: parts
            .headers
            .iter()
            .map(|(k, v)| (k.as_str().to_string(), v.to_str().unwrap_or("").to_string()))
            .collect(),
        body: String::from_utf8_lossy(&body).into_owned(),
        head,
    }
}

fn next_fault(faults: &Faults, path: &str) -> Option<Fault> {
    let mut all = lock(faults);
    let queue = all.get_mut(path)?;
    let first = queue.first_mut()?;
    let fault = first.clone();
    first.times = first.times.saturating_sub(1);
    if first.times == 0 {
        queue.remove(0);
    }
    (fault.times > 0).then_some(fault)
}

/// A page of `items` (1-based `page`, `per_page`), with GitHub's Link header and
/// rate-limit headers. `base` is the absolute URL of the endpoint without query.
pub fn github_page(req: &Req, base: &str, items: &[serde_json::Value], remaining: u32) -> Reply {
    let per_page: usize = req
        .param("per_page")
        .and_then(|v| v.parse().ok())
        .unwrap_or(30);
    let page: usize = req
        .param("page")
        .and_then(|v| v.parse().ok())
        .unwrap_or(1)
        .max(1);
    let last = items.len().div_ceil(per_page).max(1);
    let slice: Vec<serde_json::Value> = items
        .iter()
        .skip((page - 1) * per_page)
        .take(per_page)
        .cloned()
        .collect();
    let link_to = |p: usize| {
        let mut q: Vec<(String, String)> = req
            .query
            .iter()
            .filter(|(k, _)| k != "page")
            .cloned()
            .collect();
        q.push(("page".into(), p.to_string()));
        let qs = url::form_urlencoded::Serializer::new(String::new())
            .extend_pairs(q)
            .finish();
        format!("<{base}?{qs}>")
    };
    let mut links = Vec::new();
    if page < last {
        links.push(format!("{}; rel=\"next\"", link_to(page + 1)));
        links.push(format!("{}; rel=\"last\"", link_to(last)));
    }
    if page > 1 {
        links.push(format!("{}; rel=\"first\"", link_to(1)));
        links.push(format!("{}; rel=\"prev\"", link_to(page - 1)));
    }
    let mut reply = Reply::json(&serde_json::Value::Array(slice))
        .header("x-ratelimit-limit", "5000")
        .header("x-ratelimit-remaining", remaining.to_string())
        .header(
            "x-ratelimit-reset",
            (std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .map(|d| d.as_secs())
                .unwrap_or(0)
                + 3600)
                .to_string(),
        )
        .header("x-ratelimit-used", (5000 - remaining).to_string())
        .header("x-ratelimit-resource", "core")
        .header("x-github-api-version-selected", "2022-11-28");
    if !links.is_empty() {
        reply = reply.header("link", links.join(", "));
    }
    reply
}
