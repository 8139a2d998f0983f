// SPDX-License-Identifier: MIT
/*
 * The sysfs provider against a fake tree (fake_sysfs.h): two NUMA nodes,
 * offline CPUs, SMT, a GPU on node 1, a GPU whose numa_node is -1, and
 * PCI devices that are not GPUs.  Every expected number is written out
 * here from the tree's description, not computed by the library.  Then
 * hwloc reads the same tree (HWLOC_FSROOT) and must agree with sysfs
 * field by field.  libnuma has no such switch: it is checked against the
 * real machine in topo_real.
 */
#include <stdlib.h>
#include <string.h>

#include <asam/asam.h>
#include <internal/err.h>
#include <internal/kconfig.h>
#include <internal/topology.h>

#include "../lib/kselftest.h"
#include "fake_sysfs.h"

static struct asam_topo *discover(const char *root, const char *provider)
{
	struct asam_topo_opts o = { .root = root, .provider = provider,
				    .quiet = true };

	return asam_topo_discover(&o);
}

static void test_cpus(const struct asam_topo *t)
{
	static const int pkg[8] = { 0, 0, 1, 1, 0, 0, -1, -1 };
	static const int core[8] = { 0, 1, 0, 1, 0, 1, -1, -1 };
	static const int smt[8] = { 0, 0, 0, 0, 1, 1, -1, -1 };
	static const int node[8] = { 0, 0, 1, 1, 0, 0, -1, -1 };
	char buf[64];
	bool ok = true;
	int i;

	ksft_test_result(t->nr_cpus == 8 && t->nr_online == 6,
			 "cpus: 8 possible, 6 online (got %d, %d)\n",
			 t->nr_cpus, t->nr_online);
	cpuset_format(&t->online, buf, sizeof(buf));
	ksft_test_result(!strcmp(buf, "0-5"), "cpus: online list 0-5 (got %s)\n",
			 buf);
	ksft_test_result(t->nr_packages == 2 && t->nr_cores == 4,
			 "cpus: 2 packages, 4 cores (got %d, %d)\n",
			 t->nr_packages, t->nr_cores);
	for (i = 0; i < 8; i++) {
		const struct asam_topo_cpu *c = &t->cpu[i];

		if (c->online != (i < 6) || c->package != pkg[i] ||
		    c->core != core[i] || c->smt_index != smt[i] ||
		    c->node != node[i]) {
			ksft_print_msg("cpu%d: online %d pkg %d core %d smt %d node %d\n",
				       i, c->online, c->package, c->core,
				       c->smt_index, c->node);
			ok = false;
		}
	}
	ksft_test_result(ok, "cpus: package, core, SMT index, node of each CPU\n");
}

static void test_nodes(const struct asam_topo *t)
{
	char b0[64] = "", b1[64] = "";

	ksft_test_result(t->nr_nodes == 2 && t->node[0].id == 0 &&
			 t->node[1].id == 1,
			 "nodes: 0 and 1 online of 0-3 possible (got %d)\n",
			 t->nr_nodes);
	ksft_test_result(t->node[0].mem_total == 16ull << 30 &&
			 t->node[0].mem_free == 8ull << 30 &&
			 t->node[1].mem_total == 32ull << 30,
			 "nodes: memory 16 GiB (8 free) and 32 GiB (got %llu, %llu, %llu)\n",
			 (unsigned long long)t->node[0].mem_total,
			 (unsigned long long)t->node[0].mem_free,
			 (unsigned long long)t->node[1].mem_total);
	cpuset_format(&t->node[0].cpus, b0, sizeof(b0));
	cpuset_format(&t->node[1].cpus, b1, sizeof(b1));
	ksft_test_result(!strcmp(b0, "0-1,4-5") && !strcmp(b1, "2-3"),
			 "nodes: cpulists 0-1,4-5 and 2-3 (got %s, %s)\n", b0, b1);
}

