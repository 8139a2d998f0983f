// SPDX-License-Identifier: MIT
/*
 * The token-exact pattern predicates of SPEC 3.  This file is the
 * definition: the reference backend evaluates it row by row, the planners
 * of the fast backends build their tile and index lists from it, and the
 * selftests compare it with brute-force enumerations.
 */
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include <internal/err.h>
#include <internal/pattern.h>

struct asam_pat_plan {
	const struct asam_problem *p;
	int b, h;
	int64_t qoff;		/* query i sits at key position i + qoff */

	int rb;			/* RANDOM: blocks per query block */
	int64_t nkblocks, nqblocks;
	int64_t *rblocks;	/* [nqblocks][rb], -1 pads */

	int rr;			/* RANDOM_ROWS: min(r, Nk) */
	int rows_h;		/* the head rows[] holds, -1 none */
	int32_t *rows;		/* [Nq][rr] */
	int32_t *perm;		/* [Nk] scratch for the permutations */

	int32_t *cq, *ck;	/* CLUSTERED ARGMAX: ids of queries, keys */
	double *aq, *ak;	/* CLUSTERED SOFT: [N][C] soft assignments */
};

/* ------------------------------------------------------------------------ */
/* MT19937 (Matsumoto and Nishimura), the generator behind torch.randperm   */

void asam_mt_seed(struct asam_mt19937 *m, uint32_t seed)
{
	int i;

	m->mt[0] = seed;
	for (i = 1; i < 624; i++)
		m->mt[i] = 1812433253u * (m->mt[i - 1] ^ (m->mt[i - 1] >> 30)) +
			   (uint32_t)i;
	m->idx = 624;
}

static void mt_twist(struct asam_mt19937 *m)
{
	int i;

	for (i = 0; i < 624; i++) {
		uint32_t y = (m->mt[i] & 0x80000000u) |
			     (m->mt[(i + 1) % 624] & 0x7fffffffu);

		m->mt[i] = m->mt[(i + 397) % 624] ^ (y >> 1) ^
			   ((y & 1) ? 0x9908b0dfu : 0);
	}
	m->idx = 0;
}

uint32_t asam_mt_next(struct asam_mt19937 *m)
{
	uint32_t y;

	if (m->idx >= 624)
		mt_twist(m);
	y = m->mt[m->idx++];
	y ^= y >> 11;
	y ^= (y << 7) & 0x9d2c5680u;
	y ^= (y << 15) & 0xefc60000u;
	y ^= y >> 18;
	return y;
}

/* The state after @k more draws, without tempering the words skipped. */
void asam_mt_skip(struct asam_mt19937 *m, uint64_t k)
{
	while (k) {
		uint64_t step;

		if (m->idx >= 624)
			mt_twist(m);
		step = 624 - (uint64_t)m->idx;
		if (step > k)
			step = k;
		m->idx += (int)step;
		k -= step;
	}
}

/* ------------------------------------------------------------------------ */
/* RANDOM: SplitMix64 block choice                                          */

int asam_random_blocks(uint64_t seed, int h, int64_t qblock, int rb,
		       int64_t nblocks, int64_t *out)
{
	uint64_t x = seed ^ ((uint64_t)h * 0x9E3779B97F4A7C15ull) ^
		     ((uint64_t)(qblock + 1) * 0xC2B2AE3D27D4EB4Full);
	int64_t want = rb < nblocks ? rb : nblocks;
	int n = 0, t;

	while (n < want) {
		uint64_t z;
		int64_t J;

		x += 0x9E3779B97F4A7C15ull;
		z = x;
		z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ull;
		z = (z ^ (z >> 27)) * 0x94D049BB133111EBull;
		z ^= z >> 31;
		J = (int64_t)(z % (uint64_t)nblocks);
		for (t = 0; t < n; t++)
			if (out[t] == J)
				break;
		if (t == n)
			out[n++] = J;
	}
	return n;
}

