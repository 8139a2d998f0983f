// SPDX-License-Identifier: MIT
/*
 * From the caller's structs to a struct asam_problem.  Every check that
 * can fail happens here, before any backend runs, so that a refused call
 * has written nothing.  Messages name the parameter and its value.
 */
#include <inttypes.h>
#include <math.h>
#include <stdint.h>
#include <string.h>

#include <internal/err.h>
#include <internal/kconfig.h>
#include <internal/threadpool.h>
#include <internal/validate.h>

static const struct {
	const char *option;
	bool on;
} pattern_cfg[ASAM_PATTERN_NR_KINDS] = {
	[ASAM_PATTERN_DENSE] = { NULL, true },
	[ASAM_PATTERN_LOCAL] = { "CONFIG_PATTERN_LOCAL",
				 IS_ENABLED(CONFIG_PATTERN_LOCAL) },
	[ASAM_PATTERN_STRIDED] = { "CONFIG_PATTERN_STRIDED",
				   IS_ENABLED(CONFIG_PATTERN_STRIDED) },
	[ASAM_PATTERN_HIERARCHICAL] = { "CONFIG_PATTERN_HIERARCHICAL",
					IS_ENABLED(CONFIG_PATTERN_HIERARCHICAL) },
	[ASAM_PATTERN_RANDOM] = { "CONFIG_PATTERN_RANDOM",
				  IS_ENABLED(CONFIG_PATTERN_RANDOM) },
	[ASAM_PATTERN_RANDOM_ROWS] = { "CONFIG_PATTERN_RANDOM_ROWS",
				       IS_ENABLED(CONFIG_PATTERN_RANDOM_ROWS) },
	[ASAM_PATTERN_CLUSTERED] = { "CONFIG_PATTERN_CLUSTERED",
				     IS_ENABLED(CONFIG_PATTERN_CLUSTERED) },
	[ASAM_PATTERN_USER_INDEX] = { "CONFIG_PATTERN_USER_INDEX",
				      IS_ENABLED(CONFIG_PATTERN_USER_INDEX) },
};

/*
 * n contiguous entries all in [-1, nk): two compares and an or for four
 * entries (GCC vectors: SSE2 on any x86-64), no branch per entry
 */
typedef int32_t v4i32 __attribute__((vector_size(16)));

static bool index_row_ok(const int32_t *row, int64_t n, int32_t nk)
{
	const v4i32 lo = { -1, -1, -1, -1 };
	const v4i32 hi = { nk - 1, nk - 1, nk - 1, nk - 1 };
	v4i32 bad0 = { 0 }, bad1 = { 0 }, x, y;
	int64_t r;
	int32_t any = 0;

	for (r = 0; r + 8 <= n; r += 8) {
		memcpy(&x, row + r, sizeof(x));
		memcpy(&y, row + r + 4, sizeof(y));
		bad0 |= (x < lo) | (x > hi);
		bad1 |= (y < lo) | (y > hi);
	}
	bad0 |= bad1;
	for (; r < n; r++)
		any |= row[r] < -1 || row[r] >= nk;
	return !(any | bad0[0] | bad0[1] | bad0[2] | bad0[3]);
}

/* rows [begin, end) of a USER_INDEX tensor: whether each is in range */
struct index_scan {
	const struct asam_problem *p;
	const struct asam_tv *tv;
	int64_t first_bad;	/* the lowest failing row, or INT64_MAX */
};

static bool index_row_at_ok(const struct asam_problem *p,
			    const struct asam_tv *tv, int64_t row)
{
	const int64_t i = row % p->Nq, bh = row / p->Nq;
	const int64_t h = bh % p->Hkv, b = bh / p->Hkv, n = tv->shape[3];
	int64_t r;

	if (tv->stride[3] == 1)
		return index_row_ok((const int32_t *)tv->data +
				    tv_off(tv, b, h, i, 0), n, p->Nk);
	for (r = 0; r < n; r++) {
		int32_t j = ((const int32_t *)tv->data)[tv_off(tv, b, h, i, r)];

		if (j < -1 || j >= p->Nk)
			return false;
	}
	return true;
}

