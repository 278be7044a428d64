//! Sessions on the replica: connecting, the replica guard, session settings, replay lag,
//! and what Postgres errors mean for a sync.

use std::{path::Path, sync::Arc, time::Duration};

use inlet_core::SourceError;
use secrecy::ExposeSecret;
use tokio_postgres::{Client, error::SqlState};

use crate::config::{LagPolicy, PostgresConfig, SslMode};

/// The replay lag of a standby in seconds: functions of the recovery state, no table.
pub const REPLAY_LAG_SQL: &str = "SELECT CASE WHEN pg_last_wal_receive_lsn() IS NOT NULL \
       AND pg_last_wal_receive_lsn() = pg_last_wal_replay_lsn() THEN 0 \
  ELSE COALESCE(EXTRACT(EPOCH FROM now() - pg_last_xact_replay_timestamp()), 0) END::float8";

/// A checked, read-only session.
#[derive(Debug)]
pub struct Session {
    /// The client.
    pub client: Client,
    /// Whether the server is a standby.
    pub in_recovery: bool,
}

/// Everything needed to open sessions: the parsed config and the resolved password.
#[derive(Clone)]
pub struct Connect {
    cfg: Arc<PostgresConfig>,
    password: Option<secrecy::SecretString>,
    application_name: String,
    connection: String,
    tls: Option<tokio_postgres_rustls::MakeRustlsConnect>,
    /// The same TLS client configuration, for the replication session.
    rustls: Option<Arc<rustls::ClientConfig>>,
}

impl std::fmt::Debug for Connect {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Connect")
            .field("resource", &self.resource())
            .field("password", &self.password.as_ref().map(|_| "[redacted]"))
            .finish()
    }
}

impl Connect {
    /// Resolve the password and TLS settings.
    pub fn new(
        cfg: Arc<PostgresConfig>,
        connection: &str,
        base_dir: &Path,
    ) -> Result<Self, SourceError> {
        let password = cfg
            .password
            .as_ref()
            .map(|p| p.resolve("password", base_dir))
            .transpose()?;
        let rustls = match cfg.ssl_mode {
            SslMode::Disable => None,
            mode => Some(Arc::new(tls_config(
                mode,
                cfg.ssl_root_cert.as_deref().map(|p| base_dir.join(p)),
            )?)),
        };
        let tls = rustls
            .as_ref()
            .map(|c| tokio_postgres_rustls::MakeRustlsConnect::new((**c).clone()));
        let application_name = cfg
            .application_name
            .clone()
            .unwrap_or_else(|| format!("inlet/{connection}"));
        Ok(Connect {
            cfg,
            password,
            application_name,
            connection: connection.to_string(),
            tls,
            rustls,
        })
    }

    /// The TLS client configuration (`None` when `ssl_mode = "disable"`).
    pub(crate) fn tls_client_config(&self) -> Option<Arc<rustls::ClientConfig>> {
        self.rustls.clone()
    }

    /// `host:port/database` for messages.
    pub fn resource(&self) -> String {
        format!(
            "postgres {}:{}/{}",
            self.cfg.host, self.cfg.port, self.cfg.database
        )
    }

    /// The connection's name.
    pub fn connection(&self) -> &str {
        &self.connection
    }

    /// The `application_name` of inlet's sessions.
    pub fn application_name(&self) -> &str {
        &self.application_name
    }

    /// The resolved password, for the replication session (never printed).
    pub(crate) fn password(&self) -> Option<&secrecy::SecretString> {
        self.password.as_ref()
    }

    /// The config.
    pub fn config(&self) -> &PostgresConfig {
        &self.cfg
    }

