//! One logical replication session on the standby: connect (TCP or the Unix socket, TLS as
//! `ssl_mode` says), authenticate (password or SCRAM-SHA-256), `START_REPLICATION` with
//! `pgoutput`, then read its messages and report the confirmed position.
//!
//! The protocol's pieces (message framing, SCRAM, the status update) come from
//! [`pgwire_replication`]; the session is driven here, in the reading task, so that a
//! change goes from the socket to the batch with no task or channel between them, and
//! the socket is read by [`ThreadReadSocket`] in chunks.

use std::{sync::Arc, time::Duration};

use bytes::{Buf, Bytes, BytesMut};
use pgwire_replication::{
    Lsn, PgWireError,
    auth::ScramClient,
    protocol::{
        framing::{
            write_copy_data, write_copy_done, write_password_message, write_query,
            write_ssl_request, write_startup_message,
        },
        messages::{ErrorFields, auth, parse_auth_request, parse_error_response},
        replication::{PG_EPOCH_MICROS, encode_standby_status_update},
    },
};
use secrecy::ExposeSecret;
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};

use super::socket::ThreadReadSocket;
use crate::config::SslMode;

/// The largest backend message accepted (a row of pgoutput can be large, not unbounded).
const MAX_MESSAGE: usize = 1 << 30;

/// Where and how to open the session.
pub struct Settings {
    /// `host:port/database`, for messages.
    pub resource: String,
    /// A host name or address, or the folder of the server's Unix socket (starts with `/`).
    pub host: String,
    pub port: u16,
    pub user: String,
    pub password: Option<secrecy::SecretString>,
    pub database: String,
    pub application_name: String,
    pub ssl_mode: SslMode,
    /// The TLS client configuration, when `ssl_mode` may use TLS.
    pub tls: Option<Arc<rustls::ClientConfig>>,
    pub slot: String,
    pub publication: String,
    /// Stream from here.
    pub start: Lsn,
    /// What the slot may be told is confirmed from the start.
    pub confirmed: Lsn,
    /// How often the confirmed position is reported.
    pub status_interval: Duration,
}

/// What the session read.
#[derive(Debug)]
pub enum Event {
    /// A transaction begins; it commits at `final_lsn`.
    Begin {
        final_lsn: Lsn,
        /// Microseconds since 2000-01-01 (PostgreSQL's epoch).
        commit_micros: i64,
    },
    /// A pgoutput message inside a transaction (relation, insert, update, ...).
    Change(Bytes),
    /// The transaction ends; the next begins after `end_lsn`.
    Commit { end_lsn: Lsn },
    /// The server's heartbeat: it has sent everything before `wal_end`.
    KeepAlive { wal_end: Lsn },
}

trait Io: AsyncRead + AsyncWrite + Send + Unpin {}
impl<T: AsyncRead + AsyncWrite + Send + Unpin> Io for T {}

/// A started replication session.
pub struct ReplicationSession {
    /// `host:port/database`, for messages.
    pub resource: String,
    /// The slot it streams.
    pub slot: String,
    io: Box<dyn Io>,
    buf: BytesMut,
    confirmed: Lsn,
    status_interval: Duration,
    last_status: tokio::time::Instant,
}

impl ReplicationSession {
    /// Connect, authenticate and start streaming from `settings.start`.
    pub async fn start(settings: &Settings) -> Result<ReplicationSession, PgWireError> {
        let mut session = ReplicationSession {
            resource: settings.resource.clone(),
            slot: settings.slot.clone(),
            io: connect(settings).await?,
            buf: BytesMut::with_capacity(64 * 1024),
            confirmed: settings.confirmed,
            status_interval: settings.status_interval,
            last_status: tokio::time::Instant::now(),
        };
        let params = [
            ("user", settings.user.as_str()),
            ("database", settings.database.as_str()),
            ("replication", "database"),
            ("client_encoding", "UTF8"),
            ("application_name", settings.application_name.as_str()),
        ];
        write_startup_message(&mut session.io, 196_608, &params).await?;
        session.authenticate(settings).await?;
        write_query(&mut session.io, &start_replication(settings)).await?;
        loop {
            let (tag, payload) = session.message().await?;
            match tag {
                b'W' => break,
                b'E' => return Err(PgWireError::Server(parse_error_response(&payload))),
                _ => {}
            }
        }
        Ok(session)
    }

