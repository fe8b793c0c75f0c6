"""A PyTorch training loop over annbatch_rs: softmax regression of cell_type on log1p counts.

    python examples/train_torch.py [COLLECTION=demo_data/collection.zarr] [EPOCHS=2]

Batches come from the Rust pipeline as torch sparse CSR tensors (no copy); the model densifies
each batch (on the GPU, densify there: move the sparse batch first, it is much smaller).
"""

import sys
import time

import torch
from annbatch_rs import DatasetCollection, Loader

path = sys.argv[1] if len(sys.argv) > 1 else "demo_data/collection.zarr"
epochs = int(sys.argv[2]) if len(sys.argv) > 2 else 2
loader = Loader(to="torch", batch_size=256, chunk_size=64, preload_nchunks=16, shuffle=True, seed=0,
                obs_keys=["cell_type"], obs_as="tensors").use_collection(DatasetCollection(path))
n_classes = len(DatasetCollection(path).obs(columns=["cell_type"])["cell_type"].cat.categories)
model = torch.nn.Linear(loader.n_var, n_classes)
optimizer = torch.optim.Adam(model.parameters(), lr=1e-2)
print(f"{path}: {loader.n_obs} cells x {loader.n_var} genes, {n_classes} cell types, "
      f"{len(loader)} batches per epoch")
for epoch in range(epochs):
    loader.set_epoch(epoch)
    start, correct, seen, loss_sum = time.perf_counter(), 0, 0, 0.0
    for batch in loader:
        x = batch["X"].to_dense().log1p()
        y = batch["obs"]["cell_type"]
        logits = model(x)
        loss = torch.nn.functional.cross_entropy(logits, y)
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
        correct += int((logits.argmax(1) == y).sum())
        seen += len(y)
        loss_sum += loss.item() * len(y)
    rate = seen / (time.perf_counter() - start)
    print(f"epoch {epoch}: loss {loss_sum / seen:.4f}, train accuracy {100 * correct / seen:.1f} %,"
          f" {rate:,.0f} cells/s (loading + training)")
