/* SPDX-License-Identifier: MIT */
/* The NVRTC entry points the JIT uses (jit/ private). */
#ifndef ASAM_JIT_NVRTC_H
#define ASAM_JIT_NVRTC_H

#include <nvrtc.h>

struct asam_nvrtc {
	void *handle;
	int major, minor;
	int narchs;
	int archs[64];
	nvrtcResult (*nvrtcVersion)(int *, int *);
	const char *(*nvrtcGetErrorString)(nvrtcResult);
	nvrtcResult (*nvrtcGetNumSupportedArchs)(int *);
	nvrtcResult (*nvrtcGetSupportedArchs)(int *);
	nvrtcResult (*nvrtcCreateProgram)(nvrtcProgram *, const char *,
					  const char *, int,
					  const char *const *,
					  const char *const *);
	nvrtcResult (*nvrtcDestroyProgram)(nvrtcProgram *);
	nvrtcResult (*nvrtcCompileProgram)(nvrtcProgram, int,
					   const char *const *);
	nvrtcResult (*nvrtcGetPTXSize)(nvrtcProgram, size_t *);
	nvrtcResult (*nvrtcGetPTX)(nvrtcProgram, char *);
	nvrtcResult (*nvrtcGetCUBINSize)(nvrtcProgram, size_t *);
	nvrtcResult (*nvrtcGetCUBIN)(nvrtcProgram, char *);
	nvrtcResult (*nvrtcGetProgramLogSize)(nvrtcProgram, size_t *);
	nvrtcResult (*nvrtcGetProgramLog)(nvrtcProgram, char *);
};

/* loads once; ERR_PTR(-ENOENT) with a message when NVRTC is absent */
const struct asam_nvrtc *asam_nvrtc_get(void);

#endif
