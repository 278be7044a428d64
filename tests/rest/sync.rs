//! End-to-end: the `github`, `stripe` and `rest` connectors against HTTP servers on
//! 127.0.0.1 that answer as the real APIs do (bodies, Link and rate-limit headers, Stripe
//! list objects), with the failures real APIs have (429 with Retry-After, 502, a malformed
//! page, an answer slower than the timeout). The real `inlet` binary lands the data.

use std::{
    collections::{BTreeMap, BTreeSet},
    sync::{Arc, Mutex},
    time::Duration,
};

use arrow_array::{Array, Int64Array, RecordBatch, StringArray};
use inlet_testkit::{TestProject, lake::read_batches};
use inlet_testkit::{
    http::{ReplayServer, Reply, Req, github_page},
    shapes,
};
use serde_json::Value;

const TOKEN: &str = "ghp_TEST0123456789abcdefSECRETtoken";
const STRIPE_KEY: &str = "sk_test_51SECRETkeyABCDEF0123456789";

/// Faults the server injects: on requests whose path contains `path` and whose `page`
/// parameter (GitHub) or `starting_after` presence (Stripe) matches, `times` times.
#[derive(Debug, Clone)]
struct Fault {
    path: &'static str,
    page: Option<&'static str>,
    kind: FaultKind,
    times: u32,
}

#[derive(Debug, Clone, Copy)]
enum FaultKind {
    BadGateway,
    RateLimited,
    Slow,
    Malformed,
    GithubQuotaExhausted,
}

fn take_fault(faults: &Mutex<Vec<Fault>>, req: &Req) -> Option<FaultKind> {
    let mut faults = faults.lock().unwrap();
    let f = faults.iter_mut().find(|f| {
        f.times > 0
            && req.path.contains(f.path)
            && f.page.is_none_or(|p| req.param("page").unwrap_or("1") == p)
    })?;
    f.times -= 1;
    Some(f.kind)
}

fn fault_reply(kind: FaultKind, good: Reply) -> Reply {
    match kind {
        FaultKind::BadGateway => Reply::status(
            502,
            "<html><head><title>502 Bad Gateway</title></head><body>Bad Gateway</body></html>",
        ),
        FaultKind::RateLimited => Reply::status(
            429,
            r#"{"message":"You have exceeded a secondary rate limit. Please wait a few minutes before you try again."}"#,
        )
        .header("retry-after", "1"),
        FaultKind::GithubQuotaExhausted => Reply::status(
            403,
            r#"{"message":"API rate limit exceeded for user ID 1.","documentation_url":"https://docs.github.com/rest/overview/rate-limits-for-the-rest-api"}"#,
        )
        .header("x-ratelimit-limit", "5000")
        .header("x-ratelimit-remaining", "0")
        .header(
            "x-ratelimit-reset",
            (chrono::Utc::now().timestamp() + 1).to_string(),
        ),
        FaultKind::Slow => Reply {
            delay: Duration::from_millis(2500),
            ..good
        },
        FaultKind::Malformed => {
            let mut r = good;
            r.body.truncate(r.body.len() / 2);
            r
        }
    }
}

/// A GitHub repository's issues and comments, as the API would list them.
#[derive(Debug, Default)]
struct GithubWorld {
    /// (number, updated offset in seconds)
    issues: Vec<(u64, i64)>,
    /// issue number -> (comment id, updated)
    comments: BTreeMap<u64, Vec<(u64, i64)>>,
    /// Unauthorized answers echo the Authorization header back, as some proxies do.
    reject_token: bool,
    /// Commits: (index, commit date offset).
    commits: Vec<(u64, i64)>,
}

const REPO: &str = "octo/hello";

fn since_of(req: &Req) -> Option<i64> {
    req.param("since").map(|s| {
        chrono::DateTime::parse_from_rfc3339(s)
            .expect("since is RFC 3339")
            .timestamp()
            - shapes::unix(0)
    })
}

