// SPDX-License-Identifier: MIT
/*
 * Every pattern's predicate (runtime/pattern.c) against an independent
 * brute-force enumeration written here from SPEC 3, for several lengths,
 * Nq != Nk, causal on and off; RANDOM_ROWS against rows of the original
 * (torch.manual_seed(42); successive torch.randperm(300)).
 */
#include <errno.h>
#include <inttypes.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <internal/compiler.h>
#include <internal/kconfig.h>
#include <internal/pattern.h>
#include <internal/validate.h>

#include "../lib/kselftest.h"
#include "../lib/testutil.h"

struct setup {
	struct tt *q, *k, *cent, *index;
	struct asam_pattern pat;
	struct asam_attn_params prm;
	struct asam_fwd_args args;
	struct asam_problem p;
	float weights[4 * ASAM_MAX_SCALES];
};

/* ---- independent predicates (SPEC 3, written without runtime/) ---- */

static double ncos(const struct tt *x, int64_t xoff, const struct tt *mu,
		   int64_t moff, int d)
{
	double xx = 0, mm = 0, xm = 0;
	int e;

	for (e = 0; e < d; e++) {
		double a = tt_get(x, xoff + e), b = tt_get(mu, moff + e);

		xx += a * a, mm += b * b, xm += a * b;
	}
	return xm / (fmax(sqrt(xx), 1e-12) * fmax(sqrt(mm), 1e-12));
}

static int brute_cluster(const struct setup *s, const struct tt *x, int b,
			 int hx, int h, int64_t t, double *soft)
{
	int64_t H = x->shape[1], N = x->shape[2], d = x->shape[3];
	int C = s->pat.num_clusters, c, best = 0;
	double cs[64], mx = -INFINITY, sum = 0;

	for (c = 0; c < C; c++) {
		cs[c] = ncos(x, ((b * H + hx) * N + t) * d, s->cent,
			     (h * C + c) * d, d);
		if (cs[c] > cs[best])
			best = c;
	}
	if (!soft)
		return best;
	for (c = 0; c < C; c++)
		mx = fmax(mx, cs[c] / fabs(s->pat.cluster_temp));
	for (c = 0; c < C; c++)
		sum += soft[c] = exp(cs[c] / fabs(s->pat.cluster_temp) - mx);
	for (c = 0; c < C; c++)
		soft[c] /= sum;
	return best;
}

static bool brute_allowed(const struct setup *s, int b, int h, int64_t i,
			  int64_t j)
{
	const struct asam_pattern *pat = &s->pat;
	int64_t Nq = s->q->shape[2], Nk = s->k->shape[2];
	int64_t pos = i + Nk - Nq, delta = pos > j ? pos - j : j - pos;
	int Hq = s->q->shape[1], Hkv = s->k->shape[1];
	double sum = 0, a[64], bb[64];
	int k, c;

	switch (pat->kind) {
	case ASAM_PATTERN_DENSE:
		return true;
	case ASAM_PATTERN_LOCAL:
		return delta <= pat->window / 2;
	case ASAM_PATTERN_STRIDED:
		return delta <= pat->radius || j % pat->stride == 0;
	case ASAM_PATTERN_HIERARCHICAL:
		if (!pat->scale_weights && pat->num_scales == 3 &&
		    pat->scales[0] == 4 && pat->scales[1] == 16 &&
		    pat->scales[2] == 64)	/* SPEC's closed form */
			return delta <= 4 || (delta <= 16 && j % 4 == 0) ||
			       j % 16 == 0;
		for (k = 0; k < pat->num_scales; k++)
			if (delta <= pat->scales[k] / 4 ||
			    j % pat->scales[k] == 0)
				sum += pat->scale_weights ?
				       pat->scale_weights[h * pat->num_scales + k] :
				       1.0 / pat->num_scales;
		return sum > 0.5;
	case ASAM_PATTERN_RANDOM:
		return tt_random_block_chosen(pat->seed, pat->keys_per_row,
					      h, i / 64, j / 64,
					      (Nk + 63) / 64);
	case ASAM_PATTERN_USER_INDEX: {
		int64_t r = s->index->shape[3], t, base;

		base = ((int64_t)(b * Hkv + h / (Hq / Hkv)) * Nq + i) * r;
		for (t = 0; t < r; t++)
			if (tt_get(s->index, base + t) == j)
				return true;
		return false;
	}
	case ASAM_PATTERN_CLUSTERED:
		if (pat->cluster_mode == ASAM_CLUSTER_ARGMAX)
			return brute_cluster(s, s->q, b, h, h, i, NULL) ==
			       brute_cluster(s, s->k, b, h / (Hq / Hkv), h, j,
					     NULL);
		brute_cluster(s, s->q, b, h, h, i, a);
		brute_cluster(s, s->k, b, h / (Hq / Hkv), h, j, bb);
		for (c = 0, sum = 0; c < pat->num_clusters; c++)
			sum += a[c] * bb[c];
		return sum > pat->cluster_threshold;
	default:
		return false;
	}
}

