/* SPDX-License-Identifier: MIT */
/*
 * Attention backward for Hopper (sm_90a) on warpgroup MMA: the
 * non-deterministic mode of a walk without lists (the DENSE pattern or
 * the DENSE gate), as attn_bwd_nd.cuh's 128-key kernel computes it, with
 * every tile product on wgmma instead of mma.sync.
 *
 * A block owns BLOCK_N = 128 keys of one (b, kv head); each of its two
 * warpgroups owns 64 of them (the M of a wgmma).  It walks the 64-row
 * query tiles of every query head of the GQA group; per tile, with Q, dO
 * (two stages, the next in flight) and K, V in shared memory in the
 * 128-byte swizzled layout of attn_sm90.cuh:
 *
 *	S^T = K Q^T, dP^T = V dO^T	m64n64, A = K or V, B = Q or dO
 *					(all K-major)
 *	P^T, dS^T			ds_tile() in registers (rows = keys)
 *	dV += P^T dO, dK += dS^T Q	m64n{d}, A = P^T or dS^T in registers,
 *					B = dO or Q (MN-major: transposed)
 *	dQ(tile) = dS K			m64n64, A = dS^T staged in shared
 *					memory (MN-major), B = K (MN-major)
 *
 * Computing the transposes keeps the keys on the M side, so P^T and dS^T
 * feed the next MMA from registers without a shuffle.  dQ is added in
 * fp32 into p.dq_acc with vector reductions (attn_bwd.cu's dqcvt kernel
 * scales it into dQ's dtype).  Its product is split between the
 * warpgroups by columns, each half of the head dim over all 128 keys:
 * the reductions, not the MMAs, bound this kernel at d = 64, and a key
 * split would double them.
 *
 * LOCAL and RANDOM with the SPARSE gate walk lists: each warpgroup's 64
 * keys are one 64-key tile of the transposed lists (arch/cuda/attn.c,
 * the ones of attn_bwd_nd.cuh; LOCAL's found by arithmetic, the same
 * entries), the block walks the union of its two
 * tiles' query tiles, and a warpgroup skips the steps its tile does not
 * list (its dS^T half is zeroed for the dQ product).
 *
 * STRIDED and HIERARCHICAL with SPARSE (attn_cols.cuh) take two launches
 * of this file: the band as LOCAL's walk of radius R (HIERARCHICAL's
 * tiles never full: its vote is per pair), which writes every key row's
 * dK, dV; then asam_attn_bwd_sm90_cols_kernel, whose block owns 64 column
 * entries a warpgroup gathered as one key tile (cols_load_sw; two
 * warpgroups, 128 entries, by default: attn_sm90.c) and walks every
 * query tile that can see them, of every head of the group.  A step's
 * tile is whole (no mask) where cols_clear() says so, else each pair
 * takes cols_take() (beyond the band, under the limits, the head's
 * vote); the walk ends by adding its dK, dV to the band's rows
 * (cols_add_rows: each column row has one owner, the stream orders the
 * launches) and its dQ goes to the same fp32 sums as the band's.
 *
 * Preamble: HEAD_DIM, DTYPE, CAUSAL, GATE_MODE (SPARSE, DENSE, SOFT),
 * PATTERN (DENSE; LOCAL, RANDOM, STRIDED, HIERARCHICAL with SPARSE),
 * BLOCK_M (64; 128 for the dense walk at d = 64), BLOCK_N (128, or 64
 * for lists; the column entries' kernel 128), NUM_WARPS = BLOCK_N / 16.
 *
 * 128-row query tiles at d = 64: a step's five products are then twice
 * as large (S^T, dP^T m64n128; dV, dK over 128 queries; dQ split by rows)
 * for the same barriers, waits and list walking, which bound the 64-row
 * step there (its MMAs ran ~1/4 of the time); at d = 128 the two
 * 64 x 128 score tiles and the 64 x 128 dK, dV accumulators would not fit
 * 255 registers a thread.  kv_begin, ds_tile and the walk go by BLOCK_M.
 
 */
#include "attn_sm90.cuh"

#define NWG (BLOCK_N / 64)	/* warpgroups: 64 keys each */
#define ATTN_THREADS (NWG * 128)
#define NT_S 8		/* S^T's 8-column blocks: 64 queries */
#define KS_H 4		/* 16-query steps of 64 queries */
#define NT_O (HEAD_DIM / 8)
#define KS_D (HEAD_DIM / 16)
#define KS_M (BLOCK_M / 16)

#if (BLOCK_N != 64 && BLOCK_N != 128) || NUM_WARPS != NWG * 4
#error "the Hopper backward runs 64 or 128 keys a block"
#endif
/* 128-row query tiles: the dense walk at d = 64 (registers allow it) */
#if BLOCK_M != 64 && (BLOCK_M != 128 || HEAD_DIM != 64 || BLOCK_N != 128 || \
		      PATTERN != ATTN_P_DENSE)
