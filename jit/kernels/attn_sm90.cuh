/* SPDX-License-Identifier: MIT */
/*
 * Hopper (sm_90a) pieces of the attention kernels: warpgroup MMA
 * (wgmma.mma_async) with its shared-memory matrix descriptors, and tile
 * loads into the 128-byte swizzled layout those descriptors describe.
 *
 * Layout of a staged tile of R rows by HEAD_DIM 16-bit columns: the head
 * dim is cut into 64-column panels (128 bytes a row); panel p holds its R
 * rows back to back, 128 bytes each, and inside every 1024-byte group of
 * eight rows the 16-byte chunk c of row r sits at chunk c ^ (r & 7) (the
 * hardware's 128B swizzle, which is why every tile starts on a 1024-byte
 * boundary).  Read as a K-major operand (Q, K: rows = M or N, the head dim
 * = K) the stride between 8-row groups is 1024 bytes; read as an MN-major
 * operand (V: rows = keys = K, the head dim = N) the 8-key groups are
 * 1024 bytes apart and the 64-column panels R * 128 bytes apart.
 *
 * Only the fp32-accumulating m64nNk16 shapes the kernels need are here,
 * written out long-hand (64 or 32 accumulator registers a thread).
 */
#ifndef ASAM_ATTN_SM90_CUH
#define ASAM_ATTN_SM90_CUH

#include "attn_common.cuh"

typedef unsigned long long u64;

#if DTYPE == ATTN_BF16
#define WG_T "bf16"
#else
#define WG_T "f16"
#endif

/* 128B-swizzled operand at shared address @addr */
static __device__ __forceinline__ u64 wg_desc(u32 addr, u32 lbo, u32 sbo)
{
	return (u64)((addr & 0x3ffff) >> 4) |
	       ((u64)((lbo & 0x3ffff) >> 4) << 16) |
	       ((u64)((sbo & 0x3ffff) >> 4) << 32) | (1ull << 62);
}

/*
 * The descriptor of the operand @off bytes (a multiple of 16) past the
 * one @d describes: the start address is the low word's 14-bit field and
 * every shared address is under 256 KB, so the sum never carries out of
 * it.  One add on the low word, where wg_desc() of the new address costs
 * five instructions and a move to a uniform register (ncu: ~100 a warp
 * and 64-key tile went to descriptors).
 */
static __device__ __forceinline__ u64 wg_desc_add(u64 d, u32 off)
{
	return (d & 0xffffffff00000000ull) | (u32)((u32)d + (off >> 4));
}

/*
 * This thread's warpgroup, as a value the compiler knows is the same on
 * every lane: what is derived from it (tile addresses, descriptors) then
 * lives in uniform registers instead of being moved there before each
 * MMA.
 */
static __device__ __forceinline__ int wg_index(void)
{
	return __shfl_sync(0xffffffffu, (int)(threadIdx.x >> 7), 0);
}

static __device__ __forceinline__ void wg_fence(void)
{
	asm volatile("wgmma.fence.sync.aligned;\n" ::: "memory");
}

static __device__ __forceinline__ void wg_commit(void)
{
	asm volatile("wgmma.commit_group.sync.aligned;\n" ::: "memory");
}

template <int N>
static __device__ __forceinline__ void wg_wait(void)
{
	asm volatile("wgmma.wait_group.sync.aligned %0;\n" :: "n"(N)
		     : "memory");
}

/*
 * Pin the accumulators in place around the asynchronous MMAs: without it
 * the compiler may read or move them between issue and wait.
 */
template <int NT>
static __device__ __forceinline__ void wg_pin(float (*d)[4])
{
#pragma unroll
	for (int n = 0; n < NT; n++)
#pragma unroll
		for (int x = 0; x < 4; x++)
			asm volatile("" : "+f"(d[n][x]) :: "memory");
}

/* generic-proxy shared-memory writes (cp.async) made visible to wgmma */
static __device__ __forceinline__ void fence_proxy_async(void)
{
	asm volatile("fence.proxy.async.shared::cta;\n" ::: "memory");
}

static __device__ __forceinline__ void cp_async16_s(u32 dst, const void *src,
						    bool valid)
{
	asm volatile("cp.async.cg.shared.global [%0], [%1], 16, %2;\n"
		     :: "r"(dst), "l"(src), "r"(valid ? 16 : 0));
}

/* the same, every byte from @src (a whole tile: no row to zero) */
static __device__ __forceinline__ void cp_async16_all(u32 dst,
						      const void *src)
{
	asm volatile("cp.async.cg.shared.global [%0], [%1], 16;\n"
		     :: "r"(dst), "l"(src));
}

