// SPDX-License-Identifier: MIT
/*
 * The Hopper (wgmma) forward through the public API, against the fp64
 * reference on host copies: the DENSE pattern with the SPARSE and DENSE
 * gates, LOCAL, RANDOM, STRIDED and HIERARCHICAL with every gate, causal
 * or not, fp16 and bf16, d 64 and 128, GQA, per-batch
 * lengths, Nq != Nk, sequences from 1 to 4096 tokens including lengths
 * that are not multiples of the 128-row tile; forward output and
 * log-sum-exps, then the backward run from this forward's lse (dQ, dK,
 * dV, bit-identical twice).  A last result checks that every case went
 * through the wgmma kernel.  SKIP without an sm_90 GPU.
 *
 *	attn_sm90_gpu_test		the checks
 *	attn_sm90_gpu_test bench	forward timings, CUDA events, bf16:
 *					the wgmma kernel, staggered or not,
 *					and the mma.sync one
 *
 * The checks take the kernel ASAM_CUDA_SM90 names (1: in step, 2:
 * staggered), 1 when unset.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "gpu_case.h"
#include "../../arch/cuda/attn_sm90.h"

static int ncases;

static void one_amp(int dt16, int d, int gate, int causal, int B, int Hq,
		    int Hkv, int Nq, int Nk, bool lens, bool fwd_only,
		    double qamp)
{
	struct gpu_case c = { .kind = ASAM_PATTERN_DENSE, .dt16 = dt16,
			      .d = d, .gate = gate, .causal = causal, .B = B,
			      .Hq = Hq, .Hkv = Hkv, .Nq = Nq, .Nk = Nk,
			      .lens = lens, .fwd_only = fwd_only,
			      .flags = ASAM_F_DETERMINISTIC, .qamp = qamp };

	gpu_case_run(&c);
	ncases += !gpu_case_skips(&c);
}

static void one(int dt16, int d, int gate, int causal, int B, int Hq,
		int Hkv, int Nq, int Nk, bool lens, bool fwd_only)
{
	one_amp(dt16, d, gate, causal, B, Hq, Hkv, Nq, Nk, lens, fwd_only, 0);
}

/*
 * LOCAL (window @w) or RANDOM (@r keys a row) with gate @gate: the lists
 * on 64-key tiles, each warpgroup skipping the tiles its rows miss.  SOFT
 * runs its dense and its sparse launch on the wgmma kernel.
 */
static void pat_one(int kind, int w, int dt16, int d, int gate, int causal,
		    int B, int Hq, int Hkv, int Nq, int Nk, bool lens)
{
	struct asam_pattern pt;
	struct gpu_case c = { .pat = &pt, .pat_ref = &pt, .dt16 = dt16,
			      .d = d, .gate = gate, .causal = causal, .B = B,
			      .Hq = Hq, .Hkv = Hkv, .Nq = Nq, .Nk = Nk,
			      .lens = lens, .flags = ASAM_F_DETERMINISTIC };

	asam_pattern_init(&pt, kind);
	if (kind == ASAM_PATTERN_LOCAL)
		pt.window = w;
	else
		pt.keys_per_row = w;
	gpu_case_run(&c);
	/* SOFT: two launches; the DENSE gate ignores the pattern */
	if (!gpu_case_skips(&c))
		ncases += gate == ASAM_GATE_SOFT ? 2 : 1;
}

static void cols_one_amp(const struct asam_pattern *pt, int dt16, int d,
			 int gate, int causal, int Hq, int Hkv, int Nq,
			 int Nk, bool lens, double qamp)
{
	struct gpu_case c = { .pat = pt, .pat_ref = pt, .dt16 = dt16,
			      .d = d, .gate = gate, .causal = causal, .B = 2,
			      .Hq = Hq, .Hkv = Hkv, .Nq = Nq, .Nk = Nk,
			      .lens = lens, .flags = ASAM_F_DETERMINISTIC,
			      .qamp = qamp };

	gpu_case_run(&c);
	if (!gpu_case_skips(&c))
		ncases += gate == ASAM_GATE_SOFT ? 2 : 1;
}

