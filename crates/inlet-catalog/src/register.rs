//! Registration: every stream of a connection that has landed a schema becomes a table of
//! the Glue Data Catalog, and stays in step with what lands.
//!
//! Per stream: the [`Table`] of what it landed ([`Table::for_stream`] over its
//! [`SchemaRecord`], from the record the runtime writes or, for older lakes, from the
//! files' footers), then `GetTable`:
//!
//! - missing: the database is created if missing, then the table (`created`);
//! - present and made by this connection (`inlet.connection`): read back into a
//!   [`Table`], brought up to what landed with [`Table::evolve`], and `UpdateTable` (a new
//!   table version in Glue) only when the definition differs (`updated`), no call at all
//!   when it does not (`unchanged`);
//! - made by another connection or not by inlet, or changed unsafely: an error naming the
//!   table and what to do, and no call that changes the table.
//!
//! Registering every stream that has a record, not only those of the last run, makes a
//! failed registration heal at the next sync: it is idempotent.

use std::{collections::BTreeMap, sync::Arc};

use inlet_lake::{CatalogAction, CatalogStreamResult, SchemaRecord, SchemaStore, Storage};

use crate::{
    CatalogConfig, CatalogError, Column, ColumnChange, HiveType, INPUT_FORMAT, OUTPUT_FORMAT,
    SERDE, StreamTable, Table,
    glue::{GlueClient, GlueColumn, GlueOptions, GlueSerde, GlueStorage, GlueTable},
};

/// The IAM actions inlet calls on the Glue Data Catalog, and why.
pub const IAM_ACTIONS: [(&str, &str); 8] = [
    ("glue:GetDatabase", "sync, check"),
    ("glue:CreateDatabase", "sync (the first time)"),
    ("glue:GetTable", "sync"),
    ("glue:GetTables", "catalog show, check"),
    ("glue:CreateTable", "sync (a new stream)"),
    ("glue:UpdateTable", "sync (a column added or widened)"),
    ("glue:DeleteTable", "check (its probe table)"),
    ("glue:GetTableVersions", "catalog show"),
];

/// One connection's lake as registration sees it.
#[derive(Debug, Clone)]
pub struct Lake<'a> {
    /// The connection (the `<source>` folder of the lake).
    pub connection: &'a str,
    /// The raw root it lands in.
    pub storage: Arc<dyn Storage>,
    /// The destination's catalog.
    pub config: &'a CatalogConfig,
}

/// The destination's side of a Glue client: `catalog.region` else the destination's
/// region, `catalog.endpoint`, the destination's explicit keys when set (else the AWS
/// chain).
pub fn glue_options(
    config: &CatalogConfig,
    destination_region: Option<&str>,
    credentials: Option<(String, secrecy::SecretString, Option<secrecy::SecretString>)>,
) -> GlueOptions {
    GlueOptions {
        region: config
            .region
            .clone()
            .or_else(|| destination_region.map(str::to_string)),
        endpoint: config.endpoint.clone(),
        credentials,
        ..GlueOptions::default()
    }
}

/// The streams of `connection` with something landed: those with a schema record, and
/// (for lakes landed before records) those with Parquet files; sorted.
pub async fn streams(storage: &dyn Storage, connection: &str) -> Result<Vec<String>, CatalogError> {
    let lake = |message: String| CatalogError::Lake {
        stream: "*".into(),
        message,
    };
    let records = inlet_lake::layout::schema_key(connection, "");
    let records = records.trim_end_matches(".json");
    let mut out = std::collections::BTreeSet::new();
    for o in storage
        .list(records)
        .await
        .map_err(|e| lake(e.to_string()))?
    {
        if let Some(stream) = o
            .key
            .strip_prefix(records)
            .and_then(|k| k.strip_suffix(".json"))
            .filter(|s| !s.contains('/'))
        {
            out.insert(stream.to_string());
        }
    }
    let data = format!("{connection}/");
    for o in storage.list(&data).await.map_err(|e| lake(e.to_string()))? {
        if !o.key.ends_with(".parquet") {
            continue;
        }
        if let Some((stream, _)) = o.key.strip_prefix(&data).and_then(|k| k.split_once('/')) {
            out.insert(stream.to_string());
        }
    }
    Ok(out.into_iter().collect())
}

