#!/usr/bin/env bash
# The test command: installs what is missing, builds, and runs every test:
#   1. unit tests (cmocka, ctest)           build/
#   2. the same unit tests under ASan+UBSan build-asan/   (clang)
#   3. threaded tests under TSan            build-tsan/   (clang)
#   4. a short run of every fuzz target     build-fuzz/   (clang libFuzzer)
#   5. runtime tests under valgrind (leaks and memory errors)
# Exits non-zero on any failure. FUZZ_SECONDS sets each fuzz run (default 20).
set -uo pipefail
cd "$(dirname "$0")/.."
FUZZ_SECONDS=${FUZZ_SECONDS:-20}
JOBS=$(nproc)

bash scripts/deps.sh || exit 1

passed=0; failed=0
stage() { echo; echo "=== $* ==="; }
tally() { # tally OUTPUT_FILE: add ctest's counts
  local line p f t
  line=$(grep -E "tests passed, [0-9]+ tests failed out of" "$1" | tail -1)
  t=$(sed -E 's/.* out of ([0-9]+).*/\1/' <<<"$line"); f=$(sed -E 's/.* ([0-9]+) tests failed.*/\1/' <<<"$line")
  [ -n "$t" ] || { failed=$((failed + 1)); return; }
  passed=$((passed + t - f)); failed=$((failed + f))
}
run_ctest() { # run_ctest DIR LABEL [ctest args]
  local out dir=$1 label=$2; out=$(mktemp); shift 2
  (cd "$dir" && ctest -L "$label" -j "$JOBS" --output-on-failure "$@") 2>&1 | tee "$out"
  tally "$out"; rm -f "$out"
}

stage "build (gcc, RelWithDebInfo)"
bash scripts/build.sh build -DCMAKE_BUILD_TYPE=RelWithDebInfo || exit 1
stage "unit and interop tests"
run_ctest build "unit|interop"

stage "install, then build a program against the installed library (pkg-config)"
inst=$(mktemp -d)
if cmake --install build --prefix "$inst" >/dev/null &&
   pc="$inst/lib/pkgconfig" &&
   cc tests/install/hello.c $(PKG_CONFIG_PATH=$pc pkg-config --cflags --libs waybill) -o "$inst/hello" &&
   LD_LIBRARY_PATH="$inst/lib" "$inst/hello" &&
   cc tests/install/hello.c $(PKG_CONFIG_PATH=$pc pkg-config --cflags waybill) "$inst/lib/libwaybill.a" \
      $(pkg-config --libs libuv sqlite3 msgpack) -lpthread -o "$inst/hello-static" &&
   "$inst/hello-static"; then
  echo "install: ok"; passed=$((passed + 1))
else
  echo "install: FAILED"; failed=$((failed + 1))
fi
rm -rf "$inst"

stage "build (clang, ASan+UBSan)"
bash scripts/build.sh build-asan -DCMAKE_C_COMPILER=clang -DWB_SANITIZE=address -DWB_BENCH=OFF || exit 1
stage "unit and interop tests under ASan+UBSan"
ASAN_OPTIONS=detect_leaks=1:abort_on_error=1 UBSAN_OPTIONS=print_stacktrace=1:halt_on_error=1 \
  run_ctest build-asan "unit|interop" -LE reference  # runs of the real Python/Go servers: no code of ours

stage "build (clang, TSan)"
bash scripts/build.sh build-tsan -DCMAKE_C_COMPILER=clang -DWB_SANITIZE=thread -DWB_BENCH=OFF || exit 1
stage "threaded tests under TSan"
TSAN_OPTIONS=halt_on_error=1:second_deadlock_stack=1 run_ctest build-tsan threaded

stage "fuzz targets (${FUZZ_SECONDS}s each)"
bash scripts/build.sh build-fuzz -DCMAKE_C_COMPILER=clang -DWB_SANITIZE=address -DWB_FUZZ=ON \
  -DWB_BENCH=OFF -DWB_TESTS=OFF || exit 1
for fz in build-fuzz/tests/fuzz/fuzz_*; do
  [ -x "$fz" ] || continue
  name=$(basename "$fz" | sed 's/^fuzz_//')
  work=$(mktemp -d)
  [ -d "tests/fuzz/corpus/$name" ] && cp -r "tests/fuzz/corpus/$name/." "$work/"
  if "$fz" -max_total_time="$FUZZ_SECONDS" -print_final_stats=1 "$work" >"$work.log" 2>&1; then
    echo "fuzz $name: ok ($(grep -E '^stat::number_of_executed_units' "$work.log" | awk '{print $2}') runs)"
    passed=$((passed + 1))
  else
    echo "fuzz $name: FAILED"; tail -60 "$work.log"; failed=$((failed + 1))
  fi
  rm -rf "$work" "$work.log"
done

stage "valgrind (memcheck, leaks)"
for t in test_actor test_det test_rt test_db test_tcp test_transit test_tcp_splice test_mconn test_peerconn test_secret test_tcp_ws test_tls test_dispatch test_mailbox test_wormhole_crypto test_wormhole_client; do
  [ -x "build/tests/unit/$t" ] || continue
  if WAYBILL_LOG=off valgrind -q --error-exitcode=99 --leak-check=full --errors-for-leak-kinds=definite,indirect \
      "build/tests/unit/$t" >/tmp/valgrind.$t.log 2>&1; then
    echo "valgrind $t: clean"; passed=$((passed + 1))
  else
    echo "valgrind $t: FAILED"; tail -40 /tmp/valgrind.$t.log; failed=$((failed + 1))
  fi
done

echo
echo "waybill tests: $passed passed, $failed failed"
[ "$failed" -eq 0 ]
