// SPDX-License-Identifier: MIT
/*
 * Every kernel variant the .config enables, compiled by NVRTC for sm_80
 * and sm_90 (no GPU needed), split over worker processes so the test stays
 * quick on a small CI machine; plus the failure paths: no NVRTC, and a
 * compile error whose log must reach asam_last_error() and ASAM_JIT_DUMP.
 */
#include <dirent.h>
#include <stdio.h>
#include <stdlib.h>
#include <sys/wait.h>
#include <unistd.h>

#include <asam/asam.h>
#include <internal/jit.h>

#include "../lib/kselftest.h"
#include "jit_common.h"

#define MAX_VARIANTS 4096

struct collect {
	struct asam_jit_spec *v;
	int n;
};

static int collect_cb(const struct asam_jit_spec *spec, void *arg)
{
	struct collect *c = arg;

	if (c->n == MAX_VARIANTS)
		return -E2BIG;
	c->v[c->n++] = *spec;
	return 0;
}

/* Worker @w of @nw: compile its share, print one line per failure. */
static int worker(const struct collect *c, int w, int nw)
{
	const struct asam_jit_family *fam;
	struct asam_jit_image img;
	void *data;
	int i, bad = 0, err;

	for (i = w; i < c->n; i += nw) {
		fam = asam_jit_family_find(c->v[i].family);
		err = asam_jit_compile(&c->v[i], &data, &img.size, &img.cubin);
		img.data = err ? NULL : data;
		if (err || !image_ok(&img, fam)) {
			char canon[1024];

			asam_jit_spec_canon(&c->v[i], canon, sizeof(canon));
			printf("# FAILED %s: %d %s\n", canon, err,
			       asam_last_error());
			bad++;
		}
		free((void *)img.data);
	}
	fflush(stdout);		/* the caller leaves by _exit() */
	return bad ? 1 : 0;
}

static void test_no_nvrtc(void)
{
	pid_t pid = fork();
	int st;

	if (!pid) {
		struct asam_jit_spec s;
		const struct asam_jit_image *img;
		int err;

		setenv("ASAM_LIBNVRTC", "/nonexistent/libnvrtc.so", 1);
		selftest_spec(&s, 80, 0, 128);
		err = asam_jit_get(&s, &img);
		_exit(err == -ENOENT && strstr(asam_last_error(),
					       "ASAM_LIBNVRTC") ? 0 : 1);
	}
	waitpid(pid, &st, 0);
	ksft_test_result(WIFEXITED(st) && !WEXITSTATUS(st),
			 "missing NVRTC gives -ENOENT with a message\n");
}

static void test_compile_error(void)
{
	char dir[] = "/tmp/asam-jit-dump-XXXXXX";
	struct asam_jit_spec s;
	size_t size;
	bool cubin;
	void *data;
	struct dirent *de;
	int err, nfiles = 0;
	DIR *d;

	if (!mkdtemp(dir)) {
		ksft_test_result_fail("mkdtemp\n");
		return;
	}
	setenv("ASAM_JIT_DUMP", dir, 1);
	selftest_spec(&s, 80, 0, 100);	/* not a power of two */
	err = asam_jit_compile(&s, &data, &size, &cubin);
	unsetenv("ASAM_JIT_DUMP");
	ksft_test_result(err == -ENOEXEC &&
			 strstr(asam_last_error(), "BLOCK must be a power"),
			 "compile error: -ENOEXEC, log in asam_last_error\n");
	d = opendir(dir);
	while (d && (de = readdir(d))) {
		char p[512];

		if (de->d_name[0] == '.')
			continue;
		nfiles++;
		snprintf(p, sizeof(p), "%s/%s", dir, de->d_name);
		unlink(p);
	}
	if (d)
		closedir(d);
	rmdir(dir);
	ksft_test_result(nfiles == 3,
			 "ASAM_JIT_DUMP wrote source, options, log (%d)\n",
			 nfiles);
}

int main(void)
{
	static const int archs[] = { 80, 90 };
	struct collect c = { 0 };
	int nw = 2, i, a, st, bad = 0, err;
	long ncpu = sysconf(_SC_NPROCESSORS_ONLN);
	double t0, t;
	pid_t pid[16];

	ksft_print_header();
	ksft_set_plan(1 + 2 * asam_jit_nfamilies + 2);
	test_no_nvrtc();
	if (!have_nvrtc()) {
		ksft_print_msg("%s\n", asam_last_error());
		ksft_exit_skip("NVRTC not available\n");
	}
	if (ncpu > 2)
		nw = min_t(int, ncpu, 16);
	c.v = calloc(MAX_VARIANTS, sizeof(*c.v));
	for (i = 0; i < asam_jit_nfamilies; i++) {
		const struct asam_jit_family *fam = &asam_jit_families[i];

		for (a = 0; a < 2; a++) {
			c.n = 0;
			err = asam_jit_variants(fam, archs[a], collect_cb, &c);
			t0 = now_s();
			for (int w = 0; w < nw; w++) {
				pid[w] = fork();
				if (!pid[w])
					_exit(worker(&c, w, nw));
			}
			for (int w = 0; w < nw; w++) {
				waitpid(pid[w], &st, 0);
				if (!WIFEXITED(st) || WEXITSTATUS(st))
					bad++;
			}
			t = now_s() - t0;
			ksft_test_result(!err && !bad,
					 "%s sm_%d: %d variants compiled in %.2f s (%d workers, %.2f s/variant/worker)\n",
					 fam->name, archs[a], c.n, t, nw,
					 c.n ? t * nw / c.n : 0.0);
			bad = 0;
		}
	}
	test_compile_error();
	free(c.v);
	ksft_finished();
}
