#!/bin/bash
# SPDX-License-Identifier: MIT
#
# bench-gpu.sh: time our CUDA attention (tools/asam-bench --gpu) and the
# peers (PyTorch SDPA's FlashAttention-2 and cuDNN backends, FlexAttention
# with the same token-exact mask: peers.py) in one command on one card,
# and print the ratio tables of issues 5 and 6.  Builds nothing: run it
# from a tree built elsewhere (make; the library dlopens libcuda and
# libnvrtc at run time).
#
#   tools/bench-gpu.sh [-b ASAM_BENCH] [-p PEERS.py] [-r REPS] [-w WARMUP]
#                      [-t PEER_SECONDS] [-P PATTERNS] [-c] [-n] [SHAPE...]
#
#   SHAPE    pattern:B:H:N:d, e.g. local:2:16:16384:128; default: the
#            peers' grid (peers.py GRID) plus random_rows and user_index
#            at 2:16:16384:128
#   -b       the asam-bench binary (tools/asam-bench)
#   -p       peers.py (default: beside this tree, .dev/peers/, ../shared/)
#   -r, -w   timed runs (median) and warm-up runs, ours and peers' (5, 2)
#   -t       stop starting peer runs after this many seconds (150):
#            FlexAttention compiles one kernel per mask and shape
#   -P       peers only for these patterns (comma-separated; default all)
#   -c       check first: selftests/attention-cuda/bin/attn_gpu_test
#   -n       no peers (ours only)
#
# Logs go to $OUT (or /tmp/bench-gpu): ours.jsonl and peers.jsonl (one
# JSON object per line), ours.log, peers.log, check.log.  For every sparse
# shape our dense time at the same B, H, N, d is measured too: it is the
# base of the "within 2x of dense x density" ratio.
set -o pipefail
ARGS="$*"
BENCH=tools/asam-bench
PEERS=
REPS=5
WARM=2
PEER_S=150
CHECK=0
NOPEERS=0
PEER_PATS=dense,local,strided,hierarchical,random,clustered
while getopts b:p:r:w:t:P:cn opt; do
	case $opt in
	b) BENCH=$OPTARG ;;
	p) PEERS=$OPTARG ;;
	r) REPS=$OPTARG ;;
	w) WARM=$OPTARG ;;
	t) PEER_S=$OPTARG ;;
	P) PEER_PATS=$OPTARG ;;
	c) CHECK=1 ;;
	n) NOPEERS=1 ;;
	*) sed -n '3,/^set -o/p' "$0" | sed '$d'; exit 2 ;;
	esac
done
shift $((OPTIND - 1))
if [ -z "$PEERS" ]; then
	for f in peers.py .dev/peers/peers.py ../shared/peers/peers.py \
		 "$(dirname "$0")/../../shared/peers/peers.py"; do
		[ -f "$f" ] && { PEERS=$f; break; }
	done
fi
LOG=${OUT:-/tmp/bench-gpu}
mkdir -p "$LOG"
: > "$LOG/ours.jsonl"
: > "$LOG/ours.log"
: > "$LOG/peers.jsonl"

