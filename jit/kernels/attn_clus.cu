/* SPDX-License-Identifier: MIT */
/*
 * CLUSTERED (SPEC 3.2) on the GPU, everything but the attention itself:
 *
 * - assignment: c(x) = argmax_c <n^(x), n^(mu_hc)>, lowest c on ties, per
 *   query head h (keys of a GQA group are assigned once per query head).
 *   The decision must be the one runtime/pattern.c takes in fp64.  The
 *   tensor cores score the tokens against the unit centroids with fp32
 *   sums (cl_pass); when a token's best and runner-up lie closer than a
 *   bound far above fp32's error (1e-4 |x|), one thread redoes the token
 *   in fp64 in the reference's exact order of operations (no fused
 *   multiply-add), so every decision is the reference's, tie for tie, at
 *   fp32 cost.
 * - counting sort of each (b, h) side by cluster, stable (ascending token
 *   within a cluster), one block per (b, h, side), no atomics: each warp
 *   counts a contiguous segment, so ranks follow token order.  It also
 *   writes the tile table: (first slot, cluster) of every tile of at most
 *   p.tile[side] slots that stays inside one cluster.
 * - online k-means (asam_cluster_update): per (h, c), one thread per
 *   element sums n^(x) over the assigned tokens in the reference's order
 *   (b, queries then keys, token order) in fp64: the CPU's result.
 * - the GQA sum of per-query-head fp32 key gradients in head order.
 *
 * Preamble: HEAD_DIM, DTYPE (q and k), CDT (centroids: enum asam_dtype).
 */
#include "attn_common.cuh"

#ifdef ASAM_JIT
#define CDT ASAM_CDT
#endif

#define CL_CDT_F16 1
#define CL_CDT_BF16 2
#define CL_CDT_F32 3
#define CL_CDT_F64 4

#define CL_THREADS 128
#define CL_CB 32		/* clusters padded to a multiple of this */
#define CL_SORT_WARPS 32

static __device__ __forceinline__ float x16(u16 v)
{
	return unpack_lo(v);
}

static __device__ __forceinline__ double mu_get(const attn_clus_params &p,
						i64 off)
{
#if CDT == CL_CDT_F16
	float f;

	asm("{ .reg .f16 t; mov.b16 t, %1; cvt.f32.f16 %0, t; }"
	    : "=f"(f) : "h"(((const u16 *)p.mu)[off]));
	return f;
#elif CDT == CL_CDT_BF16
	return __uint_as_float((u32)((const u16 *)p.mu)[off] << 16);
#elif CDT == CL_CDT_F32
	return ((const float *)p.mu)[off];
#else
	return ((const double *)p.mu)[off];
#endif
}

static __device__ __forceinline__ void mu_set(const attn_clus_params &p,
					      i64 off, double v)
{
	float f = __double2float_rn(v);

#if CDT == CL_CDT_F16
	u16 h;

	asm("{ .reg .f16 t; cvt.rn.f16.f32 t, %1; mov.b16 %0, t; }"
	    : "=h"(h) : "f"(f));
	((u16 *)p.mu)[off] = h;
#elif CDT == CL_CDT_BF16
	u16 h;

	asm("cvt.rn.bf16.f32 %0, %1;\n" : "=h"(h) : "f"(f));
	((u16 *)p.mu)[off] = h;
#elif CDT == CL_CDT_F32
	((float *)p.mu)[off] = f;
#else
	((double *)p.mu)[off] = v;
#endif
}

/* |x|, max'd with 1e-12, summed in order without fma: the reference's */
static __device__ double exact_norm(const u16 *x)
{
	double n = 0;

	for (int e = 0; e < HEAD_DIM; e++) {
		double v = x16(x[e]);

		n = __dadd_rn(n, __dmul_rn(v, v));
	}
	return fmax(__dsqrt_rn(n), 1e-12);
}

/* the next candidate from @c on: within @tol of @best, or any if @zero */
template <class F>
static __device__ __forceinline__ int exact_next(int c, int C, float best,
						 float tol, bool zero, F score)
{
	while (c < C && !zero && !(score(c) >= best - tol))
		c++;
	return c;
}

/*
 * Too close to call in fp32 (or x = 0): the reference's arithmetic, but
 * only for the clusters whose fp32 score (@score(c), the screen's within
 * its rounding) lies within @tol of the @best one.  The fp64 winner's
 * fp32 score lies within twice the fp32 error (far under @tol) of the
 * best, so no other cluster can win; walking the candidates in index
 * order with a strict > keeps the reference's lowest index on ties.
 *
 * One in a few hundred tokens comes here, but its warp waits: each sum
 * is a chain of 128 dependent fp64 adds, and with a load in every step
 * ncu put 18 % of the assignment's stalls on this path (H200, C32).  So
 * two candidates and the norm run as three chains side by side, their
 * operands loaded 16 at a time ahead of the adds; each chain keeps the
 * reference's order (no fused multiply-add).
 */
