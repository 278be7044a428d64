//! The host's HTTP capability: a small blocking HTTP/1.1 client over a connection to an
//! address the policy already checked (so DNS cannot be re-resolved to somewhere else),
//! TLS by rustls with the webpki roots.
//!
//! TODO(inlet-http): move onto the shared HTTP layer (retry, rate limits) once it is on
//! main; the retry here is the minimal one described on [`fetch_with_retry`].

use std::{
    io::{Read, Write},
    net::TcpStream,
    sync::{Arc, OnceLock},
    time::Duration,
};

use crate::sandbox::Allowed;

/// A request as the plugin built it, secrets already expanded.
#[derive(Debug, Clone)]
pub struct Request {
    /// GET, POST...
    pub method: String,
    /// Headers (name, value).
    pub headers: Vec<(String, String)>,
    /// Body.
    pub body: Option<Vec<u8>>,
}

/// A response.
#[derive(Debug, Clone)]
pub struct Response {
    /// Status code.
    pub status: u16,
    /// Headers.
    pub headers: Vec<(String, String)>,
    /// Body.
    pub body: Vec<u8>,
}

/// Why a request failed.
#[derive(Debug)]
pub enum FetchError {
    /// The body was larger than the limit.
    TooLarge,
    /// Connection, TLS or protocol failure (transient).
    Io(String),
}

fn tls_config() -> Arc<rustls::ClientConfig> {
    static CONFIG: OnceLock<Arc<rustls::ClientConfig>> = OnceLock::new();
    CONFIG
        .get_or_init(|| {
            let roots = rustls::RootCertStore {
                roots: webpki_roots::TLS_SERVER_ROOTS.to_vec(),
            };
            let provider = Arc::new(rustls::crypto::ring::default_provider());
            let config = rustls::ClientConfig::builder_with_provider(provider)
                .with_safe_default_protocol_versions()
                .map(|b| b.with_root_certificates(roots).with_no_client_auth());
            match config {
                Ok(c) => Arc::new(c),
                // The ring provider supports the default versions; this is unreachable
                // in practice, and an empty config fails every handshake safely.
                Err(_) => Arc::new(
                    rustls::ClientConfig::builder()
                        .with_root_certificates(rustls::RootCertStore::empty())
                        .with_no_client_auth(),
                ),
            }
        })
        .clone()
}

trait Conn: Read + Write {}
impl<T: Read + Write> Conn for T {}

/// Send one request to `to`. The body is read up to `max_bytes`.
pub fn fetch(
    to: &Allowed,
    req: &Request,
    max_bytes: u64,
    timeout: Duration,
) -> Result<Response, FetchError> {
    let io = |what: &str, e: std::io::Error| FetchError::Io(format!("{what}: {e}"));
    if to.addr.port() == 0 {
        return Err(FetchError::Io(format!(
            "`{}` does not resolve",
            to.origin.host
        )));
    }
    let tcp = TcpStream::connect_timeout(&to.addr, timeout).map_err(|e| io("connect", e))?;
    tcp.set_read_timeout(Some(timeout))
        .map_err(|e| io("socket", e))?;
    tcp.set_write_timeout(Some(timeout))
        .map_err(|e| io("socket", e))?;
    let _ = tcp.set_nodelay(true);
    let mut conn: Box<dyn Conn> = if to.origin.scheme == "https" {
        let name = rustls::pki_types::ServerName::try_from(to.origin.host.clone())
            .map_err(|e| FetchError::Io(format!("tls name: {e}")))?;
        let c = rustls::ClientConnection::new(tls_config(), name)
            .map_err(|e| FetchError::Io(format!("tls: {e}")))?;
        Box::new(rustls::StreamOwned::new(c, tcp))
    } else {
        Box::new(tcp)
    };
    let default_port = if to.origin.scheme == "https" { 443 } else { 80 };
    let host = if to.origin.host.contains(':') {
        format!("[{}]", to.origin.host)
    } else {
        to.origin.host.clone()
    };
    let authority = if to.origin.port == default_port {
        host
    } else {
        format!("{host}:{}", to.origin.port)
    };
    let mut head = format!(
        "{} {} HTTP/1.1\r\nHost: {authority}\r\nConnection: close\r\nUser-Agent: inlet-plugin-host/0.1\r\nAccept-Encoding: identity\r\n",
        req.method, to.path
    );
    for (k, v) in &req.headers {
        head.push_str(k);
        head.push_str(": ");
        head.push_str(v);
        head.push_str("\r\n");
    }
    if let Some(b) = &req.body {
        head.push_str(&format!("Content-Length: {}\r\n", b.len()));
    }
    head.push_str("\r\n");
    conn.write_all(head.as_bytes()).map_err(|e| io("send", e))?;
    if let Some(b) = &req.body {
        conn.write_all(b).map_err(|e| io("send", e))?;
    }
    conn.flush().map_err(|e| io("send", e))?;
    read_response(&mut conn, max_bytes)
}

