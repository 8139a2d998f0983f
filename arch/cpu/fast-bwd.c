// SPDX-License-Identifier: MIT
/*
 * The backward: probabilities recomputed from the saved log-sum-exps,
 * dS = P (dP - D) per branch, and dQ, dK, dV (and dg for SOFT).  Two
 * schedules: one fused pass per (b, kv head) when those are plentiful,
 * else a dQ pass over query groups and a dK/dV pass over key chunks.
 * Every output row has one writer; the results are deterministic.
 */
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include <internal/err.h>
#include <internal/log.h>

#include "fast-job.h"

/* ------------------------------------------------------------------------ */
/* Backward                                                                 */

/* P = exp(S - lse) on the mask; lse -inf gives 0 */
static void probs(const struct fast_job *job, const struct fast_ws *w,
		  const struct keyset *ks, const struct group *gr, int sg,
		  bool sparse, const float *lse, float *P)
{
	float sum;
	int r;

	for (r = 0; r < gr->R; r++) {
		uint64_t mask = row_mask(w, ks, gr, r, sg, sparse);

		if (!mask || lse[r] == -INFINITY) {
			memset(P + r * FAST_KB, 0, sizeof(float) * FAST_KB);
			continue;
		}
		job->isa->row_step(w->S + r * FAST_KB, mask, lse[r], false,
				   P + r * FAST_KB, &sum);
	}
}

/*
 * Add the shared key set's dK, dV sums (w->bdK, w->bdV by position)
 * into the keys' rows of w->dK, w->dV, and forget the set.
 */
#define FLUSH_AHEAD	8	/* keys */

static void bucket_flush(const struct fast_job *job, struct fast_ws *w)
{
	int dp = job->dp, e;
	int64_t t;

	for (t = 0; t < w->an; t++) {
		float *rk = w->dK + (size_t)w->au[t] * dp;
		float *rv = w->dV + (size_t)w->au[t] * dp;
		const float *sk = w->bdK + (size_t)t * dp;
		const float *sv = w->bdV + (size_t)t * dp;

		/* a cluster's keys are scattered: their rows a few ahead */
		if (t + FLUSH_AHEAD < w->an) {
			const float *nk = w->dK + (size_t)w->au[t + FLUSH_AHEAD] *
					  dp;
			const float *nv = w->dV + (size_t)w->au[t + FLUSH_AHEAD] *
					  dp;

			for (e = 0; e < dp; e += 16) {
				__builtin_prefetch(nk + e, 1, 3);
				__builtin_prefetch(nv + e, 1, 3);
			}
		}

		for (e = 0; e < dp; e++) {
			rk[e] += sk[e];
			rv[e] += sv[e];
		}
	}
	w->au = NULL;
	w->an = w->azero = 0;
}

/*
 * A shared key set's segment (STRIDED and HIERARCHICAL columns, a
 * cluster's bucket): every group of the head or cluster adds into the
 * same keys, so its sums go to per-position rows that bucket_flush adds
 * into dK and dV once, rather than a cleared block and an add into
 * every key row a group (acc_tn and its clears were 16 % of a one-thread
 * HIERARCHICAL backward).  NULL: not such a segment.
 */
static float *bucket_rows(const struct fast_job *job, struct fast_ws *w,
			  const struct keyset *ks, const struct group *gr,
			  int sg, bool v)
{
	int64_t c, end;
	size_t seg = FAST_KB * (size_t)job->dp;

	if (!ks->bucket || sg == ks->bsg || ks->seg[sg] >= 0 || !w->bdK)
		return NULL;
	if (w->au != ks->u || w->ab != gr->b || w->ahk != gr->hk) {
		if (w->au)
			bucket_flush(job, w);
		w->au = ks->u;
		w->ab = gr->b;
		w->ahk = gr->hk;
	}
	c = -ks->seg[sg] - 1;
	end = c * FAST_KB + ks->segn[sg];
	/* the same list grown (causal groups): clear the new segments */
	for (; w->azero <= c * FAST_KB; w->azero += FAST_KB) {
		memset(w->bdK + w->azero * job->dp, 0, sizeof(float) * seg);
		memset(w->bdV + w->azero * job->dp, 0, sizeof(float) * seg);
	}
	if (end > w->an)
		w->an = end;
	return (v ? w->bdV : w->bdK) + c * seg;
}

