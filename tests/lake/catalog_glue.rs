//! End-to-end: streams registered in a real Glue Data Catalog (moto in server mode, IAM
//! enforced, serving Glue and S3 on one endpoint) after `inlet sync`, read back through
//! inlet's Glue client and once through boto3; a column added at the source is a new
//! table version, a sync with no change is none; a login without `glue:CreateTable`
//! lands the data, exits 4 naming the action, and the next sync with good keys registers.

use inlet_catalog::glue::{GlueClient, GlueOptions, GlueTable};
use inlet_testkit::{
    TestProject,
    moto::{MotoServer, REGION},
};
use secrecy::SecretString;

fn glue(moto: &MotoServer) -> GlueClient {
    let (id, secret) = moto.admin();
    tokio_block(GlueClient::connect(GlueOptions {
        region: Some(REGION.into()),
        endpoint: Some(moto.endpoint()),
        credentials: Some((id.into(), SecretString::from(secret.to_string()), None)),
        ..GlueOptions::default()
    }))
    .expect("a Glue client")
}

fn tokio_block<F: std::future::Future>(f: F) -> F::Output {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("a runtime")
        .block_on(f)
}

fn table(moto: &MotoServer, database: &str, name: &str) -> GlueTable {
    let g = glue(moto);
    tokio_block(g.get_table(database, name))
        .expect("GetTable")
        .unwrap_or_else(|| panic!("no table {database}.{name}"))
}

fn versions(moto: &MotoServer, database: &str, name: &str) -> usize {
    let g = glue(moto);
    tokio_block(g.get_table_versions(database, name))
        .expect("GetTableVersions")
        .len()
}

/// A files connection `c` landing `events` on moto's S3, its catalog in `database`, with
/// the keys `(id, secret)` (the secret through the environment, never printed).
fn project(moto: &MotoServer, bucket: &str, database: &str, keys: (&str, &str)) -> TestProject {
    let p = TestProject::empty()
        .env("INLET_E2E_AWS_SECRET", keys.1)
        .never_print(keys.1);
    p.write_toml(format!(
        r#"version = 1

[destinations.raw]
url = "s3://{bucket}/raw"
endpoint = "{endpoint}"
path_style = true
region = "{REGION}"
access_key_id = "{id}"
secret_access_key = "${{env:INLET_E2E_AWS_SECRET}}"
catalog = {{ type = "glue", database = "{database}", endpoint = "{endpoint}" }}

[connections.c]
connector = "files"

[connections.c.config]
path = "data"

[connections.c.config.streams."app.events"]
glob = "events/*.jsonl"
"#,
        endpoint = moto.endpoint(),
        id = keys.0,
    ));
    p
}

fn write(p: &TestProject, name: &str, lines: &[&str]) {
    p.write(&format!("data/events/{name}"), &(lines.join("\n") + "\n"));
}

fn column_types(t: &GlueTable) -> Vec<(String, String)> {
    t.storage_descriptor
        .columns
        .iter()
        .map(|c| (c.name.clone(), c.ty.clone()))
        .collect()
}

