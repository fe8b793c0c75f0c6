//! The README's Rust quickstart, as a user's crate runs it: `downstream COLLECTION`.

use annbatch::Loader;

fn main() -> annbatch::Result<()> {
    let path = std::env::args()
        .nth(1)
        .unwrap_or_else(|| "demo_data/collection.zarr".into());
    let loader = Loader::builder(&path)
        .batch_size(64)
        .chunk_size(16)
        .preload_nchunks(4)
        .shuffle(true)
        .obs_keys(["cell_type"])
        .seed(0)
        .build()?;
    let (mut rows, mut batches) = (0, 0);
    for batch in loader.epoch(0)? {
        let batch = batch?;
        rows += batch.x.size()[0];
        batches += 1;
    }
    println!("{path}: {rows} rows in {batches} tch::Tensor batches");
    Ok(())
}
