// SPDX-License-Identifier: MIT
/*
 * One CUDA attention case through the public API against the fp64
 * reference on host copies of the same (rounded) inputs: forward output
 * and log-sum-exps, then dQ, dK, dV and dg, with the backward run twice
 * and compared bit for bit.  Shared by the attention-cuda selftests.
 */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "gpu_case.h"
#include "../../arch/cuda/attn_sm90.h"

struct asam_cuda_device *gc_dev;
struct asam_ctx *gc_ctx;

void gt_up(struct gt *g, struct tt *h)
{
	g->h = h;
	g->dl = h->dl;
	asam_cuda_malloc(gc_dev, h->bytes, &g->p);
	asam_cuda_memcpy_htod(gc_dev, g->p, h->buf, h->bytes, NULL, false);
	g->dl.data = (void *)(uintptr_t)g->p;
	g->dl.device = (DLDevice){ kDLCUDA, gc_dev->ordinal };
}

void gt_down(struct gt *g)
{
	asam_cuda_memcpy_dtoh(gc_dev, g->h->buf, g->p, g->h->bytes, NULL, false);
}

void gt_free(struct gt *g)
{
	asam_cuda_free(gc_dev, g->p);
	tt_free(g->h);
}

static double rel_or_abs(const struct tt *x, const struct tt *ref)
{
	if (tt_max_abs(ref) == 0)
		return tt_has_nan(x) ? INFINITY : tt_max_abs(x);
	return tt_rel_err(x, ref);
}

static struct tt *f64_of(const struct tt *t)
{
	struct tt *r = tt_new(TT_F64, t->dl.ndim, t->shape);

	tt_copy(r, t);
	return r;
}

/*
 * ASAM_TEST_SHARD=k/n: this process runs cases k, k + n, ... of its
 * test's list (n processes compile their kernels in parallel on a
 * many-core GPU host); unset or malformed: every case (0/1)
 */
void gc_shard(int *k, int *n)
{
	const char *s = getenv("ASAM_TEST_SHARD");

	*k = 0;
	*n = 1;
	if (s && (sscanf(s, "%d/%d", k, n) != 2 || *n < 1 || *k < 0 ||
		  *k >= *n)) {
		*k = 0;
		*n = 1;
	}
}

void gc_run_shard(const struct gpu_case *cases, int ncases,
		  unsigned long (*expected)(const struct gpu_case *))
{
	unsigned long before, want = 0;
	int i, k, n, plan = 0;

	gc_shard(&k, &n);
	for (i = k; i < ncases; i += n)
		plan++;
	ksft_print_header();
	gpu_case_setup();
	ksft_set_plan(plan + 1);
	before = attn_sm90_bwd_launches;
	for (i = k; i < ncases; i += n) {
		gpu_case_run(&cases[i]);
		want += expected(&cases[i]);
	}
	ksft_test_result(attn_sm90_bwd_launches - before == want,
			 "the wgmma backward ran %lu times, %lu expected\n",
			 attn_sm90_bwd_launches - before, want);
	gpu_case_teardown();
	ksft_finished();
}

/* whether ASAM_GPU_CASE_MAXN (a small grid for compute-sanitizer) skips @c */
bool gpu_case_skips(const struct gpu_case *c)
{
	const char *maxn = getenv("ASAM_GPU_CASE_MAXN");

	return maxn && (c->Nq > atoi(maxn) || c->Nk > atoi(maxn));
}

