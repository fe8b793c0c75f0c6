"""annbatch's side of the conversion benchmark: `DatasetCollection.add_adatas` with its
defaults on the given inputs; prints one JSON line (seconds, peak RSS).

    annbatch-reference run benches/python/annbatch_convert.py OUT.zarr IN.h5ad...
"""

import json
import resource
import shutil
import sys
import time

from annbatch import DatasetCollection

out, inputs = sys.argv[1], sys.argv[2:]
shutil.rmtree(out, ignore_errors=True)
start = time.perf_counter()
DatasetCollection(out).add_adatas(inputs)
seconds = time.perf_counter() - start
peak_kib = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
print(json.dumps({"tool": "annbatch", "seconds": round(seconds, 2),
                  "peak_rss_mb": round(peak_kib / 1024)}))
