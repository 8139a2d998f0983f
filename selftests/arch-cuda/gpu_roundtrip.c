// SPDX-License-Identifier: MIT
/*
 * On a GPU: every device of a context gets two NUMA-local pinned host
 * buffers; data goes host -> device, part of it is overwritten on the
 * device, and comes back.  The result must be the input with exactly that
 * part changed, which no host-side shortcut could produce.  The driver
 * itself confirms the pinning (cuPointerGetAttribute), the kernel confirms
 * the placement (move_pages).  Without a GPU or a driver: SKIP.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/syscall.h>
#include <time.h>
#include <unistd.h>

#include <asam/asam.h>
#include <internal/ctx.h>
#include <internal/cuda.h>
#include <internal/err.h>
#include <internal/hostmem.h>

#include "../lib/kselftest.h"

#define SIZE	((size_t)64 << 20)
#define HOLE	((size_t)1 << 20)	/* overwritten on the device */
#define FILL	0xa5

static long pages_on(const struct asam_hostbuf *b, int node)
{
	long pg = sysconf(_SC_PAGESIZE), n = b->mapped / pg, i, on = 0;
	void **pages = calloc(n, sizeof(*pages));
	int *st = calloc(n, sizeof(*st));

	for (i = 0; pages && st && i < n; i++)
		pages[i] = (char *)b->ptr + i * pg;
	if (!pages || !st || syscall(SYS_move_pages, 0, n, pages, NULL, st, 0))
		on = -1;
	for (i = 0; on >= 0 && i < n; i++)
		on += st[i] == node;
	free(pages);
	free(st);
	return on;
}

static bool host_registered(const struct asam_cuda_device *d, void *p)
{
	unsigned int type = 0;

	return d->drv->cuPointerGetAttribute(&type,
					     CU_POINTER_ATTRIBUTE_MEMORY_TYPE,
					     (CUdeviceptr)p) == CUDA_SUCCESS &&
	       type == CU_MEMORYTYPE_HOST;
}

static double now(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return ts.tv_sec + ts.tv_nsec * 1e-9;
}

