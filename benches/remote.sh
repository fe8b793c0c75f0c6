#!/usr/bin/env bash
# The loader reading a collection from servers on 127.0.0.1, with no added latency and with
# round trips lengthened by examples/latency_proxy (ROUND_TRIP_MS, default 20: 10 ms each way,
# as `tc qdisc … netem delay 10ms` on loopback would add), against the same collection read
# from local files. Servers: s3s-fs (S3, the tests' server) and, when Debian's nginx is
# installed (`apt-get install nginx-light`), nginx over plain HTTP. s3s-fs reads files in 4 KiB
# steps through tokio's blocking pool, which costs more CPU than the loader itself on a small
# machine; nginx (sendfile) shows what the reader does when the server is not the limit. Each
# epoch runs in a fresh process (bench_loader --only loader), the targets interleaved round by
# round; min / median / max cells/s, requests/s and MB/s received, and each median as a share
# of the local one.
#
#   benches/remote.sh [ROUNDS=3] [CELLS=100000]
#   CONCURRENCY="64 256" READ_AHEAD=2 BATCH=4096 CHUNK=32 PRELOAD=256 benches/remote.sh
#   SERVERS="s3 http" (the default; http only when nginx is installed)
set -euo pipefail
cd "$(dirname "$0")/.."
ROUNDS=${1:-3}
CELLS=${2:-100000}
CONCURRENCY=${CONCURRENCY:-"64 256"}
READ_AHEAD=${READ_AHEAD:-2}
ROUND_TRIP_MS=${ROUND_TRIP_MS:-20}
BATCH=${BATCH:-4096} CHUNK=${CHUNK:-32} PRELOAD=${PRELOAD:-256}
export VIRTUAL_ENV=$PWD/.venv PATH=$PWD/.venv/bin:$PATH LIBTORCH_USE_PYTORCH=1
cargo build -q --release --features "tch remote" --example bench_loader --example latency_proxy
S3S=${ANNBATCH_S3S_FS:-$HOME/.cache/annbatch-rs/s3s-fs/bin/s3s-fs}
[ -x "$S3S" ] || cargo install -q s3s-fs@0.14.1 --features binary --locked \
  --root "$(dirname "$(dirname "$S3S")")"
ROOT=$PWD/target/bench-data/remote
NAME=synthetic_$CELLS.zarr
mkdir -p "$ROOT/cells"
BENCH=./target/release/examples/bench_loader
[ -d "$ROOT/cells/$NAME" ] || $BENCH "$ROOT/cells/$NAME" --synthetic "$CELLS" --only ceiling >/dev/null

# The server's own directory, filled through S3 PUTs (rclone): s3s-fs keeps each uploaded
# object's ETag beside it. An object merely copied into its directory has none, and s3s-fs then
# hashes the whole file on every GET (a whole shard per range read: the server's limit, not the
# reader's).
S3_PORT=${S3_PORT:-19000}
SLOW_PORT=$((S3_PORT + 1))
mkdir -p "$ROOT/served"
"$S3S" --host 127.0.0.1 --port $S3_PORT --access-key bench --secret-key bench-secret \
  "$ROOT/served" 2>/dev/null &
PIDS=$!
./target/release/examples/latency_proxy --listen $SLOW_PORT --to $S3_PORT \
  --delay-ms $((ROUND_TRIP_MS / 2)) 2>/dev/null &
PIDS="$PIDS $!"
HTTP_PORT=$((S3_PORT + 2))
SLOW_HTTP_PORT=$((S3_PORT + 3))
SERVERS=${SERVERS:-"s3 http"}
command -v nginx >/dev/null || SERVERS=${SERVERS/http/}
NGINX_DIR=$(mktemp -d)
trap 'kill $PIDS 2>/dev/null; rm -rf "$NGINX_DIR"' EXIT
if [[ $SERVERS == *http* ]]; then
  # One worker, files sent with sendfile, no access log, temporary files in NGINX_DIR.
  {
    echo "daemon off; worker_processes 1; pid $NGINX_DIR/nginx.pid; error_log stderr error;"
    [ "$(id -u)" -ne 0 ] || echo "user root;"
    echo "events { worker_connections 4096; }"
    echo "http { access_log off; sendfile on; tcp_nopush on; keepalive_requests 1000000;"
    for t in client_body proxy fastcgi uwsgi scgi; do echo "  ${t}_temp_path $NGINX_DIR/$t;"; done
    echo "  server { listen 127.0.0.1:$HTTP_PORT; root $ROOT/cells; } }"
  } >"$NGINX_DIR/nginx.conf"
  nginx -c "$NGINX_DIR/nginx.conf" -p "$NGINX_DIR" &
  PIDS="$PIDS $!"
  ./target/release/examples/latency_proxy --listen $SLOW_HTTP_PORT --to $HTTP_PORT \
    --delay-ms $((ROUND_TRIP_MS / 2)) 2>/dev/null &
  PIDS="$PIDS $!"
