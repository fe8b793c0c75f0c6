//! A mutation fuzzer over a small two-dataset collection, on stable Rust: each execution damages
//! the collection (metadata JSON fields, raw metadata bytes, shard-index entries with a valid
//! crc32c, chunk bytes, the raw values of uncompressed `indptr`/`indices`/`data`, and the tree
//! itself), then opens and reads it through the public API (open, every row, obs columns, one
//! loader epoch on some executions). Any panic — or a panic a worker turned into an error — is a
//! crash; an abort would end the process, and the execution number printed reproduces it.
//!
//! - `cargo test --release --test fuzz` runs the short campaign CI runs (fixed seed, a bounded
//!   number of executions, about a minute) and replays the crash corpus in `tests/data/fuzz`.
//! - The long campaign:
//!   `ANNBATCH_FUZZ_EXECS=1000000 cargo test --release --test fuzz -- --ignored --nocapture`
//!   (`ANNBATCH_FUZZ_SEED` picks the seed, `ANNBATCH_FUZZ_START` resumes at an execution).
//!
//! Memory: the fuzzer sets `ANNBATCH_MEMORY_LIMIT` to 1 GiB, so the crate refuses any claim
//! past that; the campaign reports its peak RSS (`VmHWM`) and fails above 2 GiB.

mod common;

use std::collections::BTreeMap;
use std::panic::{catch_unwind, AssertUnwindSafe};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Instant;

use annbatch::write::{attrs, Compressor, Layout, Writer};
use annbatch::{DatasetCollection, Error, Loader};
use common::{genes, write_csr, Csr};
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;
use serde_json::{json, Value};

/// The collection every execution starts from, as `relative path -> bytes`.
struct Base {
    files: BTreeMap<PathBuf, Vec<u8>>,
}

fn matrix(n: usize, n_var: usize, seed: usize) -> Csr {
    let rows: Vec<Vec<f32>> = (0..n)
        .map(|i| {
            (0..n_var)
                .map(|j| {
                    if (i * 31 + j * 17 + seed).is_multiple_of(3) {
                        (1 + (i + j) % 7) as f32
                    } else {
                        0.0
                    }
                })
                .collect()
        })
        .collect();
    Csr::from_dense(&rows)
}

/// Writes the base collection at `root`: `dataset_0` as the writer makes it (blosc, sharded),
/// `dataset_1` with uncompressed X arrays (so byte damage reaches indptr / index values).
fn write_base(root: &Path) {
    let layout = Layout {
        chunk_rows: 2,
        shard_rows: 4,
    };
    let n_var = 7;
    let (m0, m1) = (matrix(12, n_var, 0), matrix(10, n_var, 1));
    write_csr(root, "dataset_0", &m0, &genes(n_var as u64), layout);
    write_csr(root, "dataset_1", &m1, &genes(n_var as u64), layout);
    let writer = Writer::create(root).expect("writer");
    let x = root.join("dataset_1/X");
    for name in ["indptr", "indices", "data"] {
        std::fs::remove_dir_all(x.join(name)).expect("rm");
    }
    let n = m1.indptr.len() as u64;
    let nnz = m1.data.len() as u64;
    let plain = Compressor::None;
    writer
        .array(
            "dataset_1/X/indptr",
            &m1.indptr,
            &[n],
            (4, 8),
            plain,
            attrs(&[]),
        )
        .expect("indptr");
    writer
        .array(
            "dataset_1/X/indices",
            &m1.indices,
            &[nnz],
            (8, 16),
            plain,
            attrs(&[]),
        )
        .expect("indices");
    writer
        .array(
            "dataset_1/X/data",
            &m1.data,
            &[nnz],
            (8, 16),
            plain,
            attrs(&[]),
        )
        .expect("data");
    writer
        .group(
            "",
            attrs(&[
                ("encoding-type", json!("annbatch-preshuffled")),
                ("encoding-version", json!("0.1.0")),
                (
                    "annbatch-rs",
                    json!({"inventory": 1, "datasets": {"dataset_0": 12, "dataset_1": 10}}),
                ),
            ]),
        )
        .expect("root");
}

