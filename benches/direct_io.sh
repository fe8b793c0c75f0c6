#!/usr/bin/env bash
# An epoch over a collection larger than the memory it may use: direct I/O against the page
# cache, each epoch in a fresh process (examples/bench_loader --only loader).
#
#   sudo [COMPRESSOR=none] [THREADS=] benches/direct_io.sh [CELLS=300000] [LIMIT=1G] [ROUNDS=3]
#
# Builds a synthetic collection of CELLS cells (20,000 genes, ~1.5k non-zeros per cell: ~9 KB a
# cell uncompressed, 2.7 GB at 300k; ~3.4 KB with COMPRESSOR=blosc-lz4), 32 rows per inner
# chunk, and runs, in interleaved rounds at 4096/32/256 (THREADS decode threads, every run):
#   page cache   - no limit, the collection cached (the figure to match);
#   limited      - in a memory cgroup of LIMIT (page cache counted in it), page-cache reads;
#   direct       - in the same cgroup, --direct-io (O_DIRECT: no page cache).
# Prints cells/s (min / median / max), the bytes read per second, and the cgroup's peak memory.
# Needs root (cgroup v1 or v2 memory controller) and release builds of `annbatch` and
# `examples/bench_loader`. Never run in CI.
set -euo pipefail
cd "$(dirname "$0")/.."
CELLS=${1:-300000}
LIMIT=${2:-1G}
ROUNDS=${3:-3}
COMPRESSOR=${COMPRESSOR:-none}
DATA=target/bench-data/direct
C=$DATA/$COMPRESSOR-$CELLS.zarr
BIN=target/release/examples/bench_loader
S=(--batch-size 4096 --chunk-size 32 --preload-nchunks 256 --only loader)
[ -n "${THREADS:-}" ] && S+=(--threads "$THREADS")
mkdir -p "$DATA"
if [ ! -d "$C" ]; then
  target/release/annbatch demo --out "$DATA/demo.zarr" --n-obs "$CELLS" >/dev/null
  target/release/annbatch convert "$DATA"/demo.zarr/dataset_* -o "$C" \
    --compressor "$COMPRESSOR" --n-obs-per-chunk 32 --seed 0 -q
  rm -rf "$DATA/demo.zarr"
fi
bytes=$(du -sb "$C" | cut -f1)
if [ -d /sys/fs/cgroup/memory ]; then
  CG=/sys/fs/cgroup/memory/annbatch-direct-io
  mkdir -p "$CG"
  echo "$LIMIT" >"$CG/memory.limit_in_bytes"
  peak() { cat "$CG/memory.max_usage_in_bytes"; }
  reset() { echo 0 >"$CG/memory.max_usage_in_bytes" 2>/dev/null || true; }
else
  CG=/sys/fs/cgroup/annbatch-direct-io
  mkdir -p "$CG"
  echo "$LIMIT" >"$CG/memory.max"
  peak() { cat "$CG/memory.peak" 2>/dev/null || echo 0; }
  reset() { :; }
fi
limited() { sh -c "echo \$\$ >$CG/cgroup.procs && exec \"\$@\"" -- "$@"; }
out=$(mktemp)
for round in $(seq "$ROUNDS"); do
  cat "$C"/dataset_*/X/*/c/* >/dev/null  # the page-cache run reads it cached
  echo "{\"run\": \"page cache\", \"m\": $($BIN "$C" "${S[@]}" 2>/dev/null | tail -n1)}" | tee -a "$out"
  sync; echo 3 >/proc/sys/vm/drop_caches
  reset
  echo "{\"run\": \"limited\", \"peak\": 0, \"m\": $(limited $BIN "$C" "${S[@]}" 2>/dev/null | tail -n1)}" | tee -a "$out"
  echo "{\"run\": \"limited peak\", \"peak\": $(peak)}" | tee -a "$out"
  sync; echo 3 >/proc/sys/vm/drop_caches
  reset
  echo "{\"run\": \"direct\", \"peak\": 0, \"m\": $(limited $BIN "$C" "${S[@]}" --direct-io 2>/dev/null | tail -n1)}" | tee -a "$out"
  echo "{\"run\": \"direct peak\", \"peak\": $(peak)}" | tee -a "$out"
done
python3 - "$out" "$bytes" "$CELLS" "$LIMIT" "$COMPRESSOR" <<'PY'
import json, statistics, sys
rows = [json.loads(l) for l in open(sys.argv[1])]
size, cells, limit, compressor = int(sys.argv[2]), int(sys.argv[3]), sys.argv[4], sys.argv[5]
print(f"collection: {cells} cells, {size / 2**30:.2f} GiB ({compressor}); cgroup limit {limit}")
base = None
for run in ("page cache", "limited", "direct"):
    v = sorted(r["m"]["cells_per_s"] for r in rows if r["run"] == run)
    med = statistics.median(v)
    base = base or med
    peaks = [r["peak"] for r in rows if r["run"] == f"{run} peak"]
    peak = f", cgroup peak {max(peaks) / 2**20:,.0f} MiB" if peaks else ""
    print(f"{run:>10}: {v[0]:,.0f} / {med:,.0f} / {v[-1]:,.0f} cells/s "
          f"({med * size / cells / 1e9:.2f} GB/s read; {100 * med / base:.0f} % of the page cache){peak}")
PY
