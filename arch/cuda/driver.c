// SPDX-License-Identifier: MIT
/*
 * The CUDA driver, opened at run time: dlopen libcuda.so.1 (ASAM_LIBCUDA
 * overrides), find cuGetProcAddress_v2 with dlsym, and take every other
 * entry point through it at one fixed ABI version, so a newer driver keeps
 * giving us the prototypes we were compiled with.  Then check the
 * driver's version and cuInit.  The answer, good or bad, is computed once
 * per process and replayed.
 */
#include <dlfcn.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <internal/cuda.h>
#include <internal/err.h>
#include <internal/log.h>

typedef CUresult (*cuda_gpa_fn)(const char *symbol, void **pfn, int version,
				cuuint64_t flags,
				CUdriverProcAddressQueryResult *status);

static const struct {
	const char *name;
	size_t off;
} cuda_fns[] = {
#define ASAM_CUDA_ENTRY(n) { #n, offsetof(struct asam_cuda_driver, n) },
	ASAM_CUDA_FOR_EACH_FN(ASAM_CUDA_ENTRY)
#undef ASAM_CUDA_ENTRY
};

static struct asam_cuda_driver cuda_drv;
static int cuda_drv_err;
static char cuda_drv_msg[512];
static pthread_once_t cuda_drv_once = PTHREAD_ONCE_INIT;

int asam_cuda_errno(CUresult r)
{
	switch (r) {
	case CUDA_SUCCESS:
		return 0;
	case CUDA_ERROR_INVALID_VALUE:
	case CUDA_ERROR_INVALID_HANDLE:
	case CUDA_ERROR_INVALID_CONTEXT:
	case CUDA_ERROR_CONTEXT_IS_DESTROYED:
		return -EINVAL;
	case CUDA_ERROR_OUT_OF_MEMORY:
		return -ENOMEM;
	case CUDA_ERROR_NO_DEVICE:
	case CUDA_ERROR_INVALID_DEVICE:
	case CUDA_ERROR_NOT_INITIALIZED:
	case CUDA_ERROR_DEINITIALIZED:
	case CUDA_ERROR_DEVICE_UNAVAILABLE:
	case CUDA_ERROR_SYSTEM_NOT_READY:
		return -ENODEV;
	case CUDA_ERROR_CALL_REQUIRES_NEWER_DRIVER:
	case CUDA_ERROR_SYSTEM_DRIVER_MISMATCH:
	case CUDA_ERROR_COMPAT_NOT_SUPPORTED_ON_DEVICE:
	case CUDA_ERROR_NOT_SUPPORTED:
		return -EOPNOTSUPP;
	case CUDA_ERROR_NOT_FOUND:
	case CUDA_ERROR_FILE_NOT_FOUND:
	case CUDA_ERROR_SHARED_OBJECT_SYMBOL_NOT_FOUND:
		return -ENOENT;
	case CUDA_ERROR_NOT_READY:
		return -EAGAIN;
	case CUDA_ERROR_HOST_MEMORY_ALREADY_REGISTERED:
	case CUDA_ERROR_PEER_ACCESS_ALREADY_ENABLED:
		return -EEXIST;
	case CUDA_ERROR_HOST_MEMORY_NOT_REGISTERED:
		return -ENXIO;
	case CUDA_ERROR_INVALID_IMAGE:
	case CUDA_ERROR_INVALID_PTX:
	case CUDA_ERROR_UNSUPPORTED_PTX_VERSION:
	case CUDA_ERROR_NO_BINARY_FOR_GPU:
	case CUDA_ERROR_JIT_COMPILER_NOT_FOUND:
		return -ENOEXEC;
	case CUDA_ERROR_LAUNCH_OUT_OF_RESOURCES:
		return -E2BIG;
	case CUDA_ERROR_LAUNCH_TIMEOUT:
		return -ETIMEDOUT;
	case CUDA_ERROR_ILLEGAL_ADDRESS:
	case CUDA_ERROR_MISALIGNED_ADDRESS:
		return -EFAULT;
	case CUDA_ERROR_STREAM_CAPTURE_UNSUPPORTED:
	case CUDA_ERROR_STREAM_CAPTURE_INVALIDATED:
	case CUDA_ERROR_STREAM_CAPTURE_IMPLICIT:
	case CUDA_ERROR_CAPTURED_EVENT:
		return -EBUSY;
	case CUDA_ERROR_NOT_PERMITTED:
	case CUDA_ERROR_OPERATING_SYSTEM:
		return -EPERM;
	default:
		return -EIO;
	}
}

/* the loaded table, or NULL: never loads (asam_cuda_err may run first) */
static const struct asam_cuda_driver *cuda_driver_loaded(void)
{
	return __atomic_load_n(&cuda_drv.cuGetErrorName, __ATOMIC_ACQUIRE) ?
	       &cuda_drv : NULL;
}

static void cuda_describe(const struct asam_cuda_driver *d, CUresult r,
			  const char **name, const char **desc)
{
	*name = NULL;
	*desc = NULL;
	if (d && d->cuGetErrorName && d->cuGetErrorName(r, name))
		*name = NULL;
	if (d && d->cuGetErrorString && d->cuGetErrorString(r, desc))
		*desc = NULL;
}

