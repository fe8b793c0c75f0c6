//! Batches on CUDA (feature `cuda`). Without a GPU only the errors are checked; with one (the
//! GPU machine), CUDA batches must equal the CPU batches bit for bit, and a model trained while
//! loading must see every batch intact (checksums against the CPU run).
#![cfg(all(feature = "cuda", feature = "tch"))]

use annbatch::demo::{self, SyntheticSpec};
use annbatch::store::write::Layout;
use annbatch::{Batch, Error, Loader};
use tch::{Device, Kind, Tensor};

/// The GPU to test on, or `None` (with a note) on machines without one.
fn gpu() -> Option<Device> {
    if tch::Cuda::is_available() && tch::Cuda::device_count() > 0 {
        Some(Device::Cuda(0))
    } else {
        eprintln!("no CUDA device: GPU checks skipped");
        None
    }
}

fn loader(dir: &std::path::Path, device: Device, n_obs: u64) -> Loader {
    let path = dir.join("c.zarr");
    if !path.exists() {
        let spec = SyntheticSpec {
            n_obs,
            n_var: 2_000,
            mean_nnz: 150,
            n_classes: 5,
            dataset_size: n_obs / 2,
            seed: 11,
            layout: Layout {
                chunk_rows: 64,
                shard_rows: 512,
            },
        };
        demo::write_collection(&path, &spec).expect("write");
    }
    Loader::builder(&path)
        .batch_size(256)
        .chunk_size(64)
        .preload_nchunks(8)
        .shuffle(true)
        .seed(2)
        .return_index(true)
        .obs_keys(["cell_type"])
        .device(device)
        .build()
        .expect("loader")
}

fn cpu(t: &Tensor) -> Tensor {
    t.f_to_device_(Device::Cpu, t.kind(), false, false)
        .expect("to cpu")
}

/// Every array of a batch, on the CPU: crow, col, values, obs codes, index.
fn parts(b: &Batch) -> Vec<Tensor> {
    let mut out = vec![
        cpu(&b.x.f_crow_indices().expect("crow")),
        cpu(&b.x.f_col_indices().expect("col")),
        cpu(&b.x.f_values().expect("values")),
    ];
    out.extend(b.obs.iter().map(|o| cpu(&o.values)));
    out.extend(b.index.iter().map(cpu));
    out
}

/// A 64-row collection under `dir`.
fn small_collection(dir: &std::path::Path) -> std::path::PathBuf {
    let path = dir.join("c.zarr");
    let spec = SyntheticSpec {
        n_obs: 64,
        n_var: 10,
        mean_nnz: 3,
        dataset_size: 64,
        ..SyntheticSpec::default()
    };
    demo::write_collection(&path, &spec).expect("write");
    path
}

#[test]
fn cuda_absent_is_a_clear_error() {
    if gpu().is_some() {
        return;
    }
    let dir = tempfile::tempdir().expect("tempdir");
    let path = small_collection(dir.path());
    for n in [0, 7] {
        let r = Loader::builder(&path)
            .batch_size(8)
            .chunk_size(16)
            .preload_nchunks(2)
            .device(Device::Cuda(n))
            .build();
        match r {
            Err(Error::DeviceUnavailable { device, reason }) => {
                assert_eq!(device, format!("cuda:{n}"));
                assert!(
                    reason.contains("driver") || reason.contains("device"),
                    "{reason}"
                );
            }
            other => panic!("expected DeviceUnavailable, got {other:?}"),
        }
    }
}

#[test]
fn cuda_batches_equal_cpu_batches_bit_for_bit() {
    let Some(device) = gpu() else { return };
    let dir = tempfile::tempdir().expect("tempdir");
    let on_cpu: Vec<Batch> = loader(dir.path(), Device::Cpu, 4_096)
        .epoch(3)
        .expect("epoch")
        .map(|b| b.expect("batch"))
        .collect();
    let on_gpu = loader(dir.path(), device, 4_096);
    let mut n = 0;
    for (g, c) in on_gpu.epoch(3).expect("epoch").zip(&on_cpu) {
        let g = g.expect("cuda batch");
        assert_eq!(g.x.device(), device);
        assert_eq!(g.x.size(), c.x.size());
        for (a, b) in parts(&g).iter().zip(parts(c)) {
            assert_eq!(a.kind(), b.kind());
            assert!(a.equal(&b), "batch {n} differs");
        }
        n += 1;
    }
    assert_eq!(n, on_cpu.len());
}

/// Sums of a batch's column indices and values (f64, on its device), and its row count.
fn checksum(b: &Batch) -> (f64, f64, i64) {
    let sum = |t: Tensor| {
        t.f_sum(Kind::Double)
            .and_then(|s| s.f_double_value(&[]))
            .expect("sum")
    };
    (
        sum(b.x.f_col_indices().expect("col")),
        sum(b.x.f_values().expect("values")),
        b.x.size()[0],
    )
}

