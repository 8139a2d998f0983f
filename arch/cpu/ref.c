// SPDX-License-Identifier: MIT
/*
 * The reference backend: SPEC 2 computed plainly, in fp64, row by row.
 *
 * For each (b, h) and query row i it forms the scores of the allowed keys,
 * takes the dense and sparse softmaxes exactly (max-subtracted, no online
 * rescaling) and mixes them.  Memory is O(N d) per (b, h): the score row is
 * the only O(N) object and no N x N matrix exists, so it runs at N = 16K.
 * It is slow on purpose: every other backend is judged against it.
 */
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include <internal/backend.h>
#include <internal/err.h>
#include <internal/pattern.h>

/* Scratch for one (b, h): the slices in fp64 and the row buffers. */
struct ref_scratch {
	double *q, *k, *v, *o, *dO;	/* [N][d] */
	double *dk, *dv;		/* [Nk][d] accumulators of a kv head */
	double *s, *ps, *pd;		/* [Nk] scores, sparse/dense probs */
	double *S, *A, *dS, *dA;	/* [d] branch outputs and gradients */
	uint8_t *row;			/* [Nk] pattern row */
	struct asam_pat_plan *plan;
};

static void scratch_free(struct ref_scratch *r)
{
	free(r->q);
	free(r->k);
	free(r->v);
	free(r->o);
	free(r->dO);
	free(r->dk);
	free(r->dv);
	free(r->s);
	free(r->ps);
	free(r->pd);
	free(r->S);
	free(r->A);
	free(r->dS);
	free(r->dA);
	free(r->row);
	asam_pat_plan_destroy(r->plan);
}

/* Everything is allocated before the first output is written. */
static int scratch_alloc(struct ref_scratch *r, const struct asam_problem *p)
{
	size_t qd = (size_t)p->Nq * p->d, kd = (size_t)p->Nk * p->d;

	memset(r, 0, sizeof(*r));
	r->q = malloc(sizeof(double) * qd);
	r->k = malloc(sizeof(double) * kd);
	r->v = malloc(sizeof(double) * kd);
	r->o = malloc(sizeof(double) * qd);
	r->dO = malloc(sizeof(double) * qd);
	r->dk = malloc(sizeof(double) * kd);
	r->dv = malloc(sizeof(double) * kd);
	r->s = malloc(sizeof(double) * p->Nk);
	r->ps = malloc(sizeof(double) * p->Nk);
	r->pd = malloc(sizeof(double) * p->Nk);
	r->S = malloc(sizeof(double) * p->d);
	r->A = malloc(sizeof(double) * p->d);
	r->dS = malloc(sizeof(double) * p->d);
	r->dA = malloc(sizeof(double) * p->d);
	r->row = malloc(p->Nk);
	r->plan = asam_pat_plan_create(p);
	if (IS_ERR(r->plan)) {
		int ret = PTR_ERR(r->plan);

		r->plan = NULL;
		scratch_free(r);
		return ret;
	}
	if (!r->q || !r->k || !r->v || !r->o || !r->dO || !r->dk || !r->dv ||
	    !r->s || !r->ps || !r->pd || !r->S || !r->A || !r->dS || !r->dA ||
	    !r->row) {
		scratch_free(r);
		return asam_err(-ENOMEM, "reference: out of memory");
	}
	return 0;
}

static void load_slice(double *dst, const struct asam_tv *t, int b, int h,
		       int n, int d)
{
	int i, e;

	for (i = 0; i < n; i++)
		for (e = 0; e < d; e++)
			dst[(size_t)i * d + e] = tv_get(t, tv_off(t, b, h, i, e));
}

static double gate_of(const struct asam_problem *p, int b, int h)
{
	switch (p->gate_mode) {
	case ASAM_GATE_SPARSE:
		return 1;
	case ASAM_GATE_DENSE:
		return 0;
	default:
		return tv_get(&p->gate, tv_off(&p->gate, b, h, 0, 0));
	}
}

/*
 * Softmax of s[0..lim) restricted to mask (NULL: all), into prob; returns
 * the log-sum-exp, -inf for an empty set (prob then all 0).
 */
