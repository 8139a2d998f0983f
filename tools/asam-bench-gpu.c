// SPDX-License-Identifier: MIT
/*
 * asam-bench --gpu: time asam_attn_fwd and asam_attn_bwd on a CUDA device
 * through the public API, with the caller's stream and CUDA events, as a
 * user of the library would call it.
 *
 * Device memory, the stream and the events come from the library's own
 * driver table (include/internal/cuda.h): the tool links the static
 * library and never links libcuda.  Inputs are drawn once on the host
 * into a 4M-value pool of normals and each tensor is a shifted copy of it,
 * so that setting up a 64K problem costs memcpy, not random numbers.
 *
 * Exit status: 0 when every case ran or was declined (-EOPNOTSUPP),
 * 1 when one failed, 2 for a bad command line, 4 without a usable GPU.
 */
#include <errno.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "asam-bench-gpu.h"

#ifdef CONFIG_ARCH_CUDA

#include <internal/cuda.h>
#include <internal/err.h>

#define POOL (1u << 22)

struct gpu {
	const struct asam_cuda_driver *drv;
	CUdevice dev;
	CUcontext ctx;
	CUstream st;
	CUevent e0, e1;
	char name[256];
	int ordinal;
};

/* one device tensor and its DLPack view */
struct dt {
	DLTensor dl;
	int64_t shape[4];
	CUdeviceptr p;
	size_t bytes;
};

/* everything one (pattern, shape) needs; rebuilt when either changes */
struct setup {
	struct bench_case c;
	struct dt q, k, v, o, dO, dq, dk, dv, ls, ld, g, dg, mu, ix;
	DLTensor hq, hk, hmu, hix;	/* host twins for the pair count */
	void *hq_buf, *hk_buf, *hmu_buf, *hix_buf;
	uint64_t allowed, masked;
	int count_ret;
	char count_msg[256];
};

static uint16_t *g_pool;	/* 16-bit normals in the run's dtype */
static float *g_poolf;		/* the same as fp32 */

static uint64_t rng_next(uint64_t *s)
{
	uint64_t x = *s;

	x ^= x >> 12, x ^= x << 25, x ^= x >> 27;
	*s = x;
	return x * 0x2545F4914F6CDD1Dull;
}

static double rng_unit(uint64_t *s)
{
	return ((rng_next(s) >> 11) + 0.5) * (1.0 / 9007199254740992.0);
}

static uint16_t to_bf16(float x)
{
	uint32_t u;

	memcpy(&u, &x, 4);
	return (uint16_t)((u + 0x7fff + ((u >> 16) & 1)) >> 16);
}

/* round to nearest; values below the fp16 normal range flush to zero */
static uint16_t to_fp16(float x)
{
	uint32_t u, e, m, s;

	memcpy(&u, &x, 4);
	s = (u >> 16) & 0x8000;
	e = (u >> 23) & 0xff;
	if (fabsf(x) < 6.2e-5f)
		return (uint16_t)s;
	if (fabsf(x) >= 65504.0f)
		return (uint16_t)(s | 0x7bff);
	m = u & 0x7fffff;
	m += 0xfff + ((m >> 13) & 1);
	if (m & 0x800000)
		m = 0, e++;
	return (uint16_t)(s | ((e - 112) << 10) | (m >> 13));
}

static int make_pool(bool fp16)
{
	uint64_t s = 0x9E3779B97F4A7C15ull;
	uint32_t i;

	g_pool = malloc(sizeof(*g_pool) * POOL);
	g_poolf = malloc(sizeof(*g_poolf) * POOL);
	if (!g_pool || !g_poolf)
		return -ENOMEM;
	for (i = 0; i < POOL; i += 2) {
		double r = sqrt(-2 * log(rng_unit(&s))),
		       t = 2 * M_PI * rng_unit(&s);

		g_poolf[i] = (float)(r * cos(t));
		g_poolf[i + 1] = (float)(r * sin(t));
	}
	for (i = 0; i < POOL; i++)
		g_pool[i] = fp16 ? to_fp16(g_poolf[i]) : to_bf16(g_poolf[i]);
	return 0;
}

