#!/usr/bin/env bash
# The main job: installs what is missing, builds (Release), installs nothing
# system-wide, then starts a waybill node and shows it working: the runtime's
# self-check, then the benchmark summary (each line `name: value unit`).
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/deps.sh
bash scripts/build.sh build-release -DCMAKE_BUILD_TYPE=Release -DWB_TESTS=OFF
echo "== waybill selfcheck"
./build-release/waybill selfcheck
echo
echo "== benchmarks (figures, not pass/fail; see docs/architecture.md for the goals)"
for b in handoff queue actor db dispatch kv mailbox wormhole_text relay transfer; do
  [ -x "build-release/tests/bench/bench_$b" ] || continue
  "build-release/tests/bench/bench_$b"
done