impl Base {
    fn snapshot(root: &Path) -> Self {
        fn walk(root: &Path, dir: &Path, files: &mut BTreeMap<PathBuf, Vec<u8>>) {
            for entry in std::fs::read_dir(dir).expect("read_dir") {
                let path = entry.expect("entry").path();
                if path.is_dir() {
                    walk(root, &path, files);
                } else {
                    let rel = path.strip_prefix(root).expect("inside").to_path_buf();
                    files.insert(rel, std::fs::read(&path).expect("read"));
                }
            }
        }
        let mut files = BTreeMap::new();
        walk(root, root, &mut files);
        Self { files }
    }

    fn paths(&self, pick: impl Fn(&str) -> bool) -> Vec<&PathBuf> {
        self.files
            .keys()
            .filter(|p| pick(&p.to_string_lossy()))
            .collect()
    }

    /// Puts every file under `prefix` back as it was, removing whatever is there now.
    fn restore(&self, root: &Path, prefix: &Path) -> std::io::Result<()> {
        let at = root.join(prefix);
        if let Ok(meta) = std::fs::symlink_metadata(&at) {
            if meta.is_dir() {
                std::fs::remove_dir_all(&at)?;
            } else {
                std::fs::remove_file(&at)?;
            }
        }
        for (rel, bytes) in self.files.range(prefix.to_path_buf()..) {
            if !rel.starts_with(prefix) {
                break;
            }
            let path = root.join(rel);
            if let Some(parent) = path.parent() {
                std::fs::create_dir_all(parent)?;
            }
            std::fs::write(&path, bytes)?;
        }
        Ok(())
    }

    /// Undoes one execution's damage: the dirty prefixes, latest first, or (when stacked
    /// damage gets in the way, e.g. a file written under a directory later made a loop) the
    /// whole tree.
    fn undo(&self, root: &Path, dirty: &[PathBuf]) {
        let done = dirty.iter().rev().try_for_each(|p| self.restore(root, p));
        if done.is_err() {
            let _ = std::fs::remove_dir_all(root);
            self.restore(root, Path::new("")).expect("rebuild the base");
        }
    }
}

/// Values that break assumptions: zero, negative, huge, past every integer type.
fn hostile_json(rng: &mut ChaCha8Rng) -> Value {
    match rng.random_range(0..14) {
        0 => json!(0),
        1 => json!(-1),
        2 => json!(1),
        3 => json!(1_000_000_000_000_000u64),
        4 => json!(u64::MAX),
        5 => json!(i64::MIN),
        6 => json!(1e300),
        7 => json!(2_147_483_648u64),
        8 => json!("x"),
        9 => Value::Null,
        10 => json!([]),
        11 => json!({}),
        12 => json!(true),
        _ => json!([1_000_000_000_000_000u64, 0]),
    }
}

/// Every place in a JSON document: `(path of keys / indices)`.
fn places(v: &Value, at: &mut Vec<Value>, out: &mut Vec<Vec<Value>>) {
    out.push(at.clone());
    match v {
        Value::Object(map) => {
            for (k, child) in map {
                at.push(json!(k));
                places(child, at, out);
                at.pop();
            }
        }
        Value::Array(items) => {
            for (i, child) in items.iter().enumerate() {
                at.push(json!(i));
                places(child, at, out);
                at.pop();
            }
        }
        _ => {}
    }
}

fn place_mut<'a>(v: &'a mut Value, path: &[Value]) -> Option<&'a mut Value> {
    let mut cur = v;
    for step in path {
        cur = match step {
            Value::String(k) => cur.get_mut(k.as_str())?,
            Value::Number(i) => cur.get_mut(usize::try_from(i.as_u64()?).ok()?)?,
            _ => return None,
        };
    }
    Some(cur)
}