fn github_server(world: Arc<Mutex<GithubWorld>>, faults: Arc<Mutex<Vec<Fault>>>) -> ReplayServer {
    let base = Arc::new(Mutex::new(String::new()));
    let base2 = base.clone();
    let server = ReplayServer::start(Arc::new(move |req: &Req| {
        let world = world.lock().unwrap();
        if world.reject_token {
            return Reply::status(
                401,
                &format!(
                    r#"{{"message":"Bad credentials","documentation_url":"https://docs.github.com/rest","echo":"{}"}}"#,
                    req.header("authorization").unwrap_or("")
                ),
            );
        }
        if req.header("authorization") != Some(&format!("Bearer {TOKEN}")) {
            return Reply::status(401, r#"{"message":"Requires authentication"}"#);
        }
        let base = base2.lock().unwrap().clone();
        let since = since_of(req);
        let good = if req.path == format!("/repos/{REPO}/issues") {
            assert_eq!(req.param("sort"), Some("updated"));
            assert_eq!(req.param("direction"), Some("asc"));
            let mut items: Vec<&(u64, i64)> = world
                .issues
                .iter()
                .filter(|(_, u)| since.is_none_or(|s| *u >= s))
                .collect();
            items.sort_by_key(|(n, u)| (*u, *n));
            let items: Vec<Value> = items
                .into_iter()
                .map(|(n, u)| shapes::github_issue(REPO, *n, *u))
                .collect();
            github_page(req, &format!("{base}{}", req.path), &items, 4990)
        } else if let Some(n) = req
            .path
            .strip_prefix(&format!("/repos/{REPO}/issues/"))
            .and_then(|r| r.strip_suffix("/comments"))
        {
            let n: u64 = n.parse().unwrap();
            let items: Vec<Value> = world
                .comments
                .get(&n)
                .into_iter()
                .flatten()
                .filter(|(_, u)| since.is_none_or(|s| *u >= s))
                .map(|(id, u)| shapes::github_comment(REPO, n, *id, *u))
                .collect();
            github_page(req, &format!("{base}{}", req.path), &items, 4990)
        } else if req.path == format!("/repos/{REPO}/commits") {
            // Newest first, `since` on the commit date.
            let mut items: Vec<&(u64, i64)> = world
                .commits
                .iter()
                .filter(|(_, d)| since.is_none_or(|s| *d >= s))
                .collect();
            items.sort_by_key(|(i, d)| std::cmp::Reverse((*d, *i)));
            let items: Vec<Value> = items
                .into_iter()
                .map(|(i, d)| shapes::github_commit(REPO, *i, *d))
                .collect();
            github_page(req, &format!("{base}{}", req.path), &items, 4990)
        } else if req.path == format!("/repos/{REPO}") {
            Reply::json(&shapes::github_repo(REPO, 1296269))
        } else {
            Reply::status(
                404,
                r#"{"message":"Not Found","documentation_url":"https://docs.github.com/rest"}"#,
            )
        };
        match take_fault(&faults, req) {
            Some(kind) => fault_reply(kind, good),
            None => good,
        }
    }));
    *base.lock().unwrap() = server.base_url();
    server
}

fn github_project(server: &ReplayServer, streams: &[&str]) -> TestProject {
    let p = crate::project(TOKEN, STRIPE_KEY);
    let mut text = format!(
        r#"[connections.c]
connector = "github"
commit_interval_secs = 0

[connections.c.config]
token = "${{env:INLET_TEST_GITHUB_TOKEN}}"
repos = ["{REPO}"]
base_url = "{}"
backoff_ms = 20
timeout_secs = 1
"#,
        server.base_url()
    );
    for s in streams {
        text.push_str(&format!("\n[connections.c.streams.{s}]\n"));
    }
    p.write_project(text);
    p
}

fn batches(p: &TestProject, stream: &str) -> Vec<RecordBatch> {
    read_batches(&p.stream_dir(stream))
}

fn int_values(batches: &[RecordBatch], name: &str) -> Vec<i64> {
    let mut out = Vec::new();
    for b in batches {
        let col = b.column_by_name(name).unwrap();
        let col = col.as_any().downcast_ref::<Int64Array>().unwrap();
        out.extend((0..col.len()).map(|i| col.value(i)));
    }
    out
}

fn str_values(batches: &[RecordBatch], name: &str) -> Vec<String> {
    let mut out = Vec::new();
    for b in batches {
        let Some(col) = b.column_by_name(name) else {
            continue;
        };
        let col = col.as_any().downcast_ref::<StringArray>().unwrap();
        out.extend(
            (0..col.len())
                .filter(|i| !col.is_null(*i))
                .map(|i| col.value(i).to_string()),
        );
    }
    out
}

fn assert_unique(ids: &[i64]) {
    let set: BTreeSet<&i64> = ids.iter().collect();
    assert_eq!(set.len(), ids.len(), "duplicate ids landed");
}

fn stream_rows(report: &Value, stream: &str) -> u64 {
    report["streams"][stream]["rows"].as_u64().unwrap()
}

#[test]
fn github_issues_follow_every_link_page_and_incremental_reruns_fetch_only_new_data() {
    let world = Arc::new(Mutex::new(GithubWorld {
        issues: (1..=250).map(|n| (n, n as i64 * 60)).collect(),
        ..GithubWorld::default()
    }));
    let server = github_server(world.clone(), Arc::new(Mutex::new(vec![])));
    let p = github_project(&server, &["issues", "repositories"]);
    let out = p.inlet(&["check", "c"]);
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success() && text.contains("HTTP 200"), "{text}");
    server.clear();

    let report = p.sync_json(&[]);
    assert_eq!(stream_rows(&report, "issues"), 250);
    assert_eq!(stream_rows(&report, "repositories"), 1);
    let issue_pages: Vec<Req> = server
        .requests()
        .into_iter()
        .filter(|r| r.path.ends_with("/issues"))
        .collect();
    // 250 issues at 100 per page: three pages, each followed by its Link header.
    let pages: Vec<&str> = issue_pages
        .iter()
        .map(|r| r.param("page").unwrap_or("1"))
        .collect();
    assert_eq!(pages, ["1", "2", "3"]);
    assert!(issue_pages.iter().all(|r| r.param("since").is_none()));
    assert!(
        issue_pages[0]
            .header("user-agent")
            .unwrap()
            .starts_with("inlet/")
    );
    assert_eq!(
        issue_pages[0].header("x-github-api-version"),
        Some("2022-11-28")
    );

    let b = batches(&p, "issues");
    let ids = int_values(&b, "id");
    assert_eq!(ids.len(), 250);
    assert_unique(&ids);
    // Nested objects land as structs, timestamps as timestamps.
    let schema = b[0].schema();
    assert!(matches!(
        schema.field_with_name("user").unwrap().data_type(),
        arrow_schema::DataType::Struct(_)
    ));
    assert!(matches!(
        schema.field_with_name("updated_at").unwrap().data_type(),
        arrow_schema::DataType::Timestamp(..)
    ));
    let st = p.state_json();
    let cursor = &st["streams"]["issues"]["cursor"]["slices"][REPO]["cursor"];
    assert_eq!(cursor, &Value::from(shapes::ts(250 * 60)), "{st:#}");

    // Three new issues and one updated; one updated exactly at the saved cursor again
    // is not new. The re-run asks `since` the saved cursor and lands exactly four.
    {
        let mut w = world.lock().unwrap();
        w.issues.extend((251..=253).map(|n| (n, 20_000 + n as i64)));
        w.issues[9].1 = 30_000;
    }
    server.clear();
    let report = p.sync_json(&["--stream", "issues"]);
    assert_eq!(stream_rows(&report, "issues"), 4, "{report:#}");
    let reqs: Vec<Req> = server
        .requests()
        .into_iter()
        .filter(|r| r.path.ends_with("/issues"))
        .collect();
    assert_eq!(reqs.len(), 1);
    assert_eq!(reqs[0].param("since"), Some(&*shapes::ts(250 * 60)));
    let ids = int_values(&batches(&p, "issues"), "id");
    assert_eq!(ids.len(), 254);
    // Issue 10 landed twice (two versions of it), every other issue once.
    let distinct: BTreeSet<i64> = ids.iter().copied().collect();
    assert_eq!(distinct, (1..=253).map(|n| 1_000_000 + n).collect());
    assert_eq!(ids.iter().filter(|i| **i == 1_000_010).count(), 2);

    // Nothing changed: nothing lands.
    let report = p.sync_json(&["--stream", "issues"]);
    assert_eq!(stream_rows(&report, "issues"), 0, "{report:#}");

    // Outside readers see nested structs, lists and timestamps as such.
    if let Some(py) = inlet_testkit::lake::outside_python() {
        let glob = p.lake().join("c/issues/**/*.parquet");
        let out = inlet_testkit::lake::python(
            &py,
            &format!(
                r#"
import duckdb, pyarrow.parquet as pq, glob
q = "select count(*), count(distinct id), min(user.login), max(len(labels)), typeof(any_value(updated_at)), sum(case when pull_request.url is not null then 1 else 0 end), max(reactions.\"+1\") from read_parquet('{glob}', union_by_name=true, hive_partitioning=true)"
print(duckdb.sql(q).fetchone())
t = pq.read_table(sorted(glob.glob('{glob}', recursive=True))[0])
print(t.schema.field('milestone').type.get_field_index('creator') >= 0, str(t.schema.field('created_at').type))
"#,
                glob = glob.display()
            ),
        );
        let lines: Vec<&str> = out.lines().collect();
        assert_eq!(
            lines[0], "(254, 253, 'octocat', 3, 'TIMESTAMP WITH TIME ZONE', 84, 2)",
            "{out}"
        );
        assert_eq!(lines[1], "True timestamp[us, tz=+00:00]", "{out}");
    }
}