#error "BLOCK_M: 64, or 128 for the dense walk by 128 keys at d = 64"
#endif
#if HEAD_DIM != 64 && HEAD_DIM != 128
#error "HEAD_DIM must be 64 or 128"
#endif
#define BWD_LIST (PATTERN != ATTN_P_DENSE)
#if BWD_LIST && (GATE_MODE != ATTN_G_SPARSE || \
		 (PATTERN != ATTN_P_LOCAL && PATTERN != ATTN_P_RANDOM && \
		  !ATTN_HAS_COLS && PATTERN != ATTN_P_CLUSTERED))
#error "the Hopper backward's lists: LOCAL, RANDOM, STRIDED, HIERARCHICAL, CLUSTERED; SPARSE"
#endif
#define BWD_BUCKET (PATTERN == ATTN_P_CLUSTERED)
#if BWD_BUCKET && (NWG != 1 || BLOCK_M != 64)
#error "CLUSTERED's bucket walk: 64-slot key tiles, 64-row chunks"
#endif
/* LOCAL's walk by arithmetic: LOCAL, and the band of the column patterns */
#define BWD_BAND (PATTERN == ATTN_P_LOCAL || ATTN_HAS_COLS)
#if GATE_MODE == ATTN_G_HARD
#error "HARD has no backward"
#endif

#include "attn_bwd_tile.cuh"
#if BWD_BUCKET
#include "attn_bucket.cuh"
#endif

/* tile bytes: every tile starts on a 1024-byte boundary */
#define KV_BYTES (BLOCK_N * HEAD_DIM * 2)
#define Q_BYTES (BLOCK_M * HEAD_DIM * 2)
/* dS^T: a 128-byte row a key per 64 queries (panels, as the head dim's) */
#define DS_BYTES (BLOCK_N * BLOCK_M * 2)
#define SL_FLOATS (4 * BLOCK_M)	/* a stage's row statistics */
/* and, for the bucket walk, a stage's row tokens after them: [2][BLOCK_M] */

/*
 * s (64 keys x 64 queries) = A B^T, A = this warpgroup's 64 rows of the
 * BLOCK_N-row tile at @a (K or V), B = 64 rows of the query tile from @b
 * (Q or dO)
 */
static __device__ __forceinline__ void gemm_t(float (*s)[4], u32 a, u32 b,
					      int wg)
{
	const u64 da = wg_desc(a + wg * 64 * 128, 16, 1024);
	const u64 db = wg_desc(b, 16, 1024);

#pragma unroll
	for (int ks = 0; ks < KS_D; ks++)
		wgmma_ss_n64(s, wg_desc_add(da, (ks >> 2) * BLOCK_N * 128 +
					    (ks & 3) * 32),
			     wg_desc_add(db, (ks >> 2) * BLOCK_M * 128 +
					 (ks & 3) * 32), ks);
}

/* acc (64 keys x d) += A B, A = @fr (64 x 64, registers), B = tile @b */
static __device__ __forceinline__ void gemm_acc(float (*acc)[4],
						u32 (*fr)[4], u32 b)
{
	const u64 db = wg_desc(b, BLOCK_M * 128, 1024);

#pragma unroll
	for (int ks = 0; ks < KS_M; ks++)
		WG_RS(acc, fr[ks], wg_desc_add(db, ks * 16 * 128));
}

/*
 * This warp's rows of a 64-query dS^T panel (16-bit, as the A fragments
 * @da hold them) into the swizzled [BLOCK_N keys][64 queries] panel at
 * @sds: key row r's 16-byte chunk c at c ^ (r & 7), so each store
 * instruction hits 32 banks.
 */
static __device__ __forceinline__ void store_dst(unsigned char *sds,
						 u32 (*da)[4], int r0, int lane)
{
	const int gr = lane >> 2, tg = lane & 3;

#pragma unroll
	for (int ks = 0; ks < KS_H; ks++)
#pragma unroll
		for (int x = 0; x < 4; x++) {
			int r = r0 + gr + (x & 1) * 8, c = 2 * ks + (x >> 1);

			*(u32 *)(sds + r * 128 + ((c ^ (r & 7)) << 4) +
				 4 * tg) = da[ks][x];
		}
}

/*
 * dQ(tile) += dS K over @KS 16-key steps and @NC columns, dS^T from @a0
 * and K from @b0 (both MN-major), into the workspace's rows from @q0,
 * columns from @c0
 */
