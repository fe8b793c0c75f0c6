//! The C ABI called as a C program would: statuses, messages, handle checks (double free,
//! wrong kind, NULL), next after the end, no leaked handles, and the same batches as the Rust
//! loader. (`examples/cpp/train.cpp`, run by `./run test`, checks the C++ side.)
#![cfg(feature = "capi")]

mod common;

use std::ffi::{c_char, c_void, CStr, CString};
use std::mem::ManuallyDrop;
use std::ptr::null_mut;
use std::sync::Mutex;

use annbatch::capi::*;
use annbatch::Loader;
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

fn open(options: &AnnbatchLoaderOptions) -> *mut AnnbatchLoader {
    let mut loader = null_mut();
    // SAFETY: valid path, options and out pointer.
    let status = unsafe { annbatch_loader_open(collection().as_ptr(), options, &mut loader) };
    assert_eq!(status, AnnbatchStatus::Ok, "{}", last_error());
    loader
}

/// A lent `at::Tensor*` viewed as a tch tensor without taking ownership.
///
/// # Safety
/// `t` is a lent tensor pointer whose batch outlives the returned value.
unsafe fn view(t: *mut c_void) -> ManuallyDrop<tch::Tensor> {
    // SAFETY: the caller's contract; ManuallyDrop never frees what the batch owns.
    ManuallyDrop::new(unsafe { tch::Tensor::from_ptr(t.cast()) })
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
    let rust = Loader::builder(data("annbatch_collection.zarr"))
        .batch_size(64)
        .chunk_size(16)
        .preload_nchunks(4)
        .return_index(true)
        .shuffle(true)
        .seed(3)
        .build()
        .expect("rust loader");
    let mut expected = rust.epoch(2).expect("epoch");
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
            let (mut x, mut index) = (null_mut(), null_mut());
            assert_eq!(annbatch_batch_x(batch, &mut x), AnnbatchStatus::Ok);
            assert_eq!(annbatch_batch_index(batch, &mut index), AnnbatchStatus::Ok);
            let got_index = Vec::<i64>::try_from(&*view(index)).expect("index");
            let want_index =
                Vec::<i64>::try_from(want.index.as_ref().expect("index")).expect("index");
            assert_eq!(got_index, want_index);
            let got_x = view(x);
            assert_eq!(got_x.size(), want.x.size());
            let values = |t: &tch::Tensor| {
                Vec::<f32>::try_from(&t.f_values().expect("values")).expect("values")
            };
            assert_eq!(values(&got_x), values(&want.x));
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
                chunk_size: 100_000,
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
        if !tch::Cuda::is_available() {
            let cuda = AnnbatchLoaderOptions {
                device: 0,
                ..options()
            };
            assert_eq!(
                annbatch_loader_open(collection().as_ptr(), &cuda, &mut loader),
                AnnbatchStatus::DeviceError
            );
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
            AnnbatchStatus::DataError
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
        assert_eq!(
            annbatch_batch_x(epoch.cast(), &mut out),
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
            annbatch_batch_x(batch, &mut out),
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
fn layers_and_obsm_are_lent_beside_x() {
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
        .epoch(0)
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
        let (mut layer, mut x_pca, mut x_umap) = (null_mut(), null_mut(), null_mut());
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
        let dense = |t: &tch::Tensor| {
            let dense = t.f_to_dense(None, false).expect("dense");
            Vec::<f32>::try_from(dense.f_flatten(0, -1).expect("flat")).expect("values")
        };
        assert_eq!(
            dense(&view(layer)),
            dense(want.layer("counts").expect("counts"))
        );
        assert_eq!(view(x_pca).size(), [64, 50]);
        assert_eq!(
            dense(&view(x_pca)),
            dense(want.obsm_entry("X_pca").expect("pca"))
        );
        assert_eq!(
            dense(&view(x_umap)),
            dense(want.obsm_entry("X_umap").expect("umap"))
        );
        // Keys that were not requested, and a layer asked for as obsm.
        let mut out = null_mut();
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
