//! Prometheus metrics of the daemon and a tiny HTTP server for `/metrics` and `/healthz`.

use std::{collections::BTreeMap, fmt::Write as _, net::SocketAddr, sync::Arc};

use chrono::Utc;
use inlet_lake::{RunOutcome, RunRecord};
use tokio::{
    io::{AsyncReadExt, AsyncWriteExt},
    sync::Mutex,
};

use crate::daemon::Stop;

#[derive(Debug, Default, Clone)]
struct ConnectionMetrics {
    runs: BTreeMap<String, u64>,
    rows: u64,
    bytes: u64,
    files: u64,
    duration_sum: f64,
    duration_count: u64,
    failures: u64,
    catalog_failures: u64,
    skipped: BTreeMap<String, u64>,
    last_success: Option<f64>,
    consecutive_failures: u32,
}

/// Counters per connection.
#[derive(Debug, Default)]
pub struct Metrics {
    connections: BTreeMap<String, ConnectionMetrics>,
}

/// Label set and value of each sample.
type Samples = Vec<(String, String)>;

fn family(out: &mut String, name: &str, kind: &str, help: &str, rows: Vec<(String, String)>) {
    let _ = writeln!(out, "# HELP {name} {help}");
    let _ = writeln!(out, "# TYPE {name} {kind}");
    for (labels, value) in rows {
        let _ = writeln!(out, "{name}{{{labels}}} {value}");
    }
}

fn label(v: &str) -> String {
    v.replace('\\', "\\\\")
        .replace('"', "\\\"")
        .replace('\n', "\\n")
}

impl Metrics {
    /// Make a connection appear (with zeros) before its first run.
    pub fn register(&mut self, connection: &str) {
        self.connections.entry(connection.to_string()).or_default();
    }

    /// Count a finished run.
    pub fn record_run(&mut self, connection: &str, record: &RunRecord) {
        let m = self.connections.entry(connection.to_string()).or_default();
        *m.runs.entry(record.outcome.to_string()).or_default() += 1;
        m.rows += record.rows();
        m.bytes += record.bytes();
        m.files += record.files();
        if let Some(d) = record.duration_secs() {
            m.duration_sum += d;
            m.duration_count += 1;
        }
        if record.outcome == RunOutcome::Failed {
            m.failures += 1;
        }
        m.catalog_failures += record.catalog_failures().count() as u64;
        if record.outcome == RunOutcome::Succeeded {
            m.last_success = record
                .finished_at
                .map(|t| t.timestamp_millis() as f64 / 1000.0);
        }
    }

    /// Count a run that could not start.
    pub fn record_error(&mut self, connection: &str) {
        let m = self.connections.entry(connection.to_string()).or_default();
        *m.runs.entry("failed".into()).or_default() += 1;
        m.failures += 1;
    }

    /// Count a skipped run.
    pub fn record_skip(&mut self, connection: &str, reason: &str) {
        let m = self.connections.entry(connection.to_string()).or_default();
        *m.skipped.entry(reason.to_string()).or_default() += 1;
    }

    /// Record how many runs in a row failed.
    pub fn set_failing(&mut self, connection: &str, consecutive: u32) {
        self.connections
            .entry(connection.to_string())
            .or_default()
            .consecutive_failures = consecutive;
    }

    /// The Prometheus text exposition.
    pub fn render(&self) -> String {
        let mut out = String::new();
        let now = Utc::now().timestamp_millis() as f64 / 1000.0;
        let each = |f: &dyn Fn(&str, &ConnectionMetrics) -> Samples| -> Samples {
            self.connections.iter().flat_map(|(c, m)| f(c, m)).collect()
        };
        family(
            &mut out,
            "inlet_runs_total",
            "counter",
            "Runs that ended, by outcome.",
            each(&|c, m| {
                ["succeeded", "failed", "interrupted"]
                    .iter()
                    .map(|o| {
                        (
                            format!("connection=\"{}\",outcome=\"{o}\"", label(c)),
                            m.runs.get(*o).copied().unwrap_or(0).to_string(),
                        )
                    })
                    .collect()
            }),
        );
        family(
            &mut out,
            "inlet_runs_skipped_total",
            "counter",
            "Scheduled runs skipped because another process held the connection.",
            each(&|c, m| {
                vec![(
                    format!("connection=\"{}\",reason=\"busy\"", label(c)),
                    m.skipped.get("busy").copied().unwrap_or(0).to_string(),
                )]
            }),
        );
        for (name, help, get) in [
            (
                "inlet_rows_total",
                "Rows landed.",
                (|m: &ConnectionMetrics| m.rows) as fn(&ConnectionMetrics) -> u64,
            ),
            ("inlet_bytes_total", "Bytes of Parquet landed.", |m| m.bytes),
            ("inlet_files_total", "Parquet files landed.", |m| m.files),
            ("inlet_run_failures_total", "Runs that failed.", |m| {
                m.failures
            }),
            (
                "inlet_catalog_failures_total",
                "Streams whose catalog registration failed after landing (retried at the next run).",
                |m| m.catalog_failures,
            ),
        ] {
            family(
                &mut out,
                name,
                "counter",
                help,
                each(&|c, m| vec![(format!("connection=\"{}\"", label(c)), get(m).to_string())]),
            );
        }
        let _ = writeln!(
            out,
            "# HELP inlet_run_duration_seconds Duration of runs that ended."
        );
        let _ = writeln!(out, "# TYPE inlet_run_duration_seconds summary");
        for (c, m) in &self.connections {
            let _ = writeln!(
                out,
                "inlet_run_duration_seconds_sum{{connection=\"{}\"}} {}",
                label(c),
                m.duration_sum
            );
            let _ = writeln!(
                out,
                "inlet_run_duration_seconds_count{{connection=\"{}\"}} {}",
                label(c),
                m.duration_count
            );
        }
        family(
            &mut out,
            "inlet_last_success_timestamp_seconds",
            "gauge",
            "End of the last successful run (0: none yet).",
            each(&|c, m| {
                vec![(
                    format!("connection=\"{}\"", label(c)),
                    m.last_success.unwrap_or(0.0).to_string(),
                )]
            }),
        );
        family(
            &mut out,
            "inlet_lag_seconds",
            "gauge",
            "Seconds since the last successful run (-1: none yet).",
            each(&|c, m| {
                vec![(
                    format!("connection=\"{}\"", label(c)),
                    m.last_success
                        .map(|t| (now - t).max(0.0))
                        .unwrap_or(-1.0)
                        .to_string(),
                )]
            }),
        );
        family(
            &mut out,
            "inlet_consecutive_failures",
            "gauge",
            "Runs in a row that failed (a connection at 3 or more is paused between tries).",
            each(&|c, m| {
                vec![(
                    format!("connection=\"{}\"", label(c)),
                    m.consecutive_failures.to_string(),
                )]
            }),
        );
        out
    }
}