static void cols_one(const struct asam_pattern *pt, int dt16, int d,
		     int gate, int causal, int Hq, int Hkv, int Nq, int Nk,
		     bool lens)
{
	cols_one_amp(pt, dt16, d, gate, causal, Hq, Hkv, Nq, Nk, lens, 0);
}

#define NCOLS 9

static void cols_cases(void)
{
	struct asam_pattern st, hi, st2, hw;

	gc_cols_patterns(&st, &hi, &st2, &hw);
	cols_one(&st, 1, 128, ASAM_GATE_SPARSE, 0, 4, 2, 700, 700, false);
	cols_one(&hi, 0, 128, ASAM_GATE_SPARSE, 1, 4, 4, 613, 640, false);
	cols_one(&hw, 1, 64, ASAM_GATE_SOFT, 1, 4, 2, 500, 500, true);
	cols_one(&st, 0, 64, ASAM_GATE_HARD, 0, 4, 4, 333, 290, true);
	cols_one(&st2, 1, 128, ASAM_GATE_SPARSE, 1, 2, 2, 301, 450, true);
	cols_one(&hw, 1, 128, ASAM_GATE_HARD, 1, 4, 2, 450, 450, false);
	cols_one(&hi, 1, 64, ASAM_GATE_SOFT, 0, 4, 2, 2100, 2100, false);
	cols_one(&st2, 0, 128, ASAM_GATE_SPARSE, 0, 4, 1, 129, 1000, false);
	/* scores of deviation ~8: maxima that jump past RESCALE_SLACK */
	cols_one_amp(&hi, 1, 128, ASAM_GATE_SPARSE, 0, 2, 2, 300, 1500, false,
		     8);
}

/* a cheap non-zero bf16 fill: uniform in (-2, 2) */
static void fill_bf16(uint16_t *h, size_t n, uint64_t seed)
{
	size_t i;

	for (i = 0; i < n; i++) {
		float f;
		uint32_t u;

		seed = seed * 6364136223846793005ull + 1442695040888963407ull;
		f = (float)((seed >> 40) * (1.0 / (1ull << 24))) * 4.f - 2.f;
		memcpy(&u, &f, 4);
		h[i] = (uint16_t)(u >> 16);
	}
}

static void dl4(DLTensor *t, CUdeviceptr p, int64_t *shape, int64_t *st,
		int B, int H, int N, int d, DLDataType dt)
{
	shape[0] = B; shape[1] = H; shape[2] = N; shape[3] = d;
	st[3] = 1; st[2] = d; st[1] = (int64_t)N * d; st[0] = st[1] * H;
	memset(t, 0, sizeof(*t));
	t->data = (void *)(uintptr_t)p;
	t->device = (DLDevice){ kDLCUDA, gc_dev->ordinal };
	t->ndim = d ? 4 : 3;
	t->dtype = dt;
	t->shape = shape;
	t->strides = st;
	if (!d) {	/* lse [B, H, N] */
		st[2] = 1; st[1] = N; st[0] = (int64_t)N * H;
	}
}