#[test]
fn training_while_loading_sees_every_batch_intact() {
    let Some(device) = gpu() else { return };
    let dir = tempfile::tempdir().expect("tempdir");
    let expected: Vec<(f64, f64, i64)> = (0..3)
        .flat_map(|epoch| {
            loader(dir.path(), Device::Cpu, 32_768)
                .epoch(epoch)
                .expect("epoch")
                .map(|b| checksum(&b.expect("batch")))
                .collect::<Vec<_>>()
        })
        .collect();
    let on_gpu = loader(dir.path(), device, 32_768);
    // A linear model trained on the GPU while the loader copies the next batches.
    let mut w = Tensor::f_zeros([2_000, 5], (Kind::Float, device))
        .and_then(|w| w.f_set_requires_grad(true))
        .expect("weights");
    let mut seen = 0;
    for epoch in 0..3 {
        for b in on_gpu.epoch(epoch).expect("epoch") {
            let b = b.expect("cuda batch");
            let logits = b.x.f_mm(&w).expect("mm");
            let loss = logits
                .f_cross_entropy_loss::<Tensor>(
                    &b.obs[0].values,
                    None,
                    tch::Reduction::Mean,
                    -100,
                    0.0,
                )
                .expect("loss");
            loss.backward();
            tch::no_grad(|| {
                let g = w.grad();
                let _ = w.f_sub_(&(g * 0.1)).expect("step");
            });
            let mut g = w.grad();
            let _ = g.f_zero_().expect("zero grad");
            assert_eq!(checksum(&b), expected[seen], "batch {seen}");
            seen += 1;
        }
    }
    assert_eq!(seen, expected.len());
}

#[test]
fn a_dlpack_device_other_than_the_tensors_is_refused() {
    let dir = tempfile::tempdir().expect("tempdir");
    let path = small_collection(dir.path());
    let builder = || {
        Loader::builder(&path)
            .batch_size(8)
            .chunk_size(16)
            .preload_nchunks(2)
    };
    // tch batches on the CPU, DLPack batches on cuda:0: one device decides, so refused.
    match builder().cuda(0).build() {
        Err(Error::InvalidParameter { name, .. }) => assert_eq!(name, "cuda"),
        other => panic!("expected InvalidParameter, got {other:?}"),
    }
    match builder().cuda(1).device(Device::Cuda(0)).build() {
        Err(Error::InvalidParameter { name, .. }) => assert_eq!(name, "cuda"),
        other => panic!("expected InvalidParameter, got {other:?}"),
    }
    // Agreeing: the device is checked (and absent here, or used on a GPU machine).
    let agreed = builder().cuda(0).device(Device::Cuda(0)).build();
    match (gpu(), agreed) {
        (None, Err(Error::DeviceUnavailable { .. })) | (Some(_), Ok(_)) => {}
        (_, other) => panic!("unexpected {other:?}"),
    }
}

/// DLPack batches on the GPU: X in `kDLCUDA` buffers of device 0 (never readable on the host),
/// obs codes and row ids in host memory, the same rows as the host batches; buffers released
/// by dropped batches are written again (the pool stays bounded over many epochs).
#[test]
fn dlpack_batches_on_cuda_hold_the_host_batches_rows() {
    let Some(device) = gpu() else { return };
    let dir = tempfile::tempdir().expect("tempdir");
    let host = loader(dir.path(), Device::Cpu, 4_096);
    let on_gpu = loader(dir.path(), device, 4_096);
    let mut n = 0;
    for epoch in 0..4 {
        let expected: Vec<_> = host
            .dl_epoch(epoch)
            .expect("epoch")
            .map(|b| b.expect("batch"))
            .collect();
        for (g, c) in on_gpu.dl_epoch(epoch).expect("epoch").zip(&expected) {
            let g = g.expect("cuda batch");
            let annbatch::DlMatrix::Csr {
                indptr,
                data,
                shape,
                ..
            } = &g.x
            else {
                panic!("sparse X expected");
            };
            let annbatch::DlMatrix::Csr {
                shape: host_shape, ..
            } = &c.x
            else {
                panic!("sparse X expected");
            };
            assert_eq!(
                (indptr.device().device_type, indptr.device().device_id),
                (2, 0)
            );
            assert!(data.as_slice::<f32>().is_none() && indptr.host_bytes().is_none());
            assert_eq!(shape, host_shape);
            let index = g.index.as_ref().expect("index");
            assert_eq!(
                index.as_slice::<i64>(),
                c.index.as_ref().expect("index").as_slice::<i64>()
            );
            n += 1;
        }
    }
    assert!(n > 0);
}
