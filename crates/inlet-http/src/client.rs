//! The client: one reqwest client, requests built with auth, bodies read with a limit.
//!
//! Its two halves that stand on their own are modules: [`retry`] (the send loop: which
//! answers are retried, backoff, rate-limit waits) and [`redact`] (secrets out of every
//! message).

mod redact;
mod retry;

use std::{sync::Arc, time::Duration};

use bytes::{Bytes, BytesMut};
use reqwest::{
    Method,
    header::{HeaderMap, HeaderName, HeaderValue},
};
use secrecy::{ExposeSecret, SecretString};
use url::Url;

use crate::{Auth, HostPolicy, HttpError, limit::Limiters, policy::PolicyResolver};
use redact::{Redactor, error_chain};

/// How a client behaves. [`HttpOptions::default`] suits public SaaS APIs.
#[derive(Debug, Clone)]
pub struct HttpOptions {
    /// `User-Agent` of every request.
    pub user_agent: String,
    /// Deadline of one attempt, from sending to the last byte of the body.
    pub timeout: Duration,
    /// Deadline of establishing a connection.
    pub connect_timeout: Duration,
    /// Retries after a 5xx, 408, network error or timeout (not counting rate-limit waits).
    pub max_retries: u32,
    /// First backoff; doubles with each retry, with jitter, up to `backoff_max`.
    pub backoff_base: Duration,
    /// Largest backoff.
    pub backoff_max: Duration,
    /// Longest wait a server may impose (a rate limit's reset, a `Retry-After`, also one
    /// announced on a successful answer with no requests left) before the request fails
    /// at once, transiently, naming the time the wait would end.
    pub max_rate_limit_wait: Duration,
    /// The setting behind `max_rate_limit_wait` as the user writes it, for the error
    /// that tells them what to raise.
    pub max_rate_limit_wait_setting: String,
    /// How many rate-limited answers in a row one request tolerates.
    pub max_rate_limit_retries: u32,
    /// Requests in flight per host.
    pub per_host_concurrency: usize,
    /// Requests per second per host (`None`: no limit but the server's).
    pub per_host_rps: Option<f64>,
    /// Largest accepted response body (after decompression); `None` for no limit.
    pub max_response_bytes: Option<u64>,
    /// Checked before connecting (host, then resolved addresses); `None` allows all.
    pub policy: Option<Arc<dyn HostPolicy>>,
    /// Headers sent with every request (API version, `Accept`); never secrets.
    pub headers: Vec<(String, String)>,
    /// Follow 3xx redirects (at most 5, each checked by the policy). The plugin host turns
    /// this off: a plugin sees the 3xx and asks again, through its own sandbox checks.
    pub follow_redirects: bool,
}

impl Default for HttpOptions {
    fn default() -> Self {
        HttpOptions {
            user_agent: format!("inlet/{}", env!("CARGO_PKG_VERSION")),
            timeout: Duration::from_secs(60),
            connect_timeout: Duration::from_secs(10),
            max_retries: 5,
            backoff_base: Duration::from_millis(500),
            backoff_max: Duration::from_secs(60),
            max_rate_limit_wait: Duration::from_secs(15 * 60),
            max_rate_limit_wait_setting: "max_rate_limit_wait_secs".into(),
            max_rate_limit_retries: 20,
            per_host_concurrency: 4,
            per_host_rps: None,
            max_response_bytes: Some(256 * 1024 * 1024),
            policy: None,
            headers: vec![],
            follow_redirects: true,
        }
    }
}

/// A request to send. Auth is not part of it: the client adds it.
#[derive(Debug, Clone)]
pub struct Request {
    /// Method.
    pub method: Method,
    /// Full URL, query included.
    pub url: Url,
    /// Extra headers (not secrets: secrets go through [`Auth`]).
    pub headers: Vec<(String, String)>,
    /// A form body (`application/x-www-form-urlencoded`).
    pub form: Option<Vec<(String, String)>>,
    /// A raw body (with its `Content-Type` among `headers`); ignored when `form` is set.
    pub body: Option<Bytes>,
    /// Headers carrying secrets that are not the client's [`Auth`] (a plugin's secret
    /// headers): marked sensitive, and their values redacted from every message.
    pub secret_headers: Vec<(String, SecretString)>,
    /// Return the final answer whatever its status, as a [`Response`], instead of an
    /// [`HttpError::Status`] or [`HttpError::Auth`]: for callers that read statuses
    /// themselves. Rate limits, 5xx and 408 are still waited for and retried first.
    pub pass_status: bool,
}

