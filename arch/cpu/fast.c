// SPDX-License-Identifier: MIT
/*
 * The fast CPU backend ("cpu"): SPEC 2 with tiled online softmax, fp32
 * arithmetic over fp32/fp16/bf16 storage, and work proportional to the
 * allowed pairs of the pattern.
 *
 * A work item is a group of up to FAST_TQ query rows of one (b, h) and the
 * set of keys the group attends: the range [0, max limit) when the dense
 * branch is computed (SOFT shares every score between the two branches,
 * with a per-row bit mask for the sparse one), else the union of the rows'
 * sparse key lists (fast-plan.c).  Keys are walked in blocks of 64:
 * gather K and V (converting to fp32), scores Q.K^T, per-row masks, the
 * online softmax update, P.V.  Memory is O((N + FAST_TQ * Nk) per worker).
 *
 * Forward items are (b, h, group) and run on the context's worker pool.
 * Backward recomputes the probabilities from the saved log-sum-exps; its
 * items are (b, kv head), each accumulating dK and dV privately over the
 * query heads that share them, so no two workers write the same row and
 * the result is deterministic.  Worker scratch is allocated and first
 * written by the worker itself, on its own NUMA node.
 */
#include <math.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdlib.h>
#include <string.h>

#include <internal/backend.h>
#include <internal/ctx.h>
#include <internal/err.h>
#include <internal/log.h>
#include <internal/threadpool.h>

#include "fast-job.h"

static void *walloc(size_t bytes)
{
	void *x = aligned_alloc(64, (bytes + 63) & ~(size_t)63);

	if (x)
		memset(x, 0, bytes);	/* first touch by the worker */
	return x;
}

/*
 * Worker @worker's scratch buffer @slot of at least @bytes: the one the
 * context keeps for it (grown when short), or, for a call that could not
 * take the context's lock, a fresh one that ws_free() frees.
 */
static void *scratch(struct fast_job *job, struct fast_ws *w, int worker,
		     int slot, size_t bytes)
{
	struct cpu_scr *s;
	size_t n = (bytes + 63) & ~(size_t)63;

	if (!w->scr)
		return aligned_alloc(64, n ? n : 64);
	s = &job->priv->scr[worker];
	if (s->bytes[slot] < n || !s->p[slot]) {
		free(s->p[slot]);
		s->p[slot] = aligned_alloc(64, n ? n : 64);
		s->bytes[slot] = s->p[slot] ? n : 0;
	}
	return s->p[slot];
}

static void ws_free(struct fast_ws *w)
{
	if (!w)
		return;
	if (w->scr)
		w->rk = NULL, w->dK = w->dV = w->dqa = NULL,
		w->bkT = w->bvb = w->bkb = w->bvT = NULL, w->blist = NULL,
		w->bdK = w->bdV = NULL, w->tsc = NULL,
		w->kmrow = w->kmpos = NULL, w->kms = NULL;
	free(w->q);
	free(w->dO);
	free(w->o);
	free(w->accS);
	free(w->accA);
	free(w->dq);
	free(w->kT);
	free(w->vT);
	free(w->kb);
	free(w->vb);
	free(w->tk);
	free(w->tv);
	free(w->S);
	free(w->Sb);
	free(w->Ps);
	free(w->Pd);
	free(w->dP);
	free(w->dST);
	free(w->dK);
	free(w->dV);
	free(w->rk);
	free(w->u);
	free(w->srow);
	free(w->srow2);
	free(w->posn);
	free(w->flag);
	free(w->bytes);
	free(w->bits);
	free(w->seg);
	free(w->segn);
	free(w->bkT);
	free(w->bvb);
	free(w->bkb);
	free(w->bvT);
	free(w->bdK);
	free(w->bdV);
	free(w->tsc);
	free(w->tq);
	free(w->tacc);
	free(w->tm);
	free(w->tl);
	free(w->tkeys);
	free(w->tn);
	free(w->tcur);
	free(w->tdo);
	free(w->dqa);
	free(w->dD);
	free(w->bkeys);
	free(w->brn);
	free(w->bcur);
	free(w->blist);
	free(w->stamp);
	free(w->ubits);
	free(w->usum);
	free(w->kmoff);
	free(w->kmcst);
	free(w->kmrow);
	free(w->kmpos);
	free(w->kms);
	free(w->kmt);
	free(w->kmt2);
	asam_pat_plan_destroy(w->plan);
	free(w);
}