static int cuda_err_with(const struct asam_cuda_driver *d, CUresult r,
			 const char *what)
{
	const char *name, *desc;

	if (r == CUDA_SUCCESS)
		return 0;
	cuda_describe(d, r, &name, &desc);
	if (name)
		return asam_err(asam_cuda_errno(r), "%s: %s (%s)", what, name,
				desc ? desc : "no description");
	return asam_err(asam_cuda_errno(r), "%s: CUresult %d", what, (int)r);
}

int asam_cuda_err(CUresult r, const char *what)
{
	return cuda_err_with(cuda_driver_loaded(), r, what);
}

/*
 * Resolve every entry point through @gpa.  A missing one means a driver
 * without a function we call: refuse the whole driver rather than fail
 * later in the middle of a launch.
 */
static int cuda_driver_resolve(struct asam_cuda_driver *d, cuda_gpa_fn gpa)
{
	size_t i;

	for (i = 0; i < ARRAY_SIZE(cuda_fns); i++) {
		CUdriverProcAddressQueryResult st = CU_GET_PROC_ADDRESS_SUCCESS;
		void **slot = (void **)((char *)d + cuda_fns[i].off);
		CUresult r;

		*slot = NULL;
		r = gpa(cuda_fns[i].name, slot, ASAM_CUDA_ABI_VERSION,
			CU_GET_PROC_ADDRESS_DEFAULT, &st);
		if (r != CUDA_SUCCESS || st != CU_GET_PROC_ADDRESS_SUCCESS ||
		    !*slot) {
			*slot = NULL;
			return asam_err(st == CU_GET_PROC_ADDRESS_VERSION_NOT_SUFFICIENT ?
					-EOPNOTSUPP : -ENOENT,
					"CUDA driver %s: cuGetProcAddress(\"%s\", %d) found nothing (CUresult %d, status %d)",
					d->path, cuda_fns[i].name,
					ASAM_CUDA_ABI_VERSION, (int)r, (int)st);
		}
	}
	return 0;
}

/* The version gate, then cuInit: a driver with no GPU fails here. */
static int cuda_driver_start(struct asam_cuda_driver *d)
{
	CUresult r;

	r = d->cuDriverGetVersion(&d->version);
	if (r != CUDA_SUCCESS)
		return cuda_err_with(d, r, "cuDriverGetVersion");
	if (d->version < ASAM_CUDA_MIN_DRIVER)
		return asam_err(-EOPNOTSUPP,
				"CUDA driver %s supports CUDA %d.%d; libasam needs %d.%d or newer",
				d->path, d->version / 1000,
				d->version % 1000 / 10,
				ASAM_CUDA_MIN_DRIVER / 1000,
				ASAM_CUDA_MIN_DRIVER % 1000 / 10);
	r = d->cuInit(0);
	if (r != CUDA_SUCCESS)
		return cuda_err_with(d, r, "cuInit");
	return 0;
}

static int cuda_driver_open(struct asam_cuda_driver *d, const char *path)
{
	cuda_gpa_fn gpa;
	int ret;

	snprintf(d->path, sizeof(d->path), "%s", path);
	d->handle = dlopen(path, RTLD_NOW | RTLD_LOCAL);
	if (!d->handle)
		return asam_err(-ENOENT,
				"no CUDA driver: cannot open %s (%s); set ASAM_LIBCUDA to its path if it is elsewhere",
				path, dlerror());
	/* _v2 (with a status) exists from CUDA 12.0 on */
	*(void **)&gpa = dlsym(d->handle, "cuGetProcAddress_v2");
	if (!gpa) {
		ret = asam_err(dlsym(d->handle, "cuInit") ? -EOPNOTSUPP : -ENOENT,
			       "CUDA driver %s has no cuGetProcAddress_v2: %s",
			       path, dlsym(d->handle, "cuInit") ?
			       "it is older than CUDA 12.0" :
			       "it is not a CUDA driver");
		goto err_close;
	}
	ret = cuda_driver_resolve(d, gpa);
	if (ret)
		goto err_close;
	ret = cuda_driver_start(d);
	if (ret)
		goto err_close;
	return 0;

err_close:
	dlclose(d->handle);
	memset(d, 0, sizeof(*d));
	snprintf(d->path, sizeof(d->path), "%s", path);
	return ret;
}

static void cuda_driver_once(void)
{
	struct asam_cuda_driver d = { 0 };
	const char *path = getenv("ASAM_LIBCUDA");

	if (!path || !*path)
		path = "libcuda.so.1";
	cuda_drv_err = cuda_driver_open(&d, path);
	if (cuda_drv_err) {
		snprintf(cuda_drv_msg, sizeof(cuda_drv_msg), "%s",
			 asam_last_error());
		return;
	}
	pr_debug("CUDA driver %s: version %d.%d", path, d.version / 1000,
		 d.version % 1000 / 10);
	/* publish with cuGetErrorName last: cuda_driver_loaded() keys on it */
	{
		typeof(d.cuGetErrorName) gen = d.cuGetErrorName;

		d.cuGetErrorName = NULL;
		cuda_drv = d;
		__atomic_store_n(&cuda_drv.cuGetErrorName, gen,
				 __ATOMIC_RELEASE);
	}
}

const struct asam_cuda_driver *asam_cuda_driver_get(void)
{
	pthread_once(&cuda_drv_once, cuda_driver_once);
	if (cuda_drv_err)
		return ERR_PTR(asam_err(cuda_drv_err, "%s", cuda_drv_msg));
	return &cuda_drv;
}
