// SPDX-License-Identifier: MIT
/*
 * Query groups and their key sets (see fast.c for the whole design): the
 * segments a group walks, direct 64-key blocks or gathered chunks, and
 * the per-row masks over them, built in time proportional to the allowed
 * keys of each pattern.
 */
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include <internal/err.h>
#include <internal/log.h>

#include "fast-job.h"

void fast_plan_for(struct fast_job *job, struct fast_ws *w, int b, int h)
{
	if (!job->fp.per_row_plan || (w->plan_b == b && w->plan_h == h))
		return;
	asam_pat_plan_bh(w->plan, b, h);
	w->plan_b = b;
	w->plan_h = h;
}

/*
 * Each row's band [pos - rad, pos + rad] clipped to the chunk [k0, k1) and
 * the row's limit, into w->slo/shi; *lo, *hi grow to cover the non-empty
 * ones.
 */
static void band_rows(const struct fast_job *job, struct fast_ws *w,
		      const struct group *gr, int64_t rad, int64_t *lo,
		      int64_t *hi)
{
	int r;

	for (r = 0; r < gr->R; r++) {
		int64_t pos = gr->rows[r] + job->fp.qoff;
		int64_t a = pos - rad, b = pos + rad + 1;

		a = a < gr->k0 ? gr->k0 : a;
		b = b > gr->lim[r] ? gr->lim[r] : b;
		b = b > gr->k1 ? gr->k1 : b;
		w->slo[r] = a;
		w->shi[r] = b;
		if (a < b) {
			*lo = a < *lo ? a : *lo;
			*hi = b > *hi ? b : *hi;
		}
	}
}

/*
 * STRIDED and HIERARCHICAL: the rows' bands, which span [lo, lo + 64) at
 * most, as one gathered segment of the keys some row takes, with each
 * row's mask over it in ws->bits.  The 64-key blocks around a group's
 * bands (1.5 on average for 16 rows and radius 16) hold 96 columns where
 * HIERARCHICAL's default scales allow about 30 keys and STRIDED's 48:
 * scoring and summing the blocks whole cost more than gathering the
 * keys.  Returns the segments made (0 or 1).
 */
static int band_gathered(struct fast_job *job, struct fast_ws *w,
			 const struct group *gr, bool hr, int64_t lo,
			 struct keyset *ks)
{
	uint64_t x[FAST_TQ], m[FAST_TQ], u = 0;
	int32_t *bk = w->u;
	int r, n = 0;

	for (r = 0; r < gr->R; r++) {
		int64_t a = w->slo[r], b = w->shi[r];

		x[r] = m[r] = 0;
		if (a >= b)
			continue;
		x[r] = hr ? fast_hier_word(&job->fp, gr->h,
					   gr->rows[r] + job->fp.qoff, a, b,
					   lo) :
		       prefix_mask(b - lo) & ~prefix_mask(a - lo);
		u |= x[r];
	}
	if (!u)
		return 0;
	/* each row's bits compacted to the union's (a pext by hand) */
	while (u) {
		int p = __builtin_ctzll(u);

		for (r = 0; r < gr->R; r++)
			m[r] |= (x[r] >> p & 1) << n;
		bk[n++] = (int32_t)(lo + p);
		u &= u - 1;
	}
	for (r = 0; r < gr->R; r++)
		w->bits[r] = m[r];
	w->seg[0] = INT32_MIN;		/* neither a block nor a column chunk */
	w->segn[0] = n;
	ks->bsg = 0;
	ks->bk = bk;
	return 1;
}

/*
 * LOCAL and RANDOM need no key lists: a LOCAL row is one range, and the
 * rows of a group (16 queries inside one 64-query block) share their
 * RANDOM key blocks.  Their masks follow from arithmetic (row_mask()).
 */
