/* SPDX-License-Identifier: MIT */
/*
 * Attention backward on tensor cores, in the FlashAttention-2 manner:
 * probabilities are recomputed from Q, K and the forward's log-sum-exps,
 * and the row sums D_i = <dO_i, X_i> of each branch X come from the
 * preprocess (attn_fwd.cu built with BWD_PRE).  For a branch with weight
 * w (SPARSE 1, DENSE 1, SOFT g and 1 - g):
 *
 *	dS = w P (dO V^T - D),	dQ = sigma dS K,  dK = sigma dS^T Q,
 *	dV = (w P)^T dO
 *
 * summed over the branches.  Two kernels share nothing but inputs: dQ per
 * (b, h, 64-row query tile) walking its key tiles, dK and dV per (b, kv
 * head, 64-key tile) walking the query tiles of every query head of its
 * GQA group.  No atomics: the result is bit-identical run to run, which is
 * the deterministic mode.  A third, one-warp kernel sums dg_bh = sum_i
 * (<dO_i, S_i> - <dO_i, A_i>) in a fixed order.  The non-deterministic
 * mode (attn_bwd_nd.cuh) fuses the first two, adding dQ with atomics.
 *
 * Preamble: HEAD_DIM, DTYPE, CAUSAL, GATE_MODE (SPARSE, DENSE, SOFT),
 * PATTERN, BLOCK_M = BLOCK_N = 64, NUM_WARPS = 4.
 */
#include "attn_common.cuh"

#define ATTN_THREADS (NUM_WARPS * 32)
#define NT_S (BLOCK_N / 8)
#define NT_O (HEAD_DIM / 8)
#define KS_D (HEAD_DIM / 16)
#define KS_N (BLOCK_N / 16)

#if BLOCK_M != 64 || BLOCK_N != 64 || NUM_WARPS != 4
#error "backward tiles are 64 x 64 with 4 warps"
#endif
#if GATE_MODE == ATTN_G_HARD
#error "HARD has no backward"
#endif

#include "attn_bwd_tile.cuh"

/*
 * acc[16 x 64] (+)= A[16 rows of sa, warp's rows] . B^T where B is 64 rows
 * of sb: both [row][d] in shared memory (S = Q K^T, dP = dO V^T and their
 * transposes all have this shape).
 */
static __device__ __forceinline__ void gemm_abt(float (*acc)[4], const u16 *sa,
						const u16 *sb, int arow0,
						int lane)
{
#pragma unroll
	for (int n = 0; n < NT_S; n++)
		acc[n][0] = acc[n][1] = acc[n][2] = acc[n][3] = 0.f;
#pragma unroll
	for (int ks = 0; ks < KS_D; ks++) {
		u32 a[4];
		int r = arow0 + (lane & 7) + ((lane >> 3) & 1) * 8;

		ldsm_x4(a, sa + r * ATTN_LDS + ks * 16 + (lane >> 4) * 8);
#pragma unroll
		for (int n2 = 0; n2 < NT_S / 2; n2++) {
			u32 bk[4];
			int rr = n2 * 16 + (lane & 7) + (lane >> 4) * 8;
			int c = ks * 16 + ((lane >> 3) & 1) * 8;

			ldsm_x4(bk, sb + rr * ATTN_LDS + c);
			mma16816(acc[2 * n2], a, bk);
			mma16816(acc[2 * n2 + 1], a, bk + 2);
		}
	}
}

/* acc[16 x d] += A(regs, 16 x 64 from s) . B[64 x d] (shared, [row][d]) */
static __device__ __forceinline__ void gemm_ab(float (*acc)[4], float (*s)[4],
					       const u16 *sb, int lane)
{
#pragma unroll
	for (int ks = 0; ks < KS_N; ks++) {
		u32 a[4];

		p_frag(a, s, ks);
#pragma unroll
		for (int n2 = 0; n2 < NT_O / 2; n2++) {
			u32 bv[4];
			int r = ks * 16 + (lane & 7) + ((lane >> 3) & 1) * 8;
			int c = n2 * 16 + (lane >> 4) * 8;

			ldsm_x4_t(bv, sb + r * ATTN_LDS + c);
			mma16816(acc[2 * n2], a, bv);
			mma16816(acc[2 * n2 + 1], a, bv + 2);
		}
	}
}

#include "attn_cols_bwd.cuh"

/* ------------------------------------------------------------------------ */
/* dQ                                                                       */