fn mutate_json(bytes: &[u8], rng: &mut ChaCha8Rng) -> Vec<u8> {
    let Ok(mut doc) = serde_json::from_slice::<Value>(bytes) else {
        return bytes.to_vec();
    };
    let mut all = Vec::new();
    places(&doc, &mut Vec::new(), &mut all);
    let path = all[rng.random_range(0..all.len())].clone();
    if rng.random_bool(0.15) && !path.is_empty() {
        // Remove the key / element.
        let (last, parent) = path.split_last().expect("non-empty");
        if let Some(parent) = place_mut(&mut doc, parent) {
            match (parent, last) {
                (Value::Object(map), Value::String(k)) => {
                    map.remove(k);
                }
                (Value::Array(items), Value::Number(i)) => {
                    if let Some(i) = i.as_u64().and_then(|i| usize::try_from(i).ok()) {
                        if i < items.len() {
                            items.remove(i);
                        }
                    }
                }
                _ => {}
            }
        }
    } else if let Some(slot) = place_mut(&mut doc, &path) {
        *slot = hostile_json(rng);
    }
    doc.to_string().into_bytes()
}

/// Inner chunks per shard of the array whose chunk file is `chunk` (from its zarr.json).
fn inner_per_shard(base: &Base, chunk: &Path) -> Option<usize> {
    let mut dir = chunk.parent()?;
    while dir.file_name()? != "c" {
        dir = dir.parent()?;
    }
    let meta: Value =
        serde_json::from_slice(base.files.get(&dir.parent()?.join("zarr.json"))?).ok()?;
    let outer = meta["chunk_grid"]["configuration"]["chunk_shape"].as_array()?;
    let codec = &meta["codecs"][0];
    if codec["name"] != "sharding_indexed" {
        return None;
    }
    let inner = codec["configuration"]["chunk_shape"].as_array()?;
    let mut n = 1usize;
    for (o, i) in outer.iter().zip(inner) {
        n = n.checked_mul(usize::try_from(o.as_u64()? / i.as_u64()?.max(1)).ok()?)?;
    }
    Some(n)
}

fn hostile_u64(rng: &mut ChaCha8Rng, file_len: u64) -> u64 {
    match rng.random_range(0..8) {
        0 => u64::MAX,
        1 => 1_000_000_000_000_000,
        2 => file_len,
        3 => file_len.saturating_sub(1),
        4 => 0,
        5 => u64::MAX - 1, // the "empty" marker's neighbour
        6 => rng.random_range(0..=file_len),
        _ => 1 << 40,
    }
}

fn mutate_shard_index(bytes: &[u8], n_inner: usize, rng: &mut ChaCha8Rng) -> Vec<u8> {
    let index_len = n_inner * 16;
    if bytes.len() < index_len + 4 {
        return bytes.to_vec();
    }
    let mut out = bytes.to_vec();
    let start = out.len() - index_len - 4;
    let entry = rng.random_range(0..n_inner);
    let field = start + entry * 16 + 8 * usize::from(rng.random_bool(0.5));
    let value = hostile_u64(rng, bytes.len() as u64);
    out[field..field + 8].copy_from_slice(&value.to_le_bytes());
    let crc = crc32c::crc32c(&out[start..start + index_len]);
    let end = out.len();
    out[end - 4..].copy_from_slice(&crc.to_le_bytes());
    out
}

fn mutate_bytes(bytes: &[u8], rng: &mut ChaCha8Rng) -> Vec<u8> {
    let mut out = bytes.to_vec();
    match rng.random_range(0..5) {
        0 if !out.is_empty() => {
            for _ in 0..rng.random_range(1..8) {
                let i = rng.random_range(0..out.len());
                out[i] ^= 1 << rng.random_range(0..8);
            }
        }
        1 if !out.is_empty() => {
            let i = rng.random_range(0..out.len());
            let n = rng.random_range(1..=16).min(out.len() - i);
            let fill = if rng.random_bool(0.5) { 0xff } else { 0x00 };
            out[i..i + n].fill(fill);
        }
        2 => out.truncate(rng.random_range(0..=out.len())),
        3 => out.extend((0..rng.random_range(1..64)).map(|_| rng.random::<u8>())),
        _ => {
            // An aligned word of the payload set to a hostile integer (raw values of an
            // uncompressed array: indptr i64, indices u32, data f32).
            let width = if rng.random_bool(0.5) { 8 } else { 4 };
            if out.len() >= width {
                let i = rng.random_range(0..=(out.len() - width) / width) * width;
                let v: u64 = match rng.random_range(0..5) {
                    0 => u64::MAX,
                    1 => 1 << 40,
                    2 => 7,
                    3 => i32::MAX as u64,
                    _ => rng.random(),
                };
                out[i..i + width].copy_from_slice(&v.to_le_bytes()[..width]);
            }
        }
    }
    out
}