fn read_response(conn: &mut Box<dyn Conn>, max_bytes: u64) -> Result<Response, FetchError> {
    const MAX_HEAD: usize = 64 * 1024;
    let mut buf: Vec<u8> = Vec::with_capacity(8192);
    let mut chunk = [0u8; 16 * 1024];
    let (status, headers, body_start) = loop {
        let n = read_some(conn, &mut chunk)?;
        if n == 0 {
            return Err(FetchError::Io(
                "connection closed before the response head".into(),
            ));
        }
        buf.extend_from_slice(&chunk[..n]);
        let mut hs = [httparse::EMPTY_HEADER; 96];
        let mut resp = httparse::Response::new(&mut hs);
        match resp.parse(&buf) {
            Ok(httparse::Status::Complete(len)) => {
                let headers: Vec<(String, String)> = resp
                    .headers
                    .iter()
                    .map(|h| {
                        (
                            h.name.to_string(),
                            String::from_utf8_lossy(h.value).into_owned(),
                        )
                    })
                    .collect();
                break (resp.code.unwrap_or(0), headers, len);
            }
            Ok(httparse::Status::Partial) if buf.len() < MAX_HEAD => continue,
            Ok(httparse::Status::Partial) => {
                return Err(FetchError::Io("response head too large".into()));
            }
            Err(e) => return Err(FetchError::Io(format!("bad response: {e}"))),
        }
    };
    let header = |name: &str| {
        headers
            .iter()
            .find(|(k, _)| k.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.trim().to_ascii_lowercase())
    };
    let mut raw = buf.split_off(body_start);
    let chunked = header("transfer-encoding").is_some_and(|v| v.contains("chunked"));
    let length = header("content-length").and_then(|v| v.parse::<u64>().ok());
    if let Some(len) = length
        && !chunked
        && len > max_bytes
    {
        return Err(FetchError::TooLarge);
    }
    // Read until the end of the body (Connection: close), bounded.
    let bound = if chunked {
        // chunk framing adds a little; keep a margin
        max_bytes + max_bytes / 8 + 1024
    } else {
        length.unwrap_or(max_bytes + 1)
    };
    while (raw.len() as u64) < bound {
        let n = read_some(conn, &mut chunk)?;
        if n == 0 {
            break;
        }
        raw.extend_from_slice(&chunk[..n]);
        if chunked && raw.ends_with(b"0\r\n\r\n") {
            break;
        }
    }
    let body = if chunked { dechunk(&raw)? } else { raw };
    if body.len() as u64 > max_bytes {
        return Err(FetchError::TooLarge);
    }
    if let Some(len) = length
        && !chunked
        && (body.len() as u64) < len
    {
        return Err(FetchError::Io(format!(
            "body ended after {} of {len} bytes",
            body.len()
        )));
    }
    Ok(Response {
        status,
        headers,
        body,
    })
}

fn read_some(conn: &mut Box<dyn Conn>, buf: &mut [u8]) -> Result<usize, FetchError> {
    loop {
        match conn.read(buf) {
            Ok(n) => return Ok(n),
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => continue,
            // A TLS peer that closes without close_notify: treat as end of body.
            Err(e) if e.kind() == std::io::ErrorKind::UnexpectedEof => return Ok(0),
            Err(e) => return Err(FetchError::Io(format!("read: {e}"))),
        }
    }
}

fn dechunk(raw: &[u8]) -> Result<Vec<u8>, FetchError> {
    let bad = || FetchError::Io("bad chunked encoding".into());
    let mut out = Vec::with_capacity(raw.len());
    let mut pos = 0;
    loop {
        let line_end = raw[pos..]
            .windows(2)
            .position(|w| w == b"\r\n")
            .ok_or_else(bad)?
            + pos;
        let size_text = std::str::from_utf8(&raw[pos..line_end]).map_err(|_| bad())?;
        let size_text = size_text.split(';').next().unwrap_or("").trim();
        let size = usize::from_str_radix(size_text, 16).map_err(|_| bad())?;
        pos = line_end + 2;
        if size == 0 {
            return Ok(out);
        }
        let end = pos.checked_add(size).ok_or_else(bad)?;
        if end + 2 > raw.len() {
            return Err(bad());
        }
        out.extend_from_slice(&raw[pos..end]);
        pos = end + 2;
    }
}

/// [`fetch`] with the host's retry: up to 3 attempts on connection failures and on 429,
/// 502, 503 and 504, waiting 200 ms then 800 ms (or `Retry-After`, at most 5 s).
pub fn fetch_with_retry(
    to: &Allowed,
    req: &Request,
    max_bytes: u64,
    timeout: Duration,
) -> Result<Response, FetchError> {
    let mut wait = Duration::from_millis(200);
    let mut attempt = 1;
    loop {
        let result = fetch(to, req, max_bytes, timeout);
        let retry_after = match &result {
            Ok(r) if matches!(r.status, 429 | 502 | 503 | 504) => Some(
                r.headers
                    .iter()
                    .find(|(k, _)| k.eq_ignore_ascii_case("retry-after"))
                    .and_then(|(_, v)| v.trim().parse::<u64>().ok())
                    .map(|s| Duration::from_secs(s.min(5)))
                    .unwrap_or(wait),
            ),
            Err(FetchError::Io(_)) => Some(wait),
            _ => None,
        };
        match retry_after {
            Some(d) if attempt < 3 => {
                std::thread::sleep(d);
                wait *= 4;
                attempt += 1;
            }
            _ => return result,
        }
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, reason = "tests")]
    use super::*;

    #[test]
    fn chunked_bodies_decode() {
        let raw = b"4\r\nWiki\r\n5;x=y\r\npedia\r\n0\r\n\r\n";
        assert_eq!(dechunk(raw).unwrap(), b"Wikipedia");
        assert!(dechunk(b"zz\r\n").is_err());
    }
}
