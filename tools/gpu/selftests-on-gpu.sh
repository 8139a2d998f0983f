#!/bin/bash
# SPDX-License-Identifier: MIT
#
# On a GPU machine, over a tree built elsewhere (selftests/*/bin carried):
# run every selftest program, the GPU ones included, and print the card.
# Usage: tools/gpu/selftests-on-gpu.sh [outdir]
out=${1:-${OUT:-/tmp}}
nvidia-smi --query-gpu=name,memory.total,pci.bus_id,driver_version \
	--format=csv | tee "$out/gpu.txt"
date -u | tee -a "$out/gpu.txt"
export ASAM_CACHE_DIR=/tmp/asam-cache
selftests/run_selftests.sh $(ls -d selftests/*/bin/* | sort) \
	> "$out/selftests.log" 2>&1
grep -E '^(not ok|ok [0-9]+ selftests)|jit_gpu_load|disk hit|memory hit|cold:|round' \
	"$out/selftests.log" | grep -v '^# ok [0-9]* [a-z_]*: ' | tail -40
tail -n 1 "$out/selftests.log"