/// What `stream` landed: its schema record, else one read from its files' footers;
/// `None` when it landed nothing.
pub async fn landed(
    storage: Arc<dyn Storage>,
    connection: &str,
    stream: &str,
) -> Result<Option<SchemaRecord>, CatalogError> {
    let store = SchemaStore::new(storage);
    let lake = |e: inlet_lake::LakeError| CatalogError::Lake {
        stream: stream.to_string(),
        message: e.to_string(),
    };
    match store.load(connection, stream).await.map_err(lake)? {
        Some(r) => Ok(Some(r)),
        None => store.scan(connection, stream).await.map_err(lake),
    }
}

/// The table `stream` should be, from what it landed; `None` when it landed nothing.
pub async fn stream_table(lake: &Lake<'_>, stream: &str) -> Result<Option<Table>, CatalogError> {
    let Some(record) = landed(lake.storage.clone(), lake.connection, stream).await? else {
        return Ok(None);
    };
    let url = lake.storage.url();
    Table::for_stream(&StreamTable {
        connection: lake.connection,
        stream,
        record: &record,
        primary_key: &record.primary_key,
        lake_url: &url,
        config: Some(lake.config),
    })
    .map(Some)
}

/// Register every stream of the connection that landed something ([`streams`]); one
/// result per stream. An error only when the lake cannot be listed or two streams map to
/// one table name; a stream whose registration fails is a `failed` result and the others
/// go on.
pub async fn register(
    glue: &GlueClient,
    lake: &Lake<'_>,
) -> Result<BTreeMap<String, CatalogStreamResult>, CatalogError> {
    let names = streams(lake.storage.as_ref(), lake.connection).await?;
    crate::check_table_names(
        lake.connection,
        names.iter().map(String::as_str),
        Some(lake.config),
    )?;
    let mut out = BTreeMap::new();
    let mut database_ready = false;
    for stream in names {
        let table_name = format!(
            "{}.{}",
            crate::database_name(lake.connection, Some(lake.config)),
            crate::table_name(&stream, Some(lake.config))
        );
        let result = match register_stream(glue, lake, &stream, &mut database_ready).await {
            Ok(Some((action, changes))) => CatalogStreamResult {
                table: table_name,
                action,
                changes: changes.iter().map(ToString::to_string).collect(),
                error: None,
            },
            Ok(None) => continue,
            Err(e) => {
                tracing::warn!(connection = lake.connection, stream, error = %e, "catalog registration failed; the next sync tries again");
                CatalogStreamResult {
                    table: table_name,
                    action: CatalogAction::Failed,
                    changes: Vec::new(),
                    error: Some(e.to_string()),
                }
            }
        };
        out.insert(stream, result);
    }
    Ok(out)
}

async fn register_stream(
    glue: &GlueClient,
    lake: &Lake<'_>,
    stream: &str,
    database_ready: &mut bool,
) -> Result<Option<(CatalogAction, Vec<ColumnChange>)>, CatalogError> {
    let Some(landed) = stream_table(lake, stream).await? else {
        return Ok(None);
    };
    let Some(existing) = glue.get_table(&landed.database, &landed.name).await? else {
        if !*database_ready {
            if glue.get_database(&landed.database).await?.is_none() {
                glue.create_database(
                    &landed.database,
                    &format!("raw streams of inlet connection `{}`", lake.connection),
                )
                .await?;
            }
            *database_ready = true;
        }
        glue.create_table(&landed.database, &to_glue(&landed, None))
            .await?;
        tracing::info!(connection = lake.connection, stream, table = %landed.qualified_name(), "catalog table created");
        return Ok(Some((CatalogAction::Created, Vec::new())));
    };
    *database_ready = true;
    check_owner(&existing, &landed, lake.connection)?;
    let current = from_glue(&landed.database, &existing)?;
    let (evolved, changes) = Table::evolve(&current, &landed)?;
    let wanted = to_glue(&evolved, Some(&existing));
    if same_definition(&wanted, &existing) {
        return Ok(Some((CatalogAction::Unchanged, changes)));
    }
    glue.update_table(&landed.database, &wanted).await?;
    tracing::info!(connection = lake.connection, stream, table = %landed.qualified_name(), changes = ?changes, "catalog table updated");
    Ok(Some((CatalogAction::Updated, changes)))
}

