/* SPDX-License-Identifier: MIT */
/*
 * Attention forward for Hopper (sm_90a) on warpgroup MMA.
 *
 * A block of BLOCK_M / 64 warpgroups owns BLOCK_M query rows of one
 * (batch, query head); each warpgroup owns 64 of them, the M of one
 * wgmma.  Q, and BLOCK_N-key tiles of K and V (two stages, cp.async,
 * the next tile in flight while this one computes) sit in shared memory
 * in the 128-byte swizzled layout of attn_sm90.cuh, so both MMAs read
 * their B operand (and the first its A) straight from shared memory by
 * descriptor:
 *
 *	S = Q K^T	wgmma m64n{BLOCK_N}k16, A = Q, B = K (both K-major)
 *	O += P V	wgmma m64n{HEAD_DIM}k16, A = P in registers, B = V
 *			(MN-major: the transpose is the descriptor's)
 *
 * The accumulator of a wgmma gives each warp 16 rows laid out as the
 * m16n8 C fragment of mma.sync, n8 block after n8 block, so the online
 * softmax is the one of attn_fwd.cu and P turns into the A operand of the
 * second MMA with the same packing (p_frag), never touching memory.
 *
 * STAGGER = 1 shifts the second warpgroup by half an iteration (see the
 * main loop) so that one warpgroup's softmax runs while the other's MMAs
 * do, instead of both waiting on the tensor cores and then both on the
 * exponentials.
 *
 * CLUSTERED's SPARSE branch walks cluster buckets (attn_bucket_sm90.cuh).
 *
 * Served: the DENSE, LOCAL and RANDOM patterns with the SPARSE, DENSE
 * or HARD gate (one branch per (b, h); the other branch's lse is -inf,
 * or NaN for HARD, as attn_fwd.cu writes it), either launch of SOFT's two
 * (ATTN_MIX_DENSE, ATTN_MIX_SPARSE), causal (bottom-right), per-batch
 * lengths, GQA, d = 64 and 128.
 *
 * RANDOM walks the host-built list of the query tile's 64-key tiles
 * (arch/cuda/attn_plan.c, the one of attn_fwd.cu); LOCAL the same tiles,
 * one range found by arithmetic (local_range), as the band of STRIDED
 * and HIERARCHICAL, whose column keys follow (by arithmetic too where
 * they are every step-th key, col_key).  The list is the union
 * over the tile's 128 rows; each warpgroup skips the tiles its own
 * 64 rows have nothing in (a RANDOM key block is drawn per 64-row group,
 * so a warpgroup is exactly one group and needs no mask inside a tile it
 * takes; a LOCAL band of radius 64 covers three of the four tiles of the
 * union for either half), so the tensor cores see 1.5 x the band, not
 * 2 x.
 */
#include "attn_sm90.cuh"

#define NWG (BLOCK_M / 64)
#define ATTN_THREADS (NWG * 128)
#define NT_S (BLOCK_N / 8)
#define NT_O (HEAD_DIM / 8)
#define KS_D (HEAD_DIM / 16)
#define KS_N (BLOCK_N / 16)

#if BLOCK_M % 64 || NWG < 1 || NWG > 3
#error "BLOCK_M must be 64, 128 or 192"
#endif
#if BLOCK_N != 64 && BLOCK_N != 128
#error "BLOCK_N must be 64 or 128"
#endif
#if HEAD_DIM != 64 && HEAD_DIM != 128
#error "HEAD_DIM must be 64 or 128"
#endif
#if PATTERN != ATTN_P_DENSE && PATTERN != ATTN_P_LOCAL && \
	PATTERN != ATTN_P_RANDOM && !ATTN_HAS_COLS && \
	PATTERN != ATTN_P_CLUSTERED
#error "the sm_90 forward serves DENSE, LOCAL, RANDOM, STRIDED, HIERARCHICAL, CLUSTERED"
#endif
#if PATTERN == ATTN_P_CLUSTERED && GATE_MODE != ATTN_G_SPARSE && \
	GATE_MODE != ATTN_G_HARD
