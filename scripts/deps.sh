#!/usr/bin/env bash
# Installs the Debian packages waybill needs to build, test and benchmark.
# Safe to run again: it installs only what is missing. Uses sudo when not root.
set -euo pipefail

PACKAGES=(
  # build
  build-essential cmake ninja-build pkg-config
  # libraries (see docs/architecture.md for why each is here)
  libuv1-dev libsqlite3-dev libsodium-dev libmsgpack-dev libwslay-dev libhttp-parser-dev libjansson-dev libunistring-dev libedit-dev libzip-dev
  libssl-dev ca-certificates
  # tests: unit, sanitizers, fuzzing, leak checks
  libcmocka-dev clang libclang-rt-14-dev valgrind
  # interop peers
  python3-websockets python3-openssl openssl magic-wormhole wormhole-william python3-magic-wormhole-mailbox-server
  magic-wormhole-transit-relay iproute2 util-linux procps
  # benchmarks: the anchors we measure against in the same run
  libzmq3-dev liburcu-dev libck-dev redis-server redis-tools
)

missing=()
for p in "${PACKAGES[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
[ ${#missing[@]} -eq 0 ] && exit 0

SUDO=""
if [ "$(id -u)" -ne 0 ]; then
  command -v sudo >/dev/null || { echo "deps: need root or sudo to install: ${missing[*]}" >&2; exit 1; }
  SUDO="sudo"
fi
echo "deps: installing ${missing[*]}"
export DEBIAN_FRONTEND=noninteractive
# Packages with daemons (redis-server, for the benchmark's anchor) must not
# start a system service: the benchmark starts its own on a free port and
# stops it. policy-rc.d is Debian's switch for that, held only while we install.
policy=/usr/sbin/policy-rc.d
own_policy=0
if [ ! -e "$policy" ]; then
  printf '#!/bin/sh\nexit 101\n' | $SUDO tee "$policy" >/dev/null && $SUDO chmod +x "$policy" && own_policy=1
fi
rc=0
$SUDO apt-get update -qq && $SUDO apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null || rc=$?
[ "$own_policy" = 1 ] && $SUDO rm -f "$policy"
exit $rc