#[test]
fn retries_after_502_429_403_quota_timeout_and_a_malformed_page_land_no_duplicates() {
    let world = Arc::new(Mutex::new(GithubWorld {
        issues: (1..=450).map(|n| (n, n as i64)).collect(),
        ..GithubWorld::default()
    }));
    let faults = Arc::new(Mutex::new(vec![
        Fault {
            path: "/issues",
            page: Some("2"),
            kind: FaultKind::BadGateway,
            times: 2,
        },
        Fault {
            path: "/issues",
            page: Some("3"),
            kind: FaultKind::RateLimited,
            times: 1,
        },
        Fault {
            path: "/issues",
            page: Some("4"),
            kind: FaultKind::Slow,
            times: 1,
        },
        Fault {
            path: "/issues",
            page: Some("5"),
            kind: FaultKind::Malformed,
            times: 1,
        },
        Fault {
            path: "/issues",
            page: Some("1"),
            kind: FaultKind::GithubQuotaExhausted,
            times: 1,
        },
    ]));
    let server = github_server(world, faults.clone());
    let p = github_project(&server, &["issues"]);
    let started = std::time::Instant::now();
    let report = p.sync_json(&[]);
    assert_eq!(stream_rows(&report, "issues"), 450);
    // The 429 asked for 1 s, the quota reset was ~1 s away: both were waited out.
    assert!(started.elapsed() >= Duration::from_secs(2));
    let ids = int_values(&batches(&p, "issues"), "id");
    assert_eq!(ids.len(), 450);
    assert_unique(&ids);
    assert!(
        faults.lock().unwrap().iter().all(|f| f.times == 0),
        "every fault was hit"
    );
    let per_page: BTreeMap<String, usize> =
        server.requests().iter().fold(BTreeMap::new(), |mut m, r| {
            *m.entry(r.param("page").unwrap_or("1").to_string())
                .or_default() += 1;
            m
        });
    assert_eq!(per_page["1"], 2);
    assert_eq!(per_page["2"], 3);
    assert_eq!(per_page["3"], 2);
    assert_eq!(per_page["4"], 2);
    assert_eq!(per_page["5"], 2);
}

#[test]
fn a_page_that_stays_malformed_fails_the_run_and_state_stays_at_the_last_landed_page() {
    let world = Arc::new(Mutex::new(GithubWorld {
        issues: (1..=350).map(|n| (n, n as i64)).collect(),
        ..GithubWorld::default()
    }));
    let faults = Arc::new(Mutex::new(vec![Fault {
        path: "/issues",
        page: Some("3"),
        kind: FaultKind::Malformed,
        times: 1000,
    }]));
    let server = github_server(world, faults.clone());
    let p = github_project(&server, &["issues"]);
    let out = p.inlet(&["--json", "sync", "c"]);
    let text = inlet_testkit::project::said(&out);
    assert!(!out.status.success(), "{text}");
    assert!(
        text.contains("page 3") && text.contains("malformed JSON"),
        "{text}"
    );
    assert!(!text.contains(TOKEN));
    // Pages 1 and 2 landed, and the state says to continue at page 3.
    let ids = int_values(&batches(&p, "issues"), "id");
    assert_eq!(ids.len(), 200);
    let st = p.state_json();
    let next = &st["streams"]["issues"]["cursor"]["current"]["next"];
    assert_eq!(next["kind"], "url", "{st:#}");
    assert!(next["value"].as_str().unwrap().contains("page=3"), "{st:#}");
    assert!(
        st["streams"]["issues"]["cursor"]["slices"]
            .as_object()
            .is_none_or(|m| m.is_empty()),
        "the cursor moves only when the pass completes: {st:#}"
    );

    // The server is fixed: the next run reads pages 3 and 4 only, and nothing twice.
    faults.lock().unwrap().clear();
    server.clear();
    let report = p.sync_json(&[]);
    assert_eq!(stream_rows(&report, "issues"), 150);
    let pages: Vec<String> = server
        .requests()
        .iter()
        .map(|r| r.param("page").unwrap_or("1").to_string())
        .collect();
    assert_eq!(pages, ["3", "4"]);
    let ids = int_values(&batches(&p, "issues"), "id");
    assert_eq!(ids.len(), 350);
    assert_unique(&ids);
}

