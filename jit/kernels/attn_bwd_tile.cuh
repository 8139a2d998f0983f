/* SPDX-License-Identifier: MIT */
/*
 * Pieces every tile backward shares (attn_bwd.cu's kernels and the
 * Hopper one, attn_bwd_sm90.cu): probabilities from the log-sum-exps, the
 * transposed dS tile of a key block's walk and the row statistics it
 * reads, a key block's walk and its stores, fp32 reductions into global
 * memory.  The includer has attn_common.cuh and defines NT_S (the
 * tile's 8-query column blocks), NT_O (the head dim's 8-column blocks)
 * and BLOCK_M (the query tile).
 */
#ifndef ASAM_ATTN_BWD_TILE_CUH
#define ASAM_ATTN_BWD_TILE_CUH

static __device__ __forceinline__ float p_of(float s2, float L2)
{
	/* L2 = lse * log2(e); an empty row (-inf) has no probabilities */
	return L2 == ATTN_NEG_INF || s2 == ATTN_NEG_INF ? 0.f :
	       fast_exp2(s2 - L2);
}


static __device__ __forceinline__ void store_rows(u16 *g, i64 ld, int row0,
						  int n, float (*acc)[4],
						  float mul, int lane, int live)
{
	const int gr = lane >> 2, tg = lane & 3;

#pragma unroll
	for (int r = 0; r < 2; r++) {
		int i = row0 + gr + r * 8;
		float m = i < live ? mul : 0.f;

		if (i >= n)
			continue;
#pragma unroll
		for (int c = 0; c < NT_O; c++)
			*(u32 *)(g + (i64)i * ld + c * 8 + 2 * tg) =
				pack2(acc[c][2 * r] * m, acc[c][2 * r + 1] * m);
	}
}


/* a key block's dK (times sigma) and dV: the warp's 16 rows from @j0 */
static __device__ __forceinline__ void store_dkdv(const attn_bwd_params &p,
						  int b, int hk, int j0,
						  float (*dk)[4],
						  float (*dv)[4], int lane)
{
	store_rows((u16 *)p.dk + b * p.dk_sb + hk * p.dk_sh, p.dk_sn, j0,
		   p.Nk, dk, p.scale, lane, p.Nk);
	store_rows((u16 *)p.dv + b * p.dv_sb + hk * p.dv_sh, p.dv_sn, j0,
		   p.Nk, dv, 1.f, lane, p.Nk);
}

/*
 * Key rows @j (the warp's row gr) and @j8 (row gr + 8), -1 for none, of
 * the 16-bit slice @g += acc * mul: STRIDED's and HIERARCHICAL's column
 * keys add their sums to the rows the band's kernel wrote.
 */
static __device__ __forceinline__ void cols_add_rows(u16 *g, i64 ld, int j,
						     int j8, float (*acc)[4],
						     float mul, int lane)
{
	const int tg = lane & 3;

#pragma unroll
	for (int r = 0; r < 2; r++) {
		int jr = r ? j8 : j;

		if (jr < 0)
			continue;
#pragma unroll
		for (int c = 0; c < NT_O; c++) {
			u32 *at = (u32 *)(g + (i64)jr * ld + c * 8 + 2 * tg);
			u32 w = *at;

			*at = pack2(unpack_lo(w) + acc[c][2 * r] * mul,
				    unpack_hi(w) + acc[c][2 * r + 1] * mul);
		}
	}
}

/*
 * Key tile @k0's walk over the query tiles: [*lo, *hi) (causal: the rows
 * before its diagonal never see it; keys past len_k get no gradient),
 * and its dK, dV accumulators cleared.
 */
static __device__ __forceinline__ void kv_begin(int k0, int off, int lq,
						int lk, int *lo, int *hi,
						float (*dk)[4],
						float (*dv)[4])
{
	*lo = 0;
	*hi = (lq + BLOCK_M - 1) / BLOCK_M;
#if CAUSAL
	*lo = k0 - off > 0 ? (k0 - off) / BLOCK_M : 0;
#endif
	if (k0 >= lk)
		*hi = 0;
#pragma unroll
	for (int n = 0; n < NT_O; n++) {
		dk[n][0] = dk[n][1] = dk[n][2] = dk[n][3] = 0.f;
		dv[n][0] = dv[n][1] = dv[n][2] = dv[n][3] = 0.f;
	}
}