    async fn authenticate(&mut self, settings: &Settings) -> Result<(), PgWireError> {
        let password = settings
            .password
            .as_ref()
            .map(|p| p.expose_secret())
            .unwrap_or_default();
        let mut scram: Option<(ScramClient, String, Vec<u8>)> = None;
        // SCRAM proves the server knows the password too: its proof must be checked
        // before the login is taken as done.
        let mut server_proven = false;
        loop {
            let (tag, payload) = self.message().await?;
            match tag {
                b'Z' => return Ok(()),
                b'E' => {
                    let fields = ErrorFields::parse(&payload);
                    let text = fields.to_error_string();
                    // 28000 invalid authorization, 28P01 invalid password.
                    return Err(
                        if fields.code.as_deref().is_some_and(|c| c.starts_with("28")) {
                            PgWireError::Auth(text)
                        } else {
                            PgWireError::Server(text)
                        },
                    );
                }
                b'R' => {}
                _ => continue,
            }
            let (code, data) = parse_auth_request(&payload)?;
            match code {
                auth::OK if scram.is_some() && !server_proven => {
                    return Err(PgWireError::Auth(
                        "the server ended SCRAM without proving it knows the password".into(),
                    ));
                }
                auth::OK => {}
                auth::CLEARTEXT_PASSWORD => {
                    let mut p = password.as_bytes().to_vec();
                    p.push(0);
                    write_password_message(&mut self.io, &p).await?;
                }
                auth::SASL => {
                    let offered: Vec<&[u8]> =
                        data.split(|b| *b == 0).filter(|m| !m.is_empty()).collect();
                    if !offered.contains(&&b"SCRAM-SHA-256"[..]) {
                        return Err(PgWireError::Auth(format!(
                            "the server offers no SCRAM-SHA-256 ({})",
                            String::from_utf8_lossy(data)
                        )));
                    }
                    let client = ScramClient::new(&settings.user);
                    let mut init = b"SCRAM-SHA-256\0".to_vec();
                    init.extend_from_slice(&(client.client_first.len() as i32).to_be_bytes());
                    init.extend_from_slice(client.client_first.as_bytes());
                    write_password_message(&mut self.io, &init).await?;
                    scram = Some((client, String::new(), Vec::new()));
                }
                auth::SASL_CONTINUE => {
                    let Some((client, auth_message, salted)) = scram.as_mut() else {
                        return Err(PgWireError::Auth("SASL continue before SASL".into()));
                    };
                    if !auth_message.is_empty() {
                        return Err(PgWireError::Auth("a second SASL continue".into()));
                    }
                    let (last, message, key) =
                        client.client_final(password, &String::from_utf8_lossy(data))?;
                    *auth_message = message;
                    *salted = key;
                    write_password_message(&mut self.io, last.as_bytes()).await?;
                }
                auth::SASL_FINAL => {
                    let Some((_, auth_message, salted)) = scram.as_ref() else {
                        return Err(PgWireError::Auth("SASL final before SASL".into()));
                    };
                    if auth_message.is_empty() {
                        return Err(PgWireError::Auth("SASL final before SASL continue".into()));
                    }
                    ScramClient::verify_server_final(
                        &String::from_utf8_lossy(data),
                        salted,
                        auth_message,
                    )?;
                    server_proven = true;
                }
                other => {
                    return Err(PgWireError::Auth(format!(
                        "authentication method {other} is not supported for replication (use \
                         scram-sha-256 or password in pg_hba.conf)"
                    )));
                }
            }
        }
    }

    /// The next backend message: its tag and payload.
    async fn message(&mut self) -> Result<(u8, Bytes), PgWireError> {
        loop {
            if self.buf.len() >= 5 {
                let len = u32::from_be_bytes([self.buf[1], self.buf[2], self.buf[3], self.buf[4]])
                    as usize;
                if !(4..=MAX_MESSAGE).contains(&len) {
                    return Err(PgWireError::Protocol(format!(
                        "a backend message of length {len}"
                    )));
                }
                if self.buf.len() > len {
                    let mut frame = self.buf.split_to(1 + len);
                    let tag = frame[0];
                    frame.advance(5);
                    return Ok((tag, frame.freeze()));
                }
                // Room for the rest of the message, as it comes (a length is not
                // trusted with a gigabyte up front).
                self.buf.reserve((1 + len - self.buf.len()).min(8 << 20));
            }
            if self.buf.capacity() - self.buf.len() < 16 * 1024 {
                self.buf.reserve(256 * 1024);
            }
            let n = self.io.read_buf(&mut self.buf).await.map_err(io_error)?;
            if n == 0 {
                return Err(io_error(std::io::Error::new(
                    std::io::ErrorKind::UnexpectedEof,
                    "the server closed the replication connection",
                )));
            }
        }
    }