static void index_scan_rows(void *arg, int64_t begin, int64_t end,
			    int worker)
{
	struct index_scan *s = arg;
	int64_t row, seen;

	(void)worker;
	for (row = begin; row < end; row++) {
		if (index_row_at_ok(s->p, s->tv, row))
			continue;
		seen = __atomic_load_n(&s->first_bad, __ATOMIC_RELAXED);
		while (row < seen &&
		       !__atomic_compare_exchange_n(&s->first_bad, &seen, row,
						    false, __ATOMIC_RELAXED,
						    __ATOMIC_RELAXED))
			;
		return;	/* later rows of this chunk cannot be lower */
	}
}

/*
 * Every call reads all B Hkv Nq r entries (8 M at the benchmark's 16
 * heads, N 4096): on one thread that was a quarter of a 16-thread
 * USER_INDEX forward on the 16-core host, so large tensors are screened
 * on the context's pool, a row at a time with vector compares; the
 * lowest failing row is then walked for the message, so the error is
 * the same whatever the pool's order.
 */
#define INDEX_POOL_MIN	(1 << 16)	/* entries worth the pool */

static int index_values_ok(const struct asam_problem *p,
			   const struct asam_tv *tv, struct asam_ctx *ctx)
{
	struct index_scan s = { .p = p, .tv = tv, .first_bad = INT64_MAX };
	const int64_t rows = (int64_t)p->B * p->Hkv * p->Nq;
	struct asam_pool *pool = NULL;
	int64_t b, h, i, r;

	if (ctx && rows * tv->shape[3] >= INDEX_POOL_MIN)
		pool = asam_pool_get(ctx);
	if (pool)	/* chunks of ~32 K entries */
		asam_pool_for(pool, rows, 1 + (1 << 15) / tv->shape[3],
			      index_scan_rows, &s);
	else
		index_scan_rows(&s, 0, rows, 0);
	if (s.first_bad == INT64_MAX)
		return 0;
	i = s.first_bad % p->Nq;
	h = s.first_bad / p->Nq % p->Hkv;
	b = s.first_bad / p->Nq / p->Hkv;
	for (r = 0; r < tv->shape[3]; r++) {
		int32_t j = ((const int32_t *)tv->data)[tv_off(tv, b, h, i, r)];

		if (j < -1 || j >= p->Nk)
			return asam_err(-EINVAL,
					"pattern.index[%" PRId64 "][%" PRId64 "][%" PRId64 "][%" PRId64 "] = %d must be -1 or in [0, %d)",
					b, h, i, r, j, p->Nk);
	}
	return asam_err(-EINVAL, "pattern.index: row %" PRId64 " failed its screen but has no bad entry",
			s.first_bad);
}

/* USER_INDEX: int32 [B, Hkv, Nq, r], entries in [-1, Nk) (host-checked) */
static int check_index(const struct asam_problem *p, struct asam_ctx *ctx,
		       struct asam_tv *tv, const DLTensor *t)
{
	int ret;

	if (!t)
		return asam_err(-EINVAL,
				"pattern: index is NULL (USER_INDEX needs [B, Hkv, Nq, r])");
	ret = asam_tv_from(tv, "pattern.index", t, 4);
	if (ret)
		return ret;
	if (tv->dt != ASAM_DT_I32)
		return asam_err(-EINVAL, "pattern.index: dtype %s, expected int32",
				asam_dtype_name(tv->dt));
	if (tv->shape[0] != p->B || tv->shape[1] != p->Hkv ||
	    tv->shape[2] != p->Nq)
		return asam_err(-EINVAL,
				"pattern.index: shape [%" PRId64 ", %" PRId64 ", %" PRId64 ", %" PRId64 "], expected [B=%d, Hkv=%d, Nq=%d, r]",
				tv->shape[0], tv->shape[1], tv->shape[2],
				tv->shape[3], p->B, p->Hkv, p->Nq);
	if (tv->dev.device_type != p->dev.device_type ||
	    tv->dev.device_id != p->dev.device_id)
		return asam_err(-EINVAL, "pattern.index: on another device than q");
	if (tv->dev.device_type != kDLCPU)
		return 0;
	return index_values_ok(p, tv, ctx);
}

