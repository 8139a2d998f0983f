// SPDX-License-Identifier: MIT
/*
 * The hwloc provider: libhwloc.so.15 (hwloc 2.x) through dlopen
 * (ASAM_LIBHWLOC overrides).  Only the object layout comes from
 * <hwloc.h>; the header's inline helpers are not used, since each would
 * call into a library we do not link.  hwloc answers all three parts, and
 * its PCI tree gives the CPUs nearest each GPU.
 */
#include <dlfcn.h>
#include <stdlib.h>
#include <string.h>
#include <hwloc.h>

#include <internal/err.h>
#include <internal/log.h>
#include <internal/topology.h>

struct hwloc_fns {
	void *handle;
	unsigned int (*get_api_version)(void);
	int (*topology_init)(hwloc_topology_t *t);
	int (*topology_load)(hwloc_topology_t t);
	void (*topology_destroy)(hwloc_topology_t t);
	int (*set_io_types_filter)(hwloc_topology_t t,
				   enum hwloc_type_filter_e f);
	int (*get_type_depth)(hwloc_topology_t t, hwloc_obj_type_t type);
	unsigned int (*get_nbobjs_by_depth)(hwloc_topology_t t, int depth);
	hwloc_obj_t (*get_obj_by_depth)(hwloc_topology_t t, int depth,
					unsigned int idx);
	int (*bitmap_next)(hwloc_const_bitmap_t b, int prev);
	int (*bitmap_weight)(hwloc_const_bitmap_t b);
	int (*bitmap_last)(hwloc_const_bitmap_t b);
};

