//! Retries: the send loop, which answers are retried or waited for, backoff with jitter,
//! and the waits rate-limited answers ask for.

use std::{
    hash::{BuildHasher, Hasher},
    sync::atomic::{AtomicU64, Ordering},
    time::Duration,
};

use reqwest::{Method, StatusCode, header::HeaderMap};
use tokio::time::Instant;

use super::{HttpClient, Request, Response, redact::error_chain};
use crate::{
    Auth, HttpError,
    limit::{Pause, utc_after},
};

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
#[cfg(test)]
mod tests {
    use super::*;
    use reqwest::header::HeaderValue;

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
