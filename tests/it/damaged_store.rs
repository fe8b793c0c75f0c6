//! A damaged or changing store on disk: lengths checked before allocating, names checked
//! before zarrs lists them, missing and replaced files reported — never an abort, a panic,
//! zeros, or a mix of two versions.

use crate::common;

use std::path::{Path, PathBuf};

use annbatch::convert::{add_adatas, ConvertOptions, Size};
use annbatch::write::Layout;
use annbatch::{DatasetCollection, Error};
use common::{genes, write_csr, Csr};
use serde_json::Value;

fn matrix(n: usize) -> Csr {
    let rows: Vec<Vec<f32>> = (0..n)
        .map(|i| (0..6).map(|j| ((i * 7 + j) % 5) as f32).collect())
        .collect();
    Csr::from_dense(&rows)
}

/// A one-AnnData store of `n` cells, two rows per inner chunk, four per shard.
fn anndata(dir: &Path, name: &str, n: usize) -> PathBuf {
    let root = dir.join(name);
    write_csr(
        &root,
        "",
        &matrix(n),
        &genes(6),
        Layout {
            chunk_rows: 2,
            shard_rows: 4,
        },
    );
    root
}

/// A collection of two datasets converted from a 40-cell store.
fn collection(dir: &Path) -> PathBuf {
    let input = anndata(dir, "in.zarr", 40);
    let output = dir.join("c.zarr");
    let options = ConvertOptions {
        n_obs_per_chunk: 4,
        shard_size: Size::Rows(8),
        dataset_size: Size::Rows(20),
        shuffle_chunk_size: 4,
        seed: Some(1),
        quiet: true,
        ..ConvertOptions::default()
    };
    add_adatas(&output, &[&input], &options).expect("convert");
    output
}

fn read_everything(root: &Path) -> annbatch::Result<u64> {
    let c = DatasetCollection::open(root)?;
    let mut batch = c.new_batch();
    c.read_rows(&[0..c.n_obs()], &mut batch)?;
    Ok(c.n_obs())
}

/// Rewrites the shard index at the end of `shard` (little-endian `(offset, nbytes)` pairs and a
/// crc32c), with `edit` applied and the checksum made valid again.
fn edit_shard_index(shard: &Path, n_inner: usize, edit: impl FnOnce(&mut [[u64; 2]])) {
    let mut bytes = std::fs::read(shard).expect("read shard");
    let index_len = n_inner * 16;
    let start = bytes.len() - index_len - 4;
    let mut entries: Vec<[u64; 2]> = bytes[start..start + index_len]
        .chunks_exact(16)
        .map(|e| {
            [
                u64::from_le_bytes(e[..8].try_into().expect("8 bytes")),
                u64::from_le_bytes(e[8..].try_into().expect("8 bytes")),
            ]
        })
        .collect();
    edit(&mut entries);
    let mut index: Vec<u8> = Vec::with_capacity(index_len);
    for [offset, nbytes] in &entries {
        index.extend(offset.to_le_bytes());
        index.extend(nbytes.to_le_bytes());
    }
    let crc = crc32c::crc32c(&index);
    bytes.truncate(start);
    bytes.extend(index);
    bytes.extend(crc.to_le_bytes());
    std::fs::write(shard, bytes).expect("write shard");
}

#[test]
fn a_shard_index_claiming_petabytes_is_refused_before_allocating() {
    let dir = tempfile::tempdir().expect("tempdir");
    let root = anndata(dir.path(), "a.zarr", 8);
    for array in ["X/data", "X/indices"] {
        let root = anndata(dir.path(), &format!("{}.zarr", array.replace('/', "_")), 8);
        edit_shard_index(&root.join(array).join("c/0"), 2, |entries| {
            entries[1][1] = 1_000_000_000_000_000;
        });
        let err = read_everything(&root).expect_err("a 10^15-byte chunk cannot exist");
        let text = err.to_string();
        assert!(text.contains("past the end of the file"), "{text}");
        assert!(
            text.contains(&format!("{array}/c/0")),
            "names the shard: {text}"
        );
    }
    // An offset past the end, and an offset + length that overflows u64.
    edit_shard_index(&root.join("X/data/c/0"), 2, |entries| {
        entries[0] = [u64::MAX - 3, 16];
    });
    let err = read_everything(&root).expect_err("offset past the end");
    assert!(err.to_string().contains("past the end"), "{err}");
}

