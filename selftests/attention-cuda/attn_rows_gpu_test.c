// SPDX-License-Identifier: MIT
/*
 * RANDOM_ROWS and USER_INDEX on the GPU (arch/cuda/attn_rows.c) through
 * the public API, against the fp64 reference on host copies: every gate
 * mode x causal, fp16 and bf16, d 64 and 128, GQA, per-batch lengths,
 * Nq != Nk, N from 1 to 2048; USER_INDEX with -1 entries, repeated keys
 * and rows that name nothing.  Forward output and log-sum-exps, dQ, dK,
 * dV, dg, and the backward run twice must be bit-identical (with and
 * without ASAM_F_DETERMINISTIC: the kernels use no atomics for sums).
 * SKIP without a GPU.
 */
#include "gpu_case.h"

/*
 * An index tensor [B, Hkv, Nq, r]: random keys, about one entry in six
 * -1, one in six a repeat of an earlier slot, every 7th row empty.
 */
static void make_index(struct gt *ix, int B, int Hkv, int Nq, int Nk, int r)
{
	int64_t shape[4] = { B, Hkv, Nq, r }, n, e;
	struct tt *h = tt_new(TT_I32, 4, shape);
	int32_t *x = h->buf;

	n = (int64_t)B * Hkv * Nq;
	for (e = 0; e < n; e++) {
		int32_t *row = x + e * r;
		int t;

		for (t = 0; t < r; t++) {
			double u = tt_uniform();

			if (e % 7 == 3 || u < 1.0 / 6)
				row[t] = -1;
			else if (u < 2.0 / 6 && t > 0)
				row[t] = row[(int)(tt_uniform() * t)];
			else
				row[t] = (int32_t)(tt_uniform() * Nk);
		}
	}
	gt_up(ix, h);
}

static void one(int kind, int dt16, int d, int gate, int causal, int B,
		int Hq, int Hkv, int Nq, int Nk, bool lens, int r,
		unsigned int flags)
{
	/* the DENSE gate runs the dense backward: atomics without the flag */
	struct gpu_case c = { .kind = kind, .dt16 = dt16, .d = d,
			      .gate = gate, .causal = causal, .B = B,
			      .Hq = Hq, .Hkv = Hkv, .Nq = Nq, .Nk = Nk,
			      .lens = lens, .flags = flags,
			      .nondet_ok = gate == ASAM_GATE_DENSE };
	struct asam_pattern pt, pr;
	struct gt ix;

	asam_pattern_init(&pt, kind);
	if (kind == ASAM_PATTERN_RANDOM_ROWS) {
		pt.keys_per_row = r;
		pt.seed = 7 + Nq;
		c.pat = &pt;
		gpu_case_run(&c);
		return;
	}
	make_index(&ix, B, Hkv, Nq, Nk, r);
	pt.index = &ix.dl;
	pr = pt;
	pr.index = &ix.h->dl;
	c.pat = &pt;
	c.pat_ref = &pr;
	gpu_case_run(&c);
	gt_free(&ix);
}

int main(void)
{
	static const int kinds[] = { ASAM_PATTERN_RANDOM_ROWS,
				     ASAM_PATTERN_USER_INDEX };
	int k, g, c;

	ksft_print_header();
	gpu_case_setup();
	ksft_set_plan(2 * 4 * 2 * 2 + 10);
	/* the grid: kind x gate x causal x (GQA or not), both dtypes/dims */
	for (k = 0; k < 2; k++)
		for (g = 0; g < 4; g++)
			for (c = 0; c < 2; c++) {
				int x = k + g + c;

				one(kinds[k], x & 1, (k + g) & 1 ? 64 : 128, g,
				    c, 2, 4, 2, 300 + 37 * c, 333 - 90 * c,
				    (g + c) & 1, 40 + 24 * k,
				    c ? ASAM_F_DETERMINISTIC : 0);
				one(kinds[k], !(x & 1), (k + g) & 1 ? 128 : 64,
				    g, c, 1, 8, 8, 257, 257, !((g + c) & 1),
				    128, 0);
			}
	/* edges: one token, r past Nk, GQA 4 and 8, long rows, Nq > Nk */
	for (k = 0; k < 2; k++) {
		one(kinds[k], 1, 128, ASAM_GATE_SOFT, 1, 1, 4, 1, 1, 1, true,
		    16, 0);
		one(kinds[k], 0, 64, ASAM_GATE_SPARSE, 0, 2, 8, 1, 100, 60,
		    false, 200, ASAM_F_DETERMINISTIC);
		one(kinds[k], 1, 128, ASAM_GATE_SPARSE, 1, 1, 2, 2, 2048,
		    2048, false, 128, ASAM_F_DETERMINISTIC);
		one(kinds[k], 0, 128, ASAM_GATE_SOFT, 0, 1, 4, 4, 700, 500,
		    true, 96, 0);
		one(kinds[k], 1, 64, ASAM_GATE_HARD, 1, 2, 6, 3, 500, 1000,
		    false, 64, 0);
	}
	gpu_case_teardown();
	ksft_finished();
}
