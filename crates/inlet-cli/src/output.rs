//! Human and JSON output of each command.

use std::{collections::BTreeMap, io::Write};

use inlet_core::{Catalog, CheckReport, ConnectorInfo};
use inlet_lake::{CatalogStreamResult, ConnectionState, HistoryEntry, RunRecord};
use inlet_runtime::ops::StatePlan;
use serde_json::json;

pub struct Output {
    pub json: bool,
}

fn print_json(v: &serde_json::Value) -> anyhow::Result<()> {
    let mut out = std::io::stdout().lock();
    serde_json::to_writer_pretty(&mut out, v)?;
    writeln!(out)?;
    Ok(())
}

/// One compact JSON document on one line (NDJSON), for outputs of several parts.
pub fn json_line(v: &serde_json::Value) -> anyhow::Result<()> {
    let mut out = std::io::stdout().lock();
    serde_json::to_writer(&mut out, v)?;
    writeln!(out)?;
    out.flush()?;
    Ok(())
}

/// An error as JSON: its kind (the exit code's name), message (with causes) and exit code.
pub fn error_value(message: &str, code: u8, kind: &str) -> serde_json::Value {
    serde_json::json!({
        "kind": kind,
        "message": message,
        "exit_code": code,
    })
}

/// Under `--json`, a failed command prints `{"error": {...}}` on stdout (the text line
/// stays on stderr).
pub fn error_json(message: &str, code: u8, kind: &str) {
    let _ = json_line(&serde_json::json!({ "error": error_value(message, code, kind) }));
}

pub fn progress_bar(connection: &str) -> indicatif::ProgressBar {
    let bar = indicatif::ProgressBar::new_spinner();
    bar.set_style(
        indicatif::ProgressStyle::with_template("{spinner} {prefix} {msg} [{elapsed}]")
            .unwrap_or_else(|_| indicatif::ProgressStyle::default_spinner()),
    );
    bar.set_prefix(connection.to_string());
    bar.enable_steady_tick(std::time::Duration::from_millis(200));
    bar
}

fn human_bytes(n: u64) -> String {
    const UNITS: [&str; 5] = ["B", "KiB", "MiB", "GiB", "TiB"];
    let mut v = n as f64;
    let mut u = 0;
    while v >= 1024.0 && u < UNITS.len() - 1 {
        v /= 1024.0;
        u += 1;
    }
    if u == 0 {
        format!("{n} B")
    } else {
        format!("{v:.1} {}", UNITS[u])
    }
}

impl Output {
    pub fn connectors(&self, infos: &[ConnectorInfo]) -> anyhow::Result<()> {
        if self.json {
            return print_json(&serde_json::to_value(infos)?);
        }
        println!("{:<16} {:<10} {:<8} DESCRIPTION", "NAME", "VERSION", "KIND");
        for i in infos {
            let hosts = if i.hosts.is_empty() {
                String::new()
            } else {
                format!(" (hosts: {})", i.hosts.join(", "))
            };
            println!(
                "{:<16} {:<10} {:<8} {}{}",
                i.name, i.version, i.kind, i.description, hosts
            );
        }
        Ok(())
    }

    pub fn check(&self, connection: &str, report: &CheckReport) -> anyhow::Result<()> {
        if self.json {
            return print_json(
                &json!({"connection": connection, "ok": report.ok(), "items": report.items}),
            );
        }
        for item in &report.items {
            println!(
                "{} {}: {}",
                if item.ok { "ok  " } else { "FAIL" },
                item.name,
                item.message
            );
        }
        println!(
            "{connection}: {}",
            if report.ok() {
                "check passed"
            } else {
                "check FAILED"
            }
        );
        Ok(())
    }

    pub fn catalog(&self, catalog: &Catalog) -> anyhow::Result<()> {
        if self.json {
            let streams: Vec<_> = catalog
                .streams
                .iter()
                .map(|s| {
                    json!({
                        "name": s.name,
                        "schema": s.schema.as_ref(),
                        "primary_key": s.primary_key,
                        "cursor_candidates": s.cursor_candidates,
                        "sync_modes": s.sync_modes,
                        "default_mode": s.default_mode,
                        "opt_in": s.opt_in,
                    })
                })
                .collect();
            return print_json(&json!({ "streams": streams }));
        }
        for s in &catalog.streams {
            let modes: Vec<&str> = s.sync_modes.iter().map(|m| m.as_str()).collect();
            println!(
                "stream {} (modes: {}; default {}{})",
                s.name,
                modes.join(", "),
                s.default_mode,
                if s.opt_in {
                    "; synced only when named in the connection's streams"
                } else {
                    ""
                }
            );
            if !s.primary_key.is_empty() {
                println!("  primary key: {}", s.primary_key.join(", "));
            }
            for f in s.schema.fields() {
                println!(
                    "  {:<32} {}{}",
                    f.name(),
                    f.data_type(),
                    if f.is_nullable() { "" } else { " not null" }
                );
            }
        }
        Ok(())
    }

    /// A sync skipped because another run holds the connection (`--if-busy skip`).
    pub fn skipped_busy(
        &self,
        connection: &str,
        why: &dyn std::fmt::Display,
    ) -> anyhow::Result<()> {
        if self.json {
            return json_line(&serde_json::json!({
                "connection": connection,
                "outcome": "skipped",
                "reason": "busy",
                "message": why.to_string(),
            }));
        }
        eprintln!("{connection}: skipped, another run holds the connection ({why})");
        Ok(())
    }