struct fast_ws *fast_ws_get(struct fast_job *job, int worker)
{
	const struct asam_problem *p = job->p;
	struct fast_ws *w = job->ws[worker];
	size_t td = sizeof(float) * FAST_TQ * job->dp;
	size_t kd = sizeof(float) * FAST_KB * job->dp;
	size_t tk = sizeof(float) * FAST_TQ * FAST_KB, rt;

	if (w)
		return w->failed ? NULL : w;
	w = calloc(1, sizeof(*w));
	if (!w)
		return NULL;
	job->ws[worker] = w;
	w->plan_b = w->plan_h = -1;
	/* job_init sized the context's scratch for every worker */
	w->scr = job->priv && job->priv->scr && worker < job->priv->nscr;
	w->q = walloc(td);
	w->dO = walloc(td);
	w->o = walloc(td);
	w->accS = walloc(td);
	w->accA = walloc(td);
	w->dq = walloc(td);
	w->kT = walloc(kd);
	w->vT = walloc(kd);
	w->kb = walloc(kd);
	w->vb = walloc(kd);
	w->tk = walloc(kd);
	w->tv = walloc(kd);
	w->S = walloc(tk);
	w->Ps = walloc(tk);
	w->Pd = walloc(tk);
	w->dP = walloc(tk);
	w->dST = walloc(tk);
	w->rk = scratch(job, w, worker, SCR_RK,
			sizeof(int32_t) * FAST_TQ * (size_t)p->Nk);
	w->u = walloc(sizeof(int32_t) * (size_t)p->Nk);
	w->srow = walloc(sizeof(float) * ((size_t)p->Nk + 16));
	w->srow2 = walloc(sizeof(float) * ((size_t)p->Nk + 16));
	w->posn = walloc(sizeof(int32_t) * (size_t)p->Nk);
	w->flag = walloc(p->Nk);
	w->bits = walloc(sizeof(uint64_t) * FAST_TQ * job->nw * 2);
	w->seg = walloc(sizeof(int32_t) * job->nw * 2);
	w->segn = walloc(sizeof(int32_t) * job->nw * 2);
	if (p->bwd) {
		size_t rows = (size_t)job->nkb * FAST_KB;

		/* bwd_keys() clears the range it sums into */
		w->dK = scratch(job, w, worker, SCR_DK,
				sizeof(float) * rows * job->dp);
		w->dV = scratch(job, w, worker, SCR_DV,
				sizeof(float) * rows * job->dp);
		if (!w->dK || !w->dV)
			w->failed = true;
	}
	if ((job->fp.sorted_groups || job->fp.str_cols || job->fp.hier_cols) &&
	    !job->rows_only) {
		/*
		 * The segments of the shared key set (fast_gather), and in
		 * the backward their K rows and V transposes too.  Not
		 * cleared: only the segments the worker gathers are touched
		 * (by it) and read, often a small part; clearing the whole
		 * faulted in 2-4 MB a worker a call.
		 */
		size_t bytes = sizeof(float) * (job->nkb + 1) * FAST_KB *
			       job->dp;

		w->bkT = scratch(job, w, worker, SCR_BKT, bytes);
		w->bvb = scratch(job, w, worker, SCR_BVB, bytes);
		if (p->bwd) {
			w->bkb = scratch(job, w, worker, SCR_BKB, bytes);
			w->bvT = scratch(job, w, worker, SCR_BVT, bytes);
			w->bdK = scratch(job, w, worker, SCR_BDK, bytes);
			w->bdV = scratch(job, w, worker, SCR_BDV, bytes);
		}
		if (!w->bkT || !w->bvb || (p->bwd && (!w->bkb || !w->bvT ||
						      !w->bdK || !w->bdV)))
			w->failed = true;
	}
	/* a bucket's scores a row (fwd_bucket; without, the online step) */
	if (job->fp.sorted_groups && !p->bwd && !job->rows_only)
		w->Sb = walloc(sizeof(float) * FAST_TQ * FAST_BSEG * FAST_KB);
	if (job->fp.per_row_plan || p->pat.kind == ASAM_PATTERN_USER_INDEX)
		w->bytes = walloc(p->Nk);	/* row flags, kept zero */
	if (p->pat.kind == ASAM_PATTERN_USER_INDEX) {
		w->stamp = walloc(sizeof(uint32_t) * ((size_t)p->Nk + 1));
		/* one bit a key, one a 64-key word (fast-rows.c) */
		w->ubits = walloc(sizeof(uint64_t) *
				  ((size_t)p->Nk / 64 + 1));
		w->usum = walloc(sizeof(uint64_t) *
				 ((size_t)p->Nk / 4096 + 1));
		if (!w->stamp || !w->ubits || !w->usum)
			w->failed = true;
	}
	/*
	 * the call's tile rows (job->rt, set before the workers start), not
	 * FAST_RT: these are cleared at allocation, every call
	 */
	rt = job->rt > 0 && job->rt <= FAST_RT ? job->rt : FAST_RT_ROWS;
	if (fast_rows_tiled(job)) {
		w->tq = walloc(sizeof(float) * rt * job->dp);
		w->tacc = walloc(sizeof(float) * rt * job->dp);
		w->tm = walloc(sizeof(float) * rt);
		w->tl = walloc(sizeof(float) * rt);
		w->tkeys = walloc(sizeof(*w->tkeys) * rt);
		w->tn = walloc(sizeof(int32_t) * rt);
		w->tcur = walloc(sizeof(int32_t) * rt);
		if (!w->tq || !w->tacc || !w->tm || !w->tl || !w->tkeys ||
		    !w->tn || !w->tcur)
			w->failed = true;
		if (job->tsc) {
			w->tsc = scratch(job, w, worker, SCR_TSC,
					 sizeof(float) * rt * job->tsc);
			if (!w->tsc)
				w->failed = true;
		}
	}
	if (job->rows_only && p->bwd) {
		size_t rows = (size_t)job->group * p->Nq;

		w->tdo = walloc(sizeof(float) * rt * job->dp);
		/* cleared row by row at a row's first chunk (bwd_row) */
		w->dqa = scratch(job, w, worker, SCR_DQA,
				 sizeof(float) * rows * job->dp);
		w->dD = walloc(sizeof(float) * rows);
		if (!w->tdo || !w->dqa || !w->dD)
			w->failed = true;
		if (p->pat.kind == ASAM_PATTERN_RANDOM_ROWS ||
		    p->pat.kind == ASAM_PATTERN_USER_INDEX) {
			w->bkeys = walloc(sizeof(*w->bkeys) * rows);
			w->brn = walloc(sizeof(int32_t) * rows);
			w->bcur = walloc(sizeof(int32_t) * rows);
			if (!w->bkeys || !w->brn || !w->bcur)
				w->failed = true;
		}
	}
	/* lists kept across key chunks only when there are chunks */
	if (w->bkeys && job->ucap) {
		w->blist = scratch(job, w, worker, SCR_BLIST,
				   sizeof(int32_t) * (size_t)job->group *
				   p->Nq * job->ucap);
		if (!w->blist)
			w->failed = true;
	}
	if (job->kmajor) {
		size_t cap = (size_t)job->kmcap;

		w->kmoff = walloc(sizeof(int32_t) * (rt + 1));
		w->kmcst = walloc(sizeof(int32_t) * ((size_t)p->Nk + 2));
		w->kmrow = scratch(job, w, worker, SCR_KMROW,
				   sizeof(int32_t) * cap);
		w->kmt = walloc(sizeof(float) * (rt + 16));
		w->kmt2 = walloc(sizeof(float) * (rt + 16));
		if (!p->bwd) {	/* the forward's scores, by row */
			w->kmpos = scratch(job, w, worker, SCR_KMPOS,
					   sizeof(int32_t) * cap);
			w->kms = scratch(job, w, worker, SCR_KMS,
					 sizeof(float) * cap);
		}
		if (!w->kmoff || !w->kmcst || !w->kmrow || !w->kmt ||
		    !w->kmt2 || (!p->bwd && (!w->kmpos || !w->kms)))
			w->failed = true;
	}
	if (job->fp.per_row_plan) {
		w->plan = asam_pat_plan_create(p);
		if (IS_ERR(w->plan)) {
			w->plan = NULL;
			w->failed = true;
		}
	}
	if (!w->q || !w->dO || !w->o || !w->accS || !w->accA || !w->dq ||
	    !w->kT || !w->vT || !w->kb || !w->vb || !w->tk || !w->tv ||
	    !w->S || !w->Ps || !w->Pd || !w->dP || !w->dST ||
	    !w->rk || !w->u || !w->srow || !w->srow2 || !w->posn || !w->flag || !w->bits ||
	    !w->seg || !w->segn ||
	    ((job->fp.per_row_plan ||
	      p->pat.kind == ASAM_PATTERN_USER_INDEX) && !w->bytes))
		w->failed = true;
	return w->failed ? NULL : w;
}

