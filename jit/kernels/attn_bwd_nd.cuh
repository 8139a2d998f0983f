/* SPDX-License-Identifier: MIT */
/*
 * The non-deterministic backward (included by attn_bwd.cu): one kernel per
 * (b, kv head, 64-key tile), the dK/dV kernel's loop plus, for each query
 * tile it visits, that tile's share of dQ,
 *
 *	dQ[q0 .. q0 + 63] += dS K_tile		(64 x 64 by 64 x d)
 *
 * added in fp32 into the workspace p.dq_acc [B, Hq, Nq, d] with atomic
 * reductions: the order of the additions varies run to run, so the bits
 * of dQ do.  It saves the dQ kernel's recomputation of S = Q K^T and
 * dP = dO V^T (7 tile GEMMs become 5).  A last kernel scales the
 * workspace by sigma into dQ's dtype.  The host side is
 * arch/cuda/attn_bwd_nd.c.
 */
#ifndef ASAM_ATTN_BWD_ND_CUH
#define ASAM_ATTN_BWD_ND_CUH

/* dS^T staged in shared memory: [64 keys][64 queries], rows padded */
#define ND_LDS (BLOCK_M + 8)
#define ND_DC 64		/* dQ columns a pass: 32 accumulators a thread */

/*
 * The warp's 16 keys x 64 queries of dS (unscaled, as the mma fragments
 * hold them: row = key, column = query) into sds[key][query] as 16-bit.
 */
static __device__ __forceinline__ void nd_store_ds(u16 *sds, float (*ds)[4],
						   int warp, int lane)
{
	const int gr = lane >> 2, tg = lane & 3;

#pragma unroll
	for (int n = 0; n < NT_S; n++)
#pragma unroll
		for (int r = 0; r < 2; r++)
			*(u32 *)(sds + (warp * 16 + gr + r * 8) * ND_LDS +
				 n * 8 + 2 * tg) =
				pack2(ds[n][2 * r], ds[n][2 * r + 1]);
}

/*
 * dQ[q0 .. q0 + 63] += dS K over the block's KN keys: A = dS[query][key]
 * read transposed from sds ([KN][ND_LDS]), B = K[key][d] from sk.  NW
 * warps: warp & 3 picks 16 query rows, warp >> 2 a slice of the columns.
 */
template <int NW, int KN>
static __device__ __forceinline__ void nd_add_dq(const attn_bwd_params &p,
						 const u16 *sds, const u16 *sk,
						 int b, int h, int q0,
						 int warp, int lane)
{
	constexpr int CG = HEAD_DIM / (NW / 4);	/* columns a warp */
	constexpr int DC = CG < ND_DC ? CG : ND_DC;
	const int qr = (warp & 3) * 16, c0 = (warp >> 2) * CG;
	float *acc_g = p.dq_acc + (((i64)b * p.Hq + h) * p.Nq) * HEAD_DIM;

#pragma unroll
	for (int dc = c0; dc < c0 + CG; dc += DC) {
		float acc[DC / 8][4];

#pragma unroll
		for (int n = 0; n < DC / 8; n++)
			acc[n][0] = acc[n][1] = acc[n][2] = acc[n][3] = 0.f;
#pragma unroll
		for (int ks = 0; ks < KN / 16; ks++) {
			u32 a[4];
			/* matrix lane/8: queries +8 (bit 0), keys +8 (bit 1) */
			int kr = ks * 16 + (lane & 7) + (lane >> 4) * 8;
			int qc = qr + ((lane >> 3) & 1) * 8;

			ldsm_x4_t(a, sds + kr * ND_LDS + qc);
#pragma unroll
			for (int n2 = 0; n2 < DC / 16; n2++) {
				u32 bk[4];
				int r = ks * 16 + (lane & 7) +
					((lane >> 3) & 1) * 8;
				int c = dc + n2 * 16 + (lane >> 4) * 8;

				ldsm_x4_t(bk, sk + r * ATTN_LDS + c);
				mma16816(acc[2 * n2], a, bk);
				mma16816(acc[2 * n2 + 1], a, bk + 2);
			}
		}
		red_frag_rows<DC / 8>(acc_g + dc, HEAD_DIM, q0 + qr, p.Nq,
				      acc, lane);
	}
}

