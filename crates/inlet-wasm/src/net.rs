//! The host's HTTP capability, on the shared HTTP layer (`inlet-http`): the same client,
//! retries with backoff and jitter, `Retry-After` and rate-limit waits and per-host limits
//! as the built-in API connectors, behind the sandbox's own checks.
//!
//! A request from a plugin goes:
//!
//! ```text
//! http-fetch ──> Network::authorize (declared AND allowed host, scheme, redirect,
//!                every resolved address public unless allowed)  ── refused: a Rule
//!            ──> secret headers expanded (sensitive, redacted from every message)
//!            ──> inlet-http (the same policy again on the addresses it connects to,
//!                no redirects followed, body capped at max_response_bytes)
//!            ──> any final status handed back to the plugin, secrets redacted
//! ```
//!
//! The plugin's call is synchronous; the request runs on one small runtime shared by
//! every plugin instance of the process, and the calling thread waits for it.

use std::{
    str::FromStr,
    sync::{Arc, OnceLock},
    time::Duration,
};

use inlet_http::{HttpClient, HttpError, HttpOptions};
use secrecy::{ExposeSecret, SecretString};

use crate::{
    Rule,
    bindings::inlet::plugin::{host, types},
    sandbox::{Network, Resolved, SandboxConfig},
};

/// A plugin's secrets by name, resolved.
pub type Secrets = Vec<(String, SecretString)>;

/// The network of one plugin connection: its policy, its secrets, and one HTTP client
/// (built on the first request) shared by every instance of the connection, so per-host
/// limits and pauses hold across them.
#[derive(Debug)]
pub struct PluginNet {
    network: Network,
    secrets: Secrets,
    options: HttpOptions,
    client: OnceLock<Result<HttpClient, String>>,
    /// Bytes of answers one call may hold: the instance's memory limit.
    budget: u64,
}

/// The address in inlet-http's refusal ("`h` resolves to 10.0.0.5, a private ..."), or
/// the refusal itself when it names none.
fn refused_address(message: &str) -> String {
    message
        .split_once("resolves to ")
        .and_then(|(_, rest)| rest.split([',', ' ']).next())
        .filter(|a| !a.is_empty())
        .map_or_else(|| message.to_string(), str::to_string)
}

/// The runtime every plugin request runs on (one worker: requests are few and the plugin
/// threads wait on them).
fn runtime() -> Result<&'static tokio::runtime::Runtime, String> {
    static RUNTIME: OnceLock<Result<tokio::runtime::Runtime, String>> = OnceLock::new();
    RUNTIME
        .get_or_init(|| {
            tokio::runtime::Builder::new_multi_thread()
                .worker_threads(1)
                .thread_name("inlet-plugin-http")
                .enable_all()
                .build()
                .map_err(|e| format!("cannot start the plugin HTTP runtime: {e}"))
        })
        .as_ref()
        .map_err(Clone::clone)
}

impl PluginNet {
    /// The network of a plugin declaring `declared` hosts, under `sandbox`.
    pub fn new(declared: &[String], sandbox: &SandboxConfig, secrets: Secrets) -> Self {
        let network = Network::new(declared, sandbox);
        let options = HttpOptions {
            user_agent: format!("inlet-plugin-host/{}", env!("CARGO_PKG_VERSION")),
            timeout: Duration::from_secs(sandbox.timeout_secs.max(1)),
            connect_timeout: Duration::from_secs(sandbox.timeout_secs.clamp(1, 10)),
            max_retries: sandbox.max_retries,
            backoff_base: Duration::from_millis(200),
            max_rate_limit_wait: Duration::from_secs(sandbox.max_rate_limit_wait_secs),
            max_rate_limit_wait_setting: "sandbox.max_rate_limit_wait_secs".into(),
            per_host_concurrency: 4,
            per_host_rps: sandbox.max_requests_per_second,
            max_response_bytes: Some(sandbox.max_response_bytes),
            policy: Some(Arc::new(network.clone())),
            follow_redirects: false,
            ..HttpOptions::default()
        };
        PluginNet {
            network,
            secrets,
            options,
            client: OnceLock::new(),
            budget: sandbox.memory_mb.saturating_mul(1024 * 1024),
        }
    }

    /// The secrets (for redacting what the host passes on).
    pub fn secrets(&self) -> &Secrets {
        &self.secrets
    }

    fn client(&self) -> Result<&HttpClient, String> {
        self.client
            .get_or_init(|| {
                HttpClient::new(self.options.clone(), inlet_http::Auth::None)
                    .map(|c| c.redacting(self.secrets.iter().map(|(_, s)| s.clone())))
                    .map_err(|e| e.to_string())
            })
            .as_ref()
            .map_err(Clone::clone)
    }

