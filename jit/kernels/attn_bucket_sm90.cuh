/* SPDX-License-Identifier: MIT */
/*
 * CLUSTERED (ARGMAX mode, SPARSE and HARD gates) on warpgroup MMA, included by
 * attn_fwd_sm90.cu after its softmax and MMA helpers.
 *
 * The host sorted each (b, h)'s queries and keys by cluster
 * (attn_clus.cu); a block takes one tile of the table (at most 128 query
 * slots of one cluster), gathers its Q rows by index and walks its
 * cluster's key slots 64 at a time, K and V rows gathered by index, the
 * next tile in flight as in fwd_tile.  The work is sum_c |Q_c| |K_c| up
 * to tile rounding, at the wgmma forward's rate instead of mma.sync's.
 *
 * A cluster's slots hold its tokens in ascending order, so a key tile's
 * last token and the tile's first query decide whether any pair needs
 * the row limit (causal, lengths): most tiles take no mask.  Outputs and
 * log-sum-exps go to the original rows.  HARD's dense heads take
 * fwd_tile's dense walk (the kernel's entry decides); SOFT and the SOFT
 * cluster rule stay on attn_bucket_fwd.cuh (the host routes them).
 */
#ifndef ASAM_ATTN_BUCKET_SM90_CUH
#define ASAM_ATTN_BUCKET_SM90_CUH

#include "attn_bucket.cuh"

/* the key tokens of slots [k0, k0 + BLOCK_N) against each row's limit */
static __device__ __forceinline__ void bucket_mask(const wg_state &st,
						   float (*s)[4],
						   const int *kp, int k0,
						   int nk)
{
	mask_keyed(s, k0,
		   [&](int c) { return c < nk ? __ldg(kp + c) : 0x7fffffff; },
		   [&](int r, int j) { return j < st.lim[r]; });
}

static __device__ __forceinline__ void bucket_tile(const attn_fwd_params &p,
						   int b, int h, int t,
						   u32 base)
{
	const int tid = threadIdx.x, lane = tid & 31;
	const int wg = wg_index(), wq = (tid >> 5) & 3;
	const int gr = lane >> 2, tg = lane & 3;
	const int hk = h / (p.Hq / p.Hkv);
	const i64 bh = (i64)b * p.Hq + h;
	const int lq = p.len_q ? p.len_q[b * p.lq_s] : p.Nq;
	const int lk = p.len_k ? p.len_k[b * p.lk_s] : p.Nk;
	bucket_q bq;

	if (!bucket_qtile(p, bh, t, lq, lk, bq))
		return;

	/* slots ascend in token order: the first row limits the least */
	const int nrows = bq.nrows, nk = bq.nkc;
	const int *qp = bq.qp, *kp = bq.kp + bq.kbeg;
	const int lim_min = bq.lim_min, lim_max = bq.lim_max;
	const int cnt = (nk + BLOCK_N - 1) / BLOCK_N;
	const u16 *qg = (const u16 *)p.q + b * p.q_sb + h * p.q_sh;
	const u16 *kg = (const u16 *)p.k + b * p.k_sb + hk * p.k_sh;
	const u16 *vg = (const u16 *)p.v + b * p.v_sb + hk * p.v_sh;
	const u32 sq = base, sk = sq + Q_BYTES, sv = sk + 2 * KV_BYTES;
	/* this thread's two rows: slots l and l + 8 of the tile */
	const int l0 = wg * 64 + wq * 16 + gr;
	/* whether this warpgroup has a row (the same on all its lanes) */
	const bool live = wg * 64 < nrows;
	int row[2];
	wg_state st;
	float s[NT_S][4];
	u32 pa[KS_N][4];

	load_sw_idx<BLOCK_M, ATTN_THREADS>(sq, qg, p.q_sn, qp, nrows);
	cp_async_commit();
#pragma unroll
	for (int r = 0; r < 2; r++) {
		int l = l0 + 8 * r;

		row[r] = l < nrows ? __ldg(qp + l) : -1;
		st.lim[r] = row[r] >= 0 && row[r] < lq ?
			    row_limit(row[r], lq, lk, p.Nq, p.Nk) : 0;
	}
	wg_state_reset(st);
	if (cnt > 0)
		load_sw_idx_kv<BLOCK_N, ATTN_THREADS>(sk, sv, kg, p.k_sn, vg,
						      p.v_sn, kp, nk);
	cp_async_commit();

	for (int it = 0; it < cnt; it++) {
		const int k0 = it * BLOCK_N, buf = it & 1;
		const int kl = k0 + BLOCK_N - 1 < nk ? k0 + BLOCK_N - 1 :
			       nk - 1;
		/* read before the barrier: its latency under the MMAs */
		const int jfirst = __ldg(kp + k0), jlast = __ldg(kp + kl);
		const bool clr = k0 + BLOCK_N <= nk && jlast < lim_min;

		cp_async_wait_all();
		fence_proxy_async();
		__syncthreads();
		if (it + 1 < cnt) {
			const int k1 = k0 + BLOCK_N;

			load_sw_idx_kv<BLOCK_N, ATTN_THREADS>(
				sk + (buf ^ 1) * KV_BYTES,
				sv + (buf ^ 1) * KV_BYTES, kg, p.k_sn, vg,
				p.v_sn, kp + k1, nk - k1);
		}
		cp_async_commit();
		/*
		 * Keys ascend: from the first one no row of the block reaches
		 * (the causal or length limit of its last row) on, the tiles
		 * hold nothing for anyone; the whole block stops, uniformly.
		 */
		if (jfirst >= lim_max)
			break;
		/*
		 * A cluster's last tile often has 64 rows or fewer: the
		 * second warpgroup then has none and leaves the tensor cores
		 * to the SM's other block (the barriers it still takes)
		 */
		if (!live)
			continue;
		gemm_s(s, sq, sk + buf * KV_BYTES, wg);
		if (!clr)
			bucket_mask(st, s, kp, k0, nk);
		softmax(st, s, pa, p.scale_log2);
		gemm_pv(st, pa, sv + buf * KV_BYTES);
	}
	cp_async_wait_all();

	u16 *og = (u16 *)p.o + b * p.o_sb + h * p.o_sh;

#pragma unroll
	for (int r = 0; r < 2; r++) {
		const int i = row[r];
		float ls = quad_sum(st.l[r]);
		bool live = i >= 0 && i < lq;
		float inv = ls > 0.f && live ? 1.f / ls : 0.f;

		if (i < 0)
			continue;
#pragma unroll
		for (int n = 0; n < NT_O; n++)
			*(u32 *)(og + (i64)i * p.o_sn + n * 8 + 2 * tg) =
				pack2(st.acc[n][2 * r] * inv,
				      st.acc[n][2 * r + 1] * inv);
		if (tg == 0) {
			i64 lo = b * p.l_sb + h * p.l_sh + i;

			if (p.lse_s)
				p.lse_s[lo] = ls > 0.f && live ?
					(st.m[r] + fast_log2(ls)) * ATTN_LN2 :
					ATTN_NEG_INF;
			/* HARD: the branch not computed, as the reference */
			if (p.lse_d)
				p.lse_d[lo] = GATE_MODE == ATTN_G_HARD && live &&
					      st.lim[r] ?
					      __int_as_float(0x7fc00000) :
					      ATTN_NEG_INF;
		}
	}
}

#endif
