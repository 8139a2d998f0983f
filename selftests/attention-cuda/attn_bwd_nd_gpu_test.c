// SPDX-License-Identifier: MIT
/*
 * The non-deterministic backward (jit/kernels/attn_bwd_nd.cuh: dK, dV and
 * dQ in one kernel, dQ summed with atomic reductions) through the public
 * API without ASAM_F_DETERMINISTIC, against the fp64 reference: DENSE,
 * LOCAL and RANDOM x the SPARSE, DENSE and SOFT gates x causal, fp16 and
 * bf16, d 64 and 128, GQA, per-batch lengths, Nq != Nk, lengths that are
 * not multiples of the 64-row tile.  Every gradient within SPEC's
 * tolerances; the bit-identical rerun is not asked for.  On an sm_90 card
 * the wgmma kernel (attn_bwd_sm90.cu) must have run each backward it
 * serves.  SKIP without a GPU.  ASAM_TEST_SHARD=k/n runs every n-th case
 * from the k-th.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "gpu_case.h"
#include "../../arch/cuda/attn_sm90.h"

#define MAX_CASES 64

static struct gpu_case cases[MAX_CASES];
static int ncases;

static void one(int dt16, int d, int pat, int gate, int causal, int B,
		int Hq, int Hkv, int Nq, int Nk, bool lens)
{
	struct gpu_case c = { .kind = pat, .dt16 = dt16, .d = d, .gate = gate,
			      .causal = causal, .B = B, .Hq = Hq, .Hkv = Hkv,
			      .Nq = Nq, .Nk = Nk, .lens = lens, .flags = 0,
			      .nondet_ok = true };

	if (ncases < MAX_CASES)
		cases[ncases++] = c;
}

static bool env_off(const char *name)
{
	const char *s = getenv(name);

	return s && !strcmp(s, "0");
}

/*
 * The backward calls of @c the wgmma kernel takes (gpu_case_run() runs
 * the backward twice): a walk without lists, or LOCAL's and RANDOM's
 * with the SPARSE gate, on sm_90 unless the environment turns it off.
 */
static unsigned long sm90_expected(const struct gpu_case *c)
{
	bool list = c->kind != ASAM_PATTERN_DENSE &&
		    c->gate != ASAM_GATE_DENSE;

	if (gc_dev->cc_major != 9 || gc_dev->cc_minor != 0 ||
	    env_off("ASAM_CUDA_SM90") || env_off("ASAM_CUDA_SM90_BWD") ||
	    env_off("ASAM_CUDA_BWD_ND") || gpu_case_skips(c))
		return 0;
	if (list && c->gate != ASAM_GATE_SPARSE)
		return 0;
	return 2;
}

int main(void)
{
	static const int pats[] = { ASAM_PATTERN_DENSE, ASAM_PATTERN_LOCAL,
				    ASAM_PATTERN_RANDOM };
	int p, g, c, dd;

	for (p = 0; p < 3; p++)
		for (g = 0; g < 3; g++)
			for (c = 0; c < 2; c++)
				for (dd = 0; dd < 2; dd++)
					one((p + g + c + dd) & 1,
					    dd ? 128 : 64, pats[p], g, c, 2,
					    4, (g + dd) & 1 ? 1 : 2,
					    193 + 37 * c + 64 * dd,
					    301 - 100 * c + 5 * dd,
					    (g + c + dd) & 1);
	/* one row; tile-exact lengths; many query tiles per key tile */
	one(1, 128, ASAM_PATTERN_LOCAL, ASAM_GATE_SOFT, 1, 1, 4, 1, 1, 1, true);
	one(0, 64, ASAM_PATTERN_DENSE, ASAM_GATE_DENSE, 0, 1, 2, 2, 256, 128,
	    false);
	one(1, 128, ASAM_PATTERN_RANDOM, ASAM_GATE_SPARSE, 0, 1, 2, 2, 1100,
	    1000, false);
	one(1, 128, ASAM_PATTERN_DENSE, ASAM_GATE_DENSE, 1, 1, 8, 2, 700, 1025,
	    true);

	gc_run_shard(cases, ncases, sm90_expected);
}
