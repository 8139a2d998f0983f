// SPDX-License-Identifier: MIT
/*
 * asam-topo: what libasam sees of the machine.  CPUs (packages, cores,
 * SMT), NUMA nodes with their memory, and each GPU with its NUMA node and
 * nearest CPUs, as text in the spirit of lstopo and "nvidia-smi topo -m",
 * or as JSON with --json.  Without a GPU or a driver it prints the CPU
 * part, says why there are no GPUs, and exits 0.
 */
#include <errno.h>
#include <getopt.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <asam/asam.h>
#include <internal/err.h>
#include <internal/topology.h>

#define MAX_GPUS 64

struct report {
	struct asam_topo *t;
	struct asam_gpu_info gpu[MAX_GPUS];
	int ngpu;		/* < 0: the error asam_cuda_enumerate gave */
	char why[512];
};

static const char *list(const struct asam_cpuset *s)
{
	static char buf[4][4096];
	static int i;
	char *b = buf[i++ % 4];

	if (cpuset_format(s, b, sizeof(buf[0])))
		strcpy(b, "(too long)");
	return b;
}

static double gib(uint64_t b)
{
	return b / (1024.0 * 1024.0 * 1024.0);
}

/* the CPUs of package @pkg, and how many cores it has */
static int package_cpus(const struct asam_topo *t, int pkg,
			struct asam_cpuset *s)
{
	int i, j, cores = 0;

	cpuset_zero(s);
	for (i = 0; i < t->nr_cpus; i++) {
		const struct asam_topo_cpu *c = &t->cpu[i];

		if (!c->online || c->package != pkg)
			continue;
		cpuset_set(s, i);
		for (j = 0; j < i; j++)
			if (t->cpu[j].online && t->cpu[j].package == pkg &&
			    t->cpu[j].core == c->core)
				break;
		cores += j == i;
	}
	return cores;
}

static int max_package(const struct asam_topo *t)
{
	int i, m = -1;

	for (i = 0; i < t->nr_cpus; i++)
		if (t->cpu[i].online && t->cpu[i].package > m)
			m = t->cpu[i].package;
	return m;
}

static int smt_width(const struct asam_topo *t)
{
	int i, m = 0;

	for (i = 0; i < t->nr_cpus; i++)
		if (t->cpu[i].online && t->cpu[i].smt_index + 1 > m)
			m = t->cpu[i].smt_index + 1;
	return m;
}

