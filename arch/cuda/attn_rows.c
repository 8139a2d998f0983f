// SPDX-License-Identifier: MIT
/*
 * CUDA attention for the row-list patterns, RANDOM_ROWS and USER_INDEX:
 * the host side of jit/kernels/attn_rows.cu.
 *
 * RANDOM_ROWS' lists (SPEC 3.1: the first min(r, Nk) entries of the
 * (i+1)-th MT19937 permutation of head h) are generated on the host once
 * per (device, seed, Hq, Nq, Nk, r), with threads over heads, sorted per
 * row, transposed (key -> rows) for the backward and kept on the device.
 * USER_INDEX reads the caller's tensor where it lies; its transposed lists
 * are built per backward call on the GPU in the workspace.
 *
 * The dense branch of SOFT and HARD is the tile kernels' job: SOFT runs
 * the DENSE forward first and the row kernel mixes its sparse branch into
 * O; HARD runs the tile forward with empty lists (its sparse heads do no
 * key work) and the row kernel overwrites those heads.  SOFT's backward
 * runs the tile backward with empty lists (the dense branch weighted
 * 1 - g, and dg without the sparse term), then the row kernels add theirs.
 */
#include <errno.h>
#include <pthread.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include <internal/cuda.h>
#include <internal/err.h>
#include <internal/jit.h>
#include <internal/pattern.h>

#include "attn_int.h"
#include "attn_rows.h"
#include "../../jit/kernels/attn_rows.cuh"

#define ROWS_WARPS	4	/* one query row (or key) a warp */
#define TILE_BM		128	/* the tile forward's (arch/cuda/attn.c) */
#define TILE_BWD	64
#define MAX_LISTS	32
#define MAX_DEVS	64
#define ZERO_INTS	(1 << 18)	/* > the most tiles of any sequence */
#define ALIGN(x)	(((x) + 255) & ~(size_t)255)

struct rows_list {
	int ordinal, Hq, Nq, Nk, rr;
	uint64_t seed;
	CUdeviceptr mem;	/* rows, then toff, then tlist */
};

static pthread_mutex_t rows_lock = PTHREAD_MUTEX_INITIALIZER;
static struct rows_list lists[MAX_LISTS];
static int nlists;
static CUdeviceptr zeros[MAX_DEVS];

/* The device copy of @p's RANDOM_ROWS lists, built on first use. */
static int get_rows(struct asam_cuda_device *d, const struct asam_problem *p,
		    bool cap, int rr, CUdeviceptr *mem)
{
	size_t nr = (size_t)p->Hq * p->Nq * rr;
	size_t ints = 2 * nr + (size_t)p->Hq * (p->Nk + 1);
	struct rows_list *e;
	int32_t *buf;
	int i, ret;

	pthread_mutex_lock(&rows_lock);
	for (i = 0; i < nlists; i++) {
		e = &lists[i];
		if (e->ordinal == d->ordinal && e->seed == p->pat.seed &&
		    e->Hq == p->Hq && e->Nq == p->Nq && e->Nk == p->Nk &&
		    e->rr == rr) {
			*mem = e->mem;
			pthread_mutex_unlock(&rows_lock);
			return 0;
		}
	}
	if (cap)
		ret = asam_err(-EBUSY, "pattern: the random rows of this shape are not built yet; run once before capturing");
	else if (nlists == MAX_LISTS)
		ret = asam_err(-ENOSPC, "pattern: more than %d random-row shapes in one process",
			       MAX_LISTS);
	else
		ret = 0;
	if (ret)
		goto out;
	buf = malloc(sizeof(int32_t) * ints);
	if (!buf) {
		ret = asam_err(-ENOMEM, "pattern: no memory for %zu random-row entries",
			       ints);
		goto out;
	}
	ret = attn_rows_gen(p, rr, buf);
	ret = ret ?: asam_cuda_malloc(d, sizeof(int32_t) * ints, mem);
	if (!ret) {
		ret = asam_cuda_memcpy_htod(d, *mem, buf,
					    sizeof(int32_t) * ints, NULL, false);
		if (ret)
			asam_cuda_free(d, *mem);
	}
	free(buf);
	if (!ret)
		lists[nlists++] = (struct rows_list){ d->ordinal, p->Hq, p->Nq,
			p->Nk, rr, p->pat.seed, *mem };
out:
	pthread_mutex_unlock(&rows_lock);
	return ret;
}

