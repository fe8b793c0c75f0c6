//! Collections read from a real S3 server (s3s-fs) and a real HTTP server (rclone), both on
//! 127.0.0.1 and started by the tests: batches equal local batches bit for bit, latency is
//! hidden by many requests in flight, and faults are typed errors within a timeout.
//!
//! s3s-fs is built by `./run test` (cached under `~/.cache/annbatch-rs/s3s-fs`), rclone comes
//! from Debian; `ANNBATCH_S3S_FS` / `ANNBATCH_RCLONE` point elsewhere.
#![cfg(feature = "remote")]

mod common;

use std::io::{Read, Write};
use std::net::{TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Once};
use std::time::{Duration, Instant};

use annbatch::{DatasetCollection, Error, HostBatch, Loader, RemoteFailure, RemoteOptions};

const ACCESS_KEY: &str = "annbatch-test";
const SECRET_KEY: &str = "annbatch-test-secret";
const BUCKET: &str = "cells";

/// The port of the server behind `ANNBATCH_REMOTE_ENDPOINT` (the C ABI test's).
static ENV_PORT: std::sync::OnceLock<u16> = std::sync::OnceLock::new();

/// The AWS environment every test reads its credentials from (the same for all of them), and
/// `ANNBATCH_REMOTE_ENDPOINT` for what reads the environment (the C ABI).
fn aws_env() {
    static ONCE: Once = Once::new();
    ONCE.call_once(|| {
        let port = *ENV_PORT.get_or_init(free_port);
        std::env::set_var(
            "ANNBATCH_REMOTE_ENDPOINT",
            format!("http://127.0.0.1:{port}"),
        );
        std::env::set_var("AWS_ACCESS_KEY_ID", ACCESS_KEY);
        std::env::set_var("AWS_SECRET_ACCESS_KEY", SECRET_KEY);
        std::env::set_var("AWS_REGION", "us-east-1");
        std::env::remove_var("AWS_ENDPOINT_URL");
        std::env::remove_var("AWS_SESSION_TOKEN");
    });
}

/// A server process, killed when dropped.
struct Server {
    child: Child,
    port: u16,
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .expect("bind")
        .local_addr()
        .expect("addr")
        .port()
}

fn start(mut command: Command, port: u16, what: &str) -> Server {
    let mut child = command
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap_or_else(|e| panic!("{what}: cannot start: {e}"));
    let deadline = Instant::now() + Duration::from_secs(30);
    while TcpStream::connect(("127.0.0.1", port)).is_err() {
        if let Some(status) = child.try_wait().expect("wait") {
            let mut err = String::new();
            if let Some(mut s) = child.stderr.take() {
                let _ = s.read_to_string(&mut err);
            }
            panic!("{what} exited ({status}): {err}");
        }
        assert!(Instant::now() < deadline, "{what} did not listen on {port}");
        std::thread::sleep(Duration::from_millis(50));
    }
    Server { child, port }
}

fn tool(var: &str, default: PathBuf, how: &str) -> PathBuf {
    let path = std::env::var_os(var).map_or(default, PathBuf::from);
    assert!(
        path.exists() || path.components().count() == 1,
        "{} is missing: {how}",
        path.display()
    );
    path
}

fn s3s_fs_binary() -> PathBuf {
    let home = std::env::var_os("HOME").map_or_else(|| PathBuf::from("/root"), PathBuf::from);
    tool(
        "ANNBATCH_S3S_FS",
        home.join(".cache/annbatch-rs/s3s-fs/bin/s3s-fs"),
        "`./run test` builds it (cargo install s3s-fs@0.14.1 --features binary --locked)",
    )
}

/// s3s-fs serving `root` (each directory a bucket), with the test credentials.
fn s3_server(root: &Path, secret: &str) -> Server {
    s3_server_on(free_port(), root, secret)
}

fn s3_server_on(port: u16, root: &Path, secret: &str) -> Server {
    let mut command = Command::new(s3s_fs_binary());
    command
        .args(["--host", "127.0.0.1", "--port", &port.to_string()])
        .args(["--access-key", ACCESS_KEY, "--secret-key", secret])
        .arg(root);
    start(command, port, "s3s-fs")
}

/// `rclone serve http` of `root` (honours Range, single and suffix).
fn http_server(root: &Path) -> Server {
    let port = free_port();
    let mut command = Command::new(tool(
        "ANNBATCH_RCLONE",
        PathBuf::from("rclone"),
        "install Debian's rclone",
    ));
    command
        .args(["serve", "http", "--addr", &format!("127.0.0.1:{port}")])
        .args(["--config", "/dev/null"])
        .arg(root);
    start(command, port, "rclone serve http")
}

/// A served copy of the test collections: `root/cells/NAME`.
fn served(names: &[&str]) -> tempfile::TempDir {
    let root = tempfile::tempdir().expect("tempdir");
    for name in names {
        common::copy_dir(&common::data(name), &root.path().join(BUCKET).join(name));
    }
    root
}

fn s3_options(port: u16) -> RemoteOptions {
    RemoteOptions {
        endpoint: Some(format!("http://127.0.0.1:{port}")),
        ..RemoteOptions::default()
    }
}

fn epoch(loader: &Loader) -> Vec<HostBatch> {
    loader
        .host_epoch(0)
        .expect("epoch")
        .collect::<annbatch::Result<Vec<_>>>()
        .expect("batches")
}

