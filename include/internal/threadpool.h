/* SPDX-License-Identifier: MIT */
/*
 * A pool of worker threads, created once per context.  Each worker may be
 * pinned to a cpu set and tagged with a NUMA node chosen by the caller (the
 * topology provider fills the list); by default workers are unpinned and
 * there is one per online CPU.  Work is a parallel-for over [0, n) with
 * dynamic chunking: workers take chunks from a shared counter, so uneven
 * items (causal rows, sparse heads) balance themselves.
 *
 * The calling thread takes part as worker 0, so a pool of one thread has
 * no extra threads at all.  Scratch that a worker allocates and first
 * writes inside the callback lands on the worker's own node.
 */
#ifndef ASAM_INTERNAL_THREADPOOL_H
#define ASAM_INTERNAL_THREADPOOL_H

#include <sched.h>
#include <stdint.h>

struct asam_ctx;
struct asam_pool;

/* One worker's placement: @cpus NULL = unpinned; @node -1 = unknown. */
struct asam_pool_cpu {
	const cpu_set_t *cpus;
	int node;
};

/**
 * struct asam_pool_cfg - how to build a pool
 * @nthreads: workers including the caller; 0 = @nr_cpus if given, else
 *	the number of online CPUs
 * @cpus: per-worker placement, @nr_cpus entries (worker w uses entry
 *	w % @nr_cpus), or NULL for unpinned workers
 */
struct asam_pool_cfg {
	unsigned int nthreads;
	const struct asam_pool_cpu *cpus;
	unsigned int nr_cpus;
};

/* fn(arg, begin, end, worker): one chunk [begin, end) on worker 0..n-1 */
typedef void (*asam_pool_fn)(void *arg, int64_t begin, int64_t end,
			     int worker);

/* ERR_PTR(-ENOMEM / -EAGAIN) on failure; NULL cfg = defaults */
struct asam_pool *asam_pool_create(const struct asam_pool_cfg *cfg);
/* Joins every worker; a NULL or ERR_PTR pool is ignored. */
void asam_pool_destroy(struct asam_pool *pool);
int asam_pool_size(const struct asam_pool *pool);
int asam_pool_node(const struct asam_pool *pool, int worker);

/**
 * asam_pool_for() - run @fn over [0, @n) in chunks of @chunk items
 *
 * Returns when every chunk has run.  Calls from several threads at once
 * are serialised; a call from inside a callback runs inline on the caller
 * (no nested parallelism, no deadlock).
 */
void asam_pool_for(struct asam_pool *pool, int64_t n, int64_t chunk,
		   asam_pool_fn fn, void *arg);

/*
 * The context's pool, created on first use with ctx->num_threads workers
 * (0: one per online CPU).  NULL when it cannot be created: callers then
 * run single-threaded.  asam_pool_put() destroys it (context teardown).
 */
struct asam_pool *asam_pool_get(struct asam_ctx *ctx);
void asam_pool_put(struct asam_ctx *ctx);

#endif
