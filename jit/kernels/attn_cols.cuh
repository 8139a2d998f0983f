/* SPDX-License-Identifier: MIT */
/*
 * STRIDED and HIERARCHICAL: the predicates of the "virtual key axis".
 *
 * Both patterns allow a band (delta <= R: STRIDED's L, HIERARCHICAL's
 * largest floor(s_k / 4)) and, beyond it, key columns that do not depend
 * on the query: every key j with j mod s == 0 (STRIDED), or whose vote
 * sum_k alpha_hk [j mod s_k == 0] passes 0.5 (HIERARCHICAL).  The band is
 * walked as LOCAL's tile list with radius R; the columns beyond R are a
 * sorted key set gathered 64 keys at a time (attn_cols_fwd.cuh,
 * attn_cols_bwd.cuh).  A pair is counted by exactly one of the two:
 * the band takes delta <= R, the column tiles delta > R.
 *
 * The vote runs on a truth table the host fills with the reference's own
 * sum (asam_pat_hier_allowed): bit m of head h's 256 bits says whether
 * the terms in mask m together pass, so GPU and reference agree on ties.
 */
#ifndef ASAM_ATTN_COLS_CUH
#define ASAM_ATTN_COLS_CUH

#if PATTERN == ATTN_P_STRIDED || PATTERN == ATTN_P_HIERARCHICAL
#define ATTN_HAS_COLS 1
#else
#define ATTN_HAS_COLS 0
#endif

/* j mod s == 0 for j >= 0; the usual power-of-two periods skip the divide */
static __device__ __forceinline__ bool cols_on(int j, int s)
{
	return (s & (s - 1)) ? j % s == 0 : (j & (s - 1)) == 0;
}

/* the full pattern predicate of head h for a pair at distance delta */
template <class P>
static __device__ __forceinline__ bool cols_allows(const P &p, int h,
						   int delta, int j)
{
	int m = 0;

	/*
	 * Not unrolled: a band tile asks for 32 pairs a thread, and eight
	 * unrolled terms each made HIERARCHICAL's kernel miss the
	 * instruction cache (ncu: ~45 % of its stalls waited on fetch).
	 */
#pragma unroll 1
	for (int k = 0; k < p.col_ns; k++) {
		if (delta <= p.col_r[k] || cols_on(j, p.col_s[k]))
			m |= 1 << k;
	}
	return (__ldg(p.col_tbl + h * 8 + (m >> 5)) >> (m & 31)) & 1;
}

/*
 * HIERARCHICAL's band word of key @j for head @h (the host's table by
 * residue: bit delta says whether the pair at |delta| <= R passes), or 0
 * where there is none.  A kernel reads it once a key, not once a pair.
 */
template <class P>
static __device__ __forceinline__ u32 cols_band_word(const P &p, int h, int j)
{
#if PATTERN == ATTN_P_HIERARCHICAL
	const int L = p.col_L;

	if (!L)
		return 0;
	return __ldg(p.col_band + h * L + ((L & (L - 1)) ? j % L :
					   j & (L - 1)));
#else
	return 0;
#endif
}

/*
 * Inside a band tile, on top of the radius test of pat_allows() (|@dl|
 * <= R, @dl = i + Nk - Nq - j): STRIDED allows the whole band;
 * HIERARCHICAL takes bit |dl| of key @j's band word @bw, or votes.
 */
template <class P>
static __device__ __forceinline__ bool cols_band_w(const P &p, int h, u32 bw,
						   int dl, int j)
{
#if PATTERN == ATTN_P_HIERARCHICAL
	dl = dl < 0 ? -dl : dl;
	return p.col_L ? (bw >> dl) & 1 : cols_allows(p, h, dl, j);
#else
	return true;
#endif
}

/* the same for one pair (i, j) */
template <class P>
static __device__ __forceinline__ bool cols_band(const P &p, int h, int i,
						 int j, int off)
{
	return cols_band_w(p, h, cols_band_word(p, h, j), i + off - j, j);
}

/*
 * Column @c of the set (c < ncol): by arithmetic when the host found the
 * set to be 0, step, 2 step, ... (STRIDED, a uniform HIERARCHICAL), so no
 * load waits in front of a gather or a mask.
 */