/// Settings that cover shuffled and in-order reads, small and large fetches, a seed, obs
/// columns, row ids and a layer.
fn loaders(
    source: &str,
    remote: &RemoteOptions,
    layers: bool,
) -> Vec<(String, annbatch::LoaderBuilder)> {
    let base = || {
        Loader::builder(source)
            .remote(remote.clone())
            .return_index(true)
            .obs_keys(["cell_type"])
    };
    let mut out = vec![
        (
            "shuffled 64/16/4 seed 3".to_string(),
            base()
                .batch_size(64)
                .chunk_size(16)
                .preload_nchunks(4)
                .shuffle(true)
                .seed(3),
        ),
        (
            "shuffled 128/32/8 seed 11".to_string(),
            base()
                .batch_size(128)
                .chunk_size(32)
                .preload_nchunks(8)
                .shuffle(true)
                .seed(11),
        ),
        (
            "in order 21/7/6".to_string(),
            base().batch_size(21).chunk_size(7).preload_nchunks(6),
        ),
    ];
    if layers {
        for (_, b) in &mut out {
            *b = std::mem::replace(b, Loader::builder(source)).layers(["counts"]);
        }
    }
    out
}

fn assert_same_epochs(local: &Path, url: &str, remote: &RemoteOptions, layers: bool) {
    let local = local.to_str().expect("utf-8 path");
    for ((name, here), (_, there)) in loaders(local, remote, layers)
        .into_iter()
        .zip(loaders(url, remote, layers))
    {
        let here = epoch(&here.build().expect("local loader"));
        let there = epoch(&there.build().expect("remote loader"));
        assert_eq!(here.len(), there.len(), "{name}: batch count");
        for (i, (a, b)) in here.iter().zip(&there).enumerate() {
            assert_eq!(a.x, b.x, "{name}: batch {i} X");
            assert_eq!(a.index, b.index, "{name}: batch {i} row ids");
            assert_eq!(a.layers, b.layers, "{name}: batch {i} layers");
            assert_eq!(
                format!("{:?}", a.obs),
                format!("{:?}", b.obs),
                "{name}: batch {i} obs"
            );
        }
    }
}

#[test]
fn s3_batches_equal_local_batches() {
    aws_env();
    let root = served(&[
        "annbatch_collection.zarr",
        "annbatch_layers_collection.zarr",
    ]);
    let server = s3_server(root.path(), SECRET_KEY);
    let options = s3_options(server.port);
    for (name, layers) in [
        ("annbatch_collection.zarr", false),
        ("annbatch_layers_collection.zarr", true),
    ] {
        let url = format!("s3://{BUCKET}/{name}");
        assert_same_epochs(&common::data(name), &url, &options, layers);
    }
}

#[test]
fn s3_collection_opens_as_the_local_one() {
    aws_env();
    let root = served(&["annbatch_collection.zarr"]);
    let server = s3_server(root.path(), SECRET_KEY);
    let options = annbatch::OpenOptions {
        remote: s3_options(server.port),
        ..annbatch::OpenOptions::default()
    };
    match DatasetCollection::open_with(format!("s3://{BUCKET}/absent.zarr"), &options) {
        Err(Error::Remote {
            kind: RemoteFailure::NotFound,
            ..
        }) => {}
        other => panic!("expected a not-found error, got {other:?}"),
    }
    let url = format!("s3://{BUCKET}/annbatch_collection.zarr");
    let there = DatasetCollection::open_with(&url, &options).expect("open s3");
    let here = DatasetCollection::open(common::data("annbatch_collection.zarr")).expect("open");
    assert_eq!(there.n_obs(), here.n_obs());
    assert_eq!(there.var_names(), here.var_names());
    assert_eq!(there.dataset_names(), here.dataset_names());
    assert_eq!(
        there.obs_column("cell_type").expect("s3 obs"),
        here.obs_column("cell_type").expect("obs")
    );
    let (mut a, mut b) = (there.new_batch(), here.new_batch());
    let rows = [3..40, 200..260, 690..700];
    there.read_rows(&rows, &mut a).expect("s3 rows");
    here.read_rows(&rows, &mut b).expect("rows");
    assert_eq!(a, b);
    let traffic = there.remote_traffic().expect("traffic");
    assert!(traffic.requests > 0 && traffic.bytes > 0, "{traffic:?}");
    assert_eq!(here.remote_traffic(), None);
}

#[test]
fn http_batches_equal_local_batches() {
    let root = served(&["annbatch_collection.zarr"]);
    let server = http_server(&root.path().join(BUCKET));
    let url = format!("http://127.0.0.1:{}/annbatch_collection.zarr", server.port);
    assert_same_epochs(
        &common::data("annbatch_collection.zarr"),
        &url,
        &RemoteOptions::default(),
        false,
    );
}

#[test]
fn a_missing_chunk_is_an_error_not_zeros() {
    aws_env();
    let root = served(&["annbatch_collection.zarr"]);
    let shard = root
        .path()
        .join(BUCKET)
        .join("annbatch_collection.zarr/dataset_1/X/data/c/0");
    std::fs::remove_file(&shard).expect("remove a shard");
    let server = s3_server(root.path(), SECRET_KEY);
    let url = format!("s3://{BUCKET}/annbatch_collection.zarr");
    let loader = Loader::builder(&url)
        .remote(s3_options(server.port))
        .batch_size(64)
        .chunk_size(16)
        .preload_nchunks(4)
        .build()
        .expect("the collection opens: only a data shard is gone");
    let err = loader
        .host_epoch(0)
        .expect("epoch")
        .find_map(Result::err)
        .expect("reading rows of the missing shard fails");
    match err {
        Error::Remote { kind, url, .. } => {
            assert_eq!(kind, RemoteFailure::NotFound);
            assert!(url.ends_with("dataset_1/X/data/c/0"), "{url}");
        }
        other => panic!("expected a remote not-found error, got {other:?}"),
    }
}