#define ND_USE_LIST (PATTERN != ATTN_P_DENSE && GATE_MODE != ATTN_G_DENSE)
#define ND_LIST_ONLY (GATE_MODE == ATTN_G_SPARSE && ND_USE_LIST)

/* head @h's transposed list of 64-key tile @kt: query tiles, sorted */
static __device__ __forceinline__ const int *nd_tlist(const attn_bwd_params &p,
						      int h, int kt, int *nt)
{
	int li = (p.list_per_head ? h * p.nkt : 0) + kt;

	*nt = p.tlist_off[li + 1] - p.tlist_off[li];
	return p.tlist + p.tlist_off[li];
}

/* how many query tiles head @h visits for key tile @kt */
static __device__ __forceinline__ int nd_count(const attn_bwd_params &p, int h,
					       int kt, int qt_lo, int qt_hi)
{
	const int *tl;
	int nt, c = 0;

	if (!ND_LIST_ONLY)
		return qt_hi > qt_lo ? qt_hi - qt_lo : 0;
	tl = nd_tlist(p, h, kt, &nt);
	while (c < nt && ATTN_E_TILE(tl[c]) < qt_hi)
		c++;
	return c;
}

/*
 * The @it-th query tile of head @h for key tile @kt, its list entry @e
 * and whether the sparse branch takes it (@in_s): as dkdv_tile() walks
 * them.
 */
static __device__ __forceinline__ int nd_qtile(const attn_bwd_params &p,
					       int h, int kt, int it,
					       int qt_lo, int *e, bool *in_s)
{
	const int *tl;
	int nt, qt = qt_lo + it;

	*e = ATTN_E_FULL;
	*in_s = GATE_MODE != ATTN_G_DENSE;
	if (!ND_USE_LIST)
		return qt;
	tl = nd_tlist(p, h, kt, &nt);
	if (ND_LIST_ONLY) {
		*e = tl[it];
		return ATTN_E_TILE(*e);
	}
	*in_s = false;		/* SOFT: the sparse branch where listed */
	for (int x = 0; x < nt && ATTN_E_TILE(tl[x]) <= qt; x++)
		if (ATTN_E_TILE(tl[x]) == qt) {
			*in_s = true;
			*e = tl[x];
		}
	return qt;
}

/*
 * One (b, kv head, key tile of KN = 16 NW keys): the query tiles of every
 * head of the GQA group as one sequence, the next tile's Q, dO (cp.async)
 * and row statistics (registers) loaded while this one computes.
 *
 * NW = 8 (128 keys, as FlashAttention-2's backward at d 128: half the dQ
 * reductions and Q/dO loads a key of 64-key tiles) runs without lists
 * (the DENSE pattern or gate) and defers each tile's dQ step to the start
 * of the next iteration, from a second dS buffer, so one barrier an
 * iteration is enough.  NW = 4 (64 keys: the transposed lists are per
 * 64-key tile) adds dQ after a second barrier: a second dS buffer would
 * cost the second block an SM at d 128.
 */
