/* SPDX-License-Identifier: MIT */
/*
 * The machine as the scheduler and the host allocator need it: CPUs (with
 * their core, package and NUMA node), NUMA nodes (with their memory) and
 * the GPUs on the PCI bus (with the node and CPUs nearest each).
 *
 * Providers are an ops table tried in order, hwloc -> libnuma -> sysfs,
 * each a Kconfig option.  A provider fills the parts it knows (CPUs, nodes,
 * PCI); a later provider fills the parts still missing, so libnuma's nodes
 * can come with sysfs's cores.  Unknown numbers are -1.
 */
#ifndef ASAM_INTERNAL_TOPOLOGY_H
#define ASAM_INTERNAL_TOPOLOGY_H

#include <stdbool.h>
#include <stddef.h>
#include <errno.h>
#include <stdint.h>

#include <internal/err.h>
#include <internal/kconfig.h>

#define ASAM_TOPO_MAX_CPUS	4096
#define ASAM_TOPO_MAX_NODES	256
#define ASAM_TOPO_MAX_GPUS	64

struct asam_cpuset {
	uint64_t bits[ASAM_TOPO_MAX_CPUS / 64];
};

static inline void cpuset_zero(struct asam_cpuset *s)
{
	unsigned int i;

	for (i = 0; i < ASAM_TOPO_MAX_CPUS / 64; i++)
		s->bits[i] = 0;
}

static inline void cpuset_set(struct asam_cpuset *s, int cpu)
{
	if (cpu >= 0 && cpu < ASAM_TOPO_MAX_CPUS)
		s->bits[cpu / 64] |= 1ull << (cpu % 64);
}

static inline bool cpuset_isset(const struct asam_cpuset *s, int cpu)
{
	return cpu >= 0 && cpu < ASAM_TOPO_MAX_CPUS &&
	       (s->bits[cpu / 64] >> (cpu % 64) & 1);
}

int cpuset_weight(const struct asam_cpuset *s);
bool cpuset_equal(const struct asam_cpuset *a, const struct asam_cpuset *b);
/* "0-3,8-11" (the kernel's cpulist format); "" for an empty set */
int cpuset_format(const struct asam_cpuset *s, char *buf, size_t len);
/* parse a cpulist; -EINVAL on anything else */
int cpuset_parse(struct asam_cpuset *s, const char *list);

struct asam_topo_cpu {
	int id;
	bool online;
	int core;		/* core id within the package, -1 unknown */
	int package;		/* -1 unknown */
	int node;		/* -1 unknown */
	int smt_index;		/* 0 for the first thread of its core */
};

struct asam_topo_node {
	int id;
	uint64_t mem_total;	/* bytes, 0 unknown */
	uint64_t mem_free;
	struct asam_cpuset cpus;
};

struct asam_topo_gpu {
	char bus_id[32];	/* "0000:18:00.0", lower case */
	unsigned int vendor, device;
	int numa_node;		/* -1 unknown (as on some virtual machines) */
	struct asam_cpuset cpus;	/* nearest CPUs; all online if unknown */
};

enum asam_topo_part {
	ASAM_TOPO_CPUS,		/* CPUs, cores, packages, SMT */
	ASAM_TOPO_NODES,	/* NUMA nodes, their memory, CPU -> node */
	ASAM_TOPO_PCI,		/* GPUs and their locality */
	ASAM_TOPO_NR_PARTS,
};

struct asam_topo {
	int nr_cpus;			/* entries of cpu[] (possible CPUs) */
	int nr_online;
	int nr_cores, nr_packages;
	int nr_nodes;
	int nr_gpus;
	struct asam_topo_cpu cpu[ASAM_TOPO_MAX_CPUS];
	struct asam_topo_node node[ASAM_TOPO_MAX_NODES];
	struct asam_topo_gpu gpu[ASAM_TOPO_MAX_GPUS];
	struct asam_cpuset online;
	const char *provider[ASAM_TOPO_NR_PARTS];	/* who answered */
	char root[256];			/* sysfs/procfs root, "" = "/" */
	int refs;			/* asam_topo_get() users */
	char key[512];			/* the environment it was found with */
};

/*
 * struct asam_topo_provider - one source of topology
 * @discover: fill the parts in @want (a mask of 1 << enum asam_topo_part)
 *	that this provider knows and return the mask it filled, or -errno
 *	(-ENOENT: library missing) to be skipped.
 */
struct asam_topo_provider {
	const char *name;
	int (*discover)(struct asam_topo *t, unsigned int want);
};

extern const struct asam_topo_provider asam_topo_hwloc;
extern const struct asam_topo_provider asam_topo_libnuma;
extern const struct asam_topo_provider asam_topo_sysfs;