template <class P>
static __device__ __forceinline__ int col_key(const P &p, int c)
{
	return p.col_step ? c * p.col_step : __ldg(p.col + c);
}

/*
 * How many columns lie below key @lim (the set is sorted).  A block
 * asks before its first column load: a binary search is ~10 dependent
 * loads (a few microseconds on a block of ~30), so the common answers
 * come first: by arithmetic, or the whole set when its last key is under
 * the limit (no causal mask, no shorter length).
 */
template <class P>
static __device__ __forceinline__ int cols_below(const P &p, int lim)
{
	int lo = 0, hi = p.ncol;

	if (lim <= 0 || hi == 0)
		return 0;
	if (p.col_step) {
		int n = (lim - 1) / p.col_step + 1;

		return n < hi ? n : hi;
	}
	if (__ldg(p.col + hi - 1) < lim)
		return hi;
	while (lo < hi) {
		int m = (lo + hi) >> 1;

		if (__ldg(p.col + m) < lim)
			lo = m + 1;
		else
			hi = m;
	}
	return lo;
}

/*
 * The K or V rows of column entries [c0, c0 + ROWS) into an mma.sync
 * tile (zeros past @nc): rows step * ld apart where the set has a step.
 */
template <int ROWS, int THREADS, class P>
static __device__ __forceinline__ void cols_load(const P &p, u16 *dst,
						 const u16 *src, i64 ld,
						 int c0, int nc)
{
	if (p.col_step)
		load_tile<ROWS, THREADS>(dst, src, ld * p.col_step, c0, nc);
	else
		load_rows_idx<ROWS, THREADS>(dst, src, ld, p.col + c0,
					     nc - c0);
}

/*
 * Whether no pair of the column tile of entries [c0, c0 + n) needs a
 * mask for rows whose diagonal keys (i + Nk - Nq) lie in [d0, d1]: the
 * tile is whole, its keys are all under @lim (the rows' smallest key
 * limit) and beyond every row's band, and no head votes.  The keys are
 * sorted, so the first and the last decide.
 */
template <class P>
static __device__ __forceinline__ bool cols_clear(const P &p, int c0, int n,
						  int nc, int d0, int d1,
						  int lim)
{
	int jlo, jhi;

	if (p.col_vote || c0 + n > nc)
		return false;
	jlo = col_key(p, c0);
	jhi = col_key(p, c0 + n - 1);
	return jhi < lim && (jlo > d1 + p.radius || jhi < d0 - p.radius);
}

/*
 * cols_clear() for every tile of a walk at once: the keys are sorted, so
 * "the last key under @lim", "the first beyond d1 + R" and "the last
 * before d0 - R" are entry counts, found once (by arithmetic where the
 * set has a step) instead of two keys formed or loaded a tile.
 */
struct cols_span {
	int lim;	/* entries with a key under the rows' smallest limit */
	int lo;		/* entries with a key before d0 - R */
	int hi;		/* entries with a key at or before d1 + R */
	bool vote;
};

template <class P>
static __device__ __forceinline__ cols_span cols_span_of(const P &p, int d0,
							 int d1, int lim)
{
	cols_span c;

	c.lim = cols_below(p, lim);
	c.lo = cols_below(p, d0 - p.radius);
	c.hi = cols_below(p, d1 + p.radius + 1);
	c.vote = p.col_vote;
	return c;
}

/* cols_clear() of the tile of entries [c0, c0 + n) from its walk's span */
static __device__ __forceinline__ bool cols_clear_in(const cols_span &c,
						     int c0, int n, int nc)
{
	return !c.vote && c0 + n <= nc && c0 + n <= c.lim &&
	       (c0 >= c.hi || c0 + n <= c.lo);
}

/*
 * Whether row i (key limit lim) takes column key j in a column tile:
 * beyond the band, under the mask, and (heads that differ) by its vote.
 */
template <class P>
static __device__ __forceinline__ bool cols_take(const P &p, int h, int i,
						 int j, int lim, int off)
{
	int dl = i + off - j;

	if (j < 0 || j >= lim)
		return false;
	dl = dl < 0 ? -dl : dl;
	if (dl <= p.radius)
		return false;
	return !p.col_vote || cols_allows(p, h, dl, j);
}

#endif