/* @n 16-bit values of the pool starting at @shift, wrapping around */
static void fill16(uint16_t *dst, size_t n, size_t shift)
{
	size_t done = 0;

	shift %= POOL;
	while (done < n) {
		size_t len = POOL - shift < n - done ? POOL - shift : n - done;

		memcpy(dst + done, g_pool + shift, len * 2);
		done += len;
		shift = 0;
	}
}

static int gpu_open(struct gpu *g, int ordinal)
{
	const struct asam_cuda_driver *d = asam_cuda_driver_get();
	int ret;

	if (IS_ERR(d))
		return PTR_ERR(d);
	g->drv = d;
	g->ordinal = ordinal;
	ret = asam_cuda_err(d->cuDeviceGet(&g->dev, ordinal), "cuDeviceGet");
	if (!ret)
		ret = asam_cuda_err(d->cuDevicePrimaryCtxRetain(&g->ctx,
								g->dev),
				    "cuDevicePrimaryCtxRetain");
	if (ret)
		return ret == -EINVAL ? -ENODEV : ret;
	ret = asam_cuda_err(d->cuCtxSetCurrent(g->ctx), "cuCtxSetCurrent");
	if (!ret)
		ret = asam_cuda_err(d->cuDeviceGetName(g->name,
						       sizeof(g->name), g->dev),
				    "cuDeviceGetName");
	if (!ret)
		ret = asam_cuda_err(d->cuStreamCreate(&g->st,
						      CU_STREAM_NON_BLOCKING),
				    "cuStreamCreate");
	if (!ret)
		ret = asam_cuda_err(d->cuEventCreate(&g->e0, CU_EVENT_DEFAULT),
				    "cuEventCreate");
	if (!ret)
		ret = asam_cuda_err(d->cuEventCreate(&g->e1, CU_EVENT_DEFAULT),
				    "cuEventCreate");
	return ret;
}

static void gpu_close(struct gpu *g)
{
	if (!g->drv || !g->ctx)
		return;
	if (g->e0)
		g->drv->cuEventDestroy(g->e0);
	if (g->e1)
		g->drv->cuEventDestroy(g->e1);
	if (g->st)
		g->drv->cuStreamDestroy(g->st);
	g->drv->cuDevicePrimaryCtxRelease(g->dev);
}

static int dt_alloc(struct gpu *g, struct dt *t, DLDataType type, int ndim,
		    int64_t a, int64_t b, int64_t c, int64_t e)
{
	int64_t dims[4] = { a, b, c, e };
	size_t n = 1;
	int i;

	memset(t, 0, sizeof(*t));
	for (i = 0; i < ndim; i++)
		n *= (size_t)(t->shape[i] = dims[i]);
	t->bytes = n * type.bits / 8;
	if (asam_cuda_err(g->drv->cuMemAlloc(&t->p, t->bytes), "cuMemAlloc"))
		return -ENOMEM;
	t->dl.data = (void *)(uintptr_t)t->p;
	t->dl.device = (DLDevice){ kDLCUDA, g->ordinal };
	t->dl.ndim = ndim;
	t->dl.dtype = type;
	t->dl.shape = t->shape;
	return 0;
}

static void dt_free(struct gpu *g, struct dt *t)
{
	if (t->p)
		g->drv->cuMemFree(t->p);
	memset(t, 0, sizeof(*t));
}

static int upload(struct gpu *g, struct dt *t, const void *src)
{
	return asam_cuda_err(g->drv->cuMemcpyHtoD(t->p, src, t->bytes),
			     "cuMemcpyHtoD");
}

static void host_view(DLTensor *h, const struct dt *t, void *buf)
{
	*h = t->dl;
	h->data = buf;
	h->device = (DLDevice){ kDLCPU, 0 };
}