#error "CLUSTERED on wgmma: SPARSE and HARD (attn_bucket_fwd.cuh serves SOFT)"
#endif
/* LOCAL, STRIDED and HIERARCHICAL walk a band of radius p.radius */
#define SM90_BAND (PATTERN == ATTN_P_LOCAL || ATTN_HAS_COLS)
#if PATTERN != ATTN_P_DENSE && (BLOCK_N != 64 || BLOCK_M != 128)
#error "the pattern lists hold 64-key tiles of 128-row query tiles"
#endif
#if GATE_MODE == ATTN_G_SOFT
#error "SOFT runs as two one-branch launches (ATTN_MIX_*)"
#endif
/*
 * Blocks an SM the registers must allow (ASAM_CUDA_SM90_MINB on the host,
 * for tuning): 2 caps them at 128 a thread, which spills at d = 128.
 */
#if defined(ASAM_JIT) && defined(ASAM_MIN_BLOCKS)
#define MIN_BLOCKS ASAM_MIN_BLOCKS
#endif
#ifndef MIN_BLOCKS
#define MIN_BLOCKS 1
#endif

/* tile bytes: every tile starts on a 1024-byte boundary */
#define Q_BYTES (BLOCK_M * HEAD_DIM * 2)
#define KV_BYTES (BLOCK_N * HEAD_DIM * 2)

#if BLOCK_N == 128
#define WG_SS wgmma_ss_n128
#else
#define WG_SS wgmma_ss_n64
#endif

#if defined(ASAM_JIT) && defined(ASAM_STAGGER)
#define STAGGER ASAM_STAGGER	/* the preamble's macro, for #if */
#endif
#ifndef STAGGER
#define STAGGER 0
#endif
#if STAGGER && NWG != 2
#error "STAGGER pairs two warpgroups"
#endif
#if STAGGER && PATTERN != ATTN_P_DENSE
#error "a list's short walk runs in step"
#endif
/* V stages: a staggered warpgroup still reads V of the previous tile */
#define V_STAGES (STAGGER ? 3 : 2)

/* one warpgroup's online-softmax state: rows gr and gr + 8 of its warp */
struct wg_state {
	float m[2], l[2];
	float acc[NT_O][4];
	int lim[2];
};

/* the two rows' online softmax from nothing: no max, no sum, no output */
static __device__ __forceinline__ void wg_state_reset(wg_state &st)
{
	st.m[0] = st.m[1] = ATTN_NEG_INF;
	st.l[0] = st.l[1] = 0.f;
#pragma unroll
	for (int n = 0; n < NT_O; n++)
		st.acc[n][0] = st.acc[n][1] = st.acc[n][2] =
			st.acc[n][3] = 0.f;
}

/* S = Q K^T for this warpgroup's 64 rows, K at shared address @ck */
static __device__ __forceinline__ void gemm_s(float (*s)[4], u32 sq, u32 ck,
					      int wg)
{
	const u64 dq = wg_desc(sq + wg * 64 * 128, 16, 1024);
	const u64 dk = wg_desc(ck, 16, 1024);

	wg_fence();
#pragma unroll
	for (int ks = 0; ks < KS_D; ks++)
		WG_SS(s, wg_desc_add(dq, (ks >> 2) * BLOCK_M * 128 +
				     (ks & 3) * 32),
		      wg_desc_add(dk, (ks >> 2) * BLOCK_N * 128 +
				  (ks & 3) * 32), ks);
	wg_commit();
	wg_wait<0>();
	wg_pin<NT_S>(s);
}

/*
 * Masks on a score tile (raw scores; -inf where not allowed), for the
 * tile of keys [k0, k0 + BLOCK_N) seen by this thread's rows gr and gr +
 * 8 of warp row @w0 (@band0 = w0 + gr + off: the bottom-right diagonal).
 * The key limit (causal, len_k) only on the tiles that reach it
 * (@lim_min: the block's smallest); the band |i + off - j| <= radius on
 * a band tile some of whose pairs are outside it (@pmask), and for
 * HIERARCHICAL each pair's vote there.
 */
