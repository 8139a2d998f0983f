#!/bin/bash
# SPDX-License-Identifier: MIT
#
# sm90-check.sh: on an H100/H200, check the wgmma forward (attn_sm90_gpu_test),
# the DENSE cases of the general test with it on, then time it against the
# mma.sync forward (ASAM_CUDA_SM90=0) and PyTorch SDPA's FlashAttention-2
# and cuDNN backends, all in one process order on one card.
#
#	tools/gpu/sm90-check.sh [PEERS.py]	(run from the binaries' root;
#						logs to $OUT or /tmp)
set -o pipefail
PEERS=${1:-peers.py}
LOG=${OUT:-/tmp}
T=selftests/attention-cuda/bin
export ASAM_CACHE_DIR=${ASAM_CACHE_DIR:-/tmp/asam-cache}

echo "card: $(nvidia-smi --query-gpu=name,driver_version --format=csv,noheader)"
echo "date: $(date -u '+%Y-%m-%d %H:%M UTC')"
# both kernels' checks at once: the fp64 reference on the CPU dominates
ASAM_CUDA_SM90=1 timeout 110 $T/attn_sm90_gpu_test > "$LOG/sm90-test.log" 2>&1 &
ASAM_CUDA_SM90=2 timeout 110 $T/attn_sm90_gpu_test > "$LOG/sm90s-test.log" 2>&1 &
wait
for k in sm90 sm90s; do
	echo "$k test: $(grep -c '^ok' "$LOG/$k-test.log") ok, $(grep -c '^not ok' "$LOG/$k-test.log") not ok"
	grep -v "^ok" "$LOG/$k-test.log" | head -12
done
timeout 40 $T/attn_sm90_gpu_test bench > "$LOG/sm90-bench.log" 2>&1 ||
	echo "bench failed: $(tail -3 "$LOG/sm90-bench.log")"

PYTHONUNBUFFERED=1 timeout 70 python3 - "$PEERS" "$LOG/sm90-bench.log" <<'PY'
import importlib.util, re, sys
spec = importlib.util.spec_from_file_location("peers", sys.argv[1])
peers = importlib.util.module_from_spec(spec); spec.loader.exec_module(peers)
import torch, torch.nn.functional as F
from torch.nn.attention import sdpa_kernel, SDPBackend

def sdpa(B, H, N, d, causal):
    """SDPA's FlashAttention-2 and cuDNN backends, peers.bench_ms timing."""
    q, k, v = [torch.randn(B, H, N, d, device="cuda", dtype=torch.bfloat16) for _ in range(3)]
    res = {}
    for be, name in ((SDPBackend.FLASH_ATTENTION, "flash"), (SDPBackend.CUDNN_ATTENTION, "cudnn")):
        try:
            with sdpa_kernel([be]):
                res[name] = peers.bench_ms(lambda: F.scaled_dot_product_attention(q, k, v, is_causal=causal),
                                           warm=3, rep=20)
        except Exception as ex:
            print(name, "refused:", str(ex)[:120])
    return res

ours = {}
pat = re.compile(r"BENCH fwd bf16 d(\d+) B(\d+) H(\d+) N(\d+) c(\d) (\w+): ([\d.]+) ms")
for l in open(sys.argv[2]):
    m = pat.match(l)
    if m:
        d, B, H, N, c, who, ms = m.groups()
        ours[(int(B), int(H), int(N), int(d), int(c), who)] = float(ms)
print("forward bf16, TFLOP/s (median ms); x = peer time / our faster sm90 kernel's")
print("%-22s %14s %14s %14s %14s %14s %6s %6s %6s" % ("B,H,N,d causal", "sm90", "sm90-stagger",
      "mma.sync", "SDPA-FA2", "cuDNN", "xmma", "xFA2", "xcuDNN"))
for (B, H, N, d) in ((8, 16, 4096, 128), (2, 16, 16384, 128), (8, 16, 4096, 64)):
    for c in (0, 1):
        fl = 4.0 * B * H * N * N * d / (2 if c else 1)
        r = sdpa(B, H, N, d, bool(c))
        t = [ours.get((B, H, N, d, c, "sm90")), ours.get((B, H, N, d, c, "sm90s")),
             ours.get((B, H, N, d, c, "mma")), r.get("flash"), r.get("cudnn")]
        if t[1] and (not t[0] or t[1] < t[0]):  # ratios for the faster one
            t[0], t[1] = t[1], t[0]
        f = lambda x: "%6.1f (%5.2f)" % (fl / x / 1e9, x) if x else "%14s" % "-"
        x = lambda i: "%6.2f" % (t[i] / t[0]) if t[0] and t[i] else "%6s" % "-"
        print("%-22s %s %s %s %s %s %s %s %s" % ("%d,%d,%d,%d %s" % (B, H, N, d, "c" if c else "-"),
              f(ours.get((B, H, N, d, c, "sm90"))), f(ours.get((B, H, N, d, c, "sm90s"))),
              f(t[2]), f(t[3]), f(t[4]), x(2), x(3), x(4)))
PY
