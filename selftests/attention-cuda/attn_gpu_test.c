// SPDX-License-Identifier: MIT
/*
 * The CUDA attention kernels through the public API, against the fp64
 * reference on host copies: DENSE, LOCAL and RANDOM × every gate mode ×
 * causal, fp16 and bf16, d 64 and 128, GQA, per-batch lengths, Nq != Nk,
 * lengths that are not multiples of the tile.  Forward output and
 * log-sum-exps, then dQ, dK, dV and dg, and the backward run twice must be
 * bit-identical.  SKIP without a GPU.
 */
#include "gpu_case.h"

static void one(int dt16, int d, int pat, int gate, int causal, int B,
		int Hq, int Hkv, int Nq, int Nk, bool lens)
{
	struct gpu_case c = { .kind = pat, .dt16 = dt16, .d = d, .gate = gate,
			      .causal = causal, .B = B, .Hq = Hq, .Hkv = Hkv,
			      .Nq = Nq, .Nk = Nk, .lens = lens,
			      .flags = ASAM_F_DETERMINISTIC };

	gpu_case_run(&c);
}

int main(void)
{
	static const int pats[] = { ASAM_PATTERN_DENSE, ASAM_PATTERN_LOCAL,
				    ASAM_PATTERN_RANDOM };
	int p, g, c;

	ksft_print_header();
	gpu_case_setup();
	ksft_set_plan(3 * 4 * 2 + 3);
	for (p = 0; p < 3; p++)
		for (g = 0; g < 4; g++)
			for (c = 0; c < 2; c++)
				one((p + g + c) & 1, (p + g) & 1 ? 64 : 128,
				    pats[p], g, c, 2, 4, 2, 200 + 37 * c,
				    333 - 100 * c, (g + c) & 1);
	one(1, 128, ASAM_PATTERN_LOCAL, ASAM_GATE_SOFT, 1, 1, 4, 1, 1, 1, true);
	one(1, 128, ASAM_PATTERN_RANDOM, ASAM_GATE_SPARSE, 0, 1, 2, 2, 2048,
	    2048, false);
	one(0, 64, ASAM_PATTERN_DENSE, ASAM_GATE_DENSE, 1, 1, 2, 1, 1000, 700,
	    true);
	gpu_case_teardown();
	ksft_finished();
}