#[test]
fn wrong_credentials_say_so() {
    aws_env();
    let root = served(&["annbatch_collection.zarr"]);
    let server = s3_server(root.path(), "another-secret");
    let url = format!("s3://{BUCKET}/annbatch_collection.zarr");
    let options = annbatch::OpenOptions {
        remote: s3_options(server.port),
        ..annbatch::OpenOptions::default()
    };
    let err = DatasetCollection::open_with(&url, &options).expect_err("a wrong secret");
    match &err {
        Error::Remote { kind, .. } => assert!(
            matches!(
                kind,
                RemoteFailure::PermissionDenied | RemoteFailure::Unauthenticated
            ),
            "{err}"
        ),
        other => panic!("expected a credentials error, got {other:?}"),
    }
    assert!(err.to_string().contains("credentials"), "{err}");
}

/// Short limits, so that a dead server fails fast.
fn impatient(port: u16) -> RemoteOptions {
    RemoteOptions {
        timeout: Duration::from_secs(2),
        connect_timeout: Duration::from_secs(1),
        retries: 2,
        retry_timeout: Duration::from_secs(3),
        ..s3_options(port)
    }
}

#[test]
fn a_dead_or_silent_server_is_an_error_within_the_timeout() {
    aws_env();
    let url = format!("s3://{BUCKET}/annbatch_collection.zarr");
    // Nothing listens on this port.
    let dead = free_port();
    // This one accepts connections and never answers.
    let silent = TcpListener::bind("127.0.0.1:0").expect("bind");
    let silent_port = silent.local_addr().expect("addr").port();
    let held = Arc::new(std::sync::Mutex::new(Vec::new()));
    let keep = held.clone();
    std::thread::spawn(move || {
        for stream in silent.incoming().flatten() {
            keep.lock().expect("lock").push(stream);
        }
    });
    for port in [dead, silent_port] {
        let options = annbatch::OpenOptions {
            remote: impatient(port),
            ..annbatch::OpenOptions::default()
        };
        let started = Instant::now();
        let err = DatasetCollection::open_with(&url, &options).expect_err("no server");
        let took = started.elapsed();
        assert!(took < Duration::from_secs(20), "{port}: took {took:?}");
        match err {
            Error::Remote { kind, .. } => assert_eq!(kind, RemoteFailure::Unreachable, "{port}"),
            other => panic!("{port}: expected unreachable, got {other:?}"),
        }
    }
}

/// A TCP proxy in front of `backend`: refuses every `fail_every`-th connection with a 503
/// (0: none), delays each new connection by `delay`, and records the most connections open at
/// once.
struct Proxy {
    port: u16,
    most_open: Arc<AtomicUsize>,
    refused: Arc<AtomicUsize>,
}

fn proxy(backend: u16, fail_every: usize, delay: Duration) -> Proxy {
    proxy_failing(
        backend,
        move |n| fail_every > 0 && n % fail_every == 0,
        delay,
    )
}

/// A proxy to `backend` that answers connection `n` (from 0) with a 503 where `fails(n)`.
fn proxy_failing(
    backend: u16,
    fails: impl Fn(usize) -> bool + Send + Sync + 'static,
    delay: Duration,
) -> Proxy {
    let fails = Arc::new(fails);
    let listener = TcpListener::bind("127.0.0.1:0").expect("bind");
    let port = listener.local_addr().expect("addr").port();
    let most_open = Arc::new(AtomicUsize::new(0));
    let refused = Arc::new(AtomicUsize::new(0));
    let (most, no) = (most_open.clone(), refused.clone());
    let open = Arc::new(AtomicUsize::new(0));
    std::thread::spawn(move || {
        for (n, client) in listener.incoming().flatten().enumerate() {
            let (open, most, no) = (open.clone(), most.clone(), no.clone());
            let fails = fails.clone();
            std::thread::spawn(move || {
                let now = open.fetch_add(1, Ordering::SeqCst) + 1;
                most.fetch_max(now, Ordering::SeqCst);
                if fails(n) {
                    no.fetch_add(1, Ordering::SeqCst);
                    let mut client = client;
                    let mut head = [0u8; 1024];
                    let _ = client.read(&mut head);
                    let _ = client.write_all(
                        b"HTTP/1.1 503 Service Unavailable\r\nContent-Length: 0\r\n\
                          Connection: close\r\n\r\n",
                    );
                } else {
                    std::thread::sleep(delay);
                    if let Ok(server) = TcpStream::connect(("127.0.0.1", backend)) {
                        pipe(client, server);
                    }
                }
                open.fetch_sub(1, Ordering::SeqCst);
            });
        }
    });
    Proxy {
        port,
        most_open,
        refused,
    }
}

/// Copies both ways between `a` and `b` until either side closes.
fn pipe(a: TcpStream, b: TcpStream) {
    let (mut a_read, mut b_write) = (a.try_clone().expect("clone"), b.try_clone().expect("clone"));
    let forward = std::thread::spawn(move || {
        let _ = std::io::copy(&mut a_read, &mut b_write);
        let _ = b_write.shutdown(std::net::Shutdown::Write);
    });
    let (mut b_read, mut a_write) = (b, a);
    let _ = std::io::copy(&mut b_read, &mut a_write);
    let _ = a_write.shutdown(std::net::Shutdown::Write);
    let _ = forward.join();
}