/* ------------------------------------------------------------------------ */
/* Storage conversion                                                       */

/*
 * Ask for row @off..@off + d of @t ahead of its use (@write: for a
 * store).  Rows read or written in an order of the pattern's (the
 * queries of a cluster, the keys of a bucket) are scattered over the
 * tensor: the hardware prefetchers see no stream, and each row's first
 * touch waits on memory.
 */
void fast_prefetch_row(const struct asam_tv *t, int64_t off, int d,
		       bool write)
{
	size_t es = asam_dtype_size(t->dt);
	const char *a = (const char *)t->data + off * es;
	size_t n = (size_t)d * es, x;

	/* the last byte too: a row need not start on a line */
	if (write) {
		for (x = 0; x < n; x += 64)
			__builtin_prefetch(a + x, 1, 3);
		__builtin_prefetch(a + n - 1, 1, 3);
	} else {
		for (x = 0; x < n; x += 64)
			__builtin_prefetch(a + x, 0, 3);
		__builtin_prefetch(a + n - 1, 0, 3);
	}
}

/*
 * ... into the L2 only: a group's rows (16 rows of three or four
 * tensors, ~300 lines) are more misses than the L1 keeps in flight
 */
void fast_prefetch_l2(const struct asam_tv *t, int64_t off, int d)
{
	const char *a = (const char *)t->data + off * asam_dtype_size(t->dt);
	size_t n = (size_t)d * asam_dtype_size(t->dt), x;

	for (x = 0; x < n; x += 64)
		__builtin_prefetch(a + x, 0, 2);
	__builtin_prefetch(a + n - 1, 0, 2);
}

