// SPDX-License-Identifier: MIT
/*
 * On a GPU: what a kernel costs the first time, from disk, and from
 * memory, including cuModuleLoadData.  Three processes share one fresh
 * cache directory: the first compiles (cold), the second finds the entry
 * on disk (its memory tier is empty), and that one then times memory hits.
 * Targets (issue 4): cold <= 3 s, disk hit <= 20 ms, memory hit <= 2 us.
 * Without a GPU, a driver or NVRTC: SKIP.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include <asam/asam.h>
#include <internal/ctx.h>
#include <internal/cuda.h>
#include <internal/jit.h>

#include "../lib/kselftest.h"

static double now(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return ts.tv_sec + ts.tv_nsec * 1e-9;
}

/* child: get the kernel, load it into the module; write ms to @fd */
static int child(int fd, bool memloop)
{
	struct asam_ctx *ctx;
	struct asam_cuda_backend *cb = NULL;
	const struct asam_jit_image *img;
	struct asam_jit_spec spec;
	struct asam_jit_stats st;
	double t0, t_get, t_load, t_mem = 0;
	CUmodule mod;
	int i, arch, ret;

	if (asam_ctx_create(NULL, &ctx))
		return 2;
	for (i = 0; i < ctx->nr_backends; i++)
		if (!strcmp(ctx->backends[i].ops->name, "cuda"))
			cb = ctx->backends[i].priv;
	if (!cb || !cb->ndev)
		return 4;
	arch = cb->dev[0].cc_major * 10 + cb->dev[0].cc_minor;
	asam_jit_spec_init(&spec, "selftest", arch);
	asam_jit_spec_set(&spec, "DTYPE", 0);
	asam_jit_spec_set(&spec, "BLOCK", 256);
	asam_jit_spec_set(&spec, "SEQ_BUCKET", 4096);
	t0 = now();
	ret = asam_jit_get(&spec, &img);
	t_get = now() - t0;
	if (ret)
		return 3;
	t0 = now();
	ret = asam_cuda_module_load(&cb->dev[0], img->data, &mod);
	t_load = now() - t0;
	if (ret)
		return 3;
	if (memloop) {
		t0 = now();
		for (i = 0; i < 100000; i++)
			asam_jit_get(&spec, &img);
		t_mem = (now() - t0) / 100000;
	}
	asam_jit_stats(&st);
	dprintf(fd, "%.6f %.6f %.9f %lu %lu\n", t_get, t_load, t_mem,
		st.compiles, st.disk_hits);
	asam_ctx_destroy(ctx);
	return 0;
}

static int run(bool memloop, double *get, double *load, double *mem,
	       unsigned long *compiles, unsigned long *disk)
{
	int pfd[2], st;
	char buf[256] = "";
	pid_t pid;

	if (pipe(pfd))
		return -1;
	pid = fork();
	if (!pid) {
		close(pfd[0]);
		_exit(child(pfd[1], memloop));
	}
	close(pfd[1]);
	if (read(pfd[0], buf, sizeof(buf) - 1) < 0)
		buf[0] = '\0';
	close(pfd[0]);
	waitpid(pid, &st, 0);
	if (!WIFEXITED(st) || WEXITSTATUS(st))
		return WIFEXITED(st) ? WEXITSTATUS(st) : -1;
	return sscanf(buf, "%lf %lf %lf %lu %lu", get, load, mem, compiles,
		      disk) == 5 ? 0 : -1;
}

int main(void)
{
	char dir[] = "/tmp/asam-jit-gpu-XXXXXX";
	double g1, l1, m1, g2, l2, m2;
	unsigned long c1, d1, c2, d2;
	int ret;

	ksft_print_header();
	if (!mkdtemp(dir))
		ksft_exit_skip("mkdtemp failed\n");
	setenv("ASAM_CACHE_DIR", dir, 1);
	unsetenv("ASAM_JIT_FORCE");
	ret = run(false, &g1, &l1, &m1, &c1, &d1);
	if (ret == 4 || ret == 2)
		ksft_exit_skip("no CUDA device\n");
	if (ret == 3)
		ksft_exit_skip("no NVRTC or no module load: %s\n",
			       asam_last_error());
	ksft_test_result(!ret && c1 == 1 && g1 + l1 <= 3.0,
			 "cold: compile %.1f ms + cuModuleLoadData %.2f ms (compiles %lu)\n",
			 g1 * 1e3, l1 * 1e3, c1);
	ret = run(true, &g2, &l2, &m2, &c2, &d2);
	ksft_test_result(!ret && c2 == 0 && d2 == 1 && g2 + l2 <= 0.020,
			 "disk hit: read+verify %.3f ms + cuModuleLoadData %.3f ms (compiles %lu)\n",
			 g2 * 1e3, l2 * 1e3, c2);
	ksft_test_result(!ret && m2 <= 2e-6, "memory hit: %.0f ns per call\n",
			 m2 * 1e9);
	if (fork() == 0)
		execlp("rm", "rm", "-rf", dir, (char *)NULL);
	wait(NULL);
	ksft_finished();
}
