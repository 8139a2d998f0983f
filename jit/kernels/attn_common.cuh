/* SPDX-License-Identifier: MIT */
/*
 * Shared pieces of the attention kernels: inline PTX for the tensor-core
 * path of sm_80+ (mma.sync m16n8k16, ldmatrix, cp.async), fp16/bf16
 * packing, and the argument block that the host fills.
 *
 * NVRTC compiles this with no toolkit or system header: every type is our
 * own and half-precision values travel as 16-bit words.  The compile-time
 * constants (HEAD_DIM, DTYPE, CAUSAL, GATE_MODE, PATTERN, BLOCK_M,
 * BLOCK_N, NUM_WARPS) come from the preamble the JIT prepends.
 */
#ifndef ASAM_ATTN_COMMON_CUH
#define ASAM_ATTN_COMMON_CUH

#include "attn_params.cuh"

/*
 * The library's JIT preamble gives each constant as ASAM_NAME (a macro)
 * and NAME (a constexpr); these kernels test them in #if, so take the
 * macros.  The kdev tools pass plain -D / #define NAME instead.
 */
#ifdef ASAM_JIT
#define HEAD_DIM ASAM_HEAD_DIM
#define DTYPE ASAM_DTYPE
#define CAUSAL ASAM_CAUSAL
#define GATE_MODE ASAM_GATE_MODE
#define PATTERN ASAM_PATTERN
#define BLOCK_M ASAM_BLOCK_M
#define BLOCK_N ASAM_BLOCK_N
#define NUM_WARPS ASAM_NUM_WARPS
#ifdef ASAM_BWD_PRE
#define BWD_PRE ASAM_BWD_PRE
#endif
#endif

typedef unsigned short u16;
typedef unsigned int u32;
typedef long long i64;

/* DTYPE: enum asam_dtype numbers (ASAM_DT_F16 1, ASAM_DT_BF16 2) */
#define ATTN_F16 1
#define ATTN_BF16 2

/* Gate modes, in the order of enum asam_gate_mode */
#define ATTN_G_SPARSE 0
#define ATTN_G_DENSE 1
#define ATTN_G_SOFT 2
#define ATTN_G_HARD 3

/* Pattern kinds, in the order of enum asam_pattern_kind */
#define ATTN_P_DENSE 0
#define ATTN_P_LOCAL 1
#define ATTN_P_STRIDED 2
#define ATTN_P_HIERARCHICAL 3
#define ATTN_P_RANDOM 4
#define ATTN_P_RANDOM_ROWS 5
#define ATTN_P_CLUSTERED 6
#define ATTN_P_USER_INDEX 7

#define ATTN_LOG2E 1.4426950408889634f
#define ATTN_LN2 0.6931471805599453f
#define ATTN_NEG_INF (-__int_as_float(0x7f800000))

static __device__ __forceinline__ float fast_exp2(float x)
{
	float y;

	asm("ex2.approx.ftz.f32 %0, %1;" : "=f"(y) : "f"(x));
	return y;
}

static __device__ __forceinline__ float fast_log2(float x)
{
	float y;

	asm("lg2.approx.ftz.f32 %0, %1;" : "=f"(y) : "f"(x));
	return y;
}

static __device__ __forceinline__ u32 smem_u32(const void *p)
{
	return (u32)__cvta_generic_to_shared(p);
}

/* 16 bytes global -> shared, zero-filled when !valid (rows past the end) */
static __device__ __forceinline__ void cp_async16(void *dst, const void *src,
						  bool valid)
{
	asm volatile("cp.async.cg.shared.global [%0], [%1], 16, %2;\n"
		     :: "r"(smem_u32(dst)), "l"(src), "r"(valid ? 16 : 0));
}

static __device__ __forceinline__ void cp_async_commit(void)
{
	asm volatile("cp.async.commit_group;\n" ::);
}

static __device__ __forceinline__ void cp_async_wait_all(void)
{
	asm volatile("cp.async.wait_group 0;\n" ::);
}

static __device__ __forceinline__ void ldsm_x4(u32 *r, const void *p)
{
	asm volatile("ldmatrix.sync.aligned.m8n8.x4.shared.b16 "
		     "{%0, %1, %2, %3}, [%4];\n"
		     : "=r"(r[0]), "=r"(r[1]), "=r"(r[2]), "=r"(r[3])
		     : "r"(smem_u32(p)));
}

static __device__ __forceinline__ void ldsm_x4_t(u32 *r, const void *p)
{
	asm volatile("ldmatrix.sync.aligned.m8n8.x4.trans.shared.b16 "
		     "{%0, %1, %2, %3}, [%4];\n"
		     : "=r"(r[0]), "=r"(r[1]), "=r"(r[2]), "=r"(r[3])
		     : "r"(smem_u32(p)));
}

