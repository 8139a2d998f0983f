// SPDX-License-Identifier: MIT
/*
 * kdev emu: a fake libcuda.so for ASAM_LIBCUDA.  Device memory is host
 * memory; cuModuleLoadData takes the text that wrap.c's asam_jit_get
 * returns instead of a cubin ("EMU", family and source, the defines),
 * compiles the kernel sources patched by patch.py with g++ into a shared
 * object (cached under $ASAM_EMU_DIR/cache) and cuLaunchKernel runs every
 * block with one fiber per thread.  EMU_REVERSE=1 runs the fibers in
 * reverse order between barriers, 2 in a scattered order: a missing
 * barrier then shows as a wrong result.
 */
#define _GNU_SOURCE
#include <cuda.h>
#include <dlfcn.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <ucontext.h>
#include <unistd.h>

struct emu_dim { unsigned x, y, z; };
struct emu_api {
	struct emu_dim *bid, *bdim;
	struct emu_dim *(*tid)(void);
	void *(*smem)(void);
	void (*sync)(void);
	void (*wsync)(void);
	uint64_t *(*xch)(void);
	struct emu_dim *gdim;
};

#define MAXT 1024
#define STK (256 * 1024)

static struct emu_dim bid, bdim, gdim;
static void *smem_buf;
static int nthr, cur, live, wlive[32];
static struct fib {
	ucontext_t uc;
	struct emu_dim tid;
	int done;
	char *stack;
} fib[MAXT];
static ucontext_t sched_uc;
static int bcount, wcount[32];
static unsigned bgen, wgen[32];
static uint64_t xbuf[32][32 * 8];
static void (*cur_fn)(void *);
static void *cur_arg;

static struct emu_dim *e_tid(void) { return &fib[cur].tid; }
static void *e_smem(void) { return smem_buf; }
static uint64_t *e_xch(void) { return xbuf[cur / 32]; }

static void yield(void)
{
	swapcontext(&fib[cur].uc, &sched_uc);
}

static void e_sync(void)
{
	unsigned g = bgen;

	if (++bcount >= live) {
		bcount = 0;
		bgen++;
		return;
	}
	while (bgen == g)
		yield();
}

static void e_wsync(void)
{
	int w = cur / 32;
	unsigned g = wgen[w];

	if (++wcount[w] >= wlive[w]) {
		wcount[w] = 0;
		wgen[w]++;
		return;
	}
	while (wgen[w] == g)
		yield();
}

static struct emu_api api = { &bid, &bdim, e_tid, e_smem, e_sync, e_wsync,
			      e_xch, &gdim };

static void entry(void)
{
	int w;

	cur_fn(cur_arg);
	fib[cur].done = 1;
	live--;
	w = cur / 32;
	wlive[w]--;
	if (bcount && bcount >= live) {
		bcount = 0;
		bgen++;
	}
	if (wcount[w] && wcount[w] >= wlive[w]) {
		wcount[w] = 0;
		wgen[w]++;
	}
}

static void run_block(void)
{
	int i, any;

	live = nthr;
	bcount = 0;
	for (i = 0; i < 32; i++) {
		wlive[i] = 0;
		wcount[i] = 0;
	}
	for (i = 0; i < nthr; i++) {
		wlive[i / 32]++;
		fib[i].done = 0;
		fib[i].tid = (struct emu_dim){ i, 0, 0 };
		if (!fib[i].stack)
			fib[i].stack = malloc(STK);
		getcontext(&fib[i].uc);
		fib[i].uc.uc_stack.ss_sp = fib[i].stack;
		fib[i].uc.uc_stack.ss_size = STK;
		fib[i].uc.uc_link = &sched_uc;
		makecontext(&fib[i].uc, entry, 0);
	}
	static int rev = -1;
	int k;

	if (rev < 0)
		rev = getenv("EMU_REVERSE") ? atoi(getenv("EMU_REVERSE")) : 0;
	do {
		any = 0;
		for (k = 0; k < nthr; k++) {
			/* 1: reverse; 2: a stride that scatters warps */
			cur = rev == 1 ? nthr - 1 - k :
			      rev == 2 ? (k * 37 + 11) % nthr : k;
			if (fib[cur].done)
				continue;
			any = 1;
			swapcontext(&sched_uc, &fib[cur].uc);
		}
	} while (any);
}