template <class F>
static __device__ int exact_pick(const attn_clus_params &p, const u16 *x,
				 int h, int C, const double *scn, float best,
				 float tol, bool zero, F score)
{
	const i64 mh = h * p.mu_sh;
	double xn = 0, bv = 0;
	bool first = true;
	int bc = 0;

	for (int ca = exact_next(0, C, best, tol, zero, score), cb;
	     ca < C; ca = exact_next(cb + 1, C, best, tol, zero, score)) {
		double da = 0, db = 0, nx = 0;

		cb = exact_next(ca + 1, C, best, tol, zero, score);
		for (int e0 = 0; e0 < HEAD_DIM; e0 += 16) {
			double xv[16], ma[16], mb[16];

#pragma unroll
			for (int k = 0; k < 16; k++) {
				const i64 at = (i64)(e0 + k) * p.mu_se;

				xv[k] = x16(x[e0 + k]);
				ma[k] = mu_get(p, mh + ca * p.mu_sc + at);
				mb[k] = cb < C ? mu_get(p, mh + cb * p.mu_sc +
							   at) : 0.0;
			}
#pragma unroll
			for (int k = 0; k < 16; k++) {
				nx = __dadd_rn(nx, __dmul_rn(xv[k], xv[k]));
				da = __dadd_rn(da, __dmul_rn(xv[k], ma[k]));
				db = __dadd_rn(db, __dmul_rn(xv[k], mb[k]));
			}
		}
		if (first)
			xn = fmax(__dsqrt_rn(nx), 1e-12);	/* exact_norm */
#pragma unroll
		for (int i = 0; i < 2; i++) {
			const int c = i ? cb : ca;
			double cs;

			if (c >= C)
				break;
			cs = __ddiv_rn(i ? db : da, __dmul_rn(xn, scn[c]));
			if (first || cs > bv) {
				bv = cs;
				bc = c;
				first = false;
			}
		}
	}
	return bc;
}

/*
 * Tokens on the tensor cores, bf16 and fp16 alike: each warp scores 32
 * tokens a pass against every centroid with mma.sync (m16n8k16, fp32
 * accumulate), the unit centroid split into two halves of the tokens'
 * type (hi + lo: 16 bits of its fp32 mantissa in bf16, 22 in fp16) so the
 * score's error stays near fp32's, far under the 1e-4 |x| margin of the
 * screen.
 *
 * The centroids are the A operand (16 clusters a tile) and the tokens
 * the B operand (8 a tile): a B fragment is two words of one token, so
 * a lane's 16-byte load of a token row (dims 32 q + 8 tg, a sum over k
 * may take the dimensions in any order) feeds two k steps with no
 * register moves; with the tokens as A, every fragment mixed two rows
 * and ptxas spent ~170 moves a 16-cluster step arranging them (ncu,
 * H200: 2400 instructions a pass of 32 tokens, 128 us a side).  The
 * prep kernel stores the centroids in fragment order, one 16-byte
 * shared load a lane a fragment (cl_frag_at).  A token's scores then lie
 * across the eight lanes of its column, merged once a pass by halving
 * (cl_pass).
 */
#define CL_NQ (HEAD_DIM / 32)	/* 16-byte chunks of a row a lane holds */
#define CL_NT 4			/* 8-token tiles a warp scores a pass */
#define CL_PASS (8 * CL_NT)	/* tokens a warp a pass */
/*
 * Clusters up to which the assignment keeps each token's scores for the
 * screen (18 KB a block at 32, 35 KB at 64): otherwise the screen
 * recomputed every cluster's score of a close token, ~40 % of the
 * kernel's instructions.  Rows of CP + 4 floats: the column's stores
 * (tokens 2 tg, clusters gr) fall on distinct banks.
 */
#define CL_SC_MAX 64
#define CL_SCP(CP) ((CP) + 4)

/* one float to the dtype, rounded to nearest even */
static __device__ __forceinline__ u16 pack_one(float f)
{
	return (u16)(pack2(f, 0.f) & 0xffff);
}

/*
 * Where (cluster @c, dim @e) of half @hl (0: hi, 1: lo) lies in the
 * fragment-ordered centroids, in elements: blocks of 32 lanes x 16 bytes
 * for each (16-cluster tile, q, k step j, half); lane (gr, tg) holds the
 * A fragment {c gr, c gr + 8} x {dims d, d + 1}, then x {d + 2, d + 3},
 * d = 32 q + 8 tg + 4 j.
 */