static int check_pattern(struct asam_problem *p, struct asam_ctx *ctx,
			 const struct asam_pattern *in)
{
	struct asam_pat *out = &p->pat;
	int Hq = p->Hq, d = p->d;
	DLDevice dev = p->dev;
	int k, ret;

	memset(out, 0, sizeof(*out));
	if (!in) {
		out->kind = ASAM_PATTERN_DENSE;
		return 0;
	}
	if (in->sz < offsetof(struct asam_pattern, centroids) +
		     sizeof(in->centroids))
		return asam_err(-EINVAL,
				"pattern: sz %zu is smaller than struct asam_pattern (%zu); call asam_pattern_init()",
				in->sz, sizeof(*in));
	if ((unsigned int)in->kind >= ASAM_PATTERN_NR_KINDS)
		return asam_err(-EINVAL, "pattern: kind %d is unknown",
				(int)in->kind);
	if (!pattern_cfg[in->kind].on)
		return asam_err(-EOPNOTSUPP,
				"pattern: %s is not built; enable %s",
				asam_pattern_name(in->kind),
				pattern_cfg[in->kind].option);
	out->kind = in->kind;

	switch (in->kind) {
	case ASAM_PATTERN_LOCAL:
		if (in->window < 1)
			return asam_err(-EINVAL,
					"pattern: window %d must be >= 1",
					in->window);
		out->radius = in->window / 2;
		break;
	case ASAM_PATTERN_STRIDED:
		if (in->stride < 1)
			return asam_err(-EINVAL,
					"pattern: stride %d must be >= 1",
					in->stride);
		if (in->radius < 0)
			return asam_err(-EINVAL,
					"pattern: radius %d must be >= 0",
					in->radius);
		out->stride = in->stride;
		out->radius = in->radius;
		break;
	case ASAM_PATTERN_HIERARCHICAL:
		if (in->num_scales < 1 || in->num_scales > ASAM_MAX_SCALES)
			return asam_err(-EINVAL,
					"pattern: num_scales %d must be in [1, %d]",
					in->num_scales, ASAM_MAX_SCALES);
		out->nscales = in->num_scales;
		for (k = 0; k < in->num_scales; k++) {
			if (in->scales[k] < 1)
				return asam_err(-EINVAL,
						"pattern: scales[%d] = %d must be >= 1",
						k, in->scales[k]);
			out->scales[k] = in->scales[k];
		}
		for (k = 0; in->scale_weights && k < Hq * in->num_scales; k++) {
			float w = in->scale_weights[k];

			if (!isfinite(w) || w < 0 || w > 1)
				return asam_err(-EINVAL,
						"pattern: scale_weights[%d][%d] = %g must be in [0, 1]",
						k / in->num_scales,
						k % in->num_scales, w);
		}
		out->weights = in->scale_weights;
		break;
	case ASAM_PATTERN_RANDOM:
	case ASAM_PATTERN_RANDOM_ROWS:
		if (in->keys_per_row < 1)
			return asam_err(-EINVAL,
					"pattern: keys_per_row %d must be >= 1",
					in->keys_per_row);
		out->r = in->keys_per_row;
		out->seed = in->seed;
		break;
	case ASAM_PATTERN_CLUSTERED:
		if (in->num_clusters < 1 || in->num_clusters > 256)
			return asam_err(-EINVAL,
					"pattern: num_clusters %d must be in [1, 256]",
					in->num_clusters);
		if ((unsigned int)in->cluster_mode > ASAM_CLUSTER_SOFT)
			return asam_err(-EINVAL,
					"pattern: cluster_mode %d is unknown",
					(int)in->cluster_mode);
		if (in->cluster_mode == ASAM_CLUSTER_SOFT &&
		    (!isfinite(in->cluster_temp) || in->cluster_temp == 0))
			return asam_err(-EINVAL,
					"pattern: cluster_temp %g must be finite and non-zero",
					in->cluster_temp);
		if (!isfinite(in->cluster_threshold))
			return asam_err(-EINVAL,
					"pattern: cluster_threshold %g must be finite",
					in->cluster_threshold);
		if (!in->centroids)
			return asam_err(-EINVAL,
					"pattern: centroids is NULL (CLUSTERED needs [Hq, C, d])");
		ret = asam_tv_from(&out->centroids, "pattern.centroids",
				   in->centroids, 3);
		if (ret)
			return ret;
		if (out->centroids.shape[0] != Hq ||
		    out->centroids.shape[1] != in->num_clusters ||
		    out->centroids.shape[2] != d)
			return asam_err(-EINVAL,
					"pattern.centroids: shape [%" PRId64 ", %" PRId64 ", %" PRId64 "], expected [Hq=%d, C=%d, d=%d]",
					out->centroids.shape[0],
					out->centroids.shape[1],
					out->centroids.shape[2], Hq,
					in->num_clusters, d);
		if (out->centroids.dt == ASAM_DT_I32)
			return asam_err(-EINVAL,
					"pattern.centroids: dtype int32 is not a float type");
		if (out->centroids.dev.device_type != dev.device_type ||
		    out->centroids.dev.device_id != dev.device_id)
			return asam_err(-EINVAL,
					"pattern.centroids: on another device than q");
		out->C = in->num_clusters;
		out->cmode = in->cluster_mode;
		out->temp = in->cluster_temp;
		out->thresh = in->cluster_threshold;
		break;
	case ASAM_PATTERN_USER_INDEX:
		if (in->sz < offsetof(struct asam_pattern, index) +
			     sizeof(in->index))
			return asam_err(-EINVAL,
					"pattern: sz %zu has no index field (USER_INDEX)",
					in->sz);
		ret = check_index(p, ctx, &out->index, in->index);
		if (ret)
			return ret;
		out->r = out->index.shape[3];
		break;
	default:
		break;
	}
	return 0;
}

