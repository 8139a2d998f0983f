// SPDX-License-Identifier: MIT
/*
 * CLUSTERED (ARGMAX) on the GPU through the public API, against the fp64
 * reference: every gate mode x causal x GQA x lengths x fp16/bf16 x d 64
 * and 128, C in {1, 4, 32}, N from 1 to 2048, Nq != Nk, centroids that
 * leave clusters empty (exact duplicates: ties go to the lowest index)
 * and very unbalanced (near-duplicates around one direction), and the
 * SOFT cluster rule (<a_i, b_j> > theta) in every gate mode.  Then the
 * GPU's assignment against asam_cluster_argmax() token by token, and
 * asam_cluster_update() on the GPU against the CPU's.  SKIP without a GPU.
 *
 * With --bench: bf16, B 2, H 16, N 16384, d 128, C 32, random q, k and
 * centroids; our CLUSTERED forward and forward+backward and our DENSE at
 * the same shape, timed with CUDA events, plus the token density
 * (CLUS_BENCH_N=n times a smaller N).
 */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <internal/pattern.h>
#include <internal/validate.h>

#include "../../arch/cuda/attn_clus.h"
#include "gpu_case.h"

enum { CT_RANDOM, CT_SKEWED };

/* the cluster rule of one(): ARGMAX, or SOFT with a sharp temperature */
static enum asam_cluster_mode g_cmode = ASAM_CLUSTER_ARGMAX;

/* [Hq, C, d] fp32 centroids on the host */
static struct tt *centroids(int Hq, int C, int d, int kind)
{
	int64_t sh[3] = { Hq, C, d };
	struct tt *m = tt_new(TT_F32, 3, sh);
	int h, c, e;

	tt_fill_randn(m, 1);
	if (kind != CT_SKEWED)
		return m;
	for (h = 0; h < Hq; h++)
		for (c = 1; c < C; c++)
			for (e = 0; e < d; e++) {
				int64_t at = ((int64_t)h * C + c) * d + e;
				double base = tt_get(m, ((int64_t)h * C) * d + e);

				/* 1..3: exact copies (always empty), rest near */
				tt_set(m, at, c <= 3 ? base :
				       base + 0.05 * tt_randn());
			}
	return m;
}

/* ASAM_F_DETERMINISTIC for one()'s cases while set */
static unsigned int g_flags;

static void one(int dt16, int d, int gate, int causal, int B, int Hq,
		int Hkv, int Nq, int Nk, bool lens, int C, int kind)
{
	struct asam_pattern pt, pr;
	struct gt mu;
	/*
	 * Without the flag the DENSE gate runs the dense backward and the
	 * SPARSE gate in ARGMAX mode (on Hopper) the wgmma bucket walk:
	 * atomics, no bit check
	 */
	bool nd = !(g_flags & ASAM_F_DETERMINISTIC);
	struct gpu_case c = { .dt16 = dt16, .d = d, .gate = gate,
			      .causal = causal, .B = B, .Hq = Hq, .Hkv = Hkv,
			      .Nq = Nq, .Nk = Nk, .lens = lens,
			      .flags = g_flags,
			      .nondet_ok = nd && (gate == ASAM_GATE_DENSE ||
						  (gate == ASAM_GATE_SPARSE &&
						   g_cmode ==
						   ASAM_CLUSTER_ARGMAX)) };

	gt_up(&mu, centroids(Hq, C, d, kind));
	asam_pattern_init(&pt, ASAM_PATTERN_CLUSTERED);
	pt.num_clusters = C;
	pt.centroids = &mu.dl;
	pt.cluster_mode = g_cmode;
	/* tau 0.02 spreads <a_i, b_j> around theta = 0.1 */
	pt.cluster_temp = 0.02f;
	pr = pt;
	pr.centroids = &mu.h->dl;
	c.pat = &pt;
	c.pat_ref = &pr;
	ksft_print_msg("C %d%s%s\n", C, kind == CT_SKEWED ? " skewed" : "",
		       g_cmode == ASAM_CLUSTER_SOFT ? " cluster_mode SOFT" : "");
	gpu_case_run(&c);
	gt_free(&mu);
}

