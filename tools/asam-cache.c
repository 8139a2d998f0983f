// SPDX-License-Identifier: MIT
/*
 * asam-cache: look after the JIT's on-disk kernel cache.
 *
 *   asam-cache [--dir DIR] list        key fields, kind, size, age per entry
 *   asam-cache [--dir DIR] verify      check every entry; exit 1 if any is bad
 *   asam-cache [--dir DIR] prune [--max-mb N]
 *                                      drop bad entries and dead temp files,
 *                                      then evict LRU entries down to the cap
 *   asam-cache [--dir DIR] clear       remove every entry
 *   asam-cache [--dir DIR] precompile --arch N [--family F] [-j N]
 *                          [--driver-version V]
 *                                      compile every variant the build's
 *                                      .config enables, ahead of time
 *
 * The directory defaults to what the library uses (ASAM_CACHE_DIR, else
 * $XDG_CACHE_HOME/asam, else ~/.cache/asam).
 */
#include <dirent.h>
#include <errno.h>
#include <getopt.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include <asam/asam.h>
#include <internal/jit.h>

static char dir[4096];

static void usage(void)
{
	printf("usage: asam-cache [--dir DIR] list|verify|clear\n"
	       "       asam-cache [--dir DIR] prune [--max-mb N]\n"
	       "       asam-cache [--dir DIR] precompile --arch N [--family F] [-j N] [--driver-version V]\n"
	       "Cache dir: ASAM_CACHE_DIR, $XDG_CACHE_HOME/asam or ~/.cache/asam.\n");
}

typedef int (*entry_fn)(const char *path, const char *name, void *arg);

/* Calls @fn for every entry file (and, with @tmps, temp files) in dir. */
static int for_each(entry_fn fn, void *arg, bool tmps)
{
	char path[4400];
	struct dirent *de;
	int ret = 0;
	DIR *d = opendir(dir);

	if (!d) {
		if (errno == ENOENT)
			return 0;
		fprintf(stderr, "asam-cache: %s: %s\n", dir, strerror(errno));
		return -errno;
	}
	while ((de = readdir(d))) {
		size_t n = strlen(de->d_name);
		bool is_tmp = !strncmp(de->d_name, ".tmp-", 5);

		if (!is_tmp && (n < 4 || strcmp(de->d_name + n - 3,
						ASAM_JIT_SUFFIX)))
			continue;
		if (is_tmp && !tmps)
			continue;
		snprintf(path, sizeof(path), "%s/%s", dir, de->d_name);
		ret |= fn(path, de->d_name, arg);
	}
	closedir(d);
	return ret;
}

/* 0 when @path holds a valid entry whose key is its file name. */
static int check(const char *path, const char *name,
		 struct asam_jit_entry_info *info)
{
	char hex[2 * ASAM_JIT_KEY_LEN + 1];
	int err;

	err = asam_jit_entry_read(path, NULL, info, NULL);
	if (err)
		return err;
	asam_jit_hex(info->key, ASAM_JIT_KEY_LEN, hex);
	if (strncmp(name, hex, strlen(hex)))
		return -EBADMSG;
	return 0;
}

static void age_str(time_t t, char *buf, size_t n)
{
	long s = (long)(time(NULL) - t);

	if (s < 120)
		snprintf(buf, n, "%lds", s);
	else if (s < 7200)
		snprintf(buf, n, "%ldm", s / 60);
	else if (s < 172800)
		snprintf(buf, n, "%ldh", s / 3600);
	else
		snprintf(buf, n, "%ldd", s / 86400);
}

static int list_one(const char *path, const char *name, void *arg)
{
	struct asam_jit_entry_info info;
	unsigned long *total = arg;
	struct stat st;
	char age[32];
	int err;

	if (stat(path, &st))
		return 0;
	age_str(st.st_mtime, age, sizeof(age));
	err = check(path, name, &info);
	if (err) {
		printf("%.16s  %-5s %9lld %6s  BAD (%s)\n", name, "-",
		       (long long)st.st_size, age, strerror(-err));
		return 0;
	}
	printf("%.16s  %-5s %9lld %6s  %s\n", name,
	       info.cubin ? "cubin" : "ptx", (long long)st.st_size, age,
	       info.canon);
	total[0]++;
	total[1] += st.st_size;
	return 0;
}