/* ---- modules ---- */
struct mod { void *h; };
struct fn { void (*f)(void *); };

static const char *kdir(void)
{
	const char *d = getenv("ASAM_EMU_DIR");

	return d ? d : "/tmp/asam-emu";
}

CUresult CUDAAPI cuModuleLoadData(CUmodule *module, const void *image)
{
	const char *txt = image;
	char fam[64], src[64], path[512], so[512], cmd[2048];
	unsigned long h = 5381;
	const char *p;
	FILE *f;
	struct mod *m;

	if (strncmp(txt, "EMU\n", 4))
		return CUDA_ERROR_INVALID_IMAGE;
	for (p = txt; *p; p++)
		h = h * 33 + (unsigned char)*p;
	sscanf(txt, "EMU\n%63s %63s", fam, src);
	snprintf(so, sizeof(so), "%s/cache/%lx.so", kdir(), h);
	if (access(so, R_OK)) {
		snprintf(path, sizeof(path), "%s/cache/%lx.cpp", kdir(), h);
		f = fopen(path, "w");
		fprintf(f, "#define ASAM_JIT 1\n#define ASAM_ARCH 90\n");
		p = strchr(txt + 4, '\n') + 1;
		while (*p) {
			char name[64];
			long long v;
			int n;

			if (sscanf(p, "%63s %lld%n", name, &v, &n) != 2)
				break;
			fprintf(f, "#define ASAM_%s %lld\n", name, v);
			p = strchr(p, '\n');
			if (!p)
				break;
			p++;
		}
		fprintf(f, "#include \"emu_rt.h\"\n#include \"%s\"\n", src);
		fclose(f);
		snprintf(cmd, sizeof(cmd),
			 "g++ -std=c++17 -O1 -g -fPIC -shared -ffp-contract=off -w -I%s -I%s/k -o %s %s",
			 kdir(), kdir(), so, path);
		fprintf(stderr, "emu: compiling %s %s\n", fam, path);
		if (system(cmd))
			return CUDA_ERROR_INVALID_IMAGE;
	}
	m = calloc(1, sizeof(*m));
	m->h = dlopen(so, RTLD_NOW | RTLD_LOCAL);
	if (!m->h) {
		fprintf(stderr, "emu: %s\n", dlerror());
		return CUDA_ERROR_INVALID_IMAGE;
	}
	((void (*)(struct emu_api *))dlsym(m->h, "emu_bind"))(&api);
	*module = (CUmodule)m;
	return CUDA_SUCCESS;
}

CUresult CUDAAPI cuModuleGetFunction(CUfunction *hfunc, CUmodule hmod,
				     const char *name)
{
	struct mod *m = (struct mod *)hmod;
	void *(*lookup)(const char *);
	struct fn *f;
	void *s;

	*(void **)&lookup = dlsym(m->h, "emu_lookup");
	s = lookup ? lookup(name) : NULL;
	if (!s)
		return CUDA_ERROR_NOT_FOUND;
	f = malloc(sizeof(*f));
	*(void **)&f->f = s;
	*hfunc = (CUfunction)f;
	return CUDA_SUCCESS;
}

CUresult CUDAAPI cuLaunchKernel(CUfunction f, unsigned int gx, unsigned int gy,
				unsigned int gz, unsigned int bx,
				unsigned int by, unsigned int bz,
				unsigned int smem, CUstream s, void **params,
				void **extra)
{
	unsigned x, y, z;

	(void)s; (void)extra; (void)by; (void)bz;
	if (bx > MAXT)
		return CUDA_ERROR_INVALID_VALUE;
	free(smem_buf);
	/* 1024-aligned: the Hopper kernels' swizzle works on the offsets */
	smem_buf = aligned_alloc(1024, (smem + 1024 + 1023) & ~1023u);
	cur_fn = ((struct fn *)f)->f;
	cur_arg = params[0];
	nthr = bx;
	bdim = (struct emu_dim){ bx, 1, 1 };
	gdim = (struct emu_dim){ gx, gy, gz };
	for (z = 0; z < gz; z++)
		for (y = 0; y < gy; y++)
			for (x = 0; x < gx; x++) {
				bid = (struct emu_dim){ x, y, z };
				memset(smem_buf, 0x5a, smem);
				run_block();
			}
	return CUDA_SUCCESS;
}

