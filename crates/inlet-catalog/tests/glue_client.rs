//! The Glue client against a real Glue API (moto in server mode, IAM enforced).
#![expect(clippy::expect_used, reason = "tests")]

use inlet_catalog::glue::{GlueClient, GlueColumn, GlueError, GlueOptions, GlueTable};
use inlet_testkit::moto::{MotoServer, REGION};
use secrecy::SecretString;

async fn client(moto: &MotoServer, (id, secret): (&str, &str)) -> GlueClient {
    GlueClient::connect(GlueOptions {
        region: Some(REGION.into()),
        endpoint: Some(moto.endpoint()),
        credentials: Some((id.into(), SecretString::from(secret.to_string()), None)),
        ..GlueOptions::default()
    })
    .await
    .expect("a client")
}

fn table(name: &str, columns: &[(&str, &str)]) -> GlueTable {
    let mut t = GlueTable {
        name: name.into(),
        table_type: Some("EXTERNAL_TABLE".into()),
        ..GlueTable::default()
    };
    t.storage_descriptor.columns = columns
        .iter()
        .map(|(n, ty)| GlueColumn {
            name: (*n).into(),
            ty: (*ty).into(),
            comment: Some(format!("pg_type={ty}")),
        })
        .collect();
    t.partition_keys = vec![GlueColumn {
        name: "extracted_at".into(),
        ty: "date".into(),
        comment: None,
    }];
    t.parameters
        .insert("classification".into(), "parquet".into());
    t
}

#[tokio::test]
async fn create_read_update_version_and_delete_a_table() {
    let Some(moto) = MotoServer::shared() else {
        return;
    };
    let glue = client(moto, moto.admin()).await;
    assert!(glue.get_database("client_db").await.expect("get").is_none());
    assert!(
        glue.get_table("client_db", "t")
            .await
            .expect("get")
            .is_none()
    );
    glue.create_database("client_db", "test")
        .await
        .expect("create db");
    glue.create_database("client_db", "test")
        .await
        .expect("an existing database is fine");
    assert!(glue.get_database("client_db").await.expect("get").is_some());
    glue.create_table("client_db", &table("t", &[("id", "bigint")]))
        .await
        .expect("create");
    let read = glue
        .get_table("client_db", "t")
        .await
        .expect("get")
        .expect("there");
    assert_eq!(read.storage_descriptor.columns[0].ty, "bigint");
    assert_eq!(read.partition_keys[0].name, "extracted_at");
    glue.update_table(
        "client_db",
        &table("t", &[("id", "bigint"), ("note", "string")]),
    )
    .await
    .expect("update");
    let versions = glue
        .get_table_versions("client_db", "t")
        .await
        .expect("versions");
    assert_eq!(versions.len(), 2, "{versions:?}");
    let tables = glue.get_tables("client_db").await.expect("tables");
    assert_eq!(tables.len(), 1);
    assert_eq!(tables[0].storage_descriptor.columns.len(), 2);
    glue.delete_table("client_db", "t").await.expect("delete");
    glue.delete_table("client_db", "t")
        .await
        .expect("a table already gone is fine");
    assert!(
        glue.get_tables("client_db")
            .await
            .expect("tables")
            .is_empty()
    );
}

#[tokio::test]
async fn a_login_without_create_table_is_told_the_action_to_grant() {
    let Some(moto) = MotoServer::shared() else {
        return;
    };
    let (id, secret) = moto.user(
        "client_reader",
        &["glue:GetDatabase", "glue:CreateDatabase", "glue:GetTable"],
    );
    let glue = client(moto, (&id, &secret)).await;
    glue.create_database("client_denied", "test")
        .await
        .expect("allowed");
    let err = glue
        .create_table("client_denied", &table("t", &[("id", "bigint")]))
        .await
        .expect_err("denied");
    assert!(
        matches!(&err, GlueError::AccessDenied { action, .. } if action == "glue:CreateTable"),
        "{err:?}"
    );
    let text = err.to_string();
    assert!(
        text.contains("client_denied.t") && text.contains("glue:CreateTable"),
        "{text}"
    );
    assert!(!text.contains(&secret), "{text}");
}

#[tokio::test]
async fn an_endpoint_nobody_listens_on_fails_after_the_retries() {
    let glue = GlueClient::connect(GlueOptions {
        region: Some(REGION.into()),
        endpoint: Some(format!("http://127.0.0.1:{}", inlet_testkit::CLOSED_PORT)),
        credentials: Some(("AKID".into(), SecretString::from("x".to_string()), None)),
        max_attempts: 3,
        initial_backoff: std::time::Duration::from_millis(1),
    })
    .await
    .expect("a client");
    let err = glue.get_table("d", "t").await.expect_err("no server");
    assert!(err.is_transient(), "{err:?}");
    assert!(err.to_string().contains("after 3 attempts"), "{err}");
}