/* ---- setup through the public structs and the validator ---- */

static int make_setup(struct setup *s, enum asam_pattern_kind kind, int B,
		      int Hq, int Hkv, int Nq, int Nk, int d, bool causal)
{
	memset(s, 0, sizeof(*s));
	s->q = tt_new4(TT_F32, B, Hq, Nq, d);
	s->k = tt_new4(TT_F32, B, Hkv, Nk, d);
	tt_fill_randn(s->q, 1);
	tt_fill_randn(s->k, 1);
	asam_pattern_init(&s->pat, kind);
	if (kind == ASAM_PATTERN_CLUSTERED) {
		int64_t shape[3] = { Hq, 4, d };

		s->cent = tt_new(TT_F32, 3, shape);
		tt_fill_randn(s->cent, 1);
		s->pat.num_clusters = 4;
		s->pat.centroids = &s->cent->dl;
	}
	if (kind == ASAM_PATTERN_USER_INDEX) {
		int64_t shape[4] = { B, Hkv, Nq, 5 }, i;

		s->index = tt_new(TT_I32, 4, shape);
		for (i = 0; i < tt_numel(s->index); i++)
			tt_set(s->index, i, i % 5 == 4 ? -1 :
			       i % 5 == 3 ? tt_get(s->index, i - 1) :
			       (int)(tt_uniform() * Nk));
		s->pat.index = &s->index->dl;
	}
	s->prm = (struct asam_attn_params){ .sz = sizeof(s->prm),
					    .pattern = &s->pat,
					    .causal = causal };
	s->args = (struct asam_fwd_args){ .sz = sizeof(s->args),
					  .q = &s->q->dl, .k = &s->k->dl };
	return asam_problem_stats(&s->p, NULL, &s->prm, &s->args);
}

static void free_setup(struct setup *s)
{
	tt_free(s->q);
	tt_free(s->k);
	tt_free(s->cent);
	tt_free(s->index);
}

/* Compare every (b, h, i, j) and the stats totals with brute force. */
static void check_pattern(struct setup *s, const char *what)
{
	const struct asam_problem *p = &s->p;
	struct asam_pat_plan *pl = asam_pat_plan_create(p);
	struct asam_ctx *ctx = NULL;
	struct asam_pattern_stats st = { .sz = sizeof(st) };
	uint8_t *row = malloc(p->Nk);
	int64_t bad = 0, allowed = 0, masked = 0, i, j;
	int b, h, ret;

	for (b = 0; b < p->B; b++)
		for (h = 0; h < p->Hq; h++) {
			asam_pat_plan_bh(pl, b, h);
			for (i = 0; i < p->Nq; i++) {
				asam_pat_row(pl, i, row);
				for (j = 0; j < p->Nk; j++) {
					bool want = brute_allowed(s, b, h, i, j);
					bool in_mask = !p->causal ||
						       j <= i + p->Nk - p->Nq;

					bad += row[j] != want;
					masked += in_mask;
					allowed += in_mask && want;
				}
			}
		}
	asam_ctx_create(NULL, &ctx);
	ret = asam_pattern_stats(ctx, &s->prm, &s->args, &st);
	asam_ctx_destroy(ctx);
	ksft_test_result(!bad && !ret && (int64_t)st.allowed == allowed &&
			 (int64_t)st.masked == masked,
			 "%s: %" PRId64 " wrong pairs, stats %llu/%llu vs %" PRId64 "/%" PRId64 "\n",
			 what, bad, (unsigned long long)st.allowed,
			 (unsigned long long)st.masked, allowed, masked);
	free(row);
	asam_pat_plan_destroy(pl);
}