static __device__ __forceinline__ int cl_frag_at(int c, int e, int hl)
{
	const int r = c & 15, w = (r >> 3) + 2 * ((e >> 1) & 1);

	return ((((c >> 4) * CL_NQ + (e >> 5)) * 2 + ((e >> 2) & 1)) * 2 +
		hl) * 256 + ((r & 7) * 4 + ((e >> 3) & 3)) * 8 + 2 * w +
	       (e & 1);
}

/* fold score @v of cluster @c (increasing) into (best, second, cluster) */
static __device__ __forceinline__ void cl_fold(float &b, float &s, int &bc,
					       float v, int c)
{
	s = fmaxf(s, fminf(b, v));	/* an equal score: a tie, in fp64 */
	bc = v > b ? c : bc;
	b = fmaxf(b, v);
}

/* join another lane's (best, second, cluster): lowest cluster on ties */
static __device__ __forceinline__ void cl_join(float &b, float &s, int &bc,
					       float ob, float os, int oc)
{
	const bool take = ob > b || (ob == b && oc < bc);

	s = take ? fmaxf(b, os) : fmaxf(s, ob);
	bc = take ? oc : bc;
	b = take ? ob : b;
}

/*
 * The fp32 score of row @x against cluster @c, for exact_pick's screen
 * past CL_SC_MAX clusters (any order's rounding lies far under the
 * screen's margin).  Rare: close tokens of large C only.
 */
static __device__ float cl_screen(const u16 *x, const u16 *frag, int c)
{
	float f = 0.f;

	for (int e = 0; e < HEAD_DIM; e++)
		f += x16(x[e]) * (x16(frag[cl_frag_at(c, e, 0)]) +
				  x16(frag[cl_frag_at(c, e, 1)]));
	return f;
}

/* word @i of a 16-byte chunk */
static __device__ __forceinline__ u32 cl_w(const uint4 &v, int i)
{
	return i == 0 ? v.x : i == 1 ? v.y : i == 2 ? v.z : v.w;
}

/*
 * Token t0 + 8 t + gr of pass @t0 into @xa[t]: its 16-byte chunks at dims
 * 32 q + 8 tg.  Rows past @N repeat the last one (scored, never written).
 */
static __device__ __forceinline__ void cl_load(uint4 (*xa)[CL_NQ],
					       const u16 *xb, i64 sn, int t0,
					       int N, int gr, int tg)
{
#pragma unroll
	for (int t = 0; t < CL_NT; t++) {
		const int r = t0 + 8 * t + gr;
		const u16 *x = xb + (i64)(r < N ? r : N - 1) * sn + 8 * tg;

#pragma unroll
		for (int q = 0; q < CL_NQ; q++)
			xa[t][q] = *(const uint4 *)(x + 32 * q);
	}
}

/*
 * |x|^2 of the lane's part of a token, for the screen's margin.  bf16:
 * packed fmas in two chains of eight (a rounding of at most 2^-8 each,
 * so at most 3.2 % low; times 1.04 it is no less than the true value;
 * bf16 keeps fp32's exponents: nothing overflows, only parts under
 * 2^-120 vanish, and a norm under 2^-100 goes to fp64 whole).  fp16
 * squares overflow past 256: fp32 there.
 */
static __device__ __forceinline__ float cl_norm2(const uint4 *xq)
{
#if DTYPE == ATTN_BF16
	u32 a = 0, b = 0;

#pragma unroll
	for (int q = 0; q < CL_NQ; q++) {
		a = fma2(xq[q].x, xq[q].x, a);
		b = fma2(xq[q].y, xq[q].y, b);
		a = fma2(xq[q].z, xq[q].z, a);
		b = fma2(xq[q].w, xq[q].w, b);
	}
	return ((unpack_lo(a) + unpack_hi(a)) + (unpack_lo(b) +
		unpack_hi(b))) * 1.04f;
#else
	float n = 0.f;

#pragma unroll
	for (int q = 0; q < CL_NQ; q++) {
#pragma unroll
		for (int i = 0; i < 4; i++) {
			const float u = unpack_lo(cl_w(xq[q], i));
			const float v = unpack_hi(cl_w(xq[q], i));

			n += u * u + v * v;
		}
	}
	return n;
#endif
}

/*
 * Score the pass' 32 tokens held in @xa and settle them: lane (gr, tg)
 * writes token 8 (gr >> 1) + 2 tg + (gr & 1).  @frag: the centroids in
 * fragment order; @sc: the warp's [32][CL_SCP] scores, or NULL.
 */