    /// `inlet daemon --dry-run`: each scheduled connection and its next due times.
    pub fn plan(&self, plan: &[inlet_runtime::daemon::PlannedConnection]) -> anyhow::Result<()> {
        if self.json {
            return print_json(&serde_json::to_value(plan)?);
        }
        for p in plan {
            println!("{}: {} ({})", p.connection, p.schedule, p.timezone);
            let zone: chrono_tz::Tz = p.timezone.parse().unwrap_or(chrono_tz::Tz::UTC);
            for t in &p.next {
                if zone == chrono_tz::Tz::UTC {
                    println!("  {}", t.format("%Y-%m-%d %H:%M:%S UTC"));
                } else {
                    println!(
                        "  {}  ({})",
                        t.format("%Y-%m-%d %H:%M:%S UTC"),
                        t.with_timezone(&zone).format("%Y-%m-%d %H:%M:%S %Z")
                    );
                }
            }
        }
        Ok(())
    }

    pub fn run(&self, r: &RunRecord) -> anyhow::Result<()> {
        if self.json {
            return print_json(&serde_json::to_value(r)?);
        }
        println!(
            "{} run {}: {} — {} rows, {} files, {} in {:.1}s",
            r.connection,
            r.run_id,
            r.outcome,
            r.rows(),
            r.files(),
            human_bytes(r.bytes()),
            r.duration_secs().unwrap_or(0.0)
        );
        for (name, s) in &r.streams {
            let extra = match (&s.error, s.skipped) {
                (Some(e), _) => format!(" FAILED: {e}"),
                (None, 0) => String::new(),
                (None, n) => format!(" ({n} bad records skipped)"),
            };
            println!(
                "  {name:<24} {:<13} {:>10} rows {:>4} files{extra}",
                s.mode.as_str(),
                s.rows,
                s.files
            );
            for w in &s.warnings {
                println!("  {:<24} warning: {w}", "");
            }
        }
        self.catalog_lines(&r.catalog);
        Ok(())
    }

    /// Each stream's table and what registration did (`inlet sync`, `inlet catalog sync`).
    pub fn catalog_lines(&self, results: &BTreeMap<String, CatalogStreamResult>) {
        if !results.is_empty() {
            println!("catalog:");
        }
        for (stream, c) in results {
            let extra = match (&c.error, c.changes.is_empty()) {
                (Some(e), _) => format!(": {e}"),
                (None, false) => format!(" ({})", c.changes.join(", ")),
                (None, true) => String::new(),
            };
            println!("  {stream:<24} {:<9} {}{extra}", c.action.as_str(), c.table);
        }
    }

    pub fn runs(&self, runs: &[RunRecord]) -> anyhow::Result<()> {
        if self.json {
            return print_json(&serde_json::to_value(runs)?);
        }
        println!(
            "{:<26} {:<16} {:<11} {:>10} {:>10} {:>6} {:>8}",
            "RUN", "CONNECTION", "OUTCOME", "ROWS", "BYTES", "FILES", "SECONDS"
        );
        for r in runs {
            println!(
                "{:<26} {:<16} {:<11} {:>10} {:>10} {:>6} {:>8}",
                r.run_id,
                r.connection,
                r.outcome,
                r.rows(),
                human_bytes(r.bytes()),
                r.files(),
                r.duration_secs()
                    .map(|d| format!("{d:.1}"))
                    .unwrap_or_else(|| "-".into())
            );
            if let Some(e) = &r.error {
                println!("  error: {e}");
            }
        }
        Ok(())
    }

    pub fn state(&self, state: &ConnectionState, stream: Option<&str>) -> anyhow::Result<()> {
        let mut v = serde_json::to_value(state)?;
        if let Some(s) = stream {
            let one = v["streams"]
                .get(s)
                .cloned()
                .unwrap_or(serde_json::Value::Null);
            v = json!({ "seq": state.seq, "stream": s, "state": one });
        }
        print_json(&v)
    }

    pub fn state_plan(&self, plan: &StatePlan) -> anyhow::Result<()> {
        if self.json {
            return print_json(&serde_json::to_value(plan)?);
        }
        if plan.changes.is_empty() {
            println!("{}: nothing to change", plan.connection);
            return Ok(());
        }
        for (stream, (before, after)) in &plan.changes {
            println!("stream {stream}:");
            println!("  before: {}", serde_json::to_string(before)?);
            println!("  after:  {}", serde_json::to_string(after)?);
            let slot = before
                .as_ref()
                .and_then(|b| b.cursor.as_ref())
                .and_then(|c| c.get("slot"))
                .and_then(|s| s.as_str());
            if let (Some(slot), None) = (slot, after) {
                println!(
                    "  the next sync drops replication slot `{slot}` on the standby, makes a new \
                     one and lands a new snapshot of the table"
                );
            }
        }
        match plan.seq {
            Some(seq) if plan.applied => {
                println!("{}: committed as version {seq}", plan.connection)
            }
            _ => println!("{}: dry run, nothing changed", plan.connection),
        }
        Ok(())
    }

    pub fn history(&self, history: &[HistoryEntry]) -> anyhow::Result<()> {
        if self.json {
            return print_json(&serde_json::to_value(history)?);
        }
        println!(
            "{:>6} {:<25} {:<16} {:<28} {:<26} STREAMS",
            "SEQ", "AT", "ACTION", "BY", "RUN"
        );
        for e in history {
            let streams: Vec<&str> = e.changes.keys().map(String::as_str).collect();
            println!(
                "{:>6} {:<25} {:<16} {:<28} {:<26} {}",
                e.seq,
                e.at.format("%Y-%m-%dT%H:%M:%SZ"),
                e.action.label(),
                e.actor,
                e.run_id.as_deref().unwrap_or("-"),
                streams.join(",")
            );
        }
        Ok(())
    }
}
