#!/usr/bin/env bash
# The Python front end against the Rust one on the same collection: ROUNDS interleaved rounds,
# each epoch in a fresh process (Rust: `bench_loader --only loader`, tch::Tensor batches;
# Python: `annbatch_rs_loader.py --repeats 1 --built`, torch sparse CSR batches through DLPack),
# one shuffled epoch at 4096/32/256, timed alike: from the built loader's first batch request
# to its last batch. Prints min / median / max cells/s of each and the ratio of the
# medians. Needs ./run setup, the wheel installed in .venv and a release build of
# examples/bench_loader. Never run in CI.
#
#   benches/python/python_vs_rust.sh COLLECTION [ROUNDS=5]
set -euo pipefail
cd "$(dirname "$0")/../.."
COLLECTION=$1
ROUNDS=${2:-5}
SETTING=(--batch-size 4096 --chunk-size 32 --preload-nchunks 256)
rust=() python=()
for round in $(seq "$ROUNDS"); do
  r=$(target/release/examples/bench_loader "$COLLECTION" --only loader "${SETTING[@]}" | tail -n1)
  p=$(.venv/bin/python benches/python/annbatch_rs_loader.py "$COLLECTION" "${SETTING[@]}" \
    --repeats 1 --seed "$round" --built | tail -n1)
  rust+=("$(python3 -c 'import json,sys; print(json.loads(sys.argv[1])["cells_per_s"])' "$r")")
  python+=("$(python3 -c 'import json,sys; print(json.loads(sys.argv[1])["cells_per_s"])' "$p")")
  echo "round $round: rust ${rust[-1]} python ${python[-1]}" >&2
done
python3 - "${#rust[@]}" "${rust[@]}" "${python[@]}" <<'PY'
import statistics, sys
n = int(sys.argv[1])
rust, python = [float(v) for v in sys.argv[2:2 + n]], [float(v) for v in sys.argv[2 + n:]]
for name, v in (("rust", rust), ("python", python)):
    print(f"{name:6s} cells/s min {min(v):,.0f} median {statistics.median(v):,.0f} "
          f"max {max(v):,.0f}")
print(f"python / rust (medians): {statistics.median(python) / statistics.median(rust):.2f}")
PY