extern "C" __global__ void __launch_bounds__(ATTN_THREADS)
asam_attn_bwd_dq_kernel(const attn_bwd_params p)
{
	extern __shared__ __align__(16) u16 attn_smem[];
	const int b = blockIdx.z, h = blockIdx.y, qt = blockIdx.x;
	const int warp = threadIdx.x >> 5, lane = threadIdx.x & 31;
	const int gr = lane >> 2, tg = lane & 3;
	const int hk = h / (p.Hq / p.Hkv);
	const int lq = p.len_q ? p.len_q[b * p.lq_s] : p.Nq;
	const int lk = p.len_k ? p.len_k[b * p.lk_s] : p.Nk;
	const int q0 = qt * BLOCK_M, off = p.Nk - p.Nq;
	const int qlast = (q0 + BLOCK_M < lq ? q0 + BLOCK_M : lq) - 1;
	const int lim_max = q0 < lq ? row_limit(qlast, lq, lk, p.Nq, p.Nk) : 0;
	const int nkt = (lim_max + BLOCK_N - 1) / BLOCK_N;
	const bool use_list = PATTERN != ATTN_P_DENSE &&
			      GATE_MODE != ATTN_G_DENSE;
	const bool list_only = GATE_MODE == ATTN_G_SPARSE && use_list;
	const float g = GATE_MODE == ATTN_G_SOFT ?
			p.gate[b * p.g_sb + h * p.g_sh] : 0.f;
	const float ws = GATE_MODE == ATTN_G_SPARSE ? 1.f : g;
	const float wd = GATE_MODE == ATTN_G_DENSE ? 1.f : 1.f - g;
	u16 *sq = attn_smem, *sdo = sq + BLOCK_M * ATTN_LDS;
	u16 *sk = sdo + BLOCK_M * ATTN_LDS, *sv = sk + 2 * BLOCK_N * ATTN_LDS;
	const u16 *kg = (const u16 *)p.k + b * p.k_sb + hk * p.k_sh;
	const u16 *vg = (const u16 *)p.v + b * p.v_sb + hk * p.v_sh;
	const int *list = 0;
	int nlist = 0, lp = 0, cnt, lim[2];
	float Ls[2], Ld[2], Ds[2], Dd[2], acc[NT_O][4];

#pragma unroll
	for (int r = 0; r < 2; r++) {
		int i = q0 + warp * 16 + gr + r * 8;
		i64 lo = b * p.l_sb + h * p.l_sh + i;
		i64 at = ((i64)b * p.Hq + h) * p.Nq + i;
		bool ok = i < p.Nq;

		lim[r] = row_limit(i, lq, lk, p.Nq, p.Nk);
		Ls[r] = ok && p.lse_s ? p.lse_s[lo] * ATTN_LOG2E : ATTN_NEG_INF;
		Ld[r] = ok && p.lse_d ? p.lse_d[lo] * ATTN_LOG2E : ATTN_NEG_INF;
		Ds[r] = ok && p.dsum_s ? p.dsum_s[at] : 0.f;
		Dd[r] = ok && p.dsum_d ? p.dsum_d[at] : 0.f;
	}
#pragma unroll
	for (int n = 0; n < NT_O; n++)
		acc[n][0] = acc[n][1] = acc[n][2] = acc[n][3] = 0.f;
	if (use_list) {
		int li = (p.list_per_head ? h * p.nqt : 0) + qt;

		list = p.list + p.list_off[li];
		nlist = p.list_off[li + 1] - p.list_off[li];
		while (nlist > 0 && ATTN_E_TILE(list[nlist - 1]) >= nkt)
			nlist--;
	}
	cnt = list_only ? nlist : nkt;

	load_tile<BLOCK_M, ATTN_THREADS>(sq, (const u16 *)p.q + b * p.q_sb +
					 h * p.q_sh, p.q_sn, q0, p.Nq);
	load_tile<BLOCK_M, ATTN_THREADS>(sdo, (const u16 *)p.d_o + b * p.do_sb +
					 h * p.do_sh, p.do_sn, q0, p.Nq);
	if (cnt > 0) {
		int kt0 = list_only ? ATTN_E_TILE(list[0]) : 0;

		load_tile<BLOCK_N, ATTN_THREADS>(sk, kg, p.k_sn, kt0 * BLOCK_N,
						 p.Nk);
		load_tile<BLOCK_N, ATTN_THREADS>(sv, vg, p.v_sn, kt0 * BLOCK_N,
						 p.Nk);
	}
	cp_async_commit();

	for (int it = 0; it < cnt; it++) {
		const int buf = it & 1;
		int e = ATTN_E_FULL, kt = it;
		bool in_s = GATE_MODE != ATTN_G_DENSE;

		if (list_only) {
			e = list[it];
			kt = ATTN_E_TILE(e);
		} else if (GATE_MODE == ATTN_G_SOFT && use_list) {
			while (lp < nlist && ATTN_E_TILE(list[lp]) < kt)
				lp++;
			in_s = lp < nlist && ATTN_E_TILE(list[lp]) == kt;
			if (in_s)
				e = list[lp];
		}
		cp_async_wait_all();
		__syncthreads();
		if (it + 1 < cnt) {
			int nk = list_only ? ATTN_E_TILE(list[it + 1]) : it + 1;

			load_tile<BLOCK_N, ATTN_THREADS>(
				sk + (buf ^ 1) * BLOCK_N * ATTN_LDS, kg, p.k_sn,
				nk * BLOCK_N, p.Nk);
			load_tile<BLOCK_N, ATTN_THREADS>(
				sv + (buf ^ 1) * BLOCK_N * ATTN_LDS, vg, p.v_sn,
				nk * BLOCK_N, p.Nk);
		}
		cp_async_commit();

		const u16 *ck = sk + buf * BLOCK_N * ATTN_LDS;
		const u16 *cv = sv + buf * BLOCK_N * ATTN_LDS;
		const int k0 = kt * BLOCK_N;
		float s[NT_S][4], dp[NT_S][4];

		gemm_abt(s, sq, ck, warp * 16, lane);
		gemm_abt(dp, sdo, cv, warp * 16, lane);
#pragma unroll
		for (int n = 0; n < NT_S; n++) {
#pragma unroll
			for (int x = 0; x < 4; x++) {
				int r = x >> 1;
				int i = q0 + warp * 16 + gr + r * 8;
				int j = k0 + n * 8 + 2 * tg + (x & 1);
				float s2 = j < lim[r] ? s[n][x] * p.scale_log2 :
					   ATTN_NEG_INF;
				float ds = 0.f;

				if (GATE_MODE != ATTN_G_SPARSE)
					ds += wd * p_of(s2, Ld[r]) *
					      (dp[n][x] - Dd[r]);
				if (in_s && ((e & ATTN_E_FULL) ||
					     (pat_allows(e, i, j, q0, off,
							 p.radius) &&
					      cols_band(p, h, i, j, off))))
					ds += ws * p_of(s2, Ls[r]) *
					      (dp[n][x] - Ds[r]);
				s[n][x] = ds;
			}
		}
		gemm_ab(acc, s, ck, lane);
	}
	cp_async_wait_all();
	/* STRIDED, HIERARCHICAL: the column keys beyond the band */
	dq_cols(p, h, off, q0, lim_max, lim, Ls, Ds, ws, sq, sdo, sk, sv, kg,
		vg, acc);
	store_rows((u16 *)p.dq + b * p.dq_sb + h * p.dq_sh, p.dq_sn,
		   q0 + warp * 16, p.Nq, acc, p.scale, lane, lq);
}