static int bench(void)
{
	static const int shapes[][4] = {	/* B, H, N, d */
		{ 8, 16, 4096, 128 }, { 2, 16, 16384, 128 },
		{ 8, 16, 4096, 64 },
	};
	const size_t maxe = (size_t)8 * 16 * 4096 * 128;
	CUdeviceptr q, k, v, o, lse;
	const struct asam_cuda_driver *drv = gc_dev->drv;
	uint16_t *h = malloc(maxe * 2);
	CUevent e0, e1;
	int s, c, path, r, ret = 0;

	if (!h)
		return 1;
	asam_cuda_malloc(gc_dev, maxe * 2, &q);
	asam_cuda_malloc(gc_dev, maxe * 2, &k);
	asam_cuda_malloc(gc_dev, maxe * 2, &v);
	asam_cuda_malloc(gc_dev, maxe * 2, &o);
	asam_cuda_malloc(gc_dev, maxe / 128 * 4, &lse);
	fill_bf16(h, maxe, 1);
	asam_cuda_memcpy_htod(gc_dev, q, h, maxe * 2, NULL, false);
	fill_bf16(h, maxe, 2);
	asam_cuda_memcpy_htod(gc_dev, k, h, maxe * 2, NULL, false);
	fill_bf16(h, maxe, 3);
	asam_cuda_memcpy_htod(gc_dev, v, h, maxe * 2, NULL, false);
	free(h);
	drv->cuEventCreate(&e0, 0);
	drv->cuEventCreate(&e1, 0);
	printf("card: %s\n", gc_dev->name);
	for (s = 0; s < 3; s++)
	for (c = 0; c < 2; c++)
	for (path = 0; path < 3; path++) {
		int B = shapes[s][0], H = shapes[s][1], N = shapes[s][2];
		int d = shapes[s][3];
		int64_t sh[5][4], st[5][4];
		DLTensor tq, tk, tv, to, tl;
		struct asam_pattern pt;
		struct asam_attn_params ap = { .sz = sizeof(ap) };
		struct asam_fwd_args fa = { .sz = sizeof(fa) };
		float ms[20], t, tmp;
		unsigned long before = attn_sm90_launches;
		double fl;
		int i, j;

		setenv("ASAM_CUDA_SM90", path == 2 ? "0" : path ? "2" : "1",
		       1);
		dl4(&tq, q, sh[0], st[0], B, H, N, d, TT_BF16);
		dl4(&tk, k, sh[1], st[1], B, H, N, d, TT_BF16);
		dl4(&tv, v, sh[2], st[2], B, H, N, d, TT_BF16);
		dl4(&to, o, sh[3], st[3], B, H, N, d, TT_BF16);
		dl4(&tl, lse, sh[4], st[4], B, H, N, 0, TT_F32);
		asam_pattern_init(&pt, ASAM_PATTERN_DENSE);
		ap.pattern = &pt;
		ap.gate_mode = ASAM_GATE_DENSE;
		ap.causal = c;
		fa.q = &tq; fa.k = &tk; fa.v = &tv; fa.o = &to;
		fa.lse_dense = &tl;
		for (r = 0; r < 23 && !ret; r++) {
			drv->cuEventRecord(e0, NULL);
			ret = asam_attn_fwd(gc_ctx, &ap, &fa);
			drv->cuEventRecord(e1, NULL);
			drv->cuEventSynchronize(e1);
			drv->cuEventElapsedTime(&t, e0, e1);
			if (r >= 3)
				ms[r - 3] = t;
		}
		if (ret) {
			printf("BENCH failed: %s\n", asam_last_error());
			break;
		}
		for (i = 0; i < 20; i++)	/* median of 20 */
			for (j = i + 1; j < 20; j++)
				if (ms[j] < ms[i]) {
					tmp = ms[i]; ms[i] = ms[j]; ms[j] = tmp;
				}
		t = (ms[9] + ms[10]) / 2;
		fl = 4.0 * B * H * (double)N * N * d / (c ? 2 : 1);
		printf("BENCH fwd bf16 d%d B%d H%d N%d c%d %s: %.3f ms %.1f TFLOP/s%s\n",
		       d, B, H, N, c,
		       path == 2 ? "mma" : path ? "sm90s" : "sm90", t,
		       fl / (t * 1e-3) / 1e12,
		       path < 2 && attn_sm90_launches == before ?
		       " (NOT the sm90 kernel)" : "");
	}
	unsetenv("ASAM_CUDA_SM90");
	asam_cuda_free(gc_dev, q); asam_cuda_free(gc_dev, k);
	asam_cuda_free(gc_dev, v); asam_cuda_free(gc_dev, o);
	asam_cuda_free(gc_dev, lse);
	return ret;
}