/* empty tile lists for the tile kernels' dense-branch runs */
static int get_zeros(struct asam_cuda_device *d, CUdeviceptr *z)
{
	int ret = 0;

	if (d->ordinal < 0 || d->ordinal >= MAX_DEVS)
		return asam_err(-ENODEV, "cuda:%d: too many devices",
				d->ordinal);
	pthread_mutex_lock(&rows_lock);
	if (!zeros[d->ordinal]) {
		ret = asam_cuda_malloc(d, sizeof(int) * ZERO_INTS,
				       &zeros[d->ordinal]);
		if (!ret)
			ret = asam_cuda_err(d->drv->cuMemsetD8(
					zeros[d->ordinal], 0,
					sizeof(int) * ZERO_INTS), "cuMemsetD8");
		if (ret && zeros[d->ordinal]) {
			asam_cuda_free(d, zeros[d->ordinal]);
			zeros[d->ordinal] = 0;
		}
	}
	*z = zeros[d->ordinal];
	pthread_mutex_unlock(&rows_lock);
	return ret;
}

/* ------------------------------------------------------------------------ */
/* specialisations, argument blocks                                         */

static int rows_rr(const struct asam_problem *p)
{
	if (p->pat.kind == ASAM_PATTERN_USER_INDEX)
		return p->pat.r;
	return p->pat.r < p->Nk ? p->pat.r : p->Nk;
}

/* query heads one warp serves: USER_INDEX's group shares its rows */
static int rows_group(const struct asam_problem *p)
{
	int G = p->Hq / p->Hkv;

	if (p->pat.kind != ASAM_PATTERN_USER_INDEX)
		return 1;
	return G % 4 == 0 ? 4 : G % 2 == 0 ? 2 : 1;
}

/*
 * The lists' offsets are int32: every entry of the lists of one call
 * (RANDOM_ROWS: Hq Nq r; USER_INDEX's transpose: B Hkv Nq r) must be
 * countable in one.
 */
static int rows_fit(const struct asam_problem *p)
{
	int64_t n = (int64_t)p->Nq * rows_rr(p);

	n *= p->pat.kind == ASAM_PATTERN_USER_INDEX ?
	     (int64_t)p->B * p->Hkv : p->Hq;
	if (n >= INT32_MAX)
		return asam_err(-EOPNOTSUPP, "pattern: %lld row-list entries in one call; the cuda kernels take fewer than 2^31",
				(long long)n);
	return 0;
}

static int rows_fn(struct asam_cuda_device *d, const struct asam_problem *p,
		   bool cap, const char *entry, CUfunction *f)
{
	struct asam_jit_spec s;
	int ret = attn_make_spec(&s, "attn_rows", d, p, p->gate_mode,
				 ROWS_WARPS, ROWS_WARPS, 0);

	static const char *const knob[][2] = {
		{ "ASAM_CUDA_ROWS_ROT", "ROTATE" },
		{ "ASAM_CUDA_ROWS_VB", "VBATCH" },
	};
	unsigned k;

	ret = ret ?: asam_jit_spec_set(&s, "GROUP", rows_group(p));
	/* measurements: the kernel's read-order switches (attn_rows.cu) */
	for (k = 0; !ret && k < sizeof(knob) / sizeof(knob[0]); k++) {
		const char *v = getenv(knob[k][0]);

		if (v && (v[0] == '0' || v[0] == '1') && !v[1])
			ret = asam_jit_spec_set(&s, knob[k][1], v[0] - '0');
	}
	return ret ?: attn_get_fn(d, &s, entry, cap, f);
}

