// SPDX-License-Identifier: MIT
/*
 * The forward: per group, Q.K^T over each key segment, the masked online
 * softmax of one or two branches sharing the scores, P.V, and the gated
 * output with the log-sum-exps.  The per-row patterns walk row tiles
 * (fwd_tile) with no gather.
 */
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include <internal/err.h>
#include <internal/log.h>

#include "fast-job.h"

#ifdef __SSE__
#include <xmmintrin.h>
#endif

/* One branch's online softmax step over a block; false if nothing moved. */
static bool online_step(const struct fast_job *job, struct fast_ws *w,
			const struct keyset *ks, const struct group *gr,
			int sg, bool sparse, float *m, float *l, float *acc,
			float *P)
{
	const struct fast_isa *isa = job->isa;
	int dp = job->dp, r, e;
	bool any = false;

	for (r = 0; r < gr->R; r++) {
		uint64_t mask = row_mask(w, ks, gr, r, sg, sparse);
		const float *s = w->S + r * FAST_KB;
		float mnew, alpha, sum;

		if (!mask) {
			memset(P + r * FAST_KB, 0, sizeof(float) * FAST_KB);
			continue;
		}
		any = true;
		mnew = isa->row_step(s, mask, m[r], true, P + r * FAST_KB, &sum);
		if (mnew != m[r] && m[r] != -INFINITY) {
			alpha = expf(m[r] - mnew);
			l[r] *= alpha;
			for (e = 0; e < dp; e++)
				acc[r * dp + e] *= alpha;
		}
		m[r] = mnew;
		l[r] += sum;
	}
	return any;
}

/* Rows of (b, hk) in K (or V) as base + j * stride, fp32. */
const float *fast_rows_of(const struct fast_job *job, bool v, int b,
			    int hk, int64_t *stride)
{
	const struct asam_problem *p = job->p;
	const struct asam_tv *t = v ? &p->v : &p->k;

	if (v ? job->vdirect : job->kdirect) {
		*stride = t->stride[2];
		return (const float *)t->data + tv_off(t, b, hk, 0, 0);
	}
	*stride = job->dp;
	return (v ? job->V32 : job->K32) +
	       ((int64_t)b * p->Hkv + hk) * job->nkb * FAST_KB * job->dp;
}

/*
 * A row's gated output from the branches the group takes: the sums of
 * one it does not take were never cleared (and are left out, not
 * multiplied by 0); two loops with no test inside, so both vectorise
 */
static void fwd_out_row(const struct group *gr, float cs, const float *as,
			float cd, const float *ad, int d, float *out)
{
	int e;

	if (gr->want_s && gr->want_d) {
		for (e = 0; e < d; e++)
			out[e] = cs * as[e] + cd * ad[e];
		return;
	}
	if (!gr->want_s) {
		cs = cd;
		as = ad;
	}
	for (e = 0; e < d; e++)
		out[e] = cs * as[e];
}

/*
 * CLUSTERED's output rows are scattered over O, each written once and
 * whole: stored around the caches (fast_fwd_setup), they need not be
 * read first, as a store that misses does
 */
static void fwd_stream_row(float *dst, const float *src, int d)
{
#ifdef __SSE__
	int e;

	for (e = 0; e < d; e += 4)
		_mm_stream_ps(dst + e, _mm_load_ps(src + e));
#else
	memcpy(dst, src, sizeof(float) * d);
#endif
}

/* the groups' online softmax over the key set's segments, both branches */
static void fwd_segments(struct fast_job *job, struct fast_ws *w,
			 const struct group *gr, const struct keyset *ks,
			 float *ms, float *ls, float *md, float *ld)
{
	const struct fast_isa *isa = job->isa;
	int dp = job->dp, R = gr->R, nb, sg;

	for (sg = 0; sg < ks->nseg; sg++) {
		nb = ks->segn[sg];
		fast_gather(job, w, ks, gr->b, gr->hk, sg, false);
		/*
		 * a segment's columns past its keys are outside every mask
		 * (row_step never takes them): a bucket's last segment, a
		 * gathered list's tail, need not be scored
		 */
		if (nb < FAST_KB)
			isa->mm_ntc(w->q, R, dp, w->pkT, w->S, FAST_KB, nb);
		else
			isa->mm_nt(w->q, R, dp, w->pkT, w->S);
		if (gr->want_s &&
		    online_step(job, w, ks, gr, sg, true, ms, ls, w->accS,
				w->Ps))
			isa->mm_nn(w->Ps, FAST_KB, R, nb, w->pvb, dp, w->accS);
		if (gr->want_d &&
		    online_step(job, w, ks, gr, sg, false, md, ld,
				w->accA, w->Pd))
			isa->mm_nn(w->Pd, FAST_KB, R, nb, w->pvb, dp, w->accA);
	}
}