template <int NW>
static __device__ __forceinline__ void nd_tile(const attn_bwd_params &p,
					       u16 *smem)
{
	constexpr int KN = NW * 16, T = NW * 32;
	constexpr bool DEFER = NW == 8;
	const int b = blockIdx.z, hk = blockIdx.y, kt = blockIdx.x;
	const int warp = threadIdx.x >> 5, lane = threadIdx.x & 31;
	const int G = p.Hq / p.Hkv, hend = hk * G + G;
	const int lq = p.len_q ? p.len_q[b * p.lq_s] : p.Nq;
	const int lk = p.len_k ? p.len_k[b * p.lk_s] : p.Nk;
	const int k0 = kt * KN, off = p.Nk - p.Nq;
	u16 *sk = smem, *sv = sk + KN * ATTN_LDS;
	u16 *sq = sv + KN * ATTN_LDS;			/* [2][64][LDS] */
	u16 *sdo = sq + 2 * BLOCK_M * ATTN_LDS;		/* [2][64][LDS] */
	float *sL = (float *)(sdo + 2 * BLOCK_M * ATTN_LDS); /* [2][4][64] */
	u16 *sds = (u16 *)(sL + 2 * 4 * 64);	/* [DEFER + 1][KN][ND_LDS] */
	const u16 *qg = (const u16 *)p.q + b * p.q_sb;
	const u16 *dog = (const u16 *)p.d_o + b * p.do_sb;
	float dk[NT_O][4], dv[NT_O][4], nl[4];
	int ph = 0, pq0 = 0;	/* head and rows of the dQ still to add */
	int qt_lo, qt_hi;
	int h = hk * G, it = 0, cnt, e, t = 0;
	bool in_s;

	kv_begin(k0, off, lq, lk, &qt_lo, &qt_hi, dk, dv);
	cnt = nd_count(p, h, kt, qt_lo, qt_hi);
	while (!cnt && ++h < hend)
		cnt = nd_count(p, h, kt, qt_lo, qt_hi);
	load_tile<KN, T>(sk, (const u16 *)p.k + b * p.k_sb + hk * p.k_sh,
			 p.k_sn, k0, p.Nk);
	load_tile<KN, T>(sv, (const u16 *)p.v + b * p.v_sb + hk * p.v_sh,
			 p.v_sn, k0, p.Nk);
	if (h < hend) {
		int q0 = nd_qtile(p, h, kt, 0, qt_lo, &e, &in_s) * BLOCK_M;

		load_tile<BLOCK_M, T>(sq, qg + h * p.q_sh, p.q_sn, q0, p.Nq);
		load_tile<BLOCK_M, T>(sdo, dog + h * p.do_sh, p.do_sn, q0,
				      p.Nq);
		if (threadIdx.x < BLOCK_M) {
			bwd_rowstats(p, b, h, q0 + threadIdx.x, nl);
			for (int x = 0; x < 4; x++)
				sL[x * 64 + threadIdx.x] = nl[x];
		}
	}
	cp_async_commit();

	for (; h < hend; t++) {
		const int buf = t & 1;
		const int q0 = nd_qtile(p, h, kt, it, qt_lo, &e, &in_s) *
			       BLOCK_M;
		const float g = GATE_MODE == ATTN_G_SOFT ?
				p.gate[b * p.g_sb + h * p.g_sh] : 0.f;
		const float ws = GATE_MODE == ATTN_G_SPARSE ? 1.f : g;
		const float wd = GATE_MODE == ATTN_G_DENSE ? 1.f : 1.f - g;
		const u16 *cq = sq + buf * BLOCK_M * ATTN_LDS;
		const u16 *cdo = sdo + buf * BLOCK_M * ATTN_LDS;
		const float *cL = sL + buf * 256;
		u16 *cds = sds + (DEFER ? buf * KN * ND_LDS : 0);
		int nh = h, nit = it + 1, ncnt = cnt;
		float st[NT_S][4], dpt[NT_S][4];

		while (nit >= ncnt && ++nh < hend) {	/* the next tile */
			nit = 0;
			ncnt = nd_count(p, nh, kt, qt_lo, qt_hi);
		}
		cp_async_wait_all();
		__syncthreads();	/* tile t staged; t - 1 consumed */
		if (nh < hend) {
			int ne;
			bool nin;
			int nq0 = nd_qtile(p, nh, kt, nit, qt_lo, &ne, &nin) *
				  BLOCK_M;

			load_tile<BLOCK_M, T>(sq + (buf ^ 1) * BLOCK_M *
					      ATTN_LDS, qg + nh * p.q_sh,
					      p.q_sn, nq0, p.Nq);
			load_tile<BLOCK_M, T>(sdo + (buf ^ 1) * BLOCK_M *
					      ATTN_LDS, dog + nh * p.do_sh,
					      p.do_sn, nq0, p.Nq);
			if (threadIdx.x < BLOCK_M)
				bwd_rowstats(p, b, nh, nq0 + threadIdx.x, nl);
		}
		cp_async_commit();
		/* the previous tile's dQ: its dS is complete since the barrier */
		if (DEFER && t > 0)
			nd_add_dq<NW, KN>(p, sds + (buf ^ 1) * KN * ND_LDS, sk,
					  b, ph, pq0, warp, lane);

		gemm_abt(st, sk, cq, warp * 16, lane);
		gemm_abt(dpt, sv, cdo, warp * 16, lane);
		ds_tile(p, st, dpt, cL, h, q0, k0 + warp * 16, lq, lk, off,
			in_s, e, wd, ws, lane);
		gemm_ab(dv, st, cdo, lane);
		nd_store_ds(cds, dpt, warp, lane);
		gemm_ab(dk, dpt, cq, lane);
		if (!DEFER) {
			__syncthreads();	/* dS of every warp */
			nd_add_dq<NW, KN>(p, cds, sk, b, h, q0, warp, lane);
		}
		if (nh < hend && threadIdx.x < BLOCK_M)
			for (int x = 0; x < 4; x++)
				sL[(buf ^ 1) * 256 + x * 64 + threadIdx.x] =
					nl[x];
		ph = h;
		pq0 = q0;
		h = nh;
		it = nit;
		cnt = ncnt;
	}
	cp_async_wait_all();
	if (DEFER && t > 0) {
		__syncthreads();	/* the last tile's dS of every warp */
		nd_add_dq<NW, KN>(p, sds + ((t - 1) & 1) * KN * ND_LDS, sk,
				  b, ph, pq0, warp, lane);
	}
	store_dkdv(p, b, hk, k0 + warp * 16, dk, dv, lane);
}

