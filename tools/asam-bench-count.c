// SPDX-License-Identifier: MIT
/*
 * How many (query, key) pairs a call's pattern allows: the numerator of
 * the benchmark's TFLOP/s and its token density.
 *
 * asam_pattern_stats() builds every row as a byte map, O(Nq x Nk) per
 * head: minutes at 64K.  Here each row is counted in O(1) or O(band)
 * from the same resolved pattern (runtime/validate.c) and the same
 * library predicates (runtime/pattern.c: the hierarchical vote, the
 * SplitMix64 blocks, the cluster argmax), so the two agree exactly; the
 * selftest checks that for every kind.  Rows the closed forms do not
 * cover (RANDOM_ROWS under a mask, CLUSTERED in SOFT mode) fall back to
 * the library's row predicate.
 */
#include <errno.h>
#include <pthread.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <internal/err.h>
#include <internal/pattern.h>
#include <internal/validate.h>

#include "asam-bench-gpu.h"

struct count_job {
	const struct asam_problem *p;
	int64_t bh0, bh1;		/* (b, h) pairs [bh0, bh1) */
	uint64_t allowed, masked;
	int ret;
	char msg[256];
};

/* j in [lo, hi], or 0 */
static int64_t span(int64_t lo, int64_t hi)
{
	return hi >= lo ? hi - lo + 1 : 0;
}

/* multiples of s in [lo, hi], lo >= 0 */
static int64_t multiples(int64_t s, int64_t lo, int64_t hi)
{
	if (hi < lo)
		return 0;
	return hi / s - (lo > 0 ? (lo - 1) / s : -1);
}

static int64_t max64(int64_t a, int64_t b)
{
	return a > b ? a : b;
}

static int64_t min64(int64_t a, int64_t b)
{
	return a < b ? a : b;
}

/* per-thread scratch, sized once for one (b, h) */
struct scratch {
	int64_t *far;			/* HIERARCHICAL: prefix of the columns */
	int *cq, *ck, *cnt;		/* CLUSTERED ARGMAX */
	int64_t *stamp;			/* USER_INDEX: last row that saw j */
	int64_t *blk;			/* RANDOM: one query block's keys */
	uint8_t *row;			/* fallback: one row */
	struct asam_pat_plan *plan;	/* fallback: created on first use */
	int64_t plan_bh;		/* the (b, h) the plan holds, or -1 */
};

static int64_t row_fallback(struct count_job *job, struct scratch *sc,
			    int b, int h, int64_t i, int64_t lim, int *ret)
{
	int64_t n = 0, j;

	if (!sc->plan) {
		sc->plan = asam_pat_plan_create(job->p);
		if (IS_ERR(sc->plan)) {
			*ret = PTR_ERR(sc->plan);
			sc->plan = NULL;
			return 0;
		}
	}
	/* preparing a (b, h) costs O(N) or more: once per (b, h) */
	if (sc->plan_bh != (int64_t)b * job->p->Hq + h) {
		*ret = asam_pat_plan_bh(sc->plan, b, h);
		if (*ret)
			return 0;
		sc->plan_bh = (int64_t)b * job->p->Hq + h;
	}
	asam_pat_row(sc->plan, i, sc->row);
	for (j = 0; j < lim; j++)
		n += sc->row[j];
	return n;
}