static __device__ void cl_pass(const attn_clus_params &p, int side, int h,
			       i64 bh, int N, int C, int CP, int t0,
			       const u16 *xb, i64 sn, uint4 (*xa)[CL_NQ],
			       const u16 *frag, const double *scn, float *sc)
{
	const int lane = threadIdx.x & 31, gr = lane >> 2, tg = lane & 3;
	const int SCP = CL_SCP(CP);
	/* token k = 2 t + u of the lane's column: 8 t + 2 tg + u */
	float bv[2 * CL_NT], sv[2 * CL_NT], nn[CL_NT];
	int bc[2 * CL_NT];

#pragma unroll
	for (int t = 0; t < CL_NT; t++)
		nn[t] = quad_sum(cl_norm2(xa[t]));	/* token 8 t + gr */
#pragma unroll
	for (int k = 0; k < 2 * CL_NT; k++) {
		bv[k] = ATTN_NEG_INF;
		sv[k] = ATTN_NEG_INF;
		bc[k] = 0;
	}
	__syncwarp();	/* the last pass' screen read sc */
	for (int ct = 0; ct < CP / 16; ct++) {
		const uint4 *fa = (const uint4 *)frag + ct * CL_NQ * 4 * 32 +
				  lane;
		const int c0 = 16 * ct + gr, c1 = c0 + 8;
		/* hi and lo apart: chains of 2 CL_NQ MMAs */
		float acc[CL_NT][2][4];

#pragma unroll
		for (int t = 0; t < CL_NT; t++) {
#pragma unroll
			for (int i = 0; i < 4; i++) {
				acc[t][0][i] = 0.f;
				acc[t][1][i] = 0.f;
			}
		}
#pragma unroll
		for (int q = 0; q < CL_NQ; q++) {
#pragma unroll
			for (int j = 0; j < 2; j++) {
				const uint4 H = fa[((q * 2 + j) * 2) * 32];
				const uint4 L = fa[((q * 2 + j) * 2 + 1) * 32];
				const u32 ah[4] = { H.x, H.y, H.z, H.w };
				const u32 al[4] = { L.x, L.y, L.z, L.w };

#pragma unroll
				for (int t = 0; t < CL_NT; t++) {
					const u32 b[2] = {
						cl_w(xa[t][q], 2 * j),
						cl_w(xa[t][q], 2 * j + 1) };

					mma16816(acc[t][0], ah, b);
					mma16816(acc[t][1], al, b);
				}
			}
		}
#pragma unroll
		for (int t = 0; t < CL_NT; t++) {
			/* (c0 | c1) x (token 2 tg | 2 tg + 1) */
			float s[4];

#pragma unroll
			for (int i = 0; i < 4; i++)
				s[i] = acc[t][0][i] + acc[t][1][i];
			if (sc) {	/* the scores, for exact_pick's screen */
				float *r0 = sc + (8 * t + 2 * tg) * SCP;

				r0[c0] = s[0];
				r0[SCP + c0] = s[1];
				r0[c1] = s[2];
				r0[SCP + c1] = s[3];
			}
			/* past C: zero rows, out of the running */
			cl_fold(bv[2 * t], sv[2 * t], bc[2 * t],
				c0 < C ? s[0] : ATTN_NEG_INF, c0);
			cl_fold(bv[2 * t + 1], sv[2 * t + 1], bc[2 * t + 1],
				c0 < C ? s[1] : ATTN_NEG_INF, c0);
			cl_fold(bv[2 * t], sv[2 * t], bc[2 * t],
				c1 < C ? s[2] : ATTN_NEG_INF, c1);
			cl_fold(bv[2 * t + 1], sv[2 * t + 1], bc[2 * t + 1],
				c1 < C ? s[3] : ATTN_NEG_INF, c1);
		}
	}

	/*
	 * The column's eight lanes hold every token's partial folds over
	 * their clusters: halve three times (lane bits 4, 3, 2), each lane
	 * keeping the half of the tokens its bit names, until lane gr holds
	 * token k = gr whole.  14 joins, not 24 of a butterfly.
	 */
#pragma unroll
	for (int r = 0; r < 3; r++) {
		const int m = CL_NT >> r;
		const bool up = (gr >> (2 - r)) & 1;

#pragma unroll
		for (int i = 0; i < m; i++) {
			/* values, not element addresses, selected: an
			 * address select put the arrays in local memory */
			const float b0 = bv[i], b1 = bv[m + i];
			const float s0 = sv[i], s1 = sv[m + i];
			const int c0 = bc[i], c1 = bc[m + i];
			const float ob = __shfl_xor_sync(0xffffffffu,
							 up ? b0 : b1, 16 >> r);
			const float os = __shfl_xor_sync(0xffffffffu,
							 up ? s0 : s1, 16 >> r);
			const int oc = __shfl_xor_sync(0xffffffffu,
						       up ? c0 : c1, 16 >> r);

			bv[i] = up ? b1 : b0;
			sv[i] = up ? s1 : s0;
			bc[i] = up ? c1 : c0;
			cl_join(bv[i], sv[i], bc[i], ob, os, oc);
		}
	}

	/* token k = gr: 8 (gr >> 1) + 2 tg + (gr & 1); its norm from the
	 * quad that loaded it */
	const int row = 8 * (gr >> 1) + 2 * tg + (gr & 1), t = t0 + row;
	float xn2 = 0.f;

#pragma unroll
	for (int i = 0; i < CL_NT; i++) {
		const float v = __shfl_sync(0xffffffffu, nn[i], (row & 7) * 4);

		xn2 = i == row >> 3 ? v : xn2;
	}
	__syncwarp();	/* sc's stores seen by every lane */

	const u16 *x = xb + (i64)t * sn;
	const float tol = 1e-4f * sqrtf(xn2);
	int pick = bc[0];

	if (t >= N)
		return;
	/* a vanishing or non-finite norm: every cluster in fp64 */
	if (!(bv[0] - sv[0] > tol))
		pick = exact_pick(p, x, h, C, scn, bv[0], tol,
				  !(xn2 >= 0x1p-100f), [&](int cc) {
			/* the MMA's own score where kept */
			return sc ? sc[row * SCP + cc] : cl_screen(x, frag, cc);
		});
	p.cl[side][bh * N + t] = pick;
	if (p.nrm[side])
		p.nrm[side][bh * N + t] = exact_norm(x);
}

