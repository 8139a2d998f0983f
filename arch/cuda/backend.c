// SPDX-License-Identifier: MIT
/*
 * The "cuda" backend: at context creation, load the driver, enumerate the
 * GPUs the context may use, describe each and retain its primary context;
 * at removal, release them.  The attention work is in attn.c.
 */
#include <stdlib.h>
#include <string.h>

#include <internal/ctx.h>
#include <internal/cuda.h>
#include <internal/jit.h>
#include <internal/err.h>
#include <internal/log.h>

#include "attn_clus.h"

struct asam_cuda_device *asam_cuda_device_of(struct asam_backend *be,
					     int ordinal)
{
	struct asam_cuda_backend *cb = be ? be->priv : NULL;
	int i;

	if (!cb)
		return NULL;
	for (i = 0; i < cb->ndev; i++)
		if (cb->dev[i].ordinal == ordinal)
			return &cb->dev[i];
	return NULL;
}

static void cuda_release(struct asam_cuda_backend *cb)
{
	while (cb->ndev > 0) {
		struct asam_cuda_device *d = &cb->dev[--cb->ndev];

		if (d->pool && !asam_cuda_device_enter(d))
			asam_cuda_pool_fini(d);
		cb->drv->cuDevicePrimaryCtxRelease(d->dev);
	}
}

static int cuda_probe(struct asam_backend *be)
{
	const struct asam_cuda_driver *drv = asam_cuda_driver_get();
	struct asam_cuda_backend *cb;
	int i, count = 0, ret;

	/* no driver at all is "no device" to the context; the message says which */
	if (IS_ERR(drv))
		return PTR_ERR(drv) == -ENOENT ? -ENODEV : PTR_ERR(drv);
	/* kernels built for one driver are keyed apart from another's */
	if (IS_ENABLED(CONFIG_JIT_NVRTC))
		asam_jit_set_driver_version(drv->version);
	ret = asam_cuda_err(drv->cuDeviceGetCount(&count), "cuDeviceGetCount");
	if (ret)
		return ret;
	if (!count)
		return asam_err(-ENODEV, "the CUDA driver sees no GPU");
	cb = calloc(1, sizeof(*cb));
	if (!cb)
		return asam_err(-ENOMEM, "cuda: out of memory");
	cb->drv = drv;
	for (i = 0; i < count; i++) {
		struct asam_cuda_device *d = &cb->dev[cb->ndev];
		char cpus[128];

		if (!asam_ctx_device_allowed(be->ctx, "cuda", i))
			continue;
		if (cb->ndev == ASAM_CUDA_MAX_DEVICES) {
			pr_warn("cuda: using the first %d GPUs of %d",
				ASAM_CUDA_MAX_DEVICES, count);
			break;
		}
		ret = asam_cuda_device_query(drv, i, be->ctx->topo, d);
		if (ret)
			goto err_release;
		ret = asam_cuda_err(drv->cuDevicePrimaryCtxRetain(&d->ctx, d->dev),
				    "cuDevicePrimaryCtxRetain");
		if (ret)
			goto err_release;
		cb->ndev++;
		if (!asam_cuda_device_enter(d))
			asam_cuda_pool_init(d);
		if (cpuset_format(&d->cpus, cpus, sizeof(cpus)))
			strcpy(cpus, "...");
		pr_info("cuda:%d: %s, sm_%d%d, %d SMs, %zu MiB, bus %s, NUMA node %d, CPUs %s",
			i, d->name, d->cc_major, d->cc_minor, d->sm_count,
			d->total_mem >> 20, d->pci_bus_id, d->numa_node,
			cpus[0] ? cpus : "unknown");
	}
	if (!cb->ndev) {
		ret = asam_err(-ENODEV,
			       "none of the %d GPUs is allowed by devices=\"%s\"",
			       count, be->ctx->devices ? be->ctx->devices : "");
		goto err_free;
	}
	be->priv = cb;
	return 0;

err_release:
	cuda_release(cb);
err_free:
	free(cb);
	return ret;
}

static void cuda_remove(struct asam_backend *be)
{
	struct asam_cuda_backend *cb = be->priv;

	if (!cb)
		return;
	cuda_release(cb);
	free(cb);
	be->priv = NULL;
}

const struct asam_backend_ops asam_backend_cuda_ops = {
	.name = "cuda",
	.api_version = ASAM_BACKEND_API,
	.dev_type = kDLCUDA,
	.probe = cuda_probe,
	.remove = cuda_remove,
	.supports = asam_cuda_attn_supports,
	.fwd = asam_cuda_attn_fwd,
	.bwd = asam_cuda_attn_bwd,
	.workspace_size = asam_cuda_attn_workspace_size,
	.cluster_update = asam_cuda_cluster_update,
};