/* dst[key][.] += sum_r a[r][t] x[r][.] over segment @sg's keys */
static void acc_tn(const struct fast_job *job, struct fast_ws *w,
		   const float *a, int R, const float *x,
		   const struct keyset *ks, const struct group *gr, int sg,
		   float *dst)
{
	int dp = job->dp, nb = ks->segn[sg], t, e;
	const int32_t *keys;
	float *acc;

	/* a read transposed: row t of the product is column t of a */
	if (ks->seg[sg] >= 0) {
		job->isa->mm_tn(a, FAST_KB, nb, R, x, dp,
				dst + (size_t)ks->seg[sg] * FAST_KB * dp);
		return;
	}
	acc = bucket_rows(job, w, ks, gr, sg, dst == w->dV);
	if (acc) {
		job->isa->mm_tn(a, FAST_KB, nb, R, x, dp, acc);
		return;
	}
	memset(w->tk, 0, sizeof(float) * FAST_KB * dp);
	job->isa->mm_tn(a, FAST_KB, nb, R, x, dp, w->tk);
	keys = seg_keys(ks, sg);
	for (t = 0; t < nb; t++) {
		float *row = dst + (size_t)keys[t] * dp;
		const float *src = w->tk + t * dp;

		for (e = 0; e < dp; e++)
			row[e] += src[e];
	}
}

/*
 * A one-row group of the sparse branch alone (RANDOM_ROWS, USER_INDEX,
 * soft clusters), as the forward's rows: dot products and value sums
 * straight from the scattered key rows, no gathers into blocks.
 * dS = P (dP - D); dQ = scale dS . K; dV[j] += P_j dO and dK[j] += dS_j
 * (scale q) for the keys of [k0, k1) (one writer per key chunk).
 *
 * @part (row-only calls, fused; 0 otherwise): [k0, k1) is one L2 chunk
 * of several (bwd_keys_rows), 1 the first and 2 the last: D is computed
 * at the first and kept in w->dD, dQ is summed in w->dqa and stored at
 * the last.
 */
static double bwd_row(struct fast_job *job, struct fast_ws *w,
		      const struct group *gr, enum bwd_mode mode, int part,
		      int64_t slot)
{
	const struct asam_problem *p = job->p;
	const struct fast_isa *isa = job->isa;
	int dp = job->dp, d = p->d, e;
	int64_t n = 0, i = gr->rows[0], ks, vs, t;
	const float *kb = fast_rows_of(job, false, gr->b, gr->hk, &ks);
	const float *vb = fast_rows_of(job, true, gr->b, gr->hk, &vs);
	float *P = w->srow, *dS = w->srow2, *Dr, lse, D;
	float *dq = part ? w->dqa + slot * dp : w->dq;
	const int32_t *keys = w->rk;
	bool first = part & 1, last = part & 2;

	if (part && first)
		memset(dq, 0, sizeof(float) * dp);
	if (part && part != 7 && w->bkeys) {
		/*
		 * L2 chunks of a RANDOM_ROWS or USER_INDEX row: its list in
		 * chunk order once, at the first chunk (kept for the head's
		 * rows), then each chunk takes the keys below its end from
		 * the cursor on: no list rebuilt, no scan of the whole list
		 * a chunk.
		 */
		int64_t m = 0, rem;

		if (first) {
			int32_t *buf = w->blist ? w->blist + slot * job->ucap :
				       w->rk;

			w->bkeys[slot] = fast_rows_keys(job, w, gr, job->rchunk,
							buf, &n);
			w->brn[slot] = (int32_t)n;
			w->bcur[slot] = 0;
		}
		keys = w->bkeys[slot] + w->bcur[slot];
		rem = w->brn[slot] - w->bcur[slot];
		while (m < rem && keys[m] < gr->k1)
			m++;
		w->bcur[slot] += (int32_t)m;
		n = m;
	} else {
		/* one chunk: the list as it comes, no bucketing */
		keys = fast_rows_keys(job, w, gr, INT64_MAX / 2, w->rk, &n);
	}
	if (mode == BWD_DKV || (part && part != 7 && !w->bkeys)) {
		/* this chunk's keys only: the other chunks have their pass */
		int64_t m = 0;

		for (t = 0; t < n; t++)
			if (keys[t] >= gr->k0 && keys[t] < gr->k1)
				w->rk[m++] = keys[t];
		keys = w->rk;
		n = m;
	}
	lse = (float)tv_get(&p->lse_s, tv_off(&p->lse_s, gr->b, gr->h, i, 0));
	if (!gr->lim[0] || lse == -INFINITY)
		n = 0;
	if (part && !n && !first && !last)
		return 0;	/* nothing in this chunk, nothing to store */
	fast_load_row(&p->q, tv_off(&p->q, gr->b, gr->h, i, 0), d, w->q);
	for (e = 0; e < d; e++)
		w->q[e] *= job->scale;
	fast_load_row(&p->d_o, tv_off(&p->d_o, gr->b, gr->h, i, 0), d, w->dO);
	Dr = job->D ? job->D + (((int64_t)gr->b * p->Hq + gr->h) * p->Nq +
				i) * 2 : NULL;
	if (mode == BWD_DKV) {
		D = Dr[0];
	} else if (part && !first) {
		D = w->dD[slot];
	} else {
		double acc = 0;

		fast_load_row(&p->o, tv_off(&p->o, gr->b, gr->h, i, 0), d,
			      w->o);
		for (e = 0; e < d; e++)
			acc += (double)w->dO[e] * w->o[e];
		D = (float)acc;
		if (mode == BWD_DQ)
			Dr[0] = Dr[1] = D;
		if (part)
			w->dD[slot] = D;
	}
	if (!part)
		memset(dq, 0, sizeof(float) * dp);
	if (n) {
		isa->dots(w->q, dp, kb, ks, keys, (int)n, P);
		for (t = 0; t < n; t++)
			P[t] -= lse;
		isa->exp(P, (int)n);
		isa->dots(w->dO, dp, vb, vs, keys, (int)n, dS);
		for (t = 0; t < n; t++)
			dS[t] = P[t] * (dS[t] - D);
		if (mode != BWD_DKV)
			isa->axpys(dS, kb, ks, keys, (int)n, dp, dq);
	}
	if (mode != BWD_DKV && (!part || last)) {
		for (e = 0; e < d; e++)
			w->o[e] = dq[e] * job->scale;
		fast_store_row(&p->dq, tv_off(&p->dq, gr->b, gr->h, i, 0), d,
			       w->o);
	}
	/* FUSED: [k0, k1) is every key; DKV: keys were cut to it above */
	if (n && mode != BWD_DQ)
		isa->ger2s(P, w->dO, dS, w->q, w->dV, w->dK, keys, (int)n, dp);
	return 0;
}