#[test]
fn a_chunk_shape_claiming_petabytes_is_refused_at_open() {
    let dir = tempfile::tempdir().expect("tempdir");
    let root = anndata(dir.path(), "a.zarr", 8);
    let meta = root.join("X/data/zarr.json");
    let mut v: Value =
        serde_json::from_str(&std::fs::read_to_string(&meta).expect("read")).expect("json");
    v["shape"] = serde_json::json!([1_000_000_000_000_000u64]);
    v["chunk_grid"]["configuration"]["chunk_shape"] = serde_json::json!([1_000_000_000_000_000u64]);
    v["codecs"][0]["configuration"]["chunk_shape"] = serde_json::json!([1_000_000_000_000_000u64]);
    std::fs::write(&meta, v.to_string()).expect("write");
    match read_everything(&root) {
        Err(Error::TooLarge { path, .. }) => assert_eq!(path, "X/data"),
        other => panic!("expected TooLarge, got {other:?}"),
    }
}

#[test]
fn a_non_utf8_entry_name_is_an_error_not_a_panic() {
    use std::os::unix::ffi::OsStrExt;
    let dir = tempfile::tempdir().expect("tempdir");
    let root = collection(dir.path());
    let stray = root.join(std::ffi::OsStr::from_bytes(b"dataset_\xff"));
    std::fs::create_dir(&stray).expect("mkdir");
    let err = DatasetCollection::open(&root).expect_err("non-UTF-8 name");
    let text = err.to_string();
    assert!(text.contains("not valid UTF-8"), "{text}");
    assert!(text.contains("dataset_"), "names the entry: {text}");
}

#[test]
fn a_deleted_shard_is_missing_data_not_zeros() {
    let dir = tempfile::tempdir().expect("tempdir");
    let root = anndata(dir.path(), "a.zarr", 8);
    std::fs::remove_file(root.join("X/data/c/1")).expect("rm shard");
    match read_everything(&root) {
        Err(Error::MissingData { path }) => assert!(path.ends_with("X/data/c/1"), "{path:?}"),
        other => panic!("expected MissingData, got {other:?}"),
    }
}

#[test]
fn a_symlink_loop_is_an_error() {
    let dir = tempfile::tempdir().expect("tempdir");
    let root = anndata(dir.path(), "a.zarr", 8);
    let shard = root.join("X/indices/c/0");
    std::fs::remove_file(&shard).expect("rm");
    std::os::unix::fs::symlink(&shard, &shard).expect("loop");
    let err = read_everything(&root).expect_err("a loop cannot be read");
    assert!(err.to_string().contains("X/indices/c/0"), "{err}");
}

#[test]
fn a_reader_stops_when_an_append_replaces_the_collection() {
    let dir = tempfile::tempdir().expect("tempdir");
    let root = collection(dir.path());
    let more = anndata(dir.path(), "more.zarr", 12);
    let reader = DatasetCollection::open(&root).expect("open");
    let mut batch = reader.new_batch();
    reader
        .read_rows(&[0..reader.n_obs()], &mut batch)
        .expect("read before the append");
    let options = ConvertOptions {
        n_obs_per_chunk: 4,
        shard_size: Size::Rows(8),
        shuffle_chunk_size: 4,
        seed: Some(2),
        quiet: true,
        ..ConvertOptions::default()
    };
    add_adatas(&root, &[&more], &options).expect("append");
    match reader.read_rows(&[0..reader.n_obs()], &mut batch) {
        Err(Error::CollectionChanged { detail, .. }) => {
            assert!(detail.contains("reopen"), "{detail}")
        }
        other => panic!("expected CollectionChanged, got {other:?}"),
    }
    // Reopened, it reads the new version whole.
    assert_eq!(read_everything(&root).expect("reopened"), 52);
}

#[test]
fn a_file_rewritten_in_place_under_a_reader_is_reported() {
    let dir = tempfile::tempdir().expect("tempdir");
    let root = anndata(dir.path(), "a.zarr", 8);
    let reader = DatasetCollection::open(&root).expect("open");
    let mut batch = reader.new_batch();
    reader.read_rows(&[0..8], &mut batch).expect("read");
    let shard = root.join("X/data/c/0");
    let mut bytes = std::fs::read(&shard).expect("read");
    bytes.extend([0u8; 3]);
    std::fs::write(&shard, bytes).expect("rewrite");
    assert!(matches!(
        reader.read_rows(&[0..8], &mut batch),
        Err(Error::CollectionChanged { .. })
    ));
}

