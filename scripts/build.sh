#!/usr/bin/env bash
# build.sh DIR [cmake options...]: configure (once) and build one build tree.
set -euo pipefail
cd "$(dirname "$0")/.."
dir=$1; shift
mkdir -p "$dir"
cmake -S . -B "$dir" -G Ninja "$@" >"$dir/configure.log" 2>&1 || { cat "$dir/configure.log"; exit 1; }
ninja -C "$dir" >"$dir/build.log" 2>&1 || { tail -50 "$dir/build.log"; exit 1; }
