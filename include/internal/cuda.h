/* SPDX-License-Identifier: MIT */
/*
 * The CUDA backend's view of the driver: one table of entry points taken
 * through cuGetProcAddress after dlopen("libcuda.so.1"), the devices a
 * context may use, and thin wrappers (memory, streams, events) that turn
 * CUresult into -errno with the driver's error name in asam_last_error().
 *
 * The library never links libcuda: only the types come from <cuda.h>.
 */
#ifndef ASAM_INTERNAL_CUDA_H
#define ASAM_INTERNAL_CUDA_H

#include <stdbool.h>
#include <stddef.h>
#include <cuda.h>

#include <internal/backend.h>
#include <internal/topology.h>

/*
 * The oldest driver we accept (cuDriverGetVersion's 1000 * major + 10 *
 * minor).  CUDA 12.0 has cuGetProcAddress_v2, and every entry point below
 * has had its current ABI since then, so each is asked for at this
 * version: a newer driver keeps answering with the same ABI.
 */
#define ASAM_CUDA_MIN_DRIVER	12000
#define ASAM_CUDA_ABI_VERSION	12000

/* X(name): every entry point of the table, resolved by its base name. */
#define ASAM_CUDA_FOR_EACH_FN(X)					\
	X(cuInit) X(cuDriverGetVersion) X(cuGetErrorName)		\
	X(cuGetErrorString) X(cuDeviceGetCount) X(cuDeviceGet)		\
	X(cuDeviceGetName) X(cuDeviceGetAttribute) X(cuDeviceTotalMem)	\
	X(cuDeviceGetPCIBusId) X(cuDevicePrimaryCtxRetain)		\
	X(cuDevicePrimaryCtxRelease) X(cuCtxSetCurrent)			\
	X(cuCtxGetCurrent) X(cuCtxSynchronize) X(cuMemAlloc)		\
	X(cuMemFree) X(cuMemGetInfo) X(cuMemcpyHtoD) X(cuMemcpyDtoH)	\
	X(cuMemcpyDtoD) X(cuMemcpyHtoDAsync) X(cuMemcpyDtoHAsync)	\
	X(cuMemsetD8) X(cuMemsetD8Async) X(cuMemsetD32Async)		\
	X(cuStreamCreate) X(cuStreamDestroy) X(cuStreamSynchronize)	\
	X(cuStreamIsCapturing) X(cuStreamWaitEvent) X(cuEventCreate)	\
	X(cuEventRecord) X(cuEventSynchronize) X(cuEventElapsedTime)	\
	X(cuEventDestroy) X(cuModuleLoadData) X(cuModuleUnload)		\
	X(cuModuleGetFunction) X(cuFuncSetAttribute) X(cuLaunchKernel)	\
	X(cuOccupancyMaxActiveBlocksPerMultiprocessor)			\
	X(cuMemHostRegister) X(cuMemHostUnregister) X(cuMemAllocHost)	\
	X(cuMemFreeHost) X(cuPointerGetAttribute) X(cuMemPoolCreate)	\
	X(cuMemPoolDestroy) X(cuMemPoolSetAttribute)			\
	X(cuMemAllocFromPoolAsync) X(cuMemFreeAsync)

/*
 * struct asam_cuda_driver - the driver's entry points
 * @version: cuDriverGetVersion()
 * @path: what was opened
 *
 * Members are named after the functions and typed by <cuda.h>'s own
 * prototypes, so d->cuMemAlloc(&p, n) reads like the driver API.
 */
struct asam_cuda_driver {
	void *handle;
	int version;
	char path[256];
#define ASAM_CUDA_MEMBER(n) __typeof__(&n) n;
	ASAM_CUDA_FOR_EACH_FN(ASAM_CUDA_MEMBER)
#undef ASAM_CUDA_MEMBER
};

/*
 * asam_cuda_driver_get() - the process's driver table, loaded once
 *
 * Return: the table, or ERR_PTR(-ENOENT) (no libcuda or an entry point is
 * missing), ERR_PTR(-EOPNOTSUPP) (driver older than ASAM_CUDA_MIN_DRIVER),
 * ERR_PTR(-ENODEV) (cuInit found no device), each with an asam_err()
 * message.  A failed load is remembered: the answer never changes within
 * a process.
 */
const struct asam_cuda_driver *asam_cuda_driver_get(void);

/*
 * asam_cuda_err() - turn a CUresult into -errno
 * @r: the driver's result (CUDA_SUCCESS gives 0 and records nothing)
 * @what: what was being done, e.g. "cuMemAlloc(1048576 bytes)"
 *
 * Records "what: CUDA_ERROR_NAME (description)" via asam_err().
 */
int asam_cuda_err(CUresult r, const char *what);

/* The CUresult -> errno table, shared with the stubbed tests. */
int asam_cuda_errno(CUresult r);

#define ASAM_CUDA_MAX_DEVICES 16