static __device__ __forceinline__ void mask_tile(const attn_fwd_params &p,
						 const wg_state &st,
						 float (*s)[4], int h, int k0,
						 int lim_min, bool pmask,
						 int band0, int off)
{
	const int tg = threadIdx.x & 3;
	const bool umask = k0 + BLOCK_N > lim_min;

	if (!umask && !(SM90_BAND && pmask))
		return;
#pragma unroll
	for (int n = 0; n < NT_S; n++)
#pragma unroll
		for (int xj = 0; xj < 2; xj++) {
			const int j = k0 + n * 8 + 2 * tg + xj;
			/* HIERARCHICAL: one band word a key, both rows */
			const u32 bw = SM90_BAND && pmask ?
				       cols_band_word(p, h, j) : 0;

#pragma unroll
			for (int r = 0; r < 2; r++) {
				const int x = 2 * r + xj;
				const int dl = band0 + r * 8 - j;

				if (umask && j >= st.lim[r])
					s[n][x] = ATTN_NEG_INF;
				if (SM90_BAND && pmask &&
				    (dl > p.radius || -dl > p.radius ||
				     !cols_band_w(p, h, bw, dl, j)))
					s[n][x] = ATTN_NEG_INF;
			}
		}
}

/*
 * A score tile whose columns are gathered keys: slot c's key is @key(c),
 * and row r (0: gr, 1: gr + 8) takes it where @take(r, key) holds.  The
 * keys are read here, after the MMA was issued, not held through it
 * (registers).
 */
template <class K, class T>
static __device__ __forceinline__ void mask_keyed(float (*s)[4], int c0,
						  K key, T take)
{
	const int tg = threadIdx.x & 3;

#pragma unroll
	for (int n = 0; n < NT_S; n++)
#pragma unroll
		for (int x = 0; x < 2; x++) {
			int j = key(c0 + n * 8 + 2 * tg + x);

			if (!take(0, j))
				s[n][x] = ATTN_NEG_INF;
			if (!take(1, j))
				s[n][2 + x] = ATTN_NEG_INF;
		}
}

/*
 * STRIDED, HIERARCHICAL: the tile of gathered column keys from entry @c0
 * of the set (@nc entries): cols_take() (beyond the band, under the
 * row's limit, the head's vote).
 */
static __device__ __forceinline__ void mask_cols(const attn_fwd_params &p,
						 const wg_state &st,
						 float (*s)[4], int h, int c0,
						 int nc, int i0, int off)
{
	mask_keyed(s, c0,
		   [&](int c) { return c < nc ? col_key(p, c) : -1; },
		   [&](int r, int j) {
			   return cols_take(p, h, i0 + 8 * r, j, st.lim[r],
					    off);
		   });
}

/*
 * How far (log2 units) a row's maximum may rise above the one its sums
 * are kept against before they are rescaled: P stays under 2^8, which
 * bf16/fp16 P and fp32 sums hold without loss, and the sums' reference
 * moves only when some row of the warp outgrows it -- rarely after the
 * first tiles -- instead of every tile (the rescale was 64 of a warp's
 * ~750 instructions a 64-key tile, ncu).
 */
#define RESCALE_SLACK 8.f

/*
 * Fold a (masked) score tile into @st and leave P as A fragments in @pa:
 * log2 domain, running max, rescale.  The scale goes into the exponent's
 * multiply-add (the maximum of the raw scores, scaled once, is the
 * scaled scores' maximum: the scale is positive), not into a multiply of
 * every score first: the walks are bound by the instructions they issue
 * (ncu: ~1190 a warp and dense tile, issue slots 43-47 % busy).  st.m
 * is the reference the sums are kept against, not always the maximum
 * (RESCALE_SLACK); the epilogue's lse is st.m + log2(l) either way.
 */
static __device__ __forceinline__ void softmax(wg_state &st, float (*s)[4],
					       u32 (*pa)[4], float scale_log2)
{
	float mx[2];
	bool grow = false;

#pragma unroll
	for (int r = 0; r < 2; r++) {
		float m = ATTN_NEG_INF;

#pragma unroll
		for (int n = 0; n < NT_S; n++)
			m = fmaxf(m, fmaxf(s[n][2 * r], s[n][2 * r + 1]));
		mx[r] = quad_max(m) * scale_log2;
		/* -inf + slack stays -inf: a row's first scores grow it */
		grow |= mx[r] > st.m[r] + RESCALE_SLACK;
	}
	/* warp-uniform: the rescale below is all or nothing */
	if (__any_sync(0xffffffffu, grow)) {
		float alpha[2];

#pragma unroll
		for (int r = 0; r < 2; r++) {
			float m = fmaxf(st.m[r], mx[r]);

			/* an empty row so far keeps -inf: exp2(-inf - 0) = 0 */
			alpha[r] = fast_exp2(st.m[r] -
					     (m == ATTN_NEG_INF ? 0.f : m));
			st.m[r] = m;
			st.l[r] *= alpha[r];
		}
		acc_rescale<NT_O>(st.acc, alpha[0], alpha[1]);
	}
#pragma unroll
	for (int r = 0; r < 2; r++) {
		const float bs = st.m[r] == ATTN_NEG_INF ? 0.f : st.m[r];
		float sum = 0.f;

#pragma unroll
		for (int n = 0; n < NT_S; n++) {
			s[n][2 * r] = fast_exp2(fmaf(s[n][2 * r], scale_log2,
						     -bs));
			s[n][2 * r + 1] = fast_exp2(fmaf(s[n][2 * r + 1],
							 scale_log2, -bs));
			sum += s[n][2 * r] + s[n][2 * r + 1];
		}
		/* quad-reduced in the epilogue */
		st.l[r] += sum;
	}
#pragma unroll
	for (int ks = 0; ks < KS_N; ks++)
		p_frag(pa[ks], s, ks);
}