static void setup_free(struct gpu *g, struct setup *s)
{
	struct dt *all[] = { &s->q, &s->k, &s->v, &s->o, &s->dO, &s->dq,
			     &s->dk, &s->dv, &s->ls, &s->ld, &s->g, &s->dg,
			     &s->mu, &s->ix };
	size_t i;

	for (i = 0; i < sizeof(all) / sizeof(all[0]); i++)
		dt_free(g, all[i]);
	free(s->hq_buf), free(s->hk_buf), free(s->hmu_buf), free(s->hix_buf);
	memset(s, 0, sizeof(*s));
}

/* USER_INDEX: r distinct random keys per (b, kv head, query) */
static int32_t *random_index(int B, int H, int N, int r)
{
	int32_t *ix = malloc(sizeof(int32_t) * (size_t)B * H * N * r);
	int64_t *stamp = malloc(sizeof(int64_t) * N), row, n, t;
	uint64_t s = 0xD1B54A32D192ED03ull;

	if (!ix || !stamp) {
		free(ix), free(stamp);
		return NULL;
	}
	for (t = 0; t < N; t++)
		stamp[t] = -1;
	n = (int64_t)B * H * N;
	for (row = 0; row < n; row++) {
		int32_t *l = ix + row * r;

		for (t = 0; t < r; t++) {
			int64_t j;

			if (t >= N) {
				l[t] = -1;
				continue;
			}
			do
				j = (int64_t)(rng_next(&s) % (uint64_t)N);
			while (stamp[j] == row);
			stamp[j] = row;
			l[t] = (int32_t)j;
		}
	}
	free(stamp);
	return ix;
}

static int setup_make(struct gpu *g, const struct bench_opts *o,
		      const struct bench_case *c, struct setup *s,
		      struct asam_pattern *pat)
{
	DLDataType dt16 = o->fp16 ? (DLDataType){ kDLFloat, 16, 1 }
				  : (DLDataType){ kDLBfloat, 16, 1 };
	DLDataType f32 = { kDLFloat, 32, 1 }, i32 = { kDLInt, 32, 1 };
	int B = c->s.B, H = c->s.H, N = c->s.N, d = c->s.d, C = o->clusters;
	size_t n = (size_t)B * H * N * d, i;
	struct dt *big[] = { &s->q, &s->k, &s->v, &s->o, &s->dO, &s->dq,
			     &s->dk, &s->dv };
	struct asam_attn_params prm = { .sz = sizeof(prm), .pattern = pat,
					.causal = o->causal };
	struct asam_fwd_args fa = { .sz = sizeof(fa) };
	struct asam_pattern hpat;
	uint16_t *stage = NULL;
	int ret = 0;

	s->c = *c;
	for (i = 0; i < 8; i++)
		if (dt_alloc(g, big[i], dt16, 4, B, H, N, d))
			return -ENOMEM;
	if (dt_alloc(g, &s->ls, f32, 3, B, H, N, 0) ||
	    dt_alloc(g, &s->ld, f32, 3, B, H, N, 0) ||
	    dt_alloc(g, &s->g, f32, 2, B, H, 0, 0) ||
	    dt_alloc(g, &s->dg, f32, 2, B, H, 0, 0))
		return -ENOMEM;
	s->hq_buf = malloc(n * 2);
	s->hk_buf = malloc(n * 2);
	stage = malloc(n * 2);
	if (!s->hq_buf || !s->hk_buf || !stage) {
		ret = -ENOMEM;
		goto out;
	}
	fill16(s->hq_buf, n, 0);
	fill16(s->hk_buf, n, 1299709);
	ret = upload(g, &s->q, s->hq_buf) ?: upload(g, &s->k, s->hk_buf);
	fill16(stage, n, 2750159);
	ret = ret ?: upload(g, &s->v, stage);
	fill16(stage, n, 15485863);
	ret = ret ?: upload(g, &s->dO, stage);
	if (ret)
		goto out;
	host_view(&s->hq, &s->q, s->hq_buf);
	host_view(&s->hk, &s->k, s->hk_buf);
	hpat = *pat;
	if (c->kind == ASAM_PATTERN_CLUSTERED) {
		pat->num_clusters = C;
		hpat.num_clusters = C;
		s->hmu_buf = malloc(sizeof(float) * H * C * d);
		if (!s->hmu_buf || dt_alloc(g, &s->mu, f32, 3, H, C, d, 0)) {
			ret = -ENOMEM;
			goto out;
		}
		for (i = 0; i < (size_t)H * C * d; i++)
			((float *)s->hmu_buf)[i] = g_poolf[(i + 777) % POOL];
		ret = upload(g, &s->mu, s->hmu_buf);
		host_view(&s->hmu, &s->mu, s->hmu_buf);
		pat->centroids = &s->mu.dl;
		hpat.centroids = &s->hmu;
	}
	if (c->kind == ASAM_PATTERN_USER_INDEX) {
		s->hix_buf = random_index(B, H, N, o->keys_per_row);
		if (!s->hix_buf || dt_alloc(g, &s->ix, i32, 4, B, H, N,
					    o->keys_per_row)) {
			ret = -ENOMEM;
			goto out;
		}
		ret = upload(g, &s->ix, s->hix_buf);
		host_view(&s->hix, &s->ix, s->hix_buf);
		pat->index = &s->ix.dl;
		hpat.index = &s->hix;
	}
	if (ret)
		goto out;
	prm.pattern = &hpat;
	fa.q = &s->hq, fa.k = &s->hk;
	s->count_ret = bench_count(&prm, &fa, 0, &s->allowed, &s->masked);
	if (s->count_ret)
		snprintf(s->count_msg, sizeof(s->count_msg), "%s",
			 asam_last_error());
out:
	free(stage);
	return ret;
}

