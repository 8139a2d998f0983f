/* SPDX-License-Identifier: MIT */
/*
 * A fake sysfs tree in a temporary directory, shared by the topology and
 * arch-cuda selftests.  The machine it describes:
 *
 *   CPUs 0-7 possible, 0-5 online (6 and 7 offline)
 *   package 0: core 0 = CPUs 0,4 (SMT)   core 1 = CPUs 1,5 (SMT)
 *   package 1: core 0 = CPU 2            core 1 = CPU 3
 *   node 0: CPUs 0-1,4-5, 16 GiB (8 GiB free); node 1: CPUs 2-3, 32 GiB
 *   PCI 0000:17:00.0  NVIDIA 3D controller, numa_node 1, CPUs 2-3
 *   PCI 0000:65:00.0  NVIDIA VGA controller, numa_node -1, no cpulist
 *   PCI 0000:00:1f.0  Intel (not a GPU)
 *   PCI 0000:31:00.0  NVIDIA bridge (not a GPU)
 */
#ifndef ASAM_SELFTEST_FAKE_SYSFS_H
#define ASAM_SELFTEST_FAKE_SYSFS_H

#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

static int fake_put(const char *root, const char *rel, const char *fmt, ...)
	__attribute__((format(printf, 3, 4)));

/* write root/rel (making its directories), contents from fmt */
static int fake_put(const char *root, const char *rel, const char *fmt, ...)
{
	char path[1024];
	va_list ap;
	size_t i, n;
	FILE *f;

	n = (size_t)snprintf(path, sizeof(path), "%s/%s", root, rel);
	if (n >= sizeof(path))
		return -1;
	for (i = strlen(root) + 1; i < n; i++) {
		if (path[i] != '/')
			continue;
		path[i] = '\0';
		mkdir(path, 0755);
		path[i] = '/';
	}
	f = fopen(path, "w");
	if (!f)
		return -1;
	va_start(ap, fmt);
	vfprintf(f, fmt, ap);
	va_end(ap);
	return fclose(f);
}

/*
 * Lists and the hex masks hwloc prefers (bit n is CPU n): package 0 holds
 * 0,1,4,5 (0x33), package 1 holds 2,3 (0x0c).
 */
static const struct {
	int cpu, pkg, core;
	const char *siblings, *smask, *pkgcpus, *pmask;
} fake_cpus[] = {
	{ 0, 0, 0, "0,4", "11", "0-1,4-5", "33" },
	{ 1, 0, 1, "1,5", "22", "0-1,4-5", "33" },
	{ 2, 1, 0, "2", "04", "2-3", "0c" },
	{ 3, 1, 1, "3", "08", "2-3", "0c" },
	{ 4, 0, 0, "0,4", "11", "0-1,4-5", "33" },
	{ 5, 0, 1, "1,5", "22", "0-1,4-5", "33" },
};

static const char *const fake_topo_files[][2] = {
	{ "thread_siblings_list", "siblings" }, { "core_cpus_list", "siblings" },
	{ "thread_siblings", "smask" }, { "core_cpus", "smask" },
	{ "core_siblings_list", "pkgcpus" }, { "package_cpus_list", "pkgcpus" },
	{ "core_siblings", "pmask" }, { "package_cpus", "pmask" },
};