/* O += P V, 16 keys a step, V at shared address @cv */
static __device__ __forceinline__ void gemm_pv(wg_state &st, u32 (*pa)[4],
					       u32 cv)
{
	const u64 dv = wg_desc(cv, BLOCK_N * 128, 1024);

	wg_fence();
#pragma unroll
	for (int ks = 0; ks < KS_N; ks++)
		WG_RS(st.acc, pa[ks], wg_desc_add(dv, ks * 16 * 128));
	wg_commit();
	wg_wait<0>();
	wg_pin<NT_O>(st.acc);
}

/*
 * What warpgroup @wg's 64 rows, the first of them at @r0 (+ off: the
 * bottom-right alignment), have in list entry @e's key tile at @k0:
 * 0 nothing (skip it), 1 some pairs (mask), 2 every pair the user mask
 * leaves.
 */
static __device__ __forceinline__ int wg_need(int e, int wg, int r0, int k0,
					      int radius)
{
#if PATTERN == ATTN_P_RANDOM
	return (e & ATTN_E_FULL) || ATTN_E_GROUP(e, wg) ? 2 : 0;
#elif SM90_BAND
	int dmin = r0 - (k0 + BLOCK_N - 1), dmax = r0 + 63 - k0;

	if (dmin > radius || -dmax > radius)
		return 0;
	/* HIERARCHICAL votes per pair inside the band */
	return dmax <= radius && -dmin <= radius &&
	       PATTERN != ATTN_P_HIERARCHICAL ? 2 : 1;
#else
	return 2;
#endif
}

/*
 * LOCAL's list of a query tile, and the band of STRIDED and HIERARCHICAL
 * (radius R), is one range of keys: its first key is found here, so the
 * first K/V load of a block waits on no list load (two dependent global
 * reads: the block's offsets, then its entries) and the walk reads none.
 * A short walk of a few tiles is latency, not MMAs: LOCAL at 64K keys
 * had ~20 us a block.  The tiles start at the band's first key, not on
 * a multiple of BLOCK_N: a radius-16 band of a 64-row warpgroup (96
 * keys) spans two tiles so, and three aligned (HIERARCHICAL's band, one
 * walk step in 19).  The entries are key starts and carry no FULL flag:
 * wg_need() decides from the radius.
 */
#if SM90_BAND
static __device__ __forceinline__ int local_range(const attn_fwd_params &p,
						  int q0, int lim_max, int *n)
{
	const i64 off = (i64)p.Nk - p.Nq;
	const int q1 = q0 + BLOCK_M - 1 < p.Nq ? q0 + BLOCK_M - 1 : p.Nq - 1;
	i64 lo = q0 + off - p.radius, hi = q1 + off + p.radius;

	lo = lo < 0 ? 0 : lo;
	hi = hi > p.Nk - 1 ? p.Nk - 1 : hi;
	hi = hi > lim_max - 1 ? lim_max - 1 : hi;
	*n = hi < lo ? 0 : (int)((hi - lo) / BLOCK_N) + 1;
	return (int)lo;
}
#define WALK_AT(it) (lt0 + (it) * BLOCK_N)
#define ENTRY_K0(e) (e)
#else
#define WALK_AT(it) list[it]
#define ENTRY_K0(e) (ATTN_E_TILE(e) * BLOCK_N)
#endif

