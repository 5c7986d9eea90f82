#!/usr/bin/env bash
# The main job: installs what is missing, builds (Release), installs nothing
# system-wide, then starts a waybill node and shows it working: the runtime's
# self-check, the benchmark summary (each line `name: value unit`), and last
# a Magic Wormhole mailbox server and transit relay on localhost with their
# SQLite files (run-data/), a file sent through them, and how to send your
# own with waybill or the stock `wormhole`. On a terminal the servers run
# until ^C; otherwise they stop after the demonstration
# (WB_RUN_SERVE_SECONDS=N keeps them N seconds). WB_RUN_NO_BENCH=1 skips the
# benchmarks.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/deps.sh
bash scripts/build.sh build-release -DCMAKE_BUILD_TYPE=Release -DWB_TESTS=OFF
echo "== waybill selfcheck"
./build-release/waybill selfcheck
echo
echo "== benchmarks (figures, not pass/fail; see docs/architecture.md for the goals)"
if [ -z "${WB_RUN_NO_BENCH:-}" ]; then
  for b in handoff queue actor db dispatch kv mailbox wormhole_text relay transfer peer; do
    [ -x "build-release/tests/bench/bench_$b" ] || continue
    "build-release/tests/bench/bench_$b"
  done
fi

echo
echo "== Magic Wormhole servers on localhost"
W=$PWD/build-release/waybill
data=${WB_RUN_DATA:-$PWD/run-data}
mkdir -p "$data"
MPORT=${WB_MAILBOX_PORT:-4000}
RPORT=${WB_RELAY_PORT:-4001}
pids=()
cleanup() { for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done; wait 2>/dev/null || true; }
trap cleanup EXIT
"$W" mailbox-server --listen 127.0.0.1 --port "$MPORT" --channel-db "$data/mailbox.sqlite" \
  --usage-db "$data/mailbox-usage.sqlite" 2>>"$data/mailbox.log" &
pids+=($!)
"$W" transit-relay --listen 127.0.0.1 --port "$RPORT" --usage-db "$data/relay-usage.sqlite" \
  2>>"$data/relay.log" &
pids+=($!)
URL="ws://127.0.0.1:$MPORT/v1"
HELPER="tcp:127.0.0.1:$RPORT"
for _ in $(seq 50); do # until both listen
  (exec 3<>"/dev/tcp/127.0.0.1/$MPORT") 2>/dev/null &&
    (exec 3<>"/dev/tcp/127.0.0.1/$RPORT") 2>/dev/null && break
  sleep 0.1
done
echo "mailbox server: $URL (state in $data/mailbox.sqlite, log $data/mailbox.log)"
echo "transit relay:  $HELPER (usage rows in $data/relay-usage.sqlite, log $data/relay.log)"

# A demonstration: a 5 MB file from waybill to waybill through the relay
# (--no-listen on both sides), then compared.
demo=$(mktemp -d)
head -c 5000000 /dev/urandom >"$demo/demo.bin"
mkdir "$demo/in"
code="$((RANDOM % 900 + 100))-waybill-demo"
"$W" send --relay-url "$URL" --transit-helper "$HELPER" --no-listen --hide-progress \
  --code "$code" "$demo/demo.bin" 2>"$demo/send.log" &
spid=$!
if (cd "$demo/in" && timeout 60 "$W" receive --relay-url "$URL" --transit-helper "$HELPER" \
  --no-listen --hide-progress --accept-file "$code" 2>"$demo/recv.log") &&
  wait "$spid" && cmp -s "$demo/demo.bin" "$demo/in/demo.bin"; then
  echo "demo: a 5 MB file sent by waybill through the relay arrived intact"
else
  echo "demo: FAILED"
  cat "$demo/send.log" "$demo/recv.log"
fi
rm -rf "$demo"

cat <<HOWTO
Send a file through these servers:
  $W send --relay-url $URL --transit-helper $HELPER FILE
  wormhole --relay-url $URL --transit-helper $HELPER send FILE    # the stock Python client
and on the receiving side, with the code the sender printed:
  $W receive --relay-url $URL --transit-helper $HELPER CODE
  wormhole --relay-url $URL --transit-helper $HELPER receive CODE
  wormhole-william receive --relay-url $URL CODE                   # Go (its relay is compiled in)
(export WORMHOLE_RELAY_URL=$URL WORMHOLE_TRANSIT_HELPER=$HELPER to leave out the flags)
HOWTO
if [ -t 0 ]; then
  echo "Servers running; ^C stops them."
  wait
elif [ -n "${WB_RUN_SERVE_SECONDS:-}" ]; then
  sleep "$WB_RUN_SERVE_SECONDS"
fi