/*
 * A CLUSTERED group, the sparse branch alone, over a bucket of at most
 * FAST_BSEG segments: every segment's scores into one row a query
 * (w->Sb), then each row's exact softmax at once (row_exp: one max and
 * one sum a row, nothing rescaled), then P.V segment by segment.  The
 * online step paid the max's and the sum's reductions and a rescale of
 * the row's sums for each of a bucket's 2-3 segments.  A row's keys
 * are a prefix of the bucket (ws->shi); the rest of its row is zero.
 */
static void fwd_bucket(struct fast_job *job, struct fast_ws *w,
		       const struct group *gr, const struct keyset *ks,
		       float *m, float *l)
{
	const struct fast_isa *isa = job->isa;
	int dp = job->dp, R = gr->R, ld = ks->nseg * FAST_KB, r, sg;
	const float *pv[FAST_BSEG];

	for (sg = 0; sg < ks->nseg; sg++) {
		fast_gather(job, w, ks, gr->b, gr->hk, sg, false);
		/*
		 * a cluster's segments each keep their rows in the worker's
		 * bucket buffer (fast_gather: bsg is -1), so every segment's
		 * pointer stays valid until P.V below
		 */
		pv[sg] = w->pvb;
		isa->mm_ntc(w->q, R, dp, w->pkT, w->Sb + sg * FAST_KB, ld,
			    ks->segn[sg]);
	}
	for (r = 0; r < R; r++) {
		float *s = w->Sb + (size_t)r * ld;
		int64_t n = w->shi[r];

		m[r] = -INFINITY;
		l[r] = 0;
		if (n)
			m[r] = isa->row_exp(s, (int)n, &l[r]);
		/*
		 * the bucket's keys past a causal row's limit: row_exp
		 * cleared them to its last vector's end only, whose width
		 * is the ISA's
		 */
		if (n < ks->nu)
			memset(s + n, 0, sizeof(float) * (ks->nu - n));
	}
	for (sg = 0; sg < ks->nseg; sg++)
		isa->mm_nn(w->Sb + sg * FAST_KB, ld, R, ks->segn[sg], pv[sg],
			   dp, w->accS);
}

static void fwd_group(struct fast_job *job, struct fast_ws *w,
		      const struct group *gr)
{
	const struct asam_problem *p = job->p;
	int dp = job->dp, d = p->d, R = gr->R, r;
	float ms[FAST_TQ], ls[FAST_TQ], md[FAST_TQ], ld[FAST_TQ];
	struct keyset ks;

	fast_build_keys(job, w, gr, &ks);
	for (r = 0; r < R; r++) {
		fast_load_scaled(&p->q, tv_off(&p->q, gr->b, gr->h,
					       gr->rows[r], 0), d, job->scale,
				 w->q + r * dp);
		ms[r] = md[r] = -INFINITY;
		ls[r] = ld[r] = 0;
	}
	/* a branch the group does not take keeps zero sums: its rows' l is 0 */
	if (gr->want_s)
		memset(w->accS, 0, sizeof(float) * R * dp);
	if (gr->want_d)
		memset(w->accA, 0, sizeof(float) * R * dp);
	/* a cluster's bucket (ranges: each row a prefix of it) */
	if (ks.bucket && ks.ranges && gr->want_s && !gr->want_d && w->Sb &&
	    w->bkT && ks.nseg > 0 && ks.nseg <= FAST_BSEG && job->bucket_whole)
		fwd_bucket(job, w, gr, &ks, ms, ls);
	else
		fwd_segments(job, w, gr, &ks, ms, ls, md, ld);
	for (r = 0; r < R; r++) {
		int64_t i = gr->rows[r];
		float cs = ls[r] > 0 ? gr->g / ls[r] : 0;
		float cd = ld[r] > 0 ? (1 - gr->g) / ld[r] : 0;
		int64_t oo = tv_off(&p->o, gr->b, gr->h, i, 0);
		/* fp32 output written in place, as the queries are read */
		float *out = p->o.dt == ASAM_DT_F32 && !job->o_stream ?
			     (float *)p->o.data + oo : w->o + r * dp;

		fwd_out_row(gr, cs, w->accS + r * dp, cd, w->accA + r * dp,
			    d, out);
		if (job->o_stream)
			fwd_stream_row((float *)p->o.data + oo, out, d);
		else if (p->o.dt != ASAM_DT_F32)
			fast_store_row(&p->o, oo, d, out);
		if (p->lse_s.data)
			tv_set(&p->lse_s, tv_off(&p->lse_s, gr->b, gr->h, i, 0),
			       gr->want_s && ls[r] > 0 ?
			       (double)ms[r] + log(ls[r]) : -INFINITY);
		if (p->lse_d.data)
			tv_set(&p->lse_d, tv_off(&p->lse_d, gr->b, gr->h, i, 0),
			       gr->want_d && ld[r] > 0 ?
			       (double)md[r] + log(ld[r]) : -INFINITY);
	}
}