static void rows_fill(struct attn_rows_params *a,
		      const struct asam_problem *p)
{
	struct attn_fwd_params f;

	attn_fill_fwd(&f, p);
	memset(a, 0, sizeof(*a));
	a->q = f.q; a->k = f.k; a->v = f.v; a->o = f.o;
	a->d_o = p->d_o.data;
	a->dq = p->dq.data; a->dk = p->dk.data; a->dv = p->dv.data;
	a->lse_s = p->lse_s.data; a->lse_d = p->lse_d.data;
	a->gate = f.gate; a->dgate = p->dgate.data;
	a->len_q = f.len_q; a->len_k = f.len_k;
	a->q_sb = f.q_sb; a->q_sh = f.q_sh; a->q_sn = f.q_sn;
	a->k_sb = f.k_sb; a->k_sh = f.k_sh; a->k_sn = f.k_sn;
	a->v_sb = f.v_sb; a->v_sh = f.v_sh; a->v_sn = f.v_sn;
	a->o_sb = f.o_sb; a->o_sh = f.o_sh; a->o_sn = f.o_sn;
	if (p->d_o.data) {
		a->do_sb = attn_st(&p->d_o, 0); a->do_sh = attn_st(&p->d_o, 1);
		a->do_sn = attn_st(&p->d_o, 2);
	}
	if (p->dq.data) {
		a->dq_sb = attn_st(&p->dq, 0); a->dq_sh = attn_st(&p->dq, 1);
		a->dq_sn = attn_st(&p->dq, 2);
		a->dk_sb = attn_st(&p->dk, 0); a->dk_sh = attn_st(&p->dk, 1);
		a->dk_sn = attn_st(&p->dk, 2);
		a->dv_sb = attn_st(&p->dv, 0); a->dv_sh = attn_st(&p->dv, 1);
		a->dv_sn = attn_st(&p->dv, 2);
	}
	if (p->dgate.data) {
		a->dg_sb = attn_st(&p->dgate, 0);
		a->dg_sh = attn_st(&p->dgate, 1);
	}
	a->l_sb = f.l_sb; a->l_sh = f.l_sh;
	a->g_sb = f.g_sb; a->g_sh = f.g_sh;
	a->lq_s = f.lq_s; a->lk_s = f.lk_s;
	a->B = p->B; a->Hq = p->Hq; a->Hkv = p->Hkv;
	a->Nq = p->Nq; a->Nk = p->Nk;
	a->r = rows_rr(p);
	a->scale_log2 = f.scale_log2;
	a->scale = (float)p->scale;
	a->hard_tau = p->hard_tau;
	if (p->pat.kind == ASAM_PATTERN_USER_INDEX) {
		const struct asam_tv *t = &p->pat.index;

		a->idx = t->data;
		a->ix_sb = attn_st(t, 0); a->ix_sh = attn_st(t, 1);
		a->ix_sn = attn_st(t, 2); a->ix_sr = attn_st(t, 3);
	}
}

/* the same problem with the DENSE pattern: the tile kernels' dense branch */
static struct asam_problem as_dense(const struct asam_problem *p)
{
	struct asam_problem q = *p;

	memset(&q.pat, 0, sizeof(q.pat));
	q.pat.kind = ASAM_PATTERN_DENSE;
	return q;
}

/* ------------------------------------------------------------------------ */
/* forward                                                                  */

/* HARD's dense heads: the tile forward with no sparse key tiles at all */
static int hard_dense_fwd(struct asam_cuda_device *d,
			  const struct asam_problem *p, bool cap)
{
	struct asam_problem q = *p;
	struct asam_jit_spec spec;
	struct attn_fwd_params a;
	CUdeviceptr z;
	CUfunction f;
	int ret;

	q.pat.kind = ASAM_PATTERN_RANDOM;	/* any kind with a list */
	ret = get_zeros(d, &z);
	ret = ret ?: attn_make_spec(&spec, "attn_fwd", d, &q, ASAM_GATE_HARD,
				    TILE_BM, 4, 0);
	ret = ret ?: attn_get_fn(d, &spec, "asam_attn_fwd_kernel", cap, &f);
	if (ret)
		return ret;
	attn_fill_fwd(&a, p);
	a.nqt = (p->Nq + TILE_BM - 1) / TILE_BM;
	a.lse_s = p->lse_s.data;
	a.lse_d = p->lse_d.data;
	a.list_off = (const int *)(uintptr_t)z;
	a.list = (const int *)(uintptr_t)z;
	return attn_launch(d, f, a.nqt, p->Hq, p->B, 128,
			   attn_smem_bytes(TILE_BM + 4 * 64, p->d), p->stream,
			   &a);
}

