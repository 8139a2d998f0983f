// SPDX-License-Identifier: MIT
/*
 * Topology core: try the providers this build has, in order, each for the
 * parts still missing; count cores and packages; log one summary line.
 */
#include <ctype.h>
#include <pthread.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <internal/err.h>
#include <internal/kconfig.h>
#include <internal/log.h>
#include <internal/topology.h>

int cpuset_weight(const struct asam_cpuset *s)
{
	int i, n = 0;

	for (i = 0; i < ASAM_TOPO_MAX_CPUS / 64; i++)
		n += __builtin_popcountll(s->bits[i]);
	return n;
}

bool cpuset_equal(const struct asam_cpuset *a, const struct asam_cpuset *b)
{
	return !memcmp(a->bits, b->bits, sizeof(a->bits));
}

int cpuset_format(const struct asam_cpuset *s, char *buf, size_t len)
{
	size_t used = 0;
	int cpu = 0;

	if (!len)
		return -ENOSPC;
	buf[0] = '\0';
	while (cpu < ASAM_TOPO_MAX_CPUS) {
		int end, n;

		if (!cpuset_isset(s, cpu)) {
			cpu++;
			continue;
		}
		for (end = cpu; cpuset_isset(s, end + 1); end++)
			;
		if (end == cpu)
			n = snprintf(buf + used, len - used, "%s%d",
				     used ? "," : "", cpu);
		else
			n = snprintf(buf + used, len - used, "%s%d-%d",
				     used ? "," : "", cpu, end);
		if (n < 0 || (size_t)n >= len - used)
			return -ENOSPC;
		used += n;
		cpu = end + 1;
	}
	return 0;
}

int cpuset_parse(struct asam_cpuset *s, const char *list)
{
	const char *p = list;

	cpuset_zero(s);
	while (*p && *p != '\n') {
		char *end;
		long a, b;

		if (!isdigit((unsigned char)*p))
			return -EINVAL;
		a = strtol(p, &end, 10);
		b = a;
		if (*end == '-') {
			if (!isdigit((unsigned char)end[1]))
				return -EINVAL;
			b = strtol(end + 1, &end, 10);
		}
		if (a > b || b >= ASAM_TOPO_MAX_CPUS)
			return -EINVAL;
		for (; a <= b; a++)
			cpuset_set(s, a);
		p = end;
		if (*p == ',')
			p++;
		else if (*p && *p != '\n')
			return -EINVAL;
	}
	return 0;
}

int asam_topo_path(const struct asam_topo *t, char *buf, size_t len,
		   const char *fmt, ...)
{
	va_list ap;
	int n, m;

	n = snprintf(buf, len, "%s", t->root);
	if (n < 0 || (size_t)n >= len)
		return -ENAMETOOLONG;
	va_start(ap, fmt);
	m = vsnprintf(buf + n, len - n, fmt, ap);
	va_end(ap);
	if (m < 0 || (size_t)m >= len - n)
		return -ENAMETOOLONG;
	return 0;
}

int asam_pci_bus_id_normalize(const char *in, char *out, size_t len)
{
	unsigned int dom = 0, bus, dev, fn;
	char tail;

	/* nvidia-smi says "00000000:18:00.0", the driver "0000:18:00.0" */
	if (sscanf(in, "%x:%x:%x.%x%c", &dom, &bus, &dev, &fn, &tail) != 4) {
		dom = 0;
		if (sscanf(in, "%x:%x.%x%c", &bus, &dev, &fn, &tail) != 3)
			return -EINVAL;
	}
	if (dom > 0xffff || bus > 0xff || dev > 0x1f || fn > 7)
		return -EINVAL;
	if (snprintf(out, len, "%04x:%02x:%02x.%x", dom, bus, dev, fn) >=
	    (int)len)
		return -ENOSPC;
	return 0;
}

const struct asam_topo_gpu *asam_topo_gpu_find(const struct asam_topo *t,
					       const char *bus_id)
{
	char want[32];
	int i;

	if (!t || asam_pci_bus_id_normalize(bus_id, want, sizeof(want)))
		return NULL;
	for (i = 0; i < t->nr_gpus; i++)
		if (!strcmp(t->gpu[i].bus_id, want))
			return &t->gpu[i];
	return NULL;
}

static int read_line(const char *path, char *buf, size_t len)
{
	FILE *f = fopen(path, "re");
	int ret = 0;

	if (!f)
		return -errno;
	if (!fgets(buf, len, f))
		ret = -EIO;
	fclose(f);
	buf[strcspn(buf, "\n")] = '\0';
	return ret;
}

int asam_topo_pci_locality(const struct asam_topo *t, const char *bus_id,
			   int *node, struct asam_cpuset *cpus)
{
	char id[32], path[512], line[4096];

	*node = -1;
	*cpus = t->online;
	if (asam_pci_bus_id_normalize(bus_id, id, sizeof(id)))
		return -EINVAL;
	if (asam_topo_path(t, path, sizeof(path),
			   "/sys/bus/pci/devices/%s/numa_node", id))
		return -ENAMETOOLONG;
	if (!read_line(path, line, sizeof(line)))
		*node = atoi(line) < 0 ? -1 : atoi(line);
	if (asam_topo_path(t, path, sizeof(path),
			   "/sys/bus/pci/devices/%s/local_cpulist", id))
		return -ENAMETOOLONG;
	if (!read_line(path, line, sizeof(line))) {
		struct asam_cpuset s;

		if (!cpuset_parse(&s, line) && cpuset_weight(&s))
			*cpus = s;
	}
	return 0;
}

