// SPDX-License-Identifier: MIT
/*
 * Key sets of the fast backend.  runtime/pattern.c defines each pattern;
 * this file turns the definitions into lists whose length is the number of
 * allowed keys, so that the kernels do work proportional to allowed pairs:
 *
 *   LOCAL         the band [pos - W/2, pos + W/2]
 *   STRIDED       the band, plus the columns j % s == 0 (one list)
 *   HIERARCHICAL  the near band (checked key by key against a per-head
 *                 truth table), plus the per-head global columns: outside
 *                 the band every delta test is false, so whether j is
 *                 allowed depends on j alone and is precomputed once
 *   RANDOM        the chosen 64-key blocks of the query's block
 *   RANDOM_ROWS   the row's own index list (generated once per head)
 *   USER_INDEX    the caller's list of the row's KV head, -1 and repeats
 *                 dropped
 *   CLUSTERED     the key bucket of the query's cluster; queries are
 *                 grouped by cluster so that a group shares its bucket
 */
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include <internal/err.h>
#include <internal/threadpool.h>

#include "fast-job.h"

static int cmp_i32(const void *a, const void *b)
{
	int32_t x = *(const int32_t *)a, y = *(const int32_t *)b;

	return (x > y) - (x < y);
}

static bool hier_bits_allowed(const struct asam_pat *pat, int h,
			      unsigned int bits)
{
	double sum = 0;
	int k;

	/* the same sum, in the same order, as asam_pat_hier_allowed() */
	for (k = 0; k < pat->nscales; k++)
		if (bits & (1u << k))
			sum += pat->weights ? pat->weights[h * pat->nscales + k]
					    : 1.0 / pat->nscales;
	return sum > 0.5;
}

static unsigned int hier_bits(const struct asam_pat *pat, int64_t delta,
			      int64_t j)
{
	unsigned int bits = 0;
	int k;

	for (k = 0; k < pat->nscales; k++)
		if (delta <= pat->scales[k] / 4 || j % pat->scales[k] == 0)
			bits |= 1u << k;
	return bits;
}

#define HIER_PERIOD_MAX	4096

/*
 * Each head's band as one word for every position modulo L, the scales'
 * least common multiple: bit band + d is P(pos, pos + d), |d| <= band,
 * which depends on pos mod L alone.  The groups' band masks
 * (fast_hier_word) then cost a shift a row, not a test a key and scale
 * (7 % of a one-thread forward at N 4096 before).  Kept only where the
 * band fits a word and L is small (64 for the default scales).
 */
static int plan_hier_words(struct fast_plan *fp)
{
	const struct asam_pat *pat = &fp->p->pat;
	const uint8_t *tab;
	int64_t L = 1, a, b, x, ph, d, band = fp->hier_band;
	int h, k;

	if (2 * band + 1 > 64)
		return 0;
	for (k = 0; k < pat->nscales; k++) {
		for (a = L, b = pat->scales[k]; b; x = a % b, a = b, b = x)
			;
		L = L / a * pat->scales[k];
		if (L > HIER_PERIOD_MAX)
			return 0;
	}
	fp->hier_bw = malloc(sizeof(uint64_t) * fp->p->Hq * L);
	if (!fp->hier_bw)
		return -ENOMEM;
	fp->hier_period = L;
	for (h = 0; h < fp->p->Hq; h++) {
		tab = fp->hier_tab + ((size_t)h << pat->nscales);
		for (ph = 0; ph < L; ph++) {
			uint64_t w = 0;

			/* ph + d + L: the key's residues, never negative */
			for (d = -band; d <= band; d++)
				w |= (uint64_t)tab[hier_bits(pat, d < 0 ? -d : d,
							     ph + d + L)]
				     << (d + band);
			fp->hier_bw[(size_t)h * L + ph] = w;
		}
	}
	return 0;
}