/* the tile's @R rows of dQ (w->tacc, unscaled) to rows @rows of (b, h) */
static void bwd_store_dq(struct fast_job *job, struct fast_ws *w, int b,
			 int h, const int32_t *rows, int R)
{
	const struct asam_problem *p = job->p;
	int dp = job->dp, d = p->d, t, e;

	for (t = 0; t < R; t++) {
		const float *acc = w->tacc + (size_t)t * dp;

		for (e = 0; e < d; e++)
			w->o[e] = acc[e] * job->scale;
		fast_store_row(&p->dq, tv_off(&p->dq, b, h, rows[t], 0), d,
			       w->o);
	}
}

/*
 * Row @i of (b, h) as row @R of a row-list backward tile: its key list
 * (in chunks of @C keys; kept in w->rk from *@off when built here), its
 * lse, q scaled, dO and D = <dO, O>; false when the row takes no part.
 * @gr gets the row's limits.
 */
static bool bwd_row_init(struct fast_job *job, struct fast_ws *w, int b,
			 int h, int64_t i, int R, int64_t C, int64_t *off,
			 struct group *gr)
{
	const struct asam_problem *p = job->p;
	int dp = job->dp, d = p->d, e;
	float *q = w->tq + (size_t)R * dp, *dO = w->tdo + (size_t)R * dp;
	double acc = 0;
	int64_t n;

	if (!fast_group_init(job, gr, b, h, (int)i))
		return false;
	w->tkeys[R] = fast_rows_keys(job, w, gr, C, w->rk + *off, &n);
	if (w->tkeys[R] == w->rk + *off)
		*off += n;
	w->tm[R] = (float)tv_get(&p->lse_s, tv_off(&p->lse_s, b, h, i, 0));
	if (!gr->lim[0] || w->tm[R] == -INFINITY)
		n = 0;
	w->tn[R] = (int32_t)n;
	fast_load_row(&p->q, tv_off(&p->q, b, h, i, 0), d, q);
	for (e = 0; e < d; e++)
		q[e] *= job->scale;
	fast_load_row(&p->d_o, tv_off(&p->d_o, b, h, i, 0), d, dO);
	fast_load_row(&p->o, tv_off(&p->o, b, h, i, 0), d, w->o);
	for (e = 0; e < d; e++)
		acc += (double)dO[e] * w->o[e];
	w->tl[R] = (float)acc;
	return true;
}