/*
 * K and V of walk step @it into the stages at @dk, @dv: the key tile from
 * key @k0 of the band or the dense walk, or past the list's @cnt steps
 * the column keys' tile it - cnt (@nc column keys in all).
 */
static __device__ __forceinline__ void load_kv(const attn_fwd_params &p,
					       int it, int cnt, int nc, int k0,
					       const u16 *kg, const u16 *vg,
					       u32 dk, u32 dv)
{
#if ATTN_HAS_COLS
	if (it >= cnt) {
		const int c0 = (it - cnt) * BLOCK_N;

		cols_load_sw<BLOCK_N, ATTN_THREADS>(p, dk, kg, p.k_sn, c0, nc);
		cols_load_sw<BLOCK_N, ATTN_THREADS>(p, dv, vg, p.v_sn, c0, nc);
		return;
	}
#endif
	load_sw<BLOCK_N, ATTN_THREADS>(dk, kg, p.k_sn, k0, p.Nk);
	load_sw<BLOCK_N, ATTN_THREADS>(dv, vg, p.v_sn, k0, p.Nk);
}

/*
 * One query tile of (b, h) as the sparse branch (@sp) or the dense one:
 * the DENSE pattern and the dense branch walk every key tile up to the
 * mask's limit, a pattern's sparse branch its list.  HARD decides @sp
 * per (b, h) at run time between two copies of it; the other gates fix
 * it at compile time.
 */
