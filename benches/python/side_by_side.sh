#!/usr/bin/env bash
# Side-by-side loader benchmark: annbatch 0.3.1, annbatch-rs's Python Loader and its Rust
# loader on the same collection and settings, interleaved in one run (this machine is shared and
# noisy), ratios to annbatch printed at the end.
#
#   benches/python/side_by_side.sh [COLLECTION]
#
# COLLECTION defaults to the >=100k-cell synthetic collection `cargo bench --bench throughput`
# writes. Needs `../shared/tools/annbatch-reference setup` once, and a release build
# (`./run setup && cargo build --release --example bench_loader`) with the wheel installed in
# .venv (`./run demo` does both). Never run in CI.
set -euo pipefail
cd "$(dirname "$0")/../.."
COLLECTION=${1:-target/bench-data/synthetic-100k.zarr}
REF=${ANNBATCH_REFERENCE:-../shared/tools/annbatch-reference}
OURS=target/release/examples/bench_loader
PY=${PYTHON:-.venv/bin/python}
[ -d "$COLLECTION" ] || { echo "no collection at $COLLECTION (run: cargo bench --bench throughput)" >&2; exit 2; }
out=$(mktemp)
for setting in "4096 32 256" "4096 512 32"; do
  set -- $setting
  for round in 1 2; do
    "$REF" run benches/python/annbatch_loader.py "$COLLECTION" --batch-size "$1" --chunk-size "$2" --preload-nchunks "$3" --repeats 3 | tail -n1 | tee -a "$out"
    "$PY" benches/python/annbatch_rs_loader.py "$COLLECTION" --batch-size "$1" --chunk-size "$2" --preload-nchunks "$3" --repeats 3 2>/dev/null | tail -n1 | tee -a "$out"
    "$OURS" "$COLLECTION" --batch-size "$1" --chunk-size "$2" --preload-nchunks "$3" --repeats 3 --json 2>/dev/null | tail -n1 | tee -a "$out"
  done
done
python3 - "$out" <<'PY'
import json, statistics, sys
rows = [json.loads(l) for l in open(sys.argv[1]) if l.startswith("{")]
def median(tool, key):
    return statistics.median(r["cells_per_s"] for r in rows if r["tool"] == tool
                             and (r["batch_size"], r["chunk_size"], r["preload_nchunks"]) == key)
for key in sorted({(r["batch_size"], r["chunk_size"], r["preload_nchunks"]) for r in rows}):
    a = median("annbatch", key)
    line = f"batch {key[0]} / chunk {key[1]} / preload {key[2]}: annbatch {a:,.0f} cells/s"
    for tool in ("annbatch-rs (python)", "annbatch-rs"):
        o = median(tool, key)
        line += f", {tool} {o:,.0f} cells/s ({o / a:.2f}x)"
    print(line)
PY
