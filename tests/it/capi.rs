//! The C ABI called as a C program would: statuses, messages, handle checks (double free,
//! stale handles, wrong kind, NULL), next after the end, no leaked handles, DLPack arrays
//! handed over once and outliving their batch, and the same batches as the Rust loader.
//! (`examples/cpp/train.cpp`, run by `./run test`, checks the C++ side.)
#![cfg(feature = "capi")]

use crate::common;

use std::ffi::{c_char, CStr, CString};
use std::ptr::null_mut;
use std::sync::Mutex;

use annbatch::capi::*;
use annbatch::dlpack::{DLManagedTensorVersioned, DlElement};
use annbatch::{Loader, XBatch};
use common::data;

/// The live-handle count is global: tests that check it run one at a time.
static SERIAL: Mutex<()> = Mutex::new(());

fn last_error() -> String {
    // SAFETY: the library returns a valid NUL-terminated string.
    unsafe { CStr::from_ptr(annbatch_last_error()) }
        .to_string_lossy()
        .into_owned()
}

fn collection() -> CString {
    CString::new(
        data("annbatch_collection.zarr")
            .to_string_lossy()
            .as_bytes(),
    )
    .expect("path")
}

fn options() -> AnnbatchLoaderOptions {
    AnnbatchLoaderOptions {
        batch_size: 64,
        chunk_size: 16,
        preload_nchunks: 4,
        return_index: true,
        shuffle: true,
        seed: 3,
        ..annbatch_loader_options_default()
    }
}

/// The Rust loader with the settings of [`options`].
fn rust_loader() -> Loader {
    Loader::builder(data("annbatch_collection.zarr"))
        .batch_size(64)
        .chunk_size(16)
        .preload_nchunks(4)
        .return_index(true)
        .shuffle(true)
        .seed(3)
        .build()
        .expect("rust loader")
}

fn open(options: &AnnbatchLoaderOptions) -> *mut AnnbatchLoader {
    let mut loader = null_mut();
    // SAFETY: valid path, options and out pointer.
    let status = unsafe { annbatch_loader_open(collection().as_ptr(), options, &mut loader) };
    assert_eq!(status, AnnbatchStatus::Ok, "{}", last_error());
    loader
}

/// The elements of a handed-over tensor, copied; the tensor is released.
///
/// # Safety
/// `t` is a live tensor handed over by the library, of element type `T`.
unsafe fn take<T: DlElement>(t: *mut DLManagedTensorVersioned) -> Vec<T> {
    assert!(!t.is_null());
    // SAFETY: the caller's contract: a live tensor of `T`, released once here.
    unsafe {
        let dl = &(*t).dl_tensor;
        assert_eq!(dl.dtype, T::DTYPE);
        let shape = std::slice::from_raw_parts(dl.shape, dl.ndim as usize);
        let n: i64 = shape.iter().product();
        let values = std::slice::from_raw_parts(dl.data.cast::<T>(), n as usize).to_vec();
        ((*t).deleter.expect("deleter"))(t);
        values
    }
}

/// A handed-over matrix as a host batch (its tensors released).
///
/// # Safety
/// `m` was filled by the library; its tensors are live and the caller's.
unsafe fn matrix(m: &AnnbatchMatrix) -> XBatch {
    // SAFETY: the caller's contract.
    unsafe {
        match m.format {
            AnnbatchFormat::Csr => XBatch::Csr(annbatch::CsrBatch {
                indptr: take(m.indptr),
                indices: take(m.indices),
                data: take(m.data),
                n_var: m.n_cols,
            }),
            AnnbatchFormat::Dense => {
                assert!(m.indptr.is_null() && m.indices.is_null());
                XBatch::Dense(annbatch::DenseBatch {
                    data: take(m.data),
                    row_width: m.n_cols as usize,
                })
            }
        }
    }
}

fn empty_matrix() -> AnnbatchMatrix {
    AnnbatchMatrix {
        format: AnnbatchFormat::Dense,
        n_rows: 0,
        n_cols: 0,
        indptr: null_mut(),
        indices: null_mut(),
        data: null_mut(),
    }
}