/// What one execution did to the tree: the prefixes to restore afterwards, and a description.
struct Damage {
    dirty: Vec<PathBuf>,
    what: Vec<String>,
}

/// A random file of `base` whose path passes `keep`, and its current bytes under `root`.
fn pick(
    base: &Base,
    root: &Path,
    rng: &mut ChaCha8Rng,
    keep: impl Fn(&str) -> bool,
) -> (PathBuf, Vec<u8>) {
    let candidates = base.paths(keep);
    let rel = candidates[rng.random_range(0..candidates.len())].clone();
    let current = std::fs::read(root.join(&rel)).unwrap_or_default();
    (rel, current)
}

fn damage(base: &Base, root: &Path, rng: &mut ChaCha8Rng) -> Damage {
    let mut d = Damage {
        dirty: Vec::new(),
        what: Vec::new(),
    };
    for _ in 0..rng.random_range(1..=3) {
        let kind = rng.random_range(0..100);
        let metadata = |p: &str| p.ends_with("zarr.json");
        let chunk = |p: &str| p.contains("/c/");
        let (rel, bytes): (PathBuf, Vec<u8>) = if kind < 30 {
            let (rel, current) = pick(base, root, rng, metadata);
            d.what.push(format!("json field of {}", rel.display()));
            (rel, mutate_json(&current, rng))
        } else if kind < 38 {
            let (rel, current) = pick(base, root, rng, metadata);
            d.what.push(format!("bytes of {}", rel.display()));
            (rel, mutate_bytes(&current, rng))
        } else if kind < 58 {
            let (rel, current) = pick(base, root, rng, chunk);
            match inner_per_shard(base, &rel) {
                Some(n) => {
                    d.what.push(format!("shard index of {}", rel.display()));
                    (rel, mutate_shard_index(&current, n, rng))
                }
                None => {
                    d.what.push(format!("bytes of {}", rel.display()));
                    (rel, mutate_bytes(&current, rng))
                }
            }
        } else if kind < 90 {
            let (rel, current) = pick(base, root, rng, chunk);
            d.what.push(format!("bytes of {}", rel.display()));
            (rel, mutate_bytes(&current, rng))
        } else {
            // The tree: a file or directory gone, a symlink loop, a non-UTF-8 name.
            let all: Vec<&PathBuf> = base.files.keys().collect();
            let rel = all[rng.random_range(0..all.len())].clone();
            let target = match rng.random_range(0..3) {
                0 => rel.clone(),
                1 => rel.parent().map(Path::to_path_buf).unwrap_or(rel.clone()),
                _ => rel
                    .parent()
                    .and_then(Path::parent)
                    .map(Path::to_path_buf)
                    .unwrap_or(rel.clone()),
            };
            if target.as_os_str().is_empty() {
                continue;
            }
            let at = root.join(&target);
            match rng.random_range(0..3) {
                0 => {
                    d.what.push(format!("removed {}", target.display()));
                    let _ = std::fs::remove_dir_all(&at).or_else(|_| std::fs::remove_file(&at));
                }
                1 => {
                    d.what.push(format!("symlink loop at {}", target.display()));
                    let _ = std::fs::remove_dir_all(&at).or_else(|_| std::fs::remove_file(&at));
                    let _ = std::os::unix::fs::symlink(&at, &at);
                }
                _ => {
                    use std::os::unix::ffi::OsStrExt;
                    let dir = if at.is_dir() {
                        at.clone()
                    } else {
                        at.parent().unwrap_or(root).to_path_buf()
                    };
                    let stray = dir.join(std::ffi::OsStr::from_bytes(b"dataset_\xff"));
                    d.what.push(format!("non-UTF-8 entry in {}", dir.display()));
                    let _ = std::fs::create_dir(&stray);
                    d.dirty
                        .push(stray.strip_prefix(root).unwrap_or(&stray).to_path_buf());
                }
            }
            d.dirty.push(target);
            continue;
        };
        if let Some(parent) = root.join(&rel).parent() {
            let _ = std::fs::create_dir_all(parent);
        }
        let _ = std::fs::write(root.join(&rel), bytes);
        d.dirty.push(rel);
    }
    d
}