/*
 * One row's keys of one chunk into its running softmax: the chunk's
 * exact softmax numerators against the chunk's own max, merged into the
 * row's state by rescaling whichever side has the smaller max.
 */
static void fwd_row_chunk(struct fast_job *job, struct fast_ws *w, int t,
			  const int32_t *keys, int n, const float *kb,
			  int64_t ks, const float *vb, int64_t vs)
{
	const struct fast_isa *isa = job->isa;
	int dp = job->dp, e;
	float *acc = w->tacc + (size_t)t * dp, *s = w->srow, mc, sc, a;

	isa->dots(w->tq + (size_t)t * dp, dp, kb, ks, keys, n, s);
	mc = isa->row_exp(s, n, &sc);
	if (mc > w->tm[t]) {
		a = w->tm[t] == -INFINITY ? 0 : expf(w->tm[t] - mc);
		for (e = 0; e < dp; e++)
			acc[e] *= a;
		w->tl[t] *= a;
		w->tm[t] = mc;
	} else if (mc < w->tm[t]) {
		a = expf(mc - w->tm[t]);
		for (e = 0; e < n; e++)
			s[e] *= a;
		sc *= a;
	}
	w->tl[t] += sc;
	isa->axpys(s, vb, vs, keys, n, dp, acc);
}

/*
 * Row t's next run of keys below @end, from its cursor (lists in chunk
 * order: fast_rows_keys); the run's first position in *@a
 */
static int32_t split_run(struct fast_ws *w, int t, int64_t end, int32_t *a)
{
	int32_t e;

	*a = w->tcur[t];
	e = *a + (int32_t)fast_lower_bound(w->tkeys[t] + *a, w->tn[t] - *a,
					   end);
	w->tcur[t] = e;
	return e - *a;
}

/*
 * fwd_split in key chunks of job->tkc (rows_pass_chunk): the same
 * kernels over runs of each row's list, chunk by chunk, the scores in
 * place, so the dots' results are the whole pass's; the value sums add
 * each run into the row's sums.
 */
static void fwd_split_chunks(struct fast_job *job, struct fast_ws *w, int R,
			     int64_t maxlim, const float *kb, int64_t ks,
			     const float *vb, int64_t vs)
{
	const struct fast_isa *isa = job->isa;
	int dp = job->dp, t, n;
	int64_t sc = job->tsc, C = job->tkc, lo;
	int32_t a;

	for (t = 0; t < R; t++)
		w->tcur[t] = 0;
	for (lo = 0; lo < maxlim; lo += C)
		for (t = 0; t < R; t++) {
			n = split_run(w, t, lo + C, &a);
			if (n)
				isa->dots(w->tq + (size_t)t * dp, dp, kb, ks,
					  w->tkeys[t] + a, n,
					  w->tsc + t * sc + a);
		}
	for (t = 0; t < R; t++) {
		if (w->tn[t])
			w->tm[t] = isa->row_exp(w->tsc + t * sc, w->tn[t],
						&w->tl[t]);
		w->tcur[t] = 0;
	}
	for (lo = 0; lo < maxlim; lo += C)
		for (t = 0; t < R; t++) {
			n = split_run(w, t, lo + C, &a);
			if (n)
				isa->axpys(w->tsc + t * sc + a, vb, vs,
					   w->tkeys[t] + a, n, dp,
					   w->tacc + (size_t)t * dp);
		}
}

