//! The one way a source turns a producer (a task or a thread that reads and sends
//! events) into an [`EventStream`], so that a producer that dies is never mistaken for one
//! that finished.
//!
//! A stream that simply ends means "this partition is exhausted": the runtime then lands
//! what it got and moves the state to the last checkpoint. A producer that panics, or is
//! dropped half-way (its task cancelled), also closes its channel, and with a bare
//! channel the two look the same: rows missing, state advanced, run recorded as
//! succeeded. Here the end is explicit:
//!
//! ```text
//!  channel(stream, capacity) ──> (Emitter, Guard, EventStream)
//!
//!  producer:  guard.run(async { emitter.send(..).await?; ... Ok(()) })     (a task)
//!             guard.run_blocking(|| { emitter.send_blocking(..)?; Ok(()) }) (a thread)
//!
//!  body returns Ok(())   ──> the stream ends                     (finished)
//!  body returns Err(e)   ──> the stream yields Err(e), then ends
//!  body panics           ──> the stream yields SourceError::Crashed naming the stream
//!  guard dropped unused  ──> the same (the producer never said how it ended)
//! ```
//!
//! The channel is bounded (`capacity` events in flight), so memory stays bounded by a few
//! batches whatever the speed of the consumer. When the consumer goes away, sends fail
//! with [`Stopped`] and the producer SHOULD return `Ok(())` quietly.

use std::{
    future::Future,
    panic::AssertUnwindSafe,
    pin::pin,
    sync::{Arc, Mutex},
    task::{Context, Poll, Wake, Waker},
};

use futures::{FutureExt, StreamExt, channel::mpsc};

use crate::{EventStream, ReadEvent, SourceError};

type Item = Result<ReadEvent, SourceError>;

/// The consumer of the stream went away (the run stopped): the producer should stop.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Stopped;

/// How the producer ended, as the guard recorded it.
#[derive(Debug)]
enum End {
    Running,
    Finished,
    Died(String),
}

#[derive(Debug)]
struct Shared {
    stream: String,
    end: Mutex<End>,
}

impl Shared {
    fn set(&self, end: End) {
        let mut guard = match self.end.lock() {
            Ok(g) => g,
            Err(poisoned) => poisoned.into_inner(),
        };
        if matches!(*guard, End::Running) {
            *guard = end;
        }
    }

    fn crashed(&self) -> Option<SourceError> {
        let guard = match self.end.lock() {
            Ok(g) => g,
            Err(poisoned) => poisoned.into_inner(),
        };
        match &*guard {
            End::Finished => None,
            End::Died(why) => Some(SourceError::Crashed {
                stream: self.stream.clone(),
                message: why.clone(),
            }),
            End::Running => Some(SourceError::Crashed {
                stream: self.stream.clone(),
                message: "its producer went away without saying how it ended".into(),
            }),
        }
    }
}

/// A bounded channel of events for stream `stream`: the sending half, the guard that
/// records how the producer ended, and the stream the source returns from `read`.
/// `capacity` is the number of events buffered (at least 1).
pub fn channel(stream: impl Into<String>, capacity: usize) -> (Emitter, Guard, EventStream) {
    let (tx, rx) = mpsc::channel(capacity.max(1).saturating_sub(1));
    let shared = Arc::new(Shared {
        stream: stream.into(),
        end: Mutex::new(End::Running),
    });
    let events =
        futures::stream::unfold((rx, Some(shared.clone())), |(mut rx, shared)| async move {
            if let Some(item) = rx.next().await {
                return Some((item, (rx, shared)));
            }
            // Every sender is gone, the guard's last: it recorded the end before that.
            let error = shared?.crashed()?;
            Some((Err(error), (rx, None)))
        });
    (
        Emitter { tx: tx.clone() },
        Guard {
            tx: Some(tx),
            shared,
            span: tracing::Span::current(),
        },
        Box::pin(events),
    )
}

/// The sending half, owned by the producer.
#[derive(Debug)]
pub struct Emitter {
    tx: mpsc::Sender<Item>,
}

impl Emitter {
    /// Send `event`, waiting while the channel is full.
    pub async fn send(&mut self, event: ReadEvent) -> Result<(), Stopped> {
        send(&mut self.tx, Ok(event)).await
    }

    /// Send `event` from a thread that is not running async code (a reader thread, a
    /// `spawn_blocking` closure), blocking it while the channel is full.
    pub fn send_blocking(&mut self, event: ReadEvent) -> Result<(), Stopped> {
        block_on(send(&mut self.tx, Ok(event)))
    }
}

