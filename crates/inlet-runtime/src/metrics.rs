//! Prometheus metrics of the daemon (kept with the `prometheus-client` crate) and the HTTP
//! server for `/metrics` and `/healthz` (hyper, GET and HEAD only).
//!
//! Counters start at zero with each process, as Prometheus expects; what must agree across
//! restarts and replicas (when a connection last succeeded, how many runs in a row failed)
//! is seeded from the run records in the lake at start and refreshed from them when another
//! process ran the connection.

use std::{
    collections::BTreeMap,
    convert::Infallible,
    fmt,
    net::SocketAddr,
    sync::{Arc, Mutex},
    time::Duration,
};

use bytes::Bytes;
use chrono::{DateTime, Utc};
use http_body_util::Full;
use hyper::{Method, Request, Response, StatusCode, body::Incoming, header};
use hyper_util::rt::{TokioIo, TokioTimer};
use inlet_lake::{RunOutcome, RunRecord, RunSummary};
use prometheus_client::{
    collector::Collector,
    encoding::{DescriptorEncoder, EncodeMetric},
    metrics::{
        MetricType, counter::Counter, family::Family, gauge::ConstGauge, gauge::Gauge,
        histogram::Histogram, info::Info,
    },
    registry::{Registry, Unit},
};

use crate::daemon::Stop;

/// One label set: `connection`, and `outcome` or `reason` where the metric has it.
type Labels = Vec<(String, String)>;

/// Upper bounds (seconds) of the run-duration buckets: from a quiet incremental run to a
/// six-hour backfill.
const DURATION_BUCKETS: [f64; 14] = [
    0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 120.0, 300.0, 600.0, 1800.0, 3600.0, 7200.0, 21600.0,
];

/// The outcomes a finished run can have (each has a sample from the start).
const OUTCOMES: [RunOutcome; 3] = [
    RunOutcome::Succeeded,
    RunOutcome::Failed,
    RunOutcome::Interrupted,
];

fn duration_histogram() -> Histogram {
    Histogram::new(DURATION_BUCKETS)
}

fn of(connection: &str) -> Labels {
    vec![("connection".into(), connection.into())]
}

fn with(connection: &str, key: &str, value: &str) -> Labels {
    vec![
        ("connection".into(), connection.into()),
        (key.into(), value.into()),
    ]
}

/// The daemon's metrics. Every method takes `&self`: the values are atomics.
#[derive(Debug)]
pub struct Metrics {
    registry: Registry,
    runs: Family<Labels, Counter>,
    skipped: Family<Labels, Counter>,
    rows: Family<Labels, Counter>,
    bytes: Family<Labels, Counter>,
    files: Family<Labels, Counter>,
    failures: Family<Labels, Counter>,
    catalog_failures: Family<Labels, Counter>,
    duration: Family<Labels, Histogram, fn() -> Histogram>,
    consecutive_failures: Family<Labels, Gauge>,
    source_gauges: Family<Labels, Gauge<f64, std::sync::atomic::AtomicU64>>,
    last_success: Arc<Mutex<BTreeMap<String, f64>>>,
}

impl Default for Metrics {
    fn default() -> Self {
        Self::new()
    }
}

