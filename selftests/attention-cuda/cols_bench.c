// SPDX-License-Identifier: MIT
/*
 * cols_bench: CUDA-event timings of DENSE, STRIDED and HIERARCHICAL
 * through the public API, forward and forward + backward, at one shape
 * (default B 2, H 16, N 16384, d 128, bf16, not causal; the SPARSE gate
 * for the patterns, the DENSE gate for dense), median of 10 after 3 warm
 * runs.  Not a test (it checks nothing): build it with
 *
 *	make selftests/attention-cuda/bin/cols_bench
 *	cols_bench [B H N d [causal]]
 *	cols_bench jit [workers]
 *
 * The second form fills the JIT's disk cache (ASAM_CACHE_DIR) with every
 * STRIDED/HIERARCHICAL specialisation of this device, compiled by @workers
 * processes at once, so that a test run after it compiles nothing.
 * and compare with FlexAttention through peers.py in the same call.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

#include <internal/jit.h>

#include "gpu_case.h"

static CUevent ev[2];

static int cmp_f(const void *a, const void *b)
{
	float x = *(const float *)a, y = *(const float *)b;

	return (x > y) - (x < y);
}

struct bench {
	struct asam_attn_params ap;
	struct asam_fwd_args fa;
	struct asam_bwd_args ba;
};

static int step(struct bench *b, bool bwd)
{
	int ret = asam_attn_fwd(gc_ctx, &b->ap, &b->fa);

	if (!ret && bwd)
		ret = asam_attn_bwd(gc_ctx, &b->ap, &b->ba);
	return ret;
}

static float time_ms(struct bench *b, bool bwd)
{
	const struct asam_cuda_driver *drv = gc_dev->drv;
	float t[10];
	int r, ret = 0;

	for (r = 0; r < 3 && !ret; r++)
		ret = step(b, bwd);
	for (r = 0; r < 10 && !ret; r++) {
		drv->cuEventRecord(ev[0], NULL);
		ret = step(b, bwd);
		drv->cuEventRecord(ev[1], NULL);
		drv->cuEventSynchronize(ev[1]);
		drv->cuEventElapsedTime(&t[r], ev[0], ev[1]);
	}
	if (ret) {
		printf("# error %d: %s\n", ret, asam_last_error());
		return -1;
	}
	qsort(t, 10, sizeof(t[0]), cmp_f);
	return t[5];
}

static int spec_of(struct asam_jit_spec *s, bool bwd, int pre, int pat,
		   int gate, int dt, int d, int causal)
{
	int bm = bwd || pre || gate == ASAM_GATE_SOFT ? 64 : 128;
	int ret = asam_jit_spec_init(s, bwd ? "attn_bwd" : "attn_fwd",
				     gc_dev->cc_major * 10 + gc_dev->cc_minor);

	ret = ret ?: asam_jit_spec_set(s, "HEAD_DIM", d);
	ret = ret ?: asam_jit_spec_set(s, "DTYPE", dt);
	ret = ret ?: asam_jit_spec_set(s, "CAUSAL", causal);
	ret = ret ?: asam_jit_spec_set(s, "GATE_MODE", gate);
	ret = ret ?: asam_jit_spec_set(s, "PATTERN", pat);
	ret = ret ?: asam_jit_spec_set(s, "BLOCK_M", bm);
	ret = ret ?: asam_jit_spec_set(s, "BLOCK_N", 64);
	ret = ret ?: asam_jit_spec_set(s, "NUM_WARPS", 4);
	if (pre)
		ret = ret ?: asam_jit_spec_set(s, "BWD_PRE", 1);
	return ret;
}

/* every spec the cols test and this bench ask for, @nw processes */
static int precompile(int nw)
{
	static struct asam_jit_spec sp[512];
	int n = 0, pat, g, dt, d, c, v, w, bad = 0;

	for (pat = 0; pat <= 3; pat++)
	for (g = 0; g < 4; g++)
	for (dt = 1; dt <= 2; dt++)
	for (d = 64; d <= 128; d += 64)
	for (c = 0; c < 2; c++)
	for (v = 0; v < 3; v++) {
		if (pat == 1 || (pat == 0 && g != ASAM_GATE_DENSE) ||
		    (v && g == ASAM_GATE_HARD))
			continue;
		if (spec_of(&sp[n++], v == 2, v == 1, pat, g, dt, d, c))
			return 1;
	}
	for (w = 0; w < nw; w++) {
		if (fork() == 0) {
			const struct asam_jit_image *img;
			int i, err = 0;

			for (i = w; i < n; i += nw)
				if (asam_jit_get(&sp[i], &img)) {
					printf("# compile %d: %s\n", i,
					       asam_last_error());
					err = 1;
				}
			fflush(stdout);
			_exit(err);
		}
	}
	for (w = 0; w < nw; w++) {
		int st;

		wait(&st);
		bad |= !WIFEXITED(st) || WEXITSTATUS(st);
	}
	printf("# %d specs compiled by %d workers%s\n", n, nw,
	       bad ? ", with errors" : "");
	return bad;
}