static int plan_hier(struct fast_plan *fp)
{
	const struct asam_problem *p = fp->p;
	const struct asam_pat *pat = &p->pat;
	int ntab = 1 << pat->nscales, h, k;
	int64_t j;

	fp->hier_tab = malloc((size_t)p->Hq * ntab);
	fp->hier_cols = malloc(sizeof(int32_t) * p->Hq * (size_t)p->Nk);
	fp->hier_ncols = calloc(p->Hq, sizeof(int32_t));
	if (!fp->hier_tab || !fp->hier_cols || !fp->hier_ncols)
		return -ENOMEM;
	fp->hier_band = 0;
	for (k = 0; k < pat->nscales; k++)
		if (pat->scales[k] / 4 > fp->hier_band)
			fp->hier_band = pat->scales[k] / 4;
	for (h = 0; h < p->Hq; h++) {
		uint8_t *tab = fp->hier_tab + (size_t)h * ntab;
		int32_t *cols = fp->hier_cols + (size_t)h * p->Nk;
		int n = 0;

		for (k = 0; k < ntab; k++)
			tab[k] = hier_bits_allowed(pat, h, k);
		/* delta beyond every s_k / 4: only the column tests remain */
		for (j = 0; j < p->Nk; j++)
			if (tab[hier_bits(pat, INT64_MAX, j)])
				cols[n++] = (int32_t)j;
		fp->hier_ncols[h] = n;
	}
	return plan_hier_words(fp);
}

struct rows_job {
	struct fast_plan *fp;
	int32_t *perm;		/* [nthreads][Nk] */
};

/* RANDOM_ROWS of head h: runtime/pattern.c's generator, rows sorted */
static void rows_head(void *arg, int64_t b, int64_t e, int worker)
{
	struct rows_job *job = arg;
	struct fast_plan *fp = job->fp;
	const struct asam_problem *p = fp->p;
	int64_t n = p->Nk, i, t, h;
	int32_t *perm = job->perm + (size_t)worker * n;

	for (h = b; h < e; h++) {
		struct asam_mt19937 mt;
		int32_t *rows = fp->rows + (size_t)h * p->Nq * fp->rr;

		asam_mt_seed(&mt, (uint32_t)(p->pat.seed + (uint64_t)h));
		for (i = 0; i < p->Nq; i++) {
			int32_t *row = rows + i * fp->rr;

			for (t = 0; t < n; t++)
				perm[t] = (int32_t)t;
			for (t = 0; t + 1 < n; t++) {
				int64_t z = asam_mt_next(&mt) % (uint32_t)(n - t);
				int32_t tmp;

				if (t >= fp->rr)
					continue;
				tmp = perm[t];
				perm[t] = perm[t + z];
				perm[t + z] = tmp;
			}
			memcpy(row, perm, sizeof(int32_t) * fp->rr);
			qsort(row, fp->rr, sizeof(int32_t), cmp_i32);
		}
	}
}

static int plan_rows(struct fast_plan *fp, struct asam_pool *pool,
		     struct fast_rows_cache *cache)
{
	const struct asam_problem *p = fp->p;
	struct rows_job job = { .fp = fp };

	fp->rr = p->pat.r < p->Nk ? p->pat.r : p->Nk;
	if (cache && cache->rows && cache->seed == p->pat.seed &&
	    cache->Hq >= p->Hq && cache->Nq == p->Nq && cache->Nk == p->Nk &&
	    cache->rr == fp->rr) {
		fp->rows = cache->rows;		/* head h's rows: same offset */
		fp->rows_cached = true;
		return 0;
	}
	fp->rows = malloc(sizeof(int32_t) * p->Hq * (size_t)p->Nq * fp->rr);
	job.perm = malloc(sizeof(int32_t) * asam_pool_size(pool) *
			  (size_t)p->Nk);
	if (!fp->rows || !job.perm) {
		free(job.perm);
		return -ENOMEM;
	}
	asam_pool_for(pool, p->Hq, 1, rows_head, &job);
	free(job.perm);
	if (cache) {
		free(cache->rows);
		*cache = (struct fast_rows_cache){ p->pat.seed, p->Hq, p->Nq,
						   p->Nk, fp->rr, fp->rows };
		fp->rows_cached = true;
	}
	return 0;
}

/*
 * asam_cluster_argmax() with the centroids of head h loaded and their
 * norms computed once instead of per token: the same double sums in the
 * same order, so the same cluster, tie for tie.
 */
struct cmu {
	double *mu;		/* [d][C] */
	double *cn;		/* [C] */
	double *x;		/* [d] */
};

