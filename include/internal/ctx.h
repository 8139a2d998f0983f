/* SPDX-License-Identifier: MIT */
#ifndef ASAM_INTERNAL_CTX_H
#define ASAM_INTERNAL_CTX_H

#include <internal/backend.h>

struct asam_pool;

#define ASAM_MAX_BACKENDS 8

struct asam_topo;

struct asam_ctx {
	struct asam_backend backends[ASAM_MAX_BACKENDS];
	int nr_backends;
	unsigned int num_threads;
	char *devices;		/* "cpu,cuda:0", or NULL for all */
	struct asam_topo *topo;	/* NULL if discovery failed */
	struct asam_pool *pool;	/* worker threads, threadpool.c (lazy) */
};

/* Is device "@type:@id" allowed by the context's device list? */
bool asam_ctx_device_allowed(const struct asam_ctx *ctx, const char *type,
			     int id);

#endif
