#!/usr/bin/env python3
# SPDX-License-Identifier: MIT
"""PyTorch's CPU scaled_dot_product_attention, the baseline of
Documentation/benchmarks.rst: fp32, B=1, the given heads and thread count,
non-causal, median of timed calls after a warm-up.  Prints JSON lines."""
import argparse
import json
import time

import torch
import torch.nn.functional as F

ap = argparse.ArgumentParser()
ap.add_argument("--threads", type=int, default=16)
ap.add_argument("--heads", type=int, default=16)
ap.add_argument("--sizes", default="1024:64,4096:64,4096:128,8192:64,8192:128")
ap.add_argument("--reps", type=int, default=5)
a = ap.parse_args()

torch.set_num_threads(a.threads)
print(json.dumps({"torch": torch.__version__, "threads":
                  torch.get_num_threads(), "config":
                  torch.__config__.parallel_info().splitlines()[:6]}))
for spec in a.sizes.split(","):
    n, d = (int(x) for x in spec.split(":"))
    g = torch.Generator().manual_seed(0)
    q, k, v = (torch.randn(1, a.heads, n, d, generator=g) for _ in range(3))
    with torch.no_grad():
        F.scaled_dot_product_attention(q, k, v)
        ts = []
        for _ in range(a.reps):
            t0 = time.perf_counter()
            F.scaled_dot_product_attention(q, k, v)
            ts.append(time.perf_counter() - t0)
    ts.sort()
    t = ts[len(ts) // 2]
    flops = 4.0 * a.heads * n * n * d
    print(json.dumps({"op": "sdpa_fwd", "N": n, "d": d, "heads": a.heads,
                      "ms": t * 1e3, "GFLOPs": flops / t * 1e-9}),
          flush=True)