static void test_gpus(const struct asam_topo *t)
{
	const struct asam_topo_gpu *g0, *g1;
	struct asam_cpuset s;
	char b[64] = "";
	int node;

	ksft_test_result(t->nr_gpus == 2,
			 "pci: 2 NVIDIA display/3D devices, not the Intel one or the bridge (got %d)\n",
			 t->nr_gpus);
	g0 = asam_topo_gpu_find(t, "00000000:17:00.0");	/* nvidia-smi form */
	g1 = asam_topo_gpu_find(t, "0000:65:00.0");
	if (g0)
		cpuset_format(&g0->cpus, b, sizeof(b));
	ksft_test_result(g0 && g0->numa_node == 1 && !strcmp(b, "2-3") &&
			 g0->device == 0x2330,
			 "pci: GPU 17:00.0 on node 1, CPUs 2-3 (got %d, %s)\n",
			 g0 ? g0->numa_node : -99, b);
	ksft_test_result(g1 && g1->numa_node == -1 &&
			 cpuset_equal(&g1->cpus, &t->online),
			 "pci: GPU 65:00.0 numa_node -1 is unknown, nearest CPUs = all online\n");
	ksft_test_result(asam_topo_gpu_find(t, "0000:17:00.0") == g0 &&
			 asam_topo_gpu_find(t, "17:00.0") == g0 &&
			 !asam_topo_gpu_find(t, "0000:31:00.0") &&
			 !asam_topo_gpu_find(t, "garbage"),
			 "pci: bus ids match in every spelling, non-GPUs do not\n");
	asam_topo_pci_locality(t, "0000:31:00.0", &node, &s);
	ksft_test_result(node == 0 && cpuset_equal(&s, &t->online),
			 "pci: locality of a device outside the list comes from sysfs (node %d)\n",
			 node);
	asam_topo_pci_locality(t, "0000:99:00.0", &node, &s);
	ksft_test_result(node == -1 && cpuset_equal(&s, &t->online),
			 "pci: a device sysfs lacks is node -1, all CPUs\n");
}

static void test_cpuset(void)
{
	struct asam_cpuset s;
	char buf[64];
	bool ok;

	ok = !cpuset_parse(&s, "0-3,8,10-11\n") && cpuset_weight(&s) == 7 &&
	     !cpuset_format(&s, buf, sizeof(buf)) &&
	     !strcmp(buf, "0-3,8,10-11");
	ok = ok && cpuset_parse(&s, "3-1") == -EINVAL &&
	     cpuset_parse(&s, "1,,2") == -EINVAL &&
	     cpuset_parse(&s, "x") == -EINVAL &&
	     cpuset_parse(&s, "5000") == -EINVAL &&
	     !cpuset_parse(&s, "") && cpuset_weight(&s) == 0;
	ksft_test_result(ok, "cpuset: parse and format cpulists, refuse malformed ones\n");
}

/* hwloc on the fake tree must say what sysfs said, field by field */
static void test_hwloc(const char *root, const struct asam_topo *ref)
{
	struct asam_topo *t = calloc(1, sizeof(*t));
	bool cpus = true, nodes, gpus = true;
	int i, got;

	if (!IS_ENABLED(CONFIG_TOPO_HWLOC) || !t) {
		ksft_test_result_skip("hwloc on the fake tree: %s\n",
				      t ? "not built" : "out of memory");
		free(t);
		return;
	}
	for (i = 0; i < ASAM_TOPO_NR_PARTS; i++)
		asam_topo_reset(t, i);
	strcpy(t->root, root);
	setenv("HWLOC_FSROOT", root, 1);
	/* the x86 backend would read this CPU's cpuid, not the fake tree */
	setenv("HWLOC_COMPONENTS", "-x86", 1);
	got = asam_topo_hwloc.discover(t, (1u << ASAM_TOPO_NR_PARTS) - 1);
	unsetenv("HWLOC_FSROOT");
	unsetenv("HWLOC_COMPONENTS");
	if (got < 0) {
		ksft_test_result_skip("hwloc on the fake tree: %s\n",
				      asam_last_error());
		free(t);
		return;
	}
	asam_topo_count(t);
	for (i = 0; i < ref->nr_cpus; i++) {
		const struct asam_topo_cpu *a = &t->cpu[i], *b = &ref->cpu[i];

		cpus &= a->online == b->online && a->package == b->package &&
			a->core == b->core && a->smt_index == b->smt_index &&
			a->node == b->node;
	}
	cpus &= t->nr_cpus == ref->nr_cpus && t->nr_cores == ref->nr_cores &&
		t->nr_packages == ref->nr_packages;
	nodes = t->nr_nodes == ref->nr_nodes;
	for (i = 0; nodes && i < t->nr_nodes; i++)
		nodes = t->node[i].id == ref->node[i].id &&
			t->node[i].mem_total == ref->node[i].mem_total &&
			cpuset_equal(&t->node[i].cpus, &ref->node[i].cpus);
	gpus = t->nr_gpus == ref->nr_gpus;
	for (i = 0; gpus && i < t->nr_gpus; i++)
		gpus = !strcmp(t->gpu[i].bus_id, ref->gpu[i].bus_id) &&
		       t->gpu[i].numa_node == ref->gpu[i].numa_node &&
		       cpuset_equal(&t->gpu[i].cpus, &ref->gpu[i].cpus);
	ksft_test_result(cpus && nodes && gpus,
			 "hwloc on the fake tree agrees with sysfs: cpus %d, nodes %d, GPUs (PCI locality) %d\n",
			 cpus, nodes, gpus);
	free(t);
}