static int count_bh(struct count_job *job, struct scratch *sc, int b, int h)
{
	const struct asam_problem *p = job->p;
	const struct asam_pat *pat = &p->pat;
	int64_t Nq = p->Nq, Nk = p->Nk, off = Nk - Nq, i, j, t;
	int hk = h / (p->Hq / p->Hkv), ret = 0;
	uint64_t allowed = 0, masked = 0;
	int64_t D = 0, jp = 0, rowid;

	switch (pat->kind) {
	case ASAM_PATTERN_HIERARCHICAL:
		for (t = 0; t < pat->nscales; t++)
			D = max64(D, pat->scales[t] / 4);
		sc->far[0] = 0;
		for (j = 0; j < Nk; j++)
			sc->far[j + 1] = sc->far[j] +
				asam_pat_hier_allowed(pat, h, INT64_MAX, j);
		break;
	case ASAM_PATTERN_CLUSTERED:
		if (pat->cmode != ASAM_CLUSTER_ARGMAX)
			break;
		for (i = 0; i < Nq; i++)
			sc->cq[i] = asam_cluster_argmax(pat, h, &p->q, b, h, i,
							p->d);
		for (j = 0; j < Nk; j++)
			sc->ck[j] = asam_cluster_argmax(pat, h, &p->k, b, hk, j,
							p->d);
		memset(sc->cnt, 0, sizeof(int) * pat->C);
		break;
	default:
		break;
	}
	for (i = 0; i < Nq; i++) {
		int64_t lim = problem_key_limit(p, b, i), pos = i + off, lo, hi;
		int64_t n = 0;

		if (!lim)
			continue;
		masked += lim;
		switch (pat->kind) {
		case ASAM_PATTERN_DENSE:
			n = lim;
			break;
		case ASAM_PATTERN_LOCAL:
		case ASAM_PATTERN_STRIDED:
			lo = max64(0, pos - pat->radius);
			hi = min64(lim - 1, pos + pat->radius);
			n = span(lo, hi);
			if (pat->kind == ASAM_PATTERN_STRIDED)
				n += multiples(pat->stride, 0, lim - 1) -
				     multiples(pat->stride, max64(lo, 0),
					       hi);
			break;
		case ASAM_PATTERN_HIERARCHICAL:
			lo = max64(0, pos - D);
			hi = min64(lim - 1, pos + D);
			n = sc->far[lim];
			if (hi >= lo)
				n -= sc->far[hi + 1] - sc->far[lo];
			for (j = lo; j <= hi; j++)
				n += asam_pat_hier_allowed(pat, h,
					pos > j ? pos - j : j - pos, j);
			break;
		case ASAM_PATTERN_RANDOM: {
			int64_t nb = (Nk + ASAM_RANDOM_BLOCK - 1) /
				     ASAM_RANDOM_BLOCK;
			int rb = (pat->r + ASAM_RANDOM_BLOCK - 1) /
				 ASAM_RANDOM_BLOCK;
			int64_t *blk = sc->blk;
			int m;

			m = asam_random_blocks(pat->seed, h,
					       i / ASAM_RANDOM_BLOCK, rb, nb,
					       blk);
			for (t = 0; t < m; t++)
				n += span(blk[t] * ASAM_RANDOM_BLOCK,
					  min64(lim - 1, blk[t] *
						ASAM_RANDOM_BLOCK +
						ASAM_RANDOM_BLOCK - 1));
			break;
		}
		case ASAM_PATTERN_RANDOM_ROWS:
			/* a row is min(r, Nk) distinct keys */
			if (lim == Nk)
				n = min64(pat->r, Nk);
			else
				n = row_fallback(job, sc, b, h, i, lim, &ret);
			break;
		case ASAM_PATTERN_CLUSTERED:
			if (pat->cmode != ASAM_CLUSTER_ARGMAX || lim < jp) {
				/* SOFT, or a limit that went back */
				if (pat->cmode != ASAM_CLUSTER_ARGMAX) {
					n = row_fallback(job, sc, b, h, i, lim,
							 &ret);
					break;
				}
				for (j = 0; j < lim; j++)
					n += sc->ck[j] == sc->cq[i];
				break;
			}
			/* limits only grow with i: count keys as they enter */
			for (; jp < lim; jp++)
				sc->cnt[sc->ck[jp]]++;
			n = sc->cnt[sc->cq[i]];
			break;
		case ASAM_PATTERN_USER_INDEX: {
			const struct asam_tv *ix = &pat->index;
			const int32_t *lst = (const int32_t *)ix->data +
					     tv_off(ix, b, hk, i, 0);

			rowid = ((int64_t)b * p->Hq + h) * Nq + i;
			for (t = 0; t < pat->r; t++) {
				int64_t jj = lst[t * ix->stride[3]];

				if (jj < 0 || jj >= lim ||
				    sc->stamp[jj] == rowid)
					continue;
				sc->stamp[jj] = rowid;
				n++;
			}
			break;
		}
		default:
			return asam_err(-EOPNOTSUPP, "pattern %s cannot be counted",
					asam_pattern_name(pat->kind));
		}
		if (ret)
			return ret;
		allowed += (uint64_t)n;
	}
	job->allowed += allowed;
	job->masked += masked;
	return 0;
}