    /// Open a session and run the replica guard: refuse a primary unless allowed.
    pub async fn open(&self) -> Result<Session, SourceError> {
        let session = self.open_unguarded().await?;
        if !session.in_recovery {
            if !self.cfg.allow_primary {
                return Err(SourceError::config(
                    "host",
                    format!(
                        "{} is a primary (pg_is_in_recovery() is false). inlet reads hot standbys \
                         only, so a sync never loads production: point `host` at a replica, or set \
                         `allow_primary = true` to accept reading the primary",
                        self.resource()
                    ),
                ));
            }
            tracing::warn!(resource = %self.resource(), "reading a primary because allow_primary = true");
        }
        Ok(session)
    }

    /// Open a session without the guard (for `check`, which reports instead of refusing).
    pub async fn open_unguarded(&self) -> Result<Session, SourceError> {
        let mut pg = tokio_postgres::Config::new();
        pg.host(&self.cfg.host)
            .port(self.cfg.port)
            .dbname(&self.cfg.database)
            .user(&self.cfg.user)
            .application_name(&self.application_name)
            .connect_timeout(Duration::from_secs(self.cfg.connect_timeout_secs))
            .keepalives(true)
            .keepalives_idle(Duration::from_secs(30))
            // Read-only, UTC, bounded statements, no waiting behind replayed locks.
            .options(format!(
                "-c default_transaction_read_only=on -c TimeZone=UTC -c statement_timeout={}s \
                 -c standard_conforming_strings=on \
                 -c lock_timeout=30s -c idle_in_transaction_session_timeout=300s \
                 -c extra_float_digits=3 -c DateStyle=ISO -c IntervalStyle=postgres",
                self.cfg.statement_timeout_secs
            ));
        if let Some(p) = &self.password {
            pg.password(p.expose_secret().as_bytes());
        }
        let resource = self.resource();
        let client = match &self.tls {
            None => {
                pg.ssl_mode(tokio_postgres::config::SslMode::Disable);
                let (client, conn) = pg
                    .connect(tokio_postgres::NoTls)
                    .await
                    .map_err(|e| self.error(e))?;
                spawn_connection(conn, resource.clone());
                client
            }
            Some(tls) => {
                pg.ssl_mode(match self.cfg.ssl_mode {
                    SslMode::Prefer => tokio_postgres::config::SslMode::Prefer,
                    _ => tokio_postgres::config::SslMode::Require,
                });
                let (client, conn) = pg.connect(tls.clone()).await.map_err(|e| self.error(e))?;
                spawn_connection(conn, resource.clone());
                client
            }
        };
        let row = client
            .query_one("SELECT pg_is_in_recovery()", &[])
            .await
            .map_err(|e| self.error(e))?;
        let in_recovery: bool = row.get(0);
        Ok(Session {
            client,
            in_recovery,
        })
    }

    /// The replica's replay lag in seconds (0 on a primary, or when all WAL received is
    /// replayed).
    pub async fn replay_lag(&self, session: &Session) -> Result<f64, SourceError> {
        if !session.in_recovery {
            return Ok(0.0);
        }
        let row = session
            .client
            .query_one(REPLAY_LAG_SQL, &[])
            .await
            .map_err(|e| self.error(e))?;
        Ok(row.get(0))
    }

    /// Wait until the replay lag is under the limit, or fail, per `on_replay_lag`.
    pub async fn wait_for_lag(&self, session: &Session) -> Result<f64, SourceError> {
        let limit = self.cfg.max_replay_lag_secs as f64;
        let deadline =
            tokio::time::Instant::now() + Duration::from_secs(self.cfg.replay_lag_wait_secs);
        loop {
            let lag = self.replay_lag(session).await?;
            if lag <= limit {
                return Ok(lag);
            }
            let message = format!(
                "{} is {lag:.0} s behind its primary, over max_replay_lag_secs = {}",
                self.resource(),
                self.cfg.max_replay_lag_secs
            );
            if self.cfg.on_replay_lag == LagPolicy::Fail || tokio::time::Instant::now() >= deadline
            {
                return Err(SourceError::Unavailable {
                    resource: self.resource(),
                    message: format!(
                        "{message}; waited {} s (replay_lag_wait_secs). Check the replica's \
                         replication, or raise the limit",
                        self.cfg.replay_lag_wait_secs
                    ),
                });
            }
            tracing::warn!("{message}; waiting");
            tokio::time::sleep(Duration::from_secs(2)).await;
        }
    }

