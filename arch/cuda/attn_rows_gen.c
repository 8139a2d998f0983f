// SPDX-License-Identifier: MIT
/*
 * RANDOM_ROWS' lists on the host, for arch/cuda/attn_rows.c: SPEC 3.1's
 * rows (runtime/pattern.c's generator, made cheap), sorted, and their
 * transpose (key -> rows, ascending), threads over heads.  At Nk = 16K
 * a head draws Nq * (Nk - 1) numbers: the draws past the first r only
 * advance the state (untempered), and the r swaps a row makes are undone
 * instead of rebuilding the identity.
 */
#include <errno.h>
#include <pthread.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <internal/err.h>
#include <internal/pattern.h>

#include "attn_rows.h"

struct gen_job {
	const struct asam_problem *p;
	int rr, next;
	int32_t *rows, *toff, *tlist;
	int err;
};

static int cmp_i32(const void *a, const void *b)
{
	int32_t x = *(const int32_t *)a, y = *(const int32_t *)b;

	return (x > y) - (x < y);
}

/*
 * Head h: runtime/pattern.c's permutations, but only the first rr swaps
 * are made (they are undone after the row is copied, so the identity is
 * never rebuilt), and the draws past them advance the state untempered.
 */
static void gen_head(struct gen_job *job, int h, int32_t *perm, int32_t *swp)
{
	const struct asam_problem *p = job->p;
	int64_t n = p->Nk, i, t, cnt = job->rr < n - 1 ? job->rr : n - 1;
	int32_t *rows = job->rows + (size_t)h * p->Nq * job->rr;
	int32_t *toff = job->toff + (size_t)h * (p->Nk + 1);
	struct asam_mt19937 mt;
	int64_t j, sum = (int64_t)h * p->Nq * job->rr;

	for (t = 0; t < n; t++)
		perm[t] = (int32_t)t;
	asam_mt_seed(&mt, (uint32_t)(p->pat.seed + (uint64_t)h));
	for (i = 0; i < p->Nq; i++) {
		int32_t *row = rows + i * job->rr, tmp;

		for (t = 0; t < cnt; t++) {
			int64_t z = asam_mt_next(&mt) % (uint32_t)(n - t);

			swp[t] = (int32_t)(t + z);
			tmp = perm[t];
			perm[t] = perm[t + z];
			perm[t + z] = tmp;
		}
		memcpy(row, perm, sizeof(int32_t) * job->rr);
		for (t = cnt - 1; t >= 0; t--) {
			tmp = perm[t];
			perm[t] = perm[swp[t]];
			perm[swp[t]] = tmp;
		}
		asam_mt_skip(&mt, (uint64_t)(n - 1 - cnt));
		qsort(row, job->rr, sizeof(int32_t), cmp_i32);
	}
	/* key -> rows, by counting; filled in row order, so ascending */
	memset(toff, 0, sizeof(int32_t) * (p->Nk + 1));
	for (i = 0; i < (int64_t)p->Nq * job->rr; i++)
		toff[rows[i]]++;
	for (j = 0; j <= p->Nk; j++) {
		int64_t c = toff[j];

		toff[j] = (int32_t)sum;
		sum += c;
	}
	memcpy(perm, toff, sizeof(int32_t) * p->Nk);	/* cursors */
	for (i = 0; i < p->Nq; i++)
		for (t = 0; t < job->rr; t++)
			job->tlist[perm[rows[i * job->rr + t]]++] = (int32_t)i;
}

static void *gen_thread(void *arg)
{
	struct gen_job *job = arg;
	int32_t *perm = malloc(sizeof(int32_t) * ((size_t)job->p->Nk + 1));
	int32_t *swp = malloc(sizeof(int32_t) * ((size_t)job->rr + 1));
	int h;

	if (!perm || !swp) {
		__atomic_store_n(&job->err, -ENOMEM, __ATOMIC_RELAXED);
	} else {
		while ((h = __atomic_fetch_add(&job->next, 1,
					       __ATOMIC_RELAXED)) < job->p->Hq)
			gen_head(job, h, perm, swp);
	}
	free(perm);
	free(swp);
	return NULL;
}

int attn_rows_gen(const struct asam_problem *p, int rr, int32_t *buf)
{
	size_t nr = (size_t)p->Hq * p->Nq * rr;
	size_t ntoff = (size_t)p->Hq * (p->Nk + 1);
	struct gen_job job = { .p = p, .rr = rr, .rows = buf,
			       .toff = buf + nr, .tlist = buf + nr + ntoff };
	long cpus = sysconf(_SC_NPROCESSORS_ONLN);
	int nt = cpus < 1 ? 1 : cpus > 32 ? 32 : (int)cpus, i, started = 0;
	pthread_t th[32];

	if (nt > p->Hq)
		nt = p->Hq;
	for (i = 1; i < nt; i++)
		if (!pthread_create(&th[i], NULL, gen_thread, &job))
			started++;
		else
			break;
	gen_thread(&job);
	for (i = 1; i <= started; i++)
		pthread_join(th[i], NULL);
	if (job.err)
		return asam_err(job.err, "pattern: no memory for the random rows");
	return 0;
}
