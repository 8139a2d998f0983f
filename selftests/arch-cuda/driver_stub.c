// SPDX-License-Identifier: MIT
/*
 * The driver loader and the device registry without a GPU: driver.c is
 * included here so that its static loader steps can be fed a stubbed
 * cuGetProcAddress, and the process-wide table can be replaced by a fake
 * two-GPU driver that the cuda backend then probes for real (with the
 * fake sysfs tree, so the GPU at 0000:17:00.0 must land on node 1).
 */
#include "../../arch/cuda/driver.c"

#include <asam/asam.h>
#include <internal/ctx.h>

#include "../lib/kselftest.h"
#include "../topology/fake_sysfs.h"

/* ---- the fake driver ---------------------------------------------------- */

static CUresult fake_init_result = CUDA_SUCCESS;
static int fake_version = 13000;
static const char *fake_missing;	/* an entry point to leave out */
static int fake_retained;		/* primary contexts held */
static int fake_ctx_token[2];

static CUresult fake_cuInit(unsigned int flags)
{
	return fake_init_result;
}

static CUresult fake_cuDriverGetVersion(int *v)
{
	*v = fake_version;
	return CUDA_SUCCESS;
}

static CUresult fake_cuGetErrorName(CUresult r, const char **s)
{
	switch (r) {
	case CUDA_ERROR_NO_DEVICE: *s = "CUDA_ERROR_NO_DEVICE"; break;
	case CUDA_ERROR_OUT_OF_MEMORY: *s = "CUDA_ERROR_OUT_OF_MEMORY"; break;
	case CUDA_ERROR_INVALID_DEVICE: *s = "CUDA_ERROR_INVALID_DEVICE"; break;
	default: return CUDA_ERROR_INVALID_VALUE;
	}
	return CUDA_SUCCESS;
}

static CUresult fake_cuGetErrorString(CUresult r, const char **s)
{
	*s = r == CUDA_ERROR_OUT_OF_MEMORY ? "out of memory" :
	     r == CUDA_ERROR_NO_DEVICE ? "no CUDA-capable device is detected" :
	     "some error";
	return CUDA_SUCCESS;
}

static CUresult fake_cuDeviceGetCount(int *n)
{
	*n = 2;
	return CUDA_SUCCESS;
}

static CUresult fake_cuDeviceGet(CUdevice *d, int ordinal)
{
	if (ordinal < 0 || ordinal > 1)
		return CUDA_ERROR_INVALID_DEVICE;
	*d = ordinal;
	return CUDA_SUCCESS;
}

static CUresult fake_cuDeviceGetName(char *name, int len, CUdevice d)
{
	snprintf(name, len, "Fake H100 #%d", d);
	return CUDA_SUCCESS;
}

static CUresult fake_cuDeviceGetAttribute(int *v, CUdevice_attribute a,
					  CUdevice d)
{
	switch (a) {
	case CU_DEVICE_ATTRIBUTE_COMPUTE_CAPABILITY_MAJOR: *v = 9; break;
	case CU_DEVICE_ATTRIBUTE_COMPUTE_CAPABILITY_MINOR: *v = 0; break;
	case CU_DEVICE_ATTRIBUTE_MULTIPROCESSOR_COUNT: *v = 132 - d; break;
	case CU_DEVICE_ATTRIBUTE_MAX_SHARED_MEMORY_PER_BLOCK: *v = 49152; break;
	case CU_DEVICE_ATTRIBUTE_MAX_SHARED_MEMORY_PER_BLOCK_OPTIN: *v = 232448; break;
	case CU_DEVICE_ATTRIBUTE_L2_CACHE_SIZE: *v = 52428800; break;
	case CU_DEVICE_ATTRIBUTE_MAX_THREADS_PER_BLOCK: *v = 1024; break;
	case CU_DEVICE_ATTRIBUTE_WARP_SIZE: *v = 32; break;
	case CU_DEVICE_ATTRIBUTE_HOST_NUMA_ID: *v = -1; break;
	/* cuda:0 has memory pools, cuda:1 not */
	case CU_DEVICE_ATTRIBUTE_MEMORY_POOLS_SUPPORTED: *v = d == 0; break;
	default: return CUDA_ERROR_INVALID_VALUE;
	}
	return CUDA_SUCCESS;
}

static CUresult fake_cuDeviceTotalMem(size_t *b, CUdevice d)
{
	*b = (size_t)80 << 30;
	return CUDA_SUCCESS;
}

