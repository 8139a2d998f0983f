// SPDX-License-Identifier: MIT
/*
 * Contexts, error strings, version, and the library's exported surface:
 * the shared object exports the public asam_* API and nothing internal.
 */
#include <dlfcn.h>
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <asam/asam.h>

#include "../lib/kselftest.h"

static void test_ctx(void)
{
	struct asam_ctx_opts opts = { .sz = sizeof(opts), .log_level = -1 };
	struct asam_ctx *ctx = NULL;
	char names[64], tiny[4];
	int ret;

	ret = asam_ctx_create(NULL, &ctx);
	ksft_test_result(!ret && ctx, "default context\n");
	ret = asam_ctx_backends(ctx, names, sizeof(names));
	ksft_test_result(!ret && strstr(names, "cpu_ref"),
			 "backends listed: %s\n", names);
	ret = asam_ctx_backends(ctx, tiny, sizeof(tiny));
	ksft_test_result(ret == -ENOSPC, "small buffer: -ENOSPC\n");
	asam_ctx_destroy(ctx);
	asam_ctx_destroy(NULL);

	ret = asam_ctx_create(NULL, NULL);
	ksft_test_result(ret == -EINVAL && strstr(asam_last_error(), "out"),
			 "NULL out refused: %s\n", asam_last_error());
	opts.devices = "cpu,gpu7";
	ctx = NULL;
	ret = asam_ctx_create(&opts, &ctx);
	ksft_test_result(ret == -EINVAL && !ctx &&
			 strstr(asam_last_error(), "gpu7"),
			 "bad device list refused: %s\n", asam_last_error());
	opts.devices = "cpu";
	opts.log_level = 9;
	ret = asam_ctx_create(&opts, &ctx);
	ksft_test_result(ret == -EINVAL && strstr(asam_last_error(), "log_level"),
			 "bad log level refused: %s\n", asam_last_error());
	/* an older caller's smaller struct gets the defaults */
	opts.sz = sizeof(size_t);
	ret = asam_ctx_create(&opts, &ctx);
	ksft_test_result(!ret, "opts with sz = sizeof(size_t) accepted\n");
	asam_ctx_destroy(ctx);
	setenv("ASAM_DEVICES", "cuda:x", 1);
	ret = asam_ctx_create(NULL, &ctx);
	ksft_test_result(ret == -EINVAL, "ASAM_DEVICES is validated: %s\n",
			 asam_last_error());
	unsetenv("ASAM_DEVICES");
}

static void test_strings(void)
{
	struct asam_pattern p;

	ksft_test_result(!strcmp(asam_strerror(-EOPNOTSUPP),
				 asam_strerror(EOPNOTSUPP)) &&
			 strlen(asam_strerror(-12345)) > 0,
			 "asam_strerror: %s\n", asam_strerror(-EOPNOTSUPP));
	ksft_test_result(!strcmp(asam_pattern_name(ASAM_PATTERN_HIERARCHICAL),
				 "hierarchical") &&
			 !strcmp(asam_pattern_name(99), "?"),
			 "pattern names\n");
	ksft_test_result(!asam_pattern_init(&p, ASAM_PATTERN_STRIDED) &&
			 p.window == 128 && p.stride == 32 && p.radius == 16 &&
			 p.num_scales == 3 && p.scales[2] == 64 &&
			 p.keys_per_row == 128 && p.seed == 42 &&
			 p.num_clusters == 32 && p.cluster_temp == 0.5f &&
			 p.sz == sizeof(p),
			 "pattern defaults are the original's\n");
	ksft_test_result(asam_pattern_init(&p, ASAM_PATTERN_NR_KINDS) == -EINVAL,
			 "unknown kind refused\n");
	ksft_test_result(ASAM_VERSION == ASAM_VERSION_MAJOR * 10000 +
			 ASAM_VERSION_MINOR * 100 + ASAM_VERSION_PATCH,
			 "version %s\n", ASAM_VERSION_STRING);
}

/* The .so exports the API and hides everything else. */
static void test_exports(const char *argv0)
{
	char path[4096];
	const char *slash = strrchr(argv0, '/');
	void *h;

	snprintf(path, sizeof(path), "%.*s/../../../build/libasam.so.0",
		 slash ? (int)(slash - argv0) : 1, slash ? argv0 : ".");
	h = dlopen(path, RTLD_NOW | RTLD_LOCAL);
	if (!h) {
		ksft_test_result_skip("dlopen %s: %s\n", path, dlerror());
		return;
	}
	ksft_test_result(dlsym(h, "asam_attn_fwd") && dlsym(h, "asam_attn_bwd") &&
			 dlsym(h, "asam_last_error") &&
			 dlsym(h, "asam_cluster_update"),
			 "libasam.so.0 exports the API\n");
	ksft_test_result(!dlsym(h, "asam_pat_row") && !dlsym(h, "asam_err") &&
			 !dlsym(h, "asam_tv_from") &&
			 !dlsym(h, "asam_backend_cpu_ref_ops"),
			 "libasam.so.0 hides internal symbols\n");
	dlclose(h);
}

int main(int argc, char **argv)
{
	ksft_print_header();
	test_ctx();
	test_strings();
	test_exports(argv[0]);
	ksft_finished();
}
