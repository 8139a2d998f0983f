// SPDX-License-Identifier: MIT
/*
 * NUMA-local pinned host buffers.  The order of the steps matters:
 * numa_alloc_onnode only sets the policy of fresh pages, and
 * cuMemHostRegister faults them in, so pinning after placing puts every
 * page on the node.
 */
#include <string.h>
#include <sys/mman.h>
#include <unistd.h>

#include <internal/err.h>
#include <internal/hostmem.h>
#include <internal/log.h>
#include <internal/topology.h>

static size_t page_round(size_t n)
{
	long pg = sysconf(_SC_PAGESIZE);
	size_t p = pg > 0 ? (size_t)pg : 4096;

	return (n + p - 1) / p * p;
}

int asam_hostmem_alloc(struct asam_hostbuf *b, size_t size, int node,
		       int ordinal)
{
	const struct asam_libnuma *numa = NULL;
	int ret;

	if (!b)
		return asam_err(-EINVAL, "hostmem: buffer is NULL");
	memset(b, 0, sizeof(*b));
	b->node = node < 0 ? -1 : node;
	b->ordinal = -1;
	if (!size || size > (size_t)1 << 48)
		return asam_err(-EINVAL, "hostmem: size %zu is out of range",
				size);
	b->size = size;
	b->mapped = page_round(size);

	if (b->node >= 0) {
		numa = asam_libnuma_get();
		if (IS_ERR(numa)) {
			pr_warn_once("hostmem: %s; host buffers are not placed on their GPU's NUMA node",
				     asam_last_error());
			numa = NULL;
		}
	}
	if (numa) {
		b->ptr = numa->numa_alloc_onnode(b->mapped, b->node);
		b->on_node = b->ptr != NULL;
		if (!b->ptr)
			pr_warn_once("hostmem: numa_alloc_onnode(%zu, %d) failed; using any node",
				     b->mapped, b->node);
	}
	if (!b->ptr) {
		b->ptr = mmap(NULL, b->mapped, PROT_READ | PROT_WRITE,
			      MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
		if (b->ptr == MAP_FAILED) {
			b->ptr = NULL;
			return asam_err(-ENOMEM, "hostmem: cannot map %zu bytes",
					b->mapped);
		}
	}

	if (ordinal >= 0) {
		ret = asam_cuda_host_register(ordinal, b->ptr, b->mapped,
					      &b->pin_ctx);
		if (ret) {
			pr_warn_once("hostmem: cannot pin host buffers (%s); copies will be staged by the driver",
				     asam_last_error());
		} else {
			b->pinned = true;
			b->ordinal = ordinal;
		}
	}
	asam_err_clear();
	return 0;
}

void asam_hostmem_free(struct asam_hostbuf *b)
{
	if (!b || !b->ptr)
		return;
	if (b->pinned)
		asam_cuda_host_unregister(b->ordinal, b->ptr, b->pin_ctx);
	if (b->on_node) {
		const struct asam_libnuma *numa = asam_libnuma_get();

		if (!IS_ERR(numa))
			numa->numa_free(b->ptr, b->mapped);
	} else {
		munmap(b->ptr, b->mapped);
	}
	memset(b, 0, sizeof(*b));
	b->ordinal = b->node = -1;
}