/*
 * The tile's R rows in one chunk, as three passes (fast_rows_split): the
 * same dots, row_exp and axpys on the same operands as fwd_row_chunk's
 * (whose merge into a fresh row state is exact), so the same results.
 */
static void fwd_split(struct fast_job *job, struct fast_ws *w, int R,
		      int64_t maxlim, const float *kb, int64_t ks,
		      const float *vb, int64_t vs)
{
	const struct fast_isa *isa = job->isa;
	int dp = job->dp, t;
	int64_t sc = job->tsc;

	if (job->tkc && job->tkc < maxlim) {
		fwd_split_chunks(job, w, R, maxlim, kb, ks, vb, vs);
		return;
	}
	for (t = 0; t < R; t++)
		if (w->tn[t])
			isa->dots(w->tq + (size_t)t * dp, dp, kb, ks,
				  w->tkeys[t], w->tn[t], w->tsc + t * sc);
	for (t = 0; t < R; t++)
		if (w->tn[t])
			w->tm[t] = isa->row_exp(w->tsc + t * sc, w->tn[t],
						&w->tl[t]);
	for (t = 0; t < R; t++)
		if (w->tn[t])
			isa->axpys(w->tsc + t * sc, vb, vs, w->tkeys[t],
				   w->tn[t], dp, w->tacc + (size_t)t * dp);
}

/*
 * Rows [r0, r1) of (b, h) of a per-row pattern as one tile over L2-sized
 * key chunks (fast-rows.c); rows whose head also wants the dense branch
 * (HARD routing) take the group path.
 */
static void fwd_tile(struct fast_job *job, struct fast_ws *w, int b, int h,
		     int64_t r0, int64_t r1)
{
	const struct asam_problem *p = job->p;
	int dp = job->dp, d = p->d, R = 0, t, e;
	int64_t C = job->kmajor ? INT64_MAX / 2 : fast_rows_chunk(job, 2);
	/* the lists in the order of the passes' key chunks, if any */
	int64_t LC = job->tsc && job->tkc ? job->tkc : C;
	int64_t off = 0, maxlim = 0, lo, i, n;
	int64_t ks, vs;
	const float *kb = fast_rows_of(job, false, b, h / job->group, &ks);
	const float *vb = fast_rows_of(job, true, b, h / job->group, &vs);
	int32_t rows[FAST_RT];
	struct group gr;
	float g = 1;

	for (i = r0; i < r1; i++) {
		if (!fast_group_init(job, &gr, b, h, (int)i))
			continue;
		if (!gr.want_s || gr.want_d || gr.s_is_d) {
			fwd_group(job, w, &gr);
			continue;
		}
		w->tkeys[R] = fast_rows_keys(job, w, &gr, LC, w->rk + off, &n);
		if (w->tkeys[R] == w->rk + off)
			off += n;
		w->tn[R] = (int32_t)n;
		w->tcur[R] = 0;
		w->tm[R] = -INFINITY;
		w->tl[R] = 0;
		fast_load_scaled(&p->q, tv_off(&p->q, b, h, i, 0), d,
				 job->scale, w->tq + (size_t)R * dp);
		memset(w->tacc + (size_t)R * dp, 0, sizeof(float) * dp);
		if (gr.lim[0] > maxlim)
			maxlim = gr.lim[0];
		g = gr.g;
		rows[R++] = (int32_t)i;
	}
	if (job->kmajor)
		fast_km_fwd(job, w, R, kb, ks, vb, vs);
	if (job->tsc && C >= maxlim) {
		fwd_split(job, w, R, maxlim, kb, ks, vb, vs);
		maxlim = 0;		/* done */
	}
	for (lo = 0; lo < maxlim && !job->kmajor; lo += C) {
		for (t = 0; t < R; t++) {
			int c;
			const int32_t *keys;

			/*
			 * with chunks, each pass reads the next line of
			 * every row's list: fetch it two rows ahead
			 */
			if (t + 2 < R && lo + C < maxlim)
				__builtin_prefetch(w->tkeys[t + 2] +
						   w->tcur[t + 2]);
			keys = fast_rows_take(w, t, lo, C, maxlim, &c);

			if (!c)
				continue;
			fwd_row_chunk(job, w, t, keys, c, kb, ks, vb, vs);
		}
	}
	for (t = 0; t < R; t++) {
		const float *acc = w->tacc + (size_t)t * dp;
		float l = w->tl[t], *out;
		int64_t oo;

		i = rows[t];
		oo = tv_off(&p->o, b, h, i, 0);
		out = p->o.dt == ASAM_DT_F32 ? (float *)p->o.data + oo : w->o;
		for (e = 0; e < d; e++)
			out[e] = l > 0 ? g * acc[e] / l : 0;
		if (p->o.dt != ASAM_DT_F32)
			fast_store_row(&p->o, oo, d, out);
		if (p->lse_s.data)
			tv_set(&p->lse_s, tv_off(&p->lse_s, b, h, i, 0),
			       l > 0 ? (double)w->tm[t] + log(l) : -INFINITY);
		if (p->lse_d.data)
			tv_set(&p->lse_d, tv_off(&p->lse_d, b, h, i, 0),
			       -INFINITY);
	}
}

