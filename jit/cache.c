// SPDX-License-Identifier: MIT
/*
 * The two-tier kernel cache.
 *
 * Memory tier: a fixed array of buckets, each a singly linked list that
 * only ever grows at its head.  An entry is fully built before a release
 * store publishes it, so a lookup walks the list with acquire loads and
 * takes no lock; misses serialise on one mutex, which also keeps two
 * threads of a process from compiling the same variant twice.
 *
 * Disk tier: one file per key, <hex key>.kc, holding a header (magic,
 * format, key, lengths, SHA-256 over the whole entry), the canonical spec
 * text and the image.  Writers create a private temp file, fsync it and
 * rename it over the final name, so readers see either nothing or a whole
 * entry, and N processes racing on one key end with one valid entry.
 * Readers verify everything before use; anything that fails is recompiled
 * and replaced.  A directory that cannot be written (read-only, full, no
 * permission) turns the disk tier off for the process with one warning.
 */
#include <dirent.h>
#include <fcntl.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <time.h>
#include <unistd.h>

#include <internal/compiler.h>
#include <internal/err.h>
#include <internal/jit.h>
#include <internal/kconfig.h>
#include <internal/log.h>

#define NBUCKETS	1024
#define MAX_ENTRY	(1ULL << 30)
#define DEFAULT_MAX_MB	2048

struct disk_hdr {
	char magic[8];
	uint32_t format;
	uint32_t flags;			/* bit 0: cubin */
	uint8_t key[ASAM_JIT_KEY_LEN];
	uint64_t payload_len;
	uint8_t checksum[32];		/* over header (this field 0) + rest */
	uint32_t canon_len;
	uint32_t reserved;
};

struct mem_entry {
	struct mem_entry *next;
	uint64_t hash;
	struct asam_jit_spec spec;
	struct asam_jit_image img;
};

static struct mem_entry *buckets[NBUCKETS];
static pthread_mutex_t miss_lock = PTHREAD_MUTEX_INITIALIZER;
static struct asam_jit_stats stats;
static bool disk_off;
static int inject_err;
static int force = -1;

#define STAT_INC(f) __atomic_add_fetch(&stats.f, 1, __ATOMIC_RELAXED)

void asam_jit_stats(struct asam_jit_stats *st)
{
	pthread_mutex_lock(&miss_lock);
	*st = stats;
	st->mem_hits = __atomic_load_n(&stats.mem_hits, __ATOMIC_RELAXED);
	st->disk_disabled = disk_off;
	pthread_mutex_unlock(&miss_lock);
}

int asam_jit_cache_dir(char *buf, size_t len)
{
	const char *d = getenv("ASAM_CACHE_DIR"), *base;
	int n;

	if (d && *d) {
		n = snprintf(buf, len, "%s", d);
	} else if ((base = getenv("XDG_CACHE_HOME")) && *base == '/') {
		n = snprintf(buf, len, "%s/asam", base);
	} else if ((base = getenv("HOME")) && *base) {
		n = snprintf(buf, len, "%s/.cache/asam", base);
	} else {
		return asam_err(-ENOENT,
				"jit: no cache dir (set ASAM_CACHE_DIR)");
	}
	if (n < 0 || (size_t)n >= len)
		return asam_err(-ENAMETOOLONG, "jit: cache dir path too long");
	return 0;
}

/* mkdir -p */
static int make_dirs(const char *path)
{
	char tmp[4096], *p;

	if (strlen(path) >= sizeof(tmp))
		return -ENAMETOOLONG;
	strcpy(tmp, path);
	for (p = tmp + 1; *p; p++) {
		if (*p != '/')
			continue;
		*p = '\0';
		if (mkdir(tmp, 0755) && errno != EEXIST)
			return -errno;
		*p = '/';
	}
	if (mkdir(tmp, 0755) && errno != EEXIST)
		return -errno;
	return 0;
}

static void entry_path(char *buf, size_t len, const char *dir,
		       const uint8_t *key)
{
	char hex[2 * ASAM_JIT_KEY_LEN + 1];

	asam_jit_hex(key, ASAM_JIT_KEY_LEN, hex);
	snprintf(buf, len, "%s/%s%s", dir, hex, ASAM_JIT_SUFFIX);
}

static void entry_checksum(const struct disk_hdr *h, const void *rest,
			   size_t n, uint8_t out[32])
{
	struct disk_hdr z = *h;
	struct asam_sha256 s;

	memset(z.checksum, 0, sizeof(z.checksum));
	asam_sha256_init(&s);
	asam_sha256_update(&s, &z, sizeof(z));
	asam_sha256_update(&s, rest, n);
	asam_sha256_final(&s, out);
}