static bool build_keys_arith(struct fast_job *job, struct fast_ws *w,
			     const struct group *gr, struct keyset *ks)
{
	const struct asam_problem *p = job->p;
	const struct asam_pat *pat = &p->pat;
	int32_t *seg = w->seg, *segn = w->segn;
	int64_t lo = INT64_MAX, hi = 0, blk;
	int r, ns = 0, t;

	if (pat->kind == ASAM_PATTERN_LOCAL) {
		band_rows(job, w, gr, pat->radius, &lo, &hi);
		for (blk = lo / FAST_KB; lo < hi && blk * FAST_KB < hi; blk++) {
			seg[ns] = (int32_t)blk;
			segn[ns++] = FAST_KB;
		}
		ks->nseg = ns;
		ks->ranges = true;
		return true;
	}
	if (pat->kind == ASAM_PATTERN_RANDOM && gr->R > 0 &&
	    gr->rows[0] / ASAM_RANDOM_BLOCK ==
	    gr->rows[gr->R - 1] / ASAM_RANDOM_BLOCK) {
		int rb = DIV_ROUND_UP(pat->r, ASAM_RANDOM_BLOCK), m;
		int64_t bl[256];

		m = asam_random_blocks(pat->seed, gr->h,
				       gr->rows[0] / ASAM_RANDOM_BLOCK,
				       rb > 256 ? 256 : rb,
				       DIV_ROUND_UP(p->Nk, ASAM_RANDOM_BLOCK), bl);
		for (t = 0; t < m; t++) {
			int64_t j0 = bl[t] * FAST_KB;

			if (j0 >= gr->maxlim || j0 < gr->k0 || j0 >= gr->k1)
				continue;
			seg[ns] = (int32_t)bl[t];
			segn[ns++] = FAST_KB;
		}
		ks->nseg = ns;
		return true;	/* whole blocks: the dense mask is the mask */
	}
	if (pat->kind == ASAM_PATTERN_STRIDED ||
	    pat->kind == ASAM_PATTERN_HIERARCHICAL) {
		/*
		 * The rows' bands go direct.  The global columns are one
		 * sorted list per head (STRIDED: every head's), and the
		 * group gathers the whole of it below its end: the same
		 * keys for every group of the head, so a worker gathers
		 * them once (fast_gather's bucket reuse).  A row takes the
		 * prefix below its limit, less the columns inside its own
		 * band, which the band's mask already counts.
		 */
		int64_t blo = 0, bhi = 0, end = gr->maxlim < gr->k1 ?
						gr->maxlim : gr->k1;
		bool hr = pat->kind == ASAM_PATTERN_HIERARCHICAL;
		int64_t ng, rad = pat->radius, nc, q0;
		const int32_t *cols;

		if (hr) {
			/* near field: delta <= max s_k / 4; beyond, columns */
			rad = job->fp.hier_band;
			cols = job->fp.hier_cols + (size_t)gr->h * p->Nk;
			nc = job->fp.hier_ncols[gr->h];
		} else {
			cols = job->fp.str_cols;
			nc = job->fp.str_ncols;
		}
		band_rows(job, w, gr, rad, &lo, &hi);
		if (lo < hi && hi - lo <= FAST_KB) {
			ns = band_gathered(job, w, gr, hr, lo, ks);
		} else {
			blo = lo < hi ? lo / FAST_KB : 0;
			bhi = lo < hi ? (hi - 1) / FAST_KB + 1 : 0;
		}
		for (blk = blo; blk < bhi; blk++) {
			seg[ns] = (int32_t)blk;
			segn[ns++] = FAST_KB;
		}
		if (hr && bhi > blo) {
			memset(w->bits, 0, sizeof(uint64_t) * FAST_TQ * ns);
			for (r = 0; r < gr->R; r++)
				fast_hier_band(&job->fp, gr->h,
					       gr->rows[r] + job->fp.qoff,
					       w->slo[r], w->shi[r],
					       w->bits + r, blo);
		}
		q0 = fast_lower_bound(cols, nc, gr->k0);
		ks->u = cols + q0;
		ng = fast_lower_bound(ks->u, nc - q0, end);
		for (r = 0; r < gr->R; r++) {
			w->rn[r] = fast_lower_bound(ks->u, ng, gr->lim[r]);
			if (w->slo[r] < w->shi[r]) {
				w->xlo[r] = fast_lower_bound(ks->u, ng,
							     w->slo[r]);
				w->xhi[r] = fast_lower_bound(ks->u, ng,
							     w->shi[r]);
			} else {
				w->xlo[r] = w->xhi[r] = 0;
			}
		}
		for (t = 0; (int64_t)t * FAST_KB < ng; t++) {
			seg[ns] = -(t + 1);
			segn[ns++] = ng - (int64_t)t * FAST_KB < FAST_KB ?
				     ng - (int64_t)t * FAST_KB : FAST_KB;
		}
		ks->nu = ng;
		ks->bucket = true;
		ks->nseg = ns;
		ks->strided = true;
		ks->hier = hr;
		return true;
	}
	if (pat->kind == ASAM_PATTERN_CLUSTERED && job->fp.sorted_groups) {
		/*
		 * Every row of the group is in one cluster: the key set is
		 * the bucket (ascending), and a row's keys are a prefix of
		 * it, cut at the row's limit.
		 */
		int64_t bh = (int64_t)gr->b * p->Hq + gr->h, a, z;
		const int32_t *ko = job->fp.korder + bh * p->Nk;
		const int32_t *kst = job->fp.kstart + bh * (pat->C + 1);
		int c = job->fp.cq[bh * p->Nq + gr->rows[0]];

		a = kst[c];
		z = kst[c + 1];
		while (a < z && ko[a] < gr->k0)
			a++;
		while (z > a && (ko[z - 1] >= gr->k1 ||
				 ko[z - 1] >= gr->maxlim))
			z--;
		ks->u = ko + a;
		ks->nu = z - a;
		ks->bucket = true;
		for (r = 0; r < gr->R; r++) {
			/*
			 * the keys below the row's limit: all of them unless
			 * the limit falls inside the bucket (causal rows);
			 * the search's unpredictable branches were 2 % of
			 * a forward where every row takes the whole bucket
			 */
			w->slo[r] = 0;
			w->shi[r] = z == a || gr->lim[r] > ko[z - 1] ? z - a :
				    fast_lower_bound(ks->u, z - a, gr->lim[r]);
		}
		for (t = 0; (int64_t)t * FAST_KB < z - a; t++) {
			seg[ns] = -(t + 1);
			segn[ns++] = z - a - (int64_t)t * FAST_KB < FAST_KB ?
				     z - a - (int64_t)t * FAST_KB : FAST_KB;
		}
		ks->nseg = ns;
		ks->ranges = true;
		return true;
	}
	return false;
}