    /// What a Postgres error means for a sync: auth and config errors are permanent,
    /// recovery conflicts and lost connections are transient.
    pub fn error(&self, e: tokio_postgres::Error) -> SourceError {
        classify(&self.resource(), &self.cfg.user, &e)
    }
}

fn spawn_connection<S, T>(conn: tokio_postgres::Connection<S, T>, resource: String)
where
    S: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin + Send + 'static,
    T: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin + Send + 'static,
{
    tokio::spawn(async move {
        if let Err(e) = conn.await {
            tracing::debug!(%resource, error = %e, "connection ended");
        }
    });
}

/// Whether an error is a hot-standby conflict or a lost session: the kind of failure a
/// smaller chunk makes less likely.
pub fn is_conflict(e: &tokio_postgres::Error) -> bool {
    if e.is_closed() {
        return true;
    }
    matches!(
        e.code(),
        Some(c) if *c == SqlState::T_R_SERIALIZATION_FAILURE
            || *c == SqlState::T_R_DEADLOCK_DETECTED
            || *c == SqlState::ADMIN_SHUTDOWN
            || *c == SqlState::QUERY_CANCELED
            || *c == SqlState::DATABASE_DROPPED
    )
}

/// Whether an error with this SQLSTATE may go away when the same read is retried from
/// its last checkpoint. Decided per code, not per class: a class holds both kinds.
///
/// | code | meaning | retried | why |
/// |---|---|---|---|
/// | 08000-08007 | connection lost or refused | yes | the server or network comes back |
/// | 08P01 | protocol violation | no | a bug, not a condition |
/// | 40000, 40001, 40003, 40P01 | rollback, serialization failure (the hot-standby conflict), deadlock | yes | the retry reads smaller chunks |
/// | 53000, 53100, 53200, 53300 | out of resources, disk full, out of memory, too many connections | yes | other sessions release them |
/// | 53400 | configuration limit (e.g. `temp_file_limit`) | no | the same statement hits it again |
/// | 55006, 55P03 | object in use, lock not available (`lock_timeout`) | yes | the lock is released (a replayed lock on a standby) |
/// | 55000 | object not in prerequisite state (an unpopulated materialized view) | no | nothing changes by waiting |
/// | 55P02, 55P04 | runtime parameter, unsafe enum value | no | |
/// | 57000, 57014 | operator intervention, query canceled | yes | a DBA's cancel or `statement_timeout`; the retry reads smaller chunks, and a statement that cannot be split is refused as permanent by the reader once it ran for the whole `statement_timeout_secs` |
/// | 57P01, 57P02, 57P03, 57P05 | admin or crash shutdown, cannot connect now, idle session timeout | yes | a restart or failover |
/// | 57P04 | database dropped | no | |
/// | 58000, 58030 | system error, I/O error | yes | |
/// | 58P01, 58P02 | undefined or duplicate file | no | |
/// | HV00N | an FDW cannot reach its server | yes | |
/// | anything else (syntax, data, privileges, XX internal errors) | | no | |
pub fn is_transient_sqlstate(code: &str) -> bool {
    matches!(
        code,
        "08000"
            | "08001"
            | "08003"
            | "08004"
            | "08006"
            | "08007"
            | "40000"
            | "40001"
            | "40003"
            | "40P01"
            | "53000"
            | "53100"
            | "53200"
            | "53300"
            | "55006"
            | "55P03"
            | "57000"
            | "57014"
            | "57P01"
            | "57P02"
            | "57P03"
            | "57P05"
            | "58000"
            | "58030"
            | "HV00N"
    )
}

