#!/usr/bin/env bash
# Conversion side by side: annbatch 0.3.1's DatasetCollection.add_adatas and `annbatch convert`
# on the same .h5ad inputs with the same (default) parameters; wall time and peak RSS of each.
#
#   benches/python/convert_side_by_side.sh [N_FILES=2] [CELLS=50000]
#
# Needs the project venv (./run setup), the CLI as ./run builds it (`cargo build --release
# --no-default-features --features hdf5 --bin annbatch`: no libtorch loaded), and the annbatch
# reference environment (../shared/tools/annbatch-reference setup). Never run in CI.
set -euo pipefail
cd "$(dirname "$0")/../.."
N_FILES=${1:-2}
CELLS=${2:-50000}
DATA=target/bench-data/convert
REF=${ANNBATCH_REFERENCE:-../shared/tools/annbatch-reference}
.venv/bin/python benches/python/make_convert_inputs.py "$DATA" "$N_FILES" "$CELLS"
INPUTS=$(for i in $(seq 0 $((N_FILES - 1))); do printf '%s ' "$DATA/input_$i.h5ad"; done)
cat $INPUTS >/dev/null  # warm the page cache for both

echo "== annbatch 0.3.1 add_adatas"
"$REF" run benches/python/annbatch_convert.py "$DATA/annbatch.zarr" $INPUTS

echo "== annbatch-rs convert"
rm -rf "$DATA/ours.zarr"
/usr/bin/time -f '{"tool": "annbatch-rs", "seconds": %e, "peak_rss_kib": %M}' \
  target/release/annbatch convert $INPUTS -o "$DATA/ours.zarr" --quiet --seed 0
