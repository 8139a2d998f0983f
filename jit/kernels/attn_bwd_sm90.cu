/* SPDX-License-Identifier: MIT */
/*
 * Attention backward for Hopper (sm_90a) on warpgroup MMA: the
 * non-deterministic mode of a walk without lists (the DENSE pattern or
 * the DENSE gate), as attn_bwd_nd.cuh's 128-key kernel computes it, with
 * every tile product on wgmma instead of mma.sync.
 *
 * A block owns BLOCK_N = 128 keys of one (b, kv head); each of its two
 * warpgroups owns 64 of them (the M of a wgmma).  It walks the 64-row
 * query tiles of every query head of the GQA group; per tile, with Q, dO
 * (two stages, the next in flight) and K, V in shared memory in the
 * 128-byte swizzled layout of attn_sm90.cuh:
 *
 *	S^T = K Q^T, dP^T = V dO^T	m64n64, A = K or V, B = Q or dO
 *					(all K-major)
 *	P^T, dS^T			ds_tile() in registers (rows = keys)
 *	dV += P^T dO, dK += dS^T Q	m64n{d}, A = P^T or dS^T in registers,
 *					B = dO or Q (MN-major: transposed)
 *	dQ(tile) = dS K			m64n64, A = dS^T staged in shared
 *					memory (MN-major), B = K (MN-major)
 *
 * Computing the transposes keeps the keys on the M side, so P^T and dS^T
 * feed the next MMA from registers without a shuffle.  dQ is added in
 * fp32 into p.dq_acc with vector reductions (attn_bwd.cu's dqcvt kernel
 * scales it into dQ's dtype).  Its product is split between the
 * warpgroups: at d = 128 each takes 64 of the head dim's columns over all
 * 128 keys, at d = 64 each its own 64 keys over all columns (twice the
 * reductions, half the size).
 *
 * Preamble: HEAD_DIM, DTYPE, CAUSAL, GATE_MODE (SPARSE, DENSE, SOFT),
 * PATTERN (DENSE), BLOCK_M = 64, BLOCK_N = 128, NUM_WARPS = 8.
 */
#include "attn_sm90.cuh"

#define ATTN_THREADS 256
#define NT_S (BLOCK_M / 8)	/* S^T's 8-column blocks: the query tile */
#define NT_O (HEAD_DIM / 8)
#define KS_D (HEAD_DIM / 16)
#define KS_M (BLOCK_M / 16)

#if BLOCK_M != 64 || BLOCK_N != 128 || NUM_WARPS != 8
#error "the Hopper backward runs 64-row query tiles by 128 keys, 8 warps"
#endif
#if HEAD_DIM != 64 && HEAD_DIM != 128
#error "HEAD_DIM must be 64 or 128"
#endif
#if PATTERN != ATTN_P_DENSE
#error "the Hopper backward walks without lists"
#endif
#if GATE_MODE == ATTN_G_HARD
#error "HARD has no backward"
#endif

#include "attn_bwd_tile.cuh"

#if HEAD_DIM == 128
#define WG_RS wgmma_rs_n128
#else
#define WG_RS wgmma_rs_n64
#endif

/* tile bytes: every tile starts on a 1024-byte boundary */
#define KV_BYTES (BLOCK_N * HEAD_DIM * 2)
#define Q_BYTES (BLOCK_M * HEAD_DIM * 2)
#define DS_BYTES (BLOCK_N * BLOCK_M * 2)	/* dS^T: a 128-byte row a key */

/*
 * s (64 keys x 64 queries) = A B^T, A = this warpgroup's 64 rows of the
 * 128-row tile at @a (K or V), B = the 64-row tile at @b (Q or dO)
 */
static __device__ __forceinline__ void gemm_t(float (*s)[4], u32 a, u32 b,
					      int wg)
{
#pragma unroll
	for (int ks = 0; ks < KS_D; ks++) {
		u32 pa = a + (ks >> 2) * BLOCK_N * 128 + wg * 64 * 128 +
			 (ks & 3) * 32;
		u32 pb = b + (ks >> 2) * BLOCK_M * 128 + (ks & 3) * 32;

		wgmma_ss_n64(s, wg_desc(pa, 16, 1024), wg_desc(pb, 16, 1024),
			     ks);
	}
}

/* acc (64 keys x d) += A B, A = @fr (64 x 64, registers), B = tile @b */
static __device__ __forceinline__ void gemm_acc(float (*acc)[4],
						u32 (*fr)[4], u32 b)
{
#pragma unroll
	for (int ks = 0; ks < KS_M; ks++)
		WG_RS(acc, fr[ks],
		      wg_desc(b + ks * 16 * 128, BLOCK_M * 128, 1024));
}

/*
 * This warp's rows of dS^T (16-bit, as the A fragments @da hold them) into
 * the swizzled [128 keys][64 queries] tile at @sds: key row r's 16-byte
 * chunk c at c ^ (r & 7), so each store instruction hits 32 banks.
 */