static int read_all(int fd, void *buf, size_t n)
{
	size_t off = 0;
	ssize_t r;

	while (off < n) {
		r = pread(fd, (char *)buf + off, n - off, off);
		if (r < 0 && errno == EINTR)
			continue;
		if (r < 0)
			return -errno;
		if (!r)
			return -EBADMSG;	/* shrank under us */
		off += r;
	}
	return 0;
}

int asam_jit_entry_read(const char *path, const uint8_t *want_key,
			struct asam_jit_entry_info *info, void **payload)
{
	struct disk_hdr h;
	uint8_t sum[32];
	struct stat st;
	char *buf = NULL;
	size_t rest;
	int fd, err;

	fd = open(path, O_RDONLY | O_CLOEXEC);
	if (fd < 0)
		return -errno;
	if (fstat(fd, &st)) {
		err = -errno;
		goto out;
	}
	err = -EBADMSG;
	if (!S_ISREG(st.st_mode) || (uint64_t)st.st_size < sizeof(h) ||
	    (uint64_t)st.st_size > MAX_ENTRY)
		goto out;
	buf = malloc(st.st_size);
	if (!buf) {
		err = -ENOMEM;
		goto out;
	}
	err = read_all(fd, buf, st.st_size);
	if (err)
		goto out;
	err = -EBADMSG;
	memcpy(&h, buf, sizeof(h));
	rest = st.st_size - sizeof(h);
	if (memcmp(h.magic, ASAM_JIT_MAGIC, sizeof(h.magic)) ||
	    h.format != ASAM_JIT_FORMAT || h.canon_len >= sizeof(info->canon) ||
	    h.payload_len > rest ||
	    (uint64_t)h.canon_len + h.payload_len != rest || !h.payload_len)
		goto out;
	if (want_key && memcmp(h.key, want_key, ASAM_JIT_KEY_LEN))
		goto out;
	entry_checksum(&h, buf + sizeof(h), rest, sum);
	if (memcmp(sum, h.checksum, sizeof(sum)))
		goto out;
	/* PTX goes to the driver as a C string */
	if (!(h.flags & 1) && buf[st.st_size - 1] != '\0')
		goto out;
	if (info) {
		memcpy(info->key, h.key, sizeof(info->key));
		info->cubin = h.flags & 1;
		info->size = h.payload_len;
		memcpy(info->canon, buf + sizeof(h), h.canon_len);
		info->canon[h.canon_len] = '\0';
	}
	if (payload) {
		memmove(buf, buf + sizeof(h) + h.canon_len, h.payload_len);
		*payload = buf;
		buf = NULL;
	}
	err = 0;
out:
	free(buf);
	close(fd);
	return err;
}

static int write_all(int fd, const void *p, size_t n)
{
	ssize_t r;

	if (inject_err) {
		/* a disk that fills up half way through the entry */
		if (write(fd, p, n / 2) < 0)
			return -errno;
		return -inject_err;
	}
	while (n) {
		r = write(fd, p, n);
		if (r < 0 && errno == EINTR)
			continue;
		if (r < 0)
			return -errno;
		p = (const char *)p + r;
		n -= r;
	}
	return 0;
}

