#!/usr/bin/env bash
# Loader cells/s with a counts layer and a 50-d obsm riding along, against X alone, on the same
# collection: interleaved rounds, each epoch in a fresh process, min / median / max.
#
#   benches/python/aligned_side_by_side.sh [ROUNDS=5] [BATCH=4096] [CHUNK=32] [PRELOAD=256]
#
# The collection (ANNBATCH_ALIGNED_DATA, default target/bench-data/aligned.zarr) is made on
# first use: the PBMC counts of tests/data tiled to 42,000 cells, normalised X, int32
# layers["counts"], float32 obsm["X_pca"] (50-d), converted with our converter.
set -euo pipefail
cd "$(dirname "$0")/../.."
ROUNDS=${1:-5} BATCH=${2:-4096} CHUNK=${3:-32} PRELOAD=${4:-256}
PY=${PYTHON:-.venv/bin/python}
DATA=${ANNBATCH_ALIGNED_DATA:-target/bench-data/aligned.zarr}
if [ ! -d "$DATA" ]; then
  mkdir -p "$(dirname "$DATA")"
  "$PY" - "$DATA.h5ad" <<'PY'
import sys, anndata as ad, numpy as np, scipy.sparse as sp
src = ad.read_h5ad("tests/data/pbmc68k_raw_csr.h5ad")
counts = sp.vstack([sp.csr_matrix(src.X)] * 60).astype(np.int32).tocsr()
totals = np.maximum(np.asarray(counts.sum(1)).ravel(), 1)
x = sp.csr_matrix(counts.multiply(1e4 / totals[:, None]), dtype=np.float32)
a = ad.AnnData(X=x)
a.var_names = [str(v) for v in src.var_names]
a.obs_names = [f"c{i}" for i in range(a.n_obs)]
a.layers["counts"] = counts
rng = np.random.default_rng(0)
a.obsm["X_pca"] = rng.standard_normal((a.n_obs, 50)).astype(np.float32)
a.write_h5ad(sys.argv[1])
PY
  target/release/annbatch convert "$DATA.h5ad" -o "$DATA" --seed 1
fi
run() {  # MODE -> cells/s of one epoch in a fresh process
  local extra=()
  if [ "$1" = with ]; then extra=(--layer-keys counts --obsm-keys X_pca); else extra=(--layer-keys); fi
  "$PY" benches/python/annbatch_rs_loader.py "$DATA" --batch-size "$BATCH" --chunk-size "$CHUNK" \
    --preload-nchunks "$PRELOAD" --repeats 1 --seed "$2" "${extra[@]}" |
    "$PY" -c 'import json,sys; print(json.load(sys.stdin)["cells_per_s"])'
}
alone=() with=()
for r in $(seq 1 "$ROUNDS"); do
  alone+=("$(run alone "$r")")
  with+=("$(run with "$r")")
done
"$PY" - "${alone[*]}" "${with[*]}" <<'PY'
import sys, statistics as st
a = [float(v) for v in sys.argv[1].split()]
w = [float(v) for v in sys.argv[2].split()]
f = lambda v: f"{min(v):,.0f} / {st.median(v):,.0f} / {max(v):,.0f}"
print(f"X alone                      cells/s min/median/max: {f(a)}")
print(f"X + layers/counts + obsm 50-d cells/s min/median/max: {f(w)}")
print(f"ratio of medians (with / alone): {st.median(w) / st.median(a):.2f}")
PY