static const int lengths[][2] = {
	{ 1, 1 }, { 63, 63 }, { 64, 64 }, { 65, 65 }, { 1000, 1000 },
	{ 65, 1000 }, { 1000, 63 },
};

static void test_kind(enum asam_pattern_kind kind)
{
	unsigned int t;
	int causal;

	for (t = 0; t < ARRAY_SIZE(lengths); t++)
		for (causal = 0; causal < 2; causal++) {
			int Nq = lengths[t][0], Nk = lengths[t][1];
			int big = Nq >= 1000 || Nk >= 1000;
			struct setup s;
			char what[96];

			/* clustered's brute force is O(N^2 C d): keep it small */
			if (kind == ASAM_PATTERN_CLUSTERED && big && causal)
				continue;
			snprintf(what, sizeof(what), "%s Nq=%d Nk=%d%s",
				 asam_pattern_name(kind), Nq, Nk,
				 causal ? " causal" : "");
			if (make_setup(&s, kind, 1, 2, 1, Nq, Nk,
				       kind == ASAM_PATTERN_CLUSTERED ? 8 : 4,
				       causal)) {
				ksft_test_result_fail("%s: setup: %s\n", what,
						      asam_last_error());
				continue;
			}
			if (kind == ASAM_PATTERN_LOCAL)
				s.pat.window = 7;	/* odd: radius 3 */
			if (kind == ASAM_PATTERN_STRIDED)
				s.pat.stride = 10, s.pat.radius = 2;
			if (kind == ASAM_PATTERN_RANDOM)
				s.pat.keys_per_row = 130;	/* 3 blocks */
			asam_problem_stats(&s.p, NULL, &s.prm, &s.args);
			check_pattern(&s, what);
			free_setup(&s);
		}
}

static void test_hier_weights(void)
{
	struct setup s;
	int h, k;

	make_setup(&s, ASAM_PATTERN_HIERARCHICAL, 1, 4, 2, 300, 300, 4, false);
	s.pat.num_scales = 4;
	s.pat.scales[3] = 8;
	for (h = 0; h < 4; h++) {
		double sum = 0;

		for (k = 0; k < 4; k++)
			sum += s.weights[h * 4 + k] = tt_uniform() + 0.05;
		for (k = 0; k < 4; k++)
			s.weights[h * 4 + k] /= sum;
	}
	/* a head whose vote ties at exactly 0.5 must say no */
	s.weights[0] = 0.5f, s.weights[1] = 0.25f, s.weights[2] = 0.25f;
	s.weights[3] = 0;
	s.pat.scale_weights = s.weights;
	asam_problem_stats(&s.p, NULL, &s.prm, &s.args);
	check_pattern(&s, "hierarchical, 4 scales, per-head weights");
	free_setup(&s);
}

static void test_clustered_soft(void)
{
	struct setup s;

	make_setup(&s, ASAM_PATTERN_CLUSTERED, 2, 2, 1, 70, 90, 8, false);
	s.pat.cluster_mode = ASAM_CLUSTER_SOFT;
	s.pat.cluster_temp = -0.1f;	/* |tau| is used */
	s.pat.cluster_threshold = 0.3f;
	asam_problem_stats(&s.p, NULL, &s.prm, &s.args);
	check_pattern(&s, "clustered SOFT, B=2, GQA");
	free_setup(&s);
}