template <int KS, int NC>
static __device__ __forceinline__ void dq_pass(const attn_bwd_params &p,
					       u32 a0, u32 b0, int c0, int b,
					       int h, int q0, int lane,
					       const int *rows)
{
	const int wq = (threadIdx.x >> 5) & 3;
	float acc[NC / 8][4];

	const u64 da0 = wg_desc(a0, BLOCK_N * 128, 1024);
	const u64 db0 = wg_desc(b0, BLOCK_N * 128, 1024);

	wg_fence();
#pragma unroll
	for (int ks = 0; ks < KS; ks++) {
		u64 da = wg_desc_add(da0, ks * 16 * 128);
		u64 db = wg_desc_add(db0, ks * 16 * 128);

		if (NC == 64)
			wgmma_ss_n64<1, 1>(acc, da, db, ks);
		else
			wgmma_ss_n32<1, 1>(acc, da, db, ks);
	}
	wg_commit();
	wg_wait<0>();
	wg_pin<NC / 8>(acc);

	red_frag_rows<NC / 8>(p.dq_acc + ((i64)b * p.Hq + h) * p.Nq * HEAD_DIM +
			      c0, HEAD_DIM, q0 + wq * 16, p.Nq, acc, lane,
			      rows ? rows + wq * 16 : nullptr);
}

/*
 * This warpgroup's share of dQ(tile) = dS K.  Two warpgroups split the
 * head dim's columns (each half of them over all 128 keys: the fewest
 * reductions, which bound the kernel at d = 64), or with 128-row tiles
 * the rows (each its 64 rows, every column, from its panel of dS^T); one
 * warpgroup takes its 64 keys, 64 columns a pass (32 accumulators a
 * thread).
 */
static __device__ __forceinline__ void add_dq(const attn_bwd_params &p,
					      u32 sds, u32 ck, int b, int h,
					      int q0, int wg, int lane,
					      const int *rows)
{
#if BLOCK_M == 128
	dq_pass<8, 64>(p, sds + wg * BLOCK_N * 128, ck, 0, b, h, q0 + wg * 64,
		       lane, rows);
#elif NWG == 2 && HEAD_DIM == 128
	dq_pass<8, 64>(p, sds, ck + wg * BLOCK_N * 128, wg * 64, b, h, q0,
		       lane, rows);
#elif NWG == 2
	/* 32 columns: half a 128-byte row into the swizzled panel */
	dq_pass<8, 32>(p, sds, ck + wg * 64, wg * 32, b, h, q0, lane, rows);
#else
#pragma unroll
	for (int c = 0; c < HEAD_DIM / 64; c++)
		dq_pass<4, 64>(p, sds, ck + c * BLOCK_N * 128, c * 64, b, h, q0,
			       lane, rows);
#endif
}

/*
 * The block's walk: step after step a (head, query tile), and for each
 * warpgroup whether its keys take part (entry e[w] of its list, -1: no).
 * Without lists every warpgroup takes every query tile of [lo, hi) of
 * every head of the group; with them, the union of the two tiles' lists
 * of each head, below hi.
 */
struct bwd_walk {
	enum { cols = 0, bucket = 0 };
	int h, hend, qt, lo, hi;
	int e[2];
#if BWD_BAND
	int t0[2];	/* the first query tile of each key tile's range */
	int n[2], at[2];
#elif BWD_LIST
	const int *l[2];
	int n[2], at[2];
#endif
};

#if BWD_BAND
/*
 * LOCAL's transposed lists by arithmetic: the 64-row query tiles whose
 * band (attn_plan.c's local_count over 64 x 64 tiles) reaches key tile
 * @kt are one range, found without a global load.  A list's walk is a
 * few steps a block: reading its offsets and then, one dependent load
 * after another, its entries stood before every block's first Q load.
 */
static __device__ __forceinline__ bool local_has(const attn_bwd_params &p,
						 int t, int kt, bool *past)
{
	const i64 off = (i64)p.Nk - p.Nq;
	const i64 q1 = (i64)t * 64 + 63 < p.Nq ? (i64)t * 64 + 63 : p.Nq - 1;
	i64 a = (i64)t * 64 + off - p.radius, z = q1 + off + p.radius;

	a = a < 0 ? 0 : a;
	z = z > p.Nk - 1 ? p.Nk - 1 : z;
	*past = a / 64 > kt;	/* and every later tile */
	return z >= a && a / 64 <= kt && z / 64 >= kt;
}

/*
 * entry @t of key tile @kt's list: FULL when every pair is in the band
 * (never for HIERARCHICAL: its band pairs take the head's vote)
 */
static __device__ __forceinline__ int local_entry(const attn_bwd_params &p,
						  int t, int kt)
{
	const i64 off = (i64)p.Nk - p.Nq, k0 = (i64)kt * 64;
	const i64 k1 = k0 + 63 < p.Nk ? k0 + 63 : p.Nk - 1;
	const i64 q0 = (i64)t * 64, q1 = q0 + 63 < p.Nq ? q0 + 63 : p.Nq - 1;

	return t | (PATTERN != ATTN_P_HIERARCHICAL &&
		    q1 + off - k0 <= p.radius && k1 - (q0 + off) <= p.radius ?
		    ATTN_E_FULL : 0);
}

