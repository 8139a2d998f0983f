/* SPDX-License-Identifier: MIT */
/*
 * CLUSTERED (SPEC 3.2) on the GPU, everything but the attention itself:
 *
 * - assignment: c(x) = argmax_c <n^(x), n^(mu_hc)>, lowest c on ties, per
 *   query head h (keys of a GQA group are assigned once per query head).
 *   The decision must be the one runtime/pattern.c takes in fp64.  A
 *   thread scores its token against the unit centroids in fp32; when the
 *   best and the runner-up lie closer than a bound far above fp32's error
 *   (1e-4 |x|), it redoes the token in fp64 in the reference's exact order
 *   of operations (no fused multiply-add), so every decision is the
 *   reference's, tie for tie, at fp32 cost.
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
#define CL_CB 32		/* clusters scored per pass over a token */
#define CL_SORT_WARPS 16

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

/*
 * Too close to call in fp32 (or x = 0): the reference's arithmetic, but
 * only for the clusters whose fp32 score (@score(c), the screen's within
 * its rounding) lies within @tol of the @best one.  The fp64 winner's
 * fp32 score lies within twice the fp32 error (far under @tol) of the
 * best, so no other cluster can win; walking the candidates in index
 * order with a strict > keeps the reference's lowest index on ties.  One
 * in a few hundred tokens comes here, but a warp waits for its slowest
 * lane: 32 fp64 dot products were most of the kernel's time.
 */
template <class F>
static __device__ int exact_pick(const attn_clus_params &p, const u16 *x,
				 int h, int C, const double *scn, float best,
				 float tol, bool zero, F score)
{
	double xn = exact_norm(x), bv = 0;
	bool first = true;
	int bc = 0;

	for (int c = 0; c < C; c++) {
		double dot = 0, cs;

		if (!zero && !(score(c) >= best - tol))
			continue;
		for (int e = 0; e < HEAD_DIM; e++)
			dot = __dadd_rn(dot, __dmul_rn((double)x16(x[e]),
				mu_get(p, h * p.mu_sh + c * p.mu_sc +
					  e * p.mu_se)));
		cs = __ddiv_rn(dot, __dmul_rn(xn, scn[c]));
		if (first || cs > bv) {
			bv = cs;
			bc = c;
			first = false;
		}
	}
	return bc;
}

/* the cluster of token @t of side @side, (b, h): see the kernel below */
static __device__ __forceinline__ void assign_one(const attn_clus_params &p,
						  int side, int h, int hx,
						  int b, i64 bh, int t, int N,
						  int C, int CP,
						  const float *smu,
						  const double *scn)
{
	const u16 *x = (const u16 *)p.x[side] + b * p.x_sb[side] +
		       hx * p.x_sh[side] + (i64)t * p.x_sn[side];
	float best = ATTN_NEG_INF, second = ATTN_NEG_INF, xn2 = 0.f;
	int bc = 0;

	for (int cb = 0; cb < CP; cb += CL_CB) {
		float acc[CL_CB];

#pragma unroll
		for (int c = 0; c < CL_CB; c++)
			acc[c] = 0.f;
		for (int e0 = 0; e0 < HEAD_DIM; e0 += 8) {
			uint4 w = *(const uint4 *)(x + e0);
			float xv[8];

			xv[0] = unpack_lo(w.x); xv[1] = unpack_hi(w.x);
			xv[2] = unpack_lo(w.y); xv[3] = unpack_hi(w.y);
			xv[4] = unpack_lo(w.z); xv[5] = unpack_hi(w.z);
			xv[6] = unpack_lo(w.w); xv[7] = unpack_hi(w.w);
			if (cb == 0) {
#pragma unroll
				for (int k = 0; k < 8; k++)
					xn2 += xv[k] * xv[k];
			}
#pragma unroll
			for (int c = 0; c < CL_CB; c++) {
				const float4 *m = (const float4 *)
					(smu + (cb + c) * HEAD_DIM + e0);
				float4 m0 = m[0], m1 = m[1];

				acc[c] += xv[0] * m0.x + xv[1] * m0.y +
					  xv[2] * m0.z + xv[3] * m0.w +
					  xv[4] * m1.x + xv[5] * m1.y +
					  xv[6] * m1.z + xv[7] * m1.w;
			}
		}
#pragma unroll
		for (int c = 0; c < CL_CB; c++) {
			if (cb + c >= C)
				break;
			if (acc[c] > best) {
				second = best;
				best = acc[c];
				bc = cb + c;
			} else if (acc[c] > second) {
				second = acc[c];
			}
		}
	}

	const float tol = 1e-4f * sqrtf(xn2);

	if (!(best - second > tol))
		bc = exact_pick(p, x, h, C, scn, best, tol, xn2 == 0.f,
				[&](int c) {
					float f = 0.f;

					for (int e = 0; e < HEAD_DIM; e++)
						f += x16(x[e]) *
						     smu[c * HEAD_DIM + e];
					return f;
				});
	p.cl[side][bh * N + t] = bc;
	if (p.nrm[side])
		p.nrm[side][bh * N + t] = exact_norm(x);
}