/* a row times @scale; fp32 rows scaled as they are read, no copy */
void fast_load_scaled(const struct asam_tv *t, int64_t off, int d,
		      float scale, float *dst)
{
	int e;

	if (t->dt == ASAM_DT_F32) {
		const float *src = (const float *)t->data + off;

		for (e = 0; e < d; e++)
			dst[e] = src[e] * scale;
		return;
	}
	fast_load_row(t, off, d, dst);
	for (e = 0; e < d; e++)
		dst[e] *= scale;
}

void fast_load_row(const struct asam_tv *t, int64_t off, int d, float *dst)
{
	int e;

	switch (t->dt) {
	case ASAM_DT_F32:
		memcpy(dst, (const float *)t->data + off, sizeof(float) * d);
		break;
	case ASAM_DT_F16:
		for (e = 0; e < d; e++)
			dst[e] = asam_half_to_float(
				((const uint16_t *)t->data)[off + e]);
		break;
	case ASAM_DT_BF16:
		for (e = 0; e < d; e++)
			dst[e] = asam_bf16_to_float(
				((const uint16_t *)t->data)[off + e]);
		break;
	default:
		for (e = 0; e < d; e++)
			dst[e] = (float)tv_get(t, off + e);
		break;
	}
}

void fast_store_row(const struct asam_tv *t, int64_t off, int d,
		      const float *src)
{
	int e;

	switch (t->dt) {
	case ASAM_DT_F32:
		memcpy((float *)t->data + off, src, sizeof(float) * d);
		break;
	case ASAM_DT_F16:
		for (e = 0; e < d; e++)
			((uint16_t *)t->data)[off + e] =
				asam_float_to_half(src[e]);
		break;
	case ASAM_DT_BF16:
		for (e = 0; e < d; e++)
			((uint16_t *)t->data)[off + e] =
				asam_float_to_bf16(src[e]);
		break;
	default:
		for (e = 0; e < d; e++)
			tv_set(t, off + e, src[e]);
		break;
	}
}

/*
 * K and V of every (b, kv head) converted once per call to fp32, rows and
 * 64-key column blocks, zero padded: a range of keys then needs no copy.
 * Workers convert the blocks they are given, so the pages are first
 * touched on their nodes.
 */
/*
 * fp32 K or V whose rows are dense at the padded width can be read in
 * place (the kernels load unaligned): full blocks then need no row copy,
 * only the transposes.
 */
static bool tv_direct(const struct asam_tv *t, int d, int dp)
{
	/*
	 * ... and start on a cache line: a 64-byte load from a row that
	 * does not crosses two lines, which costs the gathered-row kernels
	 * (RANDOM_ROWS, USER_INDEX) about half their speed.  A large
	 * malloc()ed buffer starts 16 bytes into a page: such a tensor is
	 * converted into the aligned arena like any other.
	 */
	return t->dt == ASAM_DT_F32 && d == dp && t->stride[3] == 1 &&
	       t->stride[2] == d && !((uintptr_t)t->data % 64) &&
	       !(t->stride[1] % 16) && !(t->stride[0] % 16);
}