static void test_random_rows_seed(void)
{
	static const int32_t row0[] = { 42, 61, 286, 160, 30, 265 };
	static const int32_t row1[] = { 127, 286, 230, 20, 289, 296 };
	struct asam_pat_plan *pl;
	struct setup s;
	uint8_t *row;
	int32_t got[2][6];
	int64_t i, j, n, first_bad = -1;
	bool ok = true;

	make_setup(&s, ASAM_PATTERN_RANDOM_ROWS, 1, 2, 2, 300, 300, 4, false);
	/* r = 6: the rows' first six entries, as a set */
	s.pat.keys_per_row = 6;
	asam_problem_stats(&s.p, NULL, &s.prm, &s.args);
	pl = asam_pat_plan_create(&s.p);
	row = malloc(300);
	asam_pat_plan_bh(pl, 0, 0);
	for (i = 0; i < 2; i++) {
		asam_pat_row(pl, i, row);
		for (j = 0, n = 0; j < 300; j++)
			if (row[j] && n < 6)
				got[i][n++] = (int32_t)j;
		for (j = 0; j < 6; j++)
			ok &= row[(i ? row1 : row0)[j]] == 1;
		ok &= n == 6;
	}
	ksft_test_result(ok, "random_rows: head 0, seed 42, N=300 rows 0 and 1 match torch.randperm\n");

	/* r >= N: every row is a whole permutation, so the row is dense */
	s.pat.keys_per_row = 1000;
	asam_problem_stats(&s.p, NULL, &s.prm, &s.args);
	asam_pat_plan_destroy(pl);
	pl = asam_pat_plan_create(&s.p);
	asam_pat_plan_bh(pl, 0, 1);
	for (i = 0; i < 300 && first_bad < 0; i++) {
		asam_pat_row(pl, i, row);
		for (j = 0; j < 300; j++)
			if (!row[j])
				first_bad = i;
	}
	ksft_test_result(first_bad < 0, "random_rows: r >= N allows every key (first bad row %" PRId64 ")\n",
			 first_bad);
	(void)got;
	free(row);
	asam_pat_plan_destroy(pl);
	free_setup(&s);
}

/* MT19937 reference output: init_genrand(5489), 10000th output */
static void test_mt19937(void)
{
	struct asam_mt19937 mt;
	uint32_t x = 0;
	int i;

	asam_mt_seed(&mt, 5489);
	for (i = 0; i < 10000; i++)
		x = asam_mt_next(&mt);
	ksft_test_result(x == 4123659995u,
			 "mt19937: 10000th output of seed 5489 is %u\n", x);
}

int main(void)
{
	static const enum asam_pattern_kind kinds[] = {
		ASAM_PATTERN_DENSE, ASAM_PATTERN_LOCAL, ASAM_PATTERN_STRIDED,
		ASAM_PATTERN_HIERARCHICAL, ASAM_PATTERN_RANDOM,
		ASAM_PATTERN_CLUSTERED, ASAM_PATTERN_USER_INDEX,
	};
	unsigned int k;

	ksft_print_header();
	test_mt19937();
	for (k = 0; k < ARRAY_SIZE(kinds); k++) {
		struct setup s;
		int ret = make_setup(&s, kinds[k], 1, 1, 1, 4, 4, 4, false);

		free_setup(&s);
		if (ret == -EOPNOTSUPP) {
			ksft_test_result_skip("%s: not built\n",
					      asam_pattern_name(kinds[k]));
			continue;
		}
		test_kind(kinds[k]);
	}
	if (IS_ENABLED(CONFIG_PATTERN_HIERARCHICAL))
		test_hier_weights();
	if (IS_ENABLED(CONFIG_PATTERN_CLUSTERED))
		test_clustered_soft();
	if (IS_ENABLED(CONFIG_PATTERN_RANDOM_ROWS))
		test_random_rows_seed();
	ksft_finished();
}