static void cmu_load(struct cmu *m, const struct asam_pat *pat, int h, int d)
{
	const struct asam_tv *mu = &pat->centroids;
	int c, e;

	for (c = 0; c < pat->C; c++) {
		double n2 = 0;

		for (e = 0; e < d; e++) {
			double v = tv_get(mu, tv_off(mu, h, c, e, 0));

			m->mu[e * pat->C + c] = v;	/* [d][C] */
			n2 += v * v;
		}
		m->cn[c] = fmax(sqrt(n2), 1e-12);
	}
}

static int cmu_argmax(const struct cmu *m, const struct asam_pat *pat,
		      const struct asam_tv *x, int64_t b, int64_t hx,
		      int64_t t, int d)
{
	double xn = 0, best_cos = 0, dot[256];
	int c, e, best = 0, C = pat->C;

	for (e = 0; e < d; e++) {
		double v = tv_get(x, tv_off(x, b, hx, t, e));

		m->x[e] = v;
		xn += v * v;
	}
	xn = fmax(sqrt(xn), 1e-12);
	/* lanes over c: each dot is still summed over e in order */
	for (c = 0; c < C; c++)
		dot[c] = 0;
	for (e = 0; e < d; e++) {
		const double *mr = m->mu + e * C;
		double xe = m->x[e];

		for (c = 0; c < C; c++)
			dot[c] += xe * mr[c];
	}
	for (c = 0; c < C; c++) {
		double cs = dot[c] / (xn * m->cn[c]);

		if (!c || cs > best_cos) {
			best_cos = cs;
			best = c;
		}
	}
	return best;
}

/*
 * The same argmax screened in fp32 with the ISA's Q.K^T kernel: the
 * centroids against 64 tokens at a time.  Where the best cosine leads the
 * runner-up by more than CMU_MARGIN, above the fp32 error of a
 * normalised dot product, the double argmax must agree; closer calls
 * (ties included) are decided by cmu_argmax() itself.
 *
 * The centroids are the rows and the tokens the 64 columns (transposed
 * by tgather): mm_nt then runs whole column blocks for any C (tokens as
 * rows against C = 32 centroids filled half of each), the token norms
 * are sums down the columns, and top2t scans the centroids in order with
 * a lane a token (one-thread CLUSTERED forward, N 4096, d 64: 2.69 ->
 * 2.55 ms; the screen was about a quarter of it).
 */
/*
 * How far the fp32 cosines may be off: c * rx * cn is within (1.5 d + 4)
 * u of the exact cosine (u = 2^-24; the d-term sum within d u of it,
 * relative to sum |x_e mu_e| <= |x| |mu|, the norm within d u / 2, four
 * more roundings), so the difference of two within (3 d + 8) u: a lead
 * above 4 (dp + 8) u (1.7e-5 at d = 64, 1.2e-4 at 512) is the double
 * argmax's.  A fixed 1e-3 sent 35 times more tokens to cmu_argmax
 * (1.7 % of them with random data at d = 64, each O(C d) in double
 * through tv_get: ~4 % of a one-thread forward).
 */
#define CMU_MARGIN(dp) (4.0f * ((dp) + 8) / (1 << 24))
#define CMU_TOK	FAST_KB		/* tokens a batch */

struct cmu32 {
	const struct fast_isa *isa;
	int dp, C;
	float *mu;		/* [C][dp] centroid rows, zero padded */
	float *cn;		/* [C] 1 / norms */
	float *a;		/* [64][dp] token rows (converted) */
	float *xt;		/* [dp][64] the batch's tokens transposed */
	float *c;		/* [C][64] */
};

