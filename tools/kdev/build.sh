#!/bin/sh
# kdev: build the standalone GPU harness and the cubins it loads into
# $1 (default .dev/kernels).  Runs here; the binaries run on the GPU box.
set -e
OUT=${1:-.dev/kernels}
CUDA=${CUDA:-/usr/local/cuda}
K="jit/kernels/attn_common.cuh jit/kernels/attn_params.cuh"
mkdir -p "$OUT/cubin"
CC="gcc -std=gnu11 -O2 -g -Wall -Iinclude -include include/generated/autoconf.h -I$CUDA/include"
$CC tools/kdev/nvrtc-cubin.c -o "$OUT/nvrtc-cubin" -L$CUDA/lib64 -lnvrtc \
	-Wl,-rpath,$CUDA/lib64
for f in tools/kdev/fwd-check.c arch/cuda/attn_plan.c selftests/lib/testutil.c; do
	$CC -c $f -o "$OUT/$(basename $f .c).o"
done
$CC -o "$OUT/fwd-check" "$OUT/fwd-check.o" "$OUT/attn_plan.o" "$OUT/testutil.o" \
	build/libasam.a -L$CUDA/lib64/stubs -lcuda -ldl -lpthread -lm
# cubins: every config the harness names (d, dtype, causal, gate, pattern, bm)
gen() {
	w=${7:-$(($6 / 16))}
	f="$OUT/cubin/fwd_d$1_t$2_c$3_g$4_p$5_m$6_w$w.cubin"
	[ -f "$f" ] && [ "$f" -nt jit/kernels/attn_fwd.cu ] && [ "$f" -nt jit/kernels/attn_common.cuh ] && return 0
	"$OUT/nvrtc-cubin" "$f" jit/kernels/attn_fwd.cu 90 HEAD_DIM=$1 DTYPE=$(($2 + 1)) \
		CAUSAL=$3 GATE_MODE=$4 PATTERN=$5 BLOCK_M=$6 BLOCK_N=64 \
		NUM_WARPS=$w -- $K
}
jobs=""
for t in 0 1; do for d in 64 128; do for p in 0 1 4; do for g in 0 1 2 3; do
for c in 0 1; do
	gen $d $t $c $g $p 128 &
done; wait; done; done; done; done
gen 64 1 0 1 0 64; gen 128 0 1 3 4 64
for g in 0 1 2 3; do for p in 0 1 4; do
	gen 128 1 0 $g $p 128 4 & gen 128 1 1 $g $p 128 4 & wait
done; done
gen 64 0 1 1 0 128 4; gen 64 1 0 1 0 128 4
# bench shapes: (bm, warps) = (64, 4) and (128, 4) besides (128, 8)
for mw in "64 4" "128 4"; do
	gen 128 1 0 1 0 $mw & gen 64 1 0 1 0 $mw & wait
	gen 128 1 1 1 0 $mw & gen 128 1 0 0 1 $mw & wait
	gen 128 1 0 0 4 $mw & gen 128 1 0 3 1 $mw & wait
	gen 128 1 0 3 4 $mw & gen 128 1 0 2 0 $mw & wait
	gen 128 1 0 2 1 $mw & gen 128 1 0 2 4 $mw & wait
done
# backward: preprocess (forward with BWD_PRE) and the three bwd kernels
genb() {
	f="$OUT/cubin/bwd_d$1_t$2_c$3_g$4_p$5.cubin"
	[ -f "$f" ] && [ "$f" -nt jit/kernels/attn_bwd.cu ] && [ "$f" -nt jit/kernels/attn_common.cuh ] || \
	"$OUT/nvrtc-cubin" "$f" jit/kernels/attn_bwd.cu 90 HEAD_DIM=$1 DTYPE=$(($2 + 1)) \
		CAUSAL=$3 GATE_MODE=$4 PATTERN=$5 BLOCK_M=64 BLOCK_N=64 NUM_WARPS=4 -- $K
	f="$OUT/cubin/pre_d$1_t$2_c$3_g$4_p$5.cubin"
	[ -f "$f" ] && [ "$f" -nt jit/kernels/attn_fwd.cu ] && [ "$f" -nt jit/kernels/attn_common.cuh ] || \
	"$OUT/nvrtc-cubin" "$f" jit/kernels/attn_fwd.cu 90 HEAD_DIM=$1 DTYPE=$(($2 + 1)) \
		CAUSAL=$3 GATE_MODE=$4 PATTERN=$5 BLOCK_M=64 BLOCK_N=64 NUM_WARPS=4 BWD_PRE=1 -- $K
}
for t in 0 1; do for d in 64 128; do for p in 0 1 4; do for g in 0 1 2; do
	genb $d $t 0 $g $p & genb $d $t 1 $g $p & gen $d $t 0 $g $p 64 4 & gen $d $t 1 $g $p 64 4 & wait
done; done; done; done
rm -f "$OUT"/*.o
echo built "$OUT"
