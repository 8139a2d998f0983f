// SPDX-License-Identifier: MIT
/*
 * rows_bench: time RANDOM_ROWS, USER_INDEX and DENSE (SPARSE gate for the
 * first two, DENSE for the last) through the public API with CUDA events
 * on one stream, forward and forward+backward, bf16, no causal mask.
 * Not a selftest (nothing to pass): built on demand with
 *
 *	make selftests/attention-cuda/bin/rows_bench
 *	rows_bench [B H N d r iters]	(default 2 16 16384 128 128 10)
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "gpu_case.h"

static struct gt mk(int64_t B, int64_t H, int64_t N, int64_t d,
		    const struct tt *seed)
{
	struct tt *h = tt_new4(TT_BF16, B, H, N, d);
	struct gt g;
	size_t o;

	/* a tiled random block: sane values without minutes of randn */
	for (o = 0; o < h->bytes; o += seed->bytes) {
		size_t n = h->bytes - o < seed->bytes ? h->bytes - o :
							 seed->bytes;

		memcpy((char *)h->buf + o, (char *)seed->buf +
		       (o / seed->bytes * 2 * 7) % 64, n > 64 ? n - 64 : n);
	}
	gt_up(&g, h);
	return g;
}

static double now(void)
{
	struct timespec t;

	clock_gettime(CLOCK_MONOTONIC, &t);
	return t.tv_sec + t.tv_nsec * 1e-9;
}