static int cmu32_init(struct cmu32 *f, const struct cmu *m,
		      const struct asam_pat *pat, int d)
{
	int C = pat->C, e, t;

	f->isa = fast_isa_select();
	f->dp = (d + 15) & ~15;
	f->C = C;
	f->mu = aligned_alloc(64, sizeof(float) * ((size_t)C * f->dp +
			      (size_t)2 * CMU_TOK * f->dp +
			      (size_t)C * CMU_TOK + ((C + 15) & ~15)));
	if (!f->mu)
		return -ENOMEM;
	f->a = f->mu + (size_t)C * f->dp;		/* 64-byte aligned */
	f->xt = f->a + (size_t)CMU_TOK * f->dp;
	f->c = f->xt + (size_t)CMU_TOK * f->dp;
	f->cn = f->c + (size_t)C * CMU_TOK;
	for (t = 0; t < C; t++) {
		for (e = 0; e < f->dp; e++)
			f->mu[(size_t)t * f->dp + e] =
				e < d ? (float)m->mu[e * C + t] : 0;
		f->cn[t] = (float)(1 / m->cn[t]);	/* reciprocals */
	}
	/* the rows' padding columns stay zero */
	memset(f->a, 0, sizeof(float) * CMU_TOK * f->dp);
	return 0;
}

/* ids[t0..t0+n) of tokens (b, hx, .) of @x (nx of them), n <= CMU_TOK */
static void cmu32_batch(const struct cmu32 *f, const struct cmu *m,
			const struct asam_pat *pat, const struct asam_tv *x,
			int b, int hx, int64_t t0, int n, int64_t nx, int d,
			int32_t *ids)
{
	float s2[CMU_TOK], xn[CMU_TOK], rx[CMU_TOK];
	float best[CMU_TOK], second[CMU_TOK];
	int32_t arg[CMU_TOK];
	int r, e;

	/*
	 * the next batch's rows into the L2 while this one computes: a
	 * head's Q and K are read once a call, from memory when the heads
	 * a worker takes pass the L3 (tgather waited on them: 10 % of a
	 * one-thread forward over 8 heads)
	 */
	for (r = 0; r < CMU_TOK && t0 + n + r < nx; r++)
		fast_prefetch_l2(x, tv_off(x, b, hx, t0 + n + r, 0), d);

	/* fp32 rows with no padding are transposed in place */
	if (x->dt == ASAM_DT_F32 && d == f->dp && x->stride[3] == 1) {
		f->isa->tgather((const float *)x->data +
				tv_off(x, b, hx, t0, 0), x->stride[2], NULL,
				n, f->dp, f->xt);
	} else {
		for (r = 0; r < n; r++)
			fast_load_row(x, tv_off(x, b, hx, t0 + r, 0), d,
				      f->a + (size_t)r * f->dp);
		f->isa->tgather(f->a, f->dp, NULL, n, f->dp, f->xt);
	}
	/* the norms down the columns: a lane a token */
	for (r = 0; r < CMU_TOK; r++)
		s2[r] = 0;
	for (e = 0; e < d; e++)
		for (r = 0; r < CMU_TOK; r++)
			s2[r] += f->xt[(size_t)e * CMU_TOK + r] *
				 f->xt[(size_t)e * CMU_TOK + r];
	for (r = 0; r < CMU_TOK; r++) {
		xn[r] = sqrtf(s2[r]);
		rx[r] = xn[r] > 0 ? 1 / xn[r] : 0;
	}
	f->isa->mm_nt(f->mu, f->C, f->dp, f->xt, f->c);
	f->isa->top2t(f->c, n, f->C, rx, f->cn, best, second, arg);
	for (r = 0; r < n; r++)
		ids[r] = xn[r] > 1e-6f && best[r] - second[r] > CMU_MARGIN(f->dp) ?
			 arg[r] : cmu_argmax(m, pat, x, b, hx, t0 + r, d);
}