/*
 * The unit centroids of head blockIdx.x in the layout the assignment
 * copies into its shared memory (hi and lo halves of the tokens' type in
 * fragment order, zero rows up to a multiple of CL_CB clusters), then their
 * fp64 norms, at @p.cent + h * p.cent_stride bytes.  Once a call: when
 * every assignment block did it in its prologue, a warp's fp64 sums and
 * divides and their dependent loads ran 1024 times a side at B2 H16 16K.
 * Grid (Hq, CP / 8): eight clusters a block (one block a head took 16 us
 * at C 32, its threads' fp64 divides and loads in series).  A thread sums
 * a centroid's norm in the reference's order, then every thread takes
 * elements.
 */
extern "C" __global__ void __launch_bounds__(CL_THREADS)
asam_clus_prep_kernel(const attn_clus_params p)
{
	extern __shared__ __align__(16) float cl_smem[];
	double *sn = (double *)cl_smem;			/* [8] */
	const int h = blockIdx.x, c0 = 8 * blockIdx.y, C = p.C;
	const int CP = (C + CL_CB - 1) / CL_CB * CL_CB;
	unsigned char *out = (unsigned char *)p.cent + (i64)h * p.cent_stride;
	u16 *frag = (u16 *)out;			/* cl_frag_at() */
	double *scn = (double *)(frag + 2 * CP * HEAD_DIM);	/* [C] */

	if (threadIdx.x < 8 && c0 + (int)threadIdx.x < C) {
		const int c = c0 + threadIdx.x;
		const i64 at = h * p.mu_sh + c * p.mu_sc;
		double n = 0;

		/* eight loads in flight before their sums, in order */
		for (int e0 = 0; e0 < HEAD_DIM; e0 += 8) {
			double m[8];

#pragma unroll
			for (int k = 0; k < 8; k++)
				m[k] = mu_get(p, at + (e0 + k) * p.mu_se);
#pragma unroll
			for (int k = 0; k < 8; k++)
				n = __dadd_rn(n, __dmul_rn(m[k], m[k]));
		}
		n = fmax(__dsqrt_rn(n), 1e-12);
		sn[threadIdx.x] = n;
		scn[c] = n;
	}
	__syncthreads();
	for (int x = threadIdx.x; x < 8 * HEAD_DIM; x += CL_THREADS) {
		const int c = c0 + x / HEAD_DIM, e = x % HEAD_DIM;
		float u = c < C ? (float)(mu_get(p, h * p.mu_sh + c * p.mu_sc +
						 e * p.mu_se) / sn[c - c0]) :
			  0.f;
		u16 hi = pack_one(u);

		frag[cl_frag_at(c, e, 0)] = hi;
		frag[cl_frag_at(c, e, 1)] = pack_one(u - x16(hi));
	}
}

/*
 * Grid (token blocks, Hq, 2 B: queries, then keys), CL_THREADS threads,
 * CL_PASS tokens a warp a pass (cl_pass) over the block's tokens (the
 * host sizes the grid for the longer side): one launch, one tail.
 * Dynamic shared memory: the head's block of asam_clus_prep_kernel,
 * copied, then each warp's scores for the screen.  The warp's first
 * tokens are in flight while the block copies the centroids.
 *
 * Before (ninth and tenth sessions, H200, B2 H16 16K d128): 16 tokens a
 * warp a pass with 4-byte token loads and four 4-byte shared loads for
 * each B fragment, fp16 a token a thread on the CUDA cores; 128 + 135 us
 * for the two sides (~1350 warp instructions a pass of 16 tokens), where
 * reading the tokens once takes 28 us a side.  Tried then: the next
 * pass' tokens loaded before the MMAs (126 registers, 251-278 us against
 * 263), four accumulators (no change).  Tried here first: tokens as the
 * A operand, 32 a pass, 16-byte loads: 128 + 135 us again (the register
 * moves above).  Now 103 + 110 us (eleventh session, t4.sh).
 */
