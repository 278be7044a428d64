//! A local server that answers like GitHub's `GET /repos/{owner}/{repo}/issues` for a
//! repository with N real-shaped issues (about 6.5 KB each), page by page with Link and
//! rate-limit headers, plus a tiny-page endpoint `/small?page=N` for measuring the HTTP
//! layer. Used by `bench/github_issues.sh`.
//!
//!   github_replay N ADDR_FILE     prints nothing; writes `http://127.0.0.1:PORT` to ADDR_FILE
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    reason = "a benchmark fixture"
)]

use std::sync::{Arc, OnceLock};

use inlet_testkit::{ReplayServer, Reply, Req, shapes};

fn main() {
    let mut args = std::env::args().skip(1);
    let total: u64 = args.next().and_then(|a| a.parse().ok()).unwrap_or(100_000);
    let addr_file = args.next().expect("usage: github_replay N ADDR_FILE");
    // The Link header names the server's own address, known once it listens.
    let base = Arc::new(OnceLock::<String>::new());
    let own = base.clone();
    let server = ReplayServer::start(Arc::new(move |req: &Req| {
        answer(req, own.get().map(String::as_str).unwrap_or(""), total)
    }));
    let _ = base.set(server.base_url());
    std::fs::write(&addr_file, server.base_url()).unwrap();
    server.wait();
}

fn answer(req: &Req, base: &str, total: u64) -> Reply {
    let param = |k: &str| req.param(k);
    let page: u64 = param("page")
        .and_then(|p| p.parse().ok())
        .unwrap_or(1)
        .max(1);
    let path = req.path.as_str();
    if path == "/small" {
        let body = format!(
            r#"{{"object":"list","url":"/v1/customers","has_more":true,"data":[{{"id":"cus_{page:014}","object":"customer"}}]}}"#
        );
        return Reply::ok(&body).header("content-type", "application/json");
    }
    let Some(repo) = path
        .strip_prefix("/repos/")
        .and_then(|r| r.strip_suffix("/issues"))
    else {
        return Reply::status(404, r#"{"message":"Not Found"}"#);
    };
    let per_page: u64 = param("per_page").and_then(|p| p.parse().ok()).unwrap_or(30);
    let last = total.div_ceil(per_page);
    let first = (page - 1) * per_page + 1;
    let mut body = Vec::with_capacity((per_page * 7000) as usize);
    body.push(b'[');
    for n in first..=(first + per_page - 1).min(total) {
        if n > first {
            body.push(b',');
        }
        serde_json::to_writer(&mut body, &shapes::github_issue(repo, n, n as i64)).unwrap();
    }
    body.push(b']');
    let link_to = |p: u64| {
        let qs = url::form_urlencoded::Serializer::new(String::new())
            .extend_pairs(req.query.iter().filter(|(k, _)| k != "page"))
            .append_pair("page", &p.to_string())
            .finish();
        format!("<{base}{path}?{qs}>")
    };
    let mut resp = Reply::bytes(200, body)
        .header("content-type", "application/json; charset=utf-8")
        .header("x-ratelimit-limit", "5000")
        .header("x-ratelimit-remaining", "4999")
        .header("x-ratelimit-reset", "4102444800")
        .header("x-ratelimit-resource", "core");
    if page < last {
        resp = resp.header(
            "link",
            format!(
                "{}; rel=\"next\", {}; rel=\"last\"",
                link_to(page + 1),
                link_to(last)
            ),
        );
    }
    resp
}
