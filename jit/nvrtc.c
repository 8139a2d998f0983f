// SPDX-License-Identifier: MIT
/*
 * NVRTC, opened at run time.  The library never links libnvrtc: a machine
 * without the CUDA toolkit must load libasam and run the CPU backend.  The
 * versioned sonames come first (a distribution's unversioned libnvrtc.so
 * is a development symlink that may be absent or point elsewhere);
 * ASAM_LIBNVRTC names a file to use instead.  nvrtc.h supplies the types
 * only.
 */
#include <dlfcn.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <nvrtc.h>

#include <internal/compiler.h>
#include <internal/err.h>
#include <internal/jit.h>
#include <internal/log.h>

#include "nvrtc-api.h"

static struct asam_nvrtc nv;
static int nv_err;
static char nv_msg[256];
static pthread_once_t nv_once = PTHREAD_ONCE_INIT;

#define NV_SYM(f) { #f, (void **)&nv.f }

static void nvrtc_load(void)
{
	static const char *const names[] = {
		"libnvrtc.so.13", "libnvrtc.so.12", "libnvrtc.so",
	};
	const struct { const char *sym; void **fn; } syms[] = {
		NV_SYM(nvrtcVersion),
		NV_SYM(nvrtcGetErrorString),
		NV_SYM(nvrtcGetNumSupportedArchs),
		NV_SYM(nvrtcGetSupportedArchs),
		NV_SYM(nvrtcCreateProgram),
		NV_SYM(nvrtcDestroyProgram),
		NV_SYM(nvrtcCompileProgram),
		NV_SYM(nvrtcGetPTXSize),
		NV_SYM(nvrtcGetPTX),
		NV_SYM(nvrtcGetCUBINSize),
		NV_SYM(nvrtcGetCUBIN),
		NV_SYM(nvrtcGetProgramLogSize),
		NV_SYM(nvrtcGetProgramLog),
	};
	const char *env = getenv("ASAM_LIBNVRTC");
	void *h = NULL;
	size_t i;
	int n;

	if (env && *env) {
		h = dlopen(env, RTLD_NOW | RTLD_LOCAL);
		if (!h) {
			nv_err = -ENOENT;
			snprintf(nv_msg, sizeof(nv_msg),
				 "ASAM_LIBNVRTC=%s: %s", env, dlerror());
			return;
		}
	}
	for (i = 0; !h && i < ARRAY_SIZE(names); i++)
		h = dlopen(names[i], RTLD_NOW | RTLD_LOCAL);
	if (!h) {
		nv_err = -ENOENT;
		snprintf(nv_msg, sizeof(nv_msg),
			 "libnvrtc not found (tried libnvrtc.so.13, .so.12, .so; set ASAM_LIBNVRTC): CUDA kernels cannot be compiled");
		return;
	}
	for (i = 0; i < ARRAY_SIZE(syms); i++) {
		*syms[i].fn = dlsym(h, syms[i].sym);
		if (!*syms[i].fn) {
			nv_err = -ENOENT;
			snprintf(nv_msg, sizeof(nv_msg),
				 "libnvrtc lacks %s (too old?)", syms[i].sym);
			dlclose(h);
			return;
		}
	}
	if (nv.nvrtcVersion(&nv.major, &nv.minor) != NVRTC_SUCCESS ||
	    nv.major < 11) {
		nv_err = -ENOENT;
		snprintf(nv_msg, sizeof(nv_msg),
			 "libnvrtc %d.%d is too old (need 11.x or newer)",
			 nv.major, nv.minor);
		dlclose(h);
		return;
	}
	if (nv.nvrtcGetNumSupportedArchs(&n) == NVRTC_SUCCESS && n > 0) {
		nv.narchs = min_t(int, n, (int)ARRAY_SIZE(nv.archs));
		if (n > (int)ARRAY_SIZE(nv.archs) ||
		    nv.nvrtcGetSupportedArchs(nv.archs) != NVRTC_SUCCESS)
			nv.narchs = 0;
	}
	nv.handle = h;
	pr_debug("jit: NVRTC %d.%d, %d SASS targets", nv.major, nv.minor,
		 nv.narchs);
}

const struct asam_nvrtc *asam_nvrtc_get(void)
{
	pthread_once(&nv_once, nvrtc_load);
	if (nv_err) {
		asam_err(nv_err, "jit: %s", nv_msg);
		return ERR_PTR(nv_err);
	}
	return &nv;
}

int asam_jit_nvrtc_version(int *major, int *minor)
{
	const struct asam_nvrtc *n = asam_nvrtc_get();

	if (IS_ERR(n))
		return PTR_ERR(n);
	*major = n->major;
	*minor = n->minor;
	return 0;
}

bool asam_jit_nvrtc_has_sass(int arch)
{
	const struct asam_nvrtc *n = asam_nvrtc_get();
	int i;

	if (IS_ERR(n))
		return false;
	for (i = 0; i < n->narchs; i++)
		if (n->archs[i] == arch)
			return true;
	return false;
}