impl Metrics {
    /// Every metric, registered, with no connection yet.
    pub fn new() -> Self {
        let mut registry = Registry::default();
        let runs = Family::<Labels, Counter>::default();
        let skipped = Family::<Labels, Counter>::default();
        let rows = Family::<Labels, Counter>::default();
        let bytes = Family::<Labels, Counter>::default();
        let files = Family::<Labels, Counter>::default();
        let failures = Family::<Labels, Counter>::default();
        let catalog_failures = Family::<Labels, Counter>::default();
        let duration = Family::<Labels, Histogram, fn() -> Histogram>::new_with_constructor(
            duration_histogram,
        );
        let consecutive_failures = Family::<Labels, Gauge>::default();
        let source_gauges = Family::<Labels, Gauge<f64, std::sync::atomic::AtomicU64>>::default();
        let last_success = Arc::new(Mutex::new(BTreeMap::new()));

        registry.register(
            "inlet_build",
            "The inlet that serves these metrics (always 1)",
            Info::new(vec![("version".to_string(), env!("CARGO_PKG_VERSION"))]),
        );
        registry.register("inlet_runs", "Runs that ended, by outcome", runs.clone());
        registry.register(
            "inlet_runs_skipped",
            "Scheduled runs skipped because another process held the connection",
            skipped.clone(),
        );
        registry.register("inlet_rows", "Rows landed", rows.clone());
        registry.register("inlet_bytes", "Bytes of Parquet landed", bytes.clone());
        registry.register("inlet_files", "Parquet files landed", files.clone());
        registry.register(
            "inlet_run_failures",
            "Runs that failed, or could not start",
            failures.clone(),
        );
        registry.register(
            "inlet_catalog_failures",
            "Streams whose catalog registration failed after landing (retried at the next run)",
            catalog_failures.clone(),
        );
        registry.register_with_unit(
            "inlet_run_duration",
            "Duration of runs that ended",
            Unit::Seconds,
            duration.clone(),
        );
        registry.register(
            "inlet_consecutive_failures",
            "Runs in a row that failed (a connection at 3 or more is paused between tries)",
            consecutive_failures.clone(),
        );
        registry.register(
            "inlet_source_gauge",
            "What a source measured when it planned a stream's read, by name: \
             slot_retained_bytes (WAL a CDC stream's replication slot keeps on the standby), \
             cdc_lag_bytes (WAL between the stream's position and the standby's)",
            source_gauges.clone(),
        );
        registry.register_collector(Box::new(Freshness(last_success.clone())));
        Metrics {
            registry,
            runs,
            skipped,
            rows,
            bytes,
            files,
            failures,
            catalog_failures,
            duration,
            consecutive_failures,
            source_gauges,
            last_success,
        }
    }

    /// Make a connection appear (with zeros) before its first run, seeded with what the run
    /// records say: when it last succeeded and how many runs in a row failed since.
    pub fn register(&self, connection: &str, seed: &RunSummary) {
        let l = of(connection);
        for outcome in OUTCOMES {
            let _ = self
                .runs
                .get_or_create(&with(connection, "outcome", outcome.as_str()));
        }
        let _ = self
            .skipped
            .get_or_create(&with(connection, "reason", "busy"));
        for family in [
            &self.rows,
            &self.bytes,
            &self.files,
            &self.failures,
            &self.catalog_failures,
        ] {
            let _ = family.get_or_create(&l);
        }
        let _ = self.duration.get_or_create(&l);
        self.refresh(connection, seed);
    }

    /// Take when the connection last succeeded and its failures in a row from the run
    /// records (another process may have run it).
    pub fn refresh(&self, connection: &str, seed: &RunSummary) {
        if let Some(t) = seed.last_success.as_ref().and_then(|r| r.finished_at) {
            self.note_success(connection, t);
        }
        self.set_failing(connection, seed.consecutive_failures);
    }

    fn note_success(&self, connection: &str, at: DateTime<Utc>) {
        let t = at.timestamp_millis() as f64 / 1000.0;
        let mut last = self.last_success.lock().unwrap_or_else(|e| e.into_inner());
        let e = last.entry(connection.to_string()).or_insert(t);
        *e = e.max(t);
    }

