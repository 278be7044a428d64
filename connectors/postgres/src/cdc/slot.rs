//! The replication slot of a CDC stream on the standby: its name, what the server says
//! about it, making, advancing and dropping it, and the server's fitness for logical
//! decoding (version, `hot_standby_feedback`, the publication).

use inlet_core::SourceError;
use pgwire_replication::Lsn;
use serde_json::Value;

use crate::{
    catalog::{Table, literal},
    session::{Connect, Session},
};

/// Logical decoding on a standby needs PostgreSQL 16.
pub(crate) const MIN_VERSION: i32 = 160_000;

/// The slot of `stream` read by `connection`: `inlet_<connection>_<stream>`, lower case,
/// `[a-z0-9_]`, at most 63 bytes (a long name ends with a hash of the full one).
pub fn slot_name(connection: &str, stream: &str) -> String {
    let full = format!("inlet_{connection}_{stream}");
    let mut name = clean(&full);
    if name.len() > 63 || name != full {
        // Two streams may map to the same cleaned name: a hash of the original keeps
        // them apart.
        let hash = full.bytes().fold(0xcbf2_9ce4_8422_2325u64, |h, b| {
            (h ^ u64::from(b)).wrapping_mul(0x0100_0000_01b3)
        });
        name.truncate(50);
        name.push_str(&format!("_{:012x}", hash & 0xffff_ffff_ffff));
    }
    name
}

/// The start every slot name of `connection` shares (see [`slot_name`]).
pub fn slot_prefix(connection: &str) -> String {
    let mut p = clean(&format!("inlet_{connection}_"));
    p.truncate(50);
    p
}

/// Lower case, with every character outside `[a-z0-9_]` made `_`.
fn clean(name: &str) -> String {
    name.chars()
        .map(|c| {
            let c = c.to_ascii_lowercase();
            if c.is_ascii_alphanumeric() || c == '_' {
                c
            } else {
                '_'
            }
        })
        .collect()
}

/// What `pg_replication_slots` says about a slot.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct SlotInfo {
    pub(crate) plugin: Option<String>,
    pub(crate) database: Option<String>,
    pub(crate) active_pid: Option<i64>,
    pub(crate) confirmed_flush: Option<Lsn>,
    /// Why the server invalidated it (`wal_removed`, `rows_removed`, `wal_level_insufficient`...).
    pub(crate) invalidated: Option<String>,
    /// WAL the slot keeps on the server, in bytes.
    pub(crate) retained_bytes: Option<i64>,
}

fn lsn(v: &Value) -> Option<Lsn> {
    v.as_str().and_then(|s| Lsn::parse(s).ok())
}

/// The slot named `name`, or `None`.
pub(crate) async fn inspect(
    connect: &Connect,
    session: &Session,
    name: &str,
) -> Result<Option<SlotInfo>, SourceError> {
    // to_jsonb: the columns differ between versions (`conflicting` in 16,
    // `invalidation_reason` from 17).
    let rows = session
        .client
        .query(
            "SELECT to_jsonb(s)::text, \
                    pg_wal_lsn_diff(COALESCE(pg_last_wal_replay_lsn(), pg_current_wal_lsn()), \
                                    s.restart_lsn)::int8 \
               FROM pg_replication_slots s WHERE s.slot_name = $1",
            &[&name],
        )
        .await
        .map_err(|e| connect.error(e))?;
    let Some(row) = rows.first() else {
        return Ok(None);
    };
    let json: Value = serde_json::from_str(row.get::<_, &str>(0)).unwrap_or(Value::Null);
    let text = |k: &str| json.get(k).and_then(Value::as_str).map(str::to_string);
    let invalidated = text("invalidation_reason").or_else(|| {
        (json.get("conflicting") == Some(&Value::Bool(true))).then(|| "conflict".to_string())
    });
    let invalidated = invalidated.or_else(|| {
        (json.get("wal_status").and_then(Value::as_str) == Some("lost"))
            .then(|| "wal_removed".to_string())
    });
    Ok(Some(SlotInfo {
        plugin: text("plugin"),
        database: text("database"),
        active_pid: json.get("active_pid").and_then(Value::as_i64),
        confirmed_flush: json.get("confirmed_flush_lsn").and_then(lsn),
        invalidated,
        retained_bytes: row.get(1),
    }))
}