/* ------------------------------------------------------------------------ */
/* HIERARCHICAL                                                             */

/*
 * sum_k alpha_hk [delta <= s_k / 4  or  j mod s_k == 0] > 0.5, summed in
 * double in scale order.  The GPU kernels precompute a per-head truth table
 * with this same function, so the two can never disagree on a tie.
 */
bool asam_pat_hier_allowed(const struct asam_pat *pat, int h, int64_t delta,
			   int64_t j)
{
	double sum = 0;
	int k;

	for (k = 0; k < pat->nscales; k++) {
		int64_t s = pat->scales[k];
		double a = pat->weights ? pat->weights[h * pat->nscales + k]
					: 1.0 / pat->nscales;

		if (delta <= s / 4 || j % s == 0)
			sum += a;
	}
	return sum > 0.5;
}

/* ------------------------------------------------------------------------ */
/* CLUSTERED                                                                */

static double centroid_norm(const struct asam_pat *pat, int h, int c, int d)
{
	const struct asam_tv *mu = &pat->centroids;
	double n2 = 0;
	int e;

	for (e = 0; e < d; e++) {
		double m = tv_get(mu, tv_off(mu, h, c, e, 0));

		n2 += m * m;
	}
	return fmax(sqrt(n2), 1e-12);
}

/* cos[c] = <n^(x_t), n^(mu_hc)> for every c; x is [B, H, N, d] */
static void cluster_cos(const struct asam_pat *pat, int h,
			const struct asam_tv *x, int64_t b, int64_t hx,
			int64_t t, int d, double *cos)
{
	const struct asam_tv *mu = &pat->centroids;
	double xn = 0;
	int c, e;

	for (e = 0; e < d; e++) {
		double xv = tv_get(x, tv_off(x, b, hx, t, e));

		xn += xv * xv;
	}
	xn = fmax(sqrt(xn), 1e-12);
	for (c = 0; c < pat->C; c++) {
		double dot = 0;

		for (e = 0; e < d; e++)
			dot += tv_get(x, tv_off(x, b, hx, t, e)) *
			       tv_get(mu, tv_off(mu, h, c, e, 0));
		cos[c] = dot / (xn * centroid_norm(pat, h, c, d));
	}
}

int asam_cluster_argmax(const struct asam_pat *pat, int h,
			const struct asam_tv *x, int64_t b, int64_t hx,
			int64_t t, int d)
{
	double cos[256];
	int c, best = 0;

	cluster_cos(pat, h, x, b, hx, t, d, cos);
	for (c = 1; c < pat->C; c++)
		if (cos[c] > cos[best])
			best = c;
	return best;
}

static void cluster_soft(const struct asam_pat *pat, int h,
			 const struct asam_tv *x, int64_t b, int64_t hx,
			 int64_t t, int d, double *a)
{
	double tau = fabs((double)pat->temp), mx = -INFINITY, sum = 0;
	int c;

	cluster_cos(pat, h, x, b, hx, t, d, a);
	for (c = 0; c < pat->C; c++)
		mx = fmax(mx, a[c] / tau);
	for (c = 0; c < pat->C; c++)
		sum += (a[c] = exp(a[c] / tau - mx));
	for (c = 0; c < pat->C; c++)
		a[c] /= sum;
}

/* ------------------------------------------------------------------------ */
/* Plans                                                                    */

struct asam_pat_plan *asam_pat_plan_create(const struct asam_problem *p)
{
	const struct asam_pat *pat = &p->pat;
	struct asam_pat_plan *pl = calloc(1, sizeof(*pl));

	if (!pl)
		return ERR_PTR(asam_err(-ENOMEM, "pattern plan: out of memory"));
	pl->p = p;
	pl->b = pl->h = pl->rows_h = -1;
	pl->qoff = (int64_t)p->Nk - p->Nq;