#[test]
fn transient_server_errors_are_retried() {
    aws_env();
    let root = served(&["annbatch_collection.zarr"]);
    let server = s3_server(root.path(), SECRET_KEY);
    let flaky = proxy(server.port, 3, Duration::ZERO);
    let url = format!("s3://{BUCKET}/annbatch_collection.zarr");
    assert_same_epochs(
        &common::data("annbatch_collection.zarr"),
        &url,
        &s3_options(flaky.port),
        false,
    );
    assert!(
        flaky.refused.load(Ordering::SeqCst) > 0,
        "nothing was refused"
    );
}

#[test]
fn read_ahead_keeps_many_requests_in_flight() {
    aws_env();
    // Small inner chunks, rows read one at a time at random: hundreds of separate ranges per
    // fetch.
    let root = tempfile::tempdir().expect("tempdir");
    let spec = annbatch::demo::SyntheticSpec {
        n_obs: 20_000,
        n_var: 100,
        mean_nnz: 10,
        n_classes: 2,
        dataset_size: 20_000,
        seed: 5,
        layout: annbatch::write::Layout {
            chunk_rows: 16,
            shard_rows: 2048,
        },
    };
    annbatch::demo::write_collection(&root.path().join(BUCKET).join("many.zarr"), &spec)
        .expect("write");
    let server = s3_server(root.path(), SECRET_KEY);
    // Each new connection waits 30 ms: requests pile up unless many are sent at once.
    let slow = proxy(server.port, 0, Duration::from_millis(30));
    let url = format!("s3://{BUCKET}/many.zarr");
    let remote = RemoteOptions {
        concurrency: 64,
        coalesce_gap: 0,
        ..s3_options(slow.port)
    };
    let loader = Loader::builder(&url)
        .remote(remote)
        .batch_size(256)
        .chunk_size(1)
        .preload_nchunks(256)
        .shuffle(true)
        .num_threads(1)
        .build()
        .expect("loader");
    let rows: usize = loader
        .host_epoch(0)
        .expect("epoch")
        .take(6)
        .map(|b| b.expect("batch").x.n_rows())
        .sum();
    assert_eq!(rows, 6 * 256);
    let most = slow.most_open.load(Ordering::SeqCst);
    // One decode thread alone would keep one or two requests open.
    assert!(most >= 48, "at most {most} requests were in flight");
    // 64 read-ahead GETs, plus connections opened for metadata, closing, or opened by a GET
    // that started before the connection of one just finished was back in the client's pool
    // (73 seen). Without the limit it would be the fetch's hundreds of ranges.
    assert!(
        most <= 64 + 32,
        "{most} connections open, well over the limit of 64"
    );
}

#[test]
fn a_url_without_the_feature_or_with_an_unknown_scheme_is_a_typed_error() {
    let err = DatasetCollection::open("gs://bucket/c.zarr").expect_err("gs");
    assert!(
        matches!(
            err,
            Error::Remote {
                kind: RemoteFailure::BadUrl,
                ..
            }
        ),
        "{err:?}"
    );
}

#[test]
fn the_command_line_tool_reads_and_writes_s3_urls() {
    aws_env();
    let root = served(&["annbatch_collection.zarr"]);
    let server = s3_server(root.path(), SECRET_KEY);
    let url = format!("s3://{BUCKET}/annbatch_collection.zarr");
    let input = common::data("pbmc68k_raw_csr.v3.zarr");
    let input = input.to_str().expect("utf-8");
    let converted = format!("s3://{BUCKET}/converted.zarr");
    let staging = tempfile::tempdir().expect("tempdir");
    let staging = staging.path().to_str().expect("utf-8");
    for args in [
        vec!["inspect", url.as_str()],
        vec![
            "convert",
            input,
            "-q",
            "-o",
            &converted,
            "--staging-dir",
            staging,
        ],
        vec!["inspect", converted.as_str()],
        vec![
            "read-bench",
            url.as_str(),
            "--repeats",
            "1",
            "--chunk-size",
            "16",
        ],
    ] {
        let out = Command::new(env!("CARGO_BIN_EXE_annbatch"))
            .args(&args)
            .env(
                "ANNBATCH_REMOTE_ENDPOINT",
                format!("http://127.0.0.1:{}", server.port),
            )
            .output()
            .expect("run annbatch");
        let text = String::from_utf8_lossy(&out.stdout).to_string()
            + &String::from_utf8_lossy(&out.stderr);
        assert!(out.status.success(), "{args:?}: {text}");
        if args[0] == "inspect" {
            assert!(text.contains("n_obs 700"), "{text}");
        }
        if args[0] == "convert" {
            assert!(text.contains("uploaded"), "{text}");
        }
    }
}

#[cfg(feature = "capi")]
#[test]
fn the_c_abi_opens_s3_urls() {
    use annbatch::capi::*;
    aws_env();
    let root = served(&["annbatch_collection.zarr"]);
    let port = *ENV_PORT.get().expect("port");
    let _server = s3_server_on(port, root.path(), SECRET_KEY);
    let url =
        std::ffi::CString::new(format!("s3://{BUCKET}/annbatch_collection.zarr")).expect("url");
    let options = AnnbatchLoaderOptions {
        batch_size: 64,
        chunk_size: 16,
        preload_nchunks: 4,
        ..annbatch_loader_options_default()
    };
    let mut loader = std::ptr::null_mut();
    let (mut n_obs, mut len) = (0, 0);
    // SAFETY: a valid URL, options and out pointers; the loader is freed once.
    unsafe {
        let status = annbatch_loader_open(url.as_ptr(), &options, &mut loader);
        let error = std::ffi::CStr::from_ptr(annbatch_last_error()).to_string_lossy();
        assert_eq!(status, AnnbatchStatus::Ok, "{error}");
        assert_eq!(
            annbatch_loader_n_obs(loader, &mut n_obs),
            AnnbatchStatus::Ok
        );
        assert_eq!(annbatch_loader_len(loader, &mut len), AnnbatchStatus::Ok);
        assert_eq!(annbatch_loader_free(loader), AnnbatchStatus::Ok);
    }
    assert_eq!((n_obs, len), (700, 11));
}

