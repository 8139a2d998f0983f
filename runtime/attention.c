// SPDX-License-Identifier: MIT
/*
 * The public entry points: validate into a struct asam_problem, pick the
 * first probed backend that serves the tensors' device and says it
 * supports the problem, run it.  Every failure leaves a message naming the
 * function and the parameter.
 */
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include <internal/ctx.h>
#include <internal/err.h>
#include <internal/kconfig.h>
#include <internal/log.h>
#include <internal/pattern.h>
#include <internal/validate.h>

static const char *const pattern_names[ASAM_PATTERN_NR_KINDS] = {
	[ASAM_PATTERN_DENSE] = "dense",
	[ASAM_PATTERN_LOCAL] = "local",
	[ASAM_PATTERN_STRIDED] = "strided",
	[ASAM_PATTERN_HIERARCHICAL] = "hierarchical",
	[ASAM_PATTERN_RANDOM] = "random",
	[ASAM_PATTERN_RANDOM_ROWS] = "random_rows",
	[ASAM_PATTERN_CLUSTERED] = "clustered",
	[ASAM_PATTERN_USER_INDEX] = "user_index",
};

__public const char *asam_pattern_name(enum asam_pattern_kind kind)
{
	return (unsigned int)kind < ASAM_PATTERN_NR_KINDS ?
	       pattern_names[kind] : "?";
}

__public int asam_pattern_init(struct asam_pattern *p,
			       enum asam_pattern_kind kind)
{
	asam_err_clear();
	if (!p)
		return asam_err(-EINVAL, "asam_pattern_init: p is NULL");
	if ((unsigned int)kind >= ASAM_PATTERN_NR_KINDS)
		return asam_err(-EINVAL, "asam_pattern_init: kind %d is unknown",
				(int)kind);
	/* The defaults are the original's (SPEC 3). */
	*p = (struct asam_pattern){
		.sz = sizeof(*p),
		.kind = kind,
		.window = 128,
		.stride = 32,
		.radius = 16,
		.num_scales = 3,
		.scales = { 4, 16, 64 },
		.keys_per_row = 128,
		.seed = 42,
		.num_clusters = 32,
		.cluster_mode = ASAM_CLUSTER_ARGMAX,
		.cluster_temp = 0.5f,
		.cluster_threshold = 0.1f,
	};
	return 0;
}

/* The first backend for the problem's device that supports it. */
static struct asam_backend *pick_backend(struct asam_ctx *ctx,
					 const struct asam_problem *p)
{
	bool ref_only = p->flags & ASAM_F_REFERENCE;
	bool seen = false;
	int i, ret = -ENODEV;

	for (i = 0; i < ctx->nr_backends; i++) {
		struct asam_backend *be = &ctx->backends[i];

		if (be->ops->dev_type != p->dev.device_type)
			continue;
		if (ref_only && strcmp(be->ops->name, "cpu_ref"))
			continue;
		seen = true;
		ret = backend_supports(be, p);
		if (!ret)
			return be;
		pr_debug("backend %s declines: %s", be->ops->name,
			 asam_last_error());
	}
	if (!seen)
		ret = asam_err(ref_only ? -EOPNOTSUPP : -ENODEV,
			       "no %sbackend for %s:%d tensors in this context%s",
			       ref_only ? "reference " : "",
			       p->dev.device_type == kDLCUDA ? "cuda" : "cpu",
			       p->dev.device_id,
			       p->dev.device_type == kDLCUDA &&
			       !IS_ENABLED(CONFIG_ARCH_CUDA) ?
			       " (enable CONFIG_ARCH_CUDA)" : "");
	return ERR_PTR(ret);
}

/* Run @p on the first backend that takes it, forward or backward. */
static int dispatch(struct asam_ctx *ctx, const struct asam_problem *p)
{
	struct asam_backend *be = pick_backend(ctx, p);

	if (IS_ERR(be))
		return PTR_ERR(be);
	return p->bwd ? be->ops->bwd(be, p) : be->ops->fwd(be, p);
}

__public int asam_attn_fwd(struct asam_ctx *ctx,
			   const struct asam_attn_params *params,
			   const struct asam_fwd_args *args)
{
	struct asam_problem p;
	int ret;

	asam_err_clear();
	if (!ctx)
		return asam_err(-EINVAL, "asam_attn_fwd: ctx is NULL");
	ret = asam_problem_fwd(&p, ctx, params, args);
	if (!ret)
		ret = dispatch(ctx, &p);
	if (ret)
		asam_err_prefix("asam_attn_fwd");
	return ret;
}

__public int asam_attn_bwd(struct asam_ctx *ctx,
			   const struct asam_attn_params *params,
			   const struct asam_bwd_args *args)
{
	struct asam_problem p;
	int ret;

	asam_err_clear();
	if (!ctx)
		return asam_err(-EINVAL, "asam_attn_bwd: ctx is NULL");
	ret = asam_problem_bwd(&p, ctx, params, args);
	if (!ret)
		ret = dispatch(ctx, &p);
	if (ret)
		asam_err_prefix("asam_attn_bwd");
	return ret;
}

