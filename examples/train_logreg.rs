//! A tch-rs training loop over the Loader: multinomial logistic regression of the demo
//! collection's `cell_type` from log1p counts, streamed as sparse CSR batches.
//!
//! ```text
//! cargo run --release --example train_logreg -- demo_data/collection.zarr [epochs]
//! ```
//! (`./run demo` writes the collection and runs this.) The last tenth of the collection's rows
//! is held out: the Loader trains on rows `0..0.9 n` through a custom split of the sampler's
//! requests, and accuracy is measured on the rest.

use std::sync::Arc;
use std::time::Instant;

use annbatch::sampler::{LoadRequest, RandomSampler, Requests, Sampler, SequentialSampler};
use annbatch::{DatasetCollection, Loader};
use anyhow::{bail, Context, Result};
use tch::nn::{self, Module, OptimizerConfig};
use tch::{Device, Kind, Tensor};

/// Restricts a sampler to the first `n_train` rows (a plain train / test split).
struct Head<S> {
    inner: S,
    n_train: u64,
    offset: u64,
}

impl<S: Sampler> Sampler for Head<S> {
    fn batch_size(&self) -> usize {
        self.inner.batch_size()
    }
    fn validate(&self, _n_obs: u64) -> annbatch::Result<()> {
        self.inner.validate(self.n_train)
    }
    fn n_batches(&self, _n_obs: u64) -> u64 {
        self.inner.n_batches(self.n_train)
    }
    fn requests(&self, _n_obs: u64, epoch: u64) -> annbatch::Result<Requests<'_>> {
        let offset = self.offset;
        Ok(Box::new(self.inner.requests(self.n_train, epoch)?.map(
            move |r| {
                r.map(|r| LoadRequest {
                    requests: r
                        .requests
                        .into_iter()
                        .map(|x| x.start + offset..x.end + offset)
                        .collect(),
                    splits: r.splits,
                })
            },
        )))
    }
}

/// log1p of a sparse CSR batch's values.
fn log1p(x: &Tensor) -> Result<Tensor> {
    Ok(Tensor::f_sparse_csr_tensor_crow_col_value_size(
        &x.f_crow_indices()?,
        &x.f_col_indices()?,
        &x.f_values()?.f_log1p()?,
        x.size(),
        (Kind::Float, x.device()),
    )?)
}

fn main() -> Result<()> {
    let mut args = std::env::args().skip(1);
    let path = args
        .next()
        .unwrap_or_else(|| "demo_data/collection.zarr".into());
    let epochs: u64 = args.next().map(|s| s.parse()).transpose()?.unwrap_or(2);
    let collection =
        Arc::new(DatasetCollection::open(&path).with_context(|| format!("opening {path}"))?);
    let (n, n_var) = (collection.n_obs(), collection.n_var() as i64);
    let n_train = n * 9 / 10;
    let n_classes = match collection.obs_column("cell_type")? {
        annbatch::Column::Categorical { categories, .. } => categories.len() as i64,
        _ => bail!("cell_type is not categorical"),
    };
    let train = Loader::builder_for(collection.clone())
        .batch_sampler(Head {
            inner: RandomSampler::new(1024, 32, 64).seed(1),
            n_train,
            offset: 0,
        })
        .obs_keys(["cell_type"])
        .build()?;
    let test = Loader::builder_for(collection.clone())
        .batch_sampler(Head {
            inner: SequentialSampler::new(1024, 1024, 1),
            n_train: n - n_train,
            offset: n_train,
        })
        .obs_keys(["cell_type"])
        .build()?;

    let vs = nn::VarStore::new(Device::Cpu);
    let model = nn::linear(vs.root(), n_var, n_classes, Default::default());
    let mut opt = nn::Adam::default().build(&vs, 1e-2)?;
    println!("training logistic regression: {n_train} cells x {n_var} genes -> {n_classes} classes, {} batches/epoch", train.len());
    for epoch in 0..epochs {
        let t = Instant::now();
        let (mut loss_sum, mut batches, mut cells) = (0.0, 0, 0i64);
        for batch in train.epoch(epoch)? {
            let batch = batch?;
            let labels = &batch.obs[0].values;
            let logits = model.forward(&log1p(&batch.x)?);
            let loss = logits.f_log_softmax(-1, Kind::Float)?.f_nll_loss(
                labels,
                None::<Tensor>,
                tch::Reduction::Mean,
                -100,
            )?;
            opt.zero_grad();
            loss.f_backward()?;
            opt.step();
            loss_sum += loss.f_double_value(&[])?;
            batches += 1;
            cells += batch.x.size()[0];
        }
        let secs = t.elapsed().as_secs_f64();
        println!(
            "  epoch {epoch}: mean loss {:.4}, {cells} cells in {secs:.2} s ({:.0} cells/s incl. training)",
            loss_sum / f64::from(batches.max(1)),
            cells as f64 / secs
        );
    }
    // Where the time went: a training step slower than loading shows as waiting for the consumer.
    println!("  loader: {}", train.stats());
    let (mut correct, mut total) = (0i64, 0i64);
    tch::no_grad(|| -> Result<()> {
        for batch in test.epoch(0)? {
            let batch = batch?;
            let predicted = model.forward(&log1p(&batch.x)?).f_argmax(-1, false)?;
            correct += predicted
                .f_eq_tensor(&batch.obs[0].values)?
                .f_sum(Kind::Int64)?
                .f_int64_value(&[])?;
            total += batch.x.size()[0];
        }
        Ok(())
    })?;
    let accuracy = correct as f64 / total.max(1) as f64;
    println!(
        "held-out accuracy: {:.1} % on {total} cells (chance {:.1} %)",
        100.0 * accuracy,
        100.0 / n_classes as f64
    );
    if accuracy < 2.0 / n_classes as f64 {
        bail!("accuracy {accuracy:.3} is not clearly above chance");
    }
    Ok(())
}