impl Request {
    /// A GET of `url`.
    pub fn get(url: Url) -> Self {
        Request {
            method: Method::GET,
            url,
            headers: vec![],
            form: None,
            body: None,
            secret_headers: vec![],
            pass_status: false,
        }
    }
}

/// A successful (2xx) answer, body fully read (any status with [`Request::pass_status`]).
#[derive(Debug, Clone)]
pub struct Response {
    /// Status code.
    pub status: u16,
    /// Headers.
    pub headers: HeaderMap,
    /// The body, decompressed.
    pub body: Bytes,
    /// The URL requested (without auth parameters).
    pub url: Url,
    /// Attempts it took (1 when the first succeeded).
    pub attempts: u32,
}

impl Response {
    /// A header's value as text.
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers.get(name).and_then(|v| v.to_str().ok())
    }
}

/// The HTTP client every API connector uses. Cheap to clone.
#[derive(Clone)]
pub struct HttpClient {
    inner: reqwest::Client,
    options: Arc<HttpOptions>,
    auth: Auth,
    limiters: Arc<Limiters>,
    redactor: Arc<Redactor>,
}

impl std::fmt::Debug for HttpClient {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("HttpClient")
            .field("options", &self.options)
            .field("auth", &self.auth)
            .finish_non_exhaustive()
    }
}

impl HttpClient {
    /// Build a client. Fails only when the TLS stack cannot be set up.
    pub fn new(options: HttpOptions, auth: Auth) -> Result<Self, HttpError> {
        let mut builder = reqwest::Client::builder()
            .user_agent(options.user_agent.clone())
            .connect_timeout(options.connect_timeout)
            .timeout(options.timeout)
            .gzip(true)
            // Proxies are not taken from the environment: a proxy would see every
            // destination, which the host policy must control.
            .no_proxy()
            .redirect(if options.follow_redirects {
                reqwest::redirect::Policy::limited(5)
            } else {
                reqwest::redirect::Policy::none()
            })
            .pool_max_idle_per_host(options.per_host_concurrency.max(1));
        if let Some(policy) = &options.policy {
            builder = builder.dns_resolver(Arc::new(PolicyResolver {
                policy: policy.clone(),
            }));
        }
        if let Some(policy) = options.policy.as_ref().filter(|_| options.follow_redirects) {
            // A redirect to another host must pass the policy too.
            let p = policy.clone();
            builder = builder.redirect(reqwest::redirect::Policy::custom(move |attempt| {
                let host = attempt.url().host_str().unwrap_or_default().to_string();
                if let Err(why) = p.check_host(&host) {
                    attempt.error(why)
                } else if attempt.previous().len() >= 5 {
                    attempt.error("too many redirects")
                } else {
                    attempt.follow()
                }
            }));
        }
        let inner = builder.build().map_err(|e| HttpError::Config {
            what: "http client".into(),
            message: e.to_string(),
        })?;
        let redactor = Arc::new(Redactor {
            secrets: auth.secrets(),
            param: auth.query_param().map(str::to_string),
        });
        Ok(HttpClient {
            inner,
            options: Arc::new(options),
            auth,
            limiters: Arc::new(Limiters::default()),
            redactor,
        })
    }

    /// The options it was built with.
    pub fn options(&self) -> &HttpOptions {
        &self.options
    }

    /// The same client (connections, limits and auth shared) that also redacts `secrets`
    /// from every message it produces: for secrets sent by [`Request::secret_headers`].
    pub fn redacting(mut self, secrets: impl IntoIterator<Item = SecretString>) -> Self {
        let mut all = self.redactor.secrets.clone();
        all.extend(secrets);
        self.redactor = Arc::new(Redactor {
            secrets: all,
            param: self.redactor.param.clone(),
        });
        self
    }

    /// A URL or text with every secret this client knows replaced by `***`.
    pub fn redact(&self, text: &str) -> String {
        self.redactor.text(text)
    }

    /// A URL with secrets and credential-like query parameters replaced by `***`.
    pub fn redact_url(&self, url: &Url) -> String {
        self.redactor.url(url)
    }

