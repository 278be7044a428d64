//! The plugin's record logic compiled natively, for the benchmark (bench/plugins.sh):
//! the same item JSON, fetched the same way (HTTP/1.1 over loopback, a connection per
//! item, a batch at a time with 4 requests in flight), parsed and appended to the same
//! typed batches as inside the plugin.
//!
//! `cargo run --release --example native_bench -- N` (run from connectors/plugins).

use std::{
    io::{BufRead, BufReader, Read, Write},
    net::{TcpListener, TcpStream},
    time::Instant,
};

use inlet_pdk::BatchBuilder;
use inlet_plugin_hackernews::items;

include!("common/bench_item.rs");

fn serve(listener: TcpListener) {
    for conn in listener.incoming() {
        let Ok(conn) = conn else { continue };
        std::thread::spawn(move || {
            let mut reader = BufReader::new(conn.try_clone().unwrap());
            let mut first = String::new();
            reader.read_line(&mut first).unwrap();
            loop {
                let mut l = String::new();
                if reader.read_line(&mut l).unwrap() == 0 || l == "\r\n" {
                    break;
                }
            }
            let path = first.split_whitespace().nth(1).unwrap_or("/");
            let id: i64 = path
                .trim_start_matches("/v0/item/")
                .trim_end_matches(".json")
                .parse()
                .unwrap_or(0);
            let body = item(id);
            // One write, as the host's replay server does (no Nagle wait between pieces).
            let response = format!(
                "HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
                body.len()
            );
            let mut conn = conn;
            conn.set_nodelay(true).unwrap();
            conn.write_all(response.as_bytes()).unwrap();
        });
    }
}

fn get(addr: std::net::SocketAddr, path: &str) -> Vec<u8> {
    let mut s = TcpStream::connect(addr).unwrap();
    s.set_nodelay(true).unwrap();
    write!(
        s,
        "GET {path} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n\r\n"
    )
    .unwrap();
    let mut buf = Vec::new();
    s.read_to_end(&mut buf).unwrap();
    let split = buf.windows(4).position(|w| w == b"\r\n\r\n").unwrap() + 4;
    buf.split_off(split)
}

fn main() {
    let n: i64 = std::env::args()
        .nth(1)
        .and_then(|a| a.parse().ok())
        .unwrap_or(5000);
    let batch_rows = 500;
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = listener.local_addr().unwrap();
    std::thread::spawn(move || serve(listener));
    let fields = items::item_fields();
    let started = Instant::now();
    let mut rows = 0u64;
    let mut id = 1;
    let mut fetching = std::time::Duration::ZERO;
    while id <= n {
        let mut b = BatchBuilder::new(&fields);
        let last = (id + batch_rows - 1).min(n);
        // Fetched as the plugin host does: the batch at once, 4 requests in flight (the
        // per-host concurrency of the host's HTTP client).
        let t = Instant::now();
        let ids: Vec<i64> = (id..=last).collect();
        let bodies: Vec<Vec<u8>> = std::thread::scope(|s| {
            let workers: Vec<_> = ids
                .chunks(ids.len().div_ceil(4))
                .map(|part| {
                    s.spawn(move || {
                        part.iter()
                            .map(|i| get(addr, &format!("/v0/item/{i}.json")))
                            .collect::<Vec<_>>()
                    })
                })
                .collect();
            workers
                .into_iter()
                .flat_map(|w| w.join().unwrap())
                .collect()
        });
        fetching += t.elapsed();
        for (i, body) in ids.iter().zip(&bodies) {
            if let Some(it) = items::parse(body, *i).unwrap() {
                items::append(&mut b, 0, &it).unwrap();
                b.end_row().unwrap();
            }
        }
        rows += u64::from(b.finish().rows);
        id = last + 1;
    }
    let secs = started.elapsed().as_secs_f64();
    let compute = secs - fetching.as_secs_f64();
    println!(
        "native: {rows} records in {secs:.3} s = {:.0} records/s end to end; without HTTP time ({:.3} s): {compute:.3} s = {:.0} records/s",
        rows as f64 / secs,
        fetching.as_secs_f64(),
        rows as f64 / compute
    );
}