extern "C" __global__ void __launch_bounds__(CL_THREADS)
asam_clus_assign_kernel(const attn_clus_params p)
{
	extern __shared__ __align__(16) float cl_smem[];
	const int side = blockIdx.z / p.B, h = blockIdx.y;
	const int b = blockIdx.z % p.B;
	const int N = p.N[side], C = p.C, CP = (C + CL_CB - 1) / CL_CB * CL_CB;
	const int hx = side ? h / (p.Hq / p.Hx[1]) : h;
	const int warp = threadIdx.x >> 5, lane = threadIdx.x & 31;
	const int warps = CL_THREADS / 32, step = gridDim.x * warps * CL_PASS;
	const u16 *frag = (const u16 *)cl_smem;		/* cl_frag_at() */
	const double *scn = (const double *)(frag + 2 * CP * HEAD_DIM);
	const i64 bh = (i64)b * p.Hq + h, sn = p.x_sn[side];
	const u16 *xb = (const u16 *)p.x[side] + b * p.x_sb[side] +
			hx * p.x_sh[side];
	const unsigned char *src = (const unsigned char *)p.cent +
				   (i64)h * p.cent_stride;
	/* up to CL_SC_MAX clusters, each warp keeps its pass' scores
	 * [CL_PASS][CL_SCP] after the centroids (the host sizes the window) */
	float *sc = CP <= CL_SC_MAX ? (float *)((unsigned char *)cl_smem +
					       p.cent_stride) +
					warp * CL_PASS * CL_SCP(CP) : NULL;
	uint4 xa[CL_NT][CL_NQ];
	int t0 = (blockIdx.x * warps + warp) * CL_PASS;

	if (blockIdx.x * warps * CL_PASS >= N)
		return;		/* the shorter side's spare blocks */

	/* the block is a multiple of 16 bytes (the host pads it); copied
	 * while the warp's first tokens load */
	for (int x = threadIdx.x; x < p.cent_stride / 16; x += CL_THREADS)
		cp_async16((unsigned char *)cl_smem + 16 * x, src + 16 * x,
			   true);
	cp_async_commit();
	if (t0 < N)
		cl_load(xa, xb, sn, t0, N, lane >> 2, lane & 3);
	cp_async_wait_all();
	__syncthreads();
	for (; t0 < N; t0 += step) {
		/* the next pass' rows into the L2 while this one computes:
		 * its loads then wait on the L2, not on memory */
		if (t0 + step + lane < N) {
			const u16 *nx = xb + (i64)(t0 + step + lane) * sn;

#pragma unroll
			for (int e = 0; e < HEAD_DIM; e += 64)
				prefetch_l2(nx + e);
		}
		cl_pass(p, side, h, bh, N, C, CP, t0, xb, sn, xa, frag, scn,
			sc);
		if (t0 + step < N)
			cl_load(xa, xb, sn, t0 + step, N, lane >> 2, lane & 3);
	}
}


/*
 * SOFT cluster mode: a_t = softmax_c(<n^(x_t), n^(mu_hc)> / |tau|), in
 * fp64 with the reference's order of operations (cluster_soft() in
 * runtime/pattern.c).  Grid (token blocks, Hq, B); shared: the centroid
 * norms.
 */
extern "C" __global__ void __launch_bounds__(CL_THREADS)
asam_clus_soft_kernel(const attn_clus_params p)
{
	extern __shared__ __align__(16) float cl_smem[];
	const int side = p.side, h = blockIdx.y, b = blockIdx.z;
	const int N = p.N[side], C = p.C;
	const int hx = side ? h / (p.Hq / p.Hx[1]) : h;
	const int t = blockIdx.x * CL_THREADS + threadIdx.x;
	double *scn = (double *)cl_smem;
	const i64 bh = (i64)b * p.Hq + h;

	for (int c = threadIdx.x; c < C; c += CL_THREADS) {
		double n = 0;

		for (int e = 0; e < HEAD_DIM; e++) {
			double m = mu_get(p, h * p.mu_sh + c * p.mu_sc +
					     e * p.mu_se);

			n = __dadd_rn(n, __dmul_rn(m, m));
		}
		scn[c] = fmax(__dsqrt_rn(n), 1e-12);
	}
	__syncthreads();
	if (t >= N)
		return;

	const u16 *x = (const u16 *)p.x[side] + b * p.x_sb[side] +
		       hx * p.x_sh[side] + (i64)t * p.x_sn[side];
	double *a = p.soft[side] + (bh * N + t) * C;
	double xn = exact_norm(x), tau = fabs((double)p.temp);
	double mx = (double)ATTN_NEG_INF, sum = 0;

	for (int c = 0; c < C; c++) {
		double dot = 0;

		for (int e = 0; e < HEAD_DIM; e++)
			dot = __dadd_rn(dot, __dmul_rn((double)x16(x[e]),
				mu_get(p, h * p.mu_sh + c * p.mu_sc +
					  e * p.mu_se)));
		a[c] = __ddiv_rn(dot, __dmul_rn(xn, scn[c]));
		mx = fmax(mx, __ddiv_rn(a[c], tau));
	}
	for (int c = 0; c < C; c++) {
		a[c] = exp(__dsub_rn(__ddiv_rn(a[c], tau), mx));
		sum = __dadd_rn(sum, a[c]);
	}
	for (int c = 0; c < C; c++)
		a[c] = __ddiv_rn(a[c], sum);
}

