/* SPDX-License-Identifier: MIT */
/*
 * STRIDED and HIERARCHICAL backward (see attn_cols.cuh).  The band runs
 * through the dQ and dK/dV kernels as LOCAL does; the column keys beyond
 * the band add:
 *
 *  - to dQ: dq_cols(), the forward's column walk of a query tile, called
 *    by the dQ kernel after its band;
 *  - to dK, dV: asam_attn_bwd_cols_kernel, one block per (b, kv head, 64
 *    columns) over every query tile that can see them, launched after the
 *    band's dK/dV kernel: it owns its 64 key rows outright, so it reads
 *    the band's dK, dV rows, adds its sums and writes them back.  No row is
 *    touched by two blocks and nothing is atomic: bit-identical.
 *
 * Included by attn_bwd.cu after its GEMM helpers.
 */
#ifndef ASAM_ATTN_COLS_BWD_CUH
#define ASAM_ATTN_COLS_BWD_CUH

static __device__ __forceinline__ void dq_cols(const attn_bwd_params &p,
					       int h, int off, int q0,
					       int lim_max, const int *lim,
					       const float *Ls, const float *Ds,
					       float ws, const u16 *sq,
					       const u16 *sdo, u16 *sk, u16 *sv,
					       const u16 *kg, const u16 *vg,
					       float (*acc)[4])
{
#if ATTN_HAS_COLS
	const int warp = threadIdx.x >> 5, lane = threadIdx.x & 31;
	const int gr = lane >> 2, tg = lane & 3;
	const int nc = cols_below(p, lim_max);
	const int cnt = (nc + BLOCK_N - 1) / BLOCK_N;

	const int d0 = q0 + warp * 16 + off;
	/* this warp's smallest row limit (0: a row past the lengths) */
	int wl = lim[0] < lim[1] ? lim[0] : lim[1];

#pragma unroll
	for (int m = 16; m > 0; m >>= 1) {
		int o = __shfl_xor_sync(0xffffffffu, wl, m);

		wl = o < wl ? o : wl;
	}

	if (GATE_MODE == ATTN_G_DENSE || cnt == 0)
		return;
	cp_async_wait_all();
	__syncthreads();
	cols_load<BLOCK_N, ATTN_THREADS>(p, sk, kg, p.k_sn, 0, nc);
	cols_load<BLOCK_N, ATTN_THREADS>(p, sv, vg, p.v_sn, 0, nc);
	cp_async_commit();
	for (int it = 0; it < cnt; it++) {
		const int buf = it & 1, c0 = it * BLOCK_N;
		int jj[NT_S][2];

		cp_async_wait_all();
		__syncthreads();
		if (it + 1 < cnt) {
			cols_load<BLOCK_N, ATTN_THREADS>(p,
				sk + (buf ^ 1) * BLOCK_N * ATTN_LDS, kg,
				p.k_sn, c0 + BLOCK_N, nc);
			cols_load<BLOCK_N, ATTN_THREADS>(p,
				sv + (buf ^ 1) * BLOCK_N * ATTN_LDS, vg,
				p.v_sn, c0 + BLOCK_N, nc);
		}
		cp_async_commit();
#pragma unroll
		for (int n = 0; n < NT_S; n++)
#pragma unroll
			for (int x = 0; x < 2; x++) {
				int c = c0 + n * 8 + 2 * tg + x;

				jj[n][x] = c < nc ? col_key(p, c) : -1;
			}

		const u16 *ck = sk + buf * BLOCK_N * ATTN_LDS;
		const u16 *cv = sv + buf * BLOCK_N * ATTN_LDS;
		/* most column tiles lie wholly outside the warp's band */
		const bool clr = cols_clear(p, c0, BLOCK_N, nc, d0, d0 + 15,
					    wl);
		float s[NT_S][4], dp[NT_S][4];

		gemm_abt(s, sq, ck, warp * 16, lane);
		gemm_abt(dp, sdo, cv, warp * 16, lane);
#pragma unroll
		for (int n = 0; n < NT_S; n++)
#pragma unroll
			for (int x = 0; x < 4; x++) {
				int r = x >> 1;
				int i = q0 + warp * 16 + gr + r * 8;
				float s2 = clr || cols_take(p, h, i,
							    jj[n][x & 1],
							    lim[r], off) ?
					   s[n][x] * p.scale_log2 :
					   ATTN_NEG_INF;

				s[n][x] = ws * p_of(s2, Ls[r]) *
					  (dp[n][x] - Ds[r]);
			}
		gemm_ab(acc, s, ck, lane);
	}
	cp_async_wait_all();
#endif
}

