#!/bin/sh
# SPDX-License-Identifier: MIT
#
# The CPU measurements of Documentation/benchmarks.rst in one command:
# asam-bench (built on the build host, carried with its libbenchmark) and
# PyTorch's CPU SDPA with the same thread count, on the same host.
#   cpu-device-run.sh OUTDIR [THREADS] [rows]
# The folder holding this script must hold asam-bench, libbenchmark,
# sdpa_cpu.py and cpu_summary.py; the last lines printed (summary.txt)
# are the issue's ratios.  With "rows" only the per-row patterns
# (RANDOM_ROWS, USER_INDEX), their dense baselines and their variants
# run (~60 s): the ASAM_CPU_* switches the build host could not rank.
out=${1:-.}
T=${2:-16}
mode=${3:-all}
here=$(cd "$(dirname "$0")" && pwd)
export LD_LIBRARY_PATH="$here${LD_LIBRARY_PATH:+:$LD_LIBRARY_PATH}"
b="$here/asam-bench --asam_threads=$T --asam_heads=16 --benchmark_min_time=0.3"
# bounded so that the whole run stays under 240 s (the timeouts sum to
# 295 s, 115 s with "rows"; the steps take well under theirs: 86 s for
# the whole on the Xeon, 2026-11-27)
set -x
date -u
lscpu | grep -E 'Model name|^CPU\(s\)|Thread|Socket|NUMA|MHz|Flags|L2|L3' | cut -c1-200
grep -o -w -E 'avx2|fma|avx512f|avx512_bf16|amx_tile' /proc/cpuinfo | sort | uniq -c
rows='(fwd|bwd)/(random_rows|user_index)/N:4096/d:64/'
if [ "$mode" = rows ]; then
	timeout 40 $b --benchmark_filter='(fwd|bwd)/(dense|random_rows|user_index)/N:4096/d:64/' \
		--benchmark_out="$out/rows.json" --benchmark_out_format=json
else
	timeout 40 python3 "$here/sdpa_cpu.py" --threads "$T" --heads 16 | tee "$out/sdpa.jsonl"
	ASAM_LOG_LEVEL=2 timeout 55 $b --benchmark_filter='fwd/dense/N:(1024|4096|8192)/d:(64|128)/' \
		--benchmark_format=json --benchmark_out="$out/dense.json" --benchmark_out_format=json
	timeout 25 $b --benchmark_filter='peak|kernel' --benchmark_min_time=0.1 \
		--benchmark_repetitions=3 --benchmark_report_aggregates_only=true \
		--benchmark_out="$out/peak.json" --benchmark_out_format=json
	timeout 45 $b --benchmark_filter='fwd/(local|strided|hierarchical|random|random_rows|clustered|user_index)/N:4096/d:64/' \
		--benchmark_out="$out/sparse.json" --benchmark_out_format=json
	timeout 45 $b --benchmark_filter='bwd/(dense|local|strided|hierarchical|random|random_rows|clustered|user_index)/N:4096/d:64/' \
		--benchmark_out="$out/bwd.json" --benchmark_out_format=json
fi
# The per-row patterns' switches (arch/cpu/fast-rows.c, fast-kmajor.c),
# each ranked on the 2-core AMD build host (1 MB L2, fast L3), which may
# rank them otherwise than this host; cpu_summary.py prints each over the
# default of this run: key chunks sized for a 512 KB share of the L2 (the
# row walk, chunked: RANDOM_ROWS' backward default before key-major tiles
# where the L2 is 2 MB), the row walk as it was the default
# (ASAM_CPU_ROWS_KMAJOR=0), key-major tiles in the forward too (=1),
# key-major backward tiles of 512 rows (default 1024 where the L2 is 2
# MB, cpu13), the forward's row walk row by row (ASAM_CPU_ROWS_SPLIT=0;
# default: three passes a tile, K alone then V alone, cpu12), and its
# passes in tiles of 256 rows (ASAM_CPU_ROWS_RT; default 1024 where the
# L2 is 2 MB, 256 elsewhere: the 16:06 UTC Xeon run)
# and in two key chunks of 512 KB (ASAM_CPU_ROWS_PASS; default none).
# The 1 MB chunks and the
# sorted USER_INDEX rows were dropped after the 2026-11-27 07:17 run
# (0.92-1.17 and 1.18-1.32 x the default there).
# switch VAR=VALUE SECONDS FILTER NAME: the rows under FILTER with the
# switch set, into $out/NAME.json
switch() {
	env "$1" timeout "$2" $b --benchmark_min_time=0.2 \
		--benchmark_filter="$3" \
		--benchmark_out="$out/$4.json" --benchmark_out_format=json
}
km='/(random_rows|user_index)/N:4096/d:64/'
switch ASAM_CPU_ROWS_L2=524288 15 "$rows" rows_l2
switch ASAM_CPU_ROWS_KMAJOR=0 10 "bwd$km" kmoff
switch ASAM_CPU_ROWS_KMAJOR=1 10 "fwd$km" kmfwd
switch ASAM_CPU_KM_RT=512 10 "bwd$km" kmrt512
switch ASAM_CPU_ROWS_SPLIT=0 10 "fwd$km" nosplit
switch ASAM_CPU_ROWS_RT=256 10 "fwd$km" rowsrt
switch ASAM_CPU_ROWS_PASS=524288 10 "fwd$km" rowspass
[ "$mode" = rows ] || ASAM_CPU_ISA=avx2 timeout 10 $b --benchmark_filter='fwd/dense/N:4096/d:64/'
date -u
set +x
python3 "$here/cpu_summary.py" "$out" | tee "$out/summary.txt"
