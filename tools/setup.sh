#!/usr/bin/env bash
# Installs everything the build, the tests, the default job and the benchmarks need on
# Debian 12, and writes the default corpus. Idempotent: a second run installs nothing
# and finishes in about a second. Run as root (or with sudo available).
set -euo pipefail

cd "$(dirname "$0")/.."

packages=(
  # build
  bazel-bootstrap g++ pkg-config
  # tests: services_test reaps leftover workers with pkill (not in Debian's minimal images)
  procps
  # libraries wrapped in third_party/system
  libyaml-cpp-dev libspdlog-dev libfmt-dev libabsl-dev catch2 nlohmann-json3-dev
  libdnnl-dev libopenblas-dev
  libgrpc++-dev protobuf-compiler-grpc libprotobuf-dev protobuf-compiler grpc-proto
  libucx-dev libsqlite3-dev openssl liburing-dev
  # the collective peer (tools/bench/collectives)
  libopenmpi-dev openmpi-bin
  # the PyTorch peer (tools/reference, tools/bench) and its best allocator
  python3 python3-torch python3-numpy libtcmalloc-minimal4
  # the default corpus
  bible-kjv
  # tools/bundle.sh: RUNPATHs ($ORIGIN/../lib), strip, readelf, objdump
  patchelf binutils
)

missing=()
for p in "${packages[@]}"; do
  if ! dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed"; then
    missing+=("$p")
  fi
done

if [ ${#missing[@]} -gt 0 ]; then
  echo "setup: installing ${missing[*]}"
  sudo_cmd=()
  [ "$(id -u)" -eq 0 ] || sudo_cmd=(sudo)
  export DEBIAN_FRONTEND=noninteractive
  "${sudo_cmd[@]}" apt-get update -qq
  "${sudo_cmd[@]}" apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
fi

# The default job's corpus: the King James Bible (public domain), 4.4 MB of text.
if [ ! -s data/kjv.txt ]; then
  mkdir -p data
  bible -f "gen1:1-rev22:21" > data/kjv.txt.tmp
  mv data/kjv.txt.tmp data/kjv.txt
  echo "setup: wrote data/kjv.txt ($(wc -c < data/kjv.txt) bytes)"
fi