/* keep the keys of rk[0..n) in [k0, k1), in order, moved to the front */
static int64_t clip_keys(int32_t *rk, int64_t n, int64_t k0, int64_t k1)
{
	int64_t a, m = 0;

	for (a = 0; a < n; a++)
		if (rk[a] >= k0 && rk[a] < k1)
			rk[m++] = rk[a];
	return m;
}

/*
 * Build the group's key set.  Dense branch: the blocks of [0, max limit),
 * the sparse rows (if any) as bits over them.  Sparse only: the union of
 * the rows' lists, found by flagging keys and scanning the flagged span
 * block by block; well-used blocks go direct, the rest is gathered.
 */
void fast_build_keys(struct fast_job *job, struct fast_ws *w,
		       const struct group *gr, struct keyset *ks)
{
	int64_t lo = INT64_MAX, hi = -1, t, j, ng = 0, blk;
	int32_t *seg = w->seg, *segn = w->segn;
	int r, ns = 0, c, nr = gr->R;

	ks->seg = seg;
	ks->segn = segn;
	ks->u = w->u;
	ks->sbits = false;
	ks->bucket = false;
	ks->nu = 0;
	ks->ranges = false;
	ks->strided = false;
	ks->hier = false;
	ks->bsg = -1;
	ks->bk = NULL;
	ks->first = gr->k0 / FAST_KB;
	if (!gr->want_s || gr->s_is_d || gr->want_d) {
		int64_t end = gr->maxlim < gr->k1 ? gr->maxlim : gr->k1;

		ns = end > gr->k0 ? DIV_ROUND_UP(end, FAST_KB) - ks->first : 0;
		for (c = 0; c < ns; c++) {
			seg[c] = ks->first + c;
			segn[c] = FAST_KB;
		}
		ks->nseg = ns;
		if (!gr->want_s || gr->s_is_d)
			return;
	}
	if (!gr->want_d && build_keys_arith(job, w, gr, ks))
		return;
	fast_plan_for(job, w, gr->b, gr->h);
	for (r = 0; r < nr; r++) {
		int32_t *rk = w->rk + (size_t)r * job->p->Nk;

		w->rn[r] = fast_plan_row(&job->fp, gr->b, gr->h, gr->rows[r],
					 gr->lim[r], rk, w->plan, w->bytes);
		if (gr->k0 > 0 || gr->k1 < job->p->Nk)
			w->rn[r] = clip_keys(rk, w->rn[r], gr->k0, gr->k1);
		/* USER_INDEX lists come in the caller's order */
		for (t = 0; t < w->rn[r]; t++) {
			lo = rk[t] < lo ? rk[t] : lo;
			hi = rk[t] > hi ? rk[t] : hi;
		}
	}
	ks->sbits = true;
	if (!gr->want_d && nr == 1) {
		/* one row: its list is the union (sorted but for USER_INDEX,
		 * whose unsorted keys only miss direct blocks) */
		const int32_t *rk = w->rk;

		for (t = 0; t < w->rn[0];) {
			int64_t e = t;

			blk = rk[t] >> 6;
			while (e < w->rn[0] && rk[e] >> 6 == blk)
				e++;
			if (e - t >= DIRECT_MIN) {
				for (; t < e; t++)
					w->posn[rk[t]] = ns * FAST_KB +
							 (rk[t] & 63);
				seg[ns] = (int32_t)blk;
				segn[ns++] = FAST_KB;
			} else {
				for (; t < e; t++)
					w->u[ng++] = rk[t];
			}
		}
		goto gathered;
	}
	if (!gr->want_d) {
		for (r = 0; r < nr; r++) {
			const int32_t *rk = w->rk + (size_t)r * job->p->Nk;

			for (t = 0; t < w->rn[r]; t++)
				w->flag[rk[t]] = 1;
		}
		for (blk = lo >> 6; hi >= 0 && blk <= hi >> 6; blk++) {
			int64_t j0 = blk * FAST_KB, j1 = j0 + FAST_KB, cnt = 0;

			if (j1 > job->p->Nk)
				j1 = job->p->Nk;
			if (j1 - j0 == FAST_KB) {
				/* whole block: skip it in eight loads if empty */
				uint64_t any = 0, x;
				int q;

				for (q = 0; q < 8; q++) {
					memcpy(&x, w->flag + j0 + 8 * q, 8);
					any |= x;
				}
				if (!any)
					continue;
			}
			for (j = j0; j < j1; j++)
				cnt += w->flag[j];
			if (!cnt)
				continue;
			if (cnt >= DIRECT_MIN) {
				for (j = j0; j < j1; j++)
					if (w->flag[j]) {
						w->flag[j] = 0;
						w->posn[j] = ns * FAST_KB +
							     (j - j0);
					}
				seg[ns] = (int32_t)blk;
				segn[ns++] = FAST_KB;
				continue;
			}
			for (j = j0; j < j1; j++)
				if (w->flag[j]) {
					w->flag[j] = 0;
					w->u[ng++] = (int32_t)j;
				}
		}
gathered:
		for (c = 0; c * FAST_KB < ng; c++) {
			for (t = c * FAST_KB; t < ng && t < (c + 1) * FAST_KB;
			     t++)
				w->posn[w->u[t]] = ns * FAST_KB +
						   (t - c * FAST_KB);
			seg[ns] = -(c + 1);
			segn[ns++] = ng - c * FAST_KB < FAST_KB ?
				     ng - c * FAST_KB : FAST_KB;
		}
		ks->nseg = ns;
	}
	memset(w->bits, 0, sizeof(uint64_t) * FAST_TQ * ks->nseg);
	for (r = 0; r < nr; r++) {
		const int32_t *rk = w->rk + (size_t)r * job->p->Nk;

		for (t = 0; t < w->rn[r]; t++) {
			int64_t pos = gr->want_d ? rk[t] - ks->first * FAST_KB
						 : w->posn[rk[t]];

			w->bits[(pos >> 6) * FAST_TQ + r] |=
				1ull << (pos & 63);
		}
	}
}

