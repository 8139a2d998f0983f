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

#include "fast.h"

#define NEG_BIG (-1e30f)

struct fast_ws {
	float *q, *dO, *o, *accS, *accA, *dq;	/* [TQ][dp] */
	float *kT, *vT;				/* [dp][KB] */
	const float *pkT, *pvT, *pkb, *pvb;	/* this block's K, V */
	float *kb, *vb, *tk, *tv;		/* [KB][dp] */
	float *S, *Ps, *Pd, *dP;		/* [TQ][KB] */
	float *PT, *dST;			/* [KB][TQ] */
	float *dK, *dV;				/* [Nk][dp] (backward) */
	int32_t *rk;				/* [TQ][Nk] row key lists */
	int64_t rn[FAST_TQ];
	int64_t slo[FAST_TQ], shi[FAST_TQ];	/* LOCAL: row ranges */
	int32_t *u, *posn;			/* [Nk] */
	float *srow;				/* [Nk + 16] one row's scores */
	uint8_t *flag, *bytes;			/* [Nk] */
	uint64_t *bits;				/* [nseg][TQ] row masks */
	int32_t *seg, *segn;			/* [maxseg] */
	uint64_t *cm;				/* [maxseg] STRIDED columns */
	struct asam_pat_plan *plan;
	int plan_b, plan_h;
	bool failed;
};

/*
 * Per-context state: the fp32 copies of K and V are kept between calls
 * (page faults on fresh buffers cost as much as a sparse pattern's whole
 * work), and so are RANDOM_ROWS index lists, whose generation is
 * O(Nq Nk) by definition.  A concurrent call that finds the lock taken
 * allocates its own.
 */
struct cpu_priv {
	pthread_mutex_t lock;
	float *arena;
	size_t arena_bytes;
	struct fast_rows_cache rows;
};

struct fast_job {
	const struct asam_problem *p;
	const struct fast_isa *isa;
	struct fast_plan fp;
	struct fast_ws **ws;			/* [nthreads] */
	int nthreads, dp, nw, group;
	int64_t nkb;				/* key blocks per (b, kv head) */
	float *KT, *VT;				/* [B][Hkv][nkb][dp][KB] */
	float *K32, *V32;			/* [B][Hkv][nkb * KB][dp] */
	struct cpu_priv *priv;			/* locked: arena in use */
	bool kdirect, vdirect;			/* K, V rows read in place */
	float *D;				/* [B][Hq][Nq][2] (split bwd) */
	double *dgp;				/* [B][Hq][maxgroups] */
	int64_t chunk;				/* keys per dK/dV item */
	int nchunks;
	float scale;
	atomic_int err;
};

/*
 * The group's keys as segments of at most 64 (in the worker scratch): a
 * direct segment is a whole 64-key block of the converted K and V (seg >=
 * 0, the block index), a gathered one is up to 64 scattered keys copied
 * together (seg = -(c + 1): keys u[64 c ..]).  Blocks where the group
 * uses many keys go direct; isolated columns are gathered.
 */
struct keyset {
	int nseg;
	int64_t first;		/* dense blocks start here (backward chunks) */
	const int32_t *seg, *segn, *u;
	bool sbits;		/* sparse mask in ws->bits, else the dense one */
	bool ranges;		/* sparse mask from ws->slo/shi (LOCAL) */
	bool strided;		/* band | columns in blocks, prefixes beyond */
	bool hier;		/* ... with the band as bits (HIERARCHICAL) */
};

#define DIRECT_MIN 24		/* keys of a block that make it direct */

static void *walloc(size_t bytes)
{
	void *x = aligned_alloc(64, (bytes + 63) & ~(size_t)63);

	if (x)
		memset(x, 0, bytes);	/* first touch by the worker */
	return x;
}

static void ws_free(struct fast_ws *w)
{
	if (!w)
		return;
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
	free(w->Ps);
	free(w->Pd);
	free(w->dP);
	free(w->PT);
	free(w->dST);
	free(w->dK);
	free(w->dV);
	free(w->rk);
	free(w->u);
	free(w->srow);
	free(w->posn);
	free(w->flag);
	free(w->bytes);
	free(w->bits);
	free(w->seg);
	free(w->segn);
	free(w->cm);
	asam_pat_plan_destroy(w->plan);
	free(w);
}