/* ---- the rest of the driver ---- */
CUresult CUDAAPI cuInit(unsigned int flags) { (void)flags; return CUDA_SUCCESS; }
CUresult CUDAAPI cuDriverGetVersion(int *v) { *v = 13000; return CUDA_SUCCESS; }
CUresult CUDAAPI cuGetErrorName(CUresult e, const char **s) { (void)e; *s = "CUDA_ERROR_EMU"; return CUDA_SUCCESS; }
CUresult CUDAAPI cuGetErrorString(CUresult e, const char **s) { (void)e; *s = "emulated"; return CUDA_SUCCESS; }
CUresult CUDAAPI cuDeviceGetCount(int *n) { *n = 1; return CUDA_SUCCESS; }
CUresult CUDAAPI cuDeviceGet(CUdevice *d, int o) { *d = o; return CUDA_SUCCESS; }
CUresult CUDAAPI cuDeviceGetName(char *n, int len, CUdevice d) { (void)d; snprintf(n, len, "Emulated H100"); return CUDA_SUCCESS; }
CUresult CUDAAPI cuDeviceGetAttribute(int *v, CUdevice_attribute a, CUdevice d)
{
	(void)d;
	switch (a) {
	case CU_DEVICE_ATTRIBUTE_COMPUTE_CAPABILITY_MAJOR: *v = 9; break;
	case CU_DEVICE_ATTRIBUTE_COMPUTE_CAPABILITY_MINOR: *v = 0; break;
	case CU_DEVICE_ATTRIBUTE_MULTIPROCESSOR_COUNT: *v = 132; break;
	case CU_DEVICE_ATTRIBUTE_MAX_SHARED_MEMORY_PER_BLOCK_OPTIN: *v = 232448; break;
	case CU_DEVICE_ATTRIBUTE_L2_CACHE_SIZE: *v = 50 << 20; break;
	case CU_DEVICE_ATTRIBUTE_HOST_NUMA_ID: return CUDA_ERROR_INVALID_VALUE;
	default: *v = 0;
	}
	return CUDA_SUCCESS;
}
CUresult CUDAAPI cuDeviceTotalMem(size_t *b, CUdevice d) { (void)d; *b = 80ull << 30; return CUDA_SUCCESS; }
CUresult CUDAAPI cuDeviceGetPCIBusId(char *s, int len, CUdevice d) { (void)d; snprintf(s, len, "0000:00:00.0"); return CUDA_SUCCESS; }
CUresult CUDAAPI cuDevicePrimaryCtxRetain(CUcontext *c, CUdevice d) { (void)d; *c = (CUcontext)(uintptr_t)1; return CUDA_SUCCESS; }
CUresult CUDAAPI cuDevicePrimaryCtxRelease(CUdevice d) { (void)d; return CUDA_SUCCESS; }
CUresult CUDAAPI cuCtxSetCurrent(CUcontext c) { (void)c; return CUDA_SUCCESS; }
CUresult CUDAAPI cuCtxGetCurrent(CUcontext *c) { *c = (CUcontext)(uintptr_t)1; return CUDA_SUCCESS; }
CUresult CUDAAPI cuCtxSynchronize(void) { return CUDA_SUCCESS; }
CUresult CUDAAPI cuMemAlloc(CUdeviceptr *p, size_t n) { *p = (CUdeviceptr)(uintptr_t)aligned_alloc(256, (n + 255) & ~(size_t)255); memset((void *)(uintptr_t)*p, 0xa5, n); return CUDA_SUCCESS; }
CUresult CUDAAPI cuMemFree(CUdeviceptr p) { free((void *)(uintptr_t)p); return CUDA_SUCCESS; }
CUresult CUDAAPI cuMemGetInfo(size_t *f, size_t *t) { *f = *t = 80ull << 30; return CUDA_SUCCESS; }
CUresult CUDAAPI cuMemcpyHtoD(CUdeviceptr d, const void *s, size_t n) { memcpy((void *)(uintptr_t)d, s, n); return CUDA_SUCCESS; }
CUresult CUDAAPI cuMemcpyDtoH(void *d, CUdeviceptr s, size_t n) { memcpy(d, (void *)(uintptr_t)s, n); return CUDA_SUCCESS; }
CUresult CUDAAPI cuMemcpyDtoD(CUdeviceptr d, CUdeviceptr s, size_t n) { memcpy((void *)(uintptr_t)d, (void *)(uintptr_t)s, n); return CUDA_SUCCESS; }
CUresult CUDAAPI cuMemcpyHtoDAsync(CUdeviceptr d, const void *s, size_t n, CUstream st) { (void)st; return cuMemcpyHtoD(d, s, n); }
CUresult CUDAAPI cuMemcpyDtoHAsync(void *d, CUdeviceptr s, size_t n, CUstream st) { (void)st; return cuMemcpyDtoH(d, s, n); }
CUresult CUDAAPI cuMemsetD8(CUdeviceptr d, unsigned char v, size_t n) { memset((void *)(uintptr_t)d, v, n); return CUDA_SUCCESS; }
CUresult CUDAAPI cuMemsetD8Async(CUdeviceptr d, unsigned char v, size_t n, CUstream s) { (void)s; return cuMemsetD8(d, v, n); }
CUresult CUDAAPI cuMemsetD32Async(CUdeviceptr d, unsigned int v, size_t n, CUstream s) { size_t i; (void)s; for (i = 0; i < n; i++) ((unsigned *)(uintptr_t)d)[i] = v; return CUDA_SUCCESS; }
CUresult CUDAAPI cuStreamCreate(CUstream *s, unsigned int f) { (void)f; *s = (CUstream)(uintptr_t)2; return CUDA_SUCCESS; }
CUresult CUDAAPI cuStreamDestroy(CUstream s) { (void)s; return CUDA_SUCCESS; }
CUresult CUDAAPI cuStreamSynchronize(CUstream s) { (void)s; return CUDA_SUCCESS; }
CUresult CUDAAPI cuStreamIsCapturing(CUstream s, CUstreamCaptureStatus *st) { (void)s; *st = CU_STREAM_CAPTURE_STATUS_NONE; return CUDA_SUCCESS; }
CUresult CUDAAPI cuStreamWaitEvent(CUstream s, CUevent e, unsigned int f) { (void)s; (void)e; (void)f; return CUDA_SUCCESS; }
CUresult CUDAAPI cuEventCreate(CUevent *e, unsigned int f) { (void)f; *e = (CUevent)(uintptr_t)3; return CUDA_SUCCESS; }
CUresult CUDAAPI cuEventRecord(CUevent e, CUstream s) { (void)e; (void)s; return CUDA_SUCCESS; }
CUresult CUDAAPI cuEventSynchronize(CUevent e) { (void)e; return CUDA_SUCCESS; }
CUresult CUDAAPI cuEventElapsedTime(float *ms, CUevent a, CUevent b) { (void)a; (void)b; *ms = 0; return CUDA_SUCCESS; }
CUresult CUDAAPI cuEventDestroy(CUevent e) { (void)e; return CUDA_SUCCESS; }
CUresult CUDAAPI cuModuleUnload(CUmodule m) { (void)m; return CUDA_SUCCESS; }
CUresult CUDAAPI cuFuncSetAttribute(CUfunction f, CUfunction_attribute a, int v) { (void)f; (void)a; (void)v; return CUDA_SUCCESS; }
CUresult CUDAAPI cuOccupancyMaxActiveBlocksPerMultiprocessor(int *n, CUfunction f, int b, size_t s) { (void)f; (void)b; (void)s; *n = 1; return CUDA_SUCCESS; }
CUresult CUDAAPI cuMemHostRegister(void *p, size_t n, unsigned int f) { (void)p; (void)n; (void)f; return CUDA_SUCCESS; }
CUresult CUDAAPI cuMemHostUnregister(void *p) { (void)p; return CUDA_SUCCESS; }
CUresult CUDAAPI cuMemAllocHost(void **p, size_t n) { *p = malloc(n); return CUDA_SUCCESS; }
CUresult CUDAAPI cuMemFreeHost(void *p) { free(p); return CUDA_SUCCESS; }
/* no pools here: the attribute says so, and libasam takes cuMemAlloc */
CUresult CUDAAPI cuMemPoolCreate(CUmemoryPool *p, const CUmemPoolProps *pp) { (void)pp; *p = NULL; return CUDA_ERROR_NOT_SUPPORTED; }
CUresult CUDAAPI cuMemPoolDestroy(CUmemoryPool p) { (void)p; return CUDA_SUCCESS; }
CUresult CUDAAPI cuMemPoolSetAttribute(CUmemoryPool p, CUmemPool_attribute a, void *v) { (void)p; (void)a; (void)v; return CUDA_ERROR_NOT_SUPPORTED; }
CUresult CUDAAPI cuMemAllocFromPoolAsync(CUdeviceptr *d, size_t n, CUmemoryPool p, CUstream s) { (void)p; (void)s; return cuMemAlloc(d, n); }
CUresult CUDAAPI cuMemFreeAsync(CUdeviceptr d, CUstream s) { (void)s; return cuMemFree(d); }
CUresult CUDAAPI cuPointerGetAttribute(void *d, CUpointer_attribute a, CUdeviceptr p) { (void)a; (void)p; *(int *)d = CU_MEMORYTYPE_DEVICE; return CUDA_SUCCESS; }