#[test]
fn a_lost_dataset_is_an_error_not_fewer_rows() {
    let dir = tempfile::tempdir().expect("tempdir");
    let root = collection(dir.path());
    assert_eq!(read_everything(&root).expect("whole"), 40);
    // Its zarr.json lost, deleted, or a symlink loop: each reads as a damaged collection.
    let lose: [&dyn Fn(&Path); 3] = [
        &|d| std::fs::remove_file(d.join("zarr.json")).expect("rm"),
        &|d| std::fs::remove_dir_all(d).expect("rm -r"),
        &|d| {
            std::fs::remove_dir_all(d).expect("rm -r");
            std::os::unix::fs::symlink(d, d).expect("loop");
        },
    ];
    for damage in lose {
        let dir = tempfile::tempdir().expect("tempdir");
        let root = collection(dir.path());
        damage(&root.join("dataset_1"));
        match DatasetCollection::open(&root) {
            Err(Error::MissingElement { element, .. }) => {
                assert!(element.contains("dataset_1"), "{element}")
            }
            other => panic!("expected MissingElement, got {other:?}"),
        }
    }
}

#[test]
fn deleting_the_collection_during_an_epoch_ends_it_with_an_error() {
    let dir = tempfile::tempdir().expect("tempdir");
    let root = collection(dir.path());
    let loader = annbatch::Loader::builder(&root)
        .batch_size(2)
        .chunk_size(2)
        .preload_nchunks(1)
        .prefetch(1)
        .build()
        .expect("loader");
    let mut batches = loader.host_epoch(0).expect("epoch");
    batches.next().expect("a first batch").expect("read");
    std::fs::remove_dir_all(&root).expect("rm -r");
    // Batches already prefetched may still arrive; then the epoch ends in an error, not in
    // zeros and not silently short.
    let rest: Vec<_> = batches.collect();
    let err = rest
        .iter()
        .find_map(|b| b.as_ref().err())
        .expect("an error before the epoch's end");
    assert!(
        matches!(
            err,
            Error::CollectionChanged { .. } | Error::MissingData { .. }
        ),
        "{err:?}"
    );
    assert!(rest.len() < 20, "the epoch stops at the error");
}

/// Replaces `path` with a FIFO.
fn fifo(path: &Path) {
    let _ = std::fs::remove_file(path);
    let _ = std::fs::remove_dir_all(path);
    let status = std::process::Command::new("mkfifo")
        .arg(path)
        .status()
        .expect("mkfifo");
    assert!(status.success());
}

/// Runs `f` on a thread and fails the test if it does not finish within 30 s (a hang).
fn within_30s<T: Send + 'static>(f: impl FnOnce() -> T + Send + 'static) -> T {
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        let _ = tx.send(f());
    });
    rx.recv_timeout(std::time::Duration::from_secs(30))
        .expect("finished, no hang")
}

#[test]
fn a_fifo_or_directory_in_place_of_a_shard_is_an_error_not_a_hang_or_zeros() {
    let dir = tempfile::tempdir().expect("tempdir");
    for (name, make) in [
        ("fifo.zarr", fifo as fn(&Path)),
        ("dir.zarr", |p: &Path| {
            std::fs::remove_file(p).expect("rm shard");
            std::fs::create_dir(p).expect("a directory instead");
        }),
    ] {
        let root = anndata(dir.path(), name, 8);
        make(&root.join("X/data/c/1"));
        let result = within_30s({
            let root = root.clone();
            move || read_everything(&root)
        });
        match result {
            Err(e) => assert!(e.to_string().contains("X/data/c/1"), "{name}: {e}"),
            Ok(n) => panic!("{name}: read {n} rows from a damaged store"),
        }
    }
    // The collection path itself a FIFO (`annbatch inspect FIFO` opens it this way).
    let path = dir.path().join("collection.fifo");
    fifo(&path);
    let result = within_30s(move || DatasetCollection::open(&path).map(|c| c.n_obs()));
    let e = result.expect_err("refused");
    assert!(e.to_string().contains("FIFO"), "{e}");
}

#[test]
fn a_fifo_as_input_or_lock_file_is_an_error_not_a_hang() {
    let dir = tempfile::tempdir().expect("tempdir");
    let input = dir.path().join("input.h5ad");
    fifo(&input);
    let output = dir.path().join("out.zarr");
    let result = within_30s({
        let (input, output) = (input.clone(), output.clone());
        move || add_adatas(&output, &[&input], &ConvertOptions::default())
    });
    let e = result.expect_err("refused");
    assert!(e.to_string().contains("FIFO"), "{e}");
    // A FIFO where an append's lock file goes.
    let c = collection(dir.path());
    fifo(&dir.path().join(".c.zarr.annbatch-lock"));
    let extra = anndata(dir.path(), "more.zarr", 8);
    let result = within_30s(move || {
        let options = ConvertOptions {
            quiet: true,
            ..ConvertOptions::default()
        };
        add_adatas(&c, &[&extra], &options)
    });
    assert!(result.is_err(), "a FIFO lock file is refused");
}
