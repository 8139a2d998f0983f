// SPDX-License-Identifier: MIT
/*
 * Device memory and host registration.  Plain cuMemAlloc only, never
 * managed memory: oversubscribed managed memory can hang the GPU.  Each
 * call enters the device's primary context first, so callers on any
 * thread may use them.
 */
#include <stdio.h>

#include <internal/cuda.h>
#include <internal/err.h>
#include <internal/hostmem.h>

int asam_cuda_malloc(const struct asam_cuda_device *d, size_t bytes,
		     CUdeviceptr *out)
{
	char what[64];
	int ret;

	*out = 0;
	if (!bytes)
		return asam_err(-EINVAL, "cuda:%d: cannot allocate 0 bytes",
				d->ordinal);
	ret = asam_cuda_device_enter(d);
	if (ret)
		return ret;
	snprintf(what, sizeof(what), "cuMemAlloc(%zu bytes) on cuda:%d", bytes,
		 d->ordinal);
	return asam_cuda_err(d->drv->cuMemAlloc(out, bytes), what);
}

void asam_cuda_free(const struct asam_cuda_device *d, CUdeviceptr p)
{
	if (!p || asam_cuda_device_enter(d))
		return;
	asam_cuda_err(d->drv->cuMemFree(p), "cuMemFree");
}

/*
 * Scratch of calls without a workspace (the backward's row sums, the
 * cluster tables, the row lists' transposes) came from cuMemAlloc and
 * went back to cuMemFree after a wait on the stream: a host round trip
 * and an idle GPU in every such call (CLUSTERED's forward at B2 H16 16K:
 * ~0.09 ms of 0.88).  A pool of our own keeps the memory between calls
 * (release threshold: none) and hands it out in stream order.
 */
void asam_cuda_pool_init(struct asam_cuda_device *d)
{
	const struct asam_cuda_driver *drv = d->drv;
	CUmemPoolProps pp = { 0 };
	cuuint64_t keep = ~(cuuint64_t)0;
	int ok = 0;

	d->pool = NULL;
	if (drv->cuDeviceGetAttribute(&ok,
				      CU_DEVICE_ATTRIBUTE_MEMORY_POOLS_SUPPORTED,
				      d->dev) != CUDA_SUCCESS || !ok)
		return;
	pp.allocType = CU_MEM_ALLOCATION_TYPE_PINNED;
	pp.location.type = CU_MEM_LOCATION_TYPE_DEVICE;
	pp.location.id = d->ordinal;
	if (drv->cuMemPoolCreate(&d->pool, &pp) != CUDA_SUCCESS) {
		d->pool = NULL;
		return;
	}
	if (drv->cuMemPoolSetAttribute(d->pool,
				       CU_MEMPOOL_ATTR_RELEASE_THRESHOLD,
				       &keep) != CUDA_SUCCESS) {
		drv->cuMemPoolDestroy(d->pool);
		d->pool = NULL;
	}
}

void asam_cuda_pool_fini(struct asam_cuda_device *d)
{
	if (d->pool)
		d->drv->cuMemPoolDestroy(d->pool);
	d->pool = NULL;
}

int asam_cuda_scratch_get(const struct asam_cuda_device *d, CUstream s,
			  size_t bytes, CUdeviceptr *out)
{
	char what[80];
	int ret;

	bytes = bytes ? bytes : 16;
	if (!d->pool)
		return asam_cuda_malloc(d, bytes, out);
	*out = 0;
	ret = asam_cuda_device_enter(d);
	if (ret)
		return ret;
	snprintf(what, sizeof(what),
		 "cuMemAllocFromPoolAsync(%zu bytes) on cuda:%d", bytes,
		 d->ordinal);
	return asam_cuda_err(d->drv->cuMemAllocFromPoolAsync(out, bytes,
							     d->pool, s),
			     what);
}