/// Make the slot; returns the position its changes start from.
pub(crate) async fn create(
    connect: &Connect,
    session: &Session,
    name: &str,
    wait_secs: u64,
) -> Result<Lsn, SourceError> {
    session
        .client
        .batch_execute(&format!("SET statement_timeout = '{}s'", wait_secs.max(1)))
        .await
        .map_err(|e| connect.error(e))?;
    let made = session
        .client
        .query_one(
            "SELECT lsn::text FROM pg_create_logical_replication_slot($1, 'pgoutput')",
            &[&name],
        )
        .await;
    let reset = session
        .client
        .batch_execute(&format!(
            "SET statement_timeout = '{}s'",
            connect.config().statement_timeout_secs
        ))
        .await;
    let row = made.map_err(|e| create_error(connect, name, wait_secs, e))?;
    reset.map_err(|e| connect.error(e))?;
    let text: String = row.get(0);
    Lsn::parse(&text).map_err(|e| SourceError::other(format!("slot `{name}`: {e:?}")))
}

fn create_error(
    connect: &Connect,
    name: &str,
    wait_secs: u64,
    e: tokio_postgres::Error,
) -> SourceError {
    let resource = connect.resource();
    let message = e
        .as_db_error()
        .map(|d| d.message().to_string())
        .unwrap_or_default();
    if e.code() == Some(&tokio_postgres::error::SqlState::QUERY_CANCELED) {
        return SourceError::Other {
            message: format!(
                "{resource}: making replication slot `{name}` waited {wait_secs} s for the \
                 primary to log a snapshot of its running transactions (it does so every 15 s \
                 while it writes; an idle primary never does). Run `SELECT \
                 pg_log_standby_snapshot();` on the primary once, or raise \
                 cdc.slot_wait_secs, then sync again"
            ),
            transient: true,
        };
    }
    if message.contains("wal_level") {
        return SourceError::config(
            "cdc",
            format!(
                "{resource}: {message}. On the primary run `ALTER SYSTEM SET wal_level = \
                 logical;` and restart it (the standby's wal_level must be logical too), then \
                 sync again"
            ),
        );
    }
    if message.contains("permission") || message.contains("must be superuser") {
        return SourceError::Auth {
            resource,
            message: format!(
                "{message}. Logical decoding needs the REPLICATION attribute: on the primary \
                 run `ALTER ROLE {} REPLICATION;`",
                connect.config().user
            ),
        };
    }
    connect.error(e)
}

/// Move the slot's confirmed position to `to` (what the lake holds): the server may then
/// remove the WAL before it.
pub(crate) async fn advance(
    connect: &Connect,
    session: &Session,
    name: &str,
    to: Lsn,
) -> Result<(), SourceError> {
    session
        .client
        .execute(
            &format!(
                "SELECT pg_replication_slot_advance($1, {}::pg_lsn)",
                literal(&to.to_pg_string())
            ),
            &[&name],
        )
        .await
        .map_err(|e| connect.error(e))?;
    Ok(())
}

/// Drop the slot.
pub(crate) async fn drop(
    connect: &Connect,
    session: &Session,
    name: &str,
) -> Result<(), SourceError> {
    session
        .client
        .execute("SELECT pg_drop_replication_slot($1)", &[&name])
        .await
        .map_err(|e| connect.error(e))?;
    Ok(())
}

/// The server's replay position (a standby), or its WAL position (a primary).
pub(crate) async fn replay_lsn(connect: &Connect, session: &Session) -> Result<Lsn, SourceError> {
    let text: String = session
        .client
        .query_one(
            "SELECT COALESCE(pg_last_wal_replay_lsn(), pg_current_wal_lsn())::text",
            &[],
        )
        .await
        .map_err(|e| connect.error(e))?
        .get(0);
    Lsn::parse(&text).map_err(|e| SourceError::other(format!("replay position {text}: {e:?}")))
}

/// One problem that stops change data capture, with its fix.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct Problem {
    /// What is wrong.
    pub(crate) what: String,
    /// What to run, and where.
    pub(crate) fix: String,
}

