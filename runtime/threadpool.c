// SPDX-License-Identifier: MIT
/*
 * The worker pool (include/internal/threadpool.h).  A job is published
 * under the pool lock with a new generation number; workers wake, claim
 * chunks from an atomic counter, and the last one to finish signals the
 * caller.  The caller claims chunks too, so a job never waits on a sleeping
 * thread to make progress.
 */
#include <errno.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdlib.h>
#include <unistd.h>

#include <internal/ctx.h>
#include <internal/err.h>
#include <internal/log.h>
#include <internal/threadpool.h>
#include <internal/topology.h>

struct pool_worker {
	struct asam_pool *pool;
	pthread_t tid;
	int id;
	int node;
	cpu_set_t cpus;
	bool pinned;
};

struct asam_pool {
	int n;				/* workers including the caller */
	struct pool_worker *w;		/* [n]; w[0] is the caller */
	int started;			/* threads created (w[1..started]) */

	pthread_mutex_t lock;		/* job publication */
	pthread_cond_t wake, done;
	pthread_mutex_t call_lock;	/* one asam_pool_for() at a time */
	uint64_t gen;
	bool quit;
	int busy;			/* workers still in the current job */

	/* the current job */
	asam_pool_fn fn;
	void *arg;
	int64_t n_items, chunk;
	atomic_int_fast64_t next;
};

static _Thread_local struct asam_pool *in_pool;

static void run_chunks(struct asam_pool *pool, int worker)
{
	int64_t b;

	while ((b = atomic_fetch_add(&pool->next, pool->chunk)) <
	       pool->n_items) {
		int64_t e = b + pool->chunk;

		pool->fn(pool->arg, b, e < pool->n_items ? e : pool->n_items,
			 worker);
	}
}

static void *worker_main(void *data)
{
	struct pool_worker *w = data;
	struct asam_pool *pool = w->pool;
	uint64_t seen = 0;

	if (w->pinned &&
	    pthread_setaffinity_np(pthread_self(), sizeof(w->cpus), &w->cpus))
		pr_warn_once("pool: cannot pin worker %d", w->id);
	in_pool = pool;
	pthread_mutex_lock(&pool->lock);
	for (;;) {
		while (!pool->quit && pool->gen == seen)
			pthread_cond_wait(&pool->wake, &pool->lock);
		if (pool->quit)
			break;
		seen = pool->gen;
		pthread_mutex_unlock(&pool->lock);
		run_chunks(pool, w->id);
		pthread_mutex_lock(&pool->lock);
		if (--pool->busy == 0)
			pthread_cond_signal(&pool->done);
	}
	pthread_mutex_unlock(&pool->lock);
	return NULL;
}

static unsigned int online_cpus(void)
{
	long n = sysconf(_SC_NPROCESSORS_ONLN);

	return n > 0 ? (unsigned int)n : 1;
}

struct asam_pool *asam_pool_create(const struct asam_pool_cfg *cfg)
{
	struct asam_pool *pool;
	unsigned int n = cfg ? cfg->nthreads : 0;
	int i, ret;

	if (!n)
		n = cfg && cfg->cpus && cfg->nr_cpus ? cfg->nr_cpus
						     : online_cpus();
	if (n > 1024)
		n = 1024;
	pool = calloc(1, sizeof(*pool));
	if (!pool)
		return ERR_PTR(asam_err(-ENOMEM, "pool: out of memory"));
	pool->w = calloc(n, sizeof(*pool->w));
	if (!pool->w) {
		free(pool);
		return ERR_PTR(asam_err(-ENOMEM, "pool: out of memory"));
	}
	pool->n = n;
	pthread_mutex_init(&pool->lock, NULL);
	pthread_mutex_init(&pool->call_lock, NULL);
	pthread_cond_init(&pool->wake, NULL);
	pthread_cond_init(&pool->done, NULL);
	for (i = 0; i < (int)n; i++) {
		struct pool_worker *w = &pool->w[i];

		w->pool = pool;
		w->id = i;
		w->node = -1;
		if (cfg && cfg->cpus && cfg->nr_cpus) {
			const struct asam_pool_cpu *c =
				&cfg->cpus[i % cfg->nr_cpus];

			w->node = c->node;
			if (c->cpus) {
				w->cpus = *c->cpus;
				w->pinned = true;
			}
		}
	}
	for (i = 1; i < (int)n; i++) {
		ret = pthread_create(&pool->w[i].tid, NULL, worker_main,
				     &pool->w[i]);
		if (ret) {
			asam_pool_destroy(pool);
			return ERR_PTR(asam_err(-ret,
				"pool: cannot start worker %d of %u", i, n));
		}
		pool->started = i;
	}
	return pool;
}

void asam_pool_destroy(struct asam_pool *pool)
{
	int i;

	if (IS_ERR_OR_NULL(pool))
		return;
	pthread_mutex_lock(&pool->lock);
	pool->quit = true;
	pthread_cond_broadcast(&pool->wake);
	pthread_mutex_unlock(&pool->lock);
	for (i = 1; i <= pool->started; i++)
		pthread_join(pool->w[i].tid, NULL);
	pthread_cond_destroy(&pool->wake);
	pthread_cond_destroy(&pool->done);
	pthread_mutex_destroy(&pool->lock);
	pthread_mutex_destroy(&pool->call_lock);
	free(pool->w);
	free(pool);
}