static double softmax_row(const double *s, const uint8_t *mask, int64_t lim,
			  double *prob)
{
	double m = -INFINITY, l = 0;
	int64_t j;

	for (j = 0; j < lim; j++)
		if (!mask || mask[j])
			m = fmax(m, s[j]);
	if (m == -INFINITY) {
		memset(prob, 0, sizeof(double) * lim);
		return -INFINITY;
	}
	for (j = 0; j < lim; j++)
		l += (prob[j] = (!mask || mask[j]) ? exp(s[j] - m) : 0);
	for (j = 0; j < lim; j++)
		prob[j] /= l;
	return m + log(l);
}

/* prob from a stored log-sum-exp, as a kernel's backward recomputes it */
static void prob_from_lse(const double *s, const uint8_t *mask, int64_t lim,
			  double lse, double *prob)
{
	int64_t j;

	for (j = 0; j < lim; j++)
		prob[j] = (mask && !mask[j]) || lse == -INFINITY ? 0 :
			  exp(s[j] - lse);
}

static void mix_row(const double *prob, const double *v, int64_t lim, int d,
		    double *out)
{
	int64_t j;
	int e;

	memset(out, 0, sizeof(double) * d);
	for (j = 0; j < lim; j++) {
		if (prob[j] == 0)
			continue;
		for (e = 0; e < d; e++)
			out[e] += prob[j] * v[(size_t)j * d + e];
	}
}

/*
 * s_j = scale <q_i, k_j> for j < lim; with @only (the sparse row, when the
 * dense branch is not needed) keys outside it are skipped, so a SPARSE
 * call costs O(N) per row for the predicate and O(allowed d) for scores.
 */
static void scores(const struct asam_problem *p, const struct ref_scratch *r,
		   int64_t i, int64_t lim, const uint8_t *only)
{
	const double *qi = r->q + (size_t)i * p->d;
	int64_t j;
	int e;

	for (j = 0; j < lim; j++) {
		const double *kj = r->k + (size_t)j * p->d;
		double dot = 0;

		if (only && !only[j])
			continue;
		for (e = 0; e < p->d; e++)
			dot += qi[e] * kj[e];
		r->s[j] = p->scale * dot;
	}
}

static int ref_fwd(struct asam_backend *be, const struct asam_problem *p)
{
	struct ref_scratch r;
	int b, h, e, ret, group = p->Hq / p->Hkv;
	int64_t i;

	ret = scratch_alloc(&r, p);
	if (ret)
		return ret;
	for (b = 0; b < p->B; b++) {
		for (h = 0; h < p->Hq; h++) {
			double g = gate_of(p, b, h);
			bool want_s = problem_needs_sparse(p),
			     want_d = problem_needs_dense(p);

			if (p->gate_mode == ASAM_GATE_HARD) {
				want_s = g >= p->hard_tau;
				want_d = !want_s;
				g = want_s;
			}
			load_slice(r.q, &p->q, b, h, p->Nq, p->d);
			load_slice(r.k, &p->k, b, h / group, p->Nk, p->d);
			load_slice(r.v, &p->v, b, h / group, p->Nk, p->d);
			asam_pat_plan_bh(r.plan, b, h);
			for (i = 0; i < p->Nq; i++) {
				int64_t lim = problem_key_limit(p, b, i);
				double lse_s = NAN, lse_d = NAN;
				int64_t off = tv_off(&p->o, b, h, i, 0);

				memset(r.S, 0, sizeof(double) * p->d);
				memset(r.A, 0, sizeof(double) * p->d);
				if (want_s)
					asam_pat_row(r.plan, i, r.row);
				scores(p, &r, i, lim, want_d ? NULL : r.row);
				if (want_s) {
					lse_s = softmax_row(r.s, r.row, lim, r.ps);
					mix_row(r.ps, r.v, lim, p->d, r.S);
				}
				if (want_d) {
					lse_d = softmax_row(r.s, NULL, lim, r.pd);
					mix_row(r.pd, r.v, lim, p->d, r.A);
				}
				for (e = 0; e < p->d; e++)
					tv_set(&p->o, off + e,
					       g * r.S[e] + (1 - g) * r.A[e]);
				if (p->lse_s.data)
					tv_set(&p->lse_s, tv_off(&p->lse_s, b, h, i, 0),
					       lim ? lse_s : -INFINITY);
				if (p->lse_d.data)
					tv_set(&p->lse_d, tv_off(&p->lse_d, b, h, i, 0),
					       lim ? lse_d : -INFINITY);
			}
		}
	}
	scratch_free(&r);
	return 0;
}