/*
 * The transposed tile (rows: 16 keys from @j0, columns: 64 queries from
 * @q0) of the dK/dV kernels: S^T in @st becomes the weighted probabilities
 * sum_x w_x P_x, dP^T in @dpt becomes dS^T.  @sL: the tile's log2 lse of
 * both branches and row sums D, [4][BLOCK_M].  COLS: the rows are column
 * entries from @j0 of STRIDED's or HIERARCHICAL's set (attn_cols.cuh),
 * whose pairs beyond the band a partial tile takes (cols_take).  MASK:
 * 2, the entry @e says whether the tile is whole; 0 or 1, the caller
 * knows it is (1: partial), and the other path is not compiled in (the
 * column walk's pattern test, kept predicated on every pair of a whole
 * tile and thrown away: the walk ran 1.99 ms with it, 1.50 without).
 * @rows (BLOCK_M tokens, one a column) and @keys (@nkeys tokens by slot,
 * j0 a slot) gather both sides: CLUSTERED's bucket walk, whose bucket is
 * the whole predicate (MASK 0).
 */
template <bool COLS = false, int MASK = 2>
static __device__ __forceinline__ void ds_tile(const attn_bwd_params &p,
					       float (*st)[4],
					       float (*dpt)[4],
					       const float *sL, int h, int q0,
					       int j0, int lq, int lk, int off,
					       bool in_s, int e, float wd,
					       float ws, int lane,
					       const int *rows = nullptr,
					       const int *keys = nullptr,
					       int nkeys = 0)
{
	const int gr = lane >> 2, tg = lane & 3;
	const bool full = MASK == 0 || (MASK == 2 && (e & ATTN_E_FULL));
	int jk[2];
	bool jl[2];
	u32 bw[2];

	/*
	 * This thread's two keys, once a tile (COLS: the entries' keys, -1
	 * past the set), whether they are live, and HIERARCHICAL's band
	 * words for them
	 */
#pragma unroll
	for (int r = 0; r < 2; r++) {
		jk[r] = j0 + gr + r * 8;
		if (COLS)
			jk[r] = jk[r] < p.ncol ? col_key(p, jk[r]) : -1;
		if (keys)	/* gathered keys: slot -> token, -1 past @nkeys */
			jk[r] = jk[r] < nkeys ? keys[jk[r]] : -1;
		jl[r] = (unsigned)jk[r] < (unsigned)lk;
		bw[r] = COLS || full ? 0 : cols_band_word(p, h, jk[r]);
	}

#pragma unroll
	for (int n = 0; n < NT_S; n++) {
#pragma unroll
		for (int x = 0; x < 4; x++) {
			int c = n * 8 + 2 * tg + (x & 1);
			/* gathered rows: each column's token (>= lq: none) */
			int i = rows ? rows[c] : q0 + c;
			int j = jk[x >> 1];
			bool ok = i < lq && jl[x >> 1];
			float s2, pc = 0.f, ds = 0.f;

#if CAUSAL
			ok = ok && j <= i + off;
#endif
			s2 = ok ? st[n][x] * p.scale_log2 : ATTN_NEG_INF;
			if (GATE_MODE != ATTN_G_SPARSE) {
				float pd = p_of(s2, sL[BLOCK_M + c]);

				pc += wd * pd;
				ds += wd * pd *
				      (dpt[n][x] - sL[3 * BLOCK_M + c]);
			}
			if (in_s && (full ||
				     (COLS ? cols_take(p, h, i, j, lk, off) :
				      pat_allows(e, i, j, q0, off, p.radius) &&
				      cols_band_w(p, h, bw[x >> 1],
						  i + off - j, j)))) {
				float ps = p_of(s2, sL[c]);

				pc += ws * ps;
				ds += ws * ps *
				      (dpt[n][x] - sL[2 * BLOCK_M + c]);
			}
			st[n][x] = pc;
			dpt[n][x] = ds;
		}
	}
}