/* Rows of block @blk of (b, hk) in @t: in place, or NULL to copy. */
const float *fast_block_rows(const struct fast_job *job,
			       const struct asam_tv *t, bool direct, int b,
			       int hk, int64_t blk)
{
	if (!direct || (blk + 1) * FAST_KB > job->p->Nk)
		return NULL;
	return (const float *)t->data + tv_off(t, b, hk, blk * FAST_KB, 0);
}

static void convert_blocks(void *arg, int64_t begin, int64_t end, int worker)
{
	struct fast_job *job = arg;
	const struct asam_problem *p = job->p;
	int dp = job->dp, d = p->d, t, e;
	int64_t it;

	for (it = begin; it < end; it++) {
		int64_t bhk = it / job->nkb, blk = it % job->nkb;
		int b = bhk / p->Hkv, hk = bhk % p->Hkv;
		const float *kr = fast_block_rows(job, &p->k, job->kdirect, b, hk,
					     blk);
		const float *vr = fast_block_rows(job, &p->v, job->vdirect, b, hk,
					     blk);
		float *kc = job->K32 + it * FAST_KB * dp;
		float *vc = job->V32 + it * FAST_KB * dp;
		float *kt = job->KT + it * FAST_KB * dp;
		float *vt = job->VT ? job->VT + it * FAST_KB * dp : NULL;

		if (!kr || !vr) {
			for (t = 0; t < FAST_KB; t++) {
				int64_t j = blk * FAST_KB + t;

				if (j >= p->Nk) {
					if (!kr)
						memset(kc + t * dp, 0,
						       sizeof(float) * dp);
					if (!vr)
						memset(vc + t * dp, 0,
						       sizeof(float) * dp);
					continue;
				}
				if (!kr) {
					fast_load_row(&p->k, tv_off(&p->k, b, hk, j, 0),
						 d, kc + t * dp);
					memset(kc + t * dp + d, 0,
					       sizeof(float) * (dp - d));
				}
				if (!vr) {
					fast_load_row(&p->v, tv_off(&p->v, b, hk, j, 0),
						 d, vc + t * dp);
					memset(vc + t * dp + d, 0,
					       sizeof(float) * (dp - d));
				}
			}
		}
		if (job->no_blocks)
			continue;	/* rows only, no transposed blocks */
		if (!kr)
			kr = kc;
		if (!vr)
			vr = vc;
		for (e = 0; e < dp; e++)
			for (t = 0; t < FAST_KB; t++) {
				kt[e * FAST_KB + t] = kr[t * dp + e];
				if (vt)
					vt[e * FAST_KB + t] = vr[t * dp + e];
			}
	}
}

/* The fp32 K and V rows of key @key of (b, hk): converted, or in place */
static void key_rows(const struct fast_job *job, int b, int hk, int64_t base,
		     int32_t key, const float **kr, const float **vr)
{
	const struct asam_problem *p = job->p;
	size_t off = (size_t)(base + key) * job->dp;

	*kr = job->K32 + off;
	*vr = job->V32 + off;
	if (job->kdirect)
		*kr = (const float *)p->k.data + tv_off(&p->k, b, hk, key, 0);
	if (job->vdirect)
		*vr = (const float *)p->v.data + tv_off(&p->v, b, hk, key, 0);
}

#define GATHER_AHEAD	12	/* keys */

static inline void prefetch_f32(const float *r, int dp)
{
	int x;

	for (x = 0; x < dp; x += 16)
		__builtin_prefetch(r + x, 0, 2);
	__builtin_prefetch(r + dp - 1, 0, 2);
}

/*
 * Gather @n keys of (b, hk): one of K and V into the transposed block
 * @T (V when @v_in_T), the other as rows into @rows.  The forward takes
 * K transposed (S = Q K^T) and V rows, the backward K rows (dQ) and V
 * transposed (dP = dO V^T).
 */
