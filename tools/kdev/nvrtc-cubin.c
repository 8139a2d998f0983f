// SPDX-License-Identifier: MIT
/*
 * kdev: compile one kernel family specialisation with NVRTC, the way the
 * library's JIT does (named headers, no toolkit include path), and write
 * the cubin.  Development tool only: lets the GPU harness run prebuilt
 * cubins and proves NVRTC accepts the sources.
 *
 *	nvrtc-cubin OUT.cubin SRC.cu ARCH NAME=VAL... -- HDR.cuh...
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <nvrtc.h>

/* jit/kernels has 12 headers; each named one is passed to NVRTC */
#define MAX_HDRS	32

static char *slurp(const char *path)
{
	FILE *f = fopen(path, "rb");
	long n;
	char *s;

	if (!f)
		return NULL;
	fseek(f, 0, SEEK_END);
	n = ftell(f);
	rewind(f);
	s = malloc(n + 1);
	if (fread(s, 1, n, f) != (size_t)n)
		n = 0;
	s[n] = 0;
	fclose(f);
	return s;
}

int main(int argc, char **argv)
{
	const char *hdr_names[MAX_HDRS], *opts[4];
	char *hdrs[MAX_HDRS], *src, *body, arch[64], *cubin, *logs;
	size_t pre = 0, n;
	int nh = 0, i, a, nopt = 0;
	nvrtcProgram prog;
	nvrtcResult r;
	FILE *f;

	if (argc < 4)
		return 2;
	body = slurp(argv[2]);
	if (!body)
		return 3;
	src = malloc(strlen(body) + 4096);
	src[0] = 0;
	for (a = 4; a < argc && strcmp(argv[a], "--"); a++) {
		char *eq = strchr(argv[a], '=');

		*eq = 0;
		pre += sprintf(src + pre, "#define %s %s\n", argv[a], eq + 1);
	}
	strcpy(src + pre, body);
	if (argc - a - 1 > MAX_HDRS) {
		fprintf(stderr, "nvrtc-cubin: more than %d headers\n",
			MAX_HDRS);
		return 2;
	}
	for (a++; a < argc && nh < MAX_HDRS; a++) {
		const char *base = strrchr(argv[a], '/');

		hdrs[nh] = slurp(argv[a]);
		hdr_names[nh++] = base ? base + 1 : argv[a];
	}
	snprintf(arch, sizeof(arch), "--gpu-architecture=sm_%s", argv[3]);
	opts[nopt++] = arch;
	opts[nopt++] = "--std=c++17";

	if (nvrtcCreateProgram(&prog, src, argv[2], nh,
			       (const char *const *)hdrs, hdr_names))
		return 4;
	r = nvrtcCompileProgram(prog, nopt, opts);
	nvrtcGetProgramLogSize(prog, &n);
	logs = malloc(n + 1);
	nvrtcGetProgramLog(prog, logs);
	if (n > 1)
		fprintf(stderr, "%s\n", logs);
	if (r != NVRTC_SUCCESS) {
		fprintf(stderr, "nvrtc: %s\n", nvrtcGetErrorString(r));
		return 1;
	}
	nvrtcGetCUBINSize(prog, &n);
	cubin = malloc(n);
	nvrtcGetCUBIN(prog, cubin);
	f = fopen(argv[1], "wb");
	if (!f || fwrite(cubin, 1, n, f) != n)
		return 5;
	fclose(f);
	for (i = 0; i < nh; i++)
		free(hdrs[i]);
	return 0;
}