static int cmp_float(const void *a, const void *b)
{
	float x = *(const float *)a, y = *(const float *)b;

	return (x > y) - (x < y);
}

/* run @what once per rep between two events; the median in ms */
struct call {
	struct asam_ctx *ctx;
	struct asam_attn_params *prm;
	struct asam_fwd_args *fa;
	struct asam_bwd_args *ba;	/* NULL: forward only */
};

static int call_once(const struct call *c)
{
	int ret = asam_attn_fwd(c->ctx, c->prm, c->fa);

	if (!ret && c->ba)
		ret = asam_attn_bwd(c->ctx, c->prm, c->ba);
	return ret;
}

static int time_call(struct gpu *g, const struct bench_opts *o,
		     const struct call *c, double *ms)
{
	const struct asam_cuda_driver *d = g->drv;
	float *t = calloc(o->reps, sizeof(float));
	int i, ret = 0;

	if (!t)
		return -ENOMEM;
	for (i = 0; i < o->warmup && !ret; i++)
		ret = call_once(c);
	if (!ret)
		ret = asam_cuda_err(d->cuStreamSynchronize(g->st), "warm-up");
	for (i = 0; i < o->reps && !ret; i++) {
		ret = asam_cuda_err(d->cuEventRecord(g->e0, g->st),
				    "cuEventRecord");
		ret = ret ?: call_once(c);
		ret = ret ?: asam_cuda_err(d->cuEventRecord(g->e1, g->st),
					   "cuEventRecord");
		ret = ret ?: asam_cuda_err(d->cuEventSynchronize(g->e1),
					   "cuEventSynchronize");
		ret = ret ?: asam_cuda_err(d->cuEventElapsedTime(&t[i], g->e0,
								 g->e1),
					   "cuEventElapsedTime");
	}
	if (!ret) {
		qsort(t, o->reps, sizeof(float), cmp_float);
		*ms = t[o->reps / 2];
	}
	free(t);
	return ret;
}

/* a smoke check of O: finite, and not all zero (rows are never empty) */
static int check_output(struct gpu *g, struct setup *s, char *msg,
			size_t len, bool fp16)
{
	size_t n = s->o.bytes / 2 < (1u << 20) ? s->o.bytes / 2 : 1u << 20, i;
	uint16_t *h = malloc(n * 2);
	bool nonzero = false;
	int ret;

	if (!h)
		return -ENOMEM;
	ret = asam_cuda_err(g->drv->cuMemcpyDtoH(h, s->o.p, n * 2),
			    "cuMemcpyDtoH");
	for (i = 0; i < n && !ret; i++) {
		uint16_t e = fp16 ? (h[i] >> 10) & 0x1f : (h[i] >> 7) & 0xff;

		if (e == (fp16 ? 0x1f : 0xff)) {
			snprintf(msg, len, "O[%zu] is not finite", i);
			ret = -EIO;
		}
		nonzero |= (h[i] & 0x7fff) != 0;
	}
	if (!ret && !nonzero) {
		snprintf(msg, len, "O is all zero");
		ret = -EIO;
	}
	free(h);
	return ret;
}