static void store_slice(const struct asam_tv *t, const double *src, int b,
			int h, int n, int d)
{
	int i, e;

	for (i = 0; i < n; i++)
		for (e = 0; e < d; e++)
			tv_set(t, tv_off(t, b, h, i, e), src[(size_t)i * d + e]);
}

/*
 * dscore_j = P_j (<dX, v_j> - <dX, X>) for one branch X with probabilities
 * P and upstream gradient dX; accumulates dV and returns nothing: dscore is
 * left in prob[] (overwritten) for the caller to fold into dQ and dK.
 */
static void branch_bwd(double *prob, const double *dX, const double *X,
		       const double *v, double *dv, int64_t lim, int d)
{
	double D = 0;
	int64_t j;
	int e;

	for (e = 0; e < d; e++)
		D += dX[e] * X[e];
	for (j = 0; j < lim; j++) {
		double dp = 0;

		if (prob[j] == 0)
			continue;
		for (e = 0; e < d; e++) {
			dp += dX[e] * v[(size_t)j * d + e];
			dv[(size_t)j * d + e] += prob[j] * dX[e];
		}
		prob[j] *= dp - D;
	}
}

static int ref_bwd(struct asam_backend *be, const struct asam_problem *p)
{
	struct ref_scratch r;
	int b, h, hk, e, ret, group = p->Hq / p->Hkv;
	size_t kd = (size_t)p->Nk * p->d;
	int64_t i, j;

	ret = scratch_alloc(&r, p);
	if (ret)
		return ret;
	for (b = 0; b < p->B; b++) {
		for (hk = 0; hk < p->Hkv; hk++) {
			memset(r.dk, 0, sizeof(double) * kd);
			memset(r.dv, 0, sizeof(double) * kd);
			load_slice(r.k, &p->k, b, hk, p->Nk, p->d);
			load_slice(r.v, &p->v, b, hk, p->Nk, p->d);
			for (h = hk * group; h < (hk + 1) * group; h++) {
				double g = gate_of(p, b, h), dg = 0;

				load_slice(r.q, &p->q, b, h, p->Nq, p->d);
				load_slice(r.dO, &p->d_o, b, h, p->Nq, p->d);
				asam_pat_plan_bh(r.plan, b, h);
				for (i = 0; i < p->Nq; i++) {
					int64_t lim = problem_key_limit(p, b, i);
					const double *dOi = r.dO + (size_t)i * p->d;
					double *qi = r.q + (size_t)i * p->d;
					double dq[512];

					memset(dq, 0, sizeof(double) * p->d);
					memset(r.S, 0, sizeof(double) * p->d);
					memset(r.A, 0, sizeof(double) * p->d);
					for (j = 0; j < lim; j++)
						r.ps[j] = r.pd[j] = 0;
					if (problem_needs_sparse(p))
						asam_pat_row(r.plan, i, r.row);
					scores(p, &r, i, lim,
					       problem_needs_dense(p) ? NULL : r.row);
					if (problem_needs_sparse(p)) {
						double lse = tv_get(&p->lse_s,
							tv_off(&p->lse_s, b, h, i, 0));

						prob_from_lse(r.s, r.row, lim, lse, r.ps);
						mix_row(r.ps, r.v, lim, p->d, r.S);
						for (e = 0; e < p->d; e++)
							r.dS[e] = g * dOi[e];
						branch_bwd(r.ps, r.dS, r.S, r.v, r.dv,
							   lim, p->d);
					}
					if (problem_needs_dense(p)) {
						double lse = tv_get(&p->lse_d,
							tv_off(&p->lse_d, b, h, i, 0));

						prob_from_lse(r.s, NULL, lim, lse, r.pd);
						mix_row(r.pd, r.v, lim, p->d, r.A);
						for (e = 0; e < p->d; e++)
							r.dA[e] = (1 - g) * dOi[e];
						branch_bwd(r.pd, r.dA, r.A, r.v, r.dv,
							   lim, p->d);
					}
					for (e = 0; e < p->d && lim; e++)
						dg += dOi[e] * (r.S[e] - r.A[e]);
					/* ps, pd now hold the score gradients */
					for (j = 0; j < lim; j++) {
						double ds = (r.ps[j] + r.pd[j]) * p->scale;
						double *kj = r.k + (size_t)j * p->d;
						double *dkj = r.dk + (size_t)j * p->d;

						if (ds == 0)
							continue;
						for (e = 0; e < p->d; e++) {
							dq[e] += ds * kj[e];
							dkj[e] += ds * qi[e];
						}
					}
					for (e = 0; e < p->d; e++)
						tv_set(&p->dq, tv_off(&p->dq, b, h, i, e),
						       dq[e]);
				}
				if (p->gate_mode == ASAM_GATE_SOFT)
					tv_set(&p->dgate,
					       tv_off(&p->dgate, b, h, 0, 0), dg);
			}
			store_slice(&p->dk, r.dk, b, hk, p->Nk, p->d);
			store_slice(&p->dv, r.dv, b, hk, p->Nk, p->d);
		}
	}
	scratch_free(&r);
	return 0;
}

