// SPDX-License-Identifier: MIT
/*
 * STRIDED and HIERARCHICAL for the CUDA kernels: the pattern as scale
 * terms, a per-head vote table, and the column set (see attn_cols.h and
 * jit/kernels/attn_cols.cuh).
 *
 * Both patterns are "term k holds when delta <= r_k or j mod s_k == 0;
 * the pair is allowed when the terms that hold pass the head's vote".
 * STRIDED is one term (r = L, s = stride) that passes alone.  HIERARCHICAL
 * has a term per scale (r = floor(s_k / 4)) and passes when the weights of
 * the holding terms, summed in double in scale order as the reference
 * does, exceed 0.5.  Beyond R = max r_k no radius test holds, so whether a
 * key is allowed there depends on the key alone: those keys are the
 * columns.
 */
#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include <internal/err.h>

#include "attn_cols.h"

void attn_cols_free(struct attn_cols *c)
{
	free(c->tbl);
	free(c->col);
	free(c->band);
	c->tbl = NULL;
	c->col = NULL;
	c->band = NULL;
}

static bool tbl_bit(const uint32_t *t, int m)
{
	return (t[m >> 5] >> (m & 31)) & 1;
}

/* which terms hold for a pair at distance @delta */
static int terms(const struct attn_cols *c, int64_t delta, int64_t j)
{
	int k, m = 0;

	for (k = 0; k < c->ns; k++)
		if (delta <= c->r[k] || j % c->s[k] == 0)
			m |= 1 << k;
	return m;
}

bool attn_cols_allows(const struct attn_cols *c, int h, int64_t delta,
		      int64_t j)
{
	return tbl_bit(c->tbl + (size_t)h * ATTN_COLS_TBL,
		       terms(c, delta, j));
}

static int fill_terms(struct attn_cols *c, const struct asam_pat *pat)
{
	int k;

	if (pat->kind == ASAM_PATTERN_STRIDED) {
		if (pat->stride < 1 || pat->radius < 0)
			return asam_err(-EINVAL, "pattern: STRIDED stride %d, radius %d",
					pat->stride, pat->radius);
		c->ns = 1;
		c->s[0] = pat->stride;
		c->r[0] = pat->radius;
		c->R = pat->radius;
		return 0;
	}
	if (pat->kind != ASAM_PATTERN_HIERARCHICAL)
		return asam_err(-EINVAL, "attn cols: pattern %s has no columns",
				asam_pattern_name(pat->kind));
	if (pat->nscales < 1 || pat->nscales > ATTN_COLS_MAXS)
		return asam_err(-EINVAL, "pattern: %d HIERARCHICAL scales (1 to %d)",
				pat->nscales, ATTN_COLS_MAXS);
	c->ns = pat->nscales;
	c->R = 0;
	for (k = 0; k < c->ns; k++) {
		if (pat->scales[k] < 1)
			return asam_err(-EINVAL, "pattern: HIERARCHICAL scale %d is %d",
					k, pat->scales[k]);
		c->s[k] = pat->scales[k];
		c->r[k] = pat->scales[k] / 4;
		c->R = c->r[k] > c->R ? c->r[k] : c->R;
	}
	return 0;
}

/* head h's table: bit m = the terms in m pass (asam_pat_hier_allowed's sum) */
static void fill_tbl(struct attn_cols *c, const struct asam_pat *pat, int h)
{
	uint32_t *t = c->tbl + (size_t)h * ATTN_COLS_TBL;
	int m, k;

	for (m = 0; m < (1 << c->ns); m++) {
		double sum = 0;
		bool pass;

		if (pat->kind == ASAM_PATTERN_STRIDED) {
			pass = m != 0;
		} else {
			for (k = 0; k < c->ns; k++)
				if (m >> k & 1)
					sum += pat->weights ?
					       pat->weights[h * c->ns + k] :
					       1.0 / c->ns;
			pass = sum > 0.5;
		}
		if (pass)
			t[m >> 5] |= 1u << (m & 31);
	}
}

/*
 * The step of a column set that is every step-th key from 0 (STRIDED's
 * multiples of s, a uniform HIERARCHICAL's multiples of its second
 * scale), else 0: the kernels then find a column, the count under a
 * limit and a tile's key range by arithmetic instead of dependent loads.
 */
static int col_step(const int *col, int n)
{
	int c, step = n > 1 ? col[1] : 0;

	if (n < 2 || col[0] != 0 || step < 1)
		return 0;
	for (c = 2; c < n; c++)
		if (col[c] != (int64_t)c * step)
			return 0;
	return step;
}

static int64_t gcd64(int64_t a, int64_t b)
{
	while (b) {
		int64_t t = a % b;

		a = b;
		b = t;
	}
	return a;
}

/*
 * HIERARCHICAL's band words (attn_cols.h): the vote of every distance
 * up to R for each key residue, so a kernel reads one word a key and
 * shifts it a pair instead of voting a pair.  None where R >= 32 or the
 * scales' period is long: the kernels then vote per pair.
 */
static int fill_band(struct attn_cols *c, const struct asam_pat *pat)
{
	int64_t L = 1;
	int h, rho, dl, k;

	if (pat->kind != ASAM_PATTERN_HIERARCHICAL || c->R >= 32)
		return 0;
	for (k = 0; k < c->ns && L <= ATTN_COLS_MAXL; k++)
		L = L / gcd64(L, c->s[k]) * c->s[k];
	if (L > ATTN_COLS_MAXL)
		return 0;
	c->band = calloc((size_t)c->Hq * L, sizeof(*c->band));
	if (!c->band)
		return -ENOMEM;
	c->L = (int)L;
	for (h = 0; h < c->Hq; h++)
		for (rho = 0; rho < L; rho++)
			for (dl = 0; dl <= c->R; dl++)
				if (attn_cols_allows(c, h, dl, rho))
					c->band[(size_t)h * L + rho] |=
						1u << dl;
	return 0;
}

int attn_cols_build(struct attn_cols *c, const struct asam_pat *pat, int Hq,
		    int Nk)
{
	int h, ret;
	int64_t j;

	memset(c, 0, sizeof(*c));
	ret = fill_terms(c, pat);
	if (ret)
		return ret;
	c->Hq = Hq;
	c->tbl = calloc((size_t)Hq * ATTN_COLS_TBL, sizeof(*c->tbl));
	c->col = malloc(sizeof(int) * ((size_t)Nk + 1));
	if (!c->tbl || !c->col) {
		attn_cols_free(c);
		return -ENOMEM;
	}
	for (h = 0; h < Hq; h++)
		fill_tbl(c, pat, h);
	ret = fill_band(c, pat);
	if (ret) {
		attn_cols_free(c);
		return ret;
	}
	/*
	 * Beyond R the radius tests are false: a key is a column of head h
	 * iff the terms its residues make pass h's vote.  The kernels take
	 * the union once and, where heads differ, vote per pair.
	 */
	for (j = 0; j < Nk; j++) {
		int m = terms(c, (int64_t)c->R + 1, j), n = 0;

		for (h = 0; h < Hq; h++)
			n += tbl_bit(c->tbl + (size_t)h * ATTN_COLS_TBL, m);
		if (!n)
			continue;
		c->col[c->ncol++] = (int)j;
		if (n < Hq)
			c->vote = true;
	}
	c->step = col_step(c->col, c->ncol);
	return 0;
}