#[test]
fn epochs_match_the_rust_loader_and_free_everything() {
    let _serial = SERIAL.lock().unwrap_or_else(|p| p.into_inner());
    let live_before = annbatch_live_handles();
    let loader = open(&options());
    let mut n = 0;
    // SAFETY: a live loader and writable out pointers throughout.
    unsafe {
        assert_eq!(annbatch_loader_n_obs(loader, &mut n), AnnbatchStatus::Ok);
        assert_eq!(n, 700);
        assert_eq!(annbatch_loader_len(loader, &mut n), AnnbatchStatus::Ok);
        assert_eq!(n, 11);
    }
    let rust = rust_loader();
    let mut expected = rust.host_epoch(2).expect("epoch");
    let mut epoch = null_mut();
    // SAFETY: live handles and writable out pointers; batches are freed after their views.
    unsafe {
        assert_eq!(
            annbatch_loader_epoch(loader, 2, &mut epoch),
            AnnbatchStatus::Ok
        );
        // Freeing the loader does not stop a running epoch.
        assert_eq!(annbatch_loader_free(loader), AnnbatchStatus::Ok);
        let mut batches = 0;
        loop {
            let mut batch = null_mut();
            match annbatch_epoch_next(epoch, &mut batch) {
                AnnbatchStatus::Ok => {}
                AnnbatchStatus::End => break,
                other => panic!("{other:?}: {}", last_error()),
            }
            let want = expected.next().expect("as many batches").expect("batch");
            let (mut x, mut index) = (empty_matrix(), null_mut());
            assert_eq!(annbatch_batch_x(batch, &mut x), AnnbatchStatus::Ok);
            assert_eq!(annbatch_batch_index(batch, &mut index), AnnbatchStatus::Ok);
            assert_eq!(Some(take::<i64>(index)), want.index);
            assert_eq!(x.n_rows as usize, want.x.n_rows());
            assert_eq!(matrix(&x), want.x);
            assert_eq!(annbatch_batch_free(batch), AnnbatchStatus::Ok);
            batches += 1;
        }
        assert_eq!(batches, 11);
        assert!(expected.next().is_none());
        let mut batch = null_mut();
        assert_eq!(annbatch_epoch_next(epoch, &mut batch), AnnbatchStatus::End);
        assert!(batch.is_null());
        assert_eq!(annbatch_epoch_free(epoch), AnnbatchStatus::Ok);
    }
    assert_eq!(
        annbatch_live_handles(),
        live_before,
        "every handle was freed"
    );
}

