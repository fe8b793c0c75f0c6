#!/usr/bin/env bash
# Two builds of examples/bench_loader side by side, interleaved, one epoch per fresh process:
# min / median / max cells/s (and % of the decode-only ceiling) per build, collection and setting.
#
#   bash benches/ab_loader.sh BEFORE_BIN AFTER_BIN ROUNDS COLLECTION... 
#
# Build each side with `cargo build --release --features "tch hdf5" --example bench_loader`
# (e.g. the old side in a `git worktree`), copy the binaries out, then run this on a quiet
# machine with the page cache warm (the first round warms it).
set -euo pipefail
before=$1 after=$2 rounds=$3
shift 3
out=$(mktemp)
for path in "$@"; do
  for setting in "4096 32 256" "4096 512 32"; do
    read -r b c p <<<"$setting"
    for round in $(seq 0 "$rounds"); do
      for side in before after; do
        bin=$before
        [ "$side" = after ] && bin=$after
        line=$("$bin" "$path" --batch-size "$b" --chunk-size "$c" --preload-nchunks "$p" \
          --repeats 1 --json)
        # Round 0 warms the page cache and is not counted.
        [ "$round" -gt 0 ] && echo "$side $path $b/$c/$p $line" >>"$out"
      done
    done
  done
done
python3 - "$out" <<'PY'
import json, statistics, sys
rows = {}
for line in open(sys.argv[1]):
    side, path, setting, js = line.split(" ", 3)
    r = json.loads(js)
    rows.setdefault((path, setting), {}).setdefault(side, []).append(
        (r["cells_per_s"], r["ceiling_cells_per_s"]))
print(f"{'collection':<28} {'setting':<12} {'side':<7} {'min':>9} {'median':>9} {'max':>9}  of ceiling")
for (path, setting), sides in rows.items():
    for side in ("before", "after"):
        v = sides.get(side, [])
        if not v:
            continue
        rates = [x for x, _ in v]
        share = statistics.median(x / c for x, c in v)
        print(f"{path[-28:]:<28} {setting:<12} {side:<7} {min(rates):>9.0f} "
              f"{statistics.median(rates):>9.0f} {max(rates):>9.0f}  {100 * share:.0f} %")
    b = statistics.median(x for x, _ in sides["before"])
    a = statistics.median(x for x, _ in sides["after"])
    print(f"{'':<28} {'':<12} after/before median: {a / b:.3f}")
PY
rm -f "$out"
