//! A local S3-compatible server (s3s-fs, SigV4 checked) for benchmarks and manual tests:
//!
//!     cargo run -p inlet-lake --example s3_test_server -- DIR [PORT]
//!
//! Buckets are the folders of DIR (a bucket `lake` is created). Credentials: access key
//! `inlet`, secret `inlet-secret` (override with S3_TEST_ACCESS_KEY / S3_TEST_SECRET_KEY).
#![allow(clippy::unwrap_used, clippy::expect_used, reason = "a developer tool")]

#[tokio::main]
async fn main() {
    let mut args = std::env::args().skip(1);
    let dir = std::path::PathBuf::from(args.next().expect("usage: s3_test_server DIR [PORT]"));
    let port: u16 = args.next().map(|p| p.parse().expect("port")).unwrap_or(0);
    std::fs::create_dir_all(dir.join("lake")).unwrap();
    let ak = std::env::var("S3_TEST_ACCESS_KEY").unwrap_or_else(|_| "inlet".into());
    let sk = std::env::var("S3_TEST_SECRET_KEY").unwrap_or_else(|_| "inlet-secret".into());
    let fs = s3s_fs::FileSystem::new(&dir).unwrap_or_else(|e| panic!("s3s-fs: {e:?}"));
    let mut builder = s3s::service::S3ServiceBuilder::new(fs);
    builder.set_auth(s3s::auth::SimpleAuth::from_single(ak, sk));
    let service = builder.build();
    let listener = tokio::net::TcpListener::bind(("127.0.0.1", port))
        .await
        .unwrap();
    println!("http://{}", listener.local_addr().unwrap());
    loop {
        let Ok((stream, _)) = listener.accept().await else {
            continue;
        };
        let service = service.clone();
        tokio::spawn(async move {
            let _ =
                hyper_util::server::conn::auto::Builder::new(hyper_util::rt::TokioExecutor::new())
                    .serve_connection(hyper_util::rt::TokioIo::new(stream), service)
                    .await;
        });
    }
}
