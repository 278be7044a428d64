//! HTTP through the host: the only network a plugin has.

use serde::de::DeserializeOwned;

use crate::PluginError;
use crate::bindings::inlet::plugin::host::{self, Header, HttpRequest, HttpResponse, SecretHeader};

/// A request under construction.
#[derive(Debug, Clone)]
pub struct Request {
    inner: HttpRequest,
}

impl Request {
    /// A GET of `url`.
    pub fn get(url: impl Into<String>) -> Self {
        Request {
            inner: HttpRequest {
                method: "GET".to_string(),
                url: url.into(),
                headers: Vec::new(),
                secret_headers: Vec::new(),
                body: None,
            },
        }
    }

    /// Add a header.
    pub fn header(mut self, name: &str, value: &str) -> Self {
        self.inner.headers.push(Header {
            name: name.to_string(),
            value: value.to_string(),
        });
        self
    }

    /// Add a header whose value is `prefix` followed by the secret called `secret` in the
    /// connection's `sandbox.secrets`; the plugin never sees the value.
    pub fn secret_header(mut self, name: &str, secret: &str, prefix: &str) -> Self {
        self.inner.secret_headers.push(SecretHeader {
            name: name.to_string(),
            secret: secret.to_string(),
            prefix: prefix.to_string(),
        });
        self
    }

    /// Send it.
    pub fn send(self) -> Result<HttpResponse, PluginError> {
        host::http_fetch(&self.inner)
    }

    /// Send it and parse a JSON body; non-2xx statuses become errors (401/403: auth,
    /// 429 and 5xx: unavailable, other: data).
    pub fn json<T: DeserializeOwned>(self) -> Result<T, PluginError> {
        let url = self.inner.url.clone();
        let resp = self.send()?;
        check_status(&url, &resp)?;
        serde_json::from_slice(&resp.body).map_err(|e| {
            PluginError::Data(format!("{url}: response is not the JSON expected: {e}"))
        })
    }
}

/// Send several requests at once (the host runs them concurrently, within the
/// connection's per-host limits); the answers come back in the same order. Any number:
/// they go to the host 1000 at a time.
pub fn send_all(requests: Vec<Request>) -> Vec<Result<HttpResponse, PluginError>> {
    let inner: Vec<HttpRequest> = requests.into_iter().map(|r| r.inner).collect();
    let mut out = Vec::with_capacity(inner.len());
    for chunk in inner.chunks(1000) {
        out.extend(host::http_fetch_many(chunk));
    }
    out
}

/// Map an HTTP status to a plugin error.
pub fn check_status(url: &str, resp: &HttpResponse) -> Result<(), PluginError> {
    match resp.status {
        200..=299 => Ok(()),
        401 | 403 => Err(PluginError::Auth(format!("{url}: HTTP {}", resp.status))),
        429 | 500..=599 => Err(PluginError::Unavailable(format!(
            "{url}: HTTP {}",
            resp.status
        ))),
        s => Err(PluginError::Data(format!("{url}: HTTP {s}"))),
    }
}
