/* SPDX-License-Identifier: MIT */
/*
 * STRIDED and HIERARCHICAL on the CUDA kernels: the band radius, the
 * per-head vote tables and the sorted column set of the "virtual key
 * axis" (jit/kernels/attn_cols.cuh).  attn_cols_build() is pure host code
 * (tested without a GPU); attn_cols_get() builds, uploads and caches it
 * per (device, pattern, weights, N, tile) with the band's tile lists.
 */
#ifndef ASAM_CUDA_ATTN_COLS_H
#define ASAM_CUDA_ATTN_COLS_H

#include <stdbool.h>
#include <stdint.h>

#include <internal/problem.h>

#define ATTN_COLS_MAXS	8	/* scale terms (ASAM_MAX_SCALES) */
#define ATTN_COLS_TBL	8	/* 32-bit words of a head's vote table */

struct attn_cols {
	int R;			/* band radius: pairs with delta <= R */
	int ns;			/* scale terms */
	int s[ATTN_COLS_MAXS];	/* term k: delta <= r[k] or j mod s[k] == 0 */
	int r[ATTN_COLS_MAXS];
	int Hq;
	uint32_t *tbl;		/* [Hq][ATTN_COLS_TBL]: bit m = terms m pass */
	int ncol;		/* keys < Nk some head takes beyond the band */
	int *col;		/* [ncol], sorted */
	bool vote;		/* some head takes fewer columns than ncol */
	int step;		/* > 0: col[c] == c * step (kernels compute it) */
	/*
	 * HIERARCHICAL's band by key residue, where R < 32 and the scales'
	 * least common multiple L <= ATTN_COLS_MAXL (else L = 0): bit delta
	 * of band[h * L + j mod L] is P_h(i, j) for |i + Nk - Nq - j| =
	 * delta <= R (term k's j mod s_k is (j mod L) mod s_k)
	 */
	int L;
	uint32_t *band;
};

#define ATTN_COLS_MAXL	1024

/* -EINVAL for a pattern without columns or bad parameters, -ENOMEM */
int attn_cols_build(struct attn_cols *c, const struct asam_pat *pat, int Hq,
		    int Nk);
void attn_cols_free(struct attn_cols *c);
/* the kernels' predicate: P_h(i, j) for a pair at distance @delta */
bool attn_cols_allows(const struct attn_cols *c, int h, int64_t delta,
		      int64_t j);

static inline bool attn_cols_kind(enum asam_pattern_kind k)
{
	return k == ASAM_PATTERN_STRIDED || k == ASAM_PATTERN_HIERARCHICAL;
}

#ifdef ASAM_CUDA_ATTN_INT_H
/* what the kernels get: device pointers and the scalars */
struct attn_cols_dev {
	const int *off, *list;	/* band tile lists (one set for all heads) */
	const int *col;
	const unsigned int *tbl;
	int ncol, vote, R, ns, s[ATTN_COLS_MAXS], r[ATTN_COLS_MAXS];
	int step;
	const unsigned int *band;
	int L;
};

int attn_cols_get(struct asam_cuda_device *d, const struct asam_problem *p,
		  int bm, int transposed, struct attn_cols_dev *out);
void attn_cols_fill_fwd(struct attn_fwd_params *a,
			const struct attn_cols_dev *c);
void attn_cols_fill_bwd(struct attn_bwd_params *a,
			const struct attn_cols_dev *c);
#endif

#endif
