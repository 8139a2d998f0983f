// SPDX-License-Identifier: MIT
/*
 * STRIDED and HIERARCHICAL on a device: the band's tile lists (LOCAL's,
 * radius R; HIERARCHICAL drops the "full" marks, its band votes per pair),
 * the vote tables and the column set, built once per (device, pattern,
 * weights, Hq, N, tile, direction), uploaded in one allocation and kept
 * for the process's life, as arch/cuda/attn.c keeps its tile lists.
 */
#include <errno.h>
#include <pthread.h>
#include <stdlib.h>
#include <string.h>

#include <internal/cuda.h>
#include <internal/err.h>

#include "attn_int.h"
#include "attn_cols.h"
#include "attn_plan.h"

#define MAX_COLS_PLANS	64

struct cols_entry {
	int ordinal, kind, radius, stride, ns, scales[ATTN_COLS_MAXS];
	int Hq, Nq, Nk, bm, transposed;
	float *weights;			/* copy, [Hq][ns]; NULL = uniform */
	CUdeviceptr mem;
	struct attn_cols_dev dev;
};

static pthread_mutex_t cols_lock = PTHREAD_MUTEX_INITIALIZER;
static struct cols_entry cents[MAX_COLS_PLANS];
static int ncents;

static bool same(const struct cols_entry *e, int ordinal,
		 const struct asam_problem *p, int bm, int transposed)
{
	const struct asam_pat *pat = &p->pat;
	bool hier = pat->kind == ASAM_PATTERN_HIERARCHICAL;

	if (e->ordinal != ordinal || e->kind != (int)pat->kind ||
	    e->Hq != p->Hq || e->Nq != p->Nq || e->Nk != p->Nk ||
	    e->bm != bm || e->transposed != transposed)
		return false;
	if (!hier)
		return e->radius == pat->radius && e->stride == pat->stride;
	if (e->ns != pat->nscales ||
	    memcmp(e->scales, pat->scales, sizeof(int) * pat->nscales))
		return false;
	if (!e->weights != !pat->weights)
		return false;
	return !e->weights || !memcmp(e->weights, pat->weights,
				      sizeof(float) * p->Hq * pat->nscales);
}