static float gate_value(const struct asam_problem *p, int b, int h)
{
	return (float)tv_get(&p->gate, tv_off(&p->gate, b, h, 0, 0));
}

/* Fill @gr for group @g of (b, h); false when the group is empty. */
bool fast_group_init(struct fast_job *job, struct group *gr, int b, int h,
		       int g)
{
	const struct asam_problem *p = job->p;
	int r;

	gr->R = fast_plan_group(&job->fp, b, h, g, gr->rows);
	if (!gr->R)
		return false;
	gr->b = b;
	gr->h = h;
	gr->hk = h / job->group;
	gr->want_s = problem_needs_sparse(p);
	gr->want_d = problem_needs_dense(p);
	gr->g = p->gate_mode == ASAM_GATE_SPARSE ? 1 :
		p->gate_mode == ASAM_GATE_DENSE ? 0 : gate_value(p, b, h);
	if (p->gate_mode == ASAM_GATE_HARD) {
		gr->want_s = gr->g >= p->hard_tau;
		gr->want_d = !gr->want_s;
		gr->g = gr->want_s;
	}
	gr->s_is_d = p->pat.kind == ASAM_PATTERN_DENSE;
	gr->k0 = 0;
	gr->k1 = INT64_MAX;
	gr->maxlim = 0;
	for (r = 0; r < gr->R; r++) {
		gr->lim[r] = problem_key_limit(p, b, gr->rows[r]);
		if (gr->lim[r] > gr->maxlim)
			gr->maxlim = gr->lim[r];
	}
	return true;
}

