//! The shard reader (inner chunks decoded in place) on every format the converter writes:
//! rows read back equal the source rows, whether a read covers whole inner chunks, parts of
//! them (blosc decodes only the blocks it needs, an uncompressed read only its bytes), or
//! crosses shards; a damaged shard index is a typed error.

use crate::common;

use std::ops::Range;
use std::path::{Path, PathBuf};

use annbatch::convert::{add_adatas, ConvertOptions, Size};
use annbatch::write::{Compressor, Layout};
use annbatch::{DatasetCollection, Error, XBatch};
use common::{genes, write_csr, Csr};

const N_OBS: usize = 300;
const N_VAR: u64 = 50;

fn source() -> Csr {
    let rows: Vec<Vec<f32>> = (0..N_OBS)
        .map(|i| {
            (0..N_VAR as usize)
                .map(|j| {
                    // Rows of 0 to ~25 values: some empty, some long.
                    if (i * 13 + j * 7) % (1 + i % 5) == 0 && (i + j) % 2 == 0 {
                        (i * 100 + j) as f32 + 0.5
                    } else {
                        0.0
                    }
                })
                .collect()
        })
        .collect();
    Csr::from_dense(&rows)
}

fn converted(dir: &Path, m: &Csr, compressor: Compressor, n_obs_per_chunk: u64) -> PathBuf {
    let input = dir.join("in.zarr");
    if !input.exists() {
        let layout = Layout {
            chunk_rows: 16,
            shard_rows: 64,
        };
        write_csr(dir, "in.zarr", m, &genes(N_VAR), layout);
    }
    let out = dir.join(format!(
        "{}-{n_obs_per_chunk}.zarr",
        compressor.name().replace(':', "_")
    ));
    let options = ConvertOptions {
        compressor,
        n_obs_per_chunk,
        shard_size: Size::Rows(96),
        shuffle: false,
        quiet: true,
        ..ConvertOptions::default()
    };
    add_adatas(&out, &[&input], &options).expect("convert");
    out
}

fn rows_of(batch: &XBatch) -> Vec<Vec<(i32, f32)>> {
    let XBatch::Csr(b) = batch else {
        panic!("expected a CSR batch")
    };
    (0..b.n_rows())
        .map(|r| {
            let (a, z) = (b.indptr[r] as usize, b.indptr[r + 1] as usize);
            b.indices[a..z]
                .iter()
                .copied()
                .zip(b.data[a..z].iter().copied())
                .collect()
        })
        .collect()
}

/// Ranges of every length from 1 to 41 at scattered starts, some crossing shards.
fn ranges() -> Vec<Range<u64>> {
    (0..60u64)
        .map(|k| {
            let start = (k * 37 + k * k * 11) % N_OBS as u64;
            let len = 1 + (k * 7) % 41;
            start..(start + len).min(N_OBS as u64)
        })
        .collect()
}

#[test]
fn every_format_reads_back_the_source_rows() {
    let dir = tempfile::tempdir().expect("tempdir");
    let m = source();
    let formats = [
        Compressor::BloscLz4,
        Compressor::BloscLz4With {
            bitshuffle: false,
            blocksize: 256,
        },
        Compressor::BloscLz4With {
            bitshuffle: true,
            blocksize: 0,
        },
        Compressor::Zstd,
        Compressor::None,
    ];
    for compressor in formats {
        for n_obs_per_chunk in [1, 3, 8] {
            let path = converted(dir.path(), &m, compressor, n_obs_per_chunk);
            let collection = DatasetCollection::open(&path).expect("open");
            let mut batch = collection.new_batch();
            // One read of many ranges (in-place, reused buffer), then each range alone.
            collection.read_rows(&ranges(), &mut batch).expect("read");
            let want: Vec<_> = ranges()
                .iter()
                .flat_map(|r| (r.start..r.end).map(|i| m.row(i as usize)))
                .collect();
            assert_eq!(rows_of(&batch), want, "{compressor} / {n_obs_per_chunk}");
            for r in ranges() {
                collection
                    .read_rows(std::slice::from_ref(&r), &mut batch)
                    .expect("read");
                let want: Vec<_> = (r.start..r.end).map(|i| m.row(i as usize)).collect();
                assert_eq!(
                    rows_of(&batch),
                    want,
                    "{compressor} / {n_obs_per_chunk} / {r:?}"
                );
            }
            // The whole matrix once more into the same (now larger) buffer.
            collection
                .read_rows(&[0..N_OBS as u64], &mut batch)
                .expect("read all");
            let all: Vec<_> = (0..N_OBS).map(|i| m.row(i)).collect();
            assert_eq!(rows_of(&batch), all, "{compressor} / {n_obs_per_chunk}");
        }
    }
}

#[test]
fn compressor_names_round_trip() {
    for name in [
        "none",
        "zstd",
        "blosc-lz4",
        "blosc-lz4:16384",
        "blosc-lz4-bitshuffle",
        "blosc-lz4-bitshuffle:4096",
    ] {
        let c = Compressor::parse(name).expect(name);
        assert_eq!(c.name(), name);
    }
    assert_eq!(
        Compressor::parse("blosc-lz4:0").expect("0"),
        Compressor::BloscLz4
    );
    for bad in ["lz4", "blosc-lz4:", "blosc-lz4:-1", "zstd:5", "none:1", ""] {
        assert!(
            matches!(Compressor::parse(bad), Err(Error::InvalidParameter { .. })),
            "{bad}"
        );
    }
}