static CUresult fake_cuDeviceGetPCIBusId(char *s, int len, CUdevice d)
{
	/* the driver spells hex digits in upper case */
	snprintf(s, len, "%s", d == 0 ? "0000:17:00.0" : "00000000:65:00.0");
	return CUDA_SUCCESS;
}

static CUresult fake_cuDevicePrimaryCtxRetain(CUcontext *c, CUdevice d)
{
	fake_retained++;
	*c = (CUcontext)&fake_ctx_token[d];
	return CUDA_SUCCESS;
}

static CUresult fake_cuDevicePrimaryCtxRelease(CUdevice d)
{
	fake_retained--;
	return CUDA_SUCCESS;
}

static CUresult fake_cuCtxSetCurrent(CUcontext c)
{
	return CUDA_SUCCESS;
}

static CUresult fake_cuMemAlloc(CUdeviceptr *p, size_t n)
{
	if (n > (size_t)80 << 30)
		return CUDA_ERROR_OUT_OF_MEMORY;
	*p = 0x1000;
	return CUDA_SUCCESS;
}

/* the scratch pool's calls, as the test last saw them */
static struct {
	int live, created_on, syncs;
	cuuint64_t threshold;
	CUstream alloc_s, free_s;
	size_t alloc_n;
	CUdeviceptr freed_async, freed;
} fake_pool;
static char fake_pool_token;

/* forget the calls seen, not the pools alive */
static void fake_pool_reset(void)
{
	int live = fake_pool.live;

	memset(&fake_pool, 0, sizeof(fake_pool));
	fake_pool.live = live;
}

static CUresult fake_cuMemPoolCreate(CUmemoryPool *pool,
				     const CUmemPoolProps *pp)
{
	fake_pool.live++;
	fake_pool.created_on = pp->location.id;
	*pool = (CUmemoryPool)&fake_pool_token;
	return CUDA_SUCCESS;
}

static CUresult fake_cuMemPoolDestroy(CUmemoryPool pool)
{
	fake_pool.live--;
	return CUDA_SUCCESS;
}

static CUresult fake_cuMemPoolSetAttribute(CUmemoryPool pool,
					   CUmemPool_attribute a, void *v)
{
	if (a == CU_MEMPOOL_ATTR_RELEASE_THRESHOLD)
		fake_pool.threshold = *(cuuint64_t *)v;
	return CUDA_SUCCESS;
}

static CUresult fake_cuMemAllocFromPoolAsync(CUdeviceptr *p, size_t n,
					     CUmemoryPool pool, CUstream s)
{
	fake_pool.alloc_s = s;
	fake_pool.alloc_n = n;
	*p = 0x2000;
	return CUDA_SUCCESS;
}

static CUresult fake_cuMemFreeAsync(CUdeviceptr p, CUstream s)
{
	fake_pool.freed_async = p;
	fake_pool.free_s = s;
	return CUDA_SUCCESS;
}

static CUresult fake_cuStreamSynchronize(CUstream s)
{
	fake_pool.syncs++;
	return CUDA_SUCCESS;
}

static CUresult fake_cuMemFree(CUdeviceptr p)
{
	fake_pool.freed = p;
	return CUDA_SUCCESS;
}

static CUresult fake_unused(void)
{
	return CUDA_ERROR_NOT_SUPPORTED;
}

static const struct {
	const char *name;
	void *fn;
} fake_fns[] = {
	{ "cuInit", fake_cuInit },
	{ "cuDriverGetVersion", fake_cuDriverGetVersion },
	{ "cuGetErrorName", fake_cuGetErrorName },
	{ "cuGetErrorString", fake_cuGetErrorString },
	{ "cuDeviceGetCount", fake_cuDeviceGetCount },
	{ "cuDeviceGet", fake_cuDeviceGet },
	{ "cuDeviceGetName", fake_cuDeviceGetName },
	{ "cuDeviceGetAttribute", fake_cuDeviceGetAttribute },
	{ "cuDeviceTotalMem", fake_cuDeviceTotalMem },
	{ "cuDeviceGetPCIBusId", fake_cuDeviceGetPCIBusId },
	{ "cuDevicePrimaryCtxRetain", fake_cuDevicePrimaryCtxRetain },
	{ "cuDevicePrimaryCtxRelease", fake_cuDevicePrimaryCtxRelease },
	{ "cuCtxSetCurrent", fake_cuCtxSetCurrent },
	{ "cuMemAlloc", fake_cuMemAlloc },
	{ "cuMemPoolCreate", fake_cuMemPoolCreate },
	{ "cuMemPoolDestroy", fake_cuMemPoolDestroy },
	{ "cuMemPoolSetAttribute", fake_cuMemPoolSetAttribute },
	{ "cuMemAllocFromPoolAsync", fake_cuMemAllocFromPoolAsync },
	{ "cuMemFreeAsync", fake_cuMemFreeAsync },
	{ "cuStreamSynchronize", fake_cuStreamSynchronize },
	{ "cuMemFree", fake_cuMemFree },
};