#if DTYPE == ATTN_BF16
/*
 * bf16 tokens on the tensor cores: each warp scores 16 tokens against
 * every centroid with mma.sync (m16n8k16, fp32 accumulate), the unit
 * centroid split into two bf16 halves (hi + lo carries 16 bits of its
 * fp32 mantissa) so the score's error stays near fp32's, far under the
 * 1e-4 |x| margin of the screen.  Shared memory: hi and lo rows [CP][CL_LD]
 * (padded: the B fragments' 32-bit reads hit 32 banks), then the norms.
 */
#define CL_LD (HEAD_DIM + 8)
/*
 * Clusters up to which the assignment keeps each token's scores for the
 * screen (16 KB a block at 64): otherwise the screen recomputed every
 * cluster's score of a close token, ~40 % of the kernel's instructions.
 */
#define CL_SC_MAX 64

/* one float to the dtype, rounded to nearest even */
static __device__ __forceinline__ u16 pack_one(float f)
{
	return (u16)(pack2(f, 0.f) & 0xffff);
}

/* fold score @v of cluster @c into (best, second, its cluster) */
static __device__ __forceinline__ void cl_fold(float &b, float &s, int &bc,
					       float v, int c)
{
	if (v > b) {
		s = b;
		b = v;
		bc = c;
	} else if (v > s) {
		s = v;	/* an equal score: a tie, settled in fp64 */
	}
}

/* merge the quad's (best, second, cluster): lowest cluster on ties */
static __device__ __forceinline__ void cl_merge(float &b, float &s, int &bc)
{
#pragma unroll
	for (int o = 1; o < 4; o <<= 1) {
		float ob = __shfl_xor_sync(0xffffffffu, b, o);
		float os = __shfl_xor_sync(0xffffffffu, s, o);
		int oc = __shfl_xor_sync(0xffffffffu, bc, o);

		if (ob > b || (ob == b && oc < bc)) {
			s = fmaxf(b, os);
			b = ob;
			bc = oc;
		} else {
			s = fmaxf(s, ob);
		}
	}
}

/*
 * The fp32 score of row @x against a centroid's @hi + @lo row, for
 * exact_pick's screen: 16-byte loads and eight partial sums (any order's
 * rounding lies far under the screen's margin).  One product at a time,
 * a load and a dependent add each, 32 clusters took ~16 k cycles.
 */
static __device__ float cl_screen(const u16 *x, const u16 *hi, const u16 *lo)
{
	float f[8] = { 0.f, 0.f, 0.f, 0.f, 0.f, 0.f, 0.f, 0.f };

#pragma unroll 4
	for (int e0 = 0; e0 < HEAD_DIM; e0 += 8) {
		uint4 w = *(const uint4 *)(x + e0);
		uint4 a = *(const uint4 *)(hi + e0);
		uint4 b = *(const uint4 *)(lo + e0);
		const u32 xw[4] = { w.x, w.y, w.z, w.w };
		const u32 aw[4] = { a.x, a.y, a.z, a.w };
		const u32 bw[4] = { b.x, b.y, b.z, b.w };

#pragma unroll
		for (int k = 0; k < 4; k++) {
			f[2 * k] += unpack_lo(xw[k]) *
				    (unpack_lo(aw[k]) + unpack_lo(bw[k]));
			f[2 * k + 1] += unpack_hi(xw[k]) *
					(unpack_hi(aw[k]) + unpack_hi(bw[k]));
		}
	}
	return ((f[0] + f[1]) + (f[2] + f[3])) + ((f[4] + f[5]) + (f[6] + f[7]));
}