/*
 * Online k-means (SPEC 3.2): each centroid moves to decay * mu + (1 -
 * decay) * mean of the normalised queries and keys assigned to it.  The
 * assignment uses the centroids before the update; sums are in fp64 in
 * token order, so the result is deterministic.
 */
static int ref_cluster_update(struct asam_backend *be,
			      const struct asam_problem *p, float decay)
{
	const struct asam_pat *pat = &p->pat;
	const struct asam_tv *mu = &pat->centroids;
	int C = pat->C, d = p->d, group = p->Hq / p->Hkv;
	double *sum = calloc((size_t)p->Hq * C * d, sizeof(double));
	int64_t *cnt = calloc((size_t)p->Hq * C, sizeof(int64_t));
	int b, h, c, e, pass;
	int64_t t;

	if (!sum || !cnt) {
		free(sum);
		free(cnt);
		return asam_err(-ENOMEM, "cluster update: out of memory");
	}
	for (h = 0; h < p->Hq; h++)
		for (b = 0; b < p->B; b++)
			for (pass = 0; pass < 2; pass++) {
				const struct asam_tv *x = pass ? &p->k : &p->q;
				int hx = pass ? h / group : h;
				int64_t n = pass ? p->Nk : p->Nq;

				for (t = 0; t < n; t++) {
					double nrm = 0, *acc;

					c = asam_cluster_argmax(pat, h, x, b, hx, t, d);
					acc = sum + ((size_t)h * C + c) * d;
					for (e = 0; e < d; e++) {
						double xv = tv_get(x, tv_off(x, b, hx, t, e));

						nrm += xv * xv;
					}
					nrm = fmax(sqrt(nrm), 1e-12);
					for (e = 0; e < d; e++)
						acc[e] += tv_get(x, tv_off(x, b, hx, t, e)) / nrm;
					cnt[(size_t)h * C + c]++;
				}
			}
	for (h = 0; h < p->Hq; h++)
		for (c = 0; c < C; c++) {
			int64_t n = cnt[(size_t)h * C + c];

			if (!n)
				continue;
			for (e = 0; e < d; e++) {
				int64_t off = tv_off(mu, h, c, e, 0);
				double mean = sum[((size_t)h * C + c) * d + e] / n;

				tv_set(mu, off, decay * tv_get(mu, off) +
						(1 - (double)decay) * mean);
			}
		}
	free(sum);
	free(cnt);
	return 0;
}

static int ref_supports(struct asam_backend *be, const struct asam_problem *p)
{
	if (p->d > 512)
		return asam_err(-EOPNOTSUPP,
				"reference: head dim %d exceeds 512", p->d);
	return 0;
}

const struct asam_backend_ops asam_backend_cpu_ref_ops = {
	.name = "cpu_ref",
	.api_version = ASAM_BACKEND_API,
	.dev_type = kDLCPU,
	.supports = ref_supports,
	.fwd = ref_fwd,
	.bwd = ref_bwd,
	.cluster_update = ref_cluster_update,
};
