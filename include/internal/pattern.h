/* SPDX-License-Identifier: MIT */
/*
 * Token-exact pattern predicates (SPEC 3), evaluated on the host.  They
 * are the definition every backend is checked against, and they feed the
 * host-side planners (tile lists, index lists) of the fast backends.
 *
 * Per-(b, h) state (random rows, cluster assignments) lives in a plan:
 *
 *	plan = asam_pat_plan_create(p);
 *	asam_pat_plan_bh(plan, b, h);		prepare batch b, head h
 *	asam_pat_row(plan, i, row);		row[j] = P_bh(i, j), j < Nk
 *
 * A plan's memory is O(Nq * r + (Nq + Nk) * C) for one (b, h), never N^2.
 * All allocation happens in asam_pat_plan_create(): preparing a (b, h)
 * cannot fail, so a backend can check for ENOMEM before writing outputs.
 */
#ifndef ASAM_INTERNAL_PATTERN_H
#define ASAM_INTERNAL_PATTERN_H

#include <stdint.h>

#include <internal/problem.h>

struct asam_pat_plan;

/* ERR_PTR on failure (-ENOMEM, -EOPNOTSUPP). */
struct asam_pat_plan *asam_pat_plan_create(const struct asam_problem *p);
void asam_pat_plan_destroy(struct asam_pat_plan *pl);
int asam_pat_plan_bh(struct asam_pat_plan *pl, int b, int h);
void asam_pat_row(const struct asam_pat_plan *pl, int64_t i, uint8_t *row);

/* Pattern-only predicates that need no plan (exposed for tests/planners). */
bool asam_pat_hier_allowed(const struct asam_pat *pat, int h, int64_t delta,
			   int64_t j);
int asam_random_blocks(uint64_t seed, int h, int64_t qblock, int rb,
		       int64_t nblocks, int64_t *out);

/* MT19937 as torch.manual_seed + torch.randperm use it. */
struct asam_mt19937 {
	uint32_t mt[624];
	int idx;
};
void asam_mt_seed(struct asam_mt19937 *m, uint32_t seed);
uint32_t asam_mt_next(struct asam_mt19937 *m);
void asam_mt_skip(struct asam_mt19937 *m, uint64_t k);

/* n^(x) = x / max(|x|, 1e-12) dotted with n^(mu_c); argmax, ties lowest c */
int asam_cluster_argmax(const struct asam_pat *pat, int h,
			const struct asam_tv *x, int64_t b, int64_t hx,
			int64_t t, int d);

#endif
