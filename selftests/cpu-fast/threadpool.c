// SPDX-License-Identifier: MIT
/*
 * The worker pool: every index of a parallel-for runs exactly once, over
 * many sizes and chunkings; nested calls run inline; pinning to a caller's
 * cpu set holds; repeated create/destroy leaks no thread (valgrind/ASan
 * builds check the memory side).
 */
#include <pthread.h>
#include <stdio.h>
#include <stdatomic.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "../lib/kselftest.h"
#include <internal/ctx.h>
#include <internal/err.h>
#include <internal/threadpool.h>
#include <internal/topology.h>

struct cnt {
	atomic_int *hits;
	atomic_int workers_seen;
	struct asam_pool *pool;
	int nested_ok;
};

static void count(void *arg, int64_t b, int64_t e, int worker)
{
	struct cnt *c = arg;

	for (; b < e; b++)
		atomic_fetch_add(&c->hits[b], 1);
	atomic_fetch_or(&c->workers_seen, 1 << worker);
}

static void inner(void *arg, int64_t b, int64_t e, int worker)
{
	atomic_fetch_add((atomic_int *)arg, (int)(e - b));
}

static void nested(void *arg, int64_t b, int64_t e, int worker)
{
	struct cnt *c = arg;
	atomic_int n = 0;

	asam_pool_for(c->pool, 10, 3, inner, &n);
	if (atomic_load(&n) == 10)
		__atomic_fetch_add(&c->nested_ok, 1, __ATOMIC_SEQ_CST);
}

static void pinned(void *arg, int64_t b, int64_t e, int worker)
{
	atomic_int *bad = arg;
	int cpu = sched_getcpu();

	if (worker && cpu != 0)
		atomic_fetch_add(bad, 1);
}

/* threads of this process, from /proc/self/status */
static int nr_threads(void)
{
	FILE *f = fopen("/proc/self/status", "r");
	char line[256];
	int n = -1;

	while (f && fgets(line, sizeof(line), f))
		if (sscanf(line, "Threads: %d", &n) == 1)
			break;
	if (f)
		fclose(f);
	return n;
}

struct pin_check {
	struct asam_pool *pool;
	atomic_int bad;
};

/* each worker but the caller (worker 0) is pinned to CPU == its node */
static void on_node_cpu(void *arg, int64_t begin, int64_t end, int worker)
{
	struct pin_check *pc = arg;
	struct asam_pool *pool = pc->pool;
	atomic_int *bad = &pc->bad;
	cpu_set_t set;

	if (!worker)
		return;
	if (pthread_getaffinity_np(pthread_self(), sizeof(set), &set) ||
	    CPU_COUNT(&set) != 1 ||
	    !CPU_ISSET(asam_pool_node(pool, worker), &set))
		atomic_fetch_add(bad, 1);
}

/*
 * A context whose topology has two nodes (CPU 0 on node 0, CPU 1 on node
 * 1): its pool takes the nodes in turn and pins each worker to its node.
 */
static void test_topology_placement(void)
{
	struct asam_topo *t = calloc(1, sizeof(*t));
	struct asam_ctx ctx = { .num_threads = 4, .topo = t };
	struct pin_check pc = { 0 };
	struct asam_pool *pool;
	int nd;

	t->nr_cpus = 2;
	t->nr_nodes = 2;
	for (nd = 0; nd < 2; nd++) {
		t->node[nd].id = nd;
		cpuset_set(&t->node[nd].cpus, nd);
		cpuset_set(&t->online, nd);
	}
	pool = asam_pool_get(&ctx);
	ksft_test_result(pool && asam_pool_size(pool) == 4 &&
			 asam_pool_node(pool, 0) == 0 &&
			 asam_pool_node(pool, 1) == 1 &&
			 asam_pool_node(pool, 2) == 0 &&
			 asam_pool_node(pool, 3) == 1,
			 "two NUMA nodes: workers take the nodes in turn\n");
	if (sysconf(_SC_NPROCESSORS_ONLN) < 2) {
		ksft_test_result_skip("one CPU: cannot pin to CPU 1\n");
	} else {
		pc.pool = pool;
		asam_pool_for(pool, 400, 1, on_node_cpu, &pc);
		ksft_test_result(!atomic_load(&pc.bad),
				 "each worker runs on its node's CPUs only\n");
	}
	asam_pool_put(&ctx);
	ksft_test_result(!ctx.pool, "put releases the context's pool\n");
	free(t);
}

int main(void)
{
	static const int64_t ns[] = { 0, 1, 7, 64, 1000, 100003 };
	static const int64_t chunks[] = { 1, 3, 64, 5000 };
	struct asam_pool_cfg cfg = { .nthreads = 4 };
	struct asam_pool *pool;
	int a, b, r, before;

	ksft_print_header();
	pool = asam_pool_create(&cfg);
	ksft_test_result(!IS_ERR(pool) && asam_pool_size(pool) == 4,
			 "create 4 workers\n");
	if (IS_ERR(pool))
		ksft_finished();
	for (a = 0; a < 6; a++)
		for (b = 0; b < 4; b++) {
			struct cnt c = { 0 };
			int64_t i, bad = 0;

			c.hits = calloc(ns[a] + 1, sizeof(*c.hits));
			asam_pool_for(pool, ns[a], chunks[b], count, &c);
			for (i = 0; i < ns[a]; i++)
				bad += atomic_load(&c.hits[i]) != 1;
			ksft_test_result(!bad, "n=%lld chunk=%lld each once\n",
					 (long long)ns[a], (long long)chunks[b]);
			free(c.hits);
		}
	{
		struct cnt c = { .pool = pool };

		asam_pool_for(pool, 40, 1, nested, &c);
		ksft_test_result(c.nested_ok == 40, "nested calls run inline\n");
	}
	asam_pool_destroy(pool);

	/* pinned: every worker on CPU 0 */
	{
		cpu_set_t set;
		struct asam_pool_cpu pc = { .cpus = &set, .node = 0 };
		struct asam_pool_cfg pcfg = { .nthreads = 3, .cpus = &pc,
					      .nr_cpus = 1 };
		atomic_int badpin = 0;

		CPU_ZERO(&set);
		CPU_SET(0, &set);
		pool = asam_pool_create(&pcfg);
		asam_pool_for(pool, 300, 1, pinned, &badpin);
		ksft_test_result(!IS_ERR(pool) && !badpin &&
				 asam_pool_node(pool, 2) == 0,
				 "workers pinned to the given cpu set\n");
		asam_pool_destroy(pool);
	}
	/* churn: create/destroy must not leak threads */
	before = nr_threads();
	for (r = 0; r < 50; r++) {
		struct cnt c = { 0 };

		c.hits = calloc(100, sizeof(*c.hits));
		pool = asam_pool_create(&cfg);
		asam_pool_for(pool, 100, 7, count, &c);
		asam_pool_destroy(pool);
		free(c.hits);
	}
	ksft_test_result(before > 0 && nr_threads() == before,
			 "50 create/run/destroy cycles leave %d threads\n",
			 before);
	test_topology_placement();
	ksft_finished();
}
