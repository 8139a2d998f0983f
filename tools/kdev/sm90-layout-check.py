#!/usr/bin/env python3
# SPDX-License-Identifier: MIT
#
# sm90-layout-check.py: a host-side check of the wgmma forward's shared-memory
# addressing (jit/kernels/attn_sm90.cuh, attn_fwd_sm90.cu) without a GPU.
# Places Q, K and V the way load_sw() does, then reads the operands of every
# wgmma back through the PTX ISA's canonical 128B-swizzle layouts (K-major:
# ((8,m),(T,2k)):((8T,SBO),(1,T)); MN-major: ((T,8,m),(8,k)):((1,T,LBO),(8T,SBO));
# Swizzle<3,4,3> on the byte address) with the kernel's descriptor values, and
# compares S = Q K^T and O = P V with plain products.  Needs numpy.
#
#	tools/kdev/sm90-layout-check.py [HEAD_DIM]
import sys

import numpy as np
err = []
rng = np.random.default_rng(0)
D, BM, BN = int(sys.argv[1]) if len(sys.argv) > 1 else 128, 128, 128
QB, KVB = BM * D * 2, BN * D * 2
smem = np.zeros(QB + 5 * KVB, dtype=np.float64)   # indexed by byte/2

def load_sw(dst, X, ROWS):
    CH = D // 8
    for r in range(ROWS):
        for ch in range(CH):
            at = (ch >> 3) * ROWS * 128 + r * 128 + (((ch & 7) ^ (r & 7)) << 4)
            smem[(dst + at) // 2:(dst + at) // 2 + 8] = X[r, ch * 8:ch * 8 + 8]

def sw(a):
    return a ^ (((a >> 7) & 7) << 4)

def fetch_k(start, lbo, sbo, R):       # K-major: [R rows][16 k]
    out = np.zeros((R, 16))
    for mn in range(R):
        for k in range(16):
            off = 2 * (64 * (mn % 8) + (k % 8) + 8 * (k // 8)) + sbo * (mn // 8)
            out[mn, k] = smem[sw(start + off) // 2]
    return out

def fetch_mn(start, lbo, sbo, N):      # MN-major: [16 k][N]
    out = np.zeros((16, N))
    for k in range(16):
        for n in range(N):
            off = 2 * ((n % 8) + 8 * ((n // 8) % 8)) + lbo * (n // 64) + 2 * 64 * (k % 8) + sbo * (k // 8)
            out[k, n] = smem[sw(start + off) // 2]
    return out

Q = rng.standard_normal((BM, D)); K = rng.standard_normal((BN, D)); V = rng.standard_normal((BN, D))
sq, sk = 0, QB
sv = sk + 2 * KVB
buf = 1
load_sw(sq, Q, BM); load_sw(sk + buf * KVB, K, BN); load_sw(sv + 2 * KVB, V, BN)
ck, cv = sk + buf * KVB, sv + 2 * KVB
for wg in range(2):
    S = np.zeros((64, BN))
    for ks in range(D // 16):
        qa = sq + (ks >> 2) * BM * 128 + wg * 64 * 128 + (ks & 3) * 32
        kb = ck + (ks >> 2) * BN * 128 + (ks & 3) * 32
        A = fetch_k(qa, 16, 1024, 64); B = fetch_k(kb, 16, 1024, BN)
        S += A @ B.T
    ref = Q[wg * 64:wg * 64 + 64] @ K.T
    err.append(np.abs(S - ref).max())
    print("S wg", wg, err[-1])
P = rng.standard_normal((64, BN))
O = np.zeros((64, D))
for ks in range(BN // 16):
    B = fetch_mn(cv + ks * 16 * 128, BN * 128, 1024, D)
    O += P[:, ks * 16:ks * 16 + 16] @ B
err.append(np.abs(O - P @ V).max())
print("O", err[-1])
ok = max(err) < 1e-9
print("layout check d%d: %s" % (D, "ok" if ok else "FAILED"))
sys.exit(0 if ok else 1)