static void print_text(const struct report *r)
{
	const struct asam_topo *t = r->t;
	struct asam_cpuset offline, s;
	char line[512];
	int i, j;

	asam_topo_summary(t, line, sizeof(line));
	printf("%s\n\n", line);
	cpuset_zero(&offline);
	for (i = 0; i < t->nr_cpus; i++)
		if (!t->cpu[i].online)
			cpuset_set(&offline, i);
	printf("CPUs: %d possible, online %s%s%s, %d thread%s per core\n",
	       t->nr_cpus, list(&t->online),
	       cpuset_weight(&offline) ? ", offline " : "",
	       cpuset_weight(&offline) ? list(&offline) : "",
	       smt_width(t), smt_width(t) == 1 ? "" : "s");
	for (i = 0; i <= max_package(t); i++) {
		int cores = package_cpus(t, i, &s);

		if (cpuset_weight(&s))
			printf("  Package %d: %d cores, CPUs %s\n", i, cores,
			       list(&s));
	}
	printf("NUMA nodes: %d\n", t->nr_nodes);
	for (i = 0; i < t->nr_nodes; i++) {
		const struct asam_topo_node *n = &t->node[i];

		printf("  Node %d: %.1f GiB", n->id, gib(n->mem_total));
		if (n->mem_free)
			printf(" (%.1f GiB free)", gib(n->mem_free));
		printf(", CPUs %s\n", cpuset_weight(&n->cpus) ? list(&n->cpus) :
		       "none");
	}

	printf("GPUs:");
	if (r->ngpu <= 0) {
		printf(" none (%s)\n", r->ngpu < 0 ? r->why : "the driver sees none");
		/* the bus may still show NVIDIA devices the driver cannot use */
		for (i = 0; i < t->nr_gpus; i++)
			printf("  PCI %s [%04x:%04x]: NUMA node %d, CPUs %s\n",
			       t->gpu[i].bus_id, t->gpu[i].vendor,
			       t->gpu[i].device, t->gpu[i].numa_node,
			       list(&t->gpu[i].cpus));
		return;
	}
	printf(" %d (driver %d.%d)\n", r->ngpu, r->gpu[0].driver_version / 1000,
	       r->gpu[0].driver_version % 1000 / 10);
	for (i = 0; i < r->ngpu; i++) {
		const struct asam_gpu_info *g = &r->gpu[i];

		printf("  cuda:%d: %s, sm_%d%d, %d SMs, %zu MiB, L2 %d KiB, smem/block %d KiB, bus %s\n",
		       g->ordinal, g->name, g->cc_major, g->cc_minor,
		       g->sm_count, g->total_mem >> 20, g->l2_bytes >> 10,
		       g->smem_per_block_optin >> 10, g->pci_bus_id);
	}

	/* the affinity table of "nvidia-smi topo -m", without the links */
	printf("\n%-8s", "");
	for (j = 0; j < r->ngpu; j++)
		printf("GPU%-5d", j);
	printf("%-24s%s\n", "CPU Affinity", "NUMA Affinity");
	for (i = 0; i < r->ngpu; i++) {
		const struct asam_gpu_info *g = &r->gpu[i];
		char node[16];

		printf("GPU%-5d", i);
		for (j = 0; j < r->ngpu; j++)
			printf("%-8s", i == j ? "X" :
			       r->gpu[j].numa_node == g->numa_node &&
			       g->numa_node >= 0 ? "NODE" : "SYS");
		snprintf(node, sizeof(node), "%d", g->numa_node);
		printf("%-24s%s\n", list(&g->cpus),
		       g->numa_node >= 0 ? node : "N/A");
	}
	if (r->ngpu > 1)
		printf("\nNODE: same NUMA node; SYS: across nodes (link types are not probed)\n");
}

static void json_str(const char *s)
{
	putchar('"');
	for (; *s; s++) {
		if (*s == '"' || *s == '\\')
			printf("\\%c", *s);
		else if ((unsigned char)*s < 0x20)
			printf("\\u%04x", *s);
		else
			putchar(*s);
	}
	putchar('"');
}

