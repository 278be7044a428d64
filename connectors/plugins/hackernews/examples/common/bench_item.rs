// The Hacker News item JSON the plugin benchmark serves for `id`: included (`include!`) by
// this crate's native_bench.rs and by crates/inlet-wasm/examples/bench.rs, which live in
// different workspaces, so that both sides parse exactly the same bytes.

/// The item the benchmark serves for `id`.
fn item(id: i64) -> String {
    let kind = if id % 4 == 1 { "story" } else { "comment" };
    format!(
        r#"{{"by":"user{}","id":{id},"time":{},"type":"{kind}","title":"Benchmark story number {id}","text":"Lorem ipsum dolor sit amet, consectetur adipiscing elit &amp; sed do eiusmod tempor incididunt ut labore et dolore magna aliqua — item {id}","score":{},"parent":{},"kids":[{},{}],"descendants":{}}}"#,
        id % 97,
        1_700_000_000 + id,
        id % 500,
        id - 1,
        id + 1,
        id + 2,
        id % 50
    )
}
