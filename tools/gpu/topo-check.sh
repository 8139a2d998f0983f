#!/bin/sh
# SPDX-License-Identifier: MIT
#
# The GPU-machine check of issue 3, run from a copy of the built tree:
# asam-topo (text and JSON) next to nvidia-smi, the comparison, and the
# arch-cuda and topology selftests.  Results go to $OUT (or /tmp).
cd "$(dirname "$0")/../.." || exit 1
o=${OUT:-/tmp}
{
	date -u
	nvidia-smi -L
	echo '$ nvidia-smi --query-gpu=name,memory.total,memory.reserved,pci.bus_id --format=csv'
	nvidia-smi --query-gpu=name,memory.total,memory.reserved,pci.bus_id --format=csv
	echo '$ nvidia-smi topo -m'
	nvidia-smi topo -m
	echo '$ ASAM_LOG_LEVEL=info ./tools/asam-topo'
	ASAM_LOG_LEVEL=info ./tools/asam-topo
} >"$o/topo.txt" 2>&1
./tools/asam-topo --json >"$o/topo.json" 2>"$o/topo.err"
nvidia-smi --query-gpu=name,memory.total,memory.reserved,pci.bus_id \
	--format=csv,noheader,nounits >"$o/smi.csv"
python3 tools/gpu/compare-smi.py "$o/topo.json" "$o/smi.csv" >"$o/compare.txt" 2>&1
echo "compare rc=$?" >>"$o/compare.txt"
for t in selftests/arch-cuda/bin/* selftests/topology/bin/*; do
	echo "== $t"
	ASAM_LOG_LEVEL=info timeout 120 "$t"
	echo "rc=$?"
done >"$o/tests.txt" 2>&1
ls /usr/lib/x86_64-linux-gnu /usr/lib64 2>/dev/null | grep -E 'libnuma|libhwloc' >>"$o/tests.txt"
cat "$o/topo.txt" "$o/compare.txt" "$o/tests.txt"