static int check_params(struct asam_problem *p,
			const struct asam_attn_params *in)
{
	if (!in)
		return asam_err(-EINVAL, "params is NULL");
	if (in->sz < offsetof(struct asam_attn_params, flags) +
		     sizeof(in->flags))
		return asam_err(-EINVAL,
				"params: sz %zu is smaller than struct asam_attn_params (%zu)",
				in->sz, sizeof(*in));
	if ((unsigned int)in->gate_mode > ASAM_GATE_HARD)
		return asam_err(-EINVAL, "params: gate_mode %d is unknown",
				(int)in->gate_mode);
	if (in->gate_mode == ASAM_GATE_HARD &&
	    !(in->hard_threshold >= 0 && in->hard_threshold <= 1))
		return asam_err(-EINVAL,
				"params: hard_threshold %g must be in [0, 1]",
				in->hard_threshold);
	if (!isfinite(in->scale) || in->scale < 0)
		return asam_err(-EINVAL,
				"params: scale %g must be finite and >= 0 (0 means 1/sqrt(d))",
				in->scale);
	if (in->flags & ~(ASAM_F_DETERMINISTIC | ASAM_F_REFERENCE))
		return asam_err(-EINVAL, "params: unknown flags 0x%x",
				in->flags & ~(ASAM_F_DETERMINISTIC |
					      ASAM_F_REFERENCE));
	p->gate_mode = in->gate_mode;
	p->hard_tau = in->hard_threshold;
	p->causal = in->causal;
	p->flags = in->flags;
	return 0;
}

static bool same_dev(DLDevice a, DLDevice b)
{
	return a.device_type == b.device_type && a.device_id == b.device_id;
}

/* A [B,H,N,d] view: rank 4, @want_dt (NONE: any float), p's device. */
static int check_bhnd(const struct asam_problem *p, struct asam_tv *tv,
		      const char *name, const DLTensor *t, int64_t H,
		      int64_t N, bool out)
{
	int ret = asam_tv_from(tv, name, t, 4);
	int i;

	if (ret || !t)
		return ret;
	if (tv->shape[0] != p->B || tv->shape[1] != H || tv->shape[2] != N ||
	    tv->shape[3] != p->d)
		return asam_err(-EINVAL,
				"%s: shape [%" PRId64 ", %" PRId64 ", %" PRId64 ", %" PRId64 "], expected [%d, %" PRId64 ", %" PRId64 ", %d]",
				name, tv->shape[0], tv->shape[1], tv->shape[2],
				tv->shape[3], p->B, H, N, p->d);
	if (tv->dt != p->dt)
		return asam_err(-EINVAL, "%s: dtype %s differs from q's %s",
				name, asam_dtype_name(tv->dt),
				asam_dtype_name(p->dt));
	if (!same_dev(tv->dev, p->dev))
		return asam_err(-EINVAL, "%s: on another device than q", name);
	for (i = 0; out && i < 4; i++)
		if (tv->stride[i] == 0 && tv->shape[i] > 1)
			return asam_err(-EINVAL,
					"%s: strides[%d] = 0 would make outputs overlap",
					name, i);
	return 0;
}