/// Every file under `dir`, by its path relative to `dir`.
fn files_under(dir: &Path) -> std::collections::BTreeMap<String, Vec<u8>> {
    fn walk(root: &Path, dir: &Path, out: &mut std::collections::BTreeMap<String, Vec<u8>>) {
        for entry in std::fs::read_dir(dir).expect("read dir") {
            let path = entry.expect("entry").path();
            if path.is_dir() {
                walk(root, &path, out);
            } else {
                let key = path.strip_prefix(root).expect("under root");
                let key = key.to_str().expect("utf-8").to_string();
                out.insert(key, std::fs::read(&path).expect("read"));
            }
        }
    }
    let mut out = std::collections::BTreeMap::new();
    walk(dir, dir, &mut out);
    out
}

/// A zarr AnnData input of 6,000 cells × 20,000 genes (~9 M non-zeros): its uncompressed data
/// shard is ~34 MiB, so uploading it takes a multipart upload.
fn large_input(dir: &Path) -> PathBuf {
    let spec = annbatch::demo::SyntheticSpec {
        n_obs: 6_000,
        dataset_size: 6_000,
        ..annbatch::demo::SyntheticSpec::default()
    };
    let collection = dir.join("input.zarr");
    annbatch::demo::write_collection(&collection, &spec).expect("input");
    collection.join("dataset_0")
}

/// s3s-fs serving an empty bucket, with the server's secret `secret`.
fn empty_bucket(secret: &str) -> (tempfile::TempDir, Server) {
    aws_env();
    let served = tempfile::tempdir().expect("tempdir");
    std::fs::create_dir_all(served.path().join(BUCKET)).expect("bucket");
    let server = s3_server(served.path(), secret);
    (served, server)
}

#[test]
fn a_conversion_into_s3_is_the_local_conversion_uploaded() {
    let (served, server) = empty_bucket(SECRET_KEY);
    let work = tempfile::tempdir().expect("tempdir");
    let input = large_input(work.path());
    let staging = work.path().join("staging");
    let options = annbatch::convert::ConvertOptions {
        seed: Some(5),
        shard_size: annbatch::convert::Size::Rows(6_000),
        quiet: true,
        remote: s3_options(server.port),
        staging_dir: Some(staging.clone()),
        ..annbatch::convert::ConvertOptions::default()
    };
    let url = format!("s3://{BUCKET}/converted.zarr");
    let there = annbatch::convert::add_adatas(&url, &[&input], &options).expect("into s3");
    let local = work.path().join("local.zarr");
    let here = annbatch::convert::add_adatas(&local, &[&input], &options).expect("locally");
    assert_eq!((there.n_obs, there.datasets), (here.n_obs, here.datasets));
    assert!(
        there.notes.iter().any(|n| n.contains("uploaded")),
        "{:?}",
        there.notes
    );
    // The objects are the local conversion's files, byte for byte (one of them multipart).
    let uploaded = files_under(&served.path().join(BUCKET).join("converted.zarr"));
    let written = files_under(&local);
    assert_eq!(
        uploaded.keys().collect::<Vec<_>>(),
        written.keys().collect::<Vec<_>>()
    );
    assert!(written.values().any(|bytes| bytes.len() > 16 << 20));
    for (key, bytes) in &written {
        assert!(uploaded[key] == *bytes, "{key} differs");
    }
    // Read back through S3, it loads as the local one; the staging copy is gone.
    assert_same_epochs(&local, &url, &options.remote, false);
    assert_eq!(std::fs::read_dir(&staging).expect("staging").count(), 0);

    // A second conversion to the same place is refused: nothing is appended in place.
    match annbatch::convert::add_adatas(&url, &[&input], &options) {
        Err(Error::OutputExists { found, .. }) => assert!(found.contains("new prefix"), "{found}"),
        other => panic!("expected OutputExists, got {other:?}"),
    }
    assert_eq!(
        files_under(&served.path().join(BUCKET).join("converted.zarr")),
        uploaded
    );

    // A staging place that cannot be a directory is an I/O error, and nothing is uploaded.
    let not_a_dir = work.path().join("a-file");
    std::fs::write(&not_a_dir, b"x").expect("write");
    let options = annbatch::convert::ConvertOptions {
        staging_dir: Some(not_a_dir),
        ..options
    };
    let url = format!("s3://{BUCKET}/elsewhere.zarr");
    match annbatch::convert::add_adatas(&url, &[&input], &options) {
        Err(Error::Io { .. }) => {}
        other => panic!("expected an I/O error, got {other:?}"),
    }
    assert!(!served.path().join(BUCKET).join("elsewhere.zarr").exists());
}