#[test]
fn a_synced_stream_is_a_glue_table_that_follows_its_schema() {
    let Some(moto) = MotoServer::shared() else {
        return;
    };
    moto.bucket("lake-files");
    let p = project(moto, "lake-files", "raw_files", moto.admin());
    write(
        &p,
        "a.jsonl",
        &[
            r#"{"id": 1, "amount": 2.5, "ok": true, "tags": ["x", "y"], "who": {"name": "a"}}"#,
            r#"{"id": 2, "amount": 3.0, "ok": false, "tags": [], "who": {"name": "b"}}"#,
        ],
    );
    let run = p.sync_json(&[]);
    assert_eq!(run["outcome"], "succeeded", "{run}");
    assert_eq!(run["catalog"]["app.events"]["action"], "created", "{run}");
    assert_eq!(
        run["catalog"]["app.events"]["table"],
        "raw_files.app_events"
    );

    let t = table(moto, "raw_files", "app_events");
    let cols = column_types(&t);
    let ty = |n: &str| {
        cols.iter()
            .find(|(c, _)| c == n)
            .map(|(_, t)| t.as_str())
            .unwrap_or_else(|| panic!("no column {n} in {cols:?}"))
    };
    assert_eq!(ty("id"), "bigint");
    // The files connector's exact number policy lands 2.5 as a decimal.
    assert!(ty("amount").starts_with("decimal("), "{cols:?}");
    assert_eq!(ty("ok"), "boolean");
    // Nested values land as their JSON text from files (REST lands them as structs).
    assert_eq!(ty("tags"), "string");
    assert!(
        cols.iter().any(|(c, _)| c.starts_with("_inlet_")),
        "{cols:?}"
    );
    assert_eq!(t.partition_keys.len(), 1);
    assert_eq!(
        (
            t.partition_keys[0].name.as_str(),
            t.partition_keys[0].ty.as_str()
        ),
        ("extracted_at", "date")
    );
    assert_eq!(
        t.storage_descriptor.location.as_deref(),
        Some("s3://lake-files/raw/c/app.events/")
    );
    assert_eq!(
        t.storage_descriptor
            .serde_info
            .serialization_library
            .as_deref(),
        Some(inlet_catalog::SERDE)
    );
    let today = chrono::Utc::now().format("%Y-%m-%d").to_string();
    for (k, v) in [
        ("classification", "parquet".to_string()),
        ("projection.enabled", "true".to_string()),
        ("projection.extracted_at.type", "date".to_string()),
        ("projection.extracted_at.format", "yyyy-MM-dd".to_string()),
        ("projection.extracted_at.range", format!("{today},NOW")),
        (
            "storage.location.template",
            "s3://lake-files/raw/c/app.events/extracted_at=${extracted_at}/".to_string(),
        ),
        ("inlet.connection", "c".to_string()),
        ("inlet.stream", "app.events".to_string()),
    ] {
        assert_eq!(
            t.parameters.get(k),
            Some(&v),
            "parameter {k}: {:?}",
            t.parameters
        );
    }
    assert_eq!(versions(moto, "raw_files", "app_events"), 1);

    // Another client agrees: boto3 reads the same table.
    let boto = moto.boto(
        r#"
t = boto3.client("glue", **kw).get_table(DatabaseName="raw_files", Name="app_events")["Table"]
print(json.dumps({"cols": [[c["Name"], c["Type"]] for c in t["StorageDescriptor"]["Columns"]],
                  "parts": [[k["Name"], k["Type"]] for k in t["PartitionKeys"]],
                  "serde": t["StorageDescriptor"]["SerdeInfo"]["SerializationLibrary"],
                  "range": t["Parameters"]["projection.extracted_at.range"]}))
"#,
    );
    let boto: serde_json::Value = serde_json::from_str(&boto).expect("boto3's JSON");
    let boto_cols: Vec<(String, String)> =
        serde_json::from_value(boto["cols"].clone()).expect("columns");
    assert_eq!(boto_cols, cols);
    assert_eq!(boto["parts"], serde_json::json!([["extracted_at", "date"]]));
    assert_eq!(boto["serde"], inlet_catalog::SERDE);
    assert_eq!(boto["range"], format!("{today},NOW"));

    // Nothing new at the source: no new table version.
    let run = p.sync_json(&[]);
    assert_eq!(run["catalog"]["app.events"]["action"], "unchanged", "{run}");
    assert_eq!(versions(moto, "raw_files", "app_events"), 1);

    // A column added at the source: appended, one more version; the old ones stay.
    write(
        &p,
        "b.jsonl",
        &[
            r#"{"id": 3, "amount": 1.0, "ok": true, "tags": ["z"], "who": {"name": "c"}, "note": "new"}"#,
        ],
    );
    let run = p.sync_json(&[]);
    assert_eq!(run["catalog"]["app.events"]["action"], "updated", "{run}");
    let t = table(moto, "raw_files", "app_events");
    let after = column_types(&t);
    assert_eq!(
        &after[..cols.len()],
        &cols[..],
        "existing columns kept in order"
    );
    assert!(
        after.contains(&("note".into(), "string".into())),
        "{after:?}"
    );
    assert_eq!(versions(moto, "raw_files", "app_events"), 2);
    let run = p.sync_json(&[]);
    assert_eq!(run["catalog"]["app.events"]["action"], "unchanged", "{run}");
    assert_eq!(versions(moto, "raw_files", "app_events"), 2);

    // `catalog show` prints it from Glue, `--json` too.
    let shown: serde_json::Value =
        serde_json::from_str(&p.ok(&["--json", "catalog", "show", "c"])).expect("show --json");
    assert_eq!(shown[0]["table"], "app_events");
    assert_eq!(shown[0]["version"], "2");
    let text = p.ok(&["catalog", "show", "c"]);
    assert!(
        text.contains("raw_files.app_events") && text.contains("note"),
        "{text}"
    );
}