static void print_json(const struct report *r)
{
	const struct asam_topo *t = r->t;
	struct asam_cpuset s;
	int i, first;

	printf("{\n  \"providers\": {\"cpus\": \"%s\", \"nodes\": \"%s\", \"pci\": \"%s\"},\n",
	       t->provider[ASAM_TOPO_CPUS], t->provider[ASAM_TOPO_NODES],
	       t->provider[ASAM_TOPO_PCI]);
	printf("  \"cpus\": {\"possible\": %d, \"online\": %d, \"online_list\": \"%s\", \"packages\": %d, \"cores\": %d, \"threads_per_core\": %d},\n",
	       t->nr_cpus, t->nr_online, list(&t->online), t->nr_packages,
	       t->nr_cores, smt_width(t));
	printf("  \"packages\": [");
	for (i = 0, first = 1; i <= max_package(t); i++) {
		int cores = package_cpus(t, i, &s);

		if (!cpuset_weight(&s))
			continue;
		printf("%s\n    {\"id\": %d, \"cores\": %d, \"cpus\": \"%s\"}",
		       first ? "" : ",", i, cores, list(&s));
		first = 0;
	}
	printf("\n  ],\n  \"cpu\": [");
	for (i = 0; i < t->nr_cpus; i++) {
		const struct asam_topo_cpu *c = &t->cpu[i];

		printf("%s\n    {\"id\": %d, \"online\": %s, \"package\": %d, \"core\": %d, \"smt\": %d, \"node\": %d}",
		       i ? "," : "", i, c->online ? "true" : "false",
		       c->package, c->core, c->smt_index, c->node);
	}
	printf("\n  ],\n  \"numa_nodes\": [");
	for (i = 0; i < t->nr_nodes; i++)
		printf("%s\n    {\"id\": %d, \"mem_total\": %llu, \"mem_free\": %llu, \"cpus\": \"%s\"}",
		       i ? "," : "", t->node[i].id,
		       (unsigned long long)t->node[i].mem_total,
		       (unsigned long long)t->node[i].mem_free,
		       list(&t->node[i].cpus));
	printf("\n  ],\n  \"pci_gpus\": [");
	for (i = 0; i < t->nr_gpus; i++)
		printf("%s\n    {\"bus_id\": \"%s\", \"vendor\": \"0x%04x\", \"device\": \"0x%04x\", \"numa_node\": %d, \"cpus\": \"%s\"}",
		       i ? "," : "", t->gpu[i].bus_id, t->gpu[i].vendor,
		       t->gpu[i].device, t->gpu[i].numa_node,
		       list(&t->gpu[i].cpus));
	printf("\n  ],\n  \"cuda\": {\"available\": %s, ",
	       r->ngpu > 0 ? "true" : "false");
	if (r->ngpu < 0) {
		printf("\"message\": ");
		json_str(r->why);
		printf(", ");
	} else if (r->ngpu > 0) {
		printf("\"driver_version\": %d, ", r->gpu[0].driver_version);
	}
	printf("\"devices\": [");
	for (i = 0; i < r->ngpu; i++) {
		const struct asam_gpu_info *g = &r->gpu[i];

		printf("%s\n    {\"ordinal\": %d, \"name\": ", i ? "," : "",
		       g->ordinal);
		json_str(g->name);
		printf(", \"compute_capability\": \"%d.%d\", \"sm_count\": %d, \"memory_bytes\": %zu, \"l2_bytes\": %d, \"smem_per_block_optin\": %d, \"pci_bus_id\": \"%s\", \"numa_node\": %d, \"cpus\": \"%s\"}",
		       g->cc_major, g->cc_minor, g->sm_count, g->total_mem,
		       g->l2_bytes, g->smem_per_block_optin, g->pci_bus_id,
		       g->numa_node, list(&g->cpus));
	}
	printf("%s]}\n}\n", r->ngpu > 0 ? "\n  " : "");
}

static void usage(FILE *f)
{
	fprintf(f,
		"usage: asam-topo [--json] [--root DIR] [--provider NAME] [--no-cuda]\n"
		"  --json           print JSON instead of text\n"
		"  --root DIR       read sys/ below DIR (a fake tree; sysfs only)\n"
		"  --provider NAME  hwloc, libnuma or sysfs (sysfs fills the rest)\n"
		"  --no-cuda        do not open the CUDA driver\n");
}

int main(int argc, char **argv)
{
	static const struct option opts[] = {
		{ "json", no_argument, NULL, 'j' },
		{ "root", required_argument, NULL, 'r' },
		{ "provider", required_argument, NULL, 'p' },
		{ "no-cuda", no_argument, NULL, 'n' },
		{ "help", no_argument, NULL, 'h' },
		{ 0 }
	};
	struct asam_topo_opts to = { .quiet = true };
	static struct report r;
	bool json = false, cuda = true;
	int c;

	while ((c = getopt_long(argc, argv, "jr:p:nh", opts, NULL)) != -1) {
		switch (c) {
		case 'j': json = true; break;
		case 'r': to.root = optarg; break;
		case 'p': to.provider = optarg; break;
		case 'n': cuda = false; break;
		case 'h': usage(stdout); return 0;
		default: usage(stderr); return 2;
		}
	}
	r.t = asam_topo_discover(&to);
	if (IS_ERR(r.t)) {
		fprintf(stderr, "asam-topo: %s\n", asam_last_error());
		return 1;
	}
	if (!cuda) {
		r.ngpu = -ENODEV;
		snprintf(r.why, sizeof(r.why), "--no-cuda");
	} else {
		r.ngpu = asam_cuda_enumerate(r.t, r.gpu, MAX_GPUS);
		if (r.ngpu < 0)
			snprintf(r.why, sizeof(r.why), "%s", asam_last_error());
	}
	if (json)
		print_json(&r);
	else
		print_text(&r);
	asam_topo_free(r.t);
	return 0;
}