    /// Count a finished run.
    pub fn record_run(&self, connection: &str, record: &RunRecord) {
        let l = of(connection);
        self.runs
            .get_or_create(&with(connection, "outcome", record.outcome.as_str()))
            .inc();
        self.rows.get_or_create(&l).inc_by(record.rows());
        self.bytes.get_or_create(&l).inc_by(record.bytes());
        self.files.get_or_create(&l).inc_by(record.files());
        if let Some(d) = record.duration_secs() {
            self.duration.get_or_create(&l).observe(d.max(0.0));
        }
        if record.outcome == RunOutcome::Failed {
            self.failures.get_or_create(&l).inc();
        }
        for (stream, stats) in &record.streams {
            for (name, value) in &stats.gauges {
                let labels = vec![
                    ("connection".to_string(), connection.to_string()),
                    ("stream".to_string(), stream.clone()),
                    ("name".to_string(), name.clone()),
                ];
                self.source_gauges.get_or_create(&labels).set(*value);
            }
        }
        self.catalog_failures
            .get_or_create(&l)
            .inc_by(record.catalog_failures().count() as u64);
        if record.outcome == RunOutcome::Succeeded
            && let Some(t) = record.finished_at
        {
            self.note_success(connection, t);
        }
    }

    /// Count a run that could not start.
    pub fn record_error(&self, connection: &str) {
        self.runs
            .get_or_create(&with(connection, "outcome", "failed"))
            .inc();
        self.failures.get_or_create(&of(connection)).inc();
    }

    /// Count a skipped run.
    pub fn record_skip(&self, connection: &str, reason: &str) {
        self.skipped
            .get_or_create(&with(connection, "reason", reason))
            .inc();
    }

    /// Record how many runs in a row failed.
    pub fn set_failing(&self, connection: &str, consecutive: u32) {
        self.consecutive_failures
            .get_or_create(&of(connection))
            .set(i64::from(consecutive));
    }

    /// The exposition, in the OpenMetrics text format (which Prometheus reads).
    pub fn render(&self) -> String {
        let mut out = String::new();
        // Writing to a String cannot fail.
        let _ = prometheus_client::encoding::text::encode(&mut out, &self.registry);
        out
    }
}

/// `inlet_last_success_timestamp_seconds` and `inlet_lag_seconds`, computed at each scrape.
/// A connection that never succeeded has neither sample (no `0` or `-1` stand-ins): alert
/// on `absent()` or on `inlet_runs_total`.
#[derive(Debug)]
struct Freshness(Arc<Mutex<BTreeMap<String, f64>>>);

impl Collector for Freshness {
    fn encode(&self, mut encoder: DescriptorEncoder<'_>) -> Result<(), fmt::Error> {
        let last = self.0.lock().unwrap_or_else(|e| e.into_inner()).clone();
        let now = Utc::now().timestamp_millis() as f64 / 1000.0;
        {
            let mut family = encoder.encode_descriptor(
                "inlet_last_success_timestamp",
                "End of the last successful run, from this process or the run records",
                Some(&Unit::Seconds),
                MetricType::Gauge,
            )?;
            for (connection, t) in &last {
                let labels = of(connection);
                ConstGauge::new(*t).encode(family.encode_family(&labels)?)?;
            }
        }
        let mut family = encoder.encode_descriptor(
            "inlet_lag",
            "Seconds since the last successful run ended",
            Some(&Unit::Seconds),
            MetricType::Gauge,
        )?;
        for (connection, t) in &last {
            let labels = of(connection);
            ConstGauge::new((now - t).max(0.0)).encode(family.encode_family(&labels)?)?;
        }
        Ok(())
    }
}

type Body = Full<Bytes>;

