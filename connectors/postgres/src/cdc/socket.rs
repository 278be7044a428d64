//! The replication session's socket, read by a thread of its own so that the kernel wakes
//! inlet once per chunk rather than once per change.
//!
//! A walsender flushes every change as its own small write. A client that waits for the
//! socket to become readable is woken, and makes a read, every few hundred bytes: over
//! TCP that was 365,000 reads and as many `epoll_wait` calls per million changes, a third
//! of the client's CPU. Here a thread makes blocking reads of up to [`CHUNK`] bytes, and
//! over TCP, after a read shorter than [`SHORT`], sleeps [`PAUSE`], so that its next read
//! takes what arrived meanwhile (TCP's buffers hold far more than a millisecond of the
//! stream). A stream arriving faster than that is read without pause; one that has caught
//! up is delivered at most [`PAUSE`] late. A Unix socket pauses [`UNIX_PAUSE`] only: it
//! charges each small write's whole buffer to the sender's ~200 KiB, so a walsender blocks
//! after a few hundred changes. Measured with `bench/cdc.sh`, 1M changes: pauses of 1 ms
//! and 250 µs stalled it (3.0x and 1.6x the floor's time), none cost 2.1 s of CPU, 100 µs
//! 1.8 s at 1.2x.
//! Writes (status updates, the handshake) go straight to the socket from the caller.

use std::{
    io::{self, Read, Write},
    net::Shutdown,
    pin::Pin,
    task::{Context, Poll, ready},
    time::Duration,
};

use bytes::Bytes;
use tokio::{
    io::{AsyncRead, AsyncWrite, ReadBuf},
    sync::mpsc,
};

/// The most one read takes.
pub const CHUNK: usize = 256 * 1024;
/// A read shorter than this means the stream has caught up: pause before the next.
pub const SHORT: usize = 64 * 1024;
/// How long a caught-up reader waits for more to arrive (TCP).
pub const PAUSE: Duration = Duration::from_millis(1);
/// The same over a Unix socket (see the module's documentation).
pub const UNIX_PAUSE: Duration = Duration::from_micros(100);
/// How long a write may wait for room in the socket.
const WRITE_TIMEOUT: Duration = Duration::from_secs(10);
/// Chunks read ahead of the session (at most `AHEAD * CHUNK` bytes held).
const AHEAD: usize = 16;

/// A connected TCP or Unix socket, in blocking mode.
enum Raw {
    Tcp(std::net::TcpStream),
    #[cfg(unix)]
    Unix(std::os::unix::net::UnixStream),
}

impl Raw {
    fn try_clone(&self) -> io::Result<Raw> {
        Ok(match self {
            Raw::Tcp(s) => Raw::Tcp(s.try_clone()?),
            #[cfg(unix)]
            Raw::Unix(s) => Raw::Unix(s.try_clone()?),
        })
    }

    fn read(&self, buf: &mut [u8]) -> io::Result<usize> {
        match self {
            Raw::Tcp(s) => (&*s).read(buf),
            #[cfg(unix)]
            Raw::Unix(s) => (&*s).read(buf),
        }
    }

    fn write(&self, buf: &[u8]) -> io::Result<usize> {
        match self {
            Raw::Tcp(s) => (&*s).write(buf),
            #[cfg(unix)]
            Raw::Unix(s) => (&*s).write(buf),
        }
    }

    fn shutdown(&self, how: Shutdown) -> io::Result<()> {
        match self {
            Raw::Tcp(s) => s.shutdown(how),
            #[cfg(unix)]
            Raw::Unix(s) => s.shutdown(how),
        }
    }
}

/// A socket whose reads a thread makes (see the module's documentation).
pub struct ThreadReadSocket {
    chunks: mpsc::Receiver<io::Result<Bytes>>,
    current: Bytes,
    eof: bool,
    writer: Raw,
}

impl ThreadReadSocket {
    /// Connect to `host:port` over TCP (no Nagle delay on the status updates).
    pub async fn tcp(host: &str, port: u16) -> io::Result<ThreadReadSocket> {
        let stream = tokio::net::TcpStream::connect((host, port)).await?;
        stream.set_nodelay(true)?;
        let stream = stream.into_std()?;
        stream.set_nonblocking(false)?;
        Self::start(Raw::Tcp(stream), Some(PAUSE))
    }

    /// Connect to the server's Unix socket in the folder `dir`.
    #[cfg(unix)]
    pub async fn unix(dir: &str, port: u16) -> io::Result<ThreadReadSocket> {
        let path = std::path::Path::new(dir).join(format!(".s.PGSQL.{port}"));
        let stream = tokio::net::UnixStream::connect(&path)
            .await
            .map_err(|e| io::Error::new(e.kind(), format!("{}: {e}", path.display())))?;
        let stream = stream.into_std()?;
        stream.set_nonblocking(false)?;
        Self::start(Raw::Unix(stream), Some(UNIX_PAUSE))
    }