/*
 * SOFT cluster mode: the pair mask <a_i, b_j> > theta, a 32-key word a
 * thread, sums in fp64 in the reference's order.  Grid (word blocks, Hq,
 * B).
 */
extern "C" __global__ void __launch_bounds__(CL_THREADS)
asam_clus_mask_kernel(const attn_clus_params p)
{
	const int h = blockIdx.y, b = blockIdx.z, C = p.C;
	const i64 idx = (i64)blockIdx.x * CL_THREADS + threadIdx.x;
	const int Nq = p.N[0], Nk = p.N[1];
	const i64 bh = (i64)b * p.Hq + h;
	const int i = (int)(idx / p.mw), w = (int)(idx % p.mw);
	const double th = p.thresh;
	unsigned bits = 0;

	if (i >= Nq)
		return;

	const double *a = p.soft[0] + (bh * Nq + i) * C;

	for (int k = 0; k < 32 && w * 32 + k < Nk; k++) {
		const double *bj = p.soft[1] + (bh * Nk + w * 32 + k) * C;
		double dot = 0;

		for (int c = 0; c < C; c++)
			dot = __dadd_rn(dot, __dmul_rn(a[c], bj[c]));
		if (dot > th)
			bits |= 1u << k;
	}
	p.mask[(bh * Nq + i) * p.mw + w] = bits;
}

/*
 * The clusters of tokens t0 + 32 k + lane (-1 at or past @hi), k <
 * CL_SORT_BATCH: the loads all in flight before the first is used.  One
 * load a step put an L2 round trip in each of a warp's 32 steps a pass
 * (H200, B2 H16 16K: the sort 42 -> 34 us).
 */
#define CL_SORT_BATCH 8
static __device__ __forceinline__ void sort_batch(const int *cl, int t0,
						  int hi, int lane,
						  int cb[CL_SORT_BATCH])
{
#pragma unroll
	for (int k = 0; k < CL_SORT_BATCH; k++) {
		const int t = t0 + k * 32 + lane;

		cb[k] = t < hi ? __ldg(cl + t) : -1;
	}
}

/*
 * Grid (Hq, B, 2 sides), CL_SORT_WARPS warps.  Shared: the per-warp
 * counts [CL_SORT_WARPS][C], then the cluster offsets [C + 1].
 */
