/* SPDX-License-Identifier: MIT */
/*
 * The argument blocks of the attention kernels, passed by value.  This
 * header is read both by NVRTC (device side) and by the host C code in
 * arch/cuda/, so it uses nothing but C's own scalar and pointer types:
 * the two sides must agree on every offset.  Strides count elements.
 */
#ifndef ASAM_ATTN_PARAMS_CUH
#define ASAM_ATTN_PARAMS_CUH

/*
 * A key-tile list entry: the tile index, and whether the pattern allows
 * every (query, key) pair of the tile ("full": no predicate to evaluate).
 * RANDOM keeps, per 64-query group of the tile, whether that group takes
 * the key block; a full entry is taken by every group.
 */
#define ATTN_E_TILE(e)		((e) & 0xffffff)
#define ATTN_E_FULL		(1 << 24)
#define ATTN_E_GROUPS_SHIFT	25
#define ATTN_E_GROUP(e, g)	(((e) >> (ATTN_E_GROUPS_SHIFT + (g))) & 1)

/*
 * SOFT forward in two launches of the one-state kernels, so that each
 * keeps the register budget of the fast tile shape: a DENSE launch writes
 * O = (1 - g) A and lse_d, then a SPARSE launch over the pattern's tiles
 * adds g S and writes lse_s.  With the DENSE pattern S = A: one DENSE
 * launch writes O = A and both log-sum-exps.
 */
#define ATTN_MIX_NONE		0
#define ATTN_MIX_DENSE		1
#define ATTN_MIX_SPARSE		2
#define ATTN_MIX_SAME		3

struct attn_fwd_params {
	const void *q, *k, *v;		/* [B, H, N, d] 16-bit elements */
	void *o;
	float *lse_s, *lse_d;		/* [B, Hq, Nq] or NULL */
	const float *gate;		/* [B, Hq] or NULL */
	const int *len_q, *len_k;	/* [B] or NULL */
	const int *list_off;		/* [Hp * nqt + 1] offsets into list */
	const int *list;		/* entries, sorted by key tile */

	long long q_sb, q_sh, q_sn;
	long long k_sb, k_sh, k_sn;
	long long v_sb, v_sh, v_sn;
	long long o_sb, o_sh, o_sn;
	long long l_sb, l_sh;		/* both lse tensors; stride 1 on n */
	long long g_sb, g_sh;
	long long lq_s, lk_s;

	int B, Hq, Hkv, Nq, Nk;
	int nqt;			/* query tiles */
	int list_per_head;		/* 1: lists differ per query head */
	int radius;			/* LOCAL */
	float scale_log2;		/* sigma * log2(e) */
	float hard_tau;
	int reverse;			/* longest tiles first (causal) */
	int mix;			/* ATTN_MIX_*: SOFT as two passes */

	/* backward's preprocess (BWD_PRE): row dots instead of O */
	const void *d_o;
	long long do_sb, do_sh, do_sn;
	float *dsum_s, *dsum_d;		/* [B, Hq, Nq] <dO_i, S_i>, <dO_i, A_i> */

	/*
	 * STRIDED, HIERARCHICAL (arch/cuda/attn_cols.c): the band's tiles
	 * come from the lists (radius holds the band radius R), the keys
	 * the pattern allows beyond R are the sorted column set, attended
	 * as gathered 64-key tiles.  The per-head vote is a truth table
	 * over which scale terms hold (STRIDED: one term, delta <= L or
	 * j mod s == 0).
	 */
	const int *col;			/* [ncol] column keys, sorted */
	const unsigned int *col_tbl;	/* [Hq][8] 256-bit vote tables */
	int ncol;
	int col_vote;			/* 1: a head may drop a column */
	int col_ns;			/* scale terms */
	int col_s[8], col_r[8];		/* period and radius of each term */
	int col_step;			/* > 0: col[c] == c * col_step */
	/*
	 * HIERARCHICAL's band by key residue: bit delta of word
	 * [h][j mod col_L] says whether head h takes the pair (i, j) at
	 * |delta| <= R; col_L 0: no table, vote per pair
	 */
	const unsigned int *col_band;
	int col_L;

	/* CLUSTERED (attn_bucket_fwd.cuh): per (b, h) sortings by cluster */
	const int *cl_kcl;		/* [B, Hq, Nk] cluster of each key */
	const int *cl_qperm, *cl_kperm;	/* [B, Hq, N] sorted slot -> token */
	const int *cl_qoff, *cl_koff;	/* [B, Hq, C + 1] slot offsets */
	const int *cl_qtiles;		/* [B, Hq, cl_ntq][2] (slot, cluster) */
	const int *cl_nqtiles;		/* [B, Hq] tiles in use */
	int cl_C, cl_ntq;
	const unsigned *cl_mask;	/* SOFT cluster mode: [B, Hq, Nq, mw] */
	int cl_mw, cl_pad;
};

/*
 * Backward: dQ per (b, h, query tile) over the forward's lists, dK and dV
 * per (b, kv head, key tile) over the transposed lists (entries hold a
 * query tile), summing the query heads of a GQA group in registers: no
 * atomics anywhere, so results are bit-identical run to run.  The
 * non-deterministic kernels (attn_bwd_nd.cuh) add dQ into dq_acc instead.
 */
