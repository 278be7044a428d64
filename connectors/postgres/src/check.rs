//! `inlet check` for a Postgres connection: login, replica, replay lag, read-only
//! session, privileges; with a `cdc` table, what change data capture needs (each problem
//! with the SQL that fixes it, and where) and the slots' retained WAL.

use inlet_core::{CheckReport, SourceError};

use crate::{PostgresSource, catalog};

impl PostgresSource {
    /// Check the connection ([`inlet_core::Source::check`]).
    pub(crate) async fn check_source(&self) -> Result<CheckReport, SourceError> {
        let mut report = CheckReport::default();
        let resource = self.connect.resource();
        let session = match self.connect.open_unguarded().await {
            Ok(s) => {
                report.push("connects", true, format!("{resource} accepted the login"));
                s
            }
            Err(e) => {
                report.push("connects", false, e.to_string());
                return Ok(report);
            }
        };
        let cfg = self.connect.config();
        match (session.in_recovery, cfg.allow_primary) {
            (true, _) => report.push("is a replica", true, "pg_is_in_recovery() is true"),
            (false, true) => report.push(
                "is a replica",
                true,
                "a primary, read because allow_primary = true: syncs load production",
            ),
            (false, false) => report.push(
                "is a replica",
                false,
                format!(
                    "{resource} is a primary; inlet refuses to read it. Point `host` at a hot \
                     standby, or set `allow_primary = true`"
                ),
            ),
        }
        match self.connect.replay_lag(&session).await {
            Ok(lag) => report.push(
                "replay lag",
                lag <= cfg.max_replay_lag_secs as f64,
                format!(
                    "{lag:.1} s (limit max_replay_lag_secs = {})",
                    cfg.max_replay_lag_secs
                ),
            ),
            Err(e) => report.push("replay lag", false, e.to_string()),
        }
        let read_only = session
            .client
            .query_one("SHOW default_transaction_read_only", &[])
            .await
            .map(|r| r.get::<_, String>(0) == "on")
            .unwrap_or(false);
        report.push(
            "read-only session",
            read_only,
            "default_transaction_read_only = on",
        );
        match catalog::tables(&self.connect, &session.client).await {
            Ok(tables) => {
                let names: Vec<String> = tables.iter().map(|t| t.stream_name()).collect();
                // One query for every table (a catalog may hold thousands).
                let oids: Vec<u32> = tables.iter().map(|t| t.oid).collect();
                let privileges = session
                    .client
                    .query(
                        "SELECT o FROM unnest($1::oid[]) o \
                          WHERE NOT has_table_privilege(o, 'SELECT')",
                        &[&oids],
                    )
                    .await;
                let (ok, detail) = match privileges {
                    Err(e) => (
                        false,
                        format!(
                            "cannot check the SELECT privilege: {}",
                            self.connect.error(e)
                        ),
                    ),
                    Ok(_) if names.is_empty() => {
                        (false, "no table matches `tables`/`exclude`".to_string())
                    }
                    Ok(rows) => {
                        let refused: Vec<u32> = rows.iter().map(|r| r.get(0)).collect();
                        let denied: Vec<String> = tables
                            .iter()
                            .filter(|t| refused.contains(&t.oid))
                            .map(|t| t.stream_name())
                            .collect();
                        if denied.is_empty() {
                            (
                                true,
                                format!("{} tables: {}", names.len(), names.join(", ")),
                            )
                        } else {
                            (
                                false,
                                format!(
                                    "no SELECT privilege on {}: GRANT pg_read_all_data TO {}",
                                    denied.join(", "),
                                    cfg.user
                                ),
                            )
                        }
                    }
                };
                report.push("tables readable", ok, detail);
            }
            Err(e) => report.push("tables readable", false, e.to_string()),
        }
        if cfg.cdc.is_some() {
            self.check_cdc(&session, &mut report).await;
        }
        Ok(report)
    }
}

impl PostgresSource {
    async fn check_cdc(&self, session: &crate::session::Session, report: &mut CheckReport) {
        let Some(cdc) = self.connect.config().cdc.as_ref() else {
            return;
        };
        match crate::cdc::slot::problems(&self.connect, session, &cdc.publication, &[]).await {
            Ok(problems) if problems.is_empty() => {
                let tables: Vec<String> = session
                    .client
                    .query(
                        "SELECT schemaname || '.' || tablename FROM pg_publication_tables \
                          WHERE pubname = $1 ORDER BY 1",
                        &[&cdc.publication],
                    )
                    .await
                    .map(|rows| rows.iter().map(|r| r.get(0)).collect())
                    .unwrap_or_default();
                report.push(
                    "change data capture",
                    true,
                    format!(
                        "PostgreSQL 16+, wal_level = logical, hot_standby_feedback = on, \
                         REPLICATION granted; publication `{}` publishes {}",
                        cdc.publication,
                        if tables.is_empty() {
                            "no table yet".to_string()
                        } else {
                            tables.join(", ")
                        }
                    ),
                );
            }
            Ok(problems) => {
                for p in problems {
                    report.push(
                        "change data capture",
                        false,
                        format!("{}. Fix: {}", p.what, p.fix),
                    );
                }
            }
            Err(e) => report.push("change data capture", false, e.to_string()),
        }
        let prefix = crate::cdc::slot::slot_prefix(self.connect.connection());
        let slots = session
            .client
            .query(
                "SELECT slot_name::text, \
                        pg_wal_lsn_diff(COALESCE(pg_last_wal_replay_lsn(), pg_current_wal_lsn()), \
                                        restart_lsn)::int8, \
                        COALESCE(wal_status, ''), active_pid \
                   FROM pg_replication_slots WHERE slot_type = 'logical' \
                    AND starts_with(slot_name::text, $1) ORDER BY 1",
                &[&prefix],
            )
            .await;
        match slots {
            Err(e) => report.push(
                "replication slots",
                false,
                self.connect.error(e).to_string(),
            ),
            Ok(rows) if rows.is_empty() => report.push(
                "replication slots",
                true,
                "none yet: the first sync of each CDC stream makes its slot on the standby",
            ),
            Ok(rows) => {
                for r in rows {
                    let name: String = r.get(0);
                    let bytes: Option<i64> = r.get(1);
                    let status: String = r.get(2);
                    let bytes = bytes.unwrap_or(0);
                    let lost = status == "lost";
                    let over = bytes as u64 > cdc.max_retained_bytes;
                    report.push(
                        format!("slot {name}"),
                        !lost && !over,
                        if lost {
                            "invalidated: the WAL it needed is gone. `inlet state reset` of its \
                             stream makes a new slot and lands a new snapshot"
                                .to_string()
                        } else {
                            format!(
                                "keeps {bytes} bytes of WAL on the standby (limit \
                                 cdc.max_retained_bytes = {}){}",
                                cdc.max_retained_bytes,
                                if over { ": sync more often" } else { "" }
                            )
                        },
                    );
                }
            }
        }
    }
}