void asam_topo_reset(struct asam_topo *t, enum asam_topo_part part)
{
	int i;

	switch (part) {
	case ASAM_TOPO_CPUS:
		for (i = 0; i < ASAM_TOPO_MAX_CPUS; i++) {
			int node = t->cpu[i].node;

			t->cpu[i] = (struct asam_topo_cpu){
				.id = i, .core = -1, .package = -1,
				.node = node, .smt_index = -1 };
		}
		t->nr_cpus = t->nr_online = 0;
		cpuset_zero(&t->online);
		break;
	case ASAM_TOPO_NODES:
		for (i = 0; i < ASAM_TOPO_MAX_CPUS; i++)
			t->cpu[i].node = -1;
		memset(t->node, 0, sizeof(t->node));
		t->nr_nodes = 0;
		break;
	case ASAM_TOPO_PCI:
		memset(t->gpu, 0, sizeof(t->gpu));
		t->nr_gpus = 0;
		break;
	default:
		break;
	}
}

void asam_topo_count(struct asam_topo *t)
{
	int i, j;

	t->nr_cores = t->nr_packages = 0;
	for (i = 0; i < t->nr_cpus; i++) {
		struct asam_topo_cpu *c = &t->cpu[i];
		bool new_core = true, new_pkg = true;

		if (!c->online || c->core < 0)
			continue;
		c->smt_index = 0;
		for (j = 0; j < i; j++) {
			const struct asam_topo_cpu *o = &t->cpu[j];

			if (!o->online || o->core < 0)
				continue;
			if (o->package == c->package) {
				new_pkg = false;
				if (o->core == c->core) {
					new_core = false;
					c->smt_index++;
				}
			}
		}
		t->nr_cores += new_core;
		t->nr_packages += new_pkg;
	}
}

int asam_topo_summary(const struct asam_topo *t, char *buf, size_t len)
{
	const char *pc = t->provider[ASAM_TOPO_CPUS];
	const char *pn = t->provider[ASAM_TOPO_NODES];
	const char *pp = t->provider[ASAM_TOPO_PCI];
	char who[96];
	int n;

	if (pc && pn && pp && !strcmp(pc, pn) && !strcmp(pn, pp))
		snprintf(who, sizeof(who), "provider %s", pc);
	else
		snprintf(who, sizeof(who), "providers: cpus %s, nodes %s, pci %s",
			 pc ? pc : "none", pn ? pn : "none", pp ? pp : "none");
	n = snprintf(buf, len,
		     "topology: %d package%s, %d core%s, %d/%d CPUs online, %d NUMA node%s, %d NVIDIA GPU%s (%s)",
		     t->nr_packages, t->nr_packages == 1 ? "" : "s",
		     t->nr_cores, t->nr_cores == 1 ? "" : "s",
		     t->nr_online, t->nr_cpus, t->nr_nodes,
		     t->nr_nodes == 1 ? "" : "s", t->nr_gpus,
		     t->nr_gpus == 1 ? "" : "s", who);
	return n < 0 || (size_t)n >= len ? -ENOSPC : 0;
}

static const struct asam_topo_provider *provider_by_name(const char *name)
{
	if (IS_ENABLED(CONFIG_TOPO_HWLOC) && !strcmp(name, "hwloc"))
		return &asam_topo_hwloc;
	if (IS_ENABLED(CONFIG_TOPO_LIBNUMA) && !strcmp(name, "libnuma"))
		return &asam_topo_libnuma;
	if (IS_ENABLED(CONFIG_TOPO_SYSFS) && !strcmp(name, "sysfs"))
		return &asam_topo_sysfs;
	return NULL;
}

/* The run-time order; a provider that is not built is NULL. */
static void provider_list(const struct asam_topo_provider *list[3])
{
	list[0] = IS_ENABLED(CONFIG_TOPO_HWLOC) ? provider_by_name("hwloc") : NULL;
	list[1] = IS_ENABLED(CONFIG_TOPO_LIBNUMA) ? provider_by_name("libnuma") : NULL;
	list[2] = IS_ENABLED(CONFIG_TOPO_SYSFS) ? provider_by_name("sysfs") : NULL;
}

/* Parts nobody filled: a single node holding every online CPU, no GPUs. */
static void fill_defaults(struct asam_topo *t, unsigned int missing)
{
	int i;

	if (missing & 1u << ASAM_TOPO_CPUS) {
		long n = sysconf(_SC_NPROCESSORS_ONLN);

		t->nr_cpus = t->nr_online = n > 0 && n <= ASAM_TOPO_MAX_CPUS ? n : 1;
		for (i = 0; i < t->nr_cpus; i++) {
			t->cpu[i].online = true;
			cpuset_set(&t->online, i);
		}
		t->provider[ASAM_TOPO_CPUS] = "none";
	}
	if (missing & 1u << ASAM_TOPO_NODES)
		t->provider[ASAM_TOPO_NODES] = "none";
	if (missing & 1u << ASAM_TOPO_PCI)
		t->provider[ASAM_TOPO_PCI] = "none";
}

