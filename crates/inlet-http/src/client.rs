//! The client: one reqwest client, retries, rate limits, auth, redaction.

use std::{
    hash::{BuildHasher, Hasher},
    sync::{
        Arc,
        atomic::{AtomicU64, Ordering},
    },
    time::Duration,
};

use bytes::{Bytes, BytesMut};
use reqwest::{
    Method, StatusCode,
    header::{HeaderMap, HeaderName, HeaderValue},
};
use secrecy::{ExposeSecret, SecretString};
use tokio::time::Instant;
use url::Url;

use crate::{
    Auth, HostPolicy, HttpError,
    limit::{Limiters, Pause, utc_after},
    policy::PolicyResolver,
};

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

enum Outcome {
    Done(Response),
    /// Wait then try again; `rate_limited` attempts do not count as retries. The wait
    /// is the server's, with what asked for it, or (`None`) a backoff.
    Retry {
        error: HttpError,
        wait: Option<(Duration, String)>,
        rate_limited: bool,
    },
    Fail(HttpError),
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

    /// Send `request`, retrying and waiting as the server and the options say.
    pub async fn send(&self, request: Request) -> Result<Response, HttpError> {
        let shown = self.redactor.url(&request.url);
        let host = request.url.host_str().unwrap_or_default().to_string();
        if let Some(policy) = &self.options.policy
            && let Err(why) = policy.check_host(&host)
        {
            return Err(HttpError::Denied {
                url: shown,
                message: why,
            });
        }
        let limiter = self.limiters.get(
            &format!(
                "{host}:{}",
                request.url.port_or_known_default().unwrap_or(0)
            ),
            self.options.per_host_concurrency,
            self.options.per_host_rps,
        );
        let mut retries = 0u32;
        let mut rate_limited = 0u32;
        let mut refreshed = false;
        let mut attempt = 0u32;
        loop {
            attempt += 1;
            let permit = match limiter
                .acquire(self.options.max_rate_limit_wait, &shown)
                .await
            {
                Ok(permit) => permit,
                // The host is paused (its quota resets later) for longer than allowed.
                Err((pause, left)) => {
                    return Err(self.too_long(&shown, left, pause.until_utc, pause.reason));
                }
            };
            let started = Instant::now();
            let outcome = self
                .attempt(&request, &shown, attempt, &mut refreshed, &limiter)
                .await;
            drop(permit);
            let elapsed_ms = started.elapsed().as_millis() as u64;
            match outcome {
                Outcome::Done(response) => {
                    tracing::debug!(method = %request.method, url = %shown, status = response.status, elapsed_ms, attempt, "http request");
                    return Ok(response);
                }
                Outcome::Fail(error) => {
                    tracing::debug!(method = %request.method, url = %shown, elapsed_ms, attempt, error = %error, "http request failed");
                    return Err(error);
                }
                Outcome::Retry {
                    error,
                    wait,
                    rate_limited: true,
                } => {
                    rate_limited += 1;
                    let (wait, reason) = wait.unwrap_or_else(|| {
                        (
                            self.backoff(rate_limited),
                            "rate limited without Retry-After or a reset: backoff".into(),
                        )
                    });
                    let pause = Pause::after(wait, reason);
                    if wait > self.options.max_rate_limit_wait {
                        // The other requests to this host fail at once too, unsent:
                        // asking while limited is what gets an integration banned.
                        limiter.pause(pause.clone(), true);
                        return Err(self.too_long(&shown, wait, pause.until_utc, pause.reason));
                    }
                    if rate_limited > self.options.max_rate_limit_retries {
                        return Err(error);
                    }
                    tracing::warn!(method = %request.method, url = %shown, reason = %pause.reason, wait_ms = wait.as_millis() as u64, until = %rfc3339(pause.until_utc), attempt, error = %error, "rate limited; requests to this host wait until then");
                    // Every request to this host waits, not only this one.
                    limiter.pause(pause, true);
                }
                Outcome::Retry { error, wait, .. } => {
                    retries += 1;
                    if retries > self.options.max_retries {
                        return Err(error);
                    }
                    let asked = wait.is_some();
                    let (wait, reason) =
                        wait.unwrap_or_else(|| (self.backoff(retries), "backoff".into()));
                    let until = utc_after(wait);
                    // A 503 asking to come back in an hour is as long a wait as a quota
                    // (our own backoff is bounded by backoff_max instead).
                    if asked && wait > self.options.max_rate_limit_wait {
                        return Err(self.too_long(&shown, wait, until, reason));
                    }
                    tracing::warn!(method = %request.method, url = %shown, reason = %reason, wait_ms = wait.as_millis() as u64, until = %rfc3339(until), attempt, error = %error, "request failed; retrying after the wait");
                    tokio::time::sleep(wait).await;
                }
            }
        }
    }