/// Everything a user does with a collection; errors are fine, panics are not.
fn exercise(root: &Path, with_loader: bool) -> annbatch::Result<u64> {
    let c = DatasetCollection::open(root)?;
    let mut batch = c.new_batch();
    let n = c.n_obs();
    c.read_rows(&[0..n], &mut batch)?;
    c.read_rows(&[n / 2..n, 0..n / 2, 1.min(n)..2.min(n)], &mut batch)?;
    let _ = c.obs_names()?;
    for name in ["cell_type", "no_such_column"] {
        match c.obs_column(name) {
            Ok(_) | Err(Error::UnknownObsColumn { .. }) => {}
            Err(e) => return Err(e),
        }
    }
    if with_loader {
        let loader = Loader::builder_for(Arc::new(c))
            .batch_size(4)
            .chunk_size(2)
            .preload_nchunks(2)
            .shuffle(true)
            .obs_keys(["cell_type"])
            .num_threads(1)
            .build()?;
        for b in loader.host_epoch(0)? {
            b?;
        }
    }
    Ok(n)
}

thread_local! {
    static IN_TARGET: std::cell::Cell<bool> = const { std::cell::Cell::new(false) };
}

/// The outcome of one execution: `Ok(read cleanly)`, or `Err(message)` for a crash.
fn run_one(root: &Path, with_loader: bool) -> Result<bool, String> {
    IN_TARGET.with(|t| t.set(true));
    let outcome = catch_unwind(AssertUnwindSafe(|| exercise(root, with_loader)));
    IN_TARGET.with(|t| t.set(false));
    match outcome {
        Err(payload) => Err(payload
            .downcast_ref::<String>()
            .cloned()
            .or_else(|| payload.downcast_ref::<&str>().map(|s| s.to_string()))
            .unwrap_or_else(|| "panic".into())),
        // A worker's panic, caught and reported as an error, is still a crash.
        Ok(Err(e @ (Error::WorkerPanic { .. } | Error::Internal(_)))) => Err(e.to_string()),
        Ok(result) => Ok(result.is_ok()),
    }
}

fn peak_rss_bytes() -> u64 {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| {
            let line = s.lines().find(|l| l.starts_with("VmHWM:"))?;
            line.split_whitespace().nth(1)?.parse::<u64>().ok()
        })
        .map_or(0, |kib| kib * 1024)
}

struct Report {
    execs: u64,
    errors: u64,
    crashes: Vec<String>,
}