static struct fast_ws *ws_get(struct fast_job *job, int worker)
{
	const struct asam_problem *p = job->p;
	struct fast_ws *w = job->ws[worker];
	size_t td = sizeof(float) * FAST_TQ * job->dp;
	size_t kd = sizeof(float) * FAST_KB * job->dp;
	size_t tk = sizeof(float) * FAST_TQ * FAST_KB;

	if (w)
		return w->failed ? NULL : w;
	w = calloc(1, sizeof(*w));
	if (!w)
		return NULL;
	job->ws[worker] = w;
	w->plan_b = w->plan_h = -1;
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
	w->PT = walloc(tk);
	w->dST = walloc(tk);
	w->rk = walloc(sizeof(int32_t) * FAST_TQ * (size_t)p->Nk);
	w->u = walloc(sizeof(int32_t) * (size_t)p->Nk);
	w->srow = walloc(sizeof(float) * ((size_t)p->Nk + 16));
	w->posn = walloc(sizeof(int32_t) * (size_t)p->Nk);
	w->flag = walloc(p->Nk);
	w->bits = walloc(sizeof(uint64_t) * FAST_TQ * job->nw * 2);
	w->seg = walloc(sizeof(int32_t) * job->nw * 2);
	w->segn = walloc(sizeof(int32_t) * job->nw * 2);
	w->cm = walloc(sizeof(uint64_t) * job->nw * 2);
	if (p->bwd) {
		size_t rows = (size_t)job->nkb * FAST_KB;

		w->dK = walloc(sizeof(float) * rows * job->dp);
		w->dV = walloc(sizeof(float) * rows * job->dp);
		if (!w->dK || !w->dV)
			w->failed = true;
	}
	if (job->fp.per_row_plan) {
		w->bytes = walloc(p->Nk);
		w->plan = asam_pat_plan_create(p);
		if (IS_ERR(w->plan)) {
			w->plan = NULL;
			w->failed = true;
		}
	}
	if (!w->q || !w->dO || !w->o || !w->accS || !w->accA || !w->dq ||
	    !w->kT || !w->vT || !w->kb || !w->vb || !w->tk || !w->tv ||
	    !w->S || !w->Ps || !w->Pd || !w->dP || !w->PT || !w->dST ||
	    !w->rk || !w->u || !w->srow || !w->posn || !w->flag || !w->bits ||
	    !w->seg || !w->segn || !w->cm ||
	    (job->fp.per_row_plan && !w->bytes))
		w->failed = true;
	return w->failed ? NULL : w;
}

/* ------------------------------------------------------------------------ */
/* Storage conversion                                                       */

static void load_row(const struct asam_tv *t, int64_t off, int d, float *dst)
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

static void store_row(const struct asam_tv *t, int64_t off, int d,
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
	return t->dt == ASAM_DT_F32 && d == dp && t->stride[3] == 1 &&
	       t->stride[2] == d;
}

/* Rows of block @blk of (b, hk) in @t: in place, or NULL to copy. */
static const float *block_rows(const struct fast_job *job,
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
		const float *kr = block_rows(job, &p->k, job->kdirect, b, hk,
					     blk);
		const float *vr = block_rows(job, &p->v, job->vdirect, b, hk,
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
					load_row(&p->k, tv_off(&p->k, b, hk, j, 0),
						 d, kc + t * dp);
					memset(kc + t * dp + d, 0,
					       sizeof(float) * (dp - d));
				}
				if (!vr) {
					load_row(&p->v, tv_off(&p->v, b, hk, j, 0),
						 d, vc + t * dp);
					memset(vc + t * dp + d, 0,
					       sizeof(float) * (dp - d));
				}
			}
		}
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