template <bool sp>
static __device__ __forceinline__ void fwd_tile(const attn_fwd_params &p,
						int b, int h, int qt,
						float g, u32 base)
{
	const int tid = threadIdx.x, lane = tid & 31;
	const int wg = wg_index(), wq = (tid >> 5) & 3;
	const int gr = lane >> 2, tg = lane & 3;
	const int hk = h / (p.Hq / p.Hkv);
	const int lq = p.len_q ? p.len_q[b * p.lq_s] : p.Nq;
	const int lk = p.len_k ? p.len_k[b * p.lk_s] : p.Nk;
	const int q0 = qt * BLOCK_M, off = p.Nk - p.Nq;
	/* this warp's first row */
	const int w0 = q0 + wg * 64 + wq * 16;
	const int lim_min = q0 < lq ? row_limit(q0, lq, lk, p.Nq, p.Nk) : 0;
	const int qlast = (q0 + BLOCK_M < lq ? q0 + BLOCK_M : lq) - 1;
	const int lim_max = q0 < lq ? row_limit(qlast, lq, lk, p.Nq, p.Nk) : 0;
	const int nkt = (lim_max + BLOCK_N - 1) / BLOCK_N;
	const bool use_list = PATTERN != ATTN_P_DENSE && sp;
	const u16 *qg = (const u16 *)p.q + b * p.q_sb + h * p.q_sh;
	const u16 *kg = (const u16 *)p.k + b * p.k_sb + hk * p.k_sh;
	const u16 *vg = (const u16 *)p.v + b * p.v_sb + hk * p.v_sh;
	const u32 sq = base, sk = sq + Q_BYTES, sv = sk + 2 * KV_BYTES;
	/* the staggered warpgroup runs one iteration behind on P V */
	const int lag = STAGGER && wg == 1;
#if !SM90_BAND
	const int *list = 0;
#endif
	int cnt = nkt, need = 0, pk0 = 0, e0 = ATTN_E_FULL, e1 = ATTN_E_FULL;
	int nc = 0, tot, lt0 = 0;
	wg_state st;
	float s[NT_S][4];
	u32 pa[KS_N][4];

	/* Q first: nothing it needs waits on the loads below */
	load_sw<BLOCK_M, ATTN_THREADS>(sq, qg, p.q_sn, q0, p.Nq);
	cp_async_commit();
	if (use_list) {
#if SM90_BAND
		lt0 = local_range(p, q0, lim_max, &cnt);
#else
		list = tile_list(p, h, qt, nkt, &cnt);
#endif
		/* entries it and it + 1 in registers, it + 2 in flight */
		e0 = cnt > 0 ? WALK_AT(0) : 0;
		e1 = cnt > 1 ? WALK_AT(1) : 0;
	}
	tot = cnt;
	st.lim[0] = row_limit(w0 + gr, lq, lk, p.Nq, p.Nk);
	st.lim[1] = row_limit(w0 + gr + 8, lq, lk, p.Nq, p.Nk);
	wg_state_reset(st);

#if ATTN_HAS_COLS
	cols_span cspan = {};

	if (sp) {	/* the column keys under the block's largest limit */
		nc = cols_below(p, lim_max);
		tot = cnt + (nc + BLOCK_N - 1) / BLOCK_N;
		cspan = cols_span_of(p, q0 + wg * 64 + off,
				     q0 + wg * 64 + 63 + off, lim_min);
	}
#endif
	if (tot > 0)
		load_kv(p, 0, cnt, nc, use_list ? ENTRY_K0(e0) : 0, kg, vg,
			sk, sv);
	cp_async_commit();

	/*
	 * Iteration it: the it-th tile of the walk is in shared memory (K in
	 * stage it % 2, V in stage it % V_STAGES) and the next goes in
	 * flight.  Without STAGGER both warpgroups run S, softmax, P V on
	 * tile it.  With it the second runs softmax and P V of tile it - 1,
	 * then S of tile it, so its softmax overlaps the first's MMAs and the
	 * other way round; it needs one more iteration at the end, and V of
	 * tile it - 1 must survive iteration it (three V stages).  A
	 * warpgroup with nothing in a tile skips its MMAs (the decision is
	 * the whole warpgroup's, as wgmma requires) but not the barriers.
	 * STRIDED and HIERARCHICAL go on past the band's list into their
	 * column keys, 64 gathered keys a tile (attn_cols.cuh): the same
	 * online softmax, no pair counted twice (cols_take skips the band).
	 */
	for (int it = 0; it < tot + STAGGER; it++) {
		const u32 ck = sk + (it & 1) * KV_BYTES;
		const bool col = ATTN_HAS_COLS && it >= cnt;
		int e = e0, k0 = it * BLOCK_N, nd = 0, nx0 = e1;
		bool clr = false;

		/* a dependent global load per tile would stall every
		 * iteration: the entry two ahead loads under this one */
		if (use_list) {
			e0 = e1;
			e1 = it + 2 < cnt ? WALK_AT(it + 2) : 0;
		}
		if (col && it < tot) {
			nd = 1;
#if ATTN_HAS_COLS
			/* most column tiles lie wholly outside the band */
			clr = cols_clear_in(cspan, (it - cnt) * BLOCK_N,
					    BLOCK_N, nc);
#endif
		} else if (it < cnt) {
			if (use_list)
				k0 = ENTRY_K0(e);
			nd = use_list ? wg_need(e, wg, q0 + wg * 64 + off, k0,
						p.radius) : 2;
		}
		/* tile it landed (each thread its own copies), then all */
		cp_async_wait_all();
		fence_proxy_async();
		__syncthreads();
		/* the stages refilled were last read by MMAs waited for
		 * before the barrier above */
		if (it + 1 < tot)
			load_kv(p, it + 1, cnt, nc, use_list ? ENTRY_K0(nx0) :
				(it + 1) * BLOCK_N, kg, vg,
				sk + ((it + 1) & 1) * KV_BYTES,
				sv + ((it + 1) % V_STAGES) * KV_BYTES);
		cp_async_commit();

		if (!lag) {
			if (nd) {
				gemm_s(s, sq, ck, wg);
				/* a clear column tile takes no mask at all */
				if (col && !clr)
					mask_cols(p, st, s, h,
						  (it - cnt) * BLOCK_N, nc,
						  w0 + gr, off);
				else if (!col)
					mask_tile(p, st, s, h, k0, lim_min,
						  nd == 1, w0 + gr + off, off);
				softmax(st, s, pa, p.scale_log2);
				gemm_pv(st, pa,
					sv + (it % V_STAGES) * KV_BYTES);
			}
		} else {
			/* the DENSE pattern only: no list, no columns */
			if (it > 0 && need) {
				mask_tile(p, st, s, h, pk0, lim_min, false,
					  w0 + gr + off, off);
				softmax(st, s, pa, p.scale_log2);
				gemm_pv(st, pa,
					sv + ((it - 1) % V_STAGES) * KV_BYTES);
			}
			if (nd)
				gemm_s(s, sq, ck, wg);
			need = nd;
			pk0 = k0;
		}
	}
	cp_async_wait_all();

	/*
	 * epilogue: normalise and store; padding rows get 0 and -inf.  As
	 * one of SOFT's launches (attn_params.cuh, ATTN_MIX_*), O carries
	 * the branch's share, and the sparse launch adds the (1 - g) A the
	 * dense one left; with the DENSE pattern both lse are the one.
	 */
	u16 *og = (u16 *)p.o + b * p.o_sb + h * p.o_sh;
	const float share = p.mix == ATTN_MIX_DENSE ? 1.f - g :
			    p.mix == ATTN_MIX_SPARSE ? g : 1.f;
	const float nan = __int_as_float(0x7fc00000);

#pragma unroll
	for (int r = 0; r < 2; r++) {
		const int i = w0 + gr + r * 8;
		float ls = quad_sum(st.l[r]);
		bool live = i < lq;
		float inv = ls > 0.f && live ? share / ls : 0.f;

		if (i >= p.Nq)
			continue;
#pragma unroll
		for (int n = 0; n < NT_O; n++) {
			u32 *at = (u32 *)(og + (i64)i * p.o_sn + n * 8 + 2 * tg);
			float o0 = st.acc[n][2 * r] * inv;
			float o1 = st.acc[n][2 * r + 1] * inv;

			if (p.mix == ATTN_MIX_SPARSE) {
				u32 w = *at;

				o0 += unpack_lo(w);
				o1 += unpack_hi(w);
			}
			*at = pack2(o0, o1);
		}
		if (tg == 0) {
			i64 lo = b * p.l_sb + h * p.l_sh + i;
			float v = ls > 0.f && live ?
				  (st.m[r] + fast_log2(ls)) * ATTN_LN2 :
				  ATTN_NEG_INF;
			float ov = ATTN_NEG_INF;
			float *mine = sp ? p.lse_s : p.lse_d;
			float *other = sp ? p.lse_d : p.lse_s;

			if (GATE_MODE == ATTN_G_HARD && live && st.lim[r])
				ov = nan;	/* not computed, as the reference */
			else if (p.mix == ATTN_MIX_SAME)
				ov = v;
			if (mine)
				mine[lo] = v;
			if (other)
				other[lo] = ov;
		}
	}
}