static void gather_keys(const struct fast_job *job, int b, int hk,
			const int32_t *keys, int n, float *T, float *rows,
			bool v_in_T)
{
	const struct asam_problem *p = job->p;
	int dp = job->dp, t;
	int64_t base = ((int64_t)b * p->Hkv + hk) * job->nkb * FAST_KB, ts;
	const float *tb = fast_rows_of(job, v_in_T, b, hk, &ts);

	/* the first keys' rows, which the loop's look-ahead never asks */
	for (t = 0; t < GATHER_AHEAD && t < n; t++) {
		const float *kr, *vr;

		key_rows(job, b, hk, base, keys[t], &kr, &vr);
		prefetch_f32(kr, dp);
		prefetch_f32(vr, dp);
	}
	for (t = 0; t < n; t++) {
		const float *kr, *vr;

		/*
		 * the keys of a bucket are scattered: ask for the rows a few
		 * keys ahead, or each key's first touch waits on memory
		 */
		if (t + GATHER_AHEAD < n) {
			key_rows(job, b, hk, base, keys[t + GATHER_AHEAD], &kr,
				 &vr);
			prefetch_f32(kr, dp);
			prefetch_f32(vr, dp);
		}
		key_rows(job, b, hk, base, keys[t], &kr, &vr);
		memcpy(rows + t * dp, v_in_T ? kr : vr, sizeof(float) * dp);
	}
	/* the other rows, fetched by the loop above, transposed */
	job->isa->tgather(tb, ts, keys, n, dp, T);
}

/* Point the worker at segment @sg's K and V, gathering scattered keys. */
void fast_gather(const struct fast_job *job, struct fast_ws *w,
		   const struct keyset *ks, int b, int hk, int sg,
		   bool want_vT)
{
	const struct asam_problem *p = job->p;
	int dp = job->dp, nb = ks->segn[sg], t;
	int64_t base = ((int64_t)b * p->Hkv + hk) * job->nkb * FAST_KB, ts;
	const int32_t *keys;
	const float *tb;

	if (ks->seg[sg] >= 0) {
		size_t off = (size_t)(base + (int64_t)ks->seg[sg] * FAST_KB) *
			     dp;

		const float *kr = fast_block_rows(job, &p->k, job->kdirect, b, hk,
					     ks->seg[sg]);
		const float *vr = fast_block_rows(job, &p->v, job->vdirect, b, hk,
					     ks->seg[sg]);

		w->pkT = job->KT + off;
		w->pvb = vr ? vr : job->V32 + off;
		w->pkb = kr ? kr : job->K32 + off;
		w->pvT = job->VT ? job->VT + off : NULL;
		return;
	}
	keys = seg_keys(ks, sg);
	if (ks->bucket && sg != ks->bsg && w->bkT && (!want_vT || w->bkb)) {
		/*
		 * A cluster bucket, or the global columns of STRIDED and
		 * HIERARCHICAL: the groups of one cluster or head share it,
		 * so keep each gathered segment and gather only the new
		 * ones (the backward: K and V rows and transposes alike).
		 * The same list grown or cut (causal groups take longer
		 * prefixes) keeps its whole segments.
		 */
		size_t so = (size_t)(-ks->seg[sg] - 1) * FAST_KB * dp;

		if (w->bu != ks->u || w->bb != b || w->bhk != hk) {
			w->bu = ks->u;
			w->bn = ks->nu;
			w->bb = b;
			w->bhk = hk;
			w->bvalid = 0;
		} else if (w->bn != ks->nu) {
			int64_t whole = (w->bn < ks->nu ? w->bn : ks->nu) /
					FAST_KB;

			if (w->bvalid > whole)
				w->bvalid = (int)whole;
			w->bn = ks->nu;
		}
		w->pkT = w->bkT + so;
		w->pvb = w->bvb + so;
		w->pkb = w->bkb ? w->bkb + so : NULL;
		w->pvT = w->bvT ? w->bvT + so : NULL;
		if (-ks->seg[sg] - 1 < w->bvalid)
			return;
		gather_keys(job, b, hk, keys, nb, w->bkT + so, w->bvb + so,
			    false);
		if (w->bkb)
			gather_keys(job, b, hk, keys, nb, w->bvT + so,
				    w->bkb + so, true);
		if (-ks->seg[sg] - 1 == w->bvalid)
			w->bvalid++;
		return;
	}
	for (t = 0; t < nb; t++) {
		const float *kr, *vr;

		key_rows(job, b, hk, base, keys[t], &kr, &vr);
		/* K rows only for dQ */
		if (want_vT)
			memcpy(w->kb + t * dp, kr, sizeof(float) * dp);
		memcpy(w->vb + t * dp, vr, sizeof(float) * dp);
	}
	/* K (and V) transposed; padding columns finite zeros */
	tb = fast_rows_of(job, false, b, hk, &ts);
	job->isa->tgather(tb, ts, keys, nb, dp, w->kT);
	if (want_vT) {
		tb = fast_rows_of(job, true, b, hk, &ts);
		job->isa->tgather(tb, ts, keys, nb, dp, w->vT);
	}
	w->pkT = w->kT;
	w->pvb = w->vb;
	w->pkb = w->kb;
	w->pvT = w->vT;
}