static int run_case(struct gpu *g, struct asam_ctx *ctx,
		    const struct bench_opts *o, struct setup *s,
		    struct asam_pattern *pat, struct bench_result *r,
		    char *msg, size_t len)
{
	bool soft = s->c.gate == BENCH_GATE_SOFT;
	bool hard = s->c.gate == BENCH_GATE_HARD;
	struct asam_attn_params prm = {
		.sz = sizeof(prm), .pattern = pat, .causal = o->causal,
		.gate_mode = soft ? ASAM_GATE_SOFT : hard ? ASAM_GATE_HARD
			     : ASAM_GATE_SPARSE,
		.hard_threshold = 0.5f,
		.flags = o->det ? ASAM_F_DETERMINISTIC : 0,
	};
	struct asam_fwd_args fa = {
		.sz = sizeof(fa), .q = &s->q.dl, .k = &s->k.dl, .v = &s->v.dl,
		.o = &s->o.dl, .lse_sparse = &s->ls.dl, .stream = g->st,
	};
	struct asam_bwd_args ba = {
		.sz = sizeof(ba), .q = &s->q.dl, .k = &s->k.dl, .v = &s->v.dl,
		.o = &s->o.dl, .lse_sparse = &s->ls.dl, .d_o = &s->dO.dl,
		.dq = &s->dq.dl, .dk = &s->dk.dl, .dv = &s->dv.dl,
		.stream = g->st,
	};
	struct call c = { .ctx = ctx, .prm = &prm, .fa = &fa };
	size_t nbh = (size_t)s->c.s.B * s->c.s.H, i;
	float *gv = malloc(sizeof(float) * nbh);
	int ret;

	if (!gv)
		return -ENOMEM;
	/* SOFT mixes both branches; HARD with g = 1 >= tau runs sparse */
	for (i = 0; i < nbh; i++)
		gv[i] = soft ? 0.5f : 1.0f;
	ret = upload(g, &s->g, gv);
	free(gv);
	if (ret)
		return ret;
	if (soft || hard) {
		fa.gate = ba.gate = &s->g.dl;
		fa.lse_dense = &s->ld.dl;
		ba.lse_dense = &s->ld.dl;
	}
	if (soft)
		ba.dgate = &s->dg.dl;
	ret = time_call(g, o, &c, &r->fwd_ms);
	if (!ret)
		ret = check_output(g, s, msg, len, o->fp16);
	if (!ret && o->bwd && !hard) {
		size_t wsb = 0;
		CUdeviceptr ws = 0;

		/* a caller's pre-allocated scratch: no allocation per call */
		ret = asam_attn_workspace_size(ctx, &prm, NULL, &ba, &wsb);
		if (!ret && wsb)
			ret = asam_cuda_err(g->drv->cuMemAlloc(&ws, wsb),
					    "cuMemAlloc");
		ba.workspace = (void *)(uintptr_t)ws;
		ba.workspace_size = wsb;
		c.ba = &ba;
		ret = ret ?: time_call(g, o, &c, &r->fwdbwd_ms);
		if (ws)
			g->drv->cuMemFree(ws);
	}
	if (ret && !msg[0])
		snprintf(msg, len, "%s", asam_last_error());
	return ret;
}

