// SPDX-License-Identifier: MIT
/*
 * asam_cluster_update (SPEC 3.2) against an online k-means step written
 * here: assignments by normalised cosine (ties to the lowest index), the
 * mean of the normalised vectors per cluster, decay mixing, clusters with
 * nothing assigned left alone, and bit-identical repeats.
 */
#include <errno.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "../lib/kselftest.h"
#include "../lib/testutil.h"

#define B 2
#define HQ 2
#define HKV 1
#define N 50
#define D 6
#define C 5

static void expected(const struct tt *q, const struct tt *k,
		     const struct tt *mu, double decay, struct tt *out)
{
	double sum[HQ][C][D] = { { { 0 } } };
	int cnt[HQ][C] = { { 0 } };
	int h, b, t, c, e, pass;

	for (h = 0; h < HQ; h++)
		for (b = 0; b < B; b++)
			for (pass = 0; pass < 2; pass++)
				for (t = 0; t < N; t++) {
					const struct tt *x = pass ? k : q;
					int hx = pass ? h / (HQ / HKV) : h;
					int64_t xo = ((int64_t)(b * (pass ? HKV : HQ) + hx) * N + t) * D;
					double best = -INFINITY, xn = 0;
					int bc = 0;

					for (e = 0; e < D; e++)
						xn += tt_get(x, xo + e) * tt_get(x, xo + e);
					xn = fmax(sqrt(xn), 1e-12);
					for (c = 0; c < C; c++) {
						double dot = 0, mn = 0;

						for (e = 0; e < D; e++) {
							double m = tt_get(mu, (h * C + c) * D + e);

							dot += m * tt_get(x, xo + e);
							mn += m * m;
						}
						dot /= xn * fmax(sqrt(mn), 1e-12);
						if (dot > best)
							best = dot, bc = c;
					}
					cnt[h][bc]++;
					for (e = 0; e < D; e++)
						sum[h][bc][e] += tt_get(x, xo + e) / xn;
				}
	for (h = 0; h < HQ; h++)
		for (c = 0; c < C; c++)
			for (e = 0; e < D; e++) {
				int64_t o = (h * C + c) * D + e;
				double m = tt_get(mu, o);

				tt_set(out, o, cnt[h][c] ?
					       decay * m + (1 - decay) *
					       sum[h][c][e] / cnt[h][c] : m);
			}
}

int main(void)
{
	int64_t cs[3] = { HQ, C, D };
	struct tt *q = tt_new4(TT_F32, B, HQ, N, D), *k = tt_new4(TT_F32, B, HKV, N, D);
	struct tt *mu = tt_new(TT_F32, 3, cs), *mu2 = tt_new(TT_F32, 3, cs);
	struct tt *want = tt_new(TT_F64, 3, cs), *orig = tt_new(TT_F32, 3, cs);
	struct asam_pattern pat;
	struct asam_ctx *ctx;
	double err;
	int ret, e;
	bool untouched = true;

	ksft_print_header();
	if (asam_ctx_create(NULL, &ctx))
		ksft_exit_skip("no context: %s\n", asam_last_error());
	asam_pattern_init(&pat, ASAM_PATTERN_CLUSTERED);
	pat.num_clusters = C;
	pat.centroids = &mu->dl;
	tt_fill_randn(q, 1);
	tt_fill_randn(k, 1);
	tt_fill_randn(mu, 1);
	/* cluster 4 of head 0 duplicates cluster 0: every tie goes to the
	 * lowest index, so nothing is assigned to 4 and it must not move */
	for (e = 0; e < D; e++)
		tt_set(mu, (0 * C + 4) * D + e, tt_get(mu, e));
	tt_copy(orig, mu);
	tt_copy(mu2, mu);

	ret = asam_cluster_update(ctx, &pat, &q->dl, &k->dl, 0.9f);
	if (ret == -EOPNOTSUPP)
		ksft_exit_skip("CLUSTERED not built\n");
	expected(q, k, orig, 0.9f, want);
	err = tt_rel_err(mu, want);
	ksft_test_result(!ret && err < 1e-6,
			 "online k-means step vs independent: rel err %.1e\n", err);
	for (e = 0; e < D; e++)
		untouched &= tt_get(mu, 4 * D + e) == tt_get(orig, 4 * D + e);
	ksft_test_result(untouched && tt_get(mu, 0) != tt_get(orig, 0),
			 "ties go to the lowest cluster; an empty cluster is unchanged\n");

	pat.centroids = &mu2->dl;
	asam_cluster_update(ctx, &pat, &q->dl, &k->dl, 0.9f);
	ksft_test_result(!memcmp(mu->buf, mu2->buf, mu->bytes),
			 "deterministic: two updates of equal inputs are bit-identical\n");

	tt_copy(mu2, orig);
	ret = asam_cluster_update(ctx, &pat, &q->dl, &k->dl, 1.0f);
	ksft_test_result(ret == -EINVAL && !memcmp(mu2->buf, orig->buf, mu2->bytes),
			 "decay 1.0 refused, centroids untouched: \"%s\"\n",
			 asam_last_error());
	ret = asam_cluster_update(ctx, &pat, &q->dl, &k->dl, NAN);
	ksft_test_result(ret == -EINVAL, "decay NaN refused\n");

	asam_ctx_destroy(ctx);
	tt_free(q), tt_free(k), tt_free(mu), tt_free(mu2), tt_free(want);
	tt_free(orig);
	ksft_finished();
}