fn respond(request: &Request<Incoming>, metrics: &Metrics, stop: &Stop) -> Response<Body> {
    let reply = |status: StatusCode, ctype: &str, body: String| {
        let mut r = Response::new(Full::new(Bytes::from(body)));
        *r.status_mut() = status;
        if let Ok(v) = header::HeaderValue::from_str(ctype) {
            r.headers_mut().insert(header::CONTENT_TYPE, v);
        }
        r
    };
    if request.method() != Method::GET && request.method() != Method::HEAD {
        let mut r = reply(
            StatusCode::METHOD_NOT_ALLOWED,
            "text/plain",
            "only GET\n".into(),
        );
        r.headers_mut()
            .insert(header::ALLOW, header::HeaderValue::from_static("GET, HEAD"));
        return r;
    }
    match request.uri().path() {
        "/metrics" => reply(
            StatusCode::OK,
            "application/openmetrics-text; version=1.0.0; charset=utf-8",
            metrics.render(),
        ),
        "/healthz" if stop.requested() => reply(
            StatusCode::SERVICE_UNAVAILABLE,
            "text/plain",
            "stopping\n".into(),
        ),
        "/healthz" => reply(StatusCode::OK, "text/plain", "ok\n".into()),
        _ => reply(
            StatusCode::NOT_FOUND,
            "text/plain",
            "try /metrics or /healthz\n".into(),
        ),
    }
}