/* CLUSTERED ARGMAX of (b, h): ids, buckets and cluster-pure query groups */
static void clusters_bh(void *arg, int64_t b0, int64_t e0, int worker)
{
	struct fast_plan *fp = arg;
	const struct asam_problem *p = fp->p;
	const struct asam_pat *pat = &p->pat;
	int C = pat->C, group = p->Hq / p->Hkv;
	int64_t bh, t;

	for (bh = b0; bh < e0; bh++) {
		int b = bh / p->Hq, h = bh % p->Hq, c, ng = 0;
		int32_t *cq = fp->cq + bh * p->Nq;
		int32_t *ko = fp->korder + bh * p->Nk;
		int32_t *ks = fp->kstart + bh * (C + 1);
		int32_t *qo = fp->qorder + bh * p->Nq;
		int32_t *kid = fp->kid + bh * p->Nk;
		int32_t *gs = fp->gstart + bh * (DIV_ROUND_UP(p->Nq, FAST_TQ) +
						  C + 1);
		int32_t qs[257], fill[256];
		double mu[256 * 8], cn[256], xb[512];
		struct cmu m = { mu, cn, xb };
		struct cmu32 f;
		double *big = NULL;

		if ((size_t)C * p->d > sizeof(mu) / sizeof(mu[0])) {
			big = malloc(sizeof(double) * C * p->d);
			if (!big) {
				fp->oom = true;
				return;
			}
			m.mu = big;
		}
		cmu_load(&m, pat, h, p->d);
		if (cmu32_init(&f, &m, pat, p->d)) {
			free(big);
			fp->oom = true;
			return;
		}
		memset(ks, 0, sizeof(int32_t) * (C + 1));
		memset(qs, 0, sizeof(qs));
		/* keys: counting sort by cluster, token order kept */
		for (t = 0; t < p->Nk; t += CMU_TOK)
			cmu32_batch(&f, &m, pat, &p->k, b, h / group, t,
				    p->Nk - t < CMU_TOK ? p->Nk - t : CMU_TOK,
				    p->Nk, p->d, kid + t);
		for (t = 0; t < p->Nk; t++)
			ks[kid[t] + 1]++;
		for (c = 0; c < C; c++)
			ks[c + 1] += ks[c];
		memcpy(fill, ks, sizeof(int32_t) * C);
		for (t = 0; t < p->Nk; t++)
			ko[fill[kid[t]]++] = (int32_t)t;
		for (t = 0; t < p->Nq; t += CMU_TOK)
			cmu32_batch(&f, &m, pat, &p->q, b, h, t,
				    p->Nq - t < CMU_TOK ? p->Nq - t : CMU_TOK,
				    p->Nq, p->d, cq + t);
		for (t = 0; t < p->Nq; t++)
			qs[cq[t] + 1]++;
		for (c = 0; c < C; c++)
			qs[c + 1] += qs[c];
		memcpy(fill, qs, sizeof(int32_t) * C);
		for (t = 0; t < p->Nq; t++)
			qo[fill[cq[t]]++] = (int32_t)t;
		/* groups: at most FAST_TQ queries, never across clusters */
		for (c = 0; c < C; c++)
			for (t = qs[c]; t < qs[c + 1]; t += FAST_TQ)
				gs[ng++] = (int32_t)t;
		gs[ng] = p->Nq;
		fp->ngroups[bh] = ng;
		free(f.mu);
		free(big);
	}
}

int fast_plan_init(struct fast_plan *fp, const struct asam_problem *p,
		   struct asam_pool *pool, struct fast_rows_cache *cache)
{
	const struct asam_pat *pat = &p->pat;
	size_t bh = (size_t)p->B * p->Hq;
	int ret = 0;