#[test]
fn an_upload_that_fails_half_way_deletes_what_it_put() {
    let (served, server) = empty_bucket(SECRET_KEY);
    // Connection 0 lists the prefix; the upload's first PUTs open the next ones, and the
    // fourth is refused. With no retries the upload fails there.
    let flaky = proxy_failing(server.port, |n| n == 3, Duration::ZERO);
    let work = tempfile::tempdir().expect("tempdir");
    let options = annbatch::convert::ConvertOptions {
        quiet: true,
        remote: RemoteOptions {
            retries: 0,
            ..s3_options(flaky.port)
        },
        staging_dir: Some(work.path().to_path_buf()),
        ..annbatch::convert::ConvertOptions::default()
    };
    let input = common::data("pbmc68k_raw_csr.v3.zarr");
    let url = format!("s3://{BUCKET}/half.zarr");
    match annbatch::convert::add_adatas(&url, &[&input], &options) {
        Err(Error::Remote { detail, .. }) => assert!(detail.contains("deleted"), "{detail}"),
        other => panic!("expected a remote error, got {other:?}"),
    }
    assert_eq!(flaky.refused.load(Ordering::SeqCst), 1);
    let left = served.path().join(BUCKET).join("half.zarr");
    assert!(
        !left.exists() || files_under(&left).is_empty(),
        "left behind: {:?}",
        files_under(&left).keys().collect::<Vec<_>>()
    );
    assert_eq!(std::fs::read_dir(work.path()).expect("staging").count(), 0);
}

#[test]
fn a_conversion_into_object_storage_fails_cleanly() {
    let (served, server) = empty_bucket("another-secret");
    let work = tempfile::tempdir().expect("tempdir");
    let input = common::data("pbmc68k_raw_csr.v3.zarr");
    let staging = work.path().join("staging");
    let options = annbatch::convert::ConvertOptions {
        quiet: true,
        remote: s3_options(server.port),
        staging_dir: Some(staging.clone()),
        ..annbatch::convert::ConvertOptions::default()
    };
    // Refused credentials: said before anything is converted.
    let url = format!("s3://{BUCKET}/c.zarr");
    match annbatch::convert::add_adatas(&url, &[&input], &options) {
        Err(e @ Error::Remote { kind, .. }) => assert!(
            matches!(
                kind,
                RemoteFailure::PermissionDenied | RemoteFailure::Unauthenticated
            ),
            "{e}"
        ),
        other => panic!("expected a credentials error, got {other:?}"),
    }
    assert!(!staging.exists() || std::fs::read_dir(&staging).expect("dir").count() == 0);
    // Plain HTTP is read-only; an unknown scheme is not a store.
    for url in ["http://127.0.0.1:9/c.zarr", "gs://bucket/c.zarr"] {
        match annbatch::convert::add_adatas(url, &[&input], &options) {
            Err(Error::Remote { kind, .. }) => assert_eq!(kind, RemoteFailure::BadUrl, "{url}"),
            other => panic!("{url}: expected a bad-URL error, got {other:?}"),
        }
    }
    assert!(std::fs::read_dir(served.path().join(BUCKET))
        .expect("bucket")
        .next()
        .is_none());
}

#[test]
fn an_s3_open_without_credentials_says_so_at_once() {
    // No credentials in the environment: no metadata-service probe (a timeout read as
    // "unreachable"), but an error naming what is missing and the ways to give it.
    let started = Instant::now();
    let out = Command::new(env!("CARGO_BIN_EXE_annbatch"))
        .env_clear()
        .env("PATH", std::env::var_os("PATH").unwrap_or_default())
        .env("HOME", std::env::var_os("HOME").unwrap_or_default())
        .env("ANNBATCH_REMOTE_ENDPOINT", "http://127.0.0.1:9")
        .args(["inspect", "s3://cells/annbatch_collection.zarr"])
        .output()
        .expect("run annbatch");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{stderr}");
    assert!(
        stderr.contains("no S3 credentials") && stderr.contains("AWS_ACCESS_KEY_ID"),
        "{stderr}"
    );
    assert!(
        started.elapsed() < Duration::from_secs(5),
        "{:?}",
        started.elapsed()
    );
}

#[test]
fn an_untrusted_https_certificate_is_named_not_unreachable() {
    let dir = tempfile::tempdir().expect("tempdir");
    let (cert, key) = (dir.path().join("cert.pem"), dir.path().join("key.pem"));
    let made = Command::new("openssl")
        .args([
            "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "1",
        ])
        .args([
            "-subj",
            "/CN=127.0.0.1",
            "-addext",
            "subjectAltName=IP:127.0.0.1",
        ])
        .arg("-keyout")
        .arg(&key)
        .arg("-out")
        .arg(&cert)
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .expect("openssl (Debian's openssl, installed by ./run)");
    assert!(made.success());
    let root = served(&["annbatch_collection.zarr"]);
    let port = free_port();
    let mut command = Command::new(tool(
        "ANNBATCH_RCLONE",
        PathBuf::from("rclone"),
        "install Debian's rclone",
    ));
    command
        .args(["serve", "http", "--addr", &format!("127.0.0.1:{port}")])
        .args(["--config", "/dev/null"])
        .arg("--cert")
        .arg(&cert)
        .arg("--key")
        .arg(&key)
        .arg(root.path().join(BUCKET));
    let _server = start(command, port, "rclone serve http (TLS)");
    let url = format!("https://127.0.0.1:{port}/annbatch_collection.zarr");
    let options = annbatch::OpenOptions {
        remote: RemoteOptions {
            retries: 0,
            ..RemoteOptions::default()
        },
        ..annbatch::OpenOptions::default()
    };
    let err = DatasetCollection::open_with(&url, &options).expect_err("untrusted");
    assert!(
        matches!(
            err,
            Error::Remote {
                kind: RemoteFailure::UntrustedCertificate,
                ..
            }
        ),
        "{err}"
    );
    assert!(err.to_string().contains("SSL_CERT_FILE"), "{err}");
}