#[test]
fn tokens_never_appear_in_logs_errors_state_or_the_lake() {
    let world = Arc::new(Mutex::new(GithubWorld {
        issues: (1..=120).map(|n| (n, n as i64)).collect(),
        ..GithubWorld::default()
    }));
    let server = github_server(world.clone(), Arc::new(Mutex::new(vec![])));
    let p = github_project(&server, &["issues"]);
    let out = p.inlet(&["--log", "debug", "sync", "c"]);
    assert!(out.status.success());
    let log = String::from_utf8_lossy(&out.stderr);
    assert!(
        log.contains("http request"),
        "debug logs show requests: {log}"
    );
    assert!(!log.contains(TOKEN), "{log}");
    // Refused: the server echoes the Authorization header in its error body.
    world.lock().unwrap().reject_token = true;
    let out = p.inlet(&["--log", "debug", "sync", "c", "--full-refresh"]);
    assert!(!out.status.success());
    let all = inlet_testkit::project::said(&out);
    assert!(all.contains("authentication failed"), "{all}");
    assert!(
        all.contains("Bearer ***"),
        "the echoed token is redacted: {all}"
    );
    assert!(!all.contains(TOKEN), "{all}");
    for f in inlet_testkit::lake::walk(p.root()) {
        let bytes = std::fs::read(&f).unwrap();
        assert!(
            !bytes.windows(TOKEN.len()).any(|w| w == TOKEN.as_bytes()),
            "{} contains the token",
            f.display()
        );
    }
}

#[test]
fn issue_comments_are_read_per_issue_and_incrementally() {
    let mut comments = BTreeMap::new();
    for n in 1..=30u64 {
        let k = n % 4; // 0..3 comments per issue
        comments.insert(
            n,
            (0..k)
                .map(|j| (n * 100 + j, n as i64 * 10 + j as i64))
                .collect::<Vec<_>>(),
        );
    }
    let total: usize = comments.values().map(Vec::len).sum();
    // Issue 7 has 150 comments: two pages of them.
    comments.insert(7, (0..150).map(|j| (70_000 + j, 1000 + j as i64)).collect());
    let total = total - 3 + 150;
    // As on GitHub, a comment updates its issue: an issue's `updated_at` is its last
    // comment's.
    let issues = (1..=30u64)
        .map(|n| {
            (
                n,
                comments[&n].iter().map(|c| c.1).max().unwrap_or(n as i64),
            )
        })
        .collect();
    let world = Arc::new(Mutex::new(GithubWorld {
        issues,
        comments,
        ..GithubWorld::default()
    }));
    let server = github_server(world.clone(), Arc::new(Mutex::new(vec![])));
    let p = github_project(&server, &["issue_comments"]);
    let report = p.sync_json(&[]);
    assert_eq!(stream_rows(&report, "issue_comments") as usize, total);
    let b = batches(&p, "issue_comments");
    let ids = int_values(&b, "id");
    assert_unique(&ids);
    let issue_numbers: BTreeSet<String> = str_values(&b, "issue_number").into_iter().collect();
    assert!(
        issue_numbers.contains("7") && !issue_numbers.contains("4"),
        "{issue_numbers:?}"
    );
    let comment_pages = server
        .requests()
        .iter()
        .filter(|r| r.path.ends_with("/7/comments"))
        .count();
    assert_eq!(comment_pages, 2);

    // A new comment on issue 3 updates the issue: the next run visits the issues updated
    // since the comments' cursor (issue 7 holds the newest comment, `since` is inclusive)
    // and lands only the new comment.
    {
        let mut w = world.lock().unwrap();
        w.comments.get_mut(&3).unwrap().push((9_999_999, 5000));
        w.issues[2].1 = 5000;
    }
    server.clear();
    let report = p.sync_json(&[]);
    assert_eq!(stream_rows(&report, "issue_comments"), 1, "{report:#}");
    let visited: Vec<String> = server
        .requests()
        .iter()
        .filter(|r| r.path.ends_with("/comments"))
        .map(|r| r.path.clone())
        .collect();
    assert_eq!(
        visited,
        [
            format!("/repos/{REPO}/issues/7/comments"),
            format!("/repos/{REPO}/issues/3/comments")
        ]
    );
}

/// Stripe: customers newest first, `has_more` + `starting_after`, `created[gte]`.
fn stripe_server(
    customers: Arc<Mutex<Vec<(u64, i64)>>>,
    faults: Arc<Mutex<Vec<Fault>>>,
) -> ReplayServer {
    ReplayServer::start(Arc::new(move |req: &Req| {
        if req.header("authorization") != Some(&format!("Bearer {STRIPE_KEY}")) {
            return Reply::status(
                401,
                r#"{"error":{"message":"Invalid API Key provided: sk_test_****","type":"invalid_request_error"}}"#,
            );
        }
        let charges = req.path == "/v1/charges";
        if req.path != "/v1/customers" && !charges {
            return Reply::status(
                404,
                r#"{"error":{"type":"invalid_request_error","message":"Unrecognized request URL"}}"#,
            );
        }
        let limit: usize = req
            .param("limit")
            .and_then(|l| l.parse().ok())
            .unwrap_or(10);
        let gte: Option<i64> = req.param("created[gte]").map(|v| v.parse().unwrap());
        let source: Vec<(u64, i64)> = if charges {
            (1..=150).map(|i| (i, i as i64 * 7)).collect()
        } else {
            customers.lock().unwrap().clone()
        };
        let mut all: Vec<(u64, i64)> = source
            .into_iter()
            .filter(|(_, c)| gte.is_none_or(|g| shapes::unix(*c) >= g))
            .collect();
        all.sort_by(|a, b| b.1.cmp(&a.1).then(b.0.cmp(&a.0)));
        let id = |i: u64| {
            if charges {
                format!("ch_{i:020}")
            } else {
                format!("cus_{i:014}")
            }
        };
        let start = match req.param("starting_after") {
            Some(after) => all.iter().position(|(i, _)| id(*i) == after).unwrap() + 1,
            None => 0,
        };
        let page: Vec<Value> = all
            .iter()
            .skip(start)
            .take(limit)
            .map(|(i, c)| {
                if charges {
                    shapes::stripe_charge(*i, *c)
                } else {
                    shapes::stripe_customer(*i, *c)
                }
            })
            .collect();
        let has_more = start + limit < all.len();
        let good = Reply::json(&shapes::stripe_list(&req.path, page, has_more))
            .header("request-id", "req_1234567890abcd")
            .header("stripe-version", "2024-06-20");
        let mut faults = faults.lock().unwrap();
        if let Some(f) = faults.iter_mut().find(|f| {
            f.times > 0
                && req.path.contains(f.path)
                && (f.page == Some("after")) == req.param("starting_after").is_some()
        }) {
            f.times -= 1;
            return fault_reply(f.kind, good);
        }
        good
    }))
}

