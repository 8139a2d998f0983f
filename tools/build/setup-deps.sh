#!/bin/sh
# SPDX-License-Identifier: MIT
#
# Install the Debian packages the build needs, when they are missing.  As
# root it runs apt-get; otherwise it prints the exact command and fails, so
# that "make run" and "make check" work on a fresh machine or say why not.

set -e

need=""
have_file() { [ -e "$1" ]; }

have_file /usr/lib/python3/dist-packages/kconfiglib.py || need="$need python3-kconfiglib"
have_file /usr/include/dlpack/dlpack.h || need="$need libdlpack-dev"
have_file /usr/include/hwloc.h || need="$need libhwloc-dev"
have_file /usr/include/numa.h || need="$need libnuma-dev"
have_file /usr/include/benchmark/benchmark.h || need="$need libbenchmark-dev"
command -v g++ >/dev/null 2>&1 || need="$need g++"

[ -z "$need" ] && exit 0

if [ "$(id -u)" != 0 ]; then
	echo "libasam: missing build packages:$need" >&2
	echo "run:  sudo apt-get install -y$need" >&2
	exit 1
fi
echo "  SETUP   apt-get install$need"
export DEBIAN_FRONTEND=noninteractive
apt-get update -qq >/dev/null || true
apt-get install -y -qq --no-install-recommends $need >/dev/null
