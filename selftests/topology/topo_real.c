// SPDX-License-Identifier: MIT
/*
 * This machine's topology from each provider, cross-checked against
 * /proc/cpuinfo, /proc/meminfo and /sys read here in the plainest way.  A
 * provider whose library is missing is a SKIP; so is a check whose source
 * lacks the field (/proc/cpuinfo without "core id", say).
 */
#include <dirent.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <asam/asam.h>
#include <internal/err.h>
#include <internal/kconfig.h>
#include <internal/topology.h>

#include "../lib/kselftest.h"

struct truth {
	int cpus;		/* "processor" lines: the online CPUs */
	int cores, packages;	/* distinct (physical id, core id); -1 unknown */
	int nodes;		/* /sys/devices/system/node/nodeN dirs */
	int gpus;		/* NVIDIA display/3D PCI functions */
	unsigned long long mem;	/* /proc/meminfo MemTotal, bytes */
	unsigned long long node_mem;	/* sum of nodeN/meminfo MemTotal */
};

static void read_cpuinfo(struct truth *tr)
{
	static int pairs[ASAM_TOPO_MAX_CPUS][2], pkgs[ASAM_TOPO_MAX_CPUS];
	int npairs = 0, npkg = 0, phys = -1, core = -1, i;
	bool have_ids = false;
	char line[512];
	FILE *f = fopen("/proc/cpuinfo", "r");

	tr->cpus = 0;
	tr->cores = tr->packages = -1;
	if (!f)
		return;
	while (fgets(line, sizeof(line), f)) {
		if (!strncmp(line, "processor", 9)) {
			tr->cpus++;
			phys = core = -1;
		} else if (!strncmp(line, "physical id", 11)) {
			phys = atoi(strchr(line, ':') + 1);
		} else if (!strncmp(line, "core id", 7)) {
			core = atoi(strchr(line, ':') + 1);
		}
		if (phys < 0 || core < 0)
			continue;
		have_ids = true;
		for (i = 0; i < npairs; i++)
			if (pairs[i][0] == phys && pairs[i][1] == core)
				break;
		if (i == npairs && npairs < ASAM_TOPO_MAX_CPUS) {
			pairs[npairs][0] = phys;
			pairs[npairs++][1] = core;
		}
		for (i = 0; i < npkg; i++)
			if (pkgs[i] == phys)
				break;
		if (i == npkg && npkg < ASAM_TOPO_MAX_CPUS)
			pkgs[npkg++] = phys;
		phys = core = -1;
	}
	fclose(f);
	if (have_ids) {
		tr->cores = npairs;
		tr->packages = npkg;
	}
}

static unsigned long hexfile(const char *dir, const char *dev, const char *f)
{
	char path[512], buf[32] = "";
	FILE *fp;

	snprintf(path, sizeof(path), "%s/%s/%s", dir, dev, f);
	fp = fopen(path, "r");
	if (!fp)
		return 0;
	if (!fgets(buf, sizeof(buf), fp))
		buf[0] = '\0';
	fclose(fp);
	return strtoul(buf, NULL, 16);
}

static void read_sys(struct truth *tr)
{
	const char *pci = "/sys/bus/pci/devices";
	struct dirent *de;
	char line[256];
	DIR *d;
	FILE *f;

	tr->nodes = 0;
	tr->node_mem = 0;
	d = opendir("/sys/devices/system/node");
	while (d && (de = readdir(d))) {
		unsigned long long kb;
		char path[300];

		if (strncmp(de->d_name, "node", 4) ||
		    de->d_name[4] < '0' || de->d_name[4] > '9')
			continue;
		tr->nodes++;
		snprintf(path, sizeof(path), "/sys/devices/system/node/%s/meminfo",
			 de->d_name);
		f = fopen(path, "r");
		while (f && fgets(line, sizeof(line), f))
			if (sscanf(line, "Node %*d MemTotal: %llu kB", &kb) == 1)
				tr->node_mem += kb << 10;
		if (f)
			fclose(f);
	}
	if (d)
		closedir(d);
	tr->gpus = 0;
	d = opendir(pci);
	while (d && (de = readdir(d))) {
		unsigned long cls = hexfile(pci, de->d_name, "class") >> 8;

		if (de->d_name[0] != '.' &&
		    hexfile(pci, de->d_name, "vendor") == 0x10de &&
		    (cls == 0x300 || cls == 0x302))
			tr->gpus++;
	}
	if (d)
		closedir(d);
	tr->mem = 0;
	f = fopen("/proc/meminfo", "r");
	while (f && fgets(line, sizeof(line), f))
		if (sscanf(line, "MemTotal: %llu kB", &tr->mem) == 1)
			tr->mem <<= 10;
	if (f)
		fclose(f);
}

