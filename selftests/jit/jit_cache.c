// SPDX-License-Identifier: MIT
/*
 * The kernel cache: memory hits, disk hits, every kind of damaged entry
 * (each must be recompiled and replaced, never loaded), ASAM_JIT_FORCE,
 * the no-compile path used under graph capture, LRU pruning, and a cache
 * directory that cannot be written (read-only, full, not a directory).
 */
#include <dirent.h>
#include <fcntl.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <sys/stat.h>
#include <unistd.h>

#include <asam/asam.h>
#include <internal/jit.h>

#include "../lib/kselftest.h"
#include "jit_common.h"

static char dir[] = "/tmp/asam-jit-cache-XXXXXX";

struct dirstat {
	int entries, tmps;
};

static struct dirstat scan(const char *d)
{
	struct dirstat s = { 0 };
	struct dirent *de;
	DIR *dp = opendir(d);

	while (dp && (de = readdir(dp))) {
		if (!strncmp(de->d_name, ".tmp-", 5))
			s.tmps++;
		else if (strstr(de->d_name, ASAM_JIT_SUFFIX))
			s.entries++;
	}
	if (dp)
		closedir(dp);
	return s;
}

static void rm_rf(const char *d)
{
	char cmd[512];

	snprintf(cmd, sizeof(cmd), "rm -rf '%s'", d);
	if (system(cmd))
		ksft_print_msg("could not remove %s\n", d);
}

static void entry_file(const struct asam_jit_image *img, char *p, size_t n)
{
	char hex[65];

	asam_jit_hex(img->key, 32, hex);
	snprintf(p, n, "%s/%s%s", dir, hex, ASAM_JIT_SUFFIX);
}

static void *slurp(const char *p, size_t *n)
{
	struct stat st;
	void *buf;
	int fd = open(p, O_RDONLY);

	if (fd < 0 || fstat(fd, &st))
		return NULL;
	buf = malloc(st.st_size + 1);
	*n = read(fd, buf, st.st_size);
	close(fd);
	return buf;
}

static void spew(const char *p, const void *buf, size_t n)
{
	int fd = open(p, O_WRONLY | O_CREAT | O_TRUNC, 0644);

	if (fd < 0 || write(fd, buf, n) != (ssize_t)n)
		ksft_print_msg("cannot write %s\n", p);
	close(fd);
}

static struct asam_jit_spec spec_a, spec_b, spec_c;
static void *golden;
static size_t golden_size;

static bool same_as_golden(const struct asam_jit_image *img)
{
	return img->size == golden_size &&
	       !memcmp(img->data, golden, golden_size);
}

/* Damage the entry of spec_a, then check it is rejected and replaced. */
enum damage { FLIP_PAYLOAD, FLIP_HEADER, TRUNCATE, MAGIC, KEY, VERSION,
	      EMPTY };
static const char *const damage_name[] = {
	"flipped payload byte", "flipped header byte", "truncated",
	"wrong magic", "another key's entry", "wrong format version",
	"empty file",
};

static void test_damage(enum damage how, const char *path_a,
			const char *path_b)
{
	const struct asam_jit_image *img;
	struct asam_jit_stats st;
	unsigned char *buf;
	size_t n;
	int err;

	buf = slurp(path_a, &n);
	switch (how) {
	case FLIP_PAYLOAD:
		buf[n - 100] ^= 0x10;
		break;
	case FLIP_HEADER:
		buf[100] ^= 0x01;	/* in the canonical spec text */
		break;
	case TRUNCATE:
		n -= n / 3;
		break;
	case MAGIC:
		buf[0] = 'X';
		break;
	case KEY:
		free(buf);
		buf = slurp(path_b, &n);
		break;
	case VERSION:
		buf[8] = ASAM_JIT_FORMAT + 1;
		break;
	case EMPTY:
		n = 0;
		break;
	}
	spew(path_a, buf, n);
	free(buf);
	asam_jit_reset();
	err = asam_jit_get(&spec_a, &img);
	asam_jit_stats(&st);
	ksft_test_result(!err && st.disk_rejects == 1 && st.compiles == 1 &&
			 st.disk_hits == 0 && same_as_golden(img) &&
			 !asam_jit_entry_read(path_a, img->key, NULL, NULL),
			 "%s: rejected, recompiled and replaced\n",
			 damage_name[how]);
}