int main(void)
{
	const char *root;
	struct asam_topo *t;
	char line[256], rel[128];

	ksft_print_header();
	ksft_set_plan(21);
	root = fake_sysfs_make();
	if (!root)
		ksft_exit_skip("cannot build a fake sysfs tree in /tmp\n");

	t = discover(root, "sysfs");
	if (IS_ERR(t)) {
		ksft_test_result_fail("discover: %s\n", asam_last_error());
		fake_sysfs_remove(root);
		ksft_finished();
	}
	ksft_test_result(!strcmp(t->provider[ASAM_TOPO_CPUS], "sysfs") &&
			 !strcmp(t->provider[ASAM_TOPO_NODES], "sysfs") &&
			 !strcmp(t->provider[ASAM_TOPO_PCI], "sysfs"),
			 "sysfs answers every part of a fake root\n");
	test_cpus(t);
	test_nodes(t);
	test_gpus(t);
	test_hwloc(root, t);
	asam_topo_summary(t, line, sizeof(line));
	ksft_test_result(strstr(line, "2 packages, 4 cores, 6/8 CPUs online, 2 NUMA nodes, 2 NVIDIA GPUs (provider sysfs)") != NULL,
			 "summary: %s\n", line);
	asam_topo_free(t);

	/* with a root, the libraries (which read the real machine) stand aside */
	t = discover(root, NULL);
	ksft_test_result(!IS_ERR(t) && t->nr_nodes == 2 &&
			 !strcmp(t->provider[ASAM_TOPO_NODES], "sysfs"),
			 "a fake root is never answered by hwloc or libnuma\n");
	asam_topo_free(t);

	setenv("ASAM_SYSFS_ROOT", root, 1);
	t = discover(NULL, NULL);
	ksft_test_result(!IS_ERR(t) && t->nr_cpus == 8 && t->nr_gpus == 2,
			 "ASAM_SYSFS_ROOT selects the tree\n");
	asam_topo_free(t);
	unsetenv("ASAM_SYSFS_ROOT");

	t = discover(root, "nonsense");
	ksft_test_result(IS_ERR(t) && PTR_ERR(t) == -EINVAL &&
			 strstr(asam_last_error(), "nonsense"),
			 "an unknown provider name is -EINVAL: %s\n",
			 asam_last_error());

	/* take the node directory away: nodes unknown, the rest still there */
	snprintf(rel, sizeof(rel), "rm -rf '%s/sys/devices/system/node'", root);
	if (system(rel))
		ksft_print_msg("rm failed\n");
	t = discover(root, "sysfs");
	ksft_test_result(!IS_ERR(t) && t->nr_nodes == 0 &&
			 t->cpu[0].node == -1 && t->nr_cores == 4 &&
			 !strcmp(t->provider[ASAM_TOPO_NODES], "none"),
			 "no node directory: nodes are unknown (-1), CPUs still found\n");
	asam_topo_free(t);
	test_cpuset();
	fake_sysfs_remove(root);
	ksft_finished();
}