    /// The error of a wait longer than `max_rate_limit_wait`.
    fn too_long(
        &self,
        shown: &str,
        wait: Duration,
        until: chrono::DateTime<chrono::Utc>,
        reason: String,
    ) -> HttpError {
        tracing::warn!(url = %shown, reason = %reason, wait_secs = wait.as_secs(), until = %rfc3339(until), max_secs = self.options.max_rate_limit_wait.as_secs(), "the server asks to wait longer than allowed; failing the request");
        HttpError::RateLimited {
            url: shown.to_string(),
            wait_secs: wait.as_secs(),
            max_secs: self.options.max_rate_limit_wait.as_secs(),
            until,
            reason,
            setting: self.options.max_rate_limit_wait_setting.clone(),
        }
    }

    /// Exponential backoff with equal jitter: half the step, plus up to the other half.
    fn backoff(&self, retry: u32) -> Duration {
        let step = self
            .options
            .backoff_base
            .saturating_mul(1u32 << retry.saturating_sub(1).min(16))
            .min(self.options.backoff_max);
        let half = step / 2;
        let jitter_ns = (half.as_nanos() as u64).max(1);
        half + Duration::from_nanos(random_u64() % jitter_ns)
    }

    async fn attempt(
        &self,
        request: &Request,
        shown: &str,
        attempt: u32,
        refreshed: &mut bool,
        limiter: &crate::limit::HostLimiter,
    ) -> Outcome {
        let method = request.method.to_string();
        let built = match self.build(request).await {
            Ok(b) => b,
            Err(e) => return Outcome::Fail(e),
        };
        let idempotent = matches!(
            request.method,
            Method::GET | Method::HEAD | Method::PUT | Method::DELETE | Method::OPTIONS
        );
        let response = match built.send().await {
            Ok(r) => r,
            Err(e) => {
                let error = self.network_error(&method, shown, &e);
                if is_policy_refusal(&e) {
                    return Outcome::Fail(HttpError::Denied {
                        url: shown.to_string(),
                        message: self.redactor.text(&error_chain(&e)),
                    });
                }
                return if idempotent || e.is_connect() {
                    Outcome::Retry {
                        error,
                        wait: None,
                        rate_limited: false,
                    }
                } else {
                    Outcome::Fail(error)
                };
            }
        };
        let status = response.status();
        let headers = response.headers().clone();
        let limited = status == StatusCode::TOO_MANY_REQUESTS
            || (status == StatusCode::FORBIDDEN
                && (headers.contains_key("retry-after") || remaining_is_zero(&headers)));
        // A server saying "no requests left until T" on an answer that went through
        // pauses this host until T, for every request; the next one fails at once if T
        // is further than max_rate_limit_wait. (A rate-limited answer's wait is decided
        // below, from both headers.)
        if !limited
            && remaining_is_zero(&headers)
            && let Some(reset) = rate_limit_reset(&headers)
        {
            limiter.pause(
                Pause::after(
                    reset,
                    format!(
                        "HTTP {}: x-ratelimit-remaining is 0 until x-ratelimit-reset",
                        status.as_u16()
                    ),
                ),
                false,
            );
        }
        if status.is_success() {
            let body = match self.read_body(response, shown, &method).await {
                Ok(b) => b,
                Err(e @ HttpError::TooLarge { .. }) => return Outcome::Fail(e),
                // The server did the work; sending a POST again could do it twice.
                Err(e) if !idempotent => return Outcome::Fail(e),
                Err(e) => {
                    return Outcome::Retry {
                        error: e,
                        wait: None,
                        rate_limited: false,
                    };
                }
            };
            return Outcome::Done(Response {
                status: status.as_u16(),
                headers,
                body,
                url: request.url.clone(),
                attempts: attempt,
            });
        }
        let oauth_refresh = status == StatusCode::UNAUTHORIZED
            && matches!(self.auth, Auth::OAuth2(_))
            && !*refreshed;
        // 5xx and 408 are retried only for methods that are safe to repeat: a POST may
        // have been carried out before the server failed.
        let server_failed = status.is_server_error() || status == StatusCode::REQUEST_TIMEOUT;
        let retried = limited || oauth_refresh || (server_failed && idempotent);
        if request.pass_status && !retried {
            return match self.read_body(response, shown, &method).await {
                Ok(body) => Outcome::Done(Response {
                    status: status.as_u16(),
                    headers,
                    body,
                    url: request.url.clone(),
                    attempts: attempt,
                }),
                Err(e @ HttpError::TooLarge { .. }) => Outcome::Fail(e),
                Err(e) => Outcome::Retry {
                    error: e,
                    wait: None,
                    rate_limited: false,
                },
            };
        }
        let excerpt = self.excerpt(response).await;
        let status_error = |transient: bool| HttpError::Status {
            method: method.clone(),
            url: shown.to_string(),
            status: status.as_u16(),
            message: excerpt.clone(),
            transient,
        };
        if limited {
            return Outcome::Retry {
                error: status_error(true),
                wait: rate_limited_wait(status.as_u16(), &headers),
                rate_limited: true,
            };
        }
        if status == StatusCode::UNAUTHORIZED
            && let Auth::OAuth2(flow) = &self.auth
            && !*refreshed
        {
            // The access token may have been revoked or expired early: refresh once.
            *refreshed = true;
            flow.invalidate().await;
            return Outcome::Retry {
                error: status_error(false),
                wait: Some((Duration::ZERO, "refreshing the OAuth2 token".into())),
                rate_limited: false,
            };
        }
        if status == StatusCode::UNAUTHORIZED || status == StatusCode::FORBIDDEN {
            return Outcome::Fail(HttpError::Auth {
                url: shown.to_string(),
                status: status.as_u16(),
                message: excerpt,
            });
        }
        if server_failed && idempotent {
            return Outcome::Retry {
                error: status_error(true),
                wait: retry_after(&headers)
                    .map(|w| (w, format!("HTTP {}: Retry-After", status.as_u16()))),
                rate_limited: false,
            };
        }
        Outcome::Fail(status_error(false))
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

/// The error and its causes, without the URL reqwest puts in its message (it may carry
/// a query-string key).
fn error_chain(e: &reqwest::Error) -> String {
    let mut parts = vec![e.without_url_ref().to_string()];
    let mut source = std::error::Error::source(e);
    while let Some(s) = source {
        parts.push(s.to_string());
        source = s.source();
    }
    parts.dedup();
    parts.join(": ")
}

trait WithoutUrlRef {
    fn without_url_ref(&self) -> String;
}

impl WithoutUrlRef for reqwest::Error {
    fn without_url_ref(&self) -> String {
        let text = self.to_string();
        match self.url() {
            Some(u) => text
                .replace(&format!(" ({u})"), "")
                .replace(u.as_str(), "<url>"),
            None => text,
        }
    }
}

fn is_policy_refusal(e: &reqwest::Error) -> bool {
    error_chain(e).contains("refused by the host policy")
}

fn header_str<'a>(headers: &'a HeaderMap, name: &str) -> Option<&'a str> {
    headers
        .get(name)
        .and_then(|v| v.to_str().ok())
        .map(str::trim)
}