fn check_owner(existing: &GlueTable, landed: &Table, connection: &str) -> Result<(), CatalogError> {
    match existing.parameters.get("inlet.connection") {
        Some(c) if c == connection => Ok(()),
        other => Err(CatalogError::Owned {
            table: landed.qualified_name(),
            owner: other.map_or_else(
                || "something other than inlet (no `inlet.connection` parameter)".to_string(),
                |c| format!("connection `{c}`"),
            ),
            connection: connection.to_string(),
        }),
    }
}

/// Whether Glue already holds `wanted` (what it reports beyond the input is ignored).
fn same_definition(wanted: &GlueTable, existing: &GlueTable) -> bool {
    let mut existing = existing.clone();
    existing.database_name = None;
    existing.version_id = None;
    *wanted == existing
}

fn glue_column(c: &Column) -> GlueColumn {
    GlueColumn {
        name: c.name.clone(),
        ty: c.ty.to_string(),
        comment: c.comment.clone(),
    }
}

/// `table` as Glue's `TableInput`. Parameters of `existing` that inlet does not set
/// (an analyst's, Athena's) are kept.
pub fn to_glue(table: &Table, existing: Option<&GlueTable>) -> GlueTable {
    let mut parameters = existing.map(|e| e.parameters.clone()).unwrap_or_default();
    parameters.extend(table.parameters.clone());
    let mut serde_parameters = existing
        .map(|e| e.storage_descriptor.serde_info.parameters.clone())
        .unwrap_or_default();
    serde_parameters.insert("serialization.format".into(), "1".into());
    GlueTable {
        name: table.name.clone(),
        database_name: None,
        table_type: Some("EXTERNAL_TABLE".into()),
        storage_descriptor: GlueStorage {
            columns: table.columns.iter().map(glue_column).collect(),
            location: Some(table.location.clone()),
            input_format: Some(INPUT_FORMAT.into()),
            output_format: Some(OUTPUT_FORMAT.into()),
            serde_info: GlueSerde {
                serialization_library: Some(SERDE.into()),
                parameters: serde_parameters,
            },
        },
        partition_keys: vec![glue_column(&table.partition_key)],
        parameters,
        version_id: None,
    }
}

/// A Glue table read back as a [`Table`] (types parsed with [`HiveType::parse`]).
pub fn from_glue(database: &str, t: &GlueTable) -> Result<Table, CatalogError> {
    let column = |c: &GlueColumn| -> Result<Column, CatalogError> {
        Ok(Column {
            name: c.name.clone(),
            ty: HiveType::parse(&c.ty)?,
            comment: c.comment.clone(),
        })
    };
    let columns = t
        .storage_descriptor
        .columns
        .iter()
        .map(column)
        .collect::<Result<Vec<_>, _>>()?;
    let partition_key = match t.partition_keys.as_slice() {
        [key] => column(key)?,
        keys => {
            return Err(CatalogError::Invalid {
                table: format!("{database}.{}", t.name),
                message: format!(
                    "the catalog table has partition keys [{}], inlet's have one, `extracted_at`; drop the table (its data stays in the lake) and sync again",
                    keys.iter()
                        .map(|k| k.name.as_str())
                        .collect::<Vec<_>>()
                        .join(", ")
                ),
            });
        }
    };
    let primary_key = t
        .parameters
        .get("inlet.primary_key")
        .map(|k| {
            k.split(',')
                .filter(|s| !s.is_empty())
                .map(str::to_string)
                .collect()
        })
        .unwrap_or_default();
    Ok(Table {
        database: database.to_string(),
        name: t.name.clone(),
        location: t.storage_descriptor.location.clone().unwrap_or_default(),
        columns,
        partition_key,
        primary_key,
        parameters: t.parameters.clone(),
    })
}