/* ------------------------------------------------------------------------ */
/* dK, dV                                                                   */

#include "attn_bwd_nd.cuh"

/*
 * dK and dV per (b, kv head, 64-key tile), summed over the query tiles of
 * the GQA group in registers.
 */
extern "C" __global__ void __launch_bounds__(ATTN_THREADS)
asam_attn_bwd_dkdv_kernel(const attn_bwd_params p)
{
	extern __shared__ __align__(16) u16 attn_smem[];
	const int b = blockIdx.z, hk = blockIdx.y, kt = blockIdx.x;
	const int warp = threadIdx.x >> 5, lane = threadIdx.x & 31;
	const int G = p.Hq / p.Hkv;
	const int lq = p.len_q ? p.len_q[b * p.lq_s] : p.Nq;
	const int lk = p.len_k ? p.len_k[b * p.lk_s] : p.Nk;
	const int k0 = kt * BLOCK_N, off = p.Nk - p.Nq;
	const bool use_list = PATTERN != ATTN_P_DENSE &&
			      GATE_MODE != ATTN_G_DENSE;
	const bool list_only = GATE_MODE == ATTN_G_SPARSE && use_list;
	u16 *sk = attn_smem, *sv = sk + BLOCK_N * ATTN_LDS;
	u16 *sq = sv + BLOCK_N * ATTN_LDS, *sdo = sq + BLOCK_M * ATTN_LDS;
	float *sL = (float *)(sdo + BLOCK_M * ATTN_LDS);	/* [4][64] */
	float dk[NT_O][4], dv[NT_O][4];
	int qt_lo, qt_hi;

	kv_begin(k0, off, lq, lk, &qt_lo, &qt_hi, dk, dv);
	load_tile<BLOCK_N, ATTN_THREADS>(sk, (const u16 *)p.k + b * p.k_sb +
					 hk * p.k_sh, p.k_sn, k0, p.Nk);
	load_tile<BLOCK_N, ATTN_THREADS>(sv, (const u16 *)p.v + b * p.v_sb +
					 hk * p.v_sh, p.v_sn, k0, p.Nk);
	cp_async_commit();

	for (int h = hk * G; h < hk * G + G; h++) {
		const float g = GATE_MODE == ATTN_G_SOFT ?
				p.gate[b * p.g_sb + h * p.g_sh] : 0.f;
		const float ws = GATE_MODE == ATTN_G_SPARSE ? 1.f : g;
		const float wd = GATE_MODE == ATTN_G_DENSE ? 1.f : 1.f - g;
		const int *tl = 0;
		int nt = 0, lp = 0, cnt;

		if (use_list) {
			int li = (p.list_per_head ? h * p.nkt : 0) + kt;

			tl = p.tlist + p.tlist_off[li];
			nt = p.tlist_off[li + 1] - p.tlist_off[li];
		}
		cnt = list_only ? nt : qt_hi - qt_lo;
		for (int it = 0; it < cnt; it++) {
			int e = ATTN_E_FULL, qt = qt_lo + it;
			bool in_s = GATE_MODE != ATTN_G_DENSE;

			if (list_only) {
				e = tl[it];
				qt = ATTN_E_TILE(e);
				if (qt >= qt_hi)
					break;
			} else if (GATE_MODE == ATTN_G_SOFT && use_list) {
				while (lp < nt && ATTN_E_TILE(tl[lp]) < qt)
					lp++;
				in_s = lp < nt && ATTN_E_TILE(tl[lp]) == qt;
				if (in_s)
					e = tl[lp];
			}
			const int q0 = qt * BLOCK_M;

			__syncthreads();	/* the last chunk is consumed */
			load_tile<BLOCK_M, ATTN_THREADS>(sq, (const u16 *)p.q +
				b * p.q_sb + h * p.q_sh, p.q_sn, q0, p.Nq);
			load_tile<BLOCK_M, ATTN_THREADS>(sdo,
				(const u16 *)p.d_o + b * p.do_sb + h * p.do_sh,
				p.do_sn, q0, p.Nq);
			cp_async_commit();
			for (int t = threadIdx.x; t < BLOCK_M; t += ATTN_THREADS) {
				int i = q0 + t;
				i64 lo = b * p.l_sb + h * p.l_sh + i;
				i64 at = ((i64)b * p.Hq + h) * p.Nq + i;
				bool ok = i < p.Nq;

				sL[t] = ok && p.lse_s ? p.lse_s[lo] * ATTN_LOG2E :
					ATTN_NEG_INF;
				sL[64 + t] = ok && p.lse_d ?
					     p.lse_d[lo] * ATTN_LOG2E :
					     ATTN_NEG_INF;
				sL[128 + t] = ok && p.dsum_s ? p.dsum_s[at] : 0.f;
				sL[192 + t] = ok && p.dsum_d ? p.dsum_d[at] : 0.f;
			}
			cp_async_wait_all();
			__syncthreads();

			float st[NT_S][4], dpt[NT_S][4];

			/* transposed: rows are this warp's keys, columns queries */
			gemm_abt(st, sk, sq, warp * 16, lane);
			gemm_abt(dpt, sv, sdo, warp * 16, lane);
			ds_tile(p, st, dpt, sL, h, q0, k0 + warp * 16, lq, lk,
				off, in_s, e, wd, ws, lane);
			gemm_ab(dv, st, sdo, lane);
			gemm_ab(dk, dpt, sq, lane);
		}
	}
	cp_async_wait_all();
	store_dkdv(p, b, hk, k0 + warp * 16, dk, dv, lane);
}

/* ------------------------------------------------------------------------ */
/* dg (SOFT)                                                                */

/* One warp per (b, h): a fixed order of additions, so bit-identical. */
extern "C" __global__ void __launch_bounds__(32)
asam_attn_bwd_dg_kernel(const attn_bwd_params p)
{
	const int b = blockIdx.y, h = blockIdx.x, lane = threadIdx.x;
	const float *s = p.dsum_s + ((i64)b * p.Hq + h) * p.Nq;
	const float *d = p.dsum_d + ((i64)b * p.Hq + h) * p.Nq;
	float sum = 0.f;

	for (int i = lane; i < p.Nq; i += 32)
		sum += s[i] - d[i];
#pragma unroll
	for (int o = 16; o > 0; o >>= 1)
		sum += __shfl_xor_sync(0xffffffffu, sum, o);
	if (lane == 0)
		p.dgate[b * p.dg_sb + h * p.dg_sh] = sum;
}

#if PATTERN == ATTN_P_CLUSTERED
#include "attn_bucket_bwd.cuh"
#endif