static void check_provider(const char *name, const struct truth *tr)
{
	struct asam_topo_opts o = { .provider = name, .quiet = true };
	struct asam_topo *t;
	unsigned long long mem = 0;
	const char *who;
	int i;

	if ((!strcmp(name, "hwloc") && !IS_ENABLED(CONFIG_TOPO_HWLOC)) ||
	    (!strcmp(name, "libnuma") && !IS_ENABLED(CONFIG_TOPO_LIBNUMA))) {
		ksft_test_result_skip("%s: not built\n", name);
		ksft_test_result_skip("%s: nodes\n", name);
		return;
	}
	t = asam_topo_discover(&o);
	if (IS_ERR(t)) {
		ksft_test_result_fail("%s: %s\n", name, asam_last_error());
		return;
	}
	/* libnuma answers nodes only; the others answer CPUs too */
	who = t->provider[!strcmp(name, "libnuma") ? ASAM_TOPO_NODES :
			  ASAM_TOPO_CPUS];
	if (strcmp(who, name)) {
		ksft_test_result_skip("%s: not available here (%s answered)\n",
				      name, who);
		ksft_test_result_skip("%s: nodes\n", name);
		asam_topo_free(t);
		return;
	}
	if (tr->cores < 0)
		ksft_test_result(t->nr_online == tr->cpus,
				 "%s: %d online CPUs as /proc/cpuinfo (no core ids there)\n",
				 name, tr->cpus);
	else
		ksft_test_result(t->nr_online == tr->cpus &&
				 t->nr_cores == tr->cores &&
				 t->nr_packages == tr->packages,
				 "%s: CPUs/cores/packages %d/%d/%d, /proc/cpuinfo %d/%d/%d\n",
				 name, t->nr_online, t->nr_cores, t->nr_packages,
				 tr->cpus, tr->cores, tr->packages);
	for (i = 0; i < t->nr_nodes; i++)
		mem += t->node[i].mem_total;
	/*
	 * The nodes' memory is what their meminfo files say (within 1%: hwloc
	 * rounds to pages), and never more than the machine's.  Some virtual
	 * machines give /proc/meminfo hot-plugged memory no node shows.
	 */
	ksft_test_result(t->nr_nodes == (tr->nodes ? tr->nodes : 1) &&
			 (!tr->node_mem || (mem >= tr->node_mem * 0.99 &&
					    mem <= tr->node_mem * 1.01)) &&
			 mem <= tr->mem * 1.01 && t->nr_gpus == tr->gpus,
			 "%s: %d nodes with %llu MiB, %d GPUs; /sys %d nodes with %llu MiB (/proc/meminfo %llu MiB), %d GPUs\n",
			 name, t->nr_nodes, mem >> 20, t->nr_gpus, tr->nodes,
			 tr->node_mem >> 20, tr->mem >> 20, tr->gpus);
	asam_topo_free(t);
}

int main(void)
{
	static const char *const names[] = { "hwloc", "libnuma", "sysfs" };
	struct asam_topo *t;
	struct truth tr;
	unsigned int i;

	ksft_print_header();
	ksft_set_plan(2 * 3 + 2);
	read_cpuinfo(&tr);
	read_sys(&tr);
	ksft_print_msg("truth: %d CPUs, %d cores, %d packages, %d nodes, %d GPUs, %llu MiB\n",
		       tr.cpus, tr.cores, tr.packages, tr.nodes, tr.gpus,
		       tr.mem >> 20);
	for (i = 0; i < 3; i++)
		check_provider(names[i], &tr);

	/* the default order, and hwloc missing: the next provider answers */
	t = asam_topo_discover(&(struct asam_topo_opts){ .quiet = true });
	ksft_test_result(!IS_ERR(t) && t->nr_online == tr.cpus,
			 "default order: %s answered for the CPUs\n",
			 IS_ERR(t) ? "nobody" : t->provider[ASAM_TOPO_CPUS]);
	asam_topo_free(t);
	setenv("ASAM_LIBHWLOC", "/nonexistent/libhwloc.so.15", 1);
	t = asam_topo_discover(&(struct asam_topo_opts){ .quiet = true });
	ksft_test_result(!IS_ERR(t) && strcmp(t->provider[ASAM_TOPO_CPUS], "hwloc") &&
			 t->nr_online == tr.cpus &&
			 t->nr_nodes == (tr.nodes ? tr.nodes : 1),
			 "without hwloc: cpus from %s, nodes from %s, same answer\n",
			 IS_ERR(t) ? "-" : t->provider[ASAM_TOPO_CPUS],
			 IS_ERR(t) ? "-" : t->provider[ASAM_TOPO_NODES]);
	asam_topo_free(t);
	unsetenv("ASAM_LIBHWLOC");
	ksft_finished();
}