static int fake_gpa_calls;

static CUresult fake_gpa(const char *sym, void **pfn, int version,
			 cuuint64_t flags, CUdriverProcAddressQueryResult *st)
{
	size_t i;

	fake_gpa_calls++;
	*pfn = NULL;
	if (version != ASAM_CUDA_ABI_VERSION) {
		*st = CU_GET_PROC_ADDRESS_VERSION_NOT_SUFFICIENT;
		return CUDA_ERROR_NOT_FOUND;
	}
	if (fake_missing && !strcmp(sym, fake_missing)) {
		*st = CU_GET_PROC_ADDRESS_SYMBOL_NOT_FOUND;
		return CUDA_ERROR_NOT_FOUND;
	}
	*st = CU_GET_PROC_ADDRESS_SUCCESS;
	for (i = 0; i < ARRAY_SIZE(fake_fns); i++)
		if (!strcmp(sym, fake_fns[i].name)) {
			*pfn = fake_fns[i].fn;
			return CUDA_SUCCESS;
		}
	*pfn = (void *)fake_unused;
	return CUDA_SUCCESS;
}

/* ---- the loader's steps --------------------------------------------------- */

static void test_loader(void)
{
	struct asam_cuda_driver d;
	bool all = true;
	size_t i;
	int ret;

	memset(&d, 0, sizeof(d));
	strcpy(d.path, "fake");
	ret = cuda_driver_resolve(&d, fake_gpa);
	for (i = 0; i < ARRAY_SIZE(cuda_fns); i++)
		all &= *(void **)((char *)&d + cuda_fns[i].off) != NULL;
	ksft_test_result(!ret && all && fake_gpa_calls == (int)ARRAY_SIZE(cuda_fns),
			 "resolve: all %zu entry points through cuGetProcAddress\n",
			 ARRAY_SIZE(cuda_fns));

	fake_missing = "cuMemHostRegister";
	ret = cuda_driver_resolve(&d, fake_gpa);
	ksft_test_result(ret == -ENOENT &&
			 strstr(asam_last_error(), "\"cuMemHostRegister\""),
			 "resolve: a missing entry point is -ENOENT naming it: %s\n",
			 asam_last_error());
	fake_missing = NULL;

	ret = cuda_driver_resolve(&d, fake_gpa) ?: cuda_driver_start(&d);
	ksft_test_result(!ret && d.version == 13000,
			 "start: version 13.0 passes the gate\n");

	fake_version = 11080;
	ret = cuda_driver_start(&d);
	ksft_test_result(ret == -EOPNOTSUPP &&
			 strstr(asam_last_error(), "supports CUDA 11.8; libasam needs 12.0"),
			 "start: an 11.8 driver is -EOPNOTSUPP: %s\n",
			 asam_last_error());
	fake_version = 13000;

	fake_init_result = CUDA_ERROR_NO_DEVICE;
	ret = cuda_driver_start(&d);
	ksft_test_result(ret == -ENODEV &&
			 strstr(asam_last_error(), "cuInit: CUDA_ERROR_NO_DEVICE (no CUDA-capable device is detected)"),
			 "start: cuInit without a GPU is -ENODEV: %s\n",
			 asam_last_error());
	fake_init_result = CUDA_SUCCESS;

	memset(&d, 0, sizeof(d));
	ret = cuda_driver_open(&d, "/nonexistent/libcuda.so.1");
	ksft_test_result(ret == -ENOENT && !d.handle &&
			 strstr(asam_last_error(), "ASAM_LIBCUDA"),
			 "open: no library is -ENOENT and names ASAM_LIBCUDA\n");
	ret = cuda_driver_open(&d, "libm.so.6");
	ksft_test_result(ret == -ENOENT && !d.handle &&
			 strstr(asam_last_error(), "not a CUDA driver"),
			 "open: a library without cuGetProcAddress_v2: %s\n",
			 asam_last_error());

	ksft_test_result(asam_cuda_errno(CUDA_SUCCESS) == 0 &&
			 asam_cuda_errno(CUDA_ERROR_OUT_OF_MEMORY) == -ENOMEM &&
			 asam_cuda_errno(CUDA_ERROR_INVALID_VALUE) == -EINVAL &&
			 asam_cuda_errno(CUDA_ERROR_NO_DEVICE) == -ENODEV &&
			 asam_cuda_errno(CUDA_ERROR_NOT_SUPPORTED) == -EOPNOTSUPP &&
			 asam_cuda_errno(CUDA_ERROR_NO_BINARY_FOR_GPU) == -ENOEXEC &&
			 asam_cuda_errno(CUDA_ERROR_STREAM_CAPTURE_UNSUPPORTED) == -EBUSY &&
			 asam_cuda_errno(CUDA_ERROR_UNKNOWN) == -EIO,
			 "errno: CUresult maps to -errno\n");
	ksft_test_result(asam_cuda_err(CUDA_ERROR_OUT_OF_MEMORY, "x") == -ENOMEM &&
			 !strcmp(asam_last_error(), "x: CUresult 2"),
			 "errno: before a driver is loaded the message has the number: %s\n",
			 asam_last_error());
}