/* hwloc gives no free memory; the node's meminfo does, where there is one */
static void fill_mem_free(struct asam_topo *t)
{
	char path[512], line[256];
	int i;

	for (i = 0; i < t->nr_nodes; i++) {
		unsigned long long kb;
		FILE *f;

		if (t->node[i].mem_free ||
		    asam_topo_path(t, path, sizeof(path),
				   "/sys/devices/system/node/node%d/meminfo",
				   t->node[i].id))
			continue;
		f = fopen(path, "re");
		while (f && fgets(line, sizeof(line), f))
			if (sscanf(line, "Node %*d MemFree: %llu kB", &kb) == 1)
				t->node[i].mem_free = (uint64_t)kb << 10;
		if (f)
			fclose(f);
	}
}

struct asam_topo *asam_topo_discover(const struct asam_topo_opts *opts)
{
	const struct asam_topo_provider *list[3];
	const char *root = opts ? opts->root : NULL;
	const char *only = opts ? opts->provider : NULL;
	unsigned int want = (1u << ASAM_TOPO_NR_PARTS) - 1;
	struct asam_topo *t;
	char line[256];
	int i, p;

	if (!root)
		root = getenv("ASAM_SYSFS_ROOT");
	if (!only)
		only = getenv("ASAM_TOPO_PROVIDER");
	if (only && !*only)
		only = NULL;
	if (root && !strcmp(root, "/"))
		root = "";
	if (root && strlen(root) >= sizeof(t->root))
		return ERR_PTR(asam_err(-ENAMETOOLONG, "topology: root \"%s\" is too long",
					root));
	provider_list(list);
	if (only) {
		const struct asam_topo_provider *pr = provider_by_name(only);

		if (!pr)
			return ERR_PTR(asam_err(-EINVAL,
						"topology: provider \"%s\" is not hwloc, libnuma or sysfs, or is not built",
						only));
		list[0] = pr;
		list[1] = NULL;
		list[2] = pr == list[2] ? NULL : list[2];
	}
	t = calloc(1, sizeof(*t));
	if (!t)
		return ERR_PTR(asam_err(-ENOMEM, "topology: out of memory"));
	if (root)
		strcpy(t->root, root);
	for (i = 0; i < ASAM_TOPO_NR_PARTS; i++)
		asam_topo_reset(t, i);

	for (p = 0; p < 3 && want; p++) {
		int got;

		if (!list[p])
			continue;
		/* the libraries read the real machine, not a fake root */
		if (t->root[0] && list[p] != &asam_topo_sysfs)
			continue;
		got = list[p]->discover(t, want);
		if (got < 0) {
			pr_debug("topology: %s: %s", list[p]->name,
				 asam_strerror(got));
			continue;
		}
		got &= want;
		for (i = 0; i < ASAM_TOPO_NR_PARTS; i++)
			if (got & 1u << i)
				t->provider[i] = list[p]->name;
		want &= ~got;
	}
	fill_defaults(t, want);
	fill_mem_free(t);
	asam_topo_count(t);
	asam_err_clear();
	if (!(opts && opts->quiet) && !asam_topo_summary(t, line, sizeof(line)))
		pr_info("%s", line);
	return t;
}

void asam_topo_free(struct asam_topo *t)
{
	if (!IS_ERR_OR_NULL(t))
		free(t);
}

static pthread_mutex_t topo_lock = PTHREAD_MUTEX_INITIALIZER;
static struct asam_topo *topo_cached;	/* holds one reference */

static void topo_key(char *buf, size_t len)
{
	const char *root = getenv("ASAM_SYSFS_ROOT");
	const char *prov = getenv("ASAM_TOPO_PROVIDER");

	snprintf(buf, len, "%s|%s", root ? root : "", prov ? prov : "");
}

struct asam_topo *asam_topo_get(void)
{
	struct asam_topo *t, *old = NULL;
	char key[sizeof(t->key)];

	topo_key(key, sizeof(key));
	pthread_mutex_lock(&topo_lock);
	if (topo_cached && !strcmp(topo_cached->key, key)) {
		t = topo_cached;
		t->refs++;
		goto out;
	}
	t = asam_topo_discover(NULL);
	if (IS_ERR(t))
		goto out;
	strcpy(t->key, key);
	t->refs = 2;
	if (topo_cached && !--topo_cached->refs)
		old = topo_cached;
	topo_cached = t;
out:
	pthread_mutex_unlock(&topo_lock);
	asam_topo_free(old);
	return t;
}

void asam_topo_put(struct asam_topo *t)
{
	bool last;

	if (IS_ERR_OR_NULL(t))
		return;
	pthread_mutex_lock(&topo_lock);
	last = !--t->refs;
	pthread_mutex_unlock(&topo_lock);
	if (last)
		asam_topo_free(t);
}