static __device__ void assign_mma(const attn_clus_params &p, int side,
				  int h, int hx, int b, i64 bh, int N, int C,
				  int CP, const u16 *shi, const u16 *slo,
				  const double *scn, float *sc)
{
	const int warp = threadIdx.x >> 5, lane = threadIdx.x & 31;
	const int gr = lane >> 2, tg = lane & 3;
	const u16 *xb = (const u16 *)p.x[side] + b * p.x_sb[side] +
			hx * p.x_sh[side];

	for (int g = blockIdx.x * 4 + warp; g * 16 < N; g += gridDim.x * 4) {
		const int r0 = g * 16 + gr, r1 = r0 + 8;
		const u16 *x0 = xb + (i64)(r0 < N ? r0 : N - 1) * p.x_sn[side];
		const u16 *x1 = xb + (i64)(r1 < N ? r1 : N - 1) * p.x_sn[side];
		u32 a[HEAD_DIM / 16][4];
		float n0 = 0.f, n1 = 0.f, b0 = ATTN_NEG_INF, s0 = ATTN_NEG_INF;
		float b1 = ATTN_NEG_INF, s1 = ATTN_NEG_INF;
		int c0 = 0, c1 = 0;

#pragma unroll
		for (int ks = 0; ks < HEAD_DIM / 16; ks++) {
			const int e = ks * 16 + 2 * tg;

			a[ks][0] = *(const u32 *)(x0 + e);
			a[ks][1] = *(const u32 *)(x1 + e);
			a[ks][2] = *(const u32 *)(x0 + e + 8);
			a[ks][3] = *(const u32 *)(x1 + e + 8);
#pragma unroll
			for (int k = 0; k < 4; k += 2) {
				float u = unpack_lo(a[ks][k]);
				float v = unpack_hi(a[ks][k]);
				float w = unpack_lo(a[ks][k + 1]);
				float z = unpack_hi(a[ks][k + 1]);

				n0 += u * u + v * v;
				n1 += w * w + z * z;
			}
		}
		n0 = quad_sum(n0);
		n1 = quad_sum(n1);
		__syncwarp();	/* the last pass' screen read sc */
		for (int nt = 0; nt < CP / 8; nt++) {
			const int c = nt * 8 + 2 * tg;
			const u16 *bh_ = shi + (nt * 8 + gr) * CL_LD;
			const u16 *bl_ = slo + (nt * 8 + gr) * CL_LD;
			float acc[4] = { 0.f, 0.f, 0.f, 0.f };

#pragma unroll
			for (int ks = 0; ks < HEAD_DIM / 16; ks++) {
				const int e = ks * 16 + 2 * tg;
				u32 bhi[2] = { *(const u32 *)(bh_ + e),
					       *(const u32 *)(bh_ + e + 8) };
				u32 blo[2] = { *(const u32 *)(bl_ + e),
					       *(const u32 *)(bl_ + e + 8) };

				mma16816(acc, a[ks], bhi);
				mma16816(acc, a[ks], blo);
			}
			if (sc) {	/* the scores, for exact_pick's screen */
				sc[gr * CP + c] = acc[0];
				sc[gr * CP + c + 1] = acc[1];
				sc[(gr + 8) * CP + c] = acc[2];
				sc[(gr + 8) * CP + c + 1] = acc[3];
			}
			if (c < C) {
				cl_fold(b0, s0, c0, acc[0], c);
				cl_fold(b1, s1, c1, acc[2], c);
			}
			if (c + 1 < C) {
				cl_fold(b0, s0, c0, acc[1], c + 1);
				cl_fold(b1, s1, c1, acc[3], c + 1);
			}
		}
		cl_merge(b0, s0, c0);
		cl_merge(b1, s1, c1);
		__syncwarp();
		/* lane tg 0 settles row gr, lane tg 1 row gr + 8 */
		if (tg < 2) {
			const int r = tg ? r1 : r0;
			const u16 *x = tg ? x1 : x0;
			const float best = tg ? b1 : b0, xn2 = tg ? n1 : n0;
			const float tol = 1e-4f * sqrtf(xn2);
			int bc = tg ? c1 : c0;

			if (r >= N)
				continue;
			if (!((tg ? best - s1 : best - s0) > tol))
				bc = exact_pick(p, x, h, C, scn, best, tol,
						xn2 == 0.f, [&](int cc) {
					/* the MMA's own score where kept */
					return sc ? sc[(gr + 8 * tg) * CP + cc] :
					       cl_screen(x, shi + cc * CL_LD,
							 slo + cc * CL_LD);
				});
			p.cl[side][bh * N + r] = bc;
			if (p.nrm[side])
				p.nrm[side][bh * N + r] = exact_norm(x);
		}
	}
}
#endif

/*
 * The unit centroids of head blockIdx.x in the layout the assignment
 * copies into its shared memory (fp32 rows, or bf16 hi and lo rows padded
 * to CL_LD, zero rows up to a multiple of CL_CB clusters), then their
 * fp64 norms, at @p.cent + h * p.cent_stride bytes.  Once a call: when
 * every assignment block did it in its prologue, a warp's fp64 sums and
 * divides and their dependent loads ran 1024 times a side at B2 H16 16K.
 * A thread sums a centroid's norm in the reference's order, then every
 * thread takes elements.
 */
