/* SPDX-License-Identifier: MIT */
/*
 * Host buffers for a device: placed on a NUMA node (libnuma's
 * numa_alloc_onnode) and pinned for the GPU (cuMemHostRegister), each step
 * degrading cleanly, with one warning per process, where libnuma, the
 * driver or the node is missing.
 */
#ifndef ASAM_INTERNAL_HOSTMEM_H
#define ASAM_INTERNAL_HOSTMEM_H

#include <errno.h>
#include <stdbool.h>
#include <stddef.h>

#include <internal/err.h>
#include <internal/kconfig.h>

struct asam_hostbuf {
	void *ptr;
	size_t size;		/* as asked */
	size_t mapped;		/* rounded up to pages */
	int node;		/* the node asked for, -1 any */
	bool on_node;		/* numa_alloc_onnode placed it */
	bool pinned;		/* registered with the driver */
	int ordinal;		/* the device it is pinned for, -1 none */
	void *pin_ctx;		/* the retained primary context */
};

/*
 * asam_hostmem_alloc() - a host buffer near @node, pinned for @ordinal
 * @node: NUMA node, or -1 for anywhere
 * @ordinal: CUDA device to pin for, or -1 to leave it pageable
 *
 * Return: 0, or -ENOMEM / -EINVAL with a message.  Missing libnuma or
 * driver is not an error: b->on_node and b->pinned say what was done.
 */
int asam_hostmem_alloc(struct asam_hostbuf *b, size_t size, int node,
		       int ordinal);
void asam_hostmem_free(struct asam_hostbuf *b);

#if IS_ENABLED(CONFIG_ARCH_CUDA)
/* arch/cuda/memory.c: register/unregister in @ordinal's primary context */
int asam_cuda_host_register(int ordinal, void *p, size_t bytes, void **ctx);
void asam_cuda_host_unregister(int ordinal, void *p, void *ctx);
#else
static inline int asam_cuda_host_register(int ordinal, void *p, size_t bytes,
					  void **ctx)
{
	return asam_err(-EOPNOTSUPP,
			"the CUDA backend is not built (CONFIG_ARCH_CUDA)");
}

static inline void asam_cuda_host_unregister(int ordinal, void *p, void *ctx)
{
}
#endif

#endif