static int cmd_list(void)
{
	unsigned long total[2] = { 0, 0 };

	printf("# %s\n%-16s  %-5s %9s %6s  %s\n", dir, "key", "kind", "bytes",
	       "age", "spec");
	for_each(list_one, total, false);
	printf("# %lu entries, %.1f MiB\n", total[0], total[1] / 1048576.0);
	return 0;
}

static int verify_one(const char *path, const char *name, void *arg)
{
	struct asam_jit_entry_info info;
	int *counts = arg, err = check(path, name, &info);

	counts[err ? 1 : 0]++;
	if (err)
		printf("BAD %s: %s\n", path, strerror(-err));
	return 0;
}

static int cmd_verify(void)
{
	int counts[2] = { 0, 0 };

	for_each(verify_one, counts, false);
	printf("%d good, %d bad entries in %s\n", counts[0], counts[1], dir);
	return counts[1] ? 1 : 0;
}

static int remove_bad(const char *path, const char *name, void *arg)
{
	struct asam_jit_entry_info info;
	int *n = arg;

	if (!strncmp(name, ".tmp-", 5) || !check(path, name, &info))
		return 0;
	if (!unlink(path))
		(*n)++;
	return 0;
}

static int cmd_prune(long max_mb)
{
	const char *s = getenv("ASAM_CACHE_MAX_MB");
	int bad = 0, ev;

	if (max_mb < 0)
		max_mb = s && *s ? atol(s) : 2048;
	for_each(remove_bad, &bad, false);
	ev = asam_jit_cache_prune(dir, (uint64_t)max_mb << 20);
	if (ev < 0 && ev != -ENOENT) {
		fprintf(stderr, "asam-cache: prune %s: %s\n", dir,
			strerror(-ev));
		return 1;
	}
	printf("removed %d bad, evicted %d entries (cap %ld MiB)\n", bad,
	       ev > 0 ? ev : 0, max_mb);
	return 0;
}

static int clear_one(const char *path, const char *name, void *arg)
{
	int *n = arg;

	if (unlink(path)) {
		fprintf(stderr, "asam-cache: %s: %s\n", path, strerror(errno));
		return 1;
	}
	(*n)++;
	return 0;
}

static int cmd_clear(void)
{
	int n = 0, err = for_each(clear_one, &n, true);

	printf("removed %d files from %s\n", n, dir);
	return err ? 1 : 0;
}

struct pre {
	const struct asam_jit_spec *v;
	int n, cap;
};

static int pre_collect(const struct asam_jit_spec *spec, void *arg)
{
	struct pre *p = arg;
	struct asam_jit_spec *nv;

	if (p->n == p->cap) {
		p->cap = p->cap ? 2 * p->cap : 64;
		nv = realloc((void *)p->v, p->cap * sizeof(*nv));
		if (!nv)
			return -ENOMEM;
		p->v = nv;
	}
	((struct asam_jit_spec *)p->v)[p->n++] = *spec;
	return 0;
}

static int pre_worker(const struct pre *p, int w, int nw)
{
	const struct asam_jit_image *img;
	char canon[1024];
	int i, bad = 0;

	for (i = w; i < p->n; i += nw) {
		asam_jit_spec_canon(&p->v[i], canon, sizeof(canon));
		if (asam_jit_get(&p->v[i], &img)) {
			fprintf(stderr, "FAILED %s: %s\n", canon,
				asam_last_error());
			bad++;
		} else {
			printf("%s %s (%zu bytes)\n",
			       img->cubin ? "cubin" : "ptx  ", canon,
			       img->size);
		}
	}
	fflush(stdout);
	return bad ? 1 : 0;
}