/* c += a * b, 16x8x16, fp32 accumulate; DTYPE picks the input format */
static __device__ __forceinline__ void mma16816(float *c, const u32 *a,
						const u32 *b)
{
#if DTYPE == ATTN_BF16
	asm("mma.sync.aligned.m16n8k16.row.col.f32.bf16.bf16.f32 "
#else
	asm("mma.sync.aligned.m16n8k16.row.col.f32.f16.f16.f32 "
#endif
		     "{%0, %1, %2, %3}, {%4, %5, %6, %7}, {%8, %9}, "
		     "{%0, %1, %2, %3};\n"
		     : "+f"(c[0]), "+f"(c[1]), "+f"(c[2]), "+f"(c[3])
		     : "r"(a[0]), "r"(a[1]), "r"(a[2]), "r"(a[3]),
		       "r"(b[0]), "r"(b[1]));
}

/* two floats -> packed pair, round to nearest even; lo in the low half */
static __device__ __forceinline__ u32 pack2(float lo, float hi)
{
	u32 r;

#if DTYPE == ATTN_BF16
	asm("cvt.rn.bf16x2.f32 %0, %1, %2;\n" : "=r"(r) : "f"(hi), "f"(lo));
#else
	asm("cvt.rn.f16x2.f32 %0, %1, %2;\n" : "=r"(r) : "f"(hi), "f"(lo));
#endif
	return r;
}

/* the 128-byte line at @p into the L2, nothing waits on it */
static __device__ __forceinline__ void prefetch_l2(const void *p)
{
	asm volatile("prefetch.global.L2 [%0];\n" :: "l"(p));
}

/* a * b + c on both halves in the tokens' type, rounded once each */
static __device__ __forceinline__ u32 fma2(u32 a, u32 b, u32 c)
{
	u32 r;

#if DTYPE == ATTN_BF16
	asm("fma.rn.bf16x2 %0, %1, %2, %3;\n" : "=r"(r) : "r"(a), "r"(b), "r"(c));
#else
	asm("fma.rn.f16x2 %0, %1, %2, %3;\n" : "=r"(r) : "r"(a), "r"(b), "r"(c));
#endif
	return r;
}

static __device__ __forceinline__ float unpack_lo(u32 x)
{
#if DTYPE == ATTN_BF16
	return __uint_as_float(x << 16);
#else
	float f;
	unsigned short h = (unsigned short)(x & 0xffff);

	asm("cvt.f32.f16 %0, %1;\n" : "=f"(f) : "h"(h));
	return f;
#endif
}

static __device__ __forceinline__ float unpack_hi(u32 x)
{
#if DTYPE == ATTN_BF16
	return __uint_as_float(x & 0xffff0000u);
#else
	float f;
	unsigned short h = (unsigned short)(x >> 16);

	asm("cvt.f32.f16 %0, %1;\n" : "=f"(f) : "h"(h));
	return f;
#endif
}

/*
 * The output's rescale after a row's reference maximum moved: rows gr
 * (accumulator entries 0, 1) by @a0 and gr + 8 (2, 3) by @a1, the m16n8
 * C layout of mma.sync and of each wgmma n8 block alike
 */
template <int NT>
static __device__ __forceinline__ void acc_rescale(float (*acc)[4], float a0,
						   float a1)
{
#pragma unroll
	for (int n = 0; n < NT; n++) {
		acc[n][0] *= a0;
		acc[n][1] *= a0;
		acc[n][2] *= a1;
		acc[n][3] *= a1;
	}
}

/* Row reductions over the four threads of a quad (one mma row) */
static __device__ __forceinline__ float quad_max(float x)
{
	x = fmaxf(x, __shfl_xor_sync(0xffffffffu, x, 1));
	return fmaxf(x, __shfl_xor_sync(0xffffffffu, x, 2));
}

static __device__ __forceinline__ float quad_sum(float x)
{
	x += __shfl_xor_sync(0xffffffffu, x, 1);
	return x + __shfl_xor_sync(0xffffffffu, x, 2);
}

/* Shared-memory rows are padded by 16 bytes: ldmatrix is conflict-free. */
#define ATTN_LDS (HEAD_DIM + 8)

/*
 * Copy rows [row0, row0 + ROWS) of a [N, HEAD_DIM] slice (row stride
 * @ld elements) into shared memory, zero-filling rows at or past @n.
 */
template <int ROWS, int THREADS>
static __device__ __forceinline__ void load_tile(u16 *dst, const u16 *src,
						 i64 ld, int row0, int n)
{
	constexpr int CH = HEAD_DIM / 8;	/* 16-byte chunks per row */
	constexpr int RS = THREADS / CH;

	if constexpr (THREADS % CH == 0 && ROWS % RS == 0) {
		/*
		 * a thread's chunk column is fixed: its addresses are a base
		 * and a constant step, not a division and a 64-bit product
		 * a chunk (the Hopper walks were issue-bound on those)
		 */
		const unsigned t = threadIdx.x;
		const int e = t % CH * 8, r0 = t / CH;
		const int left = n - row0 - r0;
		const i64 step = RS * ld;
		const u16 *s = src + (i64)(row0 + r0) * ld + e;

		/* a walking pointer, as load_sw()'s (attn_sm90.cuh) */
#pragma unroll
		for (int k = 0; k < ROWS / RS; k++) {
			const bool ok = k * RS < left;

			cp_async16(dst + (r0 + k * RS) * ATTN_LDS + e,
				   ok ? s : src, ok);
			s += step;
		}
	} else {
#pragma unroll
		for (int c = threadIdx.x; c < ROWS * CH; c += THREADS) {
			int r = c / CH, e = (c % CH) * 8;
			bool ok = row0 + r < n;
			const u16 *s = src + (ok ? (i64)(row0 + r) * ld + e :
					      0);

			cp_async16(dst + r * ATTN_LDS + e, s, ok);
		}
	}
}

/*
 * Gather ROWS rows of a [N, HEAD_DIM] slice into shared memory: row r
 * comes from row idx[r] of @src (row stride @ld elements); rows at or
 * past @n, or whose index is negative, are zero-filled.  The gathered
 * sets of the column and bucket patterns travel through this.
 */
template <int ROWS, int THREADS>
static __device__ __forceinline__ void load_rows_idx(u16 *dst, const u16 *src,
						     i64 ld, const int *idx,
						     int n)
{
	constexpr int CH = HEAD_DIM / 8;
	constexpr int RS = THREADS / CH;

	if constexpr (THREADS % CH == 0 && ROWS % RS == 0) {
		/* as load_tile's; the indices first, then the copies */
		const unsigned t = threadIdx.x;
		const int e = t % CH * 8, r0 = t / CH;
		int j[ROWS / RS];

#pragma unroll
		for (int k = 0; k < ROWS / RS; k++)
			j[k] = r0 + k * RS < n ? __ldg(idx + r0 + k * RS) : -1;
#pragma unroll
		for (int k = 0; k < ROWS / RS; k++)
			cp_async16(dst + (r0 + k * RS) * ATTN_LDS + e,
				   j[k] >= 0 ? src + (i64)j[k] * ld + e : src,
				   j[k] >= 0);
	} else {
#pragma unroll
		for (int c = threadIdx.x; c < ROWS * CH; c += THREADS) {
			int r = c / CH, e = (c % CH) * 8;
			int j = r < n ? __ldg(idx + r) : -1;
			const u16 *s = src + (j >= 0 ? (i64)j * ld + e : 0);

			cp_async16(dst + r * ATTN_LDS + e, s, j >= 0);
		}
	}
}

/* Key limit of query row i (SPEC 1): keys j < limit are allowed. */
static __device__ __forceinline__ int row_limit(int i, int lq, int lk,
						int Nq, int Nk)
{
	int lim = lk;

	if (i >= lq)
		return 0;
#if CAUSAL
	if (i + Nk - Nq + 1 < lim)
		lim = i + Nk - Nq + 1;
#endif
	return lim < 0 ? 0 : lim;
}

#include "attn_cols.cuh"

/*
 * Token predicate of the pattern inside a partial tile (SPEC 3).  The band
 * of STRIDED and HIERARCHICAL is LOCAL's (radius R); cols_band() adds
 * their vote.
 */
static __device__ __forceinline__ bool pat_allows(int e, int i, int j,
						  int q0, int off, int radius)
{
#if PATTERN == ATTN_P_LOCAL || ATTN_HAS_COLS
	int dl = i + off - j;

	return dl <= radius && -dl <= radius;
#elif PATTERN == ATTN_P_RANDOM
	return ATTN_E_GROUP(e, (i - q0) >> 6);
#else
	return true;
#endif
}

/*
 * The key-tile list of query tile @qt of head @h (entries sorted by tile)
 * and in @n how many of them lie below tile @nkt (the mask's limit: the
 * tail past it holds nothing).
 */
template <class P>
static __device__ __forceinline__ const int *tile_list(const P &p, int h,
						       int qt, int nkt, int *n)
{
	const int li = (p.list_per_head ? h * p.nqt : 0) + qt;
	const int *list = p.list + p.list_off[li];
	int k = p.list_off[li + 1] - p.list_off[li];

	while (k > 0 && ATTN_E_TILE(list[k - 1]) >= nkt)
		k--;
	*n = k;
	return list;
}

/* Scores (C fragment, fp32) packed as the A fragment of the next mma. */
static __device__ __forceinline__ void p_frag(u32 *a, float (*s)[4], int ks)
{
	a[0] = pack2(s[2 * ks][0], s[2 * ks][1]);
	a[1] = pack2(s[2 * ks][2], s[2 * ks][3]);
	a[2] = pack2(s[2 * ks + 1][0], s[2 * ks + 1][1]);
	a[3] = pack2(s[2 * ks + 1][2], s[2 * ks + 1][3]);
}

#endif