/*
 * Row-only calls: dQ of rows [r0, r1) of (b, h) as one tile over L2-sized
 * key chunks, like the forward's tiles; D of each row for the dK/dV pass.
 */
static void bwd_dq_tile(struct fast_job *job, struct fast_ws *w, int b,
			int h, int64_t r0, int64_t r1)
{
	const struct asam_problem *p = job->p;
	const struct fast_isa *isa = job->isa;
	int dp = job->dp, R = 0, t;
	int64_t C = fast_rows_chunk(job, 2), off = 0, maxlim = 0, lo, i;
	int64_t ks, vs;
	const float *kb = fast_rows_of(job, false, b, h / job->group, &ks);
	const float *vb = fast_rows_of(job, true, b, h / job->group, &vs);
	float *P = w->srow, *dS = w->srow2;
	int32_t rows[FAST_RT];
	struct group gr;

	for (i = r0; i < r1; i++) {
		float *Dr = job->D + (((int64_t)b * p->Hq + h) * p->Nq + i) * 2;

		if (!bwd_row_init(job, w, b, h, i, R, C, &off, &gr))
			continue;
		w->tcur[R] = 0;
		Dr[0] = Dr[1] = w->tl[R];
		memset(w->tacc + (size_t)R * dp, 0, sizeof(float) * dp);
		if (gr.lim[0] > maxlim)
			maxlim = gr.lim[0];
		rows[R++] = (int32_t)i;
	}
	for (lo = 0; lo < maxlim; lo += C) {
		for (t = 0; t < R; t++) {
			int c, x;
			const int32_t *keys = fast_rows_take(w, t, lo, C,
							     maxlim, &c);

			if (!c)
				continue;
			isa->dots(w->tq + (size_t)t * dp, dp, kb, ks, keys, c,
				  P);
			for (x = 0; x < c; x++)
				P[x] -= w->tm[t];
			isa->exp(P, c);
			isa->dots(w->tdo + (size_t)t * dp, dp, vb, vs, keys, c,
				  dS);
			for (x = 0; x < c; x++)
				dS[x] = P[x] * (dS[x] - w->tl[t]);
			isa->axpys(dS, kb, ks, keys, c, dp,
				   w->tacc + (size_t)t * dp);
		}
	}
	bwd_store_dq(job, w, b, h, rows, R);
}

/*
 * Row-only calls, fused, key-major (fast-kmajor.c): rows [r0, r1) of
 * (b, h) as one tile, their dQ stored, their dK and dV added into the
 * worker's head sums.
 */
static void bwd_tile_km(struct fast_job *job, struct fast_ws *w, int b,
			int h, int64_t r0, int64_t r1)
{
	int R = 0;
	int64_t off = 0, i, ks, vs;
	const float *kb = fast_rows_of(job, false, b, h / job->group, &ks);
	const float *vb = fast_rows_of(job, true, b, h / job->group, &vs);
	int32_t rows[FAST_RT];
	struct group gr;

	for (i = r0; i < r1; i++)
		if (bwd_row_init(job, w, b, h, i, R, INT64_MAX / 2, &off, &gr))
			rows[R++] = (int32_t)i;
	fast_km_bwd(job, w, R, kb, ks, vb, vs);
	bwd_store_dq(job, w, b, h, rows, R);
}

/* items (b, h, tile of job->rt rows): row-only dQ and D */
static void bwd_dq_tiles(void *arg, int64_t begin, int64_t end, int worker)
{
	fast_rows_items(arg, begin, end, worker, bwd_dq_tile);
}

