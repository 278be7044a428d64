//! The REST engine runs the source conformance suite: a manifest (offset pages, a child
//! stream with numbered pages), the built-in `github` (Link headers, slices per repository,
//! comments per issue) and `stripe` (cursor pages with `has_more`) streams, each served by
//! a replay server on loopback with pages of two records, so every stream has several
//! checkpoints. The servers filter by the incremental parameter as the APIs do.
#![allow(clippy::unwrap_used, reason = "tests")]

use std::sync::Arc;

use inlet_connector_rest::ManifestConnector;
use inlet_core::{Connector, Source, SyncMode};
use inlet_testkit::{
    ReplayServer, Reply, Req,
    conformance::{self, Options},
};
use serde_json::{Value, json};

/// Records per page, whatever the request asks: small, for many checkpoints.
const PAGE: usize = 2;

/// What a handler sees of a request.
struct Asked {
    base: String,
    path: String,
    query: Vec<(String, String)>,
}

impl Asked {
    fn param(&self, name: &str) -> Option<&str> {
        self.query
            .iter()
            .find(|(k, _)| k == name)
            .map(|(_, v)| v.as_str())
    }

    fn number(&self, name: &str) -> Option<usize> {
        self.param(name).and_then(|v| v.parse().ok())
    }

    /// This URL with `name` set to `value`.
    fn with(&self, name: &str, value: usize) -> String {
        let qs = url::form_urlencoded::Serializer::new(String::new())
            .extend_pairs(self.query.iter().filter(|(k, _)| k != name))
            .append_pair(name, &value.to_string())
            .finish();
        format!("{}{}?{qs}", self.base, self.path)
    }
}

/// An answer: status, extra headers, JSON body.
type Answer = (u16, Vec<(String, String)>, Value);

/// Serve `handler` on 127.0.0.1 (the testkit's replay server) for the rest of the test
/// binary; the base URL.
async fn serve(handler: impl Fn(&Asked) -> Answer + Send + Sync + 'static) -> String {
    // Link headers name absolute URLs: the handler learns the base once the server is up.
    let base = Arc::new(std::sync::OnceLock::<String>::new());
    let known = base.clone();
    let server = ReplayServer::start(Arc::new(move |req: &Req| {
        let asked = Asked {
            base: known.get().cloned().unwrap_or_default(),
            path: req.path.clone(),
            query: req.query.clone(),
        };
        let (status, headers, body) = handler(&asked);
        let mut reply = headers
            .into_iter()
            .fold(Reply::json(&body), |reply, (k, v)| reply.header(&k, v));
        reply.status = status;
        reply
    }));
    let url = server.base_url();
    base.set(url.clone()).unwrap();
    // The source holds only the URL; the server lives as long as the test binary.
    Box::leak(Box::new(server));
    url
}

fn ok(body: Value) -> Answer {
    (200, vec![], body)
}

fn not_found() -> Answer {
    (404, vec![], json!({"message": "Not Found"}))
}

async fn build(
    connector: ManifestConnector,
    config: Value,
    dir: &std::path::Path,
) -> Arc<dyn Source> {
    conformance::build(&connector, config, dir).await
}

// --- a manifest -------------------------------------------------------------------------

const MANIFEST: &str = r#"manifest_version = 1
name = "acme"
base_url = "http://placeholder.invalid"

[streams.widgets]
path = "/widgets"
record_selector = "items"
primary_key = ["id"]
pagination = { type = "offset", limit = 2 }
incremental = { cursor_field = "updated", request_param = "updated_gte", format = "unix" }

[streams.parts]
path = "/widgets/{parent.id}/parts"
record_selector = "items"
primary_key = ["id"]
pagination = { type = "page_number", size = 2 }
parent = { stream = "widgets", fields = { id = "id" }, columns = { widget_id = "id" } }
"#;

fn widget(i: usize) -> Value {
    // Two widgets share each `updated` second: the boundary a cursor resumes at.
    json!({"id": format!("w{i}"), "name": format!("widget {i}"), "updated": 1_700_000_000 + (i / 2) as i64})
}