#if PATTERN == ATTN_P_CLUSTERED
#include "attn_bucket_sm90.cuh"
#endif

extern "C" __global__ void __launch_bounds__(ATTN_THREADS, MIN_BLOCKS)
asam_attn_fwd_sm90_kernel(const attn_fwd_params p)
{
	extern __shared__ __align__(1024) unsigned char attn_smem[];
	const int b = blockIdx.z, h = blockIdx.y;
	const int qt = p.reverse ? p.nqt - 1 - blockIdx.x : blockIdx.x;
	/* the dynamic window is 16-byte aligned: round up to 1024 */
	const u32 base = (smem_u32(attn_smem) + 1023) & ~1023u;
	float g = 0.f;

#if PATTERN == ATTN_P_CLUSTERED
	/*
	 * A block per tile of the cluster table (blockIdx.x); HARD sends a
	 * head with g < tau down the dense walk instead, over ordinary
	 * query tiles (the table has at least as many).
	 */
	if (GATE_MODE == ATTN_G_HARD) {
		g = p.gate[b * p.g_sb + h * p.g_sh];
		if (g < p.hard_tau) {
			if (blockIdx.x < p.nqt)
				fwd_tile<false>(p, b, h, blockIdx.x, g, base);
			return;
		}
	}
	bucket_tile(p, b, h, blockIdx.x, base);
	return;
#endif

	if (GATE_MODE == ATTN_G_HARD || p.mix == ATTN_MIX_DENSE ||
	    p.mix == ATTN_MIX_SPARSE)
		g = p.gate[b * p.g_sb + h * p.g_sh];
	/*
	 * HARD: a copy of the walk for each branch, chosen per (b, h), so
	 * that neither carries the other's registers and tests (one copy
	 * with the branch a run-time value ran LOCAL 8 % slower than the
	 * SPARSE gate with every head sparse)
	 */
	if (GATE_MODE == ATTN_G_HARD) {
		if (g >= p.hard_tau)
			fwd_tile<true>(p, b, h, qt, g, base);
		else
			fwd_tile<false>(p, b, h, qt, g, base);
	} else {
		fwd_tile<GATE_MODE == ATTN_G_SPARSE>(p, b, h, qt, g, base);
	}
}