static double bwd_group(struct fast_job *job, struct fast_ws *w,
			const struct group *gr, enum bwd_mode mode)
{
	const struct asam_problem *p = job->p;
	const struct fast_isa *isa = job->isa;
	int dp = job->dp, d = p->d, R = gr->R, r, e, t, nb, sg;
	float lse_s[FAST_TQ], lse_d[FAST_TQ], Ds[FAST_TQ], Dd[FAST_TQ];
	float gs = gr->g, gd = 1 - gr->g;
	struct keyset ks;
	double dg = 0;

	if (gr->R == 1 && job->fp.group_rows == 1 && gr->want_s &&
	    !gr->want_d && !gr->s_is_d)
		return bwd_row(job, w, gr, mode, 0, 0);
	fast_build_keys(job, w, gr, &ks);
	for (r = 0; r < R; r++) {
		int64_t i = gr->rows[r];

		fast_load_row(&p->q, tv_off(&p->q, gr->b, gr->h, i, 0), d,
			 w->q + r * dp);
		for (e = 0; e < d; e++)
			w->q[r * dp + e] *= job->scale;
		fast_load_row(&p->d_o, tv_off(&p->d_o, gr->b, gr->h, i, 0), d,
			 w->dO + r * dp);
		lse_s[r] = gr->want_s ? (float)tv_get(&p->lse_s,
				tv_off(&p->lse_s, gr->b, gr->h, i, 0)) : 0;
		lse_d[r] = gr->want_d ? (float)tv_get(&p->lse_d,
				tv_off(&p->lse_d, gr->b, gr->h, i, 0)) : 0;
		if (!gr->lim[r])
			lse_s[r] = lse_d[r] = -INFINITY;
	}
	memset(w->dq, 0, sizeof(float) * FAST_TQ * dp);
	memset(w->accS, 0, sizeof(float) * FAST_TQ * dp);
	memset(w->accA, 0, sizeof(float) * FAST_TQ * dp);

	if (mode == BWD_DKV) {
		/* D of every row from the dQ pass */
		for (r = 0; r < R; r++) {
			const float *Dr = job->D + (((int64_t)gr->b * p->Hq +
					  gr->h) * p->Nq + gr->rows[r]) * 2;

			Ds[r] = Dr[0];
			Dd[r] = Dr[1];
		}
		if (!(gr->want_s && gr->want_d)) {
			gs = gr->want_s ? 1 : 0;
			gd = gr->want_d ? 1 : 0;
		}
	} else if (gr->want_s && gr->want_d) {
		/* SOFT: the branch outputs S and A, for D and dg */
		for (sg = 0; sg < ks.nseg; sg++) {
			nb = ks.segn[sg];
			fast_gather(job, w, &ks, gr->b, gr->hk, sg, false);
			isa->mm_nt(w->q, R, dp, w->pkT, w->S);
			probs(job, w, &ks, gr, sg, true, lse_s, w->Ps);
			probs(job, w, &ks, gr, sg, false, lse_d, w->Pd);
			isa->mm_nn(w->Ps, FAST_KB, R, nb, w->pvb, dp, w->accS);
			isa->mm_nn(w->Pd, FAST_KB, R, nb, w->pvb, dp, w->accA);
		}
		for (r = 0; r < R; r++) {
			double ds = 0, da = 0;

			for (e = 0; e < d; e++) {
				ds += (double)w->dO[r * dp + e] *
				      w->accS[r * dp + e];
				da += (double)w->dO[r * dp + e] *
				      w->accA[r * dp + e];
			}
			Ds[r] = gs * ds;
			Dd[r] = gd * da;
			dg += ds - da;
		}
	} else {
		/* one branch: its output is O itself */
		for (r = 0; r < R; r++) {
			double D = 0;

			fast_load_row(&p->o, tv_off(&p->o, gr->b, gr->h,
					       gr->rows[r], 0), d, w->o);
			for (e = 0; e < d; e++)
				D += (double)w->dO[r * dp + e] * w->o[e];
			Ds[r] = Dd[r] = D;
		}
		gs = gr->want_s ? 1 : 0;
		gd = gr->want_d ? 1 : 0;
	}
	if (mode == BWD_DQ)
		for (r = 0; r < R; r++) {
			float *Dr = job->D + (((int64_t)gr->b * p->Hq + gr->h) *
				    p->Nq + gr->rows[r]) * 2;

			Dr[0] = Ds[r];
			Dr[1] = Dd[r];
		}

	for (sg = 0; sg < ks.nseg; sg++) {
		bool any = false;

		nb = ks.segn[sg];
		for (r = 0; r < R && !any; r++)
			any = (gr->want_s && row_mask(w, &ks, gr, r, sg, true)) ||
			      (gr->want_d && row_mask(w, &ks, gr, r, sg, false));
		if (!any)
			continue;
		fast_gather(job, w, &ks, gr->b, gr->hk, sg, true);
		isa->mm_nt(w->q, R, dp, w->pkT, w->S);
		isa->mm_nt(w->dO, R, dp, w->pvT, w->dP);
		if (gr->want_s)
			probs(job, w, &ks, gr, sg, true, lse_s, w->Ps);
		if (gr->want_d)
			probs(job, w, &ks, gr, sg, false, lse_d, w->Pd);
		/* Pmix into Ps, dS into S */
		for (r = 0; r < R; r++) {
			float *ps = w->Ps + r * FAST_KB, *pd = w->Pd + r * FAST_KB;
			float *dpr = w->dP + r * FAST_KB, *s = w->S + r * FAST_KB;

			for (t = 0; t < FAST_KB; t++) {
				float a = gr->want_s ? ps[t] : 0;
				float b = gr->want_d ? pd[t] : 0;

				s[t] = a * (gs * dpr[t] - Ds[r]) +
				       b * (gd * dpr[t] - Dd[r]);
				ps[t] = gs * a + gd * b;
			}
		}
		if (mode != BWD_DQ) {
			acc_tn(job, w, w->Ps, R, w->dO, &ks, gr, sg, w->dV);
			acc_tn(job, w, w->S, R, w->q, &ks, gr, sg, w->dK);
		}
		if (mode != BWD_DKV)
			isa->mm_nn(w->S, FAST_KB, R, nb, w->pkb, dp, w->dq);
	}
	for (r = 0; r < R && mode != BWD_DKV; r++) {
		for (e = 0; e < d; e++)
			w->dq[r * dp + e] *= job->scale;
		fast_store_row(&p->dq, tv_off(&p->dq, gr->b, gr->h, gr->rows[r], 0),
			  d, w->dq + r * dp);
	}
	return dg;
}