extern "C" __global__ void __launch_bounds__(ATTN_THREADS)
asam_attn_bwd_cols_kernel(const attn_bwd_params p)
{
#if ATTN_HAS_COLS && GATE_MODE != ATTN_G_DENSE
	extern __shared__ __align__(16) u16 attn_smem[];
	const int b = blockIdx.z, hk = blockIdx.y, c0 = blockIdx.x * BLOCK_N;
	const int warp = threadIdx.x >> 5, lane = threadIdx.x & 31;
	const int gr = lane >> 2, tg = lane & 3;
	const int G = p.Hq / p.Hkv;
	const int lq = p.len_q ? p.len_q[b * p.lq_s] : p.Nq;
	const int lk = p.len_k ? p.len_k[b * p.lk_s] : p.Nk;
	const int off = p.Nk - p.Nq, nc = p.ncol - c0;
	/* K, V; Q and dO in two stages; per stage lse, limit, D [2][3][64] */
	u16 *sk = attn_smem, *sv = sk + BLOCK_N * ATTN_LDS;
	u16 *sq = sv + BLOCK_N * ATTN_LDS;
	u16 *sdo = sq + 2 * BLOCK_M * ATTN_LDS;
	float *sL = (float *)(sdo + 2 * BLOCK_M * ATTN_LDS);
	int *sj = (int *)(sL + 2 * 3 * 64);			/* [64] */
	const int jmin = col_key(p, c0);
	float dk[NT_O][4], dv[NT_O][4];
	int qt_lo = 0, qt_hi = (lq + BLOCK_M - 1) / BLOCK_M;
	int jw[2];

#if CAUSAL
	qt_lo = jmin - off > 0 ? (jmin - off) / BLOCK_M : 0;
#endif
	if (jmin >= lk)
		return;		/* every column here is past len_k: adds 0 */
	for (int t = threadIdx.x; t < BLOCK_N; t += ATTN_THREADS)
		sj[t] = t < nc ? col_key(p, c0 + t) : -1;
#pragma unroll
	for (int n = 0; n < NT_O; n++) {
		dk[n][0] = dk[n][1] = dk[n][2] = dk[n][3] = 0.f;
		dv[n][0] = dv[n][1] = dv[n][2] = dv[n][3] = 0.f;
	}
	cols_load<BLOCK_N, ATTN_THREADS>(p, sk, (const u16 *)p.k +
		b * p.k_sb + hk * p.k_sh, p.k_sn, c0, p.ncol);
	cols_load<BLOCK_N, ATTN_THREADS>(p, sv, (const u16 *)p.v +
		b * p.v_sb + hk * p.v_sh, p.v_sn, c0, p.ncol);

	/*
	 * The walk is every (query head of the group, query tile) in turn;
	 * step x's Q and dO load (cp.async) and its row statistics load
	 * (into registers, stored after the MMAs) while step x - 1
	 * computes: one load latency a walk, not one a step.
	 */
	const int nqt = qt_hi > qt_lo ? qt_hi - qt_lo : 0, nx = G * nqt;
	float rl = 0.f, rm = 0.f, rd = 0.f;

	/* step @x's Q and dO into stage @bf; its statistics into rl, rm, rd */
#define COLS_STEP_LOAD(X_, BF_) do {					\
	const int h_ = hk * G + (X_) / nqt;				\
	const int q_ = (qt_lo + (X_) % nqt) * BLOCK_M;			\
	const int t_ = threadIdx.x;					\
									\
	load_tile<BLOCK_M, ATTN_THREADS>(sq + (BF_) * BLOCK_M * ATTN_LDS,\
		(const u16 *)p.q + b * p.q_sb + h_ * p.q_sh, p.q_sn, q_,	\
		p.Nq);							\
	load_tile<BLOCK_M, ATTN_THREADS>(sdo + (BF_) * BLOCK_M * ATTN_LDS,\
		(const u16 *)p.d_o + b * p.do_sb + h_ * p.do_sh, p.do_sn,	\
		q_, p.Nq);						\
	if (t_ < BLOCK_M) {						\
		const int i_ = q_ + t_;					\
		const bool ok_ = i_ < p.Nq;				\
									\
		rl = ok_ && p.lse_s ? p.lse_s[b * p.l_sb + h_ * p.l_sh +	\
					      i_] * ATTN_LOG2E :	\
		     ATTN_NEG_INF;					\
		rm = ok_ ? (float)row_limit(i_, lq, lk, p.Nq, p.Nk) : 0.f;\
		rd = ok_ && p.dsum_s ?					\
		     p.dsum_s[((i64)b * p.Hq + h_) * p.Nq + i_] : 0.f;	\
	}								\
} while (0)
#define COLS_STEP_STATS(BF_) do {					\
	if (threadIdx.x < BLOCK_M) {					\
		sL[(BF_) * 192 + threadIdx.x] = rl;			\
		sL[(BF_) * 192 + 64 + threadIdx.x] = rm;			\
		sL[(BF_) * 192 + 128 + threadIdx.x] = rd;		\
	}								\
} while (0)
	if (nx > 0)
		COLS_STEP_LOAD(0, 0);
	cp_async_commit();
	COLS_STEP_STATS(0);
	__syncthreads();
	jw[0] = sj[warp * 16 + gr];
	jw[1] = sj[warp * 16 + gr + 8];
	/* this warp's 16 keys, sorted; -1 past the set's end */
	const int ja = sj[warp * 16], jb = sj[warp * 16 + 15];

	for (int x = 0; x < nx; x++) {
		const int bf = x & 1, h = hk * G + x / nqt;
		const int q0 = (qt_lo + x % nqt) * BLOCK_M;
		const float g = GATE_MODE == ATTN_G_SOFT ?
				p.gate[b * p.g_sb + h * p.g_sh] : 0.f;
		const float ws = GATE_MODE == ATTN_G_SPARSE ? 1.f : g;
		const u16 *cq = sq + bf * BLOCK_M * ATTN_LDS;
		const u16 *cdo = sdo + bf * BLOCK_M * ATTN_LDS;
		const float *cL = sL + bf * 192;

		/* step x landed (each thread its copies), then everyone's;
		 * stage bf ^ 1 was last read by step x - 1, before this */
		cp_async_wait_all();
		__syncthreads();
		if (x + 1 < nx)
			COLS_STEP_LOAD(x + 1, bf ^ 1);
		cp_async_commit();

		/*
		 * No mask where the query tile is whole and live, every key
		 * is under its first row's limit (the smallest) and beyond
		 * every row's band, and no head votes: most query tiles, for
		 * a column tile away from the diagonal.
		 */
		const bool clr = !p.col_vote && jb >= 0 &&
			q0 + BLOCK_M <= lq && q0 + BLOCK_M <= p.Nq &&
			jb < (int)cL[64] &&
			(ja > q0 + BLOCK_M - 1 + off + p.radius ||
			 jb < q0 + off - p.radius);
		float st[NT_S][4], dpt[NT_S][4];

		/* transposed: rows are this warp's keys, columns queries */
		gemm_abt(st, sk, cq, warp * 16, lane);
		gemm_abt(dpt, sv, cdo, warp * 16, lane);
#pragma unroll
		for (int n = 0; n < NT_S; n++) {
#pragma unroll
			for (int y = 0; y < 4; y++) {
				int c = n * 8 + 2 * tg + (y & 1);
				int i = q0 + c;
				int j = jw[y >> 1];
				bool ok = clr ||
					  cols_take(p, h, i, j, (int)cL[64 + c],
						    off);
				float ps = p_of(ok ? st[n][y] * p.scale_log2 :
						ATTN_NEG_INF, cL[c]);

				st[n][y] = ws * ps;
				dpt[n][y] = ws * ps * (dpt[n][y] - cL[128 + c]);
			}
		}
		gemm_ab(dv, st, cdo, lane);
		gemm_ab(dk, dpt, cq, lane);
		/* stage bf ^ 1's statistics: nobody reads them before the
		 * barrier at the top of the next step */
		if (x + 1 < nx)
			COLS_STEP_STATS(bf ^ 1);
	}
#undef COLS_STEP_LOAD
#undef COLS_STEP_STATS
	cp_async_wait_all();
	cols_add_rows((u16 *)p.dk + b * p.dk_sb + hk * p.dk_sh, p.dk_sn,
		      jw[0], jw[1], dk, p.scale, lane);
	cols_add_rows((u16 *)p.dv + b * p.dv_sb + hk * p.dv_sh, p.dv_sn,
		      jw[0], jw[1], dv, 1.f, lane);
#endif
}

#endif