int main(int argc, char **argv)
{
	unsigned long before;
	int dt, d, g, c, x = 0;

	ksft_print_header();
	gpu_case_setup();
	if (gc_dev->cc_major != 9 || gc_dev->cc_minor != 0) {
		gpu_case_teardown();
		ksft_exit_skip("sm_%d%d: the wgmma forward is for sm_90\n",
			       gc_dev->cc_major, gc_dev->cc_minor);
	}
	if (argc > 1 && !strcmp(argv[1], "bench")) {
		x = bench();
		gpu_case_teardown();
		return x ? 1 : 0;
	}
	setenv("ASAM_CUDA_SM90", "1", 0);
	before = attn_sm90_launches;
	ksft_set_plan(16 + 10 + 24 + NCOLS + 1);
	for (dt = 0; dt < 2; dt++)
	for (d = 64; d <= 128; d += 64)
	for (g = 0; g < 2; g++)
	for (c = 0; c < 2; c++, x++)
		one(dt, d, g, c, 2, 4, x & 1 ? 2 : 4, 200 + 37 * c + 8 * x,
		    333 - 100 * c + 5 * x, x & 2, false);
	one(1, 128, ASAM_GATE_DENSE, 0, 1, 2, 1, 1, 1, false, false);
	one(0, 64, ASAM_GATE_SPARSE, 1, 1, 2, 2, 1, 1, true, false);
	one(1, 128, ASAM_GATE_DENSE, 1, 2, 2, 1, 1000, 700, true, false);
	one(1, 64, ASAM_GATE_SPARSE, 1, 1, 2, 1, 300, 129, false, false);
	one(0, 128, ASAM_GATE_DENSE, 0, 1, 4, 1, 128, 256, false, false);
	one(1, 128, ASAM_GATE_SPARSE, 0, 1, 2, 2, 129, 4096, false, false);
	one(1, 128, ASAM_GATE_DENSE, 1, 1, 1, 1, 4096, 4096, false, true);
	one(0, 64, ASAM_GATE_DENSE, 1, 1, 1, 1, 4000, 4096, true, true);
	/*
	 * Q of deviation 8 (scores of deviation ~8, ~11 in log2 units): a
	 * row's maximum keeps rising past the forward's RESCALE_SLACK over
	 * the tiles, so the rescale runs after the first tile too
	 */
	one_amp(1, 128, ASAM_GATE_SPARSE, 0, 1, 2, 1, 200, 2000, false, false,
		8);
	one_amp(0, 64, ASAM_GATE_DENSE, 1, 2, 2, 2, 330, 1200, true, false,
		8);
	/*
	 * Patterns: windows 128 (the peers' radius 64: three of a half's
	 * four tiles), 37 (partial tiles only) and 1000; RANDOM 128 and 200
	 * keys a row (blocks of 64, drawn per 64-row group = warpgroup).
	 */
	for (x = 0; x < 24; x++) {
		int kind = x < 14 ? ASAM_PATTERN_LOCAL : ASAM_PATTERN_RANDOM;
		int w = kind == ASAM_PATTERN_LOCAL ?
			(x % 3 == 0 ? 128 : x % 3 == 1 ? 37 : 1000) :
			(x & 1 ? 200 : 128);
		static const int gates[] = { ASAM_GATE_SPARSE, ASAM_GATE_HARD,
					     ASAM_GATE_SOFT, ASAM_GATE_DENSE };

		pat_one(kind, w, x & 1, x % 5 == 1 ? 64 : 128, gates[x & 3],
			(x >> 2) & 1, 2, 4, x % 3 ? 4 : 2,
			x == 20 ? 2048 : 260 + 61 * (x % 7),
			x == 20 ? 2048 : 260 + 61 * (x % 7) - 40 * (x % 2),
			x % 4 == 3);
	}
	/* STRIDED, HIERARCHICAL: the band's list, then the column keys */
	cols_cases();
	ksft_test_result(attn_sm90_launches - before == (unsigned long)ncases,
			 "the wgmma kernel ran %lu times for %d cases\n",
			 attn_sm90_launches - before, ncases);
	gpu_case_teardown();
	ksft_finished();
}
