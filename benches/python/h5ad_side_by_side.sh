#!/usr/bin/env bash
# "Without converting": loaders on the same 100,000 cells, interleaved rounds, every epoch in a
# fresh process, min / median / max cells/s (batch 4096 / chunk 32 / preload 256):
#   rs-h5ad          annbatch_rs on the two .h5ad files as they are (reads by file offset)
#   rs-h5ad-library  the same through the HDF5 library (ANNBATCH_H5AD_LIBRARY_READS=1)
#   rs-collection    annbatch_rs on its default conversion of the files
#   scdataset        scDataset-style block sampling over anndata's backed mode
#   annbatch         annbatch 0.3.1 on its own conversion (needs the reference root)
#
#   benches/python/h5ad_side_by_side.sh [ROUNDS=3] [BATCH CHUNK PRELOAD]
#
# Inputs: make_convert_inputs.py's synthetic files (2 x 50,000 cells x 20,000 genes, ~1.5k
# non-zeros per cell, written by anndata). Never run in CI.
set -euo pipefail
cd "$(dirname "$0")/../.."
ROUNDS=${1:-3}
S=(--batch-size "${2:-4096}" --chunk-size "${3:-32}" --preload-nchunks "${4:-256}")
DATA=${PYRUST_DATA:-target/bench-data/pyrust}
REF=${ANNBATCH_REFERENCE:-../shared/tools/annbatch-reference}
PY=.venv/bin/python
mkdir -p "$DATA"
[ -f "$DATA/input_1.h5ad" ] || $PY benches/python/make_convert_inputs.py "$DATA" 2 50000
INPUTS=("$DATA/input_0.h5ad" "$DATA/input_1.h5ad")
OWN=$DATA/default.zarr
THEIRS=$DATA/annbatch.zarr
[ -d "$OWN" ] || target/release/annbatch convert "${INPUTS[@]}" -o "$OWN" --seed 0 -q
HAVE_REF=0
if [ -x "$REF" ]; then
  HAVE_REF=1
  [ -d "$THEIRS" ] || "$REF" run benches/python/annbatch_convert.py "$THEIRS" "${INPUTS[@]}"
fi
out=$(mktemp)
for round in $(seq "$ROUNDS"); do
  $PY benches/python/h5ad_loaders.py rs-h5ad "${INPUTS[@]}" "${S[@]}" --seed "$round" | tee -a "$out"
  ANNBATCH_H5AD_LIBRARY_READS=1 $PY benches/python/h5ad_loaders.py rs-h5ad "${INPUTS[@]}" "${S[@]}" --seed "$round" \
    | sed 's/"rs-h5ad"/"rs-h5ad-library"/' | tee -a "$out"
  $PY benches/python/h5ad_loaders.py rs-collection "$OWN" "${S[@]}" --seed "$round" | tee -a "$out"
  $PY benches/python/h5ad_loaders.py scdataset "${INPUTS[@]}" "${S[@]}" --seed "$round" | tee -a "$out"
  if [ "$HAVE_REF" = 1 ]; then
    "$REF" run benches/python/annbatch_loader.py "$THEIRS" "${S[@]}" --repeats 1 | tail -n1 | tee -a "$out"
  fi
done
python3 - "$out" <<'PY'
import json, statistics, sys
rows = [json.loads(l) for l in open(sys.argv[1]) if l.startswith("{")]
tools = list(dict.fromkeys(r["tool"] for r in rows))
rate = {t: sorted(r["cells_per_s"] for r in rows if r["tool"] == t) for t in tools}
first = {t: sorted(r.get("first_batch_s") or 0 for r in rows if r["tool"] == t) for t in tools}
med = {t: statistics.median(v) for t, v in rate.items()}
print("| loader | cells/s (min / median / max) | first batch, s (median) | vs rs-h5ad |")
print("|---|---|---|---|")
for t in tools:
    v = rate[t]
    print(f"| {t} | {v[0]:,.0f} / {med[t]:,.0f} / {v[-1]:,.0f} | "
          f"{statistics.median(first[t]):.2f} | {med['rs-h5ad'] / med[t]:.2f}x |")
PY