    /// `text` with every secret value replaced by `***`.
    pub fn redact(&self, text: &str) -> String {
        let mut out = text.to_string();
        for (_, s) in &self.secrets {
            let v = s.expose_secret();
            if !v.is_empty() {
                out = out.replace(v, "***");
            }
        }
        out
    }

    fn redact_bytes(&self, bytes: Vec<u8>) -> Vec<u8> {
        let mut out = bytes;
        for (_, s) in &self.secrets {
            let v = s.expose_secret().as_bytes();
            if v.is_empty() || out.len() < v.len() || !out.windows(v.len()).any(|w| w == v) {
                continue;
            }
            let mut res = Vec::with_capacity(out.len());
            let mut i = 0;
            while i < out.len() {
                if out[i..].starts_with(v) {
                    res.extend_from_slice(b"***");
                    i += v.len();
                } else {
                    res.push(out[i]);
                    i += 1;
                }
            }
            out = res;
        }
        out
    }

    /// Check a plugin's request and turn it into an `inlet-http` request. `Err` is a
    /// sandbox rule it broke; `Ok(Err)` a request the plugin got wrong.
    fn prepare(
        &self,
        request: host::HttpRequest,
        resolved: &mut Resolved,
    ) -> Result<Result<Prepared, types::PluginError>, Rule> {
        let allowed = self.network.authorize_with(&request.url, resolved)?;
        let other = |m: String| Ok(Err(types::PluginError::Other(m)));
        let url = match url::Url::parse(&allowed.url()) {
            Ok(u) => u,
            Err(e) => return other(format!("`{}`: {e}", request.url)),
        };
        let method = match reqwest::Method::from_str(&request.method.to_ascii_uppercase()) {
            Ok(m) => m,
            Err(_) => return other(format!("`{}` is not an HTTP method", request.method)),
        };
        const RESERVED: [&str; 4] = ["host", "content-length", "transfer-encoding", "connection"];
        let headers = request
            .headers
            .into_iter()
            .filter(|h| !RESERVED.iter().any(|r| h.name.eq_ignore_ascii_case(r)))
            .map(|h| (h.name, h.value))
            .collect();
        let mut secret_headers = Vec::new();
        for sh in request.secret_headers {
            let Some((_, value)) = self.secrets.iter().find(|(n, _)| *n == sh.secret) else {
                return Err(Rule::UnknownSecret { name: sh.secret });
            };
            if RESERVED.iter().any(|r| sh.name.eq_ignore_ascii_case(r)) {
                return other(format!(
                    "secret header `{}`: the host sets this header itself",
                    sh.name
                ));
            }
            secret_headers.push((
                sh.name,
                SecretString::from(format!("{}{}", sh.prefix, value.expose_secret())),
            ));
        }
        Ok(Ok(Prepared {
            shown: self.redact(&request.url),
            host: allowed.origin.host,
            request: inlet_http::Request {
                method,
                url,
                headers,
                form: None,
                body: request.body.map(Into::into),
                secret_headers,
                pass_status: true,
            },
        }))
    }

    /// Send requests at once on the plugin HTTP runtime (the client's per-host limits
    /// bound how many are in flight) and wait for every answer, in order. The bodies kept
    /// are bounded by the instance's memory (they must fit in it anyway): past that, an
    /// answer is dropped and the plugin told to ask for fewer at once.
    fn run(&self, requests: Vec<inlet_http::Request>) -> Vec<Result<Response, types::PluginError>> {
        let n = requests.len();
        if n == 0 {
            return Vec::new();
        }
        let unavailable = |m: String| types::PluginError::Unavailable(m);
        let sent = self.client().and_then(|c| Ok((c.clone(), runtime()?)));
        let (client, rt) = match sent {
            Ok(x) => x,
            Err(e) => return (0..n).map(|_| Err(unavailable(e.clone()))).collect(),
        };
        let budget = self.budget;
        let kept = Arc::new(std::sync::atomic::AtomicU64::new(0));
        let (tx, rx) = std::sync::mpsc::sync_channel(1);
        rt.spawn(async move {
            let answers = futures::future::join_all(requests.into_iter().map(|r| {
                let (client, kept) = (client.clone(), kept.clone());
                async move {
                    let answer = client.send(r).await;
                    if let Ok(resp) = &answer {
                        let len = resp.body.len() as u64;
                        let before = kept.fetch_add(len, std::sync::atomic::Ordering::SeqCst);
                        if before + len > budget {
                            return Err(types::PluginError::Other(format!(
                                "the answers of one http-fetch-many call exceed {budget} bytes \
                                 (the instance's memory, sandbox.memory_mb): ask for fewer at once"
                            )));
                        }
                    }
                    Ok(answer)
                }
            }))
            .await;
            let _ = tx.send(answers);
        });
        match rx.recv() {
            Ok(answers) => answers,
            Err(_) => (0..n)
                .map(|_| Err(unavailable("the plugin HTTP runtime stopped".into())))
                .collect(),
        }
    }

