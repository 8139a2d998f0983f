// SPDX-License-Identifier: MIT
/*
 * The libnuma provider: NUMA nodes, their memory and which node each CPU
 * is on.  libnuma knows nothing of cores, packages or PCI devices, so it
 * answers the NODES part only and the core asks sysfs for the rest.
 */
#include <internal/err.h>
#include <internal/topology.h>

static int libnuma_discover(struct asam_topo *t, unsigned int want)
{
	const struct asam_libnuma *l;
	int node, cpu, max, ncpu;

	if (!(want & 1u << ASAM_TOPO_NODES))
		return 0;
	l = asam_libnuma_get();
	if (IS_ERR(l))
		return PTR_ERR(l);
	max = l->numa_max_node();
	ncpu = l->numa_num_configured_cpus();
	if (max < 0 || ncpu <= 0)
		return -ENOENT;
	asam_topo_reset(t, ASAM_TOPO_NODES);
	for (node = 0; node <= max && node < ASAM_TOPO_MAX_NODES; node++) {
		struct asam_topo_node *nd = &t->node[t->nr_nodes];
		long long freeb = 0, total = l->numa_node_size64(node, &freeb);

		/* a hole in the node numbering answers -1 */
		if (total < 0)
			continue;
		nd->id = node;
		nd->mem_total = total;
		nd->mem_free = freeb > 0 ? freeb : 0;
		t->nr_nodes++;
	}
	for (cpu = 0; cpu < ncpu && cpu < ASAM_TOPO_MAX_CPUS; cpu++) {
		int i;

		node = l->numa_node_of_cpu(cpu);
		if (node < 0)
			continue;
		t->cpu[cpu].node = node;
		for (i = 0; i < t->nr_nodes; i++)
			if (t->node[i].id == node)
				cpuset_set(&t->node[i].cpus, cpu);
	}
	return t->nr_nodes ? (int)(1u << ASAM_TOPO_NODES) : -ENOENT;
}

const struct asam_topo_provider asam_topo_libnuma = {
	.name = "libnuma",
	.discover = libnuma_discover,
};