static void roundtrip(struct asam_cuda_device *d)
{
	struct asam_hostbuf a, b;
	CUevent e[3] = { 0 };
	CUdeviceptr dp = 0;
	CUstream s = NULL;
	float ms_h2d = 0, ms_d2h = 0;
	unsigned char *pa, *pb, *pageable;
	size_t i, bad = 0;
	double t0, t_page;
	long pg = sysconf(_SC_PAGESIZE);
	int ret;

	ksft_print_msg("cuda:%d: %s, sm_%d%d, %d SMs, %zu MiB, bus %s, NUMA node %d\n",
		       d->ordinal, d->name, d->cc_major, d->cc_minor,
		       d->sm_count, d->total_mem >> 20, d->pci_bus_id,
		       d->numa_node);
	ret = asam_hostmem_alloc(&a, SIZE, d->numa_node, d->ordinal) ?:
	      asam_hostmem_alloc(&b, SIZE, d->numa_node, d->ordinal);
	if (ret) {
		ksft_test_result_fail("cuda:%d: host buffers: %s\n", d->ordinal,
				      asam_last_error());
		return;
	}
	ksft_test_result(a.pinned && b.pinned && host_registered(d, a.ptr) &&
			 host_registered(d, (char *)b.ptr + SIZE - 1),
			 "cuda:%d: host buffers pinned (the driver says host memory)\n",
			 d->ordinal);
	if (d->numa_node >= 0 && a.on_node)
		ksft_test_result(pages_on(&a, d->numa_node) == (long)(a.mapped / pg),
				 "cuda:%d: every page on node %d (move_pages)\n",
				 d->ordinal, d->numa_node);
	else
		ksft_test_result_skip("cuda:%d: placement: node %d, on_node %d\n",
				      d->ordinal, d->numa_node, a.on_node);

	pa = a.ptr;
	pb = b.ptr;
	srand(1234 + d->ordinal);
	for (i = 0; i < SIZE; i++)
		pa[i] = rand() >> 7;
	memset(pb, 0, SIZE);
	ret = asam_cuda_malloc(d, SIZE, &dp) ?:
	      asam_cuda_stream_create(d, &s) ?:
	      asam_cuda_event_create(d, &e[0], true) ?:
	      asam_cuda_event_create(d, &e[1], true) ?:
	      asam_cuda_event_create(d, &e[2], true) ?:
	      asam_cuda_event_record(d, e[0], s) ?:
	      asam_cuda_memcpy_htod(d, dp, pa, SIZE, s, true) ?:
	      asam_cuda_event_record(d, e[1], s) ?:
	      asam_cuda_memset8(d, dp + HOLE, FILL, HOLE, s) ?:
	      asam_cuda_memcpy_dtoh(d, pb, dp, SIZE, s, true) ?:
	      asam_cuda_event_record(d, e[2], s) ?:
	      asam_cuda_stream_sync(d, s) ?:
	      asam_cuda_event_elapsed(d, e[0], e[1], &ms_h2d) ?:
	      asam_cuda_event_elapsed(d, e[1], e[2], &ms_d2h);
	for (i = 0; !ret && i < SIZE; i++)
		bad += pb[i] != (i >= HOLE && i < 2 * HOLE ? FILL : pa[i]);
	ksft_test_result(!ret && !bad,
			 "cuda:%d: 64 MiB round trip through the GPU, 1 MiB rewritten there: %zu bytes differ%s%s\n",
			 d->ordinal, bad, ret ? "; " : "",
			 ret ? asam_last_error() : "");
	ksft_print_msg("cuda:%d: pinned H2D %.1f GB/s, D2H+memset %.1f GB/s\n",
		       d->ordinal, SIZE / (ms_h2d * 1e6), SIZE / (ms_d2h * 1e6));

	/* the same copy from pageable memory, for the record */
	pageable = malloc(SIZE);
	if (pageable && !ret) {
		memcpy(pageable, pa, SIZE);
		t0 = now();
		ret = asam_cuda_memcpy_htod(d, dp, pageable, SIZE, NULL, false);
		t_page = now() - t0;
		if (!ret)
			ksft_print_msg("cuda:%d: pageable H2D %.1f GB/s (sync)\n",
				       d->ordinal, SIZE / (t_page * 1e9));
	}
	free(pageable);

	ret = asam_cuda_stream_capturing(d, s, &(bool){ true });
	ksft_test_result(!ret, "cuda:%d: stream capture query\n", d->ordinal);
	for (i = 0; i < 3; i++)
		if (e[i])
			asam_cuda_event_destroy(d, e[i]);
	if (s)
		asam_cuda_stream_destroy(d, s);
	asam_cuda_free(d, dp);
	asam_hostmem_free(&a);
	asam_hostmem_free(&b);
}

int main(void)
{
	const struct asam_cuda_driver *drv;
	struct asam_backend *be = NULL;
	struct asam_cuda_backend *cb;
	struct asam_ctx *ctx;
	int i;

	ksft_print_header();
	drv = asam_cuda_driver_get();
	if (IS_ERR(drv))
		ksft_exit_skip("no GPU: %s\n", asam_last_error());
	if (asam_ctx_create(NULL, &ctx))
		ksft_exit_skip("context: %s\n", asam_last_error());
	for (i = 0; i < ctx->nr_backends; i++)
		if (ctx->backends[i].ops == &asam_backend_cuda_ops)
			be = &ctx->backends[i];
	if (!be) {
		asam_ctx_destroy(ctx);
		ksft_exit_skip("the context has no cuda backend\n");
	}
	cb = be->priv;
	ksft_print_msg("driver %s, CUDA %d.%d, %d device(s)\n", drv->path,
		       drv->version / 1000, drv->version % 1000 / 10, cb->ndev);
	ksft_set_plan(4 * cb->ndev);
	for (i = 0; i < cb->ndev; i++)
		roundtrip(&cb->dev[i]);
	asam_ctx_destroy(ctx);
	ksft_finished();
}
