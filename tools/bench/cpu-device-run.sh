#!/bin/sh
# SPDX-License-Identifier: MIT
#
# The CPU measurements of Documentation/benchmarks.rst in one command:
# asam-bench (built on the build host, carried with its libbenchmark) and
# PyTorch's CPU SDPA with the same thread count, on the same host.
#   cpu-device-run.sh OUTDIR [THREADS]
# The folder holding this script must hold asam-bench, libbenchmark,
# sdpa_cpu.py and cpu_summary.py; the last lines printed (summary.txt)
# are the issue's ratios.
out=${1:-.}
T=${2:-16}
here=$(cd "$(dirname "$0")" && pwd)
export LD_LIBRARY_PATH="$here${LD_LIBRARY_PATH:+:$LD_LIBRARY_PATH}"
b="$here/asam-bench --asam_threads=$T --asam_heads=16 --benchmark_min_time=0.3"
# bounded so that the whole run stays under 240 s (the timeouts sum to
# 265 s; the steps take well under theirs)
set -x
date -u
lscpu | grep -E 'Model name|^CPU\(s\)|Thread|Socket|NUMA|MHz|Flags' | cut -c1-200
grep -o -w -E 'avx2|fma|avx512f|avx512_bf16|amx_tile' /proc/cpuinfo | sort | uniq -c
timeout 45 python3 "$here/sdpa_cpu.py" --threads "$T" --heads 16 | tee "$out/sdpa.jsonl"
ASAM_LOG_LEVEL=2 timeout 60 $b --benchmark_filter='fwd/dense/N:(1024|4096|8192)/d:(64|128)/' \
	--benchmark_format=json --benchmark_out="$out/dense.json" --benchmark_out_format=json
timeout 30 $b --benchmark_filter='peak|kernel' --benchmark_min_time=0.1 \
	--benchmark_repetitions=3 --benchmark_report_aggregates_only=true \
	--benchmark_out="$out/peak.json" --benchmark_out_format=json
timeout 50 $b --benchmark_filter='fwd/(local|strided|hierarchical|random|random_rows|clustered|user_index)/N:4096/d:64/' \
	--benchmark_out="$out/sparse.json" --benchmark_out_format=json
timeout 50 $b --benchmark_filter='bwd/(dense|local|strided|hierarchical|random|random_rows|clustered|user_index)/N:4096/d:64/' \
	--benchmark_out="$out/bwd.json" --benchmark_out_format=json
# the per-row patterns with 512 KB key chunks (off by default: measured
# no better on the 2-core build host; this says whether a 2 MB-L2 host
# with 16 busy cores gains); cpu_summary.py prints chunked / default
ASAM_CPU_ROWS_L2=524288 timeout 20 $b --benchmark_min_time=0.2 \
	--benchmark_filter='(fwd|bwd)/(random_rows|user_index)/N:4096/d:64/' \
	--benchmark_out="$out/rows_l2.json" --benchmark_out_format=json
ASAM_CPU_ISA=avx2 timeout 10 $b --benchmark_filter='fwd/dense/N:4096/d:64/'
date -u
set +x
python3 "$here/cpu_summary.py" "$out" | tee "$out/summary.txt"