/*
 * Rows [row0, row0 + ROWS) of a [N, HEAD_DIM] slice (row stride @ld
 * elements) into the swizzled tile at shared address @dst; rows at or
 * past @n are zero-filled.  Consecutive threads take consecutive 16-byte
 * chunks of a row: the global reads coalesce.  A thread's chunk column
 * and its rows' swizzle phase never change (THREADS is a multiple of the
 * chunks of 8 rows), so its addresses are one base and a constant step:
 * the generic chunk walk spent ~30 instructions a chunk on divisions and
 * 64-bit products, and the walks are bound by the instructions they
 * issue (ncu: ~1190 a warp and dense tile).
 */
template <int ROWS, int THREADS>
static __device__ __forceinline__ u32 sw_slot(u32 dst, int &ch, int &r0)
{
	constexpr int CH = HEAD_DIM / 8, RS = THREADS / CH;
	static_assert(THREADS % CH == 0 && RS % 8 == 0 && ROWS % RS == 0,
		      "load_sw: a thread's chunk column and phase are fixed");
	const unsigned t = threadIdx.x;

	/* this thread's chunk column, first row, and its shared address */
	ch = t % CH;
	r0 = t / CH;
	return dst + (ch >> 3) * ROWS * 128 + r0 * 128 +
	       (((ch & 7) ^ (r0 & 7)) << 4);
}

template <int ROWS, int THREADS>
static __device__ __forceinline__ void load_sw(u32 dst, const u16 *src,
					       i64 ld, int row0, int n)
{
	constexpr int RS = THREADS / (HEAD_DIM / 8);	/* rows a step */
	int ch, r0;
	const u32 at = sw_slot<ROWS, THREADS>(dst, ch, r0);
	const int left = n - row0 - r0;	/* rows from this one to @n */
	const i64 step = RS * ld;	/* elements from a copy to the next */
	/* the tile's first row (the same on every lane), then this thread's */
	const u16 *s = src + (i64)row0 * ld + ((i64)r0 * ld + ch * 8);

	/*
	 * A pointer that walks: s + k * RS * ld per copy had ptxas, at 128
	 * registers, reload @ld's parts from the constant bank and redo the
	 * 64-bit product for every copy (~30 instructions each in
	 * HIERARCHICAL's column tiles, ncu's source counters).  A whole tile
	 * (most of them) needs no test and no select a copy.
	 */
	if (row0 + ROWS <= n) {
#pragma unroll
		for (int k = 0; k < ROWS / RS; k++) {
			cp_async16_all(at + k * RS * 128, s);
			s += step;
		}
		return;
	}
#pragma unroll
	for (int k = 0; k < ROWS / RS; k++) {
		const bool ok = k * RS < left;

		cp_async16_s(at + k * RS * 128, ok ? s : src, ok);
		s += step;
	}
}

/*
 * The same layout for ROWS gathered rows: row r is source row @idx[r]
 * (zeros for r >= @n): STRIDED's and HIERARCHICAL's column keys.
 */
template <int ROWS, int THREADS>
static __device__ __forceinline__ void load_sw_idx(u32 dst, const u16 *src,
						   i64 ld, const int *idx,
						   int n)
{
	constexpr int RS = THREADS / (HEAD_DIM / 8);	/* rows a step */
	int ch, r0, j[ROWS / RS];
	const u32 at = sw_slot<ROWS, THREADS>(dst, ch, r0);

	/* the indices first: their loads overlap, not each its copy */
#pragma unroll
	for (int k = 0; k < ROWS / RS; k++)
		j[k] = r0 + k * RS < n ? __ldg(idx + r0 + k * RS) : -1;
#pragma unroll
	for (int k = 0; k < ROWS / RS; k++)
		cp_async16_s(at + k * RS * 128,
			     j[k] >= 0 ? src + (i64)j[k] * ld + ch * 8 : src,
			     j[k] >= 0);
}

/*
 * K and V rows of the same gathered keys into the tiles at @dk and @dv
 * (CLUSTERED's buckets): one index load a row for both
 */
