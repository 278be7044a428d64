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

#[path = "../../../tests/support/shapes.rs"]
mod shapes;

use std::{convert::Infallible, sync::Arc};

use http_body_util::Full;
use hyper::{body::Incoming, service::service_fn};
use hyper_util::rt::{TokioExecutor, TokioIo};

fn main() {
    let mut args = std::env::args().skip(1);
    let total: u64 = args.next().and_then(|a| a.parse().ok()).unwrap_or(100_000);
    let addr_file = args.next().expect("usage: github_replay N ADDR_FILE");
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(1)
        .enable_all()
        .build()
        .unwrap();
    runtime.block_on(async move {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let base = format!("http://{}", listener.local_addr().unwrap());
        std::fs::write(&addr_file, &base).unwrap();
        let base = Arc::new(base);
        loop {
            let (stream, _) = listener.accept().await.unwrap();
            // As real API front ends do: no Nagle delay on small responses.
            let _ = stream.set_nodelay(true);
            let base = base.clone();
            tokio::spawn(async move {
                let service = service_fn(move |req: hyper::Request<Incoming>| {
                    let base = base.clone();
                    async move { Ok::<_, Infallible>(answer(&req, &base, total)) }
                });
                let _ = hyper_util::server::conn::auto::Builder::new(TokioExecutor::new())
                    .serve_connection(TokioIo::new(stream), service)
                    .await;
            });
        }
    });
}

fn answer(
    req: &hyper::Request<Incoming>,
    base: &str,
    total: u64,
) -> hyper::Response<Full<bytes::Bytes>> {
    let params: Vec<(String, String)> =
        url::form_urlencoded::parse(req.uri().query().unwrap_or("").as_bytes())
            .map(|(k, v)| (k.into_owned(), v.into_owned()))
            .collect();
    let param = |k: &str| params.iter().find(|(n, _)| n == k).map(|(_, v)| v.as_str());
    let page: u64 = param("page")
        .and_then(|p| p.parse().ok())
        .unwrap_or(1)
        .max(1);
    let path = req.uri().path();
    if path == "/small" {
        let body = format!(
            r#"{{"object":"list","url":"/v1/customers","has_more":true,"data":[{{"id":"cus_{page:014}","object":"customer"}}]}}"#
        );
        return hyper::Response::builder()
            .header("content-type", "application/json")
            .body(Full::new(body.into()))
            .unwrap();
    }
    let Some(repo) = path
        .strip_prefix("/repos/")
        .and_then(|r| r.strip_suffix("/issues"))
    else {
        return hyper::Response::builder()
            .status(404)
            .body(Full::new(r#"{"message":"Not Found"}"#.into()))
            .unwrap();
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
            .extend_pairs(params.iter().filter(|(k, _)| k != "page"))
            .append_pair("page", &p.to_string())
            .finish();
        format!("<{base}{path}?{qs}>")
    };
    let mut resp = hyper::Response::builder()
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
    resp.body(Full::new(body.into())).unwrap()
}
