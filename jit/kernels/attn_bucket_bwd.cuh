/* SPDX-License-Identifier: MIT */
/*
 * CLUSTERED backward over cluster buckets, included by attn_bwd.cu (it
 * uses gemm_abt, gemm_ab and p_of from there).  The sortings are those of
 * attn_bucket_fwd.cuh, with 64-slot tiles on both sides.
 *
 * dQ: per (b, h, query tile of one cluster): the cluster's key slots
 * (SPARSE) or every key tile with the sparse branch on the cluster's keys
 * (SOFT), rows gathered by index, dQ stored to the original rows.
 *
 * dK, dV: per (b, query head h, key tile of one cluster of h): the
 * cluster's query slots (SPARSE) or every query tile (SOFT).  With GQA the
 * query heads of a group sort the same keys differently, so each writes
 * fp32 partials for its head and attn_clus.cu's gqa_sum adds them in head
 * order: no atomics, bit-identical run to run.  Without GQA the rows go
 * straight to dK and dV.
 */
#ifndef ASAM_ATTN_BUCKET_BWD_CUH
#define ASAM_ATTN_BUCKET_BWD_CUH

#include "attn_bucket.cuh"

extern "C" __global__ void __launch_bounds__(ATTN_THREADS)
asam_attn_bwd_clus_dq_kernel(const attn_bwd_params p)
{
	extern __shared__ __align__(16) u16 attn_smem[];
	const int b = blockIdx.z, h = blockIdx.y, t = blockIdx.x;
	const int warp = threadIdx.x >> 5, lane = threadIdx.x & 31;
	const int gr = lane >> 2, tg = lane & 3;
	const int hk = h / (p.Hq / p.Hkv);
	const int lq = p.len_q ? p.len_q[b * p.lq_s] : p.Nq;
	const int lk = p.len_k ? p.len_k[b * p.lk_s] : p.Nk;
	const i64 bh = (i64)b * p.Hq + h;
	const bool soft = GATE_MODE == ATTN_G_SOFT;
	bucket_q bq;

	if (!bucket_qtile(p, bh, t, lq, lk, bq))
		return;

	const int c = bq.c, nrows = bq.nrows;
	const int *qp = bq.qp, *kp = bq.kp;
	const int *kcl = p.cl_kcl + bh * p.Nk;
	const int kbeg = soft ? 0 : bq.kbeg;
	const int lim_max = bq.lim_max;
	const int nk = soft ? lim_max : bq.nkc;
	const int cnt = (nk + BLOCK_N - 1) / BLOCK_N;
	const float g = soft ? p.gate[b * p.g_sb + h * p.g_sh] : 0.f;
	const float ws = soft ? g : 1.f, wd = 1.f - g;
	u16 *sq = attn_smem, *sdo = sq + BLOCK_M * ATTN_LDS;
	u16 *sk = sdo + BLOCK_M * ATTN_LDS, *sv = sk + 2 * BLOCK_N * ATTN_LDS;
	int *sx = (int *)(sv + 2 * BLOCK_N * ATTN_LDS);
	const u16 *kg = (const u16 *)p.k + b * p.k_sb + hk * p.k_sh;
	const u16 *vg = (const u16 *)p.v + b * p.v_sb + hk * p.v_sh;
	int row[2], lim[2];
	float Ls[2], Ld[2], Ds[2], Dd[2], acc[NT_O][4];

#pragma unroll
	for (int r = 0; r < 2; r++) {
		int l = warp * 16 + gr + r * 8, i = l < nrows ? qp[l] : -1;
		i64 lo = b * p.l_sb + h * p.l_sh + i, at = bh * p.Nq + i;
		bool ok = i >= 0;

		row[r] = i;
		lim[r] = ok ? row_limit(i, lq, lk, p.Nq, p.Nk) : 0;
		Ls[r] = ok && p.lse_s ? p.lse_s[lo] * ATTN_LOG2E : ATTN_NEG_INF;
		Ld[r] = ok && p.lse_d ? p.lse_d[lo] * ATTN_LOG2E : ATTN_NEG_INF;
		Ds[r] = ok && p.dsum_s ? p.dsum_s[at] : 0.f;
		Dd[r] = ok && p.dsum_d ? p.dsum_d[at] : 0.f;
	}
#pragma unroll
	for (int n = 0; n < NT_O; n++)
		acc[n][0] = acc[n][1] = acc[n][2] = acc[n][3] = 0.f;

	load_rows_idx<BLOCK_M, ATTN_THREADS>(sq, (const u16 *)p.q + b * p.q_sb +
					     h * p.q_sh, p.q_sn, qp, nrows);
	load_rows_idx<BLOCK_M, ATTN_THREADS>(sdo, (const u16 *)p.d_o +
					     b * p.do_sb + h * p.do_sh,
					     p.do_sn, qp, nrows);
#define BUCKET_LOAD_KV(it, buf) do {					\
	int k0_ = (it) * BLOCK_N, n_ = nk - k0_;			\
	u16 *dk_ = sk + (buf) * BLOCK_N * ATTN_LDS;			\
	u16 *dv_ = sv + (buf) * BLOCK_N * ATTN_LDS;			\
	if (!soft) {							\
		load_rows_idx<BLOCK_N, ATTN_THREADS>(dk_, kg, p.k_sn,	\
				kp + kbeg + k0_, n_);			\
		load_rows_idx<BLOCK_N, ATTN_THREADS>(dv_, vg, p.v_sn,	\
				kp + kbeg + k0_, n_);			\
	} else {							\
		load_tile<BLOCK_N, ATTN_THREADS>(dk_, kg, p.k_sn, k0_,	\
						 p.Nk);			\
		load_tile<BLOCK_N, ATTN_THREADS>(dv_, vg, p.v_sn, k0_,	\
						 p.Nk);			\
	}								\
	for (int x_ = threadIdx.x; x_ < BLOCK_N; x_ += ATTN_THREADS)	\
		sx[(buf) * BLOCK_N + x_] = x_ >= n_ ? 0x7fffffff :	\
			!soft ? kp[kbeg + k0_ + x_] : kcl[k0_ + x_];	\
} while (0)
	if (cnt > 0)
		BUCKET_LOAD_KV(0, 0);
	cp_async_commit();

	for (int it = 0; it < cnt; it++) {
		const int buf = it & 1;

		if (!soft && CAUSAL && it &&
		    kp[kbeg + it * BLOCK_N] >= lim_max)
			break;
		cp_async_wait_all();
		__syncthreads();
		if (it + 1 < cnt)
			BUCKET_LOAD_KV(it + 1, buf ^ 1);
		cp_async_commit();

		const u16 *ck = sk + buf * BLOCK_N * ATTN_LDS;
		const u16 *cv = sv + buf * BLOCK_N * ATTN_LDS;
		const int *cx = sx + buf * BLOCK_N;
		const int k0 = it * BLOCK_N;
		float s[NT_S][4], dp[NT_S][4];

		gemm_abt(s, sq, ck, warp * 16, lane);
		gemm_abt(dp, sdo, cv, warp * 16, lane);
#pragma unroll
		for (int n = 0; n < NT_S; n++) {
#pragma unroll
			for (int x = 0; x < 4; x++) {
				int r = x >> 1, col = n * 8 + 2 * tg + (x & 1);
				int kv = cx[col];
				bool ok = soft ? k0 + col < lim[r] : kv < lim[r];
				float s2, ds = 0.f;

				if (!soft && ok)
					ok = bucket_bit(p.cl_mask, p.cl_mw, bh,
							p.Nq, row[r], kv);
				s2 = ok ? s[n][x] * p.scale_log2 : ATTN_NEG_INF;
				if (soft) {
					ds += wd * p_of(s2, Ld[r]) *
					      (dp[n][x] - Dd[r]);
					if (ok && kv == c &&
					    bucket_bit(p.cl_mask, p.cl_mw, bh,
						       p.Nq, row[r], k0 + col))
						ds += ws * p_of(s2, Ls[r]) *
						      (dp[n][x] - Ds[r]);
				} else {
					ds = p_of(s2, Ls[r]) *
					     (dp[n][x] - Ds[r]);
				}
				s[n][x] = ds;
			}
		}
		gemm_ab(acc, s, ck, lane);
	}