static int cmd_precompile(int arch, const char *family, int jobs)
{
	struct pre p = { 0 };
	struct timespec t0, t1;
	int i, err, st, bad = 0;
	pid_t *pid;

	if (arch <= 0) {
		fprintf(stderr, "asam-cache: precompile needs --arch (80, 90, ...)\n");
		return 2;
	}
	for (i = 0; i < asam_jit_nfamilies; i++) {
		const struct asam_jit_family *f = &asam_jit_families[i];

		if (family && strcmp(family, f->name))
			continue;
		err = asam_jit_variants(f, arch, pre_collect, &p);
		if (err) {
			fprintf(stderr, "asam-cache: %s: %s\n", f->name,
				asam_last_error());
			return 1;
		}
	}
	if (!p.n) {
		fprintf(stderr, "asam-cache: no variants for sm_%d%s%s\n", arch,
			family ? " in " : "", family ? family : "");
		return 1;
	}
	setenv("ASAM_CACHE_DIR", dir, 1);
	clock_gettime(CLOCK_MONOTONIC, &t0);
	fflush(stdout);
	pid = calloc(jobs, sizeof(*pid));
	for (i = 0; i < jobs; i++) {
		pid[i] = fork();
		if (!pid[i])
			_exit(pre_worker(&p, i, jobs));
	}
	for (i = 0; i < jobs; i++) {
		waitpid(pid[i], &st, 0);
		bad += !WIFEXITED(st) || WEXITSTATUS(st);
	}
	clock_gettime(CLOCK_MONOTONIC, &t1);
	printf("# %d variants for sm_%d into %s in %.2f s (%d jobs)%s\n", p.n,
	       arch, dir, (t1.tv_sec - t0.tv_sec) +
	       (t1.tv_nsec - t0.tv_nsec) * 1e-9, jobs,
	       bad ? ", with FAILURES" : "");
	free(pid);
	free((void *)p.v);
	return bad ? 1 : 0;
}

int main(int argc, char **argv)
{
	static const struct option lopts[] = {
		{ "dir", required_argument, NULL, 'd' },
		{ "arch", required_argument, NULL, 'a' },
		{ "family", required_argument, NULL, 'f' },
		{ "max-mb", required_argument, NULL, 'm' },
		{ "driver-version", required_argument, NULL, 'v' },
		{ "help", no_argument, NULL, 'h' },
		{ 0 }
	};
	const char *family = NULL, *cmd;
	long max_mb = -1;
	int opt, arch = 0, jobs = 1;

	dir[0] = '\0';
	while ((opt = getopt_long(argc, argv, "hj:", lopts, NULL)) != -1) {
		switch (opt) {
		case 'd':
			snprintf(dir, sizeof(dir), "%s", optarg);
			break;
		case 'a':
			arch = atoi(optarg);
			break;
		case 'f':
			family = optarg;
			break;
		case 'm':
			max_mb = atol(optarg);
			break;
		case 'v':
			/* key entries for the driver the image will run on */
			asam_jit_set_driver_version(atoi(optarg));
			break;
		case 'j':
			jobs = atoi(optarg);
			if (jobs < 1 || jobs > 256)
				jobs = 1;
			break;
		case 'h':
			usage();
			return 0;
		default:
			usage();
			return 2;
		}
	}
	if (optind >= argc) {
		usage();
		return 2;
	}
	if (!dir[0] && asam_jit_cache_dir(dir, sizeof(dir))) {
		fprintf(stderr, "asam-cache: %s\n", asam_last_error());
		return 1;
	}
	cmd = argv[optind];
	if (!strcmp(cmd, "list"))
		return cmd_list();
	if (!strcmp(cmd, "verify"))
		return cmd_verify();
	if (!strcmp(cmd, "prune"))
		return cmd_prune(max_mb);
	if (!strcmp(cmd, "clear"))
		return cmd_clear();
	if (!strcmp(cmd, "precompile"))
		return cmd_precompile(arch, family, jobs);
	usage();
	return 2;
}
