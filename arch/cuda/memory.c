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