#define WALK_AT(w, x, i) local_entry(p, (w).t0[x] + (i), kt0 + (x))

/* the block's NWG key tiles' ranges of query tiles below @w.hi */
static __device__ __forceinline__ void walk_lists(const attn_bwd_params &p,
						  bwd_walk &w, int kt0)
{
	const i64 off = (i64)p.Nk - p.Nq;

#pragma unroll
	for (int x = 0; x < NWG; x++) {
		const int kt = kt0 + x;
		/* the first tile whose band's end can reach kt, less one */
		i64 c = (i64)kt * 64 - off - p.radius - 63;
		int t = c <= 0 ? 0 : (int)((c + 63) / 64);
		bool past = false;
		int n = 0;

		t = t > 0 ? t - 1 : 0;
		while (kt < p.nkt && t < w.hi && !local_has(p, t, kt, &past) &&
		       !past)
			t++;
		w.t0[x] = t;
		while (kt < p.nkt && t + n < w.hi &&
		       local_has(p, t + n, kt, &past))
			n++;
		w.n[x] = n;
		w.at[x] = 0;
	}
}
#elif BWD_LIST
#define WALK_AT(w, x, i) (w).l[x][i]

/* head @w.h's lists of the block's NWG 64-key tiles from @kt0 */
static __device__ __forceinline__ void walk_lists(const attn_bwd_params &p,
						  bwd_walk &w, int kt0)
{
#pragma unroll
	for (int x = 0; x < NWG; x++) {
		int li = (p.list_per_head ? w.h * p.nkt : 0) + kt0 + x;
		int n = 0;

		w.at[x] = 0;
		w.l[x] = p.tlist;
		if (kt0 + x < p.nkt) {
			const int *l = p.tlist + p.tlist_off[li];
			int m = p.tlist_off[li + 1] - p.tlist_off[li];

			while (n < m && ATTN_E_TILE(l[n]) < w.hi)
				n++;
			w.l[x] = l;
		}
		w.n[x] = n;
	}
}
#endif

/* the next step into @w; false when the walk is over */
static __device__ __forceinline__ bool walk_next(const attn_bwd_params &p,
						 bwd_walk &w, int kt0)
{
#if BWD_LIST
	for (;;) {
		int t0 = w.at[0] < w.n[0] ?
			 ATTN_E_TILE(WALK_AT(w, 0, w.at[0])) : 0x7fffffff;
		int t1 = NWG > 1 && w.at[1] < w.n[1] ?
			 ATTN_E_TILE(WALK_AT(w, 1, w.at[1])) : 0x7fffffff;

		if (t0 != 0x7fffffff || t1 != 0x7fffffff) {
			w.qt = t0 < t1 ? t0 : t1;
			w.e[0] = t0 == w.qt ? WALK_AT(w, 0, w.at[0]++) : -1;
			w.e[1] = NWG > 1 && t1 == w.qt ?
				 WALK_AT(w, 1, w.at[1]++) : -1;
			return true;
		}
		if (++w.h >= w.hend)
			return false;
		walk_lists(p, w, kt0);
	}
#else
	if (++w.qt >= w.hi) {
		w.qt = w.lo;
		if (++w.h >= w.hend)
			return false;
	}
	w.e[0] = w.e[1] = ATTN_E_FULL;
	return w.lo < w.hi;
#endif
}

/* a walk's heads (the GQA group of kv head @hk) and query tiles */
template <class W>
static __device__ __forceinline__ void walk_span(W &w, int hk, int G, int lo,
						 int hi)
{
	w.h = hk * G;
	w.hend = w.h + G;
	w.lo = lo;
	w.hi = hi;
}

/* the walk's first step; false when it has none */
static __device__ __forceinline__ bool walk_begin(const attn_bwd_params &p,
						  bwd_walk &w, int hk, int G,
						  int lo, int hi, int kt0,
						  int lk, int off)
{
	walk_span(w, hk, G, lo, hi);
#if BWD_LIST
	walk_lists(p, w, kt0);
#else
	w.qt = lo - 1;
	if (lo >= hi)
		return false;
#endif
	return walk_next(p, w, kt0);
}

#if ATTN_HAS_COLS
/*
 * The column kernel's walk: every query tile of [lo, hi) of every head
 * of the group, as the dense walk, and for warpgroup x the entry of its
 * 64 column entries from 64 (kt0 + x): -1 where it has no pair there
 * (past the set; causal: every key past every row's diagonal), FULL
 * where the tile is clear (cols_clear), else a partial tile.  Steps
 * where no warpgroup has a pair are skipped.
 */
struct cols_walk {
	enum { cols = 1, bucket = 0 };
	int h, hend, qt, lo, hi;
	int e[2];
	int lk, off;
};

