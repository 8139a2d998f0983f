/* SPDX-License-Identifier: MIT */
/*
 * CLUSTERED forward over cluster buckets, included by attn_fwd.cu (it
 * uses that file's sm_state and state_softmax).
 *
 * The host sorted the queries and keys of every (b, h) by cluster
 * (attn_clus.cu): qperm/kperm map a sorted slot to its token, qoff/koff
 * are the clusters' slot ranges, and the tile table lists tiles of at
 * most BLOCK_M query slots that never cross a cluster.  A block takes one
 * such tile, gathers its query rows by index, and:
 *
 * - SPARSE: walks the key slots of its cluster only, K and V rows gathered
 *   by index, so the work is sum_c |Q_c| |K_c| up to tile rounding.  A
 *   cluster's keys are in token order, so under causal the walk stops at
 *   the first tile past the last row's limit.
 * - SOFT: walks every key tile (in token order) with both states; the
 *   sparse one takes the keys whose cluster is the tile's.
 *
 * The user mask is evaluated on the original indices; outputs, log-sum-
 * exps and the preprocess' row sums go to the original rows.
 */
#ifndef ASAM_ATTN_BUCKET_FWD_CUH
#define ASAM_ATTN_BUCKET_FWD_CUH

#include "attn_bucket.cuh"