/*
 * Row-only calls: dK, dV of keys [k0, k1) of (b, hk) in L2-sized chunks,
 * every row of the group's heads taking its keys of one chunk before the
 * next (fast-rows.c); fused, each row's dQ is summed over the chunks.
 */
static void prefetch_row(const struct asam_tv *t, int b, int h, int64_t i,
			 size_t bytes)
{
	const char *x = (const char *)t->data +
			tv_off(t, b, h, i, 0) * asam_dtype_size(t->dt);
	size_t o;

	for (o = 0; o < bytes; o += 64)
		__builtin_prefetch(x + o);
}

/*
 * A chunk pass walks every row of the head for a few keys each: fetch
 * row @i's q, dO, dQ sums and list position ahead, as the key rows are
 * (mostly) in L2 and these are not.
 */
static void rows_prefetch(const struct fast_job *job,
			  const struct fast_ws *w, int b, int h, int64_t i,
			  int64_t slot, bool first)
{
	const struct asam_problem *p = job->p;
	size_t row = asam_dtype_size(p->q.dt) * p->d;

	if (i >= p->Nq)
		return;
	prefetch_row(&p->q, b, h, i, row);
	prefetch_row(&p->d_o, b, h, i, row);
	__builtin_prefetch(w->dqa + slot * job->dp);
	__builtin_prefetch(w->dqa + slot * job->dp + job->dp - 1);
	if (!first && w->bkeys)
		__builtin_prefetch(w->bkeys[slot] + w->bcur[slot]);
}

static void bwd_keys_rows(struct fast_job *job, struct fast_ws *w, int b,
			  int hk, int64_t k0, int64_t k1, enum bwd_mode mode)
{
	const struct asam_problem *p = job->p;
	int64_t C = job->rchunk, lo, hi, i;
	struct group gr;
	int h, part;

	if (k1 > p->Nk)
		k1 = p->Nk;
	for (lo = k0; lo < k1 || lo == k0; lo += C) {
		hi = lo + C < k1 ? lo + C : k1;
		/* 4: a chunk of the row's keys; 1: the first; 2: the last */
		part = 4 | (lo == k0 ? 1 : 0) | (hi >= k1 ? 2 : 0);
		for (h = hk * job->group; h < (hk + 1) * job->group; h++)
			for (i = 0; i < p->Nq; i++) {
				if (part != 7)
					rows_prefetch(job, w, b, h, i + 2,
						      (h - hk * job->group) *
						      p->Nq + i + 2, part & 1);
				if (!fast_group_init(job, &gr, b, h, (int)i))
					continue;
				gr.k0 = lo;
				gr.k1 = hi;
				bwd_row(job, w, &gr, mode,
					mode == BWD_FUSED ? part : 0,
					(h - hk * job->group) * p->Nq + i);
			}
		if (hi >= k1)
			break;
	}
}