#define E(n) { #n, (void *)n },
static const struct { const char *n; void *f; } tab[] = {
	E(cuInit) E(cuDriverGetVersion) E(cuGetErrorName) E(cuGetErrorString)
	E(cuDeviceGetCount) E(cuDeviceGet) E(cuDeviceGetName)
	E(cuDeviceGetAttribute) E(cuDeviceTotalMem) E(cuDeviceGetPCIBusId)
	E(cuDevicePrimaryCtxRetain) E(cuDevicePrimaryCtxRelease)
	E(cuCtxSetCurrent) E(cuCtxGetCurrent) E(cuCtxSynchronize)
	E(cuMemAlloc) E(cuMemFree) E(cuMemGetInfo) E(cuMemcpyHtoD)
	E(cuMemcpyDtoH) E(cuMemcpyDtoD) E(cuMemcpyHtoDAsync)
	E(cuMemcpyDtoHAsync) E(cuMemsetD8) E(cuMemsetD8Async)
	E(cuMemsetD32Async) E(cuStreamCreate) E(cuStreamDestroy)
	E(cuStreamSynchronize) E(cuStreamIsCapturing) E(cuStreamWaitEvent)
	E(cuEventCreate) E(cuEventRecord) E(cuEventSynchronize)
	E(cuEventElapsedTime) E(cuEventDestroy) E(cuModuleLoadData)
	E(cuModuleUnload) E(cuModuleGetFunction) E(cuFuncSetAttribute)
	E(cuLaunchKernel) E(cuOccupancyMaxActiveBlocksPerMultiprocessor)
	E(cuMemHostRegister) E(cuMemHostUnregister) E(cuMemAllocHost)
	E(cuMemFreeHost) E(cuPointerGetAttribute) E(cuMemPoolCreate)
	E(cuMemPoolDestroy) E(cuMemPoolSetAttribute)
	E(cuMemAllocFromPoolAsync) E(cuMemFreeAsync)
};

/* the loader asks for the plain names */
#undef cuGetProcAddress
CUresult CUDAAPI cuGetProcAddress_v2(const char *symbol, void **pfn,
				     int ver, cuuint64_t flags,
				     CUdriverProcAddressQueryResult *st)
{
	unsigned i;

	(void)ver; (void)flags;
	for (i = 0; i < sizeof(tab) / sizeof(tab[0]); i++)
		if (!strcmp(tab[i].n, symbol)) {
			*pfn = tab[i].f;
			if (st)
				*st = CU_GET_PROC_ADDRESS_SUCCESS;
			return CUDA_SUCCESS;
		}
	*pfn = NULL;
	if (st)
		*st = CU_GET_PROC_ADDRESS_SYMBOL_NOT_FOUND;
	return CUDA_ERROR_NOT_FOUND;
}