if [ $# -gt 0 ]; then
	SHAPES=("$@")
else
	SHAPES=(dense:8:16:4096:128 dense:2:16:16384:128 dense:8:16:4096:64
		local:2:16:16384:128 local:1:16:65536:128
		strided:2:16:16384:128 hierarchical:2:16:16384:128
		random:2:16:16384:128 clustered:2:16:16384:128
		random_rows:2:16:16384:128 user_index:2:16:16384:128)
fi
for s in "${SHAPES[@]}"; do
	if ! [[ $s =~ ^[a-z_]+:[0-9]+:[0-9]+:[0-9]+:[0-9]+$ ]]; then
		echo "bench-gpu.sh: bad shape '$s' (pattern:B:H:N:d)" >&2
		exit 2
	fi
done

echo "card: $(nvidia-smi --query-gpu=name,driver_version --format=csv,noheader 2>/dev/null | head -1)"
echo "date: $(date -u '+%Y-%m-%d %H:%M UTC')"
echo "command: $0 $ARGS"

if [ $CHECK = 1 ]; then
	t=selftests/attention-cuda/bin/attn_gpu_test
	if [ -x $t ]; then
		timeout 120 $t > "$LOG/check.log" 2>&1
		echo "check: $t exit $?: $(grep -c '^ok' "$LOG/check.log") ok," \
		     "$(grep -c '^not ok' "$LOG/check.log") not ok"
		grep '^not ok' "$LOG/check.log" | head -10
	else
		echo "check: $t not built"
	fi
fi

# ours: one asam-bench per shape; our dense at every sparse shape's size
declare -A seen
OURS=()
for s in "${SHAPES[@]}"; do
	IFS=: read -r p B H N D <<< "$s"
	for x in "$s" "dense:$B:$H:$N:$D"; do
		[ -n "${seen[$x]}" ] && continue
		seen[$x]=1
		OURS+=("$x")
	done
done
t0=$SECONDS
for s in "${OURS[@]}"; do
	IFS=: read -r p B H N D <<< "$s"
	gates=sparse
	[ "$B:$H:$N:$D" = 2:16:16384:128 ] && gates=sparse,soft,hard
	"$BENCH" --gpu --json --bwd --pattern "$p" --shape "$B,$H,$N,$D" \
		--gate $gates --reps "$REPS" --warmup "$WARM" \
		>> "$LOG/ours.jsonl" 2>> "$LOG/ours.log"
	rc=$?
	[ $rc -ne 0 ] && echo "asam-bench $s: exit $rc (see ours.log)"
	[ $rc -eq 4 ] && { tail -1 "$LOG/ours.log"; break; }
done
echo "ours: ${#OURS[@]} shapes in $((SECONDS - t0)) s"
grep -v '^asam-bench --gpu:' "$LOG/ours.log" | grep -E 'unsupported|error' |
	sed 's/^/  /' | head -20

# peers: the shapes peers.py has a mask for
if [ $NOPEERS = 0 ] && [ -n "$PEERS" ]; then
	t0=$SECONDS
	PYTHONUNBUFFERED=1 python3 - "$PEERS" "$LOG/peers.jsonl" "$REPS" \
		"$WARM" "$PEER_S" "$PEER_PATS" "${SHAPES[@]}" \
		> "$LOG/peers.log" 2>&1 <<'PY'
import importlib.util, json, sys, time
spec = importlib.util.spec_from_file_location("peers", sys.argv[1])
peers = importlib.util.module_from_spec(spec); spec.loader.exec_module(peers)
out, reps, warm, budget = sys.argv[2], int(sys.argv[3]), int(sys.argv[4]), float(sys.argv[5])
bench = peers.bench_ms
peers.bench_ms = lambda fn, warm_=warm, rep=reps: bench(fn, warm=warm, rep=reps)
known = sys.argv[6].split(",")    # peers.py has masks for these six
t0 = time.time()
with open(out, "w") as f:
    for s in sys.argv[7:]:
        p, B, H, N, D = s.split(":")
        if p not in known:
            continue
        for bwd in (False, True):
            if time.time() - t0 > budget:
                r = {"pattern": p, "B": int(B), "H": int(H), "N": int(N), "D": int(D),
                     "bwd": bwd, "error": "skipped: past the -t budget"}
            else:
                try:
                    r = peers.run(p, int(B), int(H), int(N), int(D), bwd=bwd)
                except Exception as ex:
                    r = {"pattern": p, "B": int(B), "H": int(H), "N": int(N),
                         "D": int(D), "bwd": bwd, "error": str(ex)[:200]}
            print(json.dumps(r))
            f.write(json.dumps(r) + "\n")
PY
	echo "peers: exit $? in $((SECONDS - t0)) s ($PEERS)"
	grep -h '"error"' "$LOG/peers.jsonl" | cut -c1-200 | head -5
elif [ $NOPEERS = 0 ]; then
	echo "peers: no peers.py found (-p)"
fi

python3 - "$LOG/ours.jsonl" "$LOG/peers.jsonl" "${SHAPES[@]}" <<'PY'
import json, sys
ours, peer = {}, {}
for l in open(sys.argv[1]):
    r = json.loads(l)
    ours[(r["pattern"], r["gate"], r["B"], r["H"], r["N"], r["d"])] = r
for l in open(sys.argv[2]):
    r = json.loads(l)
    peer[(r["pattern"], r["B"], r["H"], r["N"], r["D"], r["bwd"])] = r
shapes = []
for s in sys.argv[3:]:
    p, B, H, N, D = s.split(":")
    shapes.append((p, int(B), int(H), int(N), int(D)))

def ms(r, k):
    return r.get(k) if r and r.get("status") == "ok" and r.get(k) else None

def f(x, w=8, p=3):
    return ("%*.*f" % (w, p, x)) if x else "%*s" % (w, "-")

def ratio(a, b, w=7):
    return ("%*.2f" % (w, a / b)) if a and b else "%*s" % (w, "-")

name = lambda s: "%s B%d H%d N%d d%d" % s
for bwd, title in ((False, "forward"), (True, "forward+backward")):
    k = "fwdbwd_ms" if bwd else "fwd_ms"
    print("\n%s, bf16, ms (median); x = peer time / our time (> 1: ours faster)" % title)
    print("%-30s %8s %7s %8s %8s %8s %7s %7s %7s" % ("shape", "ours", "TFLOP/s",
          "FA2", "cuDNN", "Flex", "xFA2", "xcuDNN", "xFlex"))
    for s in shapes:
        o = ours.get((s[0], "sparse") + s[1:])
        pr = peer.get(s + (bwd,), {})
        t = ms(o, k)
        if o and o["status"] != "ok":
            print("%-30s %s: %s" % (name(s), o["status"], o["error"][:70]))
            continue
        tf = o.get("fwdbwd_tflops" if bwd else "fwd_tflops") if o else None
        fa, cu, fl = pr.get("sdpa_flash_ms"), pr.get("sdpa_cudnn_ms"), pr.get("flex_ms")
        print("%-30s %s %s %s %s %s %s %s %s" % (name(s), f(t), f(tf, 7, 1),
              f(fa), f(cu), f(fl), ratio(fa, t), ratio(cu, t), ratio(fl, t)))

print("\nsparse patterns vs their floor, our dense time x token density "
      "(issue 6: ratio <= 2)")
print("%-30s %8s %8s %8s %8s %6s %9s %9s %6s" % ("shape", "density", "peers'",
      "fwd", "floor", "ratio", "fwd+bwd", "floor", "ratio"))
for s in shapes:
    if s[0] == "dense":
        continue
    o = ours.get((s[0], "sparse") + s[1:])
    dn = ours.get(("dense", "sparse") + s[1:])
    pd = peer.get(s + (False,), {}).get("token_density")
    if not o or o["status"] != "ok":
        print("%-30s %8s %8s   %s" % (name(s), "%.5f" % o["density"] if o else "-",
              "%.5f" % pd if pd else "-", o["status"] if o else "not run"))
        continue
    row = []
    for k in ("fwd_ms", "fwdbwd_ms"):
        t, d = ms(o, k), ms(dn, k)
        fl = d * o["density"] if d else None
        row += [f(t), f(fl), ratio(t, fl, 6)]
    print("%-30s %8.5f %8s %s" % (name(s), o["density"], "%.5f" % pd if pd else "-",
          " ".join(row)))

print("\nSOFT and HARD at B2 H16 N16384 d128 (SOFT: g = 0.5; HARD: tau 0.5, "
      "every g = 1)")
print("%-13s %9s %9s %12s %9s %9s %12s" % ("pattern", "SOFT fwd", "dense fwd",
      "x (<=1.15)", "HARD fwd", "SPARSE", "x (<=1.05)"))
for p in dict.fromkeys(s[0] for s in shapes):
    key = (2, 16, 16384, 128)
    so, hd = ours.get((p, "soft") + key), ours.get((p, "hard") + key)
    sp, dn = ours.get((p, "sparse") + key), ours.get(("dense", "sparse") + key)
    if not (so or hd):
        continue
    if not ms(so, "fwd_ms") and not ms(hd, "fwd_ms"):
        print("%-13s %s" % (p, (so or hd)["status"]))
        continue
    a, b, c, e = ms(so, "fwd_ms"), ms(dn, "fwd_ms"), ms(hd, "fwd_ms"), ms(sp, "fwd_ms")
    print("%-13s %s %s %s %s %s %s" % (p, f(a, 9), f(b, 9), ratio(a, b, 12),
          f(c, 9), f(e, 9), ratio(c, e, 12)))
PY