/* the GPU's assignment, token by token, against asam_cluster_argmax() */
static void assign_case(int dt16, int d, int B, int Hq, int Hkv, int N,
			int C, int kind)
{
	DLDataType dt = dt16 ? TT_BF16 : TT_F16;
	struct asam_attn_params ap = { .sz = sizeof(ap),
				       .gate_mode = ASAM_GATE_SPARSE };
	struct asam_fwd_args fa = { .sz = sizeof(fa) };
	struct asam_problem p, ph;
	struct asam_pattern pt;
	struct gt q, k, mu;
	int32_t *cq, *ck;
	int64_t bad = 0, n = 0, t;
	int b, h, ret;

	gt_up(&q, tt_new4(dt, B, Hq, N, d)); tt_fill_randn(q.h, 1);
	gt_up(&k, tt_new4(dt, B, Hkv, N, d)); tt_fill_randn(k.h, 1);
	/* values after the fill: upload again */
	asam_cuda_memcpy_htod(gc_dev, q.p, q.h->buf, q.h->bytes, NULL, false);
	asam_cuda_memcpy_htod(gc_dev, k.p, k.h->buf, k.h->bytes, NULL, false);
	gt_up(&mu, centroids(Hq, C, d, kind));
	asam_pattern_init(&pt, ASAM_PATTERN_CLUSTERED);
	pt.num_clusters = C;
	pt.centroids = &mu.dl;
	ap.pattern = &pt;
	fa.q = &q.dl;
	fa.k = &k.dl;
	cq = malloc(4 * (size_t)B * Hq * N);
	ck = malloc(4 * (size_t)B * Hq * N);
	ret = asam_problem_stats(&p, NULL, &ap, &fa);
	ret = ret ?: asam_cuda_clus_assign_to_host(gc_dev, &p, cq, ck);
	pt.centroids = &mu.h->dl;
	fa.q = &q.h->dl;
	fa.k = &k.h->dl;
	ret = ret ?: asam_problem_stats(&ph, NULL, &ap, &fa);
	for (b = 0; b < B && !ret; b++)
		for (h = 0; h < Hq; h++)
			for (t = 0; t < N; t++, n++) {
				int64_t at = ((int64_t)b * Hq + h) * N + t;

				bad += cq[at] != asam_cluster_argmax(&ph.pat, h,
						&ph.q, b, h, t, d);
				bad += ck[at] != asam_cluster_argmax(&ph.pat, h,
						&ph.k, b, h / (Hq / Hkv), t, d);
			}
	ksft_test_result(!ret && !bad,
			 "assignment %s d%d B%d H%d/%d N %d C %d%s: %lld of %lld tokens differ %s\n",
			 dt16 ? "bf16" : "f16", d, B, Hq, Hkv, N, C,
			 kind == CT_SKEWED ? " skewed" : "", (long long)bad,
			 (long long)(2 * n), ret ? asam_last_error() : "");
	free(cq);
	free(ck);
	gt_free(&q); gt_free(&k); gt_free(&mu);
}

/* asam_cluster_update() on the GPU against the CPU's */
static void update_case(int dt16, int d, int B, int Hq, int Hkv, int Nq,
			int Nk, int C, int kind)
{
	DLDataType dt = dt16 ? TT_BF16 : TT_F16;
	struct asam_pattern pg, ph;
	struct gt q, k, mu;
	struct tt *muh;
	double err;
	int ret;

	gt_up(&q, tt_new4(dt, B, Hq, Nq, d)); tt_fill_randn(q.h, 1);
	gt_up(&k, tt_new4(dt, B, Hkv, Nk, d)); tt_fill_randn(k.h, 1);
	asam_cuda_memcpy_htod(gc_dev, q.p, q.h->buf, q.h->bytes, NULL, false);
	asam_cuda_memcpy_htod(gc_dev, k.p, k.h->buf, k.h->bytes, NULL, false);
	gt_up(&mu, centroids(Hq, C, d, kind));
	muh = tt_new(TT_F32, 3, mu.h->shape);
	tt_copy(muh, mu.h);
	asam_pattern_init(&pg, ASAM_PATTERN_CLUSTERED);
	pg.num_clusters = C;
	pg.centroids = &mu.dl;
	ph = pg;
	ph.centroids = &muh->dl;
	ret = asam_cluster_update(gc_ctx, &pg, &q.dl, &k.dl, 0.9f);
	ret = ret ?: asam_cluster_update(gc_ctx, &ph, &q.h->dl, &k.h->dl,
					 0.9f);
	gc_dev->drv->cuCtxSynchronize();
	gt_down(&mu);
	err = tt_rel_err(mu.h, muh);
	ksft_test_result(!ret && err <= 1e-6,
			 "cluster update %s d%d B%d H%d/%d Nq %d Nk %d C %d%s: rel err %.1e %s\n",
			 dt16 ? "bf16" : "f16", d, B, Hq, Hkv, Nq, Nk, C,
			 kind == CT_SKEWED ? " skewed" : "", err,
			 ret ? asam_last_error() : "");
	tt_free(muh);
	gt_free(&q); gt_free(&k); gt_free(&mu);
}

/* ------------------------------------------------------------------------ */