#[test]
fn bad_arguments_and_handles_are_defined_errors() {
    let _serial = SERIAL.lock().unwrap_or_else(|p| p.into_inner());
    let live_before = annbatch_live_handles();
    let mut loader = null_mut();
    let missing = CString::new("/no/such/collection.zarr").expect("path");
    // SAFETY: every pointer is valid or deliberately NULL; handles are ours or freed ones.
    unsafe {
        assert_eq!(
            annbatch_loader_open(missing.as_ptr(), &options(), &mut loader),
            AnnbatchStatus::IoError
        );
        assert!(loader.is_null());
        assert!(
            last_error().contains("/no/such/collection.zarr"),
            "{}",
            last_error()
        );
        assert_eq!(
            annbatch_loader_open(std::ptr::null(), &options(), &mut loader),
            AnnbatchStatus::NullPointer
        );
        assert_eq!(
            annbatch_loader_open(collection().as_ptr(), &options(), null_mut()),
            AnnbatchStatus::NullPointer
        );
        for bad in [
            AnnbatchLoaderOptions {
                batch_size: 0,
                ..options()
            },
            AnnbatchLoaderOptions {
                preload_nchunks: 0,
                ..options()
            },
            AnnbatchLoaderOptions {
                rank: 2,
                world_size: 2,
                ..options()
            },
            AnnbatchLoaderOptions {
                device: -7,
                ..options()
            },
        ] {
            assert_eq!(
                annbatch_loader_open(collection().as_ptr(), &bad, &mut loader),
                AnnbatchStatus::InvalidArgument,
                "{bad:?}"
            );
            assert!(!last_error().is_empty());
        }
        let key = CString::new("no_such_column").expect("key");
        let keys: [*const c_char; 1] = [key.as_ptr()];
        let with_keys = AnnbatchLoaderOptions {
            obs_keys: keys.as_ptr(),
            n_obs_keys: 1,
            ..options()
        };
        assert_eq!(
            annbatch_loader_open(collection().as_ptr(), &with_keys, &mut loader),
            AnnbatchStatus::InvalidArgument
        );
        assert!(last_error().contains("no_such_column"), "{}", last_error());

        // Handles: wrong kind, double free, use after free, NULL.
        let loader = open(&AnnbatchLoaderOptions {
            return_index: false,
            ..options()
        });
        let mut epoch = null_mut();
        assert_eq!(
            annbatch_loader_epoch(loader, 0, &mut epoch),
            AnnbatchStatus::Ok
        );
        let mut batch = null_mut();
        assert_eq!(annbatch_epoch_next(epoch, &mut batch), AnnbatchStatus::Ok);
        let mut out = null_mut();
        assert_eq!(
            annbatch_batch_index(batch, &mut out),
            AnnbatchStatus::InvalidArgument
        );
        let cell_type = CString::new("cell_type").expect("key");
        assert_eq!(
            annbatch_batch_obs(batch, cell_type.as_ptr(), &mut out),
            AnnbatchStatus::InvalidArgument
        );
        let mut x = empty_matrix();
        assert_eq!(
            annbatch_batch_x(epoch.cast(), &mut x),
            AnnbatchStatus::InvalidHandle,
            "an epoch is not a batch"
        );
        assert_eq!(
            annbatch_epoch_free(batch.cast()),
            AnnbatchStatus::InvalidHandle
        );
        assert_eq!(annbatch_batch_free(batch), AnnbatchStatus::Ok);
        assert_eq!(annbatch_batch_free(batch), AnnbatchStatus::InvalidHandle);
        assert_eq!(
            annbatch_batch_x(batch, &mut x),
            AnnbatchStatus::InvalidHandle
        );
        assert_eq!(annbatch_batch_free(null_mut()), AnnbatchStatus::NullPointer);
        assert_eq!(
            annbatch_epoch_next(null_mut(), &mut batch),
            AnnbatchStatus::NullPointer
        );
        // Dropping an epoch mid-way stops its workers.
        assert_eq!(annbatch_epoch_free(epoch), AnnbatchStatus::Ok);
        assert_eq!(
            annbatch_epoch_next(epoch, &mut batch),
            AnnbatchStatus::InvalidHandle
        );
        assert_eq!(annbatch_loader_free(loader), AnnbatchStatus::Ok);
        assert_eq!(annbatch_loader_free(loader), AnnbatchStatus::InvalidHandle);
        let mut n = 0;
        assert_eq!(
            annbatch_loader_n_obs(loader, &mut n),
            AnnbatchStatus::InvalidHandle
        );
    }
    assert_eq!(annbatch_live_handles(), live_before);
    // SAFETY: static NUL-terminated string.
    let version = unsafe { CStr::from_ptr(annbatch_version()) };
    assert_eq!(version.to_str().ok(), Some(env!("CARGO_PKG_VERSION")));
}