/* ---- the registry on the fake driver ------------------------------------- */

static void noop(void)
{
}

static void install_fake_driver(void)
{
	struct asam_cuda_driver d = { 0 };

	strcpy(d.path, "fake");
	if (cuda_driver_resolve(&d, fake_gpa) || cuda_driver_start(&d))
		ksft_exit_skip("the fake driver did not load\n");
	pthread_once(&cuda_drv_once, noop);
	cuda_drv = d;
	cuda_drv_err = 0;
}

static struct asam_ctx *ctx_with(const char *devices, char *names, size_t len)
{
	struct asam_ctx_opts o = { .sz = sizeof(o), .log_level = -1,
				   .devices = devices };
	struct asam_ctx *ctx = NULL;

	names[0] = '\0';
	if (asam_ctx_create(&o, &ctx))
		return NULL;
	asam_ctx_backends(ctx, names, len);
	return ctx;
}

static struct asam_backend *cuda_be(struct asam_ctx *ctx)
{
	int i;

	for (i = 0; ctx && i < ctx->nr_backends; i++)
		if (ctx->backends[i].ops == &asam_backend_cuda_ops)
			return &ctx->backends[i];
	return NULL;
}

/*
 * Scratch without a workspace: from cuda:0's pool in the stream's order
 * (no wait on the host), and on cuda:1, which has no pools, the plain
 * allocation freed after a wait on the stream
 */
static void test_scratch(struct asam_cuda_device *d0,
			 struct asam_cuda_device *d1)
{
	CUstream s0 = (CUstream)0x77, s1 = (CUstream)0x78;
	CUdeviceptr p = 0;
	int ret;

	ksft_test_result(d0 && d0->pool && d1 && !d1->pool &&
			 fake_pool.live == 1 && fake_pool.created_on == 0 &&
			 fake_pool.threshold == ~(cuuint64_t)0,
			 "pool: cuda:0's keeps its memory, cuda:1 has none\n");
	fake_pool_reset();
	ret = d0 ? asam_cuda_scratch_get(d0, s0, 1000, &p) : -1;
	ret = ret ?: asam_cuda_scratch_put(d0, s0, p);
	ksft_test_result(!ret && p == 0x2000 && fake_pool.alloc_s == s0 &&
			 fake_pool.alloc_n == 1000 &&
			 fake_pool.freed_async == 0x2000 &&
			 fake_pool.free_s == s0 && !fake_pool.syncs &&
			 !fake_pool.freed,
			 "scratch: from the pool in the stream's order, no wait\n");
	fake_pool_reset();
	ret = d1 ? asam_cuda_scratch_get(d1, s1, 0, &p) : -1;
	ret = ret ?: asam_cuda_scratch_put(d1, s1, p);
	ksft_test_result(!ret && p == 0x1000 && fake_pool.syncs == 1 &&
			 fake_pool.freed == 0x1000 && !fake_pool.freed_async,
			 "scratch: no pool: cuMemAlloc, a wait, cuMemFree\n");
}