    /// What the plugin gets for one answer (or the rule it broke).
    fn finish(
        &self,
        shown: &str,
        host: &str,
        result: Result<Response, types::PluginError>,
    ) -> Result<Result<host::HttpResponse, types::PluginError>, Rule> {
        match result {
            Err(types::PluginError::Unavailable(m)) => Ok(Err(types::PluginError::Unavailable(
                format!("{shown}: {}", self.redact(&m)),
            ))),
            Err(e) => Ok(Err(e)),
            Ok(Ok(resp)) => Ok(Ok(host::HttpResponse {
                status: resp.status,
                headers: resp
                    .headers
                    .iter()
                    .map(|(name, value)| host::Header {
                        name: name.as_str().to_string(),
                        value: self.redact(&String::from_utf8_lossy(value.as_bytes())),
                    })
                    .collect(),
                body: self.redact_bytes(resp.body.to_vec()),
            })),
            Ok(Err(HttpError::TooLarge { .. })) => Err(Rule::ResponseTooLarge {
                limit: self.options.max_response_bytes.unwrap_or(0),
            }),
            // The addresses inlet-http connected to are checked again; a refusal there
            // means the name resolved differently since `authorize` (DNS rebinding).
            Ok(Err(HttpError::Denied { message, .. })) => Err(Rule::PrivateAddress {
                address: refused_address(&message),
                host: host.to_string(),
            }),
            Ok(Err(e @ HttpError::Config { .. })) => Ok(Err(types::PluginError::Other(format!(
                "{shown}: {}",
                self.redact(&e.to_string())
            )))),
            Ok(Err(e)) => Ok(Err(types::PluginError::Unavailable(format!(
                "{shown}: {}",
                self.redact(&e.to_string())
            )))),
        }
    }

    /// Send a plugin's request. `Err` is a sandbox rule the request broke (the host traps
    /// the call); `Ok(Err)` a failure the plugin may handle (network, retries exhausted).
    pub fn fetch(
        &self,
        request: host::HttpRequest,
    ) -> Result<Result<host::HttpResponse, types::PluginError>, Rule> {
        let prepared = match self.prepare(request, &mut Resolved::new())? {
            Ok(p) => p,
            Err(e) => return Ok(Err(e)),
        };
        let result = self
            .run(vec![prepared.request])
            .pop()
            .unwrap_or_else(|| Err(types::PluginError::Unavailable("no answer".into())));
        self.finish(&prepared.shown, &prepared.host, result)
    }

    /// Send several requests at once, answers in order. Every request is checked before
    /// any is sent: one that breaks a rule sends nothing.
    pub fn fetch_many(
        &self,
        requests: Vec<host::HttpRequest>,
    ) -> Result<Vec<Result<host::HttpResponse, types::PluginError>>, Rule> {
        if requests.len() > MAX_BATCH {
            let m = format!("http-fetch-many takes at most {MAX_BATCH} requests per call");
            return Ok(vec![Err(types::PluginError::Other(m)); requests.len()]);
        }
        let mut slots = Vec::with_capacity(requests.len());
        let mut to_send = Vec::new();
        let mut resolved = Resolved::new();
        for r in requests {
            match self.prepare(r, &mut resolved)? {
                Ok(p) => {
                    slots.push(Ok((p.shown, p.host)));
                    to_send.push(p.request);
                }
                Err(e) => slots.push(Err(e)),
            }
        }
        let mut answers = self.run(to_send).into_iter();
        let mut out = Vec::with_capacity(slots.len());
        for slot in slots {
            out.push(match slot {
                Err(e) => Err(e),
                Ok((shown, host)) => {
                    let answer = answers.next().unwrap_or_else(|| {
                        Err(types::PluginError::Unavailable("no answer".into()))
                    });
                    self.finish(&shown, &host, answer)?
                }
            });
        }
        Ok(out)
    }
}

/// The most requests one `http-fetch-many` call may carry.
const MAX_BATCH: usize = 1000;

type Response = Result<inlet_http::Response, HttpError>;

/// A checked request, and what messages about it show.
struct Prepared {
    request: inlet_http::Request,
    /// The URL as the plugin asked for it, secrets redacted.
    shown: String,
    /// The host, for a `private-address` rule.
    host: String,
}
