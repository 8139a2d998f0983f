#!/bin/sh
# SPDX-License-Identifier: MIT
# kdev emu: run a CUDA attention selftest on the CPU, no GPU needed.  From
# the repository root, after make:
#
#	tools/kdev/emu/run.sh selftests/attention-cuda/attn_clus_gpu_test.o [args]
#
# links the test's object with gpu_case.o, the selftest library, wrap.c and
# the static library (the JIT's asam_jit_get wrapped), builds the fake
# libcuda and the patched kernel sources under $ASAM_EMU_DIR (default
# /tmp/asam-emu) and runs the test there.  Kernels compile with g++ on
# first launch (cached until the next run.sh, or kept with EMU_KEEP=1);
# EMU_REVERSE=1 or 2 changes the order of the fibers between barriers.
# Runs at the same time need an ASAM_EMU_DIR each (the cache is cleared
# at start).  The Hopper kernels run too (the fake device is sm_90; the
# wgmma emulation is in emu_rt.h); ASAM_CUDA_SM90=0 keeps to mma.sync.
# Slow: a few seconds for a few hundred tokens; dense cases of thousands
# of tokens take minutes.
set -e
T=$1
shift
E=${ASAM_EMU_DIR:-/tmp/asam-emu}
D=$(dirname "$0")
CUDA=${CUDA_HOME:-/usr/local/cuda}
mkdir -p "$E/cache"
[ -n "$EMU_KEEP" ] || rm -f "$E"/cache/*
python3 "$D/patch.py" jit/kernels "$E/k"
cp "$D/emu_rt.h" "$E/"
gcc -O1 -g -fPIC -shared -I"$CUDA/include" -o "$E/libcuda-emu.so" \
	"$D/fakecuda.c" -ldl
gcc -std=gnu11 -O1 -g -Iinclude -include include/generated/autoconf.h \
	-c "$D/wrap.c" -o "$E/wrap.o"
gcc -o "$E/test" "$T" selftests/attention-cuda/gpu_case.o \
	selftests/lib/testutil.o selftests/lib/kselftest.o "$E/wrap.o" \
	build/libasam.a -Wl,--wrap=asam_jit_get \
	-Wl,--wrap=asam_jit_get_nocompile -ldl -lpthread -lm
ASAM_EMU_DIR=$E ASAM_LIBCUDA=$E/libcuda-emu.so ASAM_CACHE_DIR=$E/jit \
	exec "$E/test" "$@"