/* A small fp32/int32 tensor of the given shape, on p's device. */
static int check_small(const struct asam_problem *p, struct asam_tv *tv,
		       const char *name, const DLTensor *t, int ndim,
		       const int64_t *shape, enum asam_dtype dt, bool f64_ok,
		       bool out)
{
	int ret = asam_tv_from(tv, name, t, ndim);
	int i;

	if (ret || !t)
		return ret;
	for (i = 0; i < ndim; i++)
		if (tv->shape[i] != shape[i])
			return asam_err(-EINVAL,
					"%s: shape[%d] = %" PRId64 ", expected %" PRId64,
					name, i, tv->shape[i], shape[i]);
	if (tv->dt != dt && !(f64_ok && tv->dt == ASAM_DT_F64))
		return asam_err(-EINVAL, "%s: dtype %s, expected %s", name,
				asam_dtype_name(tv->dt), asam_dtype_name(dt));
	if (!same_dev(tv->dev, p->dev))
		return asam_err(-EINVAL, "%s: on another device than q", name);
	for (i = 0; out && i < ndim; i++)
		if (tv->stride[i] == 0 && tv->shape[i] > 1)
			return asam_err(-EINVAL,
					"%s: strides[%d] = 0 would make outputs overlap",
					name, i);
	return 0;
}

static int check_lengths(const struct asam_problem *p,
			 const struct asam_tv *tv, const char *name, int N)
{
	int b;

	if (!tv->data || tv->dev.device_type != kDLCPU)
		return 0;
	for (b = 0; b < p->B; b++) {
		int32_t n = ((const int32_t *)tv->data)[b * tv->stride[0]];

		if (n < 0 || n > N)
			return asam_err(-EINVAL, "%s[%d] = %d must be in [0, %d]",
					name, b, n, N);
	}
	return 0;
}

static int check_gate_values(const struct asam_problem *p)
{
	const struct asam_tv *g = &p->gate;
	int b, h;

	if (!g->data || g->dev.device_type != kDLCPU)
		return 0;
	for (b = 0; b < p->B; b++)
		for (h = 0; h < p->Hq; h++) {
			double x = tv_get(g, tv_off(g, b, h, 0, 0));

			if (!(x >= 0 && x <= 1))
				return asam_err(-EINVAL,
						"gate[%d][%d] = %g must be in [0, 1]",
						b, h, x);
		}
	return 0;
}

static int check_dtype_built(const struct asam_problem *p)
{
	if (p->dt == ASAM_DT_F16 && !IS_ENABLED(CONFIG_DTYPE_FP16))
		return asam_err(-EOPNOTSUPP,
				"q: float16 is not built; enable CONFIG_DTYPE_FP16");
	if (p->dt == ASAM_DT_BF16 && !IS_ENABLED(CONFIG_DTYPE_BF16))
		return asam_err(-EOPNOTSUPP,
				"q: bfloat16 is not built; enable CONFIG_DTYPE_BF16");
	if (p->dt == ASAM_DT_I32)
		return asam_err(-EINVAL, "q: dtype int32 is not a float type");
	return 0;
}

/* The part shared by forward, backward and the statistics. */
static int check_qkv(struct asam_problem *p, const DLTensor *q,
		     const DLTensor *k, const DLTensor *v, bool need_v)
{
	int ret;

	if (!q || !k || (need_v && !v))
		return asam_err(-EINVAL, "%s is NULL",
				!q ? "q" : !k ? "k" : "v");
	ret = asam_tv_from(&p->q, "q", q, 4);
	if (ret)
		return ret;
	p->dt = p->q.dt;
	p->dev = p->q.dev;
	ret = check_dtype_built(p);
	if (ret)
		return ret;
	if (p->dev.device_type != kDLCPU && p->dev.device_type != kDLCUDA)
		return asam_err(-EINVAL,
				"q: device type %d is neither CPU nor CUDA",
				(int)p->dev.device_type);
	p->B = p->q.shape[0];
	p->Hq = p->q.shape[1];
	p->Nq = p->q.shape[2];
	p->d = p->q.shape[3];
	/* k's own checks first, so that Hkv and Nk are known to be sane */
	ret = asam_tv_from(&p->k, "k", k, 4);
	if (ret)
		return ret;
	p->Hkv = p->k.shape[1];
	p->Nk = p->k.shape[2];
	if (p->Hq % p->Hkv)
		return asam_err(-EINVAL,
				"k: Hq %% Hkv != 0 (Hq = %d, Hkv = %d)",
				p->Hq, p->Hkv);
	ret = check_bhnd(p, &p->k, "k", k, p->Hkv, p->Nk, false);
	if (!ret && need_v)
		ret = check_bhnd(p, &p->v, "v", v, p->Hkv, p->Nk, false);
	if (ret)
		return ret;
	/* int offsets inside a (b, h) slice must fit in 32 bits for kernels */
	if ((int64_t)p->Nq * p->d > INT32_MAX ||
	    (int64_t)p->Nk * p->d > INT32_MAX)
		return asam_err(-EOVERFLOW, "q, k: N * d exceeds 2^31-1");
	p->scale = 0;
	return 0;
}

