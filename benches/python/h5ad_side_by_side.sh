#!/usr/bin/env bash
# "Without converting": loaders on the same 100,000 cells, interleaved rounds, every epoch in a
# fresh process, min / median / max cells/s (batch 4096 / chunk 32 / preload 256):
#   rs-h5ad          annbatch_rs on the two .h5ad files as they are (reads by file offset)
#   rs-h5ad-library  the same through the HDF5 library (ANNBATCH_H5AD_LIBRARY_READS=1)
#   rs-collection    annbatch_rs on its default conversion of the files
#   scdataset        scDataset-style block sampling over anndata's backed mode
#   annbatch         annbatch 0.3.1 on its own conversion (needs the reference root)
#
#   benches/python/h5ad_side_by_side.sh [ROUNDS=3] [synthetic|real] [BATCH CHUNK PRELOAD]
#
# Inputs, as the README's format table: "synthetic" (make_convert_inputs.py: 2 x 50,000 cells x
# 20,000 genes, ~1.5k non-zeros per cell) or "real" (make_bootstrap_input.py: 40,000 cells
# drawn from the real matrix of oligodendroglioma.h5ad), written by anndata. Never run in CI.
set -euo pipefail
cd "$(dirname "$0")/../.."
ROUNDS=${1:-3}
SET=${2:-synthetic}
S=(--batch-size "${3:-4096}" --chunk-size "${4:-32}" --preload-nchunks "${5:-256}")
REF=${ANNBATCH_REFERENCE:-../shared/tools/annbatch-reference}
PY=.venv/bin/python
if [ "$SET" = real ]; then
  DATA=target/bench-data/real
  mkdir -p "$DATA"
  [ -f "$DATA/real.h5ad" ] || $PY benches/python/make_bootstrap_input.py "$DATA/real.h5ad" 40000
  INPUTS=("$DATA/real.h5ad")
else
  DATA=${PYRUST_DATA:-target/bench-data/pyrust}
  mkdir -p "$DATA"
  [ -f "$DATA/input_1.h5ad" ] || $PY benches/python/make_convert_inputs.py "$DATA" 2 50000
  INPUTS=("$DATA/input_0.h5ad" "$DATA/input_1.h5ad")
fi
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
opened = {t: sorted(r.get("open_s") or 0 for r in rows if r["tool"] == t) for t in tools}
print("| loader | cells/s (min / median / max) | first batch, s | open, s | rs-h5ad / it |")
print("|---|---|---|---|---|")
for t in tools:
    v = rate[t]
    print(f"| {t} | {v[0]:,.0f} / {med[t]:,.0f} / {v[-1]:,.0f} | "
          f"{statistics.median(first[t]):.2f} | {statistics.median(opened[t]):.2f} | "
          f"{med['rs-h5ad'] / med[t]:.2f}x |")
PY