template <int ROWS, int THREADS>
static __device__ __forceinline__ void load_sw_idx_kv(u32 dk, u32 dv,
						      const u16 *ks, i64 kld,
						      const u16 *vs, i64 vld,
						      const int *idx, int n)
{
	constexpr int RS = THREADS / (HEAD_DIM / 8);	/* rows a step */
	int ch, r0, j[ROWS / RS];
	const u32 ak = sw_slot<ROWS, THREADS>(dk, ch, r0);
	const u32 av = ak - dk + dv;	/* the same slot in V's tile */

#pragma unroll
	for (int k = 0; k < ROWS / RS; k++)
		j[k] = r0 + k * RS < n ? __ldg(idx + r0 + k * RS) : -1;
#pragma unroll
	for (int k = 0; k < ROWS / RS; k++) {
		const bool ok = j[k] >= 0;

		cp_async16_s(ak + k * RS * 128,
			     ok ? ks + (i64)j[k] * kld + ch * 8 : ks, ok);
		cp_async16_s(av + k * RS * 128,
			     ok ? vs + (i64)j[k] * vld + ch * 8 : vs, ok);
	}
}

#if ATTN_HAS_COLS
/*
 * Column entries [c0, c0 + ROWS) of STRIDED's or HIERARCHICAL's set as
 * such a tile, zeros from entry @nc: every step-th key is an ordinary
 * tile of rows step * ld apart, no index loads in front of the copies;
 * else gathered.
 */
template <int ROWS, int THREADS, class P>
static __device__ __forceinline__ void cols_load_sw(const P &p, u32 dst,
						    const u16 *src, i64 ld,
						    int c0, int nc)
{
	if (p.col_step)
		load_sw<ROWS, THREADS>(dst, src, ld * p.col_step, c0, nc);
	else
		load_sw_idx<ROWS, THREADS>(dst, src, ld, p.col + c0,
					   nc - c0);
}
#endif

static __device__ __forceinline__ void wgmma_ss_n128(float (*d)[4], u64 da,
						   u64 db, int acc)
{
	asm volatile("{\n.reg .pred p;\nsetp.ne.b32 p, %66, 0;\n"
		     "wgmma.mma_async.sync.aligned.m64n128k16.f32." WG_T "." WG_T " "
		     "{"
		     "%0, %1, %2, %3, %4, %5, %6, %7, "
		     "%8, %9, %10, %11, %12, %13, %14, %15, "
		     "%16, %17, %18, %19, %20, %21, %22, %23, "
		     "%24, %25, %26, %27, %28, %29, %30, %31, "
		     "%32, %33, %34, %35, %36, %37, %38, %39, "
		     "%40, %41, %42, %43, %44, %45, %46, %47, "
		     "%48, %49, %50, %51, %52, %53, %54, %55, "
		     "%56, %57, %58, %59, %60, %61, %62, %63"
		     "}, %64, %65, p, 1, 1, 0, 0;\n}\n"
		     : "+f"(d[0][0]), "+f"(d[0][1]), "+f"(d[0][2]), "+f"(d[0][3]),
		       "+f"(d[1][0]), "+f"(d[1][1]), "+f"(d[1][2]), "+f"(d[1][3]),
		       "+f"(d[2][0]), "+f"(d[2][1]), "+f"(d[2][2]), "+f"(d[2][3]),
		       "+f"(d[3][0]), "+f"(d[3][1]), "+f"(d[3][2]), "+f"(d[3][3]),
		       "+f"(d[4][0]), "+f"(d[4][1]), "+f"(d[4][2]), "+f"(d[4][3]),
		       "+f"(d[5][0]), "+f"(d[5][1]), "+f"(d[5][2]), "+f"(d[5][3]),
		       "+f"(d[6][0]), "+f"(d[6][1]), "+f"(d[6][2]), "+f"(d[6][3]),
		       "+f"(d[7][0]), "+f"(d[7][1]), "+f"(d[7][2]), "+f"(d[7][3]),
		       "+f"(d[8][0]), "+f"(d[8][1]), "+f"(d[8][2]), "+f"(d[8][3]),
		       "+f"(d[9][0]), "+f"(d[9][1]), "+f"(d[9][2]), "+f"(d[9][3]),
		       "+f"(d[10][0]), "+f"(d[10][1]), "+f"(d[10][2]), "+f"(d[10][3]),
		       "+f"(d[11][0]), "+f"(d[11][1]), "+f"(d[11][2]), "+f"(d[11][3]),
		       "+f"(d[12][0]), "+f"(d[12][1]), "+f"(d[12][2]), "+f"(d[12][3]),
		       "+f"(d[13][0]), "+f"(d[13][1]), "+f"(d[13][2]), "+f"(d[13][3]),
		       "+f"(d[14][0]), "+f"(d[14][1]), "+f"(d[14][2]), "+f"(d[14][3]),
		       "+f"(d[15][0]), "+f"(d[15][1]), "+f"(d[15][2]), "+f"(d[15][3])
		     : "l"(da), "l"(db), "r"(acc));
}