/*
 * struct asam_topo_opts - for tests and tools
 * @root: a directory holding a fake sys/ (and proc/) tree, or NULL for
 *	ASAM_SYSFS_ROOT or the real machine.  With a root, only the sysfs
 *	provider runs: the libraries read the real machine.
 * @provider: "hwloc", "libnuma" or "sysfs" to try only that one and sysfs
 *	for what it lacks, or NULL for ASAM_TOPO_PROVIDER or all in order
 */
struct asam_topo_opts {
	const char *root;
	const char *provider;
	bool quiet;		/* no summary line */
};

/*
 * asam_topo_discover() - ask the providers; never fails for want of one
 *
 * Return: a topology to free with asam_topo_free(), or ERR_PTR(-ENOMEM /
 * -EINVAL) with an asam_err() message.  Logs one info line saying what
 * was found and which provider answered.
 */
struct asam_topo *asam_topo_discover(const struct asam_topo_opts *opts);
void asam_topo_free(struct asam_topo *t);

/*
 * asam_topo_get() - the process's shared topology, found once
 *
 * Contexts share one answer (hwloc takes milliseconds), found again only
 * when ASAM_SYSFS_ROOT or ASAM_TOPO_PROVIDER changed since.  Drop it with
 * asam_topo_put().  Return: as asam_topo_discover().
 */
struct asam_topo *asam_topo_get(void);
void asam_topo_put(struct asam_topo *t);

/* the summary line, as logged */
int asam_topo_summary(const struct asam_topo *t, char *buf, size_t len);

/* the GPU with PCI bus id @bus_id (any case, 4- or 8-digit domain) */
const struct asam_topo_gpu *asam_topo_gpu_find(const struct asam_topo *t,
					       const char *bus_id);

/*
 * Locality of a PCI device from sysfs alone, for a GPU the providers did
 * not list: node -1 and every online CPU when sysfs does not say.
 */
int asam_topo_pci_locality(const struct asam_topo *t, const char *bus_id,
			   int *node, struct asam_cpuset *cpus);

/* "0000:18:00.0" from any spelling the driver or nvidia-smi uses */
int asam_pci_bus_id_normalize(const char *in, char *out, size_t len);

/* Internal to the providers: reset a part before filling it. */
void asam_topo_reset(struct asam_topo *t, enum asam_topo_part part);
/* Recount cores, packages and SMT indices from cpu[]. */
void asam_topo_count(struct asam_topo *t);
/* open "<root><path>" (path starts with '/') */
int asam_topo_path(const struct asam_topo *t, char *buf, size_t len,
		   const char *fmt, ...) __attribute__((format(printf, 4, 5)));


/*
 * libnuma, opened at run time (libnuma.so.1; ASAM_LIBNUMA overrides).
 * Shared by the libnuma provider and the host allocator.
 */
struct bitmask;
struct asam_libnuma {
	void *handle;
	int (*numa_available)(void);
	int (*numa_max_node)(void);
	int (*numa_num_configured_cpus)(void);
	int (*numa_node_of_cpu)(int cpu);
	long long (*numa_node_size64)(int node, long long *freep);
	void *(*numa_alloc_onnode)(size_t size, int node);
	void (*numa_free)(void *p, size_t size);
};

#if IS_ENABLED(CONFIG_TOPO_LIBNUMA)
/* the table, or ERR_PTR(-ENOENT) with a message; loaded once */
const struct asam_libnuma *asam_libnuma_get(void);
#else
static inline const struct asam_libnuma *asam_libnuma_get(void)
{
	return ERR_PTR(asam_err(-EOPNOTSUPP,
				"libnuma support is not built (CONFIG_TOPO_LIBNUMA)"));
}
#endif

/*
 * The GPUs the CUDA driver sees, without <cuda.h>, for tools: fills up to
 * @max entries and returns how many, or -errno with a message (-ENODEV,
 * -ENOENT: no driver; -EOPNOTSUPP: not built).
 */
struct asam_gpu_info {
	int ordinal;
	char name[256];
	int cc_major, cc_minor;
	int sm_count;
	size_t total_mem;
	int l2_bytes;
	int smem_per_block_optin;
	char pci_bus_id[32];
	int numa_node;
	struct asam_cpuset cpus;
	int driver_version;
};

#if IS_ENABLED(CONFIG_ARCH_CUDA)
int asam_cuda_enumerate(const struct asam_topo *topo, struct asam_gpu_info *out,
			int max);
#else
static inline int asam_cuda_enumerate(const struct asam_topo *topo,
				      struct asam_gpu_info *out, int max)
{
	return asam_err(-EOPNOTSUPP,
			"the CUDA backend is not built (CONFIG_ARCH_CUDA)");
}
#endif

#endif