/* Point the worker at segment @sg's K and V, gathering scattered keys. */
static void gather(const struct fast_job *job, struct fast_ws *w,
		   const struct keyset *ks, int b, int hk, int sg,
		   bool want_vT)
{
	const struct asam_problem *p = job->p;
	int dp = job->dp, nb = ks->segn[sg], t, e;
	int64_t base = ((int64_t)b * p->Hkv + hk) * job->nkb * FAST_KB;
	const int32_t *keys;

	if (ks->seg[sg] >= 0) {
		size_t off = (size_t)(base + (int64_t)ks->seg[sg] * FAST_KB) *
			     dp;

		const float *kr = block_rows(job, &p->k, job->kdirect, b, hk,
					     ks->seg[sg]);
		const float *vr = block_rows(job, &p->v, job->vdirect, b, hk,
					     ks->seg[sg]);

		w->pkT = job->KT + off;
		w->pvb = vr ? vr : job->V32 + off;
		w->pkb = kr ? kr : job->K32 + off;
		w->pvT = job->VT ? job->VT + off : NULL;
		return;
	}
	keys = ks->u + (size_t)(-ks->seg[sg] - 1) * FAST_KB;
	for (t = 0; t < nb; t++) {
		size_t off = (size_t)(base + keys[t]) * dp;
		const float *kr = job->K32 + off, *vr = job->V32 + off;

		if (job->kdirect)
			kr = (const float *)p->k.data +
			     tv_off(&p->k, b, hk, keys[t], 0);
		if (job->vdirect)
			vr = (const float *)p->v.data +
			     tv_off(&p->v, b, hk, keys[t], 0);
		/* K straight into its transposed block; rows only for dQ */
		for (e = 0; e < dp; e++)
			w->kT[e * FAST_KB + t] = kr[e];
		if (want_vT) {
			memcpy(w->kb + t * dp, kr, sizeof(float) * dp);
			for (e = 0; e < dp; e++)
				w->vT[e * FAST_KB + t] = vr[e];
		}
		memcpy(w->vb + t * dp, vr, sizeof(float) * dp);
	}
	/* padding columns: finite zeros, whatever ran before */
	for (e = 0; e < dp && nb < FAST_KB; e++) {
		memset(w->kT + e * FAST_KB + nb, 0,
		       sizeof(float) * (FAST_KB - nb));
		if (want_vT)
			memset(w->vT + e * FAST_KB + nb, 0,
			       sizeof(float) * (FAST_KB - nb));
	}
	w->pkT = w->kT;
	w->pvb = w->vb;
	w->pkb = w->kb;
	w->pvT = w->vT;
}

/* ------------------------------------------------------------------------ */
/* Key sets                                                                 */

struct group {
	int b, h, hk, R;
	int32_t rows[FAST_TQ];
	int64_t lim[FAST_TQ];
	int64_t maxlim;
	bool want_s, want_d, s_is_d;
	float g;			/* gate applied to the sparse branch */
	int64_t k0, k1;			/* only keys in [k0, k1) (backward) */
};

/* Backward passes: both at once, or dQ (and D, dg) then dK/dV per chunk */
enum bwd_mode { BWD_FUSED, BWD_DQ, BWD_DKV };

static void plan_for(struct fast_job *job, struct fast_ws *w, int b, int h)
{
	if (!job->fp.per_row_plan || (w->plan_b == b && w->plan_h == h))
		return;
	asam_pat_plan_bh(w->plan, b, h);
	w->plan_b = b;
	w->plan_h = h;
}

/*
 * Build the group's key set.  Dense branch: the blocks of [0, max limit),
 * the sparse rows (if any) as bits over them.  Sparse only: the union of
 * the rows' lists, found by flagging keys and scanning the flagged span
 * block by block; well-used blocks go direct, the rest is gathered.
 */
