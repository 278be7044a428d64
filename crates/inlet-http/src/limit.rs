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

/// The limiter of one host.
#[derive(Debug)]
pub(crate) struct HostLimiter {
    permits: Arc<Semaphore>,
    interval: Option<Duration>,
    /// The next free request slot (rate limit) and a pause until which nothing is sent
    /// (a server's rate-limit reset).
    slots: Mutex<(Instant, Option<Instant>)>,
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

    /// Wait for a concurrency permit and a rate slot.
    pub async fn acquire(&self) -> Option<OwnedSemaphorePermit> {
        let permit = self.permits.clone().acquire_owned().await.ok();
        let wait_until = {
            let mut guard = match self.slots.lock() {
                Ok(g) => g,
                Err(poisoned) => poisoned.into_inner(),
            };
            let now = Instant::now();
            let mut at = guard.0.max(now);
            if let Some(pause) = guard.1 {
                if pause > at {
                    at = pause;
                } else {
                    guard.1 = None;
                }
            }
            if let Some(iv) = self.interval {
                guard.0 = at + iv;
            }
            at
        };
        // Registering a timer costs a wakeup; most requests need no wait at all.
        if wait_until > Instant::now() {
            tokio::time::sleep_until(wait_until).await;
        }
        permit
    }

    /// Send nothing to this host before `until` (its rate limit resets then).
    pub fn pause_until(&self, until: Instant) {
        let mut guard = match self.slots.lock() {
            Ok(g) => g,
            Err(poisoned) => poisoned.into_inner(),
        };
        if guard.1.is_none_or(|p| p < until) {
            guard.1 = Some(until);
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
        let start = Instant::now();
        for _ in 0..5 {
            drop(l.acquire().await);
        }
        // 5 requests at 10/s: the fifth starts 400 ms after the first.
        let took = start.elapsed();
        assert!(took >= Duration::from_millis(400), "{took:?}");
        l.pause_until(Instant::now() + Duration::from_millis(300));
        let before = Instant::now();
        drop(l.acquire().await);
        assert!(before.elapsed() >= Duration::from_millis(300));
    }
}