/// A proxy to `backend` that relays each connection both ways in reads of at most `chunk`
/// bytes, calling `before` ahead of writing each one on (where a fault waits or throttles).
fn relay_proxy(backend: u16, chunk: usize, before: Arc<dyn Fn() + Send + Sync>) -> u16 {
    let listener = TcpListener::bind("127.0.0.1:0").expect("bind");
    let port = listener.local_addr().expect("addr").port();
    std::thread::spawn(move || {
        for client in listener.incoming().flatten() {
            let Ok(server) = TcpStream::connect(("127.0.0.1", backend)) else {
                continue;
            };
            for (from, to) in [
                (
                    client.try_clone().expect("clone"),
                    server.try_clone().expect("clone"),
                ),
                (server, client),
            ] {
                let before = before.clone();
                std::thread::spawn(move || {
                    let (mut from, mut to) = (from, to);
                    let mut buf = vec![0u8; chunk];
                    while let Ok(n) = from.read(&mut buf) {
                        if n == 0 {
                            break;
                        }
                        before();
                        if to.write_all(&buf[..n]).is_err() {
                            break;
                        }
                    }
                    let _ = to.shutdown(std::net::Shutdown::Write);
                });
            }
        }
    });
    port
}

/// A proxy to `backend` whose connections stop passing bytes while `frozen` is set (as a
/// server under `kill -STOP`): what was asked waits, nothing is refused.
fn freezable_proxy(backend: u16, frozen: Arc<std::sync::atomic::AtomicBool>) -> u16 {
    relay_proxy(
        backend,
        64 << 10,
        Arc::new(move || {
            while frozen.load(Ordering::SeqCst) {
                std::thread::sleep(Duration::from_millis(20));
            }
        }),
    )
}

#[test]
fn a_stalled_answer_is_tried_again_and_a_stalled_server_ends_the_epoch_in_time() {
    use std::sync::atomic::AtomicBool;
    aws_env();
    let root = served(&["annbatch_collection.zarr"]);
    let server = s3_server(root.path(), SECRET_KEY);
    let url = format!("s3://{BUCKET}/annbatch_collection.zarr");
    let frozen = Arc::new(AtomicBool::new(false));
    let port = freezable_proxy(server.port, frozen.clone());
    let open = |timeout: u64, window: u64| {
        let options = annbatch::OpenOptions {
            remote: RemoteOptions {
                timeout: Duration::from_millis(timeout),
                retry_timeout: Duration::from_millis(window),
                ..s3_options(port)
            },
            ..annbatch::OpenOptions::default()
        };
        let collection = Arc::new(DatasetCollection::open_with(&url, &options).expect("open"));
        Loader::builder_for(collection)
            .batch_size(50)
            .chunk_size(25)
            .preload_nchunks(4)
            .return_index(true)
            .build()
            .expect("loader")
    };
    let local = Loader::builder(common::data("annbatch_collection.zarr"))
        .batch_size(50)
        .chunk_size(25)
        .preload_nchunks(4)
        .return_index(true)
        .build()
        .expect("loader");
    let want = epoch(&local);
    // The server stalls for 2.5 s at the start of the epoch: the reads in flight time out
    // (1 s a try) and are tried again until it answers; the epoch is the local one.
    let loader = open(1_000, 20_000);
    frozen.store(true, Ordering::SeqCst);
    let thaw = {
        let frozen = frozen.clone();
        std::thread::spawn(move || {
            std::thread::sleep(Duration::from_millis(2_500));
            frozen.store(false, Ordering::SeqCst);
        })
    };
    assert_eq!(epoch(&loader), want);
    thaw.join().expect("thaw");
    // It stalls for good: the epoch ends in an error within about retry_timeout + timeout,
    // however many reads were in flight.
    let loader = open(1_000, 3_000);
    frozen.store(true, Ordering::SeqCst);
    let started = Instant::now();
    let got: Vec<_> = loader.host_epoch(0).expect("epoch").collect();
    let took = started.elapsed();
    frozen.store(false, Ordering::SeqCst);
    // Measured 3.3 s (the retry window; the reads after the first give up at once).
    assert!(took < Duration::from_secs(8), "took {took:?}");
    match got.last() {
        Some(Err(Error::Remote { kind, .. })) => assert_eq!(*kind, RemoteFailure::Unreachable),
        other => panic!(
            "expected an unreachable server, got {:?}",
            other.map(|r| r.is_ok())
        ),
    }
}

/// A proxy to `backend` that, on connection `n` where `cuts(n)`, passes only the first
/// `keep` bytes of the answer and then drops the connection (a body cut short).
fn cutting_proxy(
    backend: u16,
    keep: usize,
    cuts: impl Fn(usize) -> bool + Send + 'static,
) -> (u16, Arc<AtomicUsize>) {
    let listener = TcpListener::bind("127.0.0.1:0").expect("bind");
    let port = listener.local_addr().expect("addr").port();
    let cut = Arc::new(AtomicUsize::new(0));
    let counted = cut.clone();
    std::thread::spawn(move || {
        for (n, client) in listener.incoming().flatten().enumerate() {
            let Ok(server) = TcpStream::connect(("127.0.0.1", backend)) else {
                continue;
            };
            if !cuts(n) {
                std::thread::spawn(move || pipe(client, server));
                continue;
            }
            counted.fetch_add(1, Ordering::SeqCst);
            std::thread::spawn(move || {
                let (mut up_from, mut up_to) = (
                    client.try_clone().expect("clone"),
                    server.try_clone().expect("clone"),
                );
                std::thread::spawn(move || {
                    let _ = std::io::copy(&mut up_from, &mut up_to);
                });
                let (mut down_from, mut down_to) = (server, client);
                let mut left = keep;
                let mut buf = [0u8; 4096];
                while left > 0 {
                    let Ok(got) = down_from.read(&mut buf[..left.min(4096)]) else {
                        break;
                    };
                    if got == 0 || down_to.write_all(&buf[..got]).is_err() {
                        break;
                    }
                    left -= got;
                }
                let _ = down_to.shutdown(std::net::Shutdown::Both);
                let _ = down_from.shutdown(std::net::Shutdown::Both);
            });
        }
    });
    (port, cut)
}

