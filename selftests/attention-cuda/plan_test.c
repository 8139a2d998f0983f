// SPDX-License-Identifier: MIT
/*
 * The CUDA kernels' key-tile lists (arch/cuda/attn_plan.c) against a
 * brute-force walk over every (query, key) pair of every tile, with the
 * pattern predicates written here from SPEC 3: a tile is listed iff some
 * pair in it is allowed, "full" iff every pair is, and a RANDOM entry's
 * group bits say exactly which 64-query groups draw the block.  Pure host
 * code: runs on machines without a GPU.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "../../arch/cuda/attn_plan.c"

#include "../lib/kselftest.h"
#include "../lib/testutil.h"

static bool allowed(const struct asam_pat *pat, int h, int64_t i, int64_t j,
		    int Nq, int Nk)
{
	int64_t dl = i + Nk - Nq - j;

	if (pat->kind == ASAM_PATTERN_LOCAL)
		return dl <= pat->radius && -dl <= pat->radius;
	return tt_random_block_chosen(pat->seed, pat->r, h, i / 64, j / 64,
				      (Nk + 63) / 64);
}

/* 0 when the plan matches brute force, else a description in @why */
static int check(const struct asam_pat *pat, int Hq, int Nq, int Nk, int bm,
		 int bn, char *why, size_t len)
{
	struct attn_plan pl;
	int nkt = (Nk + bn - 1) / bn, h, t, kt, ret;

	ret = attn_plan_build(&pl, pat, Hq, Nq, Nk, bm, bn);
	if (ret) {
		snprintf(why, len, "build: %d %s", ret, asam_last_error());
		return -1;
	}
	for (h = 0; h < Hq; h++) {
		int hp = pl.nh > 1 ? h : 0;

		for (t = 0; t < pl.nqt; t++) {
			const int *row = pl.list + pl.off[hp * pl.nqt + t];
			int n = pl.off[hp * pl.nqt + t + 1] -
				pl.off[hp * pl.nqt + t], x = 0;

			for (kt = 0; kt < nkt; kt++) {
				int any = 0, all = 1, gany[2] = { 0, 0 };
				int64_t i, j;

				for (i = (int64_t)t * bm; i < (int64_t)(t + 1) * bm &&
				     i < Nq; i++)
					for (j = (int64_t)kt * bn;
					     j < (int64_t)(kt + 1) * bn && j < Nk;
					     j++) {
						bool a = allowed(pat, h, i, j,
								 Nq, Nk);

						any |= a;
						all &= a;
						if (a)
							gany[(i - t * bm) / 64 & 1] = 1;
					}
				if (!any) {
					if (x < n && ATTN_E_TILE(row[x]) == kt)
						goto bad;
					continue;
				}
				if (x >= n || ATTN_E_TILE(row[x]) != kt)
					goto bad;
				if (!!(row[x] & ATTN_E_FULL) != all)
					goto bad;
				if (pat->kind == ASAM_PATTERN_RANDOM &&
				    (ATTN_E_GROUP(row[x], 0) != gany[0] ||
				     ATTN_E_GROUP(row[x], 1) != gany[1]))
					goto bad;
				x++;
				continue;
bad:
				snprintf(why, len,
					 "h %d qtile %d ktile %d: any %d all %d entry %#x",
					 h, t, kt, any, all,
					 x < n ? row[x] : -1);
				attn_plan_free(&pl);
				return -1;
			}
			if (x != n) {
				snprintf(why, len, "h %d qtile %d: %d extra entries",
					 h, t, n - x);
				attn_plan_free(&pl);
				return -1;
			}
		}
	}
	attn_plan_free(&pl);
	return 0;
}

int main(void)
{
	static const int sz[][2] = {
		{ 1, 1 }, { 100, 100 }, { 257, 129 }, { 77, 600 },
		{ 1000, 999 }, { 2048, 2048 }, { 300, 4096 },
	};
	static const int tiles[][2] = { { 128, 64 }, { 64, 64 } };
	int ns = sizeof(sz) / sizeof(sz[0]), s, t, w;
	char why[256];

	ksft_print_header();
	ksft_set_plan(ns * 2 * 4 + 1);
	for (s = 0; s < ns; s++) {
		for (t = 0; t < 2; t++) {
			for (w = 0; w < 2; w++) {
				/* LOCAL: the default window, and a random one */
				struct asam_pat pat = {
					.kind = ASAM_PATTERN_LOCAL,
					.radius = w ? 1 + (int)(tt_uniform() * 300) :
						  64,
				};
				int ret = check(&pat, 1, sz[s][0], sz[s][1],
						tiles[t][0], tiles[t][1], why,
						sizeof(why));

				ksft_test_result(!ret, "local W/2=%d Nq %d Nk %d tile %dx%d %s\n",
						 pat.radius, sz[s][0], sz[s][1],
						 tiles[t][0], tiles[t][1],
						 ret ? why : "");
			}
			for (w = 0; w < 2; w++) {
				struct asam_pat pat = {
					.kind = ASAM_PATTERN_RANDOM,
					.r = w ? 1 + (int)(tt_uniform() * 400) : 128,
					.seed = w ? (uint64_t)(tt_uniform() * 1e9) : 42,
				};
				int ret = check(&pat, 3, sz[s][0], sz[s][1],
						tiles[t][0], tiles[t][1], why,
						sizeof(why));

				ksft_test_result(!ret, "random r=%d seed %llu Nq %d Nk %d tile %dx%d %s\n",
						 pat.r, (unsigned long long)pat.seed,
						 sz[s][0], sz[s][1], tiles[t][0],
						 tiles[t][1], ret ? why : "");
			}
		}
	}
	{
		struct asam_pat pat = { .kind = ASAM_PATTERN_RANDOM, .r = 128 };
		int ret = attn_plan_build(&(struct attn_plan){ 0 }, &pat, 1,
					  100, 100, 128, 32);

		ksft_test_result(ret == -EINVAL && strstr(asam_last_error(), "RANDOM"),
				 "random refuses a key tile other than the 64-key block\n");
	}
	ksft_finished();
}