static void test_hits(void)
{
	const struct asam_jit_image *img, *img2;
	struct asam_jit_stats st;
	char path[512];
	double t0, t;
	int i, n = 1000000, err;

	err = asam_jit_get(&spec_a, &img);
	asam_jit_stats(&st);
	entry_file(img, path, sizeof(path));
	ksft_test_result(!err && st.compiles == 1 && st.disk_writes == 1 &&
			 image_ok(img, asam_jit_family_find("selftest")) &&
			 !asam_jit_entry_read(path, img->key, NULL, NULL),
			 "cold get compiles and writes a valid entry\n");
	golden = malloc(img->size);
	memcpy(golden, img->data, img->size);
	golden_size = img->size;

	t0 = now_s();
	for (i = 0; i < n; i++)
		err |= asam_jit_get(&spec_a, &img2);
	t = (now_s() - t0) / n;
	asam_jit_stats(&st);
	ksft_test_result(!err && img2 == img && st.mem_hits == (unsigned)n &&
			 t < 2e-6,
			 "memory hit: same image, %.0f ns per call (target <= 2 us)\n",
			 t * 1e9);

	/* disk hit: a fresh process state each time */
	t = 0;
	for (i = 0; i < 20; i++) {
		asam_jit_reset();
		t0 = now_s();
		err |= asam_jit_get(&spec_a, &img);
		t += now_s() - t0;
	}
	asam_jit_stats(&st);
	ksft_test_result(!err && st.disk_hits == 1 && st.compiles == 0 &&
			 same_as_golden(img) && t / 20 < 20e-3,
			 "disk hit (read + verify, %zu-byte cubin): %.3f ms (target <= 20 ms, no cuModuleLoadData here)\n",
			 img->size, t / 20 * 1e3);
}

static void test_force_nocompile(void)
{
	const struct asam_jit_image *img;
	struct asam_jit_stats st;
	int err;

	asam_jit_reset();
	setenv("ASAM_JIT_FORCE", "1", 1);
	err = asam_jit_get(&spec_a, &img);
	unsetenv("ASAM_JIT_FORCE");
	asam_jit_stats(&st);
	ksft_test_result(!err && st.compiles == 1 && st.disk_hits == 0,
			 "ASAM_JIT_FORCE=1 recompiles over a valid entry\n");

	asam_jit_reset();
	err = asam_jit_get_nocompile(&spec_c, &img);
	ksft_test_result(err == -EBUSY,
			 "no-compile get of an uncached variant: -EBUSY (%d)\n",
			 err);
	err = asam_jit_get_nocompile(&spec_a, &img);
	asam_jit_stats(&st);
	ksft_test_result(!err && st.disk_hits == 1 && st.compiles == 0,
			 "no-compile get of a cached variant loads it\n");
}

static void test_prune(void)
{
	const struct asam_jit_image *ia, *ib, *ic;
	char pa[512], pb[512], pc[512], tmp[512];
	struct timespec ts[2] = { { 0 }, { 0 } };
	struct stat sa, sb, sc;
	int ev;

	asam_jit_reset();
	asam_jit_get(&spec_a, &ia);
	asam_jit_get(&spec_b, &ib);
	asam_jit_get(&spec_c, &ic);
	entry_file(ia, pa, sizeof(pa));
	entry_file(ib, pb, sizeof(pb));
	entry_file(ic, pc, sizeof(pc));
	/* b is the least recently used, then a, then c */
	ts[0].tv_sec = ts[1].tv_sec = 1000000;
	utimensat(AT_FDCWD, pb, ts, 0);
	ts[0].tv_sec = ts[1].tv_sec = 2000000;
	utimensat(AT_FDCWD, pa, ts, 0);
	snprintf(tmp, sizeof(tmp), "%s/.tmp-1-1-1", dir);
	spew(tmp, "x", 1);
	ts[0].tv_sec = ts[1].tv_sec = 1000;
	utimensat(AT_FDCWD, tmp, ts, 0);
	stat(pa, &sa);
	stat(pb, &sb);
	stat(pc, &sc);
	ev = asam_jit_cache_prune(dir, sa.st_size + sc.st_size);
	ksft_test_result(ev == 1 && access(pb, F_OK) && !access(pa, F_OK) &&
			 !access(pc, F_OK) && access(tmp, F_OK),
			 "LRU prune evicts the oldest entry and dead temp files\n");
}

/* Threads hitting and filling the memory tier at once: lock-free readers
 * must only ever see complete entries, and one image per spec. */
#define NTHR 4
#define NSPEC 4
static struct asam_jit_spec tspec[NSPEC];
static const struct asam_jit_image *timg[NTHR][NSPEC];