/// Classify a Postgres error.
pub fn classify(resource: &str, user: &str, e: &tokio_postgres::Error) -> SourceError {
    if let Some(db) = e.as_db_error() {
        let code = db.code();
        let text = db.message();
        if *code == SqlState::INVALID_PASSWORD
            || *code == SqlState::INVALID_AUTHORIZATION_SPECIFICATION
        {
            return SourceError::Auth {
                resource: resource.to_string(),
                message: format!("{text}; check `user` (`{user}`) and `password`"),
            };
        }
        if *code == SqlState::INVALID_CATALOG_NAME {
            return SourceError::config("database", format!("{resource}: {text}"));
        }
        if *code == SqlState::INSUFFICIENT_PRIVILEGE {
            return SourceError::Auth {
                resource: resource.to_string(),
                message: format!(
                    "{text}; grant the role read access (e.g. `GRANT pg_read_all_data TO {user}`)"
                ),
            };
        }
        if *code == SqlState::T_R_SERIALIZATION_FAILURE {
            return SourceError::Other {
                message: format!(
                    "{resource}: hot-standby conflict: {text} (retrying from the last checkpoint \
                     with a smaller chunk)"
                ),
                transient: true,
            };
        }
        if *code == SqlState::OBJECT_NOT_IN_PREREQUISITE_STATE
            && text.contains("has not been populated")
        {
            return SourceError::data(
                resource,
                format!(
                    "{text} (SQLSTATE 55000): it was refreshed WITH NO DATA during the sync; run \
                     `REFRESH MATERIALIZED VIEW` on the primary (unpopulated materialized views \
                     are skipped when a run starts)"
                ),
            );
        }
        let transient = is_transient_sqlstate(code.code());
        if *code == SqlState::UNDEFINED_TABLE || *code == SqlState::UNDEFINED_COLUMN {
            return SourceError::data(
                resource,
                format!(
                    "{text}: the table changed during the sync; the next run re-reads the catalog"
                ),
            );
        }
        return SourceError::Other {
            message: format!("{resource}: {text} (SQLSTATE {})", code.code()),
            transient,
        };
    }
    if e.is_closed() {
        return SourceError::Unavailable {
            resource: resource.to_string(),
            message: "the connection was closed by the server".into(),
        };
    }
    // Connect errors, timeouts, I/O: show the error chain, which never holds the password.
    let mut message = e.to_string();
    // Errors a retry cannot fix: TLS set-up and authentication exchanges.
    if message.contains("TLS") || message.contains("tls") {
        let mut chain = message.clone();
        let mut source = std::error::Error::source(e);
        while let Some(s) = source {
            chain.push_str(": ");
            chain.push_str(&s.to_string());
            source = s.source();
        }
        return SourceError::config(
            "ssl_mode",
            format!(
                "{resource}: {chain}; check `ssl_mode`, `ssl_root_cert` and that `host` matches the certificate"
            ),
        );
    }
    if message.contains("password missing") || message.contains("authentication") {
        return SourceError::Auth {
            resource: resource.to_string(),
            message: format!("{message}; check `user` (`{user}`) and `password`"),
        };
    }
    let mut source = std::error::Error::source(e);
    while let Some(s) = source {
        let s_text = s.to_string();
        if !message.contains(&s_text) {
            message.push_str(": ");
            message.push_str(&s_text);
        }
        source = s.source();
    }
    SourceError::Unavailable {
        resource: resource.to_string(),
        message: format!("{message}; check `host`, `port` and that the server accepts connections"),
    }
}