fn acme(asked: &Asked) -> Answer {
    let widgets: Vec<Value> = (0..7).map(widget).collect();
    if asked.path == "/widgets" {
        let since: i64 = asked
            .param("updated_gte")
            .and_then(|v| v.parse().ok())
            .unwrap_or(0);
        let all: Vec<&Value> = widgets
            .iter()
            .filter(|w| w["updated"].as_i64().unwrap() >= since)
            .collect();
        let offset = asked.number("offset").unwrap_or(0);
        let limit = asked.number("limit").unwrap_or(PAGE);
        let page: Vec<&Value> = all.iter().skip(offset).take(limit).copied().collect();
        return ok(json!({"items": page}));
    }
    let Some(id) = asked
        .path
        .strip_prefix("/widgets/")
        .and_then(|p| p.strip_suffix("/parts"))
    else {
        return not_found();
    };
    let n: usize = id.trim_start_matches('w').parse().unwrap_or(0);
    // Widget n has n % 4 + 1 parts, in pages of `size`.
    let parts: Vec<Value> = (0..n % 4 + 1)
        .map(|j| json!({"id": format!("{id}-p{j}"), "qty": j}))
        .collect();
    let page = asked.number("page").unwrap_or(1).max(1);
    let size = asked.number("size").unwrap_or(PAGE);
    let items: Vec<&Value> = parts.iter().skip((page - 1) * size).take(size).collect();
    ok(json!({"items": items}))
}

async fn acme_source(dir: &std::path::Path) -> Arc<dyn Source> {
    std::fs::write(dir.join("acme.toml"), MANIFEST).unwrap();
    let base = serve(acme).await;
    build(
        ManifestConnector::rest(),
        json!({"manifest": "acme.toml", "base_url": base}),
        dir,
    )
    .await
}

#[tokio::test]
async fn manifest_stream_with_offset_pages_conforms() {
    let dir = tempfile::tempdir().unwrap();
    let source = acme_source(dir.path()).await;
    let report = conformance::run(&source, &Options::new("widgets")).await;
    assert_eq!(report.read.rows().len(), 7);
}

/// Regression: the engine's last checkpoint of a full refresh (no pass in progress) once
/// also looked like a pass that had not started, so a read resumed from it read the whole
/// stream again; the runtime resumes from it when the commit after the stream's end fails
/// transiently after a timed commit took that checkpoint, and every row of the stream
/// landed twice in that run. Incremental reads were not affected (the slices' cursors
/// cover what was read).
#[tokio::test]
async fn full_refresh_resumed_from_its_final_checkpoint_reads_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let source = acme_source(dir.path()).await;
    let report = conformance::run(
        &source,
        &Options::new("widgets").mode(SyncMode::FullRefresh),
    )
    .await;
    assert_eq!(report.read.rows().len(), 7);
    let report =
        conformance::run(&source, &Options::new("parts").mode(SyncMode::FullRefresh)).await;
    let parts: usize = (0..7).map(|n| n % 4 + 1).sum();
    assert_eq!(report.read.rows().len(), parts);
}

// --- github -----------------------------------------------------------------------------

fn issue(repo: &str, n: usize) -> Value {
    json!({
        "id": 1000 * repo.len() + n,
        "number": n,
        "title": format!("issue {n} of {repo}"),
        "state": if n.is_multiple_of(2) { "open" } else { "closed" },
        "user": {"login": format!("user{}", n % 3), "id": n % 3},
        // Issues 2k and 2k+1 share a second.
        "updated_at": format!("2024-05-01T10:00:{:02}Z", n / 2),
    })
}

fn comment(issue: usize, j: usize) -> Value {
    json!({
        "id": issue * 100 + j,
        "body": format!("comment {j} on {issue}"),
        "updated_at": format!("2024-05-02T10:{:02}:00Z", j),
    })
}

/// Records updated at or after `since` (GitHub's `since` is inclusive), in Link-header
/// pages of two.
fn github_page(asked: &Asked, records: Vec<Value>) -> Answer {
    let since = asked.param("since").unwrap_or("");
    let all: Vec<Value> = records
        .into_iter()
        .filter(|r| r["updated_at"].as_str().unwrap() >= since)
        .collect();
    let page = asked.number("page").unwrap_or(1).max(1);
    let items: Vec<&Value> = all.iter().skip((page - 1) * PAGE).take(PAGE).collect();
    let mut headers = vec![];
    if page * PAGE < all.len() {
        headers.push((
            "link".to_string(),
            format!("<{}>; rel=\"next\"", asked.with("page", page + 1)),
        ));
    }
    (200, headers, json!(items))
}