static __device__ __forceinline__ int cols_entry(const attn_bwd_params &p,
						 const cols_walk &w, int ct)
{
	const int c0 = ct * 64, d0 = w.qt * BLOCK_M + w.off;
	const int d1 = d0 + BLOCK_M - 1;
	int lim = w.lk, jlo;

	if (c0 >= p.ncol)
		return -1;
	jlo = col_key(p, c0);
	if (jlo >= w.lk)
		return -1;
#if CAUSAL
	if (jlo > d1)
		return -1;
	lim = d0 + 1 < lim ? d0 + 1 : lim;	/* the tile's first row's */
#endif
	return w.qt | (cols_clear(p, c0, 64, p.ncol, d0, d1, lim) ?
		       ATTN_E_FULL : 0);
}

static __device__ __forceinline__ bool walk_next(const attn_bwd_params &p,
						 cols_walk &w, int kt0)
{
	for (;;) {
		bool any = false;

		if (++w.qt >= w.hi) {
			w.qt = w.lo;
			if (++w.h >= w.hend)
				return false;
		}
#pragma unroll
		for (int x = 0; x < NWG; x++) {
			w.e[x] = cols_entry(p, w, kt0 + x);
			any |= w.e[x] >= 0;
		}
		if (any)
			return true;
	}
}

static __device__ __forceinline__ bool walk_begin(const attn_bwd_params &p,
						  cols_walk &w, int hk, int G,
						  int lo, int hi, int kt0,
						  int lk, int off)
{
	walk_span(w, hk, G, lo, hi);
	w.lk = lk;
	w.off = off;
	w.qt = lo - 1;
	w.e[0] = w.e[1] = -1;
	if (lo >= hi)
		return false;
	return walk_next(p, w, kt0);
}
#endif

/* the block's key tile: BLOCK_N keys from @k0, or column entries */
template <class W>
static __device__ __forceinline__ void load_keys(const attn_bwd_params &p,
						 const W &w, u32 dst,
						 const u16 *src, i64 ld, int k0)
{
#if ATTN_HAS_COLS
	if (W::cols) {
		cols_load_sw<BLOCK_N, ATTN_THREADS>(p, dst, src, ld, k0,
						    p.ncol);
		return;
	}
#endif
	load_sw<BLOCK_N, ATTN_THREADS>(dst, src, ld, k0, p.Nk);
}

/*
 * The warp's 16 rows of dK, dV from key @j0: stored, or for column
 * entries added to the band's rows
 */
template <class W>
static __device__ __forceinline__ void end_dkdv(const attn_bwd_params &p,
						const W &w, int b, int hk,
						int j0, float (*dk)[4],
						float (*dv)[4], int lane)
{
#if ATTN_HAS_COLS
	if (W::cols) {
		const int c = j0 + (lane >> 2);
		const int j = c < p.ncol ? col_key(p, c) : -1;
		const int j8 = c + 8 < p.ncol ? col_key(p, c + 8) : -1;

		cols_add_rows((u16 *)p.dk + b * p.dk_sb + hk * p.dk_sh,
			      p.dk_sn, j, j8, dk, p.scale, lane);
		cols_add_rows((u16 *)p.dv + b * p.dv_sb + hk * p.dv_sh,
			      p.dv_sn, j, j8, dv, 1.f, lane);
		return;
	}
#endif
	store_dkdv(p, b, hk, j0, dk, dv, lane);
}

/* the walk's smallest key, the first step's rows, their tokens */
template <class W>
static __device__ __forceinline__ int walk_kmin(const attn_bwd_params &p,
						const W &w, int k0)
{
	return W::cols ? col_key(p, k0) : k0;
}

/* step @w's query rows (Q or dO; @q0 = its tile's first) into @dst */
template <class W>
static __device__ __forceinline__ void load_qrows(const attn_bwd_params &p,
						  const W &w, int q0, u32 dst,
						  const u16 *src, i64 ld)
{
	load_sw<BLOCK_M, ATTN_THREADS>(dst, src, ld, q0, p.Nq);
}

/* step @w's row @r (a query token; p.Nq: none) */
template <class W>
static __device__ __forceinline__ int row_token(const attn_bwd_params &p,
						const W &w, int q0, int r)
{
	return q0 + r;
}

template <class W>
static __device__ __forceinline__ const int *walk_keys(const W &w, int *n)
{
	*n = 0;
	return nullptr;
}

#if BWD_BUCKET
/*
 * CLUSTERED: a block per 64-slot key tile of one query head's table
 * (blockIdx.y is the query head: with GQA the heads of a group sort the
 * keys differently), walking its cluster's query slots 64 at a time, K,
 * V, Q and dO gathered by slot; the bucket is the whole predicate (ARGMAX
 * mode), so every tile is whole but for the limits (causal, lengths) on
 * the tokens.  dQ goes to the tokens' rows; dK, dV to the keys' rows, or
 * with GQA to the head's fp32 partial rows that asam_clus_gqa_sum_kernel
 * adds in head order.
 */
