// SPDX-License-Identifier: MIT
/*
 * kdev: standalone GPU harness for the attention forward kernel before the
 * library's CUDA backend exists.  Loads prebuilt cubins (nvrtc-cubin),
 * checks each case against libasam's fp64 reference (asam_attn_fwd with
 * ASAM_F_REFERENCE on host copies) and times the benchmark shapes with
 * CUDA events (median).  Development tool; selftests/attention-cuda is the
 * real test once the backend is wired.
 *
 *	fwd-check CUBIN_DIR [check|bench|all]
 */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <cuda.h>

#include <asam/asam.h>
#include "../../selftests/lib/testutil.h"
#include "../../arch/cuda/attn_plan.h"
#include "../../jit/kernels/attn_params.cuh"

#define CK(x) do { CUresult r_ = (x); if (r_) { const char *s_; \
	cuGetErrorName(r_, &s_); fprintf(stderr, "%s:%d %s: %s\n", \
	__FILE__, __LINE__, #x, s_); exit(1); } } while (0)

static const char *dir;
static struct asam_ctx *ctx;
static int fails, passes;

struct kcase {
	int dt;			/* 0 f16, 1 bf16 */
	int d, causal, gate, pat, B, Hq, Hkv, Nq, Nk, lens, bm;
	int reps;		/* 0: check against the reference */
	int nw;			/* warps; 0: bm / 16 */
};

static CUfunction get_fn(const struct kcase *c)
{
	static struct { char name[128]; CUfunction f; } cache[512];
	static int n;
	char name[128], path[512];
	CUmodule m;
	int i;

	snprintf(name, sizeof(name), "fwd_d%d_t%d_c%d_g%d_p%d_m%d_w%d.cubin",
		 c->d, c->dt, c->causal, c->gate, c->pat, c->bm,
		 c->nw ? c->nw : c->bm / 16);
	for (i = 0; i < n; i++)
		if (!strcmp(cache[i].name, name))
			return cache[i].f;
	snprintf(path, sizeof(path), "%s/%s", dir, name);
	if (cuModuleLoad(&m, path)) {
		fprintf(stderr, "no cubin %s\n", path);
		return NULL;
	}
	CK(cuModuleGetFunction(&cache[n].f, m, "asam_attn_fwd_kernel"));
	CK(cuFuncSetAttribute(cache[n].f,
			      CU_FUNC_ATTRIBUTE_MAX_DYNAMIC_SHARED_SIZE_BYTES,
			      200 * 1024));
	strcpy(cache[n].name, name);
	return cache[n++].f;
}

static CUfunction get_named(const char *file, const char *fn)
{
	static struct { char key[160]; CUfunction f; } cache[512];
	static int n;
	char key[160], path[512];
	CUmodule m;
	int i;

	snprintf(key, sizeof(key), "%s:%s", file, fn);
	for (i = 0; i < n; i++)
		if (!strcmp(cache[i].key, key))
			return cache[i].f;
	snprintf(path, sizeof(path), "%s/%s", dir, file);
	if (cuModuleLoad(&m, path)) {
		fprintf(stderr, "no cubin %s\n", path);
		return NULL;
	}
	CK(cuModuleGetFunction(&cache[n].f, m, fn));
	CK(cuFuncSetAttribute(cache[n].f,
			      CU_FUNC_ATTRIBUTE_MAX_DYNAMIC_SHARED_SIZE_BYTES,
			      200 * 1024));
	strcpy(cache[n].key, key);
	return cache[n++].f;
}

static CUdeviceptr up(const void *h, size_t n)
{
	CUdeviceptr p;

	CK(cuMemAlloc(&p, n ? n : 16));
	if (h)
		CK(cuMemcpyHtoD(p, h, n));
	return p;
}

static const char *pname(int p)
{
	return p == 0 ? "dense" : p == 1 ? "local" : "random";
}

static const char *gname(int g)
{
	static const char *n[] = { "sparse", "dense", "soft", "hard" };

	return n[g];
}

/* uniform in (-2, 2) as bf16 or fp16 bits, xorshift: host fill in ms */
static void fast_fill(struct tt *t)
{
	static uint64_t x = 0x9E3779B97F4A7C15ull;
	uint16_t *u = t->buf;
	int64_t i, n = tt_numel(t);
	bool bf = t->dl.dtype.code == kDLBfloat;

	for (i = 0; i < n; i++) {
		uint32_t m;

		x ^= x << 13;
		x ^= x >> 7;
		x ^= x << 17;
		m = (uint32_t)(x >> 40);
		/* sign, exponent 2^-1 or 2^0, random mantissa */
		if (bf)
			u[i] = (uint16_t)(((m & 1) << 15) |
					  ((126 + ((m >> 1) & 1)) << 7) |
					  ((m >> 2) & 0x7f));
		else
			u[i] = (uint16_t)(((m & 1) << 15) |
					  ((14 + ((m >> 1) & 1)) << 10) |
					  ((m >> 2) & 0x3ff));
	}
}

static int want_bwd;		/* run_case also checks the backward */
static double err_g[4];		/* dq, dk, dv, dg */
static bool bwd_det;		/* two backward runs bit-identical */

static void bwd_gpu(const struct kcase *c, struct attn_fwd_params *fp,
		    struct attn_plan *pl, CUdeviceptr ddo, CUdeviceptr *dgr,
		    size_t qb, size_t kb, size_t gb);
static double bwd_ms;		/* timing: forward + backward, median */
static CUfunction fwd_fn;	/* the forward being timed, for fwd+bwd */
static unsigned fwd_smem;

/*
 * Relative error, or the absolute one where the reference is exactly 0
 * (one key per row: dS = P (dP - <dO, O>) vanishes, the GPU's rounding
 * leaves ~1e-7 and a relative error would be infinite).
 */
static double rel_or_abs(const struct tt *x, const struct tt *ref)
{
	if (tt_max_abs(ref) == 0)
		return tt_has_nan(x) ? INFINITY : tt_max_abs(x);
	return tt_rel_err(x, ref);
}

static double run_case(const struct kcase *c, double *err_o, double *err_l)
{
	DLDataType dt = c->dt ? TT_BF16 : TT_F16;
	int64_t gs[2] = { c->B, c->Hq }, ls[1] = { c->B };
	struct tt *q = tt_new4(dt, c->B, c->Hq, c->Nq, c->d);
	struct tt *k = tt_new4(dt, c->B, c->Hkv, c->Nk, c->d);
	struct tt *v = tt_new4(dt, c->B, c->Hkv, c->Nk, c->d);
	struct tt *o = tt_new4(dt, c->B, c->Hq, c->Nq, c->d);
	struct tt *g = tt_new(TT_F32, 2, gs);
	struct tt *lq = tt_new(TT_I32, 1, ls), *lk = tt_new(TT_I32, 1, ls);
	int64_t lsh[3] = { c->B, c->Hq, c->Nq };
	struct tt *lse_s = tt_new(TT_F32, 3, lsh);
	struct tt *lse_d = tt_new(TT_F32, 3, lsh);
	struct asam_pattern pat;
	struct attn_plan pl = { 0 };
	struct attn_fwd_params p;
	CUdeviceptr dq, dk, dv, dout, dg, dlq, dlk, dls, dld, dlist = 0;
	CUfunction fn = get_fn(c);
	int nw = c->nw ? c->nw : c->bm / 16, b;
	double ms = 0;

	if (!fn)
		return -1;
	if (c->reps) {		/* timing: a fast fill, never zeros */
		fast_fill(q);
		fast_fill(k);
		fast_fill(v);
	} else {
		tt_fill_randn(q, 1);
		tt_fill_randn(k, 1);
		tt_fill_randn(v, 1);
	}
	/* timing HARD: every head sparse, to compare with SPARSE */
	tt_fill_uniform(g, c->reps ? 0.6 : 0, 1);
	for (b = 0; b < c->B; b++) {
		int a = c->lens ? 1 + (int)(tt_uniform() * c->Nq) : c->Nq;
		int e = c->lens ? 1 + (int)(tt_uniform() * c->Nk) : c->Nk;

		((int32_t *)lq->buf)[b] = a > c->Nq ? c->Nq : a;
		((int32_t *)lk->buf)[b] = e > c->Nk ? c->Nk : e;
	}
	asam_pattern_init(&pat, c->pat);
	dq = up(q->buf, q->bytes);
	dk = up(k->buf, k->bytes);
	dv = up(v->buf, v->bytes);
	dout = up(NULL, o->bytes);
	CK(cuMemsetD8(dout, 0xff, o->bytes));	/* NaN: unwritten shows */
	dg = up(g->buf, g->bytes);
	dlq = up(lq->buf, lq->bytes);
	dlk = up(lk->buf, lk->bytes);
	dls = up(NULL, lse_s->bytes);
	dld = up(NULL, lse_d->bytes);
	CK(cuMemsetD8(dls, 0xff, lse_s->bytes));
	CK(cuMemsetD8(dld, 0xff, lse_d->bytes));

	memset(&p, 0, sizeof(p));
	if (c->pat != ASAM_PATTERN_DENSE) {
		struct asam_pat rp = { .kind = c->pat, .radius = pat.window / 2,
				       .r = pat.keys_per_row, .seed = pat.seed };
		size_t n;

		if (attn_plan_build(&pl, &rp, c->Hq, c->Nq, c->Nk, c->bm, 64)) {
			fprintf(stderr, "plan: %s\n", asam_last_error());
			exit(1);
		}
		n = (size_t)pl.nh * pl.nqt + 1;
		dlist = up(NULL, attn_plan_bytes(&pl) + 4);
		CK(cuMemcpyHtoD(dlist, pl.off, n * sizeof(int)));
		CK(cuMemcpyHtoD(dlist + n * sizeof(int), pl.list,
				pl.off[n - 1] * sizeof(int) + 4));
		p.list_off = (const int *)dlist;
		p.list = (const int *)(dlist + n * sizeof(int));
		p.list_per_head = pl.nh > 1;
		p.radius = pat.window / 2;
	}
	p.q = (void *)dq; p.k = (void *)dk; p.v = (void *)dv;
	p.o = (void *)dout;
	p.lse_s = c->gate != ASAM_GATE_DENSE ? (float *)dls : NULL;
	p.lse_d = c->gate != ASAM_GATE_SPARSE ? (float *)dld : NULL;
	p.gate = (const float *)dg;
	p.len_q = c->lens ? (const int *)dlq : NULL;
	p.len_k = c->lens ? (const int *)dlk : NULL;
	p.q_sb = (long long)c->Hq * c->Nq * c->d; p.q_sh = (long long)c->Nq * c->d;
	p.q_sn = c->d;
	p.k_sb = (long long)c->Hkv * c->Nk * c->d; p.k_sh = (long long)c->Nk * c->d;
	p.k_sn = c->d;
	p.v_sb = p.k_sb; p.v_sh = p.k_sh; p.v_sn = c->d;
	p.o_sb = p.q_sb; p.o_sh = p.q_sh; p.o_sn = c->d;
	p.l_sb = (long long)c->Hq * c->Nq; p.l_sh = c->Nq;
	p.g_sb = c->Hq; p.g_sh = 1;
	p.lq_s = p.lk_s = 1;
	p.B = c->B; p.Hq = c->Hq; p.Hkv = c->Hkv; p.Nq = c->Nq; p.Nk = c->Nk;
	p.nqt = (c->Nq + c->bm - 1) / c->bm;
	p.scale_log2 = (float)(1.0 / sqrt(c->d) * 1.4426950408889634);
	p.hard_tau = 0.5f;
	p.reverse = c->causal;

	void *args[] = { &p };
	unsigned smem = (c->bm + 4 * 64) * (c->d + 8) * 2;

	if (!c->reps) {
		CK(cuLaunchKernel(fn, p.nqt, c->Hq, c->B, nw * 32, 1, 1, smem,
				  NULL, args, NULL));
		CK(cuCtxSynchronize());
	} else {
		CUevent e0, e1;
		float t[64];
		int r;

		CK(cuEventCreate(&e0, 0));
		CK(cuEventCreate(&e1, 0));
		for (r = 0; r < 3; r++)
			CK(cuLaunchKernel(fn, p.nqt, c->Hq, c->B, nw * 32, 1, 1,
					  smem, NULL, args, NULL));
		for (r = 0; r < c->reps; r++) {
			int x, y;

			CK(cuEventRecord(e0, NULL));
			CK(cuLaunchKernel(fn, p.nqt, c->Hq, c->B, nw * 32, 1, 1,
					  smem, NULL, args, NULL));
			CK(cuEventRecord(e1, NULL));
			CK(cuEventSynchronize(e1));
			CK(cuEventElapsedTime(&t[r], e0, e1));
			for (x = r; x > 0 && t[x] < t[x - 1]; x--) {
				float tmp = t[x]; t[x] = t[x - 1]; t[x - 1] = tmp;
			}
			(void)y;
		}
		ms = t[c->reps / 2];
		cuEventDestroy(e0);
		cuEventDestroy(e1);
	}
	struct tt *dO = NULL, *gq = NULL, *gk = NULL, *gv = NULL, *gg = NULL;

	fwd_fn = fn;
	fwd_smem = smem;
	if (want_bwd) {
		CUdeviceptr ddo, dgr[4];

		dO = tt_new4(dt, c->B, c->Hq, c->Nq, c->d);
		gq = tt_new4(dt, c->B, c->Hq, c->Nq, c->d);
		gk = tt_new4(dt, c->B, c->Hkv, c->Nk, c->d);
		gv = tt_new4(dt, c->B, c->Hkv, c->Nk, c->d);
		gg = tt_new(TT_F32, 2, gs);
		if (c->reps)
			fast_fill(dO);
		else
			tt_fill_randn(dO, 1);
		ddo = up(dO->buf, dO->bytes);
		bwd_gpu(c, &p, &pl, ddo, dgr, q->bytes, k->bytes, g->bytes);
		CK(cuMemcpyDtoH(gq->buf, dgr[0], gq->bytes));
		CK(cuMemcpyDtoH(gk->buf, dgr[1], gk->bytes));
		CK(cuMemcpyDtoH(gv->buf, dgr[2], gv->bytes));
		CK(cuMemcpyDtoH(gg->buf, dgr[3], gg->bytes));
		cuMemFree(ddo);
		cuMemFree(dgr[0]); cuMemFree(dgr[1]); cuMemFree(dgr[2]);
		cuMemFree(dgr[3]);
	}
	CK(cuMemcpyDtoH(o->buf, dout, o->bytes));
	CK(cuMemcpyDtoH(lse_s->buf, dls, lse_s->bytes));
	CK(cuMemcpyDtoH(lse_d->buf, dld, lse_d->bytes));

	*err_o = *err_l = 0;
	if (!c->reps) {
		struct tt *q64 = tt_new4(TT_F64, c->B, c->Hq, c->Nq, c->d);
		struct tt *k64 = tt_new4(TT_F64, c->B, c->Hkv, c->Nk, c->d);
		struct tt *v64 = tt_new4(TT_F64, c->B, c->Hkv, c->Nk, c->d);
		struct tt *o64 = tt_new4(TT_F64, c->B, c->Hq, c->Nq, c->d);
		struct tt *rs = tt_new(TT_F64, 3, lsh);
		struct tt *rd = tt_new(TT_F64, 3, lsh);
		struct asam_attn_params ap = { .sz = sizeof(ap) };
		struct asam_fwd_args fa = { .sz = sizeof(fa) };
		int64_t i, n = tt_numel(rs);
		int ret;

		tt_copy(q64, q);
		tt_copy(k64, k);
		tt_copy(v64, v);
		ap.pattern = &pat;
		ap.gate_mode = c->gate;
		ap.hard_threshold = 0.5f;
		ap.causal = c->causal;
		ap.flags = ASAM_F_REFERENCE;
		fa.q = &q64->dl; fa.k = &k64->dl; fa.v = &v64->dl;
		fa.o = &o64->dl;
		fa.gate = c->gate >= ASAM_GATE_SOFT ? &g->dl : NULL;
		fa.len_q = c->lens ? &lq->dl : NULL;
		fa.len_k = c->lens ? &lk->dl : NULL;
		fa.lse_sparse = c->gate != ASAM_GATE_DENSE ? &rs->dl : NULL;
		fa.lse_dense = c->gate != ASAM_GATE_SPARSE ? &rd->dl : NULL;
		ret = asam_attn_fwd(ctx, &ap, &fa);
		if (ret) {
			fprintf(stderr, "ref: %s\n", asam_last_error());
			exit(1);
		}
		*err_o = tt_rel_err(o, o64);
		if (dO) {
			struct tt *do64 = tt_new4(TT_F64, c->B, c->Hq, c->Nq, c->d);
			struct tt *rq = tt_new4(TT_F64, c->B, c->Hq, c->Nq, c->d);
			struct tt *rk = tt_new4(TT_F64, c->B, c->Hkv, c->Nk, c->d);
			struct tt *rv = tt_new4(TT_F64, c->B, c->Hkv, c->Nk, c->d);
			struct tt *rg = tt_new(TT_F32, 2, gs);
			struct asam_bwd_args ba = { .sz = sizeof(ba) };

			tt_copy(do64, dO);
			ba.q = fa.q; ba.k = fa.k; ba.v = fa.v;
			ba.gate = fa.gate; ba.len_q = fa.len_q; ba.len_k = fa.len_k;
			ba.o = fa.o; ba.lse_sparse = fa.lse_sparse;
			ba.lse_dense = fa.lse_dense; ba.d_o = &do64->dl;
			ba.dq = &rq->dl; ba.dk = &rk->dl; ba.dv = &rv->dl;
			ba.dgate = c->gate == ASAM_GATE_SOFT ? &rg->dl : NULL;
			if (asam_attn_bwd(ctx, &ap, &ba)) {
				fprintf(stderr, "ref bwd: %s\n", asam_last_error());
				exit(1);
			}
			err_g[0] = rel_or_abs(gq, rq);
			err_g[1] = rel_or_abs(gk, rk);
			err_g[2] = rel_or_abs(gv, rv);
			err_g[3] = c->gate == ASAM_GATE_SOFT ? rel_or_abs(gg, rg) : 0;
			tt_free(do64); tt_free(rq); tt_free(rk); tt_free(rv);
			tt_free(rg);
			tt_free(dO); tt_free(gq); tt_free(gk); tt_free(gv);
			tt_free(gg);
		}
		for (i = 0; i < n; i++) {
			int w;

			for (w = 0; w < 2; w++) {
				struct tt *r = w ? rd : rs, *x = w ? lse_d : lse_s;
				double a, e;

				if ((w == 0 && c->gate == ASAM_GATE_DENSE) ||
				    (w == 1 && c->gate == ASAM_GATE_SPARSE))
					continue;
				a = tt_get(x, i);
				e = tt_get(r, i);
				if (isnan(e))
					continue;
				if (isinf(e)) {
					if (!(isinf(a) && a < 0))
						*err_l = INFINITY;
					continue;
				}
				if (!(fabs(a - e) <= *err_l))
					*err_l = isnan(a) ? INFINITY :
						 fmax(*err_l, fabs(a - e));
			}
		}
		tt_free(q64); tt_free(k64); tt_free(v64); tt_free(o64);
		tt_free(rs); tt_free(rd);
	}
	if (dO && c->reps) {
		tt_free(dO); tt_free(gq); tt_free(gk); tt_free(gv);
		tt_free(gg);
	}
	cuMemFree(dq); cuMemFree(dk); cuMemFree(dv); cuMemFree(dout);
	cuMemFree(dg); cuMemFree(dlq); cuMemFree(dlk); cuMemFree(dls);
	cuMemFree(dld);
	if (dlist)
		cuMemFree(dlist);
	attn_plan_free(&pl);
	tt_free(q); tt_free(k); tt_free(v); tt_free(o); tt_free(g);
	tt_free(lq); tt_free(lk); tt_free(lse_s); tt_free(lse_d);
	return ms;
}

static void check(struct kcase c)
{
	double eo, el, tol = c.dt ? 1e-2 : 2e-3;
	bool ok;

	if (run_case(&c, &eo, &el) < 0) {
		fails++;
		return;
	}
	ok = eo <= tol && el <= 1e-2;
	ok ? passes++ : fails++;
	printf("%s fwd %-4s d%-3d %-6s %-6s c%d B%d H%d/%d Nq%-5d Nk%-5d len%d m%d: err_o %.2e err_lse %.2e\n",
	       ok ? "ok  " : "FAIL", c.dt ? "bf16" : "f16", c.d, pname(c.pat),
	       gname(c.gate), c.causal, c.B, c.Hq, c.Hkv, c.Nq, c.Nk, c.lens,
	       c.bm, eo, el);
	fflush(stdout);
}

static void bench_fb(struct kcase c)
{
	double eo, el, fl = 3.5 * 4.0 * c.B * c.Hq * (double)c.Nq * c.Nk * c.d *
			    (c.causal ? 0.5 : 1);

	want_bwd = 1;
	run_case(&c, &eo, &el);
	want_bwd = 0;
	printf("BENCH fwdbwd %s d%d %s %s c%d B%d H%d N%d m%d w%d: %.3f ms  dense-equiv %.0f TFLOP/s\n",
	       c.dt ? "bf16" : "f16", c.d, pname(c.pat), gname(c.gate),
	       c.causal, c.B, c.Hq, c.Nq, c.bm, c.nw ? c.nw : c.bm / 16,
	       bwd_ms, fl / bwd_ms / 1e9);
	fflush(stdout);
}

static void bench(struct kcase c)
{
	double eo, el, ms = run_case(&c, &eo, &el);
	double fl = 4.0 * c.B * c.Hq * (double)c.Nq * c.Nk * c.d *
		    (c.causal ? 0.5 : 1);

	printf("BENCH fwd %s d%d %s %s c%d B%d H%d N%d m%d w%d: %.3f ms  dense-equiv %.0f TFLOP/s\n",
	       c.dt ? "bf16" : "f16", c.d, pname(c.pat), gname(c.gate),
	       c.causal, c.B, c.Hq, c.Nq, c.bm, c.nw ? c.nw : c.bm / 16, ms,
	       fl / ms / 1e9);
	fflush(stdout);
}

static CUdeviceptr zalloc(size_t n)
{
	CUdeviceptr p = up(NULL, n);

	CK(cuMemsetD8(p, 0xff, n));	/* poison: NaN in fp16/bf16/fp32 */
	return p;
}

/* preprocess, dQ, dK/dV and dg on the GPU; twice, to check determinism */
static void bwd_gpu(const struct kcase *c, struct attn_fwd_params *fp,
		    struct attn_plan *pl, CUdeviceptr ddo, CUdeviceptr *dgr,
		    size_t qb, size_t kb, size_t gb)
{
	char f1[128], f2[128];
	struct attn_plan tp = { 0 }, p64 = { 0 };
	struct attn_bwd_params bp;
	CUdeviceptr l64 = 0;
	struct attn_fwd_params pre = *fp;
	int nkt = (c->Nk + 63) / 64, nqt = (c->Nq + 63) / 64, rep, x;
	size_t nrow = (size_t)c->B * c->Hq * c->Nq * sizeof(float);
	CUdeviceptr ds = zalloc(nrow), dd = zalloc(nrow), tl = 0;
	void *first[4] = { 0 };
	size_t sz[4] = { qb, kb, kb, gb };
	unsigned sm_pre = (64 + 4 * 64) * (c->d + 8) * 2;
	unsigned sm_dq = (64 * 2 + 4 * 64) * (c->d + 8) * 2;
	unsigned sm_kv = (64 * 4) * (c->d + 8) * 2 + 1024;
	CUfunction fpre, fdq, fkv, fdg;

	snprintf(f1, sizeof(f1), "pre_d%d_t%d_c%d_g%d_p%d.cubin", c->d, c->dt,
		 c->causal, c->gate, c->pat);
	snprintf(f2, sizeof(f2), "bwd_d%d_t%d_c%d_g%d_p%d.cubin", c->d, c->dt,
		 c->causal, c->gate, c->pat);
	fpre = get_named(f1, "asam_attn_fwd_kernel");
	fdq = get_named(f2, "asam_attn_bwd_dq_kernel");
	fkv = get_named(f2, "asam_attn_bwd_dkdv_kernel");
	fdg = get_named(f2, "asam_attn_bwd_dg_kernel");
	if (!fpre || !fdq || !fkv || !fdg)
		exit(1);
	if (c->pat != ASAM_PATTERN_DENSE) {
		struct asam_pat rp = { .kind = c->pat, .radius = 64, .r = 128,
				       .seed = 42 };
		size_t n;

		/* the backward's tiles are 64 x 64: lists of their own */
		if (attn_plan_build(&p64, &rp, c->Hq, c->Nq, c->Nk, 64, 64))
			exit(1);
		pl = &p64;
		n = (size_t)p64.nh * p64.nqt + 1;
		l64 = up(NULL, attn_plan_bytes(&p64) + 4);
		CK(cuMemcpyHtoD(l64, p64.off, n * sizeof(int)));
		CK(cuMemcpyHtoD(l64 + n * sizeof(int), p64.list,
				p64.off[n - 1] * sizeof(int) + 4));
		if (attn_plan_transpose(pl, nkt, &tp))
			exit(1);
		n = (size_t)tp.nh * tp.nqt + 1;
		tl = up(NULL, attn_plan_bytes(&tp) + 4);
		CK(cuMemcpyHtoD(tl, tp.off, n * sizeof(int)));
		CK(cuMemcpyHtoD(tl + n * sizeof(int), tp.list,
				tp.off[n - 1] * sizeof(int) + 4));
	}
	pre.d_o = (void *)ddo;
	pre.do_sb = fp->q_sb; pre.do_sh = fp->q_sh; pre.do_sn = fp->q_sn;
	pre.dsum_s = c->gate != ASAM_GATE_DENSE ? (float *)ds : NULL;
	pre.dsum_d = c->gate != ASAM_GATE_SPARSE ? (float *)dd : NULL;
	pre.reverse = 0;
	pre.nqt = nqt;
	if (l64) {
		size_t n = (size_t)p64.nh * p64.nqt + 1;

		pre.list_off = (const int *)l64;
		pre.list = (const int *)(l64 + n * sizeof(int));
	}

	memset(&bp, 0, sizeof(bp));
	bp.q = fp->q; bp.k = fp->k; bp.v = fp->v; bp.d_o = (void *)ddo;
	bp.lse_s = fp->lse_s; bp.lse_d = fp->lse_d;
	bp.dsum_s = pre.dsum_s; bp.dsum_d = pre.dsum_d;
	bp.gate = fp->gate; bp.len_q = fp->len_q; bp.len_k = fp->len_k;
	bp.list_off = pre.list_off; bp.list = pre.list;
	if (tl) {
		size_t n = (size_t)tp.nh * tp.nqt + 1;

		bp.tlist_off = (const int *)tl;
		bp.tlist = (const int *)(tl + n * sizeof(int));
	}
	bp.q_sb = fp->q_sb; bp.q_sh = fp->q_sh; bp.q_sn = fp->q_sn;
	bp.k_sb = fp->k_sb; bp.k_sh = fp->k_sh; bp.k_sn = fp->k_sn;
	bp.v_sb = fp->v_sb; bp.v_sh = fp->v_sh; bp.v_sn = fp->v_sn;
	bp.do_sb = fp->q_sb; bp.do_sh = fp->q_sh; bp.do_sn = fp->q_sn;
	bp.dq_sb = fp->q_sb; bp.dq_sh = fp->q_sh; bp.dq_sn = fp->q_sn;
	bp.dk_sb = fp->k_sb; bp.dk_sh = fp->k_sh; bp.dk_sn = fp->k_sn;
	bp.dv_sb = fp->k_sb; bp.dv_sh = fp->k_sh; bp.dv_sn = fp->k_sn;
	bp.l_sb = fp->l_sb; bp.l_sh = fp->l_sh;
	bp.g_sb = fp->g_sb; bp.g_sh = fp->g_sh;
	bp.dg_sb = c->Hq; bp.dg_sh = 1;
	bp.lq_s = bp.lk_s = 1;
	bp.B = c->B; bp.Hq = c->Hq; bp.Hkv = c->Hkv; bp.Nq = c->Nq;
	bp.Nk = c->Nk; bp.nqt = nqt; bp.nkt = nkt;
	bp.list_per_head = fp->list_per_head; bp.radius = fp->radius;
	bp.scale_log2 = fp->scale_log2;
	bp.scale = (float)(1.0 / sqrt(c->d));

	bwd_det = true;
	if (c->reps) {
		void *a0[] = { fp }, *a1[] = { &pre }, *a2[] = { &bp };
		unsigned nfq = (c->Nq + c->bm - 1) / c->bm;
		int nw = c->nw ? c->nw : c->bm / 16, r;
		float t[64];
		CUevent e0, e1;

		for (x = 0; x < 4; x++)
			dgr[x] = zalloc(sz[x]);
		bp.dq = (void *)dgr[0]; bp.dk = (void *)dgr[1];
		bp.dv = (void *)dgr[2]; bp.dgate = (float *)dgr[3];
		CK(cuEventCreate(&e0, 0));
		CK(cuEventCreate(&e1, 0));
		for (r = -2; r < c->reps; r++) {
			CK(cuEventRecord(e0, NULL));
			CK(cuLaunchKernel(fwd_fn, nfq, c->Hq, c->B, nw * 32, 1,
					  1, fwd_smem, NULL, a0, NULL));
			CK(cuLaunchKernel(fpre, nqt, c->Hq, c->B, 128, 1, 1,
					  sm_pre, NULL, a1, NULL));
			CK(cuLaunchKernel(fdq, nqt, c->Hq, c->B, 128, 1, 1,
					  sm_dq, NULL, a2, NULL));
			CK(cuLaunchKernel(fkv, nkt, c->Hkv, c->B, 128, 1, 1,
					  sm_kv, NULL, a2, NULL));
			if (c->gate == ASAM_GATE_SOFT)
				CK(cuLaunchKernel(fdg, c->Hq, c->B, 1, 32, 1,
						  1, 0, NULL, a2, NULL));
			CK(cuEventRecord(e1, NULL));
			CK(cuEventSynchronize(e1));
			if (r < 0)
				continue;
			CK(cuEventElapsedTime(&t[r], e0, e1));
			for (x = r; x > 0 && t[x] < t[x - 1]; x--) {
				float tmp = t[x]; t[x] = t[x - 1]; t[x - 1] = tmp;
			}
		}
		bwd_ms = t[c->reps / 2];
		cuEventDestroy(e0);
		cuEventDestroy(e1);
		goto out;
	}
	for (rep = 0; rep < 2; rep++) {
		void *a1[] = { &pre }, *a2[] = { &bp };

		for (x = 0; x < 4; x++)
			dgr[x] = zalloc(sz[x]);
		bp.dq = (void *)dgr[0]; bp.dk = (void *)dgr[1];
		bp.dv = (void *)dgr[2]; bp.dgate = (float *)dgr[3];
		CK(cuLaunchKernel(fpre, nqt, c->Hq, c->B, 128, 1, 1, sm_pre,
				  NULL, a1, NULL));
		CK(cuLaunchKernel(fdq, nqt, c->Hq, c->B, 128, 1, 1, sm_dq,
				  NULL, a2, NULL));
		CK(cuLaunchKernel(fkv, nkt, c->Hkv, c->B, 128, 1, 1, sm_kv,
				  NULL, a2, NULL));
		if (c->gate == ASAM_GATE_SOFT)
			CK(cuLaunchKernel(fdg, c->Hq, c->B, 1, 32, 1, 1, 0,
					  NULL, a2, NULL));
		CK(cuCtxSynchronize());
		for (x = 0; x < 4; x++) {
			void *h = malloc(sz[x]);

			CK(cuMemcpyDtoH(h, dgr[x], sz[x]));
			if (rep == 0) {
				first[x] = h;
				continue;
			}
			if (memcmp(h, first[x], sz[x]))
				bwd_det = false;
			free(h);
			free(first[x]);
		}
		if (rep == 0)
			for (x = 0; x < 4; x++)
				cuMemFree(dgr[x]);
	}
out:
	cuMemFree(ds);
	cuMemFree(dd);
	if (tl)
		cuMemFree(tl);
	if (l64)
		cuMemFree(l64);
	attn_plan_free(&tp);
	attn_plan_free(&p64);
}

static void check_bwd(struct kcase c)
{
	double eo, el, tol = 2e-2;
	bool ok;

	c.bm = 64;
	c.nw = 4;
	want_bwd = 1;
	if (run_case(&c, &eo, &el) < 0) {
		fails++;
		want_bwd = 0;
		return;
	}
	want_bwd = 0;
	ok = eo <= (c.dt ? 1e-2 : 2e-3) && el <= 1e-2 && err_g[0] <= tol &&
	     err_g[1] <= tol && err_g[2] <= tol && err_g[3] <= tol && bwd_det;
	ok ? passes++ : fails++;
	printf("%s bwd %-4s d%-3d %-6s %-6s c%d B%d H%d/%d Nq%-5d Nk%-5d len%d: dq %.2e dk %.2e dv %.2e dg %.2e det %d\n",
	       ok ? "ok  " : "FAIL", c.dt ? "bf16" : "f16", c.d, pname(c.pat),
	       gname(c.gate), c.causal, c.B, c.Hq, c.Hkv, c.Nq, c.Nk, c.lens,
	       err_g[0], err_g[1], err_g[2], err_g[3], bwd_det);
	fflush(stdout);
}

int main(int argc, char **argv)
{
	const char *mode = argc > 2 ? argv[2] : "all";
	CUdevice dev;
	CUcontext cu;
	char name[256];
	int dt, d, cz, gm, pt, x;

	if (argc < 2)
		return 2;
	dir = argv[1];
	CK(cuInit(0));
	CK(cuDeviceGet(&dev, 0));
	CK(cuDeviceGetName(name, sizeof(name), dev));
	CK(cuDevicePrimaryCtxRetain(&cu, dev));
	CK(cuCtxSetCurrent(cu));
	printf("device: %s\n", name);
	if (asam_ctx_create(NULL, &ctx))
		return 1;

	if (!strcmp(mode, "check") || !strcmp(mode, "all")) {
		/* the grid: patterns x gates x causal x dtype x d, odd sizes */
		static const int sz[][5] = {	/* B Hq Hkv Nq Nk */
			{ 2, 4, 2, 200, 200 }, { 1, 2, 1, 77, 301 },
			{ 2, 2, 2, 333, 129 }, { 1, 2, 2, 1, 1 },
		};
		for (dt = 0; dt < 2; dt++)
		for (d = 64; d <= 128; d += 64)
		for (pt = 0; pt < 3; pt++)
		for (gm = 0; gm < 4; gm++)
		for (cz = 0; cz < 2; cz++)
		for (x = 0; x < 4; x++) {
			struct kcase c = { dt, d, cz, gm, pt == 2 ? 4 : pt,
					   sz[x][0], sz[x][1], sz[x][2],
					   sz[x][3], sz[x][4], x & 1, 128, 0 };

			if (pt == 0 && gm == 0 && x > 1)
				continue;
			check(c);
		}
		/* longer rows, bm 64 */
		check((struct kcase){ 1, 128, 1, 2, 1, 1, 2, 1, 2048, 2048, 1, 128, 0 });
		check((struct kcase){ 1, 128, 0, 2, 4, 1, 2, 2, 1500, 2100, 0, 128, 0 });
		check((struct kcase){ 1, 64, 0, 1, 0, 1, 2, 1, 4096, 4096, 0, 64, 0 });
		check((struct kcase){ 0, 128, 1, 3, 4, 1, 4, 2, 1024, 1000, 1, 64, 0 });
		check((struct kcase){ 1, 128, 0, 0, 1, 1, 2, 2, 16384, 16384, 0, 128, 0 });
		/* 32 rows per warp (MT = 2) */
		for (gm = 0; gm < 4; gm++)
		for (pt = 0; pt < 3; pt++)
		for (cz = 0; cz < 2; cz++)
			check((struct kcase){ 1, 128, cz, gm, pt == 2 ? 4 : pt,
					      2, 4, 2, 700, 650, 1, 128, 0, 4 });
		check((struct kcase){ 0, 64, 1, 1, 0, 2, 4, 1, 1000, 1100, 1, 128, 0, 4 });
		printf("check: %d passed, %d failed\n", passes, fails);
	}
	if (!strcmp(mode, "bwd") || !strcmp(mode, "all")) {
		static const int sz[][5] = {
			{ 2, 4, 2, 200, 200 }, { 1, 2, 1, 77, 301 },
			{ 2, 2, 2, 333, 129 }, { 1, 2, 2, 1, 1 },
		};
		passes = fails = 0;
		for (dt = 0; dt < 2; dt++)
		for (d = 64; d <= 128; d += 64)
		for (pt = 0; pt < 3; pt++)
		for (gm = 0; gm < 3; gm++)
		for (cz = 0; cz < 2; cz++)
		for (x = 0; x < 4; x++) {
			if (x >= 2 && (dt == 0 || d == 64))
				continue;
			check_bwd((struct kcase){ dt, d, cz, gm, pt == 2 ? 4 : pt,
						  sz[x][0], sz[x][1], sz[x][2],
						  sz[x][3], sz[x][4], x & 1, 64, 0, 4 });
		}
		check_bwd((struct kcase){ 1, 128, 1, 2, 1, 1, 4, 2, 1500, 1700, 1, 64, 0, 4 });
		check_bwd((struct kcase){ 1, 128, 0, 0, 4, 1, 2, 1, 2048, 2048, 0, 64, 0, 4 });
		printf("bwd check: %d passed, %d failed\n", passes, fails);
	}
	if (!strcmp(mode, "benchbwd") || !strcmp(mode, "all")) {
		bench_fb((struct kcase){ 1, 128, 0, 1, 0, 8, 16, 16, 4096, 4096, 0, 128, 10, 4 });
		bench_fb((struct kcase){ 1, 128, 0, 1, 0, 2, 16, 16, 16384, 16384, 0, 128, 5, 4 });
		bench_fb((struct kcase){ 1, 64, 0, 1, 0, 8, 16, 16, 4096, 4096, 0, 128, 10, 4 });
		bench_fb((struct kcase){ 1, 128, 0, 0, 1, 2, 16, 16, 16384, 16384, 0, 128, 10, 4 });
		bench_fb((struct kcase){ 1, 128, 0, 0, 1, 1, 16, 16, 65536, 65536, 0, 128, 10, 4 });
		bench_fb((struct kcase){ 1, 128, 0, 0, 4, 2, 16, 16, 16384, 16384, 0, 64, 10, 4 });
		bench_fb((struct kcase){ 1, 128, 0, 2, 1, 2, 16, 16, 16384, 16384, 0, 64, 5, 4 });
	}
	if (!strcmp(mode, "bench") || !strcmp(mode, "all")) {
		/* tile shapes (BLOCK_M, warps) to compare */
		static const int tw[][2] = { { 128, 4 }, { 128, 8 }, { 64, 4 } };
		int w;

		for (w = 0; w < 3; w++) {
			int m = tw[w][0], nw = tw[w][1];

			bench((struct kcase){ 1, 128, 0, 1, 0, 8, 16, 16, 4096, 4096, 0, m, 20, nw });
			bench((struct kcase){ 1, 128, 0, 1, 0, 2, 16, 16, 16384, 16384, 0, m, 10, nw });
			bench((struct kcase){ 1, 64, 0, 1, 0, 8, 16, 16, 4096, 4096, 0, m, 20, nw });
			bench((struct kcase){ 1, 128, 1, 1, 0, 2, 16, 16, 16384, 16384, 0, m, 10, nw });
			bench((struct kcase){ 1, 128, 0, 0, 1, 2, 16, 16, 16384, 16384, 0, m, 20, nw });
			bench((struct kcase){ 1, 128, 0, 0, 1, 1, 16, 16, 65536, 65536, 0, m, 20, nw });
			bench((struct kcase){ 1, 128, 0, 0, 4, 2, 16, 16, 16384, 16384, 0, m, 20, nw });
			bench((struct kcase){ 1, 128, 0, 3, 1, 2, 16, 16, 16384, 16384, 0, m, 20, nw });
			bench((struct kcase){ 1, 128, 0, 3, 4, 2, 16, 16, 16384, 16384, 0, m, 20, nw });
			if (nw == 4 && m == 128)
				continue;	/* SOFT with 32 rows a warp spills */
			bench((struct kcase){ 1, 128, 0, 2, 0, 2, 16, 16, 16384, 16384, 0, m, 10, nw });
			bench((struct kcase){ 1, 128, 0, 2, 1, 2, 16, 16, 16384, 16384, 0, m, 10, nw });
			bench((struct kcase){ 1, 128, 0, 2, 4, 2, 16, 16, 16384, 16384, 0, m, 10, nw });
		}
	}
	asam_ctx_destroy(ctx);
	return fails ? 1 : 0;
}