fn github(asked: &Asked) -> Answer {
    let Some(rest) = asked.path.strip_prefix("/repos/") else {
        return not_found();
    };
    let parts: Vec<&str> = rest.split('/').collect();
    match parts.as_slice() {
        [owner, name] => {
            ok(json!({"id": owner.len() * 10 + name.len(), "full_name": format!("{owner}/{name}")}))
        }
        [_, name, "issues"] => github_page(asked, (1..=5).map(|n| issue(name, n)).collect()),
        [_, _, "issues", n, "comments"] => {
            let n: usize = n.parse().unwrap_or(0);
            github_page(asked, (0..n % 3 + 1).map(|j| comment(n, j)).collect())
        }
        _ => not_found(),
    }
}

async fn github_source(dir: &std::path::Path) -> Arc<dyn Source> {
    let base = serve(github).await;
    build(
        ManifestConnector::github().unwrap(),
        json!({"token": "ghp_conformance", "repos": ["octo/one", "octo/three"], "base_url": base}),
        dir,
    )
    .await
}

#[tokio::test]
async fn github_issues_conform() {
    let dir = tempfile::tempdir().unwrap();
    let source = github_source(dir.path()).await;
    let report = conformance::run(&source, &Options::new("issues")).await;
    assert_eq!(report.read.rows().len(), 10);
}

#[tokio::test]
async fn github_issue_comments_conform() {
    let dir = tempfile::tempdir().unwrap();
    let source = github_source(dir.path()).await;
    let report = conformance::run(&source, &Options::new("issue_comments")).await;
    let per_repo: usize = (1..=5).map(|n| n % 3 + 1).sum();
    assert_eq!(report.read.rows().len(), 2 * per_repo);
}

#[tokio::test]
async fn github_errors_say_whether_they_are_transient() {
    let dir = tempfile::tempdir().unwrap();
    // A config without its required token is permanent.
    let missing = ManifestConnector::github()
        .unwrap()
        .validate(&json!({"repos": ["octo/one"]}))
        .unwrap_err();
    conformance::assert_transient(&missing, false);
    // Nothing listens on the endpoint: transient.
    let closed = format!("http://127.0.0.1:{}", inlet_testkit::CLOSED_PORT);
    let source = build(
        ManifestConnector::github().unwrap(),
        json!({"token": "t", "repos": ["octo/one"], "base_url": closed, "max_retries": 0}),
        dir.path(),
    )
    .await;
    conformance::assert_read_fails(&source, &Options::new("issues"), true).await;
}

// --- stripe -----------------------------------------------------------------------------

fn customer(i: usize) -> Value {
    json!({
        "id": format!("cus_{i:04}"),
        "object": "customer",
        "email": format!("c{i}@example.com"),
        "balance": i as i64 * 100,
        "metadata": {"n": i.to_string()},
        // Newest first, as Stripe lists; pairs share a second.
        "created": 1_700_000_000 - (i / 2) as i64,
    })
}

fn stripe(asked: &Asked) -> Answer {
    if asked.path != "/v1/customers" {
        return not_found();
    }
    let gte: i64 = asked
        .param("created[gte]")
        .and_then(|v| v.parse().ok())
        .unwrap_or(0);
    let all: Vec<Value> = (0..9)
        .map(customer)
        .filter(|c| c["created"].as_i64().unwrap() >= gte)
        .collect();
    let start = match asked.param("starting_after") {
        Some(after) => all
            .iter()
            .position(|c| c["id"] == after)
            .map_or(all.len(), |p| p + 1),
        None => 0,
    };
    let data: Vec<&Value> = all.iter().skip(start).take(PAGE).collect();
    ok(json!({
        "object": "list",
        "url": "/v1/customers",
        "has_more": start + PAGE < all.len(),
        "data": data,
    }))
}

#[tokio::test]
async fn stripe_customers_conform() {
    let dir = tempfile::tempdir().unwrap();
    let base = serve(stripe).await;
    let source = build(
        ManifestConnector::stripe().unwrap(),
        json!({"api_key": "sk_test_conformance", "base_url": base}),
        dir.path(),
    )
    .await;
    let report = conformance::run(&source, &Options::new("customers")).await;
    assert_eq!(report.read.rows().len(), 9);
}
