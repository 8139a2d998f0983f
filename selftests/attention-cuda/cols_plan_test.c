// SPDX-License-Identifier: MIT
/*
 * The STRIDED / HIERARCHICAL decomposition of the CUDA kernels (arch/cuda/
 * attn_cols.c) against SPEC 3 pair by pair: for every head, query and key,
 * "in the band (delta <= R) and the kernels' predicate holds" or "beyond
 * the band, a listed column, and (when heads differ) its vote holds" must
 * be exactly the pattern, and never both; HIERARCHICAL's band through its
 * words by key residue (the kernels' path) where the host made them (and
 * it must for the scales 4, 16, 64).  Random strides, radii, scales and
 * per-head weights, Nq != Nk.  Pure host code: no GPU needed.
 */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "../../arch/cuda/attn_cols.c"

#include <internal/pattern.h>

#include "../lib/kselftest.h"
#include "../lib/testutil.h"

static bool spec_allows(const struct asam_pat *pat, int h, int64_t dl,
			int64_t j)
{
	if (pat->kind == ASAM_PATTERN_STRIDED)
		return dl <= pat->radius || j % pat->stride == 0;
	return asam_pat_hier_allowed(pat, h, dl, j);
}

static int check(const struct asam_pat *pat, int Hq, int Nq, int Nk,
		 char *why, size_t len)
{
	struct attn_cols c;
	int h, ret, x, *in;
	int64_t i, j;

	ret = attn_cols_build(&c, pat, Hq, Nk);
	if (ret) {
		snprintf(why, len, "build: %d %s", ret, asam_last_error());
		return -1;
	}
	in = calloc(Nk, sizeof(int));
	for (x = 0; x < c.ncol; x++) {
		if (c.col[x] < 0 || c.col[x] >= Nk ||
		    (x && c.col[x] <= c.col[x - 1])) {
			snprintf(why, len, "column %d = %d unsorted or out of range",
				 x, c.col[x]);
			ret = -1;
			goto out;
		}
		in[c.col[x]] = 1;
		/* the kernels compute column x as x * step when step is set */
		if (c.step && c.col[x] != (int64_t)x * c.step) {
			snprintf(why, len, "column %d = %d, not %d x step %d",
				 x, c.col[x], x, c.step);
			ret = -1;
			goto out;
		}
	}
	/* and step is set whenever the set is 0, s, 2s, ... (>= 2 keys) */
	if (!c.step && c.ncol >= 2 && c.col[0] == 0 && c.col[1] > 0) {
		for (x = 2; x < c.ncol; x++)
			if (c.col[x] != (int64_t)x * c.col[1])
				break;
		if (x == c.ncol) {
			snprintf(why, len, "arithmetic set (step %d) not flagged",
				 c.col[1]);
			ret = -1;
			goto out;
		}
	}
	if (pat->kind == ASAM_PATTERN_HIERARCHICAL && pat->nscales == 3 &&
	    pat->scales[0] == 4 && pat->scales[1] == 16 &&
	    pat->scales[2] == 64 && c.L != 64) {
		snprintf(why, len, "scales 4, 16, 64: band words of period %d, not 64",
			 c.L);
		ret = -1;
		goto out;
	}
	for (h = 0; h < Hq; h++)
		for (i = 0; i < Nq; i++)
			for (j = 0; j < Nk; j++) {
				int64_t dl = i + Nk - Nq - j;
				bool want, band, cols;

				dl = dl < 0 ? -dl : dl;
				want = spec_allows(pat, h, dl, j);
				band = dl <= c.R &&
				       (c.L ? (c.band[(size_t)h * c.L +
						      j % c.L] >> dl) & 1 :
					attn_cols_allows(&c, h, dl, j));
				cols = dl > c.R && in[j] &&
				       (!c.vote || attn_cols_allows(&c, h, dl, j));
				if (want == (band || cols))
					continue;
				snprintf(why, len, "h %d i %lld j %lld: spec %d band %d cols %d (R %d vote %d)",
					 h, (long long)i, (long long)j, want,
					 band, cols, c.R, c.vote);
				ret = -1;
				goto out;
			}
out:
	free(in);
	attn_cols_free(&c);
	return ret;
}

int main(void)
{
	static const int sz[][2] = { { 300, 300 }, { 200, 517 }, { 1, 129 } };
	float w[4 * 8];
	char why[256];
	int s, t, k, h;

	ksft_print_header();
	ksft_set_plan(3 * 4 + 2);
	for (s = 0; s < 3; s++) {
		for (t = 0; t < 4; t++) {
			struct asam_pat pat = { 0 };
			int ret, Hq = 4;

			if (t < 2) {
				pat.kind = ASAM_PATTERN_STRIDED;
				pat.stride = t ? 1 + (int)(tt_uniform() * 40) : 32;
				pat.radius = t ? (int)(tt_uniform() * 30) : 16;
			} else {
				pat.kind = ASAM_PATTERN_HIERARCHICAL;
				pat.nscales = t == 2 ? 3 : 1 + (int)(tt_uniform() * 5);
				for (k = 0; k < pat.nscales; k++)
					pat.scales[k] = t == 2 ? 4 << (2 * k) :
						1 + (int)(tt_uniform() * 70);
				if (t == 3) {
					/* softmax-ed random weights per head */
					for (h = 0; h < Hq; h++) {
						double sum = 0;

						for (k = 0; k < pat.nscales; k++)
							sum += w[h * pat.nscales + k] =
								(float)exp(3 * tt_uniform());
						for (k = 0; k < pat.nscales; k++)
							w[h * pat.nscales + k] /= sum;
					}
					pat.weights = w;
				}
			}
			ret = check(&pat, Hq, sz[s][0], sz[s][1], why,
				    sizeof(why));
			ksft_test_result(!ret, "%s Nq %d Nk %d %s\n",
					 t < 2 ? "strided" : "hierarchical",
					 sz[s][0], sz[s][1], ret ? why : "");
		}
	}
	{
		struct asam_pat pat = { .kind = ASAM_PATTERN_LOCAL };
		struct attn_cols c;

		ksft_test_result(attn_cols_build(&c, &pat, 1, 10) == -EINVAL,
				 "local has no columns\n");
	}
	{
		/* equal weights per head: no per-pair vote in column tiles */
		struct asam_pat pat = { .kind = ASAM_PATTERN_HIERARCHICAL,
					.nscales = 3, .scales = { 4, 16, 64 } };
		struct attn_cols c;
		int ret = attn_cols_build(&c, &pat, 2, 1000);

		ksft_test_result(!ret && !c.vote && c.R == 16 &&
				 c.ncol == (1000 + 15) / 16 && c.step == 16,
				 "uniform hierarchical: columns are the multiples of 16, R 16 (%d columns, step %d)\n",
				 c.ncol, c.step);
		attn_cols_free(&c);
	}
	ksft_finished();
}