/* items (b, h, tile of job->rt rows) of a per-row pattern */
void fast_fwd_tiles(void *arg, int64_t begin, int64_t end, int worker)
{
	fast_rows_items(arg, begin, end, worker, fwd_tile);
}

/*
 * CLUSTERED's query groups take the rows of a cluster, scattered over Q
 * and O: ask for group @it's rows while the one before computes (their
 * first touch was the largest single cost of the forward, 2026-11-27)
 */
static void fwd_prefetch_group(struct fast_job *job, int64_t it)
{
	const struct asam_problem *p = job->p;
	int64_t per = job->fp.maxgroups, bh = it / per;
	int b = (int)(bh / p->Hq), h = (int)(bh % p->Hq), n, r;
	int32_t rows[FAST_TQ];

	n = fast_plan_group(&job->fp, b, h, (int)(it % per), rows);
	for (r = 0; r < n; r++) {
		fast_prefetch_l2(&p->q, tv_off(&p->q, b, h, rows[r], 0), p->d);
		if (!job->o_stream)
			fast_prefetch_l2(&p->o, tv_off(&p->o, b, h, rows[r], 0),
					 p->d);
	}
}

void fast_fwd_items(void *arg, int64_t begin, int64_t end, int worker)
{
	struct fast_job *job = arg;
	const struct asam_problem *p = job->p;
	int64_t it, per = job->fp.maxgroups;
	struct fast_ws *w = fast_ws_get(job, worker);
	struct group gr;

	if (!w) {
		atomic_store(&job->err, -ENOMEM);
		return;
	}
	for (it = begin; it < end; it++) {
		int64_t bh = it / per;

		if (!fast_group_init(job, &gr, bh / p->Hq, bh % p->Hq, it % per))
			continue;
		if (job->fp.sorted_groups && it + 2 < end)
			fwd_prefetch_group(job, it + 2);
		fwd_group(job, w, &gr);
	}
#ifdef __SSE__
	/* the streamed rows out of the write-combining buffers */
	if (job->o_stream)
		_mm_sfence();
#endif
}

/*
 * Stream the output rows (fwd_stream_row) where they are scattered (the
 * queries of a cluster), fp32, whole 64-byte lines each, and O is larger
 * than the workers' L2 caches together: a smaller O is best left in the
 * cache for whoever reads it next.  ASAM_CPU_O_STREAM=0 never streams,
 * =1 streams whatever O's size (the tests' small problems).
 */
void fast_fwd_setup(struct fast_job *job)
{
	const struct asam_problem *p = job->p;
	const struct asam_tv *o = &p->o;
	const char *env = getenv("ASAM_CPU_O_STREAM");
	const char *benv = getenv("ASAM_CPU_BUCKET_WHOLE");
	int64_t bytes = (int64_t)p->B * p->Hq * p->Nq * p->d * 4;

	/* ASAM_CPU_BUCKET_WHOLE=0: buckets by the online step (fwd_bucket) */
	job->bucket_whole = !(benv && !strcmp(benv, "0"));
	job->o_stream = false;
#ifdef __SSE__
	job->o_stream = job->fp.sorted_groups && o->dt == ASAM_DT_F32 &&
			o->stride[3] == 1 && !(p->d % 16) &&
			!((uintptr_t)o->data % 64) && !(o->stride[2] % 16) &&
			!(o->stride[1] % 16) && !(o->stride[0] % 16) &&
			(bytes > (int64_t)fast_l2_bytes() * job->nthreads ||
			 (env && !strcmp(env, "1"))) &&
			!(env && !strcmp(env, "0"));
#endif
}