    /// `url` without the query parameter an API-key auth adds, for URLs a server hands
    /// back (Link headers, next-page URLs) that may echo the key: they are stored in
    /// state, and the client adds the key again when it sends them.
    pub fn without_credentials(&self, url: &Url) -> Url {
        let Some(param) = self.auth.query_param() else {
            return url.clone();
        };
        if !url.query_pairs().any(|(k, _)| k == param) {
            return url.clone();
        }
        let pairs: Vec<(String, String)> = url
            .query_pairs()
            .filter(|(k, _)| k != param)
            .map(|(k, v)| (k.into_owned(), v.into_owned()))
            .collect();
        let mut out = url.clone();
        out.set_query(None);
        if !pairs.is_empty() {
            out.query_pairs_mut().extend_pairs(pairs);
        }
        out
    }

    /// GET `url`.
    pub async fn get(&self, url: Url) -> Result<Response, HttpError> {
        self.send(Request::get(url)).await
    }

    async fn build(&self, request: &Request) -> Result<reqwest::RequestBuilder, HttpError> {
        let mut url = request.url.clone();
        let mut headers = HeaderMap::new();
        // The request's headers replace the client's of the same name; a name repeated
        // within the request is sent as many times.
        let mut own: Vec<HeaderName> = Vec::new();
        for (i, (name, value)) in self
            .options
            .headers
            .iter()
            .chain(&request.headers)
            .enumerate()
        {
            let name = HeaderName::from_bytes(name.as_bytes()).map_err(|e| HttpError::Config {
                what: format!("header `{name}`"),
                message: e.to_string(),
            })?;
            let value = HeaderValue::from_str(value).map_err(|e| HttpError::Config {
                what: format!("header `{name}`"),
                message: e.to_string(),
            })?;
            if i >= self.options.headers.len() {
                if own.contains(&name) {
                    headers.append(name, value);
                    continue;
                }
                own.push(name.clone());
            }
            headers.insert(name, value);
        }
        let secret_header = |name: &str, value: &str| -> Result<_, HttpError> {
            let mut v = HeaderValue::from_str(value).map_err(|_| HttpError::Config {
                what: format!("auth header `{name}`"),
                message: "the secret contains characters a header cannot carry".into(),
            })?;
            v.set_sensitive(true);
            Ok(v)
        };
        match &self.auth {
            Auth::None => {}
            Auth::Bearer(token) => {
                headers.insert(
                    reqwest::header::AUTHORIZATION,
                    secret_header(
                        "Authorization",
                        &format!("Bearer {}", token.expose_secret()),
                    )?,
                );
            }
            Auth::Basic { username, password } => {
                let encoded =
                    base64_encode(format!("{username}:{}", password.expose_secret()).as_bytes());
                headers.insert(
                    reqwest::header::AUTHORIZATION,
                    secret_header("Authorization", &format!("Basic {encoded}"))?,
                );
            }
            Auth::ApiKeyHeader { header, key } => {
                let name =
                    HeaderName::from_bytes(header.as_bytes()).map_err(|e| HttpError::Config {
                        what: format!("auth header `{header}`"),
                        message: e.to_string(),
                    })?;
                headers.insert(name, secret_header(header, key.expose_secret())?);
            }
            Auth::ApiKeyQuery { param, key } => {
                url.query_pairs_mut()
                    .append_pair(param, key.expose_secret());
            }
            Auth::OAuth2(flow) => {
                let token = match flow.valid_token().await {
                    Some(t) => t,
                    None => self.refresh(flow).await?,
                };
                headers.insert(
                    reqwest::header::AUTHORIZATION,
                    secret_header(
                        "Authorization",
                        &format!("Bearer {}", token.expose_secret()),
                    )?,
                );
            }
        }
        for (name, value) in &request.secret_headers {
            let header_name =
                HeaderName::from_bytes(name.as_bytes()).map_err(|e| HttpError::Config {
                    what: format!("secret header `{name}`"),
                    message: e.to_string(),
                })?;
            headers.insert(header_name, secret_header(name, value.expose_secret())?);
        }
        let mut builder = self
            .inner
            .request(request.method.clone(), url)
            .headers(headers);
        if let Some(form) = &request.form {
            builder = builder.form(form);
        } else if let Some(body) = &request.body {
            builder = builder.body(body.clone());
        }
        Ok(builder)
    }