fi
sleep 1
if [ ! -f "$ROOT/served/.uploaded-$NAME" ]; then
  echo "uploading $NAME to the S3 server (rclone)" >&2
  env -u AWS_CA_BUNDLE rclone --config /dev/null copy "$ROOT/cells/$NAME" ":s3:cells/$NAME" --s3-provider Other \
    --s3-endpoint "http://127.0.0.1:$S3_PORT" --s3-access-key-id bench \
    --s3-secret-access-key bench-secret --s3-force-path-style --transfers 4
  touch "$ROOT/served/.uploaded-$NAME"
fi
export AWS_ACCESS_KEY_ID=bench AWS_SECRET_ACCESS_KEY=bench-secret AWS_REGION=us-east-1
export ANNBATCH_REMOTE_READ_AHEAD=$READ_AHEAD

targets=("local|$ROOT/cells/$NAME|0|64")
if [[ $SERVERS == *s3* ]]; then
  targets+=("s3 (s3s-fs) 0 ms|s3://cells/$NAME|$S3_PORT|64")
  for c in $CONCURRENCY; do
    targets+=("s3 (s3s-fs) ${ROUND_TRIP_MS} ms, $c in flight|s3://cells/$NAME|$SLOW_PORT|$c")
  done
fi
if [[ $SERVERS == *http* ]]; then
  targets+=("http (nginx) 0 ms|http://127.0.0.1:$HTTP_PORT/$NAME|0|64")
  for c in $CONCURRENCY; do
    targets+=("http (nginx) ${ROUND_TRIP_MS} ms, $c in flight|http://127.0.0.1:$SLOW_HTTP_PORT/$NAME|0|$c")
  done
fi
results=$(mktemp)
echo "$CELLS cells, batch $BATCH / chunk $CHUNK / preload $PRELOAD, read-ahead $READ_AHEAD" \
  "fetches, $ROUNDS rounds, $(nproc) cores" >&2
for round in $(seq "$ROUNDS"); do
  for t in "${targets[@]}"; do
    IFS='|' read -r label path port conc <<<"$t"
    line=$(ANNBATCH_REMOTE_ENDPOINT=http://127.0.0.1:$port ANNBATCH_REMOTE_CONCURRENCY=$conc \
      $BENCH "$path" --only loader --batch-size "$BATCH" --chunk-size "$CHUNK" \
      --preload-nchunks "$PRELOAD" | grep '^{')
    echo "$label|$line" >>"$results"
    echo "  round $round: $label: $line" >&2
  done
done
python3 - "$results" <<'PY'
import json, statistics, sys
rows = {}
for line in open(sys.argv[1]):
    label, j = line.rstrip("\n").split("|", 1)
    rows.setdefault(label, []).append(json.loads(j))
local = statistics.median(r["cells_per_s"] for r in rows["local"])
print(f"| target | cells/s min / median / max | % of local | requests/s | MB/s |")
print("|---|---|---|---|---|")
for label, rs in rows.items():
    c = sorted(r["cells_per_s"] for r in rs)
    req = statistics.median(r["requests"] / r["seconds"] for r in rs)
    mb = statistics.median(r["bytes"] / r["seconds"] / 1e6 for r in rs)
    print(f"| {label} | {c[0]:,.0f} / {statistics.median(c):,.0f} / {c[-1]:,.0f} | "
          f"{100 * statistics.median(c) / local:.0f} % | {req:,.0f} | {mb:,.0f} |")
PY
rm -f "$results"