fn remaining_is_zero(headers: &HeaderMap) -> bool {
    header_str(headers, "x-ratelimit-remaining").is_some_and(|v| v == "0")
}

/// How long a rate-limited answer (429, or 403 with rate-limit headers) asks to wait,
/// and why. `Retry-After` and, when `x-ratelimit-remaining` is 0, `x-ratelimit-reset`
/// are both "do not retry before" times (GitHub's documentation lists them as two such
/// rules), so the later one wins: retrying at the earlier one would be refused again
/// (and GitHub may ban integrations that keep asking while limited). Neither: `None`,
/// an exponential backoff (what Stripe, which sends neither, documents).
fn rate_limited_wait(status: u16, headers: &HeaderMap) -> Option<(Duration, String)> {
    let after = retry_after(headers);
    let reset = if remaining_is_zero(headers) {
        rate_limit_reset(headers)
    } else {
        None
    };
    match (after, reset) {
        (Some(a), Some(r)) if r > a => Some((
            r,
            format!(
                "HTTP {status}: x-ratelimit-remaining is 0 until x-ratelimit-reset, later than its Retry-After ({} s)",
                a.as_secs()
            ),
        )),
        (Some(a), _) => Some((a, format!("HTTP {status}: Retry-After"))),
        (None, Some(r)) => Some((
            r,
            format!("HTTP {status}: x-ratelimit-remaining is 0 until x-ratelimit-reset"),
        )),
        (None, None) => None,
    }
}

fn rfc3339(at: chrono::DateTime<chrono::Utc>) -> String {
    at.to_rfc3339_opts(chrono::SecondsFormat::Secs, true)
}