	switch (pat->kind) {
	case ASAM_PATTERN_RANDOM:
		pl->rb = DIV_ROUND_UP(pat->r, ASAM_RANDOM_BLOCK);
		pl->nkblocks = DIV_ROUND_UP(p->Nk, ASAM_RANDOM_BLOCK);
		pl->nqblocks = DIV_ROUND_UP(p->Nq, ASAM_RANDOM_BLOCK);
		pl->rblocks = malloc(sizeof(int64_t) * pl->nqblocks * pl->rb);
		if (!pl->rblocks)
			goto err_nomem;
		break;
	case ASAM_PATTERN_RANDOM_ROWS:
		pl->rr = pat->r < p->Nk ? pat->r : p->Nk;
		pl->rows = malloc(sizeof(int32_t) * (size_t)p->Nq * pl->rr);
		pl->perm = malloc(sizeof(int32_t) * (size_t)p->Nk);
		if (!pl->rows || !pl->perm)
			goto err_nomem;
		break;
	case ASAM_PATTERN_CLUSTERED:
		if (pat->cmode == ASAM_CLUSTER_ARGMAX) {
			pl->cq = malloc(sizeof(int32_t) * p->Nq);
			pl->ck = malloc(sizeof(int32_t) * p->Nk);
			if (!pl->cq || !pl->ck)
				goto err_nomem;
		} else {
			pl->aq = malloc(sizeof(double) * p->Nq * pat->C);
			pl->ak = malloc(sizeof(double) * p->Nk * pat->C);
			if (!pl->aq || !pl->ak)
				goto err_nomem;
		}
		break;
	default:
		break;
	}
	return pl;

err_nomem:
	asam_pat_plan_destroy(pl);
	return ERR_PTR(asam_err(-ENOMEM, "pattern plan: out of memory"));
}

void asam_pat_plan_destroy(struct asam_pat_plan *pl)
{
	if (IS_ERR_OR_NULL(pl))
		return;
	free(pl->rblocks);
	free(pl->rows);
	free(pl->perm);
	free(pl->cq);
	free(pl->ck);
	free(pl->aq);
	free(pl->ak);
	free(pl);
}

/* Row i of head h is the first rr entries of the (i+1)-th randperm(Nk). */
static void build_random_rows(struct asam_pat_plan *pl, int h)
{
	const struct asam_problem *p = pl->p;
	int64_t n = p->Nk, i, t;
	struct asam_mt19937 mt;
	int32_t *perm = pl->perm;

	asam_mt_seed(&mt, (uint32_t)(p->pat.seed + (uint64_t)h));
	for (i = 0; i < p->Nq; i++) {
		for (t = 0; t < n; t++)
			perm[t] = (int32_t)t;
		for (t = 0; t + 1 < n; t++) {
			int64_t z = asam_mt_next(&mt) % (uint32_t)(n - t);
			int32_t tmp;

			/* positions below rr are final; later draws only advance */
			if (t >= pl->rr)
				continue;
			tmp = perm[t];
			perm[t] = perm[t + z];
			perm[t + z] = tmp;
		}
		memcpy(pl->rows + i * pl->rr, perm, sizeof(int32_t) * pl->rr);
	}
	pl->rows_h = h;
}