#[test]
fn a_shard_index_failing_its_checksum_is_a_corrupt_chunk() {
    for compressor in [Compressor::BloscLz4, Compressor::None] {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = converted(dir.path(), &source(), compressor, 4);
        let shard = path.join("dataset_0/X/data/c/0");
        let mut bytes = std::fs::read(&shard).expect("read shard");
        // The last byte of the index's last entry, just before its crc32c.
        let at = bytes.len() - 5;
        bytes[at] ^= 0x5a;
        std::fs::write(&shard, &bytes).expect("write shard");
        let collection = DatasetCollection::open(&path).expect("open");
        let mut batch = collection.new_batch();
        let err = collection
            .read_rows(&[0..N_OBS as u64], &mut batch)
            .expect_err("a damaged index");
        assert!(
            matches!(err, Error::CorruptChunk { .. } | Error::Zarr { .. }),
            "{compressor}: {err:?}"
        );
    }
}

#[test]
fn direct_io_reads_the_same_rows() {
    let dir = tempfile::tempdir().expect("tempdir");
    let m = source();
    for compressor in [Compressor::BloscLz4, Compressor::None] {
        let path = converted(dir.path(), &m, compressor, 5);
        let options = annbatch::OpenOptions {
            direct_io: true,
            ..annbatch::OpenOptions::default()
        };
        let collection = match DatasetCollection::open_with(&path, &options) {
            Ok(c) => c,
            // Some file systems (tmpfs) refuse O_DIRECT: a clear I/O error, nothing to compare.
            Err(Error::Io { source, .. }) if source.raw_os_error() == Some(22) => {
                eprintln!("O_DIRECT refused by this file system: direct reads not compared");
                return;
            }
            Err(e) => panic!("open with direct I/O: {e:?}"),
        };
        let mut batch = collection.new_batch();
        for r in ranges() {
            collection
                .read_rows(std::slice::from_ref(&r), &mut batch)
                .expect("read");
            let want: Vec<_> = (r.start..r.end).map(|i| m.row(i as usize)).collect();
            assert_eq!(rows_of(&batch), want, "{compressor} / {r:?}");
        }
    }
}

/// A loader reading with `O_DIRECT` requests each fetch's bytes ahead of its turn (two
/// fetches ahead, on the read-ahead threads): its epochs equal those read through the page
/// cache, on every format, with fetches that cross inner chunks and shards.
#[test]
fn direct_io_loader_epochs_equal_page_cache_epochs() {
    let dir = tempfile::tempdir().expect("tempdir");
    let m = source();
    for (compressor, per_chunk) in [
        (Compressor::BloscLz4, 5),
        (Compressor::None, 5),
        (Compressor::None, 32),
        (Compressor::Zstd, 16),
    ] {
        let path = converted(dir.path(), &m, compressor, per_chunk);
        let epochs = |direct: bool| -> Option<Vec<annbatch::HostBatch>> {
            let loader = match annbatch::Loader::builder(&path)
                .direct_io(direct)
                .batch_size(14)
                .chunk_size(7)
                .preload_nchunks(6)
                .shuffle(true)
                .seed(3)
                .return_index(true)
                .build()
            {
                Ok(loader) => loader,
                Err(Error::Io { source, .. }) if direct && source.raw_os_error() == Some(22) => {
                    return None;
                }
                Err(e) => panic!("loader: {e:?}"),
            };
            let mut all = Vec::new();
            for epoch in 0..2 {
                for batch in loader.host_epoch(epoch).expect("epoch") {
                    all.push(batch.expect("batch"));
                }
            }
            Some(all)
        };
        let cached = epochs(false).expect("page-cache epochs");
        let Some(direct) = epochs(true) else {
            eprintln!("O_DIRECT refused by this file system: direct epochs not compared");
            return;
        };
        assert_eq!(cached.len(), direct.len());
        for (a, b) in cached.iter().zip(&direct) {
            assert_eq!(a, b, "{compressor} @ {per_chunk}");
        }
        let rows: usize = direct.iter().map(|b| b.x.n_rows()).sum();
        assert_eq!(rows, 2 * N_OBS, "{compressor} @ {per_chunk}");
    }
}

/// A shard cut short under a loader reading with `O_DIRECT` (its read-ahead included) is a
/// typed error from the epoch: no panic, no hang, no short batch passed off as data.
#[test]
fn direct_io_loader_reports_a_shard_cut_short() {
    let dir = tempfile::tempdir().expect("tempdir");
    let m = source();
    let path = converted(dir.path(), &m, Compressor::BloscLz4, 5);
    let loader = match annbatch::Loader::builder(&path)
        .direct_io(true)
        .batch_size(14)
        .chunk_size(7)
        .preload_nchunks(6)
        .shuffle(true)
        .seed(5)
        .build()
    {
        Ok(loader) => loader,
        Err(Error::Io { source, .. }) if source.raw_os_error() == Some(22) => {
            eprintln!("O_DIRECT refused by this file system: nothing to check");
            return;
        }
        Err(e) => panic!("loader: {e:?}"),
    };
    let shards = path.join("dataset_0/X/data/c");
    let shard = std::fs::read_dir(&shards)
        .expect("shards")
        .map(|e| e.expect("entry").path())
        .next()
        .expect("a shard");
    let len = std::fs::metadata(&shard).expect("meta").len();
    std::fs::OpenOptions::new()
        .write(true)
        .open(&shard)
        .expect("open")
        .set_len(len / 2)
        .expect("truncate");
    let results: Vec<_> = loader.host_epoch(0).expect("epoch").collect();
    let err = results
        .iter()
        .find_map(|r| r.as_ref().err())
        .expect("the cut shard is reported");
    assert!(
        matches!(
            err,
            Error::CollectionChanged { .. } | Error::CorruptChunk { .. } | Error::Zarr { .. }
        ),
        "{err:?}"
    );
}