#[test]
fn a_login_without_create_table_lands_the_data_exits_4_and_the_next_sync_registers() {
    let Some(moto) = MotoServer::shared() else {
        return;
    };
    moto.bucket("lake-denied");
    let (id, secret) = moto.user(
        "inlet_no_create_table",
        &[
            "s3:*",
            "glue:GetDatabase",
            "glue:CreateDatabase",
            "glue:GetTable",
            "glue:GetTables",
        ],
    );
    let p = project(moto, "lake-denied", "raw_denied", (&id, &secret));
    write(&p, "a.jsonl", &[r#"{"id": 1}"#, r#"{"id": 2}"#]);
    let out = p.inlet(&["--json", "sync", "c"]);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(4), "stderr: {stderr}");
    assert!(stderr.contains("glue:CreateTable"), "{stderr}");
    assert!(!stderr.contains(&secret), "a secret was printed");
    let run: serde_json::Value = serde_json::from_slice(&out.stdout).expect("the run record");
    assert_eq!(run["outcome"], "succeeded", "the data landed: {run}");
    assert_eq!(run["streams"]["app.events"]["rows"], 2);
    assert_eq!(run["catalog"]["app.events"]["action"], "failed");
    let err = run["catalog"]["app.events"]["error"]
        .as_str()
        .unwrap_or_default();
    assert!(
        err.contains("grant the IAM action `glue:CreateTable`"),
        "{err}"
    );
    let g = glue(moto);
    assert!(
        tokio_block(g.get_table("raw_denied", "app_events"))
            .expect("GetTable")
            .is_none()
    );

    // `inlet check` names the missing action and prints a policy with it.
    let out = p.inlet(&["check", "c"]);
    let said = String::from_utf8_lossy(&out.stdout);
    assert_eq!(out.status.code(), Some(3), "{said}");
    assert!(said.contains("FAIL catalog: glue:CreateTable"), "{said}");
    assert!(
        said.contains("\"glue:UpdateTable\"") && said.contains("table/raw_denied/*"),
        "{said}"
    );

    // Good keys: the next sync lands nothing new and registers what the last one landed.
    let p = project(moto, "lake-denied", "raw_denied", moto.admin());
    write(&p, "a.jsonl", &[r#"{"id": 1}"#, r#"{"id": 2}"#]);
    let run = p.sync_json(&[]);
    assert_eq!(run["catalog"]["app.events"]["action"], "created", "{run}");
    assert!(p.ok(&["check", "c"]).contains("check passed"));
    let t = table(moto, "raw_denied", "app_events");
    assert!(
        t.storage_descriptor
            .columns
            .iter()
            .any(|c| c.name == "id" && c.ty == "bigint")
    );
}