/* Build the tree under a fresh temp dir; returns the dir (static buffer). */
static const char *fake_sysfs_make(void)
{
	static char root[] = "/tmp/asam-fake-sysfs-XXXXXX";
	const char *cpu = "sys/devices/system/cpu";
	const char *node = "sys/devices/system/node";
	const char *pci = "sys/bus/pci/devices";
	char rel[256];
	int err = 0;
	size_t i, j;

	if (!mkdtemp(root))
		return NULL;
	snprintf(rel, sizeof(rel), "%s/possible", cpu);
	err |= fake_put(root, rel, "0-7\n");
	snprintf(rel, sizeof(rel), "%s/present", cpu);
	err |= fake_put(root, rel, "0-7\n");
	snprintf(rel, sizeof(rel), "%s/online", cpu);
	err |= fake_put(root, rel, "0-5\n");
	for (i = 0; i < sizeof(fake_cpus) / sizeof(fake_cpus[0]); i++) {
		int c = fake_cpus[i].cpu;

		snprintf(rel, sizeof(rel), "%s/cpu%d/topology/core_id", cpu, c);
		err |= fake_put(root, rel, "%d\n", fake_cpus[i].core);
		snprintf(rel, sizeof(rel),
			 "%s/cpu%d/topology/physical_package_id", cpu, c);
		err |= fake_put(root, rel, "%d\n", fake_cpus[i].pkg);
		for (j = 0; j < sizeof(fake_topo_files) / sizeof(fake_topo_files[0]); j++) {
			const char *k = fake_topo_files[j][1];

			snprintf(rel, sizeof(rel), "%s/cpu%d/topology/%s", cpu,
				 c, fake_topo_files[j][0]);
			err |= fake_put(root, rel, "%s\n",
					!strcmp(k, "siblings") ? fake_cpus[i].siblings :
					!strcmp(k, "smask") ? fake_cpus[i].smask :
					!strcmp(k, "pkgcpus") ? fake_cpus[i].pkgcpus :
					fake_cpus[i].pmask);
		}
		snprintf(rel, sizeof(rel), "%s/cpu%d/online", cpu, c);
		err |= fake_put(root, rel, "1\n");
	}
	/* offline CPUs keep only their "online" file, as on Linux */
	snprintf(rel, sizeof(rel), "%s/cpu6/online", cpu);
	err |= fake_put(root, rel, "0\n");
	snprintf(rel, sizeof(rel), "%s/cpu7/online", cpu);
	err |= fake_put(root, rel, "0\n");

	snprintf(rel, sizeof(rel), "%s/online", node);
	err |= fake_put(root, rel, "0-1\n");
	snprintf(rel, sizeof(rel), "%s/possible", node);
	err |= fake_put(root, rel, "0-3\n");
	snprintf(rel, sizeof(rel), "%s/node0/cpulist", node);
	err |= fake_put(root, rel, "0-1,4-5\n");
	snprintf(rel, sizeof(rel), "%s/node1/cpulist", node);
	err |= fake_put(root, rel, "2-3\n");
	snprintf(rel, sizeof(rel), "%s/node0/cpumap", node);
	err |= fake_put(root, rel, "33\n");
	snprintf(rel, sizeof(rel), "%s/node1/cpumap", node);
	err |= fake_put(root, rel, "0c\n");
	snprintf(rel, sizeof(rel), "%s/has_cpu", node);
	err |= fake_put(root, rel, "0-1\n");
	snprintf(rel, sizeof(rel), "%s/has_memory", node);
	err |= fake_put(root, rel, "0-1\n");
	snprintf(rel, sizeof(rel), "%s/node0/meminfo", node);
	err |= fake_put(root, rel,
			"Node 0 MemTotal:       16777216 kB\nNode 0 MemFree:         8388608 kB\nNode 0 MemUsed:         8388608 kB\n");
	snprintf(rel, sizeof(rel), "%s/node1/meminfo", node);
	err |= fake_put(root, rel,
			"Node 1 MemTotal:       33554432 kB\nNode 1 MemFree:        33554432 kB\n");

#define PCI(dev, file, ...) do {					\
	snprintf(rel, sizeof(rel), "%s/%s/%s", pci, dev, file);		\
	err |= fake_put(root, rel, __VA_ARGS__);			\
} while (0)
	PCI("0000:17:00.0", "vendor", "0x10de\n");
	PCI("0000:17:00.0", "device", "0x2330\n");
	PCI("0000:17:00.0", "class", "0x030200\n");
	PCI("0000:17:00.0", "numa_node", "1\n");
	PCI("0000:17:00.0", "local_cpulist", "2-3\n");
	PCI("0000:17:00.0", "local_cpus", "0c\n");
	PCI("0000:65:00.0", "vendor", "0x10de\n");
	PCI("0000:65:00.0", "device", "0x2335\n");
	PCI("0000:65:00.0", "class", "0x030000\n");
	PCI("0000:65:00.0", "numa_node", "-1\n");
	PCI("0000:00:1f.0", "vendor", "0x8086\n");
	PCI("0000:00:1f.0", "class", "0x030000\n");
	PCI("0000:00:1f.0", "numa_node", "0\n");
	PCI("0000:31:00.0", "vendor", "0x10de\n");
	PCI("0000:31:00.0", "class", "0x068000\n");
	PCI("0000:31:00.0", "numa_node", "0\n");
#undef PCI
	return err ? NULL : root;
}

static void fake_sysfs_remove(const char *root)
{
	char cmd[1100];

	if (root && !strncmp(root, "/tmp/asam-fake-sysfs-", 21)) {
		snprintf(cmd, sizeof(cmd), "rm -rf '%s'", root);
		if (system(cmd))
			fprintf(stderr, "# could not remove %s\n", root);
	}
}

#endif