static int entry_write(const char *dir, const struct asam_jit_spec *spec,
		       const struct asam_jit_image *img)
{
	static unsigned int seq;
	char path[4200], tmp[4300], canon[1024];
	struct disk_hdr h;
	struct asam_sha256 s;
	int fd, dfd, err, n;

	n = asam_jit_spec_canon(spec, canon, sizeof(canon));
	if (n < 0)
		return n;
	memset(&h, 0, sizeof(h));
	memcpy(h.magic, ASAM_JIT_MAGIC, sizeof(h.magic));
	h.format = ASAM_JIT_FORMAT;
	h.flags = img->cubin;
	memcpy(h.key, img->key, sizeof(h.key));
	h.payload_len = img->size;
	h.canon_len = n;
	asam_sha256_init(&s);
	asam_sha256_update(&s, &h, sizeof(h));
	asam_sha256_update(&s, canon, n);
	asam_sha256_update(&s, img->data, img->size);
	asam_sha256_final(&s, h.checksum);

	entry_path(path, sizeof(path), dir, img->key);
	snprintf(tmp, sizeof(tmp), "%s/.tmp-%d-%ld-%u", dir, (int)getpid(),
		 (long)syscall(SYS_gettid),
		 __atomic_add_fetch(&seq, 1, __ATOMIC_RELAXED));
	if (inject_err == EROFS || inject_err == EACCES)
		return -inject_err;
	fd = open(tmp, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0644);
	if (fd < 0)
		return -errno;
	err = write_all(fd, &h, sizeof(h));
	if (!err)
		err = write_all(fd, canon, n);
	if (!err)
		err = write_all(fd, img->data, img->size);
	if (!err && fsync(fd))
		err = -errno;
	if (close(fd) && !err)
		err = -errno;
	if (!err && rename(tmp, path))
		err = -errno;
	if (err) {
		unlink(tmp);
		return err;
	}
	/* make the rename itself durable */
	dfd = open(dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
	if (dfd >= 0) {
		fsync(dfd);
		close(dfd);
	}
	return 0;
}

struct prune_ent {
	char name[80];
	uint64_t size;
	struct timespec used;
};

static int by_age(const void *a, const void *b)
{
	const struct prune_ent *x = a, *y = b;

	if (x->used.tv_sec != y->used.tv_sec)
		return x->used.tv_sec < y->used.tv_sec ? -1 : 1;
	if (x->used.tv_nsec != y->used.tv_nsec)
		return x->used.tv_nsec < y->used.tv_nsec ? -1 : 1;
	return strcmp(x->name, y->name);
}

/*
 * Keep the directory under @max_bytes, evicting the least recently used
 * entries (a hit refreshes the file's mtime).  Temp files of writers that
 * died more than an hour ago go too.  Returns the number evicted.
 */
int asam_jit_cache_prune(const char *dir, uint64_t max_bytes)
{
	struct prune_ent *v = NULL, *nv;
	size_t n = 0, cap = 0, i;
	uint64_t total = 0;
	struct dirent *de;
	struct stat st;
	char path[4400];
	time_t now = time(NULL);
	int evicted = 0;
	DIR *d;

	d = opendir(dir);
	if (!d)
		return -errno;
	while ((de = readdir(d))) {
		size_t len = strlen(de->d_name);

		snprintf(path, sizeof(path), "%s/%s", dir, de->d_name);
		if (!strncmp(de->d_name, ".tmp-", 5)) {
			if (!stat(path, &st) && now - st.st_mtime > 3600)
				unlink(path);
			continue;
		}
		if (len < 4 || len >= sizeof(v->name) ||
		    strcmp(de->d_name + len - 3, ASAM_JIT_SUFFIX))
			continue;
		if (stat(path, &st) || !S_ISREG(st.st_mode))
			continue;
		if (n == cap) {
			cap = cap ? 2 * cap : 64;
			nv = realloc(v, cap * sizeof(*v));
			if (!nv) {
				closedir(d);
				free(v);
				return -ENOMEM;
			}
			v = nv;
		}
		strcpy(v[n].name, de->d_name);
		v[n].size = st.st_size;
		v[n].used = st.st_mtim;
		total += st.st_size;
		n++;
	}
	closedir(d);
	if (total > max_bytes) {
		qsort(v, n, sizeof(*v), by_age);
		for (i = 0; i < n && total > max_bytes; i++) {
			snprintf(path, sizeof(path), "%s/%s", dir, v[i].name);
			if (!unlink(path)) {
				total -= v[i].size;
				evicted++;
			}
		}
	}
	free(v);
	return evicted;
}

static uint64_t cache_cap(void)
{
	const char *s = getenv("ASAM_CACHE_MAX_MB");
	char *end;
	unsigned long long mb;

	if (!s || !*s)
		return (uint64_t)DEFAULT_MAX_MB << 20;
	mb = strtoull(s, &end, 10);
	if (*end || mb > (1ULL << 40))
		return (uint64_t)DEFAULT_MAX_MB << 20;
	return mb << 20;
}

/* Called with miss_lock held. */
static void disk_degrade(const char *dir, int err)
{
	if (disk_off)
		return;
	disk_off = true;
	pr_warn("jit: kernel cache %s is not usable (%s); compiled kernels stay in memory only",
		dir, strerror(-err));
}

static bool disk_enabled(void)
{
	return IS_ENABLED(CONFIG_JIT_DISK_CACHE) && !disk_off;
}

static int disk_lookup(const char *dir, const struct asam_jit_spec *spec,
		       struct asam_jit_image *img)
{
	struct asam_jit_entry_info info;
	char path[4200];
	void *data;
	int err;

	entry_path(path, sizeof(path), dir, img->key);
	err = asam_jit_entry_read(path, img->key, &info, &data);
	if (err == -ENOENT)
		return err;
	if (err) {
		STAT_INC(disk_rejects);
		pr_info("jit: discarding cache entry %s (%s)", path,
			err == -EBADMSG ? "corrupt, truncated, foreign or stale" :
			strerror(-err));
		return err;
	}
	img->data = data;
	img->size = info.size;
	img->cubin = info.cubin;
	/* LRU: a hit makes the entry young again (fails harmlessly if RO) */
	utimensat(AT_FDCWD, path, NULL, 0);
	STAT_INC(disk_hits);
	return 0;
}

static struct mem_entry *mem_lookup(const struct asam_jit_spec *spec,
				    uint64_t h)
{
	struct mem_entry *e;

	e = __atomic_load_n(&buckets[h % NBUCKETS], __ATOMIC_ACQUIRE);
	for (; e; e = __atomic_load_n(&e->next, __ATOMIC_ACQUIRE))
		if (e->hash == h && asam_jit_spec_equal(&e->spec, spec))
			return e;
	return NULL;
}

static int jit_get(const struct asam_jit_spec *spec,
		   const struct asam_jit_image **out, bool may_compile)
{
	struct mem_entry *e;
	char dir[4096];
	void *data = NULL;
	uint64_t h;
	int err;

	if (!spec || !out)
		return asam_err(-EINVAL, "jit: NULL argument");
	h = asam_jit_spec_hash(spec);
	e = mem_lookup(spec, h);
	if (likely(e)) {
		STAT_INC(mem_hits);
		*out = &e->img;
		return 0;
	}

	pthread_mutex_lock(&miss_lock);
	e = mem_lookup(spec, h);
	if (e) {
		*out = &e->img;
		err = 0;
		goto unlock;
	}
	if (force < 0) {
		const char *f = getenv("ASAM_JIT_FORCE");

		force = f && *f && strcmp(f, "0");
	}
	e = calloc(1, sizeof(*e));
	if (!e) {
		err = asam_err(-ENOMEM, "jit: out of memory");
		goto unlock;
	}
	e->hash = h;
	e->spec = *spec;
	err = asam_jit_key(spec, e->img.key);
	if (err)
		goto fail;

	dir[0] = '\0';
	if (disk_enabled()) {
		err = asam_jit_cache_dir(dir, sizeof(dir));
		if (!err)
			err = make_dirs(dir);
		if (err) {
			disk_degrade(dir[0] ? dir : "(unset)", err);
			dir[0] = '\0';
		}
	}
	err = -ENOENT;
	if (dir[0] && !force)
		err = disk_lookup(dir, spec, &e->img);
	if (err) {
		if (!may_compile) {
			err = asam_err(-EBUSY,
				       "jit: %s for sm_%d is not compiled and compiling now is not allowed (graph capture)",
				       spec->family, spec->arch);
			goto fail;
		}
		err = asam_jit_compile(spec, &data, &e->img.size,
				       &e->img.cubin);
		if (err)
			goto fail;
		e->img.data = data;
		STAT_INC(compiles);
		if (dir[0] && disk_enabled()) {
			err = entry_write(dir, spec, &e->img);
			if (err) {
				disk_degrade(dir, err);
			} else {
				STAT_INC(disk_writes);
				err = asam_jit_cache_prune(dir, cache_cap());
				if (err > 0)
					stats.evictions += err;
			}
		}
	}
	/* publish: the entry is complete before anyone can see it */
	e->next = buckets[h % NBUCKETS];
	__atomic_store_n(&buckets[h % NBUCKETS], e, __ATOMIC_RELEASE);
	*out = &e->img;
	err = 0;
	goto unlock;
fail:
	free(e);
unlock:
	pthread_mutex_unlock(&miss_lock);
	return err;
}

int asam_jit_get(const struct asam_jit_spec *spec,
		 const struct asam_jit_image **out)
{
	return jit_get(spec, out, true);
}

int asam_jit_get_nocompile(const struct asam_jit_spec *spec,
			   const struct asam_jit_image **out)
{
	return jit_get(spec, out, false);
}

/* Tests only: no other thread may be inside asam_jit_get. */
void asam_jit_reset(void)
{
	struct mem_entry *e, *next;
	int i;

	pthread_mutex_lock(&miss_lock);
	for (i = 0; i < NBUCKETS; i++) {
		for (e = buckets[i]; e; e = next) {
			next = e->next;
			free((void *)e->img.data);
			free(e);
		}
		buckets[i] = NULL;
	}
	memset(&stats, 0, sizeof(stats));
	disk_off = false;
	force = -1;
	pthread_mutex_unlock(&miss_lock);
}

void asam_jit_inject_write_error(int err)
{
	pthread_mutex_lock(&miss_lock);
	inject_err = err;
	pthread_mutex_unlock(&miss_lock);
}
