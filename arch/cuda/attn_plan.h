/* SPDX-License-Identifier: MIT */
/*
 * Key-tile lists of the CUDA attention kernels: for every (query head,
 * query tile) the key tiles the pattern touches, sorted, each marked full
 * (no predicate work) or partial.  Pure host code, so that the planner is
 * tested on machines without a GPU; the lists are uploaded once per
 * (pattern, N) and cached by arch/cuda/attn.c.
 */
#ifndef ASAM_CUDA_ATTN_PLAN_H
#define ASAM_CUDA_ATTN_PLAN_H

#include <stddef.h>
#include <stdint.h>

#include <internal/problem.h>

struct attn_plan {
	int nqt;		/* query tiles */
	int nh;			/* 1, or Hq when the lists differ per head */
	int *off;		/* [nh * nqt + 1] */
	int *list;		/* [off[nh * nqt]] */
};

int attn_plan_build(struct attn_plan *pl, const struct asam_pat *pat,
		    int Hq, int Nq, int Nk, int bm, int bn);
/* the same lists by key tile (entries hold a query tile), for dK and dV */
int attn_plan_transpose(const struct attn_plan *pl, int nkt,
			struct attn_plan *t);
void attn_plan_free(struct attn_plan *pl);
/* bytes of off[] followed by list[] in one upload */
size_t attn_plan_bytes(const struct attn_plan *pl);

#endif