/*
 * TA, TB: the operands' transpose bits (1: MN-major in shared memory,
 * as the backward's dS^T and K are for dQ = dS K)
 */
template <int TA = 0, int TB = 0>
static __device__ __forceinline__ void wgmma_ss_n64(float (*d)[4], u64 da,
						   u64 db, int acc)
{
	asm volatile("{\n.reg .pred p;\nsetp.ne.b32 p, %34, 0;\n"
		     "wgmma.mma_async.sync.aligned.m64n64k16.f32." WG_T "." WG_T " "
		     "{"
		     "%0, %1, %2, %3, %4, %5, %6, %7, "
		     "%8, %9, %10, %11, %12, %13, %14, %15, "
		     "%16, %17, %18, %19, %20, %21, %22, %23, "
		     "%24, %25, %26, %27, %28, %29, %30, %31"
		     "}, %32, %33, p, 1, 1, %35, %36;\n}\n"
		     : "+f"(d[0][0]), "+f"(d[0][1]), "+f"(d[0][2]), "+f"(d[0][3]),
		       "+f"(d[1][0]), "+f"(d[1][1]), "+f"(d[1][2]), "+f"(d[1][3]),
		       "+f"(d[2][0]), "+f"(d[2][1]), "+f"(d[2][2]), "+f"(d[2][3]),
		       "+f"(d[3][0]), "+f"(d[3][1]), "+f"(d[3][2]), "+f"(d[3][3]),
		       "+f"(d[4][0]), "+f"(d[4][1]), "+f"(d[4][2]), "+f"(d[4][3]),
		       "+f"(d[5][0]), "+f"(d[5][1]), "+f"(d[5][2]), "+f"(d[5][3]),
		       "+f"(d[6][0]), "+f"(d[6][1]), "+f"(d[6][2]), "+f"(d[6][3]),
		       "+f"(d[7][0]), "+f"(d[7][1]), "+f"(d[7][2]), "+f"(d[7][3])
		     : "l"(da), "l"(db), "r"(acc), "n"(TA), "n"(TB));
}

/* m64n32k16, both operands in shared memory: 16 accumulators a thread */
template <int TA = 0, int TB = 0>
static __device__ __forceinline__ void wgmma_ss_n32(float (*d)[4], u64 da,
						   u64 db, int acc)
{
	asm volatile("{\n.reg .pred p;\nsetp.ne.b32 p, %18, 0;\n"
		     "wgmma.mma_async.sync.aligned.m64n32k16.f32." WG_T "." WG_T " "
		     "{"
		     "%0, %1, %2, %3, %4, %5, %6, %7, "
		     "%8, %9, %10, %11, %12, %13, %14, %15"
		     "}, %16, %17, p, 1, 1, %19, %20;\n}\n"
		     : "+f"(d[0][0]), "+f"(d[0][1]), "+f"(d[0][2]), "+f"(d[0][3]),
		       "+f"(d[1][0]), "+f"(d[1][1]), "+f"(d[1][2]), "+f"(d[1][3]),
		       "+f"(d[2][0]), "+f"(d[2][1]), "+f"(d[2][2]), "+f"(d[2][3]),
		       "+f"(d[3][0]), "+f"(d[3][1]), "+f"(d[3][2]), "+f"(d[3][3])
		     : "l"(da), "l"(db), "r"(acc), "n"(TA), "n"(TB));
}

