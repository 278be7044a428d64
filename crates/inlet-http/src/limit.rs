//! Per-host concurrency and request-rate limits, and pauses a server asked for.

use std::{
    collections::HashMap,
    sync::{Arc, Mutex},
    time::Duration,
};

use tokio::{
    sync::{OwnedSemaphorePermit, Semaphore},
    time::Instant,
};

/// Waits at least this long are logged (with their reason and end) before they start.
pub(crate) const LOGGED_WAIT: Duration = Duration::from_secs(2);

/// A time before which nothing is sent to a host, and why (a server's rate-limit reset).
#[derive(Debug, Clone)]
pub(crate) struct Pause {
    pub until: Instant,
    /// The same moment on the wall clock, for messages.
    pub until_utc: chrono::DateTime<chrono::Utc>,
    /// What asked for it: "HTTP 429 Retry-After", "x-ratelimit-remaining: 0 ...".
    pub reason: String,
    /// Whether it was logged already (by whoever set it, or the first request held by it).
    announced: bool,
}

impl Pause {
    pub fn after(wait: Duration, reason: impl Into<String>) -> Pause {
        Pause {
            // A wait beyond what an Instant holds is as good as forever (tokio's "far
            // future" is 30 years); either way it is longer than any cap.
            until: Instant::now()
                .checked_add(wait)
                .unwrap_or_else(|| Instant::now() + Duration::from_secs(86_400 * 365 * 30)),
            until_utc: utc_after(wait),
            reason: reason.into(),
            announced: false,
        }
    }
}

/// The wall-clock time `wait` from now.
pub(crate) fn utc_after(wait: Duration) -> chrono::DateTime<chrono::Utc> {
    // A wait no calendar can hold (`Retry-After: 1e18`) ends at the end of time, not in
    // a panic.
    chrono::TimeDelta::from_std(wait)
        .ok()
        .and_then(|d| chrono::Utc::now().checked_add_signed(d))
        .unwrap_or(chrono::DateTime::<chrono::Utc>::MAX_UTC)
}

/// The limiter of one host.
#[derive(Debug)]
pub(crate) struct HostLimiter {
    permits: Arc<Semaphore>,
    interval: Option<Duration>,
    /// The next free request slot (rate limit) and a pause until which nothing is sent
    /// (a server's rate-limit reset).
    slots: Mutex<(Instant, Option<Pause>)>,
}

impl HostLimiter {
    fn new(concurrency: usize, rps: Option<f64>) -> Self {
        HostLimiter {
            permits: Arc::new(Semaphore::new(concurrency.max(1))),
            interval: rps
                .filter(|r| *r > 0.0)
                .and_then(|r| Duration::try_from_secs_f64(1.0 / r).ok()),
            slots: Mutex::new((Instant::now(), None)),
        }
    }

    /// Wait for a concurrency permit and a rate slot. A pause of this host that would
    /// hold the request longer than `max_wait` is not waited for: it is returned, with
    /// the time left, so the request fails at once instead of hanging (`url` is for the
    /// log line of a long wait).
    pub async fn acquire(
        &self,
        max_wait: Duration,
        url: &str,
    ) -> Result<Option<OwnedSemaphorePermit>, (Pause, Duration)> {
        let permit = self.permits.clone().acquire_owned().await.ok();
        let (wait_until, announce) = {
            let mut guard = match self.slots.lock() {
                Ok(g) => g,
                Err(poisoned) => poisoned.into_inner(),
            };
            let now = Instant::now();
            let mut at = guard.0.max(now);
            let mut announce = None;
            if let Some(pause) = &mut guard.1 {
                if pause.until > at {
                    let left = pause.until - now;
                    if left > max_wait {
                        return Err((pause.clone(), left));
                    }
                    at = pause.until;
                    if !pause.announced && left >= LOGGED_WAIT {
                        pause.announced = true;
                        announce = Some((pause.clone(), left));
                    }
                } else {
                    guard.1 = None;
                }
            }
            if let Some(iv) = self.interval {
                guard.0 = at + iv;
            }
            (at, announce)
        };
        if let Some((pause, left)) = announce {
            tracing::warn!(
                url,
                reason = %pause.reason,
                wait_secs = left.as_secs(),
                until = %pause.until_utc.to_rfc3339_opts(chrono::SecondsFormat::Secs, true),
                "requests to this host wait for the API's rate limit to reset"
            );
        }
        // Registering a timer costs a wakeup; most requests need no wait at all.
        if wait_until > Instant::now() {
            tokio::time::sleep_until(wait_until).await;
        }
        Ok(permit)
    }

    /// Send nothing to this host before the end of `pause` (its rate limit resets then).
    /// `announced`: the caller logged it already.
    pub fn pause(&self, mut pause: Pause, announced: bool) {
        pause.announced = announced;
        let mut guard = match self.slots.lock() {
            Ok(g) => g,
            Err(poisoned) => poisoned.into_inner(),
        };
        if guard.1.as_ref().is_none_or(|p| p.until < pause.until) {
            guard.1 = Some(pause);
        }
    }
}

/// Limiters by host.
#[derive(Debug, Default)]
pub(crate) struct Limiters {
    hosts: Mutex<HashMap<String, Arc<HostLimiter>>>,
}

impl Limiters {
    pub fn get(&self, host: &str, concurrency: usize, rps: Option<f64>) -> Arc<HostLimiter> {
        let mut map = match self.hosts.lock() {
            Ok(g) => g,
            Err(poisoned) => poisoned.into_inner(),
        };
        map.entry(host.to_string())
            .or_insert_with(|| Arc::new(HostLimiter::new(concurrency, rps)))
            .clone()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn requests_are_spaced_by_the_rate_limit() {
        let l = HostLimiter::new(4, Some(10.0));
        let cap = Duration::from_secs(60);
        let start = Instant::now();
        for _ in 0..5 {
            drop(l.acquire(cap, "u").await.unwrap());
        }
        // 5 requests at 10/s: the fifth starts 400 ms after the first.
        let took = start.elapsed();
        assert!(took >= Duration::from_millis(400), "{took:?}");
        l.pause(Pause::after(Duration::from_millis(300), "test"), false);
        let before = Instant::now();
        drop(l.acquire(cap, "u").await.unwrap());
        assert!(before.elapsed() >= Duration::from_millis(300));
    }

    #[tokio::test]
    async fn a_pause_longer_than_the_cap_is_returned_not_waited() {
        let l = HostLimiter::new(4, None);
        l.pause(Pause::after(Duration::from_secs(3600), "reset"), false);
        let before = Instant::now();
        let (pause, left) = l.acquire(Duration::from_secs(2), "u").await.unwrap_err();
        assert!(before.elapsed() < Duration::from_millis(100));
        assert_eq!(pause.reason, "reset");
        assert!(left > Duration::from_secs(3590), "{left:?}");
        // A shorter pause set later does not shorten the longer one.
        l.pause(Pause::after(Duration::from_secs(1), "retry-after"), true);
        assert!(l.acquire(Duration::from_secs(2), "u").await.is_err());
    }
}