    async fn refresh(&self, flow: &crate::OAuth2RefreshToken) -> Result<SecretString, HttpError> {
        let shown = flow.token_url.clone();
        let response = self
            .inner
            .post(&flow.token_url)
            .form(&flow.form())
            .send()
            .await
            .map_err(|e| self.network_error("POST", &shown, &e))?;
        let status = response.status();
        let body = response
            .bytes()
            .await
            .map_err(|e| self.network_error("POST", &shown, &e))?;
        if !status.is_success() {
            let message = self
                .redactor
                .text(&String::from_utf8_lossy(&body[..body.len().min(300)]));
            return Err(if status.is_server_error() {
                HttpError::Status {
                    method: "POST".into(),
                    url: shown,
                    status: status.as_u16(),
                    message,
                    transient: true,
                }
            } else {
                HttpError::Auth {
                    url: shown,
                    status: status.as_u16(),
                    message: format!("the refresh token was refused: {message}"),
                }
            });
        }
        #[derive(serde::Deserialize)]
        struct TokenResponse {
            access_token: String,
            #[serde(default)]
            expires_in: Option<u64>,
        }
        let parsed: TokenResponse = serde_json::from_slice(&body).map_err(|e| HttpError::Auth {
            url: shown.clone(),
            status: status.as_u16(),
            message: format!("the token endpoint's answer has no access_token: {e}"),
        })?;
        let token = SecretString::from(parsed.access_token);
        flow.store(token.clone(), parsed.expires_in).await;
        tracing::debug!(token_url = %shown, "OAuth2 access token refreshed");
        Ok(token)
    }

    async fn read_body(
        &self,
        mut response: reqwest::Response,
        shown: &str,
        method: &str,
    ) -> Result<Bytes, HttpError> {
        let limit = self.options.max_response_bytes;
        let too_large = || HttpError::TooLarge {
            url: shown.to_string(),
            limit: limit.unwrap_or(0),
        };
        if let (Some(limit), Some(len)) = (limit, response.content_length())
            && len > limit
        {
            return Err(too_large());
        }
        let mut buf = BytesMut::with_capacity(response.content_length().unwrap_or(0) as usize);
        loop {
            match response.chunk().await {
                Ok(Some(chunk)) => {
                    if limit.is_some_and(|l| (buf.len() + chunk.len()) as u64 > l) {
                        return Err(too_large());
                    }
                    buf.extend_from_slice(&chunk);
                }
                Ok(None) => return Ok(buf.freeze()),
                Err(e) => return Err(self.network_error(method, shown, &e)),
            }
        }
    }

    /// The start of an error body, for messages: at most a few KiB are read (a huge or
    /// decompression-bomb error body is never buffered), the rest is dropped.
    async fn excerpt(&self, mut response: reqwest::Response) -> String {
        let mut body = Vec::new();
        while body.len() < 4096 {
            match response.chunk().await {
                Ok(Some(chunk)) => body.extend_from_slice(&chunk[..chunk.len().min(4096)]),
                _ => break,
            }
        }
        let text = String::from_utf8_lossy(&body[..body.len().min(300)]);
        self.redactor.text(text.trim()).replace(['\n', '\r'], " ")
    }

    fn network_error(&self, method: &str, shown: &str, e: &reqwest::Error) -> HttpError {
        let what = if e.is_timeout() {
            format!(
                "timed out after {} s (timeout)",
                self.options.timeout.as_secs_f64()
            )
        } else if e.is_connect() {
            format!("cannot connect: {}", error_chain(e))
        } else {
            error_chain(e)
        };
        HttpError::Network {
            method: method.to_string(),
            url: shown.to_string(),
            message: self.redactor.text(&what),
        }
    }
}

fn base64_encode(input: &[u8]) -> String {
    const TABLE: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    let mut out = String::with_capacity(input.len().div_ceil(3) * 4);
    for chunk in input.chunks(3) {
        let b = [
            chunk[0],
            chunk.get(1).copied().unwrap_or(0),
            chunk.get(2).copied().unwrap_or(0),
        ];
        let n = (u32::from(b[0]) << 16) | (u32::from(b[1]) << 8) | u32::from(b[2]);
        for i in 0..4 {
            if i <= chunk.len() {
                out.push(TABLE[((n >> (18 - 6 * i)) & 63) as usize] as char);
            } else {
                out.push('=');
            }
        }
    }
    out
}
#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn base64_matches_rfc4648_vectors() {
        for (input, want) in [
            ("", ""),
            ("f", "Zg=="),
            ("fo", "Zm8="),
            ("foo", "Zm9v"),
            ("foob", "Zm9vYg=="),
            ("fooba", "Zm9vYmE="),
            ("foobar", "Zm9vYmFy"),
        ] {
            assert_eq!(base64_encode(input.as_bytes()), want);
        }
    }
}