static __device__ __forceinline__ void wgmma_rs_n128(float (*d)[4],
						   const u32 *a, u64 db)
{
	asm volatile("{\n.reg .pred p;\nsetp.ne.b32 p, %69, 0;\n"
		     "wgmma.mma_async.sync.aligned.m64n128k16.f32." WG_T "." WG_T " "
		     "{"
		     "%0, %1, %2, %3, %4, %5, %6, %7, "
		     "%8, %9, %10, %11, %12, %13, %14, %15, "
		     "%16, %17, %18, %19, %20, %21, %22, %23, "
		     "%24, %25, %26, %27, %28, %29, %30, %31, "
		     "%32, %33, %34, %35, %36, %37, %38, %39, "
		     "%40, %41, %42, %43, %44, %45, %46, %47, "
		     "%48, %49, %50, %51, %52, %53, %54, %55, "
		     "%56, %57, %58, %59, %60, %61, %62, %63"
		     "}, {%64, %65, %66, %67}, %68, p, 1, 1, 1;\n}\n"
		     : "+f"(d[0][0]), "+f"(d[0][1]), "+f"(d[0][2]), "+f"(d[0][3]),
		       "+f"(d[1][0]), "+f"(d[1][1]), "+f"(d[1][2]), "+f"(d[1][3]),
		       "+f"(d[2][0]), "+f"(d[2][1]), "+f"(d[2][2]), "+f"(d[2][3]),
		       "+f"(d[3][0]), "+f"(d[3][1]), "+f"(d[3][2]), "+f"(d[3][3]),
		       "+f"(d[4][0]), "+f"(d[4][1]), "+f"(d[4][2]), "+f"(d[4][3]),
		       "+f"(d[5][0]), "+f"(d[5][1]), "+f"(d[5][2]), "+f"(d[5][3]),
		       "+f"(d[6][0]), "+f"(d[6][1]), "+f"(d[6][2]), "+f"(d[6][3]),
		       "+f"(d[7][0]), "+f"(d[7][1]), "+f"(d[7][2]), "+f"(d[7][3]),
		       "+f"(d[8][0]), "+f"(d[8][1]), "+f"(d[8][2]), "+f"(d[8][3]),
		       "+f"(d[9][0]), "+f"(d[9][1]), "+f"(d[9][2]), "+f"(d[9][3]),
		       "+f"(d[10][0]), "+f"(d[10][1]), "+f"(d[10][2]), "+f"(d[10][3]),
		       "+f"(d[11][0]), "+f"(d[11][1]), "+f"(d[11][2]), "+f"(d[11][3]),
		       "+f"(d[12][0]), "+f"(d[12][1]), "+f"(d[12][2]), "+f"(d[12][3]),
		       "+f"(d[13][0]), "+f"(d[13][1]), "+f"(d[13][2]), "+f"(d[13][3]),
		       "+f"(d[14][0]), "+f"(d[14][1]), "+f"(d[14][2]), "+f"(d[14][3]),
		       "+f"(d[15][0]), "+f"(d[15][1]), "+f"(d[15][2]), "+f"(d[15][3])
		     : "r"(a[0]), "r"(a[1]), "r"(a[2]), "r"(a[3]), "l"(db),
		       "r"(1));
}

static __device__ __forceinline__ void wgmma_rs_n64(float (*d)[4],
						   const u32 *a, u64 db)
{
	asm volatile("{\n.reg .pred p;\nsetp.ne.b32 p, %37, 0;\n"
		     "wgmma.mma_async.sync.aligned.m64n64k16.f32." WG_T "." WG_T " "
		     "{"
		     "%0, %1, %2, %3, %4, %5, %6, %7, "
		     "%8, %9, %10, %11, %12, %13, %14, %15, "
		     "%16, %17, %18, %19, %20, %21, %22, %23, "
		     "%24, %25, %26, %27, %28, %29, %30, %31"
		     "}, {%32, %33, %34, %35}, %36, p, 1, 1, 1;\n}\n"
		     : "+f"(d[0][0]), "+f"(d[0][1]), "+f"(d[0][2]), "+f"(d[0][3]),
		       "+f"(d[1][0]), "+f"(d[1][1]), "+f"(d[1][2]), "+f"(d[1][3]),
		       "+f"(d[2][0]), "+f"(d[2][1]), "+f"(d[2][2]), "+f"(d[2][3]),
		       "+f"(d[3][0]), "+f"(d[3][1]), "+f"(d[3][2]), "+f"(d[3][3]),
		       "+f"(d[4][0]), "+f"(d[4][1]), "+f"(d[4][2]), "+f"(d[4][3]),
		       "+f"(d[5][0]), "+f"(d[5][1]), "+f"(d[5][2]), "+f"(d[5][3]),
		       "+f"(d[6][0]), "+f"(d[6][1]), "+f"(d[6][2]), "+f"(d[6][3]),
		       "+f"(d[7][0]), "+f"(d[7][1]), "+f"(d[7][2]), "+f"(d[7][3])
		     : "r"(a[0]), "r"(a[1]), "r"(a[2]), "r"(a[3]), "l"(db),
		       "r"(1));
}

/* O += P V, dV += P^T dO, ...: N = the head dim */
#if HEAD_DIM == 128
#define WG_RS wgmma_rs_n128
#else
#define WG_RS wgmma_rs_n64
#endif

#endif