/* 64 keys, 4 warps: every pattern and gate (the lists' tile) */
extern "C" __global__ void __launch_bounds__(128)
asam_attn_bwd_nd_kernel(const attn_bwd_params p)
{
	extern __shared__ __align__(16) u16 attn_smem[];

	nd_tile<4>(p, attn_smem);
}

/* 128 keys, 8 warps: the DENSE pattern or gate (no lists) */
extern "C" __global__ void __launch_bounds__(256, 1)
asam_attn_bwd_nd128_kernel(const attn_bwd_params p)
{
	extern __shared__ __align__(16) u16 attn_smem[];

	nd_tile<8>(p, attn_smem);
}

/*
 * dQ = sigma * the workspace, in dQ's dtype: eight elements a thread, as
 * 16-byte loads and stores (it moves 1.25 x the bytes of dQ in fp32 and
 * should run at the memory's rate)
 */
extern "C" __global__ void __launch_bounds__(256)
asam_attn_bwd_dqcvt_kernel(const attn_bwd_params p)
{
	const int b = blockIdx.z, h = blockIdx.y;
	const i64 t = (i64)blockIdx.x * 256 + threadIdx.x;
	const i64 i = t / (HEAD_DIM / 8), c = t % (HEAD_DIM / 8) * 8;
	const float4 *a = (const float4 *)(p.dq_acc + (((i64)b * p.Hq + h) *
				p.Nq + i) * HEAD_DIM + c);
	float4 x, y;

	if (i >= p.Nq)
		return;
	x = a[0];
	y = a[1];
	*(uint4 *)((u16 *)p.dq + b * p.dq_sb + h * p.dq_sh + i * p.dq_sn + c) =
		make_uint4(pack2(x.x * p.scale, x.y * p.scale),
			   pack2(x.z * p.scale, x.w * p.scale),
			   pack2(y.x * p.scale, y.y * p.scale),
			   pack2(y.z * p.scale, y.w * p.scale));
}

#endif
