// SPDX-License-Identifier: MIT
/*
 * STRIDED and HIERARCHICAL on the CUDA kernels (band + gathered columns)
 * through the public API against the fp64 reference: every gate mode,
 * causal, GQA, per-batch lengths, Nq != Nk, lengths off the tile, fp16 and
 * bf16, d 64 and 128, non-default strides, per-head hierarchical weights
 * (columns some heads drop), up to 4096 tokens.  Forward O and lse, dQ,
 * dK, dV, dg, and the backward bit-identical run to run.  SKIP without a
 * GPU.
 */
#include "gpu_case.h"

static void one(const struct asam_pattern *pt, int dt16, int d, int gate,
		int causal, int B, int Hq, int Hkv, int Nq, int Nk, bool lens)
{
	/* the DENSE gate runs the dense backward: atomics without the flag */
	struct gpu_case c = { .pat = pt, .pat_ref = pt, .dt16 = dt16, .d = d,
			      .gate = gate, .causal = causal, .B = B,
			      .Hq = Hq, .Hkv = Hkv, .Nq = Nq, .Nk = Nk,
			      .lens = lens,
			      .nondet_ok = gate == ASAM_GATE_DENSE };

	gpu_case_run(&c);
}

int main(void)
{
	struct asam_pattern st, hi, st2, hw;
	int g, c;

	ksft_print_header();
	gpu_case_setup();
	gc_cols_patterns(&st, &hi, &st2, &hw);
	ksft_set_plan(2 * 4 * 2 + 2 * 3 * 2 + 6);
	for (g = 0; g < 4; g++)
		for (c = 0; c < 2; c++) {
			one(&st, (g + c) & 1, (g + c) & 1 ? 64 : 128, g, c, 2,
			    4, 2, 200 + 37 * c, 333 - 100 * c, (g + c) & 1);
			one(&hi, (g + c + 1) & 1, g & 1 ? 128 : 64, g, c, 2,
			    4, 2, 333 - 100 * c, 200 + 37 * c, g & 1);
		}
	for (g = 0; g < 3; g++)
		for (c = 0; c < 2; c++) {
			one(&hw, c, 128, g, c, 1, 4, 2, 700, 700, false);
			one(&st2, !c, 64, g, c, 2, 2, 2, 301, 450, true);
		}
	one(&hw, 1, 64, ASAM_GATE_HARD, 1, 2, 4, 4, 500, 500, true);
	/* long rows: many column tiles (the reference is single-threaded) */
	one(&st, 1, 128, ASAM_GATE_SPARSE, 1, 1, 1, 1, 4096, 4096, false);
	one(&hi, 0, 128, ASAM_GATE_SOFT, 1, 1, 1, 1, 4096, 4096, false);
	one(&hw, 1, 64, ASAM_GATE_SPARSE, 0, 1, 2, 1, 1500, 4100, false);
	one(&st, 0, 64, ASAM_GATE_SOFT, 1, 1, 4, 1, 1, 1, true);
	one(&hi, 1, 128, ASAM_GATE_SPARSE, 1, 1, 2, 2, 1030, 1030, true);
	gpu_case_teardown();
	ksft_finished();
}