    fn start(raw: Raw, pause: Option<Duration>) -> io::Result<ThreadReadSocket> {
        let reader = raw.try_clone()?;
        // A status update never waits long for room; a peer that stopped reading must not
        // hang a write.
        match &raw {
            Raw::Tcp(s) => s.set_write_timeout(Some(WRITE_TIMEOUT))?,
            #[cfg(unix)]
            Raw::Unix(s) => s.set_write_timeout(Some(WRITE_TIMEOUT))?,
        }
        let (tx, chunks) = mpsc::channel(AHEAD);
        std::thread::Builder::new()
            .name("inlet-cdc-read".into())
            .spawn(move || pump(&reader, &tx, pause))?;
        Ok(ThreadReadSocket {
            chunks,
            current: Bytes::new(),
            eof: false,
            writer: raw,
        })
    }
}

/// The reading thread: chunks to the session until the socket ends or the session is gone,
/// pausing after a short read when `pause` says.
fn pump(raw: &Raw, tx: &mpsc::Sender<io::Result<Bytes>>, pause: Option<Duration>) {
    let mut buf = vec![0u8; CHUNK];
    loop {
        match raw.read(&mut buf) {
            Ok(0) => {
                let _ = tx.blocking_send(Ok(Bytes::new()));
                return;
            }
            Ok(n) => {
                if tx
                    .blocking_send(Ok(Bytes::copy_from_slice(&buf[..n])))
                    .is_err()
                {
                    return;
                }
                if let Some(pause) = pause.filter(|_| n < SHORT) {
                    std::thread::sleep(pause);
                }
            }
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) => {
                let _ = tx.blocking_send(Err(e));
                return;
            }
        }
    }
}

impl Drop for ThreadReadSocket {
    fn drop(&mut self) {
        // Ends the thread's blocking read.
        let _ = self.writer.shutdown(Shutdown::Both);
    }
}

impl AsyncRead for ThreadReadSocket {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        while this.current.is_empty() {
            if this.eof {
                return Poll::Ready(Ok(()));
            }
            match ready!(this.chunks.poll_recv(cx)) {
                Some(Ok(chunk)) if chunk.is_empty() => this.eof = true,
                Some(Ok(chunk)) => this.current = chunk,
                Some(Err(e)) => {
                    this.eof = true;
                    return Poll::Ready(Err(e));
                }
                None => this.eof = true,
            }
        }
        let n = this.current.len().min(buf.remaining());
        buf.put_slice(&this.current.split_to(n));
        Poll::Ready(Ok(()))
    }
}

impl AsyncWrite for ThreadReadSocket {
    fn poll_write(
        self: Pin<&mut Self>,
        _: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        // Small writes to a socket in blocking mode: they return at once unless the
        // server stopped reading; then the write timeout ends them, as an error (a
        // `WouldBlock` would be taken for "try again later" with nothing to wake it).
        Poll::Ready(match self.writer.write(buf) {
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => Err(io::Error::new(
                io::ErrorKind::TimedOut,
                "the server has not read the replication session's writes for 10 s",
            )),
            other => other,
        })
    }

    fn poll_flush(self: Pin<&mut Self>, _: &mut Context<'_>) -> Poll<io::Result<()>> {
        Poll::Ready(Ok(()))
    }

    fn poll_shutdown(self: Pin<&mut Self>, _: &mut Context<'_>) -> Poll<io::Result<()>> {
        Poll::Ready(self.writer.shutdown(Shutdown::Write))
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, reason = "tests")]
    use super::*;
    use tokio::io::{AsyncReadExt, AsyncWriteExt};

    /// Many small writes arrive whole and in order, in fewer reads than writes; the
    /// session's writes reach the peer; the end of the peer's stream is an end of file.
    #[tokio::test]
    async fn small_writes_arrive_in_order_in_few_chunks() {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let port = listener.local_addr().unwrap().port();
        let server = std::thread::spawn(move || {
            let (mut s, _) = listener.accept().unwrap();
            for i in 0..20_000u32 {
                s.write_all(&i.to_be_bytes()).unwrap();
            }
            let mut got = [0u8; 5];
            s.read_exact(&mut got).unwrap();
            assert_eq!(&got, b"hello");
        });
        let mut sock = ThreadReadSocket::tcp("127.0.0.1", port).await.unwrap();
        sock.write_all(b"hello").await.unwrap();
        let mut all = Vec::new();
        let mut reads = 0;
        let mut buf = vec![0u8; CHUNK];
        loop {
            let n = sock.read(&mut buf).await.unwrap();
            if n == 0 {
                break;
            }
            reads += 1;
            all.extend_from_slice(&buf[..n]);
        }
        server.join().unwrap();
        assert_eq!(all.len(), 80_000);
        for (i, w) in all.chunks(4).enumerate() {
            assert_eq!(u32::from_be_bytes(w.try_into().unwrap()), i as u32);
        }
        assert!(reads < 20_000, "{reads} reads for 20,000 writes");
    }
}