static void *count_worker(void *arg)
{
	struct count_job *job = arg;
	const struct asam_problem *p = job->p;
	struct scratch sc = { 0 };
	int64_t bh;

	sc.far = malloc(sizeof(int64_t) * (p->Nk + 1));
	sc.cq = malloc(sizeof(int) * (p->Nq + 1));
	sc.ck = malloc(sizeof(int) * (p->Nk + 1));
	sc.cnt = malloc(sizeof(int) * 256);
	sc.stamp = malloc(sizeof(int64_t) * (p->Nk + 1));
	sc.row = malloc(p->Nk + 1);
	sc.blk = malloc(sizeof(int64_t) * (p->pat.r / ASAM_RANDOM_BLOCK + 2));
	sc.plan_bh = -1;
	if (!sc.far || !sc.cq || !sc.ck || !sc.cnt || !sc.stamp || !sc.row ||
	    !sc.blk) {
		job->ret = asam_err(-ENOMEM, "out of memory");
		goto out;
	}
	for (bh = 0; bh <= p->Nk; bh++)
		sc.stamp[bh] = -1;
	for (bh = job->bh0; bh < job->bh1 && !job->ret; bh++)
		job->ret = count_bh(job, &sc, (int)(bh / p->Hq),
				    (int)(bh % p->Hq));
out:
	if (job->ret)
		snprintf(job->msg, sizeof(job->msg), "%s", asam_last_error());
	asam_pat_plan_destroy(sc.plan);
	free(sc.far), free(sc.cq), free(sc.ck), free(sc.cnt);
	free(sc.stamp), free(sc.row), free(sc.blk);
	return NULL;
}

int bench_count(const struct asam_attn_params *prm,
		const struct asam_fwd_args *a, unsigned int threads,
		uint64_t *allowed, uint64_t *masked)
{
	struct count_job jobs[64];
	pthread_t tid[64];
	struct asam_problem p;
	int64_t nbh, per;
	unsigned int t, started = 0;
	int ret;

	ret = asam_problem_stats(&p, NULL, prm, a);
	if (ret)
		return ret;
	if (p.dev.device_type != kDLCPU)
		return asam_err(-EINVAL, "bench_count: q is not a host tensor");
	if (!threads) {
		long n = sysconf(_SC_NPROCESSORS_ONLN);

		threads = n > 0 ? (unsigned int)n : 1;
	}
	if (threads > 64)
		threads = 64;
	nbh = (int64_t)p.B * p.Hq;
	if ((int64_t)threads > nbh)
		threads = (unsigned int)nbh;
	per = (nbh + threads - 1) / threads;
	memset(jobs, 0, sizeof(jobs));
	for (t = 0; t < threads; t++) {
		jobs[t].p = &p;
		jobs[t].bh0 = min64(nbh, t * per);
		jobs[t].bh1 = min64(nbh, (t + 1) * per);
	}
	/* thread 0's share runs here; a thread that will not start runs
	 * its share here as well */
	for (t = 1; t < threads; t++, started++)
		if (pthread_create(&tid[t], NULL, count_worker, &jobs[t]))
			break;
	count_worker(&jobs[0]);
	for (t = started + 1; t < threads; t++)
		count_worker(&jobs[t]);
	for (t = 1; t <= started; t++)
		pthread_join(tid[t], NULL);
	*allowed = *masked = 0;
	for (t = 0; t < threads; t++) {
		if (jobs[t].ret)
			return asam_err(jobs[t].ret, "bench_count: %s",
					jobs[t].msg);
		*allowed += jobs[t].allowed;
		*masked += jobs[t].masked;
	}
	return 0;
}