static __device__ __forceinline__ void store_dst(unsigned char *sds,
						 u32 (*da)[4], int r0, int lane)
{
	const int gr = lane >> 2, tg = lane & 3;

#pragma unroll
	for (int ks = 0; ks < KS_M; ks++)
#pragma unroll
		for (int x = 0; x < 4; x++) {
			int r = r0 + gr + (x & 1) * 8, c = 2 * ks + (x >> 1);

			*(u32 *)(sds + r * 128 + ((c ^ (r & 7)) << 4) +
				 4 * tg) = da[ks][x];
		}
}

/*
 * This warpgroup's share of dQ(tile) = dS K, added into the workspace
 * rows from @q0 (columns from @c0): dS^T and K are both MN-major here.
 */
static __device__ __forceinline__ void add_dq(const attn_bwd_params &p,
					      u32 sds, u32 ck, int b, int h,
					      int q0, int wg, int lane)
{
	const int wq = (threadIdx.x >> 5) & 3, tg = lane & 3;
	/* d 128: the warpgroup's 64 columns; d 64: its 64 keys */
	const int KS = HEAD_DIM == 128 ? BLOCK_N / 16 : 4;
	const u32 a0 = sds + (HEAD_DIM == 128 ? 0 : wg * 64 * 128);
	const u32 b0 = ck + (HEAD_DIM == 128 ? wg * BLOCK_N * 128 :
			     wg * 64 * 128);
	const int c0 = HEAD_DIM == 128 ? wg * 64 : 0;
	float acc[8][4];

	wg_fence();
#pragma unroll
	for (int ks = 0; ks < KS; ks++)
		wgmma_ss_n64<1, 1>(acc, wg_desc(a0 + ks * 16 * 128,
						BLOCK_N * 128, 1024),
				   wg_desc(b0 + ks * 16 * 128, BLOCK_N * 128,
					   1024), ks);
	wg_commit();
	wg_wait<0>();
	wg_pin<8>(acc);

	/*
	 * Lane pairs (tg, tg ^ 1) trade halves: the even lane adds row gr,
	 * the odd one row gr + 8, four adjacent columns each.
	 */
	const bool odd = tg & 1;
	const int i = q0 + wq * 16 + (lane >> 2) + (odd ? 8 : 0);
	float *row = p.dq_acc + (((i64)b * p.Hq + h) * p.Nq + i) * HEAD_DIM +
		     c0 + 2 * (tg & 2);

#pragma unroll
	for (int n = 0; n < 8; n++) {
		float x = odd ? acc[n][0] : acc[n][2];
		float y = odd ? acc[n][1] : acc[n][3];
		float rx = __shfl_xor_sync(0xffffffffu, x, 1);
		float ry = __shfl_xor_sync(0xffffffffu, y, 1);

		if (i >= p.Nq)
			continue;
		if (odd)
			red_add_f32x4(row + n * 8, rx, ry, acc[n][2],
				      acc[n][3]);
		else
			red_add_f32x4(row + n * 8, acc[n][0], acc[n][1], rx,
				      ry);
	}
}

