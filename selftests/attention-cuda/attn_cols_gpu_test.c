// SPDX-License-Identifier: MIT
/*
 * STRIDED and HIERARCHICAL on the CUDA kernels (band + gathered columns)
 * through the public API against the fp64 reference: every gate mode,
 * causal, GQA, per-batch lengths, Nq != Nk, lengths off the tile, fp16 and
 * bf16, d 64 and 128, non-default strides, per-head hierarchical weights
 * (columns some heads drop), up to 4096 tokens.  Forward O and lse, dQ,
 * dK, dV, dg, and the backward bit-identical run to run where it is
 * deterministic (with ASAM_F_DETERMINISTIC, or SOFT).  On an sm_90 card
 * the SPARSE gate's backward without the flag must have run on wgmma
 * (attn_bwd_sm90.cu's band and column kernels).  SKIP without a GPU.
 * ASAM_TEST_SHARD=k/n runs every n-th case from the k-th.
 */
#include <stdlib.h>
#include <string.h>

#include "gpu_case.h"
#include "../../arch/cuda/attn_sm90.h"

#define MAX_CASES 48

static struct gpu_case cases[MAX_CASES];
static int ncases;

static bool env_off(const char *name)
{
	const char *s = getenv(name);

	return s && !strcmp(s, "0");
}

static void one(const struct asam_pattern *pt, int dt16, int d, int gate,
		int causal, int B, int Hq, int Hkv, int Nq, int Nk, bool lens,
		unsigned int flags)
{
	/*
	 * Without the flag the DENSE gate runs the dense backward and the
	 * SPARSE one (on Hopper) the wgmma kernels: atomics, no bit check
	 */
	bool nd = !(flags & ASAM_F_DETERMINISTIC);
	struct gpu_case c = { .pat = pt, .pat_ref = pt, .dt16 = dt16, .d = d,
			      .gate = gate, .causal = causal, .B = B,
			      .Hq = Hq, .Hkv = Hkv, .Nq = Nq, .Nk = Nk,
			      .lens = lens, .flags = flags,
			      .nondet_ok = nd && (gate == ASAM_GATE_DENSE ||
						  gate == ASAM_GATE_SPARSE) };

	if (ncases < MAX_CASES)
		cases[ncases++] = c;
}

/* the wgmma backward's launches for @c (gpu_case_run() runs it twice) */
static unsigned long sm90_expected(const struct gpu_case *c)
{
	if (gc_dev->cc_major != 9 || gc_dev->cc_minor != 0 ||
	    (c->flags & ASAM_F_DETERMINISTIC) ||
	    c->gate != ASAM_GATE_SPARSE || gpu_case_skips(c) ||
	    env_off("ASAM_CUDA_SM90") || env_off("ASAM_CUDA_SM90_BWD") ||
	    env_off("ASAM_CUDA_BWD_ND"))
		return 0;
	return 2;
}

int main(void)
{
	const unsigned int det = ASAM_F_DETERMINISTIC;
	struct asam_pattern st, hi, st2, hw;
	int g, c;

	gc_cols_patterns(&st, &hi, &st2, &hw);
	for (g = 0; g < 4; g++)
		for (c = 0; c < 2; c++) {
			one(&st, (g + c) & 1, (g + c) & 1 ? 64 : 128, g, c, 2,
			    4, 2, 200 + 37 * c, 333 - 100 * c, (g + c) & 1, 0);
			one(&hi, (g + c + 1) & 1, g & 1 ? 128 : 64, g, c, 2,
			    4, 2, 333 - 100 * c, 200 + 37 * c, g & 1, 0);
		}
	/* the deterministic kernels: each pattern with and without causal */
	for (g = 0; g < 3; g++)
		for (c = 0; c < 2; c++) {
			one(&hw, c, 128, g, c, 1, 4, 2, 700, 700, false,
			    c ? 0 : det);
			one(&st2, !c, 64, g, c, 2, 2, 2, 301, 450, true,
			    c ? det : 0);
		}
	one(&hw, 1, 64, ASAM_GATE_HARD, 1, 2, 4, 4, 500, 500, true, 0);
	/* long rows: many column tiles (the reference is single-threaded) */
	one(&st, 1, 128, ASAM_GATE_SPARSE, 1, 1, 1, 1, 4096, 4096, false, 0);
	one(&hi, 0, 128, ASAM_GATE_SOFT, 1, 1, 1, 1, 4096, 4096, false, 0);
	one(&hw, 1, 64, ASAM_GATE_SPARSE, 0, 1, 2, 1, 1500, 4100, false, 0);
	one(&st, 0, 64, ASAM_GATE_SOFT, 1, 1, 4, 1, 1, 1, true, 0);
	one(&hi, 1, 128, ASAM_GATE_SPARSE, 1, 1, 2, 2, 1030, 1030, true, det);
	/* heads that vote, GQA, a column walk of many query tiles */
	one(&hw, 0, 128, ASAM_GATE_SPARSE, 1, 1, 4, 2, 2100, 2100, true, 0);

	gc_run_shard(cases, ncases, sm90_expected);
}