/// The result of one probe of [`check`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Probe {
    /// What was tried, e.g. `catalog: glue:CreateTable`.
    pub name: String,
    /// Whether it worked.
    pub ok: bool,
    /// What happened; for a denial, the action to grant.
    pub detail: String,
}

/// Test the credentials against the catalog: the reads registration makes
/// (`GetDatabase`, `GetTables`), then a write probe: a table `_inlet_probe_<n>` created,
/// read, updated and deleted again. A missing database is created, as the first sync
/// would. Every denial names its IAM action; [`iam_policy`] gives the policy to grant.
pub async fn check(glue: &GlueClient, connection: &str, config: &CatalogConfig) -> Vec<Probe> {
    let database = crate::database_name(connection, Some(config));
    let mut out = Vec::new();
    let mut push = |action: &str, r: Result<String, CatalogError>| {
        let ok = r.is_ok();
        out.push(Probe {
            name: format!("catalog: {action}"),
            ok,
            detail: r.unwrap_or_else(|e| e.to_string()),
        });
        ok
    };
    let exists = match glue.get_database(&database).await {
        Ok(d) => {
            push(
                "glue:GetDatabase",
                Ok(format!(
                    "database `{database}` in {}{}",
                    glue.region(),
                    if d.is_some() { "" } else { " (missing)" }
                )),
            );
            d.is_some()
        }
        Err(e) => {
            push("glue:GetDatabase", Err(e.into()));
            false
        }
    };
    if !exists {
        let r = glue
            .create_database(
                &database,
                &format!("raw streams of inlet connection `{connection}`"),
            )
            .await
            .map(|()| format!("database `{database}` created (the first sync would create it)"));
        if !push("glue:CreateDatabase", r.map_err(Into::into)) {
            return out;
        }
    }
    let r = glue
        .get_tables(&database)
        .await
        .map(|t| format!("{} tables in `{database}`", t.len()));
    push("glue:GetTables", r.map_err(Into::into));
    let probe = format!(
        "_inlet_probe_{}",
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_millis())
            .unwrap_or(0)
    );
    let mut table = GlueTable {
        name: probe.clone(),
        table_type: Some("EXTERNAL_TABLE".into()),
        ..GlueTable::default()
    };
    table.storage_descriptor.columns = vec![GlueColumn {
        name: "probe".into(),
        ty: "string".into(),
        comment: Some("inlet check; deleted at once".into()),
    }];
    table
        .parameters
        .insert("created_by".into(), "inlet check".into());
    let created = glue.create_table(&database, &table).await;
    let created_ok = created.is_ok();
    push(
        "glue:CreateTable",
        created
            .map(|()| format!("probe table `{database}.{probe}`"))
            .map_err(Into::into),
    );
    if !created_ok {
        return out;
    }
    let r = glue
        .get_table(&database, &probe)
        .await
        .map(|_| "read the probe table back".to_string());
    push("glue:GetTable", r.map_err(Into::into));
    table
        .parameters
        .insert("inlet.check".into(), "updated".into());
    let r = glue
        .update_table(&database, &table)
        .await
        .map(|()| "updated the probe table".to_string());
    push("glue:UpdateTable", r.map_err(Into::into));
    let r = glue
        .delete_table(&database, &probe)
        .await
        .map(|()| "deleted the probe table".to_string());
    push("glue:DeleteTable", r.map_err(Into::into));
    out
}