#[test]
fn answers_cut_short_are_tried_again_never_handed_on() {
    let root = served(&["annbatch_collection.zarr"]);
    let server = http_server(&root.path().join(BUCKET));
    // Every third connection's answer stops 600 bytes in (headers and part of a body).
    let (port, cut) = cutting_proxy(server.port, 600, |n| n % 3 == 1);
    let url = format!("http://127.0.0.1:{port}/annbatch_collection.zarr");
    let options = RemoteOptions {
        timeout: Duration::from_secs(5),
        ..RemoteOptions::default()
    };
    assert_same_epochs(
        &common::data("annbatch_collection.zarr"),
        &url,
        &options,
        false,
    );
    assert!(cut.load(Ordering::SeqCst) > 0, "no answer was cut");
    // Every answer cut short: an error, in time, never a shorter object.
    let (port, _) = cutting_proxy(server.port, 600, |_| true);
    let url = format!("http://127.0.0.1:{port}/annbatch_collection.zarr");
    let started = Instant::now();
    let err = DatasetCollection::open_with(
        &url,
        &annbatch::OpenOptions {
            remote: RemoteOptions {
                retry_timeout: Duration::from_secs(3),
                ..options
            },
            ..annbatch::OpenOptions::default()
        },
    )
    .expect_err("every answer cut");
    assert!(matches!(err, Error::Remote { .. }), "{err}");
    assert!(
        started.elapsed() < Duration::from_secs(10),
        "{:?}",
        started.elapsed()
    );
}

/// A proxy to `backend` that passes at most ~`per_second` bytes a second each way per
/// connection (an upload that takes a while).
fn throttled_proxy(backend: u16, per_second: usize) -> u16 {
    relay_proxy(
        backend,
        per_second / 50,
        Arc::new(|| std::thread::sleep(Duration::from_millis(20))),
    )
}

#[test]
fn ctrl_c_during_an_upload_leaves_nothing_and_a_cut_off_upload_is_cleared_next_time() {
    let (served, server) = empty_bucket(SECRET_KEY);
    let work = tempfile::tempdir().expect("tempdir");
    let input = large_input(work.path());
    let staging = work.path().join("staging");
    std::fs::create_dir_all(&staging).expect("staging");
    let port = throttled_proxy(server.port, 1 << 20);
    let prefix = served.path().join(BUCKET).join("interrupted.zarr");
    let convert = |port: u16| {
        let mut command = Command::new(env!("CARGO_BIN_EXE_annbatch"));
        command
            .args(["convert", "--quiet"])
            .arg(&input)
            .args(["-o", &format!("s3://{BUCKET}/interrupted.zarr")])
            .arg("--staging-dir")
            .arg(&staging)
            .env(
                "ANNBATCH_REMOTE_ENDPOINT",
                format!("http://127.0.0.1:{port}"),
            )
            .stdout(Stdio::null())
            .stderr(Stdio::piped());
        command
    };
    let mut child = convert(port).spawn().expect("convert");
    // SIGINT once the upload has put its first objects.
    let deadline = Instant::now() + Duration::from_secs(60);
    while !(prefix.exists() && files_under(&prefix).len() > 2) {
        assert!(Instant::now() < deadline, "the upload did not start");
        assert!(
            child.try_wait().expect("wait").is_none(),
            "the conversion ended first"
        );
        std::thread::sleep(Duration::from_millis(20));
    }
    let killed = Command::new("kill")
        .args(["-INT", &child.id().to_string()])
        .status()
        .expect("kill");
    assert!(killed.success());
    let out = child.wait_with_output().expect("wait");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(130), "{stderr}");
    assert!(stderr.contains("interrupted while uploading"), "{stderr}");
    assert!(stderr.contains("were deleted"), "{stderr}");
    assert!(
        !prefix.exists() || files_under(&prefix).is_empty(),
        "left behind: {:?}",
        files_under(&prefix).keys().collect::<Vec<_>>()
    );
    assert_eq!(std::fs::read_dir(&staging).expect("staging").count(), 0);

    // What an upload killed outright leaves (its marker, some objects, no root zarr.json) is
    // cleared by the next conversion into the prefix; other objects are never touched.
    std::fs::create_dir_all(prefix.join("dataset_0")).expect("dir");
    std::fs::write(prefix.join(".annbatch-upload-incomplete"), b"x").expect("marker");
    std::fs::write(prefix.join("dataset_0/zarr.json"), b"{}").expect("object");
    let out = convert(server.port).output().expect("convert again");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let url = format!("s3://{BUCKET}/interrupted.zarr");
    let options = annbatch::OpenOptions {
        remote: s3_options(server.port),
        ..annbatch::OpenOptions::default()
    };
    assert_eq!(
        DatasetCollection::open_with(&url, &options)
            .expect("open")
            .n_obs(),
        6_000
    );
    assert!(!prefix.join(".annbatch-upload-incomplete").exists());
}
