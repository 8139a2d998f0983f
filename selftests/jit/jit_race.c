// SPDX-License-Identifier: MIT
/*
 * Eight processes start compiling the same variant at the same moment into
 * one empty cache directory.  Every one must succeed, and the directory
 * must end with exactly one valid entry and no temp files; a ninth process
 * then loads it from disk without compiling.
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

#define NPROC 8

static int child(int gate, const struct asam_jit_spec *spec)
{
	const struct asam_jit_image *img;
	struct asam_jit_stats st;
	char c;

	/* wait until every sibling exists: the parent closes the pipe */
	if (read(gate, &c, 1) < 0)
		return 2;
	if (asam_jit_get(spec, &img))
		return 1;
	asam_jit_stats(&st);
	if (st.disk_disabled || !image_ok(img, asam_jit_family_find("selftest")))
		return 1;
	return 0;
}

int main(void)
{
	char dir[] = "/tmp/asam-jit-race-XXXXXX", path[512], cmd[600];
	const struct asam_jit_image *img;
	struct asam_jit_spec spec;
	struct asam_jit_stats st;
	struct dirent *de;
	int gate[2], i, st_, ok = 0, entries = 0, tmps = 0, valid = 0;
	pid_t pid[NPROC];
	double t0;
	DIR *d;

	ksft_print_header();
	if (!have_nvrtc())
		ksft_exit_skip("NVRTC not available: %s\n", asam_last_error());
	ksft_set_plan(3);
	if (!mkdtemp(dir) || pipe(gate))
		ksft_exit_skip("mkdtemp/pipe failed\n");
	setenv("ASAM_CACHE_DIR", dir, 1);
	unsetenv("ASAM_JIT_FORCE");
	selftest_spec(&spec, 90, 1, 256);

	for (i = 0; i < NPROC; i++) {
		pid[i] = fork();
		if (!pid[i]) {
			close(gate[1]);
			_exit(child(gate[0], &spec));
		}
	}
	close(gate[0]);
	t0 = now_s();
	close(gate[1]);
	for (i = 0; i < NPROC; i++) {
		waitpid(pid[i], &st_, 0);
		ok += WIFEXITED(st_) && !WEXITSTATUS(st_);
	}
	ksft_test_result(ok == NPROC,
			 "%d of %d racing processes got a valid image (%.2f s)\n",
			 ok, NPROC, now_s() - t0);

	d = opendir(dir);
	while (d && (de = readdir(d))) {
		if (!strncmp(de->d_name, ".tmp-", 5))
			tmps++;
		if (!strstr(de->d_name, ASAM_JIT_SUFFIX))
			continue;
		entries++;
		snprintf(path, sizeof(path), "%s/%s", dir, de->d_name);
		valid += !asam_jit_entry_read(path, NULL, NULL, NULL);
	}
	if (d)
		closedir(d);
	ksft_test_result(entries == 1 && valid == 1 && !tmps,
			 "one valid entry, no temp files (%d entries, %d valid, %d temp)\n",
			 entries, valid, tmps);

	i = asam_jit_get(&spec, &img);
	asam_jit_stats(&st);
	ksft_test_result(!i && st.disk_hits == 1 && !st.compiles,
			 "a later process loads the entry without compiling\n");
	snprintf(cmd, sizeof(cmd), "rm -rf '%s'", dir);
	if (system(cmd))
		ksft_print_msg("could not remove %s\n", dir);
	ksft_finished();
}
