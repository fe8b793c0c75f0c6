#!/usr/bin/env bash
# Side-by-side loader benchmark: annbatch 0.3.1 against annbatch-rs (its Python Loader and its
# Rust loader), interleaved rounds, every epoch in a fresh process, min / median / max. Two
# ratios per setting:
#   same collection  - both tools read annbatch's own conversion of the inputs;
#   own defaults     - annbatch on its default conversion, annbatch-rs on its default one
#                      (what a user of each gets end to end).
#
#   benches/python/side_by_side.sh [ROUNDS=3]
#
# Inputs: the synthetic .h5ad files of make_convert_inputs.py (2 x 50,000 cells x 20,000 genes,
# ~1.5k non-zeros per cell), shared with formats.sh. Needs ./run setup, release builds of
# `annbatch` and `examples/bench_loader`, the wheel installed in .venv (./run demo does all
# three) and the annbatch reference (../shared/tools/annbatch-reference setup). Never run in CI.
set -euo pipefail
cd "$(dirname "$0")/../.."
ROUNDS=${1:-3}
DATA=${FORMATS_DATA:-target/bench-data/formats}
REF=${ANNBATCH_REFERENCE:-../shared/tools/annbatch-reference}
PY=.venv/bin/python
OURS=target/release/examples/bench_loader
mkdir -p "$DATA"
[ -f "$DATA/input_1.h5ad" ] || $PY benches/python/make_convert_inputs.py "$DATA" 2 50000
INPUTS="$DATA/input_0.h5ad $DATA/input_1.h5ad"
THEIRS=$DATA/synthetic-annbatch.zarr
OWN=$DATA/synthetic-default.zarr
[ -d "$THEIRS" ] || "$REF" run benches/python/annbatch_convert.py "$THEIRS" $INPUTS
[ -d "$OWN" ] || target/release/annbatch convert $INPUTS -o "$OWN" --seed 0 -q
out=$(mktemp)
for setting in "4096 32 256" "4096 512 32"; do
  set -- $setting
  s=(--batch-size "$1" --chunk-size "$2" --preload-nchunks "$3")
  for round in $(seq "$ROUNDS"); do
    for c in "$THEIRS" "$OWN"; do
      [ "$c" = "$OWN" ] && which=own || which=same
      if [ "$which" = same ]; then
        echo "{\"on\": \"same\", \"row\": $("$REF" run benches/python/annbatch_loader.py "$c" "${s[@]}" --repeats 1 | tail -n1)}" | tee -a "$out"
      fi
      echo "{\"on\": \"$which\", \"row\": $("$PY" benches/python/annbatch_rs_loader.py "$c" "${s[@]}" --repeats 1 2>/dev/null | tail -n1)}" | tee -a "$out"
      r=$("$OURS" "$c" "${s[@]}" --only loader 2>/dev/null | tail -n1)
      echo "{\"on\": \"$which\", \"row\": {\"tool\": \"annbatch-rs\", \"batch_size\": $1, \"chunk_size\": $2, \"preload_nchunks\": $3, \"measured\": $r}}" | tee -a "$out"
    done
  done
done
python3 - "$out" <<'PY'
import json, statistics, sys
rows = []
for line in open(sys.argv[1]):
    r = json.loads(line)
    row = r["row"]
    rate = row["measured"]["cells_per_s"] if "measured" in row else row["cells_per_s"]
    rows.append((r["on"], row["tool"], (row["batch_size"], row["chunk_size"], row["preload_nchunks"]), rate))
def spread(on, tool, key):
    v = sorted(x for o, t, k, x in rows if (o, t, k) == (on, tool, key))
    return v[0], statistics.median(v), v[-1]
fmt = lambda s: " / ".join(f"{x:,.0f}" for x in s)
for key in sorted({k for _, _, k, _ in rows}):
    a = spread("same", "annbatch", key)
    print(f"batch {key[0]} / chunk {key[1]} / preload {key[2]}: annbatch {fmt(a)} cells/s (min / median / max)")
    for tool in ("annbatch-rs (python)", "annbatch-rs"):
        same, own = spread("same", tool, key), spread("own", tool, key)
        print(f"  {tool}: same collection {fmt(same)} ({same[1] / a[1]:.2f}x); "
              f"own default {fmt(own)} ({own[1] / a[1]:.2f}x)")
PY