static int check_common(struct asam_problem *p, struct asam_ctx *ctx,
			const struct asam_attn_params *params,
			const DLTensor *gate, const DLTensor *len_q,
			const DLTensor *len_k)
{
	int64_t bh[2] = { p->B, p->Hq }, b1[1] = { p->B };
	int ret;

	ret = check_pattern(p, ctx, params->pattern);
	if (ret)
		return ret;
	p->scale = params->scale > 0 ? params->scale : 1.0 / sqrt(p->d);
	if ((p->gate_mode == ASAM_GATE_SOFT ||
	     p->gate_mode == ASAM_GATE_HARD) && !gate)
		return asam_err(-EINVAL, "gate is NULL (%s mode needs [B, Hq])",
				p->gate_mode == ASAM_GATE_SOFT ? "SOFT" : "HARD");
	ret = check_small(p, &p->gate, "gate", gate, 2, bh, ASAM_DT_F32,
			  false, false);
	if (!ret)
		ret = check_gate_values(p);
	if (!ret)
		ret = check_small(p, &p->len_q, "len_q", len_q, 1, b1,
				  ASAM_DT_I32, false, false);
	if (!ret)
		ret = check_lengths(p, &p->len_q, "len_q", p->Nq);
	if (!ret)
		ret = check_small(p, &p->len_k, "len_k", len_k, 1, b1,
				  ASAM_DT_I32, false, false);
	if (!ret)
		ret = check_lengths(p, &p->len_k, "len_k", p->Nk);
	return ret;
}

/*
 * The start every entry shares: the parameters, then the args struct,
 * which must be large enough to hold its last field (@need bytes).
 */
static int check_head(struct asam_problem *p,
		      const struct asam_attn_params *params, const void *args,
		      size_t sz, size_t need, const char *type)
{
	int ret;

	memset(p, 0, sizeof(*p));
	ret = check_params(p, params);
	if (ret)
		return ret;
	if (!args)
		return asam_err(-EINVAL, "args is NULL");
	if (sz < need)
		return asam_err(-EINVAL,
				"args: sz %zu is smaller than struct %s (%zu)",
				sz, type, need);
	return 0;
}

#define ARGS_NEED(type) (offsetof(type, stream) + sizeof(void *))

int asam_problem_fwd(struct asam_problem *p, struct asam_ctx *ctx,
		     const struct asam_attn_params *params,
		     const struct asam_fwd_args *a)
{
	int64_t bhn[3];
	int ret;

	ret = check_head(p, params, a, a ? a->sz : 0,
			 ARGS_NEED(struct asam_fwd_args), "asam_fwd_args");
	if (ret)
		return ret;
	ret = check_qkv(p, a->q, a->k, a->v, true);
	if (!ret)
		ret = check_common(p, ctx, params, a->gate, a->len_q,
				   a->len_k);
	if (ret)
		return ret;
	if (!a->o)
		return asam_err(-EINVAL, "o is NULL");
	ret = check_bhnd(p, &p->o, "o", a->o, p->Hq, p->Nq, true);
	if (ret)
		return ret;
	bhn[0] = p->B, bhn[1] = p->Hq, bhn[2] = p->Nq;
	ret = check_small(p, &p->lse_s, "lse_sparse", a->lse_sparse, 3, bhn,
			  ASAM_DT_F32, true, true);
	if (!ret)
		ret = check_small(p, &p->lse_d, "lse_dense", a->lse_dense, 3,
				  bhn, ASAM_DT_F32, true, true);
	if (ret)
		return ret;
	p->workspace = a->workspace;
	p->workspace_size = a->workspace_size;
	p->stream = a->stream;
	return 0;
}