int asam_cuda_scratch_put(const struct asam_cuda_device *d, CUstream s,
			  CUdeviceptr p)
{
	int ret;

	if (!p)
		return 0;
	if (d->pool) {
		ret = asam_cuda_device_enter(d);
		return ret ?: asam_cuda_err(d->drv->cuMemFreeAsync(p, s),
					    "cuMemFreeAsync");
	}
	/* plain memory: the stream's kernels may still read it */
	ret = asam_cuda_stream_sync(d, s);
	asam_cuda_free(d, p);
	return ret;
}

int asam_cuda_memcpy_htod(const struct asam_cuda_device *d, CUdeviceptr dst,
			  const void *src, size_t bytes, CUstream s, bool async)
{
	int ret = asam_cuda_device_enter(d);

	if (ret)
		return ret;
	if (async)
		return asam_cuda_err(d->drv->cuMemcpyHtoDAsync(dst, src, bytes, s),
				     "cuMemcpyHtoDAsync");
	return asam_cuda_err(d->drv->cuMemcpyHtoD(dst, src, bytes),
			     "cuMemcpyHtoD");
}

int asam_cuda_memcpy_dtoh(const struct asam_cuda_device *d, void *dst,
			  CUdeviceptr src, size_t bytes, CUstream s, bool async)
{
	int ret = asam_cuda_device_enter(d);

	if (ret)
		return ret;
	if (async)
		return asam_cuda_err(d->drv->cuMemcpyDtoHAsync(dst, src, bytes, s),
				     "cuMemcpyDtoHAsync");
	return asam_cuda_err(d->drv->cuMemcpyDtoH(dst, src, bytes),
			     "cuMemcpyDtoH");
}

int asam_cuda_memset8(const struct asam_cuda_device *d, CUdeviceptr dst,
		      unsigned char v, size_t bytes, CUstream s)
{
	int ret = asam_cuda_device_enter(d);

	if (ret)
		return ret;
	return asam_cuda_err(d->drv->cuMemsetD8Async(dst, v, bytes, s),
			     "cuMemsetD8Async");
}

/*
 * Registration needs a context; the device's primary context stays
 * retained while the buffer lives, or releasing it would drop the
 * registration with it.
 */
int asam_cuda_host_register(int ordinal, void *p, size_t bytes, void **ctxp)
{
	const struct asam_cuda_driver *drv = asam_cuda_driver_get();
	CUcontext ctx, prev = NULL;
	CUdevice dev;
	CUresult r;
	int ret;

	if (IS_ERR(drv))
		return PTR_ERR(drv);
	ret = asam_cuda_err(drv->cuDeviceGet(&dev, ordinal), "cuDeviceGet");
	if (ret)
		return ret;
	ret = asam_cuda_err(drv->cuDevicePrimaryCtxRetain(&ctx, dev),
			    "cuDevicePrimaryCtxRetain");
	if (ret)
		return ret;
	drv->cuCtxGetCurrent(&prev);
	drv->cuCtxSetCurrent(ctx);
	r = drv->cuMemHostRegister(p, bytes, CU_MEMHOSTREGISTER_PORTABLE);
	drv->cuCtxSetCurrent(prev);
	if (r != CUDA_SUCCESS) {
		drv->cuDevicePrimaryCtxRelease(dev);
		return asam_cuda_err(r, "cuMemHostRegister");
	}
	*ctxp = ctx;
	return 0;
}

void asam_cuda_host_unregister(int ordinal, void *p, void *ctx)
{
	const struct asam_cuda_driver *drv = asam_cuda_driver_get();
	CUcontext prev = NULL;
	CUdevice dev;

	if (IS_ERR(drv) || drv->cuDeviceGet(&dev, ordinal) != CUDA_SUCCESS)
		return;
	drv->cuCtxGetCurrent(&prev);
	drv->cuCtxSetCurrent(ctx);
	asam_cuda_err(drv->cuMemHostUnregister(p), "cuMemHostUnregister");
	drv->cuCtxSetCurrent(prev);
	drv->cuDevicePrimaryCtxRelease(dev);
}