static float ms_of(CUevent a, CUevent b)
{
	float ms = 0;

	gc_dev->drv->cuEventSynchronize(b);
	gc_dev->drv->cuEventElapsedTime(&ms, a, b);
	return ms;
}

static int bench(void)
{
	/* CLUS_BENCH_N: a smaller N (a dry run of this code, e.g. emulated) */
	const char *nv = getenv("CLUS_BENCH_N");
	const int B = 2, H = 16, N = nv ? atoi(nv) : 16384, d = 128, C = 32;
	const int reps = nv ? 1 : 10;
	struct asam_attn_params ap = { .sz = sizeof(ap) };
	struct asam_fwd_args fa = { .sz = sizeof(fa) };
	struct asam_bwd_args ba = { .sz = sizeof(ba) };
	struct gt q, k, v, o, dO, dq, dk, dv, mu, ls;
	struct asam_pattern pc, pd;
	struct asam_problem p;
	int64_t lsh[3] = { B, H, N };
	CUdeviceptr ws = 0;
	size_t wsz = 0, w2 = 0;
	CUevent e0, e1;
	int32_t *cq, *ck;
	double pairs = 0;
	int pass, r, ret = 0, b, h, t;

	gt_up(&q, tt_new4(TT_BF16, B, H, N, d)); gt_up(&k, tt_new4(TT_BF16, B, H, N, d));
	gt_up(&v, tt_new4(TT_BF16, B, H, N, d)); gt_up(&o, tt_new4(TT_BF16, B, H, N, d));
	gt_up(&dO, tt_new4(TT_BF16, B, H, N, d)); gt_up(&dq, tt_new4(TT_BF16, B, H, N, d));
	gt_up(&dk, tt_new4(TT_BF16, B, H, N, d)); gt_up(&dv, tt_new4(TT_BF16, B, H, N, d));
	gt_up(&ls, tt_new(TT_F32, 3, lsh));
	tt_fill_randn(q.h, 1); tt_fill_randn(k.h, 1); tt_fill_randn(v.h, 1);
	tt_fill_randn(dO.h, 1);
	asam_cuda_memcpy_htod(gc_dev, q.p, q.h->buf, q.h->bytes, NULL, false);
	asam_cuda_memcpy_htod(gc_dev, k.p, k.h->buf, k.h->bytes, NULL, false);
	asam_cuda_memcpy_htod(gc_dev, v.p, v.h->buf, v.h->bytes, NULL, false);
	asam_cuda_memcpy_htod(gc_dev, dO.p, dO.h->buf, dO.h->bytes, NULL, false);
	gt_up(&mu, centroids(H, C, d, CT_RANDOM));
	asam_pattern_init(&pc, ASAM_PATTERN_CLUSTERED);
	pc.num_clusters = C;
	pc.centroids = &mu.dl;
	asam_pattern_init(&pd, ASAM_PATTERN_DENSE);
	gc_dev->drv->cuEventCreate(&e0, 0);
	gc_dev->drv->cuEventCreate(&e1, 0);

	/* the density of our assignment */
	ap.pattern = &pc;
	ap.gate_mode = ASAM_GATE_SPARSE;
	fa.q = &q.dl; fa.k = &k.dl; fa.v = &v.dl; fa.o = &o.dl;
	fa.lse_sparse = &ls.dl;
	cq = malloc(4 * (size_t)B * H * N);
	ck = malloc(4 * (size_t)B * H * N);
	ret = asam_problem_stats(&p, NULL, &ap, &fa);
	ret = ret ?: asam_cuda_clus_assign_to_host(gc_dev, &p, cq, ck);
	for (b = 0; b < B && !ret; b++)
		for (h = 0; h < H; h++) {
			int64_t nq[256] = { 0 }, nk[256] = { 0 };

			for (t = 0; t < N; t++) {
				nq[cq[((int64_t)b * H + h) * N + t]]++;
				nk[ck[((int64_t)b * H + h) * N + t]]++;
			}
			for (t = 0; t < C; t++)
				pairs += (double)nq[t] * nk[t];
		}
	printf("token_density %.5f (ours, all b, h)\n",
	       pairs / ((double)B * H * N * N));
	free(cq);
	free(ck);

	ba.q = fa.q; ba.k = fa.k; ba.v = fa.v; ba.o = fa.o;
	ba.lse_sparse = &ls.dl; ba.d_o = &dO.dl;
	ba.dq = &dq.dl; ba.dk = &dk.dl; ba.dv = &dv.dl;
	ret = ret ?: asam_attn_workspace_size(gc_ctx, &ap, &fa, NULL, &wsz);
	ret = ret ?: asam_attn_workspace_size(gc_ctx, &ap, NULL, &ba, &w2);
	if (w2 > wsz)
		wsz = w2;
	ret = ret ?: asam_cuda_malloc(gc_dev, wsz + 16, &ws);
	fa.workspace = ba.workspace = (void *)(uintptr_t)ws;
	fa.workspace_size = ba.workspace_size = wsz;
	printf("workspace %.1f MiB\n", wsz / 1048576.0);
	for (pass = 0; pass < 4 && !ret; pass++) {
		bool dense = pass >= 2, withb = pass & 1;
		float ms;

		ap.pattern = dense ? &pd : &pc;
		for (r = -2; r < reps && !ret; r++) {
			if (r == 0)
				gc_dev->drv->cuEventRecord(e0, NULL);
			ret = asam_attn_fwd(gc_ctx, &ap, &fa);
			if (withb)
				ret = ret ?: asam_attn_bwd(gc_ctx, &ap, &ba);
		}
		gc_dev->drv->cuEventRecord(e1, NULL);
		ms = ms_of(e0, e1) / reps;
		printf("%s %s: %.3f ms\n", dense ? "dense" : "clustered",
		       withb ? "fwd+bwd" : "fwd", ms);
	}
	if (ret)
		printf("bench failed: %d %s\n", ret, asam_last_error());
	return ret;
}