	memset(fp, 0, sizeof(*fp));
	fp->p = p;
	fp->qoff = (int64_t)p->Nk - p->Nq;
	fp->group_rows = FAST_TQ;
	fp->maxgroups = DIV_ROUND_UP(p->Nq, FAST_TQ);
	if (!problem_needs_sparse(p))
		return 0;
	switch (pat->kind) {
	case ASAM_PATTERN_STRIDED: {
		int64_t j;

		fp->str_cols = malloc(sizeof(int32_t) *
				      (p->Nk / pat->stride + 1));
		if (!fp->str_cols) {
			ret = -ENOMEM;
			break;
		}
		for (j = 0; j < p->Nk; j += pat->stride)
			fp->str_cols[fp->str_ncols++] = (int32_t)j;
		break;
	}
	case ASAM_PATTERN_HIERARCHICAL:
		ret = plan_hier(fp);
		break;
	case ASAM_PATTERN_RANDOM_ROWS:
		/* rows share nothing: one query per group (SOFT walks the
		 * dense range anyway and keeps full groups) */
		if (p->gate_mode != ASAM_GATE_SOFT) {
			fp->group_rows = 1;
			fp->maxgroups = p->Nq;
		}
		ret = plan_rows(fp, pool, cache);
		break;
	case ASAM_PATTERN_USER_INDEX:
		/* per-row lists, like RANDOM_ROWS: one query per group */
		if (p->gate_mode != ASAM_GATE_SOFT) {
			fp->group_rows = 1;
			fp->maxgroups = p->Nq;
		}
		break;
	case ASAM_PATTERN_CLUSTERED:
		if (pat->cmode != ASAM_CLUSTER_ARGMAX) {
			fp->per_row_plan = true;
			if (p->gate_mode != ASAM_GATE_SOFT) {
				fp->group_rows = 1;
				fp->maxgroups = p->Nq;
			}
			break;
		}
		fp->sorted_groups = p->gate_mode != ASAM_GATE_SOFT;
		if (fp->sorted_groups)
			fp->maxgroups = DIV_ROUND_UP(p->Nq, FAST_TQ) + pat->C;
		fp->cq = malloc(sizeof(int32_t) * bh * p->Nq);
		fp->qorder = malloc(sizeof(int32_t) * bh * p->Nq);
		fp->kid = malloc(sizeof(int32_t) * bh * p->Nk);
		fp->korder = malloc(sizeof(int32_t) * bh * p->Nk);
		fp->kstart = malloc(sizeof(int32_t) * bh * (pat->C + 1));
		fp->gstart = malloc(sizeof(int32_t) * bh *
				    (DIV_ROUND_UP(p->Nq, FAST_TQ) + pat->C + 1));
		fp->ngroups = malloc(sizeof(int32_t) * bh);
		if (!fp->cq || !fp->qorder || !fp->kid || !fp->korder || !fp->kstart ||
		    !fp->gstart || !fp->ngroups) {
			ret = -ENOMEM;
			break;
		}
		asam_pool_for(pool, bh, 1, clusters_bh, fp);
		if (fp->oom)
			ret = -ENOMEM;
		break;
	default:
		break;
	}
	if (ret) {
		fast_plan_fini(fp);
		return asam_err(ret, "cpu: cannot plan the pattern");
	}
	return 0;
}

void fast_plan_fini(struct fast_plan *fp)
{
	free(fp->hier_tab);
	free(fp->hier_cols);
	free(fp->hier_bw);
	free(fp->hier_ncols);
	free(fp->str_cols);
	if (!fp->rows_cached)
		free(fp->rows);
	free(fp->cq);
	free(fp->qorder);
	free(fp->kid);
	free(fp->korder);
	free(fp->kstart);
	free(fp->gstart);
	free(fp->ngroups);
	memset(fp, 0, sizeof(*fp));
}

int fast_plan_group(const struct fast_plan *fp, int b, int h, int g,
		    int32_t *rows)
{
	const struct asam_problem *p = fp->p;
	int64_t bh = (int64_t)b * p->Hq + h;
	int n, t;

	if (fp->sorted_groups) {
		const int32_t *gs = fp->gstart + bh * (fp->maxgroups + 1);
		/* maxgroups == DIV_ROUND_UP(Nq, FAST_TQ) + C here */
		const int32_t *qo = fp->qorder + bh * p->Nq;
		const int32_t *cq = fp->cq + bh * p->Nq;
		int32_t s;

		if (g >= fp->ngroups[bh])
			return 0;
		s = gs[g];
		n = gs[g + 1] - s;
		/* the last group of a cluster stops at the cluster's end */
		for (t = 0; t < n && t < FAST_TQ; t++) {
			if (t && cq[qo[s + t]] != cq[qo[s]])
				break;
			rows[t] = qo[s + t];
		}
		return t;
	}
	if ((int64_t)g * fp->group_rows >= p->Nq)
		return 0;
	n = p->Nq - g * fp->group_rows;
	if (n > fp->group_rows)
		n = fp->group_rows;
	for (t = 0; t < n; t++)
		rows[t] = g * fp->group_rows + t;
	return n;
}

/*
 * The allowed keys of [lo, hi) (hi - base <= 64) for a query at @pos as
 * one word, bit j - @base for key j, key by key: hier_bits() with j mod
 * s_k stepped instead of divided (a division per scale and key was 7 %
 * of the HIERARCHICAL forward).
 */