int bench_gpu_main(int argc, char **argv)
{
	static struct bench_case cases[BENCH_MAX_CASES];
	struct asam_ctx_opts co = { .sz = sizeof(co), .log_level = -1 };
	struct asam_ctx *ctx = NULL;
	struct bench_opts o;
	struct setup s = { 0 };
	struct asam_pattern pat;
	struct gpu g = { 0 };
	char err[512] = "", line[2048];
	int ncase, i, ret, failed = 0;

	ret = bench_parse(argc, argv, &o, err, sizeof(err));
	if (ret) {
		if (ret < 0)
			fprintf(stderr, "asam-bench: %s\n", err);
		bench_usage(ret < 0 ? stderr : stdout);
		return ret < 0 ? 2 : 0;
	}
	ncase = bench_plan(&o, cases, BENCH_MAX_CASES);
	ret = gpu_open(&g, o.device);
	if (ret) {
		fprintf(stderr, "asam-bench: no GPU: %s\n", asam_last_error());
		gpu_close(&g);
		return 4;
	}
	if (asam_ctx_create(&co, &ctx) || make_pool(o.fp16)) {
		fprintf(stderr, "asam-bench: %s\n", asam_last_error());
		gpu_close(&g);
		return 1;
	}
	fprintf(o.json ? stderr : stdout,
		"asam-bench --gpu: %s, CUDA driver API %d.%d, %s, "
		"%d warm-up + median of %d\n",
		g.name, g.drv->version / 1000, g.drv->version % 1000 / 10,
		o.fp16 ? "fp16" : "bf16", o.warmup,
		o.reps);
	for (i = 0; i < ncase; i++) {
		const struct bench_case *c = &cases[i];
		struct bench_result r = {
			.c = *c, .device = g.name,
			.dtype = o.fp16 ? "fp16" : "bf16", .causal = o.causal,
			.reps = o.reps, .fwd_ms = -1, .fwdbwd_ms = -1,
		};

		err[0] = 0;
		/* the tensors and the pair count are shared by the gates */
		if (!s.c.s.N || s.c.kind != c->kind ||
		    memcmp(&s.c.s, &c->s, sizeof(c->s))) {
			setup_free(&g, &s);
			asam_pattern_init(&pat, c->kind);
			ret = setup_make(&g, &o, c, &s, &pat);
			if (ret) {
				snprintf(err, sizeof(err), "setup: %s",
					 asam_last_error()[0] ?
					 asam_last_error() : strerror(-ret));
				setup_free(&g, &s);
			}
		} else {
			s.c = *c;
			ret = 0;
		}
		if (!ret && s.count_ret) {
			ret = s.count_ret;
			snprintf(err, sizeof(err), "count: %s", s.count_msg);
		}
		r.allowed = s.allowed;
		r.masked = s.masked;
		if (!ret)
			ret = run_case(&g, ctx, &o, &s, &pat, &r, err,
				       sizeof(err));
		r.status = !ret ? "ok" : ret == -EOPNOTSUPP ? "unsupported"
							     : "error";
		r.msg = err;
		failed |= ret && ret != -EOPNOTSUPP;
		/* an error may leave the stream dirty: start the next
		 * case from fresh tensors */
		if (ret && ret != -EOPNOTSUPP) {
			g.drv->cuStreamSynchronize(g.st);
			setup_free(&g, &s);
		}
		bench_print(o.json ? stderr : stdout, &r);
		if (o.json && bench_json(line, sizeof(line), &r) > 0)
			printf("%s\n", line);
		fflush(stdout);
	}
	setup_free(&g, &s);
	asam_ctx_destroy(ctx);
	gpu_close(&g);
	free(g_pool), free(g_poolf);
	return failed ? 1 : 0;
}

#else /* !CONFIG_ARCH_CUDA */

int bench_gpu_main(int argc, char **argv)
{
	struct bench_opts o;
	char err[256];
	int ret = bench_parse(argc, argv, &o, err, sizeof(err));

	if (ret) {
		if (ret < 0)
			fprintf(stderr, "asam-bench: %s\n", err);
		bench_usage(ret < 0 ? stderr : stdout);
		return ret < 0 ? 2 : 0;
	}
	fprintf(stderr, "asam-bench: --gpu needs a build with CONFIG_ARCH_CUDA\n");
	return 4;
}

#endif