/* ------------------------------------------------------------------------ */
/* Backend ops                                                              */

static void job_arena_put(struct fast_job *job)
{
	if (job->priv)
		pthread_mutex_unlock(&job->priv->lock);
	else
		free(job->KT);
	job->priv = NULL;
	job->KT = NULL;
}

static int job_init(struct fast_job *job, struct asam_backend *be,
		    const struct asam_problem *p, struct asam_pool **pool)
{
	int ret;

	memset(job, 0, sizeof(*job));
	*pool = asam_pool_get(be->ctx);
	job->p = p;
	job->isa = fast_isa_select();
	job->dp = (p->d + 15) & ~15;
	job->nw = DIV_ROUND_UP(p->Nk, 64) + 1;
	job->group = p->Hq / p->Hkv;
	job->scale = (float)p->scale;
	job->nthreads = asam_pool_size(*pool);
	job->ws = calloc(job->nthreads, sizeof(*job->ws));
	if (!job->ws)
		return asam_err(-ENOMEM, "cpu: out of memory");
	job->nkb = DIV_ROUND_UP(p->Nk, FAST_KB);
	job->kdirect = tv_direct(&p->k, p->d, job->dp);
	job->vdirect = tv_direct(&p->v, p->d, job->dp);
	{
		struct cpu_priv *priv = be->priv;
		size_t n = (size_t)p->B * p->Hkv * job->nkb * FAST_KB * job->dp;
		size_t bytes = sizeof(float) * n * (p->bwd ? 4 : 3);
		float *a = NULL;

		if (priv && !pthread_mutex_trylock(&priv->lock)) {
			job->priv = priv;
			if (priv->nscr < job->nthreads) {
				/* workers past nscr allocate their own */
				struct cpu_scr *x = realloc(priv->scr,
						sizeof(*x) * job->nthreads);

				if (x) {
					memset(x + priv->nscr, 0, sizeof(*x) *
					       (job->nthreads - priv->nscr));
					priv->scr = x;
					priv->nscr = job->nthreads;
				}
			}
			if (priv->arena_bytes < bytes) {
				free(priv->arena);
				priv->arena = aligned_alloc(64, bytes);
				priv->arena_bytes = priv->arena ? bytes : 0;
			}
			a = priv->arena;
		} else {
			a = aligned_alloc(64, bytes);
		}
		if (!a) {
			ret = asam_err(-ENOMEM, "cpu: out of memory");
			goto err;
		}
		job->KT = a;
		job->K32 = a + n;
		job->V32 = a + 2 * n;
		job->VT = p->bwd ? a + 3 * n : NULL;
	}
	ret = fast_plan_init(&job->fp, p, *pool,
			     job->priv ? &job->priv->rows : NULL);
	if (ret)
		goto err;
	/*
	 * The per-row patterns and cluster buckets with the sparse branch
	 * alone read or gather K and V rows (fast-rows.c, fast_gather): no
	 * transposed blocks to make, no copies when the rows are usable
	 * in place.
	 */
	fast_rows_setup(job);
	fast_km_setup(job);
	if (!(job->no_blocks && job->kdirect && job->vdirect))
		asam_pool_for(*pool, (int64_t)p->B * p->Hkv * job->nkb, 4,
			      convert_blocks, job);
	return 0;
err:
	job_arena_put(job);
	free(job->ws);
	return ret;
}

static void job_fini(struct fast_job *job)
{
	int t;

	for (t = 0; t < job->nthreads; t++)
		ws_free(job->ws[t]);
	free(job->ws);
	fast_plan_fini(&job->fp);
	job_arena_put(job);
}

/*
 * Forward items per pool grab: about eight grabs per worker, so that the
 * dynamic hand-out still evens out uneven items (causal rows, cluster
 * sizes), while a worker walks neighbouring groups of one head and finds
 * their K and V blocks (band neighbours, a cluster's bucket, a head's
 * scattered rows) still in its own cache.  At most one head's groups.
 */