struct attn_bwd_params {
	const void *q, *k, *v, *d_o;
	void *dq, *dk, *dv;
	const float *lse_s, *lse_d;	/* [B, Hq, Nq], strides l_sb, l_sh */
	const float *dsum_s, *dsum_d;	/* [B, Hq, Nq] contiguous */
	const float *gate;
	float *dgate;
	const int *len_q, *len_k;
	const int *list_off, *list;	/* per (hp, query tile) */
	const int *tlist_off, *tlist;	/* per (hp, key tile) */

	long long q_sb, q_sh, q_sn;
	long long k_sb, k_sh, k_sn;
	long long v_sb, v_sh, v_sn;
	long long do_sb, do_sh, do_sn;
	long long dq_sb, dq_sh, dq_sn;
	long long dk_sb, dk_sh, dk_sn;
	long long dv_sb, dv_sh, dv_sn;
	long long l_sb, l_sh;
	long long g_sb, g_sh;
	long long dg_sb, dg_sh;
	long long lq_s, lk_s;

	int B, Hq, Hkv, Nq, Nk;
	int nqt, nkt;			/* 64-row query tiles, 64-key tiles */
	int list_per_head;
	int radius;
	float scale_log2;		/* sigma * log2(e) */
	float scale;			/* sigma */

	/*
	 * STRIDED, HIERARCHICAL (arch/cuda/attn_cols.c): the band's tiles
	 * come from the lists (radius holds the band radius R), the keys
	 * the pattern allows beyond R are the sorted column set, attended
	 * as gathered 64-key tiles.  The per-head vote is a truth table
	 * over which scale terms hold (STRIDED: one term, delta <= L or
	 * j mod s == 0).
	 */
	const int *col;			/* [ncol] column keys, sorted */
	const unsigned int *col_tbl;	/* [Hq][8] 256-bit vote tables */
	int ncol;
	int col_vote;			/* 1: a head may drop a column */
	int col_ns;			/* scale terms */
	int col_s[8], col_r[8];		/* period and radius of each term */
	int col_step;			/* > 0: col[c] == c * col_step */
	/*
	 * HIERARCHICAL's band by key residue: bit delta of word
	 * [h][j mod col_L] says whether head h takes the pair (i, j) at
	 * |delta| <= R; col_L 0: no table, vote per pair
	 */
	const unsigned int *col_band;
	int col_L;

	/* CLUSTERED (attn_bucket_bwd.cuh): as in attn_fwd_params */
	const int *cl_qcl, *cl_kcl;	/* [B, Hq, N] cluster of each token */
	const int *cl_qperm, *cl_kperm;
	const int *cl_qoff, *cl_koff;
	const int *cl_qtiles, *cl_ktiles;	/* 64-slot tiles */
	const int *cl_nqtiles, *cl_nktiles;
	float *cl_part_k, *cl_part_v;	/* GQA: [B, Hq, Nk, d] fp32 or NULL */
	int cl_C, cl_ntq, cl_ntk, cl_pad;
	const unsigned *cl_mask;	/* as in attn_fwd_params */
	int cl_mw, cl_pad2;

	/* non-deterministic backward (attn_bwd_nd.cuh): dQ in fp32 */
	float *dq_acc;			/* [B, Hq, Nq, d] contiguous */
};

/*
 * The cluster family (attn_clus.cu): assignment, counting sort, online
 * k-means, the GQA sum of per-query-head key gradients.  Index 0 is the
 * query side, 1 the key side.
 */
struct attn_clus_params {
	const void *x[2];		/* q, k [B, H, N, d] (DTYPE) */
	long long x_sb[2], x_sh[2], x_sn[2];
	void *mu;			/* [Hq, C, d] centroids (CDT) */
	long long mu_sh, mu_sc, mu_se;
	int *cl[2];			/* [B, Hq, N] */
	int *perm[2];			/* [B, Hq, N] */
	int *off[2];			/* [B, Hq, C + 1] */
	int *tiles[2];			/* [B, Hq, ntiles][2] */
	int *ntile[2];			/* [B, Hq] */
	double *nrm[2];			/* [B, Hq, N] |x| (update) or NULL */
	void *cent;			/* [Hq] unit centroids, fp64 norms */
	long long cent_stride;		/* bytes a head, a multiple of 16 */
	int N[2], Hx[2], tile[2], ntiles[2];
	int B, Hq, C, side;
	float decay;
	int pad;

	/* GQA reduction: dst[b, hk, j] = sum over the group of part */
	const float *part;		/* [B, Hq, Nk, d] */
	void *dst;
	long long d_sb, d_sh, d_sn;
	int Hkv, Nk;

	/* SOFT cluster mode: a, b = softmax_c(cos / |tau|), the pair mask */
	double *soft[2];		/* [B, Hq, N, C] */
	unsigned *mask;			/* [B, Hq, Nq, mw] bit j % 32 of j / 32 */
	int mw;
	float temp, thresh;
};

#endif