/// An IAM policy granting what inlet calls on the connection's database and its tables.
pub fn iam_policy(connection: &str, config: &CatalogConfig, region: &str) -> String {
    let database = crate::database_name(connection, Some(config));
    let actions: Vec<&str> = IAM_ACTIONS.iter().map(|(a, _)| *a).collect();
    let policy = serde_json::json!({
        "Version": "2012-10-17",
        "Statement": [{
            "Sid": "InletGlueCatalog",
            "Effect": "Allow",
            "Action": actions,
            "Resource": [
                format!("arn:aws:glue:{region}:ACCOUNT_ID:catalog"),
                format!("arn:aws:glue:{region}:ACCOUNT_ID:database/{database}"),
                format!("arn:aws:glue:{region}:ACCOUNT_ID:table/{database}/*"),
            ]
        }]
    });
    serde_json::to_string_pretty(&policy).unwrap_or_default()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::CatalogKind;

    fn config() -> CatalogConfig {
        CatalogConfig {
            kind: CatalogKind::Glue,
            database: Some("raw_shop".into()),
            table_prefix: None,
            region: None,
            endpoint: None,
        }
    }

    fn table() -> Table {
        let mut parameters = BTreeMap::new();
        parameters.insert("inlet.connection".into(), "shop".into());
        parameters.insert("inlet.primary_key".into(), "id".into());
        Table {
            database: "raw_shop".into(),
            name: "orders".into(),
            location: "s3://b/raw/shop/orders/".into(),
            columns: vec![
                Column {
                    name: "id".into(),
                    ty: HiveType::BigInt,
                    comment: Some("pg_type=int8".into()),
                },
                Column {
                    name: "total".into(),
                    ty: HiveType::Decimal(12, 2),
                    comment: None,
                },
            ],
            partition_key: Column {
                name: "extracted_at".into(),
                ty: HiveType::Date,
                comment: None,
            },
            primary_key: vec!["id".into()],
            parameters,
        }
    }

    #[test]
    fn a_table_reads_back_from_glue_as_it_was_sent() {
        let t = table();
        let glue = to_glue(&t, None);
        assert_eq!(glue.storage_descriptor.columns[1].ty, "decimal(12,2)");
        assert_eq!(
            glue.storage_descriptor
                .serde_info
                .serialization_library
                .as_deref(),
            Some(SERDE)
        );
        let back = from_glue("raw_shop", &glue).expect("parses");
        assert_eq!(back, t);
    }

    #[test]
    fn parameters_someone_else_set_are_kept_and_make_no_difference() {
        let t = table();
        let mut existing = to_glue(&t, None);
        existing
            .parameters
            .insert("transient_lastDdlTime".into(), "1700000000".into());
        existing.version_id = Some("3".into());
        existing.database_name = Some("raw_shop".into());
        let wanted = to_glue(&t, Some(&existing));
        assert_eq!(wanted.parameters["transient_lastDdlTime"], "1700000000");
        assert!(same_definition(&wanted, &existing));
        let mut wider = t.clone();
        wider.columns[0].ty = HiveType::String;
        assert!(!same_definition(
            &to_glue(&wider, Some(&existing)),
            &existing
        ));
    }

    #[test]
    fn a_table_of_another_connection_is_refused() {
        let t = table();
        let mut existing = to_glue(&t, None);
        assert!(check_owner(&existing, &t, "shop").is_ok());
        let e = check_owner(&existing, &t, "crm").expect_err("owned by shop");
        assert!(e.to_string().contains("connection `shop`"), "{e}");
        existing.parameters.remove("inlet.connection");
        let e = check_owner(&existing, &t, "shop").expect_err("not inlet's");
        assert!(e.to_string().contains("other than inlet"), "{e}");
    }

    #[test]
    fn the_policy_names_every_action_on_the_database() {
        let p = iam_policy("shop", &config(), "eu-west-1");
        for (action, _) in IAM_ACTIONS {
            assert!(p.contains(action), "{action} in {p}");
        }
        assert!(
            p.contains("database/raw_shop") && p.contains("table/raw_shop/*"),
            "{p}"
        );
    }
}