/* build and upload @p's entry into @e (the caller holds the lock) */
static int make(struct asam_cuda_device *d, const struct asam_problem *p,
		int bm, int transposed, struct cols_entry *e)
{
	const struct asam_pat *pat = &p->pat;
	struct asam_pat band = { .kind = ASAM_PATTERN_LOCAL };
	struct attn_plan pl, tp, *use = &pl;
	struct attn_cols c;
	size_t n, nl, at, bw;
	CUdeviceptr mem = 0;
	const char *env;
	int ret, x;

	ret = attn_cols_build(&c, pat, p->Hq, p->Nk);
	if (ret)
		return ret;
	/* ASAM_CUDA_COLS_STEP=0: gather by the list even where a step
	 * would do (tuning: what the arithmetic saves) */
	env = getenv("ASAM_CUDA_COLS_STEP");
	if (env && !strcmp(env, "0"))
		c.step = 0;
	/* ASAM_CUDA_COLS_CLEAR=0: every column tile through the vote (the
	 * same pairs: a column passes its vote), no unmasked tiles */
	env = getenv("ASAM_CUDA_COLS_CLEAR");
	if (env && !strcmp(env, "0"))
		c.vote = true;
	/* ASAM_CUDA_COLS_BAND=0: HIERARCHICAL's band votes per pair */
	env = getenv("ASAM_CUDA_COLS_BAND");
	if (env && !strcmp(env, "0"))
		c.L = 0;
	band.radius = c.R;
	ret = attn_plan_build(&pl, &band, 1, p->Nq, p->Nk, bm, 64);
	if (ret)
		goto out_cols;
	if (transposed) {
		ret = attn_plan_transpose(&pl, (p->Nk + 63) / 64, &tp);
		attn_plan_free(&pl);
		if (ret)
			goto out_cols;
		use = &tp;
	}
	n = (size_t)use->nh * use->nqt + 1;
	nl = (size_t)use->off[n - 1];
	if (pat->kind == ASAM_PATTERN_HIERARCHICAL)
		for (x = 0; x < (int)nl; x++)
			use->list[x] &= ~ATTN_E_FULL;
	/* off | list (+1) | col (+1) | tables | band words */
	at = n + nl + 1 + c.ncol + 1;
	bw = at + (size_t)p->Hq * ATTN_COLS_TBL;
	ret = asam_cuda_malloc(d, sizeof(int) * (bw + (size_t)p->Hq * c.L),
			       &mem);
	ret = ret ?: asam_cuda_memcpy_htod(d, mem, use->off, n * sizeof(int),
					   NULL, false);
	ret = ret ?: asam_cuda_memcpy_htod(d, mem + n * sizeof(int), use->list,
					   (nl + 1) * sizeof(int), NULL, false);
	c.col[c.ncol] = -1;
	ret = ret ?: asam_cuda_memcpy_htod(d, mem + (n + nl + 1) * sizeof(int),
					   c.col, (c.ncol + 1) * sizeof(int),
					   NULL, false);
	ret = ret ?: asam_cuda_memcpy_htod(d, mem + at * sizeof(int), c.tbl,
					   sizeof(int) * (size_t)p->Hq *
					   ATTN_COLS_TBL, NULL, false);
	if (!ret && c.L)
		ret = asam_cuda_memcpy_htod(d, mem + bw * sizeof(int), c.band,
					    sizeof(int) * (size_t)p->Hq * c.L,
					    NULL, false);
	if (!ret && pat->kind == ASAM_PATTERN_HIERARCHICAL && pat->weights) {
		e->weights = malloc(sizeof(float) * p->Hq * pat->nscales);
		if (!e->weights)
			ret = -ENOMEM;
		else
			memcpy(e->weights, pat->weights,
			       sizeof(float) * p->Hq * pat->nscales);
	}
	if (ret) {
		if (mem)
			asam_cuda_free(d, mem);
		goto out_plan;
	}
	e->ordinal = d->ordinal;
	e->kind = pat->kind;
	e->radius = pat->radius;
	e->stride = pat->stride;
	e->ns = pat->nscales;
	memcpy(e->scales, pat->scales, sizeof(e->scales));
	e->Hq = p->Hq;
	e->Nq = p->Nq;
	e->Nk = p->Nk;
	e->bm = bm;
	e->transposed = transposed;
	e->mem = mem;
	e->dev.off = (const int *)(uintptr_t)mem;
	e->dev.list = (const int *)(uintptr_t)(mem + n * sizeof(int));
	e->dev.col = (const int *)(uintptr_t)(mem + (n + nl + 1) * sizeof(int));
	e->dev.tbl = (const unsigned int *)(uintptr_t)(mem + at * sizeof(int));
	e->dev.ncol = c.ncol;
	e->dev.vote = c.vote;
	e->dev.step = c.step;
	e->dev.R = c.R;
	e->dev.L = c.L;
	e->dev.band = c.L ? (const unsigned int *)(uintptr_t)(mem + bw *
							      sizeof(int)) :
		      NULL;
	e->dev.ns = c.ns;
	memcpy(e->dev.s, c.s, sizeof(c.s));
	memcpy(e->dev.r, c.r, sizeof(c.r));
out_plan:
	attn_plan_free(use);
out_cols:
	attn_cols_free(&c);
	return ret;
}

int attn_cols_get(struct asam_cuda_device *d, const struct asam_problem *p,
		  int bm, int transposed, struct attn_cols_dev *out)
{
	int i, ret = 0;

	pthread_mutex_lock(&cols_lock);
	for (i = 0; i < ncents; i++)
		if (same(&cents[i], d->ordinal, p, bm, transposed))
			break;
	if (i == ncents) {
		if (ncents == MAX_COLS_PLANS) {
			ret = asam_err(-ENOSPC, "cuda attention: more than %d strided/hierarchical shapes in one process",
				       MAX_COLS_PLANS);
		} else {
			memset(&cents[i], 0, sizeof(cents[i]));
			ret = make(d, p, bm, transposed, &cents[i]);
			if (!ret)
				ncents++;
		}
	}
	if (!ret)
		*out = cents[i].dev;
	pthread_mutex_unlock(&cols_lock);
	return ret;
}

#define FILL_COLS(a, c) do {						\
	int k_;								\
									\
	(a)->list_off = (c)->off;					\
	(a)->list = (c)->list;						\
	(a)->list_per_head = 0;						\
	(a)->radius = (c)->R;						\
	(a)->col = (c)->col;						\
	(a)->col_tbl = (c)->tbl;					\
	(a)->ncol = (c)->ncol;						\
	(a)->col_vote = (c)->vote;					\
	(a)->col_step = (c)->step;					\
	(a)->col_band = (c)->band;					\
	(a)->col_L = (c)->L;						\
	(a)->col_ns = (c)->ns;						\
	for (k_ = 0; k_ < ATTN_COLS_MAXS; k_++) {			\
		(a)->col_s[k_] = (c)->s[k_] ? (c)->s[k_] : 1;		\
		(a)->col_r[k_] = (c)->r[k_];				\
	}								\
} while (0)

void attn_cols_fill_fwd(struct attn_fwd_params *a,
			const struct attn_cols_dev *c)
{
	FILL_COLS(a, c);
}

void attn_cols_fill_bwd(struct attn_bwd_params *a,
			const struct attn_cols_dev *c)
{
	FILL_COLS(a, c);
}