/* first index in sorted a[0..n) with a[t] >= x */
static int64_t lower_bound32(const int32_t *a, int64_t n, int64_t x)
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
		for (r = 0; r < gr->R; r++) {
			int64_t pos = gr->rows[r] + job->fp.qoff;
			int64_t a = pos - pat->radius, b = pos + pat->radius + 1;

			a = a < gr->k0 ? gr->k0 : a;
			b = b > gr->lim[r] ? gr->lim[r] : b;
			b = b > gr->k1 ? gr->k1 : b;
			w->slo[r] = a;
			w->shi[r] = b;
			if (a < b) {
				lo = a < lo ? a : lo;
				hi = b > hi ? b : hi;
			}
		}
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
		 * The rows' bands go direct, with the columns that fall in
		 * those blocks as a per-block mask; the other columns are
		 * shared by every row and gathered once, each row taking the
		 * prefix below its limit.
		 */
		int64_t blo, bhi, j, end = gr->maxlim < gr->k1 ? gr->maxlim
							       : gr->k1;
		bool hr = pat->kind == ASAM_PATTERN_HIERARCHICAL;
		int64_t ng = 0, st = pat->stride, rad = pat->radius, nc = 0;
		const int32_t *cols = NULL;

		if (hr) {
			/* near field: delta <= max s_k / 4; beyond, columns */
			rad = job->fp.hier_band;
			cols = job->fp.hier_cols + (size_t)gr->h * p->Nk;
			nc = job->fp.hier_ncols[gr->h];
		}
		for (r = 0; r < gr->R; r++) {
			int64_t pos = gr->rows[r] + job->fp.qoff;
			int64_t a = pos - rad, b = pos + rad + 1;

			a = a < gr->k0 ? gr->k0 : a;
			b = b > gr->lim[r] ? gr->lim[r] : b;
			b = b > gr->k1 ? gr->k1 : b;
			w->slo[r] = a;
			w->shi[r] = b;
			if (a < b) {
				lo = a < lo ? a : lo;
				hi = b > hi ? b : hi;
			}
		}
		blo = lo < hi ? lo / FAST_KB : 0;
		bhi = lo < hi ? (hi - 1) / FAST_KB + 1 : 0;	/* exclusive */
		for (blk = blo; blk < bhi; blk++) {
			uint64_t m = 0;

			if (hr) {
				int64_t q = lower_bound32(cols, nc,
							  blk * FAST_KB);

				for (; q < nc && cols[q] < (blk + 1) * FAST_KB;
				     q++)
					m |= 1ull << (cols[q] - blk * FAST_KB);
			} else {
				for (j = (blk * FAST_KB + st - 1) / st * st;
				     j < (blk + 1) * FAST_KB; j += st)
					m |= 1ull << (j - blk * FAST_KB);
			}
			w->cm[ns] = m;
			seg[ns] = (int32_t)blk;
			segn[ns++] = FAST_KB;
		}
		if (hr) {
			int64_t q;

			memset(w->bits, 0, sizeof(uint64_t) * FAST_TQ * ns);
			for (r = 0; r < gr->R; r++) {
				int64_t pos = gr->rows[r] + job->fp.qoff;

				for (j = w->slo[r]; j < w->shi[r]; j++)
					if (fast_hier_near(&job->fp, gr->h, pos,
							   j))
						w->bits[((j >> 6) - blo) *
							FAST_TQ + r] |=
							1ull << (j & 63);
			}
			for (q = lower_bound32(cols, nc, gr->k0);
			     q < nc && cols[q] < end; q++)
				if (cols[q] < blo * FAST_KB ||
				    cols[q] >= bhi * FAST_KB)
					w->u[ng++] = cols[q];
		} else {
			for (j = (gr->k0 + st - 1) / st * st; j < end; j += st) {
				if (j >= blo * FAST_KB && j < bhi * FAST_KB)
					continue;
				w->u[ng++] = (int32_t)j;
			}
		}
		for (r = 0; r < gr->R; r++) {
			int64_t a2 = 0, z2 = ng;

			while (a2 < z2) {
				int64_t mid = (a2 + z2) / 2;

				if (w->u[mid] < gr->lim[r])
					a2 = mid + 1;
				else
					z2 = mid;
			}
			w->rn[r] = a2;
		}
		for (t = 0; (int64_t)t * FAST_KB < ng; t++) {
			seg[ns] = -(t + 1);
			segn[ns++] = ng - (int64_t)t * FAST_KB < FAST_KB ?
				     ng - (int64_t)t * FAST_KB : FAST_KB;
		}
		ks->u = w->u;
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
		for (r = 0; r < gr->R; r++) {
			int64_t lo2 = 0, hi2 = z - a;

			while (lo2 < hi2) {	/* keys below the limit */
				int64_t mid = (lo2 + hi2) / 2;

				if (ks->u[mid] < gr->lim[r])
					lo2 = mid + 1;
				else
					hi2 = mid;
			}
			w->slo[r] = 0;
			w->shi[r] = lo2;
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

/* keep the keys of sorted rk[0..n) in [k0, k1), moved to the front */
static int64_t clip_keys(int32_t *rk, int64_t n, int64_t k0, int64_t k1)
{
	int64_t a = 0, b = n;

	while (a < n && rk[a] < k0)
		a++;
	while (b > a && rk[b - 1] >= k1)
		b--;
	if (a)
		memmove(rk, rk + a, sizeof(int32_t) * (b - a));
	return b - a;
}

static void build_keys(struct fast_job *job, struct fast_ws *w,
		       const struct group *gr, struct keyset *ks)
{
	int64_t lo = INT64_MAX, hi = -1, t, j, ng = 0, blk;
	int32_t *seg = w->seg, *segn = w->segn;
	int r, ns = 0, c, nr = gr->R;

	ks->seg = seg;
	ks->segn = segn;
	ks->u = w->u;
	ks->sbits = false;
	ks->ranges = false;
	ks->strided = false;
	ks->hier = false;
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
	plan_for(job, w, gr->b, gr->h);
	for (r = 0; r < nr; r++) {
		int32_t *rk = w->rk + (size_t)r * job->p->Nk;

		w->rn[r] = fast_plan_row(&job->fp, gr->b, gr->h, gr->rows[r],
					 gr->lim[r], rk, w->plan, w->bytes);
		if (gr->k0 > 0 || gr->k1 < job->p->Nk)
			w->rn[r] = clip_keys(rk, w->rn[r], gr->k0, gr->k1);
		if (w->rn[r]) {
			lo = rk[0] < lo ? rk[0] : lo;
			hi = rk[w->rn[r] - 1] > hi ? rk[w->rn[r] - 1] : hi;
		}
	}
	ks->sbits = true;
	if (!gr->want_d && nr == 1) {
		/* one row: its list is the union, already sorted */
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

static inline uint64_t prefix_mask(int64_t c)
{
	return c <= 0 ? 0 : c >= 64 ? ~0ull : (1ull << c) - 1;
}

/* Row r's mask over segment @sg for the sparse or dense branch. */
static inline uint64_t row_mask(const struct fast_ws *w,
				const struct keyset *ks,
				const struct group *gr, int r, int sg,
				bool sparse)
{
	if (sparse && ks->strided) {
		if (ks->seg[sg] < 0)
			return prefix_mask(w->rn[r] - (int64_t)(-ks->seg[sg] - 1) *
					   FAST_KB);
		return ((ks->hier ? w->bits[(size_t)sg * FAST_TQ + r] :
			 prefix_mask(w->shi[r] - (int64_t)ks->seg[sg] * FAST_KB) &
			 ~prefix_mask(w->slo[r] - (int64_t)ks->seg[sg] * FAST_KB)) |
			w->cm[sg]) &
		       prefix_mask(gr->lim[r] - (int64_t)ks->seg[sg] * FAST_KB);
	}
	if (sparse && ks->ranges) {
		/* positions: keys of a block, or indices into a gathered list */
		int64_t base = (int64_t)(ks->seg[sg] >= 0 ? ks->seg[sg] :
					 -ks->seg[sg] - 1) * FAST_KB;

		return prefix_mask(w->shi[r] - base) &
		       ~prefix_mask(w->slo[r] - base);
	}
	if (sparse && ks->sbits)
		return w->bits[(size_t)sg * FAST_TQ + r];
	/* dense keys: whole blocks, cut at the row's limit */
	return prefix_mask(gr->lim[r] - (int64_t)ks->seg[sg] * FAST_KB);
}

/* ------------------------------------------------------------------------ */
/* Forward                                                                  */

static float gate_value(const struct asam_problem *p, int b, int h)
{
	return (float)tv_get(&p->gate, tv_off(&p->gate, b, h, 0, 0));
}

/* Fill @gr for group @g of (b, h); false when the group is empty. */
static bool group_init(struct fast_job *job, struct group *gr, int b, int h,
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
static const float *rows_of(const struct fast_job *job, bool v, int b,
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
 * A one-row group of the sparse branch alone (RANDOM_ROWS, soft
 * clusters): dot products straight from the key rows and one exact
 * softmax, with no gather or transpose.
 */
static void fwd_row(struct fast_job *job, struct fast_ws *w,
		    const struct group *gr)
{
	const struct asam_problem *p = job->p;
	const struct fast_isa *isa = job->isa;
	int dp = job->dp, d = p->d, e;
	int64_t n, t, i = gr->rows[0], ks, vs;
	const float *kb = rows_of(job, false, gr->b, gr->hk, &ks);
	const float *vb = rows_of(job, true, gr->b, gr->hk, &vs);
	float m = -INFINITY, l = 0, *s = w->srow;

	plan_for(job, w, gr->b, gr->h);
	n = fast_plan_row(&job->fp, gr->b, gr->h, i, gr->lim[0], w->rk,
			  w->plan, w->bytes);
	load_row(&p->q, tv_off(&p->q, gr->b, gr->h, i, 0), d, w->q);
	for (e = 0; e < d; e++)
		w->q[e] *= job->scale;
	memset(w->accS, 0, sizeof(float) * dp);
	if (n) {
		isa->dots(w->q, dp, kb, ks, w->rk, (int)n, s);
		for (t = 0; t < n; t++)
			m = s[t] > m ? s[t] : m;
		for (t = 0; t < n; t++)
			s[t] -= m;
		for (t = n; t % 16; t++)
			s[t] = 0;
		isa->exp(s, (int)t);
		for (t = 0; t < n; t++)
			l += s[t];
		isa->axpys(s, vb, vs, w->rk, (int)n, dp, w->accS);
	}
	for (e = 0; e < d; e++)
		w->o[e] = l > 0 ? gr->g * w->accS[e] / l : 0;
	store_row(&p->o, tv_off(&p->o, gr->b, gr->h, i, 0), d, w->o);
	if (p->lse_s.data)
		tv_set(&p->lse_s, tv_off(&p->lse_s, gr->b, gr->h, i, 0),
		       l > 0 ? (double)m + log(l) : -INFINITY);
	if (p->lse_d.data)
		tv_set(&p->lse_d, tv_off(&p->lse_d, gr->b, gr->h, i, 0),
		       -INFINITY);
}

static void fwd_group(struct fast_job *job, struct fast_ws *w,
		      const struct group *gr)
{
	const struct asam_problem *p = job->p;
	const struct fast_isa *isa = job->isa;
	int dp = job->dp, d = p->d, R = gr->R, r, e, nb, sg;
	float ms[FAST_TQ], ls[FAST_TQ], md[FAST_TQ], ld[FAST_TQ];
	struct keyset ks;

	build_keys(job, w, gr, &ks);
	for (r = 0; r < R; r++) {
		load_row(&p->q, tv_off(&p->q, gr->b, gr->h, gr->rows[r], 0), d,
			 w->q + r * dp);
		for (e = 0; e < d; e++)
			w->q[r * dp + e] *= job->scale;
		ms[r] = md[r] = -INFINITY;
		ls[r] = ld[r] = 0;
	}
	memset(w->accS, 0, sizeof(float) * FAST_TQ * dp);
	memset(w->accA, 0, sizeof(float) * FAST_TQ * dp);
	for (sg = 0; sg < ks.nseg; sg++) {
		nb = ks.segn[sg];
		gather(job, w, &ks, gr->b, gr->hk, sg, false);
		isa->mm_nt(w->q, R, dp, w->pkT, w->S);
		if (gr->want_s &&
		    online_step(job, w, &ks, gr, sg, true, ms, ls, w->accS,
				w->Ps))
			isa->mm_nn(w->Ps, FAST_KB, R, nb, w->pvb, dp, w->accS);
		if (gr->want_d &&
		    online_step(job, w, &ks, gr, sg, false, md, ld,
				w->accA, w->Pd))
			isa->mm_nn(w->Pd, FAST_KB, R, nb, w->pvb, dp, w->accA);
	}
	for (r = 0; r < R; r++) {
		int64_t i = gr->rows[r];
		float cs = ls[r] > 0 ? gr->g / ls[r] : 0;
		float cd = ld[r] > 0 ? (1 - gr->g) / ld[r] : 0;
		float *out = w->o + r * dp;

		for (e = 0; e < d; e++)
			out[e] = cs * w->accS[r * dp + e] +
				 cd * w->accA[r * dp + e];
		store_row(&p->o, tv_off(&p->o, gr->b, gr->h, i, 0), d, out);
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

static void fwd_items(void *arg, int64_t begin, int64_t end, int worker)
{
	struct fast_job *job = arg;
	const struct asam_problem *p = job->p;
	int64_t it, per = job->fp.maxgroups;
	struct fast_ws *w = ws_get(job, worker);
	struct group gr;

	if (!w) {
		atomic_store(&job->err, -ENOMEM);
		return;
	}
	for (it = begin; it < end; it++) {
		int64_t bh = it / per;

		if (!group_init(job, &gr, bh / p->Hq, bh % p->Hq, it % per))
			continue;
		if (gr.R == 1 && job->fp.group_rows == 1 && gr.want_s &&
		    !gr.want_d && !gr.s_is_d)
			fwd_row(job, w, &gr);
		else
			fwd_group(job, w, &gr);
	}
}

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

/* dst[key][.] += sum_r a[r][t] x[r][.] over segment @sg's keys */
static void acc_tn(const struct fast_job *job, struct fast_ws *w,
		   const float *a, int R, const float *x,
		   const struct keyset *ks, int sg, float *dst)
{
	int dp = job->dp, nb = ks->segn[sg], r, t, e;
	const int32_t *keys;

	for (t = 0; t < nb; t++)
		for (r = 0; r < R; r++)
			w->PT[t * FAST_TQ + r] = a[r * FAST_KB + t];
	if (ks->seg[sg] >= 0) {
		job->isa->mm_nn(w->PT, FAST_TQ, nb, R, x, dp,
				dst + (size_t)ks->seg[sg] * FAST_KB * dp);
		return;
	}
	memset(w->tk, 0, sizeof(float) * FAST_KB * dp);
	job->isa->mm_nn(w->PT, FAST_TQ, nb, R, x, dp, w->tk);
	keys = ks->u + (size_t)(-ks->seg[sg] - 1) * FAST_KB;
	for (t = 0; t < nb; t++) {
		float *row = dst + (size_t)keys[t] * dp;
		const float *src = w->tk + t * dp;

		for (e = 0; e < dp; e++)
			row[e] += src[e];
	}
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

	build_keys(job, w, gr, &ks);
	for (r = 0; r < R; r++) {
		int64_t i = gr->rows[r];

		load_row(&p->q, tv_off(&p->q, gr->b, gr->h, i, 0), d,
			 w->q + r * dp);
		for (e = 0; e < d; e++)
			w->q[r * dp + e] *= job->scale;
		load_row(&p->d_o, tv_off(&p->d_o, gr->b, gr->h, i, 0), d,
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
			gather(job, w, &ks, gr->b, gr->hk, sg, false);
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

			load_row(&p->o, tv_off(&p->o, gr->b, gr->h,
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
		gather(job, w, &ks, gr->b, gr->hk, sg, true);
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
			acc_tn(job, w, w->Ps, R, w->dO, &ks, sg, w->dV);
			acc_tn(job, w, w->S, R, w->q, &ks, sg, w->dK);
		}
		if (mode != BWD_DKV)
			isa->mm_nn(w->S, FAST_KB, R, nb, w->pkb, dp, w->dq);
	}
	for (r = 0; r < R && mode != BWD_DKV; r++) {
		for (e = 0; e < d; e++)
			w->dq[r * dp + e] *= job->scale;
		store_row(&p->dq, tv_off(&p->dq, gr->b, gr->h, gr->rows[r], 0),
			  d, w->dq + r * dp);
	}
	return dg;
}

/* dK, dV of keys [k0, k1) of (b, hk) over every query head sharing them */
static void bwd_keys(struct fast_job *job, struct fast_ws *w, int b, int hk,
		     int64_t k0, int64_t k1, enum bwd_mode mode)
{
	const struct asam_problem *p = job->p;
	int dp = job->dp, g, h;
	struct group gr;
	int64_t j;

	memset(w->dK + k0 * dp, 0, sizeof(float) * (k1 - k0) * dp);
	memset(w->dV + k0 * dp, 0, sizeof(float) * (k1 - k0) * dp);
	for (h = hk * job->group; h < (hk + 1) * job->group; h++) {
		double dg = 0;

		for (g = 0; g < job->fp.maxgroups; g++) {
			if (!group_init(job, &gr, b, h, g))
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
	for (j = k0; j < k1 && j < p->Nk; j++) {
		store_row(&p->dk, tv_off(&p->dk, b, hk, j, 0), p->d,
			  w->dK + j * dp);
		store_row(&p->dv, tv_off(&p->dv, b, hk, j, 0), p->d,
			  w->dV + j * dp);
	}
}

/* items (b, kv head): everything in one pass, no shared writes */
static void bwd_fused(void *arg, int64_t begin, int64_t end, int worker)
{
	struct fast_job *job = arg;
	struct fast_ws *w = ws_get(job, worker);
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
	struct fast_ws *w = ws_get(job, worker);
	int64_t it, per = job->fp.maxgroups;
	struct group gr;

	if (!w) {
		atomic_store(&job->err, -ENOMEM);
		return;
	}
	for (it = begin; it < end; it++) {
		int64_t bh = it / per;

		job->dgp[it] = 0;
		if (group_init(job, &gr, bh / p->Hq, bh % p->Hq, it % per))
			job->dgp[it] = bwd_group(job, w, &gr, BWD_DQ);
	}
}

/* items (b, kv head, key chunk): dK and dV of the chunk */
static void bwd_dkv(void *arg, int64_t begin, int64_t end, int worker)
{
	struct fast_job *job = arg;
	struct fast_ws *w = ws_get(job, worker);
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

static int cpu_fwd(struct asam_backend *be, const struct asam_problem *p)
{
	struct asam_pool *pool;
	struct fast_job job;
	int ret = job_init(&job, be, p, &pool);

	if (ret)
		return ret;
	asam_pool_for(pool, (int64_t)p->B * p->Hq * job.fp.maxgroups,
		      job.fp.group_rows == 1 ? 16 : 1, fwd_items, &job);
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
	/*
	 * Enough (b, kv head) items for every worker: one fused pass.
	 * Otherwise dQ over query groups, then dK/dV over key chunks, at
	 * the price of computing the scores twice.
	 */
	job.nchunks = DIV_ROUND_UP(2 * job.nthreads, p->B * p->Hkv);
	if (job.nchunks > job.nkb)
		job.nchunks = job.nkb;
	if (job.nchunks <= 1) {
		asam_pool_for(pool, (int64_t)p->B * p->Hkv, 1, bwd_fused, &job);
	} else {
		int64_t nbh = (int64_t)p->B * p->Hq, g, i;

		job.chunk = DIV_ROUND_UP(job.nkb, job.nchunks) * FAST_KB;
		job.D = malloc(sizeof(float) * 2 * nbh * p->Nq);
		job.dgp = malloc(sizeof(double) * nbh * job.fp.maxgroups);
		if (!job.D || !job.dgp) {
			atomic_store(&job.err, -ENOMEM);
			goto out;
		}
		asam_pool_for(pool, nbh * job.fp.maxgroups,
			      job.fp.group_rows == 1 ? 16 : 1, bwd_dq, &job);
		if (atomic_load(&job.err))
			goto out;
		asam_pool_for(pool, (int64_t)p->B * p->Hkv * job.nchunks, 1,
			      bwd_dkv, &job);
		for (i = 0; i < nbh && p->gate_mode == ASAM_GATE_SOFT; i++) {
			double dg = 0;

			for (g = 0; g < job.fp.maxgroups; g++)
				dg += job.dgp[i * job.fp.maxgroups + g];
			tv_set(&p->dgate, tv_off(&p->dgate, i / p->Hq,
						 i % p->Hq, 0, 0), dg);
		}
	}
out:
	free(job.D);
	free(job.dgp);
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

	asam_pool_put(be->ctx);
	if (priv) {
		pthread_mutex_destroy(&priv->lock);
		free(priv->arena);
		free(priv->rows.rows);
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