fn campaign(seed: u64, start: u64, execs: u64) -> Report {
    // Set before the crate first reads it: every claim past 1 GiB is refused.
    std::env::set_var("ANNBATCH_MEMORY_LIMIT", (1u64 << 30).to_string());
    let dir = tempfile::tempdir().expect("tempdir");
    let root = dir.path().join("c.zarr");
    write_base(&root);
    exercise(&root, true).expect("the base collection reads");
    let base = Base::snapshot(&root);
    // Panics inside the target are counted, not printed; any other one is the harness's own.
    let default_hook = std::panic::take_hook();
    std::panic::set_hook(Box::new(move |info| {
        if !IN_TARGET.with(std::cell::Cell::get) {
            default_hook(info);
        }
    }));
    let crashes_dir = PathBuf::from(env!("CARGO_TARGET_TMPDIR")).join("fuzz-crashes");
    let mut report = Report {
        execs: 0,
        errors: 0,
        crashes: Vec::new(),
    };
    let started = Instant::now();
    for i in start..start + execs {
        let mut rng = ChaCha8Rng::seed_from_u64(seed);
        rng.set_stream(i);
        let d = damage(&base, &root, &mut rng);
        let with_loader = i % 4 == 0;
        match run_one(&root, with_loader) {
            Ok(true) => {}
            Ok(false) => report.errors += 1,
            Err(message) => {
                let keep = crashes_dir.join(format!("seed{seed}-exec{i}"));
                let _ = std::fs::remove_dir_all(&keep);
                let _ = copy_tree(&root, &keep);
                report.crashes.push(format!(
                    "exec {i} ({}): {message} — kept in {}",
                    d.what.join("; "),
                    keep.display()
                ));
            }
        }
        base.undo(&root, &d.dirty);
        report.execs += 1;
        if report.execs.is_multiple_of(100_000) {
            eprintln!(
                "fuzz: {} execs ({} errors, {} crashes) in {:.0?}, peak RSS {} MiB",
                report.execs,
                report.errors,
                report.crashes.len(),
                started.elapsed(),
                peak_rss_bytes() >> 20
            );
        }
    }
    let _ = std::panic::take_hook();
    eprintln!(
        "fuzz: seed {seed}, execs {}..{}: {} executions, {} typed errors, {} crashes, {:.1?}, \
         peak RSS {} MiB",
        start,
        start + execs,
        report.execs,
        report.errors,
        report.crashes.len(),
        started.elapsed(),
        peak_rss_bytes() >> 20
    );
    report
}

fn copy_tree(from: &Path, to: &Path) -> std::io::Result<()> {
    std::fs::create_dir_all(to)?;
    for entry in std::fs::read_dir(from)? {
        let entry = entry?;
        let target = to.join(entry.file_name());
        let meta = std::fs::symlink_metadata(entry.path())?;
        if meta.is_dir() {
            copy_tree(&entry.path(), &target)?;
        } else if meta.is_file() {
            std::fs::copy(entry.path(), &target)?;
        } else if meta.file_type().is_symlink() {
            std::fs::write(&target, b"(a symlink loop)")?;
        }
    }
    Ok(())
}

fn env_u64(name: &str, default: u64) -> u64 {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

fn assert_clean(report: &Report) {
    assert!(
        report.crashes.is_empty(),
        "{} crashes:\n{}",
        report.crashes.len(),
        report.crashes.join("\n")
    );
    let rss = peak_rss_bytes();
    assert!(rss < 2 << 30, "peak RSS {rss} bytes");
}

// Once per `./run test` (the feature set with tch), not again for --no-default-features.
#[cfg(feature = "tch")]
#[test]
fn short_campaign() {
    let report = campaign(20261130, 0, env_u64("ANNBATCH_FUZZ_SHORT", 6_000));
    assert_clean(&report);
    assert!(
        report.errors > report.execs / 10,
        "the mutations must reach the reader"
    );
}

#[test]
#[ignore = "the long campaign: ANNBATCH_FUZZ_EXECS=1000000 ... -- --ignored"]
fn long_campaign() {
    let report = campaign(
        env_u64("ANNBATCH_FUZZ_SEED", 1),
        env_u64("ANNBATCH_FUZZ_START", 0),
        env_u64("ANNBATCH_FUZZ_EXECS", 1_000_000),
    );
    assert_clean(&report);
}

/// Collections that once crashed the reader: each must now read or fail with a typed error.
#[test]
fn crash_corpus_replays_clean() {
    let corpus = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/data/fuzz");
    let Ok(entries) = std::fs::read_dir(&corpus) else {
        return;
    };
    for entry in entries {
        let path = entry.expect("entry").path();
        if path.is_dir() {
            let outcome = run_one(&path, true);
            assert!(outcome.is_ok(), "{}: {outcome:?}", path.display());
        }
    }
}