void gpu_case_run(const struct gpu_case *c)
{
	int dt16 = c->dt16, d = c->d, gate = c->gate, causal = c->causal;
	int B = c->B, Hq = c->Hq, Hkv = c->Hkv, Nq = c->Nq, Nk = c->Nk;
	bool lens = c->lens;
	DLDataType dt = dt16 ? TT_BF16 : TT_F16;
	int64_t gs[2] = { B, Hq }, ls[1] = { B }, lsh[3] = { B, Hq, Nq };
	struct asam_pattern pt;
	int pat = c->pat ? (int)c->pat->kind : c->kind;
	struct asam_attn_params ap = { .sz = sizeof(ap) };
	struct asam_fwd_args fa = { .sz = sizeof(fa) }, ra = { .sz = sizeof(ra) };
	struct asam_bwd_args ba = { .sz = sizeof(ba) }, rb = { .sz = sizeof(rb) };
	struct gt q, k, v, o, g, lq, lk, lse_s, lse_d, dO, dq, dk, dv, dg;
	struct tt *q64, *k64, *v64, *o64, *ls64, *ld64, *do64, *rq, *rk, *rv,
		  *rg, *h;
	double eo, el = 0, e[4] = { 0 };
	void *first[4];
	bool bwd = gate != ASAM_GATE_HARD && !c->fwd_only, det = true;
	int b, ret, x;
	int64_t i;

	/* a small grid (compute-sanitizer runs): only the short cases */
	if (gpu_case_skips(c)) {
		ksft_test_result_skip("Nq %d Nk %d: over ASAM_GPU_CASE_MAXN\n",
				      Nq, Nk);
		return;
	}
	h = tt_new4(dt, B, Hq, Nq, d);
	tt_fill_randn(h, c->qamp > 0 ? c->qamp : 1);
	gt_up(&q, h);
	h = tt_new4(dt, B, Hkv, Nk, d); tt_fill_randn(h, 1); gt_up(&k, h);
	h = tt_new4(dt, B, Hkv, Nk, d); tt_fill_randn(h, 1); gt_up(&v, h);
	h = tt_new4(dt, B, Hq, Nq, d); tt_poison(h); gt_up(&o, h);
	h = tt_new(TT_F32, 2, gs); tt_fill_uniform(h, 0, 1); gt_up(&g, h);
	h = tt_new(TT_I32, 1, ls);
	for (b = 0; b < B; b++)
		((int32_t *)h->buf)[b] = lens ? 1 + (int)(tt_uniform() * Nq) : Nq;
	gt_up(&lq, h);
	h = tt_new(TT_I32, 1, ls);
	for (b = 0; b < B; b++)
		((int32_t *)h->buf)[b] = lens ? 1 + (int)(tt_uniform() * Nk) : Nk;
	gt_up(&lk, h);
	h = tt_new(TT_F32, 3, lsh); tt_poison(h); gt_up(&lse_s, h);
	h = tt_new(TT_F32, 3, lsh); tt_poison(h); gt_up(&lse_d, h);

	if (c->pat) {
		pt = *c->pat;
	} else {
		asam_pattern_init(&pt, pat);
	}
	ap.pattern = &pt;
	ap.gate_mode = gate;
	ap.hard_threshold = 0.5f;
	ap.causal = causal;
	ap.flags = c->flags;
	fa.q = &q.dl; fa.k = &k.dl; fa.v = &v.dl; fa.o = &o.dl;
	fa.gate = gate >= ASAM_GATE_SOFT ? &g.dl : NULL;
	fa.len_q = lens ? &lq.dl : NULL;
	fa.len_k = lens ? &lk.dl : NULL;
	fa.lse_sparse = gate != ASAM_GATE_DENSE ? &lse_s.dl : NULL;
	fa.lse_dense = gate != ASAM_GATE_SPARSE ? &lse_d.dl : NULL;
	ret = asam_attn_fwd(gc_ctx, &ap, &fa);
	if (ret) {
		ksft_test_result_fail("fwd: %d %s\n", ret, asam_last_error());
		return;
	}
	gc_dev->drv->cuCtxSynchronize();
	gt_down(&o); gt_down(&lse_s); gt_down(&lse_d);

	/* the reference on fp64 copies of the same (rounded) inputs */
	q64 = f64_of(q.h); k64 = f64_of(k.h); v64 = f64_of(v.h);
	o64 = tt_new4(TT_F64, B, Hq, Nq, d);
	ls64 = tt_new(TT_F64, 3, lsh); ld64 = tt_new(TT_F64, 3, lsh);
	ra = fa;
	ra.q = &q64->dl; ra.k = &k64->dl; ra.v = &v64->dl; ra.o = &o64->dl;
	ra.gate = fa.gate ? &g.h->dl : NULL;
	ra.len_q = lens ? &lq.h->dl : NULL;
	ra.len_k = lens ? &lk.h->dl : NULL;
	ra.lse_sparse = fa.lse_sparse ? &ls64->dl : NULL;
	ra.lse_dense = fa.lse_dense ? &ld64->dl : NULL;
	ap.flags = ASAM_F_REFERENCE;
	if (c->pat_ref)
		ap.pattern = c->pat_ref;
	ret = ret ?: asam_attn_fwd(gc_ctx, &ap, &ra);
	ap.pattern = &pt;
	ap.flags = c->flags;
	eo = tt_rel_err(o.h, o64);
	for (i = 0; i < tt_numel(ls64); i++) {
		for (x = 0; x < 2; x++) {
			const struct tt *r = x ? ld64 : ls64, *a = x ? lse_d.h : lse_s.h;
			double re = tt_get(r, i), ae = tt_get(a, i);

			if ((x ? !fa.lse_dense : !fa.lse_sparse) || isnan(re))
				continue;
			if (isinf(re))
				el = fmax(el, isinf(ae) && ae < 0 ? 0 : INFINITY);
			else
				el = fmax(el, isnan(ae) ? INFINITY : fabs(ae - re));
		}
	}
	if (bwd) {
		h = tt_new4(dt, B, Hq, Nq, d); tt_fill_randn(h, 1); gt_up(&dO, h);
		h = tt_new4(dt, B, Hq, Nq, d); gt_up(&dq, h);
		h = tt_new4(dt, B, Hkv, Nk, d); gt_up(&dk, h);
		h = tt_new4(dt, B, Hkv, Nk, d); gt_up(&dv, h);
		h = tt_new(TT_F32, 2, gs); gt_up(&dg, h);
		ba.q = fa.q; ba.k = fa.k; ba.v = fa.v; ba.gate = fa.gate;
		ba.len_q = fa.len_q; ba.len_k = fa.len_k; ba.o = fa.o;
		ba.lse_sparse = fa.lse_sparse; ba.lse_dense = fa.lse_dense;
		ba.d_o = &dO.dl; ba.dq = &dq.dl; ba.dk = &dk.dl; ba.dv = &dv.dl;
		ba.dgate = gate == ASAM_GATE_SOFT ? &dg.dl : NULL;
		for (x = 0; x < 2 && !ret; x++) {
			struct gt *all[4] = { &dq, &dk, &dv, &dg };
			int y;

			ret = asam_attn_bwd(gc_ctx, &ap, &ba);
			gc_dev->drv->cuCtxSynchronize();
			for (y = 0; y < 4 && !ret; y++) {
				gt_down(all[y]);
				if (!x) {
					first[y] = malloc(all[y]->h->bytes);
					memcpy(first[y], all[y]->h->buf,
					       all[y]->h->bytes);
				} else {
					det &= !memcmp(first[y], all[y]->h->buf,
						       all[y]->h->bytes);
					free(first[y]);
				}
			}
		}
		do64 = f64_of(dO.h);
		rq = tt_new4(TT_F64, B, Hq, Nq, d);
		rk = tt_new4(TT_F64, B, Hkv, Nk, d);
		rv = tt_new4(TT_F64, B, Hkv, Nk, d);
		rg = tt_new(TT_F32, 2, gs);
		rb = ba;
		rb.q = ra.q; rb.k = ra.k; rb.v = ra.v; rb.gate = ra.gate;
		rb.len_q = ra.len_q; rb.len_k = ra.len_k; rb.o = ra.o;
		rb.lse_sparse = ra.lse_sparse; rb.lse_dense = ra.lse_dense;
		rb.d_o = &do64->dl; rb.dq = &rq->dl; rb.dk = &rk->dl;
		rb.dv = &rv->dl; rb.dgate = ba.dgate ? &rg->dl : NULL;
		ap.flags = ASAM_F_REFERENCE;
		if (c->pat_ref)
			ap.pattern = c->pat_ref;
		if (!ret)
			ret = asam_attn_bwd(gc_ctx, &ap, &rb);
		e[0] = rel_or_abs(dq.h, rq);
		e[1] = rel_or_abs(dk.h, rk);
		e[2] = rel_or_abs(dv.h, rv);
		e[3] = ba.dgate ? rel_or_abs(dg.h, rg) : 0;
		tt_free(do64); tt_free(rq); tt_free(rk); tt_free(rv);
		tt_free(rg);
		gt_free(&dO); gt_free(&dq); gt_free(&dk); gt_free(&dv);
		gt_free(&dg);
	}
	if (!(c->flags & ASAM_F_DETERMINISTIC) && c->nondet_ok)
		det = true;
	ksft_test_result(!ret && eo <= (dt16 ? 1e-2 : 2e-3) && el <= 1e-2 &&
			 e[0] <= 2e-2 && e[1] <= 2e-2 && e[2] <= 2e-2 &&
			 e[3] <= 2e-2 && det,
			 "%s d%d %s %s%s B%d H%d/%d Nq %d Nk %d%s: o %.1e lse %.1e dq %.1e dk %.1e dv %.1e dg %.1e det %d %s\n",
			 dt16 ? "bf16" : "f16", d, asam_pattern_name(pat),
			 gate == 0 ? "sparse" : gate == 1 ? "dense" :
			 gate == 2 ? "soft" : "hard", causal ? " causal" : "",
			 B, Hq, Hkv, Nq, Nk, lens ? " lens" : "", eo, el, e[0],
			 e[1], e[2], e[3], det, ret ? asam_last_error() : "");
	tt_free(q64); tt_free(k64); tt_free(v64); tt_free(o64);
	tt_free(ls64); tt_free(ld64);
	gt_free(&q); gt_free(&k); gt_free(&v); gt_free(&o); gt_free(&g);
	gt_free(&lq); gt_free(&lk); gt_free(&lse_s); gt_free(&lse_d);
}