static uint64_t hier_scan(const struct fast_plan *fp, int h, int64_t pos,
			  int64_t lo, int64_t hi, int64_t base)
{
	const struct asam_pat *pat = &fp->p->pat;
	const uint8_t *tab = fp->hier_tab + ((size_t)h << pat->nscales);
	int64_t m[ASAM_MAX_SCALES], q[ASAM_MAX_SCALES], j, delta;
	int k, ns = pat->nscales;
	uint64_t x = 0;
	unsigned int b;

	for (k = 0; k < ns; k++) {
		m[k] = lo % pat->scales[k];
		q[k] = pat->scales[k] / 4;
	}
	for (j = lo; j < hi; j++) {
		delta = pos > j ? pos - j : j - pos;
		b = 0;
		for (k = 0; k < ns; k++) {
			b |= (unsigned int)(delta <= q[k] || !m[k]) << k;
			if (++m[k] == pat->scales[k])
				m[k] = 0;
		}
		x |= (uint64_t)tab[b] << (j - base);
	}
	return x;
}

/*
 * The allowed keys of [lo, hi) for a query at @pos as bits: key j sets
 * bit j % 64 of bits[(j / 64 - blo) FAST_TQ], a 64-key word at a time.
 */
void fast_hier_band(const struct fast_plan *fp, int h, int64_t pos,
		    int64_t lo, int64_t hi, uint64_t *bits, int64_t blo)
{
	int64_t w, wlo, whi;

	for (w = lo >> 6; lo < hi && w <= (hi - 1) >> 6; w++) {
		wlo = lo > w << 6 ? lo : w << 6;
		whi = hi < (w + 1) << 6 ? hi : (w + 1) << 6;
		bits[(w - blo) * FAST_TQ] |= hier_scan(fp, h, pos, wlo, whi,
						       w << 6);
	}
}

/*
 * The same bits as fast_hier_band, as one word: bit j - @base for every
 * allowed j in [lo, hi), where hi - base <= 64 (a group's whole band)
 */
uint64_t fast_hier_word(const struct fast_plan *fp, int h, int64_t pos,
			int64_t lo, int64_t hi, int64_t base)
{
	if (fp->hier_bw) {
		/* the word of pos's residue, from pos - band, moved to base */
		int64_t sh = pos - fp->hier_band - base, L = fp->hier_period;
		uint64_t x;

		/* pos < 0 where Nq > Nk (qoff < 0) */
		x = fp->hier_bw[(size_t)h * L + (pos % L + L) % L];
		x = sh >= 0 ? x << sh : x >> -sh;
		return x & prefix_mask(hi - base) & ~prefix_mask(lo - base);
	}
	return hier_scan(fp, h, pos, lo, hi, base);
}

static int64_t emit_range(int32_t *out, int64_t n, int64_t lo, int64_t hi)
{
	for (; lo < hi; lo++)
		out[n++] = (int32_t)lo;
	return n;
}

int64_t fast_lower_bound(const int32_t *a, int64_t n, int64_t x)
{
	int64_t lo = 0, hi = n;

	while (lo < hi) {
		int64_t mid = (lo + hi) / 2;

		if (a[mid] < x)
			lo = mid + 1;
		else
			hi = mid;
	}
	return lo;
}