/// Serve `/metrics` and `/healthz` on `addr` until the process ends.
pub async fn serve(
    addr: SocketAddr,
    metrics: Arc<Mutex<Metrics>>,
    stop: Stop,
) -> std::io::Result<SocketAddr> {
    let listener = tokio::net::TcpListener::bind(addr).await?;
    let bound = listener.local_addr()?;
    tracing::info!(addr = %bound, "serving /metrics and /healthz");
    tokio::spawn(async move {
        loop {
            let Ok((mut socket, _)) = listener.accept().await else {
                continue;
            };
            let metrics = metrics.clone();
            let stop = stop.clone();
            tokio::spawn(async move {
                let mut buf = vec![0u8; 4096];
                let mut len = 0;
                while len < buf.len() {
                    match tokio::time::timeout(
                        std::time::Duration::from_secs(5),
                        socket.read(&mut buf[len..]),
                    )
                    .await
                    {
                        Ok(Ok(0)) | Err(_) | Ok(Err(_)) => break,
                        Ok(Ok(n)) => len += n,
                    }
                    if buf[..len].windows(4).any(|w| w == b"\r\n\r\n") {
                        break;
                    }
                }
                let request = String::from_utf8_lossy(&buf[..len]);
                let path = request.split_whitespace().nth(1).unwrap_or("/");
                let (status, ctype, body) = match path {
                    "/metrics" => (
                        "200 OK",
                        "text/plain; version=0.0.4; charset=utf-8",
                        metrics.lock().await.render(),
                    ),
                    "/healthz" if stop.requested() => {
                        ("503 Service Unavailable", "text/plain", "stopping\n".into())
                    }
                    "/healthz" => ("200 OK", "text/plain", "ok\n".into()),
                    _ => (
                        "404 Not Found",
                        "text/plain",
                        "try /metrics or /healthz\n".into(),
                    ),
                };
                let response = format!(
                    "HTTP/1.1 {status}\r\nContent-Type: {ctype}\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
                    body.len()
                );
                let _ = socket.write_all(response.as_bytes()).await;
                let _ = socket.shutdown().await;
            });
        }
    });
    Ok(bound)
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;

    use inlet_lake::{CatalogAction, CatalogStreamResult, RunOutcome, RunRecord};

    use super::Metrics;

    #[test]
    fn a_failed_catalog_registration_is_counted_per_stream() {
        let result = |action| CatalogStreamResult {
            table: "raw.t".into(),
            action,
            changes: Vec::new(),
            error: None,
        };
        let record = RunRecord {
            run_id: "r".into(),
            connection: "c".into(),
            started_at: chrono::Utc::now(),
            finished_at: None,
            outcome: RunOutcome::Succeeded,
            streams: BTreeMap::new(),
            error: None,
            catalog: BTreeMap::from([
                ("a".to_string(), result(CatalogAction::Failed)),
                ("b".to_string(), result(CatalogAction::Created)),
                ("c".to_string(), result(CatalogAction::Failed)),
            ]),
        };
        let mut m = Metrics::default();
        m.record_run("c", &record);
        m.record_run("c", &record);
        let text = m.render();
        assert!(
            text.contains("inlet_catalog_failures_total{connection=\"c\"} 4"),
            "{text}"
        );
        assert!(
            text.contains("inlet_run_failures_total{connection=\"c\"} 0"),
            "{text}"
        );
    }
}