int asam_cuda_rows_fwd(struct asam_backend *be, const struct asam_problem *p)
{
	struct asam_cuda_device *d = asam_cuda_device_of(be, p->dev.device_id);
	struct attn_rows_params a;
	struct asam_problem q;
	CUdeviceptr rows;
	CUfunction f;
	bool cap;
	int ret;

	/* DENSE: the pattern plays no part */
	if (p->gate_mode == ASAM_GATE_DENSE) {
		q = as_dense(p);
		return asam_cuda_attn_fwd(be, &q);
	}
	ret = asam_cuda_attn_supports(be, p);
	ret = ret ?: rows_fit(p);
	ret = ret ?: asam_cuda_device_enter(d);
	ret = ret ?: attn_capturing_of(d, p->stream, &cap);
	ret = ret ?: rows_fn(d, p, cap, "asam_rows_fwd_kernel", &f);
	if (ret)
		return ret;
	rows_fill(&a, p);
	if (p->pat.kind == ASAM_PATTERN_RANDOM_ROWS) {
		ret = get_rows(d, p, cap, a.r, &rows);
		if (ret)
			return ret;
		a.idx = (const int *)(uintptr_t)rows;
	}
	if (p->gate_mode == ASAM_GATE_SOFT) {
		/* O = A and lse_d first; the row kernel mixes S in */
		q = as_dense(p);
		q.gate_mode = ASAM_GATE_DENSE;
		q.lse_s.data = NULL;
		ret = asam_cuda_attn_fwd(be, &q);
	} else if (p->gate_mode == ASAM_GATE_HARD) {
		ret = hard_dense_fwd(d, p, cap);
	}
	return ret ?: attn_launch(d, f, (p->Nq + ROWS_WARPS - 1) / ROWS_WARPS,
				  p->Hq / rows_group(p), p->B, ROWS_WARPS * 32,
				  0, p->stream, &a);
}

/* ------------------------------------------------------------------------ */
/* backward                                                                 */

struct rows_ws {
	size_t dsum, tile, toff, tcur, tlist, total;
};

static void ws_layout(const struct asam_problem *p, struct rows_ws *w)
{
	size_t rows = (size_t)p->B * p->Hq * p->Nq;
	size_t units = (size_t)p->B * p->Hkv;

	memset(w, 0, sizeof(*w));
	w->total = ALIGN(sizeof(float) * rows);
	if (p->gate_mode == ASAM_GATE_SOFT) {
		w->tile = w->total;
		w->total += ALIGN(2 * sizeof(float) * rows);
	}
	if (p->pat.kind == ASAM_PATTERN_USER_INDEX) {
		w->toff = w->total;
		w->total += ALIGN(sizeof(int) * units * (p->Nk + 1));
		w->tcur = w->total;
		w->total += ALIGN(sizeof(int) * units * (p->Nk + 1));
		w->tlist = w->total;
		w->total += ALIGN(sizeof(int) * units * p->Nq * rows_rr(p) + 4);
	}
}

int asam_cuda_rows_workspace_size(struct asam_backend *be,
				  const struct asam_problem *p, size_t *bytes)
{
	struct asam_problem q;
	struct rows_ws w;
	int ret;

	if (p->gate_mode == ASAM_GATE_DENSE) {
		q = as_dense(p);
		return asam_cuda_attn_workspace_size(be, &q, bytes);
	}
	*bytes = 0;
	ret = asam_cuda_attn_supports(be, p);
	ret = ret ?: rows_fit(p);
	if (ret || !p->bwd)
		return ret;
	ws_layout(p, &w);
	*bytes = w.total;
	return 0;
}