fn tls_config(
    mode: SslMode,
    root_cert: Option<std::path::PathBuf>,
) -> Result<rustls::ClientConfig, SourceError> {
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let builder = rustls::ClientConfig::builder_with_provider(provider.clone())
        .with_safe_default_protocol_versions()
        .map_err(|e| SourceError::config("ssl_mode", e))?;
    let config = if mode == SslMode::VerifyFull {
        let mut roots = rustls::RootCertStore::empty();
        match root_cert {
            Some(path) => {
                let pem = std::fs::read(&path).map_err(|e| {
                    SourceError::config(
                        "ssl_root_cert",
                        format!("cannot read {}: {e}", path.display()),
                    )
                })?;
                use rustls::pki_types::{CertificateDer, pem::PemObject};
                for cert in CertificateDer::pem_slice_iter(&pem) {
                    let cert = cert.map_err(|e| {
                        SourceError::config("ssl_root_cert", format!("{}: {e}", path.display()))
                    })?;
                    roots.add(cert).map_err(|e| {
                        SourceError::config("ssl_root_cert", format!("{}: {e}", path.display()))
                    })?;
                }
                if roots.is_empty() {
                    return Err(SourceError::config(
                        "ssl_root_cert",
                        format!(
                            "{} holds no PEM certificate (-----BEGIN CERTIFICATE-----): point it at the CA that signed the server's certificate",
                            path.display()
                        ),
                    ));
                }
            }
            None => roots.extend(webpki_roots::TLS_SERVER_ROOTS.iter().cloned()),
        }
        builder.with_root_certificates(roots).with_no_client_auth()
    } else {
        builder
            .dangerous()
            .with_custom_certificate_verifier(Arc::new(NoVerify(provider)))
            .with_no_client_auth()
    };
    Ok(config)
}

/// `require` and `prefer`: encrypted, certificate not checked (libpq's meaning).
#[derive(Debug)]
struct NoVerify(Arc<rustls::crypto::CryptoProvider>);

impl rustls::client::danger::ServerCertVerifier for NoVerify {
    fn verify_server_cert(
        &self,
        _end_entity: &rustls::pki_types::CertificateDer<'_>,
        _intermediates: &[rustls::pki_types::CertificateDer<'_>],
        _server_name: &rustls::pki_types::ServerName<'_>,
        _ocsp_response: &[u8],
        _now: rustls::pki_types::UnixTime,
    ) -> Result<rustls::client::danger::ServerCertVerified, rustls::Error> {
        Ok(rustls::client::danger::ServerCertVerified::assertion())
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &rustls::pki_types::CertificateDer<'_>,
        dss: &rustls::DigitallySignedStruct,
    ) -> Result<rustls::client::danger::HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls12_signature(
            message,
            cert,
            dss,
            &self.0.signature_verification_algorithms,
        )
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &rustls::pki_types::CertificateDer<'_>,
        dss: &rustls::DigitallySignedStruct,
    ) -> Result<rustls::client::danger::HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls13_signature(
            message,
            cert,
            dss,
            &self.0.signature_verification_algorithms,
        )
    }

    fn supported_verify_schemes(&self) -> Vec<rustls::SignatureScheme> {
        self.0.signature_verification_algorithms.supported_schemes()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sqlstates_are_retried_only_when_waiting_can_help() {
        let transient = [
            "08006", "08001", "40001", "40P01", "53300", "53200", "55P03", "55006", "57014",
            "57P01", "57P02", "57P03", "58030",
        ];
        let permanent = [
            // An unpopulated materialized view: retrying three times cannot populate it.
            "55000", "55P02", "08P01", "53400", "57P04", "58P01", "42P01", "42501", "22003",
            "XX000", "XX001", "0A000", "25006", "54000",
        ];
        for code in transient {
            assert!(is_transient_sqlstate(code), "{code} should be retried");
        }
        for code in permanent {
            assert!(!is_transient_sqlstate(code), "{code} must not be retried");
        }
        // The constants the rest of the crate matches on are the codes in the table.
        assert!(is_transient_sqlstate(
            SqlState::T_R_SERIALIZATION_FAILURE.code()
        ));
        assert!(is_transient_sqlstate(SqlState::LOCK_NOT_AVAILABLE.code()));
        assert!(!is_transient_sqlstate(
            SqlState::OBJECT_NOT_IN_PREREQUISITE_STATE.code()
        ));
    }
}