int main(int argc, char **argv)
{
	int B = 2, H = 16, N = 16384, d = 128, r = 128, it = 10, k, bwd, x;
	static const char *names[] = { "dense", "random_rows", "user_index" };
	int64_t sh[4], gs[3];
	struct tt *seed, *ih;
	struct gt q, kk, v, o, dO, dq, dk, dv, ix;
	struct tt *lse;
	CUdeviceptr lsep, wsp = 0;
	DLTensor lsed;
	CUevent e0, e1;
	size_t wsz = 0, have = 0;

	if (argc == 7) {
		B = atoi(argv[1]); H = atoi(argv[2]); N = atoi(argv[3]);
		d = atoi(argv[4]); r = atoi(argv[5]); it = atoi(argv[6]);
	}
	ksft_print_header();
	gpu_case_setup();
	printf("# rows_bench B %d H %d N %d d %d r %d iters %d\n", B, H, N, d,
	       r, it);
	sh[0] = 1; sh[1] = 1; sh[2] = 1 << 16; sh[3] = 1;
	seed = tt_new(TT_BF16, 4, sh);
	tt_fill_randn(seed, 1);
	q = mk(B, H, N, d, seed); kk = mk(B, H, N, d, seed);
	v = mk(B, H, N, d, seed); o = mk(B, H, N, d, seed);
	dO = mk(B, H, N, d, seed); dq = mk(B, H, N, d, seed);
	dk = mk(B, H, N, d, seed); dv = mk(B, H, N, d, seed);
	gs[0] = B; gs[1] = H; gs[2] = N;
	lse = tt_new(TT_F32, 3, gs);
	asam_cuda_malloc(gc_dev, lse->bytes, &lsep);
	lsed = lse->dl;
	lsed.data = (void *)(uintptr_t)lsep;
	lsed.device = (DLDevice){ kDLCUDA, gc_dev->ordinal };
	/* USER_INDEX: r distinct random keys a row (a shuffle's first r) */
	sh[0] = B; sh[1] = H; sh[2] = N; sh[3] = r;
	ih = tt_new(TT_I32, 4, sh);
	{
		int32_t *perm = malloc(sizeof(int32_t) * N), *xb = ih->buf;
		int64_t row, t;

		for (t = 0; t < N; t++)
			perm[t] = (int32_t)t;
		for (row = 0; row < (int64_t)B * H * N; row++)
			for (t = 0; t < r; t++) {
				int64_t z = t + (int64_t)(tt_uniform() *
							  (N - t));
				int32_t tmp = perm[t];

				perm[t] = perm[z];
				perm[z] = tmp;
				xb[row * r + t] = perm[t];
			}
		free(perm);
	}
	gt_up(&ix, ih);
	asam_cuda_event_create(gc_dev, &e0, true);
	asam_cuda_event_create(gc_dev, &e1, true);

	for (k = 0; k < 3; k++)
	for (bwd = 0; bwd < 2; bwd++) {
		struct asam_pattern pt;
		struct asam_attn_params ap = { .sz = sizeof(ap) };
		struct asam_fwd_args fa = { .sz = sizeof(fa) };
		struct asam_bwd_args ba = { .sz = sizeof(ba) };
		int kind = k == 0 ? ASAM_PATTERN_DENSE : k == 1 ?
			   ASAM_PATTERN_RANDOM_ROWS : ASAM_PATTERN_USER_INDEX;
		double t0, first;
		float ms = 0;
		int ret = 0;

		asam_pattern_init(&pt, kind);
		pt.keys_per_row = r;
		pt.index = &ix.dl;
		ap.pattern = &pt;
		ap.gate_mode = k ? ASAM_GATE_SPARSE : ASAM_GATE_DENSE;
		fa.q = &q.dl; fa.k = &kk.dl; fa.v = &v.dl; fa.o = &o.dl;
		if (k)
			fa.lse_sparse = &lsed;
		else
			fa.lse_dense = &lsed;
		ba.q = fa.q; ba.k = fa.k; ba.v = fa.v; ba.o = fa.o;
		ba.lse_sparse = fa.lse_sparse; ba.lse_dense = fa.lse_dense;
		ba.d_o = &dO.dl; ba.dq = &dq.dl; ba.dk = &dk.dl;
		ba.dv = &dv.dl;
		if (bwd) {
			ret = asam_attn_workspace_size(gc_ctx, &ap, NULL, &ba,
						       &wsz);
			if (!ret && wsz > have) {
				if (wsp)
					asam_cuda_free(gc_dev, wsp);
				ret = asam_cuda_malloc(gc_dev, wsz, &wsp);
				have = wsz;
			}
			ba.workspace = (void *)(uintptr_t)wsp;
			ba.workspace_size = have;
		}
		/* first call: JIT (or disk cache) and, for rows, the lists */
		t0 = now();
		ret = ret ?: asam_attn_fwd(gc_ctx, &ap, &fa);
		if (bwd)
			ret = ret ?: asam_attn_bwd(gc_ctx, &ap, &ba);
		gc_dev->drv->cuCtxSynchronize();
		first = now() - t0;
		for (x = 0; x < 2 && !ret; x++) {	/* warm */
			ret = asam_attn_fwd(gc_ctx, &ap, &fa);
			if (bwd)
				ret = ret ?: asam_attn_bwd(gc_ctx, &ap, &ba);
		}
		asam_cuda_event_record(gc_dev, e0, NULL);
		for (x = 0; x < it && !ret; x++) {
			ret = asam_attn_fwd(gc_ctx, &ap, &fa);
			if (bwd)
				ret = ret ?: asam_attn_bwd(gc_ctx, &ap, &ba);
		}
		asam_cuda_event_record(gc_dev, e1, NULL);
		ret = ret ?: asam_cuda_event_sync(gc_dev, e1);
		ret = ret ?: asam_cuda_event_elapsed(gc_dev, e0, e1, &ms);
		if (ret)
			printf("BENCH %s %s: error %d %s\n", bwd ? "fwdbwd" : "fwd",
			       names[k], ret, asam_last_error());
		else
			printf("BENCH %s %s bf16 d%d B%d H%d N%d r%d: %.3f ms (first call %.2f s)\n",
			       bwd ? "fwdbwd" : "fwd", names[k], d, B, H, N, r,
			       ms / it, first);
		fflush(stdout);
	}
	gpu_case_teardown();
	return 0;
}