async fn send(tx: &mut mpsc::Sender<Item>, item: Item) -> Result<(), Stopped> {
    futures::future::poll_fn(|cx| tx.poll_ready(cx))
        .await
        .map_err(|_| Stopped)?;
    tx.start_send(item).map_err(|_| Stopped)
}

/// Records how the producer ended. Dropped without [`Guard::run`] or
/// [`Guard::run_blocking`] having seen the producer finish (a panic unwinding through
/// it, a cancelled task), it ends the stream with [`SourceError::Crashed`].
#[derive(Debug)]
pub struct Guard {
    /// Keeps the channel open until the end is recorded, so the consumer never sees the
    /// channel closed before it can tell why.
    tx: Option<mpsc::Sender<Item>>,
    shared: Arc<Shared>,
    /// The span `channel` was made in (the runtime's run and stream): the producer's log
    /// lines carry its connection, run and stream although it runs in its own task or thread.
    span: tracing::Span,
}

impl Guard {
    /// Run the producer `body` (in the task the caller spawned) and end the stream as it
    /// ended: `Ok` finishes it, `Err(e)` yields `e` first, a panic yields
    /// [`SourceError::Crashed`] with the panic's message.
    pub async fn run(mut self, body: impl Future<Output = Result<(), SourceError>>) {
        use tracing::Instrument as _;
        let ended = AssertUnwindSafe(body.instrument(self.span.clone()))
            .catch_unwind()
            .await;
        self.end(ended).await;
    }

    /// [`Guard::run`] for a producer that runs on its own thread.
    pub fn run_blocking(mut self, body: impl FnOnce() -> Result<(), SourceError>) {
        let span = self.span.clone();
        let ended = std::panic::catch_unwind(AssertUnwindSafe(|| span.in_scope(body)));
        block_on(self.end(ended));
    }

    async fn end(&mut self, ended: std::thread::Result<Result<(), SourceError>>) {
        match ended {
            Ok(Ok(())) => self.shared.set(End::Finished),
            Ok(Err(e)) => {
                if let Some(tx) = &mut self.tx {
                    // A consumer that went away has no use for the error either.
                    let _ = send(tx, Err(e)).await;
                }
                self.shared.set(End::Finished);
            }
            Err(payload) => self.shared.set(End::Died(format!(
                "its producer panicked ({}); this is a bug in the connector",
                panic_message(payload.as_ref())
            ))),
        }
        self.tx = None;
    }
}

impl Drop for Guard {
    fn drop(&mut self) {
        self.shared.set(End::Died(if std::thread::panicking() {
            "its producer panicked; this is a bug in the connector".into()
        } else {
            "its producer stopped before the end (cancelled?)".into()
        }));
    }
}

fn panic_message(payload: &(dyn std::any::Any + Send)) -> String {
    if let Some(s) = payload.downcast_ref::<&str>() {
        (*s).to_string()
    } else if let Some(s) = payload.downcast_ref::<String>() {
        s.clone()
    } else {
        "no message".into()
    }
}

/// Drive `future` to its end on this thread, parking between wakeups (what a thread
/// outside any async runtime can do; futures' own executor would be a dependency for
/// these few lines).
fn block_on<F: Future>(future: F) -> F::Output {
    struct Unpark(std::thread::Thread);
    impl Wake for Unpark {
        fn wake(self: Arc<Self>) {
            self.0.unpark();
        }
    }
    let waker = Waker::from(Arc::new(Unpark(std::thread::current())));
    let mut cx = Context::from_waker(&waker);
    let mut future = pin!(future);
    loop {
        if let Poll::Ready(out) = future.as_mut().poll(&mut cx) {
            return out;
        }
        std::thread::park();
    }
}

/// A test-only way to make a producer panic where it stands: with the `failpoints`
/// feature, panics when the environment variable `INLET_PANIC_AT` is `point`, or
/// `point#N` for its N-th pass in this process. Without the feature (every build but
/// the test builds) it is empty and compiles to nothing.
#[inline(always)]
pub fn panic_point(point: &str) {
    #[cfg(feature = "failpoints")]
    failpoints::check(point);
    #[cfg(not(feature = "failpoints"))]
    let _ = point;
}

#[cfg(feature = "failpoints")]
mod failpoints {
    use std::{collections::HashMap, sync::Mutex};

    static PASSES: Mutex<Option<HashMap<String, u64>>> = Mutex::new(None);

