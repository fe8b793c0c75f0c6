"""One rank of the remote / elastic torchrun tests: streams its run of an elastic epoch from a
collection URL (an S3 server the test started) and writes the batches' row ids it saw.

    torchrun --nproc_per_node=N tests/python/elastic_worker.py URL OUT_DIR TAKE [STATE]

TAKE: batches each rank delivers before stopping (-1: the whole epoch); rank 0 then writes the
loader's state_dict to OUT_DIR/state.json. STATE: a state_dict to resume from (any world size).
"""

import json
import pathlib
import sys

import torch.distributed as dist
from annbatch_rs import Loader

dist.init_process_group("gloo")
rank, world = dist.get_rank(), dist.get_world_size()
url, out, take = sys.argv[1], pathlib.Path(sys.argv[2]), int(sys.argv[3])
loader = Loader(to="torch", batch_size=32, chunk_size=16, preload_nchunks=4, shuffle=True,
                seed=9, return_index=True, elastic=True).use_collection(url)
if len(sys.argv) > 4:
    loader.load_state_dict(json.loads(pathlib.Path(sys.argv[4]).read_text()))
batches = []
for batch in loader:
    batches.append(batch["index"].tolist())
    if len(batches) == take:
        break
if take >= 0 and rank == 0:
    (out / "state.json").write_text(json.dumps(loader.state_dict()))
(out / f"rank{rank}.json").write_text(json.dumps(batches))
dist.barrier()
dist.destroy_process_group()