int main(int argc, char **argv)
{
	int g, c, i = 0;

	ksft_print_header();
	gpu_case_setup();
	if (argc > 1 && !strcmp(argv[1], "--bench"))
		return bench() ? 1 : 0;
	ksft_set_plan(4 * 2 * 3 + 6 + 4 + 5 + 3);
	/* gate x causal x (C, GQA, lengths, dtype, d) */
	for (g = 0; g < 4; g++)
		for (c = 0; c < 2; c++) {
			one(i & 1, (i >> 1) & 1 ? 64 : 128, g, c, 2, 4, 2,
			    300 + 37 * c, 411 - 120 * c, (g + c) & 1, 4,
			    CT_RANDOM);
			/* the deterministic pair of kernels */
			g_flags = ASAM_F_DETERMINISTIC;
			one((i + 1) & 1, i & 1 ? 64 : 128, g, c, 1, 2, 2,
			    1000, 1000, false, 32, CT_SKEWED);
			g_flags = 0;
			one(i & 1, 128, g, c, 1, 3, 1, 129, 257, c, 1,
			    CT_RANDOM);
			i++;
		}
	one(1, 128, ASAM_GATE_SPARSE, 0, 1, 2, 1, 2048, 2048, false, 32,
	    CT_RANDOM);
	one(1, 128, ASAM_GATE_SPARSE, 1, 1, 2, 2, 2500, 2100, false, 32,
	    CT_RANDOM);
	one(0, 64, ASAM_GATE_SOFT, 1, 1, 2, 1, 2048, 2048, true, 32,
	    CT_SKEWED);
	one(1, 128, ASAM_GATE_SPARSE, 0, 1, 2, 2, 1, 1, false, 4, CT_RANDOM);
	one(0, 128, ASAM_GATE_SOFT, 1, 1, 2, 2, 1, 5, true, 4, CT_RANDOM);
	one(1, 64, ASAM_GATE_HARD, 1, 2, 4, 4, 700, 900, true, 32, CT_SKEWED);

	/* the SOFT cluster rule, through the pair mask */
	g_cmode = ASAM_CLUSTER_SOFT;
	for (g = 0; g < 4; g++)
		one(g & 1, g & 2 ? 64 : 128, g, g & 1, 2, 4, 2, 200 + 31 * g,
		    260 - 17 * g, g == 2, g & 1 ? 32 : 4,
		    g & 2 ? CT_SKEWED : CT_RANDOM);
	g_cmode = ASAM_CLUSTER_ARGMAX;

	assign_case(1, 128, 2, 4, 2, 3000, 32, CT_RANDOM);
	assign_case(0, 64, 1, 2, 2, 2000, 32, CT_SKEWED);
	assign_case(1, 64, 1, 2, 1, 500, 4, CT_SKEWED);
	assign_case(1, 128, 1, 2, 2, 777, 256, CT_RANDOM);
	/* fp16 on the tensor cores; 64 clusters: the most scores kept */
	assign_case(0, 128, 1, 4, 2, 1500, 64, CT_RANDOM);

	update_case(1, 128, 2, 4, 2, 1000, 1300, 32, CT_RANDOM);
	update_case(0, 64, 1, 2, 2, 700, 700, 4, CT_SKEWED);
	update_case(1, 128, 1, 2, 1, 300, 200, 1, CT_RANDOM);
	gpu_case_teardown();
	ksft_finished();
}
