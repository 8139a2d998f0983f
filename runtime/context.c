// SPDX-License-Identifier: MIT
/*
 * Contexts: probe every backend this build enables (the generated table),
 * keep the ones that answer, release them in reverse order.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <internal/ctx.h>
#include <internal/err.h>
#include <internal/log.h>
#include <internal/threadpool.h>
#include <internal/topology.h>

#define BACKEND_ENTRY(n) &asam_backend_##n##_ops,
static const struct asam_backend_ops *const backend_table[] = {
	ASAM_FOR_EACH_BACKEND(BACKEND_ENTRY)
};
#undef BACKEND_ENTRY

bool asam_ctx_device_allowed(const struct asam_ctx *ctx, const char *type,
			     int id)
{
	char want[32], *list, *tok, *save;
	size_t tl = strlen(type);
	bool ok = false;

	if (!ctx->devices)
		return true;
	snprintf(want, sizeof(want), "%s:%d", type, id);
	list = strdup(ctx->devices);
	if (!list)
		return true;
	for (tok = strtok_r(list, ",", &save); tok && !ok;
	     tok = strtok_r(NULL, ",", &save)) {
		/* "cuda" allows every cuda device, "cuda:1" just one */
		ok = !strcmp(tok, want) || !strcmp(tok, type) ||
		     (!strncmp(tok, type, tl) && !tok[tl]);
	}
	free(list);
	return ok;
}

static int check_devices(const char *s)
{
	const char *p = s;

	while (*p) {
		size_t n = strcspn(p, ",");

		if (!(n == 3 && !strncmp(p, "cpu", 3)) &&
		    !(n >= 4 && !strncmp(p, "cuda", 4) &&
		      (n == 4 || (p[4] == ':' && n > 5 &&
				  strspn(p + 5, "0123456789") == n - 5))))
			return asam_err(-EINVAL,
					"devices: \"%.*s\" in \"%s\" is not cpu, cuda or cuda:N",
					(int)n, p, s);
		p += n;
		if (*p == ',')
			p++;
	}
	return 0;
}

static void ctx_remove_backends(struct asam_ctx *ctx)
{
	while (ctx->nr_backends > 0) {
		struct asam_backend *be = &ctx->backends[--ctx->nr_backends];

		if (be->ops->remove)
			be->ops->remove(be);
	}
}

__public int asam_ctx_create(const struct asam_ctx_opts *opts,
			     struct asam_ctx **out)
{
	const char *devices;
	struct asam_ctx *ctx;
	unsigned int i;
	int lvl, ret;

	asam_err_clear();
	if (!out)
		return asam_err(-EINVAL, "asam_ctx_create: out is NULL");
	if (opts && opts->sz < sizeof(size_t))
		return asam_err(-EINVAL, "asam_ctx_create: opts->sz %zu is too small",
				opts->sz);
	lvl = OPTS_GET(opts, struct asam_ctx_opts, log_level, -1);
	if (lvl < -1 || lvl > ASAM_LOG_DEBUG)
		return asam_err(-EINVAL,
				"asam_ctx_create: log_level %d must be in [-1, 3]",
				lvl);
	devices = OPTS_GET(opts, struct asam_ctx_opts, devices, NULL);
	if (!devices)
		devices = getenv("ASAM_DEVICES");
	if (devices && *devices) {
		ret = check_devices(devices);
		if (ret) {
			asam_err_prefix("asam_ctx_create");
			return ret;
		}
	}
	if (lvl >= 0)
		asam_log_set_level(lvl);

	ctx = calloc(1, sizeof(*ctx));
	if (!ctx)
		return asam_err(-ENOMEM, "asam_ctx_create: out of memory");
	ctx->num_threads = OPTS_GET(opts, struct asam_ctx_opts, num_threads, 0);
	if (devices && *devices) {
		ctx->devices = strdup(devices);
		if (!ctx->devices) {
			ret = asam_err(-ENOMEM, "asam_ctx_create: out of memory");
			goto err_free_ctx;
		}
	}

	/* best effort: backends cope with no topology */
	ctx->topo = asam_topo_get();
	if (IS_ERR(ctx->topo)) {
		pr_warn("topology: %s", asam_last_error());
		ctx->topo = NULL;
	}

	for (i = 0; i < ARRAY_SIZE(backend_table); i++) {
		const struct asam_backend_ops *ops = backend_table[i];
		struct asam_backend *be = &ctx->backends[ctx->nr_backends];

		if (ops->api_version != ASAM_BACKEND_API) {
			pr_warn("backend %s: API version %d, expected %d; skipped",
				ops->name, ops->api_version, ASAM_BACKEND_API);
			continue;
		}
		be->ops = ops;
		be->ctx = ctx;
		be->priv = NULL;
		ret = ops->probe ? ops->probe(be) : 0;
		if (ret) {
			pr_info("backend %s: not available (%s): %s", ops->name,
				asam_strerror(ret), asam_last_error());
			continue;
		}
		pr_debug("backend %s: ready", ops->name);
		ctx->nr_backends++;
	}
	asam_err_clear();
	*out = ctx;
	return 0;

err_free_ctx:
	free(ctx);
	return ret;
}

__public void asam_ctx_destroy(struct asam_ctx *ctx)
{
	if (!ctx)
		return;
	ctx_remove_backends(ctx);
	asam_pool_put(ctx);	/* a backend may have started it; put is idempotent */
	asam_topo_put(ctx->topo);
	free(ctx->devices);
	free(ctx);
}

__public int asam_ctx_backends(const struct asam_ctx *ctx, char *buf,
			       size_t len)
{
	size_t used = 0;
	int i;

	asam_err_clear();
	if (!ctx || !buf || !len)
		return asam_err(-EINVAL, "asam_ctx_backends: %s",
				!ctx ? "ctx is NULL" : !buf ? "buf is NULL"
							    : "len is 0");
	buf[0] = '\0';
	for (i = 0; i < ctx->nr_backends; i++) {
		int n = snprintf(buf + used, len - used, "%s%s", i ? "," : "",
				 ctx->backends[i].ops->name);

		if (n < 0 || (size_t)n >= len - used)
			return asam_err(-ENOSPC,
					"asam_ctx_backends: len %zu is too small",
					len);
		used += n;
	}
	return 0;
}
