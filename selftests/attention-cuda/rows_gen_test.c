// SPDX-License-Identifier: MIT
/*
 * RANDOM_ROWS' host lists for the GPU (arch/cuda/attn_rows_gen.c) against
 * the pattern's own definition (runtime/pattern.c, asam_pat_row): every
 * row holds exactly the keys the predicate allows, ascending, and the
 * transposed lists name exactly the rows that hold each key, ascending.
 * Pure host code: runs on machines without a GPU.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <internal/err.h>
#include <internal/pattern.h>

#include "../../arch/cuda/attn_rows.h"

#include "../lib/kselftest.h"

static int check(int Hq, int Nq, int Nk, int r, uint64_t seed, char *why,
		 size_t len)
{
	struct asam_problem p = { .B = 1, .Hq = Hq, .Hkv = Hq, .Nq = Nq,
				  .Nk = Nk, .d = 64 };
	int rr = r < Nk ? r : Nk, h, ret = 0;
	size_t nr = (size_t)Hq * Nq * rr;
	size_t nt = (size_t)Hq * (Nk + 1);
	int32_t *buf = malloc(sizeof(int32_t) * (2 * nr + nt));
	int32_t *toff = buf + nr, *tl = toff + (size_t)Hq * (Nk + 1);
	uint8_t *row = malloc(Nk);
	struct asam_pat_plan *pl;
	int64_t i, j, t;

	p.pat.kind = ASAM_PATTERN_RANDOM_ROWS;
	p.pat.r = r;
	p.pat.seed = seed;
	pl = asam_pat_plan_create(&p);
	if (!buf || !row || IS_ERR(pl) || attn_rows_gen(&p, rr, buf)) {
		snprintf(why, len, "setup failed");
		ret = -1;
		goto out;
	}
	for (h = 0; h < Hq && !ret; h++) {
		const int32_t *rows = buf + (size_t)h * Nq * rr;
		const int32_t *to = toff + (size_t)h * (Nk + 1);

		asam_pat_plan_bh(pl, 0, h);
		for (i = 0; i < Nq && !ret; i++) {
			int n = 0;

			asam_pat_row(pl, i, row);
			for (t = 0; t < rr; t++) {
				j = rows[i * rr + t];
				if (j < 0 || j >= Nk || !row[j] ||
				    (t && j <= rows[i * rr + t - 1])) {
					snprintf(why, len, "h %d row %ld slot %ld: key %ld",
						 h, (long)i, (long)t, (long)j);
					ret = -1;
					break;
				}
			}
			for (j = 0; j < Nk; j++)
				n += row[j];
			if (!ret && n != rr) {
				snprintf(why, len, "h %d row %ld: %d keys allowed, %d listed",
					 h, (long)i, n, rr);
				ret = -1;
			}
		}
		if (to[0] != (int64_t)h * Nq * rr ||
		    to[Nk] != (int64_t)(h + 1) * Nq * rr) {
			snprintf(why, len, "h %d: offsets %d..%d", h, to[0],
				 to[Nk]);
			ret = -1;
		}
		for (j = 0; j < Nk && !ret; j++)
			for (t = to[j]; t < to[j + 1]; t++) {
				int64_t ii = tl[t];
				bool found = false;
				int u;

				for (u = 0; u < rr; u++)
					found |= rows[ii * rr + u] == j;
				if (!found || (t > to[j] && ii <= tl[t - 1])) {
					snprintf(why, len, "h %d key %ld: row %ld",
						 h, (long)j, (long)ii);
					ret = -1;
					break;
				}
			}
	}
out:
	if (!IS_ERR(pl))
		asam_pat_plan_destroy(pl);
	free(buf);
	free(row);
	return ret;
}

int main(void)
{
	static const int sh[][5] = {	/* Hq, Nq, Nk, r, seed */
		{ 1, 1, 1, 128, 42 }, { 2, 5, 3, 128, 42 },
		{ 3, 300, 300, 128, 42 }, { 4, 200, 333, 40, 1 },
		{ 2, 400, 129, 128, 9 }, { 5, 64, 1000, 1, 77 },
		{ 1, 700, 700, 699, 3 }, { 2, 50, 2048, 128, 42 },
	};
	int i, n = (int)(sizeof(sh) / sizeof(sh[0]));
	char why[160];

	ksft_print_header();
	ksft_set_plan(n);
	for (i = 0; i < n; i++) {
		why[0] = 0;
		ksft_test_result(!check(sh[i][0], sh[i][1], sh[i][2], sh[i][3],
					(uint64_t)sh[i][4], why, sizeof(why)),
				 "random rows Hq %d Nq %d Nk %d r %d seed %d %s\n",
				 sh[i][0], sh[i][1], sh[i][2], sh[i][3],
				 sh[i][4], why);
	}
	ksft_finished();
}