extern "C" __global__ void __launch_bounds__(CL_THREADS)
asam_clus_prep_kernel(const attn_clus_params p)
{
	extern __shared__ __align__(16) float cl_smem[];
	double *sn = (double *)cl_smem;			/* [C] */
	const int h = blockIdx.x, C = p.C;
	const int CP = (C + CL_CB - 1) / CL_CB * CL_CB;
	unsigned char *out = (unsigned char *)p.cent + (i64)h * p.cent_stride;
#if DTYPE == ATTN_BF16
	u16 *shi = (u16 *)out, *slo = shi + CP * CL_LD;	/* [CP][CL_LD] */
	double *scn = (double *)(slo + CP * CL_LD);	/* [C] */
#else
	float *smu = (float *)out;			/* [CP][HEAD_DIM] */
	double *scn = (double *)(smu + CP * HEAD_DIM);	/* [C] */
#endif

	for (int c = threadIdx.x; c < C; c += CL_THREADS) {
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
		sn[c] = n;
		scn[c] = n;
	}
	__syncthreads();
	for (int x = threadIdx.x; x < CP * HEAD_DIM; x += CL_THREADS) {
		const int c = x / HEAD_DIM, e = x % HEAD_DIM;
		float u = c < C ? (float)(mu_get(p, h * p.mu_sh + c * p.mu_sc +
						 e * p.mu_se) / sn[c]) : 0.f;
#if DTYPE == ATTN_BF16
		u16 hi = pack_one(u);

		shi[c * CL_LD + e] = hi;
		slo[c * CL_LD + e] = pack_one(u - x16(hi));
#else
		smu[c * HEAD_DIM + e] = u;
#endif
	}
}

/*
 * Tried (ninth session, H200, B2 H16 16K d128): loading a warp's next
 * 16 tokens before its MMAs (and the first before the centroid copy),
 * both sides in one launch: 126 registers instead of 69, 19 % of the
 * warps resident instead of 31 %, 251-278 us for both sides at 128 to
 * 2048 tokens a block against 263 us before.  Not the loads' latency.
 * Nor the MMAs' one chain of sixteen: four accumulators (hi and lo, even
 * and odd k steps) read 133 + 138 us against 128 + 133 (78 registers).
 * ncu's source counters (a side, 44 M warp instructions, ~1350 a warp
 * and pass of 16 tokens): stall samples 47 % in the MMA, fold and merge
 * loop, 18 % in the fp64 path of close calls (4 % of passes have one),
 * 16 % in the block's centroid copy, 13 % in the norms waiting on the
 * tokens' loads.
 *
 * Grid (token blocks, Hq, B), CL_THREADS threads: fp16 a token a
 * thread per pass, bf16 16 tokens a warp per pass (assign_mma), over the
 * block's tokens (the host sizes the grid).  Dynamic shared memory: the
 * head's block of asam_clus_prep_kernel, copied.
 */
extern "C" __global__ void __launch_bounds__(CL_THREADS)
asam_clus_assign_kernel(const attn_clus_params p)
{
	extern __shared__ __align__(16) float cl_smem[];
	const int side = p.side, h = blockIdx.y, b = blockIdx.z;
	const int N = p.N[side], C = p.C, CP = (C + CL_CB - 1) / CL_CB * CL_CB;
	const int hx = side ? h / (p.Hq / p.Hx[1]) : h;
	const int t0 = blockIdx.x * CL_THREADS + threadIdx.x;
#if DTYPE == ATTN_BF16
	u16 *shi = (u16 *)cl_smem, *slo = shi + CP * CL_LD;	/* [CP][CL_LD] */
	double *scn = (double *)(slo + CP * CL_LD);		/* [C] */
#else
	float *smu = cl_smem;				/* [CP][HEAD_DIM] */
	double *scn = (double *)(smu + CP * HEAD_DIM);	/* [C] */
#endif
	const i64 bh = (i64)b * p.Hq + h;
	const uint4 *src = (const uint4 *)((const unsigned char *)p.cent +
					   (i64)h * p.cent_stride);

	/* the block is a multiple of 16 bytes (the host pads it) */
	for (int x = threadIdx.x; x < p.cent_stride / 16; x += CL_THREADS)
		((uint4 *)cl_smem)[x] = src[x];
	__syncthreads();
#if DTYPE == ATTN_BF16
	/* up to CL_SC_MAX clusters, each warp keeps its 16 rows' scores
	 * [16][CP] after the centroids (the host sizes the window) */
	float *sc = CP <= CL_SC_MAX ? (float *)((unsigned char *)cl_smem +
					       p.cent_stride) +
					(threadIdx.x >> 5) * 16 * CP : NULL;

	assign_mma(p, side, h, hx, b, bh, N, C, CP, shi, slo, scn, sc);
#else
	/* a block takes several tokens a thread: the centroids once */
	for (int t = t0; t < N; t += gridDim.x * CL_THREADS)
		assign_one(p, side, h, hx, b, bh, t, N, C, CP, smu,
			   scn);
#endif
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