/*
 * SOFT's dense branch: the tile backward with empty sparse lists, so it
 * adds (1 - g) times the dense gradients and dg = -sum <dO, A>; the row
 * kernels then add the sparse branch's share.  @ws: 2 B Hq Nq floats.
 */
static int soft_dense_bwd(struct asam_cuda_device *d,
			  const struct asam_problem *p, bool cap,
			  CUdeviceptr ws)
{
	size_t rows = (size_t)p->B * p->Hq * p->Nq;
	struct asam_problem q = *p;
	struct asam_jit_spec sp, sb;
	struct attn_fwd_params pre;
	struct attn_bwd_params a;
	CUfunction fpre, fdq, fkv, fdg;
	CUdeviceptr z;
	CUstream s = p->stream;
	int ret;

	q.pat.kind = ASAM_PATTERN_RANDOM;
	ret = get_zeros(d, &z);
	ret = ret ?: attn_make_spec(&sp, "attn_fwd", d, &q, ASAM_GATE_SOFT,
				    TILE_BWD, 4, 1);
	ret = ret ?: attn_make_spec(&sb, "attn_bwd", d, &q, ASAM_GATE_SOFT,
				    TILE_BWD, 4, 0);
	ret = ret ?: attn_get_fn(d, &sp, "asam_attn_fwd_kernel", cap, &fpre);
	ret = ret ?: attn_get_fn(d, &sb, "asam_attn_bwd_dq_kernel", cap, &fdq);
	ret = ret ?: attn_get_fn(d, &sb, "asam_attn_bwd_dkdv_kernel", cap,
				 &fkv);
	ret = ret ?: attn_get_fn(d, &sb, "asam_attn_bwd_dg_kernel", cap, &fdg);
	if (ret)
		return ret;

	attn_fill_fwd(&pre, p);
	pre.list_off = (const int *)(uintptr_t)z;
	pre.list = (const int *)(uintptr_t)z;
	attn_fill_pre(&pre, p, TILE_BWD);
	pre.dsum_s = (float *)(uintptr_t)ws;
	pre.dsum_d = (float *)(uintptr_t)(ws + sizeof(float) * rows);

	memset(&a, 0, sizeof(a));
	attn_fill_bwd(&a, p, &pre, TILE_BWD);
	a.list_off = pre.list_off; a.list = pre.list;
	a.tlist_off = pre.list_off; a.tlist = pre.list;

	ret = attn_launch(d, fpre, pre.nqt, p->Hq, p->B, 128,
			  attn_smem_bytes(TILE_BWD + 4 * 64, p->d), s, &pre);
	ret = ret ?: attn_bwd_launch_det(d, fdq, fkv, p, s, &a);
	if (!ret && p->dgate.data)
		ret = attn_launch(d, fdg, p->Hq, p->B, 1, 32, 0, s, &a);
	return ret;
}

/* USER_INDEX: key -> rows lists in the workspace, in a fixed order */
static int index_transpose(struct asam_cuda_device *d,
			   const struct asam_problem *p, bool cap,
			   struct attn_rows_params *a)
{
	unsigned units = (unsigned)(p->B * p->Hkv);
	size_t n = (size_t)units * (p->Nk + 1);
	unsigned eb = (unsigned)(((size_t)p->Nq * a->r + 255) / 256);
	CUfunction fc, fs, ff, ft;
	CUstream s = p->stream;
	int ret;

	ret = rows_fn(d, p, cap, "asam_rows_tcount_kernel", &fc);
	ret = ret ?: rows_fn(d, p, cap, "asam_rows_tscan_kernel", &fs);
	ret = ret ?: rows_fn(d, p, cap, "asam_rows_tfill_kernel", &ff);
	ret = ret ?: rows_fn(d, p, cap, "asam_rows_tsort_kernel", &ft);
	ret = ret ?: asam_cuda_err(d->drv->cuMemsetD32Async(
			(CUdeviceptr)(uintptr_t)a->toff, 0, n, s),
			"cuMemsetD32Async");
	ret = ret ?: asam_cuda_err(d->drv->cuMemsetD32Async(
			(CUdeviceptr)(uintptr_t)a->tcur, 0, n, s),
			"cuMemsetD32Async");
	ret = ret ?: attn_launch(d, fc, eb, units, 1, 256, 0, s, a);
	ret = ret ?: attn_launch(d, fs, units, 1, 1, 1024, 1024 * sizeof(int),
				 s, a);
	ret = ret ?: attn_launch(d, ff, eb, units, 1, 256, 0, s, a);
	ret = ret ?: attn_launch(d, ft, (p->Nk + 255) / 256, units, 1, 256, 0,
				 s, a);
	return ret;
}