static void *thr_main(void *arg)
{
	long t = (long)arg;
	int i, r;

	for (r = 0; r < 2000; r++)
		for (i = 0; i < NSPEC; i++) {
			int k = (i + t) % NSPEC;
			const struct asam_jit_image *img;

			if (asam_jit_get(&tspec[k], &img) ||
			    (timg[t][k] && timg[t][k] != img))
				return (void *)1;
			timg[t][k] = img;
		}
	return NULL;
}

static void test_threads(void)
{
	const struct asam_jit_family *fam = asam_jit_family_find("selftest");
	struct asam_jit_stats st;
	pthread_t th[NTHR];
	void *ret;
	long t;
	int i, bad = 0;

	asam_jit_reset();
	for (i = 0; i < NSPEC; i++)
		selftest_spec(&tspec[i], 86, i % 3, 64 << (i / 3));
	for (t = 0; t < NTHR; t++)
		pthread_create(&th[t], NULL, thr_main, (void *)t);
	for (t = 0; t < NTHR; t++) {
		pthread_join(th[t], &ret);
		bad += ret != NULL;
	}
	for (t = 0; t < NTHR; t++)
		for (i = 0; i < NSPEC; i++)
			bad += timg[t][i] != timg[0][i] ||
			       !image_ok(timg[t][i], fam);
	asam_jit_stats(&st);
	ksft_test_result(!bad && st.compiles + st.disk_hits == NSPEC,
			 "%d threads x %d specs: one image per spec, %lu compiles\n",
			 NTHR, NSPEC, st.compiles);
}

static void test_unwritable(int inject, const char *what)
{
	const struct asam_jit_image *img;
	struct asam_jit_stats st;
	struct dirstat ds;
	int err;

	rm_rf(dir);
	mkdir(dir, 0755);
	asam_jit_reset();
	asam_jit_inject_write_error(inject);
	err = asam_jit_get(&spec_a, &img);
	err |= asam_jit_get(&spec_b, &img);
	asam_jit_inject_write_error(0);
	asam_jit_stats(&st);
	ds = scan(dir);
	ksft_test_result(!err && st.compiles == 2 && st.disk_disabled &&
			 st.disk_writes == 0 && !ds.entries && !ds.tmps,
			 "%s: memory only, no entry or temp file left\n", what);
}

static void test_not_a_dir(void)
{
	const struct asam_jit_image *img;
	struct asam_jit_stats st;
	char file[512], sub[600];
	int err;

	snprintf(file, sizeof(file), "%s/file", dir);
	spew(file, "x", 1);
	snprintf(sub, sizeof(sub), "%s/cache", file);
	setenv("ASAM_CACHE_DIR", sub, 1);
	asam_jit_reset();
	err = asam_jit_get(&spec_a, &img);
	asam_jit_stats(&st);
	setenv("ASAM_CACHE_DIR", dir, 1);
	ksft_test_result(!err && st.disk_disabled && st.compiles == 1,
			 "cache dir that cannot be created: memory only\n");
}

int main(void)
{
	const struct asam_jit_image *ia, *ib;
	char pa[512], pb[512];
	int i;

	ksft_print_header();
	if (!have_nvrtc())
		ksft_exit_skip("NVRTC not available: %s\n", asam_last_error());
	ksft_set_plan(3 + 7 + 3 + 1 + 1 + 3 + 1);
	if (!mkdtemp(dir))
		ksft_exit_skip("mkdtemp failed\n");
	setenv("ASAM_CACHE_DIR", dir, 1);
	unsetenv("ASAM_JIT_FORCE");
	selftest_spec(&spec_a, 80, 0, 128);
	selftest_spec(&spec_b, 80, 0, 256);
	selftest_spec(&spec_c, 90, 0, 256);

	test_hits();
	asam_jit_get(&spec_a, &ia);
	asam_jit_get(&spec_b, &ib);
	entry_file(ia, pa, sizeof(pa));
	entry_file(ib, pb, sizeof(pb));
	for (i = FLIP_PAYLOAD; i <= EMPTY; i++)
		test_damage(i, pa, pb);
	test_force_nocompile();
	test_prune();
	test_threads();
	test_unwritable(EROFS, "read-only cache dir (injected EROFS)");
	test_unwritable(ENOSPC, "full disk (injected ENOSPC mid-write)");
	test_unwritable(EIO, "I/O error mid-write (injected EIO)");
	test_not_a_dir();
	rm_rf(dir);
	free(golden);
	ksft_finished();
}