static int64_t fwd_chunk(const struct fast_job *job)
{
	const struct asam_problem *p = job->p;
	int64_t per = job->fp.maxgroups;
	int64_t c = (int64_t)p->B * p->Hq * per / ((int64_t)job->nthreads * 8);
	int64_t lo = job->fp.group_rows == 1 ? 16 : 1;

	if (c > per)
		c = per;
	return c < lo ? lo : c;
}

static int cpu_fwd(struct asam_backend *be, const struct asam_problem *p)
{
	struct asam_pool *pool;
	struct fast_job job;
	int ret = job_init(&job, be, p, &pool);

	if (ret)
		return ret;
	if (fast_rows_tiled(&job)) {
		if (!job.kmajor)
			job.rt = fast_rows_tile(&job, fast_rows_cap(true), true);
		fast_rows_split(&job);
		asam_pool_for(pool, (int64_t)p->B * p->Hq *
			      DIV_ROUND_UP(p->Nq, job.rt), 1, fast_fwd_tiles,
			      &job);
	} else {
		fast_fwd_setup(&job);
		asam_pool_for(pool, (int64_t)p->B * p->Hq * job.fp.maxgroups,
			      fwd_chunk(&job), fast_fwd_items, &job);
	}
	ret = atomic_load(&job.err);
	job_fini(&job);
	return ret ? asam_err(ret, "cpu: forward out of memory") : 0;
}

static int cpu_bwd(struct asam_backend *be, const struct asam_problem *p)
{
	struct asam_pool *pool;
	struct fast_job job;
	int ret = job_init(&job, be, p, &pool);

	if (ret)
		return ret;
	fast_bwd_run(&job, pool);
	ret = atomic_load(&job.err);
	job_fini(&job);
	return ret ? asam_err(ret, "cpu: backward out of memory") : 0;
}

static int cpu_supports(struct asam_backend *be, const struct asam_problem *p)
{
	if (p->flags & ASAM_F_REFERENCE)
		return asam_err(-EOPNOTSUPP, "cpu: the reference was asked for");
	if (p->d > FAST_MAXD)
		return asam_err(-EOPNOTSUPP, "cpu: head dim %d exceeds %d",
				p->d, FAST_MAXD);
	if (p->dt != ASAM_DT_F32 && p->dt != ASAM_DT_F16 &&
	    p->dt != ASAM_DT_BF16)
		return asam_err(-EOPNOTSUPP, "cpu: dtype %s not served",
				asam_dtype_name(p->dt));
	switch (p->pat.kind) {
	case ASAM_PATTERN_DENSE:
	case ASAM_PATTERN_LOCAL:
	case ASAM_PATTERN_STRIDED:
	case ASAM_PATTERN_HIERARCHICAL:
	case ASAM_PATTERN_RANDOM:
	case ASAM_PATTERN_RANDOM_ROWS:
	case ASAM_PATTERN_CLUSTERED:
	case ASAM_PATTERN_USER_INDEX:
		break;
	default:
		/* a kind added later: the next backend serves it */
		return asam_err(-EOPNOTSUPP, "cpu: pattern %s not planned",
				asam_pattern_name(p->pat.kind));
	}
	if (p->pat.kind == ASAM_PATTERN_CLUSTERED && p->pat.C > 256)
		return asam_err(-EOPNOTSUPP, "cpu: more than 256 clusters");
	return 0;
}

static int cpu_probe(struct asam_backend *be)
{
	struct cpu_priv *priv = calloc(1, sizeof(*priv));

	if (!priv)
		return asam_err(-ENOMEM, "cpu: out of memory");
	pthread_mutex_init(&priv->lock, NULL);
	be->priv = priv;
	pr_info("cpu: fast backend, %s kernels", fast_isa_select()->name);
	return 0;
}

static void cpu_remove(struct asam_backend *be)
{
	struct cpu_priv *priv = be->priv;
	int i, j;

	asam_pool_put(be->ctx);
	if (priv) {
		pthread_mutex_destroy(&priv->lock);
		free(priv->arena);
		free(priv->rows.rows);
		for (i = 0; i < priv->nscr; i++)
			for (j = 0; j < SCR_N; j++)
				free(priv->scr[i].p[j]);
		free(priv->scr);
		free(priv);
	}
	be->priv = NULL;
}

const struct asam_backend_ops asam_backend_cpu_ops = {
	.name = "cpu",
	.api_version = ASAM_BACKEND_API,
	.dev_type = kDLCPU,
	.probe = cpu_probe,
	.remove = cpu_remove,
	.supports = cpu_supports,
	.fwd = cpu_fwd,
	.bwd = cpu_bwd,
};