static void test_registry(const char *root)
{
	struct asam_cuda_device *d0, *d1;
	struct asam_backend *be;
	struct asam_ctx *ctx;
	CUdeviceptr p;
	char names[64], cpus[64] = "";
	int ret;

	setenv("ASAM_SYSFS_ROOT", root, 1);
	install_fake_driver();
	ctx = ctx_with(NULL, names, sizeof(names));
	be = cuda_be(ctx);
	ksft_test_result(be && !strncmp(names, "cuda,", 5) && fake_retained == 2,
			 "probe: backends \"%s\", 2 primary contexts retained\n",
			 names);
	d0 = asam_cuda_device_of(be, 0);
	d1 = asam_cuda_device_of(be, 1);
	ksft_test_result(d0 && d1 && !asam_cuda_device_of(be, 2) &&
			 !strcmp(d0->name, "Fake H100 #0") && d0->cc_major == 9 &&
			 d0->sm_count == 132 && d1->sm_count == 131 &&
			 d0->total_mem == (size_t)80 << 30 &&
			 d0->l2_bytes == 52428800 &&
			 d0->smem_per_block_optin == 232448,
			 "registry: properties of both devices\n");
	if (d0)
		cpuset_format(&d0->cpus, cpus, sizeof(cpus));
	ksft_test_result(d0 && !strcmp(d0->pci_bus_id, "0000:17:00.0") &&
			 d0->numa_node == 1 && !strcmp(cpus, "2-3"),
			 "registry: cuda:0 at 0000:17:00.0 is on node 1, CPUs 2-3 (got %d, %s)\n",
			 d0 ? d0->numa_node : -99, cpus);
	ksft_test_result(d1 && !strcmp(d1->pci_bus_id, "0000:65:00.0") &&
			 d1->numa_node == -1 && cpuset_weight(&d1->cpus) == 6,
			 "registry: cuda:1 with numa_node -1 stays unknown, all 6 CPUs\n");

	ret = d0 ? asam_cuda_malloc(d0, (size_t)100 << 30, &p) : -1;
	ksft_test_result(ret == -ENOMEM &&
			 strstr(asam_last_error(), "CUDA_ERROR_OUT_OF_MEMORY (out of memory)"),
			 "memory: a driver error is -ENOMEM with its name: %s\n",
			 asam_last_error());
	ret = d0 ? asam_cuda_malloc(d0, 4096, &p) : -1;
	ksft_test_result(!ret && p == 0x1000, "memory: a plain allocation\n");
	test_scratch(d0, d1);
	asam_ctx_destroy(ctx);
	ksft_test_result(fake_retained == 0 && !fake_pool.live,
			 "remove: every context released, the pool destroyed\n");

	ctx = ctx_with("cuda:1", names, sizeof(names));
	be = cuda_be(ctx);
	ksft_test_result(be && !asam_cuda_device_of(be, 0) &&
			 asam_cuda_device_of(be, 1) && fake_retained == 1,
			 "devices=cuda:1: only cuda:1 (backends \"%s\")\n", names);
	asam_ctx_destroy(ctx);

	setenv("ASAM_DEVICES", "cpu", 1);
	ctx = ctx_with(NULL, names, sizeof(names));
	ksft_test_result(ctx && !cuda_be(ctx) && !strstr(names, "cuda") &&
			 strstr(names, "cpu_ref") &&
			 fake_retained == 0,
			 "ASAM_DEVICES=cpu: no cuda backend (backends \"%s\")\n",
			 names);
	asam_ctx_destroy(ctx);
	unsetenv("ASAM_DEVICES");

	fake_init_result = CUDA_ERROR_NO_DEVICE;
	memset(&cuda_drv, 0, sizeof(cuda_drv));
	cuda_drv_err = -ENODEV;
	strcpy(cuda_drv_msg, "cuInit: CUDA_ERROR_NO_DEVICE");
	ctx = ctx_with(NULL, names, sizeof(names));
	ksft_test_result(ctx && !cuda_be(ctx) && strstr(names, "cpu_ref"),
			 "no GPU: the context still serves from \"%s\"\n", names);
	asam_ctx_destroy(ctx);
	unsetenv("ASAM_SYSFS_ROOT");
}

int main(void)
{
	const char *root;

	ksft_print_header();
	ksft_set_plan(22);
	test_loader();
	root = fake_sysfs_make();
	if (!root) {
		ksft_test_result_skip("cannot build a fake sysfs tree\n");
		ksft_finished();
	}
	test_registry(root);
	fake_sysfs_remove(root);
	ksft_finished();
}
