#!/bin/bash
# SPDX-License-Identifier: MIT
#
# bench-gpu.sh: check and time our attention kernels and the peers
# (PyTorch SDPA's FlashAttention-2 and cuDNN backends, FlexAttention with
# the same mask) in one command on one card, and print the ratios.
# Builds nothing: the binaries come from tools/kdev/build.sh (or, once the
# CUDA backend is wired, tools/asam-bench), built on the host.
#
#	tools/bench-gpu.sh [BINDIR [PEERS.py]]     (logs to $OUT or /tmp)
set -o pipefail
BIN=${1:-.dev/kernels}
PEERS=${2:-$BIN/peers.py}
LOG=${OUT:-/tmp}

echo "card: $(nvidia-smi --query-gpu=name,driver_version --format=csv,noheader)"
echo "date: $(date -u '+%Y-%m-%d %H:%M UTC')"
"$BIN/fwd-check" "$BIN/cubin" check > "$LOG/check.log" 2>&1
echo "check: $(tail -1 "$LOG/check.log")"
grep FAIL "$LOG/check.log" | head -20
"$BIN/fwd-check" "$BIN/cubin" bwd > "$LOG/bwd.log" 2>&1
echo "backward: $(tail -1 "$LOG/bwd.log")"
grep -v "^ok" "$LOG/bwd.log" | head -30
"$BIN/fwd-check" "$BIN/cubin" bench > "$LOG/bench.log" 2>&1 ||
	echo "bench failed: $(tail -2 "$LOG/bench.log")"
"$BIN/fwd-check" "$BIN/cubin" benchbwd >> "$LOG/bench.log" 2>&1 ||
	echo "bench fwd+bwd failed: $(tail -2 "$LOG/bench.log")"

PYTHONUNBUFFERED=1 python3 - "$PEERS" "$LOG/bench.log" "$LOG/peers.log" <<'PY'
import importlib.util, json, re, sys
spec = importlib.util.spec_from_file_location("peers", sys.argv[1])
peers = importlib.util.module_from_spec(spec); spec.loader.exec_module(peers)
shapes = [("dense", 8, 16, 4096, 128), ("dense", 2, 16, 16384, 128),
          ("dense", 8, 16, 4096, 64), ("local", 2, 16, 16384, 128),
          ("local", 1, 16, 65536, 128), ("random", 2, 16, 16384, 128)]
res, resb = {}, {}
with open(sys.argv[3], "w") as f:
    for bwd, dst in ((False, res), (True, resb)):
        for s in shapes:
            try:
                r = peers.run(*s, bwd=bwd)
            except Exception as ex:
                r = {"error": str(ex)[:200]}
            dst[s] = r
            f.write(json.dumps(r) + "\n")
ours = {}
pat = re.compile(r"BENCH (fwd|fwdbwd) bf16 d(\d+) (\w+) (\w+) c(\d) B(\d+) H(\d+) N(\d+) m(\d+) w(\d+): ([\d.]+) ms")
for l in open(sys.argv[2]):
    m = pat.match(l)
    if not m:
        continue
    kind, d, p, g, c, B, H, N, bm, w, ms = m.groups()
    key = (kind, p, g, int(c), int(B), int(H), int(N), int(d))
    if key not in ours or float(ms) < ours[key][0]:
        ours[key] = (float(ms), "%sx%s" % (bm, w))
for kind, title, R in (("fwd", "forward", res), ("fwdbwd", "forward+backward", resb)):
  print("\n%s, bf16, ms (median); ratio = peer time / our time; ours = best tile (BLOCK_M x warps)" % title)
  print("%-28s %8s %6s %8s %8s %8s %7s %7s %7s" % ("shape", "ours", "tile", "FA2", "cuDNN", "Flex",
        "xFA2", "xcuDNN", "xFlex"))
  for s in shapes:
    p, B, H, N, D = s
    o = ours.get((kind, p, "dense" if p == "dense" else "sparse", 0, B, H, N, D))
    r = R[s]
    def x(k):
        v = r.get(k)
        return ("%8.3f" % v) if v else "%8s" % "-"
    def q(k):
        v = r.get(k)
        return ("%7.2f" % (v / o[0])) if v and o else "%7s" % "-"
    print("%-28s %8s %6s %s %s %s %s %s %s" % ("%s B%d H%d N%d d%d" % s,
          "%.3f" % o[0] if o else "-", o[1] if o else "-", x("sdpa_flash_ms"),
          x("sdpa_cudnn_ms"), x("flex_ms"), q("sdpa_flash_ms"), q("sdpa_cudnn_ms"), q("flex_ms")))
print("\nSOFT and HARD against our own SPARSE/DENSE (B2 H16 N16384 d128):")
dn = ours.get(("fwd", "dense", "dense", 0, 2, 16, 16384, 128))
so_b = ours.get(("fwdbwd", "local", "soft", 0, 2, 16, 16384, 128))
if so_b:
    print("  local   SOFT fwd+bwd %.3f ms (tile %s)" % so_b)
for p in ("dense", "local", "random"):
    so = ours.get(("fwd", p, "soft", 0, 2, 16, 16384, 128))
    sp = ours.get(("fwd", p, "sparse", 0, 2, 16, 16384, 128))
    hd = ours.get(("fwd", p, "hard", 0, 2, 16, 16384, 128))
    if so and dn:
        print("  %-7s SOFT %.3f ms = %.2f x our dense fwd" % (p, so[0], so[0] / dn[0]))
    if hd and sp:
        print("  %-7s HARD (all heads sparse) %.3f ms = %.3f x SPARSE %.3f ms" % (p, hd[0], hd[0] / sp[0], sp[0]))
PY