/* dK, dV of keys [k0, k1) of (b, hk) over every query head sharing them */
/*
 * CLUSTERED's groups take a cluster's rows, scattered over Q, dO, O and
 * dQ: ask for group @g's while the groups before it compute, as the
 * forward does (their loads were 15 % of a one-thread backward, N 4096,
 * d 64; into the L2, which keeps more misses in flight than the L1:
 * 7.4-7.9 -> 6.5-7.2 ms, where the L1 took 7.1-8.4)
 */
static void bwd_prefetch_group(const struct fast_job *job, int b, int h,
			       int g)
{
	const struct asam_problem *p = job->p;
	int32_t rows[FAST_TQ];
	int n, r;

	if (g >= job->fp.maxgroups)
		return;
	n = fast_plan_group(&job->fp, b, h, g, rows);
	for (r = 0; r < n; r++) {
		fast_prefetch_l2(&p->q, tv_off(&p->q, b, h, rows[r], 0), p->d);
		fast_prefetch_l2(&p->d_o, tv_off(&p->d_o, b, h, rows[r], 0),
				 p->d);
		fast_prefetch_l2(&p->o, tv_off(&p->o, b, h, rows[r], 0), p->d);
		fast_prefetch_l2(&p->dq, tv_off(&p->dq, b, h, rows[r], 0),
				 p->d);
	}
}

static void bwd_keys(struct fast_job *job, struct fast_ws *w, int b, int hk,
		     int64_t k0, int64_t k1, enum bwd_mode mode)
{
	const struct asam_problem *p = job->p;
	int dp = job->dp, g, h;
	struct group gr;
	int64_t j;

	memset(w->dK + k0 * dp, 0, sizeof(float) * (k1 - k0) * dp);
	memset(w->dV + k0 * dp, 0, sizeof(float) * (k1 - k0) * dp);
	if (job->rows_only && job->kmajor && mode == BWD_FUSED) {
		int64_t r0;

		for (h = hk * job->group; h < (hk + 1) * job->group; h++)
			for (r0 = 0; r0 < p->Nq; r0 += job->rt)
				bwd_tile_km(job, w, b, h, r0,
					    r0 + job->rt < p->Nq ?
					    r0 + job->rt : p->Nq);
	} else if (job->rows_only) {
		bwd_keys_rows(job, w, b, hk, k0, k1, mode);
	}
	for (h = hk * job->group;
	     h < (hk + 1) * job->group && !job->rows_only; h++) {
		double dg = 0;

		for (g = 0; g < job->fp.maxgroups; g++) {
			if (job->fp.sorted_groups)
				bwd_prefetch_group(job, b, h, g + 2);
			if (!fast_group_init(job, &gr, b, h, g))
				continue;
			if (mode == BWD_DKV && gr.maxlim <= k0 && gr.want_d)
				continue;	/* the causal tail of a chunk */
			gr.k0 = k0;
			gr.k1 = k1;
			dg += bwd_group(job, w, &gr, mode);
		}
		if (mode == BWD_FUSED && p->gate_mode == ASAM_GATE_SOFT)
			tv_set(&p->dgate, tv_off(&p->dgate, b, h, 0, 0), dg);
	}
	if (w->au)
		bucket_flush(job, w);
	for (j = k0; j < k1 && j < p->Nk; j++) {
		fast_store_row(&p->dk, tv_off(&p->dk, b, hk, j, 0), p->d,
			  w->dK + j * dp);
		fast_store_row(&p->dv, tv_off(&p->dv, b, hk, j, 0), p->d,
			  w->dV + j * dp);
	}
}

/* items (b, kv head): everything in one pass, no shared writes */
static void bwd_fused(void *arg, int64_t begin, int64_t end, int worker)
{
	struct fast_job *job = arg;
	struct fast_ws *w = fast_ws_get(job, worker);
	int64_t it;

	if (!w) {
		atomic_store(&job->err, -ENOMEM);
		return;
	}
	for (it = begin; it < end; it++)
		bwd_keys(job, w, it / job->p->Hkv, it % job->p->Hkv, 0,
			 job->nkb * FAST_KB, BWD_FUSED);
}