int64_t fast_plan_row(const struct fast_plan *fp, int b, int h, int64_t i,
		      int64_t lim, int32_t *out, struct asam_pat_plan *tmp,
		      uint8_t *bytes)
{
	const struct asam_problem *p = fp->p;
	const struct asam_pat *pat = &p->pat;
	int64_t pos = i + fp->qoff, n = 0, lo, hi, j, t;

	if (lim <= 0)
		return 0;
	switch (pat->kind) {
	case ASAM_PATTERN_DENSE:
		return emit_range(out, 0, 0, lim);
	case ASAM_PATTERN_LOCAL:
	case ASAM_PATTERN_STRIDED:
		lo = pos - pat->radius < 0 ? 0 : pos - pat->radius;
		hi = pos + pat->radius + 1 < lim ? pos + pat->radius + 1 : lim;
		if (pat->kind == ASAM_PATTERN_LOCAL)
			return emit_range(out, 0, lo, hi);
		for (j = 0; j < lo && j < lim; j += pat->stride)
			out[n++] = (int32_t)j;
		n = emit_range(out, n, lo, hi);
		j = hi > lo ? hi : lo;
		j = (j + pat->stride - 1) / pat->stride * pat->stride;
		for (; j < lim; j += pat->stride)
			out[n++] = (int32_t)j;
		return n;
	case ASAM_PATTERN_HIERARCHICAL: {
		const uint8_t *tab = fp->hier_tab +
				     ((size_t)h << pat->nscales);
		const int32_t *cols = fp->hier_cols + (size_t)h * p->Nk;
		int64_t nc = fp->hier_ncols[h];

		lo = pos - fp->hier_band < 0 ? 0 : pos - fp->hier_band;
		hi = pos + fp->hier_band + 1 < lim ? pos + fp->hier_band + 1
						   : lim;
		if (hi < lo)
			hi = lo;
		for (t = 0; t < nc && cols[t] < lo && cols[t] < lim; t++)
			out[n++] = cols[t];
		for (j = lo; j < hi; j++)
			if (tab[hier_bits(pat, pos > j ? pos - j : j - pos, j)])
				out[n++] = (int32_t)j;
		for (t = fast_lower_bound(cols, nc, hi); t < nc && cols[t] < lim;
		     t++)
			out[n++] = cols[t];
		return n;
	}
	case ASAM_PATTERN_RANDOM: {
		int rb = DIV_ROUND_UP(pat->r, ASAM_RANDOM_BLOCK), m, x, y;
		int64_t blk[256];

		m = asam_random_blocks(pat->seed, h, i / ASAM_RANDOM_BLOCK,
				       rb > 256 ? 256 : rb,
				       DIV_ROUND_UP(p->Nk, ASAM_RANDOM_BLOCK),
				       blk);
		for (x = 1; x < m; x++)		/* insertion sort, m small */
			for (y = x; y > 0 && blk[y - 1] > blk[y]; y--) {
				int64_t tt = blk[y];

				blk[y] = blk[y - 1];
				blk[y - 1] = tt;
			}
		for (x = 0; x < m; x++) {
			lo = blk[x] * ASAM_RANDOM_BLOCK;
			hi = lo + ASAM_RANDOM_BLOCK < lim ?
			     lo + ASAM_RANDOM_BLOCK : lim;
			n = emit_range(out, n, lo, hi);
		}
		return n;
	}
	case ASAM_PATTERN_RANDOM_ROWS: {
		const int32_t *row = fp->rows +
				     ((size_t)h * p->Nq + i) * fp->rr;

		for (t = 0; t < fp->rr && row[t] < lim; t++)
			out[n++] = row[t];
		return n;
	}
	case ASAM_PATTERN_USER_INDEX: {
		/*
		 * The caller's list of the KV head: -1 and keys at or past
		 * the limit dropped, repeats kept once (@bytes: Nk zeros,
		 * left zero).  The order is the caller's: nothing downstream
		 * needs ascending keys, and sorting would cost more than the
		 * row's attention.
		 */
		const struct asam_tv *ix = &pat->index;
		const int32_t *lst = (const int32_t *)ix->data +
				     tv_off(ix, b, h / (p->Hq / p->Hkv), i, 0);
		int64_t st = ix->stride[3];

		for (t = 0; t < pat->r; t++) {
			int32_t jj = lst[t * st];

			if (jj < 0 || jj >= lim || bytes[jj])
				continue;
			bytes[jj] = 1;
			out[n++] = jj;
		}
		for (t = 0; t < n; t++)
			bytes[out[t]] = 0;
		return n;
	}
	case ASAM_PATTERN_CLUSTERED:
		if (fp->per_row_plan) {
			asam_pat_row(tmp, i, bytes);
			for (j = 0; j < lim; j++)
				if (bytes[j])
					out[n++] = (int32_t)j;
			return n;
		} else {
			int64_t bh = (int64_t)b * p->Hq + h;
			const int32_t *ko = fp->korder + bh * p->Nk;
			const int32_t *ks = fp->kstart + bh * (pat->C + 1);
			int c = fp->cq[bh * p->Nq + i];

			for (t = ks[c]; t < ks[c + 1] && ko[t] < lim; t++)
				out[n++] = ko[t];
			return n;
		}
	default:
		return 0;
	}
}