static int hwloc_open(struct hwloc_fns *h)
{
	const char *path = getenv("ASAM_LIBHWLOC");

	if (!path || !*path)
		path = "libhwloc.so.15";
	h->handle = dlopen(path, RTLD_NOW | RTLD_LOCAL);
	if (!h->handle)
		return asam_err(-ENOENT, "hwloc: cannot open %s: %s", path,
				dlerror());
#define SYM(m, n) do {							\
	*(void **)&h->m = dlsym(h->handle, #n);				\
	if (!h->m) {							\
		dlclose(h->handle);					\
		return asam_err(-ENOENT, "hwloc: %s has no %s", path, #n); \
	}								\
} while (0)
	SYM(get_api_version, hwloc_get_api_version);
	SYM(topology_init, hwloc_topology_init);
	SYM(topology_load, hwloc_topology_load);
	SYM(topology_destroy, hwloc_topology_destroy);
	SYM(set_io_types_filter, hwloc_topology_set_io_types_filter);
	SYM(get_type_depth, hwloc_get_type_depth);
	SYM(get_nbobjs_by_depth, hwloc_get_nbobjs_by_depth);
	SYM(get_obj_by_depth, hwloc_get_obj_by_depth);
	SYM(bitmap_next, hwloc_bitmap_next);
	SYM(bitmap_weight, hwloc_bitmap_weight);
	SYM(bitmap_last, hwloc_bitmap_last);
#undef SYM
	/* the object layout we compiled against must be the library's */
	if (h->get_api_version() >> 16 != HWLOC_API_VERSION >> 16) {
		unsigned int v = h->get_api_version();

		dlclose(h->handle);
		return asam_err(-EOPNOTSUPP,
				"hwloc: %s has API %#x, built for %#x", path, v,
				HWLOC_API_VERSION);
	}
	return 0;
}

static void to_cpuset(const struct hwloc_fns *h, hwloc_const_bitmap_t b,
		      struct asam_cpuset *s)
{
	int i;

	cpuset_zero(s);
	if (!b)
		return;
	for (i = h->bitmap_next(b, -1); i >= 0; i = h->bitmap_next(b, i))
		cpuset_set(s, i);
}

static hwloc_obj_t ancestor(hwloc_obj_t o, hwloc_obj_type_t type)
{
	for (o = o->parent; o; o = o->parent)
		if (o->type == type)
			return o;
	return NULL;
}

static void hwloc_cpus(const struct hwloc_fns *h, hwloc_topology_t topo,
		       struct asam_topo *t)
{
	int depth = h->get_type_depth(topo, HWLOC_OBJ_PU);
	unsigned int i, n = h->get_nbobjs_by_depth(topo, depth);
	hwloc_obj_t root = h->get_obj_by_depth(topo, 0, 0);
	int last = h->bitmap_last(root->complete_cpuset);

	asam_topo_reset(t, ASAM_TOPO_CPUS);
	/* complete_cpuset holds the offline CPUs too */
	t->nr_cpus = last >= 0 && last < ASAM_TOPO_MAX_CPUS ? last + 1 : 0;
	for (i = 0; i < n; i++) {
		hwloc_obj_t pu = h->get_obj_by_depth(topo, depth, i);
		hwloc_obj_t core = ancestor(pu, HWLOC_OBJ_CORE);
		hwloc_obj_t pkg = ancestor(pu, HWLOC_OBJ_PACKAGE);
		struct asam_topo_cpu *c;

		if (pu->os_index >= ASAM_TOPO_MAX_CPUS)
			continue;
		c = &t->cpu[pu->os_index];
		c->online = true;
		c->core = core ? (int)core->os_index : (int)pu->os_index;
		c->package = pkg ? (int)pkg->os_index : 0;
		cpuset_set(&t->online, pu->os_index);
		t->nr_online++;
		if ((int)pu->os_index >= t->nr_cpus)
			t->nr_cpus = pu->os_index + 1;
	}
}

static void hwloc_nodes(const struct hwloc_fns *h, hwloc_topology_t topo,
			struct asam_topo *t)
{
	int depth = h->get_type_depth(topo, HWLOC_OBJ_NUMANODE);
	unsigned int i, n = h->get_nbobjs_by_depth(topo, depth);
	int cpu;

	asam_topo_reset(t, ASAM_TOPO_NODES);
	for (i = 0; i < n && t->nr_nodes < ASAM_TOPO_MAX_NODES; i++) {
		hwloc_obj_t o = h->get_obj_by_depth(topo, depth, i);
		struct asam_topo_node *nd = &t->node[t->nr_nodes++];

		nd->id = o->os_index;
		nd->mem_total = o->attr ? o->attr->numanode.local_memory : 0;
		to_cpuset(h, o->cpuset, &nd->cpus);
		for (cpu = 0; cpu < ASAM_TOPO_MAX_CPUS; cpu++)
			if (cpuset_isset(&nd->cpus, cpu))
				t->cpu[cpu].node = nd->id;
	}
}

static void hwloc_pci(const struct hwloc_fns *h, hwloc_topology_t topo,
		      struct asam_topo *t)
{
	int depth = h->get_type_depth(topo, HWLOC_OBJ_PCI_DEVICE);
	unsigned int i, n = h->get_nbobjs_by_depth(topo, depth);

	asam_topo_reset(t, ASAM_TOPO_PCI);
	for (i = 0; i < n && t->nr_gpus < ASAM_TOPO_MAX_GPUS; i++) {
		hwloc_obj_t o = h->get_obj_by_depth(topo, depth, i), up;
		struct hwloc_pcidev_attr_s *pa = &o->attr->pcidev;
		struct asam_topo_gpu *g = &t->gpu[t->nr_gpus];
		int dummy;

		if (pa->vendor_id != 0x10de ||
		    (pa->class_id != 0x0300 && pa->class_id != 0x0302))
			continue;
		snprintf(g->bus_id, sizeof(g->bus_id), "%04x:%02x:%02x.%x",
			 (unsigned int)pa->domain, pa->bus, pa->dev, pa->func);
		g->vendor = pa->vendor_id;
		g->device = pa->device_id;
		/* the first ancestor with CPUs is where the GPU hangs */
		for (up = o->parent; up && !up->cpuset; up = up->parent)
			;
		g->numa_node = -1;
		g->cpus = t->online;
		if (up) {
			to_cpuset(h, up->cpuset, &g->cpus);
			if (up->nodeset && h->bitmap_weight(up->nodeset) == 1)
				g->numa_node = h->bitmap_next(up->nodeset, -1);
		}
		/* attached above several nodes: let sysfs name one */
		if (g->numa_node < 0) {
			struct asam_cpuset ignore;

			asam_topo_pci_locality(t, g->bus_id, &dummy, &ignore);
			g->numa_node = dummy;
		}
		t->nr_gpus++;
	}
}

static int hwloc_discover(struct asam_topo *t, unsigned int want)
{
	struct hwloc_fns h;
	hwloc_topology_t topo;
	int ret;

	ret = hwloc_open(&h);
	if (ret)
		return ret;
	if (h.topology_init(&topo)) {
		ret = asam_err(-ENOMEM, "hwloc: hwloc_topology_init failed");
		goto out_close;
	}
	if (want & 1u << ASAM_TOPO_PCI)
		h.set_io_types_filter(topo, HWLOC_TYPE_FILTER_KEEP_IMPORTANT);
	if (h.topology_load(topo)) {
		ret = asam_err(-EIO, "hwloc: hwloc_topology_load failed");
		goto out_destroy;
	}
	if (want & 1u << ASAM_TOPO_CPUS)
		hwloc_cpus(&h, topo, t);
	if (want & 1u << ASAM_TOPO_NODES)
		hwloc_nodes(&h, topo, t);
	if (want & 1u << ASAM_TOPO_PCI)
		hwloc_pci(&h, topo, t);
	ret = want;

out_destroy:
	h.topology_destroy(topo);
out_close:
	dlclose(h.handle);
	return ret;
}

const struct asam_topo_provider asam_topo_hwloc = {
	.name = "hwloc",
	.discover = hwloc_discover,
};