/* items (b, h, group): dQ, the rows' D terms and dg partials */
static void bwd_dq(void *arg, int64_t begin, int64_t end, int worker)
{
	struct fast_job *job = arg;
	const struct asam_problem *p = job->p;
	struct fast_ws *w = fast_ws_get(job, worker);
	int64_t it, per = job->fp.maxgroups;
	struct group gr;

	if (!w) {
		atomic_store(&job->err, -ENOMEM);
		return;
	}
	for (it = begin; it < end; it++) {
		int64_t bh = it / per;

		job->dgp[it] = 0;
		if (fast_group_init(job, &gr, bh / p->Hq, bh % p->Hq, it % per))
			job->dgp[it] = bwd_group(job, w, &gr, BWD_DQ);
	}
}

/* items (b, kv head, key chunk): dK and dV of the chunk */
static void bwd_dkv(void *arg, int64_t begin, int64_t end, int worker)
{
	struct fast_job *job = arg;
	struct fast_ws *w = fast_ws_get(job, worker);
	int64_t it;

	if (!w) {
		atomic_store(&job->err, -ENOMEM);
		return;
	}
	for (it = begin; it < end; it++) {
		int64_t bhk = it / job->nchunks, c = it % job->nchunks;
		int64_t k0 = c * job->chunk, k1 = k0 + job->chunk;

		if (k1 > job->nkb * FAST_KB)
			k1 = job->nkb * FAST_KB;
		if (k0 < k1)
			bwd_keys(job, w, bhk / job->p->Hkv, bhk % job->p->Hkv,
				 k0, k1, BWD_DKV);
	}
}

/* Run the backward of @job on @pool; 0 or -ENOMEM. */
int fast_bwd_run(struct fast_job *job, struct asam_pool *pool)
{
	const struct asam_problem *p = job->p;
	int64_t items = (int64_t)p->B * p->Hkv;
	int64_t waves = DIV_ROUND_UP(items, job->nthreads);

	/* the fused row-only schedule's L2 chunks (bwd_keys_rows) */
	job->rchunk = fast_rows_chunk(job, 4);
	if (job->rows_only && p->pat.kind == ASAM_PATTERN_USER_INDEX &&
	    job->rchunk < p->Nk)
		job->ucap = (p->pat.r < p->Nk ? p->pat.r : p->Nk) + 1;

	/*
	 * Enough (b, kv head) items to keep every worker busy (whole waves
	 * at least 3/4 full): one fused pass.  Otherwise dQ over query
	 * groups, then dK/dV over key chunks, at the price of computing
	 * the scores twice: measured 10-35 % slower than fused for every
	 * pattern at 2 heads on 2 workers (build host), so it is worth it
	 * only when fused would leave workers idle.
	 */
	if (items >= job->nthreads && 4 * items >= 3 * waves * job->nthreads)
		job->nchunks = 1;
	else
		job->nchunks = DIV_ROUND_UP(2 * job->nthreads, items);
	if (job->nchunks > job->nkb)
		job->nchunks = job->nkb;
	if (job->nchunks <= 1) {
		asam_pool_for(pool, (int64_t)p->B * p->Hkv, 1, bwd_fused, job);
	} else {
		int64_t nbh = (int64_t)p->B * p->Hq, g, i;

		job->chunk = DIV_ROUND_UP(job->nkb, job->nchunks) * FAST_KB;
		job->D = malloc(sizeof(float) * 2 * nbh * p->Nq);
		job->dgp = malloc(sizeof(double) * nbh * job->fp.maxgroups);
		if (!job->D || !job->dgp) {
			atomic_store(&job->err, -ENOMEM);
			goto out;
		}
		if (job->rows_only) {
			job->rt = fast_rows_tile(job, fast_rows_cap(false), true);
			asam_pool_for(pool, nbh * DIV_ROUND_UP(p->Nq, job->rt),
				      1, bwd_dq_tiles, job);
		} else {
			asam_pool_for(pool, nbh * job->fp.maxgroups,
				      job->fp.group_rows == 1 ? 16 : 1,
				      bwd_dq, job);
		}
		if (atomic_load(&job->err))
			goto out;
		asam_pool_for(pool, (int64_t)p->B * p->Hkv * job->nchunks, 1,
			      bwd_dkv, job);
		for (i = 0; i < nbh && p->gate_mode == ASAM_GATE_SOFT; i++) {
			double dg = 0;

			for (g = 0; g < job->fp.maxgroups; g++)
				dg += job->dgp[i * job->fp.maxgroups + g];
			tv_set(&p->dgate, tv_off(&p->dgate, i / p->Hq,
						 i % p->Hq, 0, 0), dg);
		}
	}
out:
	free(job->D);
	free(job->dgp);
	return atomic_load(&job->err);
}