template <int MODE>
static __device__ __forceinline__ void bucket_fwd_tile(const attn_fwd_params &p,
						       int b, int h, int t,
						       u16 *smem, float g)
{
	const int warp = threadIdx.x >> 5, lane = threadIdx.x & 31;
	const int gr = lane >> 2, tg = lane & 3;
	const int hk = h / (p.Hq / p.Hkv);
	const int lq = p.len_q ? p.len_q[b * p.lq_s] : p.Nq;
	const int lk = p.len_k ? p.len_k[b * p.lk_s] : p.Nk;
	const i64 bh = (i64)b * p.Hq + h;
	bucket_q bq;

	if (!bucket_qtile(p, bh, t, lq, lk, bq))
		return;

	const int c = bq.c, nrows = bq.nrows;
	const int *qp = bq.qp, *kp = bq.kp;
	const int *kcl = p.cl_kcl + bh * p.Nk;
	const int kbeg = MODE == ATTN_G_SPARSE ? bq.kbeg : 0;
	/* rows ascend in token order: the last live row limits the most */
	const int lim_max = bq.lim_max;
	const int nk = MODE == ATTN_G_SPARSE ? bq.nkc : lim_max;
	const int cnt = (nk + BLOCK_N - 1) / BLOCK_N;
	const u16 *qg = (const u16 *)p.q + b * p.q_sb + h * p.q_sh;
	const u16 *kg = (const u16 *)p.k + b * p.k_sb + hk * p.k_sh;
	const u16 *vg = (const u16 *)p.v + b * p.v_sb + hk * p.v_sh;
	u16 *sq = smem;
	u16 *sk = sq + BLOCK_M * ATTN_LDS;
	u16 *sv = sk + 2 * BLOCK_N * ATTN_LDS;
	/* per key slot: its token (SPARSE) or its cluster (SOFT) */
	int *sx = (int *)(sv + 2 * BLOCK_N * ATTN_LDS);
	int row[MT][2], lim[MT][2];
#if Q_IN_REGS
	u32 qf[KS_D][4];
#endif
	sm_state sd[MODE == ATTN_G_SPARSE ? 1 : MT];
	sm_state ss[MT];

#pragma unroll
	for (int mt = 0; mt < MT; mt++)
#pragma unroll
		for (int r = 0; r < 2; r++) {
			int l = warp * 16 * MT + mt * 16 + gr + r * 8;

			row[mt][r] = l < nrows ? qp[l] : -1;
			lim[mt][r] = row[mt][r] >= 0 ?
				     row_limit(row[mt][r], lq, lk, p.Nq, p.Nk) : 0;
		}
#pragma unroll
	for (int mt = 0; mt < MT; mt++) {
		state_init(sd[MODE == ATTN_G_SPARSE ? 0 : mt]);
		state_init(ss[mt]);
	}

	load_rows_idx<BLOCK_M, ATTN_THREADS>(sq, qg, p.q_sn, qp, nrows);
	/* key tile it into buffer buf: rows, and their tokens or clusters */
#define BUCKET_LOAD_KV(it, buf) do {					\
	int k0_ = (it) * BLOCK_N, n_ = nk - k0_;			\
	u16 *dk_ = sk + (buf) * BLOCK_N * ATTN_LDS;			\
	u16 *dv_ = sv + (buf) * BLOCK_N * ATTN_LDS;			\
	if (MODE == ATTN_G_SPARSE) {					\
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
			MODE == ATTN_G_SPARSE ? kp[kbeg + k0_ + x_] :	\
			kcl[k0_ + x_];					\
} while (0)
	if (cnt > 0)
		BUCKET_LOAD_KV(0, 0);
	cp_async_commit();

	for (int it = 0; it < cnt; it++) {
		const int buf = it & 1;

		/* a cluster's keys ascend: past the last row's limit, stop */
		if (MODE == ATTN_G_SPARSE && CAUSAL && it &&
		    kp[kbeg + it * BLOCK_N] >= lim_max)
			break;
		cp_async_wait_all();
		__syncthreads();
#if Q_IN_REGS
		if (it == 0) {
#pragma unroll
			for (int ks = 0; ks < KS_D; ks++) {
				int r = warp * 16 + (lane & 7) +
					((lane >> 3) & 1) * 8;
				int cc = ks * 16 + (lane >> 4) * 8;

				ldsm_x4(qf[ks], sq + r * ATTN_LDS + cc);
			}
		}
#endif
		if (it + 1 < cnt)
			BUCKET_LOAD_KV(it + 1, buf ^ 1);
		cp_async_commit();

		const u16 *ck = sk + buf * BLOCK_N * ATTN_LDS;
		const u16 *cv = sv + buf * BLOCK_N * ATTN_LDS;
		const int *cx = sx + buf * BLOCK_N;
		const int k0 = it * BLOCK_N;
		float s[MT][NT_S][4];

#pragma unroll
		for (int mt = 0; mt < MT; mt++)
#pragma unroll
			for (int n = 0; n < NT_S; n++)
				s[mt][n][0] = s[mt][n][1] = s[mt][n][2] =
					s[mt][n][3] = 0.f;
#pragma unroll
		for (int ks = 0; ks < KS_D; ks++) {
#if Q_IN_REGS
			u32 (*qa)[4] = &qf[ks];
#else
			u32 qa[MT][4];
#pragma unroll
			for (int mt = 0; mt < MT; mt++) {
				int r = warp * 16 * MT + mt * 16 + (lane & 7) +
					((lane >> 3) & 1) * 8;
				int cc = ks * 16 + (lane >> 4) * 8;

				ldsm_x4(qa[mt], sq + r * ATTN_LDS + cc);
			}
#endif
#pragma unroll
			for (int n2 = 0; n2 < NT_S / 2; n2++) {
				u32 bk[4];
				int r = n2 * 16 + (lane & 7) + (lane >> 4) * 8;
				int cc = ks * 16 + ((lane >> 3) & 1) * 8;

				ldsm_x4(bk, ck + r * ATTN_LDS + cc);
#pragma unroll
				for (int mt = 0; mt < MT; mt++) {
					mma16816(s[mt][2 * n2], qa[mt], bk);
					mma16816(s[mt][2 * n2 + 1], qa[mt],
						 bk + 2);
				}
			}
		}

		float ps[MODE == ATTN_G_SOFT ? MT : 1][NT_S][4];

#pragma unroll
		for (int mt = 0; mt < MT; mt++) {
#pragma unroll
			for (int n = 0; n < NT_S; n++)
#pragma unroll
				for (int x = 0; x < 4; x++) {
					int col = n * 8 + 2 * tg + (x & 1);
					int kv = cx[col];
					int lm = lim[mt][x >> 1];
					float v = s[mt][n][x] * p.scale_log2;

					int i = row[mt][x >> 1];

					if (MODE == ATTN_G_SPARSE) {
						s[mt][n][x] = kv < lm &&
							bucket_bit(p.cl_mask,
								p.cl_mw, bh,
								p.Nq, i, kv) ?
							v : ATTN_NEG_INF;
					} else {
						bool ok = k0 + col < lm;

						s[mt][n][x] = ok ? v :
							      ATTN_NEG_INF;
						ps[mt][n][x] = ok && kv == c &&
							bucket_bit(p.cl_mask,
								p.cl_mw, bh,
								p.Nq, i,
								k0 + col) ?
							v : ATTN_NEG_INF;
					}
				}
			if (MODE == ATTN_G_SOFT) {
				state_softmax(sd[mt], s[mt]);
				state_softmax(ss[mt], ps[mt]);
			} else {
				state_softmax(ss[mt], s[mt]);
			}
		}

#pragma unroll
		for (int ks = 0; ks < KS_N; ks++) {
			u32 pa[MT][4], pb[MODE == ATTN_G_SOFT ? MT : 1][4];

#pragma unroll
			for (int mt = 0; mt < MT; mt++) {
				p_frag(pa[mt], s[mt], ks);
				if (MODE == ATTN_G_SOFT)
					p_frag(pb[mt], ps[mt], ks);
			}
#pragma unroll
			for (int n2 = 0; n2 < NT_O / 2; n2++) {
				u32 bv[4];
				int r = ks * 16 + (lane & 7) +
					((lane >> 3) & 1) * 8;
				int cc = n2 * 16 + (lane >> 4) * 8;

				ldsm_x4_t(bv, cv + r * ATTN_LDS + cc);
#pragma unroll
				for (int mt = 0; mt < MT; mt++) {
					sm_state &st = MODE == ATTN_G_SPARSE ?
						       ss[mt] : sd[mt];

					mma16816(st.acc[2 * n2], pa[mt], bv);
					mma16816(st.acc[2 * n2 + 1], pa[mt],
						 bv + 2);
					if (MODE == ATTN_G_SOFT) {
						mma16816(ss[mt].acc[2 * n2],
							 pb[mt], bv);
						mma16816(ss[mt].acc[2 * n2 + 1],
							 pb[mt], bv + 2);
					}
				}
			}
		}
	}
#undef BUCKET_LOAD_KV
	cp_async_wait_all();

	/* epilogue: as fwd_tile's, to the original rows */
	float ws = MODE == ATTN_G_SPARSE ? 1.f : g;
	u16 *og = (u16 *)p.o + b * p.o_sb + h * p.o_sh;

	(void)og;

#pragma unroll
	for (int mt = 0; mt < MT; mt++) {
#pragma unroll
	for (int r = 0; r < 2; r++) {
		const int i = row[mt][r];
		const sm_state &S_ = ss[mt];
		const sm_state &D_ = sd[MODE == ATTN_G_SPARSE ? 0 : mt];
		float ls = quad_sum(S_.l[r]);
		float ld = MODE == ATTN_G_SPARSE ? 0.f : quad_sum(D_.l[r]);
		bool live = i >= 0 && i < lq;
		float is = ls > 0.f && live ? ws / ls : 0.f;
		float id = ld > 0.f && live ? (1.f - ws) / ld : 0.f;

#if BWD_PRE
		/* every lane reaches the quad sums; only live rows store */
		{
			const u16 *dg = (const u16 *)p.d_o + b * p.do_sb +
					h * p.do_sh +
					(i64)(i < 0 ? 0 : i) * p.do_sn;
			float ds = 0.f, dd = 0.f;

			is = ls > 0.f && live ? 1.f / ls : 0.f;
			id = ld > 0.f && live ? 1.f / ld : 0.f;
#pragma unroll
			for (int n = 0; n < NT_O; n++) {
				u32 w = i < 0 ? 0 :
					*(const u32 *)(dg + n * 8 + 2 * tg);
				float a = unpack_lo(w), cc = unpack_hi(w);

				ds += (S_.acc[n][2 * r] * a +
				       S_.acc[n][2 * r + 1] * cc) * is;
				if (MODE != ATTN_G_SPARSE)
					dd += (D_.acc[n][2 * r] * a +
					       D_.acc[n][2 * r + 1] * cc) * id;
			}
			ds = quad_sum(ds);
			dd = quad_sum(dd);
			if (tg == 0 && i >= 0) {
				i64 at = bh * p.Nq + i;

				if (p.dsum_s)
					p.dsum_s[at] = ds;
				if (p.dsum_d)
					p.dsum_d[at] = dd;
			}
		}
#else
		if (i < 0)
			continue;
#pragma unroll
		for (int n = 0; n < NT_O; n++) {
			float o0 = S_.acc[n][2 * r] * is;
			float o1 = S_.acc[n][2 * r + 1] * is;

			if (MODE != ATTN_G_SPARSE) {
				o0 += D_.acc[n][2 * r] * id;
				o1 += D_.acc[n][2 * r + 1] * id;
			}
			*(u32 *)(og + (i64)i * p.o_sn + n * 8 + 2 * tg) =
				pack2(o0, o1);
		}
		if (tg == 0) {
			i64 lo = b * p.l_sb + h * p.l_sh + i;
			int lm = live ? lim[mt][r] : 0;
			float vs = ls > 0.f && live ?
				   (S_.m[r] + fast_log2(ls)) * ATTN_LN2 :
				   ATTN_NEG_INF;
			float vd = ld > 0.f && live ?
				   (D_.m[r] + fast_log2(ld)) * ATTN_LN2 :
				   ATTN_NEG_INF;

			/* HARD: the branch not computed, as the reference */
			if (GATE_MODE == ATTN_G_HARD && live)
				vd = lm ? __int_as_float(0x7fc00000) :
				     ATTN_NEG_INF;
			if (p.lse_s)
				p.lse_s[lo] = vs;
			if (p.lse_d)
				p.lse_d[lo] = vd;
		}
#endif
	}
	}
}

/* The CLUSTERED kernel body: HARD sends a head down one branch. */
static __device__ __forceinline__ void bucket_fwd(const attn_fwd_params &p,
						  u16 *smem)
{
	const int b = blockIdx.z, h = blockIdx.y, t = blockIdx.x;
	float g = 0.f;

	if (GATE_MODE == ATTN_G_SOFT || GATE_MODE == ATTN_G_HARD)
		g = p.gate[b * p.g_sb + h * p.g_sh];
#if GATE_MODE == ATTN_G_HARD
	if (g >= p.hard_tau)
		bucket_fwd_tile<ATTN_G_SPARSE>(p, b, h, t, smem, 1.f);
	else if (t < p.nqt)
		fwd_tile<ATTN_G_DENSE>(p, b, h, t, smem, 0.f);
#elif GATE_MODE == ATTN_G_SOFT || GATE_MODE == ATTN_G_SPARSE
	bucket_fwd_tile<GATE_MODE>(p, b, h, t, smem, g);
#endif
}

#endif