struct bucket_walk {
	enum { cols = 0, bucket = 1 };
	int h, hend, qt, lo, hi;
	int e[2];
	const int *kp;	/* the key tile's tokens, slot by slot */
	const int *qp;	/* its cluster's query tokens, slot by slot */
	int nkr, nq, kfirst, off;
};

/* key tile @t of (b, query head @hq)'s table into @w; false past its end */
static __device__ __forceinline__ bool bucket_keys(const attn_bwd_params &p,
						   int b, int hq, int t,
						   bucket_walk &w)
{
	const i64 bh = (i64)b * p.Hq + hq;

	if (t >= p.cl_nktiles[bh])
		return false;

	const int *tl = p.cl_ktiles + 2 * (bh * p.cl_ntk + t);
	const int s0 = tl[0], c = tl[1];
	const int *qo = p.cl_qoff + bh * (p.cl_C + 1);
	const int *ko = p.cl_koff + bh * (p.cl_C + 1);

	w.h = hq;
	w.hend = hq + 1;
	w.kp = p.cl_kperm + bh * p.Nk + s0;
	w.nkr = min((int)BLOCK_N, ko[c + 1] - s0);
	w.qp = p.cl_qperm + bh * p.Nq + qo[c];
	w.nq = qo[c + 1] - qo[c];
	w.kfirst = w.kp[0];
	w.e[0] = w.e[1] = -1;
	return true;
}

static __device__ __forceinline__ bool walk_next(const attn_bwd_params &p,
						 bucket_walk &w, int kt0)
{
	while (++w.qt < w.hi) {
#if CAUSAL
		const int last = min((int)BLOCK_M, w.nq - w.qt * (int)BLOCK_M) - 1;

		/* a cluster's tokens ascend: a chunk wholly before the
		 * tile's first key sees none of it */
		if (w.qp[w.qt * BLOCK_M + last] + w.off < w.kfirst)
			continue;
#endif
		w.e[0] = w.e[1] = 0;
		return true;
	}
	return false;
}

static __device__ __forceinline__ bool walk_begin(const attn_bwd_params &p,
						  bucket_walk &w, int hk, int G,
						  int lo, int hi, int kt0,
						  int lk, int off)
{
	w.off = off;
	w.lo = 0;
	w.hi = w.kfirst < lk ? (w.nq + BLOCK_M - 1) / BLOCK_M : 0;
	w.qt = -1;
	return walk_next(p, w, kt0);
}

static __device__ __forceinline__ int walk_kmin(const attn_bwd_params &p,
						const bucket_walk &w, int k0)
{
	return w.kfirst;
}

static __device__ __forceinline__ void load_qrows(const attn_bwd_params &p,
						  const bucket_walk &w, int q0,
						  u32 dst, const u16 *src,
						  i64 ld)
{
	load_sw_idx<BLOCK_M, ATTN_THREADS>(dst, src, ld, w.qp + q0,
					   w.nq - q0);
}

/* q0: the chunk's first slot */
static __device__ __forceinline__ int row_token(const attn_bwd_params &p,
						const bucket_walk &w, int q0,
						int r)
{
	return q0 + r < w.nq ? w.qp[q0 + r] : p.Nq;
}

static __device__ __forceinline__ const int *walk_keys(const bucket_walk &w,
						       int *n)
{
	*n = w.nkr;
	return w.kp;
}

static __device__ __forceinline__ void load_keys(const attn_bwd_params &p,
						 const bucket_walk &w, u32 dst,
						 const u16 *src, i64 ld, int k0)
{
	load_sw_idx<BLOCK_N, ATTN_THREADS>(dst, src, ld, w.kp, w.nkr);
}

/* the warp's 16 key slots from @j0: to the keys' rows or GQA partials */
static __device__ __forceinline__ void end_dkdv(const attn_bwd_params &p,
						const bucket_walk &w, int b,
						int hk, int j0, float (*dk)[4],
						float (*dv)[4], int lane)
{
#pragma unroll
	for (int r = 0; r < 2; r++) {
		const int sl = j0 + (lane >> 2) + r * 8;

		if (sl < w.nkr)
			bucket_store_kv(p, (i64)b * p.Hq + w.h, b, hk, w.kp[sl],
					r, dk, dv, lane & 3);
	}
}
#endif

/* a skipped warpgroup's half of dS^T: zeros, so dQ = dS K stays right */
static __device__ __forceinline__ void zero_dst(unsigned char *sds, int wg)
{
	const int t = threadIdx.x & 127;

#pragma unroll
	for (int c = 0; c < 64 * 128 / 16 / 128; c++)
		*(uint4 *)(sds + wg * 64 * 128 + (c * 128 + t) * 16) =
			make_uint4(0, 0, 0, 0);
}

extern __shared__ __align__(1024) unsigned char attn_smem[];

