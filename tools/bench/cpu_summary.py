#!/usr/bin/env python3
# SPDX-License-Identifier: MIT
"""The issue-7 ratios from one cpu-device-run.sh output folder.

Reads dense.json, peak.json, sparse.json, bwd.json (Google Benchmark)
and sdpa.jsonl (tools/bench/sdpa_cpu.py), or rows.json in "rows" mode,
and the switch variants (rows_l2*.json, usort.json, km*.json, nosplit.json,
rowsrt.json, rowspass.json), and
prints: dense forward against torch, the kernels' share of the one-core
FMA peak, and each sparse pattern's time over (our dense time x its
density), forward and backward.  Medians where the runs were repeated.
"""
import json
import os
import sys

out = sys.argv[1] if len(sys.argv) > 1 else "."


def runs(name):
    """name -> (ms, counters) of a Google Benchmark file, medians first."""
    path = os.path.join(out, name)
    if not os.path.exists(path):
        return {}
    with open(path) as f:
        bm = json.load(f).get("benchmarks", [])
    res = {}
    for b in bm:
        key = b.get("run_name", b["name"])
        agg = b.get("aggregate_name")
        if agg and agg != "median":
            continue
        if not agg and key in res:
            continue
        scale = {"ns": 1e-6, "us": 1e-3, "ms": 1.0, "s": 1e3}
        res[key] = (b["real_time"] * scale[b.get("time_unit", "ns")], b)
    return res


def find(res, prefix):
    for k, v in res.items():
        if k.startswith(prefix):
            return v
    return None


torch = {}
p = os.path.join(out, "sdpa.jsonl")
if os.path.exists(p):
    for line in open(p):
        r = json.loads(line)
        if r.get("op") == "sdpa_fwd":
            torch[(r["N"], r["d"])] = r["ms"]

dense = runs("dense.json")
print("dense fwd (torch / ours, >= 1.0 is the target):")
for (n, d), tms in sorted(torch.items()):
    r = find(dense, "fwd/dense/N:%d/d:%d/" % (n, d))
    if r:
        print("  N %5d d %3d: ours %8.2f ms  torch %8.2f ms  %.2f x"
              % (n, d, r[0], tms, tms / r[0]))

pk = runs("peak.json")
one = find(pk, "peak/fma1")
if one:
    peak = one[1]["GFLOPs"]
    print("one core: FMA peak %.1f GFLOP/s (peak/fma1: 12 independent "
          "FMA chains, 2 flops a lane)" % peak)
    for which, label in ((0, "Q.K^T"), (1, "P.V")):
        for d in (64, 128):
            r = find(pk, "kernel/single-core/pv:%d/d:%d/" % (which, d))
            if r:
                g = r[1]["GFLOPs"]
                # of_peak: against the probe run right after each
                # kernel run on the same core (immune to clock drift)
                op = r[1].get("of_peak", g / peak)
                print("  %-5s d %3d: %6.1f GFLOP/s  %3.0f %% of peak "
                      "(%3.0f %% of peak/fma1; target >= 50 %%)"
                      % (label, d, g, 100 * op, 100 * g / peak))

# "rows" mode (cpu-device-run.sh OUT T rows): dense, random_rows and
# user_index, forward and backward, in rows.json
rows = runs("rows.json")


def table(kind):
    """the forward's or backward's results and its dense baseline"""
    res = runs("sparse.json" if kind == "fwd" else "bwd.json") or \
        {k: v for k, v in rows.items() if k.startswith(kind + "/")}
    base = find(res, "%s/dense/N:4096/d:64/" % kind) or \
        find(dense, "%s/dense/N:4096/d:64/" % kind) or \
        find(rows, "%s/dense/N:4096/d:64/" % kind)
    return res, base


for kind in ("fwd", "bwd"):
    res, base = table(kind)
    if not res or not base:
        continue
    print("%s N 4096 d 64, time / (dense %.2f ms x density), target <= 2:"
          % (kind, base[0]))
    for k, (ms, b) in sorted(res.items()):
        pat = k.split("/")[1]
        if "/N:4096/d:64/" not in k or pat == "dense" or \
                "density" not in b:
            continue
        print("  %-13s %8.2f ms  density %.4f  ratio %.2f"
              % (pat, ms, b["density"], ms / (base[0] * b["density"])))

# The per-row patterns again with an ASAM_CPU_* switch (cpu-device-run.sh,
# arch/cpu/fast-rows.c, fast-kmajor.c), against the default of the same
# run; files an older script wrote are read too
VARIANTS = (("rows_l2.json", "ASAM_CPU_ROWS_L2=524288 (512 KB key chunks)"),
            ("rows_l2m.json", "ASAM_CPU_ROWS_L2=1048576 (1 MB key chunks)"),
            ("usort.json", "ASAM_CPU_UINDEX_SORT=1 (sorted USER_INDEX rows)"),
            ("kmoff.json", "ASAM_CPU_ROWS_KMAJOR=0 (the row walk)"),
            ("kmfwd.json", "ASAM_CPU_ROWS_KMAJOR=1 (key-major forward)"),
            ("kmrt.json", "ASAM_CPU_KM_RT=1024 (key-major tiles of 1024 rows)"),
            ("kmrt512.json",
             "ASAM_CPU_KM_RT=512 (key-major tiles of 512 rows)"),
            ("nosplit.json",
             "ASAM_CPU_ROWS_SPLIT=0 (the forward row by row, not in passes)"),
            ("rowsrt.json",
             "ASAM_CPU_ROWS_RT=256 (the forward's passes in tiles of 256)"),
            ("rowspass.json",
             "ASAM_CPU_ROWS_PASS=524288 (the passes in 512 KB key chunks)"))
for fname, label in VARIANTS:
    var = runs(fname)
    if not var:
        continue
    print("%s / default (< 1: the switch pays on this host):" % label)
    for k, (ms, b) in sorted(var.items()):
        kind, pat = k.split("/")[0], k.split("/")[1]
        res, base = table(kind)
        ref = find(res, k.split("/real_time")[0])
        if ref and base and "density" in b:
            print("  %s %-12s %8.2f ms vs %8.2f ms  %.2f  (ratio %.2f)"
                  % (kind, pat, ms, ref[0], ms / ref[0],
                     ms / (base[0] * b["density"])))