#[test]
fn layers_and_obsm_are_handed_over_beside_x() {
    let _serial = SERIAL.lock().unwrap_or_else(|p| p.into_inner());
    let path = CString::new(
        data("annbatch_lossless_collection.zarr")
            .to_string_lossy()
            .as_bytes(),
    )
    .expect("path");
    let (counts, pca, umap) = (c"counts", c"X_pca", c"X_umap");
    let layers = [counts.as_ptr()];
    let obsm = [pca.as_ptr(), umap.as_ptr()];
    let options = AnnbatchLoaderOptions {
        layer_keys: layers.as_ptr(),
        n_layer_keys: 1,
        obsm_keys: obsm.as_ptr(),
        n_obsm_keys: 2,
        ..options()
    };
    let rust = Loader::builder(data("annbatch_lossless_collection.zarr"))
        .batch_size(64)
        .chunk_size(16)
        .preload_nchunks(4)
        .return_index(true)
        .shuffle(true)
        .seed(3)
        .layers(["counts"])
        .obsm(["X_pca", "X_umap"])
        .build()
        .expect("rust loader");
    let want = rust
        .host_epoch(0)
        .expect("epoch")
        .next()
        .expect("a batch")
        .expect("batch");
    let (mut loader, mut epoch, mut batch) = (null_mut(), null_mut(), null_mut());
    // SAFETY: valid strings, options and out pointers; the batch is freed after its views.
    unsafe {
        let status = annbatch_loader_open(path.as_ptr(), &options, &mut loader);
        assert_eq!(status, AnnbatchStatus::Ok, "{}", last_error());
        assert_eq!(
            annbatch_loader_epoch(loader, 0, &mut epoch),
            AnnbatchStatus::Ok
        );
        assert_eq!(annbatch_epoch_next(epoch, &mut batch), AnnbatchStatus::Ok);
        let (mut layer, mut x_pca, mut x_umap) = (empty_matrix(), empty_matrix(), empty_matrix());
        assert_eq!(
            annbatch_batch_layer(batch, counts.as_ptr(), &mut layer),
            AnnbatchStatus::Ok
        );
        assert_eq!(
            annbatch_batch_obsm(batch, pca.as_ptr(), &mut x_pca),
            AnnbatchStatus::Ok
        );
        assert_eq!(
            annbatch_batch_obsm(batch, umap.as_ptr(), &mut x_umap),
            AnnbatchStatus::Ok
        );
        assert_eq!(Some(&matrix(&layer)), want.layer("counts"));
        assert_eq!((x_pca.n_rows, x_pca.n_cols), (64, 50));
        assert_eq!(Some(&matrix(&x_pca)), want.obsm_entry("X_pca"));
        assert_eq!(Some(&matrix(&x_umap)), want.obsm_entry("X_umap"));
        // Each array once.
        assert_eq!(
            annbatch_batch_layer(batch, counts.as_ptr(), &mut layer),
            AnnbatchStatus::InvalidArgument
        );
        assert!(last_error().contains("handed over"), "{}", last_error());
        // Keys that were not requested, and a layer asked for as obsm.
        let mut out = empty_matrix();
        assert_eq!(
            annbatch_batch_obsm(batch, counts.as_ptr(), &mut out),
            AnnbatchStatus::InvalidArgument
        );
        assert!(last_error().contains("counts"), "{}", last_error());
        assert_eq!(
            annbatch_batch_layer(batch, std::ptr::null(), &mut out),
            AnnbatchStatus::NullPointer
        );
        assert_eq!(annbatch_batch_free(batch), AnnbatchStatus::Ok);
        assert_eq!(annbatch_epoch_free(epoch), AnnbatchStatus::Ok);
        // A list pointer missing for a positive count, and a key the collection lacks.
        let bad = AnnbatchLoaderOptions {
            layer_keys: std::ptr::null(),
            ..options
        };
        let mut other = null_mut();
        assert_eq!(
            annbatch_loader_open(path.as_ptr(), &bad, &mut other),
            AnnbatchStatus::NullPointer
        );
        let missing = [c"nope".as_ptr()];
        let bad = AnnbatchLoaderOptions {
            obsm_keys: missing.as_ptr(),
            n_obsm_keys: 1,
            ..options
        };
        assert_eq!(
            annbatch_loader_open(path.as_ptr(), &bad, &mut other),
            AnnbatchStatus::DataError
        );
        assert!(last_error().contains("obsm/nope"), "{}", last_error());
        assert_eq!(annbatch_loader_free(loader), AnnbatchStatus::Ok);
    }
}

#[test]
fn arrays_outlive_their_batch_epoch_and_loader() {
    let _serial = SERIAL.lock().unwrap_or_else(|p| p.into_inner());
    let loader = open(&options());
    let (mut epoch, mut batch) = (null_mut(), null_mut());
    let (mut x, mut index, mut legacy) = (empty_matrix(), null_mut(), null_mut());
    // SAFETY: live handles and writable out pointers; each array released once.
    unsafe {
        assert_eq!(
            annbatch_loader_epoch(loader, 0, &mut epoch),
            AnnbatchStatus::Ok
        );
        assert_eq!(annbatch_epoch_next(epoch, &mut batch), AnnbatchStatus::Ok);
        assert_eq!(annbatch_batch_x(batch, &mut x), AnnbatchStatus::Ok);
        assert_eq!(
            annbatch_batch_x(batch, &mut empty_matrix()),
            AnnbatchStatus::InvalidArgument,
            "X is handed over once"
        );
        assert_eq!(annbatch_batch_index(batch, &mut index), AnnbatchStatus::Ok);
        let rows = (*x.data).dl_tensor;
        assert_eq!(annbatch_batch_free(batch), AnnbatchStatus::Ok);
        assert_eq!(annbatch_epoch_free(epoch), AnnbatchStatus::Ok);
        assert_eq!(annbatch_loader_free(loader), AnnbatchStatus::Ok);
        // Everything else is gone; the arrays are the caller's.
        assert_eq!(rows.device.device_type, annbatch::dlpack::DL_CPU);
        let got = matrix(&x);
        let ids = take::<i64>(index);
        assert_eq!(got.n_rows(), ids.len());
        let want = rust_loader()
            .host_epoch(0)
            .expect("epoch")
            .next()
            .expect("a batch")
            .expect("batch");
        assert_eq!(got, want.x);
        // A legacy (pre-1.0) tensor for older consumers: same memory, one release.
        let loader = open(&options());
        assert_eq!(
            annbatch_loader_epoch(loader, 0, &mut epoch),
            AnnbatchStatus::Ok
        );
        assert_eq!(annbatch_epoch_next(epoch, &mut batch), AnnbatchStatus::Ok);
        assert_eq!(annbatch_batch_index(batch, &mut index), AnnbatchStatus::Ok);
        let data = (*index).dl_tensor.data;
        assert_eq!(
            annbatch_dlpack_legacy(index, &mut legacy),
            AnnbatchStatus::Ok
        );
        assert_eq!((*legacy).dl_tensor.data, data);
        ((*legacy).deleter.expect("deleter"))(legacy);
        assert_eq!(
            annbatch_dlpack_legacy(null_mut(), &mut legacy),
            AnnbatchStatus::NullPointer
        );
        for status in [
            annbatch_batch_free(batch),
            annbatch_epoch_free(epoch),
            annbatch_loader_free(loader),
        ] {
            assert_eq!(status, AnnbatchStatus::Ok);
        }
    }
}