__public int asam_attn_workspace_size(struct asam_ctx *ctx,
				      const struct asam_attn_params *params,
				      const struct asam_fwd_args *fwd,
				      const struct asam_bwd_args *bwd,
				      size_t *bytes)
{
	struct asam_backend *be;
	struct asam_problem p;
	int ret;

	asam_err_clear();
	if (!ctx || !bytes || (!fwd == !bwd))
		return asam_err(-EINVAL, "asam_attn_workspace_size: %s",
				!ctx ? "ctx is NULL" : !bytes ? "bytes is NULL" :
				"exactly one of fwd and bwd must be given");
	ret = fwd ? asam_problem_fwd(&p, ctx, params, fwd)
		  : asam_problem_bwd(&p, ctx, params, bwd);
	if (ret)
		goto out;
	be = pick_backend(ctx, &p);
	if (IS_ERR(be)) {
		ret = PTR_ERR(be);
		goto out;
	}
	ret = backend_workspace_size(be, &p, bytes);
out:
	if (ret)
		asam_err_prefix("asam_attn_workspace_size");
	return ret;
}

/*
 * Statistics are computed on the host from the pattern definition itself
 * (runtime/pattern.c), so they hold for every backend.  CLUSTERED reads q
 * and k, which must then be host-readable.
 */
__public int asam_pattern_stats(struct asam_ctx *ctx,
				const struct asam_attn_params *params,
				const struct asam_fwd_args *args,
				struct asam_pattern_stats *st)
{
	uint64_t allowed = 0, masked = 0;
	struct asam_pat_plan *pl = NULL;
	struct asam_problem p;
	uint8_t *row = NULL;
	int b, h, ret;
	int64_t i, j;

	asam_err_clear();
	if (!ctx || !st)
		return asam_err(-EINVAL, "asam_pattern_stats: %s is NULL",
				!ctx ? "ctx" : "stats");
	if (st->sz < offsetof(struct asam_pattern_stats, per_head) +
		     sizeof(st->per_head))
		return asam_err(-EINVAL,
				"asam_pattern_stats: stats->sz %zu is too small",
				st->sz);
	ret = asam_problem_stats(&p, ctx, params, args);
	if (ret)
		goto out;
	/* q and k values (CLUSTERED) and lengths are read on the host */
	if ((p.pat.kind == ASAM_PATTERN_CLUSTERED || p.len_q.data ||
	     p.len_k.data) && p.dev.device_type != kDLCPU) {
		ret = asam_err(-EOPNOTSUPP,
			       "statistics with CLUSTERED or lengths need host tensors");
		goto out;
	}
	pl = asam_pat_plan_create(&p);
	if (IS_ERR(pl)) {
		ret = PTR_ERR(pl);
		pl = NULL;
		goto out;
	}
	row = malloc(p.Nk);
	if (!row) {
		ret = asam_err(-ENOMEM, "out of memory");
		goto out;
	}
	for (h = 0; h < p.Hq; h++) {
		uint64_t head = 0;

		for (b = 0; b < p.B; b++) {
			ret = asam_pat_plan_bh(pl, b, h);
			if (ret)
				goto out;
			for (i = 0; i < p.Nq; i++) {
				int64_t lim = problem_key_limit(&p, b, i);

				if (!lim)
					continue;
				asam_pat_row(pl, i, row);
				masked += lim;
				for (j = 0; j < lim; j++)
					head += row[j];
			}
		}
		if (st->per_head)
			st->per_head[h] = head;
		allowed += head;
	}
	st->allowed = allowed;
	st->masked = masked;
	st->density = masked ? (double)allowed / masked : 0;
out:
	free(row);
	asam_pat_plan_destroy(pl);
	if (ret)
		asam_err_prefix("asam_pattern_stats");
	return ret;
}

__public int asam_cluster_update(struct asam_ctx *ctx,
				 const struct asam_pattern *pattern,
				 const DLTensor *q, const DLTensor *k,
				 float decay)
{
	struct asam_attn_params params = {
		.sz = sizeof(params),
		.pattern = pattern,
		.gate_mode = ASAM_GATE_SPARSE,
	};
	struct asam_fwd_args args = { .sz = sizeof(args), .q = q, .k = k };
	struct asam_backend *be;
	struct asam_problem p;
	int ret, i;

	asam_err_clear();
	if (!ctx)
		return asam_err(-EINVAL, "asam_cluster_update: ctx is NULL");
	if (!pattern || pattern->kind != ASAM_PATTERN_CLUSTERED) {
		ret = asam_err(-EINVAL, "pattern: %s",
			       pattern ? "kind is not CLUSTERED" : "is NULL");
		goto out;
	}
	if (!(decay >= 0 && decay < 1)) {
		ret = asam_err(-EINVAL, "decay %g must be in [0, 1)", decay);
		goto out;
	}
	ret = asam_problem_stats(&p, ctx, &params, &args);
	if (ret)
		goto out;
	if (p.pat.centroids.dt == ASAM_DT_I32) {
		ret = asam_err(-EINVAL, "pattern.centroids: not a float type");
		goto out;
	}
	for (i = 0; i < 3; i++)
		if (!p.pat.centroids.stride[i] && p.pat.centroids.shape[i] > 1) {
			ret = asam_err(-EINVAL,
				       "pattern.centroids: strides[%d] = 0, cannot be written",
				       i);
			goto out;
		}
	ret = -ENODEV;
	for (i = 0; i < ctx->nr_backends; i++) {
		be = &ctx->backends[i];
		if (be->ops->dev_type != p.dev.device_type ||
		    !be->ops->cluster_update)
			continue;
		ret = backend_cluster_update(be, &p, decay);
		if (ret != -EOPNOTSUPP)
			break;
	}
	if (ret == -ENODEV)
		ret = asam_err(-ENODEV, "no backend updates clusters on this device");
out:
	if (ret)
		asam_err_prefix("asam_cluster_update");
	return ret;
}