void gpu_case_setup(void)
{
	struct asam_cuda_backend *cb = NULL;
	int i;

	if (asam_ctx_create(NULL, &gc_ctx))
		ksft_exit_skip("no context: %s\n", asam_last_error());
	for (i = 0; i < gc_ctx->nr_backends; i++)
		if (!strcmp(gc_ctx->backends[i].ops->name, "cuda"))
			cb = gc_ctx->backends[i].priv;
	if (!cb || !cb->ndev) {
		asam_ctx_destroy(gc_ctx);
		ksft_exit_skip("no CUDA device\n");
	}
	gc_dev = &cb->dev[0];
	if (gc_dev->cc_major < 8) {
		asam_ctx_destroy(gc_ctx);
		ksft_exit_skip("sm_%d%d: the kernels need sm_80\n",
			       gc_dev->cc_major, gc_dev->cc_minor);
	}
	asam_cuda_device_enter(gc_dev);
}

void gpu_case_teardown(void)
{
	asam_ctx_destroy(gc_ctx);
}

void gc_cols_patterns(struct asam_pattern *st, struct asam_pattern *hi,
		      struct asam_pattern *st2, struct asam_pattern *hw)
{
	/* softmax-ed per-head weights over the scales (4, 16, 64) */
	static const float w[4 * 3] = { 0.6f, 0.2f, 0.2f,  0.1f, 0.3f, 0.6f,
					0.3f, 0.3f, 0.4f,
					1.f / 3, 1.f / 3, 1.f / 3 };

	asam_pattern_init(st, ASAM_PATTERN_STRIDED);
	asam_pattern_init(hi, ASAM_PATTERN_HIERARCHICAL);
	asam_pattern_init(st2, ASAM_PATTERN_STRIDED);
	st2->stride = 7;
	st2->radius = 5;
	asam_pattern_init(hw, ASAM_PATTERN_HIERARCHICAL);
	hw->scale_weights = w;
}
