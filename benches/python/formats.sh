#!/usr/bin/env bash
# The format benchmark behind the converter's default: each X format on two datasets, its size
# on disk, the decode ceiling, our loader's and annbatch 0.3.1's cells/s at 4096/32/256.
#
#   benches/python/formats.sh [ROUNDS=3]
#
# Datasets: "synthetic" (make_convert_inputs.py: 2 x 50,000 cells x 20,000 genes, ~1.5k
# non-zeros per cell, random indices) and "real" (make_bootstrap_input.py: 40,000 cells drawn
# from a real count matrix, thinned). Each is converted by annbatch itself (add_adatas, its
# defaults) and by `annbatch convert` into every format below. Then ROUNDS interleaved rounds:
# every measurement is one epoch (or one ceiling pass) in a fresh process. Prints a markdown
# table (min / median / max) and both end-to-end ratios. Needs ./run setup, release builds of
# `annbatch` and `examples/bench_loader`, the annbatch reference (../shared/tools/
# annbatch-reference setup). Never run in CI.
set -euo pipefail
cd "$(dirname "$0")/../.."
ROUNDS=${1:-3}
DATA=${FORMATS_DATA:-target/bench-data/formats}
REF=${ANNBATCH_REFERENCE:-../shared/tools/annbatch-reference}
PY=.venv/bin/python
OURS=target/release/examples/bench_loader
CLI=target/release/annbatch
SETTING=(--batch-size 4096 --chunk-size 32 --preload-nchunks 256)
# name=compressor@rows-per-inner-chunk
FORMATS=${FORMATS:-"blosc-lz4@64 blosc-lz4@32 blosc-lz4:16384@32 blosc-lz4-bitshuffle@32 zstd@32 none@32 none@128"}
mkdir -p "$DATA"
out=$DATA/results.jsonl
: >"$out"
[ -f "$DATA/input_1.h5ad" ] || $PY benches/python/make_convert_inputs.py "$DATA" 2 50000
[ -f "$DATA/real.h5ad" ] || $PY benches/python/make_bootstrap_input.py "$DATA/real.h5ad" 40000
declare -A INPUTS=([synthetic]="$DATA/input_0.h5ad $DATA/input_1.h5ad" [real]="$DATA/real.h5ad")
for ds in synthetic real; do
  # annbatch's own conversion, its defaults.
  line=$("$REF" run benches/python/annbatch_convert.py "$DATA/$ds-annbatch.zarr" ${INPUTS[$ds]} | tail -n1)
  echo "{\"dataset\": \"$ds\", \"format\": \"annbatch\", \"convert\": $line, \"bytes\": $(du -sb "$DATA/$ds-annbatch.zarr" | cut -f1)}" | tee -a "$out"
  for f in $FORMATS; do
    comp=${f%@*} rows=${f#*@}
    dir="$DATA/$ds-${comp//:/_}-$rows.zarr"
    rm -rf "$dir"
    start=$(date +%s.%N)
    $CLI convert ${INPUTS[$ds]} -o "$dir" --compressor "$comp" --n-obs-per-chunk "$rows" --seed 0 -q >/dev/null
    secs=$(echo "$(date +%s.%N) - $start" | bc)
    echo "{\"dataset\": \"$ds\", \"format\": \"$f\", \"convert_s\": $secs, \"bytes\": $(du -sb "$dir" | cut -f1)}" | tee -a "$out"
  done
done
for round in $(seq "$ROUNDS"); do
  for ds in synthetic real; do
    for f in annbatch $FORMATS; do
      if [ "$f" = annbatch ]; then dir="$DATA/$ds-annbatch.zarr"; else comp=${f%@*} rows=${f#*@}; dir="$DATA/$ds-${comp//:/_}-$rows.zarr"; fi
      tag="\"dataset\": \"$ds\", \"format\": \"$f\", \"round\": $round"
      a=$("$REF" run benches/python/annbatch_loader.py "$dir" "${SETTING[@]}" --repeats 1 | tail -n1)
      c=$($OURS "$dir" "${SETTING[@]}" --only ceiling 2>/dev/null | tail -n1)
      o=$($OURS "$dir" "${SETTING[@]}" --only loader 2>/dev/null | tail -n1)
      echo "{$tag, \"annbatch\": $a, \"ceiling\": $c, \"ours\": $o}" | tee -a "$out"
    done
  done
done
$PY - "$out" <<'PY'
import json, statistics, sys
rows = [json.loads(l) for l in open(sys.argv[1])]
size = {(r["dataset"], r["format"]): r["bytes"] for r in rows if "bytes" in r}
runs = [r for r in rows if "round" in r]
def spread(ds, fmt, key):
    v = sorted(r[key]["cells_per_s"] for r in runs if (r["dataset"], r["format"]) == (ds, fmt))
    return v[0], statistics.median(v), v[-1]
fmt3 = lambda t: " / ".join(f"{x / 1e3:,.0f}k" for x in t)
print("| dataset | format (compressor@rows per inner chunk) | disk | ceiling cells/s | ours cells/s | % of ceiling | annbatch cells/s | ours / annbatch |")
print("|---|---|---|---|---|---|---|---|")
for ds in ("synthetic", "real"):
    fmts = [r["format"] for r in rows if r["dataset"] == ds and "bytes" in r]
    for f in fmts:
        c, o, a = spread(ds, f, "ceiling"), spread(ds, f, "ours"), spread(ds, f, "annbatch")
        label = "annbatch add_adatas (its default)" if f == "annbatch" else f
        print(f"| {ds} | {label} | {size[(ds, f)] / 2**20:,.0f} MiB | {fmt3(c)} | {fmt3(o)} | "
              f"{100 * o[1] / c[1]:.0f} % | {fmt3(a)} | {o[1] / a[1]:.2f}x |")
    base = spread(ds, "annbatch", "annbatch")[1]
    for f in fmts:
        if f != "annbatch":
            print(f"{ds}: ours on {f} / annbatch on its own conversion: "
                  f"{spread(ds, f, 'ours')[1] / base:.2f}x")
PY