int asam_cuda_rows_bwd(struct asam_backend *be, const struct asam_problem *p)
{
	struct asam_cuda_device *d = asam_cuda_device_of(be, p->dev.device_id);
	bool soft = p->gate_mode == ASAM_GATE_SOFT, cap;
	CUfunction fdq, fkv, fdg = NULL;
	CUdeviceptr ws, own = 0, rows;
	struct attn_rows_params a;
	struct asam_problem q;
	struct rows_ws w;
	CUstream s = p->stream;
	int ret;

	if (p->gate_mode == ASAM_GATE_DENSE) {
		q = as_dense(p);
		return asam_cuda_attn_bwd(be, &q);
	}
	if (p->gate_mode == ASAM_GATE_HARD)
		return asam_err(-EOPNOTSUPP, "gate_mode: HARD has no backward");
	ret = asam_cuda_attn_supports(be, p);
	ret = ret ?: rows_fit(p);
	ret = ret ?: asam_cuda_device_enter(d);
	ret = ret ?: attn_capturing_of(d, s, &cap);
	ret = ret ?: rows_fn(d, p, cap, "asam_rows_dq_kernel", &fdq);
	ret = ret ?: rows_fn(d, p, cap, "asam_rows_dkdv_kernel", &fkv);
	if (!ret && soft)
		ret = rows_fn(d, p, cap, "asam_rows_dg_kernel", &fdg);
	if (ret)
		return ret;
	rows_fill(&a, p);
	if (p->pat.kind == ASAM_PATTERN_RANDOM_ROWS) {
		size_t nr = (size_t)p->Hq * p->Nq * a.r;

		ret = get_rows(d, p, cap, a.r, &rows);
		if (ret)
			return ret;
		a.idx = (const int *)(uintptr_t)rows;
		a.toff = (int *)(uintptr_t)(rows + sizeof(int) * nr);
		a.tlist = a.toff + (size_t)p->Hq * (p->Nk + 1);
	}

	ws_layout(p, &w);
	if (p->workspace && p->workspace_size >= w.total) {
		ws = (CUdeviceptr)(uintptr_t)p->workspace;
	} else {
		ret = asam_cuda_scratch_get(d, s, w.total, &own);
		if (ret)
			return ret;
		ws = own;
	}
	a.dsum = (float *)(uintptr_t)(ws + w.dsum);
	if (p->pat.kind == ASAM_PATTERN_USER_INDEX) {
		a.toff = (int *)(uintptr_t)(ws + w.toff);
		a.tcur = (int *)(uintptr_t)(ws + w.tcur);
		a.tlist = (int *)(uintptr_t)(ws + w.tlist);
		ret = index_transpose(d, p, cap, &a);
	}
	if (!ret && soft)
		ret = soft_dense_bwd(d, p, cap, ws + w.tile);
	a.mix = soft;
	ret = ret ?: attn_launch(d, fdq, (p->Nq + ROWS_WARPS - 1) / ROWS_WARPS,
				 p->Hq / rows_group(p), p->B, ROWS_WARPS * 32,
				 0, s, &a);
	ret = ret ?: attn_launch(d, fkv, (p->Nk + ROWS_WARPS - 1) / ROWS_WARPS,
				 p->Hkv, p->B, ROWS_WARPS * 32, 0, s, &a);
	if (!ret && fdg && p->dgate.data)
		ret = attn_launch(d, fdg, p->Hq, p->B, 1, 32, 0, s, &a);
	if (own) {
		int r2 = asam_cuda_scratch_put(d, s, own);

		ret = ret ?: r2;
	}
	return ret;
}