int main(int argc, char **argv)
{
	int B = argc > 4 ? atoi(argv[1]) : 2, H = argc > 4 ? atoi(argv[2]) : 16;
	int N = argc > 4 ? atoi(argv[3]) : 16384;
	int d = argc > 4 ? atoi(argv[4]) : 128;
	int causal = argc > 5 ? atoi(argv[5]) : 0;
	static const int kinds[] = { ASAM_PATTERN_DENSE, ASAM_PATTERN_STRIDED,
				     ASAM_PATTERN_HIERARCHICAL };
	struct gt q, k, v, o, ls, dO, dq, dk, dv;
	int64_t lsh[3] = { B, H, N };
	CUdeviceptr ws = 0;
	size_t wsz = 0, w;
	struct tt *h;
	int x, bwd;

	gpu_case_setup();
	if (argc > 1 && !strcmp(argv[1], "jit"))
		return precompile(argc > 2 ? atoi(argv[2]) : 8);
	gc_dev->drv->cuEventCreate(&ev[0], 0);
	gc_dev->drv->cuEventCreate(&ev[1], 0);
	h = tt_new4(TT_BF16, B, H, N, d); tt_fill_randn(h, 1); gt_up(&q, h);
	h = tt_new4(TT_BF16, B, H, N, d); tt_fill_randn(h, 1); gt_up(&k, h);
	h = tt_new4(TT_BF16, B, H, N, d); tt_fill_randn(h, 1); gt_up(&v, h);
	h = tt_new4(TT_BF16, B, H, N, d); tt_fill_randn(h, 1); gt_up(&dO, h);
	h = tt_new4(TT_BF16, B, H, N, d); gt_up(&o, h);
	h = tt_new4(TT_BF16, B, H, N, d); gt_up(&dq, h);
	h = tt_new4(TT_BF16, B, H, N, d); gt_up(&dk, h);
	h = tt_new4(TT_BF16, B, H, N, d); gt_up(&dv, h);
	h = tt_new(TT_F32, 3, lsh); gt_up(&ls, h);
	printf("# B %d H %d N %d d %d bf16%s\n", B, H, N, d,
	       causal ? " causal" : "");
	for (x = 0; x < 3; x++) {
		struct asam_pattern pt;
		struct bench b = { .ap = { .sz = sizeof(b.ap) },
				   .fa = { .sz = sizeof(b.fa) },
				   .ba = { .sz = sizeof(b.ba) } };
		bool dense = kinds[x] == ASAM_PATTERN_DENSE;

		asam_pattern_init(&pt, kinds[x]);
		b.ap.pattern = &pt;
		b.ap.gate_mode = dense ? ASAM_GATE_DENSE : ASAM_GATE_SPARSE;
		b.ap.causal = causal;
		b.fa.q = &q.dl; b.fa.k = &k.dl; b.fa.v = &v.dl; b.fa.o = &o.dl;
		if (dense)
			b.fa.lse_dense = &ls.dl;
		else
			b.fa.lse_sparse = &ls.dl;
		b.ba.q = &q.dl; b.ba.k = &k.dl; b.ba.v = &v.dl; b.ba.o = &o.dl;
		b.ba.lse_sparse = b.fa.lse_sparse;
		b.ba.lse_dense = b.fa.lse_dense;
		b.ba.d_o = &dO.dl; b.ba.dq = &dq.dl; b.ba.dk = &dk.dl;
		b.ba.dv = &dv.dl;
		if (asam_attn_workspace_size(gc_ctx, &b.ap, NULL, &b.ba, &w)) {
			printf("# workspace: %s\n", asam_last_error());
			return 1;
		}
		if (w > wsz) {
			if (ws)
				asam_cuda_free(gc_dev, ws);
			asam_cuda_malloc(gc_dev, w, &ws);
			wsz = w;
		}
		b.ba.workspace = (void *)(uintptr_t)ws;
		b.ba.workspace_size = wsz;
		for (bwd = 0; bwd < 2; bwd++)
			printf("{\"ours\": \"%s\", \"gate\": \"%s\", \"bwd\": %d, \"ms\": %.3f}\n",
			       asam_pattern_name(kinds[x]),
			       dense ? "dense" : "sparse", bwd,
			       time_ms(&b, bwd));
	}
	gpu_case_teardown();
	return 0;
}