int asam_problem_bwd(struct asam_problem *p, struct asam_ctx *ctx,
		     const struct asam_attn_params *params,
		     const struct asam_bwd_args *a)
{
	int64_t bhn[3], bh[2];
	int ret;

	ret = check_head(p, params, a, a ? a->sz : 0,
			 ARGS_NEED(struct asam_bwd_args), "asam_bwd_args");
	if (ret)
		return ret;
	if (p->gate_mode == ASAM_GATE_HARD)
		return asam_err(-EINVAL,
				"params: gate_mode HARD has no backward (it is an inference approximation); use SOFT");
	p->bwd = true;
	ret = check_qkv(p, a->q, a->k, a->v, true);
	if (!ret)
		ret = check_common(p, ctx, params, a->gate, a->len_q,
				   a->len_k);
	if (ret)
		return ret;
	if (!a->o || !a->d_o || !a->dq || !a->dk || !a->dv)
		return asam_err(-EINVAL, "%s is NULL",
				!a->o ? "o" : !a->d_o ? "d_o" : !a->dq ? "dq" :
				!a->dk ? "dk" : "dv");
	ret = check_bhnd(p, &p->o, "o", a->o, p->Hq, p->Nq, false);
	if (!ret)
		ret = check_bhnd(p, &p->d_o, "d_o", a->d_o, p->Hq, p->Nq, false);
	if (!ret)
		ret = check_bhnd(p, &p->dq, "dq", a->dq, p->Hq, p->Nq, true);
	if (!ret)
		ret = check_bhnd(p, &p->dk, "dk", a->dk, p->Hkv, p->Nk, true);
	if (!ret)
		ret = check_bhnd(p, &p->dv, "dv", a->dv, p->Hkv, p->Nk, true);
	if (ret)
		return ret;
	bhn[0] = p->B, bhn[1] = p->Hq, bhn[2] = p->Nq;
	if (problem_needs_sparse(p) && !a->lse_sparse)
		return asam_err(-EINVAL,
				"lse_sparse is NULL (the sparse branch's log-sum-exp from the forward)");
	if (problem_needs_dense(p) && !a->lse_dense)
		return asam_err(-EINVAL,
				"lse_dense is NULL (the dense branch's log-sum-exp from the forward)");
	ret = check_small(p, &p->lse_s, "lse_sparse",
			  problem_needs_sparse(p) ? a->lse_sparse : NULL, 3,
			  bhn, ASAM_DT_F32, true, false);
	if (!ret)
		ret = check_small(p, &p->lse_d, "lse_dense",
				  problem_needs_dense(p) ? a->lse_dense : NULL,
				  3, bhn, ASAM_DT_F32, true, false);
	if (ret)
		return ret;
	if (p->gate_mode == ASAM_GATE_SOFT) {
		bh[0] = p->B, bh[1] = p->Hq;
		if (!a->dgate)
			return asam_err(-EINVAL,
					"dgate is NULL (SOFT mode returns dg [B, Hq])");
		ret = check_small(p, &p->dgate, "dgate", a->dgate, 2, bh,
				  ASAM_DT_F32, true, true);
		if (ret)
			return ret;
	}
	p->workspace = a->workspace;
	p->workspace_size = a->workspace_size;
	p->stream = a->stream;
	return 0;
}

int asam_problem_stats(struct asam_problem *p, struct asam_ctx *ctx,
		       const struct asam_attn_params *params,
		       const struct asam_fwd_args *a)
{
	int ret;

	ret = check_head(p, params, a, a ? a->sz : 0,
			 ARGS_NEED(struct asam_fwd_args), "asam_fwd_args");
	if (ret)
		return ret;
	/* the gate does not change which pairs are allowed */
	p->gate_mode = ASAM_GATE_SPARSE;
	ret = check_qkv(p, a->q, a->k, NULL, false);
	if (!ret)
		ret = check_common(p, ctx, params, NULL, a->len_q, a->len_k);
	return ret;
}