    /// The next event of the stream. Answers the server's requests for a status and
    /// reports the confirmed position every `status_interval`.
    pub async fn next(&mut self) -> Result<Event, PgWireError> {
        loop {
            if self.last_status.elapsed() >= self.status_interval {
                self.send_status(false).await?;
            }
            let (tag, mut payload) = self.message().await?;
            match tag {
                b'd' => {}
                b'E' => return Err(PgWireError::Server(parse_error_response(&payload))),
                b'c' => {
                    return Err(PgWireError::Protocol(
                        "the server ended the replication stream".into(),
                    ));
                }
                _ => continue,
            }
            match payload.first() {
                Some(b'w') if payload.len() >= 25 => {
                    payload.advance(25);
                    return parse_change(payload);
                }
                Some(b'k') if payload.len() >= 18 => {
                    let wal_end = Lsn::from_u64(u64::from_be_bytes(eight(&payload[1..9])));
                    if payload[17] != 0 {
                        self.send_status(false).await?;
                    }
                    return Ok(Event::KeepAlive { wal_end });
                }
                _ => {
                    return Err(PgWireError::Protocol(format!(
                        "an unknown replication message ({} bytes)",
                        payload.len()
                    )));
                }
            }
        }
    }

    /// How often the status is reported.
    pub fn status_interval(&self) -> Duration {
        self.status_interval
    }

    /// Report the status if it is due (while the caller is not reading the stream).
    pub async fn keep_alive(&mut self) -> Result<(), PgWireError> {
        if self.last_status.elapsed() >= self.status_interval {
            self.send_status(false).await?;
        }
        Ok(())
    }

    /// The lake holds everything before `lsn`: the slot may let its WAL go (reported with
    /// the next status).
    pub fn confirm(&mut self, lsn: Lsn) {
        self.confirmed = self.confirmed.max(lsn);
    }

    async fn send_status(&mut self, reply: bool) -> Result<(), PgWireError> {
        let now = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.as_micros() as i64)
            - PG_EPOCH_MICROS;
        let status = encode_standby_status_update(self.confirmed, now, reply);
        write_copy_data(&mut self.io, &status).await?;
        self.last_status = tokio::time::Instant::now();
        Ok(())
    }

    /// Report the confirmed position, end the stream and the session (within 5 s; the
    /// socket is closed either way).
    pub async fn stop(mut self) {
        let _ = tokio::time::timeout(Duration::from_secs(5), async {
            let _ = self.send_status(false).await;
            let _ = write_copy_done(&mut self.io).await;
            let _ = self.io.write_all(&[b'X', 0, 0, 0, 4]).await;
            let _ = self.io.flush().await;
        })
        .await;
    }
}

/// `START_REPLICATION` of the slot with pgoutput, binary values.
fn start_replication(s: &Settings) -> String {
    let quote = |name: &str| format!("\"{}\"", name.replace('"', "\"\""));
    format!(
        "START_REPLICATION SLOT {} LOGICAL {} (proto_version '1', publication_names '{}', \
         binary 'true')",
        quote(&s.slot),
        s.start.to_pg_string(),
        quote(&s.publication).replace('\'', "''"),
    )
}

/// A pgoutput message: transaction boundaries apart, the rest for the decoder.
fn parse_change(data: Bytes) -> Result<Event, PgWireError> {
    let short = || PgWireError::Protocol(format!("a short pgoutput message ({data:?})"));
    match data.first() {
        Some(b'B') => {
            let b = data.get(1..17).ok_or_else(short)?;
            Ok(Event::Begin {
                final_lsn: Lsn::from_u64(u64::from_be_bytes(eight(&b[..8]))),
                commit_micros: i64::from_be_bytes(eight(&b[8..16])),
            })
        }
        Some(b'C') => {
            let b = data.get(10..18).ok_or_else(short)?;
            Ok(Event::Commit {
                end_lsn: Lsn::from_u64(u64::from_be_bytes(eight(b))),
            })
        }
        _ => Ok(Event::Change(data)),
    }
}