int asam_pool_size(const struct asam_pool *pool)
{
	return IS_ERR_OR_NULL(pool) ? 1 : pool->n;
}

int asam_pool_node(const struct asam_pool *pool, int worker)
{
	if (IS_ERR_OR_NULL(pool) || worker < 0 || worker >= pool->n)
		return -1;
	return pool->w[worker].node;
}

void asam_pool_for(struct asam_pool *pool, int64_t n, int64_t chunk,
		   asam_pool_fn fn, void *arg)
{
	if (n <= 0)
		return;
	if (chunk < 1)
		chunk = 1;
	/* no pool, one thread, nested call or a single chunk: run inline */
	if (IS_ERR_OR_NULL(pool) || pool->started == 0 || in_pool == pool ||
	    n <= chunk) {
		int64_t b;

		for (b = 0; b < n; b += chunk)
			fn(arg, b, b + chunk < n ? b + chunk : n, 0);
		return;
	}
	pthread_mutex_lock(&pool->call_lock);
	pthread_mutex_lock(&pool->lock);
	pool->fn = fn;
	pool->arg = arg;
	pool->n_items = n;
	pool->chunk = chunk;
	atomic_store(&pool->next, 0);
	pool->busy = pool->started;
	pool->gen++;
	pthread_cond_broadcast(&pool->wake);
	pthread_mutex_unlock(&pool->lock);

	in_pool = pool;
	run_chunks(pool, 0);
	in_pool = NULL;

	pthread_mutex_lock(&pool->lock);
	while (pool->busy)
		pthread_cond_wait(&pool->done, &pool->lock);
	pthread_mutex_unlock(&pool->lock);
	pthread_mutex_unlock(&pool->call_lock);
}

/*
 * Placement from the topology: on a machine with several NUMA nodes each
 * worker is pinned to one node's online CPUs, so that the buffers it
 * first-touches live on the node that computes with them.  The entries
 * take the nodes in turn, one online CPU of each per round, so that any
 * prefix (a pool smaller than the machine) is spread evenly and the whole
 * list is in proportion to the nodes' CPUs.  One node: no pinning.
 * Returns the number of entries filled in @pc (0: leave unpinned).
 */
static unsigned int topo_placement(const struct asam_topo *t,
				   cpu_set_t *sets, struct asam_pool_cpu *pc,
				   unsigned int max)
{
	int left[ASAM_TOPO_MAX_NODES], nd, c, nn;
	unsigned int n = 0;
	bool more = true;

	if (!t || t->nr_nodes < 2)
		return 0;
	nn = t->nr_nodes < ASAM_TOPO_MAX_NODES ? t->nr_nodes
					       : ASAM_TOPO_MAX_NODES;
	for (nd = 0; nd < nn; nd++) {
		CPU_ZERO(&sets[nd]);
		for (c = 0; c < t->nr_cpus && c < CPU_SETSIZE; c++)
			if (cpuset_isset(&t->node[nd].cpus, c) &&
			    cpuset_isset(&t->online, c))
				CPU_SET(c, &sets[nd]);
		left[nd] = CPU_COUNT(&sets[nd]);
	}
	while (more && n < max) {
		more = false;
		for (nd = 0; nd < nn && n < max; nd++) {
			if (!left[nd])
				continue;
			left[nd]--;
			more = true;
			pc[n].cpus = &sets[nd];
			pc[n++].node = t->node[nd].id;
		}
	}
	return n;
}

struct asam_pool *asam_pool_get(struct asam_ctx *ctx)
{
	struct asam_pool *pool, *expect = NULL;
	struct asam_pool_cfg cfg = { .nthreads = ctx->num_threads };
	struct asam_pool_cpu *pc;
	cpu_set_t *sets;

	pool = atomic_load((_Atomic(struct asam_pool *) *)&ctx->pool);
	if (pool)
		return pool;
	/* asam_pool_create() copies the sets; they need not outlive it */
	pc = calloc(ASAM_TOPO_MAX_CPUS, sizeof(*pc));
	sets = calloc(ASAM_TOPO_MAX_NODES, sizeof(*sets));
	if (pc && sets) {
		cfg.cpus = pc;
		cfg.nr_cpus = topo_placement(ctx->topo, sets, pc,
					     ASAM_TOPO_MAX_CPUS);
		if (!cfg.nr_cpus)
			cfg.cpus = NULL;
	}
	pool = asam_pool_create(&cfg);
	free(pc);
	free(sets);
	if (IS_ERR(pool))
		return NULL;
	if (!atomic_compare_exchange_strong(
		    (_Atomic(struct asam_pool *) *)&ctx->pool, &expect, pool)) {
		asam_pool_destroy(pool);
		return expect;
	}
	return pool;
}

void asam_pool_put(struct asam_ctx *ctx)
{
	asam_pool_destroy(ctx->pool);
	ctx->pool = NULL;
}