extern "C" __global__ void __launch_bounds__(ATTN_THREADS, 1)
asam_attn_bwd_sm90_kernel(const attn_bwd_params p)
{
	extern __shared__ __align__(1024) unsigned char attn_smem[];
	const int b = blockIdx.z, hk = blockIdx.y, kt = blockIdx.x;
	const int tid = threadIdx.x, lane = tid & 31;
	const int wg = tid >> 7, wq = (tid >> 5) & 3;
	const int G = p.Hq / p.Hkv;
	const int lq = p.len_q ? p.len_q[b * p.lq_s] : p.Nq;
	const int lk = p.len_k ? p.len_k[b * p.lk_s] : p.Nk;
	const int k0 = kt * BLOCK_N, off = p.Nk - p.Nq;
	/* the dynamic window is 16-byte aligned: round up to 1024 */
	const u32 raw = smem_u32(attn_smem);
	const u32 base = (raw + 1023) & ~1023u;
	const u32 sk = base, sv = sk + KV_BYTES, sq = sv + KV_BYTES;
	const u32 sdo = sq + 2 * Q_BYTES, sds = sdo + 2 * Q_BYTES;
	unsigned char *gds = attn_smem + (sds - raw);
	float *sL = (float *)(attn_smem + (sds + DS_BYTES - raw)); /* [2][256] */
	const u16 *qg = (const u16 *)p.q + b * p.q_sb;
	const u16 *dog = (const u16 *)p.d_o + b * p.do_sb;
	/* SPARSE: the sparse branch only; SOFT: both, the same pairs */
	const bool in_s = GATE_MODE != ATTN_G_DENSE;
	float dk[NT_O][4], dv[NT_O][4], nl[4];
	int qt_lo, qt_hi, nq, tot;

	kv_begin(k0, off, lq, lk, &qt_lo, &qt_hi, dk, dv);
	nq = qt_hi > qt_lo ? qt_hi - qt_lo : 0;
	tot = nq * G;
	load_sw<BLOCK_N, ATTN_THREADS>(sk, (const u16 *)p.k + b * p.k_sb +
				       hk * p.k_sh, p.k_sn, k0, p.Nk);
	load_sw<BLOCK_N, ATTN_THREADS>(sv, (const u16 *)p.v + b * p.v_sb +
				       hk * p.v_sh, p.v_sn, k0, p.Nk);
	if (tot) {
		int h = hk * G, q0 = qt_lo * BLOCK_M;

		load_sw<BLOCK_M, ATTN_THREADS>(sq, qg + h * p.q_sh, p.q_sn,
					       q0, p.Nq);
		load_sw<BLOCK_M, ATTN_THREADS>(sdo, dog + h * p.do_sh,
					       p.do_sn, q0, p.Nq);
		if (tid < BLOCK_M) {
			bwd_rowstats(p, b, h, q0 + tid, nl);
			for (int x = 0; x < 4; x++)
				sL[x * 64 + tid] = nl[x];
		}
	}
	cp_async_commit();

	/*
	 * Step t: query tile qt_lo + t % nq of head hk * G + t / nq, staged
	 * in buffer t & 1; the next one loads while this one computes.
	 */
	for (int t = 0; t < tot; t++) {
		const int buf = t & 1;
		const int h = hk * G + t / nq;
		const int q0 = (qt_lo + t % nq) * BLOCK_M;
		const float g = GATE_MODE == ATTN_G_SOFT ?
				p.gate[b * p.g_sb + h * p.g_sh] : 0.f;
		const float ws = GATE_MODE == ATTN_G_SPARSE ? 1.f : g;
		const float wd = GATE_MODE == ATTN_G_DENSE ? 1.f : 1.f - g;
		const u32 cq = sq + buf * Q_BYTES, cdo = sdo + buf * Q_BYTES;
		const float *cL = sL + buf * 256;
		float st[NT_S][4], dpt[NT_S][4];
		u32 pa[KS_M][4], da[KS_M][4];

		/* tile t landed; step t - 1's MMAs and dS^T reads are done */
		cp_async_wait_all();
		fence_proxy_async();
		__syncthreads();
		if (t + 1 < tot) {
			const int nh = hk * G + (t + 1) / nq;
			const int nq0 = (qt_lo + (t + 1) % nq) * BLOCK_M;

			load_sw<BLOCK_M, ATTN_THREADS>(sq + (buf ^ 1) * Q_BYTES,
						       qg + nh * p.q_sh,
						       p.q_sn, nq0, p.Nq);
			load_sw<BLOCK_M, ATTN_THREADS>(sdo + (buf ^ 1) *
						       Q_BYTES,
						       dog + nh * p.do_sh,
						       p.do_sn, nq0, p.Nq);
			if (tid < BLOCK_M)
				bwd_rowstats(p, b, nh, nq0 + tid, nl);
		}
		cp_async_commit();

		wg_fence();
		gemm_t(st, sk, cq, wg);
		gemm_t(dpt, sv, cdo, wg);
		wg_commit();
		wg_wait<0>();
		wg_pin<NT_S>(st);
		wg_pin<NT_S>(dpt);

		ds_tile(p, st, dpt, cL, h, q0, k0 + wg * 64 + wq * 16, lq, lk,
			off, in_s, ATTN_E_FULL, wd, ws, lane);
#pragma unroll
		for (int ks = 0; ks < KS_M; ks++) {
			p_frag(pa[ks], st, ks);
			p_frag(da[ks], dpt, ks);
		}
		store_dst(gds, da, wg * 64 + wq * 16, lane);

		wg_fence();
		gemm_acc(dv, pa, cdo);
		gemm_acc(dk, da, cq);
		wg_commit();

		/* dS^T of both warpgroups, visible to the async proxy */
		fence_proxy_async();
		__syncthreads();
		add_dq(p, sds, sk, b, h, q0, wg, lane);	/* waits for all */
		wg_pin<NT_O>(dv);
		wg_pin<NT_O>(dk);
		if (t + 1 < tot && tid < BLOCK_M)
			for (int x = 0; x < 4; x++)
				sL[(buf ^ 1) * 256 + x * 64 + tid] = nl[x];
	}
	cp_async_wait_all();
	store_rows((u16 *)p.dk + b * p.dk_sb + hk * p.dk_sh, p.dk_sn,
		   k0 + wg * 64 + wq * 16, p.Nk, dk, p.scale, lane, p.Nk);
	store_rows((u16 *)p.dv + b * p.dv_sb + hk * p.dv_sh, p.dv_sn,
		   k0 + wg * 64 + wq * 16, p.Nk, dv, 1.f, lane, p.Nk);
}