/// `X-RateLimit-Reset` (epoch seconds) as a wait from now.
fn rate_limit_reset(headers: &HeaderMap) -> Option<Duration> {
    let reset: i64 = header_str(headers, "x-ratelimit-reset")?.parse().ok()?;
    let now = chrono::Utc::now().timestamp();
    Some(Duration::from_secs((reset - now).max(0) as u64 + 1))
}

/// `Retry-After`: seconds, or an HTTP date.
fn retry_after(headers: &HeaderMap) -> Option<Duration> {
    let v = header_str(headers, "retry-after")?;
    if let Ok(secs) = v.parse::<f64>() {
        // A huge value (`1e30`) is no Duration: treat it as unknown, not a panic.
        return Duration::try_from_secs_f64(secs).ok();
    }
    let at = chrono::DateTime::parse_from_rfc2822(v).ok()?;
    let ms = (at.timestamp_millis() - chrono::Utc::now().timestamp_millis()).max(0);
    Some(Duration::from_millis(ms as u64))
}

fn random_u64() -> u64 {
    static COUNTER: AtomicU64 = AtomicU64::new(0);
    let mut h = std::collections::hash_map::RandomState::new().build_hasher();
    h.write_u64(COUNTER.fetch_add(1, Ordering::Relaxed));
    h.finish()
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

/// Query parameters whose values are credentials whatever the auth.
const SENSITIVE_PARAMS: &[&str] = &[
    "access_token",
    "api_key",
    "apikey",
    "client_secret",
    "key",
    "password",
    "refresh_token",
    "secret",
    "sig",
    "signature",
    "token",
];

/// Replaces secrets in text and URLs.
struct Redactor {
    secrets: Vec<SecretString>,
    param: Option<String>,
}

impl Redactor {
    fn text(&self, text: &str) -> String {
        let mut out = text.to_string();
        for s in &self.secrets {
            let s = s.expose_secret();
            // Very short values would redact ordinary words; they are weak secrets anyway.
            if s.len() >= 4 && out.contains(s) {
                out = out.replace(s, "***");
            }
        }
        out
    }

    fn url(&self, url: &Url) -> String {
        let mut shown = url.clone();
        let _ = shown.set_password(None);
        if shown.query().is_some() {
            let pairs: Vec<(String, String)> = url
                .query_pairs()
                .map(|(k, v)| {
                    let lower = k.to_ascii_lowercase();
                    let hide = SENSITIVE_PARAMS.contains(&lower.as_str())
                        || self.param.as_deref() == Some(k.as_ref());
                    (
                        k.into_owned(),
                        if hide { "***".into() } else { v.into_owned() },
                    )
                })
                .collect();
            shown.query_pairs_mut().clear().extend_pairs(pairs);
        }
        self.text(shown.as_str())
    }
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

    #[test]
    fn urls_and_text_are_redacted() {
        let r = Redactor {
            secrets: vec![SecretString::from("ghp_supersecret".to_string())],
            param: Some("apiKey".into()),
        };
        let u = Url::parse("https://h/x?page=2&apiKey=abc123&access_token=zzz&q=ghp_supersecret")
            .unwrap();
        let shown = r.url(&u);
        assert!(!shown.contains("abc123"), "{shown}");
        assert!(!shown.contains("zzz"), "{shown}");
        assert!(!shown.contains("ghp_supersecret"), "{shown}");
        assert!(shown.contains("page=2"), "{shown}");
        assert_eq!(r.text("token ghp_supersecret refused"), "token *** refused");
    }

    #[test]
    fn retry_after_reads_seconds_and_dates() {
        let mut h = HeaderMap::new();
        h.insert("retry-after", HeaderValue::from_static("7"));
        assert_eq!(retry_after(&h), Some(Duration::from_secs(7)));
        let later = chrono::Utc::now() + chrono::Duration::seconds(30);
        h.insert(
            "retry-after",
            HeaderValue::from_str(&later.format("%a, %d %b %Y %H:%M:%S GMT").to_string()).unwrap(),
        );
        let wait = retry_after(&h).unwrap();
        assert!(
            wait > Duration::from_secs(25) && wait <= Duration::from_secs(30),
            "{wait:?}"
        );
        // Values no Duration can hold are ignored, not a panic in the request task.
        for bad in ["1e30", "-3", "NaN", "inf"] {
            h.insert("retry-after", HeaderValue::from_static(bad));
            assert_eq!(retry_after(&h), None, "{bad}");
        }
    }
}
