#!/bin/bash
# SPDX-License-Identifier: MIT
#
# On a GPU machine, over a tree built elsewhere (selftests/*/bin carried):
# run every selftest program, the GPU ones included, and print the card.
# The programs run in parallel (-j, default 8): each GPU program spends
# most of its time in NVRTC compiles on the CPU, and the kernels are short.
# The programs that read ASAM_TEST_SHARD (gc_shard(): the longest GPU
# lists) run as SHARDS processes each, one case in SHARDS apiece.
# Usage: tools/gpu/selftests-on-gpu.sh [-j N] [outdir]
jobs=8
shards=4
sharded="attention-cuda/bin/attn_bwd_nd_gpu_test attention-cuda/bin/attn_cols_gpu_test"
if [ "$1" = "-j" ]; then
	jobs=$2
	shift 2
fi
out=${1:-${OUT:-/tmp}}
nvidia-smi --query-gpu=name,memory.total,pci.bus_id,driver_version \
	--format=csv | tee "$out/gpu.txt"
date -u | tee -a "$out/gpu.txt"
export ASAM_CACHE_DIR=${ASAM_CACHE_DIR:-/tmp/asam-cache}
mkdir -p "$out/st"
# the JIT's load-time targets are timings: measure them on a quiet machine
timed=selftests/jit/bin/jit_gpu_load
[ -x $timed ] && selftests/run_selftests.sh $timed > "$out/st/0-jit_gpu_load.log" 2>&1
# one job a line: "program k/n" (k/n: a shard, 0/1: the whole program)
for prog in $(ls -d selftests/*/bin/* | sort | grep -vx "$timed"); do
	n=1
	for s in $sharded; do
		[ "$prog" = "selftests/$s" ] && n=$shards
	done
	for k in $(seq 0 $((n - 1))); do
		echo "$prog $k/$n"
	done
done | xargs -P "$jobs" -L 1 sh -c \
	'ASAM_TEST_SHARD=$2 selftests/run_selftests.sh $1 > "$0/st/$(echo $1 | tr / _)-$(echo $2 | tr / -).log" 2>&1' \
	"$out"
cat "$out"/st/*.log > "$out/selftests.log"
grep -hE '^not ok|^# (ok [0-9]+ )?.*(disk hit|memory hit|cold:|round)' \
	"$out"/st/*.log | tail -40
awk '/ passed, .* failed, .* skipped$/ { p += $1; f += $3; s += $5 }
     END { printf "%d passed, %d failed, %d skipped\n", p, f, s; exit f > 0 }' \
	"$out"/st/*.log