/* row @i's log2 lse of both branches and row sums D: v[0 .. 3] */
static __device__ __forceinline__ void bwd_rowstats(const attn_bwd_params &p,
						   int b, int h, int i,
						   float *v)
{
	i64 lo = b * p.l_sb + h * p.l_sh + i;
	i64 at = ((i64)b * p.Hq + h) * p.Nq + i;
	bool ok = i < p.Nq;

	v[0] = ok && p.lse_s ? p.lse_s[lo] * ATTN_LOG2E : ATTN_NEG_INF;
	v[1] = ok && p.lse_d ? p.lse_d[lo] * ATTN_LOG2E : ATTN_NEG_INF;
	v[2] = ok && p.dsum_s ? p.dsum_s[at] : 0.f;
	v[3] = ok && p.dsum_d ? p.dsum_d[at] : 0.f;
}


/* *g += x, g[1] += y: one vector reduction where sm_90 has it */
static __device__ __forceinline__ void red_add_f32x2(float *g, float x,
						     float y)
{
#if __CUDA_ARCH__ >= 900
	asm volatile("red.global.add.v2.f32 [%0], {%1, %2};\n"
		     :: "l"(g), "f"(x), "f"(y) : "memory");
#else
	asm volatile("red.global.add.f32 [%0], %1;\n"
		     :: "l"(g), "f"(x) : "memory");
	asm volatile("red.global.add.f32 [%0], %1;\n"
		     :: "l"(g + 1), "f"(y) : "memory");
#endif
}

/* g[0 .. 3] += v: 16-byte aligned; one vector reduction on sm_90 */
static __device__ __forceinline__ void red_add_f32x4(float *g, float a,
						     float b, float c, float d)
{
#if __CUDA_ARCH__ >= 900
	asm volatile("red.global.add.v4.f32 [%0], {%1, %2, %3, %4};\n"
		     :: "l"(g), "f"(a), "f"(b), "f"(c), "f"(d) : "memory");
#else
	red_add_f32x2(g, a, b);
	red_add_f32x2(g + 2, c, d);
#endif
}


/*
 * Add a warp's 16 rows x NB * 8 columns of accumulator fragments (rows gr
 * and gr + 8) to the fp32 rows of @g from row @r0 (@ld floats apart), @nr
 * rows live: lane pairs (tg, tg ^ 1) trade halves, so the even lane adds
 * row gr and the odd one row gr + 8, four adjacent columns each, as one
 * 16-byte reduction.
 */
template <int NB>
static __device__ __forceinline__ void red_frag_rows(float *g, i64 ld, int r0,
						     int nr, float (*acc)[4],
						     int lane,
						     const int *rows = nullptr)
{
	const int tg = lane & 3;
	const bool odd = tg & 1;
	/* @rows: the warp's 16 rows by index (gathered rows; >= nr: none) */
	const int i = rows ? rows[(lane >> 2) + (odd ? 8 : 0)] :
		      r0 + (lane >> 2) + (odd ? 8 : 0);
	float *row = g + (i64)i * ld + 2 * (tg & 2);

#pragma unroll
	for (int n = 0; n < NB; n++) {
		float x = odd ? acc[n][0] : acc[n][2];
		float y = odd ? acc[n][1] : acc[n][3];
		float rx = __shfl_xor_sync(0xffffffffu, x, 1);
		float ry = __shfl_xor_sync(0xffffffffu, y, 1);

		if (i >= nr)
			continue;
		if (odd)
			red_add_f32x4(row + n * 8, rx, ry, acc[n][2],
				      acc[n][3]);
		else
			red_add_f32x4(row + n * 8, acc[n][0], acc[n][1], rx,
				      ry);
	}
}

#endif