fn eight(b: &[u8]) -> [u8; 8] {
    let mut out = [0u8; 8];
    out.copy_from_slice(&b[..8]);
    out
}

fn io_error(e: std::io::Error) -> PgWireError {
    PgWireError::Io(Arc::new(e))
}

/// The socket, upgraded to TLS when `ssl_mode` asks and the server agrees.
async fn connect(s: &Settings) -> Result<Box<dyn Io>, PgWireError> {
    if s.host.starts_with('/') {
        if matches!(s.ssl_mode, SslMode::Require | SslMode::VerifyFull) {
            return Err(PgWireError::Tls(format!(
                "ssl_mode = {:?} asks for TLS, which a Unix socket ({}) does not speak",
                s.ssl_mode, s.host
            )));
        }
        #[cfg(unix)]
        return Ok(Box::new(
            ThreadReadSocket::unix(&s.host, s.port)
                .await
                .map_err(io_error)?,
        ));
    }
    let mut sock = ThreadReadSocket::tcp(&s.host, s.port)
        .await
        .map_err(io_error)?;
    let tls = match (&s.tls, s.ssl_mode) {
        (_, SslMode::Disable) | (None, _) => return Ok(Box::new(sock)),
        (Some(tls), _) => tls.clone(),
    };
    write_ssl_request(&mut sock).await?;
    let mut answer = [0u8; 1];
    sock.read_exact(&mut answer).await.map_err(io_error)?;
    match (answer[0], s.ssl_mode) {
        (b'S', _) => {}
        (_, SslMode::Prefer) => return Ok(Box::new(sock)),
        (_, mode) => {
            return Err(PgWireError::Tls(format!(
                "ssl_mode = {mode:?} asks for TLS, but the server does not accept it on {}:{}",
                s.host, s.port
            )));
        }
    }
    let name = rustls::pki_types::ServerName::try_from(s.host.clone())
        .map_err(|e| PgWireError::Tls(format!("{}: {e}", s.host)))?;
    let stream = tokio_rustls::TlsConnector::from(tls)
        .connect(name, sock)
        .await
        .map_err(|e| PgWireError::Tls(e.to_string()))?;
    Ok(Box::new(stream))
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, reason = "tests")]
    use super::*;

    #[test]
    fn boundaries_are_parsed_and_the_rest_is_left_to_the_decoder() {
        let mut begin = vec![b'B'];
        begin.extend_from_slice(&0x1_0000_0010u64.to_be_bytes());
        begin.extend_from_slice(&42i64.to_be_bytes());
        begin.extend_from_slice(&7u32.to_be_bytes());
        match parse_change(Bytes::from(begin)).unwrap() {
            Event::Begin {
                final_lsn,
                commit_micros,
            } => {
                assert_eq!(final_lsn, Lsn::from_u64(0x1_0000_0010));
                assert_eq!(commit_micros, 42);
            }
            other => panic!("{other:?}"),
        }
        let mut commit = vec![b'C', 0];
        commit.extend_from_slice(&5u64.to_be_bytes());
        commit.extend_from_slice(&9u64.to_be_bytes());
        commit.extend_from_slice(&42i64.to_be_bytes());
        assert!(matches!(
            parse_change(Bytes::from(commit)).unwrap(),
            Event::Commit { end_lsn } if end_lsn == Lsn::from_u64(9)
        ));
        assert!(matches!(
            parse_change(Bytes::from_static(b"Ixyz")).unwrap(),
            Event::Change(_)
        ));
        assert!(parse_change(Bytes::from_static(b"Bshort")).is_err());
    }

    #[test]
    fn names_are_quoted_in_start_replication() {
        let s = Settings {
            host: "h".into(),
            port: 5432,
            user: "u".into(),
            resource: "h:5432/d".into(),
            password: None,
            database: "d".into(),
            application_name: "a".into(),
            ssl_mode: SslMode::Disable,
            tls: None,
            slot: "inlet_c_t".into(),
            publication: "Pub'lic\"x".into(),
            start: Lsn::from_u64(0x1_0000_0010),
            confirmed: Lsn::ZERO,
            status_interval: Duration::from_secs(2),
        };
        assert_eq!(
            start_replication(&s),
            "START_REPLICATION SLOT \"inlet_c_t\" LOGICAL 1/10 (proto_version '1', \
             publication_names '\"Pub''lic\"\"x\"', binary 'true')"
        );
    }
}