#undef BUCKET_LOAD_KV
	cp_async_wait_all();

	u16 *dq = (u16 *)p.dq + b * p.dq_sb + h * p.dq_sh;

#pragma unroll
	for (int r = 0; r < 2; r++) {
		int i = row[r];
		float m = i < lq ? p.scale : 0.f;

		if (i < 0)
			continue;
#pragma unroll
		for (int n = 0; n < NT_O; n++)
			*(u32 *)(dq + (i64)i * p.dq_sn + n * 8 + 2 * tg) =
				pack2(acc[n][2 * r] * m, acc[n][2 * r + 1] * m);
	}
}

extern "C" __global__ void __launch_bounds__(ATTN_THREADS)
asam_attn_bwd_clus_dkdv_kernel(const attn_bwd_params p)
{
	extern __shared__ __align__(16) u16 attn_smem[];
	const int b = blockIdx.z, h = blockIdx.y, t = blockIdx.x;
	const int warp = threadIdx.x >> 5, lane = threadIdx.x & 31;
	const int gr = lane >> 2, tg = lane & 3;
	const int G = p.Hq / p.Hkv, hk = h / G;
	const int lq = p.len_q ? p.len_q[b * p.lq_s] : p.Nq;
	const int lk = p.len_k ? p.len_k[b * p.lk_s] : p.Nk;
	const int off = p.Nk - p.Nq;
	const i64 bh = (i64)b * p.Hq + h;
	const bool soft = GATE_MODE == ATTN_G_SOFT;

	if (t >= p.cl_nktiles[bh])
		return;

	const int *tl = p.cl_ktiles + 2 * (bh * p.cl_ntk + t);
	const int s0 = tl[0], c = tl[1];
	const int *qo = p.cl_qoff + bh * (p.cl_C + 1);
	const int *ko = p.cl_koff + bh * (p.cl_C + 1);
	const int nkr = min((int)BLOCK_N, ko[c + 1] - s0);
	const int *kp = p.cl_kperm + bh * p.Nk + s0;
	const int *qp = p.cl_qperm + bh * p.Nq;
	const int *qcl = p.cl_qcl + bh * p.Nq;
	const int kfirst = kp[0];	/* the tile's smallest key */
	const float g = soft ? p.gate[b * p.g_sb + h * p.g_sh] : 0.f;
	const float ws = soft ? g : 1.f, wd = 1.f - g;
	u16 *sk = attn_smem, *sv = sk + BLOCK_N * ATTN_LDS;
	u16 *sq = sv + BLOCK_N * ATTN_LDS, *sdo = sq + BLOCK_M * ATTN_LDS;
	float *sL = (float *)(sdo + BLOCK_M * ATTN_LDS);	/* [4][64] */
	int *sx = (int *)(sL + 4 * 64);		/* query token or cluster */
	const u16 *qg = (const u16 *)p.q + b * p.q_sb + h * p.q_sh;
	const u16 *dog = (const u16 *)p.d_o + b * p.do_sb + h * p.do_sh;
	float dk[NT_O][4], dv[NT_O][4];
	int key[2];
	/* queries: the cluster's slots, or every token (SOFT) */
	int qbeg = soft ? 0 : qo[c];
	int nq = soft ? lq : qo[c + 1] - qbeg;
	int it0 = 0;

#pragma unroll
	for (int r = 0; r < 2; r++) {
		int l = warp * 16 + gr + r * 8;

		key[r] = l < nkr ? kp[l] : -1;
	}
#if CAUSAL
	/* rows before kfirst - off see none of these keys */
	if (soft)
		it0 = kfirst - off > 0 ? (kfirst - off) / BLOCK_M : 0;
#endif
	if (kfirst >= lk)
		nq = 0;
#pragma unroll
	for (int n = 0; n < NT_O; n++) {
		dk[n][0] = dk[n][1] = dk[n][2] = dk[n][3] = 0.f;
		dv[n][0] = dv[n][1] = dv[n][2] = dv[n][3] = 0.f;
	}
	load_rows_idx<BLOCK_N, ATTN_THREADS>(sk, (const u16 *)p.k +
		b * p.k_sb + hk * p.k_sh, p.k_sn, kp, nkr);
	load_rows_idx<BLOCK_N, ATTN_THREADS>(sv, (const u16 *)p.v +
		b * p.v_sb + hk * p.v_sh, p.v_sn, kp, nkr);
	cp_async_commit();

	for (int it = it0; it * BLOCK_M < nq; it++) {
		const int q0 = it * BLOCK_M, n_ = nq - q0;

		/* a cluster's queries ascend: skip chunks wholly before */
		if (!soft && CAUSAL &&
		    qp[qbeg + q0 + min((int)BLOCK_M, n_) - 1] + off < kfirst)
			continue;
		__syncthreads();	/* the last chunk is consumed */
		if (soft) {
			load_tile<BLOCK_M, ATTN_THREADS>(sq, qg, p.q_sn, q0,
							 p.Nq);
			load_tile<BLOCK_M, ATTN_THREADS>(sdo, dog, p.do_sn, q0,
							 p.Nq);
		} else {
			load_rows_idx<BLOCK_M, ATTN_THREADS>(sq, qg, p.q_sn,
						qp + qbeg + q0, n_);
			load_rows_idx<BLOCK_M, ATTN_THREADS>(sdo, dog, p.do_sn,
						qp + qbeg + q0, n_);
		}
		cp_async_commit();
		for (int x = threadIdx.x; x < BLOCK_M; x += ATTN_THREADS) {
			int i = x >= n_ ? -1 : soft ? q0 + x : qp[qbeg + q0 + x];
			i64 lo = b * p.l_sb + h * p.l_sh + i;
			i64 at = bh * p.Nq + i;
			bool ok = i >= 0;

			sL[x] = ok && p.lse_s ? p.lse_s[lo] * ATTN_LOG2E :
				ATTN_NEG_INF;
			sL[64 + x] = ok && p.lse_d ? p.lse_d[lo] * ATTN_LOG2E :
				     ATTN_NEG_INF;
			sL[128 + x] = ok && p.dsum_s ? p.dsum_s[at] : 0.f;
			sL[192 + x] = ok && p.dsum_d ? p.dsum_d[at] : 0.f;
			sx[x] = !ok ? -1 : soft ? qcl[i] : i;
		}
		cp_async_wait_all();
		__syncthreads();

		float st[NT_S][4], dpt[NT_S][4];

		gemm_abt(st, sk, sq, warp * 16, lane);
		gemm_abt(dpt, sv, sdo, warp * 16, lane);
#pragma unroll
		for (int n = 0; n < NT_S; n++) {
#pragma unroll
			for (int x = 0; x < 4; x++) {
				int col = n * 8 + 2 * tg + (x & 1);
				int qv = sx[col];
				int i = soft ? q0 + col : qv;
				int j = key[x >> 1];
				bool ok = qv >= 0 && i < lq && j >= 0 && j < lk;
				float s2, pc = 0.f, ds = 0.f;

#if CAUSAL
				ok = ok && j <= i + off;
#endif
				if (!soft && ok)
					ok = bucket_bit(p.cl_mask, p.cl_mw, bh,
							p.Nq, i, j);
				s2 = ok ? st[n][x] * p.scale_log2 : ATTN_NEG_INF;
				if (soft) {
					float pd = p_of(s2, sL[64 + col]);

					pc += wd * pd;
					ds += wd * pd * (dpt[n][x] - sL[192 + col]);
				}
				if (!soft || (ok && qv == c &&
					      bucket_bit(p.cl_mask, p.cl_mw,
							 bh, p.Nq, i, j))) {
					float ps = p_of(s2, sL[col]);

					pc += ws * ps;
					ds += ws * ps * (dpt[n][x] - sL[128 + col]);
				}
				st[n][x] = pc;
				dpt[n][x] = ds;
			}
		}
		gemm_ab(dv, st, sdo, lane);
		gemm_ab(dk, dpt, sq, lane);
	}
	cp_async_wait_all();
#pragma unroll
	for (int r = 0; r < 2; r++)
		if (key[r] >= 0)
			bucket_store_kv(p, bh, b, hk, key[r], r, dk, dv, tg);
}

#endif