/// Everything about the server that stops CDC of `tables` through `publication`: the
/// version, `hot_standby_feedback`, the standby's `wal_level`, the publication and its
/// tables, the role's REPLICATION attribute.
pub(crate) async fn problems(
    connect: &Connect,
    session: &Session,
    publication: &str,
    tables: &[&Table],
) -> Result<Vec<Problem>, SourceError> {
    let q = |sql: &'static str| async move {
        session
            .client
            .query_one(sql, &[])
            .await
            .map_err(|e| connect.error(e))
    };
    let version: i32 = q("SELECT current_setting('server_version_num')::int4")
        .await?
        .get(0);
    let mut out = Vec::new();
    if version < MIN_VERSION {
        let shown: String = q("SELECT current_setting('server_version')").await?.get(0);
        out.push(Problem {
            what: format!(
                "the server is PostgreSQL {shown}: change data capture on a standby needs \
                 PostgreSQL 16 or newer"
            ),
            fix: "upgrade the standby and primary to 16+, or read these tables by \
                  `cursor_field = \"xmin\"` (or a cursor column) instead of CDC"
                .into(),
        });
        return Ok(out);
    }
    if session.in_recovery {
        let feedback: String = q("SELECT current_setting('hot_standby_feedback')")
            .await?
            .get(0);
        if feedback != "on" {
            out.push(Problem {
                what: "hot_standby_feedback is off on the standby: the primary may vacuum \
                       catalog rows the slot still needs, and the server then invalidates \
                       the slot"
                    .into(),
                fix: "on the standby run `ALTER SYSTEM SET hot_standby_feedback = on; SELECT \
                      pg_reload_conf();` (and give it a physical slot on the primary: \
                      `primary_slot_name`, so feedback survives reconnects)"
                    .into(),
            });
        }
    }
    let wal_level: String = q("SELECT current_setting('wal_level')").await?.get(0);
    if wal_level != "logical" {
        out.push(Problem {
            what: format!(
                "wal_level is {wal_level} on {}: logical decoding needs `logical` on the \
                 primary and on the standby",
                if session.in_recovery {
                    "the standby"
                } else {
                    "the server"
                }
            ),
            fix: "run `ALTER SYSTEM SET wal_level = logical;` on the primary and on the \
                  standby, and restart both (the primary first)"
                .into(),
        });
    }
    let can: bool =
        q("SELECT rolreplication OR rolsuper FROM pg_roles WHERE rolname = current_user")
            .await?
            .get(0);
    if !can {
        out.push(Problem {
            what: format!(
                "role `{}` has no REPLICATION attribute: it cannot make or read a slot",
                connect.config().user
            ),
            fix: format!(
                "on the primary run `ALTER ROLE {} REPLICATION;`",
                connect.config().user
            ),
        });
    }
    let exists: bool = session
        .client
        .query_one(
            "SELECT EXISTS (SELECT 1 FROM pg_publication WHERE pubname = $1)",
            &[&publication],
        )
        .await
        .map_err(|e| connect.error(e))?
        .get(0);
    let names: Vec<String> = tables.iter().map(|t| t.sql_name()).collect();
    if !exists {
        out.push(Problem {
            what: format!("publication `{publication}` does not exist"),
            fix: format!(
                "on the primary run `CREATE PUBLICATION {} FOR TABLE {};` (it replicates to \
                 the standby)",
                crate::catalog::ident(publication),
                if names.is_empty() {
                    "...".to_string()
                } else {
                    names.join(", ")
                }
            ),
        });
        return Ok(out);
    }
    let mut missing = Vec::new();
    for t in tables {
        // A partitioned table is published as itself or through its leaves
        // (pg_partition_tree of a plain table is empty).
        let published: bool = session
            .client
            .query_one(
                "SELECT EXISTS (SELECT 1 FROM pg_publication_tables p \
                   JOIN pg_class c ON c.relname = p.tablename \
                   JOIN pg_namespace n ON n.oid = c.relnamespace AND n.nspname = p.schemaname \
                  WHERE p.pubname = $1 \
                    AND (c.oid = $2::oid OR c.oid IN (SELECT relid FROM pg_partition_tree($2::oid))))",
                &[&publication, &t.oid],
            )
            .await
            .map_err(|e| connect.error(e))?
            .get(0);
        if !published {
            missing.push(t.sql_name());
        }
    }
    if !missing.is_empty() {
        out.push(Problem {
            what: format!("publication `{publication}` lacks {}", missing.join(", ")),
            fix: format!(
                "on the primary run `ALTER PUBLICATION {} ADD TABLE {};`",
                crate::catalog::ident(publication),
                missing.join(", ")
            ),
        });
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn slot_names_are_valid_and_distinct() {
        assert_eq!(
            slot_name("shop", "public_orders"),
            "inlet_shop_public_orders"
        );
        let a = slot_name("shop", "public.orders");
        let b = slot_name("shop", "public_orders");
        assert_ne!(a, b);
        let long = slot_name("a-very-long-connection-name", &"x".repeat(80));
        assert!(long.len() <= 63, "{long}");
        for n in [a, long] {
            assert!(
                n.bytes()
                    .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == b'_')
            );
        }
    }
}