/*
 * struct asam_cuda_device - one GPU a context may use
 * @ordinal: the driver's ordinal, which is DLDevice.device_id
 * @ctx: the device's primary context, retained while the backend lives
 * @numa_node: the NUMA node nearest the GPU, -1 when unknown
 * @cpus: the CPUs nearest the GPU (every online CPU when unknown)
 */
struct asam_cuda_device {
	const struct asam_cuda_driver *drv;
	int ordinal;
	CUdevice dev;
	CUcontext ctx;
	char name[256];
	int cc_major, cc_minor;
	int sm_count;
	int smem_per_block;		/* default limit, bytes */
	int smem_per_block_optin;	/* with cuFuncSetAttribute, bytes */
	int l2_bytes;
	int max_threads_per_block;
	int warp_size;
	size_t total_mem;
	char pci_bus_id[32];		/* "0000:18:00.0", lower case */
	int numa_node;
	struct asam_cpuset cpus;
	CUmemoryPool pool;		/* scratch in stream order, or NULL */
};

/* be->priv of the "cuda" backend */
struct asam_cuda_backend {
	const struct asam_cuda_driver *drv;
	int ndev;
	struct asam_cuda_device dev[ASAM_CUDA_MAX_DEVICES];
};

/* the device for DLDevice id @ordinal, NULL if this context lacks it */
struct asam_cuda_device *asam_cuda_device_of(struct asam_backend *be,
					     int ordinal);

/* Fill @d for ordinal @ordinal (properties, locality); no context yet. */
int asam_cuda_device_query(const struct asam_cuda_driver *drv, int ordinal,
			   const struct asam_topo *topo,
			   struct asam_cuda_device *d);

/* Make @d's primary context current on this thread. */
int asam_cuda_device_enter(const struct asam_cuda_device *d);

/* Load a cubin or NUL-terminated PTX image in @d's context. */
int asam_cuda_module_load(struct asam_cuda_device *d, const void *image,
			  CUmodule *mod);

/* Device memory: plain allocations only, never managed memory. */
int asam_cuda_malloc(const struct asam_cuda_device *d, size_t bytes,
		     CUdeviceptr *out);
void asam_cuda_free(const struct asam_cuda_device *d, CUdeviceptr p);

/*
 * A call's scratch when the caller gave no workspace: from @d's pool in
 * @s's order (no host wait, reused by later calls), or where the device
 * has no pool, plain memory that asam_cuda_scratch_put() frees after
 * waiting for @s.  put() returns that wait's error, else 0.
 */
int asam_cuda_scratch_get(const struct asam_cuda_device *d, CUstream s,
			  size_t bytes, CUdeviceptr *out);
int asam_cuda_scratch_put(const struct asam_cuda_device *d, CUstream s,
			  CUdeviceptr p);
/* @d's scratch pool (at probe; NULL where the device has none), freed */
void asam_cuda_pool_init(struct asam_cuda_device *d);
void asam_cuda_pool_fini(struct asam_cuda_device *d);
int asam_cuda_memcpy_htod(const struct asam_cuda_device *d, CUdeviceptr dst,
			  const void *src, size_t bytes, CUstream s, bool async);
int asam_cuda_memcpy_dtoh(const struct asam_cuda_device *d, void *dst,
			  CUdeviceptr src, size_t bytes, CUstream s, bool async);
int asam_cuda_memset8(const struct asam_cuda_device *d, CUdeviceptr dst,
		      unsigned char v, size_t bytes, CUstream s);

/* Streams and events wrap the driver's; every one returns -errno. */
int asam_cuda_stream_create(const struct asam_cuda_device *d, CUstream *s);
int asam_cuda_stream_destroy(const struct asam_cuda_device *d, CUstream s);
int asam_cuda_stream_sync(const struct asam_cuda_device *d, CUstream s);
int asam_cuda_stream_capturing(const struct asam_cuda_device *d, CUstream s,
			       bool *capturing);
int asam_cuda_event_create(const struct asam_cuda_device *d, CUevent *e,
			   bool timing);
int asam_cuda_event_record(const struct asam_cuda_device *d, CUevent e,
			   CUstream s);
int asam_cuda_event_sync(const struct asam_cuda_device *d, CUevent e);
int asam_cuda_event_elapsed(const struct asam_cuda_device *d, CUevent a,
			    CUevent b, float *ms);
int asam_cuda_event_destroy(const struct asam_cuda_device *d, CUevent e);

/* The attention entry points; arch/cuda/attn.c. */
int asam_cuda_attn_supports(struct asam_backend *be,
			    const struct asam_problem *p);
int asam_cuda_attn_fwd(struct asam_backend *be, const struct asam_problem *p);
int asam_cuda_attn_bwd(struct asam_backend *be, const struct asam_problem *p);
int asam_cuda_attn_workspace_size(struct asam_backend *be,
				  const struct asam_problem *p, size_t *bytes);

#endif