#[test]
fn a_stale_handle_never_reaches_a_live_one() {
    let _serial = SERIAL.lock().unwrap_or_else(|p| p.into_inner());
    // Free and open again, many times: an allocator would hand back the same address; a stale
    // handle must still be refused and the live one left alone.
    for _ in 0..50 {
        let first = open(&options());
        // SAFETY: `first` is live; freed once here, then used stale on purpose.
        unsafe {
            assert_eq!(annbatch_loader_free(first), AnnbatchStatus::Ok);
        }
        let second = open(&options());
        assert_ne!(first, second, "a handle identity is never reused");
        let mut n = 0;
        // SAFETY: `first` is stale (refused), `second` live.
        unsafe {
            assert_eq!(annbatch_loader_free(first), AnnbatchStatus::InvalidHandle);
            assert_eq!(annbatch_loader_n_obs(second, &mut n), AnnbatchStatus::Ok);
            assert_eq!(n, 700);
            assert_eq!(annbatch_loader_free(second), AnnbatchStatus::Ok);
        }
    }
}

#[cfg(feature = "hdf5")]
#[test]
fn h5ad_files_open_as_they_are_with_their_genes_joined() {
    let _serial = SERIAL.lock().unwrap_or_else(|e| e.into_inner());
    let files: Vec<CString> = ["h5ad_direct/genes_a.h5ad", "h5ad_direct/genes_b.h5ad"]
        .iter()
        .map(|f| CString::new(data(f).to_string_lossy().as_bytes()).expect("path"))
        .collect();
    let ptrs: Vec<*const c_char> = files.iter().map(|f| f.as_ptr()).collect();
    let o = options();
    let value =
        |loader: *mut AnnbatchLoader,
         f: unsafe extern "C" fn(*const AnnbatchLoader, *mut u64) -> AnnbatchStatus| {
            let mut v = 0u64;
            // SAFETY: a live handle and a writable u64.
            assert_eq!(
                unsafe { f(loader, &mut v) },
                AnnbatchStatus::Ok,
                "{}",
                last_error()
            );
            v
        };
    let mut loader = null_mut();
    // SAFETY: two path strings, no subset, valid options, a writable out.
    let status = unsafe {
        annbatch_loader_open_files(ptrs.as_ptr(), 2, 1, std::ptr::null(), 0, &o, &mut loader)
    };
    assert_eq!(status, AnnbatchStatus::Ok, "{}", last_error());
    assert_eq!(value(loader, annbatch_loader_n_obs), 240);
    assert_eq!(value(loader, annbatch_loader_n_var), 765);
    // SAFETY: a live handle, freed once.
    assert_eq!(unsafe { annbatch_loader_free(loader) }, AnnbatchStatus::Ok);
    // Different genes without a join, a join code that does not exist, no files.
    for (n, join, want) in [(2, 0, "var_join"), (2, 9, "join 9"), (0, 1, "n_paths is 0")] {
        let mut loader = null_mut();
        // SAFETY: as above.
        let status = unsafe {
            annbatch_loader_open_files(ptrs.as_ptr(), n, join, std::ptr::null(), 0, &o, &mut loader)
        };
        assert_ne!(status, AnnbatchStatus::Ok);
        assert!(loader.is_null());
        assert!(last_error().contains(want), "{}", last_error());
    }
}