int asam_pat_plan_bh(struct asam_pat_plan *pl, int b, int h)
{
	const struct asam_problem *p = pl->p;
	const struct asam_pat *pat = &p->pat;
	int hk = h / (p->Hq / p->Hkv);
	int64_t I, t;

	switch (pat->kind) {
	case ASAM_PATTERN_RANDOM:
		if (pl->h == h)
			break;
		for (I = 0; I < pl->nqblocks; I++) {
			int64_t *out = pl->rblocks + I * pl->rb;
			int n = asam_random_blocks(pat->seed, h, I, pl->rb,
						   pl->nkblocks, out);

			for (; n < pl->rb; n++)
				out[n] = -1;
		}
		break;
	case ASAM_PATTERN_RANDOM_ROWS:
		if (pl->rows_h != h)
			build_random_rows(pl, h);
		break;
	case ASAM_PATTERN_CLUSTERED:
		for (t = 0; t < p->Nq; t++) {
			if (pl->cq)
				pl->cq[t] = asam_cluster_argmax(pat, h, &p->q,
								b, h, t, p->d);
			else
				cluster_soft(pat, h, &p->q, b, h, t, p->d,
					     pl->aq + t * pat->C);
		}
		for (t = 0; t < p->Nk; t++) {
			if (pl->ck)
				pl->ck[t] = asam_cluster_argmax(pat, h, &p->k,
								b, hk, t, p->d);
			else
				cluster_soft(pat, h, &p->k, b, hk, t, p->d,
					     pl->ak + t * pat->C);
		}
		break;
	default:
		break;
	}
	pl->b = b;
	pl->h = h;
	return 0;
}

void asam_pat_row(const struct asam_pat_plan *pl, int64_t i, uint8_t *row)
{
	const struct asam_problem *p = pl->p;
	const struct asam_pat *pat = &p->pat;
	int64_t Nk = p->Nk, pos = i + pl->qoff, j, lo, hi;
	int t, c;

	if (pat->kind == ASAM_PATTERN_DENSE) {
		memset(row, 1, Nk);
		return;
	}
	memset(row, 0, Nk);
	switch (pat->kind) {
	case ASAM_PATTERN_LOCAL:
	case ASAM_PATTERN_STRIDED:
		lo = pos - pat->radius < 0 ? 0 : pos - pat->radius;
		hi = pos + pat->radius >= Nk ? Nk - 1 : pos + pat->radius;
		for (j = lo; j <= hi; j++)
			row[j] = 1;
		if (pat->kind == ASAM_PATTERN_STRIDED)
			for (j = 0; j < Nk; j += pat->stride)
				row[j] = 1;
		break;
	case ASAM_PATTERN_HIERARCHICAL:
		for (j = 0; j < Nk; j++)
			row[j] = asam_pat_hier_allowed(pat, pl->h,
						       pos > j ? pos - j : j - pos,
						       j);
		break;
	case ASAM_PATTERN_RANDOM: {
		const int64_t *blk = pl->rblocks +
				     (i / ASAM_RANDOM_BLOCK) * pl->rb;

		for (t = 0; t < pl->rb && blk[t] >= 0; t++) {
			lo = blk[t] * ASAM_RANDOM_BLOCK;
			hi = lo + ASAM_RANDOM_BLOCK < Nk ?
			     lo + ASAM_RANDOM_BLOCK : Nk;
			for (j = lo; j < hi; j++)
				row[j] = 1;
		}
		break;
	}
	case ASAM_PATTERN_RANDOM_ROWS:
		for (t = 0; t < pl->rr; t++)
			row[pl->rows[i * pl->rr + t]] = 1;
		break;
	case ASAM_PATTERN_USER_INDEX: {
		const struct asam_tv *ix = &pat->index;
		const int32_t *lst = (const int32_t *)ix->data +
				     tv_off(ix, pl->b, pl->h / (p->Hq / p->Hkv),
					    i, 0);

		for (t = 0; t < pat->r; t++)
			if (lst[t] >= 0)
				row[lst[t]] = 1;
		break;
	}
	case ASAM_PATTERN_CLUSTERED:
		if (pl->cq) {
			for (j = 0; j < Nk; j++)
				row[j] = pl->cq[i] == pl->ck[j];
			break;
		}
		for (j = 0; j < Nk; j++) {
			double dot = 0;

			for (c = 0; c < pat->C; c++)
				dot += pl->aq[i * pat->C + c] *
				       pl->ak[j * pat->C + c];
			row[j] = dot > pat->thresh;
		}
		break;
	default:
		break;
	}
}