/* the kernels' body: the walk @W over key tiles or column entries */
template <class W>
static __device__ __forceinline__ void bwd_body(const attn_bwd_params &p)
{
	/* the bucket walk's blocks are a query head's, the others' a kv head's */
	const int b = blockIdx.z, hy = blockIdx.y, kt = blockIdx.x;
	const int tid = threadIdx.x, lane = tid & 31;
	const int wg = wg_index(), wq = (tid >> 5) & 3;
	const int G = p.Hq / p.Hkv;
	const int hk = W::bucket ? hy / G : hy;
	const int lq = p.len_q ? p.len_q[b * p.lq_s] : p.Nq;
	const int lk = p.len_k ? p.len_k[b * p.lk_s] : p.Nk;
	/* the bucket walk's key slots count from its tile's first */
	const int k0 = W::bucket ? 0 : kt * BLOCK_N, off = p.Nk - p.Nq;
	W cur, nxt;

#if BWD_BUCKET
	if (!bucket_keys(p, b, hy, kt, cur))
		return;		/* past the table: the whole block */
#endif
	/* the block's smallest key */
	const int kmin = walk_kmin(p, cur, k0);
	/* the dynamic window is 16-byte aligned: round up to 1024 */
	const u32 raw = smem_u32(attn_smem);
	const u32 base = (raw + 1023) & ~1023u;
	const u32 sk = base, sv = sk + KV_BYTES, sq = sv + KV_BYTES;
	const u32 sdo = sq + 2 * Q_BYTES, sds = sdo + 2 * Q_BYTES;
	unsigned char *gds = attn_smem + (sds - raw);
	/* [2][4][BLOCK_M] */
	float *sL = (float *)(attn_smem + (sds + DS_BYTES - raw));
	/* the bucket walk's row tokens, [2][BLOCK_M] */
	int *sI = (int *)(sL + 2 * SL_FLOATS);
	int nkeys;
	const int *keys = walk_keys(cur, &nkeys);
	const u16 *qg = (const u16 *)p.q + b * p.q_sb;
	const u16 *dog = (const u16 *)p.d_o + b * p.do_sb;
	/* SPARSE: the sparse branch only; SOFT: both, the same pairs */
	const bool in_s = GATE_MODE != ATTN_G_DENSE;
	float dk[NT_O][4], dv[NT_O][4], nl[4];
	int qt_lo, qt_hi, t, ni = 0;
	bool more;

	kv_begin(kmin, off, lq, lk, &qt_lo, &qt_hi, dk, dv);
	more = walk_begin(p, cur, hk, G, qt_lo, qt_hi, NWG * kt, lk, off);
	load_keys(p, cur, sk, (const u16 *)p.k + b * p.k_sb + hk * p.k_sh,
		  p.k_sn, k0);
	load_keys(p, cur, sv, (const u16 *)p.v + b * p.v_sb + hk * p.v_sh,
		  p.v_sn, k0);
	if (more) {
		int q0 = cur.qt * BLOCK_M;

		load_qrows(p, cur, q0, sq, qg + cur.h * p.q_sh, p.q_sn);
		load_qrows(p, cur, q0, sdo, dog + cur.h * p.do_sh, p.do_sn);
		if (tid < BLOCK_M) {
			ni = row_token(p, cur, q0, tid);
			bwd_rowstats(p, b, cur.h, ni, nl);
			for (int x = 0; x < 4; x++)
				sL[x * BLOCK_M + tid] = nl[x];
			if (W::bucket)
				sI[tid] = ni;
		}
	}
	cp_async_commit();

	/*
	 * Step t: the walk's step @cur, staged in buffer t & 1; the next
	 * one (@nxt) loads while this one computes.
	 */
	for (t = 0; more; t++, cur = nxt) {
		const int buf = t & 1;
		const int h = cur.h, q0 = cur.qt * BLOCK_M;
		const int e = wg ? cur.e[1] : cur.e[0];
		const float g = GATE_MODE == ATTN_G_SOFT ?
				p.gate[b * p.g_sb + h * p.g_sh] : 0.f;
		const float ws = GATE_MODE == ATTN_G_SPARSE ? 1.f : g;
		const float wd = GATE_MODE == ATTN_G_DENSE ? 1.f : 1.f - g;
		const u32 cq = sq + buf * Q_BYTES, cdo = sdo + buf * Q_BYTES;
		const float *cL = sL + buf * SL_FLOATS;
		const int *cI = W::bucket ? sI + buf * BLOCK_M : nullptr;
		u32 pa[KS_M][4], da[KS_M][4];

		nxt = cur;
		more = walk_next(p, nxt, NWG * kt);
		/* tile t landed; step t - 1's MMAs and dS^T reads are done */
		cp_async_wait_all();
		fence_proxy_async();
		__syncthreads();
		if (more) {
			const int nq0 = nxt.qt * BLOCK_M;

			load_qrows(p, nxt, nq0, sq + (buf ^ 1) * Q_BYTES,
				   qg + nxt.h * p.q_sh, p.q_sn);
			load_qrows(p, nxt, nq0, sdo + (buf ^ 1) * Q_BYTES,
				   dog + nxt.h * p.do_sh, p.do_sn);
			if (tid < BLOCK_M) {
				ni = row_token(p, nxt, nq0, tid);
				bwd_rowstats(p, b, nxt.h, ni, nl);
			}
		}
		cp_async_commit();

		if (e >= 0) {
			/*
			 * 64 queries at a time: a 128-row tile's second
			 * half's scores then share the registers with the
			 * first half's 16-bit fragments only.
			 */
#pragma unroll
			for (int hf = 0; hf < BLOCK_M / 64; hf++) {
				float st[NT_S][4], dpt[NT_S][4];

				wg_fence();
				gemm_t(st, sk, cq + hf * 64 * 128, wg);
				gemm_t(dpt, sv, cdo + hf * 64 * 128, wg);
				wg_commit();
				wg_wait<0>();
				wg_pin<NT_S>(st);
				wg_pin<NT_S>(dpt);

				const float *hL = cL + hf * 64;
				const int hq = q0 + hf * 64;
				const int j0 = k0 + wg * 64 + wq * 16;

				/*
				 * the bucket: every pair, rows and keys by
				 * token; column tiles: whole ones without the
				 * test
				 */
				if (W::bucket)
					ds_tile<false, 0>(p, st, dpt, hL, h, hq,
							  j0, lq, lk, off, in_s,
							  e, wd, ws, lane,
							  cI + hf * 64, keys,
							  nkeys);
				else if (!W::cols)
					ds_tile(p, st, dpt, hL, h, hq, j0, lq,
						lk, off, in_s, e, wd, ws, lane);
				else if (e & ATTN_E_FULL)
					ds_tile<true, 0>(p, st, dpt, hL, h, hq,
							 j0, lq, lk, off, in_s,
							 e, wd, ws, lane);
				else
					ds_tile<true, 1>(p, st, dpt, hL, h, hq,
							 j0, lq, lk, off, in_s,
							 e, wd, ws, lane);
#pragma unroll
				for (int ks = 0; ks < KS_H; ks++) {
					p_frag(pa[hf * KS_H + ks], st, ks);
					p_frag(da[hf * KS_H + ks], dpt, ks);
				}
				store_dst(gds + hf * BLOCK_N * 128,
					  da + hf * KS_H, wg * 64 + wq * 16,
					  lane);
			}

			wg_fence();
			gemm_acc(dv, pa, cdo);
			gemm_acc(dk, da, cq);
			wg_commit();
		} else if (NWG > 1) {
			zero_dst(gds, wg);
		}

		/* dS^T of both warpgroups, visible to the async proxy */
		fence_proxy_async();
		__syncthreads();
		add_dq(p, sds, sk, b, h, q0, wg, lane, cI);	/* waits for all */
		wg_pin<NT_O>(dv);
		wg_pin<NT_O>(dk);
		if (more && tid < BLOCK_M) {
			for (int x = 0; x < 4; x++)
				sL[(buf ^ 1) * SL_FLOATS + x * BLOCK_M + tid] =
					nl[x];
			if (W::bucket)
				sI[(buf ^ 1) * BLOCK_M + tid] = ni;
		}
	}
	cp_async_wait_all();
	end_dkdv(p, cur, b, hk, k0 + wg * 64 + wq * 16, dk, dv, lane);
}

/*
 * One warpgroup a block runs two blocks an SM (its registers and shared
 * memory allow it): one block's loads, barriers and element-wise work
 * then overlap the other's MMAs.
 */
#if !BWD_BUCKET
extern "C" __global__ void __launch_bounds__(ATTN_THREADS, NWG == 1 ? 2 : 1)
asam_attn_bwd_sm90_kernel(const attn_bwd_params p)
{
	bwd_body<bwd_walk>(p);
}
#else
/*
 * CLUSTERED: over (key tiles of the table, Hq, B).  The family's one
 * entry name, as the forward's bucket variant keeps its own: every
 * variant then has the entries jit_compile looks for.
 */
extern "C" __global__ void __launch_bounds__(ATTN_THREADS, 2)
asam_attn_bwd_sm90_kernel(const attn_bwd_params p)
{
	bwd_body<bucket_walk>(p);
}
#endif

#if ATTN_HAS_COLS && BWD_LIST
/* the column entries' dK, dV and dQ, after the band's launch */
extern "C" __global__ void __launch_bounds__(ATTN_THREADS, NWG == 1 ? 2 : 1)
asam_attn_bwd_sm90_cols_kernel(const attn_bwd_params p)
{
	bwd_body<cols_walk>(p);
}
#endif
