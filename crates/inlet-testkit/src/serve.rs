//! One HTTP/1 + HTTP/2 server on a thread of its own: the replay and S3 servers both run
//! on it. Owning its runtime, a server works the same under a `#[tokio::test]` and in a
//! plain `#[test]` that drives the blocking `inlet` binary meanwhile.

use std::{
    convert::Infallible,
    future::Future,
    net::{SocketAddr, TcpListener},
    thread::JoinHandle,
};

use hyper::{Request, Response, body::Incoming, service::service_fn};
use hyper_util::rt::{TokioExecutor, TokioIo};

type BoxError = Box<dyn std::error::Error + Send + Sync>;

/// A running server; stops (and closes its connections) when dropped.
#[derive(Debug)]
pub(crate) struct Background {
    pub(crate) addr: SocketAddr,
    stop: Option<tokio::sync::oneshot::Sender<()>>,
    thread: Option<JoinHandle<()>>,
}

/// Serve `handle` on `listener` with `threads` worker threads. Each request runs in a task
/// of its own, so a client that disconnects mid-request (a killed process) does not cancel
/// it half way: a server finishes a request it received.
pub(crate) fn serve<F, Fut, B, E>(listener: TcpListener, threads: usize, handle: F) -> Background
where
    F: Fn(Request<Incoming>) -> Fut + Clone + Send + Sync + 'static,
    Fut: Future<Output = Result<Response<B>, E>> + Send + 'static,
    B: hyper::body::Body + Send + 'static,
    B::Data: Send,
    B::Error: Into<BoxError>,
    E: Into<BoxError> + Send + 'static,
{
    let addr = listener.local_addr().expect("the listener's address");
    listener
        .set_nonblocking(true)
        .expect("a non-blocking listener");
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(threads.max(1))
        .enable_all()
        .build()
        .expect("the server's runtime");
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let thread = std::thread::spawn(move || {
        runtime.block_on(async move {
            let listener = tokio::net::TcpListener::from_std(listener).expect("a tokio listener");
            let accept = async move {
                loop {
                    let Ok((stream, _)) = listener.accept().await else {
                        continue;
                    };
                    // As real API front ends do: no Nagle delay on small responses.
                    let _ = stream.set_nodelay(true);
                    let handle = handle.clone();
                    tokio::spawn(async move {
                        let service = service_fn(move |req: Request<Incoming>| {
                            let answer = handle(req);
                            let task = tokio::spawn(async move {
                                answer.await.map_err(|e| ServeError(e.into().to_string()))
                            });
                            async move {
                                match task.await {
                                    Ok(answer) => answer,
                                    Err(e) => Err(ServeError(e.to_string())),
                                }
                            }
                        });
                        let _ = hyper_util::server::conn::auto::Builder::new(TokioExecutor::new())
                            .serve_connection(TokioIo::new(stream), service)
                            .await;
                    });
                }
            };
            tokio::select! {
                () = accept => {}
                _ = stopped => {}
            }
        });
        // Dropping the runtime here, on the server's own thread, ends its tasks.
    });
    Background {
        addr,
        stop: Some(stop),
        thread: Some(thread),
    }
}

/// Bind `127.0.0.1:port` (0: a free port).
pub(crate) fn bind(port: u16) -> TcpListener {
    TcpListener::bind(("127.0.0.1", port)).expect("bind 127.0.0.1")
}

impl Background {
    /// Block the calling thread until the server stops (for servers run as programs).
    pub(crate) fn wait(mut self) {
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

impl Drop for Background {
    fn drop(&mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

/// Why a request was dropped (hyper then closes its connection).
#[derive(Debug)]
struct ServeError(String);

impl std::fmt::Display for ServeError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::error::Error for ServeError {}

/// The `Infallible` of handlers that always answer.
pub(crate) type Never = Infallible;