    /// Panics, on purpose: a test asked this producer to.
    pub(super) fn check(point: &str) {
        let Some(wanted) = std::env::var_os("INLET_PANIC_AT") else {
            return;
        };
        let wanted = wanted.to_string_lossy();
        let (name, nth) = match wanted.split_once('#') {
            Some((n, k)) => (n, k.parse::<u64>().unwrap_or(1)),
            None => (&*wanted, 1),
        };
        if name != point {
            return;
        }
        let pass = {
            let mut guard = match PASSES.lock() {
                Ok(g) => g,
                Err(poisoned) => poisoned.into_inner(),
            };
            let count = guard
                .get_or_insert_with(HashMap::new)
                .entry(point.to_string())
                .or_insert(0);
            *count += 1;
            *count
        };
        if pass == nth {
            panic!("INLET_PANIC_AT={wanted}: failpoint reached");
        }
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, reason = "tests")]
    use super::*;

    fn checkpoint(n: u64) -> ReadEvent {
        ReadEvent::Checkpoint(serde_json::json!({ "n": n }))
    }

    fn ends(events: Vec<Item>) -> (usize, Option<String>) {
        let n = events.iter().filter(|e| e.is_ok()).count();
        let err = events
            .iter()
            .find_map(|e| e.as_ref().err().map(|e| e.to_string()));
        (n, err)
    }

    async fn collect(stream: EventStream) -> Vec<Item> {
        stream.collect().await
    }

    fn run_async<F: Future>(f: F) -> F::Output {
        block_on(f)
    }

    #[test]
    fn a_finished_producer_ends_the_stream_and_an_error_is_yielded_once() {
        let (mut tx, guard, stream) = channel("orders", 2);
        std::thread::spawn(move || {
            guard.run_blocking(|| {
                for n in 0..5 {
                    tx.send_blocking(checkpoint(n))
                        .map_err(|_| SourceError::other("x"))?;
                }
                Ok(())
            })
        });
        assert_eq!(ends(run_async(collect(stream))), (5, None));

        let (mut tx, guard, stream) = channel("orders", 2);
        std::thread::spawn(move || {
            guard.run_blocking(|| {
                let _ = tx.send_blocking(checkpoint(0));
                Err(SourceError::data("orders.csv:3", "bad line"))
            })
        });
        let events = run_async(collect(stream));
        assert_eq!(events.len(), 2);
        assert_eq!(ends(events), (1, Some("orders.csv:3: bad line".into())));
    }

    #[test]
    fn a_producer_thread_that_panics_ends_the_stream_with_an_error_naming_it() {
        let (mut tx, guard, stream) = channel("clicks", 1);
        std::thread::spawn(move || {
            guard.run_blocking(|| {
                for n in 0..3 {
                    let _ = tx.send_blocking(checkpoint(n));
                }
                panic!("index out of bounds");
            })
        });
        let events = run_async(collect(stream));
        let (ok, err) = ends(events);
        assert_eq!(ok, 3);
        let err = err.unwrap();
        assert!(
            err.contains("`clicks`") && err.contains("index out of bounds"),
            "{err}"
        );
    }

    #[test]
    fn a_producer_task_that_panics_or_is_dropped_unfinished_is_an_error() {
        let (mut tx, guard, stream) = channel("issues", 4);
        let producer = guard.run(async move {
            tx.send(checkpoint(1))
                .await
                .map_err(|_| SourceError::other("x"))?;
            if tx.send(checkpoint(2)).await.is_ok() {
                panic!("boom");
            }
            Ok(())
        });
        let (events, ()) = run_async(futures::future::join(collect(stream), producer));
        let (ok, err) = ends(events);
        assert_eq!(ok, 2);
        let err = err.unwrap();
        assert!(err.contains("`issues`") && err.contains("boom"), "{err}");

        // A producer whose guard is dropped without running (a cancelled task).
        let (mut tx, guard, stream) = channel("issues", 4);
        run_async(tx.send(checkpoint(1))).unwrap();
        drop(guard);
        drop(tx);
        let (ok, err) = ends(run_async(collect(stream)));
        assert_eq!(ok, 1);
        assert!(err.unwrap().contains("stopped before the end"));
    }

    #[test]
    fn sends_fail_once_the_consumer_is_gone() {
        let (mut tx, guard, stream) = channel("s", 1);
        drop(stream);
        assert_eq!(tx.send_blocking(checkpoint(0)), Err(Stopped));
        guard.run_blocking(|| Ok(()));
    }
}
