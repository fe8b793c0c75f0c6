"""One rank of the torchrun test: streams its shard and writes the row ids it saw.

    torchrun --nproc_per_node=2 tests/python/distributed_worker.py COLLECTION OUT_DIR
"""

import json
import pathlib
import sys

import torch
import torch.distributed as dist
from annbatch_rs import DatasetCollection, Loader

dist.init_process_group("gloo")
rank = dist.get_rank()
loader = Loader(to="torch", batch_size=35, chunk_size=35, preload_nchunks=2, shuffle=True, seed=4,
                return_index=True).use_collection(DatasetCollection(sys.argv[1]))
rows = [i for batch in loader for i in batch["index"].tolist()]
# Every rank has the same number of batches: a collective per batch would not deadlock.
count = torch.tensor([len(loader)])
dist.all_reduce(count, op=dist.ReduceOp.MAX)
assert int(count) == len(loader)
pathlib.Path(sys.argv[2], f"rank{rank}.json").write_text(json.dumps(rows))
dist.destroy_process_group()