extern "C" __global__ void __launch_bounds__(CL_SORT_WARPS * 32)
asam_clus_sort_kernel(const attn_clus_params p)
{
	extern __shared__ __align__(16) int cs_smem[];
	const int side = blockIdx.z, h = blockIdx.x, b = blockIdx.y;
	const int N = p.N[side], C = p.C;
	const int warp = threadIdx.x >> 5, lane = threadIdx.x & 31;
	const i64 bh = (i64)b * p.Hq + h;
	const int *cl = p.cl[side] + bh * N;
	int *perm = p.perm[side] + bh * N;
	int *cnt = cs_smem, *soff = cs_smem + CL_SORT_WARPS * C;
	/* contiguous segments of whole warps' worth: ranks keep token order */
	const int seg = ((N + CL_SORT_WARPS - 1) / CL_SORT_WARPS + 31) & ~31;
	const int lo = warp * seg, hi = min(N, lo + seg);
	const unsigned lt = (1u << lane) - 1;

	for (int i = threadIdx.x; i < CL_SORT_WARPS * C; i += blockDim.x)
		cnt[i] = 0;
	__syncthreads();
	for (int t0 = lo; t0 < hi; t0 += 32 * CL_SORT_BATCH) {
		int cb[CL_SORT_BATCH];

		sort_batch(cl, t0, hi, lane, cb);
#pragma unroll
		for (int k = 0; k < CL_SORT_BATCH; k++) {
			unsigned m = __match_any_sync(0xffffffffu, cb[k]);

			if (cb[k] >= 0 && !(m & lt))
				cnt[warp * C + cb[k]] += __popc(m);
			__syncwarp();
		}
	}
	__syncthreads();
	/* per cluster: warp bases, then the cluster totals in soff */
	for (int c = threadIdx.x; c < C; c += blockDim.x) {
		int s = 0;

		for (int w = 0; w < CL_SORT_WARPS; w++) {
			int v = cnt[w * C + c];

			cnt[w * C + c] = s;
			s += v;
		}
		soff[c + 1] = s;
	}
	__syncthreads();
	if (threadIdx.x == 0) {
		int *off = p.off[side] + bh * (C + 1);
		int *tl = p.tiles[side], nt = 0;

		soff[0] = 0;
		for (int c = 0; c < C; c++)
			soff[c + 1] += soff[c];
		for (int c = 0; c <= C; c++)
			off[c] = soff[c];
		if (tl) {
			tl += 2 * bh * p.ntiles[side];
			for (int c = 0; c < C; c++)
				for (int s = soff[c]; s < soff[c + 1];
				     s += p.tile[side]) {
					tl[2 * nt] = s;
					tl[2 * nt + 1] = c;
					nt++;
				}
			p.ntile[side][bh] = nt;
		}
	}
	__syncthreads();
	for (int i = threadIdx.x; i < CL_SORT_WARPS * C; i += blockDim.x)
		cnt[i] += soff[i % C];
	__syncthreads();
	for (int t0 = lo; t0 < hi; t0 += 32 * CL_SORT_BATCH) {
		int cb[CL_SORT_BATCH];

		sort_batch(cl, t0, hi, lane, cb);
#pragma unroll
		for (int k = 0; k < CL_SORT_BATCH; k++) {
			const int c = cb[k];
			unsigned m = __match_any_sync(0xffffffffu, c);

			if (c >= 0)
				perm[cnt[warp * C + c] + __popc(m & lt)] =
					t0 + k * 32 + lane;
			__syncwarp();
			if (c >= 0 && !(m & lt))
				cnt[warp * C + c] += __popc(m);
			__syncwarp();
		}
	}
}

/*
 * Online k-means: grid (C, Hq), HEAD_DIM threads; thread e sums element e
 * of n^(x) over the tokens assigned to (h, c) in the reference's order.
 */
extern "C" __global__ void __launch_bounds__(HEAD_DIM)
asam_clus_update_kernel(const attn_clus_params p)
{
	const int c = blockIdx.x, h = blockIdx.y, e = threadIdx.x, C = p.C;
	double sum = 0;
	long long n = 0;

	for (int b = 0; b < p.B; b++)
		for (int side = 0; side < 2; side++) {
			const i64 bh = (i64)b * p.Hq + h;
			const int N = p.N[side];
			const int hx = side ? h / (p.Hq / p.Hx[1]) : h;
			const int *off = p.off[side] + bh * (C + 1);
			const int *perm = p.perm[side] + bh * N;
			const double *nrm = p.nrm[side] + bh * N;
			const u16 *x = (const u16 *)p.x[side] +
				       b * p.x_sb[side] + hx * p.x_sh[side];

			for (int s = off[c]; s < off[c + 1]; s++) {
				int t = perm[s];

				sum = __dadd_rn(sum, __ddiv_rn(
					(double)x16(x[(i64)t * p.x_sn[side] + e]),
					nrm[t]));
				n++;
			}
		}
	if (!n)
		return;

	i64 at = h * p.mu_sh + c * p.mu_sc + e * p.mu_se;
	double dec = p.decay;
	double mean = __ddiv_rn(sum, (double)n);

	mu_set(p, at, __dadd_rn(__dmul_rn(dec, mu_get(p, at)),
				__dmul_rn(__dsub_rn(1.0, dec), mean)));
}

/*
 * GQA: dst[b, hk, j, :] = sum over the group's query heads, in head order,
 * of part[b, h, j, :] (fp32), rounded once.  Grid (Nk, Hkv, B), HEAD_DIM / 2
 * threads.
 */
extern "C" __global__ void __launch_bounds__(HEAD_DIM / 2)
asam_clus_gqa_sum_kernel(const attn_clus_params p)
{
	const int j = blockIdx.x, hk = blockIdx.y, b = blockIdx.z;
	const int G = p.Hq / p.Hkv, e = 2 * threadIdx.x;
	float s0 = 0.f, s1 = 0.f;

	for (int g = 0; g < G; g++) {
		const float *r = p.part + (((i64)b * p.Hq + hk * G + g) * p.Nk +
					   j) * HEAD_DIM + e;

		s0 += r[0];
		s1 += r[1];
	}
	*(u32 *)((u16 *)p.dst + b * p.d_sb + hk * p.d_sh + (i64)j * p.d_sn +
		 e) = pack2(s0, s1);
}