fn stripe_project(server: &ReplayServer) -> TestProject {
    let p = crate::project(TOKEN, STRIPE_KEY);
    let text = format!(
        r#"[connections.c]
connector = "stripe"

[connections.c.config]
api_key = "${{env:INLET_TEST_STRIPE_KEY}}"
base_url = "{}"
backoff_ms = 20
requests_per_second = 200

[connections.c.streams.customers]
[connections.c.streams.charges]
"#,
        server.base_url()
    );
    p.write_project(text);
    p
}

#[test]
fn stripe_customers_follow_starting_after_and_reruns_ask_created_gte() {
    let customers = Arc::new(Mutex::new(
        (1..=230).map(|i| (i, i as i64 * 100)).collect::<Vec<_>>(),
    ));
    let faults = Arc::new(Mutex::new(vec![
        Fault {
            path: "/v1/customers",
            page: Some("after"),
            kind: FaultKind::RateLimited,
            times: 1,
        },
        Fault {
            path: "/v1/customers",
            page: Some("after"),
            kind: FaultKind::BadGateway,
            times: 1,
        },
    ]));
    let server = stripe_server(customers.clone(), faults);
    let p = stripe_project(&server);
    let report = p.sync_json(&[]);
    assert_eq!(stream_rows(&report, "customers"), 230);
    assert_eq!(stream_rows(&report, "charges"), 150);
    let charges = batches(&p, "charges");
    let amounts = int_values(&charges, "amount");
    assert_eq!(
        amounts.iter().sum::<i64>(),
        (1..=150).map(|i| 1099 + i).sum::<i64>()
    );
    let reqs: Vec<Req> = server
        .requests()
        .into_iter()
        .filter(|r| r.path == "/v1/customers")
        .collect();
    let afters: Vec<Option<String>> = reqs
        .iter()
        .map(|r| r.param("starting_after").map(str::to_string))
        .collect();
    // Page 1, then page 2 after a 429 and a 502, then page 3.
    assert_eq!(afters.len(), 5, "{afters:?}");
    assert_eq!(afters[1].as_deref(), Some("cus_00000000000131"));
    assert_eq!(afters[4].as_deref(), Some("cus_00000000000031"));
    let b = batches(&p, "customers");
    let ids = str_values(&b, "id");
    assert_eq!(ids.len(), 230);
    assert_eq!(ids.iter().collect::<BTreeSet<_>>().len(), 230);
    let schema = b[0].schema();
    // A unix timestamp lands as microseconds, the unit every engine reads.
    assert_eq!(
        schema.field_with_name("created").unwrap().data_type(),
        &arrow_schema::DataType::Timestamp(
            arrow_schema::TimeUnit::Microsecond,
            Some("+00:00".into())
        )
    );
    // `metadata` is declared `json`: one text column, whatever keys merchants use.
    assert_eq!(
        schema.field_with_name("metadata").unwrap().data_type(),
        &arrow_schema::DataType::Utf8
    );
    assert!(str_values(&b, "metadata").contains(&r#"{"order_id":"6740"}"#.to_string()));

    customers
        .lock()
        .unwrap()
        .extend([(231, 50_000), (232, 50_001), (233, 50_001)]);
    server.clear();
    let report = p.sync_json(&[]);
    assert_eq!(stream_rows(&report, "customers"), 3, "{report:#}");
    assert_eq!(stream_rows(&report, "charges"), 0, "{report:#}");
    let reqs: Vec<Req> = server
        .requests()
        .into_iter()
        .filter(|r| r.path == "/v1/customers")
        .collect();
    assert_eq!(reqs.len(), 1);
    assert_eq!(
        reqs[0].param("created[gte]"),
        Some(&*shapes::unix(23_000).to_string())
    );
    let ids = str_values(&batches(&p, "customers"), "id");
    assert_eq!(ids.len(), 233);
    assert_eq!(ids.iter().collect::<BTreeSet<_>>().len(), 233);
}

/// The "API v2" of a small customer API: v1 pages with offset/limit and calls the field
/// `email`; v2 renamed it `email_address` and pages with a cursor in the body.
fn churn_server(v2: Arc<Mutex<bool>>, customers: Arc<Mutex<Vec<(u64, i64)>>>) -> ReplayServer {
    ReplayServer::start(Arc::new(move |req: &Req| {
        let v2 = *v2.lock().unwrap();
        let gte: i64 = req
            .param("created_gte")
            .map(|v| v.parse().unwrap())
            .unwrap_or(0);
        let all: Vec<(u64, i64)> = customers
            .lock()
            .unwrap()
            .iter()
            .copied()
            .filter(|(_, c)| *c >= gte)
            .collect();
        let record = |(i, c): (u64, i64)| {
            let mut r = serde_json::json!({"id": i, "name": format!("Customer {i}"), "created": c});
            r[if v2 { "email_address" } else { "email" }] =
                Value::from(format!("c{i}@example.com"));
            r
        };
        if !v2 {
            let offset: usize = req.param("offset").unwrap_or("0").parse().unwrap();
            let limit: usize = req.param("limit").unwrap_or("10").parse().unwrap();
            let items: Vec<Value> = all
                .iter()
                .skip(offset)
                .take(limit)
                .map(|x| record(*x))
                .collect();
            return Reply::json(&serde_json::json!({"items": items, "total": all.len()}));
        }
        // v2 ignores offset; it pages with `cursor`.
        let start: usize = req
            .param("cursor")
            .map(|c| c.trim_start_matches("c_").parse().unwrap())
            .unwrap_or(0);
        let items: Vec<Value> = all
            .iter()
            .skip(start)
            .take(10)
            .map(|x| record(*x))
            .collect();
        let next = (start + 10 < all.len()).then(|| format!("c_{}", start + 10));
        Reply::json(&serde_json::json!({"items": items, "next_cursor": next}))
    }))
}

const CHURN_V1: &str = r#"manifest_version = 1
name = "acme"
base_url = "http://placeholder.invalid"

[streams.customers]
path = "/customers"
record_selector = "items"
primary_key = ["id"]
pagination = { type = "offset", limit = 10 }
incremental = { cursor_field = "created", request_param = "created_gte", format = "unix" }
"#;

#[test]
fn api_v2_churn_is_fixed_by_editing_only_the_manifest_and_the_schema_change_is_recorded() {
    let v2 = Arc::new(Mutex::new(false));
    let customers = Arc::new(Mutex::new(
        (1..=25).map(|i| (i, i as i64)).collect::<Vec<_>>(),
    ));
    let server = churn_server(v2.clone(), customers.clone());
    let p = crate::project(TOKEN, STRIPE_KEY);
    p.write("acme.toml", CHURN_V1);
    let project = format!(
        "[connections.c]\nconnector = \"rest\"\n[connections.c.config]\nmanifest = \"acme.toml\"\nbase_url = \"{}\"\n",
        server.base_url()
    );
    p.write_project(&project);
    let report = p.sync_json(&[]);
    assert_eq!(stream_rows(&report, "customers"), 25);

    // The API moves to v2, with new customers.
    *v2.lock().unwrap() = true;
    customers
        .lock()
        .unwrap()
        .extend((26..=40).map(|i| (i, i as i64)));
    let out = p.inlet(&["sync", "c"]);
    let text =
        String::from_utf8_lossy(&out.stderr).into_owned() + &String::from_utf8_lossy(&out.stdout);
    assert!(!out.status.success(), "{text}");
    assert!(text.contains("pagination does not advance"), "{text}");
    assert_eq!(
        int_values(&batches(&p, "customers"), "id").len(),
        25,
        "nothing of the failed run landed"
    );

    // The fix is an edit of the manifest alone.
    let v2_manifest = CHURN_V1.replace(
        r#"pagination = { type = "offset", limit = 10 }"#,
        r#"pagination = { type = "cursor", param = "cursor", body_path = "next_cursor" }"#,
    );
    p.write("acme.toml", &v2_manifest);
    p.write_project(&project);
    let report = p.sync_json(&[]);
    // `created_gte` is inclusive, so customer 25 (at the saved cursor) comes again; its
    // key was saved with the cursor, so exactly the 15 new customers land.
    assert_eq!(stream_rows(&report, "customers"), 15, "{report:#}");
    let b = batches(&p, "customers");
    let ids = int_values(&b, "id");
    assert_eq!(ids.len(), 40);
    assert_unique(&ids);
    assert_eq!(str_values(&b, "email_address").len(), 15);
    assert_eq!(str_values(&b, "email").len(), 25);
    let st = p.state_json();
    let changes = &st["streams"]["customers"]["cursor"]["schema_changes"];
    assert_eq!(changes.as_array().map(Vec::len), Some(1), "{st:#}");
    assert_eq!(
        changes[0]["added"],
        serde_json::json!(["email_address"]),
        "{st:#}"
    );

    // A full refresh starts the pass over but keeps the landed schema and its history:
    // `email` stays a column (null in v2 records), and the change stays on record.
    let report = p.sync_json(&["--full-refresh"]);
    assert_eq!(stream_rows(&report, "customers"), 40, "{report:#}");
    let st = p.state_json();
    let changes = &st["streams"]["customers"]["cursor"]["schema_changes"];
    assert_eq!(changes.as_array().map(Vec::len), Some(1), "{st:#}");
    let fields = st["streams"]["customers"]["cursor"]["schema"]["fields"].to_string();
    assert!(
        fields.contains("\"email\"") && fields.contains("\"email_address\""),
        "{fields}"
    );
}

#[test]
fn manifest_errors_name_the_file_and_line() {
    let p = crate::project(TOKEN, STRIPE_KEY);
    std::fs::write(
        p.root().join("acme.toml"),
        CHURN_V1.replace("record_selector", "record_selecter"),
    )
    .unwrap();
    p.write_project(
        "[connections.c]\nconnector = \"rest\"\n[connections.c.config]\nmanifest = \"acme.toml\"\n",
    );
    let out = p.inlet(&["check", "c"]);
    let text =
        String::from_utf8_lossy(&out.stderr).into_owned() + &String::from_utf8_lossy(&out.stdout);
    assert!(!out.status.success(), "{text}");
    assert!(text.contains("acme.toml, line 7"), "{text}");
    assert!(text.contains("record_selecter"), "{text}");
}

#[test]
fn github_commits_use_a_nested_cursor_and_name_their_repository() {
    let world = Arc::new(Mutex::new(GithubWorld {
        commits: (1..=130).map(|i| (i, i as i64 * 3)).collect(),
        ..GithubWorld::default()
    }));
    let server = github_server(world.clone(), Arc::new(Mutex::new(vec![])));
    let p = github_project(&server, &["commits"]);
    let report = p.sync_json(&[]);
    assert_eq!(stream_rows(&report, "commits"), 130);
    let b = batches(&p, "commits");
    let shas = str_values(&b, "sha");
    assert_eq!(shas.iter().collect::<BTreeSet<_>>().len(), 130);
    assert!(str_values(&b, "repository").iter().all(|r| r == REPO));
    let st = p.state_json();
    assert_eq!(
        st["streams"]["commits"]["cursor"]["slices"][REPO]["cursor"],
        Value::from(shapes::ts(390)),
        "{st:#}"
    );
    world.lock().unwrap().commits.push((131, 1000));
    server.clear();
    let report = p.sync_json(&[]);
    assert_eq!(stream_rows(&report, "commits"), 1, "{report:#}");
    assert_eq!(server.requests()[0].param("since"), Some(&*shapes::ts(390)));
}

/// A feed API paging with a next URL in the body, and a catalog API paging by number.
fn paging_server(items: usize) -> ReplayServer {
    ReplayServer::start(Arc::new(move |req: &Req| {
        let size: usize = req.param("size").and_then(|v| v.parse().ok()).unwrap_or(10);
        match req.path.as_str() {
            "/feed" => {
                let from: usize = req.param("from").and_then(|v| v.parse().ok()).unwrap_or(0);
                let data: Vec<Value> = (from..(from + 7).min(items))
                    .map(|i| serde_json::json!({"id": i, "at": shapes::ts(i as i64)}))
                    .collect();
                let next = (from + 7 < items).then(|| format!("/feed?from={}", from + 7));
                Reply::json(&serde_json::json!({"entries": data, "links": {"next": next}}))
            }
            "/catalog" => {
                let page: usize = req.param("page").unwrap().parse().unwrap();
                let data: Vec<Value> = ((page - 1) * size..(page * size).min(items))
                    .map(|i| serde_json::json!({"sku": format!("sku-{i}"), "price": format!("{i}.99")}))
                    .collect();
                Reply::json(&Value::Array(data))
            }
            _ => Reply::status(404, "{}"),
        }
    }))
}

#[test]
fn next_url_and_page_number_pagination_follow_every_page() {
    let server = paging_server(53);
    let p = crate::project(TOKEN, STRIPE_KEY);
    p.write(
        "api.toml",
        r#"manifest_version = 1
name = "paging"
base_url = "http://placeholder.invalid"

[streams.feed]
path = "/feed"
record_selector = "entries"
primary_key = ["id"]
pagination = { type = "next_url", path = "links.next" }

[streams.catalog]
path = "/catalog"
primary_key = ["sku"]
pagination = { type = "page_number", param = "page", start = 1, size_param = "size", size = 10 }
schema = { columns = { price = "decimal(10,2)" } }
"#,
    );
    p.write_connection(
        "rest",
        "",
        &format!(
            "manifest = \"api.toml\"\nbase_url = \"{}\"\n",
            server.base_url()
        ),
        "",
    );
    let report = p.sync_json(&[]);
    assert_eq!(stream_rows(&report, "feed"), 53);
    assert_eq!(stream_rows(&report, "catalog"), 53);
    let feed_pages = server
        .requests()
        .iter()
        .filter(|r| r.path == "/feed")
        .count();
    assert_eq!(feed_pages, 8);
    // 53 records at 10 per page: pages 1..=6, the sixth is short.
    let catalog_pages: Vec<String> = server
        .requests()
        .iter()
        .filter(|r| r.path == "/catalog")
        .map(|r| r.param("page").unwrap().to_string())
        .collect();
    assert_eq!(catalog_pages, ["1", "2", "3", "4", "5", "6"]);
    let ids = int_values(&batches(&p, "feed"), "id");
    assert_eq!(ids.iter().collect::<BTreeSet<_>>().len(), 53);
    let catalog = batches(&p, "catalog");
    let price = catalog[0].column_by_name("price").unwrap();
    let price = price
        .as_any()
        .downcast_ref::<arrow_array::Decimal128Array>()
        .unwrap();
    assert_eq!(price.precision(), 10);
    assert_eq!(price.scale(), 2);
    let total: i128 = catalog
        .iter()
        .map(|b| {
            let a = b.column_by_name("price").unwrap();
            let a = a
                .as_any()
                .downcast_ref::<arrow_array::Decimal128Array>()
                .unwrap();
            (0..a.len()).map(|i| a.value(i)).sum::<i128>()
        })
        .sum();
    assert_eq!(total, (0..53).map(|i| i as i128 * 100 + 99).sum::<i128>());
}

#[test]
fn oauth2_refresh_token_auth_and_a_lookback_window_from_the_manifest() {
    let events = Arc::new(Mutex::new(
        (0..50u64).map(|i| (i, i as i64 * 10)).collect::<Vec<_>>(),
    ));
    let events2 = events.clone();
    let server = ReplayServer::start(Arc::new(move |req: &Req| {
        if req.path == "/oauth/token" {
            return Reply::json(
                &serde_json::json!({"access_token": "at-fresh-123456", "expires_in": 3600, "token_type": "bearer"}),
            );
        }
        if req.header("authorization") != Some("Bearer at-fresh-123456") {
            return Reply::status(401, r#"{"error":"invalid_token"}"#);
        }
        let since = since_of(req).unwrap_or(i64::MIN);
        let page: usize = req.param("page").unwrap().parse().unwrap();
        let all: Vec<Value> = events2
            .lock()
            .unwrap()
            .iter()
            .filter(|(_, t)| *t >= since)
            .map(|(i, t)| serde_json::json!({"id": i, "occurred_at": shapes::ts(*t)}))
            .collect();
        Reply::json(&Value::Array(
            all.into_iter().skip((page - 1) * 20).take(20).collect(),
        ))
    }));
    let p = crate::project(TOKEN, STRIPE_KEY);
    p.write(
        "api.toml",
        r#"manifest_version = 1
name = "events"
base_url = "http://placeholder.invalid"

[config.client_secret]
type = "secret"
required = true
[config.refresh_token]
type = "secret"
required = true
[config.token_url]
type = "string"
required = true

[auth]
type = "oauth2_refresh"
token_url = "{config.token_url}"
client_id = "inlet-test"
client_secret = "{config.client_secret}"
refresh_token = "{config.refresh_token}"

[streams.events]
path = "/events"
primary_key = ["id"]
pagination = { type = "page_number", size = 20 }
incremental = { cursor_field = "occurred_at", request_param = "since", lookback = "100s" }
"#,
    );
    p.write_connection(
        "rest",
        "",
        &format!(
            "manifest = \"api.toml\"\nbase_url = \"{0}\"\ntoken_url = \"{0}/oauth/token\"\nclient_secret = \"cs-very-secret-1\"\nrefresh_token = \"${{env:INLET_TEST_GITHUB_TOKEN}}\"\n",
            server.base_url()
        ),
        "",
    );
    let report = p.sync_json(&[]);
    assert_eq!(stream_rows(&report, "events"), 50);
    let token_requests = server
        .requests()
        .iter()
        .filter(|r| r.path == "/oauth/token")
        .count();
    assert_eq!(token_requests, 1, "one access token serves every page");
    // The re-run asks from 100 s before the saved cursor (490 s): records 39..=49 again,
    // as a lookback means, plus the new one.
    events.lock().unwrap().push((50, 1000));
    server.clear();
    let report = p.sync_json(&[]);
    assert_eq!(stream_rows(&report, "events"), 12, "{report:#}");
    let first = server
        .requests()
        .into_iter()
        .find(|r| r.path == "/events")
        .unwrap();
    assert_eq!(first.param("since"), Some(&*shapes::ts(390)));
    for f in inlet_testkit::lake::walk(p.root()) {
        if f.extension().is_some_and(|e| e == "toml") {
            continue;
        }
        let text = String::from_utf8_lossy(&std::fs::read(&f).unwrap()).into_owned();
        assert!(
            !text.contains("cs-very-secret-1")
                && !text.contains(TOKEN)
                && !text.contains("at-fresh-123456"),
            "{}",
            f.display()
        );
    }
}

/// An API paging by Link headers as servers really write them: the next target relative
/// to the request (`<?page=2&...>`), commas in its query (a sparse field set, label
/// filters), `REL` in capitals, a quoted title holding a comma, and the links split over
/// two `Link` fields. The connection's base URL has a path, so a target resolved against
/// it instead of the request would miss the endpoint.
fn link_server(items: usize) -> ReplayServer {
    ReplayServer::start(Arc::new(move |req: &Req| {
        if req.path != "/v2/items" {
            return Reply::status(404, r#"{"message":"Not Found"}"#);
        }
        if req.param("fields") != Some("id,name") || req.param("labels") != Some("bug,help wanted")
        {
            return Reply::status(400, r#"{"message":"fields and labels are required"}"#);
        }
        let page: usize = req.param("page").and_then(|v| v.parse().ok()).unwrap_or(1);
        let data: Vec<Value> = ((page - 1) * 10..(page * 10).min(items))
            .map(|i| serde_json::json!({"id": i, "name": format!("item {i}")}))
            .collect();
        let last = items.div_ceil(10);
        let mut reply = Reply::json(&Value::Array(data)).header(
            "link",
            format!(
                r#"</v2/items?fields=id,name&labels=bug,help%20wanted&page=1>; rel="first", <?fields=id,name&labels=bug,help%20wanted&page={last}>; rel="last""#
            ),
        );
        if page < last {
            reply = reply.header(
                "link",
                format!(
                    r#"<?fields=id,name&labels=bug,help%20wanted&page={}>; title="page {}, of {last}"; REL="Next""#,
                    page + 1,
                    page + 1
                ),
            );
        }
        reply
    }))
}

fn link_project(server: &ReplayServer) -> TestProject {
    let p = crate::project(TOKEN, STRIPE_KEY);
    p.write(
        "api.toml",
        r#"manifest_version = 1
name = "linked"
base_url = "http://placeholder.invalid"

[streams.items]
path = "/items"
primary_key = ["id"]
params = { fields = "id,name", labels = "bug,help wanted" }
pagination = { type = "link_header" }
"#,
    );
    p.write_connection(
        "rest",
        "",
        &format!(
            "manifest = \"api.toml\"\nbase_url = \"{}/v2\"\nbackoff_ms = 20\n",
            server.base_url()
        ),
        "",
    );
    p
}

#[test]
fn link_pagination_follows_relative_targets_with_commas_across_two_link_fields() {
    let server = link_server(47);
    let p = link_project(&server);
    let report = p.sync_json(&[]);
    assert_eq!(stream_rows(&report, "items"), 47, "{report}");
    let pages: Vec<String> = server
        .requests()
        .iter()
        .map(|r| r.param("page").unwrap_or("1").to_string())
        .collect();
    assert_eq!(pages, ["1", "2", "3", "4", "5"]);
    let mut ids = int_values(&batches(&p, "items"), "id");
    ids.sort_unstable();
    assert_eq!(ids, (0..47).collect::<Vec<i64>>());
}

#[test]
fn a_rest_reader_that_panics_fails_the_run_and_neither_rows_nor_state_move() {
    let server = link_server(47);
    let p = link_project(&server);
    // The producer panics after fetching page 2, with page 1 read and checkpointed.
    p.assert_panicked_sync("rest-page#2", &["c"], "items");
    // The same sync without the failpoint lands every row once.
    let report = p.sync_json(&[]);
    assert_eq!(stream_rows(&report, "items"), 47, "{report}");
}

#[test]
fn github_issues_land_on_s3_and_are_a_glue_table_with_structs_lists_and_timestamps() {
    let Some(moto) = inlet_testkit::moto::MotoServer::shared() else {
        return;
    };
    let world = Arc::new(Mutex::new(GithubWorld {
        issues: (1..=30).map(|n| (n, n as i64 * 60)).collect(),
        ..GithubWorld::default()
    }));
    let server = github_server(world, Arc::new(Mutex::new(vec![])));
    let p = github_project(&server, &["issues"]);
    let text = p.config_text().replace(
        "connector = \"github\"",
        "connector = \"github\"\ndestination = \"raw\"",
    );
    p.write_toml(text + &moto.destination_toml("raw", "lake-gh", "raw_github"));
    let run = p.sync_json(&[]);
    assert_eq!(run["outcome"], "succeeded", "{run}");
    assert_eq!(stream_rows(&run, "issues"), 30);
    assert_eq!(run["catalog"]["issues"]["action"], "created", "{run}");
    let t = moto.glue_table("raw_github", "issues");
    let columns: Vec<(String, String, Option<String>)> =
        serde_json::from_value(t["columns"].clone()).unwrap();
    let ty = |n: &str| {
        columns
            .iter()
            .find(|(c, _, _)| c == n)
            .map(|(_, t, _)| t.clone())
            .unwrap_or_else(|| panic!("no column {n} in {columns:?}"))
    };
    assert_eq!(ty("id"), "bigint");
    assert_eq!(ty("number"), "bigint");
    assert_eq!(ty("updated_at"), "timestamp");
    assert!(
        ty("user").starts_with("struct<") && ty("user").contains("login:string"),
        "{}",
        ty("user")
    );
    assert!(
        ty("labels").starts_with("array<struct<"),
        "{}",
        ty("labels")
    );
    assert_eq!(
        t["partition_keys"],
        serde_json::json!([["extracted_at", "date"]])
    );
    assert_eq!(t["parameters"]["inlet.primary_key"], "id");
    assert_eq!(t["location"], "s3://lake-gh/raw/c/issues/");
    // An unchanged re-sync writes no new table version.
    let versions = t["versions"].as_u64().unwrap();
    let run = p.sync_json(&[]);
    assert_eq!(run["catalog"]["issues"]["action"], "unchanged", "{run}");
    assert_eq!(
        moto.glue_table("raw_github", "issues")["versions"]
            .as_u64()
            .unwrap(),
        versions
    );
}
