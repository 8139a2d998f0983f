// SPDX-License-Identifier: MIT
/*
 * The sysfs provider: /sys/devices/system/cpu for CPUs, cores, packages,
 * /sys/devices/system/node for NUMA nodes and their memory, and
 * /sys/bus/pci/devices for the GPUs (vendor 0x10de, display class) and
 * their numa_node and local_cpulist.  Everything is read below t->root, so
 * the tests point it at a fake tree.
 */
#include <dirent.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <internal/err.h>
#include <internal/topology.h>

static int read_str(const struct asam_topo *t, char *buf, size_t len,
		    const char *fmt, const char *a, int b)
{
	char path[512];
	FILE *f;
	int ret = 0;

	if (asam_topo_path(t, path, sizeof(path), fmt, a, b))
		return -ENAMETOOLONG;
	f = fopen(path, "re");
	if (!f)
		return -errno;
	if (!fgets(buf, len, f))
		ret = -EIO;
	fclose(f);
	buf[strcspn(buf, "\n")] = '\0';
	return ret;
}

static int read_int(const struct asam_topo *t, const char *fmt, const char *a,
		    int b, long *v)
{
	char buf[64], *end;
	int ret = read_str(t, buf, sizeof(buf), fmt, a, b);

	if (ret)
		return ret;
	*v = strtol(buf, &end, 0);
	return end == buf ? -EINVAL : 0;
}

static int read_list(const struct asam_topo *t, struct asam_cpuset *s,
		     const char *fmt, const char *a, int b)
{
	static __thread char buf[16384];
	int ret = read_str(t, buf, sizeof(buf), fmt, a, b);

	return ret ? ret : cpuset_parse(s, buf);
}

static int sysfs_cpus(struct asam_topo *t)
{
	struct asam_cpuset possible, online;
	int cpu, ret;

	ret = read_list(t, &possible, "/sys/devices/system/cpu/possible%s", "", 0);
	if (ret)
		ret = read_list(t, &possible, "/sys/devices/system/cpu/present%s",
				"", 0);
	if (ret)
		return ret;
	if (read_list(t, &online, "/sys/devices/system/cpu/online%s", "", 0))
		online = possible;

	asam_topo_reset(t, ASAM_TOPO_CPUS);
	for (cpu = 0; cpu < ASAM_TOPO_MAX_CPUS; cpu++) {
		struct asam_topo_cpu *c = &t->cpu[cpu];
		long v;

		if (!cpuset_isset(&possible, cpu))
			continue;
		t->nr_cpus = cpu + 1;
		c->online = cpuset_isset(&online, cpu);
		if (!c->online)
			continue;
		t->nr_online++;
		cpuset_set(&t->online, cpu);
		/* an offline CPU has no topology directory; leave it -1 */
		if (!read_int(t, "/sys/devices/system/cpu/cpu%s%d/topology/core_id",
			      "", cpu, &v))
			c->core = v;
		if (!read_int(t, "/sys/devices/system/cpu/cpu%s%d/topology/physical_package_id",
			      "", cpu, &v))
			c->package = v < 0 ? 0 : v;
	}
	return t->nr_cpus ? 0 : -ENOENT;
}

static uint64_t meminfo_kb(const char *path, const char *key)
{
	char line[256];
	uint64_t v = 0;
	FILE *f = fopen(path, "re");

	if (!f)
		return 0;
	while (fgets(line, sizeof(line), f)) {
		/* "Node 0 MemTotal:       16384 kB" */
		char *k = strstr(line, key);

		if (k && k[strlen(key)] == ':') {
			v = strtoull(k + strlen(key) + 1, NULL, 10);
			break;
		}
	}
	fclose(f);
	return v;
}

static int sysfs_nodes(struct asam_topo *t)
{
	struct asam_cpuset nodes;
	char path[512];
	int n, cpu;

	if (read_list(t, &nodes, "/sys/devices/system/node/online%s", "", 0) &&
	    read_list(t, &nodes, "/sys/devices/system/node/possible%s", "", 0))
		return -ENOENT;
	asam_topo_reset(t, ASAM_TOPO_NODES);
	for (n = 0; n < ASAM_TOPO_MAX_NODES; n++) {
		struct asam_topo_node *nd;

		if (!cpuset_isset(&nodes, n))
			continue;
		nd = &t->node[t->nr_nodes++];
		nd->id = n;
		read_list(t, &nd->cpus, "/sys/devices/system/node/node%s%d/cpulist",
			  "", n);
		if (!asam_topo_path(t, path, sizeof(path),
				    "/sys/devices/system/node/node%d/meminfo", n)) {
			nd->mem_total = meminfo_kb(path, "MemTotal") << 10;
			nd->mem_free = meminfo_kb(path, "MemFree") << 10;
		}
		for (cpu = 0; cpu < ASAM_TOPO_MAX_CPUS; cpu++)
			if (cpuset_isset(&nd->cpus, cpu))
				t->cpu[cpu].node = n;
	}
	return t->nr_nodes ? 0 : -ENOENT;
}

static int sysfs_pci(struct asam_topo *t)
{
	char path[512];
	struct dirent *de;
	DIR *d;

	if (asam_topo_path(t, path, sizeof(path), "/sys/bus/pci/devices"))
		return -ENAMETOOLONG;
	asam_topo_reset(t, ASAM_TOPO_PCI);
	d = opendir(path);
	if (!d)
		return -errno;
	while ((de = readdir(d)) && t->nr_gpus < ASAM_TOPO_MAX_GPUS) {
		struct asam_topo_gpu *g = &t->gpu[t->nr_gpus];
		long vendor, cls, dev = 0;

		if (de->d_name[0] == '.' ||
		    read_int(t, "/sys/bus/pci/devices/%s/vendor%.0d", de->d_name,
			     0, &vendor) ||
		    read_int(t, "/sys/bus/pci/devices/%s/class%.0d", de->d_name,
			     0, &cls))
			continue;
		/* NVIDIA, and a VGA (0x0300) or 3D (0x0302) controller */
		if (vendor != 0x10de || ((cls >> 8) != 0x0300 && (cls >> 8) != 0x0302))
			continue;
		if (asam_pci_bus_id_normalize(de->d_name, g->bus_id,
					      sizeof(g->bus_id)))
			continue;
		read_int(t, "/sys/bus/pci/devices/%s/device%.0d", de->d_name, 0,
			 &dev);
		g->vendor = vendor;
		g->device = dev;
		asam_topo_pci_locality(t, g->bus_id, &g->numa_node, &g->cpus);
		t->nr_gpus++;
	}
	closedir(d);
	/* readdir order is the filesystem's; list GPUs by bus id */
	qsort(t->gpu, t->nr_gpus, sizeof(t->gpu[0]),
	      (int (*)(const void *, const void *))strcmp);
	return 0;
}

static int sysfs_discover(struct asam_topo *t, unsigned int want)
{
	unsigned int got = 0;

	if ((want & 1u << ASAM_TOPO_CPUS) && !sysfs_cpus(t))
		got |= 1u << ASAM_TOPO_CPUS;
	if ((want & 1u << ASAM_TOPO_NODES) && !sysfs_nodes(t))
		got |= 1u << ASAM_TOPO_NODES;
	if ((want & 1u << ASAM_TOPO_PCI) && !sysfs_pci(t))
		got |= 1u << ASAM_TOPO_PCI;
	return got ? (int)got : -ENOENT;
}

const struct asam_topo_provider asam_topo_sysfs = {
	.name = "sysfs",
	.discover = sysfs_discover,
};