/// Serve `/metrics` and `/healthz` on `addr` until the process ends.
pub async fn serve(
    addr: SocketAddr,
    metrics: Arc<Metrics>,
    stop: Stop,
) -> std::io::Result<SocketAddr> {
    let listener = tokio::net::TcpListener::bind(addr).await?;
    let bound = listener.local_addr()?;
    tracing::info!(addr = %bound, "serving /metrics and /healthz");
    tokio::spawn(async move {
        let mut pause = Duration::from_millis(10);
        loop {
            let stream = match listener.accept().await {
                Ok((stream, _)) => {
                    pause = Duration::from_millis(10);
                    stream
                }
                Err(e) => {
                    // Out of file descriptors and the like: wait before trying again
                    // rather than spin on the error.
                    tracing::warn!(error = %e, pause_ms = pause.as_millis() as u64, "metrics server: accept failed");
                    tokio::time::sleep(pause).await;
                    pause = (pause * 2).min(Duration::from_secs(1));
                    continue;
                }
            };
            let (metrics, stop) = (metrics.clone(), stop.clone());
            tokio::spawn(async move {
                let service = hyper::service::service_fn(move |request| {
                    let response = respond(&request, &metrics, &stop);
                    async move { Ok::<_, Infallible>(response) }
                });
                let served = hyper::server::conn::http1::Builder::new()
                    .timer(TokioTimer::new())
                    .header_read_timeout(Duration::from_secs(5))
                    .keep_alive(false)
                    .serve_connection(TokioIo::new(stream), service)
                    .await;
                if let Err(e) = served {
                    tracing::debug!(error = %e, "metrics server: connection ended with an error");
                }
            });
        }
    });
    Ok(bound)
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;

    use chrono::{Duration, Utc};
    use inlet_lake::{CatalogAction, CatalogStreamResult, RunOutcome, RunRecord, RunSummary};

    use super::Metrics;

    fn record(outcome: RunOutcome, secs: i64) -> RunRecord {
        let started_at = Utc::now() - Duration::seconds(secs);
        RunRecord {
            run_id: "r".into(),
            connection: "c".into(),
            started_at,
            finished_at: Some(Utc::now()),
            outcome,
            streams: BTreeMap::new(),
            error: None,
            catalog: BTreeMap::new(),
        }
    }

    fn line<'a>(text: &'a str, prefix: &str) -> &'a str {
        text.lines()
            .find(|l| l.starts_with(prefix))
            .unwrap_or_else(|| panic!("no `{prefix}` in:\n{text}"))
    }

    fn value(text: &str, prefix: &str) -> f64 {
        let l = line(text, prefix);
        l.rsplit(' ')
            .next()
            .and_then(|v| v.parse().ok())
            .unwrap_or_else(|| panic!("no value in `{l}`"))
    }

    #[test]
    fn a_sources_measurements_are_gauges_per_stream() {
        let mut stats = inlet_lake::StreamRunStats::new(inlet_core::SyncMode::Incremental);
        stats.gauges = BTreeMap::from([("slot_retained_bytes".to_string(), 1_048_576.0)]);
        let mut r = record(RunOutcome::Succeeded, 1);
        r.streams = BTreeMap::from([("public.orders".to_string(), stats)]);
        let m = Metrics::new();
        m.record_run("c", &r);
        let text = m.render();
        let key = "inlet_source_gauge{connection=\"c\",stream=\"public.orders\",name=\"slot_retained_bytes\"}";
        assert_eq!(value(&text, key), 1_048_576.0, "{text}");
    }

    #[test]
    fn a_failed_catalog_registration_is_counted_per_stream() {
        let result = |action| CatalogStreamResult {
            table: "raw.t".into(),
            action,
            changes: Vec::new(),
            error: None,
        };
        let mut r = record(RunOutcome::Succeeded, 1);
        r.catalog = BTreeMap::from([
            ("a".to_string(), result(CatalogAction::Failed)),
            ("b".to_string(), result(CatalogAction::Created)),
            ("c".to_string(), result(CatalogAction::Failed)),
        ]);
        let m = Metrics::new();
        m.register("c", &RunSummary::default());
        m.record_run("c", &r);
        m.record_run("c", &r);
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

    #[test]
    fn durations_are_a_histogram_and_a_connection_that_never_succeeded_has_no_lag() {
        let m = Metrics::new();
        m.register("quiet", &RunSummary::default());
        m.register("busy", &RunSummary::default());
        m.record_run("busy", &record(RunOutcome::Succeeded, 3));
        m.record_run("busy", &record(RunOutcome::Failed, 40));
        let text = m.render();
        assert!(text.ends_with("# EOF\n"), "{text}");
        assert!(line(&text, "inlet_build_info{").ends_with(" 1"), "{text}");
        assert!(
            text.contains("inlet_run_duration_seconds_bucket{le=\"2.5\",connection=\"busy\"} 0")
                || text.contains(
                    "inlet_run_duration_seconds_bucket{connection=\"busy\",le=\"2.5\"} 0"
                ),
            "{text}"
        );
        assert!(
            line(
                &text,
                "inlet_run_duration_seconds_count{connection=\"busy\"}"
            )
            .ends_with(" 2"),
            "{text}"
        );
        assert!(
            line(
                &text,
                "inlet_run_duration_seconds_count{connection=\"quiet\"}"
            )
            .ends_with(" 0"),
            "{text}"
        );
        assert!(
            text.contains("inlet_lag_seconds{connection=\"busy\"}"),
            "{text}"
        );
        assert!(!text.contains("connection=\"quiet\"} -"), "{text}");
        assert!(
            !text.contains("inlet_lag_seconds{connection=\"quiet\"}")
                && !text.contains("inlet_last_success_timestamp_seconds{connection=\"quiet\"}"),
            "a connection that never succeeded has no freshness sample:\n{text}"
        );
    }

    #[test]
    fn the_run_records_seed_the_last_success_and_failures_in_a_row() {
        let m = Metrics::new();
        let last = record(RunOutcome::Succeeded, 5);
        let at = last.finished_at.unwrap().timestamp_millis() as f64 / 1000.0;
        m.register(
            "c",
            &RunSummary {
                last_success: Some(last),
                consecutive_failures: 2,
            },
        );
        let text = m.render();
        let key = "inlet_last_success_timestamp_seconds{connection=\"c\"}";
        let seeded = value(&text, key);
        assert!((seeded - at).abs() < 0.001, "{seeded} vs {at}");
        assert!(
            text.contains("inlet_consecutive_failures{connection=\"c\"} 2"),
            "{text}"
        );
        // An older success from elsewhere never moves it back.
        let mut older = record(RunOutcome::Succeeded, 5);
        older.finished_at = Some(Utc::now() - Duration::hours(1));
        m.record_run("c", &older);
        assert_eq!(value(&m.render(), key), seeded);
    }
}
